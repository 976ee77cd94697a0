//! Custom L4 load balancers: `SwitchLBRule` puts a VIP on a VPC's switch load
//! balancers (backing a generated Service), `RouterLBRule` puts one on the
//! VPC router behind an OvnEip.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::omit::is_zero;

/// A VIP on a VPC's switch load balancers.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "SwitchLBRule",
    root = "SwitchLbRule",
    plural = "switch-lb-rules",
    singular = "switch-lb-rule",
    shortname = "slr",
    status = "SwitchLbRuleStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A load-balancer VIP on a VPC's logical switches.",
    printcolumn(name = "vip", type_ = "string", json_path = ".spec.vip"),
    printcolumn(name = "port(s)", type_ = "string", json_path = ".status.ports"),
    printcolumn(name = "service", type_ = "string", json_path = ".status.service"),
    printcolumn(
        name = "age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", default)]
pub struct SwitchLbRuleSpec {
    /// The VIP address (or the name of a Vip object).
    pub vip: String,
    /// Namespace of the generated Service and the backends.
    pub namespace: String,
    /// Backend pod selector as `key: value` strings.
    pub selector: Vec<String>,
    /// Backend addresses, when not selecting pods.
    pub endpoints: Vec<String>,
    /// `ClientIP` for session affinity.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub session_affinity: String,
    /// Ports served.
    pub ports: Vec<LbRulePort>,
}

/// One port of a load-balancer rule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct LbRulePort {
    /// Port name.
    pub name: String,
    /// Port on the VIP.
    pub port: i32,
    /// Backend port; the VIP port when zero.
    #[serde(skip_serializing_if = "is_zero")]
    pub target_port: i32,
    /// `TCP` or `UDP`.
    pub protocol: String,
}

/// The rule as realised.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct SwitchLbRuleStatus {
    /// Ready/Error conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Ports in effect, printable.
    pub ports: String,
    /// Generated Service, `namespace/name`.
    pub service: String,
}

/// A VIP on a VPC router, behind an OvnEip.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "RouterLBRule",
    root = "RouterLbRule",
    plural = "router-lb-rules",
    singular = "router-lb-rule",
    shortname = "rlr",
    status = "RouterLbRuleStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A load-balancer VIP on a VPC's logical router.",
    printcolumn(name = "ovnEip", type_ = "string", json_path = ".spec.ovnEip"),
    printcolumn(name = "vpc", type_ = "string", json_path = ".spec.vpc"),
    printcolumn(name = "port(s)", type_ = "string", json_path = ".status.ports"),
    printcolumn(name = "service", type_ = "string", json_path = ".status.service"),
    printcolumn(
        name = "age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", default)]
pub struct RouterLbRuleSpec {
    /// OvnEip providing the VIP.
    pub ovn_eip: String,
    /// VPC whose router gets the load balancer.
    pub vpc: String,
    /// Namespace of the generated Service and the backends.
    pub namespace: String,
    /// Backend pod selector as `key: value` strings.
    pub selector: Vec<String>,
    /// Backend addresses, when not selecting pods.
    pub endpoints: Vec<String>,
    /// `ClientIP` for session affinity.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub session_affinity: String,
    /// Ports served.
    pub ports: Vec<LbRulePort>,
}

/// The rule as realised.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RouterLbRuleStatus {
    /// Ready/Error conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Ports in effect, printable.
    pub ports: String,
    /// Generated Service, `namespace/name`.
    pub service: String,
}
