//! Container image tasks (modelled on ACR Tasks): quick builds, multi-step
//! acb task runs, the embedded registry and the triggers that start runs.
//!
//! - [`context`]: build contexts (tar with `.dockerignore`, git, tarball URLs;
//!   `oci://` artifacts come through [`registry::pull_artifact`]).
//! - [`registry`]: the embedded `docker-registry` and manifest digests.
//! - [`exec`]: running a planned task on the container engine.
//! - [`TaskService`]: the run queue, cancel, run timeouts, base-image and
//!   timer triggers.
//!
//! Contract: `../shared/reference/acr-tasks.md`. Run statuses are ACR's
//! (`Queued → Started → Running → Succeeded|Failed|Canceled|Error|Timeout`).

pub mod context;
pub mod exec;
pub mod registry;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use slipway_core::scrub::Scrubber;
use slipway_core::tasks::cmdline::expand_command_alias;
use slipway_core::tasks::taskfile::{self, Plan, Step, TaskFile};
use slipway_core::tasks::template::render;
use slipway_core::tasks::values::{
    aliases_enabled, merge_values, parse_set, preprocess_aliases, strip_comment_lines,
    template_data, RunVariables,
};
use slipway_fetch::{Fetcher, MAX_IN_MEMORY_BYTES};
use slipway_git::LocalRoots;
use slipway_runner::Engine;
use slipway_store::{SecretKey, SecretScope, Store, StoreError, TaskRunRecord};
use thiserror::Error;
use tokio::sync::{Notify, Semaphore};

use crate::context::{untar, GitContext};
use crate::exec::{execute, RunEnv};

/// Default run timeout, seconds (ACR: default 3600, 300–28800).
pub const DEFAULT_TIMEOUT: u64 = 3600;
/// Allowed run timeouts, seconds.
pub const TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 300..=28800;
/// Quick-build `build` step timeout (acb `buildTimeoutInSec`).
pub const QUICK_BUILD_STEP_TIMEOUT: i64 = 28800;

/// Errors of image tasks.
#[derive(Debug, Error)]
pub enum TaskError {
    /// Bad input: names the field and what was expected.
    #[error("{0}")]
    Validation(String),
    /// The context could not be fetched or unpacked.
    #[error("context: {0}")]
    Context(String),
    /// A step failed.
    #[error("{0}")]
    Step(String),
    /// The container engine failed.
    #[error("container engine: {0}")]
    Engine(String),
    /// The registry failed or is missing.
    #[error("registry: {0}")]
    Registry(String),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A task's base-image dependency, learned from its last successful run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaseImageDependency {
    /// `RunTime` | `BuildTime`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Registry host.
    pub registry: String,
    /// Repository.
    pub repository: String,
    /// Tag.
    pub tag: String,
    /// Digest seen at the last build (or the last trigger).
    pub digest: String,
}

/// A timer trigger (5-field UTC cron).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimerTrigger {
    /// `t1`, `t2`, … by default.
    pub name: String,
    /// `minute hour day month day-of-week`, UTC.
    pub schedule: String,
    /// `Enabled` | `Disabled`.
    #[serde(default = "enabled")]
    pub status: String,
}

/// The base-image-update trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaseImageTrigger {
    /// Default `defaultBaseimageTriggerName`.
    #[serde(default = "default_base_trigger_name")]
    pub name: String,
    /// `Runtime` (default) | `All`.
    #[serde(default = "runtime", rename = "baseImageTriggerType")]
    pub kind: String,
    /// `Enabled` | `Disabled`.
    #[serde(default = "enabled")]
    pub status: String,
}

/// The source-commit trigger of a task with a git context (ACR
/// `sourceTriggers[0]`): a signed webhook from GitHub, Gitea/Forgejo or
/// GitLab, and/or polling the remote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceTrigger {
    /// Default `defaultSourceTriggerName`.
    #[serde(default = "default_source_trigger_name")]
    pub name: String,
    /// `commit` (the only event; ACR's `pullrequest` is not offered).
    #[serde(default = "commit_events")]
    pub source_trigger_events: Vec<String>,
    /// `Enabled` | `Disabled`.
    #[serde(default = "enabled")]
    pub status: String,
    /// Write-only: the webhook secret (HMAC key for GitHub/Gitea, the
    /// token for GitLab). Sealed on save into `sealedWebhookSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// The webhook secret sealed with the server's key (never shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_webhook_secret: Option<String>,
    /// Poll the remote every this many seconds (5–86400); none = webhook only.
    #[serde(default)]
    pub poll_interval_seconds: Option<u64>,
    /// The last commit that started (or, at the first poll, was found
    /// without starting) a run: state, kept across updates.
    #[serde(default)]
    pub last_commit: Option<String>,
}

/// Allowed polling intervals, seconds.
pub const POLL_INTERVAL_RANGE: std::ops::RangeInclusive<u64> = 5..=86400;

fn default_source_trigger_name() -> String {
    "defaultSourceTriggerName".into()
}
fn commit_events() -> Vec<String> {
    vec!["commit".into()]
}

/// A secret value for the template (`--set-secret name=value`, read as
/// `{{.Values.name}}`, masked in logs, never shown).
/// On the wire either `{name, value}` or the command-line form `"name=value"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "SecretValueWire")]
pub struct SecretValue {
    /// The value's name.
    pub name: String,
    /// Write-only plain value; sealed into `sealed` when stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value sealed with the server's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SecretValueWire {
    Pair(String),
    #[serde(rename_all = "camelCase")]
    Object {
        name: String,
        #[serde(default)]
        value: Option<String>,
        #[serde(default)]
        sealed: Option<String>,
    },
}

impl TryFrom<SecretValueWire> for SecretValue {
    type Error = String;

    fn try_from(w: SecretValueWire) -> Result<Self, String> {
        match w {
            SecretValueWire::Pair(p) => match p.split_once('=') {
                Some((name, value)) if !name.is_empty() => Ok(SecretValue {
                    name: name.to_string(),
                    value: Some(value.to_string()),
                    sealed: None,
                }),
                _ => Err(format!(
                    "'{}': expected NAME=VALUE",
                    p.split('=').next().unwrap_or_default()
                )),
            },
            SecretValueWire::Object {
                name,
                value,
                sealed,
            } => Ok(SecretValue {
                name,
                value,
                sealed,
            }),
        }
    }
}

fn enabled() -> String {
    "Enabled".into()
}
fn runtime() -> String {
    "Runtime".into()
}
fn default_base_trigger_name() -> String {
    "defaultBaseimageTriggerName".into()
}

/// A Docker build (quick build, or a task whose file is a Dockerfile).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DockerBuild {
    /// `-t` images (templated with run variables; the run registry is
    /// prefixed to names without a registry).
    #[serde(default)]
    pub images: Vec<String>,
    /// Dockerfile path in the context (default `Dockerfile`).
    #[serde(default)]
    pub file: Option<String>,
    /// `K=V` build args.
    #[serde(default)]
    pub build_args: Vec<String>,
    /// Build args whose values never appear in logs or API answers
    /// (`"K=V"` or `{name, value}`; sealed once stored, shown as `(secure)`).
    #[serde(default)]
    pub secret_build_args: Vec<SecretValue>,
    /// `--target`.
    #[serde(default)]
    pub target: Option<String>,
    /// `--platform` (`linux/amd64`).
    #[serde(default)]
    pub platform: Option<String>,
    /// Build only.
    #[serde(default)]
    pub no_push: bool,
}

