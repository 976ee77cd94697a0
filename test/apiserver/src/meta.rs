//! Small accessors for the `metadata` of JSON objects, so store code reads
//! like the Kubernetes concepts it implements.

use serde_json::{Map, Value};

/// Reads a string field of `metadata`, treating empty strings as absent.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Mutable access to `metadata`, creating it (and replacing a non-object) if needed.
pub fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let root = object.as_object_mut().expect("object was just ensured");
    let metadata = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !metadata.is_object() {
        *metadata = Value::Object(Map::new());
    }
    metadata.as_object_mut().expect("metadata was just ensured")
}

/// Sets or removes (`None`) a `metadata` field.
pub fn set_meta(object: &mut Value, field: &str, value: Option<Value>) {
    let metadata = meta_mut(object);
    match value {
        Some(v) => {
            metadata.insert(field.to_string(), v);
        }
        None => {
            metadata.remove(field);
        }
    }
}

/// Copies a `metadata` field from `from` to `to` (removing it from `to` if `from` lacks it).
pub fn copy_meta(from: &Value, to: &mut Value, field: &str) {
    let value = from.get("metadata").and_then(|m| m.get(field)).cloned();
    set_meta(to, field, value);
}

/// The `metadata.finalizers` list is present and non-empty.
pub fn has_finalizers(object: &Value) -> bool {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// Whether two objects ask for the same thing: equal apart from `metadata`, `status`,
/// `apiVersion` and `kind` (a change there bumps `metadata.generation`).
pub fn same_desired_state(a: &Value, b: &Value) -> bool {
    equal_ignoring(a, b, &["metadata", "status", "apiVersion", "kind"])
}

/// Whether two objects are equal apart from the top-level fields `ignored`, compared in place
/// (an update used to copy both objects to find out).
pub fn equal_ignoring(a: &Value, b: &Value, ignored: &[&str]) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let kept = |(k, _): &(&String, &Value)| !ignored.contains(&k.as_str());
    a.iter().filter(kept).count() == b.iter().filter(kept).count()
        && a.iter().filter(kept).all(|(k, v)| b.get(k) == Some(v))
}

/// Current time in the RFC 3339, second-precision form Kubernetes uses.
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}
