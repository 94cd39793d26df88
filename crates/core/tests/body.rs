//! An object's body is kept without what the object's own fields hold (`apiVersion`, `kind`,
//! `metadata.name`, `namespace`, `labels`, `annotations`) and is read back whole: what
//! `Object::value`, `get` and `pointer` give is the document as written, for every shape of
//! metadata and for every object of the upstream renders.

use kfp_mesh_core::inventory::parse_stream;
use kfp_mesh_core::object::Object;
use kfp_mesh_core::yaml::read_with_saphyr;
use serde_json::{Value, json};

fn only_object(text: &str) -> Object {
    let (mut objects, errors) = parse_stream("in", text);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(objects.len(), 1, "{text}");
    objects.remove(0)
}

fn assert_reads_back(o: &Object, doc: &Value) {
    assert_eq!(&o.value(), doc);
    // Read under `spec`: from where its value was written when the object was read from YAML.
    let spec_text = o.text_at(&["spec"]);
    assert_eq!(
        spec_text.map(|t| serde_json::from_str::<Value>(t).expect("the spec's text reads")),
        doc.get("spec").cloned(),
        "spec text of {doc}"
    );
    assert_eq!(
        o.value_at(&["spec", "template", "spec"]),
        doc.pointer("/spec/template/spec").cloned(),
        "template spec of {doc}"
    );
    for field in ["apiVersion", "kind", "metadata", "spec", "data", "absent"] {
        assert_eq!(o.get(field), doc.get(field).cloned(), "{field} of {doc}");
    }
    for pointer in [
        "",
        "/kind",
        "/metadata/name",
        "/metadata/namespace",
        "/metadata/labels",
        "/metadata/labels/a",
        "/metadata/annotations",
        "/metadata/uid",
        "/spec/containers/0/name",
        "/data/k",
    ] {
        assert_eq!(
            o.pointer(pointer),
            doc.pointer(pointer).cloned(),
            "{pointer} of {doc}"
        );
    }
}

#[test]
fn every_shape_of_metadata_reads_back_as_written() {
    let docs = [
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "p", "namespace": "ns", "labels": {"a": "1", "b": ""},
                            "annotations": {"x/y": "z"}},
               "spec": {"containers": [{"name": "main"}]}}),
        // No namespace; empty labels and annotations.
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "n", "labels": {}, "annotations": {}}}),
        // Labels without annotations.
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "c", "labels": {"a": "b"}},
               "data": {"k": "v"}}),
        // Null labels and annotations are none (as for the API server), kept as written.
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "n", "labels": null, "annotations": null},
               "data": {"k": "v"}}),
        // Fields the object does not hold itself.
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "d", "namespace": "ns", "uid": "u-1",
                            "creationTimestamp": "2026-01-01T00:00:00Z",
                            "ownerReferences": [{"kind": "X", "name": "y"}],
                            "labels": {"a": "b"}},
               "spec": {"replicas": 2}, "status": {"readyReplicas": 1}}),
        // A namespace of a cluster-scoped object, written anyway.
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "r", "namespace": ""}}),
    ];
    for doc in docs {
        // As JSON, and as YAML (a comment first: the YAML reader).
        assert_reads_back(&only_object(&doc.to_string()), &doc);
        assert_reads_back(&only_object(&format!("# yaml\n{doc}")), &doc);
    }
}

#[test]
fn null_labels_are_no_labels() {
    for text in [
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels:\n  annotations: null\n",
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": null}}"#,
    ] {
        let o = only_object(text);
        assert!(
            o.meta.labels.is_empty() && o.meta.annotations.is_empty(),
            "{text}"
        );
    }
    // Labels that are not strings are still refused, naming the object's kind.
    let (objects, errors) = parse_stream(
        "in",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels:\n    a: [1]\n",
    );
    assert!(objects.is_empty());
    assert!(
        errors[0].message.contains("unreadable metadata"),
        "{errors:?}"
    );
}

