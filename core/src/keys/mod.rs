//! Keys and identities (DESIGN section 3).
//!
//! Every party holds a signing key (ECDSA P-256, JOSE `ES256`) and an encryption key (RSA,
//! JOSE `RSA-OAEP-256`, 3072 bits by default, 2048 to 4096 accepted). Public keys travel as a
//! JWK Set with the party's ID; private keys as a private JWK Set or PKCS#8, and at rest only
//! wrapped ([`wrap`]). Patients are identified by the RFC 7638 thumbprint of their signing key.

mod jwk;
pub mod txkeys;
pub mod wrap;

pub use jwk::Jwk;

use crate::hazmat;
use crate::strict_json::{self, StrictJsonError};
use aws_lc_rs::agreement;
use aws_lc_rs::encoding::{AsBigEndian, AsDer};
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey,
};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ParsedPublicKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroizing;

/// Errors from key generation, import and export. Never contains key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A JWK that is malformed, or whose values are not a valid key (what is wrong).
    #[error("invalid JWK: {0}")]
    InvalidJwk(&'static str),
    /// A key of a type, curve, use or algorithm this crate does not take (which).
    #[error("unsupported key: {0}")]
    Unsupported(&'static str),
    /// An RSA modulus outside 2048 to 4096 bits.
    #[error("RSA key of {bits} bits is outside the accepted 2048..=4096")]
    RsaKeySize {
        /// The modulus' size in bits.
        bits: usize,
    },
    /// A private key whose public part does not match it.
    #[error("private and public key components do not match")]
    Inconsistent,
    /// A party ID that is not 1 to 128 characters of `A-Z a-z 0-9 . _ : -`.
    #[error("invalid party ID (1-128 characters of A-Z a-z 0-9 . _ : -)")]
    InvalidId,
    /// A key set without its signing (`sig`) or encryption (`enc`) key.
    #[error("key set lacks its {0} key")]
    MissingKey(&'static str),
    /// A key set with two signing (`sig`) or two encryption (`enc`) keys.
    #[error("key set has more than one {0} key")]
    DuplicateKey(&'static str),
    /// A public key set with private key members.
    #[error("a public key set must not contain private key members")]
    PrivateMemberInPublicSet,
    /// A key set's ID does not match its signing key's thumbprint.
    #[error("key set ID {claimed:?} does not match the key thumbprint")]
    IdMismatch {
        /// The ID the set claims.
        claimed: String,
    },
    /// The secret is too long to wrap with this RSA key.
    #[error("secret too long to wrap with this key")]
    WrapFailed,
    /// The wrapped secret does not decrypt with this key: wrong key or corrupted data.
    #[error("key unwrap failed: wrong key or corrupted data")]
    UnwrapFailed,
    /// Bytes that are not a PKCS#8 private key of the expected kind.
    #[error("invalid PKCS#8 private key")]
    InvalidPkcs8,
    /// A JWK or JWK Set is not strict JSON of the expected shape.
    #[error("key: {0}")]
    Json(#[from] StrictJsonError),
}

/// A party's identity: a registered name such as `hospital:st-marys`, or for a patient the
/// RFC 7638 thumbprint of their signing key (non-identifying, BPDS).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PartyId(String);

impl PartyId {
    /// A party ID of 1 to 128 characters of `A-Z a-z 0-9 . _ : -`, or [`KeyError::InvalidId`].
    pub fn new(id: impl Into<String>) -> Result<Self, KeyError> {
        let id = id.into();
        let valid = (1..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if valid {
            Ok(Self(id))
        } else {
            Err(KeyError::InvalidId)
        }
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `kid` of this party's signing key.
    pub fn signing_kid(&self) -> String {
        format!("{}#sig", self.0)
    }

    /// The `kid` of this party's encryption key.
    pub fn encryption_kid(&self) -> String {
        format!("{}#enc", self.0)
    }
}

impl TryFrom<String> for PartyId {
    type Error = KeyError;
    fn try_from(s: String) -> Result<Self, KeyError> {
        Self::new(s)
    }
}

impl From<PartyId> for String {
    fn from(id: PartyId) -> String {
        id.0
    }
}

impl fmt::Display for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "PartyId({})", self.0)
    }
}

/// An ES256 public key: a validated P-256 point.
#[derive(Clone)]
pub struct VerifyingKey {
    point: [u8; 65],
    parsed: std::sync::Arc<ParsedPublicKey>,
}

impl VerifyingKey {
    /// From an uncompressed SEC1 point `04 || x || y`; rejects points not on the curve.
    pub fn from_sec1_uncompressed(point: &[u8]) -> Result<Self, KeyError> {
        let parsed = hazmat::es256_public_key(point)
            .map_err(|_| KeyError::InvalidJwk("not a P-256 point"))?;
        Ok(Self {
            point: point
                .try_into()
                .expect("length checked by es256_public_key"),
            parsed: std::sync::Arc::new(parsed),
        })
    }

    /// The point's x coordinate, 32 bytes big-endian.
    pub fn x(&self) -> &[u8] {
        &self.point[1..33]
    }

    /// The point's y coordinate, 32 bytes big-endian.
    pub fn y(&self) -> &[u8] {
        &self.point[33..]
    }

    /// The point as `04 || x || y` (uncompressed SEC1).
    pub fn sec1_uncompressed(&self) -> &[u8; 65] {
        &self.point
    }

    /// Verifies an ES256 signature (64-byte `r || s`).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        hazmat::es256_verify(&self.parsed, message, signature).is_ok()
    }

    /// The public EC JWK (P-256) of the key, named `kid` if given.
    pub fn to_jwk(&self, kid: Option<String>) -> Jwk {
        Jwk::ec_public(self.x(), self.y(), kid)
    }

    /// From a public EC JWK; refuses other curves and points not on P-256.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        let (x, y) = jwk.ec_public_coordinates()?;
        let mut point = [4u8; 65];
        point[1..33].copy_from_slice(&x);
        point[33..].copy_from_slice(&y);
        Self::from_sec1_uncompressed(&point)
    }

    /// RFC 7638 thumbprint (SHA-256, base64url): a patient's ID.
    pub fn thumbprint(&self) -> String {
        self.to_jwk(None).thumbprint()
    }
}

impl PartialEq for VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.point == other.point
    }
}
impl Eq for VerifyingKey {}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "VerifyingKey({})", self.thumbprint())
    }
}

