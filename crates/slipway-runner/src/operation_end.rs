//! An operation's end: waiting for its runner within the runtime limit or
//! until a cancel, what the exit means (success, the ADE error the runner
//! reported, out of memory, timeout), the resource group of a deleted
//! Azure environment, and the record of the result.

use std::sync::Arc;
use std::time::Duration;

use slipway_core::protocol::AdeExitCode;
use slipway_core::{ErrorBody, OperationKind, OperationStatus};
use slipway_store::{OperationRecord, Store, StoreError};
use tokio::sync::Notify;

use crate::engine::Attachment;
use crate::Scheduler;

impl Scheduler {
    /// Waits for the runner of `op` and records the result.
    pub(crate) async fn supervise(
        self: Arc<Self>,
        op: OperationRecord,
        attachment: Option<Attachment>,
    ) {
        let max_runtime = self.max_runtime_of(&op).await;
        let cancel = self
            .cancel_signal(&op.id)
            .unwrap_or_else(|| Arc::new(Notify::new()));
        // A cancel requested before this point (e.g. before a restart) is honoured too.
        if let Ok(Some(o)) = self.store.get_operation(&op.id).await {
            if o.cancel_requested_by.is_some() {
                cancel.notify_one();
            }
        }
        let wait = self.engine.wait(&op.container_name, attachment);
        tokio::pin!(wait);
        let mut canceled_by = None;
        let waited = tokio::select! {
            w = tokio::time::timeout(max_runtime, &mut wait) => w,
            _ = cancel.notified() => {
                tracing::info!(operation = %op.id, "canceling: SIGTERM, then SIGKILL after the grace period");
                if let Err(e) = self.engine.stop(&op.container_name, self.config.stop_grace).await {
                    tracing::warn!(operation = %op.id, error = %e, "could not stop the runner");
                }
                canceled_by = match self.store.get_operation(&op.id).await {
                    Ok(Some(o)) => o.cancel_requested_by,
                    _ => None,
                }
                .or_else(|| Some("a user".into()));
                Ok(tokio::time::timeout(self.config.stop_grace + Duration::from_secs(30), &mut wait)
                    .await
                    .unwrap_or(Ok(137)))
            }
        };
        let (status, error) = match waited {
            _ if canceled_by.is_some() => (
                OperationStatus::Canceled,
                Some(ErrorBody::new(
                    "OperationCanceled",
                    format!(
                        "The operation was canceled by '{}'.",
                        canceled_by.unwrap_or_default()
                    ),
                )),
            ),
            Err(_) => {
                let _ = self
                    .engine
                    .stop(&op.container_name, self.config.stop_grace)
                    .await;
                (
                    OperationStatus::Failed,
                    Some(ErrorBody::new(
                        "DeploymentCanceledByTimeout",
                        format!(
                            "The operation exceeded the runtime limit of {} minutes and was stopped.",
                            max_runtime.as_secs() / 60
                        ),
                    )),
                )
            }
            Ok(Err(e)) => (
                OperationStatus::Failed,
                Some(ErrorBody::new("RunnerError", e.to_string())),
            ),
            Ok(Ok(0)) => self.after_success(&op).await,
            // Killed by the kernel: the engine says so (Docker, cgroup v2),
            // or the runner ended by SIGKILL that Slipway did not send
            // (cancel and timeout are handled above; Podman on cgroup v1
            // does not report OOM kills).
            Ok(Ok(code)) if code == 137 || self.engine.oom_killed(&op.container_name).await => {
                let limit = self.policy_of(&op).await.confinement().memory_bytes >> 20;
                (
                    OperationStatus::Failed,
                    Some(ErrorBody::new(
                        "RunnerOutOfMemory",
                        format!(
                            "The runner was killed (SIGKILL, exit code 137) while limited to its memory limit of {limit} MiB: it ran out of memory. Raise runnerPolicy.maxMemoryMB of the project environment type."
                        ),
                    )),
                )
            }
            Ok(Ok(code)) => {
                let reported = match self.store.get_operation(&op.id).await {
                    Ok(Some(o)) => o.result_error,
                    _ => None,
                };
                let err = reported.unwrap_or_else(|| {
                    let name = AdeExitCode::name_for_status(code);
                    ErrorBody::new(
                        name,
                        format!("Operation failed with exit code {name}, code value {code}."),
                    )
                });
                (OperationStatus::Failed, Some(err))
            }
        };
        if status == OperationStatus::Failed {
            self.keep_runner_output_if_log_empty(&op).await;
        }
        // The container is evidence of the result: remove it only once the
        // result is stored, so a restart can still finalise the operation.
        if self.finish(&op, status, error).await {
            if let Err(e) = self.engine.remove(&op.container_name).await {
                tracing::warn!(operation = %op.id, error = %e, "could not remove runner container");
            }
            self.release_network(&op.id).await;
        }
    }

    /// The runner policy of `op`'s project environment type (default when
    /// the type is gone).
    pub(crate) async fn policy_of(
        &self,
        op: &OperationRecord,
    ) -> slipway_core::isolation::RunnerPolicy {
        match self.environment_type_of(op).await {
            Ok((_, Some(t))) => t.runner_policy,
            _ => Default::default(),
        }
    }

