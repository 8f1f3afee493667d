//! Mutual authentication and record sharing between a requesting institution A and a patient
//! P (DESIGN section 8; BPDST 4.2.4 steps 1 and 4-7, with the Lowe fix and forward secrecy
//! the paper lacks). Sans I/O: the caller carries the bytes, supplies the time, and performs
//! the registry lookups; this module owns the message formats, the checks and the keys.
//!
//! ```text
//! A                                                        P
//! Request = JWS_A{iss id_a, jti, purpose, parts, iat} ->      P checks A's signature with A's
//!                                                             VerifiedEntry (k-anonymous lookup),
//!                                                             the time, and that it has not
//!                                                             answered this jti before
//!   <- M1 = JWE to A's registered key of JWS_P{id_p, id_a, n_p, e_p, time, H(Request)}
//! A checks P's VerifiedEntry (lookup of id_p)
//! M2 = JWE to P's registered key of JWS_A{id_a, id_p, n_a, n_p, e_a, time, H(M1)} ->
//!        both: k = HKDF-SHA256(ECDH(e_p, e_a), salt n_p||n_a,
//!                              info "emrshare/v1/session" || H(Request, M1, M2))
//!   <- M3 = AES-256-GCM_k{n_a, SD-JWT extraction + KB-JWT(aud id_a, nonce n_a), grant?}
//! A verifies with the doctor's VerifiedEntry -> SharedRecord -> AccessLog transaction
//! ```
//!
//! Design choices, and why:
//! - **Signed requests**: the request is an ES256 JWS (`typ` [`REQUEST_TYP`]) by the
//!   requester's registered signing key, checked against its [`VerifiedEntry`] before any of
//!   it can be read: [`Request`] (not yet verified) tells only whom to look up; purpose,
//!   parts and time are on [`VerifiedRequest`]. Otherwise anyone could make a patient's app
//!   show "insurer:acme asks for your prescription" that the insurer never sent. A request is
//!   not addressed to a patient (naming one would put the patient on the wire), so a signed
//!   request is good for whoever receives it within the time window; the patient answers each
//!   (requester, request ID) once ([`AnsweredRequests`]).
//! - **No patient identity on the wire**: M1 and M2 are sealed without a `kid` (the recipient
//!   tries its own key), so no clear header names either party's key; the patient's ID, key
//!   and signature are only inside the encryption. Everything the patient puts in M1 and M2 has
//!   a fixed length (IDs are thumbprints), and M3's plaintext is padded (Padmé) so its length
//!   does not tell records apart to the byte. What remains visible is listed in SECURITY.md.
//! - **Sign inside the encryption** (an ES256 JWS inside the JWE), rather than a signature
//!   over the transcript next to it: an eavesdropper sees neither who the patient is nor a
//!   signature it could test candidate patient keys against. Sign-then-encrypt is only safe
//!   when the signed content names its recipient (Davis, "Defective sign & encrypt"), so each
//!   signed message names both parties (this is also Lowe's fix of Needham-Schroeder: a
//!   dishonest registered institution that forwards P's M1 to A is caught by `id_a`). M1 also
//!   signs the hash of the request it answers and M2 the hash of M1, so each signature covers
//!   the exchange so far, including the peer's ephemeral key.
//! - **Only registered keys**: every encryption to and signature check of a party uses keys
//!   from a [`VerifiedEntry`] (a registry entry proven under a certified header), which the
//!   transitions require as an argument; the request carries no keys, only a signature that
//!   A's registered key must verify.
//! - **Forward secrecy**: the session key comes from ephemeral ECDH P-256 keys that are used
//!   once and wiped; a later theft of the RSA keys opens M1 and M2 but not M3.
//! - **Transcript binding**: HKDF's info covers the hash of the exact bytes of the request,
//!   M1 and M2 as each side sent or received them, so any difference yields another key and M3
//!   fails to open.
//! - **Replay and reflection**: every message names its format (`typ`, also inside the
//!   encryption); a message of our own side is refused as reflected, one of the peer's at the
//!   wrong step as out of order. Fresh nonces and the request and M1 hashes tie each message to
//!   one handshake; a request the patient already answered is refused by its ID. M3 carries
//!   a direction label and a sequence number, both in the GCM nonce and the authenticated
//!   data.
//! - **States are types**: each transition consumes its state, so a state (and its nonces and
//!   ephemeral key) cannot be used twice, and a step that needs a registry check takes the
//!   [`VerifiedEntry`] or [`VerifiedRequest`] that proves it. An error ends the handshake.
//!
//! A transition cannot be skipped or repeated, and an unverified request cannot be shown; all
//! fail to compile:
//!
//! ```compile_fail,E0599
//! # use emrshare_core::handshake::Request;
//! fn show(request: &Request) -> &str {
//!     request.purpose() // only a VerifiedRequest has a purpose to show
//! }
//! ```
//!
//! ```compile_fail,E0599
//! # use emrshare_core::handshake::RequesterAwaitingM1;
//! fn skip_m2(state: RequesterAwaitingM1, m3: &[u8]) {
//!     let _ = state.receive_m3(m3); // only RequesterAwaitingM3 receives M3
//! }
//! ```
//!
//! ```compile_fail,E0382
//! # use emrshare_core::handshake::RequesterAwaitingM1;
//! # use emrshare_core::PrivateKeySet;
//! fn twice(state: RequesterAwaitingM1, m1: &[u8], keys: &PrivateKeySet) {
//!     let _ = state.receive_m1(m1, keys, 0);
//!     let _ = state.receive_m1(m1, keys, 0); // the state was consumed
//! }
//! ```
//!
//! ```no_run
//! # use emrshare_core::handshake::RequesterAwaitingM1;
//! # use emrshare_core::PrivateKeySet;
//! fn once(state: RequesterAwaitingM1, m1: &[u8], keys: &PrivateKeySet) {
//!     let _ = state.receive_m1(m1, keys, 0); // the form the two above break
//! }
//! ```

use crate::ces::{self, CesError, KeyBindingRequirement, SdJwt, VerifiedRecord, VerifyPolicy};
use crate::hazmat::{self, EcdhP256Public, EcdhP256Secret, aes256_gcm};
use crate::jwe::Envelope;
use crate::jws::{self, JwsError};
use crate::keys::{PartyId, PrivateKeySet, PublicKeySet};
use crate::ledger::tx::{Action, Outcome, Role, TxBody};
use crate::ledger::verify::VerifiedEntry;
use crate::record::MAX_PARTS;
use crate::{b64, strict_json};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use zeroize::Zeroizing;

/// The request is a compact JWS; this is the `typ` of its protected header.
pub const REQUEST_TYP: &str = "emr-req+jwt";
/// Version 2: M1 binds a signed request, M1 and M2 name no recipient, M3 is padded.
pub const M1_TYP: &str = "emrshare-handshake-m1/v2";
pub const M2_TYP: &str = "emrshare-handshake-m2/v2";
pub const M3_TYP: &str = "emrshare-handshake-m3/v2";

/// Largest accepted request: room for many requested parts; a usual request is well under
/// 1 KiB.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest accepted M1 or M2 (about 2 KiB with RSA-3072).
pub const MAX_KEY_EXCHANGE_BYTES: usize = 16 * 1024;
/// Largest accepted M3: a maximal SD-JWT with its padding (under 1/8 more), base64url-encoded
/// once more.
pub const MAX_M3_BYTES: usize =
    (ces::MAX_SD_JWT_BYTES + ces::MAX_SD_JWT_BYTES / 8) / 3 * 4 + 64 * 1024;
pub const MAX_PURPOSE_BYTES: usize = 1024;
const MAX_PART_NAME_BYTES: usize = 128;

/// HKDF info label of the session key.
const SESSION_LABEL: &[u8] = b"emrshare/v1/session";
/// Domain separation of the transcript hash.
const TRANSCRIPT_LABEL: &[u8] = b"emrshare/v1/handshake-transcript";
const NONCE_LEN: usize = 32;
/// A request ID: 128 random bits, so two honest requests never share one.
pub const REQUEST_ID_LEN: usize = 16;
/// M3 is the first (and only) message of the patient-to-requester direction.
const M3_SEQUENCE: u64 = 0;

/// The four messages, for errors and format checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Request,
    M1,
    M2,
    M3,
}

