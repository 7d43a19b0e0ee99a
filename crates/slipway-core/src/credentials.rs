//! Deployment identities: the credential set a project environment type
//! hands to the runners of its environments' operations.
//!
//! Contract: ADE gives runners the project environment type's managed
//! identity as `ADE_CLIENT_ID`, `ADE_TENANT_ID` and `ADE_SUBSCRIPTION_ID`
//! (reference `ade.md` §3). Slipway has no cloud identity service, so the
//! operator stores the identity as a secret of kind `deploymentIdentity`
//! whose value is this JSON document.
//!
//! Two ways to hand it to a runner:
//! - **Tokens (an Entra ID identity, `clientSecret` set).** The secret
//!   stays on the server: the runner gets `IDENTITY_ENDPOINT` /
//!   `IDENTITY_HEADER` and asks its runner API for short-lived tokens, which
//!   Slipway mints from the secret at `authorityHost` (see
//!   [`crate::identity`]). `az login --identity` works unchanged.
//! - **Variables (opt-in, for identities that are not Entra ones).** The
//!   `variables` (e.g. `ARM_CLIENT_SECRET`, `AWS_SECRET_ACCESS_KEY`) are set
//!   in the runner container's environment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Secret kind that holds a [`DeploymentIdentity`].
pub const DEPLOYMENT_IDENTITY_KIND: &str = "deploymentIdentity";

/// A deployment identity. Its `Debug` form shows no secret value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentIdentity {
    /// `ADE_CLIENT_ID`.
    pub client_id: String,
    /// `ADE_TENANT_ID`.
    pub tenant_id: String,
    /// `ADE_SUBSCRIPTION_ID`; default: taken from the project environment
    /// type's `deploymentTargetId` (`/subscriptions/<id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// The Entra ID app registration's client secret. When set, runners get
    /// tokens through their managed-identity endpoint and never this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Instead of a client secret: the app registration's certificate and
    /// its private key, PEM (`-----BEGIN CERTIFICATE-----` and an unencrypted
    /// PKCS#8 `-----BEGIN PRIVATE KEY-----`, RSA). Slipway signs a client
    /// assertion with it for each token (Microsoft identity platform
    /// "certificate credentials"); runners never see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// Where tokens are minted: `https://host[:port][/path]` (plain
    /// `http://` only to a loopback host, for stand-ins); default
    /// [`crate::identity::DEFAULT_AUTHORITY_HOST`]. Only with `clientSecret` or
    /// `clientCertificate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_host: Option<String>,
    /// Azure Resource Manager's base URL for Azure targets (see
    /// [`crate::azure_target`]): same form as `authorityHost`; default
    /// [`crate::azure_target::DEFAULT_RESOURCE_MANAGER`]. Only with
    /// `clientSecret` or `clientCertificate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_manager_endpoint: Option<String>,
    /// Extra variables set in the runner, name → value (all treated as secret).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

