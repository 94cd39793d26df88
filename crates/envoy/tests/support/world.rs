//! A "world": a small manifest (an inventory) and the probes to send in it. Running a world
//!
//! 1. predicts every probe with `connection::evaluate` on the inventory;
//! 2. lowers every server workload with a sidecar ([`inbound::lower_inbound`], one Envoy per
//!    workload, on its own loopback address as its "pod IP", listeners on the real container
//!    ports) and every client workload with a sidecar ([`outbound::lower_outbound`], one Envoy
//!    per workload with one outbound listener per destination);
//! 3. sends each probe, one at a time, from the client's sidecar listener (or straight to the
//!    server when the client has no sidecar), and classifies what came back;
//! 4. reports prediction vs observation for every probe, with the engine's explanation, the
//!    lowering notes and the Envoy logs when they differ.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use kfp_mesh_core::connection::{
    self, Caller, Outcome, ProbeOutcome, RequestProtocol, RequestSpec, Target, Transport,
    resolve_service, resolve_workload,
};
use kfp_mesh_core::inventory::{Inventory, Workload};
use kfp_mesh_core::mesh::authz::Chain;
use kfp_mesh_core::mesh::client_tls::Destination;
use kfp_mesh_core::mesh::membership::{self, DataPlane};
use kfp_mesh_core::mesh::protocol::PortProtocol;
use kfp_mesh_core::mesh::protocol::service_port_protocol;
use kfp_mesh_core::object::Object;
use kfp_mesh_envoy::inbound::{self, InboundParams};
use kfp_mesh_envoy::outbound::{self, OutboundParams, OutboundTarget};
use kfp_mesh_envoy::request_chain;
use rustls_pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::apps::{self, ECHO_MARK, TAG_PLAIN, TAG_TLS};
use super::pki::Pki;
use super::proxy::{self, Envoy, envoy_binary};