impl MessageKind {
    pub fn typ(self) -> &'static str {
        match self {
            Self::Request => REQUEST_TYP,
            Self::M1 => M1_TYP,
            Self::M2 => M2_TYP,
            Self::M3 => M3_TYP,
        }
    }

    fn from_typ(typ: &str) -> Option<Self> {
        [Self::Request, Self::M1, Self::M2, Self::M3]
            .into_iter()
            .find(|kind| kind.typ() == typ)
    }

    fn sent_by_patient(self) -> bool {
        matches!(self, Self::M1 | Self::M3)
    }

    fn max_bytes(self) -> usize {
        match self {
            Self::Request => MAX_REQUEST_BYTES,
            Self::M1 | Self::M2 => MAX_KEY_EXCHANGE_BYTES,
            Self::M3 => MAX_M3_BYTES,
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Self::Request => "request",
            Self::M1 => "M1",
            Self::M2 => "M2",
            Self::M3 => "M3",
        })
    }
}

/// Why a handshake step failed. Never contains key material, nonces or record contents.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("{kind} of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        kind: MessageKind,
        size: usize,
        limit: usize,
    },
    #[error("malformed {kind}: {reason}")]
    Malformed {
        kind: MessageKind,
        reason: &'static str,
    },
    #[error("not a handshake message of a known format (expected {expected})")]
    UnknownFormat { expected: MessageKind },
    #[error("{0} comes from our own side (reflected)")]
    Reflected(MessageKind),
    #[error("expected {expected}, got {found} (out of order)")]
    OutOfOrder {
        expected: MessageKind,
        found: MessageKind,
    },
    #[error("{kind} has sequence number {found}, expected {expected}")]
    Sequence {
        kind: MessageKind,
        expected: u64,
        found: u64,
    },
    #[error("{0} belongs to another handshake (replayed)")]
    Replayed(MessageKind),
    #[error("{0} carries the wrong nonce")]
    WrongNonce(MessageKind),
    #[error("{0} echoes our own nonce or ephemeral key")]
    ReusedNonce(MessageKind),
    #[error("{kind} time {time} is outside the accepted window around {now}")]
    TimeWindow {
        kind: MessageKind,
        time: u64,
        now: u64,
    },
    #[error("{kind} names the wrong {party}")]
    WrongId {
        kind: MessageKind,
        party: &'static str,
    },
    #[error("the registry entry given is not the {0}'s")]
    EntryMismatch(&'static str),
    #[error(
        "{capacity} requests answered within the time window: no more until the oldest age out"
    )]
    TooManyAnswered { capacity: usize },
    #[error("the {0}'s registry entry is revoked or outside its validity period")]
    InactiveEntry(&'static str),
    #[error("the {party}'s registry entry cannot be used: {reason}")]
    UnusableEntry {
        party: &'static str,
        reason: &'static str,
    },
    #[error("bad signature on {0}")]
    BadSignature(MessageKind),
    #[error("{0} does not decrypt: tampered, or not encrypted to our registered key")]
    Decrypt(MessageKind),
    #[error("{0} does not authenticate under this session's key: tampered, or another session's")]
    SessionKey(MessageKind),
    #[error("{0} carries an invalid ephemeral key")]
    BadEphemeralKey(MessageKind),
    #[error("{0} could not be encrypted to the peer's registered key")]
    Encrypt(MessageKind),
    #[error("the shared record: {0}")]
    Record(#[from] CesError),
}

fn malformed(kind: MessageKind, reason: &'static str) -> HandshakeError {
    HandshakeError::Malformed { kind, reason }
}

/// Protocol parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeConfig {
    /// How far, in seconds, a message's time may be from the receiver's clock, either way;
    /// also the maximum age of the key-binding JWT.
    pub max_skew: u64,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        Self { max_skew: 300 }
    }
}

impl HandshakeConfig {
    fn check_time(&self, kind: MessageKind, time: u64, now: u64) -> Result<(), HandshakeError> {
        if time.abs_diff(now) > self.max_skew {
            return Err(HandshakeError::TimeWindow { kind, time, now });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Wire formats. Every struct refuses unknown members; every parse is strict JSON.

/// What the requester signs in its request (JWT claim names where one fits).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestClaims {
    /// The requester.
    iss: PartyId,
    /// The request ID: [`REQUEST_ID_LEN`] random bytes, base64url. Makes every request, and so
    /// the request hash M1 signs, unique, and is what the patient remembers once it answered.
    jti: String,
    purpose: String,
    requested_parts: Vec<String>,
    /// When the requester made the request, Unix seconds.
    iat: u64,
}

/// M1 and M2 on the wire: the format name and a compact JWE.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedWire {
    typ: String,
    jwe: String,
}

/// What P signs in M1.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct M1Content {
    id_p: PartyId,
    id_a: PartyId,
    n_p: String,
    e_p: String,
    time: u64,
    request_hash: String,
}

/// What A signs in M2.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct M2Content {
    id_a: PartyId,
    id_p: PartyId,
    n_a: String,
    n_p: String,
    e_a: String,
    time: u64,
    m1_hash: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct M3Wire {
    typ: String,
    direction: String,
    seq: u64,
    /// AES-256-GCM `ciphertext || tag`, base64url.
    ciphertext: String,
}

/// M3's plaintext. Borrowed when sealing, so the record and the grant are not copied.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct M3Content<'a> {
    n_a: Cow<'a, str>,
    /// The SD-JWT extraction with its key-binding JWT.
    presentation: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_key_grant: Option<Cow<'a, str>>,
}

/// Checks the size, parses strictly, and checks that `typ` names the expected message: one
/// of our own side's is reflected, another of the peer's is out of order.
fn parse_wire<T: DeserializeOwned>(
    bytes: &[u8],
    expected: MessageKind,
) -> Result<T, HandshakeError> {
    if bytes.len() > expected.max_bytes() {
        return Err(HandshakeError::TooLarge {
            kind: expected,
            size: bytes.len(),
            limit: expected.max_bytes(),
        });
    }
    let Ok(value) = strict_json::parse_value(bytes) else {
        // Not JSON: perhaps a request (a compact JWS) at the wrong step.
        return Err(match compact_jws_typ(bytes) {
            Some(typ) => check_kind(&typ, expected).err(),
            None => None,
        }
        .unwrap_or(malformed(expected, "not strict JSON")));
    };
    let typ = value
        .get("typ")
        .and_then(Value::as_str)
        .ok_or(malformed(expected, "no typ"))?;
    check_kind(typ, expected)?;
    strict_json::from_value(value).map_err(|_| malformed(expected, "unexpected members"))
}

/// The `typ` of a compact JWS's protected header, unverified: only to tell a request from
/// other messages. `None` if `bytes` is not shaped like a compact JWS.
fn compact_jws_typ(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut segments = text.split('.');
    let header = segments.next()?;
    if segments.count() != 2 {
        return None;
    }
    let header = strict_json::parse_value(&b64::decode(header).ok()?).ok()?;
    header.get("typ")?.as_str().map(str::to_owned)
}

fn check_kind(typ: &str, expected: MessageKind) -> Result<(), HandshakeError> {
    match MessageKind::from_typ(typ) {
        Some(found) if found == expected => Ok(()),
        Some(found) if found.sent_by_patient() == expected.sent_by_patient() => {
            Err(HandshakeError::OutOfOrder { expected, found })
        }
        Some(found) => Err(HandshakeError::Reflected(found)),
        None => Err(HandshakeError::UnknownFormat { expected }),
    }
}

fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("handshake messages serialize")
}

fn decode_nonce(kind: MessageKind, text: &str) -> Result<[u8; NONCE_LEN], HandshakeError> {
    b64::decode_array(text).map_err(|_| malformed(kind, "nonce is not 32 bytes of base64url"))
}

fn decode_point(kind: MessageKind, text: &str) -> Result<EcdhP256Public, HandshakeError> {
    b64::decode_array(text).map_err(|_| HandshakeError::BadEphemeralKey(kind))
}

/// Signs `content` as a JWS of format `kind` and seals it as a JWE to `recipient`, whose keys
/// come from its registry entry.
fn sign_and_seal(
    kind: MessageKind,
    content: &impl Serialize,
    signer: &PrivateKeySet,
    recipient: &PublicKeySet,
) -> Result<Vec<u8>, HandshakeError> {
    let payload = serde_json::to_value(content).expect("handshake messages serialize");
    let header = jws::Header::es256(kind.typ(), Some(signer.id.signing_kid()));
    let signed = jws::sign(&signer.signing, &header, &payload);
    // No kid: it would name the recipient (the patient, for M2) to anyone who sees the
    // message. The recipient tries its own key.
    let jwe = Envelope::seal_unnamed(signed.as_bytes(), &recipient.encryption, Some(kind.typ()))
        .and_then(|envelope| envelope.to_compact())
        .map_err(|_| HandshakeError::Encrypt(kind))?;
    Ok(to_json(&SealedWire {
        typ: kind.typ().into(),
        jwe,
    }))
}

