//! Templates and runs: validation, the run lifecycle (queue, states,
//! staging, timeout, cancel, recovery), outputs and the image store
//! listings.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use slipway_core::images::run::{self as runs, RunState, RunSubState};
use slipway_core::images::template::{self, ImageTemplate, OnError, TemplateProperties};
use slipway_store::{ImageRunRecord, Store, StoreError, VmImageRecord};
use tokio::sync::{watch, Semaphore};

use crate::base::BaseCatalog;
use crate::exec::RunLog;
use crate::vm::Accel;
use crate::{
    blocking, build_network_name, local_path, Built, Failure, ImageConfig, ImageError, ImageService,
};

impl ImageService {
    /// The service; call [`ImageService::recover`] once at start.
    pub fn new(store: Store, cfg: ImageConfig) -> Arc<ImageService> {
        let slots = Arc::new(Semaphore::new(cfg.max_concurrent_runs.max(1)));
        Arc::new(ImageService {
            store,
            slots,
            cancels: Mutex::new(HashMap::new()),
            trigger_chains: Mutex::new(HashMap::new()),
            stopping: watch::Sender::new(false),
            executing: watch::Sender::new(0),
            accel: Accel::new(cfg.accel),
            cfg,
        })
    }

    /// The base-image catalog.
    pub fn base_images(&self) -> &BaseCatalog {
        &self.cfg.base_images
    }