impl std::fmt::Debug for DeploymentIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentIdentity")
            .field("client_id", &self.client_id)
            .field("tenant_id", &self.tenant_id)
            .field("subscription_id", &self.subscription_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field(
                "client_certificate",
                &self.client_certificate.as_ref().map(|_| "***"),
            )
            .field("authority_host", &self.authority_host)
            .field("resource_manager_endpoint", &self.resource_manager_endpoint)
            .field("variables", &self.variables.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A deployment identity or registry credential document that Slipway
/// refuses; the message names the field, the value and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The JSON does not have the document's shape (unknown or missing keys,
    /// wrong types).
    #[error("{document}: {reason}; expected {expected}")]
    Shape {
        /// `deployment identity` or `registry credential`.
        document: &'static str,
        /// What the decoder said.
        reason: String,
        /// The document's shape.
        expected: &'static str,
    },
    /// One field refused.
    #[error("{document}: {detail}")]
    Field {
        /// `deployment identity` or `registry credential`.
        document: &'static str,
        /// The field, its value and what was expected.
        detail: String,
    },
}

const IDENTITY: &str = "deployment identity";
const REGISTRY: &str = "registry credential";

fn identity_field(detail: String) -> CredentialError {
    CredentialError::Field {
        document: IDENTITY,
        detail,
    }
}

impl DeploymentIdentity {
    /// Parses and checks an identity document.
    ///
    /// Errors: a message naming the field, the value and what was expected
    /// (unknown keys, empty ids, variable names that are not
    /// `[A-Za-z_][A-Za-z0-9_]*` or start with the reserved `ADE_`).
    pub fn from_json(v: &Value) -> Result<DeploymentIdentity, CredentialError> {
        let id: DeploymentIdentity =
            serde_json::from_value(v.clone()).map_err(|e| CredentialError::Shape {
                document: IDENTITY,
                reason: e.to_string(),
                expected: "{clientId, tenantId, subscriptionId?, clientSecret? or clientCertificate?, authorityHost?, resourceManagerEndpoint?, variables?: {NAME: value}}",
            })?;
        if id
            .client_secret
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            return Err(identity_field(
                "'clientSecret' is empty: expected the app registration's secret, or no 'clientSecret'".into(),
            ));
        }
        if let Some(pem) = &id.client_certificate {
            if id.client_secret.is_some() {
                return Err(identity_field(
                    "'clientSecret' and 'clientCertificate' are both set: expected one of them"
                        .into(),
                ));
            }
            check_certificate_pem(pem)?;
        }
        for (field, value) in [
            ("authorityHost", &id.authority_host),
            ("resourceManagerEndpoint", &id.resource_manager_endpoint),
        ] {
            let Some(url) = value else { continue };
            if !id.mints_tokens() {
                return Err(identity_field(format!("'{field}' '{}' is set without 'clientSecret' or 'clientCertificate': tokens are minted only for an identity with a client secret or certificate", crate::echo::truncate(url))));
            }
            check_endpoint(field, url)?;
        }
        for (field, value) in [("clientId", &id.client_id), ("tenantId", &id.tenant_id)] {
            if value.trim().is_empty() {
                return Err(identity_field(format!(
                    "'{field}' is empty: expected an id"
                )));
            }
        }
        for name in id.variables.keys() {
            let ok = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(identity_field(format!("variable name '{name}' is not valid: expected letters, digits and '_', not starting with a digit")));
            }
            if name.starts_with("ADE_") {
                return Err(identity_field(format!(
                    "variable name '{name}' is reserved: 'ADE_' variables are set by Slipway"
                )));
            }
        }
        Ok(id)
    }

    /// Every value a log must never show: the client secret, the
    /// certificate's PEM and the variables' values.
    pub fn secret_values(&self) -> Vec<String> {
        self.client_secret
            .iter()
            .chain(self.client_certificate.iter())
            .chain(self.variables.values())
            .cloned()
            .collect()
    }

    /// Whether runners get tokens (a client secret or certificate is set)
    /// rather than the secret itself.
    pub fn mints_tokens(&self) -> bool {
        self.client_secret.is_some() || self.client_certificate.is_some()
    }

    /// Azure Resource Manager's base URL, without a trailing `/`.
    pub fn resource_manager(&self) -> &str {
        self.resource_manager_endpoint
            .as_deref()
            .unwrap_or(crate::azure_target::DEFAULT_RESOURCE_MANAGER)
            .trim_end_matches('/')
    }

    /// The authority host tokens are minted at, without a trailing `/`.
    pub fn authority(&self) -> &str {
        self.authority_host
            .as_deref()
            .unwrap_or(crate::identity::DEFAULT_AUTHORITY_HOST)
            .trim_end_matches('/')
    }
}

/// Checks that `pem` holds a certificate and an unencrypted PKCS#8 private
/// key (the signature itself is made, and the key parsed, where tokens are
/// minted).
fn check_certificate_pem(pem: &str) -> Result<(), CredentialError> {
    for (block, what) in [
        ("CERTIFICATE", "the certificate"),
        ("PRIVATE KEY", "its unencrypted PKCS#8 private key"),
    ] {
        if !pem.contains(&format!("-----BEGIN {block}-----"))
            || !pem.contains(&format!("-----END {block}-----"))
        {
            return Err(identity_field(format!(
                "'clientCertificate' has no '-----BEGIN {block}-----' block: expected PEM text with the certificate and {what}"
            )));
        }
    }
    Ok(())
}

