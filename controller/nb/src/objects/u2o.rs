//! An underlay subnet interconnected with the overlay (`u2oInterconnection`) in the default
//! VPC, as upstream lays it out: the underlay switch keeps its physical gateway and localnet
//! port, and also gets the router patch pair whose router port holds the subnet's extra u2o
//! address, plus per CIDR the policies that keep overlay ↔ underlay traffic inside OVN and
//! send everything else of the subnet to the physical gateway.
//!
//! Policies (`external_ids` `vendor`, `subnet`, `isU2ORoutePolicy=true`), per CIDR of family
//! `ipN` with physical gateway `gw`, in the default VPC (a custom VPC: see [`U2o::default_vpc`]):
//! * routing all (the default): 29400 `ipN.dst == <cidr>` allow; 31000
//!   `ipN.dst == $<ls>.u2o_exclude_ip.ipN && ipN.src == <cidr>` reroute `gw` (node addresses
//!   are reached through the physical network, not `ovn0`); 29000 `ipN.src == <cidr>` reroute
//!   `gw`.
//! * `overlayOnlyRouting` (marked `isU2OOverlayOnlyRoutePolicy=true` but 30050): 29400
//!   `ipN.src == $<vpc>.u2o_overlay_cidrs.ipN && ipN.dst == <cidr>` allow; the same 31000;
//!   30060 `ipN.src == <cidr> && ipN.dst == <cidr>` allow; 30050 `ipN.src == <cidr>` reroute
//!   `gw`.

use std::net::IpAddr;

use ovsdb::model::Model;
use ovsdb::models::nb::{
    AddressSet, LogicalRouter, LogicalRouterPolicy, LogicalSwitchPort, PortGroup,
};
use ovsdb::{Atom, Datum, Row};

use super::gateway::{delete_subnet_node_pgs, remove_owned_policies};
use super::names::{cidr_prefix, family_prefix, pg_name, subnet_node_pg};
use super::rows::{ext, key, map, ours, row, strings, tagged, text, VENDOR};
use super::subnet::{load_balancers, localnet_port, router_ports, switch, Localnet, OverlaySubnet};
use crate::plan::{Parent, Plan, PlanError};

type Policy = LogicalRouterPolicy;

/// Overlay → underlay: the subnet's CIDR stays inside OVN (beats the 29000 reroutes).
pub const U2O_SUBNET_POLICY_PRIORITY: i64 = 29400;
/// overlayOnlyRouting: traffic within the subnet stays on its switch.
pub const U2O_SAME_SUBNET_POLICY_PRIORITY: i64 = 30060;
/// overlayOnlyRouting: the rest of the subnet's traffic goes to the physical gateway.
pub const U2O_PHYSICAL_GATEWAY_POLICY_PRIORITY: i64 = 30050;

/// The u2o side of an underlay subnet.
#[derive(Debug, Clone)]
pub struct U2o<'a> {
    /// The VPC whose overlay CIDR sets `overlayOnlyRouting` matches.
    pub vpc: &'a str,
    /// The u2o addresses (one per CIDR family), the router port's `networks`.
    pub ips: Vec<IpAddr>,
    /// The router port's MAC (the address's IPAM MAC).
    pub mac: &'a str,
    /// Every node's InternalIP: reached through the physical gateway, not `ovn0`.
    pub node_ips: Vec<IpAddr>,
    /// `spec.u2oFeatures.overlayOnlyRouting`.
    pub overlay_only: bool,
    /// The default VPC without OVN load balancers for the subnet (`--enable-lb=false` or
    /// `enableLb: false`): Services are reached through each node (upstream's
    /// `addPolicyRouteForU2ONoLoadBalancer`).
    pub no_lb: Option<NoLb>,
    /// Whether the router is the default VPC's. A custom VPC's u2o subnet has its 31000
    /// `dst == <cidr>` allow as an overlay subnet does, and (routing all) only the 29000
    /// reroute of the u2o policies.
    pub default_vpc: bool,
}

