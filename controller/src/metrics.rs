//! The controller's Prometheus metrics, served with the health endpoints on `--pprof-port`
//! (upstream serves both there) by [`kube_ovn_common::health`].
//!
//! Upstream's names and labels, so its Grafana dashboard (`controller-grafana.json`) and alerts
//! keep working (the lists the tests check are [`UPSTREAM_SHARED`] and [`UPSTREAM`]):
//! - `rest_client_*`, `ovs_client_request_latency_milliseconds`, `klog_*`, `process_*`: shared
//!   with the daemon, see [`kube_ovn_common::metrics`]. The NB transactions are recorded with
//!   `db="ovn-nb"` and `method="transact"` (upstream names each transaction after its
//!   ovn-nbctl-like operation; ours are plans of many operations);
//! - `workqueue_*` per queue: see [`kube_ovn_runtime::metrics`];
//! - `subnet_available_ip_count` and `subnet_used_ip_count` with `subnet_name`, `protocol`,
//!   `subnet_cidr`: computed at scrape time from each validated subnet's status counters, as
//!   upstream's exporter computes them every 30 s;
//! - `leader_election_master_status{name="kube-ovn-controller"}`: 1 while this replica holds
//!   the Lease.
//!
//! Not exported: `subnet_ipam_info`, `subnet_ip_assign_info` and `centralized_subnet_info`
//! (per-address and per-policy info series no dashboard reads; not built yet), `go_*` (no Go
//! runtime), `controller_runtime_*` (upstream registers them but runs no controller-runtime
//! controller, so they carry no series).
//!
//! Our own series, under the `kube_ovn_controller_` prefix so they cannot clash: reconciles,
//! failed reconciles and reconcile latency per kind, NB transactions and operations sent.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kube::runtime::reflector::Store;
use kube::ResourceExt;
use kube_ovn_common::crd::condition::{Conditions, VALIDATED};
use kube_ovn_common::crd::Subnet;
use kube_ovn_common::health::{self, Exposition};
use kube_ovn_common::metrics::{OvsClientMetrics, RestClientMetrics};
use kube_ovn_runtime::WorkqueueMetrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

pub use kube_ovn_common::metrics::{UPSTREAM_COMMIT, UPSTREAM_SHARED};

/// Every series upstream's controller exports that its dashboard or ours reads and that this
/// controller exports too, with its label names (as `pkg/controller/net_metrics.go`,
/// `pkg/metrics/client_go_adapter.go`, `pkg/ovs/adapter.go`, `pkg/metrics/klog.go` and
/// controller-runtime's workqueue, leader-election and process metrics define them at
/// [`UPSTREAM_COMMIT`]). Sample names, so counters carry `_total` and histograms `_count`; the series both binaries
/// serve are in [`UPSTREAM_SHARED`].
pub const UPSTREAM: &[(&str, &[&str])] = &[
    ("workqueue_adds_total", &["name", "controller"]),
    ("workqueue_retries_total", &["name", "controller"]),
    ("workqueue_depth", &["name", "controller", "priority"]),
    (
        "workqueue_queue_duration_seconds_count",
        &["name", "controller"],
    ),
    (
        "workqueue_work_duration_seconds_count",
        &["name", "controller"],
    ),
    ("workqueue_unfinished_work_seconds", &["name", "controller"]),
    (
        "workqueue_longest_running_processor_seconds",
        &["name", "controller"],
    ),
    (
        "subnet_available_ip_count",
        &["subnet_name", "protocol", "subnet_cidr"],
    ),
    (
        "subnet_used_ip_count",
        &["subnet_name", "protocol", "subnet_cidr"],
    ),
    ("leader_election_master_status", &["name"]),
];

/// The Lease name, as `leader_election_master_status` labels it.
const LEASE: &str = "kube-ovn-controller";

/// Labels of per-kind reconcile metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The reconciled kind (subnet, node, pod…).
    pub kind: String,
}

