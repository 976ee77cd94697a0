//! The metrics both kube-ovn-controller and kube-ovn-daemon export under upstream's names, so
//! the Grafana dashboards upstream ships (`dist/monitoring/*-grafana.json`) keep working:
//!
//! - `rest_client_requests_total{code,method,host}` and
//!   `rest_client_request_latency_seconds{verb,url}`: every Kubernetes API request, recorded by
//!   a layer in the kube client's stack ([`kube_client`]), labelled as client-go labels them
//!   (`url` is client-go's URL template with namespace and name replaced, cut to its directory
//!   as upstream's adapter does);
//! - `ovs_client_request_latency_milliseconds{db,method,code}`: OVSDB transactions
//!   ([`OvsClientMetrics`]; the callers say which database and operation);
//! - `klog_lines_total{level}` and `klog_bytes_total{level}`: log lines and bytes written per
//!   severity (the log writer counts them, see [`crate::klog::stats`]);
//! - `process_cpu_seconds_total`, `process_resident_memory_bytes`,
//!   `process_virtual_memory_bytes`, `process_start_time_seconds`, `process_open_fds`,
//!   `process_max_fds`: read from `/proc/self` at scrape time, as Prometheus' Go process
//!   collector reads them.
//!
//! Not exported: `go_*` (there is no Go runtime; `go_goroutines` has no honest counterpart, a
//! tokio task is not a goroutine) and `process_network_*_bytes_total` (the dashboards do not
//! use them).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The upstream commit the names in [`UPSTREAM_SHARED`] and each binary's own `UPSTREAM` list
/// were read from (kubeovn/kube-ovn master).
pub const UPSTREAM_COMMIT: &str = "1533681d7a6b3dbdd7e8870fa70f0dc6aa49a82a";

/// The series both binaries serve as upstream's do (`pkg/metrics/client_go_adapter.go`,
/// `pkg/ovs/adapter.go`, `pkg/metrics/klog.go`, the process collector), with their label names;
/// sample names, so counters carry `_total` and histograms `_count`.
pub const UPSTREAM_SHARED: &[(&str, &[&str])] = &[
    ("rest_client_requests_total", &["code", "method", "host"]),
    (
        "rest_client_request_latency_seconds_count",
        &["verb", "url"],
    ),
    (
        "ovs_client_request_latency_milliseconds_count",
        &["db", "method", "code"],
    ),
    ("klog_lines_total", &["level"]),
    ("klog_bytes_total", &["level"]),
    ("process_cpu_seconds_total", &[]),
    ("process_resident_memory_bytes", &[]),
    ("process_virtual_memory_bytes", &[]),
    ("process_start_time_seconds", &[]),
    ("process_open_fds", &[]),
    ("process_max_fds", &[]),
];

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Labels of `rest_client_requests_total`, client-go's.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestResultLabels {
    /// HTTP status code, or `<error>` when no response came.
    pub code: String,
    /// HTTP method (`GET`, `PATCH`…).
    pub method: String,
    /// The API server's `host:port`.
    pub host: String,
}

/// Labels of `rest_client_request_latency_seconds`, upstream's.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLatencyLabels {
    /// HTTP method, as client-go's verb.
    pub verb: String,
    /// The directory of the request's URL template (see [`url_label`]).
    pub url: String,
}

/// The Kubernetes API client's metrics (see the module doc).
#[derive(Clone, Debug)]
pub struct RestClientMetrics {
    requests: Family<RequestResultLabels, Counter>,
    latency: Family<RequestLatencyLabels, Histogram>,
}

