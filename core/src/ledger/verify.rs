//! Thin-client verification of certified headers and state proofs, in the manner of the
//! Tendermint light client: small checks composed into a [`Verdict`].
//!
//! The client trusts a validator set (from genesis, or from a set whose hash a trusted header
//! committed to). It accepts a header only with a certificate of precommits for it from
//! distinct validators of that set holding more than 2/3 of its voting power (Tendermint's
//! commit rule, [`super::bft`]), for a header of its chain, not older than the last header it
//! accepted. Then state proofs under that header's state root are checked with
//! [`StateProof::verify`](super::state::StateProof::verify). While less than 1/3 of the power
//! is faulty, no two certified headers share a height: a lying node is caught with certainty.

use super::bft::{CertificateError, VerifiedSet};
use super::block::{CertifiedHeader, ValidatorSet};
use super::governance::Status;
use super::machine::{KeyEpoch, RegistryEntry, StatusChange, registry_key};
use super::merkle::Hash;
use super::state::{StateKey, StateProof, StateProofError};
use super::tx::Role;
use crate::keys::{EncryptionKey, KeyError, PartyId, PublicKeySet, VerifyingKey};

/// Why a header is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReason {
    /// The header names another chain (its chain ID, cut to 64 characters).
    #[error("header of chain {0:?}, not ours")]
    WrongChain(String),
    /// The header is lower than the last one the client accepted.
    #[error("header height {height} is older than the last accepted {last}")]
    Stale {
        /// The header's height.
        height: u64,
        /// The height of the last accepted header.
        last: u64,
    },
    /// A header at the last accepted height that is not the accepted one.
    #[error("header at the last accepted height differs from the accepted one")]
    ConflictingHeader,
    /// The header's `validators_hash` is not the trusted set's hash.
    #[error("header names another validator set")]
    WrongValidatorSet,
    /// The set offered for a change is not the one the header names next, or is malformed.
    #[error("the offered validator set is not the one the header names next")]
    WrongNextValidatorSet,
    /// The certificate's header hash is not the header's.
    #[error("certificate is for another header")]
    CertificateMismatch,
    /// A precommit by someone (named) who is not a validator of the trusted set.
    #[error("precommit by {0}, who is not a validator")]
    UnknownVoter(String),
    /// Two precommits by one validator (named).
    #[error("two precommits by {0}")]
    DuplicateVote(String),
    /// A precommit (by the named validator) whose signature does not verify.
    #[error("invalid precommit signature by {0}")]
    BadVoteSignature(String),
}

/// The outcome of verifying a certified header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted; the client's last height moved to this header.
    Success,
    /// Valid precommits, but of 2/3 of the voting power or less.
    NotEnoughTrust {
        /// The voting power of the valid, distinct precommits.
        power: u64,
        /// The set's total voting power (more than 2/3 of it is needed).
        total: u64,
    },
    /// Something is wrong: evidence against the node that served it.
    Invalid(InvalidReason),
}

/// A header the client has accepted: proofs are checked against its state root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedHeader {
    /// The header's height.
    pub height: u64,
    /// The header's hash ([`Header::hash`](super::block::Header::hash)).
    pub hash: Hash,
    /// The state root it commits to: what proofs are checked against.
    pub state_root: Hash,
    /// SHA-256 of the certificate it was accepted with: the same header with the same
    /// certificate is accepted again without checking signatures.
    pub certificate_hash: Hash,
}

fn certificate_hash(certified: &CertifiedHeader) -> Hash {
    crate::Hash::sha256(
        &serde_json::to_vec(&certified.certificate).expect("certificates serialize"),
    )
}

/// A registry entry proven under a header the client accepted. Only
/// [`LightClient::verify_registry_entry`] makes one, so a step that takes it (encrypting to a
/// party, checking its signature) knows the keys are the registered ones.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedEntry {
    entry: RegistryEntry,
    height: u64,
}

impl VerifiedEntry {
    /// The proven registry entry.
    pub fn entry(&self) -> &RegistryEntry {
        &self.entry
    }

    /// The ID the entry registers.
    pub fn id(&self) -> &PartyId {
        &self.entry.id
    }

    /// The role the party is registered in.
    pub fn role(&self) -> Role {
        self.entry.role
    }

    /// The height of the header the entry was proven under.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The entry's status as of the proven header (the last change is at or below it).
    pub fn status(&self) -> Status {
        self.entry.status()
    }

