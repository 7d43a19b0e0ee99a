//! Executing a planned task run on the container engine.
//!
//! Semantics (reference `acr-tasks.md` §1.3–1.10, §3.2): steps start when
//! their predecessors succeeded (independent steps really run in parallel);
//! the first failing step without `ignoreErrors` fails the run at once,
//! stops its running siblings and removes every container and network of
//! the run. `/workspace` is the run's workspace folder, shared by all
//! steps; steps reach each other by step id on the run network.

mod build_step;
mod cmd_step;
mod push;

pub use build_step::{parse_build, BuildArgs, BuildFlagsError};
pub use push::split_tag;

use build_step::run_build;
use cmd_step::run_cmd;
use push::push_images;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use slipway_core::credentials::RegistryCredential;
use slipway_core::isolation::{run_network_ruleset, StepPermissions, UserNamespace};
use slipway_core::scrub::Scrubber;
use slipway_core::tasks::taskfile::{Plan, Step, StepKind, WORKSPACE};
use slipway_fetch::Fetcher;
use slipway_runner::{netns, Engine, NetworkPool};
use tokio::task::JoinSet;

/// How long a step's log stream may still deliver after its container exited.
const LOG_TAIL_GRACE: Duration = Duration::from_secs(2);

/// The largest Dockerfile a build step reads, bytes (4 MiB).
const MAX_DOCKERFILE_BYTES: u64 = 4 << 20;
use crate::{RunLog, TaskError};

/// Label on every container and network of a run: `<instance>/<run id>`.
pub const RUN_LABEL: &str = "io.slipway.task-run";
/// Label on a run's network naming its bridge interface, which is also the
/// name of the host's nftables table for it.
pub const BRIDGE_LABEL: &str = "io.slipway.bridge";

/// The [`RUN_LABEL`] value of run `run_id` on server `instance`.
pub fn run_label(instance: &str, run_id: &str) -> String {
    format!("{instance}.{run_id}")
}

/// Everything a run's steps need.
pub struct RunEnv {
    /// The container engine.
    pub engine: Engine,
    /// Run id.
    pub run_id: String,
    /// This server's instance id (run ids repeat across servers sharing an engine).
    pub instance: String,
    /// This server's data folder, carried as [`slipway_runner::DATA_DIR_LABEL`]
    /// so a later server can tell the run's resources once it is gone.
    pub data_dir: PathBuf,
    /// Host folder mounted at `/workspace`.
    pub workspace: PathBuf,
    /// Host folder for secret volumes.
    pub volumes_dir: PathBuf,
    /// Log sink.
    pub log: RunLog,
    /// Values masked in the log (secret build args, secrets).
    pub scrubber: Scrubber,
    /// Registry credentials by server.
    pub credentials: Vec<RegistryCredential>,
    /// Commit of a git context (acb's `git.git-head-revision`), or empty.
    pub git_commit: String,
    /// Reaches other registries (digests of pushed and dependency images).
    pub fetcher: Fetcher,
    /// Where build steps' network namespaces come from.
    pub network_pool: NetworkPool,
    /// The exceptions a DevCenter Admin granted the task's steps
    /// ([`Plan::permissions`]; empty for quick runs).
    pub permissions: StepPermissions,
    /// The user namespace every step of the run shares: a block of host ids
    /// of its own ([`UserNamespace::for_run`]), or the host's for a task
    /// with [`RunEnv::permissions`].
    pub user_namespace: UserNamespace,
    /// Secret build args `(name, value)` of a quick build: every build step
    /// gets them as build secrets (`RUN --mount=type=secret,id=<name>`),
    /// never as build args.
    pub build_secrets: Vec<(String, String)>,
}

impl RunEnv {
    fn container(&self, step_id: &str) -> String {
        let safe: String = step_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("slw-{}-{}-{safe}", self.instance, self.run_id)
    }

    fn network(&self, name: &str) -> String {
        format!("slw-{}-{}-{name}", self.instance, self.run_id)
    }

    /// The label value that marks this run's containers and networks.
    pub fn label(&self) -> String {
        run_label(&self.instance, &self.run_id)
    }

