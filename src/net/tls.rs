//! The one TLS setup of the process: rustls (aws-lc-rs) trusting webpki's roots, the system's
//! roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured, as OpenSSL-based tools honour them) and an
//! optional private CA (`--rpc-ca-file`), and the words for a certificate that is refused.

use std::{path::Path, sync::Arc};

use eyre::{Result, WrapErr, bail};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, pem::PemObject},
};

/// The client configuration: `alpn` lists the protocols offered (h2 and http/1.1 for HTTP, none
/// for WebSockets).
pub(crate) fn client_config(ca_file: Option<&Path>, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // The system's roots; unreadable ones are skipped (webpki's roots remain).
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .wrap_err_with(|| format!("cannot read the CA file {}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .wrap_err_with(|| format!("the CA file {} is not PEM", path.display()))?;
        if certs.is_empty() {
            bail!("the CA file {} holds no certificate", path.display());
        }
        for cert in certs {
            roots.add(cert).wrap_err_with(|| {
                format!("the CA file {} holds a bad certificate", path.display())
            })?;
        }
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .wrap_err("TLS setup")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The reason a TLS peer's certificate was refused, if that is what `e` (or one of its causes)
/// says: found by type through the error chain (rustls' error inside io, hyper, reqwest,
/// tungstenite), and by rustls' own wording as a last resort.
pub(crate) fn certificate_error(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(r) = rustls_error(err) {
            return Some(r);
        }
        next = err.source();
    }
    let text = e.to_string();
    text.find("invalid peer certificate")
        .map(|i| text[i..].lines().next().unwrap_or_default().to_string())
}

fn rustls_error(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let certificate = |r: &rustls::Error| match r {
        rustls::Error::InvalidCertificate(c) => Some(c.to_string()),
        _ => None,
    };
    if let Some(r) = err.downcast_ref::<rustls::Error>() {
        return certificate(r);
    }
    // io::Error hides its inner error from source(): look inside.
    if let Some(io) = err.downcast_ref::<std::io::Error>()
        && let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
    {
        return certificate(r);
    }
    if let Some(tokio_tungstenite::tungstenite::Error::Tls(
        tokio_tungstenite::tungstenite::error::TlsError::Rustls(r),
    )) = err.downcast_ref::<tokio_tungstenite::tungstenite::Error>()
    {
        return certificate(r);
    }
    None
}
