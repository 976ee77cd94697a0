//! An overlay subnet's rows: its logical switch, the patch ports to its VPC's router, the 31000
//! "allow" policy of each CIDR and the VPC load balancers on the switch.

use ovsdb::model::Model;
use ovsdb::models::nb::{
    LoadBalancer, LogicalRouter, LogicalRouterPolicy, LogicalRouterPort, LogicalSwitch,
    LogicalSwitchPort, PortGroup,
};
use ovsdb::{Atom, Datum, Row};

use super::names::{cidr_prefix, router_switch_lrp, switch_router_lsp};
use super::rows::{ext, integer, key, map, ours, row, strings, tagged, VENDOR};
use super::vpc::VpcLoadBalancers;
use crate::plan::{Parent, Plan, PlanError, RowRef};

type Policy = LogicalRouterPolicy;

/// Priority of the per-subnet "allow" policy.
pub const SUBNET_POLICY_PRIORITY: i64 = 31000;

/// An overlay subnet of a VPC as the NB sees it.
#[derive(Debug, Clone)]
pub struct OverlaySubnet<'a> {
    /// Subnet (and logical switch) name.
    pub name: &'a str,
    /// The VPC's router.
    pub router: &'a str,
    /// CIDRs, v4 first.
    pub cidrs: Vec<String>,
    /// Gateways, paired with `cidrs`.
    pub gateways: Vec<String>,
    /// Attach the VPC's load balancers (never for join).
    pub load_balancers: Option<&'a VpcLoadBalancers>,
    /// The LB names that must not stay attached (when `enableLb` is off).
    pub detach_load_balancers: Option<&'a VpcLoadBalancers>,
    /// `spec.routeTable` (LRP `options:route_table`).
    pub route_table: &'a str,
}

/// The switch, its router patch ports and the 31000 allow policy of an overlay subnet.
pub fn overlay_subnet(plan: &mut Plan<'_>, s: &OverlaySubnet<'_>) -> Result<(), PlanError> {
    switch(plan, s)?;

    let networks: Vec<String> = s
        .gateways
        .iter()
        .zip(&s.cidrs)
        .map(|(gw, cidr)| format!("{gw}/{}", cidr.rsplit('/').next().unwrap_or("")))
        .collect();
    router_ports(plan, s, networks, None)?;

    let policies: Vec<Row> = s
        .cidrs
        .iter()
        .map(|cidr| {
            row!(Policy {
                PRIORITY: Datum::from(SUBNET_POLICY_PRIORITY),
                MATCH: Datum::from(format!("{}.dst == {cidr}", cidr_prefix(cidr))),
                ACTION: Datum::from("allow"),
                EXTERNAL_IDS: map([(key::SUBNET, s.name), (key::VENDOR, VENDOR)]),
            })
        })
        .collect();
    let name = s.name.to_string();
    plan.sync_keyed_children(
        Parent {
            table: LogicalRouter::TABLE,
            name: s.router,
            column: LogicalRouter::POLICIES,
        },
        Policy::TABLE,
        &[Policy::PRIORITY, Policy::MATCH],
        policies,
        Some((key::SUBNET, s.name)),
        move |r| {
            integer(r, Policy::PRIORITY) == Some(SUBNET_POLICY_PRIORITY)
                && ours(r)
                && ext(r, key::SUBNET) == Some(name.as_str())
        },
    )?;

    load_balancers(plan, s)
}

