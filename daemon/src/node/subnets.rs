//! Which Subnet CRs give the node host routes and NAT (pure): overlay subnets of the default
//! VPC, the join subnet aside, as upstream's gateway reconciler selects them.

use std::net::IpAddr;

use ipnet::IpNet;
use kube_ovn_common::crd::Subnet;
use kube_ovn_common::names::is_default_provider;
use kube_ovn_common::net;

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
    /// An underlay subnet interconnected with the overlay but without OVN load balancers
    /// (`u2oInterconnection`, `enableLb: false`): its pods reach Services through the nodes,
    /// so the nodes route it back through `ovn0` (upstream's `reconcileRouters`).
    pub u2o_without_lb: bool,
}

impl SubnetView {
    /// Reads what the node needs of a Subnet; `None` when it has no name or its CIDR block is
    /// unusable.
    pub fn from_subnet(subnet: &Subnet) -> Option<SubnetView> {
        let spec = &subnet.spec;
        let cidrs = net::parse_cidrs(&spec.cidr_block)
            .ok()
            .filter(|c| !c.is_empty())?;
        Some(SubnetView {
            name: subnet.metadata.name.clone()?,
            cidrs,
            provider: spec.provider.clone(),
            vpc: spec.vpc.clone(),
            vlan: spec.vlan.clone(),
            nat_outgoing: spec.nat_outgoing,
            u2o_without_lb: !spec.vlan.is_empty()
                && !spec.logical_gateway
                && spec.u2o_interconnection
                && spec.enable_lb == Some(false),
        })
    }

    fn is_default_overlay(&self, default_vpc: &str) -> bool {
        is_default_provider(&self.provider)
            && (self.vpc.is_empty() || self.vpc == default_vpc)
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
    /// Underlay CIDRs routed through `ovn0` too, but not overlay for NAT
    /// ([`SubnetView::u2o_without_lb`]).
    pub routed_underlay: Vec<IpNet>,
}

/// Selects the overlay subnets of `default_vpc` (`--cluster-router`), skipping `join` and CIDRs
/// containing a node IP.
pub fn overlay(
    subnets: &[SubnetView],
    join: &str,
    default_vpc: &str,
    node_ips: &[IpAddr],
) -> Overlay {
    let mut out = Overlay::default();
    for s in subnets
        .iter()
        .filter(|s| s.name != join && s.is_default_overlay(default_vpc))
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
    for s in subnets.iter().filter(|s| {
        s.u2o_without_lb
            && is_default_provider(&s.provider)
            && (s.vpc.is_empty() || s.vpc == default_vpc)
    }) {
        out.routed_underlay.extend(
            s.cidrs
                .iter()
                .filter(|c| !node_ips.iter().any(|ip| c.contains(ip))),
        );
    }
    out.routed_underlay.sort();
    out.routed_underlay.dedup();
    out.cidrs.sort();
    out.cidrs.dedup();
    out.nat.sort();
    out.nat.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn typed(name: &str, spec: Value) -> Subnet {
        serde_json::from_value(json!({
            "apiVersion": "kubeovn.io/v1", "kind": "Subnet",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap()
    }

    fn subnet(name: &str, spec: Value) -> SubnetView {
        SubnetView::from_subnet(&typed(name, spec)).unwrap()
    }

    #[test]
    fn spec_fields_are_read_with_defaults() {
        let s = subnet("a", json!({"cidrBlock": "10.16.0.5/16,fd00::/112"}));
        assert_eq!(s.cidrs[0], "10.16.0.0/16".parse::<IpNet>().unwrap());
        assert_eq!(s.cidrs.len(), 2);
        assert!(!s.nat_outgoing);
        assert!(SubnetView::from_subnet(&typed("b", json!({"cidrBlock": "nonsense"}))).is_none());
        assert!(SubnetView::from_subnet(&typed("c", json!({}))).is_none());
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
            subnet(
                "u2o-lb",
                json!({"cidrBlock": "10.21.0.0/16", "vlan": "v1", "u2oInterconnection": true,
                       "enableLb": true}),
            ),
            subnet(
                "u2o-no-lb",
                json!({"cidrBlock": "10.22.0.0/16", "vlan": "v1", "u2oInterconnection": true,
                       "enableLb": false}),
            ),
        ];
        let o = overlay(
            &subnets,
            "join",
            "ovn-cluster",
            &["172.18.0.2".parse().unwrap()],
        );
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(o.cidrs, [n("10.16.0.0/16"), n("10.17.0.0/16")]);
        assert_eq!(o.nat, [n("10.16.0.0/16")]);
        assert_eq!(
            o.routed_underlay,
            [n("10.22.0.0/16")],
            "only a u2o subnet without load balancers is routed through ovn0"
        );
    }

    #[test]
    fn the_default_vpc_is_the_configured_router() {
        let subnets = [
            subnet(
                "a",
                json!({"cidrBlock": "10.16.0.0/16", "vpc": "ovn-cluster"}),
            ),
            subnet(
                "b",
                json!({"cidrBlock": "10.17.0.0/16", "vpc": "my-router"}),
            ),
        ];
        let o = overlay(&subnets, "join", "my-router", &[]);
        assert_eq!(o.cidrs, ["10.17.0.0/16".parse::<IpNet>().unwrap()]);
    }
}
