//! Runner executor and operation scheduler.
//!
//! - [`engine`]: the Docker Engine API client (Podman or Docker).
//! - [`Scheduler`]: takes queued operations from the store, runs each in a
//!   runner container and records the result.
//!
//! Scheduling rules: at most `max_concurrent` operations run at once; at most
//! one per environment (the oldest queued first); each is bounded by its
//! project environment type's `maxRuntimeMinutes`, else `max_runtime`.
//! [`Scheduler::cancel`] stops a runner with SIGTERM, `stop_grace`, then
//! SIGKILL, and the operation ends Canceled. The runner gets the deployment
//! identity of its project environment type (`ADE_CLIENT_ID`,
//! `ADE_TENANT_ID`, `ADE_SUBSCRIPTION_ID` and the identity's variables);
//! runner output kept as a log is scrubbed of those values. A restart never loses an operation: a Running operation
//! whose container exists is re-attached (or finalised if it has exited);
//! one whose container never started is queued again.

pub mod ade_cli;
pub mod azure;
pub mod build;
pub mod engine;
pub mod identity;
mod launch;
pub mod netns;
mod operation_end;
pub mod process;

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use slipway_core::protocol::ENV_ENDPOINT;
use slipway_core::{ErrorBody, OperationStatus};
use slipway_store::{now_rfc3339, AuditEvent, OperationRecord, SecretKey, Store, StoreError};
use thiserror::Error;
use tokio::sync::Notify;

pub use build::{BuildConfinement, BuildOutput};
pub use engine::{Attachment, ContainerSpec, ContainerState, Engine, NetworkAttachment};
pub use netns::{NetworkPool, RunnerNetwork};

/// Container label that carries the operation id.
pub const OPERATION_LABEL: &str = "dev.slipway.operation";
/// Container label that carries the server instance id (see [`SchedulerConfig::instance_id`]).
pub const INSTANCE_LABEL: &str = "dev.slipway.instance";
/// Container label that carries the owning server's data folder, so that a
/// later server can tell a runner whose server (and folder) is gone.
pub const DATA_DIR_LABEL: &str = "dev.slipway.data-dir";

