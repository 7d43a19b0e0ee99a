//! The control plane's own attack suite: hostile URLs, refs, archives and
//! secret references sent through Slipway's public interfaces. Each attack
//! must be refused (or fail) without running, reading or writing anything
//! outside its root. No packet leaves this machine: the "attacker's" git
//! server is a listener on 127.0.0.1 that counts who calls it.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{run_log, wait_run, Server};
use serde_json::{json, Value};
use sha2::Digest;

const BASE: &str = "localhost/slipway/runner-core:latest";

/// A listener on 127.0.0.1 that counts the connections it receives.
fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    counting_listener_on("127.0.0.1")
}

fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

#[test]
fn git_option_injection_through_a_context_or_catalog_url_runs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let repo = tmp.path().join("repos/app.git");
    common::git_repo(
        &repo,
        &[(
            "acb.yaml",
            &format!("steps:\n  - cmd: --entrypoint true {BASE}\n"),
        )],
    );
    let marker = tmp.path().join("pwned");
    let inject = format!("--upload-pack=touch {}", marker.display());

    // A ref that is a git option (`git fetch … origin <ref>` ran it).
    let (st, v, _) = s.call(
        "POST",
        "/imageTasks/runs",
        Some(json!({"context": format!("file://{}#{inject}", repo.display())})),
    );
    assert_eq!(st, 400, "{v}");
    assert!(message(&v).contains("starts with '-'"), "{v}");

    // A polled task whose URL is a git option (`git ls-remote <url>` on every poll).
    let (st, v, _) = s.call(
        "PUT",
        "/imageTasks/tasks/evil",
        Some(json!({
            "context": format!("{inject};.git#main"),
            "sourceTrigger": {"pollIntervalSeconds": 5},
        })),
    );
    assert_eq!(st, 400, "{v}");
    assert!(message(&v).contains("starts with '-'"), "{v}");

    // The same URL as a catalog source.
    s.setup_project();
    let (st, v, _) = s.call(
        "PUT",
        "/admin/catalogs/evil",
        Some(json!({"kind": "git", "uri": format!("{inject};.git")})),
    );
    assert_eq!(st, 400, "{v}");
    // A branch that is an option.
    let (st, v, _) = s.call(
        "PUT",
        "/admin/catalogs/evil",
        Some(json!({"kind": "git", "uri": format!("file://{}", repo.display()), "branch": inject})),
    );
    assert_eq!(st, 400, "{v}");
    assert!(message(&v).contains("starts with '-'"), "{v}");
    // Another transport (`ext::` runs a command).
    let (st, v, _) = s.call(
        "PUT",
        "/admin/catalogs/evil",
        Some(json!({"kind": "git", "uri": format!("ext::sh -c touch% {}", marker.display())})),
    );
    assert_eq!(st, 400, "{v}");

    assert!(!marker.exists(), "an injected git option ran on the server");
}

/// Pushes an OCI manifest of `layers` (bytes, title annotation) to the
/// embedded registry as `repo:tag`, authenticating as the user account.
fn push_artifact(s: &Server, repo: &str, tag: &str, layers: &[(Vec<u8>, Option<&str>)]) {
    let (code, out, err) = s.cli(&["-o", "json", "registry", "login"]);
    assert_eq!(code, 0, "{out}{err}");
    let login: Value = serde_json::from_str(&out).unwrap();
    let auth = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!(
                "{}:{}",
                login["username"].as_str().unwrap(),
                login["password"].as_str().unwrap()
            )
        )
    );
    let reg = format!("http://{}", login["loginServer"].as_str().unwrap());
    let upload = |bytes: &[u8]| -> String {
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
        let r = ureq::post(&format!("{reg}/v2/{repo}/blobs/uploads/"))
            .set("Authorization", &auth)
            .call()
            .unwrap();
        let loc = r.header("location").unwrap().to_string();
        let loc = if loc.starts_with("http") {
            loc
        } else {
            format!("{reg}{loc}")
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        ureq::put(&format!("{loc}{sep}digest={digest}"))
            .set("Authorization", &auth)
            .set("Content-Type", "application/octet-stream")
            .send_bytes(bytes)
            .unwrap();
        digest
    };
    let config = upload(b"{}");
    let descriptors: Vec<Value> = layers
        .iter()
        .map(|(bytes, title)| {
            let mut d = json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": upload(bytes),
                "size": bytes.len(),
            });
            if let Some(t) = title {
                d["annotations"] = json!({"org.opencontainers.image.title": t});
            }
            d
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": descriptors,
    });
    ureq::put(&format!("{reg}/v2/{repo}/manifests/{tag}"))
        .set("Authorization", &auth)
        .set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .send_string(&manifest.to_string())
        .unwrap();
}

