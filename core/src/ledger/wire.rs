//! The JSON bodies of a full node's HTTP API (`/v1/...`), so the node and the thin client
//! (and the fuzz targets) share one definition of each.
//!
//! Every type refuses unknown members; parse untrusted bytes with
//! [`strict_json::parse`](crate::strict_json::parse), which also refuses duplicate members.
//! The node API's other bodies are ledger types of their own: [`CertifiedHeader`] (latest
//! header) and [`CertifiedBlock`](super::block::CertifiedBlock) (blocks). Validators talk
//! consensus over their own network (Malachite), not this API.
//!
//! Member order: the fields of these structs are declared in lexicographic order, which is
//! the order the node wrote when it built these bodies as `serde_json::Value`s (whose maps
//! sort their keys), so a direct serialization of a flat type is byte for byte the node's
//! answer. [`LookupResponse`] and [`GrantAnswer`] nest ledger types whose own field order is
//! not lexicographic ([`Header`](super::block::Header), [`StateProof`]); the node serializes
//! those two through `serde_json::Value` to keep its answers byte-identical. Member order
//! carries no meaning either way: header hashes and proofs are computed from the decoded
//! values, never from the answer's bytes.

use super::block::CertifiedHeader;
use super::merkle::Hash;
use super::state::{PrefixProof, StateProof};
use crate::keys::PartyId;
use serde::{Deserialize, Deserializer, Serialize};

/// The body of `POST /v1/tx` (a client's transaction) and `POST /v1/consensus/tx` (a
/// transaction relayed by a peer): the signed transaction as compact JWS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The signed transaction, as compact JWS.
    pub jws: String,
}

/// The body of `POST /v1/consensus/txs`: transactions a peer relays, in one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayRequest {
    /// The signed transactions, as compact JWS texts.
    pub txs: Vec<String>,
}

/// The answer to a relay: how many transactions were taken (new or already held) and how
/// many refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayAccepted {
    /// Transactions taken: new to the node, or already held.
    pub accepted: usize,
    /// Transactions refused.
    pub refused: usize,
}

/// The `202 Accepted` answer to a submitted transaction: its ID, the base64url SHA-256 of
/// the JWS ([`SignedTransaction::id_text`](super::tx::SignedTransaction::id_text)). Sent
/// once the transaction is stored durably.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitResponse {
    /// The transaction's ID: base64url of the SHA-256 of its JWS.
    pub id: String,
}

/// The body of `POST /v1/registry/lookup`: the k IDs to look up in one request, the real one
/// among decoys (DESIGN section 8). Kept as text so the node can answer the count limit and
/// a malformed ID with distinct errors; [`LookupRequest::new`] builds one from valid IDs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    /// The IDs to look up, as text: the target among its decoys.
    pub ids: Vec<String>,
}

impl LookupRequest {
    /// A request for `ids`, in the order given.
    pub fn new<'a>(ids: impl IntoIterator<Item = &'a PartyId>) -> Self {
        Self {
            ids: ids.into_iter().map(|id| id.as_str().to_owned()).collect(),
        }
    }
}

/// The answer to a lookup: per requested ID (in request order) the registry entry or its
/// absence, each with a state proof under the state root of `header`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupResponse {
    /// One entry per requested ID, in request order.
    pub entries: Vec<LookupEntry>,
    /// The certified header whose state root the proofs are under.
    pub header: CertifiedHeader,
}

/// One looked-up ID: `value` is the registry entry's JSON exactly as the state stores it
/// (its SHA-256 is the value hash the proof commits to), or `null` where the proof shows the
/// ID is absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupEntry {
    /// The ID looked up.
    pub id: PartyId,
    /// The proof of its entry, or of its absence, under the header's state root.
    pub proof: StateProof,
    /// The registry entry's JSON as the state stores it, or `null` for a proven absence.
    #[serde(deserialize_with = "present_option")]
    pub value: Option<String>,
}

