//! The 29000 gateway policies of a subnet: distributed (per node, a port group
//! `<subnet>.<node>` of the subnet's pods there, rerouted to that node's join address) or
//! centralized (the whole subnet rerouted to the gateway nodes).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ovsdb::model::Model;
use ovsdb::models::nb::{LogicalRouter, LogicalRouterPolicy, PortGroup};
use ovsdb::{Datum, Row};

use super::names::{cidr_prefix, family_prefix, subnet_node_pg};
use super::rows::{ext, integer, key, map, ours, owned_map, row, strings, tagged, text, VENDOR};
use crate::plan::{Parent, Plan, PlanError};

type Policy = LogicalRouterPolicy;

/// Priority of the gateway policies (distributed per node, centralized per subnet).
pub const GATEWAY_POLICY_PRIORITY: i64 = 29000;

/// Per-node data the gateway policies need.
#[derive(Debug, Clone)]
pub struct NodeJoin {
    /// Node name.
    pub node: String,
    /// The node's join addresses.
    pub join_ips: Vec<IpAddr>,
}

/// A distributed subnet as the per-node gateway rows need it.
#[derive(Debug, Clone)]
pub struct DistributedSubnet {
    /// Subnet name.
    pub name: String,
    /// Its address families (`ip4`, `ip6`).
    pub families: Vec<&'static str>,
}

/// The router's policies column, where every gateway policy hangs.
fn policies(router: &str) -> Parent<'_> {
    Parent {
        table: LogicalRouter::TABLE,
        name: router,
        column: LogicalRouter::POLICIES,
    }
}

/// The port group `<subnet>.<node>` and the 29000 policies rerouting the subnet's pods on that
/// node to the node's join address.
fn gateway_rows(
    plan: &mut Plan<'_>,
    subnet: &str,
    families: &[&str],
    n: &NodeJoin,
) -> Result<Vec<Row>, PlanError> {
    let pg = subnet_node_pg(subnet, &n.node);
    let np = format!("{subnet}/{}", n.node);
    plan.ensure_root(
        PortGroup::TABLE,
        &pg,
        row!(PortGroup {
            EXTERNAL_IDS: map([
                (key::SUBNET, subnet),
                (key::NODE, n.node.as_str()),
                (key::NP, np.as_str()),
                (key::VENDOR, VENDOR),
            ]),
        }),
    )?;
    let mut desired = Vec::new();
    for ip in &n.join_ips {
        let fam = family_prefix(ip);
        if !families.contains(&fam) {
            continue;
        }
        desired.push(row!(Policy {
            PRIORITY: Datum::from(GATEWAY_POLICY_PRIORITY),
            MATCH: Datum::from(format!("{fam}.src == ${pg}_{fam}")),
            ACTION: Datum::from("reroute"),
            NEXTHOPS: strings([ip.to_string()]),
            EXTERNAL_IDS: map([
                (key::NODE, n.node.as_str()),
                (key::SUBNET, subnet),
                (key::VENDOR, VENDOR),
            ]),
        }));
    }
    Ok(desired)
}

