//! The handshake of DESIGN section 8 through the public API, against a real registry
//! (registrations in a ledger state, a certified header, a light client). A
//! (`insurer:acme-health`) asks P (a patient) for a record that a doctor
//! (`hospital:st-marys`) signed. Most cases are attacks: replays, reflections, messages out of
//! order, key substitution, a dishonest registered party, stale or tampered messages, revoked
//! registry entries, requests forged, re-signed, tampered with, replayed or stale. Crafted
//! messages are made with the public JOSE modules, the way an
//! attacker (or a broken peer) holding its own keys would make them; each crafting helper is
//! first shown to produce a message that is accepted, so a refusal means what it says.
#![allow(clippy::unwrap_used)] // tests and benches fail loudly on a broken fixture

mod common;

use common::{NOW, doctor, insurer, patient, stranger};
use emrshare_core::ces::{self, CesError, IssueOptions, SdJwt};
use emrshare_core::handshake::{
    AnsweredRequests, HandshakeConfig, HandshakeError, M1_TYP, M2_TYP, M3_TYP,
    MAX_KEY_EXCHANGE_BYTES, MAX_M3_BYTES, MAX_REQUEST_BYTES, MessageKind, PatientAwaitingM2,
    PatientStart, REQUEST_TYP, RequesterAwaitingM1, RequesterAwaitingM3, RequesterStart,
    SharedRecord,
};
use emrshare_core::jwe::Envelope;
use emrshare_core::jws;
use emrshare_core::keys::{PublicKeySet, SigningKey};
use emrshare_core::ledger::testkit::Registry;
use emrshare_core::ledger::tx::Role;
use emrshare_core::record::{Ceas, Record};
use emrshare_core::{PrivateKeySet, b64, content_hash};
use serde_json::{Value, json};
use std::sync::OnceLock;

use HandshakeError as E;
use MessageKind::{M1, M2, M3, Request};

const SKEW: u64 = 300;
const PURPOSE: &str = "claim 2026-0042";
const ASKED: [&str; 2] = ["examination", "prescription"];
const GRANT: &[u8] = &[0x42; 64];

fn config() -> HandshakeConfig {
    HandshakeConfig { max_skew: SKEW }
}

fn registry() -> Registry {
    Registry::new()
        .with(doctor(), Role::Hospital)
        .with(patient(), Role::Patient)
        .with(insurer(), Role::Insurer)
        .with(stranger(), Role::Researcher)
}

fn issue_by(issuer: &PrivateKeySet) -> SdJwt {
    let record = Record::sample_bpds();
    let ceas = Ceas::default_for(&record);
    let options = IssueOptions {
        issued_at: NOW - 86_400,
        decoys: 2,
    };
    ces::issue(issuer, &patient().public(), &record, &ceas, options).unwrap()
}

/// The doctor's record for the patient: BPDS seven parts, CEAS {gender, age, history}.
fn record() -> &'static SdJwt {
    static RECORD: OnceLock<SdJwt> = OnceLock::new();
    RECORD.get_or_init(|| issue_by(doctor()))
}

// --- The honest steps, each as its side runs it -----------------------------------------

fn send_request(now: u64) -> (RequesterAwaitingM1, Vec<u8>) {
    RequesterStart::new(config())
        .send_request(insurer(), PURPOSE, &ASKED, now)
        .unwrap()
}

/// P reads the request, checks it against A's registry entry and the requests it answered,
/// answers with M1.
fn answer_request_with(
    reg: &Registry,
    answered: &mut AnsweredRequests,
    request: &[u8],
    now: u64,
) -> Result<(PatientAwaitingM2, Vec<u8>), HandshakeError> {
    let start = PatientStart::new(config());
    let request = start.read_request(request, now)?;
    // A damaged request may name no registered party: the lookup finds nothing, and the
    // only entry at hand (A's) is not the one named.
    let entry = reg
        .find(request.requester())
        .unwrap_or_else(|| reg.entry(&insurer().id));
    let verified = request.verify_requester(&entry, answered, now)?;
    start.send_m1(verified, answered, patient(), now)
}

/// As [`answer_request_with`], by a patient that has answered nothing yet.
fn answer_request(
    reg: &Registry,
    request: &[u8],
    now: u64,
) -> Result<(PatientAwaitingM2, Vec<u8>), HandshakeError> {
    answer_request_with(reg, &mut AnsweredRequests::default(), request, now)
}

/// A opens M1, looks the patient up, answers with M2.
fn answer_m1(
    reg: &Registry,
    a: RequesterAwaitingM1,
    m1: &[u8],
    now: u64,
) -> Result<(RequesterAwaitingM3, Vec<u8>), HandshakeError> {
    let a = a.receive_m1(m1, insurer(), now)?;
    let entry = reg.entry(a.patient());
    a.verify_patient(&entry, insurer(), now)
}

/// P checks M2 and sends the record.
fn answer_m2(p: PatientAwaitingM2, m2: &[u8], now: u64) -> Result<Vec<u8>, HandshakeError> {
    p.receive_m2(m2, patient(), now)?
        .send_record(record(), &ASKED, Some(GRANT), patient(), now)
}

/// A opens M3, looks the doctor up, verifies the record.
fn accept_m3(
    reg: &Registry,
    a: RequesterAwaitingM3,
    m3: &[u8],
    now: u64,
) -> Result<SharedRecord, HandshakeError> {
    let a = a.receive_m3(m3)?;
    let entry = reg.entry(a.issuer());
    let hospital = entry
        .affiliation()
        .map_or_else(|| entry.clone(), |h| reg.entry(h));
    a.verify_record(&entry, &hospital, now)
}

fn until_m1(reg: &Registry) -> (RequesterAwaitingM1, PatientAwaitingM2, Vec<u8>, Vec<u8>) {
    let (a, request) = send_request(NOW);
    let (p, m1) = answer_request(reg, &request, NOW).unwrap();
    (a, p, request, m1)
}

fn until_m2(reg: &Registry) -> (RequesterAwaitingM3, PatientAwaitingM2, Vec<u8>) {
    let (a, p, _, m1) = until_m1(reg);
    let (a, m2) = answer_m1(reg, a, &m1, NOW).unwrap();
    (a, p, m2)
}

