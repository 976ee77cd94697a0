//! The `apps` group's server-side behaviour clients rely on: the defaults kube-apiserver fills
//! into Deployments, ReplicaSets, StatefulSets and DaemonSets (`kubectl rollout status` reads
//! the update strategy, controllers read replicas), and the `scale` subresource
//! (`autoscaling/v1` Scale) that `kubectl scale` and autoscalers write.

use serde_json::{json, Value};

use crate::resources::ResourceType;

fn is_apps(rt: &ResourceType, plurals: &[&str]) -> bool {
    rt.group == "apps" && !rt.custom && plurals.contains(&rt.plural.as_str())
}

/// Whether `rt` has a `scale` subresource.
pub fn has_scale(rt: &ResourceType) -> bool {
    is_apps(rt, &["deployments", "replicasets", "statefulsets"])
}

/// Sets `object[key]` to `value` when absent or null.
fn default(object: &mut Value, key: &str, value: Value) {
    if let Some(map) = object.as_object_mut() {
        let slot = map.entry(key).or_insert(Value::Null);
        if slot.is_null() {
            *slot = value;
        }
    }
}

/// The object at `object[key]`, created empty when absent.
fn child<'a>(object: &'a mut Value, key: &str) -> &'a mut Value {
    default(object, key, json!({}));
    &mut object[key]
}

/// Fills in what kube-apiserver defaults on every write of a workload object.
pub fn apply_defaults(rt: &ResourceType, object: &mut Value) {
    if !is_apps(
        rt,
        &["deployments", "replicasets", "statefulsets", "daemonsets"],
    ) {
        return;
    }
    let spec = child(object, "spec");
    match rt.plural.as_str() {
        "deployments" => {
            default(spec, "replicas", json!(1));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
            let strategy = child(spec, "strategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let rolling = child(strategy, "rollingUpdate");
                default(rolling, "maxUnavailable", json!("25%"));
                default(rolling, "maxSurge", json!("25%"));
            }
        }
        "replicasets" => default(spec, "replicas", json!(1)),
        "statefulsets" => {
            default(spec, "replicas", json!(1));
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            default(spec, "revisionHistoryLimit", json!(10));
            let strategy = child(spec, "updateStrategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                default(child(strategy, "rollingUpdate"), "partition", json!(0));
            }
            let retention = child(spec, "persistentVolumeClaimRetentionPolicy");
            default(retention, "whenDeleted", json!("Retain"));
            default(retention, "whenScaled", json!("Retain"));
        }
        _ => {
            default(spec, "revisionHistoryLimit", json!(10));
            let strategy = child(spec, "updateStrategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let rolling = child(strategy, "rollingUpdate");
                default(rolling, "maxUnavailable", json!(1));
                default(rolling, "maxSurge", json!(0));
            }
        }
    }
}

/// The `matchLabels` of a selector as a label-selector string (`a=b,c=d`); `matchExpressions`
/// in their `key in (v1,v2)` form.
fn selector_string(selector: &Value) -> String {
    let mut parts: Vec<String> = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    for e in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

/// The `autoscaling/v1` Scale of a workload object.
pub fn scale_of(object: &Value) -> Value {
    let meta = &object["metadata"];
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector_string(object.pointer("/spec/selector").unwrap_or(&Value::Null)),
        },
    })
}

/// The workload object with the replicas (and the resourceVersion precondition, if any) of an
/// updated Scale; `None` when the Scale has no integer `spec.replicas`.
pub fn with_scale(object: &Value, scale: &Value) -> Option<Value> {
    let replicas = scale.pointer("/spec/replicas")?.as_i64()?;
    let mut updated = object.clone();
    updated["spec"]["replicas"] = json!(replicas);
    if let Some(rv) = scale
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        updated["metadata"]["resourceVersion"] = json!(rv);
    }
    Some(updated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;

    fn rt(plural: &str) -> ResourceType {
        Registry::default()
            .lookup("apps", "v1", plural)
            .unwrap()
            .clone()
    }

    #[test]
    fn workloads_get_kube_apiservers_defaults() {
        let mut d = json!({"spec": {"selector": {}, "template": {}}});
        apply_defaults(&rt("deployments"), &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let mut r = json!({"spec": {"strategy": {"type": "Recreate"}, "replicas": 3}});
        apply_defaults(&rt("deployments"), &mut r);
        assert_eq!(r["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(r["spec"]["replicas"], 3);
        let mut s = json!({"spec": {}});
        apply_defaults(&rt("statefulsets"), &mut s);
        assert_eq!(s["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(s["spec"]["updateStrategy"]["type"], "RollingUpdate");
        assert_eq!(s["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 0);
    }

    #[test]
    fn scale_reads_and_writes_replicas() {
        let d = json!({
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"replicas": 2},
        });
        let s = scale_of(&d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"], json!({"replicas": 2, "selector": "app=web"}));
        let updated = with_scale(&d, &json!({"spec": {"replicas": 5}})).unwrap();
        assert_eq!(updated["spec"]["replicas"], 5);
        assert!(with_scale(&d, &json!({"spec": {}})).is_none());
        assert!(has_scale(&rt("statefulsets")) && !has_scale(&rt("daemonsets")));
    }
}
