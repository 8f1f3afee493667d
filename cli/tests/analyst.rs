//! The analyst (issue 14, DESIGN section 6): the three stories run for three patients, two
//! hospitals (the record issuers) and two insurers on a local consortium; then an observer
//! with every block and every node's blobs tries to
//! (a) tell which transactions belong to one patient, across records;
//! (b) tell which institution was granted or read which record, or which patient's;
//! (c) read a grant's parts, an index entry, or a log's purpose.
//! It searches every transaction (its payload decoded, and every base64url token in it
//! decoded again) and every stored blob for every party ID, every registered key, every
//! record's account from another record of the same patient, and the plaintexts that must
//! stay sealed. Meanwhile the nodes enforced the grants, and each patient's own index and
//! audit log, read with proofs, are complete.
#![allow(clippy::unwrap_used)] // tests fail loudly on a broken fixture

use emrshare_cli::consortium::{LocalConsortium, council_approvals};
use emrshare_cli::memory::MemoryTransport;
use emrshare_client::{ClientConfig, NodeClient, Party, PartySettings};
use emrshare_core::handshake::{AnsweredRequests, HandshakeConfig, PatientStart, RequesterStart};
use emrshare_core::keys::txkeys::MasterSecret;
use emrshare_core::keys::{PartyId, RsaBits};
use emrshare_core::ledger::tx::{Role, SignedTransaction, TxBody};
use emrshare_core::record::{Ceas, Record};
use emrshare_core::voucher::VoucherSecretKey;
use emrshare_core::{PrivateKeySet, b64, jws};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

const PURPOSE: &str = "claim-ANALYST-PURPOSE-7731";
const DEPARTMENT: &str = "DEPT-oncology-analyst";
const PART: &str = "examination";

fn now() -> u64 {
    emrshare_cli::now()
}

type TestParty = Party<MemoryTransport>;

fn party(consortium: &LocalConsortium, keys: PrivateKeySet) -> TestParty {
    let config = ClientConfig::new(consortium.urls.clone(), consortium.genesis.clone());
    let client = NodeClient::new(config, MemoryTransport::new(consortium.routers())).unwrap();
    let settings = PartySettings {
        k: None,
        commit_timeout: Duration::from_secs(30),
    };
    let patient = keys.public().is_self_certifying();
    let party = Party::new(client, keys, settings);
    if patient {
        party.with_master_secret(MasterSecret::generate())
    } else {
        party
    }
}

fn keys(id: Option<&str>) -> PrivateKeySet {
    PrivateKeySet::generate(id.map(|i| PartyId::new(i).unwrap()), RsaBits::B2048)
}

/// What an observer could recognise a registered party by: its ID and its keys' public
/// numbers (base64url, as JWKs carry them).
fn fingerprints(party: &TestParty) -> Vec<String> {
    let public = party.with_keys(|k| k.public());
    let signing = serde_json::to_value(public.signing.to_jwk(None)).unwrap();
    let encryption = serde_json::to_value(public.encryption.to_jwk(None)).unwrap();
    vec![
        public.id.to_string(),
        signing["x"].as_str().unwrap().to_owned(),
        encryption["n"].as_str().unwrap()[..40].to_owned(),
    ]
}

/// `text` and, decoded, every base64url token in it (two levels deep: a JWS payload holds
/// JWEs whose headers are base64url JSON).
fn every_view(text: &str) -> String {
    let mut out = text.to_owned();
    for _ in 0..2 {
        let mut more = String::new();
        for token in out.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
            if token.len() >= 8 {
                if let Ok(bytes) = b64::decode(token) {
                    more.push(' ');
                    more.push_str(&String::from_utf8_lossy(&bytes));
                }
            }
        }
        out.push_str(&more);
    }
    out
}

