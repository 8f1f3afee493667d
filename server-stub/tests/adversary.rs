//! The node as an attacker with a socket finds it: 5-node consortia of `emrshare-node`
//! processes on 127.0.0.1, and for each attack of issue 10 (points 1-9) what a stranger, a
//! revoked party or a registered party playing tricks gets: nothing kept, nothing served,
//! every served read on the chain. Each test failed on the node before this round's fixes.

use emrshare_node::testkit;
use emrshare_node::testkit::now_s;

use emrshare_core::Hash;
use emrshare_core::keys::{PartyId, SigningKey};
use emrshare_core::ledger::tx::{Action, Role, SignedTransaction, Transaction, TxBody};
use serde_json::{Value, json};
use std::cell::Cell;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use testkit::{Consortium, NODES, registration_as, submit, verified_lookup};

const CHAIN: &str = "test-chain";

/// A party that numbers its own transactions, as a client does.
struct Actor {
    id: PartyId,
    key: SigningKey,
    next: Cell<u64>,
}

impl Actor {
    fn named(id: &str) -> Self {
        Self {
            id: PartyId::new(id).unwrap(),
            key: SigningKey::generate(),
            next: Cell::new(0),
        }
    }

    /// A patient: its ID is its signing key's thumbprint.
    fn patient() -> Self {
        let key = SigningKey::generate();
        Self {
            id: PartyId::new(key.verifying_key().to_jwk(None).thumbprint()).unwrap(),
            key,
            next: Cell::new(0),
        }
    }

    fn register(&self, c: &Consortium, node: usize, role: Role) {
        submit(
            c,
            node,
            &registration_as(c, self.id.as_str(), &self.key, role),
        );
        self.next.set(1);
    }

    fn signed(&self, sequence: u64, body: TxBody) -> String {
        Transaction {
            chain_id: CHAIN.into(),
            sender: self.id.clone(),
            sequence,
            body,
        }
        .sign(&self.key)
        .as_jws()
        .to_owned()
    }

    /// The next transaction of this party.
    fn tx(&self, body: TxBody) -> String {
        let jws = self.signed(self.next.get(), body);
        self.next.set(self.next.get() + 1);
        jws
    }

    /// An access log with this party's own key: under `grant_id`, carrying the key as the
    /// grant's (the chain checks it against the grant's commitment).
    fn access_log(&self, grant_id: Option<&str>) -> TxBody {
        TxBody::AccessLog {
            grant_id: grant_id.map(str::to_owned),
            grant_jwk: grant_id.map(|_| self.key.verifying_key().to_jwk(None)),
            action: Action::Read,
            at: now_s(),
            details: "sealed".into(),
        }
    }

    /// A record's account (or a grant's key) as an actor: its ID is its key's thumbprint,
    /// and its next transaction is `next`.
    fn of_key(key: SigningKey, next: u64) -> Self {
        Self {
            id: PartyId::new(key.verifying_key().thumbprint()).unwrap(),
            key,
            next: Cell::new(next),
        }
    }

    fn blob_claim(&self, hash: &str) -> String {
        let payload = json!({"blob": hash, "owner": self.id.as_str(), "iat": now_s()});
        emrshare_core::jws::sign(
            &self.key,
            &emrshare_core::jws::Header::es256("emr-blob+jwt", None),
            &payload,
        )
    }
}

fn put_blob(c: &Consortium, node: usize, owner: &Actor, blob: &[u8]) -> u16 {
    let hash = emrshare_core::content_hash(blob).to_hex();
    put_claimed(c, node, &owner.blob_claim(&hash), blob)
}

