//! [`Hash`]: a SHA-256 output as a type of its own, so a hash is never confused with other 32
//! bytes (a key, a nonce) and always prints, parses and travels in JSON the same way: as 64
//! lowercase hex digits.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A SHA-256 hash: of a Merkle leaf or node, a root, a state key, a transaction ID or a blob
/// address. Displays, parses and serializes as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash([u8; 32]);

/// Why a text is not a [`Hash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected 64 lowercase hex digits")]
pub struct HashParseError;

impl Hash {
    /// The hash with these bytes.
    pub const fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// SHA-256 of `data`.
    pub fn sha256(data: &[u8]) -> Self {
        Self(crate::hazmat::sha256(data))
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 32 bytes, by value.
    pub const fn to_bytes(self) -> [u8; 32] {
        self.0
    }

    /// 64 lowercase hex digits (the same as `to_string`).
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// The first 16 hex digits, for people reading logs and demo output (never for checks).
    pub fn short(&self) -> String {
        to_hex(&self.0[..8])
    }

    /// The hash of exactly 64 lowercase hex digits, or `None` for any other text.
    pub fn from_hex(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

/// Lowercase hex of `bytes`, two digits per byte.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

impl FromStr for Hash {
    type Err = HashParseError;

    /// Exactly 64 lowercase hex digits: upper case, prefixes and other lengths are refused, so
    /// one hash has one text form (IDs and paths compare as strings).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        fn digit(b: u8) -> Option<u8> {
            match b {
                b'0'..=b'9' => Some(b - b'0'),
                b'a'..=b'f' => Some(b - b'a' + 10),
                _ => None,
            }
        }
        let text = text.as_bytes();
        if text.len() != 64 {
            return Err(HashParseError);
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
            *byte = digit(pair[0]).ok_or(HashParseError)? << 4
                | digit(pair[1]).ok_or(HashParseError)?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

impl From<[u8; 32]> for Hash {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl From<Hash> for [u8; 32] {
    fn from(hash: Hash) -> Self {
        hash.0
    }
}

impl AsRef<[u8]> for Hash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Byte access (`hash[0]`, `&hash[..8]`, `&hash` where bytes are wanted), as on the array it
/// wraps.
impl std::ops::Deref for Hash {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for Hash {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl TryFrom<&[u8]> for Hash {
    type Error = std::array::TryFromSliceError;

    /// Exactly 32 bytes.
    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        Ok(Self(bytes.try_into()?))
    }
}

impl TryFrom<Vec<u8>> for Hash {
    type Error = Vec<u8>;

    /// Exactly 32 bytes; other vectors are given back.
    fn try_from(bytes: Vec<u8>) -> Result<Self, Self::Error> {
        Ok(Self(bytes.try_into()?))
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Hash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 lowercase hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Hash, E> {
                text.parse().map_err(|_| E::custom(HashParseError))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// Lists of hashes bounded on reading (serde `deserialize_with`): at most 256, the depth of
/// the state map, so a proof cannot make a reader allocate without limit.
pub mod at_most_256 {
    use super::{Deserializer, Hash};

    /// Reads an array of at most 256 hashes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Vec<Hash>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of at most 256 hashes")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<Hash>, A::Error> {
                let mut out = Vec::new();
                while let Some(hash) = seq.next_element::<Hash>()? {
                    if out.len() == 256 {
                        return Err(serde::de::Error::custom("more than 256 hashes"));
                    }
                    out.push(hash);
                }
                Ok(out)
            }
        }
        // Checked while reading, not after: the 257th element is never stored.
        d.deserialize_seq(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prints_and_parses_as_lowercase_hex() {
        let hash = Hash::new([0xab; 32]);
        assert_eq!(hash.to_string(), "ab".repeat(32));
        assert_eq!(format!("{hash:?}"), format!("Hash({})", "ab".repeat(32)));
        assert_eq!(hash.short(), "ab".repeat(8));
        assert_eq!("ab".repeat(32).parse(), Ok(hash));
        assert_eq!(
            serde_json::to_string(&hash).unwrap(),
            format!("\"{}\"", "ab".repeat(32))
        );
        assert_eq!(
            Hash::sha256(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn refuses_every_other_text() {
        for bad in [
            String::new(),
            "ab".repeat(31),
            "ab".repeat(33),
            "AB".repeat(32),
            format!("0x{}", "ab".repeat(31)),
            format!("{}g", "a".repeat(63)),
            format!("{} ", "a".repeat(63)),
            "é".repeat(32),
        ] {
            assert_eq!(bad.parse::<Hash>(), Err(HashParseError), "{bad:?}");
            assert!(serde_json::from_value::<Hash>(serde_json::json!(bad)).is_err());
        }
        for bad in [
            serde_json::json!(7),
            serde_json::json!(null),
            serde_json::json!([1, 2]),
        ] {
            assert!(serde_json::from_value::<Hash>(bad).is_err());
        }
    }

    #[test]
    fn lists_are_bounded_while_reading() {
        #[derive(Deserialize)]
        struct Siblings(#[serde(deserialize_with = "at_most_256::deserialize")] Vec<Hash>);
        let hex = "00".repeat(32);
        let ok = serde_json::json!(vec![hex.clone(); 256]);
        assert_eq!(serde_json::from_value::<Siblings>(ok).unwrap().0.len(), 256);
        let too_many = serde_json::json!(vec![hex; 257]);
        assert!(serde_json::from_value::<Siblings>(too_many).is_err());
        assert!(serde_json::from_value::<Siblings>(serde_json::json!(["nope"])).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(bytes in any::<[u8; 32]>()) {
            let hash = Hash::new(bytes);
            prop_assert_eq!(hash.to_hex().parse::<Hash>(), Ok(hash));
            let json = serde_json::to_string(&hash).unwrap();
            prop_assert_eq!(serde_json::from_str::<Hash>(&json).unwrap(), hash);
            prop_assert_eq!(hash.to_hex(), to_hex(&bytes));
        }
    }
}
