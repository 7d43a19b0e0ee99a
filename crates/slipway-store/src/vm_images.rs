//! VM image templates, their runs and the image store (Azure VM Image
//! Builder model). Template documents are opaque JSON owned by
//! `slipway-vm-images`; run states are compare-and-set.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;

use slipway_core::images::run::{RunState, RunSubState};

use crate::{now_rfc3339, Store, StoreError};

pub use slipway_wire::vm_images::VmImage as VmImageRecord;

/// One run of an image template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRunRecord {
    /// `r1`, `r2`, … (global, increasing).
    pub run_id: String,
    /// Template name.
    pub template: String,
    /// The template document as it was when the run started.
    pub document: Value,
    /// AIB `runState`.
    pub run_state: RunState,
    /// AIB `runSubState`.
    pub run_sub_state: RunSubState,
    /// Why the run failed, else empty.
    pub message: String,
    /// The staging folder while it exists.
    pub staging: Option<String>,
    /// Run outputs: `[{name, type, artifactId?, artifactUri?, sha256, size}]`.
    pub outputs: Value,
    /// The resolved source (`{publisher, offer, sku, version}` for platform images).
    pub source: Value,
    /// A cancel was requested.
    pub cancel_requested: bool,
    /// RFC 3339.
    pub create_time: String,
    /// RFC 3339.
    pub start_time: Option<String>,
    /// RFC 3339.
    pub end_time: Option<String>,
}

fn json(row: &sqlx::sqlite::SqliteRow, col: &'static str) -> Result<Value, StoreError> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
        what: col,
        message: e.to_string(),
    })
}

fn run_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<ImageRunRecord, StoreError> {
    Ok(ImageRunRecord {
        run_id: row.try_get("id")?,
        template: row.try_get("template")?,
        document: json(row, "document")?,
        run_state: {
            let s: String = row.try_get("run_state")?;
            RunState::parse(&s).ok_or_else(|| StoreError::Corrupt {
                what: "image run state",
                message: format!("'{s}' is not a run state"),
            })?
        },
        run_sub_state: {
            let s: String = row.try_get("run_sub_state")?;
            RunSubState::parse(&s).ok_or_else(|| StoreError::Corrupt {
                what: "image run sub-state",
                message: format!("'{s}' is not a run sub-state"),
            })?
        },
        message: row.try_get("message")?,
        staging: row.try_get("staging")?,
        outputs: json(row, "outputs")?,
        source: json(row, "source_info")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        create_time: row.try_get("created_at")?,
        start_time: row.try_get("started_at")?,
        end_time: row.try_get("finished_at")?,
    })
}

fn image_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<VmImageRecord, StoreError> {
    Ok(VmImageRecord {
        id: row.try_get("id")?,
        gallery: row.try_get("gallery")?,
        definition: row.try_get("definition")?,
        version: row.try_get("version")?,
        exclude_from_latest: row.try_get::<i64, _>("exclude_from_latest")? != 0,
        path: row.try_get("path")?,
        sha256: row.try_get("sha256")?,
        size: row.try_get("size")?,
        source_version: row.try_get("source_version")?,
        template: row.try_get("template")?,
        run_id: row.try_get("run_id")?,
        tags: json(row, "tags")?,
        create_time: row.try_get("created_at")?,
        hyper_v_generation: row.try_get("hyper_v_generation")?,
    })
}