/// What the client application sends.
#[derive(Clone, Debug)]
pub enum Req {
    Http {
        method: String,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp,
    /// The application speaks TLS itself (`RequestSpec::app_tls`): a TLS handshake with the
    /// Service's host name as SNI, trusting only the application CA, then the TCP payload
    /// inside TLS, echoed by the server application.
    Tls,
    /// Open a TCP connection and close it without sending anything (`nc -z`).
    Connect,
}

impl Req {
    pub fn get(path: &str) -> Req {
        Req::http("GET", path, &[])
    }
    pub fn http(method: &str, path: &str, headers: &[(&str, &str)]) -> Req {
        Req::Http {
            method: method.to_string(),
            path: path.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
    fn describe(&self) -> String {
        match self {
            Req::Tcp => "TCP".to_string(),
            Req::Tls => "TLS by the application".to_string(),
            Req::Connect => "connect-only (nc -z)".to_string(),
            Req::Http {
                method,
                path,
                headers,
            } => {
                let mut s = format!("HTTP {method} {path}");
                for (k, v) in headers {
                    let _ = write!(s, " [{k}: {v}]");
                }
                s
            }
        }
    }
}

/// One connection to make: from a workload (`ns/name`) to a Service port (`ns/name:port`),
/// or to the pod IP of a workload and one of its container ports.
#[derive(Clone, Debug)]
pub struct Probe {
    pub from: (String, String),
    pub to: (String, String, u16),
    /// `to` is a workload's pod IP and container port, not a Service port.
    pub pod_ip: bool,
    pub req: Req,
}

impl Probe {
    pub fn name(&self) -> String {
        format!(
            "{}/{} -> {}{}/{}:{} {}",
            self.from.0,
            self.from.1,
            if self.pod_ip { "pod IP of " } else { "" },
            self.to.0,
            self.to.1,
            self.to.2,
            self.req.describe()
        )
    }
}

/// `probe_pod("ns/client", "ns/workload:container-port", req)`: to the pod IP.
pub fn probe_pod(from: &str, to: &str, req: Req) -> Probe {
    Probe {
        pod_ip: true,
        ..probe(from, to, req)
    }
}

/// `probe("ns/client", "ns/service:port", req)`.
pub fn probe(from: &str, to: &str, req: Req) -> Probe {
    let (fns, fname) = from.split_once('/').expect("from is ns/name");
    let (svc, port) = to.rsplit_once(':').expect("to is ns/name:port");
    let (tns, tname) = svc.split_once('/').expect("to is ns/name:port");
    Probe {
        from: (fns.to_string(), fname.to_string()),
        to: (
            tns.to_string(),
            tname.to_string(),
            port.parse().expect("port number"),
        ),
        pod_ip: false,
        req,
    }
}

pub struct World {
    pub name: String,
    pub objects: Vec<Object>,
    pub probes: Vec<Probe>,
    /// Client workloads (`ns/name`) whose sidecar presents a certificate from a CA the mesh
    /// does not trust (claiming the workload's own identity). The engine cannot know this, so
    /// such probes are for checking the harness, not the engine.
    pub rogue_clients: Vec<String>,
}

impl World {
    /// A world from YAML/JSON texts.
    pub fn new(name: &str, sources: &[(&str, &str)]) -> World {
        let mut objects = Vec::new();
        for (source, text) in sources {
            let (o, errors) = kfp_mesh_core::inventory::parse_stream(source, text);
            assert!(errors.is_empty(), "world {name}: input errors: {errors:?}");
            objects.extend(o);
        }
        World {
            name: name.to_string(),
            objects,
            probes: Vec::new(),
            rogue_clients: Vec::new(),
        }
    }

    /// Drop an object of the input (e.g. to replace an upstream policy).
    pub fn without(mut self, kind: &str, namespace: &str, name: &str) -> World {
        let before = self.objects.len();
        self.objects.retain(|o| {
            !(o.kind == kind
                && o.meta.name == name
                && o.meta.namespace.as_deref() == Some(namespace))
        });
        assert_eq!(
            before,
            self.objects.len() + 1,
            "world {}: expected exactly one {kind} {namespace}/{name} to remove",
            self.name
        );
        self
    }

    /// Keep only the objects of `kind` from the source `source` (e.g. Namespaces of a render
    /// that also carries NetworkPolicies the harness does not emulate).
    pub fn only_kind_from(mut self, source: &str, kind: &str) -> World {
        self.objects
            .retain(|o| &*o.origin.source != source || o.kind == kind);
        self
    }

    /// Add the objects of one more YAML/JSON text.
    pub fn with_source(mut self, source: &str, text: &str) -> World {
        let (o, errors) = kfp_mesh_core::inventory::parse_stream(source, text);
        assert!(
            errors.is_empty(),
            "world {}: input errors: {errors:?}",
            self.name
        );
        self.objects.extend(o);
        self
    }

    pub fn rogue_client(mut self, workload: &str) -> World {
        self.rogue_clients.push(workload.to_string());
        self
    }

    pub fn probe(mut self, from: &str, to: &str, req: Req) -> World {
        self.probes.push(probe(from, to, req));
        self
    }

    /// A probe to the pod IP of workload `ns/name` on a container port (`ns/name:port`).
    pub fn probe_pod(mut self, from: &str, to: &str, req: Req) -> World {
        self.probes.push(probe_pod(from, to, req));
        self
    }

    pub fn probes(mut self, probes: impl IntoIterator<Item = Probe>) -> World {
        self.probes.extend(probes);
        self
    }
}

/// What a probe was predicted to do, or observed doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub outcome: Option<Outcome>,
    /// Compared only when both sides say `allow`.
    pub transport: Option<Transport>,
    /// For a connect-only probe: whether the TCP handshake completed (the outcome is then
    /// `None` on both sides: no request is sent).
    pub probe: Option<ProbeOutcome>,
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = self.probe {
            return write!(f, "probe {}", p.as_str());
        }
        match self.outcome {
            None => f.write_str("unclassified")?,
            Some(o) => f.write_str(o.as_str())?,
        }
        if self.outcome == Some(Outcome::Allow) {
            match self.transport {
                Some(Transport::Mtls) => f.write_str(" (mtls)")?,
                Some(Transport::Plaintext) => f.write_str(" (plaintext)")?,
                None => {}
            }
        }
        Ok(())
    }
}

pub struct ProbeResult {
    pub name: String,
    pub predicted: Seen,
    pub observed: Seen,
    /// What came back, in words (status, body, bytes, counters).
    pub evidence: String,
    pub explanation: String,
    pub lowering: String,
    pub envoys: Vec<String>,
}

impl ProbeResult {
    pub fn agrees(&self) -> bool {
        self.predicted.outcome == self.observed.outcome
            && self.predicted.probe == self.observed.probe
            && (self.predicted.outcome.is_some() || self.predicted.probe.is_some())
            && (self.predicted.outcome != Some(Outcome::Allow)
                || self.predicted.transport == self.observed.transport)
    }
}

pub struct Report {
    pub world: String,
    pub results: Vec<ProbeResult>,
    /// Envoy logs by Envoy name, captured before teardown.
    pub logs: BTreeMap<String, String>,
    pub elapsed: Duration,
}

impl Report {
    /// For tests of the report itself: pretend the engine predicted `outcome` for probe `i`.
    pub fn flip_prediction(&mut self, i: usize, outcome: Outcome) {
        self.results[i].predicted.outcome = Some(outcome);
    }

    /// The readable diff of every disagreeing probe, with the Envoy logs of the Envoys they
    /// went through; `None` when prediction == observation everywhere.
    pub fn diff(&self) -> Option<String> {
        let bad: Vec<&ProbeResult> = self.results.iter().filter(|r| !r.agrees()).collect();
        if bad.is_empty() {
            return None;
        }
        let mut s = format!(
            "envoy world `{}`: prediction != observation for {} of {} probes\n",
            self.world,
            bad.len(),
            self.results.len()
        );
        let mut envoys = BTreeSet::new();
        for r in &bad {
            let _ = writeln!(s, "\n✗ {}", r.name);
            let _ = writeln!(s, "    predicted (kfp-mesh): {}", r.predicted);
            let _ = writeln!(s, "    observed  (Envoy)   : {}", r.observed);
            let _ = writeln!(s, "    evidence: {}", r.evidence);
            let _ = writeln!(s, "    engine explanation:");
            for l in r.explanation.lines() {
                let _ = writeln!(s, "      {l}");
            }
            let _ = writeln!(s, "    lowering:");
            for l in r.lowering.lines() {
                let _ = writeln!(s, "      {l}");
            }
            envoys.extend(r.envoys.iter().cloned());
        }
        let _ = writeln!(s, "\n===== Envoy logs of the proxies involved =====");
        for e in envoys {
            if let Some(l) = self.logs.get(&e) {
                let _ = writeln!(s, "{l}\n");
            }
        }
        Some(s)
    }

