//! Prometheus metrics of the webhook (served on the admin port at `/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathResult {
    pub path: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    pub path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// Which listener: `https` (the admission endpoints) or `admin`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortLabel {
    pub port: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortReason {
    pub port: &'static str,
    pub reason: &'static str,
}

/// All metrics, registered under the `kfp_mesh_webhook` prefix.
pub struct Metrics {
    pub registry: Registry,
    /// Requests by path and result (`patched`, `unchanged`, `skipped`, `fail_open`,
    /// `bad_request`, `payload_too_large`, `body_timeout`, `overloaded`, `not_found`,
    /// `method_not_allowed`).
    pub requests: Family<PathResult, Counter>,
    /// Reviews answered with a non-empty patch.
    pub patches: Family<PathLabel, Counter>,
    /// JSON Patch operations sent.
    pub patch_operations: Family<PathLabel, Counter>,
    /// Time from request head to response, in seconds.
    pub latency: Family<PathLabel, Histogram>,
    /// Configuration reloads by result (`success`, `error`).
    pub config_reloads: Family<ResultLabel, Counter>,
    /// 1 when the last configuration reload succeeded, 0 when a bad file was refused.
    pub config_last_reload_ok: Gauge,
    /// Certificate (re)loads by result.
    pub cert_reloads: Family<ResultLabel, Counter>,
    /// Errors by kind (`config_reload`, `cert_reload`, `tls_handshake`, `connection`,
    /// `fail_open`, `bad_request`).
    pub errors: Family<KindLabel, Counter>,
    /// 1 when ready (configuration and certificate loaded, not shutting down).
    pub ready: Gauge,
    /// Connections open now (from accept to close, TLS handshake included), by port.
    pub connections_open: Family<PortLabel, Gauge>,
    /// The configured cap on open connections, by port.
    pub connections_max: Family<PortLabel, Gauge>,
    /// Connections accepted, by port.
    pub connections_accepted: Family<PortLabel, Counter>,
    /// Connections the server closed, by port and reason (`evicted`, `rejected`,
    /// `handshake_timeout`, `header_timeout`, `idle_timeout`).
    pub connections_closed: Family<PortReason, Counter>,
    /// Bytes of request bodies held now, all requests together (set when scraped).
    pub body_bytes_in_flight: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kfp_mesh_webhook");
        let requests = Family::<PathResult, Counter>::default();
        let patches = Family::<PathLabel, Counter>::default();
        let patch_operations = Family::<PathLabel, Counter>::default();
        // 50µs … ~0.8s.
        let latency = Family::<PathLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.00005, 2.0, 15))
        });
        let config_reloads = Family::<ResultLabel, Counter>::default();
        let config_last_reload_ok = Gauge::default();
        let cert_reloads = Family::<ResultLabel, Counter>::default();
        let errors = Family::<KindLabel, Counter>::default();
        let ready = Gauge::default();
        let connections_open = Family::<PortLabel, Gauge>::default();
        let connections_max = Family::<PortLabel, Gauge>::default();
        let connections_accepted = Family::<PortLabel, Counter>::default();
        let connections_closed = Family::<PortReason, Counter>::default();
        let body_bytes_in_flight = Gauge::default();
        registry.register(
            "requests",
            "Admission requests by path and result",
            requests.clone(),
        );
        registry.register(
            "patches_applied",
            "Reviews answered with a JSON patch",
            patches.clone(),
        );
        registry.register(
            "patch_operations",
            "JSON patch operations sent",
            patch_operations.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Admission request latency in seconds",
            latency.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration loads by result",
            config_reloads.clone(),
        );
        registry.register(
            "config_last_reload_success",
            "1 if the last configuration load succeeded",
            config_last_reload_ok.clone(),
        );
        registry.register(
            "certificate_reloads",
            "Serving certificate loads by result",
            cert_reloads.clone(),
        );
        registry.register("errors", "Errors by kind", errors.clone());
        registry.register(
            "ready",
            "1 when the webhook is ready to serve",
            ready.clone(),
        );
        registry.register(
            "connections_open",
            "Connections open now, by port",
            connections_open.clone(),
        );
        registry.register(
            "connections_max",
            "Cap on open connections, by port",
            connections_max.clone(),
        );
        registry.register(
            "connections_accepted",
            "Connections accepted, by port",
            connections_accepted.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections closed by the server, by port and reason",
            connections_closed.clone(),
        );
        registry.register(
            "body_bytes_in_flight",
            "Bytes of request bodies held now, all requests together",
            body_bytes_in_flight.clone(),
        );
        Metrics {
            registry,
            requests,
            patches,
            patch_operations,
            latency,
            config_reloads,
            config_last_reload_ok,
            cert_reloads,
            errors,
            ready,
            connections_open,
            connections_max,
            connections_accepted,
            connections_closed,
            body_bytes_in_flight,
        }
    }

    pub fn request(&self, path: &'static str, result: &'static str) {
        self.requests
            .get_or_create(&PathResult { path, result })
            .inc();
    }

    /// One connection closed by the server on `port` for `reason`.
    pub fn closed(&self, port: &'static str, reason: &'static str) {
        self.connections_closed
            .get_or_create(&PortReason { port, reason })
            .inc();
    }

    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabel { kind }).inc();
    }

    /// OpenMetrics text (accepted by Prometheus).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
