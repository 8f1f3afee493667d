//! Handshake message decoders (DESIGN section 8): the request a patient reads (before its
//! signature is checked: it only names whom to look up), and the M1 a requester receives.
//! Never a panic; arbitrary bytes never pass as an M1 (M1 must open with the requester's RSA key
//! and carry the patient's signature over the hash of this very request, which random input
//! cannot: acceptance is a bug).
//!
//! Input: byte 0 picks the decoder, the rest is the message.
#![no_main]

use emrshare_core::PrivateKeySet;
use emrshare_core::handshake::{HandshakeConfig, PatientStart, RequesterStart};
use emrshare_core::keys::{PartyId, RsaBits};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const NOW: u64 = 1_790_000_000;

fn requester() -> &'static PrivateKeySet {
    static KEYS: OnceLock<PrivateKeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        PrivateKeySet::generate(Some(PartyId::new("insurer:fuzz").unwrap()), RsaBits::B2048)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    let config = HandshakeConfig::default();
    match selector % 2 {
        0 => {
            if let Ok(request) = PatientStart::new(config).read_request(message, NOW) {
                // A parsed request names a requester; nothing else of it is readable until
                // its signature checks against that requester's registry entry.
                assert!(!request.requester().as_str().is_empty());
            }
        }
        _ => {
            let (waiting, _) = RequesterStart::new(config)
                .send_request(requester(), "fuzz", &["examination"], NOW)
                .unwrap();
            assert!(
                waiting.receive_m1(message, requester(), NOW).is_err(),
                "random bytes accepted as M1"
            );
        }
    }
});
