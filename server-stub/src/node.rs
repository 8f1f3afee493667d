//! A running node: the chain, the store, the mempool and the peers. Consensus runs on
//! Malachite ([`crate::consensus`] drives it over this node's chain); this module admits
//! transactions, relays them to the other members so whichever validator proposes next has
//! them, applies decided blocks, and serves blobs.

use crate::chain::{Chain, ChainError};
use crate::config::{NodeConfig, Peer};
use crate::mempool::{Mempool, MempoolLimits, RoomError};
use crate::store::Store;
use anyhow::{Context, Result};
use emrshare_core::PrivateKeySet;
use emrshare_core::ledger::block::CertifiedBlock;
use emrshare_core::ledger::machine::{ApplyError, SignatureCache};
use emrshare_core::ledger::merkle::Hash;
use emrshare_core::ledger::tx::{SignedTransaction, TxBody, TxError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

pub struct Node {
    pub blobs: crate::blobs::FsBlobStore,
    pub config: NodeConfig,
    pub keys: PrivateKeySet,
    pub chain: Mutex<Chain>,
    pub store: Arc<Store>,
    pub http: reqwest::Client,
    /// Acknowledged transactions not yet in a block (the store holds the same on disk).
    mempool: std::sync::Mutex<Mempool>,
    /// Acknowledged transactions on their way to disk: one writer commits them in batches.
    mempool_writer: std::sync::mpsc::Sender<PendingWrite>,
    /// Accepted transactions not yet offered to the peers: sent in batches.
    relay_queue: std::sync::Mutex<Vec<Arc<SignedTransaction>>>,
    /// Blob uploads in progress (each streams to its own file).
    pub uploads: tokio::sync::Semaphore,
    /// What the node knows of its peers: their genesis, height, reachability.
    pub peers: crate::peers::Peers,
    /// The node's record voucher issuer, if genesis lists its key.
    pub record_vouchers: Option<crate::record_vouchers::RecordVoucherIssuer>,
}

/// Why a transaction is not admitted. Nothing is stored, relayed or acknowledged before
/// every check passed.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Malformed(#[from] TxError),
    /// What applying it now would refuse (unknown or inactive sender, bad signature, a body
    /// the state does not allow, a used sequence number).
    #[error("{0}")]
    Refused(ApplyError),
    #[error("sequence {sequence} of {sender} is taken by another pending transaction")]
    SequenceTaken {
        sender: emrshare_core::keys::PartyId,
        sequence: u64,
    },
    #[error(
        "sequence {got} is not the sender's next ({expected}): a transaction follows the sender's pending ones, without a gap"
    )]
    SequenceGap { expected: u64, got: u64 },
    #[error(transparent)]
    NoRoom(#[from] RoomError),
    #[error("the store failed: {0}")]
    Store(String),
}

/// An admitted transaction: its ID, and whether it is new here (a copy already pending is
/// acknowledged again, without work).
#[derive(Debug, Clone, Copy)]
pub struct Admitted {
    pub id: Hash,
    pub new: bool,
}

/// Why a blob request is refused.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("no such blob")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("Content-Length is required")]
    LengthRequired,
    #[error("blob of {0} bytes is over the limit of {1}")]
    TooLarge(u64, usize),
    #[error("too many uploads in progress; try again later")]
    Busy,
    #[error(transparent)]
    Admit(AdmitError),
    #[error("storage failed: {0}")]
    Storage(String),
}

/// A transaction to store, and who waits for it to be durable.
type PendingWrite = (
    Hash,
    String,
    tokio::sync::oneshot::Sender<Result<(), String>>,
);

/// Most transactions in one relay request (it is also bounded in bytes by the peers' body
/// limit, see [`crate::config::Limits::relay_batch_bytes`]).
const RELAY_BATCH: usize = 500;
/// A pending transaction is offered to the peers again after this long (a peer that was
/// down, behind, or full then takes it).
const RELAY_RETRY_MS: u64 = 2_000;
/// Bytes re-offered to the peers per round.
const RELAY_RETRY_BYTES: usize = 8 * 1024 * 1024;
/// How far a peer token's time may be from ours.
const PEER_TOKEN_SKEW_S: u64 = 60;

