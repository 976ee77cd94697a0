//! `kube-ovn-svc-bench`: the real `kube-ovn-controller` binary turning Services and
//! EndpointSlices into load-balancer VIPs at scale.
//!
//! Brings up a sandbox (OVN central, the Kubernetes API fixture, no kubelets) and creates
//! `--services` ClusterIP Services (explicit addresses in 10.96.0.0/12, one port each; every
//! `--udp-every`th is UDP, every `--affinity-every`th has ClientIP affinity) with one
//! EndpointSlice each holding `--endpoints` ready endpoints in the default subnet — all before
//! the controller starts. An independent replica of the whole NB watches the load balancers.
//!
//! * cold: the controller starts on an empty NB; the time until every VIP is on its load
//!   balancer with exactly the backends the slices give (and no other VIP exists); NB
//!   transactions (the controller's counter) and NB change batches (the replica's count);
//!   peak RSS (`VmHWM`); CPU seconds per process; start-up milestones from the log.
//! * churn: `--churn` endpoint changes at `--churn-rate` per second, each replacing one
//!   endpoint's address of a random Service's slice or flipping one endpoint's `ready`; for
//!   each, the time from the API's acknowledgement of the write to the VIP's new backend list
//!   in the replica (p50/p90/p99/max).
//! * warm: the controller is stopped and started again on the converged world; the time until
//!   it has reconciled every Service, and the NB writes meanwhile (must be none).
//! * peer: the same VIPs written into a fresh standalone NB (the six load balancers created
//!   first) with one `ovn-nbctl` transaction — the floor the cold time is set against. Two
//!   single-invocation forms are timed (`set … vips:K=V…` and `add … vips K=V…`) and the
//!   faster is the floor; one JSON-RPC transaction from our own client is shown beside them.
//!
//!     cargo run --release -p kube-ovn-bench --bin kube-ovn-svc-bench -- --services 10000 --endpoints 5
//!
//! Without `--controller`, `kube-ovn-controller` is built in release mode first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube_ovn_bench::{
    argument_budget, bounded, controller_binary, cpu_sample, fine_secs, from_json, lock, megabytes,
    milestones, nb_quiet, nbctl, northd_caught_up, quantile, say, secs, settle, table, verdict,
    Controller, CpuUse, Metrics, NbServer, Result, Rng, NB_DB, QUIET,
};
use kube_ovn_common::crd;
use kube_ovn_sandbox::{Sandbox, SandboxConfig};
use ovsdb::{
    Atom, ChangeBatch, Condition, Datum, Mutation, Operation, Remote, Replica, ReplicaConfig, Row,
    Transaction,
};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

/// Namespace of every Service and slice.
const NAMESPACE: &str = "svc-bench";
/// The Services' port and the endpoints' target port.
const PORT: i32 = 80;
const TARGET_PORT: i32 = 8080;
/// The port's name in the Service and the slice (they are matched by name).
const PORT_NAME: &str = "web";
/// The default VPC's six load balancers (the controller's defaults).
const LBS: [(&str, &str, bool); 6] = [
    ("cluster-tcp-loadbalancer", "tcp", false),
    ("cluster-udp-loadbalancer", "udp", false),
    ("cluster-sctp-loadbalancer", "sctp", false),
    ("cluster-tcp-session-loadbalancer", "tcp", true),
    ("cluster-udp-session-loadbalancer", "udp", true),
    ("cluster-sctp-session-loadbalancer", "sctp", true),
];
/// How long one churn change may take to show in the NB before it counts as lost.
const CHANGE_LIMIT: Duration = Duration::from_secs(60);
/// Churn changes in flight at most (a slow controller makes the schedule slip, not the queue
/// grow).
const CHURN_IN_FLIGHT: usize = 256;
/// Addresses of 10.16.0.0/16 the endpoints may take (10.16.0.2 up to 10.16.255.254).
const ENDPOINT_ADDRESSES: usize = 65_533;
/// Addresses of 10.96.0.0/12 above 10.96.0.16 the Services may take.
const SERVICE_ADDRESSES: usize = (1 << 20) - 32;

/// Flags.
#[derive(Debug, Parser)]
#[command(
    name = "kube-ovn-svc-bench",
    about = "kube-ovn-controller's Services at scale: cold VIP convergence, endpoint churn latency, warm restart, NB writes, against one ovn-nbctl transaction"
)]
struct Args {
    /// ClusterIP Services to create.
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Ready endpoints in each Service's EndpointSlice.
    #[arg(long, default_value_t = 5)]
    endpoints: usize,
    /// Every this many Services is UDP (0: none).
    #[arg(long, default_value_t = 50)]
    udp_every: usize,
    /// Every this many Services has ClientIP affinity (0: none).
    #[arg(long, default_value_t = 20)]
    affinity_every: usize,
    /// Endpoint changes in the churn phase.
    #[arg(long, default_value_t = 1000)]
    churn: usize,
    /// Endpoint changes per second in the churn phase.
    #[arg(long, default_value_t = 100.0)]
    churn_rate: f64,
    /// Seed of the churn's choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The kube-ovn-controller binary; by default it is built in release mode and taken from
    /// the workspace's target directory.
    #[arg(long)]
    controller: Option<PathBuf>,
    /// Concurrent API requests while creating the objects.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds a phase may take before the run is declared failed.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Keep the controller logs even when the run succeeds (they are kept on failure).
    #[arg(long)]
    keep_logs: bool,
}

fn main() -> std::process::ExitCode {
    kube_ovn_bench::run_main("kube-ovn-svc-bench", bench(Args::parse()))
}

fn validate(args: &Args) -> Result<()> {
    if args.services == 0 || args.endpoints == 0 {
        return Err("--services and --endpoints must be at least 1".into());
    }
    if args.services > SERVICE_ADDRESSES {
        return Err(format!(
            "--services {} is more than 10.96.0.0/12 holds",
            args.services
        )
        .into());
    }
    let addresses = args.services.saturating_mul(args.endpoints) + args.churn;
    if addresses > ENDPOINT_ADDRESSES {
        return Err(format!(
            "--services × --endpoints + --churn = {addresses} endpoint addresses; 10.16.0.0/16 holds {ENDPOINT_ADDRESSES}"
        )
        .into());
    }
    if args.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    if !(args.churn_rate > 0.0 && args.churn_rate.is_finite()) {
        return Err("--churn-rate must be a positive number".into());
    }
    Ok(())
}

