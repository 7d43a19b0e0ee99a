//! Requests over the engine socket that bollard's typed models cannot make
//! or decode: Podman's own container states (`stopped`, `configured`,
//! `initialized`…) make bollard's closed state enums fail a whole list or
//! inspect answer, and its build options lack `nsoptions` and `secrets`.
//!
//! Source: Docker Engine API v1.41 (`GET /containers/json`,
//! `GET /containers/{id}/json`, `POST /build`) as Podman's compatible
//! socket serves it.

use std::collections::HashMap;

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{ContainerState, Engine};
use crate::RunnerError;

/// An HTTP/1 client over the engine's Unix socket, for request bodies `B`.
pub(crate) fn socket_client<B>() -> Client<hyperlocal::UnixConnector, B>
where
    B: hyper::body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(TokioExecutor::new()).build(hyperlocal::UnixConnector)
}

/// One entry of `GET /containers/json`, with the state kept as the
/// engine's own word.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ListedContainer {
    /// `/name` (Docker) or `name` (Podman); the first one is used.
    #[serde(rename = "Names", default)]
    pub names: Vec<String>,
    /// Every label.
    #[serde(rename = "Labels", default)]
    pub labels: Option<HashMap<String, String>>,
    /// `created`, `running`, `exited` (Docker) or Podman's own words
    /// (`configured`, `initialized`, `stopped`, …).
    #[serde(rename = "State", default)]
    pub state: String,
    /// Creation time, seconds since the Unix epoch.
    #[serde(rename = "Created", default)]
    pub created: i64,
}

impl ListedContainer {
    /// The container's name without Docker's leading `/`.
    pub fn name(&self) -> Option<String> {
        Some(self.names.first()?.trim_start_matches('/').to_string())
    }
}

/// The parts of `GET /containers/{name}/json` Slipway reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct InspectedContainer {
    /// The container's state.
    #[serde(rename = "State", default)]
    pub state: InspectedState,
    /// The container's configuration.
    #[serde(rename = "Config", default)]
    pub config: InspectedConfig,
}

/// `State` of an inspect answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct InspectedState {
    /// The engine's word for the state (Docker's or Podman's own).
    #[serde(rename = "Status", default)]
    pub status: String,
    /// Whether the process runs.
    #[serde(rename = "Running", default)]
    pub running: bool,
    /// The exit code once exited (or Podman's `stopped`).
    #[serde(rename = "ExitCode", default)]
    pub exit_code: i64,
    /// Whether the kernel killed it for exceeding its memory limit.
    #[serde(rename = "OOMKilled", default)]
    pub oom_killed: bool,
}

/// `Config` of an inspect answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct InspectedConfig {
    /// `KEY=VALUE` entries.
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
}

impl InspectedState {
    /// The state as Slipway uses it, for Docker's words and Podman's own.
    pub fn container_state(&self) -> ContainerState {
        match self.status.to_ascii_lowercase().as_str() {
            "created" | "configured" | "initialized" => ContainerState::Created,
            "stopped" => ContainerState::Stopped(self.exit_code),
            "exited" | "dead" | "removing" => ContainerState::Exited(self.exit_code),
            // running, paused, restarting, stopping, or a word not known yet
            _ if self.running => ContainerState::Running,
            "running" | "paused" | "restarting" | "stopping" => ContainerState::Running,
            _ => ContainerState::Exited(self.exit_code),
        }
    }
}

impl Engine {
    /// The inspect answer for container `name`; `None` when there is none.
    ///
    /// Errors: [`RunnerError::Engine`] when the engine does not answer, or
    /// `name` is not a plain container name.
    pub(crate) async fn inspect_raw(
        &self,
        name: &str,
    ) -> Result<Option<InspectedContainer>, RunnerError> {
        if !crate::build::safe_name(name) {
            return Err(RunnerError::Engine(format!(
                "'{name}' is not a container name"
            )));
        }
        match self
            .get_json(&format!("/v1.41/containers/{name}/json"))
            .await
        {
            Ok(info) => Ok(Some(info)),
            Err(GetError::Status(404, _)) => Ok(None),
            // Podman answers 500 "no such container" for a container
            // removed between resolving its name and reading its record
            // (another server's cleanup running beside this one): gone too.
            Err(GetError::Status(500, body)) if body.contains("no such container") => Ok(None),
            Err(e) => Err(RunnerError::Engine(e.to_string())),
        }
    }

