//! A reachability matrix for network-policy tests, proven with real packets: the shape of
//! Kubernetes' own netpol e2e suite (namespaces `x`, `y`, `z`, each with pods `a`, `b`, `c`,
//! every pod serving TCP and UDP on ports 80 and 81 under container ports named like
//! `serve-80-tcp`), brought up in a [`Sandbox`](crate::Sandbox) by [`World::build`].
//!
//! A test states what it expects as a [`Matrix`] (from pod, to pod, port, protocol → allowed),
//! starting from all-allowed or all-denied and narrowing it with the e2e suite's helpers
//! ([`Matrix::expect_from`], [`Matrix::expect_to`], [`Matrix::expect_pair`], [`Matrix::expect`]
//! with [`Peer`]s, per port and protocol through [`Matrix::service`] and friends).
//! [`World::converge`] probes every cell concurrently from the source pod's network namespace
//! to the destination pod's IP until the observed matrix equals the expected one, and on
//! failure prints both as grids with the mismatches marked. A pod reaching itself never leaves
//! its namespace (it is loopback), so those cells are neither probed nor compared — as the e2e
//! suite ignores loopback.
//!
//! Policies are plain JSON objects applied through the dynamic API ([`World::apply`],
//! [`World::delete`], [`World::delete_all`]), so the same harness drives NetworkPolicy,
//! AdminNetworkPolicy or BaselineAdminNetworkPolicy alike.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::workload::{self, connect, PodServer, Proto};
use crate::{probe, sys, SandboxState};

/// The test namespaces, as in the e2e suite.
pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
/// The pods of every test namespace (label `pod=<name>`).
pub const PODS: [&str; 3] = ["a", "b", "c"];
/// The ports every pod serves, over TCP and UDP.
pub const PORTS: [u16; 2] = [80, 81];
/// The label kube-apiserver keeps on every namespace, set to its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// How long a pod may take from creation to Running with an IP.
const POD_READY: Duration = Duration::from_secs(90);

/// A pod of the matrix, `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl PodRef {
    /// The pod `ns/name`; panics on a key without a slash (keys are written in tests).
    pub fn parse(key: &str) -> PodRef {
        let (namespace, name) = key
            .split_once('/')
            .unwrap_or_else(|| panic!("pod key {key:?} is not namespace/name"));
        PodRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A port and protocol every pod serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// Port number.
    pub port: u16,
    /// Transport.
    pub proto: Proto,
}

impl Service {
    /// The container port name of this service, as the e2e suite names them
    /// (`serve-80-tcp`), so named-port rules can refer to it.
    pub fn port_name(&self) -> String {
        format!("serve-{}-{}", self.port, proto_word(self.proto))
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", proto_word(self.proto).to_uppercase(), self.port)
    }
}

fn proto_word(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    }
}

/// Every service of the matrix: ports 80 and 81 over TCP and UDP.
pub fn all_services() -> Vec<Service> {
    PORTS
        .iter()
        .flat_map(|&port| {
            [Proto::Tcp, Proto::Udp]
                .into_iter()
                .map(move |proto| Service { port, proto })
        })
        .collect()
}

/// A set of pods an expectation covers (the e2e suite's `Peer`): any pod, the pods of one
/// namespace, the pods of one name in every namespace, or one pod.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    namespace: Option<String>,
    name: Option<String>,
}

impl Peer {
    /// Every pod.
    pub fn any() -> Peer {
        Peer::default()
    }

    /// Every pod of namespace `ns`.
    pub fn ns(ns: &str) -> Peer {
        Peer {
            namespace: Some(ns.to_string()),
            name: None,
        }
    }

    /// The pods called `name` in every namespace.
    pub fn named(name: &str) -> Peer {
        Peer {
            namespace: None,
            name: Some(name.to_string()),
        }
    }

    /// The one pod `ns/name`.
    pub fn pod(key: &str) -> Peer {
        let p = PodRef::parse(key);
        Peer {
            namespace: Some(p.namespace),
            name: Some(p.name),
        }
    }

    fn covers(&self, p: &PodRef) -> bool {
        self.namespace.as_ref().is_none_or(|n| *n == p.namespace)
            && self.name.as_ref().is_none_or(|n| *n == p.name)
    }
}

/// Expected or observed reachability: for every (from pod, to pod, service), whether a
/// connection gets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    pods: Vec<PodRef>,
    services: Vec<Service>,
    cells: Vec<bool>,
}

impl Matrix {
    /// A matrix of `pods` × `pods` × `services` with every cell `allowed`.
    pub fn new(pods: Vec<PodRef>, services: Vec<Service>, allowed: bool) -> Matrix {
        let n = pods.len() * pods.len() * services.len();
        Matrix {
            pods,
            services,
            cells: vec![allowed; n],
        }
    }

    /// The pods, in row/column order.
    pub fn pods(&self) -> &[PodRef] {
        &self.pods
    }

