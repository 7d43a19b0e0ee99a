//! ADE data-plane routes (reference `ade.md` §5.1).
//!
//! `userId` may be `me`: the requesting user, taken from the `X-Slipway-User`
//! header, else the server's default user.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use slipway_core::names::validate_resource_name;
use slipway_core::{resolve_parameters, OperationKind};
use slipway_store::{DefinitionRecord, EnvironmentRecord, NewOperation, OperationRecord};

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
                .delete(delete_environment),
        )
        .route(
            "/projects/{p}/users/{u}/environments/{e}/operations",
            get(list_operations),
        )
        .route(
            "/projects/{p}/users/{u}/environments/{e}/operations/{o}",
            get(get_operation),
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
            "/projects/{p}/operationstatuses/{o}",
            get(get_operation_status),
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

/// The user a request acts as.
pub fn request_user(state: &AppState, headers: &HeaderMap) -> String {
    headers
        .get("x-slipway-user")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| state.config.default_user.clone())
}

fn resolve_user(state: &AppState, headers: &HeaderMap, user: &str) -> String {
    if user == "me" {
        request_user(state, headers)
    } else {
        user.to_string()
    }
}

async fn require_project(state: &AppState, project: &str) -> ApiResult<slipway_store::Project> {
    state.store.get_project(project).await?.ok_or_else(|| {
        ApiError::not_found("ProjectNotFound", format!("project '{project}' not found"))
    })
}

