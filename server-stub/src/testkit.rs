//! The test kit (feature `testkit`): one harness for every test, bench and load generator that
//! runs `emrshare-node` processes on 127.0.0.1. Nodes are killed by the PID we started, when
//! their handle is dropped; waits are bounded and name what they waited for.
//!
//! - [`Provisioned`]: `emrshare-node init` into a temporary folder; start nodes one by one
//!   ([`Node`]), edit their configs, sign as a member.
//! - [`Consortium`]: five running nodes (three proposers, two auditors) with HTTP helpers,
//!   kill and restart, and thin-client verification of what they serve.
//! - Free functions: free ports, plain HTTP with a deadline, signed registrations.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)] // a harness fails loudly

use emrshare_core::PrivateKeySet;
use emrshare_core::keys::{PartyId, SigningKey};
use emrshare_core::ledger::block::Transition;
use emrshare_core::ledger::block::{CertifiedBlock, CertifiedHeader, Genesis};
use emrshare_core::ledger::governance::{GovAction, Proposal, default_threshold};
use emrshare_core::ledger::machine::registry_key;
use emrshare_core::ledger::state::{StateProof, value_hash};
use emrshare_core::ledger::tx::{Role, Transaction, TxBody};
use emrshare_core::ledger::verify::{LightClient, Verdict};
use emrshare_core::voucher::{self, Voucher, VoucherKey, VoucherSecretKey};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `emrshare-node` binary: `EMRSHARE_NODE_BIN` if set, else the one cargo built beside
/// the running test, bench or example (`target/<profile>/emrshare-node`).
pub fn node_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("EMRSHARE_NODE_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().unwrap();
    // Tests run from target/<profile>/deps, examples from target/<profile>/examples.
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir = dir.parent().unwrap();
    }
    let bin = dir.join("emrshare-node");
    assert!(
        bin.exists(),
        "no emrshare-node at {} (cargo build first)",
        bin.display()
    );
    bin
}

/// `n` consecutive free ports on 127.0.0.1 (other test binaries and checkouts run nodes too),
/// below Linux's ephemeral range (32768 up): the thousand client sockets of a test running
/// alongside would otherwise take a port a node is about to listen on.
pub fn free_ports(n: u16) -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let start = 24_000 + (std::process::id() % 150) as u16 * 50;
    loop {
        let base = start + NEXT.fetch_add(n, std::sync::atomic::Ordering::Relaxed) % 1_000;
        if (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
}

/// A consortium written by `emrshare-node init` into a temporary folder (nothing running).
pub struct Provisioned {
    pub dir: tempfile::TempDir,
    pub base_port: u16,
}

impl Provisioned {
    /// `nodes` nodes, node:0 the only proposer and node:1 the only auditor.
    pub fn init(nodes: usize, chain_id: &str) -> Self {
        Self::init_with(nodes, chain_id, &[])
    }

    /// As [`init`](Self::init), with more `emrshare-node init` arguments (`--tls`).
    pub fn init_with(nodes: usize, chain_id: &str, more: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base_port = free_ports(2 * nodes as u16);
        let out = Command::new(node_binary())
            .args(["init", "--dir", dir.path().to_str().unwrap()])
            .args(["--nodes", &nodes.to_string(), "--proposers", "1"])
            .args(["--auditors", "1", "--base-port", &base_port.to_string()])
            .args(["--block-ms", "200", "--chain-id", chain_id])
            .args(more)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir, base_port }
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{i}"))
    }

    pub fn config(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("config.toml")
    }

    /// The `x-emr-peer` token node `i` (a member) sends with `body` to a consortium route.
    pub fn member_token(&self, i: usize, path: &str, body: &[u8]) -> String {
        let keys = emrshare_core::PrivateKeySet::from_json(
            &std::fs::read(self.node_dir(i).join("node.key.json")).unwrap(),
        )
        .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        emrshare_core::jws::sign(
            &keys.signing,
            &emrshare_core::jws::Header::es256("emr-peer+jwt", None),
            &serde_json::json!({
                "peer": keys.id.as_str(),
                "path": path,
                "len": body.len(),
                "body_sha256": emrshare_core::content_hash(body).to_hex(),
                "iat": now,
            }),
        )
    }

    pub fn port(&self, i: usize) -> u16 {
        self.base_port + i as u16
    }

    /// Sets `[limits]` members of node `i`'s config.
    pub fn set_limits(&self, i: usize, limits: &[(&str, i64)]) {
        edit_config(&self.config(i), |table| {
            let section = table["limits"].as_table_mut().unwrap();
            for (name, value) in limits {
                section.insert((*name).into(), (*value).into());
            }
        });
    }

    pub fn start(&self, i: usize) -> Node {
        Node::start(&self.config(i), &self.node_dir(i).join("node.log"), None)
    }
}

