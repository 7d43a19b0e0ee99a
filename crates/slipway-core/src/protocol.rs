//! The runner protocol: what the server injects into a runner container and
//! the HTTP API the in-container `ade` CLI calls.
//!
//! Container environment (reference `ade.md` §3, §8.1): `ADE_OPERATION_NAME`
//! (`deploy`|`delete`), `ADE_HTTP__ENDPOINT` (runner API base URL, an IP
//! literal so the static `ade` binary never needs DNS), `ADE_HTTP__OPERATIONID`,
//! `ADE_HTTP__DEVCENTERID`, and Slipway's unforgeable per-operation bearer
//! token `ADE_HTTP__TOKEN` (ADE itself uses a managed identity; the reference
//! §7 warns that IDs alone are forgeable).
//!
//! HTTP API, relative to `ADE_HTTP__ENDPOINT`, every call with
//! `Authorization: Bearer <token>`; the token is valid only for the path's
//! operation and only while it is Running:
//!
//! | method, path | body | answer |
//! |---|---|---|
//! | `GET operations/{op}/environment` | | [`RunnerEnvironment`] |
//! | `GET operations/{op}/definition` | | [`RunnerDefinition`] |
//! | `GET operations/{op}/definition/content` | | zip of the definition folder |
//! | `GET operations/{op}/identity` | | [`RunnerIdentity`] |
//! | `GET operations/{op}/files` | | JSON array of file names |
//! | `GET/PUT operations/{op}/files/{name}` | bytes | bytes / 204; 413 over the storage limit |
//! | `POST operations/{op}/logs` | [`LogEntry`] | 204 |
//! | `PUT operations/{op}/outputs` | `{"outputs":{…}}` | 204; 400 on a bad type |
//! | `POST operations/{op}/result` | [`OperationResult`] | 204 |
//! | `GET operations/{op}/upgrade` | | text: download URL or empty |

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::manifest::ParameterDefinition;

/// `deploy` or `delete`.
pub const ENV_OPERATION_NAME: &str = "ADE_OPERATION_NAME";
/// Where ADE's core image keeps the `ade` CLI (`COPY ade /adecli/ade`,
/// `PATH=/adecli:$PATH`; reference `ade.md` §1.2). Slipway mounts its own
/// static `ade` here, read-only, in every runner, so an image built FROM
/// Microsoft's core (whose `ade` speaks to Azure) talks to Slipway.
pub const ADE_CLI_PATH: &str = "/adecli/ade";
/// Runner API base URL, e.g. `http://127.0.0.1:7878/runner/v1/`.
pub const ENV_ENDPOINT: &str = "ADE_HTTP__ENDPOINT";
/// Operation id (UUID).
pub const ENV_OPERATION_ID: &str = "ADE_HTTP__OPERATIONID";
/// Dev center id.
pub const ENV_DEVCENTER_ID: &str = "ADE_HTTP__DEVCENTERID";
/// Per-operation bearer token.
pub const ENV_TOKEN: &str = "ADE_HTTP__TOKEN";

/// Name of the per-environment state archive (ADE: `ade files upload --folder-path /ade/storage`).
pub const STORAGE_FILE: &str = "storage.zip";

/// Exit codes of the `ade` CLI and the error codes the core entrypoint maps
/// them to (ADE core `entrypoint.sh` `exitCodeMap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AdeExitCode {
    /// 1: generic script failure.
    DeploymentError = 1,
    /// 7: endpoint missing or malformed.
    InvalidEndpoint = 7,
    /// 8: dev center id missing.
    InvalidDevCenterId = 8,
    /// 9: CLI setup failed.
    CliSetupError = 9,
    /// 10: operation id missing or unknown.
    InvalidOperationId = 10,
    /// 11: an API request failed.
    RequestFailed = 11,
    /// 12: bad command-line input.
    InvalidCliInput = 12,
    /// 13: a local file could not be read or written.
    FileOperationError = 13,
    /// 14: the upload would exceed the environment's storage limit.
    EnvironmentStorageExceeded = 14,
    /// 15: the token was refused.
    SecurityError = 15,
    /// 16: the deployment identity could not sign in.
    DeploymentIdentitySignInError = 16,
    /// 17: `ade upgrade` failed.
    CliUpgradeError = 17,
    /// 99: anything else.
    UnknownError = 99,
}