/// What one run executes (stored on the run as `request`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRequest {
    /// `upload:<sha256>` (an uploaded tarball), a git URL
    /// (`…repo.git#ref:folder`), `oci://<registry>/<repo>:<tag>` (an OCI
    /// artifact or image), a tarball URL, or `None` (no context).
    #[serde(default)]
    pub context: Option<String>,
    /// A Docker build.
    #[serde(default)]
    pub docker: Option<DockerBuild>,
    /// Task file path in the context (default `acb.yaml`).
    #[serde(default)]
    pub task_file: Option<String>,
    /// Inline task YAML (tasks without a context).
    #[serde(default)]
    pub encoded_task: Option<String>,
    /// Values file path in the context.
    #[serde(default)]
    pub values_file: Option<String>,
    /// Inline values YAML.
    #[serde(default)]
    pub encoded_values: Option<String>,
    /// `--set k=v`.
    #[serde(default)]
    pub set: Vec<String>,
    /// `--set-secret k=v` values (sealed once stored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_secret: Vec<SecretValue>,
    /// Name of a dev-center secret of kind `token` or `sshKey` that fetches
    /// a git context (ACR `--git-access-token`); the token is sent only over
    /// https and only to the hosts its secret names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_secret: Option<String>,
    /// Run timeout, seconds.
    #[serde(default)]
    pub timeout: u64,
}

impl RunRequest {
    /// ACR's run type of a task run: `AutoBuild` for Dockerfile tasks,
    /// `AutoRun` for task files.
    pub fn task_run_type(&self) -> &'static str {
        if self.docker.is_some() {
            "AutoBuild"
        } else {
            "AutoRun"
        }
    }
}

/// A task (`slipway task create`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    /// What each run executes (the context, file, values…).
    #[serde(flatten)]
    pub run: RunRequest,
    /// `linux/amd64`.
    #[serde(default)]
    pub platform: Option<String>,
    /// `Enabled` | `Disabled`.
    #[serde(default = "enabled")]
    pub status: String,
    /// Timer triggers.
    #[serde(default)]
    pub timers: Vec<TimerTrigger>,
    /// Base-image-update trigger.
    #[serde(default)]
    pub base_image_trigger: Option<BaseImageTrigger>,
    /// Source-commit trigger (git contexts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_trigger: Option<SourceTrigger>,
    /// Learned from the last successful run.
    #[serde(default)]
    pub base_image_dependencies: Vec<BaseImageDependency>,
}

impl TaskSpec {
    /// Checks and normalizes a spec: timeout default and range, timer names
    /// (`t1`, `t2`… by position) and cron expressions, trigger types.
    ///
    /// Errors: [`TaskError::Validation`] naming the field, value and what
    /// was expected.
    pub fn validate(mut self) -> Result<TaskSpec, TaskError> {
        let bad = |m: String| Err(TaskError::Validation(m));
        if self.run.timeout == 0 {
            self.run.timeout = DEFAULT_TIMEOUT;
        }
        if !TIMEOUT_RANGE.contains(&self.run.timeout) {
            return bad(format!(
                "property 'timeout' is {}: expected seconds between 300 and 28800",
                self.run.timeout
            ));
        }
        if self.status != "Enabled" && self.status != "Disabled" {
            return bad(format!(
                "property 'status' is '{}': expected 'Enabled' or 'Disabled'",
                self.status
            ));
        }
        if self.run.docker.is_none()
            && self.run.context.is_none()
            && self.run.encoded_task.is_none()
        {
            return bad("a task needs a context with a task file or Dockerfile, or an inline task file ('encodedTask')".into());
        }
        for (i, t) in self.timers.iter_mut().enumerate() {
            if t.name.is_empty() {
                t.name = format!("t{}", i + 1);
            }
            parse_cron(&t.schedule)?;
        }
        let mut names: Vec<&str> = self.timers.iter().map(|t| t.name.as_str()).collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return bad(format!("timer name '{}' is used twice", w[0]));
        }
        if let Some(t) = &self.source_trigger {
            let git = self.run.context.as_deref().and_then(GitContext::parse);
            let Some(git) = git else {
                return bad(format!(
                    "property 'sourceTrigger' needs a git context (…repo.git#branch:folder); context is '{}'",
                    self.run.context.as_deref().unwrap_or_default()
                ));
            };
            if let Some(e) = t.source_trigger_events.iter().find(|e| *e != "commit") {
                return bad(format!(
                    "property 'sourceTrigger.sourceTriggerEvents' has '{e}': expected 'commit'"
                ));
            }
            if t.status != "Enabled" && t.status != "Disabled" {
                return bad(format!(
                    "property 'sourceTrigger.status' is '{}': expected 'Enabled' or 'Disabled'",
                    t.status
                ));
            }
            if let Some(p) = t.poll_interval_seconds {
                if !POLL_INTERVAL_RANGE.contains(&p) {
                    return bad(format!("property 'sourceTrigger.pollIntervalSeconds' is {p}: expected seconds between 5 and 86400"));
                }
                if git
                    .reference
                    .as_deref()
                    .is_some_and(context::looks_like_commit)
                {
                    return bad(format!("property 'sourceTrigger.pollIntervalSeconds': the context '{}' pins a commit, so there is nothing to poll; name a branch", self.run.context.as_deref().unwrap_or_default()));
                }
            }
        }
        for v in &self.run.set_secret {
            if v.name.is_empty() || v.value.is_none() && v.sealed.is_none() {
                return bad(format!(
                    "property 'setSecret' has '{}': expected name=value",
                    v.name
                ));
            }
        }
        if let Some(b) = &self.base_image_trigger {
            if b.kind != "Runtime" && b.kind != "All" {
                return bad(format!("property 'baseImageTrigger.baseImageTriggerType' is '{}': expected 'Runtime' or 'All'", b.kind));
            }
        }
        Ok(self)
    }
}

impl TaskSpec {
    /// The spec as the API shows it: sealed values left out
    /// (`hasWebhookSecret`, `setSecret[].value: "(secure)"`).
    pub fn view(&self) -> Value {
        let mut v = json!(self);
        if let Some(t) = v.get_mut("sourceTrigger").and_then(Value::as_object_mut) {
            let has = t.remove("sealedWebhookSecret").is_some();
            t.insert("hasWebhookSecret".into(), json!(has));
        }
        redact_secret_values(&mut v);
        v
    }
}

/// Replaces every sealed `setSecret[]` value of a task spec or run request
/// (as JSON) by `"value": "(secure)"`, as the API shows them.
pub fn redact_secret_values(spec_or_request: &mut Value) {
    let redact = |list: Option<&mut Vec<Value>>| {
        for s in list.into_iter().flatten() {
            if let Some(o) = s.as_object_mut() {
                o.remove("sealed");
                o.insert("value".into(), json!("(secure)"));
            }
        }
    };
    // A task spec carries its request under `run`.
    let request = match spec_or_request.get("run") {
        Some(_) => spec_or_request.get_mut("run"),
        None => Some(&mut *spec_or_request),
    };
    if let Some(r) = request {
        redact(
            r.pointer_mut("/docker/secretBuildArgs")
                .and_then(Value::as_array_mut),
        );
    }
    redact(
        spec_or_request
            .get_mut("setSecret")
            .and_then(Value::as_array_mut),
    );
}

/// Parses a 5-field UTC cron (minute hour day month day-of-week).
///
/// Errors: [`TaskError::Validation`] naming the schedule.
pub fn parse_cron(schedule: &str) -> Result<croner::Cron, TaskError> {
    if schedule.split_whitespace().count() != 5 {
        return Err(TaskError::Validation(format!(
            "schedule '{schedule}' is not valid: expected 5 fields 'minute hour day month day-of-week' (UTC)"
        )));
    }
    croner::Cron::new(schedule)
        .parse()
        .map_err(|e| TaskError::Validation(format!("schedule '{schedule}' is not valid: {e}")))
}

