//! Malachite consensus through our context, codec and host loop, with four validators in
//! one process on 127.0.0.1 over a minimal ledger (blocks that chain by hash): every node
//! decides the same blocks, every decision's certificate verifies with core's light-client
//! rule (more than 2/3 of the power), and with one validator of four stopped the others go on.

use emrshare_core::keys::{PartyId, SigningKey};
use emrshare_core::ledger::bft::{
    ConsensusSet, DecisionCertificate, PoweredValidator, VerifiedSet,
};
use emrshare_core::ledger::merkle::Hash;
use emrshare_node::bft::engine::{EngineSettings, Running, start};
use emrshare_node::bft::host::{Checked, HostLimits, Ledger};
use emrshare_node::testkit::free_ports;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHAIN: &str = "bft-engine-test";

type Decided = Arc<Mutex<Vec<(Hash, Vec<u8>, DecisionCertificate)>>>;

/// Blocks are `{"header": {height, previous, round, proposer}}`; a header's hash is SHA-256
/// of its JSON. A block is valid when it extends the last decided one.
struct ChainOfHashes {
    set: ConsensusSet,
    decided: Decided,
}

fn header_hash(block: &[u8]) -> Option<(Hash, serde_json::Value)> {
    let value: serde_json::Value = serde_json::from_slice(block).ok()?;
    let header = value.get("header")?.clone();
    Some((
        emrshare_core::content_hash(&serde_json::to_vec(&header).ok()?),
        header,
    ))
}

impl ChainOfHashes {
    fn head(&self) -> (u64, Hash) {
        let decided = self.decided.lock().unwrap();
        (
            decided.len() as u64,
            decided.last().map_or(Hash::new([0; 32]), |d| d.0),
        )
    }
}

#[async_trait::async_trait]
impl Ledger for ChainOfHashes {
    async fn decided_height(&self) -> u64 {
        self.head().0
    }

    async fn validator_set(&self, height: u64) -> Option<VerifiedSet> {
        (height <= self.head().0 + 1).then(|| self.set.clone().verified().unwrap())
    }

    async fn build(&mut self, round: u32, proposer: &PartyId) -> anyhow::Result<(Hash, Vec<u8>)> {
        let (height, previous) = self.head();
        let block = serde_json::to_vec(&json!({"header": {
            "height": height + 1, "previous": hex(&previous), "round": round,
            "proposer": proposer.as_str(),
        }}))?;
        Ok((header_hash(&block).unwrap().0, block))
    }

    async fn check(&self, _proposer: &PartyId, block: &[u8]) -> Checked {
        let Some((hash, header)) = header_hash(block) else {
            return Checked::Unreadable("not a block".into());
        };
        let (height, previous) = self.head();
        if header["height"] == json!(height + 1) && header["previous"] == json!(hex(&previous)) {
            Checked::Valid(hash)
        } else {
            Checked::Invalid(hash, "does not extend the chain".into())
        }
    }

    async fn block_hash(&self, block: &[u8]) -> Option<Hash> {
        header_hash(block).map(|(hash, _)| hash)
    }

    async fn commit(
        &mut self,
        block: &[u8],
        certificate: DecisionCertificate,
    ) -> anyhow::Result<()> {
        let (hash, _) = header_hash(block).ok_or_else(|| anyhow::anyhow!("not a block"))?;
        self.decided
            .lock()
            .unwrap()
            .push((hash, block.to_vec(), certificate));
        Ok(())
    }

    async fn decided(&self, height: u64) -> Option<(Vec<u8>, DecisionCertificate)> {
        let decided = self.decided.lock().unwrap();
        let (_, block, cert) = decided.get(usize::try_from(height).ok()?.checked_sub(1)?)?;
        Some((block.clone(), cert.clone()))
    }
}

fn hex(hash: &Hash) -> String {
    hash.to_hex()
}

struct Network {
    _homes: Vec<tempfile::TempDir>,
    nodes: Vec<Option<Running>>,
    decided: Vec<Decided>,
    set: VerifiedSet,
}

