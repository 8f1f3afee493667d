//! A small process harness for the operational tests (connections, start faults, peers):
//! `emrshare-node init` into a temporary folder, node processes on 127.0.0.1 that are killed
//! by their PID when dropped, config edits, and plain HTTP requests with a deadline.
#![allow(dead_code)] // each test binary uses part of it

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_emrshare-node");

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

/// A consortium written by `emrshare-node init` (nothing running).
pub struct Consortium {
    pub dir: tempfile::TempDir,
    pub base_port: u16,
}

impl Consortium {
    /// `nodes` nodes, node:0 the only proposer and node:1 the only auditor.
    pub fn init(nodes: usize, chain_id: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base_port = free_ports(nodes as u16);
        let out = Command::new(BIN)
            .args(["init", "--dir", dir.path().to_str().unwrap()])
            .args(["--nodes", &nodes.to_string(), "--proposers", "1"])
            .args(["--auditors", "1", "--base-port", &base_port.to_string()])
            .args(["--slot-ms", "200", "--chain-id", chain_id])
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
                "body_sha256": emrshare_core::ledger::state::hex32::to_hex(
                    &emrshare_core::content_hash(body)
                ),
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
        let mut command = Command::new(BIN);
        command
            .args(["run", "--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        if let Some(limit) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let rlimit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
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
        .use_preconfigured_tls(emrshare_node::tls::client_config(None).unwrap())
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
