//! ADE's error answer: `{"error": {code, message, details?}}` (devcenter
//! data-plane `CloudError`), the body of every 4xx and 5xx answer.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CloudError {
    /// What went wrong.
    pub error: CloudErrorBody,
}

/// ADE `CloudErrorBody`: a machine-readable `code` (e.g.
/// `ParameterValueInvalid`, `EnvironmentNotFound`), a message naming the
/// field, the value and what was expected, and per-item `details` (at most
/// 20 plus one `TooManyProblems` entry counting the rest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CloudErrorBody {
    /// Machine-readable code.
    pub code: String,
    /// Human-readable message (at most 4 KiB).
    pub message: String,
    /// The property or parameter the error is about, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Per-item problems, each a `CloudErrorBody` of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion)]
    pub details: Vec<CloudErrorBody>,
}

impl CloudErrorBody {
    /// An error without target or details.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        CloudErrorBody {
            code: code.into(),
            message: message.into(),
            target: None,
            details: Vec::new(),
        }
    }
}
