//! Source-commit webhooks: which forge sent a delivery, whether it is
//! signed with the task's secret, and what was pushed.
//!
//! Contracts (each forge's webhook documentation):
//! - GitHub: `X-GitHub-Event: push|ping`, `X-Hub-Signature-256:
//!   sha256=<hex HMAC-SHA256(secret, body)>`.
//! - Gitea / Forgejo: `X-Gitea-Event` / `X-Forgejo-Event: push`,
//!   `X-Gitea-Signature` / `X-Forgejo-Signature: <hex HMAC-SHA256>`.
//! - GitLab: `X-Gitlab-Event: Push Hook`, `X-Gitlab-Token: <secret>`
//!   (the secret itself; compared in constant time).
//!
//! Push payloads share `ref` (`refs/heads/<branch>` or `refs/tags/<tag>`)
//! and `after` (the new head; forty zeros when the ref was deleted).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;

/// The forge that sent a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    /// GitHub (and GitHub Enterprise).
    GitHub,
    /// Gitea or Forgejo.
    Gitea,
    /// GitLab.
    GitLab,
}

impl Forge {
    /// `github` | `gitea` | `gitlab`.
    pub fn as_str(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::Gitea => "gitea",
            Forge::GitLab => "gitlab",
        }
    }
}

/// What a verified delivery says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// A connectivity check (GitHub `ping`).
    Ping,
    /// Commits were pushed to a ref.
    Push(PushEvent),
    /// Any other event (named as the forge names it); ignored.
    Other(String),
}

/// A push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEvent {
    /// The full ref, `refs/heads/main`.
    pub reference: String,
    /// The branch when `reference` is a branch.
    pub branch: Option<String>,
    /// The new head commit (`after`).
    pub commit: String,
    /// The ref was deleted (`after` is all zeros).
    pub deleted: bool,
    /// The repository's default branch when the payload names it
    /// (`repository.default_branch`, GitLab `project.default_branch`).
    pub default_branch: Option<String>,
}

/// Why a delivery is refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WebhookError {
    /// No GitHub, Gitea/Forgejo or GitLab event header.
    #[error("the request is not a webhook delivery: expected an X-GitHub-Event, X-Gitea-Event, X-Forgejo-Event or X-Gitlab-Event header")]
    UnknownSender,
    /// The signature (or token) header is missing.
    #[error(
        "header '{0}' is missing: the webhook must be configured with the task's webhook secret"
    )]
    MissingSignature(&'static str),
    /// The signature does not match the body and the secret.
    #[error(
        "header '{0}' does not match: the delivery was not signed with the task's webhook secret"
    )]
    BadSignature(&'static str),
    /// The body is not the expected JSON.
    #[error("webhook payload: {0}")]
    BadPayload(String),
}

/// Verifies a delivery with `secret` and reads its event. `header` looks
/// up a request header by lower-case name.
///
/// Errors: [`WebhookError`]; the signature is checked before the body is
/// parsed.
pub fn verify(
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    secret: &str,
) -> Result<(Forge, WebhookEvent), WebhookError> {
    let (forge, event) = if let Some(e) = header("x-github-event") {
        let sig = header("x-hub-signature-256")
            .ok_or(WebhookError::MissingSignature("X-Hub-Signature-256"))?;
        let hex_sig = sig
            .strip_prefix("sha256=")
            .ok_or(WebhookError::BadSignature("X-Hub-Signature-256"))?;
        check_hmac(secret, body, hex_sig, "X-Hub-Signature-256")?;
        (Forge::GitHub, e)
    } else if let Some(e) = header("x-gitea-event").or_else(|| header("x-forgejo-event")) {
        let (name, sig) = match header("x-gitea-signature") {
            Some(s) => ("X-Gitea-Signature", s),
            None => (
                "X-Forgejo-Signature",
                header("x-forgejo-signature")
                    .ok_or(WebhookError::MissingSignature("X-Gitea-Signature"))?,
            ),
        };
        check_hmac(secret, body, &sig, name)?;
        (Forge::Gitea, e)
    } else if let Some(e) = header("x-gitlab-event") {
        let token =
            header("x-gitlab-token").ok_or(WebhookError::MissingSignature("X-Gitlab-Token"))?;
        if !bool::from(token.as_bytes().ct_eq(secret.as_bytes())) {
            return Err(WebhookError::BadSignature("X-Gitlab-Token"));
        }
        (Forge::GitLab, e)
    } else {
        return Err(WebhookError::UnknownSender);
    };
    let event = match event.as_str() {
        "ping" => WebhookEvent::Ping,
        "push" | "Push Hook" => WebhookEvent::Push(parse_push(body)?),
        other => WebhookEvent::Other(other.to_string()),
    };
    Ok((forge, event))
}

