//! Durable storage (redb, crash-safe: a committed write transaction survives `kill -9`).
//! Certified blocks by height; the mempool of acknowledged transactions; what became of each
//! acknowledged transaction (committed at a height, or failed and why); blob owners. The
//! consensus engine keeps its own write-ahead log (its locks and votes) beside it.

use anyhow::{Result, anyhow, bail};
use emrshare_core::Hash;
use emrshare_core::ledger::block::CertifiedBlock;
use emrshare_core::ledger::wire::TxStatus;
use redb::{Database, ReadableTable, TableDefinition};
use std::path::Path;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const MEMPOOL: TableDefinition<&[u8], &str> = TableDefinition::new("mempool");
const BLOB_OWNERS: TableDefinition<&[u8], &str> = TableDefinition::new("blob_owners");
/// Transaction ID -> JSON `TxStatus` (committed or failed; pending ones are in MEMPOOL).
const TX_STATUS: TableDefinition<&[u8], &str> = TableDefinition::new("tx_status");
/// What the store is: `genesis_hash`, the genesis its chain grows from.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub struct Store {
    db: Database,
}

/// What to do about a store that does not open.
const DAMAGED_HINT: &str = "restore it from a backup, or move it aside (with the consensus \
     folder beside it) to resync the chain from the peers";

fn permission_hint(dir: &Path) -> String {
    format!(
        "make {} and its files writable by the user running the node, or set data_dir to \
         another folder",
        dir.display()
    )
}

/// Why a file operation in the data dir failed, naming `path` and what to do.
fn io_error(what: &str, path: &Path, dir: &Path, e: &std::io::Error) -> anyhow::Error {
    use std::io::ErrorKind::{PermissionDenied, ReadOnlyFilesystem};
    match e.kind() {
        PermissionDenied | ReadOnlyFilesystem => {
            anyhow!("{what} {}: {e}: {}", path.display(), permission_hint(dir))
        }
        _ => anyhow!("{what} {}: {e}", path.display()),
    }
}

/// Opens (or creates) the redb file. redb refuses most damage with an error but panics on
/// some (a truncated file fails an assertion): both become one error naming the file. The
/// panic's own message is kept out of the log (opens are serialized while it is silenced).
fn open_database(path: &Path, dir: &Path) -> Result<Database> {
    static SILENCED: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let opened = {
        let _turn = SILENCED.lock().unwrap_or_else(|p| p.into_inner());
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let opened = std::panic::catch_unwind(|| Database::create(path));
        std::panic::set_hook(hook);
        opened
    };
    let damaged = |detail: String| {
        anyhow!(
            "store {} is damaged ({detail}): {DAMAGED_HINT}",
            path.display()
        )
    };
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err(anyhow!(
            "store {} is in use: is another node running with data_dir {}?",
            path.display(),
            dir.display()
        )),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
            if matches!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            Err(io_error("cannot open store", path, dir, &e))
        }
        Ok(Err(e)) => Err(damaged(e.to_string())),
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "redb panicked".into());
            Err(damaged(detail))
        }
    }
}

/// Moves transactions from the mempool to the failed ones, with the reason, in one write.
fn record_failed(
    mempool: &mut redb::Table<&[u8], &str>,
    status: &mut redb::Table<&[u8], &str>,
    failed: &[(Hash, String)],
) -> Result<()> {
    for (id, reason) in failed {
        mempool.remove(id.as_bytes().as_slice())?;
        let failed = serde_json::to_string(&TxStatus::Failed {
            reason: reason.clone(),
        })?;
        status.insert(id.as_bytes().as_slice(), failed.as_str())?;
    }
    Ok(())
}

