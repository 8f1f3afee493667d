//! The node's view of the chain: certified blocks applied to the ledger state machine of core.
//! Only certified blocks change it; proposals are checked against a copy.

use emrshare_core::b64;
use emrshare_core::content_hash as sha256;
use emrshare_core::keys::{PartyId, SigningKey, VerifyingKey};
use emrshare_core::ledger::block::{
    CertifiedBlock, CommitCertificate, Genesis, Header, Proposal, tx_root, vote_message,
};
use emrshare_core::ledger::machine::{ApplyError, Context, LedgerState};
use emrshare_core::ledger::merkle::Hash;
use emrshare_core::ledger::tx::SignedTransaction;
use emrshare_core::ledger::verify::{LightClient, Verdict};

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("block at height {got}, expected {expected}")]
    Height { expected: u64, got: u64 },
    #[error("block does not extend our head")]
    Previous,
    #[error("certificate refused: {0:?}")]
    Certificate(Verdict),
    #[error("transaction {index} invalid: {reason}")]
    Transaction { index: usize, reason: String },
    #[error("header roots do not match its contents")]
    Roots,
    #[error("{0} does not own slot {1}")]
    WrongProposer(PartyId, u64),
    #[error("bad proposer signature")]
    ProposerSignature,
    #[error("slot {0} is in the future")]
    FutureSlot(u64),
    #[error("slot does not advance")]
    Slot,
}

pub struct Chain {
    pub genesis: Genesis,
    state: LedgerState,
    head: Option<Header>,
    client: LightClient,
}

impl Chain {
    pub fn new(genesis: Genesis) -> Self {
        let client = LightClient::new(&genesis.chain_id, genesis.validators.clone())
            .expect("genesis was checked");
        Self {
            genesis,
            state: LedgerState::new(),
            head: None,
            client,
        }
    }

    pub fn height(&self) -> u64 {
        self.head.as_ref().map_or(0, |h| h.height)
    }

    pub fn head(&self) -> Option<&Header> {
        self.head.as_ref()
    }

    pub fn state(&self) -> &LedgerState {
        &self.state
    }

    /// The hash block 1 builds on: the genesis file's hash.
    pub fn genesis_hash(&self) -> Hash {
        sha256(&serde_json::to_vec(&self.genesis).expect("genesis serializes"))
    }

    fn head_hash(&self) -> Hash {
        self.head
            .as_ref()
            .map_or_else(|| self.genesis_hash(), Header::hash)
    }

