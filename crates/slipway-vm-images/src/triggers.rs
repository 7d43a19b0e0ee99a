//! Image template triggers (AIB `SourceImage`): stored per template, and
//! fired when a run stores a newer version of another template's source,
//! or when the base-image catalog gains a newer version of a platform
//! image a template follows (built on first use, or refreshed when older
//! than `--base-image-max-age-days`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{json, Value};
use slipway_core::images::ids::parse_version;
use slipway_core::images::template::{self, ValidationFailed};
use slipway_core::images::trigger::{
    extend_chain, parse_trigger_request, tracked_source, TrackedSource, TriggerProperties,
    TriggerStatus,
};
use slipway_store::{now_rfc3339 as now, ImageRunRecord, StoreError};

use crate::{ImageError, ImageService};

/// The stored document of a trigger: its properties, and for one that
/// follows a platform image the newest version it has acted on
/// (`platformVersion`; not part of the resource).
fn trigger_doc(props: &TriggerProperties, platform_version: Option<&str>) -> Value {
    let mut doc = json!(props);
    if let Some(v) = platform_version {
        doc["platformVersion"] = json!(v);
    }
    doc
}

fn stored(doc: Value) -> Result<TriggerProperties, ImageError> {
    serde_json::from_value(doc).map_err(|e| {
        ImageError::Store(StoreError::Corrupt {
            what: "image template trigger",
            message: e.to_string(),
        })
    })
}

impl ImageService {
    /// Creates or replaces trigger `name` of template `template` from its
    /// request body (`{"properties": {"kind": "SourceImage"}}`); whether it
    /// is new, and the trigger.
    ///
    /// Errors: the template does not exist; [`ImageError::Validation`] for
    /// a bad name or kind, or a source no trigger can follow (a fixed
    /// gallery version, a platform image, a disk file).
    pub async fn put_trigger(
        &self,
        template: &str,
        name: &str,
        body: &str,
    ) -> Result<(bool, TriggerProperties), ImageError> {
        template::validate_template_name(name).map_err(|e| ValidationFailed {
            path: "triggers.name".into(),
            detail: e.detail,
        })?;
        let kind = parse_trigger_request(body)?;
        let t = self.template(template).await?;
        let tracked = tracked_source(&t.properties.source)?;
        // A platform image trigger acts on versions newer than today's.
        let platform_version = match &tracked {
            TrackedSource::Platform {
                publisher,
                offer,
                sku,
            } => Some(
                self.newest_platform_version(publisher, offer, sku)
                    .await
                    .map_err(|detail| ValidationFailed {
                        path: "properties.source".into(),
                        detail,
                    })?,
            ),
            _ => None,
        };
        let message = match &platform_version {
            Some(Some(v)) => format!("Following {tracked}, now at version {v}"),
            Some(None) => format!("Following {tracked}, no version built yet"),
            None => format!("Following {tracked}"),
        };
        let props = TriggerProperties {
            kind,
            status: TriggerStatus {
                code: "Healthy".into(),
                message,
                time: now(),
            },
            provisioning_state: "Succeeded".into(),
        };
        let doc = trigger_doc(&props, platform_version.flatten().as_deref());
        let new = self.store.put_image_trigger(template, name, &doc).await?;
        Ok((new, props))
    }

    /// Trigger `name` of `template`.
    ///
    /// Errors: not found.
    pub async fn trigger(
        &self,
        template: &str,
        name: &str,
    ) -> Result<TriggerProperties, ImageError> {
        let doc = self
            .store
            .get_image_trigger(template, name)
            .await?
            .ok_or_else(|| ImageError::NotFound {
                kind: "trigger",
                name: format!("{template}/{name}"),
            })?;
        stored(doc)
    }

    /// The triggers of `template` as `(name, trigger)`, by name.
    ///
    /// Errors: the template does not exist.
    pub async fn triggers(
        &self,
        template: &str,
    ) -> Result<Vec<(String, TriggerProperties)>, ImageError> {
        self.template(template).await?;
        let mut out = Vec::new();
        for (_, name, doc) in self.store.list_image_triggers(Some(template)).await? {
            out.push((name, stored(doc)?));
        }
        Ok(out)
    }

    /// Deletes trigger `name` of `template`.
    ///
    /// Errors: not found.
    pub async fn delete_trigger(&self, template: &str, name: &str) -> Result<(), ImageError> {
        if !self.store.delete_image_trigger(template, name).await? {
            return Err(ImageError::NotFound {
                kind: "trigger",
                name: format!("{template}/{name}"),
            });
        }
        Ok(())
    }

