//! The task service's front: tasks (stored, sealed values), queueing and
//! cancelling runs, run logs; a run's own life is in [`crate::runs`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde_json::{json, Value};
use slipway_core::tasks::taskfile::{self};
use slipway_core::tasks::TaskRunStatus;
use slipway_fetch::Fetcher;
use slipway_git::LocalRoots;
use slipway_runner::Engine;
use slipway_store::{SecretKey, SecretScope, Store, TaskRunRecord};
use tokio::sync::{Notify, Semaphore};

use crate::context::GitContext;

use crate::{exec, RunRequest, SecretValue, TaskError, TaskService, TaskSpec};

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
        let remote = git
            .remote(credential, &self.config.local_roots)?
            .within(self.config.fetcher.allowed());
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
}
