//! The OVN-native NAT family: external IPs on a VPC's gateway router port and
//! the `dnat_and_snat`/`snat` NAT rows and per-rule load balancers built on them.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;

/// An external address taken from an underlay subnet.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "OvnEip",
    plural = "ovn-eips",
    singular = "ovn-eip",
    shortname = "oeip",
    status = "OvnEipStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "An external IP used by OVN-native NAT, a VPC's gateway port or a BFD next hop.",
    printcolumn(name = "V4IP", type_ = "string", json_path = ".status.v4Ip"),
    printcolumn(name = "V6IP", type_ = "string", json_path = ".status.v6Ip"),
    printcolumn(name = "Mac", type_ = "string", json_path = ".status.macAddress"),
    printcolumn(name = "Type", type_ = "string", json_path = ".status.type"),
    printcolumn(name = "Nat", type_ = "string", json_path = ".status.nat"),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready"),
    printcolumn(
        name = "ExternalSubnet",
        type_ = "string",
        json_path = ".spec.externalSubnet"
    )
)]
#[serde(rename_all = "camelCase", default)]
pub struct OvnEipSpec {
    /// Subnet the address comes from; immutable once created.
    pub external_subnet: String,
    /// Requested or allocated IPv4 address.
    pub v4_ip: String,
    /// Requested or allocated IPv6 address.
    pub v6_ip: String,
    /// MAC of the address.
    pub mac_address: String,
    /// Usage: `nat` (for FIP/SNAT/DNAT), `lrp` (a VPC's external port) or `lsp` (a BFD next hop).
    #[serde(rename = "type")]
    pub type_: String,
}

/// The address as realised and what uses it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct OvnEipStatus {
    /// Ready/Error conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Usage in effect.
    #[serde(rename = "type")]
    pub type_: String,
    /// NAT kinds using the address.
    pub nat: String,
    /// Realised in OVN.
    pub ready: bool,
    /// IPv4 address in use.
    pub v4_ip: String,
    /// IPv6 address in use.
    pub v6_ip: String,
    /// MAC in use.
    pub mac_address: String,
}

/// One-to-one NAT (`dnat_and_snat`) on a VPC router.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "OvnFip",
    plural = "ovn-fips",
    singular = "ovn-fip",
    shortname = "ofip",
    status = "OvnFipStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "An OVN floating IP: dnat_and_snat between an OvnEip and an internal address.",
    printcolumn(name = "Vpc", type_ = "string", json_path = ".status.vpc"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "V4Eip", type_ = "string", json_path = ".status.v4Eip"),
    printcolumn(name = "V6Eip", type_ = "string", json_path = ".status.v6Eip"),
    printcolumn(name = "V4Ip", type_ = "string", json_path = ".status.v4Ip"),
    printcolumn(name = "V6Ip", type_ = "string", json_path = ".status.v6Ip"),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready"),
    printcolumn(name = "IpType", type_ = "string", json_path = ".spec.ipType"),
    printcolumn(name = "IpName", type_ = "string", json_path = ".spec.ipName")
)]
#[serde(rename_all = "camelCase", default)]
pub struct OvnFipSpec {
    /// OvnEip to use.
    pub ovn_eip: String,
    /// Kind of the internal endpoint: `ip` or `vip`.
    pub ip_type: String,
    /// Name of the IP or Vip object.
    pub ip_name: String,
    /// VPC whose router gets the NAT; immutable once created.
    pub vpc: String,
    /// Internal IPv4 address, when not taken from `ipName`.
    pub v4_ip: String,
    /// Internal IPv6 address, when not taken from `ipName`.
    pub v6_ip: String,
    /// `distributed` or `centralized` NAT.
    #[serde(rename = "type")]
    pub type_: String,
}

/// The floating IP as realised.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct OvnFipStatus {
    /// Ready/Error conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Realised in OVN.
    pub ready: bool,
    /// VPC the NAT is on.
    pub vpc: String,
    /// External IPv4 address.
    pub v4_eip: String,
    /// External IPv6 address.
    pub v6_eip: String,
    /// Internal IPv4 address.
    pub v4_ip: String,
    /// Internal IPv6 address.
    pub v6_ip: String,
    /// MAC used for distributed NAT.
    pub mac_address: String,
}

