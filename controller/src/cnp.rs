//! What a ClusterNetworkPolicy (`policy.networking.k8s.io/v1alpha2`) puts in the NB, as upstream
//! (v1.16) computes it (pure). The rows have the shape of an AdminNetworkPolicy's (see
//! [`crate::anp`]): a port group `<name>` (`cnp` prefixed unless the name starts with a letter,
//! dots for dashes) of the subject pods' ports; per rule an IPv4 and an IPv6 address set
//! `<pg>.<ingress|egress>.<index>.<rule>.<IPv4|IPv6>` of the peers' addresses (pods,
//! namespaces; for egress also nodes' InternalIPs and CIDRs); per rule, family with addresses
//! and port entry one ACL `outport == @<pg> && ip && ip4.src == $<set>[ && <port test>]`
//! (ingress) or `inport == @<pg> && ip && ip4.dst == $<set>…` (egress) named
//! `cnp/<name>/<direction>/<IPv4|IPv6>/<index>`. Accept is `allow-related`, Deny (and anything
//! unknown) `drop`; `options:apply-after-lb=true`, `log` (+ `severity=warning` on drops) per
//! `ovn.kubernetes.io/log_acl_actions`. Upstream's limits: priority 0..=399, at most 25 rules
//! per direction, 25 networks and 25 domain names per egress peer.
//!
//! ## Precedence on stock OVN 23.03 (no ACL tiers, no `pass`)
//!
//! Upstream gives every rule the priority `30000 - 25 * priority - index` and tells the tiers
//! apart with the ACL `tier` column: `Admin` in tier 1 (above NetworkPolicy's tier 2),
//! `Baseline` in tier 3. Without that column:
//!
//! * `Admin` keeps upstream's priorities exactly (20001..=30000, the ANP band, above
//!   NetworkPolicy's 2000/2001/3000), so an upstream-written Admin policy is adopted as is.
//! * `Baseline` cannot keep them: 20001..=30000 would rank above NetworkPolicy. Its rules are
//!   packed into the band between NetworkPolicy's default drop (2000) and the BANP's rules
//!   (≤ 1800) — 199 ACL priorities — by rank: the Baseline policies ordered by priority, each
//!   taking as many priorities as its longer rule list, from 1999 down. A Baseline policy thus
//!   stays below NetworkPolicy and above the BANP (as tier 3 puts it above the BANP's 1800
//!   band), in priority order; its ACLs' priorities differ from upstream's (a policy ranked
//!   before it changes them), and the policies' rules must fit in 199 priorities altogether.
//! * Pass writes no ACL; the same policy's later rules (same direction and family) exclude its
//!   traffic with `&& !(<its peer and port test>)`, so passed traffic falls to the next layer
//!   by priority. It cannot skip *another* policy of the same tier that selects the same
//!   traffic at a lower priority (upstream's `pass` skips the rest of the tier).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};
use kube::ResourceExt;
use kube_ovn_common::annotations as ann;
use kube_ovn_common::crd::admin_network_policy::{
    AdminNetworkPolicyEgressPeer, AdminNetworkPolicyIngressPeer, AdminNetworkPolicyPort,
    NamespacedPod,
};
use kube_ovn_common::crd::ClusterNetworkPolicy;
use kube_ovn_nb::objects::{acl_name, AdminAddressSet, PgAcl};

use crate::anp::{self, Cluster};
use crate::dns_names::Families;
use crate::pod_index::pod_key;
use crate::pod_info::PodInfo;