    /// When the party was expelled or revoked (height and block time), if it was: proven,
    /// since the change is part of the entry under the certified state root.
    pub fn ended(&self) -> Option<&StatusChange> {
        self.entry.ended()
    }

    /// For a doctor: the hospital that admitted it.
    pub fn affiliation(&self) -> Option<&PartyId> {
        self.entry.affiliation.as_ref()
    }

    /// Whether the party was admitted, within its validity, and active at `time`.
    pub fn is_active_at(&self, time: u64) -> bool {
        self.entry.is_active_at(time)
    }

    /// The current registered keys.
    pub fn public_keys(&self) -> Result<PublicKeySet, KeyError> {
        Self::key_set(&self.entry.id, self.entry.current_keys())
    }

    /// The keys in force at `time` (to check a signature made then), if any were.
    pub fn public_keys_at(&self, time: u64) -> Result<Option<PublicKeySet>, KeyError> {
        self.entry
            .keys_at(time)
            .map(|epoch| Self::key_set(&self.entry.id, epoch))
            .transpose()
    }

    /// For a hospital: its voucher key, with which a patient blinds its registration
    /// voucher ([`crate::voucher::blind`]).
    pub fn voucher_key(&self) -> Option<crate::voucher::VoucherKey> {
        self.entry
            .voucher_key
            .as_ref()
            .and_then(|jwk| crate::voucher::VoucherKey::from_jwk(jwk).ok())
    }

    fn key_set(id: &PartyId, epoch: &KeyEpoch) -> Result<PublicKeySet, KeyError> {
        Ok(PublicKeySet {
            id: id.clone(),
            signing: VerifyingKey::from_jwk(&epoch.signing_jwk)?,
            encryption: EncryptionKey::from_jwk(&epoch.encryption_jwk)?,
        })
    }
}

/// Why a served registry entry is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The client has accepted no header yet, so nothing is proven.
    #[error("no trusted header yet")]
    NoTrustedHeader,
    /// The proof does not verify under the trusted state root.
    #[error(transparent)]
    Proof(#[from] StateProofError),
    /// The value served (or its claimed absence) is not what the proof shows.
    #[error("the served value does not match its proof")]
    ValueMismatch,
    /// The proven value is not a registry entry, or is one for another ID.
    #[error("the proven value is not a registry entry for that ID")]
    Malformed,
    /// A patient's entry whose ID is not the RFC 7638 thumbprint of its signing key.
    #[error("a patient entry whose ID is not its signing key's thumbprint")]
    NotSelfCertifying,
}

/// The thin client's verifier state.
#[derive(Debug, Clone)]
pub struct LightClient {
    chain_id: String,
    validators: ValidatorSet,
    voters: VerifiedSet,
    last: Option<TrustedHeader>,
}

impl LightClient {
    /// A client trusting `validators` (checked) for `chain_id`.
    pub fn new(
        chain_id: &str,
        validators: ValidatorSet,
    ) -> Result<Self, super::block::ValidatorSetError> {
        let voters = Self::voters(&validators)?;
        Ok(Self {
            chain_id: chain_id.into(),
            validators,
            voters,
            last: None,
        })
    }

    fn voters(validators: &ValidatorSet) -> Result<VerifiedSet, super::block::ValidatorSetError> {
        validators.check()?;
        validators
            .consensus_set()
            .verified()
            .map_err(|_| super::block::ValidatorSetError::Sizes)
    }

    /// The last header the client accepted, if any.
    pub fn last(&self) -> Option<&TrustedHeader> {
        self.last.as_ref()
    }

    /// The validator set the client trusts now.
    pub fn validators(&self) -> &ValidatorSet {
        &self.validators
    }

    /// Follows a change of validator set (a re-ranking at a cycle end): `last_of_cycle` is
    /// the last certified header under the trusted set, and `next` the set it names next.
    /// On success the header is the last trusted one and `next` the trusted set.
    pub fn follow_transition(
        &mut self,
        last_of_cycle: &CertifiedHeader,
        next: ValidatorSet,
    ) -> Verdict {
        if last_of_cycle.header.next_validators_hash != next.hash() {
            return Verdict::Invalid(InvalidReason::WrongNextValidatorSet);
        }
        let Ok(voters) = Self::voters(&next) else {
            return Verdict::Invalid(InvalidReason::WrongNextValidatorSet);
        };
        match self.verify_header(last_of_cycle) {
            Verdict::Success => {
                self.validators = next;
                self.voters = voters;
                Verdict::Success
            }
            other => other,
        }
    }

