//! Container image tasks end to end: real `slipway serve` with its embedded
//! `docker-registry`, real Podman builds and containers.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{poll, run_log, wait_run, Server};
use serde_json::{json, Value};

const BASE: &str = "localhost/slipway/runner-core:latest";

fn podman(args: &[&str]) -> (bool, String) {
    let out = Command::new("podman").args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

fn registry(s: &Server) -> String {
    let (st, v, _) = s.call("GET", "/imageTasks/registry", None);
    assert_eq!(st, 200, "{v}");
    v["loginServer"].as_str().unwrap().to_string()
}

/// `--creds=user:password` of the embedded registry's user account, from
/// `slipway registry login -o json` (anonymous calls get 401).
fn creds(s: &Server) -> String {
    let (code, out, err) = s.cli(&["-o", "json", "registry", "login"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    format!(
        "--creds={}:{}",
        v["username"].as_str().unwrap(),
        v["password"].as_str().unwrap()
    )
}

#[test]
fn a_quick_build_from_a_local_folder_pushes_an_image_podman_pulls_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    // Nothing on loopback opened to users' URLs (only a documentation
    // network): Slipway still reaches its own embedded registry there, by
    // its exact socket, for the pushed image's digest.
    let s = Server::start_with(
        &tmp.path().join("data"),
        common::free_port(),
        &["--fetch-allowed-cidr", "192.0.2.0/24"],
    );
    let ctx = tmp.path().join("ctx");
    write(
        &ctx,
        &[
            (
                "Dockerfile",
                &format!(
                    "ARG BASE={BASE}\nFROM $BASE\nARG GREETING\nARG TOKEN\nCOPY . /ctx/\nRUN echo \"$GREETING\" > /greeting.txt\n\
                     RUN echo \"arg=[$TOKEN]\" > /arg.txt\n\
                     RUN --mount=type=secret,id=TOKEN sha256sum < /run/secrets/TOKEN > /secret.sha\n\
                     RUN tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' ' > /ifs.txt; \
                         if bash -c 'echo > /dev/tcp/127.0.0.1/{port}' 2>/dev/null; then echo REACHED; else echo REFUSED; fi > /api.txt\n",
                    port = s.port
                ),
            ),
            ("hello.txt", "hello from slipway\n"),
            ("debug.log", "must not be sent\n"),
            (".dockerignore", "*.log\n"),
        ],
    );
    // Bigger than axum's default 2 MB request body limit.
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(ctx.join("big.bin"), &big).unwrap();
    let (code, out, err) = s.cli(&[
        "image",
        "build",
        ctx.to_str().unwrap(),
        "-t",
        "hello:{{.Run.ID}}",
        "--build-arg",
        "GREETING=hi-there",
        "--secret-build-arg",
        "TOKEN=sekrit-build-value-77",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("Successfully executed") || out.contains("marked as successful"),
        "{out}"
    );
    assert!(
        !out.contains("sekrit-build-value-77"),
        "secret build arg leaked:\n{out}"
    );
    let reg = registry(&s);
    let creds = creds(&s);
    let image = format!("{reg}/hello:ca1");
    assert!(
        out.contains(&format!("Successfully pushed image: {image}")),
        "{out}"
    );
    assert!(out.contains("Run ID: ca1 was successful"), "{out}");
    // The run records its image digest and its base.
    let run = wait_run(&s, "ca1");
    assert_eq!(run["status"], "Succeeded");
    // The secret build arg is sealed at rest and shown as (secure).
    assert!(!run.to_string().contains("sekrit-build-value-77"), "{run}");
    assert_eq!(
        run["request"]["docker"]["secretBuildArgs"],
        json!([{"name": "TOKEN", "value": "(secure)"}]),
        "{run}"
    );
    for f in ["slipway.db", "slipway.db-wal"] {
        let bytes = std::fs::read(s.data.join(f)).unwrap_or_default();
        let needle = b"sekrit-build-value-77";
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{f} holds the secret build arg in clear"
        );
    }
    assert!(
        run["outputImages"][0]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{run}"
    );
    assert_eq!(
        run["dependencies"][0]["runtime-dependency"]["repository"], "slipway/runner-core",
        "{run}"
    );
    // Pulled fresh from the registry, it runs; its history has no secret.
    podman(&["rmi", "--force", &image]);
    let (ok, pulled) = podman(&["pull", "--tls-verify=false", &creds, &image]);
    assert!(ok, "{pulled}");
    let (ok, history) = podman(&["history", "--no-trunc", &image]);
    assert!(ok, "{history}");
    assert!(history.contains("GREETING=hi-there"), "{history}");
    assert!(!history.contains("sekrit-build-value-77"), "{history}");
    let (ok, shown) = podman(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        &image,
        "-c",
        "cat /ctx/hello.txt /greeting.txt; ls /ctx",
    ]);
    assert!(ok, "{shown}");
    assert!(
        shown.contains("hello from slipway") && shown.contains("hi-there"),
        "{shown}"
    );
    // The secret build arg reached RUN as a build secret, not as a build
    // arg (a declared `ARG TOKEN` stays empty), and no file or layer kept it.
    let (ok, inside) = podman(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        &image,
        "-c",
        "cat /arg.txt /secret.sha /ifs.txt; echo; cat /api.txt; ls -a /ctx",
    ]);
    assert!(ok, "{inside}");
    let expected_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"sekrit-build-value-77"))
    };
    assert!(inside.contains("arg=[]"), "{inside}");
    assert!(inside.contains(&expected_sha), "{inside}");
    assert!(!inside.contains(".slipway-build-secret"), "{inside}");
    // RUN had a network namespace of its own (loopback and its link only)
    // and could not reach the server's API on the host's loopback.
    assert!(inside.contains("eth0 lo"), "{inside}");
    assert!(inside.contains("REFUSED"), "{inside}");
    assert!(
        !shown.contains("debug.log"),
        ".dockerignore was not honoured: {shown}"
    );
    podman(&["rmi", "--force", &image]);
}

