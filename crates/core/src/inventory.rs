//! The inventory: every object of the input, parsed, located and typed.
//!
//! Reading is pure: callers hand in text with a source name (a path, `<stdin>`, a URL) and get
//! objects plus errors back. A malformed document is an [`InputError`] naming the source, line
//! and reason; the other documents are still read.

use std::collections::{BTreeMap, HashMap};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::mesh::validation::{self, Severity, ValidationIssue};
use crate::model::*;
use crate::object::{CiteCache, Cited, Meta, Object, ObjectRef, Origin, Resource, StringMap};

/// Largest input accepted in one call of [`parse_stream`] or [`parse_bytes`] (512 MiB). The
/// CLI applies the same cap to everything it reads in one run and stops reading there.
pub const MAX_INPUT_BYTES: usize = 512 * 1024 * 1024;
pub use crate::yaml::{MAX_DEPTH, MIN_NODE_BUDGET, NODES_PER_BYTE, node_budget};

/// A problem with the input: the place, the object when known, and the reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InputError {
    pub origin: Origin,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    pub message: String,
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.object {
            Some(o) => write!(f, "{}: {}: {}", self.origin, o, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

/// Parse a stream of Kubernetes objects: multi-document YAML, or one or more concatenated JSON
/// values. `kind: List` (and `*List` kinds) are expanded into their items.
pub fn parse_stream(source: &str, text: &str) -> (Vec<Object>, Vec<InputError>) {
    parse_bytes(source, text.as_bytes())
}

/// [`parse_stream`] on bytes as read from a file. Bytes that are not UTF-8 are an error at the
/// line of the first such byte that skips its YAML document (JSON: its value); the other
/// documents are read.
pub fn parse_bytes(source: &str, bytes: &[u8]) -> (Vec<Object>, Vec<InputError>) {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    parse_bytes_into(source, bytes, &mut objects, &mut errors);
    (objects, errors)
}

/// [`parse_bytes`], adding to the objects and errors of the sources read before (each object
/// is moved once from its document into `objects`).
fn parse_bytes_into(
    source: &str,
    bytes: &[u8],
    objects: &mut Vec<Object>,
    errors: &mut Vec<InputError>,
) {
    if bytes.len() > MAX_INPUT_BYTES {
        errors.push(InputError {
            origin: Origin::new(source, 1),
            object: None,
            message: format!(
                "input is {} bytes, more than the {} bytes (512 MiB) kfp-mesh reads in one stream; split it into several files",
                bytes.len(),
                MAX_INPUT_BYTES
            ),
        });
        return;
    }
    let source: std::sync::Arc<str> = source.into();
    if stream_is_json(bytes) == Some(true) {
        parse_json_stream(&source, bytes, objects, errors);
    } else {
        parse_yaml_into(&source, bytes, 1, objects, errors);
    }
}

/// How much YAML text a [`StreamParser`] gathers before it parses the documents that have ended.
pub const STREAM_PIECE: usize = 8 << 20;

/// A stream parsed as it arrives, piece by piece: the same objects and errors as
/// [`parse_bytes`] on the whole, without holding the whole text. YAML documents are parsed as
/// soon as a later `---` line shows that they have ended; JSON when the stream ends (a `List` is
/// then read one item at a time). The caller applies [`MAX_INPUT_BYTES`] as it reads.
pub struct StreamParser {
    source: std::sync::Arc<str>,
    /// Text not parsed yet: it starts at a document's beginning.
    pending: Vec<u8>,
    /// The line of the source `pending` starts on.
    line: u32,
    /// Where to go on searching `pending` for a `---` line (the line break before the last
    /// line searched; no marker line starts before it).
    searched: usize,
    json: Option<bool>,
    piece: usize,
}

impl StreamParser {
    pub fn new(source: &str) -> StreamParser {
        StreamParser::with_piece(source, STREAM_PIECE)
    }

    /// A parser that parses once `piece` bytes of YAML have gathered (tests use small pieces).
    pub fn with_piece(source: &str, piece: usize) -> StreamParser {
        StreamParser {
            source: source.into(),
            pending: Vec::new(),
            line: 1,
            searched: 0,
            json: None,
            piece: piece.max(1),
        }
    }

    /// The next piece of the stream.
    pub fn push(&mut self, bytes: &[u8], objects: &mut Vec<Object>, errors: &mut Vec<InputError>) {
        self.pending.extend_from_slice(bytes);
        if self.json.is_none() {
            self.json = stream_is_json(&self.pending);
        }
        if self.json != Some(false) || self.pending.len() < self.piece {
            return;
        }
        let (found, last_break) = last_document_start(&self.pending, self.searched);
        let Some(end) = found else {
            // Next time, search from the last line on (it may not be complete yet), or from
            // the new text when there was no line break.
            self.searched = last_break.unwrap_or(self.pending.len());
            return;
        };
        let done = self.pending.get(..end).unwrap_or_default();
        parse_yaml_into(&self.source, done, self.line, objects, errors);
        self.line = self.line.saturating_add(count_lines(done));
        self.pending.drain(..end);
        self.searched = 0;
    }

    /// The end of the stream: what is left is parsed.
    pub fn finish(self, objects: &mut Vec<Object>, errors: &mut Vec<InputError>) {
        if self.json == Some(true) {
            parse_json_stream(&self.source, &self.pending, objects, errors);
        } else {
            parse_yaml_into(&self.source, &self.pending, self.line, objects, errors);
        }
    }
}

/// Whether a stream is JSON, by its first character that is not blank or a byte-order mark
/// (`None` while there is none yet).
fn stream_is_json(bytes: &[u8]) -> Option<bool> {
    let mut rest = bytes;
    loop {
        rest = rest.trim_ascii_start();
        match rest.strip_prefix("\u{feff}".as_bytes()) {
            Some(r) => rest = r,
            None => break,
        }
    }
    // A partial byte-order mark at the end: wait for more.
    if rest.is_empty() || "\u{feff}".as_bytes().starts_with(rest) {
        return None;
    }
    Some(rest.starts_with(b"{") || rest.starts_with(b"["))
}

/// Where the last complete `---` line after the first line of `text` starts, looking at the
/// lines after the line break at or after `from`: the documents before it have ended. Also the
/// last line break seen (where the next search can start).
fn last_document_start(text: &[u8], from: usize) -> (Option<usize>, Option<usize>) {
    let rest = text.get(from..).unwrap_or_default();
    let last_break = memchr::memrchr(b'\n', rest).map(|i| from + i);
    // Candidates from the end: a line that starts with `---` right after a line break.
    let found = memchr::memmem::rfind_iter(rest, b"\n---")
        .map(|i| from + i + 1)
        .find(|&start| {
            let line = text.get(start..).unwrap_or_default();
            // The line must be complete to be known to be a marker.
            memchr::memchr(b'\n', line).is_some_and(|len| {
                let mut line = line.get(..len).unwrap_or_default();
                if let Some(l) = line.strip_suffix(b"\r") {
                    line = l;
                }
                line == b"---" || line.starts_with(b"--- ") || line.starts_with(b"---\t")
            })
        });
    (found, last_break)
}

/// A YAML stream (or a part of one that ends where a document ends) whose first line is line
/// `first_line` of the source.
fn parse_yaml_into(
    source: &std::sync::Arc<str>,
    bytes: &[u8],
    first_line: u32,
    objects: &mut Vec<Object>,
    errors: &mut Vec<InputError>,
) {
    let docs = split_yaml_documents(bytes, first_line);
    // Parsing is most of the cost of a large input: spread it over the cores.
    let parsed = crate::par::map(&docs, |doc| {
        let origin = Origin {
            source: source.clone(),
            line: doc.line,
        };
        let mut objects = Vec::new();
        let mut errors = Vec::new();
        match std::str::from_utf8(doc.text).map_err(|e| not_utf8(doc, e)) {
            Ok(text) => read_yaml_document(text, origin, &mut objects, &mut errors),
            Err((line, message)) => errors.push(InputError {
                origin: Origin {
                    source: source.clone(),
                    line,
                },
                object: None,
                message,
            }),
        }
        // Almost every document is one object: held without a vector of its own.
        let objects = match objects.len() {
            0 => DocObjects::None,
            1 => objects.pop().map_or(DocObjects::None, DocObjects::One),
            _ => DocObjects::Many(objects),
        };
        (objects, errors)
    });
    let count = parsed
        .iter()
        .map(|(o, _)| match o {
            DocObjects::None => 0,
            DocObjects::One(_) => 1,
            DocObjects::Many(v) => v.len(),
        })
        .sum();
    // Amortised growth: a stream arrives in many pieces, and room made exactly for each piece
    // would copy every object read so far again for each.
    objects.reserve(count);
    for (o, e) in parsed {
        match o {
            DocObjects::None => {}
            DocObjects::One(o) => objects.push(o),
            DocObjects::Many(v) => objects.extend(v),
        }
        errors.extend(e);
    }
}

/// The objects of one YAML document (as text) and what is wrong with it.
///
/// A document in the block style that Kubernetes tools write is written straight to JSON text
/// and its object made from that text ([`crate::yaml::write_block_document`],
/// `Object::from_json_text`), with no tree in between; anything else is read as a tree, the
/// same value.
fn read_yaml_document(
    text: &str,
    origin: Origin,
    objects: &mut Vec<Object>,
    errors: &mut Vec<InputError>,
) {
    thread_local! {
        /// Where each thread writes a document's JSON text.
        static JSON: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let read = crate::object::with_room(&JSON, |json| {
        match crate::yaml::write_block_document(text, json) {
            Some(entries) => match std::str::from_utf8(json)
                .ok()
                .and_then(|json| Object::from_json_text(json, &entries, &origin))
            {
                Some(object) => {
                    objects.push(object);
                    Ok(None)
                }
                // Not one object (a List, no kind, ...): the same tree, which says what is
                // wrong.
                None => serde_json::from_slice(json)
                    .map(|value| Some(value).filter(|v: &serde_json::Value| !v.is_null()))
                    .map_err(|e| format!("not valid YAML: {e}")),
            },
            // A document of blank lines and comments is not read by the fast path either:
            // only then is it worth asking.
            None if crate::yaml::is_blank(text) => Ok(None),
            None => crate::yaml::read_with_saphyr(text),
        }
    });
    match read {
        Ok(Some(value)) => push_value(value, origin, objects, errors),
        Ok(None) => {}
        Err(message) => errors.push(InputError {
            origin,
            object: None,
            message,
        }),
    }
}

/// The objects of one YAML document.
// The one object is held inline on purpose: boxing it would cost an allocation per object.
#[allow(clippy::large_enum_variant)]
enum DocObjects {
    None,
    One(Object),
    Many(Vec<Object>),
}

/// The line and message for a YAML document that is not UTF-8.
fn not_utf8(doc: &YamlDocument<'_>, e: std::str::Utf8Error) -> (u32, String) {
    let at = e.valid_up_to();
    let before = doc.text.get(..at).unwrap_or_default();
    let line = doc.start_line + count_lines(before);
    let column = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(at, |nl| at - nl - 1)
        + 1;
    let byte = doc.text.get(at).copied().unwrap_or_default();
    (
        line,
        format!(
            "not UTF-8 text: byte 0x{byte:02x} at column {column}; the document that starts at line {} is skipped (convert the file to UTF-8, e.g. `iconv -f LATIN1 -t UTF-8`)",
            doc.line
        ),
    )
}

fn count_lines(bytes: &[u8]) -> u32 {
    u32::try_from(memchr::memchr_iter(b'\n', bytes).count()).unwrap_or(u32::MAX)
}

/// One YAML document of a stream.
struct YamlDocument<'a> {
    /// The 1-based line the document's text starts on (after its `---` marker).
    start_line: u32,
    /// The first line that holds content, not a comment: where its objects are cited.
    line: u32,
    text: &'a [u8],
}

/// Split a YAML stream at `---` document markers. A marker is `---` at the start of a line
/// followed by a space or the end of the line; YAML forbids such a line inside any scalar, so
/// this split is exact. The split works on bytes, so a document that is not UTF-8 does not
/// affect the others.
fn split_yaml_documents(text: &[u8], first_line: u32) -> Vec<YamlDocument<'_>> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = first_line;
    // Marker lines start with `---` or `...`: the candidates are found by searching for those
    // after a line break (or at the start), not by reading every line; lines are counted
    // between them.
    let at_start = (text.starts_with(b"---") || text.starts_with(b"...")).then_some(0);
    let mut dashes = memchr::memmem::find_iter(text, b"\n---")
        .map(|i| i + 1)
        .peekable();
    let mut dots = memchr::memmem::find_iter(text, b"\n...")
        .map(|i| i + 1)
        .peekable();
    let mut next_candidate = || match (dashes.peek(), dots.peek()) {
        (Some(&d), Some(&p)) if p < d => dots.next(),
        (Some(_), _) => dashes.next(),
        (None, _) => dots.next(),
    };
    let (mut counted_to, mut counted_line) = (0usize, first_line);
    let mut candidate = at_start.or_else(&mut next_candidate);
    while let Some(offset) = candidate {
        candidate = next_candidate();
        let rest = text.get(offset..).unwrap_or_default();
        let line_len = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
        let line = rest.get(..line_len).unwrap_or_default();
        let mut content = line;
        while let Some(c) = content.strip_suffix(b"\n").or(content.strip_suffix(b"\r")) {
            content = c;
        }
        let is_marker = content == b"---"
            || content.starts_with(b"--- ")
            || content.starts_with(b"---\t")
            || content == b"..."
            || content.starts_with(b"... ");
        if !is_marker {
            continue;
        }
        counted_line = counted_line.saturating_add(count_lines(
            text.get(counted_to..offset).unwrap_or_default(),
        ));
        counted_to = offset;
        let line_no = counted_line;
        docs.push((start_line, text.get(start..offset).unwrap_or_default()));
        // Content after `--- ` on the same line belongs to the next document.
        if content.starts_with(b"---") && content.len() > 3 {
            start = offset + 4;
            start_line = line_no;
        } else {
            start = offset + line.len();
            start_line = line_no + 1;
        }
    }
    docs.push((start_line, text.get(start..).unwrap_or_default()));
    // Cite the first line that holds content, not the marker or leading comments.
    docs.into_iter()
        .map(|(start_line, text)| {
            let skipped = text
                .split(|b| *b == b'\n')
                .take_while(|l| {
                    let l = l.trim_ascii();
                    l.is_empty() || l.starts_with(b"#")
                })
                .count();
            YamlDocument {
                start_line,
                line: start_line.saturating_add(u32::try_from(skipped).unwrap_or(u32::MAX)),
                text,
            }
        })
        .collect()
}

/// Concatenated JSON values. A value that does not parse is an error naming the lines it
/// spans; reading goes on at the next line that starts with `{` or `[` (how `kubectl get -o
/// json` and JSON-lines streams begin each value), so one broken value loses only itself.
fn parse_json_stream(
    source: &std::sync::Arc<str>,
    text: &[u8],
    objects: &mut Vec<Object>,
    errors: &mut Vec<InputError>,
) {
    let line_of = |offset: usize| -> u32 { count_lines(text.get(..offset).unwrap_or(text)) + 1 };
    let mut from = 0usize;
    while from < text.len() {
        let rest = text.get(from..).unwrap_or_default();
        // A first pass only checks the syntax and reads each value's `kind`; the second reads
        // a `List` (or a top-level array) one item at a time, so that the objects of a large
        // `kubectl get -o json` are never held as one JSON tree.
        let mut stream = serde_json::Deserializer::from_slice(rest).into_iter::<Shape>();
        loop {
            let before = stream.byte_offset();
            let value_start = from
                + before
                + rest
                    .get(before..)
                    .map(|r| r.len() - r.trim_ascii_start().len())
                    .unwrap_or(0);
            match stream.next() {
                None => {
                    from = text.len();
                    break;
                }
                Some(Ok(shape)) => {
                    let origin = Origin {
                        source: source.clone(),
                        line: line_of(value_start),
                    };
                    let value_text = text
                        .get(value_start..from + stream.byte_offset())
                        .unwrap_or_default();
                    read_json_value(shape, value_text, &origin, objects, errors);
                }
                Some(Err(e)) => {
                    let resume = next_json_start(text, value_start);
                    let first = line_of(value_start);
                    let skipped = match resume {
                        Some(at) => {
                            let last = line_of(at) - 1;
                            let lines = if last > first {
                                format!("lines {first}-{last} skipped")
                            } else {
                                format!("line {first} skipped")
                            };
                            format!("{lines}, reading on at line {}", last + 1)
                        }
                        None => format!("lines {first}-{} (the rest) skipped", line_of(text.len())),
                    };
                    errors.push(InputError {
                        origin: Origin {
                            source: source.clone(),
                            line: first,
                        },
                        object: None,
                        message: format!(
                            "not valid JSON: {} at line {} column {}; {skipped}",
                            json_error_reason(&e),
                            line_of(from) - 1 + u32::try_from(e.line()).unwrap_or(u32::MAX),
                            e.column()
                        ),
                    });
                    from = resume.unwrap_or(text.len());
                    break;
                }
            }
        }
    }
}

/// What the first pass over a JSON value learns: whether it is an array, or an object whose
/// items can be read one at a time (a `*List` with an `apiVersion`).
enum Shape {
    Array,
    List,
    Other,
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Shape, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Shape, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Shape::Array)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Shape, A::Error> {
                let (mut list, mut api_version, mut items) = (false, false, false);
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "kind" => {
                            let kind: serde_json::Value = map.next_value()?;
                            list = kind.as_str().is_some_and(|k| k.ends_with("List"));
                        }
                        "apiVersion" => {
                            let v: serde_json::Value = map.next_value()?;
                            api_version = v.as_str().is_some_and(|v| !v.is_empty());
                        }
                        "items" => {
                            let v: ItemsProbe = map.next_value()?;
                            items = v.0;
                        }
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(if list && api_version && items {
                    Shape::List
                } else {
                    Shape::Other
                })
            }
            fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_unit<E>(self) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether a value is an array (skipping it).
struct ItemsProbe(bool);

impl<'de> Deserialize<'de> for ItemsProbe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ItemsProbe, D::Error> {
        let shape = Shape::deserialize(d)?;
        Ok(ItemsProbe(matches!(shape, Shape::Array)))
    }
}

