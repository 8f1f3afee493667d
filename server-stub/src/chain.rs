//! The node's view of the chain: certified blocks applied to the ledger state machine of core.
//! Only certified blocks change it; proposals are checked against a copy.
//!
//! Besides the transactions, a block has consensus effects computed by the rules in core's
//! `dpos`: missed-slot penalties and the proposer's reward before its transactions, and, at
//! the first block of a cycle, the ranking that names the validator set of the next block.

use emrshare_core::content_hash as sha256;
use emrshare_core::keys::PartyId;
use emrshare_core::keys::VerifyingKey;
use emrshare_core::ledger::block::{
    CertifiedBlock, CertifiedHeader, CommitCertificate, Genesis, Header, Proposal, ReleaseError,
    Transition, ValidatorSet, tx_root,
};
use emrshare_core::ledger::dpos;
use emrshare_core::ledger::machine::{Context, LedgerState, SignatureCache};
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
    #[error("header names the wrong validator set")]
    ValidatorSet,
    #[error("round {0} without a valid release of the previous round: {1}")]
    Release(u32, ReleaseError),
    #[error("block time {got_ms} ms is not after its parent's ({parent_ms} ms)")]
    TimeNotAfterParent { parent_ms: u64, got_ms: u64 },
    #[error("block time {got_ms} ms is too far from this node's clock ({now_ms} ms)")]
    TimeOffClock { now_ms: u64, got_ms: u64 },
    #[error("block time {got_ms} ms is before its slot starts ({slot_start_ms} ms)")]
    TimeBeforeSlot { slot_start_ms: u64, got_ms: u64 },
    #[error("{bytes} bytes of transactions, over the block budget of {budget}")]
    TooLarge { bytes: usize, budget: usize },
}

/// How far ahead of an auditor's clock a proposal's time may be.
pub const MAX_FUTURE_MS: u64 = 5_000;
/// How far behind an auditor's clock a proposal's time may be (a proposal is voted on in
/// its slot, or soon after in a later round).
pub const MAX_PROPOSAL_AGE_MS: u64 = 60_000;

/// The bytes a transaction takes in a block's JSON (the text, quotes and a comma).
pub fn tx_block_bytes(jws: &str) -> usize {
    jws.len() + 3
}

/// The transactions whose signatures this node checked, with the key's thumbprint: each is
/// checked once, not at admission, relay, block building, audit and application each.
#[derive(Default)]
pub struct CheckedSignatures(std::sync::Mutex<std::collections::HashSet<(Hash, String)>>);

/// Entries kept before the set starts over (a re-check costs one ES256 verification).
const CHECKED_SIGNATURES_KEPT: usize = 200_000;

impl SignatureCache for CheckedSignatures {
    fn is_verified(&self, tx_id: &Hash, key: &VerifyingKey) -> bool {
        let set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        set.contains(&(*tx_id, key.thumbprint()))
    }

    fn record(&self, tx_id: &Hash, key: &VerifyingKey) {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if set.len() >= CHECKED_SIGNATURES_KEPT {
            set.clear();
        }
        set.insert((*tx_id, key.thumbprint()));
    }
}

/// What admission checks a transaction against: the state under the latest block (an O(1)
/// copy, so the chain is not held while signatures are checked) and the context the next
/// block would apply it in.
pub struct AdmissionView {
    pub state: LedgerState,
    pub chain_id: String,
    pub height: u64,
    /// Unix seconds.
    pub now: u64,
    pub signatures: std::sync::Arc<CheckedSignatures>,
}

impl AdmissionView {
    pub fn context(&self) -> Context<'_> {
        Context {
            chain_id: &self.chain_id,
            height: self.height,
            now: self.now,
        }
    }
}

pub struct Chain {
    pub genesis: Genesis,
    pub signatures: std::sync::Arc<CheckedSignatures>,
    state: LedgerState,
    head: Option<CertifiedHeader>,
    /// The validator set of the next block (named by the head's `next_validators_hash`).
    set: ValidatorSet,
    transitions: Vec<Transition>,
    client: LightClient,
}

