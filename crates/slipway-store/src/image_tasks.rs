//! Container image tasks and their runs (ACR Tasks model).
//!
//! A task's spec is an opaque JSON document owned by `slipway-tasks`; runs
//! are rows with a compare-and-set status. Run ids are short and increasing
//! (`ca1`, `ca2`, …, base 36 after the `c`), like ACR's `cf4`.

use serde_json::Value;
use sqlx::Row;

use slipway_core::tasks::TaskRunStatus;

use crate::{now_rfc3339, Store, StoreError};

/// `('Succeeded', 'Failed', …)`: [`TaskRunStatus::FINISHED`] as an SQL list.
static FINISHED_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let quoted: Vec<String> = TaskRunStatus::FINISHED
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    format!("({})", quoted.join(", "))
});

pub use slipway_wire::tasks::TaskRun as TaskRunRecord;

fn run_id(seq: i64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = seq as u64 + 36 * 10; // start at "ca0"-ish so ids have 3+ chars
    let mut s = Vec::new();
    while n > 0 {
        s.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    s.reverse();
    format!("c{}", String::from_utf8_lossy(&s))
}

fn json_col(row: &sqlx::sqlite::SqliteRow, col: &'static str) -> Result<Value, StoreError> {
    let text: Option<String> = row.try_get(col)?;
    match text {
        None => Ok(Value::Null),
        Some(t) => serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
            what: col,
            message: e.to_string(),
        }),
    }
}

/// A JSON list column; `NULL` reads as `[]`.
fn list_col(row: &sqlx::sqlite::SqliteRow, col: &'static str) -> Result<Value, StoreError> {
    match json_col(row, col)? {
        Value::Null => Ok(Value::Array(Vec::new())),
        v => Ok(v),
    }
}

fn run_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<TaskRunRecord, StoreError> {
    Ok(TaskRunRecord {
        run_id: row.try_get("id")?,
        task: row.try_get("task")?,
        run_type: row.try_get("run_type")?,
        status: {
            let s: String = row.try_get("status")?;
            TaskRunStatus::parse(&s).ok_or_else(|| StoreError::Corrupt {
                what: "task run status",
                message: format!("'{s}' is not a task run status"),
            })?
        },
        request: json_col(row, "request")?,
        trigger: json_col(row, "trigger_info")?,
        // Both are lists; until the run ends they are empty.
        output_images: list_col(row, "output_images")?,
        dependencies: list_col(row, "dependencies")?,
        run_error_message: row.try_get("error")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        log_expired: row.try_get::<i64, _>("log_expired")? != 0,
        create_time: row.try_get("created_at")?,
        start_time: row.try_get("started_at")?,
        finish_time: row.try_get("finished_at")?,
    })
}

