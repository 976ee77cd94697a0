//! What a NetworkPolicy puts in the NB, as upstream computes it (pure): the port group of the
//! selected pods, the per-rule, per-family allow/except address sets of pod and namespace
//! peers, the default-drop ACLs of the isolated directions (or only TCP/UDP/SCTP in "lax"
//! enforcement, with DHCP let through), and the allow ACLs per rule — ipBlock peers inline
//! with their `except`s, ports as `==`, ranges as `a <= x <= b`, named ports resolved through
//! the pods' container ports.
//!
//! Names and match text follow upstream byte for byte, so an upstream-written NB is adopted
//! without writes. One deliberate difference: a named port that maps to different numbers on
//! different pods is resolved per pod (one ACL per number, limited to those pods' ports or
//! addresses); upstream takes the first number it saw for the whole namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::{Selector, SelectorExt};
use kube::ResourceExt;
use kube_ovn_nb::objects::{acl_name, NpAddressSet, PgAcl};

use crate::pod_index::PodIndex;
use crate::pod_info::{Nic, PodInfo};

/// Priority of a policy's default drop.
pub const DEFAULT_DROP: i64 = 2000;
/// Priority of a policy's allows.
pub const ALLOW: i64 = 2001;
/// Priority of the node's allow of its own traffic to its pods (kubelet probes).
pub const NODE_ALLOW: i64 = 3000;

/// `ovn.kubernetes.io/enable_log` on a policy.
pub const ENABLE_LOG: &str = "ovn.kubernetes.io/enable_log";
/// `ovn.kubernetes.io/log_acl_actions` on a policy (`allow`, `drop`, comma-separated).
pub const LOG_ACL_ACTIONS: &str = "ovn.kubernetes.io/log_acl_actions";
/// `ovn.kubernetes.io/acl_log_meter_rate` on a policy (packets per second).
pub const ACL_LOG_METER_RATE: &str = "ovn.kubernetes.io/acl_log_meter_rate";
/// `ovn.kubernetes.io/network_policy_enforcement` on a policy (`standard` or `lax`).
pub const ENFORCEMENT: &str = "ovn.kubernetes.io/network_policy_enforcement";

/// `ovn.kubernetes.io/network_policy_for` on a policy (v1.16): the NICs it applies to, `ovn`
/// (the default network) and `<namespace>/<nad>` (that attachment's `.ovn` NIC),
/// comma-separated; absent, every NIC.
pub const POLICY_FOR: &str = "ovn.kubernetes.io/network_policy_for";

/// The providers a policy applies to, as upstream's `parsePolicyFor`: `None` (no annotation)
/// is every provider; invalid entries are skipped, and none valid selects no NIC at all.
pub fn policy_for(np: &NetworkPolicy) -> Option<BTreeSet<String>> {
    let raw = np.annotations().get(POLICY_FOR)?.trim();
    if raw.is_empty() {
        return None;
    }
    let mut providers = BTreeSet::new();
    for t in raw.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if t.eq_ignore_ascii_case("ovn") {
            providers.insert("ovn".to_string());
        } else if let Some((ns, nad)) = t.split_once('/') {
            if !ns.is_empty() && !nad.is_empty() {
                providers.insert(format!("{nad}.{ns}.ovn"));
            }
        }
    }
    Some(providers)
}

/// The pod's NICs that `providers` (a policy's [`policy_for`]) lets the policy see.
fn pod_nics<'a>(
    p: &'a PodInfo,
    providers: Option<&'a BTreeSet<String>>,
) -> impl Iterator<Item = &'a Nic> {
    p.nics()
        .iter()
        .filter(move |n| providers.is_none_or(|set| set.contains(&n.provider)))
}

/// The ports of a pod's OVN NICs the policy's port group holds (allocated ones).
fn pod_ports(p: &PodInfo, ns: &str, providers: Option<&BTreeSet<String>>) -> Vec<String> {
    pod_nics(p, providers)
        .filter(|n| n.allocated && n.switch.is_some())
        .map(|n| kube_ovn_common::names::pod_lsp(&p.name_any(), ns, &n.provider))
        .collect()
}

/// The subnets of a pod's allocated OVN NICs the policy sees (their families shape its rows).
fn pod_switches<'a>(p: &'a PodInfo, providers: Option<&'a BTreeSet<String>>) -> Vec<&'a str> {
    pod_nics(p, providers)
        .filter(|n| n.allocated)
        .filter_map(|n| n.switch.as_deref())
        .collect()
}

/// What the policy reads of the rest of the cluster.
pub struct Cluster<'a> {
    /// Every pod, by namespace.
    pub pods: &'a PodIndex,
    /// Every namespace.
    pub namespaces: &'a [Arc<Namespace>],
    /// `spec.protocol` of a subnet (`IPv4`, `IPv6`, `Dual`).
    pub subnet_protocol: &'a dyn Fn(&str) -> Option<String>,
    /// `--np-enforcement=lax`.
    pub lax_default: bool,
}

/// The NB state of one policy.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// Port group name.
    pub pg: String,
    /// `<ns>/<np>`: the port group's and (with `/<direction>`) the address sets' mark.
    pub np: String,
    /// Ports of the selected pods.
    pub ports: Vec<String>,
    /// Whether ingress is isolated (its ACLs and sets are kept; else removed).
    pub ingress: bool,
    /// Whether egress is isolated.
    pub egress: bool,
    /// Address sets.
    pub address_sets: Vec<NpAddressSet>,
    /// Ingress ACLs.
    pub ingress_acls: Vec<PgAcl>,
    /// Egress ACLs.
    pub egress_acls: Vec<PgAcl>,
    /// Log meters: name → rate (`None`: not wanted).
    pub meters: Vec<(String, Option<i64>)>,
    /// The pods (by `namespace/name`) selected or named as peers: their changes concern it.
    pub concerned: BTreeMap<Arc<str>, Arc<PodInfo>>,
    /// The address families of the selected pods' subnets: which address sets and ACLs exist.
    pub families: BTreeSet<&'static str>,
}

/// Upstream's policy name in NB names: prefixed with `np` unless it starts with a letter.
pub fn np_name(name: &str) -> String {
    if name.chars().next().is_some_and(char::is_alphabetic) {
        name.to_string()
    } else {
        format!("np{name}")
    }
}

/// The port group of a policy.
pub fn pg_name(namespace: &str, np: &str) -> String {
    format!("{}.{namespace}", np_name(np)).replace('-', ".")
}

