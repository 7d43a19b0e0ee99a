//! `SourceImage` triggers on a `PlatformImage` source: a new version of the
//! base image rebuilds the templates that follow it. A test binary of its
//! own: it debootstraps a fresh base-image catalog, which would slow the
//! TCG boots of `vm_images` running beside it.

#![allow(clippy::unwrap_used)]

mod common;

use common::vm_images::{debian, put_template, put_trigger, run_log, run_to_end, BUILD_TIMEOUT};
use common::{poll, Server};
use serde_json::json;
use std::time::Duration;

/// A plain http mirror stand-in on loopback (Python's `http.server`)
/// serving `Release` files for `suites` (`("ubuntu", "jammy")`: the file
/// `ubuntu/dists/jammy/Release`); killed on drop.
struct MirrorStandIn {
    base: String,
    child: std::process::Child,
    _root: tempfile::TempDir,
}

impl MirrorStandIn {
    fn serving(suites: &[(&str, &str)]) -> MirrorStandIn {
        let root = tempfile::tempdir().unwrap();
        for (dist, suite) in suites {
            let dir = root.path().join(dist).join("dists").join(suite);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("Release"), format!("Suite: {suite}\n")).unwrap();
        }
        let port = common::free_port();
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(root.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        poll(
            "the mirror stand-in to listen",
            Duration::from_secs(30),
            || {
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        );
        MirrorStandIn {
            base,
            child,
            _root: root,
        }
    }
}

impl Drop for MirrorStandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--ubuntu-mirror` adds the Ubuntu LTS releases that mirror serves to the
/// platform images, under Azure's names; a mirror whose signatures cannot
/// be checked (no keyring) keeps the server from starting.
#[test]
fn an_ubuntu_mirror_offers_the_ubuntu_releases_it_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let mirror = MirrorStandIn::serving(&[("debian", "bookworm"), ("ubuntu", "jammy")]);
    let debian = format!("{}/debian", mirror.base);
    let ubuntu = format!("{}/ubuntu", mirror.base);
    let keyring = tmp.path().join("ubuntu-archive-keyring.gpg");
    std::fs::write(&keyring, b"").unwrap();
    let base = tmp.path().join("base-images");
    let s = Server::start_with(
        &tmp.path().join("data"),
        common::free_port(),
        &[
            "--base-image-dir",
            &base.to_string_lossy(),
            "--debian-mirror",
            &debian,
            "--ubuntu-mirror",
            &ubuntu,
            "--ubuntu-keyring",
            &keyring.to_string_lossy(),
        ],
    );
    let list = s.get("/vmImages/platformImages");
    let available: Vec<String> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["available"] == true)
        .map(|p| {
            format!(
                "{}:{}:{} {}",
                p["publisher"].as_str().unwrap(),
                p["offer"].as_str().unwrap(),
                p["sku"].as_str().unwrap(),
                p["hyperVGeneration"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        available,
        [
            "Debian:debian-12:12 V1",
            "Debian:debian-12:12-gen2 V2",
            "Canonical:0001-com-ubuntu-server-jammy:22_04-lts V1",
            "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2 V2"
        ],
        "{list}"
    );
    let all = list["value"].as_array().unwrap().len();
    assert_eq!(all, 14, "every offer is listed, available or not: {list}");

    let missing = tmp.path().join("no-keyring.gpg");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["serve", "--listen"])
        .arg(format!("127.0.0.1:{}", common::free_port()))
        .arg("--data-dir")
        .arg(tmp.path().join("refused"))
        .args(["--base-image-dir", &base.to_string_lossy()])
        .args(["--ubuntu-mirror", &ubuntu, "--ubuntu-keyring"])
        .arg(&missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--ubuntu-mirror/--ubuntu-keyring")
            && stderr.contains(&format!(
                "the Ubuntu archive keyring '{}' cannot be read",
                missing.display()
            )),
        "{stderr}"
    );
}

/// A template built FROM `Debian:debian-12:12:latest` with a SourceImage
/// trigger is rebuilt when the base-image catalog gains a newer version of
/// it: here the first version of a fresh catalog folder, which another
/// template's run builds. (A catalog older than `--base-image-max-age-days`
/// gains one the same way, from the refresh.)
#[test]
fn a_new_platform_image_version_rebuilds_the_templates_that_follow_it() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base-images");
    let s = Server::start_with(
        &tmp.path().join("data"),
        common::free_port(),
        &["--base-image-dir", &base.to_string_lossy()],
    );
    put_template(
        &s,
        "follower",
        json!({
            "source": debian(),
            "customize": [{"type": "Shell", "name": "mark", "inline": ["echo follower > /etc/slipway-follower"]}],
            "distribute": [{"type": "ManagedImage", "runOutputName": "follower", "imageId": "/slipway/images/follower", "location": "local"}]
        }),
    );
    let (st, v) = put_trigger(&s, "follower", "onDebian");
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        v["properties"]["status"]["message"],
        "Following platform image 'Debian:debian-12:12' (latest), no version built yet",
        "{v}"
    );
    // A fixed platform version never changes: nothing to follow.
    put_template(
        &s,
        "pinned",
        json!({
            "source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "12.12.20261203"},
            "distribute": [{"type": "Raw", "runOutputName": "raw"}]
        }),
    );
    let (st, v) = put_trigger(&s, "pinned", "t");
    assert_eq!(st, 400, "{v}");
    assert!(
        v.to_string().contains("properties.source")
            && v.to_string().contains("'12.12.20261203' names one version"),
        "{v}"
    );
    assert!(
        s.get("/imageTemplates/follower/runs")["value"]
            .as_array()
            .unwrap()
            .is_empty(),
        "a trigger alone starts nothing"
    );

    put_template(
        &s,
        "leader",
        json!({
            "source": debian(),
            "distribute": [{"type": "Raw", "runOutputName": "raw"}]
        }),
    );
    let run = run_to_end(&s, "leader");
    assert_eq!(run["runState"], "Succeeded", "{run}\n{}", s.log());
    let version = run["source"]["version"].as_str().unwrap().to_string();
    // The same debootstrap made the release's generation 2 sku too, under
    // the same version, as Azure publishes them.
    let platform = s.get("/vmImages/platformImages");
    let gen2 = platform["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["offer"] == "debian-12" && p["sku"] == "12-gen2")
        .unwrap()
        .clone();
    assert_eq!(gen2["versions"], json!([version]), "{platform}");
    assert_eq!(
        s.log()
            .matches("building base image with debootstrap")
            .count(),
        1,
        "{}",
        s.log()
    );

    let followed = poll("the triggered run of follower", BUILD_TIMEOUT, || {
        let runs = s.get("/imageTemplates/follower/runs");
        match runs["value"].as_array().and_then(|r| r.first()) {
            Some(r) if !matches!(r["runState"].as_str(), Some("Running" | "Canceling")) => {
                Ok(r.clone())
            }
            _ => Err(runs.to_string()),
        }
    });
    let log = run_log(&s, "follower", &followed);
    assert_eq!(followed["runState"], "Succeeded", "{followed}\n{log}");
    assert_eq!(
        followed["source"]["version"], version,
        "built from the new version: {followed}"
    );
    let t = s.get("/imageTemplates/follower/triggers/onDebian");
    let message = t["properties"]["status"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        format!(
            "Started run {} for new platform image version Debian:debian-12:12:{version}",
            followed["runId"].as_str().unwrap()
        ),
        "{t}"
    );
    assert_eq!(
        s.get("/imageTemplates/follower/runs")["value"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "one version, one run"
    );
}

/// Processes whose command line names `dir` (`pgrep -af`).
fn processes_naming(dir: &std::path::Path) -> String {
    let out = std::process::Command::new("pgrep")
        .arg("-af")
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Puts template `first` (FROM Debian 12 `latest`) and starts its run,
/// which builds the base image into the empty catalog `base`; returns the
/// run id once a process naming `base` shows `program` (`debootstrap`,
/// `wget`) running.
fn run_first_build_until(s: &Server, base: &std::path::Path, program: &str) -> String {
    put_template(
        s,
        "first",
        json!({
            "source": debian(),
            "distribute": [{"type": "Raw", "runOutputName": "raw"}]
        }),
    );
    let (st, run, _) = s.call("POST", "/imageTemplates/first/run", None);
    assert_eq!(st, 202, "{run}");
    poll(&format!("{program} to run"), BUILD_TIMEOUT, || {
        let p = processes_naming(base);
        if p.contains(program) {
            Ok(())
        } else {
            Err(p)
        }
    });
    run["runId"].as_str().unwrap().to_string()
}

/// `systemctl stop` while the first run of an offer debootstraps its base
/// image: the build stops with the server instead of holding the stop up
/// for minutes (or outliving it, writing into a folder the next build
/// removes); nothing stays mounted or half-built in the catalog folder,
/// and the run reads Failed after a restart.
#[test]
fn a_base_image_build_stops_with_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let base = tmp.path().join("base-images");
    let base_flag = base.to_string_lossy().into_owned();
    let mut s = Server::start_with(
        &data,
        common::free_port(),
        &["--base-image-dir", &base_flag],
    );
    let id = run_first_build_until(&s, &base, "debootstrap");

    let status = s.terminate();
    assert!(status.success(), "{status:?}\n{}", s.log());
    let left = processes_naming(&base);
    assert!(left.is_empty(), "the build outlived the server: {left}");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(&base_flag),
        "still mounted beneath the catalog: {mounts}"
    );
    let entries: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".build.lock")
        .collect();
    assert!(entries.is_empty(), "left in the catalog: {entries:?}");

    let s = Server::start_with(
        &data,
        common::free_port(),
        &["--base-image-dir", &base_flag],
    );
    let r = s.get(&format!("/imageTemplates/first/runs/{id}"));
    assert_eq!(r["runState"], "Failed", "{r}");
}

/// A Debian mirror stand-in on loopback that says it serves bookworm
/// (`HEAD` of any `Release`: 200) and never answers a download, holding
/// the connection open: a build from it waits, silent, in its first
/// download. Its base URL.
fn silent_mirror() -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(&conn);
            let mut request = String::new();
            let mut line = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            if request.starts_with("HEAD ") {
                let _ = (&conn).write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            } else {
                held.push(conn);
            }
        }
    });
    format!("http://127.0.0.1:{port}/debian")
}

/// The server killed (SIGKILL, a crash, the OOM killer) while a base image
/// is being built, here in a download that writes nothing (a closed output
/// pipe would end debootstrap only at its next line): nothing gets to stop
/// the build, yet debootstrap and every process it started end with the
/// server, as its PID namespace dies with it, instead of writing on into a
/// folder the next build removes.
#[test]
fn a_base_image_build_ends_when_the_server_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let base = tmp.path().join("base-images");
    let base_flag = base.to_string_lossy().into_owned();
    let mirror = silent_mirror();
    let mut s = Server::start_with(
        &data,
        common::free_port(),
        &["--base-image-dir", &base_flag, "--debian-mirror", &mirror],
    );
    // debootstrap's first download.
    run_first_build_until(&s, &base, "wget");
    s.kill();
    poll(
        "the build's processes to end with the server",
        Duration::from_secs(30),
        || {
            let p = processes_naming(&base);
            if p.is_empty() {
                Ok(())
            } else {
                Err(p)
            }
        },
    );
}
