//! VM image templates (modelled on Azure VM Image Builder): runs that take
//! a source image, customize it and distribute it.
//!
//! - [`base`]: the local base-image catalog `PlatformImage` sources resolve
//!   to (Debian built with debootstrap).
//! - [`disk`]: loop mounts, sparse copies, the fixed VHD writer, qemu-img.
//! - [`exec`]: the default executor (chroot into the mounted image) and the
//!   run's `customization.log`.
//! - [`vm`]: the full-boot executor (`vmProfile.executor: FullBoot`): qemu
//!   with a cloud-init NoCloud seed, customizers over SSH.
//! - [`ImageService`]: templates, runs (states, staging, timeout, cancel),
//!   distributors and the image store.
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
pub mod vm;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use slipway_core::images::ids::{self, ImageRef};
use slipway_core::images::run::{self as runs, RunState, RunSubState};
use slipway_core::images::template::{
    self, Customizer, Distributor, Executor, ImageTemplate, OnError, Source, TemplateProperties,
    Versioning,
};
use slipway_fetch::{Fetcher, MAX_IN_MEMORY_BYTES};
use slipway_store::{ImageRunRecord, Store, StoreError, VmImageRecord};
use thiserror::Error;
use tokio::sync::{watch, Semaphore};

use crate::base::BaseCatalog;
use crate::exec::RunLog;
use crate::vm::{Accel, AccelMode, Vm};
use slipway_hostfs::LocalRoots;
use slipway_runner::netns::HeldNetwork;
use slipway_runner::{NetworkPool, RunnerNetwork};

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
}

impl std::fmt::Debug for ImageService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageService")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Where customizers run: the executor of `vmProfile.executor`.
enum Guest {
    /// The image mounted on the host, entered through the customizer
    /// sandbox; its network (runner egress policy) when the server has a
    /// network pool. Dropped in field order: the network after the mount.
    Chroot(disk::Mounted, Option<HeldNetwork>),
    /// The image booted under qemu, entered over SSH.
    Vm(Box<Vm>),
}

impl Guest {
    /// Runs a customizer's script as root with `/bin/sh -e`.
    async fn run_script(&self, i: usize, script: Vec<u8>, log: &RunLog) -> Result<(), String> {
        match self {
            Guest::Chroot(m, net) => {
                let rel = format!("tmp/.slipway/script-{i}.sh");
                exec::image_tree(m.root())?
                    .write(&rel, &script, 0o700)
                    .map_err(|e| format!("writing the script: {e}"))?;
                exec::run_confined(
                    m.root(),
                    net.as_ref().map(|n| n.0.path()).as_deref(),
                    &["/bin/sh", "-e", &format!("/{rel}")],
                    log,
                )
                .await
            }
            Guest::Vm(vm) => vm.run_script(i, script, log).await,
        }
    }

    /// Puts a `File` customizer's bytes at `destination`, making its folder.
    async fn put_file(
        &self,
        i: usize,
        bytes: Vec<u8>,
        destination: &str,
        log: &RunLog,
    ) -> Result<(), String> {
        match self {
            Guest::Chroot(m, net) => {
                let root = m.root();
                let incoming = format!(".slipway-incoming-{i}");
                exec::image_tree(root)?
                    .write(&incoming, &bytes, 0o644)
                    .map_err(|e| format!("staging the file: {e}"))?;
                // Moved from inside the sandbox, so symlinks resolve in the image.
                exec::run_confined(
                    root,
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
            Guest::Vm(vm) => vm.put_file(i, bytes, destination, log).await,
        }
    }
}

/// Why a build stopped.
#[derive(Debug)]
enum Failure {
    Customizer(String),
    Validation(String),
    Other(String),
}

/// A build that reached distribution.
struct Built {
    outputs: Vec<Value>,
    validation_error: Option<String>,
}

/// The working disk's source, resolved.
struct Resolved {
    info: Value,
    version: Option<String>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("worker failed: {e}"))?
}

fn local_path(uri: &str) -> Option<PathBuf> {
    let p = uri.strip_prefix("file://").unwrap_or(uri);
    p.starts_with('/').then(|| PathBuf::from(p))
}

/// A host path a template names (`/abs` or `file:///abs`), confined to the
/// operator's `--local-catalog-root`s: `None` for other URIs; for
/// `existing` files the canonical path beneath a root, for outputs the
/// canonical parent folder beneath a root joined with the file name.
///
/// Errors: a message naming the uri and the allowed folders.
fn host_path(roots: &LocalRoots, uri: &str, existing: bool) -> Result<Option<PathBuf>, String> {
    let Some(p) = local_path(uri) else {
        return Ok(None);
    };
    let refused = |e: slipway_hostfs::HostFsError| format!("uri '{uri}': {e}");
    if existing {
        return roots
            .resolve(&p.to_string_lossy())
            .map(Some)
            .map_err(refused);
    }
    if !matches!(
        p.components().next_back(),
        Some(std::path::Component::Normal(_))
    ) {
        return Err(format!("uri '{uri}' does not name a file"));
    }
    // Folders that do not exist yet are made by the distributor: the
    // nearest existing ancestor must lie beneath a root, and the rest may
    // only name new folders (no `..`).
    let mut existing = p.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(std::path::Component::Normal(name))) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return Err(format!("uri '{uri}' does not name a file")),
        }
    }
    let mut out = roots
        .resolve(&existing.to_string_lossy())
        .map_err(refused)?;
    out.extend(rest.iter().rev());
    Ok(Some(out))
}

