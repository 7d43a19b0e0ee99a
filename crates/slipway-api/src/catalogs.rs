//! Control plane for catalogs and their definitions (reference
//! `ade.md` §4.2 and §5.3). Dev-center catalogs live under
//! `/admin/catalogs/{c}` and are visible in every project; project catalogs
//! under `/admin/projects/{p}/catalogs/{c}` are visible only in `p`. Catalog
//! names are unique per server, so `catalogName` on an environment is never
//! ambiguous.
//!
//! | method, path (`{scope}` = `/admin` or `/admin/projects/{p}`) | |
//! |---|---|
//! | `PUT {scope}/catalogs/{c}` | ADE body `{properties:{gitHub\|adoGit:{uri,branch,path,secretIdentifier},syncType}}` or flat `{kind: git\|local, uri, branch?, path?, secretIdentifier?, syncType?}`; 201 on create; syncs at once when new or when the source changed |
//! | `GET {scope}/catalogs[/{c}]`, `DELETE {scope}/catalogs/{c}` | |
//! | `POST {scope}/catalogs/{c}:sync` (or `/sync`) | sync now; answers the catalog (409 `SyncInProgress`) |
//! | `POST {scope}/catalogs/{c}:getSyncErrorDetails` (or `/getSyncErrorDetails`) | `{operationError, conflicts[], errors[]}` |
//! | `GET {scope}/catalogs/{c}/environmentDefinitions[/{d}]` | every definition, valid or not, with `validationStatus` |
//! | `POST {scope}/catalogs/{c}/environmentDefinitions/{d}/getErrorDetails` | `{errors:[{code,message}]}` |

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::Json;
use serde_json::{Map, Value};
use slipway_catalog::{register_catalog, sync_catalog, CatalogError, RegistrationError};
use slipway_core::names::validate_resource_name;
use slipway_store::{Catalog, CatalogSource, CatalogSpec, DefinitionRecord};

use crate::admin::{body, JsonBody};
use crate::auth::Caller;
use crate::routing::Routes;
use crate::secrets;
use crate::{views, ApiError, ApiResult, AppState};
use slipway_core::access::Permission;
use slipway_core::echo::truncate as truncate_echo;
use slipway_wire::catalogs::{
    CatalogActionResult, CatalogBody, CatalogDefinition, CatalogResource, DefinitionErrors,
};
use slipway_wire::{CloudError, Paged};

/// Where project-scoped catalogs and secrets live: the dev-center routes
/// under `/admin/…` again under this prefix, with the same handlers.
pub(crate) const PROJECT_SCOPE: &str = "/admin/projects/{p}";

/// Catalog, definition and secret routes, under `/admin` and [`PROJECT_SCOPE`].
pub fn routes() -> Routes {
    let mut r = Routes::new();
    for scope in ["/admin", PROJECT_SCOPE] {
        r = r
            .route(&format!("{scope}/catalogs"), get(list_catalogs))
            .route(
                &format!("{scope}/catalogs/{{c}}"),
                put(put_catalog)
                    .get(get_catalog)
                    .delete(delete_catalog)
                    .post(catalog_action),
            )
            .route(
                &format!("{scope}/catalogs/{{c}}/{{action}}"),
                post(catalog_sub_action),
            )
            .route(
                &format!("{scope}/catalogs/{{c}}/environmentDefinitions"),
                get(list_definitions),
            )
            .route(
                &format!("{scope}/catalogs/{{c}}/environmentDefinitions/{{d}}"),
                get(get_definition).post(definition_action),
            )
            .route(
                &format!("{scope}/catalogs/{{c}}/environmentDefinitions/{{d}}/getErrorDetails"),
                post(definition_error_details),
            );
    }
    for scope in ["/admin", PROJECT_SCOPE] {
        r = r
            .route(&format!("{scope}/secrets"), get(secrets::list_secrets))
            .route(
                &format!("{scope}/secrets/{{s}}"),
                put(secrets::put_secret)
                    .get(secrets::get_secret)
                    .delete(secrets::delete_secret),
            );
    }
    r.map_router(|r| r.route_layer(axum::middleware::from_fn(require_scope_admin)))
}

