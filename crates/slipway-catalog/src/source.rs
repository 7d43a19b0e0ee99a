//! Fetching a catalog source into a local folder.
//!
//! `local`: a folder on the server beneath one of the operator's
//! [`LocalRoots`] (`serve --local-catalog-root`), read in place. `git`: a
//! shallow clone of one branch through [`slipway_git`] (its URL, ref and
//! credential rules apply) into `<work>/git-<random>`, removed when the
//! [`FetchedSource`] drops.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use slipway_hostfs::TempPath;

use slipway_core::isolation::Ipv4Cidr;
use slipway_core::manifest::normalize_relative_path;
use slipway_git::{GitCredential, GitError, LocalRoots, Remote};
use slipway_store::CatalogSource;

use crate::CatalogError;

impl From<GitError> for CatalogError {
    fn from(e: GitError) -> CatalogError {
        match e {
            GitError::Unauthorized(m) => CatalogError::Unauthorized(m),
            GitError::Unreachable(m) | GitError::Io(m) => CatalogError::Unreachable(m),
            GitError::CredentialNotAllowed(m) => CatalogError::Secret(m),
            other => CatalogError::Source(other.to_string()),
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

/// Normalises a catalog `path` (leading and trailing `/` optional); `None` = the source root.
fn catalog_subpath(path: Option<&str>) -> Result<Option<String>, CatalogError> {
    match path.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
        None => Ok(None),
        Some(p) => normalize_relative_path(p)
            .map(Some)
            .map_err(|m| CatalogError::Source(format!("catalog path '{p}' {m}"))),
    }
}

fn describe(src: &CatalogSource) -> String {
    format!(
        "'{}' (branch {})",
        slipway_git::scrub(&src.uri, None),
        src.branch.as_deref().unwrap_or("default")
    )
}

fn branch_of(src: &CatalogSource) -> Option<&str> {
    src.branch.as_deref().filter(|b| !b.is_empty())
}

/// Checks a source before it is stored: a `local` folder beneath `roots`,
/// a `git` URL and branch that [`slipway_git`] accepts, a `path` inside.
///
/// Errors: [`CatalogError::Source`] naming the field and value.
pub fn check_source(src: &CatalogSource, roots: &LocalRoots) -> Result<(), CatalogError> {
    catalog_subpath(src.path.as_deref())?;
    match src.kind.as_str() {
        "local" => roots
            .resolve(&src.uri)
            .map(|_| ())
            .map_err(|e| CatalogError::Source(format!("local catalog folder {e}"))),
        "git" => {
            slipway_git::check_url(&src.uri, roots)?;
            if let Some(b) = branch_of(src) {
                slipway_git::check_ref(b)?;
            }
            Ok(())
        }
        other => Err(CatalogError::Source(format!(
            "unknown catalog source kind '{other}': expected 'local' or 'git'"
        ))),
    }
}

/// The commit the source's branch points at now, without fetching content
/// (`git ls-remote`).
///
/// Errors: [`CatalogError::Unauthorized`] or [`CatalogError::Unreachable`]
/// with git's scrubbed message; [`CatalogError::Source`] for a refused URL
/// or a missing branch.
pub fn remote_head(
    src: &CatalogSource,
    cred: Option<&GitCredential>,
    roots: &LocalRoots,
    networks: &[Ipv4Cidr],
    work: &Path,
) -> Result<String, CatalogError> {
    let remote = Remote::new(&src.uri, cred.cloned(), roots)?.within(networks);
    let branch = branch_of(src);
    let pattern = branch.map(|b| format!("refs/heads/{b}"));
    match slipway_git::remote_head(&remote, pattern.as_deref(), work) {
        Ok((commit, _)) => Ok(commit),
        Err(GitError::NotFound(_)) => Err(CatalogError::Source(format!(
            "branch '{}' does not exist in {}",
            branch.unwrap_or("HEAD"),
            describe(src)
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Fetches `src`; `work` holds temporary clones.
///
/// Errors name the source: a folder outside `roots`, a missing folder or
/// path, an unknown kind, or git's own (scrubbed) stderr as
/// [`CatalogError::Unauthorized`] / [`CatalogError::Unreachable`].
pub fn fetch(
    src: &CatalogSource,
    cred: Option<&GitCredential>,
    roots: &LocalRoots,
    networks: &[Ipv4Cidr],
    work: &Path,
) -> Result<FetchedSource, CatalogError> {
    check_source(src, roots)?;
    let sub = catalog_subpath(src.path.as_deref())?;
    match src.kind.as_str() {
        "local" => {
            let base = roots
                .resolve(&src.uri)
                .map_err(|e| CatalogError::Source(format!("local catalog folder {e}")))?;
            let root = sub.as_ref().map_or(base.to_path_buf(), |s| base.join(s));
            if !root.is_dir() {
                return Err(CatalogError::Source(format!(
                    "catalog folder '{}' does not exist or is not a folder",
                    root.display()
                )));
            }
            // The sub-path is resolved again so a symlink inside cannot lead
            // out of the allowed folder.
            roots.resolve(&root.to_string_lossy()).map_err(|e| {
                CatalogError::Source(format!("catalog path '{}': {e}", root.display()))
            })?;
            Ok(FetchedSource {
                root,
                commit: None,
                trees: HashMap::new(),
                _clone: None,
            })
        }
        _ => {
            std::fs::create_dir_all(work)?;
            let dest = work.join(format!("git-{}", uuid::Uuid::new_v4()));
            let clone = TempPath(dest.clone());
            let remote = Remote::new(&src.uri, cred.cloned(), roots)?.within(networks);
            let commit = slipway_git::clone_branch(&remote, branch_of(src), &dest, work).map_err(
                |e| match e {
                    GitError::NotFound(m) => CatalogError::Source(m),
                    other => other.into(),
                },
            )?;
            let root = sub.as_ref().map_or(dest.clone(), |s| dest.join(s));
            let trees = match slipway_git::folder_trees(&dest, sub.as_deref()) {
                Ok(t) if root.is_dir() => t,
                _ => {
                    return Err(CatalogError::Source(format!(
                        "catalog path '{}' does not exist in {} at {commit}",
                        src.path.as_deref().unwrap_or(""),
                        describe(src)
                    )))
                }
            };
            Ok(FetchedSource {
                root,
                commit: Some(commit),
                trees,
                _clone: Some(clone),
            })
        }
    }
}
