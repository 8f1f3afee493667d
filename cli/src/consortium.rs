//! A local consortium inside this process, for `emrshare demo`: `emrshare-node init` into a
//! folder, then every node spawned on the current tokio runtime, on loopback ports.
//!
//! The folder holds every node's keys, so whoever has it holds the whole governance council
//! (genesis makes every node a member): [`council_approvals`] approves a proposal with them,
//! which is how the demo, the tests and `emrshare register` on a local consortium admit
//! institutions. A real consortium's members approve on their own machines.

use anyhow::{Context, Result, bail};
use emrshare_core::account::Account;
use emrshare_core::keys::PartyId;
use emrshare_core::ledger::block::Genesis;
use emrshare_core::ledger::governance::{Approval, Proposal};
use emrshare_core::ledger::tx::{Role, SignedTransaction};
use emrshare_core::voucher::{self, Voucher, VoucherKey, VoucherSecretKey};
use emrshare_node::config::{NodeConfig, load_genesis, load_keys};
use emrshare_node::provision::{InitOptions, init};
use emrshare_node::{RunningNode, spawn};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct LocalConsortium {
    /// The folder `init` wrote (genesis, every node's keys and config).
    pub dir: std::path::PathBuf,
    pub urls: Vec<String>,
    pub genesis: Genesis,
    pub proposers: usize,
    pub auditors: usize,
    nodes: Vec<RunningNode>,
}

/// `count` consecutive free loopback ports (checked by binding them; a race with another
/// program remains possible and shows as a clear start error).
fn free_ports(count: usize) -> Result<u16> {
    // Consortia started by one process (parallel tests) start from different seeds.
    static STARTED: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let nth = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = (std::process::id() % 1_500) as u16 * 20 + nth * 211;
    for attempt in 0..200u16 {
        let base = seed.wrapping_add(attempt * 97) % 40_000 + 20_000;
        let all_free =
            (0..count as u16).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return Ok(base);
        }
    }
    bail!("no {count} consecutive free ports on 127.0.0.1")
}

impl LocalConsortium {
    /// Writes a consortium of `nodes` nodes into `dir` and starts them; returns once every
    /// node answers its health check.
    /// Its nodes listen on `base_port` and the ports after it, or on free ports found.
    pub async fn start(
        dir: &Path,
        nodes: usize,
        block_ms: u64,
        tls: bool,
        base_port: Option<u16>,
    ) -> Result<Self> {
        if nodes < 2 {
            bail!("a consortium needs at least 2 nodes (a proposer and an auditor)");
        }
        let base_port = match base_port {
            Some(port) => port,
            None => free_ports(2 * nodes)?,
        };
        let options = InitOptions {
            nodes,
            proposers: None,
            auditors: None,
            base_port,
            block_ms,
            propose_ms: 1_000,
            chain_id: "emrshare-demo".into(),
            tls,
            force: false,
        };
        let configs = init(dir, &options).context("cannot write the consortium")?;
        Self::run(dir, &configs).await
    }

