//! Criterion benchmarks of every hot operation of core. `compare-openssl.sh` runs them next to
//! `openssl speed` and reports ratios; absolute times on shared machines mean little.
#![allow(clippy::unwrap_used)] // tests and benches fail loudly on a broken fixture
#![allow(missing_docs)] // criterion_group! defines a pub fn it cannot document

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use emrshare_core::PrivateKeySet;
use emrshare_core::ces::{self, IssueOptions, KeyBindingRequirement, SdJwt, VerifyPolicy};
use emrshare_core::jwe::Envelope;
use emrshare_core::keys::{DecryptionKey, PartyId, RsaBits, SigningKey};
use emrshare_core::record::{Ceas, Record};
use std::hint::black_box;
use std::time::Duration;

const NOW: u64 = 1_790_000_000;

fn envelopes(c: &mut Criterion) {
    let patient = PrivateKeySet::generate(None, RsaBits::B3072);
    let public = patient.public();
    let mut group = c.benchmark_group("envelope");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (label, size) in [
        ("1KiB", 1 << 10),
        ("64KiB", 64 << 10),
        ("1MiB", 1 << 20),
        ("16MiB", 16 << 20),
    ] {
        if size >= 1 << 20 {
            group.sample_size(10);
        }
        let plaintext = vec![0x5au8; size];
        let sealed = Envelope::seal_to(&plaintext, &[&public], None)
            .unwrap()
            .serialize();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("seal", label), &plaintext, |b, p| {
            b.iter(|| {
                Envelope::seal_to(black_box(p), &[&public], None)
                    .unwrap()
                    .serialize()
            })
        });
        group.bench_with_input(BenchmarkId::new("open", label), &sealed, |b, s| {
            b.iter(|| {
                Envelope::parse(black_box(s.as_bytes()))
                    .unwrap()
                    .open(&patient)
                    .unwrap()
            })
        });
        // The content path alone: parse, MAC, decrypt, with the content key already unwrapped
        // (the RSA unwrap is measured on its own below).
        let content_key = Envelope::parse(sealed.as_bytes())
            .unwrap()
            .unwrap_content_key(&patient);
        group.bench_with_input(BenchmarkId::new("open_content", label), &sealed, |b, s| {
            b.iter(|| {
                Envelope::parse(black_box(s.as_bytes()))
                    .unwrap()
                    .open_with_content_key(&content_key)
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn primitives(c: &mut Criterion) {
    let rsa = DecryptionKey::generate(RsaBits::B3072);
    let cek = [7u8; 64];
    let wrapped = rsa.encryption_key().wrap_key(&cek).unwrap();
    let signer = SigningKey::generate();
    let message = [1u8; 256];
    let signature = signer.sign(&message);
    let mut group = c.benchmark_group("primitive");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("rsa3072_oaep_wrap", |b| {
        b.iter(|| rsa.encryption_key().wrap_key(black_box(&cek)).unwrap())
    });
    group.bench_function("rsa3072_oaep_unwrap", |b| {
        b.iter(|| rsa.unwrap_key(black_box(&wrapped)).unwrap())
    });
    group.bench_function("es256_sign", |b| {
        b.iter(|| signer.sign(black_box(&message)))
    });
    group.bench_function("es256_verify", |b| {
        b.iter(|| {
            assert!(
                signer
                    .verifying_key()
                    .verify(black_box(&message), &signature)
            )
        })
    });
    group.finish();
}

fn content_extraction(c: &mut Criterion) {
    let doctor = PrivateKeySet::generate(
        Some(PartyId::new("hospital:bench").unwrap()),
        RsaBits::B2048,
    );
    let patient = PrivateKeySet::generate(None, RsaBits::B2048);
    let (doctor_pub, patient_pub) = (doctor.public(), patient.public());
    let record = Record::sample_bpds();
    let ceas = Ceas::default_for(&record);
    let options = IssueOptions {
        issued_at: NOW,
        decoys: 0,
    };
    let issued = ces::issue(&doctor, &patient_pub, &record, &ceas, options).unwrap();
    let presented = issued
        .extract(&["examination", "prescription"])
        .unwrap()
        .bind(&patient.signing, "insurer:x", "n", NOW);
    let text = presented.serialize();
    let policy = VerifyPolicy {
        holder: Some(&patient_pub),
        key_binding: Some(KeyBindingRequirement {
            audience: "insurer:x",
            nonce: "n",
        }),
        ..VerifyPolicy::new(&doctor_pub, NOW)
    };
    let mut group = c.benchmark_group("ces");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("sign_bpds7", |b| {
        b.iter(|| ces::issue(&doctor, &patient_pub, black_box(&record), &ceas, options).unwrap())
    });
    group.bench_function("extract_and_bind", |b| {
        b.iter(|| {
            black_box(&issued)
                .extract(&["examination", "prescription"])
                .unwrap()
                .bind(&patient.signing, "insurer:x", "n", NOW)
        })
    });
    group.bench_function("verify_presentation", |b| {
        b.iter(|| ces::verify(&SdJwt::parse(black_box(&text)).unwrap(), &policy).unwrap())
    });
    group.finish();
}

criterion_group!(benches, envelopes, primitives, content_extraction);
criterion_main!(benches);
