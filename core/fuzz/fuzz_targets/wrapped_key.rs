//! `keys::wrap::unwrap` with the passphrase `pw`. Inputs that reach the KDF run Argon2id with
//! at least 8 MiB (the format's minimum), so this target is slow by design.
//! What unwraps must re-wrap and unwrap to the same secret and content type; a wrapped key set
//! must import.
#![no_main]

mod common;

use emrshare_core::keys::wrap::{self, KdfParams};
use emrshare_core::PrivateKeySet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((secret, cty)) = wrap::unwrap(data, common::PASSPHRASE) else {
        return;
    };
    let rewrapped = wrap::wrap(&secret, common::PASSPHRASE, KdfParams::MINIMUM, &cty)
        .expect("re-wrapping an unwrapped secret");
    let (again, again_cty) =
        wrap::unwrap(rewrapped.as_bytes(), common::PASSPHRASE).expect("re-wrapped secret unwraps");
    assert_eq!(*again, *secret);
    assert_eq!(again_cty, cty);
    if cty == "jwk-set+json" {
        let _ = PrivateKeySet::from_json(&secret);
    }
});
