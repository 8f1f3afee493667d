//! Tendermint consensus messages (`ledger::bft`): decision certificates and misbehaviour
//! evidence in their strict JSON form, checked against a fixed validator set. Never a panic;
//! what parses re-serializes to the same value; and nothing from the input verifies, since
//! the set's private keys are dropped at once (acceptance would be a forgery, so a bug).
//!
//! Input: byte 0 picks the decoder, the rest is its input.
#![no_main]

use emrshare_core::keys::{PartyId, SigningKey};
use emrshare_core::ledger::bft::{
    ConsensusSet, DecisionCertificate, Evidence, PoweredValidator, VerifiedSet,
};
use emrshare_core::strict_json;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// Four validators of unequal power whose private keys are dropped at once.
fn validators() -> &'static VerifiedSet {
    static SET: OnceLock<VerifiedSet> = OnceLock::new();
    SET.get_or_init(|| {
        ConsensusSet {
            validators: (0..4)
                .map(|i| PoweredValidator {
                    id: PartyId::new(format!("node:{i}")).unwrap(),
                    signing_jwk: SigningKey::generate().verifying_key().to_jwk(None),
                    power: 1 + i,
                })
                .collect(),
            proposers: 2,
        }
        .verified()
        .unwrap()
    })
}

fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let text = serde_json::to_vec(value).unwrap();
    let again: T = strict_json::parse(&text).expect("re-serialized message parses");
    assert_eq!(&again, value, "message changed on a round trip");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => {
            if let Ok(certificate) = strict_json::parse::<DecisionCertificate>(rest) {
                roundtrip(&certificate);
                assert!(certificate.verify("fuzz", validators()).is_err(), "forged certificate");
            }
        }
        1 => {
            if let Ok(evidence) = strict_json::parse::<Evidence>(rest) {
                roundtrip(&evidence);
                assert!(evidence.verify("fuzz", validators()).is_err(), "forged evidence");
            }
        }
        _ => {
            if let Ok(set) = strict_json::parse::<ConsensusSet>(rest) {
                roundtrip(&set);
                if let Ok(set) = set.verified() {
                    let _ = (set.total_power(), set.proposer(u64::MAX, u32::MAX), set.hash());
                }
            }
        }
    }
});
