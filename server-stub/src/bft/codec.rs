//! The one wire format of consensus: gossip between validators, value sync and the
//! write-ahead log, as strict JSON of core's types. It is a parser on the network path, so it
//! refuses what is over its size bound, duplicate or unknown fields, and malformed signatures
//! before anything else looks at a message.

use super::context::{
    Bft, BlockHash, Height, Proposal, ProposalPart, Signature, ValidatorId, Vote,
};
use super::watch::{EquivocationWatch, Verdict};
use bytes::Bytes;
use emrshare_core::ledger::bft::{ConsensusProposal, ConsensusVote, Signed};
use emrshare_core::{Hash, b64, strict_json};
use malachitebft_app_channel::app::consensus::{LivenessMsg, ProposedValue, SignedConsensusMsg};
use malachitebft_app_channel::app::streaming::{StreamContent, StreamId, StreamMessage};
use malachitebft_app_channel::app::types::PeerId;
use malachitebft_app_channel::app::types::codec::Codec;
use malachitebft_app_channel::app::types::core::{
    CommitCertificate, CommitSignature, NilOrVal, PolkaCertificate, PolkaSignature, Round,
    RoundCertificate, RoundCertificateType, RoundSignature, SignedMessage, Validity, VoteType,
};
use malachitebft_app_channel::app::types::sync::{RawDecidedValue, Request, Response, Status};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The largest message the codec decodes: a block part stream chunk, a certificate of
/// [`emrshare_core::ledger::bft::MAX_VALIDATORS`] signatures, or a synced block under the
/// node's block limit all fit.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// Why bytes are not a consensus message.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Over [`MAX_MESSAGE_BYTES`].
    #[error("message of {0} bytes is over the limit")]
    TooLarge(usize),
    /// Not strict JSON of the expected shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A field of the right shape but an impossible value.
    #[error("invalid message: {0}")]
    Invalid(&'static str),
    /// Encoding failed (never for values we built).
    #[error("cannot encode: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The codec of one node. The network's copy shows every vote and proposal it decodes to
/// the node's [`EquivocationWatch`].
#[derive(Clone, Default)]
pub struct JsonCodec {
    watch: Option<Arc<EquivocationWatch>>,
}

impl JsonCodec {
    /// A codec that shows decoded votes and proposals to `watch`.
    pub fn watching(watch: Arc<EquivocationWatch>) -> Self {
        Self { watch: Some(watch) }
    }

    /// The one signature let in for a vote found in a certificate (see
    /// [`EquivocationWatch::canonical_vote`]).
    fn canonical(
        &self,
        kind: emrshare_core::ledger::bft::VoteKind,
        (height, round, value): (u64, u32, Option<Hash>),
        validator: &emrshare_core::keys::PartyId,
        signature: Signature,
    ) -> Signature {
        match &self.watch {
            Some(watch) => watch.canonical_vote(
                ConsensusVote {
                    kind,
                    height,
                    round,
                    value,
                    validator: validator.clone(),
                },
                signature,
            ),
            None => signature,
        }
    }

    /// Shows a vote to the watch; a second signature of a vote that passed is refused.
    fn saw_vote(&self, wire: &WireVote) -> Result<(), CodecError> {
        let Some(watch) = &self.watch else {
            return Ok(());
        };
        let verdict = watch.vote(&Signed {
            message: wire.message.clone(),
            signature: wire.signature.clone(),
        });
        match verdict {
            Verdict::Pass => Ok(()),
            Verdict::Again => Err(CodecError::Invalid(
                "a second signature of a vote already received",
            )),
        }
    }

    fn saw_proposal(&self, wire: &WireProposal) {
        if let Some(watch) = &self.watch {
            watch.proposal(&Signed {
                message: wire.message.clone(),
                signature: wire.signature.clone(),
            });
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, CodecError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(CodecError::TooLarge(bytes.len()));
    }
    strict_json::parse(bytes).map_err(|e| CodecError::Malformed(e.to_string()))
}

fn encode<T: Serialize>(value: &T) -> Result<Bytes, CodecError> {
    Ok(Bytes::from(serde_json::to_vec(value)?))
}

fn signature_from(text: &str) -> Result<Signature, CodecError> {
    b64::decode_array::<64>(text)
        .map(Signature)
        .map_err(|_| CodecError::Invalid("a signature is not 64 bytes of base64url"))
}

fn signature_text(signature: &Signature) -> String {
    b64::encode(signature.0)
}

fn round_from(round: Option<u32>) -> Round {
    round.map_or(Round::Nil, Round::new)
}

/// A signed message: core's form and its signature.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireSigned<M> {
    message: M,
    signature: String,
}

type WireVote = WireSigned<ConsensusVote>;
type WireProposal = WireSigned<ConsensusProposal>;

fn vote_to_wire(signed: &SignedMessage<Bft, Vote>) -> WireVote {
    WireSigned {
        message: signed.message.to_core(),
        signature: signature_text(&signed.signature),
    }
}

fn vote_from_wire(wire: WireVote) -> Result<SignedMessage<Bft, Vote>, CodecError> {
    Ok(SignedMessage::new(
        Vote::from_core(wire.message),
        signature_from(&wire.signature)?,
    ))
}

fn proposal_to_wire(signed: &SignedMessage<Bft, Proposal>) -> WireProposal {
    WireSigned {
        message: signed.message.to_core(),
        signature: signature_text(&signed.signature),
    }
}

fn proposal_from_wire(wire: WireProposal) -> Result<SignedMessage<Bft, Proposal>, CodecError> {
    Ok(SignedMessage::new(
        Proposal::from_core(wire.message),
        signature_from(&wire.signature)?,
    ))
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum WireConsensusMsg {
    Vote(WireVote),
    Proposal(WireProposal),
}

impl Codec<SignedConsensusMsg<Bft>> for JsonCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<SignedConsensusMsg<Bft>, CodecError> {
        Ok(match parse(&bytes)? {
            WireConsensusMsg::Vote(v) => {
                let vote = vote_from_wire(v.clone())?;
                self.saw_vote(&v)?;
                SignedConsensusMsg::Vote(vote)
            }
            WireConsensusMsg::Proposal(p) => {
                let proposal = proposal_from_wire(p.clone())?;
                self.saw_proposal(&p);
                SignedConsensusMsg::Proposal(proposal)
            }
        })
    }

    fn encode(&self, msg: &SignedConsensusMsg<Bft>) -> Result<Bytes, CodecError> {
        encode(&match msg {
            SignedConsensusMsg::Vote(v) => WireConsensusMsg::Vote(vote_to_wire(v)),
            SignedConsensusMsg::Proposal(p) => WireConsensusMsg::Proposal(proposal_to_wire(p)),
        })
    }
}

impl Codec<ProposalPart> for JsonCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<ProposalPart, CodecError> {
        parse(&bytes)
    }

    fn encode(&self, part: &ProposalPart) -> Result<Bytes, CodecError> {
        encode(part)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireStreamMessage {
    stream_id: String,
    sequence: u64,
    /// The part, or `None` for the end of the stream.
    part: Option<ProposalPart>,
}

/// Stream IDs are the proposer's choice; ours are 16 bytes, and no peer's may be longer.
const MAX_STREAM_ID_BYTES: usize = 64;

impl Codec<StreamMessage<ProposalPart>> for JsonCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<StreamMessage<ProposalPart>, CodecError> {
        let wire: WireStreamMessage = parse(&bytes)?;
        let id = b64::decode(&wire.stream_id)
            .ok()
            .filter(|id| id.len() <= MAX_STREAM_ID_BYTES)
            .ok_or(CodecError::Invalid(
                "a stream ID is at most 64 bytes of base64url",
            ))?;
        Ok(StreamMessage::new(
            StreamId::new(Bytes::from(id)),
            wire.sequence,
            match wire.part {
                Some(part) => StreamContent::Data(part),
                None => StreamContent::Fin,
            },
        ))
    }

    fn encode(&self, msg: &StreamMessage<ProposalPart>) -> Result<Bytes, CodecError> {
        encode(&WireStreamMessage {
            stream_id: b64::encode(msg.stream_id.to_bytes()),
            sequence: msg.sequence,
            part: match &msg.content {
                StreamContent::Data(part) => Some(part.clone()),
                StreamContent::Fin => None,
            },
        })
    }
}

/// One validator's signature in a certificate.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireSignature {
    validator: emrshare_core::keys::PartyId,
    signature: String,
}

