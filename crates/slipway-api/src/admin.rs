//! Minimal control plane under `/admin`: projects, environment types and
//! project environment types.
//!
//! | method, path | body |
//! |---|---|
//! | `PUT /admin/projects/{p}` | `{description?, location?}` |
//! | `GET /admin/projects` | |
//! | `PUT /admin/environmentTypes/{t}` | `{displayName?}` |
//! | `PUT /admin/projects/{p}/environmentTypes/{t}` | `{deploymentTargetId?, status?: Enabled|Disabled}` |
//!
//! Catalogs, definitions and secrets: [`crate::catalogs`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use slipway_core::names::validate_resource_name;
use slipway_store::{Project, ProjectEnvironmentType};

use crate::{ApiError, ApiResult, AppState};

/// Admin routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/projects", get(list_projects))
        .route("/admin/projects/{p}", put(put_project))
        .route("/admin/environmentTypes/{t}", put(put_environment_type))
        .route(
            "/admin/projects/{p}/environmentTypes/{t}",
            put(put_project_environment_type),
        )
}

pub(crate) type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

pub(crate) fn body<T>(b: JsonBody<T>) -> ApiResult<T> {
    b.map(|Json(v)| v)
        .map_err(|r| ApiError::bad_request("InvalidRequestBody", r.body_text()))
}

fn name_ok(kind: &'static str, v: &str) -> ApiResult<()> {
    validate_resource_name(kind, v).map_err(|e| ApiError::bad_request("InvalidName", e.to_string()))
}

#[derive(Debug, Deserialize, Default)]
struct ProjectBody {
    description: Option<String>,
    location: Option<String>,
}

async fn put_project(
    State(state): State<AppState>,
    Path(p): Path<String>,
    b: JsonBody<ProjectBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    name_ok("project", &p)?;
    let b = body(b)?;
    let project = Project {
        name: p,
        description: b.description,
        location: b.location.unwrap_or_else(|| "local".into()),
    };
    state.store.put_project(&project).await?;
    Ok((StatusCode::OK, Json(json!(project))))
}

async fn list_projects(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "value": state.store.list_projects().await? })))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct EnvTypeBody {
    display_name: Option<String>,
}

async fn put_environment_type(
    State(state): State<AppState>,
    Path(t): Path<String>,
    b: JsonBody<EnvTypeBody>,
) -> ApiResult<Json<Value>> {
    name_ok("environment type", &t)?;
    let b = body(b)?;
    state
        .store
        .put_environment_type(&t, b.display_name.as_deref())
        .await?;
    Ok(Json(json!({"name": t, "displayName": b.display_name})))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PetBody {
    deployment_target_id: Option<String>,
    status: Option<String>,
}

async fn put_project_environment_type(
    State(state): State<AppState>,
    Path((p, t)): Path<(String, String)>,
    b: JsonBody<PetBody>,
) -> ApiResult<Json<Value>> {
    let b = body(b)?;
    if state.store.get_project(&p).await?.is_none() {
        return Err(ApiError::not_found(
            "ProjectNotFound",
            format!("project '{p}' not found"),
        ));
    }
    if !state.store.environment_type_exists(&t).await? {
        return Err(ApiError::not_found(
            "EnvironmentTypeNotFound",
            format!("environment type '{t}' is not defined at the dev center; create it with PUT /admin/environmentTypes/{t}"),
        ));
    }
    let status = b.status.unwrap_or_else(|| "Enabled".into());
    if status != "Enabled" && status != "Disabled" {
        return Err(ApiError::bad_request(
            "InvalidStatus",
            format!("property 'status' is '{status}': expected 'Enabled' or 'Disabled'"),
        ));
    }
    let pet = ProjectEnvironmentType {
        project: p,
        name: t,
        deployment_target_id: b
            .deployment_target_id
            .unwrap_or_else(|| "/subscriptions/00000000-0000-0000-0000-000000000000".into()),
        status,
    };
    state.store.put_project_environment_type(&pet).await?;
    Ok(Json(json!(pet)))
}
