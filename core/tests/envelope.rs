//! Envelope (JWE) behaviour through the public API: serializations, several recipients,
//! adding a recipient, and that tampering or foreign input never opens and never panics.
#![allow(clippy::unwrap_used)] // tests and benches fail loudly on a broken fixture

mod common;

use common::{doctor, insurer, patient, stranger};
use emrshare_core::b64;
use emrshare_core::jwe::{Envelope, JweError, Recipient};
use proptest::prelude::*;

fn sealed_to_patient(plaintext: &[u8]) -> Envelope {
    Envelope::seal_to(plaintext, &[&patient().public()], Some("text/plain")).unwrap()
}

#[test]
fn one_recipient_is_compact_and_roundtrips() {
    let env = sealed_to_patient(b"hello");
    let compact = env.to_compact().unwrap();
    assert_eq!(compact.split('.').count(), 5);
    let parsed = Envelope::parse(compact.as_bytes()).unwrap();
    assert_eq!(parsed, env);
    assert_eq!(&parsed.open(patient()).unwrap()[..], b"hello");
    assert_eq!(parsed.content_type(), Some("text/plain"));
    assert_eq!(
        parsed.recipient_kids(),
        vec![Some(patient().id.encryption_kid())]
    );
}

#[test]
fn an_unnamed_envelope_has_no_kid_and_opens_only_for_its_key() {
    let env = Envelope::seal_unnamed(b"hello", &patient().public().encryption, Some("x")).unwrap();
    let compact = env.to_compact().unwrap();
    let parsed = Envelope::parse(compact.as_bytes()).unwrap();
    assert_eq!(parsed.recipient_kids(), vec![None]);
    let mut names: Vec<&str> = parsed.protected_header_names().collect();
    names.sort_unstable();
    assert_eq!(names, ["alg", "cty", "enc"]);
    let header = b64::decode(compact.split('.').next().unwrap()).unwrap();
    let patient_id = patient().id.as_str().as_bytes();
    assert!(!header.windows(patient_id.len()).any(|w| w == patient_id));
    assert_eq!(&parsed.open(patient()).unwrap()[..], b"hello");
    assert!(matches!(parsed.open(insurer()), Err(JweError::Decrypt)));
}

#[test]
fn several_recipients_use_general_json_and_each_opens() {
    let env =
        Envelope::seal_to(b"shared", &[&patient().public(), &insurer().public()], None).unwrap();
    assert!(matches!(env.to_compact(), Err(JweError::NotCompact)));
    let json = env.serialize();
    assert!(json.starts_with('{'));
    let parsed = Envelope::parse(json.as_bytes()).unwrap();
    assert_eq!(&parsed.open(patient()).unwrap()[..], b"shared");
    assert_eq!(&parsed.open(insurer()).unwrap()[..], b"shared");
    assert!(matches!(parsed.open(doctor()), Err(JweError::Decrypt)));
}

#[test]
fn a_content_key_opens_without_rsa_and_a_wrong_one_fails() {
    let env = sealed_to_patient(b"imaging report");
    let key = env.unwrap_content_key(patient());
    assert_eq!(
        &env.open_with_content_key(&key).unwrap()[..],
        b"imaging report"
    );
    assert_eq!(format!("{key:?}"), "ContentKey([redacted])");
    let wrong = env.unwrap_content_key(insurer());
    assert!(matches!(
        env.open_with_content_key(&wrong),
        Err(JweError::Decrypt)
    ));
}

#[test]
fn multi_megabyte_content_roundtrips() {
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 5).map(|i| (i % 253) as u8).collect();
    let env = sealed_to_patient(&big);
    let reparsed = Envelope::parse(env.serialize().as_bytes()).unwrap();
    assert_eq!(&reparsed.open(patient()).unwrap()[..], &big[..]);
}

#[test]
fn empty_plaintext_roundtrips() {
    assert!(sealed_to_patient(b"").open(patient()).unwrap().is_empty());
}

