//! A fast reader for the YAML that Kubernetes tools write, with serde-saphyr behind it.
//!
//! `kubectl get -o yaml`, `kubectl kustomize`, Helm and most hand-written manifests use a small
//! part of YAML: block mappings and sequences, one-line plain and quoted scalars, literal block
//! scalars (`|`), and `[]` / `{}`. [`write_block_document`] reads exactly that part, about ten
//! times faster than a general YAML parser, writing it out as JSON text as it goes (no tree is
//! built; [`read_block_document`] parses that text when a tree is wanted), and gives up
//! (`None`) on anything else: flow
//! collections, anchors, aliases, tags, folded or multi-line scalars, complex keys, tabs in
//! indentation, duplicate keys, control characters. The caller then parses the document with
//! serde-saphyr, which also gives the error messages for invalid YAML.
//!
//! Whatever this reader accepts, it reads to the same value serde-saphyr does (tested on every
//! document of the upstream renders and by `fuzz/yaml_fast_path`). Plain scalars it does not
//! resolve itself (anything that could be a number, a boolean or null in some YAML schema other
//! than the plainest forms) are resolved by serde-saphyr, one scalar at a time.

use std::borrow::Cow;

use serde_json::Value;

/// Deepest nesting accepted in a document (Kubernetes objects rarely exceed 20).
pub const MAX_DEPTH: usize = 64;
/// Nodes (mappings, sequences, scalars) a YAML document may have, at the least ...
pub const MIN_NODE_BUDGET: usize = 250_000;
/// ... and per byte of the document. Written-out YAML has at most about one node per byte, so
/// no real document reaches the budget; aliases are counted each time they are used, so an
/// alias bomb (a few bytes that expand to millions of nodes) stops at twice its own size.
pub const NODES_PER_BYTE: usize = 2;

/// The deepest nesting the fast path follows; deeper documents go to serde-saphyr, which
/// applies [`MAX_DEPTH`] and names it. (Less than that limit, so that no document the fast path
/// reads is one the limit would refuse.)
const FAST_PATH_DEPTH: usize = 40;

/// Whether a document holds nothing but blank lines, comments and directives.
pub fn is_blank(doc: &str) -> bool {
    doc.lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.starts_with('%'))
}

/// Read one YAML document with serde-saphyr alone, with the inventory's size limits.
pub fn read_with_saphyr(doc: &str) -> Result<Option<Value>, String> {
    if is_blank(doc) {
        return Ok(None);
    }
    let nodes = node_budget(doc.len());
    // Set here, not left to the library's defaults, so the error messages below stay true.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_nodes: nodes,
            // Every node is one event, a mapping or sequence one more at its end.
            max_events: nodes.saturating_mul(2).saturating_add(16),
            max_total_scalar_bytes: scalar_budget(doc.len()),
            max_aliases: 50_000,
            max_anchors: 50_000,
            enforce_alias_anchor_ratio: true,
            alias_anchor_ratio_multiplier: 10,
            max_recorded_anchor_events: 1_000_000,
            max_merge_keys: 10_000,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 1_000_000,
            max_replay_stack_depth: 64,
        },
    };
    let value: serde_json::Value =
        serde_saphyr::from_str_with_options(doc, options).map_err(|e| yaml_error(&e, doc))?;
    Ok(match value {
        serde_json::Value::Null => None,
        v => Some(v),
    })
}

/// The node budget of a YAML document of `len` bytes.
pub fn node_budget(len: usize) -> usize {
    len.saturating_mul(NODES_PER_BYTE).max(MIN_NODE_BUDGET)
}

