//! Bounded load generator for a consortium of `--nodes` validators on 127.0.0.1 (by default
//! 4: 3 proposers of voting power 2, 1 auditor of power 1), talking to the nodes over their
//! HTTP API only.
//!
//!     cargo build --release -p emrshare-node          # the node binary it starts
//!     cargo run --release -p emrshare-node --example loadgen -- --secs 20
//!
//! It runs `emrshare-node init` into a temporary folder, starts the five nodes (the release
//! binary next to this example's executable, or `--node-bin`), signs every transaction it
//! will send (fresh ES256 keys; one shared RSA-2048 encryption key, since RSA key generation
//! is slow and the state machine does not compare encryption keys), and then measures:
//!
//! 1. k = 10 bucket lookups/s against one node (`GET /v1/directory/hospital/bucket`: the
//!    bucket a thin client asks for a k = 10 lookup among the 10 hospitals registered, and
//!    committed on every node, just before; `--concurrency` in flight, `--secs` seconds). One
//!    answer is first decoded with `ledger::wire` and verified from genesis as a thin client
//!    would (header, directory head, bucket proof, entries), and again after the load;
//! 2. committed transactions/s: `--txs` admissions of fresh institutions (each approved by
//!    the council's threshold of nodes),
//!    submitted round-robin to the five nodes (`--submit-concurrency` in flight, at most
//!    `--rate` per second if given), timed from the first submit until every acknowledged one
//!    is in a certified block that every node has applied (polling `/v1/health` every 25 ms
//!    and fetching each new block once); finality: from a submit's acknowledgement to its
//!    certified block, in milliseconds and in blocks decided in between.
//!
//! It also reports the CPU seconds each node process and the generator used in each phase
//! (from `/proc`). Everything is bounded: each phase has its own limit, and at the overall
//! `--deadline` a watchdog kills the nodes (by PID) and exits. The nodes are killed on every
//! exit path: normal end, error, panic, Ctrl-C, deadline.

