//! An environment's scheduled `Delete` action: list, read, `:skip`, `:delay`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use slipway_store::EnvironmentRecord;
use slipway_wire::ade::paths::{ActionPath, EnvironmentPath};
use slipway_wire::ade::{EnvironmentAction, Paged};
use slipway_wire::CloudError;
use utoipa::IntoParams;

use super::{manageable_environment, readable_environment};
use crate::admin::future_time;
use crate::auth::Caller;
use crate::views;
use crate::{ApiError, ApiResult, AppState};

/// Lists an environment's scheduled actions.
#[utoipa::path(get, path = "/projects/{projectName}/users/{userId}/environments/{environmentName}/actions", tag = "environments", params(EnvironmentPath), responses((status = 200, description = "Its scheduled actions", body = Paged<EnvironmentAction>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
pub(crate) async fn list_actions(
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
pub(crate) async fn get_action(
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
pub(crate) struct DelayQuery {
    /// When the action should run instead (RFC 3339, in the future).
    until: Option<String>,
}

/// `POST …/actions/{a}:skip` (204) and `POST …/actions/{a}:delay?until=` (200 action).
pub(crate) async fn action_action(
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
pub(crate) async fn skip_action(
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
pub(crate) async fn delay_action(
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
pub(crate) fn delete_action_view(
    state: &AppState,
    env: &EnvironmentRecord,
) -> ApiResult<EnvironmentAction> {
    views::delete_action(&state.config.base_url, env).ok_or_else(|| {
        ApiError::not_found(
            "ActionNotFound",
            format!("environment '{}' has no scheduled action", env.name),
        )
    })
}