/// Stores transactions as they come, many per commit (one fsync for all who wait), and
/// tells each waiter once its transaction is durable.
fn spawn_mempool_writer(store: Arc<Store>) -> std::sync::mpsc::Sender<PendingWrite> {
    let (sender, receiver) = std::sync::mpsc::channel::<PendingWrite>();
    std::thread::spawn(move || {
        while let Ok(first) = receiver.recv() {
            let mut batch = vec![first];
            while batch.len() < 4096 {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let txs: Vec<(Hash, String)> = batch
                .iter()
                .map(|(id, jws, _)| (*id, jws.clone()))
                .collect();
            let result = store.add_txs(&txs).map_err(|e| e.to_string());
            for (_, _, waiter) in batch {
                let _ = waiter.send(result.clone());
            }
        }
    });
    sender
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Node {
    pub fn open(config: NodeConfig) -> Result<Arc<Self>> {
        config.limits.validate()?;
        let genesis = crate::config::load_genesis(&config.genesis_file)?;
        let keys = crate::config::load_keys(&config.key_file)?;
        anyhow::ensure!(
            keys.id == config.id,
            "key file {} is for {}, the config for {}",
            config.key_file.display(),
            keys.id,
            config.id
        );
        let store = Arc::new(Store::open(&config.data_dir)?);
        store.check_genesis(&genesis.hash(), &config.genesis_file, &config.data_dir)?;
        let peers = crate::peers::Peers::new(&genesis, &config.peers);
        let record_vouchers = match &config.record_voucher_key_file {
            None => None,
            Some(file) => {
                let der = std::fs::read(file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let key = emrshare_core::voucher::VoucherSecretKey::from_pkcs8(&der)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
                let public = key.public().map_err(|e| anyhow::anyhow!("{e}"))?.to_jwk();
                let index = genesis
                    .record_voucher_keys
                    .iter()
                    .position(|k| *k == public)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "record voucher key {} is not in genesis {}",
                            file.display(),
                            config.genesis_file.display()
                        )
                    })?;
                Some(crate::record_vouchers::RecordVoucherIssuer::new(
                    key,
                    index as u32,
                    config.limits.record_vouchers_per_day,
                ))
            }
        };
        let mut chain = Chain::new(genesis);
        // Recovery: replay every stored certified block through the same checks.
        for block in store.blocks()? {
            chain.apply(&block).map_err(|e| {
                anyhow::anyhow!(
                    "stored block {} in {} does not follow from genesis file {}: {e}: put back \
                     the genesis file the chain was started with, or move {} aside to resync",
                    block.header.height,
                    config.data_dir.display(),
                    config.genesis_file.display(),
                    config.data_dir.display()
                )
            })?;
        }
        let ca_file = config.tls.as_ref().and_then(|t| t.ca_file.as_deref());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.limits.request_timeout_ms))
            .use_preconfigured_tls(crate::tls::client_config(ca_file)?)
            .build()?;
        let blobs = crate::blobs::FsBlobStore::new(&config.data_dir.join("blobs"))?;
        let stored_mempool = store.mempool()?;
        let node = Arc::new(Self {
            blobs,
            keys,
            chain: Mutex::new(chain),
            mempool: Default::default(),
            mempool_writer: spawn_mempool_writer(Arc::clone(&store)),
            relay_queue: Default::default(),
            uploads: tokio::sync::Semaphore::new(config.limits.max_concurrent_uploads),
            config,
            store,
            http,
            peers,
            record_vouchers,
        });
        node.restore_mempool(stored_mempool)?;
        Ok(node)
    }

    fn mempool_limits(&self) -> MempoolLimits {
        let l = &self.config.limits;
        MempoolLimits {
            max_txs: l.max_mempool_txs,
            max_bytes: l.max_mempool_bytes,
            max_per_sender: l.max_pending_per_sender,
            max_age_ms: l.mempool_max_age_ms,
        }
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Mempool> {
        self.mempool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pending transactions a block may take, sender by sender in sequence order.
    pub fn candidates(&self) -> Vec<Arc<SignedTransaction>> {
        self.pool().candidates()
    }

    /// Pending transactions and their bytes (for `/metrics`).
    pub fn mempool_size(&self) -> (usize, usize) {
        let pool = self.pool();
        (pool.len(), pool.bytes())
    }

    /// What became of a transaction this node acknowledged.
    pub fn tx_status(&self, id: &Hash) -> Result<Option<emrshare_core::ledger::wire::TxStatus>> {
        if self.pool().contains(id) {
            return Ok(Some(emrshare_core::ledger::wire::TxStatus::Pending));
        }
        self.store.tx_status(id)
    }

    /// Re-admits the stored mempool at start, through the same checks (in sender and
    /// sequence order); what no longer applies is recorded as failed.
    fn restore_mempool(&self, stored: Vec<String>) -> Result<()> {
        let mut txs: Vec<Arc<SignedTransaction>> = Vec::new();
        let mut failed = Vec::new();
        for jws in stored {
            match SignedTransaction::parse(&jws) {
                Ok(tx) => txs.push(Arc::new(tx)),
                Err(e) => failed.push((emrshare_core::content_hash(jws.as_bytes()), e.to_string())),
            }
        }
        txs.sort_by(|a, b| {
            let (a, b) = (a.transaction(), b.transaction());
            (&a.sender, a.sequence).cmp(&(&b.sender, b.sequence))
        });
        let view = self
            .chain
            .try_lock()
            .map(|chain| chain.admission_view(now_ms()));
        let Ok(view) = view else {
            anyhow::bail!("the chain is in use while the node opens");
        };
        for tx in txs {
            if let Err(e) = self.check_and_reserve(&view, Arc::clone(&tx)) {
                failed.push((tx.id(), e.to_string()));
            }
        }
        if !failed.is_empty() {
            tracing::info!(
                "{} stored mempool transactions no longer apply; recorded as failed",
                failed.len()
            );
            self.store.fail_txs(&failed)?;
        }
        Ok(())
    }

    /// Admits a transaction from a client (see [`Node::admit`]) and queues it for the peers
    /// (in the next batch) so that whichever validator proposes next has it.
    pub async fn submit(self: &Arc<Self>, jws: &str) -> Result<Admitted, AdmitError> {
        let admitted = self.admit(jws).await?;
        Ok(admitted)
    }

    /// Admits a transaction: parsed (size, form), its sender known and its signature
    /// checked, its sequence number the sender's next free one, its body checked against the
    /// state with the sender's pending transactions applied, room in the mempool; only then
    /// stored durably and acknowledged. A copy already pending is acknowledged without work.
    pub async fn admit(&self, jws: &str) -> Result<Admitted, AdmitError> {
        let tx = Arc::new(SignedTransaction::parse(jws)?);
        let id = tx.id();
        if self.pool().contains(&id) {
            return Ok(Admitted { id, new: false });
        }
        // The signature is checked (and remembered) outside the chain lock; the rest under
        // it, so the state and the mempool it is checked against are of one moment (a block
        // applied in between would otherwise show a gap where its transactions were).
        let view = self.chain.lock().await.admission_view(now_ms());
        self.check_signature(&view, &tx)?;
        {
            let chain = self.chain.lock().await;
            self.check_and_reserve(&chain.admission_view(now_ms()), Arc::clone(&tx))?;
        }
        self.persist(&[tx]).await?;
        Ok(Admitted { id, new: true })
    }

    /// Commits `evidence` of an equivocation as this member's Misbehaviour transaction: signed
    /// with its consensus key at its next free sequence number, admitted like any client's
    /// transaction (so the state machine's own checks run first), relayed, and proposed.
    pub async fn report_misbehaviour(
        &self,
        evidence: &emrshare_core::ledger::bft::Evidence,
    ) -> Result<Admitted, AdmitError> {
        use emrshare_core::ledger::bft::Evidence;
        let accused = match evidence {
            Evidence::DoubleVote(a, _) => a.message.validator.clone(),
            Evidence::DoubleProposal(a, _) => a.message.proposer.clone(),
        };
        let (chain_id, committed_next) = {
            let chain = self.chain.lock().await;
            (
                chain.genesis.chain_id.clone(),
                chain.state().next_sequence(&self.keys.id),
            )
        };
        let sequence = self
            .pool()
            .next_free_sequence(&self.keys.id, committed_next);
        let tx = emrshare_core::ledger::tx::Transaction {
            chain_id,
            sender: self.keys.id.clone(),
            sequence,
            body: emrshare_core::ledger::tx::TxBody::Misbehaviour {
                accused,
                evidence: vec![serde_json::to_string(evidence).map_err(|_| {
                    AdmitError::Refused(emrshare_core::ledger::machine::ApplyError::Evidence(
                        "evidence does not encode",
                    ))
                })?],
            },
        }
        .sign(&self.keys.signing);
        self.admit(tx.as_jws()).await
    }

    /// The sender's key from the state, and the transaction's signature under it (each
    /// transaction's signature is checked once per key; see `CheckedSignatures`).
    fn check_signature(
        &self,
        view: &crate::chain::AdmissionView,
        tx: &SignedTransaction,
    ) -> Result<(), AdmitError> {
        let key = view
            .state
            .sender_key(tx, view.context())
            .map_err(AdmitError::Refused)?;
        if !view.signatures.is_verified(&tx.id(), &key) {
            tx.verify(&key)?;
            view.signatures.record(&tx.id(), &key);
        }
        Ok(())
    }

    /// Admits the transactions a peer relays: in sender and sequence order (so each can
    /// follow the one before), stored in one commit. Returns how many were taken (new or
    /// held already) and how many refused.
    pub async fn admit_relayed(&self, jws: &[String]) -> (usize, usize) {
        let mut txs: Vec<Arc<SignedTransaction>> = Vec::new();
        let mut refused = 0;
        for text in jws {
            match SignedTransaction::parse(text) {
                Ok(tx) => txs.push(Arc::new(tx)),
                Err(_) => refused += 1,
            }
        }
        txs.sort_by(|a, b| {
            let (a, b) = (a.transaction(), b.transaction());
            (&a.sender, a.sequence).cmp(&(&b.sender, b.sequence))
        });
        let view = self.chain.lock().await.admission_view(now_ms());
        for tx in &txs {
            // Signatures outside the chain lock; a failure shows again below.
            let _ = self.check_signature(&view, tx);
        }
        let mut fresh = Vec::new();
        let mut accepted = 0;
        {
            let chain = self.chain.lock().await;
            let view = chain.admission_view(now_ms());
            for tx in txs {
                if self.pool().contains(&tx.id()) {
                    accepted += 1;
                    continue;
                }
                match self.check_and_reserve(&view, Arc::clone(&tx)) {
                    Ok(()) => fresh.push(tx),
                    Err(e) => {
                        tracing::debug!("relayed transaction refused: {e}");
                        refused += 1;
                    }
                }
            }
        }
        let stored = fresh.len();
        match self.persist(&fresh).await {
            Ok(()) => accepted += stored,
            Err(_) => refused += stored,
        }
        (accepted, refused)
    }

    /// Every check of admission, then the transaction's place in the mempool (which
    /// reserves its sequence number). Nothing is kept for a transaction that fails one. The
    /// caller holds the chain (so `view` and the mempool are of one moment), or is opening.
    fn check_and_reserve(
        &self,
        view: &crate::chain::AdmissionView,
        tx: Arc<SignedTransaction>,
    ) -> Result<(), AdmitError> {
        let id = tx.id();
        let ctx = view.context();
        let t = tx.transaction();
        // Who must have signed it: a stranger (no registration, not a member) stops here,
        // whatever its sequence number says.
        self.check_signature(view, &tx)?;
        let mut pool = self.pool();
        if pool.contains(&id) {
            return Ok(());
        }
        let committed_next = view.state.next_sequence(&t.sender);
        if t.sequence < committed_next {
            return Err(AdmitError::Refused(ApplyError::Sequence {
                expected: committed_next,
                got: t.sequence,
            }));
        }
        if pool.at(&t.sender, t.sequence).is_some() {
            return Err(AdmitError::SequenceTaken {
                sender: t.sender.clone(),
                sequence: t.sequence,
            });
        }
        let free = pool.next_free_sequence(&t.sender, committed_next);
        if t.sequence != free {
            return Err(AdmitError::SequenceGap {
                expected: free,
                got: t.sequence,
            });
        }
        pool.check_room(&self.mempool_limits(), &t.sender, tx.as_jws().len())?;
        // The state this transaction will meet: the chain's, then the sender's pending ones.
        let mut state = view.state.clone();
        for earlier in pool.of_sender(&t.sender) {
            state
                .apply_cached(&earlier, ctx, &*view.signatures)
                .map_err(AdmitError::Refused)?;
        }
        state
            .apply_cached(&tx, ctx, &*view.signatures)
            .map_err(AdmitError::Refused)?;
        pool.insert(tx, now_ms());
        Ok(())
    }

    /// Stores reserved transactions durably (one commit for all), then queues them for the
    /// peers; on failure they leave the mempool again and are not acknowledged.
    async fn persist(&self, txs: &[Arc<SignedTransaction>]) -> Result<(), AdmitError> {
        if txs.is_empty() {
            return Ok(());
        }
        let mut waiting = Vec::new();
        for tx in txs {
            let (done, durable) = tokio::sync::oneshot::channel();
            let sent = self
                .mempool_writer
                .send((tx.id(), tx.as_jws().to_owned(), done));
            waiting.push(async move {
                sent.map_err(|_| "the store is closed".to_string())?;
                durable
                    .await
                    .map_err(|_| "the store is closed".to_string())?
            });
        }
        let results = futures_util::future::join_all(waiting).await;
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            let ids: Vec<Hash> = txs.iter().map(|t| t.id()).collect();
            self.pool().remove(&ids);
            return Err(AdmitError::Store(e));
        }
        self.relay_queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(txs.iter().cloned());
        Ok(())
    }

    /// Sends the queued transactions to every peer, in batches that fit their body limit.
    fn flush_relay(self: &Arc<Self>) {
        let queued =
            std::mem::take(&mut *self.relay_queue.lock().unwrap_or_else(|p| p.into_inner()));
        self.relay(queued);
    }

    /// Sends transactions to every peer, sender by sender in sequence order, each request
    /// under the peers' body limit and [`RELAY_BATCH`].
    fn relay(self: &Arc<Self>, mut txs: Vec<Arc<SignedTransaction>>) {
        txs.sort_by(|a, b| {
            let (a, b) = (a.transaction(), b.transaction());
            (&a.sender, a.sequence).cmp(&(&b.sender, b.sequence))
        });
        let budget = self.config.limits.relay_batch_bytes();
        let mut batch: Vec<String> = Vec::new();
        let mut bytes = 0;
        let send = |batch: Vec<String>| {
            self.post_to_peers(
                "/v1/consensus/txs",
                serde_json::to_value(emrshare_core::ledger::wire::RelayRequest { txs: batch })
                    .expect("requests serialize"),
            );
        };
        for tx in txs {
            let size = crate::chain::tx_block_bytes(tx.as_jws());
            if !batch.is_empty() && (bytes + size > budget || batch.len() >= RELAY_BATCH) {
                send(std::mem::take(&mut batch));
                bytes = 0;
            }
            bytes += size;
            batch.push(tx.as_jws().to_owned());
        }
        if !batch.is_empty() {
            send(batch);
        }
    }

    /// Applies a certified block, then stores it before returning (the engine moves to the
    /// next height only after that; a crash in between replays the block from a peer); its
    /// transactions leave the mempool, and so does what can never apply any more.
    ///
    /// The write (an fsync) runs on a blocking thread after the chain is released: a disk
    /// busy flushing other writes can stall an fsync for seconds, and neither the node's
    /// readers nor the other tasks of the runtime wait for it.
    pub async fn accept_block(&self, block: &CertifiedBlock) -> Result<(), ChainError> {
        let (committed, failed) = {
            let mut chain = self.chain.lock().await;
            if block.header.height <= chain.height() {
                return Ok(());
            }
            chain.apply(block)?;
            let committed: Vec<Hash> = block
                .txs
                .iter()
                .filter_map(|t| SignedTransaction::parse(t).ok())
                .map(|t| t.id())
                .collect();
            self.pool().remove(&committed);
            (committed, self.evict_stale(&chain))
        };
        let store = Arc::clone(&self.store);
        let height = block.header.height;
        let stored = block.clone();
        let written =
            tokio::task::spawn_blocking(move || store.put_block(&stored, &committed, &failed))
                .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("cannot store block {height}: {e}"),
            Err(e) => tracing::error!("cannot store block {height}: {e}"),
        }
        Ok(())
    }

    /// Drops from the mempool what can never apply after the latest block: a sender's
    /// transactions below its next sequence number (replaced), its first pending one if it
    /// no longer applies (and so every later one), and whatever waited longer than
    /// `mempool_max_age_ms`. One check per sender, not per transaction.
    fn evict_stale(&self, chain: &Chain) -> Vec<(Hash, String)> {
        let view = chain.admission_view(now_ms());
        let ctx = view.context();
        let mut pool = self.pool();
        let mut failed: Vec<(Hash, String)> = Vec::new();
        let mut drop = |pool: &mut Mempool, ids: Vec<Hash>, reason: String| {
            pool.remove(&ids);
            failed.extend(ids.into_iter().map(|id| (id, reason.clone())));
        };
        let cutoff = now_ms().saturating_sub(self.mempool_limits().max_age_ms);
        for (id, (sender, sequence)) in pool
            .older_than(cutoff)
            .into_iter()
            .filter_map(|id| {
                let pending = pool.of_sender_id(&id)?;
                Some((id, pending))
            })
            .collect::<Vec<_>>()
        {
            let _ = id;
            let ids = pool.from_sequence(&sender, sequence);
            drop(
                &mut pool,
                ids,
                "not committed within the mempool's age limit".into(),
            );
        }
        for sender in pool.senders() {
            let next = view.state.next_sequence(&sender);
            let replaced = pool.below_sequence(&sender, next);
            drop(
                &mut pool,
                replaced,
                "its sequence number was used by another transaction".into(),
            );
            let Some(first) = pool.at(&sender, next).map(|p| Arc::clone(&p.tx)) else {
                let orphans = pool.from_sequence(&sender, next);
                drop(
                    &mut pool,
                    orphans,
                    "an earlier transaction of its sender failed".into(),
                );
                continue;
            };
            let mut state = view.state.clone();
            if let Err(e) = state.apply_cached(&first, ctx, &*view.signatures) {
                let ids = pool.from_sequence(&sender, next);
                drop(&mut pool, ids, format!("no longer applies: {e}"));
            }
        }
        failed
    }

    /// Sends `body` to `path` on every peer, in the background; a peer that misses it gets
    /// the transactions again (relay retries), so failures are not retried here.
    fn post_to_peers(self: &Arc<Self>, path: &'static str, body: serde_json::Value) {
        let body = serde_json::to_vec(&body).expect("JSON values serialize");
        for peer in self.config.peers.clone() {
            let node = Arc::clone(self);
            let body = body.clone();
            tokio::spawn(async move {
                match node.peer_post(&peer, path, body).send().await {
                    Ok(reply) if !reply.status().is_success() => {
                        tracing::debug!("{} refused {path}: {}", peer.id, reply.status())
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!("{} unreachable for {path}: {e}", peer.id),
                }
            });
        }
    }

    /// A POST to a peer's consortium route, with the `x-emr-peer` token that lets the peer
    /// check who sends it before it reads the body.
    fn peer_post(&self, peer: &Peer, path: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        let token = emrshare_core::ledger::wire::PeerToken {
            peer: self.keys.id.clone(),
            path: path.to_owned(),
            len: body.len() as u64,
            body_sha256: emrshare_core::content_hash(&body).to_hex(),
            iat: now_ms() / 1000,
        };
        let token = emrshare_core::jws::sign(
            &self.keys.signing,
            &emrshare_core::jws::Header::es256(emrshare_core::ledger::wire::PeerToken::TYP, None),
            &serde_json::to_value(&token).expect("tokens serialize"),
        );
        self.http
            .post(format!("{}{path}", peer.url))
            .header("content-type", "application/json")
            .header("x-emr-peer", token)
            .body(body)
    }

    /// Checks a consortium route's `x-emr-peer` token before its body is read: signed by a
    /// consortium member's consensus key, for this path and this length, and fresh. Returns
    /// the SHA-256 the body must have.
    pub async fn check_peer_token(
        &self,
        token: &str,
        path: &str,
        content_length: Option<u64>,
    ) -> Result<Hash, String> {
        use emrshare_core::ledger::wire::PeerToken;
        let payload = emrshare_core::jws::unverified_payload(token)
            .map_err(|e| format!("peer token: {e}"))?;
        let claimed: PeerToken = emrshare_core::strict_json::from_value(payload)
            .map_err(|e| format!("peer token: {e}"))?;
        let member = self
            .chain
            .lock()
            .await
            .state()
            .members()
            .into_iter()
            .find(|m| m.id == claimed.peer)
            .ok_or("peer token: not a consortium member")?;
        let key = emrshare_core::keys::VerifyingKey::from_jwk(&member.signing_jwk)
            .map_err(|e| format!("peer token: {e}"))?;
        emrshare_core::jws::verify(token, &key, PeerToken::TYP)
            .map_err(|e| format!("peer token: {e}"))?;
        let now = now_ms() / 1000;
        if claimed.path != path || claimed.iat.abs_diff(now) > PEER_TOKEN_SKEW_S {
            return Err("peer token: for another route, or stale".into());
        }
        if content_length != Some(claimed.len) {
            return Err("peer token: Content-Length differs from the signed length".into());
        }
        Hash::from_hex(&claimed.body_sha256).ok_or_else(|| "peer token: malformed body hash".into())
    }

    /// Offers the pending transactions that waited past [`RELAY_RETRY_MS`] to every peer
    /// again (up to [`RELAY_RETRY_BYTES`] a round): a transaction acknowledged just before a
    /// crash, or refused by a peer that was behind or full, still reaches the proposers.
    /// Peers that hold a transaction already acknowledge it without work.
    fn relay_retry(self: &Arc<Self>) {
        let cutoff = now_ms().saturating_sub(RELAY_RETRY_MS);
        let pool = self.pool();
        let mut bytes = 0;
        let waiting: Vec<Arc<SignedTransaction>> = pool
            .candidates()
            .into_iter()
            .filter(|tx| {
                pool.admitted_ms(&tx.id())
                    .is_some_and(|admitted| admitted < cutoff)
            })
            .take_while(|tx| {
                bytes += tx.as_jws().len();
                bytes <= RELAY_RETRY_BYTES
            })
            .collect();
        drop(pool);
        if !waiting.is_empty() {
            self.relay(waiting);
        }
    }

    /// Sends queued transactions to the peers every 100 ms, and offers the pending ones
    /// again now and then (see [`Node::relay_retry`]), until the node stops.
    pub async fn run_relay(self: Arc<Self>) {
        let mut ticks = 0u64;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            ticks += 1;
            self.flush_relay();
            if ticks % 25 == 1 {
                self.relay_retry();
            }
        }
    }
}