/// The ACL priority of a priority-0 policy's first rule (upstream's `CnpACLMaxPriority`).
pub const CNP_ACL_MAX_PRIORITY: i64 = 30000;
/// The highest priority upstream accepts (`CnpMaxPriority`).
pub const CNP_MAX_PRIORITY: i32 = 399;
/// The most ingress (or egress) rules a policy may have; also the ACL priority step.
pub const CNP_MAX_RULES: usize = 25;
/// The most CIDRs, and the most domain names, one egress peer may list.
pub const CNP_MAX_PEER_ITEMS: usize = 25;
/// The highest ACL priority of the Baseline band: just below NetworkPolicy's default drop.
pub const BASELINE_TOP: i64 = crate::netpol::DEFAULT_DROP - 1;
/// The Baseline band stops above the BANP's rules (exclusive bound).
pub const BASELINE_FLOOR: i64 = anp::BANP_ACL_MAX_PRIORITY;
// The Baseline band is non-empty, below NetworkPolicy's default drop and above the BANP.
const _: () = assert!(BASELINE_FLOOR < BASELINE_TOP && BASELINE_TOP < crate::netpol::DEFAULT_DROP);
// Admin's lowest priority (399, last rule) stays above the node allows.
const _: () = assert!(
    crate::netpol::NODE_ALLOW
        < CNP_ACL_MAX_PRIORITY
            - CNP_MAX_RULES as i64 * CNP_MAX_PRIORITY as i64
            - (CNP_MAX_RULES as i64 - 1)
);

/// A policy's tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Above NetworkPolicies.
    Admin,
    /// Below NetworkPolicies.
    Baseline,
}

/// The tier a policy names, or why it names none upstream knows.
pub fn tier(cnp: &ClusterNetworkPolicy) -> Result<Tier, String> {
    match cnp.spec.tier.as_str() {
        "Admin" => Ok(Tier::Admin),
        "Baseline" => Ok(Tier::Baseline),
        t => Err(format!("unknown cnp tier {t}")),
    }
}

/// The NB state of one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The policy's name in NB (see [`policy_name`]): address sets' `external_ids` and ACL names.
    pub name: String,
    /// Port group name (also its `external_ids:cnp`).
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

/// Upstream's policy name in NB: prefixed with `cnp` unless it starts with a letter.
pub fn policy_name(name: &str) -> String {
    if name.chars().next().is_some_and(char::is_alphabetic) {
        name.to_string()
    } else {
        format!("cnp{name}")
    }
}

/// The port group of a policy (OVN names take no dashes).
pub fn pg_name(name: &str) -> String {
    policy_name(name).replace('-', ".")
}

/// How many ACL priorities a policy's rules take: one per rule index.
fn slots(cnp: &ClusterNetworkPolicy) -> i64 {
    cnp.spec.ingress.len().max(cnp.spec.egress.len()) as i64
}

fn live(c: &ClusterNetworkPolicy) -> bool {
    c.metadata.deletion_timestamp.is_none()
}

/// The policy of the same tier that holds `cnp`'s priority instead of it, if any: upstream
/// lets the first one in keep a priority and refuses the others; here the oldest (then the
/// first by name) holds it, so the outcome does not depend on event order.
pub fn priority_holder(
    cnp: &ClusterNetworkPolicy,
    all: &[Arc<ClusterNetworkPolicy>],
) -> Option<String> {
    let rank = |c: &ClusterNetworkPolicy| (c.metadata.creation_timestamp.clone(), c.name_any());
    let mine = rank(cnp);
    all.iter()
        .filter(|o| o.name_any() != cnp.name_any() && live(o))
        .filter(|o| o.spec.tier == cnp.spec.tier && o.spec.priority == cnp.spec.priority)
        .filter(|o| rank(o) < mine)
        .map(|o| o.name_any())
        .min()
}

/// Upstream's validation: a known tier, priority within 0..=399, at most 25 rules per
/// direction, at most 25 networks and 25 domain names per egress peer.
pub fn validate(cnp: &ClusterNetworkPolicy) -> Result<Tier, String> {
    let t = tier(cnp)?;
    let p = cnp.spec.priority;
    if !(0..=CNP_MAX_PRIORITY).contains(&p) {
        return Err(format!(
            "priority of cnp {} is not within bounds 0 to {CNP_MAX_PRIORITY}",
            cnp.name_any()
        ));
    }
    let (i, e) = (cnp.spec.ingress.len(), cnp.spec.egress.len());
    if i > CNP_MAX_RULES || e > CNP_MAX_RULES {
        return Err(format!(
            "at most {CNP_MAX_RULES} rules allowed by ingress/egress section for cnp {}, got {i} ingress rules and {e} egress rules",
            cnp.name_any()
        ));
    }
    for peer in cnp.spec.egress.iter().flat_map(|r| &r.to) {
        if peer.domain_names.len() > CNP_MAX_PEER_ITEMS {
            return Err(format!(
                "cnp egress peers can have a maximum of {CNP_MAX_PEER_ITEMS} domains, got {}",
                peer.domain_names.len()
            ));
        }
        if peer.networks.len() > CNP_MAX_PEER_ITEMS {
            return Err(format!(
                "cnp egress peers can have a maximum of {CNP_MAX_PEER_ITEMS} networks, got {}",
                peer.networks.len()
            ));
        }
    }
    Ok(t)
}

