//! Base64url without padding (RFC 7515 section 2), strict on input: no padding, no whitespace,
//! no non-canonical trailing bits, so one value has exactly one encoding. SIMD-accelerated
//! (`base64-simd`): envelopes of megabytes are base64 end to end.

use base64_simd::URL_SAFE_NO_PAD;

/// A string that is not canonical unpadded base64url.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid base64url")]
pub struct Base64Error;

/// Encodes bytes as unpadded base64url.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode_to_string(bytes)
}

/// Appends the unpadded base64url of `bytes` to `out` (no intermediate buffer: envelopes
/// are megabytes, and fresh large buffers cost page faults).
pub fn encode_into(bytes: impl AsRef<[u8]>, out: &mut String) {
    URL_SAFE_NO_PAD.encode_append(bytes, out);
}

/// Length of the unpadded base64url of `n` bytes.
pub const fn encoded_len(n: usize) -> usize {
    n / 3 * 4 + (n % 3 * 4).div_ceil(3)
}

/// Decodes canonical unpadded base64url.
pub fn decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>, Base64Error> {
    URL_SAFE_NO_PAD.decode_to_vec(text).map_err(|_| Base64Error)
}

/// Decodes canonical unpadded base64url into exactly `N` bytes.
pub fn decode_array<const N: usize>(text: impl AsRef<[u8]>) -> Result<[u8; N], Base64Error> {
    decode(text)?.try_into().map_err(|_| Base64Error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_padding_whitespace_and_standard_alphabet() {
        for bad in ["QQ==", "QQ=", " QQ", "QQ\n", "a+b/", "A", "QR"] {
            assert_eq!(decode(bad), Err(Base64Error), "{bad:?}");
        }
    }

    #[test]
    fn fixed_length_checks_length() {
        assert!(decode_array::<2>(encode([1, 2])).is_ok());
        assert!(decode_array::<3>(encode([1, 2])).is_err());
    }

    proptest! {
        #[test]
        fn roundtrip(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(decode(encode(&bytes)).unwrap(), bytes);
        }

        #[test]
        fn encoded_len_and_encode_into_agree_with_encode(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut out = String::from("x.");
            encode_into(&bytes, &mut out);
            prop_assert_eq!(&out[2..], encode(&bytes));
            prop_assert_eq!(encoded_len(bytes.len()), encode(&bytes).len());
        }

        #[test]
        fn decode_never_panics(text in ".{0,64}") {
            let _ = decode(&text);
        }
    }
}
