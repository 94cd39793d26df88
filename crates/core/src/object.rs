//! Kubernetes objects as read from input: identity, metadata and where they came from.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// Where an object was read from: a file (or `<stdin>`, or a cluster URL) and the line its
/// document starts on (1-based).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Origin {
    pub source: Arc<str>,
    pub line: u32,
}

impl Origin {
    pub fn new(source: impl Into<Arc<str>>, line: u32) -> Self {
        Origin {
            source: source.into(),
            line,
        }
    }

    /// An origin for objects the tool makes itself (synthesised run pods, built-in defaults).
    pub fn builtin(what: &str) -> Self {
        Origin::new(format!("<{what}>"), 0)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.source)
        } else {
            write!(f, "{}:{}", self.source, self.line)
        }
    }
}

/// `Kind namespace/name` (or `Kind name` for cluster-scoped objects).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectRef {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &str, namespace: Option<&str>, name: &str) -> Self {
        ObjectRef {
            kind: kind.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Piece by piece: `write!` would pass each piece through the padding logic.
        f.write_str(&self.kind)?;
        f.write_str(" ")?;
        if let Some(ns) = &self.namespace {
            f.write_str(ns)?;
            f.write_str("/")?;
        }
        f.write_str(&self.name)
    }
}

/// The part of `metadata` the analysis uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Meta {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "StringMap::is_empty")]
    pub labels: StringMap,
    #[serde(skip_serializing_if = "StringMap::is_empty")]
    pub annotations: StringMap,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
}

impl Meta {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key)
    }
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key)
    }
    /// The namespace, with Kubernetes' default for namespaced objects that name none.
    pub fn namespace_or_default(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
}

/// One object of the input, of any kind (unknown kinds are kept here and ignored elsewhere).
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub api_version: String,
    pub kind: String,
    pub meta: Meta,
    /// The whole object as read.
    pub body: Body,
    pub origin: Origin,
}

impl Object {
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            kind: self.kind.clone(),
            namespace: self.meta.namespace.clone(),
            name: self.meta.name.clone(),
        }
    }

    /// `ObjectRef` plus origin, for explanations and findings.
    pub fn cite(&self) -> Cited {
        Cited::new(self.object_ref(), self.origin.clone())
    }

    /// The API group of `apiVersion` (empty for the core group).
    pub fn group(&self) -> &str {
        match self.api_version.split_once('/') {
            Some((group, _)) => group,
            None => "",
        }
    }

    /// Where the pod template of an object that runs pods is in it: `[]` for a Pod (its own
    /// template), `spec.template` for the controllers, `spec.jobTemplate.spec.template` for a
    /// CronJob; `None` for every other kind.
    pub fn pod_template_path(&self) -> Option<&'static [&'static str]> {
        match (self.group(), self.kind.as_str()) {
            ("", "Pod") => Some(&[]),
            ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
            | ("batch", "Job")
            | ("", "ReplicationController") => Some(&["spec", "template"]),
            ("batch", "CronJob") => Some(&["spec", "jobTemplate", "spec", "template"]),
            _ => None,
        }
    }

    /// The pod spec of an object that runs pods ([`Object::pod_template_path`]), as a tree.
    pub fn pod_spec(&self) -> Option<serde_json::Value> {
        let path = [self.pod_template_path()?, &["spec"]].concat();
        self.value_at(&path)
    }
}

/// The whole of an object as read, kept as compact JSON text; read it with
/// [`Object::value`], [`Object::get`] or [`Object::pointer`].
///
/// A parsed `serde_json::Value` of a typical manifest takes about ten times the memory of its
/// text, and after the inventory is built only a few objects (KFP's own workloads and
/// ConfigMaps, webhook configurations, Profiles) are read raw again: each read parses the text.
/// What the [`Object`] already holds as fields (`apiVersion`, `kind`, and `metadata.name`,
/// `namespace`, `labels`, `annotations` when they read back exactly) is left out of the text
/// and put back when the object is read.
#[derive(Clone)]
pub struct Body {
    text: Box<str>,
    /// Which of the object's fields are left out of `text` (`Body::API_VERSION`, ...).
    held: u8,
    /// Where the value of the top-level `spec` is in `text`, when known from writing it: what
    /// is read under `spec` (a pod's spec, a template's) is then read from there, not found by
    /// reading the text again. A cache, not part of the value.
    spec: Option<(u32, u32)>,
}

