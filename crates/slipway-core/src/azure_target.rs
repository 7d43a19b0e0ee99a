//! Azure deployment targets: what ADE does around an environment's
//! operations when its project environment type deploys to an Azure
//! subscription (reference `ade.md` §5, seeds `002_…` "Resource Group"):
//! the environment's resource group `<project>-<environment>` is created
//! before a deploy and deleted after a successful delete; runner scripts
//! never create or delete it themselves.
//!
//! A target is an Azure subscription when the project environment type's
//! `deploymentTargetId` is `/subscriptions/<id>` with a non-nil id **and**
//! its deployment identity mints tokens (an Entra identity with a
//! `clientSecret`); every other target is left alone.
//!
//! Contract: Azure Resource Manager REST, Resource Groups api-version
//! 2021-04-01 — `PUT {arm}/subscriptions/{s}/resourcegroups/{rg}` with
//! `{location, tags}` (200/201), `DELETE` the same (200/202, then poll the
//! `Location` header until 200/204; 404 when already gone).

use std::collections::BTreeMap;

use crate::credentials::DeploymentIdentity;

/// The Resource Groups API version Slipway speaks.
pub const RESOURCE_GROUP_API_VERSION: &str = "2021-04-01";
/// Azure Resource Manager in Azure's public cloud.
pub const DEFAULT_RESOURCE_MANAGER: &str = "https://management.azure.com";
/// Longest resource group name ARM accepts, characters.
pub const MAX_RESOURCE_GROUP_NAME: usize = 90;
/// The nil subscription id, Slipway's default `deploymentTargetId`
/// (a target that is not Azure).
pub const NIL_SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000000";

/// An environment's Azure resource group, as Slipway manages it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceGroup {
    /// Azure Resource Manager's base URL, without a trailing `/`.
    pub resource_manager: String,
    /// The subscription id.
    pub subscription: String,
    /// `<project>-<environment>`.
    pub name: String,
}

/// `<project>-<environment>` is longer than Azure allows for a resource
/// group name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resource group '{0}' is longer than {MAX_RESOURCE_GROUP_NAME} characters: shorten the project or environment name")]
pub struct ResourceGroupNameTooLong(pub String);

impl ResourceGroup {
    /// The environment's resource group when its type deploys to an Azure
    /// subscription with an identity that mints tokens; `Ok(None)` for any
    /// other target.
    ///
    /// Errors: [`ResourceGroupNameTooLong`] when `<project>-<environment>`
    /// is longer than [`MAX_RESOURCE_GROUP_NAME`].
    pub fn of(
        deployment_target_id: &str,
        identity: Option<&DeploymentIdentity>,
        project: &str,
        environment: &str,
    ) -> Result<Option<ResourceGroup>, ResourceGroupNameTooLong> {
        let Some(id) = identity.filter(|i| i.mints_tokens()) else {
            return Ok(None);
        };
        let Some(subscription) = azure_subscription(deployment_target_id) else {
            return Ok(None);
        };
        let name = resource_group_name(project, environment);
        if name.chars().count() > MAX_RESOURCE_GROUP_NAME {
            return Err(ResourceGroupNameTooLong(crate::echo::truncate(&name)));
        }
        Ok(Some(ResourceGroup {
            resource_manager: id.resource_manager().to_string(),
            subscription: subscription.to_string(),
            name,
        }))
    }

    /// The resource group's URL with its api-version.
    pub fn url(&self) -> String {
        format!(
            "{}/subscriptions/{}/resourcegroups/{}?api-version={RESOURCE_GROUP_API_VERSION}",
            self.resource_manager,
            crate::scrub::percent_encode(&self.subscription),
            crate::scrub::percent_encode(&self.name)
        )
    }

    /// The body of the create request: `{"location", "tags"}`.
    pub fn create_body(
        &self,
        location: &str,
        tags: &BTreeMap<String, String>,
    ) -> serde_json::Value {
        serde_json::json!({"location": location, "tags": tags})
    }
}

/// The Role Assignments API version Slipway speaks.
pub const ROLE_ASSIGNMENTS_API_VERSION: &str = "2022-04-01";

impl ResourceGroup {
    /// The URL of the role assignment giving `principal` (an Entra object
    /// id) role definition `role` (a GUID) on this group. Its name is
    /// derived from the group, principal and role, so assigning again is
    /// the same request (ARM: `PUT {group}/providers/Microsoft.Authorization/
    /// roleAssignments/{name}`).
    pub fn role_assignment_url(&self, principal: &str, role: &str) -> String {
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(
            format!(
                "{}/{}/{}/{}",
                self.subscription,
                self.name,
                principal.to_ascii_lowercase(),
                role.to_ascii_lowercase()
            )
            .as_bytes(),
        );
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&h[..16]);
        let name = uuid::Uuid::from_bytes(bytes).hyphenated();
        format!(
            "{}/subscriptions/{}/resourcegroups/{}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version={ROLE_ASSIGNMENTS_API_VERSION}",
            self.resource_manager,
            crate::scrub::percent_encode(&self.subscription),
            crate::scrub::percent_encode(&self.name)
        )
    }

    /// The body of that request: the subscription's role definition and
    /// the principal.
    pub fn role_assignment_body(&self, principal: &str, role: &str) -> serde_json::Value {
        serde_json::json!({"properties": {
            "roleDefinitionId": format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{role}", self.subscription),
            "principalId": principal,
        }})
    }
}

/// The Azure role assignments a project environment type asks for on each
/// environment's resource group (ADE `creatorRoleAssignment.roles` and
/// `userRoleAssignments` keyed by role definition GUIDs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AzureRoleAssignments {
    /// Role definition GUIDs the environment's creator gets.
    pub creator: Vec<String>,
    /// Entra object id → role definition GUIDs.
    pub users: BTreeMap<String, Vec<String>>,
}

