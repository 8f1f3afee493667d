//! Block apply: `LedgerState::apply` over a block of 100 and 1000 signed transactions
//! (admissions of new institutions, each with a council approval, Grant by records' accounts, and a half-and-half mix) on
//! a state of 10^4 registered identities and 10^4 records' accounts. Transactions are signed before any timing; each
//! iteration applies the block to a fresh clone of the base state (the clone is not timed).
//! Throughput is in transactions, so criterion prints transactions per second.
//!
//! Also timed: parsing the block's JWS texts then applying (what a node does with a received
//! block), and cloning (and dropping) the 10^4-identity state on its own: the node's chain
//! clones its whole state to try one submitted transaction, a proposal or a block.
#![allow(clippy::unwrap_used)] // tests and benches fail loudly on a broken fixture
#![allow(missing_docs)] // criterion_group! defines a pub fn it cannot document

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use emrshare_core::Hash;
use emrshare_core::keys::{DecryptionKey, Jwk, PartyId, RsaBits, SigningKey};
use emrshare_core::ledger::block::Validator;
use emrshare_core::ledger::governance::{GovAction, Proposal};
use emrshare_core::ledger::machine::{Context, LedgerState, RecordEntry};
use emrshare_core::ledger::tx::{Action, Role, SignedTransaction, Transaction, TxBody};
use std::hint::black_box;
use std::time::Duration;

const CHAIN: &str = "bench-chain";
const IDENTITIES: usize = 10_000;

fn ctx(height: u64) -> Context<'static> {
    Context {
        chain_id: CHAIN,
        height,
        now: 1_767_225_600,
    }
}

struct Party {
    id: PartyId,
    key: SigningKey,
}

/// The one-member council (threshold 1) that admits the bench's institutions.
fn council() -> &'static (PartyId, SigningKey) {
    static COUNCIL: std::sync::OnceLock<(PartyId, SigningKey)> = std::sync::OnceLock::new();
    COUNCIL.get_or_init(|| (PartyId::new("node:0").unwrap(), SigningKey::generate()))
}

fn genesis() -> LedgerState {
    let (id, key) = council();
    LedgerState::genesis(&[Validator {
        id: id.clone(),
        signing_jwk: key.verifying_key().to_jwk(None),
        credit: 100,
    }])
}

/// An institution's admission, approved by the council, sent by the institution.
fn registration(party: &Party, encryption_jwk: &Jwk) -> SignedTransaction {
    let proposal = Proposal::new(
        CHAIN,
        ctx(1).now + 3600,
        GovAction::Admit {
            id: party.id.clone(),
            role: Role::Hospital,
            signing_jwk: party.key.verifying_key().to_jwk(None),
            encryption_jwk: encryption_jwk.clone(),
            valid_from: 0,
            valid_until: u64::MAX,
            voucher_key: None,
        },
    );
    let (id, key) = council();
    let approvals = vec![proposal.approve(id, key)];
    Transaction {
        chain_id: CHAIN.into(),
        sender: party.id.clone(),
        sequence: 0,
        body: TxBody::Govern {
            proposal,
            approvals,
        },
    }
    .sign(&party.key)
}

/// A grant by a record's account (a capability: a key commitment, sealed details of a
/// realistic size).
fn grant(from: &Party, n: usize) -> SignedTransaction {
    Transaction {
        chain_id: CHAIN.into(),
        sender: from.id.clone(),
        sequence: 0,
        body: TxBody::Grant {
            grant_id: format!("grant-{n}"),
            blob: Hash::sha256(&n.to_be_bytes()),
            grant_key: Hash::sha256(format!("key-{n}").as_bytes()),
            actions: vec![Action::Read],
            not_after: u64::MAX,
            details: "d".repeat(1200),
        },
    }
    .sign(&from.key)
}

/// A record's account: its ID is its key's thumbprint.
fn record_account() -> Party {
    let key = SigningKey::generate();
    Party {
        id: PartyId::new(key.verifying_key().thumbprint()).unwrap(),
        key,
    }
}

