//! Ledger message decoders: `SignedTransaction::parse` (JWS text), and the strict JSON forms
//! of certified headers, genesis files and validator sets. Never a panic; what parses
//! re-serializes to something that parses to the same value; a certified header that a fresh
//! light client accepts really carries precommits of more than 2/3 of the voting power (it
//! cannot: the fixture set's keys are not in the input, so acceptance is a bug).
//!
//! Input: byte 0 picks the decoder, the rest is its input.
#![no_main]

use emrshare_core::keys::{PartyId, SigningKey};
use emrshare_core::ledger::block::{CertifiedHeader, Genesis, Validator, ValidatorSet};
use emrshare_core::ledger::tx::SignedTransaction;
use emrshare_core::ledger::verify::{LightClient, Verdict};
use emrshare_core::strict_json;
use libfuzzer_sys::fuzz_target;
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

fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let text = serde_json::to_vec(value).unwrap();
    let again: T = strict_json::parse(&text).expect("re-serialized message parses");
    assert_eq!(&again, value, "message changed on a round trip");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => {
            let Ok(text) = std::str::from_utf8(rest) else { return };
            if let Ok(tx) = SignedTransaction::parse(text) {
                let again = SignedTransaction::parse(tx.as_jws()).expect("parsed JWS parses again");
                assert_eq!(again, tx);
                let _ = tx.self_signing_key();
            }
        }
        1 => {
            if let Ok(certified) = strict_json::parse::<CertifiedHeader>(rest) {
                roundtrip(&certified);
                let mut client = LightClient::new(&certified.header.chain_id, validators().clone()).unwrap();
                let verdict = client.verify_header(&certified);
                assert_ne!(verdict, Verdict::Success, "accepted a header no auditor signed");
            }
        }
        2 => {
            if let Ok(genesis) = strict_json::parse::<Genesis>(rest) {
                roundtrip(&genesis);
                let _ = genesis.validators.check();
            }
        }
        _ => {
            if let Ok(set) = strict_json::parse::<ValidatorSet>(rest) {
                roundtrip(&set);
                if set.check().is_ok() {
                    let voters = set.consensus_set().verified().expect("a checked set has voters");
                    let _ = (voters.total_power(), set.auditors().len(), voters.proposer(u64::MAX, 0));
                }
            }
        }
    }
});
