//! Tokens for runners: swaps a deployment identity's client secret for
//! short-lived access tokens at its identity provider, so the secret never
//! enters a container (contract: [`slipway_core::identity`]).
//!
//! Tokens are cached per identity (its whole document, secret included, so a
//! rotated secret is a new entry) and resource until five minutes before
//! they expire; a runner that signs in on every `az` call costs one token
//! request per resource and hour, not one per call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use slipway_core::credentials::DeploymentIdentity;
use slipway_core::identity::{self, AccessToken, SignInError};
use slipway_fetch::Fetcher;

/// How long a token request may take, end to end.
pub const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// A cached token is handed out until this long before it expires.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(300);
/// The largest token answer read, bytes.
const MAX_ANSWER_BYTES: u64 = 1 << 20;

/// A token as handed to a runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerToken {
    /// The bearer token.
    pub access_token: String,
    /// When it expires, Unix seconds.
    pub expires_on: u64,
}

#[derive(Clone)]
struct Cached {
    token: RunnerToken,
    good_until: Instant,
}

/// Mints and caches tokens for deployment identities. One per server.
pub struct TokenBroker {
    fetcher: Fetcher,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
}

impl std::fmt::Debug for TokenBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenBroker").finish_non_exhaustive()
    }
}

impl TokenBroker {
    /// A broker that reaches identity providers through `fetcher` (the
    /// server's one trust store).
    pub fn new(fetcher: Fetcher) -> TokenBroker {
        TokenBroker {
            fetcher,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A token for `resource` as `id` (which must have a client secret or
    /// certificate; with a certificate each request carries a freshly
    /// signed client assertion).
    ///
    /// Errors: [`SignInError::BadResource`] for a bad `resource`;
    /// [`SignInError::Rejected`] when the provider refuses the identity;
    /// [`SignInError::Unavailable`] when it cannot be reached in
    /// [`TOKEN_REQUEST_TIMEOUT`] or answers something else.
    pub async fn token(
        &self,
        id: &DeploymentIdentity,
        resource: &str,
    ) -> Result<RunnerToken, SignInError> {
        identity::check_resource(resource)?;
        let key = cache_key(id, resource);
        if let Some(hit) = self.cached(&key) {
            return Ok(hit);
        }
        let url = identity::token_url(id.authority(), &id.tenant_id);
        let form = match (&id.client_secret, &id.client_certificate) {
            (Some(secret), _) => identity::token_form(&id.client_id, secret, resource),
            (None, Some(pem)) => {
                let assertion = client_assertion(&id.client_id, &url, pem).map_err(|reason| {
                    SignInError::Unavailable {
                        client_id: id.client_id.clone(),
                        authority: id.authority().to_string(),
                        reason,
                    }
                })?;
                identity::assertion_form(&id.client_id, &assertion, resource)
            }
            (None, None) => {
                return Err(SignInError::Unavailable {
                    client_id: id.client_id.clone(),
                    authority: id.authority().to_string(),
                    reason:
                        "the identity has no clientSecret or clientCertificate to mint tokens with"
                            .into(),
                })
            }
        };
        let fetcher = self.fetcher.clone();
        let asked = Instant::now();
        let answer = tokio::task::spawn_blocking(move || {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            fetcher.post_form(&url, &form, TOKEN_REQUEST_TIMEOUT, MAX_ANSWER_BYTES)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        let unavailable = |reason: String| SignInError::Unavailable {
            client_id: id.client_id.clone(),
            authority: id.authority().to_string(),
            reason,
        };
        let slipway_fetch::Answer { status, body, .. } = answer.map_err(unavailable)?;
        let AccessToken {
            access_token,
            expires_in,
        } = identity::parse_token_answer(&id.client_id, id.authority(), status, &body)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let token = RunnerToken {
            access_token,
            expires_on: now + expires_in,
        };
        let lifetime = Duration::from_secs(expires_in);
        if lifetime > EXPIRY_MARGIN {
            self.lock().insert(
                key,
                Cached {
                    token: token.clone(),
                    good_until: asked + (lifetime - EXPIRY_MARGIN),
                },
            );
        }
        Ok(token)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Cached>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cached(&self, key: &[u8; 32]) -> Option<RunnerToken> {
        let mut cache = self.lock();
        let now = Instant::now();
        cache.retain(|_, c| c.good_until > now);
        cache.get(key).map(|c| c.token.clone())
    }
}

/// A client assertion for `client_id` at `token_url`, signed RS256 with
/// the private key in `pem` and naming its certificate by SHA-1 thumbprint
/// (`x5t`). See [`identity::assertion_claims`].
///
/// Errors: a message saying which PEM block cannot be read.
fn client_assertion(client_id: &str, token_url: &str, pem: &str) -> Result<String, String> {
    use base64::Engine as _;
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let certificate = pem_block(pem, "CERTIFICATE")
        .ok_or("clientCertificate: the CERTIFICATE block is not base64 PEM")?;
    let key_pem = pem_text(pem, "PRIVATE KEY").ok_or("clientCertificate: no PRIVATE KEY block")?;
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&key_pem).map_err(|e| {
        format!("clientCertificate: the private key is not an unencrypted PKCS#8 RSA key: {e}")
    })?;
    let x5t = b64.encode(<sha1::Sha1 as sha1::Digest>::digest(&certificate));
    let now = chrono::Utc::now().timestamp();
    let jti = uuid::Uuid::new_v4().to_string();
    let signing_input = format!(
        "{}.{}",
        b64.encode(identity::assertion_header(&x5t).to_string()),
        b64.encode(identity::assertion_claims(client_id, token_url, now, &jti).to_string())
    );
    let signature = SigningKey::<Sha256>::new(key).sign(signing_input.as_bytes());
    Ok(format!(
        "{signing_input}.{}",
        b64.encode(signature.to_bytes())
    ))
}

/// The whole `-----BEGIN <label>-----` … `-----END <label>-----` text.
fn pem_text(pem: &str, label: &str) -> Option<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)?;
    let stop = pem[start..].find(&end)? + start + end.len();
    Some(pem[start..stop].to_string())
}

/// The DER bytes of the first `label` block.
fn pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let text = pem_text(pem, label)?;
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .ok()
}

fn cache_key(id: &DeploymentIdentity, resource: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [
        id.client_id.as_str(),
        id.tenant_id.as_str(),
        id.authority(),
        id.client_secret.as_deref().unwrap_or_default(),
        id.client_certificate.as_deref().unwrap_or_default(),
        resource,
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}