/// Pulls `image` fresh from the registry and returns `cat /msg.txt` in it.
fn pull_and_cat(creds: &str, image: &str) -> String {
    podman(&["rmi", "--force", image]);
    let (ok, pulled) = podman(&["pull", "--tls-verify=false", creds, image]);
    assert!(ok, "{pulled}");
    let (ok, shown) = podman(&["run", "--rm", "--entrypoint", "cat", image, "/msg.txt"]);
    assert!(ok, "{shown}");
    podman(&["rmi", "--force", image]);
    shown
}

#[test]
fn quick_builds_from_git_tarball_url_and_oci_contexts_push_runnable_images() {
    let tmp = tempfile::tempdir().unwrap();
    // Tarballs come from an https server signed by a private CA the server trusts.
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let https = slipway_fetch::test_support::HttpsFileServer::start(&www);
    let s = Server::start_trusting(&tmp.path().join("data"), &https);
    let reg = registry(&s);
    let creds = creds(&s);
    let dockerfile = format!("FROM {BASE}\nCOPY msg.txt /msg.txt\n");
    let build = |context: &str, image: &str| {
        let (code, out, err) = s.cli(&["image", "build", context, "-t", image]);
        assert_eq!(code, 0, "{out}\n{err}");
        out
    };

    // git: a private repository over smart HTTP, a branch and a folder.
    let repos = tmp.path().join("repos");
    common::git_repo(
        &repos.join("app.git"),
        &[
            ("web/Dockerfile", dockerfile.as_str()),
            ("web/msg.txt", "from git\n"),
            ("README", "not in the context\n"),
        ],
    );
    let token = "git-tok-8c1d-do-not-leak";
    let http = slipway_git::test_support::GitHttp::start(&repos, token);
    let url = format!(
        "http://x-access-token:{token}@127.0.0.1:{}/app.git#main:web",
        http.port
    );
    let out = build(&url, "from-git:1");
    assert!(!out.contains(token), "the git token leaked:\n{out}");
    assert_eq!(
        pull_and_cat(&creds, &format!("{reg}/from-git:1")),
        "from git\n"
    );
    let run = wait_run(&s, "ca1");
    let head = common::git(&repos.join("app.git"), &["rev-parse", "HEAD"]);
    assert_eq!(
        run["dependencies"][0]["git"]["git-head-revision"], head,
        "{run}"
    );

    // A tarball URL (gzip) over https.
    let tgz = {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        for (name, text) in [
            ("Dockerfile", dockerfile.as_str()),
            ("msg.txt", "from a tarball\n"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(text.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, text.as_bytes()).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    };
    std::fs::write(www.join("ctx.tar.gz"), tgz).unwrap();
    build(&format!("{}/ctx.tar.gz", https.base_url), "from-tarball:1");
    assert_eq!(
        pull_and_cat(&creds, &format!("{reg}/from-tarball:1")),
        "from a tarball\n"
    );

    // oci://: the context is an image in the registry whose files are the context.
    let ctx = tmp.path().join("oci-ctx");
    write(
        &ctx,
        &[
            ("Dockerfile", dockerfile.as_str()),
            ("msg.txt", "from an OCI artifact\n"),
            (
                "Containerfile.ctx",
                "FROM scratch\nCOPY Dockerfile msg.txt /\n",
            ),
        ],
    );
    let artifact = format!("{reg}/contexts/app:1");
    let (ok, m) = podman(&[
        "build",
        "-q",
        "-f",
        ctx.join("Containerfile.ctx").to_str().unwrap(),
        "-t",
        &artifact,
        ctx.to_str().unwrap(),
    ]);
    assert!(ok, "{m}");
    let (ok, m) = podman(&["push", "--tls-verify=false", &creds, &artifact]);
    assert!(ok, "{m}");
    build(&format!("oci://{artifact}"), "from-oci:1");
    assert_eq!(
        pull_and_cat(&creds, &format!("{reg}/from-oci:1")),
        "from an OCI artifact\n"
    );
    podman(&["rmi", "--force", &artifact]);

    // A missing artifact fails the run with a clear message.
    let (code, out, _) = s.cli(&[
        "image",
        "build",
        &format!("oci://{reg}/contexts/none:1"),
        "-t",
        "x:1",
    ]);
    assert_ne!(code, 0);
    assert!(out.contains("was not found in the registry"), "{out}");
}

#[test]
fn independent_steps_overlap_and_a_failure_stops_its_siblings_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    // a and b start at once; b also resolves a by its step id; c waits for both.
    let task = format!(
        r#"version: v1.1.0
# a comment line, stripped before rendering
stepTimeout: 120
steps:
  - id: a
    cmd: --entrypoint sh {BASE} -c 'date +%s.%N > /workspace/a.start; sleep 2; date +%s.%N > /workspace/a.end'
    when: ["-"]
  - id: b
    cmd: --entrypoint sh {BASE} -c 'date +%s.%N > /workspace/b.start; getent hosts a > /workspace/b.dns; sleep 2; date +%s.%N > /workspace/b.end'
    when: ["-"]
  - id: c
    cmd: --entrypoint sh {BASE} -c 'cat /workspace/b.dns; awk -v as=$(cat a.start) -v ae=$(cat a.end) -v bs=$(cat b.start) -v be=$(cat b.end) "BEGIN {{ if (as < be && bs < ae) print \"OVERLAP {{{{.Values.word}}}}\"; else exit 1 }}"'
    when: [a, b]
"#
    );
    let (st, run, _) = s.call(
        "POST",
        "/imageTasks/runs",
        Some(json!({"encodedTask": task, "set": ["word=yes"]})),
    );
    assert_eq!(st, 202, "{run}");
    let id = run["runId"].as_str().unwrap().to_string();
    let done = wait_run(&s, &id);
    let log = run_log(&s, &id);
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    assert!(log.contains("OVERLAP yes"), "{log}");
    assert!(
        log.contains(".dns.podman") || log.contains(" a"),
        "b resolved a: {log}"
    );

    // A failing step stops a long-running sibling; nothing is left behind.
    let task = format!(
        r#"steps:
  - id: slow
    cmd: --entrypoint sleep {BASE} 300
    when: ["-"]
  - id: bad
    cmd: --entrypoint sh {BASE} -c 'sleep 1; exit 3'
    when: ["-"]
  - id: never
    cmd: --entrypoint true {BASE}
"#
    );
    let started = Instant::now();
    let (st, run, _) = s.call(
        "POST",
        "/imageTasks/runs",
        Some(json!({"encodedTask": task})),
    );
    assert_eq!(st, 202, "{run}");
    let id = run["runId"].as_str().unwrap().to_string();
    let done = wait_run(&s, &id);
    let log = run_log(&s, &id);
    assert_eq!(done["status"], "Failed", "{done}\n{log}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the sibling was not stopped"
    );
    assert!(
        done["runErrorMessage"]
            .as_str()
            .unwrap()
            .contains("failed to run step ID: bad"),
        "{done}"
    );
    assert!(!log.contains("Executing step ID: never"), "{log}");
    let instance = slipway_runner::instance_id_for(&s.data);
    let label = format!("label=io.slipway.task-run={instance}.{id}");
    let (_, left) = podman(&["ps", "-a", "--filter", &label, "--format", "{{.Names}}"]);
    assert_eq!(left.trim(), "", "containers left: {left}");
    let (_, nets) = podman(&["network", "ls", "--filter", &label, "--format", "{{.Name}}"]);
    assert_eq!(nets.trim(), "", "networks left: {nets}");

    // Bad input names the problem.
    let (st, v, _) = s.call(
        "POST",
        "/imageTasks/runs",
        Some(json!({"encodedTask": "steps: []", "timeout": 5})),
    );
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("timeout"),
        "{v}"
    );
}

