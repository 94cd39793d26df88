//! The parts of a Workflow that [`mutate_workflow`](super::mutate_workflow) reads, parsed from
//! JSON without building the rest.
//!
//! An AdmissionReview of a compiled KFP pipeline is mostly DAGs, arguments, inputs and outputs,
//! and of the pod templates mostly `env`, volume mounts and security contexts: none of them is
//! read by the role detection or the mutation. Building them as [`Value`]s was most of a
//! review's cost, so they are skipped (still checked to be valid JSON) while parsing.
//!
//! What is kept, by [`Shape`]:
//! - the Workflow's `kind`;
//! - of each template: `name`; of `metadata`, `labels` and `annotations`; of `container` and
//!   `script`, `image`, `command`, `args` and `resources`; of each `initContainers` entry,
//!   `name` and `image`.
//!
//! A field whose value is not of the expected kind (a `container` that is a string, say) is
//! kept whole, so the mutation reports it exactly as it would on the whole object.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};
use serde_json::{Map, Value};

/// Parses a Workflow from JSON keeping only what [`mutate_workflow`](super::mutate_workflow)
/// reads (see the module documentation), skipping the rest without building it.
/// `mutate_workflow` gives the same plan on this view as on the whole object; the webhook uses
/// it because parsing is most of a review's cost.
pub fn parse_workflow_view(json: &str) -> Result<Value, serde_json::Error> {
    let view: WorkflowView = serde_json::from_str(json)?;
    Ok(view.into_value())
}

/// The parts of a Workflow [`mutate_workflow`](super::mutate_workflow) reads; deserialize it
/// in place of the whole object (the webhook parses it inside the AdmissionReview in one pass),
/// then [`WorkflowView::into_value`].
#[derive(Debug, Deserialize)]
pub struct WorkflowView {
    kind: Option<Value>,
    spec: Option<SpecView>,
}

#[derive(Debug, Deserialize)]
struct SpecView {
    templates: Option<Vec<TemplateView>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TemplateView {
    name: Option<Value>,
    metadata: Option<Shaped<MetadataShape>>,
    container: Option<Shaped<ContainerShape>>,
    script: Option<Shaped<ContainerShape>>,
    init_containers: Option<Shaped<InitContainersShape>>,
}

impl WorkflowView {
    /// The view as a JSON object of the Workflow's shape, for
    /// [`mutate_workflow`](super::mutate_workflow).
    pub fn into_value(self) -> Value {
        let mut out = Map::new();
        if let Some(kind) = self.kind {
            out.insert("kind".into(), kind);
        }
        if let Some(spec) = self.spec {
            let mut s = Map::new();
            if let Some(templates) = spec.templates {
                let list = templates
                    .into_iter()
                    .map(|t| {
                        let mut m = Map::new();
                        for (k, v) in [
                            ("name", t.name),
                            ("metadata", t.metadata.map(Shaped::into_value)),
                            ("container", t.container.map(Shaped::into_value)),
                            ("script", t.script.map(Shaped::into_value)),
                            ("initContainers", t.init_containers.map(Shaped::into_value)),
                        ] {
                            if let Some(v) = v {
                                m.insert(k.to_string(), v);
                            }
                        }
                        Value::Object(m)
                    })
                    .collect();
                s.insert("templates".into(), Value::Array(list));
            }
            out.insert("spec".into(), Value::Object(s));
        }
        Value::Object(out)
    }
}

/// What of a JSON value is built.
#[derive(Debug)]
enum Shape {
    /// The whole value.
    Whole,
    /// Of an object, only these fields (each with its shape); any other value whole.
    Fields(&'static [(&'static str, Shape)]),
    /// Of an array, each element with this shape; any other value whole.
    Each(&'static Shape),
}

/// What the mutation reads of a template's `metadata` (and the role detection of its
/// annotations).
const METADATA: Shape = Shape::Fields(&[("labels", Shape::Whole), ("annotations", Shape::Whole)]);
/// What the role detection (`image`, `command`, `args`) and the mutation (`resources`) read of
/// a template's `container` or `script`.
const CONTAINER: Shape = Shape::Fields(&[
    ("image", Shape::Whole),
    ("command", Shape::Whole),
    ("args", Shape::Whole),
    ("resources", Shape::Whole),
]);
/// What the role detection reads of `initContainers` (the executor's `kfp-launcher`).
const INIT_CONTAINERS: Shape = Shape::Each(&Shape::Fields(&[
    ("name", Shape::Whole),
    ("image", Shape::Whole),
]));

trait ShapeOf {
    const SHAPE: &'static Shape;
}

#[derive(Debug)]
struct MetadataShape;
impl ShapeOf for MetadataShape {
    const SHAPE: &'static Shape = &METADATA;
}

#[derive(Debug)]
struct ContainerShape;
impl ShapeOf for ContainerShape {
    const SHAPE: &'static Shape = &CONTAINER;
}

