//! The PATCH flavours clients send: JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902), strategic merge patch (for built-in kinds) and a merge-style
//! approximation of server-side apply.

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// Which patch format a request body is in, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`
    Merge,
    /// `application/json-patch+json`
    Json,
    /// `application/strategic-merge-patch+json`
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply)
    Apply,
}

impl PatchKind {
    /// Maps a request `Content-Type` to a patch kind; `None` if it is not a patch type.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let mime = content_type.split(';').next().unwrap_or_default().trim();
        match mime {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/json-patch+json" => Some(Self::Json),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// RFC 7386: maps merge recursively, `null` deletes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (key, value) in patch_map {
        if value.is_null() {
            target_map.remove(key);
        } else {
            merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

fn unescape_pointer_token(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> ApiResult<(String, String)> {
    if !path.starts_with('/') {
        return Err(ApiError::bad_request(format!(
            "json patch: invalid path {path:?}"
        )));
    }
    let (parent, last) = path.rsplit_once('/').unwrap_or(("", path));
    Ok((parent.to_string(), unescape_pointer_token(last)))
}

fn add_at(doc: &mut Value, path: &str, value: Value) -> ApiResult<()> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    let missing = || ApiError::bad_request(format!("json patch: path {path:?} does not exist"));
    match doc.pointer_mut(&parent).ok_or_else(missing)? {
        Value::Object(map) => {
            map.insert(last, value);
            Ok(())
        }
        Value::Array(items) => {
            let index = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= items.len())
                    .ok_or_else(missing)?
            };
            items.insert(index, value);
            Ok(())
        }
        _ => Err(missing()),
    }
}

fn remove_at(doc: &mut Value, path: &str) -> ApiResult<Value> {
    let (parent, last) = split_pointer(path)?;
    let missing = || ApiError::bad_request(format!("json patch: path {path:?} does not exist"));
    match doc.pointer_mut(&parent).ok_or_else(missing)? {
        Value::Object(map) => map.remove(&last).ok_or_else(missing),
        Value::Array(items) => {
            let index = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < items.len())
                .ok_or_else(missing)?;
            Ok(items.remove(index))
        }
        _ => Err(missing()),
    }
}

/// RFC 6902 operations, applied atomically (the caller keeps the original on error).
pub fn json_patch(target: &mut Value, ops: &Value) -> ApiResult<()> {
    let ops = ops
        .as_array()
        .ok_or_else(|| ApiError::bad_request("json patch: body must be an array of operations"))?;
    for op in ops {
        let field = |name: &str| {
            op.get(name).and_then(Value::as_str).ok_or_else(|| {
                ApiError::bad_request(format!("json patch: operation lacks {name:?}"))
            })
        };
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| ApiError::bad_request("json patch: operation lacks \"value\""))
        };
        let path = field("path")?;
        match field("op")? {
            "add" => add_at(target, path, value()?)?,
            "remove" => {
                remove_at(target, path)?;
            }
            "replace" => {
                remove_at(target, path)?;
                add_at(target, path, value()?)?;
            }
            "move" => {
                let moved = remove_at(target, field("from")?)?;
                add_at(target, path, moved)?;
            }
            "copy" => {
                let from = field("from")?;
                let copied = target.pointer(from).cloned().ok_or_else(|| {
                    ApiError::bad_request(format!("json patch: path {from:?} does not exist"))
                })?;
                add_at(target, path, copied)?;
            }
            "test" => {
                // As the API server's JSON patch library does, a missing member tests equal
                // to null (clients add a first finalizer with test-null-then-add).
                let expected = value()?;
                let actual = target.pointer(path).unwrap_or(&Value::Null);
                if *actual != expected {
                    return Err(ApiError::invalid(format!(
                        "json patch: test failed at {path:?}"
                    )));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "json patch: unknown op {other:?}"
                )))
            }
        }
    }
    Ok(())
}

