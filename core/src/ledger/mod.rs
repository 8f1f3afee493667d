//! The ledger's shared definitions (DESIGN section 6): everything a full node and a thin
//! client must agree on byte for byte lives here, so both use one definition.

pub mod bft;
pub mod block;
pub mod dpos;
pub mod governance;
pub mod machine;
pub mod merkle;
pub mod state;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod tx;
pub mod verify;
pub mod wire;