#[test]
fn objects_that_differ_only_in_labels_are_reported_as_defined_twice() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels: {a: '1'}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels: {a: '2'}\n";
    let (objects, errors) = parse_stream("in", text);
    let inv = kfp_mesh_core::inventory::Inventory::from_objects(objects, errors);
    assert_eq!(inv.objects.len(), 1);
    assert_eq!(inv.errors.len(), 1, "{:?}", inv.errors);
    assert!(
        inv.errors[0]
            .message
            .contains("defined again with different content")
    );
}

/// Every object of every upstream render reads back as the YAML document it came from.
#[test]
fn upstream_objects_read_back_as_written() {
    let files = kfp_mesh_testdata::upstream_yaml_files();
    let mut checked = 0usize;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("fixture");
        let mut doc = String::new();
        for line in text.lines().chain(std::iter::once("---")) {
            if line == "---" || line.starts_with("--- ") {
                if let Ok(Some(value)) = read_with_saphyr(&doc) {
                    let (objects, _) = parse_stream("doc", &doc);
                    if let [o] = objects.as_slice()
                        && value.get("items").is_none()
                    {
                        assert_eq!(o.value(), value, "{} {}", file.display(), o.object_ref());
                        // Read from YAML the object is made from the text written on the way;
                        // read from JSON, from a tree: the same object, body text and all.
                        let json = serde_json::to_string(&value).expect("json");
                        let (from_json, _) = parse_stream("doc", &json);
                        let mut from_yaml = o.clone();
                        from_yaml.origin.line = 1;
                        assert_eq!(from_json, vec![from_yaml], "{}", file.display());
                        checked += 1;
                    }
                }
                doc.clear();
            } else {
                doc.push_str(line);
                doc.push('\n');
            }
        }
    }
    assert!(checked > 1000, "{checked} upstream objects checked");
}

/// `Object::read_at` reads a value at a path straight from the body's text: the same value
/// as walking the whole object, for every object of the upstream renders and every path the
/// inventory reads.
#[test]
fn reading_at_a_path_gives_what_the_whole_object_holds() {
    let paths: &[&[&str]] = &[
        &["spec"],
        &["spec", "template", "metadata"],
        &["spec", "template", "spec"],
        &["spec", "jobTemplate", "spec", "template", "spec"],
        &["spec", "replicas", "deeper"],
        &["spec", "containers"],
        &["data"],
        &["metadata", "name"],
        &["metadata", "labels"],
        &["absent"],
        &["spec", "absent"],
    ];
    let walk = |value: &Value, path: &[&str]| {
        let mut at = Some(value);
        for field in path {
            at = at.and_then(|v| v.get(field));
        }
        at.cloned()
    };
    let mut checked = 0usize;
    for file in kfp_mesh_testdata::upstream_yaml_files() {
        let text = std::fs::read_to_string(&file).expect("fixture");
        let (objects, _) = parse_stream("f", &text);
        for o in &objects {
            let whole = o.value();
            for path in paths {
                assert_eq!(
                    o.read_at::<Value>(path),
                    Ok(walk(&whole, path)),
                    "{path:?} of {} in {}",
                    o.object_ref(),
                    file.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 1000, "{checked} upstream objects checked");
}

#[test]
fn a_value_of_the_wrong_type_at_a_path_is_an_error_without_a_place_in_the_body() {
    let o = only_object(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  replicas: 70000\n  template: {spec: null}\n",
    );
    assert_eq!(
        o.read_at::<u16>(&["spec", "replicas"]),
        Err("invalid value: integer `70000`, expected u16".to_string())
    );
    // Null is a value (an `Option` reads it as none); a missing field is no value.
    assert_eq!(
        o.read_at::<Option<u16>>(&["spec", "template", "spec"]),
        Ok(Some(None))
    );
    assert_eq!(o.read_at::<u16>(&["spec", "template", "missing"]), Ok(None));
    // A field inside a scalar is not there.
    assert_eq!(o.read_at::<u16>(&["spec", "replicas", "x"]), Ok(None));
}