/// The merge key the built-in Kubernetes types declare for a list field, if any.
fn merge_key(field: &str, sample: Option<&Value>) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "containerStatuses"
        | "initContainerStatuses" => Some("name"),
        "volumeMounts" | "volumeDevices" => Some("mountPath"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "hostAliases" => Some("ip"),
        "topologySpreadConstraints" => Some("topologyKey"),
        "ports" => Some(
            if sample.is_some_and(|s| s.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            },
        ),
        _ => None,
    }
}

/// Primitive lists the built-in types merge as sets instead of replacing.
fn merges_as_set(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// How directives in a patch are treated: strategic merge honours `$patch`
/// and friends; apply has no directives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Strategic,
    Apply,
}

/// Strategic merge patch as kubectl sends it for built-in kinds: maps merge,
/// keyed lists merge by their merge key, and `$patch`, `$retainKeys`,
/// `$setElementOrder/...` and `$deleteFromPrimitiveList/...` directives apply.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> ApiResult<()> {
    merge_map_value(target, patch, Mode::Strategic)
}

/// Server-side apply approximated as a strategic-style merge without directives:
/// fields in the applied configuration win, fields it does not mention stay.
pub fn apply_merge(target: &mut Value, applied: &Value) -> ApiResult<()> {
    merge_map_value(target, applied, Mode::Apply)
}

fn merge_map_value(target: &mut Value, patch: &Value, mode: Mode) -> ApiResult<()> {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if mode == Mode::Strategic {
        match patch_map.get("$patch").and_then(Value::as_str) {
            Some("replace") => {
                let mut replaced = patch_map.clone();
                replaced.remove("$patch");
                *target = Value::Object(replaced);
                return Ok(());
            }
            Some("delete") => {
                *target = Value::Null;
                return Ok(());
            }
            Some("merge") | None => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unknown patch directive $patch: {other}"
                )))
            }
        }
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return Ok(());
    };
    for (key, value) in patch_map {
        if mode == Mode::Strategic && key.starts_with('$') {
            apply_directive(target_map, key, value)?;
            continue;
        }
        if value.is_null() {
            target_map.remove(key);
            continue;
        }
        let slot = target_map.entry(key.clone()).or_insert(Value::Null);
        match value {
            Value::Object(_) => {
                merge_map_value(slot, value, mode)?;
                if slot.is_null() {
                    target_map.remove(key);
                }
            }
            Value::Array(items) => merge_list(slot, key, items, mode)?,
            _ => *slot = value.clone(),
        }
    }
    if mode == Mode::Strategic {
        for (key, value) in patch_map {
            if let Some(field) = key.strip_prefix("$setElementOrder/") {
                reorder_list(target_map, field, value);
            }
        }
    }
    Ok(())
}

fn apply_directive(target: &mut Map<String, Value>, key: &str, value: &Value) -> ApiResult<()> {
    if key == "$patch" || key.starts_with("$setElementOrder/") {
        return Ok(());
    }
    if key == "$retainKeys" {
        let keep: Vec<&str> = value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        target.retain(|k, _| keep.contains(&k.as_str()));
        return Ok(());
    }
    if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
        let doomed = value.as_array().cloned().unwrap_or_default();
        if let Some(Value::Array(items)) = target.get_mut(field) {
            items.retain(|item| !doomed.contains(item));
        }
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "unknown strategic merge patch directive {key:?}"
    )))
}

fn merge_list(slot: &mut Value, field: &str, items: &[Value], mode: Mode) -> ApiResult<()> {
    let replace_marker = |v: &Value| v.get("$patch").and_then(Value::as_str) == Some("replace");
    if mode == Mode::Strategic && items.iter().any(replace_marker) {
        *slot = Value::Array(
            items
                .iter()
                .filter(|v| !replace_marker(v))
                .cloned()
                .collect(),
        );
        return Ok(());
    }
    if merges_as_set(field) && items.iter().all(|v| !v.is_object()) {
        let mut merged = slot.as_array().cloned().unwrap_or_default();
        for item in items {
            if !merged.contains(item) {
                merged.push(item.clone());
            }
        }
        *slot = Value::Array(merged);
        return Ok(());
    }
    let key = match merge_key(field, items.first()) {
        Some(key) if items.iter().all(Value::is_object) => key,
        _ => {
            *slot = Value::Array(items.to_vec());
            return Ok(());
        }
    };
    let mut merged = slot.as_array().cloned().unwrap_or_default();
    for item in items {
        let id = item.get(key);
        let position = merged.iter().position(|m| id.is_some() && m.get(key) == id);
        let deleting =
            mode == Mode::Strategic && item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, deleting) {
            (Some(i), true) => {
                merged.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => merge_map_value(&mut merged[i], item, mode)?,
            (None, false) => {
                let mut fresh = Value::Object(Map::new());
                merge_map_value(&mut fresh, item, mode)?;
                merged.push(fresh);
            }
        }
    }
    *slot = Value::Array(merged);
    Ok(())
}

