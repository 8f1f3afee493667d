//! `emrshare demo`: the three stories of DESIGN section 1 against a local consortium started
//! inside this process (loopback, a temporary folder unless `--keep`). Every step is checked
//! and printed (who, what, verified by what, how long); the command fails if any check does
//! not hold.
//!
//! One of the patient's nodes lies on purpose: it swaps the keys in every lookup answer it
//! serves. The patient's lookups still succeed from the honest nodes, and report it.

use crate::consortium::LocalConsortium;
use crate::now;
use anyhow::{Context, Result, bail, ensure};
use emrshare_client::{
    Behaviour, ClientConfig, HttpTransport, LyingTransport, NodeClient, TlsTrust, Transport,
};
use emrshare_core::account::{Account, share_envelope};
use emrshare_core::ces::{self, IssueOptions, VerifyPolicy};
use emrshare_core::handshake::{AnsweredRequests, HandshakeConfig, PatientStart, RequesterStart};
use emrshare_core::jwe::Envelope;
use emrshare_core::keys::txkeys::MasterSecret;
use emrshare_core::keys::{PartyId, RsaBits};
use emrshare_core::ledger::merkle::Hash;
use emrshare_core::ledger::state::hex32;
use emrshare_core::ledger::tx::{Action, Role, TxBody};
use emrshare_core::ledger::verify::VerifiedEntry;
use emrshare_core::ledger::wire::LookupResponse;
use emrshare_core::lookup::{LookupKey, LookupOutcome, LookupPlan, QuerySize};
use emrshare_core::record::{Ceas, Record};
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
}

