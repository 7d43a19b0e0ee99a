//! A stand-in for Entra ID's v2.0 token endpoint (no real identity provider
//! can run here): plain HTTP/1.1 on 127.0.0.1, answering
//! `POST /{tenant}/oauth2/v2.0/token` client-credentials requests the way
//! the Microsoft identity platform does (RFC 6749 §5.1 / §5.2 shapes), and
//! recording every request so tests can see what reached it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One request the stand-in saw.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// Request line path.
    pub path: String,
    /// Decoded form fields, in order.
    pub form: Vec<(String, String)>,
}

impl SeenRequest {
    /// The value of form field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the stand-in accepts from its one client.
#[derive(Clone)]
pub enum Accepts {
    /// `client_secret` equal to this.
    Secret(String),
    /// A `client_assertion` (RFC 7523) signed RS256 by the key of this
    /// certificate: `key_pem` (PKCS#8) stands for the public key Entra
    /// keeps, `cert_der` for the registered certificate (`x5t`).
    Certificate {
        /// The private key, PEM; its public half verifies.
        key_pem: String,
        /// The certificate, DER.
        cert_der: Vec<u8>,
    },
}

/// The running stand-in. Its thread lives as long as the test process.
pub struct EntraStandIn {
    /// `http://127.0.0.1:<port>`: the identity's `authorityHost`.
    pub authority: String,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
}

impl EntraStandIn {
    /// Starts a stand-in that issues tokens to `client_id` with
    /// `client_secret` in `tenant` and refuses anything else with
    /// `invalid_client` (AADSTS7000215, Entra's wording).
    pub fn start(tenant: &str, client_id: &str, client_secret: &str) -> EntraStandIn {
        Self::start_accepting(
            tenant,
            client_id,
            Accepts::Secret(client_secret.to_string()),
        )
    }

    /// Starts a stand-in that issues tokens to `client_id` in `tenant`
    /// presenting `accepts`, refusing anything else with `invalid_client`.
    pub fn start_accepting(tenant: &str, client_id: &str, accepts: Accepts) -> EntraStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let authority = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tenant, client_id) = (tenant.to_string(), client_id.to_string());
        let log = Arc::clone(&seen);
        let token_url = format!("{authority}/{tenant}/oauth2/v2.0/token");
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = serve(conn, &tenant, &client_id, &accepts, &token_url, &log);
            }
        });
        EntraStandIn { authority, seen }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(
    conn: TcpStream,
    tenant: &str,
    client_id: &str,
    accepts: &Accepts,
    token_url: &str,
    log: &Mutex<Vec<SeenRequest>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split(' ').nth(1).unwrap_or_default().to_string();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let form: Vec<(String, String)> = String::from_utf8_lossy(&body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    let request = SeenRequest { path, form };
    let n = {
        let mut log = log.lock().unwrap();
        log.push(request.clone());
        log.len()
    };
    let ok = request.path == format!("/{tenant}/oauth2/v2.0/token")
        && request.field("grant_type") == Some("client_credentials")
        && request.field("client_id") == Some(client_id)
        && match accepts {
            Accepts::Secret(secret) => request.field("client_secret") == Some(secret.as_str()),
            Accepts::Certificate { key_pem, cert_der } => {
                request.field("client_secret").is_none()
                    && request.field("client_assertion_type")
                        == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                    && assertion_ok(
                        request.field("client_assertion").unwrap_or_default(),
                        client_id,
                        token_url,
                        key_pem,
                        cert_der,
                    )
            }
        };
    let (status, answer) = if ok {
        let scope = request.field("scope").unwrap_or_default();
        let name = format!(
            "standin-token-{n}-for-{}",
            scope.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        (
            "200 OK",
            format!(
                r#"{{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"{}"}}"#,
                jwt(&name, tenant, client_id, scope)
            ),
        )
    } else if matches!(accepts, Accepts::Certificate { .. }) {
        (
            "401 Unauthorized",
            r#"{"error":"invalid_client","error_description":"AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application.","error_codes":[700027]}"#.to_string(),
        )
    } else {
        (
            "401 Unauthorized",
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.","error_codes":[7000215]}"#.to_string(),
        )
    };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    )?;
    conn.flush()
}

/// Whether `assertion` is a JWT signed RS256 by `key_pem`'s key, naming
/// `cert_der` by SHA-1 thumbprint, for `client_id` at `token_url`, valid now.
fn assertion_ok(
    assertion: &str,
    client_id: &str,
    token_url: &str,
    key_pem: &str,
    cert_der: &[u8],
) -> bool {
    use base64::Engine;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::Verifier;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return false;
    };
    let json = |p: &str| -> serde_json::Value {
        b64.decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    };
    let (header, claims) = (json(header), json(claims));
    let x5t = b64.encode(<sha1::Sha1 as sha1::Digest>::digest(cert_der));
    let now = chrono::Utc::now().timestamp();
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(key_pem).unwrap();
    let verifier = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key.to_public_key());
    let signed = format!("{}.{}", parts[0], parts[1]);
    let signature_ok = b64
        .decode(signature)
        .ok()
        .and_then(|s| rsa::pkcs1v15::Signature::try_from(s.as_slice()).ok())
        .is_some_and(|s| verifier.verify(signed.as_bytes(), &s).is_ok());
    signature_ok
        && header["alg"] == "RS256"
        && header["x5t"] == x5t.as_str()
        && claims["aud"] == token_url
        && claims["iss"] == client_id
        && claims["sub"] == client_id
        && claims["jti"].as_str().is_some_and(|j| !j.is_empty())
        && claims["nbf"].as_i64().is_some_and(|t| t <= now + 60)
        && claims["exp"].as_i64().is_some_and(|t| t > now)
}

/// An unsigned JWT shaped like Entra's access tokens (clients such as the
/// Azure CLI read its claims; nobody here checks a signature), carrying the
/// stand-in's own name for the token in claim `standin`.
fn jwt(name: &str, tenant: &str, client_id: &str, scope: &str) -> String {
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "aud": scope.trim_end_matches("/.default"),
        "iss": format!("https://sts.windows.net/{tenant}/"),
        "iat": now, "nbf": now, "exp": now + 3599,
        "tid": tenant, "appid": client_id, "oid": "00000000-0000-0000-0000-0000000000c1",
        "sub": "00000000-0000-0000-0000-0000000000c1", "idtyp": "app",
        "standin": name,
    });
    format!(
        "{}.{}.c3RhbmQtaW4",
        b64(serde_json::json!({"alg": "RS256", "typ": "JWT"})),
        b64(claims)
    )
}

/// The stand-in's name of `token` (claim `standin`, e.g.
/// `standin-token-2-for-https___management_azure_com___default`), or `""`
/// when it is not one of its tokens.
pub fn token_name(token: &str) -> String {
    use base64::Engine;
    token
        .trim_start_matches("Bearer ")
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["standin"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