fn put_claimed(c: &Consortium, node: usize, claim: &str, blob: &[u8]) -> u16 {
    let hash = emrshare_core::content_hash(blob).to_hex();
    c.http
        .put(c.url(node, &format!("/v1/blobs/{hash}")))
        .header("x-emr-owner", claim)
        .body(blob.to_vec())
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// A GET of the blob with `access` as its access log: the status and the body.
fn get_blob(c: &Consortium, node: usize, hash: &str, access: &str) -> (u16, Vec<u8>) {
    let reply = c
        .http
        .get(c.url(node, &format!("/v1/blobs/{hash}")))
        .header("x-emr-access", access)
        .send()
        .unwrap();
    let status = reply.status().as_u16();
    (status, reply.bytes().unwrap().to_vec())
}

fn tx_id(jws: &str) -> String {
    SignedTransaction::parse(jws).unwrap().id_text()
}

/// What node `i` says became of a transaction.
fn tx_status(c: &Consortium, i: usize, jws: &str) -> Option<Value> {
    c.get(i, &format!("/v1/tx/{}", tx_id(jws)))
}

fn wait_committed(c: &Consortium, i: usize, jws: &str) {
    c.wait_until(Duration::from_secs(30), |c| {
        tx_status(c, i, jws).is_some_and(|s| s["status"] == "committed")
    });
}

/// Every committed transaction of node `i`'s chain.
fn committed_txs(c: &Consortium, i: usize) -> Vec<SignedTransaction> {
    (1..=c.height(i))
        .flat_map(|h| {
            let block = c.get(i, &format!("/v1/blocks/{h}")).unwrap();
            block["txs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| SignedTransaction::parse(t.as_str().unwrap()).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn access_logs_by(c: &Consortium, i: usize, sender: &PartyId) -> usize {
    committed_txs(c, i)
        .iter()
        .filter(|t| {
            &t.transaction().sender == sender
                && matches!(t.transaction().body, TxBody::AccessLog { .. })
        })
        .count()
}

fn registered(c: &Consortium, ids: &[&PartyId]) {
    c.wait_until(Duration::from_secs(30), |c| {
        // On every node: a test may send the party's next transaction to any of them.
        ids.iter()
            .all(|id| (0..NODES).all(|i| verified_lookup(c, i, id.as_str()) == Some(true)))
    });
}

/// A grant of the blob `hash` by `record`'s account to the holder of `grant_key`, as the
/// account's next transaction (the chain sees only the key's commitment).
fn grant_to(record: &Actor, grant_id: &str, hash: &str, grant_key: &SigningKey) -> String {
    record.tx(TxBody::Grant {
        grant_id: grant_id.into(),
        blob: Hash::from_hex(hash).unwrap(),
        grant_key: emrshare_core::record_account::grant_key_commitment(grant_key.verifying_key()),
        actions: vec![Action::Read],
        not_after: now_s() + 3600,
        details: "sealed to the grantee".into(),
    })
}

/// A registered patient and the account of its first record, as actors.
fn patient_with_record(c: &Consortium) -> (Actor, Actor) {
    let patient = Actor::patient();
    patient.register(c, 0, Role::Patient);
    registered(c, &[&patient.id]);
    let master = emrshare_core::keys::txkeys::MasterSecret::generate();
    let record = c.open_record(&patient.id, &patient.key, &master, 0);
    let key = SigningKey::from_pkcs8(&record.signing_key().to_pkcs8()).unwrap();
    (patient, Actor::of_key(key, 1))
}

/// Points 1, 2 and 9 (fake logs): a keyless stranger, a forged owner's log, a registered
/// party with no grant or someone else's grant, a revoked grant, a log ahead of the
/// sender's sequence, one log used twice or two logs sharing a sequence number: none is
/// served. Every read that is served ends on the chain, one log per read.
#[test]
fn outsiders_and_revoked_grantees_get_no_blob_and_every_served_read_is_logged() {
    let c = Consortium::start();
    let stranger = Actor::named("insurer:stranger");
    stranger.register(&c, 2, Role::Insurer);
    let (patient, record) = patient_with_record(&c);
    registered(&c, &[&stranger.id]);

    let blob = b"a JWE ciphertext, opaque to the node".to_vec();
    let hash = emrshare_core::content_hash(&blob).to_hex();
    assert_eq!(
        put_blob(&c, 0, &patient, &blob),
        403,
        "a registered key owns no blob"
    );
    assert_eq!(put_blob(&c, 0, &record, &blob), 201);

    // A keyless outsider: an unregistered sender, a zero signature.
    let ghost = Actor::named("hospital:ghost");
    let body = record.access_log(None);
    let unsigned = ghost.signed(1, body.clone());
    let (head, _) = unsigned.rsplit_once('.').unwrap();
    let zero_signature = format!("{head}.{}", emrshare_core::b64::encode([0u8; 64]));
    let mut refused = vec![("zero-signed log of a stranger", zero_signature)];
    // The owner's account as sender, signed by another key.
    let forged = Transaction {
        chain_id: CHAIN.into(),
        sender: record.id.clone(),
        sequence: 1,
        body: body.clone(),
    }
    .sign(&ghost.key)
    .as_jws()
    .to_owned();
    refused.push(("the owner's log signed by another key", forged));
    // The patient's registered key (it owns nothing: its records do).
    refused.push((
        "the patient's registered key",
        patient.signed(1, patient.access_log(None)),
    ));
    // A registered party with no grant.
    refused.push(("no grant", stranger.signed(1, stranger.access_log(None))));
    for (what, access) in &refused {
        let (status, bytes) = get_blob(&c, 0, &hash, access);
        assert!((400..500).contains(&status), "{what}: {status}");
        assert_ne!(bytes, blob, "{what}: served");
    }
    // Nothing of theirs is pending anywhere.
    assert_eq!(c.metric(0, "emrshare_mempool_transactions"), 0);

    let grant_key = SigningKey::generate();
    let grant = grant_to(&record, "g-1", &hash, &grant_key);
    submit(&c, 0, &grant);
    wait_committed(&c, 0, &grant);
    // Someone else's key presented as the grant's.
    let other = Actor::of_key(SigningKey::generate(), 0);
    let (status, _) = get_blob(
        &c,
        0,
        &hash,
        &other.signed(0, other.access_log(Some("g-1"))),
    );
    assert_eq!(status, 403, "someone else's key under the grant");

    // The grant's key reads: each served read takes a fresh log with the next sequence.
    let grantee = Actor::of_key(grant_key, 0);
    let mut served = 0;
    let first = grantee.tx(grantee.access_log(Some("g-1")));
    assert_eq!(get_blob(&c, 0, &hash, &first), (200, blob.clone()));
    served += 1;
    // The same log again, at any node: refused (one read per log).
    for node in [0, 1] {
        let (status, bytes) = get_blob(&c, node, &hash, &first);
        assert!(
            status == 409 || status == 404,
            "reused log at {node}: {status}"
        );
        assert_ne!(bytes, blob);
    }
    // A second log under the same sequence number: refused.
    let mut twin = grantee.access_log(Some("g-1"));
    if let TxBody::AccessLog { at, .. } = &mut twin {
        *at += 1;
    }
    let twin = grantee.signed(grantee.next.get() - 1, twin);
    assert_eq!(
        get_blob(&c, 0, &hash, &twin).0,
        409,
        "shared sequence number"
    );
    // A log far ahead of the sender's sequence can never commit: refused.
    let ahead = grantee.signed(grantee.next.get() + 1000, grantee.access_log(Some("g-1")));
    assert_eq!(get_blob(&c, 0, &hash, &ahead).0, 409, "sequence +1000");
    // Several reads in a row (pending logs, each following the one before) are all served.
    for _ in 0..4 {
        let log = grantee.tx(grantee.access_log(Some("g-1")));
        assert_eq!(get_blob(&c, 0, &hash, &log).0, 200);
        served += 1;
    }
    // A registered party's log does not enter the chain either: only records' and grants'
    // keys log.
    let fake = stranger.signed(stranger.next.get(), stranger.access_log(None));
    let (status, _) = c.post(0, "/v1/tx", json!({"jws": fake}).to_string().as_bytes());
    assert_eq!(status, 403, "a registered key's log");

    // Revoked: the grant's next read is refused.
    let revoke = record.tx(TxBody::RevokeGrant {
        grant_id: "g-1".into(),
    });
    submit(&c, 0, &revoke);
    wait_committed(&c, 0, &revoke);
    let after = grantee.signed(grantee.next.get(), grantee.access_log(Some("g-1")));
    let (status, bytes) = get_blob(&c, 0, &hash, &after);
    assert_eq!(status, 403, "revoked grant");
    assert_ne!(bytes, blob);

    // Every served read is on the chain: one committed log each, on every node.
    c.wait_until(Duration::from_secs(30), |c| {
        access_logs_by(c, 4, &grantee.id) == served
    });
    assert_eq!(access_logs_by(&c, 0, &grantee.id), served);
    assert_eq!(access_logs_by(&c, 0, &stranger.id), 0);
}

/// Point 4 and the flood: transactions from unknown senders, with future sequence numbers,
/// padded to their type's bound, are refused before anything is stored or relayed; a
/// registered sender's window of pending transactions is bounded; honest traffic still
/// commits, and the node's memory stays bounded.
#[test]
fn junk_is_refused_before_it_is_stored_and_honest_traffic_commits() {
    let c = Consortium::start();
    let rss_before = c.rss_kib(0);
    let started = Instant::now();
    let junk_count = 800;
    for i in 0..junk_count {
        let stranger = Actor::named(&format!("insurer:junk-{i}"));
        let padded = TxBody::Grant {
            grant_id: format!("junk-{i}"),
            blob: Hash::sha256(b"junk"),
            grant_key: Hash::sha256(b"junk"),
            actions: vec![Action::Read],
            not_after: u64::MAX,
            details: "x".repeat(5_000),
        };
        let (status, reply) = c.post(
            i % 5,
            "/v1/tx",
            json!({"jws": stranger.signed(5, padded)})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(status, 403, "{reply}");
    }
    let flood = started.elapsed();
    for i in 0..5 {
        assert_eq!(c.metric(i, "emrshare_mempool_transactions"), 0, "node {i}");
    }

    // A known sender (a record's account): no gap, no second transaction per sequence
    // number, and at most its window of pending transactions.
    let (_, record) = patient_with_record(&c);
    let log = |i: usize| TxBody::AccessLog {
        grant_id: None,
        grant_jwk: None,
        action: Action::Read,
        at: now_s(),
        details: format!("log-{i}"),
    };
    let gap = record.signed(5, log(0));
    let (status, _) = c.post(0, "/v1/tx", json!({"jws": gap}).to_string().as_bytes());
    assert_eq!(status, 409, "a gap in the sequence");
    let mut last = String::new();
    let mut statuses = Vec::new();
    for i in 0..40 {
        let jws = record.signed(1 + i as u64, log(i));
        let (status, _) = c.post(0, "/v1/tx", json!({"jws": jws}).to_string().as_bytes());
        statuses.push(status);
        if status == 202 {
            last = jws;
        } else {
            break;
        }
    }
    // Blocks commit some meanwhile; the window is what is pending at once.
    assert!(
        statuses.contains(&429) || statuses.len() == 40,
        "the window of pending transactions is bounded: {statuses:?}"
    );
    wait_committed(&c, 0, &last);
    let rss_after = c.rss_kib(0);
    eprintln!(
        "flood: {junk_count} padded junk transactions refused in {flood:?}; node 0 RSS {rss_before} KiB before, {rss_after} KiB after"
    );
    assert!(
        rss_after < 200 * 1024,
        "node 0 holds {rss_after} KiB after the flood"
    );
}

/// Points 3 and 5: more pending bytes than a block may carry never halt the chain (blocks
/// are built under the byte budget), and transactions submitted to an auditor reach the
/// proposers (relay bounded by the peers' body limit) and commit.
#[test]
fn blocks_fit_their_byte_budget_and_what_an_auditor_acknowledges_commits() {
    let max_block = 400_000;
    let c = Consortium::start_with_limits(|limits| {
        limits.insert("max_block_bytes".into(), (max_block as i64).into());
        limits.insert("max_pending_per_sender".into(), 200.into());
    });
    let auditor = c.get(0, "/v1/validators").unwrap()["current"]["validators"][4]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let auditor: usize = auditor.strip_prefix("node:").unwrap().parse().unwrap();
    let (_, record) = patient_with_record(&c);
    let mut txs = Vec::new();
    for i in 0..150 {
        let jws = record.tx(TxBody::Grant {
            grant_id: format!("g-{i}"),
            blob: Hash::sha256(&(i as u64).to_be_bytes()),
            grant_key: Hash::sha256(b"key"),
            actions: vec![Action::Read],
            not_after: u64::MAX,
            details: format!("{i:04}{}", "e".repeat(5_000)),
        });
        submit(&c, auditor, &jws);
        txs.push(jws);
    }
    // 150 x 7 KB is three blocks' worth: all commit.
    for jws in &txs {
        wait_committed(&c, auditor, jws);
    }
    let mut blocks_with_txs = 0;
    for h in 1..=c.height(0) {
        let body = c
            .http
            .get(c.url(0, &format!("/v1/blocks/{h}")))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        assert!(body.len() <= max_block, "block {h} is {} bytes", body.len());
        let block: Value = serde_json::from_slice(&body).unwrap();
        if !block["txs"].as_array().unwrap().is_empty() {
            blocks_with_txs += 1;
        }
    }
    assert!(
        blocks_with_txs >= 3,
        "{blocks_with_txs} blocks carried them"
    );
}

/// Point 6: concurrent uploads into one folder each store exactly their bytes.
#[test]
fn concurrent_uploads_store_exactly_their_bytes() {
    let c = Consortium::start();
    let (_, patient) = patient_with_record(&c);
    // 16 blobs of 64 KiB whose addresses share their first byte (one folder).
    let mut blobs = Vec::new();
    let mut seed = 0u64;
    while blobs.len() < 16 {
        seed += 1;
        let mut blob = vec![0u8; 64 * 1024];
        for (i, b) in blob.iter_mut().enumerate() {
            *b = (seed.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8;
        }
        blob[..8].copy_from_slice(&seed.to_be_bytes());
        if emrshare_core::content_hash(&blob)[0] == 0x2a {
            blobs.push(blob);
        }
    }
    std::thread::scope(|scope| {
        for blob in &blobs {
            let c = &c;
            let claim = patient.blob_claim(&emrshare_core::content_hash(blob).to_hex());
            scope.spawn(move || assert_eq!(put_claimed(c, 0, &claim, blob), 201));
        }
    });
    for blob in &blobs {
        let hash = emrshare_core::content_hash(blob).to_hex();
        let log = patient.tx(patient.access_log(None));
        let (status, bytes) = get_blob(&c, 0, &hash, &log);
        assert_eq!(status, 200);
        assert_eq!(&bytes, blob, "blob {hash} holds other bytes");
    }
    // A body that does not hash to its address is refused and leaves no file.
    let hash = emrshare_core::content_hash(&blobs[0]).to_hex();
    let status = c
        .http
        .put(c.url(0, &format!("/v1/blobs/{}", "0".repeat(64))))
        .header("x-emr-owner", patient.blob_claim(&"0".repeat(64)))
        .body(blobs[0].clone())
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 400);
    let folder = c.dir.path().join("node-0/data/blobs").join(&hash[..2]);
    let names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 16, "{names:?}");
}

/// Raw HTTP/1.1 request head with a large declared body.
fn stalled_request(c: &Consortium, head: &str, sent: usize) -> std::net::TcpStream {
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", c.base_port)).unwrap();
    socket.write_all(head.as_bytes()).unwrap();
    let chunk = vec![0u8; 1024 * 1024];
    for _ in 0..sent / chunk.len() {
        socket.write_all(&chunk).unwrap();
    }
    socket
}

/// Point 7: consortium routes refuse a stranger before reading the body; an upload's body is
/// read only after its claim checks, and streams to disk; stalled bodies hold no memory.
#[test]
fn stranger_bodies_are_refused_unread_and_stalled_uploads_hold_no_memory() {
    let c = Consortium::start();
    let (_, patient) = patient_with_record(&c);
    let rss_before = c.rss_kib(0);

    // Strangers: a 60 MiB relay without a token, an upload without a claim: answered at
    // once, from the head alone.
    for head in [
        "POST /v1/consensus/txs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 62914560\r\n\r\n".to_owned(),
        format!(
            "PUT /v1/blobs/{} HTTP/1.1\r\nhost: x\r\ncontent-length: 62914560\r\n\r\n",
            "1".repeat(64)
        ),
    ] {
        let mut socket = stalled_request(&c, &head, 0);
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = [0u8; 12];
        socket.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"HTTP/1.1 401", "{head}");
    }

    // Six uploads with valid claims, 64 MiB declared, 16 MiB sent, then stalled.
    let stalled: Vec<_> = (0..6u8)
        .map(|i| {
            let hash = Hash::new([i; 32]).to_hex();
            let head = format!(
                "PUT /v1/blobs/{hash} HTTP/1.1\r\nhost: x\r\nx-emr-owner: {}\r\ncontent-length: {}\r\n\r\n",
                patient.blob_claim(&hash),
                64 * 1024 * 1024
            );
            stalled_request(&c, &head, 16 * 1024 * 1024)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let rss_stalled = c.rss_kib(0);
    // The node still serves.
    assert!(c.get(0, "/v1/health").is_some());
    drop(stalled);
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = c.rss_kib(0);
    eprintln!(
        "stalled uploads: node 0 RSS {rss_before} KiB before, {rss_stalled} KiB with 6 x 16 MiB stalled, {rss_after} KiB after"
    );
    assert!(
        rss_stalled < rss_before + 64 * 1024,
        "6 stalled uploads grew the node from {rss_before} to {rss_stalled} KiB"
    );
    // No temporary file outlives its upload.
    c.wait_until(Duration::from_secs(10), |c| {
        let blobs = c.dir.path().join("node-0/data/blobs");
        std::fs::read_dir(&blobs).map_or(true, |dirs| {
            dirs.flatten().all(|d| {
                std::fs::read_dir(d.path()).map_or(true, |mut files| files.next().is_none())
            })
        })
    });
}

/// Points 8 and 9: IDs cannot be squatted (a genesis member's, a patient's thumbprint under
/// another key); a high-S twin of a transaction is refused; consortium routes take only
/// members' tokens for their path and body.
#[test]
fn ids_cannot_be_squatted_signatures_have_one_form_and_peers_must_sign() {
    let c = Consortium::start();
    let attacker = SigningKey::generate();
    let victim = Actor::patient();
    for (what, jws, role) in [
        ("a genesis member's ID", "node:4", Role::Node),
        ("a patient's thumbprint", victim.id.as_str(), Role::Patient),
        (
            "a patient's thumbprint as an insurer",
            victim.id.as_str(),
            Role::Insurer,
        ),
    ] {
        let (status, reply) = c.post(
            0,
            "/v1/tx",
            json!({"jws": registration_as(&c, jws, &attacker, role)})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(status, 403, "{what}: {reply}");
    }
    // Self-registration of an institution (no council approvals), and a patient without a
    // voucher: refused before anything is stored.
    let enc = emrshare_core::keys::DecryptionKey::generate(emrshare_core::keys::RsaBits::B2048);
    for (id, role) in [
        ("hospital:self", Role::Hospital),
        (victim.id.as_str(), Role::Patient),
    ] {
        let key = if role == Role::Patient {
            &victim.key
        } else {
            &attacker
        };
        let jws = Transaction {
            chain_id: CHAIN.into(),
            sender: PartyId::new(id).unwrap(),
            sequence: 0,
            body: TxBody::RegisterIdentity {
                id: PartyId::new(id).unwrap(),
                role,
                signing_jwk: key.verifying_key().to_jwk(None),
                encryption_jwk: enc.encryption_key().to_jwk(None),
                valid_from: 0,
                valid_until: u64::MAX,
                voucher: None,
            },
        }
        .sign(key)
        .as_jws()
        .to_owned();
        let (status, reply) = c.post(0, "/v1/tx", json!({"jws": jws}).to_string().as_bytes());
        assert_eq!(status, 403, "{id}: {reply}");
    }
    victim.register(&c, 0, Role::Patient);
    registered(&c, &[&victim.id]);

    // The high-S twin of a signed transaction: same content, a second ID. Refused.
    let hospital = Actor::named("hospital:h");
    let registration = registration_as(&c, hospital.id.as_str(), &hospital.key, Role::Hospital);
    let (head, signature) = registration.rsplit_once('.').unwrap();
    let mut twin = emrshare_core::b64::decode(signature).unwrap();
    let order: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc,
        0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
    ];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut digit = i16::from(order[i]) - i16::from(twin[32 + i]) - borrow;
        borrow = i16::from(digit < 0);
        if digit < 0 {
            digit += 256;
        }
        twin[32 + i] = digit as u8;
    }
    let twin = format!("{head}.{}", emrshare_core::b64::encode(&twin));
    let (status, _) = c.post(0, "/v1/tx", json!({"jws": twin}).to_string().as_bytes());
    assert_eq!(status, 400, "high-S twin");

    // Consortium routes: no token, a stranger's token, a member's token for another path
    // or another body.
    let body = json!({"txs": [registration]}).to_string().into_bytes();
    let token = |keys: &emrshare_core::PrivateKeySet, path: &str, signed_body: &[u8]| {
        let payload = json!({
            "peer": keys.id.as_str(),
            "path": path,
            "len": signed_body.len(),
            "body_sha256": emrshare_core::content_hash(signed_body).to_hex(),
            "iat": now_s(),
        });
        emrshare_core::jws::sign(
            &keys.signing,
            &emrshare_core::jws::Header::es256("emr-peer+jwt", None),
            &payload,
        )
    };
    let member = c.node_keys(1);
    let stranger = emrshare_core::PrivateKeySet::generate(
        Some(PartyId::new("node:9").unwrap()),
        emrshare_core::keys::RsaBits::B2048,
    );
    let other_body = json!({"txs": []}).to_string().into_bytes();
    let relay = |token: Option<String>, body: &[u8]| {
        let mut request = c
            .http
            .post(c.url(0, "/v1/consensus/txs"))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(token) = token {
            request = request.header("x-emr-peer", token);
        }
        request.send().unwrap().status().as_u16()
    };
    assert_eq!(relay(None, &body), 401, "no token");
    assert_eq!(
        relay(Some(token(&stranger, "/v1/consensus/txs", &body)), &body),
        401,
        "a stranger's token"
    );
    assert_eq!(
        relay(Some(token(&member, "/v1/consensus/block", &body)), &body),
        401,
        "a token for another route"
    );
    assert_eq!(
        relay(
            Some(token(&member, "/v1/consensus/txs", &other_body)),
            &body
        ),
        401,
        "a token for another body"
    );
    assert_eq!(
        relay(Some(token(&member, "/v1/consensus/txs", &body)), &body),
        202,
        "a member's token"
    );
}
