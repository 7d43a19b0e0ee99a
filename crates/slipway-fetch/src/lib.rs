//! HTTP(S) GETs of URLs that users name (and the POSTs of deployment
//! identities' token requests, through the same trust store): task build contexts and acb alias
//! files (`http(s)://…`), VM image template sources (`DiskImage.uri`),
//! `Shell.scriptUri` and `File.sourceUri`.
//!
//! One [`Fetcher`] per server, shared by the task and image services. TLS is
//! rustls (with *ring*); the trusted CAs are the system's store
//! (`rustls-native-certs`: `/etc/ssl/certs` on Debian, overridable with the
//! OpenSSL variables `SSL_CERT_FILE` / `SSL_CERT_DIR`), plus the certificates
//! of an optional PEM bundle (`slipway serve --ca-file`) for self-hosted
//! mirrors and artifact stores signed by a private CA.
//!
//! URLs users name are fetched only from addresses the isolation policy
//! allows ([`slipway_core::isolation::fetch_refusal`]): a name that
//! resolves to loopback, the metadata service or a private network is
//! refused before any connection is made — at every redirect too, since
//! each hop is resolved through the same check — unless the operator
//! opened that network ([`Fetcher::allowing`], `serve
//! --fetch-allowed-cidr`) or names that very address and port (the
//! embedded registry, [`Fetcher::allowing_socket`]). The OCI registry
//! client ([`Fetcher::checked_agent`]) goes through the same check: the
//! registries and token realms users name are theirs too. Requests to
//! endpoints the operator or a DevCenter Admin configured
//! ([`Fetcher::post_form`], [`Fetcher::call`]: identity providers, ARM)
//! are not checked.
//!
//! Blocking (ureq): call from `spawn_blocking`.

use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use slipway_core::isolation::{reachable, Ipv4Cidr};

/// The largest body [`Fetcher::bytes`] callers in Slipway accept, bytes
/// (1 GiB, the same bound as uploaded task contexts and build artifacts).
pub const MAX_IN_MEMORY_BYTES: u64 = 1 << 30;

/// Errors of [`Fetcher`]; each names the file or URL.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The extra CA bundle could not be read or holds no usable certificate.
    #[error("CA file '{path}': {reason}")]
    CaFile {
        /// The file given as `--ca-file`.
        path: PathBuf,
        /// What was wrong (I/O error, PEM error, "no CERTIFICATE block").
        reason: String,
    },
    /// The GET failed: connection, TLS, an HTTP status ≥ 400, or reading the body.
    #[error("GET '{url}': {reason}")]
    Get {
        /// The URL as given.
        url: String,
        /// ureq's description (e.g. `status code 404`, `invalid peer certificate: UnknownIssuer`).
        reason: String,
    },
    /// A request other than a GET could not be made or its answer not read
    /// (connection, TLS, reading the body); an answer with any status is
    /// not an error.
    #[error("{method} '{url}': {reason}")]
    Request {
        /// The method (`POST`, `PUT`, `DELETE`, …).
        method: String,
        /// The URL as given.
        url: String,
        /// ureq's description.
        reason: String,
    },
    /// The body is larger than the caller's limit.
    #[error("GET '{url}': the body is larger than {limit} bytes")]
    TooLarge {
        /// The URL as given.
        url: String,
        /// The limit, bytes.
        limit: u64,
    },
}

/// A shared HTTP(S) client. Cheap to clone (one connection pool per
/// agent).
#[derive(Debug, Clone)]
pub struct Fetcher {
    agent: ureq::Agent,
    user_agent: ureq::Agent,
    tls: Arc<rustls::ClientConfig>,
    allowed: Vec<Ipv4Cidr>,
    sockets: Vec<SocketAddr>,
    extra_cas: usize,
}

/// Resolves a URL's host and keeps only the addresses the isolation
/// policy allows; none left is an error naming the first refused one.
struct CheckedResolver {
    allowed: Vec<Ipv4Cidr>,
    sockets: Vec<SocketAddr>,
}

impl ureq::Resolver for CheckedResolver {
    fn resolve(&self, netloc: &str) -> std::io::Result<Vec<SocketAddr>> {
        reachable(
            netloc.to_socket_addrs()?.collect(),
            &self.allowed,
            &self.sockets,
        )
        .map_err(|why| std::io::Error::new(std::io::ErrorKind::PermissionDenied, why))
    }
}