    /// The summary table (one line per probe).
    pub fn table(&self) -> String {
        let mut s = format!(
            "envoy world `{}`: {} probes in {:.2}s\n",
            self.world,
            self.results.len(),
            self.elapsed.as_secs_f64()
        );
        for r in &self.results {
            let _ = writeln!(
                s,
                "  {} {:<90} predicted {:<22} observed {}",
                if r.agrees() { "✓" } else { "✗" },
                r.name,
                r.predicted.to_string(),
                r.observed
            );
        }
        s
    }

    /// Panic with the diff when any probe disagrees.
    pub fn assert_agrees(&self) {
        println!("{}", self.table());
        if let Some(d) = self.diff() {
            panic!("{d}");
        }
    }
}

/// Run a world and assert prediction == observation for every probe.
pub async fn check(world: World) -> Report {
    let report = run(world).await.expect("the world runs");
    report.assert_agrees();
    report
}

struct Planned<'a> {
    probe: &'a Probe,
    client: &'a Workload,
    client_dp: DataPlane,
    server: &'a Workload,
    server_dp: DataPlane,
    /// The Service of the probe (`None` for a pod IP probe).
    service: Option<&'a kfp_mesh_core::inventory::Service>,
    destination: Destination<'a>,
    target_port: u16,
    /// The chain the request lands in at the server (for a server without a sidecar: which
    /// application answers).
    chain: Chain,
    predicted: Seen,
    explanation: String,
}

fn server_key(w: &Workload) -> String {
    format!("server-{}-{}", w.namespace, w.name)
}
fn client_key(w: &Workload) -> String {
    format!("client-{}-{}", w.namespace, w.name)
}

static NEXT_IP: AtomicU32 = AtomicU32::new(0);

/// A loopback address no other world of this process uses (a "pod IP"), in 127.64.0.0/10,
/// seeded by the process id so concurrent test processes rarely collide; a collision shows as
/// a bind failure and is retried with the next address.
pub fn fresh_ip() -> IpAddr {
    let n = NEXT_IP.fetch_add(1, Ordering::Relaxed);
    let seed = std::process::id().wrapping_mul(2_654_435_761);
    let v = seed.wrapping_add(n.wrapping_mul(7919)) % (1 << 22);
    let [_, b, c, d] = (0x4040_0000u32 | v).to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(127, b | 0x40, c, d.max(1)))
}