impl AdeExitCode {
    /// The process exit code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The ADE error code name for an exit status, as the core entrypoint
    /// maps it; `UnknownError` for unmapped values.
    pub fn name_for_status(status: i64) -> &'static str {
        match status {
            1 => "DeploymentError",
            7 => "InvalidEndpoint",
            8 => "InvalidDevCenterId",
            9 => "CliSetupError",
            10 => "InvalidOperationId",
            11 => "RequestFailed",
            12 => "InvalidCliInput",
            13 => "FileOperationError",
            14 => "EnvironmentStorageExceeded",
            15 => "SecurityError",
            16 => "DeploymentIdentitySignInError",
            17 => "CliUpgradeError",
            _ => "UnknownError",
        }
    }
}

/// `ade environment` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerEnvironment {
    /// Data-plane URI of the environment.
    pub uri: String,
    /// Environment name.
    pub name: String,
    /// Project environment type name.
    pub environment_type: String,
    /// Owner id.
    pub user: String,
    /// Current provisioning state.
    pub provisioning_state: String,
    /// `/subscriptions/<sub>/resourceGroups/<rg>` of the deployment target.
    pub resource_group_id: String,
    /// Catalog name.
    pub catalog_name: String,
    /// Definition name.
    pub environment_definition_name: String,
    /// Effective parameters (defaults applied).
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    /// Region/location of the project.
    pub location: String,
}

/// `ade definitions list` output. `templatePath` and `contentSourcePath` are
/// catalog-prefixed (`<catalog>/<dir>/main.tf`, `<catalog>/<dir>`), unlike the public API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerDefinition {
    /// `/projects/P/catalogs/C/environmentDefinitions/D`.
    pub id: String,
    /// Definition name.
    pub name: String,
    /// Catalog name.
    pub catalog_name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Parameters.
    pub parameters: Vec<ParameterDefinition>,
    /// JSON Schema string.
    pub parameters_schema: String,
    /// `<catalog>/<dir>/<templatePath>`.
    pub template_path: String,
    /// `<catalog>/<dir>`.
    pub content_source_path: String,
}

/// `ade info` answers plus the subscription id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerIdentity {
    /// `ADE_CLIENT_ID`.
    pub client_id: String,
    /// `ADE_TENANT_ID`.
    pub tenant_id: String,
    /// `ADE_SUBSCRIPTION_ID`.
    pub subscription_id: String,
}

/// Type of an `ade log` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogType {
    /// Normal log line (default).
    #[default]
    Log,
    /// Verbose line.
    Verbose,
    /// Error line.
    Error,
}

/// One `ade log` / `ade execute` chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogEntry {
    /// Line type.
    #[serde(rename = "type", default)]
    pub log_type: LogType,
    /// Text; a trailing newline is added by the server when missing.
    pub content: String,
}

/// `ade operation-result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperationResult {
    /// Error code, e.g. `DeploymentError`.
    pub code: String,
    /// Message.
    pub message: String,
}

/// An outputs document a runner uploaded that Slipway refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputsError {
    /// Not `{"outputs": {...}}`.
    #[error("expected a JSON object with an 'outputs' object")]
    NotAnOutputsObject,
    /// An output without a string `type`.
    #[error("output '{0}': missing 'type'")]
    MissingType(String),
    /// A `type` that is neither a data-plane nor an ARM output type.
    #[error("output '{name}': type '{ty}' is not one of {types} (any case)", types = crate::OUTPUT_TYPES.join(", "))]
    UnknownType {
        /// The output's name.
        name: String,
        /// The type given.
        ty: String,
    },
    /// A non-secure output without `value`.
    #[error("output '{0}': missing 'value'")]
    MissingValue(String),
    /// `sensitive` that is not a boolean.
    #[error("output '{name}': 'sensitive' is {value}: expected true or false")]
    BadSensitive {
        /// The output's name.
        name: String,
        /// The value given, as JSON.
        value: String,
    },
}