/// The ACL priority of `cnp`'s first rule (see the module doc): upstream's for Admin; for
/// Baseline, its place in the packed band below NetworkPolicy given every policy in `all`
/// (valid, priority-holding Baseline policies of a lower priority go first). An error if
/// the Baseline policies do not fit.
pub fn top_priority(
    cnp: &ClusterNetworkPolicy,
    all: &[Arc<ClusterNetworkPolicy>],
) -> Result<i64, String> {
    match validate(cnp)? {
        Tier::Admin => {
            Ok(CNP_ACL_MAX_PRIORITY - CNP_MAX_RULES as i64 * i64::from(cnp.spec.priority))
        }
        Tier::Baseline => {
            let before: i64 = all
                .iter()
                .filter(|o| o.name_any() != cnp.name_any() && live(o))
                .filter(|o| o.spec.tier == cnp.spec.tier && o.spec.priority < cnp.spec.priority)
                .filter(|o| validate(o).is_ok() && priority_holder(o, all).is_none())
                .map(|o| slots(o))
                .sum();
            let top = BASELINE_TOP - before;
            if top - slots(cnp).max(1) < BASELINE_FLOOR {
                return Err(format!(
                    "the Baseline ClusterNetworkPolicies need more than the {} ACL priorities between NetworkPolicy and the BaselineAdminNetworkPolicy on OVN without ACL tiers",
                    BASELINE_TOP - BASELINE_FLOOR
                ));
            }
            Ok(top)
        }
    }
}

/// One peer in direction-neutral form.
enum Peer<'a> {
    Namespaces(&'a LabelSelector),
    Pods(&'a NamespacedPod),
    Nodes(&'a LabelSelector),
    Networks(&'a [String]),
    DomainNames(&'a [String]),
    Unset,
}

fn ingress_peer(p: &AdminNetworkPolicyIngressPeer) -> Peer<'_> {
    match (&p.namespaces, &p.pods) {
        (Some(n), _) => Peer::Namespaces(n),
        (None, Some(p)) => Peer::Pods(p),
        (None, None) => Peer::Unset,
    }
}

fn egress_peer(p: &AdminNetworkPolicyEgressPeer) -> Peer<'_> {
    match (&p.namespaces, &p.pods, &p.nodes) {
        (Some(n), _, _) => Peer::Namespaces(n),
        (None, Some(p), _) => Peer::Pods(p),
        (None, None, Some(n)) => Peer::Nodes(n),
        _ if !p.networks.is_empty() => Peer::Networks(&p.networks),
        _ if !p.domain_names.is_empty() => Peer::DomainNames(&p.domain_names),
        _ => Peer::Unset,
    }
}

/// One rule in direction-neutral form.
struct Rule<'a> {
    name: &'a str,
    action: &'a str,
    peers: Vec<Peer<'a>>,
    ports: &'a [AdminNetworkPolicyPort],
}

fn ingress_rules(cnp: &ClusterNetworkPolicy) -> Vec<Rule<'_>> {
    cnp.spec
        .ingress
        .iter()
        .map(|r| Rule {
            name: &r.name,
            action: &r.action,
            peers: r.from.iter().map(ingress_peer).collect(),
            ports: r.ports.as_deref().unwrap_or_default(),
        })
        .collect()
}

fn egress_rules(cnp: &ClusterNetworkPolicy) -> Vec<Rule<'_>> {
    cnp.spec
        .egress
        .iter()
        .map(|r| Rule {
            name: &r.name,
            action: &r.action,
            peers: r.to.iter().map(egress_peer).collect(),
            ports: r.ports.as_deref().unwrap_or_default(),
        })
        .collect()
}

