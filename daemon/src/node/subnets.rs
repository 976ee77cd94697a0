//! Which Subnet CRs give the node host routes and NAT (pure): overlay subnets of the default
//! VPC, the join subnet aside, as upstream's gateway reconciler selects them.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

/// The default VPC's name (a subnet with no `vpc` belongs to it too).
pub const DEFAULT_VPC: &str = "ovn-cluster";

/// What the node needs to know of a Subnet CR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetView {
    /// Subnet name.
    pub name: String,
    /// `spec.cidrBlock`, one CIDR per family.
    pub cidrs: Vec<IpNet>,
    /// `spec.provider` (empty means `ovn`).
    pub provider: String,
    /// `spec.vpc` (empty means the default VPC).
    pub vpc: String,
    /// `spec.vlan` (non-empty for underlay subnets).
    pub vlan: String,
    /// `spec.natOutgoing`.
    pub nat_outgoing: bool,
}

impl SubnetView {
    /// Reads a Subnet from its name and `spec`; `None` when the CIDR block is unusable.
    pub fn from_spec(name: &str, spec: &Value) -> Option<SubnetView> {
        let text = |k: &str| {
            spec.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let cidrs = text("cidrBlock")
            .split(',')
            .map(|c| c.trim().parse::<IpNet>().map(|n| n.trunc()))
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        Some(SubnetView {
            name: name.to_string(),
            cidrs,
            provider: text("provider"),
            vpc: text("vpc"),
            vlan: text("vlan"),
            nat_outgoing: spec
                .get("natOutgoing")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    fn is_default_overlay(&self) -> bool {
        matches!(self.provider.as_str(), "" | "ovn")
            && matches!(self.vpc.as_str(), "" | DEFAULT_VPC)
            && self.vlan.is_empty()
    }
}

/// The overlay CIDRs the node routes to through `ovn0` and the subset it masquerades.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlay {
    /// Every overlay CIDR of the default VPC except the join subnet's and any holding a node IP.
    pub cidrs: Vec<IpNet>,
    /// Those of subnets with `natOutgoing: true`.
    pub nat: Vec<IpNet>,
}

/// Selects the default VPC's overlay subnets, skipping `join` and CIDRs containing a node IP.
pub fn overlay(subnets: &[SubnetView], join: &str, node_ips: &[IpAddr]) -> Overlay {
    let mut out = Overlay::default();
    for s in subnets
        .iter()
        .filter(|s| s.name != join && s.is_default_overlay())
    {
        for c in s
            .cidrs
            .iter()
            .filter(|c| !node_ips.iter().any(|ip| c.contains(ip)))
        {
            out.cidrs.push(*c);
            if s.nat_outgoing {
                out.nat.push(*c);
            }
        }
    }
    out.cidrs.sort();
    out.cidrs.dedup();
    out.nat.sort();
    out.nat.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn subnet(name: &str, spec: Value) -> SubnetView {
        SubnetView::from_spec(name, &spec).unwrap()
    }

    #[test]
    fn spec_fields_are_read_with_defaults() {
        let s = subnet("a", json!({"cidrBlock": "10.16.0.5/16,fd00::/112"}));
        assert_eq!(s.cidrs[0], "10.16.0.0/16".parse::<IpNet>().unwrap());
        assert_eq!(s.cidrs.len(), 2);
        assert!(!s.nat_outgoing);
        assert!(SubnetView::from_spec("b", &json!({"cidrBlock": "nonsense"})).is_none());
        assert!(SubnetView::from_spec("c", &json!({})).is_none());
    }

    #[test]
    fn only_default_vpc_overlay_subnets_are_selected() {
        let subnets = [
            subnet(
                "ovn-default",
                json!({"cidrBlock": "10.16.0.0/16", "natOutgoing": true, "vpc": "ovn-cluster", "provider": "ovn"}),
            ),
            subnet("plain", json!({"cidrBlock": "10.17.0.0/16"})),
            subnet("join", json!({"cidrBlock": "100.64.0.0/16"})),
            subnet(
                "other-vpc",
                json!({"cidrBlock": "10.18.0.0/16", "vpc": "vpc1"}),
            ),
            subnet(
                "underlay",
                json!({"cidrBlock": "10.19.0.0/16", "vlan": "v1"}),
            ),
            subnet(
                "attachment",
                json!({"cidrBlock": "10.20.0.0/16", "provider": "net1.ns.ovn"}),
            ),
            subnet("holds-node", json!({"cidrBlock": "172.18.0.0/24"})),
        ];
        let o = overlay(&subnets, "join", &["172.18.0.2".parse().unwrap()]);
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(o.cidrs, [n("10.16.0.0/16"), n("10.17.0.0/16")]);
        assert_eq!(o.nat, [n("10.16.0.0/16")]);
    }
}
