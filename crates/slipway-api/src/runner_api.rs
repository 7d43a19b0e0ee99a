//! The runner API under `/runner/v1` (contract: `slipway_core::protocol`).
//!
//! Every call carries `Authorization: Bearer <token>`; the token's sha256
//! must match the one stored for the path's operation, and that operation
//! must be Running. Anything else is 401/403 with code `SecurityError`, so a
//! token never reaches another operation's environment, files, logs or outputs.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Json;
use serde_json::Value;
use slipway_core::credentials::subscription_of;
use slipway_core::identity::{
    ImdsError, ImdsToken, ManagedIdentityError, ManagedIdentityToken, SignInError,
    APP_SERVICE_API_VERSION, IDENTITY_HEADER, IMDS_API_VERSIONS,
};
use slipway_core::protocol::{
    validate_outputs, LogEntry, LogType, OperationResult, RunnerDefinition, RunnerEnvironment,
    RunnerIdentity,
};
use slipway_core::{ErrorBody, OperationStatus};
use slipway_runner::hash_token;
use slipway_store::{EnvironmentRecord, OperationRecord, Store};

use crate::data_plane::resource_group_id;
use crate::routing::Routes;
use crate::views::{environment_path, join_path};
use crate::{ApiError, ApiResult, AppState};
use slipway_wire::CloudError;

/// Runner routes; uploads are limited to `max_storage` bytes plus slack so an
/// oversized upload still reaches the storage check and gets exit 14.
pub fn routes(max_storage: u64) -> Routes {
    let limit = usize::try_from(max_storage)
        .unwrap_or(usize::MAX)
        .saturating_add(1 << 20);
    Routes::new()
        .route("/runner/v1/operations/{o}/environment", get(environment))
        .route("/runner/v1/operations/{o}/definition", get(definition))
        .route(
            "/runner/v1/operations/{o}/definition/content",
            get(definition_content),
        )
        .route("/runner/v1/operations/{o}/identity", get(identity))
        .route("/runner/v1/operations/{o}/msi/token", get(identity_token))
        .route(
            "/runner/v1/operations/{o}/imds/{key}/token",
            get(imds_token),
        )
        .route("/runner/v1/operations/{o}/files", get(list_files))
        .route(
            "/runner/v1/operations/{o}/files/{name}",
            get(download_file).put(upload_file),
        )
        .route("/runner/v1/operations/{o}/logs", post(append_log))
        .route("/runner/v1/operations/{o}/outputs", put(upload_outputs))
        .route("/runner/v1/operations/{o}/result", post(operation_result))
        .route("/runner/v1/operations/{o}/upgrade", get(upgrade))
        .map_router(|r| r.layer(DefaultBodyLimit::max(limit)))
}

fn security(status: StatusCode, message: &str) -> ApiError {
    ApiError::new(status, "SecurityError", message)
}

/// Checks the bearer token against operation `op_id`; returns the operation and its environment.
async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    op_id: &str,
) -> ApiResult<(OperationRecord, EnvironmentRecord)> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            security(
                StatusCode::UNAUTHORIZED,
                "missing runner token (Authorization: Bearer …)",
            )
        })?;
    authorize_token(state, token, op_id).await
}

/// Checks `token` (the operation's runner token, however it was sent)
/// against operation `op_id`; returns the operation and its environment.
async fn authorize_token(
    state: &AppState,
    token: &str,
    op_id: &str,
) -> ApiResult<(OperationRecord, EnvironmentRecord)> {
    let op = state.store.get_operation(op_id).await?.ok_or_else(|| {
        security(
            StatusCode::FORBIDDEN,
            "the runner token is not valid for this operation",
        )
    })?;
    if op.token_hash.as_deref() != Some(hash_token(token).as_str()) {
        return Err(security(
            StatusCode::FORBIDDEN,
            "the runner token is not valid for this operation",
        ));
    }
    if op.status != OperationStatus::Running {
        return Err(security(
            StatusCode::FORBIDDEN,
            "the operation is not running",
        ));
    }
    if op.result_error.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "OperationFailed",
            "the operation already reported its result; no further calls are accepted",
        ));
    }
    let env = state
        .store
        .get_environment_by_id(&op.environment_id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "EnvironmentNotFound",
                "the operation's environment no longer exists",
            )
        })?;
    Ok((op, env))
}

