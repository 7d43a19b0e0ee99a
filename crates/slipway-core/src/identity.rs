//! Managed identity for runners: tokens instead of secrets.
//!
//! A deployment identity with a `clientSecret` is an Entra ID (Microsoft
//! identity platform) app registration. Its secret never enters a runner:
//! the runner gets `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` like an Azure
//! App Service app, asks that endpoint (its own operation's runner API) for
//! a token for a resource, and Slipway swaps the identity's secret for one.
//! `az login --identity`, MSAL and the Azure SDKs' managed-identity
//! credentials find the endpoint from those two variables unchanged.
//!
//! The two contracts this module speaks (shapes only; the I/O lives in
//! `slipway_runner::identity` and the runner API):
//! - **App Service managed identity, api-version 2019-08-01** (Microsoft
//!   Learn, "Managed identities for App Service", REST endpoint reference):
//!   `GET {IDENTITY_ENDPOINT}?resource=<R>&api-version=2019-08-01` with
//!   header `X-IDENTITY-HEADER: {IDENTITY_HEADER}`; the answer is
//!   [`ManagedIdentityToken`] (`expires_on` in Unix seconds, as a string);
//!   a refusal is [`ManagedIdentityError`] (`statusCode`, `message`).
//! - **OAuth 2.0 client-credentials grant on the Microsoft identity platform
//!   v2.0 endpoint** (RFC 6749 §4.4, §5.1, §5.2): `POST
//!   {authorityHost}/{tenant}/oauth2/v2.0/token` with the form
//!   `grant_type=client_credentials`, `client_id`, `client_secret`,
//!   `scope=<R>/.default`; the answer carries `access_token` and
//!   `expires_in` (seconds); an error carries `error` and
//!   `error_description`. An identity with a certificate sends
//!   `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
//!   and `client_assertion` (a JWT signed RS256 with the certificate's key,
//!   header `x5t` = base64url SHA-1 of the certificate, claims `aud` = the
//!   token URL, `iss` = `sub` = client id, `jti`, `nbf`, `exp`; RFC 7523,
//!   Microsoft identity platform "certificate credentials") instead of
//!   `client_secret`.

use serde::{Deserialize, Serialize};

/// Runner variable with the URL of its managed-identity token endpoint.
pub const ENV_IDENTITY_ENDPOINT: &str = "IDENTITY_ENDPOINT";
/// Runner variable with the value the token endpoint expects in
/// [`IDENTITY_HEADER`].
pub const ENV_IDENTITY_HEADER: &str = "IDENTITY_HEADER";
/// Request header that carries `IDENTITY_HEADER` (header names are
/// case-insensitive; clients send `X-IDENTITY-HEADER`).
pub const IDENTITY_HEADER: &str = "x-identity-header";
/// Runner variable with the URL of its IMDS-shaped token endpoint: what
/// Terraform's azurerm and Pulumi's azure-native providers (hashicorp
/// go-azure-sdk) ask instead of `169.254.169.254` when `ARM_USE_MSI=true`.
/// The URL holds the operation's token as a path segment, since IMDS
/// clients send no secret header.
pub const ENV_ARM_MSI_ENDPOINT: &str = "ARM_MSI_ENDPOINT";
/// The Azure Instance Metadata Service identity API versions accepted
/// (go-azure-sdk sends 2018-02-01).
pub const IMDS_API_VERSIONS: [&str; 4] = ["2018-02-01", "2019-03-11", "2019-06-01", "2019-08-01"];

/// The IMDS-shaped token answer (Azure Instance Metadata Service,
/// `/metadata/identity/oauth2/token`): every number as a decimal string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImdsToken {
    /// The bearer token.
    pub access_token: String,
    /// The deployment identity's client id.
    pub client_id: String,
    /// Seconds until it expires.
    pub expires_in: String,
    /// When it expires, Unix seconds.
    pub expires_on: String,
    /// Same as `expires_in`.
    pub ext_expires_in: String,
    /// Valid from, Unix seconds.
    pub not_before: String,
    /// The resource it is for, as asked.
    pub resource: String,
    /// Always `Bearer`.
    pub token_type: String,
}

/// The IMDS-shaped refusal (`error`, `error_description`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImdsError {
    /// `invalid_request`, `unauthorized_client`, …
    pub error: String,
    /// What went wrong.
    pub error_description: String,
}

/// The App Service managed-identity API version served.
pub const APP_SERVICE_API_VERSION: &str = "2019-08-01";
/// Where Entra ID issues tokens unless an identity names another
/// `authorityHost` (a sovereign cloud or a stand-in).
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// The audience the Azure CLI signs in to Azure Resource Manager with; the
/// first token Slipway mints for an operation is for it, before the runner
/// starts, so a rejected identity fails the operation at once.
pub const ARM_AUDIENCE: &str = "https://management.core.windows.net/";
/// Longest `resource` accepted, characters.
pub const MAX_RESOURCE_LEN: usize = 2048;

