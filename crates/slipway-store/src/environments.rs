//! Environments and their operations: queueing, start, finish, expiration
//! actions, cancel requests and force delete.

use serde_json::{Map, Value};
use slipway_core::{ErrorBody, OperationKind, OperationStatus, ProvisioningState};
use sqlx::Row;

use crate::{now_rfc3339, Store, StoreError};

use crate::records::{corrupt, is_unique_violation, json_col};
use crate::DefinitionRecord;

/// An environment.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentRecord {
    /// Internal id (UUID); blob keys use it.
    pub id: String,
    /// Project.
    pub project: String,
    /// Name, unique per project.
    pub name: String,
    /// Owner user id.
    pub owner: String,
    /// Project environment type.
    pub environment_type: String,
    /// Catalog.
    pub catalog: String,
    /// Definition name.
    pub definition: String,
    /// Effective parameters.
    pub parameters: Map<String, Value>,
    /// Provisioning state.
    pub provisioning_state: ProvisioningState,
    /// Last error.
    pub error: Option<ErrorBody>,
    /// `expirationDate` (RFC 3339), if set.
    pub expiration_date: Option<String>,
    /// Next run of the scheduled `Delete` action (RFC 3339); `None` when
    /// there is none or it was skipped.
    pub delete_at: Option<String>,
    /// Who last changed the action (set, skip, delay).
    pub action_modified_by: Option<String>,
    /// When the action was last changed.
    pub action_modified_at: Option<String>,
}

/// An operation.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationRecord {
    /// Id (UUID).
    pub id: String,
    /// Environment id.
    pub environment_id: String,
    /// Project.
    pub project: String,
    /// Environment name.
    pub environment_name: String,
    /// Kind.
    pub kind: OperationKind,
    /// Status.
    pub status: OperationStatus,
    /// Parameters the operation runs with.
    pub parameters: Map<String, Value>,
    /// User who requested it.
    pub created_by: String,
    /// When it was queued.
    pub created_at: String,
    /// When its runner started.
    pub start_time: Option<String>,
    /// When it ended.
    pub end_time: Option<String>,
    /// Error (when Failed/Canceled).
    pub error: Option<ErrorBody>,
    /// Error reported by `ade operation-result`.
    pub result_error: Option<ErrorBody>,
    /// sha256 of the runner token.
    pub token_hash: Option<String>,
    /// Definition snapshot the operation runs with.
    pub definition: DefinitionRecord,
    /// Resolved runner image reference.
    pub runner_image: String,
    /// Container name (`slipway-op-<id>`).
    pub container_name: String,
    /// Force delete: the environment record goes even if the runner fails.
    pub force: bool,
    /// Who asked to cancel it while it ran.
    pub cancel_requested_by: Option<String>,
}

const OP_COLUMNS: &str = "id, environment_id, project, environment_name, kind, status, parameters, created_by, created_at, start_time, end_time, error, result_error, token_hash, definition, runner_image, container_name, force, cancel_requested_by";
const ENV_COLUMNS: &str = "id, project, name, owner, environment_type, catalog, definition, parameters, provisioning_state, error, expiration_date, delete_at, action_modified_by, action_modified_at";

fn op_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<OperationRecord, StoreError> {
    let kind: String = r.try_get("kind")?;
    let status: String = r.try_get("status")?;
    Ok(OperationRecord {
        id: r.try_get("id")?,
        environment_id: r.try_get("environment_id")?,
        project: r.try_get("project")?,
        environment_name: r.try_get("environment_name")?,
        kind: OperationKind::parse(&kind).ok_or_else(|| corrupt("operation kind", &kind))?,
        status: OperationStatus::parse(&status)
            .ok_or_else(|| corrupt("operation status", &status))?,
        parameters: json_col("operation parameters", r.try_get("parameters")?)?.unwrap_or_default(),
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        start_time: r.try_get("start_time")?,
        end_time: r.try_get("end_time")?,
        error: json_col("operation error", r.try_get("error")?)?,
        result_error: json_col("operation result", r.try_get("result_error")?)?,
        token_hash: r.try_get("token_hash")?,
        definition: json_col("operation definition", r.try_get("definition")?)?
            .ok_or_else(|| corrupt("operation definition", "missing"))?,
        runner_image: r.try_get("runner_image")?,
        container_name: r.try_get("container_name")?,
        force: r.try_get::<i64, _>("force")? != 0,
        cancel_requested_by: r.try_get("cancel_requested_by")?,
    })
}