/// Opens M1 or M2 with our keys (the JWE MAC is checked before decryption), checks the
/// authenticated content type, and returns the inner JWS, not yet verified. Only the compact
/// form with `alg`, `enc` and `cty` is accepted: any other header parameter (a `kid` above
/// all) could name a party in clear, and an honest peer sends none.
fn open_sealed(
    bytes: &[u8],
    kind: MessageKind,
    recipient: &PrivateKeySet,
) -> Result<String, HandshakeError> {
    let wire: SealedWire = parse_wire(bytes, kind)?;
    let envelope =
        Envelope::parse(wire.jwe.as_bytes()).map_err(|_| malformed(kind, "not a valid JWE"))?;
    // Each recipient costs an RSA decryption attempt: more than one is only a lever for DoS.
    if envelope.recipient_kids().len() != 1 {
        return Err(malformed(kind, "JWE must have exactly one recipient"));
    }
    if envelope.to_compact().ok().as_deref() != Some(wire.jwe.as_str()) {
        return Err(malformed(kind, "JWE must be in compact form"));
    }
    if envelope
        .protected_header_names()
        .any(|name| !matches!(name, "alg" | "enc" | "cty"))
    {
        return Err(malformed(
            kind,
            "JWE header has parameters other than alg, enc, cty",
        ));
    }
    let plaintext = envelope
        .open(recipient)
        .map_err(|_| HandshakeError::Decrypt(kind))?;
    let typ = envelope
        .content_type()
        .ok_or(malformed(kind, "JWE has no content type"))?;
    check_kind(typ, kind)?;
    String::from_utf8(plaintext.to_vec()).map_err(|_| malformed(kind, "content is not UTF-8"))
}

/// Verifies the inner JWS with the sender's registered key and parses what it signs.
fn verify_signed<T: DeserializeOwned>(
    kind: MessageKind,
    token: &str,
    sender: &PublicKeySet,
) -> Result<T, HandshakeError> {
    let verified = jws::verify(token, &sender.signing, kind.typ()).map_err(|e| match e {
        JwsError::BadSignature => HandshakeError::BadSignature(kind),
        _ => malformed(kind, "signed content"),
    })?;
    strict_json::from_value(verified.payload).map_err(|_| malformed(kind, "signed content"))
}

/// The hash of the whole key exchange: length-prefixed wire bytes of the request, M1 and M2.
fn transcript_hash(request: &[u8], m1: &[u8], m2: &[u8]) -> [u8; 32] {
    let mut data =
        Vec::with_capacity(TRANSCRIPT_LABEL.len() + 24 + request.len() + m1.len() + m2.len());
    data.extend_from_slice(TRANSCRIPT_LABEL);
    for part in [request, m1, m2] {
        data.extend_from_slice(&(part.len() as u64).to_be_bytes());
        data.extend_from_slice(part);
    }
    hazmat::sha256(&data)
}

/// Checks a registry entry before its keys are used: the expected party, active now, an
/// allowed role.
fn registered_keys(
    entry: &VerifiedEntry,
    party: &'static str,
    expected_id: &PartyId,
    roles: &[Role],
    active_at: u64,
) -> Result<PublicKeySet, HandshakeError> {
    if entry.id() != expected_id {
        return Err(HandshakeError::EntryMismatch(party));
    }
    if !entry.entry().is_active(active_at) {
        return Err(HandshakeError::InactiveEntry(party));
    }
    if !roles.contains(&entry.entry().role) {
        return Err(HandshakeError::UnusableEntry {
            party,
            reason: "its role does not take part in this exchange",
        });
    }
    entry
        .public_keys()
        .map_err(|_| HandshakeError::UnusableEntry {
            party,
            reason: "its keys do not parse",
        })
}

const REQUESTER_ROLES: &[Role] = &[
    Role::Hospital,
    Role::Doctor,
    Role::Insurer,
    Role::Researcher,
];
const ISSUER_ROLES: &[Role] = &[Role::Doctor, Role::Hospital];

// ---------------------------------------------------------------------------------------
// The session key and the channel M3 travels on.

/// Which way a channel message travels. Part of the GCM nonce and the authenticated data,
/// so a message cannot be turned around.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    PatientToRequester,
    RequesterToPatient,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Self::PatientToRequester => "patient-to-requester",
            Self::RequesterToPatient => "requester-to-patient",
        }
    }

    fn from_label(label: &str) -> Option<Self> {
        [Self::PatientToRequester, Self::RequesterToPatient]
            .into_iter()
            .find(|d| d.label() == label)
    }

    fn nonce_prefix(self) -> [u8; 4] {
        match self {
            Self::PatientToRequester => *b"p2a\0",
            Self::RequesterToPatient => *b"a2p\0",
        }
    }
}

/// The 256-bit session key. Zeroized on drop, never printed.
struct SessionKey(Zeroizing<[u8; aes256_gcm::KEY_LEN]>);

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("SessionKey([redacted])")
    }
}

impl SessionKey {
    /// HKDF-SHA256 over the ECDH shared secret; the salt binds both nonces, the info the
    /// context label and the transcript. Consumes our ephemeral secret.
    fn derive(
        ours: EcdhP256Secret,
        theirs: &EcdhP256Public,
        n_p: &[u8; NONCE_LEN],
        n_a: &[u8; NONCE_LEN],
        transcript: &[u8; 32],
        kind: MessageKind,
    ) -> Result<Self, HandshakeError> {
        let mut salt = [0u8; 2 * NONCE_LEN];
        salt[..NONCE_LEN].copy_from_slice(n_p);
        salt[NONCE_LEN..].copy_from_slice(n_a);
        let mut key = Zeroizing::new([0u8; aes256_gcm::KEY_LEN]);
        ours.agree_then_hkdf_sha256(theirs, &salt, &[SESSION_LABEL, transcript], key.as_mut())
            .map_err(|_| HandshakeError::BadEphemeralKey(kind))?;
        Ok(Self(key))
    }

    fn nonce(direction: Direction, seq: u64) -> [u8; aes256_gcm::NONCE_LEN] {
        let mut nonce = [0u8; aes256_gcm::NONCE_LEN];
        nonce[..4].copy_from_slice(&direction.nonce_prefix());
        nonce[4..].copy_from_slice(&seq.to_be_bytes());
        nonce
    }

    fn aad(direction: Direction, seq: u64) -> Vec<u8> {
        [
            M3_TYP.as_bytes(),
            &[0],
            direction.label().as_bytes(),
            &[0],
            &seq.to_be_bytes(),
        ]
        .concat()
    }

    fn seal(&self, direction: Direction, seq: u64, plaintext: &[u8]) -> Vec<u8> {
        let aad = Self::aad(direction, seq);
        aes256_gcm::seal(&self.0, Self::nonce(direction, seq), &aad, plaintext)
    }

    fn open(
        &self,
        direction: Direction,
        seq: u64,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HandshakeError> {
        let aad = Self::aad(direction, seq);
        aes256_gcm::open(&self.0, Self::nonce(direction, seq), &aad, sealed)
            .map_err(|_| HandshakeError::SessionKey(MessageKind::M3))
    }
}

/// Padmé (Nikitin et al., "Reducing metadata leakage from encrypted files and communication
/// with PURBs", PETS 2019): rounds a length up so that only its top ~log2(log2(len)) bits
/// stay, at most about 12% more. M3's length then tells a record's size class, not its size,
/// so two shares of one record (of one patient) are harder to link by length.
fn padme_len(len: usize) -> usize {
    if len < 2 {
        return len;
    }
    let exponent = usize::BITS - 1 - len.leading_zeros();
    let exponent_bits = u32::BITS - exponent.leading_zeros();
    let dropped_bits = exponent - exponent_bits;
    let mask = (1usize << dropped_bits) - 1;
    (len + mask) & !mask
}

// ---------------------------------------------------------------------------------------
// The patient's side.

/// The patient, before a request: holds the configuration.
#[derive(Debug)]
pub struct PatientStart {
    config: HandshakeConfig,
}

/// A request as received: well-formed and recent, but its signature is not checked yet, so
/// nothing in it is trusted and nothing of it can be shown. It only tells whom to look up:
/// [`requester`](Self::requester); then [`verify_requester`](Self::verify_requester).
pub struct Request {
    token: String,
    requester: PartyId,
}

/// A request signed by the requester's registered, active signing key, recent, and not one
/// the patient already answered. Only [`Request::verify_requester`] makes one; its contents
/// are what may be shown to the patient, and [`PatientStart::send_m1`] requires it.
pub struct VerifiedRequest {
    token: String,
    registered: PublicKeySet,
    request_id: [u8; REQUEST_ID_LEN],
    purpose: String,
    requested_parts: Vec<String>,
    time: u64,
}

/// The requests a patient has answered, so that none is answered twice: a replayed request
/// is as authentic as the original, only memory tells it apart. Keep one per patient for as
/// long as the app runs (or persist it) and pass it to every handshake.
///
/// Bounded: a request older than the time window is refused as stale anyway, so its entry is
/// dropped once it is; and at most `capacity` requests are remembered within one window, past
/// which new requests are refused ([`HandshakeError::TooManyAnswered`]) until old ones age out.
#[derive(Debug, Clone)]
pub struct AnsweredRequests {
    capacity: usize,
    /// (requester, request ID) -> the request's own time, which decides when it is stale.
    answered: HashMap<(PartyId, [u8; REQUEST_ID_LEN]), u64>,
}

impl Default for AnsweredRequests {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl AnsweredRequests {
    /// Far more than a patient answers in one time window.
    pub const DEFAULT_CAPACITY: usize = 1024;

    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            answered: HashMap::new(),
        }
    }

