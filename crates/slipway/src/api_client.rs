//! Blocking HTTP client for the Slipway API.

use std::io::Read;

use anyhow::{anyhow, Context};
use serde_json::Value;

/// A progress bar on stderr for a transfer of `len` bytes (0: unknown),
/// or `None` when stderr is not a terminal (scripts and logs stay clean)
/// or the transfer is small (under 1 MiB).
fn progress_bar(len: u64, what: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() || (len > 0 && len < 1 << 20) {
        return None;
    }
    let bar = if len > 0 {
        indicatif::ProgressBar::new(len)
    } else {
        indicatif::ProgressBar::no_length()
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    Some(bar)
}

/// A spinner on stderr saying `what` until the first output of a log being
/// followed arrives (a queued operation, a run waiting for its slot), or
/// `None` when stderr is not a terminal. Drawn at once, then every 120 ms;
/// dropping it clears it.
fn waiting_spinner(what: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let spinner =
        indicatif::ProgressBar::new_spinner().with_finish(indicatif::ProgressFinish::AndClear);
    spinner.set_message(what.to_string());
    spinner.tick();
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(spinner)
}

/// Percent-encodes `v` for a URL path segment or query value: RFC 3986
/// unreserved characters (`A-Z a-z 0-9 - . _ ~`) pass, every other byte
/// becomes `%XX`.
pub fn escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A request the server refused (`status`) or that did not reach it
/// (`None`); [`ApiFailure::exit_code`] maps it to the CLI's exit code.
#[derive(Debug)]
pub struct ApiFailure {
    /// HTTP status of the refusal; `None`: the server was not reached.
    pub status: Option<u16>,
    /// What failed, with the server's `{code, message}` and details.
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiFailure {}

/// Exit codes of client commands (documented in `slipway --help`); 0:
/// the command did what it was asked and what it waited for succeeded.
pub mod exit {
    /// An operation or run it waited for ended Failed or Canceled, or
    /// another error.
    pub const FAILED: u8 = 1;
    /// Bad command line, or a request the server found invalid (HTTP 400).
    pub const USAGE: u8 = 2;
    /// Something named does not exist (HTTP 404).
    pub const NOT_FOUND: u8 = 3;
    /// Not signed in or not allowed (HTTP 401/403).
    pub const REFUSED: u8 = 4;
    /// Conflicts with the current state (HTTP 409), e.g. already running.
    pub const CONFLICT: u8 = 5;
    /// The server could not be reached or failed (HTTP 5xx).
    pub const UNAVAILABLE: u8 = 6;
}

impl ApiFailure {
    /// The exit code for this failure (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self.status {
            None => exit::UNAVAILABLE,
            Some(400 | 413 | 415 | 422) => exit::USAGE,
            Some(404) => exit::NOT_FOUND,
            Some(401 | 403) => exit::REFUSED,
            Some(409) => exit::CONFLICT,
            Some(s) if s >= 500 => exit::UNAVAILABLE,
            Some(_) => exit::FAILED,
        }
    }
}

/// A response: the `Operation-Location` header and the body.
pub struct Reply {
    /// `Operation-Location` header, if any.
    pub operation_location: Option<String>,
    /// Body text.
    pub body: String,
}

impl Reply {
    /// The body as wire type `T` (`slipway_wire`).
    ///
    /// Errors: the body is not a `T` (the message quotes it).
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_str(&self.body).with_context(|| {
            format!(
                "server sent an unexpected answer (expected {}): {}",
                std::any::type_name::<T>(),
                self.body
            )
        })
    }

    /// The body as JSON (`null` when empty).
    pub fn json(&self) -> anyhow::Result<Value> {
        if self.body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&self.body)
            .with_context(|| format!("server sent invalid JSON: {}", self.body))
    }
}

