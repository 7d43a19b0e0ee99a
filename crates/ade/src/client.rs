//! HTTP client for the runner API, with ADE exit-code mapping.
//!
//! Status → exit code: 401/403 → 15 SecurityError, 413 → 14
//! EnvironmentStorageExceeded, 404 on the operation → 10 InvalidOperationId,
//! other failures → 11 RequestFailed. Connection failures are retried for up
//! to `ADE_HTTP__RETRYSECONDS` (default 120) so a control-plane restart does
//! not fail a running deployment.

// `ureq::Error` is ureq's own (large) type; boxing it at every call site buys nothing here.
#![allow(clippy::result_large_err)]

use std::time::{Duration, Instant};

use slipway_core::protocol::{
    AdeExitCode, ENV_DEVCENTER_ID, ENV_ENDPOINT, ENV_OPERATION_ID, ENV_TOKEN,
};

/// A CLI failure: exit code plus message.
#[derive(Debug)]
pub struct CliError {
    /// Exit code.
    pub code: AdeExitCode,
    /// Message for stderr.
    pub message: String,
}

impl CliError {
    /// Builds an error.
    pub fn new(code: AdeExitCode, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }
}

/// Runner API client bound to one operation.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
    retry_for: Duration,
}

fn required_env(name: &str, code: AdeExitCode) -> Result<String, CliError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| {
            CliError::new(
                code,
                format!("{name} is not set; ade runs inside a runner started by Slipway"),
            )
        })
}

impl Client {
    /// Reads the endpoint, operation id, dev center id and token from the environment.
    pub fn from_env() -> Result<Client, CliError> {
        let endpoint = required_env(ENV_ENDPOINT, AdeExitCode::InvalidEndpoint)?;
        if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
            return Err(CliError::new(
                AdeExitCode::InvalidEndpoint,
                format!("{ENV_ENDPOINT} '{endpoint}' is not an http(s) URL"),
            ));
        }
        let op = required_env(ENV_OPERATION_ID, AdeExitCode::InvalidOperationId)?;
        required_env(ENV_DEVCENTER_ID, AdeExitCode::InvalidDevCenterId)?;
        let token = required_env(ENV_TOKEN, AdeExitCode::SecurityError)?;
        let retry_for = std::env::var("ADE_HTTP__RETRYSECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(120);
        Ok(Client {
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(5))
                .timeout(Duration::from_secs(600))
                .build(),
            base: format!("{}/operations/{op}/", endpoint.trim_end_matches('/')),
            token,
            retry_for: Duration::from_secs(retry_for),
        })
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        send: impl Fn(ureq::Request) -> Result<ureq::Response, ureq::Error>,
    ) -> Result<ureq::Response, CliError> {
        let url = format!("{}{path}", self.base);
        let started = Instant::now();
        let mut delay = Duration::from_millis(200);
        loop {
            let req = self
                .agent
                .request(method, &url)
                .set("Authorization", &format!("Bearer {}", self.token));
            match send(req) {
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(status, resp)) => {
                    if matches!(status, 502..=504) && started.elapsed() < self.retry_for {
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_secs(5));
                        continue;
                    }
                    let body = resp.into_string().unwrap_or_default();
                    let code = match status {
                        401 | 403 => AdeExitCode::SecurityError,
                        413 => AdeExitCode::EnvironmentStorageExceeded,
                        _ => AdeExitCode::RequestFailed,
                    };
                    return Err(CliError::new(
                        code,
                        format!("{method} {path} failed with HTTP {status}: {body}"),
                    ));
                }
                Err(ureq::Error::Transport(t)) => {
                    if started.elapsed() < self.retry_for {
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_secs(5));
                        continue;
                    }
                    return Err(CliError::new(
                        AdeExitCode::RequestFailed,
                        format!("{method} {path}: {t}"),
                    ));
                }
            }
        }
    }

    /// GET and decode JSON.
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let resp = self.call("GET", path, |r| r.call())?;
        resp.into_json().map_err(|e| {
            CliError::new(
                AdeExitCode::RequestFailed,
                format!("GET {path}: bad JSON: {e}"),
            )
        })
    }

    /// GET raw bytes.
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, CliError> {
        let resp = self.call("GET", path, |r| r.call())?;
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut resp.into_reader(), &mut buf)
            .map_err(|e| CliError::new(AdeExitCode::RequestFailed, format!("GET {path}: {e}")))?;
        Ok(buf)
    }

    /// PUT raw bytes.
    pub fn put_bytes(&self, path: &str, bytes: &[u8]) -> Result<(), CliError> {
        self.call("PUT", path, |r| {
            r.set("Content-Type", "application/octet-stream")
                .send_bytes(bytes)
        })?;
        Ok(())
    }

    /// PUT JSON.
    pub fn put_json<T: serde::Serialize>(&self, path: &str, body: &T) -> Result<(), CliError> {
        self.call("PUT", path, |r| r.send_json(body))?;
        Ok(())
    }

    /// POST JSON.
    pub fn post_json<T: serde::Serialize>(&self, path: &str, body: &T) -> Result<(), CliError> {
        self.call("POST", path, |r| r.send_json(body))?;
        Ok(())
    }
}
