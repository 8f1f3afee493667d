//! # emrshare-core
//!
//! The cryptographic heart of emrshare, sans I/O: it never opens a socket or a file.
//!
//! - [`keys`]: ES256 signing keys and RSA-OAEP-256 encryption keys, their JWK forms, party
//!   identities (registered names, or RFC 7638 thumbprints for patients), passphrase wrapping
//!   ([`keys::wrap`]) and unlinkable per-transaction keys ([`keys::txkeys`]).
//! - [`jwe`]: envelopes, JWE with `RSA-OAEP-256` + `A256CBC-HS512`, compact and general JSON.
//! - [`jws`]: compact ES256 JWS, the signature layer under SD-JWT.
//! - [`ces`]: content extraction signatures as SD-JWT (RFC 9901): issue, extract, present with a
//!   key-binding JWT, verify.
//! - [`handshake`]: mutual authentication of a patient and a requesting institution, with a
//!   forward-secret session key, over which the patient shares a key-bound extraction.
//! - [`record`]: the medical record model (named parts, schema tag, the BPDS seven parts).
//! - [`ledger`]: what full nodes and thin clients share: RFC 6962 Merkle trees, the state map
//!   with proofs, transactions, blocks and certificates, the improved-DPoS rules, the thin-client
//!   verifier, and the node API's wire types.
//! - [`account`]: a party's transactions, blob claims, access logs, index entries and grants.
//! - [`voucher`]: patients' one-use registration vouchers from admitted hospitals, as RSA
//!   blind signatures (RFC 9474) the chain cannot link to the hospital's issuance.
//! - [`lookup`]: the k-anonymous registry lookup: stable PRF-chosen decoys, and verification
//!   of several nodes' answers with evidence against those that fail.
//!
//! The async node client and every party flow live in `emrshare-client`.
//!
//! Raw primitives live in a crate-private `hazmat` module; everything public works on typed,
//! validated values. Secrets zeroize on drop and print as `[redacted]`.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]

pub mod account;
pub mod b64;
pub mod ces;
pub mod handshake;
pub mod hash;
mod hazmat;
pub mod jwe;
pub mod jws;
pub mod keys;
pub mod ledger;
pub mod lookup;
pub mod record;
pub mod record_account;
pub mod sealed;
pub mod strict_json;
pub mod voucher;

pub use ces::{SdJwt, VerifiedRecord};
pub use hash::Hash;
pub use jwe::Envelope;
pub use keys::{PartyId, PrivateKeySet, PublicKeySet};
pub use record::Record;

/// SHA-256 of a blob: how stored ciphertexts are addressed and indexed.
pub fn content_hash(data: &[u8]) -> Hash {
    Hash::sha256(data)
}

/// [`content_hash`] over a blob that arrives in pieces (streamed to disk, never whole in
/// memory).
pub struct ContentHasher(hazmat::Sha256Stream);

impl ContentHasher {
    /// A hasher with nothing fed yet.
    pub fn new() -> Self {
        Self(hazmat::Sha256Stream::new())
    }

    /// Feeds the next piece of the blob.
    pub fn update(&mut self, piece: &[u8]) {
        self.0.update(piece);
    }

    /// The blob's SHA-256, as [`content_hash`] of all the pieces in order would give.
    pub fn finish(self) -> Hash {
        Hash::new(self.0.finish())
    }
}

impl Default for ContentHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ContentHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("ContentHasher")
    }
}

/// A fresh 128-bit random nonce, base64url (for key-binding JWTs and handshakes).
pub fn make_nonce() -> String {
    b64::encode(hazmat::random_array::<16>())
}
