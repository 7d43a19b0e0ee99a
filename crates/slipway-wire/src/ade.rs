//! The ADE data plane's bodies (Microsoft's devcenter data-plane spec,
//! `Microsoft.DevCenter/stable/2024-02-01/environments.json`; reference
//! `ade.md` §5.1), plus the few fields Slipway adds, each marked.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use slipway_core::{ErrorBody, OperationKind, OperationStatus, ProvisioningState};
use utoipa::ToSchema;

/// A page of a list answer: `{value: [...], nextLink?}`. Slipway answers
/// every list in one page, so `nextLink` is never set; clients that follow
/// it (as ADE's SDKs do) work unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Paged<T> {
    /// The items.
    pub value: Vec<T>,
    /// The next page's URL; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

impl<T> Paged<T> {
    /// One page holding every item.
    pub fn all(value: Vec<T>) -> Self {
        Paged {
            value,
            next_link: None,
        }
    }
}

/// ADE `Environment`: the answer of `GET`/`PUT`/`PATCH …/environments/{e}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    /// The environment's URL.
    pub uri: String,
    /// Name, unique in its project.
    pub name: String,
    /// Project environment type it was created with (fixed).
    pub environment_type: String,
    /// Owner's user id.
    pub user: String,
    /// `Creating`, `Updating`, `Deleting`, `Succeeded`, `Failed` or `Canceled`.
    pub provisioning_state: ProvisioningState,
    /// `<deploymentTargetId>/resourceGroups/<project>-<environment>`.
    pub resource_group_id: String,
    /// Catalog of its definition (fixed).
    pub catalog_name: String,
    /// Its environment definition (fixed).
    pub environment_definition_name: String,
    /// Effective parameters: supplied values over the definition's defaults.
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    /// When the scheduled `Delete` action runs (RFC 3339), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_date: Option<String>,
    /// The last operation's error, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// The body of `PUT …/environments/{e}` (create or redeploy).
/// `environmentType`, `catalogName` and `environmentDefinitionName` are
/// required and cannot change on a redeploy; `parameters` replace the
/// previous ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentRequest {
    /// Project environment type.
    #[schema(schema_with = crate::schema::optional_resource_name)]
    pub environment_type: Option<String>,
    /// Catalog holding the definition.
    #[schema(schema_with = crate::schema::optional_resource_name)]
    pub catalog_name: Option<String>,
    /// Environment definition.
    pub environment_definition_name: Option<String>,
    /// Parameter values by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// When to delete the environment (RFC 3339, in the future).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::optional_date_time)]
    pub expiration_date: Option<String>,
}

/// The body of `PATCH …/environments/{e}` (`application/merge-patch+json`):
/// only `expirationDate` may change; `null` clears it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentPatch {
    /// New expiration (RFC 3339, in the future) or `null`.
    #[serde(default)]
    pub expiration_date: Option<String>,
}

/// ADE `EnvironmentOperation` (plus Slipway's `catalogCommit` and `runnerImage`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentOperation {
    /// The operation's URL.
    pub uri: String,
    /// Id (UUID).
    pub operation_id: String,
    /// `Deploy` or `Delete`.
    pub kind: OperationKind,
    /// `NotStarted`, `Running`, `Succeeded`, `Canceled` or `Failed`.
    pub status: OperationStatus,
    /// User who queued it.
    pub created_by_object_id: String,
    /// When it was queued (RFC 3339).
    pub created_time: String,
    /// When its runner started (RFC 3339).
    pub start_time: Option<String>,
    /// When it ended (RFC 3339).
    pub end_time: Option<String>,
    /// Parameters it ran with.
    #[schema(value_type = Object)]
    pub environment_parameters: Map<String, Value>,
    /// Slipway: catalog commit of the definition it ran (none for `local` catalogs).
    pub catalog_commit: Option<String>,
    /// Slipway: runner image it ran in.
    pub runner_image: String,
    /// Its error, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// ADE `OperationDetails`: `GET /projects/{p}/operationstatuses/{o}`, and