pub use emrshare_core::record_account::BLOB_CLAIM_TYP;
/// How far the time in a claim or access log may be from the node's clock, in seconds.
const MAX_SKEW_S: u64 = 300;

impl Node {
    /// Checks an upload before any of its body is read: a length within the limit, a claim
    /// signed by the record's account it names as owner (opened on chain with a node's
    /// record voucher), for this blob, fresh, and no other owner in force. Returns the owner.
    pub async fn check_upload(
        &self,
        hash: Hash,
        claim: &str,
        content_length: Option<u64>,
    ) -> Result<emrshare_core::keys::PartyId, BlobError> {
        use emrshare_core::keys::VerifyingKey;
        let length = content_length.ok_or(BlobError::LengthRequired)?;
        let limit = self.config.limits.max_blob_bytes;
        if length > limit as u64 {
            return Err(BlobError::TooLarge(length, limit));
        }
        let unauthorized = |e: &dyn std::fmt::Display| BlobError::Unauthorized(e.to_string());
        let payload =
            emrshare_core::jws::unverified_payload(claim).map_err(|e| unauthorized(&e))?;
        let claimed: emrshare_core::record_account::BlobClaim =
            emrshare_core::strict_json::from_value(payload)
                .map_err(|e| unauthorized(&format!("claim: {e}")))?;
        let owner = claimed.owner.clone();
        let record = self
            .chain
            .lock()
            .await
            .state()
            .record(&owner)
            .ok_or_else(|| BlobError::Forbidden("owner is not an open record's account".into()))?;
        let key = VerifyingKey::from_jwk(&record.signing_jwk)
            .map_err(|e| BlobError::Storage(e.to_string()))?;
        emrshare_core::jws::verify(claim, &key, BLOB_CLAIM_TYP).map_err(|e| unauthorized(&e))?;
        if claimed.blob != hash || claimed.iat.abs_diff(now_ms() / 1000) > MAX_SKEW_S {
            return Err(unauthorized(&"claim is for another blob or stale"));
        }
        match self.store.blob_owner(&hash) {
            Ok(Some(current)) if current != owner.as_str() => Err(BlobError::Conflict(
                "blob already owned by another party".into(),
            )),
            Ok(_) => Ok(owner),
            Err(e) => Err(BlobError::Storage(e.to_string())),
        }
    }