impl ImageService {
    /// The service; call [`ImageService::recover`] once at start.
    pub fn new(store: Store, cfg: ImageConfig) -> Arc<ImageService> {
        let slots = Arc::new(Semaphore::new(cfg.max_concurrent_runs.max(1)));
        Arc::new(ImageService {
            store,
            slots,
            cancels: Mutex::new(HashMap::new()),
            accel: Accel::new(cfg.accel),
            cfg,
        })
    }

    /// The base-image catalog.
    pub fn base_images(&self) -> &BaseCatalog {
        &self.cfg.base_images
    }

    /// Marks runs left unfinished by a previous server as Failed (their
    /// staging is kept).
    pub async fn recover(&self) -> Result<(), ImageError> {
        for r in self.store.unfinished_image_runs().await? {
            // A build cut by a server kill leaves its network behind.
            slipway_runner::netns::reap(&build_network_name(&self.cfg.instance_id, &r.run_id))
                .await;
            let msg = runs::failure_message(
                "The Slipway server stopped during the run",
                &self.log_path(&r.run_id).to_string_lossy(),
                r.staging.as_deref(),
            );
            self.store
                .finish_image_run(&r.run_id, "Failed", &msg, &r.outputs, r.staging.as_deref())
                .await?;
        }
        Ok(())
    }

    /// [`ImageError::Conflict`] when template `name`'s latest run is not
    /// final: it cannot be `what` (replaced, deleted) meanwhile.
    async fn refuse_while_running(&self, name: &str, what: &str) -> Result<(), ImageError> {
        if let Some(r) = self.store.list_image_runs(name).await?.first() {
            if !RunState::parse(&r.run_state).is_some_and(|s| s.is_final()) {
                return Err(ImageError::Conflict(format!(
                    "image template '{name}' has run {} in progress and cannot be {what}; cancel it or wait",
                    r.run_id
                )));
            }
        }
        Ok(())
    }

    /// Path of run `id`'s `customization.log`.
    pub fn log_path(&self, run_id: &str) -> PathBuf {
        self.cfg
            .dir
            .join("runs")
            .join(run_id)
            .join("customization.log")
    }

    /// Validates and stores template `name` (JSON text); whether it is new.
    ///
    /// Errors: [`ImageError::Validation`] with AIB's property path; a
    /// template with a run in progress cannot be replaced.
    pub async fn put_template(&self, name: &str, json_text: &str) -> Result<bool, ImageError> {
        template::validate_template_name(name)?;
        let t = template::parse_template(json_text)?;
        self.refuse_while_running(name, "replaced").await?;
        let doc = serde_json::to_value(&t)
            .map_err(|e| ImageError::Conflict(format!("template could not be stored: {e}")))?;
        Ok(self.store.put_image_template(name, &doc).await?)
    }

    /// Template `name`.
    pub async fn template(&self, name: &str) -> Result<ImageTemplate, ImageError> {
        let doc =
            self.store
                .get_image_template(name)
                .await?
                .ok_or_else(|| ImageError::NotFound {
                    kind: "image template",
                    name: name.into(),
                })?;
        serde_json::from_value(doc).map_err(|e| {
            ImageError::Store(StoreError::Corrupt {
                what: "image template",
                message: e.to_string(),
            })
        })
    }

    /// Deletes template `name` (runs stay as history).
    ///
    /// Errors: not found; a run in progress.
    pub async fn delete_template(&self, name: &str) -> Result<(), ImageError> {
        self.refuse_while_running(name, "deleted").await?;
        if !self.store.delete_image_template(name).await? {
            return Err(ImageError::NotFound {
                kind: "image template",
                name: name.into(),
            });
        }
        Ok(())
    }

