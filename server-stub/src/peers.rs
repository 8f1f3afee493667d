//! What the node knows of its peers, and what it says about them.
//!
//! Every [`CHECK_EVERY`] (and at start) the node asks each peer for `/v1/health`: a peer whose
//! chain ID or genesis hash differs from ours does not count; a peer that has not answered
//! for [`DEAD_AFTER`] is unreachable. Each change of a peer's state is logged once (up,
//! unreachable, back, another genesis). Blocks come through consensus and its value sync, not
//! from here. `/v1/health` reports the node's own state from this: "genesis mismatch", "not
//! syncing", "behind by N" or "ok".

use crate::config::Peer;
use crate::node::Node;
use emrshare_core::ledger::block::Genesis;
use emrshare_core::ledger::merkle::Hash;
use emrshare_core::ledger::wire::HealthAnswer;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often each peer's health is asked.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// A peer that has not answered for this long is unreachable (a peer starting up with us, or
/// one slow answer, is not).
pub const DEAD_AFTER: Duration = Duration::from_secs(5);
/// A node this many blocks behind its best peer, or fewer, is not "behind" (blocks reach the
/// peers one after the other).
pub const BEHIND_TOLERANCE: u64 = 2;
/// The largest health answer read from a peer.
const MAX_HEALTH_BYTES: usize = 16 * 1024;

/// A peer as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerState {
    /// Not heard from yet.
    Unknown,
    /// Same chain ID and genesis as ours, at this height.
    Ours { height: u64 },
    /// Another chain ID or genesis (or an answer that does not say): never synced from.
    OtherGenesis {
        chain_id: Option<String>,
        genesis_hash: Option<Hash>,
    },
    /// No answer for [`DEAD_AFTER`], for this reason.
    Unreachable { error: String },
}

struct Entry {
    id: String,
    state: PeerState,
    checked: Option<Instant>,
    failing_since: Option<Instant>,
}

pub struct Peers {
    chain_id: String,
    genesis_hash: Hash,
    /// By peer URL, in config order.
    entries: std::sync::Mutex<Vec<(String, Entry)>>,
}

/// An error and its causes on one line (reqwest keeps "connection refused" in a source).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

fn short(hash: &Option<Hash>) -> String {
    hash.map_or_else(|| "unstated".into(), |h| h.to_hex())
}

impl Peers {
    pub fn new(genesis: &Genesis, peers: &[Peer]) -> Self {
        let entries = peers
            .iter()
            .map(|p| {
                let entry = Entry {
                    id: p.id.to_string(),
                    state: PeerState::Unknown,
                    checked: None,
                    failing_since: None,
                };
                (p.url.clone(), entry)
            })
            .collect();
        Self {
            chain_id: genesis.chain_id.clone(),
            genesis_hash: genesis.hash(),
            entries: std::sync::Mutex::new(entries),
        }
    }

    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    pub fn genesis_hash(&self) -> Hash {
        self.genesis_hash
    }

    fn with_entry<T>(&self, url: &str, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter_mut()
            .find(|(u, _)| u == url)
            .map(|(_, e)| f(e))
    }

    pub fn state(&self, url: &str) -> Option<PeerState> {
        self.with_entry(url, |e| e.state.clone())
    }

    /// Asks `peer` for its health and records the answer.
    pub async fn check(&self, node: &Node, peer: &Peer) {
        let answer = ask_health(&node.http, &peer.url).await;
        self.record(&peer.url, answer, Instant::now());
    }

    /// Records a health answer (or the failure to get one) at `now`, logging a change.
    pub fn record(&self, url: &str, answer: Result<HealthAnswer, String>, now: Instant) {
        self.with_entry(url, |entry| {
            entry.checked = Some(now);
            let next = match answer {
                Ok(health) => {
                    entry.failing_since = None;
                    if health.chain_id.as_deref() == Some(self.chain_id.as_str())
                        && health.genesis_hash == Some(self.genesis_hash)
                    {
                        PeerState::Ours {
                            height: health.height,
                        }
                    } else {
                        PeerState::OtherGenesis {
                            chain_id: health.chain_id,
                            genesis_hash: health.genesis_hash,
                        }
                    }
                }
                Err(error) => {
                    let since = *entry.failing_since.get_or_insert(now);
                    if now.duration_since(since) >= DEAD_AFTER
                        || matches!(entry.state, PeerState::Unreachable { .. })
                    {
                        PeerState::Unreachable { error }
                    } else {
                        entry.state.clone()
                    }
                }
            };
            self.log_change(url, &entry.id, &entry.state, &next);
            entry.state = next;
        });
    }

    fn log_change(&self, url: &str, id: &str, before: &PeerState, after: &PeerState) {
        use PeerState::*;
        match (before, after) {
            (Ours { .. }, Ours { .. })
            | (Unreachable { .. }, Unreachable { .. })
            | (_, Unknown) => {}
            (a @ OtherGenesis { .. }, b @ OtherGenesis { .. }) if a == b => {}
            (Unknown, Ours { height }) => {
                tracing::info!("peer {id} ({url}) is up with our genesis, at height {height}")
            }
            (Unreachable { .. }, Ours { height }) => {
                tracing::info!("peer {id} ({url}) is reachable again, at height {height}")
            }
            (OtherGenesis { .. }, Ours { height }) => {
                tracing::info!("peer {id} ({url}) now has our genesis, at height {height}")
            }
            (_, Unreachable { error }) => {
                tracing::warn!("peer {id} ({url}) unreachable: {error}")
            }
            (
                _,
                OtherGenesis {
                    chain_id,
                    genesis_hash,
                },
            ) => tracing::warn!(
                "peer {id} ({url}) has another genesis (chain {}, genesis {}) than ours \
                 (chain {}, genesis {}): not syncing from it",
                chain_id.as_deref().unwrap_or("unstated"),
                short(genesis_hash),
                self.chain_id,
                self.genesis_hash.to_hex()
            ),
        }
    }