pub fn run(options: Options) -> Result<()> {
    ensure!(options.k >= 1, "--k must be at least 1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(options))
}

/// Prints one timed step.
fn step(started: Instant, who: &str, what: impl std::fmt::Display) {
    println!(
        "  {:>8.1} ms  {who:<8} {what}",
        started.elapsed().as_secs_f64() * 1e3
    );
}

fn note(what: impl std::fmt::Display) {
    println!("              {what}");
}

/// A check that must refuse: prints the refusal, fails the demo if it was accepted.
fn refused<T, E: std::fmt::Display>(what: &str, outcome: std::result::Result<T, E>) -> Result<()> {
    match outcome {
        Ok(_) => bail!("check failed: {what} was accepted"),
        Err(e) => {
            println!("              refused: {what} ({e})");
            Ok(())
        }
    }
}

struct World<T: Transport> {
    client: NodeClient<LyingTransport<T>>,
    lying_node: String,
    k: usize,
}

impl<T: Transport> World<T> {
    /// A verified k-anonymous lookup of `target` among the registered IDs of `role`.
    async fn lookup(
        &self,
        key: &LookupKey,
        target: &PartyId,
        role: Role,
    ) -> Result<(VerifiedEntry, LookupOutcome, usize)> {
        let directory = self.client.directory(role).await?;
        let size = if self.k >= directory.len() {
            QuerySize::All
        } else {
            QuerySize::K(self.k)
        };
        let plan = LookupPlan::new(key, target, role, &directory, size)?;
        let outcome = self.client.lookup(&plan).await?;
        let entry = outcome
            .target
            .clone()
            .with_context(|| format!("{target} is not registered"))?;
        ensure!(
            entry.entry().is_active(now()),
            "{target} is revoked or outside its validity"
        );
        Ok((entry, outcome, plan.ids().len()))
    }

    fn describe(&self, outcome: &LookupOutcome, asked: usize) {
        let header = &outcome.header;
        note(format_args!(
            "asked {asked} IDs of {} nodes; verified by {} (certificate of {} auditors, height {})",
            outcome.verified_by.len() + outcome.evidence.len(),
            outcome.verified_by.join(", "),
            header.certificate.votes.len(),
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

    async fn submit_and_wait(
        &self,
        account: &Account,
        tx: &emrshare_core::ledger::tx::SignedTransaction,
    ) -> Result<()> {
        self.client.submit(tx).await?;
        self.client
            .wait_sequence(
                account.id(),
                tx.transaction().sequence,
                Duration::from_secs(20),
            )
            .await?;
        Ok(())
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
    println!("emrshare demo: the three stories of DESIGN section 1 on a local consortium\n");
    println!("0. The consortium");
    let t = Instant::now();
    let consortium =
        LocalConsortium::start(&dir.join("consortium"), options.nodes, 300, false).await?;
    step(
        t,
        "nodes",
        format_args!(
            "{} nodes in this process ({} proposers, {} auditors, 300 ms slots), certified blocks flowing",
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
    println!(
        "\nall checks held ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    if let Some(dir) = &options.keep {
        println!("consortium files kept in {}", dir.display());
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
        client: NodeClient::new(config, transport)?,
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
        if request.path != "/v1/registry/lookup" {
            return;
        }
        let Ok(mut answer) = serde_json::from_slice::<LookupResponse>(&response.body) else {
            return;
        };
        for entry in &mut answer.entries {
            if let Some(value) = &entry.value {
                if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(value) {
                    v["signing_jwk"] = serde_json::to_value(&attacker).expect("JWKs serialize");
                    entry.value = Some(v.to_string());
                }
            }
        }
        response.body = serde_json::to_vec(&answer).expect("answers serialize");
    }))
}

struct Parties {
    doctor: Account,
    patient: Account,
    patient_secret: MasterSecret,
    insurer: Account,
    insurer_secret: MasterSecret,
}

async fn stories<T: Transport>(world: &World<T>) -> Result<()> {
    let chain = world.client.config().genesis.chain_id.clone();
    println!("\n1. Parties register (BPDST 4.2.2)");
    let t = Instant::now();
    let mut parties = Parties {
        doctor: Account::new(keys(Some("hospital:st-marys"), RsaBits::B3072)?, &chain, 0),
        patient: Account::new(keys(None, RsaBits::B3072)?, &chain, 0),
        patient_secret: MasterSecret::generate(),
        insurer: Account::new(
            keys(Some("insurer:acme-health"), RsaBits::B3072)?,
            &chain,
            0,
        ),
        insurer_secret: MasterSecret::generate(),
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
            others.push((
                role,
                Account::new(keys(name.as_deref(), RsaBits::B2048)?, &chain, 0),
            ));
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
    let t = Instant::now();
    let until = now() + 365 * 24 * 3600;
    let mut txs = vec![
        parties.doctor.register(Role::Hospital, 0, until),
        parties.patient.register(Role::Patient, 0, until),
        parties.insurer.register(Role::Insurer, 0, until),
    ];
    for (role, account) in &mut others {
        txs.push(account.register(*role, 0, until));
    }
    for tx in &txs {
        world.client.submit(tx).await?;
    }
    for account in [&parties.doctor, &parties.patient, &parties.insurer]
        .into_iter()
        .chain(others.iter().map(|(_, a)| a))
    {
        world
            .client
            .wait_sequence(account.id(), 0, Duration::from_secs(30))
            .await?;
    }
    step(
        t,
        "nodes",
        format_args!(
            "{} registrations committed (patient ID {})",
            txs.len(),
            parties.patient.id()
        ),
    );

    let stored = visit(world, &mut parties).await?;
    share(world, &mut parties, &stored).await?;
    standing_grant(world, &mut parties, &stored).await?;
    Ok(())
}

/// What story 1 leaves for story 3: the patient's stored envelope and its address.
struct Stored {
    envelope: Envelope,
    received: SdJwt,
    blob: Hash,
    record_id: String,
}

/// Story 1: the doctor signs and seals a record to the patient; the patient opens and
/// verifies it (doctor's key by a verified k-anonymous lookup), stores the ciphertext on the
/// nodes and the index entry on chain.
async fn visit<T: Transport>(world: &World<T>, p: &mut Parties) -> Result<Stored> {
    println!("\n2. Story 1, the visit: sign, seal, verify, store, index");
    let t = Instant::now();
    let record = Record::sample_bpds();
    let ceas = Ceas::default_for(&record);
    let signed = ces::issue(
        p.doctor.keys(),
        &p.patient.keys().public(),
        &record,
        &ceas,
        IssueOptions {
            issued_at: now(),
            decoys: 2,
        },
    )?;
    let sealed = Envelope::seal_to(
        signed.serialize().as_bytes(),
        &[&p.patient.keys().public()],
        Some("emr+sd-jwt"),
    )?;
    step(
        t,
        "doctor",
        "signs 7 parts (SD-JWT, CEAS = gender, age, medical_history) and seals them to the patient",
    );
    let t = Instant::now();
    let key = LookupKey::derive(&p.patient_secret);
    let (doctor, outcome, asked) = world.lookup(&key, p.doctor.id(), Role::Hospital).await?;
    step(
        t,
        "patient",
        "looks the doctor up k-anonymously among hospitals",
    );
    world.describe(&outcome, asked);
    let t = Instant::now();
    let plaintext = sealed.open(p.patient.keys())?;
    let received = SdJwt::parse(std::str::from_utf8(&plaintext)?)?;
    let doctor_keys = doctor.public_keys()?;
    let patient_keys = p.patient.keys().public();
    let verified = ces::verify(
        &received,
        &VerifyPolicy {
            holder: Some(&patient_keys),
            ..VerifyPolicy::new(&doctor_keys, now())
        },
    )?;
    ensure!(verified.parts().len() == 7, "expected all 7 parts");
    step(
        t,
        "patient",
        "opens the envelope (MAC first), verifies the doctor's registered key, digests, CEAS",
    );
    let t = Instant::now();
    let envelope = Envelope::seal_to(
        received.serialize().as_bytes(),
        &[&patient_keys],
        Some("emr+sd-jwt"),
    )?;
    let bytes = envelope.serialize().into_bytes();
    let blob = world
        .client
        .put_blob(
            &bytes,
            &p.patient
                .blob_claim(&emrshare_core::content_hash(&bytes), now()),
        )
        .await?;
    step(
        t,
        "patient",
        format_args!(
            "stores the ciphertext ({} bytes) on {} nodes at sha-256 {}",
            bytes.len(),
            world.client.config().n,
            &hex32::to_hex(&blob)[..16]
        ),
    );
    let t = Instant::now();
    let previous = world.client.index(p.patient.id(), "cardiology").await?.head;
    let index = p.patient.upload_index(
        "cardiology",
        &format!("emrshare:blob/{}", hex32::to_hex(&blob)),
        &blob,
        Some(verified.record_id()),
        now(),
        previous,
    )?;
    world.submit_and_wait(&p.patient, &index).await?;
    let proven = world.client.index(p.patient.id(), "cardiology").await?;
    ensure!(
        proven.head == Some(index.id()),
        "the index head is not the new entry"
    );
    ensure!(!proven.crumbs.is_empty(), "no bread crumb for the entry");
    step(
        t,
        "patient",
        "commits the index entry (sealed to itself, linked to the previous one)",
    );
    note(format_args!(
        "proven under the header at height {}: index head = this entry, cardiology bread crumbs at heights {:?}",
        proven.height, proven.crumbs
    ));
    Ok(Stored {
        envelope,
        received,
        blob,
        record_id: verified.record_id().to_owned(),
    })
}

/// Story 2: the insurer asks; the patient looks it up k-anonymously, they authenticate each
/// other, the patient sends the extracted record bound to the session; the access is logged.
async fn share<T: Transport>(world: &World<T>, p: &mut Parties, stored: &Stored) -> Result<()> {
    println!("\n3. Story 2, request and share (BPDST 4.2.4, with forward secrecy)");
    let config = HandshakeConfig::default();
    let asked_parts = ["examination", "prescription"];
    let t = Instant::now();
    let (insurer_waiting, request) = RequesterStart::new(config).send_request(
        p.insurer.keys(),
        "claim 2026-118",
        &asked_parts,
        now(),
    )?;
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
    let patient_lookups = LookupKey::derive(&p.patient_secret);
    let (insurer_entry, outcome, asked) = world
        .lookup(&patient_lookups, read.requester(), Role::Insurer)
        .await?;
    let again = world
        .lookup(&patient_lookups, read.requester(), Role::Insurer)
        .await?;
    ensure!(again.2 == asked, "a repeated lookup must ask the same IDs");
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
    world.describe(&outcome, asked);
    note("a repeated lookup of the insurer sends the identical set of IDs");

    let t = Instant::now();
    let (patient_waiting, m1) =
        patient_side.send_m1(verified_request, &mut answered, p.patient.keys(), now())?;
    step(
        t,
        "patient",
        format_args!(
            "M1 ({} bytes): nonce, ephemeral P-256 key, time; signed, sealed to the insurer's registered key (no kid)",
            m1.len()
        ),
    );

    let t = Instant::now();
    let insurer_side = insurer_waiting.receive_m1(&m1, p.insurer.keys(), now())?;
    let insurer_lookups = LookupKey::derive(&p.insurer_secret);
    let (patient_entry, outcome, asked) = world
        .lookup(&insurer_lookups, insurer_side.patient(), Role::Patient)
        .await?;
    let (insurer_waiting, m2) =
        insurer_side.verify_patient(&patient_entry, p.insurer.keys(), now())?;
    step(
        t,
        "insurer",
        format_args!(
            "opens M1, looks the patient up k-anonymously among patients; M2 ({} bytes) sealed to the patient, naming no one",
            m2.len()
        ),
    );
    world.describe(&outcome, asked);

    let t = Instant::now();
    let session = patient_waiting.receive_m2(&m2, p.patient.keys(), now())?;
    step(
        t,
        "patient",
        "opens M2, checks its own nonce and both IDs; session key = HKDF(ECDH, nonces, transcript)",
    );

    let t = Instant::now();
    let m3 = session.send_record(
        &stored.received,
        &asked_parts,
        None,
        p.patient.keys(),
        now(),
    )?;
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
    let (doctor_entry, _, _) = world
        .lookup(&insurer_lookups, awaiting_issuer.issuer(), Role::Hospital)
        .await?;
    let shared = awaiting_issuer.verify_record(&doctor_entry, now())?;
    step(
        t,
        "insurer",
        "opens M3; verifies the doctor's registered key, CEAS, the patient's key binding, aud and nonce",
    );
    let mut seen: Vec<&str> = shared.record().parts().keys().map(String::as_str).collect();
    seen.sort_unstable();
    note(format_args!("the insurer sees: {}", seen.join(", ")));
    ensure!(
        !seen.contains(&"name") && !seen.contains(&"id_number"),
        "removed parts leaked"
    );

    let t = Instant::now();
    let log = p.insurer.sign(shared.access_log());
    world.submit_and_wait(&p.insurer, &log).await?;
    step(t, "insurer", "logs the access on chain (AccessLog)");

    // What must fail, fails.
    let replay_target = RequesterStart::new(config)
        .send_request(p.insurer.keys(), "claim 2026-118", &asked_parts, now())?
        .0;
    refused(
        "M1 replayed into another handshake",
        replay_target.receive_m1(&m1, p.insurer.keys(), now()),
    )?;
    let reflected = PatientStart::new(config).read_request(&m1, now());
    refused("M1 reflected to the patient as a request", reflected)?;
    let impostor = PrivateKeySet::generate(Some(p.insurer.id().clone()), RsaBits::B2048);
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

/// Story 3: a standing grant; the insurer fetches the blob under it; the patient revokes;
/// the next fetch is refused; the patient reads its audit log.
async fn standing_grant<T: Transport>(
    world: &World<T>,
    p: &mut Parties,
    stored: &Stored,
) -> Result<()> {
    println!("\n4. Story 3, a standing grant (BPDS data sharing)");
    let t = Instant::now();
    let key = LookupKey::derive(&p.patient_secret);
    let (insurer, _, _) = world.lookup(&key, p.insurer.id(), Role::Insurer).await?;
    let shared = share_envelope(&stored.envelope, p.patient.keys(), &insurer)?;
    let bytes = shared.serialize().into_bytes();
    let blob = world
        .client
        .put_blob(
            &bytes,
            &p.patient
                .blob_claim(&emrshare_core::content_hash(&bytes), now()),
        )
        .await?;
    let (grant_id, grant) = p.patient.grant(
        &insurer,
        &blob,
        &["examination", "prescription"],
        &[Action::Read],
        now() + 3600,
    );
    world.submit_and_wait(&p.patient, &grant).await?;
    step(
        t,
        "patient",
        "wraps the content key to the insurer's registered key, stores that version, grants read for an hour",
    );
    let t = Instant::now();
    let proven = world.client.grant(&grant_id).await?;
    let entry = proven.grant.context("the grant is not on chain")?;
    ensure!(entry.grantee == *p.insurer.id() && entry.allows(Action::Read, now()));
    let access = p.insurer.access_log(&blob, Some(&grant_id), now());
    let fetched = world.client.get_blob(&blob, &access).await?;
    let opened = Envelope::parse(&fetched)?.open(p.insurer.keys())?;
    let record = SdJwt::parse(std::str::from_utf8(&opened)?)?;
    let (doctor, _, _) = world
        .lookup(
            &LookupKey::derive(&p.insurer_secret),
            p.doctor.id(),
            Role::Hospital,
        )
        .await?;
    let verified = ces::verify(&record, &VerifyPolicy::new(&doctor.public_keys()?, now()))?;
    ensure!(verified.record_id() == stored.record_id, "another record");
    world
        .client
        .wait_sequence(
            p.insurer.id(),
            access.transaction().sequence,
            Duration::from_secs(20),
        )
        .await?;
    step(
        t,
        "insurer",
        format_args!(
            "checks the grant (proven at height {}), fetches the blob with its signed access log, opens and verifies it",
            proven.height
        ),
    );
    let t = Instant::now();
    let revoke = p.patient.revoke_grant(&grant_id);
    world.submit_and_wait(&p.patient, &revoke).await?;
    step(t, "patient", "revokes the grant");
    let refused_access = p.insurer.access_log(&blob, Some(&grant_id), now());
    refused(
        "the insurer's fetch after the revocation",
        world.client.get_blob(&blob, &refused_access).await,
    )?;
    // The refused fetch committed nothing: its sequence number is free again.
    p.insurer
        .set_next_sequence(world.client.next_sequence(p.insurer.id()).await?);
    let t = Instant::now();
    let height = world.client.latest_header().await?.header.height;
    let blocks = world.client.verified_blocks(height).await?;
    let mine = [
        hex32::to_hex(&stored.blob),
        hex32::to_hex(&blob),
        stored.record_id.clone(),
    ];
    let mut log = Vec::new();
    for block in &blocks {
        for tx in &block.txs {
            if let TxBody::AccessLog {
                accessor,
                record_id,
                action,
                at,
                outcome,
                grant_id,
            } = &tx.transaction().body
            {
                if mine.contains(record_id) {
                    log.push(format!(
                        "height {:>4}  {accessor} {action:?} {} at {at} ({outcome:?}{})",
                        block.header.height,
                        &record_id[..16.min(record_id.len())],
                        grant_id
                            .as_deref()
                            .map(|g| format!(", {g}"))
                            .unwrap_or_default()
                    ));
                }
            }
        }
    }
    step(
        t,
        "patient",
        format_args!("reads its audit log from {} verified blocks", blocks.len()),
    );
    for line in &log {
        note(line);
    }
    ensure!(!log.is_empty(), "the audit log misses the insurer's access");
    Ok(())
}
