//! Worlds whose probes go through a waypoint: the caller's side of the hop (standing in for its
//! ztunnel: mTLS with the caller's own certificate), the waypoint's L7 filter chain, and the
//! echo application behind it. Running one
//!
//! 1. predicts every probe with `connection::evaluate` and checks that the engine sends it
//!    through the waypoint (a probe that does not pass a waypoint is a harness error);
//! 2. lowers one waypoint Envoy per Service ([`waypoint::lower_waypoint`]) and one tunnel Envoy
//!    per caller ([`waypoint::lower_client_tunnel`]);
//! 3. sends each probe through the caller's tunnel and classifies what came back;
//! 4. reports prediction vs observation, with the engine's explanation and the Envoy logs when
//!    they differ.
//!
//! After the waypoint the engine also decides the destination ztunnel's L4 hop (which sees the
//! waypoint's identity). ztunnel is not an Envoy: the waypoint forwards straight to the echo.
//! A world's L4 policies must admit the waypoint, so that hop allows and the waypoint's decision
//! is the whole outcome; the prediction says so or the probe disagrees.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use kfp_mesh_core::connection::{
    self, Caller, Outcome, RequestProtocol, RequestSpec, Target, Transport, resolve_service,
    resolve_workload,
};
use kfp_mesh_core::inventory::Inventory;
use kfp_mesh_core::mesh::authz::Chain;
use kfp_mesh_core::object::Object;
use kfp_mesh_envoy::waypoint::{self, TunnelParams, TunnelTarget, WaypointParams};
use serde_json::Value;
use tokio::net::TcpStream;

use super::apps::{self, ECHO_MARK};
use super::pki::Pki;
use super::proxy::{self, Envoy, envoy_binary};
use super::world::{Probe, ProbeResult, Report, Req, Seen, fresh_ip, probe};

pub struct WaypointWorld {
    pub name: String,
    pub objects: Vec<Object>,
    pub probes: Vec<Probe>,
}

impl WaypointWorld {
    pub fn new(name: &str, sources: &[(&str, &str)]) -> WaypointWorld {
        let mut objects = Vec::new();
        for (source, text) in sources {
            let (o, errors) = kfp_mesh_core::inventory::parse_stream(source, text);
            assert!(errors.is_empty(), "world {name}: input errors: {errors:?}");
            objects.extend(o);
        }
        WaypointWorld {
            name: name.to_string(),
            objects,
            probes: Vec::new(),
        }
    }

    pub fn probe(mut self, from: &str, to: &str, req: Req) -> WaypointWorld {
        self.probes.push(probe(from, to, req));
        self
    }
}

pub async fn check(world: WaypointWorld) -> Report {
    let report = run(world).await.expect("the waypoint world runs");
    report.assert_agrees();
    report
}

struct Planned<'a> {
    probe: &'a Probe,
    client: &'a kfp_mesh_core::inventory::Workload,
    service: &'a kfp_mesh_core::inventory::Service,
    target_port: u16,
    predicted: Seen,
    explanation: String,
}

