//! `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy (kubernetes-sigs/network-policy-api),
//! the successor of AdminNetworkPolicy/BaselineAdminNetworkPolicy that upstream Kube-OVN (v1.16)
//! enforces with `--enable-anp`: one kind whose `tier` (`Admin` above NetworkPolicies,
//! `Baseline` below them) replaces the two v1alpha1 kinds.
//!
//! The fields follow the network-policy-api revision upstream Kube-OVN master builds against
//! (rules carry `ports` entries of `portNumber`/`portRange`/`namedPort`, the same JSON as
//! v1alpha1), so subjects, peers and ports reuse the v1alpha1 types. Like those kinds it is not a
//! `kubeovn.io` kind: no derived schema, absent from [`super::all`], and enumerations (tier,
//! actions, protocols) stay strings so an object the API server accepted is always readable —
//! the controller decides what an unknown value means, as upstream does.

use kube::CustomResource;
use serde::{Deserialize, Serialize};

use super::admin_network_policy::{
    AdminNetworkPolicyEgressPeer, AdminNetworkPolicyIngressPeer, AdminNetworkPolicyPort,
    AdminNetworkPolicyStatus, AdminNetworkPolicySubject,
};

/// The served version the controller reads.
pub const VERSION: &str = "v1alpha2";

/// A cluster-scoped policy in one of two tiers, evaluated by `priority` (0 first) within its
/// tier; each rule accepts, denies or passes matching traffic on to the next layer.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "policy.networking.k8s.io",
    version = "v1alpha2",
    kind = "ClusterNetworkPolicy",
    plural = "clusternetworkpolicies",
    singular = "clusternetworkpolicy",
    shortname = "cnp",
    status = "AdminNetworkPolicyStatus",
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default",
    doc = "A ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2)."
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicySpec {
    /// `Admin` (above NetworkPolicies) or `Baseline` (below them).
    pub tier: String,
    /// 0..1000 in the API; Kube-OVN accepts 0..399 (its ACL priority band).
    pub priority: i32,
    /// The pods the policy applies to.
    #[serde(default)]
    pub subject: AdminNetworkPolicySubject,
    /// Ingress rules, highest precedence first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<ClusterNetworkPolicyIngressRule>,
    /// Egress rules, highest precedence first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<ClusterNetworkPolicyEgressRule>,
}

/// An ingress rule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyIngressRule {
    /// Optional name (part of NB names).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `Accept`, `Deny` or `Pass`.
    pub action: String,
    /// Where traffic comes from.
    #[serde(default)]
    pub from: Vec<AdminNetworkPolicyIngressPeer>,
    /// Destination ports (absent: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<AdminNetworkPolicyPort>>,
}

/// An egress rule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicyEgressRule {
    /// Optional name (part of NB names).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `Accept`, `Deny` or `Pass`.
    pub action: String,
    /// Where traffic goes: pods, namespaces, nodes, networks or domain names.
    #[serde(default)]
    pub to: Vec<AdminNetworkPolicyEgressPeer>,
    /// Destination ports (absent: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<AdminNetworkPolicyPort>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_manifest_reads_back_unchanged() {
        let v = serde_json::json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": "x"},
            "spec": {"tier": "Baseline", "priority": 10,
                     "subject": {"namespaces": {"matchLabels": {"a": "b"}}},
                     "ingress": [{"name": "r", "action": "Accept",
                                  "from": [{"namespaces": {}}],
                                  "ports": [{"portNumber": {"protocol": "TCP", "port": 80}}]}],
                     "egress": [{"action": "Pass", "to": [{"networks": ["10.0.0.0/8"]}]}]}
        });
        let c: ClusterNetworkPolicy = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(c.spec.tier, "Baseline");
        assert_eq!(c.spec.egress[0].to[0].networks, ["10.0.0.0/8"]);
        assert_eq!(serde_json::to_value(&c).unwrap(), v);
    }
}
