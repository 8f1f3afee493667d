//! TLS for the node, with rustls on the aws-lc-rs provider: the server side from the `[tls]`
//! PEM files (handshakes run in [`crate::conn`], under the connection limits), the peers'
//! client side (trusting only the consortium CA), and the certificates `init --tls` writes.

use crate::config::TlsConfig;
use anyhow::{Context, Result, anyhow, bail};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read TLS {what} {}", path.display()))
}

/// The certificates in a PEM file (`what` names the file in errors).
fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = read_pem(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("TLS {what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("TLS {what} {}: no PEM CERTIFICATE in it", path.display());
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let bytes = read_pem(path, "key file")?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => {
            anyhow!("TLS key file {}: no PEM private key in it", path.display())
        }
        e => anyhow!("TLS key file {}: {e}", path.display()),
    })
}

/// The server side: the node's certificate chain and key, checked to belong together.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>> {
    let certs = read_certs(&tls.cert_file, "certificate file")?;
    let key = read_key(&tls.key_file)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "TLS certificate {} and key {} are not a usable pair",
                tls.cert_file.display(),
                tls.key_file.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client side the node uses towards its peers: it trusts the certificates in `ca_file`
/// and nothing else (no https peer is reachable without one).
pub fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    if let Some(path) = ca_file {
        for cert in read_certs(path, "CA file")? {
            roots
                .add(cert)
                .with_context(|| format!("TLS CA file {}: unusable certificate", path.display()))?;
        }
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
