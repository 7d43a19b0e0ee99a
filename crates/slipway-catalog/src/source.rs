//! Fetching a catalog source into a local folder.
//!
//! `local`: a folder on the server, read in place. `git`: a shallow clone of
//! one branch with the real `git` binary (any URL git understands: `file://`,
//! `https://`, `ssh://`, `git://`) into `<work>/git-<random>`.

use std::path::{Path, PathBuf};
use std::process::Command;

use slipway_core::manifest::normalize_relative_path;
use slipway_store::CatalogSource;

use crate::CatalogError;

/// A fetched source.
#[derive(Debug)]
pub struct FetchedSource {
    /// Folder that holds the definition folders (source root + `path`).
    pub root: PathBuf,
    /// Commit id for git sources; `None` for local folders.
    pub commit: Option<String>,
    /// Temporary clone, removed on drop.
    _clone: Option<TempClone>,
}

#[derive(Debug)]
struct TempClone(PathBuf);

impl Drop for TempClone {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn join_path(base: &Path, path: Option<&str>) -> Result<PathBuf, CatalogError> {
    match path.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
        None => Ok(base.to_path_buf()),
        Some(p) => {
            let norm = normalize_relative_path(p)
                .map_err(|m| CatalogError::Source(format!("catalog path '{p}' {m}")))?;
            Ok(base.join(norm))
        }
    }
}

/// Fetches `src`; `work` holds temporary clones.
///
/// Errors name the source: a missing folder, an unknown kind, or git's own stderr.
pub fn fetch(src: &CatalogSource, work: &Path) -> Result<FetchedSource, CatalogError> {
    match src.kind.as_str() {
        "local" => {
            let root = join_path(Path::new(&src.uri), src.path.as_deref())?;
            if !root.is_dir() {
                return Err(CatalogError::Source(format!(
                    "catalog folder '{}' does not exist or is not a folder",
                    root.display()
                )));
            }
            Ok(FetchedSource {
                root,
                commit: None,
                _clone: None,
            })
        }
        "git" => {
            std::fs::create_dir_all(work)?;
            let dest = work.join(format!("git-{}", uuid::Uuid::new_v4()));
            let clone = TempClone(dest.clone());
            let mut cmd = Command::new("git");
            cmd.args(["clone", "--quiet", "--depth", "1", "--single-branch"]);
            if let Some(b) = src.branch.as_deref().filter(|b| !b.is_empty()) {
                cmd.args(["--branch", b]);
            }
            cmd.arg("--").arg(&src.uri).arg(&dest);
            cmd.env("GIT_TERMINAL_PROMPT", "0");
            let out = cmd
                .output()
                .map_err(|e| CatalogError::Source(format!("cannot run git: {e}")))?;
            if !out.status.success() {
                return Err(CatalogError::Source(format!(
                    "git clone of '{}' (branch {}) failed: {}",
                    src.uri,
                    src.branch.as_deref().unwrap_or("default"),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            let head = Command::new("git")
                .arg("-C")
                .arg(&dest)
                .args(["rev-parse", "HEAD"])
                .output()?;
            let commit = String::from_utf8_lossy(&head.stdout).trim().to_string();
            let root = join_path(&dest, src.path.as_deref())?;
            if !root.is_dir() {
                return Err(CatalogError::Source(format!(
                    "catalog path '{}' does not exist in '{}' at {commit}",
                    src.path.as_deref().unwrap_or(""),
                    src.uri
                )));
            }
            Ok(FetchedSource {
                root,
                commit: Some(commit),
                _clone: Some(clone),
            })
        }
        other => Err(CatalogError::Source(format!(
            "unknown catalog source kind '{other}': expected 'local' or 'git'"
        ))),
    }
}
