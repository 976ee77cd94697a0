//! What an AdminNetworkPolicy or the BaselineAdminNetworkPolicy puts in the NB, as upstream
//! computes it (pure): a port group of the subject pods' ports, per rule two address sets
//! (IPv4 and IPv6) of the peers' addresses — pods and namespaces, and for egress also nodes'
//! InternalIPs and CIDRs — and per rule and family with addresses one ACL per port entry:
//! `outport == @<pg> && ip && ip4.src == $<set>` (ingress) or `inport == @<pg> && ip &&
//! ip4.dst == $<set>` (egress), with `&& tcp.dst == 80` or `&& 1000 <= tcp.dst <= 2000`.
//! Named ports match nothing (upstream does not support them in ANP yet), so a rule whose
//! ports are all named has no ACL. Allow is `allow-related`, Deny is `drop`; every ACL has
//! `options:apply-after-lb=true`, `external_ids:{parent,vendor}`, and `log` (with `severity`
//! `warning` on drops) when its action is listed in `ovn.kubernetes.io/log_acl_actions`.
//!
//! ## Precedence on stock OVN 23.03 (no ACL tiers, no `pass`)
//!
//! Upstream master orders the three layers with ACL tiers — ANP in tier 1, NetworkPolicy in
//! tier 2, BANP in tier 3 — and writes a Pass rule as a `pass` ACL that hands the packet to the
//! next tier. The 23.03 NB schema has neither the `tier` column nor the `pass` action, so here:
//!
//! * Every ACL keeps upstream's name, match, priority and columns, without `tier`. Upstream's
//!   priorities already form disjoint bands that give the same order in a single tier:
//!   ANP `30000 - 100 * priority - index` (20001..=30000), above NetworkPolicy (allow 2001,
//!   default drop 2000, the node allows 3000), above BANP `1800 - index` (1701..=1800).
//! * A Pass rule writes no ACL (its address sets are still kept, as upstream). Instead, every
//!   lower-precedence rule of the same policy, direction and family gets
//!   `&& !(<the Pass rule's peer and port test>)` appended for each of the Pass rule's port
//!   entries, so traffic a Pass rule matches skips the policy's later rules and falls through
//!   to NetworkPolicy, then BANP, by priority. Only then does a Deny/Allow ACL's match differ
//!   from upstream's. OVN cannot negate `outport`/`inport` tests, so the exclusion cannot name
//!   another policy's subject: a Pass rule does not stop a lower-priority *other* ANP that
//!   selects the same pods and traffic from applying (upstream's tier does).
//! * BANP rules keep upstream's band below NetworkPolicy. In a single tier they also sit above
//!   a private subnet's 1000/1001 ACLs, which upstream's tier 3 would not (a BANP Allow can
//!   open a private subnet on 23.03).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};
use kube::ResourceExt;
use kube_ovn_common::annotations as ann;
use kube_ovn_common::crd::admin_network_policy::{
    AdminNetworkPolicyPort, AdminNetworkPolicySubject, NamespacedPod,
};
use kube_ovn_common::crd::{AdminNetworkPolicy, BaselineAdminNetworkPolicy};
use kube_ovn_nb::objects::{acl_name, AdminAddressSet, AdminKind, PgAcl};

use crate::dns_names::{Families, Resolved};
use crate::pod_index::pod_key;
use crate::pod_info::PodInfo;

/// The ACL priority of priority-0 ANP's first rule; each ANP priority step is 100 below.
pub const ANP_ACL_MAX_PRIORITY: i64 = 30000;
/// The ACL priority of the BANP's first rule.
pub const BANP_ACL_MAX_PRIORITY: i64 = 1800;
/// The highest ANP priority upstream accepts (its ACL band is 100 wide per step).
pub const ANP_MAX_PRIORITY: i32 = 99;
/// The most ingress (or egress) rules a policy may have.
pub const MAX_RULES: usize = 100;
// The bands must stay disjoint (see the module doc): the BANP's highest priority below
// NetworkPolicy's lowest, ANP's lowest (priority 99, last rule) above the node allows.
const _: () = assert!(BANP_ACL_MAX_PRIORITY < crate::netpol::DEFAULT_DROP);
const _: () = assert!(
    crate::netpol::NODE_ALLOW
        < ANP_ACL_MAX_PRIORITY - 100 * ANP_MAX_PRIORITY as i64 - (MAX_RULES as i64 - 1)
);

/// `ovn.kubernetes.io/log_acl_actions`: the ACL actions (`allow-related`, `drop`) to log.
pub const LOG_ACL_ACTIONS: &str = "ovn.kubernetes.io/log_acl_actions";

/// What the policies read of the rest of the cluster.
pub struct Cluster<'a> {
    /// Every pod.
    pub pods: &'a [Arc<PodInfo>],
    /// Every namespace.
    pub namespaces: &'a [Arc<Namespace>],
    /// Every node.
    pub nodes: &'a [Arc<Node>],
    /// The addresses domain names resolved to (`None`: `--enable-dns-name-resolver` is off).
    pub domains: Option<&'a Resolved>,
}