fn tar_of(entries: &[(&str, Option<&Path>, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        match link {
            Some(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, name, target).unwrap();
            }
            None => {
                h.set_size(data.len() as u64);
                h.set_cksum();
                b.append_data(&mut h, name, *data).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

#[test]
fn an_oci_context_whose_layer_plants_a_symlink_writes_nothing_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // Layer 1 plants `d -> <outside>`; layer 2 is an ORAS file titled `d/x`.
    push_artifact(
        &s,
        "contexts/evil",
        "1",
        &[
            (tar_of(&[("d", Some(&outside), b"")]), None),
            (b"planted\n".to_vec(), Some("d/x")),
        ],
    );
    let reg = s.get("/imageTasks/registry")["loginServer"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, v, _) = s.call(
        "POST",
        "/imageTasks/builds",
        Some(json!({"context": format!("oci://{reg}/contexts/evil:1"), "images": ["x:1"]})),
    );
    assert_eq!(st, 202, "{v}");
    let run = wait_run(&s, v["runId"].as_str().unwrap());
    let log = run_log(&s, v["runId"].as_str().unwrap());
    assert_eq!(run["status"], "Failed", "{run}\n{log}");
    assert!(
        format!("{run}{log}").contains("'d/x' leads outside"),
        "the failure names the entry: {run}\n{log}"
    );
    assert!(
        !outside.join("x").exists(),
        "the artifact wrote through its planted symlink"
    );
}

/// A listener on `ip` (a loopback address) that counts the connections
/// it receives.
fn counting_listener_on(ip: &str) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind((ip, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            h.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
        }
    });
    (port, hits)
}

#[test]
fn urls_users_name_are_not_fetched_from_the_hosts_services() {
    let tmp = tempfile::tempdir().unwrap();
    // Test servers open 127.0.0.1 (`common::Server`), as an operator opens
    // an artifact store's network; a service on another loopback address
    // stays out of reach, as a tarball, a git remote over http, ssh or
    // git://, an OCI registry, and written as an IPv4-mapped IPv6 address.
    let s = Server::start(&tmp.path().join("data"));
    let (port, hits) = counting_listener_on("127.0.0.2");
    for context in [
        format!("http://127.0.0.2:{port}/ctx.tar.gz"),
        format!("http://[::ffff:127.0.0.2]:{port}/ctx.tar.gz"),
        format!("http://127.0.0.2:{port}/repo.git#main"),
        format!("ssh://git@127.0.0.2:{port}/repo.git#main"),
        format!("git://127.0.0.2:{port}/repo.git#main"),
        format!("oci://127.0.0.2:{port}/contexts/app:1"),
    ] {
        let (st, v, _) = s.call(
            "POST",
            "/imageTasks/builds",
            Some(json!({"context": context, "images": ["x:1"]})),
        );
        assert_eq!(st, 202, "{v}");
        let id = v["runId"].as_str().unwrap();
        let run = wait_run(&s, id);
        let all = format!("{run}{}", run_log(&s, id));
        assert_eq!(run["status"], "Failed", "{all}");
        assert!(
            all.contains("127.0.0.2 is loopback") && all.contains("--fetch-allowed-cidr"),
            "the failure names the address and how to open it: {all}"
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the server fetched from the host's service"
    );
}

#[test]
fn a_task_file_or_dockerfile_symlinked_to_a_host_file_is_never_read() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let host_file = tmp.path().join("host-secret.txt");
    std::fs::write(&host_file, "TOP-SECRET-HOST-CONTENT\n").unwrap();
    let upload = |tar: Vec<u8>| -> String {
        let r = ureq::put(&format!("{}/imageTasks/contexts", s.base))
            .set("Authorization", &format!("Bearer {}", s.admin_token))
            .set("Content-Type", "application/x-tar")
            .send_bytes(&tar)
            .unwrap();
        let v: Value = r.into_json().unwrap();
        v["context"].as_str().unwrap().to_string()
    };

    // Uploads a context, runs it, and returns the failed run with its log.
    let failed_run = |tar: Vec<u8>| -> String {
        let ctx = upload(tar);
        let (st, v, _) = s.call("POST", "/imageTasks/runs", Some(json!({"context": ctx})));
        assert_eq!(st, 202, "{v}");
        let id = v["runId"].as_str().unwrap().to_string();
        let run = wait_run(&s, &id);
        let all = format!("{run}{}", run_log(&s, &id));
        assert_eq!(run["status"], "Failed", "{all}");
        assert!(!all.contains("TOP-SECRET"), "the host file leaked: {all}");
        all
    };

    // acb.yaml -> host file: the server read it and echoed it in the error.
    let all = failed_run(tar_of(&[("acb.yaml", Some(&host_file), b"")]));
    assert!(all.contains("leads outside"), "{all}");

    // A build step whose Dockerfile is a host path.
    let task = format!(
        "steps:\n  - build: -t x:1 -f {} .\n",
        "../../../../../../../../..".to_string() + &host_file.display().to_string()
    );
    let all = failed_run(tar_of(&[("acb.yaml", None, task.as_bytes())]));
    assert!(all.contains("outside the run's workspace"), "{all}");
}

#[test]
fn a_project_admin_cannot_send_a_dev_center_token_anywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    s.setup_project();
    let (st, v, _) = s.call(
        "PUT",
        "/admin/secrets/dc-token",
        Some(json!({"kind": "token", "value": "DEVCENTER-TOKEN-123"})),
    );
    assert_eq!(st, 200, "{v}");
    s.assign("padmin", "Project Admin", "/projects/demo");
    let padmin = s.token_for("padmin");
    let (port, hits) = counting_listener();
    let attacker = format!("http://127.0.0.1:{port}/r.git");

    // The dev center's token is not the project's to name.
    let (st, v, _) = s.call_as(
        &padmin,
        "PUT",
        "/admin/projects/demo/catalogs/steal",
        Some(json!({"kind": "git", "uri": attacker, "secretIdentifier": "dc-token"})),
    );
    assert_eq!(st, 400, "{v}");
    assert!(
        message(&v).contains("does not exist in project 'demo'"),
        "{v}"
    );
    // Nor can they read or overwrite dev-center secrets.
    assert_eq!(s.call_as(&padmin, "GET", "/admin/secrets", None).0, 403);
    assert_eq!(
        s.call_as(
            &padmin,
            "PUT",
            "/admin/secrets/dc-token",
            Some(json!({"kind": "token", "value": "x"}))
        )
        .0,
        403
    );
    // A project token that names its hosts is never sent to another one.
    let (st, v, _) = s.call_as(
        &padmin,
        "PUT",
        "/admin/projects/demo/secrets/mine",
        Some(json!({"kind": "token", "value": "PROJECT-TOKEN", "hosts": ["git.example.com"]})),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["hosts"], json!(["git.example.com"]), "{v}");
    let (st, v, _) = s.call_as(
        &padmin,
        "PUT",
        "/admin/projects/demo/catalogs/mine",
        Some(json!({"kind": "git", "uri": attacker, "secretIdentifier": "mine"})),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["syncState"], "Failed", "{v}");
    let (_, details, _) = s.call_as(
        &padmin,
        "POST",
        "/admin/projects/demo/catalogs/mine:getSyncErrorDetails",
        None,
    );
    assert!(
        details.to_string().contains("git.example.com"),
        "the refusal names the allowed hosts: {details}"
    );
    // Deployment identities and registry credentials stay dev-center kinds.
    let (st, v, _) = s.call_as(
        &padmin,
        "PUT",
        "/admin/projects/demo/secrets/id",
        Some(json!({"kind": "deploymentIdentity", "value": {"clientId": "c", "tenantId": "t"}})),
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a request reached the attacker's server"
    );
}