    /// Stores an upload checked by [`Node::check_upload`]: streamed to its own temporary
    /// file, refused unless it is exactly `length` bytes that hash to `hash`, made durable,
    /// then renamed to its address; the owner is recorded (the first owner stays).
    pub async fn put_blob<E: std::fmt::Display>(
        &self,
        hash: Hash,
        owner: &emrshare_core::keys::PartyId,
        length: u64,
        mut body: impl futures_util::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    ) -> Result<(), BlobError> {
        use futures_util::StreamExt;
        let _turn = self.uploads.try_acquire().map_err(|_| BlobError::Busy)?;
        let storage = |e: &dyn std::fmt::Display| BlobError::Storage(e.to_string());
        let mut upload = self.blobs.begin(&hash).map_err(|e| storage(&e))?;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::BadRequest(format!("body: {e}")))?;
            if upload.written() + chunk.len() as u64 > length {
                return Err(BlobError::BadRequest(
                    "body is longer than its Content-Length".into(),
                ));
            }
            upload.write(&chunk).await.map_err(|e| storage(&e))?;
        }
        if upload.written() != length {
            return Err(BlobError::BadRequest(
                "body is shorter than its Content-Length".into(),
            ));
        }
        match upload.finish().await {
            Ok(()) => {}
            Err(crate::blobs::FinishError::Mismatch) => {
                return Err(BlobError::BadRequest(
                    "body does not hash to the blob address".into(),
                ));
            }
            Err(crate::blobs::FinishError::Io(e)) => return Err(storage(&e)),
        }
        let current = self
            .store
            .claim_blob(&hash, owner.as_str())
            .map_err(|e| storage(&e))?;
        if current != owner.as_str() {
            return Err(BlobError::Conflict(
                "blob already owned by another party".into(),
            ));
        }
        Ok(())
    }

    /// Serves a blob to whoever holds a key its signed AccessLog proves: the record's
    /// account that owns it, or the key of a live grant of this blob (the chain holds its
    /// commitment; the node never learns who the grantee is). The log must be new here, take
    /// the sender's next sequence number, and pass every check of admission: it is then
    /// pending (so it commits), and it serves one read only.
    pub async fn get_blob(
        self: &Arc<Self>,
        hash: Hash,
        access: &str,
    ) -> Result<Vec<u8>, BlobError> {
        use emrshare_core::ledger::tx::Action;
        let unauthorized = |e: &dyn std::fmt::Display| BlobError::Unauthorized(e.to_string());
        let tx = SignedTransaction::parse(access).map_err(|e| unauthorized(&e))?;
        let TxBody::AccessLog {
            action,
            at,
            grant_id,
            ..
        } = &tx.transaction().body
        else {
            return Err(unauthorized(&"access must be an AccessLog transaction"));
        };
        let accessor = &tx.transaction().sender;
        let now = now_ms() / 1000;
        if *action != Action::Read || at.abs_diff(now) > MAX_SKEW_S {
            return Err(unauthorized(&"access log is for another action or time"));
        }
        let owner = self
            .store
            .blob_owner(&hash)
            .map_err(|e| BlobError::Storage(e.to_string()))?
            .ok_or(BlobError::NotFound)?;
        match grant_id {
            None if accessor.as_str() == owner => {}
            None => {
                return Err(BlobError::Forbidden(
                    "not the owner, and no grant named".into(),
                ));
            }
            Some(grant_id) => {
                let grant = self
                    .chain
                    .lock()
                    .await
                    .state()
                    .grant(grant_id)
                    .ok_or_else(|| BlobError::Forbidden("no such grant".into()))?;
                // That the log is signed by the grant's own key, admission checks below.
                if grant.blob != hash
                    || grant.record.as_str() != owner
                    || !grant.allows(Action::Read, now)
                {
                    return Err(BlobError::Forbidden(
                        "the grant does not allow this access".into(),
                    ));
                }
            }
        }
        // Sender, signature, sequence and body are checked as the chain will check them;
        // the log is then pending, and will commit.
        let admitted = self.admit(access).await.map_err(BlobError::Admit)?;
        if !admitted.new {
            return Err(BlobError::Conflict(
                "this access log has served its read; sign a new one".into(),
            ));
        }
        match self.blobs.get(&hash) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(BlobError::NotFound),
            Err(e) => Err(BlobError::Storage(e.to_string())),
        }
    }
}
