//! `emrshare`: the desktop client of emrshare. Each subcommand is one step a party takes:
//! make keys, sign a record (doctor), extract and present it (patient), verify it (anyone),
//! seal and open envelopes. `demo` runs the whole visit story on a sample record.
#![forbid(unsafe_code)]

use emrshare_cli::{consortium, demo, files, governance, now, roles};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use emrshare_core::PrivateKeySet;
use emrshare_core::ces::{self, IssueOptions, KeyBindingRequirement, SdJwt, VerifyPolicy};
use emrshare_core::jwe::{Envelope, MAX_ENVELOPE_BYTES};
use emrshare_core::keys::{PartyId, RsaBits};
use emrshare_core::record::{Ceas, Record};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "emrshare",
    version,
    about = "Hold, verify, redact and share electronic medical records"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a fresh 128-bit random nonce (base64url), for a verifier to hand a patient whose
    /// presentation it will check (`ces extract --nonce`, `ces verify --nonce`).
    Nonce,
    /// Generate a party's keys (ES256 signing + RSA-OAEP-256 encryption) as a private JWK Set;
    /// prints the public set.
    Keygen {
        /// Registered ID (e.g. hospital:st-marys). Omit for a patient: the ID is then the
        /// RFC 7638 thumbprint of the signing key.
        #[arg(long)]
        id: Option<String>,
        /// RSA key size for the encryption key: 2048, 3072 or 4096.
        #[arg(long, default_value_t = 3072)]
        rsa_bits: usize,
        /// Where to write the private key file (owner-only; refused if it exists, unless
        /// --force).
        #[arg(long)]
        out: PathBuf,
        /// Encrypt the key file under the passphrase in EMRSHARE_PASSPHRASE (Argon2id).
        #[arg(long)]
        wrap: bool,
        /// Replace an existing key file.
        #[arg(long)]
        force: bool,
    },
    /// Print the public JWK Set of a private key file.
    Pubkey {
        /// The private key file (a wrapped one reads EMRSHARE_PASSPHRASE).
        #[arg(long)]
        key: PathBuf,
    },
    /// Content extraction signatures (SD-JWT).
    #[command(subcommand)]
    Ces(CesCommand),
    /// Encrypt to one or more recipients (compact JWE for one, general JSON for several).
    Seal {
        /// A recipient's public key set; repeat for several.
        #[arg(long = "to", required = true)]
        to: Vec<PathBuf>,
        /// The file to encrypt (default: standard input).
        #[arg(long = "in")]
        input: Option<PathBuf>,
        /// Content type recorded in the protected header (cty).
        #[arg(long)]
        cty: Option<String>,
    },
    /// Decrypt an envelope with a private key set.
    Open {
        /// The recipient's private key file (a wrapped one reads EMRSHARE_PASSPHRASE).
        #[arg(long)]
        key: PathBuf,
        /// The envelope (default: standard input).
        #[arg(long = "in")]
        input: Option<PathBuf>,
    },
    /// Join a running consortium: an institution admitted by the council (approved with a
    /// local consortium's node keys, --consortium DIR), a doctor by its hospital, a patient
    /// with a hospital's voucher; prints the registration once the registry proves it.
    Register {
        /// The party's private key file (from keygen; a wrapped one reads
        /// EMRSHARE_PASSPHRASE).
        #[arg(long)]
        key: PathBuf,
        /// patient, doctor, hospital, insurer or researcher.
        #[arg(long)]
        role: String,
        /// Days the registration is valid.
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// For a patient: the key file of the hospital whose voucher it registers with (its
        /// voucher key beside it, `<file>.voucher.pk8`). For a doctor: its hospital's key
        /// file (the hospital admits it).
        #[arg(long)]
        hospital_key: Option<PathBuf>,
        #[command(flatten)]
        consortium: roles::Consortium,
    },
    /// Admission of an institution by the council: prepare the proposal, approve it (each
    /// member), submit it with the approvals.
    #[command(subcommand)]
    Admit(governance::AdmitCommand),
    /// Expulsion: by the council for an institution (propose, approve with `admit approve`,
    /// submit), or by a hospital for its doctor.
    #[command(subcommand)]
    Expel(governance::ExpelCommand),
    /// Replace a party's keys (same ID): the update is signed with the current key; the new
    /// keys go to a new file, the old file still opens what was sealed to the old keys.
    RotateKeys {
        /// The party's current private key file.
        #[arg(long)]
        key: PathBuf,
        /// Where to write the new private keys (a new file).
        #[arg(long)]
        out: PathBuf,
        /// RSA key size for the new encryption key: 2048, 3072 or 4096.
        #[arg(long, default_value_t = 3072)]
        rsa_bits: usize,
        /// Encrypt the new key file under the passphrase in EMRSHARE_PASSPHRASE (Argon2id).
        #[arg(long)]
        wrap: bool,
        #[command(flatten)]
        consortium: roles::Consortium,
    },
    /// Patient registration vouchers (RSA blind signatures): a hospital issues, a patient
    /// redeems.
    #[command(subcommand)]
    Voucher(governance::VoucherCommand),
    /// Look a party up k-anonymously (the target among k-1 registered decoys of its role),
    /// verified under a certified header; prints its registry entry.
    Lookup {
        /// The ID to look up.
        #[arg(long)]
        id: String,
        /// Its role: patient, doctor, hospital, insurer or researcher.
        #[arg(long)]
        role: String,
        /// IDs asked (1-1024, or all). With fewer registered IDs of the role the lookup is
        /// refused rather than made smaller: ask for all of them, or a smaller k, explicitly.
        #[arg(long, default_value = "10")]
        k: roles::LookupSize,
        /// The private key file of the party asking (its lookups of a target always ask
        /// the same IDs).
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        asked: roles::NodesAsked,
        #[command(flatten)]
        consortium: roles::Consortium,
    },
    /// Start a local consortium in this process (keys, genesis and node databases in DIR; a
    /// DIR that holds one is started again, same keys and chain); prints the node URLs and
    /// `ready`, then serves until Ctrl-C or --seconds.
    LocalConsortium {
        /// Where the consortium's keys, genesis and node databases go.
        #[arg(long)]
        dir: PathBuf,
        /// Nodes (3 in 5 propose, 2 in 5 audit; at least 2).
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Slot length in milliseconds.
        #[arg(long, default_value_t = 500)]
        block_ms: u64,
        /// Serve HTTPS with a consortium CA written to DIR/ca.pem (clients given
        /// --consortium DIR trust it).
        #[arg(long)]
        tls: bool,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<u64>,
        /// The first node's port (the others follow); default: free ports found.
        #[arg(long)]
        base_port: Option<u16>,
        /// Write the node URLs into this file once every node serves (scripts wait for it).
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// A patient's steps on a running consortium.
    #[command(subcommand)]
    Patient(roles::PatientCommand),
    /// A requesting institution's steps on a running consortium.
    #[command(subcommand)]
    Requester(roles::RequesterCommand),
    /// Run the three stories of DESIGN section 1 on a local consortium in this process.
    Demo {
        /// IDs per k-anonymous lookup: the target and k-1 decoys.
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Nodes in the local consortium (3 in 5 propose, 2 in 5 audit).
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Keep the consortium's files (keys, genesis, node databases) in this folder (an
        /// empty one, unless --force).
        #[arg(long)]
        keep: Option<PathBuf>,
        /// With --keep: replace the consortium a previous run kept there.
        #[arg(long, requires = "keep")]
        force: bool,
        /// The first node's port (the others follow); default: free ports found.
        #[arg(long)]
        base_port: Option<u16>,
    },
}

