//! Serving certificate: loaded from PEM files, swapped atomically when the files change.
//! Handshakes already done keep their connection; new handshakes get the new certificate,
//! so a rotation drops no request.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The ring provider, installed as the process default on first use.
pub fn provider() -> Arc<CryptoProvider> {
    let provider = rustls::crypto::ring::default_provider();
    // Another component may have installed one already; ours is passed explicitly anyway.
    let _ = provider.clone().install_default();
    Arc::new(provider)
}

/// The current certificate, shared by the TLS acceptor and the reloader.
#[derive(Default)]
pub struct CertStore {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

impl CertStore {
    pub fn is_loaded(&self) -> bool {
        self.current.read().map(|c| c.is_some()).unwrap_or(false)
    }

    pub fn set(&self, key: Arc<CertifiedKey>) {
        if let Ok(mut c) = self.current.write() {
            *c = Some(key);
        }
    }

    /// The DER of the current leaf certificate, if any.
    pub fn leaf_der(&self) -> Option<Vec<u8>> {
        let c = self.current.read().ok()?;
        c.as_ref()?.cert.first().map(|d| d.as_ref().to_vec())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok()?.clone()
    }
}

/// Parses a PEM certificate chain and private key and checks that they belong together.
pub fn load_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate file: {e}"))?;
    if chain.is_empty() {
        return Err("certificate file holds no certificate".to_string());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("key file: {e}"))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| format!("certificate and key: {e}"))
}

/// Reads both files (following symlinks, as Secret volumes use).
pub fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), String> {
    let c = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    let k = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
    Ok((c, k))
}

/// TLS 1.2 and 1.3, ALPN h2 and http/1.1, certificate from `store`.
pub fn server_config(
    store: Arc<CertStore>,
    provider: Arc<CryptoProvider>,
) -> Result<ServerConfig, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
