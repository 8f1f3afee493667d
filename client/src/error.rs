//! The client's one error type: what a flow can fail with, in words a command line can print.
//! Front ends map it (the FFI edge to its stable variants with fixed texts).

use emrshare_core::ces::CesError;
use emrshare_core::jwe::JweError;
use emrshare_core::keys::{KeyError, PartyId};
use emrshare_core::ledger::tx::Role;
use emrshare_core::lookup::LookupError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error(transparent)]
    Net(#[from] crate::NetError),
    /// Proven absent, registered in another role, or not active (revoked, outside its
    /// validity).
    #[error("{id} is not registered as {role:?}, or not active")]
    NotRegistered { id: PartyId, role: Role },
    /// Fewer registered IDs of the role than the lookup's k: asking them all would hide the
    /// target among fewer than asked for, so it is refused unless asked for explicitly.
    #[error(
        "only {registered} registered IDs of that role: a lookup among {wanted} cannot hide its target (ask among all of them, or a smaller k, explicitly)"
    )]
    WeakLookup { registered: usize, wanted: usize },
    #[error("invalid input: {0}")]
    Invalid(&'static str),
    #[error("verification failed: {0}")]
    Unverified(&'static str),
    #[error("not committed in time")]
    Timeout,
    #[error(transparent)]
    Record(#[from] CesError),
    #[error("cannot seal: {0}")]
    Seal(JweError),
    #[error("cannot open: {0}")]
    Open(JweError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error(transparent)]
    Handshake(#[from] emrshare_core::handshake::HandshakeError),
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
