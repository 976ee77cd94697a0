//! The controller's life: elect a leader, replicate NB, start the reflectors, initialise,
//! restore IPAM, then run the subnet, node and pod queues in upstream's order (pods only once
//! the default and join switches exist and every node has its join address), with periodic GC.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use ovsdb::{Remote, Replica, ReplicaConfig, Timeouts};
use tracing::{info, warn};

use crate::config::Config;
use crate::context::{Ctx, Stores, NB_DB};
use crate::metrics::{KindLabel, Metrics};
use crate::pod_info::PodInfo;
use crate::queue::{self, Outcome, Queue};
use crate::{
    gc, ippool_ctl, leader, node_ctl, pod_ctl, restore, startup, subnet_ctl, subnet_rules,
};
use kube_ovn_common::crd::{IpPool, Subnet};

/// NB tables the controller reads (one monitor for all of them).
const NB_TABLES: &[&str] = &[
    "NB_Global",
    "Logical_Switch",
    "Logical_Switch_Port",
    "Logical_Router",
    "Logical_Router_Port",
    "Logical_Router_Policy",
    "Logical_Router_Static_Route",
    "Load_Balancer",
    "Port_Group",
    "Address_Set",
    "ACL",
];

/// Where the controller's identity comes from (upstream: POD_NAME / KUBE_NAMESPACE env).
#[derive(Debug, Clone)]
pub struct Identity {
    /// Lease holder identity.
    pub pod_name: String,
    /// Namespace of the Lease.
    pub namespace: String,
}

impl Identity {
    /// From the environment, as upstream's Deployment sets it.
    pub fn from_env() -> Identity {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        Identity {
            pod_name: std::env::var("POD_NAME").unwrap_or_else(|_| host.trim().to_string()),
            namespace: std::env::var("KUBE_NAMESPACE")
                .or_else(|_| std::env::var("POD_NAMESPACE"))
                .unwrap_or_else(|_| "kube-system".into()),
        }
    }
}

/// Drops what no reconciler reads before an object enters a store (kube-rs's recommended way to
/// keep reflector memory down): managed fields everywhere (pods are stored as [`PodInfo`],
/// which keeps only what the controller reads), kubectl's last-applied copy of a pod, and
/// nodes' image lists.
trait Trim {
    fn trim(&mut self);
}

impl Trim for PodInfo {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
        if let Some(a) = self.metadata.annotations.as_mut() {
            a.remove(crate::pod_info::LAST_APPLIED);
        }
    }
}

impl Trim for Node {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
        if let Some(st) = self.status.as_mut() {
            st.images = None;
        }
    }
}

