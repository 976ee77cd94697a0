//! `kubectl get pods`: READY counts, the STATUS reason the kubelet reports
//! (init progress, waiting/terminated reasons, Terminating), RESTARTS with the
//! time of the last restart, and the wide IP / NODE / NOMINATED NODE /
//! READINESS GATES columns. Sidecars (init containers with
//! `restartPolicy: Always`) count as regular containers once started.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::fields::{self, int, is_set, items, or, text};
use super::Printer;
use crate::table::age;
use crate::table::column::{Column, Row};
use crate::table::descriptions::{NODE_NAME, NOMINATED_NODE_NAME, POD_IP, READINESS_GATES};

/// The Pod printer.
pub struct Pods;

/// Tracks the latest `lastState.terminated.finishedAt` seen.
fn note_restart(latest: &mut Option<Timestamp>, status: &Value) {
    if let Some(finished) = age::at(status.pointer("/lastState/terminated/finishedAt")) {
        if latest.is_none_or(|l| l < finished) {
            *latest = Some(finished);
        }
    }
}

fn condition_is_true(pod: &Value, kind: &str) -> bool {
    items(pod, "/status/conditions")
        .iter()
        .find(|c| text(c, "/type") == kind)
        .is_some_and(|c| text(c, "/status") == "True")
}

/// `Signal:N` / `ExitCode:N` for a termination without a reason.
fn exit_text(terminated: &Value) -> String {
    match int(terminated, "/signal") {
        0 => format!("ExitCode:{}", int(terminated, "/exitCode")),
        signal => format!("Signal:{signal}"),
    }
}

struct Summary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: i64,
    last_restart: Option<Timestamp>,
}

