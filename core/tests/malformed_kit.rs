//! The malformed-input kit (in the spirit of age's testkit): named envelopes and SD-JWTs that
//! must be refused, each with the error it must produce. Most are built by changing one thing
//! in a valid object, so each case tests exactly one check.
#![allow(clippy::unwrap_used)] // tests and benches fail loudly on a broken fixture

mod common;

use common::{NOW, doctor, insurer, patient, stranger};
use emrshare_core::b64;
use emrshare_core::ces::{
    self, CesError, IssueOptions, KeyBindingRequirement, SdJwt, VerifyPolicy,
};
use emrshare_core::jwe::{Envelope, JweError, MAX_ENVELOPE_BYTES};
use emrshare_core::jws::{self, JwsError};
use emrshare_core::record::{Ceas, Record};
use serde_json::{Value, json};

// ---------------------------------------------------------------- envelopes

/// A compact JWE with the given protected header and random-looking parts of the right sizes.
fn compact_with_header(header: Value) -> String {
    let valid = Envelope::seal_to(b"x", &[&patient().public()], None)
        .unwrap()
        .to_compact()
        .unwrap();
    let parts: Vec<&str> = valid.split('.').collect();
    format!(
        "{}.{}",
        b64::encode(header.to_string()),
        parts[1..].join(".")
    )
}

fn valid_compact() -> String {
    Envelope::seal_to(b"kit plaintext", &[&patient().public()], None)
        .unwrap()
        .to_compact()
        .unwrap()
}

fn valid_json() -> Value {
    let env = Envelope::seal_to(
        b"kit plaintext",
        &[&patient().public(), &insurer().public()],
        None,
    )
    .unwrap();
    serde_json::from_str(&env.to_json()).unwrap()
}

fn header(alg: &str, enc: &str) -> Value {
    json!({"alg": alg, "enc": enc})
}

fn replace_part(compact: &str, index: usize, new: &str) -> String {
    let mut parts: Vec<&str> = compact.split('.').collect();
    parts[index] = new;
    parts.join(".")
}

fn flip_first_byte(part_b64: &str) -> String {
    let mut bytes = b64::decode(part_b64).unwrap();
    bytes[0] ^= 0x01;
    b64::encode(bytes)
}

fn parse_err(input: impl AsRef<[u8]>) -> JweError {
    Envelope::parse(input.as_ref()).expect_err("kit case must be refused at parse time")
}

fn open_err(input: impl AsRef<[u8]>) -> JweError {
    Envelope::parse(input.as_ref())
        .unwrap()
        .open(patient())
        .expect_err("kit case must not open")
}

#[test]
fn envelope_algorithms_other_than_ours_are_refused() {
    for alg in ["RSA1_5", "RSA-OAEP", "dir", "ECDH-ES", "none", "A256KW"] {
        assert!(
            matches!(
                parse_err(compact_with_header(header(alg, "A256CBC-HS512"))),
                JweError::UnsupportedAlgorithm(_)
            ),
            "{alg}"
        );
    }
    for enc in ["A128GCM", "A256GCM", "A128CBC-HS256", "A192CBC-HS384", ""] {
        assert!(
            matches!(
                parse_err(compact_with_header(header("RSA-OAEP-256", enc))),
                JweError::UnsupportedEncryption(_)
            ),
            "{enc}"
        );
    }
}

#[test]
fn foreign_gcm_envelope_is_named_as_unsupported_not_malformed() {
    let gcm = [
        b64::encode(header("RSA-OAEP-256", "A128GCM").to_string()),
        b64::encode([1u8; 256]),
        b64::encode([0u8; 12]),
        b64::encode([0u8; 5]),
        b64::encode([0u8; 16]),
    ]
    .join(".");
    assert!(matches!(parse_err(gcm), JweError::UnsupportedEncryption(_)));
}