async fn bench(args: Args) -> Result<()> {
    validate(&args)?;
    let binary = controller_binary(args.controller.as_deref())?;
    let logs = std::env::temp_dir().join(format!("kube-ovn-svc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;
    say(&format!(
        "controller {}; logs in {}",
        binary.display(),
        logs.display()
    ));
    let world = World::new(&args);
    let started = Instant::now();
    let mut cfg = SandboxConfig::isolated(1);
    cfg.kubelets = false;
    let sandbox = Sandbox::up(cfg).await?;
    let sandbox_secs = started.elapsed();
    say(&format!(
        "sandbox up in {:.1} s",
        sandbox_secs.as_secs_f64()
    ));
    let outcome = tokio::select! {
        r = measure(&sandbox, &args, &world, &binary, &logs) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
    };
    match sandbox.down().await {
        Err(e) => eprintln!("kube-ovn-svc-bench: teardown: {e}"),
        Ok(r) => say(&format!(
            "sandbox down ({} processes, {} namespaces removed)",
            r.processes, r.namespaces
        )),
    }
    let mut report = match outcome {
        Ok(r) => r,
        Err(e) => {
            eprintln!("controller logs kept in {}", logs.display());
            return Err(e);
        }
    };
    // The peer runs on the machine the sandbox has left, on the world as the cold run had it.
    say("peer: the same VIPs into a fresh standalone NB…");
    report.peer = peer::run(&world.initial_vips(), &logs).await?;
    report.print(&args, &world, sandbox_secs);
    let failed = report.failures();
    if args.keep_logs || !failed.is_empty() {
        say(&format!("controller logs kept in {}", logs.display()));
    } else {
        let _ = std::fs::remove_dir_all(&logs);
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; ").into())
    }
}

/// One Service as the benchmark made it, and its endpoints as last written.
#[derive(Clone)]
struct Svc {
    name: String,
    cluster_ip: String,
    udp: bool,
    session: bool,
    /// (address, ready), in slice order.
    endpoints: Vec<(String, bool)>,
}

impl Svc {
    /// The load balancer the controller must put the VIP on.
    fn lb(&self) -> &'static str {
        LBS.iter()
            .find(|(_, proto, session)| {
                *proto == if self.udp { "udp" } else { "tcp" } && *session == self.session
            })
            .map(|(name, _, _)| *name)
            .unwrap_or(LBS[0].0)
    }

    fn vip(&self) -> String {
        format!("{}:{PORT}", self.cluster_ip)
    }

    /// The VIP's value: the ready endpoints as `ip:targetPort`, sorted as strings, joined by
    /// commas (what the Service's VIP must read).
    fn backends(&self) -> String {
        let mut b: Vec<String> = self
            .endpoints
            .iter()
            .filter(|(_, ready)| *ready)
            .map(|(ip, _)| format!("{ip}:{TARGET_PORT}"))
            .collect();
        b.sort();
        b.join(",")
    }

    fn protocol(&self) -> &'static str {
        if self.udp {
            "UDP"
        } else {
            "TCP"
        }
    }

    fn service(&self) -> Service {
        let mut spec = json!({
            "type": "ClusterIP",
            "clusterIP": self.cluster_ip,
            "clusterIPs": [self.cluster_ip],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "selector": {"app": self.name},
            "ports": [{"name": PORT_NAME, "port": PORT, "targetPort": TARGET_PORT,
                       "protocol": self.protocol()}],
            "sessionAffinity": if self.session { "ClientIP" } else { "None" },
        });
        if self.session {
            spec["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 10800}});
        }
        from_json(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": self.name, "namespace": NAMESPACE},
            "spec": spec,
        }))
    }

    /// The Service's one slice, as the EndpointSlice controller would write it.
    fn slice(&self) -> EndpointSlice {
        let endpoints: Vec<serde_json::Value> = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(j, (ip, ready))| {
                json!({
                    "addresses": [ip],
                    "conditions": {"ready": ready, "serving": ready, "terminating": false},
                    "targetRef": {"kind": "Pod", "namespace": NAMESPACE,
                                  "name": format!("{}-{j}", self.name)},
                })
            })
            .collect();
        from_json(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{}-slice", self.name),
                "namespace": NAMESPACE,
                "labels": {
                    "kubernetes.io/service-name": self.name,
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                },
            },
            "addressType": "IPv4",
            "ports": [{"name": PORT_NAME, "port": TARGET_PORT, "protocol": self.protocol()}],
            "endpoints": endpoints,
        }))
    }
}

/// `10.16.0.2` + `k`: the k-th endpoint address of the default subnet.
fn endpoint_ip(k: usize) -> String {
    let base = u32::from(Ipv4Addr::new(10, 16, 0, 2));
    Ipv4Addr::from(base + k as u32).to_string()
}

/// `10.96.0.16` + `i`: the i-th Service's ClusterIP.
fn service_ip(i: usize) -> String {
    let base = u32::from(Ipv4Addr::new(10, 96, 0, 16));
    Ipv4Addr::from(base + i as u32).to_string()
}

/// Every Service and its endpoints as last written, and the next free endpoint address.
struct World {
    services: Mutex<Vec<Svc>>,
    initial: Vec<Svc>,
    next_ip: AtomicUsize,
    /// VIPs of the Services every cluster has on its own (the `kubernetes` Service), read from
    /// the API before the controller starts.
    cluster: Mutex<BTreeMap<&'static str, BTreeMap<String, String>>>,
}

impl World {
    fn new(args: &Args) -> World {
        let every = |n: usize, i: usize, at: usize| n > 0 && i % n == at % n;
        let services: Vec<Svc> = (0..args.services)
            .map(|i| Svc {
                name: format!("svc-{i}"),
                cluster_ip: service_ip(i),
                udp: every(args.udp_every, i, 1),
                session: every(args.affinity_every, i, 3),
                endpoints: (0..args.endpoints)
                    .map(|j| (endpoint_ip(i * args.endpoints + j), true))
                    .collect(),
            })
            .collect();
        World {
            initial: services.clone(),
            services: Mutex::new(services),
            next_ip: AtomicUsize::new(args.services * args.endpoints),
            cluster: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Svc>> {
        self.services.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// load balancer → VIP → backends, as the NB must read.
    fn vips_of(services: &[Svc]) -> BTreeMap<&'static str, BTreeMap<String, String>> {
        let mut out: BTreeMap<&'static str, BTreeMap<String, String>> = BTreeMap::new();
        for s in services {
            out.entry(s.lb()).or_default().insert(s.vip(), s.backends());
        }
        out
    }

    fn current_vips(&self) -> BTreeMap<&'static str, BTreeMap<String, String>> {
        self.with_cluster(Self::vips_of(&self.lock()))
    }

    fn initial_vips(&self) -> BTreeMap<&'static str, BTreeMap<String, String>> {
        self.with_cluster(Self::vips_of(&self.initial))
    }

    fn with_cluster(
        &self,
        mut vips: BTreeMap<&'static str, BTreeMap<String, String>>,
    ) -> BTreeMap<&'static str, BTreeMap<String, String>> {
        let cluster = self.cluster.lock().unwrap_or_else(|p| p.into_inner());
        for (lb, m) in cluster.iter() {
            vips.entry(lb)
                .or_default()
                .extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        vips
    }