/// A vote of a round certificate: each signs its own vote.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRoundSignature {
    precommit: bool,
    value: Option<Hash>,
    validator: emrshare_core::keys::PartyId,
    signature: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum WireLivenessMsg {
    Vote(WireVote),
    Polka {
        height: u64,
        round: u32,
        value: Hash,
        signatures: Vec<WireSignature>,
    },
    SkipRound {
        height: u64,
        round: u32,
        /// `skip` (f+1 votes of a later round) or `precommit` (2f+1 precommits).
        skip: bool,
        signatures: Vec<WireRoundSignature>,
    },
}

fn round_of(round: Round) -> Result<u32, CodecError> {
    round
        .as_u32()
        .ok_or(CodecError::Invalid("a certificate names no round"))
}

impl Codec<LivenessMsg<Bft>> for JsonCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<LivenessMsg<Bft>, CodecError> {
        Ok(match parse(&bytes)? {
            WireLivenessMsg::Vote(v) => {
                let vote = vote_from_wire(v.clone())?;
                self.saw_vote(&v)?;
                LivenessMsg::Vote(vote)
            }
            WireLivenessMsg::Polka {
                height,
                round,
                value,
                signatures,
            } => LivenessMsg::PolkaCertificate(PolkaCertificate {
                height: Height(height),
                round: Round::new(round),
                value_id: BlockHash(value),
                polka_signatures: signatures
                    .into_iter()
                    .map(|s| {
                        let signature = self.canonical(
                            emrshare_core::ledger::bft::VoteKind::Prevote,
                            (height, round, Some(value)),
                            &s.validator,
                            signature_from(&s.signature)?,
                        );
                        Ok(PolkaSignature {
                            address: ValidatorId(s.validator),
                            signature,
                        })
                    })
                    .collect::<Result<_, CodecError>>()?,
            }),
            WireLivenessMsg::SkipRound {
                height,
                round,
                skip,
                signatures,
            } => LivenessMsg::SkipRoundCertificate(RoundCertificate {
                height: Height(height),
                round: Round::new(round),
                cert_type: if skip {
                    RoundCertificateType::Skip
                } else {
                    RoundCertificateType::Precommit
                },
                round_signatures: signatures
                    .into_iter()
                    .map(|s| {
                        let kind = if s.precommit {
                            emrshare_core::ledger::bft::VoteKind::Precommit
                        } else {
                            emrshare_core::ledger::bft::VoteKind::Prevote
                        };
                        let signature = self.canonical(
                            kind,
                            (height, round, s.value),
                            &s.validator,
                            signature_from(&s.signature)?,
                        );
                        Ok(RoundSignature {
                            vote_type: if s.precommit {
                                VoteType::Precommit
                            } else {
                                VoteType::Prevote
                            },
                            value_id: s
                                .value
                                .map_or(NilOrVal::Nil, |h| NilOrVal::Val(BlockHash(h))),
                            address: ValidatorId(s.validator),
                            signature,
                        })
                    })
                    .collect::<Result<_, CodecError>>()?,
            }),
        })
    }

    fn encode(&self, msg: &LivenessMsg<Bft>) -> Result<Bytes, CodecError> {
        encode(&match msg {
            LivenessMsg::Vote(v) => WireLivenessMsg::Vote(vote_to_wire(v)),
            LivenessMsg::PolkaCertificate(c) => WireLivenessMsg::Polka {
                height: c.height.0,
                round: round_of(c.round)?,
                value: c.value_id.0,
                signatures: c
                    .polka_signatures
                    .iter()
                    .map(|s| WireSignature {
                        validator: s.address.0.clone(),
                        signature: signature_text(&s.signature),
                    })
                    .collect(),
            },
            LivenessMsg::SkipRoundCertificate(c) => WireLivenessMsg::SkipRound {
                height: c.height.0,
                round: round_of(c.round)?,
                skip: matches!(c.cert_type, RoundCertificateType::Skip),
                signatures: c
                    .round_signatures
                    .iter()
                    .map(|s| WireRoundSignature {
                        precommit: s.vote_type == VoteType::Precommit,
                        value: match s.value_id {
                            NilOrVal::Nil => None,
                            NilOrVal::Val(h) => Some(h.0),
                        },
                        validator: s.address.0.clone(),
                        signature: signature_text(&s.signature),
                    })
                    .collect(),
            },
        })
    }
}