#[test]
fn add_recipient_keeps_the_content_ciphertext() {
    let mut env = sealed_to_patient(b"record body");
    let ciphertext_before = env
        .to_compact()
        .unwrap()
        .split('.')
        .nth(3)
        .unwrap()
        .to_owned();
    let insurer_kid = insurer().id.encryption_kid();
    env.add_recipient(
        patient(),
        Recipient {
            kid: &insurer_kid,
            key: &insurer().public().encryption,
        },
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&env.to_json()).unwrap();
    assert_eq!(json["ciphertext"], ciphertext_before.as_str());
    assert_eq!(json["recipients"].as_array().unwrap().len(), 2);
    let reparsed = Envelope::parse(env.serialize().as_bytes()).unwrap();
    assert_eq!(&reparsed.open(insurer()).unwrap()[..], b"record body");
    assert_eq!(&reparsed.open(patient()).unwrap()[..], b"record body");
    // A third reader on an already multi-recipient envelope.
    let kid = stranger().id.encryption_kid();
    let mut again = reparsed.clone();
    again
        .add_recipient(
            insurer(),
            Recipient {
                kid: &kid,
                key: &stranger().public().encryption,
            },
        )
        .unwrap();
    assert_eq!(&again.open(stranger()).unwrap()[..], b"record body");
}

/// Found by the jwe_json fuzz target: `alg` (or `kid`) in a shared header must not be
/// duplicated in the new recipient's header.
#[test]
fn add_recipient_to_envelopes_with_shared_headers() {
    let env = Envelope::seal_to(b"body", &[&patient().public(), &doctor().public()], None).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&env.to_json()).unwrap();
    for r in json["recipients"].as_array_mut().unwrap() {
        r["header"].as_object_mut().unwrap().remove("alg");
    }
    json["unprotected"] = serde_json::json!({"alg": "RSA-OAEP-256", "x-note": "shared"});
    let flattened = Envelope::seal_to(b"body", &[&patient().public()], None).unwrap();
    let mut flat: serde_json::Value = serde_json::from_str(&flattened.to_json()).unwrap();
    let recipient = flat["recipients"][0].clone();
    flat.as_object_mut().unwrap().remove("recipients");
    flat["encrypted_key"] = recipient["encrypted_key"].clone();
    flat["unprotected"] = serde_json::json!({"x-note": "shared"});
    for input in [json.to_string(), flat.to_string()] {
        let mut env = Envelope::parse(input.as_bytes()).unwrap();
        let kid = insurer().id.encryption_kid();
        env.add_recipient(
            patient(),
            Recipient {
                kid: &kid,
                key: &insurer().public().encryption,
            },
        )
        .unwrap();
        let again = Envelope::parse(env.serialize().as_bytes()).unwrap();
        assert_eq!(&again.open(insurer()).unwrap()[..], b"body");
        assert_eq!(&again.open(patient()).unwrap()[..], b"body");
    }
}

#[test]
fn only_a_reader_can_add_recipients() {
    let mut env = sealed_to_patient(b"x");
    let kid = insurer().id.encryption_kid();
    let result = env.add_recipient(
        doctor(),
        Recipient {
            kid: &kid,
            key: &insurer().public().encryption,
        },
    );
    assert!(matches!(result, Err(JweError::Decrypt)));
}

#[test]
fn wrong_key_and_tampering_fail_alike() {
    let compact = sealed_to_patient(b"secret").to_compact().unwrap();
    let wrong_key = Envelope::parse(compact.as_bytes())
        .unwrap()
        .open(insurer())
        .unwrap_err();
    let mut parts: Vec<String> = compact.split('.').map(str::to_owned).collect();
    let mut ct = b64::decode(&parts[3]).unwrap();
    ct[0] ^= 1;
    parts[3] = b64::encode(ct);
    let tampered = Envelope::parse(parts.join(".").as_bytes())
        .unwrap()
        .open(patient())
        .unwrap_err();
    assert_eq!(wrong_key.to_string(), tampered.to_string());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn seal_open_roundtrip(plaintext in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let env = sealed_to_patient(&plaintext);
        let reparsed = Envelope::parse(env.serialize().as_bytes()).unwrap();
        prop_assert_eq!(&reparsed.open(patient()).unwrap()[..], &plaintext[..]);
    }

    /// Any single-byte change to a compact envelope is refused at parse or open time.
    #[test]
    fn any_byte_change_is_refused(index in any::<prop::sample::Index>(), replacement in any::<u8>()) {
        let compact = sealed_to_patient(b"lab results").to_compact().unwrap().into_bytes();
        let i = index.index(compact.len());
        prop_assume!(compact[i] != replacement);
        let mut bad = compact.clone();
        bad[i] = replacement;
        let opened = Envelope::parse(&bad).and_then(|e| e.open(patient()));
        prop_assert!(opened.is_err());
    }

    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Envelope::parse(&bytes);
    }

    #[test]
    fn parse_never_panics_on_dotted_base64(parts in proptest::collection::vec("[A-Za-z0-9_-]{0,40}", 0..8)) {
        let _ = Envelope::parse(parts.join(".").as_bytes());
    }
}