/// Checks an endpoint URL (`field` names it in the error): `https://` with a
/// host, or `http://` to a loopback host (`localhost`, `127.x.x.x`,
/// `[::1]`); no user info, query or fragment.
fn check_endpoint(field: &str, value: &str) -> Result<(), CredentialError> {
    let bad = |expected: &str| {
        Err(identity_field(format!(
            "'{field}' '{}' is not valid: expected {expected}",
            crate::echo::truncate(value)
        )))
    };
    let (https, rest) = match (
        value.strip_prefix("https://"),
        value.strip_prefix("http://"),
    ) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        _ => return bad("an https:// URL, e.g. https://login.microsoftonline.com"),
    };
    if rest.contains(['@', '?', '#']) || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("a URL without user info, query, fragment or whitespace");
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if host.is_empty() {
        return bad("a URL with a host");
    }
    let loopback = host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback());
    if !https && !loopback {
        return bad("https:// (plain http:// only to a loopback host)");
    }
    Ok(())
}

/// The subscription id in a `deploymentTargetId` (`/subscriptions/<id>[/…]`), else `""`.
pub fn subscription_of(deployment_target_id: &str) -> String {
    deployment_target_id
        .split('/')
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

/// Secret kind that holds a [`RegistryCredential`].
pub const REGISTRY_CREDENTIAL_KIND: &str = "registry";

/// Credentials for a private container registry, used by the control plane
/// to pull runner images (and by image tasks to push); runners never see them.
///
/// Stored as a secret of kind `registry` whose value is
/// `{"server": "host[:port]", "username": "…", "password": "…"}`; like a
/// Docker `config.json` `auths` entry, it applies to every image reference
/// whose registry host equals `server` (see [`registry_of`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryCredential {
    /// Registry host with optional port, e.g. `registry.example.com:5000`;
    /// normalized by [`RegistryCredential::from_json`] (no scheme, no path).
    pub server: String,
    /// User name (or token name).
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for RegistryCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredential")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

impl RegistryCredential {
    /// Parses and checks a registry credential document.
    ///
    /// Errors: a message naming the field, the value and what was expected
    /// (unknown keys, empty fields, a server that is not a host[:port]).
    pub fn from_json(v: &Value) -> Result<RegistryCredential, CredentialError> {
        let mut c: RegistryCredential =
            serde_json::from_value(v.clone()).map_err(|e| CredentialError::Shape {
                document: REGISTRY,
                reason: e.to_string(),
                expected: "{server, username, password}",
            })?;
        let field_error = |detail: String| CredentialError::Field {
            document: REGISTRY,
            detail,
        };
        for (field, value) in [
            ("server", &c.server),
            ("username", &c.username),
            ("password", &c.password),
        ] {
            if value.trim().is_empty() {
                return Err(field_error(format!("'{field}' is empty")));
            }
        }
        let server = normalize_server(&c.server);
        if server.is_empty()
            || !server
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | ':' | '[' | ']'))
        {
            return Err(field_error(format!(
                "'server' is '{}': expected a registry host with an optional port, e.g. 'registry.example.com:5000'",
                crate::echo::truncate(&c.server)
            )));
        }
        c.server = server;
        Ok(c)
    }
}

