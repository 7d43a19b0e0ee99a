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
