//! Bounded concurrent load on one server: many API writers at once while
//! operations run and finish in runner containers. The store serializes its
//! writes; contention never surfaces as a server error.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;

use common::{scripted_catalog, Server};
use serde_json::json;

/// Writer threads and environments each creates.
const WRITERS: usize = 8;
const ENVS_PER_WRITER: usize = 3;

#[test]
fn parallel_writers_and_running_operations_see_no_server_error() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    s.setup(
        "cat",
        scripted_catalog(tmp.path(), "App", "#!/bin/bash\necho deployed\n"),
    );
    // (method path) → statuses seen; every 5xx is kept with its body.
    let statuses: Mutex<BTreeMap<u16, usize>> = Mutex::default();
    let errors: Mutex<Vec<String>> = Mutex::default();
    let ops: Mutex<Vec<(String, String)>> = Mutex::default();
    let record = |what: &str, st: u16, body: &serde_json::Value| {
        *statuses.lock().unwrap().entry(st).or_default() += 1;
        if st >= 500 {
            errors.lock().unwrap().push(format!("{what}: {st} {body}"));
        }
    };
    std::thread::scope(|scope| {
        for w in 0..WRITERS {
            let (s, record, ops) = (&s, &record, &ops);
            scope.spawn(move || {
                for k in 0..ENVS_PER_WRITER {
                    let env = format!("e{w}-{k}");
                    let (st, v, op) = s.put_env(&env, "cat", "App", json!({}));
                    record("PUT environment", st, &v);
                    if let Some(op) = op {
                        ops.lock().unwrap().push((env.clone(), op));
                    }
                    // Writes of every other kind beside it: secrets, role
                    // assignments, projects, a catalog sync, tokens.
                    let (st, v, _) = s.call(
                        "PUT",
                        &format!("/admin/projects/demo/secrets/s{w}-{k}"),
                        Some(json!({"kind": "generic", "value": "v"})),
                    );
                    record("PUT project secret", st, &v);
                    let (st, v, _) = s.call(
                        "POST",
                        "/admin/roleAssignments",
                        Some(json!({"principalId": format!("u{w}-{k}"), "role": "Deployment Environments User", "scope": "/projects/demo"})),
                    );
                    record("POST role assignment", st, &v);
                    let (st, v, _) = s.call(
                        "PUT",
                        &format!("/admin/projects/p{w}-{k}"),
                        Some(json!({"description": "load"})),
                    );
                    record("PUT project", st, &v);
                    let (st, v, _) = s.call(
                        "POST",
                        "/admin/tokens",
                        Some(json!({"user": format!("u{w}-{k}")})),
                    );
                    record("POST token", st, &v);
                    // Two writers update one image template (read-then-write).
                    let (st, v, _) = s.call(
                        "PUT",
                        &format!("/imageTemplates/t{}", w % 2),
                        Some(json!({"properties": {
                            "source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"},
                            "customize": [{"type": "Shell", "name": "s", "inline": [format!("echo {w}-{k}")]}],
                            "distribute": [{"type": "Raw", "runOutputName": "raw"}]
                        }})),
                    );
                    record("PUT image template", st, &v);
                    if k == 0 {
                        let (st, v, _) = s.call("POST", "/admin/catalogs/cat/sync", None);
                        record("POST catalog sync", st, &v);
                    }
                    let (st, v, _) =
                        s.call("GET", "/projects/demo/users/me/environments", None);
                    record("GET environments", st, &v);
                }
            });
        }
    });
    // The operations finish (each end is a store transaction too), and a
    // second wave deletes while others may still be finishing.
    let ops = ops.into_inner().unwrap();
    assert_eq!(ops.len(), WRITERS * ENVS_PER_WRITER, "{statuses:?}");
    std::thread::scope(|scope| {
        for (env, op) in &ops {
            let (s, record) = (&s, &record);
            scope.spawn(move || {
                let done = s.wait_op(op);
                assert_eq!(done["status"], "Succeeded", "{done}");
                let (st, v, _) = s.call(
                    "DELETE",
                    &format!("/projects/demo/users/me/environments/{env}"),
                    None,
                );
                record("DELETE environment", st, &v);
                assert_eq!(st, 202, "{v}");
            });
        }
    });
    let errors = errors.into_inner().unwrap();
    assert!(
        errors.is_empty(),
        "{} server errors ({statuses:?}):\n{}",
        errors.len(),
        errors.join("\n")
    );
}
