//! Executing a planned task run on the container engine.
//!
//! Semantics (reference `acr-tasks.md` §1.3–1.10, §3.2): steps start when
//! their predecessors succeeded (independent steps really run in parallel);
//! the first failing step without `ignoreErrors` fails the run at once,
//! stops its running siblings and removes every container and network of
//! the run. `/workspace` is the run's workspace folder, shared by all
//! steps; steps reach each other by step id on the run network.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::image::BuildImageOptions;
use futures_util::StreamExt;
use serde_json::{json, Value};
use slipway_core::credentials::RegistryCredential;
use slipway_core::isolation::{refuse_unconfined_step, run_network_ruleset, StepPermissions};
use slipway_core::scrub::Scrubber;
use slipway_core::tasks::cmdline::parse_cmd;
use slipway_core::tasks::dockerfile::{scan, Dependencies, ImageReference};
use slipway_core::tasks::taskfile::{Plan, Step, StepKind, WORKSPACE};
use slipway_fetch::Fetcher;
use slipway_runner::netns::HeldNetwork;
use slipway_runner::{
    netns, BuildConfinement, ContainerSpec, Engine, NetworkAttachment, NetworkPool, RunnerError,
    RunnerNetwork,
};
use tokio::task::JoinSet;

use crate::context::tar_tree;

/// How long a step's log stream may still deliver after its container exited.
const LOG_TAIL_GRACE: Duration = Duration::from_secs(2);

/// The largest Dockerfile a build step reads, bytes (4 MiB).
const MAX_DOCKERFILE_BYTES: u64 = 4 << 20;
use crate::registry::manifest_digest;
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
    let kind = step.kind().map_err(TaskError::Validation)?;
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

