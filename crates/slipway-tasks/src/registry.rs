//! The embedded OCI registry and registry look-ups.
//!
//! Slipway starts Debian's `docker-registry` (CNCF distribution 2.8) on
//! 127.0.0.1 with its push notifications pointed at Slipway's
//! `/registry/events` (distribution's `notifications.endpoints`, bearer
//! token in a header). Every call needs an account of its `htpasswd` file
//! (bcrypt): anonymous push, pull and delete get 401. Manifest digests are
//! read with the distribution API (`HEAD /v2/<repo>/manifests/<tag>` →
//! `Docker-Content-Digest`).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use std::process::Stdio;
use std::time::Duration;

use slipway_core::credentials::RegistryCredential;
use slipway_fetch::Fetcher;
use tokio::process::{Child, Command};

use crate::TaskError;

/// Media types a manifest HEAD accepts (OCI and Docker v2, single and index).
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// A running embedded registry; the process ends when this is dropped or
/// the server dies.
#[derive(Debug)]
pub struct EmbeddedRegistry {
    /// `127.0.0.1:<port>`: the login server of runs.
    pub host: String,
    /// Slipway's own account (user `slipway`, a random password made at
    /// each start and kept in memory only): every push, pull and digest
    /// look-up of the server uses it; no container ever receives it.
    pub own_account: RegistryCredential,
    /// The account handed to users who push their own images (user
    /// `slipway-user`, the password the caller derived).
    pub user_account: RegistryCredential,
    _child: Child,
}

/// User name of Slipway's own account on the embedded registry.
pub const OWN_ACCOUNT: &str = "slipway";
/// User name of the account users log in with.
pub const USER_ACCOUNT: &str = "slipway-user";

