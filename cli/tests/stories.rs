//! The three stories and the thin client's defences, against a local consortium of real
//! nodes in this process, reached through the in-memory transport (no sockets; the same
//! verification as over HTTP). Adversarial nodes are made with the lying transport: they
//! swap keys, withhold entries, serve stale headers or forged certificates, drop requests;
//! the client catches each, still succeeds from honest nodes, and fails closed when all lie.

use emrshare_cli::consortium::{LocalConsortium, voucher_for};
use emrshare_cli::memory::MemoryTransport;
use emrshare_client::{Behaviour, ClientConfig, LyingTransport, NetError, NodeClient};
use emrshare_core::PrivateKeySet;
use emrshare_core::account::{Account, share_envelope};
use emrshare_core::jwe::Envelope;
use emrshare_core::keys::txkeys::MasterSecret;
use emrshare_core::keys::{PartyId, RsaBits, SigningKey};
use emrshare_core::ledger::machine::directory_key;
use emrshare_core::ledger::tx::{Action, Role, SignedTransaction, TxBody};
use emrshare_core::ledger::verify::{InvalidReason, Verdict};
use emrshare_core::ledger::wire::BucketAnswer;
use emrshare_core::lookup::{LookupError, LookupPlan, NodeFault, QuerySize};
use emrshare_core::record_account::{
    BLOB_CLAIM_TYP, GrantCapability, IndexEntry, RecordKeys, request_record_voucher,
};
use emrshare_core::voucher::VoucherSecretKey;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn now() -> u64 {
    emrshare_cli::now()
}

type Client = NodeClient<LyingTransport<MemoryTransport>>;

/// One consortium at a time: these machines have 2 cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Setup {
    consortium: LocalConsortium,
    client: Client,
    insurers: Vec<Account>,
    _dir: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// A 5-node consortium with six registered insurers; the client asks n = 3 nodes.
async fn setup() -> Setup {
    let turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let consortium = LocalConsortium::start(dir.path(), 5, 300, false, None)
        .await
        .unwrap();
    let transport = LyingTransport::new(MemoryTransport::new(consortium.routers()));
    let config = ClientConfig::new(consortium.urls.clone(), consortium.genesis.clone());
    let client = NodeClient::new(config, transport).unwrap();
    let chain = consortium.genesis.chain_id.clone();
    let mut insurers = Vec::new();
    for i in 0..6 {
        let keys = PrivateKeySet::generate(
            Some(PartyId::new(format!("insurer:{i}")).unwrap()),
            RsaBits::B2048,
        );
        let mut account = Account::new(keys, &chain, 0);
        let admission = consortium
            .admission(&mut account, Role::Insurer, now() + 3600, None)
            .unwrap();
        client.submit(&admission).await.unwrap();
        insurers.push(account);
    }
    for account in &insurers {
        client
            .wait_sequence(account.id(), 0, Duration::from_secs(20))
            .await
            .unwrap();
    }
    Setup {
        consortium,
        client,
        insurers,
        _dir: dir,
        _turn: turn,
    }
}

/// A lookup of insurer `target` among k = 2 of the six: a bucket of one bit.
async fn plan(s: &Setup, target: usize) -> LookupPlan {
    let registered = s.client.directory_size(Role::Insurer).await.unwrap();
    assert_eq!(registered, 6);
    let plan = LookupPlan::new(s.insurers[target].id(), Role::Insurer, 6, QuerySize::K(2));
    let plan = plan.unwrap();
    assert_eq!(plan.bits(), 1);
    plan
}

fn is_bucket(path: &str) -> bool {
    path.starts_with("/v1/directory/") && path.contains("/bucket")
}

/// Every bucket answer of a node, altered by `change`.
fn alter_lookups(change: impl Fn(&mut BucketAnswer) + Send + Sync + 'static) -> Behaviour {
    Behaviour::Alter(Arc::new(move |request, response| {
        if is_bucket(&request.path) {
            let mut answer: BucketAnswer = serde_json::from_slice(&response.body).unwrap();
            change(&mut answer);
            response.body = serde_json::to_vec(&answer).unwrap();
        }
    }))
}

/// The position of `id` in a bucket answer.
fn position(answer: &BucketAnswer, id: &PartyId) -> usize {
    answer.entries.iter().position(|e| &e.id == id).unwrap()
}

