//! Which secrets a scope takes and in what shape: the rules of
//! `PUT …/secrets/{s}` (reference `ade.md` §5.3), without the sealing
//! (the store's) or the HTTP (the API's).
//!
//! A secret is `{kind, value, hosts?}`: `token`, `sshKey` and `generic`
//! hold a non-empty string; `deploymentIdentity` ([`DeploymentIdentity`])
//! and `registry` ([`RegistryCredential`]) hold an object and exist at the
//! dev center only; `hosts` (lower-cased host names) belongs to tokens.

use serde_json::{Map, Value};

use crate::credentials::{
    CredentialError, DeploymentIdentity, RegistryCredential, DEPLOYMENT_IDENTITY_KIND,
    REGISTRY_CREDENTIAL_KIND,
};
use crate::echo::truncate;

/// Every secret kind; the first three are also a project's.
pub const SECRET_KINDS: [&str; 5] = [
    "token",
    "sshKey",
    "generic",
    DEPLOYMENT_IDENTITY_KIND,
    REGISTRY_CREDENTIAL_KIND,
];

/// The kinds a secret may have at the dev center (`true`) or in a project.
/// Deployment identities and registry credentials serve the dev center's
/// environment types and tasks only.
pub fn kinds_at(dev_center: bool) -> &'static [&'static str] {
    if dev_center {
        &SECRET_KINDS
    } else {
        &SECRET_KINDS[..3]
    }
}

/// A secret ready to seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedSecret {
    /// One of [`SECRET_KINDS`].
    pub kind: String,
    /// The value as stored: the string itself, or the checked object as
    /// JSON text.
    pub text: String,
    /// For tokens: the hosts it may be sent to (lower case).
    pub hosts: Vec<String>,
}

/// A secret request refused; the message names the property, the value
/// and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The body is not a JSON object.
    #[error("expected a JSON object {{kind, value, hosts?}}")]
    NotAnObject,
    /// A property other than `kind`, `value`, `hosts`.
    #[error("property '{0}' is not known: expected 'kind', 'value' and 'hosts'")]
    UnknownProperty(String),
    /// A kind the scope does not take.
    #[error("property 'kind' is '{kind}': expected one of {} for a secret of {scope}", allowed.join(", "))]
    KindNotAllowed {
        /// The kind given.
        kind: String,
        /// The kinds the scope takes.
        allowed: &'static [&'static str],
        /// The scope, as shown (`the dev center`, `project 'p'`).
        scope: String,
    },
    /// `hosts` on a secret that is not a token.
    #[error("property 'hosts' applies to 'token' secrets only; this one is '{0}'")]
    HostsNotForKind(String),
    /// `hosts` that is not an array.
    #[error("property 'hosts' must be an array of host names")]
    HostsNotAnArray,
    /// A `hosts` entry that is not a host name.
    #[error("property 'hosts[{index}]' is {value}: expected a host name such as 'github.com'")]
    BadHost {
        /// Position in `hosts`.
        index: usize,
        /// The entry, as JSON.
        value: String,
    },
    /// No value, or one of the wrong JSON type for the kind.
    #[error("property 'value' is required: {0}")]
    MissingValue(&'static str),
    /// An identity or registry credential whose fields are refused.
    #[error("property 'value': {0}")]
    Value(#[from] CredentialError),
}

/// Checks a secret body for a scope (`dev_center`, shown as `scope` in
/// errors).
///
/// Errors: [`SecretError`].
pub fn check_secret(
    body: &Value,
    dev_center: bool,
    scope: &str,
) -> Result<CheckedSecret, SecretError> {
    let obj = body.as_object().ok_or(SecretError::NotAnObject)?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["kind", "value", "hosts"].contains(&k.as_str()))
    {
        return Err(SecretError::UnknownProperty(truncate(k)));
    }
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("generic");
    let allowed = kinds_at(dev_center);
    if !allowed.contains(&kind) {
        return Err(SecretError::KindNotAllowed {
            kind: truncate(kind),
            allowed,
            scope: scope.to_string(),
        });
    }
    let hosts = hosts(obj, kind)?;
    let text = match (kind, obj.get("value")) {
        (DEPLOYMENT_IDENTITY_KIND, Some(v @ Value::Object(_))) => {
            json_text(&DeploymentIdentity::from_json(v)?)
        }
        (DEPLOYMENT_IDENTITY_KIND, _) => {
            return Err(SecretError::MissingValue(
                "an object {clientId, tenantId, subscriptionId?, variables?}",
            ))
        }
        (REGISTRY_CREDENTIAL_KIND, Some(v @ Value::Object(_))) => {
            json_text(&RegistryCredential::from_json(v)?)
        }
        (REGISTRY_CREDENTIAL_KIND, _) => {
            return Err(SecretError::MissingValue(
                "an object {server, username, password}",
            ))
        }
        (_, Some(Value::String(v))) if !v.is_empty() => v.clone(),
        _ => return Err(SecretError::MissingValue("a non-empty string")),
    };
    Ok(CheckedSecret {
        kind: kind.to_string(),
        text,
        hosts,
    })
}

