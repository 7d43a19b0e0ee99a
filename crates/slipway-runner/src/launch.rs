//! Starting an operation's runner: its image, its own network and runner
//! API listener, the deployment identity's sign-in and (on an Azure
//! target) resource group, side by side; then the container under the
//! isolation policy.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use slipway_core::isolation::{Ipv4Cidr, UserNamespace};
use slipway_core::protocol::{
    ENV_DEVCENTER_ID, ENV_ENDPOINT, ENV_OPERATION_ID, ENV_OPERATION_NAME, ENV_TOKEN,
};
use slipway_core::OperationKind;
use slipway_store::OperationRecord;

use crate::engine::{Attachment, ContainerSpec, NetworkAttachment};
use crate::netns::RunnerNetwork;
use crate::{azure, RunnerError, Scheduler, DATA_DIR_LABEL, INSTANCE_LABEL, OPERATION_LABEL};

impl Scheduler {
    /// The spare network, for a runner with the default egress policy (no
    /// extra CIDRs), and the making of the next one in the background. A
    /// spare is a whole runner network (namespace, link, routes) without
    /// its host filter, which is installed once the operation's runner API
    /// port is known; its namespace name is dropped after the start like
    /// any runner's, and a spare left by a killed server is reaped at the
    /// next start like an ended operation's (`slw-<instance>-spare-…`).
    pub(crate) fn take_spare(self: &Arc<Self>, allowed: &[Ipv4Cidr]) -> Option<RunnerNetwork> {
        if !allowed.is_empty() {
            return None;
        }
        let taken = self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.refill_spare();
        taken
    }

    /// Makes a spare network in the background unless one is being made.
    pub(crate) fn refill_spare(self: &Arc<Self>) {
        if self.runner_api.get().is_none() || self.refilling.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let name = format!(
                "slw-{}-spare-{:08x}",
                me.config.instance_id,
                rand::random::<u32>()
            );
            let started = std::time::Instant::now();
            match RunnerNetwork::create(&name, &me.config.network_pool, &[]).await {
                Ok(n) => {
                    tracing::info!(
                        link = %n.host_if(),
                        spare_setup_ms = started.elapsed().as_millis() as u64,
                        "spare runner network ready"
                    );
                    let old = me
                        .spare
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .replace(n);
                    if let Some(old) = old {
                        old.remove().await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not prepare a spare runner network"),
            }
            me.refilling.store(false, Ordering::SeqCst);
        });
    }

    /// Removes the spare network (at shutdown); a later refill may make
    /// another.
    pub async fn remove_spare(&self) {
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(n) = spare {
            n.remove().await;
        }
    }

