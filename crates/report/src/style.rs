//! How an edge looks: one style per kind of outcome, shared by the SVG, DOT and Mermaid.

use kfp_mesh_core::connection::{Outcome, Transport};

/// The outcome classes the map distinguishes. Ordered from best to worst: the worst of a
/// group of flows styles a summarised edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Style {
    Mtls,
    Plaintext,
    Blocked,
    TlsFailure,
    UpstreamFailure,
    Denied,
    Reset,
}

impl Style {
    pub const ALL: [Style; 7] = [
        Style::Mtls,
        Style::Plaintext,
        Style::Reset,
        Style::UpstreamFailure,
        Style::Denied,
        Style::Blocked,
        Style::TlsFailure,
    ];

    pub fn of(outcome: Outcome, transport: Option<Transport>) -> Style {
        match outcome {
            // The connection is established and the ext-authz provider answers per request:
            // drawn by its transport; the flow's outcome text says who decides.
            Outcome::Allow | Outcome::ProviderDecides => match transport {
                Some(Transport::Mtls) => Style::Mtls,
                _ => Style::Plaintext,
            },
            Outcome::Reset => Style::Reset,
            Outcome::UpstreamFailure => Style::UpstreamFailure,
            Outcome::Deny | Outcome::CustomDeny | Outcome::Unauthenticated => Style::Denied,
            Outcome::Blocked => Style::Blocked,
            Outcome::TlsFailure => Style::TlsFailure,
        }
    }

    /// Machine name (CSS class suffix, `data-outcome`).
    pub fn name(self) -> &'static str {
        match self {
            Style::Mtls => "mtls",
            Style::Plaintext => "plaintext",
            Style::Reset => "reset",
            Style::UpstreamFailure => "upstream-failure",
            Style::Denied => "denied",
            Style::Blocked => "blocked",
            Style::TlsFailure => "tls-failure",
        }
    }

    /// For people (the legend).
    pub fn label(self) -> &'static str {
        match self {
            Style::Mtls => "mTLS",
            Style::Plaintext => "plaintext",
            Style::Reset => "reset",
            Style::UpstreamFailure => "upstream failure (503)",
            Style::Denied => "denied (403/401)",
            Style::Blocked => "blocked (NetworkPolicy)",
            Style::TlsFailure => "TLS failure",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Style::Mtls => "allowed, Istio mutual TLS",
            Style::Plaintext => {
                "allowed in plaintext: one side has no sidecar (STRICT would break it)"
            }
            Style::Reset => "connection reset by the server sidecar (no plaintext filter chain)",
            Style::UpstreamFailure => {
                "HTTP 503 from the client sidecar: the sidecars disagree on TLS"
            }
            Style::Denied => {
                "an AuthorizationPolicy denies it (deny, custom deny, or JWT rejected)"
            }
            Style::Blocked => "a NetworkPolicy drops the packets: timeout",
            Style::TlsFailure => "the application's own TLS handshake fails",
        }
    }

    pub fn ok(self) -> bool {
        matches!(self, Style::Mtls | Style::Plaintext)
    }

    pub fn color(self) -> &'static str {
        match self {
            Style::Mtls => "#1a7f37",
            Style::Plaintext => "#bc6c00",
            Style::Reset => "#d1242f",
            Style::UpstreamFailure => "#8250df",
            Style::Denied => "#82071e",
            Style::Blocked => "#57606a",
            Style::TlsFailure => "#0550ae",
        }
    }

    /// SVG `stroke-dasharray`, or `None` for a solid line.
    pub fn dash(self) -> Option<&'static str> {
        match self {
            Style::Mtls => None,
            Style::Plaintext => Some("8 4"),
            Style::Reset => None,
            Style::UpstreamFailure => Some("10 3 2 3"),
            Style::Denied => Some("2 3"),
            Style::Blocked => Some("1 5"),
            Style::TlsFailure => Some("6 2 2 2 2 2"),
        }
    }

    pub fn width(self) -> f64 {
        match self {
            Style::Mtls | Style::Plaintext => 1.6,
            Style::Reset => 3.0,
            _ => 2.4,
        }
    }

    /// Graphviz `style`.
    pub fn dot_style(self) -> &'static str {
        match self {
            Style::Mtls => "solid",
            Style::Plaintext => "dashed",
            Style::Reset => "bold",
            Style::UpstreamFailure | Style::TlsFailure => "dashed",
            Style::Denied | Style::Blocked => "dotted",
        }
    }
}