async fn run_cmd(
    env: &RunEnv,
    step: &Step,
    networks: &[(String, bool)],
) -> Result<StepOutput, TaskError> {
    let cmd = step.cmd.as_deref().unwrap_or_default();
    let rc = parse_cmd(cmd).map_err(TaskError::Validation)?;
    let name = env.container(&step.id);
    let cred = env.credential_for(&rc.image);
    let pulled = if step.pull {
        env.engine.pull(&rc.image, cred.as_ref()).await
    } else {
        env.engine.ensure_image(&rc.image, cred.as_ref()).await
    };
    pulled.map_err(|e| match e {
        RunnerError::ImageUnavailable { image, message } => {
            TaskError::Step(format!("pull {image}: {message}"))
        }
        other => TaskError::Engine(other.to_string()),
    })?;
    let mut rc = rc;
    let permissions = resolve_granted_host_mounts(&step.id, &mut rc.volumes, &env.permissions)?;
    refuse_unconfined_step(&step.confinement_request(&rc), &permissions)
        .map_err(TaskError::Validation)?;
    let network = rc.network.clone().or_else(|| step.network.clone());
    let attachment = match network {
        // Only reachable past the check with stepPermissions.hostNetwork.
        Some(n) if n.eq_ignore_ascii_case("host") => NetworkAttachment::Host,
        n => NetworkAttachment::Named {
            network: match n {
                Some(n) => match networks.iter().find(|(name, _)| *name == n) {
                    Some((_, false)) => env.network(&n),
                    _ => n,
                },
                None => env.network(slipway_core::tasks::taskfile::DEFAULT_NETWORK),
            },
            aliases: vec![step.id.clone()],
        },
    };
    let mut spec = ContainerSpec::new(&name, &rc.image, attachment);
    // Only reachable past the check with stepPermissions.privileged.
    spec.privileged = step.privileged || rc.privileged;
    let granted: Vec<&str> = [
        (spec.privileged, "privileged"),
        (
            spec.network == NetworkAttachment::Host,
            "the host's network",
        ),
        (
            rc.volumes.iter().any(|v| v.starts_with('/')),
            "host folders",
        ),
    ]
    .into_iter()
    .filter_map(|(used, what)| used.then_some(what))
    .collect();
    if !granted.is_empty() {
        env.log
            .line(&format!(
                "Step ID: {} runs with {}: granted by the task's stepPermissions ({})",
                step.id,
                granted.join(", "),
                env.permissions.summary()
            ))
            .await;
    }
    spec.binds = vec![format!("{}:{WORKSPACE}", env.workspace.display())];
    spec.binds.extend(rc.volumes.iter().cloned());
    for m in &step.volume_mounts {
        spec.binds.push(format!(
            "{}:{}:ro",
            env.volumes_dir.join(&m.name).display(),
            m.mount_path
        ));
    }
    spec.env = step.env.clone();
    spec.env.extend(rc.env.iter().cloned());
    spec.labels = rc.labels.clone().into_iter().collect();
    spec.labels.extend(env.owner_labels());
    spec.exposed_ports = step
        .expose
        .iter()
        .chain(rc.expose.iter())
        .map(|p| {
            if p.contains('/') {
                p.clone()
            } else {
                format!("{p}/tcp")
            }
        })
        .collect();
    for port in step.ports.iter().chain(rc.ports.iter()) {
        let p = slipway_core::tasks::cmdline::parse_port(port)
            .map_err(|m| TaskError::Validation(format!("step {}: {m}", step.id)))?;
        spec.port_bindings
            .push((p.container, p.host_ip, p.host_port));
    }
    spec.entrypoint = rc
        .entrypoint
        .clone()
        .or_else(|| step.entry_point.clone())
        .map(|e| vec![e]);
    spec.cmd = (!rc.args.is_empty()).then(|| rc.args.clone());
    spec.working_dir = rc.workdir.clone().or_else(|| step.workdir());
    spec.user = rc.user.clone().or_else(|| step.user.clone());
    spec.extra_hosts = rc.add_hosts.clone();
    if let Some(m) = rc.memory {
        spec.confinement.memory_bytes = m;
    }
    if let Some(c) = rc
        .cpus
        .or_else(|| step.cpus.as_deref().and_then(|c| c.parse().ok()))
    {
        spec.confinement.nano_cpus = (c * 1e9) as i64;
    }
    let _ = env.engine.remove(&name).await;
    env.log
        .line(&format!("Launching container with name: {}", step.id))
        .await;
    env.engine
        .create(&spec)
        .await
        .map_err(|e| TaskError::Step(format!("container {}: {e}", step.id)))?;
    env.engine
        .start_created(&name)
        .await
        .map_err(|e| TaskError::Step(format!("container {}: {e}", step.id)))?;
    if step.detach {
        env.log
            .line(&format!(
                "Successfully started detached container: {}",
                step.id
            ))
            .await;
        return Ok(StepOutput::default());
    }
    let code = {
        let logs = env.engine.follow_output(&name);
        tokio::pin!(logs);
        let drain = async {
            while let Some(Ok(c)) = logs.next().await {
                env.log
                    .raw(&env.scrubber.scrub(&String::from_utf8_lossy(&c)))
                    .await
            }
        };
        tokio::pin!(drain);
        // Podman's followed log stream does not always end when a quick
        // container exits (seen in CI: the step's output arrived, the stream
        // stayed open until the step timeout), so the exit is awaited beside
        // it and the stream gets a short grace for its tail.
        tokio::select! {
            _ = &mut drain => env.engine.exit_code(&name).await,
            code = env.engine.exit_code(&name) => {
                let _ = tokio::time::timeout(LOG_TAIL_GRACE, &mut drain).await;
                code
            }
        }
        .map_err(|e| TaskError::Engine(e.to_string()))?
    };
    if !step.keep {
        let _ = env.engine.remove(&name).await;
    }
    if code != 0 {
        return Err(TaskError::Step(format!(
            "container {} exited with status {code}",
            step.id
        )));
    }
    env.log
        .line(&format!("Successfully executed container: {}", step.id))
        .await;
    Ok(StepOutput::default())
}

