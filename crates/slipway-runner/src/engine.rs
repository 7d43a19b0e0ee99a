//! Container engine access through the Docker Engine API (bollard).
//!
//! Works against Docker and against Podman's compatible socket. Socket
//! discovery order: `DOCKER_HOST` (`unix://…`), `/var/run/docker.sock`,
//! `/run/podman/podman.sock`, `$XDG_RUNTIME_DIR/podman/podman.sock`; when none
//! answers and `podman` is installed, `podman system service --time=0` is
//! started on `<data>/podman.sock` and lives as long as the server.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::container::{
    AttachContainerOptions, AttachContainerResults, Config, CreateContainerOptions,
    InspectContainerOptions, LogOutput, LogsOptions, RemoveContainerOptions, StartContainerOptions,
    StopContainerOptions, WaitContainerOptions,
};
use bollard::image::{CreateImageOptions, PushImageOptions, TagImageOptions};
use bollard::models::{EndpointSettings, HostConfig, PortBinding};
use bollard::network::CreateNetworkOptions;
use bollard::Docker;
use futures_util::StreamExt;
use slipway_core::credentials::RegistryCredential;
use slipway_core::isolation::{Confinement, KEPT_CAPABILITIES, WRITABLE_PATHS};

use crate::RunnerError;

/// The output stream of a started container; it ends when the container exits.
pub struct Attachment {
    output: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
    >,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Attachment")
    }
}

/// How a container is attached to a network.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkAttachment {
    /// The network namespace at this path (a runner's own, see
    /// [`crate::netns`]); the engine's network mode `ns:<path>`.
    Namespace(String),
    /// An engine network Slipway created (a task run's), with DNS aliases.
    Named {
        /// Network name.
        network: String,
        /// Names other containers on the network reach this one by.
        aliases: Vec<String>,
    },
}

/// A container to run. Every container Slipway starts is described by one
/// and goes through [`Engine::create`], which applies the isolation policy
/// of [`slipway_core::isolation`]: all capabilities dropped but
/// [`KEPT_CAPABILITIES`], `no-new-privileges`, the [`Confinement`] limits,
/// never privileged, never the host's network, PID, IPC or user namespace.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Container name (unique).
    pub name: String,
    /// Image reference.
    pub image: String,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// The network.
    pub network: NetworkAttachment,
    /// Limits.
    pub confinement: Confinement,
    /// Command (the image's CMD when `None`).
    pub cmd: Option<Vec<String>>,
    /// Entrypoint (the image's when `None`).
    pub entrypoint: Option<Vec<String>>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Mounts `source:target[:options]`: folders Slipway made for this
    /// container (a run's workspace, its secret volumes) or named volumes.
    /// Callers check user-supplied mounts with
    /// [`slipway_core::isolation::refuse_unconfined_step`] first.
    pub binds: Vec<String>,
    /// Exposed container ports (`80/tcp`).
    pub exposed_ports: Vec<String>,
    /// Published ports: container port (`80/tcp`) → `(host ip, host port)`.
    pub port_bindings: Vec<(String, String, String)>,
    /// `host:ip` entries for `/etc/hosts`.
    pub extra_hosts: Vec<String>,
}

impl ContainerSpec {
    /// A spec with the image's own entrypoint and command and the default
    /// confinement.
    pub fn new(name: &str, image: &str, network: NetworkAttachment) -> ContainerSpec {
        ContainerSpec {
            name: name.to_string(),
            image: image.to_string(),
            env: Vec::new(),
            labels: HashMap::new(),
            network,
            confinement: Confinement::default(),
            cmd: None,
            entrypoint: None,
            working_dir: None,
            user: None,
            binds: Vec::new(),
            exposed_ports: Vec::new(),
            port_bindings: Vec::new(),
            extra_hosts: Vec::new(),
        }
    }

