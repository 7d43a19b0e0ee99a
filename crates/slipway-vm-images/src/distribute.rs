//! Distributors: file outputs (raw, VHD, qcow2), managed images and
//! gallery versions in the image store.

use std::path::{Path, PathBuf};

use crate::{blocking, disk, host_path, BuildError, ImageService, Resolved};
use serde_json::{json, Value};
use slipway_core::images::ids::{self, ImageRef};
use slipway_core::images::template::{Distributor, Versioning};
use slipway_store::VmImageRecord;

impl ImageService {
    pub(crate) fn file_output(
        &self,
        run_id: &str,
        uri: &str,
        name: &str,
        ext: &str,
    ) -> Result<PathBuf, BuildError> {
        if uri.is_empty() {
            return Ok(self
                .cfg
                .dir
                .join("outputs")
                .join(run_id)
                .join(format!("{name}.{ext}")));
        }
        host_path(&self.cfg.local_roots, uri, false)?.ok_or_else(|| {
            BuildError::Template(format!("uri '{uri}' is not supported: expected an absolute path or file:// URL on the Slipway host, or none"))
        })
    }

    pub(crate) async fn distribute(
        &self,
        run_id: &str,
        d: &Distributor,
        disk: &Path,
        source: &Resolved,
    ) -> Result<Value, BuildError> {
        let src = disk.to_path_buf();
        match d {
            Distributor::Vhd {
                uri,
                run_output_name,
                ..
            }
            | Distributor::Raw {
                uri,
                run_output_name,
            } => {
                let vhd = matches!(d, Distributor::Vhd { .. });
                let dst = self.file_output(
                    run_id,
                    uri,
                    run_output_name,
                    if vhd { "vhd" } else { "raw" },
                )?;
                let d2 = dst.clone();
                let w = blocking(move || disk::sparse_copy(&src, &d2, vhd)).await?;
                Ok(
                    json!({"artifactUri": dst.to_string_lossy(), "sha256": w.sha256, "size": w.size, "provisioningState": "Succeeded"}),
                )
            }
            Distributor::Qcow2 {
                uri,
                run_output_name,
            } => {
                let dst = self.file_output(run_id, uri, run_output_name, "qcow2")?;
                let d2 = dst.clone();
                let w = blocking(move || {
                    if let Some(dir) = d2.parent() {
                        std::fs::create_dir_all(dir)
                            .map_err(BuildError::io(format!("creating {}", dir.display())))?;
                    }
                    disk::convert(&src, &d2, "qcow2")?;
                    disk::hash_file(&d2)
                })
                .await?;
                Ok(
                    json!({"artifactUri": dst.to_string_lossy(), "sha256": w.sha256, "size": w.size, "provisioningState": "Succeeded"}),
                )
            }
            Distributor::ManagedImage {
                image_id,
                artifact_tags,
                ..
            } => {
                let r = ids::parse_image_id(image_id)?;
                let ImageRef::Managed { name } = &r else {
                    return Err(BuildError::Template(format!(
                        "imageId '{image_id}' is a gallery image: use a SharedImage distributor"
                    )));
                };
                let rec = self
                    .store_image(
                        run_id,
                        disk,
                        r.to_string(),
                        None,
                        name,
                        None,
                        false,
                        source,
                        json!(artifact_tags),
                    )
                    .await?;
                Ok(
                    json!({"artifactId": rec.id, "sha256": rec.sha256, "size": rec.size, "provisioningState": "Succeeded"}),
                )
            }
            Distributor::SharedImage {
                gallery_image_id,
                versioning,
                exclude_from_latest,
                artifact_tags,
                ..
            } => {
                let ImageRef::Gallery {
                    gallery,
                    definition,
                    version,
                } = ids::parse_image_id(gallery_image_id)?
                else {
                    return Err(BuildError::Template(format!("galleryImageId '{gallery_image_id}' is not a gallery image (…/galleries/<g>/images/<def>)")));
                };
                for _attempt in 0..3 {
                    let v = match (&version, versioning) {
                        (Some(v), _) if v == "latest" => {
                            return Err(BuildError::Template(
                                "galleryImageId: a version to create cannot be 'latest'".into(),
                            ))
                        }
                        (Some(v), _) => v.clone(),
                        (None, Some(Versioning::Source)) => source.version.clone().ok_or_else(|| BuildError::Template(
                            "versioning Source needs a PlatformImage or SharedImageVersion source with an x.y.z version".into(),
                        ))?,
                        (None, latest) => {
                            let major = match latest {
                                Some(Versioning::Latest { major }) => *major,
                                _ => -1,
                            };
                            let have = self
                                .store
                                .gallery_versions(&gallery, &definition)
                                .await?;
                            ids::next_latest_version(have.iter().filter_map(|i| i.version.as_deref()), major)
                        }
                    };
                    let id = ImageRef::Gallery {
                        gallery: gallery.clone(),
                        definition: definition.clone(),
                        version: Some(v.clone()),
                    }
                    .to_string();
                    match self
                        .store_image(
                            run_id,
                            disk,
                            id,
                            Some(&gallery),
                            &definition,
                            Some(&v),
                            *exclude_from_latest,
                            source,
                            json!(artifact_tags),
                        )
                        .await
                    {
                        Ok(rec) => {
                            return Ok(
                                json!({"artifactId": rec.id, "sha256": rec.sha256, "size": rec.size, "provisioningState": "Succeeded"}),
                            )
                        }
                        Err(BuildError::ImageExists { .. })
                            if version.is_none()
                                && !matches!(versioning, Some(Versioning::Source)) =>
                        {
                            continue
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(BuildError::Builder(format!(
                    "could not pick a free version of '{gallery}/{definition}' (concurrent runs)"
                )))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn store_image(
        &self,
        run_id: &str,
        disk: &Path,
        id: String,
        gallery: Option<&str>,
        definition: &str,
        version: Option<&str>,
        exclude_from_latest: bool,
        source: &Resolved,
        tags: Value,
    ) -> Result<VmImageRecord, BuildError> {
        if self.store.get_vm_image(&id).await?.is_some() {
            return Err(BuildError::ImageExists { id });
        }
        let d = disk.to_path_buf();
        let firmware = blocking(move || disk::firmware(&d)).await?;
        let generation = firmware.hyper_v_generation();
        if let Some(g) = gallery {
            // As Azure's galleries: one image definition, one generation.
            let have = self.store.gallery_versions(g, definition).await?;
            if let Some(other) = have.iter().find(|i| i.hyper_v_generation != generation) {
                return Err(BuildError::Template(format!(
                    "galleryImageId: image definition '{g}/{definition}' holds hyperVGeneration {} images (version {}), and this build's disk is {generation} ({}); distribute it to an image definition of generation {generation}",
                    other.hyper_v_generation,
                    other.version.as_deref().unwrap_or("?"),
                    match firmware {
                        disk::Firmware::Bios => "BIOS boot",
                        disk::Firmware::Uefi => "UEFI boot",
                    }
                )));
            }
        }
        let dir = self
            .cfg
            .dir
            .join("store")
            .join(uuid::Uuid::new_v4().simple().to_string());
        let path = dir.join("disk.raw");
        let (src, p2) = (disk.to_path_buf(), path.clone());
        let w = blocking(move || disk::sparse_copy(&src, &p2, false)).await?;
        let template = self
            .store
            .get_image_run(run_id)
            .await
            .ok()
            .flatten()
            .map(|r| r.template);
        let rec = VmImageRecord {
            id: id.clone(),
            gallery: gallery.map(str::to_string),
            definition: definition.to_string(),
            version: version.map(str::to_string),
            exclude_from_latest,
            path: path.to_string_lossy().into_owned(),
            sha256: w.sha256,
            size: w.size as i64,
            source_version: source.version.clone(),
            template,
            run_id: Some(run_id.to_string()),
            tags,
            create_time: chrono::Utc::now().to_rfc3339(),
            hyper_v_generation: generation.to_string(),
        };
        if let Err(e) = self.store.insert_vm_image(&rec).await {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(match e {
                slipway_store::StoreError::Conflict { .. } => BuildError::ImageExists { id },
                e => BuildError::Store(e),
            });
        }
        Ok(rec)
    }
}
