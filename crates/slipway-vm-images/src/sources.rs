//! Where a build starts and what it fetches: source images (platform,
//! managed, gallery, disk image), scripts and files over https or from
//! host paths beneath the local roots, checksums.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};
use slipway_core::images::ids::{self, ImageRef};
use slipway_core::images::template::Source;
use slipway_fetch::{Fetcher, MAX_IN_MEMORY_BYTES};
use slipway_store::VmImageRecord;

use crate::exec::RunLog;
use crate::{blocking, disk, upload_key, BuildError, ImageService, Resolved};
use slipway_hostfs::LocalRoots;

pub(crate) fn local_path(uri: &str) -> Option<PathBuf> {
    let p = uri.strip_prefix("file://").unwrap_or(uri);
    p.starts_with('/').then(|| PathBuf::from(p))
}

/// A host path a template names (`/abs` or `file:///abs`), confined to the
/// operator's `--local-catalog-root`s: `None` for other URIs; for
/// `existing` files the canonical path beneath a root, for outputs the
/// canonical parent folder beneath a root joined with the file name.
///
/// Errors: a message naming the uri and the allowed folders.
pub(crate) fn host_path(
    roots: &LocalRoots,
    uri: &str,
    existing: bool,
) -> Result<Option<PathBuf>, BuildError> {
    let Some(p) = local_path(uri) else {
        return Ok(None);
    };
    let refused = |e: slipway_hostfs::HostFsError| BuildError::Source(format!("uri '{uri}': {e}"));
    if existing {
        return roots
            .resolve(&p.to_string_lossy())
            .map(Some)
            .map_err(refused);
    }
    if !matches!(
        p.components().next_back(),
        Some(std::path::Component::Normal(_))
    ) {
        return Err(BuildError::Template(format!(
            "uri '{uri}' does not name a file"
        )));
    }
    // Folders that do not exist yet are made by the distributor: the
    // nearest existing ancestor must lie beneath a root, and the rest may
    // only name new folders (no `..`).
    let mut existing = p.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(std::path::Component::Normal(name))) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => {
                return Err(BuildError::Template(format!(
                    "uri '{uri}' does not name a file"
                )))
            }
        }
    }
    let mut out = roots
        .resolve(&existing.to_string_lossy())
        .map_err(refused)?;
    out.extend(rest.iter().rev());
    Ok(Some(out))
}

impl ImageService {
    pub(crate) async fn prepare_source(
        &self,
        source: &Source,
        disk: &Path,
        staging: &Path,
        log: &RunLog,
    ) -> Result<Resolved, BuildError> {
        let copy = |from: PathBuf, to: PathBuf| {
            blocking(move || {
                disk::run(
                    "cp",
                    &[
                        "--sparse=always",
                        "--reflink=auto",
                        &from.to_string_lossy(),
                        &to.to_string_lossy(),
                    ],
                )
                .map(|_| ())
            })
        };
        match source {
            Source::PlatformImage {
                publisher,
                offer,
                sku,
                version,
                ..
            } => {
                let cat = self.cfg.base_images.clone();
                let (p, o, s, v) = (
                    publisher.clone(),
                    offer.clone(),
                    sku.clone(),
                    version.clone(),
                );
                if cat.versions(&p, &o, &s)?.is_empty() {
                    log.out("slipway: building the base image with debootstrap (first use on this host)");
                }
                let base = blocking(move || cat.resolve(&p, &o, &s, &v)).await?;
                log.out(&format!(
                    "slipway: source {}:{}:{}:{} ({})",
                    base.publisher,
                    base.offer,
                    base.sku,
                    base.version,
                    base.path.display()
                ));
                copy(base.path.clone(), disk.to_path_buf()).await?;
                Ok(Resolved {
                    info: json!({"type": "PlatformImage", "publisher": base.publisher, "offer": base.offer, "sku": base.sku, "version": base.version}),
                    version: Some(base.version),
                })
            }
            Source::ManagedImage { image_id }
            | Source::SharedImageVersion {
                image_version_id: image_id,
            } => {
                let r = ids::parse_image_id(image_id)?;
                let img = self.find_image(&r).await?;
                log.out(&format!("slipway: source {}", img.id));
                copy(PathBuf::from(&img.path), disk.to_path_buf()).await?;
                let kind = if img.gallery.is_some() {
                    "SharedImageVersion"
                } else {
                    "ManagedImage"
                };
                Ok(Resolved {
                    info: json!({"type": kind, "imageId": img.id, "version": img.version}),
                    version: img.version.clone(),
                })
            }
            Source::DiskImage {
                uri,
                sha256_checksum,
            } => {
                let file = if let Some(p) = host_path(&self.cfg.local_roots, uri, true)? {
                    if !sha256_checksum.is_empty() {
                        let p2 = p.clone();
                        let w = blocking(move || disk::hash_file(&p2)).await?;
                        check_sha(uri, sha256_checksum, &w.sha256)?;
                    }
                    p
                } else if uri.starts_with("http://") || uri.starts_with("https://") {
                    let dst = staging.join("source.img");
                    let (u, d, want) = (uri.clone(), dst.clone(), sha256_checksum.clone());
                    let fetcher = self.cfg.fetcher.clone();
                    blocking(move || download(&fetcher, &u, &d, &want)).await?;
                    dst
                } else {
                    return Err(BuildError::Template(format!(
                        "uri '{uri}' is not supported: expected an absolute path, file://, http:// or https:// URL"
                    )));
                };
                let d = disk.to_path_buf();
                blocking(move || disk::convert(&file, &d, "raw")).await?;
                Ok(Resolved {
                    info: json!({"type": "DiskImage", "uri": uri}),
                    version: None,
                })
            }
        }
    }

