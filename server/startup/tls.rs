//! TLS for the listener (rustls with the aws-lc-rs provider) and CA roots for outbound HTTPS
//! (openssl-probe finds the system bundle on minimal hosts and containers).

use std::path::Path;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Installs aws-lc-rs as the process-wide rustls provider. Call first thing in `main` (and in
/// tests before building TLS configs): with one provider compiled in this cannot conflict.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Where the system keeps its CA bundle, as found by openssl-probe; logged at start-up so a
/// missing bundle is visible before the first outbound call fails.
pub fn probe_ca_roots() -> Option<String> {
    let probe = openssl_probe::probe();
    probe.cert_file.map(|p| p.display().to_string()).or_else(|| probe.cert_dir.first().map(|p| p.display().to_string()))
}

/// Builds the server config from PEM files; errors name the file.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read TLS certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("malformed PEM in TLS certificate {}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate found in {}", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("no usable private key in {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
