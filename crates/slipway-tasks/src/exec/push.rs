//! A `push` step (and a build step's pushes): retries like acb.

use std::time::Duration;

use serde_json::{json, Value};
use slipway_core::tasks::dockerfile::ImageReference;

use super::RunEnv;
use crate::registry::manifest_digest;
use crate::TaskError;

/// `repo[:tag]` → `(repo, tag)`, tag defaulting to `latest`.
pub fn split_tag(image: &str) -> (String, String) {
    match image.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
        _ => (image.to_string(), "latest".to_string()),
    }
}

/// Pushes each image: 3 attempts, backoff 250 ms·2^n (acb `pushWithRetries`).
pub(super) async fn push_images(env: &RunEnv, images: &[String]) -> Result<Vec<Value>, TaskError> {
    let mut out = Vec::new();
    for image in images {
        env.log
            .line(&format!("Pushing image: {image}, attempt 1"))
            .await;
        let (repo, tag) = split_tag(image);
        let cred = env.credential_for(image);
        let mut last = None;
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt))).await;
                env.log
                    .line(&format!("Pushing image: {image}, attempt {}", attempt + 1))
                    .await;
            }
            let failed = env
                .engine
                .push_image(&repo, &tag, cred.as_ref())
                .await
                .err()
                .map(|e| e.to_string());
            match failed {
                None => {
                    last = None;
                    break;
                }
                Some(m) => last = Some(m),
            }
        }
        if let Some(m) = last {
            env.log.line(&format!("push {image}: {m}")).await;
            return Err(TaskError::Step("failed to push images successfully".into()));
        }
        let r = ImageReference::parse(image);
        let digest = manifest_digest(&env.fetcher, &r.registry, &r.repository, &r.tag, cred)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        env.log
            .line(&format!("Successfully pushed image: {image} ({digest})"))
            .await;
        out.push(json!({"registry": r.registry, "repository": r.repository, "tag": r.tag, "digest": digest}));
    }
    Ok(out)
}