/// A `build` step's arguments (docker build CLI words).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BuildArgs {
    /// `-t` / `--tag`.
    pub tags: Vec<String>,
    /// `-f` / `--file`.
    pub file: Option<String>,
    /// `--build-arg K=V`.
    pub build_args: Vec<String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--platform`.
    pub platform: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--label K=V`.
    pub labels: Vec<String>,
    /// Positional context (default `.`).
    pub context: String,
}

/// Parses a `build` string (`-t x -f Dockerfile --build-arg A=1 .`), also
/// the `--tag=x` forms acb misses.
///
/// Errors: unbalanced quotes, an unsupported flag (named), two contexts.
pub fn parse_build(build: &str) -> Result<BuildArgs, String> {
    let words = shell_words::split(build).map_err(|e| format!("build {build:?}: {e}"))?;
    let mut b = BuildArgs::default();
    let mut it = words.into_iter();
    let mut context = None;
    while let Some(w) = it.next() {
        let (flag, inline) = match w.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f.to_string(), Some(v.to_string())),
            _ => (w.clone(), None),
        };
        let value = |it: &mut std::vec::IntoIter<String>| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("build flag '{flag}' needs a value"))
        };
        match flag.as_str() {
            "-t" | "--tag" => b.tags.push(value(&mut it)?),
            "-f" | "--file" => b.file = Some(value(&mut it)?),
            "--build-arg" => b.build_args.push(value(&mut it)?),
            "--target" => b.target = Some(value(&mut it)?),
            "--platform" => b.platform = Some(value(&mut it)?),
            "--label" => b.labels.push(value(&mut it)?),
            "--no-cache" => b.no_cache = true,
            "--pull" | "--rm" | "--force-rm" | "-q" | "--quiet" => {}
            "--network" | "--isolation" | "--cache-from" => {
                value(&mut it)?;
            }
            f if f.starts_with('-') && f != "-" => {
                return Err(format!(
                    "build flag '{f}' is not supported: expected -t, -f, --build-arg, --target, --platform, --label, --no-cache"
                ))
            }
            _ => {
                if context.replace(w.clone()).is_some() {
                    return Err(format!("build {build:?} names two contexts"));
                }
            }
        }
    }
    b.context = context.unwrap_or_else(|| ".".into());
    Ok(b)
}

