//! Where a party's secrets live: with the app, behind [`SecretStore`] (Android Keystore, iOS
//! Keychain). The library never writes key material anywhere else.
//!
//! The stored value is one versioned blob: `emrshare-party-secrets/v1\n`, the 32-byte master
//! secret (unlinkable transaction keys, the lookup PRF key), then the private JWK Set. It is
//! built and parsed in zeroizing buffers. Limits, stated plainly: the copy handed to the app
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

const MAGIC: &[u8] = b"emrshare-party-secrets/v1\n";

/// A party's secrets, in memory (zeroized on drop, never printed).
pub(crate) struct PartySecrets {
    pub keys: PrivateKeySet,
    pub master: MasterSecret,
}

impl PartySecrets {
    pub fn generate(keys: PrivateKeySet) -> Self {
        Self {
            keys,
            master: MasterSecret::generate(),
        }
    }

    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let jwks = self.keys.to_json();
        let mut out = Zeroizing::new(Vec::with_capacity(MAGIC.len() + 32 + jwks.len()));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(self.master.to_bytes().as_ref());
        out.extend_from_slice(jwks.as_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = || EmrshareError::SecretStore {
            reason: "the stored keys are not emrshare party secrets v1".into(),
        };
        let rest = bytes.strip_prefix(MAGIC).ok_or_else(corrupt)?;
        if rest.len() < 32 {
            return Err(corrupt());
        }
        let mut master = Zeroizing::new([0u8; 32]);
        master.copy_from_slice(&rest[..32]);
        let keys = PrivateKeySet::from_json(&rest[32..]).map_err(|_| corrupt())?;
        Ok(Self {
            keys,
            master: MasterSecret::from_bytes(*master),
        })
    }

    /// Saves under `name` unless something is stored there already.
    pub fn save_new(&self, store: &Arc<dyn SecretStore>, name: &str) -> Result<()> {
        if store.load(name.into())?.is_some() {
            return Err(EmrshareError::KeysExist);
        }
        store.save(name.into(), self.encode().to_vec())
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
        assert!(PartySecrets::decode(&bytes[..40]).is_err());
        let mut flipped = bytes.to_vec();
        flipped[0] ^= 1;
        assert!(PartySecrets::decode(&flipped).is_err());
    }
}
