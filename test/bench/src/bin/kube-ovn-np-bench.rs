//! `kube-ovn-np-bench`: the real `kube-ovn-controller` binary compiling NetworkPolicies into
//! port groups, address sets and ACLs at scale.
//!
//! Brings up a sandbox (OVN central, the Kubernetes API fixture, one OVN node, no kubelets) and
//! creates `--nodes` Nodes (the first is the sandbox's OVN node), `--namespaces` labelled
//! namespaces and `--pods` pods with `nodeName` set, so the controller allocates their
//! addresses and makes their ports without kubelets. An independent replica of the whole NB
//! watches everything.
//!
//! * pods: the controller makes every pod's port; the pods of the first node are then bound to
//!   OVS ports on the sandbox's OVN node, so its ovn-controller installs their flows.
//! * small: with that controller running, the policies of the first `--small-percent` of the
//!   namespaces are created; once the NB holds exactly their rows, the row counts and the
//!   node's OVS flow count are taken (the first of two sizes), and the policies are deleted.
//! * cold: the controller is stopped, `--policies` NetworkPolicies (a mix per namespace from
//!   `--seed`: default deny, same-namespace pods, namespaceSelector, namespace and pod
//!   selector, ipBlock with except, port ranges, named ports, egress) are created, and the
//!   controller starts again: the time until every policy's port group holds exactly its
//!   pods' ports and its ACL count, every address set exactly its peers' addresses, and no
//!   other policy row exists; NB transactions and change batches; peak RSS; CPU seconds per
//!   process; then the row counts and the node's OVS flows at full size.
//! * churn: `--churn` pod changes at `--churn-rate` per second in namespaces with policies (a
//!   pod created, a churn pod deleted, or a churn pod relabelled): for each, the time from the
//!   API's acknowledgement until the pod's port is in exactly the port groups and its address
//!   in exactly the address sets it belongs to (p50/p90/p99/max).
//! * warm: the controller is stopped and started again; the time until it has reconciled every
//!   policy and pod, and the NB writes meanwhile (must be none).
//! * churn floor: the controller stopped, the same mix of changes at the same rate written
//!   straight into the NB, each as the one transaction it needs (the pod's port, its port
//!   groups' and address sets' members) while northd and ovn-controller keep working: the
//!   latency no controller can beat on this machine, measured by the same observer.
//! * peer: the policy rows the controller made (port groups, address sets, ACLs, read from the
//!   converged NB) written into a fresh standalone NB with `ovn-nbctl` (one transaction, or a
//!   few when one command line cannot hold them) — the floor the cold time is set against.
//!
//!     cargo run --release -p kube-ovn-bench --bin kube-ovn-np-bench -- --policies 1000 --pods 10000 --namespaces 100
//!
//! Without `--controller`, `kube-ovn-controller` is built in release mode first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube_ovn_bench::{
    argument_budget, bounded, controller_binary, cpu_sample, cpu_sample_pid, fine_secs, from_json,
    lock, megabytes, milestones, nb_quiet, nbctl, northd_caught_up, quantile, say, secs, settle,
    table, verdict, Controller, CpuUse, Metrics, NbServer, Result, Rng, NB_DB, QUIET,
};
use kube_ovn_common::crd;
use kube_ovn_sandbox::{Sandbox, SandboxConfig, SandboxState};
use ovsdb::{
    Atom, ChangeBatch, Condition, Datum, Mutation, Operation, Remote, Replica, ReplicaConfig,
    Transaction,
};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

/// App labels per namespace (`app: a0`…); every namespace has pods of each.
const APPS: usize = 5;
/// Namespace teams (`team: t0`…), the namespaceSelectors' target.
const TEAMS: usize = 10;
/// The containers' named port and its number (one number everywhere, as a Deployment has).
const HTTP: (&str, i32) = ("http", 8080);
/// How long one churn change may take to show in the NB before it counts as lost.
const CHANGE_LIMIT: Duration = Duration::from_secs(60);
/// Churn changes in flight at most.
const CHURN_IN_FLIGHT: usize = 256;
/// Addresses of the default subnet 10.16.0.0/16 the pods may take.
const POD_ADDRESSES: usize = 65_000;
/// The policy kinds of the mix, in the order a namespace's policies cycle through them.
const KINDS: [&str; 8] = [
    "deny", "same", "from-ns", "ns-pods", "ipblock", "egress", "backend", "open",
];

/// Flags.
#[derive(Debug, Parser)]
#[command(
    name = "kube-ovn-np-bench",
    about = "kube-ovn-controller's NetworkPolicies at scale: cold compile and NB convergence, pod churn latency into port groups and address sets, warm restart, row and OVS flow counts, against ovn-nbctl"
)]
struct Args {
    /// NetworkPolicies to create (spread evenly over the namespaces).
    #[arg(long, default_value_t = 1000)]
    policies: usize,
    /// Pods to create (spread evenly over the namespaces).
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Namespaces.
    #[arg(long, default_value_t = 100)]
    namespaces: usize,
    /// Nodes the pods are spread over; the first is the sandbox's OVN node, whose pods are
    /// bound to OVS ports.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Percentage of the namespaces whose policies make the small size (0: no small size).
    #[arg(long, default_value_t = 10)]
    small_percent: usize,
    /// Pod changes in the churn phase.
    #[arg(long, default_value_t = 1000)]
    churn: usize,
    /// Pod changes per second in the churn phase.
    #[arg(long, default_value_t = 100.0)]
    churn_rate: f64,
    /// Seed of the policy mix and the churn's choices.
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
    kube_ovn_bench::run_main("kube-ovn-np-bench", bench(Args::parse()))
}

fn validate(args: &Args) -> Result<()> {
    if args.namespaces == 0 || args.nodes == 0 || args.policies == 0 {
        return Err("--namespaces, --nodes and --policies must be at least 1".into());
    }
    if args.pods < args.namespaces * APPS * 2 {
        return Err(format!(
            "--pods must be at least {} (every namespace holds each of {APPS} apps in both roles)",
            args.namespaces * APPS * 2
        )
        .into());
    }
    if args.pods + args.churn > POD_ADDRESSES {
        return Err(
            format!("--pods + --churn is more than 10.16.0.0/16 holds ({POD_ADDRESSES})").into(),
        );
    }
    if args.nodes > 250 * 256 {
        return Err("--nodes is more than 172.18.0.0/16 holds".into());
    }
    if args.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    if !(args.churn_rate > 0.0 && args.churn_rate.is_finite()) {
        return Err("--churn-rate must be a positive number".into());
    }
    if args.small_percent >= 100 {
        return Err("--small-percent must be below 100".into());
    }
    Ok(())
}

async fn bench(args: Args) -> Result<()> {
    validate(&args)?;
    let binary = controller_binary(args.controller.as_deref())?;
    let logs = std::env::temp_dir().join(format!("kube-ovn-np-bench-{}", std::process::id()));
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
        Err(e) => eprintln!("kube-ovn-np-bench: teardown: {e}"),
        Ok(r) => say(&format!(
            "sandbox down ({} processes, {} namespaces removed)",
            r.processes, r.namespaces
        )),
    }
    let (mut report, rows) = match outcome {
        Ok(r) => r,
        Err(e) => {
            eprintln!("controller logs kept in {}", logs.display());
            return Err(e);
        }
    };
    // The peer runs on the machine the sandbox has left.
    say("peer: the policy rows into a fresh standalone NB…");
    report.peer = peer::run(&rows, &logs).await?;
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

fn namespace_name(i: usize) -> String {
    format!("np-{i}")
}

fn node_name(i: usize) -> String {
    format!("node{}", i + 1)
}

/// A node's InternalIP: the sandbox node's own for the first, else 172.18.0.0/16.
fn node_ip(i: usize, st: &SandboxState) -> String {
    match (i, st.nodes.first()) {
        (0, Some(n)) => n.ip.to_string(),
        _ => Ipv4Addr::new(172, 18, (i / 250) as u8, (i % 250 + 2) as u8).to_string(),
    }
}

/// The logical switch port of a pod (`<pod>.<namespace>`).
fn lsp(ns: &str, pod: &str) -> String {
    kube_ovn_common::names::pod_lsp(pod, ns, "ovn")
}

/// One pod as the benchmark made it (and last changed it).
#[derive(Clone)]
struct PodDef {
    ns: usize,
    name: String,
    app: usize,
    role: &'static str,
    node: usize,
}

impl PodDef {
    fn labels(&self) -> BTreeMap<String, String> {
        [
            ("app".to_string(), format!("a{}", self.app)),
            ("role".to_string(), self.role.to_string()),
        ]
        .into()
    }

    fn pod(&self) -> Pod {
        from_json(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": self.name, "namespace": namespace_name(self.ns),
                         "labels": self.labels()},
            "spec": {
                "nodeName": node_name(self.node),
                "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9",
                                "ports": [{"name": HTTP.0, "containerPort": HTTP.1, "protocol": "TCP"}]}],
            }
        }))
    }

    fn key(&self) -> String {
        format!("{}/{}", namespace_name(self.ns), self.name)
    }

    fn lsp(&self) -> String {
        lsp(&namespace_name(self.ns), &self.name)
    }
}

/// The namespace labels: its team (what the namespaceSelectors pick).
fn namespace_labels(i: usize) -> BTreeMap<String, String> {
    [
        ("team".to_string(), format!("t{}", i % TEAMS)),
        ("kubernetes.io/metadata.name".to_string(), namespace_name(i)),
    ]
    .into()
}

/// The `j`-th policy of namespace `ns`, its kind cycling through [`KINDS`] from a per-namespace
/// offset, its selectors' parameters from `rng`.
fn policy(ns: usize, j: usize, rng: &mut Rng) -> NetworkPolicy {
    let offset = ns % KINDS.len();
    let kind = KINDS[(j + offset) % KINDS.len()];
    let app = |rng: &mut Rng| format!("a{}", rng.below(APPS));
    let team = |rng: &mut Rng| format!("t{}", rng.below(TEAMS));
    let sel = |app: String| json!({"matchLabels": {"app": app}});
    let spec = match kind {
        "deny" => json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
        "same" => json!({
            "podSelector": sel(app(rng)), "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": sel(app(rng))}],
                         "ports": [{"protocol": "TCP", "port": 8080}]}],
        }),
        "from-ns" => json!({
            "podSelector": sel(app(rng)), "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": team(rng)}}}],
                         "ports": [{"protocol": "TCP", "port": HTTP.0}]}],
        }),
        "ns-pods" => json!({
            "podSelector": sel(app(rng)), "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                                      {"key": "team", "operator": "In", "values": [team(rng), team(rng)]}]},
                                   "podSelector": {"matchLabels": {"role": "frontend"}}}],
                         "ports": [{"protocol": "TCP", "port": 9000, "endPort": 9100}]}],
        }),
        "ipblock" => json!({
            "podSelector": sel(app(rng)), "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8",
                                               "except": [format!("10.{}.0.0/16", 100 + rng.below(100))]}},
                                  {"podSelector": sel(app(rng))}],
                         "ports": [{"protocol": "TCP", "port": 443}]}],
        }),
        "egress" => json!({
            "podSelector": sel(app(rng)), "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": sel(app(rng))}],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                       {"to": [{"ipBlock": {"cidr": "172.16.0.0/12", "except": ["172.16.1.0/24"]}}]}],
        }),
        "backend" => json!({
            "podSelector": {"matchLabels": {"role": "backend"}}, "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {}}]}],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"team": team(rng)}}}],
                        "ports": [{"protocol": "TCP", "port": HTTP.0}]}],
        }),
        _ => json!({
            "podSelector": sel(app(rng)), "policyTypes": ["Ingress"],
            "ingress": [{}],
        }),
    };
    from_json(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": format!("{kind}-{j}"), "namespace": namespace_name(ns)},
        "spec": spec,
    }))
}

/// Everything the benchmark made: namespaces, pods (base and churn, as last written, with
/// the addresses the controller gave them), policies.
struct World {
    namespaces: usize,
    /// Key (`ns/name`) → pod.
    pods: Mutex<BTreeMap<String, PodDef>>,
    /// Key → address, once the NB showed the pod's port.
    ips: Mutex<HashMap<String, String>>,
    policies: Vec<NetworkPolicy>,
    /// The policies of the small size (those of the first namespaces).
    small: Vec<NetworkPolicy>,
    /// `policies` and `small` compiled for the expectations.
    compiled: Vec<Compiled>,
    compiled_small: Vec<Compiled>,
}