/// A parser error in kfp-mesh's words; a budget breach says which size limit and what to do.
fn yaml_error(e: &serde_saphyr::Error, doc: &str) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    let mut inner = e;
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = inner
    {
        inner = error;
    }
    if let serde_saphyr::Error::DuplicateMappingKey { key, location } = inner {
        return duplicate_key(key.as_deref(), location, doc);
    }
    const ALIASES: &str = "the document uses more YAML anchors and aliases than kfp-mesh follows (at most 1,000,000 nodes replayed from aliases, 50,000 aliases, 50,000 anchors, 10 aliases per anchor, 10,000 merge keys)";
    let breach = match inner {
        serde_saphyr::Error::Budget { breach, .. } => breach,
        serde_saphyr::Error::AliasReplayLimitExceeded { .. }
        | serde_saphyr::Error::AliasExpansionLimitExceeded { .. }
        | serde_saphyr::Error::AliasReplayStackDepthExceeded { .. }
        | serde_saphyr::Error::AliasReplayCounterOverflow { .. } => {
            return size_limit(ALIASES);
        }
        _ => return format!("not valid YAML: {}", one_line(&e.to_string())),
    };
    let what = match breach {
        B::Depth { .. } => {
            return format!(
                "YAML nesting limit: the document nests deeper than {MAX_DEPTH} levels (Kubernetes objects rarely exceed 20); the document is skipped"
            );
        }
        B::Nodes { .. } | B::Events { .. } => format!(
            "the document expands to more than {} nodes (mappings, lists and values: {NODES_PER_BYTE} per byte of its text, at least {MIN_NODE_BUDGET}), each use of an alias (`*name`) counted in full",
            node_budget(doc.len())
        ),
        B::ScalarBytes { .. } => format!(
            "the text of its values expands to more than {} bytes (twice its own size, at least 64 MiB), each use of an alias (`*name`) counted in full",
            scalar_budget(doc.len())
        ),
        B::Aliases { .. }
        | B::Anchors { .. }
        | B::AliasAnchorRatio { .. }
        | B::RecordedAnchorEvents { .. }
        | B::RecordedAnchorBytes { .. }
        | B::MergeKeys { .. } => ALIASES.to_string(),
        other => format!("{other:?}"),
    };
    size_limit(&what)
}

/// A duplicate mapping key, named with the object it is in when the document still reads with
/// the first of each key (the object Kubernetes would refuse it for, `kubectl apply` errors too).
fn duplicate_key(key: Option<&str>, location: &serde_saphyr::Location, doc: &str) -> String {
    let key = key.map_or_else(|| "a key".to_string(), |k| format!("`{k}`"));
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::FirstWins,
        budget: serde_saphyr::budget! { max_depth: MAX_DEPTH, max_nodes: node_budget(doc.len()) },
    };
    let object = serde_saphyr::from_str_with_options::<serde_json::Value>(doc, options)
        .ok()
        .and_then(|v| {
            let kind = v.get("kind")?.as_str()?.to_string();
            let meta = v.get("metadata")?;
            let name = meta.get("name").and_then(|n| n.as_str()).unwrap_or("?");
            Some(match meta.get("namespace").and_then(|n| n.as_str()) {
                Some(ns) => format!(" in {kind} {ns}/{name}"),
                None => format!(" in {kind} {name}"),
            })
        })
        .unwrap_or_default();
    format!(
        "duplicate key {key}{object} (line {} column {} of the document): a mapping names each key once; remove or rename one of them",
        location.line(),
        location.column()
    )
}

fn size_limit(what: &str) -> String {
    format!(
        "YAML size limit: {what}; the document is skipped. The limits stop alias bombs (a few bytes that expand to millions of values): write the repeated parts out instead of using aliases (`kubectl get -o yaml` and `kubectl kustomize` never use them), or pass JSON"
    )
}

/// The bytes of value text a YAML document of `len` bytes may expand to.
fn scalar_budget(len: usize) -> usize {
    len.saturating_mul(2).max(64 * 1024 * 1024)
}

pub(crate) fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Read a YAML document written in block style. `None` when it uses anything outside the part
/// of YAML described in the module documentation (not an error: parse it with serde-saphyr).
pub fn read_block_document(doc: &str) -> Option<Value> {
    let mut json = Vec::new();
    write_block_document(doc, &mut json)?;
    serde_json::from_slice(&json).ok()
}