fn until_m3(reg: &Registry) -> (RequesterAwaitingM3, Vec<u8>) {
    let (a, p, m2) = until_m2(reg);
    (a, answer_m2(p, &m2, NOW).unwrap())
}

/// One honest run, message by message.
struct Run {
    request: Vec<u8>,
    m1: Vec<u8>,
    m2: Vec<u8>,
    m3: Vec<u8>,
    shared: SharedRecord,
}

fn honest_run(reg: &Registry) -> Run {
    let (a, p, request, m1) = until_m1(reg);
    let (a, m2) = answer_m1(reg, a, &m1, NOW).unwrap();
    let m3 = answer_m2(p, &m2, NOW).unwrap();
    let shared = accept_m3(reg, a, &m3, NOW).unwrap();
    Run {
        request,
        m1,
        m2,
        m3,
        shared,
    }
}

// --- Crafting, as a party holding its own keys would --------------------------------------

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn bytes_of(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

/// Opens M1 or M2 with the addressee's keys: the signed JWS inside, and its payload.
fn open_inner(message: &[u8], keys: &PrivateKeySet) -> (String, Value) {
    let jwe = json_of(message)["jwe"].as_str().unwrap().to_owned();
    let signed = Envelope::parse(jwe.as_bytes()).unwrap().open(keys).unwrap();
    let signed = String::from_utf8(signed.to_vec()).unwrap();
    let payload = jws::unverified_payload(&signed).unwrap();
    (signed, payload)
}

/// Seals a signed JWS to `recipient` as a message of format `typ`, naming no one.
fn seal_signed(typ: &str, signed: &str, recipient: &PublicKeySet) -> Vec<u8> {
    let jwe = Envelope::seal_unnamed(signed.as_bytes(), &recipient.encryption, Some(typ))
        .unwrap()
        .to_compact()
        .unwrap();
    bytes_of(&json!({"typ": typ, "jwe": jwe}))
}

fn sign_and_seal(
    typ: &str,
    payload: &Value,
    signer: &PrivateKeySet,
    recipient: &PublicKeySet,
) -> Vec<u8> {
    let signed = jws::sign(&signer.signing, &jws::Header::es256(typ, None), payload);
    seal_signed(typ, &signed, recipient)
}

/// The claims of a request, as the public JWS module reads them.
fn request_claims(request: &[u8]) -> Value {
    jws::unverified_payload(std::str::from_utf8(request).unwrap()).unwrap()
}

/// A request with `edit`ed claims (starting from A's honest `request`), signed by `signer`
/// with a protected header naming A's key, as a forger would make it.
fn crafted_request(
    request: &[u8],
    signer: &PrivateKeySet,
    edit: impl FnOnce(&mut Value),
) -> Vec<u8> {
    let mut claims = request_claims(request);
    edit(&mut claims);
    let header = jws::Header::es256(REQUEST_TYP, Some(insurer().id.signing_kid()));
    jws::sign(&signer.signing, &header, &claims).into_bytes()
}

/// `request` with its payload segment replaced by `edit`ed claims, signature kept.
fn request_with_claims(request: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let text = std::str::from_utf8(request).unwrap();
    let segments: Vec<&str> = text.split('.').collect();
    let mut claims = request_claims(request);
    edit(&mut claims);
    let payload = b64::encode(bytes_of(&claims));
    format!("{}.{payload}.{}", segments[0], segments[2]).into_bytes()
}

/// P reads and verifies a request against A's entry, without answering it.
fn verify_request(
    reg: &Registry,
    answered: &AnsweredRequests,
    request: &[u8],
) -> Result<emrshare_core::handshake::VerifiedRequest, HandshakeError> {
    let start = PatientStart::new(config());
    let read = start.read_request(request, NOW)?;
    let entry = reg.entry(read.requester());
    read.verify_requester(&entry, answered, NOW)
}

/// A fresh valid P-256 point (an ECDSA public key is one).
fn some_point() -> String {
    b64::encode(SigningKey::generate().verifying_key().sec1_uncompressed())
}

/// An M1 for A's `request`, made from `edit`ed content, signed by `signer`, sealed to A.
fn crafted_m1(request: &[u8], signer: &PrivateKeySet, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut payload = json!({
        "id_p": patient().id.as_str(),
        "id_a": insurer().id.as_str(),
        "n_p": b64::encode([7u8; 32]),
        "e_p": some_point(),
        "time": NOW,
        "request_hash": b64::encode(content_hash(request)),
    });
    edit(&mut payload);
    sign_and_seal(M1_TYP, &payload, signer, &insurer().public())
}

/// An M2 answering `m1`, made from `edit`ed content, signed by `signer`, sealed to P.
fn crafted_m2(m1: &[u8], signer: &PrivateKeySet, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let (_, m1_content) = open_inner(m1, insurer());
    let mut payload = json!({
        "id_a": insurer().id.as_str(),
        "id_p": patient().id.as_str(),
        "n_a": b64::encode([9u8; 32]),
        "n_p": m1_content["n_p"],
        "e_a": some_point(),
        "time": NOW,
        "m1_hash": b64::encode(content_hash(m1)),
    });
    edit(&mut payload);
    sign_and_seal(M2_TYP, &payload, signer, &patient().public())
}

fn with(message: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut value = json_of(message);
    edit(&mut value);
    bytes_of(&value)
}

/// Positions spread over a message, first and last included.
fn positions(len: usize) -> impl Iterator<Item = usize> {
    (0..len).step_by(len / 40 + 1).chain([len - 1])
}

fn flipped(message: &[u8], at: usize) -> Vec<u8> {
    let mut out = message.to_vec();
    out[at] ^= 1;
    out
}

// --- What works ---------------------------------------------------------------------------

#[test]
fn a_full_handshake_shares_a_verified_key_bound_record() {
    let run = honest_run(&registry());
    let shared = &run.shared;
    assert_eq!(shared.patient(), &patient().id);
    assert_eq!(shared.requester(), &insurer().id);
    assert_eq!(shared.purpose(), PURPOSE);
    assert_eq!(shared.requested_parts(), ASKED);
    assert_eq!(shared.received_at(), NOW);
    assert_eq!(shared.content_key_grant(), Some(GRANT));
    let record = shared.record();
    assert_eq!(record.issuer(), &doctor().id);
    assert_eq!(record.patient(), patient().id.as_str());
    assert!(record.key_bound());
    let parts: Vec<&str> = record.parts().keys().map(String::as_str).collect();
    assert_eq!(
        parts,
        [
            "age",
            "examination",
            "gender",
            "medical_history",
            "prescription"
        ]
    );
    let debug = format!("{shared:?}");
    assert!(debug.contains("[redacted]") && !debug.contains(&b64::encode(GRANT)));
}

#[test]
fn the_patient_may_disclose_only_the_ceas_parts_and_grant_nothing() {
    let reg = registry();
    let (a, p, m2) = until_m2(&reg);
    let m3 = p
        .receive_m2(&m2, patient(), NOW)
        .unwrap()
        .send_record(record(), &[], None, patient(), NOW)
        .unwrap();
    let shared = accept_m3(&reg, a, &m3, NOW).unwrap();
    let parts: Vec<&str> = shared.record().parts().keys().map(String::as_str).collect();
    assert_eq!(parts, ["age", "gender", "medical_history"]);
    assert_eq!(shared.content_key_grant(), None);
}

#[test]
fn every_message_names_its_format_and_only_its_addressee_opens_it() {
    let reg = registry();
    let run = honest_run(&reg);
    for (message, typ) in [(&run.m1, M1_TYP), (&run.m2, M2_TYP), (&run.m3, M3_TYP)] {
        assert_eq!(json_of(message)["typ"], typ);
    }
    // The request is a compact JWS signed by A, public, naming its format in its header.
    let request = std::str::from_utf8(&run.request).unwrap();
    let header = json_of(&b64::decode(request.split('.').next().unwrap()).unwrap());
    assert_eq!(
        header,
        json!({"alg": "ES256", "typ": REQUEST_TYP, "kid": insurer().id.signing_kid()})
    );
    let claims = request_claims(&run.request);
    let mut members: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(members, ["iat", "iss", "jti", "purpose", "requested_parts"]);
    assert_eq!(
        b64::decode(claims["jti"].as_str().unwrap()).unwrap().len(),
        16
    );
    // M1 and M2 are JWE naming no recipient, whose authenticated content type repeats the
    // format.
    for (message, typ, addressee, other) in [
        (&run.m1, M1_TYP, insurer(), patient()),
        (&run.m2, M2_TYP, patient(), insurer()),
    ] {
        let jwe = json_of(message)["jwe"].as_str().unwrap().to_owned();
        let envelope = Envelope::parse(jwe.as_bytes()).unwrap();
        assert_eq!(envelope.content_type(), Some(typ));
        assert_eq!(envelope.recipient_kids(), vec![None]);
        assert!(envelope.open(addressee).is_ok());
        assert!(envelope.open(other).is_err());
        assert!(envelope.open(stranger()).is_err());
    }
    let m3 = json_of(&run.m3);
    assert_eq!(
        (&m3["direction"], &m3["seq"]),
        (&json!("patient-to-requester"), &json!(0))
    );
}

#[test]
fn messages_at_the_edges_of_the_time_window_are_accepted() {
    let reg = registry();
    let (a, request) = send_request(NOW);
    let (p, m1) = answer_request(&reg, &request, NOW + SKEW).unwrap();
    let (a, m2) = answer_m1(&reg, a, &m1, NOW + 2 * SKEW).unwrap();
    let m3 = answer_m2(p, &m2, NOW + SKEW).unwrap();
    accept_m3(&reg, a, &m3, NOW + 2 * SKEW).unwrap();
}

#[test]
fn each_handshake_has_its_own_session() {
    let reg = registry();
    let (first, second) = (honest_run(&reg), honest_run(&reg));
    assert_ne!(first.shared.session_id(), second.shared.session_id());
    assert_ne!(first.m3, second.m3);
}

#[test]
fn the_crafting_helpers_make_acceptable_messages() {
    let reg = registry();
    let (a, request) = send_request(NOW);
    let m1 = crafted_m1(&request, patient(), |_| {});
    answer_m1(&reg, a, &m1, NOW).unwrap();
    let (_, p, _, m1) = until_m1(&reg);
    p.receive_m2(&crafted_m2(&m1, insurer(), |_| {}), patient(), NOW)
        .unwrap();
}

// --- Replays -------------------------------------------------------------------------------

#[test]
fn m1_replayed_to_a_new_requester_state_is_refused() {
    let reg = registry();
    let run = honest_run(&reg);
    let (a, _) = send_request(NOW + 1);
    assert!(matches!(
        a.receive_m1(&run.m1, insurer(), NOW + 1),
        Err(E::Replayed(M1))
    ));
}

#[test]
fn m2_replayed_to_a_new_patient_state_is_refused() {
    let reg = registry();
    let run = honest_run(&reg);
    let (_, p, _, _) = until_m1(&reg);
    assert!(matches!(
        p.receive_m2(&run.m2, patient(), NOW),
        Err(E::Replayed(M2))
    ));
    // Even when the old request is replayed to a patient that forgot it answered it: M1 gets
    // a fresh nonce.
    let (p, _) = answer_request(&reg, &run.request, NOW).unwrap();
    assert!(matches!(
        p.receive_m2(&run.m2, patient(), NOW),
        Err(E::Replayed(M2))
    ));
}

#[test]
fn m3_of_another_session_does_not_open_under_this_sessions_key() {
    let reg = registry();
    let old = honest_run(&reg);
    let (a, _) = until_m3(&reg);
    assert!(matches!(a.receive_m3(&old.m3), Err(E::SessionKey(M3))));
}

// --- Reflections and order -----------------------------------------------------------------

#[test]
fn m1_reflected_to_the_patient_as_m2_is_refused() {
    let reg = registry();
    let (_, p, _, m1) = until_m1(&reg);
    assert!(matches!(
        p.receive_m2(&m1, patient(), NOW),
        Err(E::Reflected(M1))
    ));
    // Relabelled as M2, it does not open: P sealed it for A.
    let (_, p, _, m1) = until_m1(&reg);
    let relabelled = with(&m1, |v| v["typ"] = json!(M2_TYP));
    assert!(matches!(
        p.receive_m2(&relabelled, patient(), NOW),
        Err(E::Decrypt(M2))
    ));
}

#[test]
fn m2_reflected_to_the_requester_is_refused() {
    let reg = registry();
    let (a, _, m2) = until_m2(&reg);
    assert!(matches!(a.receive_m3(&m2), Err(E::Reflected(M2))));
}

#[test]
fn m3_reflected_is_refused() {
    let reg = registry();
    // Turned around: labelled as travelling from the requester to the patient.
    let (a, m3) = until_m3(&reg);
    let turned = with(&m3, |v| v["direction"] = json!("requester-to-patient"));
    assert!(matches!(a.receive_m3(&turned), Err(E::Reflected(M3))));
    // Sent back to a patient (who is waiting for an M2).
    let (_, p, _, _) = until_m1(&reg);
    assert!(matches!(
        p.receive_m2(&m3, patient(), NOW),
        Err(E::Reflected(M3))
    ));
}

#[test]
fn messages_out_of_order_are_refused() {
    let reg = registry();
    let run = honest_run(&reg);
    let (a, _) = send_request(NOW);
    assert!(matches!(
        a.receive_m1(&run.m3, insurer(), NOW),
        Err(E::OutOfOrder {
            expected: M1,
            found: M3
        })
    ));
    let (_, p, _, _) = until_m1(&reg);
    assert!(matches!(
        p.receive_m2(&run.request, patient(), NOW),
        Err(E::OutOfOrder {
            expected: M2,
            found: MessageKind::Request
        })
    ));
    let start = PatientStart::new(config());
    assert!(matches!(
        start.read_request(&run.m2, NOW),
        Err(E::OutOfOrder {
            expected: MessageKind::Request,
            found: M2
        })
    ));
    assert!(matches!(
        start.read_request(&run.m1, NOW),
        Err(E::Reflected(M1))
    ));
    let (a, _, _) = until_m2(&reg);
    assert!(matches!(
        a.receive_m3(&run.m1),
        Err(E::OutOfOrder {
            expected: M3,
            found: M1
        })
    ));
    let unknown = with(&run.m1, |v| v["typ"] = json!("emrshare-handshake-m1/v1"));
    let (a, _) = send_request(NOW);
    assert!(matches!(
        a.receive_m1(&unknown, insurer(), NOW),
        Err(E::UnknownFormat { expected: M1 })
    ));
}

#[test]
fn m3_with_another_sequence_number_is_refused() {
    let reg = registry();
    let (a, m3) = until_m3(&reg);
    let later = with(&m3, |v| v["seq"] = json!(1));
    assert!(matches!(
        a.receive_m3(&later),
        Err(E::Sequence {
            kind: M3,
            expected: 0,
            found: 1
        })
    ));
}

// --- Key substitution and dishonest parties -----------------------------------------------

#[test]
fn a_request_under_the_requesters_name_from_an_impostor_with_its_own_keys_is_refused() {
    let reg = registry();
    // A party that took A's name for its own key set signs a request as A.
    let impostor = PrivateKeySet::generate(
        Some(insurer().id.clone()),
        emrshare_core::keys::RsaBits::B2048,
    );
    let (_, request) = RequesterStart::new(config())
        .send_request(&impostor, PURPOSE, &ASKED, NOW)
        .unwrap();
    assert!(matches!(
        answer_request(&reg, &request, NOW),
        Err(E::BadSignature(Request))
    ));
}

#[test]
fn m1_is_sealed_to_the_registered_key_and_a_substituted_one_does_not_open_for_a() {
    let reg = registry();
    let (a, _, _, m1) = until_m1(&reg);
    // The man in the middle cannot read M1 ...
    let jwe = json_of(&m1)["jwe"].as_str().unwrap().to_owned();
    assert!(
        Envelope::parse(jwe.as_bytes())
            .unwrap()
            .open(stranger())
            .is_err()
    );
    // ... and an M1 sealed to a key of its choice does not open for A.
    let (signed, _) = open_inner(&m1, insurer());
    let substituted = seal_signed(M1_TYP, &signed, &stranger().public());
    assert!(matches!(
        a.receive_m1(&substituted, insurer(), NOW),
        Err(E::Decrypt(M1))
    ));
}

/// Lowe's attack on Needham-Schroeder: P answers M, a registered institution; M re-seals
/// P's signed M1 for A to pose as P. The signed M1 names M, not A.
#[test]
fn a_registered_party_cannot_forward_the_patients_m1_to_another_requester() {
    let reg = registry();
    let (_, m_request) = RequesterStart::new(config())
        .send_request(stranger(), "research", &ASKED, NOW)
        .unwrap();
    let (_, m1_to_m) = answer_request(&reg, &m_request, NOW).unwrap();
    let (p_signed, _) = open_inner(&m1_to_m, stranger());
    let (a, _) = send_request(NOW);
    let forwarded = seal_signed(M1_TYP, &p_signed, &insurer().public());
    assert!(matches!(
        a.receive_m1(&forwarded, insurer(), NOW),
        Err(E::WrongId {
            kind: M1,
            party: "requester"
        })
    ));
}

#[test]
fn an_m1_signed_by_anyone_but_the_named_patient_is_refused() {
    let reg = registry();
    let (a, request) = send_request(NOW);
    let forged = crafted_m1(&request, stranger(), |_| {});
    assert!(matches!(
        answer_m1(&reg, a, &forged, NOW),
        Err(E::BadSignature(M1))
    ));
}

#[test]
fn an_m2_signed_by_anyone_but_the_requester_is_refused() {
    let reg = registry();
    let (_, p, _, m1) = until_m1(&reg);
    let forged = crafted_m2(&m1, stranger(), |_| {});
    assert!(matches!(
        p.receive_m2(&forged, patient(), NOW),
        Err(E::BadSignature(M2))
    ));
}

/// Key-compromise impersonation: whoever holds all of one party's long-term keys still
/// cannot pass as the other party *to it*. With the patient's keys, M2 (and the request) can
/// only be signed by the patient's key, not the requester's; with the requester's keys, M1
/// only by the requester's.
#[test]
fn a_partys_own_stolen_keys_do_not_let_anyone_pass_as_its_peer_to_it() {
    let reg = registry();
    // The thief holds the patient's keys: it reads M1's nonce (M1 is for A, but the thief
    // can make its own M1s) and answers the patient in A's name.
    let (_, p, _, m1) = until_m1(&reg);
    let forged_m2 = crafted_m2(&m1, patient(), |_| {});
    assert!(matches!(
        p.receive_m2(&forged_m2, patient(), NOW),
        Err(E::BadSignature(M2))
    ));
    let (_, request) = send_request(NOW);
    let forged_request = crafted_request(&request, patient(), |_| {});
    assert!(matches!(
        answer_request(&reg, &forged_request, NOW),
        Err(E::BadSignature(Request))
    ));
    // The thief holds the requester's keys: it answers the requester in the patient's name.
    let (a, request) = send_request(NOW);
    let forged_m1 = crafted_m1(&request, insurer(), |_| {});
    assert!(matches!(
        answer_m1(&reg, a, &forged_m1, NOW),
        Err(E::BadSignature(M1))
    ));
}

/// Forward secrecy, as far as a test can show it: a later thief of both parties' long-term
/// keys opens M1 and M2, and finds in them only public values (nonces, the ephemeral public
/// points, IDs, times, hashes); the ephemeral scalars never leave the state that consumed
/// them, so M3 stays closed to it.
#[test]
fn stolen_long_term_keys_open_m1_and_m2_but_find_no_session_secret() {
    let reg = registry();
    let run = honest_run(&reg);
    let (_, m1) = open_inner(&run.m1, insurer());
    let (_, m2) = open_inner(&run.m2, patient());
    let members = |v: &Value| {
        let mut names: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        names.sort_unstable();
        names
    };
    assert_eq!(
        members(&m1),
        ["e_p", "id_a", "id_p", "n_p", "request_hash", "time"]
    );
    assert_eq!(
        members(&m2),
        ["e_a", "id_a", "id_p", "m1_hash", "n_a", "n_p", "time"]
    );
    for point in [&m1["e_p"], &m2["e_a"]] {
        let bytes = b64::decode(point.as_str().unwrap()).unwrap();
        assert_eq!(
            (bytes.len(), bytes[0]),
            (65, 4),
            "an uncompressed public point"
        );
    }
}

#[test]
fn a_patient_entry_whose_id_is_not_its_key_thumbprint_is_refused() {
    // M tries to register its keys under a chosen name with the patient role: the ledger
    // refuses (a patient's ID is its key's thumbprint). A client refuses such an entry even
    // from a chain that took it (the light client's `patient_entries_must_be_self_certifying`),
    // so the handshake never meets one.
    let mut reg = Registry::new().with(insurer(), Role::Insurer);
    let refused = reg.try_register(stranger(), Role::Patient, 0, u64::MAX);
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("thumbprint")),
        "{refused:?}"
    );
}

