//! D: AuthorizationPolicy (with RequestAuthentication) evaluation for one request at one
//! enforcement point.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::explain::Decision;
use crate::inventory::{Inventory, Service, Workload};

/// Which proxy enforces the policies.
#[derive(Clone, Copy, Debug)]
pub enum Enforcer<'a> {
    /// The server's sidecar (selector policies; targetRef policies ignored).
    Sidecar,
    /// The destination ztunnel (ambient, L4 only, A6.3).
    Ztunnel,
    /// A waypoint in front of `service` (targetRef policies only, L7).
    Waypoint { service: &'a Service },
}

/// The filter chain the request lands in: HTTP (L7 attributes available) or TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    Http,
    Tcp,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub host: String,
    /// Lower-case header names.
    pub headers: BTreeMap<String, String>,
}

/// A JWT presented by the client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Jwt {
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
    pub presenter: Option<String>,
    pub claims: BTreeMap<String, Vec<String>>,
    /// False for a token the proxy rejects (bad signature, expired).
    pub valid: bool,
}

/// The attributes of one request as the enforcing proxy sees them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestContext {
    /// mTLS peer identity without `spiffe://`: `<td>/ns/<ns>/sa/<sa>`; `None` for plaintext.
    pub principal: Option<String>,
    pub source_ip: Option<IpAddr>,
    pub remote_ip: Option<IpAddr>,
    pub destination_ip: Option<IpAddr>,
    /// The workload (container) port.
    pub destination_port: u16,
    pub sni: Option<String>,
    pub chain: Chain,
    /// The HTTP request (ignored on the TCP chain).
    pub http: Option<HttpRequest>,
    pub jwt: Option<Jwt>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthzVerdict {
    Allow,
    /// A DENY matched, or ALLOW policies exist and none matched.
    Deny,
    /// A CUSTOM rule matched and fails closed (provider unknown or several providers).
    CustomDeny,
    /// A CUSTOM rule matched and the named ext-authz provider decides; the rest of the
    /// evaluation assumed it allows.
    Custom {
        provider: String,
    },
    /// 401: a JWT was presented and RequestAuthentication rejects it.
    Unauthenticated,
}

/// D1–D9 (and A6.3 for ztunnel, A6.4 for waypoints): evaluate the policies that apply to
/// `server` at `enforcer` for the request.
pub fn authorize(
    inv: &Inventory,
    server: &Workload,
    enforcer: Enforcer<'_>,
    request: &RequestContext,
) -> Decision<AuthzVerdict> {
    let _ = (inv, server, enforcer, request);
    todo!("authz helper")
}
