//! Rows and the queries over them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use slipway_core::{
    EnvironmentDefinitionManifest, ErrorBody, OperationKind, OperationStatus, ProvisioningState,
};
use sqlx::Row;

use crate::{now_rfc3339, Store, StoreError};

fn corrupt(what: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        message: e.to_string(),
    }
}

fn json_col<T: serde::de::DeserializeOwned>(
    what: &'static str,
    s: Option<String>,
) -> Result<Option<T>, StoreError> {
    s.map(|s| serde_json::from_str(&s).map_err(|e| corrupt(what, e)))
        .transpose()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// A project.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Location reported to runners as `ADE_ENVIRONMENT_LOCATION`.
    pub location: String,
}

/// A project environment type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectEnvironmentType {
    /// Project.
    pub project: String,
    /// Environment type name.
    pub name: String,
    /// `/subscriptions/<id>` or any deployment target id.
    pub deployment_target_id: String,
    /// `Enabled` | `Disabled`.
    pub status: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Roles the creator of an environment gets on it (ADE
    /// `creatorRoleAssignment.roles`), recorded and reported to runners' owners.
    pub creator_roles: Vec<String>,
    /// Name of the `deploymentIdentity` secret whose credentials the runners
    /// of this type receive; `None` = no credentials.
    pub deployment_identity: Option<String>,
    /// Limits.
    pub limits: PetLimits,
    /// Confinement of its runners (limits, read-only root, allowed CIDRs).
    pub runner_policy: slipway_core::isolation::RunnerPolicy,
}

/// Limits of a project environment type; `None` = the server default (or none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PetLimits {
    /// Longest an operation may run, in minutes.
    pub max_runtime_minutes: Option<i64>,
    /// Largest total size of an environment's stored files, in MiB.
    #[serde(rename = "maxStorageMB")]
    pub max_storage_mb: Option<i64>,
    /// Most environments of this type one user may own.
    pub max_environments_per_user: Option<i64>,
}

/// Catalog source: where definitions come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogSource {
    /// `local` (a folder on the server) or `git`.
    pub kind: String,
    /// Folder path or git URL (`https://`, `ssh://`, `git://`, `file://`, scp-like `user@host:repo`).
    pub uri: String,
    /// Git branch (git only; `None` = the remote's default branch).
    pub branch: Option<String>,
    /// Folder inside the source that holds definition folders (with or without a leading `/`).
    pub path: Option<String>,
}

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

/// Metadata of a stored secret; the value is never part of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretMeta {
    /// Name.
    pub name: String,
    /// `token`, `sshKey`, …
    pub kind: String,
    /// Hosts a token may be sent to; empty (and left out) = any https host.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Creation time.
    pub created_at: String,
    /// Last change of the value.
    pub updated_at: String,
}

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

const PET_COLUMNS: &str = "project, name, deployment_target_id, status, display_name, creator_roles, deployment_identity, max_runtime_minutes, max_storage_mb, max_environments_per_user, runner_policy";

