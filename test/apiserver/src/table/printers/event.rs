//! `kubectl get events`: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE, and the
//! wide SUBOBJECT, SOURCE, FIRST SEEN, COUNT and NAME. Events recorded through
//! the newer `events.k8s.io` API only carry `eventTime` and `series`, which
//! stand in for the legacy timestamps and count.

use jiff::Timestamp;
use serde_json::Value;

use super::fields::{self, int, or, text};
use super::Printer;
use crate::table::age;
use crate::table::column::{Column, Row};
use crate::table::descriptions::{
    EVENT_COUNT, EVENT_FIRST_TIMESTAMP, EVENT_INVOLVED_OBJECT, EVENT_LAST_TIMESTAMP, EVENT_MESSAGE,
    EVENT_REASON, EVENT_SOURCE, EVENT_TYPE, FIELD_PATH, NAME,
};

/// The core/v1 Event printer.
pub struct Events;

/// `component, host`, falling back to the reporting controller and instance.
fn source(event: &Value) -> String {
    let component = or(
        text(event, "/source/component"),
        text(event, "/reportingComponent"),
    );
    let instance = or(
        text(event, "/source/host"),
        text(event, "/reportingInstance"),
    );
    if instance.is_empty() {
        component.into()
    } else {
        format!("{component}, {instance}")
    }
}

impl Printer for Events {
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::new("Last Seen", "string", EVENT_LAST_TIMESTAMP),
            Column::new("Type", "string", EVENT_TYPE),
            Column::new("Reason", "string", EVENT_REASON),
            Column::new("Object", "string", EVENT_INVOLVED_OBJECT),
            Column::new("Subobject", "string", FIELD_PATH).wide(),
            Column::new("Source", "string", EVENT_SOURCE).wide(),
            Column::new("Message", "string", EVENT_MESSAGE),
            Column::new("First Seen", "string", EVENT_FIRST_TIMESTAMP).wide(),
            Column::new("Count", "string", EVENT_COUNT).wide(),
            Column {
                format: "name".into(),
                ..Column::new("Name", "string", NAME).wide()
            },
        ]
    }

    fn row(&self, event: &Value, now: Timestamp) -> Row {
        let first = match age::at(event.get("firstTimestamp")) {
            Some(t) => age::ago(Some(t), now),
            None => age::since(event.get("eventTime"), now),
        };
        let mut last = match age::at(event.get("lastTimestamp")) {
            Some(t) => age::ago(Some(t), now),
            None => first.clone(),
        };
        let mut count = int(event, "/count");
        if event.get("series").is_some_and(Value::is_object) {
            last = age::since(event.pointer("/series/lastObservedTime"), now);
            count = int(event, "/series/count");
        } else if count == 0 {
            count = 1;
        }
        let kind = text(event, "/involvedObject/kind").to_lowercase();
        let target = match text(event, "/involvedObject/name") {
            "" => kind,
            name => format!("{kind}/{name}"),
        };
        Row::of(vec![
            last.into(),
            text(event, "/type").into(),
            text(event, "/reason").into(),
            target.into(),
            text(event, "/involvedObject/fieldPath").into(),
            source(event).into(),
            text(event, "/message").trim().into(),
            first.into(),
            count.into(),
            fields::name(event),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn legacy_event_with_timestamps_and_count() {
        let event = json!({
            "metadata": {"name": "web.17a"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{c}"},
            "reason": "Pulled", "type": "Normal", "message": "  pulled image\n",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2024-05-01T11:00:00Z", "lastTimestamp": "2024-05-01T11:59:00Z",
            "count": 4,
        });
        let row = Events.row(&event, now());
        assert_eq!(
            row.cells,
            vec![
                json!("60s"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web"),
                json!("spec.containers{c}"),
                json!("kubelet, node-1"),
                json!("pulled image"),
                json!("60m"),
                json!(4),
                json!("web.17a"),
            ]
        );
        assert_eq!(row.cells.len(), Events.columns().len());
    }

    #[test]
    fn new_style_event_uses_event_time_and_series() {
        let event = json!({
            "involvedObject": {"kind": "Node"},
            "eventTime": "2024-05-01T11:57:59.500000Z",
            "reportingComponent": "kube-ovn-controller",
        });
        let cells = Events.row(&event, now()).cells;
        assert_eq!(cells[0], "2m", "truncated, not rounded");
        assert_eq!(cells[3], "node");
        assert_eq!(cells[5], "kube-ovn-controller");
        assert_eq!(cells[8], 1);
        let series = json!({"eventTime": "2024-05-01T11:00:00Z",
            "series": {"count": 7, "lastObservedTime": "2024-05-01T11:59:50Z"}});
        let cells = Events.row(&series, now()).cells;
        assert_eq!(
            (&cells[0], &cells[7], &cells[8]),
            (&json!("10s"), &json!("60m"), &json!(7))
        );
    }
}
