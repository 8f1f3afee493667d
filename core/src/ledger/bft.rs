//! Tendermint consensus as a thin client and the state machine see it (DESIGN section 7): the
//! bytes a validator signs for a vote or a proposal, the validator set with voting power, the
//! commit certificate (precommits of more than 2/3 of the power), and misbehaviour evidence
//! (two conflicting signed votes or proposals) that anyone can check.
//!
//! Nothing here depends on a consensus engine: the node's engine context signs and verifies
//! exactly [`ConsensusVote::sign_bytes`] and [`ConsensusProposal::sign_bytes`], so the
//! signatures gossiped between validators are the ones clients count and the chain punishes.
//!
//! Fault model: safety holds while validators with less than 1/3 of the voting power are
//! faulty. A certificate needs `3 * signed > 2 * total` (strictly more than two thirds), so
//! two certificates for different values at one height share validators holding more than
//! 1/3 of the power, and each of those signed both: the evidence names them.

use super::merkle::Hash;
use crate::keys::{Jwk, KeyError, PartyId, SigningKey, VerifyingKey};
use crate::{b64, hazmat};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The largest validator set (members with voting power) a chain may fix.
pub const MAX_VALIDATORS: usize = 256;

/// The largest voting power of one validator: with [`MAX_VALIDATORS`] of them the total and
/// three times the total stay far inside `u64` (no overflow in any threshold check).
pub const MAX_POWER: u64 = 1 << 40;

/// The two voting steps of a Tendermint round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoteKind {
    /// The first step: a vote for the round's proposal (or nil).
    Prevote,
    /// The second step: a vote to commit; precommits of more than 2/3 decide the value.
    Precommit,
}

impl VoteKind {
    fn tag(self) -> u8 {
        match self {
            VoteKind::Prevote => 1,
            VoteKind::Precommit => 2,
        }
    }
}

/// A validator's vote in one round: for a value (a block header hash) or for nil.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusVote {
    /// Prevote or precommit.
    pub kind: VoteKind,
    /// The height voted at.
    pub height: u64,
    /// The round voted in (0 first).
    pub round: u32,
    /// The header hash voted for; `None` is a vote for nil.
    pub value: Option<Hash>,
    /// The validator that votes.
    pub validator: PartyId,
}

impl ConsensusVote {
    /// The bytes signed: `"emrshare/v2/vote" || chain_id || 0 || kind || height (u64 BE) ||
    /// round (u32 BE) || (0 | 1 || value) || validator ID`. Every field is fixed-length
    /// or last, so two different votes never share their bytes.
    pub fn sign_bytes(&self, chain_id: &str) -> Vec<u8> {
        let mut bytes = domain(b"emrshare/v2/vote", chain_id);
        bytes.push(self.kind.tag());
        bytes.extend_from_slice(&self.height.to_be_bytes());
        bytes.extend_from_slice(&self.round.to_be_bytes());
        push_optional_hash(&mut bytes, self.value.as_ref());
        bytes.extend_from_slice(self.validator.as_str().as_bytes());
        bytes
    }

    /// The vote signed with `key` (the validator's consensus key) for `chain_id`.
    pub fn sign(self, chain_id: &str, key: &SigningKey) -> Signed<ConsensusVote> {
        let signature = b64::encode(key.sign(&self.sign_bytes(chain_id)));
        Signed {
            message: self,
            signature,
        }
    }
}

/// A proposer's signed offer of a value (a block header hash) for one round.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusProposal {
    /// The height proposed at.
    pub height: u64,
    /// The round proposed in.
    pub round: u32,
    /// The header hash proposed.
    pub value: Hash,
    /// The round in which this value got a polka (prevotes of more than 2/3), when the
    /// proposer re-proposes a value it is locked on; `None` for a fresh value.
    pub pol_round: Option<u32>,
    /// The validator that proposes: the round's proposer.
    pub proposer: PartyId,
}

impl ConsensusProposal {
    /// The bytes signed: `"emrshare/v2/proposal" || chain_id || 0 || height (u64 BE) ||
    /// round (u32 BE) || value || (0 | 1 || pol_round (u32 BE)) || proposer ID`.
    pub fn sign_bytes(&self, chain_id: &str) -> Vec<u8> {
        let mut bytes = domain(b"emrshare/v2/proposal", chain_id);
        bytes.extend_from_slice(&self.height.to_be_bytes());
        bytes.extend_from_slice(&self.round.to_be_bytes());
        bytes.extend_from_slice(&self.value);
        match self.pol_round {
            None => bytes.push(0),
            Some(round) => {
                bytes.push(1);
                bytes.extend_from_slice(&round.to_be_bytes());
            }
        }
        bytes.extend_from_slice(self.proposer.as_str().as_bytes());
        bytes
    }