/// The answer to `GET /v1/directory/{role}`: the role's directory head (its tree's root and
/// size, a [`DirectoryHead`](super::machine::DirectoryHead)), proven under the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryAnswer {
    /// The certified header whose state root the proof is under.
    pub header: CertifiedHeader,
    /// The head's JSON and proof (absent: the role has no registered ID).
    pub head: ProvenValue,
}

/// The answer to `GET /v1/directory/{role}/bucket/{bits}/{prefix}`: every registered ID of the
/// role whose directory key starts with the prefix, with its registry entry, and the proof
/// that these are all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketAnswer {
    /// The certified header whose state root the head's proof is under.
    pub header: CertifiedHeader,
    /// The role's directory head and its state proof.
    pub head: ProvenValue,
    /// The bucket's proof under the head's root.
    pub proof: PrefixProof,
    /// The bucket's IDs and registry entries, by directory key.
    pub entries: Vec<BucketEntry>,
}

/// One ID of a bucket: `value` is its registry entry's JSON exactly as the state stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketEntry {
    /// The registered ID.
    pub id: PartyId,
    /// Its registry entry's JSON.
    pub value: String,
}

/// A state value (its JSON exactly as the state stores it) or its absence (`null`), with its
/// state proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenValue {
    /// The proof of the value, or of its absence, under the header's state root.
    pub proof: StateProof,
    /// The value's JSON as the state stores it, or `null` for a proven absence.
    #[serde(deserialize_with = "present_option")]
    pub value: Option<String>,
}

/// The answer to `GET /v1/grants/{grant_id}`: the grant (or its absence) proven under the
/// node's latest certified header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantAnswer {
    /// The grant's [`GrantEntry`](super::machine::GrantEntry) JSON, or its absence, proven.
    pub grant: ProvenValue,
    /// The certified header the proof is under.
    pub header: CertifiedHeader,
}

/// The most access logs one answer to `GET /v1/records/{record}` carries (ask again
/// `?from=` the next one).
pub const MAX_LOGS_PER_ANSWER: u64 = 256;

/// The answer to `GET /v1/records/{record}?from=N`: the record's account (or its absence)
/// and its access logs `N..` (at most [`MAX_LOGS_PER_ANSWER`]), each proven under the node's
/// latest certified header. The phone reads its index and audit log from these, never
/// from blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordAnswer {
    /// The certified header every proof is under.
    pub header: CertifiedHeader,
    /// The record's [`LogEntry`](super::machine::LogEntry) JSON values from `from` on, proven.
    #[serde(deserialize_with = "at_most_logs")]
    pub logs: Vec<ProvenValue>,
    /// The [`RecordEntry`](super::machine::RecordEntry) JSON, or its absence, proven.
    pub record: ProvenValue,
}

fn at_most_logs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ProvenValue>, D::Error> {
    let logs = Vec::<ProvenValue>::deserialize(d)?;
    if logs.len() as u64 > MAX_LOGS_PER_ANSWER {
        return Err(serde::de::Error::custom("too many logs in one answer"));
    }
    Ok(logs)
}

/// The `typ` of a registered patient's request for a record voucher.
pub const RECORD_VOUCHER_REQUEST_TYP: &str = "emr-record-voucher+jwt";

/// What a registered patient signs to ask a node for a record voucher (the payload of
/// [`RecordVoucherRequest::request`]): the message ([`crate::voucher::blind`] for the
/// record's account ID) blinded once under each of genesis's record voucher keys, in
/// genesis order, so whichever node answers signs the one blinded for its key; and the
/// time. The node sees who asks, never for which record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordVoucherClaims {
    /// The blinded messages, base64url, one per record voucher key of genesis (at most 64).
    pub blinded: Vec<String>,
    /// Unix seconds.
    pub iat: u64,
    /// The patient asking: registered, active.
    pub iss: PartyId,
}

/// The body of `POST /v1/record-vouchers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordVoucherRequest {
    /// A compact JWS (ES256, typ [`RECORD_VOUCHER_REQUEST_TYP`]) of [`RecordVoucherClaims`],
    /// by the patient's registered key.
    pub request: String,
}