/// A decision certificate as synced and stored: core's form.
pub fn certificate_to_core(
    c: &CommitCertificate<Bft>,
) -> emrshare_core::ledger::bft::DecisionCertificate {
    emrshare_core::ledger::bft::DecisionCertificate {
        height: c.height.0,
        round: c.round.as_u32().unwrap_or(0),
        value: c.value_id.0,
        signatures: c
            .commit_signatures
            .iter()
            .map(|s| emrshare_core::ledger::bft::CommitSignature {
                validator: s.address.0.clone(),
                signature: signature_text(&s.signature),
            })
            .collect(),
    }
}

/// The engine's form of a stored certificate.
pub fn certificate_from_core(
    c: emrshare_core::ledger::bft::DecisionCertificate,
) -> Result<CommitCertificate<Bft>, CodecError> {
    Ok(CommitCertificate {
        height: Height(c.height),
        round: Round::new(c.round),
        value_id: BlockHash(c.value),
        commit_signatures: c
            .signatures
            .into_iter()
            .map(|s| {
                Ok(CommitSignature {
                    address: ValidatorId(s.validator),
                    signature: signature_from(&s.signature)?,
                })
            })
            .collect::<Result<_, CodecError>>()?,
    })
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireStatus {
    peer: String,
    tip_height: u64,
    history_min_height: u64,
}

impl Codec<Status<Bft>> for JsonCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<Status<Bft>, CodecError> {
        let wire: WireStatus = parse(&bytes)?;
        let peer_id = wire
            .peer
            .parse::<PeerId>()
            .map_err(|_| CodecError::Invalid("not a peer ID"))?;
        Ok(Status {
            peer_id,
            tip_height: Height(wire.tip_height),
            history_min_height: Height(wire.history_min_height),
        })
    }

    fn encode(&self, status: &Status<Bft>) -> Result<Bytes, CodecError> {
        encode(&WireStatus {
            peer: status.peer_id.to_string(),
            tip_height: status.tip_height.0,
            history_min_height: status.history_min_height.0,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRequest {
    height: u64,
}

impl Codec<Request<Bft>> for JsonCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<Request<Bft>, CodecError> {
        let wire: WireRequest = parse(&bytes)?;
        Ok(Request::ValueRequest(malachitebft_sync::ValueRequest::new(
            Height(wire.height),
        )))
    }

    fn encode(&self, request: &Request<Bft>) -> Result<Bytes, CodecError> {
        let Request::ValueRequest(request) = request;
        encode(&WireRequest {
            height: request.height.0,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireResponse {
    height: u64,
    /// The block's JSON, base64url, and its certificate; `None` when the peer has no block.
    value: Option<(String, emrshare_core::ledger::bft::DecisionCertificate)>,
}

impl Codec<Response<Bft>> for JsonCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<Response<Bft>, CodecError> {
        let wire: WireResponse = parse(&bytes)?;
        let value = match wire.value {
            None => None,
            Some((block, mut certificate)) => Some(RawDecidedValue::new(
                Bytes::from(
                    b64::decode(&block)
                        .map_err(|_| CodecError::Invalid("a block is not base64url"))?,
                ),
                {
                    let step = (
                        certificate.height,
                        certificate.round,
                        Some(certificate.value),
                    );
                    for s in &mut certificate.signatures {
                        let signature = self.canonical(
                            emrshare_core::ledger::bft::VoteKind::Precommit,
                            step,
                            &s.validator,
                            signature_from(&s.signature)?,
                        );
                        s.signature = signature_text(&signature);
                    }
                    certificate_from_core(certificate)?
                },
            )),
        };
        Ok(Response::ValueResponse(
            malachitebft_sync::ValueResponse::new(Height(wire.height), value),
        ))
    }

    fn encode(&self, response: &Response<Bft>) -> Result<Bytes, CodecError> {
        let Response::ValueResponse(response) = response;
        encode(&WireResponse {
            height: response.height.0,
            value: response.value.as_ref().map(|v| {
                (
                    b64::encode(&v.value_bytes),
                    certificate_to_core(&v.certificate),
                )
            }),
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireProposedValue {
    height: u64,
    round: u32,
    valid_round: Option<u32>,
    proposer: emrshare_core::keys::PartyId,
    value: BlockHash,
    valid: bool,
}

impl Codec<ProposedValue<Bft>> for JsonCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<ProposedValue<Bft>, CodecError> {
        let wire: WireProposedValue = parse(&bytes)?;
        Ok(ProposedValue {
            height: Height(wire.height),
            round: Round::new(wire.round),
            valid_round: round_from(wire.valid_round),
            proposer: ValidatorId(wire.proposer),
            value: wire.value,
            validity: Validity::from_bool(wire.valid),
        })
    }

    fn encode(&self, value: &ProposedValue<Bft>) -> Result<Bytes, CodecError> {
        encode(&WireProposedValue {
            height: value.height.0,
            round: round_of(value.round)?,
            valid_round: value.valid_round.as_u32(),
            proposer: value.proposer.0.clone(),
            value: value.value,
            valid: value.validity.is_valid(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emrshare_core::keys::{PartyId, SigningKey};
    use malachitebft_app_channel::app::types::core::SigningProvider;
    use std::sync::Arc;

    fn signer() -> super::super::context::Signer {
        super::super::context::Signer::new("codec-test".into(), Arc::new(SigningKey::generate()))
    }

    fn vote() -> Vote {
        Vote {
            vote_type: VoteType::Precommit,
            height: Height(3),
            round: Round::new(1),
            value: NilOrVal::Val(BlockHash(Hash::new([7; 32]))),
            validator: ValidatorId(PartyId::new("node:1").unwrap()),
        }
    }

    fn roundtrip<T>(value: T) -> T
    where
        JsonCodec: Codec<T>,
        <JsonCodec as Codec<T>>::Error: std::fmt::Debug,
    {
        let bytes = JsonCodec::default().encode(&value).unwrap();
        JsonCodec::default().decode(bytes).unwrap()
    }

    #[test]
    fn votes_and_proposals_round_trip_with_their_signatures() {
        let signed = signer().sign_vote(vote());
        let back = roundtrip(SignedConsensusMsg::Vote(signed.clone()));
        assert_eq!(back, SignedConsensusMsg::Vote(signed));
        let proposal = Proposal {
            height: Height(3),
            round: Round::new(0),
            value: BlockHash(Hash::new([1; 32])),
            pol_round: Round::Nil,
            proposer: ValidatorId(PartyId::new("node:0").unwrap()),
        };
        let signed = signer().sign_proposal(proposal);
        let back = roundtrip(SignedConsensusMsg::Proposal(signed.clone()));
        assert_eq!(back, SignedConsensusMsg::Proposal(signed));
    }

    #[test]
    fn stream_messages_and_sync_round_trip() {
        let message = StreamMessage::new(
            StreamId::new(Bytes::from_static(b"0123456789abcdef")),
            4,
            StreamContent::Data(ProposalPart::Chunk("AAEC".into())),
        );
        assert_eq!(roundtrip(message.clone()), message);
        let fin = StreamMessage::new(message.stream_id.clone(), 5, StreamContent::Fin);
        assert_eq!(roundtrip(fin.clone()), fin);
        let status = Status::<Bft> {
            peer_id: {
                let key = malachitebft_app_channel::app::types::Keypair::generate_ecdsa();
                PeerId::from_bytes(&key.public().to_peer_id().to_bytes()).unwrap()
            },
            tip_height: Height(9),
            history_min_height: Height(1),
        };
        let back = roundtrip(status.clone());
        assert_eq!(
            (back.peer_id, back.tip_height),
            (status.peer_id, status.tip_height)
        );
    }

    #[test]
    fn malformed_messages_are_refused_not_panicked_on() {
        let bad: [&[u8]; 6] = [
            b"",
            b"{}",
            br#"{"vote":{"message":{},"signature":""}}"#,
            br#"{"stream_id":"!!","sequence":0,"part":null}"#,
            br#"{"stream_id":"AAAA","sequence":0,"part":null,"extra":1}"#,
            br#"{"peer":"nope","tip_height":1,"history_min_height":1}"#,
        ];
        for bytes in bad {
            let b = Bytes::from_static(bytes);
            assert!(
                Codec::<SignedConsensusMsg<Bft>>::decode(&JsonCodec::default(), b.clone()).is_err()
            );
            assert!(
                Codec::<StreamMessage<ProposalPart>>::decode(&JsonCodec::default(), b.clone())
                    .is_err()
            );
            assert!(Codec::<Status<Bft>>::decode(&JsonCodec::default(), b.clone()).is_err());
            assert!(Codec::<LivenessMsg<Bft>>::decode(&JsonCodec::default(), b).is_err());
        }
        let huge = Bytes::from(vec![b' '; MAX_MESSAGE_BYTES + 1]);
        assert!(matches!(
            Codec::<ProposalPart>::decode(&JsonCodec::default(), huge),
            Err(CodecError::TooLarge(_))
        ));
        // A signature of the wrong length.
        let mut wire = serde_json::to_value(WireConsensusMsg::Vote(vote_to_wire(
            &signer().sign_vote(vote()),
        )))
        .unwrap();
        wire["vote"]["signature"] = "AAAA".into();
        let bytes = Bytes::from(serde_json::to_vec(&wire).unwrap());
        assert!(Codec::<SignedConsensusMsg<Bft>>::decode(&JsonCodec::default(), bytes).is_err());
    }
}