/// Write a YAML document written in block style at the end of `out` as JSON text: compact, with
/// the keys of every mapping in order, which is the text `serde_json` writes for the value
/// [`read_block_document`] reads. No tree is built on the way. `None` as for
/// [`read_block_document`]; what was written to `out` is then incomplete.
///
/// The entries of the document's mapping, in key order and where they were written (none when
/// the document is a sequence).
pub fn write_block_document<'a>(doc: &'a str, out: &mut Vec<u8>) -> Option<Vec<Entry<'a>>> {
    if !printable(doc) {
        return None;
    }
    let tabs = memchr::memchr(b'\t', doc.as_bytes()).is_some();
    // Lines without their `\n`; the break that ends the last line does not start another.
    let body = doc.strip_suffix('\n');
    let text = body.unwrap_or(doc);
    // Split where memchr finds each break: one vector search over the document, where
    // `str::split` searches again from every line.
    let mut lines = Vec::with_capacity(text.len() / 24 + 1);
    let mut from = 0;
    for at in memchr::memchr_iter(b'\n', text.as_bytes()).chain(std::iter::once(text.len())) {
        // A break is one byte: both ends are on character boundaries.
        lines.push(Line::new(text.get(from..at)?, tabs));
        from = at + 1;
    }
    let mut r = Reader {
        lines,
        last_line_broken: body.is_some(),
        pos: 0,
        virtual_line: None,
        out,
        entries: Vec::new(),
        scratch: Vec::new(),
    };
    let (indent, _) = r.peek()?;
    r.node(indent, 0)?;
    // Everything must have been read: a line left over is outside the subset (or invalid).
    match r.peek() {
        None if r.pos >= r.lines.len() => Some(r.entries),
        _ => None,
    }
}

/// Only characters YAML allows in a stream (its `c-printable`), `\n` as the only line break
/// (no `\r`, which YAML also reads as one), and no byte-order mark.
fn printable(doc: &str) -> bool {
    // In blocks, without stopping at the first byte that is not: that is what compiles to
    // vector instructions.
    let ascii_ok = doc.as_bytes().chunks(64).all(|block| {
        block.iter().fold(true, |ok, &b| {
            ok & (b >= 0x20 && b != 0x7f || b == b'\t' || b == b'\n')
        })
    });
    if !ascii_ok {
        return false;
    }
    if doc.is_ascii() {
        return true;
    }
    doc.chars().all(|c| {
        let c = u32::from(c);
        c < 0x80
            || (0xa0..=0xd7ff).contains(&c) && c != 0x2028 && c != 0x2029
            || (0xe000..=0xfffd).contains(&c) && c != 0xfeff
            || c >= 0x10000
    })
}

/// A line of the document, looked at once.
struct Line<'a> {
    raw: &'a str,
    /// The text after the indentation.
    content: &'a str,
    indent: usize,
    blank_or_comment: bool,
    tab: bool,
}

impl<'a> Line<'a> {
    /// `tabs`: whether the document has a tab anywhere (most have none, and their lines need
    /// not be searched for one).
    fn new(raw: &'a str, tabs: bool) -> Line<'a> {
        let content = skip_spaces(raw);
        let blank_or_comment = content.is_empty() || content.starts_with('#');
        Line {
            raw,
            content,
            indent: raw.len() - content.len(),
            blank_or_comment,
            tab: tabs && !blank_or_comment && raw.contains('\t'),
        }
    }
}

/// `text` without its leading spaces (byte by byte: a `char` pattern decodes every character).
fn skip_spaces(text: &str) -> &str {
    let spaces = text.bytes().take_while(|&b| b == b' ').count();
    // Spaces are one byte each: `spaces` is on a character boundary.
    text.get(spaces..).unwrap_or_default()
}

/// A mapping entry written as JSON text: its key, and where its text is.
#[derive(Debug)]
pub struct Entry<'a> {
    pub key: Cow<'a, str>,
    /// Where the entry's text (`"key":value`) starts, ...
    pub start: usize,
    /// ... where its value starts ...
    pub value: usize,
    /// ... and where it ends.
    pub end: usize,
}

