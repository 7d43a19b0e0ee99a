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

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde::Deserialize;
use serde_json::{Map, Value};
use slipway_core::access::Permission;
use slipway_core::echo::truncate as truncate_echo;
use slipway_core::names::validate_resource_name;
use slipway_environments::DeployRequest;
use slipway_store::{DefinitionRecord, EnvironmentRecord, OperationRecord};
use slipway_wire::ade::paths::{
    ActionPath, CatalogPath, DefinitionPath, EnvironmentPath, EnvironmentTypePath, OperationPath,
    OperationStatusPath, ProjectPath, UserPath,
};
use slipway_wire::ade::{
    Catalog, Environment, EnvironmentAction, EnvironmentDefinition, EnvironmentOperation,
    EnvironmentOutputs, EnvironmentPatch, EnvironmentRequest, EnvironmentType, OperationDetails,
    Paged,
};
use slipway_wire::CloudError;
use utoipa::IntoParams;

use crate::admin::{body, future_time, require_pet, require_project, JsonBody};
use crate::auth::Caller;
use crate::logs::{self, LogQuery};
use crate::routing::Routes;
use crate::views::{self, environment_path};
use crate::{ApiError, ApiResult, AppState};

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

/// Lists a project's environments the caller may read.
#[utoipa::path(get, path = "/projects/{projectName}/environments", tag = "environments", params(ProjectPath), responses((status = 200, description = "The environments the caller may read", body = Paged<Environment>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_project_environments(
    State(state): State<AppState>,
    caller: Caller,
    Path(p): Path<String>,
) -> ApiResult<Json<Paged<Environment>>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    let envs = state.store.list_environments(&p, None).await?;
    envs_json(&state, &caller, envs).await
}

/// Lists one user's environments.
#[utoipa::path(get, path = "/projects/{projectName}/users/{userId}/environments", tag = "environments", params(UserPath), responses((status = 200, description = "The user's environments", body = Paged<Environment>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_user_environments(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u)): Path<(String, String)>,
) -> ApiResult<Json<Paged<Environment>>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    let envs = state
        .store
        .list_environments(&p, Some(caller.resolve(&u)))
        .await?;
    envs_json(&state, &caller, envs).await
}

/// Reads an environment.
#[utoipa::path(get, path = "/projects/{projectName}/users/{userId}/environments/{environmentName}", tag = "environments", params(EnvironmentPath), responses((status = 200, description = "The environment", body = Environment), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn get_environment(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e)): Path<(String, String, String)>,
) -> ApiResult<Json<Environment>> {
    let env = readable_environment(&state, &caller, &p, &u, &e).await?;
    Ok(Json(env_json(&state, &env).await?))
}

/// Body of `PUT .../environments/{e}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvironmentBody {
    environment_type: Option<String>,
    catalog_name: Option<String>,
    environment_definition_name: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    expiration_date: Option<String>,
}

fn required_field(v: Option<String>, field: &str) -> ApiResult<String> {
    v.filter(|s| !s.is_empty()).ok_or_else(|| {
        ApiError::bad_request("MissingProperty", format!("property '{field}' is required"))
    })
}

/// An `expirationDate` in the store's form; it must lie in the future.
fn future_expiration(v: &str) -> ApiResult<String> {
    future_time(
        "InvalidExpirationDate",
        "expirationDate",
        "property 'expirationDate'",
        v,
    )
}

fn operation_headers(state: &AppState, project: &str, op_id: &str, env_path: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let base = &state.config.base_url;
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{base}/projects/{project}/operationstatuses/{op_id}"
    )) {
        h.insert("operation-location", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{base}{env_path}")) {
        h.insert("location", v);
    }
    h
}

