//! Folder archives.
//!
//! [`zip_folder`] makes a deterministic zip (same files → same bytes) and
//! [`unzip_into`] extracts one without letting an entry escape the target
//! folder. Used for catalog content snapshots and by the `ade` CLI
//! (`ade files upload --folder-path`, `--unzip`, definition download).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use zip::write::SimpleFileOptions;

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Zips the files at and below `folder` deterministically: sorted paths,
/// fixed timestamps, unix modes kept, entries named in `skip` left out. Symlinks are followed
/// only when they stay inside `folder`; one that leaves it or dangles is an
/// error of kind `InvalidData` naming the link.
pub fn zip_folder(folder: &Path, skip: &[&str]) -> std::io::Result<Vec<u8>> {
    let base = folder.canonicalize()?;
    let mut files = Vec::new();
    collect_files(&base, &base, skip, &mut files)?;
    files.sort();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for rel_path in files {
        let full = base.join(&rel_path);
        let meta = std::fs::metadata(&full)?;
        let opts = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(meta.permissions().mode() & 0o777);
        zip.start_file(rel_path.clone(), opts)
            .map_err(std::io::Error::other)?;
        zip.write_all(&std::fs::read(&full)?)?;
    }
    let cursor = zip.finish().map_err(std::io::Error::other)?;
    Ok(cursor.into_inner())
}

fn collect_files(
    base: &Path,
    dir: &Path,
    skip: &[&str],
    out: &mut Vec<String>,
) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let path = e.path();
        if skip.iter().any(|s| e.file_name() == *s) {
            continue;
        }
        let ft = e.file_type()?;
        if ft.is_symlink() {
            let target = path.canonicalize().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "symlink '{}' points to something that does not exist",
                        rel(base, &path)
                    ),
                )
            })?;
            if !target.starts_with(base) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "symlink '{}' points outside the definition folder",
                        rel(base, &path)
                    ),
                ));
            }
            if target.is_dir() {
                continue; // content is reached through its real path
            }
            out.push(rel(base, &path));
        } else if ft.is_dir() {
            collect_files(base, &path, skip, out)?;
        } else if ft.is_file() {
            out.push(rel(base, &path));
        }
    }
    Ok(())
}

/// Extracts `zip_bytes` into `dest` (created if needed), keeping unix modes.
/// Entries whose path would leave `dest` are an error, not a write.
pub fn unzip_into(zip_bytes: &[u8], dest: &Path) -> std::io::Result<()> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    std::fs::create_dir_all(dest)?;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let Some(rel_path) = entry.enclosed_name() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "zip entry '{}' would be written outside the target folder",
                    entry
                        .name()
                        .map_or_else(|e| format!("(unreadable name: {e})"), |n| n.into_owned())
                ),
            ));
        };
        let out = dest.join(rel_path);
        if entry.is_dir() {
            std::fs::create_dir_all(&out)?;
            continue;
        }
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut f = std::fs::File::create(&out)?;
        std::io::copy(&mut entry, &mut f)?;
        if let Some(mode) = entry.unix_mode() {
            std::fs::set_permissions(&out, std::fs::Permissions::from_mode(mode & 0o777))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_modes_and_is_deterministic() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("a/b")).unwrap();
        std::fs::write(src.path().join("a/b/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            src.path().join("a/b/run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(src.path().join("state.tfstate"), "{}").unwrap();
        std::fs::create_dir_all(src.path().join(".git")).unwrap();
        std::fs::write(src.path().join(".git/HEAD"), "x").unwrap();
        let one = zip_folder(src.path(), &[".git"]).unwrap();
        assert_eq!(one, zip_folder(src.path(), &[".git"]).unwrap());
        let dst = tempfile::tempdir().unwrap();
        unzip_into(&one, dst.path()).unwrap();
        let mode = std::fs::metadata(dst.path().join("a/b/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            std::fs::read_to_string(dst.path().join("state.tfstate")).unwrap(),
            "{}"
        );
        assert!(!dst.path().join(".git").exists());
    }

    #[test]
    fn refuses_entries_that_escape() {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.start_file("../evil", SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"x").unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        let dst = tempfile::tempdir().unwrap();
        assert!(unzip_into(&bytes, &dst.path().join("in")).is_err());
        assert!(!dst.path().join("evil").exists());
    }
}
