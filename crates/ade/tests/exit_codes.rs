//! `ade` exit codes outside a runner (ADE `exitCodeMap`): configuration and
//! input errors map to their ADE codes, never to a panic.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn ade(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ade"));
    cmd.args(args).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const FULL: [(&str, &str); 4] = [
    ("ADE_HTTP__ENDPOINT", "http://127.0.0.1:9/runner/v1"),
    (
        "ADE_HTTP__OPERATIONID",
        "00000000-0000-0000-0000-000000000001",
    ),
    ("ADE_HTTP__DEVCENTERID", "dc"),
    ("ADE_HTTP__TOKEN", "t"),
];

#[test]
fn missing_endpoint_is_invalid_endpoint() {
    let (code, err) = ade(&["environment"], &[]);
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("ADE_HTTP__ENDPOINT"), "{err}");
}

#[test]
fn missing_operation_id_is_invalid_operation_id() {
    let (code, err) = ade(&["environment"], &[FULL[0]]);
    assert_eq!(code, 10, "{err}");
}

#[test]
fn missing_devcenter_is_invalid_devcenter_id() {
    let (code, _) = ade(&["environment"], &[FULL[0], FULL[1]]);
    assert_eq!(code, 8);
}

#[test]
fn bad_arguments_are_invalid_cli_input() {
    assert_eq!(ade(&["files", "upload"], &FULL).0, 12);
    assert_eq!(ade(&["log"], &FULL).0, 12);
    assert_eq!(
        ade(&["log", "--content", "x", "--type", "loud"], &FULL).0,
        12
    );
    assert_eq!(ade(&["no-such-command"], &FULL).0, 12);
    assert_eq!(ade(&["--help"], &[]).0, 0);
}

#[test]
fn unreachable_server_is_request_failed_after_retries() {
    let mut env = FULL.to_vec();
    env.push(("ADE_HTTP__RETRYSECONDS", "0"));
    let (code, err) = ade(&["files", "list"], &env);
    assert_eq!(code, 11, "{err}");
}

#[test]
fn unreadable_local_file_is_file_operation_error() {
    let (code, err) = ade(
        &["outputs", "upload", "--file", "/nonexistent/outputs.json"],
        &FULL,
    );
    assert_eq!(code, 13, "{err}");
}