    /// Reads the `kubernetes` Service (the API fixture's, as kube-apiserver's) and its
    /// EndpointSlice: its VIP is on the TCP load balancer too.
    async fn learn_cluster_services(&self, client: &kube::Client) -> Result<()> {
        use k8s_openapi::api::core::v1::Service;
        use k8s_openapi::api::discovery::v1::EndpointSlice;
        let svc: Service = Api::namespaced(client.clone(), "default")
            .get("kubernetes")
            .await?;
        let slice: EndpointSlice = Api::namespaced(client.clone(), "default")
            .get("kubernetes")
            .await?;
        let ip = svc.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
        let port = slice
            .ports
            .iter()
            .flatten()
            .find_map(|p| p.port)
            .unwrap_or(6443);
        let backends: Vec<String> = slice
            .endpoints
            .iter()
            .flat_map(|e| e.addresses.iter())
            .map(|a| format!("{a}:{port}"))
            .collect();
        self.cluster
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry("cluster-tcp-loadbalancer")
            .or_default()
            .insert(format!("{ip}:443"), backends.join(","));
        Ok(())
    }

    fn counts(&self) -> (usize, usize, usize) {
        let udp = self.initial.iter().filter(|s| s.udp).count();
        let session = self.initial.iter().filter(|s| s.session).count();
        (self.initial.len() - udp, udp, session)
    }
}

/// What creating the objects took.
#[derive(Default)]
struct Setup {
    crds: Duration,
    services: Duration,
    slices: Duration,
}

async fn create_world(client: &kube::Client, args: &Args, world: &World) -> Result<Setup> {
    let t = Instant::now();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for d in crd::all() {
        crds.create(&PostParams::default(), &d).await?;
    }
    let ns: Namespace = from_json(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}
    }));
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let crds_took = t.elapsed();

    let services = world.lock().clone();
    let t = Instant::now();
    let svc_api: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    bounded(services.len(), args.concurrency, |i| {
        let (api, svc) = (svc_api.clone(), services[i].service());
        async move { api.create(&PostParams::default(), &svc).await.map(drop) }
    })
    .await?;
    let services_took = t.elapsed();

    let t = Instant::now();
    let slice_api: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    bounded(services.len(), args.concurrency, |i| {
        let (api, slice) = (slice_api.clone(), services[i].slice());
        async move { api.create(&PostParams::default(), &slice).await.map(drop) }
    })
    .await?;
    Ok(Setup {
        crds: crds_took,
        services: services_took,
        slices: t.elapsed(),
    })
}

/// The `vips` map of each of the six load balancers in the replica.
fn nb_vips(replica: &Replica) -> BTreeMap<&'static str, BTreeMap<String, String>> {
    let cache = replica.cache();
    let mut out = BTreeMap::new();
    let Some(t) = cache.table("Load_Balancer") else {
        return out;
    };
    for (name, _, _) in LBS {
        let mut vips = BTreeMap::new();
        for (_, row) in t.by_name(name) {
            if let Some(m) = row.get("vips").and_then(Datum::as_map) {
                for (k, v) in m.iter() {
                    if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                        vips.insert(k.to_string(), v.to_string());
                    }
                }
            }
        }
        out.insert(name, vips);
    }
    out
}

/// How far the replica is from `want`: (VIPs with exactly their backends, VIPs in the NB in
/// all). Read under the cache lock without copying the maps.
fn convergence(
    replica: &Replica,
    want: &BTreeMap<&'static str, BTreeMap<String, String>>,
) -> (usize, usize) {
    let cache = replica.cache();
    let Some(t) = cache.table("Load_Balancer") else {
        return (0, 0);
    };
    let (mut right, mut total) = (0, 0);
    for (name, _, _) in LBS {
        let empty = BTreeMap::new();
        let want = want.get(name).unwrap_or(&empty);
        for (_, row) in t.by_name(name) {
            let Some(m) = row.get("vips").and_then(Datum::as_map) else {
                continue;
            };
            total += m.len();
            right += want
                .iter()
                .filter(|(vip, value)| {
                    m.get_str(vip).and_then(Atom::as_str) == Some(value.as_str())
                })
                .count();
        }
    }
    (right, total)
}

/// The first differences between the NB and `want`, for an error message.
fn differences(
    have: &BTreeMap<&'static str, BTreeMap<String, String>>,
    want: &BTreeMap<&'static str, BTreeMap<String, String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (lb, _, _) in LBS {
        let empty = BTreeMap::new();
        let (h, w) = (
            have.get(lb).unwrap_or(&empty),
            want.get(lb).unwrap_or(&empty),
        );
        for (vip, value) in w {
            match h.get(vip) {
                None => out.push(format!("{lb}: {vip} missing")),
                Some(v) if v != value => out.push(format!("{lb}: {vip} = {v}, want {value}")),
                _ => {}
            }
        }
        for vip in h.keys().filter(|v| !w.contains_key(*v)) {
            out.push(format!("{lb}: {vip} not wanted"));
        }
    }
    out
}

/// NB change batches seen by the replica since a point: all of them, those touching
/// Load_Balancer, and the table.column counts of what changed.
#[derive(Default, Clone)]
struct BatchCount {
    batches: usize,
    lb_batches: usize,
    /// Batches dropped by a lagging receiver (counted in `batches`, tables unknown).
    lagged: usize,
    columns: BTreeMap<String, usize>,
    /// When the last batch arrived.
    last: Option<Instant>,
}

impl BatchCount {
    fn add(&mut self, b: &ChangeBatch, at: Instant) {
        self.batches += 1;
        self.last = Some(at);
        if b.changes.iter().any(|c| c.table == "Load_Balancer") {
            self.lb_batches += 1;
        }
        for c in &b.changes {
            let what: Vec<String> = match (&c.old, &c.new) {
                (Some(o), Some(n)) => n
                    .iter()
                    .filter(|(k, v)| o.get(*k) != Some(*v))
                    .map(|(k, _)| k.to_string())
                    .collect(),
                (None, _) => vec!["(insert)".into()],
                (_, None) => vec!["(delete)".into()],
            };
            for w in what {
                *self.columns.entry(format!("{}.{w}", c.table)).or_insert(0) += 1;
            }
        }
    }

    fn text(&self) -> String {
        format!(
            "{} ({} on Load_Balancer{})",
            self.batches,
            self.lb_batches,
            if self.lagged > 0 {
                format!(", {} missed by a lagging reader", self.lagged)
            } else {
                String::new()
            }
        )
    }
}

/// One churn change waiting to show in the NB.
struct Expect {
    lb: &'static str,
    vip: String,
    value: String,
    acked: Option<Instant>,
    seen: Option<Instant>,
    service: usize,
}

/// The NB as the replica delivers it, consumed by one task: batches counted for the current
/// phase, churn expectations matched against each Load_Balancer change.
struct Observer {
    count: Mutex<BatchCount>,
    /// Change id → expectation.
    pending: Mutex<HashMap<usize, Expect>>,
    /// Finished changes: (latency from the API's acknowledgement, seen before it).
    latencies: Mutex<Vec<(Duration, bool)>>,
    /// Services with a change in flight (one at a time each, so no change hides another).
    busy: Mutex<HashSet<usize>>,
    /// Set when a Load_Balancer batch arrives (the cold phase's wake-up).
    lb_changed: tokio::sync::Notify,
    stopped: AtomicBool,
}

