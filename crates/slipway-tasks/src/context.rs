//! Build contexts: tarring a folder (honouring `.dockerignore`), unpacking
//! an uploaded tarball, fetching `https://…/repo.git#ref:folder` with git,
//! and fetching a tarball URL.
//!
//! Contract: `az acr build` tars local folders honouring `.dockerignore`
//! and always leaves out `.git`, `.gitignore`, `.hg`, `.svn`… (reference
//! `acr-tasks.md` §4.7); git contexts are `<url>#<ref>:<subdir>` (§3.3).

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

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

/// Tars `dir` (uncompressed) leaving out what `.dockerignore` (or
/// `<dockerfile>.dockerignore` when given) excludes and the VCS folders.
/// The Dockerfile itself is always sent.
///
/// Errors: I/O while reading the folder.
pub fn tar_dir(dir: &Path, dockerfile: Option<&str>) -> Result<Vec<u8>, TaskError> {
    let io = |e: std::io::Error| TaskError::Context(format!("reading '{}': {e}", dir.display()));
    let specific = dockerfile.map(|d| dir.join(format!("{d}.dockerignore")));
    let rules_text = match specific.filter(|p| p.is_file()) {
        Some(p) => std::fs::read_to_string(p).map_err(io)?,
        None => std::fs::read_to_string(dir.join(".dockerignore")).unwrap_or_default(),
    };
    let rules = IgnoreRules::parse(&rules_text);
    let keep_always = dockerfile
        .unwrap_or("Dockerfile")
        .trim_start_matches("./")
        .to_string();
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(dir.join(&rel_dir))
            .map_err(io)?
            .collect::<Result<_, _>>()
            .map_err(io)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().to_string();
            let rel = rel_dir.join(&name);
            let rel_s = rel.to_string_lossy().replace('\\', "/");
            if rel_dir.as_os_str().is_empty() && ALWAYS_EXCLUDED.contains(&name.as_str()) {
                continue;
            }
            let ft = entry.file_type().map_err(io)?;
            if rules.excluded(&rel_s)
                && rel_s != keep_always
                && !keep_always.starts_with(&format!("{rel_s}/"))
            {
                continue;
            }
            if ft.is_dir() {
                builder.append_dir(&rel, entry.path()).map_err(io)?;
                stack.push(rel);
            } else {
                builder
                    .append_path_with_name(entry.path(), &rel)
                    .map_err(io)?;
            }
        }
    }
    builder.into_inner().map_err(io)
}

/// Unpacks a tar (or gzip'd tar) into `dest`, refusing entries that would
/// land outside it.
///
/// Errors: [`TaskError::Context`] naming the bad entry or the I/O failure.
pub fn untar(bytes: &[u8], dest: &Path) -> Result<(), TaskError> {
    let reader: Box<dyn Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let mut archive = tar::Archive::new(reader);
    std::fs::create_dir_all(dest).map_err(|e| TaskError::Context(e.to_string()))?;
    for entry in archive
        .entries()
        .map_err(|e| TaskError::Context(format!("context is not a tar archive: {e}")))?
    {
        let mut entry = entry.map_err(|e| TaskError::Context(format!("context tar: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| TaskError::Context(format!("context tar: {e}")))?
            .into_owned();
        if path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::RootDir))
        {
            return Err(TaskError::Context(format!(
                "context entry '{}' points outside the context",
                path.display()
            )));
        }
        entry
            .unpack_in(dest)
            .map_err(|e| TaskError::Context(format!("unpacking '{}': {e}", path.display())))?;
    }
    Ok(())
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

    /// The remote's current head for the context's reference (`HEAD` when
    /// none) with `git ls-remote`: `(commit, branch)`, the branch empty for
    /// `HEAD`.
    ///
    /// Errors: [`TaskError::Context`] with git's message (credentials
    /// scrubbed), or when the reference does not exist.
    pub fn remote_head(&self) -> Result<(String, String), TaskError> {
        let r = self.reference.clone().unwrap_or_else(|| "HEAD".into());
        let out = git(&["ls-remote", &self.url, &r], Path::new("/"))?;
        let wanted = [
            format!("refs/heads/{r}"),
            format!("refs/tags/{r}"),
            r.clone(),
        ];
        out.lines()
            .filter_map(|l| l.split_once('\t'))
            .find(|(_, name)| wanted.iter().any(|w| w == name))
            .map(|(sha, _)| {
                let branch = if r == "HEAD" {
                    String::new()
                } else {
                    r.clone()
                };
                (sha.to_string(), branch)
            })
            .ok_or_else(|| {
                TaskError::Context(format!(
                    "'{r}' does not exist in {}",
                    scrub_url_credentials(&self.url)
                ))
            })
    }

    /// Fetches into `dest` (which must not exist) and returns `(commit,
    /// branch)`; the build context is `dest/<folder>`.
    ///
    /// Errors: git's message (URL credentials scrubbed).
    pub fn fetch(&self, dest: &Path) -> Result<(String, String), TaskError> {
        std::fs::create_dir_all(dest).map_err(|e| TaskError::Context(e.to_string()))?;
        git(&["init", "-q"], dest)?;
        git(&["remote", "add", "origin", &self.url], dest)?;
        let r = self.reference.clone().unwrap_or_else(|| "HEAD".into());
        if git(&["fetch", "-q", "--depth", "1", "origin", &r], dest).is_err() {
            git(&["fetch", "-q", "origin"], dest)?;
            git(&["checkout", "-q", &r], dest)?;
        } else {
            git(&["checkout", "-q", "FETCH_HEAD"], dest)?;
        }
        let commit = git(&["rev-parse", "--verify", "HEAD"], dest)?;
        let branch = match &self.reference {
            Some(r) if !looks_like_commit(r) => r.clone(),
            _ => String::new(),
        };
        let folder = dest.join(&self.folder);
        if !folder.starts_with(dest) || !folder.is_dir() {
            return Err(TaskError::Context(format!(
                "folder '{}' does not exist in {}",
                self.folder, self.url
            )));
        }
        Ok((commit, branch))
    }
}

/// Whether a git reference is a commit id (7 or more hex digits: an
/// abbreviated or full SHA-1/SHA-256) rather than a branch or tag.
pub fn looks_like_commit(reference: &str) -> bool {
    reference.len() >= 7 && reference.chars().all(|c| c.is_ascii_hexdigit())
}

/// Runs `git args…` in `cwd` without prompting; its trimmed stdout.
///
/// Errors: [`TaskError::Context`] with git's stderr, URL credentials scrubbed.
fn git(args: &[&str], cwd: &Path) -> Result<String, TaskError> {
    let out = Command::new("git")
        .args(args)
        .current_dir(cwd)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| TaskError::Context(format!("git: {e}")))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).to_string();
        return Err(TaskError::Context(format!(
            "git {}: {}",
            args.first().copied().unwrap_or_default(),
            scrub_url_credentials(msg.trim())
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Replaces `user:password@` in URLs with `***@`.
pub fn scrub_url_credentials(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_inclusive(char::is_whitespace) {
        match (word.find("://"), word.find('@')) {
            (Some(s), Some(a)) if a > s => {
                out.push_str(&word[..s + 3]);
                out.push_str("***");
                out.push_str(&word[a..]);
            }
            _ => out.push_str(word),
        }
    }
    out
}

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
        assert_eq!(
            scrub_url_credentials("fatal: https://u:tok@h/r.git not found"),
            "fatal: https://***@h/r.git not found"
        );
    }
}
