//! `core`'s modules depend on each other without cycles: the model types sit below the
//! inventory, the inventory below the mesh semantics, the mesh semantics below `connection`.
//! The test reads the sources (`crate::` paths in `use` lines and in code) and fails with the
//! cycle it finds, so a new back-edge is caught when it is written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The module a source file is: `inventory`, `mesh::authz` (a directory module with its
/// files), `mesh::peer_authn`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    match parts.as_slice() {
        [one] => one.clone(),
        [dir, _] if dir == "mesh" => format!("mesh::{}", parts[1]).replace("mesh::mod", "mesh"),
        [dir, sub, _] if dir == "mesh" => format!("mesh::{sub}"),
        _ => parts.join("::"),
    }
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap_or_else(|e| panic!("{e}")).path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The `crate::` module paths a source mentions, resolved to the modules of `known`.
fn references(text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    // Skip unit tests: a test module may use anything.
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        // The longest known module prefix.
        for n in (1..=segs.len().min(2)).rev() {
            let m = segs[..n].join("::");
            if known.contains(&m) {
                out.insert(m);
                break;
            }
        }
        // `use crate::mesh::{authz, peer_authn}`
        if segs.len() == 1 && rest[path.len()..].starts_with('{') {
            let inner: String = rest[path.len() + 1..]
                .chars()
                .take_while(|c| *c != '}')
                .collect();
            for name in inner
                .split(',')
                .map(|s| s.trim().split("::").next().unwrap_or(""))
            {
                let m = format!("{}::{name}", segs[0]);
                if known.contains(&m) {
                    out.insert(m);
                }
            }
        }
    }
    out
}

#[test]
fn core_modules_have_no_cycles() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let modules: BTreeSet<String> = all.iter().map(|f| module_of(&src, f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &all {
        let from = module_of(&src, f);
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for to in references(&text, &modules) {
            // A module and its parent (`mesh` re-exporting `mesh::authz`) are one place.
            if to != from && !from.starts_with(&format!("{to}::")) && to != "lib" {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == m) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.to_string());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in &modules {
        if let Some(cycle) = visit(m, &edges, &mut Vec::new(), &mut done) {
            panic!("a cycle between core's modules: {}", cycle.join(" -> "));
        }
    }
    // The three cycles the registry issue named stay broken.
    for (a, b) in [
        ("inventory", "mesh::validation"),
        ("inventory", "mesh::membership"),
        ("mesh::client_tls", "mesh::peer_authn"),
    ] {
        let ab = edges.get(a).is_some_and(|e| e.contains(b));
        let ba = edges.get(b).is_some_and(|e| e.contains(a));
        assert!(!(ab && ba), "{a} and {b} depend on each other again");
    }
}
