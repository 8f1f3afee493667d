//! Content extraction signatures (DESIGN section 4) as SD-JWT (RFC 9901), signed ES256.
//!
//! The doctor signs a [`Record`]: each non-CEAS part becomes a salted, selectively disclosable
//! claim under `parts` (128-bit salts, so a removed low-entropy part cannot be guessed from its
//! digest); CEAS parts are plain claims, present in every extraction by construction. The
//! issuer JWT also carries `iss` (doctor), `sub` (patient), `iat`, `emr_id`, `emr_schema`,
//! `emr_ceas`, and `cnf.jwk` (RFC 7800): the patient's key, which signs the key-binding JWT
//! when the patient presents the record to an institution.
//!
//! Verification ([`verify`]) checks the issuer signature, every disclosure digest, that no
//! disclosure is duplicated or unreferenced, the CEAS, and the key binding when required, and
//! returns a [`VerifiedRecord`]: a value that only a successful verification can make.

use crate::jws::{self, JwsError};
use crate::keys::{KeyError, PartyId, PrivateKeySet, PublicKeySet, SigningKey, VerifyingKey};
use crate::ledger::tx::Role;
use crate::ledger::verify::VerifiedEntry;
use crate::record::{Ceas, Record, RecordError};
use crate::strict_json::{self, StrictJsonError};
use crate::{b64, hazmat};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};

/// `typ` of our issuer JWTs.
pub const SD_JWT_TYP: &str = "emr+sd-jwt";
/// `typ` of key-binding JWTs (RFC 9901 section 4.3).
pub const KB_JWT_TYP: &str = "kb+jwt";
/// Largest accepted SD-JWT text, in bytes.
pub const MAX_SD_JWT_BYTES: usize = 16 * 1024 * 1024;
/// The most disclosures an SD-JWT may carry.
pub const MAX_DISCLOSURES: usize = 1024;
const MAX_NESTING: usize = 64;