/// A label selector as a matcher; an invalid one matches nothing.
fn matcher(s: &LabelSelector) -> Option<Selector> {
    Selector::try_from(s.clone()).ok()
}

/// An object's labels, borrowed (none: the empty map): selectors are matched against every
/// pod of the cluster on each reconcile, and a copy per match was most of that time.
fn labels_of(
    m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> &BTreeMap<String, String> {
    static NONE: BTreeMap<String, String> = BTreeMap::new();
    m.labels.as_ref().unwrap_or(&NONE)
}

/// Whether the policy isolates ingress / egress: `policyTypes` as the API server defaults it
/// (always Ingress, Egress with egress rules), then upstream's reading (a listed type, or a
/// rules field of that direction present even if empty).
pub fn directions(np: &NetworkPolicy) -> (bool, bool) {
    let default = NetworkPolicySpec::default();
    let spec = np.spec.as_ref().unwrap_or(&default);
    let mut types = spec.policy_types.clone().unwrap_or_default();
    if types.is_empty() {
        types.push("Ingress".into());
        if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
            types.push("Egress".into());
        }
    }
    let has = |t: &str| types.iter().any(|p| p.contains(t));
    (
        has("Ingress") || spec.ingress.is_some(),
        has("Egress") || spec.egress.is_some(),
    )
}

fn family_of(addr: &str) -> Option<&'static str> {
    let host = addr.split('/').next()?;
    match host.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some("IPv4"),
        IpAddr::V6(_) => Some("IPv6"),
    }
}

/// The pods (not host-network) a peer selects, from the policy's namespace when the peer has
/// no namespace selector.
fn peer_pods<'a>(np_ns: &str, peer: &NetworkPolicyPeer, cx: &Cluster<'a>) -> Vec<&'a Arc<PodInfo>> {
    let namespaces: BTreeSet<String> = match &peer.namespace_selector {
        None => [np_ns.to_string()].into(),
        Some(sel) => match matcher(sel) {
            None => BTreeSet::new(),
            Some(m) => cx
                .namespaces
                .iter()
                .filter(|n| m.matches(labels_of(&n.metadata)))
                .map(|n| n.name_any())
                .collect(),
        },
    };
    let pod_sel = match &peer.pod_selector {
        None => None,
        Some(sel) => match matcher(sel) {
            Some(m) => Some(m),
            None => return Vec::new(),
        },
    };
    namespaces
        .iter()
        .flat_map(|ns| cx.pods.in_namespace(ns))
        .filter(|p| {
            pod_sel
                .as_ref()
                .is_none_or(|m| m.matches(labels_of(&p.metadata)))
        })
        .collect()
}

/// A pod's addresses of `family` on the NICs the policy sees (`<provider>.kubernetes.io/
/// ip_address` of each, as upstream's peer address sets hold them).
fn pod_ips(p: &PodInfo, family: &str, providers: Option<&BTreeSet<String>>) -> Vec<String> {
    pod_addresses(p, family, providers)
        .map(|ip| ip.to_string())
        .collect()
}

/// The pod's addresses of `family` on the NICs the policy sees, as the pod's NIC cache holds
/// them (shared, not copied).
fn pod_addresses<'a>(
    p: &'a PodInfo,
    family: &'a str,
    providers: Option<&'a BTreeSet<String>>,
) -> impl Iterator<Item = &'a Arc<str>> + 'a {
    pod_nics(p, providers)
        .flat_map(|n| &n.ips)
        .filter(move |(_, f)| *f == family)
        .map(|(ip, _)| ip)
}

/// The numbers a named port has on `pods` (container and restartable init container ports).
fn named_port_numbers<'a>(
    name: &str,
    pods: impl Iterator<Item = &'a Arc<PodInfo>>,
) -> BTreeMap<i32, Vec<&'a Arc<PodInfo>>> {
    let mut out: BTreeMap<i32, Vec<&Arc<PodInfo>>> = BTreeMap::new();
    for p in pods {
        if let Some(n) = p.named_port(name) {
            out.entry(n).or_default().push(p);
        }
    }
    out
}

/// One direction's vocabulary.
struct Dir {
    /// `ingress` / `egress`.
    word: &'static str,
    /// `to-lport` / `from-lport`.
    ovn: &'static str,
    /// `outport` / `inport`.
    port: &'static str,
    /// `src` / `dst`: the peer's side.
    peer: &'static str,
}

const INGRESS: Dir = Dir {
    word: "ingress",
    ovn: "to-lport",
    port: "outport",
    peer: "src",
};
const EGRESS: Dir = Dir {
    word: "egress",
    ovn: "from-lport",
    port: "inport",
    peer: "dst",
};

/// How a rule's ports narrow a base match, as upstream writes them; a named port with several
/// numbers among `targets` becomes one match per number restricted by `restrict(pods)`.
fn port_matches(
    base: &str,
    ports: Option<&Vec<NetworkPolicyPort>>,
    targets: &[&Arc<PodInfo>],
    restrict: &dyn Fn(&[&Arc<PodInfo>]) -> String,
) -> Vec<String> {
    let Some(ports) = ports.filter(|p| !p.is_empty()) else {
        return vec![base.to_string()];
    };
    let mut out = Vec::new();
    for p in ports {
        let proto = p.protocol.as_deref().unwrap_or("TCP").to_lowercase();
        match (&p.port, p.end_port) {
            (None, _) => out.push(format!("{base} && {proto}")),
            (Some(IntOrString::Int(n)), None) => out.push(format!("{base} && {proto}.dst == {n}")),
            (Some(IntOrString::Int(n)), Some(end)) => {
                out.push(format!("{base} && {n} <= {proto}.dst <= {end}"))
            }
            // Named ports with a range are not valid Kubernetes; upstream skips them.
            (Some(IntOrString::String(_)), Some(_)) => {}
            (Some(IntOrString::String(name)), None) => {
                let numbers = named_port_numbers(name, targets.iter().copied());
                if numbers.len() == 1 {
                    let n = numbers.keys().next().copied().unwrap_or_default();
                    out.push(format!("{base} && {proto}.dst == {n}"));
                } else {
                    for (n, pods) in &numbers {
                        out.push(format!(
                            "{base} && {proto}.dst == {n} && {}",
                            restrict(pods)
                        ));
                    }
                }
            }
        }
    }
    out
}

