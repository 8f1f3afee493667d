//! Patient registration vouchers (DESIGN section 3), sans I/O: RSA blind signatures
//! (RFC 9474, RSABSSA-SHA384-PSS-Randomized) so that an admitted hospital can hand a patient
//! a one-use right to register without the chain, or the hospital itself, being able to link
//! the voucher to the pseudonym it registers.
//!
//! The protocol, in three steps:
//! 1. the patient, knowing its future ID (the thumbprint of its first signing key) and the
//!    hospital's registered voucher key ([`VoucherKey`], from the hospital's verified
//!    registry entry), calls [`blind`]: it keeps a [`PendingVoucher`] and sends the blinded
//!    message to the hospital (in person, or over an authenticated channel of its choice);
//! 2. the hospital, having checked whatever it checks of a person (that it is a patient of
//!    its own, that it gave no voucher to this person before), calls
//!    [`VoucherSecretKey::sign_blind`] and returns the blind signature;
//! 3. the patient calls [`PendingVoucher::finalize`] and gets a [`Voucher`], which its
//!    `RegisterIdentity` transaction carries.
//!
//! The signed message is [`voucher_message`]: a domain tag, the chain ID and the patient's
//! ID. Binding the ID means a voucher seen in a mempool cannot register anybody else; the
//! RFC 9474 message randomizer (32 random bytes chosen by the patient) makes every message
//! unpredictable to the signer. The hospital sees only a uniformly random blinded value, so
//! it cannot tell which registration on chain used the voucher it signed. The chain verifies
//! a voucher against the voucher keys of the hospitals admitted and active at the block, and
//! records the voucher's hash as spent.
//!
//! What is *not* hidden: anybody can try each hospital's public voucher key on a registered
//! voucher and learn which one verifies, i.e. which hospital gave the patient its voucher
//! (blindness hides *which* of that hospital's issuances it was, not the hospital). See
//! SECURITY.md (trust model).
//!
//! Verification uses aws-lc (standard RSASSA-PSS, SHA-384, 48-byte salt, over
//! `randomizer || message`, which is what an RFC 9474 signature is); the blind, sign and
//! finalize steps use the `blind-rsa-signatures` crate (constant-time big integers).

use crate::b64;
use crate::keys::{Jwk, PartyId};
use blind_rsa_signatures::{
    BlindSignature, BlindingResult, DefaultRng, MessageRandomizer, PublicKeySha384PSSRandomized,
    SecretKeySha384PSSRandomized,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroizing;

/// The domain tag of a voucher message.
pub const VOUCHER_DOMAIN: &[u8] = b"emrshare/v1/registration-voucher";
/// Accepted voucher key sizes (bits).
pub const VOUCHER_KEY_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;

/// Why a voucher key or voucher is refused, or a step of the blind protocol failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VoucherError {
    /// A voucher key (public or secret) of the wrong form or size (why, fixed text).
    #[error("invalid voucher key: {0}")]
    Key(&'static str),
    /// A voucher or blinded message whose encoding is wrong (what, fixed text).
    #[error("malformed voucher: {0}")]
    Malformed(&'static str),
    /// The voucher's signature does not verify under the key for this chain and patient.
    #[error("the voucher's signature does not verify")]
    BadSignature,
    /// Blinding, blind signing or finalizing failed (which step, fixed text).
    #[error("blind signature protocol failed: {0}")]
    Protocol(&'static str),
}

/// A hospital's public voucher key: an RSA key (2048 to 4096 bits, e = 65537) published in
/// its admission as a JWK with only `kty`, `n` and `e`.
#[derive(Clone, PartialEq, Eq)]
pub struct VoucherKey {
    n: Vec<u8>,
    e: Vec<u8>,
}

impl fmt::Debug for VoucherKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "VoucherKey({} bits)", bit_length(&self.n))
    }
}

fn bit_length(n: &[u8]) -> usize {
    match n.iter().position(|&b| b != 0) {
        Some(i) => (n.len() - i) * 8 - n[i].leading_zeros() as usize,
        None => 0,
    }
}

impl VoucherKey {
    /// From the big-endian modulus and exponent; refuses sizes outside
    /// [`VOUCHER_KEY_BITS`], an exponent other than 65537, and an even modulus.
    pub fn from_components(n: &[u8], e: &[u8]) -> Result<Self, VoucherError> {
        let n: Vec<u8> = n.iter().copied().skip_while(|&b| b == 0).collect();
        let e: Vec<u8> = e.iter().copied().skip_while(|&b| b == 0).collect();
        if !VOUCHER_KEY_BITS.contains(&bit_length(&n)) {
            return Err(VoucherError::Key("modulus size outside 2048..=4096 bits"));
        }
        if n.last().is_none_or(|b| b & 1 == 0) {
            return Err(VoucherError::Key("even modulus"));
        }
        if e != [1, 0, 1] {
            return Err(VoucherError::Key("public exponent other than 65537"));
        }
        Ok(Self { n, e })
    }

