//! Every JSON message a node takes or returns, decoded with the strict parser: the node API's
//! bodies (`ledger::wire`), and the ledger types nodes exchange (certified blocks and headers,
//! signed consensus votes and proposals, misbehaviour evidence, genesis). Never a panic; what parses re-serializes to JSON that
//! parses to the same value and serializes to the same bytes, both directly and in the
//! sorted-member form the node serves (through `serde_json::Value`).
//!
//! Beyond the round trip:
//! - no light client accepts a certified header or block here (the fixture validators' keys
//!   are not in the input, as in `ledger_messages`);
//! - a lookup answer under the fixed state tree of `common/ledger.rs` proves only what that
//!   tree holds (soundness of every entry's proof, checked as a thin client checks it);
//! - transactions inside submits and blocks go through `SignedTransaction::parse`.
//!
//! Input: byte 0 picks the message type, the rest is its JSON text.
#![no_main]

#[allow(dead_code)]
#[path = "common/ledger.rs"]
mod ledger;

use emrshare_core::keys::{PartyId, SigningKey};
use emrshare_core::ledger::bft::{ConsensusProposal, ConsensusVote, Evidence, Signed};
use emrshare_core::ledger::block::{CertifiedBlock, CertifiedHeader, Genesis, Validator, ValidatorSet};
use emrshare_core::ledger::machine::{directory_key, registry_key};
use emrshare_core::ledger::merkle::Hash;
use emrshare_core::ledger::state::{value_hash, StateTree};
use emrshare_core::ledger::tx::SignedTransaction;
use emrshare_core::ledger::verify::{LightClient, Verdict};
use emrshare_core::ledger::wire::{
    BlobStored, BlockAccepted, BucketAnswer, ErrorBody, GrantAnswer, HealthAnswer, LookupRequest,
    LookupResponse, RecordAnswer, RecordVoucherAnswer, RecordVoucherRequest, SequenceAnswer,
    SubmitRequest, SubmitResponse,
};
use emrshare_core::record_account::verify_record_answer;
use emrshare_core::strict_json;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::sync::OnceLock;

/// Three proposers and three auditors whose private keys are dropped at once.
fn validators() -> &'static ValidatorSet {
    static SET: OnceLock<ValidatorSet> = OnceLock::new();
    SET.get_or_init(|| ValidatorSet {
        validators: (0..6)
            .map(|i| Validator {
                id: PartyId::new(format!("node:{i}")).unwrap(),
                signing_jwk: SigningKey::generate().verifying_key().to_jwk(None),
                credit: 100,
            })
            .collect(),
        proposers: 3,
        auditors: 3,
    })
}

fn fixed_tree() -> &'static (StateTree, Hash) {
    static TREE: OnceLock<(StateTree, Hash)> = OnceLock::new();
    TREE.get_or_init(|| {
        let tree = ledger::state_tree();
        let root = tree.root();
        (tree, root)
    })
}

/// Parses `data` strictly as `T`; if it parses, checks the round trips and returns the value.
fn decode<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let value: T = strict_json::parse(data).ok()?;
    let text = serde_json::to_vec(&value).unwrap();
    let again: T = strict_json::parse(&text).expect("re-serialized message parses");
    assert_eq!(again, value, "message changed on a round trip");
    assert_eq!(
        serde_json::to_vec(&again).unwrap(),
        text,
        "serialization is not stable"
    );
    // The form the node serves for answers nesting ledger types: members sorted.
    let sorted = serde_json::to_vec(&serde_json::to_value(&value).unwrap()).unwrap();
    let from_sorted: T = strict_json::parse(&sorted).expect("sorted form parses");
    assert_eq!(from_sorted, value, "sorted form decodes to another message");
    Some(value)
}

fn parse_txs(txs: &[String]) {
    for jws in txs {
        if let Ok(tx) = SignedTransaction::parse(jws) {
            let again = SignedTransaction::parse(tx.as_jws()).expect("parsed JWS parses again");
            assert_eq!(again, tx);
        }
    }
}