    /// The proposal signed with `key` (the proposer's consensus key) for `chain_id`.
    pub fn sign(self, chain_id: &str, key: &SigningKey) -> Signed<ConsensusProposal> {
        let signature = b64::encode(key.sign(&self.sign_bytes(chain_id)));
        Signed {
            message: self,
            signature,
        }
    }
}

fn domain(tag: &[u8], chain_id: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(128);
    bytes.extend_from_slice(tag);
    bytes.extend_from_slice(chain_id.as_bytes());
    // Chain IDs never hold NUL, so the tag and chain end here unambiguously.
    bytes.push(0);
    bytes
}

fn push_optional_hash(bytes: &mut Vec<u8>, hash: Option<&Hash>) {
    match hash {
        None => bytes.push(0),
        Some(hash) => {
            bytes.push(1);
            bytes.extend_from_slice(hash);
        }
    }
}

/// A consensus message with its signer's ES256 signature (64-byte `r || s`, base64url).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed<M> {
    /// The message signed.
    pub message: M,
    /// The signature over the message's sign bytes, base64url.
    pub signature: String,
}

/// Whether `signature` (base64url) is `key`'s low-S ES256 signature over `message`. High-S
/// twins of valid signatures are refused, so a signature has one encoding only.
fn signature_valid(key: &VerifyingKey, message: &[u8], signature: &str) -> bool {
    match b64::decode(signature) {
        Ok(raw) => es256_signature_valid(key, message, &raw),
        Err(_) => false,
    }
}

/// Whether `signature` (64 bytes `r || s`) is `key`'s low-S ES256 signature over `message`:
/// the one check of every consensus signature, in certificates, evidence and the engine.
pub fn es256_signature_valid(key: &VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    hazmat::es256_is_low_s(signature) && key.verify(message, signature)
}

/// One validator: a consortium member with its consensus key and voting power.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoweredValidator {
    /// The member's ID.
    pub id: PartyId,
    /// The member's consensus key (ES256, public): it signs proposals and votes.
    pub signing_jwk: Jwk,
    /// Its voting power (1 to [`MAX_POWER`]), from its rank by credit.
    pub power: u64,
}

/// The validators of a height, ranked: the first `proposers` (the representative nodes) take
/// turns to propose; all of them (representative and audit nodes) vote with their power.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusSet {
    /// The ranked validators: proposers first.
    pub validators: Vec<PoweredValidator>,
    /// How many of the first validators propose.
    pub proposers: usize,
}

/// Why a validator set cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsensusSetError {
    /// No validator, more than [`MAX_VALIDATORS`], or proposers not within 1 and the size.
    #[error(
        "a validator set needs 1 to {MAX_VALIDATORS} validators and 1 to all of them proposing"
    )]
    Sizes,
    /// A member listed twice.
    #[error("validator {0} appears twice")]
    Duplicate(PartyId),
    /// A voting power of 0 or over [`MAX_POWER`].
    #[error("validator {0} has a voting power outside 1..={MAX_POWER}")]
    Power(PartyId),
    /// A consensus key that is not a valid public ES256 JWK.
    #[error("validator {id}: {error}")]
    Key {
        /// The member whose key is invalid.
        id: PartyId,
        /// What is wrong with it.
        error: KeyError,
    },
}

/// A set checked by [`ConsensusSet::verified`]: its keys parsed once, its total power known.
#[derive(Debug, Clone)]
pub struct VerifiedSet {
    set: ConsensusSet,
    keys: Vec<VerifyingKey>,
    total_power: u64,
    hash: Hash,
}

impl ConsensusSet {
    /// Checks the set (sizes, no member twice, powers in range, every key a valid public ES256
    /// key) and parses its keys once.
    pub fn verified(self) -> Result<VerifiedSet, ConsensusSetError> {
        let n = self.validators.len();
        if n == 0 || n > MAX_VALIDATORS || self.proposers == 0 || self.proposers > n {
            return Err(ConsensusSetError::Sizes);
        }
        let mut seen = BTreeSet::new();
        let mut keys = Vec::with_capacity(n);
        let mut total_power = 0u64;
        for v in &self.validators {
            if !seen.insert(&v.id) {
                return Err(ConsensusSetError::Duplicate(v.id.clone()));
            }
            if v.power == 0 || v.power > MAX_POWER {
                return Err(ConsensusSetError::Power(v.id.clone()));
            }
            if v.signing_jwk.has_private_members() {
                return Err(ConsensusSetError::Key {
                    id: v.id.clone(),
                    error: KeyError::InvalidJwk("d"),
                });
            }
            let key =
                VerifyingKey::from_jwk(&v.signing_jwk).map_err(|error| ConsensusSetError::Key {
                    id: v.id.clone(),
                    error,
                })?;
            keys.push(key);
            // At most 256 * 2^40 = 2^48: no overflow.
            total_power += v.power;
        }
        let hash = Hash::sha256(&serde_json::to_vec(&self).expect("validator sets serialize"));
        Ok(VerifiedSet {
            set: self,
            keys,
            total_power,
            hash,
        })
    }
}

