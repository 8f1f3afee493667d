//! The private ledger's rules (DESIGN section 6), as the state machine enforces them: a
//! record's account opens only with a node's record voucher and signs only its own grants,
//! revocations and logs; a grant is a capability whose key alone logs accesses under it, and
//! only while it covered them; logs land under the record, sealed to the patient.
#![allow(clippy::unwrap_used)] // tests fail loudly on a broken fixture

use emrshare_core::Hash;
use emrshare_core::keys::RsaBits;
use emrshare_core::keys::txkeys::MasterSecret;
use emrshare_core::ledger::testkit::{
    CHAIN, TestChain, open_record, record_voucher_key, voucher, voucher_key,
};
use emrshare_core::ledger::tx::{Action, Outcome, Role, Transaction, TxBody};
use emrshare_core::record_account::{
    GrantCapability, GrantDetails, IndexEntry, LogDetails, RecordKeys, verify_record_answer,
};
use emrshare_core::{PartyId, PrivateKeySet};

fn entry(n: u64) -> IndexEntry {
    IndexEntry {
        format: IndexEntry::FORMAT.into(),
        location: format!("emrshare:blob/{n}"),
        blob: Hash::sha256(&n.to_be_bytes()),
        time: 1_000,
        department: "cardiology".into(),
        record_id: Some(format!("emr-{n}")),
    }
}

struct World {
    chain: TestChain,
    master: MasterSecret,
    patient: PrivateKeySet,
    insurer: PrivateKeySet,
}

fn world() -> World {
    let mut chain = TestChain::new();
    let patient = chain.register(None, Role::Patient);
    let insurer = chain.register(Some("insurer:acme"), Role::Insurer);
    World {
        chain,
        master: MasterSecret::from_bytes([9; 32]),
        patient,
        insurer,
    }
}

impl World {
    fn opened(&mut self, n: u64) -> RecordKeys {
        let record = RecordKeys::derive(&self.master, n);
        self.chain.apply(&[open_record(&record, &entry(n))]);
        record
    }

    /// The insurer's capability for `grant_id`, from the grant as the chain holds it.
    fn capability(&self, grant_id: &str) -> GrantCapability {
        let grant = self.chain.state.grant(grant_id).unwrap();
        GrantCapability::open(&self.insurer, grant_id, &grant).unwrap()
    }

    fn grant(&mut self, record: &RecordKeys, sequence: u64, not_after: u64) -> String {
        let (grant_id, tx) = record
            .grant(
                CHAIN,
                sequence,
                (&self.patient.id, &self.patient.public().encryption),
                (&self.insurer.id, &self.insurer.public().encryption),
                &Hash::sha256(b"shared"),
                Some("emr-0"),
                &["prescription".into()],
                &[Action::Read],
                not_after,
            )
            .unwrap();
        self.chain.apply(&[tx]);
        grant_id
    }
}

#[test]
fn a_record_account_opens_with_a_node_voucher_and_its_entry_opens_for_the_patient_only() {
    let mut w = world();
    let record = w.opened(0);
    let account = w.chain.state.record(record.id()).unwrap();
    assert_eq!((account.grants, account.logs), (0, 0));
    assert_eq!(record.open_entry(&account.entry).unwrap(), entry(0));
    // Another record of the same patient shares nothing with it, and cannot open it.
    let other = RecordKeys::derive(&w.master, 1);
    assert_ne!(other.id(), record.id());
    assert!(other.open_entry(&account.entry).is_err());
    // The same master re-derives the same record (the phone finds its index from it).
    assert_eq!(RecordKeys::derive(&w.master, 0).id(), record.id());
    // Nothing in the account names the patient or its registered keys.
    let json = serde_json::to_string(&account).unwrap();
    assert!(!json.contains(w.patient.id.as_str()));
    assert!(!json.contains(&w.patient.public().signing.thumbprint()));
}