    pub(crate) async fn find_image(&self, r: &ImageRef) -> Result<VmImageRecord, BuildError> {
        let id = match r {
            ImageRef::Gallery {
                gallery,
                definition,
                version: Some(v),
            } if v == "latest" => {
                let vs = self.store.gallery_versions(gallery, definition).await?;
                let latest = ids::latest_version(
                    vs.iter()
                        .filter_map(|i| i.version.as_deref().map(|v| (v, i.exclude_from_latest))),
                )
                .ok_or_else(|| BuildError::Source(format!("gallery image '{gallery}/{definition}' has no version that counts as latest")))?;
                ImageRef::Gallery {
                    gallery: gallery.clone(),
                    definition: definition.clone(),
                    version: Some(latest),
                }
                .to_string()
            }
            ImageRef::Gallery { version: None, .. } => {
                return Err(BuildError::Template(format!(
                    "image id '{r}' names no version: add /versions/<x.y.z> or /versions/latest"
                )))
            }
            other => other.to_string(),
        };
        self.store
            .get_vm_image(&id)
            .await?
            .ok_or_else(|| BuildError::Source(format!("image '{id}' is not in the image store")))
    }

    /// Fetches a `sourceUri`/`scriptUri`: `upload:<sha256>` (an artifact
    /// uploaded to this server), an absolute path or `file://` on this host,
    /// or `http(s)://`; checks `sha256Checksum` when given.
    pub(crate) async fn fetch(&self, uri: &str, sha: &str) -> Result<Vec<u8>, BuildError> {
        let bytes = if let Some(digest) = uri.strip_prefix("upload:") {
            if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(BuildError::Template(format!(
                    "'{uri}' is not upload:<64 hex digits>"
                )));
            }
            self.store
                .blobs
                .get(&upload_key(digest))
                .await
                .map_err(|e| BuildError::Source(format!("'{uri}': {e}")))?
                .ok_or_else(|| {
                    BuildError::Source(format!("'{uri}' was not uploaded to this server"))
                })?
        } else if let Some(p) = host_path(&self.cfg.local_roots, uri, true)? {
            tokio::fs::read(&p)
                .await
                .map_err(BuildError::io(format!("reading '{uri}'")))?
        } else if uri.starts_with("http://") || uri.starts_with("https://") {
            let (u, fetcher) = (uri.to_string(), self.cfg.fetcher.clone());
            blocking(move || {
                fetcher
                    .bytes(&u, FETCH_TIMEOUT, MAX_IN_MEMORY_BYTES)
                    .map_err(|e| BuildError::Source(e.to_string()))
            })
            .await?
        } else {
            return Err(BuildError::Template(format!(
                "'{uri}' is not supported: expected upload:<sha256>, an absolute path, file://, http:// or https://"
            )));
        };
        if !sha.is_empty() {
            check_sha(uri, sha, &hex::encode(Sha256::digest(&bytes)))?;
        }
        Ok(bytes)
    }
}

pub(crate) fn check_sha(uri: &str, want: &str, got: &str) -> Result<(), BuildError> {
    if want.eq_ignore_ascii_case(got) {
        Ok(())
    } else {
        Err(BuildError::Source(format!(
            "sha256Checksum of '{uri}' does not match: expected {want}, got {got}"
        )))
    }
}

/// Bound of one script or file GET (whole request).
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Bound of one source disk image GET (whole request).
pub(crate) const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Streams `uri` into `dst`, checking `want_sha` (when not empty) on the way.
pub(crate) fn download(
    fetcher: &Fetcher,
    uri: &str,
    dst: &Path,
    want_sha: &str,
) -> Result<(), BuildError> {
    let mut r = fetcher
        .open(uri, DOWNLOAD_TIMEOUT)
        .map_err(|e| BuildError::Source(e.to_string()))?;
    let mut f = std::fs::File::create(dst).map_err(BuildError::io(dst.display().to_string()))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut r, &mut buf)
            .map_err(|e| BuildError::Source(format!("GET '{uri}': {e}")))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        std::io::Write::write_all(&mut f, &buf[..n])
            .map_err(BuildError::io(dst.display().to_string()))?;
    }
    if !want_sha.is_empty() {
        check_sha(uri, want_sha, &hex::encode(hash.finalize()))?;
    }
    Ok(())
}
