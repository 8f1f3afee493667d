//! Blocks, the validator set, votes and commit certificates (DESIGN sections 6 and 7).
//!
//! A header commits to the previous header, the transactions (RFC 6962 root over their IDs),
//! the state root and the validator set. Audit nodes (ATN) vote by signing
//! `"emrshare/v1/vote" || chain_id || 0 || header hash` with ES256; more than half of the
//! audit nodes' votes make the commit certificate. The same certificate format can later be
//! produced by another BFT engine without touching clients.

use super::merkle::{self, Hash};
use super::state::hex32;
use super::tx::SignedTransaction;
use crate::keys::{Jwk, KeyError, PartyId, SigningKey, VerifyingKey};
use crate::{b64, hazmat};
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
    /// The slot the block fills: slot `s` starts at genesis `start_ms + s * slot_ms`.
    pub slot: u64,
    /// 0, or the round after a release proof showed that no header of the previous round at
    /// this height can be certified (DESIGN section 7).
    pub round: u32,
    /// The previous header's hash ([`Genesis::hash`] for the first block).
    #[serde(with = "hex32")]
    pub previous: Hash,
    /// Unix time in milliseconds.
    pub time_ms: u64,
    /// The member that proposed the block: the proposer of its slot.
    pub proposer: PartyId,
    /// The RFC 6962 root over the block's transaction IDs ([`tx_root`]).
    #[serde(with = "hex32")]
    pub tx_root: Hash,
    /// The root of the state after the block's transactions.
    #[serde(with = "hex32")]
    pub state_root: Hash,
    /// The validator set that certifies this header.
    #[serde(with = "hex32")]
    pub validators_hash: Hash,
    /// The ranking computed from this block's state: the set in force for the next block if
    /// that block starts a new cycle. A thin client follows a change of validator set through
    /// the last certified header before it.
    #[serde(with = "hex32")]
    pub next_validators_hash: Hash,
}

impl Header {
    /// The header's hash: SHA-256 of its JSON serialization.
    pub fn hash(&self) -> Hash {
        hazmat::sha256(&serde_json::to_vec(self).expect("headers serialize"))
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

/// The ranked validators of a cycle: the first `proposers` propose (RPN), the next `auditors`
/// audit and sign (ATN).
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
        hazmat::sha256(&serde_json::to_vec(self).expect("validator sets serialize"))
    }

    /// The proposers' IDs, in rank order.
    pub fn proposer_ids(&self) -> impl Iterator<Item = &PartyId> {
        self.validators.iter().take(self.proposers).map(|v| &v.id)
    }

    /// The auditors, in rank order.
    pub fn auditors(&self) -> &[Validator] {
        &self.validators[self.proposers..self.proposers + self.auditors]
    }

    /// Votes needed for a certificate: more than half of the auditors.
    pub fn quorum(&self) -> usize {
        self.auditors / 2 + 1
    }

    /// The proposer that owns `slot` (round-robin over the proposers).
    pub fn proposer_of(&self, slot: u64) -> &PartyId {
        &self.validators[(slot % self.proposers as u64) as usize].id
    }

    /// Whether `id` is one of the set's auditors.
    pub fn is_auditor(&self, id: &PartyId) -> bool {
        self.auditors().iter().any(|v| &v.id == id)
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

/// The bytes an auditor signs to vote for a header.
pub fn vote_message(chain_id: &str, header_hash: &Hash) -> Vec<u8> {
    let mut message = b"emrshare/v1/vote".to_vec();
    message.extend_from_slice(chain_id.as_bytes());
    message.push(0);
    message.extend_from_slice(header_hash);
    message
}

/// An auditor's signature over a header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vote {
    /// The auditor that voted.
    pub validator: PartyId,
    /// ES256 signature, base64url.
    pub signature: String,
}

impl Vote {
    /// `validator`'s vote for `header`, signed with its consensus key.
    pub fn sign(validator: PartyId, key: &SigningKey, header: &Header) -> Self {
        let signature = b64::encode(key.sign(&vote_message(&header.chain_id, &header.hash())));
        Self {
            validator,
            signature,
        }
    }

