//! Renders store records as the ADE data plane's wire types
//! (`slipway_wire::ade`; reference `ade.md` §5.1).

use serde_json::Value;
use slipway_store::{DefinitionRecord, EnvironmentRecord, OperationRecord};
use slipway_wire::ade::{
    Environment, EnvironmentAction, EnvironmentActionSchedule, EnvironmentDefinition,
    EnvironmentDefinitionParameter, EnvironmentOperation, OperationDetails,
};

pub use slipway_environments::{delete_action_name, environment_path};

/// ADE `Environment`.
pub fn environment(base: &str, env: &EnvironmentRecord, resource_group_id: &str) -> Environment {
    Environment {
        uri: format!("{base}{}", environment_path(env)),
        name: env.name.clone(),
        environment_type: env.environment_type.clone(),
        user: env.owner.clone(),
        provisioning_state: env.provisioning_state,
        resource_group_id: resource_group_id.to_string(),
        catalog_name: env.catalog.clone(),
        environment_definition_name: env.definition.clone(),
        parameters: env.parameters.clone(),
        expiration_date: env.expiration_date.clone(),
        error: env.error.clone(),
    }
}

/// ADE `EnvironmentAction`; `None` when the environment has no expiration.
pub fn delete_action(base: &str, env: &EnvironmentRecord) -> Option<EnvironmentAction> {
    env.expiration_date.as_ref()?;
    let name = delete_action_name(env);
    Some(EnvironmentAction {
        uri: format!("{base}{}/actions/{name}", environment_path(env)),
        name,
        action_type: "Delete".to_string(),
        next: env.delete_at.as_ref().map(|t| EnvironmentActionSchedule {
            scheduled_time: t.clone(),
        }),
        last_modified_by: env.action_modified_by.clone(),
        last_modified_at: env.action_modified_at.clone(),
    })
}

/// ADE `EnvironmentOperation` (plus Slipway's `catalogCommit` and `runnerImage`).
pub fn operation(base: &str, env_path: &str, op: &OperationRecord) -> EnvironmentOperation {
    EnvironmentOperation {
        uri: format!("{base}{env_path}/operations/{}", op.id),
        operation_id: op.id.clone(),
        kind: op.kind,
        status: op.status,
        created_by_object_id: op.created_by.clone(),
        created_time: op.created_at.clone(),
        start_time: op.start_time.clone(),
        end_time: op.end_time.clone(),
        environment_parameters: op.parameters.clone(),
        catalog_commit: op.definition.commit.clone(),
        runner_image: op.runner_image.clone(),
        error: op.error.clone(),
    }
}

/// ADE `OperationDetails` (`/projects/{p}/operationstatuses/{id}`).
pub fn operation_status(base: &str, op: &OperationRecord, env_path: &str) -> OperationDetails {
    OperationDetails {
        id: format!("{base}/projects/{}/operationstatuses/{}", op.project, op.id),
        name: op.id.clone(),
        status: op.status,
        resource_id: format!("{base}{env_path}"),
        start_time: op.start_time.clone(),
        end_time: op.end_time.clone(),
        error: op.error.clone(),
    }
}

/// ADE `EnvironmentDefinition` (public form: `templatePath` relative to the catalog root).
pub fn definition(base: &str, project: &str, d: &DefinitionRecord) -> EnvironmentDefinition {
    let parameters = d
        .manifest
        .parameters
        .iter()
        .map(|p| EnvironmentDefinitionParameter {
            id: p.id.clone(),
            name: p.name.clone().unwrap_or_else(|| p.id.clone()),
            description: p.description.clone(),
            // ADE's API model serializes `default` as a string (`"true"`, `"3"`).
            default: p.default.as_ref().map(|def| match def {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
            parameter_type: p.param_type.as_str().to_string(),
            read_only: p.read_only,
            required: p.required,
            allowed: p.allowed.clone(),
        })
        .collect();
    let id = format!(
        "/projects/{project}/catalogs/{}/environmentDefinitions/{}",
        d.catalog, d.name
    );
    EnvironmentDefinition {
        uri: format!("{base}{id}"),
        id,
        name: d.name.clone(),
        catalog_name: d.catalog.clone(),
        description: d.manifest.description.clone(),
        summary: d.manifest.summary.clone(),
        version: d.manifest.version.clone(),
        runner: d.manifest.runner.clone(),
        parameters,
        parameters_schema: d.manifest.parameters_schema(),
        template_path: join_path(&d.folder, &d.manifest.template_path),
        catalog_commit: d.commit.clone(),
    }
}

/// Joins `/`-separated path parts, skipping empty ones.
pub fn join_path(a: &str, b: &str) -> String {
    [a, b]
        .iter()
        .map(|s| s.trim_matches('/'))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}
