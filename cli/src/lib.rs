//! The `emrshare` command as a library: the binary (`src/main.rs`) parses the command line;
//! the steps live here so tests and benches drive them too.
//!
//! - [`demo`]: the three stories of DESIGN section 1 on a local consortium;
//! - [`consortium`]: a local consortium inside this process;
//! - [`roles`]: each role's steps against a running consortium;
//! - [`governance`]: admissions, expulsions, key rotation and patient vouchers;
//! - [`memory`]: a transport that reaches in-process nodes without sockets, for tests;
//! - [`files`]: key files and inputs.

#![forbid(unsafe_code)]

pub mod consortium;
pub mod demo;
pub mod files;
pub mod governance;
pub mod memory;
pub mod roles;

use std::time::{SystemTime, UNIX_EPOCH};

/// `println!` for the command's output: when whoever reads it has gone (`emrshare ... |
/// head`), the command ends quietly with success instead of panicking on a broken pipe.
#[macro_export]
macro_rules! say {
    () => {
        $crate::say_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::say_line(format_args!($($arg)*))
    };
}

/// Writes one line of output (see [`say!`]).
pub fn say_line(line: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("emrshare: error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Unix time in seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