fn json_text<T: serde::Serialize>(v: &T) -> String {
    // Serializing these plain structs cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

/// `hosts`: lower-cased host names (letters, digits, `-`, `.`), tokens only.
fn hosts(obj: &Map<String, Value>, kind: &str) -> Result<Vec<String>, SecretError> {
    let Some(v) = obj.get("hosts") else {
        return Ok(Vec::new());
    };
    if kind != "token" {
        return Err(SecretError::HostsNotForKind(kind.to_string()));
    }
    let items = v.as_array().ok_or(SecretError::HostsNotAnArray)?;
    items
        .iter()
        .enumerate()
        .map(|(index, h)| {
            let h = h.as_str().unwrap_or_default().to_ascii_lowercase();
            let ok = !h.is_empty()
                && h.len() <= 253
                && !h.starts_with(['-', '.'])
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if ok {
                Ok(h)
            } else {
                Err(SecretError::BadHost {
                    index,
                    value: truncate(&items[index].to_string()),
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_values_and_hosts_follow_the_scope_and_kind() {
        let ok = check_secret(
            &json!({"kind": "token", "value": "t", "hosts": ["GitHub.com"]}),
            false,
            "project 'p'",
        )
        .unwrap();
        assert_eq!((ok.kind.as_str(), ok.text.as_str()), ("token", "t"));
        assert_eq!(ok.hosts, ["github.com"]);
        assert_eq!(
            check_secret(&json!({"value": "v"}), false, "x")
                .unwrap()
                .kind,
            "generic"
        );
        let e = check_secret(
            &json!({"kind": "registry", "value": {"server": "r", "username": "u", "password": "p"}}),
            false,
            "project 'p'",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "property 'kind' is 'registry': expected one of token, sshKey, generic for a secret of project 'p'"
        );
        let registry = check_secret(
            &json!({"kind": "registry", "value": {"server": "https://R.io:5000/v2/", "username": "u", "password": "p"}}),
            true,
            "the dev center",
        )
        .unwrap();
        assert!(registry.text.contains("\"r.io:5000\""), "{}", registry.text);
        for (body, says) in [
            (json!("v"), "expected a JSON object"),
            (json!({"value": "v", "x": 1}), "property 'x' is not known"),
            (
                json!({"kind": "generic", "value": "v", "hosts": ["a"]}),
                "'token' secrets only",
            ),
            (
                json!({"kind": "token", "value": "v", "hosts": "a"}),
                "must be an array",
            ),
            (
                json!({"kind": "token", "value": "v", "hosts": ["a", "-b"]}),
                "'hosts[1]' is \"-b\"",
            ),
            (json!({"kind": "token", "value": ""}), "a non-empty string"),
            (
                json!({"kind": "deploymentIdentity", "value": "x"}),
                "an object {clientId",
            ),
            (
                json!({"kind": "deploymentIdentity", "value": {"clientId": "c"}}),
                "property 'value': deployment identity",
            ),
        ] {
            let e = check_secret(&body, true, "the dev center").unwrap_err();
            assert!(e.to_string().contains(says), "{body}: {e}");
        }
    }
}