#[derive(Debug)]
struct InitContainersShape;
impl ShapeOf for InitContainersShape {
    const SHAPE: &'static Shape = &INIT_CONTAINERS;
}

/// A value deserialized with the shape `S`.
#[derive(Debug)]
struct Shaped<S>(Value, PhantomData<S>);

impl<S> Shaped<S> {
    fn into_value(self) -> Value {
        self.0
    }
}

impl<'de, S: ShapeOf> Deserialize<'de> for Shaped<S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ShapeSeed(S::SHAPE)
            .deserialize(d)
            .map(|v| Shaped(v, PhantomData))
    }
}

struct ShapeSeed(&'static Shape);

impl<'de> DeserializeSeed<'de> for ShapeSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        match self.0 {
            Shape::Whole => Value::deserialize(d),
            shape => d.deserialize_any(ShapeVisitor(shape)),
        }
    }
}

/// Builds what the shape keeps; whatever is not of the shape's kind is handed to [`Value`]'s
/// own deserialization, so it is built exactly as `Value` builds it.
struct ShapeVisitor(&'static Shape);

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Value::deserialize(v.into_deserializer())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Value::deserialize(v.into_deserializer())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Value::deserialize(v.into_deserializer())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Value::deserialize(v.into_deserializer())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        ShapeSeed(self.0).deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let Shape::Each(element) = self.0 else {
            return Value::deserialize(de::value::SeqAccessDeserializer::new(seq));
        };
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element_seed(ShapeSeed(element))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Shape::Fields(fields) = self.0 else {
            return Value::deserialize(de::value::MapAccessDeserializer::new(map));
        };
        let mut out = Map::new();
        while let Some(field) = map.next_key_seed(FieldSeed(fields))? {
            match field {
                Some((name, shape)) => {
                    // A repeated key replaces the earlier value, as in `Value`.
                    let v = map.next_value_seed(ShapeSeed(shape))?;
                    out.insert(name.to_string(), v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// An object key: which of the shape's fields it is, if any (without allocating).
struct FieldSeed(&'static [(&'static str, Shape)]);

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Option<(&'static str, &'static Shape)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed {
    type Value = Option<(&'static str, &'static Shape)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self
            .0
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(name, shape)| (*name, shape)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Kept fields are built exactly as `Value` builds them; the others are not built.
    #[test]
    fn shapes() {
        let wf = json!({"kind": "Workflow", "metadata": {"name": "x"}, "spec": {
        "arguments": {"parameters": [{"name": "p", "value": "{\"a\":1}"}]},
        "templates": [
            {"name": "t", "dag": {"tasks": []},
             "metadata": {"labels": {"a": "b"}, "annotations": {"c": "d"}, "x": 1},
             "container": {"name": "main", "image": "i", "command": ["driver"], "args": ["--a", 1.5, null],
                           "resources": {"limits": {"cpu": 1}}, "env": [{"name": "E"}]},
             "initContainers": [{"name": "kfp-launcher", "image": "l", "args": ["x"]}, 7, "s"]},
            {"name": 3, "metadata": "not an object", "script": ["not", "an", "object"],
             "initContainers": {"name": "not a list"}},
            {"container": 12.5, "initContainers": null, "metadata": null},
        ]}});
        let view = parse_workflow_view(&wf.to_string()).expect("parses");
        assert_eq!(
            view,
            json!({"kind": "Workflow", "spec": {"templates": [
                {"name": "t",
                 "metadata": {"labels": {"a": "b"}, "annotations": {"c": "d"}},
                 "container": {"image": "i", "command": ["driver"], "args": ["--a", 1.5, null],
                               "resources": {"limits": {"cpu": 1}}},
                 "initContainers": [{"name": "kfp-launcher", "image": "l"}, 7, "s"]},
                {"name": 3, "metadata": "not an object", "script": ["not", "an", "object"],
                 "initContainers": {"name": "not a list"}},
                {"container": 12.5},
            ]}})
        );
    }

    /// Skipped parts are still read as JSON: invalid JSON anywhere is an error.
    #[test]
    fn skipped_parts_must_be_json() {
        for bad in [
            r#"{"spec": {"templates": [{"container": {"env": [tru]}}]}}"#,
            r#"{"spec": {"templates": [{"container": {"env": "\x"}}]}}"#,
            r#"{"spec": {"templates": [{"metadata": {"x": 01}}]}}"#,
            r#"{"spec": {"templates": [{"initContainers": [{"args": [1,]}]}]}}"#,
            r#"{"spec": {"templates": [{"container": {"image": "i"},}]}}"#,
        ] {
            assert!(parse_workflow_view(bad).is_err(), "{bad}");
        }
        // Repeated keys: the last one counts, as in `Value`.
        assert_eq!(
            parse_workflow_view(
                r#"{"spec": {"templates": [{"container": {"image": "a", "image": "b", "env": 1, "env": 2}}]}}"#
            )
            .expect("parses"),
            json!({"spec": {"templates": [{"container": {"image": "b"}}]}})
        );
    }
}
