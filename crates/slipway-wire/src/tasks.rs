//! Container image tasks (ACR Tasks model, reference `acr-tasks.md`):
//! runs, the embedded registry and uploads.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use slipway_core::tasks::TaskRunStatus;
use utoipa::ToSchema;

/// A task run (ACR `Run`): what the API answers and the store keeps;
/// `request` carries `(secure)` in place of secret values in answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskRun {
    /// `ca1`, `ca2`, …
    pub run_id: String,
    /// Task name; `None` for quick builds and runs.
    pub task: Option<String>,
    /// `QuickBuild` | `QuickRun` | `AutoBuild` | `AutoRun`.
    pub run_type: String,
    /// Status (ACR `RunStatus`).
    pub status: TaskRunStatus,
    /// What to run (shape owned by `slipway-tasks`).
    #[schema(value_type = Object)]
    pub request: Value,
    /// Trigger provenance: `{"type": "manual"|"timer"|"imageUpdate"|"commit", …}`.
    #[schema(value_type = Object)]
    pub trigger: Value,
    /// Images pushed: `[{registry, repository, tag, digest}]`.
    #[schema(value_type = Vec<Object>)]
    pub output_images: Value,
    /// Base images found: acb's dependency list.
    #[schema(value_type = Vec<Object>)]
    pub dependencies: Value,
    /// Why the run did not succeed.
    pub run_error_message: Option<String>,
    /// Whether a cancel was requested.
    pub cancel_requested: bool,
    /// The log was deleted after the retention period.
    pub log_expired: bool,
    /// RFC 3339.
    pub create_time: String,
    /// RFC 3339.
    pub start_time: Option<String>,
    /// RFC 3339.
    pub finish_time: Option<String>,
}

/// `GET /imageTasks/registry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryInfo {
    /// `host:port` of the embedded registry.
    pub login_server: String,
}

/// `POST /imageTasks/registry/login`: the registry's user account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryLogin {
    /// `host:port` of the embedded registry.
    pub login_server: String,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// `PUT /imageTasks/contexts` (201): the uploaded context's name for `context`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UploadedContext {
    /// `upload:<sha256>`.
    pub context: String,
    /// Bytes.
    pub size: u64,
}

/// A webhook delivery that started no run: why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// What happened (`pong`, why no run started).
    pub message: String,
}
