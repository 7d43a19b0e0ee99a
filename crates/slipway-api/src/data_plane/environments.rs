//! Environments: list, read, create or redeploy (`PUT`), change the expiration
//! (`PATCH`), delete (also `force`), and outputs.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{Map, Value};
use slipway_core::access::Permission;
use slipway_core::names::validate_resource_name;
use slipway_environments::DeployRequest;
use slipway_wire::ade::paths::{EnvironmentPath, ProjectPath, UserPath};
use slipway_wire::ade::{
    Environment, EnvironmentOutputs, EnvironmentPatch, EnvironmentRequest, OperationDetails, Paged,
};
use slipway_wire::CloudError;
use utoipa::IntoParams;

use super::{env_json, envs_json, manageable_environment, readable_environment};
use crate::admin::{body, future_time, require_project, JsonBody};
use crate::auth::Caller;
use crate::views::{self, environment_path};
use crate::{ApiError, ApiResult, AppState};

/// Lists a project's environments the caller may read.
#[utoipa::path(get, path = "/projects/{projectName}/environments", tag = "environments", params(ProjectPath), responses((status = 200, description = "The environments the caller may read", body = Paged<Environment>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
pub(crate) async fn list_project_environments(
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
pub(crate) async fn list_user_environments(
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
pub(crate) async fn get_environment(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e)): Path<(String, String, String)>,
) -> ApiResult<Json<Environment>> {
    let env = readable_environment(&state, &caller, &p, &u, &e).await?;
    Ok(Json(env_json(&state, &env).await?))
}

pub(crate) fn required_field(v: Option<String>, field: &str) -> ApiResult<String> {
    v.filter(|s| !s.is_empty()).ok_or_else(|| {
        ApiError::bad_request("MissingProperty", format!("property '{field}' is required"))
    })
}

/// An `expirationDate` in the store's form; it must lie in the future.
pub(crate) fn future_expiration(v: &str) -> ApiResult<String> {
    future_time(
        "InvalidExpirationDate",
        "expirationDate",
        "property 'expirationDate'",
        v,
    )
}

pub(crate) fn operation_headers(
    state: &AppState,
    project: &str,
    op_id: &str,
    env_path: &str,
) -> HeaderMap {
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
pub(crate) async fn put_environment(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e)): Path<(String, String, String)>,
    body: Result<Json<EnvironmentRequest>, axum::extract::rejection::JsonRejection>,
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
pub(crate) async fn patch_environment(
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
pub(crate) struct DeleteQuery {
    /// Delete without the environment definition (ADE `2024-10-01-preview`).
    #[serde(default)]
    force: Option<bool>,
}

/// Deletes an environment (`force=true`: without its definition).
#[utoipa::path(delete, path = "/projects/{projectName}/users/{userId}/environments/{environmentName}", tag = "environments", params(EnvironmentPath, DeleteQuery), responses((status = 202, description = "Delete queued; `Operation-Location` names the operation status", body = OperationDetails), (status = 204, description = "Removed without an operation"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
pub(crate) async fn delete_environment(
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

/// Reads an environment's outputs.
#[utoipa::path(get, path = "/projects/{projectName}/users/{userId}/environments/{environmentName}/outputs", tag = "environments", params(EnvironmentPath), responses((status = 200, description = "Its outputs", body = EnvironmentOutputs), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
pub(crate) async fn get_outputs(
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