    /// Whether this is `key`'s valid signature over `header`.
    pub fn is_valid_for(&self, key: &VerifyingKey, header: &Header) -> bool {
        let signature = b64::decode(&self.signature).unwrap_or_default();
        key.verify(&vote_message(&header.chain_id, &header.hash()), &signature)
    }
}

/// More than half of the auditors' votes over one header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitCertificate {
    /// The hash of the header voted for.
    #[serde(with = "hex32")]
    pub header_hash: Hash,
    /// The auditors' votes; a quorum of valid ones certifies the header.
    pub votes: Vec<Vote>,
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

/// The genesis of a consortium: the chain ID and the first validator set; the root of trust
/// of every thin client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// The consortium's chain ID: every transaction and header names it.
    pub chain_id: String,
    /// The first validator set.
    pub validators: ValidatorSet,
    /// Slot length in milliseconds.
    pub slot_ms: u64,
    /// Unix time in milliseconds of slot 0.
    pub start_ms: u64,
    /// The first governance council (members and threshold, see
    /// [`governance`](super::governance)); without it, every validator with its consensus
    /// key and `t = floor(2n/3) + 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance: Option<super::governance::Council>,
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
        hazmat::sha256(&serde_json::to_vec(self).expect("genesis serializes"))
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

/// A proposed block, before its certificate: what a proposer sends to the auditors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// The proposed header.
    pub header: Header,
    /// The block's transactions, as JWS texts, in block order.
    pub txs: Vec<String>,
    /// The proposer's ES256 signature over the header hash (vote message form), so a second
    /// header for the same slot and round by the same proposer is evidence of equivocation.
    pub proposer_signature: String,
    /// For a round above 0: the proof that the previous round at this height is stalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseProof>,
}

impl Proposal {
    /// Signs `header` as its proposer.
    pub fn sign(
        key: &SigningKey,
        header: Header,
        txs: Vec<String>,
        release: Option<ReleaseProof>,
    ) -> Self {
        let proposer_signature =
            b64::encode(key.sign(&vote_message(&header.chain_id, &header.hash())));
        Self {
            header,
            txs,
            proposer_signature,
            release,
        }
    }

    /// The header with the proposer's signature, as equivocation evidence holds it.
    pub fn signed_header(&self) -> SignedHeader {
        SignedHeader {
            header: self.header.clone(),
            proposer_signature: self.proposer_signature.clone(),
        }
    }
}

/// A header with its proposer's signature: one half of equivocation evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedHeader {
    /// The header.
    pub header: Header,
    /// The proposer's ES256 signature over it (vote message form), base64url.
    pub proposer_signature: String,
}

impl SignedHeader {
    /// Whether the proposer signature is `key`'s valid signature over the header.
    pub fn is_signed_by(&self, key: &VerifyingKey) -> bool {
        let signature = b64::decode(&self.proposer_signature).unwrap_or_default();
        key.verify(
            &vote_message(&self.header.chain_id, &self.header.hash()),
            &signature,
        )
    }

    /// Whether `self` and `other` are two different headers of one proposer for one slot and
    /// round: a proposer owns one header per slot and round, so this is equivocation (the
    /// signatures still have to be checked against the proposer's key).
    pub fn conflicts_with(&self, other: &SignedHeader) -> bool {
        let (a, b) = (&self.header, &other.header);
        a.chain_id == b.chain_id
            && a.proposer == b.proposer
            && a.height == b.height
            && a.slot == b.slot
            && a.round == b.round
            && a.hash() != b.hash()
    }
}

