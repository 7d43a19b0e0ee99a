//! The run queue: tasks, runs, cancel, timeouts, log retention, and running
//! one run (context → plan → [`crate::exec`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use slipway_core::scrub::Scrubber;
use slipway_core::tasks::taskfile::{self};
use slipway_core::tasks::values::{merge_values, parse_set, template_data, RunVariables};
use slipway_core::tasks::TaskRunStatus;
use slipway_fetch::{Fetcher, MAX_IN_MEMORY_BYTES};
use slipway_git::LocalRoots;
use slipway_runner::Engine;
use slipway_store::{SecretKey, SecretScope, Store, TaskRunRecord};
use tokio::sync::{Notify, Semaphore};

use crate::context::{untar, GitContext};
use crate::exec::{execute, RunEnv};

use crate::plan::read_in;
use crate::{
    context_key, docker_plan, exec, registry, render_plan, BaseImageDependency, RunRequest,
    SecretValue, TaskError, TaskService, TaskSpec, DEFAULT_TIMEOUT,
};

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
    /// `Running` by a previous server end as `Error`; the step containers
    /// and networks of other servers whose data folder is gone are removed.
    pub async fn start(self: &Arc<Self>) -> Result<(), TaskError> {
        for status in [TaskRunStatus::Started, TaskRunStatus::Running] {
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
                        TaskRunStatus::Error,
                        Some("the server stopped during the run"),
                        &json!([]),
                        &json!([]),
                    )
                    .await?;
            }
        }
        exec::remove_runs_of_gone_servers(&self.engine, &self.instance).await;
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
    pub(crate) async fn git_remote(
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
    pub(crate) async fn registry_credential(
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
    pub(crate) async fn enabled_tasks(&self) -> Result<Vec<(String, TaskSpec)>, TaskError> {
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
        actor: &str,
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
            // Read-only: answers say it, a request does not set it.
            t.has_webhook_secret = None;
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
        let before = old.as_ref().and_then(|o| o.step_permissions.clone());
        let granted = spec.step_permissions.clone().filter(|p| !p.is_empty());
        // A change of the grant is recorded with the task, atomically.
        let audit =
            (before.filter(|p| !p.is_empty()) != granted).then(|| slipway_store::AuditEvent {
                time: slipway_store::now_rfc3339(),
                user: actor.to_string(),
                action: "imageTask.stepPermissions".into(),
                target: format!("/imageTasks/tasks/{name}"),
                project: None,
                source: None,
                result: granted.unwrap_or_default().summary(),
            });
        let created = self
            .store
            .put_image_task(name, &json!(spec), audit.as_ref())
            .await?;
        if let Some(e) = &audit {
            tracing::warn!(task = %name, user = %actor, permissions = %e.result, "step permissions of a task changed");
        }
        self.timers_changed.notify_one();
        self.sources_changed.notify_one();
        self.deps_changed.notify_one();
        Ok((spec, created))
    }

    /// Seals every plain `value` (bound to its name) and drops the plain text.
    pub(crate) fn seal_values(&self, values: &mut [SecretValue]) -> Result<(), TaskError> {
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
    pub(crate) fn open_values(
        &self,
        values: &[SecretValue],
    ) -> Result<Vec<(String, String)>, TaskError> {
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
    pub(crate) async fn resolve_secrets(
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
            .transition_task_run(id, TaskRunStatus::Queued, TaskRunStatus::Canceled)
            .await?
        {
            self.store
                .finish_task_run(
                    id,
                    TaskRunStatus::Canceled,
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

    pub(crate) async fn queue_loop(self: Arc<Self>) {
        loop {
            match self.store.task_runs_in(TaskRunStatus::Queued).await {
                Ok(runs) => {
                    for run in runs {
                        if let Ok(true) = self
                            .store
                            .transition_task_run(
                                &run.run_id,
                                TaskRunStatus::Queued,
                                TaskRunStatus::Started,
                            )
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

    pub(crate) async fn run(self: Arc<Self>, run: TaskRunRecord) {
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
            .transition_task_run(&id, TaskRunStatus::Started, TaskRunStatus::Running)
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
                Ok(r) => r.map_err(|e| (TaskRunStatus::Failed, e.to_string())),
                Err(_) => Err((TaskRunStatus::Timeout, format!("the run exceeded its timeout of {} seconds", timeout.as_secs()))),
            },
            _ = cancel.notified() => Err((TaskRunStatus::Canceled, "the run was canceled".to_string())),
        };
        if matches!(
            &outcome,
            Err((TaskRunStatus::Timeout | TaskRunStatus::Canceled, _))
        ) {
            // `work` stopped mid-run and is never polled again (so its own
            // cleanup did not run): remove what its steps left.
            let label = exec::run_label(&self.instance, &id);
            exec::remove_run_resources(&self.engine, &label, &[]).await;
        }
        let secs = started.elapsed().as_secs();
        let (status, error, output) = match outcome {
            Ok(o) => (TaskRunStatus::Succeeded, None, o),
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
        if status == TaskRunStatus::Succeeded {
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

    pub(crate) async fn record_dependencies(
        &self,
        task: &str,
        deps: &[Value],
    ) -> Result<(), TaskError> {
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
        self.store.put_image_task(task, &json!(spec), None).await?;
        self.deps_changed.notify_one();
        Ok(())
    }

    pub(crate) async fn prepare_and_execute(
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
        // Read when the run starts: a grant withdrawn while the run was
        // queued no longer applies.
        let permissions = match &run.task {
            Some(task) => self
                .task(task)
                .await?
                .and_then(|t| t.step_permissions)
                .unwrap_or_default(),
            None => Default::default(),
        };
        if !permissions.is_empty() {
            log.line(&format!(
                "The task's steps are granted stepPermissions by a DevCenter Admin: {}",
                permissions.summary()
            ))
            .await;
        }
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
                let plan =
                    render_plan(&self.config.fetcher, &text, &data, &workspace, &permissions)?;
                if plan.task.secrets.is_empty() {
                    plan
                } else {
                    let secrets = self.resolve_secrets(&plan.task.secrets).await?;
                    secret_values.extend(secrets.values().cloned());
                    let data = template_data(&vars, &values, &secrets);
                    render_plan(&self.config.fetcher, &text, &data, &workspace, &permissions)?
                }
            }
        };
        let env = Arc::new(RunEnv {
            engine: self.engine.clone(),
            run_id: run.run_id.clone(),
            instance: self.instance.clone(),
            data_dir: self.config.data_dir.clone(),
            permissions: plan.permissions.clone(),
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
    pub(crate) async fn materialize(
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

    /// Hourly: deletes run logs older than `log_retention_days`.
    pub(crate) async fn log_retention_loop(self: Arc<Self>) {
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
}
