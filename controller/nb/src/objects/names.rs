//! Upstream's names for the rows kube-ovn creates, and the address-family prefixes of match
//! expressions.

use std::net::IpAddr;

use kube_ovn_common::net::Family;

/// Port group names cannot contain `-` in OVN match expressions: upstream replaces every `-`
/// with `.` (`node-a` → `node.a`).
pub fn pg_name(raw: &str) -> String {
    raw.replace('-', ".")
}

/// The node port group `node.<node>`.
pub fn node_pg(node: &str) -> String {
    pg_name(&format!("node-{node}"))
}

/// The per-subnet-per-node port group of distributed gateways.
pub fn subnet_node_pg(subnet: &str, node: &str) -> String {
    pg_name(&format!("{subnet}.{node}"))
}

pub use kube_ovn_common::names::{node_lsp, node_of_lsp, pod_lsp};

/// A switch's router patch port (`<switch>-<router>`).
pub(crate) fn switch_router_lsp(switch: &str, router: &str) -> String {
    format!("{switch}-{router}")
}

/// A router's patch port to a switch (`<router>-<switch>`).
pub(crate) fn router_switch_lrp(router: &str, switch: &str) -> String {
    format!("{router}-{switch}")
}

/// The match prefix of an address's family (`ip4`, `ip6`).
pub(crate) fn family_prefix(ip: &IpAddr) -> &'static str {
    Family::of(ip).match_prefix()
}

/// The match prefix of a CIDR's family (`ip4`, `ip6`); an unreadable one is taken as IPv4.
pub(crate) fn cidr_prefix(cidr: &str) -> &'static str {
    Family::of_entry(cidr).unwrap_or(Family::V4).match_prefix()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_replace_dashes_like_upstream() {
        assert_eq!(
            node_pg("kube-ovn-control-plane"),
            "node.kube.ovn.control.plane"
        );
        assert_eq!(subnet_node_pg("ovn-default", "n-1"), "ovn.default.n.1");
        assert_eq!(pod_lsp("web", "default", "ovn"), "web.default");
        assert_eq!(
            pod_lsp("web", "default", "net1.default.ovn"),
            "web.default.net1.default.ovn"
        );
    }

    #[test]
    fn a_node_port_name_gives_back_its_node() {
        assert_eq!(
            node_of_lsp(&node_lsp("kube-ovn-worker")),
            Some("kube-ovn-worker")
        );
        assert_eq!(node_of_lsp("web.default"), None);
    }
}
