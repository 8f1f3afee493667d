//! A 5-node consortium (3 proposers, 2 auditors, 300 ms slots) as real processes on
//! 127.0.0.1: transactions submitted to any node commit on all; answers verify under the
//! thin-client rules from genesis alone; a killed proposer costs slots, not the chain; a
//! killed and restarted node catches up; bad requests get JSON 4xx.

use emrshare_core::keys::{PartyId, SigningKey};
use emrshare_core::ledger::block::{CertifiedBlock, CertifiedHeader, Genesis};
use emrshare_core::ledger::machine::registry_key;
use emrshare_core::ledger::state::{StateProof, value_hash};
use emrshare_core::ledger::tx::{Role, Transaction, TxBody};
use emrshare_core::ledger::verify::{LightClient, Verdict};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NODES: usize = 5;

struct Consortium {
    dir: tempfile::TempDir,
    base_port: u16,
    children: Vec<Option<Child>>,
    http: reqwest::blocking::Client,
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
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Distinct ports per process and per consortium within it (tests run in parallel).
        static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let block = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base_port = 20_000 + (std::process::id() % 2_000) as u16 * 20 + block * NODES as u16;
        let status = Command::new(env!("CARGO_BIN_EXE_emrshare-node"))
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
                "--slot-ms",
                "300",
                "--chain-id",
                "test-chain",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap();
        let mut consortium = Self {
            dir,
            base_port,
            children: (0..NODES).map(|_| None).collect(),
            http,
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

    fn config(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{i}/config.toml"))
    }

    fn spawn(&mut self, i: usize) {
        let log = std::fs::File::create(self.dir.path().join(format!("node-{i}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_emrshare-node"))
            .args(["run", "--config", self.config(i).to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[i] = Some(child);
    }

    /// SIGKILL: no chance to flush anything.
    fn kill(&mut self, i: usize) {
        let mut child = self.children[i].take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn url(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.base_port as usize + i)
    }

    fn get(&self, i: usize, path: &str) -> Option<Value> {
        let reply = self.http.get(self.url(i, path)).send().ok()?;
        reply
            .status()
            .is_success()
            .then(|| reply.json().ok())
            .flatten()
    }

    fn post(&self, i: usize, path: &str, body: &[u8]) -> (u16, Value) {
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

    fn height(&self, i: usize) -> u64 {
        self.get(i, "/v1/health")
            .and_then(|h| h["height"].as_u64())
            .unwrap_or(0)
    }

    fn wait_until(&self, limit: Duration, mut done: impl FnMut(&Self) -> bool) {
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

    fn genesis(&self) -> Genesis {
        emrshare_core::strict_json::parse(
            &std::fs::read(self.dir.path().join("genesis.json")).unwrap(),
        )
        .unwrap()
    }
}

fn registration(id: &str, key: &SigningKey) -> String {
    let enc = emrshare_core::keys::DecryptionKey::generate(emrshare_core::keys::RsaBits::B2048);
    Transaction {
        chain_id: "test-chain".into(),
        sender: PartyId::new(id).unwrap(),
        sequence: 0,
        body: TxBody::RegisterIdentity {
            id: PartyId::new(id).unwrap(),
            role: Role::Hospital,
            signing_jwk: key.verifying_key().to_jwk(None),
            encryption_jwk: enc.encryption_key().to_jwk(None),
            valid_from: 0,
            valid_until: u64::MAX,
        },
    }
    .sign(key)
    .as_jws()
    .to_owned()
}

/// Looks `id` up at node `i` and verifies the answer as a thin client would, from genesis.
fn verified_lookup(c: &Consortium, i: usize, id: &str) -> Option<bool> {
    let (status, reply) = c.post(
        i,
        "/v1/registry/lookup",
        json!({"ids": [id]}).to_string().as_bytes(),
    );
    if status != 200 {
        return None;
    }
    let genesis = c.genesis();
    let mut client = LightClient::new(&genesis.chain_id, genesis.validators).unwrap();
    let header: CertifiedHeader = serde_json::from_value(reply["header"].clone()).unwrap();
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
            Some(true)
        }
        None => {
            assert_eq!(proven, None);
            Some(false)
        }
    }
}

fn submit(c: &Consortium, i: usize, jws: &str) {
    let (status, reply) = c.post(i, "/v1/tx", json!({"jws": jws}).to_string().as_bytes());
    assert_eq!(status, 202, "{reply}");
}

#[test]
fn consortium_commits_everywhere_survives_a_killed_proposer_and_catches_up() {
    let mut c = Consortium::start();

    // Submitted to an auditor (not a proposer): relayed, committed, visible on every node.
    let a = SigningKey::generate();
    submit(&c, 4, &registration("hospital:a", &a));
    c.wait_until(Duration::from_secs(20), |c| {
        (0..NODES).all(|i| verified_lookup(c, i, "hospital:a") == Some(true))
    });
    assert_eq!(verified_lookup(&c, 2, "hospital:nobody"), Some(false));

    // All nodes hold the same chain.
    let common = (0..NODES).map(|i| c.height(i)).min().unwrap();
    let hashes: Vec<Value> = (0..NODES)
        .map(|i| c.get(i, &format!("/v1/blocks/{common}")).unwrap()["header"].clone())
        .collect();
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "nodes disagree at height {common}"
    );

    // Kill proposer 0 with SIGKILL: blocks keep coming from the other proposers.
    c.kill(0);
    let b = SigningKey::generate();
    submit(&c, 3, &registration("hospital:b", &b));
    c.wait_until(Duration::from_secs(20), |c| {
        (1..NODES).all(|i| verified_lookup(c, i, "hospital:b") == Some(true))
    });

    // Restart it: it replays its store and catches up from its peers.
    c.spawn(0);
    let target = c.height(1);
    c.wait_until(Duration::from_secs(20), |c| c.height(0) >= target);
    assert_eq!(verified_lookup(&c, 0, "hospital:b"), Some(true));

    // Replaying an acknowledged transaction is refused.
    let (status, reply) = c.post(
        1,
        "/v1/tx",
        json!({"jws": registration("hospital:a", &a)})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 400, "{reply}");

    // Blocks verify as a chain: each links to the previous and carries a valid certificate.
    let genesis = c.genesis();
    let mut client = LightClient::new(&genesis.chain_id, genesis.validators).unwrap();
    for h in 1..=c.height(2) {
        let block: CertifiedBlock =
            serde_json::from_value(c.get(2, &format!("/v1/blocks/{h}")).unwrap()).unwrap();
        assert_eq!(
            client.verify_header(&block.certified_header()),
            Verdict::Success,
            "block {h}"
        );
    }
}

#[test]
fn bad_requests_get_json_errors() {
    let c = Consortium::start();
    let cases: [(&str, &[u8], u16); 7] = [
        ("/v1/tx", b"not json", 400),
        ("/v1/tx", br#"{"jws":"a.b.c"}"#, 400),
        ("/v1/tx", br#"{"jws":"x","jws":"y"}"#, 400),
        ("/v1/tx", br#"{"jws":"x","extra":1}"#, 400),
        ("/v1/registry/lookup", br#"{"ids":[]}"#, 400),
        ("/v1/registry/lookup", br#"{"ids":["bad id"]}"#, 400),
        ("/v1/consensus/block", br#"{"header":1}"#, 400),
    ];
    for (path, body, want) in cases {
        let (status, reply) = c.post(1, path, body);
        assert_eq!(status, want, "{path} {}", String::from_utf8_lossy(body));
        assert!(reply["error"].is_string(), "{path}: {reply}");
    }
    let (status, _) = c.post(1, "/v1/tx", &vec![b'a'; 300 * 1024]);
    assert_eq!(status, 413);
    assert_eq!(
        c.http
            .get(c.url(1, "/v1/nowhere"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        c.http
            .get(c.url(1, "/v1/blocks/x"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        400
    );
    assert_eq!(
        c.http
            .get(c.url(1, "/v1/directory/wizard"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        400
    );
    assert!(c.get(1, "/v1/openapi.json").unwrap()["paths"]["/v1/tx"].is_object());
}
