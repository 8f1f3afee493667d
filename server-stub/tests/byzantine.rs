//! A Byzantine validator, made the way double-signing happens in practice: a second copy of
//! validator node:0 runs with the same consensus key (its own store and its own peer
//! identity, a test-only switch of the `testkit` build). At node:0's turns to propose, the two
//! copies propose different blocks and prevote for their own, both under node:0's key. Its
//! power is 2 of 8, under a third: the chain must not fork, the other members' watches must
//! turn what they saw into Misbehaviour transactions, node:0's credit must fall under the
//! threshold, the next cycle must evict it, and every chain must verify from genesis through
//! that change of set.

use emrshare_core::keys::SigningKey;
use emrshare_core::ledger::bft::Evidence;
use emrshare_core::ledger::dpos;
use emrshare_core::ledger::tx::{SignedTransaction, TxBody};
use emrshare_core::ledger::wire::ValidatorsAnswer;
use emrshare_node::testkit::*;
use serde_json::Value;
use std::time::Duration;

fn validators(c: &Consortium, i: usize) -> Option<ValidatorsAnswer> {
    serde_json::from_value(c.get(i, "/v1/validators")?).ok()
}

/// The accused and the evidence of every Misbehaviour transaction in node `i`'s blocks.
fn misbehaviour(c: &Consortium, i: usize) -> Vec<(String, Evidence)> {
    let mut found = Vec::new();
    for height in 1..=c.height(i) {
        let block = c.get(i, &format!("/v1/blocks/{height}")).unwrap();
        for jws in block["txs"].as_array().unwrap() {
            let tx = SignedTransaction::parse(jws.as_str().unwrap()).unwrap();
            if let TxBody::Misbehaviour { accused, evidence } = &tx.transaction().body {
                let evidence = emrshare_core::strict_json::parse(evidence[0].as_bytes()).unwrap();
                found.push((accused.to_string(), evidence));
            }
        }
    }
    found
}

/// Keeps the nodes' logs of a failed run (the consortium's folder goes with it).
fn dump_logs(c: &Consortium) {
    for i in 0..NODES {
        let _ = std::fs::copy(
            c.dir.path().join(format!("node-{i}.log")),
            std::env::temp_dir().join(format!("byzantine-node-{i}.log")),
        );
    }
}

fn header_at(port: u16, height: u64) -> Option<Value> {
    get(port, &format!("/v1/blocks/{height}")).map(|(_, block)| block["header"].clone())
}

