//! What starts runs besides a user: signed source webhooks, registry push
//! notifications, source and base-image polling, and cron timers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use slipway_store::TaskRunRecord;

use crate::context::GitContext;
use crate::{parse_cron, registry, TaskError, TaskService};

/// `(task name, timer name)`.
type TimerRef = (String, String);

impl TaskService {
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
        self.store.put_image_task(name, &json!(spec), None).await?;
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
            self.store.put_image_task(&name, &json!(spec), None).await?;
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

    /// Polls the git remote of every task whose source trigger has
    /// `pollIntervalSeconds`: the first poll records the head without a
    /// run; a later different head goes through [`Self::on_commit`].
    pub(crate) async fn source_poll_loop(self: Arc<Self>) {
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
    pub(crate) async fn base_image_poll_loop(self: Arc<Self>) {
        let (lo, hi) = self.config.base_image_poll;
        let jitter = move || Duration::from_secs(rand::random_range(lo.max(1)..=hi.max(lo.max(1))));
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

    /// Records `head` as the source trigger's last commit (first poll).
    pub(crate) async fn record_head(&self, name: &str, head: &str) {
        let Ok(Some(mut spec)) = self.task(name).await else {
            return;
        };
        if let Some(t) = spec.source_trigger.as_mut() {
            t.last_commit = Some(head.to_string());
            if let Err(e) = self.store.put_image_task(name, &json!(spec), None).await {
                tracing::warn!(task = %name, error = %e, "cannot record the polled head");
            }
        }
    }

    pub(crate) async fn timer_loop(self: Arc<Self>) {
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
