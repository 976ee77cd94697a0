//! The `ovn.kubernetes.io/*` annotations upstream reads and writes on pods, nodes and
//! namespaces, and the pure conversions between them and IPAM requests/results.

use std::collections::BTreeMap;
use std::net::IpAddr;

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
/// The node's join port name.
pub const PORT_NAME: &str = "ovn.kubernetes.io/port_name";
/// The node's OVN chassis (written by the daemon).
pub const CHASSIS: &str = "ovn.kubernetes.io/chassis";

/// Labels on IP CRs.
pub const LABEL_SUBNET: &str = "ovn.kubernetes.io/subnet";
/// See [`LABEL_SUBNET`].
pub const LABEL_NODE_NAME: &str = "ovn.kubernetes.io/node-name";
/// See [`LABEL_SUBNET`].
pub const LABEL_IP_RESERVED: &str = "ovn.kubernetes.io/ip_reserved";
/// Finalizer upstream puts on IP CRs and Subnets.
pub const FINALIZER: &str = "kubeovn.io/kube-ovn-controller";

/// Parses `v4[,v6]`-style address lists; a bad entry is an error naming it.
pub fn parse_ips(value: &str) -> Result<Vec<IpAddr>, String> {
    value
        .split([',', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            // Requests may carry a prefix length ("10.16.0.5/16").
            let addr = s.split('/').next().unwrap_or(s);
            addr.parse::<IpAddr>()
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
