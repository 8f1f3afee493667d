//! # emrshare-client
//!
//! The async client of an emrshare consortium (DESIGN section 2): it reaches full nodes over
//! HTTP with rustls, and verifies every answer as a thin client must (certificates under the
//! validator set fixed by the chain, state proofs under certified headers).
//!
//! - [`transport`]: how a request reaches one node ([`HttpTransport`], and
//!   [`LyingTransport`] for tests of dishonest nodes).
//! - [`node`]: [`NodeClient`], the verified client of the nodes' API.
//! - [`party`]: [`Party`], one party's keys, sequence numbers, commits and lookups.
//! - [`records`]: the record flows (seal to a registered patient, receive, store, grant,
//!   revoke, fetch a granted record, verify a presentation, index, audit log), once for the
//!   SDK, the command line and the demo.
//! - [`governance`]: council approvals and governance actions, a hospital's doctors, key
//!   rotation.
//! - [`handshake`]: the handshake steps that need the consortium (reading a request,
//!   authenticating the patient, accepting the record and logging the access).
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]

pub mod error;
pub mod governance;
pub mod handshake;
pub mod node;
pub mod party;
pub mod records;
pub mod transport;

pub use error::{ClientError, Result};
pub use party::{LookedUp, Party, PartySettings};

pub use node::{
    ClientConfig, NetError, NodeClient, VerifiedBlock, VerifiedGrant, VerifiedRecordAccount,
};
pub use transport::{
    Alteration, Behaviour, HttpRequest, HttpResponse, HttpTransport, LyingTransport, Method,
    TlsTrust, Transport, TransportError,
};