/// Every file under `dir`, read whole.
fn files_under(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_reader_links_no_patient_learns_no_grantee_and_reads_nothing_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let consortium = LocalConsortium::start(dir.path(), 3, 300, false, None)
        .await
        .unwrap();
    let until = now() + 3600;

    // Institutions, admitted by the council; the first hospital signs patients' vouchers.
    let vouchers = VoucherSecretKey::generate(2048).unwrap();
    let hospitals = [
        party(&consortium, keys(Some("hospital:analyst-a"))),
        party(&consortium, keys(Some("hospital:analyst-b"))),
    ];
    let insurers = [
        party(&consortium, keys(Some("insurer:analyst-x"))),
        party(&consortium, keys(Some("insurer:analyst-y"))),
    ];
    let institutions = hospitals
        .iter()
        .map(|h| (Role::Hospital, h))
        .chain(insurers.iter().map(|i| (Role::Insurer, i)));
    for (i, (role, institution)) in institutions.enumerate() {
        let key = (i == 0).then(|| vouchers.public().unwrap());
        let proposal = institution
            .admission(role, 0, until, key.as_ref(), now() + 3600)
            .unwrap();
        let approvals = council_approvals(&consortium.dir, &proposal).unwrap();
        institution
            .submit_admission(proposal, approvals)
            .await
            .unwrap();
    }
    let patients: Vec<TestParty> = (0..3).map(|_| party(&consortium, keys(None))).collect();
    for patient in &patients {
        let (pending, blinded) = patient
            .blind_voucher_request(&hospitals[0].id())
            .await
            .unwrap();
        let voucher = pending
            .finalize(&vouchers.sign_blind(&blinded).unwrap())
            .unwrap();
        patient.register_patient(voucher, 0, until).await.unwrap();
    }

    // Story 1 and 3 for every patient: two records from two hospitals, stored; the first
    // shared in part with one insurer, the second whole with the other; both fetched; the
    // first grant revoked. Story 2 for the first patient: a handshake with an insurer.
    let mut emr_ids = Vec::new();
    let mut fetched = 0;
    for (j, patient) in patients.iter().enumerate() {
        for r in 0..2 {
            let hospital = &hospitals[(j + r) % 2];
            let record = Record::sample_bpds();
            emr_ids.push(record.record_id().to_owned());
            let sealed = hospital
                .sign_and_seal_for_registered(&record, &patient.id(), &Ceas::default_for(&record))
                .await
                .unwrap();
            let received = patient.receive_record(&sealed).await.unwrap();
            let stored = patient
                .store_record(&received.sd_jwt, DEPARTMENT, &|_, _| {})
                .await
                .unwrap();
            let (insurer, parts) = if r == 0 {
                (&insurers[0], vec![PART.to_owned()])
            } else {
                (&insurers[1], vec![])
            };
            let grant = patient
                .grant(&stored.envelope, &insurer.id(), Role::Insurer, &parts, 600)
                .await
                .unwrap();
            insurer.fetch_granted(&grant.grant_id).await.unwrap();
            fetched += 1;
            if r == 0 {
                patient.revoke(&grant.grant_id).await.unwrap();
                assert!(insurer.fetch_granted(&grant.grant_id).await.is_err());
            }
            if j == 0 && r == 0 {
                handshake(patient, &insurers[1], &received.sd_jwt).await;
            }
        }
    }

    // Each patient's own view, with proofs and no block replayed: both records, every access.
    for (j, patient) in patients.iter().enumerate() {
        let index = patient.indexed_records().await.unwrap();
        assert_eq!(index.len(), 2, "patient {j}'s index");
        assert!(index.iter().all(|r| r.department == DEPARTMENT));
        let audit = patient.audit_log().await.unwrap();
        let by_grant = audit.iter().filter(|e| e.grant_id.is_some()).count();
        assert_eq!(by_grant, 2, "patient {j}: one logged fetch per grant");
        let handshakes: Vec<_> = audit.iter().filter(|e| e.grant_id.is_none()).collect();
        if j == 0 {
            assert_eq!(handshakes.len(), 1);
            assert_eq!(handshakes[0].accessor, Some(insurers[1].id()));
            assert_eq!(handshakes[0].purpose.as_deref(), Some(PURPOSE));
        } else {
            assert!(handshakes.is_empty());
        }
    }
    assert_eq!(fetched, 6);

    // The observer: every block, every node's blobs.
    let client = &patients[0].client();
    let height = client.latest_header().await.unwrap().header.height;
    let blocks = client.verified_blocks(height).await.unwrap();
    let txs: Vec<SignedTransaction> = blocks.into_iter().flat_map(|b| b.txs).collect();
    let mut blobs = Vec::new();
    for i in 0..3 {
        let folder = consortium.dir.join(format!("node-{i}/data/blobs"));
        if folder.exists() {
            files_under(&folder, &mut blobs);
        }
    }
    consortium.stop().await.unwrap();
    assert!(!blobs.is_empty(), "the nodes hold the blobs");

    // Every transaction, as the observer reads it.
    let views: Vec<(&SignedTransaction, String)> = txs
        .iter()
        .map(|tx| {
            let payload = jws::unverified_payload(tx.as_jws()).unwrap();
            (tx, every_view(&payload.to_string()))
        })
        .collect();
    let is_record_flow = |tx: &SignedTransaction| {
        matches!(
            tx.transaction().body,
            TxBody::OpenRecord { .. }
                | TxBody::Grant { .. }
                | TxBody::RevokeGrant { .. }
                | TxBody::AccessLog { .. }
        )
    };
    let record_flows = views.iter().filter(|(tx, _)| is_record_flow(tx)).count();
    assert!(
        record_flows >= 3 * 2 * 3,
        "{record_flows} record transactions"
    );
    let blob_views: Vec<(String, String)> = blobs
        .iter()
        .map(|(name, bytes)| (name.clone(), every_view(&String::from_utf8_lossy(bytes))))
        .collect();

    // (a) and (b): no registered party shows in any record's transaction or any blob, in
    // clear or base64url; its registration and its own transactions are where it shows.
    let registered: Vec<(&str, Vec<String>)> = patients
        .iter()
        .map(|p| ("patient", fingerprints(p)))
        .chain(hospitals.iter().map(|h| ("hospital", fingerprints(h))))
        .chain(insurers.iter().map(|i| ("insurer", fingerprints(i))))
        .collect();
    for (what, marks) in &registered {
        for (tx, view) in &views {
            if !is_record_flow(tx) {
                continue;
            }
            for mark in marks {
                assert!(
                    !view.contains(mark.as_str()),
                    "a {what}'s {mark} in a record transaction: {view:.300}"
                );
            }
        }
        for (name, view) in &blob_views {
            for mark in marks {
                assert!(
                    !view.contains(mark.as_str()),
                    "a {what}'s {mark} in blob {name}"
                );
            }
        }
    }
    // (a): no record transaction is sent by a registered key, and each record's account
    // shows only in its own transactions: nothing ties two records of one patient.
    let registered_ids: BTreeSet<String> = registered
        .iter()
        .map(|(_, marks)| marks[0].clone())
        .collect();
    let mut accounts: BTreeMap<String, usize> = BTreeMap::new();
    for (tx, _) in &views {
        if is_record_flow(tx) {
            let sender = tx.transaction().sender.to_string();
            assert!(
                !registered_ids.contains(&sender),
                "a record transaction by {sender}"
            );
            if matches!(tx.transaction().body, TxBody::OpenRecord { .. }) {
                *accounts.entry(sender).or_default() += 1;
            }
        }
    }
    assert_eq!(accounts.len(), 6, "six records, six accounts");
    for account in accounts.keys() {
        for (tx, view) in &views {
            if tx.transaction().sender.as_str() != account {
                assert!(
                    !view.contains(account.as_str()),
                    "account {account} named in a transaction of {}",
                    tx.transaction().sender
                );
            }
        }
    }
    // (c): nothing sealed reads in clear: the department of the index entries, their
    // locations, the records' IDs, the parts granted, the handshake's purpose.
    let sealed: Vec<&str> = [DEPARTMENT, PURPOSE, PART, "emrshare:blob/"]
        .into_iter()
        .chain(emr_ids.iter().map(String::as_str))
        .collect();
    for secret in &sealed {
        for (tx, view) in &views {
            assert!(
                !view.contains(secret),
                "{secret} readable in a {:?}",
                std::mem::discriminant(&tx.transaction().body)
            );
        }
        for (name, view) in &blob_views {
            assert!(!view.contains(secret), "{secret} readable in blob {name}");
        }
    }
}