impl PartialEq for Body {
    fn eq(&self, other: &Body) -> bool {
        self.text == other.text && self.held == other.held
    }
}

impl Eq for Body {}

impl Body {
    const API_VERSION: u8 = 1;
    const KIND: u8 = 2;
    const NAME: u8 = 4;
    const NAMESPACE: u8 = 8;
    const LABELS: u8 = 16;
    const ANNOTATIONS: u8 = 32;

    /// The whole of `value` as its text.
    pub fn new(value: &serde_json::Value) -> Body {
        let text = with_body_buffer(|buf| {
            // Serializing a `Value` cannot fail: its map keys are strings, and the output is
            // UTF-8.
            match serde_json::to_writer(&mut *buf, value) {
                Ok(()) => String::from_utf8_lossy(buf).into(),
                Err(_) => Box::default(),
            }
        });
        Body {
            text,
            held: 0,
            spec: None,
        }
    }

    /// The body of an object read as `value` whose `apiVersion`, `kind` and metadata are
    /// `api_version`, `kind` and `meta`: the fields those hold exactly are left out of the text.
    pub fn without_fields_of(
        mut value: serde_json::Value,
        api_version: &str,
        kind: &str,
        meta: &Meta,
    ) -> Body {
        use serde_json::Value;
        let mut held = 0;
        if let Value::Object(map) = &mut value {
            let mut take = |map: &mut serde_json::Map<String, Value>,
                            key: &str,
                            bit: u8,
                            same: &dyn Fn(&Value) -> bool| {
                if map.get(key).is_some_and(same) {
                    map.remove(key);
                    held |= bit;
                }
            };
            take(map, "apiVersion", Body::API_VERSION, &|v| {
                v.as_str() == Some(api_version)
            });
            take(map, "kind", Body::KIND, &|v| v.as_str() == Some(kind));
            if let Some(Value::Object(m)) = map.get_mut("metadata") {
                take(m, "name", Body::NAME, &|v| {
                    v.as_str() == Some(meta.name.as_str())
                });
                take(m, "namespace", Body::NAMESPACE, &|v| {
                    v.as_str()
                        .is_some_and(|ns| meta.namespace.as_deref() == Some(ns))
                });
                take(m, "labels", Body::LABELS, &|v| {
                    same_strings(v, &meta.labels)
                });
                take(m, "annotations", Body::ANNOTATIONS, &|v| {
                    same_strings(v, &meta.annotations)
                });
            }
        }
        let mut body = Body::new(&value);
        body.held = held;
        body
    }

    /// The text of the top-level `spec` value, when where it is was kept.
    fn spec_text(&self) -> Option<&str> {
        let (from, to) = self.spec?;
        self.text.get(from as usize..to as usize)
    }

    /// The text as JSON, without the fields left out (`Null` for an empty body).
    fn parse(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or(serde_json::Value::Null)
    }
}

/// Room kept per thread for writing text that is then copied out at its exact size (a text
/// grown by doubling and then trimmed would be copied several times).
pub(crate) type Room = std::thread::LocalKey<std::cell::RefCell<Vec<u8>>>;

/// `f` with the room `room`, empty. A thread that lives on (the webhook's) keeps no more than a
/// mebibyte there.
pub(crate) fn with_room<R>(room: &'static Room, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    room.with_borrow_mut(|buf| {
        buf.clear();
        let result = f(buf);
        if buf.capacity() > 1 << 20 {
            *buf = Vec::new();
        }
        result
    })
}

/// `f` with this thread's room for writing a body.
fn with_body_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    thread_local! {
        static BODY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    with_room(&BODY, f)
}

