//! `Vip`: an address reserved on a subnet without a pod, used as an OVN
//! virtual port, an allowed-address-pair or a switch load-balancer VIP.
//!
//! Upstream's Vip has a status but no status subresource: status is written
//! with an ordinary update, and the CRD is generated the same way.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;

/// Where to reserve the address and who may use it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "Vip",
    plural = "vips",
    singular = "vip",
    shortname = "vip",
    status = "VipStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A reserved or virtual IP on a subnet.",
    printcolumn(name = "Namespace", type_ = "string", json_path = ".spec.namespace"),
    printcolumn(name = "V4IP", type_ = "string", json_path = ".status.v4ip"),
    printcolumn(name = "V6IP", type_ = "string", json_path = ".status.v6ip"),
    printcolumn(name = "Mac", type_ = "string", json_path = ".status.mac"),
    printcolumn(name = "Subnet", type_ = "string", json_path = ".spec.subnet"),
    printcolumn(name = "Type", type_ = "string", json_path = ".status.type")
)]
#[serde(rename_all = "camelCase", default)]
pub struct VipSpec {
    /// Namespace the VIP belongs to; immutable once created.
    pub namespace: String,
    /// Subnet the address comes from; immutable once created.
    pub subnet: String,
    /// Empty (allowed-address-pair VIP) or `switch_lb_vip`; immutable once created.
    #[serde(rename = "type")]
    pub type_: String,
    /// Requested IPv4 address.
    #[serde(rename = "v4ip")]
    pub v4ip: String,
    /// Requested IPv6 address.
    #[serde(rename = "v6ip")]
    pub v6ip: String,
    /// Requested MAC.
    pub mac_address: String,
    /// Pods allowed to answer for the address.
    pub selector: Vec<String>,
    /// Attachment subnets to reserve on as well.
    pub attach_subnets: Vec<String>,
}

/// The reservation as made.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct VipStatus {
    /// Ready/Error conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// VIP type in effect.
    #[serde(rename = "type")]
    pub type_: String,
    /// Reserved IPv4 address.
    #[serde(rename = "v4ip")]
    pub v4ip: String,
    /// Reserved IPv6 address.
    #[serde(rename = "v6ip")]
    pub v6ip: String,
    /// Reserved MAC.
    pub mac: String,
    /// Pods selected.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub selector: Vec<String>,
}
