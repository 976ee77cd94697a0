//! Reading object fields the way Go's zero values behave: an absent string is
//! `""`, an absent list or map is empty, an absent number is 0. Printers are
//! written against these so they read like the typed Go code they mirror.

use jiff::Timestamp;
use serde_json::Value;

use crate::table::age;

/// The string at `pointer`, or `""`.
pub fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The list at `pointer`, or an empty one.
pub fn items<'a>(object: &'a Value, pointer: &str) -> &'a [Value] {
    object
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// How many entries the map at `pointer` has.
pub fn entries(object: &Value, pointer: &str) -> usize {
    object
        .pointer(pointer)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

/// The integer at `pointer`, or 0.
pub fn int(object: &Value, pointer: &str) -> i64 {
    object
        .pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or_default()
}

/// Whether a Go pointer-to-struct field is set (present and an object).
pub fn is_set(object: &Value, pointer: &str) -> bool {
    object.pointer(pointer).is_some_and(Value::is_object)
}

/// The `Name` cell.
pub fn name(object: &Value) -> Value {
    text(object, "/metadata/name").into()
}

/// The `Age` cell of the built-in printers.
pub fn age(object: &Value, now: Timestamp) -> Value {
    age::since(object.pointer("/metadata/creationTimestamp"), now).into()
}

/// A string, or the placeholder when it is empty.
pub fn or<'a>(value: &'a str, placeholder: &'a str) -> &'a str {
    if value.is_empty() {
        placeholder
    } else {
        value
    }
}