impl VerifiedSet {
    /// The set as checked.
    pub fn set(&self) -> &ConsensusSet {
        &self.set
    }

    /// SHA-256 of the set's JSON serialization: what headers name as their validators hash.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The sum of the validators' voting power.
    pub fn total_power(&self) -> u64 {
        self.total_power
    }

    /// The proposer of `round` at `height`: the representative nodes in turn, moving one
    /// place per height and per round, so a proposer that times out hands over to the next.
    pub fn proposer(&self, height: u64, round: u32) -> &PartyId {
        let turn = (u128::from(height) + u128::from(round)) % self.set.proposers as u128;
        &self.set.validators[turn as usize].id
    }

    /// Validator `id`'s index, key and power, if it is in the set.
    fn member(&self, id: &PartyId) -> Option<(usize, &VerifyingKey, u64)> {
        let index = self.set.validators.iter().position(|v| &v.id == id)?;
        Some((index, &self.keys[index], self.set.validators[index].power))
    }

    /// Whether `signed` is a valid vote by a member of this set on `chain_id`.
    pub fn vote_is_signed(&self, chain_id: &str, signed: &Signed<ConsensusVote>) -> bool {
        self.member(&signed.message.validator)
            .is_some_and(|(_, key, _)| {
                signature_valid(key, &signed.message.sign_bytes(chain_id), &signed.signature)
            })
    }

    /// Whether `signed` is a valid proposal by a member of this set on `chain_id` (not
    /// whether it was that member's turn: see [`VerifiedSet::proposer`]).
    pub fn proposal_is_signed(&self, chain_id: &str, signed: &Signed<ConsensusProposal>) -> bool {
        self.member(&signed.message.proposer)
            .is_some_and(|(_, key, _)| {
                signature_valid(key, &signed.message.sign_bytes(chain_id), &signed.signature)
            })
    }
}

/// One precommit in a certificate: the validator and its signature (base64url) over the
/// precommit for the certificate's height, round and value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitSignature {
    /// The validator that precommitted.
    pub validator: PartyId,
    /// Its ES256 signature over [`ConsensusVote::sign_bytes`] of that precommit, base64url.
    pub signature: String,
}

/// Proof that a value was decided at a height: precommits for it, in one round, from
/// validators holding more than 2/3 of the voting power of the set in force at that height.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionCertificate {
    /// The height decided.
    pub height: u64,
    /// The round whose precommits decided it.
    pub round: u32,
    /// The header hash decided.
    pub value: Hash,
    /// The precommits, one per validator.
    pub signatures: Vec<CommitSignature>,
}

/// Why a decision certificate does not prove its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// A validator signs twice (duplicated votes count once at most, so this is refused).
    #[error("validator {0} signs the certificate twice")]
    Duplicate(PartyId),
    /// A signer that is not in the set fixed for the height.
    #[error("{0} is not a validator of this height")]
    Unknown(PartyId),
    /// A signature that does not verify for the precommit (forged, or over another chain,
    /// height, round or value).
    #[error("the precommit of {0} does not verify")]
    BadSignature(PartyId),
    /// The valid precommits hold 2/3 of the power or less.
    #[error("precommits hold {signed} of {total} voting power: not more than 2/3")]
    NotEnoughPower {
        /// The power of the valid precommits.
        signed: u64,
        /// The set's total power.
        total: u64,
    },
}

impl DecisionCertificate {
    /// The certificate of `value` at (`height`, `round`) from these signed precommits; those
    /// that are not precommits for exactly that are left out.
    pub fn from_precommits(
        height: u64,
        round: u32,
        value: Hash,
        precommits: &[Signed<ConsensusVote>],
    ) -> Self {
        let mut signers = BTreeSet::new();
        let signatures = precommits
            .iter()
            .filter(|s| {
                let vote = &s.message;
                vote.kind == VoteKind::Precommit
                    && vote.height == height
                    && vote.round == round
                    && vote.value == Some(value)
            })
            .filter(|s| signers.insert(s.message.validator.clone()))
            .map(|s| CommitSignature {
                validator: s.message.validator.clone(),
                signature: s.signature.clone(),
            })
            .collect();
        Self {
            height,
            round,
            value,
            signatures,
        }
    }