impl Object {
    /// The object written as the JSON text `json` by [`crate::yaml::write_block_document`]
    /// (compact, no key twice in a mapping), whose top-level `entries` it gave, read without
    /// building it as a tree: the body is that text without the fields the object holds apart,
    /// exactly as [`Body::without_fields_of`] leaves it.
    ///
    /// `None` when the text is not one object kfp-mesh reads (no `kind` or `apiVersion`
    /// string, a `List` of items, metadata that does not read, no name), or when `kind`,
    /// `apiVersion` or a metadata key is written with escapes: read such a text as a tree,
    /// which names what is wrong (and reads the escapes).
    pub(crate) fn from_json_text(
        json: &str,
        entries: &[crate::yaml::Entry<'_>],
        origin: &Origin,
    ) -> Option<Object> {
        let field = |name: &str| {
            let entry = entries.iter().find(|e| e.key == name)?;
            json.get(entry.value..entry.end)
        };
        let string = |name: &str| serde_json::from_str::<&str>(field(name)?).ok();
        let (api_version, kind) = (string("apiVersion")?, string("kind")?);
        // A `List` of items is many objects: known before any of its text is copied.
        if api_version.is_empty()
            || kind.is_empty()
            || kind.ends_with("List") && field("items").is_some_and(|i| i.starts_with('['))
        {
            return None;
        }
        with_body_buffer(|buf| {
            let mut meta = None;
            let mut held = Body::API_VERSION | Body::KIND;
            let mut spec = None;
            buf.push(b'{');
            for entry in entries {
                match entry.key.as_ref() {
                    "apiVersion" | "kind" => {}
                    "metadata" => {
                        let raw = json.get(entry.value..entry.end)?;
                        buf_comma(buf);
                        buf.extend_from_slice(json.get(entry.start..entry.value)?.as_bytes());
                        let (read, bits) = write_metadata_body(buf, raw)?;
                        meta = Some(read);
                        held |= bits;
                    }
                    key => {
                        buf_comma(buf);
                        if key == "spec" {
                            let at = buf.len() + (entry.value - entry.start);
                            let end = buf.len() + (entry.end - entry.start);
                            spec = u32::try_from(at).ok().zip(u32::try_from(end).ok());
                        }
                        buf.extend_from_slice(json.get(entry.start..entry.end)?.as_bytes());
                    }
                }
            }
            buf.push(b'}');
            let meta: Meta = meta?;
            if meta.name.is_empty() {
                return None;
            }
            let text = std::str::from_utf8(buf).ok()?.into();
            Some(Object {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                meta,
                body: Body { text, held, spec },
                origin: origin.clone(),
            })
        })
    }
}

/// A `,` after the entries written so far of the JSON object being written to `buf`.
fn buf_comma(buf: &mut Vec<u8>) {
    if buf.last() != Some(&b'{') {
        buf.push(b',');
    }
}

/// `"key":` after the entries written so far of the JSON object being written to `buf`. `key`
/// has no escapes (it was read from JSON text without any).
fn write_key(buf: &mut Vec<u8>, key: &str) {
    buf_comma(buf);
    buf.push(b'"');
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":");
}

/// `metadata` (a JSON object with no key twice) read as a [`Meta`], each field as the derived
/// `Deserialize` reads it, in the same pass that writes its text without the fields the
/// [`Meta`] holds exactly to `buf`; and which of them are left out. `None` when a field of the
/// [`Meta`] does not read as its type, when `metadata` is not an object, or when a key is
/// written with escapes.
///
/// The fields the [`Meta`] holds are read straight from the text, once: a name or namespace
/// that reads is a string or (a namespace) null, labels or annotations that read are a mapping
/// of strings or null; only the nulls are written back. Every other field's text is copied as
/// it is.
fn write_metadata_body(buf: &mut Vec<u8>, metadata: &str) -> Option<(Meta, u8)> {
    use serde::de::{Deserializer, Error, MapAccess, Visitor};
    use serde_json::value::RawValue;
    struct Fields<'b> {
        buf: &'b mut Vec<u8>,
        meta: Meta,
        held: u8,
    }
    impl<'de> Visitor<'de> for Fields<'_> {
        type Value = (Meta, u8);
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(Meta, u8), A::Error> {
            while let Some(key) = map.next_key::<&'de str>()? {
                let (bit, null) = match key {
                    "name" => {
                        self.meta.name = map.next_value()?;
                        (Body::NAME, false)
                    }
                    "namespace" => {
                        self.meta.namespace = map.next_value()?;
                        (Body::NAMESPACE, self.meta.namespace.is_none())
                    }
                    "labels" | "annotations" => {
                        let read: Option<StringMap> = map.next_value()?;
                        let null = read.is_none();
                        let (field, bit) = match key {
                            "labels" => (&mut self.meta.labels, Body::LABELS),
                            _ => (&mut self.meta.annotations, Body::ANNOTATIONS),
                        };
                        *field = read.unwrap_or_default();
                        (bit, null)
                    }
                    _ => {
                        let raw: &RawValue = map.next_value()?;
                        if key == "creationTimestamp" {
                            self.meta.creation_timestamp = serde_json::from_str(raw.get())
                                .map_err(|_| A::Error::custom("creationTimestamp"))?;
                        }
                        write_key(self.buf, key);
                        self.buf.extend_from_slice(raw.get().as_bytes());
                        continue;
                    }
                };
                if null {
                    // A null is no value for the Meta, but it is what the text says.
                    write_key(self.buf, key);
                    self.buf.extend_from_slice(b"null");
                } else {
                    self.held |= bit;
                }
            }
            Ok((self.meta, self.held))
        }
    }
    buf.push(b'{');
    let mut reader = serde_json::Deserializer::from_str(metadata);
    let read = reader
        .deserialize_map(Fields {
            buf,
            meta: Meta::default(),
            held: 0,
        })
        .ok()?;
    reader.end().ok()?;
    buf.push(b'}');
    Some(read)
}

