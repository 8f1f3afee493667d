//! The node's chain as the consensus host sees it ([`crate::bft::host::Ledger`]): blocks are
//! built from the mempool under the byte budget, proposals are checked by the chain's rules on
//! a copy of the state, and decided blocks are applied and stored by [`Node::accept_block`]
//! (which also clears the mempool). Starting the engine for a node lives here too.

use crate::bft::engine::{EngineSettings, Running};
use crate::bft::host::{Checked, HostLimits, Ledger};
use crate::chain::{BlockBody, Chain};
use crate::node::{Node, now_ms};
use emrshare_core::keys::PartyId;
use emrshare_core::ledger::bft::{DecisionCertificate, VerifiedSet};
use emrshare_core::ledger::block::CertifiedBlock;
use emrshare_core::ledger::merkle::Hash;
use std::sync::Arc;
use std::time::Duration;

/// The ledger of one node.
pub struct NodeLedger(pub Arc<Node>);

impl NodeLedger {
    /// Parses a block's bytes and judges them with `rule` on the chain as it is now.
    async fn judge(
        &self,
        block: &[u8],
        rule: impl FnOnce(&Chain, &BlockBody) -> Result<(), crate::chain::ChainError>,
    ) -> Checked {
        let block = match parse_block(block) {
            Ok(block) => block,
            Err(e) => return Checked::Unreadable(e),
        };
        let hash = block.header.hash();
        let chain = self.0.chain.lock().await;
        match rule(&chain, &block) {
            Ok(()) => Checked::Valid(hash),
            Err(e) => Checked::Invalid(hash, e.to_string()),
        }
    }
}

fn parse_block(bytes: &[u8]) -> Result<BlockBody, String> {
    emrshare_core::strict_json::parse(bytes).map_err(|e| format!("not a block: {e}"))
}

#[async_trait::async_trait]
impl Ledger for NodeLedger {
    async fn decided_height(&self) -> u64 {
        self.0.chain.lock().await.height()
    }

    async fn validator_set(&self, height: u64) -> Option<VerifiedSet> {
        let set = self.0.chain.lock().await.set_at(height)?;
        set.consensus_set().verified().ok()
    }

    async fn build(&mut self, round: u32, proposer: &PartyId) -> anyhow::Result<(Hash, Vec<u8>)> {
        let chain = self.0.chain.lock().await;
        let limits = &self.0.config.limits;
        let (header, txs) = chain.build(
            proposer,
            round,
            now_ms(),
            &self.0.candidates(),
            limits.max_txs_per_block,
            limits.block_tx_bytes(),
        );
        let hash = header.hash();
        let last_commit = chain.head_certificate();
        Ok((
            hash,
            serde_json::to_vec(&BlockBody {
                header,
                txs,
                last_commit,
            })?,
        ))
    }

    async fn check(&self, _proposer: &PartyId, block: &[u8]) -> Checked {
        let budget = self.0.config.limits.block_tx_bytes();
        self.judge(block, |chain, body| {
            chain.check_proposal(body, now_ms(), budget)
        })
        .await
    }

    async fn check_decided(&self, _proposer: &PartyId, block: &[u8]) -> Checked {
        self.judge(block, Chain::check_decided).await
    }

    async fn block_hash(&self, block: &[u8]) -> Option<Hash> {
        parse_block(block).ok().map(|b| b.header.hash())
    }

    async fn commit(
        &mut self,
        block: &[u8],
        mut certificate: DecisionCertificate,
    ) -> anyhow::Result<()> {
        let body = parse_block(block).map_err(|e| anyhow::anyhow!(e))?;
        {
            // A synced certificate may carry signatures the engine counted as nothing; the
            // stored and served one holds only those a thin client accepts.
            let chain = self.0.chain.lock().await;
            let set = chain
                .set_at(body.header.height)
                .and_then(|s| s.consensus_set().verified().ok())
                .ok_or_else(|| anyhow::anyhow!("no validator set for the decided height"))?;
            certificate.retain_valid(&chain.genesis.chain_id, &set);
        }
        let block = CertifiedBlock {
            header: body.header,
            certificate,
            txs: body.txs,
        };
        self.0.accept_block(&block).await?;
        Ok(())
    }

    async fn decided(&self, height: u64) -> Option<(Vec<u8>, DecisionCertificate)> {
        let block = self.0.store.block(height).ok()??;
        let body = BlockBody {
            header: block.header,
            txs: block.txs,
            last_commit: None,
        };
        Some((serde_json::to_vec(&body).ok()?, block.certificate))
    }
}

/// Starts consensus for `node` on its config's libp2p address and peers, with the genesis
/// timeouts.
pub async fn start(node: Arc<Node>) -> anyhow::Result<Running> {
    let (chain_id, timeouts, block_ms) = {
        let chain = node.chain.lock().await;
        let g = &chain.genesis;
        (g.chain_id.clone(), g.timeouts, g.block_ms)
    };
    let config = &node.config;
    let settings = EngineSettings {
        chain_id,
        id: node.keys.id.clone(),
        home: config.data_dir.join("consensus"),
        listen: config.p2p_listen.clone(),
        peers: config.peers.iter().map(|p| p.p2p.clone()).collect(),
        timeouts: (
            Duration::from_millis(timeouts.propose_ms),
            Duration::from_millis(timeouts.prevote_ms),
            Duration::from_millis(timeouts.precommit_ms),
        ),
        limits: HostLimits {
            block_interval: Duration::from_millis(block_ms),
            max_block_bytes: config.limits.max_block_bytes,
            ..HostLimits::default()
        },
    };
    // The engine holds its own copy of the consensus key.
    let key = Arc::new(emrshare_core::keys::SigningKey::from_jwk(
        &node.keys.signing.to_jwk(None),
    )?);
    let mut running =
        crate::bft::engine::start(&settings, key, NodeLedger(Arc::clone(&node))).await?;
    if let Some(evidence) = running.take_evidence() {
        tokio::spawn(report_evidence(node, evidence));
    }
    Ok(running)
}

/// Commits each equivocation the node's watch finds as its Misbehaviour transaction. Another
/// member may have committed the same evidence first: the state machine refuses the second
/// (one penalty per offence), which is logged and dropped.
async fn report_evidence(
    node: Arc<Node>,
    mut evidence: tokio::sync::mpsc::Receiver<emrshare_core::ledger::bft::Evidence>,
) {
    while let Some(found) = evidence.recv().await {
        match node.report_misbehaviour(&found).await {
            Ok(admitted) => tracing::warn!(
                "evidence of equivocation at height {} submitted as transaction {}",
                found.height(),
                admitted.id.to_hex()
            ),
            Err(e) => tracing::info!("evidence at height {} not submitted: {e}", found.height()),
        }
    }
}