async fn start_network(n: usize) -> Network {
    let keys: Vec<Arc<SigningKey>> = (0..n).map(|_| Arc::new(SigningKey::generate())).collect();
    let set = ConsensusSet {
        validators: keys
            .iter()
            .enumerate()
            .map(|(i, key)| PoweredValidator {
                id: PartyId::new(format!("node:{i}")).unwrap(),
                signing_jwk: key.verifying_key().to_jwk(None),
                power: 1,
            })
            .collect(),
        proposers: n,
    };
    let base = free_ports(n as u16);
    let addr = |i: usize| format!("/ip4/127.0.0.1/tcp/{}", base as usize + i);
    let mut network = Network {
        _homes: vec![],
        nodes: vec![],
        decided: vec![],
        set: set.clone().verified().unwrap(),
    };
    for (i, key) in keys.iter().enumerate() {
        let home = tempfile::tempdir().unwrap();
        let settings = EngineSettings {
            chain_id: CHAIN.into(),
            id: PartyId::new(format!("node:{i}")).unwrap(),
            home: home.path().to_owned(),
            listen: addr(i),
            peers: (0..n).filter(|&j| j != i).map(addr).collect(),
            timeouts: (
                Duration::from_millis(1_000),
                Duration::from_millis(500),
                Duration::from_millis(500),
            ),
            limits: HostLimits {
                block_interval: Duration::from_millis(100),
                ..HostLimits::default()
            },
        };
        let decided = Decided::default();
        let ledger = ChainOfHashes {
            set: set.clone(),
            decided: decided.clone(),
        };
        network
            .nodes
            .push(Some(start(&settings, key.clone(), ledger).await.unwrap()));
        network.decided.push(decided);
        network._homes.push(home);
    }
    network
}

impl Network {
    fn height(&self, i: usize) -> usize {
        self.decided[i].lock().unwrap().len()
    }

    async fn wait_all(&self, nodes: &[usize], height: usize, limit: Duration) {
        let start = Instant::now();
        while nodes.iter().any(|&i| self.height(i) < height) {
            let heights: Vec<_> = nodes.iter().map(|&i| self.height(i)).collect();
            assert!(
                start.elapsed() < limit,
                "after {limit:?} the nodes are at heights {heights:?}, not {height}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every node's blocks agree at every height both have, and every certificate proves its
    /// block under core's rule.
    fn check_agreement(&self) {
        for i in 0..self.decided.len() {
            let mine = self.decided[i].lock().unwrap().clone();
            for (h, (hash, _, cert)) in mine.iter().enumerate() {
                assert_eq!(cert.height, h as u64 + 1);
                assert_eq!(&cert.value, hash, "node {i} height {}", h + 1);
                let power = cert.verify(CHAIN, &self.set).unwrap();
                assert!(3 * power > 2 * self.set.total_power());
                for j in 0..i {
                    if let Some((other, _, _)) = self.decided[j].lock().unwrap().get(h) {
                        assert_eq!(other, hash, "nodes {j} and {i} differ at height {}", h + 1);
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_validators_decide_the_same_certified_blocks_and_survive_one_stopped() {
    let mut network = start_network(4).await;
    network
        .wait_all(&[0, 1, 2, 3], 5, Duration::from_secs(60))
        .await;
    network.check_agreement();

    // One of four stopped (f = 1): the other three still hold more than 2/3 of the power.
    let stopped = network.nodes[3].take().unwrap();
    stopped.stop().await;
    let at = network.height(0);
    network
        .wait_all(&[0, 1, 2], at + 4, Duration::from_secs(60))
        .await;
    network.check_agreement();

    // Two of four stopped: no decision can be made, and none is.
    let second = network.nodes[2].take().unwrap();
    second.stop().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let frozen = (network.height(0), network.height(1));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        (network.height(0), network.height(1)),
        frozen,
        "decided without a quorum"
    );
    network.check_agreement();
    for node in network.nodes.iter_mut().filter_map(Option::take) {
        node.stop().await;
    }
}
