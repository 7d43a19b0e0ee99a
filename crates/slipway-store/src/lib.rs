//! Slipway persistence.
//!
//! [`Store`] = SQLite metadata (sqlx, embedded migrations in `migrations/`)
//! plus a [`BlobStore`] for per-environment files (`storage.zip`), outputs,
//! operation logs and definition content snapshots.
//!
//! Data directory layout (`<data>`): `slipway.db` (SQLite, WAL) and `blobs/`:
//! - `definitions/<sha256>.zip`: a definition folder's content, content-addressed;
//! - `environments/<env-id>/files/<name>`: files uploaded by `ade files upload`;
//! - `environments/<env-id>/outputs.json`: last uploaded outputs;
//! - `operations/<op-id>.log`: the operation log.
//!
//! Secrets (`secrets` table) are sealed with ChaCha20-Poly1305 under a
//! [`SecretKey`] the operator provides; only ciphertext reaches the disk.
//!
//! Invariants: every multi-row change is one transaction; state transitions of
//! operations are compare-and-set on the current status, so two schedulers can
//! never both start the same operation.

mod access;
mod blob;
mod catalogs;
mod environments;
mod image_tasks;
mod log;
mod projects;
mod records;
mod secrets;
mod vm_images;

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use thiserror::Error;

pub use access::{AuditEvent, AuditFilter, RoleAssignment, TokenMeta, TOKEN_PREFIX};
pub use blob::BlobStore;
pub use catalogs::*;
pub use environments::*;
pub use image_tasks::TaskRunRecord;
pub use log::{read_log_chunk, LogChunk, MAX_LOG_CHUNK};
pub use projects::*;
pub use secrets::{OpenedSecret, SecretKey, SecretScope};
pub use slipway_wire::catalogs::SecretMeta;
pub use vm_images::{ImageRunRecord, VmImageRecord};

/// Errors from the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Database failure.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Schema migration failure.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Filesystem failure.
    #[error("blob store I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A blob key with forbidden characters or segments.
    #[error("invalid blob key '{0}': expected '/'-separated segments of letters, digits, '.', '_' or '-'")]
    InvalidKey(String),
    /// A row already exists.
    #[error("{kind} '{name}' already exists")]
    Conflict {
        /// Resource kind.
        kind: &'static str,
        /// Resource name.
        name: String,
    },
    /// A secret could not be sealed or opened, or the key file is malformed.
    #[error("{0}")]
    Secret(String),
    /// A stored credential document no longer passes its checks.
    #[error(transparent)]
    Credential(#[from] slipway_core::credentials::CredentialError),
    /// The resource is still used by others (e.g. a type with environments).
    #[error("{0}")]
    InUse(String),
    /// A stored JSON column could not be decoded (data corruption).
    #[error("stored {what} is not valid: {message}")]
    Corrupt {
        /// Which column.
        what: &'static str,
        /// Decoder message.
        message: String,
    },
}

/// Metadata database plus blob store.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: SqlitePool,
    /// Blob store under `<data>/blobs`.
    pub blobs: BlobStore,
    /// Registry credentials the server made for itself (the embedded
    /// registry's account): in memory only, first in
    /// [`Store::registry_credentials`], never listed as secrets.
    builtin_registry:
        std::sync::Arc<std::sync::RwLock<Vec<slipway_core::credentials::RegistryCredential>>>,
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir` and applies migrations.
    pub async fn open(data_dir: &Path) -> Result<Store, StoreError> {
        tokio::fs::create_dir_all(data_dir).await?;
        let db = data_dir.join("slipway.db");
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", db.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let blobs = BlobStore::open(data_dir.join("blobs")).await?;
        Ok(Store {
            pool,
            blobs,
            builtin_registry: Default::default(),
        })
    }

    /// Begins a write transaction: `BEGIN IMMEDIATE` takes SQLite's write
    /// lock at once, waiting up to the busy timeout for another writer. A
    /// deferred transaction that reads first and then writes cannot wait:
    /// SQLite fails its upgrade with `SQLITE_BUSY` ("database is locked")
    /// when another connection wrote in between. Every transaction that
    /// writes goes through here.
    ///
    /// Errors: [`StoreError::Db`] when the lock is not had within the
    /// busy timeout (10 s).
    pub(crate) async fn write_tx(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Sets the registry credentials the server made for itself (replacing
    /// earlier ones); they are used like `registry` secrets, matched by host.
    pub fn set_builtin_registry_credentials(
        &self,
        credentials: Vec<slipway_core::credentials::RegistryCredential>,
    ) {
        *self
            .builtin_registry
            .write()
            .unwrap_or_else(|p| p.into_inner()) = credentials;
    }

    pub(crate) fn builtin_registry_credentials(
        &self,
    ) -> Vec<slipway_core::credentials::RegistryCredential> {
        self.builtin_registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Blob key prefix of everything an environment stores (files, outputs).
    pub fn environment_key(env_id: &str) -> String {
        format!("environments/{env_id}")
    }

    /// Blob key of an environment's uploaded file.
    pub fn file_key(env_id: &str, name: &str) -> String {
        format!("environments/{env_id}/files/{name}")
    }

    /// Blob key of an environment's outputs document.
    pub fn outputs_key(env_id: &str) -> String {
        format!("environments/{env_id}/outputs.json")
    }

    /// Blob key of an operation's log.
    pub fn log_key(op_id: &str) -> String {
        format!("operations/{op_id}.log")
    }

    /// Blob key of a definition content zip.
    pub fn definition_key(digest: &str) -> String {
        format!("definitions/{digest}.zip")
    }
}

/// Writes `bytes` to `path` readable by the owner only (mode 0600),
/// atomically: a unique temp file beside it, synced, then renamed over it.
/// Creates the parent folder.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Current UTC time as RFC 3339 with milliseconds (`2026-11-21T05:31:36.123Z`).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
