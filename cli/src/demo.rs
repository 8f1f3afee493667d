//! `emrshare demo`: the three stories of DESIGN section 1 against a local consortium started
//! inside this process (loopback, a temporary folder unless `--keep`). Every step is checked
//! and printed (who, what, verified by what, how long); the command fails if any check does
//! not hold.
//!
//! One of the patient's nodes lies on purpose: it swaps the keys in every lookup answer it
//! serves. The patient's lookups still succeed from the honest nodes, and report it.
//!
//! Then governance (DESIGN 3): a doctor admitted by its hospital, an impostor refused, a
//! doctor and an insurer expelled, and what stays valid after an expulsion.

use crate::consortium::{LocalConsortium, council_approvals};
use crate::now;
use anyhow::{Result, bail, ensure};
use emrshare_client::records::StoredRecord;
use emrshare_client::{
    Behaviour, ClientConfig, HttpTransport, LookedUp, LyingTransport, NodeClient, Party,
    PartySettings, TlsTrust, Transport,
};
use emrshare_core::handshake::{AnsweredRequests, HandshakeConfig, PatientStart, RequesterStart};
use emrshare_core::keys::txkeys::MasterSecret;
use emrshare_core::keys::{PartyId, RsaBits};
use emrshare_core::ledger::tx::Role;
use emrshare_core::ledger::wire::BucketAnswer;
use emrshare_core::record::{Ceas, Record};
use emrshare_core::voucher::VoucherSecretKey;
use emrshare_core::{PrivateKeySet, SdJwt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The command's options.
pub struct Options {
    /// IDs per k-anonymous lookup (target + k-1 decoys).
    pub k: usize,
    /// Nodes in the local consortium.
    pub nodes: usize,
    /// Keep the consortium's files (keys, genesis, databases) here.
    pub keep: Option<PathBuf>,
    /// Replace what a previous run kept in `keep`.
    pub force: bool,
    /// The first node's port; default: free ports found.
    pub base_port: Option<u16>,
}

pub fn run(options: Options) -> Result<()> {
    ensure!(options.k >= 1, "--k must be at least 1");
    if let Some(dir) = &options.keep {
        let used = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
        if used && !options.force {
            bail!(
                "{} is not empty (a kept consortium?); choose an empty folder, or pass --force to replace it",
                dir.display()
            );
        }
        if used {
            std::fs::remove_dir_all(dir.join("consortium")).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(options))
}

/// Prints one timed step.
fn step(started: Instant, who: &str, what: impl std::fmt::Display) {
    crate::say!(
        "  {:>8.1} ms  {who:<8} {what}",
        started.elapsed().as_secs_f64() * 1e3
    );
}

fn note(what: impl std::fmt::Display) {
    crate::say!("              {what}");
}

/// A check that must refuse: prints the refusal, fails the demo if it was accepted.
fn refused<T, E: std::fmt::Display>(what: &str, outcome: std::result::Result<T, E>) -> Result<()> {
    match outcome {
        Ok(_) => bail!("check failed: {what} was accepted"),
        Err(e) => {
            crate::say!("              refused: {what} ({e})");
            Ok(())
        }
    }
}

/// The consortium as the demo's parties reach it: every party's client goes through one
/// transport on which the last node lies.
struct World<T: Transport> {
    transport: Arc<LyingTransport<T>>,
    config: ClientConfig,
    /// The consortium's folder: its nodes' keys are the council's (admissions).
    dir: PathBuf,
    lying_node: String,
    k: usize,
}

/// A party of the demo: the client's `Party`, the same the SDK and the CLI run.
type DemoParty<T> = Party<Arc<LyingTransport<T>>>;

impl<T: Transport> World<T> {
    fn party(&self, keys: PrivateKeySet) -> Result<DemoParty<T>> {
        let client = NodeClient::new(self.config.clone(), Arc::clone(&self.transport))?;
        let settings = PartySettings {
            k: Some(self.k),
            commit_timeout: Duration::from_secs(30),
        };
        let patient = keys.public().is_self_certifying();
        let party = Party::new(client, keys, settings);
        // The patient's records' accounts derive from its master secret.
        Ok(if patient {
            party.with_master_secret(MasterSecret::generate())
        } else {
            party
        })
    }

    fn describe(&self, found: &LookedUp) {
        let outcome = &found.outcome;
        let header = &outcome.header;
        note(format_args!(
            "hid among {} of {} IDs (one proven bucket) at {} nodes; verified by {} (certificate of {} validators, height {})",
            found.asked,
            outcome.registered,
            outcome.verified_by.len() + outcome.evidence.len() + outcome.lagging.len(),
            outcome.verified_by.join(", "),
            header.certificate.signatures.len(),
            header.header.height,
        ));
        for evidence in &outcome.evidence {
            let lying = if evidence.node == self.lying_node {
                " (the lying node)"
            } else {
                ""
            };
            note(format_args!(
                "evidence against {}{lying}: {}",
                evidence.node, evidence.fault
            ));
        }
    }
}

fn keys(id: Option<&str>, bits: RsaBits) -> Result<PrivateKeySet> {
    Ok(PrivateKeySet::generate(
        id.map(PartyId::new).transpose()?,
        bits,
    ))
}

async fn run_async(options: Options) -> Result<()> {
    let started = Instant::now();
    let temp;
    let dir = match &options.keep {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    crate::say!("emrshare demo: the three stories of DESIGN section 1 on a local consortium\n");
    crate::say!("0. The consortium");
    let t = Instant::now();
    let consortium = LocalConsortium::start(
        &dir.join("consortium"),
        options.nodes,
        300,
        false,
        options.base_port,
    )
    .await?;
    step(
        t,
        "nodes",
        format_args!(
            "{} nodes in this process ({} proposers, {} auditors, Tendermint on Malachite, a block every 300 ms at most), certified blocks flowing",
            consortium.urls.len(),
            consortium.proposers,
            consortium.auditors
        ),
    );
    note(format_args!("{}", consortium.urls.join("  ")));
    let transport = HttpTransport::new(TlsTrust::PlainHttpOnly, Duration::from_secs(3))?;
    let result = run_stories(&consortium, transport, options.k).await;
    consortium.stop().await?;
    result?;
    crate::say!(
        "\nall checks held ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    if let Some(dir) = &options.keep {
        crate::say!("consortium files kept in {}", dir.display());
    }
    Ok(())
}

/// The three stories over `transport` to `consortium`, with its last node lying (see the
/// module docs).
pub async fn run_stories<T: Transport>(
    consortium: &LocalConsortium,
    transport: T,
    k: usize,
) -> Result<()> {
    let transport = LyingTransport::new(transport);
    let lying_node = consortium.urls[consortium.urls.len() - 1].clone();
    transport.set(&lying_node, swapped_keys());
    let mut config = ClientConfig::new(consortium.urls.clone(), consortium.genesis.clone());
    config.n = config.n.min(consortium.urls.len());
    let world = World {
        transport: Arc::new(transport),
        config,
        dir: consortium.dir.clone(),
        lying_node: lying_node.clone(),
        k,
    };
    note(format_args!(
        "clients trust only genesis.json; {lying_node} swaps the keys in every lookup answer"
    ));
    stories(&world).await
}

/// A node that answers every lookup with the first entry's signing key replaced: what a
/// man in the middle would like the patient to use.
fn swapped_keys() -> Behaviour {
    let attacker = emrshare_core::keys::SigningKey::generate()
        .verifying_key()
        .to_jwk(None);
    Behaviour::Alter(Arc::new(move |request, response| {
        if !request.path.contains("/bucket") {
            return;
        }
        let Ok(mut answer) = serde_json::from_slice::<BucketAnswer>(&response.body) else {
            return;
        };
        for entry in &mut answer.entries {
            if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&entry.value) {
                // The current key: the last of the entry's key history.
                if let Some(current) = v["keys"].as_array_mut().and_then(|k| k.last_mut()) {
                    current["signing_jwk"] =
                        serde_json::to_value(&attacker).expect("JWKs serialize");
                }
                entry.value = v.to_string();
            }
        }
        response.body = serde_json::to_vec(&answer).expect("answers serialize");
    }))
}

struct Parties<T: Transport> {
    doctor: DemoParty<T>,
    patient: DemoParty<T>,
    insurer: DemoParty<T>,
}

async fn stories<T: Transport>(world: &World<T>) -> Result<()> {
    crate::say!(
        "\n1. Parties join (DESIGN 3): the council admits institutions, patients register with a hospital's voucher"
    );
    let t = Instant::now();
    let parties = Parties {
        doctor: world.party(keys(Some("hospital:st-marys"), RsaBits::B3072)?)?,
        patient: world.party(keys(None, RsaBits::B3072)?)?,
        insurer: world.party(keys(Some("insurer:acme-health"), RsaBits::B3072)?)?,
    };
    step(
        t,
        "all",
        "doctor, patient and insurer generate ES256 + RSA-3072 keys",
    );
    let t = Instant::now();
    let decoys = world.k.max(2);
    let mut others = Vec::new();
    for i in 0..decoys {
        for (role, name) in [
            (Role::Insurer, Some(format!("insurer:decoy-{i:02}"))),
            (Role::Hospital, Some(format!("hospital:decoy-{i:02}"))),
            (Role::Patient, None),
        ] {
            others.push((role, world.party(keys(name.as_deref(), RsaBits::B2048)?)?));
        }
    }
    step(
        t,
        "others",
        format_args!(
            "{} other institutions and patients generate keys (decoys for lookups)",
            others.len()
        ),
    );
    // The hospital's voucher key: patients register with its blind signatures.
    let t = Instant::now();
    let vouchers = VoucherSecretKey::generate(2048)?;
    step(
        t,
        "doctor",
        "hospital:st-marys makes its voucher key (RSA-2048, RFC 9474 blind signatures)",
    );
    // Every institution at once: one block or two, not one per party.
    let t = Instant::now();
    let until = now() + 365 * 24 * 3600;
    let institutions: Vec<(Role, &DemoParty<T>)> = [
        (Role::Hospital, &parties.doctor),
        (Role::Insurer, &parties.insurer),
    ]
    .into_iter()
    .chain(
        others
            .iter()
            .filter(|(role, _)| *role != Role::Patient)
            .map(|(role, party)| (*role, party)),
    )
    .collect();
    let council = world.config.genesis.council();
    for (role, party) in &institutions {
        let voucher_key = if std::ptr::eq(*party, &parties.doctor) {
            Some(vouchers.public()?)
        } else {
            None
        };
        let proposal = party.admission(*role, 0, until, voucher_key.as_ref(), now() + 3600)?;
        let approvals = council_approvals(&world.dir, &proposal)?;
        let tx = party.sign_next(|a| a.govern(proposal, approvals)).await?;
        party.client().submit(&tx).await?;
    }
    for (_, party) in &institutions {
        party.wait_committed(0).await?;
    }
    step(
        t,
        "council",
        format_args!(
            "{} institutions admitted: each admission approved by {} of the {} council members (t > 2n/3), sent by the admitted party",
            institutions.len(),
            council.threshold,
            council.members.len()
        ),
    );
    // Patients: each with a voucher the hospital signs blind.
    let t = Instant::now();
    let patients: Vec<&DemoParty<T>> = std::iter::once(&parties.patient)
        .chain(
            others
                .iter()
                .filter(|(role, _)| *role == Role::Patient)
                .map(|(_, party)| party),
        )
        .collect();
    let hospital = parties.doctor.id();
    for patient in &patients {
        let (pending, blinded) = patient.blind_voucher_request(&hospital).await?;
        let voucher = pending.finalize(&vouchers.sign_blind(&blinded)?)?;
        let tx = patient
            .sign_next(|a| a.register_patient(voucher, 0, until))
            .await?;
        patient.client().submit(&tx).await?;
    }
    for patient in &patients {
        patient.wait_committed(0).await?;
    }
    step(
        t,
        "patients",
        format_args!(
            "{} patients registered, each with a one-use voucher hospital:st-marys signed blind (it cannot tell which registration used it; patient ID {})",
            patients.len(),
            parties.patient.id()
        ),
    );

    let (stored, received) = visit(world, &parties).await?;
    share(world, &parties, &received).await?;
    standing_grant(world, &parties, &stored).await?;
    let hospitals: Vec<&DemoParty<T>> = others
        .iter()
        .filter(|(role, _)| *role == Role::Hospital)
        .map(|(_, party)| party)
        .collect();
    governance(world, &parties, &hospitals, &stored, &received).await?;
    Ok(())
}

/// Governance (DESIGN 3): a doctor admitted by its hospital, whose records verify until
/// the hospital expels it (those issued before stay valid); an impostor that registers
/// itself as a hospital, and an admission short of the council's threshold, refused; an
/// insurer expelled by the council, then refused, while the record shared before stays
/// valid.
async fn governance<T: Transport>(
    world: &World<T>,
    p: &Parties<T>,
    decoy_hospitals: &[&DemoParty<T>],
    stored: &StoredRecord,
    received: &SdJwt,
) -> Result<()> {
    use emrshare_core::ledger::governance::Status;
    use emrshare_core::ledger::tx::TxBody;
    crate::say!("\n5. Governance (DESIGN 3): who may be a doctor, a hospital, an insurer");
    let until = now() + 365 * 24 * 3600;

    // A doctor admitted by its hospital, and k - 1 decoy doctors by other hospitals, so the
    // doctor hides among k doctors in lookups.
    let t = Instant::now();
    let alice = world.party(keys(Some("doctor:alice"), RsaBits::B2048)?)?;
    let entry = p
        .doctor
        .admit_doctor(&alice.with_keys(|k| k.public()), 0, until)
        .await?;
    let mut waiting = Vec::new();
    for (i, hospital) in decoy_hospitals
        .iter()
        .take(world.k.saturating_sub(1))
        .enumerate()
    {
        let doctor = keys(Some(&format!("doctor:decoy-{i:02}")), RsaBits::B2048)?.public();
        let tx = hospital
            .sign_next(|a| a.admit_doctor(&doctor, 0, until))
            .await?;
        hospital.client().submit(&tx).await?;
        waiting.push((hospital, tx.transaction().sequence));
    }
    for (hospital, sequence) in waiting {
        hospital.wait_committed(sequence).await?;
    }
    step(
        t,
        "doctor",
        format_args!(
            "hospital:st-marys admits doctor:alice (entry affiliated with {}, proven at height {}); other hospitals admit {} decoy doctors",
            entry
                .affiliation()
                .map_or("nobody".into(), |h| h.to_string()),
            entry.height(),
            world.k.saturating_sub(1)
        ),
    );
    let record = Record::sample_bpds();
    let ceas = Ceas::default_for(&record);
    let t = Instant::now();
    let before = alice
        .sign_and_seal_for_registered(&record, &p.patient.id(), &ceas)
        .await?;
    let got = p.patient.receive_record(&before).await?;
    ensure!(
        got.doctor.entry.affiliation() == Some(&p.doctor.id()),
        "the doctor's entry names another hospital"
    );
    step(
        t,
        "patient",
        "verifies doctor:alice's record: her entry (looked up among doctors) and her hospital's, both admitted and active when she signed",
    );
    world.describe(&got.doctor);

    // Impostors: self-registration of an institution, an admission short of t approvals.
    let t = Instant::now();
    let impostor = world.party(keys(Some("hospital:st-elsewhere"), RsaBits::B2048)?)?;
    let own = impostor.with_keys(|k| k.public());
    let self_registered = impostor
        .commit(|a| {
            Ok((
                a.sign(TxBody::RegisterIdentity {
                    id: own.id.clone(),
                    role: Role::Hospital,
                    signing_jwk: own.signing.to_jwk(None),
                    encryption_jwk: own.encryption.to_jwk(None),
                    valid_from: 0,
                    valid_until: until,
                    voucher: None,
                }),
                (),
            ))
        })
        .await;
    refused(
        "hospital:st-elsewhere registering itself as a hospital",
        self_registered,
    )?;
    let proposal = impostor.admission(Role::Hospital, 0, until, None, now() + 3600)?;
    let mut approvals = council_approvals(&world.dir, &proposal)?;
    approvals.pop();
    refused(
        "its admission with t - 1 council approvals",
        impostor.submit_admission(proposal, approvals).await,
    )?;
    refused(
        "a lookup of hospital:st-elsewhere",
        p.patient.look_up(&own.id, Role::Hospital).await,
    )?;
    step(
        t,
        "council",
        "hospital:st-elsewhere could not make itself a hospital: no single key admits an institution",
    );

    // The hospital expels its doctor: records she issued before stay valid, later ones not.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let t = Instant::now();
    let expelled = p
        .doctor
        .set_doctor_status(&alice.id(), Status::Expelled)
        .await?;
    let ended = expelled.ended().map_or(0, |c| c.height);
    step(
        t,
        "doctor",
        format_args!("hospital:st-marys expels doctor:alice (at height {ended}, proven)"),
    );
    let t = Instant::now();
    p.patient.receive_record(&before).await?;
    step(
        t,
        "patient",
        "doctor:alice's record signed before the expulsion still verifies",
    );
    let after = alice.sign_and_seal(&record, &p.patient.with_keys(|k| k.public()), &ceas)?;
    refused(
        "a record doctor:alice signed after her expulsion",
        p.patient.receive_record(&after).await,
    )?;

    // The council expels the insurer: t members approve, one sends.
    let t = Instant::now();
    let member_keys = emrshare_node::config::load_keys(&world.dir.join("node-0/node.key.json"))?;
    let member = world.party(member_keys)?;
    let proposal = member.status_proposal(&p.insurer.id(), Status::Expelled, now() + 3600)?;
    let approvals = council_approvals(&world.dir, &proposal)?;
    let count = approvals.len();
    let entry = member
        .submit_governance(proposal, approvals)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no entry for the expelled insurer"))?;
    step(
        t,
        "council",
        format_args!(
            "{count} members approve the expulsion of insurer:acme-health, {} sends it; the registry proves it expelled at height {}",
            member.id(),
            entry.ended().map_or(0, |c| c.height)
        ),
    );
    refused(
        "a grant to the expelled insurer",
        p.patient
            .grant(&stored.envelope, &p.insurer.id(), Role::Insurer, &[], 60)
            .await,
    )?;
    refused(
        "the expelled insurer's next transaction",
        p.insurer
            .commit(|a| Ok((a.sign(TxBody::RevokeIdentity { id: a.id().clone() }), ())))
            .await,
    )?;
    let t = Instant::now();
    let again = p.patient.look_up_issuer(&p.doctor.id()).await?;
    let hospital = p.patient.look_up_hospital_of(&again).await?;
    emrshare_core::ces::verify_registered(
        received,
        &again.entry,
        &hospital.entry,
        None,
        None,
        now(),
    )?;
    let log = p.patient.audit_log().await?;
    ensure!(
        log.iter().any(|e| e.accessor == Some(p.insurer.id())),
        "the insurer's past accesses vanished from the audit log"
    );
    step(
        t,
        "patient",
        "the record shared with the insurer before still verifies, and the audit log keeps the insurer's past accesses",
    );
    Ok(())
}

/// Story 1: the doctor signs and seals a record to the patient; the patient opens and
/// verifies it (the doctor's key by a verified k-anonymous lookup), stores the ciphertext on
/// the nodes and the index entry on chain.
async fn visit<T: Transport>(world: &World<T>, p: &Parties<T>) -> Result<(StoredRecord, SdJwt)> {
    crate::say!("\n2. Story 1, the visit: sign, seal, verify, store, index");
    let t = Instant::now();
    let record = Record::sample_bpds();
    let sealed = p
        .doctor
        .sign_and_seal_for_registered(&record, &p.patient.id(), &Ceas::default_for(&record))
        .await?;
    step(
        t,
        "doctor",
        "looks the patient up among patients, signs 7 parts (SD-JWT, CEAS = gender, age, medical_history), seals them to its registered key",
    );
    let t = Instant::now();
    let received = p.patient.receive_record(&sealed).await?;
    ensure!(received.record.parts().len() == 7, "expected all 7 parts");
    step(
        t,
        "patient",
        "opens the envelope (MAC first), looks the doctor up k-anonymously, verifies its registered key, digests, CEAS",
    );
    world.describe(&received.doctor);
    let t = Instant::now();
    let stored = p
        .patient
        .store_record(&received.sd_jwt, "cardiology", &|_, _| {})
        .await?;
    step(
        t,
        "patient",
        format_args!(
            "opens record {}'s own account (a node's blind record voucher, the index entry sealed to itself), then stores the ciphertext ({} bytes, naming no reader) on {} nodes at sha-256 {}",
            stored.record,
            stored.envelope.len(),
            world.config.n,
            &stored.blob.to_hex()[..16]
        ),
    );
    note(format_args!(
        "proven under the header at height {}: account {}… (its key derives from the patient's master secret; nothing on chain names the patient)",
        stored.index_height,
        &stored.account.as_str()[..12]
    ));
    Ok((stored, received.sd_jwt))
}

/// Story 2: the insurer asks; the patient looks it up k-anonymously, they authenticate each
/// other, the patient sends the extracted record bound to the session; the access is logged.
async fn share<T: Transport>(world: &World<T>, p: &Parties<T>, received: &SdJwt) -> Result<()> {
    crate::say!("\n3. Story 2, request and share (BPDST 4.2.4, with forward secrecy)");
    let config = HandshakeConfig::default();
    let asked_parts = ["examination", "prescription"];
    let t = Instant::now();
    let (insurer_waiting, request) = p.insurer.with_keys(|k| {
        RequesterStart::new(config).send_request(k, "claim 2026-118", &asked_parts, now())
    })?;
    step(
        t,
        "insurer",
        format_args!(
            "asks the patient for examination and prescription: a request ({} bytes) signed with its registered key",
            request.len()
        ),
    );

    let t = Instant::now();
    let patient_side = PatientStart::new(config);
    let mut answered = AnsweredRequests::default();
    let read = patient_side.read_request(&request, now())?;
    let insurer_found = p.patient.look_up(read.requester(), Role::Insurer).await?;
    let again = p.patient.look_up(read.requester(), Role::Insurer).await?;
    ensure!(
        again.outcome.header.header.height >= insurer_found.outcome.header.header.height
            && again.asked == insurer_found.asked,
        "a repeated lookup must ask the same IDs"
    );
    let insurer_entry = insurer_found.entry.clone();
    let verified_request = read.verify_requester(&insurer_entry, &answered, now())?;
    step(
        t,
        "patient",
        format_args!(
            "looks the requester up k-anonymously; its registered key signed the request; shows \"{}\" asks for {}",
            verified_request.purpose(),
            verified_request.requested_parts().join(", ")
        ),
    );
    world.describe(&insurer_found);
    note("a repeated lookup of the insurer sends the identical set of IDs");

    let t = Instant::now();
    let (patient_waiting, m1) = p
        .patient
        .with_keys(|k| patient_side.send_m1(verified_request, &mut answered, k, now()))?;
    step(
        t,
        "patient",
        format_args!(
            "M1 ({} bytes): nonce, ephemeral P-256 key, time; signed, sealed to the insurer's registered key (no kid)",
            m1.len()
        ),
    );

    let t = Instant::now();
    let insurer_side = p
        .insurer
        .with_keys(|k| insurer_waiting.receive_m1(&m1, k, now()))?;
    let patient_found = p
        .insurer
        .look_up(insurer_side.patient(), Role::Patient)
        .await?;
    let (insurer_waiting, m2) = p
        .insurer
        .with_keys(|k| insurer_side.verify_patient(&patient_found.entry, k, now()))?;
    step(
        t,
        "insurer",
        format_args!(
            "opens M1, looks the patient up k-anonymously among patients; M2 ({} bytes) sealed to the patient, naming no one",
            m2.len()
        ),
    );
    world.describe(&patient_found);

    let t = Instant::now();
    let session = p
        .patient
        .with_keys(|k| patient_waiting.receive_m2(&m2, k, now()))?;
    step(
        t,
        "patient",
        "opens M2, checks its own nonce and both IDs; session key = HKDF(ECDH, nonces, transcript)",
    );

    let t = Instant::now();
    let m3 = p
        .patient
        .with_keys(|k| session.send_record(received, &asked_parts, None, k, now()))?;
    step(
        t,
        "patient",
        format_args!(
            "M3 ({} bytes) under the session key: the record without name and id_number, key-bound to the insurer and its nonce",
            m3.len()
        ),
    );

    let t = Instant::now();
    let awaiting_issuer = insurer_waiting.receive_m3(&m3)?;
    let doctor = p
        .insurer
        .look_up(awaiting_issuer.issuer(), Role::Hospital)
        .await?;
    let hospital = p.insurer.look_up_hospital_of(&doctor).await?;
    let shared = awaiting_issuer.verify_record(&doctor.entry, &hospital.entry, now())?;
    step(
        t,
        "insurer",
        "opens M3; verifies the doctor's registered key (in force and admitted when it signed), CEAS, the patient's key binding, aud and nonce",
    );
    let mut seen: Vec<&str> = shared.record().parts().keys().map(String::as_str).collect();
    seen.sort_unstable();
    note(format_args!("the insurer sees: {}", seen.join(", ")));
    ensure!(
        !seen.contains(&"name") && !seen.contains(&"id_number"),
        "removed parts leaked"
    );

    let t = Instant::now();
    p.patient
        .log_shared_record(
            shared.record().record_id(),
            &p.insurer.id(),
            shared.purpose(),
        )
        .await?;
    step(
        t,
        "patient",
        "logs the exchange in the record's own account, sealed to itself (no requester ID on chain)",
    );

    // What must fail, fails.
    let replay_target = p
        .insurer
        .with_keys(|k| {
            RequesterStart::new(config).send_request(k, "claim 2026-118", &asked_parts, now())
        })?
        .0;
    refused(
        "M1 replayed into another handshake",
        p.insurer
            .with_keys(|k| replay_target.receive_m1(&m1, k, now())),
    )?;
    let reflected = PatientStart::new(config).read_request(&m1, now());
    refused("M1 reflected to the patient as a request", reflected)?;
    let impostor = PrivateKeySet::generate(Some(p.insurer.id()), RsaBits::B2048);
    let (_, forged) =
        RequesterStart::new(config).send_request(&impostor, "claim", &asked_parts, now())?;
    let forged = PatientStart::new(config).read_request(&forged, now())?;
    refused(
        "a request in the insurer's name signed by another key (a forgery)",
        forged.verify_requester(&insurer_entry, &answered, now()),
    )?;
    let replayed = PatientStart::new(config).read_request(&request, now())?;
    refused(
        "the request replayed after the patient answered it",
        replayed.verify_requester(&insurer_entry, &answered, now()),
    )?;
    refused(
        "a request an hour old",
        PatientStart::new(config).read_request(&request, now() + 3600),
    )?;
    Ok(())
}

/// Story 3: a standing grant of two parts; the insurer fetches the record under it (and
/// sees only those parts and the mandatory ones); the patient revokes; the next fetch is
/// refused; the patient reads its audit log.
async fn standing_grant<T: Transport>(
    _world: &World<T>,
    p: &Parties<T>,
    stored: &StoredRecord,
) -> Result<()> {
    crate::say!("\n4. Story 3, a standing grant (BPDS data sharing)");
    let t = Instant::now();
    let parts = ["examination".to_owned(), "prescription".to_owned()];
    let grant = p
        .patient
        .grant(
            &stored.envelope,
            &p.insurer.id(),
            Role::Insurer,
            &parts,
            3600,
        )
        .await?;
    step(
        t,
        "patient",
        "looks the insurer up, seals examination and prescription (and the mandatory parts) to it, stores that version, grants read for an hour",
    );
    let t = Instant::now();
    let fetched = p.insurer.fetch_granted(&grant.grant_id).await?;
    ensure!(
        fetched.record.record_id() == stored.record_id,
        "another record"
    );
    let mut seen: Vec<&str> = fetched.record.parts().keys().map(String::as_str).collect();
    seen.sort_unstable();
    ensure!(
        !seen.contains(&"name") && !seen.contains(&"id_number"),
        "a grant of two parts shared more"
    );
    step(
        t,
        "insurer",
        format_args!(
            "checks the grant (proven at height {}), fetches the blob with its signed access log, opens and verifies it: {}",
            grant.height,
            seen.join(", ")
        ),
    );
    let t = Instant::now();
    p.patient.revoke(&grant.grant_id).await?;
    step(t, "patient", "revokes the grant");
    refused(
        "the insurer's fetch after the revocation",
        p.insurer.fetch_granted(&grant.grant_id).await,
    )?;
    let t = Instant::now();
    let log = p.patient.audit_log().await?;
    step(
        t,
        "patient",
        format_args!(
            "reads its audit log ({} accesses, each record's logs proven under its account, no block replayed)",
            log.len()
        ),
    );
    for event in &log {
        note(format_args!(
            "height {:>4}  {} {:?} {} at {} ({:?}{})",
            event.height,
            event
                .accessor
                .as_ref()
                .map_or("(sealed log did not open)", |a| a.as_str()),
            event.action,
            event
                .record_id
                .as_deref()
                .map_or("", |r| &r[..16.min(r.len())]),
            event.at,
            event.outcome,
            event
                .grant_id
                .as_deref()
                .map(|g| format!(", {g}"))
                .unwrap_or_default()
        ));
    }
    ensure!(
        log.iter().any(|e| e.accessor == Some(p.insurer.id())
            && e.grant_id.as_deref() == Some(grant.grant_id.as_str())),
        "the audit log misses the insurer's access"
    );
    Ok(())
}
