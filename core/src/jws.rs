//! Compact JWS (RFC 7515) with ES256 only: the signature layer of SD-JWT issuer and
//! key-binding JWTs. `alg` is pinned (no `none`, no HMAC, no algorithm confusion), `typ` is
//! checked against what the caller expects (no JWT type confusion), `crit` is refused.

use crate::b64;
use crate::keys::{SigningKey, VerifyingKey};
use crate::strict_json::{self, StrictJsonError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a JWS is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// Not a compact JWS of three base64url parts with a JSON object payload (what is wrong).
    #[error("malformed JWS: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not `ES256`.
    #[error("JWS algorithm is not ES256")]
    UnsupportedAlgorithm,
    /// The header's `typ` is not the one the caller expects.
    #[error("JWS has typ {found:?}, expected {expected:?}")]
    WrongType {
        /// The `typ` expected.
        expected: &'static str,
        /// The `typ` found, if any.
        found: Option<String>,
    },
    /// The header has critical parameters (`crit`).
    #[error("JWS uses critical header parameters")]
    Critical,
    /// The signature does not verify under the key given.
    #[error("JWS signature does not verify")]
    BadSignature,
    /// The header or payload is not strict JSON of the expected shape.
    #[error("JWS: {0}")]
    Json(#[from] StrictJsonError),
}

/// The protected header members we write and read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    /// The signature algorithm: always `ES256` in what is accepted.
    pub alg: String,
    /// The token's type (`typ`), which the verifier checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// The ID of the signing key (`kid`), if the signer names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing)]
    crit: Option<Value>,
}

impl Header {
    /// An ES256 header of type `typ`, naming the key `kid` if given.
    pub fn es256(typ: &str, kid: Option<String>) -> Self {
        Self {
            alg: "ES256".into(),
            typ: Some(typ.into()),
            kid,
            crit: None,
        }
    }
}

/// Signs `payload` (JSON) as a compact JWS.
pub fn sign(key: &SigningKey, header: &Header, payload: &Value) -> String {
    let mut token = b64::encode(serde_json::to_vec(header).expect("header serializes"));
    token.push('.');
    token.push_str(&b64::encode(
        serde_json::to_vec(payload).expect("payload serializes"),
    ));
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&b64::encode(signature));
    token
}

/// A JWS whose signature has been checked; holds its header and JSON payload.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The protected header.
    pub header: Header,
    /// The payload: a JSON object.
    pub payload: Value,
}

/// Verifies a compact ES256 JWS and parses its payload as strict JSON.
pub fn verify(
    token: &str,
    key: &VerifyingKey,
    expected_typ: &'static str,
) -> Result<Verified, JwsError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed("expected three dot-separated parts"));
    };
    let header_json =
        b64::decode(header_b64).map_err(|_| JwsError::Malformed("header encoding"))?;
    let header: Header = strict_json::parse(&header_json)?;
    if header.alg != "ES256" {
        return Err(JwsError::UnsupportedAlgorithm);
    }
    if header.crit.is_some() {
        return Err(JwsError::Critical);
    }
    if header.typ.as_deref() != Some(expected_typ) {
        return Err(JwsError::WrongType {
            expected: expected_typ,
            found: header.typ,
        });
    }
    let signature =
        b64::decode(signature_b64).map_err(|_| JwsError::Malformed("signature encoding"))?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    if !key.verify(signing_input.as_bytes(), &signature) {
        return Err(JwsError::BadSignature);
    }
    let payload_json =
        b64::decode(payload_b64).map_err(|_| JwsError::Malformed("payload encoding"))?;
    let payload = strict_json::parse_value(&payload_json)?;
    if !payload.is_object() {
        return Err(JwsError::Malformed("payload is not a JSON object"));
    }
    Ok(Verified { header, payload })
}

/// The payload of a compact JWS **without** checking its signature: only for deciding what to
/// do with a token before verifying it (e.g. which disclosures an extraction keeps).
pub fn unverified_payload(token: &str) -> Result<Value, JwsError> {
    let payload_b64 = token
        .split('.')
        .nth(1)
        .ok_or(JwsError::Malformed("expected three dot-separated parts"))?;
    let payload_json =
        b64::decode(payload_b64).map_err(|_| JwsError::Malformed("payload encoding"))?;
    Ok(strict_json::parse_value(&payload_json)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token_with_header(key: &SigningKey, header: Value) -> String {
        let h = b64::encode(header.to_string());
        let p = b64::encode(json!({"a": 1}).to_string());
        let sig = key.sign(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", b64::encode(sig))
    }

    #[test]
    fn sign_then_verify() {
        let key = SigningKey::generate();
        let t = sign(
            &key,
            &Header::es256("x+jwt", Some("k".into())),
            &json!({"a": [1, 2]}),
        );
        let v = verify(&t, key.verifying_key(), "x+jwt").unwrap();
        assert_eq!(v.payload, json!({"a": [1, 2]}));
        assert_eq!(v.header.kid.as_deref(), Some("k"));
    }

    #[test]
    fn refuses_wrong_key_type_alg_crit_and_shape() {
        let key = SigningKey::generate();
        let t = sign(&key, &Header::es256("x+jwt", None), &json!({}));
        assert!(matches!(
            verify(&t, SigningKey::generate().verifying_key(), "x+jwt"),
            Err(JwsError::BadSignature)
        ));
        assert!(matches!(
            verify(&t, key.verifying_key(), "y+jwt"),
            Err(JwsError::WrongType { .. })
        ));
        for (header, want) in [
            (json!({"alg": "none", "typ": "x+jwt"}), "alg"),
            (json!({"alg": "HS256", "typ": "x+jwt"}), "alg"),
            (
                json!({"alg": "ES256", "typ": "x+jwt", "crit": ["b64"]}),
                "crit",
            ),
        ] {
            let bad = token_with_header(&key, header);
            let err = verify(&bad, key.verifying_key(), "x+jwt").unwrap_err();
            match want {
                "alg" => assert!(matches!(err, JwsError::UnsupportedAlgorithm)),
                _ => assert!(matches!(err, JwsError::Critical)),
            }
        }
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            &format!("{t}."),
            &t.replace('.', ".."),
        ] {
            assert!(verify(bad, key.verifying_key(), "x+jwt").is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_duplicate_header_members_and_non_object_payload() {
        let key = SigningKey::generate();
        let h = b64::encode(r#"{"alg":"ES256","typ":"x+jwt","typ":"x+jwt"}"#);
        let p = b64::encode("{}");
        let sig = b64::encode(key.sign(format!("{h}.{p}").as_bytes()));
        assert!(matches!(
            verify(&format!("{h}.{p}.{sig}"), key.verifying_key(), "x+jwt"),
            Err(JwsError::Json(_))
        ));
        let h = b64::encode(r#"{"alg":"ES256","typ":"x+jwt"}"#);
        let p = b64::encode("[1]");
        let sig = b64::encode(key.sign(format!("{h}.{p}").as_bytes()));
        assert!(matches!(
            verify(&format!("{h}.{p}.{sig}"), key.verifying_key(), "x+jwt"),
            Err(JwsError::Malformed(_))
        ));
    }
}