pub async fn run(world: World) -> anyhow::Result<Report> {
    let started = Instant::now();
    let inv = Inventory::from_objects(world.objects.clone(), Vec::new());
    assert!(
        inv.errors.is_empty(),
        "world {}: inventory errors: {:?}",
        world.name,
        inv.errors
    );
    let apps = apps::apps();
    let bin = envoy_binary();
    let dir = tempfile::Builder::new()
        .prefix("kfp-mesh-envoy-")
        .tempdir()
        .context("tempdir")?;
    let pki = Pki::new(dir.path());

    // 1. Predictions.
    let mut planned = Vec::new();
    for p in &world.probes {
        let client = resolve_workload(&inv, &p.from.0, &p.from.1)?;
        let http_request = matches!(p.req, Req::Http { .. });
        let (service, server, target_port, destination, port_protocol) = if p.pod_ip {
            let server = resolve_workload(&inv, &p.to.0, &p.to.1)?;
            (None, server, p.to.2, Destination::PodIp, PortProtocol::Auto)
        } else {
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
                    "{}: the harness needs exactly one endpoint per Service, found {}",
                    p.name(),
                    endpoints.len()
                );
            };
            let target_port = server
                .target_port(sp)
                .ok_or_else(|| anyhow!("{}: targetPort does not resolve", p.name()))?;
            (
                Some(service),
                *server,
                target_port,
                Destination::Service {
                    service,
                    service_port: p.to.2,
                },
                service_port_protocol(sp),
            )
        };
        let request = match &p.req {
            Req::Tcp => RequestSpec {
                protocol: Some(RequestProtocol::Tcp),
                ..RequestSpec::default()
            },
            Req::Tls => RequestSpec {
                protocol: Some(RequestProtocol::Tcp),
                app_tls: true,
                ..RequestSpec::default()
            },
            Req::Connect => RequestSpec {
                protocol: Some(RequestProtocol::Tcp),
                connect_only: true,
                ..RequestSpec::default()
            },
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
        let target = match service {
            Some(service) => Target::Service {
                service,
                port: p.to.2,
            },
            None => Target::Pod {
                workload: server,
                port: target_port,
            },
        };
        let verdict = connection::evaluate(&inv, Caller::Workload(client), target, &request)?;
        anyhow::ensure!(
            verdict.outcome != Outcome::Blocked,
            "{}: kfp-mesh predicts a NetworkPolicy drop; the harness runs on loopback and does not emulate Kubernetes networking, so this probe cannot be observed. Explanation:\n{}",
            p.name(),
            verdict
                .explanation
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
        // The application that serves TLS itself is the (TLS-aware) TCP echo.
        let chain = if matches!(p.req, Req::Tls) {
            Chain::Tcp
        } else {
            request_chain(port_protocol, http_request)
        };
        let predicted = match p.req {
            Req::Connect => Seen {
                outcome: None,
                transport: None,
                probe: verdict.probe.as_ref().map(|pr| pr.result),
            },
            _ => Seen {
                outcome: Some(verdict.outcome),
                transport: verdict.transport,
                probe: None,
            },
        };
        planned.push(Planned {
            probe: p,
            client,
            client_dp: membership::data_plane(&inv, client).value,
            server,
            server_dp: membership::data_plane(&inv, server).value,
            service,
            destination,
            target_port,
            chain,
            predicted,
            explanation: verdict
                .explanation
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        });
    }
    for p in &planned {
        anyhow::ensure!(
            p.client_dp != DataPlane::Ambient && p.server_dp != DataPlane::Ambient,
            "{}: ambient is not lowered",
            p.probe.name()
        );
    }

    // 2. Server sidecars: one Envoy per workload, all container ports its probes reach.
    let mut server_ports: BTreeMap<String, (&Workload, BTreeSet<u16>)> = BTreeMap::new();
    for p in planned.iter().filter(|p| p.server_dp == DataPlane::Sidecar) {
        server_ports
            .entry(server_key(p.server))
            .or_insert_with(|| (p.server, BTreeSet::new()))
            .1
            .insert(p.target_port);
    }
    let mut envoys: BTreeMap<String, Envoy> = BTreeMap::new();
    let mut lowering_notes: BTreeMap<String, String> = BTreeMap::new();
    let mut server_ip: BTreeMap<String, IpAddr> = BTreeMap::new();
    let mut pending = Vec::new();
    for (key, (w, ports)) in &server_ports {
        let ports: Vec<u16> = ports.iter().copied().collect();
        let identity = pki.identity(&connection::principal_of(&inv, w));
        let access = proxy::access_log_path(dir.path(), key);
        let ip = fresh_ip();
        let lowered = inbound::lower_inbound(&InboundParams {
            inventory: &inv,
            workload: w,
            ports: &ports,
            listen_ip: ip,
            identity: &identity,
            trusted_ca: &pki.ca_file,
            http_app: apps.http,
            tcp_app: apps.tcp_plain,
            access_log: Some(&access),
        })?;
        let bootstrap = instrument_tcp_tls_chains(lowered.bootstrap, apps.tcp_tls_terminated);
        let notes = lowered
            .ports
            .iter()
            .map(|p| format!("server {key}: port {}: {}", p.port, p.notes.join("; ")))
            .collect::<Vec<_>>()
            .join("\n");
        lowering_notes.insert(key.clone(), notes);
        server_ip.insert(key.clone(), ip);
        pending.push((
            key.clone(),
            proxy::spawn(&bin, dir.path(), key, &bootstrap)?,
            bootstrap,
        ));
    }
    // All servers boot concurrently; wait for each.
    for (key, starting, mut bootstrap) in pending {
        let mut attempt = starting.ready(Duration::from_secs(30)).await;
        let mut tries = 0;
        while let Err(err) = &attempt
            && proxy::Starting::bind_conflict(&err.to_string())
            && tries < 3
        {
            // Another process holds this loopback address: move to a fresh one.
            tries += 1;
            let ip = fresh_ip();
            rebind(&mut bootstrap, ip);
            server_ip.insert(key.clone(), ip);
            attempt = proxy::spawn(&bin, dir.path(), &key, &bootstrap)?
                .ready(Duration::from_secs(30))
                .await;
        }
        envoys.insert(key, attempt?);
    }

    // 3. Client sidecars: one Envoy per workload, one outbound listener per destination.
    type Routes<'p, 'i> = Vec<(String, &'p Planned<'i>)>;
    let mut client_targets: BTreeMap<String, (&Workload, Routes)> = BTreeMap::new();
    for p in planned.iter().filter(|p| p.client_dp == DataPlane::Sidecar) {
        let route = route_name(p);
        let entry = client_targets
            .entry(client_key(p.client))
            .or_insert_with(|| (p.client, Vec::new()));
        if !entry.1.iter().any(|(r, _)| *r == route) {
            entry.1.push((route, p));
        }
    }
    let mut pending = Vec::new();
    let mut client_listener: BTreeMap<(String, String), String> = BTreeMap::new();
    for (key, (w, routes)) in &client_targets {
        let targets: Vec<OutboundTarget> = routes
            .iter()
            .map(|(route, p)| OutboundTarget {
                name: route.clone(),
                destination: p.destination,
                endpoint: p.server,
                target_port: p.target_port,
                endpoint_address: endpoint_address(p, &server_ip, apps),
            })
            .collect();
        let principal = connection::principal_of(&inv, w);
        let identity = if world
            .rogue_clients
            .contains(&format!("{}/{}", w.namespace, w.name))
        {
            pki.rogue_identity(&principal)
        } else {
            pki.identity(&principal)
        };
        let access = proxy::access_log_path(dir.path(), key);
        let lowered = outbound::lower_outbound(&OutboundParams {
            inventory: &inv,
            client: w,
            targets: &targets,
            identity: &identity,
            trusted_ca: &pki.ca_file,
            source_ip: Some(fresh_ip()),
            access_log: Some(&access),
        })?;
        for r in &lowered.routes {
            client_listener.insert((key.clone(), r.name.clone()), r.listener.clone());
            lowering_notes.insert(
                format!("{key}/{}", r.name),
                format!("client {key}: {}", r.notes.join("\n")),
            );
        }
        pending.push((
            key.clone(),
            proxy::spawn(&bin, dir.path(), key, &lowered.bootstrap)?,
        ));
    }
    let mut listener_addrs: BTreeMap<String, BTreeMap<String, SocketAddr>> = BTreeMap::new();
    for (key, starting) in pending {
        let e = starting.ready(Duration::from_secs(30)).await?;
        listener_addrs.insert(key.clone(), e.listeners().await?);
        envoys.insert(key, e);
    }

    // 4. Probes, one at a time (so Envoy counters can be attributed to one probe).
    let mut results = Vec::new();
    for p in &planned {
        let skey = server_key(p.server);
        let ckey = client_key(p.client);
        let route = route_name(p);
        let entry = if p.client_dp == DataPlane::Sidecar {
            let listener = client_listener
                .get(&(ckey.clone(), route.clone()))
                .ok_or_else(|| anyhow!("no outbound listener for {route}"))?;
            *listener_addrs
                .get(&ckey)
                .and_then(|m| m.get(listener))
                .ok_or_else(|| anyhow!("listener {listener} not bound"))?
        } else {
            endpoint_address(p, &server_ip, apps)
        };
        let server_envoy = envoys.get(&skey);
        let before = match server_envoy {
            Some(e) => e.counters().await?,
            None => BTreeMap::new(),
        };
        let raw = send(p, entry).await;
        let after = match server_envoy {
            Some(e) => e.counters().await?,
            None => BTreeMap::new(),
        };
        let evidence = CounterDelta::new(&before, &after);
        let (observed, detail) = classify(p, &raw, &evidence);
        let mut involved = Vec::new();
        if p.client_dp == DataPlane::Sidecar {
            involved.push(ckey.clone());
        }
        if server_envoy.is_some() {
            involved.push(skey.clone());
        }
        let mut lowering = Vec::new();
        if let Some(n) = lowering_notes.get(&format!("{ckey}/{route}")) {
            lowering.push(n.clone());
        } else {
            lowering.push(format!(
                "client {ckey}: no sidecar, connects directly to {entry}"
            ));
        }
        match lowering_notes.get(&skey) {
            Some(n) => lowering.push(n.clone()),
            None => lowering.push(format!(
                "server {skey}: no sidecar, the application answers"
            )),
        }
        results.push(ProbeResult {
            name: p.probe.name(),
            predicted: p.predicted.clone(),
            observed,
            evidence: detail,
            explanation: p.explanation.clone(),
            lowering: lowering.join("\n"),
            envoys: involved,
        });
    }

    // 5. Logs, then teardown (Envoys killed by PID, tempdir removed).
    let logs = envoys.iter().map(|(k, e)| (k.clone(), e.logs())).collect();
    drop(envoys);
    dir.close().context("remove the world's tempdir")?;
    Ok(Report {
        world: world.name,
        results,
        logs,
        elapsed: started.elapsed(),
    })
}