/// Loads an environment owned by `user` in `project`, or 404.
pub async fn require_environment(
    state: &AppState,
    project: &str,
    user: &str,
    name: &str,
) -> ApiResult<EnvironmentRecord> {
    match state.store.get_environment(project, name).await? {
        Some(env) if env.owner == user => Ok(env),
        _ => Err(ApiError::not_found(
            "EnvironmentNotFound",
            format!("environment '{name}' of user '{user}' not found in project '{project}'"),
        )),
    }
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

async fn list_project_environments(
    State(state): State<AppState>,
    Path(p): Path<String>,
) -> ApiResult<Json<Value>> {
    require_project(&state, &p).await?;
    let mut value = Vec::new();
    for env in state.store.list_environments(&p, None).await? {
        value.push(env_json(&state, &env).await?);
    }
    Ok(Json(json!({ "value": value })))
}

async fn list_user_environments(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((p, u)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    require_project(&state, &p).await?;
    let user = resolve_user(&state, &headers, &u);
    let mut value = Vec::new();
    for env in state.store.list_environments(&p, Some(&user)).await? {
        value.push(env_json(&state, &env).await?);
    }
    Ok(Json(json!({ "value": value })))
}

async fn get_environment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((p, u, e)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let user = resolve_user(&state, &headers, &u);
    let env = require_environment(&state, &p, &user, &e).await?;
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
}

fn required_field(v: Option<String>, field: &str) -> ApiResult<String> {
    v.filter(|s| !s.is_empty()).ok_or_else(|| {
        ApiError::bad_request("MissingProperty", format!("property '{field}' is required"))
    })
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

/// Stores the environment and queues an operation of `kind` with the
/// runner image the definition names, then wakes the scheduler. Returns the operation id.
async fn queue_operation(
    state: &AppState,
    env: &EnvironmentRecord,
    exists: bool,
    kind: OperationKind,
    user: String,
    definition: DefinitionRecord,
) -> ApiResult<String> {
    let runner_image = state
        .config
        .runner_images
        .resolve(definition.manifest.runner.as_deref());
    let op_id = state
        .store
        .enqueue_operation(&NewOperation {
            environment: env.clone(),
            environment_exists: exists,
            kind,
            created_by: user,
            definition,
            runner_image,
        })
        .await?;
    state.scheduler.wake();
    Ok(op_id)
}

async fn put_environment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((p, u, e)): Path<(String, String, String)>,
    body: Result<Json<EnvironmentBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Response> {
    let Json(body) =
        body.map_err(|r| ApiError::bad_request("InvalidRequestBody", r.body_text()))?;
    validate_resource_name("environment", &e)
        .map_err(|err| ApiError::bad_request("InvalidEnvironmentName", err.to_string()))?;
    require_project(&state, &p).await?;
    let user = resolve_user(&state, &headers, &u);
    let env_type = required_field(body.environment_type, "environmentType")?;
    let catalog = required_field(body.catalog_name, "catalogName")?;
    let def_name = required_field(
        body.environment_definition_name,
        "environmentDefinitionName",
    )?;
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
    let existing = state.store.get_environment(&p, &e).await?;
    if let Some(env) = &existing {
        if env.owner != user {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "EnvironmentNameInUse",
                format!(
                    "environment '{e}' already exists in project '{p}' and belongs to another user"
                ),
            ));
        }
        for (field, old, new) in [
            ("environmentType", &env.environment_type, &env_type),
            ("catalogName", &env.catalog, &catalog),
            ("environmentDefinitionName", &env.definition, &def_name),
        ] {
            if old != new {
                return Err(ApiError::bad_request(
                    "PropertyChangeNotAllowed",
                    format!("property '{field}' can only be set at creation: environment '{e}' has '{old}', request has '{new}'"),
                ));
            }
        }
    }
    let pet = state
        .store
        .get_project_environment_type(&p, &env_type)
        .await?
        .ok_or_else(|| {
            ApiError::bad_request(
                "EnvironmentTypeNotFound",
                format!("environment type '{env_type}' is not enabled for project '{p}'"),
            )
        })?;
    if pet.status != "Enabled" {
        return Err(ApiError::bad_request(
            "EnvironmentTypeDisabled",
            format!("environment type '{env_type}' is disabled in project '{p}'"),
        ));
    }
    let definition = visible_definition(&state, &p, &catalog, &def_name)
        .await
        .map_err(|mut e| {
            e.status = StatusCode::BAD_REQUEST;
            e
        })?;
    let parameters =
        resolve_parameters(&definition.manifest.parameters, &supplied).map_err(|errs| {
            let mut err = ApiError::bad_request(
                "ParameterValueInvalid",
                errs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            err.details = errs
            .iter()
            .map(|e| json!({"code": e.code(), "message": e.to_string(), "target": e.parameter()}))
            .collect();
            err
        })?;
    let exists = existing.is_some();
    let env = EnvironmentRecord {
        id: existing
            .as_ref()
            .map(|x| x.id.clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        project: p.clone(),
        name: e.clone(),
        owner: user.clone(),
        environment_type: env_type,
        catalog,
        definition: def_name,
        parameters,
        provisioning_state: slipway_core::ProvisioningState::on_queued(
            OperationKind::Deploy,
            exists,
        ),
        error: None,
    };
    let op_id = queue_operation(
        &state,
        &env,
        exists,
        OperationKind::Deploy,
        user,
        definition,
    )
    .await?;
    let path = environment_path(&env);
    let stored = state.store.get_environment(&p, &e).await?.unwrap_or(env);
    let body = env_json(&state, &stored).await?;
    Ok((
        StatusCode::CREATED,
        operation_headers(&state, &p, &op_id, &path),
        Json(body),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    force: Option<bool>,
}

async fn delete_environment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((p, u, e)): Path<(String, String, String)>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<Response> {
    let user = resolve_user(&state, &headers, &u);
    let env = require_environment(&state, &p, &user, &e).await?;
    // The current definition if it still exists, else the one the last operation ran with.
    let definition: DefinitionRecord = match state
        .store
        .get_definition(&env.catalog, &env.definition)
        .await?
        .filter(DefinitionRecord::is_valid)
    {
        Some(d) => d,
        None => {
            let last = state
                .store
                .list_operations(&env.id)
                .await?
                .into_iter()
                .next();
            match last {
                Some(op) => op.definition,
                None => {
                    return Err(ApiError::bad_request(
                        "EnvironmentDefinitionNotFound",
                        format!(
                            "environment definition '{}' no longer exists in catalog '{}'",
                            env.definition, env.catalog
                        ),
                    ))
                }
            }
        }
    };
    let _ = q.force; // Force delete lands with the governance work; a normal delete runs here.
    let op_id =
        queue_operation(&state, &env, true, OperationKind::Delete, user, definition).await?;
    let path = environment_path(&env);
    let op = state.store.get_operation(&op_id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "queued operation vanished",
        )
    })?;
    let body = views::operation_status(&state.config.base_url, &op, &path);
    Ok((
        StatusCode::ACCEPTED,
        operation_headers(&state, &p, &op_id, &path),
        Json(body),
    )
        .into_response())
}

/// Finds operation `op_id` of environment `name`. Operations stay readable
/// after a successful delete removed the environment (so a client following
/// a delete can read its log to the end); then the requester must be the
/// user who queued the operation.
async fn require_operation(
    state: &AppState,
    project: &str,
    user: &str,
    name: &str,
    op_id: &str,
) -> ApiResult<(OperationRecord, String)> {
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
            Ok((op, environment_path(&env)))
        }
        None if op.created_by == user => {
            let path = format!("/projects/{project}/users/{user}/environments/{name}");
            Ok((op, path))
        }
        _ => Err(not_found()),
    }
}

async fn list_operations(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((p, u, e)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let user = resolve_user(&state, &headers, &u);
    let env = require_environment(&state, &p, &user, &e).await?;
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
    headers: HeaderMap,
    Path((p, u, e, o)): Path<(String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let user = resolve_user(&state, &headers, &u);
    let (op, path) = require_operation(&state, &p, &user, &e, &o).await?;
    Ok(Json(views::operation(&state.config.base_url, &path, &op)))
}

#[derive(Debug, Deserialize)]
struct LogQuery {
    /// Byte offset to start from (for following a growing log).
    #[serde(default)]
    offset: Option<usize>,
}

async fn get_logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((p, u, e, o)): Path<(String, String, String, String)>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let user = resolve_user(&state, &headers, &u);
    let (op, _) = require_operation(&state, &p, &user, &e, &o).await?;
    let log = state
        .store
        .blobs
        .get(&slipway_store::Store::log_key(&op.id))
        .await?
        .unwrap_or_default();
    let start = q.offset.unwrap_or(0).min(log.len());
    let mut h = HeaderMap::new();
    h.insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(op.status.as_str()) {
        h.insert("x-slipway-operation-status", v);
    }
    Ok((StatusCode::OK, h, log[start..].to_vec()).into_response())
}

async fn get_outputs(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((p, u, e)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let user = resolve_user(&state, &headers, &u);
    let env = require_environment(&state, &p, &user, &e).await?;
    let outputs = match state
        .store
        .blobs
        .get(&slipway_store::Store::outputs_key(&env.id))
        .await?
    {
        Some(bytes) => serde_json::from_slice::<Value>(&bytes).unwrap_or_else(|_| json!({})),
        None => json!({}),
    };
    Ok(Json(json!({ "outputs": outputs })))
}

async fn get_operation_status(
    State(state): State<AppState>,
    Path((p, o)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    match state.store.get_operation(&o).await? {
        Some(op) if op.project == p => {
            let path = format!(
                "/projects/{}/users/{}/environments/{}",
                op.project, op.created_by, op.environment_name
            );
            Ok(Json(views::operation_status(
                &state.config.base_url,
                &op,
                &path,
            )))
        }
        _ => Err(ApiError::not_found(
            "OperationNotFound",
            format!("operation '{o}' not found in project '{p}'"),
        )),
    }
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
    match state.store.get_catalog(catalog).await? {
        Some(c) if c.spec.project.as_deref().is_none_or(|o| o == project) => Ok(c),
        _ => Err(ApiError::not_found(
            "CatalogNotFound",
            format!("catalog '{catalog}' not found in project '{project}'"),
        )),
    }
}

/// A deployable definition of a catalog visible in `project`, or 404 naming
/// why (missing, or rejected by the last sync with its first error).
pub async fn visible_definition(
    state: &AppState,
    project: &str,
    catalog: &str,
    name: &str,
) -> ApiResult<DefinitionRecord> {
    visible_catalog(state, project, catalog).await?;
    match state.store.get_definition(catalog, name).await? {
        Some(d) if d.is_valid() => Ok(d),
        Some(d) => {
            let reason = d
                .error_details
                .first()
                .and_then(|e| e["message"].as_str())
                .unwrap_or("validation failed");
            Err(ApiError::not_found(
                "EnvironmentDefinitionInvalid",
                format!("environment definition '{name}' in catalog '{catalog}' failed validation at the last sync: {reason}"),
            ))
        }
        None => Err(ApiError::not_found(
            "EnvironmentDefinitionNotFound",
            format!("environment definition '{name}' not found in catalog '{catalog}'"),
        )),
    }
}

async fn list_catalogs(
    State(state): State<AppState>,
    Path(p): Path<String>,
) -> ApiResult<Json<Value>> {
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
    Path((p, c)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    require_project(&state, &p).await?;
    let cat = visible_catalog(&state, &p, &c).await?;
    Ok(Json(catalog_json(&state, &p, &cat)))
}

async fn list_all_definitions(
    State(state): State<AppState>,
    Path(p): Path<String>,
) -> ApiResult<Json<Value>> {
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
    Path((p, c)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
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
    Path((p, c, d)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    require_project(&state, &p).await?;
    let def = visible_definition(&state, &p, &c, &d).await?;
    Ok(Json(views::definition(&state.config.base_url, &p, &def)))
}