fn pet_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<ProjectEnvironmentType, StoreError> {
    Ok(ProjectEnvironmentType {
        project: r.try_get("project")?,
        name: r.try_get("name")?,
        deployment_target_id: r.try_get("deployment_target_id")?,
        status: r.try_get("status")?,
        display_name: r.try_get("display_name")?,
        creator_roles: json_col("creator roles", r.try_get("creator_roles")?)?.unwrap_or_default(),
        deployment_identity: r.try_get("deployment_identity")?,
        limits: PetLimits {
            max_runtime_minutes: r.try_get("max_runtime_minutes")?,
            max_storage_mb: r.try_get("max_storage_mb")?,
            max_environments_per_user: r.try_get("max_environments_per_user")?,
        },
        runner_policy: json_col("runner policy", r.try_get("runner_policy")?)?.unwrap_or_default(),
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
    // ----- projects and environment types -----

    /// Creates or updates a project.
    pub async fn put_project(&self, p: &Project) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO projects (name, description, location, created_at) VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET description = excluded.description, location = excluded.location")
            .bind(&p.name).bind(&p.description).bind(&p.location).bind(now_rfc3339())
            .execute(&self.pool).await?;
        Ok(())
    }

    /// Gets a project.
    pub async fn get_project(&self, name: &str) -> Result<Option<Project>, StoreError> {
        let row = sqlx::query("SELECT name, description, location FROM projects WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Project {
                name: r.try_get("name")?,
                description: r.try_get("description")?,
                location: r.try_get("location")?,
            })
        })
        .transpose()
    }

    /// Lists projects by name.
    pub async fn list_projects(&self) -> Result<Vec<Project>, StoreError> {
        let rows = sqlx::query("SELECT name, description, location FROM projects ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Project {
                    name: r.try_get("name")?,
                    description: r.try_get("description")?,
                    location: r.try_get("location")?,
                })
            })
            .collect()
    }

    /// Creates or updates a dev-center environment type.
    pub async fn put_environment_type(
        &self,
        name: &str,
        display: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO environment_types (name, display_name, created_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET display_name = excluded.display_name")
            .bind(name).bind(display).bind(now_rfc3339())
            .execute(&self.pool).await?;
        Ok(())
    }

    /// Dev-center environment types `{name, displayName}`, by name.
    pub async fn list_environment_types(&self) -> Result<Vec<Value>, StoreError> {
        let rows = sqlx::query("SELECT name, display_name FROM environment_types ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let name: String = r.try_get("name")?;
                let display: Option<String> = r.try_get("display_name")?;
                Ok(serde_json::json!({"name": name, "displayName": display}))
            })
            .collect()
    }

    /// Whether a dev-center environment type exists.
    pub async fn environment_type_exists(&self, name: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("SELECT 1 FROM environment_types WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// Creates or updates a project environment type.
    pub async fn put_project_environment_type(
        &self,
        t: &ProjectEnvironmentType,
    ) -> Result<(), StoreError> {
        let roles =
            serde_json::to_string(&t.creator_roles).map_err(|e| corrupt("creator roles", e))?;
        let policy = (t.runner_policy != Default::default())
            .then(|| serde_json::to_string(&t.runner_policy))
            .transpose()
            .map_err(|e| corrupt("runner policy", e))?;
        sqlx::query("INSERT INTO project_environment_types (project, name, deployment_target_id, status, created_at, display_name, creator_roles, deployment_identity, max_runtime_minutes, max_storage_mb, max_environments_per_user, runner_policy) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
            ON CONFLICT(project, name) DO UPDATE SET deployment_target_id = excluded.deployment_target_id, status = excluded.status, display_name = excluded.display_name, creator_roles = excluded.creator_roles, deployment_identity = excluded.deployment_identity, max_runtime_minutes = excluded.max_runtime_minutes, max_storage_mb = excluded.max_storage_mb, max_environments_per_user = excluded.max_environments_per_user, runner_policy = excluded.runner_policy")
            .bind(&t.project).bind(&t.name).bind(&t.deployment_target_id).bind(&t.status).bind(now_rfc3339())
            .bind(&t.display_name).bind(roles).bind(&t.deployment_identity)
            .bind(t.limits.max_runtime_minutes).bind(t.limits.max_storage_mb).bind(t.limits.max_environments_per_user)
            .bind(policy)
            .execute(&self.pool).await?;
        Ok(())
    }

    /// Gets a project environment type.
    pub async fn get_project_environment_type(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Option<ProjectEnvironmentType>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PET_COLUMNS} FROM project_environment_types WHERE project = ? AND name = ?"
        ))
        .bind(project)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(pet_from_row).transpose()
    }

    /// A project's environment types, by name.
    pub async fn list_project_environment_types(
        &self,
        project: &str,
    ) -> Result<Vec<ProjectEnvironmentType>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PET_COLUMNS} FROM project_environment_types WHERE project = ? ORDER BY name"
        ))
        .bind(project)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pet_from_row).collect()
    }

    /// Removes a project environment type and the role assignments at its
    /// scope. Returns false if it does not exist.
    ///
    /// Errors: [`StoreError::InUse`] while environments of the type exist.
    pub async fn delete_project_environment_type(
        &self,
        project: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let res = sqlx::query("DELETE FROM project_environment_types WHERE project = ? AND name = ? AND NOT EXISTS (SELECT 1 FROM environments WHERE project = ? AND environment_type = ?)")
            .bind(project).bind(name).bind(project).bind(name).execute(&mut *tx).await?;
        if res.rows_affected() == 0 {
            let count: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM environments WHERE project = ? AND environment_type = ?",
            )
            .bind(project)
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
            if count > 0 {
                return Err(StoreError::InUse(format!("project environment type '{name}' of project '{project}' has {count} environment(s): delete them first")));
            }
            return Ok(false);
        }
        sqlx::query("DELETE FROM role_assignments WHERE scope = ?")
            .bind(format!("/projects/{project}/environmentTypes/{name}"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Removes a dev-center environment type. Returns false if it does not exist.
    ///
    /// Errors: [`StoreError::InUse`] while a project enables it.
    pub async fn delete_environment_type(&self, name: &str) -> Result<bool, StoreError> {
        let projects: Vec<String> = sqlx::query_scalar(
            "SELECT project FROM project_environment_types WHERE name = ? ORDER BY project",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        if !projects.is_empty() {
            return Err(StoreError::InUse(format!("environment type '{name}' is enabled in project(s) {}: remove those project environment types first", projects.join(", "))));
        }
        let res = sqlx::query("DELETE FROM environment_types WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// How many environments of type `env_type` in `project` there are,
    /// of one owner or of all.
    pub async fn count_environments(
        &self,
        project: &str,
        env_type: &str,
        owner: Option<&str>,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM environments WHERE project = ?1 AND environment_type = ?2 AND (?3 IS NULL OR owner = ?3)")
            .bind(project).bind(env_type).bind(owner).fetch_one(&self.pool).await?)
    }

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