#[test]
fn envelope_header_kit() {
    let mut zip = header("RSA-OAEP-256", "A256CBC-HS512");
    zip["zip"] = "DEF".into();
    assert!(matches!(
        parse_err(compact_with_header(zip)),
        JweError::Compressed
    ));
    let mut crit = header("RSA-OAEP-256", "A256CBC-HS512");
    crit["crit"] = json!(["exp"]);
    assert!(matches!(
        parse_err(compact_with_header(crit)),
        JweError::Critical
    ));
    assert!(matches!(
        parse_err(compact_with_header(json!({"enc": "A256CBC-HS512"}))),
        JweError::Missing("alg")
    ));
    assert!(matches!(
        parse_err(compact_with_header(json!({"alg": "RSA-OAEP-256"}))),
        JweError::Missing("enc")
    ));
    assert!(matches!(
        parse_err(compact_with_header(
            json!({"alg": 1, "enc": "A256CBC-HS512"})
        )),
        JweError::Malformed(_)
    ));
    assert!(matches!(
        parse_err(compact_with_header(json!([1]))),
        JweError::Json(_)
    ));
    let duplicate = r#"{"alg":"RSA-OAEP-256","enc":"A256CBC-HS512","alg":"RSA-OAEP-256"}"#;
    let valid = valid_compact();
    assert!(matches!(
        parse_err(replace_part(&valid, 0, &b64::encode(duplicate))),
        JweError::Json(_)
    ));
    assert!(matches!(
        parse_err(replace_part(&valid, 0, &b64::encode(r#"{"alg":"#))),
        JweError::Json(_)
    ));
}

#[test]
fn envelope_compact_structure_kit() {
    let valid = valid_compact();
    let parts: Vec<&str> = valid.split('.').collect();
    let cases: Vec<(&str, String)> = vec![
        ("four_parts", parts[..4].join(".")),
        ("six_parts", format!("{valid}.AAAA")),
        ("empty", String::new()),
        (
            "iv_12_bytes",
            replace_part(&valid, 2, &b64::encode([0u8; 12])),
        ),
        (
            "tag_16_bytes",
            replace_part(&valid, 4, &b64::encode([0u8; 16])),
        ),
        (
            "ciphertext_15_bytes",
            replace_part(&valid, 3, &b64::encode([0u8; 15])),
        ),
        ("ciphertext_empty", replace_part(&valid, 3, "")),
        (
            "base64_padding",
            replace_part(&valid, 2, &format!("{}==", parts[2])),
        ),
        (
            "base64_standard_alphabet",
            replace_part(&valid, 3, &format!("+{}", &parts[3][1..])),
        ),
        ("trailing_garbage", format!("{valid}x")),
        ("not_utf8", format!("{valid}\u{0}\u{FFFD}")),
    ];
    for (name, input) in cases {
        assert!(
            matches!(parse_err(&input), JweError::Malformed(_)),
            "{name}: {:?}",
            Envelope::parse(input.as_bytes()).err()
        );
    }
    assert!(matches!(
        parse_err(vec![b'a'; MAX_ENVELOPE_BYTES + 1]),
        JweError::TooLarge(_)
    ));
}

#[test]
fn envelope_authentication_kit() {
    let valid = valid_compact();
    let parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
    let hmac_bad = replace_part(&valid, 4, &flip_first_byte(&parts[4]));
    let ciphertext_bad = replace_part(&valid, 3, &flip_first_byte(&parts[3]));
    let iv_bad = replace_part(&valid, 2, &flip_first_byte(&parts[2]));
    let wrapped_key_bad = replace_part(&valid, 1, &flip_first_byte(&parts[1]));
    let wrapped_key = b64::decode(&parts[1]).unwrap();
    let wrapped_key_truncated = replace_part(
        &valid,
        1,
        &b64::encode(&wrapped_key[..wrapped_key.len() - 1]),
    );
    // Same header, different bytes: the AAD is the encoded header, so this must fail too.
    let reencoded = b64::encode(
        String::from_utf8(b64::decode(&parts[0]).unwrap())
            .unwrap()
            .replace(':', ": "),
    );
    let header_reencoded = replace_part(&valid, 0, &reencoded);
    for (name, input) in [
        ("hmac_bad", hmac_bad),
        ("ciphertext_bad", ciphertext_bad),
        ("iv_bad", iv_bad),
        ("wrapped_key_bad", wrapped_key_bad),
        ("wrapped_key_truncated", wrapped_key_truncated),
        ("header_reencoded", header_reencoded),
    ] {
        assert!(matches!(open_err(&input), JweError::Decrypt), "{name}");
    }
    assert!(matches!(
        Envelope::parse(valid.as_bytes()).unwrap().open(stranger()),
        Err(JweError::Decrypt)
    ));
}

#[test]
fn envelope_json_kit() {
    let valid = valid_json();
    let edited = |edit: &dyn Fn(&mut Value)| {
        let mut v = valid.clone();
        edit(&mut v);
        v.to_string()
    };
    assert!(matches!(
        parse_err(edited(&|v| v["recipients"] = json!([]))),
        JweError::NoRecipients
    ));
    assert!(matches!(
        parse_err(edited(&|v| {
            v.as_object_mut().unwrap().remove("iv");
        })),
        JweError::Missing("iv")
    ));
    assert!(matches!(
        parse_err(edited(&|v| {
            v.as_object_mut().unwrap().remove("protected");
        })),
        JweError::Missing("protected")
    ));
    assert!(matches!(
        parse_err(edited(&|v| {
            v["recipients"][0]
                .as_object_mut()
                .unwrap()
                .remove("encrypted_key");
        })),
        JweError::Missing("encrypted_key")
    ));
    assert!(matches!(
        parse_err(edited(&|v| v["encrypted_key"] = "AAAA".into())),
        JweError::Malformed(_)
    ));
    assert!(matches!(
        parse_err(edited(
            &|v| v["recipients"][1]["header"]["enc"] = "A256CBC-HS512".into()
        )),
        JweError::DuplicateHeader(_)
    ));
    assert!(matches!(
        parse_err(edited(
            &|v| v["unprotected"] = json!({"alg": "RSA-OAEP-256"})
        )),
        JweError::DuplicateHeader(_)
    ));
    assert!(matches!(
        parse_err(edited(
            &|v| v["recipients"][0]["header"]["alg"] = "RSA1_5".into()
        )),
        JweError::UnsupportedAlgorithm(_)
    ));
    assert!(matches!(
        parse_err(edited(
            &|v| v["recipients"][0]["header"]["zip"] = "DEF".into()
        )),
        JweError::Compressed
    ));
    assert!(matches!(
        parse_err(edited(
            &|v| v["recipients"] = json!(vec![v["recipients"][0].clone(); 257])
        )),
        JweError::TooManyRecipients
    ));
    assert!(matches!(
        parse_err(format!("{} trailing", valid)),
        JweError::Json(_)
    ));
    let text = valid.to_string();
    let duplicated = text.replacen("\"iv\":", "\"iv\":\"AAAAAAAAAAAAAAAAAAAAAA\",\"iv\":", 1);
    assert!(matches!(parse_err(duplicated), JweError::Json(_)));
    // An aad member is authenticated: adding one after sealing fails the MAC.
    assert!(matches!(
        open_err(edited(&|v| v["aad"] = b64::encode("extra").into())),
        JweError::Decrypt
    ));
}

// ---------------------------------------------------------------- SD-JWTs

fn issued() -> SdJwt {
    let record = Record::sample_bpds();
    ces::issue(
        doctor(),
        &patient().public(),
        &record,
        &Ceas::default_for(&record),
        IssueOptions {
            issued_at: NOW,
            decoys: 1,
        },
    )
    .unwrap()
}

/// The issuer JWT payload of a valid SD-JWT, edited and re-signed by the real doctor key, with
/// the original disclosures: isolates checks that are not the signature.
fn resigned(edit: impl FnOnce(&mut Value), typ: &str) -> String {
    let sd = issued().serialize();
    let (jwt, rest) = sd.split_once('~').unwrap();
    let mut payload = jws::unverified_payload(jwt).unwrap();
    edit(&mut payload);
    let jwt = jws::sign(&doctor().signing, &jws::Header::es256(typ, None), &payload);
    format!("{jwt}~{rest}")
}

fn verify_err(text: &str) -> CesError {
    let doctor_pub = doctor().public();
    SdJwt::parse(text)
        .and_then(|sd| ces::verify(&sd, &VerifyPolicy::new(&doctor_pub, NOW)))
        .expect_err("kit case must be refused")
}

#[test]
fn sd_jwt_structure_kit() {
    let valid = issued().serialize();
    let (jwt, rest) = valid.split_once('~').unwrap();
    let first_disclosure = rest.split('~').next().unwrap();
    let other = issued().serialize();
    let foreign_disclosure = other.split('~').nth(1).unwrap();
    assert!(
        matches!(verify_err(jwt), CesError::Malformed(_)),
        "no_tilde"
    );
    assert!(
        matches!(
            verify_err(&format!("{jwt}~~{rest}")),
            CesError::Malformed(_)
        ),
        "empty_disclosure"
    );
    assert!(matches!(
        verify_err(&format!("{jwt}~{first_disclosure}~{rest}")),
        CesError::DuplicateDisclosure
    ));
    assert!(matches!(
        verify_err(&format!("{jwt}~{foreign_disclosure}~{rest}")),
        CesError::UnreferencedDisclosure
    ));
    assert!(
        matches!(verify_err(&format!("a.b~{rest}")), CesError::Malformed(_)),
        "issuer_jwt_two_parts"
    );
    assert!(
        matches!(
            verify_err(&format!("{jwt}~bm90IGpzb24~")),
            CesError::Json(_)
        ),
        "disclosure_not_json"
    );
    let changed_value = b64::encode(json!(["c2FsdA", "name", "Mallory"]).to_string());
    assert!(matches!(
        verify_err(&format!("{jwt}~{changed_value}~")),
        CesError::UnreferencedDisclosure
    ));
}

#[test]
fn sd_jwt_issuer_signature_kit() {
    let valid = issued().serialize();
    let (jwt, rest) = valid.split_once('~').unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut sig = b64::decode(parts[2]).unwrap();
    sig[10] ^= 1;
    let bad_sig = format!("{}.{}.{}~{rest}", parts[0], parts[1], b64::encode(sig));
    assert!(matches!(
        verify_err(&bad_sig),
        CesError::IssuerJwt(JwsError::BadSignature)
    ));
    let alg_none = format!(
        "{}.{}.~{rest}",
        b64::encode(r#"{"alg":"none","typ":"emr+sd-jwt"}"#),
        parts[1]
    );
    assert!(matches!(
        verify_err(&alg_none),
        CesError::IssuerJwt(JwsError::UnsupportedAlgorithm)
    ));
    assert!(matches!(
        verify_err(&resigned(|_| {}, "JWT")),
        CesError::IssuerJwt(JwsError::WrongType { .. })
    ));
    let stranger_pub = stranger().public();
    let sd = SdJwt::parse(&valid).unwrap();
    assert!(matches!(
        ces::verify(&sd, &VerifyPolicy::new(&stranger_pub, NOW)),
        Err(CesError::IssuerJwt(JwsError::BadSignature))
    ));
}

#[test]
fn sd_jwt_payload_kit() {
    const TYP: &str = ces::SD_JWT_TYP;
    assert!(matches!(
        verify_err(&resigned(|p| p["_sd_alg"] = "sha-512".into(), TYP)),
        CesError::UnsupportedDigest(_)
    ));
    assert!(matches!(
        verify_err(&resigned(
            |p| {
                let d = p["parts"]["_sd"][0].clone();
                p["parts"]["_sd"].as_array_mut().unwrap().push(d);
            },
            TYP
        )),
        CesError::DuplicateDigest
    ));
    assert!(matches!(
        verify_err(&resigned(|p| p["parts"]["_sd"] = "x".into(), TYP)),
        CesError::Malformed(_)
    ));
    assert!(matches!(
        verify_err(&resigned(
            |p| p["parts"]["examination"] = json!("forged"),
            TYP
        )),
        CesError::ClaimConflict(_)
    ));
    assert!(matches!(
        verify_err(&resigned(
            |p| {
                p["parts"].as_object_mut().unwrap().remove("age");
            },
            TYP
        )),
        CesError::CeasPartMissing(_)
    ));
    assert!(matches!(
        verify_err(&resigned(|p| p["iss"] = "hospital:other".into(), TYP)),
        CesError::WrongIssuer { .. }
    ));
    assert!(matches!(
        verify_err(&resigned(
            |p| {
                p.as_object_mut().unwrap().remove("iss");
            },
            TYP
        )),
        CesError::MissingClaim("iss")
    ));
    assert!(matches!(
        verify_err(&resigned(
            |p| {
                p.as_object_mut().unwrap().remove("parts");
            },
            TYP
        )),
        CesError::UnreferencedDisclosure
    ));
    assert!(matches!(
        verify_err(&resigned(|p| p["exp"] = (NOW - 1).into(), TYP)),
        CesError::Validity
    ));
    assert!(matches!(
        verify_err(&resigned(|p| p["iat"] = (NOW + 3600).into(), TYP)),
        CesError::Validity
    ));
    assert!(matches!(
        verify_err(&resigned(|p| p["nbf"] = "soon".into(), TYP)),
        CesError::Validity
    ));
    assert!(matches!(
        verify_err(&resigned(|p| p["cnf"]["jwk"]["crv"] = "P-384".into(), TYP)),
        CesError::Key(_)
    ));
    assert!(matches!(
        verify_err(&resigned(|p| p["emr_ceas"] = json!([1]), TYP)),
        CesError::MissingClaim("emr_ceas")
    ));
}

#[test]
fn sd_jwt_key_binding_kit() {
    let doctor_pub = doctor().public();
    let patient_pub = patient().public();
    let aud = insurer().id.as_str();
    let policy = VerifyPolicy {
        holder: Some(&patient_pub),
        key_binding: Some(KeyBindingRequirement {
            audience: aud,
            nonce: "n",
        }),
        ..VerifyPolicy::new(&doctor_pub, NOW)
    };
    let extracted = issued().extract(&["examination"]).unwrap();
    let check = |sd: &SdJwt| {
        ces::verify(&SdJwt::parse(&sd.serialize()).unwrap(), &policy).expect_err("must be refused")
    };
    assert!(matches!(check(&extracted), CesError::KeyBindingMissing));
    assert!(matches!(
        check(&extracted.bind(&patient().signing, aud, "other", NOW)),
        CesError::KeyBindingNonce
    ));
    assert!(matches!(
        check(&extracted.bind(&patient().signing, "insurer:x", "n", NOW)),
        CesError::KeyBindingAudience
    ));
    assert!(matches!(
        check(&extracted.bind(&patient().signing, aud, "n", NOW - 3600)),
        CesError::KeyBindingTime
    ));
    assert!(matches!(
        check(&extracted.bind(&patient().signing, aud, "n", NOW + 3600)),
        CesError::KeyBindingTime
    ));
    assert!(matches!(
        check(&extracted.bind(&stranger().signing, aud, "n", NOW)),
        CesError::KeyBindingJwt(JwsError::BadSignature)
    ));
    // A KB-JWT made for one extraction, moved onto another: sd_hash no longer matches.
    let bound = extracted
        .bind(&patient().signing, aud, "n", NOW)
        .serialize();
    let kb = bound.rsplit('~').next().unwrap();
    let other = issued()
        .extract(&["examination", "prescription"])
        .unwrap()
        .serialize();
    let moved = SdJwt::parse(&format!("{other}{kb}")).unwrap();
    assert!(matches!(
        ces::verify(&moved, &policy),
        Err(CesError::KeyBindingHash)
    ));
    // Dropping a disclosure after binding changes what sd_hash covers.
    let bound_two = issued()
        .extract(&["examination", "prescription"])
        .unwrap()
        .bind(&patient().signing, aud, "n", NOW)
        .serialize();
    let mut pieces: Vec<&str> = bound_two.split('~').collect();
    pieces.remove(1);
    assert!(matches!(
        ces::verify(&SdJwt::parse(&pieces.join("~")).unwrap(), &policy),
        Err(CesError::KeyBindingHash)
    ));
    // A KB-JWT of the wrong typ.
    let payload = json!({"aud": aud, "nonce": "n", "iat": NOW, "sd_hash": "x"});
    let wrong_typ = jws::sign(
        &patient().signing,
        &jws::Header::es256("JWT", None),
        &payload,
    );
    let with_wrong_typ = SdJwt::parse(&format!("{}{wrong_typ}", extracted.serialize())).unwrap();
    assert!(matches!(
        ces::verify(&with_wrong_typ, &policy),
        Err(CesError::KeyBindingJwt(JwsError::WrongType { .. }))
    ));
    // Someone else's record, even correctly bound by its real holder, is not this patient's.
    let insurer_pub = insurer().public();
    let other_holder = VerifyPolicy {
        holder: Some(&insurer_pub),
        key_binding: None,
        ..policy
    };
    assert!(matches!(
        ces::verify(&extracted, &other_holder),
        Err(CesError::WrongHolder)
    ));
}
