//! What someone who sees every handshake message, but holds no key, learns about the patient
//! (DESIGN section 8; SECURITY.md, "The handshake's properties"). The observer takes each of
//! the four messages (request, M1, M2, M3) apart as far as it can without keys: every JSON
//! member name and value, every base64url segment (split at the separators JOSE and SD-JWT
//! use) decoded, recursively; and searches all of it for anything that names the patient:
//! its ID (the thumbprint, as text and as raw bytes), its `kid`s, and its public keys (the JWK
//! `x`, `y` and `n` values, base64url and raw, and the SEC1 point). A control shows the
//! search finds these marks where they are. The lengths of the messages are compared across
//! patients, and across records of nearly equal size.
#![allow(clippy::unwrap_used)] // tests and benches fail loudly on a broken fixture

mod common;

use common::{NOW, doctor, insurer, patient};
use emrshare_core::ces::{self, IssueOptions, SdJwt};
use emrshare_core::handshake::{
    AnsweredRequests, HandshakeConfig, PatientStart, RequesterStart, SharedRecord,
};
use emrshare_core::jwe::Envelope;
use emrshare_core::keys::RsaBits;
use emrshare_core::ledger::testkit::Registry;
use emrshare_core::ledger::tx::Role;
use emrshare_core::record::{BPDS_SCHEMA, Ceas, Record, new_record_id};
use emrshare_core::{PrivateKeySet, b64};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::OnceLock;

/// A second patient, with keys of the same sizes as the first.
fn other_patient() -> &'static PrivateKeySet {
    static CELL: OnceLock<PrivateKeySet> = OnceLock::new();
    CELL.get_or_init(|| PrivateKeySet::generate(None, RsaBits::B2048))
}

fn registry() -> Registry {
    Registry::new()
        .with(doctor(), Role::Hospital)
        .with(patient(), Role::Patient)
        .with(other_patient(), Role::Patient)
        .with(insurer(), Role::Insurer)
}

/// A BPDS record for `holder` whose prescription has `extra` more characters.
fn record_for(holder: &PrivateKeySet, extra: usize) -> SdJwt {
    let mut parts = Record::sample_bpds().parts().clone();
    parts["prescription"] = json!([{"drug": "salbutamol", "dose": "100 ug", "when": format!("as needed{}", "!".repeat(extra))}]);
    let record = Record::new(BPDS_SCHEMA, &new_record_id(), parts).unwrap();
    let options = IssueOptions {
        issued_at: NOW - 60,
        decoys: 2,
    };
    ces::issue(
        doctor(),
        &holder.public(),
        &record,
        &Ceas::default_for(&record),
        options,
    )
    .unwrap()
}

struct Wire {
    request: Vec<u8>,
    m1: Vec<u8>,
    m2: Vec<u8>,
    m3: Vec<u8>,
    shared: SharedRecord,
}

