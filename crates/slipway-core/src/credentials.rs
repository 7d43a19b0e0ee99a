//! Deployment identities: the credential set a project environment type
//! hands to the runners of its environments' operations.
//!
//! Contract: ADE gives runners the project environment type's managed
//! identity as `ADE_CLIENT_ID`, `ADE_TENANT_ID` and `ADE_SUBSCRIPTION_ID`
//! (reference `ade.md` §3). Slipway has no cloud identity service, so the
//! operator stores the identity as a secret of kind `deploymentIdentity`
//! whose value is this JSON document; its `variables` (e.g.
//! `ARM_CLIENT_SECRET`) are set in the runner container's environment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Secret kind that holds a [`DeploymentIdentity`].
pub const DEPLOYMENT_IDENTITY_KIND: &str = "deploymentIdentity";

/// A deployment identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentIdentity {
    /// `ADE_CLIENT_ID`.
    pub client_id: String,
    /// `ADE_TENANT_ID`.
    pub tenant_id: String,
    /// `ADE_SUBSCRIPTION_ID`; default: taken from the project environment
    /// type's `deploymentTargetId` (`/subscriptions/<id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// Extra variables set in the runner, name → value (all treated as secret).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

impl DeploymentIdentity {
    /// Parses and checks an identity document.
    ///
    /// Errors: a message naming the field, the value and what was expected
    /// (unknown keys, empty ids, variable names that are not
    /// `[A-Za-z_][A-Za-z0-9_]*` or start with the reserved `ADE_`).
    pub fn from_json(v: &Value) -> Result<DeploymentIdentity, String> {
        let id: DeploymentIdentity = serde_json::from_value(v.clone()).map_err(|e| {
            format!("deployment identity: {e}; expected {{clientId, tenantId, subscriptionId?, variables?: {{NAME: value}}}}")
        })?;
        for (field, value) in [("clientId", &id.client_id), ("tenantId", &id.tenant_id)] {
            if value.trim().is_empty() {
                return Err(format!(
                    "deployment identity: '{field}' is empty: expected an id"
                ));
            }
        }
        for name in id.variables.keys() {
            let ok = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(format!("deployment identity: variable name '{name}' is not valid: expected letters, digits and '_', not starting with a digit"));
            }
            if name.starts_with("ADE_") {
                return Err(format!("deployment identity: variable name '{name}' is reserved: 'ADE_' variables are set by Slipway"));
            }
        }
        Ok(id)
    }

    /// Every value a log must never show: the variables' values.
    pub fn secret_values(&self) -> Vec<String> {
        self.variables.values().cloned().collect()
    }
}

/// The subscription id in a `deploymentTargetId` (`/subscriptions/<id>[/…]`), else `""`.
pub fn subscription_of(deployment_target_id: &str) -> String {
    deployment_target_id
        .split('/')
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identities_are_checked_by_field() {
        let ok = DeploymentIdentity::from_json(&json!({"clientId": "c", "tenantId": "t", "variables": {"ARM_CLIENT_SECRET": "s3cret"}})).unwrap();
        assert_eq!(ok.secret_values(), vec!["s3cret".to_string()]);
        let e = DeploymentIdentity::from_json(
            &json!({"clientId": "c", "tenantId": "t", "variables": {"ADE_X": "v"}}),
        )
        .unwrap_err();
        assert!(e.contains("'ADE_X'"), "{e}");
        let e =
            DeploymentIdentity::from_json(&json!({"clientId": "c", "tenantId": " "})).unwrap_err();
        assert!(e.contains("'tenantId'"), "{e}");
        let e =
            DeploymentIdentity::from_json(&json!({"clientId": "c", "tenantId": "t", "secret": 1}))
                .unwrap_err();
        assert!(e.contains("secret"), "{e}");
        assert_eq!(
            subscription_of("/subscriptions/abc/resourceGroups/x"),
            "abc"
        );
    }
}