/// A u2o subnet's Service reroutes: per node, the port group `<ls>.<node>` of the subnet's
/// pods there (`external_ids` `lr`, `ls`, `u2o=true`) and per Service CIDR a 29400 policy
/// `ipN.src == $<pg>_ipN && ipN.dst == <svc cidr>` rerouted to the node's join address
/// (`isU2ONoLBRoutePolicy=true`, `node`, `svcCidr`).
#[derive(Debug, Clone)]
pub struct NoLb {
    /// The nodes with a join address.
    pub nodes: Vec<NoLbNode>,
    /// `--service-cluster-ip-range`, one CIDR per family.
    pub service_cidrs: Vec<String>,
}

/// One node of [`NoLb`].
#[derive(Debug, Clone)]
pub struct NoLbNode {
    /// Node name.
    pub node: String,
    /// Its join addresses.
    pub join_ips: Vec<IpAddr>,
    /// The ports of the subnet's pods on it (added to its group; pods leave it as their
    /// ports are deleted).
    pub ports: Vec<String>,
}

/// The name of a subnet's address set of node addresses (`<ls>.u2o_exclude_ip.ip4|ip6`, dots
/// for dashes).
pub fn u2o_exclude_set(subnet: &str, fam: &str) -> String {
    format!("{}.u2o_exclude_ip.{fam}", pg_name(subnet))
}

