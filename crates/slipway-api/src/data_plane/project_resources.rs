//! What a project sees to deploy from: its environment types, catalogs and
//! valid environment definitions.

use axum::extract::{Path, State};
use axum::Json;
use slipway_core::access::Permission;
use slipway_store::DefinitionRecord;
use slipway_wire::ade::paths::{CatalogPath, DefinitionPath, EnvironmentTypePath, ProjectPath};
use slipway_wire::ade::{Catalog, EnvironmentDefinition, EnvironmentType, Paged};
use slipway_wire::CloudError;

use crate::admin::{require_pet, require_project};
use crate::auth::Caller;
use crate::views;
use crate::{ApiResult, AppState};

pub(crate) fn environment_type_json(
    state: &AppState,
    t: &slipway_store::ProjectEnvironmentType,
) -> EnvironmentType {
    EnvironmentType {
        uri: format!(
            "{}/projects/{}/environmentTypes/{}",
            state.config.base_url, t.project, t.name
        ),
        name: t.name.clone(),
        display_name: t.display_name.clone(),
        deployment_target_id: t.deployment_target_id.clone(),
        status: t.status.clone(),
    }
}

/// Lists a project's environment types.
#[utoipa::path(get, path = "/projects/{projectName}/environmentTypes", tag = "environments", params(ProjectPath), responses((status = 200, description = "The project's environment types", body = Paged<EnvironmentType>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
pub(crate) async fn list_environment_types(
    State(state): State<AppState>,
    caller: Caller,
    Path(p): Path<String>,
) -> ApiResult<Json<Paged<EnvironmentType>>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    let value = state
        .store
        .list_project_environment_types(&p)
        .await?
        .iter()
        .map(|t| environment_type_json(&state, t))
        .collect();
    Ok(Json(Paged::all(value)))
}

/// Reads a project environment type.
#[utoipa::path(get, path = "/projects/{projectName}/environmentTypes/{environmentTypeName}", tag = "environments", params(EnvironmentTypePath), responses((status = 200, description = "The environment type", body = EnvironmentType), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
pub(crate) async fn get_environment_type(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, t)): Path<(String, String)>,
) -> ApiResult<Json<EnvironmentType>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    let pet = require_pet(&state, &p, &t).await?;
    Ok(Json(environment_type_json(&state, &pet)))
}

pub(crate) fn catalog_json(state: &AppState, project: &str, c: &slipway_store::Catalog) -> Catalog {
    Catalog {
        uri: format!(
            "{}/projects/{project}/catalogs/{}",
            state.config.base_url, c.name
        ),
        name: c.name.clone(),
    }
}

/// A catalog visible in `project` (the dev center's or the project's own), or 404.
pub async fn visible_catalog(
    state: &AppState,
    project: &str,
    catalog: &str,
) -> ApiResult<slipway_store::Catalog> {
    Ok(state.environments.visible_catalog(project, catalog).await?)
}

/// A deployable definition of a catalog visible in `project`, or 404 naming
/// why (missing, or rejected by the last sync with its first error).
pub async fn visible_definition(
    state: &AppState,
    project: &str,
    catalog: &str,
    name: &str,
) -> ApiResult<DefinitionRecord> {
    Ok(state
        .environments
        .visible_definition(project, catalog, name)
        .await?)
}

/// Lists the catalogs a project sees.
#[utoipa::path(get, path = "/projects/{projectName}/catalogs", tag = "environments", params(ProjectPath), responses((status = 200, description = "The catalogs the project sees", body = Paged<Catalog>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
pub(crate) async fn list_catalogs(
    State(state): State<AppState>,
    caller: Caller,
    Path(p): Path<String>,
) -> ApiResult<Json<Paged<Catalog>>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    let value = state
        .store
        .catalogs_for_project(&p)
        .await?
        .iter()
        .map(|c| catalog_json(&state, &p, c))
        .collect();
    Ok(Json(Paged::all(value)))
}

/// Reads a catalog.
#[utoipa::path(get, path = "/projects/{projectName}/catalogs/{catalogName}", tag = "environments", params(CatalogPath), responses((status = 200, description = "The catalog", body = Catalog), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
pub(crate) async fn get_catalog(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, c)): Path<(String, String)>,
) -> ApiResult<Json<Catalog>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    let cat = visible_catalog(&state, &p, &c).await?;
    Ok(Json(catalog_json(&state, &p, &cat)))
}

/// Lists every valid environment definition a project sees.
#[utoipa::path(get, path = "/projects/{projectName}/environmentDefinitions", tag = "environments", params(ProjectPath), responses((status = 200, description = "Valid definitions of every catalog the project sees", body = Paged<EnvironmentDefinition>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
pub(crate) async fn list_all_definitions(
    State(state): State<AppState>,
    caller: Caller,
    Path(p): Path<String>,
) -> ApiResult<Json<Paged<EnvironmentDefinition>>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    let mut value = Vec::new();
    for c in state.store.catalogs_for_project(&p).await? {
        for d in state.store.list_definitions(Some(&c.name)).await? {
            if d.is_valid() {
                value.push(views::definition(&state.config.base_url, &p, &d));
            }
        }
    }
    Ok(Json(Paged::all(value)))
}

/// Lists a catalog's valid environment definitions.
#[utoipa::path(get, path = "/projects/{projectName}/catalogs/{catalogName}/environmentDefinitions", tag = "environments", params(CatalogPath), responses((status = 200, description = "The catalog's valid definitions", body = Paged<EnvironmentDefinition>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
pub(crate) async fn list_catalog_definitions(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, c)): Path<(String, String)>,
) -> ApiResult<Json<Paged<EnvironmentDefinition>>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    visible_catalog(&state, &p, &c).await?;
    let value = state
        .store
        .list_definitions(Some(&c))
        .await?
        .iter()
        .filter(|d| d.is_valid())
        .map(|d| views::definition(&state.config.base_url, &p, d))
        .collect();
    Ok(Json(Paged::all(value)))
}

/// Reads an environment definition.
#[utoipa::path(get, path = "/projects/{projectName}/catalogs/{catalogName}/environmentDefinitions/{definitionName}", tag = "environments", params(DefinitionPath), responses((status = 200, description = "The definition", body = EnvironmentDefinition), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
pub(crate) async fn get_definition(
    State(state): State<AppState>,
    caller: Caller,
    Path((p, c, d)): Path<(String, String, String)>,
) -> ApiResult<Json<EnvironmentDefinition>> {
    caller.require(Permission::ReadProject(p.clone()))?;
    require_project(&state, &p).await?;
    let def = visible_definition(&state, &p, &c, &d).await?;
    Ok(Json(views::definition(&state.config.base_url, &p, &def)))
}