/// A registry address as written by users (`https://host:port/v2/`,
/// `index.docker.io`) reduced to the host[:port] that [`registry_of`] yields.
fn normalize_server(server: &str) -> String {
    let s = server.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or_default().to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

/// The registry host of an image reference, following Docker's rule: the
/// first path component is a registry when it contains `.` or `:` or is
/// `localhost`; otherwise the image is on `docker.io`.
///
/// `registry.example.com:5000/team/runner:1` → `registry.example.com:5000`;
/// `ubuntu:22.04` → `docker.io`.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            normalize_server(first)
        }
        _ => "docker.io".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_certificate_identity_needs_its_key_and_excludes_a_secret() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
        let id = DeploymentIdentity::from_json(&json!({"clientId": "c", "tenantId": "t", "clientCertificate": pem, "authorityHost": "http://127.0.0.1:9"})).unwrap();
        assert!(id.mints_tokens());
        assert!(id.secret_values().contains(&pem.to_string()));
        assert!(!format!("{id:?}").contains("MIIE"));
        let only_cert = pem.split("-----BEGIN PRIVATE KEY-----").next().unwrap();
        let e = DeploymentIdentity::from_json(
            &json!({"clientId": "c", "tenantId": "t", "clientCertificate": only_cert}),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("'-----BEGIN PRIVATE KEY-----'"),
            "{e}"
        );
        let e = DeploymentIdentity::from_json(
            &json!({"clientId": "c", "tenantId": "t", "clientCertificate": pem, "clientSecret": "s"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("both set"), "{e}");
    }

    #[test]
    fn identities_are_checked_by_field() {
        let ok = DeploymentIdentity::from_json(&json!({"clientId": "c", "tenantId": "t", "variables": {"ARM_CLIENT_SECRET": "s3cret"}})).unwrap();
        assert_eq!(ok.secret_values(), vec!["s3cret".to_string()]);
        let e = DeploymentIdentity::from_json(
            &json!({"clientId": "c", "tenantId": "t", "variables": {"ADE_X": "v"}}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("'ADE_X'"), "{e}");
        let e = DeploymentIdentity::from_json(&json!({"clientId": "c", "tenantId": " "}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'tenantId'"), "{e}");
        let e =
            DeploymentIdentity::from_json(&json!({"clientId": "c", "tenantId": "t", "secret": 1}))
                .unwrap_err()
                .to_string();
        assert!(e.contains("secret"), "{e}");
        assert_eq!(
            subscription_of("/subscriptions/abc/resourceGroups/x"),
            "abc"
        );
    }

    #[test]
    fn an_entra_identity_keeps_its_secret_out_of_debug_and_checks_its_authority() {
        let id = DeploymentIdentity::from_json(&json!({"clientId": "c", "tenantId": "t", "clientSecret": "s3cret-value", "authorityHost": "http://127.0.0.1:8443/"})).unwrap();
        assert!(id.mints_tokens());
        assert_eq!(id.authority(), "http://127.0.0.1:8443");
        assert_eq!(id.secret_values(), vec!["s3cret-value".to_string()]);
        assert!(!format!("{id:?}").contains("s3cret-value"));
        let plain =
            DeploymentIdentity::from_json(&json!({"clientId": "c", "tenantId": "t"})).unwrap();
        assert!(!plain.mints_tokens());
        assert_eq!(plain.authority(), "https://login.microsoftonline.com");
        for (host, expected) in [
            (
                "http://idp.example.com",
                "plain http:// only to a loopback host",
            ),
            ("ftp://x", "an https:// URL"),
            ("https://user@idp.example.com", "without user info"),
            ("https:///path", "with a host"),
        ] {
            let e = DeploymentIdentity::from_json(&json!({"clientId": "c", "tenantId": "t", "clientSecret": "s", "authorityHost": host})).unwrap_err().to_string();
            assert!(
                e.contains(&format!("'{host}'")) && e.contains(expected),
                "{host}: {e}"
            );
        }
        for ok in [
            "https://login.microsoftonline.us",
            "http://localhost:9/x",
            "http://[::1]:9",
        ] {
            DeploymentIdentity::from_json(&json!({"clientId": "c", "tenantId": "t", "clientSecret": "s", "authorityHost": ok})).unwrap();
        }
        let e = DeploymentIdentity::from_json(
            &json!({"clientId": "c", "tenantId": "t", "authorityHost": "https://x"}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("without 'clientSecret'"), "{e}");
        let e = DeploymentIdentity::from_json(
            &json!({"clientId": "c", "tenantId": "t", "clientSecret": " "}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("'clientSecret' is empty"), "{e}");
    }

    #[test]
    fn registry_credentials_match_image_hosts() {
        let c = RegistryCredential::from_json(
            &json!({"server": "https://Registry.Example.com:5000/v2/", "username": "u", "password": "pw-secret"}),
        )
        .unwrap();
        assert_eq!(c.server, "registry.example.com:5000");
        assert!(!format!("{c:?}").contains("pw-secret"));
        assert_eq!(
            registry_of("registry.example.com:5000/team/runner:1"),
            c.server
        );
        assert_eq!(
            registry_of("127.0.0.1:5077/private/runner:v1"),
            "127.0.0.1:5077"
        );
        assert_eq!(registry_of("localhost/slipway/runner-core"), "localhost");
        assert_eq!(registry_of("ubuntu:22.04"), "docker.io");
        assert_eq!(registry_of("library/ubuntu"), "docker.io");
        let e = RegistryCredential::from_json(
            &json!({"server": "a b", "username": "u", "password": "p"}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("'server' is 'a b'"), "{e}");
        let e = RegistryCredential::from_json(&json!({"server": "r.io", "username": "u"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("password"), "{e}");
    }
}