impl Chain {
    pub fn new(genesis: Genesis) -> Self {
        let client = LightClient::new(&genesis.chain_id, genesis.validators.clone())
            .expect("genesis was checked");
        Self {
            signatures: Default::default(),
            state: LedgerState::from_genesis(&genesis),
            set: genesis.validators.clone(),
            genesis,
            head: None,
            transitions: Vec::new(),
            client,
        }
    }

    pub fn height(&self) -> u64 {
        self.head.as_ref().map_or(0, |h| h.header.height)
    }

    pub fn head(&self) -> Option<&Header> {
        self.head.as_ref().map(|h| &h.header)
    }

    /// The latest certified header and the state under it: a copy in O(1), so answers are
    /// computed without holding the chain.
    pub fn snapshot(&self) -> Option<(CertifiedHeader, LedgerState)> {
        Some((self.head.clone()?, self.state.clone()))
    }

    /// The state and context a transaction admitted now is checked in.
    pub fn admission_view(&self, now_ms: u64) -> AdmissionView {
        AdmissionView {
            state: self.state.clone(),
            chain_id: self.genesis.chain_id.clone(),
            height: self.height() + 1,
            now: now_ms / 1000,
            signatures: std::sync::Arc::clone(&self.signatures),
        }
    }

    /// The validator set that proposes and certifies the next block.
    pub fn validators(&self) -> &ValidatorSet {
        &self.set
    }

    /// Every change of validator set so far, oldest first.
    pub fn transitions(&self) -> &[Transition] {
        &self.transitions
    }

    pub fn state(&self) -> &LedgerState {
        &self.state
    }

    /// The hash block 1 builds on: the genesis file's hash.
    pub fn genesis_hash(&self) -> Hash {
        sha256(&serde_json::to_vec(&self.genesis).expect("genesis serializes"))
    }

    fn head_hash(&self) -> Hash {
        self.head()
            .map_or_else(|| self.genesis_hash(), Header::hash)
    }