impl Store {
    /// Opens the store in `dir` (created if need be). Every error names the file or folder
    /// and what to do about it.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| io_error("cannot create data dir", dir, dir, &e))?;
        // A read-only data dir is found now, not at the first write.
        let probe = dir.join(".write-test");
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| io_error("cannot write in data dir", dir, dir, &e))?;
        let path = dir.join("node.redb");
        let db = open_database(&path, dir)?;
        let tables = || -> Result<(), Box<redb::Error>> {
            let tx = db.begin_write().map_err(redb::Error::from)?;
            tx.open_table(BLOCKS).map_err(redb::Error::from)?;
            tx.open_table(MEMPOOL).map_err(redb::Error::from)?;
            tx.open_table(BLOB_OWNERS).map_err(redb::Error::from)?;
            tx.open_table(META).map_err(redb::Error::from)?;
            tx.open_table(TX_STATUS).map_err(redb::Error::from)?;
            tx.commit().map_err(redb::Error::from)?;
            Ok(())
        };
        tables().map_err(|e| {
            anyhow!(
                "store {} cannot be written ({e}): {DAMAGED_HINT}",
                path.display()
            )
        })?;
        Ok(Self { db })
    }

    /// Records `genesis_hash` as the genesis of this store's chain the first time; after
    /// that, refuses another one (the error names `genesis_file` and `data_dir`).
    pub fn check_genesis(
        &self,
        genesis_hash: &Hash,
        genesis_file: &Path,
        data_dir: &Path,
    ) -> Result<()> {
        let tx = self.db.begin_write()?;
        let recorded = {
            let mut meta = tx.open_table(META)?;
            let recorded = meta.get("genesis_hash")?.map(|v| v.value().to_vec());
            if recorded.is_none() {
                meta.insert("genesis_hash", genesis_hash.as_bytes().as_slice())?;
            }
            recorded
        };
        match recorded {
            Some(recorded) if recorded != genesis_hash.as_bytes() => {
                let recorded = emrshare_core::hash::to_hex(&recorded);
                bail!(
                    "genesis file {} (genesis {}) is not the genesis of the chain in {} \
                     (genesis {recorded}): put back the genesis file that chain was started \
                     with, or move {} aside to start this node anew from this genesis",
                    genesis_file.display(),
                    genesis_hash.to_hex(),
                    data_dir.display(),
                    data_dir.display()
                )
            }
            Some(_) => Ok(()),
            None => Ok(tx.commit()?),
        }
    }

    /// Stores a block, marks its transactions (`committed`) committed, and drops them and
    /// the `failed` ones (with the reason) from the mempool, atomically.
    pub fn put_block(
        &self,
        block: &CertifiedBlock,
        committed: &[Hash],
        failed: &[(Hash, String)],
    ) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut blocks = tx.open_table(BLOCKS)?;
            blocks.insert(block.header.height, serde_json::to_vec(block)?.as_slice())?;
            let mut mempool = tx.open_table(MEMPOOL)?;
            let mut status = tx.open_table(TX_STATUS)?;
            let height = block.header.height;
            let committed_status = serde_json::to_string(&TxStatus::Committed { height })?;
            for id in committed {
                mempool.remove(id.as_bytes().as_slice())?;
                status.insert(id.as_bytes().as_slice(), committed_status.as_str())?;
            }
            record_failed(&mut mempool, &mut status, failed)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Drops transactions that can never apply from the mempool, recording why.
    pub fn fail_txs(&self, failed: &[(Hash, String)]) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut mempool = tx.open_table(MEMPOOL)?;
            let mut status = tx.open_table(TX_STATUS)?;
            record_failed(&mut mempool, &mut status, failed)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// What became of a transaction that left the mempool (`None`: pending, or never seen).
    pub fn tx_status(&self, id: &Hash) -> Result<Option<TxStatus>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(TX_STATUS)?;
        Ok(match table.get(id.as_bytes().as_slice())? {
            Some(value) => Some(serde_json::from_str(value.value())?),
            None => None,
        })
    }

    pub fn blocks(&self) -> Result<Vec<CertifiedBlock>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(BLOCKS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            out.push(serde_json::from_slice(value.value())?);
        }
        Ok(out)
    }

    pub fn block(&self, height: u64) -> Result<Option<CertifiedBlock>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(BLOCKS)?;
        Ok(match table.get(height)? {
            Some(value) => Some(serde_json::from_slice(value.value())?),
            None => None,
        })
    }

    /// Records acknowledged transactions durably, in one commit (the acknowledgements follow
    /// it): many concurrent submissions share one fsync.
    pub fn add_txs(&self, txs: &[(Hash, String)]) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(MEMPOOL)?;
            for (id, jws) in txs {
                table.insert(id.as_bytes().as_slice(), jws.as_str())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The stored mempool (read once, at start: the node keeps its index in memory).
    pub fn mempool(&self) -> Result<Vec<String>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(MEMPOOL)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            out.push(entry?.1.value().to_owned());
        }
        Ok(out)
    }

    /// Records the owner of a blob unless it has one; returns the owner in force.
    pub fn claim_blob(&self, hash: &Hash, owner: &str) -> Result<String> {
        let tx = self.db.begin_write()?;
        let current = {
            let mut table = tx.open_table(BLOB_OWNERS)?;
            let existing = table
                .get(hash.as_bytes().as_slice())?
                .map(|v| v.value().to_owned());
            match existing {
                Some(existing) => existing,
                None => {
                    table.insert(hash.as_bytes().as_slice(), owner)?;
                    owner.to_owned()
                }
            }
        };
        tx.commit()?;
        Ok(current)
    }

    pub fn blob_owner(&self, hash: &Hash) -> Result<Option<String>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(BLOB_OWNERS)?;
        Ok(table
            .get(hash.as_bytes().as_slice())?
            .map(|v| v.value().to_owned()))
    }
}
