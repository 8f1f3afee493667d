//! TLS on the node, as real processes on 127.0.0.1: `init --tls` writes a consortium CA and a
//! certificate per node; the nodes serve HTTPS and talk to each other over it (a transaction
//! commits); a client trusting only that CA gets answers, a client trusting another CA and a
//! plain-HTTP client do not; bad certificate files stop the node at start with a clear error.

use emrshare_core::keys::SigningKey;
use emrshare_core::ledger::tx::Role;
use emrshare_node::testkit::{
    Node, Provisioned, admission_by, exit_within, member_keys, node_binary,
};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NODES: usize = 2;

/// A reqwest client whose TLS trusts only the certificates in `roots_pem`.
fn client_trusting(roots_pem: &[u8]) -> reqwest::blocking::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .use_preconfigured_tls(tls)
        .build()
        .unwrap()
}

fn init_tls() -> Provisioned {
    Provisioned::init_with(NODES, "tls-chain", &["--tls"])
}

struct Consortium {
    provisioned: Provisioned,
    base_port: u16,
    _nodes: Vec<Node>,
    https: reqwest::blocking::Client,
}

impl Consortium {
    fn start() -> Self {
        let provisioned = init_tls();
        let https = client_trusting(&std::fs::read(provisioned.dir.path().join("ca.pem")).unwrap());
        let nodes: Vec<Node> = (0..NODES).map(|i| provisioned.start(i)).collect();
        let c = Self {
            base_port: provisioned.base_port,
            provisioned,
            _nodes: nodes,
            https,
        };
        for i in 0..NODES {
            c.wait_until(Duration::from_secs(20), |c| {
                c.get(i, "/v1/health").is_some()
            });
        }
        c
    }

    fn url(&self, scheme: &str, i: usize, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}{path}", self.base_port as usize + i)
    }

    fn get(&self, i: usize, path: &str) -> Option<Value> {
        let reply = self.https.get(self.url("https", i, path)).send().ok()?;
        reply
            .status()
            .is_success()
            .then(|| reply.json().ok())
            .flatten()
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
                self.provisioned.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A hospital's admission by the 2-node council (both approve: t = 2).
fn registration(dir: &Path, id: &str, key: &SigningKey) -> String {
    admission_by(
        &member_keys(dir, 2),
        "tls-chain",
        id,
        key,
        Role::Hospital,
        None,
    )
}

#[test]
fn init_tls_writes_a_ca_certificates_and_https_peers() {
    let provisioned = init_tls();
    let dir = &provisioned.dir;
    assert!(
        std::fs::read_to_string(dir.path().join("ca.pem"))
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    for i in 0..NODES {
        let path = dir.path().join(format!("node-{i}/config.toml"));
        let config = emrshare_node::config::NodeConfig::load(&path).unwrap();
        let tls = config.tls.expect("[tls] section");
        assert!(tls.cert_file.is_file() && tls.key_file.is_file());
        assert_eq!(
            tls.ca_file.unwrap().canonicalize().unwrap(),
            dir.path().join("ca.pem").canonicalize().unwrap()
        );
        assert!(config.peers.iter().all(|p| p.url.starts_with("https://")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&tls.key_file)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "TLS key readable by others");
        }
    }
}

#[test]
fn https_consortium_commits_and_refuses_untrusted_and_plain_clients() {
    let c = Consortium::start();

    // Health over HTTPS, by IP and by the other name in the certificate.
    assert_eq!(c.get(0, "/v1/health").unwrap()["status"], "ok");
    let by_name = format!("https://localhost:{}/v1/health", c.base_port);
    assert_eq!(c.https.get(by_name).send().unwrap().status().as_u16(), 200);

    // A transaction submitted to the auditor commits: the proposer gets it, collects the
    // auditor's vote and broadcasts the block, all over HTTPS between the nodes.
    let before = c.height(0);
    let key = SigningKey::generate();
    let jws = registration(c.provisioned.dir.path(), "hospital:tls", &key);
    let reply = c
        .https
        .post(c.url("https", 1, "/v1/tx"))
        .json(&json!({"jws": jws}))
        .send()
        .unwrap();
    assert_eq!(reply.status().as_u16(), 202, "{:?}", reply.text());
    let mut committed_at = None;
    c.wait_until(Duration::from_secs(30), |c| {
        committed_at = (before + 1..=c.height(0)).find(|h| {
            c.get(0, &format!("/v1/blocks/{h}"))
                .is_some_and(|b| b["txs"].as_array().unwrap().iter().any(|t| t == &jws))
        });
        committed_at.is_some()
    });
    let h = committed_at.unwrap();
    assert!(h > before);
    c.wait_until(Duration::from_secs(20), |c| c.height(1) >= h);
    assert_eq!(
        c.get(0, &format!("/v1/blocks/{h}")).unwrap(),
        c.get(1, &format!("/v1/blocks/{h}")).unwrap(),
        "both nodes hold the same block"
    );

    // A client trusting another CA fails the handshake.
    let other_ca = emrshare_node::provision::ConsortiumCa::generate("someone-else").unwrap();
    let stranger = client_trusting(other_ca.cert_pem().as_bytes());
    let refused = stranger
        .get(c.url("https", 0, "/v1/health"))
        .send()
        .unwrap_err();
    assert!(refused.is_connect(), "{refused:?}");

    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .use_preconfigured_tls(emrshare_node::tls::client_config(None).unwrap())
        .build()
        .unwrap();
    for i in 0..NODES {
        let reply = plain.get(c.url("http", i, "/v1/health")).send();
        assert!(reply.is_err(), "plain HTTP answered: {reply:?}");
    }

    // None of that disturbed the nodes.
    for i in 0..NODES {
        assert_eq!(c.get(i, "/v1/health").unwrap()["status"], "ok");
    }
}

/// Runs `emrshare-node run` on `config`; it must exit (not panic, not hang) with an error
/// naming `expected`.
fn fails_at_start(config: &Path, expected: &str) {
    let mut command = Command::new(node_binary());
    command
        .args(["run", "--config", config.to_str().unwrap()])
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null());
    let (code, stderr) = exit_within(command, Duration::from_secs(20));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains(expected),
        "wanted {expected:?} in: {stderr}"
    );
}

