//! The scheduled `Delete` action of expiring environments (ADE
//! `expirationDate` → `EnvironmentAction {actionType: Delete, next.scheduledTime}`).
//!
//! One timer, set for the earliest `delete_at` in the store (no periodic
//! sweep). Anything that changes an expiration or an action wakes it through
//! [`AppState::expirations`] so it re-reads the earliest time. After a
//! restart the first read finds overdue actions and runs them at once, so an
//! action survives restarts.

use std::time::Duration;

use slipway_store::{now_rfc3339, AuditEvent};

use crate::data_plane::queue_delete;
use crate::AppState;

/// User recorded as the requester of an action's delete.
pub const ACTION_USER: &str = "slipway-scheduler";

/// Runs the expiration timer until the process ends.
pub fn spawn(state: AppState) {
    tokio::spawn(async move {
        loop {
            let wait = match run_due(&state).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "expiration timer: store failure; retrying in 5 s");
                    Some(Duration::from_secs(5))
                }
            };
            let woken = state.expirations.notified();
            match wait {
                Some(d) => {
                    let _ = tokio::time::timeout(d, woken).await;
                }
                None => woken.await,
            }
        }
    });
}

/// Queues the delete of every environment whose action is due; returns how
/// long until the next one (`None`: nothing scheduled).
async fn run_due(state: &AppState) -> Result<Option<Duration>, String> {
    let now = now_rfc3339();
    for env in state
        .store
        .due_deletes(&now)
        .await
        .map_err(|e| e.to_string())?
    {
        tracing::info!(environment = %env.name, project = %env.project, "expiration reached: deleting");
        let result = match queue_delete(state, &env, ACTION_USER, false).await {
            Ok(Some(op)) => format!("queued operation {op}"),
            Ok(None) => "removed".to_string(),
            Err(e) => {
                // Do not retry in a loop: clear the action and record why.
                let _ = state
                    .store
                    .reschedule_delete(&env.id, None, ACTION_USER)
                    .await;
                format!("failed: {}", e.message)
            }
        };
        let _ = state
            .store
            .record_audit(&AuditEvent {
                time: now_rfc3339(),
                user: ACTION_USER.into(),
                action: "action.delete".into(),
                target: crate::views::environment_path(&env),
                project: Some(env.project.clone()),
                source: Some("scheduler".into()),
                result,
            })
            .await;
    }
    let Some(next) = state
        .store
        .next_delete_at()
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let at = chrono::DateTime::parse_from_rfc3339(&next)
        .map_err(|e| format!("stored action time '{next}': {e}"))?;
    let left = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Ok(Some(left.to_std().unwrap_or(Duration::ZERO)))
}
