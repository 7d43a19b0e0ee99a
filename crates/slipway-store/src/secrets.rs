//! Secrets at rest: catalog tokens, SSH keys, deployment credentials.
//!
//! Values are sealed with ChaCha20-Poly1305 under a 256-bit key the operator
//! provides ([`SecretKey`]); the secret's name is the associated data, so a
//! ciphertext copied onto another row does not open. The database holds only
//! nonce + ciphertext; no API returns a value ([`SecretMeta`] has none).

use slipway_core::credentials::{
    registry_of, DeploymentIdentity, RegistryCredential, DEPLOYMENT_IDENTITY_KIND,
    REGISTRY_CREDENTIAL_KIND,
};
use slipway_core::scrub::Scrubber;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sqlx::Row;

use crate::{now_rfc3339, SecretMeta, Store, StoreError};

/// The key that seals secrets: 32 bytes, kept in a file as 64 hex digits.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl SecretKey {
    /// Reads a key file (64 hex digits, surrounding whitespace ignored).
    ///
    /// Errors: [`StoreError::Secret`] naming the file when it is not 64 hex digits.
    pub fn from_file(path: &Path) -> Result<SecretKey, StoreError> {
        let text = std::fs::read_to_string(path)?;
        let bytes = hex::decode(text.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                StoreError::Secret(format!(
                    "secret key file '{}' must hold 64 hex digits (32 bytes)",
                    path.display()
                ))
            })?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes);
        Ok(SecretKey(key))
    }

    /// Reads `path`, or creates it with a random key (mode 0600, written
    /// atomically) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<SecretKey, StoreError> {
        if path.exists() {
            return SecretKey::from_file(path);
        }
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        crate::write_private_file(path, hex::encode(key).as_bytes())?;
        Ok(SecretKey(key))
    }

    /// A stable secret for `purpose`, derived from this key (HMAC-SHA256,
    /// 64 hex digits): the same on every start, different for every key and
    /// purpose, never stored. Rotating the key rotates it.
    pub fn derive(&self, purpose: &str) -> String {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC takes any key length");
        mac.update(b"slipway-derived:");
        mac.update(purpose.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.0))
    }

    /// Seals `value` bound to `aad` (a ciphertext only opens with the same
    /// `aad`): `(nonce (12 bytes), ciphertext)`.
    ///
    /// Errors: [`StoreError::Secret`] naming `aad`.
    fn seal_parts(&self, aad: &str, value: &[u8]) -> Result<([u8; 12], Vec<u8>), StoreError> {
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        let sealed = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Secret(format!("cannot seal '{aad}'")))?;
        Ok((nonce, sealed))
    }

    fn open_parts(&self, aad: &str, nonce: &[u8], sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        if nonce.len() != 12 {
            return Err(StoreError::Secret(format!("'{aad}' has a damaged nonce")));
        }
        self.cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                StoreError::Secret(format!(
                    "'{aad}' cannot be opened: the server's secret key is not the one it was sealed with"
                ))
            })
    }

    /// Seals `value` for storage inside a document (task `--set-secret`
    /// values, webhook secrets): base64 of nonce + ciphertext, bound to
    /// `aad` (e.g. `task/<name>/webhook`).
    ///
    /// Errors: [`StoreError::Secret`].
    pub fn seal(&self, aad: &str, value: &str) -> Result<String, StoreError> {
        use base64::Engine as _;
        let (nonce, sealed) = self.seal_parts(aad, value.as_bytes())?;
        let mut all = nonce.to_vec();
        all.extend_from_slice(&sealed);
        Ok(base64::engine::general_purpose::STANDARD.encode(all))
    }

    /// Opens what [`SecretKey::seal`] made with the same `aad`.
    ///
    /// Errors: [`StoreError::Secret`] when it is malformed, bound to another
    /// `aad` or sealed under another key.
    pub fn open(&self, aad: &str, sealed: &str) -> Result<String, StoreError> {
        use base64::Engine as _;
        let all = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| StoreError::Secret(format!("'{aad}' is not a sealed value")))?;
        if all.len() < 12 {
            return Err(StoreError::Secret(format!("'{aad}' is not a sealed value")));
        }
        let value = self.open_parts(aad, &all[..12], &all[12..])?;
        String::from_utf8(value).map_err(|_| StoreError::Secret(format!("'{aad}' is not text")))
    }
}

/// Who a secret belongs to (ADE: dev-center secrets serve dev-center
/// catalogs, project environment types and tasks; a project's secrets serve
/// only that project's catalogs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretScope {
    /// The dev center (`/admin/secrets/{s}`).
    DevCenter,
    /// One project (`/admin/projects/{p}/secrets/{s}`).
    Project(String),
}

