//! The host loop: it answers every message of the engine (app-channel) from a [`Ledger`], the
//! chain's state machine and store. It builds blocks when this node proposes, streams them
//! to the other validators in parts, reassembles and checks the blocks others propose,
//! applies what is decided, and serves decided blocks to peers that sync.
//!
//! Every engine message gets an answer, even when the ledger fails: the engine stalls for good
//! on a dropped reply. Part streams are bounded per peer and in total, so a peer that streams
//! garbage fills nothing.

use super::codec::{certificate_from_core, certificate_to_core};
use super::context::{Bft, BlockHash, Height, ProposalPart, ValidatorId, ValidatorSet};
use bytes::Bytes;
use emrshare_core::b64;
use emrshare_core::keys::PartyId;
use emrshare_core::ledger::bft::{DecisionCertificate, VerifiedSet};
use emrshare_core::ledger::merkle::Hash;
use malachitebft_app_channel::app::engine::host::Next;
use malachitebft_app_channel::app::streaming::{StreamContent, StreamId, StreamMessage};
use malachitebft_app_channel::app::types::core::{Round, Validity};
use malachitebft_app_channel::app::types::sync::RawDecidedValue;
use malachitebft_app_channel::app::types::{LocallyProposedValue, PeerId, ProposedValue};
use malachitebft_app_channel::{AppMsg, Channels, NetworkMsg};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// A proposed block as the ledger judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// It applies on top of the chain; its header hash.
    Valid(Hash),
    /// It parses but must not be decided; its header hash and why.
    Invalid(Hash, String),
    /// It does not even parse: there is nothing to vote against.
    Unreadable(String),
}

/// What the host needs of the chain. Heights count decided blocks (1 is the first).
#[async_trait::async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// The last decided height (0 before the first block).
    async fn decided_height(&self) -> u64;

    /// The validator set in force at `height`, once the chain has fixed it (up to the decided
    /// height + 1).
    async fn validator_set(&self, height: u64) -> Option<VerifiedSet>;

    /// A new block for the next height, proposed by `proposer` in `round`, under the block
    /// budget: its header hash and its bytes.
    async fn build(&mut self, round: u32, proposer: &PartyId) -> anyhow::Result<(Hash, Vec<u8>)>;

    /// Judges the bytes of a block proposed by `proposer` for the next height.
    async fn check(&self, proposer: &PartyId, block: &[u8]) -> Checked;

    /// Judges the bytes of a decided block a peer synced (it comes with its certificate, which
    /// the engine checks): its contents must apply on our head, but it may be old, and it
    /// carries no proposer's proof of its previous block's signers (the block's voters
    /// checked that). By default, as a proposal.
    async fn check_decided(&self, proposer: &PartyId, block: &[u8]) -> Checked {
        self.check(proposer, block).await
    }

    /// The header hash of a block's bytes, if they parse (for blocks of a later height,
    /// kept until they can be checked).
    async fn block_hash(&self, block: &[u8]) -> Option<Hash>;

    /// Applies the decided block of the next height and stores it with its certificate,
    /// durably, before returning.
    async fn commit(
        &mut self,
        block: &[u8],
        certificate: DecisionCertificate,
    ) -> anyhow::Result<()>;

    /// The decided block at `height` and its certificate.
    async fn decided(&self, height: u64) -> Option<(Vec<u8>, DecisionCertificate)>;
}

/// Bounds of the host's buffers and its pacing.
#[derive(Debug, Clone, Copy)]
pub struct HostLimits {
    /// The least time between two decisions (empty blocks are not made faster than this).
    pub block_interval: Duration,
    /// The largest block a peer may stream.
    pub max_block_bytes: usize,
    /// Part streams buffered at once, over all peers.
    pub max_streams: usize,
}

impl Default for HostLimits {
    fn default() -> Self {
        Self {
            block_interval: Duration::from_millis(300),
            max_block_bytes: 4 << 20,
            max_streams: 64,
        }
    }
}

