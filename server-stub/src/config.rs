//! Node configuration (one TOML file per node) and `emrshare-node init`, which writes a local
//! consortium: per node a key file and a config, and one shared genesis file.

use anyhow::{Context, Result, bail};
use emrshare_core::PrivateKeySet;
use emrshare_core::keys::{PartyId, RsaBits};
use emrshare_core::ledger::block::{Genesis, Validator, ValidatorSet};
use emrshare_core::ledger::governance::Council;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub id: PartyId,
    pub listen: SocketAddr,
    /// Relative paths are relative to the config file's folder.
    pub data_dir: PathBuf,
    pub key_file: PathBuf,
    pub genesis_file: PathBuf,
    #[serde(default)]
    pub peers: Vec<Peer>,
    #[serde(default)]
    pub limits: Limits,
    /// HTTPS for the API, and the CA that https peers are checked against. Without it the
    /// node serves plain HTTP (loopback demos and tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// The `[tls]` section: PEM files; relative paths are relative to the config file's folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The node's certificate chain (leaf first).
    pub cert_file: PathBuf,
    /// The certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The CA that peers' certificates chain to; needed when peer URLs are https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub id: PartyId,
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_blob_bytes: usize,
    pub max_lookup_ids: usize,
    /// IDs per directory page.
    pub max_page_ids: usize,
    pub max_txs_per_block: usize,
    /// Largest proposal or block a peer may send (its transactions are up to 64 KiB each).
    pub max_block_bytes: usize,
    /// How long the node waits for a peer.
    pub request_timeout_ms: u64,
    /// How long one request to this node may take, body included.
    pub serve_timeout_ms: u64,
    /// Acknowledged transactions waiting for a block, in all.
    pub max_mempool_txs: usize,
    /// Their JWS bytes, in all.
    pub max_mempool_bytes: usize,
    /// Waiting transactions of one sender: its window of future sequence numbers.
    pub max_pending_per_sender: usize,
    /// How long a transaction may wait for a block before it is reported failed.
    pub mempool_max_age_ms: u64,
    /// Blob uploads streamed to disk at once; more are refused with 503.
    pub max_concurrent_uploads: usize,
}

/// Room in a proposal or block body for what is not transactions (header, signatures, votes,
/// a release proof): the transactions of a block get `max_block_bytes` less this.
pub const BLOCK_ENVELOPE_BYTES: usize = 256 * 1024;
/// Room in a request body for what is not the transaction (the JSON around it).
pub const REQUEST_ENVELOPE_BYTES: usize = 4 * 1024;

impl Limits {
    /// The bytes of transactions one block may carry: always fits `max_block_bytes`.
    pub fn block_tx_bytes(&self) -> usize {
        self.max_block_bytes.saturating_sub(BLOCK_ENVELOPE_BYTES)
    }

    /// The bytes of transactions one relay request may carry: fits the peers' body limit.
    pub fn relay_batch_bytes(&self) -> usize {
        self.max_body_bytes.saturating_sub(REQUEST_ENVELOPE_BYTES)
    }

    /// Refuses limits that cannot work together: a body limit that cannot carry the largest
    /// transaction, a block that cannot carry one, or a mempool smaller than a block.
    pub fn validate(&self) -> Result<()> {
        use emrshare_core::ledger::tx::MAX_TX_BYTES;
        let need = |ok: bool, what: String| {
            if ok {
                Ok(())
            } else {
                Err(anyhow::anyhow!(what))
            }
        };
        need(
            self.max_body_bytes >= MAX_TX_BYTES + REQUEST_ENVELOPE_BYTES,
            format!(
                "limits.max_body_bytes must be at least {} (the largest transaction and its request)",
                MAX_TX_BYTES + REQUEST_ENVELOPE_BYTES
            ),
        )?;
        need(
            self.max_block_bytes >= MAX_TX_BYTES + BLOCK_ENVELOPE_BYTES,
            format!(
                "limits.max_block_bytes must be at least {} (the largest transaction and a block's header and votes)",
                MAX_TX_BYTES + BLOCK_ENVELOPE_BYTES
            ),
        )?;
        need(
            self.max_txs_per_block >= 1 && self.max_mempool_txs >= self.max_txs_per_block,
            "limits: need 1 <= max_txs_per_block <= max_mempool_txs".into(),
        )?;
        need(
            self.max_mempool_bytes >= MAX_TX_BYTES && self.max_pending_per_sender >= 1,
            format!(
                "limits: max_mempool_bytes must be at least {MAX_TX_BYTES} and max_pending_per_sender at least 1"
            ),
        )?;
        need(
            self.max_concurrent_uploads >= 1 && self.max_blob_bytes >= 1,
            "limits: max_concurrent_uploads and max_blob_bytes must be at least 1".into(),
        )?;
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            max_blob_bytes: 64 * 1024 * 1024,
            max_lookup_ids: 1024,
            max_page_ids: 1000,
            max_txs_per_block: 2000,
            max_block_bytes: 64 * 1024 * 1024,
            request_timeout_ms: 2000,
            serve_timeout_ms: 60_000,
            max_mempool_txs: 20_000,
            max_mempool_bytes: 64 * 1024 * 1024,
            max_pending_per_sender: 32,
            mempool_max_age_ms: 10 * 60 * 1000,
            max_concurrent_uploads: 16,
        }
    }
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut config: Self =
            toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        config
            .limits
            .validate()
            .with_context(|| format!("invalid config {}", path.display()))?;
        resolve(&mut config.data_dir);
        resolve(&mut config.key_file);
        resolve(&mut config.genesis_file);
        if let Some(tls) = &mut config.tls {
            resolve(&mut tls.cert_file);
            resolve(&mut tls.key_file);
            if let Some(ca) = &mut tls.ca_file {
                resolve(ca);
            }
        }
        Ok(config)
    }
}

