//! Slipway HTTP server.
//!
//! The control plane's route groups share one listener (127.0.0.1 by
//! default); the runner API is never served there, only on each running
//! operation's own address ([`RunnerApiServer`]):
//! - [`data_plane`]: ADE data-plane paths (`/projects/{p}/users/{u}/environments/{e}`…,
//!   reference `ade.md` §5.1). `api-version` is accepted and ignored.
//! - [`admin`]: Slipway's minimal control plane under `/admin` (projects,
//!   environment types, project environment types); [`catalogs`]: catalogs,
//!   their definitions and sync, secrets.
//! - [`image_tasks`]: container image tasks (quick builds, task runs, the
//!   embedded registry's notifications).
//! - [`runner_api`]: the runner protocol under `/runner/v1` (see
//!   `slipway_core::protocol`), authorised by per-operation tokens and
//!   served by [`RunnerApiServer`] on the operation's network only (the
//!   main listener does not route `/runner/v1/…`, so a proxy in front of
//!   it never exposes the operation-token routes or the IMDS-shaped path).
//!
//! Every route but `/healthz` and the runner API needs an API token; see
//! [`auth`] for authentication, authorization and the audit trail.
//!
//! Handlers parse, authorize, call a service and render: ADE's environment
//! rules live in `slipway_environments` (which also runs the scheduled
//! `Delete` actions of expiring environments), image tasks in
//! `slipway_tasks`, VM images in `slipway_vm_images`.
//!
//! Errors are ADE `CloudError` JSON: `{"error": {"code", "message", "details"?}}`.

pub mod admin;
pub mod auth;
pub mod catalogs;
mod connections;
pub mod data_plane;
pub mod image_tasks;
pub mod logs;
pub mod openapi;
mod routing;
pub mod runner_api;
pub mod secrets;
mod unread_body;
mod views;
pub mod vm_images;

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use slipway_catalog::SyncTrigger;
use slipway_store::{SecretKey, Store, StoreError};
use slipway_wire::{CloudError, CloudErrorBody};

use crate::routing::Routes;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Base URL clients use, e.g. `http://127.0.0.1:7878` (no trailing slash); used in `uri` fields and `Operation-Location`.
    pub base_url: String,
    /// Dev center id reported to runners.
    pub devcenter_id: String,
    /// Folder for temporary catalog clones.
    pub work_dir: PathBuf,
    /// Largest total size of an environment's stored files, in bytes (ADE exit 14 beyond it).
    pub max_storage_bytes: u64,
    /// How long a client may take to send a request head, on the main
    /// listener and every runner API address; idle keep-alive connections
    /// close after it too (`serve --http-header-timeout-seconds`).
    pub header_read_timeout: std::time::Duration,
    /// Connections the main listener holds open at once (`serve
    /// --max-connections`); each runner API address holds at most
    /// [`RUNNER_API_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Host folders `local` catalogs and `file://` git URLs may name
    /// (`serve --local-catalog-root`).
    pub local_roots: slipway_catalog::LocalRoots,
    /// Blocked networks the hosts of git URLs users name may still resolve
    /// into (`serve --fetch-allowed-cidr`).
    pub fetch_allowed_cidrs: Vec<slipway_core::isolation::Ipv4Cidr>,
}

/// Shared state of all handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Store.
    pub store: Store,
    /// Settings.
    pub config: Arc<ServerConfig>,
    /// Key that seals and opens stored secrets.
    pub secret_key: SecretKey,
    /// Wakes the scheduled catalog sync after catalog changes.
    pub catalog_sync: SyncTrigger,
    /// Environments: ADE's rules (create, redeploy, expire, delete, cancel).
    pub environments: Arc<slipway_environments::EnvironmentService>,
    /// Image tasks; `None` when the embedded registry could not start.
    pub tasks: Option<Arc<slipway_tasks::TaskService>>,
    /// VM image templates, runs and the image store.
    pub images: Arc<slipway_vm_images::ImageService>,
    /// Bearer token the embedded registry sends with its notifications.
    pub registry_events_token: String,
    /// Mints deployment identities' tokens for runners (`…/msi/token`).
    pub identity_tokens: Arc<slipway_runner::identity::TokenBroker>,
}

/// The control plane's route groups, in one table (the runner API is
/// served apart, per operation: [`RunnerApiServer`]).
fn control_plane_routes() -> Routes {
    Routes::new()
        .route("/healthz", axum::routing::get(openapi::healthz))
        .merge(openapi::routes())
        .merge(data_plane::routes())
        .merge(admin::routes())
        .merge(catalogs::routes())
        .merge(image_tasks::routes())
        .merge(vm_images::routes())
}

