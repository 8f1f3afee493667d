//! A k-anonymous lookup by proven bucket (DESIGN section 8) at 10^3, 10^5 and 10^6 registered
//! IDs of a role: the client's CPU to verify n = 3 nodes' answers at k = 10 (the header already
//! accepted, the common case; the certificate check alone is the baseline in the same run), the
//! node's CPU to make one answer (bucket, proofs, JSON), and the bytes of an answer beyond its
//! entries (printed once per size); and a patient's audit of one record (its account and 10
//! logs, proven and opened) on a state of 10^5 registered parties. Registry entries are written without admitting each party
//! (the testkit's bulk path): what is measured is the lookup, not admission.
#![allow(clippy::unwrap_used)] // tests and benches fail loudly on a broken fixture
#![allow(missing_docs)] // criterion_group! defines a pub fn it cannot document

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use emrshare_core::keys::{PartyId, RsaBits, SigningKey};
use emrshare_core::ledger::block::{CertifiedHeader, Header, Validator, ValidatorSet, certify};
use emrshare_core::ledger::governance::Status;
use emrshare_core::ledger::machine::{KeyEpoch, LedgerState, RegistryEntry, StatusChange};
use emrshare_core::ledger::tx::Role;
use emrshare_core::ledger::verify::{LightClient, Verdict};
use emrshare_core::ledger::wire::BucketAnswer;
use emrshare_core::lookup::{LookupPlan, QuerySize, bucket_prefix, verify_answers};
use emrshare_core::{Hash, PrivateKeySet};
use std::hint::black_box;
use std::time::Duration;

struct Setup {
    state: LedgerState,
    ids: Vec<PartyId>,
    client: LightClient,
    header: CertifiedHeader,
    signers: Vec<(PartyId, SigningKey)>,
}

/// `header` certified again by the setup's signers (after its state root changed).
fn resign(s: &Setup, header: Header) -> CertifiedHeader {
    let signers: Vec<_> = s.signers.iter().map(|(id, key)| (id, key)).collect();
    certify(header, 0, &signers)
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
    // One key pair for every institution: a real entry's size, made once.
    let keys = PrivateKeySet::generate(None, RsaBits::B2048);
    let epoch = KeyEpoch {
        signing_jwk: keys.signing.verifying_key().to_jwk(None),
        encryption_jwk: keys.decryption.encryption_key().to_jwk(None),
        height: 1,
        time: 1,
    };
    let mut state = LedgerState::genesis(&set.validators);
    let mut ids = Vec::with_capacity(registry);
    for i in 0..registry {
        let id = PartyId::new(format!("insurer:{i:07}")).unwrap();
        state.put_entry_unchecked(&RegistryEntry {
            id: id.clone(),
            role: Role::Insurer,
            affiliation: None,
            valid_from: 0,
            valid_until: u64::MAX,
            keys: vec![epoch.clone()],
            statuses: vec![StatusChange {
                status: Status::Active,
                height: 1,
                time: 1,
            }],
            voucher_key: None,
        });
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
        signers: auditors.into_iter().take(2).collect(),
    }
}

/// What a node does for one bucket request: parse its path, the bucket, the proofs, JSON.
fn answer(s: &Setup, plan: &LookupPlan) -> Vec<u8> {
    let path = plan.path();
    let (_, rest) = path.rsplit_once("/bucket").unwrap();
    let (bits, prefix) = bucket_prefix(rest.trim_start_matches('/')).unwrap();
    let answer = s
        .state
        .bucket_answer(s.header.clone(), Role::Insurer, &prefix, bits, 4096)
        .unwrap();
    serde_json::to_vec(&answer).unwrap()
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("bucket_lookup_k10_n3");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    for registry in [1_000usize, 100_000, 1_000_000] {
        let s = setup(registry);
        let mut cached = s.client.clone();
        assert_eq!(cached.verify_header(&s.header), Verdict::Success);
        if registry == 1_000 {
            group.bench_function("baseline: certificate check alone", |b| {
                b.iter(|| black_box(s.client.clone().verify_header(&s.header)))
            });
        }
        let plan =
            LookupPlan::new(&s.ids[7], Role::Insurer, registry as u64, QuerySize::K(10)).unwrap();
        let bytes = answer(&s, &plan);
        let parsed: BucketAnswer = serde_json::from_slice(&bytes).unwrap();
        let entries: usize = parsed
            .entries
            .iter()
            .map(|e| serde_json::to_vec(e).unwrap().len())
            .sum();
        let header = serde_json::to_vec(&parsed.header).unwrap().len();
        eprintln!(
            "{registry} IDs: L = {} bits, bucket of {} IDs, answer {} bytes = entries {entries} + \
             header {header} + proofs {} (head proof {} B, bucket proof {} B as JSON; {} B and \
             {} B as binary hashes)",
            plan.bits(),
            parsed.entries.len(),
            bytes.len(),
            bytes.len() - entries - header,
            serde_json::to_vec(&parsed.head).unwrap().len(),
            serde_json::to_vec(&parsed.proof).unwrap().len(),
            parsed.head.proof.encoded_len(),
            parsed.proof.encoded_len(),
        );
        let answers: Vec<_> = (0..3)
            .map(|i| (format!("node-{i}"), Ok(parsed.clone())))
            .collect();
        group.bench_with_input(
            BenchmarkId::new("client: verify 3 answers, header accepted", registry),
            &registry,
            |b, _| b.iter(|| black_box(verify_answers(&cached, &plan, answers.clone()).unwrap())),
        );
        group.bench_with_input(
            BenchmarkId::new("node: make one answer", registry),
            &registry,
            |b, _| b.iter(|| black_box(answer(&s, &plan))),
        );
    }
    group.finish();
}

