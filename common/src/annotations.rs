//! The `ovn.kubernetes.io/*` annotations upstream reads and writes on pods, nodes and
//! namespaces, and the pure conversions between them and IPAM requests/results.
//!
//! Per-NIC keys are provider-aware: the default network's live under `ovn.kubernetes.io/`, an
//! attachment network's (Multus) under `<provider>.kubernetes.io/`; [`key`] builds either from
//! a typed [`Field`], and the `ovn.kubernetes.io` constants below stay for the default network.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::names::is_default_provider;
use crate::net;

/// Annotation key prefix of the default (provider `ovn`) NIC.
pub const PREFIX: &str = "ovn.kubernetes.io";
/// Set to "true" once addresses are allocated.
pub const ALLOCATED: &str = "ovn.kubernetes.io/allocated";
/// Set to "true" once the port is in its node's port groups.
pub const ROUTED: &str = "ovn.kubernetes.io/routed";
/// Allocated (or requested) addresses, `v4[,v6]`.
pub const IP_ADDRESS: &str = "ovn.kubernetes.io/ip_address";
/// Allocated (or requested) MAC.
pub const MAC_ADDRESS: &str = "ovn.kubernetes.io/mac_address";
/// The subnet's CIDR block.
pub const CIDR: &str = "ovn.kubernetes.io/cidr";
/// The subnet's gateway.
pub const GATEWAY: &str = "ovn.kubernetes.io/gateway";
/// The subnet (logical switch); on a pod or namespace it also requests one.
pub const LOGICAL_SWITCH: &str = "ovn.kubernetes.io/logical_switch";
/// The VPC router.
pub const LOGICAL_ROUTER: &str = "ovn.kubernetes.io/logical_router";
/// NIC implementation (`veth-pair`, …).
pub const POD_NIC_TYPE: &str = "ovn.kubernetes.io/pod_nic_type";
/// Requested IP pool (`;`/`,` separated addresses, or an IPPool name).
pub const IP_POOL: &str = "ovn.kubernetes.io/ip_pool";
/// "true" turns on port security for the pod's port.
pub const PORT_SECURITY: &str = "ovn.kubernetes.io/port_security";
/// The pod's security groups (`sg1,sg2`): its port joins their port groups.
pub const SECURITY_GROUPS: &str = "ovn.kubernetes.io/security_groups";
/// The node's join port name.
pub const PORT_NAME: &str = "ovn.kubernetes.io/port_name";
/// The node's OVN chassis (written by the daemon).
pub const CHASSIS: &str = "ovn.kubernetes.io/chassis";

/// On a Service: the VPC whose load balancers hold its VIPs (upstream writes it back after
/// resolving it from the endpoints).
pub const VPC: &str = "ovn.kubernetes.io/vpc";
/// On a Service generated for a SwitchLBRule: the rule's VIP, which replaces the ClusterIPs and
/// turns on health checks.
pub const SWITCH_LB_VIP: &str = "ovn.kubernetes.io/switch_lb_vip";
/// On a Service generated for a RouterLBRule: its VIPs, comma separated.
pub const ROUTER_LB_VIP: &str = "ovn.kubernetes.io/router_lb_vip";
/// On a Service: the subnet whose CIDR holds its LoadBalancer ingress IP (those IPs then get
/// VIPs too).
pub const SERVICE_EXTERNAL_IP_FROM_SUBNET: &str =
    "ovn.kubernetes.io/service_external_ip_from_subnet";
/// On a Service: "false" turns off the health checks of its switch LB rule VIP.
pub const SERVICE_HEALTH_CHECK: &str = "ovn.kubernetes.io/service_health_check";
/// On a pod: the Vip whose reserved address the pod takes as its own.
pub const VIP: &str = "ovn.kubernetes.io/vip";
/// On a pod: the Vips (comma-separated) whose addresses the pod may answer for (allowed
/// address pairs: the pod becomes a virtual parent of each Vip's virtual port).
pub const AAPS: &str = "ovn.kubernetes.io/aaps";
/// On a pod: extra addresses (comma-separated) its port may use, next to its Vips'.
pub const PORT_VIPS: &str = "ovn.kubernetes.io/port_vips";

/// On a pod of an underlay subnet: its Vlan's id (upstream's `VlanIDAnnotationTemplate`).
pub const VLAN_ID: &str = "ovn.kubernetes.io/vlan_id";
/// On a pod of an underlay subnet: its Vlan's provider network.
pub const PROVIDER_NETWORK: &str = "ovn.kubernetes.io/provider_network";

/// Labels on IP CRs.
pub const LABEL_SUBNET: &str = "ovn.kubernetes.io/subnet";
/// See [`LABEL_SUBNET`].
pub const LABEL_NODE_NAME: &str = "ovn.kubernetes.io/node-name";
/// See [`LABEL_SUBNET`].
pub const LABEL_IP_RESERVED: &str = "ovn.kubernetes.io/ip_reserved";
/// Finalizer upstream puts on IP CRs and Subnets.
pub const FINALIZER: &str = "kubeovn.io/kube-ovn-controller";

