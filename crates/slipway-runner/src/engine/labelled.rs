//! Networks Slipway creates and everything found or removed by label.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::{InspectNetworkOptions, ListNetworksOptionsBuilder};

use super::raw::ListedContainer;
use super::{label_filter, message, Engine};
use crate::RunnerError;

/// How often [`Engine::create_network`] tries when it loses the race in
/// [`lost_an_interface_race`].
const NETWORK_CREATE_ATTEMPTS: u64 = 5;

/// Whether a network create failed only because a host interface vanished
/// while the engine picked a free subnet: Podman lists the host's interfaces
/// and then reads each one's addresses, so a bridge removed in between
/// (another run's network going away) fails the create with Go's
/// `route ip+net: no such network interface`. Nothing was created; trying
/// again succeeds.
fn lost_an_interface_race(engine_message: &str) -> bool {
    engine_message.contains("no such network interface")
}

impl Engine {
    /// Creates a bridge network for the containers of one task run.
    ///
    /// Errors: [`RunnerError::Engine`] with the engine's message.
    /// The bridge's host interface is named `bridge` (so that the host's
    /// filter can name it before the first container joins). Returns the
    /// network's IPv4 gateway.
    pub async fn create_network(
        &self,
        name: &str,
        driver: &str,
        bridge: &str,
        labels: HashMap<String, String>,
    ) -> Result<Ipv4Addr, RunnerError> {
        let mut options = HashMap::new();
        options.insert(
            "com.docker.network.bridge.name".to_string(),
            bridge.to_string(),
        );
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some(driver.to_string()),
            options: Some(options),
            labels: Some(labels),
            ..Default::default()
        };
        let mut attempt = 1u64;
        loop {
            match self.docker.create_network(request.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    let text = message(e);
                    if attempt < NETWORK_CREATE_ATTEMPTS && lost_an_interface_race(&text) {
                        tracing::warn!(network = name, attempt, error = %text, "network create raced a network removal; retrying");
                        tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(RunnerError::Engine(format!(
                        "create network {name}: {text}"
                    )));
                }
            }
        }
        let info = self
            .docker
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
            .map_err(|e| RunnerError::Engine(format!("inspect network {name}: {}", message(e))))?;
        info.ipam
            .and_then(|i| i.config)
            .into_iter()
            .flatten()
            .find_map(|c| c.gateway?.parse::<Ipv4Addr>().ok())
            .ok_or_else(|| RunnerError::Engine(format!("network {name} has no IPv4 gateway")))
    }

    /// Removes every container (but those named in `keep`) and then every
    /// network carrying label `key=value`. Best effort: failures are logged.
    pub async fn remove_labelled(&self, key: &str, value: &str, keep: &[String]) {
        let filters = label_filter(format!("{key}={value}"));
        if let Ok(list) = self.labelled_containers(format!("{key}={value}")).await {
            for (name, _) in list {
                if !keep.contains(&name) {
                    if let Err(e) = self.remove(&name).await {
                        tracing::warn!(container = %name, error = %e, "could not remove a container");
                    }
                }
            }
        }
        if let Ok(nets) = self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
        {
            for n in nets.into_iter().filter_map(|n| n.id) {
                if let Err(e) = self.docker.remove_network(&n).await {
                    tracing::warn!(network = %n, error = %e, "could not remove a network");
                }
            }
        }
    }

    /// Names of networks carrying label `key` (any value), with their labels.
    pub async fn networks_with_label(
        &self,
        key: &str,
    ) -> Result<Vec<(String, HashMap<String, String>)>, RunnerError> {
        let filters = label_filter(key.to_string());
        let nets = self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(|e| RunnerError::Engine(message(e)))?;
        Ok(nets
            .into_iter()
            .filter_map(|n| Some((n.name?, n.labels.unwrap_or_default())))
            .collect())
    }

    /// Names of containers carrying label `key` (any value), with all their labels.
    pub async fn containers_with_label(
        &self,
        key: &str,
    ) -> Result<Vec<(String, HashMap<String, String>)>, RunnerError> {
        Ok(self
            .labelled_containers(key.to_string())
            .await?
            .into_iter()
            .map(|(name, c)| (name, c.labels.unwrap_or_default()))
            .collect())
    }

    /// Every container (running or not) matching label filter `filter`
    /// (`key` or `key=value`), by name. Read through [`super::raw`]: a
    /// single container in one of Podman's own states would fail bollard's
    /// typed list as a whole.
    ///
    /// Errors: [`RunnerError::Engine`] when the engine cannot list containers.
    async fn labelled_containers(
        &self,
        filter: String,
    ) -> Result<Vec<(String, ListedContainer)>, RunnerError> {
        let list = self.list_containers_raw(&label_filter(filter)).await?;
        Ok(list
            .into_iter()
            .filter_map(|c| Some((c.name()?, c)))
            .collect())
    }

    /// Containers carrying label `key` that were created at least `min_age`
    /// ago and never started (Docker `created`, Podman `configured` /
    /// `initialized`): leftovers of a server killed between create and start.
    ///
    /// Errors: [`RunnerError::Engine`] when the engine cannot list containers.
    pub async fn never_started_with_label(
        &self,
        key: &str,
        min_age: Duration,
    ) -> Result<Vec<String>, RunnerError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Ok(self
            .labelled_containers(key.to_string())
            .await?
            .into_iter()
            .filter(|(_, c)| {
                let never_started = matches!(
                    c.state.to_ascii_lowercase().as_str(),
                    "created" | "configured" | "initialized"
                );
                let old = now - c.created >= min_age.as_secs() as i64;
                never_started && old
            })
            .map(|(name, _)| name)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::lost_an_interface_race;

    #[test]
    fn only_the_vanished_interface_race_is_tried_again() {
        // Podman's answer in a CI run where another run's network was being
        // removed at the same moment.
        assert!(lost_an_interface_race(
            "route ip+net: no such network interface"
        ));
        assert!(!lost_an_interface_race(
            "network name slw-x already used: network already exists"
        ));
        assert!(!lost_an_interface_race(
            "failed to find free subnet: all subnets are in use"
        ));
    }
}