    /// Starts a run of template `name` (AIB `POST …/run`).
    ///
    /// Errors: not found; a run already in progress (409).
    pub async fn run(self: &Arc<Self>, name: &str) -> Result<ImageRunRecord, ImageError> {
        let t = self.template(name).await?;
        let doc = serde_json::to_value(&t).unwrap_or(Value::Null);
        let run = self
            .store
            .create_image_run(name, &doc)
            .await?
            .ok_or_else(|| {
                ImageError::Conflict(format!(
                    "image template '{name}' already has a run in progress"
                ))
            })?;
        let (tx, rx) = watch::channel(false);
        if let Ok(mut c) = self.cancels.lock() {
            c.insert(run.run_id.clone(), tx);
        }
        let svc = self.clone();
        let r = run.clone();
        tokio::spawn(async move {
            svc.execute(r, t.properties, rx).await;
        });
        Ok(run)
    }

    /// Cancels template `name`'s run in progress (AIB `POST …/cancel`):
    /// `Canceling` now, `Canceled` once its processes and mounts are gone.
    ///
    /// Errors: no run in progress (409).
    pub async fn cancel(&self, name: &str) -> Result<ImageRunRecord, ImageError> {
        let runs = self.store.list_image_runs(name).await?;
        let run = runs.first().ok_or_else(|| {
            ImageError::Conflict(format!("image template '{name}' has no run in progress"))
        })?;
        if !self.store.request_image_run_cancel(&run.run_id).await? {
            return Err(ImageError::Conflict(format!(
                "image template '{name}' has no run in progress (last run {} is {})",
                run.run_id, run.run_state
            )));
        }
        if let Ok(c) = self.cancels.lock() {
            if let Some(tx) = c.get(&run.run_id) {
                let _ = tx.send(true);
            }
        }
        self.store
            .get_image_run(&run.run_id)
            .await?
            .ok_or_else(|| ImageError::NotFound {
                kind: "run",
                name: run.run_id.clone(),
            })
    }

    /// The runs of template `name`, newest first.
    pub async fn runs(&self, name: &str) -> Result<Vec<ImageRunRecord>, ImageError> {
        Ok(self.store.list_image_runs(name).await?)
    }

    /// Run outputs of template `name`'s last run that produced any
    /// (AIB `GET …/runOutputs`).
    pub async fn run_outputs(&self, name: &str) -> Result<Vec<Value>, ImageError> {
        for r in self.store.list_image_runs(name).await? {
            if let Some(a) = r.outputs.as_array().filter(|a| !a.is_empty()) {
                return Ok(a.clone());
            }
        }
        Ok(Vec::new())
    }

    /// The file behind run output `output` of template `name`: a VHD,
    /// qcow2 or raw file, or a stored image's raw disk.
    pub async fn output_file(&self, name: &str, output: &str) -> Result<PathBuf, ImageError> {
        let not_found = || ImageError::NotFound {
            kind: "run output",
            name: format!("{name}/{output}"),
        };
        let o = self
            .run_outputs(name)
            .await?
            .into_iter()
            .find(|o| o["name"] == output && o["provisioningState"] == "Succeeded")
            .ok_or_else(not_found)?;
        if let Some(uri) = o["artifactUri"].as_str() {
            return local_path(uri).ok_or_else(not_found);
        }
        let id = o["artifactId"].as_str().ok_or_else(not_found)?;
        let img = self.store.get_vm_image(id).await?.ok_or_else(not_found)?;
        Ok(PathBuf::from(img.path))
    }

    /// The image store.
    pub async fn images(&self) -> Result<Vec<VmImageRecord>, ImageError> {
        Ok(self.store.list_vm_images().await?)
    }

    async fn sub_state(&self, run_id: &str, s: RunSubState) {
        if let Err(e) = self.store.set_image_run_sub_state(run_id, s.as_str()).await {
            tracing::warn!(run = run_id, error = %e, "recording run sub-state");
        }
    }

