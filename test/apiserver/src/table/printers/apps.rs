//! Deployments, ReplicaSets, StatefulSets and DaemonSets, with the columns `kubectl get` shows
//! for them on a real cluster (counts from status, containers and images of the pod template,
//! the selector). Descriptions are short summaries of the fields shown.

use jiff::Timestamp;
use serde_json::Value;

use super::fields::{self, int, items, text};
use super::labels::format_label_selector;
use super::Printer;
use crate::table::column::{Column, Row};

/// The Deployment printer.
pub struct Deployments;
/// The ReplicaSet printer.
pub struct ReplicaSets;
/// The StatefulSet printer.
pub struct StatefulSets;
/// The DaemonSet printer.
pub struct DaemonSets;

const READY: &str = "Number of pods in ready state out of the desired number.";
const DESIRED: &str = "Number of desired pods.";
const CURRENT: &str = "Number of pods currently running the workload's template or an older one.";
const READY_COUNT: &str = "Number of pods in ready state.";
const UP_TO_DATE: &str = "Number of pods running the latest template.";
const AVAILABLE: &str = "Number of pods ready for at least minReadySeconds.";
const CONTAINERS: &str = "Names of each container in the template.";
const IMAGES: &str = "Images referenced by each container in the template.";
const SELECTOR: &str = "Label selector for the pods.";
const NODE_SELECTOR: &str = "Node selector of the pod template.";

fn template_columns() -> [Column; 2] {
    [
        Column::new("Containers", "string", CONTAINERS).wide(),
        Column::new("Images", "string", IMAGES).wide(),
    ]
}

/// Container names and images of the pod template, comma-joined.
fn template_cells(object: &Value) -> [Value; 2] {
    let containers = items(object, "/spec/template/spec/containers");
    let join = |field: &str| {
        containers
            .iter()
            .map(|c| text(c, field))
            .collect::<Vec<_>>()
            .join(",")
    };
    [join("/name").into(), join("/image").into()]
}

fn selector(object: &Value) -> Value {
    format_label_selector(object.pointer("/spec/selector")).into()
}

impl Printer for Deployments {
    fn columns(&self) -> Vec<Column> {
        let mut c = vec![
            Column::name(),
            Column::new("Ready", "string", READY),
            Column::new("Up-to-date", "integer", UP_TO_DATE),
            Column::new("Available", "integer", AVAILABLE),
            Column::age(),
        ];
        c.extend(template_columns());
        c.push(Column::new("Selector", "string", SELECTOR).wide());
        c
    }

    fn row(&self, d: &Value, now: Timestamp) -> Row {
        let [containers, images] = template_cells(d);
        Row::of(vec![
            fields::name(d),
            format!(
                "{}/{}",
                int(d, "/status/readyReplicas"),
                int(d, "/spec/replicas")
            )
            .into(),
            int(d, "/status/updatedReplicas").into(),
            int(d, "/status/availableReplicas").into(),
            fields::age(d, now),
            containers,
            images,
            selector(d),
        ])
    }
}

impl Printer for ReplicaSets {
    fn columns(&self) -> Vec<Column> {
        let mut c = vec![
            Column::name(),
            Column::new("Desired", "integer", DESIRED),
            Column::new("Current", "integer", CURRENT),
            Column::new("Ready", "integer", READY_COUNT),
            Column::age(),
        ];
        c.extend(template_columns());
        c.push(Column::new("Selector", "string", SELECTOR).wide());
        c
    }

    fn row(&self, rs: &Value, now: Timestamp) -> Row {
        let [containers, images] = template_cells(rs);
        Row::of(vec![
            fields::name(rs),
            int(rs, "/spec/replicas").into(),
            int(rs, "/status/replicas").into(),
            int(rs, "/status/readyReplicas").into(),
            fields::age(rs, now),
            containers,
            images,
            selector(rs),
        ])
    }
}

impl Printer for StatefulSets {
    fn columns(&self) -> Vec<Column> {
        let mut c = vec![
            Column::name(),
            Column::new("Ready", "string", READY),
            Column::age(),
        ];
        c.extend(template_columns());
        c
    }

    fn row(&self, s: &Value, now: Timestamp) -> Row {
        let [containers, images] = template_cells(s);
        Row::of(vec![
            fields::name(s),
            format!(
                "{}/{}",
                int(s, "/status/readyReplicas"),
                int(s, "/spec/replicas")
            )
            .into(),
            fields::age(s, now),
            containers,
            images,
        ])
    }
}

impl Printer for DaemonSets {
    fn columns(&self) -> Vec<Column> {
        let mut c = vec![
            Column::name(),
            Column::new("Desired", "integer", DESIRED),
            Column::new("Current", "integer", CURRENT),
            Column::new("Ready", "integer", READY_COUNT),
            Column::new("Up-to-date", "integer", UP_TO_DATE),
            Column::new("Available", "integer", AVAILABLE),
            Column::new("Node Selector", "string", NODE_SELECTOR),
            Column::age(),
        ];
        c.extend(template_columns());
        c.push(Column::new("Selector", "string", SELECTOR).wide());
        c
    }

    fn row(&self, ds: &Value, now: Timestamp) -> Row {
        let [containers, images] = template_cells(ds);
        let node_selector = ds
            .pointer("/spec/template/spec/nodeSelector")
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_else(|| "<none>".into());
        Row::of(vec![
            fields::name(ds),
            int(ds, "/status/desiredNumberScheduled").into(),
            int(ds, "/status/currentNumberScheduled").into(),
            int(ds, "/status/numberReady").into(),
            int(ds, "/status/updatedNumberScheduled").into(),
            int(ds, "/status/numberAvailable").into(),
            node_selector.into(),
            fields::age(ds, now),
            containers,
            images,
            selector(ds),
        ])
    }
}
