//! A run's life: the queue loop that starts queued runs within the
//! concurrency limit, one run from its context to its plan, execution and
//! recorded result (timeout, cancel, dependencies for base-image triggers),
//! and log retention.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use slipway_core::isolation::UserNamespace;
use slipway_core::scrub::Scrubber;
use slipway_core::tasks::values::{merge_values, parse_set, template_data, RunVariables};
use slipway_core::tasks::TaskRunStatus;
use slipway_fetch::MAX_IN_MEMORY_BYTES;
use slipway_store::TaskRunRecord;
use tokio::sync::Notify;

use crate::context::{untar, GitContext};
use crate::exec::{execute, RunEnv};

use crate::plan::read_in;
use crate::service::RunLog;
use crate::{
    context_key, docker_plan, exec, registry, render_plan, BaseImageDependency, RunRequest,
    TaskError, TaskService, DEFAULT_TIMEOUT,
};

impl TaskService {
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
        let git_tag = request
            .context
            .as_deref()
            .and_then(GitContext::parse)
            .and_then(|g| g.reference)
            .map(|r| RunVariables::git_tag_of(&r))
            .unwrap_or_default();
        let vars = RunVariables {
            id: run.run_id.clone(),
            shared_volume: workspace.display().to_string(),
            registry: self.config.registry.clone(),
            registry_name: RunVariables::registry_name_of(&self.config.registry),
            date: RunVariables::date_of(Utc::now()),
            os: "linux".into(),
            architecture: "amd64".into(),
            commit,
            branch,
            task_name: run.task.clone().unwrap_or_default(),
            repository,
            triggered_by: run.trigger["type"].as_str().unwrap_or("manual").to_string(),
            git_tag,
            os_version: String::new(),
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
                let set = parse_set(&set_args)?;
                let values = merge_values(values_text.as_deref(), &set)?;
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
            // Grants need the host's ids (its folders, its network, devices).
            user_namespace: if plan.permissions.is_empty() {
                UserNamespace::for_run(rand::random())
            } else {
                UserNamespace::Host
            },
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