#[test]
fn an_m1_sealed_to_several_recipients_is_refused_before_any_decryption() {
    let (a, _) = send_request(NOW);
    let signed = jws::sign(
        &patient().signing,
        &jws::Header::es256(M1_TYP, None),
        &json!({}),
    );
    let recipients = [&insurer().public(), &stranger().public()];
    let jwe = Envelope::seal_to(signed.as_bytes(), &recipients, Some(M1_TYP))
        .unwrap()
        .to_json();
    let m1 = bytes_of(&json!({"typ": M1_TYP, "jwe": jwe}));
    assert!(matches!(
        a.receive_m1(&m1, insurer(), NOW),
        Err(E::Malformed { kind: M1, .. })
    ));
}

#[test]
fn an_m2_whose_envelope_names_the_patient_or_is_not_compact_is_refused() {
    let reg = registry();
    // What a careless (or tracking) requester would send: the patient's kid in clear.
    let (_, p, _, m1) = until_m1(&reg);
    let (_, m1_content) = open_inner(&m1, insurer());
    let payload = json!({
        "id_a": insurer().id.as_str(),
        "id_p": patient().id.as_str(),
        "n_a": b64::encode([9u8; 32]),
        "n_p": m1_content["n_p"],
        "e_a": some_point(),
        "time": NOW,
        "m1_hash": b64::encode(content_hash(&m1)),
    });
    let signed = jws::sign(
        &insurer().signing,
        &jws::Header::es256(M2_TYP, None),
        &payload,
    );
    let named = Envelope::seal_to(signed.as_bytes(), &[&patient().public()], Some(M2_TYP)).unwrap();
    let m2 = bytes_of(&json!({"typ": M2_TYP, "jwe": named.to_compact().unwrap()}));
    assert!(matches!(
        p.receive_m2(&m2, patient(), NOW),
        Err(E::Malformed { kind: M2, .. })
    ));
    // The same content unnamed, but in the flattened JSON form (room for unprotected headers).
    let (_, p, _, m1) = until_m1(&reg);
    let honest = crafted_m2(&m1, insurer(), |_| {});
    let jwe = json_of(&honest)["jwe"].as_str().unwrap().to_owned();
    let flattened = Envelope::parse(jwe.as_bytes()).unwrap().to_json();
    let m2 = bytes_of(&json!({"typ": M2_TYP, "jwe": flattened}));
    assert!(matches!(
        p.receive_m2(&m2, patient(), NOW),
        Err(E::Malformed { kind: M2, .. })
    ));
}