/// Builds the main listener's router: every control-plane route group.
pub fn router(state: AppState) -> Router {
    let (routes, _) = control_plane_routes().into_parts();
    routes
        .fallback(|| async { ApiError::not_found("NotFound", "no such route") })
        .layer(axum::middleware::map_response(errors_as_cloud_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn(unread_body::close_if_body_unread))
        .with_state(state)
}

/// The path templates the main listener serves (axum's `{name}` form), in
/// registration order: with [`runner_route_paths`], what a test checks
/// against [`openapi::document`].
pub fn route_paths() -> Vec<String> {
    control_plane_routes().into_parts().1
}

/// The path templates of the runner API, served only on each operation's
/// own address by [`RunnerApiServer`].
pub fn runner_route_paths() -> Vec<String> {
    runner_api::routes(0).into_parts().1
}

/// An API error rendered as ADE `CloudError`.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Error code.
    pub code: String,
    /// Message.
    pub message: String,
    /// Per-item details (at most 20 are listed, then a count).
    pub details: Vec<CloudErrorBody>,
}

impl ApiError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// 404 with `code`.
    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 400 with `code`.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

/// The longest error message an answer carries, bytes: a safety net under
/// the per-value bounds of `slipway_core::echo`, so no answer grows with
/// the request.
const MAX_ERROR_MESSAGE_BYTES: usize = 4096;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut message = self.message;
        if message.len() > MAX_ERROR_MESSAGE_BYTES {
            let mut cut = MAX_ERROR_MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("… (message cut)");
        }
        let mut error = CloudErrorBody::new(self.code, message);
        error.details = slipway_core::echo::bounded(self.details, |n| {
            CloudErrorBody::new(
                "TooManyProblems",
                format!("{n} more problems are not listed"),
            )
        });
        (self.status, axum::Json(CloudError { error })).into_response()
    }
}

/// Largest error text of axum's own rejections that is carried over into
/// a `CloudError` message, bytes.
const MAX_REJECTION_BYTES: usize = 16 * 1024;

/// Turns the plain-text error answers axum's extractors give (a query
/// string, path or body that does not parse, a method a path does not
/// route, a body too large) into ADE `CloudError` JSON like every other
/// error, so a client and the OpenAPI document's `default` answer hold for
/// all of them. JSON answers and successes pass unchanged.
async fn errors_as_cloud_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status {
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::PAYLOAD_TOO_LARGE => "RequestBodyTooLarge",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
        StatusCode::UNAUTHORIZED => "Unauthorized",
        s if s.is_server_error() => "InternalError",
        _ => "InvalidRequest",
    };
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REJECTION_BYTES)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string()
    } else {
        text
    };
    let mut answer = ApiError::new(status, code, message).into_response();
    // Keep what the refusal said beyond its body (e.g. `Allow` on a 405).
    for (name, value) in parts.headers.iter() {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// Largest upload body (build contexts, VM image build artifacts): 1 GiB.
/// axum's default limit (2 MB) is lifted per route with this.
pub const MAX_UPLOAD_BYTES: usize = 1 << 30;

/// Stores an uploaded body as blob `key(sha256)`; returns the lower-case
/// hex sha256 (uploads are addressed as `upload:<sha256>`).
///
/// Errors: 400 `InvalidRequestBody` naming `expected` when the body is
/// empty; store failures.
pub(crate) async fn put_upload(
    state: &AppState,
    body: &[u8],
    key: fn(&str) -> String,
    expected: &str,
) -> ApiResult<String> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "InvalidRequestBody",
            format!("the body is empty: expected {expected}"),
        ));
    }
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body));
    state.store.blobs.put(&key(&digest), body).await?;
    Ok(digest)
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "Conflict", e.to_string())
            }
            StoreError::InvalidKey(_) => ApiError::bad_request("InvalidName", e.to_string()),
            StoreError::InUse(m) => ApiError::new(StatusCode::CONFLICT, "ResourceInUse", m),
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    other.to_string(),
                )
            }
        }
    }
}

