//! Governance on the command line (DESIGN 3), each command a front end over the client
//! (`emrshare_client::Party` and `emrshare_client::governance`):
//! - `admit prepare | approve | submit`: an institution's admission by t council members;
//! - `expel propose | submit | doctor`: the council expels (or suspends) an institution, a
//!   hospital its doctor;
//! - `rotate-keys`: a party's new keys, the update signed with its current key;
//! - `voucher issue | redeem`: a hospital signs a patient's blinded voucher request, the
//!   patient makes the request, finalizes the voucher and registers with it.

use crate::files;
use crate::roles::{Consortium, NodesAsked, own_party, parse_role, runtime, voucher_key_file};
use anyhow::{Context, Result, bail, ensure};
use clap::Subcommand;
use emrshare_client::governance::{approve, days_from_now, status_proposal};
use emrshare_core::PrivateKeySet;
use emrshare_core::keys::{PartyId, RsaBits};
use emrshare_core::ledger::governance::{Approval, GovAction, Proposal, Status};
use emrshare_core::ledger::tx::Role;
use emrshare_core::voucher::{Voucher, VoucherSecretKey};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum AdmitCommand {
    /// Institution: write the proposal that admits it (its ID, role and public keys), for
    /// the council's members to approve. A hospital also gets a voucher key (written beside
    /// its key file, `<key file>.voucher.pk8`), published in the proposal.
    Prepare {
        /// The institution's private key file (keygen --id ...).
        #[arg(long)]
        key: PathBuf,
        /// hospital, insurer or researcher.
        #[arg(long)]
        role: String,
        /// Days the admission is valid.
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// Days the council has to approve and the institution to submit.
        #[arg(long, default_value_t = 7)]
        expires_days: u64,
        /// Where to write the proposal (JSON).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        consortium: Consortium,
    },
    /// Council member: approve a proposal (an admission, or an expulsion from `expel
    /// propose`) with the member's council key; writes the approval. Offline. Prints what
    /// it approves.
    Approve {
        /// The proposal file.
        #[arg(long)]
        proposal: PathBuf,
        /// The member's private key file (a node's node.key.json).
        #[arg(long)]
        member_key: PathBuf,
        /// Where to write the approval (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Institution: send its admission with the members' approvals (at least the council's
    /// threshold); prints the registration once the registry proves it.
    Submit {
        /// The institution's private key file (the one the proposal admits).
        #[arg(long)]
        key: PathBuf,
        /// The proposal file (from `admit prepare`).
        #[arg(long)]
        proposal: PathBuf,
        /// An approval file (from `admit approve`); repeat for each member.
        #[arg(long = "approval", required = true)]
        approvals: Vec<PathBuf>,
        #[command(flatten)]
        consortium: Consortium,
    },
}

#[derive(Subcommand)]
pub enum ExpelCommand {
    /// Write the proposal that expels (or, with --suspend, suspends) an institution or a
    /// doctor, for the council's members to approve (`admit approve`).
    Propose {
        /// The party to expel.
        #[arg(long)]
        id: String,
        /// Suspend instead (reversible); expulsion is final.
        #[arg(long)]
        suspend: bool,
        /// Days the council has to approve and a member to submit.
        #[arg(long, default_value_t = 7)]
        expires_days: u64,
        /// Where to write the proposal (JSON).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        consortium: Consortium,
    },
    /// Council member: send an approved expulsion (or suspension); prints the party's
    /// status once the registry proves it.
    Submit {
        /// The sending member's private key file (a node's node.key.json).
        #[arg(long)]
        member_key: PathBuf,
        /// The proposal file (from `expel propose`).
        #[arg(long)]
        proposal: PathBuf,
        /// An approval file (from `admit approve`); repeat for each member.
        #[arg(long = "approval", required = true)]
        approvals: Vec<PathBuf>,
        #[command(flatten)]
        consortium: Consortium,
    },
    /// Hospital: expel one of its doctors (final); prints the doctor's status once proven.
    Doctor {
        /// The hospital's private key file.
        #[arg(long)]
        key: PathBuf,
        /// The doctor's ID.
        #[arg(long)]
        id: String,
        #[command(flatten)]
        consortium: Consortium,
    },
}

#[derive(Subcommand)]
pub enum VoucherCommand {
    /// Hospital: sign a patient's blinded voucher request (base64url, from `voucher
    /// redeem`) with its voucher key; prints the blind signature. It sees nothing of the
    /// patient's ID, and cannot later tell which registration used it.
    Issue {
        /// The hospital's private key file (its voucher key beside it, <file>.voucher.pk8).
        #[arg(long)]
        hospital_key: PathBuf,
        /// The blinded request; default: read from standard input.
        #[arg(long)]
        request: Option<String>,
    },
    /// Patient: register with a voucher of the hospital --hospital. Prints the blinded
    /// request (one line) for the hospital, reads its blind signature (one line) from
    /// standard input, finalizes the voucher and registers. With --voucher, registers with
    /// a voucher finalized before instead.
    Redeem {
        /// The patient's private key file (keygen without --id).
        #[arg(long)]
        key: PathBuf,
        /// The hospital that vouches (looked up among hospitals: its voucher key).
        #[arg(long, required_unless_present = "voucher", conflicts_with = "voucher")]
        hospital: Option<String>,
        /// Register with this voucher file (one use) instead of asking a hospital.
        #[arg(long)]
        voucher: Option<PathBuf>,
        /// Also keep the finalized voucher in this file.
        #[arg(long, conflicts_with = "voucher")]
        voucher_out: Option<PathBuf>,
        /// Days the registration is valid.
        #[arg(long, default_value_t = 365)]
        days: u64,
        #[command(flatten)]
        consortium: Consortium,
    },
}

/// A JSON file of at most 64 KiB, parsed strictly (unknown members refused) as `T`.
macro_rules! read_json {
    ($path:expr, $what:literal) => {{
        let path: &Path = $path;
        let bytes = files::read_input(Some(path), 64 * 1024)?;
        emrshare_core::strict_json::parse(&bytes)
            .with_context(|| format!("{} is not {}", path.display(), $what))
    }};
}

/// Writes `text` (pretty JSON) and a newline to `path`.
fn write_json(path: &Path, text: serde_json::Result<String>) -> Result<()> {
    let text = text? + "\n";
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// One line saying what a proposal does.
fn describe(p: &Proposal) -> String {
    let what = match &p.action {
        GovAction::Admit {
            id,
            role,
            valid_until,
            voucher_key,
            ..
        } => format!(
            "admit {id} as {role:?} until {valid_until}{}",
            if voucher_key.is_some() {
                ", with a voucher key"
            } else {
                ""
            }
        ),
        GovAction::SetStatus { id, status } => format!("set {id} {status:?}"),
        GovAction::SetCouncil { council } => format!(
            "replace the council: {} members, threshold {}",
            council.members.len(),
            council.threshold
        ),
    };
    format!(
        "{what} (chain {}, proposal {}, expires {})",
        p.chain_id, p.proposal_id, p.expires_at
    )
}

fn registered(entry: &emrshare_core::ledger::verify::VerifiedEntry) {
    crate::say!(
        "{} registered as {:?} (proven at height {})",
        entry.id(),
        entry.role(),
        entry.height()
    );
}

fn status_line(entry: &emrshare_core::ledger::verify::VerifiedEntry) {
    let at = entry
        .entry()
        .statuses
        .last()
        .map(|c| format!(" at height {}", c.height))
        .unwrap_or_default();
    crate::say!(
        "{} {:?}{at} (proven at height {})",
        entry.id(),
        entry.status(),
        entry.height()
    );
}

pub fn admit(command: AdmitCommand) -> Result<()> {
    match command {
        AdmitCommand::Prepare {
            key,
            role,
            days,
            expires_days,
            out,
            consortium,
        } => {
            let role = parse_role(&role)?;
            ensure!(
                emrshare_client::party::INSTITUTION_ROLES.contains(&role) && role != Role::Node,
                "the council admits a hospital, insurer or researcher (a doctor is admitted by its hospital, a patient registers with a voucher)"
            );
            ensure!((1..=36_500).contains(&days), "--days is 1 to 36500");
            ensure!(
                (1..=90).contains(&expires_days),
                "--expires-days is 1 to 90"
            );
            let party = own_party(&consortium, &key)?;
            let vouchers = if role == Role::Hospital {
                let path = voucher_key_file(&key);
                let secret = if path.exists() {
                    VoucherSecretKey::from_pkcs8(&files::read_input(Some(&path), 64 * 1024)?)
                        .with_context(|| format!("{} is not a voucher key", path.display()))?
                } else {
                    let secret = VoucherSecretKey::generate(2048)?;
                    files::write_private_file(&path, &secret.to_pkcs8()?, false)?;
                    eprintln!("voucher key written to {}", path.display());
                    secret
                };
                Some(secret.public()?)
            } else {
                None
            };
            let now = crate::now();
            let proposal = party.admission(
                role,
                now,
                days_from_now(days),
                vouchers.as_ref(),
                now + expires_days * 24 * 3600,
            )?;
            write_json(&out, serde_json::to_string_pretty(&proposal))?;
            crate::say!("{}", describe(&proposal));
        }
        AdmitCommand::Approve {
            proposal,
            member_key,
            out,
        } => {
            let proposal: Proposal = read_json!(&proposal, "a governance proposal")?;
            let member = files::load_private_keys(&member_key)?;
            ensure!(
                proposal.expires_at > crate::now(),
                "the proposal expired at {}",
                proposal.expires_at
            );
            let approval = approve(&proposal, &member);
            write_json(&out, serde_json::to_string_pretty(&approval))?;
            crate::say!("{} approves: {}", member.id, describe(&proposal));
        }
        AdmitCommand::Submit {
            key,
            proposal,
            approvals,
            consortium,
        } => {
            let proposal: Proposal = read_json!(&proposal, "a governance proposal")?;
            let approvals = read_approvals(&approvals)?;
            runtime()?.block_on(async {
                let party = own_party(&consortium, &key)?;
                let entry = party.submit_admission(proposal, approvals).await?;
                registered(&entry);
                Ok::<_, anyhow::Error>(())
            })?;
        }
    }
    Ok(())
}

fn read_approvals(paths: &[PathBuf]) -> Result<Vec<Approval>> {
    paths
        .iter()
        .map(|p| read_json!(p, "a council member's approval"))
        .collect()
}

pub fn expel(command: ExpelCommand) -> Result<()> {
    match command {
        ExpelCommand::Propose {
            id,
            suspend,
            expires_days,
            out,
            consortium,
        } => {
            ensure!(
                (1..=90).contains(&expires_days),
                "--expires-days is 1 to 90"
            );
            let client = consortium.client(NodesAsked::default())?;
            let status = if suspend {
                Status::Suspended
            } else {
                Status::Expelled
            };
            let proposal = status_proposal(
                &client.config().genesis.chain_id,
                &PartyId::new(id)?,
                status,
                days_from_now(expires_days),
            )?;
            write_json(&out, serde_json::to_string_pretty(&proposal))?;
            crate::say!("{}", describe(&proposal));
        }
        ExpelCommand::Submit {
            member_key,
            proposal,
            approvals,
            consortium,
        } => {
            let proposal: Proposal = read_json!(&proposal, "a governance proposal")?;
            let approvals = read_approvals(&approvals)?;
            runtime()?.block_on(async {
                let member = own_party(&consortium, &member_key)?;
                match member.submit_governance(proposal, approvals).await? {
                    Some(entry) => status_line(&entry),
                    None => crate::say!("committed"),
                }
                Ok::<_, anyhow::Error>(())
            })?;
        }
        ExpelCommand::Doctor {
            key,
            id,
            consortium,
        } => {
            let doctor = PartyId::new(id)?;
            runtime()?.block_on(async {
                let hospital = own_party(&consortium, &key)?;
                let entry = hospital
                    .set_doctor_status(&doctor, Status::Expelled)
                    .await?;
                status_line(&entry);
                Ok::<_, anyhow::Error>(())
            })?;
        }
    }
    Ok(())
}

/// `emrshare rotate-keys`: fresh keys (same ID) written to `out` first (so a crash loses
/// nothing), then the update signed with the current key; on refusal `out` is removed.
pub fn rotate_keys(
    key: &Path,
    out: &Path,
    rsa_bits: usize,
    wrap: bool,
    consortium: &Consortium,
) -> Result<()> {
    if out.exists() {
        bail!("{} exists; give a new file for the new keys", out.display());
    }
    let current = files::load_private_keys(key)?;
    let fresh = PrivateKeySet::generate(Some(current.id.clone()), RsaBits::from_bits(rsa_bits)?);
    let contents = files::private_key_file(&fresh, wrap)?;
    let public = fresh.public();
    let runtime = runtime()?;
    let party = {
        let _entered = runtime.enter();
        own_party(consortium, key)?
    };
    files::write_private_file(out, contents.as_bytes(), false)?;
    // A hospital's voucher key is not rotated with its keys: it goes beside the new file.
    let vouchers = voucher_key_file(key);
    if vouchers.exists() {
        let der = zeroize::Zeroizing::new(files::read_input(Some(&vouchers), 64 * 1024)?);
        files::write_private_file(&voucher_key_file(out), &der, false)?;
    }
    let rotated = runtime.block_on(party.rotate_keys(fresh));
    match rotated {
        Ok(entry) => {
            crate::say!(
                "{} rotated its keys (proven at height {}); the new keys are in {}, keep {} to open what was sealed to the old ones",
                entry.id(),
                entry.height(),
                out.display(),
                key.display()
            );
            eprintln!("{}", public.to_json());
            Ok(())
        }
        Err(emrshare_client::ClientError::Timeout) => bail!(
            "the rotation was not seen committed in time; keep both {} and {} until a lookup shows which keys are registered",
            key.display(),
            out.display()
        ),
        Err(e) => {
            let _ = std::fs::remove_file(out);
            let _ = std::fs::remove_file(voucher_key_file(out));
            Err(e).context("the rotation was refused")
        }
    }
}

pub fn voucher(command: VoucherCommand) -> Result<()> {
    match command {
        VoucherCommand::Issue {
            hospital_key,
            request,
        } => {
            let path = voucher_key_file(&hospital_key);
            let secret = VoucherSecretKey::from_pkcs8(
                &files::read_input(Some(&path), 64 * 1024)
                    .with_context(|| format!("no voucher key beside {}", hospital_key.display()))?,
            )
            .with_context(|| format!("{} is not a voucher key", path.display()))?;
            let request = match request {
                Some(text) => text,
                None => read_line("the blinded request")?,
            };
            let blinded = emrshare_core::b64::decode(request.trim())
                .map_err(|_| anyhow::anyhow!("the blinded request is not base64url"))?;
            let signature = secret
                .sign_blind(&blinded)
                .context("the blinded request does not fit this voucher key")?;
            crate::say!("{}", emrshare_core::b64::encode(&signature));
        }
        VoucherCommand::Redeem {
            key,
            hospital,
            voucher,
            voucher_out,
            days,
            consortium,
        } => {
            ensure!((1..=36_500).contains(&days), "--days is 1 to 36500");
            runtime()?.block_on(async {
                let patient = own_party(&consortium, &key)?;
                let voucher: Voucher = match (voucher, hospital) {
                    (Some(path), _) => read_json!(&path, "a registration voucher")?,
                    (None, Some(hospital)) => {
                        let hospital = PartyId::new(hospital)?;
                        let (pending, blinded) = patient.blind_voucher_request(&hospital).await?;
                        crate::say!("{}", emrshare_core::b64::encode(&blinded));
                        let answer = read_line("the hospital's blind signature")?;
                        let signature = emrshare_core::b64::decode(answer.trim())
                            .map_err(|_| anyhow::anyhow!("the blind signature is not base64url"))?;
                        let voucher = pending
                            .finalize(&signature)
                            .context("the hospital's blind signature does not verify")?;
                        if let Some(out) = &voucher_out {
                            write_json(out, serde_json::to_string_pretty(&voucher))?;
                        }
                        voucher
                    }
                    (None, None) => bail!("give --hospital, or --voucher"),
                };
                let entry = patient
                    .register_patient(voucher, crate::now(), days_from_now(days))
                    .await?;
                registered(&entry);
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// One line from standard input (a protocol message).
fn read_line(what: &str) -> Result<String> {
    std::io::stdout().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .take(16 * 1024)
        .read_line(&mut line)
        .with_context(|| format!("cannot read {what} from standard input"))?;
    ensure!(
        !line.trim().is_empty(),
        "standard input ended before {what} (one line) came"
    );
    Ok(line)
}
