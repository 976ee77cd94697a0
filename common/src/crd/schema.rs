//! Schema pieces the derive cannot express, and the final pass that makes the
//! generated CRDs say what upstream's say.
//!
//! Upstream's CRDs come from controller-gen with every field optional and only
//! a handful of server-side defaults. Our types default every field for
//! deserialisation (Go reads a missing field as its zero value), which makes
//! schemars emit a `default` for nearly everything and never a `required`;
//! a real API server would then fill those defaults into stored objects. So
//! fields declare the CRD defaults and required-ness they really have through
//! the [`DEFAULT`] and [`REQUIRED`] extension markers, and [`finalize`] drops
//! everything else: schemars' own defaults, `nullable` (upstream never sets
//! it, so the server prunes nulls) and the marker keys themselves.

use schemars::{json_schema, Schema, SchemaGenerator};
use serde_json::{Map, Value};

/// Extension key carrying a field's real CRD default; [`finalize`] turns it into `default`.
pub const DEFAULT: &str = "x-kubeovn-rs-default";
/// Extension key marking a field as required by the CRD; [`finalize`] lists it in the parent's `required`.
pub const REQUIRED: &str = "x-kubeovn-rs-required";

/// Go `int` (64-bit, unbounded in the CRD): controller-gen writes no `format`.
pub fn go_int(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer" })
}

/// Go `uint32`: controller-gen types it as `int32`, with no minimum.
pub fn go_uint32(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "format": "int32" })
}

/// The requirement list shared by label and node selectors.
fn selector_requirements() -> Value {
    serde_json::json!({
        "type": "array",
        "items": {
            "type": "object",
            "required": ["key", "operator"],
            "properties": {
                "key": { "type": "string" },
                "operator": { "type": "string" },
                "values": {
                    "type": "array",
                    "items": { "type": "string" },
                    "x-kubernetes-list-type": "atomic"
                }
            }
        },
        "x-kubernetes-list-type": "atomic"
    })
}

/// `metav1.LabelSelector`, replaced as a whole by server-side apply like upstream's.
pub fn label_selector(_: &mut SchemaGenerator) -> Schema {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "matchExpressions": selector_requirements(),
            "matchLabels": {
                "type": "object",
                "additionalProperties": { "type": "string" }
            }
        },
        "x-kubernetes-map-type": "atomic"
    });
    Schema::try_from(schema).expect("label selector schema is an object")
}

/// A list of [`label_selector`]s, for subnets' namespace and gateway-node selectors.
pub fn label_selectors(generator: &mut SchemaGenerator) -> Schema {
    let item = label_selector(generator).to_value();
    Schema::try_from(serde_json::json!({ "type": "array", "items": item }))
        .expect("array schema is an object")
}

/// `corev1.Affinity` as controller-gen renders it: every list atomic, and
/// node-selector terms and label selectors replaced whole by server-side apply.
pub fn affinity(generator: &mut SchemaGenerator) -> Schema {
    let mut value = generator
        .subschema_for::<k8s_openapi::api::core::v1::Affinity>()
        .to_value();
    mark_atomic(&mut value);
    Schema::try_from(value).expect("affinity schema is an object")
}

/// Property sets of the core types upstream's generator marks `x-kubernetes-map-type: atomic`.
const ATOMIC_STRUCTS: [&[&str]; 3] = [
    &["matchExpressions", "matchFields"],
    &["nodeSelectorTerms"],
    &["matchExpressions", "matchLabels"],
];

fn mark_atomic(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if obj.get("type") == Some(&Value::from("array")) && !obj.contains_key("x-kubernetes-list-type")
    {
        obj.insert("x-kubernetes-list-type".into(), "atomic".into());
    }
    if let Some(Value::Object(props)) = obj.get("properties") {
        let mut names: Vec<&str> = props.keys().map(String::as_str).collect();
        names.sort_unstable();
        if ATOMIC_STRUCTS.contains(&names.as_slice()) {
            obj.insert("x-kubernetes-map-type".into(), "atomic".into());
        }
    }
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        props.values_mut().for_each(mark_atomic);
    }
    if let Some(items) = obj.get_mut("items") {
        mark_atomic(items);
    }
}

/// A resource quantity (`500m`, `1Gi`, `2`), validated like the API server validates core types.
fn quantity() -> Value {
    serde_json::json!({
        "anyOf": [{ "type": "integer" }, { "type": "string" }],
        "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
        "x-kubernetes-int-or-string": true
    })
}

/// `corev1.ResourceRequirements` with validated quantities and claims keyed by name.
pub fn resource_requirements(_: &mut SchemaGenerator) -> Schema {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "claims": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": { "type": "string" },
                        "request": { "type": "string" }
                    }
                },
                "x-kubernetes-list-map-keys": ["name"],
                "x-kubernetes-list-type": "map"
            },
            "limits": { "type": "object", "additionalProperties": quantity() },
            "requests": { "type": "object", "additionalProperties": quantity() }
        }
    });
    Schema::try_from(schema).expect("resource requirements schema is an object")
}

/// Rewrites a generated CRD schema into its final form (see the module docs).
pub fn finalize(schema: &mut Value) {
    walk(schema);
}

/// Keys whose value is a single subschema.
const SCHEMA_KEYS: [&str; 3] = ["items", "additionalProperties", "not"];
/// Keys whose value is a list of subschemas.
const SCHEMA_LIST_KEYS: [&str; 3] = ["anyOf", "oneOf", "allOf"];

fn walk(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    obj.remove("nullable");
    obj.remove("default");
    obj.remove("title");
    // kube's structural rewriter empties the branches of int-or-string's
    // `anyOf`; put back the one form the API server documents for it.
    if obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        && obj.contains_key("anyOf")
    {
        obj.insert(
            "anyOf".into(),
            serde_json::json!([{ "type": "integer" }, { "type": "string" }]),
        );
    }
    if let Some(default) = obj.remove(DEFAULT) {
        obj.insert("default".into(), default);
    }
    for key in SCHEMA_KEYS {
        if let Some(sub) = obj.get_mut(key) {
            walk(sub);
        }
    }
    for key in SCHEMA_LIST_KEYS {
        if let Some(Value::Array(subs)) = obj.get_mut(key) {
            subs.iter_mut().for_each(walk);
        }
    }
    let mut required: Vec<Value> = Vec::new();
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        for (name, prop) in props.iter_mut() {
            walk(prop);
            if take_required_marker(prop) {
                required.push(Value::String(name.clone()));
            }
        }
    }
    // schemars only ever marks fields without defaults as required; ours all
    // have defaults, so anything listed here came from a hand-written schema
    // (k8s-openapi's or ours) and is kept, plus the marked fields.
    let mut merged = match obj.remove("required") {
        Some(Value::Array(existing)) => existing,
        _ => Vec::new(),
    };
    for name in required {
        if !merged.contains(&name) {
            merged.push(name);
        }
    }
    if !merged.is_empty() {
        obj.insert("required".into(), Value::Array(merged));
    }
}

fn take_required_marker(prop: &mut Value) -> bool {
    prop.as_object_mut()
        .and_then(|p: &mut Map<String, Value>| p.remove(REQUIRED))
        .is_some_and(|v| v == Value::Bool(true))
}