/// The answer to `POST /v1/record-vouchers`: the node's blind signature, and which of
/// genesis's record voucher keys made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordVoucherAnswer {
    /// The blind signature, base64url.
    pub blind_signature: String,
    /// The index of the node's key in genesis's `record_voucher_keys`.
    pub key: u32,
}

/// The answer to `GET /v1/validators`: the validator set of the next block, the members
/// with their credit, and every change of validator set so far, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorsAnswer {
    /// The validator set of the next block.
    pub current: super::block::ValidatorSet,
    /// The height of the node's latest applied block.
    pub height: u64,
    /// The consortium members with their current credit, in genesis order.
    pub members: Vec<super::dpos::Member>,
    /// Every change of validator set so far, oldest first.
    pub transitions: Vec<super::block::Transition>,
}

/// The answer to `GET /v1/sequence/{id}`: the sequence number the party's next transaction
/// must carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceAnswer {
    /// The sequence number the party's next transaction must carry.
    pub next: u64,
}

/// The answer to `GET /v1/tx/{id}`: what became of a transaction this node acknowledged.
/// An acknowledged transaction ends committed or failed, never silently gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum TxStatus {
    /// In the mempool, waiting for a block.
    Pending,
    /// In the certified block at `height`.
    Committed {
        /// The block's height.
        height: u64,
    },
    /// Dropped from the mempool: it can never apply (`reason` says why).
    Failed {
        /// Why it can never apply, in words.
        reason: String,
    },
}

/// The `x-emr-peer` header of a consortium route (`/v1/consensus/...`): a compact JWS
/// (`typ` [`PeerToken::TYP`]) by a member's consensus key over this, checked before the
/// body is read, so a stranger cannot make a node read (or hold) a large body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerToken {
    /// The member sending the request.
    pub peer: PartyId,
    /// The request path, e.g. `/v1/consensus/proposal`.
    pub path: String,
    /// The body's length in bytes (its `Content-Length`).
    pub len: u64,
    /// SHA-256 of the body, lowercase hex: checked once the body is read.
    pub body_sha256: String,
    /// Unix seconds.
    pub iat: u64,
}

impl PeerToken {
    /// The JWS `typ` of a peer token.
    pub const TYP: &'static str = "emr-peer+jwt";
}

/// The answer to `GET /v1/health`. `chain_id` and `genesis_hash` came later: an older
/// node's answer, without them, still reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthAnswer {
    /// The chain ID of the node's genesis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<String>,
    /// [`Genesis::hash`](super::block::Genesis::hash) of the node's genesis, in hex: peers
    /// with another one are not synced from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_hash: Option<Hash>,
    /// Height of the node's latest applied certified block (0 before the first).
    pub height: u64,
    /// The node's party ID.
    pub id: PartyId,
    /// [`HealthAnswer::OK`]; [`HealthAnswer::GENESIS_MISMATCH`] when every peer that answers
    /// has another genesis; [`HealthAnswer::NOT_SYNCING`] when no peer answers;
    /// `"behind by N"` ([`HealthAnswer::behind`]) when a peer is N blocks ahead.
    pub status: String,
}

impl HealthAnswer {
    /// The status of a node no answering peer is ahead of (beyond a small tolerance).
    pub const OK: &'static str = "ok";
    /// The status of a node no peer answers.
    pub const NOT_SYNCING: &'static str = "not syncing";
    /// The status of a node whose every answering peer has another genesis.
    pub const GENESIS_MISMATCH: &'static str = "genesis mismatch";

    /// The status of a node `blocks` behind the best peer it knows.
    pub fn behind(blocks: u64) -> String {
        format!("behind by {blocks}")
    }
}

/// The answer to `POST /v1/consensus/block` when the block is applied (or already was).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockAccepted {
    /// The height of the block applied.
    pub height: u64,
}

/// The `201 Created` answer to `PUT /v1/blobs/{hash}`: the stored blob's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobStored {
    /// The stored blob's address: SHA-256 of its bytes.
    pub hash: Hash,
}