struct Reader<'a, 'o> {
    lines: Vec<Line<'a>>,
    /// Whether the document's last line ends with a line break.
    last_line_broken: bool,
    /// The next raw line to read.
    pos: usize,
    /// The rest of a sequence entry (`- key: value`) seen as a line of its own at the column
    /// where its content starts: the first line of the mapping the entry holds.
    virtual_line: Option<(usize, &'a str)>,
    /// Where the JSON text is written.
    out: &'o mut Vec<u8>,
    /// The entries of the mappings being written, innermost last.
    entries: Vec<Entry<'a>>,
    /// Room to put a mapping's entries in key order.
    scratch: Vec<u8>,
}

impl<'a> Reader<'a, '_> {
    /// The next line that holds content: its indentation and its text after the indentation.
    /// Blank and comment lines are skipped. `None` at the end, or when the line is outside the
    /// subset (a tab in it): then `pos` stays on that line, which makes the caller give up.
    fn peek(&mut self) -> Option<(usize, &'a str)> {
        if let Some(v) = self.virtual_line {
            return Some(v);
        }
        while let Some(line) = self.lines.get(self.pos) {
            if line.blank_or_comment {
                self.pos += 1;
                continue;
            }
            if line.tab {
                return None;
            }
            return Some((line.indent, line.content));
        }
        None
    }

    /// Past the line `peek` returned.
    fn advance(&mut self) {
        if self.virtual_line.take().is_none() {
            self.pos += 1;
        }
    }

    /// The node whose first line is the next line, at column `indent`.
    fn node(&mut self, indent: usize, depth: usize) -> Option<()> {
        let (_, content) = self.peek()?;
        if is_entry(content) {
            self.sequence(indent, depth)
        } else {
            self.mapping(indent, depth)
        }
    }

    fn mapping(&mut self, indent: usize, depth: usize) -> Option<()> {
        // Every container, however it is reached (`- key:` opens a mapping in a sequence).
        if depth > FAST_PATH_DEPTH {
            return None;
        }
        let open = self.out.len();
        self.out.push(b'{');
        let first = self.entries.len();
        let mut in_order = true;
        while let Some((at, content)) = self.peek() {
            if at < indent {
                break;
            }
            if at > indent || is_entry(content) {
                return None;
            }
            let (key, rest) = key(content)?;
            self.advance();
            // Entries of nested mappings are gone again by now: the last one is this mapping's.
            if let Some(last) = self.entries.get(first..).and_then(<[Entry<'_>]>::last) {
                match last.key.as_ref().cmp(key.as_ref()) {
                    std::cmp::Ordering::Less => {}
                    // serde-saphyr refuses duplicate keys; let it say so.
                    std::cmp::Ordering::Equal => return None,
                    std::cmp::Ordering::Greater => in_order = false,
                }
                self.out.push(b',');
            }
            let start = self.out.len();
            write_str(self.out, &key)?;
            self.out.push(b':');
            let value = self.out.len();
            self.value(rest, indent, true, depth)?;
            let end = self.out.len();
            self.entries.push(Entry {
                key,
                start,
                value,
                end,
            });
        }
        if self.pos < self.lines.len() && self.peek().is_none() {
            return None;
        }
        if !in_order {
            self.put_in_key_order(open, first)?;
        }
        // The document's own mapping (depth 0) keeps its entries for the caller.
        if depth > 0 {
            self.entries.truncate(first);
        }
        self.out.push(b'}');
        Some(())
    }

    /// Rewrite the entries of the mapping whose `{` is at `open` (entries `first..`) in key
    /// order, as a JSON object's keys are written. `None` for a key given twice.
    fn put_in_key_order(&mut self, open: usize, first: usize) -> Option<()> {
        let entries = self.entries.get_mut(first..)?;
        entries.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        if entries.windows(2).any(|w| match w {
            [a, b] => a.key == b.key,
            _ => false,
        }) {
            // serde-saphyr refuses duplicate keys; let it say so.
            return None;
        }
        let from = open + 1;
        self.scratch.clear();
        self.scratch.extend_from_slice(self.out.get(from..)?);
        self.out.truncate(from);
        for (i, e) in entries.iter_mut().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            let text = self.scratch.get(e.start - from..e.end - from)?;
            let start = self.out.len();
            self.out.extend_from_slice(text);
            (e.value, e.start, e.end) = (start + e.value - e.start, start, self.out.len());
        }
        Some(())
    }

