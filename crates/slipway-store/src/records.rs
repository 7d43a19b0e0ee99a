//! Shared row helpers and the stored-secret metadata row.

use serde::Serialize;

use crate::StoreError;

pub(crate) fn corrupt(what: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        message: e.to_string(),
    }
}

pub(crate) fn json_col<T: serde::de::DeserializeOwned>(
    what: &'static str,
    s: Option<String>,
) -> Result<Option<T>, StoreError> {
    s.map(|s| serde_json::from_str(&s).map_err(|e| corrupt(what, e)))
        .transpose()
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Metadata of a stored secret; the value is never part of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretMeta {
    /// Name.
    pub name: String,
    /// `token`, `sshKey`, …
    pub kind: String,
    /// Hosts a token may be sent to; empty (and left out) = any https host.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Creation time.
    pub created_at: String,
    /// Last change of the value.
    pub updated_at: String,
}