/// Every route here administers its scope: a project's catalogs need
/// Project Admin of that project, everything else DevCenter Admin.
async fn require_scope_admin(
    caller: Caller,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let need = match crate::auth::project_of_path(req.uri().path()) {
        Some(p) => Permission::AdministerProject(p),
        None => Permission::AdministerDevCenter,
    };
    match caller.require(need) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

pub(crate) type Params = Path<HashMap<String, String>>;

pub(crate) fn param<'a>(params: &'a HashMap<String, String>, key: &str) -> &'a str {
    params.get(key).map(String::as_str).unwrap_or_default()
}

/// The admin view of a catalog (ADE `Catalog` properties, flattened).
fn catalog_view(c: &Catalog) -> CatalogResource {
    CatalogResource {
        name: c.name.clone(),
        project: c.spec.project.clone(),
        source: c.spec.source.clone(),
        sync_type: c.spec.sync_type.clone(),
        secret_identifier: c.spec.secret.clone(),
        sync_state: c.sync_state.clone(),
        last_sync_time: c.last_sync_time.clone(),
        last_sync_commit: c.last_commit.clone(),
        last_sync_stats: c.last_sync_stats.clone(),
        connection_state: c.connection_state.clone(),
        last_connection_time: c.last_connection_time.clone(),
        sync_error_details: c.last_sync_errors.clone(),
    }
}

/// The catalog `c` in the scope of the request (dev center or project `p`), or 404.
async fn scoped_catalog(state: &AppState, params: &HashMap<String, String>) -> ApiResult<Catalog> {
    let name = param(params, "c");
    let project = params.get("p").map(String::as_str);
    match state.store.get_catalog(name).await? {
        Some(c) if c.spec.project.as_deref() == project => Ok(c),
        _ => Err(ApiError::not_found(
            "CatalogNotFound",
            match project {
                Some(p) => format!("catalog '{name}' not found in project '{p}'"),
                None => format!("catalog '{name}' not found at the dev center"),
            },
        )),
    }
}

fn invalid(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("InvalidCatalog", format!("property '{field}' {message}"))
}

fn opt_string(obj: &Map<String, Value>, key: &str, field: &str) -> ApiResult<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(other) => Err(invalid(
            field,
            format!(
                "is {}: expected a string",
                slipway_core::manifest::describe_value(other)
            ),
        )),
    }
}

fn check_keys(obj: &Map<String, Value>, allowed: &[&str], at: &str) -> ApiResult<()> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(invalid(
            &format!("{at}{}", truncate_echo(k)),
            format!("is not known: expected one of {}", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

/// Reads a catalog body in ADE's shape or Slipway's flat shape.
fn parse_catalog_body(body: &Value, project: Option<&str>) -> ApiResult<CatalogSpec> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::bad_request(
            "InvalidRequestBody",
            "expected a JSON object",
        ));
    };
    let (kind, src, sync_type, at): (String, &Map<String, Value>, Option<String>, String) =
        if let Some(props) = obj.get("properties") {
            check_keys(obj, &["properties"], "")?;
            let props = props
                .as_object()
                .ok_or_else(|| invalid("properties", "must be an object"))?;
            check_keys(
                props,
                &["gitHub", "adoGit", "syncType", "tags"],
                "properties.",
            )?;
            let (key, git) = match (props.get("gitHub"), props.get("adoGit")) {
                (Some(g), None) => ("gitHub", g),
                (None, Some(g)) => ("adoGit", g),
                _ => {
                    return Err(invalid(
                        "properties",
                        "must have exactly one of 'gitHub' or 'adoGit'",
                    ))
                }
            };
            let git = git
                .as_object()
                .ok_or_else(|| invalid(&format!("properties.{key}"), "must be an object"))?;
            check_keys(
                git,
                &["uri", "branch", "path", "secretIdentifier"],
                &format!("properties.{key}."),
            )?;
            (
                "git".to_string(),
                git,
                opt_string(props, "syncType", "properties.syncType")?,
                format!("properties.{key}."),
            )
        } else {
            check_keys(
                obj,
                &[
                    "kind",
                    "uri",
                    "branch",
                    "path",
                    "secretIdentifier",
                    "syncType",
                ],
                "",
            )?;
            let kind = opt_string(obj, "kind", "kind")?.unwrap_or_else(|| "git".into());
            if kind != "git" && kind != "local" {
                return Err(invalid(
                    "kind",
                    format!("is '{kind}': expected 'git' or 'local'"),
                ));
            }
            (
                kind,
                obj,
                opt_string(obj, "syncType", "syncType")?,
                String::new(),
            )
        };
    let uri = opt_string(src, "uri", &format!("{at}uri"))?
        .ok_or_else(|| invalid(&format!("{at}uri"), "is required"))?;
    let sync_type = sync_type.unwrap_or_else(|| "Scheduled".into());
    if sync_type != "Manual" && sync_type != "Scheduled" {
        return Err(invalid(
            "syncType",
            format!("is '{sync_type}': expected 'Manual' or 'Scheduled'"),
        ));
    }
    let secret = opt_string(src, "secretIdentifier", &format!("{at}secretIdentifier"))?;
    if kind == "local" && secret.is_some() {
        return Err(invalid("secretIdentifier", "applies to git catalogs only"));
    }
    Ok(CatalogSpec {
        source: CatalogSource {
            branch: if kind == "git" {
                opt_string(src, "branch", &format!("{at}branch"))?
            } else {
                None
            },
            path: opt_string(src, "path", &format!("{at}path"))?,
            kind,
            uri,
        },
        project: project.map(str::to_string),
        sync_type,
        secret,
    })
}