enum Body<'a> {
    Json(&'a Value),
    Bytes(&'a [u8]),
}

/// Client bound to a server and an API token.
pub struct ApiClient {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    /// Creates a client for `base` (e.g. `http://127.0.0.1:7878`) sending
    /// `token` as `Authorization: Bearer`.
    pub fn new(base: &str, token: Option<String>) -> Self {
        ApiClient {
            agent: ureq::AgentBuilder::new().build(),
            base: base.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// Sends a request; non-2xx answers become errors carrying the server's `{code, message}`.
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Reply> {
        self.send_body(method, path, body.map(Body::Json))
    }

    /// Sends raw bytes (e.g. a context tarball) as `application/octet-stream`.
    pub fn send_bytes(&self, method: &str, path: &str, bytes: &[u8]) -> anyhow::Result<Reply> {
        self.send_body(method, path, Some(Body::Bytes(bytes)))
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Body<'_>>,
    ) -> anyhow::Result<ureq::Response> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.request(method, &url);
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let res = match body {
            Some(Body::Json(b)) => req.send_json(b),
            Some(Body::Bytes(b)) => {
                let req = req.set("Content-Type", "application/octet-stream");
                match progress_bar(b.len() as u64, "uploading") {
                    Some(bar) => {
                        let sent = req
                            .set("Content-Length", &b.len().to_string())
                            .send(bar.wrap_read(std::io::Cursor::new(b)));
                        bar.finish_and_clear();
                        sent
                    }
                    None => req.send_bytes(b),
                }
            }
            None => req.call(),
        };
        match res {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(status, r)) => {
                let text = r.into_string().unwrap_or_default();
                let detail = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| {
                        let e = v.get("error")?;
                        let mut msg = format!(
                            "{}: {}",
                            e.get("code")?.as_str()?,
                            e.get("message")?.as_str()?
                        );
                        if let Some(details) = e.get("details").and_then(Value::as_array) {
                            for d in details {
                                if let Some(m) = d.get("message").and_then(Value::as_str) {
                                    msg.push_str(&format!("\n  - {m}"));
                                }
                            }
                        }
                        Some(msg)
                    })
                    .unwrap_or(text);
                Err(ApiFailure {
                    status: Some(status),
                    message: format!("{method} {path} failed (HTTP {status}): {detail}"),
                }
                .into())
            }
            Err(ureq::Error::Transport(t)) => Err(ApiFailure {
                status: None,
                message: format!("cannot reach the Slipway server at {}: {t}", self.base),
            }
            .into()),
        }
    }

    fn send_body(&self, method: &str, path: &str, body: Option<Body<'_>>) -> anyhow::Result<Reply> {
        let resp = self.request(method, path, body)?;
        Ok(Reply {
            operation_location: resp.header("operation-location").map(str::to_string),
            body: resp.into_string().context("reading the response")?,
        })
    }

    /// GETs `path` into `dest` (temp file + rename); returns the bytes written.
    pub fn download(&self, path: &str, dest: &std::path::Path) -> anyhow::Result<u64> {
        let resp = self.request("GET", path, None)?;
        let tmp = dest.with_extension("partial");
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let len = resp
            .header("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut reader = resp.into_reader();
        let n = match progress_bar(len, "downloading") {
            Some(bar) => {
                let copied = std::io::copy(&mut bar.wrap_read(reader), &mut f);
                bar.finish_and_clear();
                copied
            }
            None => std::io::copy(&mut reader, &mut f),
        }
        .with_context(|| format!("downloading {path}"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, dest).with_context(|| format!("writing {}", dest.display()))?;
        Ok(n)
    }

    /// Follows the log at `path` (an operation, task-run or VM image run
    /// log route): streams `?follow=true` into `out`, flushing every chunk,
    /// until the server ends the stream because the run has ended. A
    /// connection that breaks mid-stream is resumed from the last byte
    /// received (up to 5 times in a row), so nothing is printed twice.
    ///
    /// Errors: the server's refusal, or a connection that keeps failing.
    pub fn follow_log(&self, path: &str, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut offset = 0u64;
        let mut failures = 0;
        let mut spinner = waiting_spinner("waiting for the first output…");
        loop {
            let resp = self.request(
                "GET",
                &format!("{path}{sep}follow=true&offset={offset}"),
                None,
            )?;
            let mut reader = resp.into_reader();
            let mut buf = [0u8; 8192];
            let broken = loop {
                match reader.read(&mut buf) {
                    Ok(0) => break None,
                    Ok(n) => {
                        drop(spinner.take());
                        out.write_all(&buf[..n])?;
                        out.flush()?;
                        offset += n as u64;
                        failures = 0;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Some(e),
                }
            };
            match broken {
                None => return Ok(()),
                Some(e) if failures >= 5 => {
                    return Err(anyhow!(
                        "following {path}: the connection keeps breaking: {e}"
                    ))
                }
                Some(_) => failures += 1,
            }
        }
    }

    /// GET → JSON.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send("GET", path, None)?.json()
    }

    /// GET → wire type `T`.
    pub fn get_as<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send("GET", path, None)?.parse()
    }

    /// Sends wire type `body` as JSON.
    pub fn send_typed<B: serde::Serialize>(
        &self,
        method: &str,
        path: &str,
        body: &B,
    ) -> anyhow::Result<Reply> {
        let v = serde_json::to_value(body).context("encoding the request")?;
        self.send(method, path, Some(&v))
    }
}