fn user_agent(
    tls: &Arc<rustls::ClientConfig>,
    allowed: &[Ipv4Cidr],
    sockets: &[SocketAddr],
) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .tls_config(tls.clone())
        .resolver(CheckedResolver {
            allowed: allowed.to_vec(),
            sockets: sockets.to_vec(),
        })
        .build()
}

impl Fetcher {
    /// Trusts the system's CA store only. Certificates the store cannot
    /// parse are skipped with a warning; if the store is missing, https URLs
    /// fail with `UnknownIssuer` (http still works).
    pub fn system() -> Fetcher {
        Fetcher::build(rustls::RootCertStore::empty())
    }

    /// Trusts the system's CA store plus every `CERTIFICATE` in the PEM file
    /// `ca_file` (e.g. a self-hosted CA's `ca.crt`).
    ///
    /// Errors: [`FetchError::CaFile`] when the file cannot be read, a PEM
    /// block is malformed, or it holds no certificate rustls accepts as a
    /// trust anchor.
    pub fn with_ca_file(ca_file: &Path) -> Result<Fetcher, FetchError> {
        let err = |reason: String| FetchError::CaFile {
            path: ca_file.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(ca_file).map_err(|e| err(e.to_string()))?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(format!("not a PEM certificate bundle: {e}")))?;
        if certs.is_empty() {
            return Err(err("no CERTIFICATE block found".into()));
        }
        let mut extra = rustls::RootCertStore::empty();
        for (i, c) in certs.into_iter().enumerate() {
            extra
                .add(c)
                .map_err(|e| err(format!("certificate {} is not a usable CA: {e}", i + 1)))?;
        }
        Ok(Fetcher::build(extra))
    }

    /// The system's CAs plus `extra` (already checked).
    fn build(extra: rustls::RootCertStore) -> Fetcher {
        let mut roots = rustls::RootCertStore::empty();
        match rustls_native_certs::load_native_certs() {
            Ok(certs) => {
                let (_, bad) = roots.add_parsable_certificates(certs);
                if bad > 0 {
                    tracing::warn!(skipped = bad, "system CA store: unparsable certificates");
                }
            }
            Err(e) => tracing::warn!(error = %e, "system CA store cannot be read"),
        }
        let extra_cas = extra.len();
        roots.roots.extend(extra.roots);
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        // Not input-derived: *ring* supports both default versions (TLS 1.2, 1.3).
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tls = Arc::new(config);
        Fetcher {
            agent: ureq::AgentBuilder::new().tls_config(tls.clone()).build(),
            user_agent: user_agent(&tls, &[], &[]),
            tls,
            allowed: Vec::new(),
            sockets: Vec::new(),
            extra_cas,
        }
    }

    /// The same client, also fetching URLs users name from `networks`
    /// (self-hosted artifact stores and mirrors on private networks or
    /// loopback), which the isolation policy blocks otherwise. Replaces
    /// what an earlier call allowed.
    pub fn allowing(mut self, networks: &[Ipv4Cidr]) -> Fetcher {
        self.allowed = networks.to_vec();
        self.user_agent = user_agent(&self.tls, &self.allowed, &self.sockets);
        self
    }

    /// The same client, also reaching exactly `socket` (address and
    /// port) for URLs users name: a service of Slipway's own there, such
    /// as the embedded registry on loopback, without opening the rest of
    /// its network.
    pub fn allowing_socket(mut self, socket: SocketAddr) -> Fetcher {
        self.sockets.push(socket);
        self.user_agent = user_agent(&self.tls, &self.allowed, &self.sockets);
        self
    }

    /// The networks [`Fetcher::allowing`] opened.
    pub fn allowed(&self) -> &[Ipv4Cidr] {
        &self.allowed
    }

    /// The agent of [`Fetcher::open`], whose connections go only where the
    /// address policy allows, for protocol clients that talk to hosts
    /// users name with other methods and headers (the OCI distribution
    /// client of image tasks: registries and their token realms).
    pub fn checked_agent(&self) -> &ureq::Agent {
        &self.user_agent
    }

    /// Certificates added by [`Fetcher::with_ca_file`] (0 for [`Fetcher::system`]).
    pub fn extra_cas(&self) -> usize {
        self.extra_cas
    }

