//! Content extraction signatures through the public API: the doctor signs, the patient
//! extracts any subset and binds it, the verifier sees exactly what was disclosed.
#![allow(clippy::unwrap_used)] // tests and benches fail loudly on a broken fixture

mod common;

use common::{NOW, doctor, insurer, patient};
use emrshare_core::ces::{
    self, CesError, IssueOptions, KeyBindingRequirement, SdJwt, VerifyPolicy,
};
use emrshare_core::record::{BPDS_CEAS, BPDS_PARTS, Ceas, Record};
use proptest::prelude::*;
use serde_json::json;

fn issued(decoys: usize) -> (Record, SdJwt) {
    let record = Record::sample_bpds();
    let ceas = Ceas::default_for(&record);
    let sd = ces::issue(
        doctor(),
        &patient().public(),
        &record,
        &ceas,
        IssueOptions {
            issued_at: NOW,
            decoys,
        },
    )
    .unwrap();
    (record, sd)
}

fn verify_plain(sd: &SdJwt) -> Result<ces::VerifiedRecord, CesError> {
    let doctor_pub = doctor().public();
    ces::verify(sd, &VerifyPolicy::new(&doctor_pub, NOW))
}

#[test]
fn full_record_verifies_with_all_parts_and_metadata() {
    let (record, sd) = issued(3);
    let reparsed = SdJwt::parse(&sd.serialize()).unwrap();
    let patient_pub = patient().public();
    let doctor_pub = doctor().public();
    let policy = VerifyPolicy {
        holder: Some(&patient_pub),
        ..VerifyPolicy::new(&doctor_pub, NOW)
    };
    let v = ces::verify(&reparsed, &policy).unwrap();
    assert_eq!(v.parts(), record.parts());
    assert_eq!(v.issuer(), &doctor().id);
    assert_eq!(v.patient(), patient().id.as_str());
    assert_eq!(v.record_id(), record.record_id());
    assert_eq!(v.schema(), record.schema());
    assert_eq!(v.ceas(), ["age", "gender", "medical_history"]);
    assert_eq!(v.holder_key(), Some(patient().signing.verifying_key()));
    assert!(!v.key_bound());
    assert_eq!(
        sd.disclosures().len(),
        4,
        "the 4 non-CEAS parts are disclosable"
    );
}

#[test]
fn ceas_parts_survive_an_empty_extraction() {
    let (_, sd) = issued(0);
    let minimal = sd.extract(&[]).unwrap();
    assert!(minimal.disclosures().is_empty());
    let v = verify_plain(&minimal).unwrap();
    let mut names: Vec<_> = v.parts().keys().cloned().collect();
    names.sort();
    let mut expected: Vec<String> = BPDS_CEAS.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn naming_a_part_that_does_not_exist_is_an_error() {
    let (_, sd) = issued(0);
    assert!(matches!(
        sd.extract(&["diagnosis"]),
        Err(CesError::UnknownPart(_))
    ));
    // Naming a CEAS part is fine: it is always there.
    assert!(sd.extract(&["gender"]).is_ok());
}

#[test]
fn key_bound_presentation_verifies_for_its_audience_and_nonce_only() {
    let (_, sd) = issued(1);
    let shown = sd.extract(&["prescription"]).unwrap().bind(
        &patient().signing,
        insurer().id.as_str(),
        "n-1",
        NOW,
    );
    let doctor_pub = doctor().public();
    let patient_pub = patient().public();
    let policy = |audience, nonce| VerifyPolicy {
        holder: Some(&patient_pub),
        key_binding: Some(KeyBindingRequirement { audience, nonce }),
        ..VerifyPolicy::new(&doctor_pub, NOW)
    };
    let v = ces::verify(
        &SdJwt::parse(&shown.serialize()).unwrap(),
        &policy(insurer().id.as_str(), "n-1"),
    )
    .unwrap();
    assert!(v.key_bound());
    assert!(v.parts().contains_key("prescription"));
    assert!(!v.parts().contains_key("name"));
    assert!(matches!(
        ces::verify(&shown, &policy("insurer:other", "n-1")),
        Err(CesError::KeyBindingAudience)
    ));
    assert!(matches!(
        ces::verify(&shown, &policy(insurer().id.as_str(), "n-2")),
        Err(CesError::KeyBindingNonce)
    ));
}

#[test]
fn generic_records_work_without_ceas() {
    let record = Record::from_json(
        br#"{"allergy":"penicillin","blood_type":"0+"}"#,
        Some("r-9"),
    )
    .unwrap();
    let sd = ces::issue(
        doctor(),
        &patient().public(),
        &record,
        &Ceas::default_for(&record),
        IssueOptions {
            issued_at: NOW,
            decoys: 0,
        },
    )
    .unwrap();
    let v = verify_plain(&sd.extract(&["blood_type"]).unwrap()).unwrap();
    assert_eq!(v.parts(), json!({"blood_type": "0+"}).as_object().unwrap());
}

#[test]
fn ceas_naming_a_missing_part_cannot_be_signed() {
    let record = Record::from_json(br#"{"a":1}"#, None).unwrap();
    let result = ces::issue(
        doctor(),
        &patient().public(),
        &record,
        &Ceas::new(["b"]),
        IssueOptions {
            issued_at: NOW,
            decoys: 0,
        },
    );
    assert!(matches!(result, Err(CesError::Record(_))));
}

#[test]
fn salts_hide_low_entropy_parts() {
    // Two signatures of the same record give different digests for the same part.
    let (_, a) = issued(0);
    let (_, b) = issued(0);
    let digest_sets = |sd: &SdJwt| {
        sd.disclosures()
            .iter()
            .map(|d| d.name().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(digest_sets(&a).len(), digest_sets(&b).len());
    assert_ne!(a.serialize(), b.serialize());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Any subset of parts can be extracted, and the verifier sees exactly that subset plus CEAS.
    #[test]
    fn any_subset_extracts_and_verifies(mask in 0u8..128) {
        let (record, sd) = issued(2);
        let chosen: Vec<&str> = BPDS_PARTS.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, p)| *p).collect();
        let extracted = SdJwt::parse(&sd.extract(&chosen).unwrap().serialize()).unwrap();
        let v = verify_plain(&extracted).unwrap();
        for part in BPDS_PARTS {
            let expected = chosen.contains(&part) || BPDS_CEAS.contains(&part);
            prop_assert_eq!(v.parts().contains_key(part), expected, "part {}", part);
            if expected {
                prop_assert_eq!(&v.parts()[part], &record.parts()[part]);
            }
        }
    }

    #[test]
    fn parse_never_panics(text in "[A-Za-z0-9_.~-]{0,300}") {
        if let Ok(sd) = SdJwt::parse(&text) {
            let _ = verify_plain(&sd);
        }
    }
}