    /// Verifies a certified header; on success it becomes the last trusted header.
    pub fn verify_header(&mut self, certified: &CertifiedHeader) -> Verdict {
        match self.check(certified) {
            Ok(()) => {
                let header = &certified.header;
                self.last = Some(TrustedHeader {
                    height: header.height,
                    hash: header.hash(),
                    state_root: header.state_root,
                    certificate_hash: certificate_hash(certified),
                });
                Verdict::Success
            }
            Err(verdict) => verdict,
        }
    }

    fn check(&self, certified: &CertifiedHeader) -> Result<(), Verdict> {
        let invalid = |reason| Err(Verdict::Invalid(reason));
        let header = &certified.header;
        if header.chain_id != self.chain_id {
            return invalid(InvalidReason::WrongChain(
                header.chain_id.chars().take(64).collect(),
            ));
        }
        let hash = header.hash();
        if let Some(last) = &self.last {
            if header.height < last.height {
                return invalid(InvalidReason::Stale {
                    height: header.height,
                    last: last.height,
                });
            }
            if header.height == last.height && hash != last.hash {
                return invalid(InvalidReason::ConflictingHeader);
            }
            if hash == last.hash && certificate_hash(certified) == last.certificate_hash {
                // Accepted before with this very certificate: nothing new to check.
                return Ok(());
            }
        }
        if header.validators_hash != self.validators.hash() {
            return invalid(InvalidReason::WrongValidatorSet);
        }
        let certificate = &certified.certificate;
        if certificate.value != hash || certificate.height != header.height {
            return invalid(InvalidReason::CertificateMismatch);
        }
        match certificate.verify(&self.chain_id, &self.voters) {
            Ok(_) => Ok(()),
            Err(CertificateError::NotEnoughPower { signed, total }) => {
                Err(Verdict::NotEnoughTrust {
                    power: signed,
                    total,
                })
            }
            Err(CertificateError::Unknown(id)) => {
                invalid(InvalidReason::UnknownVoter(id.to_string()))
            }
            Err(CertificateError::Duplicate(id)) => {
                invalid(InvalidReason::DuplicateVote(id.to_string()))
            }
            Err(CertificateError::BadSignature(id)) => {
                invalid(InvalidReason::BadVoteSignature(id.to_string()))
            }
        }
    }

    /// Checks a served registry entry of `id` (its JSON, or `None` for a claimed absence)
    /// and its proof under the last trusted header: the proven entry, or a proven absence.
    pub fn verify_registry_entry(
        &self,
        id: &PartyId,
        value: Option<&[u8]>,
        proof: &StateProof,
    ) -> Result<Option<VerifiedEntry>, EntryError> {
        let Some(value) = self.verify_value(&registry_key(id), value, proof)? else {
            return Ok(None);
        };
        self.registry_entry_from(id, value).map(Some)
    }

    /// Reads `id`'s registry entry from its JSON, whose hash the caller has checked against a
    /// proof under the last trusted header (a state proof, or a directory bucket's): the
    /// entry must name `id`, be well formed, and a patient's ID must be its first key's
    /// thumbprint.
    pub fn registry_entry_from(
        &self,
        id: &PartyId,
        value: &[u8],
    ) -> Result<VerifiedEntry, EntryError> {
        let height = self
            .last
            .as_ref()
            .ok_or(EntryError::NoTrustedHeader)?
            .height;
        let entry: RegistryEntry =
            serde_json::from_slice(value).map_err(|_| EntryError::Malformed)?;
        if &entry.id != id {
            return Err(EntryError::Malformed);
        }
        // The chain enforces it; a client checks it too, so an entry from a chain that did
        // not (or from before it did) cannot hand a patient's ID to another key. A patient
        // keeps its ID across rotations: it is its *first* key's thumbprint.
        if entry.role == Role::Patient
            && entry
                .keys
                .first()
                .is_some_and(|k| entry.id.as_str() != k.signing_jwk.thumbprint())
        {
            return Err(EntryError::NotSelfCertifying);
        }
        if !entry.is_well_formed() {
            return Err(EntryError::Malformed);
        }
        Ok(VerifiedEntry { entry, height })
    }