    /// After `run` stored images (its outputs' `artifactId`s): starts a run
    /// of every other template whose trigger follows one of them, and
    /// records on the trigger what it did. A template's own output never
    /// triggers itself, nor does any template already in the chain of
    /// triggered runs that led to `run` (templates feeding each other's
    /// sources would otherwise rebuild forever).
    pub(crate) fn fire_triggers<'a>(
        self: &'a Arc<Self>,
        run: &'a ImageRunRecord,
        outputs: &'a [Value],
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            if let Err(e) = self.fire_triggers_inner(run, outputs).await {
                tracing::warn!(run = %run.run_id, error = %e, "firing image template triggers");
            }
        })
    }

    async fn fire_triggers_inner(
        self: &Arc<Self>,
        run: &ImageRunRecord,
        outputs: &[Value],
    ) -> Result<(), ImageError> {
        let mut new_images = Vec::new();
        for o in outputs
            .iter()
            .filter(|o| o["provisioningState"] == "Succeeded")
        {
            if let Some(id) = o["artifactId"].as_str() {
                if let Some(img) = self.store.get_vm_image(id).await? {
                    new_images.push(img);
                }
            }
        }
        let chain = self
            .trigger_chains
            .lock()
            .ok()
            .and_then(|mut c| c.remove(&run.run_id))
            .unwrap_or_else(|| vec![run.template.clone()]);
        if new_images.is_empty() {
            return Ok(());
        }
        for (template, name, doc) in self.store.list_image_triggers(None).await? {
            let Ok(t) = self.template(&template).await else {
                continue;
            };
            let Ok(tracked) = tracked_source(&t.properties.source) else {
                continue;
            };
            let Some(img) = new_images
                .iter()
                .find(|i| tracked.follows(&i.id, i.exclude_from_latest))
            else {
                continue;
            };
            let mut props = stored(doc)?;
            let Some(next) = extend_chain(&chain, &template) else {
                if template != run.template {
                    props.status = TriggerStatus {
                        code: "Healthy".into(),
                        message: format!(
                            "New source image {} not built: it came from a run this template's own trigger led to ({})",
                            img.id,
                            chain.join(" → ")
                        ),
                        time: now(),
                    };
                    self.store
                        .put_image_trigger(&template, &name, &json!(props))
                        .await?;
                }
                continue;
            };
            props.status = match self.run(&template).await {
                Ok(r) => {
                    if let Ok(mut c) = self.trigger_chains.lock() {
                        c.insert(r.run_id.clone(), next);
                    }
                    TriggerStatus {
                        code: "Healthy".into(),
                        message: format!(
                            "Started run {} for new source image {} (from run {} of '{}')",
                            r.run_id, img.id, run.run_id, run.template
                        ),
                        time: now(),
                    }
                }
                Err(e) => TriggerStatus {
                    code: "Unhealthy".into(),
                    message: format!("New source image {} but no run started: {e}", img.id),
                    time: now(),
                },
            };
            tracing::info!(template = %template, trigger = %name, status = %props.status.message, "image template trigger");
            self.store
                .put_image_trigger(&template, &name, &json!(props))
                .await?;
        }
        Ok(())
    }

    /// The newest built version of platform image `publisher:offer:sku`;
    /// `Err` names what the catalog offers when it is not one of them.
    async fn newest_platform_version(
        &self,
        publisher: &str,
        offer: &str,
        sku: &str,
    ) -> Result<Option<String>, String> {
        let cat = self.cfg.base_images.clone();
        let (p, o, s) = (publisher.to_string(), offer.to_string(), sku.to_string());
        let versions = crate::blocking(move || cat.versions(&p, &o, &s))
            .await
            .map_err(|e| e.to_string())?;
        Ok(versions.last().map(|b| b.version.clone()))
    }

    /// Keeps the platform images this host built fresh and their followers
    /// rebuilt, until the server stops: every [`PLATFORM_CHECK`] and after
    /// every base image this process builds, rebuilds an offer whose newest
    /// version is older than `max_age_days` (0: never; one attempt an hour
    /// per offer) keeping its newest `keep_versions`, then starts a run of
    /// every template whose trigger follows a platform image with a version
    /// newer than the one it last acted on.
    pub fn spawn_platform_image_watch(self: &Arc<Self>, max_age_days: u32, keep_versions: usize) {
        let svc = self.clone();
        tokio::spawn(async move {
            let mut attempted: std::collections::HashMap<&'static str, std::time::Instant> =
                Default::default();
            loop {
                if max_age_days > 0 {
                    svc.refresh_stale_base_images(max_age_days, keep_versions, &mut attempted)
                        .await;
                }
                if let Err(e) = svc.check_platform_triggers().await {
                    tracing::warn!(error = %e, "checking platform image triggers");
                }
                tokio::select! {
                    _ = svc.cfg.base_images.built().notified() => {}
                    _ = tokio::time::sleep(PLATFORM_CHECK) => {}
                }
            }
        });
    }

    async fn refresh_stale_base_images(
        &self,
        max_age_days: u32,
        keep_versions: usize,
        attempted: &mut std::collections::HashMap<&'static str, std::time::Instant>,
    ) {
        let cat = self.cfg.base_images.clone();
        let today = chrono::Utc::now().date_naive();
        let stale = crate::blocking(move || Ok(cat.stale(max_age_days, today)))
            .await
            .unwrap_or_default();
        for o in stale {
            if attempted
                .get(o.offer)
                .is_some_and(|at| at.elapsed() < REFRESH_RETRY)
            {
                continue;
            }
            attempted.insert(o.offer, std::time::Instant::now());
            tracing::info!(
                offer = o.offer,
                max_age_days,
                "refreshing a base image older than its maximum age"
            );
            let cat = self.cfg.base_images.clone();
            let refreshed = crate::blocking(move || {
                cat.build(o)?;
                cat.prune(o, keep_versions)
            })
            .await;
            if let Err(e) = refreshed {
                tracing::warn!(offer = o.offer, error = %e, "refreshing a base image");
            }
        }
    }

    /// Starts a run of every template whose trigger follows a platform
    /// image that has a version newer than the one the trigger last acted
    /// on. A template with a run in progress is left for the next check; a
    /// template whose latest run was already built from that version only
    /// records it.
    async fn check_platform_triggers(self: &Arc<Self>) -> Result<(), ImageError> {
        for (template, name, doc) in self.store.list_image_triggers(None).await? {
            let Ok(t) = self.template(&template).await else {
                continue;
            };
            let Ok(TrackedSource::Platform {
                publisher,
                offer,
                sku,
            }) = tracked_source(&t.properties.source)
            else {
                continue;
            };
            let Ok(Some(newest)) = self.newest_platform_version(&publisher, &offer, &sku).await
            else {
                continue;
            };
            let seen = doc["platformVersion"].as_str().map(str::to_string);
            if seen.as_deref().and_then(parse_version) >= parse_version(&newest) {
                continue;
            }
            let latest_run = self
                .store
                .list_image_runs(&template)
                .await?
                .into_iter()
                .next();
            if latest_run.as_ref().is_some_and(|r| !r.run_state.is_final()) {
                continue;
            }
            let mut props = stored(doc)?;
            let source = format!("{publisher}:{offer}:{sku}:{newest}");
            props.status = if let Some(r) =
                latest_run.filter(|r| r.source["version"].as_str() == Some(newest.as_str()))
            {
                TriggerStatus {
                    code: "Healthy".into(),
                    message: format!(
                        "New platform image version {source} already built by run {}",
                        r.run_id
                    ),
                    time: now(),
                }
            } else {
                match self.run(&template).await {
                    Ok(r) => TriggerStatus {
                        code: "Healthy".into(),
                        message: format!(
                            "Started run {} for new platform image version {source}",
                            r.run_id
                        ),
                        time: now(),
                    },
                    Err(e) => TriggerStatus {
                        code: "Unhealthy".into(),
                        message: format!(
                            "New platform image version {source} but no run started: {e}"
                        ),
                        time: now(),
                    },
                }
            };
            tracing::info!(template = %template, trigger = %name, status = %props.status.message, "image template trigger");
            self.store
                .put_image_trigger(&template, &name, &trigger_doc(&props, Some(&newest)))
                .await?;
        }
        Ok(())
    }
}

/// How often the platform-image watch looks for versions built by other
/// processes sharing the base-image folder, and for stale ones.
const PLATFORM_CHECK: std::time::Duration = std::time::Duration::from_secs(300);
/// How long after a failed (or any) refresh of an offer the next is tried.
const REFRESH_RETRY: std::time::Duration = std::time::Duration::from_secs(3600);