#[derive(Subcommand)]
enum CesCommand {
    /// Doctor: sign a record (a JSON object of named parts) for a patient.
    Sign {
        /// The doctor's private key file.
        #[arg(long)]
        key: PathBuf,
        /// The patient's public key set (its ID must be its signing key's thumbprint).
        #[arg(long)]
        patient: PathBuf,
        /// The record: a JSON object of named parts (the seven BPDS names give the BPDS
        /// schema and its default CEAS).
        #[arg(long)]
        record: PathBuf,
        /// Parts every extraction must keep (default for BPDS records: gender,age,medical_history).
        #[arg(long, value_delimiter = ',')]
        ceas: Option<Vec<String>>,
        /// The record's ID (default: a fresh random one).
        #[arg(long)]
        record_id: Option<String>,
        /// Decoy digests to hide the number of parts.
        #[arg(long, default_value_t = 0)]
        decoys: usize,
    },
    /// Patient: keep only some parts; optionally bind the presentation to a verifier.
    Extract {
        /// The record (SD-JWT; default: standard input).
        #[arg(long = "in")]
        input: Option<PathBuf>,
        /// Parts to disclose besides the CEAS parts (default: none).
        #[arg(long, value_delimiter = ',')]
        disclose: Vec<String>,
        #[command(flatten)]
        binding: HolderBinding,
    },
    /// Anyone: verify a record or presentation; prints the disclosed parts as JSON.
    Verify {
        /// The record or presentation (SD-JWT; default: standard input).
        #[arg(long = "in")]
        input: Option<PathBuf>,
        /// The doctor's public key set.
        #[arg(long)]
        issuer: PathBuf,
        /// Require a key-binding JWT for this audience...
        #[arg(long, requires = "nonce")]
        aud: Option<String>,
        /// ...and this nonce (not empty; `emrshare nonce` makes one).
        #[arg(long, requires = "aud", value_parser = parse_nonce)]
        nonce: Option<String>,
        /// The patient's public key set: the record must be theirs.
        #[arg(long)]
        holder: Option<PathBuf>,
        /// Allowed clock skew and key-binding age, in seconds.
        #[arg(long, default_value_t = 300)]
        max_skew: u64,
    },
}