impl Trim for Namespace {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for Subnet {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for IpPool {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

fn store<K>(
    client: kube::Client,
    cfg: watcher::Config,
) -> (
    Store<K>,
    impl futures::Stream<Item = watcher::Event<K>> + Send,
)
where
    K: kube::Resource<DynamicType = ()>
        + Trim
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + serde::de::DeserializeOwned
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let stream = reflector::reflector(writer, watcher(Api::<K>::all(client), cfg).modify(K::trim))
        .default_backoff()
        .filter_map(|e| async move {
            match e {
                Ok(ev) => Some(ev),
                Err(err) => {
                    warn!("watch: {err}");
                    None
                }
            }
        });
    (reader, stream)
}

fn keys<K: kube::Resource>(ev: &watcher::Event<K>, key: impl Fn(&K) -> String) -> Vec<String> {
    match ev {
        watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o) => {
            vec![key(o)]
        }
        _ => Vec::new(),
    }
}

/// Runs the controller until leadership is lost or the process is told to stop.
pub async fn run(
    config: Config,
    client: kube::Client,
    identity: Identity,
    metrics: Arc<Metrics>,
) -> Result<(), String> {
    let listen = SocketAddr::from(([0, 0, 0, 0], config.pprof_port));
    let m = metrics.clone();
    let enable_metrics = config.enable_metrics;
    tokio::spawn(async move {
        if let Err(e) = crate::metrics::serve(m, listen, enable_metrics).await {
            warn!("metrics endpoint on {listen}: {e}");
        }
    });

    let mut elector = leader::Elector::new(
        client.clone(),
        &identity.namespace,
        leader::LEASE_NAME,
        &identity.pod_name,
        leader::Timing {
            lease_duration: config.leader_elect_lease_duration,
            renew_deadline: config.leader_elect_renew_deadline,
            retry_period: config.leader_elect_retry_period,
        },
    );
    elector.acquire().await;
    metrics.leader.set(1);
    let result = tokio::select! {
        r = lead(config, client, metrics.clone()) => r,
        _ = elector.hold() => Err("leadership lost".to_string()),
        _ = shutdown_signal() => {
            info!("terminating: releasing leadership");
            Ok(())
        }
    };
    elector.release().await;
    metrics.leader.set(0);
    result
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Everything the leader does.
pub async fn lead(
    config: Config,
    client: kube::Client,
    metrics: Arc<Metrics>,
) -> Result<(), String> {
    let remotes = Remote::parse_list(&normalize_remotes(&config.ovn_nb_addr))
        .map_err(|e| format!("--ovn-nb-addr: {e}"))?;
    let mut rc = ReplicaConfig::new(remotes, NB_DB);
    rc.tables = NB_TABLES.iter().map(|t| t.to_string()).collect();
    rc.external_id_keys = vec!["pod".into(), "subnet".into(), "node".into()];
    rc.timeouts = Timeouts {
        connect: Duration::from_secs(config.ovsdb_con_timeout.max(1)),
        request: Duration::from_secs(config.ovn_timeout.max(1)),
        probe_interval: Duration::from_secs(config.ovsdb_inactivity_timeout.max(1)),
    };
    let (subnets, subnet_events) = store::<Subnet>(client.clone(), watcher::Config::default());
    let (nodes, node_events) = store::<Node>(client.clone(), watcher::Config::default());
    let (pods, pod_events) = store::<PodInfo>(client.clone(), watcher::Config::default());
    let (namespaces, ns_events) = store::<Namespace>(client.clone(), watcher::Config::default());
    let (ippools, pool_events) = store::<IpPool>(client.clone(), watcher::Config::default());
    let stores = Stores {
        subnets: subnets.clone(),
        nodes: nodes.clone(),
        pods: pods.clone(),
        namespaces: namespaces.clone(),
        ippools: ippools.clone(),
    };

    // Event plumbing starts before the queues exist; keys wait in channels until then.
    let (sub_tx, mut sub_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (node_tx, mut node_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (pod_tx, mut pod_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (pool_tx, mut pool_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (status_tx, mut status_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let node_seen: Arc<Mutex<HashMap<String, (String, bool)>>> = Arc::default();
    let pod_seen = crate::pod_events::Seen::default();
    {
        let tx = sub_tx.clone();
        // Only changes the reconciler acts on queue a subnet: its own status patches (and
        // everybody's counters updates) would otherwise re-run it for nothing.
        let mut seen: HashMap<String, SubnetSignature> = HashMap::new();
        tokio::spawn(subnet_events.for_each(move |ev| {
            match &ev {
                watcher::Event::Apply(s) | watcher::Event::InitApply(s) => {
                    let sig = SubnetSignature::of(s);
                    if seen.insert(s.name_any(), sig.clone()).as_ref() != Some(&sig) {
                        let _ = tx.send(s.name_any());
                    }
                }
                watcher::Event::Delete(s) => {
                    seen.remove(&s.name_any());
                    let _ = tx.send(s.name_any());
                }
                _ => {}
            }
            async {}
        }));
        let (ntx, stx, seen, subs) = (
            node_tx.clone(),
            sub_tx.clone(),
            node_seen.clone(),
            subnets.clone(),
        );
        // A node's own gateway rows are its reconcile's; only centralized subnets naming it
        // as a gateway depend on its join address and readiness. Nodes first seen in the first
        // list change nothing (every subnet is queued when the queues start anyway).
        let mut listed = false;
        let mut relevant: HashMap<String, String> = HashMap::new();
        tokio::spawn(node_events.for_each(move |ev| {
            // Heartbeats (status-only updates) do not queue the node.
            match &ev {
                watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                    let sig = node_signature(n);
                    if relevant.insert(n.name_any(), sig.clone()).as_ref() != Some(&sig) {
                        let _ = ntx.send(n.name_any());
                    }
                }
                watcher::Event::Delete(n) => {
                    relevant.remove(&n.name_any());
                    let _ = ntx.send(n.name_any());
                }
                _ => {}
            }
            let changed = match &ev {
                watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                    let sig = (
                        n.annotations()
                            .get(kube_ovn_common::annotations::IP_ADDRESS)
                            .cloned()
                            .unwrap_or_default(),
                        node_ready(n),
                    );
                    let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
                    let before = s.insert(n.name_any(), sig.clone());
                    ((listed || before.is_some()) && before != Some(sig)).then(|| n.name_any())
                }
                watcher::Event::InitDone => {
                    listed = true;
                    None
                }
                watcher::Event::Delete(n) => seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&n.name_any())
                    .map(|_| n.name_any()),
                _ => None,
            };
            if let Some(node) = changed {
                for s in subs.state() {
                    if s.spec.gateway_type == "centralized"
                        && subnet_rules::gateway_nodes(&s.spec).contains(&node)
                    {
                        let _ = stx.send(s.name_any());
                    }
                }
            }
            async {}
        }));
        let ptx = pod_tx.clone();
        let mut filter = crate::pod_events::PodEvents::new(pod_seen.clone());
        tokio::spawn(pod_events.for_each(move |ev| {
            for k in filter.keys(&ev) {
                let _ = ptx.send(k);
            }
            async {}
        }));
        tokio::spawn(ns_events.for_each(|_| async {}));
        let tx = pool_tx.clone();
        tokio::spawn(pool_events.for_each(move |ev| {
            for k in keys(&ev, |p: &IpPool| p.name_any()) {
                let _ = tx.send(k);
            }
            async {}
        }));
    }
    let ips = Arc::new(crate::ipcr::IpIndex::default());
    {
        let (ips, client) = (ips.clone(), client.clone());
        tokio::spawn(async move { ips.follow(client).await });
    }
    // The watches list (in their tasks) while the NB replica syncs.
    let nb = loop {
        match Replica::start(rc.clone(), Duration::from_secs(config.ovn_timeout.max(1))).await {
            Ok(r) => break r,
            Err(e) => {
                warn!("connecting to OVN NB: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };

    milestone("nb replica synced");
    subnets
        .wait_until_ready()
        .await
        .map_err(|e| format!("subnets never synced: {e}"))?;
    nodes
        .wait_until_ready()
        .await
        .map_err(|e| format!("nodes never synced: {e}"))?;
    pods.wait_until_ready()
        .await
        .map_err(|e| format!("pods never synced: {e}"))?;
    namespaces
        .wait_until_ready()
        .await
        .map_err(|e| format!("namespaces never synced: {e}"))?;
    milestone("kubernetes caches synced");

    let ctx = Arc::new(Ctx {
        config: config.clone(),
        client: client.clone(),
        nb,
        ipam: Mutex::new(kube_ovn_ipam::Ipam::new()),
        metrics: metrics.clone(),
        stores,
        requeue_pods: pod_tx.clone(),
        requeue_nodes: node_tx.clone(),
        subnet_status: status_tx,
        ips: ips.clone(),
        pod_seen,
    });
    // Initialisation: NB basics and the default CRs, retried until they succeed.
    loop {
        let r = async {
            startup::init_nb(&ctx).await?;
            startup::init_crs(&ctx).await
        }
        .await;
        match r {
            Ok(()) => break,
            Err(e) => {
                warn!("initialisation: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    restore::restore_ipam(&ctx).await?;
    milestone("initialised, IPAM restored");

    let min = Duration::from_secs(config.cust_crd_retry_min_delay.max(1));
    let max = Duration::from_secs(config.cust_crd_retry_max_delay.max(1));
    let workers = config.worker_num as usize;
    let subnet_q = start_queue(
        "subnet",
        workers,
        min,
        max,
        ctx.clone(),
        subnet_ctl::reconcile,
    );
    let node_q = start_queue("node", workers, min, max, ctx.clone(), node_ctl::reconcile);
    tokio::spawn(forward(sub_rx_take(&mut sub_rx), subnet_q.clone()));
    for s in ctx.stores.subnets.state() {
        subnet_q.add(s.name_any());
    }
    let status_q = start_queue(
        "subnet-status",
        workers,
        min,
        max,
        ctx.clone(),
        subnet_ctl::reconcile_status,
    );
    tokio::spawn(forward_coalesced(
        sub_rx_take(&mut status_rx),
        status_q,
        STATUS_INTERVAL,
    ));
    let pool_q = start_queue(
        "ippool",
        workers,
        min,
        max,
        ctx.clone(),
        ippool_ctl::reconcile,
    );
    tokio::spawn(forward(sub_rx_take(&mut pool_rx), pool_q.clone()));
    for p in ctx.stores.ippools.state() {
        pool_q.add(p.name_any());
    }
    // Upstream's gates: switches first, then nodes, then pods.
    wait_until("default and join switches", || {
        let cache = ctx.nb.cache();
        let has = |n: &str| {
            cache
                .table("Logical_Switch")
                .is_some_and(|t| t.by_name(n).next().is_some())
        };
        has(&config.default_ls) && has(&config.node_switch)
    })
    .await;
    tokio::spawn(forward(sub_rx_take(&mut node_rx), node_q.clone()));
    for n in ctx.stores.nodes.state() {
        node_q.add(n.name_any());
    }
    wait_until("every node has a join address", || {
        ctx.stores
            .nodes
            .state()
            .iter()
            .all(|n| !subnet_ctl::node_join_ips(n).is_empty())
    })
    .await;
    milestone("nodes ready, starting pods");
    // Pods get more workers: they are the bulk, and each is one small NB transaction.
    let pod_q = start_queue(
        "pod",
        workers * 8,
        min,
        max,
        ctx.clone(),
        pod_ctl::reconcile,
    );
    tokio::spawn(forward(sub_rx_take(&mut pod_rx), pod_q.clone()));
    for p in ctx.stores.pods.state() {
        pod_q.add(pod_ctl::key(
            &p.namespace().unwrap_or_default(),
            &p.name_any(),
        ));
    }
    if let Err(e) = gc::run(&ctx, &pod_q, &node_q).await {
        warn!("gc: {e}");
    }
    metrics.set_ready(true);
    milestone("controller running");
    let interval = Duration::from_secs(config.gc_interval);
    loop {
        if config.gc_interval == 0 {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(interval).await;
        if let Err(e) = gc::run(&ctx, &pod_q, &node_q).await {
            warn!("gc: {e}");
        }
    }
}

/// What of a Subnet its reconciler acts on: the spec, deletion, finalizers,
/// labels and annotations — not the status.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SubnetSignature {
    spec: String,
    deleting: bool,
    finalizers: Vec<String>,
    labels: Option<std::collections::BTreeMap<String, String>>,
    annotations: Option<std::collections::BTreeMap<String, String>>,
}

impl SubnetSignature {
    fn of(s: &Subnet) -> SubnetSignature {
        let m = &s.metadata;
        SubnetSignature {
            spec: serde_json::to_string(&s.spec).unwrap_or_default(),
            deleting: m.deletion_timestamp.is_some(),
            finalizers: m.finalizers.clone().unwrap_or_default(),
            labels: m.labels.clone(),
            annotations: m.annotations.clone(),
        }
    }
}

/// What of a Node the node reconciler reads (annotations, labels, addresses, readiness).
fn node_signature(n: &Node) -> String {
    let addresses = n.status.as_ref().and_then(|s| s.addresses.as_ref());
    serde_json::to_string(&(
        &n.metadata.annotations,
        &n.metadata.labels,
        addresses,
        node_ready(n),
        n.metadata.deletion_timestamp.is_some(),
    ))
    .unwrap_or_default()
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Logs a step of start-up with the process's memory then (`VmRSS`, and the peak `VmHWM`):
/// where a start spends its time and memory is then read off the log.
fn milestone(what: &str) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb / 1024)
            .unwrap_or_default()
    };
    info!(
        rss_mib = field("VmRSS:"),
        peak_mib = field("VmHWM:"),
        "{what}"
    );
}

fn sub_rx_take(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (_tx, empty) = tokio::sync::mpsc::unbounded_channel();
    std::mem::replace(rx, empty)
}

/// How often at most a subnet's counters are patched while its pods come and go: a burst of
/// pods then costs a few status writes (and watch events for everyone watching Subnets), not
/// one per pod.
const STATUS_INTERVAL: Duration = Duration::from_millis(500);

/// Forwards keys to `q`, each at most once per `every`: keys arriving meanwhile are held and
/// sent together at the end of the interval.
async fn forward_coalesced(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<String>,
    q: Queue,
    every: Duration,
) {
    while let Some(first) = rx.recv().await {
        q.add(first);
        let until = tokio::time::Instant::now() + every;
        let mut held = std::collections::HashSet::new();
        loop {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(k)) => {
                    held.insert(k);
                }
                Ok(None) => {
                    for k in held {
                        q.add(k);
                    }
                    return;
                }
                Err(_) => break,
            }
        }
        for k in held {
            q.add(k);
        }
    }
}

async fn forward(mut rx: tokio::sync::mpsc::UnboundedReceiver<String>, q: Queue) {
    while let Some(k) = rx.recv().await {
        q.add(k);
    }
}

pub(crate) async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut logged = false;
    while !cond() {
        if !logged && start.elapsed() > Duration::from_secs(5) {
            info!("waiting until {what}");
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn start_queue<F, Fut>(
    name: &'static str,
    workers: usize,
    min: Duration,
    max: Duration,
    ctx: Arc<Ctx>,
    f: F,
) -> Queue
where
    F: Fn(Arc<Ctx>, String) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = Result<Outcome, crate::context::Error>> + Send + 'static,
{
    queue::start(name, workers, min, max, move |key| {
        let ctx = ctx.clone();
        async move {
            let label = KindLabel {
                kind: name.to_string(),
            };
            let started = Instant::now();
            ctx.metrics.reconciles.get_or_create(&label).inc();
            let r = f(ctx.clone(), key).await;
            ctx.metrics
                .reconcile_seconds
                .get_or_create(&label)
                .observe(started.elapsed().as_secs_f64());
            r.map_err(|e| {
                ctx.metrics.reconcile_errors.get_or_create(&label).inc();
                e.to_string()
            })
        }
    })
}

/// Upstream writes `tcp:[10.0.0.1]:6641` even for IPv4; accept the brackets.
pub fn normalize_remotes(list: &str) -> String {
    list.split(',')
        .map(|r| {
            let r = r.trim();
            match r.split_once(':') {
                Some((proto @ ("tcp" | "ssl"), rest)) if rest.starts_with('[') => {
                    if let Some((host, port)) = rest[1..].split_once("]:") {
                        if host.parse::<std::net::Ipv4Addr>().is_ok() {
                            return format!("{proto}:{host}:{port}");
                        }
                    }
                    r.to_string()
                }
                _ => r.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_bracketed_remotes_parse() {
        let list = normalize_remotes("tcp:[10.0.0.1]:6641,tcp:[10.0.0.2]:6641,ssl:[fd00::3]:6641");
        assert_eq!(
            list,
            "tcp:10.0.0.1:6641,tcp:10.0.0.2:6641,ssl:[fd00::3]:6641"
        );
        let remotes = Remote::parse_list(&list).unwrap();
        assert_eq!(remotes.len(), 3);
    }
}