    /// The services.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    fn index(&self, from: usize, to: usize, service: usize) -> usize {
        (from * self.pods.len() + to) * self.services.len() + service
    }

    /// Whether `from` reaches `to` on `service` (`None` for a pod or service not in the matrix).
    pub fn get(&self, from: &PodRef, to: &PodRef, service: Service) -> Option<bool> {
        let f = self.pods.iter().position(|p| p == from)?;
        let t = self.pods.iter().position(|p| p == to)?;
        let s = self.services.iter().position(|x| *x == service)?;
        Some(self.cells[self.index(f, t, s)])
    }

    /// Expectations for the services on `port` only (both protocols).
    pub fn port(&mut self, port: u16) -> Scope<'_> {
        Scope {
            matrix: self,
            port: Some(port),
            proto: None,
        }
    }

    /// Expectations for the services over `proto` only (both ports).
    pub fn proto(&mut self, proto: Proto) -> Scope<'_> {
        Scope {
            matrix: self,
            port: None,
            proto: Some(proto),
        }
    }

    /// Expectations for one service only.
    pub fn service(&mut self, port: u16, proto: Proto) -> Scope<'_> {
        Scope {
            matrix: self,
            port: Some(port),
            proto: Some(proto),
        }
    }

    fn all(&mut self) -> Scope<'_> {
        Scope {
            matrix: self,
            port: None,
            proto: None,
        }
    }

    /// Every service: connections from any pod `from` covers to any pod `to` covers are
    /// `allowed` (the e2e suite's `ExpectPeer`).
    pub fn expect(&mut self, from: &Peer, to: &Peer, allowed: bool) -> &mut Self {
        self.all().expect(from, to, allowed);
        self
    }

    /// Every service: everything pod `from` (`ns/name`) opens is `allowed` (`ExpectAllEgress`).
    pub fn expect_from(&mut self, from: &str, allowed: bool) -> &mut Self {
        self.all().expect_from(from, allowed);
        self
    }

    /// Every service: everything reaching pod `to` is `allowed` (`ExpectAllIngress`).
    pub fn expect_to(&mut self, to: &str, allowed: bool) -> &mut Self {
        self.all().expect_to(to, allowed);
        self
    }

    /// Every service: `from` reaching `to` is `allowed` (`Expect`).
    pub fn expect_pair(&mut self, from: &str, to: &str, allowed: bool) -> &mut Self {
        self.all().expect_pair(from, to, allowed);
        self
    }

    /// The cells where `observed` differs from `self` (loopback cells never count):
    /// (from, to, service, expected).
    pub fn mismatches(&self, observed: &Matrix) -> Vec<(PodRef, PodRef, Service, bool)> {
        let mut out = Vec::new();
        for (f, from) in self.pods.iter().enumerate() {
            for (t, to) in self.pods.iter().enumerate() {
                if f == t {
                    continue;
                }
                for (s, service) in self.services.iter().enumerate() {
                    let want = self.cells[self.index(f, t, s)];
                    if observed.get(from, to, *service) != Some(want) {
                        out.push((from.clone(), to.clone(), *service, want));
                    }
                }
            }
        }
        out
    }

    /// The expectation (`self`) against `observed` as one grid per service: rows are the
    /// sources, columns the destinations; `.` connected and `x` blocked as expected,
    /// `A!` connected though expected blocked, `B!` blocked though expected connected,
    /// `-` loopback (not probed).
    pub fn grid(&self, observed: &Matrix) -> String {
        let mut out = String::new();
        let width = self
            .pods
            .iter()
            .map(|p| p.to_string().len())
            .max()
            .unwrap_or(3)
            + 1;
        for (s, service) in self.services.iter().enumerate() {
            let _ = write!(out, "{:width$}", format!("{service}"));
            for p in &self.pods {
                let _ = write!(out, "{:>width$}", p.to_string());
            }
            out.push('\n');
            for (f, from) in self.pods.iter().enumerate() {
                let _ = write!(out, "{:width$}", from.to_string());
                for (t, to) in self.pods.iter().enumerate() {
                    let cell = if f == t {
                        "-"
                    } else {
                        let want = self.cells[self.index(f, t, s)];
                        match (want, observed.get(from, to, *service)) {
                            (true, Some(true)) => ".",
                            (false, Some(false)) => "x",
                            (false, Some(true)) => "A!",
                            (true, Some(false)) => "B!",
                            (_, None) => "?",
                        }
                    };
                    let _ = write!(out, "{cell:>width$}");
                }
                out.push('\n');
            }
        }
        out
    }
}

/// Expectations limited to some services of a [`Matrix`] (see [`Matrix::port`],
/// [`Matrix::proto`], [`Matrix::service`]).
pub struct Scope<'a> {
    matrix: &'a mut Matrix,
    port: Option<u16>,
    proto: Option<Proto>,
}