fn labels_of(
    m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> BTreeMap<String, String> {
    m.labels.clone().unwrap_or_default()
}

/// A peer's addresses per family and the pods it names.
fn peer_addresses<'a>(
    peer: &Peer<'_>,
    ingress: bool,
    cx: &Cluster<'a>,
) -> Result<(Families, Vec<&'a Arc<PodInfo>>), String> {
    let mut out: Families = Default::default();
    let pods = match peer {
        Peer::Namespaces(ns) => anp::select_pods(ns, None, cx)?,
        Peer::Pods(p) => anp::select_pods(&p.namespace_selector, Some(&p.pod_selector), cx)?,
        Peer::Nodes(sel) => {
            let sel = Selector::try_from((*sel).clone())
                .map_err(|e| format!("invalid node selector: {e}"))?;
            for n in cx
                .nodes
                .iter()
                .filter(|n| sel.matches(&labels_of(&n.metadata)))
            {
                for ip in kube_ovn_common::node::internal_ips(n) {
                    out[usize::from(ip.is_ipv6())].insert(ip.to_string());
                }
            }
            Vec::new()
        }
        Peer::Networks(nets) => {
            // Upstream skips a CIDR it cannot parse and stores the others by their network.
            for net in nets.iter().filter_map(|n| n.parse::<IpNet>().ok()) {
                let net = net.trunc();
                out[usize::from(matches!(net, IpNet::V6(_)))].insert(net.to_string());
            }
            Vec::new()
        }
        Peer::DomainNames(names) => match cx.domains {
            Some(resolved) => {
                out = resolved.of(names.iter());
                Vec::new()
            }
            None => return Err(anp::domains_disabled(names)),
        },
        Peer::Unset if ingress => Vec::new(),
        Peer::Unset => return Err("at least one egressPeer must be specified".into()),
    };
    for p in &pods {
        let ips = p.annotations().get(ann::IP_ADDRESS).cloned();
        for ip in ips.iter().flat_map(|s| s.split(',')) {
            match ip.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => out[0].insert(ip.to_string()),
                Ok(IpAddr::V6(_)) => out[1].insert(ip.to_string()),
                Err(_) => false,
            };
        }
    }
    Ok((out, pods))
}

/// The OVN action of a rule's action; `None` for Pass (no ACL, see the module doc). Anything
/// unknown denies, as upstream.
fn ovn_action(action: &str) -> Option<&'static str> {
    match action {
        "Accept" => Some("allow-related"),
        "Pass" => None,
        _ => Some("drop"),
    }
}