/// A patient's audit of one record (DESIGN section 6): its account and 10 access logs,
/// proven under a certified header, on a state of 10^5 registered parties, the logs opened
/// with the record's secrets; with the header's certificate checked too (the phone's usual
/// case: a new header), and as the node's CPU to make the answer.
fn audit(c: &mut Criterion) {
    use emrshare_core::keys::txkeys::MasterSecret;
    use emrshare_core::ledger::machine::{Context, RecordEntry};
    use emrshare_core::ledger::tx::{Action, Outcome};
    use emrshare_core::record_account::{LogDetails, RecordKeys, verify_record_answer};
    let mut s = setup(100_000);
    let record = RecordKeys::derive(&MasterSecret::generate(), 0);
    s.state.put_record_unchecked(
        record.id(),
        &RecordEntry {
            signing_jwk: record.signing_key().verifying_key().to_jwk(None),
            entry: "e".repeat(400),
            height: 1,
            grants: 0,
            logs: 0,
        },
    );
    let details = LogDetails {
        accessor: PartyId::new("insurer:0000007").unwrap(),
        record_id: "emr-1".into(),
        purpose: Some("claim 2026-117".into()),
        outcome: Outcome::Granted,
    };
    let ctx = Context {
        chain_id: "bench",
        height: 2,
        now: 1_000,
    };
    for n in 0..10 {
        let log = record.log_access("bench", n, Action::Read, 1_000, &details);
        s.state.apply(&log, ctx).unwrap();
    }
    let mut header = s.header.header.clone();
    header.state_root = s.state.root();
    let header = resign(&s, header);
    let answer = s.state.record_answer(header.clone(), record.id(), 0);
    let mut cached = s.client.clone();
    assert_eq!(cached.verify_header(&header), Verdict::Success);
    let bytes = serde_json::to_vec(&answer).unwrap();
    eprintln!(
        "audit of one record with 10 logs at 10^5 registered parties: answer {} bytes",
        bytes.len()
    );
    let mut group = c.benchmark_group("audit_one_record_10_logs_1e5_parties");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    // What the phone does with the answer: parse, (check the header), verify, open the logs.
    let audit = |trusted: Option<&LightClient>| {
        let parsed: emrshare_core::ledger::wire::RecordAnswer =
            serde_json::from_slice(&bytes).unwrap();
        let mut fresh = s.client.clone();
        let trust = match trusted {
            Some(trust) => trust,
            None => {
                assert_eq!(fresh.verify_header(&parsed.header), Verdict::Success);
                &fresh
            }
        };
        let proven = verify_record_answer(trust, record.id(), 0, &parsed).unwrap();
        let opened: Vec<_> = proven
            .logs
            .iter()
            .map(|l| record.open_log(l).unwrap())
            .collect();
        black_box(opened)
    };
    group.bench_function("client: verify and open, header accepted", |b| {
        b.iter(|| audit(Some(&cached)))
    });
    group.bench_function("client: with the header's certificate checked", |b| {
        b.iter(|| audit(None))
    });
    group.bench_function("node: make one answer", |b| {
        b.iter(|| {
            black_box(
                serde_json::to_vec(&s.state.record_answer(header.clone(), record.id(), 0)).unwrap(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, lookups, audit);
criterion_main!(benches);
