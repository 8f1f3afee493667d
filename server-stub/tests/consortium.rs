//! A 5-node consortium (3 proposers of voting power 2, 2 auditors of power 1, Tendermint on
//! Malachite) as real processes on 127.0.0.1: transactions submitted to any node commit on
//! all; answers verify under the thin-client rules from genesis alone (following changes of
//! validator set); a killed proposer costs rounds, not the chain; a killed and restarted node
//! syncs; proposers and auditors killed in turn during writes lose no acknowledged
//! transaction; bad requests get JSON 4xx.

use emrshare_node::testkit;
use emrshare_node::testkit::now_s;

use emrshare_core::keys::{PartyId, SigningKey};
use emrshare_core::ledger::tx::{Role, Transaction, TxBody};
use serde_json::{Value, json};
use std::time::Duration;
use testkit::*;

#[test]
fn consortium_commits_everywhere_survives_a_killed_proposer_and_catches_up() {
    let mut c = Consortium::start();

    // Submitted to an auditor (not a proposer): relayed, committed, visible on every node.
    let a = SigningKey::generate();
    let admission_a = registration(&c, "hospital:a", &a);
    submit(&c, 4, &admission_a);
    c.wait_until(Duration::from_secs(20), |c| {
        (0..NODES).all(|i| verified_lookup(c, i, "hospital:a") == Some(true))
    });
    assert_eq!(verified_lookup(&c, 2, "hospital:nobody"), Some(false));

    // All nodes hold the same chain.
    let common = (0..NODES).map(|i| c.height(i)).min().unwrap();
    let hashes: Vec<Value> = (0..NODES)
        .map(|i| c.get(i, &format!("/v1/blocks/{common}")).unwrap()["header"].clone())
        .collect();
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "nodes disagree at height {common}"
    );

    // Kill proposer 0 with SIGKILL: its rounds time out, the other proposers go on.
    c.kill(0);
    let b = SigningKey::generate();
    submit(&c, 3, &registration(&c, "hospital:b", &b));
    c.wait_until(Duration::from_secs(20), |c| {
        (1..NODES).all(|i| verified_lookup(c, i, "hospital:b") == Some(true))
    });

    // Restart it: it replays its store and syncs from its peers.
    c.spawn(0);
    let target = c.height(1);
    c.wait_until(Duration::from_secs(20), |c| c.height(0) >= target);
    assert_eq!(verified_lookup(&c, 0, "hospital:b"), Some(true));

    // Replaying an acknowledged transaction is refused.
    let (status, reply) = c.post(
        1,
        "/v1/tx",
        json!({"jws": admission_a}).to_string().as_bytes(),
    );
    assert_eq!(status, 409, "{reply}");

    // Blocks verify as a chain: each links to the previous and carries a valid certificate.
    verify_chain(&c, 2);
}