/// An auditor's answer to a proposal. A refusal is sent with status 409 and, like every
/// error answer of the node, an `error` member too (ignored here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum VoteReply {
    /// Its vote for the proposal.
    Vote {
        /// The auditor's vote.
        vote: Vote,
    },
    /// It is locked on another proposal at this height: that proposal and its vote for it.
    Locked {
        /// The proposal it is locked on.
        proposal: Box<Proposal>,
        /// Its vote for that proposal.
        vote: Vote,
    },
    /// It refuses to vote, and why.
    Refused {
        /// Why, in words.
        reason: String,
    },
}

/// One auditor's lock: the header it voted for at a height and round, and that vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// The header the auditor voted for.
    pub header: Header,
    /// Its vote.
    pub vote: Vote,
}

/// Proof that no header of `round` at `height` can be certified: signed locks of enough
/// auditors that, for every header among them, its votes plus the auditors not in the proof
/// stay below the quorum. Each auditor signs at most one header per height and round, so
/// the round is dead and the auditors may lock again at `round + 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseProof {
    /// The height of the stalled round.
    pub height: u64,
    /// The stalled round.
    pub round: u32,
    /// The auditors' locks at that height and round, at most one per auditor.
    pub locks: Vec<Lock>,
}

/// Why a [`ReleaseProof`] does not show its round stalled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// A lock is for another chain, height or round than the proof's.
    #[error("a lock is for another height or round")]
    WrongRound,
    /// A lock's signer (named) is not an auditor of the set.
    #[error("a lock is by {0}, who is not an auditor")]
    NotAnAuditor(String),
    /// Two locks by one auditor (named).
    #[error("two locks by {0}")]
    Duplicate(String),
    /// A lock's vote (by the named auditor) does not verify.
    #[error("invalid lock signature by {0}")]
    BadSignature(String),
    /// Some header could still reach the quorum, or the proof has no locks.
    #[error("a header of that round could still be certified")]
    NotStalled,
}