// --- Request authenticity ------------------------------------------------------------------

#[test]
fn the_request_crafting_helpers_make_acceptable_requests() {
    let reg = registry();
    let (_, request) = send_request(NOW);
    let answered = AnsweredRequests::default();
    verify_request(
        &reg,
        &answered,
        &crafted_request(&request, insurer(), |_| {}),
    )
    .unwrap();
    verify_request(&reg, &answered, &request_with_claims(&request, |_| {})).unwrap();
}

#[test]
fn a_request_in_the_requesters_name_signed_by_anyone_else_is_refused() {
    let reg = registry();
    let (_, request) = send_request(NOW);
    // Forged from scratch by a party with no registered key, and re-signed (same claims)
    // by another registered party.
    let outsider = SigningKey::generate();
    let forger = PrivateKeySet {
        signing: outsider,
        ..PrivateKeySet::generate(None, emrshare_core::keys::RsaBits::B2048)
    };
    for signer in [&forger, stranger(), patient()] {
        let forged = crafted_request(&request, signer, |claims| {
            claims["purpose"] = json!("claim 2026-9999: all of it");
        });
        assert!(matches!(
            verify_request(&reg, &AnsweredRequests::default(), &forged),
            Err(E::BadSignature(Request))
        ));
        let re_signed = crafted_request(&request, signer, |_| {});
        assert!(matches!(
            verify_request(&reg, &AnsweredRequests::default(), &re_signed),
            Err(E::BadSignature(Request))
        ));
    }
    // Checked against the re-signer's own entry instead: it is not the requester's.
    let re_signed = crafted_request(&request, stranger(), |_| {});
    let read = PatientStart::new(config())
        .read_request(&re_signed, NOW)
        .unwrap();
    assert!(matches!(
        read.verify_requester(
            &reg.entry(&stranger().id),
            &AnsweredRequests::default(),
            NOW
        ),
        Err(E::EntryMismatch("requester"))
    ));
}