/// Labels of `leader_election_master_status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaseLabel {
    name: String,
}

/// Everything the controller exports.
pub struct Metrics {
    registry: Registry,
    /// Kubernetes API requests (the client's layer records them).
    pub rest: RestClientMetrics,
    /// OVN NB transactions.
    pub ovs: OvsClientMetrics,
    /// The reconciler queues' families, for the runtime.
    pub workqueue: WorkqueueMetrics,
    /// Reconciles run, per kind.
    pub reconciles: Family<KindLabel, Counter>,
    /// Reconciles that failed, per kind.
    pub reconcile_errors: Family<KindLabel, Counter>,
    /// Reconcile latency, per kind.
    pub reconcile_seconds: Family<KindLabel, Histogram>,
    /// NB transactions sent.
    pub nb_transactions: Counter,
    /// NB operations sent.
    pub nb_operations: Counter,
    leader: Family<LeaseLabel, Gauge>,
    subnets: SubnetGauges,
    ready: AtomicBool,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::default();
        let shared = kube_ovn_common::metrics::register(&mut registry);
        let workqueue = WorkqueueMetrics::register(&mut registry);
        let leader = Family::<LeaseLabel, Gauge>::default();
        registry.register(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates \
             backup, 1 indicates master. 'name' is the string used to identify the lease.",
            leader.clone(),
        );
        let subnets = SubnetGauges::default();
        registry.register_collector(Box::new(subnets.clone()));
        let reconciles = Family::<KindLabel, Counter>::default();
        let reconcile_errors = Family::<KindLabel, Counter>::default();
        let reconcile_seconds = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let nb_transactions = Counter::default();
        let nb_operations = Counter::default();
        let own = registry.sub_registry_with_prefix("kube_ovn_controller");
        own.register("reconciles", "Reconciles run", reconciles.clone());
        own.register(
            "reconcile_errors",
            "Reconciles that failed",
            reconcile_errors.clone(),
        );
        own.register(
            "reconcile_seconds",
            "Reconcile latency",
            reconcile_seconds.clone(),
        );
        own.register(
            "nb_transactions",
            "OVN NB transactions sent",
            nb_transactions.clone(),
        );
        own.register(
            "nb_operations",
            "OVN NB operations sent",
            nb_operations.clone(),
        );
        Arc::new(Metrics {
            registry,
            rest: shared.rest,
            ovs: shared.ovs,
            workqueue,
            reconciles,
            reconcile_errors,
            reconcile_seconds,
            nb_transactions,
            nb_operations,
            leader,
            subnets,
            ready: AtomicBool::new(false),
        })
    }

    /// Records whether this replica holds the Lease.
    pub fn set_leader(&self, leading: bool) {
        self.leader
            .get_or_create(&LeaseLabel { name: LEASE.into() })
            .set(i64::from(leading));
    }

    /// Exports the subnet gauges from `subnets` from now on (the leader's store).
    pub fn watch_subnets(&self, subnets: Store<Subnet>) {
        *self.subnets.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(subnets);
    }

    /// Marks the controller ready (caches synced, IPAM restored).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
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

/// Labels of the subnet gauges, upstream's.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubnetLabels {
    subnet_name: String,
    protocol: String,
    subnet_cidr: String,
}

/// `subnet_available_ip_count` and `subnet_used_ip_count`, from the subnet store at scrape
/// time, as upstream's exporter derives them: validated subnets with a CIDR; available is the
/// family's count (the smaller of the two for dual-stack), used is the IPv6 count for IPv6
/// subnets and the IPv4 count otherwise.
#[derive(Clone, Default)]
struct SubnetGauges(Arc<Mutex<Option<Store<Subnet>>>>);

impl std::fmt::Debug for SubnetGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("subnet gauges")
    }
}