/// Appends timestamped lines to a run's log blob.
#[derive(Clone)]
pub struct RunLog {
    store: Store,
    key: String,
}

impl RunLog {
    /// The log of run `id`.
    pub fn new(store: &Store, id: &str) -> RunLog {
        RunLog {
            store: store.clone(),
            key: Store::task_run_log_key(id),
        }
    }

    /// Appends `YYYY/MM/DD HH:MM:SS <line>\n` (acb's log format).
    pub async fn line(&self, line: &str) {
        let stamp = Utc::now().format("%Y/%m/%d %H:%M:%S");
        self.raw(&format!("{stamp} {line}\n")).await;
    }

    /// Appends text as is.
    pub async fn raw(&self, text: &str) {
        if let Err(e) = self.store.blobs.append(&self.key, text.as_bytes()).await {
            tracing::warn!(key = %self.key, error = %e, "cannot append to the run log");
        }
    }
}

/// Settings of the task service.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    /// The data directory (run workspaces under `task-runs/`).
    pub data_dir: PathBuf,
    /// Login server of the run registry (`.Run.Registry`).
    pub registry: String,
    /// Opens registry credentials.
    pub secret_key: SecretKey,
    /// Runs executing at once.
    pub max_concurrent_runs: usize,
    /// Base images in other registries are polled (`HEAD` on the manifest)
    /// at a random interval in this range, seconds (ACR: 10–60 minutes).
    pub base_image_poll: (u64, u64),
    /// Run logs are deleted this many days after the run ends (ACR: 30).
    pub log_retention_days: u64,
    /// Fetches http(s) contexts and alias files and reaches other
    /// registries (the server's one [`Fetcher`]).
    pub fetcher: Fetcher,
    /// The embedded registry's account for users (`slipway registry
    /// login`); `None` when none is handed out.
    pub registry_login: Option<slipway_core::credentials::RegistryCredential>,
    /// Host folders `file://` git contexts may name (`serve
    /// --local-catalog-root`); none by default.
    pub local_roots: LocalRoots,
    /// Where each build step's network namespace comes from (its `RUN`
    /// instructions get the runner egress policy). Default
    /// [`slipway_runner::NetworkPool::default`].
    pub network_pool: slipway_runner::NetworkPool,
}

impl TaskConfig {
    /// Defaults: 4 concurrent runs, base-image polling every 600–3600 s,
    /// 30-day log retention.
    pub fn new(
        data_dir: PathBuf,
        registry: String,
        secret_key: SecretKey,
        fetcher: Fetcher,
    ) -> TaskConfig {
        TaskConfig {
            data_dir,
            registry,
            secret_key,
            max_concurrent_runs: 4,
            base_image_poll: (600, 3600),
            log_retention_days: 30,
            fetcher,
            registry_login: None,
            local_roots: LocalRoots::none(),
            network_pool: slipway_runner::NetworkPool::default(),
        }
    }
}

/// The run queue and the triggers.
pub struct TaskService {
    store: Store,
    engine: Engine,
    config: TaskConfig,
    wake: Notify,
    timers_changed: Notify,
    sources_changed: Notify,
    deps_changed: Notify,
    cancels: Mutex<HashMap<String, Arc<Notify>>>,
    slots: Arc<Semaphore>,
    instance: String,
}

impl std::fmt::Debug for TaskService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskService")
            .field("registry", &self.config.registry)
            .finish()
    }
}

impl TaskService {
    /// A service over `store` and `engine`.
    pub fn new(store: Store, engine: Engine, config: TaskConfig) -> Arc<TaskService> {
        let slots = Arc::new(Semaphore::new(config.max_concurrent_runs.max(1)));
        Arc::new(TaskService {
            store,
            engine,
            wake: Notify::new(),
            timers_changed: Notify::new(),
            sources_changed: Notify::new(),
            deps_changed: Notify::new(),
            cancels: Mutex::new(HashMap::new()),
            slots,
            instance: slipway_runner::instance_id_for(&config.data_dir),
            config,
        })
    }

    /// Login server of the run registry.
    pub fn registry(&self) -> &str {
        &self.config.registry
    }

    /// The embedded registry's user account (`docker login` credentials),
    /// when the server hands one out.
    pub fn registry_login(&self) -> Option<&slipway_core::credentials::RegistryCredential> {
        self.config.registry_login.as_ref()
    }

    /// Starts the queue loop and the timer loop. Runs left `Started` or
    /// `Running` by a previous server end as `Error`.
    pub async fn start(self: &Arc<Self>) -> Result<(), TaskError> {
        for status in ["Started", "Running"] {
            for run in self.store.task_runs_in(status).await? {
                // Its containers and networks are leftovers of the last process.
                exec::remove_run_resources(
                    &self.engine,
                    &exec::run_label(&self.instance, &run.run_id),
                    &[],
                )
                .await;
                self.store
                    .finish_task_run(
                        &run.run_id,
                        "Error",
                        Some("the server stopped during the run"),
                        &json!([]),
                        &json!([]),
                    )
                    .await?;
            }
        }
        let me = Arc::clone(self);
        tokio::spawn(async move { me.queue_loop().await });
        let me = Arc::clone(self);
        tokio::spawn(async move { me.timer_loop().await });
        let me = Arc::clone(self);
        tokio::spawn(async move { me.source_poll_loop().await });
        let me = Arc::clone(self);
        tokio::spawn(async move { me.base_image_poll_loop().await });
        let me = Arc::clone(self);
        tokio::spawn(async move { me.log_retention_loop().await });
        Ok(())
    }

    /// Queues a run and wakes the queue.
    pub async fn queue(
        &self,
        task: Option<&str>,
        run_type: &str,
        request: &RunRequest,
        trigger: Value,
    ) -> Result<TaskRunRecord, TaskError> {
        let mut request = request.clone();
        self.git_remote(&request).await?;
        self.seal_values(&mut request.set_secret)?;
        if let Some(d) = request.docker.as_mut() {
            self.seal_values(&mut d.secret_build_args)?;
        }
        let run = self
            .store
            .create_task_run(task, run_type, &json!(request), &trigger)
            .await?;
        RunLog::new(&self.store, &run.run_id)
            .raw(&format!(
                "Queued a run with ID: {}\nWaiting for an agent...\n",
                run.run_id
            ))
            .await;
        self.wake.notify_one();
        Ok(run)
    }

    /// Queues a run of task `name` (`AutoBuild` for Dockerfile tasks,
    /// `AutoRun` otherwise) with extra `--set` and `--set-secret` values.
    ///
    /// Errors: unknown or disabled task.
    pub async fn run_task(
        &self,
        name: &str,
        set: &[String],
        set_secret: &[SecretValue],
        trigger: Value,
    ) -> Result<TaskRunRecord, TaskError> {
        let spec = self
            .task(name)
            .await?
            .ok_or_else(|| TaskError::Validation(format!("task '{name}' not found")))?;
        let mut request = spec.run.clone();
        request.set.extend(set.iter().cloned());
        request.set_secret.extend(set_secret.iter().cloned());
        self.queue(Some(name), request.task_run_type(), &request, trigger)
            .await
    }

