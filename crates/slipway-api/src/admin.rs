//! Control plane under `/admin`: projects, environment types, project
//! environment types (reference `ade.md` §5.3), role assignments, API tokens
//! and the audit log.
//!
//! | method, path | body | needs |
//! |---|---|---|
//! | `GET /admin/projects` | | any token (lists the projects one has a role in) |
//! | `PUT /admin/projects/{p}` | `{description?, location?}` | DevCenter Admin (create), Project Admin (update) |
//! | `GET /admin/environmentTypes`, `PUT`/`DELETE /admin/environmentTypes/{t}` | `{displayName?}` | any token / DevCenter Admin |
//! | `GET /admin/projects/{p}/environmentTypes[/{t}]` | | any role in `p` |
//! | `PUT /admin/projects/{p}/environmentTypes/{t}` | [`PetBody`] (flat or under `properties`) | Project Admin |
//! | `DELETE /admin/projects/{p}/environmentTypes/{t}` | | Project Admin; 409 while environments of the type exist |
//! | `GET /admin/roleAssignments[?project=]`, `POST /admin/roleAssignments`, `DELETE /admin/roleAssignments/{id}` | `{principalId, role, scope}` | admin of the scope |
//! | `GET /admin/tokens[?user=]`, `POST /admin/tokens`, `DELETE /admin/tokens/{id}` | `{user?, name?, expiresAt?, expiresInDays?}` | oneself, or DevCenter Admin for anyone |
//! | `GET /audit?project=&user=&since=&until=&top=` | | DevCenter Admin; Project Admin with `project` |
//!
//! Catalogs, definitions and secrets: [`crate::catalogs`].

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, put};
use axum::Json;
use serde::Deserialize;
use serde_json::{Map, Value};
use slipway_core::access::{token_expiry, Permission, Role, Scope};
use slipway_core::names::validate_resource_name;
use slipway_store::{AuditFilter, ProjectEnvironmentType};
use slipway_wire::admin::{
    AuditEvent, DevCenterEnvironmentType, EnvironmentTypeRequest, IssuedToken, Project,
    ProjectEnvironmentType as ProjectEnvironmentTypeView, ProjectEnvironmentTypeRequest,
    ProjectRequest, RoleAssignment, RoleAssignmentRequest, RoleMap, TokenMeta, TokenRequest,
};
use slipway_wire::Paged;

use crate::auth::Caller;
use crate::routing::Routes;
use crate::{ApiError, ApiResult, AppState};
use slipway_wire::CloudError;

/// Admin routes.
pub fn routes() -> Routes {
    Routes::new()
        .route("/admin/projects", get(list_projects))
        .route("/admin/projects/{p}", put(put_project))
        .route("/admin/environmentTypes", get(list_environment_types))
        .route(
            "/admin/environmentTypes/{t}",
            put(put_environment_type).delete(delete_environment_type),
        )
        .route(
            "/admin/projects/{p}/environmentTypes",
            get(list_project_environment_types),
        )
        .route(
            "/admin/projects/{p}/environmentTypes/{t}",
            put(put_project_environment_type)
                .get(get_project_environment_type)
                .delete(delete_project_environment_type),
        )
        .route(
            "/admin/roleAssignments",
            get(list_role_assignments).post(post_role_assignment),
        )
        .route(
            "/admin/roleAssignments/{id}",
            delete(delete_role_assignment),
        )
        .route("/admin/tokens", get(list_tokens).post(post_token))
        .route("/admin/tokens/{id}", delete(revoke_token))
        .route("/audit", get(list_audit))
}

pub(crate) type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

pub(crate) fn body<T>(b: JsonBody<T>) -> ApiResult<T> {
    b.map(|Json(v)| v)
        .map_err(|r| ApiError::bad_request("InvalidRequestBody", r.body_text()))
}

fn name_ok(kind: &'static str, v: &str) -> ApiResult<()> {
    validate_resource_name(kind, v).map_err(|e| ApiError::bad_request("InvalidName", e.to_string()))
}

