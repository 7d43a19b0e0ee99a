//! `SourceImage` triggers on a `PlatformImage` source: a new version of the
//! base image rebuilds the templates that follow it. A test binary of its
//! own: it debootstraps a fresh base-image catalog, which would slow the
//! TCG boots of `vm_images` running beside it.

#![allow(clippy::unwrap_used)]

mod common;

use common::vm_images::{debian, put_template, put_trigger, run_log, run_to_end, BUILD_TIMEOUT};
use common::{poll, Server};
use serde_json::json;

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
    put_template(
        &s,
        "first",
        json!({
            "source": debian(),
            "distribute": [{"type": "Raw", "runOutputName": "raw"}]
        }),
    );
    let (st, run, _) = s.call("POST", "/imageTemplates/first/run", None);
    assert_eq!(st, 202, "{run}");
    let id = run["runId"].as_str().unwrap().to_string();
    poll("debootstrap to start", BUILD_TIMEOUT, || {
        let p = processes_naming(&base);
        if p.contains("debootstrap") {
            Ok(())
        } else {
            Err(p)
        }
    });

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
