//! The one way Slipway runs `git`: catalog sources, task contexts
//! (`…repo.git#ref:folder`) and source triggers all go through a [`Remote`].
//!
//! Users name the URL and the ref, so both are hostile input:
//! - [`check_url`] allows `https://`, `http://`, `ssh://`, `git://`, scp-like
//!   `user@host:path`, and `file://` only beneath the operator's
//!   [`LocalRoots`]; anything starting with `-`, holding whitespace or
//!   control characters, or naming another transport (`ext::`, `fd::`, a bare
//!   path) is refused before git runs.
//! - [`check_ref`] applies `git check-ref-format`'s rules (one-level names
//!   allowed) and refuses a leading `-`.
//! - A remote's host is resolved before git runs and must resolve to
//!   addresses the isolation policy allows
//!   ([`slipway_core::isolation::fetch_refusal`]: not loopback, the
//!   metadata service or private networks unless [`Remote::within`] names
//!   the operator's `serve --fetch-allowed-cidr`); git then connects only
//!   there (`http.curloptResolve` for http(s), `ssh -o HostName=` for ssh,
//!   the URL rewritten to the address with `url.<…>.insteadOf` for
//!   `git://`) and follows no http redirect.
//! - Every user value is placed after `--` / `--end-of-options`, and git
//!   runs with `GIT_ALLOW_PROTOCOL` limited to the transports above, no
//!   system or global config, no prompts and `LC_ALL=C` (so failures are
//!   classified on fixed English text).
//! - Credentials never reach a command line, a URL or a log: a token is an
//!   `http.extraHeader` set through `GIT_CONFIG_*` (Basic auth, user
//!   `x-access-token` unless the token is `user:password`), sent only over
//!   `https://` (plain `http://` only to a loopback host) and only to the
//!   hosts its secret names; an SSH key is a 0600 file named in
//!   `GIT_SSH_COMMAND`, deleted when the command ends. Git's messages are
//!   scrubbed of the secret and of URL user-info.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use slipway_core::isolation::{reachable, Ipv4Cidr};
pub use slipway_hostfs::LocalRoots;
use slipway_hostfs::TempPath;

#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

/// Variables of the server's environment git still sees (everything else,
/// `GIT_*` included, is cleared).
const PASSED_ENV: [&str; 11] = [
    "PATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

/// The transports git may use (`GIT_ALLOW_PROTOCOL`).
pub const ALLOWED_PROTOCOLS: &str = "https:http:ssh:git:file";

/// Errors of this crate. Messages name the URL (user-info scrubbed) or ref.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The URL is not one Slipway fetches from.
    #[error("git URL '{url}' {reason}")]
    InvalidUrl {
        /// The URL, user-info scrubbed.
        url: String,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// The ref breaks git's ref-format rules or starts with `-`.
    #[error("git ref '{reference}' {reason}")]
    InvalidRef {
        /// The ref as given.
        reference: String,
        /// The broken rule.
        reason: String,
    },
    /// A secret whose kind cannot authenticate to git.
    #[error("secret kind '{0}' cannot authenticate to git: expected 'token' or 'sshKey'")]
    CredentialKind(String),
    /// The credential may not be sent to this URL (plain http, a host its
    /// secret does not name).
    #[error("{0}")]
    CredentialNotAllowed(String),
    /// The remote refused the credentials (or there were none and it wanted some).
    #[error("{0}")]
    Unauthorized(String),
    /// The branch, tag, commit or folder does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Any other failure of git (network, not a repository…), scrubbed.
    #[error("{0}")]
    Unreachable(String),
    /// Running git or writing its key file failed.
    #[error("git: {0}")]
    Io(String),
}

/// A credential for a git remote, opened from a stored secret.
#[derive(Clone)]
pub enum GitCredential {
    /// A personal access token or app token for `https://` remotes;
    /// `user:password` picks the user.
    Token {
        /// The token.
        token: String,
        /// Hosts the token may be sent to (lower-case, no port); empty = any https host.
        hosts: Vec<String>,
    },
    /// A private key (OpenSSH or PEM text) for `ssh://` and scp-like remotes.
    SshKey(Vec<u8>),
}

impl std::fmt::Debug for GitCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitCredential::Token { hosts, .. } => write!(f, "Token(***, hosts {hosts:?})"),
            GitCredential::SshKey(_) => f.write_str("SshKey(***)"),
        }
    }
}

