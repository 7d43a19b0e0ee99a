//! One build: the working disk, the guest the customizers run in (the
//! sandboxed chroot or a booted VM), the customizers themselves.

use std::path::Path;

use serde_json::{json, Value};
use slipway_core::images::run::{self as runs, RunSubState};
use slipway_core::images::template::{self, Customizer, Distributor, Executor, TemplateProperties};
use slipway_core::isolation;

use crate::exec::RunLog;
use crate::sandbox_root::SandboxRoot;
use crate::vm::Vm;
use crate::{build_network_name, disk, exec, vm, BuildError, ImageService};
use slipway_runner::netns::HeldNetwork;
use slipway_runner::RunnerNetwork;

/// Where customizers run: the executor of `vmProfile.executor`.
pub(crate) enum Guest {
    /// The image mounted on the host, entered through the customizer
    /// sandbox as root of the build's user namespace (the id-mapped view
    /// of the mount); its network (runner egress policy) when the server
    /// has a network pool. Dropped in field order: the view, the mount,
    /// then the network.
    Chroot(SandboxRoot, disk::Mounted, Option<HeldNetwork>),
    /// The image booted under qemu, entered over SSH; qemu (and with it
    /// every connection the guest makes) in the build's network when the
    /// server has a network pool. Dropped in field order: the network
    /// after the VM.
    Vm(Box<Vm>, Option<HeldNetwork>),
}

impl Guest {
    /// Runs a customizer's script as root with `/bin/sh -e`.
    pub(crate) async fn run_script(
        &self,
        i: usize,
        script: Vec<u8>,
        log: &RunLog,
    ) -> Result<(), BuildError> {
        match self {
            Guest::Chroot(view, m, net) => {
                let rel = format!("tmp/.slipway/script-{i}.sh");
                exec::image_tree(m.root())?.write(&rel, &script, 0o700)?;
                exec::run_confined(
                    view,
                    net.as_ref().map(|n| n.0.path()).as_deref(),
                    &["/bin/sh", "-e", &format!("/{rel}")],
                    log,
                )
                .await
            }
            Guest::Vm(vm, _) => vm.run_script(i, script, log).await,
        }
    }

    /// Puts a `File` customizer's bytes at `destination`, making its folder.
    pub(crate) async fn put_file(
        &self,
        i: usize,
        bytes: Vec<u8>,
        destination: &str,
        log: &RunLog,
    ) -> Result<(), BuildError> {
        match self {
            Guest::Chroot(view, m, net) => {
                let incoming = format!(".slipway-incoming-{i}");
                exec::image_tree(m.root())?.write(&incoming, &bytes, 0o644)?;
                // Moved from inside the sandbox, so symlinks resolve in the image.
                exec::run_confined(
                    view,
                    net.as_ref().map(|n| n.0.path()).as_deref(),
                    &[
                        "/bin/sh",
                        "-ec",
                        exec::MOVE_INTO_PLACE,
                        "sh",
                        destination,
                        &format!("/{incoming}"),
                    ],
                    log,
                )
                .await
            }
            Guest::Vm(vm, _) => vm.put_file(i, bytes, destination, log).await,
        }
    }
}

/// The customizers' view of the image `mounted` at `<staging>/sandbox-root`,
/// for a user namespace of a fresh block of build user ids.
///
/// Errors: see [`SandboxRoot::mount`].
fn sandbox_of(mounted: &disk::Mounted, staging: &Path) -> Result<SandboxRoot, BuildError> {
    let base = isolation::build_user_base(uuid::Uuid::new_v4().as_u64_pair().0);
    SandboxRoot::mount(mounted.root(), &staging.join("sandbox-root"), base)
}

/// Why a build stopped.
#[derive(Debug)]
pub(crate) enum Failure {
    Customizer(String),
    Validation(String),
    Other(BuildError),
}

/// A build that reached distribution.
pub(crate) struct Built {
    pub(crate) outputs: Vec<Value>,
    pub(crate) validation_error: Option<String>,
}

/// The working disk's source, resolved.
pub(crate) struct Resolved {
    pub(crate) info: Value,
    pub(crate) version: Option<String>,
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BuildError> + Send + 'static,
) -> Result<T, BuildError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BuildError::Builder(format!("worker failed: {e}")))?
}