/// Why a record cannot be issued, parsed, extracted or verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CesError {
    /// The text is not an SD-JWT of the accepted form (what is wrong).
    #[error("malformed SD-JWT: {0}")]
    Malformed(&'static str),
    /// Over [`MAX_SD_JWT_BYTES`], or more than [`MAX_DISCLOSURES`] disclosures (its length, bytes).
    #[error("SD-JWT of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// The issuer JWT is malformed, or its signature does not verify under the issuer's key.
    #[error("issuer JWT: {0}")]
    IssuerJwt(JwsError),
    /// The key-binding JWT is malformed, or its signature does not verify under the holder's key.
    #[error("key-binding JWT: {0}")]
    KeyBindingJwt(JwsError),
    /// An `_sd_alg` other than `sha-256` (the one given).
    #[error("unsupported _sd_alg {0:?} (only sha-256)")]
    UnsupportedDigest(String),
    /// One disclosure appears twice in the presentation.
    #[error("the same disclosure appears twice")]
    DuplicateDisclosure,
    /// One digest appears twice in the signed payload.
    #[error("a digest is referenced more than once in the payload")]
    DuplicateDigest,
    /// A disclosure that no digest of the signed payload refers to.
    #[error("a disclosure is not referenced by the issuer-signed payload")]
    UnreferencedDisclosure,
    /// A disclosure whose name (given) is already a claim at its place.
    #[error("a disclosure conflicts with claim {0:?}")]
    ClaimConflict(String),
    /// An array element's disclosure where a property's belongs, or the other way round.
    #[error("a disclosure is of the wrong kind for where it is referenced")]
    DisclosureKind,
    /// A required claim (named) is missing or of the wrong type.
    #[error("required claim {0:?} is missing or malformed")]
    MissingClaim(&'static str),
    /// A CEAS part (named) is not in the presentation.
    #[error("CEAS part {0:?} is missing from the presentation")]
    CeasPartMissing(String),
    /// The issuer JWT's `iss` is not the issuer expected.
    #[error("the record was issued by {found}, not the expected {expected}")]
    WrongIssuer {
        /// The issuer expected.
        expected: PartyId,
        /// The `iss` found (cut to 128 characters).
        found: String,
    },
    /// The record's `sub` or `cnf.jwk` is not the expected holder's.
    #[error("the record belongs to another holder")]
    WrongHolder,
    /// The policy requires a key-binding JWT and the presentation has none.
    #[error("a key-binding JWT is required but absent")]
    KeyBindingMissing,
    /// The key-binding JWT's `aud` is not the one required.
    #[error("key-binding JWT audience does not match")]
    KeyBindingAudience,
    /// The key-binding JWT's `nonce` is not the one required.
    #[error("key-binding JWT nonce does not match")]
    KeyBindingNonce,
    /// The key-binding JWT's `iat` is further from now than the allowed skew.
    #[error("key-binding JWT issued outside the accepted time window")]
    KeyBindingTime,
    /// The key-binding JWT's `sd_hash` does not cover this presentation.
    #[error("key-binding JWT sd_hash does not match the presentation")]
    KeyBindingHash,
    /// The record's `iat` or `nbf` is later than now plus the skew, its `exp` has passed, or one is
    /// not a number.
    #[error("the record is expired or not yet valid")]
    Validity,
    /// Extraction names a part (given) that the record has neither as disclosable nor as plain.
    #[error("no disclosable part named {0:?}")]
    UnknownPart(String),
    /// The issuer's registry entry does not allow this record: another ID, a role that does
    /// not issue records, or not active when the record was issued.
    #[error("the issuer's registration does not cover this record: {0}")]
    IssuerRegistration(&'static str),
    /// The issuer or its hospital (which one: `"issuer"`, `"hospital"`) was not admitted,
    /// within its validity and active when the record was issued (it had no key then, or
    /// was suspended, expelled or revoked by then).
    #[error("the record's {0} was not admitted and active when the record was issued")]
    InactiveAtIssue(&'static str),
    /// The record to issue is not valid.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A key (the holder's `cnf.jwk`) or party ID (`iss`) in the record is not valid.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A JSON part of the SD-JWT is not strict JSON of the expected shape.
    #[error("SD-JWT: {0}")]
    Json(#[from] StrictJsonError),
}

/// One disclosure, as encoded and as decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Disclosure {
    encoded: String,
    /// `Some` for an object property, `None` for an array element.
    name: Option<String>,
    value: Value,
}

impl Disclosure {
    fn new_property(name: &str, value: &Value) -> Self {
        let salt = b64::encode(hazmat::random_array::<16>());
        let encoded = b64::encode(json!([salt, name, value]).to_string());
        Self {
            encoded,
            name: Some(name.to_owned()),
            value: value.clone(),
        }
    }

    fn parse(encoded: &str) -> Result<Self, CesError> {
        let json = b64::decode(encoded).map_err(|_| CesError::Malformed("disclosure encoding"))?;
        let Value::Array(items) = strict_json::parse_value(&json)? else {
            return Err(CesError::Malformed("disclosure is not a JSON array"));
        };
        let (name, value) = match items.as_slice() {
            [Value::String(_salt), Value::String(name), value] => {
                (Some(name.clone()), value.clone())
            }
            [Value::String(_salt), value] => (None, value.clone()),
            _ => {
                return Err(CesError::Malformed(
                    "disclosure is not [salt, name, value] or [salt, value]",
                ));
            }
        };
        if name.as_deref().is_some_and(|n| n == "_sd" || n == "...") {
            return Err(CesError::Malformed("disclosure uses a reserved claim name"));
        }
        Ok(Self {
            encoded: encoded.to_owned(),
            name,
            value,
        })
    }

    /// The claim name, for object-property disclosures.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn digest(&self) -> String {
        b64::encode(hazmat::sha256(self.encoded.as_bytes()))
    }
}

/// An SD-JWT: issuer JWT, disclosures, optional key-binding JWT. Unverified.
#[derive(Debug, Clone, PartialEq)]
pub struct SdJwt {
    issuer_jwt: String,
    disclosures: Vec<Disclosure>,
    key_binding: Option<String>,
}

/// Options for [`issue`].
#[derive(Debug, Clone, Copy)]
pub struct IssueOptions {
    /// Unix time of issue.
    pub issued_at: u64,
    /// Decoy digests added to `_sd` to hide how many parts were made disclosable.
    pub decoys: usize,
}

/// The doctor signs `record` for `patient`; non-CEAS parts become selectively disclosable.
pub fn issue(
    doctor: &PrivateKeySet,
    patient: &PublicKeySet,
    record: &Record,
    ceas: &Ceas,
    options: IssueOptions,
) -> Result<SdJwt, CesError> {
    ceas.check(record)?;
    let mut plain = Map::new();
    let mut disclosures = Vec::new();
    for (name, value) in record.parts() {
        if ceas.contains(name) {
            plain.insert(name.clone(), value.clone());
        } else {
            disclosures.push(Disclosure::new_property(name, value));
        }
    }
    let mut digests: Vec<String> = disclosures.iter().map(Disclosure::digest).collect();
    digests.extend(
        (0..options.decoys).map(|_| b64::encode(hazmat::sha256(&hazmat::random_array::<16>()))),
    );
    // Sorted, so the order reveals nothing about which digest is which part (RFC 9901 4.2.4.1).
    digests.sort_unstable();
    if !digests.is_empty() {
        plain.insert("_sd".into(), digests.into());
    }
    let payload = json!({
        "iss": doctor.id.as_str(),
        "sub": patient.id.as_str(),
        "iat": options.issued_at,
        "emr_id": record.record_id(),
        "emr_schema": record.schema(),
        "emr_ceas": ceas.names().collect::<Vec<_>>(),
        "cnf": {"jwk": patient.signing.to_jwk(None)},
        "_sd_alg": "sha-256",
        "parts": plain,
    });
    let header = jws::Header::es256(SD_JWT_TYP, Some(doctor.id.signing_kid()));
    let issuer_jwt = jws::sign(&doctor.signing, &header, &payload);
    Ok(SdJwt {
        issuer_jwt,
        disclosures,
        key_binding: None,
    })
}

impl SdJwt {
    /// Parses the `~`-separated form. Structure only: nothing is verified.
    pub fn parse(text: &str) -> Result<Self, CesError> {
        if text.len() > MAX_SD_JWT_BYTES {
            return Err(CesError::TooLarge(text.len()));
        }
        let text = text.trim_ascii();
        let mut components: Vec<&str> = text.split('~').collect();
        if components.len() < 2 {
            return Err(CesError::Malformed("no '~' separator"));
        }
        if components.len() - 2 > MAX_DISCLOSURES {
            return Err(CesError::TooLarge(text.len()));
        }
        let last = components.pop().expect("at least two components");
        let key_binding = (!last.is_empty()).then(|| last.to_owned());
        let issuer_jwt = components.remove(0).to_owned();
        if issuer_jwt.split('.').count() != 3 {
            return Err(CesError::Malformed("issuer JWT is not a compact JWS"));
        }
        let disclosures = components
            .into_iter()
            .map(|c| {
                if c.is_empty() {
                    Err(CesError::Malformed("empty disclosure"))
                } else {
                    Disclosure::parse(c)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = HashSet::new();
        if !disclosures.iter().all(|d| seen.insert(d.encoded.as_str())) {
            return Err(CesError::DuplicateDisclosure);
        }
        Ok(Self {
            issuer_jwt,
            disclosures,
            key_binding,
        })
    }

    /// `<issuer JWT>~<disclosure>~...~`, the part a key-binding JWT's `sd_hash` covers.
    fn without_key_binding(&self) -> String {
        let mut out = self.issuer_jwt.clone();
        out.push('~');
        for d in &self.disclosures {
            out.push_str(&d.encoded);
            out.push('~');
        }
        out
    }

    /// The `~`-separated text: issuer JWT, disclosures, and the key-binding JWT if any.
    pub fn serialize(&self) -> String {
        let mut out = self.without_key_binding();
        if let Some(kb) = &self.key_binding {
            out.push_str(kb);
        }
        out
    }

    /// The disclosures it carries.
    pub fn disclosures(&self) -> &[Disclosure] {
        &self.disclosures
    }

    /// Whether it ends in a key-binding JWT (not checked here).
    pub fn has_key_binding(&self) -> bool {
        self.key_binding.is_some()
    }

    /// The `iss` claim **unverified**: which doctor's registered keys to look up before
    /// calling [`verify`], which then checks that those keys signed it.
    pub fn claimed_issuer(&self) -> Result<PartyId, CesError> {
        let payload = jws::unverified_payload(&self.issuer_jwt).map_err(CesError::IssuerJwt)?;
        let iss = payload
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(CesError::MissingClaim("iss"))?;
        Ok(PartyId::new(iss)?)
    }

    /// The `iat` claim **unverified**: the time whose registered keys of the issuer to
    /// verify with ([`VerifiedEntry::public_keys_at`]); [`verify_registered`] then checks
    /// that the verified `iat` is that time's and that the key was the one in force.
    pub fn claimed_issued_at(&self) -> Result<u64, CesError> {
        let payload = jws::unverified_payload(&self.issuer_jwt).map_err(CesError::IssuerJwt)?;
        payload
            .get("iat")
            .and_then(Value::as_u64)
            .ok_or(CesError::MissingClaim("iat"))
    }

    /// Keeps only the disclosures of the named parts (CEAS parts are plain claims and always
    /// stay); drops any key binding. Naming a part that is neither disclosable here nor a plain
    /// part is an error, so a typo cannot silently disclose less than intended.
    pub fn extract(&self, keep: &[&str]) -> Result<Self, CesError> {
        let payload = jws::unverified_payload(&self.issuer_jwt).map_err(CesError::IssuerJwt)?;
        let plain = payload.get("parts").and_then(Value::as_object);
        for name in keep {
            let disclosable = self.disclosures.iter().any(|d| d.name() == Some(name));
            let is_plain = plain.is_some_and(|p| p.contains_key(*name));
            if !disclosable && !is_plain {
                return Err(CesError::UnknownPart(name.to_string()));
            }
        }
        let disclosures = self
            .disclosures
            .iter()
            .filter(|d| d.name().is_some_and(|n| keep.contains(&n)))
            .cloned()
            .collect();
        Ok(Self {
            issuer_jwt: self.issuer_jwt.clone(),
            disclosures,
            key_binding: None,
        })
    }

    /// Appends a key-binding JWT signed by the holder (RFC 9901 section 4.3).
    pub fn bind(&self, holder: &SigningKey, audience: &str, nonce: &str, issued_at: u64) -> Self {
        let presented = self.without_key_binding();
        let sd_hash = b64::encode(hazmat::sha256(presented.as_bytes()));
        let payload =
            json!({"aud": audience, "nonce": nonce, "iat": issued_at, "sd_hash": sd_hash});
        let kb = jws::sign(holder, &jws::Header::es256(KB_JWT_TYP, None), &payload);
        Self {
            key_binding: Some(kb),
            ..self.clone()
        }
    }
}

/// What a key-binding JWT must say, when the verifier requires one.
#[derive(Debug, Clone, Copy)]
pub struct KeyBindingRequirement<'a> {
    /// The `aud` the key-binding JWT must name: the verifier's ID.
    pub audience: &'a str,
    /// The `nonce` the key-binding JWT must carry: the verifier's fresh challenge.
    pub nonce: &'a str,
}

/// What the verifier expects.
#[derive(Debug, Clone, Copy)]
pub struct VerifyPolicy<'a> {
    /// The doctor: `iss` must be this ID, signed by this key.
    pub issuer: &'a PublicKeySet,
    /// The patient, when known: `sub` and `cnf.jwk` must be theirs.
    pub holder: Option<&'a PublicKeySet>,
    /// Require a key-binding JWT with this audience and nonce.
    pub key_binding: Option<KeyBindingRequirement<'a>>,
    /// Current Unix time.
    pub now: u64,
    /// Allowed clock difference, and the maximum age of a key-binding JWT, in seconds.
    pub max_skew: u64,
}

impl<'a> VerifyPolicy<'a> {
    /// The skew [`new`](Self::new) and [`verify_registered`] allow, in seconds.
    pub const DEFAULT_MAX_SKEW: u64 = 300;

    /// A policy for records by `issuer`, at `now`: no holder, no key binding, 300 s of skew.
    pub fn new(issuer: &'a PublicKeySet, now: u64) -> Self {
        Self {
            issuer,
            holder: None,
            key_binding: None,
            now,
            max_skew: Self::DEFAULT_MAX_SKEW,
        }
    }
}

/// The roles whose registered keys issue records.
pub const ISSUER_ROLES: &[crate::ledger::tx::Role] = &[
    crate::ledger::tx::Role::Doctor,
    crate::ledger::tx::Role::Hospital,
];

/// A record whose doctor signature, disclosures, CEAS and (if present or required) key
/// binding have been verified. Only [`verify`] makes one.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedRecord {
    issuer: PartyId,
    /// The key the issuer signature verified under.
    issuer_key: VerifyingKey,
    patient: String,
    record_id: String,
    schema: String,
    issued_at: u64,
    ceas: Vec<String>,
    parts: Map<String, Value>,
    holder_key: Option<VerifyingKey>,
    key_bound: bool,
}

impl VerifiedRecord {
    /// The issuer (`iss`): the doctor whose key signed the record.
    pub fn issuer(&self) -> &PartyId {
        &self.issuer
    }
    /// The key the issuer's signature verified under.
    pub fn issuer_key(&self) -> &VerifyingKey {
        &self.issuer_key
    }
    /// The patient (`sub`): its ID.
    pub fn patient(&self) -> &str {
        &self.patient
    }
    /// The record's ID (`emr_id`).
    pub fn record_id(&self) -> &str {
        &self.record_id
    }
    /// The record's schema tag (`emr_schema`).
    pub fn schema(&self) -> &str {
        &self.schema
    }
    /// When the record was issued (`iat`), Unix seconds.
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }
    /// The CEAS parts (`emr_ceas`): present in every extraction.
    pub fn ceas(&self) -> &[String] {
        &self.ceas
    }
    /// The disclosed parts (CEAS parts included).
    pub fn parts(&self) -> &Map<String, Value> {
        &self.parts
    }
    /// The patient's key from `cnf.jwk`.
    pub fn holder_key(&self) -> Option<&VerifyingKey> {
        self.holder_key.as_ref()
    }
    /// True if a key-binding JWT was present and valid.
    pub fn key_bound(&self) -> bool {
        self.key_bound
    }

    /// A JSON summary: issuer, patient, record ID, schema, parts, key binding.
    pub fn to_json(&self) -> Value {
        json!({
            "iss": self.issuer.as_str(),
            "sub": self.patient,
            "record_id": self.record_id,
            "schema": self.schema,
            "iat": self.issued_at,
            "ceas": self.ceas,
            "parts": self.parts,
            "key_bound": self.key_bound,
        })
    }
}

/// Verifies an SD-JWT presentation against `policy`.
pub fn verify(sd_jwt: &SdJwt, policy: &VerifyPolicy) -> Result<VerifiedRecord, CesError> {
    let issuer = jws::verify(&sd_jwt.issuer_jwt, &policy.issuer.signing, SD_JWT_TYP)
        .map_err(CesError::IssuerJwt)?;
    let Value::Object(mut payload) = issuer.payload else {
        unreachable!("jws::verify checks for an object")
    };
    match payload.remove("_sd_alg") {
        None => {}
        Some(Value::String(alg)) if alg == "sha-256" => {}
        Some(other) => return Err(CesError::UnsupportedDigest(other.to_string())),
    }
    let by_digest: HashMap<String, &Disclosure> =
        sd_jwt.disclosures.iter().map(|d| (d.digest(), d)).collect();
    let mut unfolder = Unfolder {
        by_digest,
        seen: HashSet::new(),
        used: HashSet::new(),
    };
    let claims = unfolder.unfold(&Value::Object(payload), 0)?;
    if unfolder.used.len() != sd_jwt.disclosures.len() {
        return Err(CesError::UnreferencedDisclosure);
    }
    let claims = claims.as_object().expect("unfolding keeps objects");
    let text = |name: &'static str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .ok_or(CesError::MissingClaim(name))
    };
    let iss = text("iss")?;
    if iss != policy.issuer.id.as_str() {
        return Err(CesError::WrongIssuer {
            expected: policy.issuer.id.clone(),
            found: iss.chars().take(128).collect(),
        });
    }
    check_validity(claims, policy)?;
    let parts = claims
        .get("parts")
        .and_then(Value::as_object)
        .ok_or(CesError::MissingClaim("parts"))?
        .clone();
    let ceas: Vec<String> = match claims.get("emr_ceas") {
        None => Vec::new(),
        Some(v) => {
            strict_json::from_value(v.clone()).map_err(|_| CesError::MissingClaim("emr_ceas"))?
        }
    };
    if let Some(missing) = ceas.iter().find(|name| !parts.contains_key(*name)) {
        return Err(CesError::CeasPartMissing(missing.clone()));
    }
    let holder_key = match claims.get("cnf").and_then(|c| c.get("jwk")) {
        None => None,
        Some(jwk) => Some(VerifyingKey::from_jwk(&strict_json::from_value(
            jwk.clone(),
        )?)?),
    };
    let patient = text("sub")?.to_owned();
    if let Some(holder) = policy.holder {
        if holder_key.as_ref() != Some(&holder.signing) || patient != holder.id.as_str() {
            return Err(CesError::WrongHolder);
        }
    }
    let key_bound = check_key_binding(sd_jwt, holder_key.as_ref(), policy)?;
    Ok(VerifiedRecord {
        issuer: policy.issuer.id.clone(),
        issuer_key: policy.issuer.signing.clone(),
        patient,
        record_id: text("emr_id")?.to_owned(),
        schema: text("emr_schema")?.to_owned(),
        issued_at: claims
            .get("iat")
            .and_then(Value::as_u64)
            .ok_or(CesError::MissingClaim("iat"))?,
        ceas,
        parts,
        holder_key,
        key_bound,
    })
}