/// The operation's environment (`ade environment`).
#[utoipa::path(get, path = "/runner/v1/operations/{o}/environment", tag = "runner", params(("o" = String, Path, description = "Operation id (UUID)")), security(("runner" = [])), responses((status = 200, description = "The environment", body = RunnerEnvironment), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn environment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(o): Path<String>,
) -> ApiResult<Json<RunnerEnvironment>> {
    let (op, env) = authorize(&state, &headers, &o).await?;
    let location = state
        .store
        .get_project(&env.project)
        .await?
        .map(|p| p.location)
        .unwrap_or_default();
    Ok(Json(RunnerEnvironment {
        uri: format!("{}{}", state.config.base_url, environment_path(&env)),
        resource_group_id: resource_group_id(&state, &env).await?,
        name: env.name,
        environment_type: env.environment_type,
        user: env.owner,
        provisioning_state: env.provisioning_state.as_str().to_string(),
        catalog_name: env.catalog,
        environment_definition_name: env.definition,
        parameters: op.parameters,
        location,
    }))
}

/// The operation's definition (`ade definitions`).
#[utoipa::path(get, path = "/runner/v1/operations/{o}/definition", tag = "runner", params(("o" = String, Path, description = "Operation id (UUID)")), security(("runner" = [])), responses((status = 200, description = "The definition", body = RunnerDefinition), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn definition(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(o): Path<String>,
) -> ApiResult<Json<RunnerDefinition>> {
    let (op, env) = authorize(&state, &headers, &o).await?;
    let d = op.definition;
    let content_source_path = join_path(&d.catalog, &d.folder);
    Ok(Json(RunnerDefinition {
        id: format!(
            "/projects/{}/catalogs/{}/environmentDefinitions/{}",
            env.project, d.catalog, d.name
        ),
        name: d.name.clone(),
        catalog_name: d.catalog.clone(),
        description: d.manifest.description.clone(),
        parameters_schema: d.manifest.parameters_schema(),
        parameters: d.manifest.parameters.clone(),
        template_path: join_path(&content_source_path, &d.manifest.template_path),
        content_source_path,
    }))
}

/// The definition's files.
#[utoipa::path(get, path = "/runner/v1/operations/{o}/definition/content", tag = "runner", params(("o" = String, Path, description = "Operation id (UUID)")), security(("runner" = [])), responses((status = 200, description = "The definition folder as a zip", body = Vec<u8>, content_type = "application/zip"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn definition_content(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(o): Path<String>,
) -> ApiResult<Response> {
    let (op, _) = authorize(&state, &headers, &o).await?;
    let bytes = state
        .store
        .blobs
        .get(&Store::definition_key(&op.definition.content_digest))
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "DefinitionContentMissing",
                "the definition's content snapshot is missing",
            )
        })?;
    Ok(([("content-type", "application/zip")], bytes).into_response())
}

/// The deployment identity's ids.
#[utoipa::path(get, path = "/runner/v1/operations/{o}/identity", tag = "runner", params(("o" = String, Path, description = "Operation id (UUID)")), security(("runner" = [])), responses((status = 200, description = "The deployment identity", body = RunnerIdentity), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn identity(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(o): Path<String>,
) -> ApiResult<Json<RunnerIdentity>> {
    let (_, env) = authorize(&state, &headers, &o).await?;
    let rg = resource_group_id(&state, &env).await?;
    let subscription = subscription_of(&rg);
    let none = "00000000-0000-0000-0000-000000000000".to_string();
    let id = state
        .store
        .deployment_identity(&env.project, &env.environment_type, &state.secret_key)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "DeploymentIdentitySignInError",
                e.to_string(),
            )
        })?;
    Ok(Json(match id {
        Some(id) => RunnerIdentity {
            client_id: id.client_id,
            tenant_id: id.tenant_id,
            subscription_id: id.subscription_id.unwrap_or(subscription),
        },
        None => RunnerIdentity {
            client_id: none.clone(),
            tenant_id: none,
            subscription_id: subscription,
        },
    }))
}

/// Query of the managed-identity token endpoint (App Service 2019-08-01).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct TokenQuery {
    /// The resource (audience) the token is for, e.g. `https://management.azure.com/`.
    resource: Option<String>,
    /// Must be `2019-08-01`.
    #[serde(rename = "api-version")]
    api_version: Option<String>,
    /// When given, must be the deployment identity's client id.
    client_id: Option<String>,
}

