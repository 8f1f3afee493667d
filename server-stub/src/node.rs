//! A running node: the chain, the store, the peers, and the improved-DPoS slot loop.
//!
//! Each slot has one proposer (round-robin over the RPNs of the validator set in force), and
//! each slot should get a block, empty or not: a slot without one is a missed slot. The
//! proposer builds a block from its mempool, signs it, and asks every auditor (ATN) to vote.
//! An auditor checks everything, records its lock durably (one header per height and round),
//! and only then votes. With more than half of the auditors' votes the proposer broadcasts the
//! certified block; every node applies only certified blocks.
//!
//! An auditor already locked at that height answers with its locked proposal and its vote
//! for it. The proposer then certifies that proposal if its votes suffice, or finishes it
//! with the auditors not yet locked, or, when the locks prove that no header of that round
//! can reach a majority, proposes again at the next round with that release proof. Two
//! headers of one proposer for one slot and round among the locks are equivocation: the
//! proposer submits them as a Misbehaviour transaction. A node that is behind fetches the
//! blocks it lacks from its peers.

use crate::chain::{Chain, ChainError};
use crate::config::{NodeConfig, Peer};
use crate::store::Store;
use anyhow::Result;
use emrshare_core::PrivateKeySet;
use emrshare_core::ledger::block::{
    CertifiedBlock, Lock, Proposal, ReleaseProof, SignedHeader, Vote, VoteReply,
};
use emrshare_core::ledger::machine::ApplyError;
use emrshare_core::ledger::merkle::Hash;
use emrshare_core::ledger::tx::{SignedTransaction, Transaction, TxBody};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

pub struct Node {
    pub blobs: Box<dyn crate::blobs::BlobStore>,
    pub config: NodeConfig,
    pub keys: PrivateKeySet,
    pub chain: Mutex<Chain>,
    pub store: Arc<Store>,
    pub http: reqwest::Client,
    /// Acknowledged transactions on their way to disk: one writer commits them in batches.
    mempool_writer: std::sync::mpsc::Sender<PendingWrite>,
    /// Accepted transactions not yet offered to the peers: sent in batches.
    relay_queue: std::sync::Mutex<Vec<String>>,
    /// What the node knows of its peers: their genesis, height, reachability.
    pub peers: crate::peers::Peers,
}

/// A transaction to store, and who waits for it to be durable.
type PendingWrite = (
    [u8; 32],
    String,
    tokio::sync::oneshot::Sender<Result<(), String>>,
);

/// Most transactions in one relay request (a registration is about 1.3 KB; the default body
/// limit is 256 KiB).
const RELAY_BATCH: usize = 100;

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
            let txs: Vec<([u8; 32], String)> = batch
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

/// What a proposer makes of the auditors' replies.
enum Tally {
    Certified(CertifiedBlock),
    /// No header of this round can be certified: go to the next round with this proof and
    /// the proposals seen (evidence, if one proposer signed two of them).
    Released(ReleaseProof, Vec<Proposal>),
    /// Another proposal can still be certified: gather votes for it.
    Finish(Proposal),
    Stuck,
}

