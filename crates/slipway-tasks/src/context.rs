//! Build contexts: tarring a folder (honouring `.dockerignore`), unpacking
//! an uploaded tarball, fetching `https://…/repo.git#ref:folder` with git,
//! and fetching a tarball URL.
//!
//! Contract: `az acr build` tars local folders honouring `.dockerignore`
//! and always leaves out `.git`, `.gitignore`, `.hg`, `.svn`… (reference
//! `acr-tasks.md` §4.7); git contexts are `<url>#<ref>:<subdir>` (§3.3).

use slipway_git::{GitCredential, LocalRoots, Remote};
use std::path::Path;

use crate::TaskError;

/// Names never sent in a context (`az acr build`).
const ALWAYS_EXCLUDED: [&str; 7] = [
    ".git",
    ".gitignore",
    ".bzr",
    ".bzrignore",
    ".hg",
    ".hgignore",
    ".svn",
];

/// `.dockerignore` rules: `(negated, pattern segments)`, in file order.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules(Vec<(bool, Vec<String>)>);

impl IgnoreRules {
    /// Parses `.dockerignore` text: one pattern per line, `#` comments,
    /// `!` exceptions, `**` for any number of directories.
    pub fn parse(text: &str) -> IgnoreRules {
        IgnoreRules(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| {
                    let (neg, p) = match l.strip_prefix('!') {
                        Some(p) => (true, p.trim()),
                        None => (false, l),
                    };
                    let segs = p
                        .trim_start_matches("./")
                        .trim_matches('/')
                        .split('/')
                        .filter(|s| !s.is_empty() && *s != ".")
                        .map(str::to_string)
                        .collect();
                    (neg, segs)
                })
                .collect(),
        )
    }

    /// Whether `rel` (a `/`-separated path in the context) is excluded:
    /// the last matching rule decides; a pattern matching a parent
    /// directory matches everything below it.
    pub fn excluded(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').collect();
        let mut out = false;
        for (neg, pat) in &self.0 {
            let hit = (1..=parts.len()).any(|n| match_segments(pat, &parts[..n]));
            if hit {
                out = !neg;
            }
        }
        out
    }
}

fn match_segments(pat: &[String], path: &[&str]) -> bool {
    match (pat.first(), path.first()) {
        (None, None) => true,
        (Some(p), _) if p == "**" => {
            (0..=path.len()).any(|k| match_segments(&pat[1..], &path[k..]))
        }
        (Some(p), Some(s)) => {
            glob(p.as_bytes(), s.as_bytes()) && match_segments(&pat[1..], &path[1..])
        }
        _ => false,
    }
}

/// `*`, `?` and `[…]` within one path segment (Go `filepath.Match`).
fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(b'['), Some(c)) => match p.iter().position(|&b| b == b']') {
            Some(end) => {
                let set = &p[1..end];
                let (neg, set) = match set.first() {
                    Some(b'^') | Some(b'!') => (true, &set[1..]),
                    _ => (false, set),
                };
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == b'-' {
                        hit |= set[i] <= *c && *c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == *c;
                        i += 1;
                    }
                }
                hit != neg && glob(&p[end + 1..], &s[1..])
            }
            None => false,
        },
        (Some(b'\\'), Some(c)) => p.get(1) == Some(c) && glob(&p[2..], &s[1..]),
        (Some(a), Some(b)) => a == b && glob(&p[1..], &s[1..]),
        _ => false,
    }
}

/// Tars the folder `dir` (uncompressed) leaving out what `.dockerignore`
/// (or `<dockerfile>.dockerignore` when given) excludes and the VCS
/// folders. The Dockerfile itself is always sent. The folder is read as a
/// [`slipway_hostfs::Tree`]: symlinks are sent as links, never followed.
///
/// Errors: [`TaskError::Context`] for I/O while reading the folder.
pub fn tar_dir(dir: &Path, dockerfile: Option<&str>) -> Result<Vec<u8>, TaskError> {
    let tree = slipway_hostfs::Tree::open(dir)
        .map_err(|e| TaskError::Context(format!("context folder {e}")))?;
    tar_tree(&tree, dockerfile)
}

/// [`tar_dir`] of an opened tree.
///
/// Errors: [`TaskError::Context`] naming the entry that could not be read.
pub fn tar_tree(
    tree: &slipway_hostfs::Tree,
    dockerfile: Option<&str>,
) -> Result<Vec<u8>, TaskError> {
    const IGNORE_FILE_LIMIT: u64 = 1 << 20;
    let specific = dockerfile
        .map(|d| format!("{d}.dockerignore"))
        .filter(|p| tree.is_file(p));
    let rules_text = match specific {
        Some(p) => tree
            .read_to_string(&p, IGNORE_FILE_LIMIT)
            .map_err(|e| TaskError::Context(format!("context {e}")))?,
        None => tree
            .read_to_string(".dockerignore", IGNORE_FILE_LIMIT)
            .unwrap_or_default(),
    };
    let rules = IgnoreRules::parse(&rules_text);
    let keep_always = dockerfile
        .unwrap_or("Dockerfile")
        .trim_start_matches("./")
        .to_string();
    tree.tar(|rel, _| {
        if !rel.contains('/') && ALWAYS_EXCLUDED.contains(&rel) {
            return false;
        }
        !rules.excluded(rel) || rel == keep_always || keep_always.starts_with(&format!("{rel}/"))
    })
    .map_err(|e| TaskError::Context(format!("context {e}")))
}

