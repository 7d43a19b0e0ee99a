//! JSON shapes of the ADE data plane (reference `ade.md` §5.1).

use serde_json::{json, Value};
use slipway_store::{DefinitionRecord, EnvironmentRecord, OperationRecord};

pub use slipway_environments::{delete_action_name, environment_path};

/// ADE `Environment`.
pub fn environment(base: &str, env: &EnvironmentRecord, resource_group_id: &str) -> Value {
    let mut v = json!({
        "uri": format!("{base}{}", environment_path(env)),
        "name": env.name,
        "environmentType": env.environment_type,
        "user": env.owner,
        "provisioningState": env.provisioning_state.as_str(),
        "resourceGroupId": resource_group_id,
        "catalogName": env.catalog,
        "environmentDefinitionName": env.definition,
        "parameters": env.parameters,
    });
    if let Some(x) = &env.expiration_date {
        v["expirationDate"] = json!(x);
    }
    if let Some(e) = &env.error {
        v["error"] = json!({"code": e.code, "message": e.message});
    }
    v
}

/// ADE `EnvironmentAction` `{name, uri, actionType, next: {scheduledTime}, lastModifiedBy, lastModifiedAt}`;
/// `None` when the environment has no expiration.
pub fn delete_action(base: &str, env: &EnvironmentRecord) -> Option<Value> {
    env.expiration_date.as_ref()?;
    let name = delete_action_name(env);
    let mut v = json!({
        "name": name,
        "uri": format!("{base}{}/actions/{name}", environment_path(env)),
        "actionType": "Delete",
        "lastModifiedBy": env.action_modified_by,
        "lastModifiedAt": env.action_modified_at,
    });
    if let Some(t) = &env.delete_at {
        v["next"] = json!({"scheduledTime": t});
    }
    Some(v)
}

/// ADE `EnvironmentOperation` (plus Slipway's `catalogCommit` and `runnerImage`).
pub fn operation(base: &str, env_path: &str, op: &OperationRecord) -> Value {
    let mut v = json!({
        "uri": format!("{base}{env_path}/operations/{}", op.id),
        "operationId": op.id,
        "kind": op.kind.as_str(),
        "status": op.status.as_str(),
        "createdByObjectId": op.created_by,
        "createdTime": op.created_at,
        "startTime": op.start_time,
        "endTime": op.end_time,
        "environmentParameters": op.parameters,
        "catalogCommit": op.definition.commit,
        "runnerImage": op.runner_image,
    });
    if let Some(e) = &op.error {
        v["error"] = json!({"code": e.code, "message": e.message});
    }
    v
}

/// ADE `OperationDetails` (`/projects/{p}/operationstatuses/{id}`).
pub fn operation_status(base: &str, op: &OperationRecord, env_path: &str) -> Value {
    let mut v = json!({
        "id": format!("{base}/projects/{}/operationstatuses/{}", op.project, op.id),
        "name": op.id,
        "status": op.status.as_str(),
        "resourceId": format!("{base}{env_path}"),
        "startTime": op.start_time,
        "endTime": op.end_time,
    });
    if let Some(e) = &op.error {
        v["error"] = json!({"code": e.code, "message": e.message});
    }
    v
}

/// ADE `EnvironmentDefinition` (public form: `templatePath` relative to the catalog root).
pub fn definition(base: &str, project: &str, d: &DefinitionRecord) -> Value {
    let params: Vec<Value> = d
        .manifest
        .parameters
        .iter()
        .map(|p| {
            let mut v = json!({
                "id": p.id,
                "name": p.name.clone().unwrap_or_else(|| p.id.clone()),
                "type": p.param_type.as_str(),
                "readOnly": p.read_only,
                "required": p.required,
            });
            if let Some(desc) = &p.description {
                v["description"] = json!(desc);
            }
            if let Some(def) = &p.default {
                // ADE's API model serializes `default` as a string (`"true"`, `"3"`).
                v["default"] = match def {
                    Value::String(s) => json!(s),
                    other => json!(other.to_string()),
                };
            }
            if let Some(a) = &p.allowed {
                v["allowed"] = json!(a);
            }
            v
        })
        .collect();
    json!({
        "uri": format!("{base}/projects/{project}/catalogs/{}/environmentDefinitions/{}", d.catalog, d.name),
        "id": format!("/projects/{project}/catalogs/{}/environmentDefinitions/{}", d.catalog, d.name),
        "name": d.name,
        "catalogName": d.catalog,
        "description": d.manifest.description,
        "summary": d.manifest.summary,
        "version": d.manifest.version,
        "runner": d.manifest.runner,
        "parameters": params,
        "parametersSchema": d.manifest.parameters_schema(),
        "templatePath": join_path(&d.folder, &d.manifest.template_path),
        "catalogCommit": d.commit,
    })
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
