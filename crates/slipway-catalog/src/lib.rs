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
mod registration;
mod schedule;
mod source;

use std::collections::HashMap;
use std::path::Path;

use futures_util::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use slipway_core::isolation::Ipv4Cidr;
use slipway_store::{CatalogSource, DefinitionRecord, SecretKey, SecretScope, Store, StoreError};
use thiserror::Error;

pub use discover::{
    discover, sha256_hex, DefinitionError, DiscoveredCatalog, DiscoveredDefinition, DUPLICATE_NAME,
    INVALID_REFERENCE, TEMPLATE_PATH_INVALID,
};
pub use registration::{register_catalog, Registered, RegistrationError};
pub use schedule::{SyncScheduler, SyncTrigger};
pub use slipway_git::{GitCredential, LocalRoots};
pub use source::{check_source, fetch, remote_head, FetchedSource};

/// Where temporary clones and key files go by default: a tmpfs
/// (`/dev/shm/slipway-<digest of data_dir>`) when the machine has one — a
/// checkout writes every file of the catalog, which costs seconds on a slow
/// disk and nothing in memory, and key files then never touch a disk — else
/// `<data_dir>/work`.
pub fn default_scratch_dir(data_dir: &Path) -> std::path::PathBuf {
    let shm = Path::new("/dev/shm");
    let writable =
        shm.is_dir() && std::fs::metadata(shm).is_ok_and(|m| !m.permissions().readonly());
    if writable {
        let abs = data_dir
            .canonicalize()
            .unwrap_or_else(|_| data_dir.to_path_buf());
        let digest = sha256_hex(abs.to_string_lossy().as_bytes());
        shm.join(format!("slipway-{}", &digest[..12]))
    } else {
        data_dir.join("work")
    }
}