/// the 202 answer of a delete or cancel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationDetails {
    /// The status URL.
    pub id: String,
    /// Operation id.
    pub name: String,
    /// `NotStarted`, `Running`, `Succeeded`, `Canceled` or `Failed`.
    pub status: OperationStatus,
    /// The environment's URL.
    pub resource_id: String,
    /// When its runner started (RFC 3339).
    pub start_time: Option<String>,
    /// When it ended (RFC 3339).
    pub end_time: Option<String>,
    /// Its error, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// ADE `EnvironmentAction`: an environment's scheduled `Delete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentAction {
    /// `<environment>-Delete`.
    pub name: String,
    /// The action's URL.
    pub uri: String,
    /// Always `Delete`.
    pub action_type: String,
    /// The next run; absent when it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<EnvironmentActionSchedule>,
    /// Who last set, skipped or delayed it.
    pub last_modified_by: Option<String>,
    /// When (RFC 3339).
    pub last_modified_at: Option<String>,
}

/// `EnvironmentAction.next`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentActionSchedule {
    /// When the action runs (RFC 3339).
    pub scheduled_time: String,
}

/// ADE `EnvironmentOutputs`: `{outputs: {name: {type, value, sensitive}}}`.
/// A `sensitive` output's value is `null` for callers other than the
/// owner and Project Admins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentOutputs {
    /// Outputs by name.
    pub outputs: std::collections::BTreeMap<String, EnvironmentOutput>,
}

/// One output as the runner uploaded it (`ade outputs upload`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentOutput {
    /// `string`, `number`, `int`, `boolean`, `bool`, `array` or `object`.
    #[serde(rename = "type")]
    pub output_type: String,
    /// The value; `null` when hidden.
    #[schema(value_type = Object)]
    pub value: Value,
    /// Whether the value is secret.
    #[serde(default)]
    pub sensitive: bool,
}

/// ADE `EnvironmentType` of a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentType {
    /// The type's URL.
    pub uri: String,
    /// Name.
    pub name: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Where environments of this type deploy (e.g. `/subscriptions/<id>`).
    pub deployment_target_id: String,
    /// `Enabled` or `Disabled`.
    pub status: String,
}

/// ADE data-plane `Catalog`: `{uri, name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Catalog {
    /// The catalog's URL.
    pub uri: String,
    /// Name.
    pub name: String,
}

/// ADE `EnvironmentDefinition` (plus Slipway's `summary`, `version`,
/// `runner` and `catalogCommit`); `templatePath` is relative to the
/// catalog root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentDefinition {
    /// The definition's URL.
    pub uri: String,
    /// `/projects/{p}/catalogs/{c}/environmentDefinitions/{d}`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Catalog.
    pub catalog_name: String,
    /// Description from `environment.yaml`.
    pub description: Option<String>,
    /// Slipway: summary from `environment.yaml`.
    pub summary: Option<String>,
    /// Slipway: version from `environment.yaml`.
    pub version: Option<String>,
    /// Slipway: runner (`ARM`, `Bicep`, `Terraform` or an image).
    pub runner: Option<String>,
    /// Parameters.
    pub parameters: Vec<EnvironmentDefinitionParameter>,
    /// The parameters as a JSON Schema, serialized to a string (as ADE does).
    pub parameters_schema: String,
    /// Template path relative to the catalog root.
    pub template_path: String,
    /// Slipway: catalog commit of this snapshot (none for `local` catalogs).
    pub catalog_commit: Option<String>,
}

/// ADE `EnvironmentDefinitionParameter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentDefinitionParameter {
    /// Id (the key in `parameters`).
    pub id: String,
    /// Display name (the id when none).
    pub name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Default, as a string (ADE's API model: `"true"`, `"3"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// `array`, `boolean`, `integer`, `number`, `object` or `string`.
    #[serde(rename = "type")]
    pub parameter_type: String,
    /// Whether users may not set it.
    pub read_only: bool,
    /// Whether a value is required.
    pub required: bool,
    /// Allowed values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub allowed: Option<Vec<Value>>,
}