pub fn edit_config(path: &Path, edit: impl FnOnce(&mut toml::Table)) {
    let mut table: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    edit(&mut table);
    std::fs::write(path, toml::to_string(&table).unwrap()).unwrap();
}

/// A running `emrshare-node run`, killed (SIGKILL, by PID) when dropped.
pub struct Node {
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Starts a node with stderr to `log`; `nofile` sets its open-file limit (soft and hard).
    pub fn start(config: &Path, log: &Path, nofile: Option<u64>) -> Self {
        Self::start_with_env(config, log, nofile, &[])
    }

    /// As [`Node::start`], with extra environment variables.
    pub fn start_with_env(
        config: &Path,
        log: &Path,
        nofile: Option<u64>,
        env: &[(&str, &str)],
    ) -> Self {
        // The open-file limit is set by a shell that then execs the node (same PID), so no
        // code of ours runs between fork and exec.
        let mut command = match nofile {
            Some(limit) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", "ulimit -n \"$0\" && exec \"$@\"", &limit.to_string()])
                    .arg(node_binary());
                sh
            }
            None => Command::new(node_binary()),
        };
        command
            .args(["run", "--config", config.to_str().unwrap()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        Self {
            child: command.spawn().unwrap(),
            log: log.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Open file descriptors of the process (Linux).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Resident memory in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

pub fn client(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        // A fresh connection per request: these tests count connections.
        .pool_max_idle_per_host(0)
        .use_preconfigured_tls(crate::tls::client_config(None).unwrap())
        .build()
        .unwrap()
}

/// GET `path` on 127.0.0.1:`port`: the status and the JSON body (Null if not JSON).
pub fn get(port: u16, path: &str) -> Option<(u16, Value)> {
    let reply = client(Duration::from_secs(3))
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .ok()?;
    let status = reply.status().as_u16();
    Some((status, reply.json().unwrap_or(Value::Null)))
}

pub fn health(port: u16) -> Option<Value> {
    match get(port, "/v1/health")? {
        (200, body) => Some(body),
        _ => None,
    }
}

pub fn height(port: u16) -> u64 {
    health(port).and_then(|h| h["height"].as_u64()).unwrap_or(0)
}

/// Polls `done` every 100 ms until it holds; panics after `limit` with `what`.
pub fn wait_until(limit: Duration, what: &str, done: impl FnMut() -> bool) {
    wait_for(limit, what, &[], done)
}

/// As [`wait_until`], with the logs of `nodes` in the panic message.
pub fn wait_for(limit: Duration, what: &str, nodes: &[&Node], mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() >= limit {
            let logs: Vec<String> = nodes
                .iter()
                .map(|n| format!("--- {}:\n{}", n.log.display(), n.log()))
                .collect();
            panic!("timed out after {limit:?}: {what}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The nodes of a [`Consortium`]: three proposers and two auditors.
pub const NODES: usize = 5;

/// One consortium at a time: four 5-node consortia on a 2-core machine slow every node enough
/// to make proposals of consecutive slots overlap.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct Consortium {
    _turn: std::sync::MutexGuard<'static, ()>,
    pub dir: tempfile::TempDir,
    pub base_port: u16,
    children: Vec<Option<Child>>,
    pub http: reqwest::blocking::Client,
    /// Whether `hospital:vouchers` was admitted.
    vouchers: std::sync::atomic::AtomicBool,
}

impl Drop for Consortium {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Consortium {
    pub fn start() -> Self {
        Self::start_custom(|_| {})
    }

    /// A consortium whose every node's `[limits]` table `limits` edits first.
    pub fn start_with_limits(limits: impl Fn(&mut toml::Table)) -> Self {
        Self::start_custom(limits)
    }

    fn start_custom(limits: impl Fn(&mut toml::Table)) -> Self {
        let turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let dir = tempfile::tempdir().unwrap();
        // Distinct ports per process and per consortium within it (tests run in parallel).
        static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let block = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Blocks found busy (another checkout's tests, a node still shutting down) are
        // skipped.
        let mut block = block;
        let base_port = loop {
            let base = 20_000
                + ((std::process::id() % 2_000) as u16 * 20 + block * 2 * NODES as u16) % 20_000;
            if (0..2 * NODES as u16)
                .all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
            {
                break base;
            }
            block = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        let status = Command::new(node_binary())
            .args([
                "init",
                "--dir",
                dir.path().to_str().unwrap(),
                "--nodes",
                "5",
                "--proposers",
                "3",
                "--auditors",
                "2",
            ])
            .args([
                "--base-port",
                &base_port.to_string(),
                "--block-ms",
                "300",
                "--chain-id",
                "test-chain",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        for i in 0..NODES {
            let path = dir.path().join(format!("node-{i}/config.toml"));
            let mut table: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
            limits(table["limits"].as_table_mut().unwrap());
            std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(3))
            // reqwest's rustls has no built-in provider here: hand it the node's (plain HTTP).
            .use_preconfigured_tls(crate::tls::client_config(None).unwrap())
            .build()
            .unwrap();
        let mut consortium = Self {
            _turn: turn,
            dir,
            base_port,
            children: (0..NODES).map(|_| None).collect(),
            http,
            vouchers: Default::default(),
        };
        for i in 0..NODES {
            consortium.spawn(i);
        }
        for i in 0..NODES {
            consortium.wait_until(Duration::from_secs(20), |c| {
                c.get(i, "/v1/health").is_some()
            });
        }
        consortium
    }

    pub fn config(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{i}/config.toml"))
    }

    pub fn spawn(&mut self, i: usize) {
        let log = std::fs::File::create(self.dir.path().join(format!("node-{i}.log"))).unwrap();
        let mut command = Command::new(node_binary());
        let child = command
            .args(["run", "--config", self.config(i).to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[i] = Some(child);
    }

    /// The OS process ID of node `i`.
    pub fn pid(&self, i: usize) -> u32 {
        self.children[i].as_ref().unwrap().id()
    }

    /// Node `i`'s resident memory in KiB (VmRSS).
    pub fn rss_kib(&self, i: usize) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid(i))).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// A value of node `i`'s `/metrics`.
    pub fn metric(&self, i: usize, name: &str) -> u64 {
        let text = self
            .http
            .get(self.url(i, "/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in {text}"))
    }

    /// Node `i`'s private keys (the consensus key of a consortium member).
    pub fn node_keys(&self, i: usize) -> emrshare_core::PrivateKeySet {
        emrshare_core::PrivateKeySet::from_json(
            &std::fs::read(self.dir.path().join(format!("node-{i}/node.key.json"))).unwrap(),
        )
        .unwrap()
    }

    /// SIGKILL (by PID): no chance to flush anything.
    pub fn kill(&mut self, i: usize) {
        let mut child = self.children[i].take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGSTOP (by PID): the node keeps its sockets but answers nothing, votes nothing.
    pub fn pause(&self, i: usize) {
        self.signal(i, "-STOP");
    }

    /// SIGCONT (by PID): a paused node goes on where it stopped.
    pub fn resume(&self, i: usize) {
        self.signal(i, "-CONT");
    }

    fn signal(&self, i: usize, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid(i).to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} node {i}");
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.base_port as usize + i)
    }

    pub fn get(&self, i: usize, path: &str) -> Option<Value> {
        let reply = self.http.get(self.url(i, path)).send().ok()?;
        reply
            .status()
            .is_success()
            .then(|| reply.json().ok())
            .flatten()
    }

    pub fn post(&self, i: usize, path: &str, body: &[u8]) -> (u16, Value) {
        let reply = self
            .http
            .post(self.url(i, path))
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .unwrap();
        let status = reply.status().as_u16();
        (status, reply.json().unwrap_or(Value::Null))
    }

    pub fn height(&self, i: usize) -> u64 {
        self.get(i, "/v1/health")
            .and_then(|h| h["height"].as_u64())
            .unwrap_or(0)
    }

    pub fn wait_until(&self, limit: Duration, mut done: impl FnMut(&Self) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?}; logs in {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn genesis(&self) -> Genesis {
        emrshare_core::strict_json::parse(
            &std::fs::read(self.dir.path().join("genesis.json")).unwrap(),
        )
        .unwrap()
    }
}

/// Unix seconds now.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The admission of `id` (keys: `key` and a fresh RSA key) as `role` on `chain_id`, approved
/// by the first `t = floor(2n/3) + 1` of `members` (the council `init` writes: every node
/// with its consensus key), sent and signed by the admitted party (sequence 0).
pub fn admission_by(
    members: &[PrivateKeySet],
    chain_id: &str,
    id: &str,
    key: &SigningKey,
    role: Role,
    voucher_key: Option<&VoucherKey>,
) -> String {
    let enc = emrshare_core::keys::DecryptionKey::generate(emrshare_core::keys::RsaBits::B2048);
    let proposal = Proposal::new(
        chain_id,
        now_s() + 3600,
        GovAction::Admit {
            id: PartyId::new(id).unwrap(),
            role,
            signing_jwk: key.verifying_key().to_jwk(None),
            encryption_jwk: enc.encryption_key().to_jwk(None),
            valid_from: 0,
            valid_until: u64::MAX,
            voucher_key: voucher_key.map(VoucherKey::to_jwk),
        },
    );
    let t = default_threshold(members.len());
    let approvals = members[..t]
        .iter()
        .map(|m| proposal.approve(&m.id, &m.signing))
        .collect();
    Transaction {
        chain_id: chain_id.into(),
        sender: PartyId::new(id).unwrap(),
        sequence: 0,
        body: TxBody::Govern {
            proposal,
            approvals,
        },
    }
    .sign(key)
    .as_jws()
    .to_owned()
}

/// Every node's keys in `dir` (written by `init`): the council's members.
pub fn member_keys(dir: &std::path::Path, nodes: usize) -> Vec<PrivateKeySet> {
    (0..nodes)
        .map(|i| {
            PrivateKeySet::from_json(
                &std::fs::read(dir.join(format!("node-{i}/node.key.json"))).unwrap(),
            )
            .unwrap()
        })
        .collect()
}

/// The hospital whose voucher key the consortium's test patients register with (RSA key
/// generation is slow: one key for every test).
fn voucher_hospital_keys() -> &'static (SigningKey, VoucherSecretKey) {
    static KEYS: std::sync::OnceLock<(SigningKey, VoucherSecretKey)> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        (
            SigningKey::generate(),
            VoucherSecretKey::generate(2048).unwrap(),
        )
    })
}

pub const VOUCHER_HOSPITAL: &str = "hospital:vouchers";

impl Consortium {
    /// The council's keys (every node's).
    pub fn members(&self) -> Vec<PrivateKeySet> {
        member_keys(self.dir.path(), NODES)
    }

    /// Admits `hospital:vouchers` with its voucher key (once) and waits until node 0
    /// proves it.
    pub fn voucher_hospital(&self) {
        if self.vouchers.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let (key, secret) = voucher_hospital_keys();
        let jws = admission_by(
            &self.members(),
            CHAIN_ID,
            VOUCHER_HOSPITAL,
            key,
            Role::Hospital,
            Some(&secret.public().unwrap()),
        );
        submit(self, 0, &jws);
        self.wait_until(Duration::from_secs(30), |c| {
            verified_lookup(c, 0, VOUCHER_HOSPITAL) == Some(true)
        });
        self.vouchers
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// A registration voucher of `hospital:vouchers` for `patient`: the whole blind
    /// protocol (the hospital signs without seeing the patient's ID).
    pub fn voucher(&self, patient: &PartyId) -> Voucher {
        self.voucher_hospital();
        let (_, secret) = voucher_hospital_keys();
        let (pending, blinded) =
            voucher::blind(&secret.public().unwrap(), CHAIN_ID, patient).unwrap();
        pending
            .finalize(&secret.sign_blind(&blinded).unwrap())
            .unwrap()
    }
}

impl Consortium {
    /// Opens the account of `patient`'s record `n` (derived from `master`): a record
    /// voucher from node 2 for the registered patient (`id`, `key`), the account opened at
    /// node 0, and waited for until node 0 shows it.
    pub fn open_record(
        &self,
        id: &PartyId,
        key: &SigningKey,
        master: &emrshare_core::keys::txkeys::MasterSecret,
        n: u64,
    ) -> emrshare_core::record_account::RecordKeys {
        use emrshare_core::record_account::{IndexEntry, RecordKeys, request_record_voucher};
        let record = RecordKeys::derive(master, n);
        let genesis: emrshare_core::ledger::block::Genesis =
            serde_json::from_slice(&std::fs::read(self.dir.path().join("genesis.json")).unwrap())
                .unwrap();
        let (pending, request) = request_record_voucher(
            (id, key),
            CHAIN_ID,
            &genesis.record_voucher_keys,
            record.id(),
            now_s(),
        )
        .unwrap();
        // The issuing node must know the patient registered: it may be a block behind the
        // node the registration was confirmed on.
        self.wait_until(Duration::from_secs(30), |c| {
            c.get(2, &format!("/v1/sequence/{id}"))
                .and_then(|s| s["next"].as_u64())
                .is_some_and(|next| next >= 1)
        });
        let (status, answer) = self.post(
            2,
            "/v1/record-vouchers",
            &serde_json::to_vec(&request).unwrap(),
        );
        assert_eq!(status, 200, "record voucher: {answer}");
        let answer = serde_json::from_value(answer).unwrap();
        let voucher = pending.finalize(&answer).unwrap();
        let entry = IndexEntry {
            format: IndexEntry::FORMAT.into(),
            location: format!("emrshare:blob/{n}"),
            blob: emrshare_core::content_hash(&n.to_be_bytes()),
            time: now_s(),
            department: "general".into(),
            record_id: None,
        };
        submit(
            self,
            0,
            record.open_account(CHAIN_ID, voucher, &entry).as_jws(),
        );
        // Every running node, not only the one submitted to: a test sends the account's next
        // transaction to any node, and a node a block behind would refuse its sender.
        self.wait_until(Duration::from_secs(30), |c| {
            (0..c.children.len())
                .filter(|&i| c.children[i].is_some())
                .all(|i| {
                    c.get(i, &format!("/v1/sequence/{}", record.id()))
                        .is_some_and(|s| s["next"] == 1)
                })
        });
        record
    }
}

pub const CHAIN_ID: &str = "test-chain";

/// A hospital's admission by the council.
pub fn registration(c: &Consortium, id: &str, key: &SigningKey) -> String {
    registration_as(c, id, key, Role::Hospital)
}

/// How `id` joins as `role`: a patient registers itself with a voucher; an institution is
/// admitted by the council (the transaction is its own, sequence 0).
pub fn registration_as(c: &Consortium, id: &str, key: &SigningKey, role: Role) -> String {
    if role != Role::Patient {
        return admission_by(&c.members(), CHAIN_ID, id, key, role, None);
    }
    let voucher = c.voucher(&PartyId::new(id).unwrap());
    let enc = emrshare_core::keys::DecryptionKey::generate(emrshare_core::keys::RsaBits::B2048);
    Transaction {
        chain_id: CHAIN_ID.into(),
        sender: PartyId::new(id).unwrap(),
        sequence: 0,
        body: TxBody::RegisterIdentity {
            id: PartyId::new(id).unwrap(),
            role,
            signing_jwk: key.verifying_key().to_jwk(None),
            encryption_jwk: enc.encryption_key().to_jwk(None),
            valid_from: 0,
            valid_until: u64::MAX,
            voucher: Some(voucher),
        },
    }
    .sign(key)
    .as_jws()
    .to_owned()
}

/// Runs `command` (stderr piped), which must exit within `limit`: its exit code and stderr.
/// A process still running at the limit is killed (by its PID) and the test fails.
pub fn exit_within(mut command: Command, limit: Duration) -> (Option<i32>, String) {
    let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code(), stderr)
}

/// Looks `id` up at node `i` and verifies the answer as a thin client would, from genesis.
pub fn verified_lookup(c: &Consortium, i: usize, id: &str) -> Option<bool> {
    let (status, reply) = c.post(
        i,
        "/v1/registry/lookup",
        json!({"ids": [id]}).to_string().as_bytes(),
    );
    if status != 200 {
        return None;
    }
    let header: CertifiedHeader = serde_json::from_value(reply["header"].clone()).unwrap();
    let mut client = thin_client(c, i, header.header.height);
    assert_eq!(
        client.verify_header(&header),
        Verdict::Success,
        "node {i} served a header that does not verify"
    );
    let entry = &reply["entries"][0];
    let proof: StateProof = serde_json::from_value(entry["proof"].clone()).unwrap();
    let proven = client
        .verify_state(&registry_key(&PartyId::new(id).unwrap()), &proof)
        .expect("proof verifies");
    match entry["value"].as_str() {
        Some(value) => {
            assert_eq!(
                proven,
                Some(value_hash(value.as_bytes())),
                "value does not match its proof"
            );
            // The served entry is a registry entry a thin client accepts (its key and status
            // history, its affiliation), proven under the header.
            let entry = client
                .verify_registry_entry(&PartyId::new(id).unwrap(), Some(value.as_bytes()), &proof)
                .expect("a well-formed registry entry")
                .expect("present");
            assert!(entry.entry().is_well_formed());
            Some(true)
        }
        None => {
            assert_eq!(proven, None);
            Some(false)
        }
    }
}

/// Node `i`'s changes of validator set, oldest first.
pub fn transitions(c: &Consortium, i: usize) -> Vec<Transition> {
    serde_json::from_value(c.get(i, "/v1/validators").unwrap()["transitions"].clone()).unwrap()
}

/// A thin client that trusts genesis and has followed node `i`'s changes of validator set
/// below `height`, each under the set before it.
pub fn thin_client(c: &Consortium, i: usize, height: u64) -> LightClient {
    let genesis = c.genesis();
    let mut client = LightClient::new(&genesis.chain_id, genesis.validators).unwrap();
    for t in transitions(c, i) {
        if t.last.header.height < height {
            assert_eq!(client.follow_transition(&t.last, t.next), Verdict::Success);
        }
    }
    client
}

/// Verifies node `i`'s chain block by block from genesis, as a thin client: each header
/// under the set in force, following each change of set at the header that names it.
pub fn verify_chain(c: &Consortium, i: usize) {
    let genesis = c.genesis();
    let mut client = LightClient::new(&genesis.chain_id, genesis.validators).unwrap();
    let transitions = transitions(c, i);
    for h in 1..=c.height(i) {
        let block: CertifiedBlock =
            serde_json::from_value(c.get(i, &format!("/v1/blocks/{h}")).unwrap()).unwrap();
        let header = block.certified_header();
        assert_eq!(
            client.verify_header(&header),
            Verdict::Success,
            "node {i} block {h}"
        );
        if header.header.next_validators_hash != header.header.validators_hash {
            let next = transitions
                .iter()
                .find(|t| t.last == header)
                .map(|t| t.next.clone())
                .unwrap_or_else(|| panic!("node {i} lists no transition at block {h}"));
            assert_eq!(client.follow_transition(&header, next), Verdict::Success);
        }
    }
}

pub fn submit(c: &Consortium, i: usize, jws: &str) {
    let (status, reply) = c.post(i, "/v1/tx", json!({"jws": jws}).to_string().as_bytes());
    assert_eq!(status, 202, "{reply}");
}
