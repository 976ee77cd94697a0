//! kube-ovn-pinger's Prometheus metrics in server mode, under upstream's names, label names and
//! buckets (`pinger_*`), so upstream's pinger dashboard keeps working. As upstream, the pod and
//! node ping series carry the pinger's pod *name* in `src_pod_ip` (upstream passes its name
//! there; the external ping series carry its IP). Not exported: the `ovs_*` families upstream's
//! pinger also serves from its OVS exporter (datapath, interface and file statistics).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use kube_ovn_common::health::Exposition;

/// `nodeName`, the label of the per-node health series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
#[allow(non_snake_case)]
pub struct NodeName {
    /// The pinger's node.
    pub nodeName: String,
}

/// Labels of the pod ping series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PodPing {
    /// The pinger's node.
    pub src_node_name: String,
    /// The pinger's node address.
    pub src_node_ip: String,
    /// The pinger's pod name (upstream's value).
    pub src_pod_ip: String,
    /// The target pod's node.
    pub target_node_name: String,
    /// The target pod's host address.
    pub target_node_ip: String,
    /// The address pinged.
    pub target_pod_ip: String,
}

/// Labels of the node ping series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodePing {
    /// The pinger's node.
    pub src_node_name: String,
    /// The pinger's node address.
    pub src_node_ip: String,
    /// The pinger's pod name (upstream's value).
    pub src_pod_ip: String,
    /// The node pinged.
    pub target_node_name: String,
    /// Its InternalIP pinged.
    pub target_node_ip: String,
}

/// Labels of the external ping series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExternalPing {
    /// The pinger's node.
    pub src_node_name: String,
    /// The pinger's node address.
    pub src_node_ip: String,
    /// The pinger's pod address.
    pub src_pod_ip: String,
    /// The external address pinged.
    pub target_address: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type FloatCounter = Counter<f64, AtomicU64>;

/// A healthy/unhealthy gauge pair with a latency histogram, as upstream keeps for the API
/// server and both DNS checks.
#[derive(Clone)]
struct Health {
    healthy: Family<NodeName, FloatGauge>,
    unhealthy: Family<NodeName, FloatGauge>,
    latency: Option<Family<NodeName, Histogram>>,
}

impl Health {
    fn register(r: &mut Registry, prefix: &str, what: &str, latency: bool) -> Health {
        let h = Health {
            healthy: Family::default(),
            unhealthy: Family::default(),
            latency: latency
                .then(|| Family::new_with_constructor(request_histogram as fn() -> Histogram)),
        };
        let (good, bad) = if prefix.ends_with("_controller") || prefix.ends_with("ovs") {
            ("up", "down")
        } else {
            ("healthy", "unhealthy")
        };
        r.register(
            format!("{prefix}_{good}"),
            format!("If the {what} on this node is {good}"),
            h.healthy.clone(),
        );
        r.register(
            format!("{prefix}_{bad}"),
            format!("If the {what} on this node is {bad}"),
            h.unhealthy.clone(),
        );
        if let Some(l) = &h.latency {
            r.register(
                format!("{prefix}_latency_ms"),
                format!("The latency ms histogram of the {what}"),
                l.clone(),
            );
        }
        h
    }

    fn set(&self, node: &NodeName, ok: bool, latency_ms: Option<f64>) {
        self.healthy
            .get_or_create(node)
            .set(if ok { 1.0 } else { 0.0 });
        self.unhealthy
            .get_or_create(node)
            .set(if ok { 0.0 } else { 1.0 });
        if let (true, Some(l), Some(ms)) = (ok, &self.latency, latency_ms) {
            l.get_or_create(node).observe(ms);
        }
    }
}

/// Upstream's buckets of the API server and DNS latencies (ms).
fn request_histogram() -> Histogram {
    Histogram::new([
        2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0,
    ])
}

/// Upstream's buckets of pod and node ping latencies (ms).
fn peer_histogram() -> Histogram {
    Histogram::new([0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0])
}

/// Upstream's buckets of external ping latencies (ms).
fn external_histogram() -> Histogram {
    Histogram::new([0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 50.0, 100.0])
}