#[test]
fn a_validator_that_signs_twice_is_proven_penalised_and_evicted_without_a_fork() {
    let c = Consortium::start();
    let twin_dir = c.dir.path().join("node-0-twin");
    std::fs::create_dir_all(&twin_dir).unwrap();
    std::fs::copy(
        c.dir.path().join("node-0/node.key.json"),
        twin_dir.join("node.key.json"),
    )
    .unwrap();
    std::fs::copy(
        c.dir.path().join("node-0/record-voucher.pk8"),
        twin_dir.join("record-voucher.pk8"),
    )
    .unwrap();
    std::fs::copy(c.config(0), twin_dir.join("config.toml")).unwrap();
    let twin_port = free_ports(2);
    edit_config(&twin_dir.join("config.toml"), |t| {
        t.insert("listen".into(), format!("127.0.0.1:{twin_port}").into());
        t.insert(
            "p2p_listen".into(),
            format!("/ip4/127.0.0.1/tcp/{}", twin_port + 1).into(),
        );
    });
    // A Byzantine copy may trip over its own double (Malachite stops a node whose own
    // decision it judged invalid): like an operator bent on it, the test relaunches it, fresh.
    let start_twin = || {
        let _ = std::fs::remove_dir_all(twin_dir.join("data"));
        Node::start_with_env(
            &twin_dir.join("config.toml"),
            &twin_dir.join("node.log"),
            None,
            &[("EMRSHARE_TEST_TWIN", "1")],
        )
    };
    let mut twin = start_twin();
    let mut twin_progress = (0, std::time::Instant::now());

    // Writes keep the mempools (and so the two copies' blocks) busy.
    let mut written = 0;
    let mut write = |c: &Consortium| {
        let id = format!("hospital:b{written}");
        written += 1;
        let _ = c.post(
            1 + written % 4,
            "/v1/tx",
            serde_json::json!({ "jws": registration(c, &id, &SigningKey::generate()) })
                .to_string()
                .as_bytes(),
        );
    };

    // Evidence is committed and node:0's credit falls under the threshold.
    let started = std::time::Instant::now();
    while !validators(&c, 1).is_some_and(|v| {
        v.members
            .iter()
            .any(|m| m.id.as_str() == "node:0" && m.credit < dpos::ELIGIBLE_CREDIT)
    }) {
        if started.elapsed() > Duration::from_secs(90) {
            let tail = |log: std::path::PathBuf| {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.contains("SYNC REQUIRED") && !l.contains("Received vote"))
                    .collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            };
            let _ = std::fs::copy(twin_dir.join("node.log"), "/tmp/byz-twin.log");
            let _ = std::fs::copy(c.dir.path().join("node-1.log"), "/tmp/byz-node1.log");
            panic!(
                "no evidence within 90 s; twin:\n{}\nnode 1:\n{}",
                tail(twin_dir.join("node.log")),
                tail(c.dir.path().join("node-1.log"))
            );
        }
        write(&c);
        let twin_height = height(twin_port);
        if twin_height > twin_progress.0 {
            twin_progress = (twin_height, std::time::Instant::now());
        } else if twin_progress.1.elapsed() > Duration::from_secs(5) {
            drop(twin);
            twin = start_twin();
            twin_progress = (0, std::time::Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let evidence = misbehaviour(&c, 1);
    assert!(!evidence.is_empty());
    eprintln!(
        "evidence committed: {:?}",
        evidence
            .iter()
            .map(|(_, e)| match e {
                Evidence::DoubleVote(a, _) =>
                    format!("double {:?} at {}", a.message.kind, a.message.height),
                Evidence::DoubleProposal(a, _) =>
                    format!("double proposal at {}", a.message.height),
            })
            .collect::<Vec<_>>()
    );
    let genesis = c.genesis();
    let set = genesis.validators.consensus_set().verified().unwrap();
    for (accused, proof) in &evidence {
        assert_eq!(accused, "node:0", "only node:0 signed twice");
        // Anyone can check it: both messages verify under node:0's key in genesis.
        assert_eq!(
            proof.verify(&genesis.chain_id, &set).unwrap().as_str(),
            "node:0"
        );
    }

    // The next cycle leaves it out; the chain goes on without it.
    let started = std::time::Instant::now();
    while validators(&c, 1).is_none_or(|v| {
        v.current
            .consensus_set()
            .validators
            .iter()
            .any(|m| m.id.as_str() == "node:0")
    }) {
        if started.elapsed() > Duration::from_secs(30) {
            dump_logs(&c);
            panic!(
                "node:0 not evicted: heights {:?}, validators {:?}",
                (0..NODES).map(|i| c.height(i)).collect::<Vec<_>>(),
                validators(&c, 1).map(|v| (v.current, v.members))
            );
        }
        write(&c);
        std::thread::sleep(Duration::from_millis(100));
    }
    let evicted_at = validators(&c, 1).unwrap().height;
    let after = registration(&c, "hospital:after-eviction", &SigningKey::generate());
    submit(&c, 2, &after);
    let started = std::time::Instant::now();
    while !(1..NODES).all(|i| verified_lookup(&c, i, "hospital:after-eviction") == Some(true)) {
        if started.elapsed() > Duration::from_secs(30) {
            dump_logs(&c);
            panic!(
                "a write after the eviction did not commit: heights {:?}, evicted at {evicted_at}",
                (0..NODES).map(|i| c.height(i)).collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(c.height(1) > evicted_at);

    // No fork: every node, node:0 and its twin included, holds the same block at every height
    // both have.
    let ports: Vec<u16> = (0..NODES as u16)
        .map(|i| c.base_port + i)
        .chain([twin_port])
        .collect();
    let top = c.height(1);
    for height in 1..=top {
        let reference = header_at(ports[1], height).unwrap();
        for &port in &ports {
            if let Some(header) = header_at(port, height) {
                assert_eq!(
                    header, reference,
                    "two blocks at height {height} (port {port})"
                );
            }
        }
    }
    // Every honest node's chain verifies from genesis through the change of set.
    for i in 1..NODES {
        assert!(!transitions(&c, i).is_empty());
        verify_chain(&c, i);
    }
    drop(twin);
}