impl Scope<'_> {
    fn set(&mut self, from: &Peer, to: &Peer, allowed: bool) {
        let m = &mut *self.matrix;
        for f in 0..m.pods.len() {
            if !from.covers(&m.pods[f]) {
                continue;
            }
            for t in 0..m.pods.len() {
                if !to.covers(&m.pods[t]) {
                    continue;
                }
                for s in 0..m.services.len() {
                    let svc = m.services[s];
                    if self.port.is_some_and(|p| p != svc.port)
                        || self.proto.is_some_and(|p| p != svc.proto)
                    {
                        continue;
                    }
                    let i = m.index(f, t, s);
                    m.cells[i] = allowed;
                }
            }
        }
    }

    /// [`Matrix::expect`] on this scope's services.
    pub fn expect(&mut self, from: &Peer, to: &Peer, allowed: bool) -> &mut Self {
        self.set(from, to, allowed);
        self
    }

    /// [`Matrix::expect_from`] on this scope's services.
    pub fn expect_from(&mut self, from: &str, allowed: bool) -> &mut Self {
        self.set(&Peer::pod(from), &Peer::any(), allowed);
        self
    }

    /// [`Matrix::expect_to`] on this scope's services.
    pub fn expect_to(&mut self, to: &str, allowed: bool) -> &mut Self {
        self.set(&Peer::any(), &Peer::pod(to), allowed);
        self
    }

    /// [`Matrix::expect_pair`] on this scope's services.
    pub fn expect_pair(&mut self, from: &str, to: &str, allowed: bool) -> &mut Self {
        self.set(&Peer::pod(from), &Peer::pod(to), allowed);
        self
    }
}

/// When a [`World::converge`] got there, from its call. Every probe of a round starts at
/// the round's start (the default parallelism covers every cell), so the data plane matched
/// by the start of the first matching round, and did not yet at the start of the round
/// before it: the true time lies in `(not_at, by]`, a round (about one probe timeout) wide.
#[derive(Debug, Clone, Copy)]
pub struct Converged {
    /// Start of the first round that matched: the data plane was there by then.
    pub by: Duration,
    /// Start of the last round that did not match (`None`: the first round matched).
    pub not_at: Option<Duration>,
    /// Probe rounds made.
    pub rounds: usize,
    /// Until the matching round ended.
    pub total: Duration,
}

/// The matrix did not converge: the last observation against the expectation.
#[derive(Debug)]
pub struct NotConverged {
    /// How long it was tried.
    pub after: Duration,
    /// Probe rounds made.
    pub rounds: usize,
    /// Wrong cells of the last round.
    pub wrong: usize,
    /// [`Matrix::grid`] of the last round.
    pub grid: String,
    /// Why the wrongly blocked cells of the last round failed: each distinct error with how
    /// many cells had it (a dead server and a dropped packet look different here).
    pub errors: Vec<(String, usize)>,
    /// The wrong cells of the last round (from, to, service, what was observed), for
    /// [`World::explain`].
    pub cells: Vec<(PodRef, PodRef, Service, bool)>,
}

impl fmt::Display for NotConverged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reachability did not converge after {:.1}s ({} rounds); {} cells wrong in the last \
             round (rows from, columns to; `.`/`x` connected/blocked as expected, `A!` connected \
             but expected blocked, `B!` blocked but expected connected):\n{}",
            self.after.as_secs_f64(),
            self.rounds,
            self.wrong,
            self.grid
        )?;
        for (e, n) in &self.errors {
            writeln!(f, "{n} wrongly blocked cells: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for NotConverged {}

/// How a probe round runs.
#[derive(Debug, Clone, Copy)]
pub struct ProbeOptions {
    /// How long one connection attempt may take before it counts as blocked.
    pub timeout: Duration,
    /// Probes in flight at once.
    pub parallelism: usize,
}

impl Default for ProbeOptions {
    /// One second per attempt and every cell of the e2e matrix (9 × 8 pairs × 4 services)
    /// at once: a round takes one timeout when anything is blocked, and every probe of it
    /// starts at the round's start, which [`Converged`] relies on.
    fn default() -> Self {
        ProbeOptions {
            timeout: Duration::from_secs(1),
            parallelism: 288,
        }
    }
}

/// One pod of the world.
#[derive(Debug)]
struct WorldPod {
    pod: PodRef,
    node: String,
    ip: IpAddr,
    netns: String,
    server: Option<PodServer>,
}

/// The e2e suite's pods in a running sandbox with kube-ovn: their addresses, their servers and
/// the API client to change policies, labels and pods with.
pub struct World {
    client: kube::Client,
    state: SandboxState,
    pods: Vec<WorldPod>,
    services: Vec<Service>,
    /// How probe rounds run.
    pub probe: ProbeOptions,
}

/// The labels of a test pod.
fn pod_labels(p: &PodRef) -> Value {
    json!({"pod": p.name})
}

/// A test pod: bound to `node`, one container declaring every service as a named port.
fn pod_object(p: &PodRef, node: &str) -> Value {
    let ports: Vec<Value> = all_services()
        .iter()
        .map(|s| {
            json!({"name": s.port_name(), "containerPort": s.port,
                   "protocol": proto_word(s.proto).to_uppercase()})
        })
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": p.name, "namespace": p.namespace, "labels": pod_labels(p)},
        "spec": {"nodeName": node, "containers": [{"name": "server", "image": "agnhost", "ports": ports}]},
    })
}

