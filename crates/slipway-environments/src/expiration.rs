//! The scheduled `Delete` action of expiring environments (ADE
//! `expirationDate` → `EnvironmentAction {actionType: Delete, next.scheduledTime}`).
//!
//! One timer, set for the earliest `delete_at` in the store (no periodic
//! sweep). Every service call that changes an expiration or an action wakes
//! it so it re-reads the earliest time. After a restart the first read
//! finds overdue actions and runs them at once, so an action survives
//! restarts.

use std::sync::Arc;
use std::time::Duration;

use slipway_store::{now_rfc3339, AuditEvent};

use crate::error::EnvironmentError;
use crate::service::{environment_path, EnvironmentService};

/// User recorded as the requester of an action's delete.
pub const ACTION_USER: &str = "slipway-scheduler";

impl EnvironmentService {
    /// Runs the expiration timer until the process ends.
    pub fn spawn_expiration_timer(self: &Arc<Self>) {
        let service = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let wait = match service.run_due_deletes().await {
                    Ok(next) => next,
                    Err(e) => {
                        tracing::error!(error = %e, "expiration timer: store failure; retrying in 5 s");
                        Some(Duration::from_secs(5))
                    }
                };
                let woken = service.expirations.notified();
                match wait {
                    Some(d) => {
                        let _ = tokio::time::timeout(d, woken).await;
                    }
                    None => woken.await,
                }
            }
        });
    }

    /// Queues the delete of every environment whose action is due (as
    /// [`ACTION_USER`], audited as `action.delete`); returns how long until
    /// the next one (`None`: nothing scheduled). A delete that cannot be
    /// queued clears its action (no retry loop) and the audit says why.
    ///
    /// Errors: the store's, or a stored action time that is not RFC 3339.
    pub async fn run_due_deletes(&self) -> Result<Option<Duration>, EnvironmentError> {
        let store = self.store();
        let now = now_rfc3339();
        for env in store.due_deletes(&now).await? {
            tracing::info!(environment = %env.name, project = %env.project, "expiration reached: deleting");
            let result = match self.delete(&env, ACTION_USER, false).await {
                Ok(Some(op)) => format!("queued operation {}", op.id),
                Ok(None) => "removed".to_string(),
                Err(e) => {
                    let _ = store.reschedule_delete(&env.id, None, ACTION_USER).await;
                    format!("failed: {e}")
                }
            };
            let _ = store
                .record_audit(&AuditEvent {
                    time: now_rfc3339(),
                    user: ACTION_USER.into(),
                    action: "action.delete".into(),
                    target: environment_path(&env),
                    project: Some(env.project.clone()),
                    source: Some("scheduler".into()),
                    result,
                })
                .await;
        }
        let Some(next) = store.next_delete_at().await? else {
            return Ok(None);
        };
        let at = chrono::DateTime::parse_from_rfc3339(&next).map_err(|e| {
            EnvironmentError::Store(slipway_store::StoreError::Corrupt {
                what: "action time",
                message: format!("'{next}': {e}"),
            })
        })?;
        let left = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
        Ok(Some(left.to_std().unwrap_or(Duration::ZERO)))
    }
}