/// The inline match of a rule's ipBlock peers of `family` (per-block `except`s, blocks OR'd).
fn ip_block_match(blocks: &[&IPBlock], family: &str, key: &str) -> Option<String> {
    let mut parts = Vec::new();
    for b in blocks {
        if family_of(&b.cidr) != Some(family) {
            continue;
        }
        let Ok(net) = b.cidr.parse::<IpNet>() else {
            continue;
        };
        let excepts: Vec<&str> = b
            .except
            .iter()
            .flatten()
            .filter(|e| family_of(e) == Some(family))
            .filter(|e| e.parse::<IpNet>().is_ok_and(|x| net.contains(&x)))
            .map(String::as_str)
            .collect();
        if excepts.is_empty() {
            parts.push(format!("{key} == {}", b.cidr));
        } else {
            parts.push(format!(
                "{key} == {} && {key} != {{{}}}",
                b.cidr,
                excepts.join(", ")
            ));
        }
    }
    match parts.len() {
        0 => None,
        1 => Some(format!("({})", parts[0])),
        _ => Some(format!(
            "({})",
            parts
                .iter()
                .map(|p| if p.contains("&&") {
                    format!("({p})")
                } else {
                    p.clone()
                })
                .collect::<Vec<_>>()
                .join(" || ")
        )),
    }
}

/// The policy's NB state.
pub fn desired(np: &NetworkPolicy, cx: &Cluster<'_>) -> Desired {
    let ns = np.namespace().unwrap_or_default();
    let name = np_name(&np.name_any());
    let key = format!("{ns}/{}", np.name_any());
    let pg = pg_name(&ns, &np.name_any());
    let spec = np.spec.clone().unwrap_or_default();
    let a = np.annotations();
    let log = a.get(ENABLE_LOG).map(String::as_str) == Some("true");
    let log_actions: Vec<String> = match a.get(LOG_ACL_ACTIONS).filter(|v| !v.is_empty()) {
        Some(v) => v.split(',').map(|s| s.to_string()).collect(),
        None => vec!["drop".into()],
    };
    let rate = a
        .get(ACL_LOG_METER_RATE)
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|r| *r > 0);
    let lax = match a.get(ENFORCEMENT) {
        Some(v) => v == "lax",
        None => cx.lax_default,
    };
    let (ingress, egress) = directions(np);

    // The selected pods: their ports and their subnets' families.
    let selected: Vec<&Arc<PodInfo>> = match matcher(&spec.pod_selector.clone().unwrap_or_default())
    {
        None => Vec::new(),
        Some(m) => cx
            .pods
            .in_namespace(&ns)
            .iter()
            .filter(|p| !p.host_network())
            .filter(|p| m.matches(labels_of(&p.metadata)))
            .collect(),
    };
    let providers = policy_for(np);
    let providers = providers.as_ref();
    let mut ports = Vec::new();
    let mut families = BTreeSet::new();
    for p in &selected {
        ports.extend(pod_ports(p, &ns, providers));
        for proto in pod_switches(p, providers)
            .into_iter()
            .filter_map(|s| (cx.subnet_protocol)(s))
        {
            if proto == "Dual" {
                families.insert("IPv4");
                families.insert("IPv6");
            } else if proto == "IPv4" || proto == "IPv6" {
                families.insert(if proto == "IPv4" { "IPv4" } else { "IPv6" });
            }
        }
    }
    ports.sort();

    let keyed = |p: &Arc<PodInfo>| (p.key().clone(), p.clone());
    let mut concerned: BTreeMap<Arc<str>, Arc<PodInfo>> =
        selected.iter().map(|p| keyed(p)).collect();
    let peers = all_peers(&spec);
    for peer in peers.filter(|p| p.pod_selector.is_some() || p.namespace_selector.is_some()) {
        concerned.extend(peer_pods(&ns, peer, cx).into_iter().map(&keyed));
    }
    // An egress rule to everywhere resolves its named ports on every pod of the namespace.
    if Membership::new(np, &BTreeSet::new()).own_namespace_targets() {
        concerned.extend(cx.pods.in_namespace(&ns).iter().map(keyed));
    }
    let mut out = Desired {
        concerned,
        pg: pg.clone(),
        np: format!("{ns}/{name}"),
        ports,
        ingress,
        egress,
        families: families.clone(),
        ..Desired::default()
    };
    for (dir, isolated, rules) in [
        (
            &INGRESS,
            ingress,
            spec.ingress
                .clone()
                .map(|r| r.into_iter().map(|r| (r.from, r.ports)).collect::<Vec<_>>()),
        ),
        (
            &EGRESS,
            egress,
            spec.egress
                .clone()
                .map(|r| r.into_iter().map(|r| (r.to, r.ports)).collect::<Vec<_>>()),
        ),
    ] {
        let meter = format!("{pg}_{}_meter", dir.ovn);
        if !isolated {
            continue;
        }
        out.meters.push((meter.clone(), rate.filter(|_| log)));
        let meter_of = |on: bool| (on && rate.is_some()).then(|| meter.clone());
        let egress_side = dir.ovn == "from-lport";
        let mut acls = Vec::new();
        if !families.is_empty() {
            let m = if lax {
                format!("{} == @{pg} && (tcp || udp || sctp)", dir.port)
            } else {
                format!("{} == @{pg} && ip", dir.port)
            };
            acls.push(PgAcl {
                direction: dir.ovn,
                priority: DEFAULT_DROP,
                r#match: m,
                action: "drop",
                name: Some(acl_name(&key)),
                log,
                severity: log.then_some("warning"),
                meter: meter_of(log),
                apply_after_lb: egress_side,
            });
            if lax {
                let (v6, v4) = if egress_side {
                    (("546", "547"), ("68", "67"))
                } else {
                    (("547", "546"), ("67", "68"))
                };
                for (fam, (src, dst)) in [("ip6", v6), ("ip4", v4)] {
                    acls.push(PgAcl {
                        direction: dir.ovn,
                        priority: ALLOW,
                        r#match: format!(
                            "{} == @{pg} && udp.src == {src} && udp.dst == {dst} && {fam}",
                            dir.port
                        ),
                        action: "allow-related",
                        name: Some(acl_name(&key)),
                        log: false,
                        severity: None,
                        meter: None,
                        apply_after_lb: egress_side,
                    });
                }
            }
        }
        let allow_log = log && log_actions.iter().any(|a| a == "allow");
        let allow = |m: String, name: &str| PgAcl {
            direction: dir.ovn,
            priority: ALLOW,
            r#match: m,
            action: "allow-related",
            name: Some(acl_name(name)),
            log: allow_log,
            severity: None,
            meter: meter_of(allow_log),
            apply_after_lb: egress_side,
        };
        let prefix = |kind: &str| set_prefix(&name, &ns, dir.word, kind);
        let set = |n: String, addresses: Vec<Arc<str>>| NpAddressSet {
            name: n,
            np: format!("{ns}/{name}/{}", dir.word),
            addresses,
        };
        for family in &families {
            let ipk = format!(
                "{}.{}",
                if *family == "IPv4" { "ip4" } else { "ip6" },
                dir.peer
            );
            let base = |allow_set: &str, except_set: &str| {
                format!(
                    "{} == @{pg} && ip && {ipk} == ${allow_set} && {ipk} != ${except_set}",
                    dir.port
                )
            };
            match &rules {
                Some(rules) if !rules.is_empty() => {
                    for (idx, (peers, rule_ports)) in rules.iter().enumerate() {
                        let allow_name = format!("{}.{family}.{idx}", prefix("allow"));
                        let except_name = format!("{}.{family}.{idx}", prefix("except"));
                        let acl = format!("np/{name}.{ns}/{}/{family}/{idx}", dir.word);
                        let mut addresses = Vec::new();
                        let mut blocks = Vec::new();
                        // Pods a named port is resolved on: the selected ones for ingress,
                        // the peers for egress.
                        let mut targets: Vec<&Arc<PodInfo>> = Vec::new();
                        match peers.as_ref().filter(|p| !p.is_empty()) {
                            None => {
                                addresses.push(Arc::from(if *family == "IPv4" {
                                    "0.0.0.0/0"
                                } else {
                                    "::/0"
                                }));
                                if egress_side {
                                    targets.extend(cx.pods.in_namespace(&ns));
                                }
                            }
                            Some(peers) => {
                                for peer in peers {
                                    if let Some(b) = &peer.ip_block {
                                        blocks.push(b);
                                    }
                                    if peer.pod_selector.is_some()
                                        || peer.namespace_selector.is_some()
                                    {
                                        for p in peer_pods(&ns, peer, cx) {
                                            addresses.extend(
                                                pod_addresses(p, family, providers).cloned(),
                                            );
                                            targets.push(p);
                                        }
                                    }
                                }
                            }
                        }
                        if !egress_side {
                            targets = selected.clone();
                        }
                        let restrict = |pods: &[&Arc<PodInfo>]| -> String {
                            if egress_side {
                                let ips: Vec<String> =
                                    pods.iter().flat_map(|p| pod_ips(p, family, None)).collect();
                                format!("{ipk} == {{{}}}", ips.join(", "))
                            } else {
                                let names: Vec<String> = pods
                                    .iter()
                                    .map(|p| {
                                        format!(
                                            "\"{}\"",
                                            kube_ovn_common::names::pod_lsp(
                                                &p.name_any(),
                                                &ns,
                                                "ovn"
                                            )
                                        )
                                    })
                                    .collect();
                                format!("outport == {{{}}}", names.join(", "))
                            }
                        };
                        addresses.sort();
                        addresses.dedup();
                        let has_selector_allows = !addresses.is_empty();
                        out.address_sets.push(set(allow_name.clone(), addresses));
                        out.address_sets.push(set(except_name.clone(), Vec::new()));
                        if has_selector_allows {
                            for m in port_matches(
                                &base(&allow_name, &except_name),
                                rule_ports.as_ref(),
                                &targets,
                                &restrict,
                            ) {
                                acls.push(allow(m, &acl));
                            }
                        }
                        if let Some(l3) = ip_block_match(&blocks, family, &ipk) {
                            let b = format!("{} == @{pg} && ip && {l3}", dir.port);
                            for m in port_matches(&b, rule_ports.as_ref(), &targets, &restrict) {
                                acls.push(allow(m, &format!("{acl}/ipBlock")));
                            }
                        }
                    }
                }
                _ => {
                    let allow_name = format!("{}.{family}.all", prefix("allow"));
                    let except_name = format!("{}.{family}.all", prefix("except"));
                    out.address_sets.push(set(allow_name.clone(), Vec::new()));
                    out.address_sets.push(set(except_name.clone(), Vec::new()));
                    acls.push(allow(
                        base(&allow_name, &except_name),
                        &format!("np/{name}.{ns}/{}/{family}/all", dir.word),
                    ));
                }
            }
        }
        if egress_side {
            out.egress_acls = acls;
        } else {
            out.ingress_acls = acls;
        }
    }
    out
}

