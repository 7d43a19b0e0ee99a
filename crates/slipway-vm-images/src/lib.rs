//! VM image templates (modelled on Azure VM Image Builder): runs that take
//! a source image, customize it and distribute it.
//!
//! - [`base`]: the local base-image catalog `PlatformImage` sources resolve
//!   to (Debian built with debootstrap).
//! - [`disk`]: loop mounts, sparse copies, the fixed VHD writer, qemu-img.
//! - [`exec`]: the default executor (chroot into the mounted image) and the
//!   run's `customization.log`.
//! - [`sandbox_root`]: the image id-mapped into the build's own user
//!   namespace, where the default executor's customizers run as root.
//! - [`vm`]: the full-boot executor (`vmProfile.executor: FullBoot`): qemu
//!   with a cloud-init NoCloud seed, customizers over SSH.
//! - [`ImageService`]: templates, runs (states, staging, timeout, cancel)
//!   and the image store (`service`); one build's disk, guest and
//!   customizers (`build`); source images, fetched scripts and files
//!   (`sources`); distributors (`distribute`); `SourceImage` triggers
//!   that rebuild a template when a run stores a newer version of its
//!   source (`triggers`).
//!
//! Layout under the data folder: `vm-images/staging/<run>/` (the working
//! disk and its mount point; deleted on success, kept on failure unless
//! `errorHandling` says `cleanup`), `vm-images/runs/<run>/customization.log`
//! (always kept), `vm-images/outputs/<run>/<runOutputName>.<ext>` (file
//! outputs without a `uri`), `vm-images/store/<uuid>/disk.raw` (managed
//! images and gallery versions). Uploaded build artifacts are blobs
//! `vm-image-uploads/<sha256>`, addressed as `upload:<sha256>`.
//!
//! Contract: `../shared/reference/image-builder.md`.

pub mod base;
pub mod disk;
pub mod exec;
pub mod sandbox_root;
pub mod vm;

mod build;
mod distribute;
mod error;
mod service;
mod sources;
mod triggers;

pub(crate) use build::{blocking, Built, Failure, Resolved};
pub use error::BuildError;
pub(crate) use sources::{host_path, local_path};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use slipway_core::images::template;
use slipway_fetch::Fetcher;
use slipway_store::{Store, StoreError};
use thiserror::Error;
use tokio::sync::{watch, Semaphore};

use crate::base::BaseCatalog;
use crate::vm::{Accel, AccelMode};
use slipway_hostfs::LocalRoots;
use slipway_runner::NetworkPool;

