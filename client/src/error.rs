//! The client's one error type: what a flow can fail with, in words a command line can print.
//! Front ends map it (the FFI edge to its stable variants with fixed texts).

use emrshare_core::ces::CesError;
use emrshare_core::jwe::JweError;
use emrshare_core::keys::{KeyError, PartyId};
use emrshare_core::ledger::tx::Role;
use emrshare_core::lookup::LookupError;

/// What a client flow can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The nodes could not be reached, refused, or gave no answer that verified.
    #[error(transparent)]
    Net(#[from] crate::NetError),
    /// Proven absent, registered in another role, or not active (revoked, outside its
    /// validity).
    #[error("{id} is not registered as {role:?}, or not active")]
    NotRegistered {
        /// The party looked up.
        id: PartyId,
        /// The role it was expected in.
        role: Role,
    },
    /// Fewer registered IDs of the role than the lookup's k: asking them all would hide the
    /// target among fewer than asked for, so it is refused unless asked for explicitly.
    #[error(
        "only {registered} registered IDs of that role: a lookup among {wanted} cannot hide its target (ask among all of them, or a smaller k, explicitly)"
    )]
    WeakLookup {
        /// Registered IDs of the role.
        registered: usize,
        /// The k the settings ask for.
        wanted: usize,
    },
    /// The caller's input is refused before anything is sent (the reason, fixed text).
    #[error("invalid input: {0}")]
    Invalid(&'static str),
    /// Something the nodes or a counterparty sent did not check out (what, fixed text).
    #[error("verification failed: {0}")]
    Unverified(&'static str),
    /// A write was not committed within the party's commit timeout (or a registration not
    /// proven by then).
    #[error("not committed in time")]
    Timeout,
    /// A record or presentation failed to parse, extract or verify.
    #[error(transparent)]
    Record(#[from] CesError),
    /// A record or key could not be sealed to a recipient's registered key.
    #[error("cannot seal: {0}")]
    Seal(JweError),
    /// An envelope could not be parsed or decrypted with the party's keys.
    #[error("cannot open: {0}")]
    Open(JweError),
    /// A key or party ID was refused.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A k-anonymous lookup could not be planned, or its answers conflict.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// A registration voucher could not be blinded, finalized or checked.
    #[error(transparent)]
    Voucher(#[from] emrshare_core::voucher::VoucherError),
    /// A handshake message was refused.
    #[error(transparent)]
    Handshake(#[from] emrshare_core::handshake::HandshakeError),
}

/// The client's result type, with [`ClientError`] by default.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
