//! [`ContainerSpec`]: what a container is, and the one place the isolation
//! policy turns it into the engine's configuration.

use std::collections::HashMap;

use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig, PortBinding,
};
use slipway_core::isolation::{
    Confinement, UserNamespace, KEPT_CAPABILITIES, OWN_USER_NAMESPACE_SYS, WRITABLE_PATHS,
};

/// The output stream of a started container; it ends when the container exits.
pub struct Attachment {
    pub(super) output: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
    >,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Attachment")
    }
}

/// How a container is attached to a network.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkAttachment {
    /// The network namespace at this path (a runner's own, see
    /// [`crate::netns`]); the engine's network mode `ns:<path>`.
    Namespace(String),
    /// The host's network namespace: only for a task step whose task a
    /// DevCenter Admin granted `stepPermissions.hostNetwork`.
    Host,
    /// An engine network Slipway created (a task run's), with DNS aliases.
    Named {
        /// Network name.
        network: String,
        /// Names other containers on the network reach this one by.
        aliases: Vec<String>,
    },
}

/// A container to run. Every container Slipway starts is described by one
/// and goes through [`Engine::create`], which applies the isolation policy
/// of [`slipway_core::isolation`]: all capabilities dropped but
/// [`KEPT_CAPABILITIES`], `no-new-privileges`, the [`Confinement`] limits,
/// never the host's PID or IPC namespace (nor its user namespace, but for
/// steps of a task with a DevCenter Admin's grant); never privileged or on the
/// host's network unless [`ContainerSpec::privileged`] /
/// [`NetworkAttachment::Host`] carry a DevCenter Admin's grant
/// ([`slipway_core::isolation::StepPermissions`]).
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Container name (unique).
    pub name: String,
    /// Image reference.
    pub image: String,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// The network.
    pub network: NetworkAttachment,
    /// Limits.
    pub confinement: Confinement,
    /// Command (the image's CMD when `None`).
    pub cmd: Option<Vec<String>>,
    /// Entrypoint (the image's when `None`).
    pub entrypoint: Option<Vec<String>>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Mounts `source:target[:options]`: folders Slipway made for this
    /// container (a run's workspace, its secret volumes), named volumes,
    /// Slipway's static `ade` (read-only), or host folders a DevCenter
    /// Admin granted a task's steps.
    /// Callers check user-supplied mounts with
    /// [`slipway_core::isolation::refuse_unconfined_step`] first.
    pub binds: Vec<String>,
    /// Exposed container ports (`80/tcp`).
    pub exposed_ports: Vec<String>,
    /// Published ports: container port (`80/tcp`) → `(host ip, host port)`.
    pub port_bindings: Vec<(String, String, String)>,
    /// `host:ip` entries for `/etc/hosts`.
    pub extra_hosts: Vec<String>,
    /// The user namespace: runners get one of their own
    /// ([`UserNamespace::Auto`]), a task run's steps share the run's
    /// ([`UserNamespace::Mapped`]) unless the task was granted
    /// [`slipway_core::isolation::StepPermissions`] ([`UserNamespace::Host`],
    /// the default).
    pub user_namespace: UserNamespace,
    /// Privileged (every capability, the host's devices, no
    /// `no-new-privileges`): only for a task step whose task a DevCenter
    /// Admin granted `stepPermissions.privileged`. The limits still apply.
    pub privileged: bool,
}

impl ContainerSpec {
    /// A spec with the image's own entrypoint and command and the default
    /// confinement.
    pub fn new(name: &str, image: &str, network: NetworkAttachment) -> ContainerSpec {
        ContainerSpec {
            name: name.to_string(),
            image: image.to_string(),
            env: Vec::new(),
            labels: HashMap::new(),
            network,
            confinement: Confinement::default(),
            cmd: None,
            entrypoint: None,
            working_dir: None,
            user: None,
            binds: Vec::new(),
            exposed_ports: Vec::new(),
            port_bindings: Vec::new(),
            extra_hosts: Vec::new(),
            user_namespace: UserNamespace::Host,
            privileged: false,
        }
    }

    /// The engine's container configuration: the spec under the isolation policy.
    pub(super) fn config(&self) -> ContainerCreateBody {
        let c = &self.confinement;
        let (network_mode, networking_config) = match &self.network {
            NetworkAttachment::Namespace(path) => (format!("ns:{path}"), None),
            NetworkAttachment::Host => ("host".to_string(), None),
            NetworkAttachment::Named { network, aliases } => {
                let mut endpoints = HashMap::new();
                endpoints.insert(
                    network.clone(),
                    EndpointSettings {
                        aliases: Some(aliases.clone()),
                        ..Default::default()
                    },
                );
                (
                    network.clone(),
                    Some(NetworkingConfig {
                        endpoints_config: Some(endpoints),
                    }),
                )
            }
        };
        let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for (port, ip, host_port) in &self.port_bindings {
            port_bindings
                .entry(port.clone())
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(ip.clone()),
                    host_port: Some(host_port.clone()),
                });
        }
        let mut exposed: Vec<String> = self.exposed_ports.clone();
        for p in port_bindings.keys() {
            if !exposed.contains(p) {
                exposed.push(p.clone());
            }
        }
        let mut tmpfs: HashMap<String, String> = HashMap::new();
        if c.read_only_root {
            for p in WRITABLE_PATHS {
                tmpfs.insert(p.to_string(), "rw,nosuid,nodev,size=512m".to_string());
            }
        }
        // In a network namespace Slipway made, a user namespace of its own
        // cannot mount sysfs (the kernel ties it to the network namespace's
        // owner); on an engine network, the engine makes both.
        let joins_ours = matches!(self.network, NetworkAttachment::Namespace(_));
        if joins_ours && self.user_namespace != UserNamespace::Host {
            let (path, options) = OWN_USER_NAMESPACE_SYS;
            tmpfs.insert(path.to_string(), options.to_string());
        }
        ContainerCreateBody {
            image: Some(self.image.clone()),
            env: Some(self.env.clone()),
            labels: Some(self.labels.clone()),
            cmd: self.cmd.clone(),
            entrypoint: self.entrypoint.clone(),
            working_dir: self.working_dir.clone(),
            user: self.user.clone(),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            networking_config,
            host_config: Some(HostConfig {
                network_mode: Some(network_mode),
                binds: (!self.binds.is_empty()).then(|| self.binds.clone()),
                privileged: Some(self.privileged),
                cap_drop: (!self.privileged).then(|| vec!["ALL".into()]),
                cap_add: (!self.privileged).then(|| {
                    KEPT_CAPABILITIES
                        .iter()
                        .map(|(c, _)| c.to_string())
                        .collect()
                }),
                security_opt: (!self.privileged).then(|| vec!["no-new-privileges".into()]),
                memory: Some(c.memory_bytes),
                memory_swap: Some(c.memory_bytes),
                nano_cpus: Some(c.nano_cpus),
                pids_limit: Some(c.pids_limit),
                readonly_rootfs: Some(c.read_only_root),
                tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
                userns_mode: self.user_namespace.engine_mode(),
                port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
                extra_hosts: (!self.extra_hosts.is_empty()).then(|| self.extra_hosts.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}
