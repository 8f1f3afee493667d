//! Compact JWS: `jws::unverified_payload` and `jws::verify` with the fixture issuer key
//! (`emr+sd-jwt`) and holder key (`kb+jwt`). A verified token's payload is an object and
//! equals the unverified payload.
#![no_main]

mod common;

use emrshare_core::{ces, jws};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let unverified = jws::unverified_payload(token);
    for (key, typ) in [
        (&common::issuer_public().signing, ces::SD_JWT_TYP),
        (&common::holder_public().signing, ces::KB_JWT_TYP),
    ] {
        if let Ok(v) = jws::verify(token, key, typ) {
            assert_eq!(v.header.alg, "ES256");
            assert_eq!(v.header.typ.as_deref(), Some(typ));
            assert!(v.payload.is_object());
            assert_eq!(unverified.as_ref().ok(), Some(&v.payload));
        }
    }
});
