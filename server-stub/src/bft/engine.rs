//! Starting Malachite for one node: its consensus config (libp2p listen address and peers,
//! timeouts, value sync), its keys (the consensus key signs votes and, as an ECDSA P-256
//! libp2p identity, authenticates the node's peer connections with noise), and the engine's
//! actors, whose channels the host loop then answers.

use super::codec::JsonCodec;
use super::context::{Bft, PublicKey, Signer, ValidatorId, ValidatorSet};
use super::host::{Host, HostLimits, Ledger};
use super::watch::EquivocationWatch;
use anyhow::{Context as _, Result};
use bytesize::ByteSize;
use emrshare_core::keys::{PartyId, SigningKey};
use emrshare_core::ledger::bft::Evidence;
use malachitebft_app_channel::app::config::{
    ConsensusConfig, DiscoveryConfig, P2pConfig, PubSubProtocol, TimeoutConfig, ValuePayload,
    ValueSyncConfig,
};
use malachitebft_app_channel::app::events::RxEvent;
use malachitebft_app_channel::app::node::{EngineHandle, Node, NodeConfig, NodeHandle};
use malachitebft_app_channel::app::types::Keypair;
use malachitebft_app_channel::app::types::core::Context as _;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A node's consensus settings.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The chain ID.
    pub chain_id: String,
    /// This node's member ID.
    pub id: PartyId,
    /// Where the write-ahead log lives (`<home>/wal`).
    pub home: PathBuf,
    /// The libp2p port on 127.0.0.1 or any address: `/ip4/A/tcp/P`.
    pub listen: String,
    /// The other validators' libp2p addresses.
    pub peers: Vec<String>,
    /// Round timeouts: propose, prevote and precommit (each grows by half of itself per
    /// round that times out).
    pub timeouts: (Duration, Duration, Duration),
    /// The host's limits and pacing.
    pub limits: HostLimits,
}

/// Malachite's view of the node's config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineConfig {
    moniker: String,
    consensus: ConsensusConfig,
    value_sync: ValueSyncConfig,
}

impl NodeConfig for EngineConfig {
    fn moniker(&self) -> &str {
        &self.moniker
    }

    fn consensus(&self) -> &ConsensusConfig {
        &self.consensus
    }

    fn value_sync(&self) -> &ValueSyncConfig {
        &self.value_sync
    }
}

fn multiaddr(text: &str) -> Result<multiaddr::Multiaddr> {
    let addr: multiaddr::Multiaddr = text
        .parse()
        .with_context(|| format!("{text:?} is not a libp2p address (/ip4/A/tcp/P)"))?;
    // Malachite panics on an address without a transport it knows: refuse it here.
    anyhow::ensure!(
        addr.iter()
            .any(|p| matches!(p, multiaddr::Protocol::Tcp(_))),
        "{text:?} names no TCP port"
    );
    Ok(addr)
}

impl EngineSettings {
    fn config(&self) -> Result<EngineConfig> {
        let (propose, prevote, precommit) = self.timeouts;
        let timeouts = TimeoutConfig {
            timeout_propose: propose,
            timeout_propose_delta: propose / 2,
            timeout_prevote: prevote,
            timeout_prevote_delta: prevote / 2,
            timeout_precommit: precommit,
            timeout_precommit_delta: precommit / 2,
            timeout_rebroadcast: propose + prevote + precommit,
        };
        let max = ByteSize::b(self.limits.max_block_bytes as u64 * 2 + (1 << 20));
        Ok(EngineConfig {
            moniker: self.id.as_str().to_owned(),
            consensus: ConsensusConfig {
                timeouts,
                p2p: P2pConfig {
                    listen_addr: multiaddr(&self.listen)?,
                    persistent_peers: self
                        .peers
                        .iter()
                        .map(|p| multiaddr(p))
                        .collect::<Result<_>>()?,
                    discovery: DiscoveryConfig::default(),
                    protocol: PubSubProtocol::default(),
                    pubsub_max_size: max,
                    rpc_max_size: max,
                },
                value_payload: ValuePayload::ProposalAndParts,
                queue_capacity: 0,
            },
            value_sync: ValueSyncConfig {
                status_update_interval: Duration::from_secs(2),
                request_timeout: Duration::from_secs(5),
                max_response_size: max,
                ..ValueSyncConfig::default()
            },
        })
    }
}

/// The libp2p identity of a consensus key: the same P-256 key, so a peer's ID follows from
/// the validator set in genesis.
pub fn peer_keypair(key: &SigningKey) -> Result<Keypair> {
    let jwk = serde_json::to_value(key.to_jwk(None))?;
    let d = jwk
        .get("d")
        .and_then(|d| d.as_str())
        .context("the consensus key has no private scalar")?;
    let scalar = emrshare_core::b64::decode(d).context("the consensus key's scalar")?;
    let secret = libp2p_identity::ecdsa::SecretKey::try_from_bytes(scalar)
        .map_err(|e| anyhow::anyhow!("consensus key as a libp2p key: {e}"))?;
    Ok(libp2p_identity::ecdsa::Keypair::from(secret).into())
}

/// The node as Malachite's `start_engine` sees it: keys and config come from us, not files.
#[derive(Clone)]
struct EngineNode {
    key: Arc<SigningKey>,
    watch: Arc<EquivocationWatch>,
    chain_id: Arc<str>,
    home: PathBuf,
    config: EngineConfig,
}

