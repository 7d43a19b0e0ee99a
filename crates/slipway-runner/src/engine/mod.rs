//! Container engine access through the Docker Engine API (bollard).
//!
//! Works against Docker and against Podman's compatible socket. Socket
//! discovery order: `DOCKER_HOST` (`unix://…`), `/var/run/docker.sock`,
//! `/run/podman/podman.sock`, `$XDG_RUNTIME_DIR/podman/podman.sock`; when none
//! answers and `podman` is installed, `podman system service --time=0` is
//! started on `<data>/podman.sock` and lives as long as the server.

//!
//! One module per job: [`spec`] (the container description and the
//! isolation policy applied to it), [`containers`] (a container's life),
//! [`images`], [`labelled`] (networks, label-filtered listing and removal).

mod containers;
mod images;
mod labelled;
mod raw;
mod spec;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::Docker;
use slipway_core::credentials::RegistryCredential;

use crate::RunnerError;

pub(crate) use self::raw::socket_client;
pub use self::spec::{Attachment, ContainerSpec, NetworkAttachment};

/// What the engine knows about a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Created but never started.
    Created,
    /// Running.
    Running,
    /// Exited with this code, cleanup pending (Podman's `stopped`, for
    /// ~50 ms before `exited`: Podman has read the exit file, its separate
    /// `container cleanup` process has not run yet).
    Stopped(i64),
    /// Exited with this code.
    Exited(i64),
}

/// A connection to the container engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    /// The socket in use.
    pub socket: PathBuf,
}

/// A registry credential as the engine's `X-Registry-Auth` /
/// `X-Registry-Config` entry.
pub fn registry_auth(c: &RegistryCredential) -> DockerCredentials {
    DockerCredentials {
        username: Some(c.username.clone()),
        password: Some(c.password.clone()),
        serveraddress: Some(c.server.clone()),
        ..Default::default()
    }
}

/// The engine's own words for an error, without bollard's wrapping.
pub fn message(e: bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. }
            if !message.is_empty() =>
        {
            message
        }
        bollard::errors::Error::DockerStreamError { error } if !error.is_empty() => error,
        e => e.to_string(),
    }
}

/// The engine's list filter for label `key` or `key=value`.
fn label_filter(label: String) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![label])])
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

async fn try_socket(path: &Path) -> Option<Docker> {
    if !path.exists() {
        return None;
    }
    let docker =
        Docker::connect_with_unix(&path.to_string_lossy(), 600, bollard::API_DEFAULT_VERSION)
            .ok()?;
    match tokio::time::timeout(Duration::from_secs(5), docker.ping()).await {
        Ok(Ok(_)) => Some(docker),
        _ => None,
    }
}

/// Engine errors [`Engine::exit_code`] retries (50 ms apart) before it
/// gives up.
const EXIT_RETRIES: u32 = 20;

impl Engine {
    /// Finds a working engine socket, starting `podman system service` on
    /// `<data_dir>/podman.sock` when none answers.
    ///
    /// Errors: [`RunnerError::Engine`] when nothing answers and podman cannot be started.
    pub async fn connect(data_dir: &Path) -> Result<Engine, RunnerError> {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Ok(host) = std::env::var("DOCKER_HOST") {
            if let Some(p) = host.strip_prefix("unix://") {
                candidates.push(PathBuf::from(p));
            }
        }
        candidates.push("/var/run/docker.sock".into());
        candidates.push("/run/podman/podman.sock".into());
        if let Ok(xdg) = std::env::var("XDG_RUNTIME_DIR") {
            candidates.push(PathBuf::from(xdg).join("podman/podman.sock"));
        }
        let own = data_dir.join("podman.sock");
        candidates.push(own.clone());
        for c in &candidates {
            if let Some(docker) = try_socket(c).await {
                tracing::info!(socket = %c.display(), "connected to container engine");
                return Ok(Engine {
                    docker,
                    socket: c.clone(),
                });
            }
        }
        tracing::info!(socket = %own.display(), "no container engine socket answers; starting podman system service");
        let _ = std::fs::remove_file(&own);
        let mut cmd = tokio::process::Command::new("podman");
        crate::process::end_with_server(cmd.as_std_mut());
        let mut child = cmd
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", own.display()))
            // conmon inherits the working directory; one that is later
            // deleted makes every container start fail ("write child: broken pipe").
            .current_dir("/")
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|e| {
                RunnerError::Engine(format!(
                    "no Docker Engine API socket found (tried {}) and podman could not be started: {e}",
                    candidates
                        .iter()
                        .map(|c| c.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        // Wait for the socket to answer, bounded (podman needs ~1 s).
        for _ in 0..100 {
            if let Some(docker) = try_socket(&own).await {
                // The service outlives this function; it ends with the server
                // process (`end_with_server`), even when that is killed.
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
                return Ok(Engine {
                    docker,
                    socket: own,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(RunnerError::Engine(format!(
                    "podman system service exited with {status}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(RunnerError::Engine(format!(
            "podman system service did not answer on {} within 10 s",
            own.display()
        )))
    }

    /// The engine's product names (`Podman Engine`, `Engine` for
    /// Docker…), from `GET /version`, joined with `, `.
    ///
    /// Errors: [`RunnerError::Engine`] when the engine does not answer.
    pub async fn engine_name(&self) -> Result<String, RunnerError> {
        let v = self
            .docker
            .version()
            .await
            .map_err(|e| RunnerError::Engine(message(e)))?;
        let mut names: Vec<String> = v
            .components
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.name)
            .collect();
        if let Some(p) = v.platform {
            names.push(p.name);
        }
        Ok(names.join(", "))
    }
}