/// A managed-identity token for the deployment identity of the operation's
/// project environment type (contract: `slipway_core::identity`). The
/// runner sends its own operation token as `X-IDENTITY-HEADER` (it is the
/// `IDENTITY_HEADER` Slipway sets); the identity's secret stays here.
#[utoipa::path(get, path = "/runner/v1/operations/{o}/msi/token", tag = "runner", params(("o" = String, Path, description = "Operation id (UUID)"), ("X-IDENTITY-HEADER" = String, Header, description = "The runner's IDENTITY_HEADER"), TokenQuery), responses((status = 200, description = "A token", body = ManagedIdentityToken), (status = "default", description = "App Service managed-identity error", body = ManagedIdentityError)))]
async fn identity_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(o): Path<String>,
    query: Result<axum::extract::Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match mint(&state, &headers, &o, query).await {
        Ok(token) => Json(token).into_response(),
        Err((status, message)) => (
            status,
            Json(ManagedIdentityError {
                status_code: status.as_u16(),
                message,
            }),
        )
            .into_response(),
    }
}

/// Checks the operation token and the api-version, then mints.
async fn mint(
    state: &AppState,
    headers: &HeaderMap,
    o: &str,
    query: Result<axum::extract::Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<ManagedIdentityToken, (StatusCode, String)> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let token = headers
        .get(IDENTITY_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            (
                StatusCode::UNAUTHORIZED,
                "missing X-IDENTITY-HEADER: send the runner's IDENTITY_HEADER".to_string(),
            )
        })?;
    let (_, env) = authorize_token(state, token, o)
        .await
        .map_err(|e| (e.status, e.message))?;
    let axum::extract::Query(q) = query.map_err(|e| bad(format!("query: {}", e.body_text())))?;
    check_api_version(q.api_version.as_deref(), &[APP_SERVICE_API_VERSION])?;
    let (minted, resource, client_id) = mint_for(state, &env, &q).await?;
    Ok(ManagedIdentityToken {
        access_token: minted.access_token,
        expires_on: minted.expires_on.to_string(),
        resource,
        token_type: "Bearer".into(),
        client_id,
    })
}

/// `api-version` is one of `accepted`, else 400 naming them.
fn check_api_version(given: Option<&str>, accepted: &[&str]) -> Result<(), (StatusCode, String)> {
    match given {
        Some(v) if accepted.contains(&v) => Ok(()),
        Some(v) => Err((
            StatusCode::BAD_REQUEST,
            format!(
                "api-version '{}' is not supported: expected '{}'",
                slipway_core::echo::truncate(v),
                accepted.join("' or '")
            ),
        )),
        None => Err((
            StatusCode::BAD_REQUEST,
            format!(
                "api-version is missing: expected '{}'",
                accepted.join("' or '")
            ),
        )),
    }
}

/// A token for the operation's environment's deployment identity:
/// (token, resource, client id).
async fn mint_for(
    state: &AppState,
    env: &EnvironmentRecord,
    q: &TokenQuery,
) -> Result<(slipway_runner::identity::RunnerToken, String, String), (StatusCode, String)> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let resource = q.resource.clone().unwrap_or_default();
    let id = state
        .store
        .deployment_identity(&env.project, &env.environment_type, &state.secret_key)
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .filter(|id| id.mints_tokens())
        .ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                format!(
                    "environment type '{}' has no deployment identity with a client secret or certificate to mint tokens for",
                    env.environment_type
                ),
            )
        })?;
    if let Some(asked) = q.client_id.as_deref() {
        if !asked.eq_ignore_ascii_case(&id.client_id) {
            return Err(bad(format!(
                "client_id '{}' is not this runner's identity: expected '{}' or none",
                slipway_core::echo::truncate(asked),
                id.client_id
            )));
        }
    }
    let minted = state
        .identity_tokens
        .token(&id, &resource)
        .await
        .map_err(|e| match e {
            SignInError::BadResource { .. } => bad(e.to_string()),
            SignInError::Rejected { .. } => (StatusCode::UNAUTHORIZED, e.to_string()),
            SignInError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        })?;
    Ok((minted, resource, id.client_id))
}