fn route_name(p: &Planned<'_>) -> String {
    let chain = match p.chain {
        Chain::Http => "http",
        Chain::Tcp => "tcp",
    };
    format!(
        "{}{}_{}_{}_{chain}",
        if p.probe.pod_ip { "pod_" } else { "" },
        p.probe.to.0,
        p.probe.to.1,
        p.probe.to.2
    )
    .replace(['.', '/'], "_")
}

/// Where the endpoint listens: its sidecar (the workload's address and the container port),
/// or, without a sidecar, the application itself.
fn endpoint_address(
    p: &Planned<'_>,
    server_ip: &BTreeMap<String, IpAddr>,
    apps: &apps::Apps,
) -> SocketAddr {
    match (p.server_dp, server_ip.get(&server_key(p.server))) {
        (DataPlane::Sidecar, Some(ip)) => SocketAddr::new(*ip, p.target_port),
        _ => match p.chain {
            Chain::Http => apps.http,
            Chain::Tcp => apps.tcp_plain,
        },
    }
}

/// Observation probe, not semantics: the TCP proxies of filter chains that terminate mTLS
/// forward to the echo port that tags its replies `tls-terminated`, so the test sees which
/// chain Envoy chose for a TCP connection. (HTTP chains show it through
/// `x-forwarded-client-cert`.)
fn instrument_tcp_tls_chains(mut bootstrap: Value, tls_app: SocketAddr) -> Value {
    let probe_cluster = "probe|tls-terminated-app";
    let mut touched = false;
    if let Some(listeners) = bootstrap
        .pointer_mut("/static_resources/listeners")
        .and_then(Value::as_array_mut)
    {
        for l in listeners {
            for chain in l["filter_chains"].as_array_mut().into_iter().flatten() {
                if chain.get("transport_socket").is_none() {
                    continue;
                }
                for f in chain["filters"].as_array_mut().into_iter().flatten() {
                    if f["name"] == "envoy.filters.network.tcp_proxy" {
                        f["typed_config"]["cluster"] = json!(probe_cluster);
                        touched = true;
                    }
                }
            }
        }
    }
    if touched
        && let Some(clusters) = bootstrap
            .pointer_mut("/static_resources/clusters")
            .and_then(Value::as_array_mut)
    {
        clusters.push(json!({
            "name": probe_cluster,
            "type": "STATIC",
            "connect_timeout": "2s",
            "load_assignment": {"cluster_name": probe_cluster, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": tls_app.ip().to_string(), "port_value": tls_app.port()}}}}]}]},
        }));
    }
    bootstrap
}

fn rebind(bootstrap: &mut Value, ip: IpAddr) {
    if let Some(listeners) = bootstrap
        .pointer_mut("/static_resources/listeners")
        .and_then(Value::as_array_mut)
    {
        for l in listeners {
            l["address"]["socket_address"]["address"] = json!(ip.to_string());
        }
    }
}

/// What came back on the wire.
#[derive(Debug)]
enum Raw {
    Http {
        status: u16,
        headers: BTreeMap<String, String>,
        body: String,
    },
    /// The connection ended before any HTTP response (reset or closed).
    HttpNoResponse(String),
    /// Bytes read until the connection closed (or the echo was complete), and how it ended.
    Tcp {
        data: Vec<u8>,
        end: String,
    },
    /// A connect-only probe: whether the handshake completed.
    Connect(Result<(), String>),
    /// The application's own TLS handshake failed: `tls` when the TLS layer failed (the peer
    /// sent something that is not the TLS it expects, an alert, or a certificate it does not
    /// trust: curl exit 35), else the connection was closed or reset under it.
    TlsHandshake {
        tls: bool,
        why: String,
    },
    Failed(String),
}

const TCP_PAYLOAD: &[u8] = b"kfp-mesh tcp probe\n";

async fn send(p: &Planned<'_>, entry: SocketAddr) -> Raw {
    let host = match p.service {
        Some(svc) => format!(
            "{}.{}.svc.cluster.local:{}",
            svc.name(),
            svc.namespace(),
            p.probe.to.2
        ),
        None => format!("{}:{}", entry.ip(), p.target_port),
    };
    match &p.probe.req {
        Req::Connect => {
            // `nc -z`: the handshake, then close without sending anything.
            match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(entry)).await {
                Err(_) => Raw::Connect(Err("no handshake within 5s".to_string())),
                Ok(Err(e)) => Raw::Connect(Err(format!("connect {entry}: {e}"))),
                Ok(Ok(stream)) => {
                    drop(stream);
                    Raw::Connect(Ok(()))
                }
            }
        }
        Req::Http {
            method,
            path,
            headers,
        } => {
            let fut = async {
                let stream = match TcpStream::connect(entry).await {
                    Ok(s) => s,
                    Err(e) => return Raw::Failed(format!("connect {entry}: {e}")),
                };
                let (mut sender, conn) =
                    match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                        Ok(x) => x,
                        Err(e) => return Raw::HttpNoResponse(e.to_string()),
                    };
                tokio::spawn(conn);
                let mut b = Request::builder()
                    .method(method.as_str())
                    .uri(path.as_str());
                b = b.header("host", host.as_str());
                for (k, v) in headers {
                    b = b.header(k.as_str(), v.as_str());
                }
                let body = if method == "GET" || method == "HEAD" {
                    Bytes::new()
                } else {
                    Bytes::from_static(b"probe-body")
                };
                let req = match b.body(Full::new(body)) {
                    Ok(r) => r,
                    Err(e) => return Raw::Failed(format!("bad request: {e}")),
                };
                match sender.send_request(req).await {
                    Err(e) => Raw::HttpNoResponse(format!(
                        "{e} ({:?})",
                        std::error::Error::source(&e).map(|s| s.to_string())
                    )),
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let headers = resp
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (
                                    k.as_str().to_string(),
                                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                )
                            })
                            .collect();
                        let body = match resp.into_body().collect().await {
                            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
                            Err(e) => format!("<body error: {e}>"),
                        };
                        Raw::Http {
                            status,
                            headers,
                            body,
                        }
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(8), fut)
                .await
                .unwrap_or_else(|_| Raw::Failed("timeout after 8s".to_string()))
        }
        Req::Tls => {
            let Some(svc) = p.service else {
                return Raw::Failed(
                    "application TLS probes go to a Service (its host name is the SNI)".into(),
                );
            };
            let fqdn = format!("{}.{}.svc.cluster.local", svc.name(), svc.namespace());
            let fut = async {
                let stream = match TcpStream::connect(entry).await {
                    Ok(s) => s,
                    Err(e) => return Raw::Failed(format!("connect {entry}: {e}")),
                };
                let name = match ServerName::try_from(fqdn.clone()) {
                    Ok(n) => n,
                    Err(e) => return Raw::Failed(format!("server name {fqdn}: {e}")),
                };
                let connector = TlsConnector::from(apps::app_tls().client.clone());
                let mut s = match connector.connect(name, stream).await {
                    Ok(s) => s,
                    Err(e) => {
                        let tls = e.kind() == std::io::ErrorKind::InvalidData
                            || e.get_ref().is_some_and(|inner| {
                                inner.downcast_ref::<rustls::Error>().is_some()
                            });
                        return Raw::TlsHandshake {
                            tls,
                            why: format!("{:?}: {e}", e.kind()),
                        };
                    }
                };
                read_echo(&mut s).await
            };
            tokio::time::timeout(Duration::from_secs(8), fut)
                .await
                .unwrap_or_else(|_| Raw::Failed("timeout after 8s".to_string()))
        }
        Req::Tcp => {
            let fut = async {
                let mut s = match TcpStream::connect(entry).await {
                    Ok(s) => s,
                    Err(e) => return Raw::Failed(format!("connect {entry}: {e}")),
                };
                read_echo(&mut s).await
            };
            tokio::time::timeout(Duration::from_secs(8), fut)
                .await
                .unwrap_or_else(|_| Raw::Failed("timeout after 8s".to_string()))
        }
    }
}

