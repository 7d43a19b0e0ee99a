//! The `slipway` CLI as a user drives it: live progress, outputs, exit codes.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{repo_root, Server};

#[test]
fn create_redeploy_fail_and_delete_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let catalog = repo_root().join("examples/catalog");
    for args in [
        vec!["admin", "project", "create", "demo"],
        vec!["admin", "environment-type", "create", "Dev"],
        vec!["admin", "project-environment-type", "create", "Dev"],
        vec![
            "catalog",
            "add",
            "examples",
            "--path",
            catalog.to_str().unwrap(),
        ],
    ] {
        let (code, out, err) = s.cli(&args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    }
    let (_, out, _) = s.cli(&["definition", "list"]);
    assert!(
        out.contains("HelloTerraform") && out.contains("FailingDeploy"),
        "{out}"
    );

    let create = [
        "env",
        "create",
        "app",
        "--environment-type",
        "Dev",
        "--catalog",
        "examples",
        "--definition",
        "HelloTerraform",
        "--param",
        "name=cli",
    ];
    let (code, out, err) = s.cli(&create);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Apply complete!"),
        "live log is printed: {out}"
    );
    assert!(out.contains("app_name (string) = \"cli\""), "{out}");

    let (code, out, err) = s.cli(&["env", "deploy", "app", "--param", "instance_count=2"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("instance_count (number) = 2"), "{out}");

    let (code, _, err) = s.cli(&["env", "deploy", "app", "--param", "instance_count=many"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("'instance_count'") && err.contains("expected integer"),
        "{err}"
    );

    let (code, out, err) = s.cli(&[
        "env",
        "create",
        "boom",
        "--environment-type",
        "Dev",
        "--catalog",
        "examples",
        "--definition",
        "FailingDeploy",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("DeploymentError"), "{err}");
    // Until the first log line arrives, a terminal shows a spinner (below);
    // a pipe gets none.
    assert!(!err.contains("waiting for the first output"), "{err}");

    let (code, screen) = on_a_terminal(&s, &["env", "delete", "app"]);
    assert_eq!(code, 0, "{screen}");
    assert!(
        screen.contains("waiting for the first output"),
        "a spinner while the operation is queued: {screen}"
    );
    let (_, out, _) = s.cli(&["env", "list"]);
    assert!(!out.contains("app ") && out.contains("boom"), "{out}");
}

/// Runs the CLI with `args` on a pseudo-terminal (util-linux `script`), as
/// a user at a terminal would: its exit code and everything the terminal
/// showed (stdout and stderr together).
fn on_a_terminal(s: &Server, args: &[&str]) -> (i32, String) {
    let mut line = shell_quote(env!("CARGO_BIN_EXE_slipway"));
    for a in args {
        line.push(' ');
        line.push_str(&shell_quote(a));
    }
    let out = Command::new("script")
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .env("SLIPWAY_SERVER", &s.base)
        .env("SLIPWAY_PROJECT", "demo")
        .env("SLIPWAY_TOKEN_FILE", s.data.join("admin.token"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn governance_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let catalog = repo_root().join("examples/catalog");
    let ok = |args: &[&str]| {
        let (code, out, err) = s.cli(args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        out
    };
    ok(&["admin", "project", "create", "demo"]);
    ok(&["admin", "environment-type", "create", "Dev"]);
    // JSON-valued secrets come from a file; a malformed one is refused locally.
    let cred = tmp.path().join("registry.json");
    std::fs::write(
        &cred,
        r#"{"server": "registry.example.com:5000", "username": "ci", "password": "cli-reg-pw-91f3"}"#,
    )
    .unwrap();
    ok(&[
        "admin",
        "secret",
        "set",
        "private-registry",
        "--kind",
        "registry",
        "--value-file",
        cred.to_str().unwrap(),
    ]);
    let out = ok(&["admin", "secret", "list"]);
    assert!(
        out.contains("private-registry") && out.contains("registry") && !out.contains("cli-reg-pw"),
        "{out}"
    );
    std::fs::write(&cred, "server=x").unwrap();
    let (code, _, err) = s.cli(&[
        "admin",
        "secret",
        "set",
        "bad",
        "--kind",
        "registry",
        "--value-file",
        cred.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("must be a JSON object"), "{err}");
    ok(&[
        "admin",
        "project-environment-type",
        "create",
        "Dev",
        "--max-environments-per-user",
        "3",
        "--user-role",
        "dana=Deployment Environments Reader",
    ]);
    ok(&[
        "catalog",
        "add",
        "examples",
        "--path",
        catalog.to_str().unwrap(),
    ]);
    let out = ok(&[
        "admin",
        "role",
        "assign",
        "dana",
        "--role",
        "Deployment Environments User",
        "--scope",
        "/projects/demo",
    ]);
    assert!(out.contains("Deployment Environments User"), "{out}");
    let out = ok(&["admin", "role", "list", "--project", "demo"]);
    assert!(
        out.contains("/projects/demo/environmentTypes/Dev") && out.contains("dana"),
        "{out}"
    );
    let token = ok(&[
        "admin",
        "token",
        "create",
        "--user",
        "dana",
        "--expires-in-days",
        "1",
    ]);
    let token = token.trim();
    assert!(token.starts_with("slw_"), "{token}");

    // Dana creates an environment that expires, then manages its delete action.
    let dana = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(args)
            .env("SLIPWAY_SERVER", &s.base)
            .env("SLIPWAY_PROJECT", "demo")
            .env("SLIPWAY_TOKEN", token)
            .output()
            .unwrap()
    };
    let out = dana(&[
        "env",
        "create",
        "mine",
        "--environment-type",
        "Dev",
        "--catalog",
        "examples",
        "--definition",
        "HelloTerraform",
        "--param",
        "name=x",
        "--expiration",
        "2099-01-01T00:00:00Z",
        "--no-wait",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = dana(&[
        "env",
        "update-expiration",
        "mine",
        "--expiration",
        "2098-06-01T00:00:00Z",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = dana(&["env", "list-actions", "mine"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mine-Delete") && text.contains("2098-06-01T00:00:00.000Z"),
        "{text}"
    );
    let out = dana(&[
        "env",
        "delay-action",
        "mine",
        "--until",
        "2098-07-01T00:00:00Z",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2098-07-01"),
        "{out:?}"
    );
    let out = dana(&["env", "skip-action", "mine"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Dana may not read the audit log; the admin sees her calls in it.
    let out = dana(&["admin", "audit"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP 403") && err.contains("'DevCenter Admin'"),
        "{err}"
    );
    let out = ok(&["admin", "audit", "--project", "demo", "--user", "dana"]);
    assert!(
        out.contains("POST /projects/demo/users/me/environments/mine/actions/mine-Delete:skip"),
        "{out}"
    );
    let out = ok(&["admin", "token", "list", "--user", "dana"]);
    let id = out
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    ok(&["admin", "token", "revoke", &id]);
    let out = dana(&["env", "list"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("HTTP 401"),
        "{out:?}"
    );
}

#[test]
fn serve_refuses_a_ca_file_it_cannot_use_and_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = tmp.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .arg("--ca-file")
        .arg(&ca)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "CA file '{}': no CERTIFICATE block found",
            ca.display()
        )),
        "{err}"
    );
}

/// Pids of processes whose command line mentions `needle`.
fn pids_mentioning(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn a_killed_server_leaves_no_registry_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start(&data);
    let config = data.join("registry/config.yml").display().to_string();
    let running = pids_mentioning(&config);
    assert_eq!(running.len(), 1, "one docker-registry serves {config}");
    s.kill(); // SIGKILL: the server gets no chance to clean up
    common::poll(
        "the embedded registry ends with its server",
        std::time::Duration::from_secs(30),
        || {
            let left = pids_mentioning(&config);
            // A zombie reaped by init still shows briefly; its cmdline is empty.
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?} still running"))
            }
        },
    );
}

#[test]
fn completion_scripts_cover_every_command_group_and_survive_a_closed_pipe() {
    for (shell, marker) in [
        ("bash", "complete -F _slipway"),
        ("zsh", "#compdef slipway"),
        ("fish", "complete -c slipway"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {script:.200}");
        for group in ["admin", "catalog", "env", "task", "vm-image", "registry"] {
            assert!(script.contains(group), "{shell} lacks {group}");
        }
    }
    // `slipway completion bash | head -1`: the reader goes away early.
    let mut child = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["completion", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_command_group_honours_the_output_format() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    s.setup_project();
    let (st, v, _) = s.call(
        "PUT",
        "/imageTemplates/web",
        Some(serde_json::json!({"properties": {
            "source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12", "version": "latest"},
            "customize": [{"type": "Shell", "name": "s", "inline": ["true"]}],
            "distribute": [{"type": "Raw", "runOutputName": "raw"}]
        }})),
    );
    assert_eq!(st, 201, "{v}");

    let (code, out, err) = s.cli(&["-o", "yaml", "task", "list"]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_yaml_ng::from_str(&out).unwrap();
    assert_eq!(doc["value"], serde_json::json!([]), "{out}");

    let (code, out, err) = s.cli(&["-o", "json", "vm-image", "template", "list"]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["value"][0]["name"], "web", "{out}");
    let (code, out, err) = s.cli(&["vm-image", "template", "list"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.lines().next().unwrap().contains("name") && out.contains("web"),
        "a table: {out}"
    );
    let (code, out, err) = s.cli(&["-o", "yaml", "vm-image", "template", "show", "web"]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_yaml_ng::from_str(&out).unwrap();
    assert_eq!(doc["name"], "web", "{out}");

    // Triggers: a template built FROM a gallery's latest version takes
    // one, and so does `web` (a platform image's latest version).
    let (st, v, _) = s.call(
        "PUT",
        "/imageTemplates/app",
        Some(serde_json::json!({"properties": {
            "source": {"type": "SharedImageVersion", "imageVersionId": "/slipway/galleries/g/images/base/versions/latest"},
            "distribute": [{"type": "Raw", "runOutputName": "raw"}]
        }})),
    );
    assert_eq!(st, 201, "{v}");
    let (code, out, err) = trigger_cli(&s, "create", "app", "on-base");
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["properties"]["kind"], "SourceImage", "{out}");
    assert_eq!(doc["properties"]["status"]["code"], "Healthy", "{out}");
    let (code, out, err) = s.cli(&["vm-image", "trigger", "list", "--template", "app"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("on-base"), "{out}");
    let (code, out, err) = trigger_cli(&s, "create", "web", "t");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Following platform image 'Debian:debian-12:12' (latest)"),
        "{out}"
    );
    let (code, out, err) = trigger_cli(&s, "delete", "web", "t");
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = trigger_cli(&s, "delete", "app", "on-base");
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = trigger_cli(&s, "show", "app", "on-base");
    assert_ne!(code, 0);
    assert!(err.contains("not found"), "{err}");

    let (code, out, err) = s.cli(&["-o", "table", "env", "list", "--project", "demo"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = s.cli(&["-o", "yaml", "env", "list", "--project", "demo"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        serde_yaml_ng::from_str::<serde_json::Value>(&out).is_ok(),
        "{out}"
    );
}

/// `slipway -o json vm-image trigger VERB --template TEMPLATE --name NAME`:
/// exit code, stdout, stderr.
fn trigger_cli(s: &Server, verb: &str, template: &str, name: &str) -> (i32, String, String) {
    s.cli(&[
        "-o",
        "json",
        "vm-image",
        "trigger",
        verb,
        "--template",
        template,
        "--name",
        name,
    ])
}

#[test]
fn exit_codes_say_what_kind_of_failure_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    s.setup_project();
    // 3: not found.
    let (code, _, err) = s.cli(&["env", "show", "nope", "--project", "demo"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("EnvironmentNotFound"), "{err}");
    // 2: a request the server finds invalid, and a bad command line.
    let (code, _, err) = s.cli(&["admin", "project", "create", "bad name!"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = s.cli(&["env", "--no-such-flag"]);
    assert_eq!(code, 2, "{err}");
    // 4: no token, or one without the role.
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["--server", &s.base, "admin", "project", "list"])
        .env_remove("SLIPWAY_TOKEN")
        .env_remove("SLIPWAY_TOKEN_FILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    // 6: nothing listens there.
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args([
            "--server",
            &format!("http://127.0.0.1:{}", common::free_port()),
            "--token",
            "slw_x",
            "admin",
            "project",
            "list",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{out:?}");
}

/// An exited runner whose server (and data folder) is gone is removed by
/// the next server that starts on the engine; one whose server's folder
/// still exists is left to that server.
#[test]
fn exited_runners_of_a_gone_server_are_removed_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let tag = format!("{}", std::process::id());
    let podman = |args: &[&str]| {
        let out = Command::new("podman").args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let runner = |name: &str, data_dir: &str| {
        let (ok, err) = podman(&[
            "run",
            "--name",
            name,
            "--label",
            &format!("dev.slipway.operation=test-{name}"),
            "--label",
            "dev.slipway.instance=0000000000000000",
            "--label",
            &format!("dev.slipway.data-dir={data_dir}"),
            "localhost/slipway/debian:bookworm",
            "true",
        ]);
        assert!(ok, "podman run {name}: {err}");
    };
    let gone = format!("slipway-op-gone-{tag}");
    let kept = format!("slipway-op-kept-{tag}");
    let gone_dir = tmp.path().join("gone-server");
    runner(&gone, &gone_dir.display().to_string());
    runner(&kept, &tmp.path().display().to_string());

    let _s = Server::start(&tmp.path().join("data"));
    common::poll(
        "the gone server's runner removed",
        std::time::Duration::from_secs(60),
        || match podman(&["container", "exists", &gone]).0 {
            false => Ok(()),
            true => Err(format!("{gone} still exists")),
        },
    );
    assert!(
        podman(&["container", "exists", &kept]).0,
        "a runner whose server's folder exists was removed"
    );
    let _ = podman(&["rm", "-f", &kept]);
}

/// `slipway runner test …` with `--state state`; returns exit code and
/// stdout + stderr.
fn runner_test(state: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["runner", "test"])
        .args(args)
        .arg("--state")
        .arg(state)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn runner_test_deploys_redeploys_and_deletes_a_definition_with_no_server() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let definition = repo_root().join("examples/catalog/HelloTerraform");
    let definition = definition.to_str().unwrap();
    let (code, out) = runner_test(
        &state,
        &["Terraform", "--definition", definition, "-p", "name=first"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Apply complete! Resources: 2 added"), "{out}");
    assert!(out.contains("app_name (string) = \"first\""), "{out}");
    assert!(out.contains(": Succeeded"), "{out}");

    // The state folder kept the environment and its Terraform state.
    let (code, out) = runner_test(
        &state,
        &["Terraform", "--definition", definition, "-p", "name=second"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Plan: 0 to add, 2 to change"), "{out}");
    assert!(out.contains("app_name (string) = \"second\""), "{out}");

    let (code, out) = runner_test(
        &state,
        &[
            "Terraform",
            "--definition",
            definition,
            "--operation",
            "delete",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 destroyed"), "{out}");

    // A failing deploy fails the command, with the runner's error.
    let failing = tmp.path().join("Failing");
    std::fs::create_dir_all(&failing).unwrap();
    std::fs::write(
        failing.join("environment.yaml"),
        "name: Failing\ntemplatePath: main.tf\n",
    )
    .unwrap();
    std::fs::write(failing.join("main.tf"), "this is not terraform\n").unwrap();
    let (code, out) = runner_test(
        &state,
        &["Terraform", "--definition", failing.to_str().unwrap()],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Failed"), "{out}");

    let (code, out) = runner_test(&state, &["Core", "--definition", "/no/such/folder"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("--definition '/no/such/folder'"), "{out}");
}

/// `slipway task render` with no server: a task file rendered with a
/// values file, `--set` (which wins over the file, as in acb) and run
/// variables, printed with its plan (v1.1.0 command aliases expanded);
/// `-o json` gives the same as data; a file a run would refuse is refused
/// with the same message.
#[test]
fn task_render_prints_the_rendered_yaml_and_the_plan_without_a_server() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("acb.yaml"),
        r#"version: v1.1.0
# a comment line acb drops
steps:
{{- range $i, $img := .Values.images}}
  - id: build-{{$img}}
    build: -t {{$.Run.Registry}}/{{$img}}:{{$.Values.tag}}-{{printf "%05d" $i}} .
{{- end}}
  - id: test
    cmd: bash echo testing {{.Run.ID}} on {{.Values.os}}
    env:{{.Values.envs | nindent 6}}
    when: [build-web, build-api]
  - push: ["{{.Run.Registry}}/web:{{.Values.tag}}-00000"]
"#,
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("values.yaml"),
        "tag: v1\nos: linux\nimages: [web, api]\nenvs: |-\n  - A=1\n  - B=2\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("bad.yaml"),
        "steps:\n  - cmd: {{.Values.x\n",
    )
    .unwrap();
    let render = |global: &[&str], args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(global)
            .args(["task", "render", "-c"])
            .arg(tmp.path())
            .args(args)
            .env("SLIPWAY_SERVER", "http://127.0.0.1:9")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = render(
        &[],
        &[
            "--values",
            "values.yaml",
            "--set",
            "tag=v2",
            "--id",
            "ca7",
            "-r",
            "reg.example.com",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("build: -t reg.example.com/web:v2-00000 ."),
        "{out}"
    );
    assert!(
        out.contains("build: -t reg.example.com/api:v2-00001 ."),
        "{out}"
    );
    assert!(out.contains("cmd: bash echo testing ca7 on linux"), "{out}");
    assert!(
        out.contains("    env:\n      - A=1\n      - B=2\n"),
        "{out}"
    );
    assert!(!out.contains("a comment line"), "{out}");
    assert!(out.contains("# plan: 4 step(s)"), "{out}");
    assert!(
        out.contains("mcr.microsoft.com/acr/bash:") && out.contains("echo testing ca7 on linux"),
        "the bash alias is expanded in the plan: {out}"
    );

    let (code, out, err) = render(&["-o", "json"], &["--values", "values.yaml"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["yaml"].as_str().unwrap().contains("web:v1-00000"), "{v}");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4, "{v}");
    assert_eq!(steps[0]["kind"], "build");
    assert_eq!(steps[0]["id"], "build-web");
    assert_eq!(
        steps[2]["after"],
        serde_json::json!(["build-web", "build-api"])
    );
    assert_eq!(steps[3]["kind"], "push");
    assert_eq!(steps[3]["what"], "localhost:5000/web:v1-00000");

    let (code, _, err) = render(&[], &["-f", "bad.yaml"]);
    assert_ne!(code, 0);
    assert!(err.contains("error:") && err.contains("template"), "{err}");
    let (code, _, err) = render(&[], &["-f", "../outside.yaml"]);
    assert_ne!(code, 0);
    assert!(err.contains("task file '../outside.yaml'"), "{err}");
}
