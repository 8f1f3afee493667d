//! Durable storage (redb, crash-safe: a committed write transaction survives `kill -9`).
//! Certified blocks by height; the mempool of acknowledged transactions; what became of each
//! acknowledged transaction (committed at a height, or failed and why); the auditor's votes
//! (one header per height, recorded before the vote is sent).

use anyhow::Result;
use emrshare_core::ledger::block::{CertifiedBlock, Proposal};
use emrshare_core::ledger::wire::TxStatus;
use redb::{Database, ReadableTable, TableDefinition};
use std::path::Path;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const MEMPOOL: TableDefinition<&[u8], &str> = TableDefinition::new("mempool");
const LOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("locks");
const BLOB_OWNERS: TableDefinition<&[u8], &str> = TableDefinition::new("blob_owners");
/// Transaction ID -> JSON `TxStatus` (committed or failed; pending ones are in MEMPOOL).
const TX_STATUS: TableDefinition<&[u8], &str> = TableDefinition::new("tx_status");

pub struct Store {
    db: Database,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let db = Database::create(dir.join("node.redb"))?;
        let tx = db.begin_write()?;
        tx.open_table(BLOCKS)?;
        tx.open_table(MEMPOOL)?;
        tx.open_table(LOCKS)?;
        tx.open_table(BLOB_OWNERS)?;
        tx.open_table(TX_STATUS)?;
        tx.commit()?;
        Ok(Self { db })
    }

    /// Stores a block, marks its transactions (`committed`) committed, and drops them and
    /// the `failed` ones (with the reason) from the mempool, atomically.
    pub fn put_block(
        &self,
        block: &CertifiedBlock,
        committed: &[[u8; 32]],
        failed: &[([u8; 32], String)],
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
                mempool.remove(id.as_slice())?;
                status.insert(id.as_slice(), committed_status.as_str())?;
            }
            for (id, reason) in failed {
                mempool.remove(id.as_slice())?;
                let failed = serde_json::to_string(&TxStatus::Failed {
                    reason: reason.clone(),
                })?;
                status.insert(id.as_slice(), failed.as_str())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Drops transactions that can never apply from the mempool, recording why.
    pub fn fail_txs(&self, failed: &[([u8; 32], String)]) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut mempool = tx.open_table(MEMPOOL)?;
            let mut status = tx.open_table(TX_STATUS)?;
            for (id, reason) in failed {
                mempool.remove(id.as_slice())?;
                let failed = serde_json::to_string(&TxStatus::Failed {
                    reason: reason.clone(),
                })?;
                status.insert(id.as_slice(), failed.as_str())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// What became of a transaction that left the mempool (`None`: pending, or never seen).
    pub fn tx_status(&self, id: &[u8; 32]) -> Result<Option<TxStatus>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(TX_STATUS)?;
        Ok(match table.get(id.as_slice())? {
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
    pub fn add_txs(&self, txs: &[([u8; 32], String)]) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(MEMPOOL)?;
            for (id, jws) in txs {
                table.insert(id.as_slice(), jws.as_str())?;
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
    pub fn claim_blob(&self, hash: &[u8; 32], owner: &str) -> Result<String> {
        let tx = self.db.begin_write()?;
        let current = {
            let mut table = tx.open_table(BLOB_OWNERS)?;
            let existing = table.get(hash.as_slice())?.map(|v| v.value().to_owned());
            match existing {
                Some(existing) => existing,
                None => {
                    table.insert(hash.as_slice(), owner)?;
                    owner.to_owned()
                }
            }
        };
        tx.commit()?;
        Ok(current)
    }

    pub fn blob_owner(&self, hash: &[u8; 32]) -> Result<Option<String>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(BLOB_OWNERS)?;
        Ok(table.get(hash.as_slice())?.map(|v| v.value().to_owned()))
    }

    /// The proposal this auditor is locked on at `height`, if any.
    pub fn lock(&self, height: u64) -> Result<Option<Proposal>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(LOCKS)?;
        Ok(match table.get(height)? {
            Some(value) => Some(serde_json::from_slice(value.value())?),
            None => None,
        })
    }

    /// Locks on `proposal` at its height unless already locked at its round or a later one;
    /// returns the lock in force. A lock of an earlier round is replaced: the caller has
    /// checked the proposal's release of that round. Committed before the vote leaves the
    /// node, so a restarted auditor never signs two headers of one height and round.
    pub fn lock_or_get(&self, proposal: &Proposal) -> Result<Proposal> {
        let tx = self.db.begin_write()?;
        let locked = {
            let mut table = tx.open_table(LOCKS)?;
            let existing = table
                .get(proposal.header.height)?
                .map(|v| v.value().to_vec());
            let existing: Option<Proposal> = match existing {
                Some(bytes) => Some(serde_json::from_slice(&bytes)?),
                None => None,
            };
            match existing {
                Some(lock) if lock.header.round >= proposal.header.round => lock,
                _ => {
                    table.insert(
                        proposal.header.height,
                        serde_json::to_vec(proposal)?.as_slice(),
                    )?;
                    proposal.clone()
                }
            }
        };
        tx.commit()?;
        Ok(locked)
    }
}