/// The start of a policy's address set names: `<np>.<ns>.<direction>.<allow|except>`, dots
/// for dashes (upstream).
fn set_prefix(np: &str, ns: &str, dir: &str, kind: &str) -> String {
    format!("{np}.{ns}.{dir}.{kind}").replace('-', ".")
}

/// Which namespaces a peer takes its pods from.
#[derive(Debug, Clone)]
enum PeerNamespaces {
    /// The policy's own (no namespace selector).
    Own,
    /// Those whose labels match (an invalid selector: none).
    Matching(Option<Selector>),
}

/// A selector peer of a rule, compiled.
#[derive(Debug, Clone)]
struct PeerSelector {
    namespaces: PeerNamespaces,
    /// `None`: any pod; `Some(None)`: an invalid selector (no pod).
    pods: Option<Option<Selector>>,
}

/// The selector peers of one rule, and (in an isolated direction) its allow sets' stem.
#[derive(Debug, Clone)]
struct RulePeers {
    /// Per family of the policy, the rule's allow set
    /// (`<np>.<ns>.<direction>.allow.<family>.<index>`), named once and shared by the entries
    /// of every pod; empty in a direction the policy does not isolate (its peers still concern
    /// the policy, as upstream watches them).
    sets: Vec<(&'static str, Arc<str>)>,
    peers: Vec<PeerSelector>,
}

impl PeerSelector {
    fn names(
        &self,
        in_own: bool,
        pod_labels: &BTreeMap<String, String>,
        ns: Option<&Namespace>,
    ) -> bool {
        let ns_ok = match &self.namespaces {
            PeerNamespaces::Own => in_own,
            PeerNamespaces::Matching(m) => ns.is_some_and(|n| {
                m.as_ref()
                    .is_some_and(|m| m.matches(labels_of(&n.metadata)))
            }),
        };
        ns_ok
            && match &self.pods {
                None => true,
                Some(m) => m.as_ref().is_some_and(|m| m.matches(pod_labels)),
            }
    }
}

/// Which pods a rule's named ports are resolved on (as [`desired`] resolves them).
#[derive(Debug, Clone)]
enum Targets {
    /// The selected pods (an ingress rule).
    Selected,
    /// The pods the selector peers of `rules[i]` name (an egress rule with peers).
    Peers(usize),
    /// Every pod of the policy's namespace (an egress rule to everywhere).
    OwnNamespace,
}

/// A rule of an isolated direction whose ports name container ports.
#[derive(Debug, Clone)]
struct NamedRule {
    /// `<direction>.<index>`.
    key: String,
    /// The port names it uses.
    names: Vec<String>,
    targets: Targets,
}

/// What decides which of a policy's rows a pod belongs in, compiled once per policy: its pod
/// selector (the port group), its rules' selector peers (the allow address sets, per family)
/// and the pods its named ports are resolved on. A pod's change then costs a look at that pod,
/// not a recompute over every pod.
#[derive(Debug, Clone)]
pub struct Membership {
    ns: String,
    select: Option<Selector>,
    rules: Vec<RulePeers>,
    families: BTreeSet<&'static str>,
    named: Vec<NamedRule>,
    providers: Option<BTreeSet<String>>,
}

/// What one pod contributes to a policy's rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contribution {
    /// Selected (in the policy's namespace, not host-network, labels match).
    pub selected: bool,
    /// Named by a selector peer.
    pub peer: bool,
    /// Its ports in the port group (selected; each allocated OVN NIC the policy sees).
    pub ports: Vec<String>,
    /// The families its subnet gives the policy (selected and allocated).
    pub families: Vec<&'static str>,
    /// `(address set, address)` entries it puts in the allow sets (shared strings: a policy
    /// remembers hundreds of thousands of them).
    pub entries: Vec<(Arc<str>, Arc<str>)>,
    /// `(<direction>.<index>/<port name>, number)`: the number a named port of a rule has on
    /// it, where the rule resolves its named ports on it.
    pub named: Vec<(String, i32)>,
    /// A pod a rule resolves its named ports on (with the port or not).
    pub target: bool,
    /// Its addresses where an egress rule resolves a named port on it: a rule whose named
    /// port has several numbers names the pods of each by address.
    pub target_ips: Vec<String>,
}