impl ImageService {
    pub(crate) async fn build(
        &self,
        run_id: &str,
        tpl: &TemplateProperties,
        staging: &Path,
        log: &RunLog,
    ) -> Result<Built, Failure> {
        self.sub_state(run_id, RunSubState::Building).await;
        log.out(&format!(
            "slipway: run {run_id}, staging {}",
            staging.display()
        ));
        std::fs::create_dir_all(staging).map_err(|e| {
            Failure::Other(BuildError::io(format!("creating {}", staging.display()))(e))
        })?;
        let disk = staging.join("disk.raw");
        let source = self
            .prepare_source(&tpl.source, &disk, staging, log)
            .await
            .map_err(|e| Failure::Other(BuildError::Source(format!("properties.source: {e}"))))?;
        let _ = self
            .store
            .set_image_run_staging(run_id, Some(&staging.to_string_lossy()), &source.info)
            .await;
        if let Some(gb) = tpl
            .vm_profile
            .as_ref()
            .map(|v| v.os_disk_size_gb)
            .filter(|g| *g > 0)
        {
            let d = disk.clone();
            blocking(move || disk::grow(&d, u64::from(gb) << 30))
                .await
                .map_err(Failure::Other)?;
            log.out(&format!("slipway: OS disk grown to {gb} GiB"));
        }
        let validators = tpl
            .validate
            .as_ref()
            .map(|v| v.in_vm_validations.clone())
            .unwrap_or_default();
        let only_source = tpl
            .validate
            .as_ref()
            .is_some_and(|v| v.source_validation_only);
        let mut validation_error = None;
        if !tpl.customize.is_empty() || !validators.is_empty() {
            let guest = self
                .start_guest(run_id, tpl, &disk, staging, log)
                .await
                .map_err(Failure::Other)?;
            if !only_source {
                self.sub_state(run_id, RunSubState::Customizing).await;
                for (i, c) in tpl.customize.iter().enumerate() {
                    let name = c.display_name();
                    self.customize(i, c, &guest, log).await.map_err(|e| {
                        Failure::Customizer(format!(
                            "customizer '{name}' (properties.customize[{i}]) failed: {e}"
                        ))
                    })?;
                }
            }
            log.out(runs::FINALIZING_MARKER);
            if !validators.is_empty() {
                self.sub_state(run_id, RunSubState::Validating).await;
                for (i, v) in validators.iter().enumerate() {
                    let name = v.display_name();
                    if let Err(e) = self.customize(1000 + i, v, &guest, log).await {
                        let m = format!("validator '{name}' (properties.validate.inVMValidations[{i}]) failed: {e}");
                        if tpl
                            .validate
                            .as_ref()
                            .is_some_and(|v| v.continue_distribute_on_failure)
                        {
                            validation_error = Some(m);
                            break;
                        }
                        return Err(Failure::Validation(m));
                    }
                }
            }
            self.finish_guest(guest, &disk, staging, log)
                .await
                .map_err(Failure::Other)?;
        }
        self.sub_state(run_id, RunSubState::Distributing).await;
        let mut outputs = Vec::new();
        for d in &tpl.distribute {
            let name = d.run_output_name().to_string();
            let kind = match d {
                Distributor::Vhd { .. } => "VHD",
                Distributor::ManagedImage { .. } => "ManagedImage",
                Distributor::SharedImage { .. } => "SharedImage",
                Distributor::Qcow2 { .. } => "Qcow2",
                Distributor::Raw { .. } => "Raw",
            };
            log.out(&format!("slipway: distributing {kind} '{name}'"));
            let mut o = match self.distribute(run_id, d, &disk, &source).await {
                Ok(o) => o,
                Err(e) => {
                    log.err(&format!("distributing '{name}' failed: {e}"));
                    json!({"provisioningState": "Failed", "error": e.to_string()})
                }
            };
            o["name"] = json!(name);
            o["type"] = json!(kind);
            outputs.push(o);
        }
        Ok(Built {
            outputs,
            validation_error,
        })
    }

    /// Readies the executor `vmProfile.executor` names: the mounted image
    /// prepared for chroot, or a booted build VM.
    pub(crate) async fn start_guest(
        &self,
        run_id: &str,
        tpl: &TemplateProperties,
        disk: &Path,
        staging: &Path,
        log: &RunLog,
    ) -> Result<Guest, BuildError> {
        let profile = tpl.vm_profile.clone().unwrap_or_default();
        let (d, m) = (disk.to_path_buf(), staging.join("mnt"));
        let mounted = blocking(move || disk::Mounted::mount(&d, &m)).await?;
        let root = mounted.root().to_path_buf();
        match profile.executor {
            Executor::Chroot => {
                exec::prepare(&root)?;
                let view = sandbox_of(&mounted, staging)?;
                let net = self.build_network(run_id).await?;
                Ok(Guest::Chroot(view, mounted, net))
            }
            Executor::FullBoot => {
                for (need, package) in [
                    ("usr/bin/cloud-init", "cloud-init"),
                    ("usr/sbin/sshd", "openssh-server"),
                ] {
                    if !root.join(need).exists() {
                        return Err(BuildError::Template(format!(
                            "properties.vmProfile.executor: FullBoot needs {package} in the image (/{need} is missing); use a Slipway base image or the Chroot executor"
                        )));
                    }
                }
                exec::use_resolver(&root, vm::VM_RESOLV_CONF)?;
                blocking(move || {
                    drop(mounted);
                    Ok(())
                })
                .await?;
                let (vcpus, memory_mib) = template::vm_shape(&profile.vm_size)?;
                let shape = vm::Shape { vcpus, memory_mib };
                // qemu's user network makes the guest's connections from
                // qemu's own network namespace, where `10.0.2.2` is its
                // loopback: in the server's, the guest would reach every
                // service on the host's.
                let net = self.build_network(run_id).await?;
                let netns = net.as_ref().map(|h| h.0.path());
                let vm = Vm::boot(
                    disk,
                    staging,
                    run_id,
                    shape,
                    &self.accel,
                    netns.as_deref(),
                    log,
                )
                .await?;
                Ok(Guest::Vm(Box::new(vm), net))
            }
        }
    }

