//! The daemon's Prometheus metrics, served with the health endpoints on `--pprof-port` by
//! [`kube_ovn_common::health`]. Metric names follow upstream's (`cni_op_latency_seconds`,
//! `cni_wait_address_seconds_total`) so existing dashboards keep working; the ones upstream
//! lacks are named in the same style.
//!
//! Port 0 picks a free port (several sandbox nodes share one machine); the bound address is
//! logged and written to [`addr_file`], so whoever started the daemon can find it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use kube_ovn_common::health::Exposition;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of per-request metrics, upstream's set plus the outcome in words.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// The node this daemon serves.
    pub node_name: String,
    /// `add` or `del`.
    pub method: String,
    /// The HTTP status answered to the shim.
    pub status_code: String,
    /// `success`, `bad_request` or `error`.
    pub result: String,
}

/// Labels of the per-node wait totals (upstream labels them by node only).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    /// The node this daemon serves.
    pub node_name: String,
}

type SecondsCounter = Counter<f64, std::sync::atomic::AtomicU64>;

/// Everything the daemon exports, plus its readiness.
pub struct Metrics {
    registry: Registry,
    node: NodeLabel,
    ops: Family<OpLabels, Counter>,
    op_latency: Family<OpLabels, Histogram>,
    wait_address: Family<NodeLabel, SecondsCounter>,
    wait_ovn_installed: Family<NodeLabel, SecondsCounter>,
    wait_ovn_installed_hist: Family<NodeLabel, Histogram>,
    ready: AtomicBool,
}

/// Where the metrics address of a daemon serving `bind_socket` is written.
pub fn addr_file(bind_socket: &Path) -> PathBuf {
    let mut name = bind_socket.as_os_str().to_owned();
    name.push(".metrics-addr");
    PathBuf::from(name)
}

fn latency_buckets() -> Histogram {
    // 1 ms … ~33 s: an ADD spans a fast local plug up to the 30 s ovn-installed bound.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    /// Registers every metric for the daemon of `node`.
    pub fn new(node: &str) -> Arc<Metrics> {
        let mut registry = Registry::default();
        let ops = Family::<OpLabels, Counter>::default();
        let op_latency = Family::<OpLabels, Histogram>::new_with_constructor(latency_buckets);
        let wait_address = Family::<NodeLabel, SecondsCounter>::default();
        let wait_ovn_installed = Family::<NodeLabel, SecondsCounter>::default();
        let wait_ovn_installed_hist =
            Family::<NodeLabel, Histogram>::new_with_constructor(latency_buckets);
        registry.register(
            "cni_op",
            "CNI requests (ADD/DEL) answered, by result",
            ops.clone(),
        );
        registry.register(
            "cni_op_latency_seconds",
            "Latency of CNI requests (ADD/DEL), by result",
            op_latency.clone(),
        );
        registry.register(
            "cni_wait_address_seconds",
            "Seconds ADDs spent waiting for the controller's annotations",
            wait_address.clone(),
        );
        registry.register(
            "cni_wait_ovn_installed_seconds",
            "Seconds ADDs spent waiting for ovn-controller's ovn-installed",
            wait_ovn_installed.clone(),
        );
        registry.register(
            "cni_wait_ovn_installed_latency_seconds",
            "Per-ADD wait for ovn-controller's ovn-installed",
            wait_ovn_installed_hist.clone(),
        );
        Arc::new(Metrics {
            registry,
            node: NodeLabel {
                node_name: node.to_string(),
            },
            ops,
            op_latency,
            wait_address,
            wait_ovn_installed,
            wait_ovn_installed_hist,
            ready: AtomicBool::new(false),
        })
    }

    /// Records one answered request.
    pub fn observe_op(&self, method: &str, status: StatusCode, elapsed: Duration) {
        let result = if status.is_success() {
            "success"
        } else if status.is_client_error() {
            "bad_request"
        } else {
            "error"
        };
        let labels = OpLabels {
            node_name: self.node.node_name.clone(),
            method: method.to_string(),
            status_code: status.as_u16().to_string(),
            result: result.to_string(),
        };
        self.ops.get_or_create(&labels).inc();
        self.op_latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Records the time one ADD waited for the pod's annotations.
    pub fn observe_wait_address(&self, elapsed: Duration) {
        self.wait_address
            .get_or_create(&self.node)
            .inc_by(elapsed.as_secs_f64());
    }

    /// Records the time one ADD waited for `ovn-installed`.
    pub fn observe_wait_ovn_installed(&self, elapsed: Duration) {
        let s = elapsed.as_secs_f64();
        self.wait_ovn_installed.get_or_create(&self.node).inc_by(s);
        self.wait_ovn_installed_hist
            .get_or_create(&self.node)
            .observe(s);
    }

    /// Marks the daemon ready: the OVS replica synced and the CNI socket listens.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Exposition for Metrics {
    fn render(&self) -> String {
        Metrics::render(self)
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_upstreams() {
        let m = Metrics::new("n1");
        m.observe_op("add", StatusCode::OK, Duration::from_millis(20));
        m.observe_op("del", StatusCode::BAD_REQUEST, Duration::from_millis(1));
        m.observe_wait_address(Duration::from_millis(5));
        m.observe_wait_ovn_installed(Duration::from_millis(7));
        let text = m.render();
        for needle in [
            r#"cni_op_total{node_name="n1",method="add",status_code="200",result="success"} 1"#,
            r#"cni_op_total{node_name="n1",method="del",status_code="400",result="bad_request"} 1"#,
            "cni_op_latency_seconds_bucket{",
            r#"cni_wait_address_seconds_total{node_name="n1"} 0.005"#,
            r#"cni_wait_ovn_installed_seconds_total{node_name="n1"} 0.007"#,
            "cni_wait_ovn_installed_latency_seconds_count",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
    }

    #[test]
    fn readiness_and_disabled_metrics() {
        use kube_ovn_common::health::respond;
        let m = Metrics::new("n1");
        assert_eq!(
            respond(&*m, "/readyz", true).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(respond(&*m, "/healthz", true).status(), StatusCode::OK);
        assert_eq!(respond(&*m, "/livez", true).status(), StatusCode::OK);
        m.set_ready();
        assert_eq!(respond(&*m, "/readyz", true).status(), StatusCode::OK);
        assert_eq!(respond(&*m, "/metrics", true).status(), StatusCode::OK);
        assert_eq!(
            respond(&*m, "/metrics", false).status(),
            StatusCode::NOT_FOUND
        );
    }
}
