//! Key import: `PublicKeySet::from_json`, `PrivateKeySet::from_json`, and a single JWK via
//! `strict_json::parse::<Jwk>` into `VerifyingKey`, `EncryptionKey`, `SigningKey` and
//! `DecryptionKey`. Whatever imports must export and re-import to the same key.
#![no_main]

use emrshare_core::keys::{DecryptionKey, EncryptionKey, Jwk, SigningKey, VerifyingKey};
use emrshare_core::{strict_json, PrivateKeySet, PublicKeySet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = PublicKeySet::from_json(data) {
        let json = set.to_json();
        let again = PublicKeySet::from_json(json.as_bytes())
            .unwrap_or_else(|e| panic!("to_json() of a public set does not re-import: {e}"));
        assert_eq!(again, set);
        let _ = set.is_self_certifying();
    }
    if let Ok(set) = PrivateKeySet::from_json(data) {
        let json = set.to_json();
        let again = PrivateKeySet::from_json(json.as_bytes())
            .unwrap_or_else(|e| panic!("to_json() of a private set does not re-import: {e}"));
        assert_eq!(again.public(), set.public());
        assert_eq!(*again.to_json(), *json, "private set export is not stable");
        assert!(
            PublicKeySet::from_json(json.as_bytes()).is_err(),
            "a private set was accepted as a public one"
        );
        let public = PublicKeySet::from_json(set.public().to_json().as_bytes())
            .unwrap_or_else(|e| panic!("public() of a private set does not import: {e}"));
        assert_eq!(public, set.public());
        let sig = set.signing.sign(b"fuzz");
        assert!(set.signing.verifying_key().verify(b"fuzz", &sig));
    }
    let Ok(jwk) = strict_json::parse::<Jwk>(data) else {
        return;
    };
    let _ = (jwk.thumbprint(), jwk.has_private_members(), format!("{jwk:?}"));
    let verifying = VerifyingKey::from_jwk(&jwk);
    if let Ok(vk) = &verifying {
        assert_eq!(&VerifyingKey::from_jwk(&vk.to_jwk(None)).unwrap(), vk);
        assert_eq!(vk.thumbprint(), jwk.thumbprint(), "EC thumbprint depends on the JWK text");
    }
    let encryption = EncryptionKey::from_jwk(&jwk);
    if let Ok(ek) = &encryption {
        assert!((2048..=4096).contains(&ek.bits()));
        assert_eq!(&EncryptionKey::from_jwk(&ek.to_jwk(Some("k".into()))).unwrap(), ek);
    }
    if let Ok(sk) = SigningKey::from_jwk(&jwk) {
        assert_eq!(Some(sk.verifying_key()), verifying.as_ref().ok());
        let back = SigningKey::from_jwk(&sk.to_jwk(None)).expect("signing key JWK re-imports");
        assert_eq!(back.verifying_key(), sk.verifying_key());
    }
    if let Ok(dk) = DecryptionKey::from_jwk(&jwk) {
        assert_eq!(Some(dk.encryption_key()), encryption.as_ref().ok());
        let back = DecryptionKey::from_jwk(&dk.to_jwk(None)).expect("decryption key JWK re-imports");
        assert_eq!(back.encryption_key(), dk.encryption_key());
    }
});
