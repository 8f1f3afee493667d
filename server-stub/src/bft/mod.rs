//! Consensus on Malachite (Tendermint), DESIGN section 7: our context (heights, block hashes
//! as values, core's signed votes and proposals, the powered validator set), the one wire
//! codec of gossip, sync and the write-ahead log, and the host loop that builds, checks and
//! applies blocks through the chain's state machine, and the watch that turns equivocation
//! seen in gossip into on-chain evidence.

pub mod codec;
pub mod context;
pub mod engine;
pub mod host;
pub mod watch;