impl World {
    /// Creates namespaces `x`, `y`, `z` (labelled `ns=<name>`; the API server adds
    /// `kubernetes.io/metadata.name`, which is checked) and pods `a`, `b`, `c` in each, spread
    /// over the sandbox's nodes in turn, waits for them to run and starts a server in each on
    /// every service. `state` is the sandbox's ([`crate::Sandbox::state`]), which must run
    /// kube-ovn and kubelets.
    pub async fn build(client: kube::Client, state: &SandboxState) -> Result<World> {
        if state.nodes.is_empty() {
            return Err(Error::Invalid("the sandbox has no nodes".into()));
        }
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for ns in NAMESPACES {
            let object: Namespace =
                serde_json::from_value(json!({"metadata": {"name": ns, "labels": {"ns": ns}}}))
                    .map_err(|e| Error::Invalid(e.to_string()))?;
            let made = namespaces.create(&PostParams::default(), &object).await?;
            let label = made
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(NAMESPACE_NAME_LABEL));
            if label.map(String::as_str) != Some(ns) {
                return Err(Error::Invalid(format!(
                    "namespace {ns} lacks {NAMESPACE_NAME_LABEL}={ns}: the API server must set it"
                )));
            }
        }
        let refs: Vec<PodRef> = NAMESPACES
            .iter()
            .flat_map(|ns| {
                PODS.iter().map(|n| PodRef {
                    namespace: ns.to_string(),
                    name: n.to_string(),
                })
            })
            .collect();
        let mut placed = Vec::new();
        for (i, p) in refs.iter().enumerate() {
            let node = state.nodes[i % state.nodes.len()].name.clone();
            let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace);
            let object: Pod = serde_json::from_value(pod_object(p, &node))
                .map_err(|e| Error::Invalid(e.to_string()))?;
            api.create(&PostParams::default(), &object).await?;
            placed.push((p.clone(), node));
        }
        let mut pods = Vec::new();
        for (p, node) in placed {
            let ip = running_ip(&client, &p).await?;
            let netns = state.pod_netns(&p.namespace, &p.name);
            let server = Some(start_server(&netns, &p)?);
            pods.push(WorldPod {
                pod: p,
                node,
                ip,
                netns,
                server,
            });
        }
        Ok(World {
            client,
            state: state.clone(),
            pods,
            services: all_services(),
            probe: ProbeOptions::default(),
        })
    }

    /// The pods, in matrix order (`x/a`, `x/b`, … `z/c`).
    pub fn pods(&self) -> Vec<PodRef> {
        self.pods.iter().map(|p| p.pod.clone()).collect()
    }

    /// The IP of pod `key` (`ns/name`).
    pub fn ip(&self, key: &str) -> IpAddr {
        self.pod(key).ip
    }

    /// The node pod `key` runs on.
    pub fn node_of(&self, key: &str) -> &str {
        &self.pod(key).node
    }

    fn pod(&self, key: &str) -> &WorldPod {
        let r = PodRef::parse(key);
        self.pods
            .iter()
            .find(|p| p.pod == r)
            .unwrap_or_else(|| panic!("no pod {key} in the matrix"))
    }

    /// A matrix of every pod and service, all allowed (no policy).
    pub fn all_allowed(&self) -> Matrix {
        Matrix::new(self.pods(), self.services.clone(), true)
    }

    /// A matrix of every pod and service, all blocked.
    pub fn all_denied(&self) -> Matrix {
        Matrix::new(self.pods(), self.services.clone(), false)
    }

    /// Probes every cell but loopback once, with real packets from the source pod's network
    /// namespace to the destination pod's IP, [`ProbeOptions::parallelism`] at a time. A cell
    /// is connected when the destination's own server answered (its reply names it).
    pub async fn probe(&self) -> Matrix {
        self.probe_round().await.0
    }

    /// [`World::probe`], with the failure of every cell that did not connect.
    async fn probe_round(&self) -> (Matrix, BTreeMap<(usize, usize, usize), String>) {
        let mut cells = Vec::new();
        for (f, from) in self.pods.iter().enumerate() {
            for (t, to) in self.pods.iter().enumerate() {
                if f == t {
                    continue;
                }
                for (s, svc) in self.services.iter().enumerate() {
                    cells.push(Cell {
                        f,
                        t,
                        s,
                        netns: from.netns.clone(),
                        to: SocketAddr::new(to.ip, svc.port),
                        proto: svc.proto,
                        answer: to.pod.to_string(),
                    });
                }
            }
        }
        let options = self.probe;
        let results = tokio::task::spawn_blocking(move || probe_cells(&cells, options))
            .await
            .unwrap_or_default();
        let mut observed = self.all_denied();
        let mut failures = BTreeMap::new();
        for (f, t, s, outcome) in results {
            let i = observed.index(f, t, s);
            match outcome {
                Ok(()) => observed.cells[i] = true,
                Err(e) => {
                    failures.insert((f, t, s), e);
                }
            }
        }
        (observed, failures)
    }

    /// Probes rounds until the observation equals `expected` (loopback ignored) or `within`
    /// passes; returns when the data plane got there, as the bounds the rounds give (see
    /// [`Converged`]).
    pub async fn converge(
        &self,
        expected: &Matrix,
        within: Duration,
    ) -> Result<Converged, NotConverged> {
        let start = Instant::now();
        let mut rounds = 0;
        let mut last_wrong = None;
        loop {
            let round = start.elapsed();
            let (observed, failures) = self.probe_round().await;
            rounds += 1;
            let wrong = expected.mismatches(&observed);
            if wrong.is_empty() {
                return Ok(Converged {
                    by: round,
                    not_at: last_wrong,
                    rounds,
                    total: start.elapsed(),
                });
            }
            last_wrong = Some(round);
            if start.elapsed() >= within {
                let mut errors: BTreeMap<String, usize> = BTreeMap::new();
                for (f, t, svc, _) in &wrong {
                    let key = |p: &PodRef| self.pods.iter().position(|w| w.pod == *p);
                    let s = self.services.iter().position(|x| x == svc);
                    if let (Some(f), Some(t), Some(s)) = (key(f), key(t), s) {
                        if let Some(e) = failures.get(&(f, t, s)) {
                            *errors.entry(e.clone()).or_default() += 1;
                        }
                    }
                }
                return Err(NotConverged {
                    after: start.elapsed(),
                    rounds,
                    wrong: wrong.len(),
                    grid: expected.grid(&observed),
                    errors: errors.into_iter().collect(),
                    cells: wrong,
                });
            }
            // A round where everything answered fast would spin otherwise.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the data plane holds for up to three of `cells` (wrong cells of a
    /// [`NotConverged`]): OVN's verdict on the cell's packet (`ovn-trace` of a UDP/TCP packet
    /// with a fixed source port from the source pod's port), and on the source pod's node the
    /// datapath flows and conntrack entries between the two addresses. Tells a logical-pipeline
    /// error (the trace forwards) from stale datapath state (the trace drops, packets pass).
    pub async fn explain(&self, cells: &[(PodRef, PodRef, Service, bool)]) -> String {
        let mut out = String::new();
        for (from, to, svc, connected) in cells.iter().take(3) {
            let (src, dst) = (self.pod(&from.to_string()), self.pod(&to.to_string()));
            out.push_str(&format!(
                "--- {from} -> {to} {svc:?}: observed {}\n",
                if *connected { "connected" } else { "blocked" }
            ));
            let annotations = |p: &PodRef| {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &p.namespace);
                let name = p.name.clone();
                async move {
                    api.get(&name)
                        .await
                        .ok()
                        .and_then(|p| p.metadata.annotations)
                        .unwrap_or_default()
                }
            };
            let (a, b) = (annotations(from).await, annotations(to).await);
            let mac = |m: &BTreeMap<String, String>| {
                m.get("ovn.kubernetes.io/mac_address")
                    .cloned()
                    .unwrap_or_default()
            };
            let switch = a
                .get("ovn.kubernetes.io/logical_switch")
                .cloned()
                .unwrap_or_default();
            let l4 = match svc.proto {
                Proto::Tcp => "tcp",
                Proto::Udp => "udp",
            };
            let (ipv, ttl) = if src.ip.is_ipv4() {
                ("ip4", "ip.ttl")
            } else {
                ("ip6", "ip.ttl")
            };
            let flow = format!(
                "inport == \"{}.{}\" && eth.src == {} && eth.dst == {} && {ipv}.src == {} && \
                 {ipv}.dst == {} && {ttl} == 64 && {l4}.src == 33333 && {l4}.dst == {}",
                from.name,
                from.namespace,
                mac(&a),
                mac(&b),
                src.ip,
                dst.ip,
                svc.port
            );
            let sb = format!("--db={}", self.state.central.sb);
            out.push_str(
                &match sys::run("ovn-trace", [sb.as_str(), "--minimal", &switch, &flow]) {
                    Ok(t) => format!("ovn-trace --minimal {switch} '{flow}':\n{t}\n"),
                    Err(e) => format!("ovn-trace: {e}\n"),
                },
            );
            if let Some(node) = self.state.node(&src.node) {
                let ctl = node.dir.join("vswitchd.ctl").display().to_string();
                let (x, y) = (src.ip.to_string(), dst.ip.to_string());
                for cmd in ["dpctl/dump-flows", "dpctl/dump-conntrack"] {
                    let text = sys::run("ovs-appctl", ["-t", ctl.as_str(), cmd])
                        .unwrap_or_else(|e| e.to_string());
                    let dport = format!("dport={}", svc.port);
                    let lines: Vec<&str> = text
                        .lines()
                        .filter(|l| l.contains(&y) && !l.contains("arp("))
                        .filter(|l| {
                            cmd.ends_with("flows")
                                || (l.starts_with(l4) && l.contains(&x) && l.contains(&dport))
                        })
                        .take(40)
                        .collect();
                    out.push_str(&format!(
                        "{} {cmd} ({} lines with {y}):\n{}\n",
                        src.node,
                        lines.len(),
                        lines.join("\n")
                    ));
                }
            }
        }
        out
    }

    /// The dynamic API of `object`'s type (`apiVersion`, `kind`), namespaced when its
    /// metadata names a namespace; and its name.
    fn dynamic(&self, object: &Value) -> Result<(Api<DynamicObject>, String)> {
        let field = |p: &str| {
            object
                .pointer(p)
                .and_then(Value::as_str)
                .ok_or_else(|| Error::Invalid(format!("object without {p}: {object}")))
        };
        let api_version = field("/apiVersion")?;
        let kind = field("/kind")?;
        let name = field("/metadata/name")?.to_string();
        let gvk = match api_version.split_once('/') {
            Some((group, version)) => GroupVersionKind::gvk(group, version, kind),
            None => GroupVersionKind::gvk("", api_version, kind),
        };
        let resource = ApiResource::from_gvk(&gvk);
        let api = match object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
        {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        Ok((api, name))
    }

    /// Creates `object` (any API type, as JSON with `apiVersion`, `kind` and `metadata`), or
    /// replaces it when it exists — a policy update in place.
    pub async fn apply(&self, object: Value) -> Result<()> {
        let (api, name) = self.dynamic(&object)?;
        let mut typed: DynamicObject =
            serde_json::from_value(object).map_err(|e| Error::Invalid(e.to_string()))?;
        match api.create(&PostParams::default(), &typed).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let current = api.get(&name).await?;
                typed.metadata.resource_version = current.metadata.resource_version;
                api.replace(&name, &PostParams::default(), &typed).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes `object` (identified by `apiVersion`, `kind`, `metadata.name` and
    /// `metadata.namespace` if namespaced).
    pub async fn delete(&self, object: &Value) -> Result<()> {
        let (api, name) = self.dynamic(object)?;
        api.delete(&name, &DeleteParams::default()).await?;
        Ok(())
    }

    /// Deletes every object of a type in every namespace (`api_version`, `kind`, e.g.
    /// `networking.k8s.io/v1`, `NetworkPolicy`); returns how many.
    pub async fn delete_all(&self, api_version: &str, kind: &str) -> Result<usize> {
        let all = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "-"}});
        let (api, _) = self.dynamic(&all)?;
        let items = api.list(&ListParams::default()).await?.items;
        for item in &items {
            let mut object = json!({"apiVersion": api_version, "kind": kind,
                "metadata": {"name": item.metadata.name}});
            if let Some(ns) = &item.metadata.namespace {
                object["metadata"]["namespace"] = json!(ns);
            }
            self.delete(&object).await?;
        }
        Ok(items.len())
    }

    /// Merges `labels` into pod `key`'s labels (a `null` value removes a label).
    pub async fn label_pod(&self, key: &str, labels: Value) -> Result<()> {
        let p = PodRef::parse(key);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &p.namespace);
        api.patch(
            &p.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await?;
        Ok(())
    }

    /// Merges `labels` into namespace `ns`'s labels (a `null` value removes a label).
    pub async fn label_namespace(&self, ns: &str, labels: Value) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await?;
        Ok(())
    }

    /// Deletes pod `key`, waits until it and its network namespace are gone, creates it again
    /// (same name, node and labels `pod=<name>`) and restarts its server; returns its old and
    /// new IP.
    pub async fn recreate_pod(&mut self, key: &str) -> Result<(IpAddr, IpAddr)> {
        let r = PodRef::parse(key);
        let i = self
            .pods
            .iter()
            .position(|p| p.pod == r)
            .ok_or_else(|| Error::Invalid(format!("no pod {key} in the matrix")))?;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &r.namespace);
        self.pods[i].server = None;
        api.delete(&r.name, &DeleteParams::default()).await?;
        let netns = self.pods[i].netns.clone();
        let deadline = Instant::now() + POD_READY;
        loop {
            let gone = matches!(api.get_opt(&r.name).await, Ok(None));
            if gone && !Path::new(&sys::netns_path(&netns)).exists() {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("pod {key} and its network namespace gone"),
                    after: POD_READY,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let object: Pod = serde_json::from_value(pod_object(&r, &self.pods[i].node))
            .map_err(|e| Error::Invalid(e.to_string()))?;
        api.create(&PostParams::default(), &object).await?;
        let ip = running_ip(&self.client, &r).await?;
        let old = std::mem::replace(&mut self.pods[i].ip, ip);
        self.pods[i].server = Some(start_server(&netns, &r)?);
        Ok((old, ip))
    }

    /// The sandbox state the world lives in.
    pub fn state(&self) -> &SandboxState {
        &self.state
    }
}