/// The body of every error answer (4xx, and 5xx for the node's own failures).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// What went wrong, in words.
    pub error: String,
}

impl ErrorBody {
    /// An error body saying `message`.
    pub fn new(message: impl std::fmt::Display) -> Self {
        Self {
            error: message.to_string(),
        }
    }
}

/// An `Option` whose member must be present (as `null` or a value): serde would otherwise
/// read a missing member as `None`, and "no value" must be said, not implied.
fn present_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

#[cfg(test)]
mod tests {
    use super::super::bft::{ConsensusVote, DecisionCertificate, VoteKind};
    use super::super::block::Header;
    use super::super::state::{StateTree, state_key, value_hash};
    use super::*;
    use crate::keys::SigningKey;
    use crate::strict_json::{self, StrictJsonError};
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    /// The one place these tests name the header's fields.
    fn certified_header() -> CertifiedHeader {
        let key = SigningKey::generate();
        let header = Header {
            chain_id: "wire-test".into(),
            height: 7,
            round: 0,
            previous: Hash::new([1; 32]),
            time_ms: 1_700_000_000_000,
            proposer: PartyId::new("node:0").unwrap(),
            tx_root: Hash::new([2; 32]),
            state_root: Hash::new([3; 32]),
            validators_hash: Hash::new([4; 32]),
            next_validators_hash: Hash::new([4; 32]),
            last_commit: Vec::new(),
        };
        let precommit = ConsensusVote {
            kind: VoteKind::Precommit,
            height: 7,
            round: 0,
            value: Some(header.hash()),
            validator: PartyId::new("node:3").unwrap(),
        }
        .sign("wire-test", &key);
        CertifiedHeader {
            certificate: DecisionCertificate::from_precommits(7, 0, header.hash(), &[precommit]),
            header,
        }
    }

    /// A small state: a proof of a present key (`Terminal::Leaf` at depth > 0) and of an
    /// absent one, with the stored value.
    fn proofs() -> (StateProof, StateProof, String) {
        let (tree, value) = grant_tree();
        (
            tree.prove(&state_key("grant", "g-present")),
            tree.prove(&state_key("grant", "g-absent")),
            value,
        )
    }

    fn grant_tree() -> (StateTree, String) {
        let mut tree = StateTree::new();
        let value = r#"{"grantor":"patient-1","revoked":false}"#.to_string();
        for i in 0..40 {
            tree.insert(state_key("grant", &format!("g{i}")), value_hash(b"other"));
        }
        tree.insert(
            state_key("grant", "g-present"),
            value_hash(value.as_bytes()),
        );
        (tree, value)
    }

    fn lookup_response() -> LookupResponse {
        let (present, absent, value) = proofs();
        LookupResponse {
            entries: vec![
                LookupEntry {
                    id: PartyId::new("hospital:a").unwrap(),
                    proof: present,
                    value: Some(value),
                },
                LookupEntry {
                    id: PartyId::new("hospital:nobody").unwrap(),
                    proof: absent,
                    value: None,
                },
            ],
            header: certified_header(),
        }
    }

