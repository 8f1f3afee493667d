//! Provisioning: `emrshare-node init`, which writes a local consortium into a folder (per node
//! a key file and a config, one shared genesis file, and with `--tls` a consortium CA and each
//! node's certificate). It depends on [`crate::config`] and nothing depends on it but the
//! command line, so loading a config never pulls in key or certificate generation.

use crate::config::{Limits, NodeConfig, Peer, TlsConfig};
use anyhow::{Context, Result, bail};
use emrshare_core::PrivateKeySet;
use emrshare_core::keys::{PartyId, RsaBits};
use emrshare_core::ledger::block::{Genesis, Timeouts, Validator, ValidatorSet};
use emrshare_core::ledger::governance::Council;
use std::path::{Path, PathBuf};

/// What `init` writes (also its command-line flags).
#[derive(Debug, clap::Args)]
pub struct InitOptions {
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Representative (proposer) nodes, RPN [default: the nodes that are not auditors].
    #[arg(long)]
    pub proposers: Option<usize>,
    /// Audit nodes, ATN [default: 2 of every 5 nodes, at least 1].
    #[arg(long)]
    pub auditors: Option<usize>,
    /// Node i's HTTP API listens on base + i, its consensus (libp2p) on base + nodes + i.
    #[arg(long, default_value_t = 7100)]
    pub base_port: u16,
    /// The least time between two blocks, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub block_ms: u64,
    /// The consensus proposal timeout in milliseconds (prevote and precommit wait half of
    /// it); each round that times out waits half as long again.
    #[arg(long, default_value_t = 2000)]
    pub propose_ms: u64,
    #[arg(long, default_value = "emrshare-local")]
    pub chain_id: String,
    /// Serve HTTPS: writes a consortium CA (ca.pem; its key is not kept) and a certificate per
    /// node (node-<i>/tls.{cert,key}.pem, for 127.0.0.1 and localhost), and https peer URLs.
    #[arg(long)]
    pub tls: bool,
    /// Write over a folder that holds a consortium already: its genesis, keys and configs are
    /// replaced, and its nodes' data dirs (node-<i>/data) deleted.
    #[arg(long)]
    pub force: bool,
}

impl InitOptions {
    /// The numbers of proposers and auditors: as given, or 2 of every 5 nodes audit (at least
    /// one) and the others propose, so any `--nodes` of 2 or more works alone.
    pub fn proposers_and_auditors(&self) -> (usize, usize) {
        let auditors = self.auditors.unwrap_or((self.nodes * 2 / 5).max(1));
        let proposers = self
            .proposers
            .unwrap_or(self.nodes.saturating_sub(auditors));
        (proposers, auditors)
    }
}

/// The nodes' data dirs in a folder `init` wrote (node-<i>/data), those that exist.
fn existing_data_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("node-"))
        .map(|e| e.path().join("data"))
        .filter(|data| data.exists())
        .collect();
    found.sort();
    found
}