/// The IP of a test pod once it runs.
async fn running_ip(client: &kube::Client, p: &PodRef) -> Result<IpAddr> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace);
    let ip = probe::running_pod_ip(&api, &p.name, POD_READY)
        .await
        .map_err(|e| Error::Invalid(format!("{}: {e}", p.namespace)))?;
    ip.parse()
        .map_err(|e| Error::Invalid(format!("pod {p} has IP {ip:?}: {e}")))
}

/// A server in the pod answering its own `ns/name` on every service.
fn start_server(netns: &str, p: &PodRef) -> Result<PodServer> {
    PodServer::start(
        &workload::sandbox_binary()?,
        netns,
        &p.to_string(),
        &PORTS,
        &PORTS,
    )
}

/// One probe of a round.
struct Cell {
    f: usize,
    t: usize,
    s: usize,
    netns: String,
    to: SocketAddr,
    proto: Proto,
    answer: String,
}

/// What one probe found: connected, or why not.
type Outcome = std::result::Result<(), String>;

/// Runs every probe on a bounded pool of threads; returns (from, to, service, outcome).
fn probe_cells(cells: &[Cell], options: ProbeOptions) -> Vec<(usize, usize, usize, Outcome)> {
    let next = AtomicUsize::new(0);
    let done: Vec<Mutex<Outcome>> = cells
        .iter()
        .map(|_| Mutex::new(Err("not probed".to_string())))
        .collect();
    let workers = options.parallelism.clamp(1, cells.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(c) = cells.get(i) else { break };
                let got = connect(&c.netns, c.proto, c.to, b"probe", options.timeout);
                let outcome = match got {
                    Ok(reply) if reply == c.answer => Ok(()),
                    Ok(reply) => Err(format!("answered by {reply:?}, not {}", c.answer)),
                    Err(e) => Err(e.to_string()),
                };
                if let Ok(mut slot) = done[i].lock() {
                    *slot = outcome;
                }
            });
        }
    });
    cells
        .iter()
        .zip(&done)
        .map(|(c, slot)| {
            let outcome = slot
                .lock()
                .map(|o| o.clone())
                .unwrap_or_else(|_| Err("probe thread panicked".into()));
            (c.f, c.t, c.s, outcome)
        })
        .collect()
}

