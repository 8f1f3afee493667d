//! `Envelope::parse` on raw bytes (the compact form, but JSON is reachable too), then open with
//! the fixture keys, re-serialize and re-parse (`common::check_envelope`). A compact envelope
//! that parses must serialize back to exactly its trimmed input: base64url is canonical.
#![no_main]

mod common;

use emrshare_core::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(env) = Envelope::parse(data) else {
        return;
    };
    let trimmed = data.trim_ascii();
    if trimmed.first() != Some(&b'{') {
        assert_eq!(
            env.serialize().as_bytes(),
            trimmed,
            "a parsed compact JWE does not serialize back to its input"
        );
    }
    common::check_envelope(data);
});
