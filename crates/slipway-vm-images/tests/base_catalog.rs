//! The `PlatformImage` catalog offers what the configured mirror serves:
//! a stand-in Debian mirror on loopback carries only some suites.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use slipway_vm_images::base::BaseCatalog;

/// A mirror stand-in answering `dists/<suite>/Release` for `suites` (200)
/// and 404 for everything else; its base URL.
fn mirror(suites: &'static [&'static str]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(&conn);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            // The rest of the request head.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or_default();
            let served = suites
                .iter()
                .any(|s| path == format!("/debian/dists/{s}/Release"));
            let status = if served { "200 OK" } else { "404 Not Found" };
            let _ = (&conn).write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    format!("http://127.0.0.1:{port}/debian")
}

#[test]
fn only_suites_the_mirror_serves_are_offered_and_others_are_refused_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = BaseCatalog::new(dir.path(), mirror(&["bookworm"]));
    let names: Vec<String> = catalog
        .available()
        .iter()
        .map(|o| format!("{}:{}:{}", o.publisher, o.offer, o.sku))
        .collect();
    assert_eq!(names, ["Debian:debian-12:12"]);
    // A Debian release the mirror does not carry: refused before debootstrap.
    let e = catalog
        .resolve("Debian", "debian-11", "11", "latest")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'Debian:debian-11:11' needs suite 'bullseye', which the mirror")
            && e.contains("available are Debian:debian-12:12"),
        "{e}"
    );
    // Not in the catalog at all.
    let e = catalog
        .resolve("Canonical", "UbuntuServer", "18.04-LTS", "latest")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'Canonical:UbuntuServer:18.04-LTS' is not in the catalog")
            && e.contains("available are Debian:debian-12:12"),
        "{e}"
    );
    // An exact version that was never built names the built ones.
    let e = catalog
        .resolve("Debian", "debian-12", "12", "12.1.20200101")
        .unwrap_err()
        .to_string();
    assert!(e.contains("has no version '12.1.20200101'"), "{e}");
    // A mirror serving trixie as well offers Debian 13 too.
    let both = BaseCatalog::new(dir.path(), mirror(&["bookworm", "trixie"]));
    assert_eq!(both.available().len(), 2);
}

/// Places a built version of `offer` in the catalog folder, as a build
/// leaves it (`disk.raw` and `image.json` of the current recipe).
fn place_version(dir: &std::path::Path, offer: &str, sku: &str, version: &str) {
    let vdir = dir.join("Debian").join(offer).join(sku).join(version);
    std::fs::create_dir_all(&vdir).unwrap();
    std::fs::write(vdir.join("disk.raw"), b"").unwrap();
    let meta = serde_json::json!({
        "publisher": "Debian", "offer": offer, "sku": sku, "version": version,
        "path": "", "recipe": slipway_vm_images::base::RECIPE,
    });
    std::fs::write(vdir.join("image.json"), meta.to_string()).unwrap();
}

#[test]
fn offers_whose_newest_version_is_older_than_the_max_age_are_due_for_a_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = BaseCatalog::new(dir.path(), mirror(&["bookworm", "trixie"]));
    let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
    assert!(
        catalog.stale(7, today).is_empty(),
        "nothing built, nothing due"
    );
    place_version(dir.path(), "debian-12", "12", "12.11.20261101");
    place_version(dir.path(), "debian-12", "12", "12.12.20261126");
    place_version(dir.path(), "debian-13", "13", "13.1.20261120");
    let due: Vec<&str> = catalog.stale(7, today).iter().map(|o| o.offer).collect();
    assert_eq!(due, ["debian-13"], "debian-12's newest is 7 days old");
    let due: Vec<&str> = catalog.stale(6, today).iter().map(|o| o.offer).collect();
    assert_eq!(due, ["debian-12", "debian-13"]);
    let newest = catalog
        .resolve("Debian", "debian-12", "12", "latest")
        .unwrap();
    assert_eq!(newest.version, "12.12.20261126");
    assert_eq!(
        slipway_vm_images::base::built_on(&newest.version),
        chrono::NaiveDate::from_ymd_opt(2026, 11, 26)
    );
}

#[test]
fn pruning_keeps_the_newest_versions_of_an_offer() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = BaseCatalog::new(dir.path(), mirror(&["bookworm", "trixie"]));
    for v in [
        "12.10.20260901",
        "12.11.20261001",
        "12.12.20261101",
        "12.12.20261201",
    ] {
        place_version(dir.path(), "debian-12", "12", v);
    }
    place_version(dir.path(), "debian-13", "13", "13.1.20260901");
    let offer = |name: &str| {
        slipway_vm_images::base::OFFERS
            .iter()
            .find(|o| o.offer == name)
            .unwrap()
    };
    let removed = catalog.prune(offer("debian-12"), 2).unwrap();
    assert_eq!(removed, ["12.10.20260901", "12.11.20261001"]);
    let left: Vec<String> = catalog
        .versions("Debian", "debian-12", "12")
        .unwrap()
        .into_iter()
        .map(|b| b.version)
        .collect();
    assert_eq!(left, ["12.12.20261101", "12.12.20261201"]);
    let e = catalog
        .resolve("Debian", "debian-12", "12", "12.10.20260901")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("built versions are [12.12.20261101, 12.12.20261201]"),
        "{e}"
    );
    assert!(
        catalog.prune(offer("debian-13"), 0).unwrap().is_empty(),
        "one is always kept"
    );
    assert_eq!(
        catalog.versions("Debian", "debian-13", "13").unwrap().len(),
        1
    );
}