    /// Strict parse, then a re-serialization that parses to the same value and serializes to
    /// the same bytes.
    fn roundtrip<T>(value: &T) -> T
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let text = serde_json::to_vec(value).unwrap();
        let parsed: T = strict_json::parse(&text).unwrap();
        assert_eq!(&parsed, value);
        assert_eq!(serde_json::to_vec(&parsed).unwrap(), text);
        parsed
    }

    /// The bytes the node served before these types, when it built its answers with `json!`:
    /// a `Value`'s members are sorted.
    fn as_value_bytes<T: Serialize>(value: &T) -> Vec<u8> {
        serde_json::to_vec(&serde_json::to_value(value).unwrap()).unwrap()
    }

    fn refused<T: DeserializeOwned + std::fmt::Debug>(bytes: &[u8]) -> StrictJsonError {
        match strict_json::parse::<T>(bytes) {
            Ok(v) => panic!("accepted {}: {v:?}", String::from_utf8_lossy(bytes)),
            Err(e) => e,
        }
    }

    /// `value` with `path`'s member `name` set to `new` (path: object members and indices).
    fn with_member(value: &Value, path: &[&str], name: &str, new: Value) -> Vec<u8> {
        let mut value = value.clone();
        let mut at = &mut value;
        for step in path {
            at = match step.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*step],
            };
        }
        at.as_object_mut()
            .expect("path leads to an object")
            .insert(name.into(), new);
        serde_json::to_vec(&value).unwrap()
    }

    /// `value` with `path`'s member `name` removed.
    fn without_member(value: &Value, path: &[&str], name: &str) -> Vec<u8> {
        let mut value = value.clone();
        let mut at = &mut value;
        for step in path {
            at = match step.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*step],
            };
        }
        assert!(at.as_object_mut().unwrap().remove(name).is_some());
        serde_json::to_vec(&value).unwrap()
    }

    /// The text of `value` with a second `"name": dup` member inserted right after the first
    /// occurrence of `"name":<first>` (a JSON text a `Value` cannot hold).
    fn with_duplicate(value: &Value, name: &str, dup: &str) -> Vec<u8> {
        let text = serde_json::to_string(value).unwrap();
        let needle = format!("\"{name}\":");
        let at = text.find(&needle).expect("member present");
        format!("{}\"{name}\":{dup},{}", &text[..at], &text[at..]).into_bytes()
    }

    // --- positive cases -------------------------------------------------------------------

    #[test]
    fn flat_answers_roundtrip_and_are_the_bytes_json_macro_made() {
        let id = PartyId::new("node:2").unwrap();
        // What api.rs wrote with json! before these types, next to the typed value.
        let cases: Vec<(Value, Vec<u8>)> = vec![
            (
                json!({"jws": "a.b.c"}),
                serde_json::to_vec(&roundtrip(&SubmitRequest {
                    jws: "a.b.c".into(),
                }))
                .unwrap(),
            ),
            (
                json!({"id": "tx-id"}),
                serde_json::to_vec(&roundtrip(&SubmitResponse { id: "tx-id".into() })).unwrap(),
            ),
            (
                json!({"ids": ["hospital:a", "patient-1"]}),
                serde_json::to_vec(&roundtrip(&LookupRequest {
                    ids: vec!["hospital:a".into(), "patient-1".into()],
                }))
                .unwrap(),
            ),
            (
                json!({"next": 41}),
                serde_json::to_vec(&roundtrip(&SequenceAnswer { next: 41 })).unwrap(),
            ),
            (
                json!({"status": "ok", "id": id.as_str(), "height": 9}),
                serde_json::to_vec(&roundtrip(&HealthAnswer {
                    chain_id: None,
                    genesis_hash: None,
                    height: 9,
                    id: id.clone(),
                    status: HealthAnswer::OK.into(),
                }))
                .unwrap(),
            ),
            (
                json!({
                    "chain_id": "c",
                    "genesis_hash": Hash::new([0xcd; 32]).to_hex(),
                    "height": 9,
                    "id": id.as_str(),
                    "status": "behind by 3",
                }),
                serde_json::to_vec(&roundtrip(&HealthAnswer {
                    chain_id: Some("c".into()),
                    genesis_hash: Some(Hash::new([0xcd; 32])),
                    height: 9,
                    id: id.clone(),
                    status: HealthAnswer::behind(3),
                }))
                .unwrap(),
            ),
            (
                json!({"height": u64::MAX}),
                serde_json::to_vec(&roundtrip(&BlockAccepted { height: u64::MAX })).unwrap(),
            ),
            (
                json!({"hash": Hash::new([0xab; 32]).to_hex()}),
                serde_json::to_vec(&roundtrip(&BlobStored {
                    hash: Hash::new([0xab; 32]),
                }))
                .unwrap(),
            ),
            (
                json!({"error": "no such endpoint \"x\"\n"}),
                serde_json::to_vec(&roundtrip(&ErrorBody::new("no such endpoint \"x\"\n")))
                    .unwrap(),
            ),
        ];
        for (old, new) in cases {
            assert_eq!(
                serde_json::to_vec(&old).unwrap(),
                new,
                "{old} is not what the typed answer serializes to"
            );
        }
        assert_eq!(
            LookupRequest::new([&id]),
            LookupRequest {
                ids: vec!["node:2".into()]
            }
        );
    }

    #[test]
    fn lookup_answers_roundtrip_and_match_the_old_answer_bytes() {
        let answer = lookup_response();
        roundtrip(&answer);
        // The old handler's json!, built from the same parts.
        let old_entries: Vec<Value> = answer
            .entries
            .iter()
            .map(|e| json!({"id": e.id.as_str(), "value": e.value, "proof": e.proof}))
            .collect();
        let old = json!({"header": answer.header, "entries": old_entries});
        assert_eq!(serde_json::to_vec(&old).unwrap(), as_value_bytes(&answer));
        // And the old bytes decode to the typed answer.
        let decoded: LookupResponse =
            strict_json::parse(&serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!(decoded, answer);
    }

    #[test]
    fn grant_answers_roundtrip_present_and_absent() {
        let (present, absent, value) = proofs();
        for grant in [
            ProvenValue {
                proof: present,
                value: Some(value),
            },
            ProvenValue {
                proof: absent,
                value: None,
            },
        ] {
            let answer = GrantAnswer {
                grant,
                header: certified_header(),
            };
            roundtrip(&answer);
            let decoded: GrantAnswer =
                strict_json::parse(&serde_json::to_vec(&answer).unwrap()).unwrap();
            assert_eq!(decoded, answer);
        }
    }

    /// What a thin client does with a lookup answer: the value hashes to what the proof
    /// proves under the state root, and an absent ID is proven absent.
    #[test]
    fn decoded_lookup_entries_prove_their_values() {
        let (tree, _) = grant_tree();
        let decoded: LookupResponse =
            strict_json::parse(&serde_json::to_vec(&lookup_response()).unwrap()).unwrap();
        let [present, absent] = &decoded.entries[..] else {
            panic!("two entries")
        };
        let value = present.value.as_ref().unwrap();
        assert_eq!(
            present
                .proof
                .verify(&tree.root(), &state_key("grant", "g-present")),
            Ok(Some(value_hash(value.as_bytes())))
        );
        assert_eq!(
            absent
                .proof
                .verify(&tree.root(), &state_key("grant", "g-absent")),
            Ok(None)
        );
    }

    // --- negative cases -------------------------------------------------------------------

    #[test]
    fn unknown_members_are_refused_at_every_depth() {
        let lookup = serde_json::to_value(lookup_response()).unwrap();
        let extra = json!(1);
        for (path, what) in [
            (&[][..], "top level"),
            (&["entries", "0"][..], "entry"),
            (&["entries", "0", "proof"][..], "proof"),
            (&["entries", "0", "proof", "terminal"][..], "leaf terminal"),
            (&["entries", "1", "proof", "terminal"][..], "empty terminal"),
            (&["header"][..], "certified header"),
            (&["header", "header"][..], "header"),
            (&["header", "certificate"][..], "certificate"),
            (
                &["header", "certificate", "signatures", "0"][..],
                "precommit signature",
            ),
        ] {
            let bytes = with_member(&lookup, path, "x-extra", extra.clone());
            assert!(
                strict_json::parse::<LookupResponse>(&bytes).is_err(),
                "unknown member in the {what} accepted"
            );
        }
        let (proof, _, value) = proofs();
        let grant = serde_json::to_value(GrantAnswer {
            grant: ProvenValue {
                proof,
                value: Some(value),
            },
            header: certified_header(),
        })
        .unwrap();
        refused::<GrantAnswer>(&with_member(&grant, &[], "grant_id", json!("g")));
        refused::<GrantAnswer>(&with_member(
            &grant,
            &["grant", "proof"],
            "root",
            json!("00"),
        ));
        for bytes in [
            &br#"{"jws":"a.b.c","sequence":1}"#[..],
            br#"{"jws":"a.b.c","JWS":"a.b.c"}"#,
        ] {
            refused::<SubmitRequest>(bytes);
        }
        refused::<SubmitResponse>(br#"{"id":"x","status":"accepted"}"#);
        refused::<LookupRequest>(br#"{"ids":["a"],"k":1}"#);
        refused::<BucketEntry>(br#"{"id":"hospital:a","value":"{}","proof":null}"#);
        refused::<SequenceAnswer>(br#"{"next":1,"id":"a"}"#);
        refused::<HealthAnswer>(br#"{"height":1,"id":"node:0","status":"ok","version":"1"}"#);
        refused::<BlockAccepted>(br#"{"height":1,"hash":"00"}"#);
        refused::<BlobStored>(
            br#"{"hash":"abababababababababababababababababababababababababababababababab","size":1}"#,
        );
        refused::<ErrorBody>(br#"{"error":"e","code":400}"#);
    }

    #[test]
    fn duplicate_members_are_refused_at_every_depth() {
        let lookup = serde_json::to_value(lookup_response()).unwrap();
        // Each of these names first occurs in a different object of the answer.
        for (name, dup) in [
            ("entries", "[]"),
            ("id", r#""hospital:b""#),
            ("proof", "null"),
            ("siblings", "[]"),
            ("kind", r#""empty""#),
            ("value", "null"),
            ("header", "{}"),
            ("chain_id", r#""other""#),
            ("signatures", "[]"),
            ("validator", r#""node:4""#),
        ] {
            let bytes = with_duplicate(&lookup, name, dup);
            assert!(
                matches!(
                    refused::<LookupResponse>(&bytes),
                    StrictJsonError::Syntax(_)
                ),
                "duplicate {name}"
            );
        }
        // A duplicate with the same value is still a duplicate.
        for bytes in [
            &br#"{"jws":"a.b.c","jws":"a.b.c"}"#[..],
            br#"{"jws":"a.b.c","jws":"x.y.z"}"#,
        ] {
            assert!(matches!(
                refused::<SubmitRequest>(bytes),
                StrictJsonError::Syntax(_)
            ));
        }
        for bytes in [
            &br#"{"ids":["a"],"ids":["b"]}"#[..],
            br#"{"ids":[{"a":1,"a":1}]}"#,
        ] {
            assert!(matches!(
                refused::<LookupRequest>(bytes),
                StrictJsonError::Syntax(_)
            ));
        }
        assert!(matches!(
            refused::<HealthAnswer>(br#"{"height":1,"height":2,"id":"node:0","status":"ok"}"#),
            StrictJsonError::Syntax(_)
        ));
        assert!(matches!(
            refused::<SequenceAnswer>(br#"{"next":1,"next":1}"#),
            StrictJsonError::Syntax(_)
        ));
        assert!(matches!(
            refused::<ErrorBody>(br#"{"error":"a","error":"b"}"#),
            StrictJsonError::Syntax(_)
        ));
    }

    #[test]
    fn wrong_types_and_missing_members_are_refused() {
        let lookup = serde_json::to_value(lookup_response()).unwrap();
        for (path, name, new) in [
            (&[][..], "entries", json!({})),
            (&[][..], "header", json!(null)),
            (&["entries", "0"][..], "id", json!("not a valid id")),
            (&["entries", "0"][..], "id", json!(7)),
            (&["entries", "0"][..], "value", json!({"id": "hospital:a"})),
            (&["entries", "0"][..], "value", json!(1)),
            (&["entries", "0", "proof"][..], "siblings", json!(["zz"])),
            (&["entries", "0", "proof"][..], "siblings", json!("00")),
            (
                &["entries", "0", "proof", "terminal"][..],
                "kind",
                json!("node"),
            ),
            (
                &["entries", "0", "proof", "terminal"][..],
                "key",
                json!("AB".repeat(32)),
            ),
            (&["header", "header"][..], "height", json!(-1)),
            (&["header", "header"][..], "height", json!(1.5)),
            (&["header", "header"][..], "round", json!("3")),
            (&["header", "certificate"][..], "signatures", json!({})),
        ] {
            let bytes = with_member(&lookup, path, name, new.clone());
            assert!(
                matches!(refused::<LookupResponse>(&bytes), StrictJsonError::Shape(_)),
                "{name} = {new}"
            );
        }
        // More than 256 siblings: no proof of a 256-bit key is that deep.
        let deep = with_member(
            &lookup,
            &["entries", "0", "proof"],
            "siblings",
            json!(vec!["00".repeat(32); 257]),
        );
        refused::<LookupResponse>(&deep);
        // "No value" must be said (null), not implied by a missing member.
        for (path, name) in [
            (&["entries", "1"][..], "value"),
            (&["entries", "0"][..], "proof"),
            (&["entries", "0"][..], "id"),
            (&[][..], "header"),
            (&["header", "header"][..], "state_root"),
        ] {
            refused::<LookupResponse>(&without_member(&lookup, path, name));
        }
        refused::<GrantAnswer>(&without_member(
            &serde_json::to_value(GrantAnswer {
                grant: ProvenValue {
                    proof: proofs().1,
                    value: None,
                },
                header: certified_header(),
            })
            .unwrap(),
            &["grant"],
            "value",
        ));
        for bytes in [
            &b"{}"[..],
            br#"{"jws":null}"#,
            br#"{"jws":["a"]}"#,
            b"\"a.b.c\"",
        ] {
            refused::<SubmitRequest>(bytes);
        }
        for bytes in [
            &br#"{"ids":"hospital:a"}"#[..],
            br#"{"ids":[1]}"#,
            br#"{"ids":null}"#,
        ] {
            refused::<LookupRequest>(bytes);
        }
        for bytes in [
            &br#"{"id":"bad id","value":"{}"}"#[..],
            br#"{"id":"","value":"{}"}"#,
            br#"{"id":"hospital:a","value":null}"#,
        ] {
            refused::<BucketEntry>(bytes);
        }
        for bytes in [
            &br#"{"next":-1}"#[..],
            br#"{"next":"1"}"#,
            br#"{"next":18446744073709551616}"#,
            br#"{"next":1e3}"#,
        ] {
            refused::<SequenceAnswer>(bytes);
        }
        for bytes in [
            &br#"{"height":1,"id":"bad id","status":"ok"}"#[..],
            br#"{"height":1,"id":"node:0"}"#,
            br#"{"height":true,"id":"node:0","status":"ok"}"#,
            br#"{"genesis_hash":"AB","height":1,"id":"node:0","status":"ok"}"#,
            br#"{"chain_id":1,"height":1,"id":"node:0","status":"ok"}"#,
        ] {
            refused::<HealthAnswer>(bytes);
        }
        // Without the later members (an older node), and with them null.
        for bytes in [
            &br#"{"height":1,"id":"node:0","status":"ok"}"#[..],
            br#"{"chain_id":null,"genesis_hash":null,"height":1,"id":"node:0","status":"ok"}"#,
        ] {
            let answer: HealthAnswer = strict_json::parse(bytes).unwrap();
            assert_eq!((answer.chain_id, answer.genesis_hash), (None, None));
        }
        for hash in [
            "AB".repeat(32),
            "ab".repeat(31),
            "ab".repeat(33),
            "g".repeat(64),
        ] {
            refused::<BlobStored>(format!(r#"{{"hash":"{hash}"}}"#).as_bytes());
        }
        for bytes in [
            &br#"{"error":null}"#[..],
            br#"{"error":{"message":"m"}}"#,
            b"{}",
        ] {
            refused::<ErrorBody>(bytes);
        }
        refused::<BlockAccepted>(br#"{"height":"1"}"#);
        // Not one JSON value.
        refused::<SubmitResponse>(br#"{"id":"a"} {"id":"b"}"#);
        refused::<SubmitResponse>(br#"{"id":"a""#);
    }
}