    /// GETs `url`, a URL a user named, and returns the body as a stream.
    /// `timeout` bounds the whole request including reading the body.
    ///
    /// Errors: [`FetchError::Get`] for connection/TLS failures, statuses ≥
    /// 400, and a host (or a redirect's host) that resolves only to
    /// addresses the isolation policy refuses (the reason names the
    /// address and its range).
    pub fn open(&self, url: &str, timeout: Duration) -> Result<impl Read + Send, FetchError> {
        let resp = self
            .user_agent
            .get(url)
            .timeout(timeout)
            .call()
            .map_err(|e| {
                // ureq's message starts with the URL, which the error already names.
                let reason = e.to_string();
                let reason = reason
                    .strip_prefix(url)
                    .and_then(|r| r.strip_prefix(": "))
                    .map_or(reason.clone(), str::to_string);
                FetchError::Get {
                    url: url.to_string(),
                    reason,
                }
            })?;
        Ok(resp.into_reader())
    }

    /// GETs `url` into memory, at most `limit` bytes.
    ///
    /// Errors: as [`Fetcher::open`]; [`FetchError::TooLarge`] past `limit`;
    /// [`FetchError::Get`] when the body breaks off.
    pub fn bytes(&self, url: &str, timeout: Duration, limit: u64) -> Result<Vec<u8>, FetchError> {
        let mut buf = Vec::new();
        self.open(url, timeout)?
            .take(limit.saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|e| FetchError::Get {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        if buf.len() as u64 > limit {
            return Err(FetchError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        Ok(buf)
    }
}

impl Fetcher {
    /// POSTs `form` as `application/x-www-form-urlencoded` to `url` and
    /// returns the answer whatever its status (a token endpoint's errors
    /// are JSON bodies), at most `limit` bytes of its body. `timeout`
    /// bounds the whole request.
    ///
    /// Errors: [`FetchError::Request`] for connection/TLS failures or a body cut
    /// off; [`FetchError::TooLarge`] past `limit`.
    pub fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        timeout: Duration,
        limit: u64,
    ) -> Result<Answer, FetchError> {
        let sent = self.agent.post(url).timeout(timeout).send_form(form);
        read_answer("POST", url, sent, limit)
    }
}

/// The answer to a request other than a GET, whatever its status: the
/// status, `Location`, `Retry-After` and at most `limit` bytes of body.
fn read_answer(
    method: &str,
    url: &str,
    sent: Result<ureq::Response, ureq::Error>,
    limit: u64,
) -> Result<Answer, FetchError> {
    let fail = |reason: String| FetchError::Request {
        method: method.to_string(),
        url: url.to_string(),
        reason,
    };
    let resp = match sent {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => return Err(fail(e.to_string())),
    };
    let status = resp.status();
    let location = resp.header("location").map(str::to_string);
    let retry_after = resp
        .header("retry-after")
        .and_then(|v| v.trim().parse().ok());
    let mut body = Vec::new();
    resp.into_reader()
        .take(limit.saturating_add(1))
        .read_to_end(&mut body)
        .map_err(|e| fail(e.to_string()))?;
    if body.len() as u64 > limit {
        return Err(FetchError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    Ok(Answer {
        status,
        location,
        retry_after,
        body,
    })
}

/// An answer to [`Fetcher::call`], whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The `Location` header, when present (asynchronous operations).
    pub location: Option<String>,
    /// The `Retry-After` header in seconds, when present and numeric.
    pub retry_after: Option<u64>,
    /// The body, at most the caller's limit.
    pub body: Vec<u8>,
}

impl Fetcher {
    /// Sends `method` to `url` with `Authorization: Bearer <bearer>` and an
    /// optional JSON body, and returns the answer whatever its status (a
    /// REST API's errors are bodies). `timeout` bounds the whole request;
    /// at most `limit` bytes of the body are read.
    ///
    /// Errors: [`FetchError::Request`] (named for the method) for connection
    /// or TLS failures or a body cut off; [`FetchError::TooLarge`].
    pub fn call(
        &self,
        method: &str,
        url: &str,
        bearer: &str,
        json: Option<&serde_json::Value>,
        timeout: Duration,
        limit: u64,
    ) -> Result<Answer, FetchError> {
        let req = self
            .agent
            .request(method, url)
            .timeout(timeout)
            .set("authorization", &format!("Bearer {bearer}"));
        let sent = match json {
            Some(body) => req.send_json(body),
            None => req.call(),
        };
        read_answer(method, url, sent, limit)
    }
}

impl Default for Fetcher {
    /// [`Fetcher::system`].
    fn default() -> Fetcher {
        Fetcher::system()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_that_is_missing_or_not_pem_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = Fetcher::with_ca_file(&missing).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("CA file '{}': ", missing.display())),
            "{e}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "just text\n").unwrap();
        let e = Fetcher::with_ca_file(&empty).unwrap_err().to_string();
        assert!(e.ends_with("no CERTIFICATE block found"), "{e}");

        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = Fetcher::with_ca_file(&broken).unwrap_err().to_string();
        assert!(e.contains("broken.pem"), "{e}");
    }

    #[test]
    fn https_is_trusted_through_the_ca_file_and_refused_without_it() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("hello.txt"), "hello over tls\n").unwrap();
        let server = test_support::HttpsFileServer::start(root.path());
        let url = format!("{}/hello.txt", server.base_url);
        let t = Duration::from_secs(30);

        let e = Fetcher::system()
            .allowing(&loopback())
            .bytes(&url, t, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("GET '{url}': Connection Failed")),
            "{e}"
        );
        assert!(e.contains("UnknownIssuer"), "{e}");

        // Another server's CA is no help: its name differs, so the issuer is unknown.
        let other = test_support::HttpsFileServer::start(root.path());
        let e = Fetcher::with_ca_file(&other.ca_file)
            .unwrap()
            .allowing(&loopback())
            .bytes(&url, t, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains("UnknownIssuer"), "{e}");

        let f = Fetcher::with_ca_file(&server.ca_file)
            .unwrap()
            .allowing(&loopback());
        assert_eq!(f.extra_cas(), 1);
        assert_eq!(f.bytes(&url, t, 1 << 20).unwrap(), b"hello over tls\n");

        let e = f.bytes(&url, t, 5).unwrap_err().to_string();
        assert_eq!(e, format!("GET '{url}': the body is larger than 5 bytes"));
    }