struct Handle {
    engine: EngineHandle,
    events: malachitebft_app_channel::app::events::TxEvent<Bft>,
}

#[async_trait::async_trait]
impl NodeHandle<Bft> for Handle {
    fn subscribe(&self) -> RxEvent<Bft> {
        self.events.subscribe()
    }

    async fn kill(&self, _reason: Option<String>) -> eyre::Result<()> {
        self.engine.actor.kill_and_wait(None).await?;
        self.engine.handle.abort();
        Ok(())
    }
}

#[async_trait::async_trait]
impl Node for EngineNode {
    type Context = Bft;
    type Config = EngineConfig;
    type Genesis = ();
    type PrivateKeyFile = ();
    type SigningProvider = Signer;
    type NodeHandle = Handle;

    async fn start(&self) -> eyre::Result<Handle> {
        eyre::bail!("started through bft::engine::start")
    }

    async fn run(self) -> eyre::Result<()> {
        eyre::bail!("started through bft::engine::start")
    }

    fn get_home_dir(&self) -> PathBuf {
        self.home.clone()
    }

    fn load_config(&self) -> eyre::Result<EngineConfig> {
        Ok(self.config.clone())
    }

    fn get_address(&self, key: &PublicKey) -> ValidatorId {
        // The engine asks for our own address only; it is the ID our key is registered under.
        let _ = key;
        ValidatorId(PartyId::new(self.config.moniker.clone()).expect("a member ID"))
    }

    fn get_public_key(&self, key: &Arc<SigningKey>) -> PublicKey {
        PublicKey(key.verifying_key().clone())
    }

    fn get_keypair(&self, key: Arc<SigningKey>) -> Keypair {
        // Tests run a second copy of a validator (same consensus key, so it signs what the
        // first did not: the way double-signing happens in practice), which needs a peer
        // identity of its own to be let into the network.
        #[cfg(feature = "testkit")]
        if std::env::var_os("EMRSHARE_TEST_TWIN").is_some() {
            return peer_keypair(&SigningKey::generate()).expect("a fresh P-256 key");
        }
        peer_keypair(&key).expect("a P-256 key is a libp2p ECDSA key")
    }

    fn load_private_key(&self, _file: ()) -> Arc<SigningKey> {
        self.key.clone()
    }

    fn load_private_key_file(&self) -> eyre::Result<()> {
        Ok(())
    }

    fn load_genesis(&self) -> eyre::Result<()> {
        Ok(())
    }

    fn get_signing_provider(&self, key: Arc<SigningKey>) -> Signer {
        Signer::new(self.chain_id.clone(), key).watching(self.watch.clone())
    }
}

/// A running engine and its host loop.
pub struct Running {
    engine: EngineHandle,
    host: tokio::task::JoinHandle<Result<()>>,
    events: malachitebft_app_channel::app::events::TxEvent<Bft>,
    evidence: Option<tokio::sync::mpsc::Receiver<Evidence>>,
}

impl Running {
    /// The equivocations the node's watch finds in gossip, verified against the height's
    /// set (once: the first caller takes the stream).
    pub fn take_evidence(&mut self) -> Option<tokio::sync::mpsc::Receiver<Evidence>> {
        self.evidence.take()
    }

    /// The engine's events (decisions, rounds), for tests and metrics.
    pub fn subscribe(&self) -> RxEvent<Bft> {
        self.events.subscribe()
    }

    /// Stops the engine and the host loop.
    pub async fn stop(self) {
        let _ = self.engine.actor.kill_and_wait(None).await;
        self.engine.handle.abort();
        self.host.abort();
    }
}

/// Starts consensus for this node over `ledger`, with `key` its consensus key.
pub async fn start<L: Ledger>(
    settings: &EngineSettings,
    key: Arc<SigningKey>,
    ledger: L,
) -> Result<Running> {
    let config = settings.config()?;
    let wal = settings.home.join("wal");
    std::fs::create_dir_all(&wal)
        .with_context(|| format!("cannot create the consensus log folder {}", wal.display()))?;
    let chain_id: Arc<str> = settings.chain_id.as_str().into();
    let context = Bft {
        chain_id: chain_id.clone(),
    };
    let start = ledger.decided_height().await + 1;
    let set = ledger
        .validator_set(start)
        .await
        .map(ValidatorSet::new)
        .context("the chain fixes no validator set for its next height")?;
    // The engine's own proposer rule must be ours: check it once against the set.
    let _ = context.select_proposer(
        &set,
        super::context::Height(start),
        malachitebft_app_channel::app::types::core::Round::ZERO,
    );
    let (found, evidence) = tokio::sync::mpsc::channel(64);
    let watch = Arc::new(EquivocationWatch::new(chain_id.clone(), found));
    let node = EngineNode {
        key,
        watch: watch.clone(),
        chain_id,
        home: settings.home.clone(),
        config: config.clone(),
    };
    let (mut channels, engine) = malachitebft_app_channel::start_engine(
        context,
        node,
        config,
        JsonCodec::default(),
        JsonCodec::watching(watch.clone()),
        Some(super::context::Height(start)),
        set,
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot start consensus: {e:#}"))?;
    let events = channels.events.clone();
    let host = Host::new(ledger, settings.id.clone(), settings.limits).watching(watch);
    let host = tokio::spawn(async move { host.run(&mut channels).await });
    Ok(Running {
        engine,
        host,
        events,
        evidence: Some(evidence),
    })
}