    /// How many requests are remembered.
    pub fn len(&self) -> usize {
        self.answered.len()
    }

    pub fn is_empty(&self) -> bool {
        self.answered.is_empty()
    }

    fn contains(&self, requester: &PartyId, request_id: &[u8; REQUEST_ID_LEN]) -> bool {
        self.answered
            .contains_key(&(requester.clone(), *request_id))
    }

    /// Remembers a request as answered, or refuses it if it was; forgets those that have
    /// left the time window first.
    fn record(
        &mut self,
        request: &VerifiedRequest,
        config: &HandshakeConfig,
        now: u64,
    ) -> Result<(), HandshakeError> {
        let requester = &request.registered.id;
        if self.contains(requester, &request.request_id) {
            return Err(HandshakeError::Replayed(MessageKind::Request));
        }
        self.answered
            .retain(|_, time| time.saturating_add(config.max_skew) >= now);
        if self.answered.len() >= self.capacity {
            return Err(HandshakeError::TooManyAnswered {
                capacity: self.capacity,
            });
        }
        self.answered
            .insert((requester.clone(), request.request_id), request.time);
        Ok(())
    }
}

/// The patient has sent M1 and waits for M2.
pub struct PatientAwaitingM2 {
    config: HandshakeConfig,
    patient: PartyId,
    requester: PublicKeySet,
    request_bytes: Vec<u8>,
    m1: Vec<u8>,
    n_p: [u8; NONCE_LEN],
    e_p: EcdhP256Public,
    e_p_secret: EcdhP256Secret,
}

impl fmt::Debug for PatientAwaitingM2 {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("PatientAwaitingM2")
            .field("patient", &self.patient)
            .field("requester", &self.requester.id)
            .field("e_p_secret", &self.e_p_secret)
            .finish_non_exhaustive()
    }
}

/// Both sides are authenticated and share a session key: the patient may send the record.
#[derive(Debug)]
pub struct PatientSessionEstablished {
    requester: PartyId,
    n_a: [u8; NONCE_LEN],
    session: SessionKey,
}

impl PatientStart {
    pub fn new(config: HandshakeConfig) -> Self {
        Self { config }
    }

    /// Reads a request: size, format, fields, and time within the window, all before its
    /// signature can be checked (that needs the requester's registry entry): the result tells
    /// only whom to look up.
    pub fn read_request(&self, bytes: &[u8], now: u64) -> Result<Request, HandshakeError> {
        const KIND: MessageKind = MessageKind::Request;
        let (token, claims) = parse_request(bytes)?;
        self.config.check_time(KIND, claims.iat, now)?;
        Ok(Request {
            token,
            requester: claims.iss,
        })
    }

    /// Sends M1: encrypted to the requester's registered key, signed by the patient. Records
    /// the request in `answered` first, and refuses one that is there already (read twice,
    /// or replayed since it was verified).
    pub fn send_m1(
        self,
        request: VerifiedRequest,
        answered: &mut AnsweredRequests,
        patient: &PrivateKeySet,
        now: u64,
    ) -> Result<(PatientAwaitingM2, Vec<u8>), HandshakeError> {
        // Recorded before sealing: if sealing to the registered key fails, it would fail
        // again, so the request counts as answered either way.
        answered.record(&request, &self.config, now)?;
        let VerifiedRequest {
            token, registered, ..
        } = request;
        let n_p = hazmat::random_array::<NONCE_LEN>();
        let (e_p_secret, e_p) = EcdhP256Secret::generate();
        let content = M1Content {
            id_p: patient.id.clone(),
            id_a: registered.id.clone(),
            n_p: b64::encode(n_p),
            e_p: b64::encode(e_p),
            time: now,
            request_hash: b64::encode(hazmat::sha256(token.as_bytes())),
        };
        let m1 = sign_and_seal(MessageKind::M1, &content, patient, &registered)?;
        let state = PatientAwaitingM2 {
            config: self.config,
            patient: patient.id.clone(),
            requester: registered,
            request_bytes: token.into_bytes(),
            m1: m1.clone(),
            n_p,
            e_p,
            e_p_secret,
        };
        Ok((state, m1))
    }
}

/// Checks a request's size and format, and parses what it claims (unverified).
fn parse_request(bytes: &[u8]) -> Result<(String, RequestClaims), HandshakeError> {
    const KIND: MessageKind = MessageKind::Request;
    if bytes.len() > KIND.max_bytes() {
        return Err(HandshakeError::TooLarge {
            kind: KIND,
            size: bytes.len(),
            limit: KIND.max_bytes(),
        });
    }
    let typ = match compact_jws_typ(bytes) {
        Some(typ) => typ,
        // Another handshake message (JSON with a typ) is reflected or out of order.
        None => {
            let value = strict_json::parse_value(bytes)
                .map_err(|_| malformed(KIND, "not a compact JWS"))?;
            match value.get("typ").and_then(Value::as_str) {
                Some(typ) => typ.to_owned(),
                None => return Err(malformed(KIND, "not a compact JWS")),
            }
        }
    };
    check_kind(&typ, KIND)?;
    let token = String::from_utf8(bytes.to_vec()).map_err(|_| malformed(KIND, "not text"))?;
    let claims: RequestClaims = jws::unverified_payload(&token)
        .ok()
        .and_then(|payload| strict_json::from_value(payload).ok())
        .ok_or(malformed(KIND, "signed content"))?;
    check_request_fields(&claims.purpose, &claims.requested_parts)?;
    b64::decode_array::<REQUEST_ID_LEN>(&claims.jti)
        .map_err(|_| malformed(KIND, "request ID is not 16 bytes of base64url"))?;
    Ok((token, claims))
}

fn check_request_fields(purpose: &str, parts: &[String]) -> Result<(), HandshakeError> {
    let bad = |reason| Err(malformed(MessageKind::Request, reason));
    if purpose.len() > MAX_PURPOSE_BYTES {
        return bad("purpose too long");
    }
    if parts.len() > MAX_PARTS {
        return bad("too many requested parts");
    }
    if parts
        .iter()
        .any(|p| p.is_empty() || p.len() > MAX_PART_NAME_BYTES)
    {
        return bad("invalid part name");
    }
    Ok(())
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Request")
            .field("claimed_requester", &self.requester)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// The requester the request claims to come from: look this ID up in the registry.
    pub fn requester(&self) -> &PartyId {
        &self.requester
    }

    /// Checks the request against the requester's registry entry (from the k-anonymous
    /// lookup): the entry is the requester's, active now, of an institution's role; the
    /// request is signed by its registered signing key; and it is not in `answered`.
    pub fn verify_requester(
        self,
        entry: &VerifiedEntry,
        answered: &AnsweredRequests,
        now: u64,
    ) -> Result<VerifiedRequest, HandshakeError> {
        const KIND: MessageKind = MessageKind::Request;
        let registered =
            registered_keys(entry, "requester", &self.requester, REQUESTER_ROLES, now)?;
        // The verified payload is parsed again: from here on nothing unverified is used.
        let claims: RequestClaims = verify_signed(KIND, &self.token, &registered)?;
        if claims.iss != registered.id {
            return Err(HandshakeError::WrongId {
                kind: KIND,
                party: "requester",
            });
        }
        check_request_fields(&claims.purpose, &claims.requested_parts)?;
        let request_id = b64::decode_array(&claims.jti)
            .map_err(|_| malformed(KIND, "request ID is not 16 bytes of base64url"))?;
        if answered.contains(&registered.id, &request_id) {
            return Err(HandshakeError::Replayed(KIND));
        }
        Ok(VerifiedRequest {
            token: self.token,
            registered,
            request_id,
            purpose: claims.purpose,
            requested_parts: claims.requested_parts,
            time: claims.iat,
        })
    }
}

