//! `IP`: the durable record of one address allocation. IPAM is rebuilt from
//! these on restart, so names (`<pod>.<namespace>[.<provider>]`) and fields
//! must match what upstream wrote.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One pod's (or VM's, or node's) allocation on a subnet. IP has no status.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "IP",
    root = "Ip",
    plural = "ips",
    singular = "ip",
    shortname = "ip",
    derive = "PartialEq",
    derive = "Default",
    doc = "An address allocation Kube-OVN keeps so IPAM survives restarts.",
    printcolumn(name = "V4IP", type_ = "string", json_path = ".spec.v4IpAddress"),
    printcolumn(name = "V6IP", type_ = "string", json_path = ".spec.v6IpAddress"),
    printcolumn(name = "Mac", type_ = "string", json_path = ".spec.macAddress"),
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.nodeName"),
    printcolumn(name = "Subnet", type_ = "string", json_path = ".spec.subnet")
)]
#[serde(rename_all = "camelCase", default)]
pub struct IpSpec {
    /// Owner name (pod, VM or node).
    pub pod_name: String,
    /// Owner namespace.
    pub namespace: String,
    /// Subnet the address came from; immutable once created.
    pub subnet: String,
    /// Attachment subnets (legacy multi-NIC bookkeeping).
    pub attach_subnets: Vec<String>,
    /// Node the owner runs on.
    pub node_name: String,
    /// All addresses, comma-separated (kept for older readers).
    #[serde(rename = "ipAddress")]
    pub ip_address: String,
    /// IPv4 address.
    #[serde(rename = "v4IpAddress")]
    pub v4_ip_address: String,
    /// IPv6 address.
    #[serde(rename = "v6IpAddress")]
    pub v6_ip_address: String,
    /// Addresses on attachment subnets.
    #[serde(rename = "attachIps")]
    pub attach_ips: Vec<String>,
    /// MAC address.
    pub mac_address: String,
    /// MACs on attachment subnets.
    pub attach_macs: Vec<String>,
    /// Container (sandbox) id the address is bound to.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Owner type, e.g. `VirtualMachine` or empty for plain pods.
    pub pod_type: String,
}