/// Creates or redeploys an environment (`request_body`: `EnvironmentRequest`).
#[utoipa::path(put, path = "/projects/{projectName}/users/{userId}/environments/{environmentName}", tag = "environments", params(EnvironmentPath), request_body = EnvironmentRequest, responses((status = 201, description = "Created or redeploying; `Operation-Location` names the operation status", body = Environment), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn put_environment(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e)): Path<(String, String, String)>,
    body: Result<Json<EnvironmentBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) =
        body.map_err(|r| ApiError::bad_request("InvalidRequestBody", r.body_text()))?;
    caller.require(Permission::ReadProject(p.clone()))?;
    validate_resource_name("environment", &e)
        .map_err(|err| ApiError::bad_request("InvalidEnvironmentName", err.to_string()))?;
    require_project(&state, &p).await?;
    let user = caller.resolve(&u).to_string();
    let env_type = required_field(body.environment_type, "environmentType")?;
    if user != caller.user {
        // Creating or redeploying on behalf of someone else is an admin's job.
        caller.require(Permission::ManageEnvironments(p.clone()))?;
    } else {
        caller.require(Permission::DeployEnvironments(p.clone(), env_type.clone()))?;
    }
    let catalog = required_field(body.catalog_name, "catalogName")?;
    let def_name = required_field(
        body.environment_definition_name,
        "environmentDefinitionName",
    )?;
    let expiration = body
        .expiration_date
        .as_deref()
        .map(future_expiration)
        .transpose()?;
    let supplied: Map<String, Value> = match body.parameters {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(ApiError::bad_request(
                "InvalidRequestBody",
                format!(
                    "property 'parameters' must be an object, found {}",
                    slipway_core::manifest::describe_value(&other)
                ),
            ))
        }
    };
    let queued = state
        .environments
        .deploy(DeployRequest {
            project: p.clone(),
            name: e,
            owner: user,
            requested_by: caller.user.clone(),
            environment_type: env_type,
            catalog,
            definition: def_name,
            parameters: supplied,
            expiration_date: expiration,
        })
        .await
        .map_err(|err| {
            // The type, catalog and definition are named by the body: a
            // missing one makes the request invalid (400), not the path.
            let mut err = ApiError::from(err);
            if err.status == StatusCode::NOT_FOUND {
                err.status = StatusCode::BAD_REQUEST;
            }
            err
        })?;
    let path = environment_path(&queued.environment);
    let body = env_json(&state, &queued.environment).await?;
    Ok((
        StatusCode::CREATED,
        operation_headers(&state, &p, &queued.operation.id, &path),
        Json(body),
    )
        .into_response())
}

/// `PATCH` (`application/merge-patch+json`): only `expirationDate` (a time, or `null` to clear).
/// Changes an environment's `expirationDate` (merge patch).
#[utoipa::path(patch, path = "/projects/{projectName}/users/{userId}/environments/{environmentName}", tag = "environments", params(EnvironmentPath), request_body(content = EnvironmentPatch, content_type = "application/merge-patch+json"), responses((status = 200, description = "The environment", body = Environment), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn patch_environment(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e)): Path<(String, String, String)>,
    b: JsonBody<Value>,
) -> ApiResult<Json<Environment>> {
    let patch = body(b)?;
    let env = manageable_environment(&state, &caller, &p, &u, &e).await?;
    let obj = patch.as_object().ok_or_else(|| {
        ApiError::bad_request("InvalidRequestBody", "expected a JSON merge-patch object")
    })?;
    if let Some(k) = obj.keys().find(|k| *k != "expirationDate") {
        return Err(ApiError::bad_request(
            "PropertyChangeNotAllowed",
            format!("property '{k}' cannot be patched: only 'expirationDate' can (parameters change with PUT)"),
        ));
    }
    if let Some(v) = obj.get("expirationDate") {
        let expiration = match v {
            Value::Null => None,
            Value::String(s) => Some(future_expiration(s)?),
            other => {
                return Err(ApiError::bad_request(
                    "InvalidExpirationDate",
                    format!(
                        "property 'expirationDate' is {}: expected an RFC 3339 date-time or null",
                        slipway_core::manifest::describe_value(other)
                    ),
                ))
            }
        };
        let env = state
            .environments
            .set_expiration(&env, expiration.as_deref(), &caller.user)
            .await?;
        return Ok(Json(env_json(&state, &env).await?));
    }
    Ok(Json(env_json(&state, &env).await?))
}

/// Query of `DELETE …/environments/{e}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// Delete without the environment definition (ADE `2024-10-01-preview`).
    #[serde(default)]
    force: Option<bool>,
}

/// Deletes an environment (`force=true`: without its definition).
#[utoipa::path(delete, path = "/projects/{projectName}/users/{userId}/environments/{environmentName}", tag = "environments", params(EnvironmentPath, DeleteQuery), responses((status = 202, description = "Delete queued; `Operation-Location` names the operation status", body = OperationDetails), (status = 204, description = "Removed without an operation"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn delete_environment(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e)): Path<(String, String, String)>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<Response> {
    let env = manageable_environment(&state, &caller, &p, &u, &e).await?;
    let Some(op) = state
        .environments
        .delete(&env, &caller.user, q.force.unwrap_or(false))
        .await?
    else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let path = environment_path(&env);
    let body = views::operation_status(&state.config.base_url, &op, &path);
    Ok((
        StatusCode::ACCEPTED,
        operation_headers(&state, &p, &op.id, &path),
        Json(body),
    )
        .into_response())
}