/// Parses an RFC 3339 time into the store's form (UTC, milliseconds).
///
/// Errors: 400 naming `field` and the value.
pub(crate) fn rfc3339(field: &str, v: &str) -> ApiResult<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| {
            ApiError::bad_request(
                "InvalidDateTime",
                format!("property '{field}' is '{v}': expected an RFC 3339 date-time such as 2026-12-31T17:00:00Z ({e})"),
            )
        })
}

/// Parses an RFC 3339 time that must lie in the future; returns the store's
/// form. `label` names the input in the message (`property 'expiresAt'`).
///
/// Errors: 400 `code` for a past time, as [`rfc3339`] for a malformed one.
pub(crate) fn future_time(code: &str, field: &str, label: &str, v: &str) -> ApiResult<String> {
    let t = rfc3339(field, v)?;
    if t <= chrono::Utc::now() {
        return Err(ApiError::bad_request(
            code,
            format!("{label} is '{v}': expected a time in the future"),
        ));
    }
    Ok(stored_time(t))
}

/// The store's text form of a time.
pub(crate) fn stored_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) async fn require_project(state: &AppState, project: &str) -> ApiResult<Project> {
    state.store.get_project(project).await?.ok_or_else(|| {
        ApiError::not_found("ProjectNotFound", format!("project '{project}' not found"))
    })
}

// ----- projects -----

/// Creates or updates a project.
#[utoipa::path(put, path = "/admin/projects/{p}", tag = "admin", params(("p" = String, Path, description = "Project")), request_body = ProjectRequest, responses((status = 200, description = "Updated", body = Project), (status = 201, description = "Created", body = Project), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn put_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(p): Path<String>,
    b: JsonBody<ProjectRequest>,
) -> ApiResult<(StatusCode, Json<Project>)> {
    name_ok("project", &p)?;
    let existing = state.store.get_project(&p).await?;
    caller.require(match existing {
        Some(_) => Permission::AdministerProject(p.clone()),
        None => Permission::AdministerDevCenter,
    })?;
    let b = body(b)?;
    let project = Project {
        name: p,
        description: b.description,
        location: b.location.unwrap_or_else(|| "local".into()),
    };
    state.store.put_project(&project).await?;
    Ok((StatusCode::OK, Json(project)))
}

/// Lists projects.
#[utoipa::path(get, path = "/admin/projects", tag = "admin", responses((status = 200, description = "Projects", body = Paged<Project>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_projects(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Paged<Project>>> {
    let value: Vec<Project> = state
        .store
        .list_projects()
        .await?
        .into_iter()
        .filter(|p| caller.can(&Permission::ReadProject(p.name.clone())))
        .collect();
    Ok(Json(Paged::all(value)))
}

// ----- environment types -----

/// Creates or updates a dev-center environment type.
#[utoipa::path(put, path = "/admin/environmentTypes/{t}", tag = "admin", params(("t" = String, Path, description = "Environment type")), request_body = EnvironmentTypeRequest, responses((status = 200, description = "The environment type", body = DevCenterEnvironmentType), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn put_environment_type(
    State(state): State<AppState>,
    caller: Caller,
    Path(t): Path<String>,
    b: JsonBody<EnvironmentTypeRequest>,
) -> ApiResult<Json<DevCenterEnvironmentType>> {
    caller.require(Permission::AdministerDevCenter)?;
    name_ok("environment type", &t)?;
    let b = body(b)?;
    state
        .store
        .put_environment_type(&t, b.display_name.as_deref())
        .await?;
    Ok(Json(DevCenterEnvironmentType {
        name: t,
        display_name: b.display_name,
    }))
}

/// Lists dev-center environment types.
#[utoipa::path(get, path = "/admin/environmentTypes", tag = "admin", responses((status = 200, description = "Dev-center environment types", body = Paged<DevCenterEnvironmentType>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_environment_types(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<Paged<DevCenterEnvironmentType>>> {
    Ok(Json(Paged::all(
        state.store.list_environment_types().await?,
    )))
}

