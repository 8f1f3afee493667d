//! `emrshare-node`: the reference full node of an emrshare consortium.
//!
//! `emrshare-node init --dir DIR` writes a local consortium (keys, genesis, one config per
//! node); `emrshare-node run --config DIR/node-0/config.toml` starts one node. An error
//! ends it with one line on stderr, `emrshare-node: <what>: <cause>`, and exit code 1.
#![forbid(unsafe_code)]

use anyhow::Result;
use clap::{Parser, Subcommand};
use emrshare_node::{config, provision};
use std::path::PathBuf;
use std::process::ExitCode;

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
        options: provision::InitOptions,
    },
    /// Run one node.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let done = match Cli::parse().command {
        Command::Init { dir, options } => provision::init(&dir, &options).map(|paths| {
            for path in paths {
                println!("{}", path.display());
            }
        }),
        Command::Run { config } => config::NodeConfig::load(&config).and_then(run),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emrshare-node: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// An error and its causes as one line, `what: cause: cause` (a cause whose text its
/// error already quotes is not repeated).
fn one_line(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::main]
async fn run(config: config::NodeConfig) -> Result<()> {
    emrshare_node::serve(config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