impl SecretScope {
    /// `Project(p)` for `Some(p)`, else `DevCenter`.
    pub fn of(project: Option<&str>) -> SecretScope {
        project.map_or(SecretScope::DevCenter, |p| {
            SecretScope::Project(p.to_string())
        })
    }

    fn column(&self) -> &str {
        match self {
            SecretScope::DevCenter => "",
            SecretScope::Project(p) => p,
        }
    }

    /// Associated data of the sealed value: the name for dev-center
    /// secrets, `projects/<p>/<name>` for project ones, so a ciphertext
    /// copied to another scope or name does not open.
    fn aad(&self, name: &str) -> String {
        match self {
            SecretScope::DevCenter => name.to_string(),
            SecretScope::Project(p) => format!("projects/{p}/{name}"),
        }
    }

    /// The API path of secret `name` in this scope (for messages).
    pub fn path_of(&self, name: &str) -> String {
        match self {
            SecretScope::DevCenter => format!("/admin/secrets/{name}"),
            SecretScope::Project(p) => format!("/admin/projects/{p}/secrets/{name}"),
        }
    }
}

impl std::fmt::Display for SecretScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretScope::DevCenter => f.write_str("the dev center"),
            SecretScope::Project(p) => write!(f, "project '{p}'"),
        }
    }
}

/// A secret's value, opened.
#[derive(Clone)]
pub struct OpenedSecret {
    /// `token`, `sshKey`, `generic`, `deploymentIdentity`, `registry`.
    pub kind: String,
    /// The value.
    pub value: Vec<u8>,
    /// Hosts a token may be sent to (lower-case); empty = any https host.
    pub hosts: Vec<String>,
}

impl std::fmt::Debug for OpenedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OpenedSecret({}, ***, hosts {:?})",
            self.kind, self.hosts
        )
    }
}

fn parse_hosts(column: Option<String>) -> Result<Vec<String>, StoreError> {
    column
        .map(|h| serde_json::from_str(&h))
        .transpose()
        .map(Option::unwrap_or_default)
        .map_err(|e| StoreError::Corrupt {
            what: "secret hosts",
            message: e.to_string(),
        })
}

impl Store {
    /// Creates or replaces secret `name` in `scope` of `kind` with `value`,
    /// sealed under `key`; `hosts` as in [`OpenedSecret::hosts`].
    pub async fn put_secret(
        &self,
        scope: &SecretScope,
        name: &str,
        kind: &str,
        value: &[u8],
        hosts: &[String],
        key: &SecretKey,
    ) -> Result<(), StoreError> {
        let (nonce, sealed) = key.seal_parts(&scope.aad(name), value)?;
        let now = now_rfc3339();
        let hosts = (!hosts.is_empty()).then(|| serde_json::Value::from(hosts).to_string());
        sqlx::query("INSERT INTO secrets (project, name, kind, hosts, nonce, ciphertext, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) ON CONFLICT(project, name) DO UPDATE SET kind = excluded.kind, hosts = excluded.hosts, nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at")
            .bind(scope.column()).bind(name).bind(kind).bind(hosts).bind(&nonce[..]).bind(sealed).bind(now)
            .execute(&self.pool).await?;
        Ok(())
    }

