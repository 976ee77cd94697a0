//! Names upstream derives from Kubernetes objects and that several binaries must agree on: the
//! controller names a pod's logical switch port, the daemon sets the same name as the OVS
//! `iface-id` ovn-controller binds by, and the IP custom resource records it. One definition,
//! so the two sides can never drift apart.

/// The default network's provider; its annotations live under `ovn.kubernetes.io/`.
pub const DEFAULT_PROVIDER: &str = "ovn";

/// Whether `provider` means the default network (empty, as the CNI shim sends it, or `ovn`).
pub fn is_default_provider(provider: &str) -> bool {
    provider.is_empty() || provider == DEFAULT_PROVIDER
}

/// A pod NIC's logical switch port, which is also the daemon's OVS `iface-id` (upstream's
/// `PodNameToPortName`): `<pod>.<ns>` on the default network, `<pod>.<ns>.<provider>` on an
/// attachment network.
pub fn pod_lsp(pod: &str, namespace: &str, provider: &str) -> String {
    if is_default_provider(provider) {
        format!("{pod}.{namespace}")
    } else {
        format!("{pod}.{namespace}.{provider}")
    }
}

/// Prefix of a node's port on the join switch.
const NODE_LSP_PREFIX: &str = "node-";

/// A node's logical switch port on the join switch (`node-<node>`), also the `iface-id` of the
/// node's `ovn0` and the `ovn.kubernetes.io/port_name` annotation.
pub fn node_lsp(node: &str) -> String {
    format!("{NODE_LSP_PREFIX}{node}")
}

/// The node a join-switch port belongs to (the inverse of [`node_lsp`]).
pub fn node_of_lsp(port: &str) -> Option<&str> {
    port.strip_prefix(NODE_LSP_PREFIX)
}

/// The IP custom resource of a pod NIC: upstream names it like the port it records, so either
/// controller finds the other's records.
pub fn pod_ip_cr(pod: &str, namespace: &str, provider: &str) -> String {
    pod_lsp(pod, namespace, provider)
}

/// The IP custom resource of a node's join address, named like its join port.
pub fn node_ip_cr(node: &str) -> String {
    node_lsp(node)
}

/// Prefix of a u2o interconnection address's IP CR (upstream's `U2OInterconnName`): such a CR
/// belongs to a Subnet, not to a pod, so GC and pod cleanup leave it alone.
pub const U2O_IP_CR_PREFIX: &str = "u2o-interconnection.";

/// The IP custom resource (and IPAM owner) of a subnet's u2o interconnection address:
/// `u2o-interconnection.<vpc>.<subnet>`.
pub fn u2o_ip_cr(vpc: &str, subnet: &str) -> String {
    format!("{U2O_IP_CR_PREFIX}{vpc}.{subnet}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_ports_carry_the_provider_of_attachments_only() {
        assert_eq!(pod_lsp("p", "ns", "ovn"), "p.ns");
        assert_eq!(pod_lsp("p", "ns", ""), "p.ns");
        assert_eq!(pod_lsp("p", "ns", "net1.ns1.ovn"), "p.ns.net1.ns1.ovn");
        assert_eq!(pod_ip_cr("p", "ns", "net1.ns1.ovn"), "p.ns.net1.ns1.ovn");
        assert!(is_default_provider("") && !is_default_provider("a.b.ovn"));
    }

    #[test]
    fn node_ports_round_trip() {
        assert_eq!(node_lsp("kube-ovn-worker"), "node-kube-ovn-worker");
        assert_eq!(node_ip_cr("n1"), "node-n1");
        assert_eq!(node_of_lsp("node-kube-ovn-worker"), Some("kube-ovn-worker"));
        assert_eq!(node_of_lsp("p.ns"), None);
    }
}