/// Chunks of a streamed block: at most this many bytes of block each.
const CHUNK_BYTES: usize = 64 * 1024;

/// A block proposed in a round, kept until its height is decided.
#[derive(Clone)]
struct Undecided {
    value: ProposedValue<Bft>,
    block: Vec<u8>,
    /// Came by value sync (a decided block a peer served): not paced.
    synced: bool,
}

/// A part stream being received from one peer.
#[derive(Default)]
struct PartStream {
    init: Option<(u64, u32, Option<u32>, PartyId)>,
    chunks: BTreeMap<u64, Vec<u8>>,
    bytes: usize,
    /// The sequence number of the end of the stream, once seen.
    end: Option<u64>,
}

/// The host of one node.
pub struct Host<L: Ledger> {
    ledger: L,
    me: PartyId,
    limits: HostLimits,
    /// Blocks proposed for heights not yet decided, by (height, round, hash).
    undecided: BTreeMap<(u64, u32, Hash), Undecided>,
    /// Streams being received, by sender and stream ID.
    streams: HashMap<(PeerId, Bytes), PartStream>,
    /// Streams started by this node (for unique stream IDs).
    streams_sent: u32,
    last_decision: Option<Instant>,
    /// Told the validator set of each height the engine enters.
    watch: Option<std::sync::Arc<super::watch::EquivocationWatch>>,
}

impl<L: Ledger> Host<L> {
    /// The same host, telling `watch` the set of each height it enters.
    pub fn watching(mut self, watch: std::sync::Arc<super::watch::EquivocationWatch>) -> Self {
        self.watch = Some(watch);
        self
    }

    /// The host of node `me` over `ledger`.
    pub fn new(ledger: L, me: PartyId, limits: HostLimits) -> Self {
        Self {
            ledger,
            me,
            limits,
            undecided: BTreeMap::new(),
            streams: HashMap::new(),
            streams_sent: 0,
            last_decision: None,
            watch: None,
        }
    }

    /// The ledger (for the node's API).
    pub fn ledger(&self) -> &L {
        &self.ledger
    }

    async fn next_height(&self) -> u64 {
        self.ledger.decided_height().await + 1
    }

    async fn set(&self, height: u64) -> Option<ValidatorSet> {
        self.ledger
            .validator_set(height)
            .await
            .map(ValidatorSet::new)
    }

    /// Answers the engine until it stops.
    pub async fn run(mut self, channels: &mut Channels<Bft>) -> anyhow::Result<()> {
        while let Some(msg) = channels.consensus.recv().await {
            self.handle(msg, channels).await?;
        }
        anyhow::bail!("the consensus engine stopped")
    }