    /// The labels every container and network of the run carries: the run
    /// ([`RUN_LABEL`]) and the server's data folder.
    fn owner_labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (RUN_LABEL.to_string(), self.label()),
            (
                slipway_runner::DATA_DIR_LABEL.to_string(),
                self.data_dir.to_string_lossy().into_owned(),
            ),
        ])
    }

    fn credential_for(&self, image: &str) -> Option<RegistryCredential> {
        let host = slipway_core::credentials::registry_of(image);
        self.credentials.iter().find(|c| c.server == host).cloned()
    }
}

/// The workspace-relative path (`/`-separated, `""` = the workspace) of
/// `path` as a step sees it: absolute paths are taken beneath `/workspace`
/// (`/workspace/x` and `/x` both name `x`), relative ones beneath `base`
/// (itself workspace-relative); `..` is resolved by name.
///
/// Errors: [`TaskError::Validation`] when `path` climbs out of the workspace.
fn workspace_rel(base: &str, path: &str) -> Result<String, TaskError> {
    let (mut parts, rest): (Vec<&str>, &str) = if path.starts_with('/') {
        let rel = path.strip_prefix(WORKSPACE).unwrap_or(path);
        (Vec::new(), rel)
    } else {
        (base.split('/').filter(|p| !p.is_empty()).collect(), path)
    };
    for c in rest.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(TaskError::Validation(format!(
                        "path '{path}' leads outside the run's workspace"
                    )));
                }
            }
            other => parts.push(other),
        }
    }
    Ok(parts.join("/"))
}

/// What a finished run produced.
#[derive(Debug, Default, Clone)]
pub struct RunOutput {
    /// Pushed images `{registry, repository, tag, digest}`.
    pub images: Vec<Value>,
    /// acb-style dependency list.
    pub dependencies: Vec<Value>,
}

/// Runs `plan`; cleans up containers and networks whatever the outcome.
///
/// Errors: [`TaskError::Step`] naming the first failed step.
pub async fn execute(env: Arc<RunEnv>, plan: Plan) -> Result<RunOutput, TaskError> {
    let res = execute_inner(&env, &plan).await;
    let kept: Vec<String> = plan
        .task
        .steps
        .iter()
        .filter(|s| s.keep)
        .map(|s| env.container(&s.id))
        .collect();
    remove_run_resources(&env.engine, &env.label(), &kept).await;
    res
}

async fn execute_inner(env: &Arc<RunEnv>, plan: &Plan) -> Result<RunOutput, TaskError> {
    for n in &plan.networks {
        if n.skip_creation {
            continue;
        }
        env.log
            .line(&format!(
                "Creating Docker network: {}, driver: '{}'",
                n.name,
                n.driver.as_deref().unwrap_or("bridge")
            ))
            .await;
        // The host's filter names the bridge before any step joins it.
        let bridge = format!("slwb{}", hex::encode(rand::random::<[u8; 4]>()));
        let mut labels = env.owner_labels();
        labels.insert(BRIDGE_LABEL.to_string(), bridge.clone());
        let gateway = env
            .engine
            .create_network(&env.network(&n.name), "bridge", &bridge, labels)
            .await
            .map_err(|e| TaskError::Engine(format!("create network {}: {e}", n.name)))?;
        netns::load_rules(&run_network_ruleset(&bridge, &bridge, gateway))
            .await
            .map_err(|e| TaskError::Engine(format!("network {}: {e}", n.name)))?;
    }
    for v in &plan.task.volumes {
        let dir = env.volumes_dir.join(&v.name);
        std::fs::create_dir_all(&dir).map_err(|e| TaskError::Engine(e.to_string()))?;
        for (file, b64) in v.secret.iter().flatten() {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| {
                    TaskError::Validation(format!(
                        "volume {}: secret {file} is not base64: {e}",
                        v.name
                    ))
                })?;
            slipway_store::write_private_file(&dir.join(file), &bytes)
                .map_err(|e| TaskError::Engine(e.to_string()))?;
        }
    }
    if let Some(root) = env.user_namespace.host_root() {
        // The server wrote the context and the secrets as host root; the
        // steps' root is the run's own host id.
        for dir in [&env.workspace, &env.volumes_dir] {
            if dir.exists() {
                slipway_hostfs::Tree::open(dir)
                    .and_then(|t| t.hand_over(root))
                    .map_err(|e| TaskError::Engine(format!("{}: {e}", dir.display())))?;
            }
        }
    }
    let n = plan.task.steps.len();
    let mut pending: Vec<usize> = plan.deps.iter().map(Vec::len).collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, d) in plan.deps.iter().enumerate() {
        for &p in d {
            children[p].push(i);
        }
    }
    let mut set: JoinSet<(usize, Result<StepOutput, TaskError>)> = JoinSet::new();
    let spawn = |set: &mut JoinSet<_>, i: usize| {
        let env = Arc::clone(env);
        let step = plan.task.steps[i].clone();
        let networks = plan
            .networks
            .iter()
            .map(|n| (n.name.clone(), n.skip_creation))
            .collect::<Vec<_>>();
        set.spawn(async move { (i, run_step(&env, &step, &networks).await) });
    };
    for (i, _) in pending.iter().enumerate().filter(|(_, p)| **p == 0) {
        spawn(&mut set, i);
    }
    let mut out = RunOutput::default();
    while let Some(joined) = set.join_next().await {
        let (i, res) = joined.map_err(|e| TaskError::Engine(format!("step task: {e}")))?;
        let step = &plan.task.steps[i];
        match res {
            Ok(o) => {
                out.images.extend(o.images);
                out.dependencies.extend(o.dependencies);
            }
            Err(e) if step.ignore_errors => {
                env.log
                    .line(&format!(
                        "Step ID: {} encountered an error: {e}, but is set to ignore errors. Continuing...",
                        step.id
                    ))
                    .await;
            }
            Err(e) => {
                // Fail fast: the siblings are stopped by cleanup.
                set.abort_all();
                return Err(TaskError::Step(format!(
                    "failed to run step ID: {}: {e}",
                    step.id
                )));
            }
        }
        for &c in &children[i] {
            pending[c] -= 1;
            if pending[c] == 0 {
                spawn(&mut set, c);
            }
        }
    }
    Ok(out)
}