/// An ES256 private key.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    public: VerifyingKey,
}

impl SigningKey {
    /// A fresh random P-256 key.
    pub fn generate() -> Self {
        let pair = EcdsaKeyPair::generate(hazmat::es256_key_algorithm())
            .expect("P-256 key generation cannot fail");
        Self::from_pair(pair)
    }

    fn from_pair(pair: EcdsaKeyPair) -> Self {
        let public = VerifyingKey::from_sec1_uncompressed(pair.public_key().as_ref())
            .expect("aws-lc produces valid P-256 points");
        Self { pair, public }
    }

    /// From the private scalar `d` (32 bytes big-endian); `0 < d < n` or an error.
    pub fn from_scalar(d: &[u8]) -> Result<Self, KeyError> {
        let bad = |_| KeyError::InvalidJwk("P-256 private scalar out of range");
        let public = agreement::PrivateKey::from_private_key(&agreement::ECDH_P256, d)
            .map_err(bad)?
            .compute_public_key()
            .map_err(|_| KeyError::Inconsistent)?;
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            hazmat::es256_key_algorithm(),
            d,
            public.as_ref(),
        )
        .map_err(|_| KeyError::Inconsistent)?;
        Ok(Self::from_pair(pair))
    }

    /// From a private EC JWK; refuses one whose `d` does not match its `x` and `y`.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        let public = VerifyingKey::from_jwk(jwk)?;
        let d = jwk.ec_private_scalar()?;
        let key = Self::from_scalar(&d)?;
        if key.public != public {
            return Err(KeyError::Inconsistent);
        }
        Ok(key)
    }

    /// The private EC JWK (with `d`), named `kid` if given. Holds the secret.
    pub fn to_jwk(&self, kid: Option<String>) -> Jwk {
        let d = self.to_scalar();
        Jwk::ec_private(self.public.x(), self.public.y(), &d, kid)
    }

    /// The private scalar `d` (32 bytes big-endian). Holds the secret.
    pub fn to_scalar(&self) -> Zeroizing<Vec<u8>> {
        let bin = self
            .pair
            .private_key()
            .as_be_bytes()
            .expect("P-256 private key export cannot fail");
        Zeroizing::new(bin.as_ref().to_vec())
    }

    /// From PKCS#8 DER of a P-256 key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        EcdsaKeyPair::from_pkcs8(hazmat::es256_key_algorithm(), der)
            .map(Self::from_pair)
            .map_err(|_| KeyError::InvalidPkcs8)
    }

    /// The PKCS#8 (v1) DER of the key. Holds the secret.
    pub fn to_pkcs8(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(
            self.pair
                .to_pkcs8v1()
                .expect("PKCS#8 export cannot fail")
                .as_ref()
                .to_vec(),
        )
    }

    /// The key's public half.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// ES256 signature, fixed 64-byte `r || s`, with a fresh random nonce every time.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        hazmat::es256_sign(&self.pair, message)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SigningKey([redacted], public: {:?})", self.public)
    }
}