/// Unpacks a tar (or gzip'd tar) into `dest` (created when missing)
/// through a [`slipway_hostfs::Tree`]: no entry, and no symlink an earlier
/// entry planted, leads a write out of `dest`.
///
/// Errors: [`TaskError::Context`] naming the bad entry or the I/O failure.
pub fn untar(bytes: &[u8], dest: &Path) -> Result<(), TaskError> {
    slipway_hostfs::Tree::create(dest)
        .and_then(|t| t.untar(bytes))
        .map_err(|e| TaskError::Context(format!("context {e}")))
}

/// A git context `<url>#<ref>:<folder>` split up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitContext {
    /// Clone URL.
    pub url: String,
    /// Branch, tag or commit; `None` = the remote's HEAD.
    pub reference: Option<String>,
    /// Folder inside the repository; empty = root.
    pub folder: String,
}

impl GitContext {
    /// Recognizes git contexts: `git@…`, `git://…`, `ssh://…`, `file://…`
    /// and http(s) URLs whose path ends in `.git` (before `#`).
    pub fn parse(context: &str) -> Option<GitContext> {
        let (url, frag) = match context.split_once('#') {
            Some((u, f)) => (u, Some(f)),
            None => (context, None),
        };
        let is_git = url.starts_with("git@")
            || url.starts_with("git://")
            || url.starts_with("ssh://")
            || url.ends_with(".git")
            || (url.starts_with("file://") && frag.is_some());
        if !is_git {
            return None;
        }
        let (reference, folder) = match frag {
            None => (None, String::new()),
            Some(f) => match f.split_once(':') {
                Some((r, d)) => (
                    Some(r.to_string()).filter(|r| !r.is_empty()),
                    d.trim_matches('/').to_string(),
                ),
                None => (Some(f.to_string()).filter(|r| !r.is_empty()), String::new()),
            },
        };
        Some(GitContext {
            url: url.to_string(),
            reference,
            folder,
        })
    }

    /// Checks the URL, ref and folder against [`slipway_git`]'s rules and
    /// that `credential` may be sent to the URL; the checked remote.
    ///
    /// Errors: [`TaskError::Validation`] naming the URL, ref or folder.
    pub fn remote(
        &self,
        credential: Option<GitCredential>,
        roots: &LocalRoots,
    ) -> Result<Remote, TaskError> {
        let remote = Remote::new(&self.url, credential, roots)
            .map_err(|e| TaskError::Validation(format!("context: {e}")))?;
        if let Some(r) = &self.reference {
            slipway_git::check_ref(r)
                .map_err(|e| TaskError::Validation(format!("context: {e}")))?;
        }
        slipway_hostfs::relative(&self.folder).map_err(|_| {
            TaskError::Validation(format!(
                "context folder '{}' leads outside the repository",
                self.folder
            ))
        })?;
        Ok(remote)
    }

    /// The remote's current head for the context's reference (`HEAD` when
    /// none) with `git ls-remote`: `(commit, branch)`, the branch empty for
    /// `HEAD`. `work` holds git's key files.
    ///
    /// Errors: [`TaskError::Context`] with git's message (credentials
    /// scrubbed), or when the reference does not exist.
    pub fn remote_head(&self, remote: &Remote, work: &Path) -> Result<(String, String), TaskError> {
        slipway_git::remote_head(remote, self.reference.as_deref(), work)
            .map_err(|e| TaskError::Context(e.to_string()))
    }

    /// Fetches into `dest` (which must not exist) and returns `(commit,
    /// branch)`; the build context is `dest/<folder>`. `work` holds git's
    /// key files.
    ///
    /// Errors: git's message (credentials scrubbed); a folder that does
    /// not exist or leads out of the checkout.
    pub fn fetch(
        &self,
        remote: &Remote,
        dest: &Path,
        work: &Path,
    ) -> Result<(String, String), TaskError> {
        let commit = slipway_git::fetch_ref(remote, self.reference.as_deref(), dest, work)
            .map_err(|e| TaskError::Context(e.to_string()))?;
        let branch = match &self.reference {
            Some(r) if !looks_like_commit(r) => r.clone(),
            _ => String::new(),
        };
        let checkout =
            slipway_hostfs::Tree::open(dest).map_err(|e| TaskError::Context(e.to_string()))?;
        if !checkout.is_dir(&self.folder) {
            return Err(TaskError::Context(format!(
                "folder '{}' does not exist in {} (or leads outside it)",
                self.folder,
                remote.display()
            )));
        }
        Ok((commit, branch))
    }
}

pub use slipway_git::looks_like_commit;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_rules() {
        let r = IgnoreRules::parse("# c\n*.log\nbuild/\n**/tmp\n!keep.log\nsecret?.txt\n");
        assert!(r.excluded("a.log"));
        assert!(!r.excluded("keep.log"));
        assert!(r.excluded("build/x/y"));
        assert!(r.excluded("src/deep/tmp/file"));
        assert!(r.excluded("secret1.txt"));
        assert!(
            !r.excluded("src/a.log"),
            "patterns are anchored at the root"
        );
        assert!(!r.excluded("main.rs"));
    }

    #[test]
    fn git_contexts() {
        let g = GitContext::parse("https://example.com/r.git#main:app/web").unwrap();
        assert_eq!(g.url, "https://example.com/r.git");
        assert_eq!(g.reference.as_deref(), Some("main"));
        assert_eq!(g.folder, "app/web");
        assert!(GitContext::parse("https://example.com/ctx.tar.gz").is_none());
    }
}
