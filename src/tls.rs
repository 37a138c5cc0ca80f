//! The console's server certificate: a PEM chain and its private key loaded into a
//! rustls server configuration. Below both the configuration (which checks the files)
//! and the console (which serves HTTPS with them).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;

/// Why the console's certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is missing, unreadable, or holds no PEM certificate.
    #[error("certificate {path}: {message}")]
    Certificate {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key file is missing, unreadable, or holds no PEM private key.
    #[error("private key {path}: {message}")]
    Key {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("certificate and key refused: {0}")]
    Refused(String),
}

impl TlsError {
    /// Stable code for logs.
    pub fn code(&self) -> &'static str {
        match self {
            TlsError::Certificate { .. } => "TLS_CERTIFICATE",
            TlsError::Key { .. } => "TLS_KEY",
            TlsError::Refused(_) => "TLS_REFUSED",
        }
    }
}

/// A TLS 1.2/1.3 server configuration over `certificate` (PEM chain, leaf first) and
/// `key` (PEM PKCS#8, PKCS#1 or SEC1), offering HTTP/1.1.
pub fn server_config(certificate: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_err = |message: String| TlsError::Certificate {
        path: certificate.to_path_buf(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(certificate)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no PEM certificate in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Refused(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| TlsError::Refused(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path) -> (PathBuf, PathBuf) {
        let c = rcgen::generate_simple_self_signed(vec!["station.branch".into()]).unwrap();
        let (cert, key) = (dir.join("console.crt"), dir.join("console.key"));
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
        (cert, key)
    }

    #[test]
    fn a_pem_certificate_and_key_make_a_server_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path());
        let config = server_config(&cert, &key).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn a_missing_certificate_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (_, key) = pair(dir.path());
        let missing = dir.path().join("nope.crt");
        let e = server_config(&missing, &key).unwrap_err();
        assert_eq!(e.code(), "TLS_CERTIFICATE");
        assert!(e.to_string().contains("nope.crt"), "{e}");
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = pair(dir.path());
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        let (_, key) = pair(&other);
        let e = server_config(&cert, &key).unwrap_err();
        assert_eq!(e.code(), "TLS_REFUSED", "{e}");
    }
}