#[test]
fn local_catalogs_are_for_dev_center_admins_beneath_the_allowed_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    s.setup_project();
    let inside = tmp.path().join("cat");
    std::fs::create_dir_all(&inside).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), tmp.path().join("link")).unwrap();
    s.assign("padmin", "Project Admin", "/projects/demo");
    let padmin = s.token_for("padmin");

    let (st, v, _) = s.call_as(
        &padmin,
        "PUT",
        "/admin/projects/demo/catalogs/loc",
        Some(json!({"kind": "local", "uri": inside.display().to_string()})),
    );
    assert_eq!(st, 403, "{v}");
    for outside in [
        elsewhere.path().display().to_string(),
        tmp.path().join("link").display().to_string(),
        "/etc".to_string(),
    ] {
        let (st, v, _) = s.call(
            "PUT",
            "/admin/catalogs/loc",
            Some(json!({"kind": "local", "uri": outside})),
        );
        assert_eq!(st, 400, "{outside}: {v}");
        assert!(message(&v).contains("local-catalog-root"), "{v}");
    }
    let (st, v, _) = s.call(
        "PUT",
        "/admin/catalogs/loc",
        Some(json!({"kind": "local", "uri": inside.display().to_string()})),
    );
    assert_eq!(st, 201, "{v}");
}