/// Accepted RSA modulus sizes: 3072 by default (DESIGN 3), 2048 and 4096 accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RsaBits {
    /// RSA-2048.
    B2048,
    /// RSA-3072: the default.
    #[default]
    B3072,
    /// RSA-4096.
    B4096,
}

impl RsaBits {
    /// The size for a modulus of `bits` bits: 2048, 3072 or 4096, or [`KeyError::RsaKeySize`].
    pub fn from_bits(bits: usize) -> Result<Self, KeyError> {
        match bits {
            2048 => Ok(Self::B2048),
            3072 => Ok(Self::B3072),
            4096 => Ok(Self::B4096),
            bits => Err(KeyError::RsaKeySize { bits }),
        }
    }

    fn key_size(self) -> KeySize {
        match self {
            Self::B2048 => KeySize::Rsa2048,
            Self::B3072 => KeySize::Rsa3072,
            Self::B4096 => KeySize::Rsa4096,
        }
    }
}

const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 4096;

/// An RSA-OAEP-256 public key.
#[derive(Clone)]
pub struct EncryptionKey {
    n: Vec<u8>,
    e: Vec<u8>,
    oaep: std::sync::Arc<OaepPublicEncryptingKey>,
}

impl EncryptionKey {
    /// From the big-endian modulus and exponent.
    pub fn from_components(n: &[u8], e: &[u8]) -> Result<Self, KeyError> {
        let bits = bit_length(n);
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
            return Err(KeyError::RsaKeySize { bits });
        }
        let components = aws_lc_rs::rsa::PublicKeyComponents { n, e };
        let der = components
            .as_der()
            .map_err(|_| KeyError::InvalidJwk("bad RSA public key"))?;
        let public = PublicEncryptingKey::from_der(der.as_ref())
            .map_err(|_| KeyError::InvalidJwk("bad RSA public key"))?;
        let oaep = OaepPublicEncryptingKey::new(public)
            .map_err(|_| KeyError::InvalidJwk("bad RSA public key"))?;
        Ok(Self {
            n: strip_leading_zeros(n).to_vec(),
            e: strip_leading_zeros(e).to_vec(),
            oaep: std::sync::Arc::new(oaep),
        })
    }

    /// The modulus' size in bits.
    pub fn bits(&self) -> usize {
        bit_length(&self.n)
    }

    /// The public RSA JWK of the key, named `kid` if given.
    pub fn to_jwk(&self, kid: Option<String>) -> Jwk {
        Jwk::rsa_public(&self.n, &self.e, kid)
    }

    /// From a public RSA JWK; refuses moduli outside 2048 to 4096 bits.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        let (n, e) = jwk.rsa_public_components()?;
        Self::from_components(&n, &e)
    }

    /// RFC 7638 thumbprint of its JWK (SHA-256, base64url).
    pub fn thumbprint(&self) -> String {
        self.to_jwk(None).thumbprint()
    }

    /// RSA-OAEP-256 encryption of a short secret (a content key).
    pub fn wrap_key(&self, secret: &[u8]) -> Result<Vec<u8>, KeyError> {
        hazmat::rsa_oaep_sha256_encrypt(&self.oaep, secret).map_err(|_| KeyError::WrapFailed)
    }
}