/// A per-NIC annotation: the same suffix under every provider's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// [`ALLOCATED`].
    Allocated,
    /// [`ROUTED`].
    Routed,
    /// [`IP_ADDRESS`].
    IpAddress,
    /// [`MAC_ADDRESS`].
    MacAddress,
    /// [`CIDR`].
    Cidr,
    /// [`GATEWAY`].
    Gateway,
    /// [`LOGICAL_SWITCH`].
    LogicalSwitch,
    /// [`LOGICAL_ROUTER`].
    LogicalRouter,
    /// [`POD_NIC_TYPE`].
    PodNicType,
    /// [`IP_POOL`].
    IpPool,
    /// [`PORT_SECURITY`].
    PortSecurity,
}

impl Field {
    /// Every field, for code that walks all of a NIC's annotations.
    pub const ALL: [Field; 11] = [
        Field::Allocated,
        Field::Routed,
        Field::IpAddress,
        Field::MacAddress,
        Field::Cidr,
        Field::Gateway,
        Field::LogicalSwitch,
        Field::LogicalRouter,
        Field::PodNicType,
        Field::IpPool,
        Field::PortSecurity,
    ];

    /// The key on the default network (one of the constants above).
    pub fn default_key(self) -> &'static str {
        match self {
            Field::Allocated => ALLOCATED,
            Field::Routed => ROUTED,
            Field::IpAddress => IP_ADDRESS,
            Field::MacAddress => MAC_ADDRESS,
            Field::Cidr => CIDR,
            Field::Gateway => GATEWAY,
            Field::LogicalSwitch => LOGICAL_SWITCH,
            Field::LogicalRouter => LOGICAL_ROUTER,
            Field::PodNicType => POD_NIC_TYPE,
            Field::IpPool => IP_POOL,
            Field::PortSecurity => PORT_SECURITY,
        }
    }

    /// The part after `<provider>.kubernetes.io/` (`ip_address`, …).
    pub fn suffix(self) -> &'static str {
        &self.default_key()[PREFIX.len() + 1..]
    }
}

/// The key of `field` for a NIC of `provider`: `ovn.kubernetes.io/<field>` for the default
/// network (empty or `ovn`), `<provider>.kubernetes.io/<field>` for an attachment network.
pub fn key(provider: &str, field: Field) -> Cow<'static, str> {
    if is_default_provider(provider) {
        Cow::Borrowed(field.default_key())
    } else {
        Cow::Owned(format!("{provider}.kubernetes.io/{}", field.suffix()))
    }
}

/// Parses `v4[,v6]`-style address lists (`;` separates too, as in `ip_pool`); entries may carry
/// a prefix length (`10.16.0.5/16`); a bad entry is an error naming it.
pub fn parse_ips(value: &str) -> Result<Vec<IpAddr>, String> {
    value
        .split(';')
        .flat_map(net::entries)
        .map(|s| {
            s.parse::<IpNet>()
                .map(|n| n.addr())
                .or_else(|_| s.parse::<IpAddr>())
                .map_err(|_| format!("{IP_ADDRESS}: {s:?} is not an IP address"))
        })
        .collect()
}

/// Formats addresses the way upstream writes `ip_address`: v4 first, comma-joined.
pub fn format_ips(ips: &[IpAddr]) -> String {
    let mut v: Vec<&IpAddr> = ips.iter().collect();
    v.sort_by_key(|ip| !ip.is_ipv4());
    v.iter()
        .map(|ip| ip.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The annotation changes needed to make `current` carry `wanted` (only differing keys; a
/// `None` value deletes the key). Empty when nothing changes, so converged objects get no write.
pub fn diff(
    current: &BTreeMap<String, String>,
    wanted: &[(&str, Option<String>)],
) -> BTreeMap<String, Option<String>> {
    wanted
        .iter()
        .filter(|(k, v)| current.get(*k) != v.as_ref())
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_lists_parse_with_prefixes_and_separators() {
        let ips = parse_ips("10.16.0.5/16, fd00::5;").unwrap();
        assert_eq!(format_ips(&ips), "10.16.0.5,fd00::5");
        assert!(parse_ips("10.16.0.300")
            .unwrap_err()
            .contains("10.16.0.300"));
        assert_eq!(
            format_ips(&parse_ips("fd00::1,10.0.0.1").unwrap()),
            "10.0.0.1,fd00::1"
        );
    }

    #[test]
    fn keys_follow_the_provider() {
        assert_eq!(key("ovn", Field::IpAddress), IP_ADDRESS);
        assert_eq!(
            key("", Field::LogicalSwitch),
            "ovn.kubernetes.io/logical_switch"
        );
        assert_eq!(
            key("attachnet.default.ovn", Field::IpAddress),
            "attachnet.default.ovn.kubernetes.io/ip_address"
        );
        for f in Field::ALL {
            assert_eq!(f.default_key(), format!("{PREFIX}/{}", f.suffix()));
            assert_eq!(
                key("n.ns.ovn", f),
                format!("n.ns.ovn.kubernetes.io/{}", f.suffix())
            );
        }
        assert_eq!(Field::Allocated.suffix(), "allocated");
    }

    #[test]
    fn diff_only_lists_changes() {
        let cur: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        assert!(diff(&cur, &[("a", Some("1".into()))]).is_empty());
        let d = diff(
            &cur,
            &[
                ("a", Some("2".into())),
                ("b", None),
                ("c", Some("3".into())),
            ],
        );
        assert_eq!(d.len(), 2);
        assert_eq!(d["a"], Some("2".into()));
    }
}