    /// Drops the signatures that do not count under `set`: signers outside it, a signer's
    /// second signature, and signatures that do not verify. A certificate a peer synced may
    /// carry such (an engine counts them as nothing); stored and served, it must not.
    pub fn retain_valid(&mut self, chain_id: &str, set: &VerifiedSet) {
        let mut seen = BTreeSet::new();
        let (height, round, value) = (self.height, self.round, self.value);
        self.signatures.retain(|commit| {
            let Some((_, key, _)) = set.member(&commit.validator) else {
                return false;
            };
            let precommit = ConsensusVote {
                kind: VoteKind::Precommit,
                height,
                round,
                value: Some(value),
                validator: commit.validator.clone(),
            };
            signature_valid(key, &precommit.sign_bytes(chain_id), &commit.signature)
                && seen.insert(commit.validator.clone())
        });
    }

    /// Checks the certificate strictly against `set` (the set the chain fixed for its
    /// height): every signer a distinct member, every signature valid, and the signers'
    /// power more than 2/3 of the total. Returns the signed power.
    pub fn verify(&self, chain_id: &str, set: &VerifiedSet) -> Result<u64, CertificateError> {
        let mut signed_by = vec![false; set.set.validators.len()];
        let mut signed = 0u64;
        for commit in &self.signatures {
            let (index, key, power) = set
                .member(&commit.validator)
                .ok_or_else(|| CertificateError::Unknown(commit.validator.clone()))?;
            if std::mem::replace(&mut signed_by[index], true) {
                return Err(CertificateError::Duplicate(commit.validator.clone()));
            }
            let precommit = ConsensusVote {
                kind: VoteKind::Precommit,
                height: self.height,
                round: self.round,
                value: Some(self.value),
                validator: commit.validator.clone(),
            };
            if !signature_valid(key, &precommit.sign_bytes(chain_id), &commit.signature) {
                return Err(CertificateError::BadSignature(commit.validator.clone()));
            }
            signed += power;
        }
        let total = set.total_power;
        // Both are at most 2^48 (see MAX_POWER): three times either fits in u64.
        if 3 * signed > 2 * total {
            Ok(signed)
        } else {
            Err(CertificateError::NotEnoughPower { signed, total })
        }
    }
}

/// Proof that a validator signed two conflicting messages: two different values (or a value
/// and nil) for the same vote, or two different proposals for the same round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Evidence {
    /// Two votes of one kind by one validator at one height and round, for different values.
    DoubleVote(Box<Signed<ConsensusVote>>, Box<Signed<ConsensusVote>>),
    /// Two proposals by one validator at one height and round, of different values or
    /// polka rounds.
    DoubleProposal(
        Box<Signed<ConsensusProposal>>,
        Box<Signed<ConsensusProposal>>,
    ),
}

/// Why evidence proves nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// The two messages are by different validators.
    #[error("the two messages are by different validators")]
    DifferentSigners,
    /// The two messages are not for the same step (height, round, and kind of vote).
    #[error("the two messages are for different steps")]
    DifferentSteps,
    /// The two messages say the same thing.
    #[error("the two messages do not conflict")]
    NotConflicting,
    /// The signer is not in the set fixed for that height.
    #[error("{0} is not a validator of that height")]
    NotAValidator(PartyId),
    /// A signature that does not verify.
    #[error("a signature does not verify")]
    BadSignature,
}

impl Evidence {
    /// The height both messages are at.
    pub fn height(&self) -> u64 {
        match self {
            Evidence::DoubleVote(a, _) => a.message.height,
            Evidence::DoubleProposal(a, _) => a.message.height,
        }
    }