/// Errors of the image service.
#[derive(Debug, Error)]
pub enum ImageError {
    /// The template failed validation (AIB `ValidationFailed`).
    #[error(transparent)]
    Validation(#[from] template::ValidationFailed),
    /// A template, run or output that does not exist.
    #[error("{kind} '{name}' was not found")]
    NotFound {
        /// `image template`, `run`, `run output`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The request conflicts with the current state (a run in progress…).
    #[error("{0}")]
    Conflict(String),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where uploaded build artifacts live in the blob store.
pub fn upload_key(sha256: &str) -> String {
    format!("vm-image-uploads/{sha256}")
}

/// Settings of the image service.
#[derive(Debug, Clone)]
pub struct ImageConfig {
    /// `<data-dir>/vm-images`.
    pub dir: PathBuf,
    /// The base-image catalog (shared by servers on the host).
    pub base_images: BaseCatalog,
    /// Builds at once (each holds a loop device and a disk copy). Default 2.
    pub max_concurrent_runs: usize,
    /// qemu accelerator of full-boot builds. Default [`AccelMode::Auto`].
    pub accel: AccelMode,
    /// Fetches http(s) sources, scripts and files (the server's one [`Fetcher`]).
    pub fetcher: Fetcher,
    /// Where customizer networks come from (each build of the default tier
    /// gets one with the runner egress policy); `None`: customizers have
    /// loopback only. Default `None`.
    pub network_pool: Option<NetworkPool>,
    /// Host folders templates may read sources and files from and write
    /// outputs to (`serve --local-catalog-root`); none by default.
    pub local_roots: LocalRoots,
    /// This server's instance id (names its build networks); default
    /// [`slipway_runner::instance_id_for`] of the data directory.
    pub instance_id: String,
}

/// The network namespace of VM image build `run_id` of the server whose
/// instance id is `instance` (its customizers' sandbox joins it). Run ids
/// restart at `r1` in every data directory, so the instance id keeps two
/// servers on one host from sharing (and removing) each other's network.
pub fn build_network_name(instance: &str, run_id: &str) -> String {
    format!("slwi-{instance}-{run_id}")
}

impl ImageConfig {
    /// Defaults under `data_dir`, base images in `base_dir` built from `mirror`.
    pub fn new(
        data_dir: &Path,
        base_dir: PathBuf,
        mirror: String,
        fetcher: Fetcher,
    ) -> ImageConfig {
        ImageConfig {
            dir: data_dir.join("vm-images"),
            base_images: BaseCatalog::new(base_dir, mirror),
            max_concurrent_runs: 2,
            accel: AccelMode::Auto,
            fetcher,
            network_pool: None,
            local_roots: LocalRoots::none(),
            instance_id: slipway_runner::instance_id_for(data_dir),
        }
    }
}

/// Image templates, runs and the image store.
pub struct ImageService {
    store: Store,
    cfg: ImageConfig,
    slots: Arc<Semaphore>,
    cancels: Mutex<HashMap<String, watch::Sender<bool>>>,
    accel: Accel,
    /// Run id → the templates whose triggered runs led to it, oldest
    /// first (see [`slipway_core::images::trigger::extend_chain`]).
    trigger_chains: Mutex<HashMap<String, Vec<String>>>,
    /// Set once the server stops: every run in progress ends.
    stopping: watch::Sender<bool>,
    /// How many runs are executing (their end not yet recorded).
    executing: watch::Sender<usize>,
}

impl std::fmt::Debug for ImageService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageService")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_servers_never_share_a_build_network_name() {
        // Both data directories number their first run r1 (a clean-clone
        // CI run lost a build when two test servers shared `slwi-r1`).
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cfg = |d: &Path| ImageConfig::new(d, d.join("base"), String::new(), Fetcher::system());
        let (ca, cb) = (cfg(a.path()), cfg(b.path()));
        let (na, nb) = (
            build_network_name(&ca.instance_id, "r1"),
            build_network_name(&cb.instance_id, "r1"),
        );
        assert_ne!(na, nb);
        assert!(na.starts_with("slwi-") && na.ends_with("-r1"), "{na}");
    }

    #[test]
    fn template_host_paths_stay_beneath_the_local_roots() {
        let allowed = tempfile::tempdir().unwrap();
        std::fs::write(allowed.path().join("in.sh"), "echo").unwrap();
        std::os::unix::fs::symlink("/etc", allowed.path().join("etc-link")).unwrap();
        let roots = LocalRoots::new(&[allowed.path().to_path_buf()]).unwrap();
        let inside = format!("file://{}/in.sh", allowed.path().display());
        assert!(host_path(&roots, &inside, true).unwrap().is_some());
        let out = format!("{}/out.vhd", allowed.path().display());
        assert_eq!(
            host_path(&roots, &out, false).unwrap().unwrap(),
            allowed.path().canonicalize().unwrap().join("out.vhd")
        );
        for bad in [
            "/etc/shadow".to_string(),
            format!("{}/etc-link/shadow", allowed.path().display()),
            format!("{}/../x", allowed.path().display()),
        ] {
            let e = host_path(&roots, &bad, true).unwrap_err();
            assert!(e.to_string().contains("local-catalog-root"), "{bad}: {e}");
        }
        assert!(host_path(&roots, "/etc/cron.d/x", false).is_err());
        let nested = format!("{}/new/dir/out.vhd", allowed.path().display());
        assert_eq!(
            host_path(&roots, &nested, false).unwrap().unwrap(),
            allowed
                .path()
                .canonicalize()
                .unwrap()
                .join("new/dir/out.vhd")
        );
        let climbing = format!("{}/new/../../out.vhd", allowed.path().display());
        assert!(host_path(&roots, &climbing, false).is_err());
        assert!(host_path(&roots, "https://example.com/x", true)
            .unwrap()
            .is_none());
    }
}
