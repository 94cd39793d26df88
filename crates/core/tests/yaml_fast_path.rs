//! The fast YAML path reads what it accepts exactly as serde-saphyr does, and accepts what
//! Kubernetes tools write.

use kfp_mesh_core::yaml::{read_block_document, read_with_saphyr, write_block_document};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The fast path's value, checked against serde-saphyr's whenever it gives one; and the JSON
/// text it writes is the text `serde_json` writes for that value (the inventory keeps it).
fn fast(doc: &str) -> Option<Value> {
    let value = read_block_document(doc)?;
    let expected = read_with_saphyr(doc);
    assert_eq!(
        Ok(Some(value.clone())).map(|v: Option<Value>| v.filter(|v| !v.is_null())),
        expected,
        "the fast path read differently from serde-saphyr:\n{doc}"
    );
    let mut written = b"before ".to_vec();
    let entries = write_block_document(doc, &mut written).expect("written");
    let text = String::from_utf8_lossy(&written);
    let want = format!("before {}", serde_json::to_string(&value).expect("json"));
    assert_eq!(text, want, "{doc}");
    // The entries of the document's mapping, in order, and where each one's text is.
    let keys: Vec<&str> = entries.iter().map(|e| e.key.as_ref()).collect();
    let want_keys: Vec<&str> = value
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys, want_keys, "{doc}");
    for e in &entries {
        let entry: Value = serde_json::from_str(&format!("{{{}}}", &text[e.start..e.end]))
            .expect("an entry's text");
        assert_eq!(
            entry,
            json!({ e.key.as_ref(): value[e.key.as_ref()] }),
            "{doc}"
        );
        let at: Value = serde_json::from_str(&text[e.value..e.end]).expect("a value's text");
        assert_eq!(at, value[e.key.as_ref()], "{doc}");
    }
    Some(value)
}

fn documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.split_inclusive('\n') {
        let l = line.trim_end_matches('\n');
        if l == "---" || l.starts_with("--- ") {
            docs.push(String::new());
        } else if let Some(d) = docs.last_mut() {
            d.push_str(line);
        }
    }
    docs
}

#[test]
fn reads_the_subset_kubernetes_tools_write() {
    let cases: &[(&str, Value)] = &[
        ("a: b\n", json!({"a": "b"})),
        ("a: b", json!({"a": "b"})),
        ("a:\n  b: c\n  d: 1\n", json!({"a": {"b": "c", "d": 1}})),
        // kubectl's compact sequences: `-` at the key's column.
        (
            "spec:\n  containers:\n  - name: a\n    image: b\n    args:\n    - x\n    - z\n  volumes: []\n",
            json!({"spec": {"containers": [{"name": "a", "image": "b", "args": ["x", "z"]}], "volumes": []}}),
        ),
        (
            "a:\n    - 1\n    - 2\nb: {}\n",
            json!({"a": [1, 2], "b": {}}),
        ),
        (
            "- a\n- b: c\n  d: e\n-\n  f: g\n",
            json!(["a", {"b": "c", "d": "e"}, {"f": "g"}]),
        ),
        (
            "a: \"x\\ty\\u00e9\\\"\"\nb: 'it''s'\n",
            json!({"a": "x\ty\u{e9}\"", "b": "it's"}),
        ),
        (
            "a: b # comment\n# whole line\nc: 'd' # more\n",
            json!({"a": "b", "c": "d"}),
        ),
        (
            "a: http://x:80/p#frag\nb: a#b\n",
            json!({"a": "http://x:80/p#frag", "b": "a#b"}),
        ),
        (
            "a: true\nb: false\nc: null\nd: ~\ne:\nf: 0\ng: -12\nh: 8080\n",
            json!({"a": true, "b": false, "c": null, "d": null, "e": null, "f": 0, "g": -12, "h": 8080}),
        ),
        // Left to serde-saphyr, one scalar at a time.
        (
            "a: 1.5\nb: yes\nc: 0x10\nd: 012\ne: -1\nf: 1e3\ng: --flag\n",
            json!({"a": 1.5, "b": true, "c": 16, "d": 12.0, "e": -1, "f": 1000.0, "g": "--flag"}),
        ),
        (
            "a: |\n  line 1\n\n  line 3\nb: c\n",
            json!({"a": "line 1\n\nline 3\n", "b": "c"}),
        ),
        (
            "a: |-\n  x\n    y\n\n\nb: c\n",
            json!({"a": "x\n  y", "b": "c"}),
        ),
        ("a: |+\n  x\n\nb: c\n", json!({"a": "x\n\n", "b": "c"})),
        ("a: |\nb: c\n", json!({"a": "", "b": "c"})),
        ("- |\n  x\n- z\n", json!(["x\n", "z"])),
        (
            "\"quoted key\": 1\n'k': v\n",
            json!({"quoted key": 1, "k": "v"}),
        ),
        ("a:   spaced   \n", json!({"a": "spaced"})),
        (
            "  a: indented document\n  b: c\n",
            json!({"a": "indented document", "b": "c"}),
        ),
    ];
    for (doc, want) in cases {
        assert_eq!(fast(doc).as_ref(), Some(want), "{doc}");
    }
}