/// A NetworkPolicy object `namespace/name` with `spec`, for [`World::apply`].
pub fn network_policy(namespace: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

/// An AdminNetworkPolicy object `name` at `priority` with `spec` (its `priority` set), for
/// [`World::apply`].
pub fn admin_network_policy(name: &str, priority: i32, spec: Value) -> Value {
    let mut spec = spec;
    spec["priority"] = json!(priority);
    json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// The BaselineAdminNetworkPolicy with `spec`, for [`World::apply`]: the API allows one, named
/// `default`.
pub fn baseline_admin_network_policy(spec: Value) -> Value {
    json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
        "metadata": {"name": "default"},
        "spec": spec,
    })
}

/// The rows of NB table `table` as JSON objects by column (`ovn-nbctl --format=json list`), so
/// a policy test can check what is left in the NB.
pub fn nb_rows(nb: &str, table: &str) -> Result<Vec<Value>> {
    let out = std::process::Command::new("ovn-nbctl")
        .args([
            &format!("--db={nb}"),
            "--timeout=10",
            "--format=json",
            "list",
            table,
        ])
        .output()
        .map_err(|e| Error::Command {
            command: format!("ovn-nbctl list {table}"),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: format!("ovn-nbctl list {table}"),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::Invalid(format!("ovn-nbctl list {table}: {e}")))?;
    let headings: Vec<String> = v["headings"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|h| h.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    Ok(v["data"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    let cols = row.as_array().cloned().unwrap_or_default();
                    Value::Object(headings.iter().cloned().zip(cols).collect())
                })
                .collect()
        })
        .unwrap_or_default())
}