impl AzureRoleAssignments {
    /// `(principal, role)` pairs for an environment created by `creator`,
    /// and whether the creator's roles were left out because `creator` is
    /// not an Entra object id (a GUID).
    pub fn for_creator(&self, creator: &str) -> (Vec<(String, String)>, bool) {
        let mut out = Vec::new();
        let creator_is_oid = crate::names::is_guid(creator);
        if creator_is_oid {
            for r in &self.creator {
                out.push((creator.to_string(), r.clone()));
            }
        }
        for (principal, roles) in &self.users {
            for r in roles {
                if !out.contains(&(principal.clone(), r.clone())) {
                    out.push((principal.clone(), r.clone()));
                }
            }
        }
        (out, !creator_is_oid && !self.creator.is_empty())
    }
}

/// ADE's resource group name for an environment: `<project>-<environment>`.
pub fn resource_group_name(project: &str, environment: &str) -> String {
    format!("{project}-{environment}")
}

/// The subscription id of a `deploymentTargetId` of the form
/// `/subscriptions/<id>` (nothing after it), unless it is the nil id.
pub fn azure_subscription(deployment_target_id: &str) -> Option<&str> {
    let id = deployment_target_id
        .trim_end_matches('/')
        .strip_prefix("/subscriptions/")?;
    let ok = !id.is_empty()
        && !id.contains('/')
        && id != NIL_SUBSCRIPTION
        && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    ok.then_some(id)
}

/// Reads ARM's error answer (`{"error": {"code", "message"}}`) as
/// `code: message`; any other body is echoed, bounded.
pub fn arm_error(status: u16, body: &[u8]) -> String {
    let parsed: Option<(String, String)> = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            Some((
                e.get("code")?.as_str()?.to_string(),
                e.get("message")?.as_str()?.to_string(),
            ))
        });
    match parsed {
        Some((code, message)) => format!("{code}: {message}"),
        None => format!(
            "status {status}: {}",
            crate::echo::truncate(&String::from_utf8_lossy(body))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_assignments_are_named_by_group_principal_and_role_and_creators_need_an_object_id() {
        let rg = ResourceGroup {
            resource_manager: "https://arm".into(),
            subscription: "s1".into(),
            name: "demo-web".into(),
        };
        let a = rg.role_assignment_url("AAAA0000-0000-4000-8000-000000000001", "r1");
        assert_eq!(
            a,
            rg.role_assignment_url("aaaa0000-0000-4000-8000-000000000001", "R1")
        );
        assert_ne!(
            a,
            rg.role_assignment_url("aaaa0000-0000-4000-8000-000000000002", "r1")
        );
        let name = a.rsplit('/').next().unwrap().split('?').next().unwrap();
        assert!(crate::names::is_guid(name), "{a}");
        let roles = AzureRoleAssignments {
            creator: vec!["owner-guid".into()],
            users: [("u-oid".to_string(), vec!["reader-guid".to_string()])].into(),
        };
        let oid = "cccccccc-0000-4000-8000-00000000000c";
        let (with_creator, left_out) = roles.for_creator(oid);
        assert_eq!(with_creator.len(), 2);
        assert!(!left_out);
        let (only_users, left_out) = roles.for_creator("alice");
        assert_eq!(
            only_users,
            [("u-oid".to_string(), "reader-guid".to_string())]
        );
        assert!(left_out, "alice has no Entra object id");
    }
    use serde_json::json;

    fn entra(extra: serde_json::Value) -> DeploymentIdentity {
        let mut v = json!({"clientId": "c", "tenantId": "t", "clientSecret": "s"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        DeploymentIdentity::from_json(&v).unwrap()
    }

    #[test]
    fn only_a_real_subscription_with_an_entra_identity_is_an_azure_target() {
        let sub = "/subscriptions/11111111-2222-3333-4444-555555555555";
        let id = entra(json!({}));
        let rg = ResourceGroup::of(sub, Some(&id), "demo", "app")
            .unwrap()
            .unwrap();
        assert_eq!(rg.name, "demo-app");
        assert_eq!(
            rg.url(),
            "https://management.azure.com/subscriptions/11111111-2222-3333-4444-555555555555/resourcegroups/demo-app?api-version=2021-04-01"
        );
        let plain =
            DeploymentIdentity::from_json(&json!({"clientId": "c", "tenantId": "t"})).unwrap();
        for (target, identity) in [
            (sub, None),
            (sub, Some(&plain)),
            (
                "/subscriptions/00000000-0000-0000-0000-000000000000",
                Some(&id),
            ),
            ("/subscriptions/abc/resourceGroups/x", Some(&id)),
            ("/subscriptions/../x", Some(&id)),
            ("aws:123456789012", Some(&id)),
        ] {
            assert_eq!(
                ResourceGroup::of(target, identity, "demo", "app"),
                Ok(None),
                "{target}"
            );
        }
        let e = ResourceGroup::of(sub, Some(&id), &"p".repeat(60), &"e".repeat(40)).unwrap_err();
        assert!(e.to_string().contains("longer than 90"), "{e}");
    }

    #[test]
    fn arm_errors_read_as_code_and_message() {
        assert_eq!(
            arm_error(
                403,
                br#"{"error":{"code":"AuthorizationFailed","message":"no write"}}"#
            ),
            "AuthorizationFailed: no write"
        );
        assert_eq!(arm_error(502, b"bad gateway"), "status 502: bad gateway");
    }
}