/// Every metric the pinger exports, and its readiness.
pub struct Metrics {
    registry: Registry,
    node: NodeName,
    ovs: Health,
    ovn_controller: Health,
    inconsistent: Family<NodeName, FloatGauge>,
    apiserver: Health,
    internal_dns: Health,
    external_dns: Health,
    pod_latency: Family<PodPing, Histogram>,
    pod_lost: Family<PodPing, FloatCounter>,
    pod_total: Family<PodPing, FloatCounter>,
    node_latency: Family<NodePing, Histogram>,
    node_lost: Family<NodePing, FloatCounter>,
    node_total: Family<NodePing, FloatCounter>,
    external_latency: Family<ExternalPing, Histogram>,
    external_lost: Family<ExternalPing, FloatCounter>,
    ready: AtomicBool,
}

impl Metrics {
    /// Registers every metric of the pinger on `node`.
    pub fn new(node: &str) -> Arc<Metrics> {
        let mut r = Registry::default();
        let ovs = Health::register(&mut r, "pinger_ovs", "ovs", false);
        let ovn_controller =
            Health::register(&mut r, "pinger_ovn_controller", "ovn_controller", false);
        let inconsistent = Family::<NodeName, FloatGauge>::default();
        r.register(
            "pinger_inconsistent_port_binding",
            "The number of mismatch port bindings between ovs and ovn-sb",
            inconsistent.clone(),
        );
        let apiserver = Health::register(&mut r, "pinger_apiserver", "apiserver request", true);
        let internal_dns =
            Health::register(&mut r, "pinger_internal_dns", "internal dns request", true);
        let external_dns =
            Health::register(&mut r, "pinger_external_dns", "external dns request", true);
        let pod_latency = Family::new_with_constructor(peer_histogram as fn() -> Histogram);
        let pod_lost = Family::<PodPing, FloatCounter>::default();
        let pod_total = Family::<PodPing, FloatCounter>::default();
        r.register(
            "pinger_pod_ping_latency_ms",
            "The latency ms histogram for pod peer ping",
            pod_latency.clone(),
        );
        r.register(
            "pinger_pod_ping_lost",
            "The lost count for pod peer ping",
            pod_lost.clone(),
        );
        r.register(
            "pinger_pod_ping_count",
            "The total count for pod peer ping",
            pod_total.clone(),
        );
        let node_latency = Family::new_with_constructor(peer_histogram as fn() -> Histogram);
        let node_lost = Family::<NodePing, FloatCounter>::default();
        let node_total = Family::<NodePing, FloatCounter>::default();
        r.register(
            "pinger_node_ping_latency_ms",
            "The latency ms histogram for pod ping node",
            node_latency.clone(),
        );
        r.register(
            "pinger_node_ping_lost",
            "The lost count for pod ping node",
            node_lost.clone(),
        );
        r.register(
            "pinger_node_ping_count",
            "The total count for pod ping node",
            node_total.clone(),
        );
        let external_latency =
            Family::new_with_constructor(external_histogram as fn() -> Histogram);
        let external_lost = Family::<ExternalPing, FloatCounter>::default();
        r.register(
            "pinger_external_ping_latency_ms",
            "The latency ms histogram for pod ping external address",
            external_latency.clone(),
        );
        r.register(
            "pinger_external_ping_lost",
            "The lost count for pod ping external address",
            external_lost.clone(),
        );
        Arc::new(Metrics {
            registry: r,
            node: NodeName {
                nodeName: node.to_string(),
            },
            ovs,
            ovn_controller,
            inconsistent,
            apiserver,
            internal_dns,
            external_dns,
            pod_latency,
            pod_lost,
            pod_total,
            node_latency,
            node_lost,
            node_total,
            external_latency,
            external_lost,
            ready: AtomicBool::new(false),
        })
    }

    /// OVS (ovsdb-server and ovs-vswitchd) up or down.
    pub fn set_ovs(&self, up: bool) {
        self.ovs.set(&self.node, up, None);
    }

