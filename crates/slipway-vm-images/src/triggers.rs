//! Image template triggers (AIB `SourceImage`): stored per template, and
//! fired when a run stores a newer version of another template's source.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{json, Value};
use slipway_core::images::template::{self, ValidationFailed};
use slipway_core::images::trigger::{
    extend_chain, parse_trigger_request, tracked_source, TriggerProperties, TriggerStatus,
};
use slipway_store::{now_rfc3339 as now, ImageRunRecord, StoreError};

use crate::{ImageError, ImageService};

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
        let props = TriggerProperties {
            kind,
            status: TriggerStatus {
                code: "Healthy".into(),
                message: format!("Following {tracked:?}"),
                time: now(),
            },
            provisioning_state: "Succeeded".into(),
        };
        let new = self
            .store
            .put_image_trigger(template, name, &json!(props))
            .await?;
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
}
