//! Local blob store: a directory of files addressed by `/`-separated keys.
//!
//! Writes are atomic (temp file in `<root>/.tmp`, fsync, rename), so a
//! reader or a crash never sees a half-written blob. Logs use
//! [`BlobStore::append`], which appends whole chunks with `O_APPEND`.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use crate::StoreError;

/// A blob store rooted at a directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

/// Checks a key: `/`-separated segments of `[A-Za-z0-9._-]`, no `.`/`..` segments.
fn check_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidKey(key.to_string()))
    }
}

impl BlobStore {
    /// Opens (creating if needed) a blob store at `root`.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        tokio::fs::create_dir_all(root.join(".tmp")).await?;
        Ok(BlobStore { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// Writes `bytes` at `key` atomically, replacing any previous blob.
    pub async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let dest = self.path(key)?;
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let tmp = self
            .root
            .join(".tmp")
            .join(uuid::Uuid::new_v4().to_string());
        let mut f = tokio::fs::File::create(&tmp).await?;
        f.write_all(bytes).await?;
        f.sync_all().await?;
        drop(f);
        if let Err(e) = tokio::fs::rename(&tmp, &dest).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
        Ok(())
    }

    /// Appends `bytes` to the blob at `key`, creating it if absent.
    pub async fn append(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let dest = self.path(key)?;
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&dest)
            .await?;
        f.write_all(bytes).await?;
        f.flush().await?;
        Ok(())
    }

    /// The file that holds the blob at `key` (it may not exist), for
    /// readers that seek or stream, like [`crate::read_log_chunk`].
    ///
    /// Errors: [`StoreError::InvalidKey`].
    pub fn file_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        self.path(key)
    }

    /// Reads the blob at `key`; `None` when absent.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a blob exists at `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        Ok(tokio::fs::try_exists(self.path(key)?).await?)
    }

    /// Names of the blobs directly under the folder `prefix`, sorted; empty when absent.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let dir = self.path(prefix)?;
        let mut out = Vec::new();
        let mut rd = match tokio::fs::read_dir(&dir).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        while let Some(entry) = rd.next_entry().await? {
            let meta = entry.metadata().await?;
            if meta.is_file() {
                out.push((entry.file_name().to_string_lossy().into_owned(), meta.len()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes the blob or folder at `key` (recursively); absent is fine.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let p = self.path(key)?;
        let res = match tokio::fs::metadata(&p).await {
            Ok(m) if m.is_dir() => tokio::fs::remove_dir_all(&p).await,
            Ok(_) => tokio::fs::remove_file(&p).await,
            Err(e) => Err(e),
        };
        match res {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_append_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).await.unwrap();
        s.put("env/a/files/storage.zip", b"one").await.unwrap();
        s.put("env/a/files/storage.zip", b"two").await.unwrap();
        assert_eq!(
            s.get("env/a/files/storage.zip").await.unwrap().unwrap(),
            b"two"
        );
        s.append("ops/x.log", b"a\n").await.unwrap();
        s.append("ops/x.log", b"b\n").await.unwrap();
        assert_eq!(s.get("ops/x.log").await.unwrap().unwrap(), b"a\nb\n");
        assert_eq!(
            s.list("env/a/files").await.unwrap(),
            vec![("storage.zip".to_string(), 3)]
        );
        s.delete("env/a").await.unwrap();
        assert!(s.get("env/a/files/storage.zip").await.unwrap().is_none());
        assert!(s.list("env/a/files").await.unwrap().is_empty());
        // No temp files left behind.
        assert_eq!(
            std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn rejects_escaping_keys() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).await.unwrap();
        for key in ["../x", "a/../../x", "/abs", "a//b", "a b"] {
            assert!(
                matches!(s.put(key, b"x").await, Err(StoreError::InvalidKey(_))),
                "{key}"
            );
        }
    }
}
