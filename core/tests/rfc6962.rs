//! RFC 6962 inclusion and consistency proofs checked against the transparency-dev/merkle test
//! data in `../shared/testdata/rfc6962` (happy paths and tampered proofs). When the folder is
//! absent the tests say so and pass without checking (it is present in CI).
#![allow(clippy::unwrap_used)] // tests and benches fail loudly on a broken fixture

use base64_simd::STANDARD;
use emrshare_core::ledger::merkle::{self, Hash};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn testdata(kind: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/rfc6962")
        .join(kind);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} not found; RFC 6962 test data not checked",
            dir.display()
        );
        None
    }
}

fn cases(dir: &Path) -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(cases(&path));
        } else if path.extension().is_some_and(|e| e == "json") {
            let value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            out.push((path, value));
        }
    }
    out
}

/// A 32-byte hash, or `None` for anything else (the data uses empty and junk values).
fn hash(v: &Value) -> Option<Hash> {
    STANDARD.decode_to_vec(v.as_str()?).ok()?.try_into().ok()
}

fn proof(v: &Value) -> Option<Vec<Hash>> {
    match v {
        Value::Null => Some(Vec::new()),
        Value::Array(items) => items.iter().map(hash).collect(),
        _ => None,
    }
}

#[test]
fn inclusion_proofs_match_the_reference_data() {
    let Some(dir) = testdata("inclusion") else {
        return;
    };
    let all = cases(&dir);
    assert!(all.len() > 50, "only {} inclusion cases", all.len());
    for (path, case) in &all {
        let (index, size) = (
            case["leafIdx"].as_u64().unwrap(),
            case["treeSize"].as_u64().unwrap(),
        );
        let verdict = match (
            hash(&case["leafHash"]),
            hash(&case["root"]),
            proof(&case["proof"]),
        ) {
            (Some(leaf), Some(root), Some(proof)) => {
                merkle::verify_inclusion(&leaf, index, size, &proof, &root).is_ok()
            }
            _ => false,
        };
        let want_err = case["wantErr"].as_bool().unwrap();
        assert_eq!(verdict, !want_err, "{}: {}", path.display(), case["desc"]);
    }
}

#[test]
fn consistency_proofs_match_the_reference_data() {
    let Some(dir) = testdata("consistency") else {
        return;
    };
    let all = cases(&dir);
    assert!(all.len() > 50, "only {} consistency cases", all.len());
    let mut inexpressible = 0;
    for (path, case) in &all {
        let (old, new) = (
            case["size1"].as_u64().unwrap(),
            case["size2"].as_u64().unwrap(),
        );
        let want_err = case["wantErr"].as_bool().unwrap();
        let verdict = match (
            hash(&case["root1"]),
            hash(&case["root2"]),
            proof(&case["proof"]),
        ) {
            (Some(r1), Some(r2), Some(proof)) => {
                merkle::verify_consistency(old, new, &r1, &r2, &proof).is_ok()
            }
            // The reference compares roots as opaque bytes; our API takes 32-byte hashes, so a
            // case that expects success with other roots cannot be expressed. Count them.
            _ if !want_err => {
                eprintln!("not expressible with 32-byte roots: {}", path.display());
                inexpressible += 1;
                continue;
            }
            _ => false,
        };
        assert_eq!(verdict, !want_err, "{}: {}", path.display(), case["desc"]);
    }
    assert_eq!(
        inexpressible, 1,
        "only 'sizes are equal (one) and proof is empty' uses non-hash roots"
    );
}

/// The eight leaves of the RFC 6962 reference tree, from which the happy-path cases come.
fn reference_leaves() -> Vec<Hash> {
    let data: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];
    data.iter().map(|d| merkle::leaf_hash(d)).collect()
}

#[test]
fn generated_proofs_equal_the_reference_happy_paths() {
    let Some(dir) = testdata("") else { return };
    let leaves = reference_leaves();
    let mut compared = 0;
    for (path, case) in cases(&dir)
        .iter()
        .filter(|(p, _)| p.ends_with("happy-path.json"))
    {
        let kind = path
            .strip_prefix(&dir)
            .unwrap()
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        let expected = proof(&case["proof"]).unwrap();
        let generated = match kind {
            "inclusion" => {
                let size = case["treeSize"].as_u64().unwrap() as usize;
                if size > leaves.len() || hash(&case["root"]) != Some(merkle::root(&leaves[..size]))
                {
                    continue;
                }
                merkle::inclusion_proof(&leaves[..size], case["leafIdx"].as_u64().unwrap() as usize)
                    .unwrap()
            }
            "consistency" => {
                let (old, new) = (
                    case["size1"].as_u64().unwrap() as usize,
                    case["size2"].as_u64().unwrap() as usize,
                );
                if new > leaves.len()
                    || old == 0
                    || hash(&case["root2"]) != Some(merkle::root(&leaves[..new]))
                {
                    continue;
                }
                merkle::consistency_proof(&leaves[..new], old).unwrap()
            }
            _ => continue,
        };
        assert_eq!(generated, expected, "{}", path.display());
        compared += 1;
    }
    assert!(compared >= 4, "only {compared} happy paths compared");
}