/// The NB state of one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Which kind (the `external_ids` key).
    pub kind: AdminKind,
    /// The policy's name in NB (`external_ids` value; see [`policy_name`]).
    pub name: String,
    /// Port group name.
    pub pg: String,
    /// Ports of the subject pods.
    pub ports: Vec<String>,
    /// Address sets, two per rule.
    pub address_sets: Vec<AdminAddressSet>,
    /// Ingress (`to-lport`) ACLs.
    pub ingress_acls: Vec<PgAcl>,
    /// Egress (`from-lport`) ACLs.
    pub egress_acls: Vec<PgAcl>,
    /// The pods (`namespace/name`) selected or named as peers: their changes concern it.
    pub concerned: BTreeSet<String>,
}

/// Upstream's policy name in NB: prefixed with `anp` unless it starts with a letter (for
/// both kinds).
pub fn policy_name(name: &str) -> String {
    if name.chars().next().is_some_and(char::is_alphabetic) {
        name.to_string()
    } else {
        format!("anp{name}")
    }
}

/// The port group of a policy (OVN names take no dashes).
pub fn pg_name(name: &str) -> String {
    policy_name(name).replace('-', ".")
}

/// A rule's IPv4 and IPv6 address set names.
pub fn address_set_names(pg: &str, rule: &str, index: usize, ingress: bool) -> [String; 2] {
    let dir = if ingress { "ingress" } else { "egress" };
    ["IPv4", "IPv6"].map(|f| format!("{pg}.{dir}.{index}.{rule}.{f}").replace('-', "."))
}

/// One peer, whichever kind and direction it comes from.
enum Peer<'a> {
    Namespaces(&'a LabelSelector),
    Pods(&'a NamespacedPod),
    Nodes(&'a LabelSelector),
    Networks(&'a [String]),
    DomainNames(&'a [String]),
    Unset,
}

/// One rule, whichever kind it comes from.
struct Rule<'a> {
    name: &'a str,
    action: &'a str,
    peers: Vec<Peer<'a>>,
    ports: &'a [AdminNetworkPolicyPort],
}

/// A policy in kind-neutral form.
struct View<'a> {
    kind: AdminKind,
    name: String,
    subject: &'a AdminNetworkPolicySubject,
    ingress: Vec<Rule<'a>>,
    egress: Vec<Rule<'a>>,
    log_actions: Vec<String>,
}

fn ingress_peer<'a>(
    namespaces: &'a Option<LabelSelector>,
    pods: &'a Option<NamespacedPod>,
) -> Peer<'a> {
    match (namespaces, pods) {
        (Some(n), _) => Peer::Namespaces(n),
        (None, Some(p)) => Peer::Pods(p),
        (None, None) => Peer::Unset,
    }
}

fn egress_peer<'a>(
    namespaces: &'a Option<LabelSelector>,
    pods: &'a Option<NamespacedPod>,
    nodes: &'a Option<LabelSelector>,
    networks: &'a [String],
    domain_names: &'a [String],
) -> Peer<'a> {
    match ingress_peer(namespaces, pods) {
        Peer::Unset => match nodes {
            Some(n) => Peer::Nodes(n),
            None if !networks.is_empty() => Peer::Networks(networks),
            None if !domain_names.is_empty() => Peer::DomainNames(domain_names),
            None => Peer::Unset,
        },
        p => p,
    }
}

fn log_actions(a: &BTreeMap<String, String>) -> Vec<String> {
    a.get(LOG_ACL_ACTIONS)
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

fn anp_view(anp: &AdminNetworkPolicy) -> View<'_> {
    View {
        kind: AdminKind::Anp,
        name: policy_name(&anp.name_any()),
        subject: &anp.spec.subject,
        ingress: anp
            .spec
            .ingress
            .iter()
            .map(|r| Rule {
                name: &r.name,
                action: &r.action,
                peers: r
                    .from
                    .iter()
                    .map(|p| ingress_peer(&p.namespaces, &p.pods))
                    .collect(),
                ports: r.ports.as_deref().unwrap_or_default(),
            })
            .collect(),
        egress: anp
            .spec
            .egress
            .iter()
            .map(|r| Rule {
                name: &r.name,
                action: &r.action,
                peers: r
                    .to
                    .iter()
                    .map(|p| {
                        egress_peer(
                            &p.namespaces,
                            &p.pods,
                            &p.nodes,
                            &p.networks,
                            &p.domain_names,
                        )
                    })
                    .collect(),
                ports: r.ports.as_deref().unwrap_or_default(),
            })
            .collect(),
        log_actions: log_actions(anp.annotations()),
    }
}

fn banp_view(banp: &BaselineAdminNetworkPolicy) -> View<'_> {
    View {
        kind: AdminKind::Banp,
        name: policy_name(&banp.name_any()),
        subject: &banp.spec.subject,
        ingress: banp
            .spec
            .ingress
            .iter()
            .map(|r| Rule {
                name: &r.name,
                action: &r.action,
                peers: r
                    .from
                    .iter()
                    .map(|p| ingress_peer(&p.namespaces, &p.pods))
                    .collect(),
                ports: r.ports.as_deref().unwrap_or_default(),
            })
            .collect(),
        egress: banp
            .spec
            .egress
            .iter()
            .map(|r| Rule {
                name: &r.name,
                action: &r.action,
                peers: r
                    .to
                    .iter()
                    .map(|p| egress_peer(&p.namespaces, &p.pods, &p.nodes, &p.networks, &[]))
                    .collect(),
                ports: r.ports.as_deref().unwrap_or_default(),
            })
            .collect(),
        log_actions: log_actions(banp.annotations()),
    }
}

