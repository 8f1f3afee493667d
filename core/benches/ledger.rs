//! State-proof generation and verification for k-ID lookups (k = 1, 10, 100) over registries
//! of 10^3, 10^5 and 10^6 identities, and the proof bytes per ID (printed once per size).
#![allow(clippy::unwrap_used)] // tests and benches fail loudly on a broken fixture
#![allow(missing_docs)] // criterion_group! defines a pub fn it cannot document

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use emrshare_core::ledger::state::{StateKey, StateTree, state_key, value_hash};
use std::hint::black_box;
use std::time::Duration;

fn registry(size: u32) -> (StateTree, Vec<StateKey>) {
    let mut tree = StateTree::new();
    let keys: Vec<StateKey> = (0..size)
        .map(|i| state_key("registry", &format!("hospital:{i}")))
        .collect();
    for (i, key) in keys.iter().enumerate() {
        tree.insert(*key, value_hash(&(i as u64).to_be_bytes()));
    }
    (tree, keys)
}

fn proofs(c: &mut Criterion) {
    let mut group = c.benchmark_group("state_proof");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    for size in [1_000u32, 100_000, 1_000_000] {
        let (tree, keys) = registry(size);
        let root = tree.root();
        let sample: Vec<StateKey> = (0..1000).map(|i| keys[(i * 7919) % keys.len()]).collect();
        let bytes: usize = sample.iter().map(|k| tree.prove(k).encoded_len()).sum();
        let depth = sample
            .iter()
            .map(|k| tree.prove(k).siblings.len())
            .max()
            .unwrap();
        println!(
            "registry of {size}: {} bytes per proof on average, deepest {depth} siblings",
            bytes / sample.len()
        );
        for k in [1usize, 10, 100] {
            let lookup: Vec<StateKey> = sample.iter().take(k).copied().collect();
            group.bench_with_input(
                BenchmarkId::new(format!("prove/{size}"), k),
                &lookup,
                |b, lookup| {
                    b.iter(|| {
                        lookup
                            .iter()
                            .map(|key| tree.prove(black_box(key)))
                            .collect::<Vec<_>>()
                    })
                },
            );
            let made: Vec<_> = lookup.iter().map(|key| tree.prove(key)).collect();
            group.bench_with_input(
                BenchmarkId::new(format!("verify/{size}"), k),
                &made,
                |b, made| {
                    b.iter(|| {
                        for (proof, key) in made.iter().zip(&lookup) {
                            assert!(proof.verify(&root, key).unwrap().is_some());
                        }
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, proofs);
criterion_main!(benches);
