//! What the controller and the daemon both read off a `Node`.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node;

use crate::net::Family;

/// The node's addresses as upstream's `GetNodeInternalIP` picks them: the first parseable
/// `InternalIP` of each family, in the order the Node lists them. The controller builds the
/// node's NB rows from them and the daemon its host routes, so both must pick the same ones.
pub fn internal_ips(node: &Node) -> Vec<IpAddr> {
    let mut picked: Vec<IpAddr> = Vec::new();
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    for a in addresses.into_iter().flatten() {
        let Ok(ip) = a.address.trim().parse::<IpAddr>() else {
            continue;
        };
        if a.type_ == "InternalIP" && !picked.iter().any(|p| Family::of(p) == Family::of(&ip)) {
            picked.push(ip);
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(addresses: serde_json::Value) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1"},
            "status": {"addresses": addresses},
        }))
        .unwrap()
    }

    #[test]
    fn first_internal_ip_of_each_family() {
        let n = node(serde_json::json!([
            {"type": "Hostname", "address": "n1"},
            {"type": "ExternalIP", "address": "1.2.3.4"},
            {"type": "InternalIP", "address": "fd00::2"},
            {"type": "InternalIP", "address": "bogus"},
            {"type": "InternalIP", "address": "172.18.0.2"},
            {"type": "InternalIP", "address": "172.18.0.3"},
            {"type": "InternalIP", "address": "fd00::3"},
        ]));
        let ips: Vec<String> = internal_ips(&n).iter().map(IpAddr::to_string).collect();
        assert_eq!(ips, ["fd00::2", "172.18.0.2"]);
        assert!(internal_ips(&Node::default()).is_empty());
    }
}
