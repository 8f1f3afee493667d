//! Constants shared by the fuzz targets and the seed generator (`examples/gen_seeds.rs`).
//! Keep them in sync with the committed fixtures: changing one means regenerating the seeds.

/// The fixed "current time" the targets verify at. Seeds are issued and key-bound at
/// `NOW - 60`, so they stay valid forever under this clock (and the fuzzer is deterministic).
pub const NOW: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
/// Audience and nonce of the key-binding JWT in the seeds.
pub const AUD: &str = "insurer:fuzz-verifier";
pub const NONCE: &str = "fuzz-nonce-0123456789";
/// Passphrase of the wrapped-secret seeds (the `wrapped_key` target unwraps with it).
pub const PASSPHRASE: &[u8] = b"pw";
/// Party ID of the fixture issuer (doctor).
pub const ISSUER_ID: &str = "hospital:fuzz-issuer";