#[test]
fn an_unsigned_request_is_refused() {
    let reg = registry();
    let (_, request) = send_request(NOW);
    let text = std::str::from_utf8(&request).unwrap();
    let segments: Vec<&str> = text.split('.').collect();
    let none_header = b64::encode(bytes_of(&json!({"alg": "none", "typ": REQUEST_TYP})));
    for unsigned in [
        format!("{}.{}.", segments[0], segments[1]),
        format!("{none_header}.{}.", segments[1]),
        format!("{}.{}.{}", segments[0], segments[1], b64::encode([0u8; 64])),
    ] {
        let result = verify_request(&reg, &AnsweredRequests::default(), unsigned.as_bytes());
        assert!(
            matches!(
                result,
                Err(E::BadSignature(Request) | E::Malformed { kind: Request, .. })
            ),
            "{unsigned}: {result:?}"
        );
    }
    // The old unsigned JSON request format is not a request at all.
    let old = bytes_of(&json!({
        "typ": "emrshare-handshake-request/v1", "id_a": insurer().id.as_str(),
        "purpose": PURPOSE, "requested_parts": ASKED, "time": NOW,
    }));
    assert!(matches!(
        PatientStart::new(config()).read_request(&old, NOW),
        Err(E::UnknownFormat { expected: Request })
    ));
}

