//! `emrshare-node` as a library: the reference full node of an emrshare consortium.
//!
//! The binary (`src/main.rs`) is a thin command line over [`config::init`] and [`serve`]; the
//! `emrshare` CLI embeds the same [`serve`] to start a local consortium for its demo.

pub mod api;
pub mod blobs;
pub mod chain;
pub mod config;
pub mod node;
pub mod store;

use anyhow::Result;
use std::future::Future;

/// Runs one node (consensus loop and HTTP API) until `shutdown` completes.
pub async fn serve(
    config: config::NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listen = config.listen;
    let node = node::Node::open(config)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!("{} listening on {listen}", node.keys.id);
    let consensus = tokio::spawn(std::sync::Arc::clone(&node).run_consensus());
    let served = axum::serve(listener, api::router(node))
        .with_graceful_shutdown(shutdown)
        .await;
    consensus.abort();
    Ok(served?)
}
