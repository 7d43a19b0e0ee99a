//! Operations of an environment: list, read, cancel (`…:cancel`), logs, and
//! the operation status an `Operation-Location` names.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use slipway_core::access::Permission;
use slipway_core::echo::truncate as truncate_echo;
use slipway_store::OperationRecord;
use slipway_wire::ade::paths::{EnvironmentPath, OperationPath, OperationStatusPath};
use slipway_wire::ade::{EnvironmentOperation, OperationDetails, Paged};
use slipway_wire::CloudError;

use super::readable_environment;
use crate::auth::Caller;
use crate::logs::{self, LogQuery};
use crate::views::{self, environment_path};
use crate::{ApiError, ApiResult, AppState};

/// Finds operation `op_id` of environment `name` and checks the caller may
/// read it (`manage`: change it). Operations stay readable after a
/// successful delete removed the environment (so a client following a
/// delete can read its log to the end); then the requester must be the user
/// who queued the operation or a Project Admin.
pub(crate) async fn require_operation(
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
pub(crate) async fn list_operations(
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
pub(crate) async fn get_operation(
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
pub(crate) async fn operation_action(
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
pub(crate) async fn get_logs(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, u, e, o)): Path<(String, String, String, String)>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let (op, _) = require_operation(&state, &caller, &p, &u, &e, &o, false).await?;
    let ended = logs::ended(
        state.store.clone(),
        logs::RunRecord::Operation(op.id.clone()),
    );
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

/// Reads an operation's status (`Operation-Location`).
#[utoipa::path(get, path = "/projects/{projectName}/operationstatuses/{operationId}", tag = "environments", params(OperationStatusPath), responses((status = 200, description = "The operation's status", body = OperationDetails), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
pub(crate) async fn get_operation_status(
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