#[derive(Args)]
struct HolderBinding {
    /// The patient's private key set, to sign a key-binding JWT.
    #[arg(long, requires_all = ["aud", "nonce"])]
    holder_key: Option<PathBuf>,
    #[arg(long, requires = "holder_key")]
    aud: Option<String>,
    /// The verifier's nonce (not empty; `emrshare nonce` makes one).
    #[arg(long, requires = "holder_key", value_parser = parse_nonce)]
    nonce: Option<String>,
}

/// A presentation nonce: never empty (an empty nonce binds a presentation to nothing).
fn parse_nonce(text: &str) -> Result<String, String> {
    if (1..=512).contains(&text.len()) {
        Ok(text.to_owned())
    } else {
        Err("a nonce has 1 to 512 characters; `emrshare nonce` makes a good one".into())
    }
}

fn main() -> ExitCode {
    use clap::error::ErrorKind;
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        // Usage errors in one line, like every other error of the command.
        Err(e) => {
            let text = e.to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let first = lines.next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            // "the following required arguments were not provided:" names them next.
            match lines.next().filter(|_| first.ends_with(':')) {
                Some(what) => eprintln!("emrshare: error: {first} {what} (see --help)"),
                None => eprintln!("emrshare: error: {first} (see --help)"),
            }
            return ExitCode::from(2);
        }
    };
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("emrshare: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Nonce => emrshare_cli::say!("{}", emrshare_core::make_nonce()),
        Command::Keygen {
            id,
            rsa_bits,
            out,
            wrap,
            force,
        } => {
            let id = id.map(PartyId::new).transpose()?;
            let keys = PrivateKeySet::generate(id, RsaBits::from_bits(rsa_bits)?);
            let contents = files::private_key_file(&keys, wrap)?;
            files::write_private_file(&out, contents.as_bytes(), force)?;
            emrshare_cli::say!("{}", keys.public().to_json());
        }
        Command::Pubkey { key } => {
            emrshare_cli::say!("{}", files::load_private_keys(&key)?.public().to_json())
        }
        Command::Ces(command) => run_ces(command)?,
        Command::Seal { to, input, cty } => {
            let parties = to
                .iter()
                .map(|p| files::load_public_keys(p))
                .collect::<Result<Vec<_>>>()?;
            let plaintext = files::read_input(input.as_deref(), MAX_ENVELOPE_BYTES * 3 / 4)?;
            let envelope = Envelope::seal_to(
                &plaintext,
                &parties.iter().collect::<Vec<_>>(),
                cty.as_deref(),
            )?;
            files::write_stdout(envelope.serialize().as_bytes())?;
            emrshare_cli::say!();
        }
        Command::Open { key, input } => {
            let keys = files::load_private_keys(&key)?;
            let envelope =
                Envelope::parse(&files::read_input(input.as_deref(), MAX_ENVELOPE_BYTES)?)?;
            files::write_stdout(&envelope.open(&keys)?)?;
        }
        Command::Register {
            key,
            role,
            days,
            hospital_key,
            consortium,
        } => roles::register(&key, &role, days, hospital_key.as_deref(), &consortium)?,
        Command::Admit(command) => governance::admit(command)?,
        Command::Expel(command) => governance::expel(command)?,
        Command::RotateKeys {
            key,
            out,
            rsa_bits,
            wrap,
            consortium,
        } => governance::rotate_keys(&key, &out, rsa_bits, wrap, &consortium)?,
        Command::Voucher(command) => governance::voucher(command)?,
        Command::Lookup {
            id,
            role,
            k,
            key,
            consortium,
            asked,
        } => roles::lookup(&id, &role, k, &key, &consortium, asked)?,
        Command::LocalConsortium {
            dir,
            nodes,
            block_ms,
            tls,
            seconds,
            base_port,
            ready_file,
        } => consortium::serve(
            &dir,
            &consortium::ServeOptions {
                nodes,
                block_ms,
                tls,
                seconds,
                base_port,
                ready_file,
            },
        )?,
        Command::Patient(command) => roles::patient(command)?,
        Command::Requester(command) => roles::requester(command)?,
        Command::Demo {
            k,
            nodes,
            keep,
            force,
            base_port,
        } => demo::run(demo::Options {
            k,
            nodes,
            keep,
            force,
            base_port,
        })?,
    }
    Ok(())
}

