//! `SdJwt::parse`, then `ces::verify` against the fixture issuer (plain policy, and a strict
//! one requiring the fixture holder and a key-binding JWT), then `extract`.
//!
//! Properties: serialize/parse round-trips; verifying against another key never succeeds; a
//! strict verification implies the plain one with the same result; an extraction keeps only
//! disclosures it was asked for, drops the key binding, and an extraction of a verified SD-JWT
//! still verifies and discloses a subset of the same parts, CEAS parts included.
#![no_main]

mod common;

use common::{holder_public, issuer_public, AUD, NONCE, NOW};
use emrshare_core::ces::{self, KeyBindingRequirement, VerifyPolicy};
use emrshare_core::SdJwt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(sd) = SdJwt::parse(text) else {
        return;
    };
    let serialized = sd.serialize();
    let again = SdJwt::parse(&serialized)
        .unwrap_or_else(|e| panic!("serialize() output does not parse ({e}): {serialized}"));
    assert_eq!(again, sd, "parse(serialize(sd)) != sd");
    let names: Vec<&str> = sd.disclosures().iter().filter_map(|d| d.name()).collect();

    let plain = ces::verify(&sd, &VerifyPolicy::new(issuer_public(), NOW));
    let strict_policy = VerifyPolicy {
        holder: Some(holder_public()),
        key_binding: Some(KeyBindingRequirement { audience: AUD, nonce: NONCE }),
        ..VerifyPolicy::new(issuer_public(), NOW)
    };
    let strict = ces::verify(&sd, &strict_policy);
    assert!(
        ces::verify(&sd, &VerifyPolicy::new(holder_public(), NOW)).is_err(),
        "verified against the wrong issuer key"
    );
    if let Ok(v) = &plain {
        assert_eq!(v.issuer(), &issuer_public().id);
        assert_eq!(v.key_bound(), sd.has_key_binding());
        for c in v.ceas() {
            assert!(v.parts().contains_key(c), "CEAS part {c} missing after verify");
        }
        let _ = v.to_json();
    }
    if let Ok(v) = &strict {
        assert!(v.key_bound());
        assert_eq!(v.patient(), holder_public().id.as_str());
        assert_eq!(plain.as_ref().ok(), Some(v), "strict verify passed, plain verify differs");
    }

    // Keep a subset of the disclosed names, chosen by the input's last byte; sometimes add a
    // name that may not exist.
    let sel = data.last().copied().unwrap_or(0);
    let mut keep: Vec<&str> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| (sel >> (i % 7)) & 1 == 1)
        .map(|(_, n)| *n)
        .collect();
    if sel & 0x80 != 0 {
        keep.push("age");
    }
    let Ok(extracted) = sd.extract(&keep) else {
        return;
    };
    assert!(!extracted.has_key_binding(), "extract() kept the key binding");
    for d in extracted.disclosures() {
        assert!(d.name().is_some_and(|n| keep.contains(&n)), "extract() kept an unasked disclosure");
        assert!(sd.disclosures().contains(d), "extract() invented a disclosure");
    }
    let ex_text = extracted.serialize();
    let ex_again = SdJwt::parse(&ex_text)
        .unwrap_or_else(|e| panic!("extracted serialize() does not parse ({e}): {ex_text}"));
    assert_eq!(ex_again, extracted);
    if let Ok(v) = &plain {
        let ve = ces::verify(&extracted, &VerifyPolicy::new(issuer_public(), NOW))
            .unwrap_or_else(|e| panic!("extraction of a verified SD-JWT does not verify: {e}"));
        assert!(!ve.key_bound());
        for (name, value) in ve.parts() {
            assert_eq!(v.parts().get(name), Some(value), "extraction changed part {name}");
        }
        for c in v.ceas() {
            assert!(ve.parts().contains_key(c), "extraction lost CEAS part {c}");
        }
    }
});
