//! `emrshare-node` as a library: the reference full node of an emrshare consortium.
//!
//! The binary (`src/main.rs`) is a thin command line over [`provision::init`] and [`serve`]; the
//! `emrshare` CLI starts a local consortium inside its own process with [`spawn`] for its demo.

#![forbid(unsafe_code)]

pub mod api;
pub mod bft;
pub mod blobs;
pub mod chain;
pub mod config;
pub mod conn;
pub mod consensus;
pub mod mempool;
pub mod node;
pub mod peers;
pub mod provision;
pub mod record_vouchers;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod tls;

use anyhow::{Context, Result};
use std::future::Future;
use std::sync::Arc;

/// Runs one node (consensus, transaction relay and HTTP API, HTTPS when the config has
/// `[tls]`) until `shutdown` completes.
pub async fn serve(
    config: config::NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (node, listener, tls) = open(config).await?;
    run(node, listener, tls, shutdown).await
}

/// A node started inside this process by [`spawn`].
pub struct RunningNode {
    pub node: Arc<node::Node>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl RunningNode {
    /// Stops serving and waits for the node to finish.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        (&mut self.task).await?
    }
}

/// Starts a node on the current tokio runtime; it serves once this returns.
pub async fn spawn(config: config::NodeConfig) -> Result<RunningNode> {
    let (node, listener, tls) = open(config).await?;
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(Arc::clone(&node), listener, tls, async {
        let _ = stopped.await;
    }));
    Ok(RunningNode {
        node,
        shutdown: Some(shutdown),
        task,
    })
}

type Opened = (
    Arc<node::Node>,
    tokio::net::TcpListener,
    Option<Arc<rustls::ServerConfig>>,
);

async fn open(config: config::NodeConfig) -> Result<Opened> {
    let listen = config.listen;
    let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
    let node = node::Node::open(config)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!("{} listening on {scheme}://{listen}", node.keys.id);
    Ok((node, listener, tls))
}

async fn run(
    node: Arc<node::Node>,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let consensus = consensus::start(Arc::clone(&node)).await?;
    let relay = tokio::spawn(Arc::clone(&node).run_relay());
    let peers = tokio::spawn(peers::watch(Arc::clone(&node)));
    let limits =
        conn::ServeLimits::new(&node.config.limits).fit_open_file_limit(node.config.peers.len());
    let app = api::router(node);
    conn::serve(listener, tls, app, limits, shutdown).await;
    consensus.stop().await;
    relay.abort();
    peers.abort();
    Ok(())
}
