//! An environment's Azure resource group, made before a deploy and removed
//! after a successful delete, with a token of the project environment
//! type's deployment identity (contract: [`slipway_core::azure_target`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_core::azure_target::{arm_error, ResourceGroup};
use slipway_core::credentials::DeploymentIdentity;
use slipway_core::identity::ARM_AUDIENCE;
use slipway_fetch::{Answer, Fetcher};

use crate::identity::TokenBroker;

/// How long one ARM request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a resource group deletion may take, polling included.
pub const DELETE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The largest ARM answer read, bytes.
const MAX_ANSWER_BYTES: u64 = 4 << 20;

/// Why a resource group could not be made or removed: ARM's `code:
/// message`, or what kept the request from ARM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resource group '{name}': {reason}")]
pub struct ResourceGroupError {
    /// The resource group.
    pub name: String,
    /// What went wrong.
    pub reason: String,
}

/// Creates and deletes environments' resource groups.
#[derive(Debug, Clone)]
pub struct ResourceGroups {
    tokens: Arc<TokenBroker>,
    fetcher: Fetcher,
}

impl ResourceGroups {
    /// Resource groups reached through `fetcher` with tokens from `tokens`.
    pub fn new(tokens: Arc<TokenBroker>, fetcher: Fetcher) -> ResourceGroups {
        ResourceGroups { tokens, fetcher }
    }

    async fn call(
        &self,
        id: &DeploymentIdentity,
        rg: &ResourceGroup,
        method: &'static str,
        url: String,
        body: Option<serde_json::Value>,
    ) -> Result<Answer, ResourceGroupError> {
        let fail = |reason: String| ResourceGroupError {
            name: rg.name.clone(),
            reason,
        };
        let token = self
            .tokens
            .token(id, ARM_AUDIENCE)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let fetcher = self.fetcher.clone();
        tokio::task::spawn_blocking(move || {
            fetcher.call(
                method,
                &url,
                &token.access_token,
                body.as_ref(),
                REQUEST_TIMEOUT,
                MAX_ANSWER_BYTES,
            )
        })
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.to_string()))
    }

    /// Creates (or updates) `rg` in `location` with `tags`.
    ///
    /// Errors: [`ResourceGroupError`] with ARM's `code: message` (e.g.
    /// `AuthorizationFailed: …`) or why ARM could not be asked.
    pub async fn create(
        &self,
        id: &DeploymentIdentity,
        rg: &ResourceGroup,
        location: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), ResourceGroupError> {
        let body = rg.create_body(location, tags);
        let answer = self.call(id, rg, "PUT", rg.url(), Some(body)).await?;
        match answer.status {
            200 | 201 => Ok(()),
            s => Err(ResourceGroupError {
                name: rg.name.clone(),
                reason: arm_error(s, &answer.body),
            }),
        }
    }

    /// Gives each `(principal, role)` — an Entra object id and an Azure
    /// role definition GUID — that role on `rg` (ADE's creator and user
    /// role assignments). Assigning again is harmless: the assignment's
    /// name is derived from the three, and ARM's `RoleAssignmentExists`
    /// counts as done.
    ///
    /// Errors: [`ResourceGroupError`] naming the principal and role, with
    /// ARM's `code: message`.
    pub async fn assign_roles(
        &self,
        id: &DeploymentIdentity,
        rg: &ResourceGroup,
        assignments: &[(String, String)],
    ) -> Result<(), ResourceGroupError> {
        for (principal, role) in assignments {
            let answer = self
                .call(
                    id,
                    rg,
                    "PUT",
                    rg.role_assignment_url(principal, role),
                    Some(rg.role_assignment_body(principal, role)),
                )
                .await?;
            let reason = arm_error(answer.status, &answer.body);
            match answer.status {
                200 | 201 => {}
                409 if reason.starts_with("RoleAssignmentExists") => {}
                _ => {
                    return Err(ResourceGroupError {
                        name: rg.name.clone(),
                        reason: format!("assigning role {role} to {principal}: {reason}"),
                    })
                }
            }
        }
        Ok(())
    }

    /// Deletes `rg` and waits until ARM says it is gone (polling the
    /// `Location` of an accepted deletion as its `Retry-After` says, for
    /// at most [`DELETE_TIMEOUT`]). A group that does not exist is gone.
    /// Polling follows a `Location` only beneath the identity's resource
    /// manager, so its token is never sent elsewhere.
    ///
    /// Errors: [`ResourceGroupError`] with ARM's `code: message`, a
    /// `Location` elsewhere, or the timeout.
    pub async fn delete(
        &self,
        id: &DeploymentIdentity,
        rg: &ResourceGroup,
    ) -> Result<(), ResourceGroupError> {
        let fail = |reason: String| ResourceGroupError {
            name: rg.name.clone(),
            reason,
        };
        let mut answer = self.call(id, rg, "DELETE", rg.url(), None).await?;
        let deadline = Instant::now() + DELETE_TIMEOUT;
        loop {
            match answer.status {
                200 | 204 | 404 => return Ok(()),
                202 => {}
                s => return Err(fail(arm_error(s, &answer.body))),
            }
            let Some(location) = answer.location.clone() else {
                return Err(fail(
                    "ARM accepted the deletion without a Location to follow".into(),
                ));
            };
            let beneath = format!("{}/", rg.resource_manager);
            if !location.starts_with(&beneath) {
                return Err(fail(format!(
                    "ARM's Location '{}' is not beneath {}: not followed",
                    slipway_core::echo::truncate(&location),
                    rg.resource_manager
                )));
            }
            if Instant::now() >= deadline {
                return Err(fail(format!(
                    "still being deleted after {} minutes",
                    DELETE_TIMEOUT.as_secs() / 60
                )));
            }
            let wait = Duration::from_secs(answer.retry_after.unwrap_or(2))
                .clamp(Duration::from_millis(200), Duration::from_secs(30));
            tokio::time::sleep(wait).await;
            answer = self.call(id, rg, "GET", location, None).await?;
        }
    }
}