fn selector(s: &LabelSelector, what: &str) -> Result<Selector, String> {
    Selector::try_from(s.clone()).map_err(|e| format!("invalid {what} selector: {e}"))
}

fn labels_of(
    m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> BTreeMap<String, String> {
    m.labels.clone().unwrap_or_default()
}

fn family_of(addr: &str) -> Option<usize> {
    match addr.split('/').next()?.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some(0),
        IpAddr::V6(_) => Some(1),
    }
}

/// The pods (not host-network, with an address allocated) of the namespaces `ns` selects
/// whose labels `pods` selects (`None`: all).
pub(crate) fn select_pods<'a>(
    ns: &LabelSelector,
    pods: Option<&LabelSelector>,
    cx: &Cluster<'a>,
) -> Result<Vec<&'a Arc<PodInfo>>, String> {
    let ns_sel = selector(ns, "namespace")?;
    let pod_sel = pods.map(|p| selector(p, "pod")).transpose()?;
    let namespaces: BTreeSet<String> = cx
        .namespaces
        .iter()
        .filter(|n| ns_sel.matches(&labels_of(&n.metadata)))
        .map(|n| n.name_any())
        .collect();
    Ok(cx
        .pods
        .iter()
        .filter(|p| {
            p.metadata
                .namespace
                .as_deref()
                .is_some_and(|n| namespaces.contains(n))
        })
        .filter(|p| !p.host_network())
        .filter(|p| {
            pod_sel
                .as_ref()
                .is_none_or(|s| s.matches(&labels_of(&p.metadata)))
        })
        .filter(|p| p.annotations().get(ann::ALLOCATED).map(String::as_str) == Some("true"))
        .collect())
}

/// The subject's pods.
fn subject_pods<'a>(
    s: &AdminNetworkPolicySubject,
    cx: &Cluster<'a>,
) -> Result<Vec<&'a Arc<PodInfo>>, String> {
    match (&s.namespaces, &s.pods) {
        (Some(ns), _) => select_pods(ns, None, cx),
        (None, Some(p)) => select_pods(&p.namespace_selector, Some(&p.pod_selector), cx),
        (None, None) => Ok(Vec::new()),
    }
}

/// A peer's addresses per family and the pods it names.
fn peer_addresses<'a>(
    peer: &Peer<'_>,
    ingress: bool,
    cx: &Cluster<'a>,
) -> Result<(Families, Vec<&'a Arc<PodInfo>>), String> {
    let mut out: Families = Default::default();
    let mut pods = Vec::new();
    match peer {
        Peer::Namespaces(ns) => pods = select_pods(ns, None, cx)?,
        Peer::Pods(p) => pods = select_pods(&p.namespace_selector, Some(&p.pod_selector), cx)?,
        Peer::Nodes(sel) => {
            let sel = selector(sel, "node")?;
            for n in cx
                .nodes
                .iter()
                .filter(|n| sel.matches(&labels_of(&n.metadata)))
            {
                for ip in kube_ovn_common::node::internal_ips(n) {
                    out[usize::from(ip.is_ipv6())].insert(ip.to_string());
                }
            }
        }
        Peer::Networks(nets) => {
            // Upstream skips a CIDR it cannot parse and stores the others by their network.
            for net in nets.iter().filter_map(|n| n.parse::<IpNet>().ok()) {
                let net = net.trunc();
                out[usize::from(matches!(net, IpNet::V6(_)))].insert(net.to_string());
            }
        }
        Peer::DomainNames(names) => match cx.domains {
            Some(resolved) => out = resolved.of(names.iter()),
            None => return Err(domains_disabled(names)),
        },
        Peer::Unset if ingress => {}
        Peer::Unset => return Err("at least one egressPeer must be specified".into()),
    }
    for p in &pods {
        for ip in p
            .annotations()
            .get(ann::IP_ADDRESS)
            .map(String::as_str)
            .unwrap_or("")
            .split(',')
            .filter(|ip| !ip.is_empty())
        {
            if let Some(f) = family_of(ip) {
                out[f].insert(ip.to_string());
            }
        }
    }
    Ok((out, pods))
}

/// Upstream's error for domain-name peers while `--enable-dns-name-resolver` is off.
pub(crate) fn domains_disabled(names: &[String]) -> String {
    format!(
        "DNSNameResolver is disabled but domain names are specified: [{}]",
        names.join(" ")
    )
}

/// The port tests of a rule (`None` for none: the rule matches every port); named ports
/// yield nothing, as upstream.
fn port_tests(ports: &[AdminNetworkPolicyPort]) -> Option<Vec<String>> {
    if ports.is_empty() {
        return None;
    }
    Some(
        ports
            .iter()
            .filter_map(|p| {
                if let Some(n) = &p.port_number {
                    Some(format!("{}.dst == {}", n.protocol.to_lowercase(), n.port))
                } else {
                    p.port_range.as_ref().map(|r| {
                        format!(
                            "{} <= {}.dst <= {}",
                            r.start,
                            r.protocol.to_lowercase(),
                            r.end
                        )
                    })
                }
            })
            .collect(),
    )
}