/// Checks an outputs document `{"outputs": {name: {type, value, sensitive?}}}`.
/// Returns the `outputs` map with each type as the data plane names it
/// ([`crate::environment::output_type`]: ARM's `String`, `Int`,
/// `SecureString`… become `string`, `number`, …; a secure type is
/// `sensitive: true` unless the output says otherwise; ARM never returns the
/// value of a secure output, so a secure one without `value` is kept with
/// `value: null`), or an error naming the first bad output.
pub fn validate_outputs(doc: &Value) -> Result<Map<String, Value>, OutputsError> {
    let outputs = doc
        .get("outputs")
        .and_then(Value::as_object)
        .ok_or(OutputsError::NotAnOutputsObject)?;
    let mut normalized = outputs.clone();
    for (name, out) in outputs {
        let ty = out
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| OutputsError::MissingType(name.clone()))?;
        let Some((data_plane_type, secure)) = crate::environment::output_type(ty) else {
            return Err(OutputsError::UnknownType {
                name: name.clone(),
                ty: crate::echo::truncate(ty),
            });
        };
        if let Some(o) = normalized.get_mut(name).and_then(Value::as_object_mut) {
            o.insert("type".into(), Value::from(data_plane_type));
            if secure && !o.contains_key("sensitive") {
                o.insert("sensitive".into(), Value::Bool(true));
            }
        }
        if out.get("value").is_none() {
            if !secure {
                return Err(OutputsError::MissingValue(name.clone()));
            }
            if let Some(o) = normalized.get_mut(name).and_then(Value::as_object_mut) {
                o.insert("value".into(), Value::Null);
            }
        }
        if let Some(v) = out.get("sensitive").filter(|v| !v.is_boolean()) {
            return Err(OutputsError::BadSensitive {
                name: name.clone(),
                value: crate::echo::truncate(&v.to_string()),
            });
        }
    }
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exit_code_names() {
        assert_eq!(AdeExitCode::name_for_status(1), "DeploymentError");
        assert_eq!(
            AdeExitCode::name_for_status(14),
            "EnvironmentStorageExceeded"
        );
        assert_eq!(AdeExitCode::name_for_status(3), "UnknownError");
        assert_eq!(AdeExitCode::EnvironmentStorageExceeded.code(), 14);
    }

    #[test]
    fn outputs_validation() {
        assert!(
            validate_outputs(&json!({"outputs": {"a": {"type": "string", "value": "x"}}})).is_ok()
        );
        let e = validate_outputs(&json!({"outputs": {"a": {"type": "blob", "value": 1}}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'blob'"));
        assert!(validate_outputs(&json!({"x": 1})).is_err());
        let e = validate_outputs(
            &json!({"outputs": {"a": {"type": "string", "value": "x", "sensitive": "yes"}}}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("'sensitive' is \"yes\""), "{e}");
        // ARM answers a secure output with its type only.
        let out = validate_outputs(&json!({"outputs": {"pw": {"type": "SecureString"}}})).unwrap();
        assert_eq!(
            out["pw"],
            json!({"type": "string", "sensitive": true, "value": null})
        );
        let e = validate_outputs(&json!({"outputs": {"a": {"type": "String"}}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("output 'a': missing 'value'"), "{e}");
    }

    #[test]
    fn arm_output_types_are_stored_as_data_plane_types() {
        // What the official ARM-Bicep runner uploads: `az deployment group
        // show --query properties.outputs` with only Bool and Int mapped.
        let doc = json!({"outputs": {
            "name": {"type": "String", "value": "web"},
            "count": {"type": "number", "value": 3},
            "legacyCount": {"type": "int", "value": 3},
            "on": {"type": "boolean", "value": true},
            "tags": {"type": "Object", "value": {"a": "b"}},
            "zones": {"type": "Array", "value": ["1"]},
            "key": {"type": "SecureString", "value": "s3cret"},
            "conn": {"type": "SecureObject", "value": {"k": "v"}, "sensitive": false}
        }});
        let out = validate_outputs(&doc).unwrap();
        let ty = |n: &str| out[n]["type"].as_str().unwrap().to_string();
        assert_eq!(
            [
                "name",
                "count",
                "legacyCount",
                "on",
                "tags",
                "zones",
                "key",
                "conn"
            ]
            .map(ty),
            ["string", "number", "number", "boolean", "object", "array", "string", "object"]
        );
        assert_eq!(out["key"]["sensitive"], true);
        assert_eq!(out["conn"]["sensitive"], false, "an explicit flag wins");
        assert!(out["name"].get("sensitive").is_none());
        let e = validate_outputs(&json!({"outputs": {"a": {"type": "Blob", "value": 1}}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("type 'Blob' is not one of"), "{e}");
    }
}
