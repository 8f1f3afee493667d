//! The fixed ledger trees of the `ledger_proofs` target (also used by the seed generator).
#![allow(dead_code)]

use emrshare_core::ledger::merkle::{self, Hash};
use emrshare_core::ledger::state::{self, StateKey, StateTree};

/// Size of the fixed RFC 6962 tree.
pub const LEAVES: u32 = 37;

pub fn leaves() -> Vec<Hash> {
    (0..LEAVES).map(|i| merkle::leaf_hash(&i.to_be_bytes())).collect()
}

/// Keys of the fixed state map: the first 16 are present, the rest absent.
pub fn keys() -> Vec<StateKey> {
    let present = (0..16).map(|i| state::state_key("registry", &format!("party-{i}")));
    let absent = (0..8).map(|i| state::state_key("registry", &format!("absent-{i}")));
    present.chain(absent).collect()
}

pub fn state_tree() -> StateTree {
    let mut tree = StateTree::new();
    for (i, key) in keys().into_iter().take(16).enumerate() {
        tree.insert(key, state::value_hash(format!("value-{i}").as_bytes()));
    }
    tree
}