impl Contribution {
    /// Whether the pod's changes concern the policy.
    pub fn concerned(&self) -> bool {
        self.selected || self.peer || self.target
    }
}

impl Membership {
    /// Compiles `np`'s selectors for the address families `families` (those of its last full
    /// computation: a pod changing them makes [`Membership::families`] differ).
    pub fn new(np: &NetworkPolicy, families: &BTreeSet<&'static str>) -> Membership {
        let ns = np.namespace().unwrap_or_default();
        let name = np_name(&np.name_any());
        let default = NetworkPolicySpec::default();
        let spec = np.spec.as_ref().unwrap_or(&default);
        let (ingress, egress) = directions(np);
        let compile_peers = |peers: &Option<Vec<NetworkPolicyPeer>>| -> Vec<PeerSelector> {
            peers
                .iter()
                .flatten()
                .filter(|p| p.pod_selector.is_some() || p.namespace_selector.is_some())
                .map(|p| PeerSelector {
                    namespaces: match &p.namespace_selector {
                        None => PeerNamespaces::Own,
                        Some(sel) => PeerNamespaces::Matching(matcher(sel)),
                    },
                    pods: p.pod_selector.as_ref().map(matcher),
                })
                .collect()
        };
        // The port names of a rule (those `port_matches` resolves: without an end port).
        let port_names = |ports: &Option<Vec<NetworkPolicyPort>>| -> Vec<String> {
            let mut names: Vec<String> = ports
                .iter()
                .flatten()
                .filter(|p| p.end_port.is_none())
                .filter_map(|p| match &p.port {
                    Some(IntOrString::String(n)) => Some(n.clone()),
                    _ => None,
                })
                .collect();
            names.sort();
            names.dedup();
            names
        };
        let allow_sets =
            |isolated: bool, word: &str, idx: usize| -> Vec<(&'static str, Arc<str>)> {
                if !isolated {
                    return Vec::new();
                }
                let stem = set_prefix(&name, &ns, word, "allow");
                families
                    .iter()
                    .map(|f| (*f, Arc::from(format!("{stem}.{f}.{idx}"))))
                    .collect()
            };
        let mut rules = Vec::new();
        let mut named = Vec::new();
        for (idx, r) in spec.ingress.iter().flatten().enumerate() {
            let names = port_names(&r.ports);
            if ingress && !names.is_empty() {
                named.push(NamedRule {
                    key: format!("{}.{idx}", INGRESS.word),
                    names,
                    targets: Targets::Selected,
                });
            }
            rules.push(RulePeers {
                sets: allow_sets(ingress, INGRESS.word, idx),
                peers: compile_peers(&r.from),
            });
        }
        for (idx, r) in spec.egress.iter().flatten().enumerate() {
            let names = port_names(&r.ports);
            if egress && !names.is_empty() {
                let to_everywhere = r.to.as_ref().is_none_or(|t| t.is_empty());
                named.push(NamedRule {
                    key: format!("{}.{idx}", EGRESS.word),
                    names,
                    targets: if to_everywhere {
                        Targets::OwnNamespace
                    } else {
                        Targets::Peers(rules.len())
                    },
                });
            }
            rules.push(RulePeers {
                sets: allow_sets(egress, EGRESS.word, idx),
                peers: compile_peers(&r.to),
            });
        }
        Membership {
            select: matcher(&spec.pod_selector.clone().unwrap_or_default()),
            ns,
            rules,
            families: families.clone(),
            named,
            providers: policy_for(np),
        }
    }

    /// Whether a pod of namespace `pod_ns` can concern the policy at all: it is the policy's
    /// own, or a peer selects namespaces.
    pub fn may_concern(&self, pod_ns: &str) -> bool {
        self.ns == pod_ns
            || self
                .rules
                .iter()
                .flat_map(|r| &r.peers)
                .any(|p| matches!(p.namespaces, PeerNamespaces::Matching(_)))
    }

