//! PKCS#8 import: `SigningKey::from_pkcs8` (P-256) and `DecryptionKey::from_pkcs8` (RSA).
//! Accepted keys must export (PKCS#8 and JWK) and re-import to the same key.
#![no_main]

use emrshare_core::keys::{DecryptionKey, EncryptionKey, SigningKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sk) = SigningKey::from_pkcs8(data) {
        let back = SigningKey::from_pkcs8(&sk.to_pkcs8()).expect("exported PKCS#8 re-imports");
        assert_eq!(back.verifying_key(), sk.verifying_key());
        let via_jwk = SigningKey::from_jwk(&sk.to_jwk(None)).expect("exported JWK re-imports");
        assert_eq!(via_jwk.verifying_key(), sk.verifying_key());
        let sig = sk.sign(b"fuzz");
        assert!(sk.verifying_key().verify(b"fuzz", &sig));
    }
    if let Ok(dk) = DecryptionKey::from_pkcs8(data) {
        assert_eq!(&dk.to_pkcs8()[..], data, "PKCS#8 is stored as given");
        let jwk = dk.to_jwk(None);
        let via_jwk = DecryptionKey::from_jwk(&jwk).expect("exported JWK re-imports");
        assert_eq!(via_jwk.encryption_key(), dk.encryption_key());
        let public = EncryptionKey::from_jwk(&dk.encryption_key().to_jwk(None)).unwrap();
        assert_eq!(&public, dk.encryption_key());
        let _ = format!("{dk:?}");
    }
});