    /// The build's own network — a runner network with the runner egress
    /// policy and nothing on the host open to it — when the server has a
    /// network pool.
    ///
    /// Errors: [`BuildError::Builder`] naming what failed.
    async fn build_network(&self, run_id: &str) -> Result<Option<HeldNetwork>, BuildError> {
        let Some(pool) = &self.cfg.network_pool else {
            return Ok(None);
        };
        let n = RunnerNetwork::create(
            &build_network_name(&self.cfg.instance_id, run_id),
            pool,
            &[],
        )
        .await
        .map_err(|e| BuildError::Builder(format!("the build's network: {e}")))?;
        // Removed on drop, also when the filter fails.
        let mut held = HeldNetwork(n);
        held.0
            .install_closed_filter()
            .await
            .map_err(|e| BuildError::Builder(format!("the build's network: {e}")))?;
        Ok(Some(held))
    }

    /// Ends the executor and deprovisions the image offline: the chroot's
    /// mount, or the VM (powered off, then its build user removed).
    pub(crate) async fn finish_guest(
        &self,
        guest: Guest,
        disk: &Path,
        staging: &Path,
        log: &RunLog,
    ) -> Result<(), BuildError> {
        let mounted = match guest {
            Guest::Chroot(view, m, net) => {
                drop(view);
                drop(net);
                m
            }
            Guest::Vm(vm, net) => {
                vm.shutdown(log).await?;
                drop(net);
                let (d, m) = (disk.to_path_buf(), staging.join("mnt"));
                let mounted = blocking(move || disk::Mounted::mount(&d, &m)).await?;
                let view = sandbox_of(&mounted, staging)?;
                exec::run_confined(&view, None, &["userdel", "--remove", vm::BUILD_USER], log)
                    .await
                    .map_err(|e| {
                        BuildError::Builder(format!(
                            "removing the build user '{}': {e}",
                            vm::BUILD_USER
                        ))
                    })?;
                drop(view);
                exec::image_tree(mounted.root())?
                    .remove_file("etc/sudoers.d/90-cloud-init-users")?;
                mounted
            }
        };
        exec::deprovision(mounted.root())?;
        blocking(move || {
            drop(mounted);
            Ok(())
        })
        .await
    }

    pub(crate) async fn customize(
        &self,
        i: usize,
        c: &Customizer,
        guest: &Guest,
        log: &RunLog,
    ) -> Result<(), BuildError> {
        let name = c.display_name();
        log.out(&runs::starting_marker(&name));
        let r = match c {
            Customizer::Shell {
                script_uri,
                inline,
                sha256_checksum,
                ..
            } => {
                let script = match (inline, script_uri) {
                    (Some(lines), _) => format!("#!/bin/sh\n{}\n", lines.join("\n")).into_bytes(),
                    (None, Some(uri)) => self.fetch(uri, sha256_checksum).await?,
                    (None, None) => {
                        return Err(BuildError::Template("no inline or scriptUri".into()))
                    }
                };
                guest.run_script(i, script, log).await
            }
            Customizer::File {
                source_uri,
                destination,
                sha256_checksum,
                ..
            } => {
                if destination.split('/').any(|s| s == "..") {
                    return Err(BuildError::Template(format!(
                        "destination '{destination}' must not contain '..'"
                    )));
                }
                let bytes = self.fetch(source_uri, sha256_checksum).await?;
                log.out(&format!(
                    "Uploading {source_uri} => {destination} ({} bytes)",
                    bytes.len()
                ));
                guest.put_file(i, bytes, destination, log).await
            }
            other => Err(BuildError::Template(format!(
                "UnsupportedCustomizerType: '{}' customizers need a Windows image",
                other.display_name()
            ))),
        };
        if let Err(e) = &r {
            log.err(&format!("{name}: {e}"));
        }
        log.out(&runs::ending_marker(&name));
        r
    }
}
