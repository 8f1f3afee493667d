//! End-to-end latency of the request-and-share story (DESIGN section 1, story 2) on loopback:
//! a 5-node consortium in this process over HTTP; the insurer asks, the patient looks it up
//! k-anonymously (k = 10, n = 3), the insurer looks the patient and the doctor up, M1, M2, M3,
//! the insurer verifies the record; then the patient's AccessLog (sealed, in the record's own
//! account) is committed. Prints the median and the
//! 95th percentile of `--runs` runs (default 30), for "record verified" and "access logged".
//!
//!     cargo run --release -p emrshare-cli --example share_latency -- --runs 30

use anyhow::{Context, Result};
use emrshare_cli::consortium::{LocalConsortium, voucher_for};
use emrshare_client::{ClientConfig, HttpTransport, NodeClient, TlsTrust};
use emrshare_core::account::Account;
use emrshare_core::ces::{self, IssueOptions};
use emrshare_core::handshake::{AnsweredRequests, HandshakeConfig, PatientStart, RequesterStart};
use emrshare_core::keys::txkeys::MasterSecret;
use emrshare_core::keys::{PartyId, RsaBits};
use emrshare_core::ledger::tx::{Action, Outcome, Role};
use emrshare_core::ledger::verify::VerifiedEntry;
use emrshare_core::lookup::{LookupPlan, QuerySize};
use emrshare_core::record::{Ceas, Record};
use emrshare_core::record_account::{IndexEntry, LogDetails, RecordKeys, request_record_voucher};
use emrshare_core::voucher::VoucherSecretKey;
use emrshare_core::{PrivateKeySet, SdJwt};
use std::time::{Duration, Instant};

const K: usize = 10;

fn now() -> u64 {
    emrshare_cli::now()
}