    fn sequence(&mut self, indent: usize, depth: usize) -> Option<()> {
        if depth > FAST_PATH_DEPTH {
            return None;
        }
        self.out.push(b'[');
        let mut first = true;
        while let Some((at, content)) = self.peek() {
            if at < indent || at == indent && !is_entry(content) {
                break;
            }
            if at > indent {
                return None;
            }
            if !first {
                self.out.push(b',');
            }
            first = false;
            let rest = content.get(1..).unwrap_or_default();
            let after = skip_spaces(rest);
            self.advance();
            if after.is_empty() || after.starts_with('#') {
                self.value(after, indent, false, depth)?;
                continue;
            }
            let column = indent + 1 + (rest.len() - after.len());
            if is_entry(after) || after.starts_with('?') {
                return None;
            }
            if key(after).is_some() {
                // `- key: value`: a mapping whose first line starts at `column`.
                self.virtual_line = Some((column, after));
                self.mapping(column, depth + 1)?;
            } else {
                self.value(after, indent, false, depth)?;
            }
        }
        if self.pos < self.lines.len() && self.peek().is_none() {
            return None;
        }
        self.out.push(b']');
        Some(())
    }

    /// The value after `key:` (or after `- `) of a collection at column `indent`: `rest` is the
    /// text on the same line. `in_mapping`: a sequence may start at the key's own column.
    fn value(
        &mut self,
        rest: &'a str,
        indent: usize,
        in_mapping: bool,
        depth: usize,
    ) -> Option<()> {
        let rest = skip_spaces(rest);
        if rest.is_empty() || rest.starts_with('#') {
            return match self.peek() {
                Some((at, _)) if at > indent => self.node(at, depth + 1),
                Some((at, content)) if at == indent && in_mapping && is_entry(content) => {
                    self.sequence(at, depth + 1)
                }
                Some(_) => Scalar::Null.write(self.out),
                None if self.pos >= self.lines.len() => Scalar::Null.write(self.out),
                None => None,
            };
        }
        if let Some(header) = rest.strip_prefix('|') {
            let text = self.literal(header, indent)?;
            return write_str(self.out, &text);
        }
        let value = inline_value(rest)?;
        // A more indented line after a one-line value continues it (a multi-line scalar) or is
        // invalid: either way, not for the fast path.
        match self.peek() {
            Some((at, _)) if at > indent => None,
            None if self.pos < self.lines.len() => None,
            _ => value.write(self.out),
        }
    }