    /// From the JWK of a hospital's admission (public RSA, `alg` absent or [`VOUCHER_JWK_ALG`]).
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, VoucherError> {
        if jwk.kty != "RSA" || jwk.has_private_members() || jwk.crv.is_some() {
            return Err(VoucherError::Key("not a public RSA JWK"));
        }
        if jwk.alg.as_deref().is_some_and(|a| a != VOUCHER_JWK_ALG) {
            return Err(VoucherError::Key("JWK alg is not the voucher scheme's"));
        }
        let member = |m: &Option<String>| {
            m.as_deref()
                .and_then(|t| b64::decode(t).ok())
                .ok_or(VoucherError::Key("missing or malformed n or e"))
        };
        Self::from_components(&member(&jwk.n)?, &member(&jwk.e)?)
    }

    /// The JWK published in an admission: `kty`, `n`, `e`.
    pub fn to_jwk(&self) -> Jwk {
        let mut jwk = Jwk::default();
        jwk.kty = "RSA".into();
        jwk.n = Some(b64::encode(&self.n));
        jwk.e = Some(b64::encode(&self.e));
        jwk
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        bit_length(&self.n)
    }

    fn modulus_bytes(&self) -> usize {
        self.bits().div_ceil(8)
    }

    fn to_blind_rsa(&self) -> Result<PublicKeySha384PSSRandomized, VoucherError> {
        use pkcs1::der::Encode;
        let der = pkcs1::RsaPublicKey {
            modulus: pkcs1::UintRef::new(&self.n).map_err(|_| VoucherError::Key("modulus"))?,
            public_exponent: pkcs1::UintRef::new(&self.e)
                .map_err(|_| VoucherError::Key("exponent"))?,
        }
        .to_der()
        .map_err(|_| VoucherError::Key("cannot encode"))?;
        PublicKeySha384PSSRandomized::from_der(&der)
            .map_err(|_| VoucherError::Key("refused by the blind signature scheme"))
    }

    /// Checks `voucher` for `patient` on `chain_id`: an RSASSA-PSS (SHA-384, 48-byte salt)
    /// signature under this key over `randomizer || voucher_message(chain_id, patient)`.
    pub fn verify(
        &self,
        chain_id: &str,
        patient: &PartyId,
        voucher: &Voucher,
    ) -> Result<(), VoucherError> {
        let (randomizer, signature) = voucher.decode()?;
        if signature.len() != self.modulus_bytes() {
            return Err(VoucherError::BadSignature);
        }
        let mut input = randomizer.to_vec();
        input.extend_from_slice(&voucher_message(chain_id, patient));
        aws_lc_rs::signature::RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(
            &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA384,
            &input,
            &signature,
        )
        .map_err(|_| VoucherError::BadSignature)
    }
}

/// The `alg` a voucher key's JWK may name (none is also accepted).
pub const VOUCHER_JWK_ALG: &str = "RSABSSA-SHA384-PSS-Randomized";

/// The message a voucher signs: `domain || 0 || chain_id || 0 || patient ID`.
pub fn voucher_message(chain_id: &str, patient: &PartyId) -> Vec<u8> {
    let mut message = VOUCHER_DOMAIN.to_vec();
    message.push(0);
    message.extend_from_slice(chain_id.as_bytes());
    message.push(0);
    message.extend_from_slice(patient.as_str().as_bytes());
    message
}

/// A finalized voucher, as a patient's `RegisterIdentity` carries it: the RFC 9474 message
/// randomizer and the signature, both base64url. It names no hospital.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Voucher {
    /// The RFC 9474 message randomizer the patient chose (32 bytes), base64url.
    pub randomizer: String,
    /// The finalized RSASSA-PSS signature, base64url.
    pub signature: String,
}

impl Voucher {
    fn decode(&self) -> Result<([u8; 32], Vec<u8>), VoucherError> {
        let randomizer = b64::decode(&self.randomizer)
            .ok()
            .and_then(|r| <[u8; 32]>::try_from(r).ok())
            .ok_or(VoucherError::Malformed("randomizer is not 32 bytes"))?;
        let signature = b64::decode(&self.signature)
            .map_err(|_| VoucherError::Malformed("signature encoding"))?;
        if signature.len() > 512 {
            return Err(VoucherError::Malformed("signature too long"));
        }
        Ok((randomizer, signature))
    }