/// States a u2o underlay subnet: switch, localnet port, load balancers, router patch pair on
/// the u2o address, the policies above and the exclude address sets; no per-node port groups.
pub fn u2o_subnet(
    plan: &mut Plan<'_>,
    s: &OverlaySubnet<'_>,
    ln: &Localnet<'_>,
    u: &U2o<'_>,
) -> Result<(), PlanError> {
    switch(plan, s)?;
    localnet_port(plan, s.name, &s.cidrs, ln)?;
    let networks: Vec<String> = s
        .cidrs
        .iter()
        .filter_map(|cidr| {
            let fam = cidr_prefix(cidr);
            let ip = u.ips.iter().find(|ip| family_prefix(ip) == fam)?;
            Some(format!("{ip}/{}", cidr.rsplit('/').next().unwrap_or("")))
        })
        .collect();
    router_ports(plan, s, networks, Some(u.mac))?;
    let tags = [
        (key::VENDOR, VENDOR),
        (key::SUBNET, s.name),
        (key::IS_U2O_ROUTE_POLICY, "true"),
    ];
    for fam in ["ip4", "ip6"] {
        let addrs: Vec<String> = u
            .node_ips
            .iter()
            .filter(|ip| family_prefix(ip) == fam)
            .map(IpAddr::to_string)
            .collect();
        plan.ensure_root(
            AddressSet::TABLE,
            &u2o_exclude_set(s.name, fam),
            row!(AddressSet {
                ADDRESSES: strings(addrs),
                EXTERNAL_IDS: map(tags),
            }),
        )?;
    }
    let only = [
        (key::VENDOR, VENDOR),
        (key::SUBNET, s.name),
        (key::IS_U2O_ROUTE_POLICY, "true"),
        (key::IS_U2O_OVERLAY_ONLY, "true"),
    ];
    let marked = if u.overlay_only { &only[..] } else { &tags[..] };
    let mut desired: Vec<Row> = Vec::new();
    let mut policy = |priority: i64, m: String, gw: Option<&str>, ids: &[(&str, &str)]| {
        let mut r = row!(Policy {
            PRIORITY: Datum::from(priority),
            MATCH: Datum::from(m),
            ACTION: Datum::from(if gw.is_some() { "reroute" } else { "allow" }),
            EXTERNAL_IDS: map(ids.iter().copied()),
        });
        if let Some(gw) = gw {
            r.insert(Policy::NEXTHOPS, strings([gw]));
        }
        desired.push(r);
    };
    let common = [(key::SUBNET, s.name), (key::VENDOR, VENDOR)];
    for (cidr, gw) in s.cidrs.iter().zip(&s.gateways) {
        let f = cidr_prefix(cidr);
        let exclude = u2o_exclude_set(s.name, f);
        if !u.default_vpc {
            policy(
                super::SUBNET_POLICY_PRIORITY,
                format!("{f}.dst == {cidr}"),
                None,
                &common,
            );
        }
        if u.default_vpc || u.overlay_only {
            policy(
                super::SUBNET_POLICY_PRIORITY,
                format!("{f}.dst == ${exclude} && {f}.src == {cidr}"),
                Some(gw),
                marked,
            );
        }
        if u.overlay_only {
            let overlay = format!("{}.u2o_overlay_cidrs.{f}", pg_name(u.vpc));
            policy(
                U2O_SUBNET_POLICY_PRIORITY,
                format!("{f}.src == ${overlay} && {f}.dst == {cidr}"),
                None,
                marked,
            );
            policy(
                U2O_SAME_SUBNET_POLICY_PRIORITY,
                format!("{f}.src == {cidr} && {f}.dst == {cidr}"),
                None,
                marked,
            );
            policy(
                U2O_PHYSICAL_GATEWAY_POLICY_PRIORITY,
                format!("{f}.src == {cidr}"),
                Some(gw),
                &tags,
            );
        } else {
            if u.default_vpc {
                policy(
                    U2O_SUBNET_POLICY_PRIORITY,
                    format!("{f}.dst == {cidr}"),
                    None,
                    &tags,
                );
            }
            policy(
                super::GATEWAY_POLICY_PRIORITY,
                format!("{f}.src == {cidr}"),
                Some(gw),
                &tags,
            );
        }
    }
    let mut groups: Vec<String> = Vec::new();
    if let Some(nl) = &u.no_lb {
        for n in &nl.nodes {
            let pg = subnet_node_pg(s.name, &n.node);
            plan.ensure_root(
                PortGroup::TABLE,
                &pg,
                row!(PortGroup {
                    EXTERNAL_IDS: map([
                        (key::LR, s.router),
                        (key::LS, s.name),
                        (key::U2O, "true"),
                        (key::VENDOR, VENDOR),
                    ]),
                }),
            )?;
            let members: Vec<Atom> = n
                .ports
                .iter()
                .filter_map(|p| plan.lookup(LogicalSwitchPort::TABLE, p))
                .map(|r| r.atom())
                .collect();
            plan.set_members(PortGroup::TABLE, &pg, PortGroup::PORTS, &members, &[])?;
            for ip in &n.join_ips {
                let f = family_prefix(ip);
                let hop = ip.to_string();
                for svc in nl.service_cidrs.iter().filter(|c| cidr_prefix(c) == f) {
                    let ids = [
                        (key::VENDOR, VENDOR),
                        (key::SUBNET, s.name),
                        (key::IS_U2O_ROUTE_POLICY, "true"),
                        (key::IS_U2O_NO_LB, "true"),
                        (key::NODE, n.node.as_str()),
                        (key::SVC_CIDR, svc.as_str()),
                    ];
                    policy(
                        U2O_SUBNET_POLICY_PRIORITY,
                        format!("{f}.src == ${pg}_{f} && {f}.dst == {svc}"),
                        Some(&hop),
                        &ids,
                    );
                }
            }
            groups.push(pg);
        }
    }
    remove_no_lb_groups(plan, s.name, &groups)?;
    let name = s.name.to_string();
    plan.sync_keyed_children(
        Parent {
            table: LogicalRouter::TABLE,
            name: s.router,
            column: LogicalRouter::POLICIES,
        },
        Policy::TABLE,
        &[Policy::PRIORITY, Policy::MATCH],
        desired,
        Some((key::SUBNET, s.name)),
        move |r| ours(r) && ext(r, key::SUBNET) == Some(name.as_str()),
    )?;
    // Per-node port groups of an earlier overlay life.
    delete_subnet_node_pgs(plan, (key::SUBNET, s.name), &[])?;
    load_balancers(plan, s)
}

/// Deletes the subnet's [`NoLb`] port groups but `keep`.
fn remove_no_lb_groups(
    plan: &mut Plan<'_>,
    subnet: &str,
    keep: &[String],
) -> Result<(), PlanError> {
    plan.monitored(PortGroup::TABLE)?;
    let stale: Vec<ovsdb::Uuid> = tagged(plan.cache(), PortGroup::TABLE, key::LS, subnet)
        .into_iter()
        .filter(|(_, r)| {
            ours(r)
                && ext(r, key::U2O) == Some("true")
                && !text(r, PortGroup::NAME).is_some_and(|n| keep.iter().any(|k| k == n))
        })
        .map(|(u, _)| u)
        .collect();
    for u in stale {
        plan.delete_root_uuid(PortGroup::TABLE, u)?;
    }
    Ok(())
}

