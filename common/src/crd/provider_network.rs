//! `ProviderNetwork`: which host NIC each node bridges into OVS (`br-<name>`)
//! for underlay traffic.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::omit::is_false;
use super::schema;

/// The NIC mapping and the nodes it applies to.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "ProviderNetwork",
    plural = "provider-networks",
    singular = "provider-network",
    shortname = "pn",
    status = "ProviderNetworkStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "An underlay network: the host interface each node attaches to an OVS bridge.",
    printcolumn(
        name = "DefaultInterface",
        type_ = "string",
        json_path = ".spec.defaultInterface"
    ),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready")
)]
#[serde(rename_all = "camelCase", default)]
pub struct ProviderNetworkSpec {
    /// NIC used on nodes without a custom one; immutable once created.
    #[serde(skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 15), regex(pattern = r"^[^/\s]+$"))]
    #[schemars(extend("x-kubeovn-rs-required" = true))]
    pub default_interface: String,
    /// Per-node NIC overrides.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_interfaces: Vec<CustomInterface>,
    /// Nodes the network is set up on; unset means all.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::label_selector")]
    pub node_selector: Option<LabelSelector>,
    /// Nodes left out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude_nodes: Vec<String>,
    /// Swap the names of the bridge and the NIC so host tooling keeps working.
    #[serde(skip_serializing_if = "is_false")]
    pub exchange_link_name: bool,
    /// Create missing `<nic>.<vlan>` subinterfaces.
    #[serde(skip_serializing_if = "is_false")]
    pub auto_create_vlan_subinterfaces: bool,
    /// Keep existing VLAN subinterfaces when the NIC moves into the bridge.
    #[serde(skip_serializing_if = "is_false")]
    pub preserve_vlan_interfaces: bool,
    /// VLAN subinterfaces to keep, e.g. `eth0.10`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vlan_interfaces: Vec<String>,
}

/// A NIC override for some nodes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct CustomInterface {
    /// NIC name on those nodes.
    #[schemars(length(max = 15), regex(pattern = r"^[^/\s]+$"))]
    pub interface: String,
    /// Nodes using it.
    pub nodes: Vec<String>,
}

/// A condition reported by one node's daemon.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ProviderNetworkCondition {
    /// Node the condition is about.
    pub node: String,
    /// The condition itself.
    #[serde(flatten)]
    pub condition: Condition,
}

/// Per-node readiness of the network.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ProviderNetworkStatus {
    /// Every selected node has the bridge up.
    pub ready: bool,
    /// Nodes with the bridge up.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ready_nodes: Vec<String>,
    /// Nodes where setting up the bridge failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_ready_nodes: Vec<String>,
    /// VLANs on this network (also the signal that a VLAN has been processed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<String>,
    /// Per-node conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ProviderNetworkCondition>,
}