impl GitCredential {
    /// Builds a credential from a secret's kind, value and host list.
    ///
    /// Errors: [`GitError::CredentialKind`] when the kind is neither `token`
    /// nor `sshKey`.
    pub fn from_secret(
        kind: &str,
        value: Vec<u8>,
        hosts: Vec<String>,
    ) -> Result<GitCredential, GitError> {
        match kind {
            "token" => Ok(GitCredential::Token {
                token: String::from_utf8_lossy(&value).trim().to_string(),
                hosts,
            }),
            "sshKey" => Ok(GitCredential::SshKey(value)),
            other => Err(GitError::CredentialKind(other.to_string())),
        }
    }

    fn secret_text(&self) -> Option<String> {
        match self {
            GitCredential::Token { token, .. } if !token.is_empty() => Some(token.clone()),
            _ => None,
        }
    }
}

/// Removes URL user-info (`https://user:pw@host` → `https://***@host`) and
/// every occurrence of `secret` from `text`.
pub fn scrub(text: &str, secret: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&tail[at..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    match secret.filter(|s| !s.is_empty()) {
        Some(s) => out.replace(s, "***"),
        None => out,
    }
}

/// The transport of a checked URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `https://`.
    Https,
    /// `http://`.
    Http,
    /// `ssh://` or scp-like `user@host:path`.
    Ssh,
    /// `git://`.
    Git,
    /// `file://` beneath a local root.
    File,
}

/// A URL that passed [`check_url`]: its transport, host (lower-case,
/// without port or user-info; empty for `file://`) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedUrl {
    /// The URL as given.
    pub url: String,
    /// Its transport.
    pub transport: Transport,
    /// Its host.
    pub host: String,
    /// The port the URL names, else the transport's (443, 80, 22, 9418;
    /// 0 for `file://`).
    pub port: u16,
}

impl Transport {
    /// The transport's well-known port (0 for `file://`).
    fn default_port(self) -> u16 {
        match self {
            Transport::Https => 443,
            Transport::Http => 80,
            Transport::Ssh => 22,
            Transport::Git => 9418,
            Transport::File => 0,
        }
    }
}

