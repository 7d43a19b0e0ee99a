//! Fetching a catalog source into a local folder.
//!
//! `local`: a folder on the server, read in place. `git`: a shallow clone of
//! one branch with the real `git` binary (any URL git understands:
//! `https://`, `ssh://`, scp-like `user@host:repo`, `git://`, `file://`)
//! into `<work>/git-<random>`, removed when the [`FetchedSource`] drops.
//!
//! Credentials (ADE `secretIdentifier`) never reach a command line, a URL or
//! a log: a token travels as an `http.extraHeader` set through git's
//! `GIT_CONFIG_*` environment variables (Basic auth, user `x-access-token`
//! unless the token is `user:password`), an SSH key as a 0600 file named in
//! `GIT_SSH_COMMAND` that is deleted when the command ends. Git's own
//! messages are scrubbed of the secret and of URL user-info before they are
//! stored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use slipway_core::manifest::normalize_relative_path;
use slipway_store::CatalogSource;

use crate::CatalogError;

/// A credential for a git source, opened from a stored secret.
#[derive(Clone)]
pub enum GitCredential {
    /// A personal access token or app token for `https://` sources; `user:password` picks the user.
    Token(String),
    /// A private key (OpenSSH or PEM text) for `ssh://` and scp-like sources.
    SshKey(Vec<u8>),
}

impl std::fmt::Debug for GitCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitCredential::Token(_) => f.write_str("Token(***)"),
            GitCredential::SshKey(_) => f.write_str("SshKey(***)"),
        }
    }
}

impl GitCredential {
    /// Builds a credential from a secret's kind and value.
    ///
    /// Errors: a message naming the kind when it is neither `token` nor `sshKey`.
    pub fn from_secret(kind: &str, value: Vec<u8>) -> Result<GitCredential, String> {
        match kind {
            "token" => Ok(GitCredential::Token(
                String::from_utf8_lossy(&value).trim().to_string(),
            )),
            "sshKey" => Ok(GitCredential::SshKey(value)),
            other => Err(format!(
                "secret kind '{other}' cannot authenticate a git catalog: expected 'token' or 'sshKey'"
            )),
        }
    }

    fn secret_text(&self) -> Option<String> {
        match self {
            GitCredential::Token(t) if !t.is_empty() => Some(t.clone()),
            _ => None,
        }
    }
}

/// A fetched source.
#[derive(Debug)]
pub struct FetchedSource {
    /// Folder that holds the definition folders (source root + `path`).
    pub root: PathBuf,
    /// Commit id for git sources; `None` for local folders.
    pub commit: Option<String>,
    /// Git tree id of every folder below `root`, keyed by its path relative
    /// to `root` (`""` for `root` itself); empty for local folders.
    pub trees: HashMap<String, String>,
    /// Temporary clone, removed on drop.
    _clone: Option<TempPath>,
}