impl Store {
    /// Creates or replaces image template `name`; returns whether it was new.
    pub async fn put_image_template(
        &self,
        name: &str,
        document: &Value,
    ) -> Result<bool, StoreError> {
        let now = now_rfc3339();
        let mut tx = self.write_tx().await?;
        let existed = sqlx::query("SELECT 1 FROM image_templates WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        sqlx::query("INSERT INTO image_templates (name, document, created_at, updated_at) VALUES (?1, ?2, ?3, ?3) ON CONFLICT(name) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at")
            .bind(name)
            .bind(document.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(!existed)
    }

    /// Template `name`'s document, `None` when absent.
    pub async fn get_image_template(&self, name: &str) -> Result<Option<Value>, StoreError> {
        let row = sqlx::query("SELECT document FROM image_templates WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| json(&r, "document")).transpose()
    }

    /// Every template's name, sorted.
    pub async fn list_image_templates(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT name FROM image_templates ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get("name").map_err(StoreError::from))
            .collect()
    }

    /// Deletes template `name` and its triggers (its runs stay as
    /// history); whether it existed.
    pub async fn delete_image_template(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM image_template_triggers WHERE template = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query("DELETE FROM image_templates WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    /// Creates or replaces trigger `name` of template `template`; whether
    /// it was new.
    pub async fn put_image_trigger(
        &self,
        template: &str,
        name: &str,
        document: &Value,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let existed =
            sqlx::query("SELECT 1 FROM image_template_triggers WHERE template = ? AND name = ?")
                .bind(template)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
        sqlx::query("INSERT INTO image_template_triggers (template, name, document, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT(template, name) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at")
            .bind(template)
            .bind(name)
            .bind(document.to_string())
            .bind(now_rfc3339())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(!existed)
    }

    /// Trigger `name` of `template`, `None` when absent.
    pub async fn get_image_trigger(
        &self,
        template: &str,
        name: &str,
    ) -> Result<Option<Value>, StoreError> {
        let row = sqlx::query(
            "SELECT document FROM image_template_triggers WHERE template = ? AND name = ?",
        )
        .bind(template)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| json(&r, "document")).transpose()
    }

    /// Triggers as `(template, name, document)`, sorted; of one template
    /// or (`None`) of all.
    pub async fn list_image_triggers(
        &self,
        template: Option<&str>,
    ) -> Result<Vec<(String, String, Value)>, StoreError> {
        let rows = sqlx::query("SELECT template, name, document FROM image_template_triggers WHERE ?1 IS NULL OR template = ?1 ORDER BY template, name")
            .bind(template)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("template")?,
                    r.try_get("name")?,
                    json(r, "document")?,
                ))
            })
            .collect()
    }

    /// Deletes trigger `name` of `template`; whether it existed.
    pub async fn delete_image_trigger(
        &self,
        template: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM image_template_triggers WHERE template = ? AND name = ?")
            .bind(template)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Starts a run of `template` (state Running/Queued) unless one is
    /// already running: `Ok(None)` then.
    pub async fn create_image_run(
        &self,
        template: &str,
        document: &Value,
    ) -> Result<Option<ImageRunRecord>, StoreError> {
        let mut tx = self.write_tx().await?;
        let busy = sqlx::query("SELECT 1 FROM image_template_runs WHERE template = ? AND run_state IN ('Running', 'Canceling')")
            .bind(template)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if busy {
            return Ok(None);
        }
        let seq: i64 = sqlx::query("INSERT INTO image_template_runs (id, template, document, run_state, run_sub_state, created_at) VALUES ('', ?1, ?2, 'Running', 'Queued', ?3) RETURNING seq")
            .bind(template)
            .bind(document.to_string())
            .bind(now_rfc3339())
            .fetch_one(&mut *tx)
            .await?
            .try_get("seq")?;
        sqlx::query("UPDATE image_template_runs SET id = ?1 WHERE seq = ?2")
            .bind(format!("r{seq}"))
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.get_image_run(&format!("r{seq}")).await
    }

    /// Run `id`, `None` when absent.
    pub async fn get_image_run(&self, id: &str) -> Result<Option<ImageRunRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM image_template_runs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| run_from_row(&r)).transpose()
    }

    /// `template`'s runs, newest first.
    pub async fn list_image_runs(&self, template: &str) -> Result<Vec<ImageRunRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM image_template_runs WHERE template = ? ORDER BY seq DESC")
                .bind(template)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// Runs that are not final (for recovery after a restart).
    pub async fn unfinished_image_runs(&self) -> Result<Vec<ImageRunRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM image_template_runs WHERE run_state IN ('Running', 'Canceling') ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// Sets a running run's sub-state (and start time on leaving Queued).
    pub async fn set_image_run_sub_state(
        &self,
        id: &str,
        sub_state: RunSubState,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE image_template_runs SET run_sub_state = ?2, started_at = COALESCE(started_at, ?3) WHERE id = ?1")
            .bind(id)
            .bind(sub_state.as_str())
            .bind(now_rfc3339())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records the resolved source and the staging folder.
    pub async fn set_image_run_staging(
        &self,
        id: &str,
        staging: Option<&str>,
        source: &Value,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE image_template_runs SET staging = ?2, source_info = ?3 WHERE id = ?1")
            .bind(id)
            .bind(staging)
            .bind(source.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Asks a running run to cancel (state → Canceling); false when the
    /// run is not running.
    pub async fn request_image_run_cancel(&self, id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE image_template_runs SET cancel_requested = 1, run_state = 'Canceling' WHERE id = ? AND run_state = 'Running'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Ends a run: final state, message, outputs and what is left of staging.
    pub async fn finish_image_run(
        &self,
        id: &str,
        run_state: RunState,
        message: &str,
        outputs: &Value,
        staging: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE image_template_runs SET run_state = ?2, message = ?3, outputs = ?4, staging = ?5, finished_at = ?6 WHERE id = ?1")
            .bind(id)
            .bind(run_state.as_str())
            .bind(message)
            .bind(outputs.to_string())
            .bind(staging)
            .bind(now_rfc3339())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Adds an image to the store.
    ///
    /// Errors: [`StoreError::Conflict`] when the id exists.
    pub async fn insert_vm_image(&self, img: &VmImageRecord) -> Result<(), StoreError> {
        let r = sqlx::query("INSERT INTO vm_images (id, gallery, definition, version, exclude_from_latest, path, sha256, size, source_version, template, run_id, tags, created_at, hyper_v_generation) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) ON CONFLICT(id) DO NOTHING")
            .bind(&img.id)
            .bind(&img.gallery)
            .bind(&img.definition)
            .bind(&img.version)
            .bind(img.exclude_from_latest as i64)
            .bind(&img.path)
            .bind(&img.sha256)
            .bind(img.size)
            .bind(&img.source_version)
            .bind(&img.template)
            .bind(&img.run_id)
            .bind(img.tags.to_string())
            .bind(&img.create_time)
            .bind(&img.hyper_v_generation)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Conflict {
                kind: "image",
                name: img.id.clone(),
            });
        }
        Ok(())
    }

    /// Image `id` (canonical), `None` when absent.
    pub async fn get_vm_image(&self, id: &str) -> Result<Option<VmImageRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM vm_images WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| image_from_row(&r)).transpose()
    }

    /// The versions of gallery image `gallery`/`definition`.
    pub async fn gallery_versions(
        &self,
        gallery: &str,
        definition: &str,
    ) -> Result<Vec<VmImageRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM vm_images WHERE gallery = ? AND definition = ? ORDER BY created_at",
        )
        .bind(gallery)
        .bind(definition)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(image_from_row).collect()
    }

    /// Every image, by id.
    pub async fn list_vm_images(&self) -> Result<Vec<VmImageRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM vm_images ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(image_from_row).collect()
    }
}
