//! Authentication, authorization and the audit trail of requests.
//!
//! Every request to the main listener but `/healthz`, `/openapi.json`, the
//! registry's notifications and source webhooks carries `Authorization: Bearer slw_…` (an API token, see
//! `slipway_store::Store::create_token`). [`authenticate`] resolves it to a
//! [`Caller`] — the user and every role they hold — or answers 401
//! `Unauthorized`. Handlers then ask [`Caller::require`] for the
//! [`Permission`] they need; a refusal is 403 `AuthorizationFailed` naming the
//! role and scope that would allow it. Every request that is not a read
//! (`GET`/`HEAD`) is recorded in the audit log with who, what, when, from
//! where and the answer's status.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use slipway_core::access::{Grant, Permission};
use slipway_store::{now_rfc3339, AuditEvent, EnvironmentRecord};

use crate::{ApiError, ApiResult, AppState};

/// The authenticated user of a request and the roles they hold.
#[derive(Debug, Clone)]
pub struct Caller {
    /// User id (`me` in paths resolves to it).
    pub user: String,
    /// Role assignments of the user.
    pub grants: Arc<Vec<Grant>>,
}

impl Caller {
    /// Whether the caller holds `p`.
    pub fn can(&self, p: &Permission) -> bool {
        p.allowed_by(&self.grants)
    }

    /// `Ok` if the caller holds `p`, else 403 `AuthorizationFailed` naming the role needed.
    pub fn require(&self, p: Permission) -> ApiResult<()> {
        if self.can(&p) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "AuthorizationFailed",
                p.denied_message(&self.user),
            ))
        }
    }

    /// Resolves a path `userId`: `me` is the caller.
    pub fn resolve<'a>(&'a self, user: &'a str) -> &'a str {
        if user == "me" {
            &self.user
        } else {
            user
        }
    }

    /// Whether the caller may read `env` (its owner with any role in the
    /// project, a Reader of its type, or an admin).
    pub fn can_read(&self, env: &EnvironmentRecord) -> bool {
        let p = &env.project;
        (env.owner == self.user && self.can(&Permission::ReadProject(p.clone())))
            || self.can(&Permission::ReadEnvironments(
                p.clone(),
                env.environment_type.clone(),
            ))
    }

    /// Whether the caller may change `env` (its owner holding the User role
    /// for its type, or a Project Admin).
    pub fn can_manage(&self, env: &EnvironmentRecord) -> bool {
        (env.owner == self.user
            && self.can(&Permission::DeployEnvironments(
                env.project.clone(),
                env.environment_type.clone(),
            )))
            || self.can(&Permission::ManageEnvironments(env.project.clone()))
    }

    /// `Ok` if the caller may change `env`, else 403.
    pub fn require_manage(&self, env: &EnvironmentRecord) -> ApiResult<()> {
        if self.can_manage(env) {
            return Ok(());
        }
        if env.owner == self.user {
            self.require(Permission::DeployEnvironments(
                env.project.clone(),
                env.environment_type.clone(),
            ))
        } else {
            self.require(Permission::ManageEnvironments(env.project.clone()))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "this request needs an API token: send 'Authorization: Bearer <token>'",
            )
        })
    }
}

fn unauthenticated(path: &str) -> bool {
    // Registry notifications and source webhooks carry their own token or
    // signature, checked by their handlers.
    path == "/healthz"
        || path == "/openapi.json"
        || path == "/registry/events"
        || path.starts_with("/imageTasks/webhooks/")
}

/// The project a request path concerns: `/projects/{p}/…` or `/admin/projects/{p}/…`.
pub fn project_of_path(path: &str) -> Option<String> {
    let rest = path
        .strip_prefix("/admin/projects/")
        .or_else(|| path.strip_prefix("/projects/"))?;
    let p = rest.split('/').next().unwrap_or_default();
    (!p.is_empty()).then(|| p.to_string())
}

/// Middleware: resolves the bearer token to a [`Caller`] (401 when missing,
/// unknown, revoked or expired) and audits every non-read request.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if unauthenticated(&path) {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string());
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let user = match token {
        None => None,
        Some(t) => match state.store.authenticate(&t, &now_rfc3339()).await {
            Ok(u) => u,
            Err(e) => return ApiError::from(e).into_response(),
        },
    };
    let response = match &user {
        None => {
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "missing, unknown, revoked or expired API token: send 'Authorization: Bearer <token>' (see 'slipway admin token create')",
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
        Some(u) => match state.store.grants_of(u).await {
            Ok(grants) => {
                req.extensions_mut().insert(Caller {
                    user: u.clone(),
                    grants: Arc::new(grants),
                });
                next.run(req).await
            }
            Err(e) => ApiError::from(e).into_response(),
        },
    };
    if method != Method::GET && method != Method::HEAD {
        let event = AuditEvent {
            time: now_rfc3339(),
            user: user.unwrap_or_else(|| "anonymous".into()),
            action: format!("{method} {path}"),
            target: path.clone(),
            project: project_of_path(&path),
            source,
            result: response.status().as_u16().to_string(),
        };
        if let Err(e) = state.store.record_audit(&event).await {
            tracing::error!(error = %e, "could not record an audit event");
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::project_of_path;

    #[test]
    fn project_comes_from_either_path_family() {
        assert_eq!(
            project_of_path("/projects/p1/users/me/environments/e").as_deref(),
            Some("p1")
        );
        assert_eq!(
            project_of_path("/admin/projects/p2/catalogs/c").as_deref(),
            Some("p2")
        );
        assert_eq!(project_of_path("/admin/catalogs/c"), None);
    }
}