/// Honours `$setElementOrder/<field>`: listed elements first, in the given order.
fn reorder_list(target: &mut Map<String, Value>, field: &str, order: &Value) {
    let (Some(Value::Array(items)), Some(order)) = (target.get_mut(field), order.as_array()) else {
        return;
    };
    let rank = |item: &Value| {
        order
            .iter()
            .position(|o| match o {
                Value::Object(keys) => keys.iter().all(|(k, v)| item.get(k) == Some(v)),
                primitive => primitive == item,
            })
            .unwrap_or(usize::MAX)
    };
    items.sort_by_key(rank);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_deletes_nulls_and_merges_maps() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut doc, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(doc, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn json_patch_ops_and_errors() {
        let mut doc = json!({"metadata": {"labels": {"a": "1"}}, "items": [1, 2]});
        let ops = json!([
            {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
            {"op": "replace", "path": "/items/0", "value": 9},
            {"op": "add", "path": "/items/-", "value": 3},
            {"op": "remove", "path": "/metadata/labels/a"},
            {"op": "test", "path": "/items/1", "value": 2},
        ]);
        json_patch(&mut doc, &ops).unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"labels": {"b/c": "2"}}, "items": [9, 2, 3]})
        );
        assert_eq!(
            json_patch(&mut doc, &json!([{"op": "remove", "path": "/nope"}]))
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(
            json_patch(&mut doc, &json!({"op": "add"}))
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn json_patch_test_of_a_missing_member_equals_null() {
        let mut doc = json!({"metadata": {"name": "a"}});
        let first = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["f"]},
        ]);
        json_patch(&mut doc, &first).unwrap();
        assert_eq!(doc["metadata"]["finalizers"], json!(["f"]));
        // Now the member exists: the same test fails, so a stale add cannot replace the list.
        let err = json_patch(&mut doc, &first).unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(doc["metadata"]["finalizers"], json!(["f"]));
    }

    #[test]
    fn strategic_merges_containers_by_name_and_honours_directives() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1"},
            {"name": "b", "image": "b:1"},
        ]}, "metadata": {"finalizers": ["x"]}});
        let patch = json!({
            "metadata": {"finalizers": ["y"]},
            "spec": {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
                "containers": [
                    {"name": "a", "image": "a:2"},
                    {"name": "b", "$patch": "delete"},
                    {"name": "c", "image": "c:1"},
                ],
            },
        });
        strategic_merge_patch(&mut pod, &patch).unwrap();
        assert_eq!(
            pod["spec"]["containers"],
            json!([
                {"name": "c", "image": "c:1"},
                {"name": "a", "image": "a:2"},
            ])
        );
        assert_eq!(pod["metadata"]["finalizers"], json!(["x", "y"]));
        strategic_merge_patch(
            &mut pod,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}),
        )
        .unwrap();
        assert_eq!(pod["metadata"]["finalizers"], json!(["y"]));
        strategic_merge_patch(&mut pod, &json!({"spec": {"$patch": "replace", "x": 1}})).unwrap();
        assert_eq!(pod["spec"], json!({"x": 1}));
        assert_eq!(
            strategic_merge_patch(&mut pod, &json!({"$bogus": 1}))
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn service_ports_merge_by_port() {
        let mut svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}]}});
        apply_merge(
            &mut svc,
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}),
        )
        .unwrap();
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"port": 80, "name": "http", "targetPort": 8080}, {"port": 443}])
        );
    }
}