/// Verifies a record against proven registry entries (every flow that accepts a record does
/// it this way): [`verify`] under the issuer's key in force at the record's issue time
/// (`iat`), with `holder` and `key_binding` as in [`VerifyPolicy`], then:
/// - the issuer is `issuer` (the entry's ID), a doctor or a hospital;
/// - `hospital` is the doctor's affiliation (for a hospital issuer: the issuer itself), and
///   a hospital;
/// - both were admitted and active (not suspended, expelled or revoked, within validity)
///   at `iat`: a record issued before an expulsion stays valid, one issued after is refused;
/// - the signature verified under the issuer's key in force at `iat`, so old records stay
///   checkable after a rotation, and a rotated-away key cannot sign new ones.
///
/// `iat` is the issuer's own claim: a holder of an expelled doctor's key can still backdate
/// a record to before the expulsion. See SECURITY.md (trust model).
pub fn verify_registered(
    sd_jwt: &SdJwt,
    issuer: &VerifiedEntry,
    hospital: &VerifiedEntry,
    holder: Option<&PublicKeySet>,
    key_binding: Option<KeyBindingRequirement<'_>>,
    now: u64,
) -> Result<VerifiedRecord, CesError> {
    let template = RegistryPolicy {
        holder,
        key_binding,
        now,
        max_skew: VerifyPolicy::DEFAULT_MAX_SKEW,
    };
    verify_registered_with(sd_jwt, issuer, hospital, template)
}