/// The patch pair between a subnet's switch and its router: the `router` LSP `<ls>-<lr>` and
/// the LRP `<lr>-<ls>` with `networks`, its MAC `mac` or (when absent) a random one at creation.
pub(crate) fn router_ports(
    plan: &mut Plan<'_>,
    s: &OverlaySubnet<'_>,
    networks: Vec<String>,
    mac: Option<&str>,
) -> Result<(), PlanError> {
    let lsp = switch_router_lsp(s.name, s.router);
    let lrp = router_switch_lrp(s.router, s.name);
    plan.ensure_named_child(
        Parent {
            table: LogicalSwitch::TABLE,
            name: s.name,
            column: LogicalSwitch::PORTS,
        },
        LogicalSwitchPort::TABLE,
        &lsp,
        row!(LogicalSwitchPort {
            TYPE: Datum::from("router"),
            ADDRESSES: strings(["router"]),
            OPTIONS: map([("router-port", lrp.as_str())]),
            EXTERNAL_IDS: map([(key::LS, s.name), (key::VENDOR, VENDOR)]),
        }),
    )?;
    let mut lrp_row = row!(LogicalRouterPort {
        NETWORKS: strings(networks),
        EXTERNAL_IDS: map([(key::LR, s.router), (key::VENDOR, VENDOR)]),
    });
    match mac {
        Some(m) => {
            lrp_row.insert(LogicalRouterPort::MAC, Datum::from(m));
        }
        None if plan.lookup(LogicalRouterPort::TABLE, &lrp).is_none() => {
            lrp_row.insert(LogicalRouterPort::MAC, Datum::from(random_mac()));
        }
        None => {}
    }
    if !s.route_table.is_empty() {
        lrp_row.insert(
            LogicalRouterPort::OPTIONS,
            map([("route_table", s.route_table)]),
        );
    }
    plan.ensure_named_child(
        Parent {
            table: LogicalRouter::TABLE,
            name: s.router,
            column: LogicalRouter::PORTS,
        },
        LogicalRouterPort::TABLE,
        &lrp,
        lrp_row,
    )?;
    Ok(())
}

/// The logical switch itself (`external_ids:vendor` only when created, as upstream).
pub(crate) fn switch(plan: &mut Plan<'_>, s: &OverlaySubnet<'_>) -> Result<(), PlanError> {
    let mut ls = Row::new();
    if plan.lookup(LogicalSwitch::TABLE, s.name).is_none() {
        ls.insert(LogicalSwitch::EXTERNAL_IDS, map([(key::VENDOR, VENDOR)]));
    }
    plan.ensure_root(LogicalSwitch::TABLE, s.name, ls)?;
    Ok(())
}

/// Attaches (or detaches) the VPC's load balancers on the switch.
pub(crate) fn load_balancers(plan: &mut Plan<'_>, s: &OverlaySubnet<'_>) -> Result<(), PlanError> {
    let uuids = |lbs: &VpcLoadBalancers, plan: &Plan<'_>| -> Vec<Atom> {
        lbs.all()
            .iter()
            .filter_map(|(n, _, _)| plan.lookup(LoadBalancer::TABLE, n))
            .map(|r| r.atom())
            .collect()
    };
    if let Some(lbs) = s.load_balancers {
        let present = uuids(lbs, plan);
        plan.set_members(
            LogicalSwitch::TABLE,
            s.name,
            LogicalSwitch::LOAD_BALANCER,
            &present,
            &[],
        )?;
    }
    if let Some(lbs) = s.detach_load_balancers {
        let absent = uuids(lbs, plan);
        plan.set_members(
            LogicalSwitch::TABLE,
            s.name,
            LogicalSwitch::LOAD_BALANCER,
            &[],
            &absent,
        )?;
    }
    Ok(())
}

/// The localnet port of an underlay subnet: `localnet.<subnet>`, bridging the switch to the
/// provider network's OVS bridge through `ovn-bridge-mappings`.
#[derive(Debug, Clone)]
pub struct Localnet<'a> {
    /// The provider network (`options:network_name`).
    pub provider: &'a str,
    /// The Vlan's id: the port's `tag` when 1..=4095, none for 0 (untagged).
    pub vlan_id: i64,
}

/// The localnet port's name of a subnet, as upstream's `GetLocalnetName`.
pub fn localnet_port_name(subnet: &str) -> String {
    format!("localnet.{subnet}")
}

/// An underlay (vlan) subnet whose gateway is the physical one: the switch and its load
/// balancers, the `localnet.<ls>` port, and none of an overlay subnet's router patch ports,
/// 31000/29000 policies or per-node port groups (those of an earlier overlay life go). With
/// `gateway_port`, the router port pair stays: the default VPC's external gateway port on the
/// external switch (upstream's `randomAllocateGW`).
pub fn underlay_subnet(
    plan: &mut Plan<'_>,
    s: &OverlaySubnet<'_>,
    ln: &Localnet<'_>,
    gateway_port: bool,
) -> Result<(), PlanError> {
    switch(plan, s)?;
    localnet_port(plan, s.name, &s.cidrs, ln)?;
    if !gateway_port {
        remove_router_ports(plan, s.name, s.router)?;
    }
    super::u2o::remove_u2o_rows(plan, s.name, s.router)?;
    super::gateway::delete_subnet_node_pgs(plan, (key::SUBNET, s.name), &[])?;
    load_balancers(plan, s)
}

