//! The upstream applications behind the server sidecars: an HTTP echo (method, path and headers
//! back as JSON, so the caller identity Envoy forwards in `x-forwarded-client-cert` is visible)
//! and a TCP echo. The TCP echo listens twice: the harness points the TCP chains that terminate
//! mTLS at the `tls-terminated` port, every other TCP path at the `plain` port, and the echo
//! prefixes its reply with that tag, so a test can see which filter chain a TCP connection
//! really used.
//!
//! They run for the life of the test process on their own thread and runtime, bound to
//! ephemeral loopback ports; they own no files.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
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
                        if s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
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
