//! Readiness probes and pod conditions as kubelet computes them. A probe runs from the node's
//! network namespace against the pod IP (kubelet lives in the host namespace and dials the pod),
//! every `periodSeconds`, not before `initialDelaySeconds` after the container started, each
//! attempt bounded by `timeoutSeconds`; the result flips to success after `successThreshold`
//! consecutive successes and to failure after `failureThreshold` consecutive failures, starting
//! as failure. `tcpSocket` succeeds when the connection opens; `httpGet` when the response code is
//! 200–399. Containers do not exist in the sandbox, so `exec` and `grpc` probes always fail.
//!
//! [`conditions`] derives PodReadyToStartContainers, Initialized, ContainersReady, Ready and
//! PodScheduled with kubelet's reasons and messages, honouring `readinessGates`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::workload::{self, Proto};

/// What a probe checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Open a TCP connection to `host` (the pod IP when empty) and `port`.
    Tcp {
        /// Overrides the pod IP.
        host: Option<String>,
        /// The port (a number or a container port name).
        port: IntOrString,
    },
    /// `GET path` over HTTP.
    Http {
        /// Overrides the pod IP.
        host: Option<String>,
        /// The port (a number or a container port name).
        port: IntOrString,
        /// Request path.
        path: String,
        /// Extra request headers.
        headers: Vec<(String, String)>,
    },
    /// A probe kind the sandbox cannot run (no containers): always fails.
    Unsupported(&'static str),
}

/// A readiness probe with kubelet's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSpec {
    /// What to check.
    pub check: Check,
    /// `initialDelaySeconds` (default 0).
    pub initial_delay: Duration,
    /// `periodSeconds` (default 10).
    pub period: Duration,
    /// `timeoutSeconds` (default 1).
    pub timeout: Duration,
    /// `successThreshold` (default 1).
    pub success_threshold: u32,
    /// `failureThreshold` (default 3).
    pub failure_threshold: u32,
}

fn secs(v: Option<i32>, default: u64, min: u64) -> Duration {
    Duration::from_secs(
        v.and_then(|v| u64::try_from(v).ok())
            .unwrap_or(default)
            .max(min),
    )
}

impl ProbeSpec {
    /// The spec of a Kubernetes probe.
    pub fn of(probe: &Probe) -> ProbeSpec {
        let check = if let Some(t) = &probe.tcp_socket {
            Check::Tcp {
                host: t.host.clone().filter(|h| !h.is_empty()),
                port: t.port.clone(),
            }
        } else if let Some(h) = &probe.http_get {
            if h.scheme
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
            {
                Check::Unsupported("httpGet with HTTPS")
            } else {
                Check::Http {
                    host: h.host.clone().filter(|h| !h.is_empty()),
                    port: h.port.clone(),
                    path: h
                        .path
                        .clone()
                        .filter(|p| !p.is_empty())
                        .unwrap_or_else(|| "/".into()),
                    headers: h
                        .http_headers
                        .iter()
                        .flatten()
                        .map(|x| (x.name.clone(), x.value.clone()))
                        .collect(),
                }
            }
        } else if probe.exec.is_some() {
            Check::Unsupported("exec")
        } else if probe.grpc.is_some() {
            Check::Unsupported("grpc")
        } else {
            Check::Unsupported("probe without a handler")
        };
        ProbeSpec {
            check,
            initial_delay: secs(probe.initial_delay_seconds, 0, 0),
            period: secs(probe.period_seconds, 10, 1),
            timeout: secs(probe.timeout_seconds, 1, 1),
            success_threshold: probe.success_threshold.map_or(1, |v| v.max(1) as u32),
            failure_threshold: probe.failure_threshold.map_or(3, |v| v.max(1) as u32),
        }
    }
}

/// A named port of the container, or the number itself.
fn resolve(container: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => match name.parse::<u16>() {
            Ok(n) => Some(n),
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok()),
        },
    }
}