/// Removes every container (but those named in `keep`) and network
/// labelled [`RUN_LABEL`]` = label`: detached services, the containers of
/// aborted steps, the run's networks. Failures are ignored (best effort).
pub async fn remove_run_resources(engine: &Engine, label: &str, keep: &[String]) {
    let bridges: Vec<String> = engine
        .networks_with_label(RUN_LABEL)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, l)| l.get(RUN_LABEL).map(String::as_str) == Some(label))
        .filter_map(|(_, mut l)| l.remove(BRIDGE_LABEL))
        .collect();
    engine.remove_labelled(RUN_LABEL, label, keep).await;
    for b in bridges {
        netns::remove_table(&b).await;
    }
}

/// Removes the containers and networks of other servers' runs whose
/// server is gone: their [`slipway_runner::DATA_DIR_LABEL`] names a folder
/// that no longer exists, so no server can ever finish or clean up those
/// runs (a server killed, its folder deleted). Runs of `own_instance`, and
/// resources without the label, are left alone. Returns the run labels
/// removed. Best effort, like [`remove_run_resources`].
pub async fn remove_runs_of_gone_servers(engine: &Engine, own_instance: &str) -> Vec<String> {
    let containers = engine
        .containers_with_label(RUN_LABEL)
        .await
        .unwrap_or_default();
    let networks = engine
        .networks_with_label(RUN_LABEL)
        .await
        .unwrap_or_default();
    let own = format!("{own_instance}.");
    let mut gone: Vec<String> = containers
        .into_iter()
        .chain(networks)
        .filter_map(|(_, labels)| {
            let run = labels.get(RUN_LABEL)?;
            let dir = labels.get(slipway_runner::DATA_DIR_LABEL)?;
            (!run.starts_with(&own) && !std::path::Path::new(dir).exists()).then(|| run.clone())
        })
        .collect();
    gone.sort();
    gone.dedup();
    for run in &gone {
        tracing::info!(run = %run, "removing the containers and networks of a run whose server's data folder is gone");
        remove_run_resources(engine, run, &[]).await;
    }
    gone
}

