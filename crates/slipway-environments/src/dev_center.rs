//! ADE's dev-center administration rules: which project environment types
//! may be set up and which roles may be assigned where. The API parses and
//! authorizes; these checks and the writes happen here.
//!
//! Contract: ADE project environment types (`status`, `creatorRoleAssignment`,
//! `userRoleAssignments`, deployment identity; reference `ade.md` §3) and
//! role scopes (§2).

use std::collections::BTreeMap;

use serde_json::Value;
use slipway_core::access::{check_assignable, Role, Scope};
use slipway_core::azure_target::NIL_SUBSCRIPTION;
use slipway_core::credentials::DEPLOYMENT_IDENTITY_KIND;
use slipway_core::isolation::RunnerPolicy;
use slipway_store::{ProjectEnvironmentType, RoleAssignment, SecretScope};
use slipway_wire::admin::ProjectEnvironmentTypeRequest;

use crate::{EnvironmentError, EnvironmentService, Result};

fn invalid(message: String) -> EnvironmentError {
    EnvironmentError::InvalidProjectEnvironmentType(message)
}

/// Splits a role map's keys into Slipway roles and Azure role definition
/// GUIDs (lower-cased), which ADE's `creatorRoleAssignment` and
/// `userRoleAssignments` name.
fn parse_roles(field: &str, roles: &BTreeMap<String, Value>) -> Result<(Vec<Role>, Vec<String>)> {
    let (mut slipway, mut azure) = (Vec::new(), Vec::new());
    for r in roles.keys() {
        if slipway_core::names::is_guid(r) {
            azure.push(r.to_ascii_lowercase());
        } else {
            slipway.push(Role::parse(r).map_err(|e| {
                invalid(format!(
                    "property '{field}': {e} (or an Azure role definition GUID)"
                ))
            })?);
        }
    }
    Ok((slipway, azure))
}