#[test]
fn a_request_with_a_tampered_purpose_parts_time_or_id_is_refused() {
    let reg = registry();
    let (_, request) = send_request(NOW);
    let edits: [fn(&mut Value); 5] = [
        |c| c["purpose"] = json!("claim 2026-0042, and everything else"),
        |c| c["requested_parts"] = json!(["examination", "prescription", "id_number"]),
        |c| c["iat"] = json!(NOW - 1),
        |c| c["jti"] = json!(b64::encode([1u8; 16])),
        |c| c["iss"] = json!(stranger().id.as_str()),
    ];
    for edit in edits {
        let tampered = request_with_claims(&request, edit);
        let result = verify_request(&reg, &AnsweredRequests::default(), &tampered);
        assert!(
            matches!(result, Err(E::BadSignature(Request))),
            "{result:?}"
        );
    }
    // Its header, too: another kid is signed over like the rest.
    let text = std::str::from_utf8(&request).unwrap();
    let segments: Vec<&str> = text.split('.').collect();
    let header = b64::encode(bytes_of(
        &json!({"alg": "ES256", "typ": REQUEST_TYP, "kid": "insurer:other#sig"}),
    ));
    let tampered = format!("{header}.{}.{}", segments[1], segments[2]);
    assert!(matches!(
        verify_request(&reg, &AnsweredRequests::default(), tampered.as_bytes()),
        Err(E::BadSignature(Request))
    ));
}

#[test]
fn a_request_the_patient_answered_is_refused_when_replayed() {
    let reg = registry();
    let mut answered = AnsweredRequests::default();
    let (_, request) = send_request(NOW);
    answer_request_with(&reg, &mut answered, &request, NOW).unwrap();
    assert_eq!(answered.len(), 1);
    // Replayed later within the window: refused before anything of it can be shown.
    assert!(matches!(
        verify_request(&reg, &answered, &request),
        Err(E::Replayed(Request))
    ));
    assert!(matches!(
        answer_request_with(&reg, &mut answered, &request, NOW + SKEW),
        Err(E::Replayed(Request))
    ));
    // Read twice before either is answered (two screens): only the first answer goes out.
    let (_, request) = send_request(NOW);
    let first = verify_request(&reg, &answered, &request).unwrap();
    let second = verify_request(&reg, &answered, &request).unwrap();
    PatientStart::new(config())
        .send_m1(first, &mut answered, patient(), NOW)
        .unwrap();
    assert!(matches!(
        PatientStart::new(config()).send_m1(second, &mut answered, patient(), NOW),
        Err(E::Replayed(Request))
    ));
    // Another request with the same content has its own ID and is answered.
    let (_, again) = send_request(NOW);
    answer_request_with(&reg, &mut answered, &again, NOW).unwrap();
    // Once the window has passed, the replay is refused as stale (and forgotten).
    assert!(matches!(
        answer_request_with(&reg, &mut answered, &request, NOW + SKEW + 1),
        Err(E::TimeWindow { kind: Request, .. })
    ));
}

#[test]
fn a_request_id_shorter_than_128_bits_or_a_wrong_typ_is_refused() {
    let reg = registry();
    let (_, request) = send_request(NOW);
    let short = crafted_request(&request, insurer(), |c| {
        c["jti"] = json!(b64::encode([1u8; 8]))
    });
    assert!(matches!(
        verify_request(&reg, &AnsweredRequests::default(), &short),
        Err(E::Malformed { kind: Request, .. })
    ));
    let claims = request_claims(&request);
    let as_jwt = jws::sign(
        &insurer().signing,
        &jws::Header::es256("JWT", None),
        &claims,
    );
    assert!(matches!(
        verify_request(&reg, &AnsweredRequests::default(), as_jwt.as_bytes()),
        Err(E::UnknownFormat { expected: Request })
    ));
}

// --- Wrong contents in signed messages ----------------------------------------------------

/// An edit of a message's signed content, and the refusal it must cause.
type Case = (fn(&mut Value), fn(&HandshakeError) -> bool);