    /// The node's status for `/v1/health`, at our `height`.
    pub fn status(&self, height: u64) -> String {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let states = || entries.iter().map(|(_, e)| &e.state);
        let best = states()
            .filter_map(|s| match s {
                PeerState::Ours { height } => Some(*height),
                _ => None,
            })
            .max();
        match best {
            Some(best) if best > height + BEHIND_TOLERANCE => HealthAnswer::behind(best - height),
            Some(_) => HealthAnswer::OK.into(),
            None if states().any(|s| matches!(s, PeerState::OtherGenesis { .. })) => {
                HealthAnswer::GENESIS_MISMATCH.into()
            }
            None if states().any(|s| matches!(s, PeerState::Unreachable { .. })) => {
                HealthAnswer::NOT_SYNCING.into()
            }
            None => HealthAnswer::OK.into(),
        }
    }
}

/// A peer's health answer, read strictly and bounded in size.
async fn ask_health(http: &reqwest::Client, url: &str) -> Result<HealthAnswer, String> {
    let mut reply = http
        .get(format!("{url}/v1/health"))
        .send()
        .await
        .map_err(|e| describe(&e))?;
    if !reply.status().is_success() {
        return Err(format!("health answered {}", reply.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = reply.chunk().await.map_err(|e| describe(&e))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_HEALTH_BYTES {
            return Err("health answer too large".into());
        }
    }
    emrshare_core::strict_json::parse(&body).map_err(|e| format!("unreadable health answer: {e}"))
}

/// Checks every peer at start and then every [`CHECK_EVERY`], until aborted.
pub async fn watch(node: Arc<Node>) {
    loop {
        let checks = node.config.peers.iter().map(|p| node.peers.check(&node, p));
        futures_util::future::join_all(checks).await;
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emrshare_core::keys::PartyId;
    use emrshare_core::ledger::block::ValidatorSet;

    fn genesis(chain_id: &str) -> Genesis {
        Genesis {
            chain_id: chain_id.into(),
            validators: ValidatorSet {
                validators: vec![],
                proposers: 1,
                auditors: 1,
            },
            block_ms: 500,
            timeouts: Default::default(),
            start_ms: 1,
            governance: None,
            record_voucher_keys: Vec::new(),
        }
    }

    fn peer(i: usize) -> Peer {
        Peer {
            id: PartyId::new(format!("node:{i}")).unwrap(),
            url: format!("http://127.0.0.1:{}", 9000 + i),
            p2p: format!("/ip4/127.0.0.1/tcp/{}", 9100 + i),
        }
    }

    fn answer(genesis: &Genesis, height: u64) -> Result<HealthAnswer, String> {
        Ok(HealthAnswer {
            chain_id: Some(genesis.chain_id.clone()),
            genesis_hash: Some(genesis.hash()),
            height,
            id: PartyId::new("node:9").unwrap(),
            status: HealthAnswer::OK.into(),
        })
    }

    #[test]
    fn status_follows_the_peers() {
        let ours = genesis("c");
        let theirs = Genesis {
            start_ms: 2,
            ..genesis("c")
        };
        assert_ne!(ours.hash(), theirs.hash());
        let peers = Peers::new(&ours, &[peer(1), peer(2)]);
        let (a, b) = (peer(1).url, peer(2).url);
        let t0 = Instant::now();
        // Nothing known yet.
        assert_eq!(peers.status(0), "ok");
        // Failing for less than DEAD_AFTER is not unreachable yet.
        peers.record(&a, Err("refused".into()), t0);
        peers.record(&b, Err("refused".into()), t0);
        assert_eq!(peers.state(&a), Some(PeerState::Unknown));
        assert_eq!(peers.status(0), "ok");
        let later = t0 + DEAD_AFTER;
        peers.record(&a, Err("refused".into()), later);
        peers.record(&b, Err("refused".into()), later);
        assert_eq!(peers.status(0), "not syncing");
        // Another genesis (same chain ID) on one, the other still dead: a mismatch.
        peers.record(&a, answer(&theirs, 40), later);
        assert_eq!(peers.status(0), "genesis mismatch");
        // An answer without the genesis (an older node) is no proof of ours.
        let mut old = answer(&ours, 5).unwrap();
        old.genesis_hash = None;
        peers.record(&b, Ok(old), later);
        assert_eq!(peers.status(0), "genesis mismatch");
        // One peer with our genesis: its height counts, the other's does not.
        peers.record(&b, answer(&ours, 10), later);
        assert_eq!(peers.status(10), "ok");
        assert_eq!(peers.status(8), "ok");
        assert_eq!(peers.status(7), "behind by 3");
        assert_eq!(peers.status(0), "behind by 10");
        // A peer that was up stays counted through short failures.
        peers.record(&b, Err("timeout".into()), later + Duration::from_secs(1));
        assert_eq!(peers.status(0), "behind by 10");
        peers.record(&b, Err("timeout".into()), later + DEAD_AFTER * 2);
        assert_eq!(peers.status(0), "genesis mismatch");
        // No peers at all: nothing to be behind of.
        assert_eq!(Peers::new(&ours, &[]).status(0), "ok");
    }
}
