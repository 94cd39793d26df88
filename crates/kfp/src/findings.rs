//! The finding codes kfp-mesh reports (`catalog/findings.yaml`), and the `Finding` itself.

use std::sync::OnceLock;

use kfp_mesh_core::object::{Cited, ObjectRef};
use serde::{Deserialize, Serialize};

/// The catalog text, as shipped.
pub const FINDINGS_YAML: &str = include_str!("../catalog/findings.yaml");

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One entry of the finding catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingKind {
    pub code: String,
    pub name: String,
    pub severity: Severity,
    pub summary: String,
    pub description: String,
    pub fix: String,
}

/// The finding catalog, parsed once. A broken catalog is a build defect caught by the tests;
/// at run time it yields an empty list rather than a panic.
pub fn kinds() -> &'static [FindingKind] {
    static KINDS: OnceLock<Vec<FindingKind>> = OnceLock::new();
    KINDS.get_or_init(|| serde_saphyr::from_str(FINDINGS_YAML).unwrap_or_default())
}

pub fn kind(code: &str) -> Option<&'static FindingKind> {
    kinds().iter().find(|k| k.code == code)
}

include!(concat!(env!("OUT_DIR"), "/codes.rs"));

impl Code {
    /// The catalog entry of this code.
    pub fn kind(self) -> Option<&'static FindingKind> {
        kind(self.as_str())
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compare with the code as users write it (`KM001`).
impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One finding: a code of the catalog, about an object, with a one-line message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The flow this finding is about, when it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
}

impl Finding {
    /// A finding of catalog code `code` (its severity comes from the catalog).
    pub fn new(code: Code, message: impl Into<String>, about: Option<&Cited>) -> Self {
        let severity = code.severity();
        let (object, file, line) = match about {
            Some(c) => (
                Some(c.object.clone()),
                Some(c.origin.source.to_string()),
                (c.origin.line > 0).then_some(c.origin.line),
            ),
            None => (None, None, None),
        };
        Finding {
            code,
            severity,
            message: message.into(),
            object,
            file,
            line,
            flow: None,
        }
    }

    pub fn for_flow(mut self, flow: &str) -> Self {
        self.flow = Some(flow.to_string());
        self
    }

    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }
}

/// `docs/findings.md`, rendered from the catalog.
pub fn markdown() -> String {
    let mut s = String::from(
        "# Findings\n\nEvery finding `kfp-mesh check` and `kfp-mesh verify` report, by code. This page is \
         rendered from `crates/kfp/catalog/findings.yaml` (`kfp-mesh findings --markdown`).\n\n\
         Suppress a finding with `--suppress CODE` (everywhere) or `--suppress CODE=NAMESPACE/NAME` \
         (one object), or with the annotation `kfp-mesh.io/suppress: \"CODE[,CODE...]\"` on the object.\n\n\
         | Code | Name | Severity | Summary |\n| --- | --- | --- | --- |\n",
    );
    for k in kinds() {
        s.push_str(&format!(
            "| [{code}](#{anchor}) | `{name}` | {sev} | {summary} |\n",
            code = k.code,
            anchor = k.code.to_lowercase(),
            name = k.name,
            sev = k.severity.as_str(),
            summary = k.summary
        ));
    }
    for k in kinds() {
        s.push_str(&format!(
            "\n## {code}\n\n`{name}`, {sev}. {summary}\n\n{description}\n\n**Fix.** {fix}\n",
            code = k.code,
            name = k.name,
            sev = k.severity.as_str(),
            summary = k.summary,
            description = k.description,
            fix = k.fix
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_parses_with_unique_stable_codes() {
        let parsed: Vec<FindingKind> =
            serde_saphyr::from_str(FINDINGS_YAML).expect("findings.yaml parses");
        assert!(parsed.len() >= 18, "{} kinds", parsed.len());
        let mut codes: Vec<&str> = parsed.iter().map(|k| k.code.as_str()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), parsed.len(), "duplicate codes");
        for k in &parsed {
            assert!(
                k.code.len() == 5 && k.code.starts_with("KM"),
                "{} is not KMnnn",
                k.code
            );
            assert!(!k.fix.is_empty() && !k.description.is_empty(), "{}", k.code);
        }
        assert_eq!(kinds(), parsed.as_slice());
        // The generated enum is the catalog, in order.
        let generated: Vec<(&str, &str, Severity)> = Code::ALL
            .iter()
            .map(|c| (c.as_str(), c.name(), c.severity()))
            .collect();
        let catalog: Vec<(&str, &str, Severity)> = parsed
            .iter()
            .map(|k| (k.code.as_str(), k.name.as_str(), k.severity))
            .collect();
        assert_eq!(generated, catalog);
        assert_eq!(Code::parse("KM001"), Some(Code::FlowReset));
        assert_eq!(Code::parse("flow-reset"), Some(Code::FlowReset));
        assert_eq!(Code::parse("KM999"), None);
    }

    #[test]
    fn docs_findings_md_is_rendered_from_the_catalog() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/findings.md");
        let want = markdown();
        if std::env::var_os("KFP_MESH_UPDATE_DOCS").is_some() {
            std::fs::write(path, &want).expect("write docs/findings.md");
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/findings.md is out of date: run `KFP_MESH_UPDATE_DOCS=1 cargo test -p kfp-mesh-kfp findings`"
        );
    }
}