/// Creates or updates a catalog (and syncs it).
#[utoipa::path(put, path = "/admin/catalogs/{c}", tag = "catalogs", params(("c" = String, Path, description = "Catalog")), request_body = CatalogBody, responses((status = 200, description = "Updated", body = CatalogResource), (status = 201, description = "Created", body = CatalogResource), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn put_catalog(
    State(state): State<AppState>,
    caller: Caller,
    Path(params): Params,
    b: JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<CatalogResource>)> {
    let body = body(b)?;
    let name = param(&params, "c").to_string();
    validate_resource_name("catalog", &name)
        .map_err(|e| ApiError::bad_request("InvalidName", e.to_string()))?;
    let project = params.get("p").cloned();
    if let Some(p) = &project {
        if state.store.get_project(p).await?.is_none() {
            return Err(ApiError::not_found(
                "ProjectNotFound",
                format!("project '{p}' not found"),
            ));
        }
    }
    let spec = parse_catalog_body(&body, project.as_deref())?;
    if spec.source.kind == "local" {
        // A local catalog reads a folder of the server's own disk.
        caller.require(Permission::AdministerDevCenter)?;
    }
    let registered = register_catalog(&state.store, &state.config.local_roots, &name, &spec)
        .await
        .map_err(|e| match e {
            RegistrationError::NameTaken { .. } => {
                ApiError::new(StatusCode::CONFLICT, "Conflict", e.to_string())
            }
            RegistrationError::Source(_) => {
                ApiError::bad_request("InvalidCatalogSource", e.to_string())
            }
            RegistrationError::SecretMissing { .. } => {
                ApiError::bad_request("InvalidCatalog", e.to_string())
            }
            RegistrationError::Store(s) => s.into(),
        })?;
    if registered.needs_sync {
        run_sync(&state, &name).await?; // wakes the scheduler itself
    } else {
        state.catalog_sync.catalogs_changed();
    }
    let cat = state.store.get_catalog(&name).await?.ok_or_else(|| {
        ApiError::not_found(
            "CatalogNotFound",
            format!("catalog '{name}' was deleted meanwhile"),
        )
    })?;
    let status = if registered.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(catalog_view(&cat))))
}

/// Runs a sync; a failed sync is not an HTTP error (the catalog shows it).
async fn run_sync(state: &AppState, name: &str) -> ApiResult<()> {
    let res = sync_catalog(
        &state.store,
        name,
        &state.config.work_dir,
        &state.secret_key,
        &state.config.local_roots,
        &state.config.fetch_allowed_cidrs,
    )
    .await;
    state.catalog_sync.catalogs_changed();
    match res {
        Ok(_)
        | Err(CatalogError::Source(_))
        | Err(CatalogError::Unauthorized(_))
        | Err(CatalogError::Unreachable(_))
        | Err(CatalogError::Secret(_)) => Ok(()),
        Err(CatalogError::NotFound(n)) => Err(ApiError::not_found(
            "CatalogNotFound",
            format!("catalog '{n}' not found"),
        )),
        Err(CatalogError::SyncInProgress(n)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "SyncInProgress",
            format!("catalog '{n}' is already syncing; try again when its syncState is no longer InProgress"),
        )),
        Err(CatalogError::Store(e)) => Err(e.into()),
        Err(CatalogError::Io(e)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SyncFailed",
            e.to_string(),
        )),
    }
}