/// Send the TCP payload and read until the echo is complete or the connection ends.
async fn read_echo<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> Raw {
    if let Err(e) = async {
        s.write_all(TCP_PAYLOAD).await?;
        s.flush().await
    }
    .await
    {
        return Raw::Tcp {
            data: Vec::new(),
            end: format!("write failed: {e}"),
        };
    }
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if data.ends_with(TCP_PAYLOAD) {
            break "echo complete".to_string();
        }
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Err(_) => break "no more data for 5s".to_string(),
            Ok(Ok(0)) => break "closed by peer (EOF)".to_string(),
            Ok(Ok(n)) => data.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => break format!("read error: {e}"),
        }
    };
    Raw::Tcp { data, end }
}

/// The server sidecar's counters that moved during one probe.
struct CounterDelta(BTreeMap<String, u64>);

impl CounterDelta {
    fn new(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> CounterDelta {
        CounterDelta(
            after
                .iter()
                .filter_map(|(k, v)| {
                    let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
                    (d > 0).then(|| (k.clone(), d))
                })
                .collect(),
        )
    }
    /// Denials by the fail-closed DENY of a CUSTOM policy (its stats carry `custom_deny`).
    fn custom_denied(&self) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| k.contains("custom_deny") && k.ends_with("denied"))
            .map(|(_, v)| v)
            .sum()
    }
    fn no_filter_chain(&self) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| k.ends_with("no_filter_chain_match"))
            .map(|(_, v)| v)
            .sum()
    }
    fn rbac_denied(&self) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| k.ends_with(".rbac.denied"))
            .map(|(_, v)| v)
            .sum()
    }
    fn interesting(&self) -> String {
        let keys: Vec<String> = self
            .0
            .iter()
            .filter(|(k, _)| {
                k.contains("rbac")
                    || k.contains("no_filter_chain_match")
                    || k.contains("ssl.connection_error")
                    || k.contains("ssl.fail_verify")
                    || k.contains("ssl.handshake")
            })
            .map(|(k, v)| format!("{k}+{v}"))
            .collect();
        if keys.is_empty() {
            "none".to_string()
        } else {
            keys.join(", ")
        }
    }
}