impl World {
    fn new(args: &Args) -> World {
        let mut pods = BTreeMap::new();
        for i in 0..args.pods {
            let ns = i % args.namespaces;
            let k = i / args.namespaces;
            let p = PodDef {
                ns,
                name: format!("pod-{k}"),
                app: k % APPS,
                role: if (k / APPS).is_multiple_of(2) {
                    "frontend"
                } else {
                    "backend"
                },
                // Round-robin within each namespace: every node (the bound first one too)
                // holds pods of every namespace.
                node: (k + ns) % args.nodes,
            };
            pods.insert(p.key(), p);
        }
        let mut rng = Rng(args.seed);
        let mut policies = Vec::with_capacity(args.policies);
        for i in 0..args.policies {
            let ns = i % args.namespaces;
            policies.push(policy(ns, i / args.namespaces, &mut rng));
        }
        let small_ns = args.namespaces * args.small_percent / 100;
        let small: Vec<NetworkPolicy> = policies
            .iter()
            .filter(|p| {
                ns_index(p.metadata.namespace.as_deref().unwrap_or(""))
                    .is_some_and(|i| i < small_ns)
            })
            .cloned()
            .collect();
        World {
            namespaces: args.namespaces,
            pods: Mutex::new(pods),
            ips: Mutex::default(),
            compiled: policies.iter().filter_map(Compiled::new).collect(),
            compiled_small: small.iter().filter_map(Compiled::new).collect(),
            policies,
            small,
        }
    }

    fn kinds(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for p in &self.policies {
            let name = p.metadata.name.as_deref().unwrap_or("");
            if let Some(k) = KINDS.iter().find(|k| name.starts_with(&format!("{k}-"))) {
                *out.entry(*k).or_insert(0) += 1;
            }
        }
        out
    }
}

fn ns_index(name: &str) -> Option<usize> {
    name.strip_prefix("np-")?.parse().ok()
}

/// A label selector compiled once; an invalid one matches nothing.
struct Sel(Option<Selector>);

impl Sel {
    fn new(sel: &LabelSelector) -> Sel {
        Sel(Selector::try_from(sel.clone()).ok())
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.as_ref().is_some_and(|m| m.matches(labels))
    }
}

/// A rule's peer: its selectors (`None`: the field is absent), and whether it has an ipBlock.
struct Peer {
    namespaces: Option<Sel>,
    pods: Option<Sel>,
    block: bool,
}

impl Peer {
    /// Whether the peer selects pods at all (a pod or namespace selector).
    fn selects(&self) -> bool {
        self.namespaces.is_some() || self.pods.is_some()
    }

    /// Whether pods of namespace `ns` can be selected by the peer of a policy in `np_ns`.
    fn reaches(&self, np_ns: usize, ns: usize) -> bool {
        match &self.namespaces {
            None => self.pods.is_some() && ns == np_ns,
            Some(sel) => sel.matches(&namespace_labels(ns)),
        }
    }

    fn selects_pod(&self, np_ns: usize, pod: &PodView<'_>) -> bool {
        self.selects()
            && self.reaches(np_ns, pod.ns)
            && self.pods.as_ref().is_none_or(|s| s.matches(&pod.labels))
    }
}

/// One rule: its peers (`None`: no peers, everything) and its ports.
struct Rule {
    peers: Option<Vec<Peer>>,
    ports: Option<Vec<NetworkPolicyPort>>,
}

/// A direction's rules as the API holds them: (peers, ports) each.
type RawRules = Vec<(
    Option<Vec<NetworkPolicyPeer>>,
    Option<Vec<NetworkPolicyPort>>,
)>;

/// A policy as the expectation reads it, selectors compiled.
struct Compiled {
    ns: usize,
    pg: String,
    selector: Sel,
    /// (direction word, its rules when the direction is isolated).
    dirs: Vec<(&'static str, Option<Vec<Rule>>)>,
}

impl Compiled {
    fn new(p: &NetworkPolicy) -> Option<Compiled> {
        let ns = ns_index(p.metadata.namespace.as_deref().unwrap_or(""))?;
        let spec = p.spec.clone().unwrap_or_default();
        let types = spec.policy_types.clone().unwrap_or_default();
        let rules = |r: RawRules| {
            r.into_iter()
                .map(|(peers, ports)| Rule {
                    peers: peers.filter(|p| !p.is_empty()).map(|peers| {
                        peers
                            .iter()
                            .map(|peer| Peer {
                                namespaces: peer.namespace_selector.as_ref().map(Sel::new),
                                pods: peer.pod_selector.as_ref().map(Sel::new),
                                block: peer.ip_block.is_some(),
                            })
                            .collect()
                    }),
                    ports,
                })
                .collect::<Vec<_>>()
        };
        let ingress = (types.iter().any(|t| t == "Ingress") || spec.ingress.is_some()).then(|| {
            rules(
                spec.ingress
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| (r.from, r.ports))
                    .collect(),
            )
        });
        let egress = (types.iter().any(|t| t == "Egress") || spec.egress.is_some()).then(|| {
            rules(
                spec.egress
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| (r.to, r.ports))
                    .collect(),
            )
        });
        Some(Compiled {
            ns,
            pg: pg_name(p),
            selector: Sel::new(&spec.pod_selector.unwrap_or_default()),
            dirs: vec![("ingress", ingress), ("egress", egress)],
        })
    }
}

/// The NB rows the benchmark expects of some policies, computed from the Kubernetes
/// semantics of the objects it made (not from the controller's code): each policy's port
/// group with its members and its number of ACLs; each address set with its addresses.
#[derive(Default, Debug, Clone, PartialEq)]
struct Want {
    /// Port group → (member ports, ACL count).
    pgs: BTreeMap<String, (BTreeSet<String>, usize)>,
    /// Address set → addresses.
    sets: BTreeMap<String, BTreeSet<String>>,
}

impl Want {
    /// (port groups, their ports, their ACLs, address sets, their addresses).
    fn totals(&self) -> [usize; 5] {
        [
            self.pgs.len(),
            self.pgs.values().map(|(m, _)| m.len()).sum(),
            self.pgs.values().map(|(_, a)| a).sum(),
            self.sets.len(),
            self.sets.values().map(BTreeSet::len).sum(),
        ]
    }
}

/// One pod as the expectation reads it.
struct PodView<'a> {
    ns: usize,
    labels: BTreeMap<String, String>,
    lsp: String,
    ip: Option<&'a String>,
}

/// A policy's port group as upstream names it: `<np>.<ns>` with dots for dashes.
fn pg_name(p: &NetworkPolicy) -> String {
    let name = p.metadata.name.as_deref().unwrap_or("");
    let name = if name.chars().next().is_some_and(char::is_alphabetic) {
        name.to_string()
    } else {
        format!("np{name}")
    };
    format!("{name}.{}", p.metadata.namespace.as_deref().unwrap_or("")).replace('-', ".")
}

/// The allow/except address sets of rule `idx` of a policy's direction (`None`: the `all`
/// sets of a direction without rules).
fn set_names(pg: &str, dir: &str, idx: Option<usize>) -> (String, String) {
    let at = idx.map_or("all".to_string(), |i| i.to_string());
    (
        format!("{pg}.{dir}.allow.IPv4.{at}"),
        format!("{pg}.{dir}.except.IPv4.{at}"),
    )
}

/// The ACLs a rule's ports make of one allow (one per port; a named port only when some pod
/// it is resolved on has it — every pod here does).
fn port_acls(ports: &Option<Vec<NetworkPolicyPort>>, targets: bool) -> usize {
    match ports.as_ref().filter(|p| !p.is_empty()) {
        None => 1,
        Some(ports) => ports
            .iter()
            .map(|p| match (&p.port, p.end_port) {
                (Some(IntOrString::String(_)), Some(_)) => 0,
                (Some(IntOrString::String(_)), None) => usize::from(targets),
                _ => 1,
            })
            .sum(),
    }
}

/// The NB rows `policies` must make over `pods` (those without an address are not yet
/// allocated: in no port group, in no address set).
fn expected(policies: &[Compiled], pods: &[PodView<'_>], namespaces: usize) -> Want {
    let mut by_ns: Vec<Vec<&PodView<'_>>> = vec![Vec::new(); namespaces];
    for p in pods.iter().filter(|p| p.ip.is_some()) {
        if let Some(v) = by_ns.get_mut(p.ns) {
            v.push(p);
        }
    }
    let mut want = Want::default();
    for np in policies {
        let pg = np.pg.clone();
        let selected: BTreeSet<String> = by_ns[np.ns]
            .iter()
            .filter(|p| np.selector.matches(&p.labels))
            .map(|p| p.lsp.clone())
            .collect();
        let mut acls = 0;
        // Without a selected pod there is no family: no ACL, no address set.
        if !selected.is_empty() {
            for (dir, rules) in &np.dirs {
                let Some(rules) = rules else { continue };
                acls += 1;
                if rules.is_empty() {
                    let (allow, except) = set_names(&pg, dir, None);
                    want.sets.insert(allow, BTreeSet::new());
                    want.sets.insert(except, BTreeSet::new());
                    acls += 1;
                    continue;
                }
                for (idx, rule) in rules.iter().enumerate() {
                    let (allow, except) = set_names(&pg, dir, Some(idx));
                    let mut addresses = BTreeSet::new();
                    let mut blocks = false;
                    let mut peer_pods = false;
                    match &rule.peers {
                        None => {
                            addresses.insert("0.0.0.0/0".to_string());
                            peer_pods = true;
                        }
                        Some(peers) => {
                            for peer in peers {
                                blocks |= peer.block;
                                if !peer.selects() {
                                    continue;
                                }
                                for ns in (0..namespaces).filter(|n| peer.reaches(np.ns, *n)) {
                                    for p in by_ns[ns].iter().filter(|p| peer.selects_pod(np.ns, p))
                                    {
                                        if let Some(ip) = p.ip {
                                            addresses.insert(ip.clone());
                                            peer_pods = true;
                                        }
                                    }
                                }
                            }
                        }
                    }
                    // A named port resolves on the selected pods (ingress) or the peers
                    // (egress).
                    let targets = *dir == "ingress" || peer_pods;
                    if !addresses.is_empty() {
                        acls += port_acls(&rule.ports, targets);
                    }
                    if blocks {
                        acls += port_acls(&rule.ports, targets);
                    }
                    want.sets.insert(allow, addresses);
                    want.sets.insert(except, BTreeSet::new());
                }
            }
        }
        want.pgs.insert(pg, (selected, acls));
    }
    want
}

/// The port groups and address sets one pod belongs to now, and those it could belong to
/// (its namespace's policies' groups; the allow sets of rules whose peers may reach its
/// namespace): membership is checked over the candidates, so "exactly" is checked too.
#[derive(Clone, Default)]
struct Membership {
    pgs: BTreeSet<String>,
    sets: BTreeSet<String>,
    candidate_pgs: Vec<String>,
    candidate_sets: Vec<String>,
}

fn membership(policies: &[Compiled], pod: Option<&PodView<'_>>, ns: usize) -> Membership {
    let mut m = Membership::default();
    for np in policies {
        if np.ns == ns {
            m.candidate_pgs.push(np.pg.clone());
            if pod.is_some_and(|p| np.selector.matches(&p.labels)) {
                m.pgs.insert(np.pg.clone());
            }
        }
        for (dir, rules) in &np.dirs {
            for (idx, rule) in rules.iter().flatten().enumerate() {
                let peers = rule.peers.as_deref().unwrap_or_default();
                if !peers.iter().any(|peer| peer.reaches(np.ns, ns)) {
                    continue;
                }
                let (allow, _) = set_names(&np.pg, dir, Some(idx));
                if pod.is_some_and(|p| peers.iter().any(|peer| peer.selects_pod(np.ns, p))) {
                    m.sets.insert(allow.clone());
                }
                m.candidate_sets.push(allow);
            }
        }
    }
    m
}

/// What creating the objects took.
#[derive(Default)]
struct Setup {
    crds: Duration,
    nodes: Duration,
    namespaces: Duration,
    pods: Duration,
    policies: Duration,
}

async fn create_world(
    client: &kube::Client,
    args: &Args,
    world: &World,
    st: &SandboxState,
) -> Result<Setup> {
    let c = args.concurrency;
    let mut setup = Setup::default();
    let t = Instant::now();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for d in crd::all() {
        crds.create(&PostParams::default(), &d).await?;
    }
    setup.crds = t.elapsed();

    let t = Instant::now();
    let nodes: Api<Node> = Api::all(client.clone());
    bounded(args.nodes, c, |i| {
        let nodes = nodes.clone();
        let node: Node = from_json(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node_name(i), "labels": {"kubernetes.io/hostname": node_name(i)}},
            "status": {"addresses": [
                {"type": "InternalIP", "address": node_ip(i, st)},
                {"type": "Hostname", "address": node_name(i)},
            ]}
        }));
        async move { nodes.create(&PostParams::default(), &node).await.map(drop) }
    })
    .await?;
    setup.nodes = t.elapsed();

    let t = Instant::now();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    bounded(args.namespaces, c, |i| {
        let namespaces = namespaces.clone();
        let ns: Namespace = from_json(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace_name(i), "labels": namespace_labels(i)}
        }));
        async move {
            namespaces
                .create(&PostParams::default(), &ns)
                .await
                .map(drop)
        }
    })
    .await?;
    setup.namespaces = t.elapsed();

    let pods: Vec<PodDef> = lock(&world.pods).values().cloned().collect();
    let t = Instant::now();
    bounded(pods.len(), c, |i| {
        let p = &pods[i];
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace_name(p.ns));
        let pod = p.pod();
        async move { api.create(&PostParams::default(), &pod).await.map(drop) }
    })
    .await?;
    setup.pods = t.elapsed();
    Ok(setup)
}

