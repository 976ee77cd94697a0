//! `kubectl get nodes`: STATUS from the Ready condition (plus
//! `SchedulingDisabled` when cordoned), ROLES from `node-role.kubernetes.io/*`
//! labels, and the wide address and system-info columns.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use super::fields::{self, items, or, text};
use super::Printer;
use crate::table::column::{Column, Row};
use crate::table::descriptions::{
    CONTAINER_RUNTIME_VERSION, KERNEL_VERSION, KUBELET_VERSION, NODE_ADDRESSES, OS_IMAGE,
};

const ROLE_LABEL_PREFIX: &str = "node-role.kubernetes.io/";
const LEGACY_ROLE_LABEL: &str = "kubernetes.io/role";

/// The Node printer.
pub struct Nodes;

fn status(node: &Value) -> String {
    let ready = items(node, "/status/conditions")
        .iter()
        .rfind(|c| text(c, "/type") == "Ready");
    let mut status = vec![match ready {
        Some(c) if text(c, "/status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    status.join(",")
}

fn roles(node: &Value) -> String {
    let roles: BTreeSet<&str> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| match key.strip_prefix(ROLE_LABEL_PREFIX) {
            Some(role) if !role.is_empty() => Some(role),
            Some(_) => None,
            None => (key == LEGACY_ROLE_LABEL)
                .then(|| value.as_str().unwrap_or_default())
                .filter(|role| !role.is_empty()),
        })
        .collect();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    }
}

fn address<'a>(node: &'a Value, kind: &str) -> &'a str {
    items(node, "/status/addresses")
        .iter()
        .find(|a| text(a, "/type") == kind)
        .map_or("<none>", |a| text(a, "/address"))
}

impl Printer for Nodes {
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Status", "string", "The status of the node"),
            Column::new("Roles", "string", "The roles of the node"),
            Column::age(),
            Column::new("Version", "string", KUBELET_VERSION),
            Column::new("Internal-IP", "string", NODE_ADDRESSES).wide(),
            Column::new("External-IP", "string", NODE_ADDRESSES).wide(),
            Column::new("OS-Image", "string", OS_IMAGE).wide(),
            Column::new("Kernel-Version", "string", KERNEL_VERSION).wide(),
            Column::new("Container-Runtime", "string", CONTAINER_RUNTIME_VERSION).wide(),
        ]
    }

    fn row(&self, node: &Value, now: Timestamp) -> Row {
        let info = |field: &str| {
            or(
                text(node, &format!("/status/nodeInfo/{field}")),
                "<unknown>",
            )
            .to_string()
        };
        Row::of(vec![
            fields::name(node),
            status(node).into(),
            roles(node).into(),
            fields::age(node, now),
            text(node, "/status/nodeInfo/kubeletVersion").into(),
            address(node, "InternalIP").into(),
            address(node, "ExternalIP").into(),
            info("osImage").into(),
            info("kernelVersion").into(),
            info("containerRuntimeVersion").into(),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ready_control_plane_node() {
        let node = json!({
            "metadata": {
                "name": "kube-ovn-control-plane",
                "creationTimestamp": "2024-05-01T11:00:00Z",
                "labels": {
                    "node-role.kubernetes.io/control-plane": "",
                    "node-role.kubernetes.io/": "",
                    "kubernetes.io/role": "master",
                    "kubernetes.io/hostname": "x",
                },
            },
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "Hostname", "address": "x"}, {"type": "InternalIP", "address": "172.18.0.2"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian", "kernelVersion": "6.1"},
            },
        });
        let row = Nodes.row(&node, "2024-05-01T12:00:00Z".parse().unwrap());
        assert_eq!(
            row.cells,
            vec![
                json!("kube-ovn-control-plane"),
                json!("Ready"),
                json!("control-plane,master"),
                json!("60m"),
                json!("v1.33.0"),
                json!("172.18.0.2"),
                json!("<none>"),
                json!("Debian"),
                json!("6.1"),
                json!("<unknown>"),
            ]
        );
        assert_eq!(Nodes.columns().len(), row.cells.len());
    }

    #[test]
    fn cordoned_nodes_without_conditions() {
        let node = json!({"spec": {"unschedulable": true}});
        let cells = Nodes.row(&node, Timestamp::UNIX_EPOCH).cells;
        assert_eq!(cells[1], "Unknown,SchedulingDisabled");
        assert_eq!(cells[2], "<none>");
        let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(
            Nodes.row(&not_ready, Timestamp::UNIX_EPOCH).cells[1],
            "NotReady"
        );
    }
}
