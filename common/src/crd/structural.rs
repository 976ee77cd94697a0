//! A checker for the apiextensions.k8s.io/v1 rules a real API server applies
//! to a CRD before accepting it, so a bad schema fails our tests rather than a
//! cluster upgrade. The fixture API server in `test/apiserver` does no schema
//! validation, which is why this exists.
//!
//! Covered: structural-schema rules (every node typed unless int-or-string or
//! preserve-unknown-fields; no `type`/`default`/`description`/`nullable`/
//! `additionalProperties` inside junctors except the int-or-string form;
//! `properties` and `additionalProperties` exclusive), keywords v1 forbids,
//! the list/map-type extensions, that defaults and enums fit their type and
//! bounds, that `required` names exist, and that printer-column and scale
//! paths point at fields the schema has. CEL rules are only checked for being
//! present and non-empty; compiling them needs a real API server.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Map, Value};

/// Keywords apiextensions v1 rejects outright.
const FORBIDDEN: [&str; 7] = [
    "$ref",
    "definitions",
    "additionalItems",
    "patternProperties",
    "dependencies",
    "id",
    "$schema",
];
/// Keywords that may not appear inside `anyOf`/`allOf`/`oneOf`/`not`.
const NOT_IN_JUNCTORS: [&str; 5] = [
    "type",
    "default",
    "description",
    "nullable",
    "additionalProperties",
];
const JUNCTORS: [&str; 3] = ["anyOf", "allOf", "oneOf"];

/// Every violation found in the CRD, each prefixed with the CRD name and a path.
pub fn check_crd(crd: &CustomResourceDefinition) -> Vec<String> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let mut out = Vec::new();
    for version in &crd.spec.versions {
        let Some(schema) = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
        else {
            out.push(format!("{name}/{}: no openAPIV3Schema", version.name));
            continue;
        };
        let schema = serde_json::to_value(schema).expect("schema serialises");
        let mut found = check(&schema);
        for column in version.additional_printer_columns.iter().flatten() {
            if !path_exists(&schema, &column.json_path) {
                found.push(format!(
                    "printer column {:?}: {} is not in the schema",
                    column.name, column.json_path
                ));
            }
        }
        if let Some(scale) = version.subresources.as_ref().and_then(|s| s.scale.as_ref()) {
            let paths = [
                Some(&scale.spec_replicas_path),
                Some(&scale.status_replicas_path),
                scale.label_selector_path.as_ref(),
            ];
            for path in paths.into_iter().flatten() {
                if !path_exists(&schema, path) {
                    found.push(format!("scale path {path} is not in the schema"));
                }
            }
        }
        out.extend(
            found
                .into_iter()
                .map(|f| format!("{name}/{}: {f}", version.name)),
        );
    }
    out
}

/// Violations in one `openAPIV3Schema`, each with the JSON path where it occurs.
pub fn check(root: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match root.as_object() {
        Some(obj) if obj.get("type") == Some(&Value::from("object")) => {}
        _ => out.push("<root>: the root must be of type object".to_owned()),
    }
    node(root, "", false, &mut out);
    if let Some(meta) = root.pointer("/properties/metadata") {
        let allowed = ["type", "properties", "description"];
        if let Some(obj) = meta.as_object() {
            for key in obj.keys().filter(|k| !allowed.contains(&k.as_str())) {
                out.push(format!(".metadata: {key} is not allowed on metadata"));
            }
        }
    }
    out
}