impl EmbeddedRegistry {
    /// Writes `<data>/registry/config.yml` and `htpasswd` (Slipway's own
    /// account and the user account with `user_password`) and starts `docker-registry serve`
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
        user_password: &str,
    ) -> Result<EmbeddedRegistry, TaskError> {
        let host = format!("127.0.0.1:{port}");
        let own_account = RegistryCredential {
            server: host.clone(),
            username: OWN_ACCOUNT.into(),
            password: hex::encode(rand::random::<[u8; 32]>()),
        };
        let user_account = RegistryCredential {
            server: host.clone(),
            username: USER_ACCOUNT.into(),
            password: user_password.to_string(),
        };
        let accounts = [own_account.clone(), user_account.clone()];
        let dir = data.join("registry");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| TaskError::Registry(format!("{}: {e}", dir.display())))?;
        let htpasswd = dir.join("htpasswd");
        slipway_store::write_private_file(&htpasswd, htpasswd_file(&accounts)?.as_bytes())
            .map_err(|e| TaskError::Registry(format!("{}: {e}", htpasswd.display())))?;
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\nauth:\n  htpasswd:\n    realm: slipway\n    path: {htpasswd}\nhttp:\n  addr: 127.0.0.1:{port}\nnotifications:\n  endpoints:\n    - name: slipway\n      url: {notify_url}\n      headers:\n        Authorization: [\"Bearer {token}\"]\n      timeout: 2s\n      threshold: 3\n      backoff: 1s\n",
            root = dir.join("data").display(),
            htpasswd = htpasswd.display(),
        );
        let cfg_path = dir.join("config.yml");
        slipway_store::write_private_file(&cfg_path, config.as_bytes())
            .map_err(|e| TaskError::Registry(format!("{}: {e}", cfg_path.display())))?;
        let log = std::fs::File::create(dir.join("registry.log"))
            .map_err(|e| TaskError::Registry(e.to_string()))?;
        let mut cmd = Command::new("docker-registry");
        slipway_runner::process::end_with_server(cmd.as_std_mut());
        let mut child = cmd
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
        for _ in 0..200 {
            if ping(&host).await {
                return Ok(EmbeddedRegistry {
                    host,
                    own_account,
                    user_account,
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

/// The `htpasswd` text of `accounts` (bcrypt). The passwords are random
/// 256-bit values, so bcrypt's lowest cost protects them fully and keeps
/// every registry request fast (distribution checks the hash per request).
///
/// Errors: [`TaskError::Registry`] when a user name holds `:` or a newline.
pub fn htpasswd_file(accounts: &[RegistryCredential]) -> Result<String, TaskError> {
    let mut out = String::new();
    for a in accounts {
        if a.username.contains([':', '\n']) || a.username.is_empty() {
            return Err(TaskError::Registry(format!(
                "registry account '{}': expected a user name without ':' or line breaks",
                a.username
            )));
        }
        let hash = bcrypt::hash(&a.password, 4)
            .map_err(|e| TaskError::Registry(format!("hashing a registry password: {e}")))?;
        out.push_str(&format!("{}:{hash}\n", a.username));
    }
    Ok(out)
}

/// Whether the registry answers `/v2/` (401 counts: it asks for credentials).
async fn ping(host: &str) -> bool {
    let url = format!("http://{host}/v2/");
    tokio::task::spawn_blocking(move || {
        match ureq::get(&url).timeout(Duration::from_secs(1)).call() {
            Ok(_) | Err(ureq::Error::Status(401, _)) => true,
            Err(_) => false,
        }
    })
    .await
    .unwrap_or(false)
}

/// The digest of `repository:tag` on `registry` (`HEAD` on the manifest),
/// `None` when the tag does not exist. Plain HTTP for loopback hosts,
/// HTTPS otherwise; see [`RegistryClient`] for authentication.
///
/// Errors: [`TaskError::Registry`] on transport failures and refusals.
pub async fn manifest_digest(
    fetcher: &Fetcher,
    registry: &str,
    repository: &str,
    tag: &str,
    credential: Option<RegistryCredential>,
) -> Result<Option<String>, TaskError> {
    let mut client = RegistryClient::new(fetcher, registry, credential);
    let path = format!("/v2/{repository}/manifests/{tag}");
    blocking(move || {
        Ok(client
            .call("HEAD", &path, MANIFEST_ACCEPT)?
            .and_then(|r| r.header("Docker-Content-Digest").map(str::to_string)))
    })
    .await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TaskError> + Send + 'static,
) -> Result<T, TaskError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TaskError::Registry(e.to_string()))?
}

/// A blocking client of one registry's distribution API (`/v2/…`).
///
/// Authentication: Basic with the credential when one is given; when the
/// registry answers 401 with `WWW-Authenticate: Bearer realm=…,service=…,
/// scope=…` (Docker Hub, ACR, Harbor…) a token is fetched from the realm
/// (with the credential, if any) and the request is retried once with it.
/// Plain HTTP for `127.0.0.1`/`localhost` hosts, HTTPS otherwise.
pub struct RegistryClient {
    agent: ureq::Agent,
    base: String,
    credential: Option<RegistryCredential>,
    bearer: Option<String>,
}

impl RegistryClient {
    /// A client of `registry` (`host[:port]`; `docker.io` means Docker Hub),
    /// trusting the CAs of `fetcher`.
    pub fn new(
        fetcher: &Fetcher,
        registry: &str,
        credential: Option<RegistryCredential>,
    ) -> RegistryClient {
        let host = if registry == "registry.hub.docker.com" || registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        let scheme = if host.starts_with("127.0.0.1") || host.starts_with("localhost") {
            "http"
        } else {
            "https"
        };
        RegistryClient {
            agent: fetcher.checked_agent().clone(),
            base: format!("{scheme}://{host}"),
            credential,
            bearer: None,
        }
    }

    fn basic(&self) -> Option<String> {
        self.credential.as_ref().map(|c| {
            let b = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", c.username, c.password));
            format!("Basic {b}")
        })
    }

    /// `method path` with `Accept: accept`; `None` on 404.
    ///
    /// Errors: [`TaskError::Registry`] naming the URL and status.
    pub fn call(
        &mut self,
        method: &str,
        path: &str,
        accept: &str,
    ) -> Result<Option<ureq::Response>, TaskError> {
        let url = format!("{}{path}", self.base);
        for attempt in 0..2 {
            let mut req = self
                .agent
                .request(method, &url)
                .timeout(Duration::from_secs(300))
                .set("Accept", accept);
            if let Some(t) = &self.bearer {
                req = req.set("Authorization", &format!("Bearer {t}"));
            } else if let Some(b) = self.basic() {
                req = req.set("Authorization", &b);
            }
            match req.call() {
                Ok(r) => return Ok(Some(r)),
                Err(ureq::Error::Status(404, _)) => return Ok(None),
                Err(ureq::Error::Status(401, r)) if attempt == 0 => {
                    let challenge = r.header("WWW-Authenticate").unwrap_or_default().to_string();
                    match challenge.strip_prefix("Bearer ") {
                        Some(params) => self.bearer = Some(self.token(params)?),
                        None => {
                            return Err(TaskError::Registry(format!(
                                "{method} {url}: 401 Unauthorized (is a registry credential for this server stored?)"
                            )))
                        }
                    }
                }
                Err(e) => return Err(TaskError::Registry(format!("{method} {url}: {e}"))),
            }
        }
        Err(TaskError::Registry(format!(
            "{method} {url}: 401 Unauthorized with a token"
        )))
    }

    /// Fetches a bearer token for a `realm="…",service="…",scope="…"` challenge.
    fn token(&self, params: &str) -> Result<String, TaskError> {
        let mut realm = String::new();
        let mut query = Vec::new();
        for part in params.split(',') {
            let Some((k, v)) = part.trim().split_once('=') else {
                continue;
            };
            let v = v.trim_matches('"').to_string();
            match k {
                "realm" => realm = v,
                "service" | "scope" => query.push((k.to_string(), v)),
                _ => {}
            }
        }
        if realm.is_empty() {
            return Err(TaskError::Registry(format!(
                "the registry's Bearer challenge has no realm: {params}"
            )));
        }
        let mut req = self.agent.get(&realm).timeout(Duration::from_secs(30));
        for (k, v) in &query {
            req = req.query(k, v);
        }
        if let Some(b) = self.basic() {
            req = req.set("Authorization", &b);
        }
        let body: serde_json::Value = req
            .call()
            .map_err(|e| TaskError::Registry(format!("token from {realm}: {e}")))?
            .into_json()
            .map_err(|e| TaskError::Registry(format!("token from {realm}: {e}")))?;
        body["token"]
            .as_str()
            .or(body["access_token"].as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                TaskError::Registry(format!("token from {realm}: no 'token' in the answer"))
            })
    }
}

/// Pulls an OCI artifact or image (`oci://host/repo:tag` or `…@sha256:…`,
/// the `az acr build` context form) into `dest`: tar layers (gzip or not)
/// (image layers, ORAS folders) are unpacked in order; ORAS file blobs are
/// written under their `org.opencontainers.image.title` annotation. Every blob's sha256 is
/// checked against its descriptor; an index resolves to its `linux/amd64`
/// manifest (or the first).
///
/// Errors: [`TaskError::Context`] for a malformed reference, a missing
/// artifact, a digest mismatch or an unsafe file name.
pub async fn pull_artifact(
    fetcher: &Fetcher,
    reference: &str,
    credential: Option<RegistryCredential>,
    dest: &Path,
) -> Result<(), TaskError> {
    let r = reference.strip_prefix("oci://").unwrap_or(reference);
    let (host, rest) = r.split_once('/').ok_or_else(|| {
        TaskError::Validation(format!(
            "context '{reference}' is not valid: expected oci://<registry>/<repository>:<tag>"
        ))
    })?;
    let (repo, tag) = match rest.split_once('@') {
        Some((repo, digest)) => (repo.to_string(), digest.to_string()),
        None => match rest.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
            _ => (rest.to_string(), "latest".to_string()),
        },
    };
    let mut client = RegistryClient::new(fetcher, host, credential);
    let dest = dest.to_path_buf();
    let reference = reference.to_string();
    blocking(move || {
        let missing = || TaskError::Context(format!("'{reference}' was not found in the registry"));
        let get_json =
            |client: &mut RegistryClient, path: &str| -> Result<serde_json::Value, TaskError> {
                client
                    .call("GET", path, MANIFEST_ACCEPT)?
                    .ok_or_else(missing)?
                    .into_json()
                    .map_err(|e| TaskError::Context(format!("manifest of '{reference}': {e}")))
            };
        let mut manifest = get_json(&mut client, &format!("/v2/{repo}/manifests/{tag}"))?;
        if let Some(list) = manifest["manifests"].as_array() {
            let pick = list
                .iter()
                .find(|m| {
                    m["platform"]["os"] == "linux" && m["platform"]["architecture"] == "amd64"
                })
                .or(list.first())
                .and_then(|m| m["digest"].as_str())
                .ok_or_else(|| TaskError::Context(format!("'{reference}' is an empty index")))?
                .to_string();
            manifest = get_json(&mut client, &format!("/v2/{repo}/manifests/{pick}"))?;
        }
        let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        if layers.is_empty() {
            return Err(TaskError::Context(format!("'{reference}' has no layers")));
        }
        for layer in layers {
            let digest = layer["digest"].as_str().unwrap_or_default().to_string();
            let resp = client
                .call("GET", &format!("/v2/{repo}/blobs/{digest}"), "*/*")?
                .ok_or_else(|| {
                    TaskError::Context(format!("blob {digest} of '{reference}' is missing"))
                })?;
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut resp.into_reader(), &mut bytes)
                .map_err(|e| TaskError::Context(format!("blob {digest}: {e}")))?;
            let actual = format!(
                "sha256:{}",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
            );
            if actual != digest {
                return Err(TaskError::Context(format!(
                    "blob of '{reference}' has digest {actual}, expected {digest}"
                )));
            }
            // ORAS: a file layer carries its name as the title; a folder is
            // a tar.gz marked `io.deis.oras.content.unpack`. Image layers
            // have neither and are unpacked.
            let title = layer["annotations"]["org.opencontainers.image.title"].as_str();
            let unpack = layer["annotations"]["io.deis.oras.content.unpack"] == "true";
            let tree = slipway_hostfs::Tree::create(&dest)
                .map_err(|e| TaskError::Context(e.to_string()))?;
            match title {
                Some(name) if !unpack => tree
                    .write(name, &bytes, 0o644)
                    .map_err(|e| TaskError::Context(format!("artifact file {e}")))?,
                _ => tree
                    .untar(&bytes)
                    .map_err(|e| TaskError::Context(format!("layer {digest}: {e}")))?,
            }
        }
        Ok(())
    })
    .await
}

/// Where run workspaces live: `<data>/task-runs/<run>/`.
pub fn run_dir(data: &Path, run_id: &str) -> PathBuf {
    data.join("task-runs").join(run_id)
}