    #[test]
    fn an_unreachable_url_is_named_in_the_error() {
        // Port 9 on loopback (discard) is closed on test machines.
        let e = Fetcher::system()
            .allowing(&loopback())
            .bytes("http://127.0.0.1:9/x", Duration::from_secs(5), 10)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("GET 'http://127.0.0.1:9/x': "), "{e}");
        assert!(e.contains("Connection Failed"), "{e}");
    }

    /// 127.0.0.1/32: where the tests' own servers listen.
    fn loopback() -> Vec<Ipv4Cidr> {
        vec!["127.0.0.1/32".parse().unwrap()]
    }

    /// Answers every connection on 127.0.0.1 with `302 Location: to`.
    fn redirecting_to(to: String) -> u16 {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let mut head = [0u8; 4096];
                let _ = c.read(&mut head);
                let _ = write!(
                    c,
                    "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        port
    }

    #[test]
    fn a_url_that_resolves_into_a_blocked_range_is_refused_before_connecting() {
        // A service on the host's loopback, outside what was allowed.
        let service = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        service.set_nonblocking(true).unwrap();
        let target = format!(
            "http://127.0.0.2:{}/secret",
            service.local_addr().unwrap().port()
        );
        let t = Duration::from_secs(5);
        let f = Fetcher::system().allowing(&loopback());
        assert_eq!(f.allowed(), loopback());
        let direct = f.bytes(&target, t, 1 << 20).unwrap_err().to_string();
        // Through an allowed address that redirects there.
        let hop = format!("http://127.0.0.1:{}/r", redirecting_to(target.clone()));
        let redirected = f.bytes(&hop, t, 1 << 20).unwrap_err().to_string();
        for e in [&direct, &redirected] {
            assert!(e.contains("127.0.0.2 is loopback, 127.0.0.0/8"), "{e}");
            assert!(e.contains("serve --fetch-allowed-cidr"), "{e}");
        }
        assert!(direct.starts_with(&format!("GET '{target}': ")), "{direct}");
        assert_eq!(
            service.accept().map_err(|e| e.kind()).err(),
            Some(std::io::ErrorKind::WouldBlock),
            "the service was connected to"
        );
        // Nothing allowed: loopback is refused too (secure by default).
        let e = Fetcher::system()
            .bytes(&hop, t, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains("127.0.0.1 is loopback"), "{e}");
    }

    #[test]
    fn an_allowed_socket_opens_that_port_alone() {
        let t = Duration::from_secs(5);
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = other.local_addr().unwrap();
        let port = redirecting_to(format!("http://{other}/x"));
        let own: SocketAddr = ([127, 0, 0, 1], port).into();
        let f = Fetcher::system().allowing_socket(own);
        // The allowed socket answers (its redirect is followed); the same
        // address on another port is refused, also to the checked agent.
        let e = f
            .bytes(&format!("http://localhost:{port}/r"), t, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("GET 'http://localhost:{port}/r'"))
                && e.contains(&other.to_string())
                && e.contains("127.0.0.1 is loopback"),
            "{e}"
        );
        let agent_err = f
            .checked_agent()
            .get(&format!("http://{other}/x"))
            .call()
            .unwrap_err()
            .to_string();
        assert!(agent_err.contains("127.0.0.1 is loopback"), "{agent_err}");
    }
}