#[test]
fn m1_with_wrong_contents_is_refused() {
    let reg = registry();
    let cases: [Case; 4] = [
        (
            |v| v["id_a"] = json!(stranger().id.as_str()),
            |e| {
                matches!(
                    e,
                    E::WrongId {
                        kind: M1,
                        party: "requester"
                    }
                )
            },
        ),
        (
            |v| v["request_hash"] = json!(b64::encode([0u8; 32])),
            |e| matches!(e, E::Replayed(M1)),
        ),
        (
            |v| v["e_p"] = json!(b64::encode([4u8; 65])),
            |e| matches!(e, E::BadEphemeralKey(M1)),
        ),
        (
            |v| v["extra"] = json!(1),
            |e| matches!(e, E::Malformed { kind: M1, .. }),
        ),
    ];
    for (edit, expected) in cases {
        let (a, request) = send_request(NOW);
        let m1 = crafted_m1(&request, patient(), edit);
        let err = answer_m1(&reg, a, &m1, NOW).unwrap_err();
        assert!(expected(&err), "{err}");
    }
}

#[test]
fn m2_with_the_wrong_nonce_is_refused() {
    let reg = registry();
    let (_, p, _, m1) = until_m1(&reg);
    let m2 = crafted_m2(&m1, insurer(), |v| v["n_p"] = json!(b64::encode([1u8; 32])));
    assert!(matches!(
        p.receive_m2(&m2, patient(), NOW),
        Err(E::WrongNonce(M2))
    ));
}

#[test]
fn m2_echoing_the_patients_nonce_or_ephemeral_key_is_refused() {
    let reg = registry();
    for echoed in ["n_p", "e_p"] {
        let (_, p, _, m1) = until_m1(&reg);
        let (_, m1_content) = open_inner(&m1, insurer());
        let m2 = crafted_m2(&m1, insurer(), |v| match echoed {
            "n_p" => v["n_a"] = m1_content["n_p"].clone(),
            _ => v["e_a"] = m1_content["e_p"].clone(),
        });
        assert!(matches!(
            p.receive_m2(&m2, patient(), NOW),
            Err(E::ReusedNonce(M2))
        ));
    }
}

#[test]
fn m2_with_wrong_contents_is_refused() {
    let reg = registry();
    let cases: [Case; 5] = [
        (
            |v| v["id_p"] = json!(stranger().id.as_str()),
            |e| {
                matches!(
                    e,
                    E::WrongId {
                        kind: M2,
                        party: "patient"
                    }
                )
            },
        ),
        (
            |v| v["id_a"] = json!(stranger().id.as_str()),
            |e| {
                matches!(
                    e,
                    E::WrongId {
                        kind: M2,
                        party: "requester"
                    }
                )
            },
        ),
        (
            |v| v["m1_hash"] = json!(b64::encode([0u8; 32])),
            |e| matches!(e, E::Replayed(M2)),
        ),
        (
            |v| v["e_a"] = json!(b64::encode([4u8; 65])),
            |e| matches!(e, E::BadEphemeralKey(M2)),
        ),
        (
            |v| v["n_a"] = json!("short"),
            |e| matches!(e, E::Malformed { kind: M2, .. }),
        ),
    ];
    for (edit, expected) in cases {
        let (_, p, _, m1) = until_m1(&reg);
        let m2 = crafted_m2(&m1, insurer(), edit);
        let err = p.receive_m2(&m2, patient(), NOW).unwrap_err();
        assert!(expected(&err), "{err}");
    }
}

// --- Time ----------------------------------------------------------------------------------

#[test]
fn stale_and_future_requests_are_refused() {
    let reg = registry();
    let (_, request) = send_request(NOW);
    for now in [NOW + SKEW + 1, NOW - SKEW - 1] {
        assert!(matches!(
            answer_request(&reg, &request, now),
            Err(E::TimeWindow {
                kind: MessageKind::Request,
                ..
            })
        ));
    }
}

#[test]
fn stale_and_future_m1_and_m2_are_refused() {
    let reg = registry();
    for late in [SKEW + 1, 0u64.wrapping_sub(SKEW + 1)] {
        let (a, _, _, m1) = until_m1(&reg);
        assert!(matches!(
            answer_m1(&reg, a, &m1, NOW.wrapping_add(late)),
            Err(E::TimeWindow { kind: M1, .. })
        ));
        let (_, p, m2) = until_m2(&reg);
        assert!(matches!(
            p.receive_m2(&m2, patient(), NOW.wrapping_add(late)),
            Err(E::TimeWindow { kind: M2, .. })
        ));
    }
}

#[test]
fn a_record_presented_too_late_is_refused() {
    let reg = registry();
    let (a, m3) = until_m3(&reg);
    assert!(matches!(
        accept_m3(&reg, a, &m3, NOW + SKEW + 1),
        Err(E::Record(CesError::KeyBindingTime))
    ));
}

// --- Tampering: one flipped bit anywhere -----------------------------------------------------

#[test]
fn a_flipped_byte_in_the_request_is_caught() {
    let reg = registry();
    let (_, request) = send_request(NOW);
    for at in positions(request.len()) {
        let (a, honest) = send_request(NOW);
        // Where the patient accepts the damaged request, M1 signs its hash and A refuses.
        let caught = answer_request(&reg, &flipped(&honest, at), NOW)
            .and_then(|(_, m1)| answer_m1(&reg, a, &m1, NOW));
        assert!(caught.is_err(), "request byte {at}");
    }
}

#[test]
fn a_flipped_byte_in_m1_is_caught() {
    let reg = registry();
    let (mut decrypt_failures, mut tries) = (0, 0);
    let len = until_m1(&reg).3.len();
    for at in positions(len) {
        let (a, _, _, m1) = until_m1(&reg);
        match answer_m1(&reg, a, &flipped(&m1, at), NOW) {
            Ok(_) => panic!("M1 byte {at} flipped was accepted"),
            Err(E::Decrypt(M1)) => decrypt_failures += 1,
            Err(_) => {}
        }
        tries += 1;
    }
    assert!(decrypt_failures > tries / 2, "{decrypt_failures}/{tries}");
}