/// Whether `v` is a JSON object of exactly the strings of `map`.
fn same_strings(v: &serde_json::Value, map: &StringMap) -> bool {
    v.as_object().is_some_and(|m| {
        m.len() == map.len()
            && m.iter()
                .all(|(k, v)| v.as_str().is_some() && v.as_str() == map.get(k))
    })
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (fields held apart: {:#b})", self.text, self.held)
    }
}

impl Object {
    /// The object as read, as a JSON tree (`Null` for an empty body).
    pub fn value(&self) -> serde_json::Value {
        use serde_json::Value;
        let mut value = self.body.parse();
        let held = self.body.held;
        if held == 0 {
            return value;
        }
        let Value::Object(map) = &mut value else {
            return value;
        };
        let string = |s: &str| Value::String(s.to_string());
        let strings = |m: &StringMap| {
            Value::Object(m.iter().map(|(k, v)| (k.to_string(), string(v))).collect())
        };
        if held & Body::API_VERSION != 0 {
            map.insert("apiVersion".into(), string(&self.api_version));
        }
        if held & Body::KIND != 0 {
            map.insert("kind".into(), string(&self.kind));
        }
        if let Some(Value::Object(m)) = map.get_mut("metadata") {
            if held & Body::NAME != 0 {
                m.insert("name".into(), string(&self.meta.name));
            }
            if held & Body::NAMESPACE != 0
                && let Some(ns) = &self.meta.namespace
            {
                m.insert("namespace".into(), string(ns));
            }
            if held & Body::LABELS != 0 {
                m.insert("labels".into(), strings(&self.meta.labels));
            }
            if held & Body::ANNOTATIONS != 0 {
                m.insert("annotations".into(), strings(&self.meta.annotations));
            }
        }
        value
    }

    /// The value at a top-level field.
    pub fn get(&self, field: &str) -> Option<serde_json::Value> {
        self.value_at(&[field])
    }

    /// The value at a path of fields (`["spec", "template", "spec"]`), as a tree: only that
    /// value is built, the rest of the body's text is skipped over. `None` when a field on the
    /// way is missing or not a mapping (or the text does not read, which a body this program
    /// wrote always does). For the fields the object holds apart (`apiVersion`, `kind`,
    /// `metadata`) the whole object is built first.
    pub fn value_at(&self, path: &[&str]) -> Option<serde_json::Value> {
        self.tree_at(path).ok().flatten()
    }

    /// [`Object::value_at`], with serde's error when the body's text does not read.
    fn tree_at(&self, path: &[&str]) -> Result<Option<serde_json::Value>, String> {
        match self.body_at::<serde_json::Value>(path) {
            Some(read) => read.map_err(|e| e.to_string()),
            None => {
                let mut value = Some(self.value());
                for field in path {
                    value = value.and_then(|mut v| v.get_mut(field).map(serde_json::Value::take));
                }
                Ok(value)
            }
        }
    }

    /// The value at `path` read as `T` straight from the body's text, the rest skipped over;
    /// `None` when the path starts at a field the object holds apart (`apiVersion`, `kind`,
    /// `metadata`: not in the body's text) or is empty.
    fn body_at<'s, T: serde::Deserialize<'s>>(
        &'s self,
        path: &[&str],
    ) -> Option<Result<Option<T>, serde_json::Error>> {
        use serde::de::DeserializeSeed;
        if let Some("apiVersion" | "kind" | "metadata") | None = path.first().copied() {
            return None;
        }
        // Under `spec`, read from where its value is when that is known.
        if let (Some((&"spec", rest)), Some(spec)) = (path.split_first(), self.body.spec_text()) {
            let mut reader = serde_json::Deserializer::from_str(spec);
            return Some(at_path::At::<T>::new(rest).deserialize(&mut reader));
        }
        let mut reader = serde_json::Deserializer::from_str(&self.body.text);
        Some(at_path::At::<T>::new(path).deserialize(&mut reader))
    }

    /// The value at a path of fields of the body (`["spec", "template", "spec"]`) as `T`:
    /// only that value is built from the body's text, the rest is skipped over. `Ok(None)`
    /// when a field on the way is missing or not a mapping; the error is serde's. For the
    /// fields the object holds apart (`apiVersion`, `kind`, `metadata`) the whole object is
    /// read first.
    pub fn read_at<T: serde::de::DeserializeOwned>(
        &self,
        path: &[&str],
    ) -> Result<Option<T>, String> {
        let value = self.tree_at(path)?;
        // Typed from the tree, not the text: the tree knows each list's length, so the typed
        // value's vectors are made to measure (read from text they grow by doubling).
        value
            .map(|v| T::deserialize(v).map_err(|e| e.to_string()))
            .transpose()
    }

    /// As [`Object::read_at`], but `T` is read straight from the body's text, with no tree in
    /// between: faster, but `T`'s vectors grow as they are read (up to twice the room they
    /// need), so shrink what is kept. The error, when there is one, is `read_at`'s.
    pub fn read_at_from_text<T: serde::de::DeserializeOwned>(
        &self,
        path: &[&str],
    ) -> Result<Option<T>, String> {
        match self.body_at::<T>(path) {
            Some(Ok(value)) => Ok(value),
            // Held apart, or an error said as for the tree: a place in the body's text means
            // nothing to the user.
            None | Some(Err(_)) => self.read_at(path),
        }
    }

    /// The text of the value at a path of fields of the body, as [`Object::read_at`] finds
    /// it; `None` when it is not there. Not for the fields the object holds apart (their text
    /// is not the body's).
    pub fn text_at(&self, path: &[&str]) -> Option<&str> {
        if let (["spec"], Some(spec)) = (path, self.body.spec_text()) {
            return Some(spec);
        }
        self.body_at::<&serde_json::value::RawValue>(path)?
            .ok()
            .flatten()
            .map(serde_json::value::RawValue::get)
    }

    /// The value at a JSON pointer (`/spec/template/spec`).
    pub fn pointer(&self, pointer: &str) -> Option<serde_json::Value> {
        let top = pointer.split('/').nth(1).unwrap_or_default();
        let mut value = match top {
            "apiVersion" | "kind" | "metadata" | "" => self.value(),
            _ => self.body.parse(),
        };
        value.pointer_mut(pointer).map(serde_json::Value::take)
    }
}

/// Reading one value at a path of fields, skipping every other value of the text unbuilt.
mod at_path {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{
        self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
    };

    /// The value at `path` (as `T`) of a value, `None` when the path is not there.
    pub(super) struct At<'p, T> {
        path: &'p [&'p str],
        value: PhantomData<T>,
    }

    impl<'p, T> At<'p, T> {
        pub(super) fn new(path: &'p [&'p str]) -> Self {
            At {
                path,
                value: PhantomData,
            }
        }
    }

    impl<'de, T: de::Deserialize<'de>> DeserializeSeed<'de> for At<'_, T> {
        type Value = Option<T>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
            match self.path.split_first() {
                None => T::deserialize(d).map(Some),
                Some((field, rest)) => d.deserialize_any(Field {
                    name: field,
                    rest,
                    value: PhantomData,
                }),
            }
        }
    }

    /// The field `name` of a mapping, then `rest` inside it; any other value has no fields.
    struct Field<'p, T> {
        name: &'p str,
        rest: &'p [&'p str],
        value: PhantomData<T>,
    }

    impl<'de, T: de::Deserialize<'de>> Visitor<'de> for Field<'_, T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "any value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
            let mut found = None;
            while let Some(is_field) = map.next_key_seed(KeyIs(self.name))? {
                if is_field {
                    // The last of equal keys, as a JSON map keeps it.
                    found = map.next_value_seed(At::<T>::new(self.rest))?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<T>, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
    }

    /// Whether a mapping key is `self.0`, compared without copying it.
    struct KeyIs<'p>(&'p str);

    impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
        type Value = bool;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for KeyIs<'_> {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a key")
        }
        fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
            Ok(key == self.0)
        }
    }
}