/// Removes what [`u2o_subnet`] added beyond a plain underlay subnet's rows: its policies,
/// exclude address sets and Service port groups (the patch pair is the caller's).
pub fn remove_u2o_rows(plan: &mut Plan<'_>, subnet: &str, router: &str) -> Result<(), PlanError> {
    remove_owned_policies(plan, router, (key::SUBNET, subnet))?;
    remove_no_lb_groups(plan, subnet, &[])?;
    plan.monitored(AddressSet::TABLE)?;
    for fam in ["ip4", "ip6"] {
        let name = u2o_exclude_set(subnet, fam);
        if plan.lookup(AddressSet::TABLE, &name).is_some() {
            plan.delete_root(AddressSet::TABLE, &name)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::objects::testing::{empty_nb, inserted, ops};
    use crate::objects::vpc_router;

    fn plan_u2o(overlay_only: bool) -> Vec<Value> {
        plan_u2o_in("ovn-cluster", overlay_only)
    }

    fn plan_u2o_in(router: &str, overlay_only: bool) -> Vec<Value> {
        plan_u2o_with(router, overlay_only, None)
    }

    fn plan_u2o_with(router: &str, overlay_only: bool, no_lb: Option<NoLb>) -> Vec<Value> {
        let cache = empty_nb();
        let mut plan = Plan::new(&cache, "OVN_Northbound");
        vpc_router(&mut plan, router).unwrap();
        u2o_subnet(
            &mut plan,
            &OverlaySubnet {
                name: "vlan-sub",
                router,
                cidrs: vec!["172.17.0.0/24".into()],
                gateways: vec!["172.17.0.1".into()],
                load_balancers: None,
                detach_load_balancers: None,
                route_table: "",
            },
            &Localnet {
                provider: "net1",
                vlan_id: 100,
            },
            &U2o {
                vpc: router,
                ips: vec!["172.17.0.2".parse().unwrap()],
                mac: "00:00:00:8e:1b:2c",
                node_ips: vec!["172.18.0.2".parse().unwrap(), "172.18.0.3".parse().unwrap()],
                overlay_only,
                no_lb,
                default_vpc: router == "ovn-cluster",
            },
        )
        .unwrap();
        ops(plan)
    }

    fn policies(ops: &[Value]) -> Vec<(i64, String, String, Value)> {
        ops.iter()
            .filter(|o| o["op"] == "insert" && o["table"] == "Logical_Router_Policy")
            .map(|o| {
                let r = &o["row"];
                (
                    r["priority"].as_i64().unwrap(),
                    r["match"].as_str().unwrap().to_string(),
                    r["action"].as_str().unwrap().to_string(),
                    r["external_ids"].clone(),
                )
            })
            .collect()
    }

    #[test]
    fn u2o_rows_match_upstream() {
        let ops = plan_u2o(false);
        let lrp = inserted(&ops, "Logical_Router_Port", "ovn-cluster-vlan-sub");
        assert_eq!(lrp["row"]["networks"], "172.17.0.2/24");
        assert_eq!(lrp["row"]["mac"], "00:00:00:8e:1b:2c");
        let lsp = inserted(&ops, "Logical_Switch_Port", "vlan-sub-ovn-cluster");
        assert_eq!(lsp["row"]["type"], "router");
        inserted(&ops, "Logical_Switch_Port", "localnet.vlan-sub");
        let set = inserted(&ops, "Address_Set", "vlan.sub.u2o_exclude_ip.ip4");
        assert_eq!(
            set["row"]["addresses"],
            json!(["set", ["172.18.0.2", "172.18.0.3"]])
        );
        let ids = json!([
            "map",
            [
                ["isU2ORoutePolicy", "true"],
                ["subnet", "vlan-sub"],
                ["vendor", "kube-ovn"]
            ]
        ]);
        assert_eq!(set["row"]["external_ids"], ids);
        inserted(&ops, "Address_Set", "vlan.sub.u2o_exclude_ip.ip6");
        let mut got = policies(&ops);
        got.sort_by_key(|p| (p.0, p.1.clone()));
        let want = vec![
            (
                29000,
                "ip4.src == 172.17.0.0/24".to_string(),
                "reroute".to_string(),
                ids.clone(),
            ),
            (
                29400,
                "ip4.dst == 172.17.0.0/24".to_string(),
                "allow".to_string(),
                ids.clone(),
            ),
            (
                31000,
                "ip4.dst == $vlan.sub.u2o_exclude_ip.ip4 && ip4.src == 172.17.0.0/24".to_string(),
                "reroute".to_string(),
                ids,
            ),
        ];
        assert_eq!(got, want);
        let nexthops: Vec<&Value> = ops
            .iter()
            .filter(|o| o["table"] == "Logical_Router_Policy" && o["row"]["action"] == "reroute")
            .map(|o| &o["row"]["nexthops"])
            .collect();
        assert!(
            nexthops.iter().all(|n| **n == json!("172.17.0.1")),
            "{nexthops:?}"
        );
    }

    #[test]
    fn overlay_only_routing_rows_match_upstream() {
        let ops = plan_u2o(true);
        let mut got: Vec<(i64, String, bool)> = policies(&ops)
            .into_iter()
            .map(|(p, m, _, ids)| {
                let only = ids.to_string().contains("isU2OOverlayOnlyRoutePolicy");
                (p, m, only)
            })
            .collect();
        got.sort();
        let mut want: Vec<(i64, String, bool)> = vec![
            (30050, "ip4.src == 172.17.0.0/24".into(), false),
            (
                30060,
                "ip4.src == 172.17.0.0/24 && ip4.dst == 172.17.0.0/24".into(),
                true,
            ),
            (
                29400,
                "ip4.src == $ovn.cluster.u2o_overlay_cidrs.ip4 && ip4.dst == 172.17.0.0/24".into(),
                true,
            ),
            (
                31000,
                "ip4.dst == $vlan.sub.u2o_exclude_ip.ip4 && ip4.src == 172.17.0.0/24".into(),
                true,
            ),
        ];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn custom_vpc_u2o_rows_match_upstream() {
        let ops = plan_u2o_in("vpc1", false);
        inserted(&ops, "Logical_Router_Port", "vpc1-vlan-sub");
        let mut got: Vec<(i64, String)> = policies(&ops)
            .into_iter()
            .map(|(p, m, _, _)| (p, m))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (29000, "ip4.src == 172.17.0.0/24".to_string()),
                (31000, "ip4.dst == 172.17.0.0/24".to_string()),
            ]
        );
        inserted(&ops, "Address_Set", "vlan.sub.u2o_exclude_ip.ip4");
    }

    #[test]
    fn no_load_balancer_rows_match_upstream() {
        let ops = plan_u2o_with(
            "ovn-cluster",
            false,
            Some(NoLb {
                nodes: vec![NoLbNode {
                    node: "kube-ovn-worker".into(),
                    join_ips: vec!["100.64.0.3".parse().unwrap()],
                    ports: vec![],
                }],
                service_cidrs: vec!["10.96.0.0/12".into()],
            }),
        );
        let pg = inserted(&ops, "Port_Group", "vlan.sub.kube.ovn.worker");
        assert_eq!(
            pg["row"]["external_ids"],
            json!([
                "map",
                [
                    ["lr", "ovn-cluster"],
                    ["ls", "vlan-sub"],
                    ["u2o", "true"],
                    ["vendor", "kube-ovn"]
                ]
            ])
        );
        let p = ops
            .iter()
            .find(|o| {
                o["op"] == "insert"
                    && o["table"] == "Logical_Router_Policy"
                    && o["row"]["match"]
                        == "ip4.src == $vlan.sub.kube.ovn.worker_ip4 && ip4.dst == 10.96.0.0/12"
            })
            .expect("the Service reroute");
        assert_eq!(p["row"]["priority"], 29400);
        assert_eq!(p["row"]["nexthops"], "100.64.0.3");
        assert_eq!(
            p["row"]["external_ids"],
            json!([
                "map",
                [
                    ["isU2ONoLBRoutePolicy", "true"],
                    ["isU2ORoutePolicy", "true"],
                    ["node", "kube-ovn-worker"],
                    ["subnet", "vlan-sub"],
                    ["svcCidr", "10.96.0.0/12"],
                    ["vendor", "kube-ovn"]
                ]
            ])
        );
    }
}
