//! The client across a change of validator set, against node processes: the chain re-ranks
//! its validators each cycle by credit, so a validator that sleeps through its rounds moves
//! down and the set that certifies headers changes. A phone that last trusted the old set
//! must follow the change (each transition checked under the set before it) on every proven
//! read, not only on lookups; before, every such read failed as "untrusted answers" from
//! every node.

use emrshare_client::{ClientConfig, HttpTransport, NodeClient, TlsTrust};
use emrshare_core::keys::{PartyId, SigningKey};
use emrshare_node::testkit::{Consortium, NODES, registration, submit, verified_lookup};
use std::time::Duration;

#[test]
fn proven_reads_follow_a_change_of_validator_set() {
    let c = Consortium::start();
    let id = "hospital:across-sets";
    submit(&c, 1, &registration(&c, id, &SigningKey::generate()));
    c.wait_until(Duration::from_secs(30), |c| {
        (0..NODES).all(|i| verified_lookup(c, i, id) == Some(true))
    });
    // The phone asks the nodes that stay awake (node 0, woken, syncs in its own time).
    let urls: Vec<String> = (1..NODES).map(|i| c.url(i, "")).collect();
    let client = NodeClient::new(
        ClientConfig::new(urls, c.genesis()),
        HttpTransport::new(TlsTrust::PlainHttpOnly, Duration::from_secs(5)).unwrap(),
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let party = PartyId::new(id).unwrap();
    let before = runtime.block_on(client.registry_entry(&party)).unwrap();
    assert!(before.is_some());

    // Proposer 0 sleeps through its rounds until the chain has re-ranked the set.
    c.pause(0);
    c.wait_until(Duration::from_secs(120), |c| {
        c.get(1, "/v1/validators")
            .and_then(|v| v["transitions"].as_array().map(|t| !t.is_empty()))
            .unwrap_or(false)
    });
    c.resume(0);
    let genesis_set = c.genesis().validators.hash().to_string();
    c.wait_until(Duration::from_secs(60), |c| {
        (1..NODES).all(|i| {
            c.get(i, "/v1/header/latest")
                .is_some_and(|h| h["header"]["validators_hash"] != genesis_set.as_str())
        })
    });

    let after = runtime
        .block_on(client.registry_entry(&party))
        .unwrap_or_else(|e| panic!("a read under the new set: {e}"));
    assert!(after.is_some());
    let header = runtime.block_on(client.latest_header()).unwrap();
    assert_ne!(
        header.header.validators_hash,
        c.genesis().validators.hash(),
        "the client now trusts headers of the re-ranked set"
    );
}