/// Runs one probe attempt from `node_netns` against `pod_ip`; true on success.
pub async fn probe_once(
    node_netns: &str,
    pod_ip: IpAddr,
    container: &Container,
    spec: &ProbeSpec,
) -> bool {
    let (host, port, payload) = match &spec.check {
        Check::Unsupported(_) => return false,
        Check::Tcp { host, port } => (host, port, Vec::new()),
        Check::Http {
            host,
            port,
            path,
            headers,
        } => {
            let mut req = format!("GET {path} HTTP/1.1\r\nHost: {{host}}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n");
            for (k, v) in headers {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
            req.push_str("\r\n");
            (host, port, req.into_bytes())
        }
    };
    let Some(port) = resolve(container, port) else {
        return false;
    };
    let ip = match host {
        Some(h) => match h.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => return false,
        },
        None => pod_ip,
    };
    let to = SocketAddr::new(ip, port);
    let payload = String::from_utf8_lossy(&payload).replace("{host}", &to.to_string());
    let is_http = matches!(spec.check, Check::Http { .. });
    let netns = node_netns.to_string();
    let timeout = spec.timeout;
    let result = tokio::task::spawn_blocking(move || {
        if is_http {
            workload::connect(&netns, Proto::Tcp, to, payload.as_bytes(), timeout)
        } else {
            // A TCP probe succeeds once connected, whatever (if anything) the server says.
            workload::tcp_open(&netns, to, timeout).map(|()| String::new())
        }
    })
    .await;
    match result {
        Ok(Ok(line)) => !is_http || http_success(&line),
        _ => false,
    }
}

/// Whether an HTTP status line reports 200–399.
pub fn http_success(status_line: &str) -> bool {
    let mut parts = status_line.split_whitespace();
    let proto_ok = parts.next().is_some_and(|p| p.starts_with("HTTP/"));
    let code: Option<u16> = parts.next().and_then(|c| c.parse().ok());
    proto_ok && code.is_some_and(|c| (200..400).contains(&c))
}

/// Consecutive-result bookkeeping of one probe (the default: failure, as kubelet's readiness
/// results start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Thresholds {
    /// The current result.
    pub ready: bool,
    streak: u32,
    last: Option<bool>,
}

impl Thresholds {
    /// Records one attempt; returns the (possibly changed) result.
    pub fn record(&mut self, success: bool, spec: &ProbeSpec) -> bool {
        if self.last == Some(success) {
            self.streak = self.streak.saturating_add(1);
        } else {
            self.last = Some(success);
            self.streak = 1;
        }
        if success && self.streak >= spec.success_threshold {
            self.ready = true;
        } else if !success && self.streak >= spec.failure_threshold {
            self.ready = false;
        }
        self.ready
    }
}

