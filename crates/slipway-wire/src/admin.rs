//! Slipway's control plane (`/admin/…`, `/audit`): projects, environment
//! types, project environment types (ADE `ProjectEnvironmentType`
//! properties, reference `ade.md` §5.3), role assignments, API tokens and
//! the audit log. The store keeps several of these as its records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use slipway_core::isolation::RunnerPolicy;
use utoipa::ToSchema;

/// A project (`PUT /admin/projects/{p}` answer, `GET /admin/projects` items).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Location reported to runners as `ADE_ENVIRONMENT_LOCATION` (default `local`).
    pub location: String,
}

/// The body of `PUT /admin/projects/{p}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectRequest {
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Location (default `local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// A dev-center environment type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DevCenterEnvironmentType {
    /// Name.
    pub name: String,
    /// Display name.
    pub display_name: Option<String>,
}

/// The body of `PUT /admin/environmentTypes/{t}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentTypeRequest {
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// Limits of a project environment type; absent = the server default (or none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PetLimits {
    /// Longest an operation may run, in minutes.
    pub max_runtime_minutes: Option<i64>,
    /// Largest total size of an environment's stored files, in MiB.
    #[serde(rename = "maxStorageMB")]
    pub max_storage_mb: Option<i64>,
    /// Most environments of this type one user may own.
    pub max_environments_per_user: Option<i64>,
}

/// `{roles: {<role>: {}}}` (ADE's role map; the values are empty objects).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleMap {
    /// Role names (`Deployment Environments User`, …) or Azure role
    /// definition GUIDs (assigned on the resource group of an Azure target)
    /// to `{}`.
    #[schema(value_type = BTreeMap<String, Object>)]
    pub roles: BTreeMap<String, Value>,
}

/// The body of `PUT /admin/projects/{p}/environmentTypes/{t}`: ADE
/// `ProjectEnvironmentType.properties` (also accepted wrapped in
/// `{"properties": …}`) plus Slipway's identity, limits and runner policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectEnvironmentTypeRequest {
    /// `/subscriptions/<id>`; default all zeros.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_target_id: Option<String>,
    /// `Enabled` (default) or `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::enabled_status)]
    pub status: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Roles the creator gets on each environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator_role_assignment: Option<RoleMap>,
    /// `{<user>: {roles: {<role>: {}}}}`: assignments at this type's scope (replaced whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_role_assignments: Option<BTreeMap<String, RoleMap>>,
    /// Name of a `deploymentIdentity` secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_identity: Option<String>,
    /// Limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<PetLimits>,
    /// Runner confinement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<RunnerPolicy>)]
    pub runner_policy: Option<Value>,
}

/// A project environment type as the control plane shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectEnvironmentType {
    /// Environment type name.
    pub name: String,
    /// Project.
    pub project: String,
    /// Deployment target (`/subscriptions/<id>`).
    pub deployment_target_id: String,
    /// `Enabled` or `Disabled`.
    pub status: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Roles the creator gets on each environment.
    pub creator_role_assignment: RoleMap,
    /// Users' roles at this type's scope.
    pub user_role_assignments: BTreeMap<String, RoleMap>,
    /// Name of the deployment identity secret.
    pub deployment_identity: Option<String>,
    /// Limits.
    pub limits: PetLimits,
    /// Runner confinement.
    pub runner_policy: RunnerPolicy,
    /// Environments of this type.
    pub environment_count: i64,
    /// Always `Succeeded` (ADE's field; changes apply at once).
    pub provisioning_state: String,
}

/// A role assignment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignment {
    /// Id (UUID).
    pub id: String,
    /// User id.
    pub principal_id: String,
    /// Role name.
    pub role: String,
    /// Scope path (`/`, `/projects/{p}`, `/projects/{p}/environmentTypes/{t}`).
    pub scope: String,
}

/// The body of `POST /admin/roleAssignments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleAssignmentRequest {
    /// User id.
    #[schema(min_length = 1)]
    pub principal_id: String,
    /// Role name: one of [`slipway_core::access::Role::ALL`]'s names (any
    /// case), or ADE's `DevCenter Project Admin`.
    #[schema(schema_with = role_name_schema)]
    pub role: String,
    /// Scope path: `/`, `/projects/{p}` or `/projects/{p}/environmentTypes/{t}`.
    #[schema(pattern = r"^/(projects/[^/]+(/environmentTypes/[^/]+)?/?)?$")]
    pub scope: String,
}

/// The role names the server accepts, as a string enumeration.
fn role_name_schema() -> utoipa::openapi::schema::Object {
    use slipway_core::access::Role;
    let mut names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
    names.push("DevCenter Project Admin");
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(names))
        .build()
}

/// An API token's metadata (never its value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenMeta {
    /// Public id.
    pub id: String,
    /// User the token authenticates as.
    pub user: String,
    /// Label.
    pub name: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Expiry (RFC 3339); absent = never.
    pub expires_at: Option<String>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<String>,
}

/// The answer of `POST /admin/tokens`: the metadata and, this once, the token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IssuedToken {
    /// Metadata.
    #[serde(flatten)]
    pub meta: TokenMeta,
    /// `slw_<id>_<secret>`: shown only in this answer.
    pub token: String,
}

/// The body of `POST /admin/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    /// User (default the caller; another user needs DevCenter Admin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Expiry (RFC 3339, in the future); excludes `expiresInDays`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Expiry in days from now (1 to 36,500); excludes `expiresAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 36500)]
    pub expires_in_days: Option<u32>,
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// When (RFC 3339).
    pub time: String,
    /// Who.
    pub user: String,
    /// What: `METHOD /route` or `operation.start` / `operation.end`.
    pub action: String,
    /// On what: request path or operation id.
    pub target: String,
    /// Project concerned, if any.
    pub project: Option<String>,
    /// From where: client address, or `scheduler`.
    pub source: Option<String>,
    /// Result: HTTP status or operation status.
    pub result: String,
}