impl RestClientMetrics {
    /// Records one request: its method, path, the API server's `host`, its status (`None`
    /// when it failed without a response) and how long it took.
    pub fn observe(
        &self,
        method: &str,
        path: &str,
        host: &str,
        status: Option<u16>,
        elapsed: Duration,
    ) {
        let code = status.map_or_else(|| "<error>".to_string(), |s| s.to_string());
        self.requests
            .get_or_create(&RequestResultLabels {
                code,
                method: method.to_string(),
                host: host.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&RequestLatencyLabels {
                verb: method.to_string(),
                url: url_label(path),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The layer that records every request of a client talking to `host`.
    pub fn layer(&self, host: impl Into<String>) -> RestClientLayer {
        RestClientLayer {
            metrics: self.clone(),
            host: host.into().into(),
        }
    }
}

/// client-go's URL template of an API path (`Request.finalURLTemplate`: the namespace and the
/// object name replaced by `{namespace}` and `{name}`, anything outside `/api` and `/apis` by
/// `/{prefix}`), then its directory, as upstream's latency adapter labels it.
pub fn url_label(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    let mut seg: Vec<&str> = path.split('/').collect();
    if !path.starts_with('/') {
        seg.insert(0, "");
    }
    let template = if seg.len() <= 2 {
        path.to_string()
    } else {
        let index = match seg[1] {
            "api" => Some(3),
            "apis" => Some(4),
            _ => None,
        };
        match index {
            None => "/{prefix}".to_string(),
            Some(index) => {
                let n = seg.len().saturating_sub(index);
                let sub = |i: usize, seg: &[&str]| matches!(seg[i], "finalize" | "status");
                if n == 2 {
                    seg[index + 1] = "{name}";
                } else if n == 3 {
                    if sub(index + 2, &seg) {
                        seg[index + 1] = "{name}";
                    } else {
                        seg[index + 1] = "{namespace}";
                    }
                } else if n >= 4 {
                    seg[index + 1] = "{namespace}";
                    if !sub(index + 3, &seg) {
                        seg[index + 3] = "{name}";
                    }
                }
                clean(&seg.join("/"))
            }
        }
    };
    dir(&template)
}

/// Go's `path.Clean` for the absolute paths the API uses: no empty or `.` segments.
fn clean(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Go's `path.Dir`.
fn dir(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => {
            let d = clean(&path[..i]);
            if path.starts_with('/') {
                d
            } else {
                d.trim_start_matches('/').to_string()
            }
        }
        None => ".".to_string(),
    }
}

/// A tower layer recording [`RestClientMetrics`] (see [`RestClientMetrics::layer`]).
#[derive(Clone, Debug)]
pub struct RestClientLayer {
    metrics: RestClientMetrics,
    host: Arc<str>,
}

impl<S> tower_layer::Layer<S> for RestClientLayer {
    type Service = RestClientService<S>;

    fn layer(&self, inner: S) -> RestClientService<S> {
        RestClientService {
            inner,
            metrics: self.metrics.clone(),
            host: self.host.clone(),
        }
    }
}

/// The service [`RestClientLayer`] wraps around the client's stack.
#[derive(Clone, Debug)]
pub struct RestClientService<S> {
    inner: S,
    metrics: RestClientMetrics,
    host: Arc<str>,
}

type BoxedResponse<R, E> = Pin<Box<dyn Future<Output = Result<hyper::Response<R>, E>> + Send>>;

impl<S, B, R> tower_service::Service<hyper::Request<B>> for RestClientService<S>
where
    S: tower_service::Service<hyper::Request<B>, Response = hyper::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = hyper::Response<R>;
    type Error = S::Error;
    type Future = BoxedResponse<R, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: hyper::Request<B>) -> Self::Future {
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let (metrics, host) = (self.metrics.clone(), self.host.clone());
        let started = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            let status = r.as_ref().ok().map(|resp| resp.status().as_u16());
            metrics.observe(&method, &path, &host, status, started.elapsed());
            r
        })
    }
}

/// A kube client for `config` whose requests are recorded in `metrics`.
#[cfg(feature = "api")]
pub fn kube_client(
    config: kube::Config,
    metrics: &RestClientMetrics,
) -> Result<kube::Client, kube::Error> {
    let host = config
        .cluster_url
        .authority()
        .map_or_else(|| "none".to_string(), |a| a.to_string());
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&metrics.layer(host))
        .build())
}

/// Labels of `ovs_client_request_latency_milliseconds`, upstream's.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OvsRequestLabels {
    /// `ovn-nb`, `ovn-sb` or `ovsdb` (the local Open_vSwitch database).
    pub db: String,
    /// The operation (upstream: the ovn-nbctl-like method or the ovs-vsctl command).
    pub method: String,
    /// `0` on success, `1` on failure.
    pub code: String,
}