impl From<serde_json::Value> for Body {
    fn from(value: serde_json::Value) -> Body {
        Body::new(&value)
    }
}

/// A typed object: metadata, a typed spec and its origin.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource<S> {
    pub api_version: String,
    pub kind: String,
    pub meta: Meta,
    pub spec: S,
    pub origin: Origin,
    /// Its citation, made once (`Default::default()` when building one).
    pub cited: CiteCache,
}

impl<S> Resource<S> {
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            kind: self.kind.clone(),
            namespace: self.meta.namespace.clone(),
            name: self.meta.name.clone(),
        }
    }
    pub fn namespace(&self) -> &str {
        self.meta.namespace_or_default()
    }
    pub fn name(&self) -> &str {
        &self.meta.name
    }
    /// `ObjectRef` plus origin, for explanations and findings.
    pub fn cite(&self) -> Cited {
        self.cited
            .get_or_make(|| Cited::new(self.object_ref(), self.origin.clone()))
    }
}

/// An object reference with the place it was read from.
///
/// Shared, not copied: the explanations of a large cluster's flows cite the same objects
/// hundreds of thousands of times, so a citation is a pointer to one [`Citation`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cited(Arc<Citation>);

#[derive(Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Citation {
    pub object: ObjectRef,
    pub origin: Origin,
}