/// Read one JSON value the first pass found well-formed: a `List`'s or an array's items one
/// at a time, anything else as one object.
fn read_json_value(
    shape: Shape,
    text: &[u8],
    origin: &Origin,
    objects: &mut Vec<Object>,
    errors: &mut Vec<InputError>,
) {
    let mut sink = |item: serde_json::Value| push_value(item, origin.clone(), objects, errors);
    let mut de = serde_json::Deserializer::from_slice(text);
    let streamed = match shape {
        Shape::Array | Shape::List => serde::de::DeserializeSeed::deserialize(
            Items {
                sink: &mut sink,
                of_list: matches!(shape, Shape::List),
            },
            &mut de,
        ),
        Shape::Other => match serde_json::Value::deserialize(&mut de) {
            Ok(v) => {
                sink(v);
                Ok(())
            }
            Err(e) => Err(e),
        },
    };
    if let Err(e) = streamed {
        // The first pass read the same text without error; only a value nested deeper than
        // serde_json's recursion limit can fail here.
        errors.push(InputError {
            origin: origin.clone(),
            object: None,
            message: format!("not valid JSON: {}", json_error_reason(&e)),
        });
    }
}

/// The items of a JSON array, or of a `List`'s `items` (its other fields skipped), handed to a
/// sink as each is read.
struct Items<'a, F> {
    sink: &'a mut F,
    of_list: bool,
}

