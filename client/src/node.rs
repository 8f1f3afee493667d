//! The async client of the full nodes' API (DESIGN sections 6 and 8).
//!
//! Every answer that matters is verified as a thin client must: headers by their commit
//! certificate under the validator set the client trusts (starting from genesis and following
//! each certified change of set), values by their state proofs under those headers. Lookups
//! go to n nodes in parallel with a timeout each, retrying on other nodes when one does not
//! answer; nodes whose answers fail verification are reported as evidence. Writes
//! (transactions, blobs) go to one node and move on to the next when it does not answer.

use crate::transport::{HttpRequest, HttpTransport, Method, Transport};
use emrshare_core::keys::PartyId;
use emrshare_core::ledger::block::Genesis;
use emrshare_core::ledger::machine::{
    DirectoryHead, GrantEntry, LogEntry, RecordEntry, directory_head_key, grant_key,
};
use emrshare_core::ledger::merkle::Hash;
use emrshare_core::ledger::tx::{Role, SignedTransaction};
use emrshare_core::ledger::verify::{InvalidReason, LightClient, Verdict};
use emrshare_core::ledger::wire::{
    BucketAnswer, DirectoryAnswer, ErrorBody, GrantAnswer, LookupRequest, LookupResponse,
    RecordAnswer, RecordVoucherAnswer, RecordVoucherRequest, SequenceAnswer, SubmitRequest,
    SubmitResponse, ValidatorsAnswer,
};
use emrshare_core::lookup::{LookupError, LookupOutcome, LookupPlan, NodeEvidence, NodeFault};
use emrshare_core::record_account::verify_record_answer;
use emrshare_core::strict_json;
use futures_util::future::join_all;
use serde::de::DeserializeOwned;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Where the client's nodes are and how it talks to them.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URLs of the consortium's full nodes (`https://...`, or `http://` on loopback).
    pub nodes: Vec<String>,
    /// The consortium's genesis: the client's root of trust.
    pub genesis: Genesis,
    /// How many nodes each lookup asks (default 3).
    pub n: usize,
    /// How long one node may take to answer.
    pub timeout: Duration,
}

impl ClientConfig {
    /// The config for `nodes` under `genesis`, asking 3 nodes per lookup with a 5 s timeout
    /// per answer.
    pub fn new(nodes: Vec<String>, genesis: Genesis) -> Self {
        Self {
            nodes,
            genesis,
            n: 3,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Why the nodes gave no usable answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// No node answered (none in time, cannot connect, or a server error).
    #[error("no node answered ({tried} tried): {last}")]
    NoAnswer {
        /// Nodes tried; 0 when a wait for a commit or registration ran out of time.
        tried: usize,
        /// Why the last one gave no answer.
        last: String,
    },
    /// A node refused the request with an HTTP error status.
    #[error("node refused ({status}): {message}")]
    Refused {
        /// The HTTP status code.
        status: u16,
        /// The error message of its JSON body, or "no error message".
        message: String,
    },
    /// An answer that does not parse, or a blob that does not match its address.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// A lookup could not be planned or verified.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// Nodes answered, but no answer verified: the evidence against each node.
    #[error("no node's answer verified ({} failed{})", .0.len(), first_fault(.0))]
    Unverified(Vec<NodeEvidence>),
    /// The config lists no nodes.
    #[error("the client has no nodes")]
    NoNodes,
    /// The genesis validator set is unusable as a root of trust.
    #[error("genesis: {0}")]
    Genesis(String),
}

/// The first node's fault, for a one-line error.
fn first_fault(evidence: &[NodeEvidence]) -> String {
    evidence
        .first()
        .map(|e| format!("; {}: {}", e.node, e.fault))
        .unwrap_or_default()
}

/// A grant as the chain holds it, proven under a certified header.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedGrant {
    /// The grant, or `None` where the proof shows there is no such grant.
    pub grant: Option<GrantEntry>,
    /// The height of the certified header it is proven under.
    pub height: u64,
}

/// A record's account and some of its access logs, proven.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedRecordAccount {
    /// The account, or `None` where the chain proves it is not open.
    pub record: Option<RecordEntry>,
    /// Its access logs from the one asked for on, in order.
    pub logs: Vec<LogEntry>,
    /// The height of the certified header every proof is under.
    pub height: u64,
}