/// Resolves the symlinks of every host-folder mount in `volumes` that
/// lies, by name, beneath a folder `permissions` grants, and of the granted
/// folders themselves, so the check compares the folders the engine would
/// really mount (a link planted beneath a granted folder cannot lead out).
/// Nothing is touched on the host when no folder is granted, nor for a
/// mount outside every grant (the check refuses those by name, without
/// telling whether they exist). Returns the permissions with resolved
/// folders; `volumes` get resolved sources.
///
/// Errors: [`TaskError::Validation`] naming the step and the mount whose
/// folder cannot be resolved (e.g. it does not exist).
fn resolve_granted_host_mounts(
    step_id: &str,
    volumes: &mut [String],
    permissions: &StepPermissions,
) -> Result<StepPermissions, TaskError> {
    if permissions.host_paths.is_empty() {
        return Ok(permissions.clone());
    }
    let mut resolved = permissions.clone();
    for p in resolved.host_paths.iter_mut() {
        if let Ok(real) = std::fs::canonicalize(&*p) {
            *p = real.to_string_lossy().into_owned();
        }
    }
    for v in volumes.iter_mut() {
        let Some((source, rest)) = v.split_once(':') else {
            continue;
        };
        if !permissions.allows_host_path(source) {
            continue;
        }
        let real = std::fs::canonicalize(source).map_err(|e| {
            TaskError::Validation(format!(
                "step '{step_id}': volume '{v}': the host folder '{source}' cannot be mounted: {e}"
            ))
        })?;
        *v = format!("{}:{rest}", real.to_string_lossy());
    }
    Ok(resolved)
}

#[derive(Default)]
struct StepOutput {
    images: Vec<Value>,
    dependencies: Vec<Value>,
}

async fn run_step(
    env: &RunEnv,
    step: &Step,
    networks: &[(String, bool)],
) -> Result<StepOutput, TaskError> {
    if step.start_delay > 0 {
        tokio::time::sleep(Duration::from_secs(step.start_delay as u64)).await;
    }
    let started = Instant::now();
    env.log
        .line(&format!(
            "Executing step ID: {}. Timeout(sec): {}, Working directory: '{}', Network: '{}'",
            step.id,
            step.timeout,
            step.working_directory.as_deref().unwrap_or(""),
            step.network.as_deref().unwrap_or("")
        ))
        .await;
    let kind = step
        .kind()
        .map_err(|e| TaskError::Validation(e.to_string()))?;
    let work = async {
        match kind {
            StepKind::Cmd => {
                let mut last = Err(TaskError::Step("not run".into()));
                for _ in 0..=step.repeat {
                    last = with_retries(env, step, || run_cmd(env, step, networks)).await;
                    last.as_ref().map_err(|e| TaskError::Step(e.to_string()))?;
                }
                last.map(|_| StepOutput::default())
            }
            StepKind::Build => with_retries(env, step, || run_build(env, step)).await,
            StepKind::Push => push_images(env, &step.push).await.map(|images| StepOutput {
                images,
                dependencies: vec![],
            }),
        }
    };
    let res =
        match tokio::time::timeout(Duration::from_secs(step.timeout.max(1) as u64), work).await {
            Ok(r) => r,
            Err(_) => {
                let _ = env.engine.remove(&env.container(&step.id)).await;
                Err(TaskError::Step(format!(
                    "step timed out after {} seconds",
                    step.timeout
                )))
            }
        };
    let status = if res.is_ok() { "successful" } else { "failed" };
    env.log
        .line(&format!(
            "Step ID: {} marked as {status} (elapsed time in seconds: {:.6})",
            step.id,
            started.elapsed().as_secs_f64()
        ))
        .await;
    res
}

async fn with_retries<F, Fut>(env: &RunEnv, step: &Step, mut f: F) -> Result<StepOutput, TaskError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<StepOutput, TaskError>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(o) => return Ok(o),
            Err(e) if attempt < step.retries => {
                let retry = step.retry_on_errors.is_empty()
                    || step
                        .retry_on_errors
                        .iter()
                        .any(|s| e.to_string().contains(s));
                if !retry {
                    return Err(e);
                }
                attempt += 1;
                env.log
                    .line(&format!(
                        "Step ID: {} failed: {e}; retry {attempt} of {} in {} s",
                        step.id, step.retries, step.retry_delay
                    ))
                    .await;
                tokio::time::sleep(Duration::from_secs(step.retry_delay as u64)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
