//! `emrshare-node`: the reference full node of an emrshare consortium.
//!
//! `emrshare-node init --dir DIR` writes a local consortium (keys, genesis, one config per
//! node); `emrshare-node run --config DIR/node-0/config.toml` starts one node.

mod api;
mod blobs;
mod chain;
mod config;
mod node;
mod store;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "emrshare-node",
    version,
    about = "The emrshare reference full node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a local consortium: genesis.json and node-<i>/{node.key.json,config.toml}.
    Init {
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        options: config::InitOptions,
    },
    /// Run one node.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Init { dir, options } => {
            for path in config::init(&dir, &options)? {
                println!("{}", path.display());
            }
            Ok(())
        }
        Command::Run { config } => run(config::NodeConfig::load(&config)?),
    }
}

#[tokio::main]
async fn run(config: config::NodeConfig) -> Result<()> {
    let listen = config.listen;
    let node = node::Node::open(config)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!("{} listening on {listen}", node.keys.id);
    tokio::spawn(std::sync::Arc::clone(&node).run_consensus());
    axum::serve(listener, api::router(node))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