    /// A runner that failed before it could log anything (bad entrypoint,
    /// missing `ade`) leaves its container output as the operation log.
    pub(crate) async fn keep_runner_output_if_log_empty(&self, op: &OperationRecord) {
        let key = Store::log_key(&op.id);
        let empty = match self.store.blobs.get(&key).await {
            Ok(None) => true,
            Ok(Some(b)) => b.is_empty(),
            Err(_) => false,
        };
        if empty {
            if let Ok(out) = self.engine.output(&op.container_name).await {
                let out = match self.store.get_environment_by_id(&op.environment_id).await {
                    Ok(Some(env)) => self
                        .store
                        .scrubber_for(&env.project, &env.environment_type, &self.config.secret_key)
                        .await
                        .scrub(&out),
                    _ => out,
                };
                let _ = self.store.blobs.append(&key, out.as_bytes()).await;
            }
        }
    }

    /// The runtime limit of `op`: its project environment type's, else the server's.
    pub(crate) async fn max_runtime_of(&self, op: &OperationRecord) -> Duration {
        match self.environment_type_of(op).await {
            Ok((_, Some(t))) => t
                .limits
                .max_runtime_minutes
                .and_then(|m| u64::try_from(m).ok())
                .map(|m| Duration::from_secs(m * 60))
                .unwrap_or(self.config.max_runtime),
            _ => self.config.max_runtime,
        }
    }

    /// The result of a runner that exited 0: Succeeded, unless a delete on
    /// an Azure target cannot remove the environment's resource group
    /// (then Failed with `ResourceGroupDeletionFailed` and ARM's words, so
    /// the environment stays and the delete can be retried).
    pub(crate) async fn after_success(
        &self,
        op: &OperationRecord,
    ) -> (OperationStatus, Option<ErrorBody>) {
        if op.kind != OperationKind::Delete {
            return (OperationStatus::Succeeded, None);
        }
        let failed = |message: String| {
            (
                OperationStatus::Failed,
                Some(ErrorBody::new("ResourceGroupDeletionFailed", message)),
            )
        };
        let (Some(env), Some(pet)) = (match self.environment_type_of(op).await {
            Ok(found) => found,
            Err(e) => return failed(e.to_string()),
        }) else {
            return (OperationStatus::Succeeded, None);
        };
        let identity = match self
            .store
            .deployment_identity(&env.project, &env.environment_type, &self.config.secret_key)
            .await
        {
            Ok(id) => id,
            Err(e) => return failed(e.to_string()),
        };
        let rg = match slipway_core::azure_target::ResourceGroup::of(
            &pet.deployment_target_id,
            identity.as_ref(),
            &env.project,
            &env.name,
        ) {
            Ok(Some(rg)) => rg,
            Ok(None) => return (OperationStatus::Succeeded, None),
            Err(e) => return failed(e.to_string()),
        };
        let Some(id) = identity else {
            return (OperationStatus::Succeeded, None);
        };
        match self.config.resource_groups.delete(&id, &rg).await {
            Ok(()) => (OperationStatus::Succeeded, None),
            Err(e) => failed(e.to_string()),
        }
    }

    /// The environment of `op` and its project environment type (each
    /// `None` when gone).
    pub(crate) async fn environment_type_of(
        &self,
        op: &OperationRecord,
    ) -> Result<
        (
            Option<slipway_store::EnvironmentRecord>,
            Option<slipway_store::ProjectEnvironmentType>,
        ),
        StoreError,
    > {
        let Some(env) = self.store.get_environment_by_id(&op.environment_id).await? else {
            return Ok((None, None));
        };
        let pet = self
            .store
            .get_project_environment_type(&env.project, &env.environment_type)
            .await?;
        Ok((Some(env), pet))
    }

    /// Records the result (retrying transient store errors) and frees the
    /// operation's slot. Returns whether the result is stored.
    pub(crate) async fn finish(
        &self,
        op: &OperationRecord,
        status: OperationStatus,
        error: Option<ErrorBody>,
    ) -> bool {
        let mut delay = Duration::from_millis(50);
        let mut retries = 0;
        let result = loop {
            match self
                .store
                .finish_operation(&op.id, status, error.as_ref())
                .await
            {
                Err(e) if retries < 8 => {
                    tracing::warn!(operation = %op.id, error = %e, "recording the result failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    retries += 1;
                }
                other => break other,
            }
        };
        let stored = result.is_ok();
        match result {
            Ok(_) => {
                if status == OperationStatus::Succeeded
                    && op.kind == slipway_core::OperationKind::Delete
                {
                    if let Err(e) = self
                        .store
                        .blobs
                        .delete(&Store::environment_key(&op.environment_id))
                        .await
                    {
                        tracing::warn!(environment = %op.environment_id, error = %e, "could not remove environment files");
                    }
                }
                tracing::info!(operation = %op.id, status = status.as_str(), "operation finished");
            }
            Err(e) => {
                tracing::error!(operation = %op.id, error = %e, "could not record operation result")
            }
        }
        if stored {
            self.audit(op, "operation.end", status.as_str()).await;
        }
        self.untrack(&op.id);
        self.wake();
        stored
    }
}
