//! `Vlan`: a VLAN tag on a provider network; underlay subnets reference it.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::omit::{is_false, is_zero};
use super::schema;

/// The tag and the provider network carrying it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "Vlan",
    plural = "vlans",
    singular = "vlan",
    shortname = "vlan",
    status = "VlanStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A VLAN on a provider network, giving underlay subnets their localnet tag.",
    printcolumn(name = "ID", type_ = "string", json_path = ".spec.id"),
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider"),
    printcolumn(name = "conflict", type_ = "boolean", json_path = ".status.conflict")
)]
#[serde(rename_all = "camelCase", default)]
pub struct VlanSpec {
    /// Deprecated spelling of `id`, still honoured.
    #[serde(rename = "vlanId", skip_serializing_if = "is_zero")]
    #[schemars(schema_with = "vlan_id")]
    pub vlan_id: i64,
    /// Deprecated spelling of `provider`, still honoured.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub provider_interface_name: String,
    /// VLAN tag (0 is untagged); immutable once created.
    #[schemars(schema_with = "vlan_id")]
    pub id: i64,
    /// Provider network the VLAN rides on; immutable once created.
    #[serde(skip_serializing_if = "String::is_empty")]
    #[schemars(extend("x-kubeovn-rs-required" = true))]
    pub provider: String,
}

/// A 12-bit VLAN tag, typed as a Go `int`.
fn vlan_id(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut s = schema::go_int(generator);
    s.insert("minimum".into(), 0.into());
    s.insert("maximum".into(), 4095.into());
    s
}

/// Which subnets use the VLAN and whether its tag clashes with another.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct VlanStatus {
    /// Subnets referencing this VLAN.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    /// Another VLAN on the same provider already uses this tag.
    #[serde(skip_serializing_if = "is_false")]
    pub conflict: bool,
    /// Ready/Error conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
