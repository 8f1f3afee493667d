//! Unlinkable per-transaction signing keys (BPDS anonymity).
//!
//! Each ledger transaction of a patient is signed with a fresh P-256 key derived from the
//! patient's 256-bit master secret: `HKDF-SHA256(salt = label, ikm = master, info = context)`.
//! The same (master, context) always gives the same key, so the patient can re-derive it and
//! prove ownership later; without the master secret, two derived public keys look like two
//! independent random keys, so the chain cannot link them.

use super::SigningKey;
use crate::hazmat;
use aws_lc_rs::hkdf;
use std::fmt;
use zeroize::Zeroizing;

const SALT: &[u8] = b"emrshare/v1/transaction-key";
const SECRET_SALT: &[u8] = b"emrshare/v1/secret";

/// A patient's master secret: 32 random bytes, zeroized on drop, never printed.
pub struct MasterSecret(Zeroizing<[u8; 32]>);

impl MasterSecret {
    /// 32 fresh random bytes.
    pub fn generate() -> Self {
        Self(Zeroizing::new(hazmat::random_array()))
    }

    /// A master secret restored from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The 32 bytes, to store (wrapped) or back up. Zeroized on drop.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        self.0.clone()
    }

    /// The signing key for one transaction context (e.g. `"grant/2026-11-22/7"`).
    pub fn derive_transaction_key(&self, context: &str) -> SigningKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(self.0.as_ref());
        // Rejection sampling: a candidate outside [1, n-1] (probability about 2^-32) moves on
        // to the next counter value, so the result stays uniform and deterministic.
        for counter in 0u8..=u8::MAX {
            let mut scalar = Zeroizing::new([0u8; 32]);
            prk.expand(&[context.as_bytes(), &[counter]], hkdf::HKDF_SHA256)
                .and_then(|okm| okm.fill(scalar.as_mut()))
                .expect("32 bytes is a valid HKDF-SHA256 output length");
            if let Ok(key) = SigningKey::from_scalar(scalar.as_ref()) {
                return key;
            }
        }
        unreachable!("256 consecutive out-of-range HKDF outputs")
    }

    /// A 256-bit symmetric secret for one context (e.g. the key that seals a record's index
    /// entry): `HKDF-SHA256(salt = another label, ikm = master, info = context)`, so it is
    /// independent of every signing key derived from the same master.
    pub fn derive_secret(&self, context: &str) -> Zeroizing<[u8; 32]> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SECRET_SALT).extract(self.0.as_ref());
        let mut secret = Zeroizing::new([0u8; 32]);
        prk.expand(&[context.as_bytes()], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(secret.as_mut()))
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        secret
    }
}

impl fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("MasterSecret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_give_same_key() {
        let m = MasterSecret::from_bytes([7; 32]);
        let a = m.derive_transaction_key("grant/1");
        let b = m.derive_transaction_key("grant/1");
        assert_eq!(a.verifying_key(), b.verifying_key());
    }

    #[test]
    fn different_contexts_or_masters_give_different_keys() {
        let m = MasterSecret::from_bytes([7; 32]);
        let keys: Vec<_> = ["grant/1", "grant/2", "upload/1", ""]
            .iter()
            .map(|c| m.derive_transaction_key(c).verifying_key().clone())
            .collect();
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j]);
            }
        }
        let other = MasterSecret::from_bytes([8; 32]).derive_transaction_key("grant/1");
        assert_ne!(other.verifying_key(), &keys[0]);
    }

    #[test]
    fn secrets_are_deterministic_per_context_and_not_the_signing_scalar() {
        let m = MasterSecret::from_bytes([7; 32]);
        assert_eq!(*m.derive_secret("record/0"), *m.derive_secret("record/0"));
        assert_ne!(*m.derive_secret("record/0"), *m.derive_secret("record/1"));
        let other = MasterSecret::from_bytes([8; 32]);
        assert_ne!(
            *m.derive_secret("record/0"),
            *other.derive_secret("record/0")
        );
        // Another salt: the secret for a context is not the key derived for it.
        let key = m.derive_transaction_key("record/0").to_pkcs8();
        assert!(
            !key.windows(32)
                .any(|w| w == m.derive_secret("record/0").as_ref())
        );
    }

    #[test]
    fn derived_keys_sign_and_debug_is_redacted() {
        let m = MasterSecret::generate();
        let k = m.derive_transaction_key("t");
        assert!(k.verifying_key().verify(b"x", &k.sign(b"x")));
        assert_eq!(format!("{m:?}"), "MasterSecret([redacted])");
    }
}