/// OVSDB request latencies (see the module doc).
#[derive(Clone, Debug)]
pub struct OvsClientMetrics {
    latency: Family<OvsRequestLabels, Histogram>,
}

impl OvsClientMetrics {
    /// Records one request to `db` doing `method` that took `elapsed` and succeeded or not.
    pub fn observe(&self, db: &str, method: &str, ok: bool, elapsed: Duration) {
        // Upstream truncates to whole milliseconds before observing.
        let ms = elapsed.as_millis() as f64;
        self.latency
            .get_or_create(&OvsRequestLabels {
                db: db.to_string(),
                method: method.to_string(),
                code: if ok { "0" } else { "1" }.to_string(),
            })
            .observe(ms);
    }
}

/// What [`register`] hands back for the binary to record into.
#[derive(Clone, Debug)]
pub struct Shared {
    /// The Kubernetes API client's requests.
    pub rest: RestClientMetrics,
    /// OVSDB requests.
    pub ovs: OvsClientMetrics,
}

/// Registers every metric of the module doc in `registry` (unprefixed, as upstream names them).
pub fn register(registry: &mut Registry) -> Shared {
    let requests = Family::<RequestResultLabels, Counter>::default();
    let latency = Family::<RequestLatencyLabels, Histogram>::new_with_constructor(|| {
        Histogram::new(exponential_buckets(0.001, 2.0, 10))
    });
    registry.register(
        "rest_client_requests",
        "Number of HTTP requests, partitioned by status code, method, and host.",
        requests.clone(),
    );
    registry.register(
        "rest_client_request_latency_seconds",
        "Request latency in seconds. Broken down by verb and URL.",
        latency.clone(),
    );
    let ovs = Family::<OvsRequestLabels, Histogram>::new_with_constructor(|| {
        Histogram::new(exponential_buckets(1.0, 2.0, 10))
    });
    registry.register(
        "ovs_client_request_latency_milliseconds",
        "OVSDB request latency in milliseconds, by database, method and result code.",
        ovs.clone(),
    );
    registry.register_collector(Box::new(LogStats));
    registry.register_collector(Box::new(ProcessStats));
    Shared {
        rest: RestClientMetrics { requests, latency },
        ovs: OvsClientMetrics { latency: ovs },
    }
}

/// `klog_lines_total` and `klog_bytes_total` from the log writer's counts.
#[derive(Debug)]
struct LogStats;

impl Collector for LogStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = crate::klog::stats();
        for (name, help, bytes) in [
            ("klog_lines_total", "Total number of klog messages.", false),
            ("klog_bytes_total", "Total size of klog messages.", true),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (level, lines, size) in stats {
                let v = if bytes { size } else { lines };
                ConstGauge::new(v as i64).encode(family.encode_family(&[("level", level)])?)?;
            }
        }
        Ok(())
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on every Linux ABI; Prometheus'
/// procfs assumes the same).
const USER_HZ: f64 = 100.0;

/// What the process collector reads from `/proc/self`.
#[derive(Debug, Default, PartialEq)]
struct Process {
    cpu_seconds: f64,
    start_time_seconds: f64,
    virtual_bytes: u64,
    resident_bytes: u64,
    open_fds: u64,
    max_fds: u64,
}

/// Parses `/proc/self/stat` (after the command name, which may hold spaces): user and system
/// time and the start time, in ticks.
fn parse_stat(stat: &str) -> Option<(u64, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14, 15 and 22 of proc(5); `f[0]` is field 3.
    Some((
        f.get(11)?.parse().ok()?,
        f.get(12)?.parse().ok()?,
        f.get(19)?.parse().ok()?,
    ))
}

/// A `kB` line of `/proc/self/status`, in bytes.
fn status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024)
}

/// The soft "Max open files" of `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    Some(soft.parse().unwrap_or(u64::MAX))
}