    /// Checks that a served state value (or its claimed absence) is what `proof` proves for
    /// `key` under the last trusted header; returns the value, now verified.
    pub fn verify_value<'v>(
        &self,
        key: &StateKey,
        value: Option<&'v [u8]>,
        proof: &StateProof,
    ) -> Result<Option<&'v [u8]>, EntryError> {
        if self.last.is_none() {
            return Err(EntryError::NoTrustedHeader);
        }
        match (value, self.verify_state(key, proof)?) {
            (None, None) => Ok(None),
            (Some(value), Some(hash)) if super::state::value_hash(value) == hash => Ok(Some(value)),
            _ => Err(EntryError::ValueMismatch),
        }
    }

    /// Checks a state proof for `key` under the last trusted header; returns the value hash
    /// there, or `None` for a proven absence.
    pub fn verify_state(
        &self,
        key: &StateKey,
        proof: &StateProof,
    ) -> Result<Option<Hash>, StateProofError> {
        let root = self
            .last
            .as_ref()
            .map(|t| t.state_root)
            .ok_or(StateProofError::RootMismatch)?;
        proof.verify(&root, key)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::bft::{ConsensusVote, DecisionCertificate, VoteKind};
    use super::super::block::{Header, Validator};
    use super::super::state::{StateTree, state_key, value_hash};
    use super::*;
    use crate::keys::{PartyId, SigningKey};

    pub(crate) struct Consortium {
        keys: Vec<(PartyId, SigningKey)>,
        pub(crate) set: ValidatorSet,
    }

    /// 3 proposers (validators 0, 1, 2: power 2 each) and 3 auditors (3, 4, 5: power 1 each):
    /// a certificate needs more than 6 of the 9, such as [`QUORUM`].
    pub(crate) fn consortium() -> Consortium {
        let keys: Vec<_> = (0..6)
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
        Consortium {
            keys,
            set: ValidatorSet {
                validators,
                proposers: 3,
                auditors: 3,
            },
        }
    }

    /// Power 7 of 9: certifies.
    pub(crate) const QUORUM: &[usize] = &[0, 1, 2, 3];
    /// Power 7 of 9 without node:0: certifies.
    const OTHER_QUORUM: &[usize] = &[1, 2, 3, 4, 5];
    /// Power 6 of 9: exactly 2/3, does not.
    const TWO_THIRDS: &[usize] = &[0, 1, 2];

    pub(crate) fn header(c: &Consortium, height: u64, state_root: Hash) -> Header {
        Header {
            chain_id: "test".into(),
            height,
            round: 0,
            previous: Hash::new([0; 32]),
            time_ms: 0,
            proposer: c.set.validators[0].id.clone(),
            tx_root: Hash::new([0; 32]),
            state_root,
            validators_hash: c.set.hash(),
            next_validators_hash: c.set.hash(),
            last_commit: Vec::new(),
        }
    }

    pub(crate) fn certify(c: &Consortium, header: Header, voters: &[usize]) -> CertifiedHeader {
        let precommits: Vec<_> = voters
            .iter()
            .map(|&i| {
                ConsensusVote {
                    kind: VoteKind::Precommit,
                    height: header.height,
                    round: 0,
                    value: Some(header.hash()),
                    validator: c.keys[i].0.clone(),
                }
                .sign(&header.chain_id, &c.keys[i].1)
            })
            .collect();
        let mut certificate =
            DecisionCertificate::from_precommits(header.height, 0, header.hash(), &precommits);
        // from_precommits keeps one per validator; a test may want a duplicate.
        if voters.len() > certificate.signatures.len() {
            let first = certificate.signatures[0].clone();
            certificate.signatures.push(first);
        }
        CertifiedHeader {
            certificate,
            header,
        }
    }

    #[test]
    fn accepts_a_majority_certificate_then_checks_proofs() {
        let c = consortium();
        let mut tree = StateTree::new();
        let key = state_key("registry", "hospital:a");
        tree.insert(key, value_hash(b"entry"));
        let mut client = LightClient::new("test", c.set.clone()).unwrap();
        assert_eq!(
            client.verify_header(&certify(&c, header(&c, 1, tree.root()), QUORUM)),
            Verdict::Success
        );
        assert_eq!(
            client.verify_state(&key, &tree.prove(&key)),
            Ok(Some(value_hash(b"entry")))
        );
        let absent = state_key("registry", "hospital:b");
        assert_eq!(client.verify_state(&absent, &tree.prove(&absent)), Ok(None));
        // A proof from another state (a lying node) fails under the certified root.
        let mut other = tree.clone();
        other.insert(absent, value_hash(b"forged"));
        assert!(client.verify_state(&absent, &other.prove(&absent)).is_err());
    }

    #[test]
    fn refuses_minorities_strangers_duplicates_and_forgeries() {
        let c = consortium();
        let mut client = LightClient::new("test", c.set.clone()).unwrap();
        let h = header(&c, 1, Hash::new([1; 32]));
        assert_eq!(
            client.verify_header(&certify(&c, h.clone(), TWO_THIRDS)),
            Verdict::NotEnoughTrust { power: 6, total: 9 }
        );
        // A precommit by a key outside the set names a stranger.
        let mut stranger = certify(&c, h.clone(), QUORUM);
        stranger.certificate.signatures[0].validator = PartyId::new("node:9").unwrap();
        assert!(matches!(
            client.verify_header(&stranger),
            Verdict::Invalid(InvalidReason::UnknownVoter(_))
        ));
        assert!(matches!(
            client.verify_header(&certify(&c, h.clone(), &[3, 3])),
            Verdict::Invalid(InvalidReason::DuplicateVote(_))
        ));
        let mut forged = certify(&c, h.clone(), QUORUM);
        forged.header.state_root = Hash::new([9; 32]);
        assert!(matches!(
            client.verify_header(&forged),
            Verdict::Invalid(InvalidReason::CertificateMismatch)
        ));
        let mut bad_sig = certify(&c, h.clone(), QUORUM);
        bad_sig.certificate.signatures[1].signature =
            bad_sig.certificate.signatures[0].signature.clone();
        assert!(matches!(
            client.verify_header(&bad_sig),
            Verdict::Invalid(InvalidReason::BadVoteSignature(_))
        ));
        let mut other_chain = h.clone();
        other_chain.chain_id = "other".into();
        assert!(matches!(
            client.verify_header(&certify(&c, other_chain, QUORUM)),
            Verdict::Invalid(InvalidReason::WrongChain(_))
        ));
        let mut other_set = h;
        other_set.validators_hash = Hash::new([7; 32]);
        assert!(matches!(
            client.verify_header(&certify(&c, other_set, QUORUM)),
            Verdict::Invalid(InvalidReason::WrongValidatorSet)
        ));
        assert!(client.last().is_none());
    }

    #[test]
    fn refuses_stale_and_conflicting_headers() {
        let c = consortium();
        let mut client = LightClient::new("test", c.set.clone()).unwrap();
        assert_eq!(
            client.verify_header(&certify(
                &c,
                header(&c, 5, Hash::new([5; 32])),
                &[0, 1, 2, 3, 4, 5]
            )),
            Verdict::Success
        );
        assert!(matches!(
            client.verify_header(&certify(&c, header(&c, 4, Hash::new([4; 32])), QUORUM)),
            Verdict::Invalid(InvalidReason::Stale { height: 4, last: 5 })
        ));
        assert!(matches!(
            client.verify_header(&certify(&c, header(&c, 5, Hash::new([6; 32])), QUORUM)),
            Verdict::Invalid(InvalidReason::ConflictingHeader)
        ));
        assert_eq!(
            client.verify_header(&certify(
                &c,
                header(&c, 5, Hash::new([5; 32])),
                OTHER_QUORUM
            )),
            Verdict::Success
        );
        assert_eq!(
            client.verify_header(&certify(
                &c,
                header(&c, 6, Hash::new([6; 32])),
                OTHER_QUORUM
            )),
            Verdict::Success
        );
        assert_eq!(client.last().unwrap().height, 6);
    }

    #[test]
    fn follows_a_validator_set_transition_and_only_a_certified_one() {
        let c = consortium();
        let mut client = LightClient::new("test", c.set.clone()).unwrap();
        // The next cycle's set: node:3 drops out, node:0..2 propose... re-ranked as 1,2,4,5,0,3
        // with 3 proposers and 2 auditors (node:5 and node:0 audit).
        let mut next = c.set.clone();
        next.validators = [1, 2, 4, 5, 0, 3]
            .iter()
            .map(|&i| c.set.validators[i].clone())
            .collect();
        next.auditors = 2;
        let mut last = header(&c, 7, Hash::new([7; 32]));
        last.next_validators_hash = next.hash();
        // A header under the new set is refused until the transition is followed.
        let mut after = header(&c, 8, Hash::new([8; 32]));
        after.validators_hash = next.hash();
        // Under the next set, nodes 1, 2, 4 (power 2) and 5 (power 1) hold 7 of 8.
        let after = certify(&c, after, &[1, 2, 4, 5]);
        assert_eq!(
            client.verify_header(&after),
            Verdict::Invalid(InvalidReason::WrongValidatorSet)
        );
        // The offered set must be the one the header names.
        assert_eq!(
            client.follow_transition(&certify(&c, last.clone(), QUORUM), c.set.clone()),
            Verdict::Invalid(InvalidReason::WrongNextValidatorSet)
        );
        // The transition header itself needs the old set's certificate.
        assert!(matches!(
            client.follow_transition(&certify(&c, last.clone(), TWO_THIRDS), next.clone()),
            Verdict::NotEnoughTrust { .. }
        ));
        assert_eq!(client.validators(), &c.set);
        assert_eq!(
            client.follow_transition(&certify(&c, last, QUORUM), next.clone()),
            Verdict::Success
        );
        assert_eq!(client.validators(), &next);
        // node:3 dropped out: its precommit no longer counts; the new set's do.
        let mut forged = header(&c, 8, Hash::new([8; 32]));
        forged.validators_hash = next.hash();
        assert!(matches!(
            client.verify_header(&certify(&c, forged, &[0, 1, 2, 3])),
            Verdict::Invalid(InvalidReason::UnknownVoter(_))
        ));
        assert_eq!(client.verify_header(&after), Verdict::Success);
    }

    /// A patient entry whose ID is not its key's thumbprint (a squatter's, on a chain that
    /// let it through) is refused by the client, proof or not.
    #[test]
    fn patient_entries_must_be_self_certifying() {
        use super::super::machine::{LedgerState, RegistryEntry};
        use super::super::tx::Role;
        let c = consortium();
        let victim = SigningKey::generate();
        let victim_id = PartyId::new(victim.verifying_key().to_jwk(None).thumbprint()).unwrap();
        let keys = crate::keys::tests::party();
        let entry = |signing: &SigningKey| RegistryEntry {
            id: victim_id.clone(),
            role: Role::Patient,
            affiliation: None,
            valid_from: 0,
            valid_until: 10,
            keys: vec![super::super::machine::KeyEpoch {
                signing_jwk: signing.verifying_key().to_jwk(None),
                encryption_jwk: keys.decryption.encryption_key().to_jwk(None),
                height: 1,
                time: 0,
            }],
            statuses: vec![super::super::machine::StatusChange {
                status: Status::Active,
                height: 1,
                time: 0,
            }],
            voucher_key: None,
        };
        for (signing, accepted) in [(SigningKey::generate(), false), (victim, true)] {
            let mut state = LedgerState::new();
            state.put_unchecked(registry_key(&victim_id), &entry(&signing));
            let mut client = LightClient::new("test", c.set.clone()).unwrap();
            client.verify_header(&certify(&c, header(&c, 1, state.root()), QUORUM));
            let (value, proof) = state.get_with_proof(&registry_key(&victim_id));
            let verdict = client.verify_registry_entry(&victim_id, value, &proof);
            if accepted {
                assert!(matches!(verdict, Ok(Some(_))));
            } else {
                assert_eq!(verdict, Err(EntryError::NotSelfCertifying));
            }
        }
    }

    #[test]
    fn registry_entries_are_accepted_only_with_their_proof() {
        use super::super::tx::Role;
        let c = consortium();
        let id = PartyId::new("insurer:acme").unwrap();
        let keys = crate::keys::tests::party();
        let party = crate::PrivateKeySet {
            id: id.clone(),
            signing: SigningKey::generate(),
            decryption: crate::keys::DecryptionKey::from_jwk(&keys.decryption.to_jwk(None))
                .unwrap(),
        };
        let mut chain = super::super::testkit::TestChain::new();
        chain.enrol(&party, Role::Insurer);
        let state = chain.state.clone();
        let mut client = LightClient::new("test", c.set.clone()).unwrap();
        let (value, proof) = state.get_with_proof(&registry_key(&id));
        let value = value.unwrap().to_vec();
        assert_eq!(
            client.verify_registry_entry(&id, Some(&value), &proof),
            Err(EntryError::NoTrustedHeader)
        );
        client.verify_header(&certify(&c, header(&c, 1, state.root()), QUORUM));
        let verified = client
            .verify_registry_entry(&id, Some(&value), &proof)
            .unwrap()
            .unwrap();
        assert_eq!(verified.id(), &id);
        assert_eq!(verified.height(), 1);
        assert_eq!(
            verified.public_keys().unwrap().encryption,
            *keys.decryption.encryption_key()
        );
        // A node that swaps the keys, hides the entry, or serves another ID's entry is caught.
        let mut swapped: serde_json::Value = serde_json::from_slice(&value).unwrap();
        swapped["keys"][0]["signing_jwk"] =
            serde_json::to_value(SigningKey::generate().verifying_key().to_jwk(None)).unwrap();
        let swapped = serde_json::to_vec(&swapped).unwrap();
        assert_eq!(
            client.verify_registry_entry(&id, Some(&swapped), &proof),
            Err(EntryError::ValueMismatch)
        );
        assert_eq!(
            client.verify_registry_entry(&id, None, &proof),
            Err(EntryError::ValueMismatch)
        );
        let other = PartyId::new("insurer:other").unwrap();
        assert!(
            client
                .verify_registry_entry(&other, Some(&value), &proof)
                .is_err()
        );
        let (absent, absence) = state.get_with_proof(&registry_key(&other));
        assert!(absent.is_none());
        assert_eq!(
            client.verify_registry_entry(&other, None, &absence),
            Ok(None)
        );
        assert!(
            client
                .verify_registry_entry(&other, Some(&value), &absence)
                .is_err()
        );
    }

    /// A lookup of an expelled party proves it: the entry, proven under a certified
    /// header, says "expelled at height h (time t)", and the party is inactive from then.
    #[test]
    fn a_lookup_of_an_expelled_party_proves_it() {
        use super::super::governance::{GovAction, Status};
        use super::super::testkit::TestChain;
        let mut chain = TestChain::new();
        let insurer = chain.register(Some("insurer:acme"), Role::Insurer);
        let admitted = chain.verified_entry(&insurer.id).unwrap();
        assert_eq!(admitted.status(), Status::Active);
        assert!(admitted.ended().is_none());
        chain.now = 1_500;
        let expel = chain.govern(GovAction::SetStatus {
            id: insurer.id.clone(),
            status: Status::Expelled,
        });
        chain.apply(&[expel]);
        let proven = chain.verified_entry(&insurer.id).unwrap();
        assert_eq!(proven.status(), Status::Expelled);
        let ended = proven.ended().unwrap();
        assert_eq!((ended.height, ended.time), (chain.height, 1_500));
        assert!(proven.is_active_at(1_499));
        assert!(!proven.is_active_at(1_500));
        // A node hiding the expulsion (serving the old entry) is caught by the proof.
        let mut client = chain.client();
        client.verify_header(&chain.header(&[0, 1, 2]));
        let (_, proof) = chain.state.get_with_proof(&registry_key(&insurer.id));
        let stale = serde_json::to_vec(admitted.entry()).unwrap();
        assert_eq!(
            client.verify_registry_entry(&insurer.id, Some(&stale), &proof),
            Err(EntryError::ValueMismatch)
        );
    }

    #[test]
    fn an_accepted_header_with_another_certificate_is_checked_again() {
        let c = consortium();
        let mut client = LightClient::new("test", c.set.clone()).unwrap();
        let h = header(&c, 3, Hash::new([3; 32]));
        let good = certify(&c, h.clone(), QUORUM);
        assert_eq!(client.verify_header(&good), Verdict::Success);
        assert_eq!(client.verify_header(&good), Verdict::Success);
        let mut forged = good.clone();
        forged.certificate.signatures[1] = forged.certificate.signatures[0].clone();
        assert!(matches!(
            client.verify_header(&forged),
            Verdict::Invalid(InvalidReason::DuplicateVote(_))
        ));
        assert!(matches!(
            client.verify_header(&certify(&c, h, TWO_THIRDS)),
            Verdict::NotEnoughTrust { .. }
        ));
    }

    #[test]
    fn validator_sets_are_checked() {
        let c = consortium();
        let mut bad = c.set.clone();
        bad.auditors = 4;
        assert!(LightClient::new("test", bad).is_err());
        let mut dup = c.set.clone();
        dup.validators[1].id = dup.validators[0].id.clone();
        assert!(LightClient::new("test", dup).is_err());
    }
}
