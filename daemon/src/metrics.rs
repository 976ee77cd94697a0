//! The daemon's Prometheus metrics, served with the health endpoints on `--pprof-port` by
//! [`kube_ovn_common::health`], under upstream's names and labels so its Grafana dashboard
//! (`cni-grafana.json`) keeps working (the lists the tests check are [`UPSTREAM_SHARED`] and [`UPSTREAM`]):
//!
//! - `cni_op_latency_seconds{node_name,method,status_code}`: every ADD and DEL, `method` being
//!   the request URI (`/api/v1/add`) as upstream labels it;
//! - `cni_wait_address_seconds_total{node_name}` and `cni_wait_route_seconds_total{node_name}`:
//!   seconds ADDs waited for the controller's address annotations, then for `routed=true`
//!   (upstream counts its one-second polls of the same waits);
//! - `rest_client_*`, `ovs_client_request_latency_milliseconds` (`db="ovsdb"`, the ovs-vsctl
//!   command upstream would have run as `method`), `klog_*`, `process_*`: see
//!   [`kube_ovn_common::metrics`];
//! - upstream's node checks, labelled with `hostname` (the node name), read at scrape time in the
//!   daemon's network namespace: `ip_local_port_range{start,end}`, `tcp_mem{minimum,pressure,
//!   maximum}` (both 1, the values in labels), `tcp_tw_recycle`, `tcp_mtu_probing`,
//!   `nf_conntrack_tcp_be_liberal`, `bridge_nf_call_iptables`, `max_size` (IPv6 route table),
//!   each only when the kernel has the file, as upstream; `checksum_err_count` (UDP
//!   `InCsumErrors` of `/proc/net/snmp`, the counter upstream reads through `netstat -us`);
//!   `dns_search_domain{additional}` (1 per search domain of `/etc/resolv.conf` but `.`, or
//!   `no additional search domain`).
//!
//! Not exported, for want of the data: `cni_wait_connectivity_seconds_total` (upstream counts
//! its pings or ARP probes of the gateway before answering an ADD; this daemon does not probe
//! the gateway, it waits for ovn-controller's `ovn-installed` instead, exported as our own
//! `cni_wait_ovn_installed_seconds_total` and `cni_wait_ovn_installed_latency_seconds`);
//! `ovn_subnet_gateway_packets`/`_bytes` (upstream reads them from iptables counters of the
//! gateway rules, which this daemon does not install); `go_*` (no Go runtime).
//!
//! Port 0 picks a free port (several sandbox nodes share one machine); the bound address is
//! logged and written to [`addr_file`], so whoever started the daemon can find it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use kube_ovn_common::health::Exposition;
use kube_ovn_common::metrics::{OvsClientMetrics, RestClientMetrics};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

pub use kube_ovn_common::metrics::{UPSTREAM_COMMIT, UPSTREAM_SHARED};

/// Every series upstream's daemon exports that its dashboard reads or that carries the CNI
/// waits, and that this daemon exports too, with its label names (as `pkg/daemon/metrics.go`,
/// `pkg/metrics/client_go_adapter.go`, `pkg/ovs/adapter.go`, `pkg/metrics/klog.go` and
/// controller-runtime's client and process metrics define them at [`UPSTREAM_COMMIT`]).
/// Sample names, so counters carry `_total` and histograms `_count`; the series both binaries
/// serve are in [`UPSTREAM_SHARED`].
pub const UPSTREAM: &[(&str, &[&str])] = &[
    (
        "cni_op_latency_seconds_count",
        &["node_name", "method", "status_code"],
    ),
    ("cni_wait_address_seconds_total", &["node_name"]),
    ("cni_wait_route_seconds_total", &["node_name"]),
    ("ip_local_port_range", &["hostname", "start", "end"]),
    ("tcp_mtu_probing", &["hostname"]),
    ("max_size", &["hostname"]),
    ("checksum_err_count", &["hostname"]),
    ("dns_search_domain", &["hostname", "additional"]),
];