/// An IMDS-shaped managed-identity token (the Azure Instance Metadata
/// Service's `/metadata/identity/oauth2/token` contract, what Terraform's
/// azurerm and Pulumi's azure-native ask at `ARM_MSI_ENDPOINT`): header
/// `Metadata: true`, `api-version` one of
/// `slipway_core::identity::IMDS_API_VERSIONS`. IMDS clients send no secret
/// header, so the operation's token is the `{key}` path segment of the URL
/// Slipway gives the runner.
#[utoipa::path(get, path = "/runner/v1/operations/{o}/imds/{key}/token", tag = "runner", params(("o" = String, Path, description = "Operation id (UUID)"), ("key" = String, Path, description = "The runner's operation token (part of ARM_MSI_ENDPOINT)"), ("Metadata" = String, Header, description = "`true`"), TokenQuery), responses((status = 200, description = "A token", body = ImdsToken), (status = "default", description = "IMDS error", body = ImdsError)))]
async fn imds_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((o, key)): Path<(String, String)>,
    query: Result<axum::extract::Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let answer = async {
        let bad = |m: String| (StatusCode::BAD_REQUEST, m);
        if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
            return Err(bad(
                "Required metadata header not specified: send 'Metadata: true'".into(),
            ));
        }
        let (_, env) = authorize_token(&state, &key, &o)
            .await
            .map_err(|e| (e.status, e.message))?;
        let axum::extract::Query(q) =
            query.map_err(|e| bad(format!("query: {}", e.body_text())))?;
        check_api_version(q.api_version.as_deref(), &IMDS_API_VERSIONS)?;
        let (minted, resource, client_id) = mint_for(&state, &env, &q).await?;
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let expires_in = minted.expires_on.saturating_sub(now).to_string();
        Ok(ImdsToken {
            access_token: minted.access_token,
            client_id,
            ext_expires_in: expires_in.clone(),
            expires_in,
            expires_on: minted.expires_on.to_string(),
            not_before: now.to_string(),
            resource,
            token_type: "Bearer".into(),
        })
    };
    match answer.await {
        Ok(token) => Json(token).into_response(),
        Err((status, message)) => (
            status,
            Json(ImdsError {
                error: match status {
                    StatusCode::BAD_REQUEST => "invalid_request",
                    StatusCode::NOT_FOUND => "identity_not_found",
                    _ => "unauthorized_client",
                }
                .into(),
                error_description: message,
            }),
        )
            .into_response(),
    }
}

fn check_file_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "InvalidFileName",
            format!("file name '{name}' is not valid: expected letters, digits, '.', '_' or '-'"),
        ))
    }
}

/// Lists the environment's stored files (`/ade/storage`).
#[utoipa::path(get, path = "/runner/v1/operations/{o}/files", tag = "runner", params(("o" = String, Path, description = "Operation id (UUID)")), security(("runner" = [])), responses((status = 200, description = "Stored file names", body = Vec<String>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_files(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(o): Path<String>,
) -> ApiResult<Json<Vec<String>>> {
    let (_, env) = authorize(&state, &headers, &o).await?;
    let files = state
        .store
        .blobs
        .list(&format!("environments/{}/files", env.id))
        .await?;
    Ok(Json(files.into_iter().map(|(n, _)| n).collect()))
}

/// Downloads a stored file.
#[utoipa::path(get, path = "/runner/v1/operations/{o}/files/{name}", tag = "runner", params(("o" = String, Path, description = "Operation id (UUID)"), ("name" = String, Path, description = "File name")), security(("runner" = [])), responses((status = 200, description = "The file", body = Vec<u8>, content_type = "application/octet-stream"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn download_file(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((o, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (_, env) = authorize(&state, &headers, &o).await?;
    check_file_name(&name)?;
    let bytes = state
        .store
        .blobs
        .get(&Store::file_key(&env.id, &name))
        .await?
        .ok_or_else(|| ApiError::not_found("FileNotFound", format!("file '{name}' not found")))?;
    Ok(([("content-type", "application/octet-stream")], bytes).into_response())
}

