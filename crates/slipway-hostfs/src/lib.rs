//! Host file access beneath a root.
//!
//! The server reads and writes inside trees whose content users control:
//! task contexts (uploads, tarballs, git checkouts, `oci://` layers and ORAS
//! titles), catalog definition folders, mounted VM image roots. Any entry in
//! such a tree may be a symlink planted to point at a host path. Every access
//! to such a tree goes through a [`Tree`]: paths are resolved beneath its
//! root by `cap-std` (`openat2(RESOLVE_BENEATH)` where the kernel has it, a
//! checked component walk otherwise), so `..`, an absolute path or a symlink
//! leading out is [`HostFsError::Escape`] naming the entry — never a read or
//! write elsewhere. Symlinks that stay inside are followed.
//!
//! [`LocalRoots`] is the other half: the host folders an operator lets users
//! name at all (`slipway serve --local-catalog-root DIR`, repeatable), for
//! `local` catalogs and `file://` git URLs.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use cap_std::fs::{Dir, OpenOptions, Permissions, PermissionsExt};

/// Errors of [`Tree`] and [`LocalRoots`]; each names the entry (a path
/// relative to the tree's root) or the host path.
#[derive(Debug, thiserror::Error)]
pub enum HostFsError {
    /// The entry's path (`..`, absolute) or a symlink on the way leads out of the root.
    #[error(
        "'{entry}' leads outside its folder (a '..', an absolute path or a symlink pointing out)"
    )]
    Escape {
        /// The entry as named, relative to the root.
        entry: String,
    },
    /// The entry does not exist.
    #[error("'{entry}' does not exist")]
    NotFound {
        /// The entry as named.
        entry: String,
    },
    /// The entry is larger than the caller accepts.
    #[error("'{entry}' is larger than {limit} bytes")]
    TooLarge {
        /// The entry as named.
        entry: String,
        /// The limit, bytes.
        limit: u64,
    },
    /// An archive could not be read, or holds an entry type that is not allowed.
    #[error("archive: {0}")]
    Archive(String),
    /// A host path is not beneath any folder the server was started with.
    #[error("'{path}' does not exist or is not beneath a folder the server allows ({allowed}); an operator adds one with `slipway serve --local-catalog-root DIR`")]
    NotAllowed {
        /// The path as given.
        path: String,
        /// The allowed folders, comma-separated, or "none are configured".
        allowed: String,
    },
    /// Another I/O failure on the entry.
    #[error("'{entry}': {source}")]
    Io {
        /// The entry as named.
        entry: String,
        /// The error.
        source: std::io::Error,
    },
}

impl HostFsError {
    fn of(entry: &str, e: std::io::Error) -> HostFsError {
        let entry = entry.to_string();
        match e.kind() {
            // cap-std reports every escape attempt as PermissionDenied ("a
            // path led outside of the filesystem"); the server runs as root,
            // so an ordinary EACCES beneath a tree it made is not expected.
            std::io::ErrorKind::PermissionDenied => HostFsError::Escape { entry },
            std::io::ErrorKind::NotFound => HostFsError::NotFound { entry },
            _ => HostFsError::Io { entry, source: e },
        }
    }
}

/// Checks that `rel` is a relative path with no `..`, `/` prefix or NUL;
/// `.` components and repeated `/` are dropped.
///
/// Errors: [`HostFsError::Escape`] naming `rel`.
pub fn relative(rel: &str) -> Result<PathBuf, HostFsError> {
    let escape = || HostFsError::Escape {
        entry: rel.to_string(),
    };
    if rel.contains('\0') {
        return Err(escape());
    }
    let mut out = PathBuf::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(escape())
            }
        }
    }
    Ok(out)
}

/// A folder on the host whose content is not trusted; every path is
/// resolved beneath it (see the module docs).
#[derive(Debug)]
pub struct Tree {
    dir: Dir,
    root: PathBuf,
}

impl Tree {
    /// Opens an existing folder. The folder itself is the trust boundary:
    /// `root` is the server's own path and is followed as given.
    ///
    /// Errors: [`HostFsError::NotFound`] / [`HostFsError::Io`] naming `root`.
    pub fn open(root: &Path) -> Result<Tree, HostFsError> {
        let dir = Dir::open_ambient_dir(root, cap_std::ambient_authority())
            .map_err(|e| HostFsError::of(&root.display().to_string(), e))?;
        Ok(Tree {
            dir,
            root: root.to_path_buf(),
        })
    }