/// Why a token could not be had for an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    /// The identity provider refused the identity (wrong secret, unknown
    /// client or tenant, no such audience): its `error` and
    /// `error_description`.
    #[error(
        "the identity provider refused deployment identity '{client_id}': {error}: {description}"
    )]
    Rejected {
        /// The identity's client id.
        client_id: String,
        /// OAuth 2.0 `error` code (e.g. `invalid_client`).
        error: String,
        /// The provider's own words.
        description: String,
    },
    /// The identity provider could not be reached or answered something
    /// that is not a token.
    #[error("no token for deployment identity '{client_id}' from {authority}: {reason}")]
    Unavailable {
        /// The identity's client id.
        client_id: String,
        /// The authority host asked.
        authority: String,
        /// What went wrong (connection, TLS, status, body).
        reason: String,
    },
    /// The runner asked for a token with a bad `resource`.
    #[error("resource '{resource}' is not valid: {expected}")]
    BadResource {
        /// The value as sent (bounded).
        resource: String,
        /// What was expected.
        expected: &'static str,
    },
}

/// A token minted for one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The bearer token.
    pub access_token: String,
    /// Its lifetime from the moment it was issued, seconds.
    pub expires_in: u64,
}

/// The token endpoint's answer (App Service 2019-08-01 shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ManagedIdentityToken {
    /// The bearer token.
    pub access_token: String,
    /// When it expires, Unix seconds, as a decimal string (App Service's form).
    pub expires_on: String,
    /// The resource it is for, as asked.
    pub resource: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// The deployment identity's client id.
    pub client_id: String,
}

/// The token endpoint's refusal (App Service shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedIdentityError {
    /// The HTTP status, repeated.
    pub status_code: u16,
    /// What went wrong.
    pub message: String,
}

/// Checks the `resource` a runner asks a token for: a non-empty absolute
/// URI or application id of at most [`MAX_RESOURCE_LEN`] characters without
/// whitespace or control characters.
///
/// Errors: [`SignInError::BadResource`].
pub fn check_resource(resource: &str) -> Result<(), SignInError> {
    let bad = |expected| SignInError::BadResource {
        resource: crate::echo::truncate(resource),
        expected,
    };
    if resource.is_empty() {
        return Err(bad("a resource URI, e.g. https://management.azure.com/"));
    }
    if resource.len() > MAX_RESOURCE_LEN {
        return Err(bad("at most 2048 characters"));
    }
    if resource
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad("no whitespace or control characters"));
    }
    Ok(())
}

/// The `scope` of a client-credentials request for `resource`:
/// `<resource>/.default` (so `https://management.core.windows.net/` gives
/// `https://management.core.windows.net//.default`, as MSAL and the Azure
/// CLI send it); a value that already is a `/.default` scope is kept.
pub fn scope_for(resource: &str) -> String {
    if resource.ends_with("/.default") {
        resource.to_string()
    } else {
        format!("{resource}/.default")
    }
}

/// The URL of `tenant`'s v2.0 token endpoint under `authority_host`
/// (no trailing slash expected; see
/// [`crate::credentials::DeploymentIdentity::authority`]).
pub fn token_url(authority_host: &str, tenant: &str) -> String {
    format!(
        "{}/{}/oauth2/v2.0/token",
        authority_host.trim_end_matches('/'),
        crate::scrub::percent_encode(tenant)
    )
}

/// The form of a client-credentials request (RFC 6749 §4.4.2), in order.
pub fn token_form(
    client_id: &str,
    client_secret: &str,
    resource: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "client_credentials".into()),
        ("client_id", client_id.into()),
        ("client_secret", client_secret.into()),
        ("scope", scope_for(resource)),
    ]
}

/// `client_assertion_type` of a certificate credential (RFC 7523 §2.2).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long a client assertion is valid, seconds (Entra accepts up to ten
/// minutes; it is used at once).
pub const ASSERTION_LIFETIME_SECS: i64 = 600;

/// The form of a client-credentials request with a signed client
/// assertion instead of a secret, in order.
pub fn assertion_form(
    client_id: &str,
    assertion: &str,
    resource: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "client_credentials".into()),
        ("client_id", client_id.into()),
        ("client_assertion_type", JWT_BEARER_ASSERTION.into()),
        ("client_assertion", assertion.into()),
        ("scope", scope_for(resource)),
    ]
}

