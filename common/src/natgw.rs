//! The names a VPC NAT gateway is known by (upstream's `util` constants for `VpcNatGateway`
//! and the iptables NAT family), shared by kube-ovn-controller, which writes them, and the
//! gateway pod's agent (`kube-ovn-vpc-nat-gw`), which finds its objects by them.

/// Prefix of the gateway's StatefulSet and pods (upstream's `VpcNatGwNameDefaultPrefix`).
pub const NAME_PREFIX: &str = "vpc-nat-gw";
/// The gateway pod's container (upstream's, which the controller execs into).
pub const CONTAINER: &str = "vpc-nat-gw";
/// Label `true` on the gateway's StatefulSet and pods.
pub const LABEL_GATEWAY: &str = "ovn.kubernetes.io/vpc-nat-gw";
/// Label naming the gateway on an EIP and on the NAT rules using it.
pub const LABEL_GATEWAY_NAME: &str = "ovn.kubernetes.io/vpc-nat-gw-name";
/// Label with the EIP's IPv4 address on the EIP and on the NAT rules using it.
pub const LABEL_EIP_V4_IP: &str = "ovn.kubernetes.io/eip_v4_ip";
/// Label with a DNAT rule's external port.
pub const LABEL_DNAT_EPORT: &str = "ovn.kubernetes.io/vpc_dnat_eport";
/// Label naming a gateway's VPC.
pub const LABEL_VPC: &str = "ovn.kubernetes.io/vpc";
/// Label naming a gateway's QoS policy (empty when none).
pub const LABEL_QOS: &str = "ovn.kubernetes.io/qos";
/// Pod annotation naming its gateway.
pub const ANNOTATION_GATEWAY: &str = "ovn.kubernetes.io/vpc_nat_gw";
/// Pod annotation `true` once the controller handed the pod its configuration.
pub const ANNOTATION_INIT: &str = "ovn.kubernetes.io/vpc_nat_gw_init";
/// Annotation on a NAT rule naming its EIP.
pub const ANNOTATION_EIP: &str = "ovn.kubernetes.io/vpc_eip";
/// Multus' annotation replacing a pod's default network.
pub const DEFAULT_NETWORK_ANNOTATION: &str = "v1.multus-cni.io/default-network";
/// The external network (Subnet, and NetworkAttachmentDefinition in the controller's
/// namespace) when a gateway or EIP names none.
pub const DEFAULT_EXTERNAL_NETWORK: &str = "ovn-vpc-external-network";
/// The ConfigMap (controller namespace) switching the feature on: `enable-vpc-nat-gw`.
pub const GATEWAY_CONFIG: &str = "ovn-vpc-nat-gw-config";
/// The key of [`GATEWAY_CONFIG`] that must not be `false`.
pub const ENABLE_KEY: &str = "enable-vpc-nat-gw";
/// `status.nat` words of an EIP: which kinds of rule use it.
pub const DNAT_USING_EIP: &str = "dnat";
/// See [`DNAT_USING_EIP`].
pub const FIP_USING_EIP: &str = "fip";
/// See [`DNAT_USING_EIP`].
pub const SNAT_USING_EIP: &str = "snat";

/// The gateway's StatefulSet name, `vpc-nat-gw-<gw>`.
pub fn workload_name(gateway: &str) -> String {
    format!("{NAME_PREFIX}-{gateway}")
}

/// The gateway's pod name (the StatefulSet's only ordinal).
pub fn pod_name(gateway: &str) -> String {
    format!("{NAME_PREFIX}-{gateway}-0")
}

/// The external network of a gateway: its first `externalSubnets` entry, else the default
/// (upstream supports one).
pub fn external_network(external_subnets: &[String]) -> &str {
    external_subnets
        .first()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_EXTERNAL_NETWORK)
}

/// The external network of an EIP: its `externalSubnet`, else the default.
pub fn eip_external_network(external_subnet: &str) -> &str {
    if external_subnet.is_empty() {
        DEFAULT_EXTERNAL_NETWORK
    } else {
        external_subnet
    }
}

/// `<provider>.kubernetes.io/vpc_cidrs`: the VPC's subnet CIDRs (a JSON list) the gateway
/// routes through its VPC NIC.
pub fn vpc_cidrs_key(provider: &str) -> String {
    format!("{provider}.kubernetes.io/vpc_cidrs")
}

/// `<provider>.kubernetes.io/routes`: extra routes of a pod NIC (a JSON list of `dst`/`gw`).
pub fn routes_key(provider: &str) -> String {
    format!("{provider}.kubernetes.io/routes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_upstream() {
        assert_eq!(workload_name("gw1"), "vpc-nat-gw-gw1");
        assert_eq!(pod_name("gw1"), "vpc-nat-gw-gw1-0");
        assert_eq!(external_network(&[]), "ovn-vpc-external-network");
        assert_eq!(external_network(&["ext".into()]), "ext");
        assert_eq!(eip_external_network(""), "ovn-vpc-external-network");
        assert_eq!(vpc_cidrs_key("ovn"), "ovn.kubernetes.io/vpc_cidrs");
        assert_eq!(routes_key("a.b"), "a.b.kubernetes.io/routes");
    }
}
