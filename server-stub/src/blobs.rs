//! Encrypted blob storage (the "cloud" of BPDS): ciphertexts addressed by their SHA-256,
//! behind an object-store interface so S3-compatible storage can replace the file system.
//!
//! Access: the uploader (a registered party, by a signed claim) owns a blob. Anyone else
//! fetches it only with their own signed AccessLog transaction naming a live grant for it;
//! the node checks the transaction as the chain would, serves the blob, and commits the
//! transaction, so every served fetch is on the ledger.

use anyhow::{Context, Result};
use emrshare_core::ledger::state::hex32;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where blobs live. Writes are durable when `put` returns.
pub trait BlobStore: Send + Sync {
    fn put(&self, hash: &[u8; 32], bytes: &[u8]) -> Result<()>;
    fn get(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>>;
}

/// Blobs as files `blobs/<first 2 hex>/<hex>`, written to a temporary file, fsynced, renamed.
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    pub fn new(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root)?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    fn path(&self, hash: &[u8; 32]) -> PathBuf {
        let hex = hex32::to_hex(hash);
        self.root.join(&hex[..2]).join(hex)
    }
}

impl BlobStore for FsBlobStore {
    fn put(&self, hash: &[u8; 32], bytes: &[u8]) -> Result<()> {
        let path = self.path(hash);
        if path.exists() {
            return Ok(());
        }
        let dir = path.parent().expect("blob paths have a parent");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{}.tmp", std::process::id()));
        let mut file = std::fs::File::create(&tmp).context("cannot create blob file")?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    fn get(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(hash)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