/// Whether this is a test build told to equivocate.
#[cfg(feature = "equivocate")]
fn equivocating() -> bool {
    std::env::var_os("EMRSHARE_TEST_EQUIVOCATE").is_some()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Node {
    pub fn open(config: NodeConfig) -> Result<Arc<Self>> {
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
        let blobs = Box::new(crate::blobs::FsBlobStore::new(
            &config.data_dir.join("blobs"),
        )?);
        Ok(Arc::new(Self {
            blobs,
            config,
            keys,
            chain: Mutex::new(chain),
            mempool_writer: spawn_mempool_writer(Arc::clone(&store)),
            relay_queue: Default::default(),
            store,
            http,
            peers,
        }))
    }

    pub async fn current_slot(&self) -> u64 {
        let chain = self.chain.lock().await;
        now_ms().saturating_sub(chain.genesis.start_ms) / chain.genesis.slot_ms
    }

    /// Accepts a transaction from a client: stored durably, acknowledged, then relayed to the
    /// peers (in the next batch) so that whichever proposer owns the next slot has it.
    pub async fn submit(self: &Arc<Self>, jws: &str) -> Result<String, String> {
        let (id, new) = self.accept_tx(jws).await?;
        if new {
            self.relay_queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(jws.to_owned());
        }
        Ok(id)
    }

    /// Accepts a transaction: parsed, checked against the current state (as a one-transaction
    /// block would), stored durably, then acknowledged. Returns its ID and whether it is new
    /// here (a copy already held is acknowledged at once, with no work).
    pub async fn accept_tx(&self, jws: &str) -> Result<(String, bool), String> {
        use emrshare_core::ledger::machine::SignatureCache;
        let tx = SignedTransaction::parse(jws).map_err(|e| e.to_string())?;
        let id = tx.id();
        if self.store.has_tx(&id).map_err(|e| e.to_string())? {
            return Ok((tx.id_text(), false));
        }
        // The signature is checked outside the chain lock (the key comes from the state).
        let (key, signatures) = {
            let chain = self.chain.lock().await;
            let key = chain.state().sender_key(&tx, chain.next_context(now_ms()));
            (key, Arc::clone(&chain.signatures))
        };
        if let Ok(key) = key {
            if !signatures.is_verified(&id, &key) {
                tx.verify(&key).map_err(|e| e.to_string())?;
                signatures.record(&id, &key);
            }
        }
        if let Err(e) = self.chain.lock().await.try_next(&tx, now_ms()) {
            // A sequence number ahead of the state may become valid once earlier
            // transactions of the same sender commit: accept those.
            if !matches!(e, ApplyError::Sequence { expected, got } if got > expected) {
                return Err(e.to_string());
            }
        }
        let (done, durable) = tokio::sync::oneshot::channel();
        self.mempool_writer
            .send((id, jws.to_owned(), done))
            .map_err(|_| "the store is closed".to_string())?;
        durable
            .await
            .map_err(|_| "the store is closed".to_string())??;
        Ok((tx.id_text(), true))
    }

    /// Sends the queued transactions to every peer, a batch per request.
    fn flush_relay(self: &Arc<Self>) {
        let queued =
            std::mem::take(&mut *self.relay_queue.lock().unwrap_or_else(|p| p.into_inner()));
        for batch in queued.chunks(RELAY_BATCH) {
            self.post_to_peers(
                "/v1/consensus/txs",
                serde_json::to_value(emrshare_core::ledger::wire::RelayRequest {
                    txs: batch.to_vec(),
                })
                .expect("requests serialize"),
            );
        }
    }

    /// Applies a certified block and stores it (store first: a crash in between replays it).
    pub async fn accept_block(&self, block: &CertifiedBlock) -> Result<(), ChainError> {
        let mut chain = self.chain.lock().await;
        if block.header.height <= chain.height() {
            return Ok(());
        }
        chain.apply(block)?;
        let mut ids: Vec<[u8; 32]> = block
            .txs
            .iter()
            .filter_map(|t| SignedTransaction::parse(t).ok())
            .map(|t| t.id())
            .collect();
        ids.extend(self.stale_mempool(&chain));
        if let Err(e) = self.store.put_block(block, &ids) {
            tracing::error!("cannot store block {}: {e}", block.header.height);
        }
        Ok(())
    }

    /// Mempool transactions that can never apply any more (replays, bad signatures...), as
    /// opposed to those waiting for an earlier transaction of their sender.
    fn stale_mempool(&self, chain: &Chain) -> Vec<[u8; 32]> {
        self.store
            .mempool()
            .unwrap_or_default()
            .iter()
            .filter_map(|jws| SignedTransaction::parse(jws).ok())
            .filter(|tx| match chain.try_next(tx, now_ms()) {
                Ok(()) => false,
                Err(ApplyError::Sequence { expected, got }) => got < expected,
                Err(_) => true,
            })
            .map(|tx| tx.id())
            .collect()
    }

    /// The auditor side of a proposal.
    pub async fn vote(&self, proposal: &Proposal) -> VoteReply {
        let refused = |reason: String| VoteReply::Refused { reason };
        if proposal.header.height > self.chain.lock().await.height() + 1 {
            self.catch_up().await;
        }
        let slot = self.current_slot().await;
        {
            let chain = self.chain.lock().await;
            if !chain.is_auditor(&self.keys.id) {
                return refused("not an auditor".into());
            }
            if let Err(e) = chain.check_proposal(proposal, slot) {
                return refused(e.to_string());
            }
        }
        let sign = |header| Vote::sign(self.keys.id.clone(), &self.keys.signing, header);
        match self.store.lock_or_get(proposal) {
            Ok(locked) if locked.header == proposal.header => VoteReply::Vote {
                vote: sign(&proposal.header),
            },
            Ok(locked) => VoteReply::Locked {
                vote: sign(&locked.header),
                proposal: Box::new(locked),
            },
            Err(e) => refused(e.to_string()),
        }
    }

    fn auditors(&self, chain: &Chain) -> Vec<Option<Peer>> {
        chain
            .validators()
            .auditors()
            .iter()
            .map(|v| {
                if v.id == self.keys.id {
                    None
                } else {
                    self.config.peers.iter().find(|p| p.id == v.id).cloned()
                }
            })
            .collect()
    }

    async fn ask_vote(
        self: &Arc<Self>,
        peer: Option<Peer>,
        proposal: &Proposal,
    ) -> Option<VoteReply> {
        match peer {
            None => Some(self.vote(proposal).await),
            Some(peer) => {
                let reply = self
                    .http
                    .post(format!("{}/v1/consensus/proposal", peer.url))
                    .json(proposal)
                    .send()
                    .await
                    .ok()?;
                reply.json().await.ok()
            }
        }
    }

    /// Asks every auditor to vote for `proposal`.
    async fn collect(self: &Arc<Self>, proposal: &Proposal) -> Vec<VoteReply> {
        let auditors = self.auditors(&*self.chain.lock().await);
        let asks = auditors.into_iter().enumerate().map(|(i, peer)| {
            let node = Arc::clone(self);
            let proposal = self.proposal_for_auditor(proposal, i);
            tokio::spawn(async move { node.ask_vote(peer, &proposal).await })
        });
        let mut replies = Vec::new();
        for ask in asks.collect::<Vec<_>>() {
            match ask.await.ok().flatten() {
                Some(VoteReply::Refused { reason }) => tracing::debug!("vote refused: {reason}"),
                Some(reply) => replies.push(reply),
                None => {}
            }
        }
        replies
    }

    /// What `proposal` becomes for the `i`th auditor: itself, except in a build with the
    /// `equivocate` feature whose `EMRSHARE_TEST_EQUIVOCATE` variable is set, where each
    /// auditor gets its own version (a test of evidence and of the release of a split round).
    fn proposal_for_auditor(&self, proposal: &Proposal, i: usize) -> Proposal {
        #[cfg(feature = "equivocate")]
        if equivocating() && proposal.header.proposer == self.keys.id && proposal.release.is_none()
        {
            let mut header = proposal.header.clone();
            header.time_ms += i as u64;
            tracing::warn!("equivocating: version {i} of slot {}", header.slot);
            return Proposal::sign(&self.keys.signing, header, proposal.txs.clone(), None);
        }
        let _ = i;
        proposal.clone()
    }

    /// Sorts the auditors' replies to `proposal` (see the module docs).
    async fn tally(&self, proposal: &Proposal, replies: Vec<VoteReply>) -> Tally {
        let (set, chain_id) = {
            let chain = self.chain.lock().await;
            (chain.validators().clone(), chain.genesis.chain_id.clone())
        };
        let mut by_header: BTreeMap<Hash, (Proposal, Vec<Vote>)> = BTreeMap::new();
        for reply in replies {
            let (p, vote) = match reply {
                VoteReply::Vote { vote } => (proposal.clone(), vote),
                VoteReply::Locked { proposal, vote } => (*proposal, vote),
                VoteReply::Refused { .. } => continue,
            };
            let valid = set.is_auditor(&vote.validator)
                && set
                    .key_of(&vote.validator)
                    .is_some_and(|key| vote.is_valid_for(&key, &p.header));
            if valid {
                let entry = by_header.entry(p.header.hash());
                entry.or_insert((p, Vec::new())).1.push(vote);
            }
        }
        if let Some((p, votes)) = by_header.values().find(|(_, v)| v.len() >= set.quorum()) {
            return Tally::Certified(CertifiedBlock {
                header: p.header.clone(),
                certificate: Chain::certificate(&p.header, votes.clone()),
                txs: p.txs.clone(),
            });
        }
        let Some(round) = by_header.values().map(|(p, _)| p.header.round).max() else {
            return Tally::Stuck;
        };
        let release = ReleaseProof {
            height: proposal.header.height,
            round,
            locks: by_header
                .values()
                .filter(|(p, _)| p.header.round == round)
                .flat_map(|(p, votes)| {
                    votes.iter().map(|vote| Lock {
                        header: p.header.clone(),
                        vote: vote.clone(),
                    })
                })
                .collect(),
        };
        let seen: Vec<Proposal> = by_header.into_values().map(|(p, _)| p).collect();
        if release.check(&chain_id, &set).is_ok() {
            return Tally::Released(release, seen);
        }
        seen.into_iter()
            .find(|p| p.header != proposal.header && p.header.round >= proposal.header.round)
            .map_or(Tally::Stuck, Tally::Finish)
    }

    /// One slot as its proposer.
    pub async fn propose(self: &Arc<Self>, slot: u64) {
        let Some(mut proposal) = self.build_proposal(slot, 0, None).await else {
            return;
        };
        for _ in 0..4 {
            let replies = self.collect(&proposal).await;
            // A misbehaving proposer leaves its split behind; the next proposer resolves it.
            #[cfg(feature = "equivocate")]
            if equivocating() {
                return;
            }
            match self.tally(&proposal, replies).await {
                Tally::Certified(block) => {
                    match self.accept_block(&block).await {
                        Ok(()) => self.post_to_peers(
                            "/v1/consensus/block",
                            serde_json::to_value(&block).expect("blocks serialize"),
                        ),
                        Err(e) => tracing::warn!("own certified block refused: {e}"),
                    }
                    return;
                }
                Tally::Released(release, seen) => {
                    tracing::info!(
                        "height {} round {} released: no header of it can be certified",
                        release.height,
                        release.round
                    );
                    self.report_equivocation(&seen).await;
                    let round = release.round + 1;
                    match self.build_proposal(slot, round, Some(release)).await {
                        Some(p) => proposal = p,
                        None => return,
                    }
                }
                Tally::Finish(other) => proposal = other,
                Tally::Stuck => return,
            }
        }
    }

    /// Our proposal for `slot` at `round`, unless the chain has moved past the slot.
    async fn build_proposal(
        &self,
        slot: u64,
        round: u32,
        release: Option<ReleaseProof>,
    ) -> Option<Proposal> {
        let chain = self.chain.lock().await;
        if chain.head().is_some_and(|h| h.slot >= slot) {
            return None;
        }
        let mempool = self.store.mempool().unwrap_or_default();
        let (header, txs) = chain.build(
            &self.keys.id,
            slot,
            round,
            now_ms(),
            &mempool,
            self.config.limits.max_txs_per_block,
        );
        Some(Proposal::sign(&self.keys.signing, header, txs, release))
    }

    /// Submits a Misbehaviour transaction for two proposals among `seen` that one proposer
    /// signed for the same slot and round, if there are such.
    async fn report_equivocation(self: &Arc<Self>, seen: &[Proposal]) {
        for (i, a) in seen.iter().enumerate() {
            for b in &seen[i + 1..] {
                let (a, b) = (a.signed_header(), b.signed_header());
                if a.conflicts_with(&b) {
                    self.submit_evidence(a, b).await;
                    return;
                }
            }
        }
    }

    async fn submit_evidence(self: &Arc<Self>, a: SignedHeader, b: SignedHeader) {
        let accused = a.header.proposer.clone();
        let sequence = {
            let chain = self.chain.lock().await;
            let committed = chain.state().next_sequence(&self.keys.id);
            let pending = self
                .store
                .mempool()
                .unwrap_or_default()
                .iter()
                .filter_map(|jws| SignedTransaction::parse(jws).ok())
                .filter(|tx| tx.transaction().sender == self.keys.id)
                .map(|tx| tx.transaction().sequence + 1)
                .max()
                .unwrap_or(0);
            committed.max(pending)
        };
        let slot = a.header.slot;
        let tx = Transaction {
            chain_id: a.header.chain_id.clone(),
            sender: self.keys.id.clone(),
            sequence,
            body: TxBody::Misbehaviour {
                accused: accused.clone(),
                evidence: vec![
                    serde_json::to_string(&a).expect("headers serialize"),
                    serde_json::to_string(&b).expect("headers serialize"),
                ],
            },
        }
        .sign(&self.keys.signing);
        match self.submit(tx.as_jws()).await {
            Ok(id) => tracing::warn!("{accused} equivocated at slot {slot}: evidence {id}"),
            Err(e) => tracing::debug!("evidence against {accused} not submitted: {e}"),
        }
    }

    /// Sends `body` to `path` on every peer, in the background; an unreachable peer catches
    /// up later, so failures are not retried here.
    fn post_to_peers(self: &Arc<Self>, path: &'static str, body: serde_json::Value) {
        for peer in self.config.peers.clone() {
            let node = Arc::clone(self);
            let body = body.clone();
            tokio::spawn(async move {
                let _ = node
                    .http
                    .post(format!("{}{path}", peer.url))
                    .json(&body)
                    .send()
                    .await;
            });
        }
    }

    /// Offers the mempool to every peer again, in batches: a transaction acknowledged just
    /// before a crash (stored, not yet relayed) still reaches the proposers after the restart.
    /// Peers that hold a transaction already acknowledge it without work.
    async fn relay_mempool(self: &Arc<Self>) {
        let pending = self.store.mempool().unwrap_or_default();
        self.relay_queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(
                pending
                    .into_iter()
                    .take(self.config.limits.max_txs_per_block),
            );
        self.flush_relay();
    }

    /// Fetches blocks we lack from the first peer that has them, among the peers with our
    /// genesis (see [`crate::peers`]).
    pub async fn catch_up(&self) {
        for peer in &self.config.peers {
            if !self.peers.may_sync_from(self, peer).await {
                continue;
            }
            let from = self.chain.lock().await.height();
            loop {
                let next = self.chain.lock().await.height() + 1;
                let Ok(reply) = self
                    .http
                    .get(format!("{}/v1/blocks/{next}", peer.url))
                    .send()
                    .await
                else {
                    break;
                };
                if !reply.status().is_success() {
                    break;
                }
                let Ok(block) = reply.json::<CertifiedBlock>().await else {
                    break;
                };
                if let Err(e) = self.accept_block(&block).await {
                    self.peers.refused_block(peer, block.header.height, &e);
                    break;
                }
            }
            self.peers
                .caught_up(peer, from, self.chain.lock().await.height());
        }
    }

    /// The slot loop: propose in our slots, catch up now and then.
    pub async fn run_consensus(self: Arc<Self>) {
        let slot_ms = self.chain.lock().await.genesis.slot_ms;
        let mut last_slot = None;
        let mut ticks = 0u64;
        loop {
            tokio::time::sleep(Duration::from_millis((slot_ms / 5).max(10))).await;
            ticks += 1;
            let slot = self.current_slot().await;
            if last_slot != Some(slot) {
                last_slot = Some(slot);
                let owner = self
                    .chain
                    .lock()
                    .await
                    .validators()
                    .proposer_of(slot)
                    .clone();
                if owner == self.keys.id {
                    self.propose(slot).await;
                }
            }
            self.flush_relay();
            if ticks % 10 == 0 {
                self.catch_up().await;
            }
            if ticks % 50 == 1 {
                self.relay_mempool().await;
            }
        }
    }
}

/// Why a blob request is refused: an HTTP status and a reason.
pub type Refusal = (u16, String);

pub use emrshare_core::account::BLOB_CLAIM_TYP;
/// How far the time in a claim or access log may be from the node's clock, in seconds.
const MAX_SKEW_S: u64 = 300;

impl Node {
    /// Stores a blob whose SHA-256 is `hash`, owned by the registered party whose signed claim
    /// `{"blob": hex, "owner": id, "iat": seconds}` comes with it.
    pub async fn put_blob(&self, hash: [u8; 32], bytes: &[u8], claim: &str) -> Result<(), Refusal> {
        use emrshare_core::keys::{PartyId, VerifyingKey};
        if emrshare_core::content_hash(bytes) != hash {
            return Err((400, "body does not hash to the blob address".into()));
        }
        let payload =
            emrshare_core::jws::unverified_payload(claim).map_err(|e| (401, e.to_string()))?;
        let owner = payload["owner"]
            .as_str()
            .and_then(|o| PartyId::new(o).ok())
            .ok_or((401, "claim lacks owner".to_string()))?;
        let entry = self
            .chain
            .lock()
            .await
            .state()
            .registry_entry(&owner)
            .ok_or((403, "owner is not registered".to_string()))?;
        if !entry.is_active(now_ms() / 1000) {
            return Err((403, "owner is not active".into()));
        }
        let key = VerifyingKey::from_jwk(&entry.signing_jwk).map_err(|e| (500, e.to_string()))?;
        emrshare_core::jws::verify(claim, &key, BLOB_CLAIM_TYP)
            .map_err(|e| (401, e.to_string()))?;
        let iat = payload["iat"].as_u64().unwrap_or(0);
        if payload["blob"].as_str()
            != Some(emrshare_core::ledger::state::hex32::to_hex(&hash).as_str())
            || now_ms() / 1000 > iat + MAX_SKEW_S
            || iat > now_ms() / 1000 + MAX_SKEW_S
        {
            return Err((401, "claim is for another blob or stale".into()));
        }
        let current = self
            .store
            .claim_blob(&hash, owner.as_str())
            .map_err(|e| (500, e.to_string()))?;
        if current != owner.as_str() {
            return Err((409, "blob already owned by another party".into()));
        }
        self.blobs
            .put(&hash, bytes)
            .map_err(|e| (500, e.to_string()))
    }

    /// Serves a blob to the party whose signed AccessLog transaction authorises the fetch
    /// (the owner, or the grantee of a live grant for this blob), committing that log.
    pub async fn get_blob(
        self: &Arc<Self>,
        hash: [u8; 32],
        access: &str,
    ) -> Result<Vec<u8>, Refusal> {
        use emrshare_core::ledger::tx::{Action, Outcome, TxBody};
        let tx = SignedTransaction::parse(access).map_err(|e| (401, e.to_string()))?;
        let TxBody::AccessLog {
            accessor,
            record_id,
            action,
            at,
            outcome,
            grant_id,
        } = &tx.transaction().body
        else {
            return Err((401, "access must be an AccessLog transaction".into()));
        };
        let now = now_ms() / 1000;
        let hex = emrshare_core::ledger::state::hex32::to_hex(&hash);
        if *record_id != hex
            || *action != Action::Read
            || *outcome != Outcome::Granted
            || at.abs_diff(now) > MAX_SKEW_S
        {
            return Err((401, "access log is for another blob, action or time".into()));
        }
        let owner = self
            .store
            .blob_owner(&hash)
            .map_err(|e| (500, e.to_string()))?
            .ok_or((404, "no such blob".to_string()))?;
        if accessor.as_str() != owner {
            let grant_id = grant_id
                .as_deref()
                .ok_or((403, "not the owner, and no grant named".to_string()))?;
            let grant = self
                .chain
                .lock()
                .await
                .state()
                .grant(grant_id)
                .ok_or((403, "no such grant".to_string()))?;
            if &grant.grantee != accessor
                || grant.record_id != hex
                || grant.grantor.as_str() != owner
                || !grant.allows(Action::Read, now)
            {
                return Err((403, "the grant does not allow this access".into()));
            }
        }
        // Signature, registration and sequence are checked as the chain will check them.
        self.submit(access).await.map_err(|e| (401, e))?;
        self.blobs
            .get(&hash)
            .map_err(|e| (500, e.to_string()))?
            .ok_or((404, "no such blob".to_string()))
    }
}
