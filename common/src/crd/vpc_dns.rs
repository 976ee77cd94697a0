//! `VpcDns`: a CoreDNS Deployment placed inside a custom VPC so its pods can
//! resolve cluster names; global settings come from ConfigMap `vpc-dns-config`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::omit::is_zero;

/// Where the DNS deployment runs.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "VpcDns",
    plural = "vpc-dnses",
    singular = "vpc-dns",
    shortname = "vpc-dns",
    status = "VpcDnsStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A CoreDNS deployment serving a custom VPC.",
    printcolumn(name = "Active", type_ = "boolean", json_path = ".status.active"),
    printcolumn(name = "Vpc", type_ = "string", json_path = ".spec.vpc"),
    printcolumn(name = "Subnet", type_ = "string", json_path = ".spec.subnet"),
    printcolumn(name = "Corefile", type_ = "string", json_path = ".spec.corefile")
)]
#[serde(rename_all = "camelCase", default)]
pub struct VpcDnsSpec {
    /// CoreDNS replicas (1–3).
    #[serde(skip_serializing_if = "is_zero")]
    pub replicas: i32,
    /// VPC served; immutable once created.
    pub vpc: String,
    /// Subnet the DNS pods sit on; immutable once created.
    pub subnet: String,
    /// ConfigMap holding the Corefile.
    #[serde(skip_serializing_if = "String::is_empty")]
    #[schemars(extend("x-kubeovn-rs-default" = "vpc-dns-corefile"))]
    pub corefile: String,
}

/// Whether this VpcDns is the one serving its VPC.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct VpcDnsStatus {
    /// Ready/Error conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Serving (only one VpcDns per VPC is).
    pub active: bool,
}