impl<'de, F: FnMut(serde_json::Value)> serde::de::DeserializeSeed<'de> for Items<'_, F> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.of_list {
            d.deserialize_map(self)
        } else {
            d.deserialize_seq(self)
        }
    }
}

impl<'de, F: FnMut(serde_json::Value)> serde::de::Visitor<'de> for Items<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.of_list { "a List" } else { "an array" })
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<serde_json::Value>()? {
            (self.sink)(item);
        }
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "items" {
                map.next_value_seed(Items {
                    sink: &mut *self.sink,
                    of_list: false,
                })?;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// serde_json's message without its position (which is relative to where parsing resumed).
fn json_error_reason(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(at) => s.get(..at).unwrap_or(&s).to_string(),
        None => s,
    }
}

/// The offset of the next line after `after` that starts with `{` or `[`.
fn next_json_start(text: &[u8], after: usize) -> Option<usize> {
    let mut at = after;
    loop {
        let nl = text.get(at..)?.iter().position(|b| *b == b'\n')?;
        at += nl + 1;
        if matches!(text.get(at), Some(b'{' | b'[')) {
            return Some(at);
        }
    }
}

fn push_value(
    value: serde_json::Value,
    origin: Origin,
    objects: &mut Vec<Object>,
    errors: &mut Vec<InputError>,
) {
    let serde_json::Value::Object(map) = &value else {
        errors.push(InputError {
            origin,
            object: None,
            message: format!(
                "expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
                json_type(&value)
            ),
        });
        return;
    };
    let kind = map.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
    let api_version = map
        .get("apiVersion")
        .and_then(|k| k.as_str())
        .unwrap_or_default();
    if kind.is_empty() || api_version.is_empty() {
        errors.push(InputError {
            origin,
            object: None,
            message: "object has no `kind` or no `apiVersion`".to_string(),
        });
        return;
    }
    if kind.ends_with("List") && map.get("items").is_some_and(|i| i.is_array()) {
        if let serde_json::Value::Object(mut map) = value
            && let Some(serde_json::Value::Array(items)) = map.remove("items")
        {
            for item in items {
                push_value(item, origin.clone(), objects, errors);
            }
        }
        return;
    }
    let meta: Meta = match map.get("metadata") {
        None => Meta::default(),
        Some(m) => match Meta::deserialize(m) {
            Ok(meta) => meta,
            Err(e) => {
                errors.push(InputError {
                    origin,
                    object: Some(ObjectRef::new(kind, None, "?")),
                    message: format!("unreadable metadata: {e}"),
                });
                return;
            }
        },
    };
    if meta.name.is_empty() {
        errors.push(InputError {
            origin,
            object: Some(ObjectRef::new(kind, meta.namespace.as_deref(), "")),
            message: "object has no metadata.name".to_string(),
        });
        return;
    }
    let (api_version, kind) = (api_version.to_string(), kind.to_string());
    let body = crate::object::Body::without_fields_of(value, &api_version, &kind, &meta);
    objects.push(Object {
        api_version,
        kind,
        meta,
        body,
        origin,
    });
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads

/// A pod, or the pod template of a controller: what the mesh sees of a workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// `Pod`, `Deployment`, `StatefulSet`, ... or a kfp-mesh role for synthesised pods.
    pub kind: String,
    pub name: String,
    pub namespace: String,
    /// Labels and annotations of the pod (template).
    pub labels: StringMap,
    pub annotations: StringMap,
    /// Shared between workloads whose pod specs are equal (the pods of one controller, the
    /// run pods of one component): see [`Interner`].
    pub spec: std::sync::Arc<PodSpec>,
    pub origin: Origin,
    /// Set for pods that do not exist in the input but that kfp-mesh models (KFP run pods).
    pub synthetic: bool,
    /// Its citation, made once (`Default::default()` when building one).
    pub cited: CiteCache,
    /// What is decided about it once per inventory (`Default::default()` when building one).
    pub memo: Memo,
}

/// The hash of the inventory's maps keyed by names read from the input: foldhash, seeded per
/// process (so crafted names cannot be chosen to collide), several times faster than the
/// standard library's SipHash on the short names of a cluster, which every flow looks up.
type Hasher = foldhash::fast::RandomState;
type FastMap<K, V> = HashMap<K, V, Hasher>;

/// One shared copy of equal values: a large cluster's pods repeat a few pod specs (every
/// replica of a Deployment, every run pod of a pipeline component), which are then held once.
pub struct Interner<T>(std::collections::HashSet<std::sync::Arc<T>, Hasher>);

impl<T: Eq + std::hash::Hash> Interner<T> {
    pub fn new() -> Interner<T> {
        Interner(std::collections::HashSet::default())
    }

    /// The shared copy of `value` (the first one given, for equal values).
    pub fn share(&mut self, value: T) -> std::sync::Arc<T> {
        self.share_with(value, |_| {})
    }

    /// As [`Interner::share`], with `keep` applied to a value that is kept (one equal to none
    /// kept before).
    pub fn share_with(&mut self, mut value: T, keep: impl FnOnce(&mut T)) -> std::sync::Arc<T> {
        if let Some(kept) = self.0.get(&value) {
            return std::sync::Arc::clone(kept);
        }
        keep(&mut value);
        let value = std::sync::Arc::new(value);
        self.0.insert(std::sync::Arc::clone(&value));
        value
    }
}

impl<T: Eq + std::hash::Hash> Default for Interner<T> {
    fn default() -> Interner<T> {
        Interner::new()
    }
}

impl<T> std::fmt::Debug for Interner<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Interner({} values)", self.0.len())
    }
}

impl<T> Clone for Interner<T> {
    fn clone(&self) -> Interner<T> {
        Interner(self.0.clone())
    }
}