/// Source NAT (`snat`) on a VPC router.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "OvnSnatRule",
    plural = "ovn-snat-rules",
    singular = "ovn-snat-rule",
    shortname = "osnat",
    status = "OvnSnatRuleStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "OVN source NAT of a subnet or address behind an OvnEip.",
    printcolumn(name = "Vpc", type_ = "string", json_path = ".status.vpc"),
    printcolumn(name = "V4Eip", type_ = "string", json_path = ".status.v4Eip"),
    printcolumn(name = "V6Eip", type_ = "string", json_path = ".status.v6Eip"),
    printcolumn(name = "V4IpCidr", type_ = "string", json_path = ".status.v4IpCidr"),
    printcolumn(name = "V6IpCidr", type_ = "string", json_path = ".status.v6IpCidr"),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready")
)]
#[serde(rename_all = "camelCase", default)]
pub struct OvnSnatRuleSpec {
    /// OvnEip to masquerade behind.
    pub ovn_eip: String,
    /// Subnet translated.
    pub vpc_subnet: String,
    /// IP object translated, instead of a subnet.
    pub ip_name: String,
    /// VPC whose router gets the NAT; immutable once created.
    pub vpc: String,
    /// IPv4 CIDR or address translated.
    pub v4_ip_cidr: String,
    /// IPv6 CIDR or address translated.
    pub v6_ip_cidr: String,
}

/// The SNAT rule as realised.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct OvnSnatRuleStatus {
    /// Ready/Error conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Realised in OVN.
    pub ready: bool,
    /// VPC the NAT is on.
    pub vpc: String,
    /// External IPv4 address.
    pub v4_eip: String,
    /// External IPv6 address.
    pub v6_eip: String,
    /// IPv4 CIDR translated.
    pub v4_ip_cidr: String,
    /// IPv6 CIDR translated.
    pub v6_ip_cidr: String,
}

/// A port forward on a VPC router, realised as a per-rule load balancer.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "OvnDnatRule",
    plural = "ovn-dnat-rules",
    singular = "ovn-dnat-rule",
    shortname = "odnat",
    status = "OvnDnatRuleStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "An OVN port forward from an OvnEip to an internal address.",
    printcolumn(name = "Vpc", type_ = "string", json_path = ".status.vpc"),
    printcolumn(name = "Eip", type_ = "string", json_path = ".spec.ovnEip"),
    printcolumn(name = "Protocol", type_ = "string", json_path = ".status.protocol"),
    printcolumn(name = "V4Eip", type_ = "string", json_path = ".status.v4Eip"),
    printcolumn(name = "V6Eip", type_ = "string", json_path = ".status.v6Eip"),
    printcolumn(name = "V4Ip", type_ = "string", json_path = ".status.v4Ip"),
    printcolumn(name = "V6Ip", type_ = "string", json_path = ".status.v6Ip"),
    printcolumn(
        name = "InternalPort",
        type_ = "string",
        json_path = ".status.internalPort"
    ),
    printcolumn(
        name = "ExternalPort",
        type_ = "string",
        json_path = ".status.externalPort"
    ),
    printcolumn(name = "IpName", type_ = "string", json_path = ".spec.ipName"),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready")
)]
#[serde(rename_all = "camelCase", default)]
pub struct OvnDnatRuleSpec {
    /// OvnEip receiving the traffic.
    pub ovn_eip: String,
    /// Kind of the internal endpoint: `ip` or `vip`.
    pub ip_type: String,
    /// Name of the IP or Vip object.
    pub ip_name: String,
    /// Internal port forwarded to.
    pub internal_port: String,
    /// Port on the EIP.
    pub external_port: String,
    /// `tcp` or `udp`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// VPC whose router gets the rule; immutable once created.
    pub vpc: String,
    /// Internal IPv4 address, when not taken from `ipName`.
    pub v4_ip: String,
    /// Internal IPv6 address, when not taken from `ipName`.
    pub v6_ip: String,
}

/// The port forward as realised.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct OvnDnatRuleStatus {
    /// VPC the rule is on.
    pub vpc: String,
    /// External IPv4 address.
    pub v4_eip: String,
    /// External IPv6 address.
    pub v6_eip: String,
    /// External port.
    pub external_port: String,
    /// Internal IPv4 address.
    pub v4_ip: String,
    /// Internal IPv6 address.
    pub v6_ip: String,
    /// Internal port.
    pub internal_port: String,
    /// Protocol.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// IP object forwarded to.
    pub ip_name: String,
    /// Realised in OVN.
    pub ready: bool,
    /// Ready/Error conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