    /// Opens secret `name` of `scope`, or `None` when it does not exist there.
    ///
    /// Errors: [`StoreError::Secret`] when `key` is not the key it was sealed with.
    pub async fn secret_value(
        &self,
        scope: &SecretScope,
        name: &str,
        key: &SecretKey,
    ) -> Result<Option<OpenedSecret>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT kind, hosts, nonce, ciphertext FROM secrets WHERE project = ? AND name = ?",
        )
        .bind(scope.column())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let nonce: Vec<u8> = row.try_get("nonce")?;
        let sealed: Vec<u8> = row.try_get("ciphertext")?;
        let value = key.open_parts(&scope.aad(name), &nonce, &sealed).map_err(|_| {
            StoreError::Secret(format!(
                "secret '{name}' cannot be opened: the server's secret key is not the one it was stored with"
            ))
        })?;
        let hosts: Option<String> = row.try_get("hosts")?;
        Ok(Some(OpenedSecret {
            kind: row.try_get("kind")?,
            value,
            hosts: parse_hosts(hosts)?,
        }))
    }

    /// Lists the secrets of `scope` by name, without values.
    pub async fn list_secrets(&self, scope: &SecretScope) -> Result<Vec<SecretMeta>, StoreError> {
        self.query_secrets(scope, None).await
    }

    /// One secret's metadata (no value); `None` when it does not exist in `scope`.
    pub async fn secret_meta(
        &self,
        scope: &SecretScope,
        name: &str,
    ) -> Result<Option<SecretMeta>, StoreError> {
        Ok(self.query_secrets(scope, Some(name)).await?.pop())
    }

    async fn query_secrets(
        &self,
        scope: &SecretScope,
        name: Option<&str>,
    ) -> Result<Vec<SecretMeta>, StoreError> {
        let rows = sqlx::query("SELECT name, kind, hosts, created_at, updated_at FROM secrets WHERE project = ?1 AND (?2 IS NULL OR name = ?2) ORDER BY name")
            .bind(scope.column())
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let hosts: Option<String> = r.try_get("hosts")?;
                Ok(SecretMeta {
                    name: r.try_get("name")?,
                    kind: r.try_get("kind")?,
                    hosts: parse_hosts(hosts)?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Deletes a secret of `scope`. Returns whether it existed.
    pub async fn delete_secret(&self, scope: &SecretScope, name: &str) -> Result<bool, StoreError> {
        let res = sqlx::query("DELETE FROM secrets WHERE project = ? AND name = ?")
            .bind(scope.column())
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// The deployment identity of project environment type `env_type` in
    /// `project`, opened; `None` when the type has none.
    ///
    /// Errors: [`StoreError::Secret`] when the named secret is missing, not
    /// a deployment identity, or cannot be opened with `key`.
    pub async fn deployment_identity(
        &self,
        project: &str,
        env_type: &str,
        key: &SecretKey,
    ) -> Result<Option<DeploymentIdentity>, StoreError> {
        let Some(name) = self
            .get_project_environment_type(project, env_type)
            .await?
            .and_then(|t| t.deployment_identity)
        else {
            return Ok(None);
        };
        let Some(OpenedSecret { kind, value, .. }) = self
            .secret_value(&SecretScope::DevCenter, &name, key)
            .await?
        else {
            return Err(StoreError::Secret(format!(
                "deployment identity '{name}' of environment type '{env_type}' no longer exists"
            )));
        };
        if kind != DEPLOYMENT_IDENTITY_KIND {
            return Err(StoreError::Secret(format!(
                "secret '{name}' is of kind '{kind}', not a deployment identity"
            )));
        }
        let doc: serde_json::Value = serde_json::from_slice(&value)
            .map_err(|e| StoreError::Secret(format!("deployment identity '{name}': {e}")))?;
        DeploymentIdentity::from_json(&doc)
            .map(Some)
            .map_err(StoreError::Credential)
    }

    /// A scrubber for the logs and messages of operations of `env_type` in
    /// `project`: masks the values of its deployment identity's variables.
    /// An identity that cannot be opened yields an empty scrubber (and the
    /// operation itself fails when its runner starts).
    pub async fn scrubber_for(&self, project: &str, env_type: &str, key: &SecretKey) -> Scrubber {
        match self.deployment_identity(project, env_type, key).await {
            Ok(Some(id)) => Scrubber::new(id.secret_values()),
            _ => Scrubber::default(),
        }
    }

    /// Every `registry` secret, opened, by name.
    ///
    /// Errors: [`StoreError::Secret`] when one cannot be opened with `key`
    /// or no longer parses.
    pub async fn registry_credentials(
        &self,
        key: &SecretKey,
    ) -> Result<Vec<RegistryCredential>, StoreError> {
        let mut out = self.builtin_registry_credentials();
        for meta in self.list_secrets(&SecretScope::DevCenter).await? {
            if meta.kind != REGISTRY_CREDENTIAL_KIND {
                continue;
            }
            let Some(OpenedSecret { value, .. }) = self
                .secret_value(&SecretScope::DevCenter, &meta.name, key)
                .await?
            else {
                continue;
            };
            let doc: serde_json::Value = serde_json::from_slice(&value).map_err(|e| {
                StoreError::Secret(format!("registry credential '{}': {e}", meta.name))
            })?;
            out.push(RegistryCredential::from_json(&doc)?);
        }
        Ok(out)
    }

    /// The registry credential that applies to `image`: the `registry`
    /// secret whose `server` equals the image's registry host
    /// ([`registry_of`]); `None` when there is none (the pull is anonymous).
    /// With several for one server, the first by name wins.
    ///
    /// Errors: as [`Store::registry_credentials`].
    pub async fn registry_credential_for(
        &self,
        image: &str,
        key: &SecretKey,
    ) -> Result<Option<RegistryCredential>, StoreError> {
        let host = registry_of(image);
        Ok(self
            .registry_credentials(key)
            .await?
            .into_iter()
            .find(|c| c.server == host))
    }
}