#[test]
fn a_record_account_without_a_valid_unspent_node_voucher_is_refused() {
    let mut w = world();
    let record = RecordKeys::derive(&w.master, 0);
    // A hospital's (registration) voucher is not a node's record voucher.
    let hospital_voucher = voucher(voucher_key(0), CHAIN, record.id());
    let refused = w
        .chain
        .try_apply(&[record.open_account(CHAIN, hospital_voucher, &entry(0))])
        .unwrap_err();
    assert!(refused.contains("voucher"), "{refused}");
    // A node voucher for another ID.
    let other = RecordKeys::derive(&w.master, 1);
    let theirs = voucher(record_voucher_key(), CHAIN, other.id());
    assert!(
        w.chain
            .try_apply(&[record.open_account(CHAIN, theirs.clone(), &entry(0))])
            .is_err()
    );
    // A voucher of another chain.
    let foreign = voucher(record_voucher_key(), "other-chain", record.id());
    assert!(
        w.chain
            .try_apply(&[record.open_account(CHAIN, foreign, &entry(0))])
            .is_err()
    );
    // Once spent, a voucher opens nothing else; an account opens once.
    w.chain
        .apply(&[other.open_account(CHAIN, theirs.clone(), &entry(1))]);
    let again = RecordKeys::derive(&w.master, 2);
    assert!(
        w.chain
            .try_apply(&[again.open_account(CHAIN, theirs, &entry(2))])
            .is_err()
    );
    let twice = open_record(&other, &entry(1));
    assert!(w.chain.try_apply(&[twice]).is_err());
    assert!(w.chain.state.record(record.id()).is_none());
}

#[test]
fn an_account_opened_under_another_id_than_its_key_is_refused() {
    let mut w = world();
    let record = RecordKeys::derive(&w.master, 0);
    let mut tx = open_record(&record, &entry(0)).transaction().clone();
    tx.sender = w.patient.id.clone();
    let signed = tx.sign(record.signing_key());
    assert!(w.chain.try_apply(&[signed]).is_err());
}

#[test]
fn registered_keys_never_grant_or_log_and_record_keys_do_nothing_else() {
    let mut w = world();
    let record = w.opened(0);
    let by_patient = w.chain.tx(
        &w.patient,
        TxBody::RevokeGrant {
            grant_id: "g".into(),
        },
    );
    let refused = w.chain.try_apply(&[by_patient]).unwrap_err();
    assert!(refused.contains("never a registered one"), "{refused}");
    let by_record = Transaction {
        chain_id: CHAIN.into(),
        sender: record.id().clone(),
        sequence: 1,
        body: TxBody::RevokeIdentity {
            id: record.id().clone(),
        },
    }
    .sign(record.signing_key());
    let refused = w.chain.try_apply(&[by_record]).unwrap_err();
    assert!(refused.contains("record's key signs only"), "{refused}");
}

#[test]
fn a_grant_is_a_capability_only_its_grantee_opens() {
    let mut w = world();
    let record = w.opened(0);
    let grant_id = w.grant(&record, 1, 5_000);
    let grant = w.chain.state.grant(&grant_id).unwrap();
    assert_eq!(&grant.record, record.id());
    assert!(grant.allows(Action::Read, 4_000));
    assert!(!grant.allows(Action::Copy, 4_000));
    assert!(!grant.allows(Action::Read, 5_001));
    // The grantee opens the details; they name it, the patient and the parts.
    let capability = GrantCapability::open(&w.insurer, &grant_id, &grant).unwrap();
    assert_eq!(capability.details().patient, w.patient.id);
    assert_eq!(capability.details().parts, ["prescription"]);
    // The patient opens the details too (it shows its grants), but holds no capability.
    let details = GrantDetails::open(&w.patient, &grant_id, &grant).unwrap();
    assert_eq!(details.grantee, w.insurer.id);
    assert!(GrantCapability::open(&w.patient, &grant_id, &grant).is_err());
    // Nobody else does.
    let stranger =
        PrivateKeySet::generate(Some(PartyId::new("insurer:other").unwrap()), RsaBits::B2048);
    assert!(GrantCapability::open(&stranger, &grant_id, &grant).is_err());
    // Details moved to another grant do not open as that grant.
    assert!(GrantCapability::open(&w.insurer, "grant-other", &grant).is_err());
    // A commitment to another key: the details' key is refused.
    let mut forged = grant.clone();
    forged.grant_key = Hash::sha256(b"another key");
    assert!(GrantCapability::open(&w.insurer, &grant_id, &forged).is_err());
    // Nothing on chain names the grantee or the patient.
    let json = serde_json::to_string(&grant).unwrap();
    for id in [w.insurer.id.as_str(), w.patient.id.as_str(), "prescription"] {
        assert!(!json.contains(id), "{id}");
    }
}