/// The JOSE header of a client assertion: RS256 with the certificate's
/// SHA-1 thumbprint (`x5t`, base64url without padding, given).
pub fn assertion_header(x5t: &str) -> serde_json::Value {
    serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": x5t})
}

/// The claims of a client assertion for `client_id` at `token_url`,
/// issued at `now` (Unix seconds) with the unique id `jti`.
pub fn assertion_claims(
    client_id: &str,
    token_url: &str,
    now: i64,
    jti: &str,
) -> serde_json::Value {
    serde_json::json!({
        "aud": token_url,
        "iss": client_id,
        "sub": client_id,
        "jti": jti,
        "iat": now,
        "nbf": now,
        "exp": now + ASSERTION_LIFETIME_SECS,
    })
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Reads the identity provider's answer to a token request (`status`, body).
///
/// Errors: [`SignInError::Rejected`] for an OAuth 2.0 error answer (any
/// status ≥ 400 with an `error`), [`SignInError::Unavailable`] for anything
/// else that is not a token.
pub fn parse_token_answer(
    client_id: &str,
    authority: &str,
    status: u16,
    body: &[u8],
) -> Result<AccessToken, SignInError> {
    let unavailable = |reason: String| SignInError::Unavailable {
        client_id: client_id.to_string(),
        authority: authority.to_string(),
        reason,
    };
    let answer: TokenAnswer = serde_json::from_slice(body).map_err(|e| {
        unavailable(format!(
            "status {status}, not a token answer ({e}): {}",
            crate::echo::truncate(&String::from_utf8_lossy(body))
        ))
    })?;
    if let Some(error) = answer.error {
        return Err(SignInError::Rejected {
            client_id: client_id.to_string(),
            error,
            description: answer.error_description.unwrap_or_default(),
        });
    }
    let expires_in = match &answer.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    match (status, answer.access_token, expires_in) {
        (200..=299, Some(access_token), Some(expires_in)) if !access_token.is_empty() => {
            Ok(AccessToken {
                access_token,
                expires_in,
            })
        }
        _ => Err(unavailable(format!(
            "status {status} without an access_token and expires_in"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_of_an_arm_resource_keeps_its_trailing_slash_like_msal() {
        assert_eq!(
            scope_for(ARM_AUDIENCE),
            "https://management.core.windows.net//.default"
        );
        assert_eq!(
            scope_for("https://vault.azure.net"),
            "https://vault.azure.net/.default"
        );
        assert_eq!(
            scope_for("https://graph.microsoft.com/.default"),
            "https://graph.microsoft.com/.default"
        );
    }

    #[test]
    fn the_token_url_is_the_tenants_v2_endpoint_with_the_tenant_encoded() {
        assert_eq!(
            token_url(
                "https://login.microsoftonline.com/",
                "contoso.onmicrosoft.com"
            ),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(
            token_url("http://127.0.0.1:9", "a/../b"),
            "http://127.0.0.1:9/a%2F..%2Fb/oauth2/v2.0/token"
        );
    }

    #[test]
    fn a_token_answer_is_read_and_an_oauth_error_names_the_providers_words() {
        let ok = parse_token_answer(
            "c",
            "a",
            200,
            br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0"}"#,
        )
        .unwrap();
        assert_eq!(ok.access_token, "eyJ0");
        assert_eq!(ok.expires_in, 3599);
        // ADAL-era answers give expires_in as a string.
        let s = parse_token_answer("c", "a", 200, br#"{"access_token":"t","expires_in":"60"}"#);
        assert_eq!(s.unwrap().expires_in, 60);
        let e = parse_token_answer(
            "c",
            "a",
            401,
            br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the identity provider refused deployment identity 'c': invalid_client: AADSTS7000215: Invalid client secret provided."
        );
        let e =
            parse_token_answer("c", "https://idp", 502, b"<html>bad gateway</html>").unwrap_err();
        assert!(matches!(e, SignInError::Unavailable { .. }), "{e:?}");
        assert!(e.to_string().contains("status 502"), "{e}");
        let e = parse_token_answer("c", "a", 200, br#"{"access_token":""}"#).unwrap_err();
        assert!(matches!(e, SignInError::Unavailable { .. }), "{e:?}");
    }

    #[test]
    fn a_resource_must_be_a_bounded_value_without_whitespace() {
        assert!(check_resource("https://management.azure.com/").is_ok());
        for bad in ["", "a b", "x\ny", &"r".repeat(MAX_RESOURCE_LEN + 1)] {
            let e = check_resource(bad).unwrap_err();
            assert!(matches!(e, SignInError::BadResource { .. }), "{bad}: {e:?}");
        }
    }
}
