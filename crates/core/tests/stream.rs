//! A stream parsed piece by piece as it arrives gives exactly what parsing it whole gives:
//! the same objects, from the same lines, and the same errors.

use kfp_mesh_core::inventory::{InputError, StreamParser, parse_bytes};
use kfp_mesh_core::object::Object;
use proptest::prelude::*;

fn summary(objects: &[Object], errors: &[InputError]) -> (Vec<String>, Vec<String>) {
    (
        objects
            .iter()
            .map(|o| format!("{} {} {:?}", o.origin, o.object_ref(), o.body))
            .collect(),
        errors.iter().map(ToString::to_string).collect(),
    )
}

/// `text` pushed in pieces of the given sizes (cycling), with a parser that parses as soon as
/// `gather` bytes are pending.
fn streamed(text: &[u8], pieces: &[usize], gather: usize) -> (Vec<String>, Vec<String>) {
    let mut parser = StreamParser::with_piece("in", gather);
    let (mut objects, mut errors) = (Vec::new(), Vec::new());
    let mut rest = text;
    for size in pieces.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, after) = rest.split_at((*size).clamp(1, rest.len()));
        parser.push(piece, &mut objects, &mut errors);
        rest = after;
    }
    parser.finish(&mut objects, &mut errors);
    summary(&objects, &errors)
}

fn whole(text: &[u8]) -> (Vec<String>, Vec<String>) {
    let (objects, errors) = parse_bytes("in", text);
    summary(&objects, &errors)
}

const CASES: &[&str] = &[
    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: b\n",
    "\u{feff}apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n--- \napiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\n",
    "# comment\n---\n--- apiVersion: v1\nkind: Namespace\nmetadata: {name: inline}\n---\n\n---\n",
    "apiVersion: v1\r\nkind: Namespace\r\nmetadata:\r\n  name: crlf\r\n---\r\napiVersion: v1\r\nkind: Namespace\r\nmetadata:\r\n  name: crlf2\r\n",
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: broken\n---\nkind: Service\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: last-without-newline",
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: text}\ndata:\n  a: |\n    ---not a marker\n    ----\n---x\n...\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: after-end}\n",
    "  \n{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"j\"}}]}\n{\"kind\": \n",
];

#[test]
fn crafted_streams_read_the_same_in_any_pieces() {
    let mut bad = CASES
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect::<Vec<_>>();
    // A document that is not UTF-8 between two that are.
    bad.push(
        b"apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: \xff}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n"
            .to_vec(),
    );
    for text in &bad {
        let want = whole(text);
        for pieces in [&[1usize][..], &[2, 5], &[7, 1, 13], &[4096]] {
            for gather in [1, 10, 50, 1 << 20] {
                assert_eq!(
                    streamed(text, pieces, gather),
                    want,
                    "{:?} in pieces {pieces:?}, parsed every {gather} bytes",
                    String::from_utf8_lossy(text)
                );
            }
        }
    }
}

#[test]
fn upstream_renders_read_the_same_in_pieces() {
    let dir = kfp_mesh_testdata::upstream_dir();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("upstream directory") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read(&path).expect("fixture");
        let want = whole(&text);
        assert!(!want.0.is_empty(), "{}", path.display());
        assert_eq!(
            streamed(&text, &[4093, 65_536], 100_000),
            want,
            "{}",
            path.display()
        );
        files += 1;
    }
    assert!(files > 10, "upstream renders in {}", dir.display());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn any_pieces(case in 0..CASES.len(), pieces in prop::collection::vec(1usize..40, 1..6), gather in 1usize..200) {
        let text = CASES[case].as_bytes();
        prop_assert_eq!(streamed(text, &pieces, gather), whole(text));
    }
}