/// Facts about a workload decided once per inventory (its data plane, the policies that apply
/// to it as a server, its NetworkPolicy isolation: every flow it takes part in asks) and kept
/// with the workload, one value of each type per inventory generation. A cache, not part of the
/// value: it answers only for the inventory [generation](Inventory::generation) it was
/// computed in.
///
/// Values are only added, never replaced, so a kept value is lent out by reference, with no
/// lock to take or reference count to change once it is there: the flows of a large cluster
/// ask for the same server's facts from every core at once. At most [`Memo::MAX_KEPT`] values
/// are kept, those of older generations included (a check uses two or three generations); past
/// that, each answer is computed anew.
#[derive(Default)]
pub struct Memo(std::sync::OnceLock<Box<MemoEntry>>);

struct MemoEntry {
    generation: u64,
    value: Box<dyn std::any::Any + Send + Sync>,
    next: std::sync::OnceLock<Box<MemoEntry>>,
}

/// A value from a [`Memo`]: the kept one, or one computed for this question alone.
pub enum Memoized<'a, T> {
    Kept(&'a T),
    Fresh(Box<T>),
}

impl<T> std::ops::Deref for Memoized<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Memoized::Kept(value) => value,
            Memoized::Fresh(value) => value,
        }
    }
}

impl Memo {
    /// How many values one memo keeps at most (five kinds of fact, over the few generations
    /// of a check or of a few checks of one inventory).
    pub const MAX_KEPT: usize = 32;

    /// The value of type `T` computed for this inventory generation, else `compute()` (then
    /// kept, when there is room).
    pub fn get_or_compute<T: Send + Sync + 'static>(
        &self,
        generation: u64,
        compute: impl Fn() -> T,
    ) -> Memoized<'_, T> {
        let kept_here =
            |entry: &MemoEntry| -> bool { entry.generation == generation && entry.value.is::<T>() };
        let mut slot = &self.0;
        let mut kept = 0;
        while let Some(entry) = slot.get() {
            if kept_here(entry)
                && let Some(value) = entry.value.downcast_ref::<T>()
            {
                return Memoized::Kept(value);
            }
            slot = &entry.next;
            kept += 1;
        }
        // Kept values are read by callers that word their explanations too.
        let compute = || crate::explain::worded(&compute);
        let mut value: Box<dyn std::any::Any + Send + Sync> = Box::new(compute());
        loop {
            if kept >= Memo::MAX_KEPT {
                return match value.downcast::<T>() {
                    Ok(value) => Memoized::Fresh(value),
                    Err(_) => Memoized::Fresh(Box::new(compute())),
                };
            }
            let entry = Box::new(MemoEntry {
                generation,
                value,
                next: std::sync::OnceLock::new(),
            });
            match slot.set(entry) {
                Ok(()) => break,
                // Another thread added an entry here first: it may be this very value.
                Err(entry) => {
                    value = entry.value;
                    let Some(theirs) = slot.get() else { break };
                    if kept_here(theirs)
                        && let Some(value) = theirs.value.downcast_ref::<T>()
                    {
                        return Memoized::Kept(value);
                    }
                    slot = &theirs.next;
                    kept += 1;
                }
            }
        }
        match slot.get().and_then(|entry| entry.value.downcast_ref::<T>()) {
            Some(value) => Memoized::Kept(value),
            None => Memoized::Fresh(Box::new(compute())),
        }
    }
}

impl Clone for Memo {
    fn clone(&self) -> Memo {
        Memo::default()
    }
}

impl PartialEq for Memo {
    fn eq(&self, _: &Memo) -> bool {
        true
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memo")
    }
}

/// A workload's kind, namespace and name as text: see [`Workload::named`].
pub struct WorkloadName<'a>(&'a Workload);

impl std::fmt::Display for WorkloadName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let w = self.0;
        // Piece by piece: `write!` would pass each piece through the padding logic.
        for piece in [&w.kind, " ", &w.namespace, "/", &w.name] {
            f.write_str(piece)?;
        }
        Ok(())
    }
}

impl Workload {
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::new(&self.kind, Some(&self.namespace), &self.name)
    }
    /// What [`Workload::object_ref`] displays (`Deployment ns/name`), without copying it: for
    /// explanation steps, which name workloads many times per flow.
    pub fn named(&self) -> WorkloadName<'_> {
        WorkloadName(self)
    }
    pub fn cite(&self) -> Cited {
        self.cited
            .get_or_make(|| Cited::new(self.object_ref(), self.origin.clone()))
    }
    pub fn service_account(&self) -> &str {
        self.spec
            .service_account_name
            .as_deref()
            .or(self.spec.service_account.as_deref())
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
    }
    pub fn host_network(&self) -> bool {
        self.spec.host_network.unwrap_or(false)
    }
    /// An `istio-proxy` container already present (classic or native sidecar).
    pub fn has_istio_proxy(&self) -> bool {
        self.spec.containers.iter().any(|c| c.name == "istio-proxy")
            || self
                .spec
                .init_containers
                .iter()
                .flatten()
                .any(|c| c.name == "istio-proxy" && c.restart_policy.as_deref() == Some("Always"))
    }
    /// Resolve a container port name to its number.
    /// The container port a Service port leads to on this workload: `targetPort` as a number,
    /// as a container port name, or the Service port itself when absent. `None` when a named
    /// `targetPort` is declared by no container of the workload.
    pub fn target_port(&self, port: &ServicePort) -> Option<u16> {
        match &port.target_port {
            None => u16::try_from(port.port).ok(),
            Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
            Some(IntOrString::String(s)) => match s.parse::<u16>() {
                Ok(n) => Some(n),
                Err(_) => self.port_by_name(s),
            },
        }
    }

    pub fn port_by_name(&self, name: &str) -> Option<u16> {
        self.spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
    }
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key)
    }
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key)
    }
}

/// A Service with its typed spec.
// The typed resources live with their specs in `model`; re-exported here, where they are
// indexed.
pub use crate::model::{
    AuthorizationPolicy, DestinationRule, MutatingWebhookConfiguration, Namespace, NetworkPolicy,
    PeerAuthentication, RequestAuthentication, Service, Sidecar,
};

/// An object Istio's validation would reject: it is reported and takes no effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub object: Cited,
    pub issues: Vec<ValidationIssue>,
}

/// Everything the analysis knows, indexed for the semantics. Build it with
/// [`Inventory::from_objects`]; per-namespace lists are in a canonical order (creation time,
/// then name) so no verdict depends on the order of the input.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub objects: Vec<Object>,
    pub errors: Vec<InputError>,
    pub namespaces: BTreeMap<String, Namespace>,
    /// Shared: a synthesised run pod is also held by the check that made it.
    pub workloads: Vec<std::sync::Arc<Workload>>,
    pub services: BTreeMap<(String, String), Service>,
    pub service_accounts: BTreeMap<(String, String), Cited>,
    pub mesh: MeshConfig,
    /// The `istio` ConfigMap the mesh config was read from, when the input has one.
    pub mesh_source: Option<Cited>,
    pub injector: InjectorConfig,
    pub injector_source: Option<Cited>,
    pub mutating_webhooks: Vec<MutatingWebhookConfiguration>,
    pub peer_authentications: BTreeMap<String, Vec<PeerAuthentication>>,
    pub destination_rules: BTreeMap<String, Vec<DestinationRule>>,
    pub authorization_policies: BTreeMap<String, Vec<AuthorizationPolicy>>,
    pub request_authentications: BTreeMap<String, Vec<RequestAuthentication>>,
    pub sidecars: BTreeMap<String, Vec<Sidecar>>,
    pub network_policies: BTreeMap<String, Vec<NetworkPolicy>>,
    /// Istio's injector webhooks (A1), computed once from `mutating_webhooks` when first asked
    /// for (`mesh::membership::injector_webhooks`); `true` when the input has none and the
    /// default install's are assumed.
    pub injector_webhooks: std::sync::OnceLock<(Vec<InjectorWebhook>, bool)>,
    /// Istio objects validation rejects (not in the lists above).
    pub rejected: Vec<Rejected>,
    /// Validation warnings on objects that do take effect.
    pub warnings: Vec<Rejected>,
    workloads_by_ns: FastMap<String, Vec<usize>>,
    /// The synthesised workloads of `workloads_by_ns` (few; the flows of their role ask for
    /// them in every namespace).
    synthetic_by_ns: FastMap<String, Vec<usize>>,
    /// The workload [`Inventory::workload`] answers for each namespace and name, as an index
    /// into `workloads`, found by a hash of the two (every flow asks several times; a search
    /// of the sorted workloads compared names in thousands of places in memory).
    workload_names: hashbrown::HashTable<usize>,
    /// The hash of `workload_names`.
    names_hasher: Hasher,
    /// What each Service of `services` selects, by namespace and name: its selector and the
    /// indices of the workloads, in `workloads_by_ns` order (computed in `finish`, extended by
    /// `add_workload`). Every flow asks for its Service's endpoints.
    endpoints: FastMap<String, FastMap<String, Endpoints>>,
    /// The workloads' pod specs, each held once.
    pod_specs: Interner<PodSpec>,
    /// The pod specs read from the input by the text they were read from, while objects are
    /// added (emptied by `finish`): the pods of one controller, and of one kind across
    /// namespaces, repeat the same text, which is then read once.
    pod_spec_texts: FastMap<Box<str>, std::sync::Arc<PodSpec>>,
    /// Changes whenever the inventory does (see [`Memo`]).
    generation: Generation,
}