#[test]
fn grants_are_refused_when_expired_reused_or_made_by_another_account() {
    let mut w = world();
    let record = w.opened(0);
    let grant_id = w.grant(&record, 1, 5_000);
    let insurer = (&w.insurer.id, &w.insurer.public().encryption);
    let patient = (&w.patient.id, &w.patient.public().encryption);
    let make = |sequence, not_after, actions: &[Action]| {
        record
            .grant(
                CHAIN,
                sequence,
                patient,
                insurer,
                &Hash::sha256(b"x"),
                None,
                &[],
                actions,
                not_after,
            )
            .unwrap()
            .1
    };
    assert!(w.chain.try_apply(&[make(2, 999, &[Action::Read])]).is_err());
    assert!(w.chain.try_apply(&[make(2, 5_000, &[])]).is_err());
    // Revoked only by its record's account.
    let other = w.opened(1);
    let hijack = other.revoke(CHAIN, 1, &grant_id);
    let refused = w.chain.try_apply(&[hijack]).unwrap_err();
    assert!(refused.contains("only the record's account"), "{refused}");
    w.chain.apply(&[record.revoke(CHAIN, 2, &grant_id)]);
    let grant = w.chain.state.grant(&grant_id).unwrap();
    assert_eq!(grant.revoked_at, Some(w.chain.now));
    assert!(!grant.allows(Action::Read, w.chain.now));
}

#[test]
fn accesses_are_logged_by_the_grant_key_under_the_record_sealed_to_the_patient() {
    let mut w = world();
    let record = w.opened(0);
    let grant_id = w.grant(&record, 1, 5_000);
    let capability = w.capability(&grant_id);
    let blob = Hash::sha256(b"shared");
    w.chain
        .apply(&[capability.access_log(CHAIN, 0, &blob, w.chain.now)]);
    let log = w.chain.state.log(record.id(), 0).unwrap();
    assert_eq!(
        (log.grant_id.as_deref(), log.action, log.at),
        (Some(grant_id.as_str()), Action::Read, w.chain.now)
    );
    assert_eq!(w.chain.state.record(record.id()).unwrap().logs, 1);
    // The patient reads who accessed it; the log names nobody in clear.
    let details = record.open_log(&log).unwrap();
    assert_eq!(details.accessor, w.insurer.id);
    assert_eq!(details.record_id, blob.to_hex());
    let json = serde_json::to_string(&log).unwrap();
    assert!(!json.contains(w.insurer.id.as_str()));
    assert!(RecordKeys::derive(&w.master, 1).open_log(&log).is_err());
    // A handshake the patient allowed itself, logged by the record's account.
    let handshake = LogDetails {
        accessor: w.insurer.id.clone(),
        record_id: "emr-0".into(),
        purpose: Some("claim".into()),
        outcome: Outcome::Granted,
    };
    w.chain
        .apply(&[record.log_access(CHAIN, 2, Action::Read, w.chain.now, &handshake)]);
    let log = w.chain.state.log(record.id(), 1).unwrap();
    assert_eq!(log.grant_id, None);
    assert_eq!(record.open_log(&log).unwrap(), handshake);
}

