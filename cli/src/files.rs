//! File and stdin/stdout plumbing: bounded reads, atomic private writes, key loading.

use anyhow::{Context, Result, bail};
use emrshare_core::keys::wrap::KdfParams;
use emrshare_core::{PrivateKeySet, PublicKeySet};
use std::io::{Read, Write};
use std::path::Path;

/// Environment variable holding the passphrase of wrapped key files.
pub const PASSPHRASE_ENV: &str = "EMRSHARE_PASSPHRASE";

/// Reads a file, or stdin for `None` or `-`, refusing more than `limit` bytes.
pub fn read_input(path: Option<&Path>, limit: usize) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    let reader: Box<dyn Read> = match path {
        None => Box::new(std::io::stdin().lock()),
        Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdin().lock()),
        Some(p) => Box::new(
            std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
        ),
    };
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut data)
        .context("cannot read input")?;
    if data.len() > limit {
        bail!("input is larger than {limit} bytes");
    }
    Ok(data)
}

pub fn read_text(path: Option<&Path>, limit: usize) -> Result<String> {
    String::from_utf8(read_input(path, limit)?).context("input is not UTF-8 text")
}

pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        // Whoever read the output has gone (`| head`): nothing more to say.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other.context("cannot write to stdout"),
    }
}

/// Writes a file atomically (temporary file, fsync, rename) and, on Unix, readable only by
/// its owner: a crash leaves either the old file or the new one, never half a key.
pub fn write_private_file(path: &Path, contents: &[u8], overwrite: bool) -> Result<()> {
    if path.exists() && !overwrite {
        bail!("{} exists; pass --force to replace it", path.display());
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

const KEY_FILE_LIMIT: usize = 1 << 20;

/// Loads a private key set: a private JWK Set, or a passphrase-wrapped one (passphrase from
/// `EMRSHARE_PASSPHRASE`).
pub fn load_private_keys(path: &Path) -> Result<PrivateKeySet> {
    let bytes = read_input(Some(path), KEY_FILE_LIMIT)?;
    let is_wrapped = serde_json::from_slice::<serde_json::Value>(&bytes)
        .is_ok_and(|v| v.get("protected").is_some());
    let keys = if is_wrapped {
        let passphrase = std::env::var(PASSPHRASE_ENV)
            .with_context(|| format!("{} is wrapped; set {PASSPHRASE_ENV}", path.display()))?;
        PrivateKeySet::unwrap_with_passphrase(&bytes, passphrase.as_bytes())
            .map_err(anyhow::Error::from)
    } else {
        PrivateKeySet::from_json(&bytes).map_err(anyhow::Error::from)
    };
    if keys.is_err() && !is_wrapped && PublicKeySet::from_json(&bytes).is_ok() {
        anyhow::bail!(
            "{} holds public keys only; give the private key file (keygen --out)",
            path.display()
        );
    }
    keys.with_context(|| format!("{} is not a usable private key set", path.display()))
}

pub fn load_public_keys(path: &Path) -> Result<PublicKeySet> {
    let bytes = read_input(Some(path), KEY_FILE_LIMIT)?;
    PublicKeySet::from_json(&bytes)
        .with_context(|| format!("{} is not a usable public key set", path.display()))
}

/// The private key file contents: plain JWK Set, or wrapped when a passphrase is set.
pub fn private_key_file(
    keys: &PrivateKeySet,
    wrap_with_passphrase: bool,
) -> Result<zeroize::Zeroizing<String>> {
    if !wrap_with_passphrase {
        return Ok(keys.to_json());
    }
    let passphrase =
        std::env::var(PASSPHRASE_ENV).with_context(|| format!("--wrap needs {PASSPHRASE_ENV}"))?;
    if passphrase.is_empty() {
        bail!("{PASSPHRASE_ENV} is empty");
    }
    let wrapped = keys.wrap_with_passphrase(passphrase.as_bytes(), KdfParams::default())?;
    Ok(zeroize::Zeroizing::new(wrapped))
}
