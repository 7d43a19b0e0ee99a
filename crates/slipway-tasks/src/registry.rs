//! The embedded OCI registry and registry look-ups.
//!
//! Slipway starts Debian's `docker-registry` (CNCF distribution 2.8) on
//! 127.0.0.1 with its push notifications pointed at Slipway's
//! `/registry/events` (distribution's `notifications.endpoints`, bearer
//! token in a header). Manifest digests are read with the distribution API
//! (`HEAD /v2/<repo>/manifests/<tag>` → `Docker-Content-Digest`).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use std::process::Stdio;
use std::time::Duration;

use slipway_core::credentials::RegistryCredential;
use tokio::process::{Child, Command};

use crate::TaskError;

/// Media types a manifest HEAD accepts (OCI and Docker v2, single and index).
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// A running embedded registry; the process ends when this is dropped.
#[derive(Debug)]
pub struct EmbeddedRegistry {
    /// `127.0.0.1:<port>`: the login server of runs.
    pub host: String,
    _child: Child,
}

impl EmbeddedRegistry {
    /// Writes `<data>/registry/config.yml` and starts `docker-registry serve`
    /// on `127.0.0.1:<port>`, storing under `<data>/registry/data`, with
    /// notifications to `notify_url` carrying `Authorization: Bearer <token>`.
    /// Returns once `/v2/` answers (bounded, 10 s).
    ///
    /// Errors: [`TaskError::Registry`] when the binary is missing or the
    /// registry does not answer.
    pub async fn start(
        data: &Path,
        port: u16,
        notify_url: &str,
        token: &str,
    ) -> Result<EmbeddedRegistry, TaskError> {
        let dir = data.join("registry");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| TaskError::Registry(format!("{}: {e}", dir.display())))?;
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\nnotifications:\n  endpoints:\n    - name: slipway\n      url: {notify_url}\n      headers:\n        Authorization: [\"Bearer {token}\"]\n      timeout: 2s\n      threshold: 3\n      backoff: 1s\n",
            root = dir.join("data").display()
        );
        let cfg_path = dir.join("config.yml");
        slipway_store::write_private_file(&cfg_path, config.as_bytes())
            .map_err(|e| TaskError::Registry(format!("{}: {e}", cfg_path.display())))?;
        let log = std::fs::File::create(dir.join("registry.log"))
            .map_err(|e| TaskError::Registry(e.to_string()))?;
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                TaskError::Registry(format!(
                    "cannot start docker-registry (apt-get install docker-registry, or run scripts/setup-host): {e}"
                ))
            })?;
        let host = format!("127.0.0.1:{port}");
        for _ in 0..200 {
            if ping(&host).await {
                return Ok(EmbeddedRegistry {
                    host,
                    _child: child,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(TaskError::Registry(format!(
                    "docker-registry exited with {status}; see {}",
                    dir.join("registry.log").display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(TaskError::Registry(format!(
            "docker-registry did not answer on {host} within 10 s"
        )))
    }
}

async fn ping(host: &str) -> bool {
    let url = format!("http://{host}/v2/");
    tokio::task::spawn_blocking(move || {
        ureq::get(&url)
            .timeout(Duration::from_secs(1))
            .call()
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

/// The digest of `repository:tag` on `registry` (`HEAD` on the manifest),
/// `None` when the tag does not exist. Plain HTTP for loopback hosts,
/// HTTPS otherwise; Basic auth with `credential`.
///
/// Errors: [`TaskError::Registry`] on transport failures and refusals.
pub async fn manifest_digest(
    registry: &str,
    repository: &str,
    tag: &str,
    credential: Option<RegistryCredential>,
) -> Result<Option<String>, TaskError> {
    let host = if registry == "registry.hub.docker.com" || registry == "docker.io" {
        "registry-1.docker.io".to_string()
    } else {
        registry.to_string()
    };
    let scheme = if host.starts_with("127.0.0.1") || host.starts_with("localhost") {
        "http"
    } else {
        "https"
    };
    let url = format!("{scheme}://{host}/v2/{repository}/manifests/{tag}");
    tokio::task::spawn_blocking(move || {
        let mut req = ureq::head(&url)
            .timeout(Duration::from_secs(10))
            .set("Accept", MANIFEST_ACCEPT);
        if let Some(c) = &credential {
            let basic = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", c.username, c.password));
            req = req.set("Authorization", &format!("Basic {basic}"));
        }
        match req.call() {
            Ok(resp) => Ok(resp.header("Docker-Content-Digest").map(str::to_string)),
            Err(ureq::Error::Status(404, _)) => Ok(None),
            Err(e) => Err(TaskError::Registry(format!("HEAD {url}: {e}"))),
        }
    })
    .await
    .map_err(|e| TaskError::Registry(e.to_string()))?
}

/// Where run workspaces live: `<data>/task-runs/<run>/`.
pub fn run_dir(data: &Path, run_id: &str) -> PathBuf {
    data.join("task-runs").join(run_id)
}
