//! A6.4: which waypoint a Service uses (`istio.io/use-waypoint`), and the facts about it the
//! input holds: where the label comes from, the Gateway it names (present or not, its class,
//! the traffic it takes) and the identity the destination ztunnel sees after it.
//!
//! Istio's rules (`pilot/pkg/serviceregistry/ambient/waypoints.go`, `GetUseWaypoint`,
//! `fetchWaypointForService`): the Service's own `istio.io/use-waypoint` label wins over its
//! namespace's; the value `none` opts out; `istio.io/use-waypoint-namespace` names the
//! waypoint's namespace (default: the labelled object's); a waypoint takes Service traffic when
//! its `istio.io/waypoint-for` is `service` (the default) or `all`; a waypoint whose Gateway
//! does not exist (or is not ready) is not used and istiod reports it in the Service's status,
//! so the traffic goes straight to the destination ztunnel.
//!
//! The engine routes by the label (a static input often lacks the Gateway, which may exist in
//! the cluster); [`ServiceWaypoint::gateway`] says whether the input has it, for findings.

use crate::inventory::{Inventory, Service, Workload};
use crate::model::PodSpec;
use crate::object::{Cited, Object, Origin, StringMap};

pub const USE_WAYPOINT_LABEL: &str = "istio.io/use-waypoint";
pub const USE_WAYPOINT_NAMESPACE_LABEL: &str = "istio.io/use-waypoint-namespace";
pub const WAYPOINT_FOR_LABEL: &str = "istio.io/waypoint-for";
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";
/// The label Istio's deployment controller puts on Kubernetes Gateway API gateway pods.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// Where a Service's waypoint comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelSource {
    Service,
    Namespace,
}

/// The Gateway a `use-waypoint` label names, as the input has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaypointGateway {
    pub cited: Cited,
    /// `spec.gatewayClassName` (`istio-waypoint` for Istio's waypoints).
    pub class: String,
    /// `istio.io/waypoint-for` of the Gateway (`service` when absent, Istio's default; a
    /// GatewayClass label is not read).
    pub waypoint_for: String,
}

impl WaypointGateway {
    /// Whether this waypoint takes traffic addressed to a Service.
    pub fn takes_service_traffic(&self) -> bool {
        matches!(self.waypoint_for.as_str(), "service" | "all")
    }
}

/// The waypoint a Service's traffic goes through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceWaypoint {
    pub name: String,
    pub namespace: String,
    pub source: LabelSource,
    /// The labelled object (the Service or its Namespace) when the input has it.
    pub labelled_by: Option<Cited>,
    /// The Gateway `namespace/name` of the input, `None` when the input does not have it.
    pub gateway: Option<WaypointGateway>,
}

impl ServiceWaypoint {
    /// The identity the destination ztunnel sees after the waypoint: Istio deploys a waypoint
    /// with a ServiceAccount named after its Gateway.
    pub fn principal(&self, inv: &Inventory) -> String {
        crate::text!(
            "{}/ns/{}/sa/{}",
            inv.mesh.trust_domain,
            self.namespace,
            self.name
        )
    }
}

/// A6.4: the waypoint `service` uses by its labels or its namespace's; `None` without a label
/// or with `none`.
pub fn service_waypoint(inv: &Inventory, service: &Service) -> Option<ServiceWaypoint> {
    let ns = service.namespace();
    let (labels, source, labelled_by) = if service.meta.label(USE_WAYPOINT_LABEL).is_some() {
        (
            std::borrow::Cow::Borrowed(&service.meta.labels),
            LabelSource::Service,
            Some(service.cite()),
        )
    } else {
        (
            inv.namespace_labels(ns),
            LabelSource::Namespace,
            inv.namespaces.get(ns).map(|n| n.cite()),
        )
    };
    let name = labels.get(USE_WAYPOINT_LABEL)?;
    if name == "none" || name.is_empty() {
        return None;
    }
    let namespace = labels
        .get(USE_WAYPOINT_NAMESPACE_LABEL)
        .filter(|n| !n.is_empty())
        .map_or_else(|| ns.to_string(), str::to_string);
    let gateway = find_gateway(inv, &namespace, name);
    Some(ServiceWaypoint {
        name: name.to_string(),
        namespace,
        source,
        labelled_by,
        gateway,
    })
}

/// The Gateway API Gateway `namespace/name` of the input.
pub fn find_gateway(inv: &Inventory, namespace: &str, name: &str) -> Option<WaypointGateway> {
    inv.objects
        .iter()
        .find(|o| {
            is_gateway(o) && o.meta.name == name && o.meta.namespace.as_deref() == Some(namespace)
        })
        .map(|o| WaypointGateway {
            cited: o.cite(),
            class: o
                .pointer("/spec/gatewayClassName")
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            waypoint_for: o
                .meta
                .label(WAYPOINT_FOR_LABEL)
                .unwrap_or("service")
                .to_string(),
        })
}

fn is_gateway(o: &Object) -> bool {
    o.kind == "Gateway" && o.group() == GATEWAY_API_GROUP
}

/// The port HBONE arrives on at an ambient pod (and at a waypoint): what NetworkPolicies see
/// for mesh traffic (istio.io `docs/ambient/usage/networkpolicy`).
pub const HBONE_PORT: u16 = 15008;

/// The waypoint's pods as NetworkPolicy selects them: the input's workload labelled
/// `gateway.networking.k8s.io/gateway-name: <name>` in the waypoint's namespace, else the pods
/// Istio's deployment controller creates for the Gateway (that label, ServiceAccount named after
/// the Gateway, HBONE on 15008), modelled.
pub fn waypoint_workload(inv: &Inventory, w: &ServiceWaypoint) -> Workload {
    if let Some(found) = inv
        .workloads_in(&w.namespace)
        .find(|x| x.label(GATEWAY_NAME_LABEL) == Some(w.name.as_str()))
    {
        return found.clone();
    }
    let origin = w
        .gateway
        .as_ref()
        .map(|g| g.cited.origin.clone())
        .unwrap_or_else(|| Origin::builtin("waypoint pods Istio deploys for a Gateway"));
    Workload {
        kind: "Deployment".to_string(),
        name: w.name.clone(),
        namespace: w.namespace.clone(),
        labels: StringMap::from([
            (GATEWAY_NAME_LABEL, w.name.as_str()),
            ("istio.io/dataplane-mode", "none"),
        ]),
        annotations: StringMap::new(),
        spec: PodSpec {
            service_account_name: Some(w.name.clone()),
            ..PodSpec::default()
        }
        .into(),
        origin,
        synthetic: true,
        cited: Default::default(),
        memo: Default::default(),
    }
}
