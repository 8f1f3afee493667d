//! Our Malachite `Context`: heights, block hashes as values, votes and proposals whose signed
//! bytes are core's ([`emrshare_core::ledger::bft`]), the powered validator set with its
//! proposer rotation, and ES256 signing with the node's consensus key.
//!
//! The engine only ever sees 32-byte header hashes as values; blocks travel as proposal parts
//! and are kept by the host (see `host.rs`), which checks that a block hashes to the value
//! the proposer signed.

use emrshare_core::keys::{PartyId, SigningKey, VerifyingKey};
use emrshare_core::ledger::bft::{ConsensusProposal, ConsensusVote, VerifiedSet, VoteKind};
use emrshare_core::ledger::merkle::Hash;
use malachitebft_app_channel::app::types::core::{
    self as mc, NilOrVal, Round, SignedExtension, SignedMessage, VoteType, VotingPower,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// A block height (1 is the first block after genesis).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Height(pub u64);

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl mc::Height for Height {
    const ZERO: Self = Height(0);
    const INITIAL: Self = Height(1);

    fn increment_by(&self, n: u64) -> Self {
        Height(self.0.saturating_add(n))
    }

    fn decrement_by(&self, n: u64) -> Option<Self> {
        self.0.checked_sub(n).map(Height)
    }

    fn as_u64(&self) -> u64 {
        self.0
    }
}

/// The value consensus decides: a block header's hash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlockHash(pub Hash);

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight bytes are enough to tell blocks apart in logs.
        f.write_str(&self.0.short())
    }
}

impl fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockHash({self})")
    }
}

impl mc::Value for BlockHash {
    type Id = BlockHash;

    fn id(&self) -> BlockHash {
        *self
    }
}

/// A validator's address: its member ID.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ValidatorId(pub PartyId);

impl fmt::Display for ValidatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl fmt::Debug for ValidatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_str())
    }
}

impl mc::Address for ValidatorId {}

/// Rounds below this are real; the engine's `Round::Nil` never reaches a signed message.
fn round_number(round: Round) -> u32 {
    round.as_u32().unwrap_or(u32::MAX)
}

fn optional_round(round: Round) -> Option<u32> {
    round.as_u32()
}

/// A prevote or precommit as the engine handles it; signed as [`ConsensusVote`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Vote {
    /// Prevote or precommit.
    pub vote_type: VoteType,
    /// The height voted at.
    pub height: Height,
    /// The round voted in.
    pub round: Round,
    /// The block voted for, or nil.
    pub value: NilOrVal<BlockHash>,
    /// The voter.
    pub validator: ValidatorId,
}

impl Vote {
    /// Core's form of the vote: what is signed and what certificates and evidence carry.
    pub fn to_core(&self) -> ConsensusVote {
        ConsensusVote {
            kind: match self.vote_type {
                VoteType::Prevote => VoteKind::Prevote,
                VoteType::Precommit => VoteKind::Precommit,
            },
            height: self.height.0,
            round: round_number(self.round),
            value: match &self.value {
                NilOrVal::Nil => None,
                NilOrVal::Val(hash) => Some(hash.0),
            },
            validator: self.validator.0.clone(),
        }
    }

    /// The engine's form of core's vote.
    pub fn from_core(vote: ConsensusVote) -> Self {
        Self {
            vote_type: match vote.kind {
                VoteKind::Prevote => VoteType::Prevote,
                VoteKind::Precommit => VoteType::Precommit,
            },
            height: Height(vote.height),
            round: Round::new(vote.round),
            value: match vote.value {
                None => NilOrVal::Nil,
                Some(hash) => NilOrVal::Val(BlockHash(hash)),
            },
            validator: ValidatorId(vote.validator),
        }
    }
}

impl mc::Vote<Bft> for Vote {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &NilOrVal<BlockHash> {
        &self.value
    }

    fn take_value(self) -> NilOrVal<BlockHash> {
        self.value
    }

    fn vote_type(&self) -> VoteType {
        self.vote_type
    }

    fn validator_address(&self) -> &ValidatorId {
        &self.validator
    }

    // No vote extensions: every vote is exactly what core signs.
    fn extension(&self) -> Option<&SignedExtension<Bft>> {
        None
    }

    fn take_extension(&mut self) -> Option<SignedExtension<Bft>> {
        None
    }

    fn extend(self, _extension: SignedExtension<Bft>) -> Self {
        self
    }
}

/// A proposer's offer of a block for a round; signed as [`ConsensusProposal`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// The height proposed at.
    pub height: Height,
    /// The round proposed in.
    pub round: Round,
    /// The block's header hash.
    pub value: BlockHash,
    /// The round of the polka the proposer re-proposes under, or nil.
    pub pol_round: Round,
    /// The proposer.
    pub proposer: ValidatorId,
}

