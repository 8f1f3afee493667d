//! Encrypted blob storage (the "cloud" of BPDS): ciphertexts addressed by their SHA-256, as
//! files `blobs/<first 2 hex>/<hex>`.
//!
//! Access: the uploader (a registered party, by a signed claim) owns a blob. Anyone else
//! fetches it only with their own signed AccessLog transaction naming a live grant for it;
//! the node admits the transaction as the chain would, serves the blob, and commits the
//! transaction, so every served fetch is on the ledger (see `Node::get_blob`).
//!
//! A stored blob always hashes to its address: an upload streams into a temporary file of
//! its own (never shared with a concurrent upload), is hashed as it arrives, fsynced, and
//! only then renamed to its address; a read checks the hash again before serving.

use anyhow::{Context, Result};
use emrshare_core::{ContentHasher, Hash};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

pub struct FsBlobStore {
    root: PathBuf,
}

/// Why a finished upload is not stored.
#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    #[error("the bytes do not hash to the blob's address")]
    Mismatch,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// An upload in progress: its own temporary file (removed if the upload is dropped).
pub struct BlobUpload {
    file: tokio::fs::File,
    temp: tempfile::TempPath,
    hasher: ContentHasher,
    written: u64,
    hash: Hash,
    path: PathBuf,
}

impl FsBlobStore {
    pub fn new(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create the blob folder {}", root.display()))?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    fn path(&self, hash: &Hash) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join(&hex[..2]).join(hex)
    }

    /// Starts an upload of the blob `hash`.
    pub fn begin(&self, hash: &Hash) -> std::io::Result<BlobUpload> {
        let path = self.path(hash);
        let dir = path.parent().expect("blob paths have a parent");
        std::fs::create_dir_all(dir)?;
        let temp = tempfile::Builder::new()
            .prefix(".upload-")
            .suffix(".tmp")
            .tempfile_in(dir)?;
        let (file, temp) = temp.into_parts();
        Ok(BlobUpload {
            file: tokio::fs::File::from_std(file),
            temp,
            hasher: ContentHasher::new(),
            written: 0,
            hash: *hash,
            path,
        })
    }

    /// The blob's bytes, checked against its address (a file damaged on disk is an error,
    /// never served).
    pub fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(hash)) {
            Ok(bytes) if emrshare_core::content_hash(&bytes) == *hash => Ok(Some(bytes)),
            Ok(_) => anyhow::bail!(
                "blob {} on disk does not hash to its address",
                hash.to_hex()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl BlobUpload {
    pub fn written(&self) -> u64 {
        self.written
    }

    pub async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.hasher.update(chunk);
        self.file.write_all(chunk).await?;
        self.written += chunk.len() as u64;
        Ok(())
    }

    /// Checks the hash, makes the bytes durable and gives them their address (replacing any
    /// file there: it can only hold the same bytes, or damaged ones).
    pub async fn finish(mut self) -> Result<(), FinishError> {
        if self.hasher.finish() != self.hash {
            return Err(FinishError::Mismatch);
        }
        self.file.flush().await?;
        self.file.sync_all().await?;
        drop(self.file);
        self.temp
            .persist(&self.path)
            .map_err(|e| FinishError::Io(e.error))?;
        let dir = self.path.parent().expect("blob paths have a parent");
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    /// 32 concurrent uploads into one folder: each lands whole under its own address (the
    /// last round shared one temporary name per folder and stored mixed bytes).
    #[test]
    fn concurrent_uploads_never_mix_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(FsBlobStore::new(dir.path()).unwrap());
        let blobs: Vec<Vec<u8>> = (0..32u8)
            .map(|i| (0..200_000u32).map(|j| (j as u8) ^ i).collect())
            .collect();
        runtime().block_on(async {
            let uploads = blobs.iter().map(|blob| {
                let store = std::sync::Arc::clone(&store);
                let blob = blob.clone();
                async move {
                    let hash = emrshare_core::content_hash(&blob);
                    let mut upload = store.begin(&hash).unwrap();
                    for chunk in blob.chunks(7_000) {
                        upload.write(chunk).await.unwrap();
                        tokio::task::yield_now().await;
                    }
                    upload.finish().await.unwrap();
                }
            });
            futures_util::future::join_all(uploads).await;
        });
        for blob in &blobs {
            let hash = emrshare_core::content_hash(blob);
            assert_eq!(store.get(&hash).unwrap().as_deref(), Some(blob.as_slice()));
        }
        // No temporary file is left behind.
        let leftovers = walk(dir.path())
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".tmp"))
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn bytes_that_do_not_hash_to_the_address_are_never_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::new(dir.path()).unwrap();
        let hash = emrshare_core::content_hash(b"the real bytes");
        runtime().block_on(async {
            let mut upload = store.begin(&hash).unwrap();
            upload.write(b"other bytes").await.unwrap();
            assert!(matches!(upload.finish().await, Err(FinishError::Mismatch)));
            // A dropped upload leaves nothing either.
            let mut upload = store.begin(&hash).unwrap();
            upload.write(b"the real").await.unwrap();
        });
        assert_eq!(store.get(&hash).unwrap(), None);
        assert!(walk(dir.path()).is_empty());
        // A damaged file is refused on read, and a good upload replaces it.
        let path = store.path(&hash);
        std::fs::write(&path, b"damaged").unwrap();
        assert!(store.get(&hash).is_err());
        runtime().block_on(async {
            let mut upload = store.begin(&hash).unwrap();
            upload.write(b"the real bytes").await.unwrap();
            upload.finish().await.unwrap();
        });
        assert_eq!(store.get(&hash).unwrap().unwrap(), b"the real bytes");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }
}
