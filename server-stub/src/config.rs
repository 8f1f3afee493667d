//! Node configuration (one TOML file per node) and `emrshare-node init`, which writes a local
//! consortium: per node a key file and a config, and one shared genesis file.

use anyhow::{Context, Result, anyhow};
use emrshare_core::PrivateKeySet;
use emrshare_core::keys::PartyId;
use emrshare_core::ledger::block::Genesis;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub id: PartyId,
    pub listen: SocketAddr,
    /// Where consensus listens for the other validators (libp2p, `/ip4/A/tcp/P`).
    pub p2p_listen: String,
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
    /// The node's record voucher key (RFC 9474 RSA, PKCS#8 DER, owner-only), whose public
    /// half genesis lists: with it the node issues record vouchers to registered patients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_voucher_key_file: Option<PathBuf>,
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
    /// Its HTTP API (transactions are relayed there).
    pub url: String,
    /// Its consensus address (libp2p, `/ip4/A/tcp/P`).
    pub p2p: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_blob_bytes: usize,
    pub max_lookup_ids: usize,
    /// The most IDs one directory bucket answer holds (a lookup's bucket holds about k to 2k;
    /// a larger one is refused: the client asks a longer prefix).
    pub max_page_ids: usize,
    pub max_txs_per_block: usize,
    /// Largest proposal or block a peer may send (its transactions are up to 64 KiB each).
    pub max_block_bytes: usize,
    /// How long the node waits for a peer.
    pub request_timeout_ms: u64,
    /// How long one request to this node may take, body included.
    pub serve_timeout_ms: u64,
    /// Open client connections at most (TLS handshakes included). Over it, the connection
    /// idle the longest is closed to make room; when every one is busy, a newcomer gets a
    /// 503. Lowered at start to what the open-file limit leaves room for.
    pub max_connections: usize,
    /// A client has this long to send a request's headers (from connecting, or from the
    /// request's first byte on a kept-alive connection); then the connection is closed.
    pub header_read_timeout_ms: u64,
    /// A kept-alive connection with no request for this long is closed.
    pub idle_timeout_ms: u64,
    /// A client has this long to finish its TLS handshake.
    pub tls_handshake_timeout_ms: u64,
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
    /// Record vouchers one patient gets from this node per UTC day (each opens one
    /// record's account); more are refused with 429.
    pub record_vouchers_per_day: u32,
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
            max_page_ids: 4096,
            max_txs_per_block: 2000,
            max_block_bytes: 64 * 1024 * 1024,
            request_timeout_ms: 2000,
            serve_timeout_ms: 60_000,
            max_mempool_txs: 20_000,
            max_mempool_bytes: 64 * 1024 * 1024,
            max_pending_per_sender: 32,
            mempool_max_age_ms: 10 * 60 * 1000,
            max_concurrent_uploads: 16,
            record_vouchers_per_day: 64,
            max_connections: 512,
            header_read_timeout_ms: 5_000,
            idle_timeout_ms: 30_000,
            tls_handshake_timeout_ms: 5_000,
        }
    }
}

impl Limits {
    /// What makes no sense as a limit: a zero size, count or timeout.
    fn check(&self) -> Result<(), String> {
        let nonzero = [
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_blob_bytes", self.max_blob_bytes as u64),
            ("max_lookup_ids", self.max_lookup_ids as u64),
            ("max_page_ids", self.max_page_ids as u64),
            ("max_txs_per_block", self.max_txs_per_block as u64),
            ("max_block_bytes", self.max_block_bytes as u64),
            ("request_timeout_ms", self.request_timeout_ms),
            ("serve_timeout_ms", self.serve_timeout_ms),
            ("max_connections", self.max_connections as u64),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("tls_handshake_timeout_ms", self.tls_handshake_timeout_ms),
        ];
        match nonzero.iter().find(|(_, value)| *value == 0) {
            Some((name, _)) => Err(format!("limits.{name} must be at least 1")),
            None => Ok(()),
        }
    }
}

/// A TOML error on one line: where, and what (toml's own text quotes the line over several).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let what = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {what}")
        }
        None => what,
    }
}

impl NodeConfig {
    /// Reads and checks a config file; every error names it.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut config: Self = toml::from_str(&text).map_err(|e| {
            anyhow!(
                "invalid config {}: {}",
                path.display(),
                toml_error(&text, &e)
            )
        })?;
        config
            .limits
            .check()
            .map_err(|e| anyhow!("invalid config {}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        // Relative to the config's folder; `..` resolved where the folder exists, so that
        // errors name the file plainly.
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                let joined = base.join(&*p);
                let plain = match (joined.parent(), joined.file_name()) {
                    (Some(dir), Some(name)) => {
                        std::fs::canonicalize(dir).ok().map(|d| d.join(name))
                    }
                    _ => None,
                };
                *p = plain.unwrap_or(joined);
            }
        };
        config
            .limits
            .validate()
            .with_context(|| format!("invalid config {}", path.display()))?;
        resolve(&mut config.data_dir);
        resolve(&mut config.key_file);
        resolve(&mut config.genesis_file);
        if let Some(file) = &mut config.record_voucher_key_file {
            resolve(file);
        }
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
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read genesis file {}", path.display()))?;
    let genesis: Genesis = emrshare_core::strict_json::parse(&bytes)
        .with_context(|| format!("invalid genesis file {}", path.display()))?;
    genesis
        .validators
        .check()
        .with_context(|| format!("invalid genesis file {}", path.display()))?;
    genesis
        .council()
        .check()
        .with_context(|| format!("invalid governance council in {}", path.display()))?;
    Ok(genesis)
}

/// The node's keys (`key_file`); errors name the file.
pub fn load_keys(path: &Path) -> Result<PrivateKeySet> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    PrivateKeySet::from_json(&bytes).with_context(|| format!("invalid key file {}", path.display()))
}