/// Finds operation `op_id` of environment `name` and checks the caller may
/// read it (`manage`: change it). Operations stay readable after a
/// successful delete removed the environment (so a client following a
/// delete can read its log to the end); then the requester must be the user
/// who queued the operation or a Project Admin.
async fn require_operation(
    state: &AppState,
    caller: &Caller,
    project: &str,
    user: &str,
    name: &str,
    op_id: &str,
    manage: bool,
) -> ApiResult<(OperationRecord, String)> {
    caller.require(Permission::ReadProject(project.to_string()))?;
    let user = caller.resolve(user);
    let not_found = || {
        ApiError::not_found(
            "OperationNotFound",
            format!("operation '{op_id}' not found for environment '{name}'"),
        )
    };
    let op = match state.store.get_operation(op_id).await? {
        Some(op) if op.project == project && op.environment_name == name => op,
        _ => return Err(not_found()),
    };
    match state.store.get_environment(project, name).await? {
        Some(env) if env.id == op.environment_id && env.owner == user => {
            if !caller.can_read(&env) {
                return Err(not_found());
            }
            if manage {
                caller.require_manage(&env)?;
            }
            Ok((op, environment_path(&env)))
        }
        None if op.created_by == user => {
            if op.created_by != caller.user {
                caller.require(Permission::ManageEnvironments(project.to_string()))?;
            }
            let path = format!("/projects/{project}/users/{user}/environments/{name}");
            Ok((op, path))
        }
        _ => Err(not_found()),
    }
}

/// Lists an environment's operations.
#[utoipa::path(get, path = "/projects/{projectName}/users/{userId}/environments/{environmentName}/operations", tag = "environments", params(EnvironmentPath), responses((status = 200, description = "Its operations", body = Paged<EnvironmentOperation>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_operations(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e)): Path<(String, String, String)>,
) -> ApiResult<Json<Paged<EnvironmentOperation>>> {
    let env = readable_environment(&state, &caller, &p, &u, &e).await?;
    let path = environment_path(&env);
    let value = state
        .store
        .list_operations(&env.id)
        .await?
        .iter()
        .map(|op| views::operation(&state.config.base_url, &path, op))
        .collect();
    Ok(Json(Paged::all(value)))
}

/// Reads an operation.
#[utoipa::path(get, path = "/projects/{projectName}/users/{userId}/environments/{environmentName}/operations/{operationId}", tag = "environments", params(OperationPath), responses((status = 200, description = "The operation", body = EnvironmentOperation), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn get_operation(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e, o)): Path<(String, String, String, String)>,
) -> ApiResult<Json<EnvironmentOperation>> {
    let (op, path) = require_operation(&state, &caller, &p, &u, &e, &o, false).await?;
    Ok(Json(views::operation(&state.config.base_url, &path, &op)))
}

/// `POST …/operations/{o}:cancel`: a queued operation ends Canceled at once;
/// a running one gets SIGTERM, a grace period, then SIGKILL, and ends
/// Canceled (state uploaded by the runner's catch handler is kept). 202 with
/// the operation status; 409 when it has ended already.
/// Cancels a queued or running operation (Slipway).
#[utoipa::path(post, path = "/projects/{projectName}/users/{userId}/environments/{environmentName}/operations/{operationId}:cancel", tag = "environments", params(OperationPath), responses((status = 202, description = "Cancel requested", body = OperationDetails), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn operation_action(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e, o)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    let Some(op_id) = o.strip_suffix(":cancel") else {
        return Err(ApiError::not_found(
            "ActionNotFound",
            format!("'{o}' is not an operation action: expected '<operationId>:cancel'"),
        ));
    };
    let (op, path) = require_operation(&state, &caller, &p, &u, &e, op_id, true).await?;
    let op = state.environments.cancel(&op, &caller.user).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(views::operation_status(&state.config.base_url, &op, &path)),
    )
        .into_response())
}

