//! `SecurityGroup`: OpenStack-style rules realised as an OVN port group
//! (`ovn.sg.<name>`) with ACLs; pods join through an annotation.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::omit::{is_false, is_zero};
use super::schema;

/// Remote type matching an address or CIDR.
pub const REMOTE_ADDRESS: &str = "address";
/// Remote type matching the members of another security group.
pub const REMOTE_SECURITY_GROUP: &str = "securityGroup";

/// The group's rules.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "SecurityGroup",
    plural = "security-groups",
    singular = "security-group",
    shortname = "sg",
    status = "SecurityGroupStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A security group: a port group with ingress and egress ACLs."
)]
#[serde(rename_all = "camelCase", default)]
pub struct SecurityGroupSpec {
    /// Rules for traffic into members.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingress_rules: Vec<SecurityGroupRule>,
    /// Rules for traffic out of members.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub egress_rules: Vec<SecurityGroupRule>,
    /// Let members talk to each other regardless of the rules.
    #[serde(skip_serializing_if = "is_false")]
    pub allow_same_group_traffic: bool,
    /// ACL tier the rules go into (0 or 1).
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(schema_with = "schema::go_int")]
    pub tier: i64,
}

/// One rule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct SecurityGroupRule {
    /// `ipv4` or `ipv6`.
    pub ip_version: String,
    /// `all`, `icmp`, `tcp` or `udp`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Priority 1–16384 (higher wins).
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(schema_with = "schema::go_int")]
    pub priority: i64,
    /// `address` or `securityGroup`.
    pub remote_type: String,
    /// Remote address or CIDR.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remote_address: String,
    /// Remote security group.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remote_security_group: String,
    /// First destination port.
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(schema_with = "schema::go_int")]
    pub port_range_min: i64,
    /// Last destination port.
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(schema_with = "schema::go_int")]
    pub port_range_max: i64,
    /// Member-side address or CIDR.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_address: String,
    /// First source port.
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(schema_with = "schema::go_int")]
    pub source_port_range_min: i64,
    /// Last source port.
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(schema_with = "schema::go_int")]
    pub source_port_range_max: i64,
    /// `allow`, `drop` or `pass`.
    pub policy: String,
}

/// What was last synced to OVN, so unchanged rules are not rewritten.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct SecurityGroupStatus {
    /// OVN port group name.
    pub port_group: String,
    /// Same-group setting in effect.
    pub allow_same_group_traffic: bool,
    /// Hash of the ingress rules last synced.
    pub ingress_md5: String,
    /// Hash of the egress rules last synced.
    pub egress_md5: String,
    /// Whether the last ingress sync succeeded.
    pub ingress_last_sync_success: bool,
    /// Whether the last egress sync succeeded.
    pub egress_last_sync_success: bool,
}
