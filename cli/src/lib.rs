//! The `emrshare` command as a library: the binary (`src/main.rs`) parses the command line;
//! the steps live here so tests and benches drive them too.
//!
//! - [`demo`]: the three stories of DESIGN section 1 on a local consortium;
//! - [`consortium`]: a local consortium inside this process;
//! - [`roles`]: each role's steps against a running consortium;
//! - [`memory`]: a transport that reaches in-process nodes without sockets, for tests;
//! - [`files`]: key files and inputs.

pub mod consortium;
pub mod demo;
pub mod files;
pub mod memory;
pub mod roles;

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