/// What a Service selects: its selector (to know the Service asked about is the one these were
/// found for) and the indices of the workloads it selects.
#[derive(Clone, Debug, Default)]
struct Endpoints {
    selector: BTreeMap<String, String>,
    workloads: Vec<usize>,
}

/// Which state of an inventory this is: unique in the process, a new one for every inventory
/// (a default one too) and every change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Generation(u64);

impl Generation {
    fn next() -> Generation {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Generation(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

impl Default for Generation {
    fn default() -> Generation {
        Generation::next()
    }
}

/// A Service's selector, when it has one that selects anything (an empty or absent selector
/// selects no pods: the endpoints are managed by hand).
fn nonempty_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether a Service selector selects a workload.
fn selects(selector: &BTreeMap<String, String>, w: &Workload) -> bool {
    selector.iter().all(|(k, v)| w.labels.get(k) == Some(v))
}

const ISTIO_SECURITY: &str = "security.istio.io";
/// The label Kubernetes sets on every Namespace, to its name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
const ISTIO_NETWORKING: &str = "networking.istio.io";

impl Inventory {
    /// Type and index objects. Objects of unknown kinds are kept in `objects` and otherwise
    /// ignored; objects whose spec cannot be read become errors.
    pub fn from_objects(mut objects: Vec<Object>, mut errors: Vec<InputError>) -> Inventory {
        sort_objects(&mut objects);
        // The same object twice: keep the first (by origin), report the others. In place: a
        // large input is not held twice.
        objects.dedup_by(|o, prev| {
            let same = prev.kind == o.kind
                && prev.group() == o.group()
                && prev.meta.name == o.meta.name
                && prev.meta.namespace == o.meta.namespace;
            if same && (prev.body != o.body || prev.meta != o.meta) {
                errors.push(InputError {
                    origin: o.origin.clone(),
                    object: Some(o.object_ref()),
                    message: format!(
                        "defined again with different content (first at {}); the first definition is used",
                        prev.origin
                    ),
                });
            }
            same
        });
        let mut inv = Inventory {
            errors,
            ..Inventory::default()
        };
        for o in &objects {
            inv.add(o);
        }
        inv.objects = objects;
        inv.finish();
        inv
    }

    /// Parse several sources and build the inventory in one go.
    pub fn from_sources<'a>(sources: impl IntoIterator<Item = (&'a str, &'a str)>) -> Inventory {
        let mut objects = Vec::new();
        let mut errors = Vec::new();
        for (name, text) in sources {
            let (o, e) = parse_stream(name, text);
            objects.extend(o);
            errors.extend(e);
        }
        Inventory::from_objects(objects, errors)
    }

    /// The inventory with `labels` set on Namespace `ns`, as `kubectl label --overwrite` would:
    /// on its Namespace object when the input has one, else on a Namespace made for it whose
    /// origin is `origin` (the option that stated it).
    pub fn with_namespace_labels(
        self,
        ns: &str,
        labels: &BTreeMap<String, String>,
        origin: &str,
    ) -> Inventory {
        let Inventory {
            mut objects,
            mut errors,
            ..
        } = self;
        match objects
            .iter_mut()
            .find(|o| o.kind == "Namespace" && o.group().is_empty() && o.meta.name == ns)
        {
            Some(o) => o.meta.labels.extend(labels.clone()),
            None => {
                let doc = serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": ns, "labels": labels},
                });
                let (o, e) = parse_stream(origin, &doc.to_string());
                objects.extend(o);
                errors.extend(e);
            }
        }
        Inventory::from_objects(objects, errors)
    }

    /// Add objects to a built inventory: typed, indexed and validated like the input. There is
    /// no de-duplication: callers add only objects the inventory lacks.
    pub fn extend(&mut self, objects: Vec<Object>) {
        for o in &objects {
            self.add(o);
        }
        self.objects.extend(objects);
        sort_objects(&mut self.objects);
        self.finish();
    }

    /// The object of this kind, namespace and name (a namespaced object read without
    /// `metadata.namespace` is found in `default`). `objects` is sorted by kind, namespace and
    /// name, so this is a binary search.
    pub fn find(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<&Object> {
        let lookup = |ns: Option<&str>| {
            let key = (kind, ns, name);
            let at = self.objects.partition_point(|o| {
                (
                    o.kind.as_str(),
                    o.meta.namespace.as_deref(),
                    o.meta.name.as_str(),
                ) < key
            });
            self.objects.get(at).filter(|o| {
                (
                    o.kind.as_str(),
                    o.meta.namespace.as_deref(),
                    o.meta.name.as_str(),
                ) == key
            })
        };
        lookup(namespace).or_else(|| match namespace {
            Some("default") => lookup(None),
            _ => None,
        })
    }

    /// Add a workload the input does not contain (a synthesised KFP run pod).
    pub fn add_workload(&mut self, w: impl Into<std::sync::Arc<Workload>>) {
        let w = w.into();
        self.generation = Generation::next();
        let i = self.push_workload(std::sync::Arc::clone(&w));
        self.name_workload(i);
        for ((ns, name), svc) in self
            .services
            .range((w.namespace.clone(), String::new())..)
            .take_while(|((ns, _), _)| *ns == w.namespace)
        {
            if let Some(selector) = nonempty_selector(svc)
                && selects(selector, &w)
                && let Some(endpoints) = self
                    .endpoints
                    .get_mut(ns.as_str())
                    .and_then(|m| m.get_mut(name.as_str()))
            {
                endpoints.workloads.push(i);
            }
        }
    }

    /// A workload into the lists (its index returned); while the inventory is being built,
    /// `finish` then sorts them and finds the Services' endpoints.
    fn push_workload(&mut self, w: std::sync::Arc<Workload>) -> usize {
        let i = self.workloads.len();
        self.index_namespace(i, &w);
        self.workloads.push(w);
        i
    }

    /// Enter workload `i` in the indices by namespace.
    fn index_namespace(&mut self, i: usize, w: &Workload) {
        self.workloads_by_ns
            .entry(w.namespace.clone())
            .or_default()
            .push(i);
        if w.synthetic {
            self.synthetic_by_ns
                .entry(w.namespace.clone())
                .or_default()
                .push(i);
        }
    }

    fn add(&mut self, o: &Object) {
        if let Some(path) = o.pod_template_path() {
            self.add_pod_template(o, path);
            return;
        }
        let group = o.group();
        let ns = o.meta.namespace_or_default().to_string();
        match (group, o.kind.as_str()) {
            ("", "Namespace") => {
                let mut meta = o.meta.clone();
                // Kubernetes sets this label on every namespace.
                if !meta.labels.contains_key(NAMESPACE_NAME_LABEL) {
                    meta.labels.insert(NAMESPACE_NAME_LABEL, &o.meta.name);
                }
                let r = Resource {
                    api_version: o.api_version.clone(),
                    kind: o.kind.clone(),
                    meta,
                    spec: (),
                    origin: o.origin.clone(),
                    cited: CiteCache::default(),
                };
                self.namespaces.insert(o.meta.name.clone(), r);
            }
            ("", "Service") => {
                if let Some(r) = self.typed::<ServiceSpec>(o, Some("spec")) {
                    self.services.insert((ns, o.meta.name.clone()), r);
                }
            }
            ("", "ServiceAccount") => {
                self.service_accounts
                    .insert((ns, o.meta.name.clone()), o.cite());
            }
            ("", "ConfigMap") => self.add_config_map(o),
            ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
                if let Some(r) = self.typed::<MutatingWebhookConfigurationSpec>(o, None) {
                    self.mutating_webhooks.push(r);
                }
            }
            (ISTIO_SECURITY, "PeerAuthentication") if istio_version(o, &["v1", "v1beta1"]) => {
                if let Some(r) = self.typed::<PeerAuthenticationSpec>(o, Some("spec")) {
                    let issues = validation::validate_peer_authentication(&r);
                    if self.record_validation(r.cite(), issues) {
                        self.peer_authentications.entry(ns).or_default().push(r);
                    }
                }
            }
            (ISTIO_SECURITY, "AuthorizationPolicy") if istio_version(o, &["v1", "v1beta1"]) => {
                if let Some(r) = self.typed::<AuthorizationPolicySpec>(o, Some("spec")) {
                    let issues = validation::validate_authorization_policy(&r);
                    if self.record_validation(r.cite(), issues) {
                        self.authorization_policies.entry(ns).or_default().push(r);
                    }
                }
            }
            (ISTIO_SECURITY, "RequestAuthentication") if istio_version(o, &["v1", "v1beta1"]) => {
                if let Some(r) = self.typed::<RequestAuthenticationSpec>(o, Some("spec")) {
                    self.request_authentications.entry(ns).or_default().push(r);
                }
            }
            (ISTIO_NETWORKING, "DestinationRule")
                if istio_version(o, &["v1", "v1beta1", "v1alpha3"]) =>
            {
                if let Some(r) = self.typed::<DestinationRuleSpec>(o, Some("spec")) {
                    let issues = validation::validate_destination_rule(&r);
                    if self.record_validation(r.cite(), issues) {
                        self.destination_rules.entry(ns).or_default().push(r);
                    }
                }
            }
            (ISTIO_NETWORKING, "Sidecar") if istio_version(o, &["v1", "v1beta1", "v1alpha3"]) => {
                if let Some(r) = self.typed::<SidecarSpec>(o, Some("spec")) {
                    self.sidecars.entry(ns).or_default().push(r);
                }
            }
            ("networking.k8s.io", "NetworkPolicy") => {
                if let Some(r) = self.typed::<NetworkPolicySpec>(o, Some("spec")) {
                    self.network_policies.entry(ns).or_default().push(r);
                }
            }
            _ => {}
        }
    }