impl From<slipway_environments::EnvironmentError> for ApiError {
    /// Renders a refusal by its kind (400/404/409/500) and code; refused
    /// parameters are listed in `details` (at most
    /// [`slipway_core::echo::MAX_PROBLEMS`] plus a count, in the message too).
    fn from(e: slipway_environments::EnvironmentError) -> Self {
        use slipway_environments::{EnvironmentError, ErrorKind};
        let status = match e.kind() {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Internal => {
                return match e {
                    EnvironmentError::Store(s) => s.into(),
                    other => ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "InternalError",
                        other.to_string(),
                    ),
                }
            }
        };
        let EnvironmentError::Parameters(problems) = &e else {
            return ApiError::new(status, e.code(), e.to_string());
        };
        let listed: Vec<(String, CloudErrorBody)> = problems
            .iter()
            .map(|p| {
                let m = p.to_string();
                let mut d = CloudErrorBody::new(p.code(), m.clone());
                d.target = Some(p.parameter().to_string());
                (m, d)
            })
            .collect();
        let listed = slipway_core::echo::bounded(listed, |n| {
            let m = format!("{n} more parameter problems are not listed.");
            (m.clone(), CloudErrorBody::new("ParameterValueInvalid", m))
        });
        let message = listed
            .iter()
            .map(|(m, _)| m.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let mut err = ApiError::new(status, e.code(), message);
        err.details = listed.into_iter().map(|(_, d)| d).collect();
        err
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;

/// Serves the runner API of one operation on that operation's own network
/// address (see `slipway_runner::RunnerApiHost`): only `/runner/v1` routes,
/// and only for the operation it was opened for; any other path is 404.
#[derive(Debug, Clone)]
pub struct RunnerApiServer {
    state: AppState,
}

impl RunnerApiServer {
    /// A server of `state`'s runner API.
    pub fn new(state: AppState) -> RunnerApiServer {
        RunnerApiServer { state }
    }
}

impl slipway_runner::RunnerApiHost for RunnerApiServer {
    fn serve_on(
        &self,
        addr: std::net::SocketAddr,
        op_id: &str,
    ) -> std::io::Result<(u16, slipway_runner::ApiListener)> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let port = listener.local_addr()?.port();
        let prefix = format!("/runner/v1/operations/{op_id}/");
        let (runner_routes, _) =
            runner_api::routes(self.state.config.max_storage_bytes).into_parts();
        let app = runner_routes
            .layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    let own = req.uri().path().starts_with(&prefix);
                    async move {
                        if !own {
                            return StatusCode::NOT_FOUND.into_response();
                        }
                        let (method, path) =
                            (req.method().clone(), redact_imds_key(req.uri().path()));
                        let started = std::time::Instant::now();
                        let response = next.run(req).await;
                        tracing::debug!(
                            %method,
                            path,
                            status = response.status().as_u16(),
                            elapsed_us = started.elapsed().as_micros() as u64,
                            "runner API request"
                        );
                        response
                    }
                },
            ))
            .layer(axum::middleware::from_fn(unread_body::close_if_body_unread))
            .with_state(self.state.clone());
        let limits = connections::Limits {
            header_timeout: self.state.config.header_read_timeout,
            max_connections: RUNNER_API_MAX_CONNECTIONS,
        };
        let task = tokio::spawn(async move {
            let _ = connections::serve_router(listener, app, limits, std::future::pending()).await;
        });
        Ok((port, slipway_runner::ApiListener::new(task.abort_handle())))
    }
}

/// Connections one operation's runner API address holds open at once: a
/// runner's `ade` and Azure CLI calls come one or a few at a time, and a
/// runner opening more only waits on itself.
pub const RUNNER_API_MAX_CONNECTIONS: usize = 16;

/// `path` with the operation token of an IMDS-shaped token URL
/// (`…/imds/{key}/token`) replaced by `***`, for logs.
fn redact_imds_key(path: &str) -> String {
    match path.split_once("/imds/") {
        Some((head, rest)) => match rest.split_once('/') {
            Some((_, tail)) => format!("{head}/imds/***/{tail}"),
            None => format!("{head}/imds/***"),
        },
        None => path.to_string(),
    }
}

/// Serves the router on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = connections::Limits {
        header_timeout: state.config.header_read_timeout,
        max_connections: state.config.max_connections,
    };
    connections::serve_router(listener, router(state), limits, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::redact_imds_key;

    #[test]
    fn the_imds_key_never_reaches_a_log_line() {
        assert_eq!(
            redact_imds_key("/runner/v1/operations/o1/imds/s3cr3t/token"),
            "/runner/v1/operations/o1/imds/***/token"
        );
        assert_eq!(
            redact_imds_key("/runner/v1/operations/o1/imds/s3cr3t"),
            "/runner/v1/operations/o1/imds/***"
        );
        assert_eq!(
            redact_imds_key("/runner/v1/operations/o1/files"),
            "/runner/v1/operations/o1/files"
        );
    }
}