fn party(name: String) -> Party {
    Party {
        id: PartyId::new(name).unwrap(),
        key: SigningKey::generate(),
    }
}

struct Fixture {
    base: LedgerState,
    /// Blocks by name: (kind, size) -> transactions.
    blocks: Vec<(&'static str, usize, Vec<SignedTransaction>)>,
}

/// 10^4 registered parties (one shared RSA encryption key: key generation is slow, and the
/// state machine does not care), then blocks of new registrations and of grants between the
/// registered parties, each sender using its next sequence number once.
fn fixture() -> Fixture {
    let encryption_jwk = DecryptionKey::generate(RsaBits::B2048)
        .encryption_key()
        .to_jwk(None);
    let parties: Vec<Party> = (0..IDENTITIES)
        .map(|i| party(format!("hospital:base-{i}")))
        .collect();
    let mut base = genesis();
    for p in &parties {
        base.apply(&registration(p, &encryption_jwk), ctx(1))
            .expect("base registration applies");
    }
    // As many records' accounts, opened without vouchers (the bench times grants, not
    // openings).
    let records: Vec<Party> = (0..IDENTITIES).map(|_| record_account()).collect();
    for r in &records {
        base.put_record_unchecked(
            &r.id,
            &RecordEntry {
                signing_jwk: r.key.verifying_key().to_jwk(None),
                entry: "e".repeat(300),
                height: 1,
                grants: 0,
                logs: 0,
            },
        );
    }
    let mut blocks = Vec::new();
    let mut next_sender = 0;
    let mut next_new = 0;
    for size in [100usize, 1000] {
        for kind in ["register", "grant", "mix"] {
            let mut txs = Vec::with_capacity(size);
            for i in 0..size {
                let is_grant = match kind {
                    "register" => false,
                    "grant" => true,
                    _ => i % 2 == 1,
                };
                if is_grant {
                    // Distinct senders per block (each has sequence 0 next in the base state).
                    let from = &records[next_sender % IDENTITIES];
                    txs.push(grant(from, next_sender));
                    next_sender += 1;
                } else {
                    txs.push(registration(
                        &party(format!("hospital:new-{next_new}")),
                        &encryption_jwk,
                    ));
                    next_new += 1;
                }
            }
            blocks.push((kind, size, txs));
        }
    }
    // Every block applies in full to the base state.
    for (kind, size, txs) in &blocks {
        let mut state = base.clone();
        for tx in txs {
            state
                .apply(tx, ctx(2))
                .unwrap_or_else(|e| panic!("{kind}/{size}: {e}"));
        }
    }
    Fixture { base, blocks }
}

fn block_apply(c: &mut Criterion) {
    let Fixture { base, blocks } = fixture();
    let mut group = c.benchmark_group("block_apply");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .sample_size(10);
    for (kind, size, txs) in &blocks {
        group.throughput(Throughput::Elements(*size as u64));
        group.bench_with_input(
            BenchmarkId::new(format!("apply/{kind}"), size),
            txs,
            |b, txs| {
                b.iter_batched(
                    || base.clone(),
                    |mut state| {
                        for tx in txs {
                            state.apply(black_box(tx), ctx(2)).unwrap();
                        }
                        state
                    },
                    BatchSize::LargeInput,
                )
            },
        );
        if *kind == "mix" {
            let texts: Vec<String> = txs.iter().map(|t| t.as_jws().to_owned()).collect();
            group.bench_with_input(
                BenchmarkId::new("parse_and_apply/mix", size),
                &texts,
                |b, texts| {
                    b.iter_batched(
                        || base.clone(),
                        |mut state| {
                            for text in texts {
                                let tx = SignedTransaction::parse(black_box(text)).unwrap();
                                state.apply(&tx, ctx(2)).unwrap();
                            }
                            state
                        },
                        BatchSize::LargeInput,
                    )
                },
            );
        }
    }
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("state_clone_and_drop", IDENTITIES), |b| {
        b.iter(|| black_box(&base).clone())
    });
    group.finish();
}

criterion_group!(benches, block_apply);
criterion_main!(benches);