impl ReleaseProof {
    /// Checks the proof against the auditors of `set`.
    pub fn check(&self, chain_id: &str, set: &ValidatorSet) -> Result<(), ReleaseError> {
        let mut voters = BTreeSet::new();
        let mut per_header: std::collections::BTreeMap<Hash, usize> = Default::default();
        for lock in &self.locks {
            let h = &lock.header;
            if h.height != self.height || h.round != self.round || h.chain_id != chain_id {
                return Err(ReleaseError::WrongRound);
            }
            let name = lock.vote.validator.to_string();
            if !set.is_auditor(&lock.vote.validator) {
                return Err(ReleaseError::NotAnAuditor(name));
            }
            let key = set
                .key_of(&lock.vote.validator)
                .ok_or_else(|| ReleaseError::NotAnAuditor(name.clone()))?;
            if !lock.vote.is_valid_for(&key, h) {
                return Err(ReleaseError::BadSignature(name));
            }
            if !voters.insert(name.clone()) {
                return Err(ReleaseError::Duplicate(name));
            }
            *per_header.entry(h.hash()).or_default() += 1;
        }
        let silent = set.auditors - voters.len();
        if per_header.values().any(|&n| n + silent >= set.quorum()) || voters.is_empty() {
            return Err(ReleaseError::NotStalled);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1 proposer and `auditors` auditors; returns the set and the auditors' keys.
    fn set(auditors: usize) -> (ValidatorSet, Vec<(PartyId, SigningKey)>) {
        let keys: Vec<_> = (0..=auditors)
            .map(|i| {
                (
                    PartyId::new(format!("node:{i}")).unwrap(),
                    SigningKey::generate(),
                )
            })
            .collect();
        let validators = keys
            .iter()
            .map(|(id, k)| Validator {
                id: id.clone(),
                signing_jwk: k.verifying_key().to_jwk(None),
                credit: 100,
            })
            .collect();
        let set = ValidatorSet {
            validators,
            proposers: 1,
            auditors,
        };
        (set, keys)
    }

    fn header(time_ms: u64, round: u32) -> Header {
        Header {
            chain_id: "test".into(),
            height: 3,
            slot: 9,
            round,
            previous: [0; 32],
            time_ms,
            proposer: PartyId::new("node:0").unwrap(),
            tx_root: [0; 32],
            state_root: [0; 32],
            validators_hash: [0; 32],
            next_validators_hash: [0; 32],
        }
    }

    fn lock(keys: &[(PartyId, SigningKey)], i: usize, header: &Header) -> Lock {
        Lock {
            header: header.clone(),
            vote: Vote::sign(keys[i].0.clone(), &keys[i].1, header),
        }
    }

    fn proof(locks: Vec<Lock>) -> ReleaseProof {
        ReleaseProof {
            height: 3,
            round: 0,
            locks,
        }
    }

    #[test]
    fn a_split_round_is_released() {
        let (s, k) = set(2);
        let (a, b) = (header(1, 0), header(2, 0));
        assert_eq!(
            proof(vec![lock(&k, 1, &a), lock(&k, 2, &b)]).check("test", &s),
            Ok(())
        );
        // 3 auditors, quorum 2: one vote each on three headers.
        let (s, k) = set(3);
        let c = header(3, 0);
        let split = vec![lock(&k, 1, &a), lock(&k, 2, &b), lock(&k, 3, &c)];
        assert_eq!(proof(split).check("test", &s), Ok(()));
    }

    #[test]
    fn a_round_that_may_still_certify_is_not_released() {
        let (s, k) = set(2);
        let (a, b) = (header(1, 0), header(2, 0));
        // The silent auditor could still vote for a.
        assert_eq!(
            proof(vec![lock(&k, 1, &a)]).check("test", &s),
            Err(ReleaseError::NotStalled)
        );
        assert_eq!(
            proof(vec![]).check("test", &s),
            Err(ReleaseError::NotStalled)
        );
        let (s3, k3) = set(3);
        // a has one vote and one auditor is silent: 2 = quorum, a may still win.
        assert_eq!(
            proof(vec![lock(&k3, 1, &a), lock(&k3, 2, &b)]).check("test", &s3),
            Err(ReleaseError::NotStalled)
        );
        // Duplicates, strangers, forged signatures and other rounds do not count.
        assert_eq!(
            proof(vec![lock(&k, 1, &a), lock(&k, 1, &b)]).check("test", &s),
            Err(ReleaseError::Duplicate("node:1".into()))
        );
        assert_eq!(
            proof(vec![lock(&k, 0, &a), lock(&k, 2, &b)]).check("test", &s),
            Err(ReleaseError::NotAnAuditor("node:0".into()))
        );
        let mut forged = lock(&k, 2, &b);
        forged.header = header(5, 0);
        assert_eq!(
            proof(vec![lock(&k, 1, &a), forged]).check("test", &s),
            Err(ReleaseError::BadSignature("node:2".into()))
        );
        let later = header(2, 1);
        assert_eq!(
            proof(vec![lock(&k, 1, &a), lock(&k, 2, &later)]).check("test", &s),
            Err(ReleaseError::WrongRound)
        );
        assert_eq!(
            proof(vec![lock(&k, 1, &a), lock(&k, 2, &b)]).check("other", &s),
            Err(ReleaseError::WrongRound)
        );
    }

    #[test]
    fn equivocation_is_two_headers_of_one_slot_and_round() {
        let (_, k) = set(1);
        let signed = |h: Header| Proposal::sign(&k[0].1, h, vec![], None).signed_header();
        let a = signed(header(1, 0));
        assert!(a.conflicts_with(&signed(header(2, 0))));
        assert!(!a.conflicts_with(&a.clone()));
        assert!(!a.conflicts_with(&signed(header(2, 1))));
        let mut other_slot = header(2, 0);
        other_slot.slot = 10;
        assert!(!a.conflicts_with(&signed(other_slot)));
        assert!(a.is_signed_by(k[0].1.verifying_key()));
        assert!(!a.is_signed_by(k[1].1.verifying_key()));
    }
}