impl PartialEq for EncryptionKey {
    fn eq(&self, other: &Self) -> bool {
        self.n == other.n && self.e == other.e
    }
}
impl Eq for EncryptionKey {}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "EncryptionKey(RSA-{}, {})",
            self.bits(),
            self.thumbprint()
        )
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn bit_length(big_endian: &[u8]) -> usize {
    let bytes = strip_leading_zeros(big_endian);
    match bytes.first() {
        None => 0,
        Some(&top) => bytes.len() * 8 - top.leading_zeros() as usize,
    }
}

/// An RSA-OAEP-256 private key.
pub struct DecryptionKey {
    oaep: OaepPrivateDecryptingKey,
    pkcs8: Zeroizing<Vec<u8>>,
    public: EncryptionKey,
}

impl DecryptionKey {
    /// A fresh random RSA key of `bits`.
    pub fn generate(bits: RsaBits) -> Self {
        let key = PrivateDecryptingKey::generate(bits.key_size())
            .expect("RSA key generation cannot fail");
        let der = key.as_der().expect("PKCS#8 export cannot fail");
        Self::from_pkcs8(der.as_ref()).expect("freshly generated key is valid")
    }

    /// From PKCS#8 DER of an RSA key of 2048 to 4096 bits.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let components = jwk::RsaPrivateComponents::from_pkcs8(der)?;
        let key = PrivateDecryptingKey::from_pkcs8(der).map_err(|_| KeyError::InvalidPkcs8)?;
        let bits = key.key_size_bits();
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
            return Err(KeyError::RsaKeySize { bits });
        }
        let public = EncryptionKey::from_components(&components.n, &components.e)?;
        let oaep = OaepPrivateDecryptingKey::new(key).map_err(|_| KeyError::InvalidPkcs8)?;
        Ok(Self {
            oaep,
            pkcs8: Zeroizing::new(der.to_vec()),
            public,
        })
    }

    /// The key's PKCS#8 DER. Holds the secret.
    pub fn to_pkcs8(&self) -> Zeroizing<Vec<u8>> {
        self.pkcs8.clone()
    }

    /// From a private RSA JWK (two primes only).
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        let components = jwk::RsaPrivateComponents::from_jwk(jwk)?;
        let der = components.to_pkcs8()?;
        let key = Self::from_pkcs8(&der)?;
        Ok(key)
    }

    /// The private RSA JWK, named `kid` if given. Holds the secret.
    pub fn to_jwk(&self, kid: Option<String>) -> Jwk {
        jwk::RsaPrivateComponents::from_pkcs8(&self.pkcs8)
            .expect("stored PKCS#8 was validated on import")
            .to_jwk(kid)
    }

    /// The key's public half.
    pub fn encryption_key(&self) -> &EncryptionKey {
        &self.public
    }

    /// RSA-OAEP-256 decryption of a wrapped secret.
    pub fn unwrap_key(&self, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        hazmat::rsa_oaep_sha256_decrypt(&self.oaep, wrapped).map_err(|_| KeyError::UnwrapFailed)
    }
}