fn node(schema: &Value, path: &str, in_junctor: bool, out: &mut Vec<String>) {
    let here = if path.is_empty() { "<root>" } else { path };
    let Some(obj) = schema.as_object() else {
        out.push(format!("{here}: schema is not an object"));
        return;
    };
    for key in FORBIDDEN {
        if obj.contains_key(key) {
            out.push(format!("{here}: {key} is not allowed in apiextensions v1"));
        }
    }
    if obj.get("uniqueItems") == Some(&Value::Bool(true)) {
        out.push(format!("{here}: uniqueItems: true is not allowed"));
    }
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields");
    if preserve.is_some_and(|v| v != &Value::Bool(true)) {
        out.push(format!(
            "{here}: x-kubernetes-preserve-unknown-fields must be true when set"
        ));
    }
    let ty = obj.get("type").and_then(Value::as_str);
    if in_junctor {
        for key in NOT_IN_JUNCTORS {
            if obj.contains_key(key) {
                out.push(format!("{here}: {key} is not allowed inside a junctor"));
            }
        }
    } else {
        if ty.is_none() && !int_or_string && preserve.is_none() {
            out.push(format!(
                "{here}: no type (structural schemas type every node)"
            ));
        }
        if int_or_string && ty.is_some() {
            out.push(format!(
                "{here}: x-kubernetes-int-or-string must not be combined with type"
            ));
        }
    }
    if let Some(ty) = ty {
        let known = ["object", "array", "string", "integer", "number", "boolean"];
        if !known.contains(&ty) {
            out.push(format!("{here}: unknown type {ty:?}"));
        }
        if ty == "array" && !obj.contains_key("items") {
            out.push(format!("{here}: arrays must specify items"));
        }
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        out.push(format!(
            "{here}: properties and additionalProperties are mutually exclusive"
        ));
    }
    extensions(obj, ty, here, out);
    values(obj, ty, here, out);
    if let Some(Value::Array(required)) = obj.get("required") {
        let props = obj.get("properties").and_then(Value::as_object);
        for name in required {
            let name = name.as_str().unwrap_or_default();
            if !props.is_some_and(|p| p.contains_key(name)) {
                out.push(format!("{here}: required field {name:?} is not a property"));
            }
        }
    }
    junctors(obj, int_or_string, path, here, out);
    if let Some(Value::Object(props)) = obj.get("properties") {
        for (name, sub) in props {
            node(sub, &format!("{path}.{name}"), in_junctor, out);
        }
    }
    if let Some(items) = obj.get("items") {
        node(items, &format!("{path}[]"), in_junctor, out);
    }
    match obj.get("additionalProperties") {
        Some(Value::Bool(_)) | None => {}
        Some(sub) => node(sub, &format!("{path}{{}}"), in_junctor, out),
    }
}

fn junctors(
    obj: &Map<String, Value>,
    int_or_string: bool,
    path: &str,
    here: &str,
    out: &mut Vec<String>,
) {
    let int_or_string_form = serde_json::json!([{ "type": "integer" }, { "type": "string" }]);
    for key in JUNCTORS {
        let Some(branches) = obj.get(key) else {
            continue;
        };
        if int_or_string && key == "anyOf" && branches == &int_or_string_form {
            continue;
        }
        let Some(branches) = branches.as_array() else {
            out.push(format!("{here}: {key} must be a list"));
            continue;
        };
        for (i, branch) in branches.iter().enumerate() {
            node(branch, &format!("{path}.{key}[{i}]"), true, out);
            // Fields named inside a junctor must also be declared outside it.
            if let Some(Value::Object(props)) = branch.get("properties") {
                let outer = obj.get("properties").and_then(Value::as_object);
                for name in props.keys() {
                    if !outer.is_some_and(|o| o.contains_key(name)) {
                        out.push(format!(
                            "{here}: {key}[{i}] names {name:?}, which is not declared outside it"
                        ));
                    }
                }
            }
        }
    }
    if let Some(not) = obj.get("not") {
        node(not, &format!("{path}.not"), true, out);
    }
}

fn extensions(obj: &Map<String, Value>, ty: Option<&str>, here: &str, out: &mut Vec<String>) {
    if let Some(list_type) = obj.get("x-kubernetes-list-type") {
        if ty != Some("array") {
            out.push(format!("{here}: x-kubernetes-list-type on a non-array"));
        }
        match list_type.as_str() {
            Some("atomic") => {}
            Some("set") => {
                let item_ty = obj
                    .get("items")
                    .and_then(|i| i.get("type"))
                    .and_then(Value::as_str);
                if matches!(item_ty, Some("object") | Some("array")) {
                    out.push(format!("{here}: a set's items must be scalars"));
                }
            }
            Some("map") => {
                let keys = obj
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array);
                let Some(keys) = keys.filter(|k| !k.is_empty()) else {
                    out.push(format!(
                        "{here}: list-type map needs x-kubernetes-list-map-keys"
                    ));
                    return;
                };
                let items = obj.get("items");
                let required = items
                    .and_then(|i| i.get("required"))
                    .and_then(Value::as_array);
                for key in keys {
                    let name = key.as_str().unwrap_or_default();
                    let in_required = required.is_some_and(|r| r.contains(key));
                    let defaulted = items
                        .and_then(|i| i.pointer(&format!("/properties/{name}/default")))
                        .is_some();
                    if !in_required && !defaulted {
                        out.push(format!(
                            "{here}: map key {name:?} must be required or defaulted in the items"
                        ));
                    }
                }
            }
            _ => out.push(format!(
                "{here}: unknown x-kubernetes-list-type {list_type}"
            )),
        }
    } else if obj.contains_key("x-kubernetes-list-map-keys") {
        out.push(format!(
            "{here}: x-kubernetes-list-map-keys without list-type map"
        ));
    }
    if let Some(map_type) = obj.get("x-kubernetes-map-type") {
        if ty != Some("object") {
            out.push(format!("{here}: x-kubernetes-map-type on a non-object"));
        }
        if !matches!(map_type.as_str(), Some("atomic") | Some("granular")) {
            out.push(format!("{here}: unknown x-kubernetes-map-type {map_type}"));
        }
    }
    if let Some(rules) = obj.get("x-kubernetes-validations") {
        let ok = rules.as_array().is_some_and(|rules| {
            rules.iter().all(|r| {
                r.get("rule")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.trim().is_empty())
            })
        });
        if !ok {
            out.push(format!(
                "{here}: every x-kubernetes-validations entry needs a rule"
            ));
        }
    }
}