/// A path removed (file or folder) when dropped.
#[derive(Debug)]
struct TempPath(PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Normalises a catalog `path` (leading and trailing `/` optional); `None` = the source root.
fn catalog_subpath(path: Option<&str>) -> Result<Option<String>, CatalogError> {
    match path.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
        None => Ok(None),
        Some(p) => normalize_relative_path(p)
            .map(Some)
            .map_err(|m| CatalogError::Source(format!("catalog path '{p}' {m}"))),
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

/// A `git` invocation with the credential wired in; temporary key files
/// live as long as the value.
struct Git {
    env: Vec<(String, String)>,
    secret: Option<String>,
    _key: Option<TempPath>,
}

impl Git {
    fn new(cred: Option<&GitCredential>, work: &Path) -> Result<Git, CatalogError> {
        let mut env = vec![
            ("GIT_TERMINAL_PROMPT".to_string(), "0".to_string()),
            ("GIT_ASKPASS".to_string(), "true".to_string()),
            ("SSH_ASKPASS".to_string(), "true".to_string()),
            // A source that stops sending fails the sync instead of hanging it.
            ("GIT_HTTP_LOW_SPEED_LIMIT".to_string(), "1".to_string()),
            ("GIT_HTTP_LOW_SPEED_TIME".to_string(), "120".to_string()),
        ];
        let known_hosts = work.join("known_hosts");
        let ssh_opts = format!(
            "-o BatchMode=yes -o ConnectTimeout=30 -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile='{}'",
            known_hosts.display()
        );
        let mut key = None;
        match cred {
            Some(GitCredential::Token(token)) => {
                let userpass = if token.contains(':') {
                    token.clone()
                } else {
                    format!("x-access-token:{token}")
                };
                let basic = base64::engine::general_purpose::STANDARD.encode(userpass);
                env.push(("GIT_CONFIG_COUNT".into(), "1".into()));
                env.push(("GIT_CONFIG_KEY_0".into(), "http.extraHeader".into()));
                env.push((
                    "GIT_CONFIG_VALUE_0".into(),
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
                    .open(&path)?;
                f.write_all(bytes)?;
                if !bytes.ends_with(b"\n") {
                    f.write_all(b"\n")?;
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
        Ok(Git {
            env,
            secret: cred.and_then(GitCredential::secret_text),
            _key: key,
        })
    }

    /// Runs `git <args>`; stdout on success, a scrubbed message naming `what` otherwise.
    fn run(&self, args: &[&str], what: &str) -> Result<String, CatalogError> {
        let mut cmd = Command::new("git");
        cmd.args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd
            .output()
            .map_err(|e| CatalogError::Source(format!("cannot run git: {e}")))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let msg = scrub(
            &format!("{what} failed: {}", stderr.trim()),
            self.secret.as_deref(),
        );
        if is_auth_failure(&stderr) {
            Err(CatalogError::Unauthorized(msg))
        } else {
            Err(CatalogError::Unreachable(msg))
        }
    }
}

fn is_auth_failure(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    [
        "authentication failed",
        "could not read username",
        "could not read password",
        "permission denied",
        "401",
        "403",
        "invalid credentials",
        "host key verification failed",
    ]
    .iter()
    .any(|p| s.contains(p))
}

fn describe(src: &CatalogSource) -> String {
    format!(
        "'{}' (branch {})",
        scrub(&src.uri, None),
        src.branch.as_deref().unwrap_or("default")
    )
}

/// The commit the source's branch points at now, without fetching content
/// (`git ls-remote`). Errors: [`CatalogError::Unauthorized`] or
/// [`CatalogError::Unreachable`] with git's scrubbed message.
pub fn remote_head(
    src: &CatalogSource,
    cred: Option<&GitCredential>,
    work: &Path,
) -> Result<String, CatalogError> {
    std::fs::create_dir_all(work)?;
    let git = Git::new(cred, work)?;
    let refname = match src.branch.as_deref().filter(|b| !b.is_empty()) {
        Some(b) => format!("refs/heads/{b}"),
        None => "HEAD".to_string(),
    };
    let out = git.run(
        &["ls-remote", "--", &src.uri, &refname],
        &format!("git ls-remote of {}", describe(src)),
    )?;
    out.split_whitespace()
        .next()
        .filter(|c| c.len() >= 40)
        .map(str::to_string)
        .ok_or_else(|| {
            CatalogError::Source(format!(
                "branch '{}' does not exist in {}",
                src.branch.as_deref().unwrap_or("HEAD"),
                describe(src)
            ))
        })
}

/// Fetches `src`; `work` holds temporary clones.
///
/// Errors name the source: a missing folder or path, an unknown kind, or
/// git's own (scrubbed) stderr as [`CatalogError::Unauthorized`] /
/// [`CatalogError::Unreachable`].
pub fn fetch(
    src: &CatalogSource,
    cred: Option<&GitCredential>,
    work: &Path,
) -> Result<FetchedSource, CatalogError> {
    let sub = catalog_subpath(src.path.as_deref())?;
    match src.kind.as_str() {
        "local" => {
            let base = Path::new(&src.uri);
            let root = sub.as_ref().map_or(base.to_path_buf(), |s| base.join(s));
            if !root.is_dir() {
                return Err(CatalogError::Source(format!(
                    "catalog folder '{}' does not exist or is not a folder",
                    root.display()
                )));
            }
            Ok(FetchedSource {
                root,
                commit: None,
                trees: HashMap::new(),
                _clone: None,
            })
        }
        "git" => {
            std::fs::create_dir_all(work)?;
            let dest = work.join(format!("git-{}", uuid::Uuid::new_v4()));
            let clone = TempPath(dest.clone());
            let git = Git::new(cred, work)?;
            let dest_s = dest.to_string_lossy().into_owned();
            let mut args = vec!["clone", "--quiet", "--depth", "1", "--single-branch"];
            if let Some(b) = src.branch.as_deref().filter(|b| !b.is_empty()) {
                args.extend(["--branch", b]);
            }
            args.extend(["--", &src.uri, &dest_s]);
            git.run(&args, &format!("git clone of {}", describe(src)))?;
            let commit = git
                .run(&["-C", &dest_s, "rev-parse", "HEAD"], "git rev-parse")?
                .trim()
                .to_string();
            let root = sub.as_ref().map_or(dest.clone(), |s| dest.join(s));
            if !root.is_dir() {
                return Err(CatalogError::Source(format!(
                    "catalog path '{}' does not exist in {} at {commit}",
                    src.path.as_deref().unwrap_or(""),
                    describe(src)
                )));
            }
            let trees = folder_trees(&git, &dest_s, sub.as_deref())?;
            Ok(FetchedSource {
                root,
                commit: Some(commit),
                trees,
                _clone: Some(clone),
            })
        }
        other => Err(CatalogError::Source(format!(
            "unknown catalog source kind '{other}': expected 'local' or 'git'"
        ))),
    }
}

/// Tree ids of every folder under `sub` at HEAD, keyed relative to `sub`.
fn folder_trees(
    git: &Git,
    repo: &str,
    sub: Option<&str>,
) -> Result<HashMap<String, String>, CatalogError> {
    let treeish = match sub {
        Some(s) => format!("HEAD:{s}"),
        None => "HEAD:".to_string(),
    };
    let root_tree = git
        .run(&["-C", repo, "rev-parse", &treeish], "git rev-parse")?
        .trim()
        .to_string();
    let listing = git.run(
        &["-C", repo, "ls-tree", "-r", "-d", "-z", &root_tree],
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
        assert_eq!(
            scrub("ssh://git@host:22/x and file:///tmp/x", None),
            "ssh://***@host:22/x and file:///tmp/x"
        );
    }
}
