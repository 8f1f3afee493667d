//! `emrshare-node`: the reference full node of an emrshare consortium.
//!
//! `emrshare-node init --dir DIR` writes a local consortium (keys, genesis, one config per
//! node); `emrshare-node run --config DIR/node-0/config.toml` starts one node.

use anyhow::Result;
use clap::{Parser, Subcommand};
use emrshare_node::config;
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
    emrshare_node::serve(config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