    /// The engine's container configuration: the spec under the isolation policy.
    fn config(&self) -> Config<String> {
        let c = &self.confinement;
        let (network_mode, networking_config) = match &self.network {
            NetworkAttachment::Namespace(path) => (format!("ns:{path}"), None),
            NetworkAttachment::Named { network, aliases } => {
                let mut endpoints = HashMap::new();
                endpoints.insert(
                    network.clone(),
                    EndpointSettings {
                        aliases: Some(aliases.clone()),
                        ..Default::default()
                    },
                );
                (
                    network.clone(),
                    Some(bollard::container::NetworkingConfig {
                        endpoints_config: endpoints,
                    }),
                )
            }
        };
        let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for (port, ip, host_port) in &self.port_bindings {
            port_bindings
                .entry(port.clone())
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(ip.clone()),
                    host_port: Some(host_port.clone()),
                });
        }
        let mut exposed: HashMap<String, HashMap<(), ()>> = self
            .exposed_ports
            .iter()
            .map(|p| (p.clone(), HashMap::new()))
            .collect();
        for p in port_bindings.keys() {
            exposed.insert(p.clone(), HashMap::new());
        }
        let tmpfs = c.read_only_root.then(|| {
            WRITABLE_PATHS
                .iter()
                .map(|p| (p.to_string(), "rw,nosuid,nodev,size=512m".to_string()))
                .collect()
        });
        Config {
            image: Some(self.image.clone()),
            env: Some(self.env.clone()),
            labels: Some(self.labels.clone()),
            cmd: self.cmd.clone(),
            entrypoint: self.entrypoint.clone(),
            working_dir: self.working_dir.clone(),
            user: self.user.clone(),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            networking_config,
            host_config: Some(HostConfig {
                network_mode: Some(network_mode),
                binds: (!self.binds.is_empty()).then(|| self.binds.clone()),
                privileged: Some(false),
                cap_drop: Some(vec!["ALL".into()]),
                cap_add: Some(
                    KEPT_CAPABILITIES
                        .iter()
                        .map(|(c, _)| c.to_string())
                        .collect(),
                ),
                security_opt: Some(vec!["no-new-privileges".into()]),
                memory: Some(c.memory_bytes),
                memory_swap: Some(c.memory_bytes),
                nano_cpus: Some(c.nano_cpus),
                pids_limit: Some(c.pids_limit),
                readonly_rootfs: Some(c.read_only_root),
                tmpfs,
                port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
                extra_hosts: (!self.extra_hosts.is_empty()).then(|| self.extra_hosts.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// What the engine knows about a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Created but never started.
    Created,
    /// Running.
    Running,
    /// Exited, exit code not yet recorded (Podman's transient `stopped`
    /// state, which bollard's typed model cannot represent).
    Stopping,
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

/// Podman has container states bollard's typed model lacks; inspecting such
/// a container fails to decode with "unknown variant `<state>`". Maps those.
fn podman_only_state(message: &str) -> Option<ContainerState> {
    let state = message
        .split("unknown variant `")
        .nth(1)?
        .split('`')
        .next()?;
    match state {
        "stopped" => Some(ContainerState::Stopping),
        "stopping" => Some(ContainerState::Running),
        "initialized" | "configured" => Some(ContainerState::Created),
        _ => None,
    }
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
        crate::process::end_with_server(&mut cmd);
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

    /// Creates a bridge network for the containers of one task run.
    ///
    /// Errors: [`RunnerError::Engine`] with the engine's message.
    /// The bridge's host interface is named `bridge` (so that the host's
    /// filter can name it before the first container joins). Returns the
    /// network's IPv4 gateway.
    pub async fn create_network(
        &self,
        name: &str,
        driver: &str,
        bridge: &str,
        labels: HashMap<String, String>,
    ) -> Result<Ipv4Addr, RunnerError> {
        let mut options = HashMap::new();
        options.insert(
            "com.docker.network.bridge.name".to_string(),
            bridge.to_string(),
        );
        self.docker
            .create_network(CreateNetworkOptions {
                name: name.to_string(),
                driver: driver.to_string(),
                options,
                labels,
                ..Default::default()
            })
            .await
            .map_err(|e| RunnerError::Engine(format!("create network {name}: {}", message(e))))?;
        let info = self
            .docker
            .inspect_network(
                name,
                None::<bollard::network::InspectNetworkOptions<String>>,
            )
            .await
            .map_err(|e| RunnerError::Engine(format!("inspect network {name}: {}", message(e))))?;
        info.ipam
            .and_then(|i| i.config)
            .into_iter()
            .flatten()
            .find_map(|c| c.gateway?.parse::<Ipv4Addr>().ok())
            .ok_or_else(|| RunnerError::Engine(format!("network {name} has no IPv4 gateway")))
    }

    /// Removes every container (but those named in `keep`) and then every
    /// network carrying label `key=value`. Best effort: failures are logged.
    pub async fn remove_labelled(&self, key: &str, value: &str, keep: &[String]) {
        let filters = label_filter(format!("{key}={value}"));
        if let Ok(list) = self.labelled_containers(format!("{key}={value}")).await {
            for (name, _) in list {
                if !keep.contains(&name) {
                    if let Err(e) = self.remove(&name).await {
                        tracing::warn!(container = %name, error = %e, "could not remove a container");
                    }
                }
            }
        }
        if let Ok(nets) = self
            .docker
            .list_networks(Some(bollard::network::ListNetworksOptions { filters }))
            .await
        {
            for n in nets.into_iter().filter_map(|n| n.id) {
                if let Err(e) = self.docker.remove_network(&n).await {
                    tracing::warn!(network = %n, error = %e, "could not remove a network");
                }
            }
        }
    }

    /// Names of networks carrying label `key` (any value), with their labels.
    pub async fn networks_with_label(
        &self,
        key: &str,
    ) -> Result<Vec<(String, HashMap<String, String>)>, RunnerError> {
        let filters = label_filter(key.to_string());
        let nets = self
            .docker
            .list_networks(Some(bollard::network::ListNetworksOptions { filters }))
            .await
            .map_err(|e| RunnerError::Engine(message(e)))?;
        Ok(nets
            .into_iter()
            .filter_map(|n| Some((n.name?, n.labels.unwrap_or_default())))
            .collect())
    }

    /// The container's output as it is written, until it exits.
    pub fn follow_output(
        &self,
        name: &str,
    ) -> impl futures_util::Stream<Item = Result<Vec<u8>, RunnerError>> + '_ {
        self.docker
            .logs(
                name,
                Some(LogsOptions::<String> {
                    follow: true,
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            )
            .map(|c| {
                c.map(|c| c.into_bytes().to_vec())
                    .map_err(|e| RunnerError::Engine(message(e)))
            })
    }

    /// The container's environment (`KEY=VALUE` entries).
    ///
    /// Errors: [`RunnerError::Engine`] when it cannot be inspected.
    pub async fn env_of(&self, name: &str) -> Result<Vec<String>, RunnerError> {
        let info = self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| RunnerError::Engine(message(e)))?;
        Ok(info.config.and_then(|c| c.env).unwrap_or_default())
    }

    /// Whether the kernel killed the container for exceeding its memory limit.
    pub async fn oom_killed(&self, name: &str) -> bool {
        match self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(info) => info.state.and_then(|s| s.oom_killed).unwrap_or(false),
            Err(_) => false,
        }
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

    /// Tags `image` as `repo:tag`.
    pub async fn tag_image(&self, image: &str, repo: &str, tag: &str) -> Result<(), RunnerError> {
        self.docker
            .tag_image(
                image,
                Some(TagImageOptions {
                    repo: repo.to_string(),
                    tag: tag.to_string(),
                }),
            )
            .await
            .map_err(|e| RunnerError::Engine(message(e)))
    }

    /// Pushes `repo:tag` with `credential` when given.
    ///
    /// Errors: [`RunnerError::Engine`] with the engine's message.
    pub async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        credential: Option<&RegistryCredential>,
    ) -> Result<(), RunnerError> {
        let mut s = self.docker.push_image(
            repo,
            Some(PushImageOptions {
                tag: tag.to_string(),
            }),
            credential.map(registry_auth),
        );
        while let Some(item) = s.next().await {
            item.map_err(|e| RunnerError::Engine(message(e)))?;
        }
        Ok(())
    }

    /// Makes sure `image` is present, pulling it when absent, with
    /// `credential` when given (sent as the engine's `X-Registry-Auth`).
    ///
    /// Errors: [`RunnerError::ImageUnavailable`] with the engine's message
    /// when the pull fails (unknown image, refused credentials, …).
    pub async fn ensure_image(
        &self,
        image: &str,
        credential: Option<&RegistryCredential>,
    ) -> Result<(), RunnerError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => self.pull(image, credential).await,
            Err(e) => Err(RunnerError::Engine(e.to_string())),
        }
    }

    /// Pulls `image` (also when present, to see a newer digest), with
    /// `credential` when given.
    ///
    /// Errors: [`RunnerError::ImageUnavailable`] with the engine's message.
    pub async fn pull(
        &self,
        image: &str,
        credential: Option<&RegistryCredential>,
    ) -> Result<(), RunnerError> {
        let mut stream = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: image,
                ..Default::default()
            }),
            None,
            credential.map(registry_auth),
        );
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                let message = match e {
                    // The engine's own words ("… unauthorized: authentication required").
                    bollard::errors::Error::DockerStreamError { error } => error,
                    e => e.to_string(),
                };
                return Err(RunnerError::ImageUnavailable {
                    image: image.to_string(),
                    message,
                });
            }
        }
        Ok(())
    }

    /// Creates (but does not start) the container of `spec`, under the
    /// isolation policy (see [`ContainerSpec`]).
    ///
    /// Errors: [`RunnerError::Engine`] with the engine's own message.
    pub async fn create(&self, spec: &ContainerSpec) -> Result<(), RunnerError> {
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: spec.name.as_str(),
                    platform: None,
                }),
                spec.config(),
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                RunnerError::Engine(format!("create container {}: {}", spec.name, message(e)))
            })
    }

    /// Starts a created container.
    pub async fn start_created(&self, name: &str) -> Result<(), RunnerError> {
        self.docker
            .start_container(name, None::<StartContainerOptions<String>>)
            .await
            .map_err(|e| RunnerError::Engine(format!("start container {name}: {}", message(e))))
    }

    /// Creates a container, attaches to its output, then starts it with the
    /// image's own ENTRYPOINT. The returned [`Attachment`] ends when the
    /// container exits (attaching before the start means no exit is missed);
    /// `None` when the engine refused the attach three times, in which case
    /// [`Engine::wait`] falls back to the engine's wait endpoint.
    pub async fn start(&self, spec: &ContainerSpec) -> Result<Option<Attachment>, RunnerError> {
        self.create(spec).await?;
        // Podman sometimes refuses an attach to a just-created container
        // ("preparing container … for attach: write child: broken pipe").
        // Retry a little; without an attachment the exit is still detected
        // through the engine's wait, only more slowly.
        let mut attachment = None;
        for attempt in 1..=3u64 {
            match self
                .docker
                .attach_container(
                    &spec.name,
                    Some(AttachContainerOptions::<String> {
                        stream: Some(true),
                        stdout: Some(true),
                        stderr: Some(true),
                        logs: Some(false),
                        ..Default::default()
                    }),
                )
                .await
            {
                Ok(AttachContainerResults { output, .. }) => {
                    attachment = Some(Attachment { output });
                    break;
                }
                Err(e) => {
                    tracing::warn!(container = %spec.name, attempt, error = %e, "attach before start failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
            }
        }
        self.start_created(&spec.name).await?;
        Ok(attachment)
    }

    /// The container's state; `None` when it does not exist.
    pub async fn state(&self, name: &str) -> Result<Option<ContainerState>, RunnerError> {
        match self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(info) => {
                let st = info.state.unwrap_or_default();
                if st.running == Some(true) {
                    Ok(Some(ContainerState::Running))
                } else if matches!(
                    st.status,
                    Some(bollard::models::ContainerStateStatusEnum::CREATED)
                ) {
                    Ok(Some(ContainerState::Created))
                } else {
                    Ok(Some(ContainerState::Exited(st.exit_code.unwrap_or(-1))))
                }
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => {
                let message = e.to_string();
                podman_only_state(&message)
                    .map(Some)
                    .ok_or(RunnerError::Engine(message))
            }
        }
    }

    /// Waits for the container to exit and returns its exit code.
    ///
    /// With the [`Attachment`] from [`Engine::start`] (attached before the
    /// start, so no exit is missed) the exit is seen as soon as the output
    /// stream closes; Podman's `/wait` polls and adds ~200 ms, and running it
    /// alongside slows Podman's exit handling, so it is only the fallback.
    /// Without an attachment (re-attaching after a restart) `/wait` is used.
    pub async fn wait(
        &self,
        name: &str,
        attachment: Option<Attachment>,
    ) -> Result<i64, RunnerError> {
        if let Some(attachment) = attachment {
            if let Some(code) = self.wait_attached(name, attachment).await? {
                return Ok(code);
            }
        }
        self.exit_code(name).await
    }

    /// Waits for a started container to exit and returns its exit code.
    /// (See [`EXIT_RETRIES`].)
    /// Podman 4's `/wait` can miss an exit that happened just before the
    /// call and then block forever, so the state is read first and again
    /// every 2 s while the engine's wait runs.
    ///
    /// Podman also answers 500 for a moment while a container exits (`read
    /// /proc/<pid>/cgroup: no such process`); such errors are retried for
    /// up to ~1 s.
    ///
    /// Errors: [`RunnerError::Engine`] when the container is gone, or the
    /// engine keeps failing.
    pub async fn exit_code(&self, name: &str) -> Result<i64, RunnerError> {
        let mut failures = 0;
        loop {
            let state = match self.state(name).await {
                Ok(s) => s,
                Err(e) if failures < EXIT_RETRIES => {
                    failures += 1;
                    tracing::debug!(container = name, error = %e, "engine error while waiting; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match state {
                Some(ContainerState::Exited(code)) => return Ok(code),
                Some(ContainerState::Stopping) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                None => {
                    return Err(RunnerError::Engine(format!(
                        "wait for {name}: the container is gone"
                    )))
                }
                Some(ContainerState::Running | ContainerState::Created) => {
                    match tokio::time::timeout(Duration::from_secs(2), self.engine_wait(name)).await
                    {
                        Ok(Ok(code)) => return Ok(code),
                        // Read the state again: a transient engine error or
                        // a wait that missed the exit.
                        Ok(Err(_)) if failures < EXIT_RETRIES => {
                            failures += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Ok(Err(e)) => return Err(e),
                        Err(_) => {}
                    }
                }
            }
        }
    }

    /// Drains the attachment, then reads the exit code once the engine has
    /// recorded it; `None` if it does not within ~1 s.
    async fn wait_attached(
        &self,
        name: &str,
        attachment: Attachment,
    ) -> Result<Option<i64>, RunnerError> {
        let Attachment { mut output } = attachment;
        while let Some(item) = output.next().await {
            if item.is_err() {
                break;
            }
        }
        // Podman reports `stopped` for ~30 ms before `exited` with the code
        // (and may answer 500 for a moment meanwhile).
        for _ in 0..50 {
            match self.state(name).await {
                Ok(Some(ContainerState::Exited(code))) => return Ok(Some(code)),
                Ok(Some(ContainerState::Stopping)) | Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Ok(_) => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The engine's own `/containers/{name}/wait`.
    async fn engine_wait(&self, name: &str) -> Result<i64, RunnerError> {
        let mut stream = self
            .docker
            .wait_container(name, None::<WaitContainerOptions<String>>);
        match stream.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => {
                // The wait may fail if the container already exited; ask directly.
                match self.state(name).await? {
                    Some(ContainerState::Exited(code)) => Ok(code),
                    _ => Err(RunnerError::Engine(format!("wait for {name}: {e}"))),
                }
            }
            None => match self.state(name).await? {
                Some(ContainerState::Exited(code)) => Ok(code),
                _ => Err(RunnerError::Engine(format!(
                    "wait for {name}: stream ended"
                ))),
            },
        }
    }

    /// Sends SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&self, name: &str, grace: Duration) -> Result<(), RunnerError> {
        match self
            .docker
            .stop_container(
                name,
                Some(StopContainerOptions {
                    t: grace.as_secs() as i64,
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(RunnerError::Engine(format!("stop {name}: {e}"))),
        }
    }

    /// The container's combined stdout and stderr.
    pub async fn output(&self, name: &str) -> Result<String, RunnerError> {
        let mut stream = self.docker.logs(
            name,
            Some(LogsOptions::<String> {
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        let mut out = String::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(LogOutput::StdOut { message })
                | Ok(LogOutput::StdErr { message })
                | Ok(LogOutput::Console { message }) => {
                    out.push_str(&String::from_utf8_lossy(&message))
                }
                Ok(_) => {}
                Err(e) => return Err(RunnerError::Engine(format!("logs of {name}: {e}"))),
            }
        }
        Ok(out)
    }

    /// Removes the container (and its anonymous volumes); absent is fine.
    pub async fn remove(&self, name: &str) -> Result<(), RunnerError> {
        match self
            .docker
            .remove_container(
                name,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(RunnerError::Engine(format!("remove {name}: {e}"))),
        }
    }

    /// Names of containers carrying label `key` (any value), with all their labels.
    pub async fn containers_with_label(
        &self,
        key: &str,
    ) -> Result<Vec<(String, HashMap<String, String>)>, RunnerError> {
        Ok(self
            .labelled_containers(key.to_string())
            .await?
            .into_iter()
            .map(|(name, c)| (name, c.labels.unwrap_or_default()))
            .collect())
    }

    /// Every container (running or not) matching label filter `filter`
    /// (`key` or `key=value`), by name.
    ///
    /// Errors: [`RunnerError::Engine`] when the engine cannot list containers.
    async fn labelled_containers(
        &self,
        filter: String,
    ) -> Result<Vec<(String, bollard::models::ContainerSummary)>, RunnerError> {
        let list = self
            .docker
            .list_containers(Some(bollard::container::ListContainersOptions {
                all: true,
                filters: label_filter(filter),
                ..Default::default()
            }))
            .await
            .map_err(|e| RunnerError::Engine(e.to_string()))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let name = c
                    .names
                    .as_ref()?
                    .first()?
                    .trim_start_matches('/')
                    .to_string();
                Some((name, c))
            })
            .collect())
    }

    /// Containers carrying label `key` that were created at least `min_age`
    /// ago and never started (Docker `created`, Podman `configured` /
    /// `initialized`): leftovers of a server killed between create and start.
    ///
    /// Errors: [`RunnerError::Engine`] when the engine cannot list containers.
    pub async fn never_started_with_label(
        &self,
        key: &str,
        min_age: Duration,
    ) -> Result<Vec<String>, RunnerError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Ok(self
            .labelled_containers(key.to_string())
            .await?
            .into_iter()
            .filter(|(_, c)| {
                let never_started = matches!(
                    c.state.as_deref(),
                    Some("created" | "configured" | "initialized")
                );
                let old = c
                    .created
                    .is_some_and(|t| now - t >= min_age.as_secs() as i64);
                never_started && old
            })
            .map(|(name, _)| name)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_only_states_are_mapped() {
        let msg = |s: &str| {
            format!(
                "Failed to deserialize JSON: unknown variant `{s}`, expected one of ``, `created`"
            )
        };
        assert_eq!(
            podman_only_state(&msg("stopped")),
            Some(ContainerState::Stopping)
        );
        assert_eq!(
            podman_only_state(&msg("stopping")),
            Some(ContainerState::Running)
        );
        assert_eq!(
            podman_only_state(&msg("initialized")),
            Some(ContainerState::Created)
        );
        assert_eq!(
            podman_only_state(&msg("configured")),
            Some(ContainerState::Created)
        );
        assert_eq!(podman_only_state(&msg("weird")), None);
        assert_eq!(podman_only_state("connection refused"), None);
    }
}