    /// Ends every run in progress as the server stops, waiting at most
    /// `grace` for them: each is Failed with "The Slipway server stopped
    /// during the run" (staging kept), after its customizer processes, VMs,
    /// mounts, loop devices and build network are gone — what a kill would
    /// leave on the host. Runs started after this call end the same way.
    /// A base-image build in progress is stopped too
    /// ([`BaseCatalog::stop_builds`]). Returns how many runs were still
    /// executing after `grace`.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.stopping.send_replace(true);
        self.cfg.base_images.stop_builds();
        let mut executing = self.executing.subscribe();
        let _ = tokio::time::timeout(grace, executing.wait_for(|n| *n == 0)).await;
        let left = *executing.borrow();
        left
    }

    /// Marks runs left unfinished by a previous server as Failed (their
    /// staging is kept) and releases what their builds held on the host: a
    /// build cut by a kill leaves its image mounted (with `/proc`, `/sys`
    /// and `/dev` bound into it), its loop device attached and its network.
    pub async fn recover(&self) -> Result<(), ImageError> {
        for r in self.store.unfinished_image_runs().await? {
            slipway_runner::netns::reap(&build_network_name(&self.cfg.instance_id, &r.run_id))
                .await;
            if let Some(staging) = r.staging.clone().map(PathBuf::from) {
                if let Err(e) = blocking(move || crate::disk::release_leftovers(&staging)).await {
                    tracing::error!(run = %r.run_id, error = %e, "releasing a killed build's mounts");
                }
            }
            let msg = runs::failure_message(
                runs::SERVER_STOPPED,
                &self.log_path(&r.run_id).to_string_lossy(),
                r.staging.as_deref(),
            );
            self.store
                .finish_image_run(
                    &r.run_id,
                    RunState::Failed,
                    &msg,
                    &r.outputs,
                    r.staging.as_deref(),
                )
                .await?;
        }
        Ok(())
    }

    /// [`ImageError::Conflict`] when template `name`'s latest run is not
    /// final: it cannot be `what` (replaced, deleted) meanwhile.
    pub(crate) async fn refuse_while_running(
        &self,
        name: &str,
        what: &str,
    ) -> Result<(), ImageError> {
        if let Some(r) = self.store.list_image_runs(name).await?.first() {
            if !r.run_state.is_final() {
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

    pub(crate) async fn sub_state(&self, run_id: &str, s: RunSubState) {
        if let Err(e) = self.store.set_image_run_sub_state(run_id, s).await {
            tracing::warn!(run = run_id, error = %e, "recording run sub-state");
        }
    }

    pub(crate) async fn execute(
        self: Arc<Self>,
        run: ImageRunRecord,
        tpl: TemplateProperties,
        mut cancel: watch::Receiver<bool>,
    ) {
        self.executing.send_modify(|n| *n += 1);
        self.execute_counted(run, tpl, &mut cancel).await;
        self.executing.send_modify(|n| *n = n.saturating_sub(1));
    }

    async fn execute_counted(
        self: &Arc<Self>,
        run: ImageRunRecord,
        tpl: TemplateProperties,
        cancel: &mut watch::Receiver<bool>,
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
                    .finish_image_run(&id, RunState::Failed, &msg, &json!([]), None)
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
        let stopping = || {
            let mut s = self.stopping.subscribe();
            async move {
                let _ = s.wait_for(|v| *v).await;
            }
        };
        let slots = self.slots.clone();
        enum Outcome {
            Done(Result<Built, Failure>),
            TimedOut,
            Canceled,
            ServerStopped,
        }
        let permit = tokio::select! {
            p = slots.acquire_owned() => p.map_err(|_| Outcome::Canceled),
            _ = canceled(cancel) => Err(Outcome::Canceled),
            _ = stopping() => Err(Outcome::ServerStopped),
        };
        let timeout = Duration::from_secs(u64::from(tpl.build_timeout_in_minutes.max(1)) * 60);
        let outcome = match permit {
            Err(o) => o,
            Ok(permit) => {
                let _ = self
                    .store
                    .set_image_run_staging(&id, Some(&staging.to_string_lossy()), &json!({}))
                    .await;
                let o = tokio::select! {
                    r = tokio::time::timeout(timeout, self.build(&id, &tpl, &staging, &log)) => match r {
                        Ok(r) => Outcome::Done(r),
                        Err(_) => Outcome::TimedOut,
                    },
                    _ = canceled(cancel) => Outcome::Canceled,
                    _ = stopping() => Outcome::ServerStopped,
                };
                drop(permit);
                o
            }
        };
        let log_s = log_path.to_string_lossy().into_owned();
        let staging_s = staging.to_string_lossy().into_owned();
        let eh = &tpl.error_handling;
        let (state, message, keep, outputs) = match outcome {
            Outcome::Canceled => {
                log.err("Build was canceled.");
                (RunState::Canceled, String::new(), false, vec![])
            }
            Outcome::ServerStopped => {
                log.err("The Slipway server stopped during the run.");
                let m = runs::failure_message(
                    runs::SERVER_STOPPED,
                    &log_s,
                    staging.exists().then_some(staging_s.as_str()),
                );
                (RunState::Failed, m, true, vec![])
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
                    Failure::Other(e) => (e.to_string(), true),
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
                    std::fs::remove_dir_all(&s)
                        .map_err(crate::BuildError::io(format!("removing {}", s.display())))
                } else {
                    Ok(())
                }
            })
            .await;
        }
        let staging_left = (keep && staging.exists()).then_some(staging_s.as_str());
        // A run whose end is not recorded would stay Running until the next
        // start's recovery: a failed write (a full disk, a busy database)
        // is tried again before giving up.
        for (attempt, pause) in [0u64, 500, 2000, 5000].into_iter().enumerate() {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            match self
                .store
                .finish_image_run(
                    &id,
                    state,
                    &message,
                    &Value::Array(outputs.clone()),
                    staging_left,
                )
                .await
            {
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(run = %id, attempt, error = %e, "recording the end of a run")
                }
            }
        }
        if matches!(state, RunState::Succeeded | RunState::PartiallySucceeded) {
            self.fire_triggers(&run, &outputs).await;
        } else if let Ok(mut c) = self.trigger_chains.lock() {
            c.remove(&id);
        }
        if let Ok(mut c) = self.cancels.lock() {
            c.remove(&id);
        }
        tracing::info!(run = %id, state = %state, "image template run finished");
    }
}