async fn create_policies(client: &kube::Client, c: usize, nps: &[NetworkPolicy]) -> Result<()> {
    bounded(nps.len(), c, |i| {
        let np = &nps[i];
        let api: Api<NetworkPolicy> = Api::namespaced(
            client.clone(),
            np.metadata.namespace.as_deref().unwrap_or(""),
        );
        async move { api.create(&PostParams::default(), np).await.map(drop) }
    })
    .await
}

async fn delete_policies(client: &kube::Client, c: usize, nps: &[NetworkPolicy]) -> Result<()> {
    bounded(nps.len(), c, |i| {
        let np = &nps[i];
        let api: Api<NetworkPolicy> = Api::namespaced(
            client.clone(),
            np.metadata.namespace.as_deref().unwrap_or(""),
        );
        let name = np.metadata.name.clone().unwrap_or_default();
        async move { api.delete(&name, &DeleteParams::default()).await.map(drop) }
    })
    .await
}

/// The first address of a port's `addresses` (`"<mac> <ip>"`).
fn lsp_ip(row: &ovsdb::Row) -> Option<String> {
    row.get("addresses")
        .and_then(Datum::as_set)?
        .iter()
        .filter_map(Atom::as_str)
        .find_map(|a| a.split_whitespace().nth(1).map(str::to_string))
}

fn text<'a>(row: &'a ovsdb::Row, column: &str) -> Option<&'a str> {
    row.get(column)
        .and_then(Datum::as_atom)
        .and_then(Atom::as_str)
}

fn ext<'a>(row: &'a ovsdb::Row, key: &str) -> Option<&'a str> {
    row.get("external_ids")
        .and_then(|d| d.map_get(key))
        .and_then(Atom::as_str)
}

/// Whether a row is a policy's (kube-ovn's, `external_ids:np` with `slashes` slashes).
fn np_row(row: &ovsdb::Row, slashes: usize) -> bool {
    ext(row, "vendor") == Some("kube-ovn")
        && ext(row, "np").is_some_and(|np| np.matches('/').count() == slashes)
        && ext(row, "node").is_none()
}

/// The policy rows of the NB now, as [`Want`] reads them.
fn nb_want(replica: &Replica) -> Want {
    nb_want_in(&replica.cache())
}

/// [`nb_want`] of a cache already read.
fn nb_want_in(cache: &ovsdb::CacheData) -> Want {
    let mut out = Want::default();
    let lsps = cache.table("Logical_Switch_Port");
    if let Some(t) = cache.table("Port_Group") {
        for (_, r) in t.iter().filter(|(_, r)| np_row(r, 1)) {
            let members: BTreeSet<String> = r
                .get("ports")
                .and_then(Datum::as_set)
                .into_iter()
                .flat_map(|s| s.iter())
                .filter_map(Atom::as_uuid)
                .filter_map(|u| lsps.and_then(|l| l.get(&u)))
                .filter_map(|l| text(l, "name").map(str::to_string))
                .collect();
            let acls = r.get("acls").map_or(0, Datum::len);
            if let Some(name) = text(r, "name") {
                out.pgs.insert(name.to_string(), (members, acls));
            }
        }
    }
    if let Some(t) = cache.table("Address_Set") {
        for (_, r) in t.iter().filter(|(_, r)| np_row(r, 2)) {
            let addresses: BTreeSet<String> = r
                .get("addresses")
                .and_then(Datum::as_set)
                .into_iter()
                .flat_map(|s| s.iter())
                .filter_map(Atom::as_str)
                .map(str::to_string)
                .collect();
            if let Some(name) = text(r, "name") {
                out.sets.insert(name.to_string(), addresses);
            }
        }
    }
    out
}

/// [`Want::totals`] of the NB's policy rows, counted in place.
fn nb_totals(replica: &Replica) -> [usize; 5] {
    let cache = replica.cache();
    let mut out = [0; 5];
    let len = |r: &ovsdb::Row, c: &str| r.get(c).map_or(0, Datum::len);
    if let Some(t) = cache.table("Port_Group") {
        for (_, r) in t.iter().filter(|(_, r)| np_row(r, 1)) {
            out[0] += 1;
            out[1] += len(r, "ports");
            out[2] += len(r, "acls");
        }
    }
    if let Some(t) = cache.table("Address_Set") {
        for (_, r) in t.iter().filter(|(_, r)| np_row(r, 2)) {
            out[3] += 1;
            out[4] += len(r, "addresses");
        }
    }
    out
}

/// The first differences between the NB and `want`.
fn differences(have: &Want, want: &Want) -> Vec<String> {
    let mut out = Vec::new();
    for (pg, (members, acls)) in &want.pgs {
        match have.pgs.get(pg) {
            None => out.push(format!("port group {pg} missing")),
            Some((m, a)) => {
                if m != members {
                    out.push(format!(
                        "port group {pg}: {} ports, want {} ({} missing, {} extra)",
                        m.len(),
                        members.len(),
                        members.difference(m).count(),
                        m.difference(members).count()
                    ));
                }
                if a != acls {
                    out.push(format!("port group {pg}: {a} ACLs, want {acls}"));
                }
            }
        }
    }
    for pg in have.pgs.keys().filter(|p| !want.pgs.contains_key(*p)) {
        out.push(format!("port group {pg} not wanted"));
    }
    for (set, addresses) in &want.sets {
        match have.sets.get(set) {
            None => out.push(format!("address set {set} missing")),
            Some(a) if a != addresses => out.push(format!(
                "address set {set}: {} addresses, want {} ({} missing, {} extra)",
                a.len(),
                addresses.len(),
                addresses.difference(a).count(),
                a.difference(addresses).count()
            )),
            _ => {}
        }
    }
    for set in have.sets.keys().filter(|s| !want.sets.contains_key(*s)) {
        out.push(format!("address set {set} not wanted"));
    }
    out
}

/// The expectation of `policies` over the world's pods as they are now.
fn world_want(world: &World, policies: &[Compiled]) -> Want {
    let pods = lock(&world.pods);
    let ips = lock(&world.ips);
    let views: Vec<PodView<'_>> = pods
        .iter()
        .map(|(key, p)| PodView {
            ns: p.ns,
            labels: p.labels(),
            lsp: p.lsp(),
            ip: ips.get(key),
        })
        .collect();
    expected(policies, &views, world.namespaces)
}

/// NB change batches seen by the replica since a point, and the table.column counts of what
/// changed.
#[derive(Default, Clone)]
struct BatchCount {
    batches: usize,
    /// Batches touching Port_Group, Address_Set or ACL.
    policy_batches: usize,
    /// Batches dropped by a lagging receiver (counted in `batches`, tables unknown).
    lagged: usize,
    columns: BTreeMap<String, usize>,
    /// The first port-group membership changes, by name (what a warm write was about).
    details: Vec<String>,
    last: Option<Instant>,
}

/// How many membership changes a [`BatchCount`] describes by name.
const DETAILS: usize = 10;

impl BatchCount {
    fn add(&mut self, b: &ChangeBatch, at: Instant, name_of: &dyn Fn(&ovsdb::Uuid) -> String) {
        for c in b.changes.iter().filter(|c| c.table == "Port_Group") {
            if self.details.len() >= DETAILS {
                break;
            }
            let ports = |r: &Option<Arc<ovsdb::Row>>| -> BTreeSet<ovsdb::Uuid> {
                r.as_ref()
                    .and_then(|r| r.get("ports"))
                    .and_then(Datum::as_set)
                    .map(|s| s.iter().filter_map(Atom::as_uuid).collect())
                    .unwrap_or_default()
            };
            let (old, new) = (ports(&c.old), ports(&c.new));
            if c.old.is_none() || c.new.is_none() || old == new {
                continue;
            }
            let group = c
                .new
                .as_ref()
                .and_then(|r| r.get("name"))
                .and_then(Datum::as_atom)
                .and_then(Atom::as_str)
                .unwrap_or_default()
                .to_string();
            let names = |set: BTreeSet<&ovsdb::Uuid>| {
                set.into_iter().map(name_of).collect::<Vec<_>>().join(",")
            };
            self.details.push(format!(
                "{group}: -[{}] +[{}]",
                names(old.difference(&new).collect()),
                names(new.difference(&old).collect())
            ));
        }
        self.batches += 1;
        self.last = Some(at);
        if b.changes.iter().any(|c| policy_table(&c.table)) {
            self.policy_batches += 1;
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
            "{} ({} on policy tables{})",
            self.batches,
            self.policy_batches,
            if self.lagged > 0 {
                format!(", {} missed by a lagging reader", self.lagged)
            } else {
                String::new()
            }
        )
    }
}

fn policy_table(t: &str) -> bool {
    matches!(
        t,
        "Port_Group" | "Address_Set" | "ACL" | "Logical_Switch_Port"
    )
}

/// One churn change waiting to show in the NB.
struct Expect {
    kind: &'static str,
    pod: String,
    lsp: String,
    /// The pod's address when known before (deletes and relabels).
    ip: Option<String>,
    /// Deleted: no port, the address in no candidate set.
    gone: bool,
    member: Membership,
    acked: Option<Instant>,
    seen: Option<Instant>,
    /// When a created pod's port first showed (the allocation, before the policies).
    port_seen: Option<Instant>,
    /// When the change was made, and a relabelled pod's new `app` label.
    issued: Instant,
    app: Option<String>,
}

impl Expect {
    /// Whether the replica shows the change; for a created pod, its address is learned.
    fn shown(&mut self, cache: &ovsdb::CacheData, ports: &PortAddresses, now: Instant) -> bool {
        let (Some(lsps), Some(pgs), Some(sets)) = (
            cache.table("Logical_Switch_Port"),
            cache.table("Port_Group"),
            cache.table("Address_Set"),
        ) else {
            return false;
        };
        let port = lsps.by_name(&self.lsp).next();
        if self.gone {
            if port.is_some() {
                return false;
            }
            let Some(ip) = &self.ip else { return true };
            let atom = Atom::from(ip.as_str());
            let in_sets = self.member.candidate_sets.iter().any(|s| {
                sets.by_name(s).any(|(_, r)| {
                    r.get("addresses")
                        .and_then(Datum::as_set)
                        .is_some_and(|a| a.contains(&atom))
                })
            });
            // The address may already be another pod's.
            return !in_sets || ports.used(ip);
        }
        let Some((uuid, row)) = port else {
            return false;
        };
        self.port_seen.get_or_insert(now);
        let Some(ip) = lsp_ip(row) else { return false };
        let uuid = Atom::Uuid(*uuid);
        for pg in &self.member.candidate_pgs {
            let has = pgs.by_name(pg).any(|(_, r)| {
                r.get("ports")
                    .and_then(Datum::as_set)
                    .is_some_and(|s| s.contains(&uuid))
            });
            if has != self.member.pgs.contains(pg) {
                return false;
            }
        }
        let atom = Atom::from(ip.as_str());
        for set in &self.member.candidate_sets {
            let has = sets.by_name(set).any(|(_, r)| {
                r.get("addresses")
                    .and_then(Datum::as_set)
                    .is_some_and(|a| a.contains(&atom))
            });
            if has != self.member.sets.contains(set) {
                return false;
            }
        }
        self.ip = Some(ip);
        true
    }