/// Lists catalogs of the scope.
#[utoipa::path(get, path = "/admin/catalogs", tag = "catalogs", responses((status = 200, description = "Catalogs", body = Paged<CatalogResource>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_catalogs(
    State(state): State<AppState>,
    Path(params): Params,
) -> ApiResult<Json<Paged<CatalogResource>>> {
    let project = params.get("p");
    let value = state
        .store
        .list_catalogs()
        .await?
        .iter()
        .filter(|c| project.is_none() || c.spec.project.as_ref() == project)
        .map(catalog_view)
        .collect();
    Ok(Json(Paged::all(value)))
}

/// Reads a catalog with its sync state.
#[utoipa::path(get, path = "/admin/catalogs/{c}", tag = "catalogs", params(("c" = String, Path, description = "Catalog")), responses((status = 200, description = "The catalog", body = CatalogResource), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn get_catalog(
    State(state): State<AppState>,
    Path(params): Params,
) -> ApiResult<Json<CatalogResource>> {
    Ok(Json(catalog_view(&scoped_catalog(&state, &params).await?)))
}

/// Deletes a catalog.
#[utoipa::path(delete, path = "/admin/catalogs/{c}", tag = "catalogs", params(("c" = String, Path, description = "Catalog")), responses((status = 204, description = "Deleted"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn delete_catalog(
    State(state): State<AppState>,
    Path(params): Params,
) -> ApiResult<StatusCode> {
    let c = scoped_catalog(&state, &params).await?;
    state.store.delete_catalog(&c.name).await?;
    state.catalog_sync.catalogs_changed();
    Ok(StatusCode::NO_CONTENT)
}

/// `POST .../catalogs/{c}:sync` and `:getSyncErrorDetails`.
#[utoipa::path(post, path = "/admin/catalogs/{c}", tag = "catalogs", params(("c" = String, Path, description = "`<catalog>:sync` or `<catalog>:getSyncErrorDetails`")), responses((status = 200, description = "The catalog after a sync, or its sync error details", body = CatalogActionResult), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn catalog_action(
    state: State<AppState>,
    Path(mut params): Params,
) -> ApiResult<Json<CatalogActionResult>> {
    let full = param(&params, "c").to_string();
    let Some((name, action)) = full.split_once(':') else {
        return Err(ApiError::not_found(
            "UnknownAction",
            format!("'{full}' is not a catalog action: expected '<catalog>:sync' or '<catalog>:getSyncErrorDetails'"),
        ));
    };
    params.insert("c".into(), name.to_string());
    params.insert("action".into(), action.to_string());
    catalog_sub_action(state, Path(params)).await
}

/// `POST .../catalogs/{c}/sync` and `/getSyncErrorDetails` (ADE control-plane actions).
#[utoipa::path(post, path = "/admin/catalogs/{c}/{action}", tag = "catalogs", params(("c" = String, Path, description = "Catalog"), ("action" = String, Path, description = "`sync` or `getSyncErrorDetails`")), responses((status = 200, description = "The catalog after a sync, or its sync error details", body = CatalogActionResult), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn catalog_sub_action(
    State(state): State<AppState>,
    Path(params): Params,
) -> ApiResult<Json<CatalogActionResult>> {
    let c = scoped_catalog(&state, &params).await?;
    match param(&params, "action") {
        "sync" => {
            run_sync(&state, &c.name).await?;
            let c = scoped_catalog(&state, &params).await?;
            Ok(Json(CatalogActionResult::Catalog(Box::new(catalog_view(
                &c,
            )))))
        }
        "getSyncErrorDetails" => Ok(Json(CatalogActionResult::SyncErrorDetails(
            c.last_sync_errors
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default(),
        ))),
        other => Err(ApiError::not_found(
            "UnknownAction",
            format!("'{other}' is not a catalog action: expected 'sync' or 'getSyncErrorDetails'"),
        )),
    }
}

