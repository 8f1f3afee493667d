//! The patient's CPU cost of one handshake (DESIGN section 8): reading and checking the
//! request, M1, checking M2 and deriving the session key, extracting, binding and sealing the
//! record in M3. The requester's steps run between them untimed (`iter_custom`), and the
//! registry lookups are done once up front (they are network and proof checks, not the
//! protocol). Target: at most 5 ms; one RSA-3072 decryption (M2's key unwrap) dominates, so
//! it is measured alongside as the baseline of the ratio to report.
#![allow(clippy::unwrap_used)] // tests and benches fail loudly on a broken fixture
#![allow(missing_docs)] // criterion_group! defines a pub fn it cannot document

#[allow(dead_code)]
use criterion::{Criterion, criterion_group, criterion_main};
use emrshare_core::PrivateKeySet;
use emrshare_core::ces::{self, IssueOptions};
use emrshare_core::handshake::{AnsweredRequests, HandshakeConfig, PatientStart, RequesterStart};
use emrshare_core::keys::{PartyId, RsaBits};
use emrshare_core::ledger::testkit::Registry;
use emrshare_core::ledger::tx::Role;
use emrshare_core::record::{Ceas, Record};
use std::hint::black_box;
use std::time::{Duration, Instant};

const NOW: u64 = 1_790_000_000;

fn patient_side(c: &mut Criterion) {
    let named = |id: &str| Some(PartyId::new(id).unwrap());
    let patient = PrivateKeySet::generate(None, RsaBits::B3072);
    let insurer = PrivateKeySet::generate(named("insurer:acme"), RsaBits::B3072);
    let doctor = PrivateKeySet::generate(named("hospital:st-marys"), RsaBits::B3072);
    let registry = Registry::new()
        .with(&patient, Role::Patient)
        .with(&insurer, Role::Insurer)
        .with(&doctor, Role::Hospital);
    let (insurer_entry, patient_entry) = (registry.entry(&insurer.id), registry.entry(&patient.id));
    let record = Record::sample_bpds();
    let options = IssueOptions {
        issued_at: NOW,
        decoys: 2,
    };
    let record = ces::issue(
        &doctor,
        &patient.public(),
        &record,
        &Ceas::default_for(&record),
        options,
    )
    .unwrap();
    let config = HandshakeConfig::default();
    let parts = ["examination", "prescription"];
    let grant = [7u8; 64];

    // One full run, verified by the requester, so the bench measures a handshake that works.
    let run = |timed: &mut Duration| {
        let (a, request) = RequesterStart::new(config)
            .send_request(&insurer, "claim", &parts, NOW)
            .unwrap();
        let started = Instant::now();
        let start = PatientStart::new(config);
        let mut answered = AnsweredRequests::default();
        let verified = start
            .read_request(&request, NOW)
            .unwrap()
            .verify_requester(&insurer_entry, &answered, NOW)
            .unwrap();
        let (p, m1) = start
            .send_m1(verified, &mut answered, &patient, NOW)
            .unwrap();
        *timed += started.elapsed();
        let (a, m2) = a
            .receive_m1(&m1, &insurer, NOW)
            .unwrap()
            .verify_patient(&patient_entry, &insurer, NOW)
            .unwrap();
        let started = Instant::now();
        let m3 = p
            .receive_m2(&m2, &patient, NOW)
            .unwrap()
            .send_record(&record, &parts, Some(&grant), &patient, NOW)
            .unwrap();
        *timed += started.elapsed();
        black_box((a, m3))
    };
    let mut untimed = Duration::ZERO;
    let (a, m3) = run(&mut untimed);
    let a = a.receive_m3(&m3).unwrap();
    let issuer = registry.entry(&doctor.id);
    a.verify_record(&issuer, &issuer, NOW).unwrap();

    let mut group = c.benchmark_group("handshake");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("patient_side_rsa3072", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                run(&mut timed);
            }
            timed
        })
    });
    let wrapped = patient
        .decryption
        .encryption_key()
        .wrap_key(&[1u8; 64])
        .unwrap();
    group.bench_function("baseline_rsa3072_oaep_decrypt", |b| {
        b.iter(|| patient.decryption.unwrap_key(black_box(&wrapped)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, patient_side);
criterion_main!(benches);