impl fmt::Debug for VerifiedRequest {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("VerifiedRequest")
            .field("requester", &self.registered.id)
            .field("purpose", &self.purpose)
            .field("requested_parts", &self.requested_parts)
            .field("time", &self.time)
            .finish_non_exhaustive()
    }
}

impl VerifiedRequest {
    /// The requester, whose registered key signed the request.
    pub fn requester(&self) -> &PartyId {
        &self.registered.id
    }

    pub fn purpose(&self) -> &str {
        &self.purpose
    }

    pub fn requested_parts(&self) -> &[String] {
        &self.requested_parts
    }

    /// When the requester made the request (its clock, within the window of ours).
    pub fn time(&self) -> u64 {
        self.time
    }

    /// The request ID the requester chose; the patient answers each one once.
    pub fn request_id(&self) -> &[u8; REQUEST_ID_LEN] {
        &self.request_id
    }
}

impl PatientAwaitingM2 {
    /// Receives M2: opens it, checks the requester's signature with its registered key, the
    /// IDs, that it answers our M1 with our nonce, and its time; then derives the session key.
    pub fn receive_m2(
        self,
        m2: &[u8],
        patient: &PrivateKeySet,
        now: u64,
    ) -> Result<PatientSessionEstablished, HandshakeError> {
        const KIND: MessageKind = MessageKind::M2;
        let token = open_sealed(m2, KIND, patient)?;
        let content: M2Content = verify_signed(KIND, &token, &self.requester)?;
        if content.id_a != self.requester.id {
            return Err(HandshakeError::WrongId {
                kind: KIND,
                party: "requester",
            });
        }
        if content.id_p != self.patient {
            return Err(HandshakeError::WrongId {
                kind: KIND,
                party: "patient",
            });
        }
        if content.m1_hash != b64::encode(hazmat::sha256(&self.m1)) {
            return Err(HandshakeError::Replayed(KIND));
        }
        if decode_nonce(KIND, &content.n_p)? != self.n_p {
            return Err(HandshakeError::WrongNonce(KIND));
        }
        self.config.check_time(KIND, content.time, now)?;
        let n_a = decode_nonce(KIND, &content.n_a)?;
        let e_a = decode_point(KIND, &content.e_a)?;
        if n_a == self.n_p || e_a == self.e_p {
            return Err(HandshakeError::ReusedNonce(KIND));
        }
        let transcript = transcript_hash(&self.request_bytes, &self.m1, m2);
        let session =
            SessionKey::derive(self.e_p_secret, &e_a, &self.n_p, &n_a, &transcript, KIND)?;
        Ok(PatientSessionEstablished {
            requester: self.requester.id,
            n_a,
            session,
        })
    }
}

impl PatientSessionEstablished {
    /// The authenticated requester.
    pub fn requester(&self) -> &PartyId {
        &self.requester
    }

    /// Sends M3: the extraction of `record` keeping the `disclose` parts (CEAS parts always
    /// stay), bound to this session with a key-binding JWT (aud = requester, nonce = n_a),
    /// and optionally a content-key grant, under the session key. Ends the handshake, also
    /// on error (e.g. a part name the record does not have).
    pub fn send_record(
        self,
        record: &SdJwt,
        disclose: &[&str],
        content_key_grant: Option<&[u8]>,
        patient: &PrivateKeySet,
        now: u64,
    ) -> Result<Vec<u8>, HandshakeError> {
        let nonce = b64::encode(self.n_a);
        let presentation =
            record
                .extract(disclose)?
                .bind(&patient.signing, self.requester.as_str(), &nonce, now);
        Ok(self.seal_m3(&nonce, &presentation.serialize(), content_key_grant))
    }

    fn seal_m3(&self, n_a: &str, presentation: &str, grant: Option<&[u8]>) -> Vec<u8> {
        let grant = grant.map(|g| Zeroizing::new(b64::encode(g)));
        let content = M3Content {
            n_a: n_a.into(),
            presentation: presentation.into(),
            content_key_grant: grant.as_deref().map(|g| Cow::Borrowed(g.as_str())),
        };
        // Sized up front so the buffer holding the grant is not reallocated (and copied).
        let mut plaintext = Zeroizing::new(Vec::with_capacity(padme_len(
            presentation.len() + grant.as_ref().map_or(0, |g| g.len()) + 256,
        )));
        serde_json::to_writer(&mut *plaintext, &content).expect("M3 serializes");
        // Trailing JSON whitespace: the parser skips it, the length is rounded up.
        let padded_len = padme_len(plaintext.len());
        plaintext.resize(padded_len, b' ');
        let direction = Direction::PatientToRequester;
        to_json(&M3Wire {
            typ: M3_TYP.into(),
            direction: direction.label().into(),
            seq: M3_SEQUENCE,
            ciphertext: b64::encode(self.session.seal(direction, M3_SEQUENCE, &plaintext)),
        })
    }
}

// ---------------------------------------------------------------------------------------
// The requester's side.

/// The requester, before its request: holds the configuration.
#[derive(Debug)]
pub struct RequesterStart {
    config: HandshakeConfig,
}

/// What the requester asked for; carried to the [`SharedRecord`].
struct Asked {
    requester: PartyId,
    purpose: String,
    requested_parts: Vec<String>,
    request_bytes: Vec<u8>,
}

impl fmt::Debug for Asked {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Asked")
            .field("requester", &self.requester)
            .field("requested_parts", &self.requested_parts)
            .finish_non_exhaustive()
    }
}

/// The request is sent; waiting for M1.
#[derive(Debug)]
pub struct RequesterAwaitingM1 {
    config: HandshakeConfig,
    asked: Asked,
}

/// M1 opened and matched to our request; its signature is checked once the patient it names
/// has been looked up: [`verify_patient`](Self::verify_patient).
pub struct RequesterAwaitingPatientKeys {
    config: HandshakeConfig,
    asked: Asked,
    m1: Vec<u8>,
    m1_token: String,
    claimed_patient: PartyId,
}

impl fmt::Debug for RequesterAwaitingPatientKeys {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("RequesterAwaitingPatientKeys")
            .field("asked", &self.asked)
            .field("claimed_patient", &self.claimed_patient)
            .finish_non_exhaustive()
    }
}

/// M2 is sent; waiting for the record.
#[derive(Debug)]
pub struct RequesterAwaitingM3 {
    config: HandshakeConfig,
    asked: Asked,
    patient: PublicKeySet,
    n_a: [u8; NONCE_LEN],
    session: SessionKey,
    session_id: [u8; 32],
}

/// M3 opened under the session key; the record is checked once its issuer (the doctor) has
/// been looked up: [`verify_record`](Self::verify_record).
pub struct RequesterAwaitingIssuerKeys {
    config: HandshakeConfig,
    asked: Asked,
    patient: PublicKeySet,
    n_a: [u8; NONCE_LEN],
    session_id: [u8; 32],
    presentation: SdJwt,
    claimed_issuer: PartyId,
    content_key_grant: Option<ContentKeyGrant>,
}

impl fmt::Debug for RequesterAwaitingIssuerKeys {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("RequesterAwaitingIssuerKeys")
            .field("asked", &self.asked)
            .field("patient", &self.patient.id)
            .field("claimed_issuer", &self.claimed_issuer)
            .field("content_key_grant", &self.content_key_grant)
            .finish_non_exhaustive()
    }
}

/// A content key granted with the record. Zeroized on drop, never printed.
struct ContentKeyGrant(Zeroizing<Vec<u8>>);

impl fmt::Debug for ContentKeyGrant {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("ContentKeyGrant([redacted])")
    }
}

impl RequesterStart {
    pub fn new(config: HandshakeConfig) -> Self {
        Self { config }
    }

