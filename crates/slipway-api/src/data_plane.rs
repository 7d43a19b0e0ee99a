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
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use slipway_core::access::Permission;
use slipway_core::echo::truncate as truncate_echo;
use slipway_core::names::validate_resource_name;
use slipway_environments::DeployRequest;
use slipway_store::{DefinitionRecord, EnvironmentRecord, OperationRecord};

use crate::admin::{body, future_time, require_pet, require_project, JsonBody};
use crate::auth::Caller;
use crate::logs::{self, LogQuery};
use crate::views::{self, environment_path};
use crate::{ApiError, ApiResult, AppState};

/// Data-plane routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/projects/{p}/environments", get(list_project_environments))
        .route(
            "/projects/{p}/users/{u}/environments",
            get(list_user_environments),
        )
        .route(
            "/projects/{p}/users/{u}/environments/{e}",
            get(get_environment)
                .put(put_environment)
                .patch(patch_environment)
                .delete(delete_environment),
        )
        .route(
            "/projects/{p}/users/{u}/environments/{e}/operations",
            get(list_operations),
        )
        .route(
            "/projects/{p}/users/{u}/environments/{e}/operations/{o}",
            get(get_operation).post(operation_action),
        )
        .route(
            "/projects/{p}/users/{u}/environments/{e}/operations/{o}/logs",
            get(get_logs),
        )
        .route(
            "/projects/{p}/users/{u}/environments/{e}/outputs",
            get(get_outputs),
        )
        .route(
            "/projects/{p}/users/{u}/environments/{e}/actions",
            get(list_actions),
        )
        .route(
            "/projects/{p}/users/{u}/environments/{e}/actions/{a}",
            get(get_action).post(action_action),
        )
        .route(
            "/projects/{p}/operationstatuses/{o}",
            get(get_operation_status),
        )
        .route(
            "/projects/{p}/environmentTypes",
            get(list_environment_types),
        )
        .route(
            "/projects/{p}/environmentTypes/{t}",
            get(get_environment_type),
        )
        .route("/projects/{p}/catalogs", get(list_catalogs))
        .route("/projects/{p}/catalogs/{c}", get(get_catalog))
        .route(
            "/projects/{p}/environmentDefinitions",
            get(list_all_definitions),
        )
        .route(
            "/projects/{p}/catalogs/{c}/environmentDefinitions",
            get(list_catalog_definitions),
        )
        .route(
            "/projects/{p}/catalogs/{c}/environmentDefinitions/{d}",
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

async fn env_json(state: &AppState, env: &EnvironmentRecord) -> ApiResult<Value> {
    let rg = resource_group_id(state, env).await?;
    Ok(views::environment(&state.config.base_url, env, &rg))
}

async fn envs_json(
    state: &AppState,
    caller: &Caller,
    envs: Vec<EnvironmentRecord>,
) -> ApiResult<Json<Value>> {
    let mut value = Vec::new();
    for env in envs.iter().filter(|e| caller.can_read(e)) {
        value.push(env_json(state, env).await?);
    }
    Ok(Json(json!({ "value": value })))
}

async fn list_project_environments(
    State(state): State<AppState>,
    caller: Caller,
    Path(p): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    let envs = state.store.list_environments(&p, None).await?;
    envs_json(&state, &caller, envs).await
}

async fn list_user_environments(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    let envs = state
        .store
        .list_environments(&p, Some(caller.resolve(&u)))
        .await?;
    envs_json(&state, &caller, envs).await
}

async fn get_environment(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
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
async fn patch_environment(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e)): Path<(String, String, String)>,
    b: JsonBody<Value>,
) -> ApiResult<Json<Value>> {
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

#[derive(Debug, Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    force: Option<bool>,
}

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

async fn list_operations(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let env = readable_environment(&state, &caller, &p, &u, &e).await?;
    let path = environment_path(&env);
    let value: Vec<Value> = state
        .store
        .list_operations(&env.id)
        .await?
        .iter()
        .map(|op| views::operation(&state.config.base_url, &path, op))
        .collect();
    Ok(Json(json!({ "value": value })))
}

async fn get_operation(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e, o)): Path<(String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let (op, path) = require_operation(&state, &caller, &p, &u, &e, &o, false).await?;
    Ok(Json(views::operation(&state.config.base_url, &path, &op)))
}

/// `POST …/operations/{o}:cancel`: a queued operation ends Canceled at once;
/// a running one gets SIGTERM, a grace period, then SIGKILL, and ends
/// Canceled (state uploaded by the runner's catch handler is kept). 202 with
/// the operation status; 409 when it has ended already.
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