fn log_actions(cnp: &ClusterNetworkPolicy) -> Vec<String> {
    cnp.annotations()
        .get(anp::LOG_ACL_ACTIONS)
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

/// The NB state of `cnp` with its first rule at ACL priority `top` (see [`top_priority`]), or
/// why it cannot be applied (invalid selectors, rule names, egress peers it cannot resolve).
pub fn desired(cnp: &ClusterNetworkPolicy, top: i64, cx: &Cluster<'_>) -> Result<Desired, String> {
    let name = policy_name(&cnp.name_any());
    let pg = pg_name(&cnp.name_any());
    let s = &cnp.spec.subject;
    let subject = match (&s.namespaces, &s.pods) {
        (Some(ns), _) => anp::select_pods(ns, None, cx)?,
        (None, Some(p)) => anp::select_pods(&p.namespace_selector, Some(&p.pod_selector), cx)?,
        (None, None) => Vec::new(),
    };
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
    let logged = log_actions(cnp);
    let domains = !crate::dns_names::cnp_domains(cnp).is_empty();
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
            let names = anp::address_set_names(&pg, rule.name, index, ingress);
            let mut addrs: Families = Default::default();
            for peer in &rule.peers {
                let (a, pods) = peer_addresses(peer, ingress, cx)?;
                for (f, set) in a.into_iter().enumerate() {
                    addrs[f].extend(set);
                }
                concerned.extend(pods.iter().map(|p| pod_key(p)));
            }
            let action = ovn_action(rule.action);
            for (f, family) in ["IPv4", "IPv6"].into_iter().enumerate() {
                let ip = if f == 0 { "ip4" } else { "ip6" };
                let tests = anp::rule_tests(&format!("{ip}.{ip_key} == ${}", names[f]), rule.ports);
                let Some(action) = action else {
                    passed[f].extend(tests);
                    continue;
                };
                // Upstream gives every egress rule of a policy naming domains its ACLs before
                // they resolve (their sets then empty).
                if addrs[f].is_empty() && (ingress || !domains) {
                    continue;
                }
                let log = logged.iter().any(|a| a == action);
                let exclusions: String = passed[f].iter().map(|t| format!(" && !({t})")).collect();
                for t in tests {
                    let acl = PgAcl {
                        direction,
                        priority: top - index as i64,
                        r#match: format!("{port_key} == @{pg} && ip && {t}{exclusions}"),
                        action,
                        name: Some(acl_name(&format!("cnp/{name}/{dir}/{family}/{index}"))),
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
            for (f, set) in names.into_iter().enumerate() {
                address_sets.push(AdminAddressSet {
                    name: set,
                    mark: format!("{name}/{dir}"),
                    addresses: addrs[f].iter().cloned().collect(),
                });
            }
        }
        Ok(acls)
    };
    let ingress_acls = acls_of(&ingress_rules(cnp), true)?;
    let egress_acls = acls_of(&egress_rules(cnp), false)?;
    Ok(Desired {
        name,
        pg,
        ports,
        address_sets,
        ingress_acls,
        egress_acls,
        concerned,
    })
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

/// Whether a change of `pod` (in namespace `ns`) can change the policy: its subject or a
/// peer selects it.
pub fn concerns(cnp: &ClusterNetworkPolicy, pod: &PodInfo, ns: Option<&Namespace>) -> bool {
    let ns_labels = ns.map(|n| labels_of(&n.metadata)).unwrap_or_default();
    let s = &cnp.spec.subject;
    let subject = match (&s.namespaces, &s.pods) {
        (Some(n), _) => Peer::Namespaces(n),
        (None, Some(p)) => Peer::Pods(p),
        (None, None) => Peer::Unset,
    };
    peer_selects(&subject, &ns_labels, pod)
        || ingress_rules(cnp)
            .iter()
            .chain(&egress_rules(cnp))
            .flat_map(|r| &r.peers)
            .any(|p| peer_selects(p, &ns_labels, pod))
}

/// Whether node changes matter to the policy (an egress peer selects nodes).
pub fn selects_nodes(cnp: &ClusterNetworkPolicy) -> bool {
    cnp.spec
        .egress
        .iter()
        .flat_map(|r| &r.to)
        .any(|p| matches!(egress_peer(p), Peer::Nodes(_)))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Node;
    use serde_json::{json, Value};

    use super::*;

    fn cnp(name: &str, tier: &str, priority: i32, spec: Value) -> ClusterNetworkPolicy {
        let mut spec = spec;
        spec["tier"] = json!(tier);
        spec["priority"] = json!(priority);
        serde_json::from_value(json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name}, "spec": spec,
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
        let ns = |n: &str, l: Value| {
            Arc::new(serde_json::from_value(json!({"metadata": {"name": n, "labels": l}})).unwrap())
        };
        W {
            pods: vec![
                pod("web", "ns-a", json!({"app": "web"}), "10.16.0.2,fd00::2"),
                pod("db", "ns-a", json!({"app": "db"}), "10.16.0.3"),
                pod("cli", "ns-b", json!({"app": "cli"}), "10.16.0.4"),
            ],
            namespaces: vec![
                ns("ns-a", json!({"team": "a"})),
                ns("ns-b", json!({"team": "b"})),
            ],
            nodes: vec![Arc::new(
                serde_json::from_value(
                    json!({"metadata": {"name": "n1", "labels": {"role": "infra"}},
                    "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"}]}}),
                )
                .unwrap(),
            )],
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

    #[test]
    fn an_admin_policy_compiles_to_upstreams_names_priorities_and_matches() {
        let w = world();
        let mut c = cnp(
            "guard-db",
            "Admin",
            7,
            json!({
                "subject": {"pods": {"namespaceSelector": {"matchLabels": {"team": "a"}},
                                     "podSelector": {"matchLabels": {"app": "db"}}}},
                "ingress": [
                    {"name": "web", "action": "Accept",
                     "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}}],
                     "ports": [{"portNumber": {"protocol": "TCP", "port": 5432}},
                               {"portRange": {"protocol": "UDP", "start": 1000, "end": 2000}}]},
                    {"action": "Deny", "from": [{"namespaces": {"matchLabels": {"team": "b"}}}]}
                ],
                "egress": [{"name": "infra", "action": "Deny", "to": [{"nodes": {"matchLabels": {"role": "infra"}}}]}]
            }),
        );
        c.metadata.annotations =
            Some([(anp::LOG_ACL_ACTIONS.to_string(), "drop".to_string())].into());
        let all = vec![Arc::new(c.clone())];
        let top = top_priority(&c, &all).unwrap();
        assert_eq!(top, 30000 - 25 * 7);
        let d = desired(&c, top, &w.cx()).unwrap();
        assert_eq!((d.name.as_str(), d.pg.as_str()), ("guard-db", "guard.db"));
        assert_eq!(d.ports, vec!["db.ns-a"]);
        assert_eq!(set(&d, "guard.db.ingress.0.web.IPv4"), ["10.16.0.2"]);
        assert_eq!(set(&d, "guard.db.ingress.0.web.IPv6"), ["fd00::2"]);
        assert_eq!(set(&d, "guard.db.ingress.1..IPv4"), ["10.16.0.4"]);
        assert_eq!(set(&d, "guard.db.egress.0.infra.IPv4"), ["172.18.0.2"]);
        assert!(d
            .address_sets
            .iter()
            .all(|s| s.mark.starts_with("guard-db/")));
        assert_eq!(
            acls(&d.ingress_acls),
            vec![
                (29825, "outport == @guard.db && ip && ip4.src == $guard.db.ingress.0.web.IPv4 && tcp.dst == 5432", "allow-related", Some("cnp/guard-db/ingress/IPv4/0")),
                (29825, "outport == @guard.db && ip && ip4.src == $guard.db.ingress.0.web.IPv4 && 1000 <= udp.dst <= 2000", "allow-related", Some("cnp/guard-db/ingress/IPv4/0")),
                (29825, "outport == @guard.db && ip && ip6.src == $guard.db.ingress.0.web.IPv6 && tcp.dst == 5432", "allow-related", Some("cnp/guard-db/ingress/IPv6/0")),
                (29825, "outport == @guard.db && ip && ip6.src == $guard.db.ingress.0.web.IPv6 && 1000 <= udp.dst <= 2000", "allow-related", Some("cnp/guard-db/ingress/IPv6/0")),
                (29824, "outport == @guard.db && ip && ip4.src == $guard.db.ingress.1..IPv4", "drop", Some("cnp/guard-db/ingress/IPv4/1")),
            ]
        );
        let deny = &d.ingress_acls[4];
        assert!(deny.log && deny.severity == Some("warning") && deny.apply_after_lb);
        assert!(!d.ingress_acls[0].log);
        assert_eq!(
            acls(&d.egress_acls),
            vec![(
                29825,
                "inport == @guard.db && ip && ip4.dst == $guard.db.egress.0.infra.IPv4",
                "drop",
                Some("cnp/guard-db/egress/IPv4/0")
            )]
        );
        assert!(d.concerned.contains("ns-a/db") && d.concerned.contains("ns-b/cli"));
        assert!(selects_nodes(&c));
    }

    #[test]
    fn names_not_starting_with_a_letter_get_upstreams_prefix() {
        assert_eq!(policy_name("1-x"), "cnp1-x");
        assert_eq!(pg_name("1-x"), "cnp1.x");
        let w = world();
        let c = cnp(
            "9lives",
            "Admin",
            399,
            json!({"subject": {"namespaces": {}},
            "egress": [{"action": "Accept", "to": [{"networks": ["10.1.2.3/8", "bogus", "fd00:1::5/64"]}]}]}),
        );
        let top = top_priority(&c, &[]).unwrap();
        assert_eq!(top, 20025);
        let d = desired(&c, top, &w.cx()).unwrap();
        assert_eq!(set(&d, "cnp9lives.egress.0..IPv4"), ["10.0.0.0/8"]);
        assert_eq!(set(&d, "cnp9lives.egress.0..IPv6"), ["fd00:1::/64"]);
        assert_eq!(
            d.egress_acls[0].name.as_deref(),
            Some("cnp/cnp9lives/egress/IPv4/0")
        );
        assert_eq!(d.ports.len(), 3);
    }

    #[test]
    fn pass_writes_no_acl_and_excludes_its_traffic_from_later_rules() {
        let w = world();
        let c = cnp(
            "p",
            "Admin",
            0,
            json!({"subject": {"namespaces": {"matchLabels": {"team": "a"}}},
                   "ingress": [
                       {"name": "b", "action": "Pass", "from": [{"namespaces": {"matchLabels": {"team": "b"}}}],
                        "ports": [{"portNumber": {"protocol": "TCP", "port": 80}}]},
                       {"name": "all", "action": "Deny", "from": [{"namespaces": {}}]}]}),
        );
        let d = desired(&c, 30000, &w.cx()).unwrap();
        assert_eq!(
            acls(&d.ingress_acls),
            vec![
                (29999, "outport == @p && ip && ip4.src == $p.ingress.1.all.IPv4 && !(ip4.src == $p.ingress.0.b.IPv4 && tcp.dst == 80)", "drop", Some("cnp/p/ingress/IPv4/1")),
                (29999, "outport == @p && ip && ip6.src == $p.ingress.1.all.IPv6 && !(ip6.src == $p.ingress.0.b.IPv6 && tcp.dst == 80)", "drop", Some("cnp/p/ingress/IPv6/1")),
            ]
        );
        assert_eq!(set(&d, "p.ingress.0.b.IPv4"), ["10.16.0.4"]);
    }

    #[test]
    fn baseline_policies_pack_below_network_policy_by_priority() {
        let rules = |n: usize| {
            let r: Vec<Value> = (0..n)
                .map(|_| json!({"action": "Deny", "from": [{"namespaces": {}}]}))
                .collect();
            json!({"subject": {"namespaces": {}}, "ingress": r})
        };
        let a = Arc::new(cnp("a", "Baseline", 5, rules(3)));
        let b = Arc::new(cnp("b", "Baseline", 2, rules(10)));
        let admin = Arc::new(cnp("c", "Admin", 1, rules(20)));
        let all = vec![a.clone(), b.clone(), admin.clone()];
        assert_eq!(top_priority(&b, &all), Ok(BASELINE_TOP));
        assert_eq!(top_priority(&a, &all), Ok(BASELINE_TOP - 10));
        assert_eq!(top_priority(&admin, &all), Ok(29975));
        let w = world();
        let d = desired(&a, BASELINE_TOP - 10, &w.cx()).unwrap();
        assert_eq!(d.ingress_acls.last().unwrap().priority, 1987);
        // The band is finite: 199 priorities in all.
        let big: Vec<Arc<ClusterNetworkPolicy>> = (0..8)
            .map(|i| Arc::new(cnp(&format!("x{i}"), "Baseline", i, rules(25))))
            .collect();
        assert!(top_priority(&big[6], &big).is_ok());
        assert!(top_priority(&big[7], &big).unwrap_err().contains("199"));
    }

    #[test]
    fn bad_input_is_refused_with_upstreams_reasons() {
        let w = world();
        let bad_tier = cnp("x", "Middle", 1, json!({"subject": {"namespaces": {}}}));
        assert!(validate(&bad_tier)
            .unwrap_err()
            .contains("unknown cnp tier"));
        let too_high = cnp("x", "Admin", 400, json!({"subject": {"namespaces": {}}}));
        assert!(validate(&too_high).unwrap_err().contains("0 to 399"));
        let many: Vec<Value> = (0..26)
            .map(|_| json!({"action": "Deny", "from": []}))
            .collect();
        let too_many = cnp(
            "x",
            "Admin",
            1,
            json!({"subject": {"namespaces": {}}, "ingress": many}),
        );
        assert!(validate(&too_many).unwrap_err().contains("at most 25"));
        let nets: Vec<String> = (0..26).map(|i| format!("10.0.{i}.0/24")).collect();
        let wide = cnp(
            "x",
            "Admin",
            1,
            json!({"subject": {"namespaces": {}},
            "egress": [{"action": "Deny", "to": [{"networks": nets}]}]}),
        );
        assert!(validate(&wide).unwrap_err().contains("maximum of 25"));
        let fqdn = cnp(
            "x",
            "Admin",
            1,
            json!({"subject": {"namespaces": {}},
            "egress": [{"action": "Accept", "to": [{"domainNames": ["a.example.com."]}]}]}),
        );
        assert!(desired(&fqdn, 1, &w.cx())
            .unwrap_err()
            .contains("DNSNameResolver is disabled"));
        // With the resolver on, every egress rule of a policy naming domains has its ACLs
        // (upstream checks the policy, not the rule), their sets empty until resolution.
        let two = cnp(
            "x",
            "Admin",
            1,
            json!({"subject": {"namespaces": {}},
            "egress": [{"name": "sites", "action": "Deny", "to": [{"domainNames": ["a.example.com."]}]},
                       {"name": "none", "action": "Deny", "to": [{"networks": ["bad"]}]}]}),
        );
        let resolved = crate::dns_names::Resolved::default();
        let cx = Cluster {
            domains: Some(&resolved),
            ..w.cx()
        };
        let d = desired(&two, 29975, &cx).unwrap();
        let names: Vec<_> = d
            .egress_acls
            .iter()
            .filter_map(|a| a.name.as_deref())
            .collect();
        assert_eq!(
            names,
            [
                "cnp/x/egress/IPv4/0",
                "cnp/x/egress/IPv6/0",
                "cnp/x/egress/IPv4/1",
                "cnp/x/egress/IPv6/1"
            ]
        );
        assert!(d.address_sets.iter().all(|s| s.addresses.is_empty()));
        let empty = cnp(
            "x",
            "Admin",
            1,
            json!({"subject": {"namespaces": {}},
            "egress": [{"action": "Accept", "to": [{}]}]}),
        );
        assert!(desired(&empty, 1, &w.cx())
            .unwrap_err()
            .contains("egressPeer"));
    }

    #[test]
    fn the_oldest_policy_of_a_tier_holds_a_contested_priority() {
        let mk = |name: &str, tier: &str, ts: &str| {
            let mut c = cnp(name, tier, 7, json!({"subject": {"namespaces": {}}}));
            c.metadata.creation_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts.parse().unwrap()),
            );
            Arc::new(c)
        };
        let old = mk("zzz", "Admin", "2024-01-01T00:00:00Z");
        let new = mk("aaa", "Admin", "2024-02-01T00:00:00Z");
        let other_tier = mk("bbb", "Baseline", "2023-01-01T00:00:00Z");
        let all = vec![old.clone(), new.clone(), other_tier.clone()];
        assert_eq!(priority_holder(&new, &all), Some("zzz".into()));
        assert_eq!(priority_holder(&old, &all), None);
        assert_eq!(priority_holder(&other_tier, &all), None);
    }

    #[test]
    fn pods_concern_the_policies_selecting_them() {
        let w = world();
        let c = cnp(
            "x",
            "Baseline",
            1,
            json!({"subject": {"pods": {"namespaceSelector": {"matchLabels": {"team": "a"}}, "podSelector": {"matchLabels": {"app": "db"}}}},
                   "egress": [{"action": "Accept", "to": [{"namespaces": {"matchLabels": {"team": "b"}}}]}]}),
        );
        let ns = |n: usize| Some(w.namespaces[n].as_ref());
        assert!(concerns(&c, &w.pods[1], ns(0)));
        assert!(!concerns(&c, &w.pods[0], ns(0)));
        assert!(concerns(&c, &w.pods[2], ns(1)));
        assert!(!selects_nodes(&c));
    }
}