/// Errors of the executor.
#[derive(Debug, Error)]
pub enum RunnerError {
    /// The engine refused or failed a call.
    #[error("container engine: {0}")]
    Engine(String),
    /// The runner image is absent and could not be pulled.
    #[error("runner image '{image}' is not present and could not be pulled: {message}")]
    ImageUnavailable {
        /// Image reference.
        image: String,
        /// Engine message.
        message: String,
    },
    /// The runner's network could not be set up.
    #[error("runner network: {0}")]
    Network(String),
    /// The deployment identity could not sign in (no token for Azure
    /// Resource Manager before the runner starts): ADE's
    /// `DeploymentIdentitySignInError`.
    #[error("{0}")]
    IdentitySignIn(#[from] slipway_core::identity::SignInError),
    /// The environment's Azure resource group could not be created.
    #[error("{0}")]
    ResourceGroup(#[from] azure::ResourceGroupError),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Serves the runner API (`/runner/v1`) for one operation on an address of
/// that operation's own network; implemented by the HTTP server
/// (`slipway_api::RunnerApiServer`) and handed to
/// [`Scheduler::set_runner_api`].
pub trait RunnerApiHost: Send + Sync + std::fmt::Debug {
    /// Starts serving operation `op_id`'s runner API on `addr` (port 0: any
    /// free port). Returns the bound port and a guard that stops serving
    /// when dropped.
    ///
    /// Errors: the bind's I/O error.
    fn serve_on(&self, addr: SocketAddr, op_id: &str) -> std::io::Result<(u16, ApiListener)>;
}

/// Stops a runner API listener when dropped.
#[derive(Debug)]
pub struct ApiListener(tokio::task::AbortHandle);

impl ApiListener {
    /// A guard that aborts `task` (the listener's serve loop) on drop.
    pub fn new(task: tokio::task::AbortHandle) -> ApiListener {
        ApiListener(task)
    }
}

impl Drop for ApiListener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What an operation holds besides its container: its network and the
/// listener of its runner API.
#[derive(Debug)]
struct OperationNetwork {
    network: Option<RunnerNetwork>,
    _listener: ApiListener,
}

/// Runner image references for the predefined runner aliases.
#[derive(Debug, Clone)]
pub struct RunnerImages {
    /// `Core`.
    pub core: String,
    /// `Terraform`.
    pub terraform: String,
    /// `ARM` / `Bicep` (and a manifest without `runner`, as in ADE).
    pub arm: String,
}

impl Default for RunnerImages {
    fn default() -> Self {
        RunnerImages {
            core: "localhost/slipway/runner-core:latest".into(),
            terraform: "localhost/slipway/runner-terraform:latest".into(),
            arm: "localhost/slipway/runner-arm:latest".into(),
        }
    }
}

impl RunnerImages {
    /// Resolves a manifest's `runner` value: aliases are case-insensitive;
    /// anything else is an image reference used as is.
    pub fn resolve(&self, runner: Option<&str>) -> String {
        match runner.map(str::trim) {
            None | Some("") => self.arm.clone(),
            Some(r) if r.eq_ignore_ascii_case("core") => self.core.clone(),
            Some(r) if r.eq_ignore_ascii_case("terraform") => self.terraform.clone(),
            Some(r) if r.eq_ignore_ascii_case("arm") || r.eq_ignore_ascii_case("bicep") => {
                self.arm.clone()
            }
            Some(r) => r.to_string(),
        }
    }
}

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Operations running at once across all environments.
    pub max_concurrent: usize,
    /// Longest an operation may run before it is stopped and Failed.
    pub max_runtime: Duration,
    /// SIGTERM → SIGKILL grace when stopping a runner.
    pub stop_grace: Duration,
    /// Where each operation's network (a /30 link) comes from.
    pub network_pool: NetworkPool,
    /// Dev center id given as `ADE_HTTP__DEVCENTERID`.
    pub devcenter_id: String,
    /// Identifies this server's containers, so that recovery never touches
    /// the runners of another Slipway sharing the same container engine.
    pub instance_id: String,
    /// The server's data folder (canonical), labelled on its runners
    /// ([`DATA_DIR_LABEL`]).
    pub data_dir: std::path::PathBuf,
    /// Opens deployment identities.
    pub secret_key: SecretKey,
    /// The static `ade` mounted read-only at
    /// [`slipway_core::protocol::ADE_CLI_PATH`] in every runner (checked
    /// with [`ade_cli::check_runner_ade`]); `None`: runners use their
    /// image's own.
    pub runner_ade: Option<std::path::PathBuf>,
    /// Mints the tokens of deployment identities with a client secret
    /// (shared with the runner API's token endpoint).
    pub identity_tokens: Arc<identity::TokenBroker>,
    /// Creates and deletes environments' resource groups on Azure targets
    /// (see [`slipway_core::azure_target`]).
    pub resource_groups: azure::ResourceGroups,
    /// The Azure region environments' resource groups are created in.
    pub azure_location: String,
}

/// Hashes a runner token for storage (sha256 hex).
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A stable [`SchedulerConfig::instance_id`] for the server owning
/// `data_dir`: the first 16 hex digits of the sha256 of its canonical path.
pub fn instance_id_for(data_dir: &std::path::Path) -> String {
    let path = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    let mut id = hex::encode(Sha256::digest(path.to_string_lossy().as_bytes()));
    id.truncate(16);
    id
}

/// The operation scheduler. Cheap to clone through `Arc`.
#[derive(Debug)]
pub struct Scheduler {
    store: Store,
    engine: Engine,
    config: SchedulerConfig,
    wake: Notify,
    running: Mutex<HashSet<String>>,
    /// Cancel signals of running operations.
    cancels: Mutex<HashMap<String, Arc<Notify>>>,
    /// Serves each operation's runner API on its own network.
    runner_api: OnceLock<Arc<dyn RunnerApiHost>>,
    /// Networks and runner API listeners of running operations.
    networks: Mutex<HashMap<String, OperationNetwork>>,
    /// A runner network made ahead for the next operation (see
    /// `Scheduler::take_spare`).
    spare: Mutex<Option<RunnerNetwork>>,
    /// Whether a spare network is being made.
    refilling: std::sync::atomic::AtomicBool,
}

impl Scheduler {
    /// Creates a scheduler; call [`Scheduler::spawn`] to start it.
    pub fn new(store: Store, engine: Engine, config: SchedulerConfig) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            store,
            engine,
            config,
            wake: Notify::new(),
            running: Mutex::new(HashSet::new()),
            cancels: Mutex::new(HashMap::new()),
            runner_api: OnceLock::new(),
            networks: Mutex::new(HashMap::new()),
            spare: Mutex::new(None),
            refilling: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Sets what serves the runner API on each operation's network; must be
    /// called before [`Scheduler::spawn`]. A second call is ignored.
    pub fn set_runner_api(&self, host: Arc<dyn RunnerApiHost>) {
        let _ = self.runner_api.set(host);
    }

    /// The namespace name of operation `op_id`'s network:
    /// `slw-<instance>-<operation id>`, so that [`Scheduler::spawn`]'s
    /// reaping touches only this server's leftovers.
    pub fn network_name(&self, op_id: &str) -> String {
        format!("slw-{}-{op_id}", self.config.instance_id)
    }

    fn serve_runner_api(
        &self,
        gateway: Ipv4Addr,
        port: u16,
        op_id: &str,
    ) -> Result<(u16, ApiListener), RunnerError> {
        let host = self.runner_api.get().ok_or_else(|| {
            RunnerError::Network("the runner API is not being served (no RunnerApiHost set)".into())
        })?;
        host.serve_on(SocketAddr::from((gateway, port)), op_id)
            .map_err(|e| {
                RunnerError::Network(format!("serving the runner API on {gateway}:{port}: {e}"))
            })
    }

    fn held_networks(&self) -> std::sync::MutexGuard<'_, HashMap<String, OperationNetwork>> {
        self.networks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps operation `op_id`'s network (when this process made it) and
    /// runner API listener until [`Scheduler::release_network`].
    fn hold_network(&self, op_id: &str, network: Option<RunnerNetwork>, listener: ApiListener) {
        self.held_networks().insert(
            op_id.to_string(),
            OperationNetwork {
                network,
                _listener: listener,
            },
        );
    }

    /// Removes operation `op_id`'s network and stops its runner API listener.
    async fn release_network(&self, op_id: &str) {
        let held = self.held_networks().remove(op_id);
        match held.and_then(|h| h.network) {
            Some(n) => n.remove().await,
            None => netns::reap(&self.network_name(op_id)).await,
        }
        // Tables of links that died with a killed server's runners.
        netns::reap_orphan_tables().await;
    }

    /// Stops the runner of running operation `op_id` (SIGTERM, the grace
    /// period, SIGKILL); the operation then ends Canceled. The caller marks
    /// the operation first (`Store::request_cancel`), so a cancel that
    /// arrives while the runner is being (re)attached is still honoured.
    pub fn cancel(&self, op_id: &str) {
        if let Some(n) = self.cancel_signal(op_id) {
            n.notify_one();
        }
    }

    fn cancel_signal(&self, op_id: &str) -> Option<Arc<Notify>> {
        self.cancels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(op_id)
            .cloned()
    }

    fn track(&self, op_id: &str) {
        self.running_ids().insert(op_id.to_string());
        self.cancels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(op_id.to_string(), Arc::new(Notify::new()));
    }

    fn untrack(&self, op_id: &str) {
        self.running_ids().remove(op_id);
        self.cancels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(op_id);
    }

    async fn audit(&self, op: &OperationRecord, action: &str, result: &str) {
        let event = AuditEvent {
            time: now_rfc3339(),
            user: op.created_by.clone(),
            action: action.to_string(),
            target: op.id.clone(),
            project: Some(op.project.clone()),
            source: Some("scheduler".into()),
            result: result.to_string(),
        };
        if let Err(e) = self.store.record_audit(&event).await {
            tracing::warn!(operation = %op.id, error = %e, "could not record an audit event");
        }
    }

    /// Asks the scheduler to look for runnable operations now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Recovers operations left by a previous process, then runs the
    /// dispatch loop in the background.
    pub async fn spawn(self: &Arc<Self>) -> Result<(), RunnerError> {
        self.recover().await?;
        self.refill_spare();
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if let Err(e) = me.dispatch().await {
                    tracing::error!(error = %e, "scheduler dispatch failed");
                }
                // Woken on every enqueue and every finish; the timeout is only a safety net.
                let _ = tokio::time::timeout(Duration::from_secs(5), me.wake.notified()).await;
            }
        });
        Ok(())
    }

    fn running_ids(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn recover(self: &Arc<Self>) -> Result<(), RunnerError> {
        // Containers of operations that already ended (crash after the result was stored).
        for (name, labels) in self.engine.containers_with_label(OPERATION_LABEL).await? {
            if labels.get(INSTANCE_LABEL) != Some(&self.config.instance_id) {
                // Another server's runner: removed only once it has exited
                // and that server's data folder is gone (nobody can ever
                // record its result).
                let gone = labels
                    .get(DATA_DIR_LABEL)
                    .is_some_and(|d| !std::path::Path::new(d).exists());
                if gone
                    && matches!(
                        self.engine.state(&name).await?,
                        Some(ContainerState::Exited(_) | ContainerState::Stopped(_))
                    )
                {
                    tracing::info!(container = %name, "removing an exited runner whose server's data folder is gone");
                    self.engine.remove(&name).await?;
                }
                continue;
            }
            let Some(op_id) = labels.get(OPERATION_LABEL) else {
                continue;
            };
            let ended = match self.store.get_operation(op_id).await? {
                Some(op) => op.status.is_terminal(),
                None => true,
            };
            if ended {
                self.engine.remove(&name).await?;
            }
        }
        // Networks of operations that are no longer running.
        let prefix = self.network_name("");
        for ns in netns::namespaces_with_prefix(&prefix) {
            let op_id = &ns[prefix.len()..];
            let running = matches!(
                self.store.get_operation(op_id).await?,
                Some(op) if op.status == OperationStatus::Running
            );
            if !running {
                netns::reap(&ns).await;
            }
        }
        // Other servers' leftovers: runner containers created but never
        // started, and namespaces nobody joined, for 10 minutes.
        let stale = Duration::from_secs(600);
        for name in self
            .engine
            .never_started_with_label(OPERATION_LABEL, stale)
            .await?
        {
            tracing::info!(container = %name, "removing a runner container that never started");
            self.engine.remove(&name).await?;
        }
        netns::reap_stale_namespaces(stale).await;
        netns::reap_orphan_tables().await;
        for op in self
            .store
            .operations_with_status(OperationStatus::Running)
            .await?
        {
            match self.engine.state(&op.container_name).await? {
                None | Some(ContainerState::Created) => {
                    tracing::info!(operation = %op.id, "runner never started; queueing again");
                    self.engine.remove(&op.container_name).await?;
                    self.release_network(&op.id).await;
                    self.store.requeue_operation(&op.id).await?;
                }
                Some(_) => {
                    tracing::info!(operation = %op.id, "re-attaching to runner container");
                    self.reopen_runner_api(&op).await;
                    self.track(&op.id);
                    let me = Arc::clone(self);
                    tokio::spawn(async move { me.supervise(op, None).await });
                }
            }
        }
        Ok(())
    }

    /// After a restart, serves a still-running runner's API again on the
    /// address its container was given (`ADE_HTTP__ENDPOINT`).
    async fn reopen_runner_api(&self, op: &OperationRecord) {
        let endpoint = match self.engine.env_of(&op.container_name).await {
            Ok(env) => env.iter().find_map(|e| {
                e.strip_prefix(&format!("{ENV_ENDPOINT}="))
                    .map(str::to_string)
            }),
            Err(_) => None,
        };
        let addr = endpoint.as_deref().and_then(|e| {
            e.strip_prefix("http://")?
                .split('/')
                .next()?
                .parse::<SocketAddr>()
                .ok()
        });
        let Some(SocketAddr::V4(addr)) = addr else {
            tracing::warn!(operation = %op.id, "the runner's endpoint is unknown; its runner API is not served again");
            return;
        };
        match self.serve_runner_api(*addr.ip(), addr.port(), &op.id) {
            Ok((_, listener)) => {
                self.hold_network(&op.id, None, listener);
            }
            Err(e) => {
                tracing::warn!(operation = %op.id, error = %e, "could not serve the runner API again")
            }
        }
    }

    async fn dispatch(self: &Arc<Self>) -> Result<(), RunnerError> {
        let free = self
            .config
            .max_concurrent
            .saturating_sub(self.running_ids().len());
        if free == 0 {
            return Ok(());
        }
        for op in self.store.runnable_operations(free as u32).await? {
            let mut bytes = [0u8; 32];
            rand::fill(&mut bytes);
            let token = hex::encode(bytes);
            if !self
                .store
                .start_operation(&op.id, &hash_token(&token))
                .await?
            {
                continue;
            }
            self.track(&op.id);
            self.audit(&op, "operation.start", "Running").await;
            let me = Arc::clone(self);
            tokio::spawn(async move {
                match me.launch(&op, &token).await {
                    Ok(attachment) => me.supervise(op, attachment).await,
                    Err(e) => {
                        let _ = me.engine.remove(&op.container_name).await;
                        me.release_network(&op.id).await;
                        let code = match e {
                            RunnerError::ImageUnavailable { .. } => "RunnerImageUnavailable",
                            RunnerError::Network(_) => "RunnerNetworkError",
                            RunnerError::Store(StoreError::Secret(_))
                            | RunnerError::IdentitySignIn(_) => "DeploymentIdentitySignInError",
                            RunnerError::ResourceGroup(_) => "ResourceGroupCreationFailed",
                            _ => "RunnerStartError",
                        };
                        me.finish(
                            &op,
                            OperationStatus::Failed,
                            Some(ErrorBody::new(code, e.to_string())),
                        )
                        .await;
                    }
                }
            });
        }
        Ok(())
    }
}
