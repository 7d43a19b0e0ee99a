//! The OpenAPI 3.1 document of the whole API (`GET /openapi.json`, checked
//! in as `docs/openapi.json`), generated from the handlers' `utoipa::path`
//! attributes and the wire types of `slipway_wire`.
//!
//! The ADE data plane keeps Microsoft's devcenter data-plane names
//! (`/projects/{projectName}/users/{userId}/environments/{environmentName}`,
//! `…/operations/{operationId}:cancel`, `…/actions/{actionName}:skip`).
//! Catalog and secret routes exist once per scope (dev center and project):
//! the document lists the dev-center form and copies it under
//! `/admin/projects/{p}` ([`document`]).

use axum::routing::get;
use axum::Json;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, Required};
use utoipa::{Modify, OpenApi};

use crate::routing::Routes;

/// The handlers and schemas the document is made of.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Slipway",
        description = "Deployment environments (the ADE data plane and runner API), container image tasks and VM image templates. Every route but `/healthz`, `/openapi.json`, the runner API and the webhooks needs `Authorization: Bearer <API token>`. The runner API (`/runner/v1`, per-operation tokens) is served only on each running operation's own address (`ADE_HTTP__ENDPOINT` inside its runner), never on this listener. Errors are ADE `CloudError` JSON."
    ),
    paths(
        healthz,
        openapi_json,
        crate::data_plane::environments::list_project_environments,
        crate::data_plane::environments::list_user_environments,
        crate::data_plane::environments::get_environment,
        crate::data_plane::environments::put_environment,
        crate::data_plane::environments::patch_environment,
        crate::data_plane::environments::delete_environment,
        crate::data_plane::operations::list_operations,
        crate::data_plane::operations::get_operation,
        crate::data_plane::operations::operation_action,
        crate::data_plane::operations::get_logs,
        crate::data_plane::environments::get_outputs,
        crate::data_plane::actions::list_actions,
        crate::data_plane::actions::get_action,
        crate::data_plane::actions::skip_action,
        crate::data_plane::actions::delay_action,
        crate::data_plane::operations::get_operation_status,
        crate::data_plane::project_resources::list_environment_types,
        crate::data_plane::project_resources::get_environment_type,
        crate::data_plane::project_resources::list_catalogs,
        crate::data_plane::project_resources::get_catalog,
        crate::data_plane::project_resources::list_all_definitions,
        crate::data_plane::project_resources::list_catalog_definitions,
        crate::data_plane::project_resources::get_definition,
        crate::admin::list_projects,
        crate::admin::put_project,
        crate::admin::list_environment_types,
        crate::admin::put_environment_type,
        crate::admin::delete_environment_type,
        crate::admin::list_project_environment_types,
        crate::admin::put_project_environment_type,
        crate::admin::get_project_environment_type,
        crate::admin::delete_project_environment_type,
        crate::admin::post_role_assignment,
        crate::admin::list_role_assignments,
        crate::admin::delete_role_assignment,
        crate::admin::post_token,
        crate::admin::list_tokens,
        crate::admin::revoke_token,
        crate::admin::list_audit,
        crate::catalogs::list_catalogs,
        crate::catalogs::put_catalog,
        crate::catalogs::get_catalog,
        crate::catalogs::delete_catalog,
        crate::catalogs::catalog_action,
        crate::catalogs::catalog_sub_action,
        crate::catalogs::list_definitions,
        crate::catalogs::get_definition,
        crate::catalogs::definition_action,
        crate::catalogs::definition_error_details,
        crate::secrets::list_secrets,
        crate::secrets::put_secret,
        crate::secrets::get_secret,
        crate::secrets::delete_secret,
        crate::image_tasks::registry_info,
        crate::image_tasks::registry_login,
        crate::image_tasks::upload_context,
        crate::image_tasks::quick_build,
        crate::image_tasks::quick_run,
        crate::image_tasks::list_runs,
        crate::image_tasks::list_tasks,
        crate::image_tasks::put_task,
        crate::image_tasks::get_task,
        crate::image_tasks::delete_task,
        crate::image_tasks::run_task,
        crate::image_tasks::get_run,
        crate::image_tasks::cancel_run,
        crate::image_tasks::run_logs,
        crate::image_tasks::source_webhook,
        crate::image_tasks::registry_events,
        crate::vm_images::list_templates,
        crate::vm_images::put_template,
        crate::vm_images::get_template,
        crate::vm_images::delete_template,
        crate::vm_images::run_template,
        crate::vm_images::cancel_run,
        crate::vm_images::list_runs,
        crate::vm_images::get_run,
        crate::vm_images::run_log,
        crate::vm_images::put_trigger,
        crate::vm_images::get_trigger,
        crate::vm_images::delete_trigger,
        crate::vm_images::list_triggers,
        crate::vm_images::list_outputs,
        crate::vm_images::get_output,
        crate::vm_images::output_content,
        crate::vm_images::upload_artifact,
        crate::vm_images::list_images,
        crate::vm_images::platform_images,
        crate::runner_api::environment,
        crate::runner_api::definition,
        crate::runner_api::definition_content,
        crate::runner_api::identity,
        crate::runner_api::identity_token,
        crate::runner_api::imds_token,
        crate::runner_api::list_files,
        crate::runner_api::download_file,
        crate::runner_api::upload_file,
        crate::runner_api::append_log,
        crate::runner_api::upload_outputs,
        crate::runner_api::operation_result,
        crate::runner_api::upgrade,
    ),
    modifiers(&BearerToken),
    security(("bearer" = [])),
    tags(
        (name = "environments", description = "ADE data plane: environments, operations, actions, outputs, catalogs, definitions and environment types of a project"),
        (name = "admin", description = "Control plane: projects, environment types, project environment types, role assignments, API tokens, audit"),
        (name = "catalogs", description = "Catalogs, their definitions and sync, and secrets; each route also exists under `/admin/projects/{p}` for a project's own"),
        (name = "imageTasks", description = "Container image tasks (ACR Tasks model): quick builds and runs, tasks, runs and logs, the embedded registry"),
        (name = "vmImages", description = "VM image templates (Azure VM Image Builder model): templates, runs, run outputs, the image store"),
        (name = "runner", description = "The runner API the `ade` CLI calls from inside a runner, with its operation's token"),
        (name = "meta", description = "Health and this document"),
    )
)]
struct ApiDoc;

