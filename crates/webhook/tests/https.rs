//! The webhook over real HTTPS on loopback, with rcgen certificates.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use hyper::StatusCode;
use kfp_mesh_webhook::testing::{Conn, client_config, get};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn metric(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_review_in_patch_out() {
    let pki = Pki::new();
    let secret = SecretDir::new(&pki.leaf());
    let server = start(settings(&secret.cert(), &secret.key())).await;
    let tls = client_config(&pki.ca_der()).expect("client config");
    let mut conn = Conn::connect(server.addr, SERVER_NAME, tls.clone())
        .await
        .expect("connect");

    for file in [
        "kfp-2.5.0-hello_world.yaml",
        "kfp-master-pipeline_with_importer.yaml",
    ] {
        let wf = submitted_workflow(file);
        let uid = format!("uid-{file}");
        let (status, body) = conn
            .post("/mutate/workflows", workflow_review(&uid, wf.clone()))
            .await
            .expect("post");
        assert_eq!(status, StatusCode::OK);
        let (resp, patch) = decode(&body);
        assert_eq!(resp["uid"], uid.as_str(), "uid echoed");
        assert_eq!(resp["allowed"], true);
        assert_eq!(resp["patchType"], "JSONPatch");
        let patch = patch.expect("a patch");
        let mut patched = wf.clone();
        json_patch::patch(&mut patched, &patch).expect("the patch applies");
        for t in patched["spec"]["templates"].as_array().expect("templates") {
            let name = t["name"].as_str().unwrap_or_default();
            let is_driver = name == "system-dag-driver" || name == "system-container-driver";
            assert_eq!(
                t["metadata"]["labels"]["sidecar.istio.io/inject"] == "true",
                is_driver,
                "{file}: {name}"
            );
            if is_driver {
                assert_eq!(
                    t["metadata"]["annotations"]["sidecar.istio.io/inject"],
                    "true"
                );
                assert_eq!(t["container"]["resources"]["requests"]["memory"], "256Mi");
            }
        }
        // The mutated object comes back unchanged.
        let (status, body) = conn
            .post("/mutate/workflows", workflow_review("again", patched))
            .await
            .expect("post");
        assert_eq!(status, StatusCode::OK);
        let (resp, patch) = decode(&body);
        assert_eq!(resp["uid"], "again");
        assert!(patch.is_none() && resp.get("patchType").is_none());
    }

    // Pod mode: an Argo driver pod of a workflow created before the webhook.
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "hello-world-x7k2p-system-dag-driver-938794099", "namespace": "team-a",
            "labels": {"pipelines.kubeflow.org/v2_component": "true", "workflows.argoproj.io/workflow": "hello-world-x7k2p"},
            "annotations": {"sidecar.istio.io/inject": "false", "kubectl.kubernetes.io/default-container": "main"}},
        "spec": {"containers": [
            {"name": "wait", "image": "quay.io/argoproj/argoexec:v3.5.14"},
            {"name": "main", "image": "ghcr.io/kubeflow/kfp-driver:2.5.0",
             "command": ["/var/run/argo/argoexec", "emissary", "--", "driver"],
             "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}}}]}
    });
    let (status, body) = conn
        .post(
            "/mutate/pods",
            review("pod-1", "CREATE", "", "Pod", pod.clone()),
        )
        .await
        .expect("post");
    assert_eq!(status, StatusCode::OK);
    let (resp, patch) = decode(&body);
    assert_eq!(resp["uid"], "pod-1");
    let mut patched = pod;
    json_patch::patch(&mut patched, &patch.expect("patch")).expect("applies");
    assert_eq!(
        patched["metadata"]["labels"]["sidecar.istio.io/inject"],
        "true"
    );
    assert_eq!(
        patched["metadata"]["annotations"]["sidecar.istio.io/inject"],
        "true"
    );
    assert_eq!(
        patched["spec"]["containers"][1]["resources"]["limits"]["memory"],
        "1Gi"
    );
    assert!(
        patched["spec"]["containers"][0].get("resources").is_none(),
        "wait untouched"
    );

    // Not a CREATE: allowed, no patch.
    let (_, body) = conn
        .post(
            "/mutate/workflows",
            review(
                "upd",
                "UPDATE",
                "argoproj.io",
                "Workflow",
                submitted_workflow("kfp-2.5.0-hello_world.yaml"),
            ),
        )
        .await
        .expect("post");
    let (resp, patch) = decode(&body);
    assert!(resp["allowed"] == true && patch.is_none());

    let (_, m) = get(server.admin_addr, "/metrics").await.expect("metrics");
    assert_eq!(
        metric(
            &m,
            r#"kfp_mesh_webhook_requests_total{path="/mutate/workflows",result="patched"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"kfp_mesh_webhook_requests_total{path="/mutate/workflows",result="unchanged"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"kfp_mesh_webhook_requests_total{path="/mutate/workflows",result="skipped"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"kfp_mesh_webhook_requests_total{path="/mutate/pods",result="patched"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"kfp_mesh_webhook_patches_applied_total{path="/mutate/workflows"}"#
        ),
        Some(2.0)
    );
    assert!(
        metric(
            &m,
            r#"kfp_mesh_webhook_patch_operations_total{path="/mutate/workflows"}"#
        )
        .is_some_and(|n| n >= 40.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"kfp_mesh_webhook_request_duration_seconds_count{path="/mutate/workflows"}"#
        ),
        Some(5.0)
    );
    assert!(m.contains(r#"kfp_mesh_webhook_request_duration_seconds_bucket{le="+Inf",path="/mutate/workflows"} 5"#), "{m}");
    assert_eq!(
        metric(
            &m,
            r#"kfp_mesh_webhook_config_reloads_total{result="success"}"#
        ),
        Some(1.0)
    );
    assert_eq!(metric(&m, "kfp_mesh_webhook_ready "), Some(1.0));
    assert!(m.ends_with("# EOF\n"));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_400_and_unreadable_objects_fail_open() {
    let pki = Pki::new();
    let secret = SecretDir::new(&pki.leaf());
    let mut s = settings(&secret.cert(), &secret.key());
    s.max_body_bytes = 64 * 1024;
    let server = start(s).await;
    let tls = client_config(&pki.ca_der()).expect("client config");
    let mut conn = Conn::connect(server.addr, SERVER_NAME, tls)
        .await
        .expect("connect");

    let (status, body) = conn
        .post("/mutate/workflows", Bytes::from_static(b"garbage"))
        .await
        .expect("post");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8_lossy(&body).contains("not JSON"),
        "{body:?}"
    );
    let (status, body) = conn
        .post(
            "/mutate/pods",
            Bytes::from_static(br#"{"apiVersion":"v1","kind":"Pod"}"#),
        )
        .await
        .expect("post");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("admission.k8s.io/v1"));
    let (status, body) = conn
        .post(
            "/mutate/pods",
            Bytes::from_static(
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}"#,
            ),
        )
        .await
        .expect("post");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("uid"));
    let (status, _) = conn.post("/elsewhere", Bytes::new()).await.expect("post");
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Too large: refused from the declared length, before the body is read.
    let tls = client_config(&pki.ca_der()).expect("client config");
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).expect("name");
    let mut stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .expect("tls");
    let head = "POST /mutate/workflows HTTP/1.1\r\nhost: x\r\ncontent-length: 70000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut raw = vec![0u8; 512];
    let n = stream.read(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("body larger than 65536 bytes"), "{text}");
    // Too large without a declared length (chunked): refused while reading.
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).expect("name");
    let mut stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .expect("tls");
    let chunk = "x".repeat(70_000);
    let req = format!(
        "POST /mutate/pods HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let _ = stream.write_all(req.as_bytes()).await;
    let n = stream.read(&mut raw).await.expect("read");
    assert!(String::from_utf8_lossy(&raw[..n]).starts_with("HTTP/1.1 413"));

    // Readable envelope, unreadable object: allowed, no patch, a warning.
    for (uid, object) in [
        ("f1", json!("a string")),
        (
            "f2",
            json!({"kind": "Workflow", "spec": {"templates": {"not": "a list"}}}),
        ),
        (
            "f3",
            json!({"kind": "Workflow", "spec": {"templates": [{"name": "system-dag-driver", "container": {"resources": "lots"}}]}}),
        ),
        ("f4", Value::Null),
    ] {
        let (status, body) = conn
            .post("/mutate/workflows", workflow_review(uid, object))
            .await
            .expect("post");
        assert_eq!(status, StatusCode::OK, "{uid}");
        let (resp, patch) = decode(&body);
        assert_eq!(resp["uid"], uid);
        assert_eq!(resp["allowed"], true);
        assert!(patch.is_none(), "{uid}");
        assert!(
            resp["warnings"][0]
                .as_str()
                .is_some_and(|w| w.contains("could not be read")),
            "{uid}: {resp}"
        );
    }
    let (_, m) = get(server.admin_addr, "/metrics").await.expect("metrics");
    assert_eq!(
        metric(
            &m,
            r#"kfp_mesh_webhook_requests_total{path="/mutate/workflows",result="fail_open"}"#
        ),
        Some(4.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"kfp_mesh_webhook_requests_total{path="/mutate/workflows",result="bad_request"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"kfp_mesh_webhook_requests_total{path="/mutate/pods",result="bad_request"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"kfp_mesh_webhook_requests_total{path="/mutate/workflows",result="payload_too_large"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"kfp_mesh_webhook_requests_total{path="/mutate/pods",result="payload_too_large"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, r#"kfp_mesh_webhook_errors_total{kind="fail_open"}"#),
        Some(4.0)
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_the_certificate() {
    let pki = Pki::new();
    let mut secret = SecretDir::empty();
    let server = start(settings(&secret.cert(), &secret.key())).await;
    let (status, body) = get(server.admin_addr, "/livez").await.expect("livez");
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    let (status, body) = get(server.admin_addr, "/readyz").await.expect("readyz");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("certificate"), "{body}");
    let (_, m) = get(server.admin_addr, "/metrics").await.expect("metrics");
    assert_eq!(metric(&m, "kfp_mesh_webhook_ready "), Some(0.0));
    // No certificate: handshakes fail, nothing is served.
    let tls = client_config(&pki.ca_der()).expect("client config");
    assert!(
        Conn::connect(server.addr, SERVER_NAME, tls.clone())
            .await
            .is_err()
    );

    // cert-manager issues the Secret; the kubelet populates the volume.
    let leaf = pki.leaf();
    secret.update(&leaf);
    std::os::unix::fs::symlink("..data/tls.crt", secret.cert()).expect("symlink");
    std::os::unix::fs::symlink("..data/tls.key", secret.key()).expect("symlink");
    let admin = server.admin_addr;
    eventually(10, "ready", || async move {
        let (s, _) = get(admin, "/readyz").await.ok()?;
        (s == StatusCode::OK).then_some(())
    })
    .await;
    let conn = Conn::connect(server.addr, SERVER_NAME, tls)
        .await
        .expect("connect");
    assert_eq!(conn.server_cert, leaf.der);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_during_a_stream_of_requests_drops_nothing() {
    let pki = Pki::new();
    let first = pki.leaf();
    let second = pki.leaf();
    let third = pki.leaf();
    let mut secret = SecretDir::new(&first);
    let server = Arc::new(start(settings(&secret.cert(), &secret.key())).await);
    let tls = client_config(&pki.ca_der()).expect("client config");
    let body = workflow_review("rot", submitted_workflow("kfp-master-hello_world.yaml"));

    let ok = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (tls, body, ok, stopped, addr) = (
            tls.clone(),
            body.clone(),
            ok.clone(),
            stopped.clone(),
            server.addr,
        );
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            // Bounded: at most 20,000 requests per client.
            for i in 0..20_000u32 {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                // Half the clients reconnect every 5 requests (new handshakes see new
                // certificates); the others keep one long-lived connection.
                let mut conn = Conn::connect(addr, SERVER_NAME, tls.clone())
                    .await
                    .expect("connect never fails");
                if !seen.contains(&conn.server_cert) {
                    seen.push(conn.server_cert.clone());
                }
                let per_conn = if c % 2 == 0 { 5 } else { 1_000 };
                for _ in 0..per_conn {
                    let (status, resp) = conn
                        .post("/mutate/workflows", body.clone())
                        .await
                        .expect("request never fails");
                    assert_eq!(status, StatusCode::OK);
                    let (r, patch) = decode(&resp);
                    assert!(r["allowed"] == true && patch.is_some());
                    ok.fetch_add(1, Ordering::Relaxed);
                    if stopped.load(Ordering::Relaxed) {
                        break;
                    }
                }
                let _ = i;
            }
            seen
        }));
    }
    let count = ok.clone();
    eventually(20, "traffic flowing", || {
        let count = count.clone();
        async move { (count.load(Ordering::Relaxed) > 200).then_some(()) }
    })
    .await;

    // Rotation 1: atomic Secret-volume swap.
    secret.update(&second);
    let (addr, t) = (server.addr, tls.clone());
    let sd = second.der.clone();
    eventually(20, "second certificate served", || {
        let (t, sd) = (t.clone(), sd.clone());
        async move {
            let c = Conn::connect(addr, SERVER_NAME, t).await.ok()?;
            (c.server_cert == sd).then_some(())
        }
    })
    .await;

    // Rotation 2, written non-atomically into plain files: the new certificate first, with
    // the old key (a mismatched pair is refused and the old pair kept), then the new key.
    let plain_cert = secret.dir.path().join("plain.crt");
    let plain_key = secret.dir.path().join("plain.key");
    let _ = (plain_cert, plain_key);
    std::fs::remove_file(secret.cert()).expect("rm");
    std::fs::write(secret.cert(), &third.cert_pem).expect("write cert");
    let before = ok.load(Ordering::Relaxed);
    eventually(
        20,
        "requests continue during a half-written rotation",
        || {
            let ok = ok.clone();
            async move { (ok.load(Ordering::Relaxed) > before + 200).then_some(()) }
        },
    )
    .await;
    let (_, m) = get(server.admin_addr, "/metrics").await.expect("metrics");
    assert!(
        metric(
            &m,
            r#"kfp_mesh_webhook_certificate_reloads_total{result="error"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    let c = Conn::connect(server.addr, SERVER_NAME, tls.clone())
        .await
        .expect("connect");
    let which = |d: &[u8]| {
        [&first.der, &second.der, &third.der]
            .iter()
            .position(|x| x.as_slice() == d)
    };
    assert_eq!(
        which(&c.server_cert),
        Some(1),
        "a mismatched pair is not served"
    );
    std::fs::remove_file(secret.key()).expect("rm");
    std::fs::write(secret.key(), &third.key_pem).expect("write key");
    let (t, td) = (tls.clone(), third.der.clone());
    eventually(20, "third certificate served", || {
        let (t, td) = (t.clone(), td.clone());
        async move {
            let c = Conn::connect(addr, SERVER_NAME, t).await.ok()?;
            (c.server_cert == td).then_some(())
        }
    })
    .await;
    let before = ok.load(Ordering::Relaxed);
    eventually(20, "more requests after the rotation", || {
        let ok = ok.clone();
        async move { (ok.load(Ordering::Relaxed) > before + 200).then_some(()) }
    })
    .await;

    stopped.store(true, Ordering::Relaxed);
    stop.notify_waiters();
    let mut all_seen = Vec::new();
    for c in clients {
        // A client that failed a request panicked: the join error fails the test.
        all_seen.extend(c.await.expect("client saw no failure"));
    }
    assert!(
        all_seen.contains(&first.der)
            && all_seen.contains(&second.der)
            && all_seen.contains(&third.der)
    );
    let (_, m) = get(server.admin_addr, "/metrics").await.expect("metrics");
    let served = metric(
        &m,
        r#"kfp_mesh_webhook_requests_total{path="/mutate/workflows",result="patched"}"#,
    )
    .unwrap_or(0.0);
    assert_eq!(
        served as usize,
        ok.load(Ordering::Relaxed),
        "every request answered"
    );
    assert_eq!(
        metric(
            &m,
            r#"kfp_mesh_webhook_certificate_reloads_total{result="success"}"#
        ),
        Some(3.0)
    );
    match Arc::try_unwrap(server) {
        Ok(s) => s.shutdown().await.expect("shutdown"),
        Err(_) => panic!("server still shared"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_reload_good_and_bad() {
    let pki = Pki::new();
    let secret = SecretDir::new(&pki.leaf());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "labels:\n  team: a\n").expect("write");
    let mut s = settings(&secret.cert(), &secret.key());
    s.config_file = Some(config.clone());
    let server = start(s).await;
    let tls = client_config(&pki.ca_der()).expect("client config");
    let addr = server.addr;
    let team = move || {
        let tls = tls.clone();
        async move {
            let mut conn = Conn::connect(addr, SERVER_NAME, tls)
                .await
                .expect("connect");
            let wf = submitted_workflow("kfp-2.5.0-hello_world.yaml");
            let (_, body) = conn
                .post("/mutate/workflows", workflow_review("c", wf.clone()))
                .await
                .expect("post");
            let (_, patch) = decode(&body);
            let mut patched = wf;
            json_patch::patch(&mut patched, &patch.expect("patch")).expect("applies");
            patched["spec"]["templates"][0]["metadata"]["labels"]["team"]
                .as_str()
                .map(str::to_string)
        }
    };
    assert_eq!(team().await.as_deref(), Some("a"));

    std::fs::write(&config, "labels:\n  team: b\n").expect("write");
    let t = team.clone();
    eventually(10, "new configuration in force", || {
        let t = t.clone();
        async move { (t().await.as_deref() == Some("b")).then_some(()) }
    })
    .await;

    // A bad file is refused: the old configuration stays, an error metric is raised.
    std::fs::write(&config, "labels:\n  team: \"not a valid label value!\"\n").expect("write");
    let admin = server.admin_addr;
    let m = eventually(10, "refusal recorded", || async move {
        let (_, m) = get(admin, "/metrics").await.ok()?;
        (metric(
            &m,
            r#"kfp_mesh_webhook_config_reloads_total{result="error"}"#,
        ) == Some(1.0))
        .then_some(m)
    })
    .await;
    assert_eq!(
        metric(&m, "kfp_mesh_webhook_config_last_reload_success "),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"kfp_mesh_webhook_config_reloads_total{result="success"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(&m, r#"kfp_mesh_webhook_errors_total{kind="config_reload"}"#),
        Some(1.0)
    );
    assert_eq!(team().await.as_deref(), Some("b"));
    let (status, _) = get(admin, "/readyz").await.expect("readyz");
    assert_eq!(
        status,
        StatusCode::OK,
        "a refused reload does not make the server unready"
    );
    // A deleted file is refused the same way.
    std::fs::remove_file(&config).expect("rm");
    eventually(10, "missing file refused", || async move {
        let (_, m) = get(admin, "/metrics").await.ok()?;
        (metric(
            &m,
            r#"kfp_mesh_webhook_config_reloads_total{result="error"}"#,
        ) == Some(2.0))
        .then_some(())
    })
    .await;
    assert_eq!(team().await.as_deref(), Some("b"));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configuration_at_start_is_an_error_naming_the_key() {
    let pki = Pki::new();
    let secret = SecretDir::new(&pki.leaf());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "resources:\n  requests:\n    memory: 2Gi\n  limits:\n    memory: 1Gi\n",
    )
    .expect("write");
    let mut s = settings(&secret.cert(), &secret.key());
    s.config_file = Some(config);
    let err = match kfp_mesh_webhook::start(s).await {
        Ok(_) => panic!("an invalid configuration must not start"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("resources.requests.memory") && err.contains("above the limit"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_reviews() {
    let pki = Pki::new();
    let secret = SecretDir::new(&pki.leaf());
    let mut s = settings(&secret.cert(), &secret.key());
    s.shutdown_delay = Duration::from_millis(300);
    let server = start(s).await;
    let (addr, admin) = (server.addr, server.admin_addr);
    let tls = client_config(&pki.ca_der()).expect("client config");

    // A review whose body is still arriving when shutdown starts.
    let body = workflow_review(
        "in-flight",
        submitted_workflow("kfp-2.5.0-hello_world.yaml"),
    );
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).expect("name");
    let mut stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .expect("tls");
    let head = format!(
        "POST /mutate/workflows HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let half = body.len() / 2;
    stream.write_all(&body[..half]).await.expect("write");
    stream.flush().await.expect("flush");

    let shutdown = tokio::spawn(server.shutdown());
    // During the delay: not ready, still serving new connections.
    eventually(5, "not ready while draining", || async move {
        let (s, b) = get(admin, "/readyz").await.ok()?;
        (s == StatusCode::SERVICE_UNAVAILABLE && b.contains("shutting down")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown waits for the in-flight review"
    );

    stream.write_all(&body[half..]).await.expect("write rest");
    stream.flush().await.expect("flush");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(r#""uid":"in-flight""#) && text.contains("JSONPatch"));

    shutdown.await.expect("join").expect("shutdown");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}
