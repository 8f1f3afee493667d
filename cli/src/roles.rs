//! Each role's steps against a running consortium (`emrshare-node init` + `run`): register,
//! look up, and the patient's and requester's ledger steps. A command here only reads its
//! arguments and prints: every flow is the client's (`emrshare_client::Party`), the same the
//! SDK and the demo run, and every answer is verified from the consortium's genesis.

use crate::consortium::council_approvals;
use crate::files;
use crate::now;
use anyhow::{Context, Result, ensure};
use clap::{Args, Subcommand};
use emrshare_client::{ClientConfig, HttpTransport, NodeClient, Party, PartySettings, TlsTrust};
use emrshare_core::keys::PartyId;
use emrshare_core::keys::txkeys::MasterSecret;
use emrshare_core::ledger::tx::Role;
use emrshare_core::voucher::VoucherSecretKey;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which consortium to talk to.
#[derive(Args, Debug, Clone)]
pub struct Consortium {
    /// A folder written by `emrshare-node init`: its genesis.json, node URLs and CA.
    #[arg(long, conflicts_with_all = ["genesis", "node"])]
    pub(crate) consortium: Option<PathBuf>,
    /// The consortium's genesis file (with --node).
    #[arg(long, requires = "node")]
    genesis: Option<PathBuf>,
    /// A node's base URL; repeat for several.
    #[arg(long)]
    node: Vec<String>,
    /// A CA certificate (PEM) to trust for https nodes.
    #[arg(long)]
    ca: Option<PathBuf>,
}

/// How many nodes answer each verified lookup and take each uploaded blob (only on the
/// commands that look parties up or upload).
#[derive(Args, Debug, Clone, Copy)]
pub struct NodesAsked {
    /// Nodes asked per lookup (more when some fail to answer), and nodes a blob is stored on.
    #[arg(long = "n", default_value_t = 3)]
    count: usize,
}

impl Default for NodesAsked {
    fn default() -> Self {
        Self { count: 3 }
    }
}

impl Consortium {
    /// The verified client of the consortium named.
    pub fn client(&self, asked: NodesAsked) -> Result<NodeClient> {
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
        config.n = asked.count;
        Ok(NodeClient::new(
            config,
            HttpTransport::new(trust, Duration::from_secs(5))?,
        )?)
    }
}

/// How many IDs a lookup asks: a number, or `all` (every registered ID of the role).
#[derive(Debug, Clone, Copy)]
pub struct LookupSize(pub Option<usize>);

impl std::str::FromStr for LookupSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text == "all" {
            return Ok(Self(None));
        }
        match text.parse::<usize>() {
            Ok(k) if (1..=1024).contains(&k) => Ok(Self(Some(k))),
            _ => Err("k is a number from 1 to 1024, or all".into()),
        }
    }
}

#[derive(Subcommand)]
pub enum PatientCommand {
    /// Verify a record a doctor sealed to the patient (the doctor's registered key, the
    /// patient's binding), then store it on the nodes and index it on chain; prints the
    /// blob's address.
    Store {
        /// The patient's private key file.
        #[arg(long)]
        key: PathBuf,
        /// The envelope (JWE) the doctor sealed to the patient.
        #[arg(long = "in")]
        input: PathBuf,
        #[arg(long, default_value = "general")]
        department: String,
        #[command(flatten)]
        asked: NodesAsked,
        #[command(flatten)]
        consortium: Consortium,
    },
    /// Grant a requester read access to a record until a time. With --parts, only those
    /// parts (and the mandatory ones) are shared, re-sealed to the requester; without, the
    /// whole record.
    Grant {
        /// The patient's private key file.
        #[arg(long)]
        key: PathBuf,
        /// The record's envelope (the file given to `store`).
        #[arg(long = "in")]
        input: PathBuf,
        /// The requester's registered ID (looked up k-anonymously).
        #[arg(long)]
        to: String,
        /// The requester's role: insurer, hospital, researcher or doctor.
        #[arg(long, default_value = "insurer")]
        role: String,
        /// Parts to share, comma-separated (empty: the whole record).
        #[arg(long, default_value = "")]
        parts: String,
        /// Seconds the grant lasts.
        #[arg(long, default_value_t = 3600)]
        seconds: u64,
        /// IDs the lookup of the requester asks (1-1024, or all).
        #[arg(long, default_value = "10")]
        k: LookupSize,
        #[command(flatten)]
        asked: NodesAsked,
        #[command(flatten)]
        consortium: Consortium,
    },
    /// Revoke a grant.
    Revoke {
        /// The patient's private key file.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        grant: String,
        #[command(flatten)]
        consortium: Consortium,
    },
    /// Every logged access to the patient's records: each record's access logs, proven under
    /// its account and opened with its secrets; one JSON line each. A read logs in the
    /// block after it, so it shows a slot or two after the read.
    Audit {
        /// The patient's private key file (it opens the patient's index entries).
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        consortium: Consortium,
    },
}

