//! A node's rows: its port on the join switch, its port group `node.<node>` and the 30000
//! policies rerouting traffic for its InternalIPs to its join address.

use std::net::IpAddr;

use ovsdb::model::Model;
use ovsdb::models::nb::{
    LogicalRouter, LogicalRouterPolicy, LogicalSwitch, LogicalSwitchPort, PortGroup,
};
use ovsdb::Datum;

use super::gateway::{delete_subnet_node_pgs, remove_owned_policies};
use super::names::{node_lsp, node_pg};
use super::rows::{ext, integer, key, map, ours, row, strings, VENDOR};
use crate::plan::{Parent, Plan, PlanError};

type Policy = LogicalRouterPolicy;

/// Priority of the per-node "reroute to the node" policy.
pub const NODE_POLICY_PRIORITY: i64 = 30000;

/// What the NB holds for a node: its join port, its port group and its 30000 reroute policies.
#[derive(Debug, Clone)]
pub struct NodeObjects<'a> {
    /// Node name.
    pub node: &'a str,
    /// Join switch.
    pub join_switch: &'a str,
    /// VPC router.
    pub router: &'a str,
    /// Join port MAC.
    pub mac: &'a str,
    /// Join addresses (v4 first).
    pub join_ips: Vec<IpAddr>,
    /// The node's InternalIPs.
    pub node_ips: Vec<IpAddr>,
    /// `--node-local-dns-ip`: traffic from the node's pods to these is rerouted to the node,
    /// where the node-local DNS cache listens.
    pub local_dns_ips: &'a [IpAddr],
}

