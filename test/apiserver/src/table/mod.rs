//! Server-side printing. `kubectl get` does not format objects itself: it asks
//! for a `meta.k8s.io` Table (column definitions plus one row of cells per
//! object) and prints that, so without it every resource shows only NAME and
//! AGE. This module renders those Tables the way kube-apiserver does for the
//! types this fixture serves, for get, list and watch responses alike.
//!
//! Differences from the real server: no protobuf or YAML tables, Accept
//! ranges asking for other conversions (`as=PartialObjectMetadata`) are
//! skipped rather than honoured, and printers read fields that the real
//! server would have defaulted with those defaults.

mod age;
mod column;
mod descriptions;
mod gofmt;
mod jsonpath;
mod negotiate;
mod printers;

use jiff::Timestamp;
use serde_json::{json, Map, Value};

use crate::resources::ResourceType;
use column::Row;
pub use negotiate::{requested_table, IncludeObject, TableRequest};

/// What a row's `object` field holds for the requested `includeObject`.
fn row_object(object: &Value, request: &TableRequest) -> Value {
    match request.include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => object.clone(),
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": request.group_version,
            "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
    }
}

fn row_json(row: Row, object: &Value, request: &TableRequest) -> Value {
    let mut out = Map::new();
    out.insert("cells".into(), Value::Array(row.cells));
    if !row.conditions.is_empty() {
        out.insert("conditions".into(), Value::Array(row.conditions));
    }
    out.insert("object".into(), row_object(object, request));
    Value::Object(out)
}

/// The Table's list metadata: the resourceVersion (and continue token) of
/// the list, or the object's resourceVersion for a single object.
fn list_meta(body: &Value) -> Value {
    let mut meta = Map::new();
    for field in ["resourceVersion", "continue"] {
        if let Some(value) = body
            .pointer(&format!("/metadata/{field}"))
            .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
        {
            meta.insert(field.into(), value.clone());
        }
    }
    Value::Object(meta)
}

fn table(request: &TableRequest, metadata: Value, columns: Value, rows: Value) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": request.group_version,
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// One object as a one-row Table. Watch streams send the column definitions
/// only with their first event (`headers == false` afterwards leaves them `null`).
pub fn object_table(
    rt: &ResourceType,
    object: &Value,
    request: &TableRequest,
    headers: bool,
    now: Timestamp,
) -> Value {
    let printer = printers::for_type(rt);
    let columns = if headers {
        printer.columns().iter().map(|c| c.to_json()).collect()
    } else {
        Value::Null
    };
    let row = row_json(printer.row(object, now), object, request);
    table(request, list_meta(object), columns, json!([row]))
}

/// A `<Kind>List` as a Table with a row per item.
fn list_table(rt: &ResourceType, list: &Value, request: &TableRequest, now: Timestamp) -> Value {
    let printer = printers::for_type(rt);
    let items = list
        .get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let rows = if items.is_empty() && printer.empty_rows_are_null() {
        Value::Null
    } else {
        items
            .iter()
            .map(|item| row_json(printer.row(item, now), item, request))
            .collect()
    };
    let columns = printer.columns().iter().map(|c| c.to_json()).collect();
    table(request, list_meta(list), columns, rows)
}

/// A response body (one object or a `<Kind>List`) as the requested Table.
pub fn render(rt: &ResourceType, body: &Value, request: &TableRequest, now: Timestamp) -> Value {
    let list_kind = format!("{}List", rt.kind);
    if body.get("kind").and_then(Value::as_str) == Some(list_kind.as_str()) {
        list_table(rt, body, request, now)
    } else {
        object_table(rt, body, request, true, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;

    fn pods() -> ResourceType {
        Registry::default()
            .lookup("", "v1", "pods")
            .cloned()
            .unwrap()
    }

    fn request(include: IncludeObject) -> TableRequest {
        TableRequest {
            group_version: "meta.k8s.io/v1",
            include,
        }
    }

    fn pod(name: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "7", "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Pending"},
        })
    }

    #[test]
    fn list_becomes_a_table_with_partial_metadata_rows() {
        let list = json!({"apiVersion": "v1", "kind": "PodList",
            "metadata": {"resourceVersion": "42"}, "items": [pod("a"), pod("b")]});
        let table = render(
            &pods(),
            &list,
            &request(IncludeObject::Metadata),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(table["kind"], "Table");
        assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(table["metadata"], json!({"resourceVersion": "42"}));
        let headers: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            headers,
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        assert_eq!(table["columnDefinitions"][5]["priority"], 1);
        let rows = table["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["cells"][0], "b");
        assert_eq!(
            rows[0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": {"name": "a", "namespace": "default", "resourceVersion": "7", "labels": {"app": "x"}}})
        );
        assert!(rows[0].get("conditions").is_none());
    }

    #[test]
    fn include_object_controls_the_embedded_object() {
        let object = pod("a");
        let none = render(
            &pods(),
            &object,
            &request(IncludeObject::None),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(none["rows"][0]["object"], Value::Null);
        assert_eq!(none["metadata"], json!({"resourceVersion": "7"}));
        let full = render(
            &pods(),
            &object,
            &request(IncludeObject::Object),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(full["rows"][0]["object"], object);
    }

    #[test]
    fn watch_events_after_the_first_omit_headers() {
        let t = object_table(
            &pods(),
            &pod("a"),
            &request(IncludeObject::Metadata),
            false,
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(t["columnDefinitions"], Value::Null);
        assert_eq!(t["rows"][0]["cells"][2], "Pending");
    }

    #[test]
    fn types_without_printers_use_name_and_created_at() {
        let crds = Registry::default()
            .lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .cloned()
            .unwrap();
        let empty = json!({"kind": "CustomResourceDefinitionList", "metadata": {"resourceVersion": "1"}, "items": []});
        let table = render(
            &crds,
            &empty,
            &request(IncludeObject::Metadata),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(table["rows"], Value::Null);
        assert_eq!(table["columnDefinitions"][1]["name"], "Created At");
        let empty_pods = json!({"kind": "PodList", "metadata": {}, "items": []});
        let table = render(
            &pods(),
            &empty_pods,
            &request(IncludeObject::Metadata),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(table["rows"], json!([]));
        assert_eq!(table["metadata"], json!({}));
    }
}