fn run_ces(command: CesCommand) -> Result<()> {
    match command {
        CesCommand::Sign {
            key,
            patient,
            record,
            ceas,
            record_id,
            decoys,
        } => {
            let doctor = files::load_private_keys(&key)?;
            let patient = files::load_public_keys(&patient)?;
            let record_bytes = files::read_input(Some(&record), ces::MAX_SD_JWT_BYTES / 2)?;
            let record =
                Record::from_json(&record_bytes, record_id.as_deref()).context("invalid record")?;
            let ceas = match ceas {
                Some(names) => Ceas::new(names.into_iter().filter(|n| !n.is_empty())),
                None => Ceas::default_for(&record),
            };
            let sd_jwt = ces::issue(
                &doctor,
                &patient,
                &record,
                &ceas,
                IssueOptions {
                    issued_at: now(),
                    decoys,
                },
            )?;
            emrshare_cli::say!("{}", sd_jwt.serialize());
        }
        CesCommand::Extract {
            input,
            disclose,
            binding,
        } => {
            let sd_jwt = SdJwt::parse(&files::read_text(input.as_deref(), ces::MAX_SD_JWT_BYTES)?)?;
            let keep: Vec<&str> = disclose
                .iter()
                .map(String::as_str)
                .filter(|n| !n.is_empty())
                .collect();
            let mut extracted = sd_jwt.extract(&keep)?;
            if let (Some(key), Some(aud), Some(nonce)) =
                (binding.holder_key, binding.aud, binding.nonce)
            {
                let holder = files::load_private_keys(&key)?;
                extracted = extracted.bind(&holder.signing, &aud, &nonce, now());
            }
            emrshare_cli::say!("{}", extracted.serialize());
        }
        CesCommand::Verify {
            input,
            issuer,
            aud,
            nonce,
            holder,
            max_skew,
        } => {
            let sd_jwt = SdJwt::parse(&files::read_text(input.as_deref(), ces::MAX_SD_JWT_BYTES)?)?;
            let issuer = files::load_public_keys(&issuer)?;
            let holder = holder.map(|h| files::load_public_keys(&h)).transpose()?;
            let key_binding = match (&aud, &nonce) {
                (Some(audience), Some(nonce)) => Some(KeyBindingRequirement { audience, nonce }),
                _ => None,
            };
            let policy = VerifyPolicy {
                holder: holder.as_ref(),
                key_binding,
                max_skew,
                ..VerifyPolicy::new(&issuer, now())
            };
            let verified = ces::verify(&sd_jwt, &policy).context("verification failed")?;
            emrshare_cli::say!("{}", serde_json::to_string_pretty(&verified.to_json())?);
        }
    }
    Ok(())
}