fn summarize(pod: &Value) -> Summary {
    let init_specs = items(pod, "/spec/initContainers");
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| text(c, "/name") == name && text(c, "/restartPolicy") == "Always")
    };
    let sidecars = init_specs
        .iter()
        .filter(|c| text(c, "/restartPolicy") == "Always")
        .count();
    let phase = text(pod, "/status/phase");
    let mut s = Summary {
        ready: 0,
        total: items(pod, "/spec/containers").len() + sidecars,
        reason: or(text(pod, "/status/reason"), phase).to_string(),
        restarts: 0,
        last_restart: None,
    };
    if items(pod, "/status/conditions")
        .iter()
        .any(|c| text(c, "/type") == "PodScheduled" && text(c, "/reason") == "SchedulingGated")
    {
        s.reason = "SchedulingGated".into();
    }

    let mut sidecar_restarts = 0;
    let mut last_sidecar_restart = None;
    let mut initializing = false;
    for (i, status) in items(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        let sidecar = is_sidecar(text(status, "/name"));
        s.restarts += int(status, "/restartCount");
        note_restart(&mut s.last_restart, status);
        if sidecar {
            sidecar_restarts += int(status, "/restartCount");
            note_restart(&mut last_sidecar_restart, status);
        }
        let terminated = is_set(status, "/state/terminated");
        let waiting_reason = text(status, "/state/waiting/reason");
        if terminated && int(status, "/state/terminated/exitCode") == 0 {
            continue;
        }
        if sidecar && status.pointer("/started").and_then(Value::as_bool) == Some(true) {
            if status.get("ready").and_then(Value::as_bool) == Some(true) {
                s.ready += 1;
            }
            continue;
        }
        s.reason = if terminated {
            let state = &status["state"]["terminated"];
            match text(state, "/reason") {
                "" => format!("Init:{}", exit_text(state)),
                reason => format!("Init:{reason}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_is_true(pod, "Initialized") {
        s.restarts = sidecar_restarts;
        s.last_restart = last_sidecar_restart;
        let mut running = false;
        for status in items(pod, "/status/containerStatuses").iter().rev() {
            s.restarts += int(status, "/restartCount");
            note_restart(&mut s.last_restart, status);
            let waiting_reason = text(status, "/state/waiting/reason");
            let terminated = &status["state"]["terminated"];
            if is_set(status, "/state/waiting") && !waiting_reason.is_empty() {
                s.reason = waiting_reason.into();
            } else if terminated.is_object() {
                s.reason = match text(terminated, "/reason") {
                    "" => exit_text(terminated),
                    reason => reason.into(),
                };
            } else if status.get("ready").and_then(Value::as_bool) == Some(true)
                && is_set(status, "/state/running")
            {
                running = true;
                s.ready += 1;
            }
        }
        if s.reason == "Completed" && running {
            s.reason = if condition_is_true(pod, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    let deleting = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null());
    if deleting && text(pod, "/status/reason") == "NodeLost" {
        s.reason = "Unknown".into();
    } else if deleting && !matches!(phase, "Succeeded" | "Failed") {
        s.reason = "Terminating".into();
    }
    s
}

/// `t/n` readiness gates whose condition is `True`, or `<none>`.
fn readiness_gates(pod: &Value) -> String {
    let gates = items(pod, "/spec/readinessGates");
    if gates.is_empty() {
        return "<none>".into();
    }
    let conditions = items(pod, "/status/conditions");
    let passed = gates
        .iter()
        .filter(|gate| {
            conditions
                .iter()
                .find(|c| text(c, "/type") == text(gate, "/conditionType"))
                .is_some_and(|c| text(c, "/status") == "True")
        })
        .count();
    format!("{passed}/{}", gates.len())
}

impl Printer for Pods {
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new(
                "Ready",
                "string",
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            Column::new(
                "Status",
                "string",
                "The aggregate status of the containers in this pod.",
            ),
            Column::new(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            Column::age(),
            Column::new("IP", "string", POD_IP).wide(),
            Column::new("Node", "string", NODE_NAME).wide(),
            Column::new("Nominated Node", "string", NOMINATED_NODE_NAME).wide(),
            Column::new("Readiness Gates", "string", READINESS_GATES).wide(),
        ]
    }

    fn row(&self, pod: &Value, now: Timestamp) -> Row {
        let s = summarize(pod);
        let restarts = match s.last_restart {
            Some(last) if s.restarts != 0 => {
                format!("{} ({} ago)", s.restarts, age::ago(Some(last), now))
            }
            _ => s.restarts.to_string(),
        };
        let ip = items(pod, "/status/podIPs")
            .first()
            .map_or("", |ip| text(ip, "/ip"));
        let conditions = match text(pod, "/status/phase") {
            "Succeeded" => vec![
                json!({"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}),
            ],
            "Failed" => vec![
                json!({"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}),
            ],
            _ => Vec::new(),
        };
        Row {
            cells: vec![
                fields::name(pod),
                format!("{}/{}", s.ready, s.total).into(),
                s.reason.into(),
                restarts.into(),
                fields::age(pod, now),
                or(ip, "<none>").into(),
                or(text(pod, "/spec/nodeName"), "<none>").into(),
                or(text(pod, "/status/nominatedNodeName"), "<none>").into(),
                readiness_gates(pod).into(),
            ],
            conditions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn cells(pod: Value) -> Vec<Value> {
        Pods.row(&pod, now()).cells
    }

    #[test]
    fn pending_pod_without_statuses() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:58:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Pending"},
        });
        assert_eq!(
            cells(pod),
            vec![
                json!("web"),
                json!("0/2"),
                json!("Pending"),
                json!("0"),
                json!("2m"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
            ]
        );
        assert_eq!(Pods.columns().len(), 9, "one column per cell");
    }

    #[test]
    fn running_pod_with_restarts_ip_node_and_gates() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-04-30T12:00:00Z"},
            "spec": {
                "nodeName": "node-1",
                "containers": [{"name": "a"}, {"name": "b"}],
                "readinessGates": [{"conditionType": "x/ok"}, {"conditionType": "x/other"}],
            },
            "status": {
                "phase": "Running",
                "podIPs": [{"ip": "10.16.0.5"}, {"ip": "fd00::5"}],
                "nominatedNodeName": "node-2",
                "conditions": [{"type": "x/ok", "status": "True"}],
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}},
                     "lastState": {"terminated": {"finishedAt": "2024-05-01T11:55:00Z"}}},
                    {"name": "b", "ready": false, "restartCount": 1, "state": {"running": {}}},
                ],
            },
        });
        let cells = cells(pod);
        assert_eq!(cells[1], "1/2");
        assert_eq!(cells[2], "Running");
        assert_eq!(cells[3], "3 (5m ago)");
        assert_eq!(cells[4], "24h");
        assert_eq!(
            &cells[5..],
            &[
                json!("10.16.0.5"),
                json!("node-1"),
                json!("node-2"),
                json!("1/2")
            ]
        );
    }

    #[test]
    fn container_reasons_win_over_the_phase() {
        let waiting = json!({
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "containerStatuses": [
                {"name": "a", "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
            ]},
        });
        assert_eq!(cells(waiting)[2], "CrashLoopBackOff");
        let killed = json!({
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Failed", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}},
            ]},
        });
        assert_eq!(cells(killed.clone())[2], "Signal:9");
        assert_eq!(Pods.row(&killed, now()).conditions[0]["reason"], "Failed");
    }

    #[test]
    fn init_containers_report_progress_and_failures() {
        let pod = |statuses: Value| {
            json!({
                "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]},
                "status": {"phase": "Pending", "initContainerStatuses": statuses},
            })
        };
        let progress = pod(json!([
            {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
            {"name": "i2", "state": {"running": {}}},
        ]));
        assert_eq!(cells(progress)[2], "Init:1/2");
        let failed = pod(
            json!([{"name": "i1", "restartCount": 3, "state": {"terminated": {"exitCode": 1}}}]),
        );
        assert_eq!(cells(failed.clone())[2], "Init:ExitCode:1");
        assert_eq!(cells(failed)[3], "3");
        let pulling =
            pod(json!([{"name": "i1", "state": {"waiting": {"reason": "ErrImagePull"}}}]));
        assert_eq!(cells(pulling)[2], "Init:ErrImagePull");
    }

    #[test]
    fn started_sidecars_count_as_containers() {
        let pod = json!({
            "spec": {
                "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
                "containers": [{"name": "a"}],
            },
            "status": {
                "phase": "Running",
                "initContainerStatuses": [
                    {"name": "proxy", "started": true, "ready": true, "restartCount": 1, "state": {"running": {}}},
                ],
                "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}}],
            },
        });
        let cells = cells(pod);
        assert_eq!(cells[1], "2/2");
        assert_eq!(cells[2], "Running");
        assert_eq!(cells[3], "1");
    }

    #[test]
    fn deletion_shows_terminating_unless_finished() {
        let pod = |phase: &str| {
            json!({
                "metadata": {"deletionTimestamp": "2024-05-01T11:59:00Z"},
                "spec": {"containers": [{"name": "a"}]},
                "status": {"phase": phase},
            })
        };
        assert_eq!(cells(pod("Running"))[2], "Terminating");
        assert_eq!(cells(pod("Succeeded"))[2], "Succeeded");
    }
}