#[test]
fn a_new_base_image_digest_starts_a_run_of_its_dependent_task_once() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let reg = registry(&s);
    let creds = creds(&s);
    let base = format!("{reg}/base:1");
    let (ok, m) = podman(&["push", "--tls-verify=false", &creds, BASE, &base]);
    assert!(ok, "{m}");
    let ctx = tmp.path().join("app");
    write(
        &ctx,
        &[
            (
                "Dockerfile",
                &format!("FROM {base}\nCOPY app.txt /app.txt\n"),
            ),
            ("app.txt", "app\n"),
        ],
    );
    let (code, out, err) = s.cli(&[
        "task",
        "create",
        "app",
        "-c",
        ctx.to_str().unwrap(),
        "-f",
        "Dockerfile",
        "-t",
        "app:{{.Run.ID}}",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    // The first run learns the dependency.
    let (code, out, err) = s.cli(&["task", "run", "app"]);
    assert_eq!(code, 0, "{out}{err}");
    let spec = s.call("GET", "/imageTasks/tasks/app", None).1;
    assert_eq!(
        spec["baseImageDependencies"][0]["repository"], "base",
        "{spec}"
    );

    // A new digest of the same tag.
    let v2 = tmp.path().join("v2");
    write(
        &v2,
        &[("Containerfile", &format!("FROM {BASE}\nLABEL version=2\n"))],
    );
    let (ok, m) = podman(&[
        "build",
        "-q",
        "-t",
        "localhost/slipway-test/base-v2",
        v2.to_str().unwrap(),
    ]);
    assert!(ok, "{m}");
    let pushed = Instant::now();
    let (ok, m) = podman(&[
        "push",
        "--tls-verify=false",
        &creds,
        "localhost/slipway-test/base-v2",
        &base,
    ]);
    assert!(ok, "{m}");
    let runs = poll(
        "a run after the base image push",
        Duration::from_secs(30),
        || {
            let runs = runs_of(&s, "app");
            if runs.len() < 2 {
                Err(format!("{runs:?}"))
            } else {
                Ok(runs)
            }
        },
    );
    let lag = pushed.elapsed();
    let triggered = runs[0].clone();
    assert_eq!(triggered["trigger"]["type"], "imageUpdate", "{triggered}");
    assert!(
        lag < Duration::from_secs(5),
        "run started {lag:?} after the push"
    );
    let done = wait_run(&s, triggered["runId"].as_str().unwrap());
    assert_eq!(done["status"], "Succeeded", "{done}");

    // The same digest again starts nothing: a push of another tag that a
    // second task depends on is delivered after it (notifications are in
    // order), so once that task ran the first had its chance.
    let ctx2 = tmp.path().join("sentinel");
    let sentinel = format!("{reg}/sentinel:1");
    write(&ctx2, &[("Dockerfile", &format!("FROM {sentinel}\n"))]);
    let (ok, m) = podman(&["push", "--tls-verify=false", &creds, BASE, &sentinel]);
    assert!(ok, "{m}");
    let (code, out, err) = s.cli(&[
        "task",
        "create",
        "sentinel",
        "-c",
        ctx2.to_str().unwrap(),
        "-f",
        "Dockerfile",
        "-t",
        "sentinel-app",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = s.cli(&["task", "run", "sentinel"]);
    assert_eq!(code, 0, "{out}{err}");
    let (ok, m) = podman(&[
        "push",
        "--tls-verify=false",
        &creds,
        "localhost/slipway-test/base-v2",
        &base,
    ]);
    assert!(ok, "{m}");
    let (ok, m) = podman(&[
        "push",
        "--tls-verify=false",
        &creds,
        "localhost/slipway-test/base-v2",
        &sentinel,
    ]);
    assert!(ok, "{m}");
    poll("the sentinel task to run", Duration::from_secs(30), || {
        let runs = runs_of(&s, "sentinel");
        if runs.len() < 2 {
            Err(format!("{runs:?}"))
        } else {
            Ok(())
        }
    });
    assert_eq!(
        runs_of(&s, "app").len(),
        2,
        "a re-push of the same digest started a run"
    );
    podman(&["rmi", "--force", "localhost/slipway-test/base-v2"]);
}

/// Waits until `cond` holds for task `name`'s shown spec.
fn wait_task(s: &Server, name: &str, cond: impl Fn(&Value) -> bool) -> Value {
    poll(&format!("task {name}"), Duration::from_secs(120), || {
        let (st, v, _) = s.call("GET", &format!("/imageTasks/tasks/{name}"), None);
        assert_eq!(st, 200, "{v}");
        if cond(&v) {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    })
}

/// Waits for the first run of `task` and returns it once finished.
fn wait_task_run(s: &Server, task: &str) -> Value {
    let id = poll(
        &format!("task {task} to run"),
        Duration::from_secs(120),
        || {
            runs_of(s, task)
                .first()
                .and_then(|r| r["runId"].as_str().map(str::to_string))
                .ok_or_else(|| "no run".to_string())
        },
    );
    wait_run(s, &id)
}

fn runs_of(s: &Server, task: &str) -> Vec<Value> {
    let (_, v, _) = s.call("GET", &format!("/imageTasks/runs?task={task}"), None);
    v["value"].as_array().cloned().unwrap_or_default()
}

#[test]
fn signed_push_webhooks_and_polling_start_runs_of_the_pushed_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let repo = tmp.path().join("repos/app.git");
    let acb = format!(
        "steps:\n  - cmd: --entrypoint sh {BASE} -c 'echo built {{{{.Run.Commit}}}} on {{{{.Run.Branch}}}}'\n"
    );
    common::git_repo(&repo, &[("ci/acb.yaml", acb.as_str())]);
    let first = common::git(&repo, &["rev-parse", "HEAD"]);
    let context = format!("file://{}#main:ci", repo.display());
    let (code, out, err) = s.cli(&[
        "-o",
        "json",
        "task",
        "create",
        "hook",
        "-c",
        &context,
        "--webhook-secret",
        "s3cret-hook",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        !out.contains("s3cret-hook"),
        "the webhook secret is shown: {out}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["sourceTrigger"]["hasWebhookSecret"],
        true
    );
    let (code, out, err) = s.cli(&[
        "task",
        "create",
        "poll",
        "-c",
        &context,
        "--poll-interval",
        "5",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    // The first poll records the head and starts nothing.
    wait_task(&s, "poll", |v| {
        v["sourceTrigger"]["lastCommit"] == first.as_str()
    });
    assert!(runs_of(&s, "poll").is_empty());

    common::git_repo(&repo, &[("ci/README", "second commit\n")]);
    let second = common::git(&repo, &["rev-parse", "HEAD"]);
    let payload = json!({
        "ref": "refs/heads/main",
        "after": second,
        "repository": {"default_branch": "main"},
    })
    .to_string();
    let deliver = |task: &str, headers: &[(&str, String)], body: &str| {
        let mut req = ureq::post(&format!("{}/imageTasks/webhooks/{task}", s.base));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        match req.send_string(body) {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap()),
            Err(e) => panic!("{e}"),
        }
    };
    let github = |secret: &str, body: &str| {
        vec![
            ("X-GitHub-Event", "push".to_string()),
            (
                "X-Hub-Signature-256",
                format!("sha256={}", hmac_sha256_hex(secret, body)),
            ),
        ]
    };
    // Wrong signature, unknown task: refused, nothing runs.
    let (st, body) = deliver("hook", &github("wrong", &payload), &payload);
    assert_eq!(st, 401, "{body}");
    assert!(body.contains("X-Hub-Signature-256"), "{body}");
    let (st, _) = deliver("nope", &github("s3cret-hook", &payload), &payload);
    assert_eq!(st, 404);
    // Another branch: accepted, nothing runs.
    let other = payload.replace("refs/heads/main", "refs/heads/feature");
    let (st, body) = deliver("hook", &github("s3cret-hook", &other), &other);
    assert_eq!(st, 200, "{body}");
    assert!(runs_of(&s, "hook").is_empty());
    // The signed push starts a run of exactly that commit.
    let (st, body) = deliver("hook", &github("s3cret-hook", &payload), &payload);
    assert_eq!(st, 202, "{body}");
    let run = wait_task_run(&s, "hook");
    assert_eq!(run["status"], "Succeeded", "{run}");
    assert_eq!(run["trigger"]["type"], "commit");
    assert_eq!(run["trigger"]["commitId"], second.as_str());
    let log = run_log(&s, run["runId"].as_str().unwrap());
    assert!(log.contains(&format!("built {second} on main")), "{log}");
    // A redelivery of the same push starts nothing.
    let (st, body) = deliver("hook", &github("s3cret-hook", &payload), &payload);
    assert_eq!(st, 200, "{body}");
    assert_eq!(runs_of(&s, "hook").len(), 1);

    // Polling sees the new head and builds it.
    let run = wait_task_run(&s, "poll");
    assert_eq!(run["status"], "Succeeded", "{run}");
    assert_eq!(run["trigger"]["via"], "poll");
    assert_eq!(run["trigger"]["commitId"], second.as_str());
    let log = run_log(&s, run["runId"].as_str().unwrap());
    assert!(log.contains(&format!("built {second} on main")), "{log}");
}

fn hmac_sha256_hex(secret: &str, body: &str) -> String {
    slipway_core::tasks::webhook::sign(secret, body.as_bytes())
}

#[test]
fn set_secret_values_and_slipway_secrets_render_but_never_show() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let (st, v, _) = s.call(
        "PUT",
        "/admin/secrets/deploy-token",
        Some(json!({"kind": "generic", "value": "tok-from-store-31"})),
    );
    assert!(st == 200 || st == 201, "{v}");
    // The step checks the rendered values by their hash (the task file must
    // not hold them) and prints them, which the log must mask.
    let expected = {
        let out = Command::new("sh")
            .args([
                "-c",
                "echo 'hunter2-x/tok-from-store-31' | sha256sum | cut -d' ' -f1",
            ])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let task = tmp.path().join("acb.yaml");
    write(
        tmp.path(),
        &[(
            "acb.yaml",
            &format!(
                "secrets:\n  - id: tok\n    secret: deploy-token\nsteps:\n  - cmd: --entrypoint sh {BASE} -c 'echo v={{{{.Values.pw}}}} s={{{{.Secrets.tok}}}}; echo \"{{{{.Values.pw}}}}/{{{{.Secrets.tok}}}}\" | sha256sum | grep -q {expected}'\n"
            ),
        )],
    );
    let (code, out, err) = s.cli(&[
        "task",
        "create",
        "secretive",
        "--task-file-inline",
        task.to_str().unwrap(),
        "--set-secret",
        "pw=hunter2-x",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!out.contains("hunter2-x"), "{out}");
    let (code, out, err) = s.cli(&["task", "run", "secretive"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        !out.contains("hunter2-x") && !out.contains("tok-from-store-31"),
        "a secret reached the log:\n{out}"
    );
    assert!(out.contains("v=*** s=***"), "{out}");
    let (_, shown, _) = s.cli(&["task", "show", "secretive"]);
    assert!(!shown.contains("hunter2-x"), "{shown}");
    let (_, run, _) = s.cli(&["task", "show-run", "ca1"]);
    assert!(!run.contains("hunter2-x"), "{run}");
    let mut db = std::fs::read(s.data.join("slipway.db")).unwrap();
    db.extend(std::fs::read(s.data.join("slipway.db-wal")).unwrap_or_default());
    assert!(
        !String::from_utf8_lossy(&db).contains("hunter2-x"),
        "the secret value is stored in plain text"
    );
    // A missing Slipway secret fails the run naming it.
    write(
        tmp.path(),
        &[(
            "acb.yaml",
            &format!(
                "secrets:\n  - id: tok\n    secret: absent-secret\nsteps:\n  - cmd: {BASE} true\n"
            ),
        )],
    );
    let (code, out, _) = s.cli(&[
        "task",
        "create",
        "missing",
        "--task-file-inline",
        task.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = s.cli(&["task", "run", "missing"]);
    assert_ne!(code, 0);
    assert!(
        out.contains("Slipway secret 'absent-secret' does not exist"),
        "{out}"
    );
}

#[test]
fn a_base_image_in_another_registry_is_polled_and_its_new_digest_starts_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &tmp.path().join("data"),
        common::free_port(),
        &["--base-image-poll-seconds", "1-2"],
    );
    let ext = common::registry::Registry::start(&tmp.path().join("ext"), None);
    let base = ext.push(BASE, "base:1", None);
    let ctx = tmp.path().join("ctx");
    write(&ctx, &[("Dockerfile", &format!("FROM {base}\nRUN true\n"))]);
    let (code, out, err) = s.cli(&[
        "task",
        "create",
        "ext",
        "-c",
        ctx.to_str().unwrap(),
        "-t",
        "ext-app:{{.Run.ID}}",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = s.cli(&["task", "run", "ext"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let task = wait_task(&s, "ext", |v| {
        v["baseImageDependencies"][0]["registry"] == ext.host.as_str()
    });
    assert_eq!(
        task["baseImageDependencies"][0]["type"], "RunTime",
        "{task}"
    );
    // Polling the unchanged tag starts nothing; a new digest of it does.
    let changed = tmp.path().join("changed");
    write(
        &changed,
        &[("Dockerfile", &format!("FROM {BASE}\nLABEL rebuilt=yes\n"))],
    );
    let (ok, m) = podman(&[
        "build",
        "-q",
        "-t",
        "localhost/slipway-test/changed:1",
        changed.to_str().unwrap(),
    ]);
    assert!(ok, "{m}");
    ext.push("localhost/slipway-test/changed:1", "base:1", None);
    let triggered = poll(
        "a run after the base changed",
        Duration::from_secs(120),
        || {
            let runs = runs_of(&s, "ext");
            runs.iter()
                .find(|r| r["trigger"]["type"] == "imageUpdate")
                .cloned()
                .ok_or_else(|| format!("{runs:?}"))
        },
    );
    assert!(
        triggered["trigger"]["images"][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/base:1@sha256:", ext.host)),
        "{triggered}"
    );
    assert_eq!(
        wait_run(&s, triggered["runId"].as_str().unwrap())["status"],
        "Succeeded"
    );
    assert_eq!(runs_of(&s, "ext").len(), 2);
    podman(&["rmi", "--force", "localhost/slipway-test/changed:1"]);
}

#[test]
fn a_timer_trigger_fires_at_its_minute() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    write(
        tmp.path(),
        &[(
            "acb.yaml",
            &format!("steps:\n  - cmd: --entrypoint true {BASE}\n"),
        )],
    );
    let (code, out, err) = s.cli(&[
        "-o",
        "json",
        "task",
        "create",
        "cron",
        "--task-file-inline",
        tmp.path().join("acb.yaml").to_str().unwrap(),
        "--schedule",
        "* * * * *",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["timers"][0]["name"],
        "t1"
    );
    // Waits for the next minute boundary (at most 60 s).
    let run = wait_task_run(&s, "cron");
    assert_eq!(run["status"], "Succeeded", "{run}");
    assert_eq!(run["trigger"]["type"], "timer");
    assert_eq!(run["trigger"]["timerTriggerName"], "t1");
    let at = chrono::DateTime::parse_from_rfc3339(
        run["trigger"]["scheduleOccurrence"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(chrono::Timelike::second(&at), 0, "{run}");
    let created =
        chrono::DateTime::parse_from_rfc3339(run["createTime"].as_str().unwrap()).unwrap();
    let late = created - at;
    assert!(
        late >= chrono::Duration::zero() && late < chrono::Duration::seconds(5),
        "queued {late} after its minute: {run}"
    );
}

#[test]
fn step_ports_are_published_and_kept_containers_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let port = common::free_port();
    let task = format!(
        "steps:\n  - id: published-port-step\n    cmd: --entrypoint true {BASE}\n    ports: [\"127.0.0.1:{port}:8080\"]\n    expose: [\"9090\"]\n    keep: true\n"
    );
    let (st, run, _) = s.call(
        "POST",
        "/imageTasks/runs",
        Some(json!({ "encodedTask": task })),
    );
    assert_eq!(st, 202, "{run}");
    let run = wait_run(&s, run["runId"].as_str().unwrap());
    assert_eq!(run["status"], "Succeeded", "{run}");
    // This server's run (run ids repeat across data folders; the label does not).
    let label = slipway_tasks::exec::run_label(
        &slipway_runner::instance_id_for(&s.data),
        run["runId"].as_str().unwrap(),
    );
    let (ok, names) = podman(&[
        "ps",
        "-a",
        "--filter",
        &format!("label={}={label}", slipway_tasks::exec::RUN_LABEL),
        "--filter",
        "name=published-port-step",
        "--format",
        "{{.Names}}",
    ]);
    assert!(ok, "{names}");
    let name = names
        .lines()
        .next()
        .unwrap_or_else(|| panic!("the kept container is gone: {names}"))
        .to_string();
    let (ok, bindings) = podman(&[
        "inspect",
        "--format",
        "{{json .HostConfig.PortBindings}}",
        &name,
    ]);
    podman(&["rm", "-f", &name]);
    assert!(ok, "{bindings}");
    assert!(
        bindings.contains("8080/tcp") && bindings.contains(&port.to_string()),
        "{bindings}"
    );
}

#[test]
fn the_steps_and_networks_of_a_gone_server_are_removed_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let gone_data = tmp.path().join("gone/data");
    let mut gone = Server::start(&gone_data);
    let task = format!("steps:\n  - id: hold\n    cmd: --entrypoint sleep {BASE} 600\n");
    let (st, run, _) = gone.call(
        "POST",
        "/imageTasks/runs",
        Some(json!({ "encodedTask": task })),
    );
    assert_eq!(st, 202, "{run}");
    let id = run["runId"].as_str().unwrap();
    let instance = slipway_runner::instance_id_for(&gone_data);
    let label = format!("label=io.slipway.task-run={instance}.{id}");
    let running = || podman(&["ps", "--filter", &label, "--format", "{{.Names}}"]).1;
    common::poll(
        "the step running",
        Duration::from_secs(120),
        || match running().trim() {
            "" => Err("no step container yet".to_string()),
            _ => Ok(()),
        },
    );
    let (_, network) = podman(&["network", "ls", "--filter", &label, "--format", "{{.Name}}"]);
    let (_, bridge) = podman(&[
        "network",
        "inspect",
        network.trim(),
        "--format",
        "{{index .Labels \"io.slipway.bridge\"}}",
    ]);
    let bridge = bridge.trim().to_string();
    assert!(bridge.starts_with("slwb"), "the run's network: {bridge:?}");
    // The server dies and its folder goes: nobody can finish this run.
    gone.kill();
    std::fs::remove_dir_all(tmp.path().join("gone")).unwrap();
    // A step of a server whose folder still exists is not touched.
    let alive = format!("slw-alive-{}", std::process::id());
    let (ok, err) = podman(&[
        "create",
        "--name",
        &alive,
        "--label",
        "io.slipway.task-run=0000000000000000.1",
        "--label",
        &format!("dev.slipway.data-dir={}", tmp.path().display()),
        BASE,
        "true",
    ]);
    assert!(ok, "{err}");

    let _s = Server::start(&tmp.path().join("data"));
    common::poll(
        "the gone server's step and network removed",
        Duration::from_secs(60),
        || {
            let left = podman(&["ps", "-a", "--filter", &label, "--format", "{{.Names}}"]).1;
            let nets = podman(&["network", "ls", "--filter", &label, "--format", "{{.Name}}"]).1;
            match (left.trim(), nets.trim()) {
                ("", "") => Ok(()),
                _ => Err(format!("containers {left:?}, networks {nets:?}")),
            }
        },
    );
    let table = Command::new("nft")
        .args(["list", "table", "inet", &bridge])
        .output()
        .unwrap();
    assert!(
        !table.status.success(),
        "the run network's host filter table {bridge} is left"
    );
    assert!(
        podman(&["container", "exists", &alive]).0,
        "a step whose server's folder exists was removed"
    );
    let _ = podman(&["rm", "-f", &alive]);
}