    /// `GET path` on the engine socket, decoded as `T`.
    ///
    /// Errors: [`RunnerError::Engine`] naming the path when the engine does
    /// not answer, answers with an error status, or with another shape.
    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, GetError> {
        let fail = |what: String| GetError::Failed(format!("GET {path}: {what}"));
        let uri: hyper::Uri = hyperlocal::Uri::new(&self.socket, path).into();
        let response = socket_client::<Empty<bytes::Bytes>>()
            .get(uri)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(GetError::Status(
                status.as_u16(),
                format!(
                    "GET {path}: HTTP {status}: {}",
                    String::from_utf8_lossy(&body).trim()
                ),
            ));
        }
        serde_json::from_slice(&body).map_err(|e| fail(e.to_string()))
    }

    /// Every container, running or not, matching the label filters.
    ///
    /// Errors: as [`Engine::get_json`].
    pub(super) async fn list_containers_raw(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<ListedContainer>, RunnerError> {
        let filters = serde_json::to_string(filters)
            .map_err(|e| RunnerError::Engine(format!("container filters: {e}")))?;
        let query = serde_urlencoded::to_string([("all", "true"), ("filters", filters.as_str())])
            .map_err(|e| RunnerError::Engine(format!("container filters: {e}")))?;
        self.get_json(&format!("/v1.41/containers/json?{query}"))
            .await
            .map_err(|e| RunnerError::Engine(e.to_string()))
    }
}

/// A failed `GET` on the engine socket.
#[derive(Debug, thiserror::Error)]
enum GetError {
    /// The engine answered with this error status.
    #[error("{1}")]
    Status(u16, String),
    /// No answer, or one of another shape.
    #[error("{0}")]
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::{InspectedContainer, ListedContainer};
    use crate::ContainerState;

    #[test]
    fn docker_and_podman_states_map_to_slipways() {
        let state = |json: &str| {
            serde_json::from_str::<InspectedContainer>(json)
                .unwrap()
                .state
                .container_state()
        };
        assert_eq!(
            state(r#"{"State":{"Status":"stopped","ExitCode":3}}"#),
            ContainerState::Stopped(3)
        );
        assert_eq!(
            state(r#"{"State":{"Status":"exited","ExitCode":4}}"#),
            ContainerState::Exited(4)
        );
        for created in ["created", "configured", "initialized"] {
            assert_eq!(
                state(&format!(r#"{{"State":{{"Status":"{created}"}}}}"#)),
                ContainerState::Created
            );
        }
        for running in ["running", "stopping", "paused"] {
            assert_eq!(
                state(&format!(
                    r#"{{"State":{{"Status":"{running}","Running":true}}}}"#
                )),
                ContainerState::Running
            );
        }
        assert_eq!(state("{}"), ContainerState::Exited(0));
    }

    #[test]
    fn podman_states_and_both_name_forms_decode() {
        let list: Vec<ListedContainer> = serde_json::from_str(
            r#"[{"Names":["/a"],"State":"stopped","Created":5,"Labels":{"k":"v"}},
                {"Names":["b"],"State":"configured","Created":6,"Labels":null},
                {"Names":[],"State":"running"}]"#,
        )
        .unwrap();
        assert_eq!(list[0].name().as_deref(), Some("a"));
        assert_eq!(list[0].state, "stopped");
        assert_eq!(list[1].name().as_deref(), Some("b"));
        assert_eq!(list[1].state, "configured");
        assert_eq!(list[2].name(), None);
    }
}