    /// Whether `touched` can have changed what [`Expect::shown`] finds.
    fn touched_by(&self, touched: &Touched) -> bool {
        touched.all
            || touched.names.contains(&self.lsp)
            || self.ip.as_ref().is_some_and(|ip| touched.ips.contains(ip))
            || self
                .member
                .candidate_pgs
                .iter()
                .chain(&self.member.candidate_sets)
                .any(|n| touched.names.contains(n))
    }
}

/// Which ports hold each address, kept from the replica's batches: a deleted pod's check ("its
/// address may already be another pod's") scanned every port for each pending delete after
/// each batch — 12% of the machine in churn, on the runtime the API fixture shares.
#[derive(Default)]
struct PortAddresses {
    by_port: HashMap<ovsdb::Uuid, String>,
    by_ip: HashMap<String, usize>,
}

impl PortAddresses {
    /// Port `uuid` now holds `ip` (none: deleted). Idempotent, so a batch the cache already
    /// held when the index was built applies harmlessly.
    fn set(&mut self, uuid: ovsdb::Uuid, ip: Option<String>) {
        if let Some(old) = self.by_port.remove(&uuid) {
            if let Some(n) = self.by_ip.get_mut(&old) {
                *n -= 1;
                if *n == 0 {
                    self.by_ip.remove(&old);
                }
            }
        }
        if let Some(ip) = ip {
            *self.by_ip.entry(ip.clone()).or_default() += 1;
            self.by_port.insert(uuid, ip);
        }
    }

    fn rebuild(&mut self, cache: &ovsdb::CacheData) {
        *self = PortAddresses::default();
        for (uuid, row) in cache
            .table("Logical_Switch_Port")
            .into_iter()
            .flat_map(|t| t.iter())
        {
            self.set(*uuid, lsp_ip(row));
        }
    }

    fn used(&self, ip: &str) -> bool {
        self.by_ip.contains_key(ip)
    }
}

/// The names and port addresses one batch changed: only the expectations naming one of them
/// are checked again.
#[derive(Default)]
struct Touched {
    names: std::collections::HashSet<String>,
    ips: std::collections::HashSet<String>,
    all: bool,
}

impl Touched {
    /// Records `b` and keeps `ports` in step with it; whether it touched a policy table.
    fn add(&mut self, b: &ChangeBatch, ports: &mut PortAddresses) -> bool {
        let mut policy = false;
        for c in &b.changes {
            if !policy_table(&c.table) {
                continue;
            }
            policy = true;
            for row in c.old.iter().chain(&c.new) {
                if let Some(name) = text(row, "name") {
                    self.names.insert(name.to_string());
                }
                if c.table == "Logical_Switch_Port" {
                    self.ips.extend(lsp_ip(row));
                }
            }
            if c.table == "Logical_Switch_Port" {
                ports.set(c.uuid, c.new.as_deref().and_then(lsp_ip));
            }
        }
        policy
    }
}

/// A finished churn change.
struct Done {
    kind: &'static str,
    /// A created pod's port in the NB, from the API's acknowledgement.
    port: Option<Duration>,
    pod: String,
    ip: Option<String>,
    gone: bool,
    latency: Duration,
    before_ack: bool,
    /// When the change was sent, and when the API answered.
    issued: Instant,
    acked: Instant,
    /// A relabelled pod's new `app` label.
    app: Option<String>,
}

/// A churn pod as the bench's own pod watch saw it: when, its `app` label, whether the
/// controller had annotated it, whether it was the deletion.
struct PodSeen {
    at: Instant,
    app: Option<String>,
    allocated: bool,
    deleted: bool,
}

/// The bench's own watch of the churn pods, beside the controller's: it tells how long the API
/// takes to deliver a change to a watcher, and when the controller's annotations came back.
struct ApiWatch {
    seen: Arc<Mutex<HashMap<String, Vec<PodSeen>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ApiWatch {
    /// Starts the watch and returns once its first list is in.
    async fn start(client: &kube::Client, limit: Duration) -> Result<ApiWatch> {
        use futures::StreamExt;
        use kube::runtime::watcher::{self, Event};
        let seen: Arc<Mutex<HashMap<String, Vec<PodSeen>>>> = Arc::default();
        let (listed, ready) = tokio::sync::oneshot::channel();
        let api: Api<Pod> = Api::all(client.clone());
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let mut listed = Some(listed);
            let mut events = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
            while let Some(ev) = events.next().await {
                let at = Instant::now();
                let (pod, deleted) = match ev {
                    Ok(Event::Apply(p)) => (p, false),
                    Ok(Event::Delete(p)) => (p, true),
                    Ok(Event::InitDone) => {
                        if let Some(l) = listed.take() {
                            let _ = l.send(());
                        }
                        continue;
                    }
                    _ => continue,
                };
                let name = pod.metadata.name.as_deref().unwrap_or_default();
                if !name.starts_with("churn-") {
                    continue;
                }
                let key = format!(
                    "{}/{name}",
                    pod.metadata.namespace.as_deref().unwrap_or_default()
                );
                let app = pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("app"))
                    .cloned();
                let allocated = pod
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("ovn.kubernetes.io/allocated"))
                    .is_some_and(|v| v == "true");
                lock(&record).entry(key).or_default().push(PodSeen {
                    at,
                    app,
                    allocated,
                    deleted,
                });
            }
        });
        tokio::time::timeout(limit, ready)
            .await
            .map_err(|_| "the bench's pod watch: no first list")?
            .map_err(|_| "the bench's pod watch ended")?;
        Ok(ApiWatch { seen, task })
    }

    /// For change `d`: when this watch saw it, and for a created pod when it saw the
    /// controller's annotations, each from the API's answer (0 when it came before).
    fn delays(&self, d: &Done) -> (Option<Duration>, Option<Duration>) {
        let seen = lock(&self.seen);
        let events = seen
            .get(&d.pod)
            .map(|v| v.iter().filter(|e| e.at >= d.issued).collect::<Vec<_>>())
            .unwrap_or_default();
        let after = |e: &&PodSeen| e.at.saturating_duration_since(d.acked);
        let change = events
            .iter()
            .find(|e| match d.kind {
                "delete" => e.deleted,
                "relabel" => !e.deleted && e.app == d.app,
                _ => !e.deleted,
            })
            .map(after);
        let annotated = (d.kind == "create")
            .then(|| events.iter().find(|e| e.allocated).map(after))
            .flatten();
        (change, annotated)
    }
}

impl Drop for ApiWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The NB as the replica delivers it, consumed by one task: batches counted for the current
/// phase, churn expectations checked against the replica after each policy-table batch.
struct Observer {
    count: Mutex<BatchCount>,
    pending: Mutex<HashMap<usize, Expect>>,
    done: Mutex<Vec<Done>>,
    ports: Mutex<PortAddresses>,
    /// Set when a policy-table batch arrives (the waits' wake-up).
    changed: tokio::sync::Notify,
    stopped: AtomicBool,
}

impl Observer {
    fn start(replica: &Replica) -> Arc<Observer> {
        let me = Arc::new(Observer {
            count: Mutex::default(),
            pending: Mutex::default(),
            done: Mutex::default(),
            ports: Mutex::default(),
            changed: tokio::sync::Notify::new(),
            stopped: AtomicBool::new(false),
        });
        let mut rx = replica.subscribe();
        {
            // The cache before the index, everywhere (the checks' order).
            let cache = replica.cache();
            lock(&me.ports).rebuild(&cache);
        }
        let (state, replica) = (me.clone(), replica.clone());
        tokio::spawn(async move {
            loop {
                let touched = match rx.recv().await {
                    Ok(b) => {
                        let cache = replica.cache();
                        let name_of = |u: &ovsdb::Uuid| {
                            cache
                                .table("Logical_Switch_Port")
                                .and_then(|t| t.get(u))
                                .and_then(|r| r.get("name"))
                                .and_then(Datum::as_atom)
                                .and_then(Atom::as_str)
                                .map(str::to_string)
                                .unwrap_or_else(|| {
                                    let found: Vec<&String> = cache
                                        .table_names()
                                        .filter(|t| cache.table(t).and_then(|x| x.get(u)).is_some())
                                        .collect();
                                    format!("{u} (rows with that uuid: {found:?})")
                                })
                        };
                        lock(&state.count).add(&b, Instant::now(), &name_of);
                        drop(cache);
                        let mut touched = Touched::default();
                        touched.add(&b, &mut lock(&state.ports)).then_some(touched)
                    }
                    Err(RecvError::Lagged(n)) => {
                        let mut c = lock(&state.count);
                        c.batches += n as usize;
                        c.lagged += n as usize;
                        c.last = Some(Instant::now());
                        let cache = replica.cache();
                        lock(&state.ports).rebuild(&cache);
                        drop(cache);
                        Some(Touched {
                            all: true,
                            ..Touched::default()
                        })
                    }
                    Err(RecvError::Closed) => {
                        state.stopped.store(true, Ordering::SeqCst);
                        state.changed.notify_waiters();
                        return;
                    }
                };
                if let Some(touched) = touched {
                    state.check_touched(&replica, &touched);
                    state.changed.notify_waiters();
                }
            }
        });
        me
    }

    fn take_count(&self) -> BatchCount {
        std::mem::take(&mut *lock(&self.count))
    }

    /// Checks the pending changes against the replica as it is now.
    fn check(&self, replica: &Replica) {
        self.check_touched(
            replica,
            &Touched {
                all: true,
                ..Touched::default()
            },
        );
    }

    /// Checks the pending changes `touched` concerns against the replica as it is now.
    fn check_touched(&self, replica: &Replica, touched: &Touched) {
        let mut pending = lock(&self.pending);
        if pending.is_empty() {
            return;
        }
        let now = Instant::now();
        let cache = replica.cache();
        let ports = lock(&self.ports);
        let mut finished = Vec::new();
        for (id, e) in pending.iter_mut() {
            if e.seen.is_none() && e.touched_by(touched) && e.shown(&cache, &ports, now) {
                e.seen = Some(now);
                if e.acked.is_some() {
                    finished.push(*id);
                }
            }
        }
        for id in finished {
            if let Some(e) = pending.remove(&id) {
                self.finish(e);
            }
        }
    }

    fn finish(&self, e: Expect) {
        let (Some(acked), Some(seen)) = (e.acked, e.seen) else {
            return;
        };
        lock(&self.done).push(Done {
            kind: e.kind,
            port: (e.kind == "create")
                .then(|| e.port_seen.map(|p| p.saturating_duration_since(acked)))
                .flatten(),
            pod: e.pod,
            ip: e.ip,
            gone: e.gone,
            latency: seen.saturating_duration_since(acked),
            before_ack: seen < acked,
            issued: e.issued,
            acked,
            app: e.app,
        });
    }

    /// The API acknowledged change `id` at `at`; it may have shown already.
    fn acked(&self, id: usize, at: Instant, replica: &Replica) {
        let mut pending = lock(&self.pending);
        let Some(e) = pending.get_mut(&id) else {
            return;
        };
        e.acked = Some(at);
        let now = Instant::now();
        if e.seen.is_none() && e.shown(&replica.cache(), &lock(&self.ports), now) {
            e.seen = Some(now);
        }
        if e.seen.is_some() {
            if let Some(e) = pending.remove(&id) {
                self.finish(e);
            }
        }
    }

    fn abandon(&self, id: usize) {
        lock(&self.pending).remove(&id);
    }
}

/// Rows of each kind a set of policies made, and the node's OVS flows with them.
#[derive(Default, Clone)]
struct Counts {
    policies: usize,
    port_groups: usize,
    address_sets: usize,
    addresses: usize,
    acls: usize,
    /// OpenFlow flows on the first node's br-int (ovn-controller's), when read.
    flows: Option<u64>,
    /// How long ovn-controller took to catch up (`ovn-nbctl --wait=hv sync`).
    hv_sync: Option<Duration>,
}

impl Counts {
    fn of(want: &Want, policies: usize) -> Counts {
        Counts {
            policies,
            port_groups: want.pgs.len(),
            address_sets: want.sets.len(),
            addresses: want.sets.values().map(BTreeSet::len).sum(),
            acls: want.pgs.values().map(|(_, a)| a).sum(),
            flows: None,
            hv_sync: None,
        }
    }
}

