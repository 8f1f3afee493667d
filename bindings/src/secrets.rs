//! Where a party's secrets live: with the app, behind [`SecretStore`] (Android Keystore, iOS
//! Keychain). The library never writes key material anywhere else.
//!
//! The stored value is one versioned blob: `emrshare-party-secrets/v2\n`, the 32-byte master
//! secret (unlinkable transaction keys, the lookup PRF key), then the private JWK Sets, each
//! as a 4-byte big-endian length and the JSON: the current keys first, then the keys retired
//! by rotations, newest first (they open what was sealed to them, and sign nothing). Version
//! 1 (the master secret, then one private JWK Set) is still read. It is built and parsed in
//! zeroizing buffers. Limits, stated plainly: the copy handed to the app
//! crosses the FFI as a byte array (uniffi's buffer and the JVM/Swift copy are not zeroized by
//! this library), so the app should seal it at once (Android: AES-GCM under a non-exportable
//! Keystore key) and drop its reference.

use crate::error::{EmrshareError, Result};
use emrshare_core::PrivateKeySet;
use emrshare_core::keys::txkeys::MasterSecret;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The app's secure storage for key material. Implemented in Kotlin / Swift.
#[uniffi::export(foreign)]
pub trait SecretStore: Send + Sync {
    /// Stores `secret` under `name`, replacing any previous value.
    fn save(&self, name: String, secret: Vec<u8>) -> Result<()>;
    /// The value stored under `name`, or none.
    fn load(&self, name: String) -> Result<Option<Vec<u8>>>;
    /// Removes the value stored under `name` (no error if there is none).
    fn delete(&self, name: String) -> Result<()>;
}

/// Told about each step of storing a record. Implemented in Kotlin / Swift; called on a
/// library thread, so UI code must hop to its main thread.
#[uniffi::export(foreign)]
pub trait UploadProgress: Send + Sync {
    fn on_progress(&self, event: crate::UploadEvent);
}

const MAGIC_V1: &[u8] = b"emrshare-party-secrets/v1\n";
const MAGIC: &[u8] = b"emrshare-party-secrets/v2\n";
/// Most key sets one party's secrets hold (its current keys and retired ones).
const MAX_KEY_SETS: usize = 64;

/// A party's secrets, in memory (zeroized on drop, never printed).
pub(crate) struct PartySecrets {
    pub keys: PrivateKeySet,
    pub master: MasterSecret,
    /// Keys retired by rotations, newest first.
    pub retired: Vec<PrivateKeySet>,
}

/// The stored form of `master` and the key sets `sets` (the current keys first, then the
/// retired ones, newest first; see the module's documentation).
pub(crate) fn encode<'a>(
    master: &MasterSecret,
    sets: impl IntoIterator<Item = &'a PrivateKeySet>,
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::new());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(master.to_bytes().as_ref());
    for set in sets {
        let jwks = set.to_json();
        out.extend_from_slice(&(jwks.len() as u32).to_be_bytes());
        out.extend_from_slice(jwks.as_bytes());
    }
    out
}

impl PartySecrets {
    pub fn generate(keys: PrivateKeySet) -> Self {
        Self {
            keys,
            master: MasterSecret::generate(),
            retired: Vec::new(),
        }
    }

    fn encode(&self) -> Zeroizing<Vec<u8>> {
        encode(
            &self.master,
            std::iter::once(&self.keys).chain(&self.retired),
        )
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = || EmrshareError::SecretStore {
            reason: "the stored keys are not emrshare party secrets".into(),
        };
        let (v1, rest) = match (bytes.strip_prefix(MAGIC), bytes.strip_prefix(MAGIC_V1)) {
            (Some(rest), _) => (false, rest),
            (None, Some(rest)) => (true, rest),
            (None, None) => return Err(corrupt()),
        };
        if rest.len() < 32 {
            return Err(corrupt());
        }
        let mut master = Zeroizing::new([0u8; 32]);
        master.copy_from_slice(&rest[..32]);
        let master = MasterSecret::from_bytes(*master);
        let parse = |json: &[u8]| PrivateKeySet::from_json(json).map_err(|_| corrupt());
        if v1 {
            return Ok(Self {
                keys: parse(&rest[32..])?,
                master,
                retired: Vec::new(),
            });
        }
        let mut sets = Vec::new();
        let mut rest = &rest[32..];
        while !rest.is_empty() {
            if rest.len() < 4 || sets.len() == MAX_KEY_SETS {
                return Err(corrupt());
            }
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let json = rest.get(4..4 + len).ok_or_else(corrupt)?;
            sets.push(parse(json)?);
            rest = &rest[4 + len..];
        }
        let mut sets = sets.into_iter();
        let keys = sets.next().ok_or_else(corrupt)?;
        Ok(Self {
            keys,
            master,
            retired: sets.collect(),
        })
    }

    /// Saves under `name` unless something is stored there already.
    pub fn save_new(&self, store: &Arc<dyn SecretStore>, name: &str) -> Result<()> {
        if store.load(name.into())?.is_some() {
            return Err(EmrshareError::KeysExist);
        }
        store.save(name.into(), self.encode().to_vec())
    }

    /// Saves under `name`, replacing what is there (after a rotation).
    pub fn save(store: &Arc<dyn SecretStore>, name: &str, bytes: Zeroizing<Vec<u8>>) -> Result<()> {
        store.save(name.into(), bytes.to_vec())
    }

    pub fn load(store: &Arc<dyn SecretStore>, name: &str) -> Result<Self> {
        let bytes = Zeroizing::new(store.load(name.into())?.ok_or(EmrshareError::NoKeys)?);
        Self::decode(&bytes)
    }
}

impl std::fmt::Debug for PartySecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartySecrets([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emrshare_core::keys::RsaBits;

    #[test]
    fn secrets_round_trip_and_refuse_other_bytes() {
        let secrets = PartySecrets::generate(PrivateKeySet::generate(None, RsaBits::B2048));
        let bytes = secrets.encode();
        let back = PartySecrets::decode(&bytes).unwrap();
        assert_eq!(back.keys.public(), secrets.keys.public());
        assert_eq!(*back.master.to_bytes(), *secrets.master.to_bytes());
        assert!(format!("{back:?}").contains("redacted"));
        assert!(PartySecrets::decode(b"emrshare-party-secrets/v2\n").is_err());
        assert!(PartySecrets::decode(&bytes[..bytes.len() - 1]).is_err());
        // Retired keys come back in order; version 1 is still read.
        let mut rotated = PartySecrets::decode(&bytes).unwrap();
        let old = std::mem::replace(
            &mut rotated.keys,
            PrivateKeySet::generate(Some(secrets.keys.id.clone()), RsaBits::B2048),
        );
        rotated.retired.push(old);
        let back = PartySecrets::decode(&rotated.encode()).unwrap();
        assert_eq!(back.keys.public(), rotated.keys.public());
        assert_eq!(back.retired.len(), 1);
        assert_eq!(back.retired[0].public(), secrets.keys.public());
        let mut v1 = MAGIC_V1.to_vec();
        v1.extend_from_slice(secrets.master.to_bytes().as_ref());
        v1.extend_from_slice(secrets.keys.to_json().as_bytes());
        let back = PartySecrets::decode(&v1).unwrap();
        assert_eq!(back.keys.public(), secrets.keys.public());
        assert!(back.retired.is_empty());
        assert!(PartySecrets::decode(&bytes[..40]).is_err());
        let mut flipped = bytes.to_vec();
        flipped[0] ^= 1;
        assert!(PartySecrets::decode(&flipped).is_err());
    }
}