fn never_accepted(certified: &CertifiedHeader) {
    let mut client = LightClient::new(&certified.header.chain_id, validators().clone()).unwrap();
    assert_ne!(
        client.verify_header(certified),
        Verdict::Success,
        "accepted a header no auditor signed"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 20 {
        0 => {
            if let Some(submit) = decode::<SubmitRequest>(rest) {
                parse_txs(std::slice::from_ref(&submit.jws));
            }
        }
        1 => {
            decode::<SubmitResponse>(rest);
        }
        2 => {
            if let Some(lookup) = decode::<LookupRequest>(rest) {
                for id in lookup.ids {
                    let _ = PartyId::new(id);
                }
            }
        }
        3 => {
            let Some(answer) = decode::<LookupResponse>(rest) else {
                return;
            };
            never_accepted(&answer.header);
            let (tree, root) = fixed_tree();
            for entry in &answer.entries {
                let key = registry_key(&entry.id);
                // As a thin client would, against the header's root; soundness only where
                // that root is the fixed tree's, whose contents are known.
                let Ok(proven) = entry.proof.verify(&answer.header.header.state_root, &key) else {
                    continue;
                };
                if &answer.header.header.state_root == root {
                    assert_eq!(proven, tree.get(&key), "proof of something the tree lacks");
                }
                // A client then accepts the value only if it hashes to what was proven.
                let _ = proven == entry.value.as_ref().map(|v| value_hash(v.as_bytes()));
            }
        }
        4 => {
            // A bucket answer, checked as a thin client would (the proof against the head it
            // names, for the prefix of its first entry): never a panic, whatever the bytes.
            let Some(answer) = decode::<BucketAnswer>(rest) else {
                return;
            };
            never_accepted(&answer.header);
            let leaves: Vec<_> = answer
                .entries
                .iter()
                .map(|e| (directory_key(&e.id), value_hash(e.value.as_bytes())))
                .collect();
            let prefix = leaves.first().map(|(key, _)| *key).unwrap_or_default();
            let bits = answer.proof.siblings.len();
            let root = answer.header.header.state_root;
            let _ = answer.proof.verify(&root, &prefix, bits, &leaves);
        }
        5 => {
            if let Some(answer) = decode::<GrantAnswer>(rest) {
                let _ = answer.grant.proof.encoded_len();
            }
        }
        6 => {
            decode::<SequenceAnswer>(rest);
        }
        7 => {
            decode::<HealthAnswer>(rest);
        }
        8 => {
            decode::<BlockAccepted>(rest);
        }
        9 => {
            decode::<BlobStored>(rest);
        }
        10 => {
            decode::<ErrorBody>(rest);
        }
        11 => {
            if let Some(proposal) = decode::<Signed<ConsensusProposal>>(rest) {
                let _ = proposal.message.sign_bytes("fuzz-chain");
            }
        }
        12 => {
            if let Some(block) = decode::<CertifiedBlock>(rest) {
                parse_txs(&block.txs);
                never_accepted(&block.certified_header());
            }
        }
        13 => {
            if let Some(certified) = decode::<CertifiedHeader>(rest) {
                never_accepted(&certified);
            }
        }
        14 => {
            if let Some(vote) = decode::<Signed<ConsensusVote>>(rest) {
                let _ = vote.message.sign_bytes("fuzz-chain");
            }
        }
        15 => {
            if let Some(genesis) = decode::<Genesis>(rest) {
                let _ = genesis.validators.check();
            }
        }
        17 => {
            // A record's account and logs, checked as the phone checks them: no header of
            // the input can be accepted, so every answer with something in it is refused,
            // never with a panic.
            if let Some(answer) = decode::<RecordAnswer>(rest) {
                never_accepted(&answer.header);
                let client = LightClient::new("fuzz-chain", validators().clone()).unwrap();
                let record = PartyId::new("record-fuzz").unwrap();
                for from in [0, 1, u64::MAX] {
                    assert!(
                        verify_record_answer(&client, &record, from, &answer).is_err(),
                        "an answer verified with no trusted header"
                    );
                }
            }
        }
        18 => {
            decode::<RecordVoucherRequest>(rest);
        }
        19 => {
            decode::<RecordVoucherAnswer>(rest);
        }
        _ => {
            // Misbehaviour evidence (the text a Misbehaviour transaction carries): nothing
            // here is signed by the fixture validators, so none of it verifies.
            if let Some(evidence) = decode::<Evidence>(rest) {
                let set = validators().consensus_set().verified().unwrap();
                assert!(evidence.verify("fuzz-chain", &set).is_err(), "forged evidence");
            }
        }
    }
});