/// States a node's NB rows: join port, port group, the 30000 reroute policies for its
/// InternalIPs and, with node-local DNS, those for its pods' DNS traffic.
pub fn node(plan: &mut Plan<'_>, n: &NodeObjects<'_>) -> Result<(), PlanError> {
    let addresses = std::iter::once(n.mac.to_string())
        .chain(n.join_ips.iter().map(|ip| ip.to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    plan.ensure_named_child(
        Parent {
            table: LogicalSwitch::TABLE,
            name: n.join_switch,
            column: LogicalSwitch::PORTS,
        },
        LogicalSwitchPort::TABLE,
        &node_lsp(n.node),
        row!(LogicalSwitchPort {
            ADDRESSES: strings([addresses]),
            EXTERNAL_IDS: map([(key::LS, n.join_switch), (key::VENDOR, VENDOR)]),
        }),
    )?;
    let np = format!("node/{}", n.node);
    plan.ensure_root(
        PortGroup::TABLE,
        &node_pg(n.node),
        row!(PortGroup {
            EXTERNAL_IDS: map([
                (key::NODE, n.node),
                (key::NP, np.as_str()),
                (key::VENDOR, VENDOR)
            ]),
        }),
    )?;
    let mut desired = Vec::new();
    for join in &n.join_ips {
        for node_ip in n
            .node_ips
            .iter()
            .filter(|ip| ip.is_ipv4() == join.is_ipv4())
        {
            let (fam, af) = if join.is_ipv4() {
                ("ip4", "4")
            } else {
                ("ip6", "6")
            };
            desired.push(row!(Policy {
                PRIORITY: Datum::from(NODE_POLICY_PRIORITY),
                MATCH: Datum::from(format!("{fam}.dst == {node_ip}")),
                ACTION: Datum::from("reroute"),
                NEXTHOPS: strings([join.to_string()]),
                EXTERNAL_IDS: map([
                    (key::ADDRESS_FAMILY, af),
                    (key::NODE, n.node),
                    (key::VENDOR, VENDOR)
                ]),
            }));
        }
    }
    sync_node_policies(plan, n, desired, false)?;
    local_dns_policies(plan, n)
}

/// Converges the node's 30000 policies of one kind — the InternalIP reroutes or (`dns`) the
/// node-local DNS ones — on exactly `desired`.
fn sync_node_policies(
    plan: &mut Plan<'_>,
    n: &NodeObjects<'_>,
    desired: Vec<ovsdb::Row>,
    dns: bool,
) -> Result<(), PlanError> {
    let owner = n.node.to_string();
    plan.sync_keyed_children(
        Parent {
            table: LogicalRouter::TABLE,
            name: n.router,
            column: LogicalRouter::POLICIES,
        },
        Policy::TABLE,
        &[Policy::PRIORITY, Policy::MATCH],
        desired,
        Some((key::NODE, n.node)),
        move |r| {
            integer(r, Policy::PRIORITY) == Some(NODE_POLICY_PRIORITY)
                && ours(r)
                && ext(r, key::NODE) == Some(owner.as_str())
                && (ext(r, key::IS_LOCAL_DNS_CACHE) == Some("true")) == dns
        },
    )
}

/// Upstream's node-local DNS cache policies: per family with a DNS address, traffic from the
/// node's pods (`$node.<node>_ip4`, the port group's address set) to each DNS address is
/// rerouted to the node's join address.
fn local_dns_policies(plan: &mut Plan<'_>, n: &NodeObjects<'_>) -> Result<(), PlanError> {
    let pg = node_pg(n.node);
    let mut desired = Vec::new();
    for join in &n.join_ips {
        let (fam, af) = if join.is_ipv4() {
            ("ip4", "4")
        } else {
            ("ip6", "6")
        };
        for dns in n
            .local_dns_ips
            .iter()
            .filter(|ip| ip.is_ipv4() == join.is_ipv4())
        {
            desired.push(row!(Policy {
                PRIORITY: Datum::from(NODE_POLICY_PRIORITY),
                MATCH: Datum::from(format!("{fam}.src == ${pg}_{fam} && {fam}.dst == {dns}")),
                ACTION: Datum::from("reroute"),
                NEXTHOPS: strings([join.to_string()]),
                EXTERNAL_IDS: map([
                    (key::ADDRESS_FAMILY, af),
                    (key::IS_LOCAL_DNS_CACHE, "true"),
                    (key::NODE, n.node),
                    (key::VENDOR, VENDOR)
                ]),
            }));
        }
    }
    sync_node_policies(plan, n, desired, true)
}

/// Removes a node's NB rows: join port, node port group, its policies (30000 and distributed
/// 29000) and its per-subnet port groups.
pub fn delete_node(plan: &mut Plan<'_>, node: &str, router: &str) -> Result<(), PlanError> {
    // Out of its groups too (see `delete_port`), before the node's own group goes.
    super::pod::delete_port(plan, &node_lsp(node))?;
    plan.delete_root(PortGroup::TABLE, &node_pg(node))?;
    delete_subnet_node_pgs(plan, (key::NODE, node), &[])?;
    remove_owned_policies(plan, router, (key::NODE, node))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::objects::testing::{empty_nb, inserted, ops};
    use crate::objects::{distributed_gateway, vpc_router, NodeJoin};

    #[test]
    fn node_rows_and_distributed_gateway_match_upstream() {
        let cache = empty_nb();
        let mut plan = Plan::new(&cache, "OVN_Northbound");
        vpc_router(&mut plan, "ovn-cluster").unwrap();
        plan.ensure_root(LogicalSwitch::TABLE, "join", ovsdb::Row::new())
            .unwrap();
        let join: IpAddr = "100.64.0.2".parse().unwrap();
        node(
            &mut plan,
            &NodeObjects {
                node: "kube-ovn-worker",
                join_switch: "join",
                router: "ovn-cluster",
                mac: "0a:00:00:00:00:02",
                join_ips: vec![join],
                node_ips: vec!["172.18.0.3".parse().unwrap()],
                local_dns_ips: &["169.254.20.10".parse().unwrap()],
            },
        )
        .unwrap();
        distributed_gateway(
            &mut plan,
            "ovn-cluster",
            "ovn-default",
            &["ip4"],
            &[NodeJoin {
                node: "kube-ovn-worker".into(),
                join_ips: vec![join],
            }],
        )
        .unwrap();
        let ops = ops(plan);
        let lsp = inserted(&ops, "Logical_Switch_Port", "node-kube-ovn-worker");
        assert_eq!(lsp["row"]["addresses"], "0a:00:00:00:00:02 100.64.0.2");
        let pg = inserted(&ops, "Port_Group", "node.kube.ovn.worker");
        assert_eq!(
            pg["row"]["external_ids"],
            json!([
                "map",
                [
                    ["node", "kube-ovn-worker"],
                    ["np", "node/kube-ovn-worker"],
                    ["vendor", "kube-ovn"]
                ]
            ])
        );
        inserted(&ops, "Port_Group", "ovn.default.kube.ovn.worker");
        let policy = |m: &str| {
            ops.iter()
                .find(|o| o["table"] == "Logical_Router_Policy" && o["row"]["match"] == m)
                .unwrap_or_else(|| panic!("no policy {m}"))
                .clone()
        };
        let p = policy("ip4.dst == 172.18.0.3");
        assert_eq!(
            (p["row"]["priority"].clone(), p["row"]["action"].clone()),
            (json!(30000), json!("reroute"))
        );
        assert_eq!(p["row"]["nexthops"], "100.64.0.2");
        assert_eq!(
            p["row"]["external_ids"],
            json!([
                "map",
                [
                    ["address-family", "4"],
                    ["node", "kube-ovn-worker"],
                    ["vendor", "kube-ovn"]
                ]
            ])
        );
        let dns = policy("ip4.src == $node.kube.ovn.worker_ip4 && ip4.dst == 169.254.20.10");
        assert_eq!(
            (
                dns["row"]["priority"].clone(),
                dns["row"]["nexthops"].clone()
            ),
            (json!(30000), json!("100.64.0.2"))
        );
        assert_eq!(
            dns["row"]["external_ids"],
            json!([
                "map",
                [
                    ["address-family", "4"],
                    ["isLocalDnsCache", "true"],
                    ["node", "kube-ovn-worker"],
                    ["vendor", "kube-ovn"]
                ]
            ])
        );
        let g = policy("ip4.src == $ovn.default.kube.ovn.worker_ip4");
        assert_eq!(g["row"]["priority"], 29000);
        assert_eq!(
            g["row"]["external_ids"],
            json!([
                "map",
                [
                    ["node", "kube-ovn-worker"],
                    ["subnet", "ovn-default"],
                    ["vendor", "kube-ovn"]
                ]
            ])
        );
    }
}
