//! The one public error (DESIGN 2: "one public error at the FFI edge with stable variants").
//!
//! Kotlin sees a sealed `EmrshareException` with one subclass per variant, Swift an
//! `EmrshareError` enum. Variants are never renamed or removed (new ones may be added); their
//! messages are fixed texts chosen here: core's errors are mapped, not forwarded, because
//! their text may name parties, parts or nodes. Nothing here carries key material or record
//! contents.

use emrshare_client::NetError;
use emrshare_core::ces::CesError;
use emrshare_core::handshake::HandshakeError;
use emrshare_core::jwe::JweError;
use emrshare_core::keys::KeyError;
use emrshare_core::lookup::LookupError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum EmrshareError {
    /// An argument or configuration the app passed is not acceptable.
    #[error("invalid input: {reason}")]
    InvalidInput { reason: String },
    /// A record, envelope, presentation or node answer failed a cryptographic or structural
    /// check: tampered, forged, for someone else, or expired.
    #[error("verification failed: {reason}")]
    VerificationFailed { reason: String },
    /// The party is not registered (proven absent), or its registration is revoked or outside
    /// its validity.
    #[error("the party is not registered or not active")]
    NotRegistered,
    /// A node answered with a refusal (HTTP status), e.g. a fetch under a revoked grant.
    #[error("refused by the node (status {status})")]
    Refused { status: u16 },
    /// No node answered within the timeouts.
    #[error("no node answered ({tried} tried)")]
    Unreachable { tried: u32 },
    /// Nodes answered, but no answer verified against the consortium's genesis (dishonest or
    /// broken nodes); nothing was accepted.
    #[error("no node's answer verified ({nodes} failed)")]
    UntrustedAnswers { nodes: u32 },
    /// A transaction was accepted but not committed within the commit timeout.
    #[error("not committed in time")]
    Timeout,
    /// The secret store holds no keys under this name (restore before create).
    #[error("no keys in the secret store")]
    NoKeys,
    /// The secret store holds keys under this name already (create would replace them).
    #[error("keys exist in the secret store already")]
    KeysExist,
    /// The app's secret store failed; `reason` is the app's own text.
    #[error("secret store: {reason}")]
    SecretStore { reason: String },
    /// The operation was cancelled by the caller.
    #[error("cancelled")]
    Cancelled,
    /// A bug in this library.
    #[error("internal error: {reason}")]
    Internal { reason: String },
}

pub(crate) type Result<T, E = EmrshareError> = std::result::Result<T, E>;

/// An exception the app's secret store threw that is not an `EmrshareException`: its text is
/// not forwarded (it could hold anything).
impl From<uniffi::UnexpectedUniFFICallbackError> for EmrshareError {
    fn from(_: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::SecretStore {
            reason: "unexpected error in the app's secret store".into(),
        }
    }
}

pub(crate) fn invalid(reason: &str) -> EmrshareError {
    EmrshareError::InvalidInput {
        reason: reason.into(),
    }
}

pub(crate) fn unverified(reason: &str) -> EmrshareError {
    EmrshareError::VerificationFailed {
        reason: reason.into(),
    }
}

/// Logs the operation that failed and how (fixed texts only), then returns the error: the
/// app's side is not guaranteed to log anything.
pub(crate) fn logged(operation: &str, error: EmrshareError) -> EmrshareError {
    log::warn!("emrshare: {operation} failed: {error}");
    error
}

/// Errors of a received SD-JWT (from a doctor, a patient, or a blob): all are verification
/// failures except a part name the app asked for that the record lacks.
pub(crate) fn from_ces(e: CesError) -> EmrshareError {
    use CesError::*;
    match e {
        UnknownPart(_) => invalid("the record has no disclosable part of that name"),
        Malformed(_)
        | TooLarge(_)
        | Json(_)
        | UnsupportedDigest(_)
        | DuplicateDisclosure
        | DuplicateDigest
        | UnreferencedDisclosure
        | ClaimConflict(_)
        | DisclosureKind
        | MissingClaim(_)
        | Record(_) => unverified("malformed record"),
        IssuerJwt(_) => unverified("the doctor's signature does not verify"),
        KeyBindingJwt(_) => unverified("the patient's key binding does not verify"),
        CeasPartMissing(_) => unverified("a part the doctor made mandatory is missing"),
        WrongIssuer { .. } => unverified("the record was signed by another party"),
        WrongHolder => unverified("the record belongs to another patient"),
        KeyBindingMissing => unverified("the presentation has no key binding"),
        KeyBindingAudience => unverified("the presentation is for another audience"),
        KeyBindingNonce => unverified("the presentation answers another nonce"),
        KeyBindingTime => unverified("the presentation is too old or from the future"),
        KeyBindingHash => unverified("the key binding does not cover this presentation"),
        Validity => unverified("the record is expired or not yet valid"),
        Key(_) => unverified("a key in the record is invalid"),
        IssuerRegistration(reason) => unverified(reason),
        InactiveAtIssue(_) => EmrshareError::NotRegistered,
        // A check this version does not name still fails closed.
        _ => unverified("the record does not verify"),
    }
}

/// Errors of opening an envelope: wrong key and tampering look the same on purpose.
pub(crate) fn from_jwe_open(_: JweError) -> EmrshareError {
    unverified("the envelope does not open: tampered, malformed, or not sealed to this party")
}

