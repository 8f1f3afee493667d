//! The node's view of the chain: decided blocks applied to the ledger state machine of core.
//! Only certified blocks change it; proposals are checked against a copy.
//!
//! Besides the transactions, a block has consensus effects computed by the rules in core's
//! `dpos`: penalties of the proposers whose rounds did not decide and the proposer's reward
//! before its transactions, and, at the first block of a cycle, the ranking that names the
//! validator set of the next block.

use emrshare_core::content_hash as sha256;
use emrshare_core::keys::PartyId;
use emrshare_core::keys::VerifyingKey;
use emrshare_core::ledger::block::{
    CertifiedBlock, CertifiedHeader, CommitCertificate, Genesis, Header, Transition, ValidatorSet,
    tx_root,
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
    #[error("{0} is not the proposer of round {1}")]
    WrongProposer(PartyId, u32),
    #[error("header names the wrong validator set")]
    ValidatorSet,
    #[error("block time {got_ms} ms is not after its parent's ({parent_ms} ms)")]
    TimeNotAfterParent { parent_ms: u64, got_ms: u64 },
    #[error("block time {got_ms} ms is too far from this node's clock ({now_ms} ms)")]
    TimeOffClock { now_ms: u64, got_ms: u64 },
    #[error("{bytes} bytes of transactions, over the block budget of {budget}")]
    TooLarge { bytes: usize, budget: usize },
    #[error("the previous block's signers are misnamed: {0}")]
    LastCommit(&'static str),
}

/// How far ahead of a validator's clock a proposal's time may be.
pub const MAX_FUTURE_MS: u64 = 5_000;
/// How far behind a validator's clock a proposal's time may be (a block built in an earlier
/// round may be proposed again in a later one).
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
        if let Some(previous) = header.height.checked_sub(1).and_then(|h| self.set_at(h)) {
            let voters: Vec<PartyId> = previous
                .consensus_set()
                .validators
                .into_iter()
                .map(|v| v.id)
                .collect();
            state.record_commit(&voters, &header.last_commit);
        }
        for missed in dpos::missed_proposers(header.height, header.round, &self.set) {
            state.adjust_credit(&missed, -dpos::MISSED_ROUND_PENALTY);
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
        if dpos::starts_cycle(header.height, self.genesis.validators.proposers) {
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
        if header.validators_hash != self.set.hash() {
            return Err(ChainError::ValidatorSet);
        }
        // Time moves forward: the block time is the `now` its transactions are checked at
        // (grant expiry, validity periods), and the first block is dated after genesis.
        let parent_ms = self.head().map_or(self.genesis.start_ms, |h| h.time_ms);
        if header.time_ms <= parent_ms {
            return Err(ChainError::TimeNotAfterParent {
                parent_ms,
                got_ms: header.time_ms,
            });
        }
        self.check_last_commit(header)?;
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

    /// The voters of the previous block's set, in the set's order, whose precommits are in
    /// `certificate`.
    fn signers_in_order(&self, height: u64, certificate: &CommitCertificate) -> Vec<PartyId> {
        let Some(set) = self.set_at(height) else {
            return Vec::new();
        };
        set.consensus_set()
            .validators
            .into_iter()
            .map(|v| v.id)
            .filter(|id| certificate.signatures.iter().any(|s| &s.validator == id))
            .collect()
    }

    /// A header's list of the previous block's signers is well formed: none for the first
    /// block; otherwise distinct voters of the previous block's set, in its order, with more
    /// than 2/3 of its power (whether they signed is checked on the certificate the proposal
    /// carries, see [`Chain::check_proposal`]).
    fn check_last_commit(&self, header: &Header) -> Result<(), ChainError> {
        let Some(previous) = header.height.checked_sub(1).filter(|&h| h > 0) else {
            return if header.last_commit.is_empty() {
                Ok(())
            } else {
                Err(ChainError::LastCommit(
                    "the first block has no previous block",
                ))
            };
        };
        let voters = self
            .set_at(previous)
            .ok_or(ChainError::ValidatorSet)?
            .consensus_set()
            .validators;
        let total: u64 = voters.iter().map(|v| v.power).sum();
        let mut power = 0u64;
        let mut last_index = None;
        for id in &header.last_commit {
            let index = voters
                .iter()
                .position(|v| &v.id == id)
                .ok_or(ChainError::LastCommit(
                    "a signer is not a voter of that block",
                ))?;
            if last_index.is_some_and(|last| index <= last) {
                return Err(ChainError::LastCommit(
                    "signers are not distinct and in the set's order",
                ));
            }
            last_index = Some(index);
            power += voters[index].power;
        }
        if 3 * power <= 2 * total {
            return Err(ChainError::LastCommit(
                "the signers hold 2/3 of the power or less",
            ));
        }
        Ok(())
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
    /// so the block always fits the validators' message limit.
    pub fn build(
        &self,
        proposer: &PartyId,
        round: u32,
        time_ms: u64,
        candidates: &[std::sync::Arc<SignedTransaction>],
        max: usize,
        budget: usize,
    ) -> (Header, Vec<String>) {
        // Never at or before the parent (the validators' check in `check_contents`).
        let parent_ms = self.head().map_or(self.genesis.start_ms, |h| h.time_ms) + 1;
        let time_ms = time_ms.max(parent_ms);
        let mut included = Vec::new();
        let mut parsed = Vec::new();
        let mut header = Header {
            chain_id: self.genesis.chain_id.clone(),
            height: self.height() + 1,
            round,
            previous: self.head_hash(),
            time_ms,
            proposer: proposer.clone(),
            tx_root: Hash::new([0; 32]),
            state_root: Hash::new([0; 32]),
            validators_hash: self.set.hash(),
            next_validators_hash: Hash::new([0; 32]),
            last_commit: self
                .head
                .as_ref()
                .map(|h| self.signers_in_order(h.header.height, &h.certificate))
                .unwrap_or_default(),
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

    /// A validator's check of a proposed block: built by the proposer of its round, dated
    /// near this node's clock, under the byte budget, and its contents valid on our head.
    pub fn check_proposal(
        &self,
        block: &BlockBody,
        now_ms: u64,
        budget: usize,
    ) -> Result<(), ChainError> {
        let header = &block.header;
        if header.time_ms > now_ms + MAX_FUTURE_MS || header.time_ms + MAX_PROPOSAL_AGE_MS < now_ms
        {
            return Err(ChainError::TimeOffClock {
                now_ms,
                got_ms: header.time_ms,
            });
        }
        let bytes: usize = block.txs.iter().map(|t| tx_block_bytes(t)).sum();
        if bytes > budget {
            return Err(ChainError::TooLarge { bytes, budget });
        }
        self.check_proposer(header)?;
        if let Some(head) = &self.head {
            let certificate = block
                .last_commit
                .as_ref()
                .ok_or(ChainError::LastCommit("the proposal shows no certificate"))?;
            let set = self
                .set_at(head.header.height)
                .and_then(|s| s.consensus_set().verified().ok())
                .ok_or(ChainError::ValidatorSet)?;
            if certificate.height != head.header.height
                || certificate.value != head.header.hash()
                || certificate.verify(&self.genesis.chain_id, &set).is_err()
            {
                return Err(ChainError::LastCommit(
                    "the certificate shown does not certify our head",
                ));
            }
            if self.signers_in_order(head.header.height, certificate) != header.last_commit {
                return Err(ChainError::LastCommit(
                    "the header's signers are not the certificate's",
                ));
            }
        }
        self.check_contents(header, &block.txs).map(|_| ())
    }

    /// A check of a decided block a peer synced: by the proposer of its round, its contents
    /// valid on our head. Unlike a proposal it may be old, and it shows no certificate of
    /// the block before (its voters checked that before they decided it).
    pub fn check_decided(&self, block: &BlockBody) -> Result<(), ChainError> {
        self.check_proposer(&block.header)?;
        self.check_contents(&block.header, &block.txs).map(|_| ())
    }

    /// The header names the proposer of its round, by the set the chain fixed.
    fn check_proposer(&self, header: &Header) -> Result<(), ChainError> {
        let voters = self
            .set
            .consensus_set()
            .verified()
            .map_err(|_| ChainError::ValidatorSet)?;
        if voters.proposer(header.height, header.round) != &header.proposer {
            return Err(ChainError::WrongProposer(
                header.proposer.clone(),
                header.round,
            ));
        }
        Ok(())
    }

    /// The certificate this node holds for its head: what its proposals show.
    pub fn head_certificate(&self) -> Option<CommitCertificate> {
        self.head.as_ref().map(|h| h.certificate.clone())
    }

    /// The validator set in force at `height`: the next block's, or the one a past block was
    /// certified under (from the changes of set so far).
    pub fn set_at(&self, height: u64) -> Option<ValidatorSet> {
        if height == 0 || height > self.height() + 1 {
            return None;
        }
        let mut set = &self.genesis.validators;
        for t in &self.transitions {
            if t.last.header.height < height {
                set = &t.next;
            }
        }
        Some(set.clone())
    }
}

/// A block as validators propose and sync it: its header and transactions (the certificate
/// comes with the decision).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockBody {
    /// The header.
    pub header: Header,
    /// The transactions, as JWS texts.
    pub txs: Vec<String>,
    /// A proposal's proof of its header's `last_commit`: the certificate of the previous
    /// block (not kept: the header names the signers; synced blocks carry none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit: Option<CommitCertificate>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use emrshare_core::keys::SigningKey;
    use emrshare_core::ledger::block::{Timeouts, Validator, certify};
    use emrshare_core::ledger::governance::{GovAction, Proposal as GovProposal};
    use emrshare_core::ledger::tx::{Role, Transaction, TxBody};
    use std::sync::Arc;

    const START_MS: u64 = 1_700_000_000_000;

    struct Consortium {
        chain: Chain,
        members: Vec<(PartyId, SigningKey)>,
    }

    fn consortium() -> Consortium {
        let members: Vec<_> = (0..2)
            .map(|i| {
                (
                    PartyId::new(format!("node:{i}")).unwrap(),
                    SigningKey::generate(),
                )
            })
            .collect();
        let validators = members
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
            block_ms: 100,
            timeouts: Timeouts::default(),
            start_ms: START_MS,
            governance: None,
            record_voucher_keys: Vec::new(),
        };
        Consortium {
            chain: Chain::new(genesis),
            members,
        }
    }

    impl Consortium {
        fn proposal(&self, time_ms: u64, txs: &[Arc<SignedTransaction>]) -> BlockBody {
            let (mut header, txs) =
                self.chain
                    .build(&self.members[0].0, 0, time_ms, txs, 100, usize::MAX);
            header.time_ms = time_ms;
            BlockBody {
                header,
                txs,
                last_commit: self.chain.head_certificate(),
            }
        }

        fn decide(&mut self, block: &BlockBody) {
            let signers: Vec<_> = self.members.iter().map(|(id, key)| (id, key)).collect();
            let certified = certify(block.header.clone(), 0, &signers);
            let block = CertifiedBlock {
                header: certified.header,
                certificate: certified.certificate,
                txs: block.txs.clone(),
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
        let approvals = c
            .members
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
    /// (grant expiry, validity): validators take only a time after the parent's and near
    /// their own clock.
    #[test]
    fn proposals_show_the_previous_certificate_and_name_exactly_its_signers() {
        let mut c = consortium();
        let first = c.proposal(START_MS + 1_000, &[]);
        assert!(first.header.last_commit.is_empty() && first.last_commit.is_none());
        c.decide(&first);
        let now = START_MS + 2_000;
        let honest = c.proposal(now, &[]);
        assert_eq!(honest.header.last_commit.len(), 2);
        c.chain.check_proposal(&honest, now, usize::MAX).unwrap();
        let refused = |block: &BlockBody| {
            matches!(
                c.chain.check_proposal(block, now, usize::MAX),
                Err(ChainError::LastCommit(_))
            )
        };
        // No certificate shown.
        let mut bare = honest.clone();
        bare.last_commit = None;
        assert!(refused(&bare));
        // A decided block synced from a peer shows none (its voters checked it), and may be
        // old; a misnamed list is still refused.
        c.chain.check_decided(&bare).unwrap();
        // A signer left out, to have it counted absent.
        let mut short = honest.clone();
        short.header.last_commit.pop();
        assert!(refused(&short));
        assert!(matches!(
            c.chain.check_decided(&short),
            Err(ChainError::LastCommit(_))
        ));
        // A stranger named, the order changed, a name twice.
        let mut stranger = honest.clone();
        stranger.header.last_commit[1] = PartyId::new("node:nobody").unwrap();
        assert!(refused(&stranger));
        let mut swapped = honest.clone();
        swapped.header.last_commit.reverse();
        assert!(refused(&swapped));
        let mut twice = honest.clone();
        twice.header.last_commit[1] = twice.header.last_commit[0].clone();
        assert!(refused(&twice));
        // A certificate of another block, or with a signature gone.
        let mut other = honest.clone();
        other.last_commit.as_mut().unwrap().value = Hash::new([7; 32]);
        assert!(refused(&other));
        let mut thin = honest.clone();
        thin.last_commit.as_mut().unwrap().signatures.pop();
        assert!(refused(&thin));
        // The first block names nobody.
        let fresh = consortium();
        let mut named = fresh.proposal(START_MS + 1_000, &[]);
        named.header.last_commit = honest.header.last_commit.clone();
        assert!(matches!(
            fresh
                .chain
                .check_proposal(&named, START_MS + 1_000, usize::MAX),
            Err(ChainError::LastCommit(_))
        ));
    }

    #[test]
    fn block_times_move_forward_and_stay_near_the_clock() {
        let mut c = consortium();
        let now = START_MS + 10_000;
        let first = c.proposal(now, &[]);
        c.chain.check_proposal(&first, now, usize::MAX).unwrap();
        c.decide(&first);
        let cases = [
            ("before the parent", c.proposal(now - 1, &[]), now + 1_000),
            ("equal to the parent", c.proposal(now, &[]), now + 1_000),
            (
                "far in the future",
                c.proposal(now + 3_600_000, &[]),
                now + 1_000,
            ),
            ("far in the past", c.proposal(now + 1, &[]), now + 3_600_000),
        ];
        for (what, proposal, clock) in cases {
            assert!(
                c.chain
                    .check_proposal(&proposal, clock, usize::MAX)
                    .is_err(),
                "{what}"
            );
        }
        let next = c.proposal(now + 1_000, &[]);
        c.chain
            .check_proposal(&next, now + 1_000, usize::MAX)
            .unwrap();
    }

    /// Blocks are built under the byte budget, whatever is pending; a validator refuses a
    /// proposal over it, or one by a member whose turn it is not.
    #[test]
    fn blocks_are_built_under_the_byte_budget_by_the_rounds_proposer() {
        let c = consortium();
        let txs: Vec<_> = (0..6).map(|i| registration(&c, i)).collect();
        let one = tx_block_bytes(txs[0].as_jws());
        let budget = 2 * one + one / 2;
        let now = START_MS + 3_000;
        let (header, included) = c.chain.build(&c.members[0].0, 0, now, &txs, 100, budget);
        assert_eq!(included.len(), 2);
        assert!(included.iter().map(|t| tx_block_bytes(t)).sum::<usize>() <= budget);
        let fits = BlockBody {
            header,
            txs: included,
            last_commit: c.chain.head_certificate(),
        };
        c.chain.check_proposal(&fits, now, budget).unwrap();
        let all = c.proposal(now, &txs);
        assert_eq!(all.txs.len(), 6);
        assert!(matches!(
            c.chain.check_proposal(&all, now, budget),
            Err(ChainError::TooLarge { .. })
        ));
        let (header, txs) = c.chain.build(&c.members[1].0, 0, now, &[], 100, budget);
        assert!(matches!(
            c.chain.check_proposal(
                &BlockBody {
                    header,
                    txs,
                    last_commit: None,
                },
                now,
                budget
            ),
            Err(ChainError::WrongProposer(..))
        ));
    }
}