    /// Checks the evidence against `set` (the set the chain fixed for its height): one
    /// member signed both messages, for the same step, with different content. Returns the
    /// offender.
    pub fn verify(&self, chain_id: &str, set: &VerifiedSet) -> Result<PartyId, EvidenceError> {
        let (offender, both_signed) = match self {
            Evidence::DoubleVote(a, b) => {
                let (x, y) = (&a.message, &b.message);
                if x.validator != y.validator {
                    return Err(EvidenceError::DifferentSigners);
                }
                if (x.kind, x.height, x.round) != (y.kind, y.height, y.round) {
                    return Err(EvidenceError::DifferentSteps);
                }
                if x.value == y.value {
                    return Err(EvidenceError::NotConflicting);
                }
                let signed = |s: &Signed<ConsensusVote>| set.vote_is_signed(chain_id, s);
                (&x.validator, signed(a) && signed(b))
            }
            Evidence::DoubleProposal(a, b) => {
                let (x, y) = (&a.message, &b.message);
                if x.proposer != y.proposer {
                    return Err(EvidenceError::DifferentSigners);
                }
                if (x.height, x.round) != (y.height, y.round) {
                    return Err(EvidenceError::DifferentSteps);
                }
                if (x.value, x.pol_round) == (y.value, y.pol_round) {
                    return Err(EvidenceError::NotConflicting);
                }
                let signed = |s: &Signed<ConsensusProposal>| set.proposal_is_signed(chain_id, s);
                (&x.proposer, signed(a) && signed(b))
            }
        };
        if set.member(offender).is_none() {
            return Err(EvidenceError::NotAValidator(offender.clone()));
        }
        if !both_signed {
            return Err(EvidenceError::BadSignature);
        }
        Ok(offender.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CHAIN: &str = "bft-test";

    struct Members {
        keys: Vec<SigningKey>,
        set: VerifiedSet,
    }

    fn id(i: usize) -> PartyId {
        PartyId::new(format!("node:{i}")).unwrap()
    }

    fn members(powers: &[u64], proposers: usize) -> Members {
        let keys: Vec<SigningKey> = powers.iter().map(|_| SigningKey::generate()).collect();
        let set = ConsensusSet {
            validators: powers
                .iter()
                .zip(&keys)
                .enumerate()
                .map(|(i, (&power, key))| PoweredValidator {
                    id: id(i),
                    signing_jwk: key.verifying_key().to_jwk(None),
                    power,
                })
                .collect(),
            proposers,
        }
        .verified()
        .unwrap();
        Members { keys, set }
    }

    fn precommit(
        m: &Members,
        i: usize,
        height: u64,
        round: u32,
        value: Hash,
    ) -> Signed<ConsensusVote> {
        ConsensusVote {
            kind: VoteKind::Precommit,
            height,
            round,
            value: Some(value),
            validator: id(i),
        }
        .sign(CHAIN, &m.keys[i])
    }

    fn certificate(m: &Members, signers: &[usize], value: Hash) -> DecisionCertificate {
        let votes: Vec<_> = signers
            .iter()
            .map(|&i| precommit(m, i, 7, 1, value))
            .collect();
        DecisionCertificate::from_precommits(7, 1, value, &votes)
    }

    #[test]
    fn more_than_two_thirds_of_the_power_certifies() {
        let m = members(&[1, 1, 1, 1], 2);
        assert_eq!(
            certificate(&m, &[0, 1, 2], Hash::new([9; 32])).verify(CHAIN, &m.set),
            Ok(3)
        );
        assert_eq!(
            certificate(&m, &[0, 1, 2, 3], Hash::new([9; 32])).verify(CHAIN, &m.set),
            Ok(4)
        );
    }

    #[test]
    fn two_thirds_exactly_or_less_is_refused() {
        // Powers 3 + 3 of 9 is exactly 2/3.
        let m = members(&[3, 3, 2, 1], 2);
        assert_eq!(
            certificate(&m, &[0, 1], Hash::new([9; 32])).verify(CHAIN, &m.set),
            Err(CertificateError::NotEnoughPower {
                signed: 6,
                total: 9
            })
        );
        assert_eq!(
            certificate(&m, &[0, 1, 3], Hash::new([9; 32])).verify(CHAIN, &m.set),
            Ok(7)
        );
        let four = members(&[1, 1, 1, 1], 1);
        assert!(matches!(
            certificate(&four, &[0, 1], Hash::new([9; 32])).verify(CHAIN, &four.set),
            Err(CertificateError::NotEnoughPower {
                signed: 2,
                total: 4
            })
        ));
        assert!(matches!(
            certificate(&four, &[], Hash::new([9; 32])).verify(CHAIN, &four.set),
            Err(CertificateError::NotEnoughPower { signed: 0, .. })
        ));
    }

    #[test]
    fn a_duplicated_precommit_is_refused_not_counted_twice() {
        let m = members(&[1, 1, 1, 1], 2);
        let mut cert = certificate(&m, &[0, 1], Hash::new([9; 32]));
        cert.signatures.push(cert.signatures[0].clone());
        assert_eq!(
            cert.verify(CHAIN, &m.set),
            Err(CertificateError::Duplicate(id(0)))
        );
        // A second, different signature by the same validator (ECDSA is randomised).
        let mut cert = certificate(&m, &[0, 1, 2], Hash::new([9; 32]));
        let again = precommit(&m, 2, 7, 1, Hash::new([9; 32]));
        cert.signatures.push(CommitSignature {
            validator: id(2),
            signature: again.signature,
        });
        assert_eq!(
            cert.verify(CHAIN, &m.set),
            Err(CertificateError::Duplicate(id(2)))
        );
    }

    #[test]
    fn votes_of_another_set_are_refused() {
        let fixed = members(&[1, 1, 1, 1], 2);
        let other = members(&[1, 1, 1, 1], 2);
        // Same IDs, other keys: a set the chain did not fix.
        let cert = certificate(&other, &[0, 1, 2, 3], Hash::new([9; 32]));
        assert_eq!(
            cert.verify(CHAIN, &fixed.set),
            Err(CertificateError::BadSignature(id(0)))
        );
        // A signer outside the set.
        let five = members(&[1, 1, 1, 1, 1], 2);
        let cert = certificate(&five, &[4, 0, 1, 2], Hash::new([9; 32]));
        assert_eq!(
            cert.verify(CHAIN, &fixed.set),
            Err(CertificateError::Unknown(id(4)))
        );
    }

    #[test]
    fn a_signature_over_anything_else_is_refused() {
        let m = members(&[1, 1, 1, 1], 2);
        let good = certificate(&m, &[0, 1, 2], Hash::new([9; 32]));
        let variants = [
            DecisionCertificate {
                height: 8,
                ..good.clone()
            },
            DecisionCertificate {
                round: 2,
                ..good.clone()
            },
            DecisionCertificate {
                value: Hash::new([8; 32]),
                ..good.clone()
            },
        ];
        for cert in variants {
            assert_eq!(
                cert.verify(CHAIN, &m.set),
                Err(CertificateError::BadSignature(id(0)))
            );
        }
        assert_eq!(
            good.verify("other-chain", &m.set),
            Err(CertificateError::BadSignature(id(0)))
        );
        // A prevote's signature is not a precommit's.
        let prevote = ConsensusVote {
            kind: VoteKind::Prevote,
            height: 7,
            round: 1,
            value: Some(Hash::new([9; 32])),
            validator: id(0),
        }
        .sign(CHAIN, &m.keys[0]);
        let mut cert = good.clone();
        cert.signatures[0].signature = prevote.signature;
        assert_eq!(
            cert.verify(CHAIN, &m.set),
            Err(CertificateError::BadSignature(id(0)))
        );
        // Garbage, and the high-S twin of a valid signature.
        let mut cert = good.clone();
        cert.signatures[0].signature = "!!".into();
        assert_eq!(
            cert.verify(CHAIN, &m.set),
            Err(CertificateError::BadSignature(id(0)))
        );
        let mut cert = good;
        cert.signatures[0].signature = b64::encode(high_s_twin(&cert.signatures[0].signature));
        assert_eq!(
            cert.verify(CHAIN, &m.set),
            Err(CertificateError::BadSignature(id(0)))
        );
    }

    /// `(r, n - s)`: the other valid encoding of an ECDSA signature.
    fn high_s_twin(signature: &str) -> Vec<u8> {
        const N: [u8; 32] = [
            0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2,
            0xfc, 0x63, 0x25, 0x51,
        ];
        let mut raw = b64::decode(signature).unwrap();
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let d = i16::from(N[i]) - i16::from(raw[32 + i]) - borrow;
            raw[32 + i] = d.rem_euclid(256) as u8;
            borrow = i16::from(d < 0);
        }
        raw
    }

    #[test]
    fn retain_valid_keeps_exactly_what_verify_counts() {
        let m = members(&[1, 1, 1, 1], 2);
        let mut cert = certificate(&m, &[0, 1, 2], Hash::new([9; 32]));
        let five = members(&[1, 1, 1, 1, 1], 2);
        cert.signatures
            .push(certificate(&five, &[4], Hash::new([9; 32])).signatures[0].clone());
        cert.signatures.push(cert.signatures[0].clone());
        cert.signatures[1].signature = cert.signatures[2].signature.clone();
        assert!(cert.verify(CHAIN, &m.set).is_err());
        cert.retain_valid(CHAIN, &m.set);
        let kept: Vec<_> = cert
            .signatures
            .iter()
            .map(|s| s.validator.clone())
            .collect();
        assert_eq!(kept, vec![id(0), id(2)]);
        assert!(matches!(
            cert.verify(CHAIN, &m.set),
            Err(CertificateError::NotEnoughPower {
                signed: 2,
                total: 4
            })
        ));
    }

    #[test]
    fn from_precommits_keeps_only_matching_precommits_once() {
        let m = members(&[1, 1, 1, 1], 2);
        let votes = vec![
            precommit(&m, 0, 7, 1, Hash::new([9; 32])),
            precommit(&m, 0, 7, 1, Hash::new([9; 32])),
            precommit(&m, 1, 7, 0, Hash::new([9; 32])),
            precommit(&m, 2, 7, 1, Hash::new([8; 32])),
            precommit(&m, 3, 7, 1, Hash::new([9; 32])),
        ];
        let cert = DecisionCertificate::from_precommits(7, 1, Hash::new([9; 32]), &votes);
        let signers: Vec<_> = cert
            .signatures
            .iter()
            .map(|s| s.validator.clone())
            .collect();
        assert_eq!(signers, vec![id(0), id(3)]);
    }

    #[test]
    fn malformed_sets_are_refused() {
        let m = members(&[1, 1], 1);
        let mut set = m.set.set().clone();
        set.proposers = 0;
        assert!(matches!(
            set.clone().verified(),
            Err(ConsensusSetError::Sizes)
        ));
        set.proposers = 3;
        assert!(matches!(
            set.clone().verified(),
            Err(ConsensusSetError::Sizes)
        ));
        set.proposers = 1;
        set.validators[1].id = id(0);
        assert!(
            matches!(set.clone().verified(), Err(ConsensusSetError::Duplicate(d)) if d == id(0))
        );
        set.validators[1].id = id(1);
        set.validators[1].power = 0;
        assert!(matches!(set.clone().verified(), Err(ConsensusSetError::Power(p)) if p == id(1)));
        set.validators[1].power = MAX_POWER + 1;
        assert!(matches!(set.clone().verified(), Err(ConsensusSetError::Power(p)) if p == id(1)));
        set.validators[1].power = 1;
        set.validators[1].signing_jwk = SigningKey::generate().to_jwk(None);
        assert!(matches!(
            set.clone().verified(),
            Err(ConsensusSetError::Key { .. })
        ));
        let empty = ConsensusSet {
            validators: vec![],
            proposers: 0,
        };
        assert!(matches!(empty.verified(), Err(ConsensusSetError::Sizes)));
    }

    #[test]
    fn proposers_take_turns_by_height_and_round() {
        let m = members(&[4, 3, 2, 1], 3);
        let turns: Vec<_> = (0..4).map(|h| m.set.proposer(h, 0).clone()).collect();
        assert_eq!(turns, vec![id(0), id(1), id(2), id(0)]);
        assert_eq!(m.set.proposer(1, 1), &id(2));
        assert_eq!(
            m.set.proposer(u64::MAX, u32::MAX),
            m.set.proposer(u64::MAX, u32::MAX)
        );
    }

    fn vote(
        m: &Members,
        i: usize,
        kind: VoteKind,
        round: u32,
        value: Option<Hash>,
    ) -> Box<Signed<ConsensusVote>> {
        Box::new(
            ConsensusVote {
                kind,
                height: 5,
                round,
                value,
                validator: id(i),
            }
            .sign(CHAIN, &m.keys[i]),
        )
    }

    fn proposal(
        m: &Members,
        i: usize,
        round: u32,
        value: Hash,
        pol: Option<u32>,
    ) -> Box<Signed<ConsensusProposal>> {
        Box::new(
            ConsensusProposal {
                height: 5,
                round,
                value,
                pol_round: pol,
                proposer: id(i),
            }
            .sign(CHAIN, &m.keys[i]),
        )
    }

    #[test]
    fn double_votes_and_double_proposals_name_the_offender() {
        let m = members(&[1, 1, 1, 1], 2);
        let pre = VoteKind::Prevote;
        let double_vote = Evidence::DoubleVote(
            vote(&m, 2, pre, 0, Some(Hash::new([1; 32]))),
            vote(&m, 2, pre, 0, Some(Hash::new([2; 32]))),
        );
        assert_eq!(double_vote.verify(CHAIN, &m.set), Ok(id(2)));
        let value_and_nil = Evidence::DoubleVote(
            vote(&m, 1, VoteKind::Precommit, 3, Some(Hash::new([1; 32]))),
            vote(&m, 1, VoteKind::Precommit, 3, None),
        );
        assert_eq!(value_and_nil.verify(CHAIN, &m.set), Ok(id(1)));
        let double_proposal = Evidence::DoubleProposal(
            proposal(&m, 0, 0, Hash::new([1; 32]), None),
            proposal(&m, 0, 0, Hash::new([2; 32]), None),
        );
        assert_eq!(double_proposal.verify(CHAIN, &m.set), Ok(id(0)));
        let other_pol = Evidence::DoubleProposal(
            proposal(&m, 0, 2, Hash::new([1; 32]), None),
            proposal(&m, 0, 2, Hash::new([1; 32]), Some(1)),
        );
        assert_eq!(other_pol.verify(CHAIN, &m.set), Ok(id(0)));
        // It round-trips through JSON as the chain stores it.
        let json = serde_json::to_string(&double_vote).unwrap();
        let back: Evidence = serde_json::from_str(&json).unwrap();
        assert_eq!(back, double_vote);
    }

    #[test]
    fn evidence_that_proves_nothing_is_refused() {
        let m = members(&[1, 1, 1, 1], 2);
        let pre = VoteKind::Prevote;
        let cases = [
            (
                Evidence::DoubleVote(
                    vote(&m, 2, pre, 0, Some(Hash::new([1; 32]))),
                    vote(&m, 2, pre, 0, Some(Hash::new([1; 32]))),
                ),
                EvidenceError::NotConflicting,
            ),
            (
                Evidence::DoubleVote(
                    vote(&m, 2, pre, 0, Some(Hash::new([1; 32]))),
                    vote(&m, 3, pre, 0, Some(Hash::new([2; 32]))),
                ),
                EvidenceError::DifferentSigners,
            ),
            (
                Evidence::DoubleVote(
                    vote(&m, 2, pre, 0, Some(Hash::new([1; 32]))),
                    vote(&m, 2, pre, 1, Some(Hash::new([2; 32]))),
                ),
                EvidenceError::DifferentSteps,
            ),
            (
                Evidence::DoubleVote(
                    vote(&m, 2, pre, 0, Some(Hash::new([1; 32]))),
                    vote(&m, 2, VoteKind::Precommit, 0, Some(Hash::new([2; 32]))),
                ),
                EvidenceError::DifferentSteps,
            ),
            (
                Evidence::DoubleProposal(
                    proposal(&m, 0, 0, Hash::new([1; 32]), None),
                    proposal(&m, 0, 0, Hash::new([1; 32]), None),
                ),
                EvidenceError::NotConflicting,
            ),
            (
                Evidence::DoubleProposal(
                    proposal(&m, 0, 0, Hash::new([1; 32]), None),
                    proposal(&m, 1, 0, Hash::new([2; 32]), None),
                ),
                EvidenceError::DifferentSigners,
            ),
            (
                Evidence::DoubleProposal(
                    proposal(&m, 0, 0, Hash::new([1; 32]), None),
                    proposal(&m, 0, 1, Hash::new([2; 32]), None),
                ),
                EvidenceError::DifferentSteps,
            ),
        ];
        for (evidence, error) in cases {
            assert_eq!(evidence.verify(CHAIN, &m.set), Err(error));
        }
        // A forged second vote: its signature is another vote's.
        let a = vote(&m, 2, pre, 0, Some(Hash::new([1; 32])));
        let mut b = vote(&m, 2, pre, 0, Some(Hash::new([2; 32])));
        b.signature = a.signature.clone();
        let forged = Evidence::DoubleVote(a.clone(), b);
        assert_eq!(
            forged.verify(CHAIN, &m.set),
            Err(EvidenceError::BadSignature)
        );
        // Another chain's votes, and a signer outside the set fixed for the height.
        let genuine = Evidence::DoubleVote(a, vote(&m, 2, pre, 0, Some(Hash::new([2; 32]))));
        assert_eq!(
            genuine.verify("other-chain", &m.set),
            Err(EvidenceError::BadSignature)
        );
        let smaller = members(&[1, 1], 1);
        assert_eq!(
            genuine.verify(CHAIN, &smaller.set),
            Err(EvidenceError::NotAValidator(id(2)))
        );
    }

    #[test]
    fn sign_bytes_differ_for_every_field() {
        let base = ConsensusVote {
            kind: VoteKind::Prevote,
            height: 1,
            round: 0,
            value: None,
            validator: id(0),
        };
        let variants = [
            ConsensusVote {
                kind: VoteKind::Precommit,
                ..base.clone()
            },
            ConsensusVote {
                height: 2,
                ..base.clone()
            },
            ConsensusVote {
                round: 1,
                ..base.clone()
            },
            ConsensusVote {
                value: Some(Hash::new([0; 32])),
                ..base.clone()
            },
            ConsensusVote {
                validator: id(1),
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.sign_bytes(CHAIN), base.sign_bytes(CHAIN));
        }
        let proposal = ConsensusProposal {
            height: 1,
            round: 0,
            value: Hash::new([0; 32]),
            pol_round: None,
            proposer: id(0),
        };
        assert_ne!(proposal.sign_bytes(CHAIN), base.sign_bytes(CHAIN));
        assert_ne!(
            ConsensusProposal {
                pol_round: Some(0),
                ..proposal.clone()
            }
            .sign_bytes(CHAIN),
            proposal.sign_bytes(CHAIN)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Any powers and any subset of signers: the certificate verifies exactly when the
        /// signers hold more than 2/3 of the power.
        #[test]
        fn certifies_exactly_above_two_thirds(
            powers in proptest::collection::vec(1u64..1_000, 1..7),
            mask in any::<u8>(),
        ) {
            let m = members(&powers, 1);
            let signers: Vec<usize> = (0..powers.len()).filter(|i| mask & (1 << i) != 0).collect();
            let signed: u64 = signers.iter().map(|&i| powers[i]).sum();
            let total: u64 = powers.iter().sum();
            let verdict = certificate(&m, &signers, Hash::new([3; 32])).verify(CHAIN, &m.set);
            if 3 * signed > 2 * total {
                prop_assert_eq!(verdict, Ok(signed));
            } else {
                prop_assert_eq!(verdict, Err(CertificateError::NotEnoughPower { signed, total }));
            }
        }
    }
}
