//! A running node: the chain, the store, the peers, and the improved-DPoS slot loop.
//!
//! Each slot has one proposer (round-robin over the RPNs). The proposer builds a block from
//! its mempool, signs it, and asks every auditor (ATN) to vote. An auditor checks everything,
//! records its lock durably (one header per height), and only then votes. With more than
//! half of the auditors' votes the proposer broadcasts the certified block; every node applies
//! only certified blocks. An auditor already locked at that height answers with its locked
//! proposal, and the proposer then gathers votes for that one instead, so a proposer that
//! crashed after collecting some votes does not stall the height. A node that is behind
//! fetches the blocks it lacks from its peers.

use crate::chain::{Chain, ChainError};
use crate::config::{NodeConfig, Peer};
use crate::store::Store;
use anyhow::Result;
use emrshare_core::PrivateKeySet;
use emrshare_core::ledger::block::{CertifiedBlock, Proposal, Vote};
use emrshare_core::ledger::machine::ApplyError;
use emrshare_core::ledger::tx::SignedTransaction;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

pub struct Node {
    pub blobs: Box<dyn crate::blobs::BlobStore>,
    pub config: NodeConfig,
    pub keys: PrivateKeySet,
    pub chain: Mutex<Chain>,
    pub store: Store,
    pub http: reqwest::Client,
}