    pub(crate) async fn launch(
        self: &Arc<Self>,
        op: &OperationRecord,
        token: &str,
    ) -> Result<Option<Attachment>, RunnerError> {
        let mut labels = HashMap::new();
        labels.insert(OPERATION_LABEL.to_string(), op.id.clone());
        labels.insert(INSTANCE_LABEL.to_string(), self.config.instance_id.clone());
        labels.insert(
            DATA_DIR_LABEL.to_string(),
            self.config.data_dir.to_string_lossy().into_owned(),
        );
        let (environment, pet) = self.environment_type_of(op).await?;
        let policy = pet
            .as_ref()
            .map(|t| t.runner_policy.clone())
            .unwrap_or_default();
        // The image, the removal of a leftover container of the same name
        // (an earlier attempt) and the runner's network are independent:
        // made side by side, an operation waits for the slowest only.
        let image = async {
            let credential = self
                .store
                .registry_credential_for(&op.runner_image, &self.config.secret_key)
                .await
                .map_err(|e| RunnerError::ImageUnavailable {
                    image: op.runner_image.clone(),
                    message: e.to_string(),
                })?;
            self.engine
                .ensure_image(&op.runner_image, credential.as_ref())
                .await?;
            self.engine.remove(&op.container_name).await
        };
        let network = async {
            let started = std::time::Instant::now();
            // Taken here, so an early return of `launch` before this
            // future runs cannot drop a spare without removing it.
            let spare = self.take_spare(&policy.allowed_cidrs);
            let from_spare = spare.is_some();
            let mut network = match spare {
                Some(n) => n,
                None => {
                    RunnerNetwork::create(
                        &self.network_name(&op.id),
                        &self.config.network_pool,
                        &policy.allowed_cidrs,
                    )
                    .await?
                }
            };
            let gateway = network.plan.gateway();
            let listener = match self.serve_runner_api(gateway, 0, &op.id) {
                Ok(l) => l,
                Err(e) => {
                    network.remove().await;
                    return Err(e);
                }
            };
            network.plan.api_port = listener.0;
            Ok((network, listener, started.elapsed(), from_spare))
        };
        // A deployment identity that mints tokens signs in before the
        // runner starts: a rejected one fails the operation at once instead
        // of leaving the runner's sign-in loop to spin until its time limit.
        let identity = match &environment {
            Some(e) => {
                self.store
                    .deployment_identity(&e.project, &e.environment_type, &self.config.secret_key)
                    .await?
            }
            None => None,
        };
        // On an Azure target a deploy gets its resource group first, as in ADE.
        let resource_group = match (&environment, &pet) {
            (Some(e), Some(t)) => slipway_core::azure_target::ResourceGroup::of(
                &t.deployment_target_id,
                identity.as_ref(),
                &e.project,
                &e.name,
            )
            .map_err(|too_long| azure::ResourceGroupError {
                name: slipway_core::azure_target::resource_group_name(&e.project, &e.name),
                reason: too_long.to_string(),
            })?,
            _ => None,
        };
        let azure_roles = pet.as_ref().map(|t| t.azure_roles()).unwrap_or_default();
        let sign_in = async {
            let Some(id) = identity.as_ref().filter(|id| id.mints_tokens()) else {
                return Ok(());
            };
            self.config
                .identity_tokens
                .token(id, slipway_core::identity::ARM_AUDIENCE)
                .await?;
            match (&resource_group, &environment) {
                (Some(rg), Some(e)) if op.kind == OperationKind::Deploy => {
                    let tags = resource_group_tags(e, &self.config.devcenter_id);
                    self.config
                        .resource_groups
                        .create(id, rg, &self.config.azure_location, &tags)
                        .await?;
                    let (assignments, creator_left_out) = azure_roles.for_creator(&e.owner);
                    if creator_left_out {
                        tracing::warn!(
                            environment = %e.name,
                            owner = %e.owner,
                            "creator role assignments left out: the owner is not an Entra object id"
                        );
                    }
                    self.config
                        .resource_groups
                        .assign_roles(id, rg, &assignments)
                        .await?;
                    Ok(())
                }
                _ => Ok(()),
            }
        };
        let (image, network, sign_in) = tokio::join!(image, network, sign_in);
        let (network, listener, setup, from_spare) = match (image.and(sign_in), network) {
            (Ok(()), Ok(n)) => n,
            (Err(e), network) => {
                if let Ok((network, _, _, _)) = network {
                    network.remove().await;
                }
                return Err(e);
            }
            (Ok(()), Err(e)) => return Err(e),
        };
        let gateway = network.plan.gateway();
        let endpoint = format!("http://{gateway}:{}/runner/v1", listener.0);
        let path = network.path();
        // The operation's copy: filtered below, its name released once the
        // runner has joined it; the held one is removed at the end.
        let mut joined = network.clone();
        // From here on a failure is cleaned up by the caller (container
        // removed, network released).
        self.hold_network(&op.id, Some(network), listener.1);
        let mut env = vec![
            format!("{ENV_OPERATION_NAME}={}", op.kind.operation_name()),
            format!("{ENV_ENDPOINT}={endpoint}"),
            format!("{ENV_OPERATION_ID}={}", op.id),
            format!("{ENV_DEVCENTER_ID}={}", self.config.devcenter_id),
            format!("{ENV_TOKEN}={token}"),
        ];
        if let Some(id) = identity {
            env.push(format!("ADE_CLIENT_ID={}", id.client_id));
            env.push(format!("ADE_TENANT_ID={}", id.tenant_id));
            if let Some(sub) = &id.subscription_id {
                env.push(format!("ADE_SUBSCRIPTION_ID={sub}"));
            }
            if id.mints_tokens() {
                // App Service–style managed identity: the runner's own
                // operation token opens its own token endpoint.
                env.push(format!(
                    "{}={endpoint}/operations/{}/msi/token",
                    slipway_core::identity::ENV_IDENTITY_ENDPOINT,
                    op.id
                ));
                env.push(format!(
                    "{}={token}",
                    slipway_core::identity::ENV_IDENTITY_HEADER
                ));
                // The same, IMDS-shaped, for Terraform's azurerm and
                // Pulumi's azure-native (`ARM_USE_MSI=true`).
                env.push(format!(
                    "{}={endpoint}/operations/{}/imds/{token}/token",
                    slipway_core::identity::ENV_ARM_MSI_ENDPOINT,
                    op.id
                ));
            }
            env.extend(id.variables.iter().map(|(k, v)| format!("{k}={v}")));
        }
        let mut spec = ContainerSpec::new(
            &op.container_name,
            &op.runner_image,
            NetworkAttachment::Namespace(path),
        );
        spec.env = env;
        spec.labels = labels;
        spec.confinement = policy.confinement();
        spec.user_namespace = UserNamespace::Auto;
        if let Some(ade) = &self.config.runner_ade {
            spec.binds.push(format!(
                "{}:{}:ro",
                ade.display(),
                slipway_core::protocol::ADE_CLI_PATH
            ));
        }
        // The host's filter for the link and the container's creation are
        // independent (nothing in the container runs before the start):
        // made side by side, the start waits for both.
        let filter = async {
            let started = std::time::Instant::now();
            joined
                .open_api_port(listener.0)
                .await
                .map(|()| started.elapsed())
        };
        let (filter, created) = tokio::join!(filter, self.engine.create(&spec));
        let filter = filter?;
        created?;
        tracing::info!(
            operation = %op.id,
            link = %joined.host_if(),
            network_setup_ms = (setup + filter).as_millis() as u64,
            spare = from_spare,
            "runner network ready"
        );
        let attachment = self.engine.attach_and_start(&spec.name).await?;
        joined.release_name().await;
        Ok(attachment)
    }
}

/// The tags of an environment's resource group: who and what it belongs to.
fn resource_group_tags(
    env: &slipway_store::EnvironmentRecord,
    devcenter_id: &str,
) -> std::collections::BTreeMap<String, String> {
    [
        ("DevCenter", devcenter_id),
        ("Project", env.project.as_str()),
        ("EnvironmentType", env.environment_type.as_str()),
        ("EnvironmentName", env.name.as_str()),
        ("CreatedBy", env.owner.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
