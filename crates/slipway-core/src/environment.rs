//! Environments, operations and their state machines.
//!
//! Contract: ADE data-plane `Environment.provisioningState` and
//! `EnvironmentOperation {kind: Deploy|Delete, status: NotStarted|Running|Succeeded|Canceled|Failed}`
//! (reference `ade.md` §5.1).

use serde::{Deserialize, Serialize};

/// Output types the runner may upload (`ade outputs upload`): ADE documents
/// `string`, `int`, `boolean`, `array`, `object`; its samples also emit
/// `number` and `bool`; the official ARM-Bicep runner passes ARM's own
/// types through (`String`, `Object`, `Array`, `SecureString`,
/// `SecureObject`; it maps only `Int` and `Bool`). Compared without regard
/// to case; stored as the data plane's [`output_type`] names.
pub const OUTPUT_TYPES: [&str; 9] = [
    "string",
    "number",
    "int",
    "boolean",
    "bool",
    "array",
    "object",
    "securestring",
    "secureobject",
];

/// The data-plane type (`string`, `number`, `boolean`, `array`, `object`,
/// the `EnvironmentOutputType` enum of the ADE data-plane spec) of an
/// uploaded output type, and whether the type itself makes the value
/// sensitive (ARM's `SecureString`, `SecureObject`). `None` for a type
/// that is not one of [`OUTPUT_TYPES`] (any case).
pub fn output_type(uploaded: &str) -> Option<(&'static str, bool)> {
    Some(match uploaded.to_ascii_lowercase().as_str() {
        "string" => ("string", false),
        "securestring" => ("string", true),
        "number" | "int" => ("number", false),
        "boolean" | "bool" => ("boolean", false),
        "array" => ("array", false),
        "object" => ("object", false),
        "secureobject" => ("object", true),
        _ => return None,
    })
}

/// An environment's `provisioningState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ProvisioningState {
    /// First deploy queued or running.
    Creating,
    /// Redeploy queued or running.
    Updating,
    /// Delete queued or running.
    Deleting,
    /// Last operation succeeded.
    Succeeded,
    /// Last operation failed; see `error`.
    Failed,
    /// Last operation was canceled.
    Canceled,
}

impl ProvisioningState {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ProvisioningState::Creating => "Creating",
            ProvisioningState::Updating => "Updating",
            ProvisioningState::Deleting => "Deleting",
            ProvisioningState::Succeeded => "Succeeded",
            ProvisioningState::Failed => "Failed",
            ProvisioningState::Canceled => "Canceled",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Creating,
            Self::Updating,
            Self::Deleting,
            Self::Succeeded,
            Self::Failed,
            Self::Canceled,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// The state an environment enters when an operation of `kind` is queued.
    /// `exists` is false only for an environment that has never been deployed.
    pub fn on_queued(kind: OperationKind, exists: bool) -> Self {
        match (kind, exists) {
            (OperationKind::Delete, _) => ProvisioningState::Deleting,
            (OperationKind::Deploy, false) => ProvisioningState::Creating,
            (OperationKind::Deploy, true) => ProvisioningState::Updating,
        }
    }

    /// The state after an operation ends with `status`; `None` means the
    /// environment is gone (a successful delete).
    pub fn on_finished(kind: OperationKind, status: OperationStatus) -> Option<Self> {
        match (kind, status) {
            (OperationKind::Delete, OperationStatus::Succeeded) => None,
            (_, OperationStatus::Succeeded) => Some(ProvisioningState::Succeeded),
            (_, OperationStatus::Canceled) => Some(ProvisioningState::Canceled),
            _ => Some(ProvisioningState::Failed),
        }
    }
}

/// `EnvironmentOperation.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum OperationKind {
    /// Create or redeploy.
    Deploy,
    /// Tear down.
    Delete,
}

impl OperationKind {
    /// The wire spelling (`Deploy`, `Delete`).
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Deploy => "Deploy",
            OperationKind::Delete => "Delete",
        }
    }

    /// `ADE_OPERATION_NAME` for this kind: `deploy` or `delete`.
    pub fn operation_name(self) -> &'static str {
        match self {
            OperationKind::Deploy => "deploy",
            OperationKind::Delete => "delete",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Deploy" => Some(OperationKind::Deploy),
            "Delete" => Some(OperationKind::Delete),
            _ => None,
        }
    }
}

/// `EnvironmentOperation.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum OperationStatus {
    /// Queued.
    NotStarted,
    /// Runner container started.
    Running,
    /// Runner exited 0.
    Succeeded,
    /// Canceled by a user.
    Canceled,
    /// Runner failed, timed out or could not start.
    Failed,
}

impl OperationStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationStatus::NotStarted => "NotStarted",
            OperationStatus::Running => "Running",
            OperationStatus::Succeeded => "Succeeded",
            OperationStatus::Canceled => "Canceled",
            OperationStatus::Failed => "Failed",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::NotStarted,
            Self::Running,
            Self::Succeeded,
            Self::Canceled,
            Self::Failed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// Whether no further transition can happen.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OperationStatus::Succeeded | OperationStatus::Canceled | OperationStatus::Failed
        )
    }
}

/// ADE `CloudErrorBody` subset: `{code, message}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `DeploymentError`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

impl ErrorBody {
    /// Builds an error body.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            code: code.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_machine() {
        use OperationKind::*;
        use OperationStatus::*;
        assert_eq!(
            ProvisioningState::on_queued(Deploy, false),
            ProvisioningState::Creating
        );
        assert_eq!(
            ProvisioningState::on_queued(Deploy, true),
            ProvisioningState::Updating
        );
        assert_eq!(
            ProvisioningState::on_queued(Delete, true),
            ProvisioningState::Deleting
        );
        assert_eq!(ProvisioningState::on_finished(Delete, Succeeded), None);
        assert_eq!(
            ProvisioningState::on_finished(Delete, Failed),
            Some(ProvisioningState::Failed)
        );
        assert_eq!(
            ProvisioningState::on_finished(Deploy, Canceled),
            Some(ProvisioningState::Canceled)
        );
        for s in [NotStarted, Running, Succeeded, Canceled, Failed] {
            assert_eq!(OperationStatus::parse(s.as_str()), Some(s));
        }
        assert!(!Running.is_terminal() && Failed.is_terminal());
    }
}