/// Deletes a dev-center environment type.
#[utoipa::path(delete, path = "/admin/environmentTypes/{t}", tag = "admin", params(("t" = String, Path, description = "Environment type")), responses((status = 204, description = "Deleted"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn delete_environment_type(
    State(state): State<AppState>,
    caller: Caller,
    Path(t): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Permission::AdministerDevCenter)?;
    if state.store.delete_environment_type(&t).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "EnvironmentTypeNotFound",
            format!("environment type '{t}' not found"),
        ))
    }
}

// ----- project environment types -----

fn bad_pet(m: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("InvalidProjectEnvironmentType", m.to_string())
}

async fn pet_view(
    state: &AppState,
    t: &slipway_store::ProjectEnvironmentType,
) -> ApiResult<ProjectEnvironmentTypeView> {
    let scope = Scope::EnvironmentType(t.project.clone(), t.name.clone());
    let mut users: BTreeMap<String, RoleMap> = BTreeMap::new();
    for a in state.store.assignments_at(&scope).await? {
        users
            .entry(a.principal_id)
            .or_default()
            .roles
            .insert(a.role, Value::Object(Map::new()));
    }
    for (principal, roles) in &t.azure_user_roles {
        let entry = users.entry(principal.clone()).or_default();
        for r in roles {
            entry.roles.insert(r.clone(), Value::Object(Map::new()));
        }
    }
    let creator = RoleMap {
        roles: t
            .creator_roles
            .iter()
            .map(|r| (r.clone(), Value::Object(Map::new())))
            .collect(),
    };
    let count = state
        .store
        .count_environments(&t.project, &t.name, None)
        .await?;
    Ok(ProjectEnvironmentTypeView {
        name: t.name.clone(),
        project: t.project.clone(),
        deployment_target_id: t.deployment_target_id.clone(),
        status: t.status.clone(),
        display_name: t.display_name.clone(),
        creator_role_assignment: creator,
        user_role_assignments: users,
        deployment_identity: t.deployment_identity.clone(),
        limits: t.limits.clone(),
        runner_policy: t.runner_policy.clone(),
        environment_count: count,
        provisioning_state: "Succeeded".to_string(),
    })
}

/// Creates or updates a project environment type.
#[utoipa::path(put, path = "/admin/projects/{p}/environmentTypes/{t}", tag = "admin", params(("p" = String, Path, description = "Project"), ("t" = String, Path, description = "Environment type")), request_body = ProjectEnvironmentTypeRequest, responses((status = 200, description = "The project environment type", body = ProjectEnvironmentTypeView), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn put_project_environment_type(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, t)): Path<(String, String)>,
    b: JsonBody<Value>,
) -> ApiResult<Json<ProjectEnvironmentTypeView>> {
    caller.require(Permission::AdministerProject(p.clone()))?;
    let raw = body(b)?;
    // ADE's `{"properties": {...}}` envelope is accepted too.
    let raw = match raw.get("properties") {
        Some(props) if raw.as_object().is_some_and(|o| o.len() == 1) => props.clone(),
        _ => raw,
    };
    let request: ProjectEnvironmentTypeRequest =
        serde_json::from_value(raw).map_err(|e| bad_pet(e.to_string()))?;
    let pet = state
        .environments
        .put_project_environment_type(&p, &t, request)
        .await?;
    Ok(Json(pet_view(&state, &pet).await?))
}

pub(crate) async fn require_pet(
    state: &AppState,
    p: &str,
    t: &str,
) -> ApiResult<ProjectEnvironmentType> {
    state
        .store
        .get_project_environment_type(p, t)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "EnvironmentTypeNotFound",
                format!("environment type '{t}' is not enabled for project '{p}'"),
            )
        })
}