impl Cited {
    pub fn new(object: ObjectRef, origin: Origin) -> Cited {
        Cited(Arc::new(Citation { object, origin }))
    }
}

impl std::ops::Deref for Cited {
    type Target = Citation;
    fn deref(&self) -> &Citation {
        &self.0
    }
}

impl Serialize for Cited {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// The citation of a typed object or workload, made on first use and then shared. A cache,
/// not part of the value: two objects compare equal whatever their caches hold.
#[derive(Clone, Default)]
pub struct CiteCache(std::sync::OnceLock<Cited>);

impl CiteCache {
    pub fn get_or_make(&self, make: impl FnOnce() -> Cited) -> Cited {
        self.0.get_or_init(make).clone()
    }
}

impl PartialEq for CiteCache {
    fn eq(&self, _: &CiteCache) -> bool {
        true
    }
}

impl fmt::Debug for CiteCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CiteCache")
    }
}

impl fmt::Display for Cited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.object, self.origin)
    }
}

/// A JSON object of strings (labels, annotations) as a map; other values are left out, and
/// anything but an object is an empty map.
pub fn string_map(v: Option<&serde_json::Value>) -> StringMap {
    v.and_then(serde_json::Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.as_str(), s)))
                .collect()
        })
        .unwrap_or_default()
}

/// Labels or annotations: a small map of strings, sorted by key, kept in one buffer.
///
/// A large cluster has hundreds of thousands of them (every pod, every pod template, every
/// typed object's metadata). A `BTreeMap<String, String>` costs a 540-byte node plus two
/// allocations per entry; this costs two allocations in all: the keys and values end to end,
/// and where each ends.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StringMap {
    text: Box<str>,
    /// Where each key and each value ends in `text`: key `i` ends at `ends[2i]`, its value at
    /// `ends[2i + 1]`.
    ends: Box<[u32]>,
}

impl StringMap {
    pub fn new() -> StringMap {
        StringMap::default()
    }

    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn at(&self, i: usize) -> Option<&str> {
        let start = match i {
            0 => 0,
            _ => *self.ends.get(i - 1)? as usize,
        };
        self.text.get(start..*self.ends.get(i)? as usize)
    }

    fn key_at(&self, i: usize) -> &str {
        self.at(2 * i).unwrap_or_default()
    }