/// A certified block whose header and transactions were verified.
#[derive(Debug, Clone)]
pub struct VerifiedBlock {
    /// The block's header, verified under its commit certificate.
    pub header: emrshare_core::ledger::block::Header,
    /// The block's transactions, matching the header's transaction root.
    pub txs: Vec<SignedTransaction>,
}

/// The client of a consortium's full nodes.
pub struct NodeClient<T: Transport = HttpTransport> {
    config: ClientConfig,
    transport: T,
    trust: Mutex<LightClient>,
    next: AtomicUsize,
}

impl<T: Transport> NodeClient<T> {
    /// A client trusting `config`'s genesis validator set; fails with no nodes or an unusable
    /// genesis.
    pub fn new(config: ClientConfig, transport: T) -> Result<Self, NetError> {
        if config.nodes.is_empty() {
            return Err(NetError::NoNodes);
        }
        let trust = LightClient::new(&config.genesis.chain_id, config.genesis.validators.clone())
            .map_err(|e| NetError::Genesis(e.to_string()))?;
        Ok(Self {
            config,
            transport,
            trust: Mutex::new(trust),
            next: AtomicUsize::new(0),
        })
    }

    /// Where the nodes are and how the client talks to them.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The transport the client sends its requests through.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The height of the newest header the client has accepted.
    pub fn trusted_height(&self) -> u64 {
        self.trust().last().map_or(0, |t| t.height)
    }