fn xfcc_uri(body: &Value) -> Option<String> {
    let xfcc = body["headers"]["x-forwarded-client-cert"].as_str()?;
    xfcc.split(';')
        .find_map(|part| part.strip_prefix("URI="))
        .map(str::to_string)
}

/// Turn what came back into an outcome of kfp-mesh's vocabulary.
///
/// * HTTP 200 from the echo: `allow`; mTLS iff the server sidecar forwarded a client identity.
/// * HTTP 403 `RBAC: access denied` (gRPC: status 7 with that message): `deny`.
/// * HTTP 503 `upstream connect error…` from the client's own sidecar (gRPC: status 14):
///   `upstream-failure`.
/// * No HTTP response at all: `reset`.
/// * TCP echo complete: `allow`; mTLS iff it came through a chain that terminated mTLS.
/// * TCP closed without the echo: `deny` when the server sidecar's RBAC counted a denial
///   during the probe (`custom-deny` when it was the fail-closed DENY of a CUSTOM policy),
///   else `reset` when the server side found no filter chain (a client sidecar's TCP proxy
///   passes that on as a reset) or the client has no sidecar, else `upstream-failure` (the
///   client sidecar's own upstream connection failed).
/// * A connect-only probe: `connected` when the handshake completes, `timed-out` when
///   nothing answers within 5 s.
/// * The application's own TLS (`Req::Tls`): the echo through the TLS session classifies like
///   TCP; a failed handshake is `tls-failure` when the TLS layer failed (an alert, a
///   certificate the application does not trust, bytes that are not TLS: curl exit 35),
///   `reset` when the connection was closed or reset under it, `deny` when the server
///   sidecar's RBAC counted a denial meanwhile.
fn classify(p: &Planned<'_>, raw: &Raw, delta: &CounterDelta) -> (Seen, String) {
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
    let seen = |o: Outcome, t: Option<Transport>| Seen {
        outcome: Some(o),
        transport: t,
        probe: None,
    };
    let counters = format!("server counters: {}", delta.interesting());
    let denied = |o: Outcome| {
        if delta.custom_denied() > 0 {
            Outcome::CustomDeny
        } else {
            o
        }
    };
    match raw {
        Raw::Failed(why) => none(format!("harness failure: {why}")),
        Raw::Connect(Ok(())) => (
            Seen {
                outcome: None,
                transport: None,
                probe: Some(ProbeOutcome::Connected),
            },
            format!("TCP handshake completed, closed without sending; {counters}"),
        ),
        Raw::Connect(Err(why)) if why.starts_with("no handshake") => (
            Seen {
                outcome: None,
                transport: None,
                probe: Some(ProbeOutcome::TimedOut),
            },
            why.clone(),
        ),
        Raw::Connect(Err(why)) => none(format!("the handshake failed: {why}; {counters}")),
        Raw::TlsHandshake { tls, why } => {
            let detail = format!("the application's TLS handshake failed: {why}; {counters}");
            if delta.rbac_denied() > 0 || delta.custom_denied() > 0 {
                // The server sidecar's network RBAC closed the connection under the handshake.
                (seen(denied(Outcome::Deny), None), detail)
            } else if *tls {
                (seen(Outcome::TlsFailure, None), detail)
            } else {
                (seen(Outcome::Reset, None), detail)
            }
        }
        Raw::HttpNoResponse(why) => (
            seen(Outcome::Reset, None),
            format!("no HTTP response: {why}; {counters}"),
        ),
        Raw::Http {
            status,
            headers,
            body,
        } => {
            let short: String = body.chars().take(300).collect();
            let detail = format!("HTTP {status} {short:?}; {counters}");
            let grpc = headers.get("grpc-status").map(String::as_str);
            let grpc_message = headers.get("grpc-message").cloned().unwrap_or_default();
            if *status == 200 && grpc.is_none() {
                let Ok(v) = serde_json::from_str::<Value>(body) else {
                    return none(format!("HTTP 200 that is not the echo: {detail}"));
                };
                if v["app"] != ECHO_MARK {
                    return none(format!("HTTP 200 that is not the echo: {detail}"));
                }
                let transport = match xfcc_uri(&v) {
                    Some(_) => Transport::Mtls,
                    None => Transport::Plaintext,
                };
                let who = xfcc_uri(&v).unwrap_or_else(|| "no client certificate".to_string());
                return (
                    seen(Outcome::Allow, Some(transport)),
                    format!("HTTP 200 from the echo (caller: {who}); {counters}"),
                );
            }
            let rbac = *status == 403 && body.trim() == "RBAC: access denied"
                || grpc == Some("7") && grpc_message.contains("RBAC");
            if rbac {
                return (seen(denied(Outcome::Deny), None), detail);
            }
            let upstream = *status == 503 && body.contains("upstream connect error")
                || grpc == Some("14") && grpc_message.contains("upstream connect error");
            if upstream && p.client_dp == DataPlane::Sidecar {
                return (seen(Outcome::UpstreamFailure, None), detail);
            }
            none(format!(
                "unexpected response: {detail} grpc-status={grpc:?} {grpc_message}"
            ))
        }
        Raw::Tcp { data, end } => {
            let text = String::from_utf8_lossy(data);
            let detail = format!("TCP read {:?}, then {end}; {counters}", text);
            if data.ends_with(TCP_PAYLOAD) {
                let tag = text.split(':').next().unwrap_or_default();
                let transport = match tag {
                    TAG_TLS => Transport::Mtls,
                    TAG_PLAIN => Transport::Plaintext,
                    _ => return none(format!("echo without a tag: {detail}")),
                };
                return (seen(Outcome::Allow, Some(transport)), detail);
            }
            if !data.is_empty() {
                return none(format!("unexpected bytes: {detail}"));
            }
            if delta.rbac_denied() > 0 || delta.custom_denied() > 0 {
                (seen(denied(Outcome::Deny), None), detail)
            } else if p.client_dp == DataPlane::Sidecar && delta.no_filter_chain() == 0 {
                // The client sidecar's own upstream connection failed (e.g. its mTLS toward a
                // peer that is no mesh proxy): it resets the application's connection.
                (seen(Outcome::UpstreamFailure, None), detail)
            } else {
                // The server side found no filter chain and closed the connection; a client
                // sidecar's TCP proxy passes that on as a reset.
                (seen(Outcome::Reset, None), detail)
            }
        }
    }
}