/// Stores a file (`/ade/storage`).
#[utoipa::path(put, path = "/runner/v1/operations/{o}/files/{name}", tag = "runner", params(("o" = String, Path, description = "Operation id (UUID)"), ("name" = String, Path, description = "File name")), request_body(content = Vec<u8>, content_type = "application/octet-stream"), security(("runner" = [])), responses((status = 204, description = "Stored"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn upload_file(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((o, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let (_, env) = authorize(&state, &headers, &o).await?;
    check_file_name(&name)?;
    let others: u64 = state
        .store
        .blobs
        .list(&format!("environments/{}/files", env.id))
        .await?
        .into_iter()
        .filter(|(n, _)| n != &name)
        .map(|(_, size)| size)
        .sum();
    let total = others + body.len() as u64;
    let limit = match state
        .store
        .get_project_environment_type(&env.project, &env.environment_type)
        .await?
        .and_then(|t| t.limits.max_storage_mb)
    {
        Some(mb) => u64::try_from(mb).unwrap_or(0).saturating_mul(1 << 20),
        None => state.config.max_storage_bytes,
    };
    if total > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "EnvironmentStorageExceeded",
            format!(
                "storing '{name}' ({} bytes) would bring the environment's files to {total} bytes, over the limit of {} bytes",
                body.len(),
                limit
            ),
        ));
    }
    state
        .store
        .blobs
        .put(&Store::file_key(&env.id, &name), &body)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Appends to the operation's log.
#[utoipa::path(post, path = "/runner/v1/operations/{o}/logs", tag = "runner", params(("o" = String, Path, description = "Operation id (UUID)")), request_body = LogEntry, security(("runner" = [])), responses((status = 204, description = "Appended"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn append_log(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(o): Path<String>,
    entry: Result<Json<LogEntry>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<StatusCode> {
    let (op, env) = authorize(&state, &headers, &o).await?;
    let Json(entry) = entry.map_err(|r| ApiError::bad_request("InvalidCliInput", r.body_text()))?;
    let mut text = state
        .store
        .scrubber_for(&env.project, &env.environment_type, &state.secret_key)
        .await
        .scrub(&entry.content);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    if entry.log_type == LogType::Error {
        tracing::debug!(operation = %op.id, "runner error line");
    }
    state
        .store
        .blobs
        .append(&Store::log_key(&op.id), text.as_bytes())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stores the outputs (`ade outputs upload`).
#[utoipa::path(put, path = "/runner/v1/operations/{o}/outputs", tag = "runner", params(("o" = String, Path, description = "Operation id (UUID)")), request_body(content = Object, content_type = "application/json"), security(("runner" = [])), responses((status = 204, description = "Stored"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn upload_outputs(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(o): Path<String>,
    doc: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<StatusCode> {
    let (_, env) = authorize(&state, &headers, &o).await?;
    let Json(doc) = doc.map_err(|r| ApiError::bad_request("InvalidOutputs", r.body_text()))?;
    let outputs = validate_outputs(&doc)
        .map_err(|e| ApiError::bad_request("InvalidOutputs", e.to_string()))?;
    let bytes = serde_json::to_vec(&Value::Object(outputs))
        .map_err(|e| ApiError::bad_request("InvalidOutputs", e.to_string()))?;
    state
        .store
        .blobs
        .put(&Store::outputs_key(&env.id), &bytes)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Records the operation's error (`ade operation-result`).
#[utoipa::path(post, path = "/runner/v1/operations/{o}/result", tag = "runner", params(("o" = String, Path, description = "Operation id (UUID)")), request_body = OperationResult, security(("runner" = [])), responses((status = 204, description = "Recorded"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn operation_result(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(o): Path<String>,
    result: Result<Json<OperationResult>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<StatusCode> {
    let (op, env) = authorize(&state, &headers, &o).await?;
    let Json(r) = result.map_err(|r| ApiError::bad_request("InvalidCliInput", r.body_text()))?;
    let scrubber = state
        .store
        .scrubber_for(&env.project, &env.environment_type, &state.secret_key)
        .await;
    state
        .store
        .set_operation_result(&op.id, &ErrorBody::new(r.code, scrubber.scrub(&r.message)))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `ade upgrade`: where a newer `ade` could be downloaded — always empty,
/// since runners get the server's own build.
#[utoipa::path(get, path = "/runner/v1/operations/{o}/upgrade", tag = "runner", params(("o" = String, Path, description = "Operation id (UUID)")), security(("runner" = [])), responses((status = 200, description = "The URL of a newer `ade`; empty when the runner's is current (always)", body = String, content_type = "text/plain"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(o): Path<String>,
) -> ApiResult<Response> {
    authorize(&state, &headers, &o).await?;
    // The runner's `ade` is the server's own build; there is never a newer one to fetch.
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("text/plain"));
    Ok((StatusCode::OK, h, "").into_response())
}