/// Writes `dir/genesis.json` and `dir/node-<i>/{node.key.json,config.toml}`; refuses a
/// folder that holds a consortium already unless `options.force`.
pub fn init(dir: &Path, options: &InitOptions) -> Result<Vec<PathBuf>> {
    let (proposers, auditors) = options.proposers_and_auditors();
    if proposers + auditors > options.nodes || proposers == 0 || auditors == 0 {
        bail!(
            "{proposers} proposers and {auditors} auditors do not fit {} nodes: a consortium \
             needs at least one of each, and no more than --nodes together",
            options.nodes
        );
    }
    let genesis_path = dir.join("genesis.json");
    let data_dirs = existing_data_dirs(dir);
    if !options.force && (genesis_path.exists() || !data_dirs.is_empty()) {
        let what = match data_dirs.first() {
            Some(data) => data.display().to_string(),
            None => genesis_path.display().to_string(),
        };
        bail!(
            "{} holds a consortium already ({what}): choose another folder, or pass --force \
             to replace it and delete its nodes' data",
            dir.display()
        );
    }
    for data in data_dirs {
        std::fs::remove_dir_all(&data)
            .with_context(|| format!("cannot delete {}", data.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let keys: Vec<PrivateKeySet> = (0..options.nodes)
        .map(|i| {
            PrivateKeySet::generate(
                Some(PartyId::new(format!("node:{i}")).expect("valid ID")),
                RsaBits::B2048,
            )
        })
        .collect();
    let validators = keys
        .iter()
        .map(|k| Validator {
            id: k.id.clone(),
            signing_jwk: k.signing.verifying_key().to_jwk(None),
            credit: 100,
        })
        .collect::<Vec<_>>();
    // Governance: every node is a council member with its consensus key, and an action
    // needs floor(2n/3) + 1 of them (more than two thirds).
    let council = Council::of_validators(&validators);
    // Each node issues record vouchers under its own key, which genesis lists.
    let voucher_keys = (0..options.nodes)
        .map(|_| emrshare_core::voucher::VoucherSecretKey::generate(2048))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("record voucher key: {e}"))?;
    let record_voucher_keys = voucher_keys
        .iter()
        .map(|k| k.public().map(|p| p.to_jwk()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("record voucher key: {e}"))?;
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let genesis = Genesis {
        chain_id: options.chain_id.clone(),
        validators: ValidatorSet {
            validators,
            proposers,
            auditors,
        },
        block_ms: options.block_ms,
        timeouts: Timeouts {
            propose_ms: options.propose_ms,
            prevote_ms: options.propose_ms / 2,
            precommit_ms: options.propose_ms / 2,
        },
        start_ms,
        governance: Some(council),
        record_voucher_keys,
    };
    std::fs::write(&genesis_path, serde_json::to_string_pretty(&genesis)?)
        .with_context(|| format!("cannot write {}", genesis_path.display()))?;
    let scheme = if options.tls { "https" } else { "http" };
    let url = |i: usize| format!("{scheme}://127.0.0.1:{}", options.base_port as usize + i);
    let p2p = |i: usize| {
        format!(
            "/ip4/127.0.0.1/tcp/{}",
            options.base_port as usize + options.nodes + i
        )
    };
    let ca = if options.tls {
        let ca = ConsortiumCa::generate(&options.chain_id)?;
        std::fs::write(dir.join("ca.pem"), ca.cert_pem())?;
        Some(ca)
    } else {
        None
    };
    let mut configs = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let node_dir = dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&node_dir)
            .with_context(|| format!("cannot create {}", node_dir.display()))?;
        write_private(&node_dir.join("node.key.json"), key.to_json().as_bytes())?;
        let voucher_der = voucher_keys[i]
            .to_pkcs8()
            .map_err(|e| anyhow::anyhow!("record voucher key: {e}"))?;
        write_private(&node_dir.join("record-voucher.pk8"), &voucher_der)?;
        let tls = match &ca {
            Some(ca) => {
                let (cert_pem, key_pem) = ca.issue(key.id.as_str())?;
                std::fs::write(node_dir.join("tls.cert.pem"), cert_pem)?;
                write_private(&node_dir.join("tls.key.pem"), key_pem.as_bytes())?;
                Some(TlsConfig {
                    cert_file: "tls.cert.pem".into(),
                    key_file: "tls.key.pem".into(),
                    ca_file: Some("../ca.pem".into()),
                })
            }
            None => None,
        };
        let config = NodeConfig {
            id: key.id.clone(),
            listen: format!("127.0.0.1:{}", options.base_port as usize + i).parse()?,
            p2p_listen: p2p(i),
            data_dir: "data".into(),
            key_file: "node.key.json".into(),
            genesis_file: "../genesis.json".into(),
            peers: (0..options.nodes)
                .filter(|&j| j != i)
                .map(|j| Peer {
                    id: keys[j].id.clone(),
                    url: url(j),
                    p2p: p2p(j),
                })
                .collect(),
            limits: Limits::default(),
            tls,
            record_voucher_key_file: Some("record-voucher.pk8".into()),
        };
        let path = node_dir.join("config.toml");
        std::fs::write(&path, toml::to_string_pretty(&config)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        configs.push(path);
    }
    Ok(configs)
}

/// The consortium CA of `init --tls`: issues one server certificate per node. Its key lives
/// only in memory; re-run `init` to re-issue.
pub struct ConsortiumCa(rcgen::CertifiedIssuer<'static, rcgen::KeyPair>);

fn validity(params: &mut rcgen::CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

impl ConsortiumCa {
    pub fn generate(chain_id: &str) -> Result<Self> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("emrshare consortium CA ({chain_id})"),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, 3650);
        Ok(Self(rcgen::CertifiedIssuer::self_signed(
            params,
            KeyPair::generate()?,
        )?))
    }

    pub fn cert_pem(&self) -> String {
        self.0.pem()
    }

    /// A server certificate for `node` on 127.0.0.1 and localhost: (certificate, key) PEM.
    pub fn issue(&self, node: &str) -> Result<(String, String)> {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::new(["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, node);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, 825);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.0)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Writes a private key readable by its owner only (on Unix).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: InitOptions,
    }

    fn options(args: &[&str]) -> InitOptions {
        Cli::try_parse_from(std::iter::once("init").chain(args.iter().copied()))
            .unwrap()
            .options
    }

    #[test]
    fn roles_default_to_two_auditors_in_five_and_given_ones_are_kept() {
        assert_eq!(options(&[]).proposers_and_auditors(), (3, 2));
        assert_eq!(options(&["--nodes", "2"]).proposers_and_auditors(), (1, 1));
        assert_eq!(options(&["--nodes", "4"]).proposers_and_auditors(), (3, 1));
        assert_eq!(options(&["--nodes", "7"]).proposers_and_auditors(), (5, 2));
        let given = options(&["--nodes", "4", "--proposers", "1", "--auditors", "1"]);
        assert_eq!(given.proposers_and_auditors(), (1, 1));
        let only_auditors = options(&["--nodes", "4", "--auditors", "2"]);
        assert_eq!(only_auditors.proposers_and_auditors(), (2, 2));
    }

    #[test]
    fn roles_that_do_not_fit_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        for args in [
            &["--nodes", "1"][..],
            &["--nodes", "3", "--proposers", "3"],
            &["--nodes", "3", "--auditors", "0"],
            &["--nodes", "3", "--proposers", "0"],
        ] {
            let error = init(dir.path(), &options(args)).unwrap_err().to_string();
            assert!(error.contains("do not fit"), "{args:?}: {error}");
            assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
        }
        let written = init(dir.path(), &options(&["--nodes", "2"])).unwrap();
        assert_eq!(written.len(), 2);
    }
}
