//! The iptables NAT family: EIPs owned by a `VpcNatGateway` pod and the
//! FIP/SNAT/DNAT rules the pod programs for them.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;

/// DNAT type where one rule owns its EIP:port (the default).
pub const DNAT_TYPE_EXCLUSIVE: &str = "exclusive";
/// DNAT type where several rules share an EIP:port, load-balanced by nftables.
pub const DNAT_TYPE_SHARE: &str = "share";

/// An external address to attach to a NAT gateway.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "IptablesEIP",
    root = "IptablesEip",
    plural = "iptables-eips",
    singular = "iptables-eip",
    shortname = "eip",
    status = "IptablesEipStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "An external IP held by a VPC NAT gateway pod.",
    printcolumn(name = "Namespace", type_ = "string", json_path = ".spec.namespace"),
    printcolumn(
        name = "ExternalSubnet",
        type_ = "string",
        json_path = ".spec.externalSubnet"
    ),
    printcolumn(name = "IP", type_ = "string", json_path = ".status.ip"),
    printcolumn(name = "Mac", type_ = "string", json_path = ".spec.macAddress"),
    printcolumn(name = "Nat", type_ = "string", json_path = ".status.nat"),
    printcolumn(name = "NatGwDp", type_ = "string", json_path = ".spec.natGwDp"),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready")
)]
#[serde(rename_all = "camelCase", default)]
pub struct IptablesEipSpec {
    /// Requested or allocated IPv4 address.
    #[serde(rename = "v4ip")]
    pub v4ip: String,
    /// Requested or allocated IPv6 address.
    #[serde(rename = "v6ip")]
    pub v6ip: String,
    /// MAC of the address.
    pub mac_address: String,
    /// NAT gateway holding the address.
    pub nat_gw_dp: String,
    /// QoS policy for traffic through this address.
    pub qos_policy: String,
    /// Subnet the address comes from; immutable once created.
    pub external_subnet: String,
    /// Namespace of the gateway workload; empty means the controller's own.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// Whether the address is configured in the gateway and what uses it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct IptablesEipStatus {
    /// Ready/Error conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Configured in the gateway pod.
    pub ready: bool,
    /// Address in use.
    pub ip: String,
    /// Rule kinds using the address (`fip`, `snat`, `dnat`).
    pub nat: String,
    /// Timestamp requesting that the gateway re-apply the address.
    pub redo: String,
    /// QoS policy applied.
    pub qos_policy: String,
}

/// One-to-one NAT between an EIP and an internal address.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "IptablesFIPRule",
    root = "IptablesFipRule",
    plural = "iptables-fip-rules",
    singular = "iptables-fip-rule",
    shortname = "fip",
    status = "IptablesFipRuleStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A floating IP: one-to-one NAT in a VPC NAT gateway pod.",
    printcolumn(name = "Eip", type_ = "string", json_path = ".spec.eip"),
    printcolumn(name = "V4ip", type_ = "string", json_path = ".status.v4ip"),
    printcolumn(name = "InternalIp", type_ = "string", json_path = ".spec.internalIp"),
    printcolumn(name = "V6ip", type_ = "string", json_path = ".status.v6ip"),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready"),
    printcolumn(name = "NatGwDp", type_ = "string", json_path = ".status.natGwDp")
)]
#[serde(rename_all = "camelCase", default)]
pub struct IptablesFipRuleSpec {
    /// EIP to use.
    pub eip: String,
    /// Internal address behind it.
    pub internal_ip: String,
}