/// Probes `container` of a pod until aborted, sending `(container, ready)` whenever the result
/// changes. `started` is when the container started.
pub async fn run(
    node_netns: String,
    pod_ip: IpAddr,
    container: Container,
    spec: ProbeSpec,
    started: Instant,
    results: mpsc::Sender<(String, bool)>,
) {
    let mut state = Thresholds::default();
    let mut tick = tokio::time::interval(spec.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if started.elapsed() < spec.initial_delay {
            continue;
        }
        let before = state.ready;
        let ok = probe_once(&node_netns, pod_ip, &container, &spec).await;
        let now = state.record(ok, &spec);
        if now != before && results.send((container.name.clone(), now)).await.is_err() {
            return;
        }
    }
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> Value {
    let mut c =
        json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastProbeTime": null});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

/// The conditions kubelet owns for a running pod whose containers' readiness is `ready` (a
/// container missing from the map has no readiness probe and is ready), with the pod's
/// readiness gates looked up in its current conditions. `lastTransitionTime` is kept from the
/// pod's current condition of the same status, else set to `now`.
pub fn conditions(pod: &Pod, ready: &BTreeMap<String, bool>, now: &str) -> Vec<Value> {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let unready: Vec<&str> = containers
        .iter()
        .filter(|c| !ready.get(&c.name).copied().unwrap_or(true))
        .map(|c| c.name.as_str())
        .collect();
    let containers_ready = unready.is_empty();
    let not_ready_message = format!("containers with unready status: [{}]", unready.join(" "));
    let current: Vec<(String, String, Value)> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c.type_.clone(),
                c.status.clone(),
                c.last_transition_time
                    .as_ref()
                    .map(|t| json!(t.0.to_string()))
                    .unwrap_or(Value::Null),
            )
        })
        .collect();
    let mut ready_cond = if !containers_ready {
        condition(
            "Ready",
            false,
            Some("ContainersNotReady"),
            Some(not_ready_message.clone()),
        )
    } else {
        condition("Ready", true, None, None)
    };
    if containers_ready {
        for gate in pod
            .spec
            .as_ref()
            .and_then(|s| s.readiness_gates.as_ref())
            .into_iter()
            .flatten()
        {
            let t = &gate.condition_type;
            let message = match current.iter().find(|(k, _, _)| k == t) {
                None => Some(format!(
                    "corresponding condition of pod readiness gate \"{t}\" does not exist."
                )),
                Some((_, s, _)) if s != "True" => Some(format!(
                    "the status of pod readiness gate \"{t}\" is not \"True\", but {s}"
                )),
                _ => None,
            };
            if let Some(m) = message {
                ready_cond = condition("Ready", false, Some("ReadinessGatesNotReady"), Some(m));
                break;
            }
        }
    }
    let mut out = vec![
        condition("PodReadyToStartContainers", true, None, None),
        condition("Initialized", true, None, None),
        ready_cond,
        if containers_ready {
            condition("ContainersReady", true, None, None)
        } else {
            condition(
                "ContainersReady",
                false,
                Some("ContainersNotReady"),
                Some(not_ready_message),
            )
        },
        condition("PodScheduled", true, None, None),
    ];
    for c in &mut out {
        let kind = c["type"].as_str().unwrap_or_default().to_string();
        let status = c["status"].as_str().unwrap_or_default().to_string();
        let since = current
            .iter()
            .find(|(k, s, t)| *k == kind && *s == status && !t.is_null())
            .map(|(_, _, t)| t.clone())
            .unwrap_or_else(|| json!(now));
        c["lastTransitionTime"] = since;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value, conditions: Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": spec, "status": {"conditions": conditions}}),
        )
        .unwrap()
    }

    fn status_of(cs: &[Value], kind: &str) -> (String, Option<String>) {
        let c = cs.iter().find(|c| c["type"] == kind).unwrap();
        (
            c["status"].as_str().unwrap().to_string(),
            c.get("message").and_then(Value::as_str).map(str::to_string),
        )
    }

    #[test]
    fn defaults_and_thresholds() {
        let probe: Probe = serde_json::from_value(json!({"tcpSocket": {"port": 80}})).unwrap();
        let spec = ProbeSpec::of(&probe);
        assert_eq!(
            (
                spec.period,
                spec.timeout,
                spec.success_threshold,
                spec.failure_threshold
            ),
            (Duration::from_secs(10), Duration::from_secs(1), 1, 3)
        );
        let probe: Probe = serde_json::from_value(
            json!({"httpGet": {"port": "http"}, "successThreshold": 2, "failureThreshold": 2}),
        )
        .unwrap();
        let spec = ProbeSpec::of(&probe);
        let mut t = Thresholds::default();
        assert!(!t.record(true, &spec));
        assert!(t.record(true, &spec));
        assert!(t.record(false, &spec));
        assert!(t.record(true, &spec));
        assert!(t.record(false, &spec));
        assert!(!t.record(false, &spec));
        assert!(http_success("HTTP/1.1 302 Found"));
        assert!(!http_success("HTTP/1.1 404 Not Found"));
        assert!(!http_success("hello"));
    }

    #[test]
    fn conditions_follow_containers_and_gates() {
        let p = pod(
            json!({"containers": [{"name": "a"}, {"name": "b"}], "readinessGates": [{"conditionType": "example.com/lb"}]}),
            json!([{"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}]),
        );
        let mut ready = BTreeMap::from([("a".to_string(), false)]);
        let cs = conditions(&p, &ready, "2026-02-02T00:00:00Z");
        assert_eq!(
            status_of(&cs, "ContainersReady"),
            (
                "False".into(),
                Some("containers with unready status: [a]".into())
            )
        );
        assert_eq!(status_of(&cs, "Ready").0, "False");
        let r = cs.iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(r["lastTransitionTime"], "2026-01-01T00:00:00Z");
        ready.insert("a".into(), true);
        let cs = conditions(&p, &ready, "now");
        assert_eq!(status_of(&cs, "ContainersReady").0, "True");
        assert_eq!(status_of(&cs, "Ready"), ("False".into(), Some("corresponding condition of pod readiness gate \"example.com/lb\" does not exist.".into())));
        let gated = pod(
            json!({"containers": [{"name": "a"}], "readinessGates": [{"conditionType": "example.com/lb"}]}),
            json!([{"type": "example.com/lb", "status": "True"}]),
        );
        let cs = conditions(&gated, &BTreeMap::new(), "now");
        assert_eq!(status_of(&cs, "Ready").0, "True");
        assert_eq!(
            cs.iter().find(|c| c["type"] == "Ready").unwrap()["lastTransitionTime"],
            "now"
        );
    }
}
