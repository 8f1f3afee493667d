//! The mempool: acknowledged transactions not yet in a block, indexed in memory by ID and by
//! sender and sequence number. The store keeps the same set on disk (nothing acknowledged is
//! lost on a crash); this index is what admission, block building and relay read, so no slot
//! re-reads the disk.
//!
//! What it holds is bounded: by count and bytes in all, and per sender. A sender's pending
//! transactions are always contiguous from the chain's next sequence number (no gaps, one
//! transaction per sequence number), so each of them can apply in order, and a pending
//! transaction reserves its sequence number until it commits or is evicted.

use emrshare_core::keys::PartyId;
use emrshare_core::ledger::merkle::Hash;
use emrshare_core::ledger::tx::SignedTransaction;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// How much the mempool may hold.
#[derive(Debug, Clone, Copy)]
pub struct MempoolLimits {
    pub max_txs: usize,
    pub max_bytes: usize,
    /// Pending transactions of one sender (its window of future sequence numbers).
    pub max_per_sender: usize,
    /// How long a transaction may wait for a block before it is dropped as failed.
    pub max_age_ms: u64,
}

/// Why a transaction does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("the mempool is full ({0}); try again later")]
    Full(&'static str),
    #[error("the sender has {0} transactions waiting already; wait for them to commit")]
    SenderFull(usize),
}

#[derive(Debug, Clone)]
pub struct PendingTx {
    pub tx: Arc<SignedTransaction>,
    pub admitted_ms: u64,
    /// Arrival order: block building and relay take transactions oldest first.
    arrival: u64,
}

#[derive(Debug, Default)]
pub struct Mempool {
    by_id: HashMap<Hash, PendingTx>,
    by_sender: HashMap<PartyId, BTreeMap<u64, Hash>>,
    bytes: usize,
    next_arrival: u64,
}

impl Mempool {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn contains(&self, id: &Hash) -> bool {
        self.by_id.contains_key(id)
    }

    /// The pending transaction of `sender` with `sequence`, if any.
    pub fn at(&self, sender: &PartyId, sequence: u64) -> Option<&PendingTx> {
        let id = self.by_sender.get(sender)?.get(&sequence)?;
        self.by_id.get(id)
    }

    /// The sender and sequence number of a pending transaction.
    pub fn of_sender_id(&self, id: &Hash) -> Option<(PartyId, u64)> {
        let t = self.by_id.get(id)?.tx.transaction();
        Some((t.sender.clone(), t.sequence))
    }

    /// When a pending transaction was admitted here.
    pub fn admitted_ms(&self, id: &Hash) -> Option<u64> {
        self.by_id.get(id).map(|p| p.admitted_ms)
    }

    /// The sender's pending transactions, in sequence order.
    pub fn of_sender(&self, sender: &PartyId) -> Vec<Arc<SignedTransaction>> {
        self.by_sender
            .get(sender)
            .into_iter()
            .flat_map(|seqs| seqs.values())
            .filter_map(|id| self.by_id.get(id))
            .map(|p| Arc::clone(&p.tx))
            .collect()
    }

    /// The sequence number the sender's next transaction takes here: past the chain's
    /// (`committed_next`) and past every pending one.
    pub fn next_free_sequence(&self, sender: &PartyId, committed_next: u64) -> u64 {
        let mut next = committed_next;
        if let Some(seqs) = self.by_sender.get(sender) {
            while seqs.contains_key(&next) {
                next += 1;
            }
        }
        next
    }

    /// Whether a transaction of `bytes` from `sender` fits.
    pub fn check_room(
        &self,
        limits: &MempoolLimits,
        sender: &PartyId,
        bytes: usize,
    ) -> Result<(), RoomError> {
        if self.by_id.len() >= limits.max_txs {
            return Err(RoomError::Full("transactions"));
        }
        if self.bytes + bytes > limits.max_bytes {
            return Err(RoomError::Full("bytes"));
        }
        let of_sender = self.by_sender.get(sender).map_or(0, BTreeMap::len);
        if of_sender >= limits.max_per_sender {
            return Err(RoomError::SenderFull(of_sender));
        }
        Ok(())
    }

    /// Adds a checked transaction (the caller made sure its sequence number is free).
    pub fn insert(&mut self, tx: Arc<SignedTransaction>, now_ms: u64) {
        let id = tx.id();
        if self.by_id.contains_key(&id) {
            return;
        }
        let t = tx.transaction();
        self.by_sender
            .entry(t.sender.clone())
            .or_default()
            .insert(t.sequence, id);
        self.bytes += tx.as_jws().len();
        self.by_id.insert(
            id,
            PendingTx {
                tx,
                admitted_ms: now_ms,
                arrival: self.next_arrival,
            },
        );
        self.next_arrival += 1;
    }

    /// Removes transactions (committed or evicted); unknown IDs are ignored.
    pub fn remove(&mut self, ids: &[Hash]) {
        for id in ids {
            let Some(pending) = self.by_id.remove(id) else {
                continue;
            };
            self.bytes -= pending.tx.as_jws().len();
            let t = pending.tx.transaction();
            if let Some(seqs) = self.by_sender.get_mut(&t.sender) {
                seqs.remove(&t.sequence);
                if seqs.is_empty() {
                    self.by_sender.remove(&t.sender);
                }
            }
        }
    }