#[test]
fn errors_stay_bounded_and_do_not_reveal_what_the_caller_may_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    s.setup(
        "examples",
        json!({"kind": "local", "uri": common::repo_root().join("examples/catalog").display().to_string()}),
    );
    // 10,000 unknown parameters, one of them with a 100,000-character name.
    let mut params = serde_json::Map::new();
    for i in 0..10_000 {
        params.insert(format!("p{i}"), json!(i));
    }
    params.insert("x".repeat(100_000), json!("y".repeat(100_000)));
    let body = json!({
        "environmentType": "Dev",
        "catalogName": "examples",
        "environmentDefinitionName": "HelloTerraform",
        "parameters": params,
    });
    let r = ureq::put(&format!(
        "{}/projects/demo/users/me/environments/big",
        s.base
    ))
    .set("Authorization", &format!("Bearer {}", s.admin_token))
    .send_json(body);
    let resp = match r {
        Err(ureq::Error::Status(400, resp)) => resp,
        other => panic!("expected 400, got {other:?}"),
    };
    let text = resp.into_string().unwrap();
    assert!(text.len() < 16 * 1024, "the answer is {} bytes", text.len());
    let v: Value = serde_json::from_str(&text).unwrap();
    let details = v["error"]["details"].as_array().unwrap();
    assert!(details.len() <= 21, "{} details", details.len());
    assert!(
        message(&v).contains("more parameter problems are not listed"),
        "{v}"
    );

    // A 100,000-character unknown property and name are echoed cut short.
    let mut body = serde_json::Map::new();
    body.insert("kind".into(), json!("git"));
    body.insert("z".repeat(100_000), json!(1));
    let (st, v, _) = s.call("PUT", "/admin/catalogs/cat", Some(Value::Object(body)));
    assert_eq!(st, 400, "{v}");
    assert!(v.to_string().len() < 1024, "{} bytes", v.to_string().len());
    let long_name = "n".repeat(5_000);
    let (st, v, _) = s.call(
        "PUT",
        &format!("/admin/catalogs/{long_name}"),
        Some(json!({"kind": "git", "uri": "https://example.com/r.git"})),
    );
    assert_eq!(st, 400, "{v}");
    assert!(v.to_string().len() < 1024, "{} bytes", v.to_string().len());

    // In the project but not a reader of another user's environment: the
    // same 404 whether it exists or not.
    let (st, v, op) = s.put_env("mine", "examples", "HelloTerraform", json!({"name": "n"}));
    assert_eq!(st, 201, "{v}");
    s.wait_op(&op.unwrap());
    s.assign("dev", "Deployment Environments User", "/projects/demo");
    let dev = s.token_for("dev");
    let existing = s.call_as(
        &dev,
        "GET",
        "/projects/demo/users/admin/environments/mine",
        None,
    );
    let missing = s.call_as(
        &dev,
        "GET",
        "/projects/demo/users/admin/environments/none",
        None,
    );
    assert_eq!(existing.0, 404, "{}", existing.1);
    assert_eq!(missing.0, 404, "{}", missing.1);
    assert_eq!(existing.1["error"]["code"], missing.1["error"]["code"]);
}

