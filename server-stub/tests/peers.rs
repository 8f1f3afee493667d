//! Peers (issue #10, point 12): a node checks its peers' genesis, says in /v1/health when it
//! has another genesis than its peers, when it has no live peer, and logs what it does with
//! its peers (unreachable, back, another genesis).

use emrshare_node::testkit;

use std::time::Duration;
use testkit::{Node, Provisioned, edit_config, health, height, wait_until};

fn status(port: u16) -> String {
    health(port)
        .and_then(|h| h["status"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn health_reports_dead_peers_and_another_genesis_and_the_log_says_so() {
    let a = Provisioned::init(2, "peer-chain");
    let a0 = a.start(0);

    // Alone: its only peer never answers.
    wait_until(Duration::from_secs(15), "node:0 not syncing", || {
        status(a.port(0)) == "not syncing"
    });
    let a1 = a.start(1);
    wait_until(Duration::from_secs(15), "both ok, a block", || {
        status(a.port(0)) == "ok" && status(a.port(1)) == "ok" && height(a.port(0)) >= 1
    });
    let ours = health(a.port(0)).unwrap();
    assert_eq!(ours["chain_id"], "peer-chain");
    let genesis_hash = ours["genesis_hash"].as_str().unwrap().to_owned();
    assert_eq!(genesis_hash.len(), 64);
    assert_eq!(
        health(a.port(1)).unwrap()["genesis_hash"],
        genesis_hash.as_str()
    );
    let log = a0.log();
    assert!(
        log.lines()
            .any(|l| l.contains("node:1") && l.contains("unreachable")),
        "{log}"
    );

    // A node of another consortium (same chain ID, another genesis) with an empty data dir,
    // whose peers are A's nodes.
    let b = Provisioned::init(2, "peer-chain");
    let peers: Vec<toml::Value> = (0..2)
        .map(|i| {
            let mut peer = toml::Table::new();
            peer.insert("id".into(), format!("node:{i}").into());
            peer.insert(
                "url".into(),
                format!("http://127.0.0.1:{}", a.port(i)).into(),
            );
            // Its consensus talks to A's too: A's nodes refuse its votes (not A's
            // validators), and it refuses A's blocks (another chain).
            peer.insert(
                "p2p".into(),
                format!("/ip4/127.0.0.1/tcp/{}", a.port(i) + 2).into(),
            );
            peer.into()
        })
        .collect();
    edit_config(&b.config(0), |t| {
        t.insert("peers".into(), peers.into());
    });
    let b0 = Node::start(&b.config(0), &b.node_dir(0).join("node.log"), None);
    wait_until(Duration::from_secs(15), "genesis mismatch", || {
        status(b.port(0)) == "genesis mismatch"
    });
    let theirs = health(b.port(0)).unwrap();
    assert_eq!(theirs["chain_id"], "peer-chain");
    assert_ne!(theirs["genesis_hash"], genesis_hash.as_str());
    // It stays that way, never takes A's blocks (over HTTP or consensus sync), and logs each
    // peer once.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(status(b.port(0)), "genesis mismatch");
    assert_eq!(height(b.port(0)), 0);
    assert!(height(a.port(0)) >= 3);
    let log = b0.log();
    let mismatches: Vec<&str> = log.lines().filter(|l| l.contains("genesis")).collect();
    assert_eq!(mismatches.len(), 2, "{log}");
    for i in 0..2 {
        assert!(
            mismatches
                .iter()
                .any(|l| l.contains(&format!("127.0.0.1:{}", a.port(i)))),
            "{log}"
        );
    }
    // A's nodes are not disturbed.
    assert_eq!(status(a.port(0)), "ok");
    assert_eq!(status(a.port(1)), "ok");
    drop((a0, a1, b0));
}