/// Path parameters of the ADE data plane, named as in Microsoft's spec.
/// Names of environments, catalogs, definitions and types match
/// `^[a-zA-Z0-9][a-zA-Z0-9-_.]{2,62}$`; `userId` may be `me`.
pub mod paths {
    use serde::Deserialize;
    use utoipa::IntoParams;

    /// `/projects/{projectName}`.
    #[derive(Debug, Deserialize, IntoParams)]
    #[serde(rename_all = "camelCase")]
    #[into_params(parameter_in = Path, rename_all = "camelCase")]
    pub struct ProjectPath {
        /// Project.
        pub project_name: String,
    }

    /// `/projects/{projectName}/users/{userId}`.
    #[derive(Debug, Deserialize, IntoParams)]
    #[serde(rename_all = "camelCase")]
    #[into_params(parameter_in = Path, rename_all = "camelCase")]
    pub struct UserPath {
        /// Project.
        pub project_name: String,
        /// User id, or `me` for the caller.
        pub user_id: String,
    }

    /// `…/users/{userId}/environments/{environmentName}`.
    #[derive(Debug, Deserialize, IntoParams)]
    #[serde(rename_all = "camelCase")]
    #[into_params(parameter_in = Path, rename_all = "camelCase")]
    pub struct EnvironmentPath {
        /// Project.
        pub project_name: String,
        /// Owner's user id, or `me`.
        pub user_id: String,
        /// Environment.
        pub environment_name: String,
    }

    /// `…/environments/{environmentName}/operations/{operationId}`.
    #[derive(Debug, Deserialize, IntoParams)]
    #[serde(rename_all = "camelCase")]
    #[into_params(parameter_in = Path, rename_all = "camelCase")]
    pub struct OperationPath {
        /// Project.
        pub project_name: String,
        /// Owner's user id, or `me`.
        pub user_id: String,
        /// Environment.
        pub environment_name: String,
        /// Operation id (UUID).
        pub operation_id: String,
    }

    /// `…/environments/{environmentName}/actions/{actionName}`.
    #[derive(Debug, Deserialize, IntoParams)]
    #[serde(rename_all = "camelCase")]
    #[into_params(parameter_in = Path, rename_all = "camelCase")]
    pub struct ActionPath {
        /// Project.
        pub project_name: String,
        /// Owner's user id, or `me`.
        pub user_id: String,
        /// Environment.
        pub environment_name: String,
        /// Action: `<environmentName>-Delete`.
        pub action_name: String,
    }

    /// `/projects/{projectName}/operationstatuses/{operationId}`.
    #[derive(Debug, Deserialize, IntoParams)]
    #[serde(rename_all = "camelCase")]
    #[into_params(parameter_in = Path, rename_all = "camelCase")]
    pub struct OperationStatusPath {
        /// Project.
        pub project_name: String,
        /// Operation id (UUID).
        pub operation_id: String,
    }

    /// `/projects/{projectName}/environmentTypes/{environmentTypeName}`.
    #[derive(Debug, Deserialize, IntoParams)]
    #[serde(rename_all = "camelCase")]
    #[into_params(parameter_in = Path, rename_all = "camelCase")]
    pub struct EnvironmentTypePath {
        /// Project.
        pub project_name: String,
        /// Project environment type.
        pub environment_type_name: String,
    }

    /// `/projects/{projectName}/catalogs/{catalogName}`.
    #[derive(Debug, Deserialize, IntoParams)]
    #[serde(rename_all = "camelCase")]
    #[into_params(parameter_in = Path, rename_all = "camelCase")]
    pub struct CatalogPath {
        /// Project.
        pub project_name: String,
        /// Catalog.
        pub catalog_name: String,
    }

    /// `…/catalogs/{catalogName}/environmentDefinitions/{definitionName}`.
    #[derive(Debug, Deserialize, IntoParams)]
    #[serde(rename_all = "camelCase")]
    #[into_params(parameter_in = Path, rename_all = "camelCase")]
    pub struct DefinitionPath {
        /// Project.
        pub project_name: String,
        /// Catalog.
        pub catalog_name: String,
        /// Environment definition.
        pub definition_name: String,
    }
}