/// Labels of `cni_op_latency_seconds`, upstream's.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// The node this daemon serves.
    pub node_name: String,
    /// The request URI (`/api/v1/add`, `/api/v1/del`).
    pub method: String,
    /// The HTTP status answered to the shim.
    pub status_code: String,
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
    /// Kubernetes API requests (the client's layer records them).
    pub rest: RestClientMetrics,
    /// Transactions on the node's OVS database.
    pub ovs: OvsClientMetrics,
    op_latency: Family<OpLabels, Histogram>,
    wait_address: Family<NodeLabel, SecondsCounter>,
    wait_route: Family<NodeLabel, SecondsCounter>,
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
        let shared = kube_ovn_common::metrics::register(&mut registry);
        // Upstream's buckets: 1 ms … 512 ms.
        let op_latency = Family::<OpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 10))
        });
        let wait_address = Family::<NodeLabel, SecondsCounter>::default();
        let wait_route = Family::<NodeLabel, SecondsCounter>::default();
        let wait_ovn_installed = Family::<NodeLabel, SecondsCounter>::default();
        let wait_ovn_installed_hist =
            Family::<NodeLabel, Histogram>::new_with_constructor(latency_buckets);
        registry.register(
            "cni_op_latency_seconds",
            "The latency seconds for cni operations",
            op_latency.clone(),
        );
        registry.register(
            "cni_wait_address_seconds",
            "Latency that cni wait controller to assign an address",
            wait_address.clone(),
        );
        registry.register(
            "cni_wait_route_seconds",
            "Latency that cni wait controller to add routed annotation to pod",
            wait_route.clone(),
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
        registry.register_collector(Box::new(NodeChecks {
            hostname: node.to_string(),
        }));
        Arc::new(Metrics {
            registry,
            node: NodeLabel {
                node_name: node.to_string(),
            },
            rest: shared.rest,
            ovs: shared.ovs,
            op_latency,
            wait_address,
            wait_route,
            wait_ovn_installed,
            wait_ovn_installed_hist,
            ready: AtomicBool::new(false),
        })
    }

    /// Records one answered request to `uri`.
    pub fn observe_op(&self, uri: &str, status: StatusCode, elapsed: Duration) {
        let labels = OpLabels {
            node_name: self.node.node_name.clone(),
            method: uri.to_string(),
            status_code: status.as_u16().to_string(),
        };
        self.op_latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Records the time one ADD waited for the pod's address annotations.
    pub fn observe_wait_address(&self, elapsed: Duration) {
        self.wait_address
            .get_or_create(&self.node)
            .inc_by(elapsed.as_secs_f64());
    }

    /// Records the time one ADD waited for `routed=true` once the address was there.
    pub fn observe_wait_route(&self, elapsed: Duration) {
        self.wait_route
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

/// Upstream's node checks (see the module doc), read at scrape time.
#[derive(Debug)]
struct NodeChecks {
    hostname: String,
}

/// A sysctl gauge: name, help, file under `/proc/sys/`.
const SYSCTLS: [(&str, &str, &str); 5] = [
    (
        "tcp_tw_recycle",
        "value of system parameter /proc/sys/net/ipv4/tcp_tw_recycle, the recommended value is 0",
        "net/ipv4/tcp_tw_recycle",
    ),
    (
        "tcp_mtu_probing",
        "value of system parameter /proc/sys/net/ipv4/tcp_mtu_probing, the recommended value is 1",
        "net/ipv4/tcp_mtu_probing",
    ),
    (
        "nf_conntrack_tcp_be_liberal",
        "value of system parameter /proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal, the \
         recommended value is 1",
        "net/netfilter/nf_conntrack_tcp_be_liberal",
    ),
    (
        "bridge_nf_call_iptables",
        "value of system parameter /proc/sys/net/bridge/bridge-nf-call-iptables, the recommended \
         value is 1 for overlay, and 0 for underlay network",
        "net/bridge/bridge-nf-call-iptables",
    ),
    (
        "max_size",
        "value of system parameter /proc/sys/net/ipv6/route/max_size, recommend a large number \
         value, at least 16384",
        "net/ipv6/route/max_size",
    ),
];

/// The whitespace-separated fields of `/proc/sys/<path>`, when the kernel has it.
fn sysctl(path: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(Path::new("/proc/sys").join(path)).ok()?;
    Some(text.split_whitespace().map(str::to_string).collect())
}

/// UDP `InCsumErrors` from `/proc/net/snmp` (a header line of names, then one of values).
fn udp_checksum_errors(snmp: &str) -> Option<i64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let i = names.split_whitespace().position(|n| n == "InCsumErrors")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// The search domains of a resolv.conf (its last `search` line, as the resolver reads it),
/// without the root domain.
fn search_domains(resolv: &str) -> Vec<String> {
    let last = resolv
        .lines()
        .filter_map(|l| l.trim().strip_prefix("search"))
        .rfind(|rest| rest.starts_with(char::is_whitespace))
        .unwrap_or_default();
    last.split_whitespace()
        .filter(|d| *d != ".")
        .map(str::to_string)
        .collect()
}

impl Collector for NodeChecks {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let host = self.hostname.as_str();
        let info = |encoder: &mut DescriptorEncoder,
                    name: &str,
                    help: &str,
                    labels: &[(&str, &str)]|
         -> Result<(), std::fmt::Error> {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(1).encode(family.encode_family(&labels)?)
        };
        if let Some([start, end]) = sysctl("net/ipv4/ip_local_port_range").as_deref() {
            info(
                &mut encoder,
                "ip_local_port_range",
                "value of system parameter /proc/sys/net/ipv4/ip_local_port_range, which should \
                 not conflict with the nodeport range",
                &[("hostname", host), ("start", start), ("end", end)],
            )?;
        }
        if let Some([min, pressure, max]) = sysctl("net/ipv4/tcp_mem").as_deref() {
            info(
                &mut encoder,
                "tcp_mem",
                "value of system parameter /proc/sys/net/ipv4/tcp_mem, recommend a large number \
                 value",
                &[
                    ("hostname", host),
                    ("minimum", min),
                    ("pressure", pressure),
                    ("maximum", max),
                ],
            )?;
        }
        for (name, help, path) in SYSCTLS {
            let Some(fields) = sysctl(path) else {
                continue;
            };
            // Upstream reads an unparsable value as 0.
            let v: i64 = fields.first().and_then(|f| f.parse().ok()).unwrap_or(0);
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(v).encode(family.encode_family(&[("hostname", host)])?)?;
        }
        let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
        let mut family = encoder.encode_descriptor(
            "checksum_err_count",
            "Value of InCsumErrors for cmd `netstat -us`, checksum is error when value is \
             greater than 0",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(udp_checksum_errors(&snmp).unwrap_or(0))
            .encode(family.encode_family(&[("hostname", host)])?)?;
        if let Ok(resolv) = std::fs::read_to_string("/etc/resolv.conf") {
            let mut domains = search_domains(&resolv);
            if domains.is_empty() {
                domains.push("no additional search domain".into());
            }
            let mut family = encoder.encode_descriptor(
                "dns_search_domain",
                "search domain in /etc/resolv.conf",
                None,
                MetricType::Gauge,
            )?;
            for d in &domains {
                ConstGauge::new(1)
                    .encode(family.encode_family(&[("hostname", host), ("additional", d)])?)?;
            }
        }
        Ok(())
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
        m.observe_op("/api/v1/add", StatusCode::OK, Duration::from_millis(20));
        m.observe_op(
            "/api/v1/del",
            StatusCode::BAD_REQUEST,
            Duration::from_millis(1),
        );
        m.observe_wait_address(Duration::from_millis(5));
        m.observe_wait_route(Duration::from_millis(3));
        m.observe_wait_ovn_installed(Duration::from_millis(7));
        let text = m.render();
        for needle in [
            r#"cni_op_latency_seconds_count{node_name="n1",method="/api/v1/add",status_code="200"} 1"#,
            r#"cni_op_latency_seconds_count{node_name="n1",method="/api/v1/del",status_code="400"} 1"#,
            // Upstream's buckets end at 512 ms.
            r#"le="0.512""#,
            r#"cni_wait_address_seconds_total{node_name="n1"} 0.005"#,
            r#"cni_wait_route_seconds_total{node_name="n1"} 0.003"#,
            r#"cni_wait_ovn_installed_seconds_total{node_name="n1"} 0.007"#,
            "cni_wait_ovn_installed_latency_seconds_count",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
        assert!(!text
            .lines()
            .any(|l| l.starts_with("cni_op_latency_seconds_bucket") && l.contains("1.024")));
    }

    #[test]
    fn node_checks_parse_and_are_served() {
        let snmp = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors\n\
                    Udp: 647 0 0 652 0 0 3\n\
                    UdpLite: InDatagrams InCsumErrors\nUdpLite: 0 0\n";
        assert_eq!(udp_checksum_errors(snmp), Some(3));
        assert_eq!(udp_checksum_errors("Tcp: A\nTcp: 1\n"), None);
        let resolv = "nameserver 10.96.0.10\nsearch a.svc b.local\nsearch default.svc . cluster.local\nsearchx y\n";
        assert_eq!(search_domains(resolv), vec!["default.svc", "cluster.local"]);
        assert!(search_domains("nameserver 1.1.1.1\n").is_empty());
        let text = Metrics::new("n1").render();
        for needle in [
            r#"ip_local_port_range{hostname="n1",start=""#,
            r#"checksum_err_count{hostname="n1"} "#,
            r#"dns_search_domain{hostname="n1",additional=""#,
            r#"tcp_mtu_probing{hostname="n1"} "#,
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