#[derive(Subcommand)]
pub enum RequesterCommand {
    /// Fetch the record a grant names (the fetch is logged on chain), verify it (the
    /// doctor's registered key, the granting patient) and print it (SD-JWT).
    Fetch {
        /// The requester's private key file.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        grant: String,
        #[command(flatten)]
        asked: NodesAsked,
        #[command(flatten)]
        consortium: Consortium,
    },
}

pub(crate) fn parse_role(role: &str) -> Result<Role> {
    serde_json::from_value(serde_json::Value::String(role.into())).map_err(|_| {
        anyhow::anyhow!("unknown role {role:?} (patient, doctor, hospital, insurer, researcher)")
    })
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The party whose private key file is `key`. Its lookup key is derived from its private
/// key, so every run of the command asks the same decoys for a target (runs cannot be
/// intersected to find it).
pub(crate) fn party(
    consortium: &Consortium,
    asked: NodesAsked,
    key: &Path,
    k: LookupSize,
) -> Result<Party> {
    let keys = files::load_private_keys(key)?;
    let settings = PartySettings {
        k: k.0,
        commit_timeout: Duration::from_secs(30),
    };
    let patient = keys.public().is_self_certifying();
    let party = Party::new(consortium.client(asked)?, keys, settings);
    // A patient's records' accounts derive from its master secret, kept beside its key.
    Ok(if patient {
        party.with_master_secret(master_secret(key)?)
    } else {
        party
    })
}

/// Where a patient's master secret (32 bytes, owner-only) is kept: beside its key file,
/// `<key file>.master`. Its records' accounts derive from it: losing it loses the way to
/// them.
pub fn master_secret_file(patient_key: &Path) -> PathBuf {
    let mut name = patient_key.as_os_str().to_owned();
    name.push(".master");
    PathBuf::from(name)
}

/// The patient's master secret, made (and kept) the first time it is needed.
fn master_secret(patient_key: &Path) -> Result<MasterSecret> {
    let path = master_secret_file(patient_key);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
                anyhow::anyhow!("{} is not a 32-byte master secret", path.display())
            })?;
            Ok(MasterSecret::from_bytes(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let master = MasterSecret::generate();
            files::write_private_file(&path, master.to_bytes().as_ref(), false)?;
            Ok(master)
        }
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// A party for commands that look no other party up (register, revoke, audit, governance):
/// the default nodes, and lookups of one ID, which these commands never make.
pub(crate) fn own_party(consortium: &Consortium, key: &Path) -> Result<Party> {
    party(consortium, NodesAsked::default(), key, LookupSize(Some(1)))
}

/// Where a hospital's voucher key (RFC 9474, PKCS#8 DER, owner-only) is kept: beside its key
/// file, `<key file>.voucher.pk8`.
pub fn voucher_key_file(hospital_key: &Path) -> PathBuf {
    let mut name = hospital_key.as_os_str().to_owned();
    name.push(".voucher.pk8");
    PathBuf::from(name)
}

/// `emrshare register`: how each role joins a consortium.
/// - An institution (hospital, insurer, researcher) is admitted by the council: on a local
///   consortium (`--consortium DIR` holding the nodes' keys) this command approves the
///   admission with them, and the party sends it. A hospital gets a voucher key (kept in
///   [`voucher_key_file`]), published in its admission.
/// - A doctor is admitted by its hospital: `hospital_key` is the hospital's key file.
/// - A patient registers with a voucher of an admitted hospital: `hospital_key` is that
///   hospital's key file; its voucher key signs the patient's blinded request here (both
///   sides on this machine).
pub fn register(
    key: &Path,
    role: &str,
    days: u64,
    hospital_key: Option<&Path>,
    consortium: &Consortium,
) -> Result<()> {
    let role = parse_role(role)?;
    let (from, until) = (now(), now() + days * 24 * 3600);
    runtime()?.block_on(async {
        let party = own_party(consortium, key)?;
        let entry = match role {
            Role::Patient => {
                let hospital_key =
                    hospital_key.context("a patient registers with a voucher: give --hospital-key")?;
                let hospital = files::load_private_keys(hospital_key)?.id;
                let path = voucher_key_file(hospital_key);
                let vouchers = VoucherSecretKey::from_pkcs8(
                    &std::fs::read(&path)
                        .with_context(|| format!("cannot read {} (the hospital's voucher key)", path.display()))?,
                )?;
                let (pending, blinded) = party.blind_voucher_request(&hospital).await?;
                let voucher = pending.finalize(&vouchers.sign_blind(&blinded)?)?;
                party.register_patient(voucher, from, until).await?
            }
            Role::Doctor => {
                let hospital_key =
                    hospital_key.context("a doctor is admitted by its hospital: give --hospital-key")?;
                let hospital = own_party(consortium, hospital_key)?;
                let doctor = party.with_keys(|k| k.public());
                hospital.admit_doctor(&doctor, from, until).await?
            }
            role => {
                let dir = consortium.consortium.as_ref().context(
                    "an institution is admitted by the council's members: this command approves with a local consortium's node keys (--consortium DIR)",
                )?;
                let vouchers = match role {
                    Role::Hospital => {
                        let path = voucher_key_file(key);
                        let secret = VoucherSecretKey::generate(2048)?;
                        files::write_private_file(&path, &secret.to_pkcs8()?, false)?;
                        crate::say!("voucher key written to {}", path.display());
                        Some(secret.public()?)
                    }
                    _ => None,
                };
                let proposal = party.admission(role, from, until, vouchers.as_ref(), now() + 3600)?;
                let approvals = council_approvals(dir, &proposal)?;
                party.submit_admission(proposal, approvals).await?
            }
        };
        crate::say!(
            "{} registered as {role:?} (proven at height {})",
            entry.id(),
            entry.height()
        );
        Ok(())
    })
}

/// `emrshare lookup`: a verified k-anonymous lookup by the party of `key`; prints the
/// registry entry.
pub fn lookup(
    id: &str,
    role: &str,
    k: LookupSize,
    key: &Path,
    consortium: &Consortium,
    asked: NodesAsked,
) -> Result<()> {
    let role = parse_role(role)?;
    let target = PartyId::new(id)?;
    runtime()?.block_on(async {
        let party = party(consortium, asked, key, k)?;
        let found = party.look_up(&target, role).await?;
        for evidence in &found.outcome.evidence {
            eprintln!(
                "emrshare: evidence against {}: {}",
                evidence.node, evidence.fault
            );
        }
        eprintln!(
            "hid among {} of {} IDs (one proven bucket); verified by {} at height {}",
            found.asked,
            found.outcome.registered,
            found.outcome.verified_by.join(", "),
            found.outcome.header.header.height
        );
        if let Some(k) = k.0.filter(|&k| found.asked < k) {
            eprintln!(
                "emrshare: weak bucket: the target hid among {} IDs, fewer than k = {k}",
                found.asked
            );
        }
        crate::say!("{}", serde_json::to_string_pretty(found.entry.entry())?);
        Ok(())
    })
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn patient(command: PatientCommand) -> Result<()> {
    runtime()?.block_on(async {
        match command {
            PatientCommand::Store {
                key,
                input,
                department,
                consortium,
                asked,
            } => {
                let patient = party(&consortium, asked, &key, LookupSize(Some(1)))?;
                let received = patient
                    .receive_record(read(&input)?.trim())
                    .await
                    .context("the envelope is not a record sealed to this patient")?;
                let stored = patient
                    .store_record(&received.sd_jwt, &department, &|_, _| {})
                    .await?;
                crate::say!("{}", stored.blob.to_hex());
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
                asked,
            } => {
                let patient = party(&consortium, asked, &key, k)?;
                let parts: Vec<String> = parts
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect();
                let proven = patient
                    .grant(
                        read(&input)?.trim(),
                        &PartyId::new(to)?,
                        parse_role(&role)?,
                        &parts,
                        seconds,
                    )
                    .await?;
                crate::say!(
                    "{}",
                    serde_json::json!({"grant": proven.grant_id, "blob": proven.grant.blob})
                );
                Ok(())
            }
            PatientCommand::Revoke {
                key,
                grant,
                consortium,
            } => {
                let patient = own_party(&consortium, &key)?;
                let proven = patient.revoke(&grant).await?;
                crate::say!("{grant} revoked (proven at height {})", proven.height);
                Ok(())
            }
            PatientCommand::Audit { key, consortium } => {
                let patient = own_party(&consortium, &key)?;
                for event in patient.audit_log().await? {
                    crate::say!(
                        "{}",
                        serde_json::json!({
                            "height": event.height, "accessor": event.accessor,
                            "record": event.record_id, "purpose": event.purpose,
                            "action": event.action, "at": event.at,
                            "outcome": event.outcome, "grant": event.grant_id,
                        })
                    );
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
                grant,
                consortium,
                asked,
            } => {
                let requester = party(&consortium, asked, &key, LookupSize(Some(1)))?;
                let fetched = requester.fetch_granted(&grant).await?;
                crate::say!("{}", fetched.sd_jwt.serialize());
                Ok(())
            }
        }
    })
}
