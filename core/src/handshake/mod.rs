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

use crate::ces::{self, CesError, KeyBindingRequirement, SdJwt, VerifiedRecord};
use crate::hazmat::{self, EcdhP256Public, EcdhP256Secret, aes256_gcm};
use crate::jwe::Envelope;
use crate::jws::{self, JwsError};
use crate::keys::{PartyId, PrivateKeySet, PublicKeySet};
use crate::ledger::tx::Role;
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
/// M2's format name: the `typ` of the message, of its envelope and of its signed content.
pub const M2_TYP: &str = "emrshare-handshake-m2/v2";
/// M3's format name: the `typ` of the message, also bound into its authenticated data.
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
/// The longest purpose a request may state, in bytes.
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
    /// The requester's signed request.
    Request,
    /// The patient's first message: its identity and ephemeral key, sealed to the requester.
    M1,
    /// The requester's answer: its ephemeral key, sealed to the patient.
    M2,
    /// The patient's record, under the session key.
    M3,
}

impl MessageKind {
    /// The `typ` that names this message's format.
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
#[non_exhaustive]
pub enum HandshakeError {
    /// A message over its size limit.
    #[error("{kind} of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Which message.
        kind: MessageKind,
        /// Its size, bytes.
        size: usize,
        /// The limit, bytes.
        limit: usize,
    },
    /// A message that does not parse as its format requires.
    #[error("malformed {kind}: {reason}")]
    Malformed {
        /// Which message.
        kind: MessageKind,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A message whose `typ` is none of the handshake's.
    #[error("not a handshake message of a known format (expected {expected})")]
    UnknownFormat {
        /// The message this step expects.
        expected: MessageKind,
    },
    /// A message of our own side's kind, sent back to us.
    #[error("{0} comes from our own side (reflected)")]
    Reflected(MessageKind),
    /// A message of the peer's, but not the one this step expects.
    #[error("expected {expected}, got {found} (out of order)")]
    OutOfOrder {
        /// The message this step expects.
        expected: MessageKind,
        /// The message received.
        found: MessageKind,
    },
    /// M3 with another sequence number than the one expected.
    #[error("{kind} has sequence number {found}, expected {expected}")]
    Sequence {
        /// Which message.
        kind: MessageKind,
        /// The sequence number expected.
        expected: u64,
        /// The one it carries.
        found: u64,
    },
    /// A message of another handshake: a request already answered, or a hash of the request or
    /// M1 that is not this handshake's.
    #[error("{0} belongs to another handshake (replayed)")]
    Replayed(MessageKind),
    /// A message that does not echo the nonce this side sent.
    #[error("{0} carries the wrong nonce")]
    WrongNonce(MessageKind),
    /// A message that repeats this side's own nonce or ephemeral key back.
    #[error("{0} echoes our own nonce or ephemeral key")]
    ReusedNonce(MessageKind),
    /// A message dated too far from the receiver's clock ([`HandshakeConfig::max_skew`]).
    #[error("{kind} time {time} is outside the accepted window around {now}")]
    TimeWindow {
        /// Which message.
        kind: MessageKind,
        /// Its time, Unix seconds.
        time: u64,
        /// The receiver's time, Unix seconds.
        now: u64,
    },
    /// A signed message that names another party than the one in this handshake.
    #[error("{kind} names the wrong {party}")]
    WrongId {
        /// Which message.
        kind: MessageKind,
        /// The party named wrongly: `"requester"` or `"patient"`.
        party: &'static str,
    },
    /// A registry entry of another ID than the party's (named) it was given for.
    #[error("the registry entry given is not the {0}'s")]
    EntryMismatch(&'static str),
    /// The patient has answered as many requests within the time window as it keeps.
    #[error(
        "{capacity} requests answered within the time window: no more until the oldest age out"
    )]
    TooManyAnswered {
        /// How many answered requests it keeps.
        capacity: usize,
    },
    /// The registry entry of the party (named) is revoked or outside its validity.
    #[error("the {0}'s registry entry is revoked or outside its validity period")]
    InactiveEntry(&'static str),
    /// The party's registry entry cannot serve in this exchange.
    #[error("the {party}'s registry entry cannot be used: {reason}")]
    UnusableEntry {
        /// The party: `"requester"`, `"patient"` or `"issuer"`.
        party: &'static str,
        /// Why: a role that does not take part, keys that do not parse, or an ID that is not
        /// self-certifying.
        reason: &'static str,
    },
    /// A signature that does not verify under the signer's registered key.
    #[error("bad signature on {0}")]
    BadSignature(MessageKind),
    /// A sealed message that does not open with our registered key.
    #[error("{0} does not decrypt: tampered, or not encrypted to our registered key")]
    Decrypt(MessageKind),
    /// M3 does not authenticate under the session key: tampered, or another session's.
    #[error("{0} does not authenticate under this session's key: tampered, or another session's")]
    SessionKey(MessageKind),
    /// An ephemeral key that is malformed or not a valid P-256 point.
    #[error("{0} carries an invalid ephemeral key")]
    BadEphemeralKey(MessageKind),
    /// A message could not be sealed to the peer's registered key.
    #[error("{0} could not be encrypted to the peer's registered key")]
    Encrypt(MessageKind),
    /// The shared record does not parse or verify.
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

mod patient;
mod requester;
mod session;
mod wire;

pub use patient::{
    AnsweredRequests, PatientAwaitingM2, PatientSessionEstablished, PatientStart, Request,
    VerifiedRequest,
};
pub use requester::{
    RequesterAwaitingIssuerKeys, RequesterAwaitingM1, RequesterAwaitingM3,
    RequesterAwaitingPatientKeys, RequesterStart, SharedRecord,
};
// The parts' own items, for each other and the tests (visible in this module only).
#[allow(unused_imports)]
use patient::*;
#[allow(unused_imports)]
use requester::*;
use session::*;
use wire::*;

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
