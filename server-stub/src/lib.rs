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
pub mod tls;

use anyhow::{Context, Result};
use std::future::Future;

/// Runs one node (consensus loop and HTTP API, HTTPS when the config has `[tls]`) until
/// `shutdown` completes.
pub async fn serve(
    config: config::NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listen = config.listen;
    let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
    let node = node::Node::open(config)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!("{} listening on {scheme}://{listen}", node.keys.id);
    let consensus = tokio::spawn(std::sync::Arc::clone(&node).run_consensus());
    let app = api::router(node);
    let served = match tls {
        Some(tls) => {
            axum::serve(tls::TlsListener::new(listener, tls), app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    consensus.abort();
    Ok(served?)
}
