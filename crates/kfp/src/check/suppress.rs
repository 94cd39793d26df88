//! Suppressions: `--suppress CODE[=NS/NAME]` and the `kfp-mesh.io/suppress` annotation.

use std::collections::BTreeMap;

use kfp_mesh_core::inventory::Inventory;

use crate::findings::{Code, Finding};

/// Annotation listing finding codes to suppress on the object it is set on.
pub const SUPPRESS_ANNOTATION: &str = "kfp-mesh.io/suppress";

/// `--suppress CODE` or `--suppress CODE=NAMESPACE/NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppression {
    pub code: Code,
    pub object: Option<(String, String)>,
}

impl std::str::FromStr for Suppression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (code, object) = match s.split_once('=') {
            None => (s, None),
            Some((code, obj)) => match obj.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                    (code, Some((ns.to_string(), name.to_string())))
                }
                _ => {
                    return Err(format!("`{s}`: the object must be NAMESPACE/NAME"));
                }
            },
        };
        let Some(code) = Code::parse(code) else {
            return Err(format!(
                "`{code}` is not a finding code (see docs/findings.md)"
            ));
        };
        Ok(Suppression { code, object })
    }
}

/// Objects carrying the suppression annotation: (kind, namespace, name) → codes.
pub(super) fn annotations(
    inv: &Inventory,
) -> BTreeMap<(String, Option<String>, String), Vec<String>> {
    inv.objects
        .iter()
        .filter_map(|o| {
            let codes = o.meta.annotation(SUPPRESS_ANNOTATION)?;
            Some((
                (
                    o.kind.clone(),
                    o.meta.namespace.clone(),
                    o.meta.name.clone(),
                ),
                codes.split(',').map(|c| c.trim().to_string()).collect(),
            ))
        })
        .collect()
}

pub(super) fn suppressed(
    annotated: &BTreeMap<(String, Option<String>, String), Vec<String>>,
    rules: &[Suppression],
    f: &Finding,
) -> bool {
    if let Some(o) = &f.object
        && annotated
            .get(&(o.kind.clone(), o.namespace.clone(), o.name.clone()))
            .is_some_and(|codes| codes.iter().any(|c| Code::parse(c) == Some(f.code)))
    {
        return true;
    }
    rules.iter().any(|s| {
        s.code == f.code
            && match &s.object {
                None => true,
                Some((ns, name)) => f.object.as_ref().is_some_and(|o| {
                    o.namespace.as_deref() == Some(ns.as_str()) && &o.name == name
                }),
            }
    })
}
