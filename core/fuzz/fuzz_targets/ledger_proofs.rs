//! Ledger proofs against fixed trees (`common/ledger.rs`): a state-map proof parsed from JSON
//! (`StateProof`, strict parser), RFC 6962 inclusion and consistency proofs from raw hashes.
//! Soundness: whatever verifies against the fixed roots says what the trees really hold.
//!
//! Input: byte 0 picks the mode.
//! - 0: byte 1 picks the key (16 present, 8 absent), the rest is the proof's JSON.
//! - 1: index u64 BE, size u64 BE, leaf hash, then proof hashes (32 bytes each).
//! - 2: old size u64 BE, new size u64 BE, old root, then proof hashes.
#![no_main]

#[allow(dead_code)]
#[path = "common/ledger.rs"]
mod ledger;

use emrshare_core::ledger::merkle::{self, Hash};
use emrshare_core::ledger::state::{StateProof, StateTree};
use emrshare_core::strict_json;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct Fixed {
    keys: Vec<Hash>,
    state: StateTree,
    state_root: Hash,
    leaves: Vec<Hash>,
    root: Hash,
}

fn fixed() -> &'static Fixed {
    static F: OnceLock<Fixed> = OnceLock::new();
    F.get_or_init(|| {
        let state = ledger::state_tree();
        let leaves = ledger::leaves();
        Fixed {
            keys: ledger::keys(),
            state_root: state.root(),
            state,
            root: merkle::root(&leaves),
            leaves,
        }
    })
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(data[at..at + 8].try_into().unwrap())
}

fn hashes(data: &[u8]) -> Vec<Hash> {
    data.chunks_exact(32).map(|c| c.try_into().unwrap()).collect()
}

fuzz_target!(|data: &[u8]| {
    let f = fixed();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let Some((&sel, json)) = rest.split_first() else {
                return;
            };
            let Ok(proof) = strict_json::parse::<StateProof>(json) else {
                return;
            };
            let text = serde_json::to_vec(&proof).unwrap();
            assert_eq!(strict_json::parse::<StateProof>(&text).unwrap(), proof);
            let _ = proof.encoded_len();
            let key = &f.keys[sel as usize % f.keys.len()];
            if let Ok(found) = proof.verify(&f.state_root, key) {
                assert_eq!(found, f.state.get(key), "state proof verified a false statement");
            }
        }
        1 => {
            if rest.len() < 48 {
                return;
            }
            let (index, size) = (u64_at(rest, 0), u64_at(rest, 8));
            let leaf: Hash = rest[16..48].try_into().unwrap();
            let proof = hashes(&rest[48..]);
            let ok = merkle::verify_inclusion(&leaf, index, size, &proof, &f.root).is_ok();
            if ok && size == f.leaves.len() as u64 {
                assert_eq!(f.leaves.get(index as usize), Some(&leaf), "inclusion of a foreign leaf");
            }
        }
        _ => {
            if rest.len() < 48 {
                return;
            }
            let (old, new) = (u64_at(rest, 0), u64_at(rest, 8));
            let old_root: Hash = rest[16..48].try_into().unwrap();
            let proof = hashes(&rest[48..]);
            let ok = merkle::verify_consistency(old, new, &old_root, &f.root, &proof).is_ok();
            if ok && new == f.leaves.len() as u64 {
                assert!((1..=new).contains(&old), "consistency from size {old} verified");
                assert_eq!(
                    merkle::root(&f.leaves[..old as usize]),
                    old_root,
                    "consistency with a foreign old root"
                );
            }
        }
    }
});
