//! Passphrase wrapping of secrets at rest (private key sets, master secrets).
//!
//! Format: a JSON object `{"protected", "iv", "ciphertext", "tag"}` in the style of a JWE
//! general serialization. `protected` is the base64url of a header naming the format, its
//! version, the KDF and its parameters; it is authenticated as the AAD, so a changed
//! parameter fails the MAC. The key is Argon2id(passphrase, salt) -> 64 bytes, used as an
//! A256CBC-HS512 content key.

use crate::hazmat::{self, a256cbc_hs512};
use crate::strict_json::{self, StrictJsonError};
use crate::{PrivateKeySet, b64};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The `format` the header names.
pub const FORMAT: &str = "emrshare-wrapped-secret";
/// The format's version: the only one read.
pub const VERSION: u32 = 1;

/// Why a secret cannot be wrapped or unwrapped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WrapError {
    /// Not a wrapped secret: a member (named) is not valid base64url, or the salt's size is wrong.
    #[error("not an emrshare wrapped secret: {0}")]
    Malformed(&'static str),
    /// Another format, version, KDF or content encryption than this one.
    #[error("unsupported wrapped-secret format or version")]
    UnsupportedVersion,
    /// KDF parameters outside the accepted range (they bound what an unwrap costs).
    #[error("KDF parameters outside the accepted range")]
    KdfParams,
    /// Wrong passphrase, or the data was changed: the MAC does not verify.
    #[error("wrong passphrase or corrupted data")]
    Decrypt,
    /// The secret is of another content type than the one expected.
    #[error("wrapped content is not a {expected}")]
    ContentType {
        /// The content type expected.
        expected: &'static str,
    },
    /// The wrapped secret or its header is not strict JSON of the expected shape.
    #[error("wrapped secret: {0}")]
    Json(#[from] StrictJsonError),
    /// The unwrapped key set is not valid.
    #[error(transparent)]
    Key(#[from] super::KeyError),
}

/// Argon2id cost. The default (64 MiB, 3 passes) is RFC 9106's second recommended option
/// with one lane, which a phone can afford once per unlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory, KiB (8 MiB to 256 MiB accepted).
    #[serde(rename = "m")]
    pub memory_kib: u32,
    /// Passes over the memory (1 to 8 accepted).
    #[serde(rename = "t")]
    pub iterations: u32,
    /// Lanes (1 to 4 accepted).
    #[serde(rename = "p")]
    pub parallelism: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        Self {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

impl KdfParams {
    /// The cheapest parameters accepted (8 MiB, one pass), for tests and constrained devices.
    pub const MINIMUM: Self = Self {
        memory_kib: 8 * 1024,
        iterations: 1,
        parallelism: 1,
    };

    fn check(&self) -> Result<(), WrapError> {
        // Upper bounds cap what a crafted header can make an unwrap cost (memory and time are
        // spent before the MAC can be checked).
        let ok = (Self::MINIMUM.memory_kib..=256 * 1024).contains(&self.memory_kib)
            && (1..=8).contains(&self.iterations)
            && (1..=4).contains(&self.parallelism);
        if ok {
            Ok(())
        } else {
            Err(WrapError::KdfParams)
        }
    }

    fn derive(&self, passphrase: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 64]>, WrapError> {
        self.check()?;
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(64))
                .map_err(|_| WrapError::KdfParams)?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; 64]);
        argon
            .hash_password_into(passphrase, salt, key.as_mut())
            .map_err(|_| WrapError::KdfParams)?;
        Ok(key)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    kdf: String,
    #[serde(flatten)]
    params: KdfParams,
    salt: String,
    enc: String,
    cty: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapped {
    protected: String,
    iv: String,
    ciphertext: String,
    tag: String,
}

/// Encrypts `secret` under `passphrase`; `content_type` names what it is (checked on unwrap).
pub fn wrap(
    secret: &[u8],
    passphrase: &[u8],
    params: KdfParams,
    content_type: &str,
) -> Result<String, WrapError> {
    let salt = hazmat::random_array::<16>();
    let key = params.derive(passphrase, &salt)?;
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        kdf: "argon2id".into(),
        params,
        salt: b64::encode(salt),
        enc: "A256CBC-HS512".into(),
        cty: content_type.into(),
    };
    let protected = b64::encode(serde_json::to_vec(&header).expect("header serializes"));
    let iv = hazmat::random_array::<16>();
    let (ciphertext, tag) = a256cbc_hs512::encrypt(&key, &iv, protected.as_bytes(), secret);
    let wrapped = Wrapped {
        protected,
        iv: b64::encode(iv),
        ciphertext: b64::encode(ciphertext),
        tag: b64::encode(tag),
    };
    Ok(serde_json::to_string_pretty(&wrapped).expect("wrapped secret serializes"))
}

/// Decrypts a wrapped secret; returns it with its content type.
pub fn unwrap(
    wrapped: &[u8],
    passphrase: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, String), WrapError> {
    let wrapped: Wrapped = strict_json::parse(wrapped)?;
    let header_json =
        b64::decode(&wrapped.protected).map_err(|_| WrapError::Malformed("protected"))?;
    let header: Header = strict_json::parse(&header_json)?;
    if header.format != FORMAT
        || header.version != VERSION
        || header.kdf != "argon2id"
        || header.enc != "A256CBC-HS512"
    {
        return Err(WrapError::UnsupportedVersion);
    }
    let salt = b64::decode(&header.salt).map_err(|_| WrapError::Malformed("salt"))?;
    if !(8..=64).contains(&salt.len()) {
        return Err(WrapError::Malformed("salt"));
    }
    let iv = b64::decode_array::<16>(&wrapped.iv).map_err(|_| WrapError::Malformed("iv"))?;
    let ciphertext =
        b64::decode(&wrapped.ciphertext).map_err(|_| WrapError::Malformed("ciphertext"))?;
    let tag = b64::decode(&wrapped.tag).map_err(|_| WrapError::Malformed("tag"))?;
    let key = header.params.derive(passphrase, &salt)?;
    let secret = a256cbc_hs512::decrypt(&key, &iv, wrapped.protected.as_bytes(), &ciphertext, &tag)
        .map_err(|_| WrapError::Decrypt)?;
    Ok((secret, header.cty))
}

const KEY_SET_CTY: &str = "jwk-set+json";

impl PrivateKeySet {
    /// The private JWK Set encrypted under a passphrase.
    pub fn wrap_with_passphrase(
        &self,
        passphrase: &[u8],
        params: KdfParams,
    ) -> Result<String, WrapError> {
        wrap(self.to_json().as_bytes(), passphrase, params, KEY_SET_CTY)
    }

    /// Unwraps a key set made by [`PrivateKeySet::wrap_with_passphrase`]; a wrapped secret of
    /// another content type is refused.
    pub fn unwrap_with_passphrase(wrapped: &[u8], passphrase: &[u8]) -> Result<Self, WrapError> {
        let (json, cty) = unwrap(wrapped, passphrase)?;
        if cty != KEY_SET_CTY {
            return Err(WrapError::ContentType {
                expected: KEY_SET_CTY,
            });
        }
        Ok(Self::from_json(&json)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams::MINIMUM;

    fn reencode(wrapped: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut v: serde_json::Value = serde_json::from_str(wrapped).unwrap();
        edit(&mut v);
        v.to_string()
    }

    #[test]
    fn roundtrip_and_content_type() {
        let w = wrap(b"master secret", b"correct horse", FAST, "test").unwrap();
        let (secret, cty) = unwrap(w.as_bytes(), b"correct horse").unwrap();
        assert_eq!(&secret[..], b"master secret");
        assert_eq!(cty, "test");
    }

    #[test]
    fn key_set_roundtrip() {
        let keys = crate::keys::tests::party();
        let w = keys.wrap_with_passphrase(b"pw", FAST).unwrap();
        assert!(!w.contains(keys.signing.to_jwk(None).d.as_deref().unwrap()));
        let back = PrivateKeySet::unwrap_with_passphrase(w.as_bytes(), b"pw").unwrap();
        assert_eq!(back.public(), keys.public());
        let other = wrap(b"x", b"pw", FAST, "other").unwrap();
        assert!(matches!(
            PrivateKeySet::unwrap_with_passphrase(other.as_bytes(), b"pw"),
            Err(WrapError::ContentType { .. })
        ));
    }

    #[test]
    fn wrong_passphrase_fails() {
        let w = wrap(b"s", b"pw", FAST, "t").unwrap();
        assert!(matches!(
            unwrap(w.as_bytes(), b"pW"),
            Err(WrapError::Decrypt)
        ));
    }

    #[test]
    fn tampering_anywhere_fails() {
        let w = wrap(b"secret", b"pw", FAST, "t").unwrap();
        for field in ["iv", "ciphertext", "tag"] {
            let bad = reencode(&w, |v| {
                let s = v[field].as_str().unwrap();
                let mut bytes = b64::decode(s).unwrap();
                bytes[0] ^= 1;
                v[field] = b64::encode(bytes).into();
            });
            assert!(
                matches!(unwrap(bad.as_bytes(), b"pw"), Err(WrapError::Decrypt)),
                "{field}"
            );
        }
        // A changed (weaker) KDF parameter in the header fails the MAC.
        let bad = reencode(&w, |v| {
            let mut h: serde_json::Value =
                serde_json::from_slice(&b64::decode(v["protected"].as_str().unwrap()).unwrap())
                    .unwrap();
            h["m"] = (FAST.memory_kib * 2).into();
            v["protected"] = b64::encode(h.to_string()).into();
        });
        assert!(unwrap(bad.as_bytes(), b"pw").is_err());
    }

    #[test]
    fn out_of_range_parameters_are_refused() {
        for params in [
            KdfParams {
                memory_kib: 1024,
                ..FAST
            },
            KdfParams {
                iterations: 0,
                ..FAST
            },
            KdfParams {
                parallelism: 0,
                ..FAST
            },
            KdfParams {
                memory_kib: u32::MAX,
                ..FAST
            },
        ] {
            assert!(matches!(
                wrap(b"s", b"pw", params, "t"),
                Err(WrapError::KdfParams)
            ));
        }
    }

    #[test]
    fn malformed_inputs_are_typed_errors() {
        for bad in [
            "",
            "{}",
            "[]",
            r#"{"protected":"","iv":"","ciphertext":"","tag":""}"#,
            "null",
        ] {
            assert!(unwrap(bad.as_bytes(), b"pw").is_err(), "{bad}");
        }
        let w = wrap(b"s", b"pw", FAST, "t").unwrap();
        let extra = reencode(&w, |v| v["extra"] = 1.into());
        assert!(unwrap(extra.as_bytes(), b"pw").is_err());
    }
}
