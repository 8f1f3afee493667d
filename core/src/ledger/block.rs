//! Blocks, the validator set and what certifies a header (DESIGN sections 6 and 7).
//!
//! A header commits to the previous header, the transactions (RFC 6962 root over their IDs),
//! the state root and the validator set. Consensus is Tendermint (Malachite): a header is
//! certified by a [`CommitCertificate`], precommits for its hash from validators holding more
//! than 2/3 of the voting power of the set the chain fixed for its height ([`super::bft`]).
//! The improved DPoS ranks the members into that set: the representative nodes (RPN) propose
//! in turn and vote, the audit nodes (ATN) vote.

use super::bft::{ConsensusSet, PoweredValidator};
use super::merkle::{self, Hash};
use super::tx::SignedTransaction;
use crate::keys::{Jwk, KeyError, PartyId, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A block header. Its hash is SHA-256 of its JSON serialization (fixed field order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// The chain the block belongs to.
    pub chain_id: String,
    /// The block's height: 1 for the first block after genesis.
    pub height: u64,
    /// The consensus round the block was proposed in (0 first; each round that timed out
    /// at this height moved the turn to the next proposer).
    pub round: u32,
    /// The previous header's hash ([`Genesis::hash`] for the first block).
    pub previous: Hash,
    /// Unix time in milliseconds.
    pub time_ms: u64,
    /// The member that proposed the block: the proposer of its round.
    pub proposer: PartyId,
    /// The RFC 6962 root over the block's transaction IDs ([`tx_root`]).
    pub tx_root: Hash,
    /// The root of the state after the block's transactions.
    pub state_root: Hash,
    /// The validator set that certifies this header.
    pub validators_hash: Hash,
    /// The ranking computed from this block's state: the set in force for the next block if
    /// that block starts a new cycle. A thin client follows a change of validator set through
    /// the last certified header before it.
    pub next_validators_hash: Hash,
    /// The voters whose precommits certified the previous block, in the set's order, as the
    /// proposer showed them (empty for the first block): the chain's record of who takes
    /// part (see [`super::dpos::ABSENCE_WINDOW`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_commit: Vec<PartyId>,
}

impl Header {
    /// The header's hash: SHA-256 of its JSON serialization.
    pub fn hash(&self) -> Hash {
        Hash::sha256(&serde_json::to_vec(self).expect("headers serialize"))
    }
}

/// The RFC 6962 root over the IDs of a block's transactions.
pub fn tx_root(txs: &[SignedTransaction]) -> Hash {
    let leaves: Vec<Hash> = txs.iter().map(|t| merkle::leaf_hash(&t.id())).collect();
    merkle::root(&leaves)
}

/// One consortium member with its consensus key and credit score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validator {
    /// The member's ID.
    pub id: PartyId,
    /// The member's consensus key (ES256, public): it signs proposals and votes.
    pub signing_jwk: Jwk,
    /// The member's credit score when the set was ranked.
    pub credit: i64,
}

/// Voting power of a representative node (a proposer): ranked above the audit nodes.
pub const PROPOSER_POWER: u64 = 2;
/// Voting power of an audit node.
pub const AUDITOR_POWER: u64 = 1;

/// The ranked validators of a cycle: the first `proposers` propose and vote (RPN), the next
/// `auditors` vote (ATN), the rest stand by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorSet {
    /// The ranked members: proposers first, then auditors, then standby members.
    pub validators: Vec<Validator>,
    /// How many of the first validators propose.
    pub proposers: usize,
    /// How many validators after the proposers audit and vote.
    pub auditors: usize,
}

/// Why a validator set is malformed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValidatorSetError {
    /// No proposer, no auditor, or more of them than validators.
    #[error("validator set needs at least one proposer and one auditor, within its size")]
    Sizes,
    /// A member listed twice.
    #[error("validator {0} appears twice")]
    Duplicate(PartyId),
    /// A member's consensus key is not a valid ES256 JWK.
    #[error("validator key: {0}")]
    Key(#[from] KeyError),
}