#[test]
fn a_flipped_byte_in_m2_is_caught() {
    let reg = registry();
    let (mut decrypt_failures, mut tries) = (0, 0);
    let len = until_m2(&reg).2.len();
    for at in positions(len) {
        let (_, p, m2) = until_m2(&reg);
        match p.receive_m2(&flipped(&m2, at), patient(), NOW) {
            Ok(_) => panic!("M2 byte {at} flipped was accepted"),
            Err(E::Decrypt(M2)) => decrypt_failures += 1,
            Err(_) => {}
        }
        tries += 1;
    }
    assert!(decrypt_failures > tries / 2, "{decrypt_failures}/{tries}");
}

#[test]
fn a_flipped_byte_in_m3_is_caught() {
    let reg = registry();
    let (mut tag_failures, mut tries) = (0, 0);
    let len = until_m3(&reg).1.len();
    for at in positions(len) {
        let (a, m3) = until_m3(&reg);
        match accept_m3(&reg, a, &flipped(&m3, at), NOW) {
            Ok(_) => panic!("M3 byte {at} flipped was accepted"),
            Err(E::SessionKey(M3)) => tag_failures += 1,
            Err(_) => {}
        }
        tries += 1;
    }
    assert!(tag_failures > tries / 2, "{tag_failures}/{tries}");
}

// --- Registry entries ------------------------------------------------------------------------

#[test]
fn a_revoked_or_expired_requester_is_refused() {
    let mut revoked = registry();
    revoked.revoke(insurer());
    let mut expired = Registry::new().with(patient(), Role::Patient);
    expired.register(insurer(), Role::Insurer, 0, NOW);
    for reg in [revoked, expired] {
        let (_, request) = send_request(NOW);
        assert!(matches!(
            answer_request(&reg, &request, NOW),
            Err(E::InactiveEntry("requester"))
        ));
    }
}

#[test]
fn another_partys_entry_does_not_verify_a_request() {
    let reg = registry();
    let (_, request) = send_request(NOW);
    let start = PatientStart::new(config());
    let read = start.read_request(&request, NOW).unwrap();
    assert!(matches!(
        read.verify_requester(
            &reg.entry(&stranger().id),
            &AnsweredRequests::default(),
            NOW
        ),
        Err(E::EntryMismatch("requester"))
    ));
}

#[test]
fn a_revoked_patient_is_refused_by_the_requester() {
    let mut reg = registry();
    let (a, _, _, m1) = until_m1(&reg);
    reg.revoke(patient());
    assert!(matches!(
        answer_m1(&reg, a, &m1, NOW),
        Err(E::InactiveEntry("patient"))
    ));
}

#[test]
fn a_record_needs_its_doctors_active_entry() {
    let mut reg = registry();
    // Another party's entry in place of the doctor's.
    let (a, m3) = until_m3(&reg);
    let a = a.receive_m3(&m3).unwrap();
    assert!(matches!(
        a.verify_record(&reg.entry(&insurer().id), &reg.entry(&doctor().id), NOW),
        Err(E::EntryMismatch("issuer"))
    ));
    // The doctor revoked its identity (a stolen key, say).
    let (a, m3) = until_m3(&reg);
    reg.revoke(doctor());
    assert!(matches!(
        accept_m3(&reg, a, &m3, NOW),
        Err(E::InactiveEntry("issuer"))
    ));
}

#[test]
fn a_record_signed_by_a_party_that_does_not_issue_records_is_refused() {
    let reg = registry();
    let (a, p, m2) = until_m2(&reg);
    let by_researcher = issue_by(stranger());
    let m3 = p
        .receive_m2(&m2, patient(), NOW)
        .unwrap()
        .send_record(&by_researcher, &ASKED, None, patient(), NOW)
        .unwrap();
    assert!(matches!(
        accept_m3(&reg, a, &m3, NOW),
        Err(E::UnusableEntry {
            party: "issuer",
            ..
        })
    ));
}

// --- Input hygiene ---------------------------------------------------------------------------

#[test]
fn oversize_messages_are_refused_before_parsing() {
    let reg = registry();
    let start = PatientStart::new(config());
    assert!(matches!(
        start.read_request(&vec![b' '; MAX_REQUEST_BYTES + 1], NOW),
        Err(E::TooLarge { .. })
    ));
    let (a, p, _, _) = until_m1(&reg);
    assert!(matches!(
        a.receive_m1(&vec![b' '; MAX_KEY_EXCHANGE_BYTES + 1], insurer(), NOW),
        Err(E::TooLarge { kind: M1, .. })
    ));
    assert!(matches!(
        p.receive_m2(&vec![b' '; MAX_KEY_EXCHANGE_BYTES + 1], patient(), NOW),
        Err(E::TooLarge { kind: M2, .. })
    ));
    let (a, _) = until_m3(&reg);
    assert!(matches!(
        a.receive_m3(&vec![b' '; MAX_M3_BYTES + 1]),
        Err(E::TooLarge { kind: M3, .. })
    ));
}

#[test]
fn duplicate_or_unknown_members_and_garbage_are_refused() {
    let (_, request) = send_request(NOW);
    let start = PatientStart::new(config());
    // Signed by A, so only the duplicate or the extra member is wrong.
    let claims = String::from_utf8(bytes_of(&request_claims(&request))).unwrap();
    let duplicated_claims = claims.replacen('{', r#"{"purpose":"other","#, 1);
    let header = b64::encode(bytes_of(
        &json!({"alg": "ES256", "typ": REQUEST_TYP, "kid": insurer().id.signing_kid()}),
    ));
    let input = format!("{header}.{}", b64::encode(&duplicated_claims));
    let signature = b64::encode(insurer().signing.sign(input.as_bytes()));
    let duplicated = format!("{input}.{signature}");
    let extra = crafted_request(&request, insurer(), |c| c["extra"] = json!(true));
    for bad in [
        duplicated.as_bytes(),
        &extra,
        b"",
        b"[]",
        b"{\"typ\":1}",
        &request[1..],
    ] {
        assert!(
            matches!(
                start.read_request(bad, NOW),
                Err(E::Malformed { .. } | E::UnknownFormat { .. })
            ),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn disclosing_a_part_the_record_does_not_have_is_an_error() {
    let reg = registry();
    let (_, p, m2) = until_m2(&reg);
    let session = p.receive_m2(&m2, patient(), NOW).unwrap();
    assert!(matches!(
        session.send_record(record(), &["blood_type"], None, patient(), NOW),
        Err(E::Record(CesError::UnknownPart(_)))
    ));
}