/// What [`verify_registered`] takes besides the entries: a [`VerifyPolicy`] without the
/// issuer's keys (they come from the entry), with the skew the caller allows.
pub(crate) struct RegistryPolicy<'a> {
    pub(crate) holder: Option<&'a PublicKeySet>,
    pub(crate) key_binding: Option<KeyBindingRequirement<'a>>,
    pub(crate) now: u64,
    pub(crate) max_skew: u64,
}

/// [`verify_registered`] with a chosen skew (the handshake's).
pub(crate) fn verify_registered_with(
    sd_jwt: &SdJwt,
    issuer: &VerifiedEntry,
    hospital: &VerifiedEntry,
    policy: RegistryPolicy<'_>,
) -> Result<VerifiedRecord, CesError> {
    let refused = |why| Err(CesError::IssuerRegistration(why));
    if issuer.id() != &sd_jwt.claimed_issuer()? {
        return refused("the entry is another party's");
    }
    match issuer.role() {
        Role::Doctor => {
            if issuer.affiliation() != Some(hospital.id()) {
                return refused("the doctor is not affiliated with that hospital");
            }
        }
        Role::Hospital => {
            if hospital.id() != issuer.id() {
                return refused("a hospital issues records as its own hospital");
            }
        }
        _ => return refused("its role does not issue records"),
    }
    if hospital.role() != Role::Hospital {
        return refused("the affiliation is not a hospital");
    }
    let keys = issuer
        .public_keys_at(sd_jwt.claimed_issued_at()?)
        .map_err(|_| CesError::IssuerRegistration("its registered keys do not parse"))?
        .ok_or(CesError::InactiveAtIssue("issuer"))?;
    let record = verify(
        sd_jwt,
        &VerifyPolicy {
            issuer: &keys,
            holder: policy.holder,
            key_binding: policy.key_binding,
            now: policy.now,
            max_skew: policy.max_skew,
        },
    )?;
    let at = record.issued_at();
    if !issuer.is_active_at(at) {
        return Err(CesError::InactiveAtIssue("issuer"));
    }
    if !hospital.is_active_at(at) {
        return Err(CesError::InactiveAtIssue("hospital"));
    }
    // The verified `iat` is the claimed one (the same signed payload); checked again so the
    // key rule never rests on that.
    let key_then = issuer
        .public_keys_at(at)
        .map_err(|_| CesError::IssuerRegistration("its registered keys do not parse"))?;
    if key_then.map(|k| k.signing).as_ref() != Some(record.issuer_key()) {
        return refused("the record is not signed by the issuer's key in force at its issue");
    }
    Ok(record)
}