async fn get_outputs(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let env = readable_environment(&state, &caller, &p, &u, &e).await?;
    let mut outputs = match state
        .store
        .blobs
        .get(&slipway_store::Store::outputs_key(&env.id))
        .await?
    {
        Some(bytes) => serde_json::from_slice::<Value>(&bytes).unwrap_or_else(|_| json!({})),
        None => json!({}),
    };
    let sees_secrets =
        env.owner == caller.user || caller.can(&Permission::ManageEnvironments(p.clone()));
    if !sees_secrets {
        for out in outputs
            .as_object_mut()
            .into_iter()
            .flat_map(|m| m.values_mut())
        {
            if out.get("sensitive").and_then(Value::as_bool) == Some(true) {
                out["value"] = Value::Null;
            }
        }
    }
    Ok(Json(json!({ "outputs": outputs })))
}

async fn list_actions(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let env = readable_environment(&state, &caller, &p, &u, &e).await?;
    let value: Vec<Value> = views::delete_action(&state.config.base_url, &env)
        .into_iter()
        .collect();
    Ok(Json(json!({ "value": value })))
}

async fn get_action(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e, a)): Path<(String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let env = readable_environment(&state, &caller, &p, &u, &e).await?;
    state.environments.require_action(&env, &a)?;
    Ok(Json(
        views::delete_action(&state.config.base_url, &env).unwrap_or_default(),
    ))
}

#[derive(Debug, Deserialize)]
struct DelayQuery {
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
        "skip" => {
            state
                .environments
                .reschedule_action(&env, name, None, &caller.user)
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        "delay" => {
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
                .reschedule_action(&env, name, Some(&at), &caller.user)
                .await?;
            let v = views::delete_action(&state.config.base_url, &env).unwrap_or_default();
            Ok(Json(v).into_response())
        }
        other => Err(ApiError::not_found(
            "ActionNotFound",
            format!("'{other}' is not an action verb: expected '{name}:skip' or '{name}:delay'"),
        )),
    }
}

async fn get_operation_status(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, o)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
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

fn environment_type_json(state: &AppState, t: &slipway_store::ProjectEnvironmentType) -> Value {
    json!({
        "uri": format!("{}/projects/{}/environmentTypes/{}", state.config.base_url, t.project, t.name),
        "name": t.name,
        "displayName": t.display_name,
        "deploymentTargetId": t.deployment_target_id,
        "status": t.status,
    })
}

async fn list_environment_types(
    State(state): State<AppState>,
    caller: Caller,
    Path(p): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    let value: Vec<Value> = state
        .store
        .list_project_environment_types(&p)
        .await?
        .iter()
        .map(|t| environment_type_json(&state, t))
        .collect();
    Ok(Json(json!({ "value": value })))
}

async fn get_environment_type(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, t)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    let pet = require_pet(&state, &p, &t).await?;
    Ok(Json(environment_type_json(&state, &pet)))
}

fn catalog_json(state: &AppState, project: &str, c: &slipway_store::Catalog) -> Value {
    json!({
        "uri": format!("{}/projects/{project}/catalogs/{}", state.config.base_url, c.name),
        "name": c.name,
    })
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

async fn list_catalogs(
    State(state): State<AppState>,
    caller: Caller,
    Path(p): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    let value: Vec<Value> = state
        .store
        .catalogs_for_project(&p)
        .await?
        .iter()
        .map(|c| catalog_json(&state, &p, c))
        .collect();
    Ok(Json(json!({ "value": value })))
}

async fn get_catalog(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, c)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    let cat = visible_catalog(&state, &p, &c).await?;
    Ok(Json(catalog_json(&state, &p, &cat)))
}

async fn list_all_definitions(
    State(state): State<AppState>,
    caller: Caller,
    Path(p): Path<String>,
) -> ApiResult<Json<Value>> {
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
    Ok(Json(json!({ "value": value })))
}

async fn list_catalog_definitions(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, c)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    visible_catalog(&state, &p, &c).await?;
    let value: Vec<Value> = state
        .store
        .list_definitions(Some(&c))
        .await?
        .iter()
        .filter(|d| d.is_valid())
        .map(|d| views::definition(&state.config.base_url, &p, d))
        .collect();
    Ok(Json(json!({ "value": value })))
}

async fn get_definition(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, c, d)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    let def = visible_definition(&state, &p, &c, &d).await?;
    Ok(Json(views::definition(&state.config.base_url, &p, &def)))
}