    /// Makes the request, signed with our signing key (the patient checks it against our
    /// registry entry). It carries no secret and names no patient: anyone may read it.
    pub fn send_request(
        self,
        requester: &PrivateKeySet,
        purpose: &str,
        requested_parts: &[&str],
        now: u64,
    ) -> Result<(RequesterAwaitingM1, Vec<u8>), HandshakeError> {
        let requested_parts: Vec<String> = requested_parts.iter().map(|p| p.to_string()).collect();
        check_request_fields(purpose, &requested_parts)?;
        let claims = RequestClaims {
            iss: requester.id.clone(),
            jti: b64::encode(hazmat::random_array::<REQUEST_ID_LEN>()),
            purpose: purpose.into(),
            requested_parts: requested_parts.clone(),
            iat: now,
        };
        let payload = serde_json::to_value(&claims).expect("handshake messages serialize");
        let header = jws::Header::es256(REQUEST_TYP, Some(requester.id.signing_kid()));
        let bytes = jws::sign(&requester.signing, &header, &payload).into_bytes();
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(HandshakeError::TooLarge {
                kind: MessageKind::Request,
                size: bytes.len(),
                limit: MAX_REQUEST_BYTES,
            });
        }
        let state = RequesterAwaitingM1 {
            config: self.config,
            asked: Asked {
                requester: requester.id.clone(),
                purpose: purpose.into(),
                requested_parts,
                request_bytes: bytes.clone(),
            },
        };
        Ok((state, bytes))
    }
}

impl RequesterAwaitingM1 {
    /// Receives M1: opens it with our keys and checks that it answers this request, names us,
    /// and is recent. The signature is checked by the next step, with the patient's
    /// registered key.
    pub fn receive_m1(
        self,
        m1: &[u8],
        requester: &PrivateKeySet,
        now: u64,
    ) -> Result<RequesterAwaitingPatientKeys, HandshakeError> {
        const KIND: MessageKind = MessageKind::M1;
        let token = open_sealed(m1, KIND, requester)?;
        // Unverified until the patient's key is known; only used to decide what to look up
        // and to drop foreign messages early. The next step acts on the verified payload.
        let content: M1Content = jws::unverified_payload(&token)
            .ok()
            .and_then(|payload| strict_json::from_value(payload).ok())
            .ok_or(malformed(KIND, "signed content"))?;
        if content.id_a != self.asked.requester {
            return Err(HandshakeError::WrongId {
                kind: KIND,
                party: "requester",
            });
        }
        if content.request_hash != b64::encode(hazmat::sha256(&self.asked.request_bytes)) {
            return Err(HandshakeError::Replayed(KIND));
        }
        self.config.check_time(KIND, content.time, now)?;
        Ok(RequesterAwaitingPatientKeys {
            config: self.config,
            asked: self.asked,
            m1: m1.to_vec(),
            m1_token: token,
            claimed_patient: content.id_p,
        })
    }
}

impl RequesterAwaitingPatientKeys {
    /// The patient M1 claims to come from: look this ID up in the registry.
    pub fn patient(&self) -> &PartyId {
        &self.claimed_patient
    }

    /// Checks M1's signature with the patient's registered key (the entry must be the
    /// patient's, active, and self-certifying: its ID is its signing key's thumbprint), then
    /// sends M2, encrypted to the patient's registered key, and derives the session key.
    pub fn verify_patient(
        self,
        patient_entry: &VerifiedEntry,
        requester: &PrivateKeySet,
        now: u64,
    ) -> Result<(RequesterAwaitingM3, Vec<u8>), HandshakeError> {
        const KIND: MessageKind = MessageKind::M1;
        let patient = registered_keys(
            patient_entry,
            "patient",
            &self.claimed_patient,
            &[Role::Patient],
            now,
        )?;
        if !patient_entry.entry().is_well_formed() {
            return Err(HandshakeError::UnusableEntry {
                party: "patient",
                reason: "a patient's ID must be its signing key's thumbprint",
            });
        }
        // The same bytes whose IDs, request hash and time `receive_m1` checked, now verified.
        let content: M1Content = verify_signed(KIND, &self.m1_token, &patient)?;
        let n_p = decode_nonce(KIND, &content.n_p)?;
        let e_p = decode_point(KIND, &content.e_p)?;
        let n_a = hazmat::random_array::<NONCE_LEN>();
        let (e_a_secret, e_a) = EcdhP256Secret::generate();
        let reply = M2Content {
            id_a: requester.id.clone(),
            id_p: patient.id.clone(),
            n_a: b64::encode(n_a),
            n_p: content.n_p,
            e_a: b64::encode(e_a),
            time: now,
            m1_hash: b64::encode(hazmat::sha256(&self.m1)),
        };
        let m2 = sign_and_seal(MessageKind::M2, &reply, requester, &patient)?;
        let session_id = transcript_hash(&self.asked.request_bytes, &self.m1, &m2);
        let session = SessionKey::derive(e_a_secret, &e_p, &n_p, &n_a, &session_id, KIND)?;
        let state = RequesterAwaitingM3 {
            config: self.config,
            asked: self.asked,
            patient,
            n_a,
            session,
            session_id,
        };
        Ok((state, m2))
    }
}

impl RequesterAwaitingM3 {
    /// Receives M3: direction and sequence number, then the session key (tag checked before
    /// any plaintext), then our nonce.
    ///
    /// M3 has no time of its own: its freshness is the key-binding JWT's, checked with the
    /// record.
    pub fn receive_m3(self, m3: &[u8]) -> Result<RequesterAwaitingIssuerKeys, HandshakeError> {
        const KIND: MessageKind = MessageKind::M3;
        let wire: M3Wire = parse_wire(m3, KIND)?;
        match Direction::from_label(&wire.direction) {
            Some(Direction::PatientToRequester) => {}
            Some(Direction::RequesterToPatient) => return Err(HandshakeError::Reflected(KIND)),
            None => return Err(malformed(KIND, "unknown direction")),
        }
        if wire.seq != M3_SEQUENCE {
            return Err(HandshakeError::Sequence {
                kind: KIND,
                expected: M3_SEQUENCE,
                found: wire.seq,
            });
        }
        let sealed = b64::decode(&wire.ciphertext).map_err(|_| malformed(KIND, "ciphertext"))?;
        let plaintext = self
            .session
            .open(Direction::PatientToRequester, M3_SEQUENCE, &sealed)?;
        let content: M3Content =
            strict_json::parse(&plaintext).map_err(|_| malformed(KIND, "content"))?;
        // Owned after parsing: wrap the grant at once so it is wiped whatever happens next.
        let grant_b64 = content
            .content_key_grant
            .map(|g| Zeroizing::new(g.into_owned()));
        if decode_nonce(KIND, &content.n_a)? != self.n_a {
            return Err(HandshakeError::WrongNonce(KIND));
        }
        let content_key_grant = grant_b64
            .map(|g| b64::decode(g.as_str()).map(|key| ContentKeyGrant(Zeroizing::new(key))))
            .transpose()
            .map_err(|_| malformed(KIND, "content key grant"))?;
        let presentation = SdJwt::parse(&content.presentation)?;
        let claimed_issuer = presentation.claimed_issuer()?;
        Ok(RequesterAwaitingIssuerKeys {
            config: self.config,
            asked: self.asked,
            patient: self.patient,
            n_a: self.n_a,
            session_id: self.session_id,
            presentation,
            claimed_issuer,
            content_key_grant,
        })
    }
}

impl RequesterAwaitingIssuerKeys {
    /// The doctor the record claims to be signed by: look this ID up in the registry.
    pub fn issuer(&self) -> &PartyId {
        &self.claimed_issuer
    }

