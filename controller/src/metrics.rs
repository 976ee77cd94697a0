//! The controller's Prometheus metrics, served with the health endpoints on `--pprof-port`
//! (upstream serves both there) by [`kube_ovn_common::health`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kube_ovn_common::health::{self, Exposition};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of per-kind reconcile metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The reconciled kind (subnet, node, pod…).
    pub kind: String,
}

/// Labels of per-subnet gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubnetLabel {
    /// Subnet name.
    pub subnet: String,
}

/// Everything the controller exports.
pub struct Metrics {
    registry: Registry,
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
    /// Addresses in use, per subnet.
    pub subnet_used_ips: Family<SubnetLabel, Gauge>,
    /// Addresses available, per subnet (saturating at i64::MAX).
    pub subnet_available_ips: Family<SubnetLabel, Gauge>,
    /// 1 while this replica is the leader.
    pub leader: Gauge,
    ready: AtomicBool,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("kube_ovn_controller");
        let reconciles = Family::<KindLabel, Counter>::default();
        let reconcile_errors = Family::<KindLabel, Counter>::default();
        let reconcile_seconds = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let nb_transactions = Counter::default();
        let nb_operations = Counter::default();
        let subnet_used_ips = Family::<SubnetLabel, Gauge>::default();
        let subnet_available_ips = Family::<SubnetLabel, Gauge>::default();
        let leader = Gauge::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_seconds",
            "Reconcile latency",
            reconcile_seconds.clone(),
        );
        registry.register(
            "nb_transactions",
            "OVN NB transactions sent",
            nb_transactions.clone(),
        );
        registry.register(
            "nb_operations",
            "OVN NB operations sent",
            nb_operations.clone(),
        );
        registry.register(
            "subnet_used_ips",
            "Addresses in use per subnet",
            subnet_used_ips.clone(),
        );
        registry.register(
            "subnet_available_ips",
            "Addresses available per subnet",
            subnet_available_ips.clone(),
        );
        registry.register("leader", "1 while this replica leads", leader.clone());
        Arc::new(Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_seconds,
            nb_transactions,
            nb_operations,
            subnet_used_ips,
            subnet_available_ips,
            leader,
            ready: AtomicBool::new(false),
        })
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

/// Binds `addr` and serves the endpoints until the task is aborted; `Err` when it cannot bind.
pub async fn serve(
    metrics: Arc<Metrics>,
    addr: SocketAddr,
    metrics_enabled: bool,
) -> std::io::Result<()> {
    let (listener, _) = health::bind(addr, None).await?;
    health::serve(listener, metrics, metrics_enabled).await;
    Ok(())
}