impl Store {
    /// Creates or replaces task `name` with `spec`, and records `audit` in
    /// the same transaction (both or neither); returns whether it was new.
    pub async fn put_image_task(
        &self,
        name: &str,
        spec: &Value,
        audit: Option<&crate::AuditEvent>,
    ) -> Result<bool, StoreError> {
        let now = now_rfc3339();
        let mut tx = self.write_tx().await?;
        let existed = sqlx::query("SELECT 1 FROM image_tasks WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        sqlx::query("INSERT INTO image_tasks (name, spec, created_at, updated_at) VALUES (?1, ?2, ?3, ?3) ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at")
            .bind(name)
            .bind(spec.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if let Some(e) = audit {
            crate::access::insert_audit(&mut *tx, e).await?;
        }
        tx.commit().await?;
        Ok(!existed)
    }

    /// Task `name`'s spec, `None` when absent.
    pub async fn get_image_task(&self, name: &str) -> Result<Option<Value>, StoreError> {
        let row = sqlx::query("SELECT spec FROM image_tasks WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| json_col(&r, "spec")).transpose()
    }

    /// Every task's `(name, spec)` by name.
    pub async fn list_image_tasks(&self) -> Result<Vec<(String, Value)>, StoreError> {
        let rows = sqlx::query("SELECT name, spec FROM image_tasks ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, json_col(r, "spec")?)))
            .collect()
    }

    /// Deletes task `name` (its runs stay); returns whether it existed.
    pub async fn delete_image_task(&self, name: &str) -> Result<bool, StoreError> {
        let res = sqlx::query("DELETE FROM image_tasks WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Queues a run; returns it with its new id.
    pub async fn create_task_run(
        &self,
        task: Option<&str>,
        run_type: &str,
        request: &Value,
        trigger: &Value,
    ) -> Result<TaskRunRecord, StoreError> {
        let mut tx = self.write_tx().await?;
        let now = now_rfc3339();
        let seq: i64 = sqlx::query("INSERT INTO task_runs (id, task, run_type, status, request, trigger_info, created_at) VALUES ('pending-' || hex(randomblob(8)), ?1, ?2, 'Queued', ?3, ?4, ?5) RETURNING seq")
            .bind(task)
            .bind(run_type)
            .bind(request.to_string())
            .bind(trigger.to_string())
            .bind(&now)
            .fetch_one(&mut *tx)
            .await?
            .try_get("seq")?;
        let id = run_id(seq);
        sqlx::query("UPDATE task_runs SET id = ?1 WHERE seq = ?2")
            .bind(&id)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.get_task_run(&id)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                what: "task_runs",
                message: format!("run {id} vanished after insert"),
            })
    }

    /// Run `id`, `None` when absent.
    pub async fn get_task_run(&self, id: &str) -> Result<Option<TaskRunRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM task_runs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// Newest first, at most `top`; filtered by task and status when given.
    pub async fn list_task_runs(
        &self,
        task: Option<&str>,
        status: Option<TaskRunStatus>,
        top: u32,
    ) -> Result<Vec<TaskRunRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM task_runs WHERE (?1 IS NULL OR task = ?1) AND (?2 IS NULL OR status = ?2) ORDER BY seq DESC LIMIT ?3")
            .bind(task)
            .bind(status.map(TaskRunStatus::as_str))
            .bind(top as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// Runs in `status`, oldest first.
    pub async fn task_runs_in(
        &self,
        status: TaskRunStatus,
    ) -> Result<Vec<TaskRunRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM task_runs WHERE status = ? ORDER BY seq")
            .bind(status.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// Moves run `id` from `from` to `to` (compare-and-set); stamps the
    /// start time on `Started`. Returns whether it moved.
    pub async fn transition_task_run(
        &self,
        id: &str,
        from: TaskRunStatus,
        to: TaskRunStatus,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query("UPDATE task_runs SET status = ?3, started_at = CASE WHEN ?3 = 'Started' THEN ?4 ELSE started_at END WHERE id = ?1 AND status = ?2")
            .bind(id)
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(now_rfc3339())
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Finishes a run that is not finished yet: final status, error, images,
    /// dependencies. Returns whether it changed.
    pub async fn finish_task_run(
        &self,
        id: &str,
        status: TaskRunStatus,
        error: Option<&str>,
        output_images: &Value,
        dependencies: &Value,
    ) -> Result<bool, StoreError> {
        let sql = format!("UPDATE task_runs SET status = ?2, error = ?3, output_images = ?4, dependencies = ?5, finished_at = ?6 WHERE id = ?1 AND status NOT IN {}", *FINISHED_SQL);
        let res = sqlx::query(&sql)
            .bind(id)
            .bind(status.as_str())
            .bind(error)
            .bind(output_images.to_string())
            .bind(dependencies.to_string())
            .bind(now_rfc3339())
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Marks a cancel request on an unfinished run; returns whether it was unfinished.
    pub async fn request_task_run_cancel(&self, id: &str) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE task_runs SET cancel_requested = 1 WHERE id = ? AND status NOT IN {}",
            *FINISHED_SQL
        );
        let res = sqlx::query(&sql).bind(id).execute(&self.pool).await?;
        Ok(res.rows_affected() == 1)
    }

    /// Deletes the logs of runs that finished before `before` (RFC 3339,
    /// UTC) and marks them `log_expired`; returns the run ids. Each log is
    /// deleted before its run is marked, so a failure part-way leaves the
    /// rest for the next sweep.
    pub async fn expire_task_run_logs(&self, before: &str) -> Result<Vec<String>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM task_runs WHERE log_expired = 0 AND finished_at IS NOT NULL AND finished_at < ? ORDER BY seq",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await?;
        for id in &ids {
            self.blobs.delete(&Store::task_run_log_key(id)).await?;
            sqlx::query("UPDATE task_runs SET log_expired = 1 WHERE id = ?")
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        Ok(ids)
    }

    /// Blob key of run `id`'s log.
    pub fn task_run_log_key(id: &str) -> String {
        format!("task-runs/{id}.log")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_short_and_increase() {
        let ids: Vec<String> = (1..=40).map(run_id).collect();
        assert_eq!(ids[0], "ca1");
        assert!(
            ids.windows(2)
                .all(|w| (w[0].len(), &w[0]) < (w[1].len(), &w[1])),
            "{ids:?}"
        );
    }
}
