//! Catalogs, their definitions as administrators see them, and secrets
//! (`/admin/catalogs…`, `/admin/secrets…`, and the same under
//! `/admin/projects/{p}`). Names follow ADE's `Catalog` resource
//! (reference `ade.md` §5.3).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::ade::EnvironmentDefinition;

/// Where a catalog's definitions come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogSource {
    /// `local` (a folder on the server, beneath a `--local-catalog-root`) or `git`.
    pub kind: String,
    /// Folder path or git URL (`https://`, `ssh://`, `git://`, `file://`, scp-like `user@host:repo`).
    pub uri: String,
    /// Git branch (git only; absent = the remote's default branch).
    pub branch: Option<String>,
    /// Folder inside the source that holds definition folders.
    pub path: Option<String>,
}

/// A catalog with its last sync (`GET /admin/catalogs/{c}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogResource {
    /// Name, unique per server.
    pub name: String,
    /// Owning project; absent for a dev-center catalog.
    pub project: Option<String>,
    /// Source.
    pub source: CatalogSource,
    /// `Manual` or `Scheduled`.
    pub sync_type: String,
    /// Secret used to fetch the source (token or SSH key).
    pub secret_identifier: Option<String>,
    /// `NotSynced`, `InProgress`, `Succeeded`, `Failed` or `Canceled`.
    pub sync_state: String,
    /// End of the last sync attempt (RFC 3339).
    pub last_sync_time: Option<String>,
    /// Commit of the current snapshot.
    pub last_sync_commit: Option<String>,
    /// ADE `lastSyncStats` `{added, updated, unchanged, removed, validationErrors, synchronizationErrors}`.
    #[schema(value_type = Option<Object>)]
    pub last_sync_stats: Option<Value>,
    /// `Connected` or `Disconnected` after the last attempt to reach the source.
    pub connection_state: Option<String>,
    /// Last time the source was reached (RFC 3339).
    pub last_connection_time: Option<String>,
    /// ADE sync error details `{operationError, conflicts[], errors[]}`.
    #[schema(value_type = Option<Object>)]
    pub sync_error_details: Option<Value>,
}

/// The body of `PUT …/catalogs/{c}` in Slipway's flat form. ADE's form
/// `{"properties": {"gitHub"|"adoGit": {uri, branch, path, secretIdentifier}, "syncType"}}`
/// is accepted too ([`CatalogBody`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogRequest {
    /// `git` (default) or `local` (DevCenter Admins only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::catalog_kind)]
    pub kind: Option<String>,
    /// Git URL or folder.
    #[schema(min_length = 1)]
    pub uri: String,
    /// Git branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Folder inside the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Secret (token or SSH key) of the catalog's scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_identifier: Option<String>,
    /// `Scheduled` (default) or `Manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::sync_type)]
    pub sync_type: Option<String>,
}

/// ADE's catalog body: `{"properties": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdeCatalogRequest {
    /// ADE `Catalog.properties`.
    pub properties: AdeCatalogProperties,
}

/// ADE `Catalog.properties`: exactly one of `gitHub` and `adoGit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdeCatalogProperties {
    /// A GitHub repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_hub: Option<AdeGitCatalog>,
    /// An Azure DevOps repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ado_git: Option<AdeGitCatalog>,
    /// `Scheduled` (default) or `Manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::sync_type)]
    pub sync_type: Option<String>,
    /// Tags (kept by ADE, ignored here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub tags: Option<Value>,
}

/// ADE `GitCatalog`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdeGitCatalog {
    /// Repository URL.
    pub uri: String,
    /// Branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Secret (token or SSH key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_identifier: Option<String>,
}

/// Either catalog body form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CatalogBody {
    /// ADE's form.
    Ade(AdeCatalogRequest),
    /// Slipway's flat form.
    Flat(CatalogRequest),
}

/// A definition as administrators see it: the data-plane shape plus its
/// validation by the last sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogDefinition {
    /// The data-plane shape.
    #[serde(flatten)]
    pub definition: EnvironmentDefinition,
    /// `Succeeded` or `Failed`.
    pub validation_status: String,
    /// ADE error details `[{code, message}]`.
    #[schema(value_type = Vec<Object>)]
    pub error_details: Vec<Value>,
    /// Warnings (e.g. unknown manifest keys).
    pub warnings: Vec<String>,
    /// Folder in the catalog.
    pub folder: String,
    /// sha256 of the stored content zip.
    pub content_digest: String,
}

/// `POST …/environmentDefinitions/{d}/getErrorDetails`: `{errors: [{code, message}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DefinitionErrors {
    /// The validation errors.
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<Value>,
}

/// Metadata of a stored secret; the value is never part of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretMeta {
    /// Name.
    pub name: String,
    /// `token`, `sshKey`, `registry`, `deploymentIdentity`, …
    pub kind: String,
    /// Hosts a token may be sent to; empty (and left out) = any https host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change of the value (RFC 3339).
    pub updated_at: String,
}

/// The body of `PUT …/secrets/{s}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRequest {
    /// `generic` (default), `token`, `sshKey`; at the dev center also
    /// `deploymentIdentity` and `registry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::secret_kind)]
    pub kind: Option<String>,
    /// A string, or for `deploymentIdentity` `{clientId, tenantId,
    /// subscriptionId?, variables?}` and for `registry` `{server, username, password}`.
    #[schema(schema_with = crate::schema::secret_value)]
    pub value: Value,
    /// `token` only: the hosts it may be sent to (https; http only to loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
}

/// ADE's catalog sync error details (`getSyncErrorDetails`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncErrorDetails {
    /// Why the last sync failed as a whole, `{code, message}`; `null` when it did not.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub operation_error: Option<Value>,
    /// Definitions whose names clash, `[{path, name}]`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub conflicts: Vec<Value>,
    /// Definitions that failed validation, `[{path, errorDetails: [{code, message}]}]`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<Value>,
}

/// The answer of a catalog action: the catalog after `sync`, or the
/// details of `getSyncErrorDetails`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CatalogActionResult {
    /// After `sync`.
    Catalog(Box<CatalogResource>),
    /// `getSyncErrorDetails`.
    SyncErrorDetails(SyncErrorDetails),
}
