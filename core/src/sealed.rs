//! Short texts sealed under a 256-bit secret that only its owners derive (a patient's
//! record secrets, [`crate::keys::txkeys`]): a record's index entry, an access log's details.
//!
//! Format: base64url of `nonce (12 bytes) || AES-256-GCM ciphertext || tag`, with a context
//! string as associated data, so a sealed text moved to another place (another record, a log
//! moved to an index entry) does not open. No key ID and no header: a sealed text says
//! nothing about whose it is. A random 96-bit nonce per text; a secret seals a few thousand
//! texts at most (one record's entry and logs), far below GCM's 2^32 random-nonce bound.

use crate::b64;
use crate::hazmat::{self, aes256_gcm};
use zeroize::Zeroizing;

/// The longest sealed text accepted (base64url): room for an access log's or an index
/// entry's few hundred bytes, and no more.
pub const MAX_SEALED_CHARS: usize = 4096;

/// Why a sealed text does not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealedError {
    /// Not base64url, too short, or over [`MAX_SEALED_CHARS`].
    #[error("malformed sealed text")]
    Malformed,
    /// The tag does not verify: another secret, another context, or altered.
    #[error("the sealed text does not open with this secret and context")]
    Open,
}

/// Seals `plaintext` under `secret`, bound to `context`.
pub fn seal(secret: &[u8; 32], context: &str, plaintext: &[u8]) -> String {
    let nonce: [u8; aes256_gcm::NONCE_LEN] = hazmat::random_array();
    let mut out = nonce.to_vec();
    out.extend(aes256_gcm::seal(
        secret,
        nonce,
        context.as_bytes(),
        plaintext,
    ));
    b64::encode(&out)
}

/// Opens a text [`seal`]ed under `secret` for `context`.
pub fn open(
    secret: &[u8; 32],
    context: &str,
    sealed: &str,
) -> Result<Zeroizing<Vec<u8>>, SealedError> {
    if sealed.len() > MAX_SEALED_CHARS {
        return Err(SealedError::Malformed);
    }
    let bytes = b64::decode(sealed).map_err(|_| SealedError::Malformed)?;
    if bytes.len() < aes256_gcm::NONCE_LEN + aes256_gcm::TAG_LEN {
        return Err(SealedError::Malformed);
    }
    let (nonce, body) = bytes.split_at(aes256_gcm::NONCE_LEN);
    let nonce: [u8; aes256_gcm::NONCE_LEN] = nonce.try_into().expect("split at the nonce length");
    aes256_gcm::open(secret, nonce, context.as_bytes(), body).map_err(|_| SealedError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_with_its_secret_and_context() {
        let text = seal(&[1; 32], "record/0/index", b"entry");
        assert_eq!(&*open(&[1; 32], "record/0/index", &text).unwrap(), b"entry");
        assert_eq!(
            open(&[2; 32], "record/0/index", &text),
            Err(SealedError::Open)
        );
        assert_eq!(
            open(&[1; 32], "record/1/index", &text),
            Err(SealedError::Open)
        );
        // Fresh nonces: the same plaintext seals to different texts.
        assert_ne!(text, seal(&[1; 32], "record/0/index", b"entry"));
    }

    #[test]
    fn malformed_altered_and_oversized_texts_are_refused() {
        let text = seal(&[1; 32], "c", b"entry");
        for bad in ["", "!!", "AAAA", &"A".repeat(MAX_SEALED_CHARS + 1)] {
            assert_eq!(
                open(&[1; 32], "c", bad),
                Err(SealedError::Malformed),
                "{bad:.10}"
            );
        }
        let mut bytes = b64::decode(&text).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            open(&[1; 32], "c", &b64::encode(&bytes)),
            Err(SealedError::Open)
        );
    }
}