    /// The hash the chain records as spent: SHA-256 of the randomizer and signature bytes.
    pub fn spent_hash(&self) -> Result<crate::Hash, VoucherError> {
        let (randomizer, signature) = self.decode()?;
        let mut data = randomizer.to_vec();
        data.extend_from_slice(&signature);
        Ok(crate::Hash::sha256(&data))
    }
}

/// A hospital's private voucher key. Zeroized on drop (by the RSA crate); prints redacted.
pub struct VoucherSecretKey(SecretKeySha384PSSRandomized);

impl fmt::Debug for VoucherSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("VoucherSecretKey([redacted])")
    }
}

impl VoucherSecretKey {
    /// A fresh key of `bits` (2048, 3072 or 4096).
    pub fn generate(bits: usize) -> Result<Self, VoucherError> {
        if !VOUCHER_KEY_BITS.contains(&bits) || bits % 1024 != 0 {
            return Err(VoucherError::Key("size must be 2048, 3072 or 4096 bits"));
        }
        let pair =
            blind_rsa_signatures::KeyPairSha384PSSRandomized::generate(&mut DefaultRng, bits)
                .map_err(|_| VoucherError::Protocol("key generation"))?;
        Ok(Self(pair.sk))
    }

    /// PKCS#8 DER. Holds the secret: keep it wrapped at rest.
    pub fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, VoucherError> {
        self.0
            .to_der()
            .map(Zeroizing::new)
            .map_err(|_| VoucherError::Protocol("export"))
    }

    /// From PKCS#8 DER ([`to_pkcs8`](Self::to_pkcs8)); refuses keys outside [`VOUCHER_KEY_BITS`].
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, VoucherError> {
        let key = SecretKeySha384PSSRandomized::from_der(der)
            .map_err(|_| VoucherError::Key("invalid private key"))?;
        let this = Self(key);
        this.public()?;
        Ok(this)
    }

    /// The public key to publish in the hospital's admission.
    pub fn public(&self) -> Result<VoucherKey, VoucherError> {
        let public = self
            .0
            .public_key()
            .map_err(|_| VoucherError::Key("invalid key"))?;
        let components = public.components();
        VoucherKey::from_components(&components.n(), &components.e())
    }

    /// Signs a blinded message (step 2). The input is uniformly random to the hospital: it
    /// learns nothing of the patient's ID or of the voucher it will become.
    pub fn sign_blind(&self, blinded: &[u8]) -> Result<Vec<u8>, VoucherError> {
        self.0
            .blind_sign(blinded)
            .map(|s| s.0)
            .map_err(|_| VoucherError::Protocol("blinded message of the wrong size or range"))
    }
}

/// The patient's state between [`blind`] and [`PendingVoucher::finalize`]: the blinding
/// secret (zeroized on drop, never printed) and the message randomizer.
pub struct PendingVoucher {
    key: VoucherKey,
    chain_id: String,
    patient: PartyId,
    blinding: BlindingResult,
}

impl fmt::Debug for PendingVoucher {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("PendingVoucher")
            .field("patient", &self.patient)
            .finish_non_exhaustive()
    }
}

impl Drop for PendingVoucher {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.blinding.secret.0.zeroize();
    }
}

/// Step 1: blinds the voucher message for `patient` on `chain_id` under the hospital's
/// `key`. Returns the state to keep and the blinded message to send to the hospital.
pub fn blind(
    key: &VoucherKey,
    chain_id: &str,
    patient: &PartyId,
) -> Result<(PendingVoucher, Vec<u8>), VoucherError> {
    let public = key.to_blind_rsa()?;
    let blinding = public
        .blind(&mut DefaultRng, voucher_message(chain_id, patient))
        .map_err(|_| VoucherError::Protocol("blinding"))?;
    let blinded = blinding.blind_message.0.clone();
    Ok((
        PendingVoucher {
            key: key.clone(),
            chain_id: chain_id.into(),
            patient: patient.clone(),
            blinding,
        },
        blinded,
    ))
}