    fn value_at(&self, i: usize) -> &str {
        self.at(2 * i + 1).unwrap_or_default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.key_at(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.value_at(mid)),
            }
        }
        None
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone + '_ {
        (0..self.len()).map(|i| (self.key_at(i), self.value_at(i)))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.iter().map(|(k, _)| k)
    }

    /// Set `key` to `value` (an existing entry is replaced). Rebuilds the map: for the few
    /// changes the tool makes itself, not for building one entry by entry.
    pub fn insert(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) {
        let (key, value) = (key.as_ref(), value.as_ref());
        let merged: StringMap = self
            .iter()
            .filter(|(k, _)| *k != key)
            .chain([(key, value)])
            .collect();
        *self = merged;
    }

    /// Remove `key`; whether it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        if !self.contains_key(key) {
            return false;
        }
        let rest: StringMap = self.iter().filter(|(k, _)| *k != key).collect();
        *self = rest;
        true
    }

    /// Set every entry of `other` (as `insert` would, in one rebuild).
    pub fn extend<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        other: impl IntoIterator<Item = (K, V)>,
    ) {
        let other: Vec<(K, V)> = other.into_iter().collect();
        let merged: StringMap = self
            .iter()
            .chain(other.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
            .collect();
        *self = merged;
    }

    /// The map as a `BTreeMap`, for code that builds or edits one.
    pub fn to_btree(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for StringMap {
    /// Entries in any order; of a key given twice, the last value is kept (as in a map that is
    /// inserted into).
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(entries: I) -> StringMap {
        let mut entries: Vec<(usize, (&str, &str))> = entries.into_iter().enumerate().collect();
        entries.sort_by(|(i, (a, _)), (j, (b, _))| a.cmp(b).then(j.cmp(i)));
        entries.dedup_by(|(_, (a, _)), (_, (b, _))| a == b);
        let mut text =
            String::with_capacity(entries.iter().map(|(_, (k, v))| k.len() + v.len()).sum());
        let mut ends = Vec::with_capacity(entries.len() * 2);
        for (_, (k, v)) in entries {
            text.push_str(k);
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
            text.push_str(v);
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        }
        StringMap {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }
}

impl FromIterator<(String, String)> for StringMap {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(entries: I) -> StringMap {
        let owned: Vec<(String, String)> = entries.into_iter().collect();
        owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

impl<const N: usize> From<[(&str, &str); N]> for StringMap {
    fn from(entries: [(&str, &str); N]) -> StringMap {
        entries.into_iter().collect()
    }
}

impl From<&BTreeMap<String, String>> for StringMap {
    fn from(m: &BTreeMap<String, String>) -> StringMap {
        m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
}

impl From<BTreeMap<String, String>> for StringMap {
    fn from(m: BTreeMap<String, String>) -> StringMap {
        StringMap::from(&m)
    }
}

/// Labels to match a selector against: a [`StringMap`] or a `BTreeMap` built by hand.
pub trait Labels {
    fn value_of(&self, key: &str) -> Option<&str>;
}

impl Labels for StringMap {
    fn value_of(&self, key: &str) -> Option<&str> {
        self.get(key)
    }
}

impl Labels for BTreeMap<String, String> {
    fn value_of(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<'a> IntoIterator for &'a StringMap {
    type Item = (&'a str, &'a str);
    type IntoIter = Box<dyn Iterator<Item = (&'a str, &'a str)> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl fmt::Debug for StringMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for StringMap {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for StringMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StringMap, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StringMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<StringMap, A::Error> {
                let mut entries: Vec<(std::borrow::Cow<'de, str>, std::borrow::Cow<'de, str>)> =
                    Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) =
                    map.next_entry::<std::borrow::Cow<'de, str>, std::borrow::Cow<'de, str>>()?
                {
                    entries.push(entry);
                }
                Ok(entries
                    .iter()
                    .map(|(k, v)| (k.as_ref(), v.as_ref()))
                    .collect())
            }
            fn visit_unit<E>(self) -> Result<StringMap, E> {
                Ok(StringMap::default())
            }
        }
        // `labels: null` (or `labels:` in YAML) is no labels, as for the API server: read as
        // any value, so that a null reaches `visit_unit`.
        d.deserialize_any(V)
    }
}
