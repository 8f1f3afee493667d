//! # emrshare-client
//!
//! The async client of an emrshare consortium (DESIGN section 2): it reaches full nodes over
//! HTTP with rustls, and verifies every answer as a thin client must (certificates under the
//! validator set fixed by the chain, state proofs under certified headers).
//!
//! - [`transport`]: how a request reaches one node ([`HttpTransport`], and
//!   [`LyingTransport`] for tests of dishonest nodes).
//! - [`node`]: [`NodeClient`], the verified client of the nodes' API.
#![forbid(unsafe_code)]

pub mod node;
pub mod transport;

pub use node::{ClientConfig, NetError, NodeClient, VerifiedBlock, VerifiedGrant, VerifiedIndex};
pub use transport::{
    Alteration, Behaviour, HttpRequest, HttpResponse, HttpTransport, LyingTransport, Method,
    TlsTrust, Transport, TransportError,
};