fn env_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<EnvironmentRecord, StoreError> {
    let state: String = r.try_get("provisioning_state")?;
    Ok(EnvironmentRecord {
        id: r.try_get("id")?,
        project: r.try_get("project")?,
        name: r.try_get("name")?,
        owner: r.try_get("owner")?,
        environment_type: r.try_get("environment_type")?,
        catalog: r.try_get("catalog")?,
        definition: r.try_get("definition")?,
        parameters: json_col("environment parameters", r.try_get("parameters")?)?
            .unwrap_or_default(),
        provisioning_state: ProvisioningState::parse(&state)
            .ok_or_else(|| corrupt("provisioning state", &state))?,
        error: json_col("environment error", r.try_get("error")?)?,
        expiration_date: r.try_get("expiration_date")?,
        delete_at: r.try_get("delete_at")?,
        action_modified_by: r.try_get("action_modified_by")?,
        action_modified_at: r.try_get("action_modified_at")?,
    })
}

/// What [`Store::enqueue_operation`] needs to queue an operation.
#[derive(Debug, Clone)]
pub struct NewOperation {
    /// Environment as it should be stored (new or updated fields).
    pub environment: EnvironmentRecord,
    /// Whether the environment row exists already.
    pub environment_exists: bool,
    /// Kind.
    pub kind: OperationKind,
    /// Requesting user.
    pub created_by: String,
    /// Definition snapshot.
    pub definition: DefinitionRecord,
    /// Runner image.
    pub runner_image: String,
    /// Force delete (see [`OperationRecord::force`]).
    pub force: bool,
}

impl Store {
    // ----- environments and operations -----