/// Reads or follows an operation's log.
#[utoipa::path(get, path = "/projects/{projectName}/users/{userId}/environments/{environmentName}/operations/{operationId}/logs", tag = "environments", params(OperationPath, LogQuery), responses((status = 200, description = "The operation's log (`text/plain`); `offset` answers carry `X-Slipway-Next-Offset`", body = String, content_type = "text/plain"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn get_logs(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e, o)): Path<(String, String, String, String)>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let (op, _) = require_operation(&state, &caller, &p, &u, &e, &o, false).await?;
    let store = state.store.clone();
    let id = op.id.clone();
    let ended: logs::Ended = Arc::new(move || {
        let (store, id) = (store.clone(), id.clone());
        Box::pin(async move {
            match store.get_operation(&id).await {
                Ok(Some(op)) => op.status.is_terminal(),
                Ok(None) => true,
                Err(_) => false,
            }
        })
    });
    let src = logs::LogSource {
        path: state
            .store
            .blobs
            .file_path(&slipway_store::Store::log_key(&op.id))?,
        status: ("x-slipway-operation-status", op.status.as_str().to_string()),
        ended,
    };
    logs::respond(src, &q).await
}

/// Reads an environment's outputs.
#[utoipa::path(get, path = "/projects/{projectName}/users/{userId}/environments/{environmentName}/outputs", tag = "environments", params(EnvironmentPath), responses((status = 200, description = "Its outputs", body = EnvironmentOutputs), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn get_outputs(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e)): Path<(String, String, String)>,
) -> ApiResult<Json<EnvironmentOutputs>> {
    let env = readable_environment(&state, &caller, &p, &u, &e).await?;
    // Stored as the runner uploaded it, checked then; an unreadable blob
    // reads as no outputs rather than failing the environment's reads.
    let mut outputs = EnvironmentOutputs::default();
    if let Some(bytes) = state
        .store
        .blobs
        .get(&slipway_store::Store::outputs_key(&env.id))
        .await?
    {
        match serde_json::from_slice(&bytes) {
            Ok(map) => outputs.outputs = map,
            Err(err) => {
                tracing::warn!(environment = %env.name, %err, "stored outputs are unreadable")
            }
        }
    }
    let sees_secrets =
        env.owner == caller.user || caller.can(&Permission::ManageEnvironments(p.clone()));
    if !sees_secrets {
        for out in outputs.outputs.values_mut().filter(|o| o.sensitive) {
            out.value = Value::Null;
        }
    }
    Ok(Json(outputs))
}

/// Lists an environment's scheduled actions.
#[utoipa::path(get, path = "/projects/{projectName}/users/{userId}/environments/{environmentName}/actions", tag = "environments", params(EnvironmentPath), responses((status = 200, description = "Its scheduled actions", body = Paged<EnvironmentAction>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_actions(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e)): Path<(String, String, String)>,
) -> ApiResult<Json<Paged<EnvironmentAction>>> {
    let env = readable_environment(&state, &caller, &p, &u, &e).await?;
    let value = views::delete_action(&state.config.base_url, &env)
        .into_iter()
        .collect();
    Ok(Json(Paged::all(value)))
}

/// Reads a scheduled action.
#[utoipa::path(get, path = "/projects/{projectName}/users/{userId}/environments/{environmentName}/actions/{actionName}", tag = "environments", params(ActionPath), responses((status = 200, description = "The action", body = EnvironmentAction), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn get_action(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e, a)): Path<(String, String, String, String)>,
) -> ApiResult<Json<EnvironmentAction>> {
    let env = readable_environment(&state, &caller, &p, &u, &e).await?;
    state.environments.require_action(&env, &a)?;
    Ok(Json(delete_action_view(&state, &env)?))
}

/// Query of `…:delay`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DelayQuery {
    /// When the action should run instead (RFC 3339, in the future).
    until: Option<String>,
}

/// `POST …/actions/{a}:skip` (204) and `POST …/actions/{a}:delay?until=` (200 action).
async fn action_action(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e, a)): Path<(String, String, String, String)>,
    Query(q): Query<DelayQuery>,
) -> ApiResult<Response> {
    let env = manageable_environment(&state, &caller, &p, &u, &e).await?;
    let (name, verb) = a.rsplit_once(':').unwrap_or((a.as_str(), ""));
    state.environments.require_action(&env, name)?;
    match verb {
        "skip" => skip_action(&state, &caller, &env, name).await,
        "delay" => delay_action(&state, &caller, &env, name, q).await,
        other => Err(ApiError::not_found(
            "ActionNotFound",
            format!("'{other}' is not an action verb: expected '{name}:skip' or '{name}:delay'"),
        )),
    }
}