async fn run_build(env: &RunEnv, step: &Step) -> Result<StepOutput, TaskError> {
    let args =
        parse_build(step.build.as_deref().unwrap_or_default()).map_err(TaskError::Validation)?;
    if step
        .cache
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case("enabled"))
    {
        // acb exports a buildx registry cache (`<repo>:cache_<task>_<step>`);
        // Slipway builds through the engine, whose layer cache is local.
        env.log
            .line("cache: enabled: layers are reused from the container engine's local cache; no registry cache is exported")
            .await;
    }
    let workdir = workspace_rel("", &step.workdir().unwrap_or_else(|| WORKSPACE.into()))?;
    let context_rel = workspace_rel(&workdir, &args.context)?;
    let dockerfile_name = args.file.clone().unwrap_or_else(|| "Dockerfile".into());
    let dockerfile_rel = workspace_rel(&workdir, &dockerfile_name)?;
    // Every read below goes through the workspace tree: a symlink a step
    // planted cannot lead the server to a host file.
    let workspace = slipway_hostfs::Tree::open(&env.workspace)
        .map_err(|e| TaskError::Step(format!("run workspace {e}")))?;
    let dockerfile_text = workspace
        .read_to_string(&dockerfile_rel, MAX_DOCKERFILE_BYTES)
        .map_err(|e| TaskError::Step(format!("cannot read Dockerfile: {e}")))?;
    let in_context = if context_rel.is_empty() {
        Some(dockerfile_rel.clone())
    } else {
        dockerfile_rel
            .strip_prefix(&format!("{context_rel}/"))
            .map(str::to_string)
    };
    let deps = scan(&dockerfile_text, &args.build_args, args.target.as_deref())
        .map_err(TaskError::Step)?;
    let context_tree = workspace
        .subtree(&context_rel)
        .map_err(|e| TaskError::Step(format!("build context {e}")))?;
    let in_ctx = in_context.clone();
    let mut tar = tokio::task::spawn_blocking(move || tar_tree(&context_tree, in_ctx.as_deref()))
        .await
        .map_err(|e| TaskError::Engine(e.to_string()))??;
    let dockerfile_in_tar = match in_context {
        Some(p) => p,
        None => {
            // A Dockerfile outside the context travels inside the tarball
            // under a generated name, like `az acr build`.
            let name = format!(
                "{}_{}",
                env.run_id,
                dockerfile_name.rsplit('/').next().unwrap_or("Dockerfile")
            );
            tar = append_file(tar, &name, dockerfile_text.as_bytes())?;
            name
        }
    };
    let tag = args
        .tags
        .first()
        .cloned()
        .unwrap_or_else(|| format!("localhost/slipway-build/{}", env.run_id));
    // `--build-arg NAME` without a value takes it from the caller's
    // environment in docker; the server's environment is not the caller's,
    // so the Dockerfile's own default applies instead.
    let buildargs: HashMap<String, String> = args
        .build_args
        .iter()
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let labels: HashMap<String, String> = args
        .labels
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    // Always look for a newer base in its registry (a base-image update must
    // be seen), except for images that only exist locally (`localhost/…`).
    let bases = deps.runtime.iter().chain(deps.buildtime.iter());
    let pull = !bases.clone().any(|r| r.registry == "localhost");
    // RUN instructions join a namespace of their own with the runner
    // egress policy (removed with `held` however the step ends).
    let mut held = HeldNetwork(
        RunnerNetwork::create(&env.container(&step.id), &env.network_pool, &[])
            .await
            .map_err(|e| TaskError::Step(format!("build network: {e}")))?,
    );
    held.0
        .install_closed_filter()
        .await
        .map_err(|e| TaskError::Step(format!("build network: {e}")))?;
    let mut secrets = Vec::new();
    for (i, (name, value)) in env.build_secrets.iter().enumerate() {
        let file = format!(".slipway-build-secret-{i}");
        tar = append_file(tar, &file, value.as_bytes())?;
        secrets.push((name.clone(), file));
    }
    let confinement = BuildConfinement {
        network_namespace: held.0.path().into(),
        secrets,
    };
    let options = BuildImageOptions {
        dockerfile: dockerfile_in_tar,
        t: tag.clone(),
        buildargs,
        target: args.target.clone().unwrap_or_default(),
        platform: args.platform.clone().unwrap_or_default(),
        nocache: args.no_cache,
        pull,
        rm: true,
        forcerm: true,
        labels,
        ..Default::default()
    };
    let mut output = env
        .engine
        .build_image(&options, &env.credentials, tar, &confinement)
        .await
        .map_err(|e| TaskError::Step(format!("build: {}", env.scrubber.scrub(&e.to_string()))))?;
    while let Some(item) = output.next_line().await {
        match item {
            Ok(line) => env.log.raw(&env.scrubber.scrub(&line)).await,
            Err(e) => {
                return Err(TaskError::Step(format!(
                    "build: {}",
                    env.scrubber.scrub(&e.to_string())
                )))
            }
        }
    }
    drop(held);
    for extra in args.tags.iter().skip(1) {
        let (repo, t) = split_tag(extra);
        env.engine
            .tag_image(&tag, &repo, &t)
            .await
            .map_err(|e| TaskError::Step(format!("tag {extra}: {e}")))?;
    }
    let mut dependencies = Vec::new();
    let images: Vec<Option<&String>> = if args.tags.is_empty() {
        vec![None]
    } else {
        args.tags.iter().map(Some).collect()
    };
    for image in images {
        dependencies.push(dependency_doc(env, image.map(|s| s.as_str()), &deps).await);
    }
    Ok(StepOutput {
        images: vec![],
        dependencies,
    })
}

