//! A minimal HTTPS client for the integration tests and the load generator: one TLS
//! connection, HTTP/1.1 keep-alive. Not part of the webhook's behaviour.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A TLS client configuration trusting `ca_der`.
pub fn client_config(ca_der: &[u8]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = crate::tls::provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec()))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Full handshakes only, so that `Conn::server_cert` is what the server presents now
    // (a resumed session reports the certificate of the original one).
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// One keep-alive HTTPS connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    /// DER of the certificate the server presented.
    pub server_cert: Vec<u8>,
}

impl Conn {
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(server_name.to_string())?;
        let tls = TlsConnector::from(config).connect(name, tcp).await?;
        let server_cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            sender,
            server_cert,
        })
    }

    /// POSTs `body` to `path`; returns status and body.
    pub async fn post(&mut self, path: &str, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        self.sender.ready().await?;
        let req = Request::post(path)
            .header("host", "kfp-mesh-webhook")
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// Plain-HTTP GET (admin port).
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(StatusCode, String)> {
    let tcp = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(path)
        .header("host", "admin")
        .body(Full::new(Bytes::new()))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