use anyhow::{Context as _, Result, ensure};
use clap::Parser;
use emrshare_core::keys::{DecryptionKey, PartyId, RsaBits, SigningKey};
use emrshare_core::ledger::block::{CertifiedBlock, Genesis};
use emrshare_core::ledger::tx::{Role, Transaction, TxBody};
use emrshare_core::ledger::verify::LightClient;
use emrshare_core::ledger::wire::{
    BucketAnswer, ErrorBody, HealthAnswer, SubmitRequest, SubmitResponse,
};
use emrshare_core::lookup::{LookupPlan, QuerySize, verify_answers};
use emrshare_core::{b64, content_hash, strict_json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const K: usize = 10;

#[derive(Parser, Debug)]
#[command(about = "Bounded load generator for a loopback emrshare consortium")]
struct Args {
    /// Validators (each a node process).
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// How many of them propose (default: all but a third; the rest audit).
    #[arg(long)]
    proposers: Option<usize>,
    /// Seconds of the lookup phase.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// Transactions of the commit phase.
    #[arg(long, default_value_t = 4000)]
    txs: usize,
    /// Lookups in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Submits in flight.
    #[arg(long, default_value_t = 32)]
    submit_concurrency: usize,
    /// Most submits started per second (0: as fast as the in-flight limit allows).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// The node the lookups go to (default: the last, an auditor).
    #[arg(long)]
    lookup_node: Option<usize>,
    /// The least time between blocks, given to `init`.
    #[arg(long, default_value_t = 100)]
    block_ms: u64,
    /// Longest wait, from the first submit, for every transaction to commit everywhere.
    #[arg(long, default_value_t = 120)]
    commit_timeout: u64,
    /// Overall limit in seconds: after it the nodes are killed and the run abandoned.
    #[arg(long, default_value_t = 420)]
    deadline: u64,
    /// First of 2 x nodes consecutive ports, HTTP then libp2p (default: free ones found).
    #[arg(long)]
    base_port: Option<u16>,
    /// The `emrshare-node` binary (default: the release binary next to this example).
    #[arg(long)]
    node_bin: Option<PathBuf>,
    /// Worker threads of the generator's own runtime (it shares the machine with the nodes).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// After the load: kill the last node, let the others decide this many blocks, restart
    /// it and time its catch-up (0: skip).
    #[arg(long, default_value_t = 0)]
    catchup_blocks: u64,
    /// Keep the consortium folder (configs, data, node logs) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!((2..=64).contains(&args.nodes), "--nodes is 2 to 64");
    ensure!(
        args.lookup_node.is_none_or(|n| n < args.nodes),
        "--lookup-node is 0..{}",
        args.nodes
    );
    ensure!(
        args.proposers.is_none_or(|p| (1..=args.nodes).contains(&p)),
        "--proposers is 1 to --nodes"
    );
    ensure!(args.txs >= K, "--txs must be at least {K}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// --- the consortium's processes ---------------------------------------------------------------

/// The node processes; killed (SIGKILL, by PID) and reaped by [`stop`].
type Children = Arc<Mutex<Vec<Child>>>;

fn stop(children: &Children) {
    let mut children = children.lock().unwrap_or_else(|p| p.into_inner());
    for child in children.iter_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
    children.clear();
}

struct Consortium {
    dir: PathBuf,
    keep: bool,
    ports: Vec<u16>,
    pids: Vec<u32>,
    children: Children,
    genesis: Genesis,
}

impl Drop for Consortium {
    fn drop(&mut self) {
        stop(&self.children);
        if self.keep {
            eprintln!("kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Consortium {
    fn url(&self, node: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[node])
    }
}

fn node_binary(args: &Args) -> PathBuf {
    match &args.node_bin {
        Some(bin) => bin.clone(),
        None => emrshare_node::testkit::node_binary(),
    }
}

/// The HTTP ports of `nodes` nodes, with `nodes` more for libp2p after them, all free now
/// (from `--base-port`, or found).
fn free_ports(base: Option<u16>, nodes: usize) -> Result<Vec<u16>> {
    let n = u16::try_from(nodes)?;
    let base = match base {
        Some(base) => {
            let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
            ensure!(
                (0..2 * n).all(|i| free(base + i)),
                "ports {base}.. are in use"
            );
            base
        }
        None => emrshare_node::testkit::free_ports(2 * n),
    };
    Ok((0..n).map(|i| base + i).collect())
}

impl Args {
    fn proposers(&self) -> usize {
        self.proposers.unwrap_or(self.nodes - self.nodes / 3)
    }
}

fn start(args: &Args, started: Instant) -> Result<Consortium> {
    let bin = node_binary(args);
    let dir = tempfile::Builder::new()
        .prefix("emrshare-loadgen-")
        .tempdir()?
        .keep();
    // Removes the folder if `init` fails; the consortium's own Drop takes over after that.
    struct Cleanup<'a>(Option<&'a Path>);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            if let Some(dir) = self.0 {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
    let mut cleanup = Cleanup((!args.keep).then_some(dir.as_path()));
    let ports = free_ports(args.base_port, args.nodes)?;
    let status = Command::new(&bin)
        .args(["init", "--dir"])
        .arg(&dir)
        .args(["--nodes", &args.nodes.to_string()])
        .args(["--proposers", &args.proposers().to_string()])
        .args(["--auditors", &(args.nodes - args.proposers()).to_string()])
        .args(["--base-port", &ports[0].to_string()])
        .args(["--block-ms", &args.block_ms.to_string()])
        .args(["--chain-id", "loadgen"])
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    ensure!(status.success(), "emrshare-node init failed: {status}");
    let genesis: Genesis = strict_json::parse(&std::fs::read(dir.join("genesis.json"))?)?;
    cleanup.0 = None;
    let children: Children = Arc::default();
    let mut consortium = Consortium {
        dir: dir.clone(),
        keep: args.keep,
        ports,
        pids: Vec::new(),
        children: Arc::clone(&children),
        genesis,
    };
    // The watchdog: at the deadline, whatever the generator is doing, the nodes go.
    let deadline = started + Duration::from_secs(args.deadline);
    {
        let children = Arc::clone(&children);
        let (dir, keep) = (dir.clone(), args.keep);
        std::thread::spawn(move || {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            eprintln!("deadline reached: stopping the nodes");
            stop(&children);
            if !keep {
                let _ = std::fs::remove_dir_all(&dir);
            }
            std::process::exit(3);
        });
    }
    {
        let children = Arc::clone(&children);
        let (dir, keep) = (dir.clone(), args.keep);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: stopping the nodes");
                stop(&children);
                if !keep {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                std::process::exit(130);
            }
        });
    }
    for i in 0..args.nodes {
        let log = std::fs::File::create(dir.join(format!("node-{i}.log")))?;
        let child = Command::new(&bin)
            .args(["run", "--config"])
            .arg(dir.join(format!("node-{i}/config.toml")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        consortium.pids.push(child.id());
        children.lock().unwrap().push(child);
    }
    Ok(consortium)
}

// --- measurements -----------------------------------------------------------------------------

/// CPU seconds (user + system) of a process so far, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".into(),
    };
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command name's closing parenthesis start at field 3 (state).
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0 // utime, stime; USER_HZ is 100 on Linux
}

/// CPU seconds of the five nodes and of the generator.
fn cpu_snapshot(c: &Consortium) -> Vec<f64> {
    let mut all: Vec<f64> = c.pids.iter().map(|&pid| cpu_seconds(Some(pid))).collect();
    all.push(cpu_seconds(None));
    all
}

fn cpu_delta(before: &[f64], after: &[f64]) -> Vec<f64> {
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

fn percentile<T: Copy + Ord>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    Some(sorted[rank.min(sorted.len() - 1)])
}

async fn health(http: &reqwest::Client, c: &Consortium, node: usize) -> Option<HealthAnswer> {
    let reply = http.get(c.url(node, "/v1/health")).send().await.ok()?;
    let bytes = reply.bytes().await.ok()?;
    strict_json::parse(&bytes).ok()
}

async fn wait_healthy(http: &reqwest::Client, c: &Consortium, limit: Duration) -> Result<()> {
    let until = Instant::now() + limit;
    for node in 0..c.ports.len() {
        while health(http, c, node).await.is_none() {
            ensure!(
                Instant::now() < until,
                "node {node} did not come up; logs in {}",
                c.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

struct Presigned {
    party: PartyId,
    /// `{"jws": ...}`, ready to post.
    body: axum::body::Bytes,
}

/// The chain and the council members (every node, `init`'s default council) that approve
/// the generator's admissions.
struct Council<'a> {
    chain_id: &'a str,
    members: &'a [emrshare_core::PrivateKeySet],
}

/// Fresh institutions' admissions (IDs `hospital:<prefix>-<i>`), approved by the council's
/// threshold of members, signed before any timing; and the index of each by transaction ID.
fn presign(
    council: &Council,
    prefix: &str,
    n: usize,
    encryption_jwk: &emrshare_core::keys::Jwk,
) -> (Vec<Presigned>, HashMap<String, usize>) {
    use emrshare_core::ledger::governance::{GovAction, Proposal, default_threshold};
    let chain_id = council.chain_id;
    let t = default_threshold(council.members.len());
    let expires_at = now_ms() / 1000 + 24 * 3600;
    let mut by_id = HashMap::with_capacity(n);
    let txs = (0..n)
        .map(|i| {
            let key = SigningKey::generate();
            let party = PartyId::new(format!("hospital:{prefix}-{i}")).expect("valid ID");
            let proposal = Proposal::new(
                chain_id,
                expires_at,
                GovAction::Admit {
                    id: party.clone(),
                    role: Role::Hospital,
                    signing_jwk: key.verifying_key().to_jwk(None),
                    encryption_jwk: encryption_jwk.clone(),
                    valid_from: 0,
                    valid_until: u64::MAX,
                    voucher_key: None,
                },
            );
            let approvals = council.members[..t]
                .iter()
                .map(|m| proposal.approve(&m.id, &m.signing))
                .collect();
            let signed = Transaction {
                chain_id: chain_id.into(),
                sender: party.clone(),
                sequence: 0,
                body: TxBody::Govern {
                    proposal,
                    approvals,
                },
            }
            .sign(&key);
            by_id.insert(signed.id_text(), i);
            let body = serde_json::to_vec(&SubmitRequest {
                jws: signed.as_jws().into(),
            })
            .expect("serializes");
            Presigned {
                party,
                body: body.into(),
            }
        })
        .collect();
    (txs, by_id)
}

#[derive(Clone, Copy)]
struct Ack {
    at: Instant,
}

#[derive(Clone, Copy)]
struct Inclusion {
    height: u64,
    seen: Instant,
}

#[derive(Default)]
struct ChainView {
    /// Per transaction index, the certified block it is in, once seen.
    included: HashMap<usize, Inclusion>,
    /// When every node had reached each height (first poll that saw it).
    all_at: BTreeMap<u64, Instant>,
    heights: Vec<u64>,
    /// Load transactions per block, by height.
    block_sizes: BTreeMap<u64, usize>,
    /// When the poller first fetched each block.
    fetched_at: BTreeMap<u64, Instant>,
    fetch_errors: usize,
}

/// Polls the nodes' heights every 25 ms and fetches each new block once (from the highest
/// node), recording where each load transaction landed.
async fn poll_chain(
    http: reqwest::Client,
    c: Arc<Consortium>,
    by_id: Arc<HashMap<String, usize>>,
    view: Arc<Mutex<ChainView>>,
    done: Arc<AtomicBool>,
) {
    let mut fetched = 0u64;
    let mut all_reached = 0u64;
    while !done.load(Ordering::Relaxed) {
        let mut heights = Vec::with_capacity(c.ports.len());
        for node in 0..c.ports.len() {
            heights.push(health(&http, &c, node).await.map_or(0, |h| h.height));
        }
        let now = Instant::now();
        let min = heights.iter().copied().min().unwrap_or(0);
        let (source, &max) = heights
            .iter()
            .enumerate()
            .max_by_key(|(_, h)| **h)
            .expect("five nodes");
        {
            let mut view = view.lock().unwrap();
            for h in all_reached + 1..=min {
                view.all_at.insert(h, now);
            }
            view.heights = heights.clone();
        }
        all_reached = all_reached.max(min);
        while fetched < max {
            let height = fetched + 1;
            let block = async {
                let reply = http
                    .get(c.url(source, &format!("/v1/blocks/{height}")))
                    .send()
                    .await
                    .ok()?;
                let bytes = reply.bytes().await.ok()?;
                strict_json::parse::<CertifiedBlock>(&bytes).ok()
            }
            .await;
            let seen = Instant::now();
            let Some(block) = block else {
                view.lock().unwrap().fetch_errors += 1;
                break;
            };
            let mut view = view.lock().unwrap();
            let mut ours = 0;
            for jws in &block.txs {
                let id = b64::encode(content_hash(jws.as_bytes()));
                if let Some(&i) = by_id.get(&id) {
                    ours += 1;
                    view.included.insert(i, Inclusion { height, seen });
                }
            }
            view.block_sizes.insert(height, ours);
            view.fetched_at.insert(height, seen);
            fetched = height;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

struct CommitReport {
    submitted: usize,
    acked: usize,
    refused: Vec<(usize, String)>,
    committed: usize,
    /// First submit to the last acknowledged transaction in a block every node applied.
    elapsed: Duration,
    complete: bool,
    submit_time: Duration,
    finality_slots: Vec<i64>,
    finality_ms: Vec<u64>,
    blocks: usize,
    largest_block: usize,
    cpu: Vec<f64>,
}

async fn commit_phase(
    args: &Args,
    http: &reqwest::Client,
    c: &Arc<Consortium>,
    txs: Arc<Vec<Presigned>>,
    by_id: Arc<HashMap<String, usize>>,
) -> Result<CommitReport> {
    let view = Arc::new(Mutex::new(ChainView::default()));
    let done = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn(poll_chain(
        http.clone(),
        Arc::clone(c),
        Arc::clone(&by_id),
        Arc::clone(&view),
        Arc::clone(&done),
    ));
    let cpu_before = cpu_snapshot(c);
    let first = Instant::now();
    let limit = first + Duration::from_secs(args.commit_timeout);
    let rate = args.rate;
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.submit_concurrency.max(1) {
        let (http, c, txs, next) = (
            http.clone(),
            Arc::clone(c),
            Arc::clone(&txs),
            Arc::clone(&next),
        );
        workers.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            let mut refused = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= txs.len() || Instant::now() > limit {
                    break;
                }
                if let Some(offset_us) = (i as u64 * 1_000_000).checked_div(rate) {
                    let due = first + Duration::from_micros(offset_us);
                    tokio::time::sleep_until(due.into()).await;
                }
                let reply = http
                    .post(c.url(i % c.ports.len(), "/v1/tx"))
                    .header("content-type", "application/json")
                    .body(txs[i].body.clone())
                    .send()
                    .await;
                match reply {
                    Ok(reply) => {
                        let status = reply.status().as_u16();
                        let bytes = reply.bytes().await.unwrap_or_default();
                        if status == 202 && strict_json::parse::<SubmitResponse>(&bytes).is_ok() {
                            acks.push((i, Ack { at: Instant::now() }));
                        } else {
                            let why = strict_json::parse::<ErrorBody>(&bytes)
                                .map_or_else(|_| format!("status {status}"), |e| e.error);
                            refused.push((i, why));
                        }
                    }
                    Err(e) => refused.push((i, e.to_string())),
                }
            }
            (acks, refused)
        }));
    }
    let mut acks: HashMap<usize, Ack> = HashMap::new();
    let mut refused = Vec::new();
    for worker in workers {
        let (a, r) = worker.await?;
        acks.extend(a);
        refused.extend(r);
    }
    // Sent, answered or not (a worker that stops at the limit takes one index it never sends).
    let submitted = acks.len() + refused.len();
    let submit_time = first.elapsed();

    // Until every acknowledged transaction is in a block that every node has applied.
    let (complete, end) = loop {
        if acks.is_empty() {
            break (false, Instant::now());
        }
        {
            let view = view.lock().unwrap();
            let last = acks
                .keys()
                .map(|i| view.included.get(i).map(|inc| inc.height))
                .collect::<Option<Vec<u64>>>()
                .map(|hs| hs.into_iter().max().unwrap_or(0));
            if let Some(last) = last {
                if let Some(&at) = view.all_at.get(&last) {
                    break (true, at);
                }
            }
        }
        if Instant::now() > limit {
            break (false, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let cpu = cpu_delta(&cpu_before, &cpu_snapshot(c));
    done.store(true, Ordering::Relaxed);
    let _ = poller.await;

    let view = view.lock().unwrap();
    let mut finality_slots = Vec::new();
    let mut finality_ms = Vec::new();
    for (i, ack) in &acks {
        if let Some(inc) = view.included.get(i) {
            // The last block fetched before the acknowledgement: blocks after it up to the
            // transaction's own are the blocks the transaction waited for.
            let acked_at = view
                .fetched_at
                .iter()
                .filter(|(_, at)| **at <= ack.at)
                .map(|(h, _)| *h)
                .next_back()
                .unwrap_or(0);
            finality_slots.push(inc.height as i64 - acked_at as i64);
            finality_ms.push(inc.seen.saturating_duration_since(ack.at).as_millis() as u64);
        }
    }
    finality_slots.sort_unstable();
    finality_ms.sort_unstable();
    let committed = acks
        .keys()
        .filter(|i| view.included.contains_key(i))
        .count();
    let loaded: Vec<usize> = view
        .block_sizes
        .values()
        .copied()
        .filter(|&n| n > 0)
        .collect();
    Ok(CommitReport {
        submitted,
        acked: acks.len(),
        refused,
        committed,
        elapsed: end.saturating_duration_since(first),
        complete,
        submit_time,
        finality_slots,
        finality_ms,
        blocks: loaded.len(),
        largest_block: loaded.iter().copied().max().unwrap_or(0),
        cpu,
    })
}

/// One bucket lookup, decoded with the wire types and verified from genesis as a thin client
/// would: how many of `ids` it proves registered, and the answer's bytes.
async fn verified_lookup(
    http: &reqwest::Client,
    c: &Consortium,
    node: usize,
    ids: &[PartyId],
    plan: &LookupPlan,
) -> Result<(usize, usize)> {
    let reply = http.get(c.url(node, &plan.path())).send().await?;
    ensure!(reply.status().as_u16() == 200, "lookup: {}", reply.status());
    let bytes = reply.bytes().await?;
    let answer: BucketAnswer = strict_json::parse(&bytes)?;
    let client = LightClient::new(&c.genesis.chain_id, c.genesis.validators.clone())?;
    let outcome = verify_answers(&client, plan, vec![(c.url(node, ""), Ok(answer))])?;
    let present = ids.iter().filter(|id| outcome.bucket.contains(id)).count();
    Ok((present, bytes.len()))
}

/// The plan of a k = 10 lookup of the first of `ids` among the registered hospitals (10: a
/// bucket of the whole directory, as a client would ask).
fn lookup_plan(ids: &[PartyId]) -> Result<LookupPlan> {
    Ok(LookupPlan::new(
        &ids[0],
        Role::Hospital,
        ids.len() as u64,
        QuerySize::K(K),
    )?)
}

/// Submits the lookup IDs' registrations and waits (60 s at most) until every node proves
/// all of them.
async fn register_lookup_ids(
    http: &reqwest::Client,
    c: &Consortium,
    txs: &[Presigned],
) -> Result<()> {
    for (i, tx) in txs.iter().enumerate() {
        let reply = http
            .post(c.url(i % c.ports.len(), "/v1/tx"))
            .header("content-type", "application/json")
            .body(tx.body.clone())
            .send()
            .await?;
        ensure!(
            reply.status().as_u16() == 202,
            "registration refused: {}",
            reply.text().await?
        );
    }
    let ids: Vec<PartyId> = txs.iter().map(|t| t.party.clone()).collect();
    let plan = lookup_plan(&ids)?;
    let until = Instant::now() + Duration::from_secs(60);
    'wait: loop {
        ensure!(
            Instant::now() < until,
            "the lookup IDs did not commit within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        for node in 0..c.ports.len() {
            match verified_lookup(http, c, node, &ids, &plan).await {
                Ok((present, _)) if present == ids.len() => {}
                _ => continue 'wait,
            }
        }
        return Ok(());
    }
}

struct LookupReport {
    node: usize,
    ok: usize,
    errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    bytes_per_answer: usize,
    present: usize,
    cpu: Vec<f64>,
}

async fn lookup_phase(
    args: &Args,
    http: &reqwest::Client,
    c: &Arc<Consortium>,
    ids: Vec<PartyId>,
) -> Result<LookupReport> {
    let node = args.lookup_node.unwrap_or(args.nodes - 1);
    let plan = lookup_plan(&ids)?;
    let (present, bytes_per_answer) = verified_lookup(http, c, node, &ids, &plan).await?;
    let cpu_before = cpu_snapshot(c);
    let start = Instant::now();
    let end = start + Duration::from_secs(args.secs);
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (http, url) = (http.clone(), c.url(node, &plan.path()));
        workers.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut latencies) = (0usize, 0usize, Vec::new());
            while Instant::now() < end {
                let sent = Instant::now();
                let reply = http.get(&url).send().await;
                let good = match reply {
                    Ok(reply) => reply.status().as_u16() == 200 && reply.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if good {
                    ok += 1;
                    latencies.push(sent.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (ok, errors, latencies)
        }));
    }
    let (mut ok, mut errors, mut latencies_us) = (0, 0, Vec::new());
    for worker in workers {
        let (o, e, l) = worker.await?;
        ok += o;
        errors += e;
        latencies_us.extend(l);
    }
    let elapsed = start.elapsed();
    let cpu = cpu_delta(&cpu_before, &cpu_snapshot(c));
    // The node still answers correctly after the load.
    verified_lookup(http, c, node, &ids, &plan).await?;
    latencies_us.sort_unstable();
    Ok(LookupReport {
        node,
        ok,
        errors,
        elapsed,
        latencies_us,
        bytes_per_answer,
        present,
        cpu,
    })
}

async fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let consortium = Arc::new(start(&args, started)?);
    let c = &consortium;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(args.submit_concurrency) + 8)
        .timeout(Duration::from_secs(10))
        // reqwest's rustls has no built-in provider in this workspace: hand it the node's.
        .use_preconfigured_tls(emrshare_node::tls::client_config(None)?)
        .build()?;
    wait_healthy(&http, c, Duration::from_secs(30)).await?;
    eprintln!(
        "{} nodes up on ports {}..{} (PIDs {:?}), folder {}",
        c.ports.len(),
        c.ports[0],
        c.ports[c.ports.len() - 1],
        c.pids,
        c.dir.display()
    );

    let signing = Instant::now();
    let chain_id = c.genesis.chain_id.clone();
    let members: Vec<emrshare_core::PrivateKeySet> = (0..c.ports.len())
        .map(|i| {
            let path = c.dir.join(format!("node-{i}/node.key.json"));
            std::fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| Ok(emrshare_core::PrivateKeySet::from_json(&bytes)?))
        })
        .collect::<Result<_>>()?;
    let n = args.txs;
    let (lookup_txs, load_txs, by_id) = tokio::task::spawn_blocking(move || {
        let encryption_jwk = DecryptionKey::generate(RsaBits::B2048)
            .encryption_key()
            .to_jwk(None);
        let run = now_ms() % 1_000_000;
        let signers = Council {
            chain_id: &chain_id,
            members: &members,
        };
        let (lookup_txs, _) = presign(&signers, &format!("lk{run}"), K, &encryption_jwk);
        let (load_txs, by_id) = presign(&signers, &format!("lg{run}"), n, &encryption_jwk);
        (lookup_txs, load_txs, by_id)
    })
    .await?;
    eprintln!(
        "{} registrations signed in {:.1} s (not timed)",
        lookup_txs.len() + load_txs.len(),
        signing.elapsed().as_secs_f64()
    );

    // The lookup phase's ten IDs, registered and committed on every node first.
    let ids: Vec<PartyId> = lookup_txs.iter().map(|t| t.party.clone()).collect();
    register_lookup_ids(&http, c, &lookup_txs).await?;
    eprintln!("{K} IDs registered; lookups for {} s", args.secs);
    let lookups = lookup_phase(&args, &http, c, ids).await?;

    eprintln!("lookups done; submitting {} transactions", load_txs.len());
    let commit = commit_phase(&args, &http, c, Arc::new(load_txs), Arc::new(by_id)).await?;
    print_report(&args, c, &commit, &lookups);
    if args.catchup_blocks > 0 {
        catch_up_phase(&args, &http, c).await?;
    }
    Ok(())
}

/// Kills the last node (SIGKILL), lets the others decide `--catchup-blocks` blocks without
/// it, restarts it, and times how long it takes to reach the height the others had when it
/// came back (replaying its store, then syncing the rest from its peers).
async fn catch_up_phase(args: &Args, http: &reqwest::Client, c: &Consortium) -> Result<()> {
    let victim = args.nodes - 1;
    let height = |node| async move { health(http, c, node).await.map_or(0, |h| h.height) };
    {
        let mut children = c.children.lock().unwrap_or_else(|p| p.into_inner());
        children[victim].kill()?;
        children[victim].wait()?;
    }
    let from = height(0).await;
    eprintln!(
        "node {victim} killed at height {from}; waiting for {} more blocks",
        args.catchup_blocks
    );
    let until = Instant::now() + Duration::from_secs(args.commit_timeout.max(600));
    while height(0).await < from + args.catchup_blocks {
        ensure!(
            Instant::now() < until,
            "the others did not decide the blocks in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let target = height(0).await;
    let restarted = Instant::now();
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(c.dir.join(format!("node-{victim}.log")))?;
    let child = Command::new(node_binary(args))
        .args(["run", "--config"])
        .arg(c.dir.join(format!("node-{victim}/config.toml")))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    c.children.lock().unwrap_or_else(|p| p.into_inner())[victim] = child;
    while height(victim).await < target {
        ensure!(
            restarted.elapsed() < Duration::from_secs(600),
            "node {victim} did not catch up within 600 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let missed = target - from;
    let took = restarted.elapsed();
    println!();
    println!(
        "| catch-up of a killed node ({missed} blocks behind, restart to the others' height) | {:.1} s ({:.0} blocks/s) | |",
        took.as_secs_f64(),
        missed as f64 / took.as_secs_f64()
    );
    Ok(())
}

fn print_report(args: &Args, c: &Consortium, commit: &CommitReport, lookups: &LookupReport) {
    let slot = c.genesis.block_ms;
    let secs = |d: Duration| d.as_secs_f64();
    let opt = |v: Option<i64>| v.map_or("-".into(), |v| v.to_string());
    let opt_ms = |v: Option<u64>| {
        v.map_or("-".into(), |v| {
            format!("{v} ms ({:.2} block intervals)", v as f64 / slot as f64)
        })
    };
    let lookups_per_s = lookups.ok as f64 / secs(lookups.elapsed);
    let committed_per_s = commit.committed as f64 / secs(commit.elapsed);
    let fs = std::process::Command::new("df")
        .args(["--output=fstype"])
        .arg(&c.dir)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.lines().nth(1).map(str::trim).map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "emrshare loadgen: {} validators ({} proposers, {} auditors) on 127.0.0.1, blocks >= {slot} ms apart, \
         data on {fs}, {cpus} CPUs shared with the generator ({} runtime thread(s))",
        args.nodes,
        args.proposers(),
        args.nodes - args.proposers(),
        args.client_threads
    );
    println!();
    println!("| measure | measured | target |");
    println!("|---|---|---|");
    println!(
        "| k=10 lookups/s, node {} ({} in flight, {:.1} s) | {:.0} | >= 10000 |",
        lookups.node,
        args.concurrency,
        secs(lookups.elapsed),
        lookups_per_s
    );
    println!(
        "| lookup latency p50 / p99 | {:.1} / {:.1} ms | |",
        percentile(&lookups.latencies_us, 50.0).unwrap_or(0) as f64 / 1000.0,
        percentile(&lookups.latencies_us, 99.0).unwrap_or(0) as f64 / 1000.0
    );
    println!(
        "| lookup answers | {} ok, {} errors, {} bytes each, {}/{K} IDs present | |",
        lookups.ok, lookups.errors, lookups.bytes_per_answer, lookups.present
    );
    println!(
        "| committed tx/s ({} txs{}, first submit to committed on all {}) | {:.0}{} | >= 2000 |",
        args.txs,
        if args.rate > 0 {
            format!(", offered at {}/s", args.rate)
        } else {
            String::new()
        },
        args.nodes,
        committed_per_s,
        if commit.complete {
            String::new()
        } else {
            format!(" (incomplete: {} s limit)", args.commit_timeout)
        }
    );
    println!(
        "| transactions | {} submitted, {} acknowledged, {} refused, {} committed, in {:.1} s | |",
        commit.submitted,
        commit.acked,
        commit.refused.len(),
        commit.committed,
        secs(commit.elapsed)
    );
    println!(
        "| submit acknowledgements/s ({} in flight) | {:.0} | |",
        args.submit_concurrency,
        commit.acked as f64 / secs(commit.submit_time)
    );
    println!(
        "| blocks holding them, largest | {}, {} txs | |",
        commit.blocks, commit.largest_block
    );
    println!(
        "| finality, blocks (block's height - height at ack) p50 / p95 / max | {} / {} / {} | <= 2 |",
        opt(percentile(&commit.finality_slots, 50.0)),
        opt(percentile(&commit.finality_slots, 95.0)),
        opt(commit.finality_slots.last().copied())
    );
    println!(
        "| finality, ack to certified block seen, p50 / p95 | {} / {} | |",
        opt_ms(percentile(&commit.finality_ms, 50.0)),
        opt_ms(percentile(&commit.finality_ms, 95.0))
    );
    println!();
    let cpu_row = |name: &str, cpu: &[f64], wall: Duration| {
        let cells: Vec<String> = cpu.iter().map(|s| format!("{s:.1}")).collect();
        println!(
            "| {name} ({:.1} s wall) | {} | {:.0}% |",
            secs(wall),
            cells.join(" | "),
            100.0 * cpu.iter().sum::<f64>() / secs(wall) / cpus.max(1) as f64
        );
    };
    println!("CPU seconds per process in each phase (USER_HZ 100):");
    println!();
    let nodes: Vec<String> = (0..args.nodes).map(|i| format!("node {i}")).collect();
    println!(
        "| phase | {} | generator | machine busy |",
        nodes.join(" | ")
    );
    println!("|---|{}---|---|", "---|".repeat(args.nodes));
    cpu_row("lookups", &lookups.cpu, lookups.elapsed);
    cpu_row("commit", &commit.cpu, commit.elapsed);
    if commit.committed > 0 {
        let per_tx: Vec<String> = commit.cpu[..args.nodes]
            .iter()
            .map(|s| format!("{:.0}", s * 1e6 / commit.committed as f64))
            .collect();
        println!();
        println!(
            "CPU per committed transaction, per node (target <= 150 us): {} us",
            per_tx.join(" / ")
        );
    }
    if !commit.refused.is_empty() {
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, why) in &commit.refused {
            *reasons.entry(why.as_str()).or_default() += 1;
        }
        println!();
        println!("refused submits by reason:");
        for (why, count) in reasons {
            println!("  {count} x {why}");
        }
    }
}