/// Waits until ovn-controller on every chassis has caught up with the NB and reads the first
/// node's OpenFlow flow count.
async fn node_flows(st: &SandboxState, limit: Duration) -> Result<(u64, Duration)> {
    let t = Instant::now();
    let out = tokio::process::Command::new("ovn-nbctl")
        .arg(format!("--db={}", st.central.nb))
        .arg(format!("--timeout={}", limit.as_secs().max(1)))
        .args(["--wait=hv", "sync"])
        .output()
        .await
        .map_err(|e| format!("ovn-nbctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ovn-nbctl --wait=hv sync: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    let took = t.elapsed();
    let node = st.nodes.first().ok_or("the sandbox has no node")?;
    let out = node
        .command("ovs-ofctl")
        .args(["dump-aggregate", "br-int"])
        .output()
        .map_err(|e| format!("ovs-ofctl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let flows = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("flow_count="))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            format!(
                "ovs-ofctl dump-aggregate: {} {}",
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
    Ok((flows, took))
}

/// Binds the first node's pods to OVS internal ports on the sandbox's node (as its CNI
/// would), so its ovn-controller claims them and installs their flows.
fn bind_node_pods(st: &SandboxState, world: &World) -> Result<usize> {
    let node = st.nodes.first().ok_or("the sandbox has no node")?;
    let lsps: Vec<String> = lock(&world.pods)
        .values()
        .filter(|p| p.node == 0)
        .map(PodDef::lsp)
        .collect();
    for chunk in lsps.chunks(200).enumerate() {
        let (c, names) = chunk;
        let mut args: Vec<String> = Vec::new();
        for (k, l) in names.iter().enumerate() {
            let port = format!("np{}", c * 200 + k);
            args.extend(
                [
                    "--",
                    "add-port",
                    "br-int",
                    &port,
                    "--",
                    "set",
                    "interface",
                    &port,
                    "type=internal",
                    &format!("external_ids:iface-id={l}"),
                ]
                .map(String::from),
            );
        }
        node.vsctl(&args)?;
    }
    Ok(lsps.len())
}

/// Waits until the NB's policy rows equal `want` (returns when they did), reporting progress.
async fn converge(
    replica: &Replica,
    observer: &Observer,
    want: &Want,
    what: &str,
    since: Instant,
    limit: Duration,
) -> Result<Duration> {
    let mut last_report = Instant::now();
    let totals = want.totals();
    loop {
        // The row and member counts first (no copies); the full comparison once they match,
        // timed when the cache is read: the NB was right then, and the comparison's own time
        // (a tenth of a second at 1,000 policies) is the bench's, not the controller's.
        if nb_totals(replica) == totals {
            let cache = replica.cache();
            let at = since.elapsed();
            if &nb_want_in(&cache) == want {
                return Ok(at);
            }
        }
        let t = since.elapsed();
        if last_report.elapsed() >= Duration::from_secs(5) {
            let have = nb_want(replica);
            last_report = Instant::now();
            let diff = differences(&have, want);
            say(&format!(
                "  {:>6.1} s  {what}: {} port groups, {} address sets in the NB; {} differences, first: {:?}",
                t.as_secs_f64(),
                have.pgs.len(),
                have.sets.len(),
                diff.len(),
                &diff[..diff.len().min(3)]
            ));
        }
        if t > limit {
            let diff = differences(&nb_want(replica), want);
            return Err(format!(
                "{what}: not converged after {t:?}; {} differences, first: {:?}",
                diff.len(),
                &diff[..diff.len().min(5)]
            )
            .into());
        }
        if observer.stopped.load(Ordering::SeqCst) {
            return Err("the NB replica stopped".into());
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), observer.changed.notified()).await;
    }
}

/// The pods phase: every pod's port in the NB; the addresses learned.
async fn pods_ready(
    replica: &Replica,
    observer: &Observer,
    world: &World,
    ctl: &mut Controller,
    limit: Duration,
) -> Result<Duration> {
    let keys: Vec<(String, String)> = lock(&world.pods)
        .iter()
        .map(|(k, p)| (k.clone(), p.lsp()))
        .collect();
    let mut last_report = Instant::now();
    loop {
        if let Some(status) = ctl.exited() {
            return Err(format!("the controller exited ({status}) while making the pods").into());
        }
        let found: HashMap<String, String> = {
            let cache = replica.cache();
            let t = cache.table("Logical_Switch_Port");
            keys.iter()
                .filter_map(|(k, l)| {
                    let (_, row) = t?.by_name(l).next()?;
                    Some((k.clone(), lsp_ip(row)?))
                })
                .collect()
        };
        let t = ctl.started.elapsed();
        if found.len() == keys.len() {
            *lock(&world.ips) = found;
            return Ok(t);
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            say(&format!(
                "  {:>6.1} s  pod ports in the NB: {}/{}",
                t.as_secs_f64(),
                found.len(),
                keys.len()
            ));
        }
        if t > limit {
            return Err(
                format!("pods: {} of {} ports after {t:?}", found.len(), keys.len()).into(),
            );
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), observer.changed.notified()).await;
    }
}

/// The small size's figures.
#[derive(Default)]
struct Small {
    /// From the first create to the NB holding exactly their rows (a running controller).
    live: Option<Duration>,
    counts: Counts,
}

/// The cold phase's figures.
#[derive(Default)]
struct Cold {
    done: Option<Duration>,
    ready: Option<Duration>,
    last_nb_change: Option<Duration>,
    settled: Option<Duration>,
    transactions: f64,
    operations: f64,
    batches: BatchCount,
    batches_settled: BatchCount,
    peak_rss: Option<u64>,
    cpu: CpuUse,
    cpu_after: CpuUse,
    reconciles: (f64, f64, Option<Duration>),
    milestones: Vec<(String, f64)>,
    counts: Counts,
}

/// The churn phase's figures.
#[derive(Default)]
struct Churn {
    /// Latencies per kind of change, sorted.
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    /// Created pods: acknowledgement to their port in the NB (allocation), sorted.
    ports: Vec<Duration>,
    /// Acknowledgement to the bench's own pod watch seeing the change, sorted.
    delivered: Vec<Duration>,
    /// Created pods: acknowledgement to that watch seeing the controller's annotations, sorted.
    annotated: Vec<Duration>,
    all: Vec<Duration>,
    before_ack: usize,
    lost: usize,
    took: Duration,
    transactions: f64,
    batches: BatchCount,
    peak_rss: Option<u64>,
    cpu: CpuUse,
    exact: bool,
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
    pods_took: Option<Duration>,
    bound: usize,
    /// No policy: the node's flows without any.
    baseline: Counts,
    small: Option<Small>,
    cold: Cold,
    churn: Churn,
    warm: Warm,
    peer: peer::Peer,
    /// The churn's floor (no controller, no API).
    floor: Churn,
}

fn np_reconciles(m: &Metrics) -> (f64, f64, Option<Duration>) {
    (
        m.reconciles("network-policy"),
        m.errors("network-policy"),
        m.mean_latency("network-policy"),
    )
}

async fn measure(
    sandbox: &Sandbox,
    args: &Args,
    world: &World,
    binary: &Path,
    logs: &Path,
) -> Result<(Report, peer::Rows)> {
    let client = sandbox.client();
    let st = sandbox.state();
    let limit = Duration::from_secs(args.timeout);
    let c = args.concurrency;
    let mut report = Report::default();

    say(&format!(
        "creating {} nodes, {} namespaces, {} pods…",
        args.nodes, args.namespaces, args.pods
    ));
    report.setup = create_world(&client, args, world, st).await?;
    let replica = Replica::start(
        ReplicaConfig::new(Remote::parse_list(&st.central.nb)?, NB_DB),
        limit,
    )
    .await?;
    let observer = Observer::start(&replica);

    // Pods: the controller makes every port; the first node's pods are bound.
    say("pods: the controller makes every pod's port…");
    let mut ctl = Controller::start(binary, st, logs.join("controller-pods.log"))?;
    report.pods_took = Some(pods_ready(&replica, &observer, world, &mut ctl, limit).await?);
    settle(&mut ctl, limit).await?;
    report.bound = bind_node_pods(st, world)?;
    let (flows, hv) = node_flows(st, limit).await?;
    report.baseline = Counts {
        flows: Some(flows),
        hv_sync: Some(hv),
        ..Counts::default()
    };
    say(&format!(
        "pods: every port after {:.1} s; {} pods of {} bound to OVS ports",
        report.pods_took.unwrap_or_default().as_secs_f64(),
        report.bound,
        node_name(0)
    ));

    // Small: the policies of the first namespaces, on the running controller.
    if !world.small.is_empty() {
        say(&format!(
            "small: {} policies (the first {}% of the namespaces) on the running controller…",
            world.small.len(),
            args.small_percent
        ));
        let want = world_want(world, &world.compiled_small);
        let t = Instant::now();
        create_policies(&client, c, &world.small).await?;
        let live = converge(&replica, &observer, &want, "small", t, limit).await?;
        let mut counts = Counts::of(&want, world.small.len());
        let (flows, hv) = node_flows(st, limit).await?;
        (counts.flows, counts.hv_sync) = (Some(flows), Some(hv));
        say(&format!(
            "small: converged in {:.2} s; {} ACLs, {} address sets, {flows} OVS flows",
            live.as_secs_f64(),
            counts.acls,
            counts.address_sets
        ));
        report.small = Some(Small {
            live: Some(live),
            counts,
        });
        delete_policies(&client, c, &world.small).await?;
        converge(
            &replica,
            &observer,
            &Want::default(),
            "small deleted",
            Instant::now(),
            limit,
        )
        .await?;
        settle(&mut ctl, limit).await?;
    }
    ctl.stop().await;

    // Cold: every policy created while the controller is down, then it starts.
    say(&format!("creating {} policies…", world.policies.len()));
    let t = Instant::now();
    create_policies(&client, c, &world.policies).await?;
    report.setup.policies = t.elapsed();
    let want = world_want(world, &world.compiled);
    northd_caught_up(&st.central.nb, limit).await?;
    nb_quiet(&replica, limit).await?;
    say(&format!(
        "cold start: {} port groups, {} address sets, {} ACLs wanted…",
        want.pgs.len(),
        want.sets.len(),
        want.pgs.values().map(|(_, a)| a).sum::<usize>()
    ));
    let cold = &mut report.cold;
    observer.take_count();
    let started_wall = SystemTime::now();
    let mut ctl = Controller::start(binary, st, logs.join("controller-cold.log"))?;
    let cpu_start = cpu_sample(&ctl, st);
    let ready = {
        let mut ready = None;
        let conv = converge(&replica, &observer, &want, "cold", ctl.started, limit);
        tokio::pin!(conv);
        loop {
            tokio::select! {
                r = &mut conv => break (r?, ready),
                _ = tokio::time::sleep(Duration::from_millis(50)), if ready.is_none() => {
                    if ctl.ready().await {
                        ready = Some(ctl.started.elapsed());
                    }
                }
            }
        }
    };
    (cold.done, cold.ready) = (Some(ready.0), ready.1);
    cold.cpu = cpu_start.until(&cpu_sample(&ctl, st));
    cold.cpu_after = cpu_sample(&ctl, st);
    cold.batches = lock(&observer.count).clone();
    say(&format!(
        "cold: every policy row right after {:.2} s; waiting for the NB writes to stop…",
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
    cold.reconciles = np_reconciles(&m.metrics);
    cold.peak_rss = ctl.peak_rss();
    cold.milestones = milestones(&logs.join("controller-cold.log"), started_wall);
    cold.counts = Counts::of(&want, world.policies.len());
    let (flows, hv) = node_flows(st, limit).await?;
    (cold.counts.flows, cold.counts.hv_sync) = (Some(flows), Some(hv));
    say(&format!(
        "cold: {flows} OVS flows on {} (ovn-controller caught up in {:.1} s)",
        node_name(0),
        hv.as_secs_f64()
    ));

    say(&format!(
        "churn: {} pod changes at {}/s…",
        args.churn, args.churn_rate
    ));
    report.churn = churn(
        &mut Via::Api {
            client: &client,
            ctl: &mut ctl,
        },
        args,
        world,
        &observer,
        &replica,
        st,
        limit,
    )
    .await?;
    ctl.stop().await;

    // Warm: the same world, converged; the NB must not change.
    northd_caught_up(&st.central.nb, limit).await?;
    nb_quiet(&replica, limit).await?;
    let want = world_want(world, &world.compiled);
    let diff = differences(&nb_want(&replica), &want);
    if !diff.is_empty() {
        return Err(format!(
            "before the warm restart the NB differs from the policies in {} rows, first: {:?}",
            diff.len(),
            &diff[..diff.len().min(5)]
        )
        .into());
    }
    // Before the restart: port-group members the server has no port for, and ports the server
    // and the replica disagree on (a warm write was traced to a group member no table held).
    {
        let db = format!("--db={}", st.central.nb);
        let list = |table: &str, columns: &str| {
            Command::new("ovn-nbctl")
                .args([
                    db.as_str(),
                    "--bare",
                    "--format=csv",
                    "--data=bare",
                    "--no-headings",
                ])
                .args([&format!("--columns={columns}"), "list", table])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        let server_lsps: BTreeSet<String> = list("Logical_Switch_Port", "_uuid")
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        let mut dangling = Vec::new();
        for line in list("Port_Group", "name,ports").lines() {
            let mut fields = line.splitn(2, ',');
            let (name, ports) = (
                fields.next().unwrap_or_default(),
                fields.next().unwrap_or_default(),
            );
            for p in ports.split_whitespace() {
                if !server_lsps.contains(p) {
                    dangling.push(format!("{name}:{p}"));
                }
            }
        }
        let cache = replica.cache();
        let replica_lsps: BTreeSet<String> = cache
            .table("Logical_Switch_Port")
            .map(|t| t.iter().map(|(u, _)| u.to_string()).collect())
            .unwrap_or_default();
        drop(cache);
        let only_server: Vec<_> = server_lsps.difference(&replica_lsps).collect();
        let only_replica: Vec<_> = replica_lsps.difference(&server_lsps).collect();
        say(&format!(
            "before the warm restart: {} group members without a port on the server {:?}; ports only on the server {:?}, only in the replica {:?}",
            dangling.len(),
            dangling.iter().take(5).collect::<Vec<_>>(),
            only_server.iter().take(5).collect::<Vec<_>>(),
            only_replica.iter().take(5).collect::<Vec<_>>()
        ));
    }
    say("warm restart…");
    let pods_now = lock(&world.pods).len() as f64;
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
            let t = ctl.started.elapsed();
            if m.reconciles("network-policy") >= world.policies.len() as f64
                && m.reconciles("pod") >= pods_now
            {
                warm.done = Some(t);
                warm.cpu = cpu_start.until(&cpu_sample(&ctl, st));
                break m;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    say(&format!(
        "warm: every policy and pod reconciled after {:.2} s; watching the NB for {} s more…",
        warm.done.unwrap_or_default().as_secs_f64(),
        QUIET.as_secs()
    ));
    tokio::time::sleep(QUIET).await;
    let late = ctl.metrics().await.unwrap_or(m);
    warm.transactions = late.transactions();
    warm.reconciles = np_reconciles(&late);
    warm.batches = observer.take_count();
    warm.peak_rss = ctl.peak_rss();
    ctl.stop().await;
    let rows = peer::Rows::read(&replica);

    // The churn's floor: the same mix of changes at the same rate, written straight into the
    // NB while northd and ovn-controller keep working.
    northd_caught_up(&st.central.nb, limit).await?;
    nb_quiet(&replica, limit).await?;
    say(&format!(
        "floor: {} pod changes at {}/s written straight into the NB…",
        args.churn, args.churn_rate
    ));
    report.floor = churn(
        &mut Via::Nb(NbWriter::new(&replica)?),
        args,
        world,
        &observer,
        &replica,
        st,
        limit,
    )
    .await?;
    Ok((report, rows))
}

/// Where a churn's changes are made.
enum Via<'a> {
    /// Through the API, for the controller to carry into the NB.
    Api {
        client: &'a kube::Client,
        ctl: &'a mut Controller,
    },
    /// Straight into the NB with no controller running, each change the one transaction it
    /// needs (the pod's port, its groups' and sets' members): the floor the controller's
    /// latencies are set against, on the same machine with the same OVN daemons.
    Nb(NbWriter),
}

/// The floor's writer: the switch its ports join and the addresses it hands out.
struct NbWriter {
    switch: ovsdb::Uuid,
    /// The next candidate address, counting down from the top of the default subnet (the
    /// controller's IPAM fills it from the bottom).
    next_ip: u32,
    transactions: usize,
}

impl NbWriter {
    /// The writer for `replica`'s NB, whose pods' switch is `ovn-default`.
    fn new(replica: &Replica) -> Result<NbWriter> {
        let cache = replica.cache();
        let switch = cache
            .table("Logical_Switch")
            .and_then(|t| t.by_name("ovn-default").next().map(|(u, _)| *u))
            .ok_or("the floor: no switch ovn-default in the NB")?;
        Ok(NbWriter {
            switch,
            next_ip: u32::from(Ipv4Addr::new(10, 16, 255, 254)),
            transactions: 0,
        })
    }

    /// A free address of the default subnet for a new port.
    fn address(&mut self, ports: &PortAddresses) -> Result<String> {
        while self.next_ip > u32::from(Ipv4Addr::new(10, 16, 0, 1)) {
            let ip = Ipv4Addr::from(self.next_ip).to_string();
            self.next_ip -= 1;
            if !ports.used(&ip) {
                return Ok(ip);
            }
        }
        Err("the floor: the default subnet has no free address".into())
    }

    /// The transaction making `change` (`before`: the pod's membership before it).
    fn transaction(
        &mut self,
        change: &Change,
        ip: &str,
        before: &Membership,
        after: &Membership,
        replica: &Replica,
    ) -> Result<Transaction> {
        let mut t = Transaction::new(NB_DB);
        let cache = replica.cache();
        // Rows by uuid, as a controller writing from its cache does (a condition on the name
        // has ovsdb-server scan the table).
        let member = |t: &mut Transaction, table: &str, name: &str, m: Mutation| -> Result<()> {
            let uuid = cache
                .table(table)
                .and_then(|rows| rows.by_name(name).next().map(|(u, _)| *u))
                .ok_or_else(|| format!("the floor: no {table} {name}"))?;
            t.mutate(table, vec![Condition::uuid(uuid)], vec![m]);
            Ok(())
        };
        let port_of = |p: &PodDef| {
            cache
                .table("Logical_Switch_Port")
                .and_then(|t| t.by_name(&p.lsp()).next().map(|(u, _)| *u))
                .ok_or_else(|| format!("the floor: no port {}", p.lsp()))
        };
        let port = match change {
            Change::Create(p) => {
                let mac = format!(
                    "0a:00:{:02x}:{:02x}:{:02x}:{:02x}",
                    self.next_ip >> 24,
                    (self.next_ip >> 16) & 0xff,
                    (self.next_ip >> 8) & 0xff,
                    self.next_ip & 0xff
                );
                let address = format!("{mac} {ip}");
                let row = ovsdb::Row::from([
                    ("name", Datum::scalar(p.lsp())),
                    ("addresses", Datum::scalar(address.as_str())),
                    ("port_security", Datum::scalar(address.as_str())),
                    (
                        "external_ids",
                        Datum::map([
                            ("pod", p.key()),
                            ("ls", "ovn-default".to_string()),
                            ("vendor", "kube-ovn".to_string()),
                        ]),
                    ),
                ]);
                let port = Datum::scalar(Atom::NamedUuid(t.insert("Logical_Switch_Port", row)));
                t.mutate(
                    "Logical_Switch",
                    vec![Condition::uuid(self.switch)],
                    vec![Mutation::insert("ports", port.clone())],
                );
                port
            }
            Change::Delete(p) => {
                let uuid = port_of(p)?;
                t.mutate(
                    "Logical_Switch",
                    vec![Condition::uuid(self.switch)],
                    vec![Mutation::delete("ports", uuid)],
                );
                t.delete("Logical_Switch_Port", vec![Condition::uuid(uuid)]);
                Datum::scalar(uuid)
            }
            Change::Relabel(p) => Datum::scalar(port_of(p)?),
        };
        // What the pod gains in `column` of `table`'s rows named in `after` only, and loses
        // where named in `before` only.
        let mut move_member = |table: &str,
                               column: &str,
                               before: &BTreeSet<String>,
                               after: &BTreeSet<String>,
                               value: &Datum| {
            for name in after.difference(before) {
                member(&mut t, table, name, Mutation::insert(column, value.clone()))?;
            }
            for name in before.difference(after) {
                member(&mut t, table, name, Mutation::delete(column, value.clone()))?;
            }
            Result::Ok(())
        };
        // A deleted port leaves its groups with it (they hold it weakly).
        if !matches!(change, Change::Delete(_)) {
            move_member("Port_Group", "ports", &before.pgs, &after.pgs, &port)?;
        }
        move_member(
            "Address_Set",
            "addresses",
            &before.sets,
            &after.sets,
            &Datum::scalar(ip),
        )?;
        drop(cache);
        if !t.ops.is_empty() {
            self.transactions += 1;
        }
        Ok(t)
    }
}

/// One churn change: a pod created in a random namespace, or a churn pod (one with no change
/// in flight) deleted or relabelled. Base pods are left alone, so every policy keeps its
/// selected pods.
enum Change {
    Create(PodDef),
    Delete(PodDef),
    Relabel(PodDef),
}

impl Change {
    fn pod(&self) -> &PodDef {
        match self {
            Change::Create(p) | Change::Delete(p) | Change::Relabel(p) => p,
        }
    }
}

async fn churn(
    via: &mut Via<'_>,
    args: &Args,
    world: &World,
    observer: &Arc<Observer>,
    replica: &Replica,
    st: &SandboxState,
    limit: Duration,
) -> Result<Churn> {
    let mut out = Churn::default();
    let (before, cpu_start) = match via {
        Via::Api { ctl, .. } => (
            ctl.metrics().await.map_or(0.0, |m| m.transactions()),
            cpu_sample(ctl, st),
        ),
        Via::Nb(_) => (0.0, cpu_sample_pid(None, st)),
    };
    // The API's share of the latencies, seen by a watch of the bench's own.
    let api_watch = match via {
        Via::Api { client, .. } => Some(ApiWatch::start(client, limit).await?),
        Via::Nb(_) => None,
    };
    observer.take_count();
    lock(&observer.done).clear();
    let mut rng = Rng(args.seed ^ 0x5eed);
    let interval = Duration::from_secs_f64(1.0 / args.churn_rate);
    let gate = Arc::new(tokio::sync::Semaphore::new(CHURN_IN_FLIGHT));
    let failed = Arc::new(AtomicUsize::new(0));
    // Churn pods whose last change has shown (free for the next one).
    let mut free: Vec<PodDef> = Vec::new();
    let mut done: Vec<Done> = Vec::new();
    let start = tokio::time::Instant::now();
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut created = 0;
    let prefix = match via {
        Via::Api { .. } => "churn",
        Via::Nb(_) => "floor",
    };
    for id in 0..args.churn {
        tokio::time::sleep_until(start + interval.mul_f64(id as f64)).await;
        // Changes that showed since: their pods are free for the next change.
        let fresh = std::mem::take(&mut *lock(&observer.done));
        for d in fresh {
            if !d.gone {
                if let Some(ip) = &d.ip {
                    lock(&world.ips).insert(d.pod.clone(), ip.clone());
                }
                if let Some(p) = lock(&world.pods).get(&d.pod) {
                    free.push(p.clone());
                }
            }
            done.push(d);
        }
        // The pod as it was (a relabel's old labels), then the change.
        let (change, old) = match (rng.below(3), free.is_empty()) {
            (1, false) => {
                let p = free.swap_remove(rng.below(free.len()));
                (Change::Delete(p.clone()), Some(p))
            }
            (2, false) => {
                let old = free.swap_remove(rng.below(free.len()));
                let mut p = old.clone();
                p.app = (p.app + 1 + rng.below(APPS - 1)) % APPS;
                (Change::Relabel(p), Some(old))
            }
            _ => {
                created += 1;
                let ns = rng.below(world.namespaces);
                let p = PodDef {
                    ns,
                    name: format!("{prefix}-{created}"),
                    app: rng.below(APPS),
                    role: if rng.below(2) == 0 {
                        "frontend"
                    } else {
                        "backend"
                    },
                    node: 1 % args.nodes.max(1),
                };
                (Change::Create(p), None)
            }
        };
        let (kind, gone) = match &change {
            Change::Create(_) => ("create", false),
            Change::Delete(_) => ("delete", true),
            Change::Relabel(_) => ("relabel", false),
        };
        let pod = change.pod().clone();
        let key = pod.key();
        let ip = lock(&world.ips).get(&key).cloned();
        if gone {
            lock(&world.pods).remove(&key);
            lock(&world.ips).remove(&key);
        } else {
            lock(&world.pods).insert(key.clone(), pod.clone());
        }
        let labels = pod.labels();
        let view = |p: &PodDef| PodView {
            ns: p.ns,
            labels: p.labels(),
            lsp: p.lsp(),
            ip: None,
        };
        let member = membership(
            &world.compiled,
            (!gone).then(|| view(&pod)).as_ref(),
            pod.ns,
        );
        // The floor writes the change itself: its transaction, with a new pod's address.
        let write = match via {
            Via::Api { .. } => None,
            Via::Nb(w) => {
                let ip = match &ip {
                    Some(ip) => ip.clone(),
                    None => w.address(&lock(&observer.ports))?,
                };
                let was = membership(&world.compiled, old.as_ref().map(view).as_ref(), pod.ns);
                Some(w.transaction(&change, &ip, &was, &member, replica)?)
            }
        };
        lock(&observer.pending).insert(
            id,
            Expect {
                kind,
                pod: key,
                lsp: pod.lsp(),
                ip,
                gone,
                member,
                acked: None,
                seen: None,
                port_seen: None,
                issued: Instant::now(),
                app: matches!(change, Change::Relabel(_)).then(|| labels["app"].clone()),
            },
        );
        let permit = gate.clone().acquire_owned().await?;
        let (observer, failed, replica) = (observer.clone(), failed.clone(), replica.clone());
        let api = match via {
            Via::Api { client, .. } => Some(Api::<Pod>::namespaced(
                (*client).clone(),
                &namespace_name(pod.ns),
            )),
            Via::Nb(_) => None,
        };
        tasks.spawn(async move {
            // When the change was acknowledged (none: already recorded).
            let r = match (api, write) {
                (Some(api), _) => match change {
                    Change::Create(p) => {
                        api.create(&PostParams::default(), &p.pod()).await.map(drop)
                    }
                    Change::Delete(p) => api
                        .delete(&p.name, &DeleteParams::default())
                        .await
                        .map(drop),
                    Change::Relabel(p) => api
                        .patch(
                            &p.name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"metadata": {"labels": labels}})),
                        )
                        .await
                        .map(drop),
                }
                .map(|()| Some(Instant::now()))
                .map_err(|e| e.to_string()),
                // Timed from the write's start: no API stands before it.
                (None, Some(t)) => {
                    observer.acked(id, Instant::now(), &replica);
                    if t.ops.is_empty() {
                        Ok(None)
                    } else {
                        replica
                            .transact(&t)
                            .await
                            .map(|_| None)
                            .map_err(|e| e.to_string())
                    }
                }
                (None, None) => Err("no way to make the change".to_string()),
            };
            match r {
                Ok(Some(at)) => observer.acked(id, at, &replica),
                Ok(None) => {}
                Err(e) => {
                    say(&format!("  {prefix}: {kind} {}: {e}", pod.name));
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
        let _ = tokio::time::timeout(Duration::from_millis(50), observer.changed.notified()).await;
        observer.check(replica);
    }
    out.took = t0.elapsed();
    out.cpu = cpu_start.until(&match via {
        Via::Api { ctl, .. } => cpu_sample(ctl, st),
        Via::Nb(_) => cpu_sample_pid(None, st),
    });
    let never: Vec<String> = lock(&observer.pending)
        .drain()
        .map(|(_, e)| format!("{} {}", e.kind, e.pod))
        .collect();
    if !never.is_empty() {
        say(&format!(
            "  {prefix}: {} changes never showed, first: {:?}",
            never.len(),
            &never[..never.len().min(5)]
        ));
    }
    out.lost = never.len() + failed.load(Ordering::SeqCst);
    let rest = std::mem::take(&mut *lock(&observer.done));
    for d in &rest {
        if let (false, Some(ip)) = (d.gone, &d.ip) {
            lock(&world.ips).insert(d.pod.clone(), ip.clone());
        }
    }
    done.extend(rest);
    out.before_ack = done.iter().filter(|d| d.before_ack).count();
    for d in &done {
        out.latencies.entry(d.kind).or_default().push(d.latency);
        out.all.push(d.latency);
        out.ports.extend(d.port);
        if let Some(w) = &api_watch {
            let (delivered, annotated) = w.delays(d);
            out.delivered.extend(delivered);
            out.annotated.extend(annotated);
        }
    }
    drop(api_watch);
    out.all.sort();
    out.ports.sort();
    out.delivered.sort();
    out.annotated.sort();
    for l in out.latencies.values_mut() {
        l.sort();
    }
    match via {
        Via::Api { ctl, .. } => {
            let settled = settle(ctl, limit).await?;
            out.transactions = settled.metrics.transactions() - before;
            out.peak_rss = ctl.peak_rss();
        }
        Via::Nb(w) => out.transactions = w.transactions as f64,
    }
    out.batches = observer.take_count();
    let diff = differences(&nb_want(replica), &world_want(world, &world.compiled));
    out.exact = diff.is_empty();
    if !diff.is_empty() {
        say(&format!(
            "  {prefix}: the NB differs from the policies in {} rows, first: {:?}",
            diff.len(),
            &diff[..diff.len().min(5)]
        ));
    }
    let kinds: Vec<String> = out
        .latencies
        .iter()
        .map(|(k, l)| format!("{} {k}", l.len()))
        .collect();
    say(&format!(
        "{prefix}: {} changes ({}) in {:.1} s; {} lost",
        args.churn,
        kinds.join(", "),
        out.took.as_secs_f64(),
        out.lost
    ));
    Ok(out)
}

/// The floor: the policy rows the controller made, written into a fresh standalone NB.
mod peer {
    use super::*;

    /// One ACL as the controller wrote it.
    pub struct AclRow {
        direction: String,
        priority: i64,
        r#match: String,
        action: String,
        name: Option<String>,
        log: bool,
        severity: Option<String>,
        meter: Option<String>,
        options: Vec<(String, String)>,
        external_ids: Vec<(String, String)>,
    }

    /// A policy's port group: name, external_ids, member ports (by name), ACLs.
    pub struct PgRow {
        name: String,
        external_ids: Vec<(String, String)>,
        ports: Vec<String>,
        acls: Vec<AclRow>,
    }

    /// A policy's address set.
    pub struct SetRow {
        name: String,
        external_ids: Vec<(String, String)>,
        addresses: Vec<String>,
    }

    /// The policy rows of the converged NB.
    #[derive(Default)]
    pub struct Rows {
        pgs: Vec<PgRow>,
        sets: Vec<SetRow>,
    }

    fn map_of(row: &ovsdb::Row, column: &str) -> Vec<(String, String)> {
        row.get(column)
            .and_then(Datum::as_map)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
            .collect()
    }

    fn optional(row: &ovsdb::Row, column: &str) -> Option<String> {
        row.get(column)
            .and_then(Datum::as_set)
            .and_then(|s| s.first())
            .or_else(|| row.get(column).and_then(Datum::as_atom))
            .and_then(Atom::as_str)
            .map(str::to_string)
    }

    impl Rows {
        /// Reads the policies' port groups (with their ACLs) and address sets.
        pub fn read(replica: &Replica) -> Rows {
            let cache = replica.cache();
            let (Some(pgs), Some(sets), Some(acls), Some(lsps)) = (
                cache.table("Port_Group"),
                cache.table("Address_Set"),
                cache.table("ACL"),
                cache.table("Logical_Switch_Port"),
            ) else {
                return Rows::default();
            };
            let uuids = |r: &ovsdb::Row, c: &str| -> Vec<ovsdb::Uuid> {
                r.get(c)
                    .and_then(Datum::as_set)
                    .into_iter()
                    .flat_map(|s| s.iter())
                    .filter_map(Atom::as_uuid)
                    .collect()
            };
            let mut out = Rows::default();
            for (_, r) in pgs.iter().filter(|(_, r)| np_row(r, 1)) {
                let acl_rows = uuids(r, "acls")
                    .iter()
                    .filter_map(|u| acls.get(u))
                    .map(|a| AclRow {
                        direction: text(a, "direction").unwrap_or("").to_string(),
                        priority: a
                            .get("priority")
                            .and_then(Datum::as_atom)
                            .and_then(Atom::as_i64)
                            .unwrap_or(0),
                        r#match: text(a, "match").unwrap_or("").to_string(),
                        action: text(a, "action").unwrap_or("").to_string(),
                        name: optional(a, "name"),
                        log: a
                            .get("log")
                            .and_then(Datum::as_atom)
                            .and_then(Atom::as_bool)
                            .unwrap_or(false),
                        severity: optional(a, "severity"),
                        meter: optional(a, "meter"),
                        options: map_of(a, "options"),
                        external_ids: map_of(a, "external_ids"),
                    })
                    .collect();
                out.pgs.push(PgRow {
                    name: text(r, "name").unwrap_or("").to_string(),
                    external_ids: map_of(r, "external_ids"),
                    ports: uuids(r, "ports")
                        .iter()
                        .filter_map(|u| lsps.get(u))
                        .filter_map(|l| text(l, "name").map(str::to_string))
                        .collect(),
                    acls: acl_rows,
                });
            }
            for (_, r) in sets.iter().filter(|(_, r)| np_row(r, 2)) {
                out.sets.push(SetRow {
                    name: text(r, "name").unwrap_or("").to_string(),
                    external_ids: map_of(r, "external_ids"),
                    addresses: r
                        .get("addresses")
                        .and_then(Datum::as_set)
                        .into_iter()
                        .flat_map(|s| s.iter())
                        .filter_map(Atom::as_str)
                        .map(str::to_string)
                        .collect(),
                });
            }
            out
        }

        fn acls(&self) -> usize {
            self.pgs.iter().map(|p| p.acls.len()).sum()
        }
    }

    /// The peer's figures.
    #[derive(Default)]
    pub struct Peer {
        /// Wall time of the ovn-nbctl writes (the server up and the ports made before).
        pub took: Option<Duration>,
        /// ovn-nbctl processes (transactions) it took.
        pub transactions: usize,
        /// Megabytes of arguments.
        pub megabytes: f64,
        /// Rows written: port groups, address sets, ACLs.
        pub rows: (usize, usize, usize),
    }

    /// An OVSDB string in ovn-nbctl's value syntax.
    fn q(s: &str) -> String {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }

    fn ids(column: &str, m: &[(String, String)]) -> Vec<String> {
        m.iter()
            .map(|(k, v)| format!("{column}:{}={}", q(k), q(v)))
            .collect()
    }

    /// Command units (each kept within one transaction): one per address set, one per port
    /// group with its ACLs (`--id=@aN create acl …` referenced by `create port_group`).
    fn units(rows: &Rows, lsp_uuids: &HashMap<String, String>) -> Vec<Vec<Vec<String>>> {
        let mut out = Vec::new();
        for s in &rows.sets {
            let mut cmd = vec![
                "create".to_string(),
                "address_set".into(),
                format!("name={}", q(&s.name)),
                format!(
                    "addresses=[{}]",
                    s.addresses
                        .iter()
                        .map(|a| q(a))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ];
            cmd.extend(ids("external_ids", &s.external_ids));
            out.push(vec![cmd]);
        }
        for (i, pg) in rows.pgs.iter().enumerate() {
            let mut unit = Vec::new();
            let mut refs = Vec::new();
            for (j, a) in pg.acls.iter().enumerate() {
                let id = format!("@a{i}x{j}");
                let mut cmd = vec![
                    format!("--id={id}"),
                    "create".into(),
                    "acl".into(),
                    format!("direction={}", q(&a.direction)),
                    format!("priority={}", a.priority),
                    format!("match={}", q(&a.r#match)),
                    format!("action={}", q(&a.action)),
                    format!("log={}", a.log),
                ];
                if let Some(n) = &a.name {
                    cmd.push(format!("name={}", q(n)));
                }
                if let Some(s) = &a.severity {
                    cmd.push(format!("severity={}", q(s)));
                }
                if let Some(m) = &a.meter {
                    cmd.push(format!("meter={}", q(m)));
                }
                cmd.extend(ids("options", &a.options));
                cmd.extend(ids("external_ids", &a.external_ids));
                unit.push(cmd);
                refs.push(id);
            }
            let ports: Vec<&str> = pg
                .ports
                .iter()
                .filter_map(|p| lsp_uuids.get(p).map(String::as_str))
                .collect();
            let mut cmd = vec![
                "create".to_string(),
                "port_group".into(),
                format!("name={}", q(&pg.name)),
                format!("ports=[{}]", ports.join(",")),
                format!("acls=[{}]", refs.join(",")),
            ];
            cmd.extend(ids("external_ids", &pg.external_ids));
            unit.push(cmd);
            out.push(unit);
        }
        out
    }

    /// ovn-nbctl command lines holding `units`, as few as the argument limit allows.
    fn pack(db: &str, units: Vec<Vec<Vec<String>>>) -> Vec<Vec<String>> {
        let budget = argument_budget();
        let cost = |a: &str| a.len() + 1 + std::mem::size_of::<usize>();
        let head = || vec![db.to_string(), "--timeout=900".to_string()];
        let base: usize = head().iter().map(|a| cost(a)).sum::<usize>() + cost("ovn-nbctl");
        let mut lines = Vec::new();
        let (mut line, mut used) = (head(), base);
        for unit in units {
            let n: usize = unit
                .iter()
                .map(|c| c.iter().map(|a| cost(a)).sum::<usize>() + cost("--"))
                .sum();
            if used + n > budget && line.len() > 2 {
                lines.push(std::mem::replace(&mut line, head()));
                used = base;
            }
            for cmd in unit {
                if line.len() > 2 {
                    line.push("--".into());
                }
                line.extend(cmd);
            }
            used += n;
        }
        if line.len() > 2 {
            lines.push(line);
        }
        lines
    }

    async fn run_lines(lines: Vec<Vec<String>>) -> Result<()> {
        for l in lines {
            let mut cmd = Command::new("ovn-nbctl");
            cmd.args(l);
            tokio::task::spawn_blocking(move || nbctl(cmd)).await??;
        }
        Ok(())
    }

    /// Rows of `table` in the peer.
    async fn count(s: &NbServer, table: &str) -> Result<usize> {
        let c = s.client().await?;
        let mut t = Transaction::new(NB_DB);
        t.push(Operation::Select {
            table: table.into(),
            conditions: Vec::new(),
            columns: Some(vec!["_uuid".into()]),
        });
        let out = c.transact(&t).await?;
        Ok(out
            .results
            .first()
            .and_then(|r| r.rows.as_ref())
            .map_or(0, Vec::len))
    }

    /// The member ports made first (untimed, as the controller found them made), then the
    /// policy rows with ovn-nbctl (timed).
    pub async fn run(rows: &Rows, base: &Path) -> Result<Peer> {
        let s = NbServer::start(base, "np")?;
        let ports: BTreeSet<&String> = rows.pgs.iter().flat_map(|p| p.ports.iter()).collect();
        let mut setup = vec![vec![vec!["ls-add".to_string(), "peer".to_string()]]];
        setup.extend(ports.iter().map(|p| {
            vec![vec![
                "lsp-add".to_string(),
                "peer".to_string(),
                p.to_string(),
            ]]
        }));
        run_lines(pack(&s.db(), setup)).await?;
        let c = s.client().await?;
        let mut t = Transaction::new(NB_DB);
        t.push(Operation::Select {
            table: "Logical_Switch_Port".into(),
            conditions: Vec::new(),
            columns: Some(vec!["_uuid".into(), "name".into()]),
        });
        let out = c.transact(&t).await?;
        let lsp_uuids: HashMap<String, String> = out
            .results
            .first()
            .and_then(|r| r.rows.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|r| {
                Some((
                    r["name"].as_str()?.to_string(),
                    r["_uuid"][1].as_str()?.to_string(),
                ))
            })
            .collect();
        let lines = pack(&s.db(), units(rows, &lsp_uuids));
        let bytes: usize = lines.iter().flatten().map(|a| a.len() + 1).sum();
        let n = lines.len();
        let t = Instant::now();
        run_lines(lines).await?;
        let took = t.elapsed();
        let have = (
            count(&s, "Port_Group").await?,
            count(&s, "Address_Set").await?,
            count(&s, "ACL").await?,
        );
        let want = (rows.pgs.len(), rows.sets.len(), rows.acls());
        if have != want {
            return Err(format!(
                "peer: wrote (port groups, address sets, ACLs) {have:?}, want {want:?}"
            )
            .into());
        }
        say(&format!(
            "  ovn-nbctl: {} port groups, {} address sets, {} ACLs in {n} transaction{} ({:.1} MB of arguments): {}",
            want.0,
            want.1,
            want.2,
            if n == 1 { "" } else { "s" },
            bytes as f64 / 1e6,
            fine_secs(Some(took))
        ));
        Ok(Peer {
            took: Some(took),
            transactions: n,
            megabytes: bytes as f64 / 1e6,
            rows: want,
        })
    }
}

/// The aims: cold < 2 s, churn p99 < 50 ms, no NB write on a warm restart.
const COLD_AIM_SECS: f64 = 2.0;
const P99_AIM_MS: f64 = 50.0;

impl Report {
    /// What failed outright (not a missed aim): lost changes, an NB not matching the world.
    fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (what, c) in [("churn", &self.churn), ("floor", &self.floor)] {
            if c.lost > 0 {
                out.push(format!("{} {what} changes never showed in the NB", c.lost));
            }
            if !c.exact {
                out.push(format!(
                    "the NB did not match the policies after the {what} changes"
                ));
            }
        }
        out
    }

    fn print(&self, args: &Args, world: &World, sandbox: Duration) {
        let (c, ch, w) = (&self.cold, &self.churn, &self.warm);
        let ratio = match (c.done, self.peer.took) {
            (Some(d), Some(f)) if f > Duration::ZERO => {
                format!("×{:.1}", d.as_secs_f64() / f.as_secs_f64())
            }
            _ => "—".into(),
        };
        let under = |d: Option<Duration>, s: f64| d.map(|d| d.as_secs_f64() < s);
        let ms = |d: Option<Duration>| {
            d.map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
                .unwrap_or_else(|| "—".into())
        };
        let quartet = |l: &[Duration]| {
            format!(
                "{} / {} / {} / {}",
                ms(quantile(l, 0.5)),
                ms(quantile(l, 0.9)),
                ms(quantile(l, 0.99)),
                ms(quantile(l, 1.0))
            )
        };
        let p99 = quantile(&ch.all, 0.99);
        let blank = String::new;
        let mut rows: Vec<Vec<String>> = vec![
            vec![
                format!(
                    "cold: {} policies' rows right in the NB",
                    world.policies.len()
                ),
                secs(c.done),
                format!("< {COLD_AIM_SECS} s"),
                verdict(under(c.done, COLD_AIM_SECS)).into(),
            ],
            vec![
                format!(
                    "cold vs floor ({}, ovn-nbctl, {} transaction{})",
                    fine_secs(self.peer.took),
                    self.peer.transactions,
                    if self.peer.transactions == 1 { "" } else { "s" }
                ),
                ratio,
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
                    "cold: controller settled (NB counter unchanged {} s)",
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
                "cold: NB change batches (replica) at done / settled".into(),
                format!("{} / {}", c.batches.text(), c.batches_settled.text()),
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
                    "churn: {} pod changes at {}/s, p50 / p90 / p99 / max ms",
                    args.churn, args.churn_rate
                ),
                quartet(&ch.all),
                format!("p99 < {P99_AIM_MS} ms"),
                verdict(p99.map(|d| d.as_secs_f64() * 1e3 < P99_AIM_MS)).into(),
            ],
        ];
        for (kind, l) in &ch.latencies {
            rows.push(vec![
                format!("churn: {} {kind}, p50 / p90 / p99 / max ms", l.len()),
                quartet(l),
                blank(),
                blank(),
            ]);
            if *kind == "create" {
                rows.push(vec![
                    "churn: create, of which the pod's port (allocation), ms".into(),
                    quartet(&ch.ports),
                    blank(),
                    blank(),
                ]);
                rows.push(vec![
                    "churn: create, of which the controller's annotations back in a watch, ms"
                        .into(),
                    quartet(&ch.annotated),
                    blank(),
                    blank(),
                ]);
            }
        }
        rows.extend([
            vec![
                format!(
                    "churn: {} changes seen by a watch of the bench's own (the API's share), ms",
                    ch.delivered.len()
                ),
                quartet(&ch.delivered),
                blank(),
                blank(),
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
                "churn: NB equals the policies afterwards".into(),
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
                "churn floor: the same changes written straight into the NB (no controller, no API), p50 / p90 / p99 / max ms".into(),
                quartet(&self.floor.all),
                blank(),
                blank(),
            ],
        ]);
        for (kind, l) in &self.floor.latencies {
            rows.push(vec![
                format!("churn floor: {} {kind}, p50 / p90 / p99 / max ms", l.len()),
                quartet(l),
                blank(),
                blank(),
            ]);
        }
        rows.extend([
            vec![
                "churn p99 vs floor p99".into(),
                match (p99, quantile(&self.floor.all, 0.99)) {
                    (Some(c), Some(f)) if f > Duration::ZERO => {
                        format!("×{:.1}", c.as_secs_f64() / f.as_secs_f64())
                    }
                    _ => "—".into(),
                },
                blank(),
                blank(),
            ],
            vec![
                "warm: every policy and pod reconciled".into(),
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
        ]);
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0);
        let kinds: Vec<String> = world
            .kinds()
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        say("");
        say(&format!(
            "kube-ovn-controller NetworkPolicies at scale: {} policies ({}) over {} pods in {} namespaces on {} nodes; {cpus} CPUs",
            world.policies.len(),
            kinds.join(", "),
            args.pods,
            args.namespaces,
            args.nodes
        ));
        say(&format!(
            "setup: sandbox {:.1} s; CRDs {:.1} s, nodes {:.1} s, namespaces {:.1} s, pods {:.1} s, policies {:.1} s (created while the controller was down); pods' ports made in {}; {} pods bound on {}",
            sandbox.as_secs_f64(),
            self.setup.crds.as_secs_f64(),
            self.setup.nodes.as_secs_f64(),
            self.setup.namespaces.as_secs_f64(),
            self.setup.pods.as_secs_f64(),
            self.setup.policies.as_secs_f64(),
            secs(self.pods_took),
            self.bound,
            node_name(0)
        ));
        say("");
        table(&["figure", "measured", "aim", "vs aim"], &rows);
        say("");
        say("rows and flows by size (linear in the policies: per-policy figures stay flat; flows per policy are those above the no-policy baseline):");
        let per = |n: usize, p: usize| {
            if p == 0 {
                "—".to_string()
            } else {
                format!("{:.2}", n as f64 / p as f64)
            }
        };
        let base = self.baseline.flows.unwrap_or(0);
        let mut sizes = vec![("none", &self.baseline)];
        if let Some(s) = &self.small {
            sizes.push(("small", &s.counts));
        }
        sizes.push(("full", &c.counts));
        let size_rows: Vec<Vec<String>> = sizes
            .iter()
            .map(|(name, k)| {
                vec![
                    name.to_string(),
                    k.policies.to_string(),
                    format!("{} ({})", k.port_groups, per(k.port_groups, k.policies)),
                    format!("{} ({})", k.address_sets, per(k.address_sets, k.policies)),
                    format!("{} ({})", k.addresses, per(k.addresses, k.policies)),
                    format!("{} ({})", k.acls, per(k.acls, k.policies)),
                    k.flows.map_or("—".into(), |f| {
                        format!("{f} ({})", per(f.saturating_sub(base) as usize, k.policies))
                    }),
                    secs(k.hv_sync),
                ]
            })
            .collect();
        table(
            &[
                "size",
                "policies",
                "port groups (/policy)",
                "address sets (/policy)",
                "addresses (/policy)",
                "ACLs (/policy)",
                "OVS flows node1 (/policy)",
                "ovn-controller caught up",
            ],
            &size_rows,
        );
        if let Some(s) = &self.small {
            say(&format!(
                "small: {} policies compiled on the running controller in {}",
                s.counts.policies,
                secs(s.live)
            ));
        }
        say(&format!(
            "peer: {} port groups, {} address sets, {} ACLs written by ovn-nbctl in {} in {} transaction{} ({:.1} MB of arguments{})",
            self.peer.rows.0,
            self.peer.rows.1,
            self.peer.rows.2,
            fine_secs(self.peer.took),
            self.peer.transactions,
            if self.peer.transactions == 1 { "" } else { "s" },
            self.peer.megabytes,
            if self.peer.transactions > 1 {
                "; one command line cannot hold them"
            } else {
                ""
            }
        ));
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
        for (name, (n, e, lat)) in [("cold", c.reconciles), ("warm", w.reconciles)] {
            say(&format!(
                "{name} network-policy reconciles: {n:.0} ({e:.0} failed, mean {})",
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
            ("churn floor", &self.floor.cpu, Some(self.floor.took)),
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
            ("churn floor", &self.floor.batches),
        ] {
            if !b.columns.is_empty() {
                say(&format!(
                    "{name} NB changes (table.column: rows): {:?}",
                    b.columns
                ));
            }
            if name == "warm" && !b.details.is_empty() {
                say(&format!(
                    "warm port-group membership changes (first {DETAILS}): {}",
                    b.details.join("; ")
                ));
            }
        }
    }
}