impl ValidatorSet {
    /// Checks the set's form: role sizes within the list, no member twice, every key valid.
    pub fn check(&self) -> Result<(), ValidatorSetError> {
        if self.proposers == 0
            || self.auditors == 0
            || self.proposers + self.auditors > self.validators.len()
        {
            return Err(ValidatorSetError::Sizes);
        }
        let mut seen = BTreeSet::new();
        for v in &self.validators {
            if !seen.insert(&v.id) {
                return Err(ValidatorSetError::Duplicate(v.id.clone()));
            }
            VerifyingKey::from_jwk(&v.signing_jwk)?;
        }
        Ok(())
    }

    /// SHA-256 of the set's JSON serialization: what headers name as `validators_hash`.
    pub fn hash(&self) -> Hash {
        Hash::sha256(&serde_json::to_vec(self).expect("validator sets serialize"))
    }

    /// The proposers' IDs, in rank order.
    pub fn proposer_ids(&self) -> impl Iterator<Item = &PartyId> {
        self.validators.iter().take(self.proposers).map(|v| &v.id)
    }

    /// The auditors, in rank order.
    pub fn auditors(&self) -> &[Validator] {
        &self.validators[self.proposers..self.proposers + self.auditors]
    }

    /// The voters of the set with their power: the proposers (RPN) hold
    /// [`PROPOSER_POWER`] each, the auditors (ATN) [`AUDITOR_POWER`]; standby members none.
    /// The first `proposers` of it take turns to propose, by height and round.
    pub fn consensus_set(&self) -> ConsensusSet {
        let voters = self.proposers + self.auditors;
        ConsensusSet {
            validators: self
                .validators
                .iter()
                .take(voters)
                .enumerate()
                .map(|(rank, v)| PoweredValidator {
                    id: v.id.clone(),
                    signing_jwk: v.signing_jwk.clone(),
                    power: if rank < self.proposers {
                        PROPOSER_POWER
                    } else {
                        AUDITOR_POWER
                    },
                })
                .collect(),
            proposers: self.proposers,
        }
    }

    /// Whether `id` votes in this set (a proposer or an auditor).
    pub fn is_voter(&self, id: &PartyId) -> bool {
        self.validators
            .iter()
            .take(self.proposers + self.auditors)
            .any(|v| &v.id == id)
    }

    /// The consensus key of member `id`, if it is in the set and its key is valid.
    pub fn key_of(&self, id: &PartyId) -> Option<VerifyingKey> {
        let v = self.validators.iter().find(|v| &v.id == id)?;
        VerifyingKey::from_jwk(&v.signing_jwk).ok()
    }

    /// Whether both sets give every member the same role (credit snapshots aside).
    pub fn same_roles(&self, other: &ValidatorSet) -> bool {
        self.proposers == other.proposers
            && self.auditors == other.auditors
            && self.validators.len() == other.validators.len()
            && self
                .validators
                .iter()
                .zip(&other.validators)
                .all(|(a, b)| a.id == b.id && a.signing_jwk == b.signing_jwk)
    }
}

/// The certificate of a header: precommits for its hash by more than 2/3 of the voting power.
pub type CommitCertificate = super::bft::DecisionCertificate;

/// `header` certified by the precommits of `signers` in `round` (validators' IDs and
/// consensus keys): what a validator set's decision produces, for tools, tests and seeds.
pub fn certify(
    header: Header,
    round: u32,
    signers: &[(&PartyId, &crate::keys::SigningKey)],
) -> CertifiedHeader {
    use super::bft::{ConsensusVote, VoteKind};
    let precommits: Vec<_> = signers
        .iter()
        .map(|(id, key)| {
            ConsensusVote {
                kind: VoteKind::Precommit,
                height: header.height,
                round,
                value: Some(header.hash()),
                validator: (*id).clone(),
            }
            .sign(&header.chain_id, key)
        })
        .collect();
    CertifiedHeader {
        certificate: CommitCertificate::from_precommits(
            header.height,
            round,
            header.hash(),
            &precommits,
        ),
        header,
    }
}

/// A header with its certificate: what a thin client needs to trust a state root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertifiedHeader {
    /// The header certified.
    pub header: Header,
    /// Its commit certificate.
    pub certificate: CommitCertificate,
}

