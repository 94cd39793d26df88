//! D4: the string, glob, path, CIDR and port matchers AuthorizationPolicy values compile to,
//! implemented directly (no regex): every function is total and allocation-light.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::PathNormalization;

/// D4 string matching: `abc` exact, `abc*` prefix, `*abc` suffix, `*` presence (non-empty).
/// A `*` anywhere else is a literal character.
pub(super) fn string_match(pattern: &str, value: &str) -> bool {
    match_with(pattern, value, false)
}

/// D4 with ASCII case-insensitive comparison (`hosts`).
pub(super) fn string_match_ci(pattern: &str, value: &str) -> bool {
    match_with(pattern, value, true)
}

fn match_with(pattern: &str, value: &str, ci: bool) -> bool {
    let eq = |a: &[u8], b: &[u8]| {
        if ci {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    let (p, v) = (pattern.as_bytes(), value.as_bytes());
    if pattern == "*" {
        return !value.is_empty();
    }
    if let Some(suffix) = p.strip_prefix(b"*") {
        return v.len() >= suffix.len() && eq(&v[v.len() - suffix.len()..], suffix);
    }
    if let Some(prefix) = p.strip_suffix(b"*") {
        return v.len() >= prefix.len() && eq(&v[..prefix.len()], prefix);
    }
    eq(p, v)
}

/// HTTP header matching: as [`string_match`], except that `*` only needs the header to be
/// present (Envoy `present_match`, an empty value counts).
pub(super) fn header_match(pattern: &str, value: Option<&str>) -> bool {
    match value {
        None => false,
        Some(_) if pattern == "*" => true,
        Some(v) => string_match(pattern, v),
    }
}

/// A glob where every `*` matches any (possibly empty) run of characters: the
/// `namespaces` matcher of sidecars, which turns each `*` into `.*` of a regex.
pub(super) fn glob_match(pattern: &str, value: &str) -> bool {
    let (p, v) = (pattern.as_bytes(), value.as_bytes());
    let (mut pi, mut vi) = (0usize, 0usize);
    // Position of the last `*` seen in the pattern and the value index it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, vi));
            pi += 1;
        } else if pi < p.len() && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// `requestPrincipals` and `request.auth.principal`: Istio splits the value at its last `/`
/// into issuer and subject and matches each part (`*` alone needs both to be non-empty;
/// `*x` / `x*` apply to the issuer or the subject depending on which side has the `*`).
pub(super) fn request_principal_match(pattern: &str, iss: &str, sub: &str) -> bool {
    if pattern == "*" {
        return !iss.is_empty() && !sub.is_empty();
    }
    let split = pattern
        .rfind('/')
        .map(|i| (&pattern[..i], &pattern[i + 1..]));
    if let Some(rest) = pattern.strip_prefix('*') {
        return match split {
            Some((piss, psub)) => {
                let iss_ok = if piss == "*" {
                    !iss.is_empty()
                } else {
                    iss.ends_with(piss.strip_prefix('*').unwrap_or(piss))
                };
                iss_ok && sub == psub
            }
            None => !iss.is_empty() && sub.ends_with(rest),
        };
    }
    if let Some(rest) = pattern.strip_suffix('*') {
        return match split {
            Some((piss, psub)) => {
                let sub_ok = if psub == "*" {
                    !sub.is_empty()
                } else {
                    sub.starts_with(psub.strip_suffix('*').unwrap_or(psub))
                };
                iss == piss && sub_ok
            }
            None => iss.starts_with(rest) && !sub.is_empty(),
        };
    }
    match split {
        Some((piss, psub)) => iss == piss && sub == psub,
        None => iss == pattern && sub.is_empty(),
    }
}

/// Whether a `paths` value uses the `{*}` / `{**}` template operators.
pub(super) fn is_path_template(pattern: &str) -> bool {
    pattern.contains("{*}") || pattern.contains("{**}")
}

#[derive(Debug, PartialEq, Eq)]
enum Tok<'a> {
    Lit(&'a [u8]),
    /// `{*}` (or a bare `*` in a templated path): one or more characters other than `/`.
    One,
    /// `{**}` (or `**`): any run of characters, `/` included.
    Any,
}

fn template_tokens(pattern: &str) -> Vec<Tok<'_>> {
    let p = pattern.as_bytes();
    let mut toks = Vec::new();
    let mut lit_start = 0usize;
    let mut i = 0usize;
    while i < p.len() {
        let (len, tok) = if p[i..].starts_with(b"{**}") {
            (4, Tok::Any)
        } else if p[i..].starts_with(b"{*}") {
            (3, Tok::One)
        } else if p[i..].starts_with(b"**") {
            (2, Tok::Any)
        } else if p[i] == b'*' {
            (1, Tok::One)
        } else {
            i += 1;
            continue;
        };
        if lit_start < i {
            toks.push(Tok::Lit(&p[lit_start..i]));
        }
        toks.push(tok);
        i += len;
        lit_start = i;
    }
    if lit_start < p.len() {
        toks.push(Tok::Lit(&p[lit_start..]));
    }
    toks
}

/// Envoy URI-template matching of a path (`{*}` one segment, `{**}` the rest), by dynamic
/// programming over tokens × path positions, so no input can make it slow.
pub(super) fn path_template_match(pattern: &str, path: &str) -> bool {
    let toks = template_tokens(pattern);
    let s = path.as_bytes();
    let n = s.len();
    // next[j]: tokens after the current one match s[j..].
    let mut next = vec![false; n + 1];
    next[n] = true;
    let mut cur = vec![false; n + 1];
    for tok in toks.iter().rev() {
        for j in (0..=n).rev() {
            cur[j] = match tok {
                Tok::Lit(l) => s[j..].starts_with(l) && next[j + l.len()],
                Tok::One => j < n && s[j] != b'/' && (next[j + 1] || cur[j + 1]),
                Tok::Any => next[j] || (j < n && cur[j + 1]),
            };
        }
        std::mem::swap(&mut next, &mut cur);
    }
    next[0]
}

/// The path Envoy's RBAC filter matches `paths` / `notPaths` against: the request path without
/// query string or fragment, normalised as `meshConfig.pathNormalization` makes istiod program
/// Envoy (`istio:pilot/pkg/networking/core/listener_builder.go`):
///
/// * `NONE`: as sent.
/// * `BASE` (Istio's default; Envoy `normalize_path`): percent-encoded *unreserved* characters
///   (`A-Z a-z 0-9 - . _ ~`, any hex case) are decoded, so `/v%31` is `/v1`; a backslash is a
///   slash; `.` and `..` segments are resolved (RFC 3986 5.2.4, after decoding, so
///   `/a/%2E%2E/b` is `/b`). Other escapes (`%2F`, `%5C`, `%20`, ...) stay as written, in their
///   hex case. Decoding happens once: `%252e` is `%2e`, never `.`.
/// * `MERGE_SLASHES`: `BASE`, then runs of `/` become one.
/// * `DECODE_AND_MERGE_SLASHES`: first `%2F`/`%2f` become `/` and `%5C`/`%5c` a backslash
///   (`UNESCAPE_AND_FORWARD`), then `MERGE_SLASHES`.
///
/// The table of `istio:tests/integration/security/normalization_test.go` is the reference
/// (checked in `crates/core/tests/authz.rs`); the per-character rules are those of
/// `io:content/en/docs/reference/config/security/normalization/index.md`. Not modelled: `%00`,
/// which Envoy rejects with HTTP 400 before any policy runs.
pub fn normalize_path(raw: &str, mode: PathNormalization) -> String {
    let end = raw.find(['?', '#']).unwrap_or(raw.len());
    let path = &raw[..end];
    if mode == PathNormalization::None {
        return path.to_string();
    }
    let decoded = percent_decode(path, mode == PathNormalization::DecodeAndMergeSlashes);
    let slashed = decoded.replace('\\', "/");
    let resolved = remove_dot_segments(&slashed);
    match mode {
        PathNormalization::MergeSlashes | PathNormalization::DecodeAndMergeSlashes => {
            merge_slashes(&resolved)
        }
        _ => resolved,
    }
}

/// One pass of percent-decoding: unreserved characters always, `/` and `\` only when
/// `slashes`. Every other escape is kept byte for byte.
fn percent_decode(path: &str, slashes: bool) -> String {
    let b = path.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let hex = |c: u8| (c as char).to_digit(16);
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            let c = (h * 16 + l) as u8;
            let unreserved = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
            if unreserved || (slashes && matches!(c, b'/' | b'\\')) {
                out.push(c);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    // Only ASCII bytes were produced from escapes, so the text stays valid UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// RFC 3986 5.2.4 on an absolute path: `.` segments vanish, `..` removes the segment before
/// it (an empty one too: `/a//../b` is `/a/b`) and never climbs above the root.
fn remove_dot_segments(path: &str) -> String {
    if !path.split('/').any(|seg| seg == "." || seg == "..") {
        return path.to_string();
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        crate::text!("/{joined}")
    }
}

fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    out
}

/// An `ipBlocks`-style value: an address (a /32 or /128) or a CIDR. `None` when malformed.
pub(super) fn parse_cidr(value: &str) -> Option<IpNet> {
    let v = value.trim();
    if v.contains('/') {
        v.parse::<IpNet>().ok()
    } else {
        v.parse::<IpAddr>().ok().map(IpNet::from)
    }
}

pub(super) fn cidr_contains(value: &str, ip: IpAddr) -> bool {
    parse_cidr(value).is_some_and(|net| net.contains(&ip))
}

/// A `ports`-style value: decimal digits only, 0..=65535. `None` when malformed.
pub(super) fn parse_port(value: &str) -> Option<u16> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u16>().ok()
}

/// A mesh identity `<td>/ns/<ns>/sa/<sa>` taken apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Peer<'a> {
    pub full: &'a str,
    pub trust_domain: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub service_account: Option<&'a str>,
}