/// Skips the next run of a scheduled action.
#[utoipa::path(post, path = "/projects/{projectName}/users/{userId}/environments/{environmentName}/actions/{actionName}:skip", tag = "environments", params(ActionPath), responses((status = 204, description = "Skipped"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn skip_action(
    state: &AppState,
    caller: &Caller,
    env: &EnvironmentRecord,
    name: &str,
) -> ApiResult<Response> {
    state
        .environments
        .reschedule_action(env, name, None, &caller.user)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Delays a scheduled action to `until`.
#[utoipa::path(post, path = "/projects/{projectName}/users/{userId}/environments/{environmentName}/actions/{actionName}:delay", tag = "environments", params(ActionPath, DelayQuery), responses((status = 200, description = "The action", body = EnvironmentAction), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn delay_action(
    state: &AppState,
    caller: &Caller,
    env: &EnvironmentRecord,
    name: &str,
    q: DelayQuery,
) -> ApiResult<Response> {
    let until = q.until.ok_or_else(|| {
        ApiError::bad_request(
            "MissingProperty",
            "query parameter 'until' is required: an RFC 3339 date-time",
        )
    })?;
    let at = future_time(
        "InvalidDateTime",
        "until",
        "query parameter 'until'",
        &until,
    )?;
    let env = state
        .environments
        .reschedule_action(env, name, Some(&at), &caller.user)
        .await?;
    Ok(Json(delete_action_view(state, &env)?).into_response())
}

/// The environment's scheduled `Delete` action, or 404 `ActionNotFound`
/// when it has no expiration.
fn delete_action_view(state: &AppState, env: &EnvironmentRecord) -> ApiResult<EnvironmentAction> {
    views::delete_action(&state.config.base_url, env).ok_or_else(|| {
        ApiError::not_found(
            "ActionNotFound",
            format!("environment '{}' has no scheduled action", env.name),
        )
    })
}

/// Reads an operation's status (`Operation-Location`).
#[utoipa::path(get, path = "/projects/{projectName}/operationstatuses/{operationId}", tag = "environments", params(OperationStatusPath), responses((status = 200, description = "The operation's status", body = OperationDetails), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn get_operation_status(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, o)): Path<(String, String)>,
) -> ApiResult<Json<OperationDetails>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    let not_found = || {
        ApiError::not_found(
            "OperationNotFound",
            format!(
                "operation '{}' not found in project '{p}'",
                truncate_echo(&o)
            ),
        )
    };
    let op = match state.store.get_operation(&o).await? {
        Some(op) if op.project == p => op,
        _ => return Err(not_found()),
    };
    let owner = match state
        .store
        .get_environment_by_id(&op.environment_id)
        .await?
    {
        Some(env) => {
            if !caller.can_read(&env) {
                return Err(not_found());
            }
            env.owner
        }
        None => {
            if op.created_by != caller.user {
                caller.require(Permission::ManageEnvironments(p.clone()))?;
            }
            op.created_by.clone()
        }
    };
    let path = format!(
        "/projects/{}/users/{owner}/environments/{}",
        op.project, op.environment_name
    );
    Ok(Json(views::operation_status(
        &state.config.base_url,
        &op,
        &path,
    )))
}

fn environment_type_json(
    state: &AppState,
    t: &slipway_store::ProjectEnvironmentType,
) -> EnvironmentType {
    EnvironmentType {
        uri: format!(
            "{}/projects/{}/environmentTypes/{}",
            state.config.base_url, t.project, t.name
        ),
        name: t.name.clone(),
        display_name: t.display_name.clone(),
        deployment_target_id: t.deployment_target_id.clone(),
        status: t.status.clone(),
    }
}

/// Lists a project's environment types.
#[utoipa::path(get, path = "/projects/{projectName}/environmentTypes", tag = "environments", params(ProjectPath), responses((status = 200, description = "The project's environment types", body = Paged<EnvironmentType>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_environment_types(
    State(state): State<AppState>,
    caller: Caller,
    Path(p): Path<String>,
) -> ApiResult<Json<Paged<EnvironmentType>>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    let value = state
        .store
        .list_project_environment_types(&p)
        .await?
        .iter()
        .map(|t| environment_type_json(&state, t))
        .collect();
    Ok(Json(Paged::all(value)))
}

