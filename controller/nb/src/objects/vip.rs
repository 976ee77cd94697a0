//! A Vip's rows, as upstream writes them: a `virtual` logical switch port named after the Vip
//! (`options:virtual-ip`, and `options:virtual-parents` naming the pods that may claim the
//! address), and for the `switch_lb_vip` and `kube_host_vm_vip` types a plain port holding the
//! address (the former answering ARP with the subnet gateway's MAC, `options:arp_proxy`).

use std::net::IpAddr;

use ovsdb::model::Model;
use ovsdb::models::nb::{LogicalRouterPort, LogicalSwitch, LogicalSwitchPort};
use ovsdb::Datum;

use super::rows::{key, map, row, strings, text, VENDOR};
use crate::plan::{Parent, Plan, PlanError, RowRef};

/// `external_ids` key upstream marks ports outside the default VPC with (their membership of
/// the default security group, off).
const DEFAULT_SG_MARK: &str = "associated_sg_default-securitygroup";

/// A Vip's address-holding port (types `switch_lb_vip` and `kube_host_vm_vip`).
#[derive(Debug, Clone)]
pub struct VipPort<'a> {
    /// Port name (`<vip>.<namespace>`, upstream's pod port naming).
    pub name: &'a str,
    /// Logical switch (the Vip's subnet).
    pub switch: &'a str,
    /// `<namespace>/<vip>`, when the Vip has a namespace.
    pub owner: Option<&'a str>,
    /// MAC (the gateway port's for `switch_lb_vip`).
    pub mac: &'a str,
    /// Addresses, v4 first.
    pub ips: &'a [IpAddr],
    /// `options:arp_proxy=true` (`switch_lb_vip`).
    pub arp_proxy: bool,
    /// The subnet is outside the default VPC.
    pub custom_vpc: bool,
}

/// States a Vip's address-holding port.
pub fn vip_port(plan: &mut Plan<'_>, p: &VipPort<'_>) -> Result<RowRef, PlanError> {
    let addresses = std::iter::once(p.mac.to_string())
        .chain(p.ips.iter().map(|ip| ip.to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut ext = vec![(key::LS, p.switch), (key::VENDOR, VENDOR)];
    if let Some(owner) = p.owner {
        ext.push((key::POD, owner));
    }
    if p.custom_vpc {
        ext.push((DEFAULT_SG_MARK, "false"));
    }
    let options = if p.arp_proxy {
        map([("arp_proxy", "true")])
    } else {
        Datum::empty_map()
    };
    plan.ensure_named_child(
        Parent {
            table: LogicalSwitch::TABLE,
            name: p.switch,
            column: LogicalSwitch::PORTS,
        },
        LogicalSwitchPort::TABLE,
        p.name,
        row!(LogicalSwitchPort {
            ADDRESSES: strings([addresses]),
            PORT_SECURITY: Datum::empty_set(),
            OPTIONS: options,
            EXTERNAL_IDS: map(ext),
        }),
    )
}

/// States the `virtual` port `name` on `switch` for `virtual_ip` (`v4[,v6]`), with
/// `virtual-parents` when `parents` is given (empty: none).
pub fn virtual_port(
    plan: &mut Plan<'_>,
    name: &str,
    switch: &str,
    virtual_ip: &str,
    parents: Option<&str>,
) -> Result<RowRef, PlanError> {
    let mut options = vec![("virtual-ip", virtual_ip)];
    if let Some(p) = parents.filter(|p| !p.is_empty()) {
        options.push(("virtual-parents", p));
    }
    plan.ensure_named_child(
        Parent {
            table: LogicalSwitch::TABLE,
            name: switch,
            column: LogicalSwitch::PORTS,
        },
        LogicalSwitchPort::TABLE,
        name,
        row!(LogicalSwitchPort {
            TYPE: Datum::from("virtual"),
            OPTIONS: map(options),
            EXTERNAL_IDS: map([(key::LS, switch), (key::VENDOR, VENDOR)]),
        }),
    )
}

/// The MAC of the logical router port `name` (a subnet's gateway port, `<vpc>-<subnet>`).
pub fn router_port_mac(plan: &Plan<'_>, name: &str) -> Option<String> {
    let RowRef::Existing(u) = plan.lookup(LogicalRouterPort::TABLE, name)? else {
        return None;
    };
    let rows = plan.monitored(LogicalRouterPort::TABLE).ok()?;
    let r = rows.get(&u)?;
    text(r, LogicalRouterPort::MAC)
        .filter(|m| !m.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::objects::testing::{empty_nb, inserted, ops};

    #[test]
    fn vip_ports_match_upstream() {
        let cache = empty_nb();
        let mut plan = Plan::new(&cache, "OVN_Northbound");
        plan.ensure_root(LogicalSwitch::TABLE, "ovn-default", ovsdb::Row::new())
            .unwrap();
        let ip: IpAddr = "10.16.0.100".parse().unwrap();
        vip_port(
            &mut plan,
            &VipPort {
                name: "slr-vip.default",
                switch: "ovn-default",
                owner: Some("default/slr-vip"),
                mac: "0a:00:00:10:00:01",
                ips: &[ip],
                arp_proxy: true,
                custom_vpc: false,
            },
        )
        .unwrap();
        virtual_port(
            &mut plan,
            "vip1",
            "ovn-default",
            "10.16.0.101",
            Some("a.default,b.default"),
        )
        .unwrap();
        let ops = ops(plan);
        let p = inserted(&ops, "Logical_Switch_Port", "slr-vip.default");
        assert_eq!(p["row"]["addresses"], "0a:00:00:10:00:01 10.16.0.100");
        assert_eq!(p["row"]["options"], json!(["map", [["arp_proxy", "true"]]]));
        assert_eq!(
            p["row"]["external_ids"],
            json!([
                "map",
                [
                    ["ls", "ovn-default"],
                    ["pod", "default/slr-vip"],
                    ["vendor", "kube-ovn"]
                ]
            ])
        );
        let v = inserted(&ops, "Logical_Switch_Port", "vip1");
        assert_eq!(v["row"]["type"], "virtual");
        assert_eq!(
            v["row"]["options"],
            json!([
                "map",
                [
                    ["virtual-ip", "10.16.0.101"],
                    ["virtual-parents", "a.default,b.default"]
                ]
            ])
        );
    }
}