/// Whether `value` is an instance of the OpenAPI `ty`.
fn fits(value: &Value, ty: Option<&str>) -> bool {
    match ty {
        Some("string") => value.is_string(),
        Some("boolean") => value.is_boolean(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        _ => true,
    }
}

fn values(obj: &Map<String, Value>, ty: Option<&str>, here: &str, out: &mut Vec<String>) {
    let choices = obj.get("enum").and_then(Value::as_array);
    for choice in choices.into_iter().flatten() {
        if !fits(choice, ty) {
            out.push(format!("{here}: enum value {choice} is not a {ty:?}"));
        }
    }
    let Some(default) = obj.get("default") else {
        return;
    };
    if !fits(default, ty) {
        out.push(format!("{here}: default {default} is not a {ty:?}"));
    }
    if choices.is_some_and(|c| !c.contains(default)) {
        out.push(format!(
            "{here}: default {default} is not one of the enum values"
        ));
    }
    if let Some(n) = default.as_f64() {
        let below = obj
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|min| n < min);
        let above = obj
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|max| n > max);
        if below || above {
            out.push(format!("{here}: default {default} is out of bounds"));
        }
    }
}

/// Whether a printer-column style path (`.spec.a.b`) names a schema field.
/// `.metadata.*` is accepted as the API server accepts it.
fn path_exists(root: &Value, json_path: &str) -> bool {
    let mut node = root;
    let mut segments = json_path.trim_start_matches('.').split('.');
    if json_path.starts_with(".metadata.") {
        return true;
    }
    for segment in segments.by_ref() {
        match node.pointer(&format!("/properties/{segment}")) {
            Some(next) => node = next,
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_a_typed_schema() {
        let s = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "n": {"type": "integer", "default": 1, "minimum": 0},
                "q": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                "m": {"type": "array", "items": {"type": "object", "required": ["k"], "properties": {"k": {"type": "string"}}},
                      "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"]}
            }}
        }});
        assert_eq!(check(&s), Vec::<String>::new());
    }

    #[test]
    fn rejects_what_the_api_server_rejects() {
        let s = json!({"type": "object", "properties": {
            "untyped": {},
            "both": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}},
            "junk": {"type": "string", "anyOf": [{"type": "string"}]},
            "badDefault": {"type": "integer", "default": "x"},
            "setOfObjects": {"type": "array", "items": {"type": "object"}, "x-kubernetes-list-type": "set"},
            "mapNoKeys": {"type": "array", "items": {"type": "object"}, "x-kubernetes-list-type": "map"},
            "ref": {"$ref": "#/definitions/x", "type": "object"},
            "missing": {"type": "object", "required": ["nope"]}
        }});
        let found = check(&s);
        for needle in [
            ".untyped: no type",
            ".both: properties and additionalProperties",
            ".junk.anyOf[0]: type is not allowed inside a junctor",
            ".badDefault: default",
            ".setOfObjects: a set's items",
            ".mapNoKeys: list-type map needs",
            ".ref: $ref",
            ".missing: required field",
        ] {
            assert!(
                found.iter().any(|f| f.starts_with(needle)),
                "{needle} not in {found:#?}"
            );
        }
    }
}