#[test]
fn bad_tls_files_stop_the_node_at_start_with_a_clear_error() {
    let provisioned = init_tls();
    let dir = &provisioned.dir;
    let node = dir.path().join("node-0");
    let config = node.join("config.toml");
    let good_cert = std::fs::read(node.join("tls.cert.pem")).unwrap();
    let good_key = std::fs::read(node.join("tls.key.pem")).unwrap();
    let restore = || {
        std::fs::write(node.join("tls.cert.pem"), &good_cert).unwrap();
        std::fs::write(node.join("tls.key.pem"), &good_key).unwrap();
    };

    std::fs::remove_file(node.join("tls.cert.pem")).unwrap();
    fails_at_start(&config, "cannot read TLS certificate file");
    std::fs::write(node.join("tls.cert.pem"), "not a certificate\n").unwrap();
    fails_at_start(&config, "no PEM CERTIFICATE");
    std::fs::write(
        node.join("tls.cert.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    fails_at_start(&config, "TLS certificate file");
    // Another node's certificate with this node's key.
    std::fs::copy(
        dir.path().join("node-1/tls.cert.pem"),
        node.join("tls.cert.pem"),
    )
    .unwrap();
    fails_at_start(&config, "are not a usable pair");
    restore();

    std::fs::write(node.join("tls.key.pem"), "").unwrap();
    fails_at_start(&config, "no PEM private key");
    std::fs::write(
        node.join("tls.key.pem"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    fails_at_start(&config, "are not a usable pair");
    std::fs::write(node.join("tls.key.pem"), &good_key[..good_key.len() / 2]).unwrap();
    fails_at_start(&config, "TLS key file");
    restore();

    std::fs::write(dir.path().join("ca.pem"), "").unwrap();
    fails_at_start(&config, "TLS CA file");
    std::fs::remove_file(dir.path().join("ca.pem")).unwrap();
    fails_at_start(&config, "cannot read TLS CA file");
}

/// In process: `serve` with `[tls]` answers over HTTPS, and on the shutdown signal returns
/// and releases its port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serve_shuts_down_gracefully() {
    let provisioned = init_tls();
    let (dir, base_port) = (&provisioned.dir, provisioned.base_port);
    let config =
        emrshare_node::config::NodeConfig::load(&dir.path().join("node-0/config.toml")).unwrap();
    let ca = emrshare_node::tls::client_config(Some(&dir.path().join("ca.pem"))).unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .use_preconfigured_tls(ca)
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(emrshare_node::serve(config, async {
        let _ = stopped.await;
    }));
    let url = format!("https://127.0.0.1:{base_port}/v1/health");
    let start = Instant::now();
    loop {
        if let Ok(reply) = client.get(&url).send().await {
            assert_eq!(reply.status().as_u16(), 200);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returned after the shutdown signal")
        .unwrap()
        .unwrap();
    assert!(std::net::TcpListener::bind(("127.0.0.1", base_port)).is_ok());
}