    /// The git context of `request` and its checked remote (URL, ref and
    /// folder checked; the `contextSecret` opened from the dev center's
    /// secrets); `None` when the context is not a git one.
    ///
    /// Errors: [`TaskError::Validation`] naming the URL, ref, folder or secret.
    async fn git_remote(
        &self,
        request: &RunRequest,
    ) -> Result<Option<(GitContext, slipway_git::Remote)>, TaskError> {
        let Some(git) = request.context.as_deref().and_then(GitContext::parse) else {
            if let Some(s) = &request.context_secret {
                return Err(TaskError::Validation(format!(
                    "property 'contextSecret' ('{s}') applies to git contexts only"
                )));
            }
            return Ok(None);
        };
        let credential = match &request.context_secret {
            None => None,
            Some(name) => {
                let opened = self
                    .store
                    .secret_value(&SecretScope::DevCenter, name, &self.config.secret_key)
                    .await?
                    .ok_or_else(|| {
                        TaskError::Validation(format!(
                            "property 'contextSecret' names secret '{name}', which does not exist in the dev center"
                        ))
                    })?;
                Some(
                    slipway_git::GitCredential::from_secret(
                        &opened.kind,
                        opened.value,
                        opened.hosts,
                    )
                    .map_err(|m| TaskError::Validation(format!("property 'contextSecret': {m}")))?,
                )
            }
        };
        let remote = git.remote(credential, &self.config.local_roots)?;
        Ok(Some((git, remote)))
    }