fn faults(outcome: &[emrshare_core::lookup::NodeEvidence], node: &str) -> Vec<NodeFault> {
    outcome
        .iter()
        .filter(|e| e.node == node)
        .map(|e| e.fault.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_stories_run_over_the_in_memory_transport() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let consortium = LocalConsortium::start(dir.path(), 5, 300, false, None)
        .await
        .unwrap();
    let transport = MemoryTransport::new(consortium.routers());
    let result = emrshare_cli::demo::run_stories(&consortium, transport, 4).await;
    consortium.stop().await.unwrap();
    result.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_nodes_are_caught_and_the_lookup_succeeds_from_honest_ones() {
    let s = setup().await;
    let nodes = s.consortium.urls.clone();
    let transport = s.client.transport();
    let attacker = SigningKey::generate().verifying_key().to_jwk(None);
    let target = s.insurers[2].id().clone();
    let plan = plan(&s, 2).await;

    // Lies about a public key (a man in the middle's), then withholds the entry.
    let swapped = target.clone();
    transport.set(
        &nodes[0],
        alter_lookups(move |a| {
            let i = position(a, &swapped);
            let mut v: serde_json::Value = serde_json::from_str(&a.entries[i].value).unwrap();
            v["keys"][0]["signing_jwk"] = serde_json::to_value(&attacker).unwrap();
            a.entries[i].value = v.to_string();
        }),
    );
    let withheld = target.clone();
    transport.set(
        &nodes[1],
        alter_lookups(move |a| {
            let i = position(a, &withheld);
            a.entries.remove(i);
        }),
    );
    // Forges a certificate: one validator's precommit twice.
    transport.set(
        &nodes[2],
        alter_lookups(|a| {
            let signatures = &mut a.header.certificate.signatures;
            signatures[1] = signatures[0].clone();
        }),
    );
    let mut verified = Vec::new();
    let mut evidence = Vec::new();
    for _ in 0..nodes.len() {
        let outcome = s.client.lookup(&plan).await.unwrap();
        let entry = outcome.target.clone().expect("the target is registered");
        assert_eq!(
            entry.public_keys().unwrap().signing,
            *s.insurers[2].keys().signing.verifying_key(),
            "the registered key, not the attacker's"
        );
        verified.extend(outcome.verified_by.clone());
        evidence.extend(outcome.evidence.clone());
    }
    for liar in &nodes[..3] {
        assert!(!verified.contains(liar), "{liar} was believed");
    }
    assert!(matches!(
        faults(&evidence, &nodes[0])[0],
        NodeFault::Bucket(_)
    ));
    assert!(matches!(
        faults(&evidence, &nodes[1])[0],
        NodeFault::Bucket(_)
    ));
    assert!(matches!(
        faults(&evidence, &nodes[2])[0],
        NodeFault::Header(Verdict::Invalid(InvalidReason::DuplicateVote(_)))
    ));

    // Every node lies: the lookup fails closed.
    for node in &nodes {
        let withheld = target.clone();
        transport.set(
            node,
            alter_lookups(move |a| {
                let i = position(a, &withheld);
                a.entries.remove(i);
            }),
        );
    }
    match s.client.lookup(&plan).await {
        Err(NetError::Lookup(LookupError::NoVerifiedAnswer(evidence))) => {
            assert!(evidence.len() >= 3, "{evidence:?}")
        }
        other => panic!("a lookup no node answered truthfully must fail: {other:?}"),
    }
    // Nodes that do not answer at all: the client moves on to others.
    for node in &nodes {
        transport.set(node, Behaviour::Honest);
    }
    transport.set(&nodes[3], Behaviour::Drop);
    transport.set(&nodes[4], Behaviour::Drop);
    for _ in 0..3 {
        let outcome = s.client.lookup(&plan).await.unwrap();
        assert!(outcome.target.is_some());
        assert!(outcome.evidence.is_empty(), "silence is no evidence");
        for silent in &outcome.lagging {
            assert!(silent.node == nodes[3] || silent.node == nodes[4]);
        }
    }
    s.consortium.stop().await.unwrap();
}

/// Keeps the first answer `node` gives to a request whose path `wanted` matches (passing it on
/// unchanged): an answer to replay once the chain has moved on.
fn keep_first_answer(
    s: &Setup,
    node: &str,
    wanted: fn(&str) -> bool,
) -> Arc<Mutex<Option<Vec<u8>>>> {
    let recorded: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let keep = Arc::clone(&recorded);
    s.client.transport().set(
        node,
        Behaviour::Alter(Arc::new(move |request, response| {
            if wanted(&request.path) {
                keep.lock()
                    .unwrap()
                    .get_or_insert_with(|| response.body.clone());
            }
        })),
    );
    recorded
}

/// Commits a transaction (insurer 5 revokes itself), so the chain moves past every answer
/// kept before.
async fn move_chain_on(s: &mut Setup) {
    let id = s.insurers[5].id().clone();
    let update = s.insurers[5].sign(TxBody::RevokeIdentity { id });
    s.client.submit(&update).await.unwrap();
    s.client
        .wait_sequence(s.insurers[5].id(), 1, Duration::from_secs(20))
        .await
        .unwrap();
}

fn is_entry(path: &str) -> bool {
    path == "/v1/registry/lookup"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_header_is_refused_once_the_client_has_seen_a_newer_one() {
    let mut s = setup().await;
    let nodes = s.consortium.urls.clone();
    let plan = plan(&s, 1).await;
    // Record node 0's answer now, then let the chain move on.
    let recorded = keep_first_answer(&s, &nodes[0], is_bucket);
    while recorded.lock().unwrap().is_none() {
        s.client.lookup(&plan).await.unwrap();
    }
    move_chain_on(&mut s).await;
    let before = s.client.trusted_height();
    while s.client.trusted_height() <= before {
        s.client.lookup(&plan).await.unwrap();
    }
    // Node 0 now replays its old, validly certified answer.
    let old = recorded.lock().unwrap().clone().unwrap();
    s.client.transport().set(
        &nodes[0],
        Behaviour::Alter(Arc::new(move |request, response| {
            if is_bucket(&request.path) {
                response.body = old.clone();
            }
        })),
    );
    // Refused, and listed as lagging: an honest node a block behind looks the same, so the
    // replay is no evidence.
    let mut stale = Vec::new();
    for _ in 0..nodes.len() {
        let outcome = s.client.lookup(&plan).await.unwrap();
        assert!(!outcome.verified_by.contains(&nodes[0]));
        assert!(faults(&outcome.evidence, &nodes[0]).is_empty());
        stale.extend(faults(&outcome.lagging, &nodes[0]));
    }
    assert!(
        stale.iter().any(|f| matches!(
            f,
            NodeFault::Header(Verdict::Invalid(InvalidReason::Stale { .. }))
        )),
        "{stale:?}"
    );
    s.consortium.stop().await.unwrap();
}

/// Nodes a block behind the client's trusted header answer a proven read (here a registry
/// entry) under an older header: refused, and asked again a little later, so the read
/// succeeds once one has caught up; silence is reported as no answer, never as untrusted
/// answers (before, both ended in `Unverified`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_behind_are_asked_again_and_silence_is_not_distrust() {
    let mut s = setup().await;
    let nodes = s.consortium.urls.clone();
    let target = s.insurers[1].id().clone();
    // An answer under the current header, kept; then the chain and the client move on.
    let recorded = keep_first_answer(&s, &nodes[0], is_entry);
    while recorded.lock().unwrap().is_none() {
        s.client.registry_entry(&target).await.unwrap();
    }
    let before = s.client.trusted_height();
    move_chain_on(&mut s).await;
    while s.client.trusted_height() <= before {
        s.client.registry_entry(&target).await.unwrap();
    }
    // Every node answers with the old header twice before it has "caught up".
    let old = recorded.lock().unwrap().clone().unwrap();
    let behind_for = Arc::new(Mutex::new(std::collections::HashMap::<String, u32>::new()));
    for node in &nodes {
        let (old, behind_for, node_name) = (old.clone(), Arc::clone(&behind_for), node.clone());
        s.client.transport().set(
            node,
            Behaviour::Alter(Arc::new(move |request, response| {
                let mut counts = behind_for.lock().unwrap();
                let count = counts.entry(node_name.clone()).or_default();
                if is_entry(&request.path) && *count < 2 {
                    *count += 1;
                    response.body = old.clone();
                }
            })),
        );
    }
    let entry = s.client.registry_entry(&target).await.unwrap();
    assert!(entry.is_some(), "read once a node caught up");
    assert!(
        s.client.trusted_height() > before,
        "never under the old header"
    );
    // Every node silent: no answer, not untrusted answers.
    for node in &nodes {
        s.client.transport().set(node, Behaviour::Drop);
    }
    match s.client.registry_entry(&target).await {
        Err(NetError::NoAnswer { tried, .. }) => assert_eq!(tried, nodes.len()),
        other => panic!("silent nodes are no evidence: {other:?}"),
    }
    // Nodes that stay behind: after a few tries, no answer either (no node is up to date).
    for node in &nodes {
        let old = old.clone();
        s.client.transport().set(
            node,
            Behaviour::Alter(Arc::new(move |request, response| {
                if is_entry(&request.path) {
                    response.body = old.clone();
                }
            })),
        );
    }
    match s.client.registry_entry(&target).await {
        Err(NetError::NoAnswer { last, .. }) => assert!(last.contains("Stale"), "{last}"),
        other => panic!("nodes behind are no evidence: {other:?}"),
    }
    // One node forging beside them: evidence against that one alone.
    s.client.transport().set(
        &nodes[1],
        Behaviour::Alter(Arc::new(move |request, response| {
            if is_entry(&request.path) {
                let mut answer: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
                answer["entries"][0]["value"] = serde_json::Value::Null;
                response.body = serde_json::to_vec(&answer).unwrap();
            }
        })),
    );
    match s.client.registry_entry(&target).await {
        Err(NetError::Unverified(evidence)) => {
            assert_eq!(evidence.len(), 1, "{evidence:?}");
            assert_eq!(evidence[0].node, nodes[1]);
        }
        other => panic!("a forged absence must be evidence: {other:?}"),
    }
    s.consortium.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lookup_of_one_target_asks_the_same_bucket_and_gets_all_of_it() {
    let s = setup().await;
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    for node in &s.consortium.urls {
        let seen = Arc::clone(&seen);
        s.client.transport().set(
            node,
            Behaviour::Alter(Arc::new(move |request, _| {
                if is_bucket(&request.path) {
                    seen.lock().unwrap().push(request.path.clone());
                }
            })),
        );
    }
    // Fresh plans each time (as by other parties, or after an app restart): one bucket.
    let mut buckets = Vec::new();
    for _ in 0..3 {
        let plan = plan(&s, 4).await;
        buckets.push(s.client.lookup(&plan).await.unwrap().bucket);
    }
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 9);
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "requests differ: {seen:?}"
    );
    // One bit of the target's key leaves the client: the path's prefix is "0" or "1".
    let prefix = seen[0].rsplit('/').next().unwrap();
    assert!(prefix == "0" || prefix == "1", "{}", seen[0]);
    // The bucket is every insurer whose key has that bit, the target among them.
    let bit = prefix == "1";
    let mut expected: Vec<PartyId> = s
        .insurers
        .iter()
        .map(|a| a.id().clone())
        .filter(|id| (directory_key(id)[0] & 0x80 != 0) == bit)
        .collect();
    expected.sort_by_key(directory_key);
    assert!(expected.contains(s.insurers[4].id()));
    for bucket in buckets {
        assert_eq!(bucket, expected);
    }
    s.consortium.stop().await.unwrap();
}

/// Submits `tx` and waits until its sender's sequence number shows it committed.
async fn committed(s: &Setup, tx: &SignedTransaction) {
    s.client.submit(tx).await.unwrap();
    let t = tx.transaction();
    s.client
        .wait_sequence(&t.sender, t.sequence, Duration::from_secs(20))
        .await
        .unwrap();
}

/// Insurer `index`'s capability for `grant_id`, from the proven grant.
async fn capability(s: &Setup, index: usize, grant_id: &str) -> GrantCapability {
    let grant = s.client.grant(grant_id).await.unwrap().grant.unwrap();
    GrantCapability::open(s.insurers[index].keys(), grant_id, &grant).unwrap()
}

/// What the nodes enforce of grants as capabilities: only the grant's own key fetches,
/// only while the grant lives (not expired, not revoked); a blob is taken only from an
/// open record's account, and a record's account opens only with a node's voucher, given
/// only to a registered patient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_fetch_only_while_live_and_only_with_their_own_key() {
    let s = setup().await;
    let chain = s.consortium.genesis.chain_id.clone();
    let issuers = s.consortium.genesis.record_voucher_keys.clone();
    let patient = PrivateKeySet::generate(None, RsaBits::B2048);
    // A hospital admitted with its voucher key, whose voucher the patient registers with.
    let vouchers = VoucherSecretKey::generate(2048).unwrap();
    let mut hospital = Account::new(
        PrivateKeySet::generate(Some(PartyId::new("hospital:a").unwrap()), RsaBits::B2048),
        &chain,
        0,
    );
    let admission = s
        .consortium
        .admission(
            &mut hospital,
            Role::Hospital,
            now() + 3600,
            Some(&vouchers.public().unwrap()),
        )
        .unwrap();
    committed(&s, &admission).await;
    let record = RecordKeys::derive(&MasterSecret::generate(), 0);
    // Before registering, the patient gets no record voucher.
    let (_, early) = request_record_voucher(
        (&patient.id, &patient.signing),
        &chain,
        &issuers,
        record.id(),
        now(),
    )
    .unwrap();
    match s.client.record_voucher(&early).await {
        Err(NetError::Refused { status: 403, .. }) => {}
        other => panic!("an unregistered party must get no record voucher: {other:?}"),
    }
    let voucher = voucher_for(&vouchers, &chain, &patient.id).unwrap();
    let mut registered = Account::new(patient, &chain, 0);
    committed(&s, &registered.register_patient(voucher, 0, now() + 3600)).await;
    let patient = registered.keys();
    let envelope =
        Envelope::seal_unnamed_to(b"a record", &[&patient.public().encryption], None).unwrap();
    // A blob under a claim of the patient's registered key (not a record's account) is
    // refused before it is stored.
    let own_claim = {
        let payload = serde_json::json!({
            "blob": emrshare_core::content_hash(envelope.serialize().as_bytes()),
            "owner": patient.id, "iat": now(),
        });
        emrshare_core::jws::sign(
            &patient.signing,
            &emrshare_core::jws::Header::es256(BLOB_CLAIM_TYP, None),
            &payload,
        )
    };
    match s
        .client
        .put_blob(envelope.serialize().as_bytes(), &own_claim)
        .await
    {
        Err(NetError::Refused { status: 403, .. }) => {}
        other => panic!("a blob outside a record's account must be refused: {other:?}"),
    }
    let (pending, request) = request_record_voucher(
        (&patient.id, &patient.signing),
        &chain,
        &issuers,
        record.id(),
        now(),
    )
    .unwrap();
    let voucher = pending
        .finalize(&s.client.record_voucher(&request).await.unwrap())
        .unwrap();
    let entry = IndexEntry {
        format: IndexEntry::FORMAT.into(),
        location: "emrshare:blob/x".into(),
        blob: emrshare_core::content_hash(b"x"),
        time: now(),
        department: "cardiology".into(),
        record_id: None,
    };
    committed(&s, &record.open_account(&chain, voucher, &entry)).await;
    let mut granted = Vec::new();
    // insurer 0 gets a grant that expires at once; insurer 3 a live one, later revoked.
    for (index, not_after) in [(0usize, now() + 1), (3, now() + 3600)] {
        let grantee = s
            .client
            .lookup(&plan(&s, index).await)
            .await
            .unwrap()
            .target
            .unwrap();
        let shared = share_envelope(&envelope, patient, &grantee).unwrap();
        let bytes = shared.serialize().into_bytes();
        let claim = record.blob_claim(&emrshare_core::content_hash(&bytes), now());
        let blob = s.client.put_blob(&bytes, &claim).await.unwrap();
        let sequence = s.client.next_sequence(record.id()).await.unwrap();
        let grantee_keys = grantee.public_keys().unwrap();
        let (grant_id, tx) = record
            .grant(
                &chain,
                sequence,
                (&patient.id, &patient.public().encryption),
                (&grantee_keys.id, &grantee_keys.encryption),
                &blob,
                None,
                &[],
                &[Action::Read],
                not_after,
            )
            .unwrap();
        committed(&s, &tx).await;
        granted.push((index, blob, grant_id));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (i, blob, grant) = &granted[0];
    let expired = capability(&s, *i, grant).await;
    let access = expired.access_log(&chain, 0, blob, now());
    match s.client.get_blob(blob, &access).await {
        Err(NetError::Refused { status: 403, .. }) => {}
        other => panic!("an expired grant must be refused: {other:?}"),
    }
    let (i, blob, grant) = &granted[1];
    let live = capability(&s, *i, grant).await;
    // The expired grant's key presenting the live grant: its key is not the committed one.
    let mut crossed = expired
        .access_log(&chain, 0, blob, now())
        .transaction()
        .clone();
    if let TxBody::AccessLog { grant_id, .. } = &mut crossed.body {
        *grant_id = Some(grant.clone());
    }
    let crossed = crossed.sign(&SigningKey::generate());
    match s.client.get_blob(blob, &crossed).await {
        Err(NetError::Refused { status, .. }) => assert!(status == 401 || status == 403),
        other => panic!("another key must not fetch under a grant: {other:?}"),
    }
    let access = live.access_log(&chain, 0, blob, now());
    let fetched = s.client.get_blob(blob, &access).await.unwrap();
    assert_eq!(
        &*Envelope::parse(&fetched)
            .unwrap()
            .open(s.insurers[*i].keys())
            .unwrap(),
        b"a record"
    );
    committed(&s, &access).await;
    // The access is logged under the record, sealed: the record's keys open who it was.
    let found = s.client.record_account(record.id(), 0).await.unwrap();
    assert_eq!(found.logs.len(), 1);
    assert_eq!(
        record.open_log(&found.logs[0]).unwrap().accessor,
        *s.insurers[*i].id()
    );
    // The record's account revokes; the capability fetches no more.
    let sequence = s.client.next_sequence(record.id()).await.unwrap();
    committed(&s, &record.revoke(&chain, sequence, grant)).await;
    let access = live.access_log(&chain, 1, blob, now());
    match s.client.get_blob(blob, &access).await {
        Err(NetError::Refused { status: 403, .. }) => {}
        other => panic!("a revoked grant must be refused: {other:?}"),
    }
    s.consortium.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_blocks_wait_for_a_lagging_node_and_skip_lying_ones() {
    let s = setup().await;
    let height = s.client.latest_header().await.unwrap().header.height;
    let is_block = |request: &emrshare_client::HttpRequest| request.path.starts_with("/v1/blocks/");
    // Two nodes serve blocks whose transactions do not match their headers.
    for node in &s.consortium.urls[..2] {
        s.client.transport().set(
            node,
            Behaviour::Alter(Arc::new(move |request, response| {
                if is_block(request) {
                    let mut block: serde_json::Value =
                        serde_json::from_slice(&response.body).unwrap();
                    block["txs"].as_array_mut().unwrap().push("forged".into());
                    response.body = serde_json::to_vec(&block).unwrap();
                }
            })),
        );
    }
    s.client
        .transport()
        .set(&s.consortium.urls[2], Behaviour::Drop);
    // The other two lag: each block is "not there yet" the first time it is asked for.
    for node in &s.consortium.urls[3..] {
        let asked = Arc::new(Mutex::new(std::collections::HashSet::new()));
        s.client.transport().set(
            node,
            Behaviour::Alter(Arc::new(move |request, response| {
                if is_block(request) && asked.lock().unwrap().insert(request.path.clone()) {
                    response.status = 404;
                    response.body = br#"{"error":"no such block"}"#.to_vec();
                }
            })),
        );
    }
    let blocks = s.client.verified_blocks(height).await.unwrap();
    assert_eq!(blocks.len() as u64, height);
    assert_eq!(blocks.last().unwrap().header.height, height);
    // With every node lying or silent, nothing is accepted.
    for node in &s.consortium.urls[3..] {
        s.client.transport().set(node, Behaviour::Drop);
    }
    match s.client.verified_blocks(height).await {
        Err(NetError::Unverified(evidence)) => assert_eq!(evidence.len(), 5),
        other => panic!("blocks from lying nodes only must be refused: {other:?}"),
    }
    s.consortium.stop().await.unwrap();
}