fn key(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

pub async fn run(world: WaypointWorld) -> anyhow::Result<Report> {
    let started = Instant::now();
    let inv = Inventory::from_objects(world.objects.clone(), Vec::new());
    anyhow::ensure!(
        inv.errors.is_empty(),
        "world {}: inventory errors: {:?}",
        world.name,
        inv.errors
    );
    let apps = apps::apps();
    let bin = envoy_binary();
    let dir = tempfile::Builder::new()
        .prefix("kfp-mesh-waypoint-")
        .tempdir()
        .context("tempdir")?;
    let pki = Pki::new(dir.path());

    // 1. Predictions; every probe must pass a waypoint.
    let mut planned = Vec::new();
    for p in &world.probes {
        let client = resolve_workload(&inv, &p.from.0, &p.from.1)?;
        let service = resolve_service(&inv, &p.to.0, &p.to.1)?;
        let sp = service
            .spec
            .ports
            .iter()
            .find(|sp| sp.port == i64::from(p.to.2))
            .ok_or_else(|| anyhow!("{}: no such service port", p.name()))?;
        let endpoints = inv.service_endpoints(service);
        let [server] = endpoints.as_slice() else {
            anyhow::bail!(
                "{}: one endpoint per Service, found {}",
                p.name(),
                endpoints.len()
            );
        };
        let target_port = server
            .target_port(sp)
            .ok_or_else(|| anyhow!("{}: targetPort does not resolve", p.name()))?;
        let request = match &p.req {
            Req::Tcp => RequestSpec {
                protocol: Some(RequestProtocol::Tcp),
                ..RequestSpec::default()
            },
            Req::Connect | Req::Tls => anyhow::bail!(
                "{}: connect-only and application-TLS probes are not run through a waypoint here",
                p.name()
            ),
            Req::Http {
                method,
                path,
                headers,
            } => RequestSpec {
                protocol: Some(RequestProtocol::Http),
                method: Some(method.clone()),
                path: Some(path.clone()),
                headers: headers.iter().cloned().collect(),
                ..RequestSpec::default()
            },
        };
        let verdict = connection::evaluate(
            &inv,
            Caller::Workload(client),
            Target::Service {
                service,
                port: p.to.2,
            },
            &request,
        )?;
        let explanation = verdict
            .explanation
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        anyhow::ensure!(
            verdict
                .explanation
                .iter()
                .any(|s| s.rule == "A6.4" && s.message.contains("goes through waypoint")),
            "{}: the engine does not send this probe through a waypoint:\n{explanation}",
            p.name()
        );
        planned.push(Planned {
            probe: p,
            client,
            service,
            target_port,
            predicted: Seen {
                outcome: Some(verdict.outcome),
                transport: verdict.transport,
                probe: None,
            },
            explanation,
        });
    }

    // 2. One waypoint Envoy per Service, with the container ports its probes reach.
    let mut by_service: BTreeMap<String, (&Planned<'_>, Vec<u16>)> = BTreeMap::new();
    for p in &planned {
        let k = format!("{}/{}", p.service.namespace(), p.service.name());
        let e = by_service.entry(k).or_insert_with(|| (p, Vec::new()));
        if !e.1.contains(&p.target_port) {
            e.1.push(p.target_port);
        }
    }
    let mut envoys: Vec<Envoy> = Vec::new();
    let mut lowering = String::new();
    let mut waypoint_at: BTreeMap<(String, u16), (SocketAddr, String)> = BTreeMap::new();
    for (svc, (p, ports)) in &by_service {
        let endpoint = inv
            .service_endpoints(p.service)
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("{svc}: no endpoint"))?;
        let ip = fresh_ip();
        let name = format!("waypoint-{}", key(svc));
        let access = proxy::access_log_path(dir.path(), &name);
        let wp = kfp_mesh_core::mesh::waypoint::service_waypoint(&inv, p.service)
            .ok_or_else(|| anyhow!("{svc}: no waypoint"))?;
        let identity = pki.identity(&wp.principal(&inv));
        let lowered = waypoint::lower_waypoint(&WaypointParams {
            inventory: &inv,
            service: p.service,
            endpoint,
            ports,
            listen_ip: ip,
            identity: &identity,
            trusted_ca: &pki.ca_file,
            http_app: apps.http,
            tcp_app: apps.tcp_plain,
            access_log: Some(&access),
        })?;
        for wport in &lowered.ports {
            let _ = writeln!(
                lowering,
                "{name} ({}, {}) port {} {:?}: {}",
                lowered.waypoint,
                lowered.principal,
                wport.port,
                wport.chain,
                wport.notes.join("; ")
            );
            waypoint_at.insert(
                (svc.clone(), wport.port),
                (SocketAddr::new(ip, wport.port), lowered.principal.clone()),
            );
        }
        let e = proxy::spawn(&bin, dir.path(), &name, &lowered.bootstrap)?
            .ready(Duration::from_secs(30))
            .await?;
        envoys.push(e);
    }

    // 3. One tunnel Envoy per caller, one listener per (Service, port).
    let mut by_client: BTreeMap<String, (&Planned<'_>, Vec<TunnelTarget>)> = BTreeMap::new();
    for p in &planned {
        let svc = format!("{}/{}", p.service.namespace(), p.service.name());
        let (addr, principal) = waypoint_at
            .get(&(svc.clone(), p.target_port))
            .cloned()
            .ok_or_else(|| anyhow!("{svc}:{}: no waypoint listener", p.target_port))?;
        let ck = format!("{}/{}", p.client.namespace, p.client.name);
        let e = by_client.entry(ck).or_insert_with(|| (p, Vec::new()));
        let name = key(&format!("{svc}-{}", p.target_port));
        if !e.1.iter().any(|t| t.name == name) {
            e.1.push(TunnelTarget {
                name,
                waypoint_address: addr,
                waypoint_principal: principal,
            });
        }
    }
    let mut entries: BTreeMap<(String, String), SocketAddr> = BTreeMap::new();
    for (client, (p, targets)) in &by_client {
        let name = format!("ztunnel-{}", key(client));
        let identity = pki.identity(&connection::principal_of(&inv, p.client));
        let access = proxy::access_log_path(dir.path(), &name);
        let bootstrap = waypoint::lower_client_tunnel(&TunnelParams {
            inventory: &inv,
            client: p.client,
            targets,
            identity: &identity,
            trusted_ca: &pki.ca_file,
            access_log: Some(&access),
        })?;
        let e = proxy::spawn(&bin, dir.path(), &name, &bootstrap)?
            .ready(Duration::from_secs(30))
            .await?;
        for (l, addr) in e.listeners().await? {
            if let Some(t) = l.strip_prefix("tunnel_") {
                entries.insert((client.clone(), t.to_string()), addr);
            }
        }
        envoys.push(e);
    }

    // 4. Probes, one at a time.
    let mut results = Vec::new();
    for p in &planned {
        let svc = format!("{}/{}", p.service.namespace(), p.service.name());
        let client = format!("{}/{}", p.client.namespace, p.client.name);
        let entry = entries
            .get(&(client, key(&format!("{svc}-{}", p.target_port))))
            .copied()
            .ok_or_else(|| anyhow!("{}: no tunnel listener", p.probe.name()))?;
        let (observed, evidence) = send(p, entry).await;
        results.push(ProbeResult {
            name: p.probe.name(),
            predicted: p.predicted.clone(),
            observed,
            evidence,
            explanation: p.explanation.clone(),
            lowering: lowering.clone(),
            envoys: envoys.iter().map(|e| e.name.clone()).collect(),
        });
    }
    let logs = envoys.iter().map(|e| (e.name.clone(), e.logs())).collect();
    drop(envoys);
    dir.close().context("remove the world's tempdir")?;
    Ok(Report {
        world: world.name,
        results,
        logs,
        elapsed: started.elapsed(),
    })
}

fn xfcc_uri(body: &Value) -> Option<String> {
    let xfcc = body["headers"]["x-forwarded-client-cert"].as_str()?;
    xfcc.split(';')
        .find_map(|part| part.strip_prefix("URI="))
        .map(str::to_string)
}

/// Send one probe and classify: HTTP 200 from the echo is `allow` (mTLS when the waypoint
/// forwarded the caller's identity), HTTP 403 `RBAC: access denied` (gRPC: status 7) is
/// `deny`; anything else is unclassified.
async fn send(p: &Planned<'_>, entry: SocketAddr) -> (Seen, String) {
    let none = |why: String| {
        (
            Seen {
                outcome: None,
                transport: None,
                probe: None,
            },
            why,
        )
    };
    let Req::Http {
        method,
        path,
        headers,
    } = &p.probe.req
    else {
        return none("the waypoint harness sends HTTP probes only".to_string());
    };
    let host = format!(
        "{}.{}.svc.cluster.local:{}",
        p.service.name(),
        p.service.namespace(),
        p.probe.to.2
    );
    let fut = async {
        let stream = TcpStream::connect(entry)
            .await
            .map_err(|e| format!("connect {entry}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let mut b = Request::builder()
            .method(method.as_str())
            .uri(path.as_str())
            .header("host", host.as_str());
        for (k, v) in headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let body = if method == "GET" {
            Bytes::new()
        } else {
            Bytes::from_static(b"probe-body")
        };
        let req = b
            .body(Full::new(body))
            .map_err(|e| format!("bad request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("no HTTP response: {e}"))?;
        let status = resp.status().as_u16();
        let hdrs: BTreeMap<String, String> = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_else(|e| format!("<body error: {e}>"));
        Ok::<_, String>((status, hdrs, body))
    };
    let (status, hdrs, body) = match tokio::time::timeout(Duration::from_secs(8), fut).await {
        Err(_) => return none("timeout after 8s".to_string()),
        Ok(Err(e)) => return none(e),
        Ok(Ok(x)) => x,
    };
    let seen = |o: Outcome, t: Option<Transport>| Seen {
        outcome: Some(o),
        transport: t,
        probe: None,
    };
    let short: String = body.chars().take(200).collect();
    let grpc = hdrs.get("grpc-status").map(String::as_str);
    let grpc_message = hdrs.get("grpc-message").cloned().unwrap_or_default();
    if status == 200 && grpc.is_none() {
        let Ok(v) = serde_json::from_str::<Value>(&body) else {
            return none(format!("HTTP 200 that is not the echo: {short:?}"));
        };
        if v["app"] != ECHO_MARK {
            return none(format!("HTTP 200 that is not the echo: {short:?}"));
        }
        return match xfcc_uri(&v) {
            Some(uri) => (
                seen(Outcome::Allow, Some(Transport::Mtls)),
                format!("HTTP 200 from the echo, caller {uri}"),
            ),
            None => (
                seen(Outcome::Allow, Some(Transport::Plaintext)),
                "HTTP 200 from the echo without a caller identity".to_string(),
            ),
        };
    }
    let rbac = status == 403 && body.trim() == "RBAC: access denied"
        || grpc == Some("7") && grpc_message.contains("RBAC");
    if rbac {
        return (
            seen(Outcome::Deny, None),
            format!("HTTP {status} {short:?} grpc-status={grpc:?} {grpc_message}"),
        );
    }
    none(format!(
        "unexpected response: HTTP {status} {short:?} grpc-status={grpc:?} {grpc_message}"
    ))
}

/// The chain a probe's port uses at the waypoint, for tests that want to say so.
pub fn chain_of(inv: &Inventory, service: &str, port: u16) -> Option<Chain> {
    let (ns, name) = service.split_once('/')?;
    let svc = inv.service(ns, name)?;
    let sp = svc.spec.ports.iter().find(|p| p.port == i64::from(port))?;
    let w = inv.service_endpoints(svc).into_iter().next()?;
    let tp = w.target_port(sp)?;
    Some(waypoint::waypoint_chain(inv, w, tp).0)
}