/// Declares the `bearer` security scheme (Slipway API tokens `slw_…`).
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // The runner API's per-operation token (`ADE_HTTP__TOKEN`).
        components.add_security_scheme(
            "runner",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // The token the embedded registry sends with its notifications.
        components.add_security_scheme(
            "registry",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI 3.1 document: the derived one plus the project-scoped copies
/// of the catalog and secret routes (same handlers, one more path parameter).
pub fn document() -> Document {
    let mut doc = ApiDoc::openapi();
    // Handler names repeat across groups (`get_run`): an operation id is
    // `<tag>_<handler>`, unique because each group is one module.
    for item in doc.paths.paths.values_mut() {
        for op in item_operations(item) {
            if let (Some(tag), Some(id)) = (
                op.tags.as_ref().and_then(|t| t.first()),
                &mut op.operation_id,
            ) {
                *id = format!("{tag}_{id}");
            }
        }
    }
    // The routes `catalogs::routes` registers under the project scope are
    // the dev-center ones again: copy their documentation.
    let (_, registered) = crate::catalogs::routes().into_parts();
    let copies: Vec<(String, utoipa::openapi::PathItem)> = registered
        .iter()
        .filter_map(|scoped| {
            let rest = scoped.strip_prefix(crate::catalogs::PROJECT_SCOPE)?;
            Some((
                scoped.clone(),
                doc.paths.paths.get(&format!("/admin{rest}"))?,
            ))
        })
        .map(|(scoped, item)| {
            let mut item = item.clone();
            let project = project_parameter();
            for op in item_operations(&mut item) {
                let params = op.parameters.get_or_insert_with(Vec::new);
                params.insert(0, project.clone());
                if let Some(id) = &mut op.operation_id {
                    id.push_str("_in_project");
                }
            }
            (scoped, item)
        })
        .collect();
    for (path, item) in copies {
        doc.paths.paths.insert(path, item);
    }
    constrain_names(&mut doc);
    doc
}

/// The name rule of a path parameter, when the handlers check one: the
/// ADE resource-name rule for projects, environment types, catalogs,
/// secrets, environments and image tasks, the AIB rule for image templates.
/// Definitions, users, operations and runs have none (catalog folders,
/// identities and generated ids).
fn name_pattern(path: &str, parameter: &str) -> Option<&'static str> {
    use slipway_core::images::template::TEMPLATE_NAME_PATTERN;
    use slipway_core::names::RESOURCE_NAME_PATTERN;
    match parameter {
        "p"
        | "projectName"
        | "c"
        | "catalogName"
        | "s"
        | "environmentName"
        | "environmentTypeName" => Some(RESOURCE_NAME_PATTERN),
        "t" if path.starts_with("/imageTemplates/") => Some(TEMPLATE_NAME_PATTERN),
        "name" if path.starts_with("/imageTemplates/") => Some(TEMPLATE_NAME_PATTERN),
        "t" => Some(RESOURCE_NAME_PATTERN),
        _ => None,
    }
}

/// Puts each path parameter's name rule ([`name_pattern`]) into its schema,
/// so the document is as strict as the handlers.
fn constrain_names(doc: &mut Document) {
    use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
    use utoipa::openapi::RefOr;
    for (path, item) in doc.paths.paths.iter_mut() {
        for op in item_operations(item) {
            for param in op.parameters.iter_mut().flatten() {
                if param.parameter_in != ParameterIn::Path {
                    continue;
                }
                if let Some(pattern) = name_pattern(path, &param.name) {
                    let schema: Object = ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(pattern))
                        .build();
                    param.schema = Some(RefOr::T(schema.into()));
                }
            }
        }
    }
}

fn project_parameter() -> Parameter {
    ParameterBuilder::new()
        .name("p")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some("Project"))
        .schema(Some(utoipa::openapi::schema::Object::with_type(
            utoipa::openapi::schema::Type::String,
        )))
        .build()
}

fn item_operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// `GET /healthz` and `GET /openapi.json`.
pub fn routes() -> Routes {
    Routes::new().route("/openapi.json", get(openapi_json))
}

/// Answers `ok` while the server runs.
#[utoipa::path(get, path = "/healthz", tag = "meta", security(()), responses((status = 200, description = "The server runs", body = String, content_type = "text/plain")))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", security(()), responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
async fn openapi_json() -> Json<&'static Document> {
    // Built once: the document depends on nothing but the code.
    static DOCUMENT: std::sync::OnceLock<Document> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(document))
}
