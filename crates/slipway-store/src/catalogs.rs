//! Catalogs, their sync state and the environment definitions of their
//! last successful sync.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use slipway_core::EnvironmentDefinitionManifest;
use sqlx::Row;

use crate::{now_rfc3339, Store, StoreError};

use crate::records::{corrupt, is_unique_violation, json_col};

pub use slipway_wire::catalogs::CatalogSource;

/// What an administrator sets on a catalog (ADE `Catalog` properties).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogSpec {
    /// Where definitions come from.
    pub source: CatalogSource,
    /// Owning project; `None` = a dev-center catalog visible in every project.
    pub project: Option<String>,
    /// `Manual` or `Scheduled` (ADE `syncType`).
    pub sync_type: String,
    /// Name of a stored secret (token or SSH key) used to fetch the source (ADE `secretIdentifier`).
    pub secret: Option<String>,
}

/// A catalog and its last sync.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    /// Name, unique per server.
    pub name: String,
    /// Source, owner, sync type and credential.
    pub spec: CatalogSpec,
    /// `NotSynced` | `InProgress` | `Succeeded` | `Failed` | `Canceled`.
    pub sync_state: String,
    /// End of the last sync attempt.
    pub last_sync_time: Option<String>,
    /// Commit of the last good snapshot (git) or content digest (local).
    pub last_commit: Option<String>,
    /// `{added, updated, unchanged, removed, validationErrors, synchronizationErrors}`.
    pub last_sync_stats: Option<Value>,
    /// ADE sync error details `{operationError, conflicts[], errors[]}`.
    pub last_sync_errors: Option<Value>,
    /// `Connected` | `Disconnected` after the last attempt to reach the source.
    pub connection_state: Option<String>,
    /// Last time the source was reached.
    pub last_connection_time: Option<String>,
    /// Source of the last good snapshot (to tell whether the source changed since).
    pub synced_source: Option<CatalogSource>,
    /// Creation time.
    pub created_at: String,
}

/// A synced environment definition, valid or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionRecord {
    /// Catalog name.
    pub catalog: String,
    /// Definition name.
    pub name: String,
    /// Manifest folder relative to the catalog root (`/`-separated, may be empty).
    pub folder: String,
    /// Parsed manifest (for a `Failed` definition: a stub with the name only).
    pub manifest: EnvironmentDefinitionManifest,
    /// sha256 of the content zip; empty for a `Failed` definition.
    pub content_digest: String,
    /// Catalog commit it was synced from.
    pub commit: Option<String>,
    /// `Succeeded` (deployable) or `Failed` (kept for its error details only).
    #[serde(default = "succeeded")]
    pub validation_status: String,
    /// ADE per-definition error details `[{code, message}]`.
    #[serde(default)]
    pub error_details: Vec<Value>,
    /// Non-fatal findings (unknown keys, `required` with `default`…).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Git tree id of the folder at `commit`, when known; equal trees skip re-validation.
    #[serde(default)]
    pub source_tree: Option<String>,
}

fn succeeded() -> String {
    "Succeeded".to_string()
}

impl DefinitionRecord {
    /// Whether developers may deploy it.
    pub fn is_valid(&self) -> bool {
        self.validation_status == "Succeeded"
    }
}

impl Store {
    // ----- catalogs and definitions -----