impl fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "DecryptionKey([redacted], public: {:?})", self.public)
    }
}

/// A party's public keys and ID, as published in the registry and in `*.pub.json` files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeySet {
    /// The party's ID.
    pub id: PartyId,
    /// Its ES256 key: verifies its signatures.
    pub signing: VerifyingKey,
    /// Its RSA-OAEP-256 key: what is sealed to the party.
    pub encryption: EncryptionKey,
}

/// A party's private keys and ID.
#[derive(Debug)]
pub struct PrivateKeySet {
    /// The party's ID.
    pub id: PartyId,
    /// Its ES256 key: signs for the party.
    pub signing: SigningKey,
    /// Its RSA-OAEP-256 key: opens what is sealed to the party.
    pub decryption: DecryptionKey,
}

/// The JSON form of a key set: a JWK Set (RFC 7517 section 5) with the party's `id`.
#[derive(Serialize, Deserialize)]
struct JwkSetJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    keys: Vec<Jwk>,
}

const MAX_KEYS_IN_SET: usize = 16;

impl JwkSetJson {
    fn parse(bytes: &[u8]) -> Result<Self, KeyError> {
        let set: Self = strict_json::parse(bytes)?;
        if set.keys.len() > MAX_KEYS_IN_SET {
            return Err(KeyError::InvalidJwk("too many keys in set"));
        }
        Ok(set)
    }

    /// The one key of this type and use in the set.
    fn pick(&self, kty: &str, usage: &'static str) -> Result<&Jwk, KeyError> {
        let mut matching = self
            .keys
            .iter()
            .filter(|k| k.kty == kty && k.use_.as_deref().is_none_or(|u| u == usage));
        let first = matching.next().ok_or(KeyError::MissingKey(usage))?;
        if matching.next().is_some() {
            return Err(KeyError::DuplicateKey(usage));
        }
        Ok(first)
    }

    /// The declared ID, or the thumbprint for a set without one (a patient).
    fn resolve_id(&self, signing: &VerifyingKey) -> Result<PartyId, KeyError> {
        match &self.id {
            Some(id) => PartyId::new(id.clone()),
            None => PartyId::new(signing.thumbprint()),
        }
    }
}

impl PublicKeySet {
    /// From a public JWK Set with the party's `id` (without one: a patient, named by its
    /// thumbprint); refuses private members.
    pub fn from_json(bytes: &[u8]) -> Result<Self, KeyError> {
        let set = JwkSetJson::parse(bytes)?;
        if set.keys.iter().any(Jwk::has_private_members) {
            return Err(KeyError::PrivateMemberInPublicSet);
        }
        let signing = VerifyingKey::from_jwk(set.pick("EC", "sig")?)?;
        let encryption = EncryptionKey::from_jwk(set.pick("RSA", "enc")?)?;
        let id = set.resolve_id(&signing)?;
        Ok(Self {
            id,
            signing,
            encryption,
        })
    }

    /// The public JWK Set with the party's `id`, pretty-printed JSON.
    pub fn to_json(&self) -> String {
        let set = JwkSetJson {
            id: Some(self.id.to_string()),
            keys: vec![
                self.signing.to_jwk(Some(self.id.signing_kid())),
                self.encryption.to_jwk(Some(self.id.encryption_kid())),
            ],
        };
        serde_json::to_string_pretty(&set).expect("JWK set serializes")
    }

    /// True if this ID is the thumbprint of the signing key (a patient's self-certifying ID).
    pub fn is_self_certifying(&self) -> bool {
        self.id.as_str() == self.signing.thumbprint()
    }
}

impl PrivateKeySet {
    /// Fresh keys. Without an ID, the party is a patient, named by its key thumbprint.
    pub fn generate(id: Option<PartyId>, rsa_bits: RsaBits) -> Self {
        let signing = SigningKey::generate();
        let decryption = DecryptionKey::generate(rsa_bits);
        let id = id.unwrap_or_else(|| {
            PartyId::new(signing.verifying_key().thumbprint()).expect("thumbprints are valid IDs")
        });
        Self {
            id,
            signing,
            decryption,
        }
    }