async fn lookup(client: &NodeClient, id: &PartyId, role: Role) -> Result<VerifiedEntry> {
    let registered = client.directory_size(role).await?;
    let size = if K as u64 >= registered {
        QuerySize::All
    } else {
        QuerySize::K(K)
    };
    let plan = LookupPlan::new(id, role, registered, size)?;
    client.lookup(&plan).await?.target.context("not registered")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(30);
    let dir = tempfile::tempdir()?;
    let consortium = LocalConsortium::start(dir.path(), 5, 300, false, None).await?;
    let client = NodeClient::new(
        ClientConfig::new(consortium.urls.clone(), consortium.genesis.clone()),
        HttpTransport::new(TlsTrust::PlainHttpOnly, Duration::from_secs(3))?,
    )?;
    let chain = consortium.genesis.chain_id.clone();
    let party = |id: Option<&str>, bits| {
        Account::new(
            PrivateKeySet::generate(id.map(|i| PartyId::new(i).unwrap()), bits),
            &chain,
            0,
        )
    };
    let mut doctor = party(Some("hospital:st-marys"), RsaBits::B3072);
    let mut patient = party(None, RsaBits::B3072);
    let mut insurer = party(Some("insurer:acme-health"), RsaBits::B3072);
    let mut everyone = Vec::new();
    for i in 0..K {
        everyone.push((
            Role::Insurer,
            party(Some(&format!("insurer:d{i}")), RsaBits::B2048),
        ));
        everyone.push((
            Role::Hospital,
            party(Some(&format!("hospital:d{i}")), RsaBits::B2048),
        ));
        everyone.push((Role::Patient, party(None, RsaBits::B2048)));
    }
    let until = now() + 3600;
    // Institutions first (admitted by the council, the hospital with its voucher key), then
    // patients (registered with the hospital's vouchers).
    let vouchers = VoucherSecretKey::generate(2048)?;
    let mut admissions = vec![
        consortium.admission(
            &mut doctor,
            Role::Hospital,
            until,
            Some(&vouchers.public()?),
        )?,
        consortium.admission(&mut insurer, Role::Insurer, until, None)?,
    ];
    let mut patients = vec![&mut patient];
    for (role, account) in &mut everyone {
        if *role == Role::Patient {
            patients.push(account);
        } else {
            admissions.push(consortium.admission(account, *role, until, None)?);
        }
    }
    let mut registrations = Vec::new();
    for patient in patients {
        let voucher = voucher_for(&vouchers, &chain, patient.id())?;
        registrations.push(patient.register_patient(voucher, 0, until));
    }
    for txs in [admissions, registrations] {
        for tx in &txs {
            client.submit(tx).await?;
        }
        for tx in &txs {
            client
                .wait_sequence(&tx.transaction().sender, 0, Duration::from_secs(30))
                .await?;
        }
    }
    let record = ces::issue(
        doctor.keys(),
        &patient.keys().public(),
        &Record::sample_bpds(),
        &Ceas::default_for(&Record::sample_bpds()),
        IssueOptions {
            issued_at: now(),
            decoys: 2,
        },
    )?;
    let record = SdJwt::parse(&record.serialize())?;
    // The record's own account, where the patient logs each exchange.
    let account = RecordKeys::derive(&MasterSecret::generate(), 0);
    let (pending, request) = request_record_voucher(
        (patient.id(), &patient.keys().signing),
        &chain,
        &consortium.genesis.record_voucher_keys,
        account.id(),
        now(),
    )?;
    let voucher = pending.finalize(&client.record_voucher(&request).await?)?;
    let entry = IndexEntry {
        format: IndexEntry::FORMAT.into(),
        location: "emrshare:blob/none".into(),
        blob: emrshare_core::content_hash(b"none"),
        time: now(),
        department: "general".into(),
        record_id: None,
    };
    let open = account.open_account(&chain, voucher, &entry);
    client.submit(&open).await?;
    client
        .wait_sequence(account.id(), 0, Duration::from_secs(30))
        .await?;
    let config = HandshakeConfig::default();
    let (mut verified, mut logged) = (Vec::new(), Vec::new());
    let mut answered = AnsweredRequests::default();
    // The account's first transaction opened it: the logs follow.
    for log_sequence in 1..=runs as u64 {
        let started = Instant::now();
        let (insurer_waiting, request) = RequesterStart::new(config).send_request(
            insurer.keys(),
            "claim",
            &["examination"],
            now(),
        )?;
        let patient_side = PatientStart::new(config);
        let read = patient_side.read_request(&request, now())?;
        let entry = lookup(&client, read.requester(), Role::Insurer).await?;
        let request = read.verify_requester(&entry, &answered, now())?;
        let (patient_waiting, m1) =
            patient_side.send_m1(request, &mut answered, patient.keys(), now())?;
        let side = insurer_waiting.receive_m1(&m1, insurer.keys(), now())?;
        let entry = lookup(&client, side.patient(), Role::Patient).await?;
        let (insurer_waiting, m2) = side.verify_patient(&entry, insurer.keys(), now())?;
        let session = patient_waiting.receive_m2(&m2, patient.keys(), now())?;
        let m3 = session.send_record(&record, &["examination"], None, patient.keys(), now())?;
        let issuer = insurer_waiting.receive_m3(&m3)?;
        let entry = lookup(&client, issuer.issuer(), Role::Hospital).await?;
        // A hospital issued the record: it is its own hospital.
        let shared = issuer.verify_record(&entry, &entry, now())?;
        verified.push(started.elapsed());
        let details = LogDetails {
            accessor: insurer.id().clone(),
            record_id: shared.record().record_id().into(),
            purpose: Some(shared.purpose().into()),
            outcome: Outcome::Granted,
        };
        let log = account.log_access(&chain, log_sequence, Action::Read, now(), &details);
        client.submit(&log).await?;
        client
            .wait_sequence(account.id(), log_sequence, Duration::from_secs(20))
            .await?;
        logged.push(started.elapsed());
    }
    consortium.stop().await?;
    for (what, mut times) in [("record verified", verified), ("access logged", logged)] {
        times.sort();
        println!(
            "share story, {what}: median {:.1} ms, p95 {:.1} ms ({runs} runs, k = {K}, n = 3, 5 nodes, 300 ms slots)",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.95).as_secs_f64() * 1e3,
        );
    }
    Ok(())
}