#[test]
fn logs_need_the_grants_own_key_and_its_cover_at_the_time() {
    let mut w = world();
    let record = w.opened(0);
    let first = w.grant(&record, 1, 5_000);
    let second = w.grant(&record, 2, 5_000);
    let (first_cap, second_cap) = (w.capability(&first), w.capability(&second));
    let blob = Hash::sha256(b"shared");
    // The second grant's key logging under the first grant: its thumbprint is not the
    // first's commitment.
    let mut crossed = second_cap
        .access_log(CHAIN, 0, &blob, w.chain.now)
        .transaction()
        .clone();
    let TxBody::AccessLog { grant_id, .. } = &mut crossed.body else {
        unreachable!()
    };
    *grant_id = Some(first.clone());
    let refused = w
        .chain
        .try_apply(&[crossed.sign(&record.grant_signing_key(&second))])
        .unwrap_err();
    assert!(refused.contains("grant's key"), "{refused}");
    // Outside the log window, or after the grant's end.
    assert!(
        w.chain
            .try_apply(&[first_cap.access_log(CHAIN, 0, &blob, w.chain.now + 3_600)])
            .is_err()
    );
    // After a revocation, an access dated before it is still logged; one after it is not.
    let before = first_cap.access_log(CHAIN, 0, &blob, w.chain.now);
    w.chain.apply(&[record.revoke(CHAIN, 3, &first)]);
    w.chain.now += 10;
    w.chain.apply(&[before]);
    let after = first_cap.access_log(CHAIN, 1, &blob, w.chain.now);
    let refused = w.chain.try_apply(&[after]).unwrap_err();
    assert!(refused.contains("does not cover"), "{refused}");
    // A record's account cannot log under a grant without the grant's key.
    let mut keyless = second_cap
        .access_log(CHAIN, 0, &blob, w.chain.now)
        .transaction()
        .clone();
    keyless.sender = record.id().clone();
    keyless.sequence = 4;
    if let TxBody::AccessLog { grant_jwk, .. } = &mut keyless.body {
        *grant_jwk = None;
    }
    let refused = w
        .chain
        .try_apply(&[keyless.sign(record.signing_key())])
        .unwrap_err();
    assert!(refused.contains("grant's key"), "{refused}");
}

#[test]
fn a_record_answer_proves_the_account_and_every_log_and_a_lying_node_is_caught() {
    let mut w = world();
    let record = w.opened(0);
    let grant_id = w.grant(&record, 1, 5_000);
    let capability = w.capability(&grant_id);
    let blob = Hash::sha256(b"shared");
    for n in 0..3 {
        w.chain
            .apply(&[capability.access_log(CHAIN, n, &blob, w.chain.now)]);
    }
    let mut trust = w.chain.client();
    let honest = w.chain.record_answer(record.id(), 0);
    assert!(matches!(
        trust.verify_header(&honest.header),
        emrshare_core::ledger::verify::Verdict::Success
    ));
    let proven = verify_record_answer(&trust, record.id(), 0, &honest).unwrap();
    assert_eq!(proven.record.unwrap().logs, 3);
    assert_eq!(proven.logs.len(), 3);
    assert!(
        proven
            .logs
            .iter()
            .all(|l| record.open_log(l).unwrap().accessor == w.insurer.id)
    );
    // From the middle on: the rest.
    let tail = w.chain.record_answer(record.id(), 2);
    assert_eq!(
        verify_record_answer(&trust, record.id(), 2, &tail)
            .unwrap()
            .logs
            .len(),
        1
    );
    // A log withheld, one added twice, one altered, logs shifted, the account denied.
    let mut withheld = honest.clone();
    withheld.logs.pop();
    let mut doubled = honest.clone();
    doubled.logs.push(doubled.logs[0].clone());
    let mut altered = honest.clone();
    altered.logs[1].value = altered.logs[1]
        .value
        .as_ref()
        .map(|v| v.replace("\"read\"", "\"copy\""));
    let mut shifted = honest.clone();
    shifted.logs.swap(0, 1);
    let mut denied = honest.clone();
    denied.record.value = None;
    denied.logs.clear();
    for (what, lie) in [
        ("withheld", withheld),
        ("doubled", doubled),
        ("altered", altered),
        ("shifted", shifted),
        ("denied", denied),
    ] {
        assert!(
            verify_record_answer(&trust, record.id(), 0, &lie).is_err(),
            "{what}"
        );
    }
    // Another record's answer for this one.
    let other = w.opened(1);
    let theirs = w.chain.record_answer(other.id(), 0);
    trust.verify_header(&theirs.header);
    assert!(verify_record_answer(&trust, record.id(), 0, &theirs).is_err());
    // An unopened record's proven absence is an answer: no account, no logs.
    let unopened = RecordKeys::derive(&w.master, 7);
    let absent = w.chain.record_answer(unopened.id(), 0);
    let proven = verify_record_answer(&trust, unopened.id(), 0, &absent).unwrap();
    assert!(proven.record.is_none() && proven.logs.is_empty());
    // A `from` past every log (the index asks so): no logs, no overflow.
    let none = w.chain.record_answer(record.id(), u64::MAX);
    assert!(
        verify_record_answer(&trust, record.id(), u64::MAX, &none)
            .unwrap()
            .logs
            .is_empty()
    );
}