    /// Makes every entry of the tree, its root included, owned by user and
    /// group `id`: a task run's `/workspace` and secret volumes handed to
    /// the run's user namespace (`slipway_core::isolation::UserNamespace`),
    /// so its steps may write where the server wrote. Symlinks are re-owned
    /// themselves (`AT_SYMLINK_NOFOLLOW`), never their targets, and never
    /// descended into; every change is made relative to an open folder.
    ///
    /// Errors: [`HostFsError::Io`] naming the entry that could not be
    /// re-owned or read.
    pub fn hand_over(&self, id: u32) -> Result<(), HostFsError> {
        use rustix::fs::{chownat, AtFlags, Gid, Uid};
        let (uid, gid) = (Some(Uid::from_raw(id)), Some(Gid::from_raw(id)));
        // The root is open as `O_PATH` (cap-std), which `fchown` refuses.
        chownat(&self.dir, "", uid, gid, AtFlags::EMPTY_PATH)
            .map_err(|e| HostFsError::of(".", e.into()))?;
        self.walk(|dir, entry, rel| {
            chownat(
                dir,
                entry.file_name().as_os_str(),
                uid,
                gid,
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| HostFsError::of(rel, e.into()))?;
            Ok(true)
        })
    }

    /// Creates `root` (and its parents) when missing, then opens it.
    ///
    /// Errors: as [`Tree::open`].
    pub fn create(root: &Path) -> Result<Tree, HostFsError> {
        std::fs::create_dir_all(root)
            .map_err(|e| HostFsError::of(&root.display().to_string(), e))?;
        Tree::open(root)
    }

    /// The root's host path (for messages and for handing the folder to a
    /// container engine, never for opening entries).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The sub-folder `rel` as a tree of its own.
    ///
    /// Errors: [`HostFsError::Escape`], [`HostFsError::NotFound`] naming `rel`.
    pub fn subtree(&self, rel: &str) -> Result<Tree, HostFsError> {
        let p = relative(rel)?;
        if p.as_os_str().is_empty() {
            return Tree::open(&self.root);
        }
        let dir = self.dir.open_dir(&p).map_err(|e| HostFsError::of(rel, e))?;
        Ok(Tree {
            dir,
            root: self.root.join(p),
        })
    }