/// States the localnet port as upstream's `CreateLocalnetLogicalSwitchPort` and
/// `SetLogicalSwitchPortVlanTag` leave it: `type=localnet`, `addresses=[unknown]`,
/// `options:network_name`, `external_ids` `ls`, `vendor` and `ipv4_network`/`ipv6_network`.
pub fn localnet_port(
    plan: &mut Plan<'_>,
    switch: &str,
    cidrs: &[String],
    ln: &Localnet<'_>,
) -> Result<RowRef, PlanError> {
    let mut ids = vec![(key::LS, switch), (key::VENDOR, VENDOR)];
    for cidr in cidrs {
        if cidr.contains(':') {
            ids.push(("ipv6_network", cidr.as_str()));
        } else {
            ids.push(("ipv4_network", cidr.as_str()));
        }
    }
    let tag = if (1..4096).contains(&ln.vlan_id) {
        Datum::from(ln.vlan_id)
    } else {
        Datum::empty_set()
    };
    plan.ensure_named_child(
        Parent {
            table: LogicalSwitch::TABLE,
            name: switch,
            column: LogicalSwitch::PORTS,
        },
        LogicalSwitchPort::TABLE,
        &localnet_port_name(switch),
        row!(LogicalSwitchPort {
            TYPE: Datum::from("localnet"),
            ADDRESSES: strings(["unknown"]),
            OPTIONS: map([("network_name", ln.provider)]),
            TAG: tag,
            EXTERNAL_IDS: map(ids),
        }),
    )
}

/// Removes the router patch pair of a subnet (`<ls>-<router>` and `<router>-<ls>`), as
/// upstream does for an underlay subnet using the physical gateway.
pub(crate) fn remove_router_ports(
    plan: &mut Plan<'_>,
    subnet: &str,
    router: &str,
) -> Result<(), PlanError> {
    plan.monitored(LogicalSwitchPort::TABLE)?;
    if let Some(RowRef::Existing(u)) =
        plan.lookup(LogicalSwitchPort::TABLE, &switch_router_lsp(subnet, router))
    {
        plan.remove_child(LogicalSwitch::TABLE, LogicalSwitch::PORTS, u)?;
    }
    if let Some(RowRef::Existing(u)) =
        plan.lookup(LogicalRouterPort::TABLE, &router_switch_lrp(router, subnet))
    {
        plan.remove_child(LogicalRouter::TABLE, LogicalRouter::PORTS, u)?;
    }
    Ok(())
}

/// Removes an overlay subnet: its policies (31000 and 29000), per-node port groups, ACLs, the
/// switch and the router port.
pub fn delete_overlay_subnet(
    plan: &mut Plan<'_>,
    subnet: &str,
    router: &str,
) -> Result<(), PlanError> {
    super::u2o::remove_u2o_rows(plan, subnet, router)?;
    plan.monitored(PortGroup::TABLE)?;
    let pgs: Vec<ovsdb::Uuid> = tagged(plan.cache(), PortGroup::TABLE, key::SUBNET, subnet)
        .into_iter()
        .filter(|(_, r)| ours(r))
        .map(|(u, _)| u)
        .collect();
    for u in pgs {
        plan.delete_root_uuid(PortGroup::TABLE, u)?;
    }
    if let Some(RowRef::Existing(u)) =
        plan.lookup(LogicalRouterPort::TABLE, &router_switch_lrp(router, subnet))
    {
        plan.remove_child(LogicalRouter::TABLE, LogicalRouter::PORTS, u)?;
    }
    plan.delete_root(LogicalSwitch::TABLE, subnet)
}