impl PendingVoucher {
    /// Step 3: unblinds the hospital's blind signature into a voucher, and checks it (a
    /// hospital that signed with another key, or sent garbage, is caught here).
    pub fn finalize(self, blind_signature: &[u8]) -> Result<Voucher, VoucherError> {
        let public = self.key.to_blind_rsa()?;
        let signature = public
            .finalize(
                &BlindSignature(blind_signature.to_vec()),
                &self.blinding,
                voucher_message(&self.chain_id, &self.patient),
            )
            .map_err(|_| VoucherError::BadSignature)?;
        let randomizer: MessageRandomizer = self
            .blinding
            .msg_randomizer
            .ok_or(VoucherError::Protocol("no message randomizer"))?;
        let voucher = Voucher {
            randomizer: b64::encode(randomizer.0),
            signature: b64::encode(&signature.0),
        };
        self.key.verify(&self.chain_id, &self.patient, &voucher)?;
        Ok(voucher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ledger::testkit::{voucher, voucher_key as hospital_key};

    fn patient() -> PartyId {
        PartyId::new(
            crate::keys::SigningKey::generate()
                .verifying_key()
                .thumbprint(),
        )
        .unwrap()
    }

    #[test]
    fn the_protocol_gives_a_voucher_the_public_key_verifies() {
        let key = hospital_key(0);
        let public = key.public().unwrap();
        let p = patient();
        let v = voucher(key, "c", &p);
        public.verify("c", &p, &v).unwrap();
        // Bound to the chain, the patient and the key.
        assert!(public.verify("other", &p, &v).is_err());
        assert!(public.verify("c", &patient(), &v).is_err());
        assert!(
            hospital_key(1)
                .public()
                .unwrap()
                .verify("c", &p, &v)
                .is_err()
        );
        // Tampered randomizer or signature.
        let mut bad = v.clone();
        bad.randomizer = b64::encode([0u8; 32]);
        assert!(public.verify("c", &p, &bad).is_err());
        let mut bad = v.clone();
        let mut sig = b64::decode(&bad.signature).unwrap();
        sig[10] ^= 1;
        bad.signature = b64::encode(&sig);
        assert!(public.verify("c", &p, &bad).is_err());
        // The JWK form round-trips and carries only public members.
        let jwk = public.to_jwk();
        assert!(!jwk.has_private_members());
        assert_eq!(VoucherKey::from_jwk(&jwk).unwrap(), public);
    }

    /// What the hospital sees (the blinded message) is fresh every time, even for the same
    /// patient, and is not the message or the final signature.
    #[test]
    fn the_hospital_sees_nothing_it_can_link() {
        let key = hospital_key(0);
        let public = key.public().unwrap();
        let p = patient();
        let (a, blinded_a) = blind(&public, "c", &p).unwrap();
        let (_b, blinded_b) = blind(&public, "c", &p).unwrap();
        assert_ne!(blinded_a, blinded_b);
        let blind_sig = key.sign_blind(&blinded_a).unwrap();
        let v = a.finalize(&blind_sig).unwrap();
        let sig = b64::decode(&v.signature).unwrap();
        assert_ne!(sig, blind_sig);
        assert_ne!(sig, blinded_a);
        assert_eq!(format!("{key:?}"), "VoucherSecretKey([redacted])");
    }

    #[test]
    fn a_wrong_blind_signature_is_caught_at_finalize() {
        let key = hospital_key(0);
        let p = patient();
        // Signed by another hospital's key. A blinded message at or above that key's modulus
        // is refused by it (as it should be); blind again until one is below.
        let (pending, wrong) = (0..64)
            .find_map(|_| {
                let (pending, blinded) = blind(&key.public().unwrap(), "c", &p).unwrap();
                let wrong = hospital_key(1).sign_blind(&blinded).ok()?;
                Some((pending, wrong))
            })
            .unwrap();
        assert!(pending.finalize(&wrong).is_err());
        let (pending, _) = blind(&key.public().unwrap(), "c", &p).unwrap();
        assert!(pending.finalize(&[0u8; 256]).is_err());
        let (pending, _) = blind(&key.public().unwrap(), "c", &p).unwrap();
        assert!(pending.finalize(b"short").is_err());
        assert!(key.sign_blind(b"short").is_err());
        assert!(key.sign_blind(&[0xff; 256]).is_err());
    }

    #[test]
    fn weak_or_malformed_keys_are_refused() {
        let public = hospital_key(0).public().unwrap();
        let mut jwk = public.to_jwk();
        jwk.e = Some(b64::encode([3]));
        assert!(VoucherKey::from_jwk(&jwk).is_err());
        let mut jwk = public.to_jwk();
        jwk.n = Some(b64::encode([0xffu8; 128]));
        assert!(VoucherKey::from_jwk(&jwk).is_err());
        let mut jwk = public.to_jwk();
        jwk.kty = "EC".into();
        assert!(VoucherKey::from_jwk(&jwk).is_err());
        let mut jwk = public.to_jwk();
        jwk.d = Some("AQAB".into());
        assert!(VoucherKey::from_jwk(&jwk).is_err());
        assert!(VoucherSecretKey::generate(1024).is_err());
        let der = hospital_key(0).to_pkcs8().unwrap();
        let back = VoucherSecretKey::from_pkcs8(&der).unwrap();
        assert_eq!(back.public().unwrap(), public);
        assert!(VoucherSecretKey::from_pkcs8(b"junk").is_err());
    }
}