/// Story 2: `insurer` asks `patient` for a record's parts; they authenticate each other;
/// the patient sends the record and logs the exchange in the record's account.
async fn handshake(patient: &TestParty, insurer: &TestParty, record: &emrshare_core::SdJwt) {
    let config = HandshakeConfig::default();
    let (insurer_waiting, request) = insurer
        .with_keys(|k| RequesterStart::new(config).send_request(k, PURPOSE, &[PART], now()))
        .unwrap();
    let answered = Mutex::new(AnsweredRequests::default());
    let (verified, _) = patient
        .read_request(&request, Role::Insurer, &answered)
        .await
        .unwrap();
    let (patient_waiting, m1) = patient
        .with_keys(|k| {
            let mut answered = answered.lock().unwrap();
            PatientStart::new(config).send_m1(verified, &mut answered, k, now())
        })
        .unwrap();
    let (insurer_waiting, m2, _) = insurer
        .authenticate_patient(insurer_waiting, &m1)
        .await
        .unwrap();
    let m3 = patient
        .with_keys(|k| {
            let session = patient_waiting.receive_m2(&m2, k, now())?;
            session.send_record(record, &[PART], None, k, now())
        })
        .unwrap();
    let accepted = insurer.accept_record(insurer_waiting, &m3).await.unwrap();
    patient
        .log_shared_record(
            accepted.shared.record().record_id(),
            &insurer.id(),
            accepted.shared.purpose(),
        )
        .await
        .unwrap();
}
