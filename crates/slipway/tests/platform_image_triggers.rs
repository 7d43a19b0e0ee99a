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