    fn context(&self, header: &Header) -> Context<'_> {
        Context {
            chain_id: &self.genesis.chain_id,
            height: header.height,
            now: header.time_ms / 1000,
        }
    }

    /// Whether `tx` would apply in the next block, built now (`now_ms`); the state is unchanged.
    pub fn try_next(&self, tx: &SignedTransaction, now_ms: u64) -> Result<(), ApplyError> {
        let ctx = Context {
            chain_id: &self.genesis.chain_id,
            height: self.height() + 1,
            now: now_ms / 1000,
        };
        self.state.clone().apply(tx, ctx)
    }

    /// Applies `txs` to a copy of the state; returns it, or which transaction failed.
    fn execute(&self, header: &Header, txs: &[String]) -> Result<LedgerState, ChainError> {
        let mut state = self.state.clone();
        for (index, jws) in txs.iter().enumerate() {
            let tx = SignedTransaction::parse(jws).map_err(|e| ChainError::Transaction {
                index,
                reason: e.to_string(),
            })?;
            state
                .apply(&tx, self.context(header))
                .map_err(|e| ChainError::Transaction {
                    index,
                    reason: e.to_string(),
                })?;
        }
        Ok(state)
    }

    fn check_contents(&self, header: &Header, txs: &[String]) -> Result<LedgerState, ChainError> {
        if header.height != self.height() + 1 {
            return Err(ChainError::Height {
                expected: self.height() + 1,
                got: header.height,
            });
        }
        if header.previous != self.head_hash() {
            return Err(ChainError::Previous);
        }
        if self.head.as_ref().is_some_and(|h| header.slot <= h.slot) {
            return Err(ChainError::Slot);
        }
        let state = self.execute(header, txs)?;
        let parsed: Vec<SignedTransaction> = txs
            .iter()
            .filter_map(|t| SignedTransaction::parse(t).ok())
            .collect();
        if header.tx_root != tx_root(&parsed)
            || header.state_root != state.root()
            || header.validators_hash != self.genesis.validators.hash()
            || header.chain_id != self.genesis.chain_id
        {
            return Err(ChainError::Roots);
        }
        Ok(state)
    }

    /// Applies a certified block: certificate, height, link, transactions and roots checked.
    pub fn apply(&mut self, block: &CertifiedBlock) -> Result<(), ChainError> {
        let state = self.check_contents(&block.header, &block.txs)?;
        match self.client.verify_header(&block.certified_header()) {
            Verdict::Success => {}
            other => return Err(ChainError::Certificate(other)),
        }
        self.state = state;
        self.head = Some(block.header.clone());
        Ok(())
    }

    /// Builds the next block from candidate transactions, skipping those that do not apply.
    pub fn build(
        &self,
        proposer: &PartyId,
        slot: u64,
        time_ms: u64,
        candidates: &[String],
        max: usize,
    ) -> (Header, Vec<String>) {
        let mut state = self.state.clone();
        let mut included = Vec::new();
        let mut parsed = Vec::new();
        let mut header = Header {
            chain_id: self.genesis.chain_id.clone(),
            height: self.height() + 1,
            slot,
            previous: self.head_hash(),
            time_ms,
            proposer: proposer.clone(),
            tx_root: [0; 32],
            state_root: [0; 32],
            validators_hash: self.genesis.validators.hash(),
        };
        for jws in candidates.iter().take(max * 2) {
            if included.len() >= max {
                break;
            }
            let Ok(tx) = SignedTransaction::parse(jws) else {
                continue;
            };
            if state.apply(&tx, self.context(&header)).is_ok() {
                included.push(jws.clone());
                parsed.push(tx);
            }
        }
        header.tx_root = tx_root(&parsed);
        header.state_root = state.root();
        (header, included)
    }

    /// An auditor's check of a proposal: proposer owns the slot and signed it; contents valid.
    pub fn check_proposal(&self, proposal: &Proposal, current_slot: u64) -> Result<(), ChainError> {
        let header = &proposal.header;
        if header.slot > current_slot {
            return Err(ChainError::FutureSlot(header.slot));
        }
        let owner = self.genesis.validators.proposer_of(header.slot);
        if owner != &header.proposer {
            return Err(ChainError::WrongProposer(
                header.proposer.clone(),
                header.slot,
            ));
        }
        let key = self
            .validator_key(owner)
            .ok_or(ChainError::ProposerSignature)?;
        let signature = b64::decode(&proposal.proposer_signature).unwrap_or_default();
        if !key.verify(&vote_message(&header.chain_id, &header.hash()), &signature) {
            return Err(ChainError::ProposerSignature);
        }
        self.check_contents(header, &proposal.txs).map(|_| ())
    }

    pub fn validator_key(&self, id: &PartyId) -> Option<VerifyingKey> {
        let v = self
            .genesis
            .validators
            .validators
            .iter()
            .find(|v| &v.id == id)?;
        VerifyingKey::from_jwk(&v.signing_jwk).ok()
    }

    pub fn is_auditor(&self, id: &PartyId) -> bool {
        self.genesis
            .validators
            .auditors()
            .iter()
            .any(|v| &v.id == id)
    }

    pub fn sign_proposal(key: &SigningKey, header: Header, txs: Vec<String>) -> Proposal {
        let signature = b64::encode(key.sign(&vote_message(&header.chain_id, &header.hash())));
        Proposal {
            header,
            txs,
            proposer_signature: signature,
        }
    }

    pub fn certificate(
        header: &Header,
        votes: Vec<emrshare_core::ledger::block::Vote>,
    ) -> CommitCertificate {
        CommitCertificate {
            header_hash: header.hash(),
            votes,
        }
    }
}