pub fn load_genesis(path: &Path) -> Result<Genesis> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let genesis: Genesis = emrshare_core::strict_json::parse(&bytes)
        .with_context(|| format!("invalid genesis {}", path.display()))?;
    genesis.validators.check()?;
    genesis
        .council()
        .check()
        .with_context(|| format!("invalid governance council in {}", path.display()))?;
    Ok(genesis)
}

/// What `init` writes (also its command-line flags).
#[derive(Debug, clap::Args)]
pub struct InitOptions {
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Representative (proposer) nodes, RPN.
    #[arg(long, default_value_t = 3)]
    pub proposers: usize,
    /// Audit nodes, ATN.
    #[arg(long, default_value_t = 2)]
    pub auditors: usize,
    #[arg(long, default_value_t = 7100)]
    pub base_port: u16,
    #[arg(long, default_value_t = 500)]
    pub slot_ms: u64,
    #[arg(long, default_value = "emrshare-local")]
    pub chain_id: String,
    /// Serve HTTPS: writes a consortium CA (ca.pem; its key is not kept) and a certificate per
    /// node (node-<i>/tls.{cert,key}.pem, for 127.0.0.1 and localhost), and https peer URLs.
    #[arg(long)]
    pub tls: bool,
}

/// Writes `dir/genesis.json` and `dir/node-<i>/{node.key.json,config.toml}`.
pub fn init(dir: &Path, options: &InitOptions) -> Result<Vec<PathBuf>> {
    if options.proposers + options.auditors > options.nodes
        || options.proposers == 0
        || options.auditors == 0
    {
        bail!("need 1 <= proposers, 1 <= auditors, proposers + auditors <= nodes");
    }
    std::fs::create_dir_all(dir)?;
    let keys: Vec<PrivateKeySet> = (0..options.nodes)
        .map(|i| {
            PrivateKeySet::generate(
                Some(PartyId::new(format!("node:{i}")).expect("valid ID")),
                RsaBits::B2048,
            )
        })
        .collect();
    let validators: Vec<Validator> = keys
        .iter()
        .map(|k| Validator {
            id: k.id.clone(),
            signing_jwk: k.signing.verifying_key().to_jwk(None),
            credit: 100,
        })
        .collect();
    // Governance: every node is a council member with its consensus key, and an action
    // needs floor(2n/3) + 1 of them (more than two thirds).
    let council = Council::of_validators(&validators);
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let genesis = Genesis {
        chain_id: options.chain_id.clone(),
        validators: ValidatorSet {
            validators,
            proposers: options.proposers,
            auditors: options.auditors,
        },
        slot_ms: options.slot_ms,
        start_ms,
        governance: Some(council),
    };
    std::fs::write(
        dir.join("genesis.json"),
        serde_json::to_string_pretty(&genesis)?,
    )?;
    let scheme = if options.tls { "https" } else { "http" };
    let url = |i: usize| format!("{scheme}://127.0.0.1:{}", options.base_port as usize + i);
    let ca = if options.tls {
        let ca = crate::tls::ConsortiumCa::generate(&options.chain_id)?;
        std::fs::write(dir.join("ca.pem"), ca.cert_pem())?;
        Some(ca)
    } else {
        None
    };
    let mut configs = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let node_dir = dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&node_dir)?;
        std::fs::write(node_dir.join("node.key.json"), key.to_json().as_bytes())?;
        let tls = match &ca {
            Some(ca) => {
                let (cert_pem, key_pem) = ca.issue(key.id.as_str())?;
                std::fs::write(node_dir.join("tls.cert.pem"), cert_pem)?;
                crate::tls::write_private(&node_dir.join("tls.key.pem"), key_pem.as_bytes())?;
                Some(TlsConfig {
                    cert_file: "tls.cert.pem".into(),
                    key_file: "tls.key.pem".into(),
                    ca_file: Some("../ca.pem".into()),
                })
            }
            None => None,
        };
        let config = NodeConfig {
            id: key.id.clone(),
            listen: format!("127.0.0.1:{}", options.base_port as usize + i).parse()?,
            data_dir: "data".into(),
            key_file: "node.key.json".into(),
            genesis_file: "../genesis.json".into(),
            peers: (0..options.nodes)
                .filter(|&j| j != i)
                .map(|j| Peer {
                    id: keys[j].id.clone(),
                    url: url(j),
                })
                .collect(),
            limits: Limits::default(),
            tls,
        };
        let path = node_dir.join("config.toml");
        std::fs::write(&path, toml::to_string_pretty(&config)?)?;
        configs.push(path);
    }
    Ok(configs)
}