    /// Record validation issues; returns whether the object takes effect (no error).
    fn record_validation(&mut self, object: Cited, issues: Vec<ValidationIssue>) -> bool {
        if issues.is_empty() {
            return true;
        }
        let rejected = issues.iter().any(|i| i.severity == Severity::Error);
        let entry = Rejected { object, issues };
        if rejected {
            self.rejected.push(entry);
        } else {
            self.warnings.push(entry);
        }
        !rejected
    }

    /// Deserialize `body[field]` (or the whole body) into `S`, recording an error on failure.
    fn typed<S: DeserializeOwned + Default>(
        &mut self,
        o: &Object,
        field: Option<&str>,
    ) -> Option<Resource<S>> {
        // Missing or null: the default.
        let spec = match field {
            Some(f) => o
                .read_at::<Option<S>>(&[f])
                .map(|s| s.flatten().unwrap_or_default()),
            None => match o.value() {
                serde_json::Value::Null => Ok(S::default()),
                value => S::deserialize(value).map_err(|e| e.to_string()),
            },
        };
        match spec {
            Ok(spec) => Some(Resource {
                api_version: o.api_version.clone(),
                kind: o.kind.clone(),
                meta: o.meta.clone(),
                spec,
                origin: o.origin.clone(),
                cited: CiteCache::default(),
            }),
            Err(e) => {
                self.errors.push(InputError {
                    origin: o.origin.clone(),
                    object: Some(o.object_ref()),
                    message: format!("unreadable {}: {e}", field.unwrap_or("object")),
                });
                None
            }
        }
    }

    /// A workload of the pod template at `path` (its `metadata` and `spec`); a Pod (`path`
    /// empty) is its own template, with the object's metadata.
    fn add_pod_template(&mut self, o: &Object, path: &[&str]) {
        let is_pod = path.is_empty();
        // Read straight from the body's text, with no tree: the template's metadata and spec
        // only.
        let unreadable = |what: &str, e: String| InputError {
            origin: o.origin.clone(),
            object: Some(o.object_ref()),
            message: format!("unreadable {what}: {e}"),
        };
        // A pod's own metadata is read already; a template's is in the template.
        let meta = if is_pod {
            o.meta.clone()
        } else {
            match o.read_at_from_text::<Meta>(&[path, &["metadata"]].concat()) {
                Ok(m) => m.unwrap_or_default(),
                Err(e) => {
                    self.errors.push(unreadable("pod template metadata", e));
                    return;
                }
            }
        };
        let spec_path = [path, &["spec"]].concat();
        let spec_text = o.text_at(&spec_path);
        if let Some(spec) = spec_text.and_then(|t| self.pod_spec_texts.get(t)) {
            let spec = std::sync::Arc::clone(spec);
            self.push_pod_template_workload(o, meta, spec);
            return;
        }
        // Read from the text found above (a second search of the body otherwise); an error
        // is worded by `read_at_from_text`, as for a spec that is not there.
        let read = match spec_text.map(serde_json::from_str::<PodSpec>) {
            Some(Ok(spec)) => Ok(Some(spec)),
            _ => o.read_at_from_text::<PodSpec>(&spec_path),
        };
        let spec = match read {
            Ok(Some(s)) => Ok(s),
            // A template without a spec has the default one; a pod needs its own.
            Ok(None) if !is_pod => Ok(PodSpec::default()),
            Ok(None) => PodSpec::deserialize(serde_json::Value::Null).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let spec = match spec {
            Ok(s) => s,
            Err(e) => {
                self.errors.push(unreadable("pod spec", e));
                return;
            }
        };
        let spec = self.pod_specs.share_with(spec, PodSpec::shrink_to_fit);
        if let Some(text) = spec_text {
            self.pod_spec_texts
                .insert(text.into(), std::sync::Arc::clone(&spec));
        }
        self.push_pod_template_workload(o, meta, spec);
    }

    /// The workload of the pod template of `o`, whose metadata and spec are read.
    fn push_pod_template_workload(
        &mut self,
        o: &Object,
        meta: Meta,
        spec: std::sync::Arc<PodSpec>,
    ) {
        self.push_workload(std::sync::Arc::new(Workload {
            kind: o.kind.clone(),
            name: o.meta.name.clone(),
            namespace: o.meta.namespace_or_default().to_string(),
            labels: meta.labels,
            annotations: meta.annotations,
            spec,
            origin: o.origin.clone(),
            synthetic: false,
            cited: CiteCache::default(),
            memo: Memo::default(),
        }));
    }

    fn add_config_map(&mut self, o: &Object) {
        // Only Istio's own ConfigMaps are read here; the others are not parsed again.
        if !o.meta.name.starts_with("istio") {
            return;
        }
        let data = o.get("data");
        let data = data.as_ref();
        let get = |k: &str| data.and_then(|d| d.get(k)).and_then(|v| v.as_str());
        let name = o.meta.name.as_str();
        if name == "istio" || name.starts_with("istio-") && get("mesh").is_some() {
            // Prefer the default revision's `istio` ConfigMap when several are given.
            if self.mesh_source.is_some() && name != "istio" {
                return;
            }
            if let Some(mesh) = get("mesh") {
                match parse_mesh_config(mesh, o.meta.namespace_or_default()) {
                    Ok(m) => {
                        self.mesh = m;
                        self.mesh_source = Some(o.cite());
                    }
                    Err(e) => self.errors.push(InputError {
                        origin: o.origin.clone(),
                        object: Some(o.object_ref()),
                        message: format!("unreadable data.mesh: {e}"),
                    }),
                }
            }
        } else if name == "istio-sidecar-injector" || name.starts_with("istio-sidecar-injector-") {
            if self.injector_source.is_some() && name != "istio-sidecar-injector" {
                return;
            }
            match parse_injector_config(get("config"), get("values")) {
                Ok(c) => {
                    self.injector = c;
                    self.injector_source = Some(o.cite());
                }
                Err(e) => self.errors.push(InputError {
                    origin: o.origin.clone(),
                    object: Some(o.object_ref()),
                    message: e,
                }),
            }
        }
    }

    fn finish(&mut self) {
        fn canonical<S>(map: &mut BTreeMap<String, Vec<Resource<S>>>) {
            for list in map.values_mut() {
                list.sort_by(|a, b| creation_order(&a.meta, &b.meta));
            }
        }
        canonical(&mut self.peer_authentications);
        canonical(&mut self.destination_rules);
        canonical(&mut self.authorization_policies);
        canonical(&mut self.request_authentications);
        canonical(&mut self.sidecars);
        canonical(&mut self.network_policies);
        self.mutating_webhooks
            .sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        // Computed again when first asked for: the webhooks may have changed.
        self.injector_webhooks = std::sync::OnceLock::new();
        self.generation = Generation::next();
        self.workloads.sort_by(|a, b| {
            (&a.namespace, &a.name, &a.kind).cmp(&(&b.namespace, &b.name, &b.kind))
        });
        self.workloads_by_ns.clear();
        self.synthetic_by_ns.clear();
        self.workload_names.clear();
        for i in 0..self.workloads.len() {
            if let Some(w) = self.workloads.get(i).map(std::sync::Arc::clone) {
                self.index_namespace(i, &w);
            }
            self.name_workload(i);
        }
        // Only the objects added since the last `finish` read pod specs from text.
        self.pod_spec_texts = FastMap::default();
        let mut endpoints: FastMap<String, FastMap<String, _>> = FastMap::default();
        for ((ns, name), svc) in &self.services {
            if let Some(selector) = nonempty_selector(svc) {
                let indices = self.selected(svc.namespace(), selector).collect();
                endpoints.entry(ns.clone()).or_default().insert(
                    name.clone(),
                    Endpoints {
                        selector: selector.clone(),
                        workloads: indices,
                    },
                );
            }
        }
        self.endpoints = endpoints;
    }

    /// The indices of the workloads of `ns` that `selector` selects, in `workloads_by_ns` order.
    fn selected<'a>(
        &'a self,
        ns: &str,
        selector: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = usize> + 'a {
        self.workloads_by_ns
            .get(ns)
            .into_iter()
            .flatten()
            .copied()
            .filter(|i| self.workloads.get(*i).is_some_and(|w| selects(selector, w)))
    }