    /// The families the policy's rows were made for.
    pub fn families(&self) -> &BTreeSet<&'static str> {
        &self.families
    }

    /// Whether every pod of the policy's namespace is one a rule resolves its named ports on
    /// (an egress rule to everywhere with named ports).
    fn own_namespace_targets(&self) -> bool {
        self.named
            .iter()
            .any(|r| matches!(r.targets, Targets::OwnNamespace))
    }

    /// Whether a change of `pod` (in namespace `pod_ns`) can concern the policy: the pod
    /// selector matches it (host network or not) or a peer names it. Asked of every policy on
    /// each pod event, so it only matches compiled selectors.
    pub fn concerns(&self, pod: &PodInfo, pod_ns: Option<&Namespace>) -> bool {
        let labels = labels_of(&pod.metadata);
        let in_own = pod.metadata.namespace.as_deref() == Some(self.ns.as_str());
        (in_own
            && (self.own_namespace_targets()
                || self.select.as_ref().is_some_and(|m| m.matches(labels))))
            || self
                .rules
                .iter()
                .flat_map(|r| &r.peers)
                .any(|p| p.names(in_own, labels, pod_ns))
    }

    /// What `pod` (in namespace `pod_ns`) contributes, as [`desired`] places it.
    pub fn contribution(
        &self,
        pod: &PodInfo,
        pod_ns: Option<&Namespace>,
        subnet_protocol: &dyn Fn(&str) -> Option<String>,
    ) -> Contribution {
        let mut c = Contribution::default();
        let labels = labels_of(&pod.metadata);
        let in_own = pod.metadata.namespace.as_deref() == Some(self.ns.as_str());
        c.selected = in_own
            && !pod.host_network()
            && self.select.as_ref().is_some_and(|m| m.matches(labels));
        let providers = self.providers.as_ref();
        if c.selected {
            c.ports = pod_ports(pod, &self.ns, providers);
            for proto in pod_switches(pod, providers)
                .into_iter()
                .filter_map(subnet_protocol)
            {
                match proto.as_str() {
                    "Dual" => c.families.extend(["IPv4", "IPv6"]),
                    "IPv4" => c.families.push("IPv4"),
                    "IPv6" => c.families.push("IPv6"),
                    _ => {}
                }
            }
            c.families.sort();
            c.families.dedup();
        }
        for rule in &self.rules {
            if !rule.peers.iter().any(|p| p.names(in_own, labels, pod_ns)) {
                continue;
            }
            c.peer = true;
            for (family, set) in &rule.sets {
                for ip in pod_addresses(pod, family, providers) {
                    c.entries.push((set.clone(), ip.clone()));
                }
            }
        }
        c.entries.sort();
        c.entries.dedup();
        for rule in &self.named {
            let target = match rule.targets {
                Targets::Selected => c.selected,
                Targets::OwnNamespace => in_own,
                Targets::Peers(i) => self.rules[i]
                    .peers
                    .iter()
                    .any(|p| p.names(in_own, labels, pod_ns)),
            };
            if target {
                c.target = true;
                let mut numbered = false;
                for name in &rule.names {
                    if let Some(n) = pod.named_port(name) {
                        c.named.push((format!("{}/{name}", rule.key), n));
                        numbered = true;
                    }
                }
                if numbered && !matches!(rule.targets, Targets::Selected) && c.target_ips.is_empty()
                {
                    for family in ["IPv4", "IPv6"] {
                        c.target_ips.extend(pod_ips(pod, family, None));
                    }
                }
            }
        }
        c.named.sort();
        c
    }
}

/// Every peer of every rule, ingress and egress.
fn all_peers(spec: &NetworkPolicySpec) -> impl Iterator<Item = &NetworkPolicyPeer> {
    let from = spec
        .ingress
        .iter()
        .flatten()
        .flat_map(|r| r.from.iter().flatten());
    let to = spec
        .egress
        .iter()
        .flatten()
        .flat_map(|r| r.to.iter().flatten());
    from.chain(to)
}