/// The gauges of one subnet: labels, available, used; `None` for subnets upstream skips.
fn subnet_counts(s: &Subnet) -> Option<(SubnetLabels, f64, f64)> {
    let st = s.status.as_ref()?;
    if !st.conditions.is_condition_true(VALIDATED) || s.spec.cidr_block.is_empty() {
        return None;
    }
    let (v4a, v6a) = (st.v4_available_ips.to_f64(), st.v6_available_ips.to_f64());
    let (available, used) = match s.spec.protocol.as_str() {
        "IPv4" => (v4a, st.v4_using_ips.to_f64()),
        "IPv6" => (v6a, st.v6_using_ips.to_f64()),
        _ => (v4a.min(v6a), st.v4_using_ips.to_f64()),
    };
    let labels = SubnetLabels {
        subnet_name: s.name_any(),
        protocol: s.spec.protocol.clone(),
        subnet_cidr: s.spec.cidr_block.clone(),
    };
    Some((labels, available, used))
}

impl Collector for SubnetGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let store = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(store) = store else {
            return Ok(());
        };
        let counts: Vec<_> = store
            .state()
            .iter()
            .filter_map(|s| subnet_counts(s))
            .collect();
        let mut available = encoder.encode_descriptor(
            "subnet_available_ip_count",
            "The available num of ip address in subnet.",
            None,
            MetricType::Gauge,
        )?;
        for (l, a, _) in &counts {
            ConstGauge::new(*a).encode(available.encode_family(l)?)?;
        }
        let mut used = encoder.encode_descriptor(
            "subnet_used_ip_count",
            "The used num of ip address in subnet.",
            None,
            MetricType::Gauge,
        )?;
        for (l, _, u) in &counts {
            ConstGauge::new(*u).encode(used.encode_family(l)?)?;
        }
        Ok(())
    }
}

/// Binds the endpoint's `port` on each of `ips` (serve them with [`health::serve_all`]).
pub async fn bind(ips: &[IpAddr], port: u16) -> std::io::Result<Vec<tokio::net::TcpListener>> {
    let bound = health::bind_all(ips, port, None).await?;
    for (_, addr) in &bound {
        tracing::info!(%addr, "serving health and metrics");
    }
    Ok(bound.into_iter().map(|(l, _)| l).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_gauges_as_upstreams_exporter() {
        let subnet = |protocol: &str, validated: &str| -> Subnet {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "s1"},
                "spec": {"protocol": protocol, "cidrBlock": "10.0.0.0/24,fd00::/120"},
                "status": {
                    "conditions": [{"type": "Validated", "status": validated}],
                    "v4availableIPs": 250, "v4usingIPs": 3,
                    "v6availableIPs": 200, "v6usingIPs": 4,
                }
            }))
            .unwrap()
        };
        let (l, a, u) = subnet_counts(&subnet("Dual", "True")).unwrap();
        assert_eq!(
            (l.subnet_name.as_str(), l.protocol.as_str()),
            ("s1", "Dual")
        );
        assert_eq!(l.subnet_cidr, "10.0.0.0/24,fd00::/120");
        assert_eq!((a, u), (200.0, 3.0));
        let (_, a, u) = subnet_counts(&subnet("IPv6", "True")).unwrap();
        assert_eq!((a, u), (200.0, 4.0));
        let (_, a, u) = subnet_counts(&subnet("IPv4", "True")).unwrap();
        assert_eq!((a, u), (250.0, 3.0));
        assert!(subnet_counts(&subnet("IPv4", "False")).is_none());
    }

    #[test]
    fn own_series_keep_their_prefix_and_upstreams_have_none() {
        let m = Metrics::new();
        m.reconciles
            .get_or_create(&KindLabel { kind: "pod".into() })
            .inc();
        m.set_leader(true);
        let text = m.render();
        for needle in [
            r#"kube_ovn_controller_reconciles_total{kind="pod"} 1"#,
            r#"leader_election_master_status{name="kube-ovn-controller"} 1"#,
            "# TYPE workqueue_depth gauge",
            "# TYPE rest_client_requests counter",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
    }
}
