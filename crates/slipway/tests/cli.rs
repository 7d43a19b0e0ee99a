//! The `slipway` CLI as a user drives it: live progress, outputs, exit codes.

mod common;

use std::process::Command;

use common::{repo_root, Server};

fn slipway(s: &Server, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(args)
        .env("SLIPWAY_SERVER", &s.base)
        .env("SLIPWAY_PROJECT", "demo")
        .env("SLIPWAY_TOKEN_FILE", s.data.join("admin.token"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

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
        let (code, out, err) = slipway(&s, &args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    }
    let (_, out, _) = slipway(&s, &["definition", "list"]);
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
    let (code, out, err) = slipway(&s, &create);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Apply complete!"),
        "live log is printed: {out}"
    );
    assert!(out.contains("app_name (string) = \"cli\""), "{out}");

    let (code, out, err) = slipway(&s, &["env", "deploy", "app", "--param", "instance_count=2"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("instance_count (number) = 2"), "{out}");

    let (code, _, err) = slipway(
        &s,
        &["env", "deploy", "app", "--param", "instance_count=many"],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("'instance_count'") && err.contains("expected integer"),
        "{err}"
    );

    let (code, out, err) = slipway(
        &s,
        &[
            "env",
            "create",
            "boom",
            "--environment-type",
            "Dev",
            "--catalog",
            "examples",
            "--definition",
            "FailingDeploy",
        ],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("DeploymentError"), "{err}");

    let (code, out, err) = slipway(&s, &["env", "delete", "app"]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, out, _) = slipway(&s, &["env", "list"]);
    assert!(!out.contains("app ") && out.contains("boom"), "{out}");
}