/// The peer-and-port tests of a rule for one address set: one per port entry.
pub(crate) fn rule_tests(set_test: &str, ports: &[AdminNetworkPolicyPort]) -> Vec<String> {
    match port_tests(ports) {
        None => vec![set_test.to_string()],
        Some(tests) => tests
            .into_iter()
            .map(|t| format!("{set_test} && {t}"))
            .collect(),
    }
}

/// The OVN action of a rule's action; `None` for Pass (no ACL, see the module doc). Anything
/// unknown denies, as upstream.
fn ovn_action(kind: AdminKind, action: &str) -> Option<&'static str> {
    match action {
        "Allow" => Some("allow-related"),
        "Pass" if kind == AdminKind::Anp => None,
        _ => Some("drop"),
    }
}

fn compile(v: View<'_>, top_priority: i64, cx: &Cluster<'_>) -> Result<Desired, String> {
    if v.ingress.len() > MAX_RULES || v.egress.len() > MAX_RULES {
        return Err(format!(
            "at most {MAX_RULES} rules can be created in ingress/egress, got {} ingress and {} egress rules",
            v.ingress.len(),
            v.egress.len()
        ));
    }
    let pg = v.name.replace('-', ".");
    let subject = subject_pods(v.subject, cx)?;
    let mut ports: Vec<String> = subject
        .iter()
        .map(|p| {
            kube_ovn_common::names::pod_lsp(
                &p.name_any(),
                p.metadata.namespace.as_deref().unwrap_or(""),
                "ovn",
            )
        })
        .collect();
    ports.sort();
    ports.dedup();
    let mut concerned: BTreeSet<String> = subject.iter().map(|p| pod_key(p)).collect();
    let mut address_sets = Vec::new();
    let prefix = match v.kind {
        AdminKind::Anp => "anp",
        AdminKind::Banp => "banp",
    };
    let mut acls_of = |rules: &[Rule<'_>], ingress: bool| -> Result<Vec<PgAcl>, String> {
        let (dir, direction, port_key, ip_key) = if ingress {
            ("ingress", "to-lport", "outport", "src")
        } else {
            ("egress", "from-lport", "inport", "dst")
        };
        let mut acls: Vec<PgAcl> = Vec::new();
        // Per family, the tests of the Pass rules seen so far (higher precedence).
        let mut passed: [Vec<String>; 2] = Default::default();
        for (index, rule) in rules.iter().enumerate() {
            if rule
                .name
                .contains(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
            {
                return Err(format!(
                    "{dir} rule name {:?} cannot be part of an OVN address set name",
                    rule.name
                ));
            }
            let names = address_set_names(&pg, rule.name, index, ingress);
            let mut addrs: [BTreeSet<String>; 2] = Default::default();
            for peer in &rule.peers {
                let (a, pods) = peer_addresses(peer, ingress, cx)?;
                for f in 0..2 {
                    addrs[f].extend(a[f].iter().cloned());
                }
                concerned.extend(pods.iter().map(|p| pod_key(p)));
            }
            let action = ovn_action(v.kind, rule.action);
            // A rule naming domains has its ACLs before they resolve (their sets then empty),
            // as upstream.
            let domains = rule.peers.iter().any(|p| matches!(p, Peer::DomainNames(_)));
            for (f, family) in ["IPv4", "IPv6"].into_iter().enumerate() {
                let ip = if f == 0 { "ip4" } else { "ip6" };
                let set_test = format!("{ip}.{ip_key} == ${}", names[f]);
                let tests = rule_tests(&set_test, rule.ports);
                match action {
                    None => passed[f].extend(tests),
                    Some(_) if addrs[f].is_empty() && !domains => {}
                    Some(action) => {
                        let log = v.log_actions.iter().any(|a| a == action);
                        let exclusions: String =
                            passed[f].iter().map(|t| format!(" && !({t})")).collect();
                        for t in tests {
                            let acl = PgAcl {
                                direction,
                                priority: top_priority - index as i64,
                                r#match: format!("{port_key} == @{pg} && ip && {t}{exclusions}"),
                                action,
                                name: Some(acl_name(&format!(
                                    "{prefix}/{}/{dir}/{family}/{index}",
                                    v.name
                                ))),
                                log,
                                severity: (log && action == "drop").then_some("warning"),
                                meter: None,
                                apply_after_lb: true,
                            };
                            if !acls
                                .iter()
                                .any(|a| a.priority == acl.priority && a.r#match == acl.r#match)
                            {
                                acls.push(acl);
                            }
                        }
                    }
                }
            }
            for (f, name) in names.into_iter().enumerate() {
                address_sets.push(AdminAddressSet {
                    name,
                    mark: format!("{}/{dir}", v.name),
                    addresses: addrs[f].iter().cloned().collect(),
                });
            }
        }
        Ok(acls)
    };
    let ingress_acls = acls_of(&v.ingress, true)?;
    let egress_acls = acls_of(&v.egress, false)?;
    Ok(Desired {
        kind: v.kind,
        name: v.name,
        pg,
        ports,
        address_sets,
        ingress_acls,
        egress_acls,
        concerned,
    })
}

/// The NB state of an AdminNetworkPolicy, or why it cannot be applied (upstream's
/// validation: priority at most 99, at most 100 rules per direction; invalid selectors;
/// egress peers it cannot resolve).
pub fn desired_anp(anp: &AdminNetworkPolicy, cx: &Cluster<'_>) -> Result<Desired, String> {
    let p = anp.spec.priority;
    if !(0..=ANP_MAX_PRIORITY).contains(&p) {
        return Err(format!(
            "the priority {p} is outside 0..={ANP_MAX_PRIORITY}, the range kube-ovn supports"
        ));
    }
    compile(anp_view(anp), ANP_ACL_MAX_PRIORITY - 100 * i64::from(p), cx)
}

/// The NB state of a BaselineAdminNetworkPolicy, or why it cannot be applied.
pub fn desired_banp(
    banp: &BaselineAdminNetworkPolicy,
    cx: &Cluster<'_>,
) -> Result<Desired, String> {
    compile(banp_view(banp), BANP_ACL_MAX_PRIORITY, cx)
}

/// The AdminNetworkPolicy that holds `anp`'s priority instead of it, if any: upstream lets the
/// first one in keep a priority and refuses the others; here the oldest (then the first by
/// name) holds it, so the outcome does not depend on event order.
pub fn priority_holder(
    anp: &AdminNetworkPolicy,
    all: &[Arc<AdminNetworkPolicy>],
) -> Option<String> {
    let rank = |a: &AdminNetworkPolicy| (a.metadata.creation_timestamp.clone(), a.name_any());
    let mine = rank(anp);
    all.iter()
        .filter(|o| o.name_any() != anp.name_any())
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .filter(|o| o.spec.priority == anp.spec.priority)
        .filter(|o| rank(o) < mine)
        .map(|o| o.name_any())
        .min()
}

fn peer_selects(peer: &Peer<'_>, ns_labels: &BTreeMap<String, String>, pod: &PodInfo) -> bool {
    let sel = |s: &LabelSelector, l: &BTreeMap<String, String>| {
        Selector::try_from(s.clone()).is_ok_and(|s| s.matches(l))
    };
    match peer {
        Peer::Namespaces(ns) => sel(ns, ns_labels),
        Peer::Pods(p) => {
            sel(&p.namespace_selector, ns_labels) && sel(&p.pod_selector, &labels_of(&pod.metadata))
        }
        _ => false,
    }
}

fn view_concerns(v: &View<'_>, pod: &PodInfo, ns: Option<&Namespace>) -> bool {
    let ns_labels = ns.map(|n| labels_of(&n.metadata)).unwrap_or_default();
    let subject = ingress_peer(&v.subject.namespaces, &v.subject.pods);
    peer_selects(&subject, &ns_labels, pod)
        || v.ingress
            .iter()
            .chain(&v.egress)
            .flat_map(|r| &r.peers)
            .any(|p| peer_selects(p, &ns_labels, pod))
}

/// Whether a change of `pod` (in namespace `ns`) can change the AdminNetworkPolicy.
pub fn anp_concerns(anp: &AdminNetworkPolicy, pod: &PodInfo, ns: Option<&Namespace>) -> bool {
    view_concerns(&anp_view(anp), pod, ns)
}

/// Whether a change of `pod` (in namespace `ns`) can change the BaselineAdminNetworkPolicy.
pub fn banp_concerns(
    banp: &BaselineAdminNetworkPolicy,
    pod: &PodInfo,
    ns: Option<&Namespace>,
) -> bool {
    view_concerns(&banp_view(banp), pod, ns)
}

fn view_selects_nodes(v: &View<'_>) -> bool {
    v.egress
        .iter()
        .flat_map(|r| &r.peers)
        .any(|p| matches!(p, Peer::Nodes(_)))
}

/// Whether node changes matter to the AdminNetworkPolicy (an egress peer selects nodes).
pub fn anp_selects_nodes(anp: &AdminNetworkPolicy) -> bool {
    view_selects_nodes(&anp_view(anp))
}

/// Whether node changes matter to the BaselineAdminNetworkPolicy.
pub fn banp_selects_nodes(banp: &BaselineAdminNetworkPolicy) -> bool {
    view_selects_nodes(&banp_view(banp))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn anp(name: &str, priority: i32, spec: Value, annotations: Value) -> AdminNetworkPolicy {
        let mut spec = spec;
        spec["priority"] = json!(priority);
        serde_json::from_value(json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
            "metadata": {"name": name, "annotations": annotations},
            "spec": spec,
        }))
        .unwrap()
    }

    fn banp(spec: Value) -> BaselineAdminNetworkPolicy {
        serde_json::from_value(json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
            "metadata": {"name": "default"}, "spec": spec,
        }))
        .unwrap()
    }

    fn pod(name: &str, ns: &str, labels: Value, ip: &str) -> Arc<PodInfo> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": {
                    "ovn.kubernetes.io/allocated": "true", "ovn.kubernetes.io/ip_address": ip,
                    "ovn.kubernetes.io/logical_switch": "ovn-default"}},
                "spec": {"containers": [{"name": "c"}]},
            }))
            .unwrap(),
        )
    }

    fn namespace(name: &str, labels: Value) -> Arc<Namespace> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap(),
        )
    }

    fn node(name: &str, labels: Value, ips: &[&str]) -> Arc<Node> {
        let addrs: Vec<Value> = ips
            .iter()
            .map(|ip| json!({"type": "InternalIP", "address": ip}))
            .collect();
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
                "status": {"addresses": addrs}}))
            .unwrap(),
        )
    }

    struct W {
        pods: Vec<Arc<PodInfo>>,
        namespaces: Vec<Arc<Namespace>>,
        nodes: Vec<Arc<Node>>,
    }

    impl W {
        fn cx(&self) -> Cluster<'_> {
            Cluster {
                pods: &self.pods,
                namespaces: &self.namespaces,
                nodes: &self.nodes,
                domains: None,
            }
        }
    }

    fn world() -> W {
        W {
            pods: vec![
                pod("web", "ns-a", json!({"app": "web"}), "10.16.0.2,fd00::2"),
                pod("db", "ns-a", json!({"app": "db"}), "10.16.0.3"),
                pod("cli", "ns-b", json!({"app": "cli"}), "10.16.0.4"),
            ],
            namespaces: vec![
                namespace("ns-a", json!({"team": "a"})),
                namespace("ns-b", json!({"team": "b"})),
            ],
            nodes: vec![
                node("n1", json!({"role": "infra"}), &["172.18.0.2", "fc00::2"]),
                node("n2", json!({}), &["172.18.0.3"]),
            ],
        }
    }

    fn acls(d: &[PgAcl]) -> Vec<(i64, &str, &str, Option<&str>)> {
        d.iter()
            .map(|a| (a.priority, a.r#match.as_str(), a.action, a.name.as_deref()))
            .collect()
    }

    fn set<'a>(d: &'a Desired, name: &str) -> &'a [String] {
        &d.address_sets
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no set {name} in {:#?}", d.address_sets))
            .addresses
    }

    /// Upstream's FQDN peers: the rule's ACLs exist before the names resolve (their sets
    /// empty, matching nothing); resolved addresses fill the rule's sets by family beside its
    /// other peers'; a rule without domains and without addresses still has no ACL.
    #[test]
    fn domain_name_peers_fill_the_rules_sets_from_the_resolvers() {
        let w = world();
        let a = anp(
            "fqdn",
            3,
            json!({
                "subject": {"namespaces": {"matchLabels": {"team": "a"}}},
                "egress": [
                    {"name": "deny-sites", "action": "Deny",
                     "to": [{"domainNames": ["*.example.com.", "a.example.org."]},
                            {"networks": ["192.0.2.0/24"]}],
                     "ports": [{"portNumber": {"protocol": "TCP", "port": 443}}]},
                    {"name": "nobody", "action": "Allow", "to": [{"networks": ["bad"]}]}
                ]
            }),
            json!({}),
        );
        let unresolved = Resolved::default();
        let cx = Cluster {
            domains: Some(&unresolved),
            ..w.cx()
        };
        let d = desired_anp(&a, &cx).unwrap();
        assert_eq!(
            acls(&d.egress_acls),
            vec![
                (
                    29700,
                    "inport == @fqdn && ip && ip4.dst == $fqdn.egress.0.deny.sites.IPv4 && tcp.dst == 443",
                    "drop",
                    Some("anp/fqdn/egress/IPv4/0")
                ),
                (
                    29700,
                    "inport == @fqdn && ip && ip6.dst == $fqdn.egress.0.deny.sites.IPv6 && tcp.dst == 443",
                    "drop",
                    Some("anp/fqdn/egress/IPv6/0")
                ),
            ]
        );
        assert_eq!(set(&d, "fqdn.egress.0.deny.sites.IPv4"), ["192.0.2.0/24"]);
        assert!(set(&d, "fqdn.egress.0.deny.sites.IPv6").is_empty());

        let resolver: kube_ovn_common::crd::DnsNameResolver = serde_json::from_value(json!({
            "metadata": {"name": "anp-fqdn-1"}, "spec": {"name": "*.example.com."},
            "status": {"resolvedNames": [{"dnsName": "www.example.com.", "resolvedAddresses": [
                {"ip": "198.51.100.7", "ttlSeconds": 30, "lastLookupTime": "2026-01-01T00:00:00Z"},
                {"ip": "2001:db8::7", "ttlSeconds": 30, "lastLookupTime": "2026-01-01T00:00:00Z"}]}]},
        }))
        .unwrap();
        let resolved = Resolved::new([&resolver]);
        let cx = Cluster {
            domains: Some(&resolved),
            ..w.cx()
        };
        let d = desired_anp(&a, &cx).unwrap();
        assert_eq!(
            set(&d, "fqdn.egress.0.deny.sites.IPv4"),
            ["192.0.2.0/24", "198.51.100.7"]
        );
        assert_eq!(set(&d, "fqdn.egress.0.deny.sites.IPv6"), ["2001:db8::7"]);
        assert_eq!(d.egress_acls.len(), 2);
    }

    #[test]
    fn an_anp_compiles_to_upstreams_names_priorities_actions_and_matches() {
        let w = world();
        let a = anp(
            "deny-db",
            5,
            json!({
                "subject": {"pods": {"namespaceSelector": {"matchLabels": {"team": "a"}},
                                     "podSelector": {"matchLabels": {"app": "db"}}}},
                "ingress": [
                    {"name": "allow-web", "action": "Allow",
                     "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}}],
                     "ports": [{"portNumber": {"protocol": "TCP", "port": 5432}},
                               {"portRange": {"protocol": "UDP", "start": 1000, "end": 2000}}]},
                    {"action": "Deny", "from": [{"namespaces": {"matchLabels": {"team": "b"}}}]}
                ]
            }),
            json!({"ovn.kubernetes.io/log_acl_actions": "drop"}),
        );
        let d = desired_anp(&a, &w.cx()).unwrap();
        assert_eq!(d.pg, "deny.db");
        assert_eq!(d.name, "deny-db");
        assert_eq!(d.ports, vec!["db.ns-a"]);
        assert_eq!(set(&d, "deny.db.ingress.0.allow.web.IPv4"), ["10.16.0.2"]);
        assert_eq!(set(&d, "deny.db.ingress.0.allow.web.IPv6"), ["fd00::2"]);
        assert_eq!(set(&d, "deny.db.ingress.1..IPv4"), ["10.16.0.4"]);
        assert!(d.address_sets.iter().all(|s| s.mark == "deny-db/ingress"));
        assert_eq!(
            acls(&d.ingress_acls),
            vec![
                (29500, "outport == @deny.db && ip && ip4.src == $deny.db.ingress.0.allow.web.IPv4 && tcp.dst == 5432", "allow-related", Some("anp/deny-db/ingress/IPv4/0")),
                (29500, "outport == @deny.db && ip && ip4.src == $deny.db.ingress.0.allow.web.IPv4 && 1000 <= udp.dst <= 2000", "allow-related", Some("anp/deny-db/ingress/IPv4/0")),
                (29500, "outport == @deny.db && ip && ip6.src == $deny.db.ingress.0.allow.web.IPv6 && tcp.dst == 5432", "allow-related", Some("anp/deny-db/ingress/IPv6/0")),
                (29500, "outport == @deny.db && ip && ip6.src == $deny.db.ingress.0.allow.web.IPv6 && 1000 <= udp.dst <= 2000", "allow-related", Some("anp/deny-db/ingress/IPv6/0")),
                // No IPv6 peer of rule 1: no IPv6 ACL (its set still exists).
                (29499, "outport == @deny.db && ip && ip4.src == $deny.db.ingress.1..IPv4", "drop", Some("anp/deny-db/ingress/IPv4/1")),
            ]
        );
        let deny = d.ingress_acls.last().unwrap();
        assert!(deny.log && deny.severity == Some("warning") && deny.apply_after_lb);
        assert!(!d.ingress_acls[0].log && d.ingress_acls[0].severity.is_none());
        assert!(d.egress_acls.is_empty());
        assert!(d.concerned.contains("ns-a/db") && d.concerned.contains("ns-b/cli"));
    }

    #[test]
    fn pass_writes_no_acl_and_excludes_its_traffic_from_the_policys_later_rules() {
        let w = world();
        let a = anp(
            "pass-then-deny",
            0,
            json!({
                "subject": {"namespaces": {"matchLabels": {"team": "a"}}},
                "egress": [
                    {"name": "to-b", "action": "Pass",
                     "to": [{"namespaces": {"matchLabels": {"team": "b"}}}],
                     "ports": [{"portNumber": {"protocol": "TCP", "port": 80}}, {"namedPort": "http"}]},
                    {"name": "all", "action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}]}
                ]
            }),
            json!({}),
        );
        let d = desired_anp(&a, &w.cx()).unwrap();
        assert_eq!(d.ports, vec!["db.ns-a", "web.ns-a"]);
        assert_eq!(set(&d, "pass.then.deny.egress.0.to.b.IPv4"), ["10.16.0.4"]);
        assert_eq!(
            acls(&d.egress_acls),
            vec![(
                29999,
                "inport == @pass.then.deny && ip && ip4.dst == $pass.then.deny.egress.1.all.IPv4 && !(ip4.dst == $pass.then.deny.egress.0.to.b.IPv4 && tcp.dst == 80)",
                "drop",
                Some("anp/pass-then-deny/egress/IPv4/1")
            )]
        );
    }

    #[test]
    fn node_and_network_egress_peers_resolve_to_addresses() {
        let w = world();
        let a = anp(
            "1st",
            99,
            json!({
                "subject": {"namespaces": {}},
                "egress": [
                    {"name": "infra", "action": "Allow", "to": [{"nodes": {"matchLabels": {"role": "infra"}}}]},
                    {"name": "nets", "action": "Deny", "to": [{"networks": ["10.1.2.3/8", "fd00:1::5/64", "bogus"]}]}
                ]
            }),
            json!({}),
        );
        let d = desired_anp(&a, &w.cx()).unwrap();
        assert_eq!(d.pg, "anp1st");
        assert_eq!(set(&d, "anp1st.egress.0.infra.IPv4"), ["172.18.0.2"]);
        assert_eq!(set(&d, "anp1st.egress.0.infra.IPv6"), ["fc00::2"]);
        assert_eq!(set(&d, "anp1st.egress.1.nets.IPv4"), ["10.0.0.0/8"]);
        assert_eq!(set(&d, "anp1st.egress.1.nets.IPv6"), ["fd00:1::/64"]);
        let m = acls(&d.egress_acls);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].0, 20100);
        assert_eq!(m[0].3, Some("anp/anp1st/egress/IPv4/0"));
        assert_eq!(m[3].0, 20099);
        assert!(anp_selects_nodes(&a));
    }

    #[test]
    fn named_ports_match_nothing_as_upstream() {
        let w = world();
        let a = anp(
            "named",
            1,
            json!({"subject": {"namespaces": {}},
                   "ingress": [{"action": "Deny", "from": [{"namespaces": {}}], "ports": [{"namedPort": "http"}]}]}),
            json!({}),
        );
        let d = desired_anp(&a, &w.cx()).unwrap();
        assert!(d.ingress_acls.is_empty());
        assert_eq!(d.address_sets.len(), 2);
    }

    #[test]
    fn the_banp_sits_in_the_band_below_network_policies() {
        let w = world();
        let b = banp(json!({
            "subject": {"namespaces": {"matchLabels": {"team": "b"}}},
            "ingress": [{"name": "web", "action": "Allow", "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}}]},
                        {"name": "rest", "action": "Deny", "from": [{"namespaces": {}}]}],
            "egress": [{"action": "Pass", "to": [{"networks": ["10.0.0.0/8"]}]}]
        }));
        let d = desired_banp(&b, &w.cx()).unwrap();
        assert_eq!((d.pg.as_str(), d.kind), ("default", AdminKind::Banp));
        assert_eq!(d.ports, vec!["cli.ns-b"]);
        let m = acls(&d.ingress_acls);
        assert_eq!(m[0].0, BANP_ACL_MAX_PRIORITY);
        assert_eq!(m[0].3, Some("banp/default/ingress/IPv4/0"));
        assert_eq!(m[1].0, BANP_ACL_MAX_PRIORITY);
        assert_eq!(
            m[1].1,
            "outport == @default && ip && ip6.src == $default.ingress.0.web.IPv6"
        );
        assert_eq!((m[2].0, m[2].2), (1799, "drop"));
        // BANP has no Pass: an unknown action denies, as upstream.
        assert_eq!(acls(&d.egress_acls)[0].2, "drop");
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let w = world();
        let too_high = anp("x", 100, json!({"subject": {"namespaces": {}}}), json!({}));
        assert!(desired_anp(&too_high, &w.cx())
            .unwrap_err()
            .contains("priority"));
        let fqdn = anp(
            "x",
            1,
            json!({"subject": {"namespaces": {}},
                   "egress": [{"action": "Allow", "to": [{"domainNames": ["a.example.com."]}]}]}),
            json!({}),
        );
        assert_eq!(
            desired_anp(&fqdn, &w.cx()).unwrap_err(),
            "DNSNameResolver is disabled but domain names are specified: [a.example.com.]"
        );
        let empty_peer = anp(
            "x",
            1,
            json!({"subject": {"namespaces": {}}, "egress": [{"action": "Allow", "to": [{}]}]}),
            json!({}),
        );
        assert!(desired_anp(&empty_peer, &w.cx()).is_err());
        let bad_name = anp(
            "x",
            1,
            json!({"subject": {"namespaces": {}}, "ingress": [{"name": "a b", "action": "Allow", "from": []}]}),
            json!({}),
        );
        assert!(desired_anp(&bad_name, &w.cx())
            .unwrap_err()
            .contains("rule name"));
    }

    #[test]
    fn the_oldest_policy_holds_a_contested_priority() {
        let mk = |name: &str, ts: &str| {
            let mut a = anp(name, 7, json!({"subject": {"namespaces": {}}}), json!({}));
            a.metadata.creation_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts.parse().unwrap()),
            );
            Arc::new(a)
        };
        let old = mk("zzz", "2024-01-01T00:00:00Z");
        let new = mk("aaa", "2024-02-01T00:00:00Z");
        let all = vec![old.clone(), new.clone()];
        assert_eq!(priority_holder(&new, &all), Some("zzz".into()));
        assert_eq!(priority_holder(&old, &all), None);
    }

    #[test]
    fn pods_concern_the_policies_selecting_them() {
        let w = world();
        let a = anp(
            "x",
            1,
            json!({"subject": {"pods": {"namespaceSelector": {"matchLabels": {"team": "a"}}, "podSelector": {"matchLabels": {"app": "db"}}}},
                   "egress": [{"action": "Allow", "to": [{"namespaces": {"matchLabels": {"team": "b"}}}]}]}),
            json!({}),
        );
        let ns = |n: usize| Some(w.namespaces[n].as_ref());
        assert!(anp_concerns(&a, &w.pods[1], ns(0)));
        assert!(!anp_concerns(&a, &w.pods[0], ns(0)));
        assert!(anp_concerns(&a, &w.pods[2], ns(1)));
        assert!(!anp_selects_nodes(&a));
    }
}
