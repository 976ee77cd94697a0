//! Underlay facts the controller and the daemon share: the node labels and annotations a
//! ProviderNetwork leaves (`<pn>.provider-network.kubernetes.io/*`, upstream's templates), which
//! nodes a ProviderNetwork selects and which interface each of them bridges.

use std::collections::BTreeMap;

use kube::core::SelectorExt;

use crate::crd::provider_network::ProviderNetworkSpec;

/// Node label: "true" once the node's bridge for the provider network is up.
pub const READY: &str = "ready";
/// Node label: the interface the node bridges.
pub const INTERFACE: &str = "interface";
/// Node label: that interface's MTU (underlay pods take it).
pub const MTU: &str = "mtu";
/// Node label: "true" on a node the provider network leaves out.
pub const EXCLUDE: &str = "exclude";
/// Node label: "true" when VLAN interfaces of the NIC were moved into the bridge too.
pub const VLAN_INTERFACES: &str = "vlan_interfaces";
/// Annotation on the node's kube-ovn-cni pod: why the bridge could not be set up.
pub const ERR_MESSAGE: &str = "err_mesg";

/// `<pn>.provider-network.kubernetes.io/<what>`.
pub fn key(pn: &str, what: &str) -> String {
    format!("{pn}.provider-network.kubernetes.io/{what}")
}

/// Whether a node is left out of the provider network: by `nodeSelector` when set (a node it
/// does not select), else by `excludeNodes` (upstream's `IsNodeExcludedFromProviderNetwork`).
pub fn node_excluded(
    spec: &ProviderNetworkSpec,
    node: &str,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    if let Some(sel) = &spec.node_selector {
        let sel = kube::core::Selector::try_from(sel.clone())
            .map_err(|e| format!("nodeSelector: {e}"))?;
        return Ok(!sel.matches(labels));
    }
    Ok(spec.exclude_nodes.iter().any(|n| n == node))
}

/// The interface `node` bridges: the first custom interface naming it, else the default one.
pub fn interface_of<'a>(spec: &'a ProviderNetworkSpec, node: &str) -> &'a str {
    spec.custom_interfaces
        .iter()
        .find(|c| c.nodes.iter().any(|n| n == node))
        .map(|c| c.interface.as_str())
        .unwrap_or(spec.default_interface.as_str())
}

/// The OVS bridge of a provider network.
pub fn bridge_name(pn: &str) -> String {
    format!("br-{pn}")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    use super::*;
    use crate::crd::provider_network::CustomInterface;

    fn spec() -> ProviderNetworkSpec {
        ProviderNetworkSpec {
            default_interface: "eth1".into(),
            custom_interfaces: vec![CustomInterface {
                interface: "eth2".into(),
                nodes: vec!["n2".into()],
            }],
            exclude_nodes: vec!["n3".into()],
            ..Default::default()
        }
    }

    #[test]
    fn names_as_upstream() {
        assert_eq!(
            key("net1", READY),
            "net1.provider-network.kubernetes.io/ready"
        );
        assert_eq!(bridge_name("net1"), "br-net1");
    }

    #[test]
    fn custom_interfaces_win_over_the_default() {
        let s = spec();
        assert_eq!(interface_of(&s, "n1"), "eth1");
        assert_eq!(interface_of(&s, "n2"), "eth2");
    }

    #[test]
    fn exclusion_by_list_or_by_selector() {
        let mut s = spec();
        let none = BTreeMap::new();
        assert!(node_excluded(&s, "n3", &none).unwrap());
        assert!(!node_excluded(&s, "n1", &none).unwrap());
        s.node_selector = Some(LabelSelector {
            match_labels: Some([("underlay".to_string(), "yes".to_string())].into()),
            ..Default::default()
        });
        // The selector replaces the list.
        let yes: BTreeMap<String, String> = [("underlay".to_string(), "yes".to_string())].into();
        assert!(!node_excluded(&s, "n3", &yes).unwrap());
        assert!(node_excluded(&s, "n1", &none).unwrap());
    }
}