/// Test helpers for crates that fetch over https.
#[cfg(any(test, feature = "test-support"))]
pub mod test_support {
    use std::io::{BufRead, BufReader};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};

    /// A real https file server on `127.0.0.1`: `openssl s_server -WWW`
    /// serving `root`, with a server certificate (SAN `IP:127.0.0.1`) signed
    /// by a CA made for this server alone. Killed on drop.
    pub struct HttpsFileServer {
        /// `https://127.0.0.1:<port>` (no trailing slash).
        pub base_url: String,
        /// The CA certificate (PEM) that signed the server's certificate.
        pub ca_file: PathBuf,
        child: Child,
        _certs: TestCertificates,
    }

    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("running openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A CA made for one test server and a server certificate it signed
    /// (SAN `IP:127.0.0.1` or the address given, EC P-256, valid two days),
    /// in a temporary folder removed on drop.
    pub struct TestCertificates {
        /// `ca.crt`: the CA to trust (`--ca-file`, `REQUESTS_CA_BUNDLE`).
        pub ca_file: PathBuf,
        /// `srv.crt`: the server's certificate.
        pub cert_file: PathBuf,
        /// `srv.key`: the server's key (unencrypted).
        pub key_file: PathBuf,
        _dir: tempfile::TempDir,
    }

    impl TestCertificates {
        /// Makes the CA and a server certificate for `127.0.0.1`.
        ///
        /// Panics (test helper) when `openssl` is missing or fails.
        pub fn new() -> TestCertificates {
            TestCertificates::for_ip("127.0.0.1")
        }

        /// Makes the CA and a server certificate for the IP address `ip`.
        ///
        /// Panics (test helper) when `openssl` is missing or fails.
        pub fn for_ip(ip: &str) -> TestCertificates {
            let certs = tempfile::tempdir().expect("tempdir");
            let d = certs.path();
            // A CA name of its own: two servers' CAs must not be mistaken for each other.
            let tag = d
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().to_string());
            let subject = format!("/CN=Slipway test CA {tag}");
            let ec = [
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ];
            openssl(
                d,
                &[
                    &["req", "-x509"][..],
                    &ec,
                    &[
                        "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", &subject,
                    ],
                ]
                .concat(),
            );
            openssl(
                d,
                &[
                    &["req"][..],
                    &ec,
                    &[
                        "-keyout",
                        "srv.key",
                        "-out",
                        "srv.csr",
                        "-subj",
                        &format!("/CN={ip}"),
                    ],
                ]
                .concat(),
            );
            std::fs::write(
                d.join("ext.cnf"),
                format!("subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
            )
            .expect("writing ext.cnf");
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    "srv.csr",
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    "srv.crt",
                    "-days",
                    "2",
                    "-extfile",
                    "ext.cnf",
                ],
            );
            TestCertificates {
                ca_file: d.join("ca.crt"),
                cert_file: d.join("srv.crt"),
                key_file: d.join("srv.key"),
                _dir: certs,
            }
        }
    }

    impl Default for TestCertificates {
        fn default() -> TestCertificates {
            TestCertificates::new()
        }
    }

    impl HttpsFileServer {
        /// Makes the CA and server certificate, starts the server on a free
        /// port and returns once it accepts connections.
        ///
        /// Panics (test helper) when `openssl` is missing or fails.
        pub fn start(root: &Path) -> HttpsFileServer {
            let certs = TestCertificates::new();
            let mut child = Command::new("openssl")
                .args(["s_server", "-WWW", "-accept", "127.0.0.1:0", "-cert"])
                .arg(&certs.cert_file)
                .arg("-key")
                .arg(&certs.key_file)
                .current_dir(root)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting openssl s_server");
            let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
            let port = loop {
                match lines.next() {
                    Some(Ok(l)) => {
                        if let Some(addr) = l.strip_prefix("ACCEPT ") {
                            break addr.rsplit(':').next().unwrap_or_default().to_string();
                        }
                    }
                    other => panic!("openssl s_server ended before ACCEPT: {other:?}"),
                }
            };
            // Keep draining so the server never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            HttpsFileServer {
                base_url: format!("https://127.0.0.1:{port}"),
                ca_file: certs.ca_file.clone(),
                child,
                _certs: certs,
            }
        }
    }

    impl Drop for HttpsFileServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
