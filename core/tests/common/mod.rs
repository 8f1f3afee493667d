//! Shared fixtures: RSA key generation is slow, so each test binary makes its parties once.
#![allow(clippy::unwrap_used)] // tests and benches fail loudly on a broken fixture
#![allow(dead_code)]

pub mod registry;

use emrshare_core::PrivateKeySet;
use emrshare_core::keys::{PartyId, RsaBits};
use std::sync::OnceLock;

fn party(cell: &'static OnceLock<PrivateKeySet>, id: Option<&str>) -> &'static PrivateKeySet {
    cell.get_or_init(|| {
        PrivateKeySet::generate(id.map(|i| PartyId::new(i).unwrap()), RsaBits::B2048)
    })
}

pub fn doctor() -> &'static PrivateKeySet {
    static CELL: OnceLock<PrivateKeySet> = OnceLock::new();
    party(&CELL, Some("hospital:st-marys"))
}

pub fn patient() -> &'static PrivateKeySet {
    static CELL: OnceLock<PrivateKeySet> = OnceLock::new();
    party(&CELL, None)
}

pub fn insurer() -> &'static PrivateKeySet {
    static CELL: OnceLock<PrivateKeySet> = OnceLock::new();
    party(&CELL, Some("insurer:acme-health"))
}

pub fn stranger() -> &'static PrivateKeySet {
    static CELL: OnceLock<PrivateKeySet> = OnceLock::new();
    party(&CELL, Some("lab:elsewhere"))
}

pub const NOW: u64 = 1_790_000_000;