/// A random locally administered unicast MAC, as upstream gives a new router port.
pub fn random_mac() -> String {
    let mut b = [0u8; 6];
    let seed = ovsdb::Uuid::new_v4();
    b.copy_from_slice(&seed.as_bytes()[..6]);
    b[0] = (b[0] | 0x02) & 0xfe;
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::objects::testing::{empty_nb, inserted, ops};
    use crate::objects::vpc_router;

    fn underlay(vlan_id: i64) -> Vec<Value> {
        let cache = empty_nb();
        let mut plan = Plan::new(&cache, "OVN_Northbound");
        vpc_router(&mut plan, "ovn-cluster").unwrap();
        underlay_subnet(
            &mut plan,
            &OverlaySubnet {
                name: "vlan-sub",
                router: "ovn-cluster",
                cidrs: vec!["172.19.100.0/24".into(), "fd00:100::/64".into()],
                gateways: vec!["172.19.100.1".into(), "fd00:100::1".into()],
                load_balancers: None,
                detach_load_balancers: None,
                route_table: "",
            },
            &Localnet {
                provider: "net1",
                vlan_id,
            },
            false,
        )
        .unwrap();
        ops(plan)
    }

    #[test]
    fn underlay_subnet_has_a_localnet_port_and_no_router_port() {
        let ops = underlay(100);
        let ln = inserted(&ops, "Logical_Switch_Port", "localnet.vlan-sub");
        assert_eq!(ln["row"]["type"], "localnet");
        assert_eq!(ln["row"]["addresses"], "unknown");
        assert_eq!(ln["row"]["tag"], 100);
        assert_eq!(
            ln["row"]["options"],
            json!(["map", [["network_name", "net1"]]])
        );
        assert_eq!(
            ln["row"]["external_ids"],
            json!([
                "map",
                [
                    ["ipv4_network", "172.19.100.0/24"],
                    ["ipv6_network", "fd00:100::/64"],
                    ["ls", "vlan-sub"],
                    ["vendor", "kube-ovn"]
                ]
            ])
        );
        assert!(!ops.iter().any(|o| o["op"] == "insert"
            && matches!(
                o["table"].as_str(),
                Some("Logical_Router_Port" | "Logical_Router_Policy" | "Port_Group")
            )));
    }

    #[test]
    fn vlan_zero_is_untagged() {
        let ops = underlay(0);
        let ln = inserted(&ops, "Logical_Switch_Port", "localnet.vlan-sub");
        assert_eq!(ln["row"]["tag"], json!(["set", []]));
    }

    #[test]
    fn default_topology_rows_match_upstream() {
        let cache = empty_nb();
        let mut plan = Plan::new(&cache, "OVN_Northbound");
        vpc_router(&mut plan, "ovn-cluster").unwrap();
        overlay_subnet(
            &mut plan,
            &OverlaySubnet {
                name: "ovn-default",
                router: "ovn-cluster",
                cidrs: vec!["10.16.0.0/16".into(), "fd00:10:16::/112".into()],
                gateways: vec!["10.16.0.1".into(), "fd00:10:16::1".into()],
                load_balancers: None,
                detach_load_balancers: None,
                route_table: "",
            },
        )
        .unwrap();
        let ops = ops(plan);
        let lr = inserted(&ops, "Logical_Router", "ovn-cluster");
        assert_eq!(
            lr["row"]["external_ids"],
            json!(["map", [["vendor", "kube-ovn"]]])
        );
        let lsp = inserted(&ops, "Logical_Switch_Port", "ovn-default-ovn-cluster");
        assert_eq!(lsp["row"]["type"], "router");
        assert_eq!(lsp["row"]["addresses"], "router");
        assert_eq!(
            lsp["row"]["options"],
            json!(["map", [["router-port", "ovn-cluster-ovn-default"]]])
        );
        assert_eq!(
            lsp["row"]["external_ids"],
            json!(["map", [["ls", "ovn-default"], ["vendor", "kube-ovn"]]])
        );
        let lrp = inserted(&ops, "Logical_Router_Port", "ovn-cluster-ovn-default");
        assert_eq!(
            lrp["row"]["networks"],
            json!(["set", ["10.16.0.1/16", "fd00:10:16::1/112"]])
        );
        assert_eq!(
            lrp["row"]["external_ids"],
            json!(["map", [["lr", "ovn-cluster"], ["vendor", "kube-ovn"]]])
        );
        let mac = lrp["row"]["mac"].as_str().unwrap();
        assert_eq!(
            u8::from_str_radix(&mac[..2], 16).unwrap() & 3,
            2,
            "local unicast {mac}"
        );
        let policies: Vec<&Value> = ops
            .iter()
            .filter(|o| o["op"] == "insert" && o["table"] == "Logical_Router_Policy")
            .collect();
        let matches: Vec<&str> = policies
            .iter()
            .map(|p| p["row"]["match"].as_str().unwrap())
            .collect();
        assert_eq!(
            matches,
            vec!["ip4.dst == 10.16.0.0/16", "ip6.dst == fd00:10:16::/112"]
        );
        assert!(policies
            .iter()
            .all(|p| p["row"]["priority"] == 31000 && p["row"]["action"] == "allow"));
    }
}