/// The consensus round timeouts (each grows by half of itself per round that times out at a
/// height): long enough for a block to be built, streamed and checked on the slowest member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// How long validators wait for the round's proposal, in milliseconds.
    pub propose_ms: u64,
    /// How long they wait for more than 2/3 of prevotes, in milliseconds.
    pub prevote_ms: u64,
    /// How long they wait for more than 2/3 of precommits, in milliseconds.
    pub precommit_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            propose_ms: 2_000,
            prevote_ms: 1_000,
            precommit_ms: 1_000,
        }
    }
}

/// The genesis of a consortium: the chain ID and the first validator set; the root of trust
/// of every thin client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// The consortium's chain ID: every transaction and header names it.
    pub chain_id: String,
    /// The first validator set.
    pub validators: ValidatorSet,
    /// The least time between two blocks, in milliseconds (an idle chain does not race).
    pub block_ms: u64,
    /// The consensus round timeouts.
    pub timeouts: Timeouts,
    /// Unix time in milliseconds of genesis: the first block is dated after it.
    pub start_ms: u64,
    /// The first governance council (members and threshold, see
    /// [`governance`](super::governance)); without it, every validator with its consensus
    /// key and `t = floor(2n/3) + 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance: Option<super::governance::Council>,
    /// The nodes' record voucher keys (RFC 9474 RSA, [`crate::voucher`]): a record's
    /// account opens only with a voucher one of them signed for a registered patient.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub record_voucher_keys: Vec<crate::keys::Jwk>,
}

impl Genesis {
    /// The council at genesis: the one named, or every validator with the default
    /// threshold.
    pub fn council(&self) -> super::governance::Council {
        self.governance.clone().unwrap_or_else(|| {
            super::governance::Council::of_validators(&self.validators.validators)
        })
    }

    /// SHA-256 of its JSON serialization (fixed field order, so a reformatted genesis file
    /// hashes the same): what nodes compare with their peers' and with the chain they store.
    pub fn hash(&self) -> Hash {
        Hash::sha256(&serde_json::to_vec(self).expect("genesis serializes"))
    }
}

/// A certified block as nodes exchange it: header, certificate, and the transactions as JWS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertifiedBlock {
    /// The block's header.
    pub header: Header,
    /// Its commit certificate.
    pub certificate: CommitCertificate,
    /// The block's transactions, as JWS texts, in block order.
    pub txs: Vec<String>,
}

impl CertifiedBlock {
    /// The block's header with its certificate, without the transactions.
    pub fn certified_header(&self) -> CertifiedHeader {
        CertifiedHeader {
            header: self.header.clone(),
            certificate: self.certificate.clone(),
        }
    }
}

/// A change of validator set: the last certified header under the old set, which names the
/// new set as its `next_validators_hash`, and that set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    /// The last header certified under the old set.
    pub last: CertifiedHeader,
    /// The new set: the one `last.header.next_validators_hash` names.
    pub next: ValidatorSet,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    fn set(proposers: usize, auditors: usize, standby: usize) -> ValidatorSet {
        ValidatorSet {
            validators: (0..proposers + auditors + standby)
                .map(|i| Validator {
                    id: PartyId::new(format!("node:{i}")).unwrap(),
                    signing_jwk: SigningKey::generate().verifying_key().to_jwk(None),
                    credit: 100,
                })
                .collect(),
            proposers,
            auditors,
        }
    }

    #[test]
    fn proposers_and_auditors_vote_standby_members_do_not() {
        let s = set(2, 3, 1);
        let consensus = s.consensus_set().verified().unwrap();
        let powers: Vec<u64> = consensus.set().validators.iter().map(|v| v.power).collect();
        assert_eq!(powers, vec![2, 2, 1, 1, 1]);
        assert_eq!(consensus.total_power(), 7);
        assert!(s.is_voter(&PartyId::new("node:4").unwrap()));
        assert!(!s.is_voter(&PartyId::new("node:5").unwrap()));
        // Only proposers propose.
        for h in 0..6 {
            let p = consensus.proposer(h, 0);
            assert!(s.proposer_ids().any(|id| id == p));
        }
    }
}