    async fn handle(&mut self, msg: AppMsg<Bft>, channels: &Channels<Bft>) -> anyhow::Result<()> {
        // A failed send means the engine dropped the request (it timed out or moved on):
        // nothing to do but go on.
        match msg {
            AppMsg::ConsensusReady { reply } => {
                let height = self.next_height().await;
                let set = self
                    .set(height)
                    .await
                    .ok_or_else(|| anyhow::anyhow!("no validator set for height {height}"))?;
                let _ = reply.send((Height(height), set));
            }
            AppMsg::StartedRound {
                height,
                round,
                reply_value,
                ..
            } => {
                let round = round.as_u32().unwrap_or(0);
                if let Some(watch) = &self.watch {
                    if let Some(set) = self.ledger.validator_set(height.0).await {
                        watch.enter(height.0, set);
                    }
                }
                self.validate_pending(height.0).await;
                let values = self
                    .undecided
                    .range(
                        (height.0, round, Hash::new([0; 32]))
                            ..=(height.0, round, Hash::new([0xff; 32])),
                    )
                    .map(|(_, u)| u.value.clone())
                    .collect();
                let _ = reply_value.send(values);
            }
            AppMsg::GetValue {
                height,
                round,
                reply,
                ..
            } => {
                let r = round.as_u32().unwrap_or(0);
                // The same value again if this node proposed in this round before (after a
                // restart of the round): proposing another would be equivocation.
                let built = self
                    .undecided
                    .iter()
                    .find(|((h, rr, _), u)| {
                        *h == height.0 && *rr == r && u.value.proposer.0 == self.me
                    })
                    .map(|(_, u)| u.clone());
                let undecided = match built {
                    Some(u) => u,
                    None if height.0 == self.next_height().await => {
                        let (hash, block) = self.ledger.build(r, &self.me).await?;
                        let u = Undecided {
                            value: ProposedValue {
                                height,
                                round,
                                valid_round: Round::Nil,
                                proposer: ValidatorId(self.me.clone()),
                                value: BlockHash(hash),
                                validity: Validity::Valid,
                            },
                            block,
                            synced: false,
                        };
                        self.undecided.insert((height.0, r, hash), u.clone());
                        u
                    }
                    None => anyhow::bail!("asked to propose at {height}, not the next height"),
                };
                let _ = reply.send(LocallyProposedValue::new(
                    height,
                    round,
                    undecided.value.value,
                ));
                self.stream(channels, height.0, r, Round::Nil, &undecided.block)
                    .await?;
            }
            AppMsg::ExtendVote { reply, .. } => {
                let _ = reply.send(None);
            }
            AppMsg::VerifyVoteExtension { reply, .. } => {
                let _ = reply.send(Ok(()));
            }
            AppMsg::RestreamProposal {
                height,
                round,
                valid_round,
                value_id,
                ..
            } => {
                let from = valid_round.as_u32().or(round.as_u32()).unwrap_or(0);
                if let Some(u) = self.undecided.get(&(height.0, from, value_id.0)).cloned() {
                    let r = round.as_u32().unwrap_or(0);
                    self.stream(channels, height.0, r, valid_round, &u.block)
                        .await?;
                }
            }
            AppMsg::GetHistoryMinHeight { reply } => {
                let _ = reply.send(Height(1));
            }
            AppMsg::ReceivedProposalPart { from, part, reply } => {
                let _ = reply.send(self.receive_part(from, part).await);
            }
            AppMsg::GetValidatorSet { height, reply } => {
                let _ = reply.send(self.set(height.0).await);
            }
            AppMsg::Decided {
                certificate, reply, ..
            } => {
                let next = self.decide(certificate).await;
                let _ = reply.send(next?);
            }
            AppMsg::GetDecidedValue { height, reply } => {
                let decided = self
                    .ledger
                    .decided(height.0)
                    .await
                    .and_then(|(block, cert)| {
                        Some(RawDecidedValue::new(
                            Bytes::from(block),
                            certificate_from_core(cert).ok()?,
                        ))
                    });
                let _ = reply.send(decided);
            }
            AppMsg::ProcessSyncedValue {
                height,
                round,
                value_bytes,
                reply,
                ..
            } => {
                let _ = reply.send(self.synced(height.0, round, &value_bytes).await);
            }
        }
        Ok(())
    }

    /// Streams `block` as the proposal of (`height`, `round`).
    async fn stream(
        &mut self,
        channels: &Channels<Bft>,
        height: u64,
        round: u32,
        pol_round: Round,
        block: &[u8],
    ) -> anyhow::Result<()> {
        self.streams_sent = self.streams_sent.wrapping_add(1);
        let mut id = Vec::with_capacity(16);
        id.extend_from_slice(&height.to_be_bytes());
        id.extend_from_slice(&round.to_be_bytes());
        id.extend_from_slice(&self.streams_sent.to_be_bytes());
        let id = StreamId::new(Bytes::from(id));
        let mut parts = vec![ProposalPart::Init {
            height,
            round,
            pol_round: pol_round.as_u32(),
            proposer: self.me.clone(),
        }];
        parts.extend(
            block
                .chunks(CHUNK_BYTES)
                .map(|c| ProposalPart::Chunk(b64::encode(c))),
        );
        parts.push(ProposalPart::Fin);
        let count = parts.len() as u64;
        for (sequence, part) in parts.into_iter().enumerate() {
            let message =
                StreamMessage::new(id.clone(), sequence as u64, StreamContent::Data(part));
            channels
                .network
                .send(NetworkMsg::PublishProposalPart(message))
                .await?;
        }
        let end = StreamMessage::new(id, count, StreamContent::Fin);
        channels
            .network
            .send(NetworkMsg::PublishProposalPart(end))
            .await?;
        Ok(())
    }