/// `external_ids:<key>` of a row of [`nb_rows`] (OVSDB JSON maps are `["map", [[k, v], …]]`).
pub fn external_id(row: &Value, key: &str) -> Option<String> {
    row["external_ids"][1]
        .as_array()?
        .iter()
        .find(|kv| kv[0] == key)
        .and_then(|kv| kv[1].as_str().map(str::to_string))
}

/// A string column of a row of [`nb_rows`] (empty when unset).
pub fn column_text(row: &Value, col: &str) -> String {
    row[col].as_str().map(str::to_string).unwrap_or_default()
}

/// How often the nodes' ovs-vswitchd aborted so far (each abort logs one EMER line, and the
/// restarted daemon appends to the same log): a step that overlaps one measures OVS's
/// recovery, not the policy.
pub fn vswitchd_crashes(state: &SandboxState) -> usize {
    state
        .nodes
        .iter()
        .map(|n| {
            std::fs::read_to_string(n.dir.join("vswitchd.log"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("|EMER|"))
                .count()
        })
        .sum()
}

/// A matrix test's steps converged across ovs-vswitchd aborts (OVS 3.1's userspace conntrack
/// assertion; the node's monitor restarts the daemon). An abort in a step or the one before can
/// keep the data plane from the expected matrix for longer than a step's window while OVS
/// recovers (conntrack state lost on one node; CI saw a restarted node's UDP cells blocked
/// for 30 s the step after): a step that fails after one gets one more window, and its time
/// measures OVS's recovery, not the policy.
#[derive(Debug, Default)]
pub struct CrashWatch {
    /// The abort count when the previous step began.
    before: Option<usize>,
}

/// What one step of [`CrashWatch::converge`] came to.
pub struct Step {
    /// The data plane's convergence, or why it did not.
    pub outcome: std::result::Result<Converged, NotConverged>,
    /// Aborts to charge the step with (at least one when it needed the recovery window): a
    /// step with any is left out of the figures.
    pub crashed: usize,
    /// Aborts since the previous step began (for a failure's report).
    pub recent: usize,
}

impl CrashWatch {
    /// Converges `world` on `expected` within `within`, once more after an abort in this step
    /// or the previous one; `what` names the step in the line saying so.
    pub async fn converge(
        &mut self,
        world: &World,
        expected: &Matrix,
        within: Duration,
        what: &str,
    ) -> Step {
        let crashes = vswitchd_crashes(world.state());
        let since = self.before.replace(crashes).unwrap_or(crashes);
        let mut outcome = world.converge(expected, within).await;
        let mut recovered = false;
        if outcome.is_err() && vswitchd_crashes(world.state()) > since {
            println!("  {what}: ovs-vswitchd crashed in this or the previous step, waiting for its recovery");
            outcome = world.converge(expected, within).await;
            recovered = true;
        }
        let now = vswitchd_crashes(world.state());
        Step {
            outcome,
            crashed: (now - crashes).max(usize::from(recovered)),
            recent: now - since,
        }
    }
}

/// The converge times of a matrix test's steps, for its closing figures.
#[derive(Debug, Default)]
pub struct ConvergeTimes {
    /// (case, step, seconds until the data plane matched).
    pub steps: Vec<(String, String, f64)>,
    /// Steps an ovs-vswitchd crash overlapped: (case, step, seconds, crashes), kept out of
    /// the figures.
    pub crashed: Vec<(String, String, f64, usize)>,
}

impl ConvergeTimes {
    /// Records a converged step (`crashes`: ovs-vswitchd aborts meanwhile, see
    /// [`vswitchd_crashes`]) and returns its log line.
    pub fn record(&mut self, case: &str, step: &str, c: &Converged, crashes: usize) -> String {
        let after = c
            .not_at
            .map(|t| format!("after {:.2}s, ", t.as_secs_f64()))
            .unwrap_or_default();
        let secs = c.by.as_secs_f64();
        if crashes > 0 {
            self.crashed
                .push((case.to_string(), step.to_string(), secs, crashes));
        } else {
            self.steps.push((case.to_string(), step.to_string(), secs));
        }
        format!(
            "{case}: {step}: {after}by {secs:.2}s ({} rounds){}",
            c.rounds,
            if crashes > 0 {
                format!(" (ovs-vswitchd crashed {crashes}x meanwhile: not counted)")
            } else {
                String::new()
            }
        )
    }

    /// Min, median and max over the counted steps, and the slowest step.
    pub fn figures(&self) -> String {
        let mut secs: Vec<&(String, String, f64)> = self.steps.iter().collect();
        if secs.is_empty() {
            return "no step converged".into();
        }
        secs.sort_by(|a, b| a.2.total_cmp(&b.2));
        let max = secs[secs.len() - 1];
        format!(
            "converge times (start of the first matching probe round) over {} steps: min {:.2}s, \
             median {:.2}s, max {:.2}s (max: {} / {}); {} steps overlapped an ovs-vswitchd crash \
             and are left out",
            secs.len(),
            secs[0].2,
            secs[secs.len() / 2].2,
            max.2,
            max.0,
            max.1,
            self.crashed.len()
        )
    }
}

/// The connected cells per service (loopback left out), e.g. `TCP/80 40/72, …`: a one-line
/// picture of a matrix for a test's log.
pub fn summary(m: &Matrix) -> String {
    let n = m.pods.len();
    m.services
        .iter()
        .enumerate()
        .map(|(s, svc)| {
            let open = (0..n)
                .flat_map(|f| (0..n).map(move |t| (f, t)))
                .filter(|&(f, t)| f != t && m.cells[m.index(f, t, s)])
                .count();
            format!("{svc} {open}/{}", n * (n - 1))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> Vec<PodRef> {
        ["x/a", "x/b", "y/a"]
            .iter()
            .map(|k| PodRef::parse(k))
            .collect()
    }

    #[test]
    fn expectations_narrow_by_peer_and_service() {
        let mut m = Matrix::new(pods(), all_services(), true);
        m.expect_to("x/a", false).expect_pair("x/b", "x/a", true);
        m.service(81, Proto::Udp)
            .expect(&Peer::ns("y"), &Peer::any(), false);
        let (xa, xb, ya) = (
            PodRef::parse("x/a"),
            PodRef::parse("x/b"),
            PodRef::parse("y/a"),
        );
        let tcp80 = Service {
            port: 80,
            proto: Proto::Tcp,
        };
        let udp81 = Service {
            port: 81,
            proto: Proto::Udp,
        };
        assert_eq!(m.get(&ya, &xa, tcp80), Some(false));
        assert_eq!(m.get(&xb, &xa, tcp80), Some(true));
        assert_eq!(m.get(&ya, &xb, udp81), Some(false));
        assert_eq!(m.get(&ya, &xb, tcp80), Some(true));
        assert_eq!(m.get(&xa, &ya, udp81), Some(true));
        assert_eq!(tcp80.port_name(), "serve-80-tcp");
    }

    #[test]
    fn loopback_is_ignored_and_mismatches_are_marked() {
        let want = Matrix::new(pods(), all_services(), true);
        let mut got = want.clone();
        got.expect_pair("x/a", "x/a", false);
        assert!(want.mismatches(&got).is_empty(), "loopback must not count");
        got.service(80, Proto::Tcp).expect_pair("y/a", "x/b", false);
        let wrong = want.mismatches(&got);
        assert_eq!(wrong.len(), 1);
        assert_eq!(wrong[0].0, PodRef::parse("y/a"));
        let grid = want.grid(&got);
        assert!(grid.contains("B!"), "{grid}");
        assert!(grid.starts_with("TCP/80"), "{grid}");
    }
}