/// Slowloris: a client that opens connections and never finishes a request
/// head would hold a task and a file descriptor each for as long as it
/// likes. The server closes such a connection once
/// `--http-header-timeout-seconds` have passed, and an idle kept-alive one
/// too, while a client that finishes its request is served.
#[test]
fn a_request_head_that_never_ends_is_cut_off() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &tmp.path().join("data"),
        common::free_port(),
        &["--http-header-timeout-seconds", "2"],
    );
    let connect = || {
        let c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        // Far beyond the server's timeout: a read that runs into it means
        // the server kept the connection open.
        c.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        c
    };
    let closed = |c: &mut std::net::TcpStream| {
        let mut rest = Vec::new();
        match c.read_to_end(&mut rest) {
            Ok(_) => String::from_utf8_lossy(&rest).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => String::new(),
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    };

    let mut slow = connect();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: slipway\r\nX-Slow: ")
        .unwrap();
    let answer = closed(&mut slow);
    assert!(!answer.contains("200 OK"), "{answer}");

    // Served, then closed once idle for the timeout.
    let mut idle = connect();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: slipway\r\n\r\n")
        .unwrap();
    let answer = closed(&mut idle);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}

/// A client cannot use up the server's file descriptors by opening
/// connections: beyond `--max-connections` open ones the next waits (in
/// the kernel's backlog) until one closes, and is served then. (Each
/// runner's API address holds at most `RUNNER_API_MAX_CONNECTIONS`.)
#[test]
fn connections_beyond_the_maximum_wait_until_one_closes() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_with(
        &tmp.path().join("data"),
        common::free_port(),
        &["--max-connections", "2"],
    );
    s.close_pooled_connections();
    let healthz = "GET /healthz HTTP/1.1\r\nHost: slipway";
    let connect = || {
        let c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        c
    };
    // Two kept-alive connections, both served: the server is full.
    let mut a = connect();
    let mut b = connect();
    assert_eq!(common::exchange(&mut a, healthz, b"").0, 200);
    assert_eq!(common::exchange(&mut b, healthz, b"").0, 200);

    let mut c = connect();
    c.write_all(format!("{healthz}\r\n\r\n").as_bytes())
        .unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let mut first = [0u8; 1];
    match c.read(&mut first) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("a third connection was served while two were open: {other:?}"),
    }

    drop(a);
    c.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 200 OK"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // The server was never cut off from its other clients.
    assert_eq!(common::exchange(&mut b, healthz, b"").0, 200);
}
