//! Catalogs: fetch a source, discover environment definitions, validate them
//! and store a snapshot.
//!
//! Contract: reference `ade.md` §4.2. Every folder under the catalog path that
//! holds `environment.yaml`, `manifest.yaml` or `manifest.yml` is one
//! definition; the files at and below it are its content (zipped, with unix
//! modes, as `definitions/<sha256>.zip`). Nothing above the folder can be
//! referenced. Two definitions with one name are both rejected
//! (`DuplicateEnvironmentName`); a broken manifest is reported with
//! `ParseError` and never stops the sync of the others.
//!
//! A sync is a snapshot of one commit, written in one transaction; a failed
//! sync keeps the previous snapshot; two syncs of one catalog never overlap.

mod discover;
mod source;

use serde_json::{json, Value};
use slipway_store::{CatalogSource, DefinitionRecord, Store, StoreError};
use thiserror::Error;

pub use discover::{discover, DiscoveredCatalog, DiscoveredDefinition};
pub use source::{fetch, FetchedSource};

/// Errors of catalog operations.
#[derive(Debug, Error)]
pub enum CatalogError {
    /// The catalog is not registered.
    #[error("catalog '{0}' not found")]
    NotFound(String),
    /// A sync of this catalog is already running.
    #[error("catalog '{0}' is already syncing")]
    SyncInProgress(String),
    /// Fetching the source failed (git error, missing folder…).
    #[error("{0}")]
    Source(String),
    /// Local I/O failure.
    #[error("catalog I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Result of a successful sync: ADE `lastSyncStats` and the sync error details.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncOutcome {
    /// Commit (git) or `local-<digest>` synced.
    pub commit: String,
    /// `{added, updated, unchanged, removed, validationErrors, synchronizationErrors}`.
    pub stats: Value,
    /// `{operationError, conflicts[{path,name}], errors[{path, errorDetails[{code,message}]}]}`.
    pub errors: Value,
}

/// Syncs catalog `name`: fetch, discover, validate, store content blobs and
/// replace the definitions in one transaction. `work_dir` holds temporary clones.
///
/// Errors: [`CatalogError::SyncInProgress`] if another sync runs; on any
/// other failure the catalog is marked `Failed` with an `operationError` and
/// the previous snapshot keeps serving.
pub async fn sync_catalog(
    store: &Store,
    name: &str,
    work_dir: &std::path::Path,
) -> Result<SyncOutcome, CatalogError> {
    let catalog = store
        .get_catalog(name)
        .await?
        .ok_or_else(|| CatalogError::NotFound(name.to_string()))?;
    if !store.begin_catalog_sync(name).await? {
        return Err(CatalogError::SyncInProgress(name.to_string()));
    }
    match run_sync(store, name, &catalog.source, work_dir).await {
        Ok(outcome) => Ok(outcome),
        Err(e) => {
            let details = json!({
                "operationError": {"code": "SyncFailed", "message": e.to_string()},
                "conflicts": [],
                "errors": []
            });
            store.fail_catalog_sync(name, &details).await?;
            Err(e)
        }
    }
}

async fn run_sync(
    store: &Store,
    name: &str,
    src: &CatalogSource,
    work_dir: &std::path::Path,
) -> Result<SyncOutcome, CatalogError> {
    let src = src.clone();
    let work = work_dir.to_path_buf();
    let found = tokio::task::spawn_blocking(
        move || -> Result<(DiscoveredCatalog, String), CatalogError> {
            let fetched = fetch(&src, &work)?;
            let discovered = discover(&fetched.root)?;
            let commit = fetched.commit.unwrap_or_else(|| {
                let mut all: Vec<&str> = discovered
                    .definitions
                    .iter()
                    .map(|d| d.digest.as_str())
                    .collect();
                all.sort();
                format!(
                    "local-{}",
                    &discover::sha256_hex(all.join(",").as_bytes())[..12]
                )
            });
            Ok((discovered, commit))
        },
    )
    .await
    .map_err(|e| CatalogError::Source(format!("sync task failed: {e}")))??;
    let (discovered, commit) = found;

    let previous = store.list_definitions(Some(name)).await?;
    let mut records = Vec::new();
    let (mut added, mut updated, mut unchanged) = (0, 0, 0);
    for d in &discovered.definitions {
        let key = Store::definition_key(&d.digest);
        if !store.blobs.exists(&key).await? {
            store.blobs.put(&key, &d.content).await?;
        }
        match previous.iter().find(|p| p.name == d.manifest.name) {
            None => added += 1,
            Some(p)
                if p.content_digest == d.digest
                    && p.manifest == d.manifest
                    && p.folder == d.folder =>
            {
                unchanged += 1
            }
            Some(_) => updated += 1,
        }
        records.push(DefinitionRecord {
            catalog: name.to_string(),
            name: d.manifest.name.clone(),
            folder: d.folder.clone(),
            manifest: d.manifest.clone(),
            content_digest: d.digest.clone(),
            commit: Some(commit.clone()),
        });
    }
    let removed = previous
        .iter()
        .filter(|p| !records.iter().any(|r| r.name == p.name))
        .count();
    let stats = json!({
        "added": added,
        "updated": updated,
        "unchanged": unchanged,
        "removed": removed,
        "validationErrors": discovered.errors.len() + discovered.conflicts.len(),
        "synchronizationErrors": 0,
    });
    let errors = json!({
        "operationError": Value::Null,
        "conflicts": discovered.conflicts.iter().map(|(path, n)| json!({"path": path, "name": n})).collect::<Vec<_>>(),
        "errors": discovered.errors.iter().map(|(path, code, msg)| json!({"path": path, "errorDetails": [{"code": code, "message": msg}]})).collect::<Vec<_>>(),
    });
    store
        .commit_catalog_sync(name, &commit, &records, &stats, &errors)
        .await?;
    Ok(SyncOutcome {
        commit,
        stats,
        errors,
    })
}
