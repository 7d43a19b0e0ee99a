//! Secrets of the dev center and of each project (reference `ade.md`
//! §5.3): tokens, SSH keys, generic values, deployment identities and
//! registry credentials, sealed at rest and write-only. Routed with the
//! catalogs ([`crate::catalogs::routes`]), under `/admin` and
//! `/admin/projects/{p}`.
//!
//! | method, path (`{scope}` = `/admin` or `/admin/projects/{p}`) | |
//! |---|---|
//! | `PUT {scope}/secrets/{s}` `{kind: token\|sshKey\|generic, value: string}` or `{kind: deploymentIdentity\|registry, value: object}`, `GET {scope}/secrets[/{s}]`, `DELETE {scope}/secrets/{s}` | values are write-only |

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;
use slipway_core::names::validate_resource_name;
use slipway_core::secrets::{check_secret, SecretError};
use slipway_store::SecretScope;
use slipway_wire::catalogs::{SecretMeta, SecretRequest};
use slipway_wire::{CloudError, Paged};

use crate::admin::{body, JsonBody};
use crate::catalogs::{param, Params};
use crate::{ApiError, ApiResult, AppState};

/// The secret scope of a route: `/admin/projects/{p}/secrets…` is project
/// `p` (404 when it does not exist), `/admin/secrets…` the dev center.
pub(crate) async fn secret_scope(
    state: &AppState,
    params: &HashMap<String, String>,
) -> ApiResult<SecretScope> {
    match params.get("p") {
        None => Ok(SecretScope::DevCenter),
        Some(p) => {
            if state.store.get_project(p).await?.is_none() {
                return Err(ApiError::not_found(
                    "ProjectNotFound",
                    format!("project '{p}' not found"),
                ));
            }
            Ok(SecretScope::Project(p.clone()))
        }
    }
}

/// Creates or replaces a secret.
#[utoipa::path(put, path = "/admin/secrets/{s}", tag = "catalogs", params(("s" = String, Path, description = "Secret")), request_body = SecretRequest, responses((status = 200, description = "The secret (without its value)", body = SecretMeta), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
pub(crate) async fn put_secret(
    State(state): State<AppState>,
    Path(params): Params,
    b: JsonBody<Value>,
) -> ApiResult<Json<SecretMeta>> {
    let body = body(b)?;
    let s = param(&params, "s").to_string();
    let scope = secret_scope(&state, &params).await?;
    validate_resource_name("secret", &s)
        .map_err(|e| ApiError::bad_request("InvalidName", e.to_string()))?;
    let secret =
        check_secret(&body, scope == SecretScope::DevCenter, &scope.to_string()).map_err(|e| {
            match e {
                SecretError::NotAnObject => {
                    ApiError::bad_request("InvalidRequestBody", e.to_string())
                }
                e => ApiError::bad_request("InvalidSecret", e.to_string()),
            }
        })?;
    state
        .store
        .put_secret(
            &scope,
            &s,
            &secret.kind,
            secret.text.as_bytes(),
            &secret.hosts,
            &state.secret_key,
        )
        .await?;
    secret_meta(&state, &scope, &s).await
}

pub(crate) async fn secret_meta(
    state: &AppState,
    scope: &SecretScope,
    s: &str,
) -> ApiResult<Json<SecretMeta>> {
    let meta = state.store.secret_meta(scope, s).await?.ok_or_else(|| {
        ApiError::not_found(
            "SecretNotFound",
            format!("secret '{s}' not found in {scope}"),
        )
    })?;
    Ok(Json(meta))
}

/// Reads a secret's metadata.
#[utoipa::path(get, path = "/admin/secrets/{s}", tag = "catalogs", params(("s" = String, Path, description = "Secret")), responses((status = 200, description = "The secret (without its value)", body = SecretMeta), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
pub(crate) async fn get_secret(
    State(state): State<AppState>,
    Path(params): Params,
) -> ApiResult<Json<SecretMeta>> {
    let scope = secret_scope(&state, &params).await?;
    secret_meta(&state, &scope, param(&params, "s")).await
}

/// Lists secrets of the scope.
#[utoipa::path(get, path = "/admin/secrets", tag = "catalogs", responses((status = 200, description = "Secrets (never their values)", body = Paged<SecretMeta>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
pub(crate) async fn list_secrets(
    State(state): State<AppState>,
    Path(params): Params,
) -> ApiResult<Json<Paged<SecretMeta>>> {
    let scope = secret_scope(&state, &params).await?;
    Ok(Json(Paged::all(state.store.list_secrets(&scope).await?)))
}

/// Deletes a secret.
#[utoipa::path(delete, path = "/admin/secrets/{s}", tag = "catalogs", params(("s" = String, Path, description = "Secret")), responses((status = 204, description = "Deleted"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
pub(crate) async fn delete_secret(
    State(state): State<AppState>,
    Path(params): Params,
) -> ApiResult<StatusCode> {
    let s = param(&params, "s").to_string();
    let scope = secret_scope(&state, &params).await?;
    if let Some(c) = state.store.list_catalogs().await?.into_iter().find(|c| {
        c.spec.secret.as_deref() == Some(s.as_str())
            && SecretScope::of(c.spec.project.as_deref()) == scope
    }) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "SecretInUse",
            format!(
                "secret '{s}' is used by catalog '{}': point the catalog at another secret first",
                c.name
            ),
        ));
    }
    for project in state.store.list_projects().await? {
        if scope != SecretScope::DevCenter {
            break;
        }
        if let Some(t) = state
            .store
            .list_project_environment_types(&project.name)
            .await?
            .into_iter()
            .find(|t| t.deployment_identity.as_deref() == Some(s.as_str()))
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "SecretInUse",
                format!(
                    "secret '{s}' is the deployment identity of environment type '{}' in project '{}': point it at another identity first",
                    t.name, project.name
                ),
            ));
        }
    }
    if state.store.delete_secret(&scope, &s).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "SecretNotFound",
            format!("secret '{s}' not found in {scope}"),
        ))
    }
}
