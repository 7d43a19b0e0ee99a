//! Projects, dev-center environment types and project environment types.

use serde::Serialize;
use sqlx::Row;

use crate::{now_rfc3339, Store, StoreError};

use crate::records::{corrupt, json_col};

pub use slipway_wire::admin::{DevCenterEnvironmentType, PetLimits, Project};

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
    /// `creatorRoleAssignment.roles`): Slipway role names, recorded and
    /// reported, and Azure role definition GUIDs, assigned on the
    /// environment's resource group of an Azure target.
    pub creator_roles: Vec<String>,
    /// Entra object id → Azure role definition GUIDs assigned on every
    /// environment's resource group (ADE `userRoleAssignments` with GUID
    /// roles).
    #[serde(default)]
    pub azure_user_roles: std::collections::BTreeMap<String, Vec<String>>,
    /// Name of the `deploymentIdentity` secret whose credentials the runners
    /// of this type receive; `None` = no credentials.
    pub deployment_identity: Option<String>,
    /// Limits.
    pub limits: PetLimits,
    /// Confinement of its runners (limits, read-only root, allowed CIDRs).
    pub runner_policy: slipway_core::isolation::RunnerPolicy,
}

const PET_COLUMNS: &str = "project, name, deployment_target_id, status, display_name, creator_roles, deployment_identity, max_runtime_minutes, max_storage_mb, max_environments_per_user, runner_policy, azure_user_roles";

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
        azure_user_roles: json_col("azure user roles", r.try_get("azure_user_roles")?)?
            .unwrap_or_default(),
    })
}

impl ProjectEnvironmentType {
    /// The Azure role assignments it asks for on each environment's
    /// resource group: GUID creator roles and [`Self::azure_user_roles`].
    pub fn azure_roles(&self) -> slipway_core::azure_target::AzureRoleAssignments {
        slipway_core::azure_target::AzureRoleAssignments {
            creator: self
                .creator_roles
                .iter()
                .filter(|r| slipway_core::names::is_guid(r))
                .cloned()
                .collect(),
            users: self.azure_user_roles.clone(),
        }
    }
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

    /// Dev-center environment types, by name.
    pub async fn list_environment_types(
        &self,
    ) -> Result<Vec<DevCenterEnvironmentType>, StoreError> {
        let rows = sqlx::query("SELECT name, display_name FROM environment_types ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let name: String = r.try_get("name")?;
                let display: Option<String> = r.try_get("display_name")?;
                Ok(DevCenterEnvironmentType {
                    name,
                    display_name: display,
                })
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
        let azure_users = serde_json::to_string(&t.azure_user_roles)
            .map_err(|e| corrupt("azure user roles", e))?;
        sqlx::query("INSERT INTO project_environment_types (project, name, deployment_target_id, status, created_at, display_name, creator_roles, deployment_identity, max_runtime_minutes, max_storage_mb, max_environments_per_user, runner_policy, azure_user_roles) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
            ON CONFLICT(project, name) DO UPDATE SET deployment_target_id = excluded.deployment_target_id, status = excluded.status, display_name = excluded.display_name, creator_roles = excluded.creator_roles, deployment_identity = excluded.deployment_identity, max_runtime_minutes = excluded.max_runtime_minutes, max_storage_mb = excluded.max_storage_mb, max_environments_per_user = excluded.max_environments_per_user, runner_policy = excluded.runner_policy, azure_user_roles = excluded.azure_user_roles")
            .bind(&t.project).bind(&t.name).bind(&t.deployment_target_id).bind(&t.status).bind(now_rfc3339())
            .bind(&t.display_name).bind(roles).bind(&t.deployment_identity)
            .bind(t.limits.max_runtime_minutes).bind(t.limits.max_storage_mb).bind(t.limits.max_environments_per_user)
            .bind(policy)
            .bind(azure_users)
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
}