/// Reads a project environment type.
#[utoipa::path(get, path = "/admin/projects/{p}/environmentTypes/{t}", tag = "admin", params(("p" = String, Path, description = "Project"), ("t" = String, Path, description = "Environment type")), responses((status = 200, description = "The project environment type", body = ProjectEnvironmentTypeView), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn get_project_environment_type(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, t)): Path<(String, String)>,
) -> ApiResult<Json<ProjectEnvironmentTypeView>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    let pet = require_pet(&state, &p, &t).await?;
    Ok(Json(pet_view(&state, &pet).await?))
}

/// Lists a project's environment types.
#[utoipa::path(get, path = "/admin/projects/{p}/environmentTypes", tag = "admin", params(("p" = String, Path, description = "Project")), responses((status = 200, description = "Project environment types", body = Paged<ProjectEnvironmentTypeView>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_project_environment_types(
    State(state): State<AppState>,
    caller: Caller,
    Path(p): Path<String>,
) -> ApiResult<Json<Paged<ProjectEnvironmentTypeView>>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    let mut value = Vec::new();
    for t in state.store.list_project_environment_types(&p).await? {
        value.push(pet_view(&state, &t).await?);
    }
    Ok(Json(Paged::all(value)))
}

/// Deletes a project environment type without environments.
#[utoipa::path(delete, path = "/admin/projects/{p}/environmentTypes/{t}", tag = "admin", params(("p" = String, Path, description = "Project"), ("t" = String, Path, description = "Environment type")), responses((status = 204, description = "Deleted"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn delete_project_environment_type(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, t)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require(Permission::AdministerProject(p.clone()))?;
    if state.store.delete_project_environment_type(&p, &t).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "EnvironmentTypeNotFound",
            format!("environment type '{t}' is not enabled for project '{p}'"),
        ))
    }
}

// ----- role assignments -----

/// The permission that administers assignments at `scope`.
fn administers(scope: &Scope) -> Permission {
    match scope.project() {
        None => Permission::AdministerDevCenter,
        Some(p) => Permission::AdministerProject(p.to_string()),
    }
}

/// Assigns a role at a scope.
#[utoipa::path(post, path = "/admin/roleAssignments", tag = "admin", request_body = RoleAssignmentRequest, responses((status = 201, description = "The role assignment", body = RoleAssignment), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn post_role_assignment(
    State(state): State<AppState>,
    caller: Caller,
    b: JsonBody<RoleAssignmentRequest>,
) -> ApiResult<(StatusCode, Json<RoleAssignment>)> {
    let b = body(b)?;
    let bad = |m: String| ApiError::bad_request("InvalidRoleAssignment", m);
    let scope = Scope::parse(&b.scope).map_err(|e| bad(format!("property 'scope': {e}")))?;
    let role = Role::parse(&b.role).map_err(|e| bad(format!("property 'role': {e}")))?;
    // DevCenter Admin is granted by DevCenter Admins; the others by whoever
    // administers the scope.
    let need = if role == Role::DevCenterAdmin {
        Permission::AdministerDevCenter
    } else {
        administers(&scope)
    };
    caller.require(need)?;
    let a = state
        .environments
        .assign_role(&b.principal_id, role, &scope)
        .await?;
    Ok((StatusCode::CREATED, Json(a)))
}

/// Query of the listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ProjectQuery {
    project: Option<String>,
}

/// Lists role assignments.
#[utoipa::path(get, path = "/admin/roleAssignments", tag = "admin", params(ProjectQuery), responses((status = 200, description = "Role assignments", body = Paged<RoleAssignment>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_role_assignments(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ProjectQuery>,
) -> ApiResult<Json<Paged<RoleAssignment>>> {
    caller.require(match &q.project {
        Some(p) => Permission::AdministerProject(p.clone()),
        None => Permission::AdministerDevCenter,
    })?;
    let value = state
        .store
        .list_role_assignments(q.project.as_deref())
        .await?;
    Ok(Json(Paged::all(value)))
}