/// An auditor's answer to a proposal.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum VoteReply {
    Vote { vote: Vote },
    Locked { proposal: Proposal },
    Refused { reason: String },
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Node {
    pub fn open(config: NodeConfig) -> Result<Arc<Self>> {
        let genesis = crate::config::load_genesis(&config.genesis_file)?;
        let keys = PrivateKeySet::from_json(&std::fs::read(&config.key_file)?)?;
        anyhow::ensure!(
            keys.id == config.id,
            "key file is for {}, config for {}",
            keys.id,
            config.id
        );
        let store = Store::open(&config.data_dir)?;
        let mut chain = Chain::new(genesis);
        // Recovery: replay every stored certified block through the same checks.
        for block in store.blocks()? {
            chain.apply(&block)?;
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
            store,
            http,
        }))
    }

    pub async fn current_slot(&self) -> u64 {
        let chain = self.chain.lock().await;
        now_ms().saturating_sub(chain.genesis.start_ms) / chain.genesis.slot_ms
    }

    /// Accepts a transaction from a client: stored durably, acknowledged, then relayed to the
    /// peers so that whichever proposer owns the next slot has it.
    pub async fn submit(self: &Arc<Self>, jws: &str) -> Result<String, String> {
        let id = self.accept_tx(jws).await?;
        self.post_to_peers("/v1/consensus/tx", serde_json::json!({"jws": jws}));
        Ok(id)
    }

    /// Accepts a transaction: parsed, checked against the current state (as a one-transaction
    /// block would), stored durably, then acknowledged.
    pub async fn accept_tx(&self, jws: &str) -> Result<String, String> {
        let tx = SignedTransaction::parse(jws).map_err(|e| e.to_string())?;
        if let Err(e) = self.chain.lock().await.try_next(&tx, now_ms()) {
            // A sequence number ahead of the state may become valid once earlier
            // transactions of the same sender commit: accept those.
            if !matches!(e, ApplyError::Sequence { expected, got } if got > expected) {
                return Err(e.to_string());
            }
        }
        self.store
            .add_tx(&tx.id(), jws)
            .map_err(|e| e.to_string())?;
        Ok(tx.id_text())
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
        if !self.chain.lock().await.is_auditor(&self.keys.id) {
            return VoteReply::Refused {
                reason: "not an auditor".into(),
            };
        }
        if proposal.header.height > self.chain.lock().await.height() + 1 {
            self.catch_up().await;
        }
        let slot = self.current_slot().await;
        if let Err(e) = self.chain.lock().await.check_proposal(proposal, slot) {
            return VoteReply::Refused {
                reason: e.to_string(),
            };
        }
        match self.store.lock_or_get(proposal) {
            Ok(locked) if locked.header == proposal.header => VoteReply::Vote {
                vote: Vote::sign(self.keys.id.clone(), &self.keys.signing, &proposal.header),
            },
            Ok(locked) => VoteReply::Locked { proposal: locked },
            Err(e) => VoteReply::Refused {
                reason: e.to_string(),
            },
        }
    }

    fn auditors(&self, chain: &Chain) -> Vec<Option<Peer>> {
        chain
            .genesis
            .validators
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

    /// Collects votes for `proposal`; returns the certified block or the proposals others
    /// are locked on.
    async fn collect(
        self: &Arc<Self>,
        proposal: &Proposal,
    ) -> (Option<CertifiedBlock>, Vec<Proposal>) {
        let (auditors, quorum) = {
            let chain = self.chain.lock().await;
            (self.auditors(&chain), chain.genesis.validators.quorum())
        };
        let asks = auditors.into_iter().map(|peer| {
            let node = Arc::clone(self);
            let proposal = proposal.clone();
            tokio::spawn(async move { node.ask_vote(peer, &proposal).await })
        });
        let mut votes = Vec::new();
        let mut locked = Vec::new();
        for ask in asks.collect::<Vec<_>>() {
            match ask.await.ok().flatten() {
                Some(VoteReply::Vote { vote }) => votes.push(vote),
                Some(VoteReply::Locked { proposal }) => locked.push(proposal),
                Some(VoteReply::Refused { reason }) => tracing::debug!("vote refused: {reason}"),
                None => {}
            }
        }
        if votes.len() >= quorum {
            let certificate = Chain::certificate(&proposal.header, votes);
            let block = CertifiedBlock {
                header: proposal.header.clone(),
                certificate,
                txs: proposal.txs.clone(),
            };
            return (Some(block), locked);
        }
        (None, locked)
    }

    /// One slot as its proposer.
    pub async fn propose(self: &Arc<Self>, slot: u64) {
        let proposal = {
            let chain = self.chain.lock().await;
            if chain.head().is_some_and(|h| h.slot >= slot) {
                return;
            }
            let mempool = self.store.mempool().unwrap_or_default();
            let (header, txs) = chain.build(
                &self.keys.id,
                slot,
                now_ms(),
                &mempool,
                self.config.limits.max_txs_per_block,
            );
            if txs.is_empty()
                && chain.height() > 0
                && chain.head().is_some_and(|h| slot < h.slot + 8)
            {
                return; // nothing to do: an empty block at most every 8 slots, as a heartbeat
            }
            Chain::sign_proposal(&self.keys.signing, header, txs)
        };
        // An auditor already locked at this height (a proposer crashed mid-collection) makes
        // that proposal the one to finish: proposing a rival would split the auditors.
        let proposal = self
            .existing_lock(proposal.header.height)
            .await
            .unwrap_or(proposal);
        let (mut block, locked) = self.collect(&proposal).await;
        if block.is_none() {
            if let Some(other) = locked.into_iter().next() {
                block = self.collect(&other).await.0;
            }
        }
        if let Some(block) = block {
            match self.accept_block(&block).await {
                Ok(()) => self.post_to_peers(
                    "/v1/consensus/block",
                    serde_json::to_value(&block).expect("blocks serialize"),
                ),
                Err(e) => tracing::warn!("own certified block refused: {e}"),
            }
        }
    }

    /// A proposal some auditor is locked on at `height`, if any answers with one.
    async fn existing_lock(self: &Arc<Self>, height: u64) -> Option<Proposal> {
        let auditors = self.auditors(&*self.chain.lock().await);
        for peer in auditors {
            let lock = match peer {
                None => self.store.lock(height).ok().flatten(),
                Some(peer) => {
                    let reply = self
                        .http
                        .get(format!("{}/v1/consensus/lock/{height}", peer.url))
                        .send()
                        .await
                        .ok()?;
                    if !reply.status().is_success() {
                        continue;
                    }
                    reply.json::<Option<Proposal>>().await.ok().flatten()
                }
            };
            if lock.is_some() {
                return lock;
            }
        }
        None
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

    /// Offers the mempool to every peer again: a transaction acknowledged just before a crash
    /// (stored, not yet relayed) still reaches the proposers after the restart.
    async fn relay_mempool(self: &Arc<Self>) {
        let pending = self.store.mempool().unwrap_or_default();
        for jws in pending
            .into_iter()
            .take(self.config.limits.max_txs_per_block)
        {
            self.post_to_peers("/v1/consensus/tx", serde_json::json!({"jws": jws}));
        }
    }

    /// Fetches blocks we lack from the first peer that has them.
    pub async fn catch_up(&self) {
        for peer in &self.config.peers {
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
                if self.accept_block(&block).await.is_err() {
                    break;
                }
            }
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
                    .genesis
                    .validators
                    .proposer_of(slot)
                    .clone();
                if owner == self.keys.id {
                    self.propose(slot).await;
                }
            }
            if ticks % 10 == 0 {
                self.catch_up().await;
                self.relay_mempool().await;
            }
        }
    }
}

/// Why a blob request is refused: an HTTP status and a reason.
pub type Refusal = (u16, String);

/// The `typ` of an owner's signed claim on an uploaded blob.
pub const BLOB_CLAIM_TYP: &str = "emr-blob+jwt";
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
