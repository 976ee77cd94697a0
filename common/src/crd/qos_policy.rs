//! `QoSPolicy`: bandwidth limits applied by iptables NAT gateways, either to
//! one EIP or to a whole gateway.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::omit::is_zero;
use super::schema;

/// Binding type limiting one iptables EIP.
pub const BINDING_EIP: &str = "EIP";
/// Binding type limiting a whole NAT gateway.
pub const BINDING_NATGW: &str = "NATGW";

/// The limits and what they bind to.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "QoSPolicy",
    plural = "qos-policies",
    singular = "qos-policy",
    shortname = "qos",
    status = "QoSPolicyStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Bandwidth limits for iptables EIPs or NAT gateways.",
    printcolumn(name = "Shared", type_ = "string", json_path = ".spec.shared"),
    printcolumn(
        name = "BindingType",
        type_ = "string",
        json_path = ".spec.bindingType"
    )
)]
#[serde(rename_all = "camelCase", default)]
pub struct QoSPolicySpec {
    /// Limits to apply.
    pub bandwidth_limit_rules: Vec<QoSPolicyBandwidthLimitRule>,
    /// Whether several EIPs or gateways may use the policy.
    pub shared: bool,
    /// `EIP` or `NATGW`.
    pub binding_type: String,
}

/// One bandwidth limit.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct QoSPolicyBandwidthLimitRule {
    /// Rule name, unique in the policy.
    #[schemars(extend("x-kubeovn-rs-required" = true))]
    pub name: String,
    /// Interface limited (NATGW binding).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub interface: String,
    /// Rate in Mbit/s (fractions allowed).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub rate_max: String,
    /// Burst in MB (fractions allowed).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub burst_max: String,
    /// Order among rules matching the same traffic.
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(schema_with = "schema::go_int")]
    pub priority: i64,
    /// `ingress` or `egress`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub direction: String,
    /// `ip` to limit only some addresses.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub match_type: String,
    /// The address matched.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub match_value: String,
}

/// The limits as applied.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct QoSPolicyStatus {
    /// Limits in effect.
    pub bandwidth_limit_rules: Vec<QoSPolicyBandwidthLimitRule>,
    /// Sharing in effect.
    pub shared: bool,
    /// Binding in effect.
    pub binding_type: String,
    /// Ready/Error conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