    /// Reads the file `rel`, at most `limit` bytes.
    ///
    /// Errors: [`HostFsError::Escape`], [`HostFsError::NotFound`],
    /// [`HostFsError::TooLarge`], [`HostFsError::Io`] naming `rel`.
    pub fn read(&self, rel: &str, limit: u64) -> Result<Vec<u8>, HostFsError> {
        let p = relative(rel)?;
        let file = self.dir.open(&p).map_err(|e| HostFsError::of(rel, e))?;
        let meta = file.metadata().map_err(|e| HostFsError::of(rel, e))?;
        if !meta.is_file() {
            return Err(HostFsError::Io {
                entry: rel.to_string(),
                source: std::io::Error::other("not a regular file"),
            });
        }
        let mut out = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| HostFsError::of(rel, e))?;
        if out.len() as u64 > limit {
            return Err(HostFsError::TooLarge {
                entry: rel.to_string(),
                limit,
            });
        }
        Ok(out)
    }

    /// Reads the file `rel` as UTF-8 text (invalid sequences replaced), at
    /// most `limit` bytes.
    ///
    /// Errors: as [`Tree::read`].
    pub fn read_to_string(&self, rel: &str, limit: u64) -> Result<String, HostFsError> {
        Ok(String::from_utf8_lossy(&self.read(rel, limit)?).into_owned())
    }

    /// Whether `rel` exists (following in-tree symlinks); an escaping path is `false`.
    pub fn exists(&self, rel: &str) -> bool {
        relative(rel).is_ok_and(|p| self.dir.exists(p))
    }

    /// Whether `rel` is a folder (following in-tree symlinks); an escaping path is `false`.
    pub fn is_dir(&self, rel: &str) -> bool {
        relative(rel).is_ok_and(|p| p.as_os_str().is_empty() || self.dir.is_dir(p))
    }

    /// Whether `rel` is a regular file (following in-tree symlinks); an escaping path is `false`.
    pub fn is_file(&self, rel: &str) -> bool {
        relative(rel).is_ok_and(|p| self.dir.metadata(p).is_ok_and(|m| m.is_file()))
    }

    /// Creates the folder `rel` and its parents.
    ///
    /// Errors: [`HostFsError::Escape`] / [`HostFsError::Io`] naming `rel`.
    pub fn create_dir_all(&self, rel: &str) -> Result<(), HostFsError> {
        let p = relative(rel)?;
        if p.as_os_str().is_empty() {
            return Ok(());
        }
        self.dir
            .create_dir_all(&p)
            .map_err(|e| HostFsError::of(rel, e))
    }

    /// Writes `bytes` to `rel` with `mode` (permission bits), creating its
    /// parent folders. The file is written under a temporary name beside
    /// it and renamed over `rel`, so a reader never sees half a file and an
    /// existing symlink at `rel` is replaced, not followed.
    ///
    /// Errors: [`HostFsError::Escape`] / [`HostFsError::Io`] naming `rel`.
    pub fn write(&self, rel: &str, bytes: &[u8], mode: u32) -> Result<(), HostFsError> {
        use std::io::Write;
        let p = relative(rel)?;
        let Some(name) = p.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            return Err(HostFsError::Escape {
                entry: rel.to_string(),
            });
        };
        let parent = p.parent().unwrap_or(Path::new(""));
        self.parent_dirs(parent, rel)?;
        let tmp = parent.join(format!(".{name}.slipway-{}", std::process::id()));
        let mut f = self
            .dir
            .open_with(&tmp, OpenOptions::new().write(true).create_new(true))
            .map_err(|e| HostFsError::of(rel, e))?;
        let done = f
            .write_all(bytes)
            .and_then(|_| f.set_permissions(Permissions::from_mode(mode)))
            .and_then(|_| self.dir.rename(&tmp, &self.dir, &p));
        if let Err(e) = done {
            let _ = self.dir.remove_file(&tmp);
            return Err(HostFsError::of(rel, e));
        }
        Ok(())
    }

    /// Creates `parent` (relative, checked) for the entry `entry`. When that
    /// fails because a symlink on the way leads out, the error says so
    /// rather than "file exists".
    fn parent_dirs(&self, parent: &Path, entry: &str) -> Result<(), HostFsError> {
        if parent.as_os_str().is_empty() {
            return Ok(());
        }
        self.dir
            .create_dir_all(parent)
            .map_err(|e| match self.dir.metadata(parent) {
                Err(m) if m.kind() == std::io::ErrorKind::PermissionDenied => HostFsError::Escape {
                    entry: entry.to_string(),
                },
                _ => HostFsError::of(entry, e),
            })
    }

    /// Removes the file or symlink `rel` (not what a symlink points at);
    /// a missing entry is not an error.
    ///
    /// Errors: [`HostFsError::Escape`] / [`HostFsError::Io`] naming `rel`.
    pub fn remove_file(&self, rel: &str) -> Result<(), HostFsError> {
        let p = relative(rel)?;
        match self.dir.remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(HostFsError::of(rel, e)),
        }
    }

    /// Whether an entry named `rel` exists, not following a symlink in its
    /// last part (a dangling or escaping symlink exists).
    pub fn entry_exists(&self, rel: &str) -> bool {
        relative(rel).is_ok_and(|p| self.dir.symlink_metadata(p).is_ok())
    }

    /// Renames `from` to `to` inside the tree (symlinks are moved, not followed).
    ///
    /// Errors: [`HostFsError::Escape`] / [`HostFsError::Io`] naming `from`.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), HostFsError> {
        let (f, t) = (relative(from)?, relative(to)?);
        self.dir
            .rename(&f, &self.dir, &t)
            .map_err(|e| HostFsError::of(from, e))
    }

    /// Creates a symlink `link` whose content is `target` as given (it is
    /// resolved only by whoever later opens it — inside the image, for a
    /// VM image root).
    ///
    /// Errors: [`HostFsError::Escape`] / [`HostFsError::Io`] naming `link`.
    pub fn symlink(&self, target: &str, link: &str) -> Result<(), HostFsError> {
        let l = relative(link)?;
        let parent = l.parent().unwrap_or(Path::new("")).to_path_buf();
        self.parent_dirs(&parent, link)?;
        self.dir
            .symlink_contents(target, &l)
            .map_err(|e| HostFsError::of(link, e))
    }

    /// Removes the folder `rel` and everything in it (a symlink there is
    /// removed, not followed); a missing entry is not an error.
    ///
    /// Errors: [`HostFsError::Escape`] / [`HostFsError::Io`] naming `rel`.
    pub fn remove_all(&self, rel: &str) -> Result<(), HostFsError> {
        let p = relative(rel)?;
        match self.dir.symlink_metadata(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(HostFsError::of(rel, e)),
            Ok(m) if m.is_dir() => self
                .dir
                .remove_dir_all(&p)
                .map_err(|e| HostFsError::of(rel, e)),
            Ok(_) => self.remove_file(rel),
        }
    }

    /// The names in the folder `rel`, sorted; a missing folder is empty.
    ///
    /// Errors: [`HostFsError::Escape`] / [`HostFsError::Io`] naming `rel`.
    pub fn list(&self, rel: &str) -> Result<Vec<String>, HostFsError> {
        let p = relative(rel)?;
        let entries = match self.dir.read_dir(if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &p
        }) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(HostFsError::of(rel, e)),
            Ok(r) => r,
        };
        let mut names = entries
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| HostFsError::of(rel, e))?;
        names.sort();
        Ok(names)
    }

    /// Visits every entry beneath the root (not the root itself), a folder
    /// before its content, in name order within a folder, as
    /// `visit(folder, entry, rel)` (`rel` is `/`-separated from the root).
    /// A folder is descended into when `visit` answers `true`; a symlink
    /// never is, whatever it points at.
    ///
    /// Errors: the first error of `visit`, or [`HostFsError::Io`] naming a
    /// folder that could not be read.
    fn walk(
        &self,
        mut visit: impl FnMut(&Dir, &cap_std::fs::DirEntry, &str) -> Result<bool, HostFsError>,
    ) -> Result<(), HostFsError> {
        let mut stack: Vec<(String, Dir)> = vec![(
            String::new(),
            self.dir.try_clone().map_err(|e| HostFsError::of(".", e))?,
        )];
        while let Some((rel_dir, dir)) = stack.pop() {
            let io = |e: std::io::Error| {
                HostFsError::of(if rel_dir.is_empty() { "." } else { &rel_dir }, e)
            };
            let mut entries = dir
                .entries()
                .map_err(io)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(io)?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let name = entry.file_name();
                let rel = if rel_dir.is_empty() {
                    name.to_string_lossy().into_owned()
                } else {
                    format!("{rel_dir}/{}", name.to_string_lossy())
                };
                let descend = visit(&dir, &entry, &rel)?;
                let io = |e: std::io::Error| HostFsError::of(&rel, e);
                if descend && entry.file_type().map_err(io)?.is_dir() {
                    stack.push((rel.clone(), dir.open_dir(&name).map_err(io)?));
                }
            }
        }
        Ok(())
    }

    /// Tars the tree (uncompressed, entries sorted by name within each
    /// folder): folders, regular files, and symlinks stored as links (never
    /// followed, whatever they point at). `keep(rel, is_dir)` decides per
    /// entry (`rel` is `/`-separated); a folder left out is not descended.
    ///
    /// Errors: [`HostFsError::Io`] naming the entry.
    pub fn tar(&self, keep: impl Fn(&str, bool) -> bool) -> Result<Vec<u8>, HostFsError> {
        let mut builder = tar::Builder::new(Vec::new());
        self.walk(|dir, entry, rel| {
            let name = entry.file_name();
            let io = |e: std::io::Error| HostFsError::of(rel, e);
            let ft = entry.file_type().map_err(io)?;
            if !keep(rel, ft.is_dir()) {
                return Ok(false);
            }
            let meta = dir.symlink_metadata(&name).map_err(io)?;
            let mut h = tar::Header::new_gnu();
            h.set_mode(meta.permissions().mode() & 0o7777);
            h.set_mtime(
                meta.modified()
                    .ok()
                    .and_then(|t| t.into_std().duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs()),
            );
            if ft.is_dir() {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                builder
                    .append_data(&mut h, format!("{rel}/"), std::io::empty())
                    .map_err(io)?;
            } else if ft.is_symlink() {
                let target = dir.read_link_contents(&name).map_err(io)?;
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                builder.append_link(&mut h, rel, target).map_err(io)?;
            } else if ft.is_file() {
                let f = dir.open(&name).map_err(io)?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(meta.len());
                builder
                    .append_data(&mut h, rel, f.take(meta.len()))
                    .map_err(io)?;
            }
            Ok(true)
        })?;
        builder.into_inner().map_err(|e| HostFsError::of(".", e))
    }

    /// Unpacks a tar (gzip'd or not, detected by its magic) into the tree.
    /// Folders, regular files, symlinks (their target stored as given: it is
    /// never followed by a later entry) and hard links to earlier entries are
    /// created; entries of other types (devices, FIFOs) are skipped. A later
    /// entry replaces an earlier one of the same name.
    ///
    /// Errors: [`HostFsError::Escape`] for an entry whose path or parent
    /// leads out (naming it), [`HostFsError::Archive`] for a malformed
    /// archive, [`HostFsError::Io`].
    pub fn untar(&self, bytes: &[u8]) -> Result<(), HostFsError> {
        let reader: Box<dyn Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::GzDecoder::new(bytes))
        } else {
            Box::new(bytes)
        };
        let mut archive = tar::Archive::new(reader);
        let entries = archive
            .entries()
            .map_err(|e| HostFsError::Archive(format!("not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| HostFsError::Archive(e.to_string()))?;
            let name = entry
                .path()
                .map_err(|e| HostFsError::Archive(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            let rel = relative(&name)?;
            if rel.as_os_str().is_empty() {
                continue;
            }
            let parent = rel.parent().unwrap_or(Path::new(""));
            self.parent_dirs(parent, &name)?;
            let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                self.dir
                    .create_dir_all(&rel)
                    .map_err(|e| HostFsError::of(&name, e))?;
                continue;
            }
            // Whatever was at this name (a file, or a symlink a previous
            // entry planted) goes first, so nothing is written through it.
            if self.dir.symlink_metadata(&rel).is_ok_and(|m| !m.is_dir()) {
                self.dir
                    .remove_file(&rel)
                    .map_err(|e| HostFsError::of(&name, e))?;
            }
            if kind.is_symlink() {
                let target = entry
                    .link_name()
                    .map_err(|e| HostFsError::Archive(e.to_string()))?
                    .ok_or_else(|| HostFsError::Archive(format!("symlink '{name}' has no target")))?
                    .into_owned();
                self.dir
                    .symlink_contents(target, &rel)
                    .map_err(|e| HostFsError::of(&name, e))?;
            } else if kind.is_hard_link() {
                let target = entry
                    .link_name()
                    .map_err(|e| HostFsError::Archive(e.to_string()))?
                    .ok_or_else(|| {
                        HostFsError::Archive(format!("hard link '{name}' has no target"))
                    })?
                    .to_string_lossy()
                    .into_owned();
                let target = relative(&target)?;
                self.dir
                    .hard_link(&target, &self.dir, &rel)
                    .map_err(|e| HostFsError::of(&name, e))?;
            } else if kind.is_file() || kind == tar::EntryType::Continuous {
                let mut f = self
                    .dir
                    .open_with(&rel, OpenOptions::new().write(true).create_new(true))
                    .map_err(|e| HostFsError::of(&name, e))?;
                std::io::copy(&mut entry, &mut f).map_err(|e| HostFsError::of(&name, e))?;
                f.set_permissions(Permissions::from_mode(mode))
                    .map_err(|e| HostFsError::of(&name, e))?;
            }
        }
        Ok(())
    }
}

/// A scratch path (file or folder) the server made, removed when dropped
/// (clones, key files).
#[derive(Debug)]
pub struct TempPath(pub PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The host folders users may name (`local` catalogs, `file://` git URLs):
/// canonical paths, given by the operator at start.
#[derive(Debug, Clone, Default)]
pub struct LocalRoots(Vec<PathBuf>);

impl LocalRoots {
    /// Canonicalizes each folder.
    ///
    /// Errors: [`HostFsError::NotFound`] / [`HostFsError::Io`] naming a folder that cannot be resolved.
    pub fn new(dirs: &[PathBuf]) -> Result<LocalRoots, HostFsError> {
        dirs.iter()
            .map(|d| {
                d.canonicalize()
                    .map_err(|e| HostFsError::of(&d.display().to_string(), e))
            })
            .collect::<Result<_, _>>()
            .map(LocalRoots)
    }

    /// No folder allowed (the default: local sources are refused).
    pub fn none() -> LocalRoots {
        LocalRoots(Vec::new())
    }

    /// The canonical form of `path` when it is an absolute path beneath one
    /// of the roots after resolving every symlink.
    ///
    /// Errors: [`HostFsError::NotAllowed`] naming `path` and the roots
    /// (also for a relative or missing path).
    pub fn resolve(&self, path: &str) -> Result<PathBuf, HostFsError> {
        let refused = || HostFsError::NotAllowed {
            path: path.to_string(),
            allowed: if self.0.is_empty() {
                "none are configured".to_string()
            } else {
                self.0
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        };
        let p = Path::new(path);
        if !p.is_absolute() || self.0.is_empty() {
            return Err(refused());
        }
        let canonical = p.canonicalize().map_err(|_| refused())?;
        if self.0.iter().any(|r| canonical.starts_with(r)) {
            Ok(canonical)
        } else {
            Err(refused())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            match link {
                Some(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, name, target).unwrap();
                }
                None => {
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, name, *data).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn a_symlink_entry_never_carries_a_later_write_out_of_the_tree() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let tree = Tree::open(root.path()).unwrap();
        let bytes = tar_with(&[
            ("d", Some(outside.path().to_str().unwrap()), b""),
            ("d/x", None, b"planted"),
        ]);
        let err = tree.untar(&bytes).unwrap_err();
        assert!(
            matches!(&err, HostFsError::Escape { entry } if entry == "d/x"),
            "{err}"
        );
        assert!(!outside.path().join("x").exists());
        // The same through write().
        let err = tree.write("d/y", b"planted", 0o644).unwrap_err();
        assert!(matches!(err, HostFsError::Escape { .. }), "{err}");
        assert!(!outside.path().join("y").exists());
    }

    #[test]
    fn reads_refuse_symlinks_out_and_follow_symlinks_in() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host file").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("real.yaml"), "ok").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("acb.yaml"))
            .unwrap();
        std::os::unix::fs::symlink("real.yaml", root.path().join("inner.yaml")).unwrap();
        let tree = Tree::open(root.path()).unwrap();
        assert!(matches!(
            tree.read("acb.yaml", 100).unwrap_err(),
            HostFsError::Escape { .. }
        ));
        assert!(matches!(
            tree.read("../x", 100).unwrap_err(),
            HostFsError::Escape { .. }
        ));
        assert_eq!(tree.read("inner.yaml", 100).unwrap(), b"ok");
        assert!(matches!(
            tree.read("real.yaml", 1).unwrap_err(),
            HostFsError::TooLarge { limit: 1, .. }
        ));
        assert!(!tree.exists("acb.yaml"));
    }

    #[test]
    fn write_replaces_a_planted_symlink_instead_of_following_it() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("target"), "host").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("target"), root.path().join("f")).unwrap();
        let tree = Tree::open(root.path()).unwrap();
        tree.write("f", b"mine", 0o600).unwrap();
        assert_eq!(
            std::fs::read(outside.path().join("target")).unwrap(),
            b"host"
        );
        assert_eq!(std::fs::read(root.path().join("f")).unwrap(), b"mine");
    }

    #[test]
    fn local_roots_allow_only_paths_beneath_them() {
        let allowed = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir(allowed.path().join("repo")).unwrap();
        std::os::unix::fs::symlink(other.path(), allowed.path().join("link")).unwrap();
        let roots = LocalRoots::new(&[allowed.path().to_path_buf()]).unwrap();
        assert!(roots
            .resolve(allowed.path().join("repo").to_str().unwrap())
            .is_ok());
        for bad in [
            other.path().to_str().unwrap().to_string(),
            allowed.path().join("link").display().to_string(),
            allowed.path().join("repo/../..").display().to_string(),
            "relative/path".to_string(),
        ] {
            assert!(
                matches!(roots.resolve(&bad), Err(HostFsError::NotAllowed { .. })),
                "{bad}"
            );
        }
        assert!(LocalRoots::none()
            .resolve(allowed.path().to_str().unwrap())
            .is_err());
    }

    #[test]
    fn hand_over_reowns_the_tree_but_never_a_symlink_target() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, "host").unwrap();
        let root = tmp.path().join("ws");
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::write(root.join("sub/deeper/f"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), root.join("sub/up")).unwrap();
        Tree::open(&root).unwrap().hand_over(0xC000_0000).unwrap();
        for p in ["", "sub", "sub/deeper", "sub/deeper/f", "link", "sub/up"] {
            let m = std::fs::symlink_metadata(root.join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (0xC000_0000, 0xC000_0000), "{p}");
        }
        let host = std::fs::metadata(&outside).unwrap();
        assert_ne!(host.uid(), 0xC000_0000, "a symlink's target was re-owned");
        assert_ne!(std::fs::metadata(tmp.path()).unwrap().uid(), 0xC000_0000);
    }
}
