//! Shared fixtures: RSA key generation is slow, so each test binary makes its parties once.
#![allow(clippy::unwrap_used)] // tests and benches fail loudly on a broken fixture
#![allow(dead_code)]

use emrshare_core::PrivateKeySet;
use emrshare_core::keys::{PartyId, RsaBits};
use std::sync::OnceLock;

fn party(cell: &'static OnceLock<PrivateKeySet>, id: Option<&str>) -> &'static PrivateKeySet {
    cell.get_or_init(|| {
        PrivateKeySet::generate(id.map(|i| PartyId::new(i).unwrap()), RsaBits::B2048)
    })
}

/// A doctor of `hospital:st-marys` (RSA-2048), generated once per test binary.
pub(crate) fn doctor() -> &'static PrivateKeySet {
    static CELL: OnceLock<PrivateKeySet> = OnceLock::new();
    party(&CELL, Some("hospital:st-marys"))
}

/// A patient (its ID its key's thumbprint), generated once per test binary.
pub(crate) fn patient() -> &'static PrivateKeySet {
    static CELL: OnceLock<PrivateKeySet> = OnceLock::new();
    party(&CELL, None)
}

/// An insurer, `insurer:acme-health`, generated once per test binary.
pub(crate) fn insurer() -> &'static PrivateKeySet {
    static CELL: OnceLock<PrivateKeySet> = OnceLock::new();
    party(&CELL, Some("insurer:acme-health"))
}

/// A third party, `lab:elsewhere` (an outsider or attacker), generated once per test binary.
pub(crate) fn stranger() -> &'static PrivateKeySet {
    static CELL: OnceLock<PrivateKeySet> = OnceLock::new();
    party(&CELL, Some("lab:elsewhere"))
}

/// The time the tests run at, Unix seconds.
pub(crate) const NOW: u64 = 1_790_000_000;