    /// A literal block scalar (`|`, `|-`, `|+`) of a node at column `indent`; `header` is what
    /// follows the `|`. Its lines are the raw lines from `pos` on.
    fn literal(&mut self, header: &str, indent: usize) -> Option<String> {
        let (chomp, comment) = match header.as_bytes().first() {
            Some(b'-') => (Chomp::Strip, header.get(1..)?),
            Some(b'+') => (Chomp::Keep, header.get(1..)?),
            _ => (Chomp::Clip, header),
        };
        if !only_comment(comment) {
            // An indentation indicator (`|2`), or text after the header.
            return None;
        }
        // The content's indentation is that of its first non-blank line.
        let mut content_indent = None;
        let mut longest_blank = 0;
        for line in self.lines.get(self.pos..)? {
            let (trimmed, spaces) = (line.content, line.indent);
            if trimmed.is_empty() {
                longest_blank = longest_blank.max(spaces);
                continue;
            }
            content_indent = Some(spaces);
            break;
        }
        let block_indent = match content_indent {
            Some(n) if n > indent => n,
            // No content line (or the next line belongs to the parent): an empty scalar.
            _ => {
                // Blank lines that are more indented than the parent belong to the scalar
                // (and `|+` keeps them): leave that to serde-saphyr.
                if longest_blank > indent || matches!(chomp, Chomp::Keep) {
                    return None;
                }
                return Some(String::new());
            }
        };
        if longest_blank > block_indent {
            return None;
        }
        let mut text = String::new();
        let mut trailing_breaks = 0usize;
        while let Some(line) = self.lines.get(self.pos) {
            let (trimmed, spaces, line) = (line.content, line.indent, line.raw);
            if trimmed.is_empty() && spaces <= block_indent {
                trailing_breaks += 1;
                self.pos += 1;
                if self.pos == self.lines.len()
                    && !self.last_line_broken
                    && matches!(chomp, Chomp::Keep)
                {
                    // A blank last line with no line break after it: whether `|+` keeps it
                    // is left to serde-saphyr.
                    return None;
                }
                continue;
            }
            if spaces < block_indent {
                break;
            }
            for _ in 0..trailing_breaks {
                text.push('\n');
            }
            trailing_breaks = 0;
            text.push_str(line.get(block_indent..)?);
            text.push('\n');
            self.pos += 1;
            if self.pos == self.lines.len() && !self.last_line_broken {
                // The document's last line, with no line break after it: how a parser chomps
                // that is left to serde-saphyr.
                return None;
            }
        }
        match chomp {
            Chomp::Strip => {
                while text.ends_with('\n') {
                    text.pop();
                }
            }
            Chomp::Clip => {}
            Chomp::Keep => {
                for _ in 0..trailing_breaks {
                    text.push('\n');
                }
            }
        }
        Some(text)
    }
}

#[derive(Clone, Copy)]
enum Chomp {
    Strip,
    Clip,
    Keep,
}

/// `-` followed by a space or the end of the line: a block sequence entry.
fn is_entry(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

/// Characters that may not start a plain scalar in block context (or that start something
/// the fast path leaves to serde-saphyr).
fn is_indicator(c: u8) -> bool {
    matches!(
        c,
        b'-' | b'?'
            | b':'
            | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'#'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'\''
            | b'"'
            | b'%'
            | b'@'
            | b'`'
    )
}

/// `-`, `?` or `:` followed by a character that is not a space: the start of a plain scalar
/// (`--flag`, `-v`), not an indicator.
fn starts_plain(text: &str) -> bool {
    let b = text.as_bytes();
    matches!(b.first(), Some(b'-' | b'?' | b':'))
        && b.get(1)
            .is_some_and(|c| !matches!(c, b' ' | b',' | b'[' | b']' | b'{' | b'}'))
}

/// A mapping entry's key and the text after its `:`. `None` when `content` is no `key:` line
/// the fast path reads.
fn key(content: &str) -> Option<(Cow<'_, str>, &str)> {
    let first = *content.as_bytes().first()?;
    if first == b'"' || first == b'\'' {
        let (key, after) = quoted(content)?;
        if content.len() - after.len() > 1000 {
            return None;
        }
        let rest = after.strip_prefix(':')?;
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return None;
        }
        return Some((key, rest));
    }
    if is_indicator(first) {
        return None;
    }
    let bytes = content.as_bytes();
    let mut at = 0;
    let end = loop {
        let colon = at + find_byte(b':', bytes.get(at..)?)?;
        match bytes.get(colon + 1) {
            None | Some(b' ') => break colon,
            _ => at = colon + 1,
        }
    };
    let key = content.get(..end)?;
    // YAML limits an implicit key to 1024 characters.
    if end > 1000
        || key.ends_with(' ')
        || find_pair(key, b' ', b'#').is_some()
        || key == "<<"
        || needs_resolution(key)
    {
        return None;
    }
    Some((Cow::Borrowed(key), content.get(end + 1..)?))
}

/// A scalar (or an empty collection) read on one line, to be written as JSON.
enum Scalar<'a> {
    Text(Cow<'a, str>),
    Integer(i64),
    Bool(bool),
    Null,
    EmptyList,
    EmptyMap,
    /// Resolved by serde-saphyr.
    Other(Value),
}