impl EnvironmentService {
    /// Creates or replaces environment type `env_type` in `project`: the
    /// type exists at the dev center, `status` is `Enabled` (default) or
    /// `Disabled`, roles are known (users get only the data-plane roles at
    /// the type's scope) or Azure role definition GUIDs (assigned on each
    /// environment's resource group; user keys are then Entra object ids),
    /// the deployment identity names a
    /// `deploymentIdentity` secret, limits are positive, the runner policy
    /// is within bounds. `userRoleAssignments`, when given, replace the
    /// type's scope assignments.
    ///
    /// Errors: [`EnvironmentError::ProjectNotFound`],
    /// [`EnvironmentError::EnvironmentTypeNotDefined`],
    /// [`EnvironmentError::InvalidStatus`],
    /// [`EnvironmentError::InvalidProjectEnvironmentType`] naming the
    /// property, the value and what was expected.
    pub async fn put_project_environment_type(
        &self,
        project: &str,
        env_type: &str,
        request: ProjectEnvironmentTypeRequest,
    ) -> Result<ProjectEnvironmentType> {
        let store = self.store();
        if store.get_project(project).await?.is_none() {
            return Err(EnvironmentError::ProjectNotFound {
                project: project.to_string(),
            });
        }
        if !store.environment_type_exists(env_type).await? {
            return Err(EnvironmentError::EnvironmentTypeNotDefined {
                environment_type: env_type.to_string(),
            });
        }
        let status = request.status.unwrap_or_else(|| "Enabled".into());
        if status != "Enabled" && status != "Disabled" {
            return Err(EnvironmentError::InvalidStatus { status });
        }
        let creator_roles = match &request.creator_role_assignment {
            Some(c) => {
                let (slipway, azure) = parse_roles("creatorRoleAssignment.roles", &c.roles)?;
                slipway
                    .iter()
                    .map(|r| r.as_str().to_string())
                    .chain(azure)
                    .collect()
            }
            None => Vec::new(),
        };
        let mut user_roles = Vec::new();
        let mut azure_user_roles = BTreeMap::new();
        for (user, roles) in request.user_role_assignments.iter().flatten() {
            let field = format!("userRoleAssignments.{user}.roles");
            let (slipway, azure) = parse_roles(&field, &roles.roles)?;
            if !azure.is_empty() {
                if !slipway_core::names::is_guid(user) {
                    return Err(invalid(format!("property 'userRoleAssignments.{user}' gives Azure roles to '{user}': expected an Entra object id (a GUID)")));
                }
                azure_user_roles.insert(user.to_ascii_lowercase(), azure);
            }
            for role in slipway {
                if !matches!(role, Role::User | Role::Reader) {
                    return Err(invalid(format!("property 'userRoleAssignments.{user}.roles' has '{role}': expected 'Deployment Environments User' or 'Deployment Environments Reader' at an environment type's scope")));
                }
                user_roles.push((user.clone(), role));
            }
        }
        if let Some(id) = &request.deployment_identity {
            match store.secret_meta(&SecretScope::DevCenter, id).await? {
                Some(m) if m.kind == DEPLOYMENT_IDENTITY_KIND => {}
                Some(m) => return Err(invalid(format!("property 'deploymentIdentity' names secret '{id}' of kind '{}': expected a secret of kind '{DEPLOYMENT_IDENTITY_KIND}'", m.kind))),
                None => return Err(invalid(format!("property 'deploymentIdentity' names secret '{id}', which does not exist: create it with PUT /admin/secrets/{id} {{\"kind\": \"{DEPLOYMENT_IDENTITY_KIND}\", \"value\": {{…}}}}"))),
            }
        }
        let limits = request.limits.unwrap_or_default();
        for (field, v) in [
            ("limits.maxRuntimeMinutes", limits.max_runtime_minutes),
            ("limits.maxStorageMB", limits.max_storage_mb),
            (
                "limits.maxEnvironmentsPerUser",
                limits.max_environments_per_user,
            ),
        ] {
            if let Some(v) = v.filter(|v| *v < 1) {
                return Err(invalid(format!(
                    "property '{field}' is {v}: expected a positive whole number"
                )));
            }
        }
        let runner_policy = match &request.runner_policy {
            Some(v) => {
                RunnerPolicy::from_json("runnerPolicy", v).map_err(|e| invalid(e.to_string()))?
            }
            None => RunnerPolicy::default(),
        };
        let pet = ProjectEnvironmentType {
            project: project.to_string(),
            name: env_type.to_string(),
            deployment_target_id: request
                .deployment_target_id
                // The all-zero subscription: not an Azure target Slipway acts on.
                .unwrap_or_else(|| format!("/subscriptions/{NIL_SUBSCRIPTION}")),
            status,
            display_name: request.display_name,
            creator_roles,
            azure_user_roles: match request.user_role_assignments {
                Some(_) => azure_user_roles,
                // Not given: the type keeps what it had.
                None => store
                    .get_project_environment_type(project, env_type)
                    .await?
                    .map(|t| t.azure_user_roles)
                    .unwrap_or_default(),
            },
            deployment_identity: request.deployment_identity,
            limits,
            runner_policy,
        };
        store.put_project_environment_type(&pet).await?;
        if request.user_role_assignments.is_some() {
            store
                .replace_scope_assignments(
                    &Scope::EnvironmentType(project.to_string(), env_type.to_string()),
                    &user_roles,
                )
                .await?;
        }
        Ok(pet)
    }

    /// Assigns `role` to `principal` at `scope`: the role is assignable
    /// there ([`check_assignable`]), the principal is not blank, and the
    /// scope's project (and project environment type) exist.
    ///
    /// Errors: [`EnvironmentError::InvalidRoleAssignment`],
    /// [`EnvironmentError::ProjectNotFound`],
    /// [`EnvironmentError::EnvironmentTypeNotFound`].
    pub async fn assign_role(
        &self,
        principal: &str,
        role: Role,
        scope: &Scope,
    ) -> Result<RoleAssignment> {
        check_assignable(role, scope)
            .map_err(|e| EnvironmentError::InvalidRoleAssignment(e.to_string()))?;
        if principal.trim().is_empty() {
            return Err(EnvironmentError::InvalidRoleAssignment(
                "property 'principalId' is empty: expected a user id".into(),
            ));
        }
        let store = self.store();
        if let Some(p) = scope.project() {
            if store.get_project(p).await?.is_none() {
                return Err(EnvironmentError::ProjectNotFound {
                    project: p.to_string(),
                });
            }
            if let Scope::EnvironmentType(_, t) = scope {
                if store.get_project_environment_type(p, t).await?.is_none() {
                    return Err(EnvironmentError::EnvironmentTypeNotFound {
                        project: p.to_string(),
                        environment_type: t.clone(),
                    });
                }
            }
        }
        Ok(store.assign_role(principal, role, scope).await?)
    }
}
