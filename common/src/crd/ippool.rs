//! `IPPool`: a slice of a subnet reserved for some namespaces.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::big_int::BigInt;
use super::condition::Condition;
use super::omit::is_false;

/// Which addresses of which subnet the pool holds, and who may use them.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "IPPool",
    root = "IpPool",
    plural = "ippools",
    singular = "ippool",
    shortname = "ippool",
    status = "IpPoolStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A named range of a subnet's addresses bound to namespaces.",
    printcolumn(name = "Subnet", type_ = "string", json_path = ".spec.subnet"),
    printcolumn(
        name = "enableAddressSet",
        type_ = "boolean",
        json_path = ".spec.enableAddressSet"
    ),
    printcolumn(name = "IPs", type_ = "string", json_path = ".spec.ips"),
    printcolumn(name = "V4Used", type_ = "number", json_path = ".status.v4UsingIPs"),
    printcolumn(
        name = "V4Available",
        type_ = "number",
        json_path = ".status.v4AvailableIPs"
    ),
    printcolumn(name = "V6Used", type_ = "number", json_path = ".status.v6UsingIPs"),
    printcolumn(
        name = "V6Available",
        type_ = "number",
        json_path = ".status.v6AvailableIPs"
    )
)]
#[serde(rename_all = "camelCase", default)]
pub struct IpPoolSpec {
    /// Subnet the pool carves from; immutable.
    #[serde(skip_serializing_if = "String::is_empty")]
    #[schemars(extend("x-kubeovn-rs-required" = true))]
    pub subnet: String,
    /// Namespaces whose pods draw from the pool.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Addresses, `a..b` ranges and CIDRs in the pool.
    #[serde(rename = "ips", skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubeovn-rs-required" = true))]
    pub ips: Vec<String>,
    /// Mirror the pool into an OVN address set for policies and ACLs.
    #[serde(skip_serializing_if = "is_false")]
    #[schemars(extend("x-kubeovn-rs-default" = false))]
    pub enable_address_set: bool,
}

/// Usage counters, like a subnet's.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(default)]
pub struct IpPoolStatus {
    /// IPv4 addresses still free.
    #[serde(rename = "v4AvailableIPs")]
    pub v4_available_ips: BigInt,
    /// Free IPv4 ranges.
    #[serde(rename = "v4AvailableIPRange")]
    pub v4_available_ip_range: String,
    /// IPv4 addresses in use.
    #[serde(rename = "v4UsingIPs")]
    pub v4_using_ips: BigInt,
    /// Used IPv4 ranges.
    #[serde(rename = "v4UsingIPRange")]
    pub v4_using_ip_range: String,
    /// IPv6 addresses still free.
    #[serde(rename = "v6AvailableIPs")]
    pub v6_available_ips: BigInt,
    /// Free IPv6 ranges.
    #[serde(rename = "v6AvailableIPRange")]
    pub v6_available_ip_range: String,
    /// IPv6 addresses in use.
    #[serde(rename = "v6UsingIPs")]
    pub v6_using_ips: BigInt,
    /// Used IPv6 ranges.
    #[serde(rename = "v6UsingIPRange")]
    pub v6_using_ip_range: String,
    /// Ready/Error conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