    /// Starts again the consortium a previous start wrote into `dir` (stopped since): the
    /// same keys, genesis, ports and chain.
    pub async fn resume(dir: &Path) -> Result<Self> {
        let mut configs: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.path().join("config.toml"))
            .filter(|config| config.exists())
            .collect();
        configs.sort();
        if configs.is_empty() {
            bail!(
                "{} holds no node configs (node-*/config.toml)",
                dir.display()
            );
        }
        Self::run(dir, &configs).await
    }

    async fn run(dir: &Path, configs: &[std::path::PathBuf]) -> Result<Self> {
        let genesis = load_genesis(&dir.join("genesis.json"))?;
        let (proposers, auditors) = (genesis.validators.proposers, genesis.validators.auditors);
        let mut running = Vec::new();
        let mut urls = Vec::new();
        for path in configs {
            let config = NodeConfig::load(path)?;
            let scheme = if config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            urls.push(format!("{scheme}://{}", config.listen));
            running.push(spawn(config).await?);
        }
        let consortium = Self {
            dir: dir.to_owned(),
            urls,
            genesis,
            proposers,
            auditors,
            nodes: running,
        };
        // Bounded, and generous: on a loaded 2-core machine the first block can take a while.
        consortium.wait_healthy(Duration::from_secs(60)).await?;
        Ok(consortium)
    }

    async fn wait_healthy(&self, limit: Duration) -> Result<()> {
        let started = Instant::now();
        for node in &self.nodes {
            while node.node.chain.lock().await.height() == 0 {
                if started.elapsed() > limit {
                    bail!("the consortium made no block within {limit:?}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Each node's base URL and API router, for [`crate::memory::MemoryTransport`].
    pub fn routers(&self) -> Vec<(String, axum::Router)> {
        self.urls
            .iter()
            .zip(&self.nodes)
            .map(|(url, running)| {
                let node = std::sync::Arc::clone(&running.node);
                (url.clone(), emrshare_node::api::router(node))
            })
            .collect()
    }

    /// The approvals of `proposal` by the genesis council's members whose keys this
    /// consortium's folder holds (see [`council_approvals`]).
    pub fn approve(&self, proposal: &Proposal) -> Result<Vec<Approval>> {
        council_approvals(&self.dir, proposal)
    }

    /// `account`'s admission as `role` (valid from 0 to `valid_until`, a hospital with its
    /// voucher key), approved by the council: the Govern transaction the admitted party
    /// submits (its first).
    pub fn admission(
        &self,
        account: &mut Account,
        role: Role,
        valid_until: u64,
        voucher_key: Option<&VoucherKey>,
    ) -> Result<SignedTransaction> {
        let proposal =
            account.admission_proposal(role, 0, valid_until, voucher_key, crate::now() + 3600);
        let approvals = self.approve(&proposal)?;
        Ok(account.govern(proposal, approvals))
    }

    pub async fn stop(self) -> Result<()> {
        for node in self.nodes {
            node.stop().await?;
        }
        Ok(())
    }
}

/// Approves `proposal` with the keys of the genesis council's members found in `dir` (a
/// folder written by `emrshare-node init`: `node-*/node.key.json`), as many as the council's
/// threshold. Fails if the folder holds fewer members' keys than that.
pub fn council_approvals(dir: &Path, proposal: &Proposal) -> Result<Vec<Approval>> {
    let council = load_genesis(&dir.join("genesis.json"))?.council();
    let mut key_files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path().join("node.key.json"))
        .filter(|path| path.exists())
        .collect();
    key_files.sort();
    let mut approvals = Vec::new();
    for path in key_files {
        if approvals.len() == council.threshold {
            break;
        }
        let keys = load_keys(&path)?;
        let is_member = council
            .member(&keys.id)
            .is_some_and(|m| m.signing_jwk == keys.signing.verifying_key().to_jwk(None));
        if is_member {
            approvals.push(proposal.approve(&keys.id, &keys.signing));
        }
    }
    if approvals.len() < council.threshold {
        bail!(
            "{} holds the keys of {} council members; an approval needs {}",
            dir.display(),
            approvals.len(),
            council.threshold
        );
    }
    Ok(approvals)
}

/// A registration voucher of the hospital whose voucher key is `hospital`, for `patient` on
/// `chain_id`: the whole blind protocol (blind, sign blind, finalize) with both sides in
/// this process.
pub fn voucher_for(
    hospital: &VoucherSecretKey,
    chain_id: &str,
    patient: &PartyId,
) -> Result<Voucher> {
    let (pending, blinded) = voucher::blind(&hospital.public()?, chain_id, patient)?;
    Ok(pending.finalize(&hospital.sign_blind(&blinded)?)?)
}

/// What `emrshare local-consortium` starts.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub nodes: usize,
    pub block_ms: u64,
    pub tls: bool,
    pub seconds: Option<u64>,
    pub base_port: Option<u16>,
    /// Written (the node URLs, one a line) once every node serves: a script waits for it
    /// instead of racing the start.
    pub ready_file: Option<std::path::PathBuf>,
}

/// `emrshare local-consortium`: starts one in `dir` (or, if `dir` holds one, starts it again)
/// and serves until Ctrl-C or `seconds`.
pub fn serve(dir: &Path, options: &ServeOptions) -> Result<()> {
    let resuming = dir.join("genesis.json").exists();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let seconds = options.seconds;
    runtime.block_on(async {
        let consortium = if resuming {
            LocalConsortium::resume(dir).await?
        } else {
            let o = options;
            LocalConsortium::start(dir, o.nodes, o.block_ms, o.tls, o.base_port).await?
        };
        for url in &consortium.urls {
            crate::say!("{url}");
        }
        if let Some(path) = &options.ready_file {
            let temp = path.with_extension("tmp");
            std::fs::write(&temp, consortium.urls.join("\n") + "\n")
                .and_then(|()| std::fs::rename(&temp, path))
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        crate::say!("ready");
        let limit = async {
            match seconds {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = limit => {}
        }
        consortium.stop().await
    })
}
