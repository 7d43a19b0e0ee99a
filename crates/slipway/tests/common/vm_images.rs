//! Helpers of the VM image template tests: templates, triggers and runs
//! through the API of a real server.

use std::time::Duration;

use serde_json::{json, Value};

use super::{poll, Server};

/// A cold first build debootstraps the base image (minutes).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(1500);

/// `Debian:debian-12:12:latest`, the base image every build test uses.
pub fn debian() -> Value {
    json!({"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"})
}

/// PUTs template `name` with `properties`, expecting 201.
pub fn put_template(s: &Server, name: &str, properties: Value) {
    let (st, v, _) = s.call(
        "PUT",
        &format!("/imageTemplates/{name}"),
        Some(json!({ "properties": properties })),
    );
    assert_eq!(st, 201, "{v}");
}

/// PUTs a `SourceImage` trigger `name` on `template`; the status code and
/// the answer.
pub fn put_trigger(s: &Server, template: &str, name: &str) -> (u16, Value) {
    let (st, v, _) = s.call(
        "PUT",
        &format!("/imageTemplates/{template}/triggers/{name}"),
        Some(json!({"properties": {"kind": "SourceImage"}})),
    );
    (st, v)
}

/// Runs template `name` and waits for the run to end; returns the run.
pub fn run_to_end(s: &Server, name: &str) -> Value {
    let (st, run, _) = s.call("POST", &format!("/imageTemplates/{name}/run"), None);
    assert_eq!(st, 202, "{run}");
    assert_eq!(run["runState"], "Running", "{run}");
    let id = run["runId"].as_str().unwrap().to_string();
    poll(&format!("run {id} of {name}"), BUILD_TIMEOUT, || {
        let r = s.get(&format!("/imageTemplates/{name}/runs/{id}"));
        match r["runState"].as_str() {
            Some("Running") | Some("Canceling") => Err(r.to_string()),
            _ => Ok(r),
        }
    })
}

/// The `customization.log` of `run` of template `name`.
pub fn run_log(s: &Server, name: &str, run: &Value) -> String {
    let (_, v, _) = s.call(
        "GET",
        &format!(
            "/imageTemplates/{name}/runs/{}/log",
            run["runId"].as_str().unwrap()
        ),
        None,
    );
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}