#[test]
fn bad_requests_get_json_errors() {
    let c = Consortium::start();
    let cases: [(&str, &[u8], u16); 7] = [
        ("/v1/tx", b"not json", 400),
        ("/v1/tx", br#"{"jws":"a.b.c"}"#, 400),
        ("/v1/tx", br#"{"jws":"x","jws":"y"}"#, 400),
        ("/v1/tx", br#"{"jws":"x","extra":1}"#, 400),
        ("/v1/registry/lookup", br#"{"ids":[]}"#, 400),
        ("/v1/registry/lookup", br#"{"ids":["bad id"]}"#, 400),
        // A consortium route: a member's token first, before the body is read.
        ("/v1/consensus/txs", br#"{"txs":1}"#, 401),
    ];
    for (path, body, want) in cases {
        let (status, reply) = c.post(1, path, body);
        assert_eq!(status, want, "{path} {}", String::from_utf8_lossy(body));
        assert!(reply["error"].is_string(), "{path}: {reply}");
    }
    let (status, _) = c.post(1, "/v1/tx", &vec![b'a'; 300 * 1024]);
    assert_eq!(status, 413);
    assert_eq!(
        c.http
            .get(c.url(1, "/v1/nowhere"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        c.http
            .get(c.url(1, "/v1/blocks/x"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        400
    );
    assert_eq!(
        c.http
            .get(c.url(1, "/v1/directory/wizard"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        400
    );
    assert!(c.get(1, "/v1/openapi.json").unwrap()["paths"]["/v1/tx"].is_object());
}

/// Proposers (nodes 0-2) and auditors (3, 4) are killed with SIGKILL in turn while writes go
/// to every node: one validator down at a time leaves 7 or 6 of 8 of the power online (more
/// than 2/3), so the chain goes on, and the restarted node replays its store and its
/// consensus log and syncs.
#[test]
fn kill_9_during_writes_loses_no_acknowledged_transaction() {
    let mut c = Consortium::start();
    let mut acknowledged = Vec::new();
    let mut n = 0;
    for victim in [0, 3, 1, 4, 2, 3, 0, 4] {
        // Writes to every node, then SIGKILL one.
        for target in 0..NODES {
            let id = format!("hospital:k{n}");
            n += 1;
            let jws = registration(&c, &id, &SigningKey::generate());
            let Ok(reply) = c
                .http
                .post(c.url(target, "/v1/tx"))
                .json(&json!({"jws": jws}))
                .send()
            else {
                continue;
            };
            if reply.status().as_u16() == 202 {
                acknowledged.push(id);
            }
        }
        c.kill(victim);
        std::thread::sleep(Duration::from_millis(200));
        c.spawn(victim);
        c.wait_until(Duration::from_secs(20), |c| {
            c.get(victim, "/v1/health").is_some()
        });
    }
    assert!(
        acknowledged.len() >= 20,
        "only {} writes acknowledged",
        acknowledged.len()
    );
    c.wait_until(Duration::from_secs(60), |c| {
        (0..NODES).all(|i| {
            // The whole directory of hospitals: the bucket of the empty prefix.
            let ids: Vec<String> = c
                .get(i, "/v1/directory/hospital/bucket")
                .and_then(|d| d["entries"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|e| e["id"].as_str().map(str::to_owned))
                .collect();
            acknowledged
                .iter()
                .all(|id| ids.iter().any(|x| x == id.as_str()))
        })
    });
    // And every node's chain verifies from genesis.
    for i in 0..NODES {
        verify_chain(&c, i);
    }
}

/// The fault model is f < n/3 of the voting power (proposers 2 each, auditors 1: 8 in all).
/// SIGSTOP one proposer (2 of 8) for longer than several rounds: the others go on deciding,
/// and once resumed it catches up. SIGSTOP two proposers (4 of 8, more than a third): no
/// block is decided while they sleep, an acknowledged transaction waits, and once they resume
/// the chain goes on with it; every node holds the same chain, and each verifies from genesis.
#[test]
fn stopping_under_a_third_of_the_power_slows_nothing_and_over_a_third_halts_safely() {
    let c = Consortium::start();
    fn awake(stopped: &[usize]) -> impl Iterator<Item = usize> + '_ {
        (0..NODES).filter(move |i| !stopped.contains(i))
    }
    c.wait_until(Duration::from_secs(20), |c| {
        (0..NODES).all(|i| c.height(i) >= 2)
    });

    // f: proposer 0 stopped for 8 s (its rounds time out, the next proposer decides).
    c.pause(0);
    let before = awake(&[0]).map(|i| c.height(i)).max().unwrap();
    submit(
        &c,
        3,
        &registration(&c, "hospital:while-f-sleeps", &SigningKey::generate()),
    );
    c.wait_until(Duration::from_secs(20), |c| {
        awake(&[0]).all(|i| verified_lookup(c, i, "hospital:while-f-sleeps") == Some(true))
    });
    std::thread::sleep(Duration::from_secs(8));
    let during = awake(&[0]).map(|i| c.height(i)).min().unwrap();
    assert!(
        during >= before + 3,
        "with 6 of 8 of the power awake the chain must go on: {before} -> {during}"
    );
    c.resume(0);
    c.wait_until(Duration::from_secs(30), |c| c.height(0) >= during);
    assert_eq!(
        verified_lookup(&c, 0, "hospital:while-f-sleeps"),
        Some(true)
    );

    // More than f: proposers 1 and 2 stopped (4 of 8 awake, not more than 2/3).
    c.pause(1);
    c.pause(2);
    // A block already past its precommits when they stopped may still be applied.
    std::thread::sleep(Duration::from_secs(2));
    let halted: Vec<u64> = awake(&[1, 2]).map(|i| c.height(i)).collect();
    let waiting = registration(&c, "hospital:while-more-sleep", &SigningKey::generate());
    submit(&c, 3, &waiting);
    std::thread::sleep(Duration::from_secs(8));
    let still: Vec<u64> = awake(&[1, 2]).map(|i| c.height(i)).collect();
    // An awake node that lagged may still sync blocks decided before the stop; the tip must
    // not move.
    let tip = halted.iter().max().copied();
    assert_eq!(
        tip,
        still.iter().max().copied(),
        "no block may be decided without more than 2/3 of the power: {halted:?} -> {still:?}"
    );
    assert!(
        awake(&[1, 2]).all(|i| verified_lookup(&c, i, "hospital:while-more-sleep") == Some(false)),
        "the waiting transaction must not be committed"
    );
    c.resume(1);
    c.resume(2);
    c.wait_until(Duration::from_secs(60), |c| {
        (0..NODES).all(|i| verified_lookup(c, i, "hospital:while-more-sleep") == Some(true))
    });

    // One chain: every node's blocks verify from genesis and agree at every common height.
    let common = (0..NODES).map(|i| c.height(i)).min().unwrap();
    for height in 1..=common {
        let headers: Vec<Value> = (0..NODES)
            .map(|i| c.get(i, &format!("/v1/blocks/{height}")).unwrap()["header"].clone())
            .collect();
        assert!(
            headers.windows(2).all(|w| w[0] == w[1]),
            "nodes disagree at height {height}"
        );
    }
    for i in 0..NODES {
        verify_chain(&c, i);
    }
}

/// DESIGN story 3 at the node, on the private ledger: a registered patient gets a node's
/// record voucher and opens a record's account; the account stores a ciphertext and grants
/// a capability; the grant's key fetches, and its sealed access log lands on chain under the
/// record; the account revokes; further fetches fail. Nobody else stores or reads.
#[test]
fn blobs_are_served_only_under_a_live_grant_and_every_fetch_is_logged() {
    use emrshare_core::PrivateKeySet;
    use emrshare_core::keys::RsaBits;
    use emrshare_core::keys::txkeys::MasterSecret;
    use emrshare_core::ledger::tx::{Action, SignedTransaction};
    use emrshare_core::record_account::{GrantCapability, request_record_voucher};
    let c = Consortium::start();
    let chain = "test-chain";
    let mut patient = PrivateKeySet::generate(None, RsaBits::B2048);
    patient.id = PartyId::new(patient.signing.verifying_key().thumbprint()).unwrap();
    let insurer =
        PrivateKeySet::generate(Some(PartyId::new("insurer:acme").unwrap()), RsaBits::B2048);
    submit(
        &c,
        0,
        &registration_as(&c, patient.id.as_str(), &patient.signing, Role::Patient),
    );
    submit(
        &c,
        1,
        &registration_as(&c, "insurer:acme", &insurer.signing, Role::Insurer),
    );
    c.wait_until(Duration::from_secs(20), |c| {
        verified_lookup(c, 0, patient.id.as_str()) == Some(true)
            && verified_lookup(c, 0, "insurer:acme") == Some(true)
    });
    // An institution gets no record voucher; the patient does, and opens its record.
    let genesis: emrshare_core::ledger::block::Genesis =
        serde_json::from_slice(&std::fs::read(c.dir.path().join("genesis.json")).unwrap()).unwrap();
    let (_, request) = request_record_voucher(
        (&insurer.id, &insurer.signing),
        chain,
        &genesis.record_voucher_keys,
        &insurer.id,
        now_s(),
    )
    .unwrap();
    let (status, _) = c.post(
        2,
        "/v1/record-vouchers",
        &serde_json::to_vec(&request).unwrap(),
    );
    assert_eq!(status, 403);
    let record = c.open_record(&patient.id, &patient.signing, &MasterSecret::generate(), 0);
    let next = |id: &PartyId| {
        c.get(0, &format!("/v1/sequence/{id}")).unwrap()["next"]
            .as_u64()
            .unwrap()
    };
    c.wait_until(Duration::from_secs(20), |_| next(record.id()) == 1);

    let blob = b"a JWE ciphertext, opaque to the node".to_vec();
    let hash = emrshare_core::content_hash(&blob);
    let put = |body: &[u8], claim: String| {
        c.http
            .put(c.url(0, &format!("/v1/blobs/{hash}")))
            .header("x-emr-owner", claim)
            .body(body.to_vec())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let registered_claim = {
        let payload = json!({"blob": hash, "owner": patient.id.as_str(), "iat": now_s()});
        emrshare_core::jws::sign(
            &patient.signing,
            &emrshare_core::jws::Header::es256("emr-blob+jwt", None),
            &payload,
        )
    };
    assert_eq!(
        put(&blob, registered_claim),
        403,
        "a registered key owns no blob"
    );
    let claim = || record.blob_claim(&hash, now_s());
    assert_eq!(
        put(b"other bytes", claim()),
        400,
        "body must hash to its address"
    );
    assert_eq!(put(&blob, claim().replace('.', ".x")), 401, "forged claim");
    assert_eq!(put(&blob, claim()), 201);

    let fetch = |access: &SignedTransaction| {
        c.http
            .get(c.url(0, &format!("/v1/blobs/{hash}")))
            .header("x-emr-access", access.as_jws())
            .send()
            .unwrap()
    };
    // The insurer, with its registered key and no grant, reads nothing.
    let no_grant = Transaction {
        chain_id: chain.into(),
        sender: insurer.id.clone(),
        sequence: next(&insurer.id),
        body: TxBody::AccessLog {
            grant_id: None,
            grant_jwk: None,
            action: Action::Read,
            at: now_s(),
            details: "sealed".into(),
        },
    }
    .sign(&insurer.signing);
    assert_eq!(fetch(&no_grant).status().as_u16(), 403);

    let (grant_id, grant) = record
        .grant(
            chain,
            next(record.id()),
            (&patient.id, &patient.public().encryption),
            (&insurer.id, &insurer.public().encryption),
            &hash,
            None,
            &["examination".into()],
            &[Action::Read],
            now_s() + 3600,
        )
        .unwrap();
    submit(&c, 0, grant.as_jws());
    let grant_path = format!("/v1/grants/{grant_id}");
    c.wait_until(Duration::from_secs(20), |c| {
        c.get(0, &grant_path)
            .is_some_and(|g| g["grant"]["value"].is_string())
    });
    let entry = c.get(0, &grant_path).unwrap()["grant"]["value"]
        .as_str()
        .map(|v| serde_json::from_str(v).unwrap())
        .unwrap();
    let capability = GrantCapability::open(&insurer, &grant_id, &entry).unwrap();
    let access = capability.access_log(chain, next(capability.key_id()), &hash, now_s());
    let fetched = fetch(&access);
    assert_eq!(fetched.status().as_u16(), 200);
    assert_eq!(fetched.bytes().unwrap().to_vec(), blob);
    // The access log is committed under the record, naming nobody in clear.
    c.wait_until(Duration::from_secs(20), |c| {
        c.get(0, &format!("/v1/records/{}", record.id()))
            .is_some_and(|r| r["logs"].as_array().is_some_and(|l| l.len() == 1))
    });
    let logs = c.get(0, &format!("/v1/records/{}", record.id())).unwrap();
    assert!(!logs.to_string().contains("insurer:acme"));
    // The same log read twice serves nothing more.
    assert_ne!(fetch(&access).status().as_u16(), 200);

    submit(
        &c,
        0,
        record.revoke(chain, next(record.id()), &grant_id).as_jws(),
    );
    c.wait_until(Duration::from_secs(20), |c| {
        c.get(0, &grant_path).is_some_and(|g| {
            g["grant"]["value"]
                .as_str()
                .is_some_and(|v| v.contains("revoked_at"))
        })
    });
    let after = capability.access_log(chain, next(capability.key_id()), &hash, now_s());
    assert_eq!(fetch(&after).status().as_u16(), 403);
    assert_eq!(
        c.http
            .get(c.url(0, &format!("/v1/blobs/{hash}")))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        401
    );
}
