//! The names of OVN-native external access (upstream's `util` constants for OvnEip, the NAT
//! rules on it and the external gateway), shared by kube-ovn-controller, which writes them,
//! and kube-ovn-cni, which builds the external bridge on gateway nodes.

/// Node label `true` on the nodes that host external gateway ports (`ExGatewayLabel`).
pub const LABEL_EXTERNAL_GW: &str = "ovn.kubernetes.io/external-gw";
/// OvnEip label: its usage (`lrp`, `lsp`, `nat`).
pub const LABEL_EIP_TYPE: &str = "ovn.kubernetes.io/ovn_eip_type";
/// Label with an OvnEip's IPv6 address in label form (see [`ipv6_label_value`]).
pub const LABEL_EIP_V6_IP: &str = "ovn.kubernetes.io/eip_v6_ip";
/// OvnEip annotation: the NAT rule that last used it.
pub const ANNOTATION_VPC_NAT: &str = "ovn.kubernetes.io/vpc_nat";
/// The ConfigMap enabling the default VPC's external gateway.
pub const EXTERNAL_GW_CONFIG: &str = "ovn-external-gw-config";
/// OvnEip usage: a VPC router's gateway port.
pub const EIP_TYPE_LRP: &str = "lrp";
/// OvnEip usage: a bare switch port (a node's ECMP/BFD gateway).
pub const EIP_TYPE_LSP: &str = "lsp";
/// OvnEip usage: FIP/SNAT/DNAT.
pub const EIP_TYPE_NAT: &str = "nat";
/// OvnFip `type` whose NAT row is stateless.
pub const FIP_DISTRIBUTED: &str = "distributed";
/// OvnFip/OvnDnatRule `ipType` naming a Vip (anything else names an IP).
pub const IP_TYPE_VIP: &str = "vip";

/// An IPv6 address as a label value (upstream's `IPv6ToLabelValue`): `:` becomes `-`, with a
/// `0` added where the value would start or end with `-` (labels must start and end
/// alphanumeric).
pub fn ipv6_label_value(ip: &str) -> String {
    if ip.is_empty() {
        return String::new();
    }
    let mut v = ip.replace(':', "-");
    if v.starts_with('-') {
        v.insert(0, '0');
    }
    if v.ends_with('-') {
        v.push('0');
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_label_values_start_and_end_alphanumeric() {
        assert_eq!(ipv6_label_value("fd00::1"), "fd00--1");
        assert_eq!(ipv6_label_value("::1"), "0--1");
        assert_eq!(ipv6_label_value("fd00::"), "fd00--0");
        assert_eq!(ipv6_label_value(""), "");
    }
}