    /// Verifies the record with the doctor's registered key: the doctor's signature, the
    /// disclosures, the CEAS, that it is the session patient's record, and its key-binding
    /// JWT (signed by the patient's registered key, aud = us, nonce = n_a, recent). The
    /// doctor and its hospital (`hospital_entry`: the doctor's affiliation, or the issuer
    /// itself when a hospital issued the record) must both have been admitted and active
    /// when the record was issued, and the signature must be by the doctor's key in force
    /// then ([`ces::verify_registered`]).
    pub fn verify_record(
        self,
        issuer_entry: &VerifiedEntry,
        hospital_entry: &VerifiedEntry,
        now: u64,
    ) -> Result<SharedRecord, HandshakeError> {
        if issuer_entry.id() != &self.claimed_issuer {
            return Err(HandshakeError::EntryMismatch("issuer"));
        }
        if !ISSUER_ROLES.contains(&issuer_entry.entry().role) {
            return Err(HandshakeError::UnusableEntry {
                party: "issuer",
                reason: "its role does not issue records",
            });
        }
        let issued_at = self.presentation.claimed_issued_at()?;
        let issuer = issuer_entry
            .public_keys_at(issued_at)
            .map_err(|_| HandshakeError::UnusableEntry {
                party: "issuer",
                reason: "its keys do not parse",
            })?
            .ok_or(HandshakeError::InactiveEntry("issuer"))?;
        let nonce = b64::encode(self.n_a);
        let policy = VerifyPolicy {
            issuer: &issuer,
            holder: Some(&self.patient),
            key_binding: Some(KeyBindingRequirement {
                audience: self.asked.requester.as_str(),
                nonce: &nonce,
            }),
            now,
            max_skew: self.config.max_skew,
        };
        let record = ces::verify(&self.presentation, &policy)?;
        if !issuer_entry.entry().is_active_at(record.issued_at()) {
            return Err(HandshakeError::InactiveEntry("issuer"));
        }
        if !hospital_entry.entry().is_active_at(record.issued_at())
            && hospital_entry.role() == Role::Hospital
        {
            return Err(HandshakeError::InactiveEntry("hospital"));
        }
        ces::verify_registered(&record, issuer_entry, hospital_entry)?;
        Ok(SharedRecord {
            record,
            patient: self.patient.id,
            requester: self.asked.requester,
            purpose: self.asked.purpose,
            requested_parts: self.asked.requested_parts,
            received_at: now,
            session_id: self.session_id,
            content_key_grant: self.content_key_grant,
        })
    }
}

/// The outcome on the requester's side: a verified record, who shared it with whom, when,
/// and in which session. [`access_log`](Self::access_log) gives the AccessLog transaction
/// body the requester submits (BPDST step 7).
pub struct SharedRecord {
    record: VerifiedRecord,
    patient: PartyId,
    requester: PartyId,
    purpose: String,
    requested_parts: Vec<String>,
    received_at: u64,
    session_id: [u8; 32],
    content_key_grant: Option<ContentKeyGrant>,
}

impl SharedRecord {
    pub fn record(&self) -> &VerifiedRecord {
        &self.record
    }

    pub fn into_record(self) -> VerifiedRecord {
        self.record
    }

    /// The patient, authenticated in the handshake and holder of the record.
    pub fn patient(&self) -> &PartyId {
        &self.patient
    }

    /// Us: the accessor.
    pub fn requester(&self) -> &PartyId {
        &self.requester
    }

    pub fn purpose(&self) -> &str {
        &self.purpose
    }

    /// What was asked for; [`VerifiedRecord::parts`] is what was disclosed.
    pub fn requested_parts(&self) -> &[String] {
        &self.requested_parts
    }

    /// When the record was received and verified (the `now` given to `verify_record`).
    pub fn received_at(&self) -> u64 {
        self.received_at
    }

    /// The transcript hash: names this handshake; both sides derive the same.
    pub fn session_id(&self) -> &[u8; 32] {
        &self.session_id
    }

    /// The content key the patient granted with the record, if any.
    pub fn content_key_grant(&self) -> Option<&[u8]> {
        self.content_key_grant.as_ref().map(|g| g.0.as_slice())
    }

    /// The AccessLog transaction body for this exchange; the requester (the accessor) signs
    /// and submits it.
    pub fn access_log(&self) -> TxBody {
        TxBody::AccessLog {
            accessor: self.requester.clone(),
            record_id: self.record.record_id().into(),
            action: Action::Read,
            at: self.received_at,
            outcome: Outcome::Granted,
            grant_id: None,
        }
    }
}

impl fmt::Debug for SharedRecord {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("SharedRecord")
            .field("record_id", &self.record.record_id())
            .field("issuer", self.record.issuer())
            .field("patient", &self.patient)
            .field("requester", &self.requester)
            .field("parts", &self.record.parts().keys().collect::<Vec<_>>())
            .field("received_at", &self.received_at)
            .field("content_key_grant", &self.content_key_grant)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::RsaBits;
    use crate::record::{Ceas, Record};
    use std::sync::OnceLock;

    const NOW: u64 = 1_790_000_000;

    struct Parties {
        patient: PrivateKeySet,
        requester: PrivateKeySet,
        doctor: PrivateKeySet,
    }

