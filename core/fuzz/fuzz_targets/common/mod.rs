//! Fixtures and checks shared by the fuzz targets (each target includes this with `mod common;`).
//!
//! The key sets under `fixtures/` are test-only keys written by `examples/gen_seeds.rs`
//! together with the seeds: seeds sealed or signed with them open and verify inside the
//! targets, which lets the fuzzer reach the success paths (decryption, disclosure unfolding,
//! key binding) instead of stopping at the first signature or MAC check.
#![allow(dead_code)]

mod consts;
#[allow(unused_imports)]
pub use consts::*;

use emrshare_core::jwe::{Envelope, Recipient};
use emrshare_core::{PrivateKeySet, PublicKeySet};
use std::sync::OnceLock;

fn load(json: &[u8], what: &str) -> PrivateKeySet {
    PrivateKeySet::from_json(json).unwrap_or_else(|e| panic!("fixture {what}: {e}"))
}

/// The fixed key set every envelope is opened with (the seeds are sealed to it).
pub fn jwe_keys() -> &'static PrivateKeySet {
    static K: OnceLock<PrivateKeySet> = OnceLock::new();
    K.get_or_init(|| load(include_bytes!("../../fixtures/jwe_recipient.json"), "jwe_recipient"))
}

/// A second party, the new reader in the add_recipient checks.
pub fn jwe_other() -> &'static PrivateKeySet {
    static K: OnceLock<PrivateKeySet> = OnceLock::new();
    K.get_or_init(|| load(include_bytes!("../../fixtures/jwe_other.json"), "jwe_other"))
}

/// The doctor that signed the SD-JWT seeds.
pub fn issuer() -> &'static PrivateKeySet {
    static K: OnceLock<PrivateKeySet> = OnceLock::new();
    K.get_or_init(|| load(include_bytes!("../../fixtures/issuer.json"), "issuer"))
}

/// The patient the SD-JWT seeds were issued to (and who signed their key-binding JWT).
pub fn holder() -> &'static PrivateKeySet {
    static K: OnceLock<PrivateKeySet> = OnceLock::new();
    K.get_or_init(|| load(include_bytes!("../../fixtures/holder.json"), "holder"))
}

pub fn issuer_public() -> &'static PublicKeySet {
    static K: OnceLock<PublicKeySet> = OnceLock::new();
    K.get_or_init(|| issuer().public())
}

pub fn holder_public() -> &'static PublicKeySet {
    static K: OnceLock<PublicKeySet> = OnceLock::new();
    K.get_or_init(|| holder().public())
}

/// The five parts of the committed compact envelope (sealed to [`jwe_keys`]), for the
/// structured target.
pub fn sealed_compact_parts() -> [&'static str; 5] {
    let text = include_str!("../../fixtures/sealed_compact.jwe").trim();
    let parts: Vec<&str> = text.split('.').collect();
    parts.try_into().expect("fixture is a five-part compact JWE")
}

/// Parses `data` as an envelope; if it parses, opens it with the fixture keys, checks that
/// `serialize()` and `to_json()` re-parse to an equal envelope (and re-open identically), and
/// for envelopes that open, that granting a new reader keeps the envelope parseable and
/// openable by both. Returns the plaintext if the envelope opened.
pub fn check_envelope(data: &[u8]) -> Option<Vec<u8>> {
    let env = Envelope::parse(data).ok()?;
    let kids = env.recipient_kids();
    assert!(!kids.is_empty(), "parsed envelope without recipients");
    let _ = env.content_type();
    let opened = env.open(jwe_keys()).ok().map(|p| p.to_vec());

    let text = env.serialize();
    let again = Envelope::parse(text.as_bytes())
        .unwrap_or_else(|e| panic!("serialize() output does not parse ({e}): {text}"));
    assert_eq!(again, env, "parse(serialize(e)) != e");
    match env.to_compact() {
        Ok(compact) => assert_eq!(compact, text, "serialize() must be compact when possible"),
        Err(_) => assert_eq!(env.to_json(), text),
    }
    let json = env.to_json();
    let again_json = Envelope::parse(json.as_bytes())
        .unwrap_or_else(|e| panic!("to_json() output does not parse ({e}): {json}"));
    assert_eq!(again_json, env, "parse(to_json(e)) != e");

    if let Some(plain) = &opened {
        let re = again.open(jwe_keys()).expect("re-parsed envelope no longer opens");
        assert_eq!(&re.to_vec(), plain, "re-parsed envelope opens to other bytes");
        check_add_recipient(&env, plain);
    }
    opened
}

/// `add_recipient` on an envelope the fixture key opens: if it succeeds, the result must
/// serialize, re-parse and open to the same plaintext for the holder and the new reader.
fn check_add_recipient(env: &Envelope, plain: &[u8]) {
    let other = jwe_other();
    let kid = other.id.encryption_kid();
    let new = Recipient { kid: &kid, key: other.decryption.encryption_key() };
    let mut granted = env.clone();
    if granted.add_recipient(jwe_keys(), new).is_err() {
        return;
    }
    let text = granted.serialize();
    let again = Envelope::parse(text.as_bytes()).unwrap_or_else(|e| {
        panic!("add_recipient() succeeded but its result does not parse ({e}): {text}")
    });
    assert_eq!(again, granted, "parse(serialize(add_recipient(e))) differs");
    for (who, keys) in [("holder", jwe_keys()), ("new recipient", other)] {
        let re = again
            .open(keys)
            .unwrap_or_else(|e| panic!("after add_recipient the {who} cannot open ({e}): {text}"));
        assert_eq!(re.to_vec(), plain, "after add_recipient the {who} reads other bytes");
    }
}
