//! `ade execute`: run a command, mirror its stdout/stderr to ours and stream
//! both to the operation log while it runs; exit with its exit code.
//!
//! Exported-variable changes of a bash script are written to `/tmp/diff.sh`
//! (path: `ADE_DIFF_FILE`) as `export`/`unset` lines, so `source /tmp/diff.sh`
//! imports them (ADE core `shared/commands.sh` `executeCommand`). The capture
//! uses `BASH_ENV` to install an EXIT trap in the top-level script; a script
//! that sets its own EXIT trap, or is not run by bash, yields an empty diff.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use slipway_core::protocol::{AdeExitCode, LogEntry, LogType};

use crate::client::{CliError, Client};

const HOOK: &str = r#"if [ -n "$ADE_EXEC_ORIG_BASH_ENV" ] && [ -f "$ADE_EXEC_ORIG_BASH_ENV" ]; then . "$ADE_EXEC_ORIG_BASH_ENV"; fi
trap 'env -0 > "$ADE_EXEC_ENV_CAPTURE" 2>/dev/null' EXIT
unset BASH_ENV
"#;

const INTERNAL: [&str; 8] = [
    "ADE_EXEC_ENV_CAPTURE",
    "ADE_EXEC_ORIG_BASH_ENV",
    "BASH_ENV",
    "_",
    "SHLVL",
    "PWD",
    "OLDPWD",
    "BASHOPTS",
];

fn pump<R: Read + Send + 'static>(
    reader: R,
    tx: mpsc::Sender<String>,
    mut mirror: Box<dyn Write + Send>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let _ = mirror.write_all(&buf);
                    let _ = mirror.flush();
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches('\n')
                        .to_string();
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

/// Runs `command` (program + args; a single string with spaces that is not a
/// file runs through `/bin/sh -c`) and returns its exit code (128+signal when killed).
pub fn execute(client: &Client, command: &[String]) -> Result<u8, CliError> {
    let Some(first) = command.first() else {
        return Err(CliError::new(
            AdeExitCode::InvalidCliInput,
            "--command is required",
        ));
    };
    let mut cmd = if command.len() == 1
        && first.contains(char::is_whitespace)
        && !Path::new(first).exists()
    {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(first);
        c
    } else {
        let mut c = Command::new(first);
        c.args(&command[1..]);
        c
    };
    let pid = std::process::id();
    let tmp = std::env::temp_dir();
    let hook = tmp.join(format!("ade-exec-hook-{pid}.sh"));
    let capture = tmp.join(format!("ade-exec-env-{pid}"));
    std::fs::write(&hook, HOOK).map_err(|e| {
        CliError::new(
            AdeExitCode::FileOperationError,
            format!("{}: {e}", hook.display()),
        )
    })?;
    let _ = std::fs::remove_file(&capture);
    if let Ok(orig) = std::env::var("BASH_ENV") {
        cmd.env("ADE_EXEC_ORIG_BASH_ENV", orig);
    }
    cmd.env("BASH_ENV", &hook)
        .env("ADE_EXEC_ENV_CAPTURE", &capture);
    cmd.stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        CliError::new(
            AdeExitCode::FileOperationError,
            format!("cannot run '{}': {e}", command.join(" ")),
        )
    })?;
    let (tx, rx) = mpsc::channel();
    let out = child
        .stdout
        .take()
        .map(|s| pump(s, tx.clone(), Box::new(std::io::stdout())));
    let err = child
        .stderr
        .take()
        .map(|s| pump(s, tx.clone(), Box::new(std::io::stderr())));
    drop(tx);

    // Ship lines in batches: every 250 ms or 64 KiB, whichever comes first.
    let mut batch = String::new();
    let mut last = Instant::now();
    let mut send_failed = None;
    let mut flush = |batch: &mut String| {
        if !batch.is_empty() && send_failed.is_none() {
            let content = std::mem::take(batch);
            if let Err(e) = client.post_json(
                "logs",
                &LogEntry {
                    log_type: LogType::Log,
                    content,
                },
            ) {
                send_failed = Some(e);
            }
        }
        batch.clear();
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(line) => {
                batch.push_str(&line);
                batch.push('\n');
                if batch.len() >= 64 * 1024 || last.elapsed() >= Duration::from_millis(250) {
                    flush(&mut batch);
                    last = Instant::now();
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                flush(&mut batch);
                last = Instant::now();
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    flush(&mut batch);
    for h in [out, err].into_iter().flatten() {
        let _ = h.join();
    }
    let status = child.wait().map_err(|e| {
        CliError::new(
            AdeExitCode::UnknownError,
            format!("waiting for the command: {e}"),
        )
    })?;
    write_diff(&capture);
    let _ = std::fs::remove_file(&hook);
    let _ = std::fs::remove_file(&capture);
    if let Some(e) = send_failed {
        eprintln!(
            "ade: could not stream output to the operation log: {}",
            e.message
        );
    }
    let code = match status.code() {
        Some(c) => c,
        None => {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        }
    };
    Ok(u8::try_from(code).unwrap_or(1))
}

fn parse_env0(bytes: &[u8]) -> BTreeMap<String, String> {
    bytes
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let s = String::from_utf8_lossy(entry);
            let (k, v) = s.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// Writes `export`/`unset` lines for what the script changed relative to our environment.
fn write_diff(capture: &Path) {
    let target = std::env::var("ADE_DIFF_FILE").unwrap_or_else(|_| "/tmp/diff.sh".into());
    let mut lines = String::from("# variables exported by the last `ade execute`\n");
    if let Ok(bytes) = std::fs::read(capture) {
        let after = parse_env0(&bytes);
        let before: BTreeMap<String, String> = std::env::vars().collect();
        for (k, v) in &after {
            if INTERNAL.contains(&k.as_str())
                || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                continue;
            }
            if before.get(k) != Some(v) {
                lines.push_str(&format!("export {k}={}\n", slipway_core::shell::quote(v)));
            }
        }
        for k in before.keys() {
            if !after.contains_key(k) && !INTERNAL.contains(&k.as_str()) {
                lines.push_str(&format!("unset {k}\n"));
            }
        }
    }
    let tmp = format!("{target}.tmp-{}", std::process::id());
    if std::fs::write(&tmp, lines).is_ok() {
        let _ = std::fs::rename(&tmp, &target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env0_parsing() {
        let m = parse_env0(b"A=1\0B=x=y\0\0");
        assert_eq!(m.get("A").map(String::as_str), Some("1"));
        assert_eq!(m.get("B").map(String::as_str), Some("x=y"));
    }
}