impl Observer {
    fn start(replica: &Replica) -> Arc<Observer> {
        let me = Arc::new(Observer {
            count: Mutex::default(),
            pending: Mutex::default(),
            latencies: Mutex::default(),
            busy: Mutex::default(),
            lb_changed: tokio::sync::Notify::new(),
            stopped: AtomicBool::new(false),
        });
        let mut rx = replica.subscribe();
        let (state, replica) = (me.clone(), replica.clone());
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(b) => {
                        let now = Instant::now();
                        lock(&state.count).add(&b, now);
                        let lb_rows: Vec<&Arc<Row>> = b
                            .changes
                            .iter()
                            .filter(|c| c.table == "Load_Balancer")
                            .filter_map(|c| c.new.as_ref())
                            .collect();
                        if !lb_rows.is_empty() {
                            state.match_rows(&lb_rows, now);
                            state.lb_changed.notify_waiters();
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        {
                            let mut c = lock(&state.count);
                            c.batches += n as usize;
                            c.lagged += n as usize;
                            c.last = Some(Instant::now());
                        }
                        state.match_cache(&replica);
                        state.lb_changed.notify_waiters();
                    }
                    Err(RecvError::Closed) => {
                        state.stopped.store(true, Ordering::SeqCst);
                        state.lb_changed.notify_waiters();
                        return;
                    }
                }
            }
        });
        me
    }

    /// Starts a new count and returns the previous one.
    fn take_count(&self) -> BatchCount {
        std::mem::take(&mut *lock(&self.count))
    }

    fn match_rows(&self, rows: &[&Arc<Row>], now: Instant) {
        let mut pending = lock(&self.pending);
        if pending.is_empty() {
            return;
        }
        let mut done = Vec::new();
        for row in rows {
            let Some(name) = row
                .get("name")
                .and_then(Datum::as_atom)
                .and_then(Atom::as_str)
            else {
                continue;
            };
            let Some(vips) = row.get("vips").and_then(Datum::as_map) else {
                continue;
            };
            for (id, e) in pending.iter_mut() {
                if e.seen.is_none()
                    && e.lb == name
                    && vips.get_str(&e.vip).and_then(Atom::as_str) == Some(e.value.as_str())
                {
                    e.seen = Some(now);
                    if e.acked.is_some() {
                        done.push(*id);
                    }
                }
            }
        }
        for id in done {
            if let Some(e) = pending.remove(&id) {
                self.finish(e);
            }
        }
    }

    /// After a lag the batches in between are gone: pending changes are checked against the
    /// replica as it is now (their times are then upper bounds).
    fn match_cache(&self, replica: &Replica) {
        let cache = replica.cache();
        let Some(t) = cache.table("Load_Balancer") else {
            return;
        };
        let rows: Vec<&Arc<Row>> = t.iter().map(|(_, r)| r).collect();
        self.match_rows(&rows, Instant::now());
    }

    fn finish(&self, e: Expect) {
        let (Some(acked), Some(seen)) = (e.acked, e.seen) else {
            return;
        };
        lock(&self.latencies).push((seen.saturating_duration_since(acked), seen < acked));
        lock(&self.busy).remove(&e.service);
    }

    fn acked(&self, id: usize, at: Instant) {
        let mut pending = lock(&self.pending);
        let Some(e) = pending.get_mut(&id) else {
            return;
        };
        e.acked = Some(at);
        if e.seen.is_some() {
            if let Some(e) = pending.remove(&id) {
                self.finish(e);
            }
        }
    }

    /// A change whose write failed: it will never show.
    fn abandon(&self, id: usize) {
        if let Some(e) = lock(&self.pending).remove(&id) {
            lock(&self.busy).remove(&e.service);
        }
    }
}

/// The cold phase's figures.
#[derive(Default)]
struct Cold {
    /// Every VIP right and nothing else on the load balancers.
    done: Option<Duration>,
    first_vip: Option<Duration>,
    ready: Option<Duration>,
    /// The last NB change the replica saw before the controller settled.
    last_nb_change: Option<Duration>,
    /// When the controller was seen settled: its NB counter answered unchanged for `QUIET`.
    settled: Option<Duration>,
    /// NB transactions and operations (the controller's counters) once settled.
    transactions: f64,
    operations: f64,
    /// NB change batches until `done`, and until settled.
    batches: BatchCount,
    batches_settled: BatchCount,
    peak_rss: Option<u64>,
    cpu: CpuUse,
    /// CPU from `done` until settled.
    cpu_after: CpuUse,
    /// (reconciles, errors, mean latency) of the service kind after settling.
    reconciles: (f64, f64, Option<Duration>),
    milestones: Vec<(String, f64)>,
    /// /metrics scrapes unanswered within 5 s while settling, and the slowest.
    scrapes: (usize, Duration),
}

/// The churn phase's figures.
#[derive(Default)]
struct Churn {
    /// Latencies from the write's acknowledgement to the VIP in the NB, sorted.
    latencies: Vec<Duration>,
    /// Changes seen in the NB before the API's answer reached the benchmark.
    before_ack: usize,
    /// Changes whose write failed or that never showed within `CHANGE_LIMIT`.
    lost: usize,
    /// Wall time of the churn, from the first write to the last change seen.
    took: Duration,
    transactions: f64,
    batches: BatchCount,
    peak_rss: Option<u64>,
    cpu: CpuUse,
    /// The NB matched the world exactly after the churn.
    exact: bool,
}

impl Churn {
    fn quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.latencies, q)
    }
}

/// The warm phase's figures.
#[derive(Default)]
struct Warm {
    done: Option<Duration>,
    ready: Option<Duration>,
    transactions: f64,
    batches: BatchCount,
    peak_rss: Option<u64>,
    cpu: CpuUse,
    reconciles: (f64, f64, Option<Duration>),
}

/// Everything one run measured.
#[derive(Default)]
struct Report {
    setup: Setup,
    cold: Cold,
    churn: Churn,
    warm: Warm,
    peer: peer::Peer,
}

fn service_reconciles(m: &Metrics) -> (f64, f64, Option<Duration>) {
    (
        m.reconciles("service"),
        m.errors("service"),
        m.mean_latency("service"),
    )
}