    /// The stored credential for `image`'s registry; `None` (with a
    /// warning) when the credentials cannot be opened.
    async fn registry_credential(
        &self,
        image: &str,
    ) -> Option<slipway_core::credentials::RegistryCredential> {
        self.store
            .registry_credential_for(image, &self.config.secret_key)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, image = %image, "registry credentials cannot be opened; going on without them");
                None
            })
    }

    /// Every task whose `status` is `Enabled`, by name. A stored spec that
    /// no longer parses is skipped with a warning.
    async fn enabled_tasks(&self) -> Result<Vec<(String, TaskSpec)>, TaskError> {
        let mut out = Vec::new();
        for (name, raw) in self.store.list_image_tasks().await? {
            match serde_json::from_value::<TaskSpec>(raw) {
                Ok(spec) if spec.status == "Enabled" => out.push((name, spec)),
                Ok(_) => {}
                Err(e) => tracing::warn!(task = %name, error = %e, "stored task cannot be read"),
            }
        }
        Ok(out)
    }

    /// Task `name`'s spec.
    pub async fn task(&self, name: &str) -> Result<Option<TaskSpec>, TaskError> {
        self.store
            .get_image_task(name)
            .await?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| TaskError::Validation(format!("stored task '{name}': {e}")))
    }

    /// Creates or replaces a task (validated); wakes the timer loop.
    pub async fn put_task(
        &self,
        name: &str,
        spec: TaskSpec,
    ) -> Result<(TaskSpec, bool), TaskError> {
        let mut spec = spec.validate()?;
        self.git_remote(&spec.run).await?;
        self.seal_values(&mut spec.run.set_secret)?;
        if let Some(d) = spec.run.docker.as_mut() {
            self.seal_values(&mut d.secret_build_args)?;
        }
        let old = self.task(name).await?;
        if let Some(old) = &old {
            // Learned dependencies survive an update.
            if spec.base_image_dependencies.is_empty() {
                spec.base_image_dependencies = old.base_image_dependencies.clone();
            }
        }
        if let Some(t) = spec.source_trigger.as_mut() {
            let before = old.as_ref().and_then(|o| o.source_trigger.as_ref());
            match t.webhook_secret.take() {
                Some(secret) if !secret.is_empty() => {
                    t.sealed_webhook_secret = Some(
                        self.config
                            .secret_key
                            .seal(&format!("task/{name}/webhook"), &secret)?,
                    )
                }
                Some(_) => t.sealed_webhook_secret = None,
                None if t.sealed_webhook_secret.is_none() => {
                    t.sealed_webhook_secret = before.and_then(|b| b.sealed_webhook_secret.clone())
                }
                None => {}
            }
            if t.last_commit.is_none() {
                t.last_commit = before.and_then(|b| b.last_commit.clone());
            }
        }
        let created = self.store.put_image_task(name, &json!(spec)).await?;
        self.timers_changed.notify_one();
        self.sources_changed.notify_one();
        self.deps_changed.notify_one();
        Ok((spec, created))
    }

    /// Seals every plain `value` (bound to its name) and drops the plain text.
    fn seal_values(&self, values: &mut [SecretValue]) -> Result<(), TaskError> {
        for v in values.iter_mut() {
            if let Some(plain) = v.value.take() {
                v.sealed = Some(
                    self.config
                        .secret_key
                        .seal(&format!("set-secret/{}", v.name), &plain)?,
                );
            }
        }
        Ok(())
    }

    /// Opens sealed `--set-secret` values: `(name, value)`.
    fn open_values(&self, values: &[SecretValue]) -> Result<Vec<(String, String)>, TaskError> {
        let mut out = Vec::new();
        for v in values {
            let value = match (&v.value, &v.sealed) {
                (Some(p), _) => p.clone(),
                (None, Some(sealed)) => self
                    .config
                    .secret_key
                    .open(&format!("set-secret/{}", v.name), sealed)?,
                (None, None) => continue,
            };
            out.push((v.name.clone(), value));
        }
        Ok(out)
    }

    /// Resolves a task file's `secrets:` (Slipway extension `secret: <name>`:
    /// the value of a stored Slipway secret) into `{id: value}`.
    ///
    /// Errors: [`TaskError::Validation`] naming the secret id when it has no
    /// `secret`, or the named secret does not exist.
    async fn resolve_secrets(
        &self,
        secrets: &[taskfile::TaskSecret],
    ) -> Result<BTreeMap<String, String>, TaskError> {
        let mut out = BTreeMap::new();
        for s in secrets {
            let Some(name) = &s.secret else {
                return Err(TaskError::Validation(format!(
                    "secret '{}': expected 'secret: <name of a Slipway secret>'",
                    s.id
                )));
            };
            let value = self
                .store
                .secret_value(&SecretScope::DevCenter, name, &self.config.secret_key)
                .await?
                .map(|o| o.value)
                .ok_or_else(|| {
                    TaskError::Validation(format!(
                        "secret '{}': Slipway secret '{name}' does not exist (slipway admin secret set {name} …)",
                        s.id
                    ))
                })?;
            out.insert(s.id.clone(), String::from_utf8_lossy(&value).into_owned());
        }
        Ok(out)
    }

    /// The webhook secret of task `name`'s source trigger, opened.
    ///
    /// Errors: unknown task, no source trigger or no webhook secret
    /// ([`TaskError::Validation`]), or a secret sealed under another key.
    pub async fn webhook_secret(&self, name: &str) -> Result<String, TaskError> {
        let spec = self
            .task(name)
            .await?
            .ok_or_else(|| TaskError::Validation(format!("task '{name}' not found")))?;
        let sealed = spec
            .source_trigger
            .and_then(|t| t.sealed_webhook_secret)
            .ok_or_else(|| {
                TaskError::Validation(format!(
                    "task '{name}' has no source trigger with a webhook secret"
                ))
            })?;
        Ok(self
            .config
            .secret_key
            .open(&format!("task/{name}/webhook"), &sealed)?)
    }

    /// A new head `commit` of the task's context branch was seen (webhook
    /// `via` = `github`|`gitea`|`gitlab`, or `poll`): when the trigger is
    /// enabled and the commit is not the last one, records it and queues a
    /// run that builds exactly that commit (trigger `commit`, with
    /// `commitId` and `branchName`). `None` when nothing was started.
    pub async fn on_commit(
        &self,
        name: &str,
        branch: &str,
        commit: &str,
        via: &str,
    ) -> Result<Option<TaskRunRecord>, TaskError> {
        let Some(mut spec) = self.task(name).await? else {
            return Ok(None);
        };
        let Some(trigger) = spec.source_trigger.as_mut() else {
            return Ok(None);
        };
        if spec.status != "Enabled"
            || trigger.status != "Enabled"
            || trigger.last_commit.as_deref() == Some(commit)
        {
            return Ok(None);
        }
        trigger.last_commit = Some(commit.to_string());
        let trigger_name = trigger.name.clone();
        self.store.put_image_task(name, &json!(spec)).await?;
        let Some(git) = spec.run.context.as_deref().and_then(GitContext::parse) else {
            return Ok(None);
        };
        let mut request = spec.run.clone();
        request.context = Some(format!("{}#{commit}:{}", git.url, git.folder));
        let trigger = json!({
            "type": "commit",
            "eventType": "commit",
            "name": trigger_name,
            "commitId": commit,
            "branchName": branch,
            "via": via,
            "timestamp": Utc::now().to_rfc3339(),
        });
        Ok(Some(
            self.queue(Some(name), request.task_run_type(), &request, trigger)
                .await?,
        ))
    }

    /// A verified push delivery for task `name`: runs [`Self::on_commit`]
    /// when it pushed the context's branch (the repository's default branch
    /// when the context names none). Deleted refs and tags start nothing.
    pub async fn on_push(
        &self,
        name: &str,
        push: &slipway_core::tasks::webhook::PushEvent,
        via: &str,
    ) -> Result<Option<TaskRunRecord>, TaskError> {
        let Some(spec) = self.task(name).await? else {
            return Err(TaskError::Validation(format!("task '{name}' not found")));
        };
        let Some(git) = spec.run.context.as_deref().and_then(GitContext::parse) else {
            return Ok(None);
        };
        let Some(branch) = push.branch.as_deref().filter(|_| !push.deleted) else {
            return Ok(None);
        };
        let wanted = git.reference.clone().or(push.default_branch.clone());
        if wanted.is_some_and(|w| w != branch) {
            return Ok(None);
        }
        self.on_commit(name, branch, &push.commit, via).await
    }

    /// Deletes a task; wakes the timer loop.
    pub async fn delete_task(&self, name: &str) -> Result<bool, TaskError> {
        let existed = self.store.delete_image_task(name).await?;
        self.timers_changed.notify_one();
        Ok(existed)
    }

    /// Asks run `id` to stop: a queued run is Canceled at once, a running
    /// one has its containers removed. Returns false when already finished.
    pub async fn cancel(&self, id: &str) -> Result<bool, TaskError> {
        if !self.store.request_task_run_cancel(id).await? {
            return Ok(false);
        }
        if self
            .store
            .transition_task_run(id, "Queued", "Canceled")
            .await?
        {
            self.store
                .finish_task_run(
                    id,
                    "Canceled",
                    Some("canceled before it started"),
                    &json!([]),
                    &json!([]),
                )
                .await?;
            return Ok(true);
        }
        if let Some(n) = self
            .cancels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            n.notify_one();
        }
        Ok(true)
    }

    /// A push of `repository:tag` with `digest` reached the embedded
    /// registry (its notification): see [`Self::on_base_image_digest`].
    pub async fn on_image_pushed(
        &self,
        repository: &str,
        tag: &str,
        digest: &str,
    ) -> Result<Vec<TaskRunRecord>, TaskError> {
        let registry = self.config.registry.clone();
        self.on_base_image_digest(&registry, repository, tag, digest)
            .await
    }

    /// `registry/repository:tag` now has `digest` (a push notification or
    /// a poll): queues one run of every enabled task whose recorded
    /// dependency on that tag has another digest (`Runtime` only, or `All`
    /// with build-time bases). The recorded digest is updated first, so a
    /// repeated notification or a re-push of the same digest starts nothing.
    pub async fn on_base_image_digest(
        &self,
        registry: &str,
        repository: &str,
        tag: &str,
        digest: &str,
    ) -> Result<Vec<TaskRunRecord>, TaskError> {
        let mut started = Vec::new();
        for (name, mut spec) in self.enabled_tasks().await? {
            let Some(trigger) = spec.base_image_trigger.clone() else {
                continue;
            };
            if trigger.status != "Enabled" {
                continue;
            }
            let mut hit = Vec::new();
            for dep in spec.base_image_dependencies.iter_mut() {
                let tracked = dep.kind == "RunTime" || trigger.kind == "All";
                if tracked
                    && dep.registry == registry
                    && dep.repository == repository
                    && dep.tag == tag
                    && dep.digest != digest
                {
                    dep.digest = digest.to_string();
                    hit.push(format!(
                        "{}/{}:{}@{}",
                        dep.registry, dep.repository, dep.tag, digest
                    ));
                }
            }
            if hit.is_empty() {
                continue;
            }
            self.store.put_image_task(&name, &json!(spec)).await?;
            let trigger = json!({
                "type": "imageUpdate",
                "name": trigger.name,
                "images": hit,
                "timestamp": Utc::now().to_rfc3339(),
            });
            started.push(self.run_task(&name, &[], &[], trigger).await?);
        }
        Ok(started)
    }

    async fn queue_loop(self: Arc<Self>) {
        loop {
            match self.store.task_runs_in("Queued").await {
                Ok(runs) => {
                    for run in runs {
                        if let Ok(true) = self
                            .store
                            .transition_task_run(&run.run_id, "Queued", "Started")
                            .await
                        {
                            let me = Arc::clone(&self);
                            tokio::spawn(async move { me.run(run).await });
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read queued runs"),
            }
            self.wake.notified().await;
        }
    }

    async fn run(self: Arc<Self>, run: TaskRunRecord) {
        let id = run.run_id.clone();
        let log = RunLog::new(&self.store, &id);
        let Ok(_permit) = Arc::clone(&self.slots).acquire_owned().await else {
            return;
        };
        let cancel = Arc::new(Notify::new());
        self.cancels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), Arc::clone(&cancel));
        let _ = self
            .store
            .transition_task_run(&id, "Started", "Running")
            .await;
        let started = std::time::Instant::now();
        let request: RunRequest = serde_json::from_value(run.request.clone()).unwrap_or_default();
        let timeout = Duration::from_secs(if request.timeout == 0 {
            DEFAULT_TIMEOUT
        } else {
            request.timeout
        });
        let dir = registry::run_dir(&self.config.data_dir, &id);
        let work = self.prepare_and_execute(&run, &request, &dir, &log);
        tokio::pin!(work);
        let outcome = tokio::select! {
            r = tokio::time::timeout(timeout, &mut work) => match r {
                Ok(r) => r.map_err(|e| ("Failed", e.to_string())),
                Err(_) => Err(("Timeout", format!("the run exceeded its timeout of {} seconds", timeout.as_secs()))),
            },
            _ = cancel.notified() => Err(("Canceled", "the run was canceled".to_string())),
        };
        if matches!(&outcome, Err(("Timeout" | "Canceled", _))) {
            // `work` stopped mid-run and is never polled again (so its own
            // cleanup did not run): remove what its steps left.
            let label = exec::run_label(&self.instance, &id);
            exec::remove_run_resources(&self.engine, &label, &[]).await;
        }
        let secs = started.elapsed().as_secs();
        let (status, error, output) = match outcome {
            Ok(o) => ("Succeeded", None, o),
            Err((s, m)) => (s, Some(m), exec::RunOutput::default()),
        };
        if !output.dependencies.is_empty() {
            log.line("The following dependencies were found:").await;
            log.raw(&format!(
                "{}\n",
                serde_json::to_string_pretty(&output.dependencies).unwrap_or_default()
            ))
            .await;
        }
        match &error {
            None => {
                log.raw(&format!("\nRun ID: {id} was successful after {secs}s\n"))
                    .await
            }
            Some(m) => {
                log.raw(&format!(
                    "\nRun ID: {id} failed after {secs}s. Error: {m}\n"
                ))
                .await
            }
        }
        if status == "Succeeded" {
            if let Some(task) = &run.task {
                if let Err(e) = self.record_dependencies(task, &output.dependencies).await {
                    tracing::warn!(task = %task, error = %e, "cannot record base-image dependencies");
                }
            }
        }
        if let Err(e) = self
            .store
            .finish_task_run(
                &id,
                status,
                error.as_deref(),
                &json!(output.images),
                &json!(output.dependencies),
            )
            .await
        {
            tracing::warn!(run = %id, error = %e, "cannot record the run's end");
        }
        self.cancels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }

    async fn record_dependencies(&self, task: &str, deps: &[Value]) -> Result<(), TaskError> {
        let Some(mut spec) = self.task(task).await? else {
            return Ok(());
        };
        let mut found = Vec::new();
        for d in deps {
            let mut push = |kind: &str, r: &Value| {
                if r.is_object() {
                    let dep = BaseImageDependency {
                        kind: kind.into(),
                        registry: r["registry"].as_str().unwrap_or_default().into(),
                        repository: r["repository"].as_str().unwrap_or_default().into(),
                        tag: r["tag"].as_str().unwrap_or_default().into(),
                        digest: r["digest"].as_str().unwrap_or_default().into(),
                    };
                    if !found.contains(&dep) {
                        found.push(dep);
                    }
                }
            };
            push("RunTime", &d["runtime-dependency"]);
            for b in d["buildtime-dependency"].as_array().into_iter().flatten() {
                push("BuildTime", b);
            }
        }
        spec.base_image_dependencies = found;
        self.store.put_image_task(task, &json!(spec)).await?;
        self.deps_changed.notify_one();
        Ok(())
    }

    async fn prepare_and_execute(
        &self,
        run: &TaskRunRecord,
        request: &RunRequest,
        dir: &Path,
        log: &RunLog,
    ) -> Result<exec::RunOutput, TaskError> {
        let workspace = dir.join("workspace");
        tokio::fs::create_dir_all(&workspace)
            .await
            .map_err(|e| TaskError::Engine(format!("{}: {e}", workspace.display())))?;
        let (commit, mut branch, repository) = self.materialize(request, dir, &workspace).await?;
        if let Some(b) = run.trigger["branchName"].as_str() {
            branch = b.to_string();
        }
        let git_commit = commit.clone();
        let vars = RunVariables {
            id: run.run_id.clone(),
            shared_volume: workspace.display().to_string(),
            registry: self.config.registry.clone(),
            registry_name: RunVariables::registry_name_of(&self.config.registry),
            date: Utc::now().format("%Y%m%d-%H%M%Sz").to_string(),
            os: "linux".into(),
            architecture: "amd64".into(),
            commit,
            branch,
            task_name: run.task.clone().unwrap_or_default(),
            repository,
            triggered_by: run.trigger["type"].as_str().unwrap_or("manual").to_string(),
        };
        let mut secret_values = Vec::new();
        let mut build_secrets = Vec::new();
        let plan = match &request.docker {
            Some(d) => {
                let data = template_data(&vars, &json!({}), &BTreeMap::new());
                build_secrets = self.open_values(&d.secret_build_args)?;
                secret_values.extend(build_secrets.iter().map(|(_, v)| v.clone()));
                docker_plan(d, &data, &self.config.registry)?
            }
            None => {
                let text = match (&request.encoded_task, &request.task_file) {
                    (Some(t), _) => t.clone(),
                    (None, f) => {
                        let f = f.clone().unwrap_or_else(|| "acb.yaml".into());
                        read_in(&workspace, &f).await?
                    }
                };
                let values_text = match (&request.encoded_values, &request.values_file) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(f)) => Some(read_in(&workspace, f).await?),
                    _ => None,
                };
                let mut set_args = request.set.clone();
                for (name, value) in self.open_values(&request.set_secret)? {
                    set_args.push(format!("{name}={value}"));
                    secret_values.push(value);
                }
                let set = parse_set(&set_args).map_err(TaskError::Validation)?;
                let values =
                    merge_values(values_text.as_deref(), &set).map_err(TaskError::Validation)?;
                // acb: render with no secrets, read `secrets:`, resolve, render again.
                let data = template_data(&vars, &values, &BTreeMap::new());
                let plan = render_plan(&self.config.fetcher, &text, &data, &workspace)?;
                if plan.task.secrets.is_empty() {
                    plan
                } else {
                    let secrets = self.resolve_secrets(&plan.task.secrets).await?;
                    secret_values.extend(secrets.values().cloned());
                    let data = template_data(&vars, &values, &secrets);
                    render_plan(&self.config.fetcher, &text, &data, &workspace)?
                }
            }
        };
        let env = Arc::new(RunEnv {
            engine: self.engine.clone(),
            run_id: run.run_id.clone(),
            instance: self.instance.clone(),
            workspace: workspace.clone(),
            volumes_dir: dir.join("volumes"),
            log: log.clone(),
            scrubber: Scrubber::new(secret_values),
            credentials: self
                .store
                .registry_credentials(&self.config.secret_key)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "registry credentials cannot be opened; pulling and pushing without them");
                    Vec::new()
                }),
            git_commit,
            fetcher: self.config.fetcher.clone(),
            network_pool: self.config.network_pool.clone(),
            build_secrets,
        });
        execute(env, plan).await
    }

    /// Puts the context into `workspace`; returns `(commit, branch, repository)`.
    async fn materialize(
        &self,
        request: &RunRequest,
        dir: &Path,
        workspace: &Path,
    ) -> Result<(String, String, String), TaskError> {
        let Some(ctx) = request.context.clone() else {
            return Ok(Default::default());
        };
        if let Some(digest) = ctx.strip_prefix("upload:") {
            let bytes = self
                .store
                .blobs
                .get(&context_key(digest))
                .await?
                .ok_or_else(|| {
                    TaskError::Context(format!("uploaded context '{digest}' not found"))
                })?;
            let ws = workspace.to_path_buf();
            tokio::task::spawn_blocking(move || untar(&bytes, &ws))
                .await
                .map_err(|e| TaskError::Engine(e.to_string()))??;
            return Ok(Default::default());
        }
        if let Some((g, remote)) = self.git_remote(request).await? {
            let checkout = dir.join("git");
            let (c2, work) = (checkout.clone(), dir.to_path_buf());
            let (g2, url) = (g.clone(), remote.url().to_string());
            let (commit, branch) =
                tokio::task::spawn_blocking(move || g2.fetch(&remote, &c2, &work))
                    .await
                    .map_err(|e| TaskError::Engine(e.to_string()))??;
            tokio::fs::remove_dir_all(workspace).await.ok();
            tokio::fs::rename(checkout.join(&g.folder), workspace)
                .await
                .map_err(|e| TaskError::Context(format!("placing the checkout: {e}")))?;
            return Ok((commit, branch, url));
        }
        if let Some(reference) = ctx.strip_prefix("oci://") {
            let credential = self.registry_credential(reference).await;
            registry::pull_artifact(&self.config.fetcher, &ctx, credential, workspace).await?;
            return Ok(Default::default());
        }
        if ctx.starts_with("http://") || ctx.starts_with("https://") {
            let (url, fetcher) = (ctx.clone(), self.config.fetcher.clone());
            let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, TaskError> {
                fetcher
                    .bytes(&url, Duration::from_secs(300), MAX_IN_MEMORY_BYTES)
                    .map_err(|e| TaskError::Context(e.to_string()))
            })
            .await
            .map_err(|e| TaskError::Engine(e.to_string()))??;
            let ws = workspace.to_path_buf();
            tokio::task::spawn_blocking(move || untar(&bytes, &ws))
                .await
                .map_err(|e| TaskError::Engine(e.to_string()))??;
            return Ok(Default::default());
        }
        Err(TaskError::Validation(format!(
            "context '{ctx}' is not supported: expected an uploaded folder, a git URL (…repo.git#ref:folder), oci://<registry>/<repository>:<tag> or a tarball URL"
        )))
    }

    /// Polls the git remote of every task whose source trigger has
    /// `pollIntervalSeconds`: the first poll records the head without a
    /// run; a later different head goes through [`Self::on_commit`].
    async fn source_poll_loop(self: Arc<Self>) {
        let mut due: HashMap<String, tokio::time::Instant> = HashMap::new();
        loop {
            let now = tokio::time::Instant::now();
            let mut next = now + Duration::from_secs(3600);
            let mut seen = Vec::new();
            for (name, spec) in self.enabled_tasks().await.unwrap_or_default() {
                let Some(t) = spec.source_trigger.as_ref() else {
                    continue;
                };
                let Some(every) = t.poll_interval_seconds else {
                    continue;
                };
                if t.status != "Enabled" {
                    continue;
                }
                seen.push(name.clone());
                let at = *due.entry(name.clone()).or_insert(now);
                if at > now {
                    next = next.min(at);
                    continue;
                }
                let (g, remote) = match self.git_remote(&spec.run).await {
                    Ok(Some(x)) => x,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(task = %name, error = %e, "source poll refused the context");
                        let again = now + Duration::from_secs(every);
                        due.insert(name, again);
                        next = next.min(again);
                        continue;
                    }
                };
                let work = self.config.data_dir.join("git-work");
                match tokio::task::spawn_blocking(move || g.remote_head(&remote, &work)).await {
                    Ok(Ok((head, branch))) => {
                        if t.last_commit.is_none() {
                            self.record_head(&name, &head).await;
                        } else if let Err(e) = self.on_commit(&name, &branch, &head, "poll").await {
                            tracing::warn!(task = %name, error = %e, "source poll could not queue a run");
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(task = %name, error = %e, "source poll failed"),
                    Err(e) => tracing::warn!(task = %name, error = %e, "source poll failed"),
                }
                let again = tokio::time::Instant::now() + Duration::from_secs(every);
                due.insert(name, again);
                next = next.min(again);
            }
            due.retain(|k, _| seen.contains(k));
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = self.sources_changed.notified() => {}
            }
        }
    }

    /// Polls base images outside the embedded registry: each recorded
    /// `(registry, repository, tag)` that an enabled base-image trigger
    /// tracks gets a `HEAD` on its manifest at a random interval in
    /// `base_image_poll`; a changed digest goes through
    /// [`Self::on_base_image_digest`].
    async fn base_image_poll_loop(self: Arc<Self>) {
        use rand::Rng;
        let (lo, hi) = self.config.base_image_poll;
        let jitter = move || {
            Duration::from_secs(rand::thread_rng().gen_range(lo.max(1)..=hi.max(lo.max(1))))
        };
        let mut due: HashMap<(String, String, String), tokio::time::Instant> = HashMap::new();
        loop {
            let now = tokio::time::Instant::now();
            let mut tracked = Vec::new();
            for (_, spec) in self.enabled_tasks().await.unwrap_or_default() {
                let Some(t) = spec.base_image_trigger.as_ref() else {
                    continue;
                };
                if t.status != "Enabled" {
                    continue;
                }
                for d in &spec.base_image_dependencies {
                    let key = (d.registry.clone(), d.repository.clone(), d.tag.clone());
                    if d.registry != self.config.registry
                        && (d.kind == "RunTime" || t.kind == "All")
                        && !tracked.contains(&key)
                    {
                        tracked.push(key);
                    }
                }
            }
            due.retain(|k, _| tracked.contains(k));
            let mut next = now + Duration::from_secs(60);
            for key in tracked {
                let at = *due.entry(key.clone()).or_insert_with(|| now + jitter());
                if at > now {
                    next = next.min(at);
                    continue;
                }
                let (registry, repository, tag) = key.clone();
                let image = format!("{registry}/{repository}:{tag}");
                let credential = self.registry_credential(&image).await;
                match registry::manifest_digest(
                    &self.config.fetcher,
                    &registry,
                    &repository,
                    &tag,
                    credential,
                )
                .await
                {
                    Ok(Some(digest)) => {
                        match self
                            .on_base_image_digest(&registry, &repository, &tag, &digest)
                            .await
                        {
                            Ok(runs) => {
                                for r in runs {
                                    tracing::info!(run = %r.run_id, image = %image, digest = %digest, "polled base image changed: run queued");
                                }
                            }
                            Err(e) => {
                                tracing::warn!(image = %image, error = %e, "base-image trigger failed")
                            }
                        }
                    }
                    Ok(None) => {
                        tracing::warn!(image = %image, "polled base image no longer exists")
                    }
                    Err(e) => tracing::warn!(image = %image, error = %e, "base-image poll failed"),
                }
                let again = tokio::time::Instant::now() + jitter();
                due.insert(key, again);
                next = next.min(again);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = self.deps_changed.notified() => {}
            }
        }
    }

    /// Hourly: deletes run logs older than `log_retention_days`.
    async fn log_retention_loop(self: Arc<Self>) {
        loop {
            let cutoff = Utc::now() - chrono::Duration::days(self.config.log_retention_days as i64);
            match self
                .store
                .expire_task_run_logs(&cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .await
            {
                Ok(ids) if !ids.is_empty() => {
                    tracing::info!(count = ids.len(), "expired image task run logs")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot expire image task run logs"),
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }

    /// Records `head` as the source trigger's last commit (first poll).
    async fn record_head(&self, name: &str, head: &str) {
        let Ok(Some(mut spec)) = self.task(name).await else {
            return;
        };
        if let Some(t) = spec.source_trigger.as_mut() {
            t.last_commit = Some(head.to_string());
            if let Err(e) = self.store.put_image_task(name, &json!(spec)).await {
                tracing::warn!(task = %name, error = %e, "cannot record the polled head");
            }
        }
    }

    async fn timer_loop(self: Arc<Self>) {
        let mut cursor: DateTime<Utc> = Utc::now();
        loop {
            let mut next: Option<(DateTime<Utc>, Vec<TimerRef>)> = None;
            if let Ok(tasks) = self.enabled_tasks().await {
                for (name, spec) in tasks {
                    for t in spec.timers.iter().filter(|t| t.status == "Enabled") {
                        let Ok(cron) = parse_cron(&t.schedule) else {
                            continue;
                        };
                        let Ok(at) = cron.find_next_occurrence(&cursor, false) else {
                            continue;
                        };
                        match &mut next {
                            Some((when, list)) if *when == at => {
                                list.push((name.clone(), t.name.clone()))
                            }
                            Some((when, _)) if *when < at => {}
                            _ => next = Some((at, vec![(name.clone(), t.name.clone())])),
                        }
                    }
                }
            }
            let Some((at, due)) = next else {
                self.timers_changed.notified().await;
                cursor = cursor.max(Utc::now());
                continue;
            };
            let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {
                    for (task, timer) in due {
                        let trigger = json!({"type": "timer", "timerTriggerName": timer, "scheduleOccurrence": at.to_rfc3339()});
                        if let Err(e) = self.run_task(&task, &[], &[], trigger).await {
                            tracing::warn!(task = %task, error = %e, "timer trigger could not queue a run");
                        }
                    }
                    cursor = at;
                }
                _ = self.timers_changed.notified() => {}
            }
        }
    }
}

/// `(task name, timer name)`.
type TimerRef = (String, String);

/// Blob key of an uploaded context tarball.
pub fn context_key(digest: &str) -> String {
    format!("task-contexts/{digest}.tar")
}

/// The largest task, values or alias file read from a context, bytes (4 MiB).
const MAX_TASK_FILE_BYTES: u64 = 4 << 20;

/// Reads `rel` from the workspace without following a path or symlink out of it.
///
/// Errors: [`TaskError::Validation`] naming the file (missing, too large,
/// leading outside the context).
async fn read_in(workspace: &Path, rel: &str) -> Result<String, TaskError> {
    let (ws, rel) = (workspace.to_path_buf(), rel.to_string());
    tokio::task::spawn_blocking(move || {
        slipway_hostfs::Tree::open(&ws)
            .and_then(|t| t.read_to_string(&rel, MAX_TASK_FILE_BYTES))
            .map_err(|e| TaskError::Validation(format!("file in the context: {e}")))
    })
    .await
    .map_err(|e| TaskError::Engine(e.to_string()))?
}

/// Renders a task file (comments stripped, aliases, template) into a plan,
/// expanding command aliases for v1.1.0.
///
/// Errors: [`TaskError::Validation`] with the template or acb message.
pub fn render_plan(
    fetcher: &Fetcher,
    text: &str,
    data: &Value,
    workspace: &Path,
) -> Result<Plan, TaskError> {
    let text = strip_comment_lines(text);
    let (text, aliases) = if aliases_enabled(&text) {
        let load = |src: &str| -> Result<String, String> {
            if src.starts_with("http://") || src.starts_with("https://") {
                let body = fetcher
                    .bytes(src, Duration::from_secs(2), MAX_IN_MEMORY_BYTES)
                    .map_err(|e| e.to_string())?;
                return String::from_utf8(body).map_err(|e| format!("GET '{src}': {e}"));
            }
            slipway_hostfs::Tree::open(workspace)
                .and_then(|t| t.read_to_string(src, MAX_TASK_FILE_BYTES))
                .map_err(|e| e.to_string())
        };
        let a = preprocess_aliases(&text, data, &load).map_err(TaskError::Validation)?;
        (a.text, Some(a.aliases))
    } else {
        (text, None)
    };
    let rendered = render(&text, data).map_err(|e| TaskError::Validation(e.to_string()))?;
    let mut task: TaskFile = taskfile::parse_task(&rendered).map_err(TaskError::Validation)?;
    if let Some(aliases) = aliases {
        for s in task.steps.iter_mut() {
            if let Some(c) = &s.cmd {
                s.cmd = Some(expand_command_alias(c, &aliases));
            }
        }
    }
    if task.secrets.iter().any(|s| s.keyvault.is_some()) {
        return Err(TaskError::Validation(
            "secrets: Azure Key Vault secrets ('keyvault') cannot be resolved by Slipway".into(),
        ));
    }
    taskfile::plan(task, false).map_err(TaskError::Validation)
}

/// The plan of a Docker build: `build` (timeout 28800 s) then `push` of
/// every image unless `noPush` (acb `build`). Image names are templated
/// with run variables and prefixed with the run registry when they have
/// no registry.
pub fn docker_plan(d: &DockerBuild, data: &Value, registry: &str) -> Result<Plan, TaskError> {
    let mut images = Vec::new();
    for i in &d.images {
        let r = render(i, data).map_err(|e| TaskError::Validation(format!("image '{i}': {e}")))?;
        let first = r.split('/').next().unwrap_or_default();
        let has_registry =
            r.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
        images.push(if has_registry || r.starts_with("library/") {
            r
        } else {
            format!("{registry}/{r}")
        });
    }
    let q = |s: &str| shell_words::quote(s).into_owned();
    let mut build = String::new();
    for i in &images {
        build.push_str(&format!("-t {} ", q(i)));
    }
    if let Some(f) = &d.file {
        build.push_str(&format!("-f {} ", q(f)));
    }
    // Secret build args reach the build as build secrets (RunEnv::build_secrets), not here.
    for a in &d.build_args {
        build.push_str(&format!("--build-arg {} ", q(a)));
    }
    if let Some(t) = &d.target {
        build.push_str(&format!("--target {} ", q(t)));
    }
    if let Some(p) = &d.platform {
        build.push_str(&format!("--platform {} ", q(p)));
    }
    build.push('.');
    let mut steps = vec![Step {
        id: "build".into(),
        build: Some(build),
        timeout: QUICK_BUILD_STEP_TIMEOUT,
        ..Default::default()
    }];
    if !d.no_push && !images.is_empty() {
        steps.push(Step {
            id: "push".into(),
            push: images,
            timeout: 3600,
            when: vec!["build".into()],
            ..Default::default()
        });
    }
    taskfile::plan(
        TaskFile {
            steps,
            ..Default::default()
        },
        true,
    )
    .map_err(TaskError::Validation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_validate_timeouts_timers_and_triggers() {
        let spec = TaskSpec {
            run: RunRequest {
                encoded_task: Some("steps: []".into()),
                ..Default::default()
            },
            status: "Enabled".into(),
            timers: vec![
                TimerTrigger {
                    name: String::new(),
                    schedule: "*/5 * * * *".into(),
                    status: "Enabled".into(),
                },
                TimerTrigger {
                    name: String::new(),
                    schedule: "0 2 * * Mon-Fri".into(),
                    status: "Enabled".into(),
                },
            ],
            ..Default::default()
        };
        let v = spec.clone().validate().unwrap();
        assert_eq!(v.run.timeout, 3600);
        assert_eq!(v.timers[0].name, "t1");
        assert_eq!(v.timers[1].name, "t2");
        let mut bad = spec.clone();
        bad.run.timeout = 100;
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("between 300 and 28800"));
        let mut bad = spec;
        bad.timers[0].schedule = "* * * *".into();
        assert!(bad.validate().unwrap_err().to_string().contains("5 fields"));
    }

    #[test]
    fn quick_build_plans_prefix_the_registry_and_push_after_build() {
        let d = DockerBuild {
            images: vec!["app:{{.Run.ID}}".into(), "other.io/x/app:1".into()],
            ..Default::default()
        };
        let data = json!({"Run": {"ID": "ca1"}});
        let p = docker_plan(&d, &data, "127.0.0.1:5000").unwrap();
        assert_eq!(p.task.steps.len(), 2);
        assert_eq!(
            p.task.steps[1].push,
            vec!["127.0.0.1:5000/app:ca1", "other.io/x/app:1"]
        );
        assert_eq!(p.deps[1], vec![0]);
        assert!(p.networks.is_empty());
        let d = DockerBuild {
            images: vec!["app".into()],
            no_push: true,
            ..Default::default()
        };
        assert_eq!(docker_plan(&d, &data, "r").unwrap().task.steps.len(), 1);
    }
}