    /// ovn-controller up or down.
    pub fn set_ovn_controller(&self, up: bool) {
        self.ovn_controller.set(&self.node, up, None);
    }

    /// Ports in OVS that the SB does not bind to this chassis.
    pub fn set_inconsistent_bindings(&self, n: usize) {
        self.inconsistent.get_or_create(&self.node).set(n as f64);
    }

    /// The API server check's outcome.
    pub fn set_apiserver(&self, latency_ms: Option<f64>) {
        self.apiserver
            .set(&self.node, latency_ms.is_some(), latency_ms);
    }

    /// The internal DNS lookup's outcome.
    pub fn set_internal_dns(&self, latency_ms: Option<f64>) {
        self.internal_dns
            .set(&self.node, latency_ms.is_some(), latency_ms);
    }

    /// The external DNS lookup's outcome.
    pub fn set_external_dns(&self, latency_ms: Option<f64>) {
        self.external_dns
            .set(&self.node, latency_ms.is_some(), latency_ms);
    }

    /// One pod's ping round: average RTT, lost and sent echoes.
    pub fn pod_ping(&self, labels: &PodPing, avg_ms: f64, lost: u32, sent: u32) {
        self.pod_latency.get_or_create(labels).observe(avg_ms);
        self.pod_lost.get_or_create(labels).inc_by(f64::from(lost));
        self.pod_total.get_or_create(labels).inc_by(f64::from(sent));
    }

    /// One node's ping round.
    pub fn node_ping(&self, labels: &NodePing, avg_ms: f64, lost: u32, sent: u32) {
        self.node_latency.get_or_create(labels).observe(avg_ms);
        self.node_lost.get_or_create(labels).inc_by(f64::from(lost));
        self.node_total
            .get_or_create(labels)
            .inc_by(f64::from(sent));
    }

    /// One external address's ping round.
    pub fn external_ping(&self, labels: &ExternalPing, avg_ms: f64, lost: u32) {
        self.external_latency.get_or_create(labels).observe(avg_ms);
        self.external_lost
            .get_or_create(labels)
            .inc_by(f64::from(lost));
    }

    /// Called after the first round: `/readyz` answers 200 from then on.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }
}

impl Exposition for Metrics {
    fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding the pinger's metrics");
        }
        out
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_carry_upstreams_names_and_labels() {
        let m = Metrics::new("node1");
        m.set_ovs(true);
        m.set_ovn_controller(false);
        m.set_inconsistent_bindings(2);
        m.set_apiserver(Some(3.0));
        m.set_internal_dns(None);
        m.set_external_dns(Some(1.0));
        let pod = PodPing {
            src_node_name: "node1".into(),
            src_node_ip: "172.18.0.2".into(),
            src_pod_ip: "kube-ovn-pinger-abcde".into(),
            target_node_name: "node2".into(),
            target_node_ip: "172.18.0.3".into(),
            target_pod_ip: "10.16.0.5".into(),
        };
        m.pod_ping(&pod, 0.4, 1, 3);
        let text = m.render();
        for want in [
            "pinger_ovs_up{nodeName=\"node1\"} 1",
            "pinger_ovs_down{nodeName=\"node1\"} 0",
            "pinger_ovn_controller_up{nodeName=\"node1\"} 0",
            "pinger_ovn_controller_down{nodeName=\"node1\"} 1",
            "pinger_inconsistent_port_binding{nodeName=\"node1\"} 2",
            "pinger_apiserver_healthy{nodeName=\"node1\"} 1",
            "pinger_apiserver_latency_ms_bucket{le=\"5.0\",nodeName=\"node1\"} 1",
            "pinger_internal_dns_unhealthy{nodeName=\"node1\"} 1",
            "pinger_external_dns_healthy{nodeName=\"node1\"} 1",
            "pinger_pod_ping_lost_total{src_node_name=\"node1\"",
            "pinger_pod_ping_count_total{",
            "target_pod_ip=\"10.16.0.5\"} 3",
            "pinger_pod_ping_latency_ms_bucket{le=\"0.5\",src_node_name=\"node1\"",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }
}