    /// Takes one part of a peer's stream; the proposed value once the stream is complete.
    async fn receive_part(
        &mut self,
        from: PeerId,
        part: StreamMessage<ProposalPart>,
    ) -> Option<ProposedValue<Bft>> {
        let key = (from, part.stream_id.to_bytes());
        if !self.streams.contains_key(&key) && self.streams.len() >= self.limits.max_streams {
            // Full: the oldest streams are those of heights passed; drop any one of them.
            let stale = self.streams.keys().next().cloned()?;
            self.streams.remove(&stale);
        }
        let stream = self.streams.entry(key.clone()).or_default();
        match part.content {
            StreamContent::Fin => stream.end = Some(part.sequence),
            StreamContent::Data(ProposalPart::Init {
                height,
                round,
                pol_round,
                proposer,
            }) if part.sequence == 0 => stream.init = Some((height, round, pol_round, proposer)),
            StreamContent::Data(ProposalPart::Chunk(text)) => {
                let chunk = b64::decode(&text).ok()?;
                stream.bytes += chunk.len();
                if stream.bytes > self.limits.max_block_bytes || part.sequence == 0 {
                    self.streams.remove(&key);
                    return None;
                }
                stream.chunks.insert(part.sequence, chunk);
            }
            StreamContent::Data(_) => {}
        }
        let stream = self.streams.get(&key)?;
        let end = stream.end?;
        // Parts are 0 (init), 1..end-1 (chunks and the final Fin part), end (the stream's
        // end): complete when every chunk between is here.
        let (height, round, pol_round, proposer) = stream.init.clone()?;
        let complete = (1..end.saturating_sub(1)).all(|s| stream.chunks.contains_key(&s));
        if !complete {
            return None;
        }
        let stream = self.streams.remove(&key)?;
        let block: Vec<u8> = stream.chunks.into_values().flatten().collect();
        self.propose_from(height, round, pol_round, proposer, block)
            .await
    }

    /// Records a block proposed by a peer; its value for the engine if it is for the current
    /// height (later heights are kept and checked when their round starts).
    async fn propose_from(
        &mut self,
        height: u64,
        round: u32,
        pol_round: Option<u32>,
        proposer: PartyId,
        block: Vec<u8>,
    ) -> Option<ProposedValue<Bft>> {
        let next = self.next_height().await;
        // Only the next height and the one after are kept: anything else is stale or too far.
        if height < next || height > next + 1 {
            return None;
        }
        let (hash, validity) = if height == next {
            match self.ledger.check(&proposer, &block).await {
                Checked::Valid(hash) => (hash, Validity::Valid),
                Checked::Invalid(hash, why) => {
                    tracing::warn!(%height, %round, proposer = %proposer, "invalid block proposed: {why}");
                    (hash, Validity::Invalid)
                }
                Checked::Unreadable(why) => {
                    tracing::warn!(%height, %round, proposer = %proposer, "unreadable block proposed: {why}");
                    return None;
                }
            }
        } else {
            // Checked later (validate_pending); its hash is what the signed proposal names.
            (self.ledger.block_hash(&block).await?, Validity::Invalid)
        };
        let value = ProposedValue {
            height: Height(height),
            round: Round::new(round),
            valid_round: pol_round.map_or(Round::Nil, Round::new),
            proposer: ValidatorId(proposer),
            value: BlockHash(hash),
            validity,
        };
        self.undecided.insert(
            (height, round, hash),
            Undecided {
                value: value.clone(),
                block,
                synced: false,
            },
        );
        (height == next).then_some(value)
    }

