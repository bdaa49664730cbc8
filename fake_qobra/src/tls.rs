//! HTTPS: a certificate chain and its private key (PEM) turned into what accepts TLS
//! connections (rustls with the ring provider, TLS 1.2 and 1.3, HTTP/1.1 by ALPN).

use std::io;
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// A server certificate and key, ready to accept TLS connections.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for Tls {
    /// Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls { .. }")
    }
}

impl Tls {
    /// From PEM text: `cert_chain` holds the server's certificate first, then any
    /// intermediates; `key` its private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> io::Result<Tls> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        let certs = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("the certificate file does not parse: {e}")))?;
        if certs.is_empty() {
            return Err(invalid("the certificate file holds no certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| invalid(format!("the key file holds no usable private key: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| invalid(format!("the certificate and key do not go together: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            config: Arc::new(config),
        })
    }

    /// From two PEM files (`--tls-cert`, `--tls-key`).
    pub fn from_files(cert_chain: &Path, key: &Path) -> io::Result<Tls> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
            })
        };
        Tls::from_pem(&read(cert_chain)?, &read(key)?)
    }

    /// What the server's connections handshake with.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.config))
    }
}