/// Removes temporary clones and key files a killed process left in `scratch`.
pub fn clean_scratch(scratch: &Path) -> std::io::Result<()> {
    let Ok(entries) = std::fs::read_dir(scratch) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("git-") {
            std::fs::remove_dir_all(e.path())?;
        } else if name.starts_with("key-") {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// Errors of catalog operations.
#[derive(Debug, Error)]
pub enum CatalogError {
    /// The catalog is not registered.
    #[error("catalog '{0}' not found")]
    NotFound(String),
    /// A sync of this catalog is already running.
    #[error("catalog '{0}' is already syncing")]
    SyncInProgress(String),
    /// The source was reached but is not usable (missing folder or branch, unknown kind…).
    #[error("{0}")]
    Source(String),
    /// The source refused the credentials (or asked for some).
    #[error("The source control credentials could not be validated successfully. {0}")]
    Unauthorized(String),
    /// The source could not be reached.
    #[error("{0}")]
    Unreachable(String),
    /// The catalog's secret is missing, of the wrong kind, or cannot be opened.
    #[error("{0}")]
    Secret(String),
    /// Local I/O failure.
    #[error("catalog I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CatalogError {
    /// ADE `operationError.code` for a failed sync.
    pub fn code(&self) -> &'static str {
        match self {
            CatalogError::Unauthorized(_) | CatalogError::Secret(_) => "Conflict",
            CatalogError::Unreachable(_) => "SourceUnreachable",
            CatalogError::Source(_) => "InvalidSource",
            _ => "SyncFailed",
        }
    }

    /// Whether the source was reached (ADE `connectionState` Connected).
    fn connected(&self) -> bool {
        matches!(self, CatalogError::Source(_))
    }
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
    /// Whether the source was unchanged since the last snapshot and nothing was fetched.
    pub skipped_fetch: bool,
}

/// Syncs catalog `name`: fetch, discover, validate, store content blobs and
/// replace the definitions in one transaction. `work_dir` holds temporary
/// clones and key files; `key` opens the catalog's secret; `roots` are the
/// host folders `local` catalogs and `file://` URLs may name; `networks`
/// the blocked networks a git URL's host may still resolve into (`serve
/// --fetch-allowed-cidr`).
///
/// A git catalog whose branch still points at the last synced commit (and
/// whose source is unchanged) is not fetched again: the sync reports every
/// definition unchanged. Unchanged definition folders (same git tree) are not
/// re-read or re-zipped.
///
/// Errors: [`CatalogError::SyncInProgress`] if another sync runs; on any
/// other failure the catalog is marked `Failed` with an ADE `operationError`
/// and the previous snapshot keeps serving.
pub async fn sync_catalog(
    store: &Store,
    name: &str,
    work_dir: &Path,
    key: &SecretKey,
    roots: &LocalRoots,
    networks: &[Ipv4Cidr],
) -> Result<SyncOutcome, CatalogError> {
    let catalog = store
        .get_catalog(name)
        .await?
        .ok_or_else(|| CatalogError::NotFound(name.to_string()))?;
    if !store.begin_catalog_sync(name).await? {
        return Err(CatalogError::SyncInProgress(name.to_string()));
    }
    let started = std::time::Instant::now();
    let result = run_sync(store, &catalog, work_dir, key, roots, networks).await;
    tracing::info!(
        catalog = name,
        elapsed_ms = started.elapsed().as_millis() as u64,
        ok = result.is_ok(),
        "catalog sync"
    );
    match result {
        Ok(outcome) => Ok(outcome),
        Err(e) => {
            let details = json!({
                "operationError": {"code": e.code(), "message": e.to_string()},
                "conflicts": [],
                "errors": []
            });
            store
                .fail_catalog_sync(name, &details, e.connected())
                .await?;
            Err(e)
        }
    }
}

/// The credential a catalog names, looked up in the catalog's own scope:
/// a project catalog sees only its project's secrets, a dev-center catalog
/// only the dev center's.
async fn credential(
    store: &Store,
    catalog: &slipway_store::Catalog,
    key: &SecretKey,
) -> Result<Option<GitCredential>, CatalogError> {
    let Some(secret) = catalog.spec.secret.as_deref() else {
        return Ok(None);
    };
    let scope = SecretScope::of(catalog.spec.project.as_deref());
    let opened = store
        .secret_value(&scope, secret, key)
        .await
        .map_err(|e| CatalogError::Secret(e.to_string()))?
        .ok_or_else(|| {
            CatalogError::Secret(format!(
                "secret '{secret}' named by the catalog's secretIdentifier does not exist in {scope}"
            ))
        })?;
    GitCredential::from_secret(&opened.kind, opened.value, opened.hosts)
        .map(Some)
        .map_err(|e| CatalogError::Secret(e.to_string()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CatalogError> + Send + 'static,
) -> Result<T, CatalogError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CatalogError::Source(format!("sync task failed: {e}")))?
}

async fn run_sync(
    store: &Store,
    catalog: &slipway_store::Catalog,
    work_dir: &Path,
    key: &SecretKey,
    roots: &LocalRoots,
    networks: &[Ipv4Cidr],
) -> Result<SyncOutcome, CatalogError> {
    let name = catalog.name.as_str();
    let src: CatalogSource = catalog.spec.source.clone();
    let cred = credential(store, catalog, key).await?;
    let work = work_dir.to_path_buf();
    let previous = store.list_definitions(Some(name)).await?;

    if src.kind == "git" {
        let (s, c, w) = (src.clone(), cred.clone(), work.clone());
        let (r, n) = (roots.clone(), networks.to_vec());
        let head = blocking(move || remote_head(&s, c.as_ref(), &r, &n, &w)).await?;
        let same_source = catalog.synced_source.as_ref() == Some(&src);
        if same_source && catalog.last_commit.as_deref() == Some(head.as_str()) {
            let valid = previous.iter().filter(|d| d.is_valid()).count();
            let errors = catalog
                .last_sync_errors
                .clone()
                .unwrap_or_else(|| json!({}));
            let stats = json!({
                "added": 0, "updated": 0, "unchanged": valid, "removed": 0,
                "validationErrors": count_errors(&errors),
                "synchronizationErrors": 0,
            });
            store.commit_unchanged_catalog_sync(name, &stats).await?;
            return Ok(SyncOutcome {
                commit: head,
                stats,
                errors,
                skipped_fetch: true,
            });
        }
    }

    let prev = previous.clone();
    let (roots, networks) = (roots.clone(), networks.to_vec());
    let (discovered, commit) = blocking(move || {
        let fetched = fetch(&src, cred.as_ref(), &roots, &networks, &work)?;
        let discovered = discover(&fetched.root, &fetched.trees, &prev)?;
        let commit = fetched.commit.clone().unwrap_or_else(|| {
            let mut all: Vec<&str> = discovered
                .definitions
                .iter()
                .map(|d| d.digest.as_str())
                .collect();
            all.sort();
            format!("local-{}", &sha256_hex(all.join(",").as_bytes())[..12])
        });
        Ok((discovered, commit))
    })
    .await?;

    let prev_by_name: HashMap<&str, &DefinitionRecord> = previous
        .iter()
        .filter(|p| p.is_valid())
        .map(|p| (p.name.as_str(), p))
        .collect();
    let mut records = Vec::new();
    let (mut added, mut updated, mut unchanged) = (0, 0, 0);
    // Content blobs first (content-addressed, so writing one twice is harmless),
    // several at once: each put is an fsync'd atomic write.
    let puts: Vec<(String, Vec<u8>)> = discovered
        .definitions
        .iter()
        .filter_map(|d| {
            d.content
                .as_ref()
                .map(|c| (Store::definition_key(&d.digest), c.clone()))
        })
        .collect();
    futures_util::stream::iter(puts)
        .map(|(key, content)| put_blob(store.clone(), key, content))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    for d in &discovered.definitions {
        match prev_by_name.get(d.manifest.name.as_str()) {
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
            validation_status: "Succeeded".into(),
            error_details: Vec::new(),
            warnings: d.warnings.clone(),
            source_tree: d.source_tree.clone(),
        });
    }
    let removed = prev_by_name
        .keys()
        .filter(|n| !records.iter().any(|r| r.name == **n))
        .count();
    // Rejected definitions with a usable, otherwise unused name keep their
    // error details under that name (ADE per-definition error details).
    for e in &discovered.errors {
        let Some(n) = e.name.as_deref() else { continue };
        if records.iter().any(|r| r.name == n)
            || discovered
                .errors
                .iter()
                .filter(|o| o.name.as_deref() == Some(n))
                .count()
                > 1
        {
            continue;
        }
        records.push(DefinitionRecord {
            catalog: name.to_string(),
            name: n.to_string(),
            folder: e.folder.clone(),
            manifest: slipway_core::EnvironmentDefinitionManifest {
                name: n.to_string(),
                version: None,
                summary: None,
                description: None,
                runner: None,
                template_path: String::new(),
                parameters: Vec::new(),
            },
            content_digest: String::new(),
            commit: Some(commit.clone()),
            validation_status: "Failed".into(),
            error_details: vec![json!({"code": e.code, "message": e.message})],
            warnings: Vec::new(),
            source_tree: None,
        });
    }
    let errors = json!({
        "operationError": Value::Null,
        "conflicts": discovered.conflicts.iter().map(|(path, n)| json!({"path": path, "name": n})).collect::<Vec<_>>(),
        "errors": discovered.errors.iter().map(|e| json!({"path": e.path, "errorDetails": [{"code": e.code, "message": e.message}]})).collect::<Vec<_>>(),
    });
    let stats = json!({
        "added": added,
        "updated": updated,
        "unchanged": unchanged,
        "removed": removed,
        "validationErrors": count_errors(&errors),
        "synchronizationErrors": 0,
    });
    store
        .commit_catalog_sync(
            name,
            &commit,
            &catalog.spec.source,
            &records,
            &stats,
            &errors,
        )
        .await?;
    Ok(SyncOutcome {
        commit,
        stats,
        errors,
        skipped_fetch: false,
    })
}

async fn put_blob(store: Store, key: String, content: Vec<u8>) -> Result<(), StoreError> {
    if !store.blobs.exists(&key).await? {
        store.blobs.put(&key, &content).await?;
    }
    Ok(())
}

/// Number of rejected definition files in ADE sync error details (conflicts + errors).
fn count_errors(details: &Value) -> usize {
    ["conflicts", "errors"]
        .iter()
        .map(|k| details[k].as_array().map_or(0, Vec::len))
        .sum()
}