    fn parties() -> &'static Parties {
        static PARTIES: OnceLock<Parties> = OnceLock::new();
        PARTIES.get_or_init(|| {
            let named = |id: &str| Some(PartyId::new(id).unwrap());
            Parties {
                patient: PrivateKeySet::generate(None, RsaBits::B2048),
                requester: PrivateKeySet::generate(named("insurer:acme"), RsaBits::B2048),
                doctor: PrivateKeySet::generate(named("hospital:a"), RsaBits::B2048),
            }
        })
    }

    /// A registry entry proven the real way: the registration applied to a ledger state
    /// whose root the auditors certify and a light client accepts.
    fn entry(party: &PrivateKeySet, role: Role) -> VerifiedEntry {
        let mut chain = crate::ledger::testkit::TestChain::new();
        chain.now = NOW - 100;
        chain.enrol(party, role);
        chain.verified_entry(&party.id).unwrap()
    }

    /// An honest handshake up to the point where the patient may send the record.
    fn established() -> (RequesterAwaitingM3, PatientSessionEstablished) {
        let Parties {
            patient, requester, ..
        } = parties();
        let config = HandshakeConfig::default();
        let (a, request) = RequesterStart::new(config)
            .send_request(requester, "claim", &["examination"], NOW)
            .unwrap();
        let p = PatientStart::new(config);
        let mut answered = AnsweredRequests::default();
        let verified = p
            .read_request(&request, NOW)
            .unwrap()
            .verify_requester(&entry(requester, Role::Insurer), &answered, NOW)
            .unwrap();
        let (p, m1) = p.send_m1(verified, &mut answered, patient, NOW).unwrap();
        let (a, m2) = a
            .receive_m1(&m1, requester, NOW)
            .unwrap()
            .verify_patient(&entry(patient, Role::Patient), requester, NOW)
            .unwrap();
        (a, p.receive_m2(&m2, patient, NOW).unwrap())
    }

    fn record() -> SdJwt {
        let Parties {
            patient, doctor, ..
        } = parties();
        let record = Record::sample_bpds();
        let options = ces::IssueOptions {
            issued_at: NOW,
            decoys: 0,
        };
        ces::issue(
            doctor,
            &patient.public(),
            &record,
            &Ceas::default_for(&record),
            options,
        )
        .unwrap()
    }

    /// The patient's side sends M3 with a presentation of its choosing (a broken or
    /// dishonest patient app); A opens it and verifies the record.
    fn present(
        presentation: impl FnOnce(&[u8; NONCE_LEN]) -> (String, SdJwt),
    ) -> Result<SharedRecord, HandshakeError> {
        let (a, p) = established();
        let (n_a, presented) = presentation(&p.n_a);
        let m3 = p.seal_m3(&n_a, &presented.serialize(), None);
        let a = a.receive_m3(&m3)?;
        let doctor = entry(&parties().doctor, Role::Hospital);
        a.verify_record(&doctor, &doctor, NOW)
    }

    #[test]
    fn both_sides_derive_one_session_key() {
        let (a, p) = established();
        assert_eq!(*a.session.0, *p.session.0);
        assert_eq!(a.n_a, p.n_a);
        assert_ne!(*a.session.0, [0u8; 32]);
    }

    #[test]
    fn an_honest_presentation_crafted_here_is_accepted() {
        let patient = &parties().patient;
        let shared = present(|n_a| {
            let nonce = b64::encode(n_a);
            let bound = record().bind(&patient.signing, "insurer:acme", &nonce, NOW);
            (nonce, bound)
        })
        .unwrap();
        assert!(shared.record().key_bound());
    }

    #[test]
    fn m3_with_the_wrong_requester_nonce_is_refused() {
        let patient = &parties().patient;
        let result = present(|n_a| {
            let bound = record().bind(&patient.signing, "insurer:acme", &b64::encode(n_a), NOW);
            (b64::encode([0u8; NONCE_LEN]), bound)
        });
        assert!(matches!(
            result,
            Err(HandshakeError::WrongNonce(MessageKind::M3))
        ));
    }

    #[test]
    fn key_binding_to_another_audience_or_nonce_is_refused() {
        let patient = &parties().patient;
        let other_audience = present(|n_a| {
            let nonce = b64::encode(n_a);
            let bound = record().bind(&patient.signing, "insurer:other", &nonce, NOW);
            (nonce, bound)
        });
        assert!(matches!(
            other_audience,
            Err(HandshakeError::Record(CesError::KeyBindingAudience))
        ));
        let other_nonce = present(|n_a| {
            let stale_nonce = b64::encode([1u8; NONCE_LEN]);
            let bound = record().bind(&patient.signing, "insurer:acme", &stale_nonce, NOW);
            (b64::encode(n_a), bound)
        });
        assert!(matches!(
            other_nonce,
            Err(HandshakeError::Record(CesError::KeyBindingNonce))
        ));
    }

    #[test]
    fn key_binding_by_anyone_but_the_patient_or_none_at_all_is_refused() {
        let requester = &parties().requester;
        let other_key = present(|n_a| {
            let nonce = b64::encode(n_a);
            (
                nonce.clone(),
                record().bind(&requester.signing, "insurer:acme", &nonce, NOW),
            )
        });
        assert!(matches!(
            other_key,
            Err(HandshakeError::Record(CesError::KeyBindingJwt(
                JwsError::BadSignature
            )))
        ));
        let unbound = present(|n_a| (b64::encode(n_a), record()));
        assert!(matches!(
            unbound,
            Err(HandshakeError::Record(CesError::KeyBindingMissing))
        ));
    }

    #[test]
    fn the_channel_binds_direction_and_sequence_number() {
        let key = SessionKey(Zeroizing::new([5u8; 32]));
        let sealed = key.seal(Direction::PatientToRequester, 0, b"record");
        assert_eq!(
            &*key.open(Direction::PatientToRequester, 0, &sealed).unwrap(),
            b"record"
        );
        assert!(key.open(Direction::RequesterToPatient, 0, &sealed).is_err());
        assert!(key.open(Direction::PatientToRequester, 1, &sealed).is_err());
        let other = SessionKey(Zeroizing::new([6u8; 32]));
        assert!(
            other
                .open(Direction::PatientToRequester, 0, &sealed)
                .is_err()
        );
        assert!(
            key.open(Direction::PatientToRequester, 0, &sealed[1..])
                .is_err()
        );
    }

    #[test]
    fn the_session_key_binds_both_nonces_and_the_transcript() {
        let (_, peer) = EcdhP256Secret::generate();
        let derive = |n_p: u8, n_a: u8, transcript: u8| {
            let ours = EcdhP256Secret::from_scalar(&[3u8; 32]).unwrap();
            let key = SessionKey::derive(
                ours,
                &peer,
                &[n_p; NONCE_LEN],
                &[n_a; NONCE_LEN],
                &[transcript; 32],
                MessageKind::M2,
            )
            .unwrap();
            *key.0
        };
        let base = derive(1, 2, 3);
        assert_eq!(derive(1, 2, 3), base);
        assert_ne!(derive(9, 2, 3), base);
        assert_ne!(derive(1, 9, 3), base);
        assert_ne!(derive(1, 2, 9), base);
        // Swapping the nonces' roles changes the key too.
        assert_ne!(derive(2, 1, 3), base);
    }

    #[test]
    fn padme_rounds_up_by_at_most_an_eighth_and_keeps_few_distinct_lengths() {
        assert_eq!(padme_len(0), 0);
        assert_eq!(padme_len(1), 1);
        assert_eq!(padme_len(1000), 1024);
        let mut previous = 0;
        for len in (2..200_000).step_by(7) {
            let padded = padme_len(len);
            assert!(
                padded >= len && padded - len <= len / 8,
                "{len} -> {padded}"
            );
            assert_eq!(padme_len(padded), padded, "padding is idempotent");
            assert!(padded >= previous, "monotonic");
            previous = padded;
        }
        let distinct: std::collections::BTreeSet<usize> = (4096..8192).map(padme_len).collect();
        assert!(distinct.len() <= 32, "{}", distinct.len());
    }

    /// A verified request as `send_m1` receives it, with a chosen ID and time.
    fn verified_request(id: u8, time: u64) -> VerifiedRequest {
        let requester = &parties().requester;
        VerifiedRequest {
            token: String::new(),
            registered: requester.public(),
            request_id: [id; REQUEST_ID_LEN],
            purpose: "claim".into(),
            requested_parts: vec![],
            time,
        }
    }

    #[test]
    fn answered_requests_refuse_a_second_answer_forget_stale_ones_and_are_bounded() {
        let config = HandshakeConfig { max_skew: 300 };
        let mut answered = AnsweredRequests::new(2);
        answered
            .record(&verified_request(1, NOW), &config, NOW)
            .unwrap();
        assert!(matches!(
            answered.record(&verified_request(1, NOW), &config, NOW + 10),
            Err(HandshakeError::Replayed(MessageKind::Request))
        ));
        answered
            .record(&verified_request(2, NOW), &config, NOW)
            .unwrap();
        assert!(matches!(
            answered.record(&verified_request(3, NOW), &config, NOW),
            Err(HandshakeError::TooManyAnswered { capacity: 2 })
        ));
        // Still inside the window: remembered, so the guard stays full.
        assert!(
            answered
                .record(&verified_request(3, NOW), &config, NOW + 300)
                .is_err()
        );
        // Once the first two are stale (and so refused by the time check anyway), they go.
        answered
            .record(&verified_request(3, NOW + 301), &config, NOW + 301)
            .unwrap();
        assert_eq!(answered.len(), 1);
    }

    #[test]
    fn the_transcript_hash_is_unambiguous() {
        assert_ne!(
            transcript_hash(b"ab", b"c", b"d"),
            transcript_hash(b"a", b"bc", b"d")
        );
        assert_ne!(
            transcript_hash(b"", b"", b"x"),
            transcript_hash(b"x", b"", b"")
        );
    }

    #[test]
    fn a_message_is_reflected_if_our_side_sends_it_and_out_of_order_if_the_peer_does() {
        use MessageKind::*;
        let table = [
            (Request, M1, "reflected"),
            (Request, M2, "out of order"),
            (M1, M2, "reflected"),
            (M1, M3, "out of order"),
            (M2, M1, "reflected"),
            (M2, Request, "out of order"),
            (M3, M2, "reflected"),
            (M3, M1, "out of order"),
        ];
        for (expected, found, verdict) in table {
            let err = check_kind(found.typ(), expected).unwrap_err();
            match verdict {
                "reflected" => assert!(matches!(err, HandshakeError::Reflected(k) if k == found)),
                _ => assert!(matches!(err, HandshakeError::OutOfOrder { .. })),
            }
        }
        assert!(check_kind(M2_TYP, M2).is_ok());
        assert!(matches!(
            check_kind("emrshare-handshake-m2/v0", M2),
            Err(HandshakeError::UnknownFormat { .. })
        ));
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let (a, p) = established();
        let key_hex: String = a.session.0.iter().map(|b| format!("{b:02x}")).collect();
        let key_bytes = format!("{:?}", &*a.session.0);
        for debug in [format!("{a:?}"), format!("{p:?}")] {
            assert!(debug.contains("SessionKey([redacted])"), "{debug}");
            assert!(!debug.contains(&key_hex) && !debug.contains(&key_bytes));
        }
        let Parties {
            patient, requester, ..
        } = parties();
        let (_, request) = RequesterStart::new(HandshakeConfig::default())
            .send_request(requester, "claim", &[], NOW)
            .unwrap();
        let start = PatientStart::new(HandshakeConfig::default());
        let mut answered = AnsweredRequests::default();
        let verified = start
            .read_request(&request, NOW)
            .unwrap()
            .verify_requester(&entry(requester, Role::Insurer), &answered, NOW)
            .unwrap();
        let (awaiting, _) = start
            .send_m1(verified, &mut answered, patient, NOW)
            .unwrap();
        assert!(format!("{awaiting:?}").contains("EcdhP256Secret([redacted])"));
    }

    #[test]
    fn error_messages_carry_no_nonces_or_record_contents() {
        let patient = &parties().patient;
        let mut nonces = Vec::new();
        let wrong_nonce = present(|n_a| {
            nonces.push(b64::encode(n_a));
            (b64::encode([0u8; NONCE_LEN]), record())
        })
        .unwrap_err();
        let wrong_audience = present(|n_a| {
            let nonce = b64::encode(n_a);
            nonces.push(nonce.clone());
            let bound = record().bind(&patient.signing, "insurer:other", &nonce, NOW);
            (nonce, bound)
        })
        .unwrap_err();
        for err in [wrong_nonce, wrong_audience] {
            let text = format!("{err} {err:?}");
            let secrets = nonces.iter().map(String::as_str);
            for secret in secrets.chain(["Alice", "asthma", "X1234567"]) {
                assert!(!text.contains(secret), "{text}");
            }
        }
    }
}
