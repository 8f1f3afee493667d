//! An equivocating proposer (node 0, in a build with the test-only `equivocate` feature)
//! sends each auditor its own version of its block. The auditors lock on different headers,
//! so that height stalls until the next proposer proves the split (release proof), reports
//! the two signed headers as Misbehaviour evidence, and finishes the height at round 1. The
//! penalty drops node 0 below the eligibility threshold, so the next cycle's validator set
//! leaves it out. Never two certified blocks at one height; every chain verifies.
//!
//! Run with `cargo test -p emrshare-node --features equivocate --test equivocation`.

use emrshare_node::testkit as common;

use common::*;
use emrshare_core::keys::SigningKey;
use emrshare_core::ledger::block::{CertifiedBlock, ValidatorSet};
use emrshare_core::ledger::dpos::{ELIGIBLE_CREDIT, Member};
use emrshare_core::ledger::tx::{SignedTransaction, TxBody};
use serde_json::{Value, json};
use std::time::Duration;

fn validators(c: &Consortium, i: usize) -> Option<(ValidatorSet, Vec<Member>)> {
    let v = c.get(i, "/v1/validators")?;
    Some((
        serde_json::from_value(v["current"].clone()).ok()?,
        serde_json::from_value(v["members"].clone()).ok()?,
    ))
}

fn excludes_node_0(set: &ValidatorSet) -> bool {
    set.proposer_ids().all(|p| p.as_str() != "node:0")
        && set.auditors().iter().all(|a| a.id.as_str() != "node:0")
}

#[test]
fn an_equivocating_proposer_yields_evidence_a_penalty_and_no_fork() {
    let c = Consortium::start_with(Some(0));

    // The evidence commits, the penalty applies, and the next cycle leaves node 0 out.
    c.wait_until(Duration::from_secs(60), |c| {
        validators(c, 1).is_some_and(|(set, members)| {
            excludes_node_0(&set)
                && members
                    .iter()
                    .any(|m| m.id.as_str() == "node:0" && m.credit < ELIGIBLE_CREDIT)
        })
    });

    // The chain goes on without it: a registration commits on every node.
    let key = SigningKey::generate();
    let (status, reply) = c.post(
        2,
        "/v1/tx",
        json!({"jws": registration(&c, "hospital:after", &key)})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 202, "{reply}");
    c.wait_until(Duration::from_secs(30), |c| {
        (1..NODES).all(|i| verified_lookup(c, i, "hospital:after") == Some(true))
    });

    // The Misbehaviour transaction is in the chain, accusing node 0 with two signed headers.
    let height = c.height(1);
    let evidence: Vec<Value> = (1..=height)
        .filter_map(|h| c.get(1, &format!("/v1/blocks/{h}")))
        .filter_map(|b| serde_json::from_value::<CertifiedBlock>(b).ok())
        .flat_map(|b| b.txs)
        .filter_map(|jws| SignedTransaction::parse(&jws).ok())
        .filter_map(|tx| match &tx.transaction().body {
            TxBody::Misbehaviour { accused, evidence } => {
                Some(json!({"accused": accused.as_str(), "n": evidence.len()}))
            }
            _ => None,
        })
        .collect();
    assert!(
        evidence
            .iter()
            .any(|e| e["accused"] == "node:0" && e["n"] == 2),
        "no evidence against node:0 in {height} blocks: {evidence:?}"
    );

    // Some height needed a round above 0: the split was released on proof.
    let rounds: Vec<u64> = (1..=height)
        .filter_map(|h| c.get(1, &format!("/v1/blocks/{h}")))
        .filter_map(|b| b["header"]["round"].as_u64())
        .collect();
    assert!(rounds.iter().any(|&r| r > 0), "no released round");

    // No fork: every node holds the same header at every height they share, and every
    // chain verifies from genesis, following the change of validator set.
    let common = (0..NODES).map(|i| c.height(i)).min().unwrap();
    for h in 1..=common {
        let headers: Vec<Value> = (0..NODES)
            .map(|i| c.get(i, &format!("/v1/blocks/{h}")).unwrap()["header"].clone())
            .collect();
        assert!(
            headers.windows(2).all(|w| w[0] == w[1]),
            "nodes disagree at height {h}"
        );
    }
    for i in 0..NODES {
        verify_chain(&c, i);
    }
}