/// Errors of sealing an envelope to keys we hold or verified.
pub(crate) fn from_jwe_seal(_: JweError) -> EmrshareError {
    EmrshareError::Internal {
        reason: "sealing an envelope failed".into(),
    }
}

pub(crate) fn from_key_input(e: KeyError) -> EmrshareError {
    match e {
        KeyError::InvalidId => invalid("invalid party ID (1-128 of A-Z a-z 0-9 . _ : -)"),
        KeyError::RsaKeySize { .. } => invalid("RSA keys must have 2048, 3072 or 4096 bits"),
        _ => invalid("invalid public key set"),
    }
}

pub(crate) fn from_net(e: NetError) -> EmrshareError {
    match e {
        NetError::NoAnswer { tried, .. } => EmrshareError::Unreachable {
            tried: tried as u32,
        },
        NetError::Refused { status, .. } => EmrshareError::Refused { status },
        NetError::Malformed(_) => unverified("a node's answer is malformed"),
        NetError::Lookup(e) => from_lookup(e),
        NetError::Unverified(evidence) => EmrshareError::UntrustedAnswers {
            nodes: evidence.len() as u32,
        },
        NetError::NoNodes => invalid("the configuration names no node"),
        NetError::Genesis(_) => invalid("the genesis is not a valid consortium genesis"),
        _ => unverified("the nodes' answers could not be used"),
    }
}

/// The client's errors, mapped to the stable variants with fixed texts (a client error may
/// name parties; these never do).
pub(crate) fn from_client(e: emrshare_client::ClientError) -> EmrshareError {
    use emrshare_client::ClientError as C;
    match e {
        C::Net(e) => from_net(e),
        C::NotRegistered { .. } => EmrshareError::NotRegistered,
        C::WeakLookup { .. } => invalid("k is larger than the directory of that role"),
        C::Invalid(reason) => invalid(reason),
        C::Unverified(reason) => unverified(reason),
        C::Timeout => EmrshareError::Timeout,
        C::Record(e) => from_ces(e),
        C::Seal(e) => from_jwe_seal(e),
        C::Open(e) => from_jwe_open(e),
        C::Key(e) => from_key_input(e),
        C::Lookup(e) => from_lookup(e),
        C::Handshake(e) => from_handshake(e),
        C::Voucher(_) => {
            unverified("the registration voucher or the hospital's voucher key is not valid")
        }
        _ => EmrshareError::Internal {
            reason: "an error this version does not name".into(),
        },
    }
}

pub(crate) fn from_lookup(e: LookupError) -> EmrshareError {
    match e {
        LookupError::BadK => invalid("k must be between 1 and 1024"),
        LookupError::TooFewRegistered { .. } => {
            invalid("k is larger than the directory of that role")
        }
        LookupError::NoVerifiedAnswer(evidence) => EmrshareError::UntrustedAnswers {
            nodes: evidence.len() as u32,
        },
        LookupError::ConflictingCertificates(_) => {
            unverified("two certified headers at one height: the consortium is compromised")
        }
        _ => unverified("the lookup's answers could not be used"),
    }
}

/// Handshake errors carry message kinds and fixed reasons only (no IDs, keys or contents),
/// so their text is kept; a failed record check is mapped like any other record's.
pub(crate) fn from_handshake(e: HandshakeError) -> EmrshareError {
    match e {
        HandshakeError::Record(e) => from_ces(e),
        HandshakeError::InactiveEntry(_) => EmrshareError::NotRegistered,
        HandshakeError::Encrypt(_) => EmrshareError::Internal {
            reason: "sealing a handshake message failed".into(),
        },
        other => EmrshareError::VerificationFailed {
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emrshare_core::keys::PartyId;

    #[test]
    fn mapped_errors_name_no_party_part_or_node() {
        let cases = [
            from_ces(CesError::WrongIssuer {
                expected: PartyId::new("hospital:st-elsewhere").unwrap(),
                found: "patient-thumbprint-abc".into(),
            }),
            from_ces(CesError::UnknownPart("hiv_status".into())),
            from_ces(CesError::CeasPartMissing("hiv_status".into())),
            from_net(NetError::Refused {
                status: 403,
                message: "no live grant for patient-thumbprint-abc".into(),
            }),
            from_net(NetError::NoAnswer {
                tried: 3,
                last: "http://10.1.2.3:7100: connection refused".into(),
            }),
            from_net(NetError::Malformed(
                "http://10.1.2.3:7100: hiv_status".into(),
            )),
        ];
        for e in &cases {
            let text = e.to_string();
            for secret in [
                "st-elsewhere",
                "patient-thumbprint-abc",
                "hiv_status",
                "10.1.2.3",
            ] {
                assert!(!text.contains(secret), "{text:?} names {secret}");
            }
        }
        assert_eq!(cases[3], EmrshareError::Refused { status: 403 });
        assert_eq!(cases[4], EmrshareError::Unreachable { tried: 3 });
        assert!(matches!(cases[1], EmrshareError::InvalidInput { .. }));
        assert!(matches!(cases[0], EmrshareError::VerificationFailed { .. }));
    }

    #[test]
    fn an_unexpected_callback_error_does_not_forward_the_app_text() {
        let e: EmrshareError =
            uniffi::UnexpectedUniFFICallbackError::new("key bytes 0x1234 leaked here").into();
        assert!(!e.to_string().contains("0x1234"));
    }
}
