//! A thin client's CPU per k-anonymous lookup (DESIGN section 8): verifying the answers of
//! n = 3 nodes to a k-ID request (k = 10, 100) over a registry of 1,000 institutions, with
//! the header's certificate checked (first sight) and with it already accepted (the client's
//! cache, the common case). The baseline in the same run is the certificate check alone.
#![allow(clippy::unwrap_used)] // tests and benches fail loudly on a broken fixture
#![allow(missing_docs)] // criterion_group! defines a pub fn it cannot document

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use emrshare_core::keys::txkeys::MasterSecret;
use emrshare_core::keys::{PartyId, RsaBits, SigningKey};
use emrshare_core::ledger::block::{CertifiedHeader, Header, Validator, ValidatorSet, certify};
use emrshare_core::ledger::governance::{GovAction, Proposal};
use emrshare_core::ledger::machine::{Context, LedgerState, registry_key};
use emrshare_core::ledger::tx::{Role, Transaction, TxBody};
use emrshare_core::ledger::verify::{LightClient, Verdict};
use emrshare_core::ledger::wire::{LookupEntry, LookupResponse};
use emrshare_core::lookup::{LookupKey, LookupPlan, QuerySize, verify_answers};
use emrshare_core::{Hash, PrivateKeySet};
use std::hint::black_box;
use std::time::Duration;

struct Setup {
    state: LedgerState,
    ids: Vec<PartyId>,
    client: LightClient,
    header: CertifiedHeader,
}

fn setup(registry: usize) -> Setup {
    let auditors: Vec<(PartyId, SigningKey)> = (0..3)
        .map(|i| {
            (
                PartyId::new(format!("node:{i}")).unwrap(),
                SigningKey::generate(),
            )
        })
        .collect();
    let set = ValidatorSet {
        validators: auditors
            .iter()
            .map(|(id, k)| Validator {
                id: id.clone(),
                signing_jwk: k.verifying_key().to_jwk(None),
                credit: 100,
            })
            .collect(),
        proposers: 1,
        auditors: 2,
    };
    // One RSA key for every institution: the registry only checks that it parses.
    let encryption = PrivateKeySet::generate(None, RsaBits::B2048)
        .decryption
        .encryption_key()
        .to_jwk(None);
    let mut state = LedgerState::genesis(&set.validators);
    let mut ids = Vec::new();
    for i in 0..registry {
        let id = PartyId::new(format!("insurer:{i:05}")).unwrap();
        let key = SigningKey::generate();
        // Admitted by the council: every validator approves (threshold 3 of 3).
        let proposal = Proposal::new(
            "bench",
            3600,
            GovAction::Admit {
                id: id.clone(),
                role: Role::Insurer,
                signing_jwk: key.verifying_key().to_jwk(None),
                encryption_jwk: encryption.clone(),
                valid_from: 0,
                valid_until: u64::MAX,
                voucher_key: None,
            },
        );
        let approvals = auditors
            .iter()
            .map(|(member, k)| proposal.approve(member, k))
            .collect();
        let tx = Transaction {
            chain_id: "bench".into(),
            sender: id.clone(),
            sequence: 0,
            body: TxBody::Govern {
                proposal,
                approvals,
            },
        }
        .sign(&key);
        let ctx = Context {
            chain_id: "bench",
            height: 1,
            now: 1,
        };
        state.apply(&tx, ctx).unwrap();
        ids.push(id);
    }
    let header = Header {
        chain_id: "bench".into(),
        height: 1,
        round: 0,
        previous: Hash::new([0; 32]),
        time_ms: 0,
        proposer: auditors[0].0.clone(),
        tx_root: Hash::new([0; 32]),
        state_root: state.root(),
        validators_hash: set.hash(),
        next_validators_hash: set.hash(),
        last_commit: Vec::new(),
    };
    // The proposer (power 2) and one auditor (power 1) hold 3 of 4.
    let signers: Vec<_> = auditors[..2].iter().map(|(id, key)| (id, key)).collect();
    let header = certify(header, 0, &signers);
    Setup {
        client: LightClient::new("bench", set).unwrap(),
        state,
        ids,
        header,
    }
}

fn answer(s: &Setup, plan: &LookupPlan) -> LookupResponse {
    LookupResponse {
        header: s.header.clone(),
        entries: plan
            .ids()
            .iter()
            .map(|id| {
                let (value, proof) = s.state.get_with_proof(&registry_key(id));
                LookupEntry {
                    id: id.clone(),
                    proof,
                    value: value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                }
            })
            .collect(),
    }
}

fn lookups(c: &mut Criterion) {
    let s = setup(1_000);
    let key = LookupKey::derive(&MasterSecret::generate());
    let mut cached = s.client.clone();
    assert_eq!(cached.verify_header(&s.header), Verdict::Success);
    let mut group = c.benchmark_group("client_lookup_n3");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    group.bench_function("baseline: certificate check alone", |b| {
        b.iter(|| black_box(s.client.clone().verify_header(&s.header)))
    });
    for k in [10usize, 100] {
        let plan =
            LookupPlan::new(&key, &s.ids[7], Role::Insurer, &s.ids, QuerySize::K(k)).unwrap();
        let answers: Vec<_> = (0..3)
            .map(|i| (format!("node-{i}"), Ok(answer(&s, &plan))))
            .collect();
        group.bench_with_input(
            BenchmarkId::new("first sight of the header", k),
            &k,
            |b, _| b.iter(|| black_box(verify_answers(&s.client, &plan, answers.clone()).unwrap())),
        );
        group.bench_with_input(
            BenchmarkId::new("header already accepted", k),
            &k,
            |b, _| b.iter(|| black_box(verify_answers(&cached, &plan, answers.clone()).unwrap())),
        );
    }
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
