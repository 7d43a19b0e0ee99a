//! Image builds through the engine's build API (`POST /build`), confined.
//!
//! Podman's API build runs `RUN` instructions in the **host's** network
//! namespace unless the request names another (`nsoptions`): a Dockerfile
//! would reach the server's loopback services and the metadata address.
//! Every build here names one: the caller makes a namespace with the runner
//! egress policy ([`crate::RunnerNetwork`]) and passes its path. Build
//! secrets travel as Podman's `secrets` (files at the context's root that
//! the engine moves out of the context before the build and mounts for
//! `RUN --mount=type=secret,id=<id>`), never as build args, so no layer and
//! no history entry carries them. Both parameters are Podman's (its
//! compat build handler, `pkg/api/handlers/compat/images_build.go`);
//! bollard's typed options lack them, so the request is made here over the
//! engine's socket. An engine that is not Podman is refused: a silently
//! ignored `nsoptions` would leave `RUN` on the host's network.

use std::path::PathBuf;

use base64::Engine as _;
use bollard::query_parameters::BuildImageOptions;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use slipway_core::credentials::RegistryCredential;

use crate::engine::{registry_auth, Engine};
use crate::RunnerError;

/// How a build's `RUN` instructions are confined.
#[derive(Debug, Clone)]
pub struct BuildConfinement {
    /// Network namespace (`/run/netns/<name>`) every `RUN` joins.
    pub network_namespace: PathBuf,
    /// Build secrets `(id, file)`: `file` is a file the caller put at the
    /// root of the context tar; the engine takes it out of the context and
    /// mounts it for `RUN --mount=type=secret,id=<id>`. Ids and file names
    /// are `[A-Za-z0-9_.-]`.
    pub secrets: Vec<(String, String)>,
}

/// The output of a running build: its lines, as the engine streams them.
pub struct BuildOutput {
    body: hyper::body::Incoming,
    buffer: Vec<u8>,
    done: bool,
}

impl BuildOutput {
    /// The next output line (without its newline), `None` at the end.
    ///
    /// Errors: [`RunnerError::Engine`] with the build's error (a failed
    /// `RUN`, a missing base image…) or a broken stream.
    pub async fn next_line(&mut self) -> Option<Result<String, RunnerError>> {
        loop {
            if let Some(i) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=i).collect();
                match decode(&line[..i]) {
                    Some(item) => return Some(item),
                    None => continue,
                }
            }
            if self.done {
                let rest = std::mem::take(&mut self.buffer);
                return decode(&rest);
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(RunnerError::Engine(format!("build output: {e}"))));
                }
                None => self.done = true,
            }
        }
    }
}

/// One line of the engine's JSON stream: `{"stream": …}` or `{"error": …}`.
fn decode(line: &[u8]) -> Option<Result<String, RunnerError>> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let v: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return Some(Ok(text.to_string())),
    };
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        return Some(Err(RunnerError::Engine(e.trim_end().to_string())));
    }
    v.get("stream")
        .and_then(|s| s.as_str())
        .map(|s| Ok(s.to_string()))
}

/// `[A-Za-z0-9_.-]+`: safe in an engine URL path or query without escaping.
pub(crate) fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Engine {
    /// Starts a build of the tar `context` with `options`, its `RUN`
    /// instructions confined by `confinement`; `credentials` (server →
    /// credential) go as `X-Registry-Config` for pulling bases.
    ///
    /// Errors: [`RunnerError::Engine`] when the engine is not Podman, a
    /// secret id or file name is not `[A-Za-z0-9_.-]`, or the engine
    /// refuses the request.
    pub async fn build_image(
        &self,
        options: &BuildImageOptions,
        credentials: &[RegistryCredential],
        context: Vec<u8>,
        confinement: &BuildConfinement,
    ) -> Result<BuildOutput, RunnerError> {
        let engine = self.engine_name().await?;
        if !engine.contains("Podman") {
            return Err(RunnerError::Engine(format!(
                "image builds need Podman's build API (RUN instructions join Slipway's network namespace through its 'nsoptions'); this engine is '{engine}'"
            )));
        }
        if let Some((id, file)) = confinement
            .secrets
            .iter()
            .find(|(id, file)| !safe_name(id) || !safe_name(file))
        {
            return Err(RunnerError::Engine(format!(
                "build secret '{id}' ({file}): ids and files must be [A-Za-z0-9_.-]"
            )));
        }
        let mut query = serde_urlencoded::to_string(options)
            .map_err(|e| RunnerError::Engine(format!("build options: {e}")))?;
        let ns = serde_json::json!([{
            "Name": "network",
            "Host": false,
            "Path": confinement.network_namespace.to_string_lossy(),
        }]);
        let secrets: Vec<String> = confinement
            .secrets
            .iter()
            .map(|(id, file)| format!("id={id},src={file}"))
            .collect();
        query.push('&');
        query.push_str(
            &serde_urlencoded::to_string([
                ("nsoptions", ns.to_string()),
                ("secrets", serde_json::json!(secrets).to_string()),
            ])
            .map_err(|e| RunnerError::Engine(format!("build options: {e}")))?,
        );
        let auth: std::collections::HashMap<String, bollard::auth::DockerCredentials> = credentials
            .iter()
            .map(|c| (c.server.clone(), registry_auth(c)))
            .collect();
        let auth = serde_json::to_string(&auth)
            .map_err(|e| RunnerError::Engine(format!("registry credentials: {e}")))?;
        let uri: hyper::Uri =
            hyperlocal::Uri::new(&self.socket, &format!("/v1.41/build?{query}")).into();
        let request = hyper::Request::post(uri)
            .header("Content-Type", "application/x-tar")
            .header(
                "X-Registry-Config",
                base64::engine::general_purpose::URL_SAFE.encode(auth),
            )
            .body(Full::new(Bytes::from(context)))
            .map_err(|e| RunnerError::Engine(format!("build request: {e}")))?;
        let response = crate::engine::socket_client::<Full<Bytes>>()
            .request(request)
            .await
            .map_err(|e| RunnerError::Engine(format!("build request: {e}")))?;
        let status = response.status();
        let body = response.into_body();
        if !status.is_success() {
            let text = body
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            return Err(RunnerError::Engine(format!(
                "the engine refused the build (HTTP {status}): {}",
                text.trim()
            )));
        }
        Ok(BuildOutput {
            body,
            buffer: Vec::new(),
            done: false,
        })
    }
}
