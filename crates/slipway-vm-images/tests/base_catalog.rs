//! The `PlatformImage` catalog offers what the configured mirror serves:
//! a stand-in Debian mirror on loopback carries only some suites.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use std::sync::{Arc, Mutex};

use slipway_vm_images::base::{BaseCatalog, UbuntuMirror};

/// A mirror stand-in at `http://127.0.0.1:<port>/<dist>` answering
/// `dists/<suite>/Release` for `suites` (200, empty) and 404 for everything
/// else; its base URL and the paths asked for so far.
fn mirror_at(
    dist: &'static str,
    suites: &'static [&'static str],
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
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
            log.lock().unwrap().push(path.to_string());
            let served = suites
                .iter()
                .any(|s| path == format!("/{dist}/dists/{s}/Release"));
            let status = if served { "200 OK" } else { "404 Not Found" };
            let _ = (&conn).write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (format!("http://127.0.0.1:{port}/{dist}"), asked)
}

/// A Debian mirror stand-in serving `suites`; its base URL.
fn mirror(suites: &'static [&'static str]) -> String {
    mirror_at("debian", suites).0
}

fn offered(catalog: &BaseCatalog) -> Vec<String> {
    catalog
        .available()
        .iter()
        .map(|o| format!("{}:{}:{}", o.publisher, o.offer, o.sku))
        .collect()
}

#[test]
fn only_suites_the_mirror_serves_are_offered_and_others_are_refused_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = BaseCatalog::new(dir.path(), mirror(&["bookworm"]));
    // Each release as Azure's generation 1 (BIOS) and 2 (UEFI) skus.
    assert_eq!(
        offered(&catalog),
        ["Debian:debian-12:12", "Debian:debian-12:12-gen2"]
    );
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
        .resolve("RedHat", "RHEL", "9-lvm-gen2", "latest")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'RedHat:RHEL:9-lvm-gen2' is not in the catalog")
            && e.contains(
                "available are Debian:debian-12:12, Debian:debian-12:12-gen2 (publisher:offer:sku)"
            ),
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
    assert_eq!(both.available().len(), 4);
}

/// Why `Canonical:0001-com-ubuntu-server-jammy:22_04-lts:latest` does not
/// resolve in `catalog`.
fn latest_jammy_refused(catalog: &BaseCatalog) -> String {
    catalog
        .resolve(
            "Canonical",
            "0001-com-ubuntu-server-jammy",
            "22_04-lts",
            "latest",
        )
        .unwrap_err()
        .to_string()
}

#[test]
fn ubuntu_is_offered_from_a_configured_ubuntu_mirror_and_built_checking_its_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let debian_only = BaseCatalog::new(dir.path(), mirror(&["bookworm"]));
    let e = latest_jammy_refused(&debian_only);
    assert!(
        e.contains("'Canonical:0001-com-ubuntu-server-jammy:22_04-lts' is built from an Ubuntu mirror, and none is configured (serve --ubuntu-mirror)")
            && e.contains("available are Debian:debian-12:12"),
        "{e}"
    );
    // A mirror whose signatures cannot be checked is refused up front.
    let (url, asked) = mirror_at("ubuntu", &["jammy"]);
    let missing = dir.path().join("no-such-keyring.gpg");
    let e = BaseCatalog::new(dir.path(), mirror(&["bookworm"]))
        .with_ubuntu_mirror(UbuntuMirror {
            url: url.clone(),
            keyring: missing.clone(),
        })
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "the Ubuntu archive keyring '{}' cannot be read",
            missing.display()
        )),
        "{e}"
    );
    let keyring = dir.path().join("ubuntu-archive-keyring.gpg");
    std::fs::write(&keyring, b"").unwrap();
    let catalog = BaseCatalog::new(dir.path(), mirror(&["bookworm"]))
        .with_ubuntu_mirror(UbuntuMirror {
            url: url.clone(),
            keyring,
        })
        .unwrap();
    assert_eq!(
        offered(&catalog),
        [
            "Debian:debian-12:12",
            "Debian:debian-12:12-gen2",
            "Canonical:0001-com-ubuntu-server-jammy:22_04-lts",
            "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2"
        ]
    );
    // Image Builder's quickstart source, Ubuntu 18.04, is bionic.
    let e = catalog
        .resolve("Canonical", "UbuntuServer", "18.04-LTS", "latest")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'Canonical:UbuntuServer:18.04-LTS' needs suite 'bionic'"),
        "{e}"
    );
    let e = catalog
        .resolve("Canonical", "ubuntu-24_04-lts", "server", "latest")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "'Canonical:ubuntu-24_04-lts:server' needs suite 'noble', which the mirror {url} does not serve"
        )) && e.contains(
            "available are Debian:debian-12:12, Debian:debian-12:12-gen2, Canonical:0001-com-ubuntu-server-jammy:22_04-lts, Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2"
        ),
        "{e}"
    );
    // The build runs debootstrap for jammy against the Ubuntu mirror and
    // asks for the release's signature (the stand-in has none to give, so
    // nothing unchecked is installed), then cleans up after itself.
    let e = latest_jammy_refused(&catalog);
    assert!(
        e.contains(&format!("debootstrap jammy from {url}"))
            && e.contains("Failed getting release signature file"),
        "{e}"
    );
    let asked = asked.lock().unwrap().clone();
    assert!(
        asked
            .iter()
            .any(|p| p == "/ubuntu/dists/jammy/InRelease" || p == "/ubuntu/dists/jammy/Release.gpg"),
        "{asked:?}"
    );
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".work-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
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
