//! The OpenAPI document and the router agree: every (method, path) the
//! server routes is documented, and every documented operation is routed
//! (the runner API's on each operation's own address, never on the main
//! listener).
//! The router is walked for real: each registered path template is filled
//! with placeholder names and probed with every method as the admin; axum
//! answers 405 for a method the path does not route.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::Server;

const METHODS: [&str; 5] = ["GET", "PUT", "POST", "PATCH", "DELETE"];

/// A path template with every parameter (and an ADE `:verb` suffix on one)
/// replaced by `{}`, so the router's `{p}` and the document's
/// `{projectName}:skip` compare equal.
fn shape(template: &str) -> String {
    template
        .split('/')
        .map(|seg| if seg.starts_with('{') { "{}" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// The template with each parameter replaced by a name no resource has.
fn probe_path(template: &str) -> String {
    template
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                "no-such-probe".to_string()
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn every_routed_operation_is_documented_and_every_documented_one_is_routed() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));

    // The served document is the generated one, and needs no token.
    let (st, served, _) = s.call_as("", "GET", "/openapi.json", None);
    assert_eq!(st, 200, "{served}");
    let doc = serde_json::to_value(slipway_api::openapi::document()).unwrap();
    assert_eq!(
        served, doc,
        "GET /openapi.json differs from openapi::document()"
    );

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if METHODS.contains(&method.to_uppercase().as_str()) {
                documented.insert((shape(path), method.to_uppercase()));
            }
        }
    }

    let paths = slipway_api::route_paths();
    assert!(paths.len() > 60, "only {} routes registered", paths.len());
    let mut routed = BTreeSet::new();
    for template in &paths {
        for method in METHODS {
            let (status, body, _) = s.call(method, &probe_path(template), None);
            assert!(status < 500, "{method} {template}: {status} {body}");
            if status != 405 {
                routed.insert((shape(template), method.to_string()));
            }
        }
    }

    // The runner API is documented but served only on each running
    // operation's own address: the main listener routes none of it (not
    // even for the admin), and every documented runner path is one the
    // runner API serves.
    let runner_paths: BTreeSet<String> = slipway_api::runner_route_paths()
        .iter()
        .map(|p| shape(p))
        .collect();
    assert!(runner_paths.len() >= 8, "{runner_paths:?}");
    for template in slipway_api::runner_route_paths() {
        for method in METHODS {
            let (status, body, _) = s.call(method, &probe_path(&template), None);
            assert_eq!(
                status, 404,
                "{method} {template} on the main listener: {body}"
            );
        }
    }
    documented.retain(|(path, method)| {
        if !path.starts_with("/runner/") {
            return true;
        }
        assert!(
            runner_paths.contains(path),
            "documented {method} {path} is not a runner API route"
        );
        false
    });

    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routed but not in the OpenAPI document: {undocumented:?}\ndocumented but not routed: {unrouted:?}"
    );
    // Errors are ADE CloudError JSON (the document's `default` answer).
    let (st, body, _) = s.call("GET", "/projects/no-such-probe/environments", None);
    assert_eq!(st, 404, "{body}");
    let _: slipway_wire::CloudError = serde_json::from_value(body.clone())
        .unwrap_or_else(|e| panic!("not a CloudError ({e}): {body}"));
}