impl Wire {
    fn messages(&self) -> [(&'static str, &[u8]); 4] {
        [
            ("request", &self.request),
            ("M1", &self.m1),
            ("M2", &self.m2),
            ("M3", &self.m3),
        ]
    }
}

/// One honest handshake between the insurer and `holder`, sharing `record`.
fn handshake(reg: &Registry, holder: &PrivateKeySet, record: &SdJwt) -> Wire {
    let config = HandshakeConfig::default();
    let parts = ["examination", "prescription"];
    let (a, request) = RequesterStart::new(config)
        .send_request(insurer(), "claim 2026-0042", &parts, NOW)
        .unwrap();
    let p = PatientStart::new(config);
    let mut answered = AnsweredRequests::default();
    let read = p.read_request(&request, NOW).unwrap();
    let requester = reg.entry(read.requester());
    let verified = read.verify_requester(&requester, &answered, NOW).unwrap();
    let (p, m1) = p.send_m1(verified, &mut answered, holder, NOW).unwrap();
    let a = a.receive_m1(&m1, insurer(), NOW).unwrap();
    let patient_entry = reg.entry(a.patient());
    let (a, m2) = a.verify_patient(&patient_entry, insurer(), NOW).unwrap();
    let m3 = p
        .receive_m2(&m2, holder, NOW)
        .unwrap()
        .send_record(record, &parts, Some(&[7u8; 64]), holder, NOW)
        .unwrap();
    let a = a.receive_m3(&m3).unwrap();
    let issuer = reg.entry(a.issuer());
    let shared = a.verify_record(&issuer, &issuer, NOW).unwrap();
    Wire {
        request,
        m1,
        m2,
        m3,
        shared,
    }
}

/// Every byte string an observer derives from `message` without keys: the message itself,
/// every JSON member name and value (recursively), and every base64url segment decoded,
/// recursively (segments are split at `.`, `~` and the JSON punctuation).
fn observable(message: &[u8]) -> Vec<Vec<u8>> {
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut queue = vec![message.to_vec()];
    while let Some(blob) = queue.pop() {
        if !seen.insert(blob.clone()) {
            continue;
        }
        let Ok(text) = std::str::from_utf8(&blob) else {
            continue;
        };
        if let Ok(value) = serde_json::from_str::<Value>(text) {
            json_strings(&value, &mut queue);
        }
        let separators = |c: char| ".~\"{}[],: \n".contains(c);
        for segment in text.split(separators).filter(|s| s.len() >= 2) {
            queue.push(segment.as_bytes().to_vec());
            if let Ok(decoded) = b64::decode(segment) {
                queue.push(decoded);
            }
        }
    }
    seen.into_iter().collect()
}

fn json_strings(value: &Value, out: &mut Vec<Vec<u8>>) {
    match value {
        Value::String(s) => out.push(s.as_bytes().to_vec()),
        Value::Number(n) => out.push(n.to_string().into_bytes()),
        Value::Array(items) => items.iter().for_each(|v| json_strings(v, out)),
        Value::Object(members) => {
            for (name, v) in members {
                out.push(name.as_bytes().to_vec());
                json_strings(v, out);
            }
        }
        _ => {}
    }
}

/// What would name `party`, each with a label: ID and thumbprint, kids, public key values.
fn marks_of(party: &PrivateKeySet) -> Vec<(String, Vec<u8>)> {
    let public = party.public();
    let signing = public.signing.to_jwk(None);
    let encryption = public.encryption.to_jwk(None);
    let id = public.id.as_str();
    let mut marks = vec![
        ("ID".to_owned(), id.as_bytes().to_vec()),
        (
            "signing kid".to_owned(),
            public.id.signing_kid().into_bytes(),
        ),
        (
            "encryption kid".to_owned(),
            public.id.encryption_kid().into_bytes(),
        ),
        (
            "SEC1 point".to_owned(),
            public.signing.sec1_uncompressed().to_vec(),
        ),
    ];
    // A patient's ID is its thumbprint, base64url: its raw bytes would name it too.
    if let Ok(thumbprint) = b64::decode(id) {
        marks.push(("thumbprint, raw".to_owned(), thumbprint));
    }
    for (name, value) in [
        ("x", signing.x.clone().unwrap()),
        ("y", signing.y.clone().unwrap()),
        ("n", encryption.n.clone().unwrap()),
    ] {
        marks.push((format!("JWK {name}, raw"), b64::decode(&value).unwrap()));
        marks.push((format!("JWK {name}"), value.into_bytes()));
    }
    marks
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The marks of `party` found anywhere an observer can look in `message`.
fn found_in(message: &[u8], party: &PrivateKeySet) -> Vec<String> {
    let observed = observable(message);
    marks_of(party)
        .into_iter()
        .filter(|(_, mark)| observed.iter().any(|blob| contains(blob, mark)))
        .map(|(label, _)| label)
        .collect()
}

#[test]
fn the_observer_finds_the_marks_where_they_are() {
    // The patient's public JWK set names it in every way listed but the SEC1 point, which
    // the point itself shows.
    let published = patient().public().to_json();
    let found = found_in(published.as_bytes(), patient());
    assert_eq!(found.len(), marks_of(patient()).len() - 1, "{found:?}");
    assert!(!found.contains(&"SEC1 point".to_owned()));
    let point = b64::encode(patient().public().signing.sec1_uncompressed());
    assert!(found_in(point.as_bytes(), patient()).contains(&"SEC1 point".to_owned()));
    // Base64url inside JSON inside base64url (a JWS over the public set) is found too.
    let nested =
        b64::encode(serde_json::to_vec(&json!({"a": b64::encode(published.as_bytes())})).unwrap());
    let found = found_in(format!("x.{nested}.y").as_bytes(), patient());
    assert!(found.contains(&"JWK n, raw".to_owned()), "{found:?}");
    assert!(found.contains(&"thumbprint, raw".to_owned()), "{found:?}");
    // With the requester's key, M1 shows who the patient is: the names are in there, sealed.
    let reg = registry();
    let wire = handshake(&reg, patient(), &record_for(patient(), 0));
    let jwe: Value = serde_json::from_slice(&wire.m1).unwrap();
    let opened = Envelope::parse(jwe["jwe"].as_str().unwrap().as_bytes())
        .unwrap()
        .open(insurer())
        .unwrap();
    let found = found_in(&opened, patient());
    assert!(found.contains(&"ID".to_owned()), "{found:?}");
    assert!(found.contains(&"signing kid".to_owned()), "{found:?}");
}

#[test]
fn no_message_of_a_handshake_names_the_patient_or_carries_its_keys() {
    let reg = registry();
    let wire = handshake(&reg, patient(), &record_for(patient(), 0));
    assert_eq!(wire.shared.patient(), &patient().id);
    for (name, message) in wire.messages() {
        let found = found_in(message, patient());
        assert!(found.is_empty(), "{name} shows the patient's {found:?}");
    }
}

#[test]
fn what_the_requester_sends_in_clear_names_only_the_requester() {
    let reg = registry();
    let wire = handshake(&reg, patient(), &record_for(patient(), 0));
    // The request must name the requester (the patient looks it up before any key exists).
    assert!(found_in(&wire.request, insurer()).contains(&"ID".to_owned()));
    // M1 and M3 go to the requester without naming it (it tries its own key), and M2 is
    // opened by the patient only.
    for (name, message) in [("M1", &wire.m1), ("M2", &wire.m2), ("M3", &wire.m3)] {
        let found = found_in(message, insurer());
        assert!(found.is_empty(), "{name} shows the requester's {found:?}");
    }
}

#[test]
fn message_lengths_do_not_tell_two_patients_apart() {
    let reg = registry();
    let first = handshake(&reg, patient(), &record_for(patient(), 0));
    let second = handshake(&reg, other_patient(), &record_for(other_patient(), 0));
    assert_ne!(first.shared.patient(), second.shared.patient());
    for ((name, a), (_, b)) in first.messages().into_iter().zip(second.messages()) {
        assert_eq!(a.len(), b.len(), "{name}");
    }
    // Nor does M1's or M2's JSON or JWE shape: the same members, headers and segment sizes.
    for (a, b) in [(&first.m1, &second.m1), (&first.m2, &second.m2)] {
        let (a, b): (Value, Value) = (
            serde_json::from_slice(a).unwrap(),
            serde_json::from_slice(b).unwrap(),
        );
        let (a, b) = (a["jwe"].as_str().unwrap(), b["jwe"].as_str().unwrap());
        assert_eq!(
            a.split('.').next(),
            b.split('.').next(),
            "same protected header"
        );
        let lengths = |jwe: &str| jwe.split('.').map(str::len).collect::<Vec<_>>();
        assert_eq!(lengths(a), lengths(b));
    }
}

#[test]
fn m3_is_padded_so_records_of_nearly_equal_size_look_alike() {
    let reg = registry();
    // Twelve records, 0 to 99 characters longer (the presentation grows by 4/3 of that):
    // unpadded, twelve lengths; padded (Padme: 64-byte steps at this size), a few.
    let mut distinct = HashSet::new();
    for extra in (0..100).step_by(9) {
        let wire = handshake(&reg, patient(), &record_for(patient(), extra));
        distinct.insert(wire.m3.len());
    }
    assert!(distinct.len() <= 4, "M3 lengths: {distinct:?}");
}

/// The lengths that remain visible, for SECURITY.md: the wrapped key in M2 is as long as the
/// patient's RSA modulus. This records the fact; a patient with another key size is in
/// another (large) class.
#[test]
fn m2_shows_the_size_of_the_patients_rsa_key_and_nothing_else_of_it() {
    let reg = registry();
    let wire = handshake(&reg, patient(), &record_for(patient(), 0));
    let m2: Value = serde_json::from_slice(&wire.m2).unwrap();
    let jwe = m2["jwe"].as_str().unwrap();
    let encrypted_key = jwe.split('.').nth(1).unwrap();
    assert_eq!(b64::decode(encrypted_key).unwrap().len(), 2048 / 8);
}