/// Reads a project environment type.
#[utoipa::path(get, path = "/projects/{projectName}/environmentTypes/{environmentTypeName}", tag = "environments", params(EnvironmentTypePath), responses((status = 200, description = "The environment type", body = EnvironmentType), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn get_environment_type(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, t)): Path<(String, String)>,
) -> ApiResult<Json<EnvironmentType>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    let pet = require_pet(&state, &p, &t).await?;
    Ok(Json(environment_type_json(&state, &pet)))
}

fn catalog_json(state: &AppState, project: &str, c: &slipway_store::Catalog) -> Catalog {
    Catalog {
        uri: format!(
            "{}/projects/{project}/catalogs/{}",
            state.config.base_url, c.name
        ),
        name: c.name.clone(),
    }
}

/// A catalog visible in `project` (the dev center's or the project's own), or 404.
pub async fn visible_catalog(
    state: &AppState,
    project: &str,
    catalog: &str,
) -> ApiResult<slipway_store::Catalog> {
    Ok(state.environments.visible_catalog(project, catalog).await?)
}

/// A deployable definition of a catalog visible in `project`, or 404 naming
/// why (missing, or rejected by the last sync with its first error).
pub async fn visible_definition(
    state: &AppState,
    project: &str,
    catalog: &str,
    name: &str,
) -> ApiResult<DefinitionRecord> {
    Ok(state
        .environments
        .visible_definition(project, catalog, name)
        .await?)
}

/// Lists the catalogs a project sees.
#[utoipa::path(get, path = "/projects/{projectName}/catalogs", tag = "environments", params(ProjectPath), responses((status = 200, description = "The catalogs the project sees", body = Paged<Catalog>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_catalogs(
    State(state): State<AppState>,
    caller: Caller,
    Path(p): Path<String>,
) -> ApiResult<Json<Paged<Catalog>>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    let value = state
        .store
        .catalogs_for_project(&p)
        .await?
        .iter()
        .map(|c| catalog_json(&state, &p, c))
        .collect();
    Ok(Json(Paged::all(value)))
}

/// Reads a catalog.
#[utoipa::path(get, path = "/projects/{projectName}/catalogs/{catalogName}", tag = "environments", params(CatalogPath), responses((status = 200, description = "The catalog", body = Catalog), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn get_catalog(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, c)): Path<(String, String)>,
) -> ApiResult<Json<Catalog>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    let cat = visible_catalog(&state, &p, &c).await?;
    Ok(Json(catalog_json(&state, &p, &cat)))
}

/// Lists every valid environment definition a project sees.
#[utoipa::path(get, path = "/projects/{projectName}/environmentDefinitions", tag = "environments", params(ProjectPath), responses((status = 200, description = "Valid definitions of every catalog the project sees", body = Paged<EnvironmentDefinition>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_all_definitions(
    State(state): State<AppState>,
    caller: Caller,
    Path(p): Path<String>,
) -> ApiResult<Json<Paged<EnvironmentDefinition>>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    let mut value = Vec::new();
    for c in state.store.catalogs_for_project(&p).await? {
        for d in state.store.list_definitions(Some(&c.name)).await? {
            if d.is_valid() {
                value.push(views::definition(&state.config.base_url, &p, &d));
            }
        }
    }
    Ok(Json(Paged::all(value)))
}

/// Lists a catalog's valid environment definitions.
#[utoipa::path(get, path = "/projects/{projectName}/catalogs/{catalogName}/environmentDefinitions", tag = "environments", params(CatalogPath), responses((status = 200, description = "The catalog's valid definitions", body = Paged<EnvironmentDefinition>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_catalog_definitions(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, c)): Path<(String, String)>,
) -> ApiResult<Json<Paged<EnvironmentDefinition>>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    visible_catalog(&state, &p, &c).await?;
    let value = state
        .store
        .list_definitions(Some(&c))
        .await?
        .iter()
        .filter(|d| d.is_valid())
        .map(|d| views::definition(&state.config.base_url, &p, d))
        .collect();
    Ok(Json(Paged::all(value)))
}

/// Reads an environment definition.
#[utoipa::path(get, path = "/projects/{projectName}/catalogs/{catalogName}/environmentDefinitions/{definitionName}", tag = "environments", params(DefinitionPath), responses((status = 200, description = "The definition", body = EnvironmentDefinition), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn get_definition(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, c, d)): Path<(String, String, String)>,
) -> ApiResult<Json<EnvironmentDefinition>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    let def = visible_definition(&state, &p, &c, &d).await?;
    Ok(Json(views::definition(&state.config.base_url, &p, &def)))
}