    fn trust(&self) -> std::sync::MutexGuard<'_, LightClient> {
        self.trust.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The nodes in the order to try them: rotated on every call, spreading the load.
    fn rotation(&self) -> Vec<String> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let nodes = &self.config.nodes;
        (0..nodes.len())
            .map(|i| nodes[(start + i) % nodes.len()].clone())
            .collect()
    }

    /// One request to one node, within the timeout; error statuses become `Refused`.
    async fn call(&self, node: &str, request: HttpRequest) -> Result<Vec<u8>, NetError> {
        let answer = tokio::time::timeout(self.config.timeout, self.transport.send(node, request))
            .await
            .map_err(|_| NetError::NoAnswer {
                tried: 1,
                last: format!("{node}: timed out"),
            })?
            .map_err(|e| NetError::NoAnswer {
                tried: 1,
                last: format!("{node}: {e}"),
            })?;
        if (200..300).contains(&answer.status) {
            return Ok(answer.body);
        }
        let message = strict_json::parse::<ErrorBody>(&answer.body)
            .map(|e| e.error)
            .unwrap_or_else(|_| "no error message".into());
        Err(NetError::Refused {
            status: answer.status,
            message,
        })
    }

    async fn call_json<R: DeserializeOwned>(
        &self,
        node: &str,
        request: HttpRequest,
    ) -> Result<R, NetError> {
        let body = self.call(node, request).await?;
        strict_json::parse(&body).map_err(|e| NetError::Malformed(format!("{node}: {e}")))
    }

    /// Sends `request` to the nodes in turn until one answers; a refusal (4xx) is an
    /// answer, and is returned as it is.
    async fn first_answer<R: DeserializeOwned>(&self, request: HttpRequest) -> Result<R, NetError> {
        let nodes = self.rotation();
        let mut last = String::new();
        for node in &nodes {
            match self.call_json(node, request.clone()).await {
                Err(NetError::NoAnswer { last: why, .. }) => last = why,
                Err(NetError::Refused { status, message }) if status >= 500 => {
                    last = format!("{node}: {status} {message}")
                }
                other => return other,
            }
        }
        Err(NetError::NoAnswer {
            tried: nodes.len(),
            last,
        })
    }

    /// Submits a signed transaction; the node acknowledges once it is stored durably.
    pub async fn submit(&self, tx: &SignedTransaction) -> Result<String, NetError> {
        let body = serde_json::to_vec(&SubmitRequest {
            jws: tx.as_jws().to_owned(),
        })
        .expect("requests serialize");
        let answer: SubmitResponse = self
            .first_answer(HttpRequest::post_json("/v1/tx", body))
            .await?;
        Ok(answer.id)
    }

    /// The sequence number `id`'s next transaction must carry (not proven: a wrong one only
    /// makes the transaction fail).
    pub async fn next_sequence(&self, id: &PartyId) -> Result<u64, NetError> {
        let answer: SequenceAnswer = self
            .first_answer(HttpRequest::get(format!("/v1/sequence/{id}")))
            .await?;
        Ok(answer.next)
    }

    /// How many IDs of `role` are registered, proven under a certified header (asked of
    /// nodes in turn until one answer verifies): what a lookup sizes its bucket from. The
    /// header is checked but not accepted as the newest trusted one, so a node a block behind
    /// the one that answered here is still an honest answer to the bucket request that
    /// follows (the lookup accepts the oldest verified header of its answers).
    pub async fn directory_size(&self, role: Role) -> Result<u64, NetError> {
        let request = HttpRequest::get(format!("/v1/directory/{}", role.as_str()));
        let nodes = self.rotation();
        let mut evidence = Vec::new();
        let mut last = String::new();
        for node in nodes.iter().cloned() {
            let answer: DirectoryAnswer = match self.call_json(&node, request.clone()).await {
                Ok(answer) => answer,
                Err(NetError::Refused { status, message }) if status < 500 => {
                    return Err(NetError::Refused { status, message });
                }
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let current = self.trust().validators().hash();
            if answer.header.header.validators_hash != current {
                if let Err(fault) = self.follow_validator_changes(&node).await {
                    evidence.push(NodeEvidence { node, fault });
                    continue;
                }
            }
            let mut trust = self.trust().clone();
            match directory_count(&mut trust, role, &answer) {
                Ok(count) => return Ok(count),
                Err(fault) => evidence.push(NodeEvidence { node, fault }),
            }
        }
        if evidence.is_empty() {
            return Err(NetError::NoAnswer {
                tried: nodes.len(),
                last,
            });
        }
        Err(no_verified_answer(evidence, NetError::Unverified))
    }

    /// Follows the changes of validator set that `node` lists, each checked under the set
    /// before it; a node that lists a bogus one is evidence.
    async fn follow_validator_changes(&self, node: &str) -> Result<(), NodeFault> {
        let answer: ValidatorsAnswer = self
            .call_json(node, HttpRequest::get("/v1/validators"))
            .await
            .map_err(|e| NodeFault::NoAnswer(e.to_string()))?;
        let mut trust = self.trust();
        for transition in answer.transitions {
            let from = transition.last.header.validators_hash;
            if from != trust.validators().hash() {
                continue; // one we followed already, or one after a change we lack
            }
            match trust.follow_transition(&transition.last, transition.next) {
                Verdict::Success => {}
                other => return Err(NodeFault::Header(other)),
            }
        }
        Ok(())
    }

    /// Sends `plan`'s request to n nodes in parallel (more when some do not answer) and
    /// verifies every answer; see [`emrshare_core::lookup::verify_answers`]. When no answer verifies
    /// and nodes remain, asks n more, and fails closed only when all have failed. On success
    /// the client accepts the oldest verified header, so an honest node a block behind the
    /// others is not taken for a liar next time, while a header older than that is refused as
    /// stale.
    pub async fn lookup(&self, plan: &LookupPlan) -> Result<LookupOutcome, NetError> {
        let path = plan.path();
        let nodes = self.rotation();
        let wanted = self.config.n.clamp(1, nodes.len());
        let mut answers: Vec<(String, Result<BucketAnswer, String>)> = Vec::new();
        let mut evidence = Vec::new();
        let mut queue = nodes.into_iter();
        loop {
            // n answers from the nodes in turn (more when some do not answer) ...
            let mut got = 0;
            while got < wanted {
                let batch: Vec<String> = queue.by_ref().take(wanted - got).collect();
                if batch.is_empty() {
                    break;
                }
                let calls = batch.iter().map(|node| {
                    let request = HttpRequest::get(path.clone());
                    async move {
                        (
                            node.clone(),
                            self.call_json::<BucketAnswer>(node, request).await,
                        )
                    }
                });
                for (node, answer) in join_all(calls).await {
                    match answer {
                        Ok(answer) => {
                            got += 1;
                            answers.push((node, Ok(answer)));
                        }
                        Err(NetError::NoAnswer { last, .. }) => evidence.push(NodeEvidence {
                            node,
                            fault: NodeFault::NoAnswer(last),
                        }),
                        Err(e) => {
                            got += 1;
                            answers.push((node, Err(e.to_string())));
                        }
                    }
                }
            }
            // ... verified; when none verifies and nodes remain, n more.
            match self
                .verify_lookup(plan, answers.clone(), &mut evidence)
                .await
            {
                // (No answer verified: every node lied, or every node was silent or behind.)
                Err(
                    NetError::Lookup(LookupError::NoVerifiedAnswer(_)) | NetError::NoAnswer { .. },
                ) if queue.len() > 0 => {}
                result => return result,
            }
        }
    }

    async fn verify_lookup(
        &self,
        plan: &LookupPlan,
        answers: Vec<(String, Result<BucketAnswer, String>)>,
        evidence: &mut Vec<NodeEvidence>,
    ) -> Result<LookupOutcome, NetError> {
        // An answer under a validator set the client does not know yet: learn the changes
        // from that node (checked), then verify.
        let current = self.trust().validators().hash();
        let mut newer_sets: Vec<String> = answers
            .iter()
            .filter(|(_, a)| {
                a.as_ref()
                    .is_ok_and(|a| a.header.header.validators_hash != current)
            })
            .map(|(node, _)| node.clone())
            .collect();
        newer_sets.dedup();
        for node in newer_sets {
            if let Err(fault) = self.follow_validator_changes(&node).await {
                evidence.push(NodeEvidence { node, fault });
            }
        }
        let trust = self.trust().clone();
        let mut outcome =
            emrshare_core::lookup::verify_answers(&trust, plan, answers).map_err(|e| match e {
                LookupError::NoVerifiedAnswer(mut more) => {
                    more.extend(evidence.iter().cloned());
                    no_verified_answer(more, |more| {
                        NetError::Lookup(LookupError::NoVerifiedAnswer(more))
                    })
                }
                other => NetError::Lookup(other),
            })?;
        let (lagging, faults): (Vec<_>, Vec<_>) =
            evidence.drain(..).partition(|e| e.fault.is_lag());
        outcome.evidence.extend(faults);
        outcome.lagging.extend(lagging);
        self.trust().verify_header(&outcome.oldest);
        Ok(outcome)
    }

    /// The newest certified header a node serves, verified (and then trusted).
    pub async fn latest_header(
        &self,
    ) -> Result<emrshare_core::ledger::block::CertifiedHeader, NetError> {
        self.verified(HttpRequest::get("/v1/header/latest"), |trust, header| {
            verify_header(trust, &header)?;
            Ok(header)
        })
        .await
    }

    /// A grant, proven under a certified header (asked of nodes in turn until one answer
    /// verifies).
    pub async fn grant(&self, grant_id: &str) -> Result<VerifiedGrant, NetError> {
        let request = HttpRequest::get(format!("/v1/grants/{}", path_segment(grant_id)));
        self.verified(request, |trust, answer: GrantAnswer| {
            verify_header(trust, &answer.header)?;
            let key = grant_key(grant_id);
            let value = trust
                .verify_value(
                    &key,
                    answer.grant.value.as_deref().map(str::as_bytes),
                    &answer.grant.proof,
                )
                .map_err(|e| NodeFault::Entry {
                    id: PartyId::new("grant").expect("valid"),
                    error: e,
                })?;
            let grant = value
                .map(serde_json::from_slice::<GrantEntry>)
                .transpose()
                .map_err(|_| NodeFault::Malformed("a value of another shape".into()))?;
            Ok(VerifiedGrant {
                grant,
                height: answer.header.header.height,
            })
        })
        .await
    }

    /// A record's account and its access logs `from..` (as many as one answer holds), each
    /// proven: a node can neither hide the account, nor a log below the count the proven
    /// account states, nor show one it does not hold.
    pub async fn record_account(
        &self,
        record: &PartyId,
        from: u64,
    ) -> Result<VerifiedRecordAccount, NetError> {
        let request = HttpRequest::get(format!("/v1/records/{record}?from={from}"));
        self.verified(request, |trust, answer: RecordAnswer| {
            verify_header(trust, &answer.header)?;
            let proven = verify_record_answer(trust, record, from, &answer)?;
            Ok(VerifiedRecordAccount {
                record: proven.record,
                logs: proven.logs,
                height: answer.header.header.height,
            })
        })
        .await
    }

    /// Asks a node for a record voucher: `request` is the patient's signed
    /// [`RecordVoucherRequest`] (the nodes in turn, until one signs). The answer is not
    /// trusted: the caller finalizes the blind signature under the genesis key it names,
    /// which checks it.
    pub async fn record_voucher(
        &self,
        request: &RecordVoucherRequest,
    ) -> Result<RecordVoucherAnswer, NetError> {
        let body = serde_json::to_vec(request).expect("requests serialize");
        self.first_answer(HttpRequest::post_json("/v1/record-vouchers", body))
            .await
    }

    /// Asks nodes in turn until one answer passes `verify` (under a copy of the client's
    /// trust, which then accepts that answer's header). When no answer verifies and some
    /// node was only behind (a header older than the trusted one: it has not applied the
    /// latest block yet), asks again a little later, a few times.
    async fn verified<A: DeserializeOwned, R>(
        &self,
        request: HttpRequest,
        verify: impl Fn(&mut LightClient, A) -> Result<R, NodeFault>,
    ) -> Result<R, NetError> {
        let mut pause = Duration::from_millis(100);
        loop {
            let evidence = match self.verified_once(request.clone(), &verify).await? {
                Ok(result) => return Ok(result),
                Err(evidence) => evidence,
            };
            let behind = evidence
                .iter()
                .any(|e| matches!(e.fault, NodeFault::Header(_)) && e.fault.is_lag());
            if !behind || pause > MAX_LAG_PAUSE || evidence.iter().any(|e| !e.fault.is_lag()) {
                return Err(no_verified_answer(evidence, NetError::Unverified));
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }

    /// One round of [`Self::verified`]: the result, or what each node did wrong (an error
    /// status below 500 is the request's fault, not the node's, and ends the round).
    async fn verified_once<A: DeserializeOwned, R>(
        &self,
        request: HttpRequest,
        verify: &impl Fn(&mut LightClient, A) -> Result<R, NodeFault>,
    ) -> Result<Result<R, Vec<NodeEvidence>>, NetError> {
        let mut evidence = Vec::new();
        for node in self.rotation() {
            match self.verified_by(&node, &request, verify).await? {
                Ok(result) => return Ok(Ok(result)),
                Err(fault) => evidence.push(NodeEvidence { node, fault }),
            }
        }
        Ok(Err(evidence))
    }

    /// `node`'s answer to `request`, verified. An answer under a validator set the client
    /// does not know yet (the chain re-ranks its validators every cycle) makes the client
    /// follow the changes that node lists, each checked under the set before it, and ask
    /// again once.
    async fn verified_by<A: DeserializeOwned, R>(
        &self,
        node: &str,
        request: &HttpRequest,
        verify: &impl Fn(&mut LightClient, A) -> Result<R, NodeFault>,
    ) -> Result<Result<R, NodeFault>, NetError> {
        let mut followed = false;
        loop {
            let answer = match self.call_json::<A>(node, request.clone()).await {
                Ok(answer) => answer,
                Err(NetError::Refused { status, message }) if status < 500 => {
                    return Err(NetError::Refused { status, message });
                }
                Err(e) => return Ok(Err(NodeFault::NoAnswer(e.to_string()))),
            };
            let mut trust = self.trust().clone();
            match verify(&mut trust, answer) {
                Ok(result) => {
                    *self.trust() = trust;
                    return Ok(Ok(result));
                }
                Err(NodeFault::Header(Verdict::Invalid(InvalidReason::WrongValidatorSet)))
                    if !followed =>
                {
                    followed = true;
                    if let Err(fault) = self.follow_validator_changes(node).await {
                        return Ok(Err(fault));
                    }
                }
                Err(fault) => return Ok(Err(fault)),
            }
        }
    }

    /// Stores a blob on up to n nodes (at least one must take it); `claim` is the owner's
    /// signed claim (see the node's API). Returns its address.
    pub async fn put_blob(&self, bytes: &[u8], claim: &str) -> Result<Hash, NetError> {
        let hash = emrshare_core::content_hash(bytes);
        let path = format!("/v1/blobs/{}", hash.to_hex());
        let nodes = self.rotation();
        let wanted = self.config.n.clamp(1, nodes.len());
        let calls = nodes.iter().take(wanted).map(|node| {
            let request = HttpRequest {
                method: Method::Put,
                path: path.clone(),
                headers: vec![
                    ("content-type", "application/octet-stream".into()),
                    ("x-emr-owner", claim.to_owned()),
                ],
                body: bytes.to_vec(),
            };
            async move { self.call(node, request).await }
        });
        let results = join_all(calls).await;
        if results.iter().any(Result::is_ok) {
            return Ok(hash);
        }
        Err(results
            .into_iter()
            .find_map(Result::err)
            .unwrap_or(NetError::NoNodes))
    }

    /// Fetches a blob with the requester's signed AccessLog transaction (which the serving
    /// node commits); tries the nodes in turn, as only some may hold it. The bytes are
    /// checked against their address.
    pub async fn get_blob(
        &self,
        hash: &Hash,
        access: &SignedTransaction,
    ) -> Result<Vec<u8>, NetError> {
        let request = HttpRequest {
            method: Method::Get,
            path: format!("/v1/blobs/{}", hash.to_hex()),
            headers: vec![("x-emr-access", access.as_jws().to_owned())],
            body: Vec::new(),
        };
        let mut last = NetError::NoNodes;
        for node in self.rotation() {
            match self.call(&node, request.clone()).await {
                Ok(bytes) if emrshare_core::content_hash(&bytes) == *hash => return Ok(bytes),
                Ok(_) => {
                    last = NetError::Malformed(format!("{node}: blob does not match its address"))
                }
                Err(NetError::Refused {
                    status: 404,
                    message,
                }) => {
                    last = NetError::Refused {
                        status: 404,
                        message,
                    }
                }
                Err(e @ NetError::Refused { .. }) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The certified blocks up to `to`, each header verified from genesis (following the
    /// chain's changes of validator set) and its transactions checked against the header's
    /// root: the basis of an audit log. Walks one node's chain from height 1; a node that
    /// lags (`to` came from a node ahead of it) is waited for a little, and a node whose
    /// blocks do not verify is evidence, and the next node is walked instead.
    pub async fn verified_blocks(&self, to: u64) -> Result<Vec<VerifiedBlock>, NetError> {
        let mut evidence = Vec::new();
        for node in self.rotation() {
            match self.walk_blocks(&node, to).await {
                Ok(blocks) => return Ok(blocks),
                Err(e @ NetError::Genesis(_)) => return Err(e),
                Err(e) => evidence.push(NodeEvidence {
                    node,
                    fault: NodeFault::NoAnswer(e.to_string()),
                }),
            }
        }
        Err(NetError::Unverified(evidence))
    }

    /// One node's certified blocks 1..=`to`, verified (see [`NodeClient::verified_blocks`]).
    async fn walk_blocks(&self, node: &str, to: u64) -> Result<Vec<VerifiedBlock>, NetError> {
        let genesis = &self.config.genesis;
        let mut trust = LightClient::new(&genesis.chain_id, genesis.validators.clone())
            .map_err(|e| NetError::Genesis(e.to_string()))?;
        let changes: ValidatorsAnswer = self
            .call_json(node, HttpRequest::get("/v1/validators"))
            .await?;
        let mut blocks = Vec::new();
        for height in 1..=to {
            let block = self.block_at(node, height).await?;
            let bad = |what: &str| NetError::Malformed(format!("{node}: block {height}: {what}"));
            if !matches!(
                trust.verify_header(&block.certified_header()),
                Verdict::Success
            ) {
                return Err(bad("certificate does not verify"));
            }
            let txs = block
                .txs
                .iter()
                .map(|t| SignedTransaction::parse(t))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| bad("malformed transaction"))?;
            if emrshare_core::ledger::block::tx_root(&txs) != block.header.tx_root {
                return Err(bad("transactions do not match the header"));
            }
            if block.header.next_validators_hash != block.header.validators_hash {
                let next = changes
                    .transitions
                    .iter()
                    .find(|t| t.last.header == block.header)
                    .ok_or_else(|| bad("change of validator set not listed"))?;
                let verdict = trust.follow_transition(&next.last, next.next.clone());
                if verdict != Verdict::Success {
                    return Err(bad("change of validator set does not verify"));
                }
            }
            blocks.push(VerifiedBlock {
                header: block.header,
                txs,
            });
        }
        Ok(blocks)
    }

    /// The block at `height` from `node`; a node that has not applied it yet (validators
    /// apply a decided block each in its own time) is asked again within the answer timeout.
    async fn block_at(
        &self,
        node: &str,
        height: u64,
    ) -> Result<emrshare_core::ledger::block::CertifiedBlock, NetError> {
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        let path = format!("/v1/blocks/{height}");
        loop {
            match self.call_json(node, HttpRequest::get(path.clone())).await {
                Err(NetError::Refused { status: 404, .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// `id`'s registry entry, or its proven absence, asked by name (not k-anonymous: for a
    /// party's own ID), proven under a certified header.
    pub async fn registry_entry(
        &self,
        id: &PartyId,
    ) -> Result<Option<emrshare_core::ledger::verify::VerifiedEntry>, NetError> {
        let body = serde_json::to_vec(&LookupRequest::new(std::slice::from_ref(id)))
            .expect("requests serialize");
        let request = HttpRequest::post_json("/v1/registry/lookup", body);
        self.verified(request, |trust, answer: LookupResponse| {
            verify_header(trust, &answer.header)?;
            let [entry] = answer.entries.as_slice() else {
                return Err(NodeFault::Malformed("one entry per ID asked".into()));
            };
            if &entry.id != id {
                return Err(NodeFault::Malformed("an entry of another ID".into()));
            }
            trust
                .verify_registry_entry(id, entry.value.as_deref().map(str::as_bytes), &entry.proof)
                .map_err(|error| NodeFault::Entry {
                    id: id.clone(),
                    error,
                })
        })
        .await
    }

    /// Polls `id`'s registry entry until the chain shows it registered (or `limit` passes).
    pub async fn wait_registered(
        &self,
        id: &PartyId,
        limit: Duration,
    ) -> Result<emrshare_core::ledger::verify::VerifiedEntry, NetError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok(Some(entry)) = self.registry_entry(id).await {
                return Ok(entry);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(NetError::NoAnswer {
                    tried: 0,
                    last: format!("{id} not registered within {limit:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `id`'s transaction `sequence` is committed: seen at one node, then at
    /// every other node that answers (each validator applies a decided block in its own
    /// time, and the next request may go to any of them), within `limit`.
    pub async fn wait_sequence(
        &self,
        id: &PartyId,
        sequence: u64,
        limit: Duration,
    ) -> Result<(), NetError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self
                .next_sequence(id)
                .await
                .is_ok_and(|next| next > sequence)
            {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(NetError::NoAnswer {
                    tried: 0,
                    last: format!("transaction {sequence} of {id} not committed within {limit:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The others: a node that does not answer is not waited for; one that lags is, a
        // little (it is at most a block or two behind), never past the limit.
        let path = format!("/v1/sequence/{id}");
        for node in self.rotation() {
            loop {
                let answer: Result<SequenceAnswer, NetError> =
                    self.call_json(&node, HttpRequest::get(path.clone())).await;
                match answer {
                    Ok(answer) if answer.next <= sequence => {}
                    _ => break,
                }
                if tokio::time::Instant::now() >= deadline {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}

/// The longest pause before asking nodes that were behind again (the pauses double from
/// 100 ms: about 1.5 s in all, several blocks).
const MAX_LAG_PAUSE: Duration = Duration::from_millis(800);

/// What to report when no answer verified. Nodes that only lagged (no answer in time, or a
/// header older than one already trusted) are unavailable, not dishonest: when every node
/// did, no node answered; otherwise the rest is the evidence, made into an error by `faults`.
fn no_verified_answer(
    evidence: Vec<NodeEvidence>,
    faults: impl FnOnce(Vec<NodeEvidence>) -> NetError,
) -> NetError {
    if evidence.iter().all(|e| e.fault.is_lag()) {
        return NetError::NoAnswer {
            tried: evidence.len(),
            last: evidence
                .last()
                .map(|e| format!("{}: {}", e.node, e.fault))
                .unwrap_or_default(),
        };
    }
    faults(evidence.into_iter().filter(|e| !e.fault.is_lag()).collect())
}

fn verify_header(
    trust: &mut LightClient,
    header: &emrshare_core::ledger::block::CertifiedHeader,
) -> Result<(), NodeFault> {
    match trust.verify_header(header) {
        Verdict::Success => Ok(()),
        other => Err(NodeFault::Header(other)),
    }
}

/// The size a role's directory head proves, checked under `trust` (which then holds the
/// answer's header).
fn directory_count(
    trust: &mut LightClient,
    role: Role,
    answer: &DirectoryAnswer,
) -> Result<u64, NodeFault> {
    verify_header(trust, &answer.header)?;
    let head = trust
        .verify_value(
            &directory_head_key(role),
            answer.head.value.as_deref().map(str::as_bytes),
            &answer.head.proof,
        )
        .map_err(NodeFault::Head)?;
    DirectoryHead::from_proven(head)
        .map(|head| head.count)
        .map_err(NodeFault::Head)
}

/// Percent-encodes what is not a URL path's unreserved character.
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