impl Proposal {
    /// Core's form of the proposal: what is signed and what evidence carries.
    pub fn to_core(&self) -> ConsensusProposal {
        ConsensusProposal {
            height: self.height.0,
            round: round_number(self.round),
            value: self.value.0,
            pol_round: optional_round(self.pol_round),
            proposer: self.proposer.0.clone(),
        }
    }

    /// The engine's form of core's proposal.
    pub fn from_core(proposal: ConsensusProposal) -> Self {
        Self {
            height: Height(proposal.height),
            round: Round::new(proposal.round),
            value: BlockHash(proposal.value),
            pol_round: proposal.pol_round.map_or(Round::Nil, Round::new),
            proposer: ValidatorId(proposal.proposer),
        }
    }
}

impl mc::Proposal<Bft> for Proposal {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &BlockHash {
        &self.value
    }

    fn take_value(self) -> BlockHash {
        self.value
    }

    fn pol_round(&self) -> Round {
        self.pol_round
    }

    fn validator_address(&self) -> &ValidatorId {
        &self.proposer
    }
}

/// A piece of a proposed block as it streams to the other validators: who proposes what
/// round, then the block's bytes in chunks, then the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ProposalPart {
    /// The first part: the round and the proposer.
    Init {
        /// The height proposed at.
        height: u64,
        /// The round proposed in.
        round: u32,
        /// The polka round re-proposed under, if any.
        pol_round: Option<u32>,
        /// The proposer.
        proposer: PartyId,
    },
    /// A chunk of the block's JSON serialization, base64url.
    Chunk(String),
    /// The last part.
    Fin,
}

impl mc::ProposalPart<Bft> for ProposalPart {
    fn is_first(&self) -> bool {
        matches!(self, ProposalPart::Init { .. })
    }

    fn is_last(&self) -> bool {
        matches!(self, ProposalPart::Fin)
    }
}

/// One validator of a height.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator {
    /// Its member ID.
    pub id: ValidatorId,
    /// Its consensus key.
    pub key: PublicKey,
    /// Its voting power.
    pub power: VotingPower,
}

impl mc::Validator<Bft> for Validator {
    fn address(&self) -> &ValidatorId {
        &self.id
    }

    fn public_key(&self) -> &PublicKey {
        &self.key
    }

    fn voting_power(&self) -> VotingPower {
        self.power
    }
}

/// The validators of a height, ranked (proposers first), from core's checked set.
#[derive(Clone, Debug)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
    verified: Arc<VerifiedSet>,
}

impl PartialEq for ValidatorSet {
    fn eq(&self, other: &Self) -> bool {
        self.verified.hash() == other.verified.hash()
    }
}

impl Eq for ValidatorSet {}

impl ValidatorSet {
    /// The engine's view of a checked set.
    pub fn new(verified: VerifiedSet) -> Self {
        let validators = verified
            .set()
            .validators
            .iter()
            .map(|v| Validator {
                id: ValidatorId(v.id.clone()),
                key: PublicKey(
                    VerifyingKey::from_jwk(&v.signing_jwk).expect("a verified set's keys parse"),
                ),
                power: v.power,
            })
            .collect();
        Self {
            validators,
            verified: Arc::new(verified),
        }
    }

    /// Core's checked set.
    pub fn verified(&self) -> &VerifiedSet {
        &self.verified
    }
}

impl mc::ValidatorSet<Bft> for ValidatorSet {
    fn count(&self) -> usize {
        self.validators.len()
    }

    fn total_voting_power(&self) -> VotingPower {
        self.verified.total_power()
    }

    fn get_by_address(&self, address: &ValidatorId) -> Option<&Validator> {
        self.validators.iter().find(|v| &v.id == address)
    }

    fn get_by_index(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }
}

/// An ES256 signature, 64 bytes `r || s`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", emrshare_core::b64::encode(&self.0[..8]))
    }
}

/// An ES256 public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey(pub VerifyingKey);

/// ES256 with aws-lc-rs, through core's keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Es256;

/// A signature that is not 64 bytes.
#[derive(Debug)]
pub struct SignatureLength(usize);

impl fmt::Display for SignatureLength {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an ES256 signature is 64 bytes, not {}", self.0)
    }
}

impl mc::SigningScheme for Es256 {
    type DecodingError = SignatureLength;
    type Signature = Signature;
    type PublicKey = PublicKey;
    type PrivateKey = Arc<SigningKey>;

    fn decode_signature(bytes: &[u8]) -> Result<Signature, SignatureLength> {
        <[u8; 64]>::try_from(bytes)
            .map(Signature)
            .map_err(|_| SignatureLength(bytes.len()))
    }

    fn encode_signature(signature: &Signature) -> Vec<u8> {
        signature.0.to_vec()
    }
}

/// The consensus context of one chain.
#[derive(Clone, Debug)]
pub struct Bft {
    /// The chain ID: every signed vote and proposal names it.
    pub chain_id: Arc<str>,
}