    /// Every sender with pending transactions.
    pub fn senders(&self) -> Vec<PartyId> {
        self.by_sender.keys().cloned().collect()
    }

    /// The pending transactions in the order a block takes them: senders by their oldest
    /// pending transaction, each sender's in sequence order (so each can apply).
    pub fn candidates(&self) -> Vec<Arc<SignedTransaction>> {
        let mut senders: Vec<(u64, &BTreeMap<u64, Hash>)> = self
            .by_sender
            .values()
            .map(|seqs| {
                let oldest = seqs
                    .values()
                    .filter_map(|id| self.by_id.get(id))
                    .map(|p| p.arrival)
                    .min()
                    .unwrap_or(u64::MAX);
                (oldest, seqs)
            })
            .collect();
        senders.sort_by_key(|(oldest, _)| *oldest);
        senders
            .into_iter()
            .flat_map(|(_, seqs)| seqs.values())
            .filter_map(|id| self.by_id.get(id))
            .map(|p| Arc::clone(&p.tx))
            .collect()
    }

    /// IDs of transactions admitted before `cutoff_ms`.
    pub fn older_than(&self, cutoff_ms: u64) -> Vec<Hash> {
        self.by_id
            .iter()
            .filter(|(_, p)| p.admitted_ms < cutoff_ms)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The sender's pending transactions from `sequence` on (what must go when the one at
    /// `sequence` goes: the rest could never apply after the gap).
    pub fn from_sequence(&self, sender: &PartyId, sequence: u64) -> Vec<Hash> {
        self.by_sender
            .get(sender)
            .map(|seqs| seqs.range(sequence..).map(|(_, id)| *id).collect())
            .unwrap_or_default()
    }

    /// The sender's pending transactions below `sequence` (committed or replaced by the chain).
    pub fn below_sequence(&self, sender: &PartyId, sequence: u64) -> Vec<Hash> {
        self.by_sender
            .get(sender)
            .map(|seqs| seqs.range(..sequence).map(|(_, id)| *id).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emrshare_core::keys::SigningKey;
    use emrshare_core::ledger::tx::{Transaction, TxBody};

    fn tx(key: &SigningKey, sender: &str, sequence: u64) -> Arc<SignedTransaction> {
        Arc::new(
            Transaction {
                chain_id: "c".into(),
                sender: PartyId::new(sender).unwrap(),
                sequence,
                body: TxBody::RevokeGrant {
                    grant_id: format!("g{sequence}"),
                },
            }
            .sign(key),
        )
    }

    const LIMITS: MempoolLimits = MempoolLimits {
        max_txs: 4,
        max_bytes: 100_000,
        max_per_sender: 3,
        max_age_ms: 1000,
    };

    #[test]
    fn sequences_are_tracked_per_sender_and_bounds_hold() {
        let (a, b) = (SigningKey::generate(), SigningKey::generate());
        let mut pool = Mempool::default();
        let id = |s: &str| PartyId::new(s).unwrap();
        assert_eq!(pool.next_free_sequence(&id("x:a"), 5), 5);
        for seq in 5..8 {
            pool.check_room(&LIMITS, &id("x:a"), 100).unwrap();
            pool.insert(tx(&a, "x:a", seq), 0);
        }
        assert_eq!(pool.next_free_sequence(&id("x:a"), 5), 8);
        assert_eq!(
            pool.check_room(&LIMITS, &id("x:a"), 100),
            Err(RoomError::SenderFull(3))
        );
        pool.insert(tx(&b, "x:b", 0), 10);
        assert_eq!(
            pool.check_room(&LIMITS, &id("x:c"), 100),
            Err(RoomError::Full("transactions"))
        );
        assert_eq!(pool.len(), 4);
        // Block order: a's three in sequence, then b's.
        let order: Vec<(String, u64)> = pool
            .candidates()
            .iter()
            .map(|t| (t.transaction().sender.to_string(), t.transaction().sequence))
            .collect();
        assert_eq!(
            order,
            vec![
                ("x:a".into(), 5),
                ("x:a".into(), 6),
                ("x:a".into(), 7),
                ("x:b".into(), 0)
            ]
        );
        assert_eq!(pool.from_sequence(&id("x:a"), 6).len(), 2);
        assert_eq!(pool.below_sequence(&id("x:a"), 6).len(), 1);
        assert_eq!(pool.older_than(5).len(), 3);
        let bytes = pool.bytes();
        pool.remove(&pool.from_sequence(&id("x:a"), 6));
        assert!(pool.bytes() < bytes);
        assert_eq!(pool.next_free_sequence(&id("x:a"), 5), 6);
        pool.remove(&pool.from_sequence(&id("x:a"), 0));
        pool.remove(&pool.from_sequence(&id("x:b"), 0));
        assert!(pool.is_empty());
        assert_eq!(pool.bytes(), 0);
        assert!(pool.senders().is_empty());
    }
}