    /// Checks the blocks kept for `height` before it was the next one.
    async fn validate_pending(&mut self, height: u64) {
        if height != self.next_height().await {
            return;
        }
        let keys: Vec<_> = self
            .undecided
            .range((height, 0, Hash::new([0; 32]))..=(height, u32::MAX, Hash::new([0xff; 32])))
            .filter(|(_, u)| u.value.proposer.0 != self.me)
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let Some(u) = self.undecided.get_mut(&key) else {
                continue;
            };
            u.value.validity = match self.ledger.check(&u.value.proposer.0, &u.block).await {
                Checked::Valid(hash) if hash == key.2 => Validity::Valid,
                _ => Validity::Invalid,
            };
        }
    }

    /// Applies the decided block; the next height to start.
    async fn decide(
        &mut self,
        certificate: malachitebft_app_channel::app::types::core::CommitCertificate<Bft>,
    ) -> anyhow::Result<Next<Bft>> {
        let height = certificate.height.0;
        let hash = certificate.value_id.0;
        let (block, synced) = self
            .undecided
            .iter()
            .find(|((h, _, v), _)| *h == height && *v == hash)
            .map_or((None, false), |(_, u)| (Some(u.block.clone()), u.synced));
        let committed = match block {
            Some(block) if height == self.next_height().await => {
                self.ledger
                    .commit(&block, certificate_to_core(&certificate))
                    .await
            }
            Some(_) => Err(anyhow::anyhow!(
                "decided height {height} is not the next one"
            )),
            None => Err(anyhow::anyhow!(
                "decided block of height {height} is unknown"
            )),
        };
        let next = self.next_height().await;
        let set = self
            .set(next)
            .await
            .ok_or_else(|| anyhow::anyhow!("no validator set for height {next}"))?;
        if let Err(e) = committed {
            tracing::error!(%height, "commit failed, restarting the height: {e:#}");
            return Ok(Next::Restart(Height(next), set));
        }
        self.undecided = self.undecided.split_off(&(next, 0, Hash::new([0; 32])));
        // Pace empty chains: the next height starts no sooner than one interval after this.
        // A node catching up by sync is not paced (it would sync one interval per block).
        if let Some(last) = self.last_decision.filter(|_| !synced) {
            let due = last + self.limits.block_interval;
            tokio::time::sleep_until(due.into()).await;
        }
        self.last_decision = Some(Instant::now());
        Ok(Next::Start(Height(next), set))
    }

    /// A block received by value sync for `height`: checked like a proposal.
    async fn synced(
        &mut self,
        height: u64,
        round: Round,
        bytes: &[u8],
    ) -> Option<ProposedValue<Bft>> {
        if height != self.next_height().await {
            return None;
        }
        let r = round.as_u32().unwrap_or(0);
        // The proposer is ours to compute from the set the chain fixed, not the peer's word.
        let proposer = self
            .ledger
            .validator_set(height)
            .await?
            .proposer(height, r)
            .clone();
        let (hash, validity) = match self.ledger.check_decided(&proposer, bytes).await {
            Checked::Valid(hash) => (hash, Validity::Valid),
            Checked::Invalid(hash, _) => (hash, Validity::Invalid),
            Checked::Unreadable(_) => return None,
        };
        let value = ProposedValue {
            height: Height(height),
            round,
            valid_round: Round::Nil,
            proposer: ValidatorId(proposer),
            value: BlockHash(hash),
            validity,
        };
        self.undecided.insert(
            (height, r, hash),
            Undecided {
                value: value.clone(),
                block: bytes.to_vec(),
                synced: true,
            },
        );
        Some(value)
    }
}