    /// Gets an environment by project and name.
    pub async fn get_environment(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Option<EnvironmentRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ENV_COLUMNS} FROM environments WHERE project = ? AND name = ?"
        ))
        .bind(project)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(env_from_row).transpose()
    }

    /// Gets an environment by id.
    pub async fn get_environment_by_id(
        &self,
        id: &str,
    ) -> Result<Option<EnvironmentRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ENV_COLUMNS} FROM environments WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(env_from_row).transpose()
    }

    /// Lists a project's environments, optionally of one owner, by name.
    pub async fn list_environments(
        &self,
        project: &str,
        owner: Option<&str>,
    ) -> Result<Vec<EnvironmentRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {ENV_COLUMNS} FROM environments WHERE project = ?1 AND (?2 IS NULL OR owner = ?2) ORDER BY name"))
            .bind(project).bind(owner).fetch_all(&self.pool).await?;
        rows.iter().map(env_from_row).collect()
    }

    /// Inserts or updates the environment and queues an operation, in one
    /// transaction. Returns the operation id. The environment's
    /// `provisioning_state` is set from [`ProvisioningState::on_queued`].
    pub async fn enqueue_operation(&self, new: &NewOperation) -> Result<String, StoreError> {
        let env = &new.environment;
        let op_id = uuid::Uuid::new_v4().to_string();
        let now = now_rfc3339();
        let state = ProvisioningState::on_queued(new.kind, new.environment_exists);
        let params = Value::Object(env.parameters.clone()).to_string();
        let mut tx = self.write_tx().await?;
        if new.environment_exists {
            sqlx::query("UPDATE environments SET parameters = ?, provisioning_state = ?, error = NULL, updated_at = ? WHERE id = ?")
                .bind(&params).bind(state.as_str()).bind(&now).bind(&env.id)
                .execute(&mut *tx).await?;
            if new.kind == OperationKind::Delete {
                // A requested delete supersedes the scheduled one.
                sqlx::query("UPDATE environments SET delete_at = NULL WHERE id = ?")
                    .bind(&env.id)
                    .execute(&mut *tx)
                    .await?;
            } else if env.expiration_date.is_some() {
                sqlx::query("UPDATE environments SET expiration_date = ?, delete_at = ?, action_modified_by = ?, action_modified_at = ? WHERE id = ?")
                    .bind(&env.expiration_date).bind(&env.expiration_date).bind(&new.created_by).bind(&now).bind(&env.id)
                    .execute(&mut *tx).await?;
            }
        } else {
            let modified_by = env.expiration_date.as_ref().map(|_| new.created_by.clone());
            let modified_at = env.expiration_date.as_ref().map(|_| now.clone());
            let res = sqlx::query("INSERT INTO environments (id, project, name, owner, environment_type, catalog, definition, parameters, provisioning_state, created_at, updated_at, expiration_date, delete_at, action_modified_by, action_modified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                .bind(&env.id).bind(&env.project).bind(&env.name).bind(&env.owner).bind(&env.environment_type)
                .bind(&env.catalog).bind(&env.definition).bind(&params).bind(state.as_str()).bind(&now).bind(&now)
                .bind(&env.expiration_date).bind(&env.expiration_date).bind(modified_by).bind(modified_at)
                .execute(&mut *tx).await;
            if let Err(e) = res {
                if is_unique_violation(&e) {
                    return Err(StoreError::Conflict {
                        kind: "environment",
                        name: env.name.clone(),
                    });
                }
                return Err(e.into());
            }
        }
        let definition =
            serde_json::to_string(&new.definition).map_err(|e| corrupt("definition", e))?;
        sqlx::query(&format!("INSERT INTO operations ({OP_COLUMNS}) VALUES (?, ?, ?, ?, ?, 'NotStarted', ?, ?, ?, NULL, NULL, NULL, NULL, NULL, ?, ?, ?, ?, NULL)"))
            .bind(&op_id).bind(&env.id).bind(&env.project).bind(&env.name).bind(new.kind.as_str())
            .bind(&params).bind(&new.created_by).bind(&now).bind(definition).bind(&new.runner_image)
            .bind(format!("slipway-op-{op_id}")).bind(new.force as i64)
            .execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(op_id)
    }

    /// Gets an operation.
    pub async fn get_operation(&self, id: &str) -> Result<Option<OperationRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {OP_COLUMNS} FROM operations WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(op_from_row).transpose()
    }

    /// Lists an environment's operations, newest first.
    pub async fn list_operations(
        &self,
        environment_id: &str,
    ) -> Result<Vec<OperationRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {OP_COLUMNS} FROM operations WHERE environment_id = ? ORDER BY rowid DESC"
        ))
        .bind(environment_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(op_from_row).collect()
    }

    /// Operations with the given status, oldest first.
    pub async fn operations_with_status(
        &self,
        status: OperationStatus,
    ) -> Result<Vec<OperationRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {OP_COLUMNS} FROM operations WHERE status = ? ORDER BY rowid"
        ))
        .bind(status.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(op_from_row).collect()
    }

    /// Queued operations that may start now: the oldest queued operation of
    /// each environment that has none running, oldest first.
    pub async fn runnable_operations(
        &self,
        limit: u32,
    ) -> Result<Vec<OperationRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {OP_COLUMNS} FROM operations o WHERE o.status = 'NotStarted' \
             AND NOT EXISTS (SELECT 1 FROM operations r WHERE r.environment_id = o.environment_id AND r.status = 'Running') \
             AND o.rowid = (SELECT MIN(q.rowid) FROM operations q WHERE q.environment_id = o.environment_id AND q.status = 'NotStarted') \
             ORDER BY o.rowid LIMIT ?"
        ))
        .bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(op_from_row).collect()
    }

    /// NotStarted → Running with the runner token's hash. Returns false if the
    /// operation was no longer NotStarted (someone else took it).
    pub async fn start_operation(&self, id: &str, token_hash: &str) -> Result<bool, StoreError> {
        let res = sqlx::query("UPDATE operations SET status = 'Running', start_time = ?, token_hash = ? WHERE id = ? AND status = 'NotStarted'")
            .bind(now_rfc3339()).bind(token_hash).bind(id).execute(&self.pool).await?;
        Ok(res.rows_affected() == 1)
    }

    /// Running → NotStarted, for an operation whose runner never started.
    pub async fn requeue_operation(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE operations SET status = 'NotStarted', start_time = NULL, token_hash = NULL WHERE id = ? AND status = 'Running'")
            .bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// Records `ade operation-result` on a running operation.
    pub async fn set_operation_result(&self, id: &str, err: &ErrorBody) -> Result<(), StoreError> {
        let body = serde_json::to_string(err).map_err(|e| corrupt("result", e))?;
        sqlx::query("UPDATE operations SET result_error = ? WHERE id = ? AND status = 'Running'")
            .bind(body)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends an operation (Running or NotStarted → `status`) and moves its
    /// environment to the matching state, in one transaction. A successful
    /// delete removes the environment row; its blobs are the caller's to
    /// remove afterwards. Returns false if the operation had already ended.
    pub async fn finish_operation(
        &self,
        id: &str,
        status: OperationStatus,
        error: Option<&ErrorBody>,
    ) -> Result<bool, StoreError> {
        let err_json = error
            .map(|e| serde_json::to_string(e).map_err(|x| corrupt("error", x)))
            .transpose()?;
        let now = now_rfc3339();
        let mut tx = self.write_tx().await?;
        // Write first: the transaction takes SQLite's write lock at once (and
        // waits on busy_timeout), instead of upgrading a read lock later,
        // which fails with SQLITE_BUSY when another writer got there first.
        let updated = sqlx::query("UPDATE operations SET status = ?, end_time = ?, error = ?, token_hash = NULL WHERE id = ? AND status IN ('NotStarted', 'Running')")
            .bind(status.as_str()).bind(&now).bind(&err_json).bind(id)
            .execute(&mut *tx).await?;
        if updated.rows_affected() == 0 {
            return Ok(false);
        }
        let row = sqlx::query(&format!("SELECT {OP_COLUMNS} FROM operations WHERE id = ?"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let op = op_from_row(&row)?;
        let forced_delete = op.force && op.kind == OperationKind::Delete;
        let outcome = if forced_delete && status != OperationStatus::Canceled {
            None
        } else {
            ProvisioningState::on_finished(op.kind, status)
        };
        match outcome {
            None => {
                sqlx::query("DELETE FROM environments WHERE id = ?")
                    .bind(&op.environment_id)
                    .execute(&mut *tx)
                    .await?;
                // Operations queued behind a successful delete have nothing left to act on.
                sqlx::query("UPDATE operations SET status = 'Canceled', end_time = ?, error = ? WHERE environment_id = ? AND status = 'NotStarted'")
                    .bind(&now)
                    .bind(r#"{"code":"EnvironmentDeleted","message":"The environment was deleted before this operation started."}"#)
                    .bind(&op.environment_id).execute(&mut *tx).await?;
            }
            Some(state) => {
                sqlx::query("UPDATE environments SET provisioning_state = ?, error = ?, updated_at = ? WHERE id = ?")
                    .bind(state.as_str()).bind(&err_json).bind(&now).bind(&op.environment_id)
                    .execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    // ----- lifecycle: expiration actions, cancel, force delete -----

    /// Sets (or clears) an environment's `expirationDate`; the scheduled
    /// `Delete` action follows it. Returns false if the environment is gone.
    pub async fn set_expiration(
        &self,
        env_id: &str,
        expiration: Option<&str>,
        by: &str,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query("UPDATE environments SET expiration_date = ?1, delete_at = ?1, action_modified_by = ?2, action_modified_at = ?3, updated_at = ?3 WHERE id = ?4")
            .bind(expiration).bind(by).bind(now_rfc3339()).bind(env_id)
            .execute(&self.pool).await?;
        Ok(res.rows_affected() == 1)
    }

    /// Moves (`Some`) or skips (`None`) the next run of the `Delete` action.
    /// Returns false if the environment is gone.
    pub async fn reschedule_delete(
        &self,
        env_id: &str,
        at: Option<&str>,
        by: &str,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query("UPDATE environments SET delete_at = ?1, action_modified_by = ?2, action_modified_at = ?3 WHERE id = ?4")
            .bind(at).bind(by).bind(now_rfc3339()).bind(env_id)
            .execute(&self.pool).await?;
        Ok(res.rows_affected() == 1)
    }

    /// The earliest scheduled `Delete` action time (RFC 3339), if any.
    pub async fn next_delete_at(&self) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(delete_at) FROM environments WHERE delete_at IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Environments whose `Delete` action is due at `now` (RFC 3339).
    pub async fn due_deletes(&self, now: &str) -> Result<Vec<EnvironmentRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENV_COLUMNS} FROM environments WHERE delete_at IS NOT NULL AND delete_at <= ? ORDER BY delete_at"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(env_from_row).collect()
    }

    /// Asks to cancel an operation. A queued one ends Canceled at once
    /// (returns `Canceled`); a running one is marked (returns `Running`) and
    /// its runner is the scheduler's to stop; an ended one is left alone
    /// (returns its status).
    pub async fn request_cancel(
        &self,
        op_id: &str,
        by: &str,
    ) -> Result<Option<OperationStatus>, StoreError> {
        let marked = sqlx::query(
            "UPDATE operations SET cancel_requested_by = ? WHERE id = ? AND status = 'Running'",
        )
        .bind(by)
        .bind(op_id)
        .execute(&self.pool)
        .await?;
        if marked.rows_affected() == 1 {
            return Ok(Some(OperationStatus::Running));
        }
        let err = ErrorBody::new(
            "OperationCanceled",
            format!("The operation was canceled by '{by}' before it started."),
        );
        self.finish_operation(op_id, OperationStatus::Canceled, Some(&err))
            .await?;
        Ok(self.get_operation(op_id).await?.map(|o| o.status))
    }

    /// Drops an environment record without running anything (force delete
    /// of an environment whose definition is gone); queued operations end
    /// Canceled. Returns false if it did not exist.
    pub async fn delete_environment_record(&self, env_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let res = sqlx::query("DELETE FROM environments WHERE id = ?")
            .bind(env_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE operations SET status = 'Canceled', end_time = ?, error = ? WHERE environment_id = ? AND status = 'NotStarted'")
            .bind(now_rfc3339())
            .bind(r#"{"code":"EnvironmentDeleted","message":"The environment was force-deleted before this operation started."}"#)
            .bind(env_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(res.rows_affected() == 1)
    }
}
