//! ADE data-plane routes (reference `ade.md` §5.1).
//!
//! `userId` may be `me`: the caller (see [`crate::auth`]). Who may do what:
//! reading a project's catalogs, definitions and types needs any role in
//! it; an environment is readable by its owner, Readers of its type and
//! admins, and changeable (redeploy, patch, delete, actions, cancel) by its
//! owner while they hold the User role for its type, and by admins.
//! `sensitive` outputs show their value only to the owner and admins.
//!
//! Beyond the read paths of ADE: `PATCH` (merge-patch `{expirationDate}`),
//! `DELETE ?force=true`, the scheduled `Delete` action
//! (`…/actions[/{a}]`, `POST …/actions/{a}:skip`, `POST …/actions/{a}:delay?until=`)
//! and `POST …/operations/{o}:cancel` (Slipway).

//!
//! One module per job: [`environments`], [`operations`], [`actions`],
//! [`project_resources`]; this file holds the routes and the access checks
//! they share.

pub(crate) mod actions;
pub(crate) mod environments;
pub(crate) mod operations;
pub(crate) mod project_resources;

use axum::routing::get;
use axum::Json;
use slipway_core::access::Permission;
use slipway_store::EnvironmentRecord;
use slipway_wire::ade::{Environment, Paged};

use self::actions::{action_action, get_action, list_actions};
use self::environments::{
    delete_environment, get_environment, get_outputs, list_project_environments,
    list_user_environments, patch_environment, put_environment,
};
use self::operations::{
    get_logs, get_operation, get_operation_status, list_operations, operation_action,
};
use self::project_resources::{
    get_catalog, get_definition, get_environment_type, list_all_definitions,
    list_catalog_definitions, list_catalogs, list_environment_types,
};
pub use self::project_resources::{visible_catalog, visible_definition};
use crate::auth::Caller;
use crate::routing::Routes;
use crate::views;
use crate::{ApiResult, AppState};

/// Data-plane routes.
pub fn routes() -> Routes {
    Routes::new()
        .route("/projects/{projectName}/environments", get(list_project_environments))
        .route(
            "/projects/{projectName}/users/{userId}/environments",
            get(list_user_environments),
        )
        .route(
            "/projects/{projectName}/users/{userId}/environments/{environmentName}",
            get(get_environment)
                .put(put_environment)
                .patch(patch_environment)
                .delete(delete_environment),
        )
        .route(
            "/projects/{projectName}/users/{userId}/environments/{environmentName}/operations",
            get(list_operations),
        )
        .route(
            "/projects/{projectName}/users/{userId}/environments/{environmentName}/operations/{operationId}",
            get(get_operation).post(operation_action),
        )
        .route(
            "/projects/{projectName}/users/{userId}/environments/{environmentName}/operations/{operationId}/logs",
            get(get_logs),
        )
        .route(
            "/projects/{projectName}/users/{userId}/environments/{environmentName}/outputs",
            get(get_outputs),
        )
        .route(
            "/projects/{projectName}/users/{userId}/environments/{environmentName}/actions",
            get(list_actions),
        )
        .route(
            "/projects/{projectName}/users/{userId}/environments/{environmentName}/actions/{actionName}",
            get(get_action).post(action_action),
        )
        .route(
            "/projects/{projectName}/operationstatuses/{operationId}",
            get(get_operation_status),
        )
        .route(
            "/projects/{projectName}/environmentTypes",
            get(list_environment_types),
        )
        .route(
            "/projects/{projectName}/environmentTypes/{environmentTypeName}",
            get(get_environment_type),
        )
        .route("/projects/{projectName}/catalogs", get(list_catalogs))
        .route("/projects/{projectName}/catalogs/{catalogName}", get(get_catalog))
        .route(
            "/projects/{projectName}/environmentDefinitions",
            get(list_all_definitions),
        )
        .route(
            "/projects/{projectName}/catalogs/{catalogName}/environmentDefinitions",
            get(list_catalog_definitions),
        )
        .route(
            "/projects/{projectName}/catalogs/{catalogName}/environmentDefinitions/{definitionName}",
            get(get_definition),
        )
}

/// Loads environment `name` of `user` in `project` for a caller who may
/// read it. A caller outside the project gets 403 (before any look-up); a
/// caller in the project who may not read this environment gets the same
/// 404 as for one that does not exist, so names do not leak.
async fn readable_environment(
    state: &AppState,
    caller: &Caller,
    project: &str,
    user: &str,
    name: &str,
) -> ApiResult<EnvironmentRecord> {
    caller.require(Permission::ReadProject(project.to_string()))?;
    let env = require_environment(state, project, caller.resolve(user), name).await?;
    if !caller.can_read(&env) {
        return Err(
            slipway_environments::EnvironmentError::environment_not_found(
                project,
                caller.resolve(user),
                name,
            )
            .into(),
        );
    }
    Ok(env)
}

/// Like [`readable_environment`], for changes (redeploy, delete, actions, cancel).
async fn manageable_environment(
    state: &AppState,
    caller: &Caller,
    project: &str,
    user: &str,
    name: &str,
) -> ApiResult<EnvironmentRecord> {
    let env = readable_environment(state, caller, project, user, name).await?;
    caller.require_manage(&env)?;
    Ok(env)
}

/// Loads an environment owned by `user` in `project`, or 404.
pub async fn require_environment(
    state: &AppState,
    project: &str,
    user: &str,
    name: &str,
) -> ApiResult<EnvironmentRecord> {
    Ok(state.environments.environment(project, user, name).await?)
}

/// `resourceGroupId` of an environment: `<deploymentTargetId>/resourceGroups/<project>-<env>`.
pub async fn resource_group_id(state: &AppState, env: &EnvironmentRecord) -> ApiResult<String> {
    let target = state
        .store
        .get_project_environment_type(&env.project, &env.environment_type)
        .await?
        .map(|t| t.deployment_target_id)
        .unwrap_or_default();
    Ok(format!(
        "{}/resourceGroups/{}-{}",
        target.trim_end_matches('/'),
        env.project,
        env.name
    ))
}

async fn env_json(state: &AppState, env: &EnvironmentRecord) -> ApiResult<Environment> {
    let rg = resource_group_id(state, env).await?;
    Ok(views::environment(&state.config.base_url, env, &rg))
}

async fn envs_json(
    state: &AppState,
    caller: &Caller,
    envs: Vec<EnvironmentRecord>,
) -> ApiResult<Json<Paged<Environment>>> {
    let mut value = Vec::new();
    for env in envs.iter().filter(|e| caller.can_read(e)) {
        value.push(env_json(state, env).await?);
    }
    Ok(Json(Paged::all(value)))
}