/// Removes a role assignment.
#[utoipa::path(delete, path = "/admin/roleAssignments/{id}", tag = "admin", params(("id" = String, Path, description = "Id")), responses((status = 204, description = "Removed"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn delete_role_assignment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let not_found = || {
        ApiError::not_found(
            "RoleAssignmentNotFound",
            format!("role assignment '{id}' not found"),
        )
    };
    let a = state
        .store
        .get_role_assignment(&id)
        .await?
        .ok_or_else(not_found)?;
    let scope = Scope::parse(&a.scope).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        )
    })?;
    caller.require(if a.role == Role::DevCenterAdmin.as_str() {
        Permission::AdministerDevCenter
    } else {
        administers(&scope)
    })?;
    state.store.delete_role_assignment(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- tokens -----

/// Issues an API token.
#[utoipa::path(post, path = "/admin/tokens", tag = "admin", request_body = TokenRequest, responses((status = 201, description = "The token; its secret is shown once", body = IssuedToken), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn post_token(
    State(state): State<AppState>,
    caller: Caller,
    b: JsonBody<TokenRequest>,
) -> ApiResult<(StatusCode, Json<IssuedToken>)> {
    let b = body(b)?;
    let user = b.user.unwrap_or_else(|| caller.user.clone());
    if user != caller.user {
        caller.require(Permission::AdministerDevCenter)?;
    }
    let expires_at = b
        .expires_at
        .as_deref()
        .map(|at| rfc3339("expiresAt", at))
        .transpose()?;
    let expires = token_expiry(&user, expires_at, b.expires_in_days, chrono::Utc::now())
        .map_err(|e| ApiError::bad_request("InvalidToken", e.to_string()))?
        .map(stored_time);
    let (meta, token) = state
        .store
        .create_token(&user, b.name.as_deref(), expires.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(IssuedToken { meta, token })))
}

/// Query of the listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UserQuery {
    user: Option<String>,
}

/// Lists API tokens.
#[utoipa::path(get, path = "/admin/tokens", tag = "admin", params(UserQuery), responses((status = 200, description = "Tokens (never their secrets)", body = Paged<TokenMeta>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<UserQuery>,
) -> ApiResult<Json<Paged<TokenMeta>>> {
    let user = match q.user {
        Some(u) if u != caller.user && u != "me" => {
            caller.require(Permission::AdministerDevCenter)?;
            Some(u)
        }
        None if caller.can(&Permission::AdministerDevCenter) => None,
        _ => Some(caller.user.clone()),
    };
    Ok(Json(Paged::all(
        state.store.list_tokens(user.as_deref()).await?,
    )))
}

/// Revokes an API token.
#[utoipa::path(delete, path = "/admin/tokens/{id}", tag = "admin", params(("id" = String, Path, description = "Id")), responses((status = 204, description = "Revoked"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let not_found = || ApiError::not_found("TokenNotFound", format!("token '{id}' not found"));
    let meta = state.store.get_token(&id).await?.ok_or_else(not_found)?;
    if meta.user != caller.user {
        caller.require(Permission::AdministerDevCenter)?;
    }
    if state.store.revoke_token(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "TokenRevoked",
            format!("token '{id}' was revoked already"),
        ))
    }
}

// ----- audit -----

/// Query of the listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    project: Option<String>,
    user: Option<String>,
    since: Option<String>,
    until: Option<String>,
    top: Option<u32>,
}

/// Reads the audit log.
#[utoipa::path(get, path = "/audit", tag = "admin", params(AuditQuery), responses((status = 200, description = "Audit records, newest first", body = Paged<AuditEvent>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Paged<AuditEvent>>> {
    caller.require(match &q.project {
        Some(p) => Permission::AdministerProject(p.clone()),
        None => Permission::AdministerDevCenter,
    })?;
    let since = q
        .since
        .as_deref()
        .map(|s| rfc3339("since", s).map(stored_time))
        .transpose()?;
    let until = q
        .until
        .as_deref()
        .map(|s| rfc3339("until", s).map(stored_time))
        .transpose()?;
    let filter = AuditFilter {
        project: q.project,
        user: q.user,
        since,
        until,
        limit: q.top.unwrap_or(1000).min(10_000),
    };
    Ok(Json(Paged::all(state.store.list_audit(&filter).await?)))
}