impl Scalar<'_> {
    fn write(&self, out: &mut Vec<u8>) -> Option<()> {
        match self {
            Scalar::Text(text) => return write_str(out, text),
            Scalar::Integer(n) => return serde_json::to_writer(out, n).ok(),
            Scalar::Other(value) => return serde_json::to_writer(out, value).ok(),
            Scalar::Bool(true) => out.extend_from_slice(b"true"),
            Scalar::Bool(false) => out.extend_from_slice(b"false"),
            Scalar::Null => out.extend_from_slice(b"null"),
            Scalar::EmptyList => out.extend_from_slice(b"[]"),
            Scalar::EmptyMap => out.extend_from_slice(b"{}"),
        }
        Some(())
    }
}

/// A string as JSON text, as `serde_json` writes it.
fn write_str(out: &mut Vec<u8>, text: &str) -> Option<()> {
    // Most strings have nothing to escape (no quote, backslash or control character): those
    // are copied as they are. The check goes block by block without stopping early, which
    // compiles to vector instructions.
    let needs_no_escape = |b: u8| (b >= 0x20) & (b != b'"') & (b != b'\\');
    let plain = text
        .as_bytes()
        .chunks(32)
        .all(|block| block.iter().fold(true, |ok, &b| ok & needs_no_escape(b)));
    if plain {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        return Some(());
    }
    // Writing to a vector does not fail.
    serde_json::to_writer(out, text).ok()
}

/// The value written on one line after `key: ` or `- `.
fn inline_value(rest: &str) -> Option<Scalar<'_>> {
    let first = *rest.as_bytes().first()?;
    if first == b'"' || first == b'\'' {
        let (text, after) = quoted(rest)?;
        return only_comment(after).then_some(Scalar::Text(text));
    }
    if let Some(after) = rest.strip_prefix("[]") {
        return only_comment(after).then_some(Scalar::EmptyList);
    }
    if let Some(after) = rest.strip_prefix("{}") {
        return only_comment(after).then_some(Scalar::EmptyMap);
    }
    if is_indicator(first) && !starts_plain(rest) {
        return None;
    }
    let text = match find_pair(rest, b' ', b'#') {
        Some(at) => rest.get(..at)?,
        None => rest,
    };
    let text = text.trim_end_matches(' ');
    if find_pair(text, b':', b' ').is_some() || text.ends_with(':') {
        return None;
    }
    plain(text)
}

/// Where the first `a` that is followed by `b` is in `text` (for two ASCII characters).
fn find_pair(text: &str, a: u8, b: u8) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = bytes.get(from..).and_then(|rest| find_byte(a, rest)) {
        let at = from + at;
        if bytes.get(at + 1) == Some(&b) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Where the first `byte` is in `bytes`. Most of what the reader searches is a key or a
/// value of a few words, where setting up memchr's vector search costs more than a loop.
fn find_byte(byte: u8, bytes: &[u8]) -> Option<usize> {
    if bytes.len() < 32 {
        bytes.iter().position(|&b| b == byte)
    } else {
        memchr::memchr(byte, bytes)
    }
}

/// Nothing, or a comment (a `#` after a space).
fn only_comment(after: &str) -> bool {
    let trimmed = skip_spaces(after);
    trimmed.is_empty() || trimmed.starts_with('#') && trimmed.len() < after.len()
}

/// A plain scalar's value. The plainest forms are resolved here (a string that cannot be
/// anything else, a decimal integer, `true`, `false`, `null`); the rest by serde-saphyr.
fn plain(text: &str) -> Option<Scalar<'_>> {
    match text {
        "true" => return Some(Scalar::Bool(true)),
        "false" => return Some(Scalar::Bool(false)),
        "null" | "~" => return Some(Scalar::Null),
        _ => {}
    }
    if let Some(n) = decimal(text) {
        return Some(Scalar::Integer(n));
    }
    if needs_resolution(text) && !surely_text(text) {
        // As the entry of a block sequence: the context the scalar was read in (a document that
        // is only a scalar is resolved differently).
        let value: Value = serde_saphyr::from_str(&format!("- {text}\n")).ok()?;
        return match value {
            Value::Array(mut items) if items.len() == 1 => match items.pop()? {
                Value::Array(_) | Value::Object(_) => None,
                scalar => Some(Scalar::Other(scalar)),
            },
            _ => None,
        };
    }
    Some(Scalar::Text(Cow::Borrowed(text)))
}

