//! Each role's steps against a running consortium (`emrshare-node init` + `run`): register,
//! look up, and the patient's and requester's ledger steps. Every answer is verified from the
//! consortium's genesis, as in the demo.

use crate::files;
use crate::now;
use anyhow::{Context, Result, bail, ensure};
use clap::{Args, Subcommand};
use emrshare_client::{ClientConfig, HttpTransport, NodeClient, TlsTrust};
use emrshare_core::account::{Account, share_envelope};
use emrshare_core::jwe::{Envelope, MAX_ENVELOPE_BYTES};
use emrshare_core::keys::PartyId;
use emrshare_core::keys::txkeys::MasterSecret;
use emrshare_core::ledger::state::hex32;
use emrshare_core::ledger::tx::{Action, Role, TxBody};
use emrshare_core::lookup::{LookupKey, LookupPlan, QuerySize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which consortium to talk to.
#[derive(Args, Debug, Clone)]
pub struct Consortium {
    /// A folder written by `emrshare-node init`: its genesis.json, node URLs and CA.
    #[arg(long, conflicts_with_all = ["genesis", "node"])]
    consortium: Option<PathBuf>,
    /// The consortium's genesis file (with --node).
    #[arg(long, requires = "node")]
    genesis: Option<PathBuf>,
    /// A node's base URL; repeat for several.
    #[arg(long)]
    node: Vec<String>,
    /// A CA certificate (PEM) to trust for https nodes.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Nodes asked per lookup.
    #[arg(long, default_value_t = 3)]
    n: usize,
}

impl Consortium {
    fn client(&self) -> Result<NodeClient> {
        let (genesis_path, mut nodes, mut ca) =
            (self.genesis.clone(), self.node.clone(), self.ca.clone());
        let genesis_path = match &self.consortium {
            Some(dir) => {
                for entry in std::fs::read_dir(dir)
                    .with_context(|| format!("cannot read {}", dir.display()))?
                {
                    let config = entry?.path().join("config.toml");
                    if config.exists() {
                        let config = emrshare_node::config::NodeConfig::load(&config)?;
                        let scheme = if config.tls.is_some() {
                            "https"
                        } else {
                            "http"
                        };
                        nodes.push(format!("{scheme}://{}", config.listen));
                    }
                }
                nodes.sort();
                if ca.is_none() && dir.join("ca.pem").exists() {
                    ca = Some(dir.join("ca.pem"));
                }
                dir.join("genesis.json")
            }
            None => {
                genesis_path.context("give --consortium DIR, or --genesis FILE and --node URL")?
            }
        };
        ensure!(!nodes.is_empty(), "no nodes given");
        let genesis = emrshare_core::strict_json::parse(
            &std::fs::read(&genesis_path)
                .with_context(|| format!("cannot read {}", genesis_path.display()))?,
        )
        .with_context(|| format!("invalid genesis {}", genesis_path.display()))?;
        let trust = match ca {
            Some(path) => TlsTrust::CaPem(
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
            ),
            None => TlsTrust::PlainHttpOnly,
        };
        let mut config = ClientConfig::new(nodes, genesis);
        config.n = self.n;
        Ok(NodeClient::new(
            config,
            HttpTransport::new(trust, Duration::from_secs(5))?,
        )?)
    }
}

#[derive(Subcommand)]
pub enum PatientCommand {
    /// Store a record (an envelope sealed to the patient) on the nodes and index it on chain.
    Store {
        #[arg(long)]
        key: PathBuf,
        /// The envelope (JWE) the doctor sealed to the patient.
        #[arg(long = "in")]
        input: PathBuf,
        #[arg(long, default_value = "general")]
        department: String,
        #[command(flatten)]
        consortium: Consortium,
    },
    /// Grant a requester read access to a stored record until a time.
    Grant {
        #[arg(long)]
        key: PathBuf,
        /// The stored envelope (the file given to `store`).
        #[arg(long = "in")]
        input: PathBuf,
        /// The requester's registered ID (looked up k-anonymously).
        #[arg(long)]
        to: String,
        /// The requester's role (for the decoys of the lookup).
        #[arg(long, default_value = "insurer")]
        role: String,
        /// Parts the grant names, comma-separated.
        #[arg(long, default_value = "")]
        parts: String,
        /// Seconds the grant lasts.
        #[arg(long, default_value_t = 3600)]
        seconds: u64,
        #[arg(long, default_value_t = 10)]
        k: usize,
        #[command(flatten)]
        consortium: Consortium,
    },
    /// Revoke a grant.
    Revoke {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        grant: String,
        #[command(flatten)]
        consortium: Consortium,
    },
    /// Every logged access to the patient's records, from verified blocks.
    Audit {
        #[arg(long)]
        key: PathBuf,
        /// The blob addresses (hex) of the patient's records; repeat.
        #[arg(long = "blob", required = true)]
        blobs: Vec<String>,
        #[command(flatten)]
        consortium: Consortium,
    },
}

#[derive(Subcommand)]
pub enum RequesterCommand {
    /// Fetch a blob under a grant (logged on chain) and open it.
    Fetch {
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        blob: String,
        #[arg(long)]
        grant: String,
        #[command(flatten)]
        consortium: Consortium,
    },
}

fn parse_role(role: &str) -> Result<Role> {
    serde_json::from_value(serde_json::Value::String(role.into())).map_err(|_| {
        anyhow::anyhow!("unknown role {role:?} (patient, doctor, hospital, insurer, researcher)")
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

async fn account(client: &NodeClient, key: &Path) -> Result<Account> {
    let keys = files::load_private_keys(key)?;
    let next = client.next_sequence(&keys.id).await?;
    Ok(Account::new(keys, &client.config().genesis.chain_id, next))
}

async fn commit(
    client: &NodeClient,
    account: &Account,
    tx: &emrshare_core::ledger::tx::SignedTransaction,
) -> Result<()> {
    client.submit(tx).await?;
    client
        .wait_sequence(
            account.id(),
            tx.transaction().sequence,
            Duration::from_secs(30),
        )
        .await?;
    Ok(())
}

/// `emrshare register`.
pub fn register(key: &Path, role: &str, days: u64, consortium: &Consortium) -> Result<()> {
    let role = parse_role(role)?;
    runtime()?.block_on(async {
        let client = consortium.client()?;
        let mut account = account(&client, key).await?;
        ensure!(
            account.next_sequence() == 0,
            "{} has sent transactions already",
            account.id()
        );
        let tx = account.register(role, now(), now() + days * 24 * 3600);
        commit(&client, &account, &tx).await?;
        let entry = client
            .wait_registered(account.id(), Duration::from_secs(30))
            .await?;
        println!(
            "{} registered as {role:?} (proven at height {})",
            entry.id(),
            entry.height()
        );
        Ok(())
    })
}

/// `emrshare lookup`: a verified k-anonymous lookup; prints the registry entry.
pub fn lookup(id: &str, role: &str, k: usize, consortium: &Consortium) -> Result<()> {
    let role = parse_role(role)?;
    let target = PartyId::new(id)?;
    runtime()?.block_on(async {
        let client = consortium.client()?;
        let directory = client.directory(role).await?;
        // A one-off key: repeated lookups from the CLI are not linked to a patient.
        let key = LookupKey::derive(&MasterSecret::generate());
        let size = if k >= directory.len() {
            QuerySize::All
        } else {
            QuerySize::K(k)
        };
        let plan = LookupPlan::new(&key, &target, role, &directory, size)?;
        let outcome = client.lookup(&plan).await?;
        for evidence in &outcome.evidence {
            eprintln!(
                "emrshare: evidence against {}: {}",
                evidence.node, evidence.fault
            );
        }
        let entry = outcome
            .target
            .with_context(|| format!("{id} is not registered (proven absent)"))?;
        eprintln!(
            "asked {} IDs; verified by {} at height {}",
            plan.ids().len(),
            outcome.verified_by.join(", "),
            outcome.header.header.height
        );
        println!("{}", serde_json::to_string_pretty(entry.entry())?);
        Ok(())
    })
}

pub fn patient(command: PatientCommand) -> Result<()> {
    runtime()?.block_on(async {
        match command {
            PatientCommand::Store {
                key,
                input,
                department,
                consortium,
            } => {
                let client = consortium.client()?;
                let mut patient = account(&client, &key).await?;
                let bytes = std::fs::read(&input)
                    .with_context(|| format!("cannot read {}", input.display()))?;
                let envelope = Envelope::parse(&bytes)?;
                envelope
                    .open(patient.keys())
                    .context("the envelope is not sealed to this patient")?;
                let blob = client
                    .put_blob(
                        &bytes,
                        &patient.blob_claim(&emrshare_core::content_hash(&bytes), now()),
                    )
                    .await?;
                let previous = client.index(patient.id(), &department).await?.head;
                let location = format!("emrshare:blob/{}", hex32::to_hex(&blob));
                let tx =
                    patient.upload_index(&department, &location, &blob, None, now(), previous)?;
                commit(&client, &patient, &tx).await?;
                println!("{}", hex32::to_hex(&blob));
                Ok(())
            }
            PatientCommand::Grant {
                key,
                input,
                to,
                role,
                parts,
                seconds,
                k,
                consortium,
            } => {
                let client = consortium.client()?;
                let mut patient = account(&client, &key).await?;
                let role = parse_role(&role)?;
                let target = PartyId::new(to)?;
                let directory = client.directory(role).await?;
                let lookup_key = LookupKey::derive(&MasterSecret::from_bytes(
                    emrshare_core::content_hash(patient.keys().to_json().as_bytes()),
                ));
                let size = if k >= directory.len() {
                    QuerySize::All
                } else {
                    QuerySize::K(k)
                };
                let plan = LookupPlan::new(&lookup_key, &target, role, &directory, size)?;
                let grantee = client
                    .lookup(&plan)
                    .await?
                    .target
                    .with_context(|| format!("{target} is not registered"))?;
                let bytes = std::fs::read(&input)
                    .with_context(|| format!("cannot read {}", input.display()))?;
                let shared = share_envelope(&Envelope::parse(&bytes)?, patient.keys(), &grantee)?;
                let shared = shared.serialize().into_bytes();
                let blob = client
                    .put_blob(
                        &shared,
                        &patient.blob_claim(&emrshare_core::content_hash(&shared), now()),
                    )
                    .await?;
                let parts: Vec<&str> = parts.split(',').filter(|p| !p.is_empty()).collect();
                let (grant_id, tx) =
                    patient.grant(&grantee, &blob, &parts, &[Action::Read], now() + seconds);
                commit(&client, &patient, &tx).await?;
                println!(
                    "{{\"grant\": \"{grant_id}\", \"blob\": \"{}\"}}",
                    hex32::to_hex(&blob)
                );
                Ok(())
            }
            PatientCommand::Revoke {
                key,
                grant,
                consortium,
            } => {
                let client = consortium.client()?;
                let mut patient = account(&client, &key).await?;
                let tx = patient.revoke_grant(&grant);
                commit(&client, &patient, &tx).await?;
                let proven = client.grant(&grant).await?;
                ensure!(
                    proven.grant.is_some_and(|g| g.revoked),
                    "the grant is not revoked"
                );
                println!("{grant} revoked (proven at height {})", proven.height);
                Ok(())
            }
            PatientCommand::Audit {
                key,
                blobs,
                consortium,
            } => {
                let client = consortium.client()?;
                let _patient = files::load_private_keys(&key)?;
                let height = client.latest_header().await?.header.height;
                for block in client.verified_blocks(height).await? {
                    for tx in &block.txs {
                        if let TxBody::AccessLog {
                            accessor,
                            record_id,
                            action,
                            at,
                            outcome,
                            grant_id,
                        } = &tx.transaction().body
                        {
                            if blobs.contains(record_id) {
                                println!(
                                    "{}",
                                    serde_json::json!({
                                        "height": block.header.height, "accessor": accessor,
                                        "record": record_id, "action": action, "at": at,
                                        "outcome": outcome, "grant": grant_id,
                                    })
                                );
                            }
                        }
                    }
                }
                Ok(())
            }
        }
    })
}

pub fn requester(command: RequesterCommand) -> Result<()> {
    runtime()?.block_on(async {
        match command {
            RequesterCommand::Fetch {
                key,
                blob,
                grant,
                consortium,
            } => {
                let client = consortium.client()?;
                let mut requester = account(&client, &key).await?;
                let hash = hex32::from_hex(&blob).context("--blob is 64 hex digits")?;
                let proven = client.grant(&grant).await?;
                let Some(entry) = proven.grant.filter(|g| g.grantee == *requester.id()) else {
                    bail!("no grant {grant} to {}", requester.id());
                };
                ensure!(
                    entry.allows(Action::Read, now()),
                    "grant {grant} does not allow reading now"
                );
                let access = requester.access_log(&hash, Some(&grant), now());
                let bytes = client.get_blob(&hash, &access).await?;
                ensure!(bytes.len() <= MAX_ENVELOPE_BYTES, "blob too large");
                let plaintext = Envelope::parse(&bytes)?.open(requester.keys())?;
                files::write_stdout(&plaintext)?;
                Ok(())
            }
        }
    })
}
