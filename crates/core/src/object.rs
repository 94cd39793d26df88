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
            write!(f, "{}", self.source)
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
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// The part of `metadata` the analysis uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Meta {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
}

impl Meta {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
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
}

/// The whole of an object as read, kept as compact JSON text.
///
/// A parsed `serde_json::Value` of a typical manifest takes about ten times the memory of its
/// text, and after the inventory is built only a few objects (KFP's own workloads and
/// ConfigMaps, webhook configurations, Profiles) are read raw again: each read parses the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Body(Box<str>);

impl Body {
    pub fn new(value: &serde_json::Value) -> Body {
        // Serializing a `Value` cannot fail: its map keys are strings.
        Body(
            serde_json::to_string(value)
                .unwrap_or_default()
                .into_boxed_str(),
        )
    }

    /// The object as a JSON tree (`Null` for an empty body).
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).unwrap_or(serde_json::Value::Null)
    }

    /// The value at a top-level field.
    pub fn get(&self, field: &str) -> Option<serde_json::Value> {
        match self.value() {
            serde_json::Value::Object(mut map) => map.remove(field),
            _ => None,
        }
    }

    /// The value at a JSON pointer (`/spec/template/spec`).
    pub fn pointer(&self, pointer: &str) -> Option<serde_json::Value> {
        self.value()
            .pointer_mut(pointer)
            .map(serde_json::Value::take)
    }
}

impl From<serde_json::Value> for Body {
    fn from(value: serde_json::Value) -> Body {
        Body::new(&value)
    }
}

impl Serialize for Body {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(serializer)
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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

/// A JSON object of strings (labels, annotations, ConfigMap data) as a map; other values are
/// left out, and anything but an object is an empty map.
pub fn string_map(v: Option<&serde_json::Value>) -> BTreeMap<String, String> {
    v.and_then(serde_json::Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}