async fn measure(
    sandbox: &Sandbox,
    args: &Args,
    world: &World,
    binary: &Path,
    logs: &Path,
) -> Result<Report> {
    let client = sandbox.client();
    let st = sandbox.state();
    let limit = Duration::from_secs(args.timeout);
    let mut report = Report::default();

    let (tcp, udp, session) = world.counts();
    say(&format!(
        "creating {} Services ({tcp} TCP, {udp} UDP; {session} with ClientIP affinity) and their EndpointSlices ({} endpoints each)…",
        args.services, args.endpoints
    ));
    report.setup = create_world(&client, args, world).await?;
    world.learn_cluster_services(&client).await?;
    say(&format!(
        "created: Services in {:.1} s ({:.0}/s), slices in {:.1} s ({:.0}/s)",
        report.setup.services.as_secs_f64(),
        args.services as f64 / report.setup.services.as_secs_f64().max(1e-9),
        report.setup.slices.as_secs_f64(),
        args.services as f64 / report.setup.slices.as_secs_f64().max(1e-9),
    ));
    let replica = Replica::start(
        ReplicaConfig::new(Remote::parse_list(&st.central.nb)?, NB_DB),
        limit,
    )
    .await?;
    let observer = Observer::start(&replica);

    // Cold.
    let want = world.current_vips();
    let n_vips: usize = want.values().map(BTreeMap::len).sum();
    say("cold start…");
    let cold = &mut report.cold;
    observer.take_count();
    let started_wall = SystemTime::now();
    let mut ctl = Controller::start(binary, st, logs.join("controller-cold.log"))?;
    let cpu_start = cpu_sample(&ctl, st);
    let mut last_report = Instant::now();
    let mut last_check = Instant::now() - Duration::from_secs(1);
    loop {
        if let Some(status) = ctl.exited() {
            return Err(format!("the controller exited ({status}) during the cold start").into());
        }
        if cold.ready.is_none() && ctl.ready().await {
            cold.ready = Some(ctl.started.elapsed());
        }
        let mut t = ctl.started.elapsed();
        if last_check.elapsed() >= Duration::from_millis(20) {
            last_check = Instant::now();
            let (right, total) = convergence(&replica, &want);
            // Known at the end of the check (the NB state read is at most that old).
            t = ctl.started.elapsed();
            if cold.first_vip.is_none() && total > 0 {
                cold.first_vip = Some(t);
            }
            if right == n_vips && total == n_vips {
                cold.done = Some(t);
                cold.cpu = cpu_start.until(&cpu_sample(&ctl, st));
                cold.cpu_after = cpu_sample(&ctl, st);
                cold.batches = lock(&observer.count).clone();
                break;
            }
            if last_report.elapsed() >= Duration::from_secs(5) {
                last_report = Instant::now();
                let m = ctl.metrics().await;
                // The stragglers by name, when only a few are left.
                let missing = if n_vips - right.min(n_vips) <= 5 {
                    let diff = differences(&nb_vips(&replica), &want);
                    format!("; wrong: {diff:?}")
                } else {
                    String::new()
                };
                say(&format!(
                    "  {:>6.1} s  VIPs right {right}/{n_vips} (NB holds {total}); service reconciles {}; NB txns {}{missing}",
                    t.as_secs_f64(),
                    m.as_ref().map_or("unanswered".into(), |m| format!("{:.0}", m.reconciles("service"))),
                    m.as_ref().map_or("unanswered".into(), |m| format!("{:.0}", m.transactions())),
                ));
            }
        }
        if t > limit {
            let have = nb_vips(&replica);
            let diff = differences(&have, &want);
            return Err(format!(
                "cold start: not converged after {t:?}; {} differences, first: {:?}",
                diff.len(),
                &diff[..diff.len().min(5)]
            )
            .into());
        }
        if observer.stopped.load(Ordering::SeqCst) {
            return Err("the NB replica stopped".into());
        }
        let _ =
            tokio::time::timeout(Duration::from_millis(20), observer.lb_changed.notified()).await;
    }
    say(&format!(
        "cold: every VIP right after {:.2} s; waiting for the NB writes to stop…",
        cold.done.unwrap_or_default().as_secs_f64()
    ));
    let m = settle(&mut ctl, limit).await?;
    cold.settled = Some(ctl.started.elapsed());
    cold.cpu_after = cold.cpu_after.until(&cpu_sample(&ctl, st));
    cold.transactions = m.metrics.transactions();
    cold.operations = m.metrics.operations();
    cold.batches_settled = lock(&observer.count).clone();
    cold.last_nb_change = cold
        .batches_settled
        .last
        .map(|l| l.saturating_duration_since(ctl.started));
    cold.reconciles = service_reconciles(&m.metrics);
    cold.scrapes = (m.unanswered, m.slowest);
    cold.peak_rss = ctl.peak_rss();
    cold.milestones = milestones(&logs.join("controller-cold.log"), started_wall);

    // Churn, on the running controller.
    say(&format!(
        "churn: {} endpoint changes at {}/s…",
        args.churn, args.churn_rate
    ));
    report.churn = churn(
        &client, args, world, &observer, &replica, &mut ctl, st, limit,
    )
    .await?;
    ctl.stop().await;

    // Warm: the same world, converged; the NB must not change.
    northd_caught_up(&st.central.nb, limit).await?;
    nb_quiet(&replica, limit).await?;
    let want = world.current_vips();
    let have = nb_vips(&replica);
    let diff = differences(&have, &want);
    if !diff.is_empty() {
        return Err(format!(
            "before the warm restart the NB differs from the world in {} VIPs, first: {:?}",
            diff.len(),
            &diff[..diff.len().min(5)]
        )
        .into());
    }
    say("warm restart…");
    let warm = &mut report.warm;
    observer.take_count();
    let mut ctl = Controller::start(binary, st, logs.join("controller-warm.log"))?;
    let cpu_start = cpu_sample(&ctl, st);
    let m = loop {
        if let Some(status) = ctl.exited() {
            return Err(format!("the controller exited ({status}) during the warm restart").into());
        }
        if ctl.started.elapsed() > limit {
            return Err(format!("warm restart: not done after {limit:?}").into());
        }
        if warm.ready.is_none() && ctl.ready().await {
            warm.ready = Some(ctl.started.elapsed());
        }
        if let Some(m) = ctl.metrics().await {
            // When the answer arrived: the counters were read at most that long ago.
            let t = ctl.started.elapsed();
            if m.reconciles("service") >= args.services as f64 {
                warm.done = Some(t);
                warm.cpu = cpu_start.until(&cpu_sample(&ctl, st));
                break m;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    say(&format!(
        "warm: every Service reconciled after {:.2} s; watching the NB for {} s more…",
        warm.done.unwrap_or_default().as_secs_f64(),
        QUIET.as_secs()
    ));
    tokio::time::sleep(QUIET).await;
    let late = ctl.metrics().await.unwrap_or(m);
    warm.transactions = late.transactions();
    warm.reconciles = service_reconciles(&late);
    warm.batches = observer.take_count();
    warm.peak_rss = ctl.peak_rss();
    ctl.stop().await;
    Ok(report)
}

/// One churn change to a Service's endpoints: a fresh address for one endpoint, or one
/// endpoint's `ready` flipped (never the last ready one off).
fn change_endpoints(svc: &mut Svc, rng: &mut Rng, next_ip: &AtomicUsize) -> &'static str {
    let j = rng.below(svc.endpoints.len());
    let ready = svc.endpoints.iter().filter(|(_, r)| *r).count();
    let flip = rng.below(2) == 1 && !(svc.endpoints[j].1 && ready == 1);
    if flip {
        svc.endpoints[j].1 = !svc.endpoints[j].1;
        "ready flipped"
    } else {
        svc.endpoints[j] = (endpoint_ip(next_ip.fetch_add(1, Ordering::SeqCst)), true);
        "address replaced"
    }
}

#[allow(clippy::too_many_arguments)]
async fn churn(
    client: &kube::Client,
    args: &Args,
    world: &World,
    observer: &Arc<Observer>,
    replica: &Replica,
    ctl: &mut Controller,
    st: &kube_ovn_sandbox::SandboxState,
    limit: Duration,
) -> Result<Churn> {
    let mut out = Churn::default();
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    // The slices as the API holds them (their resourceVersions): each change replaces one.
    let mut slices: HashMap<String, EndpointSlice> = api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|s| Some((s.metadata.name.clone()?, s)))
        .collect();
    let before = ctl.metrics().await.map_or(0.0, |m| m.transactions());
    let cpu_start = cpu_sample(ctl, st);
    observer.take_count();
    lock(&observer.latencies).clear();
    let mut rng = Rng(args.seed);
    let interval = Duration::from_secs_f64(1.0 / args.churn_rate);
    let gate = Arc::new(tokio::sync::Semaphore::new(CHURN_IN_FLIGHT));
    let written: Arc<Mutex<Vec<(String, EndpointSlice)>>> = Arc::default();
    let failed = Arc::new(AtomicUsize::new(0));
    let start = tokio::time::Instant::now();
    let t0 = Instant::now();
    let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..args.churn {
        tokio::time::sleep_until(start + interval.mul_f64(id as f64)).await;
        // Resourceversions of the writes that finished since the last change.
        for (name, s) in lock(&written).drain(..) {
            slices.insert(name, s);
        }
        // A Service with no change in flight (at most CHURN_IN_FLIGHT are busy).
        let deadline = Instant::now() + limit;
        let i = loop {
            let i = rng.below(args.services);
            if lock(&observer.busy).insert(i) {
                break i;
            }
            if Instant::now() > deadline {
                return Err("churn: no Service became free of its change in flight".into());
            }
            if lock(&observer.busy).len() >= args.services {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        let svc = {
            let mut all = world.lock();
            let kind = change_endpoints(&mut all[i], &mut rng, &world.next_ip);
            *kinds.entry(kind).or_insert(0) += 1;
            all[i].clone()
        };
        let slice_name = format!("{}-slice", svc.name);
        let Some(mut slice) = slices.get(&slice_name).cloned() else {
            return Err(format!("churn: slice {slice_name} is not in the API").into());
        };
        slice.endpoints = svc.slice().endpoints;
        lock(&observer.pending).insert(
            id,
            Expect {
                lb: svc.lb(),
                vip: svc.vip(),
                value: svc.backends(),
                acked: None,
                seen: None,
                service: i,
            },
        );
        let permit = gate.clone().acquire_owned().await?;
        let (api, observer, written, failed) = (
            api.clone(),
            observer.clone(),
            written.clone(),
            failed.clone(),
        );
        tasks.spawn(async move {
            let r = api
                .replace(&slice_name, &PostParams::default(), &slice)
                .await;
            let at = Instant::now();
            match r {
                Ok(s) => {
                    observer.acked(id, at);
                    lock(&written).push((slice_name, s));
                }
                Err(e) => {
                    say(&format!("  churn: writing {slice_name}: {e}"));
                    failed.fetch_add(1, Ordering::SeqCst);
                    observer.abandon(id);
                }
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let deadline = Instant::now() + CHANGE_LIMIT;
    while !lock(&observer.pending).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out.took = t0.elapsed();
    out.cpu = cpu_start.until(&cpu_sample(ctl, st));
    let never = lock(&observer.pending).drain().count();
    out.lost = never + failed.load(Ordering::SeqCst);
    let mut lat = std::mem::take(&mut *lock(&observer.latencies));
    out.before_ack = lat.iter().filter(|(_, early)| *early).count();
    lat.sort();
    out.latencies = lat.into_iter().map(|(d, _)| d).collect();
    // The NB's last churn writes settle, then it must match the world exactly.
    let settled = settle(ctl, limit).await?;
    out.transactions = settled.metrics.transactions() - before;
    out.batches = observer.take_count();
    out.peak_rss = ctl.peak_rss();
    let diff = differences(&nb_vips(replica), &world.current_vips());
    out.exact = diff.is_empty();
    if !diff.is_empty() {
        say(&format!(
            "  churn: the NB differs from the world in {} VIPs, first: {:?}",
            diff.len(),
            &diff[..diff.len().min(5)]
        ));
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    say(&format!(
        "churn: {} changes ({}) in {:.1} s; {} lost",
        args.churn,
        kinds.join(", "),
        out.took.as_secs_f64(),
        out.lost
    ));
    Ok(out)
}

/// The floor: the same VIPs written into a fresh standalone NB in one transaction.
mod peer {
    use super::*;

    /// One way of writing the VIPs and what it took.
    pub struct Variant {
        /// What was run.
        pub name: String,
        /// Wall time of the write (the server up and the load balancers made before).
        pub took: Duration,
        /// Transactions it took (1 unless the command line had to be split).
        pub transactions: usize,
        /// ovn-nbctl: whether it counts for the floor.
        pub nbctl: bool,
    }

    /// The peer's figures.
    #[derive(Default)]
    pub struct Peer {
        /// Every variant, in the order run.
        pub variants: Vec<Variant>,
    }

    impl Peer {
        /// The fastest single-transaction ovn-nbctl variant.
        pub fn floor(&self) -> Option<&Variant> {
            self.variants
                .iter()
                .filter(|v| v.nbctl && v.transactions == 1)
                .min_by_key(|v| v.took)
        }
    }

    /// The six load balancers, as the controller creates them, in one ovn-nbctl call.
    fn create_lbs(s: &NbServer) -> Result<()> {
        let mut cmd = Command::new("ovn-nbctl");
        cmd.arg(s.db());
        for (i, (name, proto, session)) in LBS.iter().enumerate() {
            if i > 0 {
                cmd.arg("--");
            }
            cmd.args([
                "create",
                "load_balancer",
                &format!("name={name}"),
                &format!("protocol={proto}"),
                "external_ids:vendor=kube-ovn",
                "options:prefer_local_backend=false",
            ]);
            if *session {
                cmd.args(["selection_fields=ip_src", "options:affinity_timeout=10800"]);
            } else if *proto == "udp" {
                cmd.arg("options:ct_flush=true");
            }
        }
        nbctl(cmd)
    }

    /// Fails unless the load balancers hold exactly `want`.
    async fn verify(
        s: &NbServer,
        want: &BTreeMap<&'static str, BTreeMap<String, String>>,
        variant: &str,
    ) -> Result<()> {
        let c = s.client().await?;
        let mut t = Transaction::new(NB_DB);
        t.push(Operation::Select {
            table: "Load_Balancer".into(),
            conditions: Vec::new(),
            columns: Some(vec!["name".into(), "vips".into()]),
        });
        let out = c.transact(&t).await?;
        let rows = out
            .results
            .first()
            .and_then(|r| r.rows.as_ref())
            .ok_or("select returned no rows")?;
        let mut have: BTreeMap<&'static str, BTreeMap<String, String>> = BTreeMap::new();
        for r in rows {
            let Some((lb, _, _)) = LBS.iter().find(|(n, _, _)| r["name"] == *n) else {
                continue;
            };
            let e = have.entry(lb).or_default();
            for kv in r["vips"][1].as_array().into_iter().flatten() {
                if let (Some(k), Some(v)) = (kv[0].as_str(), kv[1].as_str()) {
                    e.insert(k.to_string(), v.to_string());
                }
            }
        }
        let diff = differences(&have, want);
        if diff.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "peer {variant}: {} VIPs differ, first: {:?}",
                diff.len(),
                &diff[..diff.len().min(5)]
            )
            .into())
        }
    }

    /// ovn-nbctl command lines writing `vips` (per load balancer, in order) with `form`:
    /// as few as the argument limit allows — one, unless the VIPs do not fit.
    fn command_lines(
        db: &str,
        vips: &BTreeMap<&'static str, BTreeMap<String, String>>,
        form: Form,
    ) -> Vec<Vec<String>> {
        let budget = argument_budget();
        let cost = |a: &str| a.len() + 1 + std::mem::size_of::<usize>();
        let mut lines: Vec<Vec<String>> = Vec::new();
        let mut line: Vec<String> = Vec::new();
        let mut used = 0;
        let mut open: Option<&str> = None;
        let head = |lb: &str, first: bool| -> Vec<String> {
            let mut h = Vec::new();
            if !first {
                h.push("--".to_string());
            }
            match form {
                Form::SetKeys => h.extend(["set", "load_balancer", lb].map(String::from)),
                Form::AddMap => h.extend(["add", "load_balancer", lb, "vips"].map(String::from)),
            }
            h
        };
        let start_line = |line: &mut Vec<String>, used: &mut usize| {
            *line = vec![db.to_string(), "--timeout=900".to_string()];
            *used = line.iter().map(|a| cost(a)).sum::<usize>() + cost("ovn-nbctl");
        };
        start_line(&mut line, &mut used);
        for (lb, map) in vips {
            for (k, v) in map {
                let arg = match form {
                    Form::SetKeys => format!("vips:\"{k}\"=\"{v}\""),
                    Form::AddMap => format!("\"{k}\"=\"{v}\""),
                };
                let need_head = open != Some(*lb);
                let head_args = if need_head {
                    head(lb, line.len() == 2)
                } else {
                    Vec::new()
                };
                let add = cost(&arg) + head_args.iter().map(|a| cost(a)).sum::<usize>();
                if used + add > budget && line.len() > 2 {
                    lines.push(std::mem::take(&mut line));
                    start_line(&mut line, &mut used);
                    let h = head(lb, true);
                    used += h.iter().map(|a| cost(a)).sum::<usize>();
                    line.extend(h);
                } else if need_head {
                    used += head_args.iter().map(|a| cost(a)).sum::<usize>();
                    line.extend(head_args);
                }
                open = Some(lb);
                used += cost(&arg);
                line.push(arg);
            }
        }
        if line.len() > 2 {
            lines.push(line);
        }
        lines
    }

    #[derive(Clone, Copy)]
    enum Form {
        /// `set load_balancer LB vips:"K"="V" …`: one partial-map write per VIP.
        SetKeys,
        /// `add load_balancer LB vips "K"="V" …`: the VIPs added to the map at once.
        AddMap,
    }

    async fn run_nbctl(
        base: &Path,
        vips: &BTreeMap<&'static str, BTreeMap<String, String>>,
        form: Form,
    ) -> Result<Variant> {
        let tag = match form {
            Form::SetKeys => "set",
            Form::AddMap => "add",
        };
        let s = NbServer::start(base, tag)?;
        create_lbs(&s)?;
        let lines = command_lines(&s.db(), vips, form);
        let bytes: usize = lines.iter().flatten().map(|a| a.len() + 1).sum();
        let t = Instant::now();
        for l in &lines {
            let mut cmd = Command::new("ovn-nbctl");
            cmd.args(l);
            let out = tokio::task::spawn_blocking(move || nbctl(cmd)).await?;
            out?;
        }
        let took = t.elapsed();
        let name = match form {
            Form::SetKeys => "ovn-nbctl set load_balancer LB vips:\"K\"=\"V\" … -- set …",
            Form::AddMap => "ovn-nbctl add load_balancer LB vips \"K\"=\"V\" … -- add …",
        };
        verify(&s, vips, name).await?;
        Ok(Variant {
            name: format!(
                "{name} ({} process{}, {:.1} MB of arguments)",
                lines.len(),
                if lines.len() == 1 { "" } else { "es" },
                bytes as f64 / 1e6
            ),
            took,
            transactions: lines.len(),
            nbctl: true,
        })
    }

    /// One JSON-RPC transaction from our client: one mutate per load balancer.
    async fn run_client(
        base: &Path,
        vips: &BTreeMap<&'static str, BTreeMap<String, String>>,
    ) -> Result<Variant> {
        let s = NbServer::start(base, "client")?;
        create_lbs(&s)?;
        let c = s.client().await?;
        let t = Instant::now();
        let mut txn = Transaction::new(NB_DB);
        for (lb, map) in vips {
            txn.mutate(
                "Load_Balancer",
                vec![Condition::eq("name", *lb)],
                vec![Mutation::insert(
                    "vips",
                    Datum::map(map.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                )],
            );
        }
        c.transact(&txn).await?;
        let took = t.elapsed();
        verify(&s, vips, "client").await?;
        Ok(Variant {
            name: "our ovsdb client: 1 JSON-RPC transaction, 1 mutate per LB".into(),
            took,
            transactions: 1,
            nbctl: false,
        })
    }

    /// Every variant, each on a fresh server.
    pub async fn run(
        vips: &BTreeMap<&'static str, BTreeMap<String, String>>,
        base: &Path,
    ) -> Result<Peer> {
        let mut p = Peer::default();
        for form in [Form::SetKeys, Form::AddMap] {
            let v = run_nbctl(base, vips, form).await?;
            say(&format!("  {}: {}", v.name, fine_secs(Some(v.took))));
            p.variants.push(v);
        }
        let v = run_client(base, vips).await?;
        say(&format!("  {}: {}", v.name, fine_secs(Some(v.took))));
        p.variants.push(v);
        Ok(p)
    }
}

/// The aims: cold < 5 s, churn p99 < 50 ms, no NB write on a warm restart.
const COLD_AIM_SECS: f64 = 5.0;
const P99_AIM_MS: f64 = 50.0;

impl Report {
    /// What failed outright (not a missed aim): lost changes, an NB not matching the world.
    fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.churn.lost > 0 {
            out.push(format!(
                "{} churn changes never showed in the NB",
                self.churn.lost
            ));
        }
        if !self.churn.exact {
            out.push("the NB did not match the Services after the churn".into());
        }
        out
    }

    fn print(&self, args: &Args, world: &World, sandbox: Duration) {
        let (c, ch, w) = (&self.cold, &self.churn, &self.warm);
        let floor = self.peer.floor();
        let ratio = match (c.done, floor) {
            (Some(d), Some(f)) if f.took > Duration::ZERO => {
                format!("×{:.1}", d.as_secs_f64() / f.took.as_secs_f64())
            }
            _ => "—".into(),
        };
        let under = |d: Option<Duration>, s: f64| d.map(|d| d.as_secs_f64() < s);
        let ms = |d: Option<Duration>| {
            d.map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
                .unwrap_or_else(|| "—".into())
        };
        let p99 = ch.quantile(0.99);
        let blank = || String::new();
        let rows: Vec<Vec<String>> = vec![
            vec![
                "cold: every VIP in the NB with its backends".into(),
                secs(c.done),
                format!("< {COLD_AIM_SECS} s"),
                verdict(under(c.done, COLD_AIM_SECS)).into(),
            ],
            vec![
                format!(
                    "cold vs floor ({}, one ovn-nbctl transaction)",
                    fine_secs(floor.map(|f| f.took))
                ),
                ratio,
                blank(),
                blank(),
            ],
            vec![
                "cold: first VIP in the NB".into(),
                secs(c.first_vip),
                blank(),
                blank(),
            ],
            vec!["cold: /readyz".into(), secs(c.ready), blank(), blank()],
            vec![
                "cold: last NB change (replica)".into(),
                secs(c.last_nb_change),
                blank(),
                blank(),
            ],
            vec![
                format!(
                    "cold: controller settled (NB counter answered unchanged {} s)",
                    QUIET.as_secs()
                ),
                secs(c.settled),
                blank(),
                blank(),
            ],
            vec![
                "cold: NB transactions / operations (metric)".into(),
                format!("{:.0} / {:.0}", c.transactions, c.operations),
                blank(),
                blank(),
            ],
            vec![
                "cold: NB change batches (replica) at done".into(),
                c.batches.text(),
                blank(),
                blank(),
            ],
            vec![
                "cold: NB change batches (replica) settled".into(),
                c.batches_settled.text(),
                blank(),
                blank(),
            ],
            vec![
                "cold: peak RSS".into(),
                megabytes(c.peak_rss),
                blank(),
                blank(),
            ],
            vec![
                format!(
                    "churn: {} changes at {}/s, p50 / p90 / p99 / max ms",
                    args.churn, args.churn_rate
                ),
                format!(
                    "{} / {} / {} / {}",
                    ms(ch.quantile(0.5)),
                    ms(ch.quantile(0.9)),
                    ms(p99),
                    ms(ch.quantile(1.0))
                ),
                format!("p99 < {P99_AIM_MS} ms"),
                verdict(p99.map(|d| d.as_secs_f64() * 1e3 < P99_AIM_MS)).into(),
            ],
            vec![
                "churn: changes lost / seen before the API answered".into(),
                format!("{} / {}", ch.lost, ch.before_ack),
                "0 lost".into(),
                verdict(Some(ch.lost == 0)).into(),
            ],
            vec![
                "churn: NB transactions (metric) / change batches (replica)".into(),
                format!("{:.0} / {}", ch.transactions, ch.batches.text()),
                blank(),
                blank(),
            ],
            vec![
                "churn: NB equals the Services afterwards".into(),
                if ch.exact { "yes" } else { "no" }.into(),
                "yes".into(),
                verdict(Some(ch.exact)).into(),
            ],
            vec![
                "churn: peak RSS".into(),
                megabytes(ch.peak_rss),
                blank(),
                blank(),
            ],
            vec![
                "warm: every Service reconciled".into(),
                secs(w.done),
                blank(),
                blank(),
            ],
            vec!["warm: /readyz".into(), secs(w.ready), blank(), blank()],
            vec![
                "warm: NB transactions (metric)".into(),
                format!("{:.0}", w.transactions),
                "0".into(),
                verdict(Some(w.transactions == 0.0)).into(),
            ],
            vec![
                "warm: NB change batches (replica)".into(),
                w.batches.text(),
                "0".into(),
                verdict(Some(w.batches.batches == 0)).into(),
            ],
            vec![
                "warm: peak RSS".into(),
                megabytes(w.peak_rss),
                blank(),
                blank(),
            ],
        ];
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0);
        let (tcp, udp, session) = world.counts();
        say("");
        say(&format!(
            "kube-ovn-controller Services at scale: {} ClusterIP Services ({tcp} TCP, {udp} UDP; {session} ClientIP) × {} endpoints; {cpus} CPUs",
            args.services, args.endpoints
        ));
        say(&format!(
            "setup: sandbox {:.1} s; CRDs + namespace {:.1} s, Services {:.1} s ({:.0}/s), EndpointSlices {:.1} s ({:.0}/s) — before the controller starts",
            sandbox.as_secs_f64(),
            self.setup.crds.as_secs_f64(),
            self.setup.services.as_secs_f64(),
            args.services as f64 / self.setup.services.as_secs_f64().max(1e-9),
            self.setup.slices.as_secs_f64(),
            args.services as f64 / self.setup.slices.as_secs_f64().max(1e-9),
        ));
        say("");
        table(&["figure", "measured", "aim", "vs aim"], &rows);
        say("");
        say("peer (fresh standalone NB, the six load balancers made first, the cold run's VIPs):");
        for v in &self.peer.variants {
            say(&format!("  {:>9}  {}", fine_secs(Some(v.took)), v.name));
        }
        say("");
        let m: Vec<String> = c
            .milestones
            .iter()
            .map(|(n, t)| format!("{n} {t:.2} s"))
            .collect();
        say(&format!(
            "cold start-up milestones (controller log): {}",
            m.join("; ")
        ));
        say(&format!(
            "cold: /metrics scrapes after done: {} unanswered within 5 s, slowest {}",
            c.scrapes.0,
            secs(Some(c.scrapes.1))
        ));
        for (name, (n, e, lat)) in [("cold", c.reconciles), ("warm", w.reconciles)] {
            say(&format!(
                "{name} service reconciles: {n:.0} ({e:.0} failed, mean {})",
                fine_secs(lat)
            ));
        }
        for (name, cpu, wall) in [
            ("cold (start to done)", &c.cpu, c.done),
            (
                "cold (done to settled)",
                &c.cpu_after,
                c.settled.zip(c.done).map(|(s, d)| s.saturating_sub(d)),
            ),
            ("churn", &ch.cpu, Some(ch.took)),
            ("warm (start to done)", &w.cpu, w.done),
        ] {
            let used: Vec<String> = cpu.0.iter().map(|(n, t)| format!("{n} {t:.1}")).collect();
            let wall = wall.unwrap_or_default().as_secs_f64();
            say(&format!(
                "{name} CPU seconds ({wall:.1} s × {cpus} CPUs = {:.1} available): {}",
                wall * cpus as f64,
                used.join(", ")
            ));
        }
        for (name, b) in [
            ("cold (settled)", &c.batches_settled),
            ("churn", &ch.batches),
            ("warm", &w.batches),
        ] {
            if !b.columns.is_empty() {
                say(&format!(
                    "{name} NB changes (table.column: rows): {:?}",
                    b.columns
                ));
            }
        }
    }
}