impl Process {
    fn read() -> Option<Process> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let (utime, stime, start) = parse_stat(&stat)?;
        let boot: f64 = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        Some(Process {
            cpu_seconds: (utime + stime) as f64 / USER_HZ,
            start_time_seconds: boot + start as f64 / USER_HZ,
            virtual_bytes: status_kb(&status, "VmSize:")?,
            resident_bytes: status_kb(&status, "VmRSS:")?,
            open_fds: std::fs::read_dir("/proc/self/fd").ok()?.count() as u64,
            max_fds: max_open_files(&limits)?,
        })
    }
}

/// Prometheus' process collector's metrics, read at scrape time.
#[derive(Debug)]
struct ProcessStats;

impl Collector for ProcessStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = Process::read() else {
            return Ok(());
        };
        let cpu = encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(p.cpu_seconds).encode(cpu)?;
        let gauges = [
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                p.start_time_seconds,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                p.virtual_bytes as f64,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                p.resident_bytes as f64,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                p.open_fds as f64,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                p.max_fds as f64,
            ),
        ];
        for (name, help, v) in gauges {
            let g = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(v).encode(g)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn url_labels_as_client_go_and_upstream() {
        for (path, want) in [
            (
                "/api/v1/namespaces/default/pods/p1",
                "/api/v1/namespaces/{namespace}/pods",
            ),
            (
                "/api/v1/namespaces/default/pods",
                "/api/v1/namespaces/{namespace}",
            ),
            ("/api/v1/pods", "/api/v1"),
            ("/api/v1/nodes/n1", "/api/v1/nodes"),
            ("/api/v1/nodes/n1/status", "/api/v1/nodes/{name}"),
            (
                "/apis/kubeovn.io/v1/subnets/s1/status",
                "/apis/kubeovn.io/v1/subnets/{name}",
            ),
            (
                "/apis/kubeovn.io/v1/subnets?watch=true",
                "/apis/kubeovn.io/v1",
            ),
            (
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-ovn-controller",
                "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
            ),
            (
                "/api/v1/namespaces/default/pods/p1/binding",
                "/api/v1/namespaces/{namespace}/pods/{name}",
            ),
            ("/version", "/"),
            ("/healthz/etcd", "/"),
        ] {
            assert_eq!(url_label(path), want, "{path}");
        }
    }

    #[test]
    fn process_files_parse() {
        let stat = "4242 (kube ovn) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 9 0 12345 1000 200";
        assert_eq!(parse_stat(stat), Some((250, 150, 12345)));
        assert_eq!(status_kb("VmRSS:\t  2048 kB\n", "VmRSS:"), Some(2 << 20));
        let limits = "Limit  Soft Limit  Hard Limit  Units\nMax open files  1024  4096  files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        let p = Process::read().expect("/proc/self readable");
        assert!(p.resident_bytes > 0 && p.open_fds > 0 && p.start_time_seconds > 1e9);
    }

    #[test]
    fn names_and_labels_are_upstreams() {
        let mut registry = Registry::default();
        let m = register(&mut registry);
        m.rest.observe(
            "GET",
            "/api/v1/nodes/n1",
            "10.0.0.1:6443",
            Some(200),
            Duration::from_millis(3),
        );
        m.rest.observe(
            "PATCH",
            "/api/v1/nodes/n1",
            "10.0.0.1:6443",
            None,
            Duration::ZERO,
        );
        m.ovs
            .observe("ovn-nb", "transact", true, Duration::from_micros(2500));
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for needle in [
            r#"rest_client_requests_total{code="200",method="GET",host="10.0.0.1:6443"} 1"#,
            r#"rest_client_requests_total{code="<error>",method="PATCH",host="10.0.0.1:6443"} 1"#,
            r#"rest_client_request_latency_seconds_count{verb="GET",url="/api/v1/nodes"} 1"#,
            r#"ovs_client_request_latency_milliseconds_sum{db="ovn-nb",method="transact",code="0"} 2.0"#,
            "# TYPE klog_lines_total gauge",
            r#"klog_lines_total{level="ERROR"}"#,
            r#"klog_bytes_total{level="INFO"}"#,
            "# TYPE process_cpu_seconds counter",
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_start_time_seconds ",
            "process_open_fds ",
            "process_max_fds ",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
    }
}
