//! The upstream applications behind the server sidecars: an HTTP echo (method, path and headers
//! back as JSON, so the caller identity Envoy forwards in `x-forwarded-client-cert` is visible)
//! and a TCP echo. The TCP echo listens twice: the harness points the TCP chains that terminate
//! mTLS at the `tls-terminated` port, every other TCP path at the `plain` port, and the echo
//! prefixes its reply with that tag, so a test can see which filter chain a TCP connection
//! really used.
//!
//! The TCP echo is also an application that serves TLS itself (like KFP's API server with
//! `--tlsCertPath`): when a connection starts with a TLS handshake record it completes the
//! handshake with a certificate for the name the client asks for (SNI), signed by an
//! application CA that only [`app_tls`]'s client configuration trusts (the cert-manager CA of
//! KFP's standalone-TLS env), and echoes inside TLS, with the same tag.
//!
//! They run for the life of the test process on their own thread and runtime, bound to
//! ephemeral loopback ports; they own no files.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub struct Apps {
    pub http: SocketAddr,
    pub tcp_plain: SocketAddr,
    pub tcp_tls_terminated: SocketAddr,
}

pub const TAG_PLAIN: &str = "plain";
pub const TAG_TLS: &str = "tls-terminated";
/// Marks an HTTP echo response body.
pub const ECHO_MARK: &str = "kfp-mesh-http-echo";

static APPS: OnceLock<Apps> = OnceLock::new();

pub fn apps() -> &'static Apps {
    APPS.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("echo-apps".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("echo runtime");
                rt.block_on(async move {
                    let http = TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind http echo");
                    let plain = TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind tcp echo");
                    let tls = TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind tcp echo");
                    tx.send(Apps {
                        http: http.local_addr().expect("addr"),
                        tcp_plain: plain.local_addr().expect("addr"),
                        tcp_tls_terminated: tls.local_addr().expect("addr"),
                    })
                    .expect("send app addresses");
                    tokio::spawn(tcp_echo(plain, TAG_PLAIN));
                    tokio::spawn(tcp_echo(tls, TAG_TLS));
                    http_echo(http).await;
                });
            })
            .expect("spawn echo thread");
        rx.recv().expect("echo apps started")
    })
}

async fn tcp_echo(listener: TcpListener, tag: &'static str) {
    loop {
        let Ok((s, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            match s.peek(&mut first).await {
                // A TLS handshake record: the application terminates the TLS itself.
                Ok(1) if first[0] == TLS_HANDSHAKE_RECORD => {
                    let acceptor = TlsAcceptor::from(app_tls().server.clone());
                    if let Ok(tls) = acceptor.accept(s).await {
                        echo_stream(tls, tag).await;
                    }
                }
                Ok(n) if n > 0 => echo_stream(s, tag).await,
                _ => {}
            }
        });
    }
}

/// The first byte of a TLS record carrying a handshake message (a ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Echo what arrives, the first reply prefixed with `<tag>:`.
async fn echo_stream<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, tag: &'static str) {
    let mut buf = vec![0u8; 4096];
    let mut first = true;
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if first {
                    first = false;
                    if s.write_all(format!("{tag}:").as_bytes()).await.is_err() {
                        break;
                    }
                }
                if s.write_all(&buf[..n]).await.is_err() || s.flush().await.is_err() {
                    break;
                }
            }
        }
    }
}

/// The application's own TLS: a CA, the echo's server configuration (a certificate per SNI
/// name, signed by that CA) and a client configuration that trusts only that CA (ALPN `h2`,
/// as KFP's gRPC clients offer).
pub struct AppTls {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

static APP_TLS: OnceLock<AppTls> = OnceLock::new();

pub fn app_tls() -> &'static AppTls {
    APP_TLS.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("app CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "application CA (not the mesh)");
        params.distinguished_name = dn;
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("self-signed app CA");
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(issuer.der().to_vec()))
            .expect("app CA is a valid root");
        let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"h2".to_vec()];
        client.resumption = rustls::client::Resumption::disabled();
        let resolver = Arc::new(PerName {
            issuer,
            provider: provider.clone(),
            issued: Mutex::new(HashMap::new()),
        });
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        AppTls {
            server: Arc::new(server),
            client: Arc::new(client),
        }
    })
}

/// Issues (once per name) a certificate for the SNI name the client sends.
struct PerName {
    issuer: CertifiedIssuer<'static, KeyPair>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    issued: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for PerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerName").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for PerName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?.to_string();
        let mut issued = self.issued.lock().ok()?;
        if let Some(k) = issued.get(&name) {
            return Some(k.clone());
        }
        let params = CertificateParams::new(vec![name.clone()]).ok()?;
        let key = KeyPair::generate().ok()?;
        let cert = params.signed_by(&key, &self.issuer).ok()?;
        let der_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let certified = Arc::new(
            CertifiedKey::from_der(vec![cert.der().clone()], der_key, &self.provider).ok()?,
        );
        issued.insert(name, certified.clone());
        Some(certified)
    }
}

async fn http_echo(listener: TcpListener) {
    loop {
        let Ok((s, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(echo);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), service)
                .await;
        });
    }
}

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let _ = req.into_body().collect().await;
    let body = serde_json::json!({
        "app": ECHO_MARK,
        "method": method,
        "path": path,
        "headers": headers,
    });
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}