/// Distributed gateway: per node, the port group `<subnet>.<node>` and a 29000 policy rerouting
/// the subnet's pods on that node to the node's join address. Stale ones (nodes gone, or the
/// subnet now centralized) are removed.
pub fn distributed_gateway(
    plan: &mut Plan<'_>,
    router: &str,
    subnet: &str,
    families: &[&'static str],
    nodes: &[NodeJoin],
) -> Result<(), PlanError> {
    let mut desired = Vec::new();
    for n in nodes {
        desired.extend(gateway_rows(plan, subnet, families, n)?);
    }
    let keep: Vec<String> = nodes
        .iter()
        .map(|n| subnet_node_pg(subnet, &n.node))
        .collect();
    delete_subnet_node_pgs(plan, (key::SUBNET, subnet), &keep)?;
    sync_gateway_policies(plan, router, subnet, desired)
}

/// Makes `desired` the subnet's gateway policies (priority 29000, `external_ids:subnet`) on
/// `router`, distributed or centralized alike: matching rows stay, others go.
fn sync_gateway_policies(
    plan: &mut Plan<'_>,
    router: &str,
    subnet: &str,
    desired: Vec<Row>,
) -> Result<(), PlanError> {
    let subnet_owned = subnet.to_string();
    plan.sync_keyed_children(
        policies(router),
        Policy::TABLE,
        &[Policy::PRIORITY, Policy::MATCH],
        desired,
        Some((key::SUBNET, subnet)),
        move |r| {
            integer(r, Policy::PRIORITY) == Some(GATEWAY_POLICY_PRIORITY)
                && ours(r)
                && ext(r, key::SUBNET) == Some(subnet_owned.as_str())
        },
    )
}

/// One node's side of every distributed subnet's gateway (what a node joining or changing its
/// join address needs), in one plan instead of one re-plan of every subnet: its port groups
/// `<subnet>.<node>` and 29000 policies; the node's ones of subnets not listed go.
pub fn node_gateways(
    plan: &mut Plan<'_>,
    router: &str,
    node: &NodeJoin,
    subnets: &[DistributedSubnet],
) -> Result<(), PlanError> {
    let mut desired = Vec::new();
    for s in subnets {
        desired.extend(gateway_rows(plan, &s.name, &s.families, node)?);
    }
    let keep: Vec<String> = subnets
        .iter()
        .map(|s| subnet_node_pg(&s.name, &node.node))
        .collect();
    delete_subnet_node_pgs(plan, (key::NODE, &node.node), &keep)?;
    let owner = node.node.clone();
    plan.sync_keyed_children(
        policies(router),
        Policy::TABLE,
        &[Policy::PRIORITY, Policy::MATCH],
        desired,
        Some((key::NODE, node.node.as_str())),
        move |r| {
            integer(r, Policy::PRIORITY) == Some(GATEWAY_POLICY_PRIORITY)
                && ours(r)
                && ext(r, key::NODE) == Some(owner.as_str())
                && ext(r, key::SUBNET).is_some()
        },
    )
}

/// Deletes the per-subnet-node port groups (`<subnet>.<node>`) tagged `external_ids:key=value`
/// — one subnet's or one node's — except those named in `keep`.
/// Removes from `router` every kube-ovn policy whose `external_ids:<key>` is `value` (what a
/// deleted node or subnet leaves among the router's policies).
pub(crate) fn remove_owned_policies(
    plan: &mut Plan<'_>,
    router: &str,
    (key, value): (&str, &str),
) -> Result<(), PlanError> {
    let table = plan.monitored(LogicalRouterPolicy::TABLE)?;
    let owned: Vec<ovsdb::Uuid> = plan
        .children(&policies(router))
        .into_iter()
        .filter(|u| {
            table
                .get(u)
                .is_some_and(|r| ours(r) && ext(r, key) == Some(value))
        })
        .collect();
    for u in owned {
        plan.remove_child(LogicalRouter::TABLE, LogicalRouter::POLICIES, u)?;
    }
    Ok(())
}

pub(crate) fn delete_subnet_node_pgs(
    plan: &mut Plan<'_>,
    (tag, value): (&str, &str),
    keep: &[String],
) -> Result<(), PlanError> {
    plan.monitored(PortGroup::TABLE)?;
    let stale: Vec<ovsdb::Uuid> = tagged(plan.cache(), PortGroup::TABLE, tag, value)
        .into_iter()
        .filter(|(_, r)| {
            ours(r)
                && ext(r, key::SUBNET).is_some()
                && ext(r, key::NODE).is_some()
                && !text(r, PortGroup::NAME).is_some_and(|n| keep.iter().any(|k| k == n))
        })
        .map(|(u, _)| u)
        .collect();
    for u in stale {
        plan.delete_root_uuid(PortGroup::TABLE, u)?;
    }
    Ok(())
}

/// Centralized gateway: one 29000 policy per CIDR rerouting the subnet to the gateway node(s)'
/// join addresses, with upstream's `<node>: <ip>` external_ids. Distributed leftovers go.
pub fn centralized_gateway(
    plan: &mut Plan<'_>,
    router: &str,
    subnet: &str,
    cidrs: &[String],
    gateways: &[NodeJoin],
) -> Result<(), PlanError> {
    let mut desired = Vec::new();
    for cidr in cidrs {
        let fam = cidr_prefix(cidr);
        let hops: Vec<(String, String)> = gateways
            .iter()
            .flat_map(|g| {
                g.join_ips
                    .iter()
                    .filter(|ip| family_prefix(ip) == fam)
                    .map(|ip| (g.node.clone(), ip.to_string()))
            })
            .collect();
        if hops.is_empty() {
            continue;
        }
        let mut ids: BTreeMap<String, String> = hops.iter().cloned().collect();
        ids.insert(key::SUBNET.into(), subnet.into());
        ids.insert(key::VENDOR.into(), VENDOR.into());
        desired.push(row!(Policy {
            PRIORITY: Datum::from(GATEWAY_POLICY_PRIORITY),
            MATCH: Datum::from(format!("{fam}.src == {cidr}")),
            ACTION: Datum::from("reroute"),
            NEXTHOPS: strings(hops.into_iter().map(|(_, ip)| ip)),
            EXTERNAL_IDS: owned_map(&ids),
        }));
    }
    // The per-node groups go; the policy sync below replaces the distributed policies (same
    // priority and subnet) with the centralized ones.
    delete_subnet_node_pgs(plan, (key::SUBNET, subnet), &[])?;
    sync_gateway_policies(plan, router, subnet, desired)
}