    async fn execute(
        self: Arc<Self>,
        run: ImageRunRecord,
        tpl: TemplateProperties,
        mut cancel: watch::Receiver<bool>,
    ) {
        let id = run.run_id.clone();
        let staging = self.cfg.dir.join("staging").join(&id);
        let log_path = self.log_path(&id);
        let log = match RunLog::open(&log_path) {
            Ok(l) => l,
            Err(e) => {
                let msg = format!("opening {}: {e}", log_path.display());
                let _ = self
                    .store
                    .finish_image_run(&id, "Failed", &msg, &json!([]), None)
                    .await;
                return;
            }
        };
        let canceled = |c: &mut watch::Receiver<bool>| {
            let mut c = c.clone();
            async move {
                let _ = c.wait_for(|v| *v).await;
            }
        };
        let slots = self.slots.clone();
        let permit = tokio::select! {
            p = slots.acquire_owned() => p.ok(),
            _ = canceled(&mut cancel) => None,
        };
        let timeout = Duration::from_secs(u64::from(tpl.build_timeout_in_minutes.max(1)) * 60);
        enum Outcome {
            Done(Result<Built, Failure>),
            TimedOut,
            Canceled,
        }
        let outcome = if permit.is_none() {
            Outcome::Canceled
        } else {
            let _ = self
                .store
                .set_image_run_staging(&id, Some(&staging.to_string_lossy()), &json!({}))
                .await;
            tokio::select! {
                r = tokio::time::timeout(timeout, self.build(&id, &tpl, &staging, &log)) => match r {
                    Ok(r) => Outcome::Done(r),
                    Err(_) => Outcome::TimedOut,
                },
                _ = canceled(&mut cancel) => Outcome::Canceled,
            }
        };
        drop(permit);
        let log_s = log_path.to_string_lossy().into_owned();
        let staging_s = staging.to_string_lossy().into_owned();
        let eh = &tpl.error_handling;
        let (state, message, keep, outputs) = match outcome {
            Outcome::Canceled => {
                log.err("Build was canceled.");
                (RunState::Canceled, String::new(), false, vec![])
            }
            Outcome::TimedOut => {
                log.err(&format!(
                    "Build exceeded buildTimeoutInMinutes ({})",
                    tpl.build_timeout_in_minutes
                ));
                let m = format!(
                    "{}. Image Build log location: {log_s}. Staging kept at {staging_s}.",
                    runs::TIMEOUT_MESSAGE
                );
                (RunState::Failed, m, true, vec![])
            }
            Outcome::Done(Err(f)) => {
                let (detail, keep) = match f {
                    Failure::Customizer(d) => (d, OnError::keeps_staging(eh.on_customizer_error)),
                    Failure::Validation(d) => (d, OnError::keeps_staging(eh.on_validation_error)),
                    Failure::Other(d) => (d, true),
                };
                log.err(&format!("Build 'slipway' errored: {detail}"));
                let m = runs::failure_message(&detail, &log_s, keep.then_some(staging_s.as_str()));
                (RunState::Failed, m, keep, vec![])
            }
            Outcome::Done(Ok(b)) => {
                let ok = b
                    .outputs
                    .iter()
                    .filter(|o| o["provisioningState"] == "Succeeded")
                    .count();
                let failed: Vec<String> = b
                    .outputs
                    .iter()
                    .filter(|o| o["provisioningState"] != "Succeeded")
                    .map(|o| {
                        format!(
                            "{}: {}",
                            o["name"].as_str().unwrap_or(""),
                            o["error"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                if let Some(v) = b.validation_error {
                    let keep = OnError::keeps_staging(eh.on_validation_error);
                    let m = runs::failure_message(
                        &format!("{v} (distributed anyway: continueDistributeOnFailure)"),
                        &log_s,
                        keep.then_some(staging_s.as_str()),
                    );
                    (RunState::Failed, m, keep, b.outputs)
                } else if failed.is_empty() {
                    log.out("Build 'slipway' finished.");
                    (RunState::Succeeded, String::new(), false, b.outputs)
                } else if ok > 0 {
                    let m = format!("Some distributions failed: {}", failed.join("; "));
                    (RunState::PartiallySucceeded, m, false, b.outputs)
                } else {
                    let m = runs::failure_message(
                        &format!("Every distribution failed: {}", failed.join("; ")),
                        &log_s,
                        Some(&staging_s),
                    );
                    (RunState::Failed, m, true, b.outputs)
                }
            }
        };
        if !keep {
            let s = staging.clone();
            let _ = blocking(move || {
                if s.exists() {
                    std::fs::remove_dir_all(&s).map_err(|e| e.to_string())
                } else {
                    Ok(())
                }
            })
            .await;
        }
        let staging_left = (keep && staging.exists()).then_some(staging_s.as_str());
        if let Err(e) = self
            .store
            .finish_image_run(
                &id,
                state.as_str(),
                &message,
                &Value::Array(outputs),
                staging_left,
            )
            .await
        {
            tracing::error!(run = %id, error = %e, "recording the end of a run");
        }
        if let Ok(mut c) = self.cancels.lock() {
            c.remove(&id);
        }
        tracing::info!(run = %id, state = %state, "image template run finished");
    }

    async fn build(
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
        std::fs::create_dir_all(staging)
            .map_err(|e| Failure::Other(format!("creating {}: {e}", staging.display())))?;
        let disk = staging.join("disk.raw");
        let source = self
            .prepare_source(&tpl.source, &disk, staging, log)
            .await
            .map_err(|e| Failure::Other(format!("properties.source: {e}")))?;
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
                    json!({"provisioningState": "Failed", "error": e})
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

    async fn prepare_source(
        &self,
        source: &Source,
        disk: &Path,
        staging: &Path,
        log: &RunLog,
    ) -> Result<Resolved, String> {
        let copy = |from: PathBuf, to: PathBuf| {
            blocking(move || {
                disk::run(
                    "cp",
                    &[
                        "--sparse=always",
                        "--reflink=auto",
                        &from.to_string_lossy(),
                        &to.to_string_lossy(),
                    ],
                )
                .map(|_| ())
            })
        };
        match source {
            Source::PlatformImage {
                publisher,
                offer,
                sku,
                version,
                ..
            } => {
                let cat = self.cfg.base_images.clone();
                let (p, o, s, v) = (
                    publisher.clone(),
                    offer.clone(),
                    sku.clone(),
                    version.clone(),
                );
                if cat.versions(&p, &o, &s)?.is_empty() {
                    log.out("slipway: building the base image with debootstrap (first use on this host)");
                }
                let base = blocking(move || cat.resolve(&p, &o, &s, &v)).await?;
                log.out(&format!(
                    "slipway: source {}:{}:{}:{} ({})",
                    base.publisher,
                    base.offer,
                    base.sku,
                    base.version,
                    base.path.display()
                ));
                copy(base.path.clone(), disk.to_path_buf()).await?;
                Ok(Resolved {
                    info: json!({"type": "PlatformImage", "publisher": base.publisher, "offer": base.offer, "sku": base.sku, "version": base.version}),
                    version: Some(base.version),
                })
            }
            Source::ManagedImage { image_id }
            | Source::SharedImageVersion {
                image_version_id: image_id,
            } => {
                let r = ids::parse_image_id(image_id)?;
                let img = self.find_image(&r).await?;
                log.out(&format!("slipway: source {}", img.id));
                copy(PathBuf::from(&img.path), disk.to_path_buf()).await?;
                let kind = if img.gallery.is_some() {
                    "SharedImageVersion"
                } else {
                    "ManagedImage"
                };
                Ok(Resolved {
                    info: json!({"type": kind, "imageId": img.id, "version": img.version}),
                    version: img.version.clone(),
                })
            }
            Source::DiskImage {
                uri,
                sha256_checksum,
            } => {
                let file = if let Some(p) = host_path(&self.cfg.local_roots, uri, true)? {
                    if !sha256_checksum.is_empty() {
                        let p2 = p.clone();
                        let w = blocking(move || disk::hash_file(&p2)).await?;
                        check_sha(uri, sha256_checksum, &w.sha256)?;
                    }
                    p
                } else if uri.starts_with("http://") || uri.starts_with("https://") {
                    let dst = staging.join("source.img");
                    let (u, d, want) = (uri.clone(), dst.clone(), sha256_checksum.clone());
                    let fetcher = self.cfg.fetcher.clone();
                    blocking(move || download(&fetcher, &u, &d, &want)).await?;
                    dst
                } else {
                    return Err(format!(
                        "uri '{uri}' is not supported: expected an absolute path, file://, http:// or https:// URL"
                    ));
                };
                let d = disk.to_path_buf();
                blocking(move || disk::convert(&file, &d, "raw")).await?;
                Ok(Resolved {
                    info: json!({"type": "DiskImage", "uri": uri}),
                    version: None,
                })
            }
        }
    }

    async fn find_image(&self, r: &ImageRef) -> Result<VmImageRecord, String> {
        let id = match r {
            ImageRef::Gallery {
                gallery,
                definition,
                version: Some(v),
            } if v == "latest" => {
                let vs = self
                    .store
                    .gallery_versions(gallery, definition)
                    .await
                    .map_err(|e| e.to_string())?;
                let latest = ids::latest_version(
                    vs.iter()
                        .filter_map(|i| i.version.as_deref().map(|v| (v, i.exclude_from_latest))),
                )
                .ok_or_else(|| format!("gallery image '{gallery}/{definition}' has no version that counts as latest"))?;
                ImageRef::Gallery {
                    gallery: gallery.clone(),
                    definition: definition.clone(),
                    version: Some(latest),
                }
                .to_string()
            }
            ImageRef::Gallery { version: None, .. } => {
                return Err(format!(
                    "image id '{r}' names no version: add /versions/<x.y.z> or /versions/latest"
                ))
            }
            other => other.to_string(),
        };
        self.store
            .get_vm_image(&id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("image '{id}' is not in the image store"))
    }

    /// Readies the executor `vmProfile.executor` names: the mounted image
    /// prepared for chroot, or a booted build VM.
    async fn start_guest(
        &self,
        run_id: &str,
        tpl: &TemplateProperties,
        disk: &Path,
        staging: &Path,
        log: &RunLog,
    ) -> Result<Guest, String> {
        let profile = tpl.vm_profile.clone().unwrap_or_default();
        let (d, m) = (disk.to_path_buf(), staging.join("mnt"));
        let mounted = blocking(move || disk::Mounted::mount(&d, &m)).await?;
        let root = mounted.root().to_path_buf();
        match profile.executor {
            Executor::Chroot => {
                exec::prepare(&root)?;
                let net = match &self.cfg.network_pool {
                    None => None,
                    Some(pool) => {
                        let n = RunnerNetwork::create(
                            &build_network_name(&self.cfg.instance_id, run_id),
                            pool,
                            &[],
                        )
                        .await
                        .map_err(|e| format!("the build's network: {e}"))?;
                        // Removed on drop, also when the filter fails.
                        let mut held = HeldNetwork(n);
                        held.0
                            .install_closed_filter()
                            .await
                            .map_err(|e| format!("the build's network: {e}"))?;
                        Some(held)
                    }
                };
                Ok(Guest::Chroot(mounted, net))
            }
            Executor::FullBoot => {
                for (need, package) in [
                    ("usr/bin/cloud-init", "cloud-init"),
                    ("usr/sbin/sshd", "openssh-server"),
                ] {
                    if !root.join(need).exists() {
                        return Err(format!(
                            "properties.vmProfile.executor: FullBoot needs {package} in the image (/{need} is missing); use a Slipway base image or the Chroot executor"
                        ));
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
                let vm = Vm::boot(disk, staging, run_id, shape, &self.accel, log).await?;
                Ok(Guest::Vm(Box::new(vm)))
            }
        }
    }

    /// Ends the executor and deprovisions the image offline: the chroot's
    /// mount, or the VM (powered off, then its build user removed).
    async fn finish_guest(
        &self,
        guest: Guest,
        disk: &Path,
        staging: &Path,
        log: &RunLog,
    ) -> Result<(), String> {
        let mounted = match guest {
            Guest::Chroot(m, net) => {
                drop(net);
                m
            }
            Guest::Vm(vm) => {
                vm.shutdown(log).await?;
                let (d, m) = (disk.to_path_buf(), staging.join("mnt"));
                let mounted = blocking(move || disk::Mounted::mount(&d, &m)).await?;
                let root = mounted.root();
                exec::run_confined(root, None, &["userdel", "--remove", vm::BUILD_USER], log)
                    .await
                    .map_err(|e| format!("removing the build user '{}': {e}", vm::BUILD_USER))?;
                exec::image_tree(root)?
                    .remove_file("etc/sudoers.d/90-cloud-init-users")
                    .map_err(|e| format!("in the image: {e}"))?;
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

    async fn customize(
        &self,
        i: usize,
        c: &Customizer,
        guest: &Guest,
        log: &RunLog,
    ) -> Result<(), String> {
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
                    (None, None) => return Err("no inline or scriptUri".into()),
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
                    return Err(format!("destination '{destination}' must not contain '..'"));
                }
                let bytes = self.fetch(source_uri, sha256_checksum).await?;
                log.out(&format!(
                    "Uploading {source_uri} => {destination} ({} bytes)",
                    bytes.len()
                ));
                guest.put_file(i, bytes, destination, log).await
            }
            other => Err(format!(
                "UnsupportedCustomizerType: '{}' customizers need a Windows image",
                other.display_name()
            )),
        };
        if let Err(e) = &r {
            log.err(&format!("{name}: {e}"));
        }
        log.out(&runs::ending_marker(&name));
        r
    }

    /// Fetches a `sourceUri`/`scriptUri`: `upload:<sha256>` (an artifact
    /// uploaded to this server), an absolute path or `file://` on this host,
    /// or `http(s)://`; checks `sha256Checksum` when given.
    async fn fetch(&self, uri: &str, sha: &str) -> Result<Vec<u8>, String> {
        let bytes = if let Some(digest) = uri.strip_prefix("upload:") {
            if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("'{uri}' is not upload:<64 hex digits>"));
            }
            self.store
                .blobs
                .get(&upload_key(digest))
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("'{uri}' was not uploaded to this server"))?
        } else if let Some(p) = host_path(&self.cfg.local_roots, uri, true)? {
            tokio::fs::read(&p)
                .await
                .map_err(|e| format!("reading '{uri}': {e}"))?
        } else if uri.starts_with("http://") || uri.starts_with("https://") {
            let (u, fetcher) = (uri.to_string(), self.cfg.fetcher.clone());
            blocking(move || {
                fetcher
                    .bytes(&u, FETCH_TIMEOUT, MAX_IN_MEMORY_BYTES)
                    .map_err(|e| e.to_string())
            })
            .await?
        } else {
            return Err(format!(
                "'{uri}' is not supported: expected upload:<sha256>, an absolute path, file://, http:// or https://"
            ));
        };
        if !sha.is_empty() {
            check_sha(uri, sha, &hex::encode(Sha256::digest(&bytes)))?;
        }
        Ok(bytes)
    }

    fn file_output(
        &self,
        run_id: &str,
        uri: &str,
        name: &str,
        ext: &str,
    ) -> Result<PathBuf, String> {
        if uri.is_empty() {
            return Ok(self
                .cfg
                .dir
                .join("outputs")
                .join(run_id)
                .join(format!("{name}.{ext}")));
        }
        host_path(&self.cfg.local_roots, uri, false)?.ok_or_else(|| {
            format!("uri '{uri}' is not supported: expected an absolute path or file:// URL on the Slipway host, or none")
        })
    }

    async fn distribute(
        &self,
        run_id: &str,
        d: &Distributor,
        disk: &Path,
        source: &Resolved,
    ) -> Result<Value, String> {
        let src = disk.to_path_buf();
        match d {
            Distributor::Vhd {
                uri,
                run_output_name,
                ..
            }
            | Distributor::Raw {
                uri,
                run_output_name,
            } => {
                let vhd = matches!(d, Distributor::Vhd { .. });
                let dst = self.file_output(
                    run_id,
                    uri,
                    run_output_name,
                    if vhd { "vhd" } else { "raw" },
                )?;
                let d2 = dst.clone();
                let w = blocking(move || disk::sparse_copy(&src, &d2, vhd)).await?;
                Ok(
                    json!({"artifactUri": dst.to_string_lossy(), "sha256": w.sha256, "size": w.size, "provisioningState": "Succeeded"}),
                )
            }
            Distributor::Qcow2 {
                uri,
                run_output_name,
            } => {
                let dst = self.file_output(run_id, uri, run_output_name, "qcow2")?;
                let d2 = dst.clone();
                let w = blocking(move || {
                    if let Some(dir) = d2.parent() {
                        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                    }
                    disk::convert(&src, &d2, "qcow2")?;
                    disk::hash_file(&d2)
                })
                .await?;
                Ok(
                    json!({"artifactUri": dst.to_string_lossy(), "sha256": w.sha256, "size": w.size, "provisioningState": "Succeeded"}),
                )
            }
            Distributor::ManagedImage {
                image_id,
                artifact_tags,
                ..
            } => {
                let r = ids::parse_image_id(image_id)?;
                let ImageRef::Managed { name } = &r else {
                    return Err(format!(
                        "imageId '{image_id}' is a gallery image: use a SharedImage distributor"
                    ));
                };
                let rec = self
                    .store_image(
                        run_id,
                        disk,
                        r.to_string(),
                        None,
                        name,
                        None,
                        false,
                        source,
                        json!(artifact_tags),
                    )
                    .await?;
                Ok(
                    json!({"artifactId": rec.id, "sha256": rec.sha256, "size": rec.size, "provisioningState": "Succeeded"}),
                )
            }
            Distributor::SharedImage {
                gallery_image_id,
                versioning,
                exclude_from_latest,
                artifact_tags,
                ..
            } => {
                let ImageRef::Gallery {
                    gallery,
                    definition,
                    version,
                } = ids::parse_image_id(gallery_image_id)?
                else {
                    return Err(format!("galleryImageId '{gallery_image_id}' is not a gallery image (…/galleries/<g>/images/<def>)"));
                };
                for _attempt in 0..3 {
                    let v = match (&version, versioning) {
                        (Some(v), _) if v == "latest" => {
                            return Err("galleryImageId: a version to create cannot be 'latest'".into())
                        }
                        (Some(v), _) => v.clone(),
                        (None, Some(Versioning::Source)) => source.version.clone().ok_or(
                            "versioning Source needs a PlatformImage or SharedImageVersion source with an x.y.z version",
                        )?,
                        (None, latest) => {
                            let major = match latest {
                                Some(Versioning::Latest { major }) => *major,
                                _ => -1,
                            };
                            let have = self
                                .store
                                .gallery_versions(&gallery, &definition)
                                .await
                                .map_err(|e| e.to_string())?;
                            ids::next_latest_version(have.iter().filter_map(|i| i.version.as_deref()), major)
                        }
                    };
                    let id = ImageRef::Gallery {
                        gallery: gallery.clone(),
                        definition: definition.clone(),
                        version: Some(v.clone()),
                    }
                    .to_string();
                    match self
                        .store_image(
                            run_id,
                            disk,
                            id,
                            Some(&gallery),
                            &definition,
                            Some(&v),
                            *exclude_from_latest,
                            source,
                            json!(artifact_tags),
                        )
                        .await
                    {
                        Ok(rec) => {
                            return Ok(
                                json!({"artifactId": rec.id, "sha256": rec.sha256, "size": rec.size, "provisioningState": "Succeeded"}),
                            )
                        }
                        Err(e)
                            if e.contains("already exists")
                                && version.is_none()
                                && !matches!(versioning, Some(Versioning::Source)) =>
                        {
                            continue
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(format!(
                    "could not pick a free version of '{gallery}/{definition}' (concurrent runs)"
                ))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn store_image(
        &self,
        run_id: &str,
        disk: &Path,
        id: String,
        gallery: Option<&str>,
        definition: &str,
        version: Option<&str>,
        exclude_from_latest: bool,
        source: &Resolved,
        tags: Value,
    ) -> Result<VmImageRecord, String> {
        if self
            .store
            .get_vm_image(&id)
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            return Err(format!("image '{id}' already exists"));
        }
        let dir = self
            .cfg
            .dir
            .join("store")
            .join(uuid::Uuid::new_v4().simple().to_string());
        let path = dir.join("disk.raw");
        let (src, p2) = (disk.to_path_buf(), path.clone());
        let w = blocking(move || disk::sparse_copy(&src, &p2, false)).await?;
        let template = self
            .store
            .get_image_run(run_id)
            .await
            .ok()
            .flatten()
            .map(|r| r.template);
        let rec = VmImageRecord {
            id: id.clone(),
            gallery: gallery.map(str::to_string),
            definition: definition.to_string(),
            version: version.map(str::to_string),
            exclude_from_latest,
            path: path.to_string_lossy().into_owned(),
            sha256: w.sha256,
            size: w.size as i64,
            source_version: source.version.clone(),
            template,
            run_id: Some(run_id.to_string()),
            tags,
            create_time: chrono::Utc::now().to_rfc3339(),
        };
        if let Err(e) = self.store.insert_vm_image(&rec).await {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.to_string());
        }
        Ok(rec)
    }
}

fn check_sha(uri: &str, want: &str, got: &str) -> Result<(), String> {
    if want.eq_ignore_ascii_case(got) {
        Ok(())
    } else {
        Err(format!(
            "sha256Checksum of '{uri}' does not match: expected {want}, got {got}"
        ))
    }
}

/// Bound of one script or file GET (whole request).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Bound of one source disk image GET (whole request).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Streams `uri` into `dst`, checking `want_sha` (when not empty) on the way.
fn download(fetcher: &Fetcher, uri: &str, dst: &Path, want_sha: &str) -> Result<(), String> {
    let mut r = fetcher
        .open(uri, DOWNLOAD_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let mut f = std::fs::File::create(dst).map_err(|e| format!("{}: {e}", dst.display()))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut r, &mut buf).map_err(|e| format!("GET '{uri}': {e}"))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        std::io::Write::write_all(&mut f, &buf[..n])
            .map_err(|e| format!("{}: {e}", dst.display()))?;
    }
    if !want_sha.is_empty() {
        check_sha(uri, want_sha, &hex::encode(hash.finalize()))?;
    }
    Ok(())
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
            assert!(e.contains("local-catalog-root"), "{bad}: {e}");
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
