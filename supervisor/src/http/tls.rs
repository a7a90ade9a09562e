//! TLS for the HTTP face: its certificate chain and private key read from
//! PEM files (`tls_cert`, `tls_key`) into a rustls acceptor (TLS 1.2 and
//! 1.3, ring's ciphers), with HTTP/1.1 offered by ALPN. A file that does
//! not hold what it should stops `corral up` naming it.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};

use crate::Error;

/// The acceptor for the chain in `cert` and the key in `key`.
pub(super) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, Error> {
    let refused =
        |path: &Path, why: String| Error::Refused(format!("http: {}: {why}", path.display()));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| refused(cert, format!("cannot read a certificate chain: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| refused(cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(refused(cert, "holds no certificate".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| refused(key, format!("not a PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| refused(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| refused(key, format!("does not go with the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