    // -----------------------------------------------------------------------------------------
    // Look-ups used by the semantics

    /// Which state of the inventory this is: it changes whenever the inventory does (objects
    /// or workloads added), so a fact kept for one generation is never used for another.
    pub fn generation(&self) -> u64 {
        self.generation.0
    }

    /// Labels of a namespace (`kubernetes.io/metadata.name` alone when the namespace is not in
    /// the input: Kubernetes sets it on every namespace).
    pub fn namespace_labels(&self, ns: &str) -> std::borrow::Cow<'_, StringMap> {
        match self.namespaces.get(ns) {
            Some(n) => std::borrow::Cow::Borrowed(&n.meta.labels),
            None => std::borrow::Cow::Owned(StringMap::from([(NAMESPACE_NAME_LABEL, ns)])),
        }
    }

    /// The synthesised workloads of namespace `ns` ([`Workload::synthetic`]).
    pub fn synthetic_workloads_in<'a>(
        &'a self,
        ns: &str,
    ) -> impl Iterator<Item = &'a Workload> + 'a {
        self.synthetic_by_ns
            .get(ns)
            .into_iter()
            .flatten()
            .filter_map(|i| self.workloads.get(*i).map(|w| &**w))
    }

    pub fn workloads_in<'a>(&'a self, ns: &str) -> impl Iterator<Item = &'a Workload> + 'a {
        self.workloads_by_ns
            .get(ns)
            .into_iter()
            .flatten()
            .filter_map(|i| self.workloads.get(*i).map(|w| &**w))
    }

    /// Find a workload by namespace and name (any kind; a Pod is preferred to a controller of
    /// the same name only when no controller has it).
    pub fn workload(&self, ns: &str, name: &str) -> Option<&Workload> {
        let hash = name_hash(&self.names_hasher, ns, name);
        let i = self.workload_names.find(hash, |&i| {
            self.workloads
                .get(i)
                .is_some_and(|w| w.name == name && w.namespace == ns)
        })?;
        self.workloads.get(*i).map(|w| &**w)
    }

    /// Enter workload `i` in `workload_names`: of the workloads of one namespace and name, a
    /// controller before a Pod, then by kind; of equal ones, the first (sorted by `finish`, or
    /// added before).
    fn name_workload(&mut self, i: usize) {
        let Some(w) = self.workloads.get(i) else {
            return;
        };
        fn order(w: &Workload) -> (bool, &str) {
            (w.kind == "Pod", &w.kind)
        }
        let hasher = &self.names_hasher;
        let hash = name_hash(hasher, &w.namespace, &w.name);
        let workloads = &self.workloads;
        let same = |j: &usize| {
            workloads
                .get(*j)
                .is_some_and(|o| o.name == w.name && o.namespace == w.namespace)
        };
        match self.workload_names.find_mut(hash, same) {
            Some(kept) => {
                if workloads.get(*kept).is_some_and(|k| order(w) < order(k)) {
                    *kept = i;
                }
            }
            None => {
                self.workload_names.insert_unique(hash, i, |&j| {
                    workloads
                        .get(j)
                        .map_or(0, |o| name_hash(hasher, &o.namespace, &o.name))
                });
            }
        }
    }

    pub fn service(&self, ns: &str, name: &str) -> Option<&Service> {
        thread_local! {
            /// The key looked up, written into room kept per thread: a flow looks up Services
            /// several times, and the map's keys are owned strings.
            static KEY: std::cell::RefCell<(String, String)> =
                const { std::cell::RefCell::new((String::new(), String::new())) };
        }
        KEY.with_borrow_mut(|key| {
            key.0.clear();
            key.0.push_str(ns);
            key.1.clear();
            key.1.push_str(name);
            self.services.get(key)
        })
    }

    /// Workloads a Service selects (none for a Service without selector).
    pub fn service_endpoints<'a>(&'a self, svc: &Service) -> Vec<&'a Workload> {
        let Some(selector) = nonempty_selector(svc) else {
            return Vec::new();
        };
        let workload = |i: &usize| self.workloads.get(*i).map(|w| &**w);
        // Known when it is this inventory's Service (or one with the same selector).
        let known = self
            .endpoints
            .get(svc.namespace())
            .and_then(|m| m.get(svc.name()))
            .filter(|known| known.selector == *selector)
            .map(|known| &known.workloads);
        match known {
            Some(indices) => indices.iter().filter_map(workload).collect(),
            None => self
                .selected(svc.namespace(), selector)
                .filter_map(|i| workload(&i))
                .collect(),
        }
    }

    /// Services that select a workload.
    pub fn services_of<'a>(&'a self, w: &Workload) -> Vec<&'a Service> {
        self.services
            .range((w.namespace.clone(), String::new())..)
            .take_while(|((ns, _), _)| *ns == w.namespace)
            .map(|(_, s)| s)
            .filter(|s| nonempty_selector(s).is_some_and(|sel| selects(sel, w)))
            .collect()
    }

    pub fn peer_authentications_in(&self, ns: &str) -> &[PeerAuthentication] {
        self.peer_authentications
            .get(ns)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
    pub fn authorization_policies_in(&self, ns: &str) -> &[AuthorizationPolicy] {
        self.authorization_policies
            .get(ns)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
    pub fn destination_rules_in(&self, ns: &str) -> &[DestinationRule] {
        self.destination_rules
            .get(ns)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
    pub fn request_authentications_in(&self, ns: &str) -> &[RequestAuthentication] {
        self.request_authentications
            .get(ns)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
    pub fn sidecars_in(&self, ns: &str) -> &[Sidecar] {
        self.sidecars.get(ns).map(Vec::as_slice).unwrap_or_default()
    }
    pub fn network_policies_in(&self, ns: &str) -> &[NetworkPolicy] {
        self.network_policies
            .get(ns)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
    pub fn has_network_policies(&self) -> bool {
        self.network_policies.values().any(|v| !v.is_empty())
    }
}

/// Objects in [`object_order`], equal ones in the order read. Their order is found on
/// indices and then applied in place, each object moved once: sorting the objects themselves
/// (over 200 bytes each) would move each of them at every merge.
fn sort_objects(objects: &mut [Object]) {
    // The order is computed on a vector of keys, not by reaching into two objects for every
    // comparison; the few kinds and the namespaces are ranked once, so that most comparisons
    // are of integers and names are compared only within one kind and namespace.
    let mut kinds: FastMap<&str, u32> = FastMap::default();
    let mut namespaces: FastMap<Option<&str>, u32> = FastMap::default();
    for o in objects.iter() {
        kinds.entry(o.kind.as_str()).or_default();
        namespaces.entry(o.meta.namespace.as_deref()).or_default();
    }
    rank(&mut kinds);
    rank(&mut namespaces);
    let mut keys: Vec<(u32, u32, &str, &Origin, usize)> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let (kind, namespace, name, origin) = object_order(o);
            let kind = kinds.get(kind).copied().unwrap_or_default();
            let namespace = namespaces.get(&namespace).copied().unwrap_or_default();
            (kind, namespace, name, origin, i)
        })
        .collect();
    keys.sort_unstable();
    let mut order: Vec<usize> = keys.into_iter().map(|k| k.4).collect();
    // Position `i` takes the object at `order[i]`: follow each cycle of the permutation.
    for start in 0..order.len() {
        let mut at = start;
        loop {
            let from = order.get(at).copied().unwrap_or(start);
            if let Some(done) = order.get_mut(at) {
                *done = at;
            }
            if from == start {
                break;
            }
            objects.swap(at, from);
            at = from;
        }
    }
}

/// Each key's rank in the order of the keys.
fn rank<K: Ord + Copy + std::hash::Hash>(ranks: &mut FastMap<K, u32>) {
    let mut keys: Vec<K> = ranks.keys().copied().collect();
    keys.sort_unstable();
    for (i, k) in (0u32..).zip(keys) {
        ranks.insert(k, i);
    }
}

/// The order of `Inventory::objects`: kind, namespace, name, then origin (no allocation).
fn object_order(o: &Object) -> (&str, Option<&str>, &str, &Origin) {
    (
        o.kind.as_str(),
        o.meta.namespace.as_deref(),
        o.meta.name.as_str(),
        &o.origin,
    )
}

/// The hash of a workload's namespace and name in `Inventory::workload_names`.
fn name_hash(hasher: &Hasher, ns: &str, name: &str) -> u64 {
    use std::hash::BuildHasher;
    hasher.hash_one((ns, name))
}

fn istio_version(o: &Object, versions: &[&str]) -> bool {
    o.api_version
        .split_once('/')
        .is_some_and(|(_, v)| versions.contains(&v))
}

/// Istio's order among policies of one scope: oldest `creationTimestamp` first, then name.
/// Objects without a timestamp (manifests not yet applied) sort after those with one, by name.
pub fn creation_order(a: &Meta, b: &Meta) -> std::cmp::Ordering {
    let key = |m: &Meta| {
        (
            m.creation_timestamp.is_none(),
            m.creation_timestamp.clone(),
            m.name.clone(),
            m.namespace.clone(),
        )
    };
    key(a).cmp(&key(b))
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawMesh {
    root_namespace: Option<String>,
    trust_domain: Option<String>,
    trust_domain_aliases: Option<Vec<String>>,
    enable_auto_mtls: Option<bool>,
    default_config: Option<RawProxyConfig>,
    extension_providers: Option<Vec<serde_json::Value>>,
    path_normalization: Option<RawPathNormalization>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct RawPathNormalization {
    normalization: Option<String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawProxyConfig {
    hold_application_until_proxy_starts: Option<bool>,
}

/// One `extensionProviders` entry: its name, its kind (the one key besides `name`) and the
/// fields CUSTOM authorization checks.
fn parse_extension_provider(v: &serde_json::Value) -> ExtensionProvider {
    let text = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    };
    let mut p = ExtensionProvider {
        name: text(v.get("name")).unwrap_or_default(),
        ..ExtensionProvider::default()
    };
    let Some(obj) = v.as_object() else {
        return p;
    };
    let Some((kind, body)) = obj.iter().find(|(k, _)| k.as_str() != "name") else {
        return p;
    };
    p.kind = kind.clone();
    p.service = text(body.get("service"));
    p.port = text(body.get("port"));
    p.status_on_error = text(body.get("statusOnError"));
    p.path_prefix = text(body.get("pathPrefix"));
    p.fail_open = body
        .get("failOpen")
        .and_then(|b| b.as_bool())
        .unwrap_or(false);
    for field in [
        "includeRequestHeadersInCheck",
        "includeHeadersInCheck",
        "headersToDownstreamOnDeny",
        "headersToDownstreamOnAllow",
        "headersToUpstreamOnAllow",
    ] {
        let bare = body
            .get(field)
            .and_then(|l| l.as_array())
            .is_some_and(|l| l.iter().any(|h| h.as_str() == Some("*")));
        if bare {
            p.bare_wildcard_fields.push(field.to_string());
        }
    }
    p
}

/// Parse `data.mesh` of the `istio` ConfigMap. The root namespace defaults to the ConfigMap's
/// namespace, as the Helm chart renders it.
pub fn parse_mesh_config(text: &str, configmap_namespace: &str) -> Result<MeshConfig, String> {
    let raw: RawMesh = if text.trim().is_empty() {
        RawMesh::default()
    } else {
        let v: serde_json::Value =
            serde_saphyr::from_str(text).map_err(|e| crate::yaml::one_line(&e.to_string()))?;
        if v.is_null() {
            RawMesh::default()
        } else {
            serde_json::from_value(v).map_err(|e| e.to_string())?
        }
    };
    let d = MeshConfig::default();
    let path_normalization = match raw
        .path_normalization
        .and_then(|p| p.normalization)
        .as_deref()
    {
        None => d.path_normalization,
        Some(v) => PathNormalization::parse(v).ok_or_else(|| {
            format!(
                "pathNormalization.normalization `{v}` is not one of DEFAULT, NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES (istiod rejects a mesh config it cannot parse)"
            )
        })?,
    };
    Ok(MeshConfig {
        root_namespace: raw
            .root_namespace
            .unwrap_or_else(|| configmap_namespace.to_string()),
        trust_domain: raw.trust_domain.unwrap_or(d.trust_domain),
        trust_domain_aliases: raw.trust_domain_aliases.unwrap_or_default(),
        enable_auto_mtls: raw.enable_auto_mtls.unwrap_or(true),
        hold_application_until_proxy_starts: raw
            .default_config
            .and_then(|c| c.hold_application_until_proxy_starts)
            .unwrap_or(false),
        extension_providers: raw
            .extension_providers
            .unwrap_or_default()
            .iter()
            .map(parse_extension_provider)
            .collect(),
        native_sidecars: None,
        path_normalization,
    })
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawInjector {
    policy: Option<String>,
    never_inject_selector: Option<Vec<LabelSelector>>,
    always_inject_selector: Option<Vec<LabelSelector>>,
}

/// Parse the injector ConfigMap: `data.config` (YAML: policy, never/alwaysInjectSelector) and
/// `data.values` (JSON: `sidecarInjectorWebhook.enableNamespacesByDefault`,
/// `global.proxy.autoInject`).
pub fn parse_injector_config(
    config: Option<&str>,
    values: Option<&str>,
) -> Result<InjectorConfig, String> {
    let mut out = InjectorConfig::default();
    if let Some(config) = config {
        // `data.config` also carries Go templates; only the top-level keys we need are read,
        // so read it line-wise into a small document of those keys.
        let wanted: String = top_level_keys(
            config,
            &["policy", "neverInjectSelector", "alwaysInjectSelector"],
        );
        if !wanted.trim().is_empty() {
            let v: serde_json::Value = serde_saphyr::from_str(&wanted).map_err(|e| {
                format!(
                    "unreadable data.config: {}",
                    crate::yaml::one_line(&e.to_string())
                )
            })?;
            let raw: RawInjector =
                serde_json::from_value(v).map_err(|e| format!("unreadable data.config: {e}"))?;
            if let Some(p) = raw.policy {
                out.policy = p;
            }
            out.never_inject_selector = raw.never_inject_selector.unwrap_or_default();
            out.always_inject_selector = raw.always_inject_selector.unwrap_or_default();
        }
    }
    if let Some(values) = values {
        let v: serde_json::Value =
            serde_json::from_str(values).map_err(|e| format!("unreadable data.values: {e}"))?;
        if let Some(b) = v
            .pointer("/sidecarInjectorWebhook/enableNamespacesByDefault")
            .and_then(|b| b.as_bool())
        {
            out.enable_namespaces_by_default = b;
        }
    }
    Ok(out)
}

/// Keep only the given top-level keys (and their indented bodies) of a YAML mapping.
fn top_level_keys(text: &str, keys: &[&str]) -> String {
    let mut out = String::new();
    let mut keep = false;
    for line in text.lines() {
        let top = !line.starts_with([' ', '\t', '-']) && !line.trim().is_empty();
        if top {
            keep = keys
                .iter()
                .any(|k| line.strip_prefix(k).is_some_and(|r| r.starts_with(':')));
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