    fn context(&self, header: &Header) -> Context<'_> {
        Context {
            chain_id: &self.genesis.chain_id,
            height: header.height,
            now: header.time_ms / 1000,
        }
    }

    /// Applies a block's consensus effects, then `txs`, to a copy of the state; returns it
    /// and the validator set of the following block, or which transaction failed.
    fn execute(
        &self,
        header: &Header,
        txs: &[String],
    ) -> Result<(LedgerState, ValidatorSet), ChainError> {
        let mut state = self.state.clone();
        let previous_slot = self.head().map(|h| h.slot);
        if let Some(previous_slot) = previous_slot {
            for missed in dpos::missed_proposers(previous_slot, header.slot, &self.set) {
                state.adjust_credit(&missed, -dpos::MISSED_SLOT_PENALTY);
            }
        }
        state.adjust_credit(&header.proposer, dpos::PROPOSAL_REWARD);
        for (index, jws) in txs.iter().enumerate() {
            let tx = SignedTransaction::parse(jws).map_err(|e| ChainError::Transaction {
                index,
                reason: e.to_string(),
            })?;
            state
                .apply_cached(&tx, self.context(header), &*self.signatures)
                .map_err(|e| ChainError::Transaction {
                    index,
                    reason: e.to_string(),
                })?;
        }
        let next = self.next_set(header, &state);
        Ok((state, next))
    }

    /// The validator set of the block after `header`, whose state is `state`: re-ranked at
    /// the first block of a cycle, otherwise the current one.
    fn next_set(&self, header: &Header, state: &LedgerState) -> ValidatorSet {
        let cycle_slots = self.genesis.validators.proposers;
        if dpos::starts_cycle(self.head().map(|h| h.slot), header.slot, cycle_slots) {
            dpos::next_set(
                &self.set,
                &state.members(),
                self.genesis.validators.proposers,
                self.genesis.validators.auditors,
            )
        } else {
            self.set.clone()
        }
    }

    fn check_contents(
        &self,
        header: &Header,
        txs: &[String],
    ) -> Result<(LedgerState, ValidatorSet), ChainError> {
        if header.height != self.height() + 1 {
            return Err(ChainError::Height {
                expected: self.height() + 1,
                got: header.height,
            });
        }
        if header.previous != self.head_hash() {
            return Err(ChainError::Previous);
        }
        if self.head().is_some_and(|h| header.slot <= h.slot) {
            return Err(ChainError::Slot);
        }
        if header.validators_hash != self.set.hash() {
            return Err(ChainError::ValidatorSet);
        }
        // Time moves forward and a block is not dated before its slot: the block time is
        // the `now` its transactions are checked at (grant expiry, validity periods).
        let parent_ms = self.head().map_or(self.genesis.start_ms, |h| h.time_ms);
        if header.time_ms <= parent_ms && self.head().is_some() {
            return Err(ChainError::TimeNotAfterParent {
                parent_ms,
                got_ms: header.time_ms,
            });
        }
        let slot_start_ms = self
            .genesis
            .start_ms
            .saturating_add(header.slot.saturating_mul(self.genesis.slot_ms));
        if header.time_ms < slot_start_ms {
            return Err(ChainError::TimeBeforeSlot {
                slot_start_ms,
                got_ms: header.time_ms,
            });
        }
        let (state, next) = self.execute(header, txs)?;
        let parsed: Vec<SignedTransaction> = txs
            .iter()
            .filter_map(|t| SignedTransaction::parse(t).ok())
            .collect();
        if header.tx_root != tx_root(&parsed)
            || header.state_root != state.root()
            || header.next_validators_hash != next.hash()
            || header.chain_id != self.genesis.chain_id
        {
            return Err(ChainError::Roots);
        }
        Ok((state, next))
    }

    /// Applies a certified block: certificate, height, link, transactions and roots checked.
    pub fn apply(&mut self, block: &CertifiedBlock) -> Result<(), ChainError> {
        let (state, next) = self.check_contents(&block.header, &block.txs)?;
        let certified = block.certified_header();
        match self.client.verify_header(&certified) {
            Verdict::Success => {}
            other => return Err(ChainError::Certificate(other)),
        }
        if next != self.set {
            match self.client.follow_transition(&certified, next.clone()) {
                Verdict::Success => {}
                other => return Err(ChainError::Certificate(other)),
            }
            tracing::info!(
                "validator set changes after height {}: proposers {:?}, auditors {:?}",
                block.header.height,
                next.proposer_ids().map(|p| p.as_str()).collect::<Vec<_>>(),
                next.auditors()
                    .iter()
                    .map(|v| v.id.as_str())
                    .collect::<Vec<_>>()
            );
            self.transitions.push(Transition {
                last: certified.clone(),
                next: next.clone(),
            });
            self.set = next;
        }
        self.state = state;
        self.head = Some(certified);
        Ok(())
    }

    /// Builds the next block from candidate transactions, skipping those that do not apply,
    /// with at most `max` transactions and `budget` bytes of them (see [`tx_block_bytes`]),
    /// so the block always fits the peers' body limit.
    #[allow(clippy::too_many_arguments)] // one block's every input, named
    pub fn build(
        &self,
        proposer: &PartyId,
        slot: u64,
        round: u32,
        time_ms: u64,
        candidates: &[std::sync::Arc<SignedTransaction>],
        max: usize,
        budget: usize,
    ) -> (Header, Vec<String>) {
        // Never before the parent or the slot (the auditors' checks in `check_contents`).
        let parent_ms = self.head().map_or(0, |h| h.time_ms + 1);
        let slot_start_ms = self.genesis.start_ms + slot * self.genesis.slot_ms;
        let time_ms = time_ms.max(parent_ms).max(slot_start_ms);
        let mut included = Vec::new();
        let mut parsed = Vec::new();
        let mut header = Header {
            chain_id: self.genesis.chain_id.clone(),
            height: self.height() + 1,
            slot,
            round,
            previous: self.head_hash(),
            time_ms,
            proposer: proposer.clone(),
            tx_root: [0; 32],
            state_root: [0; 32],
            validators_hash: self.set.hash(),
            next_validators_hash: [0; 32],
        };
        // The consensus effects first, exactly as `execute` applies them.
        let (mut state, _) = self
            .execute(&header, &[])
            .expect("a block without transactions applies");
        let mut bytes = 0;
        for tx in candidates {
            if included.len() >= max {
                break;
            }
            let size = tx_block_bytes(tx.as_jws());
            if bytes + size > budget {
                continue;
            }
            if state
                .apply_cached(tx, self.context(&header), &*self.signatures)
                .is_ok()
            {
                bytes += size;
                included.push(tx.as_jws().to_owned());
                parsed.push((**tx).clone());
            }
        }
        header.tx_root = tx_root(&parsed);
        header.state_root = state.root();
        header.next_validators_hash = self.next_set(&header, &state).hash();
        (header, included)
    }

    /// An auditor's check of a proposal: proposer owns the slot and signed it; a round above
    /// 0 comes with a valid release of the round before; contents valid.
    pub fn check_proposal(
        &self,
        proposal: &Proposal,
        current_slot: u64,
        now_ms: u64,
        budget: usize,
    ) -> Result<(), ChainError> {
        let header = &proposal.header;
        if header.slot > current_slot {
            return Err(ChainError::FutureSlot(header.slot));
        }
        if header.time_ms > now_ms + MAX_FUTURE_MS || header.time_ms + MAX_PROPOSAL_AGE_MS < now_ms
        {
            return Err(ChainError::TimeOffClock {
                now_ms,
                got_ms: header.time_ms,
            });
        }
        let bytes: usize = proposal.txs.iter().map(|t| tx_block_bytes(t)).sum();
        if bytes > budget {
            return Err(ChainError::TooLarge { bytes, budget });
        }
        let owner = self.set.proposer_of(header.slot);
        if owner != &header.proposer {
            return Err(ChainError::WrongProposer(
                header.proposer.clone(),
                header.slot,
            ));
        }
        let key = self
            .set
            .key_of(owner)
            .ok_or(ChainError::ProposerSignature)?;
        if !proposal.signed_header().is_signed_by(&key) {
            return Err(ChainError::ProposerSignature);
        }
        if header.round > 0 {
            let release = proposal
                .release
                .as_ref()
                .ok_or(ChainError::Release(header.round, ReleaseError::NotStalled))?;
            if release.height != header.height || release.round + 1 != header.round {
                return Err(ChainError::Release(header.round, ReleaseError::WrongRound));
            }
            release
                .check(&self.genesis.chain_id, &self.set)
                .map_err(|e| ChainError::Release(header.round, e))?;
        }
        self.check_contents(header, &proposal.txs).map(|_| ())
    }

    pub fn is_auditor(&self, id: &PartyId) -> bool {
        self.set.is_auditor(id)
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

#[cfg(test)]
mod tests {
    use super::*;
    use emrshare_core::keys::SigningKey;
    use emrshare_core::ledger::block::{Validator, Vote};
    use emrshare_core::ledger::governance::{GovAction, Proposal as GovProposal};
    use emrshare_core::ledger::tx::{Role, Transaction, TxBody};
    use std::sync::Arc;

    const SLOT_MS: u64 = 1000;
    const START_MS: u64 = 1_700_000_000_000;

    struct Consortium {
        chain: Chain,
        proposer: (PartyId, SigningKey),
        auditor: (PartyId, SigningKey),
    }

    fn consortium() -> Consortium {
        let proposer = (PartyId::new("node:0").unwrap(), SigningKey::generate());
        let auditor = (PartyId::new("node:1").unwrap(), SigningKey::generate());
        let validators = [&proposer, &auditor]
            .iter()
            .map(|(id, key)| Validator {
                id: id.clone(),
                signing_jwk: key.verifying_key().to_jwk(None),
                credit: 100,
            })
            .collect();
        let genesis = Genesis {
            chain_id: "c".into(),
            validators: ValidatorSet {
                validators,
                proposers: 1,
                auditors: 1,
            },
            slot_ms: SLOT_MS,
            start_ms: START_MS,
            governance: None,
        };
        Consortium {
            chain: Chain::new(genesis),
            proposer,
            auditor,
        }
    }

    fn slot_start(slot: u64) -> u64 {
        START_MS + slot * SLOT_MS
    }

    impl Consortium {
        fn proposal(&self, slot: u64, time_ms: u64, txs: &[Arc<SignedTransaction>]) -> Proposal {
            let (mut header, txs) =
                self.chain
                    .build(&self.proposer.0, slot, 0, time_ms, txs, 100, usize::MAX);
            header.time_ms = time_ms;
            Proposal::sign(&self.proposer.1, header, txs, None)
        }

        fn certify(&mut self, proposal: &Proposal) {
            let vote = Vote::sign(self.auditor.0.clone(), &self.auditor.1, &proposal.header);
            let block = CertifiedBlock {
                header: proposal.header.clone(),
                certificate: Chain::certificate(&proposal.header, vec![vote]),
                txs: proposal.txs.clone(),
            };
            self.chain.apply(&block).unwrap();
        }
    }

    /// The admission of `hospital:h<i>`, approved by both members (the default council:
    /// every validator, t = 2 of 2).
    fn registration(c: &Consortium, i: usize) -> Arc<SignedTransaction> {
        let key = SigningKey::generate();
        let id = PartyId::new(format!("hospital:h{i}")).unwrap();
        let encryption = emrshare_core::PrivateKeySet::generate(
            Some(id.clone()),
            emrshare_core::keys::RsaBits::B2048,
        );
        let proposal = GovProposal::new(
            "c",
            START_MS / 1000 + 3600,
            GovAction::Admit {
                id: id.clone(),
                role: Role::Hospital,
                signing_jwk: key.verifying_key().to_jwk(None),
                encryption_jwk: encryption.decryption.encryption_key().to_jwk(None),
                valid_from: 0,
                valid_until: u64::MAX,
                voucher_key: None,
            },
        );
        let approvals = [&c.proposer, &c.auditor]
            .iter()
            .map(|(member, k)| proposal.approve(member, k))
            .collect();
        Arc::new(
            Transaction {
                chain_id: "c".into(),
                sender: id.clone(),
                sequence: 0,
                body: TxBody::Govern {
                    proposal,
                    approvals,
                },
            }
            .sign(&key),
        )
    }

    /// A proposer picks its block's time, which is the `now` of every transaction in it
    /// (grant expiry, validity): auditors take only a time after the parent's, not before
    /// the slot, and near their own clock.
    #[test]
    fn block_times_move_forward_and_stay_near_the_clock() {
        let mut c = consortium();
        let now = slot_start(10) + 100;
        let first = c.proposal(10, now, &[]);
        c.chain.check_proposal(&first, 10, now, usize::MAX).unwrap();
        c.certify(&first);
        let cases = [
            (
                "before the parent",
                c.proposal(11, now - 1, &[]),
                now + SLOT_MS,
            ),
            (
                "equal to the parent",
                c.proposal(11, now, &[]),
                now + SLOT_MS,
            ),
            (
                "before its slot",
                c.proposal(12, slot_start(12) - 1, &[]),
                slot_start(12) + 10,
            ),
            (
                "far in the future",
                c.proposal(11, now + 3_600_000, &[]),
                now + SLOT_MS,
            ),
            (
                "far in the past",
                c.proposal(11, now + 1, &[]),
                now + 3_600_000,
            ),
        ];
        for (what, proposal, clock) in cases {
            let slot = proposal.header.slot;
            assert!(
                c.chain
                    .check_proposal(&proposal, slot + 1000, clock, usize::MAX)
                    .is_err(),
                "{what}"
            );
        }
        let next = c.proposal(11, now + SLOT_MS, &[]);
        c.chain
            .check_proposal(&next, 11, now + SLOT_MS, usize::MAX)
            .unwrap();
    }

    /// Blocks are built under the byte budget, whatever is pending; an auditor refuses a
    /// proposal over it.
    #[test]
    fn blocks_are_built_under_the_byte_budget() {
        let c = consortium();
        let txs: Vec<_> = (0..6).map(|i| registration(&c, i)).collect();
        let one = tx_block_bytes(txs[0].as_jws());
        let budget = 2 * one + one / 2;
        let now = slot_start(3);
        let (header, included) = c.chain.build(&c.proposer.0, 3, 0, now, &txs, 100, budget);
        assert_eq!(included.len(), 2);
        assert!(included.iter().map(|t| tx_block_bytes(t)).sum::<usize>() <= budget);
        let fits = Proposal::sign(&c.proposer.1, header, included, None);
        c.chain.check_proposal(&fits, 3, now, budget).unwrap();
        let all = c.proposal(3, now, &txs);
        assert_eq!(all.txs.len(), 6);
        assert!(matches!(
            c.chain.check_proposal(&all, 3, now, budget),
            Err(ChainError::TooLarge { .. })
        ));
    }
}