/// `0` or a decimal integer without leading zeros that fits an `i64`.
fn decimal(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty()
        || digits.len() > 18
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || digits.len() > 1 && digits.starts_with('0')
        || text.starts_with('-') && digits == "0"
    {
        return None;
    }
    text.parse().ok()
}

/// A scalar no YAML schema reads as a number or timestamp although it starts with a digit
/// (`256Gi`, `3000m`, `1h`): it holds a letter that none of those forms has (they use
/// only hexadecimal digits, `x`, `o`, `b` and `e` in numbers, `t` and `z` in timestamps), or a
/// `/`.
fn surely_text(text: &str) -> bool {
    text.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && text.bytes().any(|b| {
            b.is_ascii_alphabetic() && !b"abcdefABCDEFxXoObBtTzZ".contains(&b) || b == b'/'
        })
}

/// A plain scalar some YAML schema could read as something other than a string: it starts
/// like a number, or it is one of the words for booleans, null, infinity or not-a-number.
fn needs_resolution(text: &str) -> bool {
    let Some(first) = text.bytes().next() else {
        return true;
    };
    if first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.' | b'~' | b'=' | b'<') {
        return true;
    }
    text.len() <= 5
        && [
            "true", "false", "null", "yes", "no", "on", "off", "y", "n", "nan", "inf",
        ]
        .iter()
        .any(|word| text.eq_ignore_ascii_case(word))
}

/// A quoted scalar that ends on its line: its text and what follows the closing quote.
fn quoted(s: &str) -> Option<(Cow<'_, str>, &str)> {
    let quote = s.chars().next()?;
    let body = s.get(1..)?;
    // Most quoted scalars have nothing to unescape: their text is what is between the quotes.
    let end = if quote == '\'' {
        body.find('\'')
            .filter(|&at| !body.get(at + 1..).is_some_and(|r| r.starts_with('\'')))
    } else {
        body.find(['"', '\\'])
            .filter(|&at| body.as_bytes().get(at) == Some(&b'"'))
    };
    if let Some(at) = end {
        return Some((Cow::Borrowed(body.get(..at)?), body.get(at + 1..)?));
    }
    let mut out = String::new();
    if quote == '\'' {
        let mut rest = body;
        loop {
            let at = rest.find('\'')?;
            out.push_str(rest.get(..at)?);
            rest = rest.get(at + 1..)?;
            match rest.strip_prefix('\'') {
                Some(r) => {
                    out.push('\'');
                    rest = r;
                }
                None => return Some((Cow::Owned(out), rest)),
            }
        }
    }
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((Cow::Owned(out), body.get(i + 1..)?)),
            '\\' => {
                let (_, e) = chars.next()?;
                let hex = |chars: &mut std::str::CharIndices<'_>, n: usize| -> Option<char> {
                    let mut v = 0u32;
                    for _ in 0..n {
                        v = v * 16 + chars.next()?.1.to_digit(16)?;
                    }
                    char::from_u32(v)
                };
                out.push(match e {
                    '\\' => '\\',
                    '"' => '"',
                    '/' => '/',
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    'a' => '\u{7}',
                    'b' => '\u{8}',
                    'e' => '\u{1b}',
                    'f' => '\u{c}',
                    'v' => '\u{b}',
                    ' ' => ' ',
                    'x' => hex(&mut chars, 2)?,
                    'u' => hex(&mut chars, 4)?,
                    'U' => hex(&mut chars, 8)?,
                    _ => return None,
                });
            }
            c => out.push(c),
        }
    }
    None
}