fn check_validity(claims: &Map<String, Value>, policy: &VerifyPolicy) -> Result<(), CesError> {
    let time = |name| {
        claims
            .get(name)
            .map(|v| v.as_u64().ok_or(CesError::Validity))
            .transpose()
    };
    let late = policy.now.saturating_add(policy.max_skew);
    if time("iat")?.is_some_and(|iat| iat > late)
        || time("nbf")?.is_some_and(|nbf| nbf > late)
        || time("exp")?.is_some_and(|exp| exp <= policy.now)
    {
        return Err(CesError::Validity);
    }
    Ok(())
}

/// Verifies the key-binding JWT if there is one; requires one if the policy says so.
fn check_key_binding(
    sd_jwt: &SdJwt,
    holder_key: Option<&VerifyingKey>,
    policy: &VerifyPolicy,
) -> Result<bool, CesError> {
    let Some(kb) = &sd_jwt.key_binding else {
        return match policy.key_binding {
            Some(_) => Err(CesError::KeyBindingMissing),
            None => Ok(false),
        };
    };
    let holder_key = holder_key.ok_or(CesError::MissingClaim("cnf"))?;
    let verified = jws::verify(kb, holder_key, KB_JWT_TYP).map_err(CesError::KeyBindingJwt)?;
    let claim = |name| verified.payload.get(name).and_then(Value::as_str);
    let expected_hash = b64::encode(hazmat::sha256(sd_jwt.without_key_binding().as_bytes()));
    if claim("sd_hash") != Some(expected_hash.as_str()) {
        return Err(CesError::KeyBindingHash);
    }
    let iat = verified
        .payload
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(CesError::MissingClaim("iat"))?;
    if iat > policy.now.saturating_add(policy.max_skew)
        || iat < policy.now.saturating_sub(policy.max_skew)
    {
        return Err(CesError::KeyBindingTime);
    }
    if let Some(required) = policy.key_binding {
        if claim("aud") != Some(required.audience) {
            return Err(CesError::KeyBindingAudience);
        }
        if claim("nonce") != Some(required.nonce) {
            return Err(CesError::KeyBindingNonce);
        }
    }
    Ok(true)
}

