//! VM image templates (Azure VM Image Builder model, reference
//! `image-builder.md`): the template resource, runs, run outputs, the image
//! store and platform images. The template document itself is
//! `slipway_core::images::template::ImageTemplate`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use slipway_core::images::run::{RunState, RunSubState};
use utoipa::ToSchema;

/// AIB `imageTemplates` resource: the stored document plus read-only fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageTemplateResource {
    /// `/slipway/imageTemplates/<name>`.
    pub id: String,
    /// Name.
    pub name: String,
    /// `Microsoft.VirtualMachineImages/imageTemplates`.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// Region (kept, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub tags: Option<Value>,
    /// Managed identity (kept, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub identity: Option<Value>,
    /// The template's `properties` (`TemplateProperties`) plus
    /// `provisioningState` and, once it ran, `lastRunStatus` (`LastRunStatus`).
    #[schema(value_type = Object)]
    pub properties: Value,
}

/// AIB `lastRunStatus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastRunStatus {
    /// Run id.
    pub run_id: String,
    /// When it started (RFC 3339).
    pub start_time: String,
    /// When it ended (RFC 3339; `0001-01-01T00:00:00Z` while it runs, as AIB).
    pub end_time: String,
    /// State.
    pub run_state: RunState,
    /// Sub-state.
    pub run_sub_state: RunSubState,
    /// Why it failed, else empty.
    pub message: String,
}

/// One run of an image template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageRun {
    /// `r1`, `r2`, ….
    pub run_id: String,
    /// Template name.
    pub template: String,
    /// AIB `runState`.
    pub run_state: RunState,
    /// AIB `runSubState`.
    pub run_sub_state: RunSubState,
    /// Why the run failed, else empty.
    pub message: String,
    /// The staging folder while it exists.
    pub staging: Option<String>,
    /// Run outputs `[{name, type, artifactId?, artifactUri?, sha256, size}]`.
    #[schema(value_type = Vec<Object>)]
    pub outputs: Value,
    /// The resolved source (`{publisher, offer, sku, version}` for platform images).
    #[schema(value_type = Object)]
    pub source: Value,
    /// A cancel was requested.
    pub cancel_requested: bool,
    /// RFC 3339.
    pub create_time: String,
    /// RFC 3339.
    pub start_time: Option<String>,
    /// RFC 3339.
    pub end_time: Option<String>,
}

/// AIB `runOutputs` resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunOutput {
    /// The distributor's `runOutputName`.
    pub name: String,
    /// `Microsoft.VirtualMachineImages/imageTemplates/runOutputs`.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// `/slipway/imageTemplates/<t>/runOutputs/<name>`.
    pub id: String,
    /// `{artifactId?, artifactUri?, provisioningState, sha256, size, …}`.
    #[schema(value_type = Object)]
    pub properties: Value,
}

/// AIB `triggers` resource (`…/imageTemplates/{t}/triggers/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImageTemplateTrigger {
    /// The trigger's name.
    pub name: String,
    /// `Microsoft.VirtualMachineImages/imageTemplates/triggers`.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// `/slipway/imageTemplates/<t>/triggers/<name>`.
    pub id: String,
    /// `{kind: "SourceImage", status {code, message, time}, provisioningState}`.
    pub properties: slipway_core::images::trigger::TriggerProperties,
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmImage {
    /// Canonical id.
    pub id: String,
    /// Gallery; absent for managed images.
    pub gallery: Option<String>,
    /// Managed image name or gallery image definition.
    pub definition: String,
    /// Gallery version `x.y.z`.
    pub version: Option<String>,
    /// Left out of `latest`.
    pub exclude_from_latest: bool,
    /// The raw disk file.
    pub path: String,
    /// Lower-case hex sha256 of the raw disk.
    pub sha256: String,
    /// Bytes.
    pub size: i64,
    /// The source image's version, when known.
    pub source_version: Option<String>,
    /// The template that produced it.
    pub template: Option<String>,
    /// The run that produced it.
    pub run_id: Option<String>,
    /// `artifactTags`.
    #[schema(value_type = Object)]
    pub tags: Value,
    /// RFC 3339.
    pub create_time: String,
    /// Azure's `hyperVGeneration`, read off the disk as it was stored:
    /// `V1` (BIOS boot, MBR) or `V2` (UEFI boot, an EFI System Partition).
    /// A gallery image definition holds versions of one generation.
    #[serde(rename = "hyperVGeneration")]
    pub hyper_v_generation: String,
}

/// A platform image a template may start from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlatformImage {
    /// Publisher (`Debian`, `Canonical`).
    pub publisher: String,
    /// Offer (`debian-12`, `0001-com-ubuntu-server-jammy`).
    pub offer: String,
    /// SKU (`12`, `12-gen2`, `22_04-lts`, `22_04-lts-gen2`).
    pub sku: String,
    /// Azure's `hyperVGeneration`: `V1` (BIOS boot, MBR) or `V2` (UEFI
    /// boot, GPT with an EFI System Partition).
    #[serde(rename = "hyperVGeneration")]
    pub hyper_v_generation: String,
    /// Versions built on this host, oldest first.
    pub versions: Vec<String>,
    /// Whether a template can use it now: a version is built, or the
    /// configured mirror serves its suite (`latest` builds today's
    /// version); Ubuntu needs `serve --ubuntu-mirror`.
    pub available: bool,
}

/// `PUT /vmImages/artifacts` (201): the upload's name for a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UploadedArtifact {
    /// `upload:<sha256>`.
    pub uri: String,
    /// Lower-case hex sha256.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}