async fn dependency_doc(env: &RunEnv, image: Option<&str>, deps: &Dependencies) -> Value {
    let resolve = |r: ImageReference| async move {
        let cred = env.credential_for(&r.reference);
        let mut r = r;
        if r.digest.is_empty() {
            if let Ok(Some(d)) =
                manifest_digest(&env.fetcher, &r.registry, &r.repository, &r.tag, cred).await
            {
                r.digest = d;
            }
        }
        json!(r)
    };
    let runtime = match &deps.runtime {
        Some(r) => resolve(r.clone()).await,
        None => Value::Null,
    };
    let mut buildtime = Vec::new();
    for b in &deps.buildtime {
        buildtime.push(resolve(b.clone()).await);
    }
    let mut doc = json!({
        "image": image.map(|i| json!(ImageReference::parse(i))),
        "runtime-dependency": runtime,
        "buildtime-dependency": buildtime,
    });
    if !env.git_commit.is_empty() {
        doc["git"] = json!({ "git-head-revision": env.git_commit });
    }
    doc
}

fn append_file(tar: Vec<u8>, name: &str, bytes: &[u8]) -> Result<Vec<u8>, TaskError> {
    // A tar ends with two zero blocks; drop them, append, re-terminate.
    let mut t = tar;
    while t.len() >= 512 && t[t.len() - 512..].iter().all(|&b| b == 0) {
        t.truncate(t.len() - 512);
    }
    let mut b = tar::Builder::new(t);
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    b.append_data(&mut header, name, bytes)
        .map_err(|e| TaskError::Engine(e.to_string()))?;
    b.into_inner().map_err(|e| TaskError::Engine(e.to_string()))
}

/// `repo[:tag]` → `(repo, tag)`, tag defaulting to `latest`.
pub fn split_tag(image: &str) -> (String, String) {
    match image.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
        _ => (image.to_string(), "latest".to_string()),
    }
}

/// Pushes each image: 3 attempts, backoff 250 ms·2^n (acb `pushWithRetries`).
async fn push_images(env: &RunEnv, images: &[String]) -> Result<Vec<Value>, TaskError> {
    let mut out = Vec::new();
    for image in images {
        env.log
            .line(&format!("Pushing image: {image}, attempt 1"))
            .await;
        let (repo, tag) = split_tag(image);
        let cred = env.credential_for(image);
        let mut last = None;
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt))).await;
                env.log
                    .line(&format!("Pushing image: {image}, attempt {}", attempt + 1))
                    .await;
            }
            let failed = env
                .engine
                .push_image(&repo, &tag, cred.as_ref())
                .await
                .err()
                .map(|e| e.to_string());
            match failed {
                None => {
                    last = None;
                    break;
                }
                Some(m) => last = Some(m),
            }
        }
        if let Some(m) = last {
            env.log.line(&format!("push {image}: {m}")).await;
            return Err(TaskError::Step("failed to push images successfully".into()));
        }
        let r = ImageReference::parse(image);
        let digest = manifest_digest(&env.fetcher, &r.registry, &r.repository, &r.tag, cred)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        env.log
            .line(&format!("Successfully pushed image: {image} ({digest})"))
            .await;
        out.push(json!({"registry": r.registry, "repository": r.repository, "tag": r.tag, "digest": digest}));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_strings() {
        let b = parse_build("-t r/app:{v} --tag=r/app:latest -f sub/Dockerfile --build-arg A=1 --target final ./src").unwrap();
        assert_eq!(b.tags, vec!["r/app:{v}", "r/app:latest"]);
        assert_eq!(b.file.as_deref(), Some("sub/Dockerfile"));
        assert_eq!(b.build_args, vec!["A=1"]);
        assert_eq!(b.target.as_deref(), Some("final"));
        assert_eq!(b.context, "./src");
        assert!(parse_build("--squash .")
            .unwrap_err()
            .contains("'--squash'"));
        assert_eq!(
            split_tag("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app".into(), "latest".into())
        );
    }
}