/// Replaces digests in the payload by the disclosed claims, recursively (RFC 9901 7.1).
struct Unfolder<'a> {
    by_digest: HashMap<String, &'a Disclosure>,
    /// Every digest met in the payload, disclosed or not: each may appear once.
    seen: HashSet<String>,
    /// Digests whose disclosure was used.
    used: HashSet<String>,
}

impl<'a> Unfolder<'a> {
    fn take(&mut self, digest: &Value) -> Result<Option<&'a Disclosure>, CesError> {
        let digest = digest
            .as_str()
            .ok_or(CesError::Malformed("digest is not a string"))?;
        if !self.seen.insert(digest.to_owned()) {
            return Err(CesError::DuplicateDigest);
        }
        let found = self.by_digest.get(digest).copied();
        if found.is_some() {
            self.used.insert(digest.to_owned());
        }
        Ok(found)
    }

    fn unfold(&mut self, value: &Value, depth: usize) -> Result<Value, CesError> {
        if depth > MAX_NESTING {
            return Err(CesError::Malformed("nesting too deep"));
        }
        match value {
            Value::Object(map) => {
                let mut out = Map::new();
                for (name, inner) in map.iter().filter(|(name, _)| *name != "_sd") {
                    out.insert(name.clone(), self.unfold(inner, depth + 1)?);
                }
                let digests = match map.get("_sd") {
                    None => &Vec::new(),
                    Some(Value::Array(digests)) => digests,
                    Some(_) => return Err(CesError::Malformed("_sd is not an array")),
                };
                for digest in digests {
                    let Some(disclosure) = self.take(digest)? else {
                        continue;
                    };
                    let name = disclosure.name.clone().ok_or(CesError::DisclosureKind)?;
                    let disclosed = self.unfold(&disclosure.value, depth + 1)?;
                    if out.insert(name.clone(), disclosed).is_some() {
                        return Err(CesError::ClaimConflict(name));
                    }
                }
                Ok(Value::Object(out))
            }
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item
                        .as_object()
                        .filter(|o| o.len() == 1)
                        .and_then(|o| o.get("..."))
                    {
                        Some(digest) => {
                            let Some(disclosure) = self.take(digest)? else {
                                continue;
                            };
                            if disclosure.name.is_some() {
                                return Err(CesError::DisclosureKind);
                            }
                            out.push(self.unfold(&disclosure.value, depth + 1)?);
                        }
                        None => out.push(self.unfold(item, depth + 1)?),
                    }
                }
                Ok(Value::Array(out))
            }
            other => Ok(other.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9901 sections 4.2.1 and 4.2.2: example disclosures and their digests.
    #[test]
    fn rfc9901_disclosure_digests() {
        let property = Disclosure::parse(
            "WyJfMjZiYzRMVC1hYzZxMktJNmNCVzVlcyIsICJmYW1pbHlfbmFtZSIsICJNw7ZiaXVzIl0",
        )
        .unwrap();
        assert_eq!(property.name(), Some("family_name"));
        assert_eq!(property.value, json!("Möbius"));
        assert_eq!(
            property.digest(),
            "X9yH0Ajrdm1Oij4tWso9UzzKJvPoDxwmuEcO3XAdRC0"
        );
        let element = Disclosure::parse("WyJsa2x4RjVqTVlsR1RQVW92TU5JdkNBIiwgIkZSIl0").unwrap();
        assert_eq!(element.name(), None);
        assert_eq!(element.value, json!("FR"));
        assert_eq!(
            element.digest(),
            "w0I8EKcdCtUPkGCNUrfwVp2xEgNjtoIDlOxc9-PlOhs"
        );
    }

    #[test]
    fn malformed_disclosures_are_refused() {
        for bad in [
            json!([]),
            json!(["salt"]),
            json!([1, "name", "v"]),
            json!(["salt", 2, "v"]),
            json!(["salt", "_sd", "v"]),
            json!(["salt", "...", "v"]),
            json!(["s", "n", "v", "extra"]),
            json!({"salt": "s"}),
        ] {
            assert!(
                Disclosure::parse(&b64::encode(bad.to_string())).is_err(),
                "{bad}"
            );
        }
        assert!(Disclosure::parse("not base64!").is_err());
        assert!(Disclosure::parse(&b64::encode(r#"["s","n",1,]"#)).is_err());
    }

    #[test]
    fn array_element_disclosures_unfold_in_place() {
        let element = Disclosure::parse("WyJsa2x4RjVqTVlsR1RQVW92TU5JdkNBIiwgIkZSIl0").unwrap();
        let by_digest = HashMap::from([(element.digest(), &element)]);
        let mut unfolder = Unfolder {
            by_digest,
            seen: HashSet::new(),
            used: HashSet::new(),
        };
        let payload = json!({"nationalities": ["DE", {"...": element.digest()}, {"...": "undisclosed-decoy"}]});
        assert_eq!(
            unfolder.unfold(&payload, 0).unwrap(),
            json!({"nationalities": ["DE", "FR"]})
        );
        // An array-element disclosure referenced from an object's _sd is the wrong kind.
        let by_digest = HashMap::from([(element.digest(), &element)]);
        let mut unfolder = Unfolder {
            by_digest,
            seen: HashSet::new(),
            used: HashSet::new(),
        };
        let payload = json!({"_sd": [element.digest()]});
        assert!(matches!(
            unfolder.unfold(&payload, 0),
            Err(CesError::DisclosureKind)
        ));
    }

    /// A record verifies against the registry only if its doctor and the doctor's hospital
    /// were both admitted and active at its issue time, under the doctor's key of that time:
    /// a record issued before an expulsion is kept, one issued after is refused.
    #[test]
    fn records_verify_only_if_doctor_and_hospital_were_active_at_issue() {
        use crate::keys::{DecryptionKey, RsaBits, SigningKey};
        use crate::ledger::governance::{GovAction, Status};
        use crate::ledger::testkit::TestChain;
        use crate::record::{Ceas, Record};
        let mut chain = TestChain::new();
        chain.now = 1_000;
        let hospital = chain.voucher_hospital();
        let doctor = PrivateKeySet::generate(
            Some(PartyId::new("doctor:hospital-vouchers:house").unwrap()),
            RsaBits::B2048,
        );
        chain.enrol(&doctor, crate::ledger::tx::Role::Doctor);
        let patient = PrivateKeySet::generate(None, RsaBits::B2048);
        let record = Record::sample_bpds();
        let sign = |keys: &PrivateKeySet, at: u64| {
            issue(
                keys,
                &patient.public(),
                &record,
                &Ceas::default_for(&record),
                IssueOptions {
                    issued_at: at,
                    decoys: 0,
                },
            )
            .unwrap()
        };
        let check = |chain: &TestChain, sd: &SdJwt, hospital_id: &PartyId| {
            let issuer = chain.verified_entry(&doctor.id).unwrap();
            let hospital = chain.verified_entry(hospital_id).unwrap();
            verify_registered(sd, &issuer, &hospital, None, None, 5_000)
        };
        let before = sign(&doctor, 1_010);
        check(&chain, &before, &hospital.id).unwrap();
        // Issued before the doctor's admission: refused.
        assert!(matches!(
            check(&chain, &sign(&doctor, 999), &hospital.id),
            Err(CesError::InactiveAtIssue("issuer"))
        ));
        // The wrong hospital (not the doctor's affiliation): refused.
        let other = chain.register(Some("hospital:other"), crate::ledger::tx::Role::Hospital);
        assert!(matches!(
            check(&chain, &before, &other.id),
            Err(CesError::IssuerRegistration(_))
        ));
        // The doctor rotates at 1_020: the old record still verifies (old key at its
        // time); the old key cannot sign a record dated after the rotation.
        chain.now = 1_020;
        let mut rotated = PrivateKeySet {
            id: doctor.id.clone(),
            signing: SigningKey::generate(),
            decryption: DecryptionKey::from_jwk(&doctor.decryption.to_jwk(None)).unwrap(),
        };
        let rotation = chain.tx(
            &doctor,
            crate::ledger::tx::TxBody::UpdateKeys {
                id: doctor.id.clone(),
                signing_jwk: rotated.signing.verifying_key().to_jwk(None),
                encryption_jwk: doctor.decryption.encryption_key().to_jwk(None),
            },
        );
        chain.apply(&[rotation]);
        check(&chain, &before, &hospital.id).unwrap();
        assert!(check(&chain, &sign(&doctor, 1_025), &hospital.id).is_err());
        let after_rotation = sign(&rotated, 1_025);
        check(&chain, &after_rotation, &hospital.id).unwrap();
        // The hospital expels its doctor at 1_030.
        chain.now = 1_030;
        let expel = chain.tx(
            &hospital,
            crate::ledger::tx::TxBody::SetDoctorStatus {
                id: doctor.id.clone(),
                status: Status::Expelled,
            },
        );
        chain.apply(&[expel]);
        let entry = chain.verified_entry(&doctor.id).unwrap();
        assert_eq!(entry.ended().unwrap().time, 1_030);
        check(&chain, &before, &hospital.id).unwrap();
        check(&chain, &after_rotation, &hospital.id).unwrap();
        assert!(matches!(
            check(&chain, &sign(&rotated, 1_030), &hospital.id),
            Err(CesError::InactiveAtIssue("issuer"))
        ));
        // A hospital expelled by the council: its own records after that are refused too,
        // and so are its doctors' (checked with the hospital entry).
        let mut second = TestChain::new();
        second.now = 1_000;
        let h = second.voucher_hospital();
        second.enrol(&doctor, crate::ledger::tx::Role::Doctor);
        rotated.id = doctor.id.clone();
        second.now = 1_040;
        let tx = second.govern(GovAction::SetStatus {
            id: h.id.clone(),
            status: Status::Expelled,
        });
        second.apply(&[tx]);
        check(&second, &sign(&doctor, 1_039), &h.id).unwrap();
        assert!(matches!(
            check(&second, &sign(&doctor, 1_041), &h.id),
            Err(CesError::InactiveAtIssue("hospital"))
        ));
        let own = |at| sign(&h, at);
        let hospital_entry = second.verified_entry(&h.id).unwrap();
        let check_own =
            |sd: &SdJwt| verify_registered(sd, &hospital_entry, &hospital_entry, None, None, 5_000);
        check_own(&own(1_039)).unwrap();
        assert!(check_own(&own(1_041)).is_err());
        // Only doctors and hospitals issue.
        let insurer = second.register(Some("insurer:acme"), crate::ledger::tx::Role::Insurer);
        let insurer_entry = second.verified_entry(&insurer.id).unwrap();
        assert!(matches!(
            verify_registered(
                &sign(&insurer, 1_041),
                &insurer_entry,
                &hospital_entry,
                None,
                None,
                5_000
            ),
            Err(CesError::IssuerRegistration(_))
        ));
    }
}