/// The admin view of a definition: the data-plane shape plus validation.
fn definition_view(
    state: &AppState,
    d: &DefinitionRecord,
    project: Option<&str>,
) -> CatalogDefinition {
    CatalogDefinition {
        definition: views::definition(&state.config.base_url, project.unwrap_or("-"), d),
        validation_status: d.validation_status.clone(),
        error_details: d.error_details.clone(),
        warnings: d.warnings.clone(),
        folder: d.folder.clone(),
        content_digest: d.content_digest.clone(),
    }
}

/// Lists a catalog's definitions, valid or not.
#[utoipa::path(get, path = "/admin/catalogs/{c}/environmentDefinitions", tag = "catalogs", params(("c" = String, Path, description = "Catalog")), responses((status = 200, description = "Definitions with validation status", body = Paged<CatalogDefinition>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_definitions(
    State(state): State<AppState>,
    Path(params): Params,
) -> ApiResult<Json<Paged<CatalogDefinition>>> {
    let c = scoped_catalog(&state, &params).await?;
    let project = params.get("p").map(String::as_str);
    let value = state
        .store
        .list_definitions(Some(&c.name))
        .await?
        .iter()
        .map(|d| definition_view(&state, d, project))
        .collect();
    Ok(Json(Paged::all(value)))
}

async fn scoped_definition(
    state: &AppState,
    params: &HashMap<String, String>,
    name: &str,
) -> ApiResult<DefinitionRecord> {
    let c = scoped_catalog(state, params).await?;
    state
        .store
        .get_definition(&c.name, name)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "EnvironmentDefinitionNotFound",
                format!(
                    "environment definition '{name}' not found in catalog '{}'",
                    c.name
                ),
            )
        })
}

/// Reads a definition with its validation status.
#[utoipa::path(get, path = "/admin/catalogs/{c}/environmentDefinitions/{d}", tag = "catalogs", params(("c" = String, Path, description = "Catalog"), ("d" = String, Path, description = "Environment definition")), responses((status = 200, description = "The definition with validation status", body = CatalogDefinition), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn get_definition(
    State(state): State<AppState>,
    Path(params): Params,
) -> ApiResult<Json<CatalogDefinition>> {
    let d = scoped_definition(&state, &params, param(&params, "d")).await?;
    Ok(Json(definition_view(
        &state,
        &d,
        params.get("p").map(String::as_str),
    )))
}

/// `POST .../environmentDefinitions/{d}:getErrorDetails`.
#[utoipa::path(post, path = "/admin/catalogs/{c}/environmentDefinitions/{d}", tag = "catalogs", params(("c" = String, Path, description = "Catalog"), ("d" = String, Path, description = "`<definition>:getErrorDetails`")), responses((status = 200, description = "`{errors: [{code, message}]}`", body = DefinitionErrors), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn definition_action(
    State(state): State<AppState>,
    Path(params): Params,
) -> ApiResult<Json<DefinitionErrors>> {
    let full = param(&params, "d");
    match full.split_once(':') {
        Some((name, "getErrorDetails")) => {
            let d = scoped_definition(&state, &params, name).await?;
            Ok(Json(DefinitionErrors {
                errors: d.error_details,
            }))
        }
        _ => Err(ApiError::not_found(
            "UnknownAction",
            format!("'{full}' is not a definition action: expected '<definition>:getErrorDetails'"),
        )),
    }
}

/// `POST .../environmentDefinitions/{d}/getErrorDetails` (ADE
/// `ProjectCatalogEnvironmentDefinitions_GetErrorDetails`): `{errors:[{code,message}]}`.
#[utoipa::path(post, path = "/admin/catalogs/{c}/environmentDefinitions/{d}/getErrorDetails", tag = "catalogs", params(("c" = String, Path, description = "Catalog"), ("d" = String, Path, description = "Environment definition")), responses((status = 200, description = "`{errors: [{code, message}]}`", body = DefinitionErrors), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn definition_error_details(
    State(state): State<AppState>,
    Path(params): Params,
) -> ApiResult<Json<DefinitionErrors>> {
    let d = scoped_definition(&state, &params, param(&params, "d")).await?;
    Ok(Json(DefinitionErrors {
        errors: d.error_details,
    }))
}

// ----- secrets -----