fn check_hmac(
    secret: &str,
    body: &[u8],
    hex_sig: &str,
    name: &'static str,
) -> Result<(), WebhookError> {
    let given = hex::decode(hex_sig.trim()).map_err(|_| WebhookError::BadSignature(name))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| WebhookError::BadSignature(name))?;
    mac.update(body);
    mac.verify_slice(&given)
        .map_err(|_| WebhookError::BadSignature(name))
}

/// Hex HMAC-SHA256 of `body` under `secret` (what GitHub and Gitea send).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn parse_push(body: &[u8]) -> Result<PushEvent, WebhookError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::BadPayload(e.to_string()))?;
    let reference = v["ref"]
        .as_str()
        .ok_or_else(|| {
            WebhookError::BadPayload("field 'ref' is missing: expected refs/heads/<branch>".into())
        })?
        .to_string();
    let commit = v["after"]
        .as_str()
        .or(v["checkout_sha"].as_str())
        .ok_or_else(|| {
            WebhookError::BadPayload(
                "field 'after' is missing: expected the new head commit".into(),
            )
        })?
        .to_string();
    if commit.len() < 7 || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(WebhookError::BadPayload(format!(
            "field 'after' is '{commit}': expected a commit id"
        )));
    }
    Ok(PushEvent {
        branch: reference.strip_prefix("refs/heads/").map(str::to_string),
        deleted: commit.chars().all(|c| c == '0'),
        default_branch: v["repository"]["default_branch"]
            .as_str()
            .or(v["project"]["default_branch"].as_str())
            .map(str::to_string),
        reference,
        commit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    const BODY: &[u8] =
        br#"{"ref":"refs/heads/main","after":"0123456789abcdef0123456789abcdef01234567"}"#;

    #[test]
    fn github_deliveries_are_checked_with_hmac_sha256() {
        // Known answer: HMAC-SHA256("It's a Secret to Everybody", "Hello, World!")
        // from GitHub's "Validating webhook deliveries" page.
        assert_eq!(
            sign("It's a Secret to Everybody", b"Hello, World!"),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let sig = format!("sha256={}", sign("s3cret", BODY));
        let h = headers(&[("x-github-event", "push"), ("x-hub-signature-256", &sig)]);
        let (forge, ev) = verify(&h, BODY, "s3cret").unwrap();
        assert_eq!(forge, Forge::GitHub);
        let WebhookEvent::Push(p) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(p.branch.as_deref(), Some("main"));
        assert!(!p.deleted);
        assert_eq!(
            verify(&h, BODY, "other").unwrap_err(),
            WebhookError::BadSignature("X-Hub-Signature-256")
        );
        let h = headers(&[("x-github-event", "push")]);
        assert_eq!(
            verify(&h, BODY, "s3cret").unwrap_err(),
            WebhookError::MissingSignature("X-Hub-Signature-256")
        );
        let sig = format!("sha256={}", sign("s3cret", b"{}"));
        let h = headers(&[("x-github-event", "ping"), ("x-hub-signature-256", &sig)]);
        assert_eq!(verify(&h, b"{}", "s3cret").unwrap().1, WebhookEvent::Ping);
    }

    #[test]
    fn gitea_and_gitlab_deliveries() {
        let sig = sign("k", BODY);
        let h = headers(&[("x-gitea-event", "push"), ("x-gitea-signature", &sig)]);
        assert_eq!(verify(&h, BODY, "k").unwrap().0, Forge::Gitea);
        let h = headers(&[("x-forgejo-event", "push"), ("x-forgejo-signature", &sig)]);
        assert_eq!(verify(&h, BODY, "k").unwrap().0, Forge::Gitea);
        let h = headers(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "k")]);
        assert!(matches!(
            verify(&h, BODY, "k").unwrap().1,
            WebhookEvent::Push(_)
        ));
        let h = headers(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "kk")]);
        assert_eq!(
            verify(&h, BODY, "k").unwrap_err(),
            WebhookError::BadSignature("X-Gitlab-Token")
        );
        assert_eq!(
            verify(&headers(&[]), BODY, "k").unwrap_err(),
            WebhookError::UnknownSender
        );
    }

    #[test]
    fn push_payloads() {
        let body = br#"{"ref":"refs/tags/v1","after":"0000000000000000000000000000000000000000"}"#;
        let h = headers(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "k")]);
        let WebhookEvent::Push(p) = verify(&h, body, "k").unwrap().1 else {
            panic!()
        };
        assert_eq!(p.branch, None);
        assert!(p.deleted);
        let err = verify(&h, br#"{"ref":"refs/heads/x","after":"nope"}"#, "k").unwrap_err();
        assert!(err.to_string().contains("field 'after' is 'nope'"), "{err}");
    }
}