    /// The public half: ID and public keys.
    pub fn public(&self) -> PublicKeySet {
        PublicKeySet {
            id: self.id.clone(),
            signing: self.signing.verifying_key().clone(),
            encryption: self.decryption.encryption_key().clone(),
        }
    }

    /// From a private JWK Set with the party's `id` (without one: a patient, named by its
    /// thumbprint).
    pub fn from_json(bytes: &[u8]) -> Result<Self, KeyError> {
        let set = JwkSetJson::parse(bytes)?;
        let signing = SigningKey::from_jwk(set.pick("EC", "sig")?)?;
        let decryption = DecryptionKey::from_jwk(set.pick("RSA", "enc")?)?;
        let id = set.resolve_id(signing.verifying_key())?;
        Ok(Self {
            id,
            signing,
            decryption,
        })
    }

    /// The private JWK Set. Holds secrets: keep it wrapped at rest ([`wrap`]).
    pub fn to_json(&self) -> Zeroizing<String> {
        let set = JwkSetJson {
            id: Some(self.id.to_string()),
            keys: vec![
                self.signing.to_jwk(Some(self.id.signing_kid())),
                self.decryption.to_jwk(Some(self.id.encryption_kid())),
            ],
        };
        Zeroizing::new(serde_json::to_string_pretty(&set).expect("JWK set serializes"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// RSA key generation is slow; tests share one 2048-bit key set.
    pub(crate) fn party() -> &'static PrivateKeySet {
        static PARTY: OnceLock<PrivateKeySet> = OnceLock::new();
        PARTY.get_or_init(|| PrivateKeySet::generate(None, RsaBits::B2048))
    }

    #[test]
    fn patient_id_is_signing_key_thumbprint() {
        let p = party();
        assert_eq!(p.id.as_str(), p.signing.verifying_key().thumbprint());
        assert_eq!(p.id.as_str().len(), 43);
        assert!(p.public().is_self_certifying());
    }

    #[test]
    fn private_set_roundtrips_through_json() {
        let p = party();
        let json = p.to_json();
        let back = PrivateKeySet::from_json(json.as_bytes()).unwrap();
        assert_eq!(back.public(), p.public());
        assert_eq!(*back.to_json(), *json);
    }

    #[test]
    fn public_set_roundtrips_and_refuses_private_members() {
        let p = party();
        let public = p.public();
        assert_eq!(
            PublicKeySet::from_json(public.to_json().as_bytes()).unwrap(),
            public
        );
        assert!(matches!(
            PublicKeySet::from_json(p.to_json().as_bytes()),
            Err(KeyError::PrivateMemberInPublicSet)
        ));
    }

    #[test]
    fn pkcs8_roundtrips() {
        let p = party();
        let sig = SigningKey::from_pkcs8(&p.signing.to_pkcs8()).unwrap();
        assert_eq!(sig.verifying_key(), p.signing.verifying_key());
        let dec = DecryptionKey::from_pkcs8(&p.decryption.to_pkcs8()).unwrap();
        assert_eq!(dec.encryption_key(), p.decryption.encryption_key());
        assert!(SigningKey::from_pkcs8(&p.decryption.to_pkcs8()).is_err());
        assert!(DecryptionKey::from_pkcs8(&p.signing.to_pkcs8()).is_err());
        assert!(DecryptionKey::from_pkcs8(b"not der").is_err());
    }

    #[test]
    fn signatures_verify_only_for_their_message_and_key() {
        let p = party();
        let sig = p.signing.sign(b"msg");
        assert!(p.signing.verifying_key().verify(b"msg", &sig));
        assert!(!p.signing.verifying_key().verify(b"msG", &sig));
        assert!(!p.signing.verifying_key().verify(b"msg", &sig[..63]));
        let other = SigningKey::generate();
        assert!(!other.verifying_key().verify(b"msg", &sig));
    }

    #[test]
    fn key_wrap_roundtrips_and_refuses_foreign_or_damaged_input() {
        let p = party();
        let wrapped = p.decryption.encryption_key().wrap_key(&[9u8; 64]).unwrap();
        assert_eq!(wrapped.len(), 256);
        assert_eq!(&p.decryption.unwrap_key(&wrapped).unwrap()[..], &[9u8; 64]);
        let mut damaged = wrapped.clone();
        damaged[100] ^= 1;
        assert!(matches!(
            p.decryption.unwrap_key(&damaged),
            Err(KeyError::UnwrapFailed)
        ));
        assert!(p.decryption.unwrap_key(&wrapped[1..]).is_err());
        let other = DecryptionKey::generate(RsaBits::B2048);
        assert!(other.unwrap_key(&wrapped).is_err());
        assert!(matches!(
            p.decryption.encryption_key().wrap_key(&[0u8; 300]),
            Err(KeyError::WrapFailed)
        ));
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let p = party();
        let debug = format!("{p:?}");
        assert!(debug.contains("[redacted]"));
        let d = p.signing.to_jwk(None).d.clone().unwrap();
        assert!(!debug.contains(&d));
        let jwk_debug = format!("{:?}", p.decryption.to_jwk(None));
        assert!(!jwk_debug.contains(p.decryption.to_jwk(None).d.as_deref().unwrap()));
    }

    #[test]
    fn party_ids_are_validated() {
        for good in ["hospital:st-marys", "a", "insurer:acme.health_1"] {
            assert!(PartyId::new(good).is_ok(), "{good}");
        }
        for bad in ["", "with space", "a#b", "é", "x~y", &"a".repeat(129)] {
            assert!(PartyId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rsa_sizes_outside_policy_are_refused() {
        assert!(RsaBits::from_bits(1024).is_err());
        assert!(RsaBits::from_bits(3000).is_err());
        let tiny_n = [0xC5u8; 128]; // 1024-bit modulus
        assert!(matches!(
            EncryptionKey::from_components(&tiny_n, &[1, 0, 1]),
            Err(KeyError::RsaKeySize { bits: 1024 })
        ));
    }

    #[test]
    fn mismatched_private_and_public_ec_components_are_refused() {
        let a = SigningKey::generate().to_jwk(None);
        let b = SigningKey::generate().to_jwk(None);
        let mut mixed = a.clone();
        mixed.d = b.d.clone();
        assert!(matches!(
            SigningKey::from_jwk(&mixed),
            Err(KeyError::Inconsistent)
        ));
    }

    #[test]
    fn scalar_out_of_range_is_refused() {
        assert!(SigningKey::from_scalar(&[0u8; 32]).is_err());
        assert!(SigningKey::from_scalar(&[0xFFu8; 32]).is_err());
        assert!(SigningKey::from_scalar(&[1u8; 31]).is_err());
    }

    #[test]
    fn key_sets_with_missing_or_duplicate_keys_are_refused() {
        let p = party();
        let sig = p.signing.verifying_key().to_jwk(None);
        let enc = p.decryption.encryption_key().to_jwk(None);
        let set = |keys: Vec<Jwk>| serde_json::to_vec(&JwkSetJson { id: None, keys }).unwrap();
        assert!(matches!(
            PublicKeySet::from_json(&set(vec![sig.clone()])),
            Err(KeyError::MissingKey("enc"))
        ));
        assert!(matches!(
            PublicKeySet::from_json(&set(vec![sig.clone(), sig.clone(), enc.clone()])),
            Err(KeyError::DuplicateKey("sig"))
        ));
        assert!(PublicKeySet::from_json(&set(vec![enc, sig])).is_ok());
        assert!(PublicKeySet::from_json(br#"{"keys":[],"keys":[]}"#).is_err());
    }
}