#[test]
fn leaves_the_rest_of_yaml_to_serde_saphyr() {
    for doc in [
        "a: {b: c}\n",
        "a: [b]\n",
        "a: &x b\nc: *x\n",
        "a: !!str 1\n",
        "a: >\n  folded\n",
        "a: |2\n   x\n",
        "a: multi\n  line\n",
        "a: \"multi\n  line\"\n",
        "? complex\n: key\n",
        "a:\tb\n",
        "a:\n\t- b\n",
        "a: b\na: c\n",
        "<<: {a: b}\n",
        "1: one\n",
        "yes: y\n",
        "a: b: c\n",
        "a: b\r\n",
        "a: \u{1}\n",
        "a: |\n  last line without a break",
        "- - nested\n",
        "a:\n  b: c\n d: e\n",
        "a: 'unterminated\n",
        "a: \"\\q\"\n",
        // Longer than YAML's 1024 characters for an implicit key (found by fuzz/yaml_fast_path).
        &*format!("{}: v\n", "k".repeat(1100)),
        &*format!("'{}': v\n", "k".repeat(1100)),
        // `|+` whose last line is blank and has no line break after it (found by the fuzzer).
        "- |+\n\n  :S\n  ",
        "scalar document\n",
        "- a\nb: c\n",
    ] {
        assert_eq!(read_block_document(doc), None, "{doc:?}");
    }
}

#[test]
fn deep_documents_go_to_serde_saphyr() {
    let mut doc = String::new();
    for i in 0..60 {
        doc.push_str(&" ".repeat(i));
        doc.push_str("a:\n");
    }
    assert_eq!(read_block_document(&doc), None);
    // kubectl's compact nesting, a mapping in each sequence item: as deep, the same.
    let compact: String = (0..40)
        .map(|i| format!("{}- a:\n", " ".repeat(2 * i)))
        .collect();
    assert_eq!(read_block_document(&compact), None);
}

/// Every document of the upstream renders that the fast path reads, it reads as serde-saphyr
/// does, and it reads nearly all of them (that is its point).
#[test]
fn upstream_renders_read_the_same_and_mostly_on_the_fast_path() {
    let files = kfp_mesh_testdata::upstream_yaml_files();
    let (mut docs, mut on_fast_path) = (0usize, 0usize);
    for file in &files {
        let text = std::fs::read_to_string(file).expect("fixture");
        for doc in documents(&text) {
            if doc.trim().is_empty() {
                continue;
            }
            docs += 1;
            if fast(&doc).is_some() {
                on_fast_path += 1;
            } else if std::env::var_os("SHOW_SLOW").is_some() {
                eprintln!("=== {}\n{doc}", file.display());
            }
        }
    }
    assert!(
        on_fast_path * 100 >= docs * 95,
        "{on_fast_path} of {docs} upstream documents on the fast path"
    );
}

fn line() -> impl Strategy<Value = String> {
    let indent = 0usize..7;
    let prefix = prop::sample::select(vec!["", "", "- ", "-", "? ", "# ", "-  "]);
    let key = prop::sample::select(vec![
        "", "a", "b", "k1", "\"q\"", "'s'", "80", "yes", "a b", "a:b", "<<",
    ]);
    let sep = prop::sample::select(vec![": ", ":", "", ":  ", " : "]);
    let value = prop::sample::select(vec![
        "",
        "x",
        "1",
        "01",
        "-1",
        "1.0",
        "true",
        "True",
        "null",
        "~",
        "|",
        "|-",
        "|+",
        ">",
        "[]",
        "{}",
        "[a]",
        "\"a\\nb\"",
        "\"a",
        "'it''s'",
        "a #c",
        "a#b",
        "&x a",
        "*x",
        "!!str 1",
        "http://x",
        "a: b",
        "256Gi",
        "1h",
        "3000m",
        ".NaN",
        "-.Inf",
        "1/2",
        "0x1G",
        "2001-12-14t21:59:43.10-05:00",
        "1_000",
        "+12",
        "1:20",
        "-Inf",
        "Yes",
        "  ",
        "# c",
        "é",
        "\\",
        "0o7",
        "-",
        "- a",
    ]);
    (indent, prefix, key, sep, value)
        .prop_map(|(i, p, k, s, v)| format!("{}{p}{k}{s}{v}", " ".repeat(i)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]
    /// Documents made of lines of YAML's pieces: whenever the fast path reads one, serde-saphyr
    /// reads the same value (and no error).
    #[test]
    fn agrees_with_serde_saphyr(lines in prop::collection::vec(line(), 1..10), end in prop::bool::ANY) {
        let mut doc = lines.join("\n");
        if end {
            doc.push('\n');
        }
        let _ = fast(&doc);
    }
}