impl mc::Context for Bft {
    type Address = ValidatorId;
    type Height = Height;
    type ProposalPart = ProposalPart;
    type Proposal = Proposal;
    type Validator = Validator;
    type ValidatorSet = ValidatorSet;
    type Value = BlockHash;
    type Vote = Vote;
    type Extension = ();
    type SigningScheme = Es256;

    fn select_proposer<'a>(
        &self,
        set: &'a ValidatorSet,
        height: Height,
        round: Round,
    ) -> &'a Validator {
        let proposer = set.verified.proposer(height.0, round_number(round));
        set.validators
            .iter()
            .find(|v| &v.id.0 == proposer)
            .expect("the proposer is a member of its set")
    }

    fn new_proposal(
        &self,
        height: Height,
        round: Round,
        value: BlockHash,
        pol_round: Round,
        address: ValidatorId,
    ) -> Proposal {
        Proposal {
            height,
            round,
            value,
            pol_round,
            proposer: address,
        }
    }

    fn new_prevote(
        &self,
        height: Height,
        round: Round,
        value: NilOrVal<BlockHash>,
        address: ValidatorId,
    ) -> Vote {
        Vote {
            vote_type: VoteType::Prevote,
            height,
            round,
            value,
            validator: address,
        }
    }

    fn new_precommit(
        &self,
        height: Height,
        round: Round,
        value: NilOrVal<BlockHash>,
        address: ValidatorId,
    ) -> Vote {
        Vote {
            vote_type: VoteType::Precommit,
            height,
            round,
            value,
            validator: address,
        }
    }
}

/// Signs with the node's consensus key; verifies against the validators' keys. The bytes are
/// core's, so a thin client and the chain check exactly what was signed here.
pub struct Signer {
    chain_id: Arc<str>,
    key: Arc<SigningKey>,
    watch: Option<Arc<super::watch::EquivocationWatch>>,
}

impl Signer {
    /// The signer of `chain_id` with `key`.
    pub fn new(chain_id: Arc<str>, key: Arc<SigningKey>) -> Self {
        Self {
            chain_id,
            key,
            watch: None,
        }
    }

    /// The same signer, keeping one signature per vote with `watch` (see
    /// [`super::watch::EquivocationWatch::own_vote`]).
    pub fn watching(mut self, watch: Arc<super::watch::EquivocationWatch>) -> Self {
        self.watch = Some(watch);
        self
    }

    fn sign(&self, bytes: &[u8]) -> Signature {
        Signature(self.key.sign(bytes))
    }

    fn verify(&self, bytes: &[u8], signature: &Signature, key: &PublicKey) -> bool {
        // High-S twins are refused, as in certificates and evidence (core's rule).
        emrshare_core::ledger::bft::es256_signature_valid(&key.0, bytes, &signature.0)
    }
}

impl mc::SigningProvider<Bft> for Signer {
    fn sign_vote(&self, vote: Vote) -> SignedMessage<Bft, Vote> {
        let core = vote.to_core();
        let signature = self.sign(&core.sign_bytes(&self.chain_id));
        let signature = match &self.watch {
            Some(watch) => watch.own_vote(core, signature),
            None => signature,
        };
        SignedMessage::new(vote, signature)
    }

    fn verify_signed_vote(&self, vote: &Vote, signature: &Signature, key: &PublicKey) -> bool {
        self.verify(&vote.to_core().sign_bytes(&self.chain_id), signature, key)
    }

    fn sign_proposal(&self, proposal: Proposal) -> SignedMessage<Bft, Proposal> {
        let signature = self.sign(&proposal.to_core().sign_bytes(&self.chain_id));
        SignedMessage::new(proposal, signature)
    }

    fn verify_signed_proposal(
        &self,
        proposal: &Proposal,
        signature: &Signature,
        key: &PublicKey,
    ) -> bool {
        self.verify(
            &proposal.to_core().sign_bytes(&self.chain_id),
            signature,
            key,
        )
    }

    // Parts are not signed one by one: the assembled block must hash to the value of the
    // proposal the engine verified (ProposalAndParts), which the host checks.
    fn sign_proposal_part(&self, part: ProposalPart) -> SignedMessage<Bft, ProposalPart> {
        SignedMessage::new(part, Signature([0; 64]))
    }

    fn verify_signed_proposal_part(
        &self,
        _part: &ProposalPart,
        _signature: &Signature,
        _key: &PublicKey,
    ) -> bool {
        false
    }

    // No vote extensions are ever made or accepted.
    fn sign_vote_extension(&self, extension: ()) -> SignedMessage<Bft, ()> {
        SignedMessage::new(extension, Signature([0; 64]))
    }

    fn verify_signed_vote_extension(
        &self,
        _extension: &(),
        _signature: &Signature,
        _key: &PublicKey,
    ) -> bool {
        false
    }
}