/// Checks a remote URL (see the module docs for the rules).
///
/// Errors: [`GitError::InvalidUrl`] naming the URL and what was expected.
pub fn check_url(url: &str, roots: &LocalRoots) -> Result<CheckedUrl, GitError> {
    let bad = |reason: &str| GitError::InvalidUrl {
        url: scrub(url, None),
        reason: reason.to_string(),
    };
    if url.is_empty() {
        return Err(bad(
            "is empty: expected https://, http://, ssh://, git://, file:// or user@host:path",
        ));
    }
    if url.starts_with('-') {
        return Err(bad("starts with '-': a URL may not look like a git option"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("holds whitespace or control characters"));
    }
    // `[user@]host[:port]` → (host, port); an scp-like URL has no port.
    let host_of = |authority: &str, with_port: bool| -> Result<(String, Option<u16>), GitError> {
        let hostport = authority.rsplit('@').next().unwrap_or_default();
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, rest) = v6.split_once(']').unwrap_or((v6, ""));
            (h, rest.strip_prefix(':'))
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = match port.filter(|p| with_port && !p.is_empty()) {
            Some(p) => Some(p.parse::<u16>().map_err(|_| {
                bad(&format!(
                    "has port '{p}': expected a number from 1 to 65535"
                ))
            })?),
            None => None,
        };
        if host.is_empty() || host.starts_with('-') {
            return Err(bad("has no host, or a host starting with '-'"));
        }
        if authority
            .split('@')
            .next()
            .is_some_and(|u| u.starts_with('-'))
        {
            return Err(bad("has a user name starting with '-'"));
        }
        Ok((host.to_ascii_lowercase(), port))
    };
    if let Some((scheme, rest)) = url.split_once("://") {
        let transport = match scheme {
            "https" => Transport::Https,
            "http" => Transport::Http,
            "ssh" | "git+ssh" | "ssh+git" => Transport::Ssh,
            "git" => Transport::Git,
            "file" => {
                let path = percent_decode(rest);
                roots
                    .resolve(&path)
                    .map_err(|e| bad(&format!("names a host folder: {e}")))?;
                return Ok(CheckedUrl {
                    url: url.to_string(),
                    transport: Transport::File,
                    host: String::new(),
                    port: 0,
                });
            }
            other => {
                return Err(bad(&format!(
                    "uses transport '{other}': expected https, http, ssh, git or file"
                )))
            }
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = host_of(authority, true)?;
        return Ok(CheckedUrl {
            url: url.to_string(),
            transport,
            host,
            port: port.unwrap_or(transport.default_port()),
        });
    }
    // scp-like: [user@]host:path, no '/' before the first ':'.
    match url.split_once(':') {
        Some((authority, path)) if !authority.contains('/') && !path.is_empty() => {
            if authority.contains("::") || path.starts_with(':') {
                return Err(bad(
                    "names a remote helper ('<transport>::<address>'), which is not allowed",
                ));
            }
            let (host, _) = host_of(authority, false)?;
            Ok(CheckedUrl {
                url: url.to_string(),
                transport: Transport::Ssh,
                host,
                port: Transport::Ssh.default_port(),
            })
        }
        _ => Err(bad(
            "is not a URL: expected https://, http://, ssh://, git://, file:// or user@host:path",
        )),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks a branch, tag or commit name against `git check-ref-format`'s
/// rules (a one-level name such as `main` is allowed) and refuses a
/// leading `-`.
///
/// Errors: [`GitError::InvalidRef`] naming the ref and the broken rule.
pub fn check_ref(reference: &str) -> Result<(), GitError> {
    let bad = |reason: &str| {
        Err(GitError::InvalidRef {
            reference: reference.to_string(),
            reason: reason.to_string(),
        })
    };
    if reference.is_empty() {
        return bad("is empty");
    }
    if reference.starts_with('-') {
        return bad("starts with '-': a ref may not look like a git option");
    }
    if reference == "@" {
        return bad("is '@', which git does not allow");
    }
    if let Some(c) = reference
        .chars()
        .find(|c| c.is_control() || " ~^:?*[\\".contains(*c))
    {
        return bad(&format!(
            "holds '{}', which git does not allow",
            c.escape_default()
        ));
    }
    if reference.contains("..") || reference.contains("@{") || reference.contains("//") {
        return bad("holds '..', '@{' or '//', which git does not allow");
    }
    if reference.starts_with('/') || reference.ends_with('/') || reference.ends_with('.') {
        return bad("starts or ends with '/' or ends with '.', which git does not allow");
    }
    if reference
        .split('/')
        .any(|c| c.starts_with('.') || c.ends_with(".lock"))
    {
        return bad(
            "has a part starting with '.' or ending with '.lock', which git does not allow",
        );
    }
    Ok(())
}

/// Whether a ref is a commit id (7 to 64 hex digits: an abbreviated or full
/// SHA-1/SHA-256) rather than a branch or tag.
pub fn looks_like_commit(reference: &str) -> bool {
    (7..=64).contains(&reference.len()) && reference.chars().all(|c| c.is_ascii_hexdigit())
}

/// A checked remote with its credential: the only value the git commands
/// below accept.
#[derive(Debug, Clone)]
pub struct Remote {
    url: CheckedUrl,
    credential: Option<GitCredential>,
    networks: Vec<Ipv4Cidr>,
}

impl Remote {
    /// Checks `url` and that `credential` may be sent to it.
    ///
    /// Errors: [`GitError::InvalidUrl`]; [`GitError::CredentialNotAllowed`]
    /// when a token would travel over plain http to a non-loopback host or to
    /// a host its secret does not name.
    pub fn new(
        url: &str,
        credential: Option<GitCredential>,
        roots: &LocalRoots,
    ) -> Result<Remote, GitError> {
        let url = check_url(url, roots)?;
        if let Some(GitCredential::Token { hosts, .. }) = &credential {
            let loopback = ["localhost", "127.0.0.1", "::1"].contains(&url.host.as_str());
            match url.transport {
                Transport::Https => {}
                Transport::Http if loopback => {}
                _ => {
                    return Err(GitError::CredentialNotAllowed(format!(
                        "a token is sent only over https:// (plain http:// only to a loopback host); '{}' is not",
                        scrub(&url.url, None)
                    )))
                }
            }
            if !hosts.is_empty() && !hosts.iter().any(|h| h.eq_ignore_ascii_case(&url.host)) {
                return Err(GitError::CredentialNotAllowed(format!(
                    "the token's secret allows hosts {}; '{}' is not one of them",
                    hosts.join(", "),
                    url.host
                )));
            }
        }
        Ok(Remote {
            url,
            credential,
            networks: Vec::new(),
        })
    }

    /// The same remote, whose host may also resolve into `networks` (the
    /// operator's `serve --fetch-allowed-cidr`); otherwise only to
    /// addresses [`slipway_core::isolation::fetch_refusal`] allows.
    pub fn within(mut self, networks: &[Ipv4Cidr]) -> Remote {
        self.networks = networks.to_vec();
        self
    }

    /// The addresses git may connect to for this remote: its host
    /// resolved, those [`slipway_core::isolation::reachable`] refuses left out. Empty for
    /// `file://`.
    ///
    /// Errors: [`GitError::Unreachable`] when the host does not resolve or
    /// resolves only to refused addresses (naming the first and its range).
    fn addresses(&self) -> Result<Vec<IpAddr>, GitError> {
        if self.url.transport == Transport::File {
            return Ok(Vec::new());
        }
        let resolved = (self.url.host.as_str(), self.url.port)
            .to_socket_addrs()
            .map_err(|e| {
                GitError::Unreachable(format!(
                    "'{}': cannot resolve '{}': {e}",
                    self.display(),
                    self.url.host
                ))
            })?
            .collect();
        reachable(resolved, &self.networks, &[])
            .map(|ok| ok.iter().map(|a| a.ip()).collect())
            .map_err(|why| GitError::Unreachable(format!("'{}': {why}", self.display())))
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url.url
    }

    /// The URL with user-info scrubbed, for messages.
    pub fn display(&self) -> String {
        scrub(&self.url.url, None)
    }
}

/// One `git` environment: the hardened variables plus the credential; a
/// temporary key file lives as long as the value.
struct Git {
    env: Vec<(String, String)>,
    secret: Option<String>,
    _key: Option<TempPath>,
}

impl Git {
    fn new(remote: Option<&Remote>, work: &Path) -> Result<Git, GitError> {
        let addresses = match remote {
            Some(r) => r.addresses()?,
            None => Vec::new(),
        };
        Git::connecting(remote, &addresses, work)
    }

    /// [`Git::new`] for a remote whose host was checked to resolve to
    /// `addresses` (first one first): git connects only there.
    fn connecting(
        remote: Option<&Remote>,
        addresses: &[IpAddr],
        work: &Path,
    ) -> Result<Git, GitError> {
        let io = |e: std::io::Error| GitError::Io(e.to_string());
        std::fs::create_dir_all(work).map_err(io)?;
        let mut env: Vec<(String, String)> = [
            ("LC_ALL", "C"),
            ("LANGUAGE", ""),
            ("GIT_ALLOW_PROTOCOL", ALLOWED_PROTOCOLS),
            ("GIT_PROTOCOL_FROM_USER", "0"),
            ("GIT_CONFIG_NOSYSTEM", "1"),
            ("GIT_CONFIG_GLOBAL", "/dev/null"),
            ("GIT_TERMINAL_PROMPT", "0"),
            ("GIT_ASKPASS", "true"),
            ("SSH_ASKPASS", "true"),
            // A remote that stops sending fails the command instead of hanging it.
            ("GIT_HTTP_LOW_SPEED_LIMIT", "1"),
            ("GIT_HTTP_LOW_SPEED_TIME", "120"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let known_hosts = work.join("known_hosts");
        let mut ssh_opts = format!(
            "-o BatchMode=yes -o ConnectTimeout=30 -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile='{}'",
            known_hosts.display()
        );
        // Git's own configuration for this command (`GIT_CONFIG_*`).
        let mut config: Vec<(String, String)> = Vec::new();
        if let Some(r) = remote {
            // Connect only where the check said, not where a second lookup
            // (DNS rebinding) or a redirect would lead.
            if let Some(first) = addresses.first() {
                let literal = r.url.host.parse::<IpAddr>().is_ok();
                match r.url.transport {
                    Transport::Http | Transport::Https => {
                        config.push(("http.followRedirects".into(), "false".into()));
                        if !literal {
                            let list: Vec<String> = addresses
                                .iter()
                                .map(|ip| match ip {
                                    IpAddr::V6(v6) => format!("[{v6}]"),
                                    IpAddr::V4(v4) => v4.to_string(),
                                })
                                .collect();
                            config.push((
                                "http.curloptResolve".into(),
                                format!("{}:{}:{}", r.url.host, r.url.port, list.join(",")),
                            ));
                        }
                    }
                    Transport::Ssh if !literal => {
                        ssh_opts.push_str(&format!(" -o HostName={first}"));
                    }
                    Transport::Git if !literal => {
                        // The URL rewritten to the address: git's own
                        // protocol then names the address as its virtual
                        // host (`host=`), which git-daemon ignores unless
                        // run with `--interpolated-path`.
                        let authority = r.url.url["git://".len()..]
                            .split('/')
                            .next()
                            .unwrap_or_default();
                        let address = SocketAddr::new(*first, r.url.port);
                        config.push((
                            format!("url.git://{address}.insteadOf"),
                            format!("git://{authority}"),
                        ));
                    }
                    _ => {}
                }
            }
        }
        let mut key = None;
        let credential = remote.and_then(|r| r.credential.as_ref());
        match credential {
            Some(GitCredential::Token { token, .. }) => {
                let userpass = if token.contains(':') {
                    token.clone()
                } else {
                    format!("x-access-token:{token}")
                };
                let basic = base64::engine::general_purpose::STANDARD.encode(userpass);
                config.push((
                    "http.extraHeader".into(),
                    format!("Authorization: Basic {basic}"),
                ));
                env.push(("GIT_SSH_COMMAND".into(), format!("ssh {ssh_opts}")));
            }
            Some(GitCredential::SshKey(bytes)) => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let path = work.join(format!("key-{}", uuid::Uuid::new_v4()));
                let guard = TempPath(path.clone());
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io)?;
                f.write_all(bytes).map_err(io)?;
                if !bytes.ends_with(b"\n") {
                    f.write_all(b"\n").map_err(io)?;
                }
                env.push((
                    "GIT_SSH_COMMAND".into(),
                    format!(
                        "ssh -i '{}' -o IdentitiesOnly=yes {ssh_opts}",
                        path.display()
                    ),
                ));
                key = Some(guard);
            }
            None => env.push(("GIT_SSH_COMMAND".into(), format!("ssh {ssh_opts}"))),
        }
        if !config.is_empty() {
            env.push(("GIT_CONFIG_COUNT".into(), config.len().to_string()));
            for (i, (k, v)) in config.into_iter().enumerate() {
                env.push((format!("GIT_CONFIG_KEY_{i}"), k));
                env.push((format!("GIT_CONFIG_VALUE_{i}"), v));
            }
        }
        Ok(Git {
            env,
            secret: credential.and_then(GitCredential::secret_text),
            _key: key,
        })
    }

    /// Runs `git <args>` in `cwd`; stdout on success, a scrubbed message
    /// naming `what` otherwise.
    fn run(&self, cwd: &Path, args: &[&str], what: &str) -> Result<String, GitError> {
        let mut cmd = Command::new("git");
        cmd.args(args).current_dir(cwd).env_clear();
        // Only what git needs of the server's environment: the search path,
        // the operator's CA store overrides and proxies.
        for key in PASSED_ENV {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        cmd.env("HOME", cwd);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd
            .output()
            .map_err(|e| GitError::Io(format!("cannot run git: {e}")))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let msg = scrub(
            &format!("{what} failed: {}", stderr.trim()),
            self.secret.as_deref(),
        );
        Err(classify(&stderr, msg))
    }

    /// The commit checked out in the repository `dir`.
    fn head_commit(&self, dir: &Path) -> Result<String, GitError> {
        Ok(self
            .run(dir, &["rev-parse", "--verify", "HEAD"], "git rev-parse")?
            .trim()
            .to_string())
    }
}

/// Sorts a failure by git's (`LC_ALL=C`, so English) message.
fn classify(stderr: &str, msg: String) -> GitError {
    let s = stderr.to_ascii_lowercase();
    let auth = [
        "authentication failed",
        "could not read username",
        "could not read password",
        "permission denied",
        "401",
        "403",
        "invalid credentials",
        "host key verification failed",
    ];
    let missing = [
        "remote branch",
        "couldn't find remote ref",
        "not our ref",
        "unadvertised object",
        "did not match any",
        "unknown revision",
        "invalid object name",
    ];
    if auth.iter().any(|p| s.contains(p)) {
        GitError::Unauthorized(msg)
    } else if missing.iter().any(|p| s.contains(p)) {
        GitError::NotFound(msg)
    } else {
        GitError::Unreachable(msg)
    }
}

/// One ref a remote advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRef {
    /// Commit id.
    pub commit: String,
    /// Full name (`refs/heads/main`, `HEAD`, `refs/tags/v1`).
    pub name: String,
}

/// The refs of `remote` matching `patterns` (`git ls-remote`), without
/// fetching content. `work` holds key files and `known_hosts`.
///
/// Errors: [`GitError::InvalidRef`] for a bad pattern, otherwise git's
/// scrubbed message as [`GitError::Unauthorized`] / [`GitError::Unreachable`].
pub fn ls_remote(
    remote: &Remote,
    patterns: &[&str],
    work: &Path,
) -> Result<Vec<RemoteRef>, GitError> {
    for p in patterns {
        check_ref(p)?;
    }
    let git = Git::new(Some(remote), work)?;
    let mut args = vec!["ls-remote", "--", remote.url()];
    args.extend(patterns);
    let out = git.run(
        work,
        &args,
        &format!("git ls-remote of '{}'", remote.display()),
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(c, n)| RemoteRef {
            commit: c.to_string(),
            name: n.to_string(),
        })
        .collect())
}

/// The commit `reference` (a branch or tag; `None` = the remote's HEAD)
/// points at now: `(commit, branch)`, the branch empty for HEAD.
///
/// Errors: [`GitError::NotFound`] when the remote has no such ref; the
/// errors of [`ls_remote`].
pub fn remote_head(
    remote: &Remote,
    reference: Option<&str>,
    work: &Path,
) -> Result<(String, String), GitError> {
    let r = reference.unwrap_or("HEAD");
    let refs = ls_remote(remote, &[r], work)?;
    let wanted = [
        format!("refs/heads/{r}"),
        format!("refs/tags/{r}"),
        r.to_string(),
    ];
    refs.into_iter()
        .find(|x| wanted.contains(&x.name))
        .map(|x| {
            let branch = if reference.is_none() {
                String::new()
            } else {
                r.to_string()
            };
            (x.commit, branch)
        })
        .ok_or_else(|| {
            GitError::NotFound(format!("'{r}' does not exist in '{}'", remote.display()))
        })
}

/// A shallow clone of one branch (`None` = the remote's default) into
/// `dest`, which must not exist. Returns the commit checked out.
///
/// Errors: [`GitError::InvalidRef`]; git's scrubbed message.
pub fn clone_branch(
    remote: &Remote,
    branch: Option<&str>,
    dest: &Path,
    work: &Path,
) -> Result<String, GitError> {
    if let Some(b) = branch {
        check_ref(b)?;
    }
    let git = Git::new(Some(remote), work)?;
    let dest_s = dest.to_string_lossy().into_owned();
    let mut args = vec![
        "clone",
        "--quiet",
        "--no-tags",
        "--depth",
        "1",
        "--single-branch",
    ];
    if let Some(b) = branch {
        args.extend(["--branch", b]);
    }
    args.extend(["--", remote.url(), &dest_s]);
    let what = format!(
        "git clone of '{}' (branch {})",
        remote.display(),
        branch.unwrap_or("default")
    );
    git.run(work, &args, &what)?;
    git.head_commit(dest)
}

/// Fetches `reference` (a branch, tag or commit id; `None` = HEAD) of
/// `remote` into a new repository at `dest` and checks it out detached.
/// Returns the commit. A commit the remote does not serve directly is
/// found after fetching all branches and tags.
///
/// Errors: [`GitError::InvalidRef`]; [`GitError::NotFound`] when the ref
/// does not exist; git's scrubbed message.
pub fn fetch_ref(
    remote: &Remote,
    reference: Option<&str>,
    dest: &Path,
    work: &Path,
) -> Result<String, GitError> {
    if let Some(r) = reference {
        check_ref(r)?;
    }
    let r = reference.unwrap_or("HEAD");
    let git = Git::new(Some(remote), work)?;
    std::fs::create_dir_all(dest).map_err(|e| GitError::Io(e.to_string()))?;
    git.run(dest, &["init", "-q"], "git init")?;
    let what = format!("git fetch of '{r}' from '{}'", remote.display());
    let shallow = git.run(
        dest,
        &[
            "fetch",
            "-q",
            "--no-tags",
            "--depth",
            "1",
            "--",
            remote.url(),
            r,
        ],
        &what,
    );
    let commit_ish = match shallow {
        Ok(_) => "FETCH_HEAD".to_string(),
        Err(GitError::Unauthorized(m)) => return Err(GitError::Unauthorized(m)),
        Err(_) => {
            git.run(
                dest,
                &[
                    "fetch",
                    "-q",
                    "--",
                    remote.url(),
                    "+refs/heads/*:refs/remotes/origin/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                &what,
            )?;
            let candidates = [
                format!("refs/remotes/origin/{r}^{{commit}}"),
                format!("refs/tags/{r}^{{commit}}"),
                format!("{r}^{{commit}}"),
            ];
            candidates
                .iter()
                .find_map(|c| {
                    git.run(
                        dest,
                        &["rev-parse", "-q", "--verify", "--end-of-options", c],
                        "git rev-parse",
                    )
                    .ok()
                })
                .map(|s| s.trim().to_string())
                .ok_or_else(|| {
                    GitError::NotFound(format!("'{r}' does not exist in '{}'", remote.display()))
                })?
        }
    };
    git.run(
        dest,
        &[
            "-c",
            "advice.detachedHead=false",
            "checkout",
            "-q",
            "--detach",
            &commit_ish,
            "--",
        ],
        "git checkout",
    )?;
    git.head_commit(dest)
}

/// Git tree id of every folder under `sub` (`None` = the root) at HEAD of
/// the repository `repo`, keyed by its path relative to `sub` (`""` for
/// `sub` itself).
///
/// Errors: [`GitError::NotFound`] when `sub` is not a folder at HEAD.
pub fn folder_trees(repo: &Path, sub: Option<&str>) -> Result<HashMap<String, String>, GitError> {
    let git = Git::new(None, repo)?;
    let treeish = format!("HEAD:{}", sub.unwrap_or(""));
    let root_tree = git
        .run(
            repo,
            &["rev-parse", "--verify", "--end-of-options", &treeish],
            "git rev-parse",
        )?
        .trim()
        .to_string();
    let listing = git.run(
        repo,
        &["ls-tree", "-r", "-d", "-z", "--end-of-options", &root_tree],
        "git ls-tree",
    )?;
    let mut trees = HashMap::new();
    trees.insert(String::new(), root_tree);
    for entry in listing.split('\0').filter(|e| !e.is_empty()) {
        // "<mode> tree <id>\t<path>"
        if let Some((meta, path)) = entry.split_once('\t') {
            if let Some(id) = meta.split_whitespace().nth(2) {
                trees.insert(path.to_string(), id.to_string());
            }
        }
    }
    Ok(trees)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value git is configured with for `key` (`GIT_CONFIG_*`).
    fn configured(git: &Git, key: &str) -> Option<String> {
        let env: HashMap<&str, &str> = git
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let n: usize = env.get("GIT_CONFIG_COUNT")?.parse().ok()?;
        (0..n)
            .find(|i| env.get(format!("GIT_CONFIG_KEY_{i}").as_str()) == Some(&key))
            .and_then(|i| env.get(format!("GIT_CONFIG_VALUE_{i}").as_str()))
            .map(|v| v.to_string())
    }

    #[test]
    fn a_remote_is_reached_only_at_the_addresses_its_check_allowed() {
        let work = tempfile::tempdir().unwrap();
        let roots = LocalRoots::none();
        let loopback: Vec<Ipv4Cidr> = vec!["127.0.0.1/32".parse().unwrap()];
        // A name: git connects to the address checked here (no second
        // lookup), follows no redirect, and ssh likewise.
        let http = Remote::new("http://localhost:8080/r.git", None, &roots)
            .unwrap()
            .within(&loopback);
        let git = Git::new(Some(&http), work.path()).unwrap();
        assert_eq!(
            configured(&git, "http.curloptResolve").as_deref(),
            Some("localhost:8080:127.0.0.1")
        );
        assert_eq!(
            configured(&git, "http.followRedirects").as_deref(),
            Some("false")
        );
        let ssh = Remote::new("git@localhost:r.git", None, &roots)
            .unwrap()
            .within(&loopback);
        let git = Git::new(Some(&ssh), work.path()).unwrap();
        let ssh_command = &git
            .env
            .iter()
            .find(|(k, _)| k == "GIT_SSH_COMMAND")
            .unwrap()
            .1;
        assert!(
            ssh_command.contains("-o HostName=127.0.0.1"),
            "{ssh_command}"
        );
        let daemon = Remote::new("git://localhost/r.git", None, &roots)
            .unwrap()
            .within(&loopback);
        let git = Git::new(Some(&daemon), work.path()).unwrap();
        assert_eq!(
            configured(&git, "url.git://127.0.0.1:9418.insteadOf").as_deref(),
            Some("git://localhost")
        );
        // Nothing opened: loopback by name or number is refused before git runs.
        for url in [
            "http://localhost:8080/r.git",
            "https://127.0.0.2/r.git",
            "git://[::1]/r.git",
        ] {
            let r = Remote::new(url, None, &roots).unwrap();
            let e = Git::new(Some(&r), work.path()).err().unwrap().to_string();
            assert!(e.contains("--fetch-allowed-cidr"), "{url}: {e}");
        }
        // A token's header and the pin travel together.
        let token = GitCredential::Token {
            token: "t0k".into(),
            hosts: vec![],
        };
        let with_token = Remote::new("http://localhost:8080/r.git", Some(token), &roots)
            .unwrap()
            .within(&loopback);
        let git = Git::new(Some(&with_token), work.path()).unwrap();
        assert!(configured(&git, "http.extraHeader").is_some());
        assert!(configured(&git, "http.curloptResolve").is_some());
    }

    #[test]
    fn real_git_connects_to_the_checked_address_not_to_what_the_name_resolves_to() {
        // A repository behind git's own protocol and smart HTTP, named by a
        // host that resolves nowhere: git reaches it only through the pin.
        let base = tempfile::tempdir().unwrap();
        let repo = base.path().join("r.git");
        let init = Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&repo)
            .status()
            .unwrap();
        assert!(init.success());
        let work = tempfile::tempdir().unwrap();
        // `ls-remote` of `url` with git connecting to `addresses`.
        let ls_remote = |url: &str, addresses: &[IpAddr]| {
            let remote = Remote::new(url, None, &LocalRoots::none()).unwrap();
            Git::connecting(Some(&remote), addresses, work.path())
                .unwrap()
                .run(work.path(), &["ls-remote", "--", url], "ls-remote")
        };
        let loopback = [IpAddr::from([127, 0, 0, 1])];
        let daemon = test_support::GitDaemon::start(base.path());
        let http = test_support::GitHttp::start_open(base.path());
        for url in [
            format!("git://nowhere.invalid:{}/r.git", daemon.port),
            format!("http://nowhere.invalid:{}/r.git", http.port),
        ] {
            let heads = ls_remote(&url, &loopback);
            assert!(
                heads.as_ref().is_ok_and(|h| h.is_empty()),
                "{url}: an empty repository, reached: {heads:?}"
            );
            // The name itself leads nowhere (what git would do unpinned).
            let e = ls_remote(&url, &[]).unwrap_err().to_string();
            assert!(e.contains("nowhere.invalid"), "{url}: {e}");
        }
    }

    #[test]
    fn ports_are_read_from_the_url_or_the_transport() {
        let roots = LocalRoots::none();
        for (url, port) in [
            ("https://h/r.git", 443),
            ("http://h:8080/r.git", 8080),
            ("ssh://git@h:2222/r.git", 2222),
            ("git@h:r.git", 22),
            ("git://h/r.git", 9418),
            ("https://[::1]:8443/r.git", 8443),
            ("https://h:/r.git", 443),
        ] {
            assert_eq!(check_url(url, &roots).unwrap().port, port, "{url}");
        }
        let e = check_url("https://h:99999/r.git", &roots)
            .unwrap_err()
            .to_string();
        assert!(e.contains("port '99999'"), "{e}");
    }

    #[test]
    fn scrub_hides_userinfo_and_the_secret() {
        assert_eq!(
            scrub(
                "fatal: unable to access 'https://bob:tok123@example.com/r.git/': 403",
                Some("tok123")
            ),
            "fatal: unable to access 'https://***@example.com/r.git/': 403"
        );
        assert_eq!(
            scrub("token tok123 leaked", Some("tok123")),
            "token *** leaked"
        );
    }

    #[test]
    fn urls_outside_the_allowed_forms_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let roots = LocalRoots::new(&[dir.path().to_path_buf()]).unwrap();
        for ok in [
            "https://example.com/r.git",
            "http://127.0.0.1:8080/r.git",
            "ssh://git@example.com:22/r.git",
            "git@example.com:org/r.git",
            "git://example.com/r.git",
        ] {
            assert!(check_url(ok, &roots).is_ok(), "{ok}");
        }
        let inside = format!("file://{}", dir.path().display());
        assert_eq!(
            check_url(&inside, &roots).unwrap().transport,
            Transport::File
        );
        for bad in [
            "--upload-pack=touch /tmp/x;.git",
            "-u",
            "ext::sh -c touch% /tmp/x",
            "ext::sh",
            "fd::3",
            "/srv/repo.git",
            "file:///etc",
            "ssh://-oProxyCommand=x/r.git",
            "https://example.com/r.git x",
            "ftp://example.com/r.git",
            "",
        ] {
            assert!(
                matches!(check_url(bad, &roots), Err(GitError::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    /// Cases from `git check-ref-format`'s documented rules.
    #[test]
    fn refs_follow_git_check_ref_format() {
        for ok in ["main", "feature/x", "v1.0.0", "HEAD", "0123abc", "a-b_c"] {
            assert!(check_ref(ok).is_ok(), "{ok}");
        }
        for bad in [
            "--upload-pack=touch /tmp/x",
            "-x",
            "a..b",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[b",
            "a\\b",
            "/a",
            "a/",
            "a//b",
            "a.",
            ".a",
            "x/.a",
            "a.lock",
            "a@{1}",
            "@",
            "",
            "a\u{7f}",
        ] {
            assert!(
                matches!(check_ref(bad), Err(GitError::InvalidRef { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tokens_travel_only_over_https_to_the_named_hosts() {
        let roots = LocalRoots::none();
        let tok = |hosts: &[&str]| GitCredential::Token {
            token: "t".into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        };
        assert!(Remote::new("https://git.example.com/r.git", Some(tok(&[])), &roots).is_ok());
        assert!(Remote::new("http://127.0.0.1:9/r.git", Some(tok(&[])), &roots).is_ok());
        assert!(matches!(
            Remote::new("http://attacker.example/r.git", Some(tok(&[])), &roots),
            Err(GitError::CredentialNotAllowed(_))
        ));
        assert!(matches!(
            Remote::new(
                "https://attacker.example/r.git",
                Some(tok(&["git.example.com"])),
                &roots
            ),
            Err(GitError::CredentialNotAllowed(_))
        ));
        assert!(Remote::new(
            "https://GIT.example.com/r.git",
            Some(tok(&["git.example.com"])),
            &roots
        )
        .is_ok());
    }
}