impl<'a> Peer<'a> {
    pub fn parse(full: &'a str) -> Peer<'a> {
        let s = full.strip_prefix("spiffe://").unwrap_or(full);
        let mut peer = Peer {
            full: s,
            trust_domain: None,
            namespace: None,
            service_account: None,
        };
        if let Some(i) = s.find("/ns/") {
            peer.trust_domain = Some(&s[..i]);
            let rest = &s[i + 4..];
            let ns_end = rest.find('/').unwrap_or(rest.len());
            peer.namespace = Some(&rest[..ns_end]).filter(|n| !n.is_empty());
            // `/sa/<sa>`, possibly after further key/value pairs.
            let tail = &rest[ns_end..];
            if let Some(j) = tail.find("/sa/") {
                let sa_rest = &tail[j + 4..];
                let sa_end = sa_rest.find('/').unwrap_or(sa_rest.len());
                peer.service_account = Some(&sa_rest[..sa_end]).filter(|n| !n.is_empty());
            }
        }
        peer
    }
}

/// D6: the trust domain a policy principal names (the part before `/ns/`), when it has one
/// and does not start with `*`.
pub(super) fn principal_trust_domain(value: &str) -> Option<(&str, &str)> {
    if value.starts_with('*') {
        return None;
    }
    value.find("/ns/").map(|i| (&value[..i], &value[i..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d4_string_match() {
        let cases = [
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("abc*", "abcd", true),
            ("abc*", "ab", false),
            ("*abc", "xxabc", true),
            ("*abc", "abcx", false),
            ("*", "x", true),
            ("*", "", false),
            ("a*c", "abc", false),
            ("a*c", "a*c", true),
            ("", "", true),
        ];
        for (p, v, want) in cases {
            assert_eq!(string_match(p, v), want, "{p} vs {v}");
        }
        assert!(string_match_ci("*.Example.COM", "api.example.com"));
        assert!(string_match_ci("HTTPBIN*", "httpbin.foo"));
        assert!(!string_match_ci("ä*", "Ä"));
    }

    #[test]
    fn glob() {
        assert!(glob_match("*", "kubeflow"));
        assert!(glob_match("kube*", "kubeflow"));
        assert!(glob_match("*flow", "kubeflow"));
        assert!(glob_match("k*f*w", "kubeflow"));
        assert!(!glob_match("k*x", "kubeflow"));
        assert!(glob_match("kubeflow", "kubeflow"));
        assert!(!glob_match("kubeflow", "kubeflow-user"));
    }

    #[test]
    fn request_principals() {
        let cases = [
            ("*", "iss", "sub", true),
            ("*", "iss", "", false),
            (
                "testing@secure.istio.io/testing@secure.istio.io",
                "testing@secure.istio.io",
                "testing@secure.istio.io",
                true,
            ),
            ("https://a.b/c/sub", "https://a.b/c", "sub", true),
            ("https://a.b/c/*", "https://a.b/c", "x", true),
            ("https://a.b/c/*", "https://a.b/d", "x", false),
            ("*/sub", "any", "sub", true),
            ("*.io/sub", "x.io", "sub", true),
            ("*.io/sub", "x.com", "sub", false),
            ("iss/su*", "iss", "subject", true),
            ("iss*", "issuer", "s", true),
            ("*ject", "i", "subject", true),
        ];
        for (p, iss, sub, want) in cases {
            assert_eq!(
                request_principal_match(p, iss, sub),
                want,
                "{p} vs {iss}/{sub}"
            );
        }
    }

    #[test]
    fn templates() {
        let cases = [
            ("/foo/{*}", "/foo/bar", true),
            ("/foo/{*}", "/foo/bar/baz", false),
            ("/foo/{*}", "/foo/", false),
            ("/foo/{**}", "/foo/bar/baz", true),
            ("/foo/{**}", "/foo/", true),
            ("/foo/{**}", "/foo", false),
            ("/foo/{*}/bar", "/foo/x/bar", true),
            ("/foo/{*}/bar", "/foo/x/y/bar", false),
            ("/{*}/{**}", "/a/b/c", true),
            ("/foo/{**}/bar", "/foo/a/b/bar", true),
        ];
        for (p, v, want) in cases {
            assert!(is_path_template(p));
            assert_eq!(path_template_match(p, v), want, "{p} vs {v}");
        }
    }

    #[test]
    fn normalisation() {
        let base = |p| normalize_path(p, PathNormalization::Base);
        assert_eq!(base("/a/b?x=1"), "/a/b");
        assert_eq!(base("/a/./b"), "/a/b");
        assert_eq!(base("/a/../b"), "/b");
        assert_eq!(base("/../../b"), "/b");
        assert_eq!(base("/a/b/.."), "/a/");
        assert_eq!(base("/headers#frag"), "/headers");
        assert_eq!(base("/v%31"), "/v1");
        assert_eq!(base("/%"), "/%");
        assert_eq!(base("/%4"), "/%4");
        assert_eq!(base("/%zz"), "/%zz");
        assert_eq!(base("/é%41"), "/éA");
    }

    #[test]
    fn cidrs_and_ports() {
        let ip = IpAddr::from([10, 1, 2, 3]);
        assert!(cidr_contains("10.1.0.0/16", ip));
        assert!(cidr_contains("10.1.2.3", ip));
        assert!(!cidr_contains("10.2.0.0/16", ip));
        assert!(!cidr_contains("not-an-ip", ip));
        assert!(!cidr_contains("10.0.0.0/99", ip));
        assert_eq!(parse_port("8080"), Some(8080));
        assert_eq!(parse_port("+80"), None);
        assert_eq!(parse_port("70000"), None);
        assert_eq!(parse_port("http"), None);
    }

    #[test]
    fn peers() {
        let p = Peer::parse("cluster.local/ns/kubeflow/sa/ml-pipeline");
        assert_eq!(p.trust_domain, Some("cluster.local"));
        assert_eq!(p.namespace, Some("kubeflow"));
        assert_eq!(p.service_account, Some("ml-pipeline"));
        let q = Peer::parse("spiffe://td/ns/a/sa/b");
        assert_eq!(q.full, "td/ns/a/sa/b");
        let r = Peer::parse("garbage");
        assert_eq!(r.namespace, None);
        assert_eq!(
            principal_trust_domain("old-td/ns/a/sa/b"),
            Some(("old-td", "/ns/a/sa/b"))
        );
        assert_eq!(principal_trust_domain("*/ns/a/sa/b"), None);
    }
}