/// Whether a namespace's labels matter to the policy (a peer selects namespaces).
pub fn selects_namespaces(np: &NetworkPolicy) -> bool {
    np.spec
        .as_ref()
        .is_some_and(|spec| all_peers(spec).any(|p| p.namespace_selector.is_some()))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn np(name: &str, spec: Value, annotations: Value) -> NetworkPolicy {
        serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "ns-a", "annotations": annotations},
            "spec": spec,
        }))
        .unwrap()
    }

    fn pod(name: &str, ns: &str, labels: Value, ip: &str, ports: Value) -> Arc<PodInfo> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": {
                    "ovn.kubernetes.io/allocated": "true", "ovn.kubernetes.io/ip_address": ip,
                    "ovn.kubernetes.io/logical_switch": "ovn-default"}},
                "spec": {"containers": [{"name": "c", "ports": ports}]},
            }))
            .unwrap(),
        )
    }

    fn namespace(name: &str, labels: Value) -> Arc<Namespace> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap(),
        )
    }

    fn world() -> (Vec<Arc<PodInfo>>, Vec<Arc<Namespace>>) {
        (
            vec![
                pod(
                    "web",
                    "ns-a",
                    json!({"app": "web"}),
                    "10.16.0.2",
                    json!([{"name": "http", "containerPort": 8080}]),
                ),
                pod("db", "ns-a", json!({"app": "db"}), "10.16.0.3", json!([])),
                pod("cli", "ns-b", json!({"app": "cli"}), "10.16.0.4", json!([])),
            ],
            vec![
                namespace("ns-a", json!({"team": "a"})),
                namespace("ns-b", json!({"team": "b"})),
            ],
        )
    }

    fn cluster<'a>(
        pods: &'a PodIndex,
        nss: &'a [Arc<Namespace>],
        proto: &'a dyn Fn(&str) -> Option<String>,
    ) -> Cluster<'a> {
        Cluster {
            pods,
            namespaces: nss,
            subnet_protocol: proto,
            lax_default: false,
        }
    }

    fn matches(acls: &[PgAcl]) -> Vec<(i64, String, Option<String>)> {
        acls.iter()
            .map(|a| (a.priority, a.r#match.clone(), a.name.clone()))
            .collect()
    }

    #[test]
    fn ingress_from_pods_of_a_namespace_on_a_port_and_a_named_port() {
        let (pods, nss) = world();
        let v4 = |_: &str| Some("IPv4".to_string());
        let p = np(
            "allow-web",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                   "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}],
                                "ports": [{"protocol": "TCP", "port": 80}, {"protocol": "TCP", "port": "http"}]}]}),
            json!({}),
        );
        let d = desired(
            &p,
            &cluster(&PodIndex::new(pods.iter().cloned()), &nss, &v4),
        );
        assert_eq!(d.pg, "allow.web.ns.a");
        assert_eq!(d.np, "ns-a/allow-web");
        assert_eq!(d.ports, ["web.ns-a"]);
        assert!(d.ingress && !d.egress);
        assert!(d.egress_acls.is_empty());
        assert_eq!(
            matches(&d.ingress_acls),
            [
                (2000, "outport == @allow.web.ns.a && ip".to_string(), Some("ns-a/allow-web".to_string())),
                (2001, "outport == @allow.web.ns.a && ip && ip4.src == $allow.web.ns.a.ingress.allow.IPv4.0 && ip4.src != $allow.web.ns.a.ingress.except.IPv4.0 && tcp.dst == 80".to_string(), Some("np/allow-web.ns-a/ingress/IPv4/0".to_string())),
                (2001, "outport == @allow.web.ns.a && ip && ip4.src == $allow.web.ns.a.ingress.allow.IPv4.0 && ip4.src != $allow.web.ns.a.ingress.except.IPv4.0 && tcp.dst == 8080".to_string(), Some("np/allow-web.ns-a/ingress/IPv4/0".to_string())),
            ]
        );
        assert_eq!(
            d.address_sets,
            [
                NpAddressSet {
                    name: "allow.web.ns.a.ingress.allow.IPv4.0".into(),
                    np: "ns-a/allow-web/ingress".into(),
                    addresses: vec!["10.16.0.4".into()]
                },
                NpAddressSet {
                    name: "allow.web.ns.a.ingress.except.IPv4.0".into(),
                    np: "ns-a/allow-web/ingress".into(),
                    addresses: vec![]
                },
            ]
        );
    }

    #[test]
    fn egress_to_ip_blocks_with_excepts_and_a_range_and_everything() {
        let (pods, nss) = world();
        let dual = |_: &str| Some("Dual".to_string());
        let p = np(
            "1st",
            json!({"podSelector": {}, "egress": [
                {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "192.168.0.0/16"]}},
                        {"ipBlock": {"cidr": "172.16.0.0/12"}}],
                 "ports": [{"protocol": "UDP", "port": 5000, "endPort": 5010}]},
                {}]}),
            json!({"ovn.kubernetes.io/enable_log": "true", "ovn.kubernetes.io/log_acl_actions": "allow,drop",
                   "ovn.kubernetes.io/acl_log_meter_rate": "10"}),
        );
        let d = desired(
            &p,
            &cluster(&PodIndex::new(pods.iter().cloned()), &nss, &dual),
        );
        // No policyTypes: defaulted as the API server does — Ingress always, Egress with rules.
        assert!(d.ingress && d.egress);
        assert_eq!(d.pg, "np1st.ns.a");
        let m = matches(&d.egress_acls);
        assert_eq!(
            m[0],
            (
                2000,
                "inport == @np1st.ns.a && ip".to_string(),
                Some("ns-a/1st".to_string())
            )
        );
        assert!(m.contains(&(2001, "inport == @np1st.ns.a && ip && ((ip4.dst == 10.0.0.0/8 && ip4.dst != {10.1.0.0/16}) || ip4.dst == 172.16.0.0/12) && 5000 <= udp.dst <= 5010".to_string(), Some("np/np1st.ns-a/egress/IPv4/0/ipBlock".to_string()))), "{m:#?}");
        assert!(m.contains(&(2001, "inport == @np1st.ns.a && ip && ip6.dst == $np1st.ns.a.egress.allow.IPv6.1 && ip6.dst != $np1st.ns.a.egress.except.IPv6.1".to_string(), Some("np/np1st.ns-a/egress/IPv6/1".to_string()))), "{m:#?}");
        // No selector peers in rule 0: no selector ACL, but its (empty) sets exist.
        assert!(!m.iter().any(|(_, x, _)| x.contains("egress.allow.IPv4.0")));
        assert!(d
            .address_sets
            .iter()
            .any(|s| s.name == "np1st.ns.a.egress.allow.IPv4.0" && s.addresses.is_empty()));
        assert!(d
            .address_sets
            .iter()
            .any(|s| s.name == "np1st.ns.a.egress.allow.IPv6.1"
                && s.addresses == [Arc::from("::/0")]));
        // Logging: the drop logs with severity and meter, the allows log with the meter.
        let drop = &d.egress_acls[0];
        assert!(drop.log && drop.severity == Some("warning") && drop.apply_after_lb);
        assert_eq!(drop.meter.as_deref(), Some("np1st.ns.a_from-lport_meter"));
        assert!(d.egress_acls[1].log && d.egress_acls[1].severity.is_none());
        assert_eq!(
            d.meters,
            [
                ("np1st.ns.a_to-lport_meter".to_string(), Some(10)),
                ("np1st.ns.a_from-lport_meter".to_string(), Some(10))
            ]
        );
    }

    #[test]
    fn lax_enforcement_drops_only_l4_and_lets_dhcp_through() {
        let (pods, nss) = world();
        let v4 = |_: &str| Some("IPv4".to_string());
        let p = np(
            "deny",
            json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
            json!({"ovn.kubernetes.io/network_policy_enforcement": "lax"}),
        );
        let d = desired(
            &p,
            &cluster(&PodIndex::new(pods.iter().cloned()), &nss, &v4),
        );
        assert_eq!(
            matches(&d.ingress_acls),
            [
                (2000, "outport == @deny.ns.a && (tcp || udp || sctp)".to_string(), Some("ns-a/deny".to_string())),
                (2001, "outport == @deny.ns.a && udp.src == 547 && udp.dst == 546 && ip6".to_string(), Some("ns-a/deny".to_string())),
                (2001, "outport == @deny.ns.a && udp.src == 67 && udp.dst == 68 && ip4".to_string(), Some("ns-a/deny".to_string())),
                (2001, "outport == @deny.ns.a && ip && ip4.src == $deny.ns.a.ingress.allow.IPv4.all && ip4.src != $deny.ns.a.ingress.except.IPv4.all".to_string(), Some("np/deny.ns-a/ingress/IPv4/all".to_string())),
            ]
        );
        assert_eq!(d.ports, ["db.ns-a", "web.ns-a"]);
    }

    #[test]
    fn a_named_port_with_two_numbers_is_resolved_per_pod() {
        let pods = [
            pod(
                "a",
                "ns-a",
                json!({"app": "web"}),
                "10.16.0.2",
                json!([{"name": "http", "containerPort": 8080}]),
            ),
            pod(
                "b",
                "ns-a",
                json!({"app": "web"}),
                "10.16.0.3",
                json!([{"name": "http", "containerPort": 9090}]),
            ),
        ];
        let nss = vec![namespace("ns-a", json!({}))];
        let v4 = |_: &str| Some("IPv4".to_string());
        let p = np(
            "n",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"ports": [{"protocol": "TCP", "port": "http"}]}]}),
            json!({}),
        );
        let d = desired(
            &p,
            &cluster(&PodIndex::new(pods.iter().cloned()), &nss, &v4),
        );
        let m: Vec<String> = d.ingress_acls.iter().map(|a| a.r#match.clone()).collect();
        assert!(
            m.iter()
                .any(|x| x.ends_with("tcp.dst == 8080 && outport == {\"a.ns-a\"}")),
            "{m:#?}"
        );
        assert!(
            m.iter()
                .any(|x| x.ends_with("tcp.dst == 9090 && outport == {\"b.ns-a\"}")),
            "{m:#?}"
        );
    }

    #[test]
    fn a_policy_without_spec_concerns_its_namespace_and_unlabelled_pods_match_empty_selectors() {
        let bare: NetworkPolicy = serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "bare", "namespace": "ns-a"},
        }))
        .unwrap();
        let unlabelled: PodInfo = serde_json::from_value(json!({
            "metadata": {"name": "u", "namespace": "ns-a"}, "spec": {"containers": []},
        }))
        .unwrap();
        let elsewhere: PodInfo = serde_json::from_value(json!({
            "metadata": {"name": "e", "namespace": "ns-b"}, "spec": {"containers": []},
        }))
        .unwrap();
        let concerns = |np: &NetworkPolicy, p: &PodInfo, ns: Option<&Namespace>| {
            Membership::new(np, &BTreeSet::new()).concerns(p, ns)
        };
        assert!(concerns(&bare, &unlabelled, None));
        assert!(!concerns(&bare, &elsewhere, None));
        assert_eq!(directions(&bare), (true, false));
        assert!(!selects_namespaces(&bare));
        let all = np(
            "all",
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
            json!({}),
        );
        assert!(concerns(&all, &unlabelled, None));
        assert!(!concerns(&all, &elsewhere, None));
    }

    #[test]
    fn peers_and_selected_pods_concern_the_policy() {
        let (pods, nss) = world();
        let p = np(
            "p",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}, "podSelector": {"matchLabels": {"app": "cli"}}}]}]}),
            json!({}),
        );
        let m = Membership::new(&p, &BTreeSet::new());
        assert!(m.concerns(&pods[0], Some(&nss[0])));
        assert!(!m.concerns(&pods[1], Some(&nss[0])));
        assert!(m.concerns(&pods[2], Some(&nss[1])));
        // A peer of a direction the policy does not isolate still concerns it.
        let q = np(
            "q",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]}]}),
            json!({}),
        );
        let m = Membership::new(&q, &BTreeSet::new());
        assert!(m.concerns(&pods[1], Some(&nss[0])));
        let c = m.contribution(&pods[1], Some(&nss[0]), &|_| None);
        assert!(c.peer && c.entries.is_empty());
        assert!(selects_namespaces(&p));
    }

    /// A pod with the default NIC, a second OVN NIC (`attachnet.ns-a.ovn`) and an IPAM-only
    /// macvlan NIC (`mv.ns-a`, no logical switch).
    fn multi_nic(name: &str, ns: &str, labels: Value, last: u8) -> Arc<PodInfo> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": {
                    "ovn.kubernetes.io/allocated": "true",
                    "ovn.kubernetes.io/ip_address": format!("10.16.0.{last}"),
                    "ovn.kubernetes.io/logical_switch": "ovn-default",
                    "attachnet.ns-a.ovn.kubernetes.io/allocated": "true",
                    "attachnet.ns-a.ovn.kubernetes.io/ip_address": format!("172.30.0.{last}"),
                    "attachnet.ns-a.ovn.kubernetes.io/logical_switch": "attach-ovn",
                    "mv.ns-a.kubernetes.io/allocated": "true",
                    "mv.ns-a.kubernetes.io/ip_address": format!("172.19.0.{last}"),
                }},
                "spec": {"containers": [{"name": "c"}]},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn network_policy_for_parses_as_upstream() {
        let with = |v: &str| np("p", json!({}), json!({ POLICY_FOR: v }));
        assert_eq!(policy_for(&np("p", json!({}), json!({}))), None);
        assert_eq!(policy_for(&with("  ")), None);
        assert_eq!(
            policy_for(&with("OVN, ns-a/attachnet ,bad,/x,y/")),
            Some(["attachnet.ns-a.ovn".to_string(), "ovn".to_string()].into())
        );
        assert_eq!(policy_for(&with("bad")), Some(BTreeSet::new()));
    }

    #[test]
    fn attachments_are_in_the_policy_unless_network_policy_for_leaves_them_out() {
        let pods = [
            multi_nic("web", "ns-a", json!({"app": "web"}), 2),
            multi_nic("cli", "ns-a", json!({"app": "cli"}), 3),
        ];
        let nss = [namespace("ns-a", json!({}))];
        let v4 = |_: &str| Some("IPv4".to_string());
        let index = PodIndex::new(pods.iter().cloned());
        let spec = json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                          "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "cli"}}}]}]});
        let allow_set = |d: &Desired| {
            d.address_sets
                .iter()
                .find(|s| s.name.ends_with("ingress.allow.IPv4.0"))
                .unwrap()
                .addresses
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
        };
        // No annotation: every OVN NIC is in the group, every NIC's address a peer (upstream).
        let all = desired(
            &np("p", spec.clone(), json!({})),
            &cluster(&index, &nss, &v4),
        );
        assert_eq!(all.ports, ["web.ns-a", "web.ns-a.attachnet.ns-a.ovn"]);
        assert_eq!(allow_set(&all), ["10.16.0.3", "172.19.0.3", "172.30.0.3"]);
        // Only the attachment.
        let attach = np("p", spec.clone(), json!({ POLICY_FOR: "ns-a/attachnet" }));
        let d = desired(&attach, &cluster(&index, &nss, &v4));
        assert_eq!(d.ports, ["web.ns-a.attachnet.ns-a.ovn"]);
        assert_eq!(allow_set(&d), ["172.30.0.3"]);
        // Only the default network.
        let d = desired(
            &np("p", spec.clone(), json!({ POLICY_FOR: "ovn" })),
            &cluster(&index, &nss, &v4),
        );
        assert_eq!(d.ports, ["web.ns-a"]);
        assert_eq!(allow_set(&d), ["10.16.0.3"]);
        // The incremental path agrees with the full one.
        let m = Membership::new(&attach, &["IPv4"].into());
        let web = m.contribution(&pods[0], Some(&nss[0]), &v4);
        assert_eq!(web.ports, ["web.ns-a.attachnet.ns-a.ovn"]);
        let cli = m.contribution(&pods[1], Some(&nss[0]), &v4);
        assert!(cli.ports.is_empty());
        assert_eq!(
            cli.entries,
            [(
                Arc::from("p.ns.a.ingress.allow.IPv4.0"),
                Arc::from("172.30.0.3")
            )]
        );
    }
}
