//! Slow, idle and too many peers, over real HTTPS on loopback: every such connection is closed
//! after its timeout, and at the connection cap slow peers give way to reviews.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kfp_mesh_webhook::testing::{Conn, client_config, get};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

fn metric(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn metrics(admin: SocketAddr) -> String {
    get(admin, "/metrics").await.expect("metrics").1
}

/// Waits until `line_prefix` reads `value` on the admin port (at most 10 s).
async fn metric_reaches(admin: SocketAddr, line_prefix: &str, value: f64) {
    let what = format!("{line_prefix} = {value}");
    eventually(10, &what, || async move {
        let m = get(admin, "/metrics").await.ok()?.1;
        (metric(&m, line_prefix) == Some(value)).then_some(())
    })
    .await;
}

/// A TLS connection offering the given ALPN protocols, handshake done.
async fn tls(addr: SocketAddr, ca: &[u8], alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let mut config = (*client_config(ca).expect("client config")).clone();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from(SERVER_NAME).expect("name");
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// Reads (and discards) until the server closes the connection; `false` if it is still open
/// after `within`.
async fn closed_within<S: AsyncRead + Unpin>(stream: &mut S, within: Duration) -> bool {
    let read_all = async {
        let mut buf = vec![0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_all).await.is_ok()
}

const HTTPS: &str = r#"port="https""#;

fn closed(reason: &str) -> String {
    format!(r#"kfp_mesh_webhook_connections_closed_total{{{HTTPS},reason="{reason}"}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let pki = Pki::new();
    let secret = SecretDir::new(&pki.leaf());
    let mut s = settings(&secret.cert(), &secret.key());
    let idle = Duration::from_millis(1000);
    s.idle_timeout = idle;
    // Longer than the test: only the idle timeout can close these connections.
    s.header_read_timeout = Duration::from_secs(60);
    let server = start(s).await;
    let ca = pki.ca_der();

    // TLS connections that never send a request, over HTTP/1.1 and HTTP/2.
    for alpn in [b"http/1.1".as_slice(), b"h2".as_slice()] {
        let t0 = Instant::now();
        let mut stream = tls(server.addr, &ca, &[alpn]).await;
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn));
        assert!(
            closed_within(&mut stream, Duration::from_secs(10)).await,
            "{}: an idle connection must be closed",
            String::from_utf8_lossy(alpn)
        );
        assert!(t0.elapsed() >= idle, "closed only after the idle timeout");
    }

    // HTTP/2: a review is answered, then the idle connection goes (GOAWAY, close).
    let stream = tls(server.addr, &ca, &[b"h2"]).await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    let driver = tokio::spawn(conn);
    let req = hyper::Request::post("/mutate/workflows")
        .header("content-type", "application/json")
        .body(Full::new(workflow_review(
            "h2",
            submitted_workflow("kfp-2.5.0-hello_world.yaml"),
        )))
        .expect("request");
    let resp = sender.send_request(req).await.expect("h2 request");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let (r, patch) = decode(&body);
    assert!(r["uid"] == "h2" && patch.is_some());
    let answered = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), driver)
        .await
        .expect("the idle HTTP/2 connection is closed")
        .expect("join")
        .expect("closed cleanly (GOAWAY)");
    assert!(answered.elapsed() >= idle - Duration::from_millis(50));

    metric_reaches(server.admin_addr, &closed("idle_timeout"), 3.0).await;
    metric_reaches(
        server.admin_addr,
        &format!("kfp_mesh_webhook_connections_open{{{HTTPS}}}"),
        0.0,
    )
    .await;
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_header_a_slow_body_and_a_stalled_handshake_are_cut_off() {
    let pki = Pki::new();
    let secret = SecretDir::new(&pki.leaf());
    let mut s = settings(&secret.cert(), &secret.key());
    let limit = Duration::from_millis(1000);
    s.header_read_timeout = limit;
    s.body_read_timeout = limit;
    s.handshake_timeout = limit;
    s.idle_timeout = Duration::from_secs(60);
    let server = start(s).await;
    let ca = pki.ca_der();

    // Slow header: one header line every 200 ms, for at most 10 s.
    let t0 = Instant::now();
    let stream = tls(server.addr, &ca, &[b"http/1.1"]).await;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let dripping = tokio::spawn(async move {
        let _ = wr.write_all(b"POST /mutate/workflows HTTP/1.1\r\n").await;
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr
                .write_all(format!("x-slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    });
    assert!(
        closed_within(&mut rd, Duration::from_secs(8)).await,
        "a slow header must be cut off"
    );
    assert!(t0.elapsed() >= limit);
    dripping.abort();
    metric_reaches(server.admin_addr, &closed("header_timeout"), 1.0).await;

    // Slow body: the head at once, half the body, then nothing: 408, then the connection
    // closes (the rest of the body is never read).
    let body = workflow_review("slow", submitted_workflow("kfp-2.5.0-hello_world.yaml"));
    let mut stream = tls(server.addr, &ca, &[b"http/1.1"]).await;
    let t0 = Instant::now();
    let head = format!(
        "POST /mutate/workflows HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream
        .write_all(&body[..body.len() / 2])
        .await
        .expect("half the body");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(8), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection is closed after the answer");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request body not received within"), "{text}");
    assert!(t0.elapsed() >= limit);

    // A TCP connection that never starts its TLS handshake.
    let t0 = Instant::now();
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    assert!(
        closed_within(&mut tcp, Duration::from_secs(8)).await,
        "a stalled handshake must be cut off"
    );
    assert!(t0.elapsed() >= limit);

    // The admin port cuts off slow headers too.
    let t0 = Instant::now();
    let mut admin = TcpStream::connect(server.admin_addr)
        .await
        .expect("connect");
    admin
        .write_all(b"GET /metrics HTTP/1.1\r\n")
        .await
        .expect("write");
    assert!(closed_within(&mut admin, Duration::from_secs(8)).await);
    assert!(t0.elapsed() >= limit);

    let m = metrics(server.admin_addr).await;
    assert_eq!(
        metric(
            &m,
            r#"kfp_mesh_webhook_requests_total{path="/mutate/workflows",result="body_timeout"}"#
        ),
        Some(1.0)
    );
    metric_reaches(server.admin_addr, &closed("handshake_timeout"), 1.0).await;
    metric_reaches(
        server.admin_addr,
        r#"kfp_mesh_webhook_connections_closed_total{port="admin",reason="header_timeout"}"#,
        1.0,
    )
    .await;

    // None of this stops a review.
    let tls_config = client_config(&ca).expect("client config");
    let mut conn = Conn::connect(server.addr, SERVER_NAME, tls_config)
        .await
        .expect("connect");
    let (status, body) = conn
        .post(
            "/mutate/workflows",
            workflow_review("ok", submitted_workflow("kfp-2.5.0-hello_world.yaml")),
        )
        .await
        .expect("post");
    assert_eq!(status, StatusCode::OK);
    assert!(decode(&body).1.is_some());
    server.shutdown().await.expect("shutdown");
}

/// One peer that holds a connection without completing a request.
enum Slow {
    /// Connected, TLS handshake never started.
    Tcp(TcpStream),
    /// Handshake done, no request.
    Idle(TlsStream<TcpStream>),
    /// Half a request head sent.
    Header(TlsStream<TcpStream>),
}

impl Slow {
    async fn open(i: usize, addr: SocketAddr, ca: &[u8]) -> Slow {
        match i % 3 {
            0 => Slow::Tcp(TcpStream::connect(addr).await.expect("connect")),
            1 => Slow::Idle(tls(addr, ca, &[b"http/1.1"]).await),
            _ => {
                let mut s = tls(addr, ca, &[b"http/1.1"]).await;
                s.write_all(b"POST /mutate/pods HTTP/1.1\r\nhost: x\r\n")
                    .await
                    .expect("write");
                Slow::Header(s)
            }
        }
    }

    async fn closed_within(&mut self, within: Duration) -> bool {
        match self {
            Slow::Tcp(s) => closed_within(s, within).await,
            Slow::Idle(s) | Slow::Header(s) => closed_within(s, within).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_slow_peers_give_way_to_reviews() {
    let pki = Pki::new();
    let secret = SecretDir::new(&pki.leaf());
    let mut s = settings(&secret.cert(), &secret.key());
    let cap = 12;
    s.max_connections = cap;
    // Longer than the test: only the cap closes connections here.
    s.handshake_timeout = Duration::from_secs(60);
    s.header_read_timeout = Duration::from_secs(60);
    s.idle_timeout = Duration::from_secs(60);
    let server = start(s).await;
    let (addr, admin) = (server.addr, server.admin_addr);
    let ca = pki.ca_der();
    let open = format!("kfp_mesh_webhook_connections_open{{{HTTPS}}}");

    // The cap filled with slow peers.
    let mut slow = Vec::new();
    for i in 0..cap {
        slow.push(Slow::open(i, addr, &ca).await);
    }
    metric_reaches(admin, &open, cap as f64).await;

    // Reviews on new connections: each one closes the oldest slow peer and is answered.
    let tls_config = client_config(&ca).expect("client config");
    let mut reviewers = Vec::new();
    for i in 0..4 {
        let mut conn = Conn::connect(addr, SERVER_NAME, tls_config.clone())
            .await
            .expect("connect at the cap");
        let (status, body) = conn
            .post(
                "/mutate/workflows",
                workflow_review(
                    &format!("r{i}"),
                    submitted_workflow("kfp-2.5.0-hello_world.yaml"),
                ),
            )
            .await
            .expect("a review at the cap");
        assert_eq!(status, StatusCode::OK);
        assert!(decode(&body).1.is_some());
        reviewers.push(conn);
    }
    let m = metrics(admin).await;
    assert_eq!(metric(&m, &open), Some(cap as f64), "never above the cap");
    assert_eq!(metric(&m, &closed("evicted")), Some(4.0));
    assert_eq!(metric(&m, &closed("rejected")), Some(0.0));
    assert_eq!(
        metric(&m, &format!("kfp_mesh_webhook_connections_max{{{HTTPS}}}")),
        Some(cap as f64)
    );
    for (i, peer) in slow.iter_mut().enumerate() {
        let gone = peer.closed_within(Duration::from_millis(300)).await;
        assert_eq!(gone, i < 4, "slow peer {i}: the oldest four made room");
    }

    // More slow peers: they push out the remaining never-served slow peers, never the
    // connections that answered reviews, which keep working.
    let mut late = Vec::new();
    for i in 0..(cap - 4) {
        late.push(Slow::open(i, addr, &ca).await);
    }
    metric_reaches(admin, &closed("evicted"), cap as f64).await;
    for (i, peer) in slow.iter_mut().enumerate().skip(4) {
        assert!(
            peer.closed_within(Duration::from_secs(5)).await,
            "slow peer {i} made room"
        );
    }
    for (i, conn) in reviewers.iter_mut().enumerate() {
        let (status, _) = conn
            .post(
                "/mutate/workflows",
                workflow_review("again", submitted_workflow("kfp-2.5.0-hello_world.yaml")),
            )
            .await
            .unwrap_or_else(|e| panic!("reviewer {i} still connected: {e}"));
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(metric(&metrics(admin).await, &open), Some(cap as f64));
    drop((late, reviewers));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_slow_peers_and_drains_reviews() {
    let pki = Pki::new();
    let secret = SecretDir::new(&pki.leaf());
    let mut s = settings(&secret.cert(), &secret.key());
    s.handshake_timeout = Duration::from_secs(60);
    s.header_read_timeout = Duration::from_secs(60);
    s.idle_timeout = Duration::from_secs(60);
    s.shutdown_timeout = Duration::from_secs(2);
    let server = start(s).await;
    let ca = pki.ca_der();
    let mut slow = Vec::new();
    for i in 0..6 {
        slow.push(Slow::open(i, server.addr, &ca).await);
    }
    metric_reaches(
        server.admin_addr,
        &format!("kfp_mesh_webhook_connections_open{{{HTTPS}}}"),
        6.0,
    )
    .await;
    let t0 = Instant::now();
    server.shutdown().await.expect("shutdown");
    // Mid-header peers hold their connection until the shutdown timeout, no longer.
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    for (i, peer) in slow.iter_mut().enumerate() {
        assert!(
            peer.closed_within(Duration::from_secs(2)).await,
            "slow peer {i} closed at shutdown"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_held_at_once_are_bounded_all_together() {
    let pki = Pki::new();
    let secret = SecretDir::new(&pki.leaf());
    let mut s = settings(&secret.cert(), &secret.key());
    s.max_body_bytes = 64 * 1024;
    s.max_body_bytes_in_flight = 100 * 1024;
    s.body_read_timeout = Duration::from_secs(2);
    s.idle_timeout = Duration::from_secs(60);
    let server = start(s).await;
    let (addr, admin) = (server.addr, server.admin_addr);
    let ca = pki.ca_der();
    let held = "kfp_mesh_webhook_body_bytes_in_flight ";
    let head = "POST /mutate/workflows HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 65536\r\n\r\n";

    // A peer sends 60,000 bytes of a 65,536-byte body and stops: the server holds them.
    let mut a = tls(addr, &ca, &[b"http/1.1"]).await;
    a.write_all(head.as_bytes()).await.expect("head");
    a.write_all(&[b' '; 60_000]).await.expect("body");
    a.flush().await.expect("flush");
    metric_reaches(admin, held, 60_000.0).await;

    // A review fits in what is left, and is answered.
    let tls_config = client_config(&ca).expect("client config");
    let mut conn = Conn::connect(addr, SERVER_NAME, tls_config)
        .await
        .expect("connect");
    let (status, body) = conn
        .post(
            "/mutate/workflows",
            workflow_review("fits", submitted_workflow("kfp-2.5.0-hello_world.yaml")),
        )
        .await
        .expect("post");
    assert_eq!(status, StatusCode::OK);
    assert!(decode(&body).1.is_some());

    // A second large body does not: 503 as soon as it would pass the budget.
    let mut b = tls(addr, &ca, &[b"http/1.1"]).await;
    b.write_all(head.as_bytes()).await.expect("head");
    let _ = b.write_all(&[b' '; 50_000]).await;
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), b.read(&mut answer))
        .await
        .expect("answered before the body timeout")
        .expect("read");
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("too many request bodies"), "{text}");

    // The stalled body times out (408) and its bytes are released.
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(8), a.read_to_end(&mut answer)).await;
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    metric_reaches(admin, held, 0.0).await;
    let m = metrics(admin).await;
    assert_eq!(
        metric(
            &m,
            r#"kfp_mesh_webhook_requests_total{path="/mutate/workflows",result="overloaded"}"#
        ),
        Some(1.0)
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_budget_below_the_body_limit_is_refused_at_start() {
    let pki = Pki::new();
    let secret = SecretDir::new(&pki.leaf());
    let mut s = settings(&secret.cert(), &secret.key());
    s.max_body_bytes = 1024 * 1024;
    s.max_body_bytes_in_flight = 1024;
    let err = match kfp_mesh_webhook::start(s).await {
        Ok(_) => panic!("must not start"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("--max-body-bytes-in-flight") && err.contains("--max-body-bytes"),
        "{err}"
    );
}