/// The floating IP as programmed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct IptablesFipRuleStatus {
    /// Programmed in the gateway pod.
    pub ready: bool,
    /// EIP IPv4 address.
    #[serde(rename = "v4ip")]
    pub v4ip: String,
    /// EIP IPv6 address.
    #[serde(rename = "v6ip")]
    pub v6ip: String,
    /// Gateway programming the rule.
    pub nat_gw_dp: String,
    /// Timestamp requesting a re-apply.
    pub redo: String,
    /// Internal address programmed.
    pub internal_ip: String,
    /// Ready/Error conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Source NAT of an internal CIDR behind an EIP.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "IptablesSnatRule",
    plural = "iptables-snat-rules",
    singular = "iptables-snat-rule",
    shortname = "snat",
    status = "IptablesSnatRuleStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Source NAT in a VPC NAT gateway pod.",
    printcolumn(name = "EIP", type_ = "string", json_path = ".spec.eip"),
    printcolumn(name = "V4ip", type_ = "string", json_path = ".status.v4ip"),
    printcolumn(name = "V6ip", type_ = "string", json_path = ".status.v6ip"),
    printcolumn(
        name = "InternalCIDR",
        type_ = "string",
        json_path = ".spec.internalCIDR"
    ),
    printcolumn(name = "NatGwDp", type_ = "string", json_path = ".status.natGwDp"),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready")
)]
#[serde(rename_all = "camelCase", default)]
pub struct IptablesSnatRuleSpec {
    /// EIP to masquerade behind.
    pub eip: String,
    /// Internal CIDR translated.
    #[serde(rename = "internalCIDR")]
    pub internal_cidr: String,
}

/// The SNAT rule as programmed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct IptablesSnatRuleStatus {
    /// Ready/Error conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Programmed in the gateway pod.
    pub ready: bool,
    /// EIP IPv4 address.
    #[serde(rename = "v4ip")]
    pub v4ip: String,
    /// EIP IPv6 address.
    #[serde(rename = "v6ip")]
    pub v6ip: String,
    /// Gateway programming the rule.
    pub nat_gw_dp: String,
    /// Timestamp requesting a re-apply.
    pub redo: String,
    /// Internal CIDR programmed.
    #[serde(rename = "internalCIDR")]
    pub internal_cidr: String,
}

/// A port forward from an EIP to an internal address.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "IptablesDnatRule",
    plural = "iptables-dnat-rules",
    singular = "iptables-dnat-rule",
    shortname = "dnat",
    status = "IptablesDnatRuleStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A port forward in a VPC NAT gateway pod.",
    printcolumn(name = "Eip", type_ = "string", json_path = ".spec.eip"),
    printcolumn(name = "Protocol", type_ = "string", json_path = ".spec.protocol"),
    printcolumn(name = "V4ip", type_ = "string", json_path = ".status.v4ip"),
    printcolumn(name = "V6ip", type_ = "string", json_path = ".status.v6ip"),
    printcolumn(name = "InternalIp", type_ = "string", json_path = ".spec.internalIp"),
    printcolumn(
        name = "ExternalPort",
        type_ = "string",
        json_path = ".spec.externalPort"
    ),
    printcolumn(
        name = "InternalPort",
        type_ = "string",
        json_path = ".spec.internalPort"
    ),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "NatGwDp", type_ = "string", json_path = ".status.natGwDp"),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready")
)]
#[serde(rename_all = "camelCase", default)]
pub struct IptablesDnatRuleSpec {
    /// EIP receiving the traffic.
    pub eip: String,
    /// Port on the EIP.
    pub external_port: String,
    /// `tcp` or `udp`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Internal address forwarded to.
    pub internal_ip: String,
    /// Internal port forwarded to.
    pub internal_port: String,
    /// `exclusive` (one backend per EIP:port) or `share` (several, load-balanced).
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    #[schemars(extend("enum" = ["exclusive", "share"], "x-kubeovn-rs-default" = "exclusive"))]
    pub type_: String,
}

/// The port forward as programmed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct IptablesDnatRuleStatus {
    /// Ready/Error conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Programmed in the gateway pod.
    pub ready: bool,
    /// EIP IPv4 address.
    #[serde(rename = "v4ip")]
    pub v4ip: String,
    /// EIP IPv6 address.
    #[serde(rename = "v6ip")]
    pub v6ip: String,
    /// Gateway programming the rule.
    pub nat_gw_dp: String,
    /// Timestamp requesting a re-apply.
    pub redo: String,
    /// Protocol programmed.
    pub protocol: String,
    /// Internal address programmed.
    pub internal_ip: String,
    /// Internal port programmed.
    pub internal_port: String,
    /// External port programmed.
    pub external_port: String,
}