    /// Creates or updates a catalog (its sync state and snapshot are kept).
    ///
    /// Errors: [`StoreError::Conflict`] when the name is taken by a catalog
    /// of another scope (names are unique per server).
    pub async fn put_catalog(&self, name: &str, spec: &CatalogSpec) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let res = sqlx::query("UPDATE catalogs SET source_kind = ?, uri = ?, branch = ?, path = ?, sync_type = ?, secret = ? WHERE name = ? AND project IS ?")
            .bind(&spec.source.kind).bind(&spec.source.uri).bind(&spec.source.branch).bind(&spec.source.path)
            .bind(&spec.sync_type).bind(&spec.secret).bind(name).bind(&spec.project)
            .execute(&mut *tx).await?;
        if res.rows_affected() == 0 {
            sqlx::query("INSERT INTO catalogs (name, source_kind, uri, branch, path, sync_state, created_at, project, sync_type, secret) VALUES (?, ?, ?, ?, ?, 'NotSynced', ?, ?, ?, ?)")
                .bind(name).bind(&spec.source.kind).bind(&spec.source.uri).bind(&spec.source.branch).bind(&spec.source.path)
                .bind(now_rfc3339()).bind(&spec.project).bind(&spec.sync_type).bind(&spec.secret)
                .execute(&mut *tx).await
                .map_err(|e| if is_unique_violation(&e) { StoreError::Conflict { kind: "catalog", name: name.to_string() } } else { e.into() })?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a catalog and its definitions. Returns whether it existed.
    pub async fn delete_catalog(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM environment_definitions WHERE catalog = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let res = sqlx::query("DELETE FROM catalogs WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(res.rows_affected() == 1)
    }

    /// Gets a catalog.
    pub async fn get_catalog(&self, name: &str) -> Result<Option<Catalog>, StoreError> {
        Ok(self.query_catalogs(Some(name)).await?.pop())
    }

    /// Lists all catalogs (dev center and project) by name.
    pub async fn list_catalogs(&self) -> Result<Vec<Catalog>, StoreError> {
        self.query_catalogs(None).await
    }

    /// Catalogs visible in `project`: the dev center's plus the project's own, by name.
    pub async fn catalogs_for_project(&self, project: &str) -> Result<Vec<Catalog>, StoreError> {
        Ok(self
            .list_catalogs()
            .await?
            .into_iter()
            .filter(|c| c.spec.project.as_deref().is_none_or(|p| p == project))
            .collect())
    }

    async fn query_catalogs(&self, name: Option<&str>) -> Result<Vec<Catalog>, StoreError> {
        let rows = sqlx::query("SELECT name, source_kind, uri, branch, path, sync_state, last_sync_time, last_commit, last_sync_stats, last_sync_errors, project, sync_type, secret, connection_state, last_connection_time, synced_source, created_at FROM catalogs WHERE (?1 IS NULL OR name = ?1) ORDER BY name")
            .bind(name).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(Catalog {
                    name: r.try_get("name")?,
                    spec: CatalogSpec {
                        source: CatalogSource {
                            kind: r.try_get("source_kind")?,
                            uri: r.try_get("uri")?,
                            branch: r.try_get("branch")?,
                            path: r.try_get("path")?,
                        },
                        project: r.try_get("project")?,
                        sync_type: r.try_get("sync_type")?,
                        secret: r.try_get("secret")?,
                    },
                    sync_state: r.try_get("sync_state")?,
                    last_sync_time: r.try_get("last_sync_time")?,
                    last_commit: r.try_get("last_commit")?,
                    last_sync_stats: json_col("sync stats", r.try_get("last_sync_stats")?)?,
                    last_sync_errors: json_col("sync errors", r.try_get("last_sync_errors")?)?,
                    connection_state: r.try_get("connection_state")?,
                    last_connection_time: r.try_get("last_connection_time")?,
                    synced_source: json_col("synced source", r.try_get("synced_source")?)?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Marks a catalog's sync as started. Returns false when one is already in progress.
    pub async fn begin_catalog_sync(&self, name: &str) -> Result<bool, StoreError> {
        let res = sqlx::query("UPDATE catalogs SET sync_state = 'InProgress' WHERE name = ? AND sync_state <> 'InProgress'")
            .bind(name).execute(&self.pool).await?;
        Ok(res.rows_affected() == 1)
    }

    /// Marks syncs left `InProgress` by a previous server process as
    /// `Canceled` (their snapshot was never committed). Call once at start-up,
    /// before any sync runs. Returns the catalogs concerned.
    pub async fn cancel_interrupted_syncs(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("UPDATE catalogs SET sync_state = 'Canceled', last_sync_time = ? WHERE sync_state = 'InProgress' RETURNING name")
            .bind(now_rfc3339()).fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(r.try_get("name")?)).collect()
    }

    /// Ends a failed sync: the previous snapshot stays. `connected` tells
    /// whether the source could be reached.
    pub async fn fail_catalog_sync(
        &self,
        name: &str,
        errors: &Value,
        connected: bool,
    ) -> Result<(), StoreError> {
        let now = now_rfc3339();
        sqlx::query("UPDATE catalogs SET sync_state = 'Failed', last_sync_time = ?1, last_sync_errors = ?2, connection_state = ?3, last_connection_time = CASE WHEN ?4 THEN ?1 ELSE last_connection_time END WHERE name = ?5")
            .bind(&now).bind(errors.to_string()).bind(if connected { "Connected" } else { "Disconnected" }).bind(connected).bind(name)
            .execute(&self.pool).await?;
        Ok(())
    }

    /// Replaces a catalog's definitions with `defs` in one transaction and
    /// records the sync result; the catalog is `Succeeded` and `Connected`.
    pub async fn commit_catalog_sync(
        &self,
        name: &str,
        commit: &str,
        source: &CatalogSource,
        defs: &[DefinitionRecord],
        stats: &Value,
        errors: &Value,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let now = now_rfc3339();
        let source = serde_json::to_string(source).map_err(|e| corrupt("synced source", e))?;
        // Write first: the transaction takes the write lock at once (no read→write upgrade).
        sqlx::query("UPDATE catalogs SET sync_state = 'Succeeded', last_sync_time = ?1, last_commit = ?2, last_sync_stats = ?3, last_sync_errors = ?4, connection_state = 'Connected', last_connection_time = ?1, synced_source = ?5 WHERE name = ?6")
            .bind(&now).bind(commit).bind(stats.to_string()).bind(errors.to_string()).bind(source).bind(name)
            .execute(&mut *tx).await?;
        sqlx::query("DELETE FROM environment_definitions WHERE catalog = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        for d in defs {
            let manifest =
                serde_json::to_string(&d.manifest).map_err(|e| corrupt("manifest", e))?;
            let details =
                serde_json::to_string(&d.error_details).map_err(|e| corrupt("error details", e))?;
            let warnings =
                serde_json::to_string(&d.warnings).map_err(|e| corrupt("warnings", e))?;
            sqlx::query("INSERT INTO environment_definitions (catalog, name, folder, manifest, content_digest, commit_id, validation_status, error_details, warnings, source_tree) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                .bind(name).bind(&d.name).bind(&d.folder).bind(manifest).bind(&d.content_digest).bind(commit)
                .bind(&d.validation_status).bind(details).bind(warnings).bind(&d.source_tree)
                .execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Ends a sync that found the source at the snapshot's commit: only the
    /// catalog row changes (`Succeeded`, `Connected`, new time and stats).
    pub async fn commit_unchanged_catalog_sync(
        &self,
        name: &str,
        stats: &Value,
    ) -> Result<(), StoreError> {
        let now = now_rfc3339();
        sqlx::query("UPDATE catalogs SET sync_state = 'Succeeded', last_sync_time = ?1, last_sync_stats = ?2, connection_state = 'Connected', last_connection_time = ?1 WHERE name = ?3")
            .bind(&now).bind(stats.to_string()).bind(name)
            .execute(&self.pool).await?;
        Ok(())
    }

    /// Lists definitions (valid and `Failed`), optionally of one catalog, by catalog then name.
    pub async fn list_definitions(
        &self,
        catalog: Option<&str>,
    ) -> Result<Vec<DefinitionRecord>, StoreError> {
        self.query_definitions(catalog, None).await
    }

    async fn query_definitions(
        &self,
        catalog: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<DefinitionRecord>, StoreError> {
        let rows = sqlx::query("SELECT catalog, name, folder, manifest, content_digest, commit_id, validation_status, error_details, warnings, source_tree FROM environment_definitions WHERE (?1 IS NULL OR catalog = ?1) AND (?2 IS NULL OR name = ?2) ORDER BY catalog, name")
            .bind(catalog).bind(name).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(DefinitionRecord {
                    catalog: r.try_get("catalog")?,
                    name: r.try_get("name")?,
                    folder: r.try_get("folder")?,
                    manifest: json_col("manifest", r.try_get("manifest")?)?
                        .ok_or_else(|| corrupt("manifest", "missing"))?,
                    content_digest: r.try_get("content_digest")?,
                    commit: r.try_get("commit_id")?,
                    validation_status: r.try_get("validation_status")?,
                    error_details: json_col("error details", r.try_get("error_details")?)?
                        .unwrap_or_default(),
                    warnings: json_col("warnings", r.try_get("warnings")?)?.unwrap_or_default(),
                    source_tree: r.try_get("source_tree")?,
                })
            })
            .collect()
    }

    /// Gets one definition (valid or `Failed`).
    pub async fn get_definition(
        &self,
        catalog: &str,
        name: &str,
    ) -> Result<Option<DefinitionRecord>, StoreError> {
        Ok(self
            .query_definitions(Some(catalog), Some(name))
            .await?
            .pop())
    }
}
