//! [`ClientConfig`]: which consortium, and how to talk to it.

use crate::error::{Result, invalid};
use emrshare_client::{self, HttpTransport, NodeClient, TlsTrust};
use emrshare_core::ledger::block::Genesis;
use std::time::Duration;

/// Where the consortium's full nodes are and how the SDK trusts them. The genesis is the root
/// of trust: every answer is verified against it, whichever node gives it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ClientConfig {
    /// Base URLs of the full nodes (`https://...`; `http://` only for loopback tests, or
    /// `http://10.0.2.2:PORT` from an Android emulator to its host).
    pub node_urls: Vec<String>,
    /// The consortium's `genesis.json`.
    pub genesis_json: String,
    /// IDs per k-anonymous lookup: the target and k-1 decoys of its role; 0 asks for the
    /// whole directory of the role (also used when the directory has at most k IDs).
    #[uniffi(default = 10)]
    pub k: u32,
    /// Nodes asked per lookup (answers are verified, dishonest ones reported).
    #[uniffi(default = 3)]
    pub n: u32,
    /// How long one node may take to answer one request.
    #[uniffi(default = 5000)]
    pub request_timeout_ms: u64,
    /// How long to wait for a submitted transaction to be committed.
    #[uniffi(default = 30000)]
    pub commit_timeout_ms: u64,
    /// Trust only this CA (PEM) for `https://` nodes (a consortium's own CA). Without it,
    /// `https://` nodes are checked by the platform's verifier (Android trust store, Apple
    /// Security framework) where the library is built with it, and refused elsewhere.
    #[uniffi(default = None)]
    pub ca_pem: Option<String>,
}

pub(crate) type Client = NodeClient<HttpTransport>;

impl ClientConfig {
    pub(crate) fn commit_timeout(&self) -> Duration {
        Duration::from_millis(self.commit_timeout_ms)
    }

    fn trust(&self) -> Result<TlsTrust> {
        if let Some(pem) = &self.ca_pem {
            return Ok(TlsTrust::CaPem(pem.as_bytes().to_vec()));
        }
        let any_https = self.node_urls.iter().any(|u| u.starts_with("https://"));
        if !any_https {
            return Ok(TlsTrust::PlainHttpOnly);
        }
        crate::platform::platform_trust()
    }

    /// The verified client of the consortium's nodes.
    pub(crate) fn client(&self) -> Result<Client> {
        if self.node_urls.is_empty() {
            return Err(invalid("the configuration names no node"));
        }
        for url in &self.node_urls {
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok || url.len() > 2048 {
                return Err(invalid("node URLs must start with https:// or http://"));
            }
        }
        if self.n == 0 {
            return Err(invalid("n must be at least 1"));
        }
        if self.request_timeout_ms == 0 || self.commit_timeout_ms == 0 {
            return Err(invalid("timeouts must be positive"));
        }
        let genesis: Genesis = emrshare_core::strict_json::parse(self.genesis_json.as_bytes())
            .map_err(|_| invalid("the genesis is not a valid consortium genesis"))?;
        let timeout = Duration::from_millis(self.request_timeout_ms);
        let transport = HttpTransport::new(self.trust()?, timeout)
            .map_err(|_| invalid("the TLS configuration (CA PEM) is not valid"))?;
        let mut config = emrshare_client::ClientConfig::new(self.node_urls.clone(), genesis);
        config.n = (self.n as usize).min(self.node_urls.len());
        config.timeout = timeout;
        NodeClient::new(config, transport).map_err(crate::error::from_net)
    }
}

/// A configuration with the defaults for everything but the consortium.
#[uniffi::export]
pub fn default_client_config(node_urls: Vec<String>, genesis_json: String) -> ClientConfig {
    ClientConfig {
        node_urls,
        genesis_json,
        k: 10,
        n: 3,
        request_timeout_ms: 5000,
        commit_timeout_ms: 30000,
        ca_pem: None,
    }
}
