//! `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy and BaselineAdminNetworkPolicy
//! (kubernetes-sigs/network-policy-api), the cluster-wide policies upstream Kube-OVN enforces
//! with `--enable-anp`.
//!
//! These are not `kubeovn.io` kinds: upstream installs their CRDs from network-policy-api's
//! release, not from its own bundle, so they are deliberately absent from [`super::all`] (and
//! from `dist/crds`) and carry no derived schema. Fields follow v1alpha1 by their JSON names;
//! enumerations (actions, protocols) stay strings so an object the API server accepted is never
//! unreadable here — the controller decides what an unknown value means, as upstream does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// The API group of both kinds.
pub const GROUP: &str = "policy.networking.k8s.io";
/// The served version the controller reads.
pub const VERSION: &str = "v1alpha1";

/// A cluster-scoped policy that overrides NetworkPolicies: rules are evaluated by `priority`
/// (0 first) and each allows, denies or passes matching traffic on to NetworkPolicy.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "policy.networking.k8s.io",
    version = "v1alpha1",
    kind = "AdminNetworkPolicy",
    plural = "adminnetworkpolicies",
    singular = "adminnetworkpolicy",
    shortname = "anp",
    status = "AdminNetworkPolicyStatus",
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default",
    doc = "An AdminNetworkPolicy (policy.networking.k8s.io/v1alpha1)."
)]
#[serde(rename_all = "camelCase")]
pub struct AdminNetworkPolicySpec {
    /// 0..1000 in the API; Kube-OVN accepts 0..99 (its ACL priority bands).
    pub priority: i32,
    /// The pods the policy applies to.
    #[serde(default)]
    pub subject: AdminNetworkPolicySubject,
    /// Ingress rules, highest precedence first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<AdminNetworkPolicyIngressRule>,
    /// Egress rules, highest precedence first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<AdminNetworkPolicyEgressRule>,
}

/// The status both kinds share: conditions only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdminNetworkPolicyStatus {
    /// Implementation-written conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// Which pods a policy applies to: exactly one of the two is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdminNetworkPolicySubject {
    /// Every pod of the namespaces selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// The pods selected in the namespaces selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
}

/// Pods by namespace and pod labels.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedPod {
    /// Namespaces (empty selects all).
    #[serde(default)]
    pub namespace_selector: LabelSelector,
    /// Pods in them (empty selects all).
    #[serde(default)]
    pub pod_selector: LabelSelector,
}

/// One destination port: exactly one of the three is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdminNetworkPolicyPort {
    /// A protocol and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<Port>,
    /// A container port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub named_port: Option<String>,
    /// A protocol and inclusive port range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range: Option<PortRange>,
}

fn tcp() -> String {
    "TCP".to_string()
}

/// A protocol (`TCP` by default) and port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// `TCP`, `UDP` or `SCTP`.
    #[serde(default = "tcp")]
    pub protocol: String,
    /// The port.
    pub port: i32,
}

/// A protocol (`TCP` by default) and inclusive port range.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PortRange {
    /// `TCP`, `UDP` or `SCTP`.
    #[serde(default = "tcp")]
    pub protocol: String,
    /// First port.
    pub start: i32,
    /// Last port.
    pub end: i32,
}

/// An ingress rule of an AdminNetworkPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdminNetworkPolicyIngressRule {
    /// Optional name (part of NB names).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `Allow`, `Deny` or `Pass`.
    pub action: String,
    /// Where traffic comes from.
    #[serde(default)]
    pub from: Vec<AdminNetworkPolicyIngressPeer>,
    /// Destination ports (absent: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<AdminNetworkPolicyPort>>,
}

/// An egress rule of an AdminNetworkPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdminNetworkPolicyEgressRule {
    /// Optional name (part of NB names).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `Allow`, `Deny` or `Pass`.
    pub action: String,
    /// Where traffic goes.
    #[serde(default)]
    pub to: Vec<AdminNetworkPolicyEgressPeer>,
    /// Destination ports (absent: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<AdminNetworkPolicyPort>>,
}

/// An ingress peer: exactly one of the two is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdminNetworkPolicyIngressPeer {
    /// Every pod of the namespaces selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// The pods selected in the namespaces selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
}

/// An egress peer: exactly one of the fields is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdminNetworkPolicyEgressPeer {
    /// Every pod of the namespaces selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// The pods selected in the namespaces selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
    /// The nodes selected (their InternalIPs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<LabelSelector>,
    /// CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    /// Fully qualified domain names (resolved through DNSNameResolvers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domain_names: Vec<String>,
}

/// The single cluster-wide default policy (named `default`), below NetworkPolicies.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "policy.networking.k8s.io",
    version = "v1alpha1",
    kind = "BaselineAdminNetworkPolicy",
    plural = "baselineadminnetworkpolicies",
    singular = "baselineadminnetworkpolicy",
    shortname = "banp",
    status = "AdminNetworkPolicyStatus",
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default",
    doc = "A BaselineAdminNetworkPolicy (policy.networking.k8s.io/v1alpha1)."
)]
#[serde(rename_all = "camelCase")]
pub struct BaselineAdminNetworkPolicySpec {
    /// The pods the policy applies to.
    #[serde(default)]
    pub subject: AdminNetworkPolicySubject,
    /// Ingress rules, highest precedence first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<BaselineAdminNetworkPolicyIngressRule>,
    /// Egress rules, highest precedence first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<BaselineAdminNetworkPolicyEgressRule>,
}

/// An ingress rule of the baseline policy (`Allow` or `Deny`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BaselineAdminNetworkPolicyIngressRule {
    /// Optional name (part of NB names).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `Allow` or `Deny`.
    pub action: String,
    /// Where traffic comes from.
    #[serde(default)]
    pub from: Vec<AdminNetworkPolicyIngressPeer>,
    /// Destination ports (absent: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<AdminNetworkPolicyPort>>,
}

/// An egress rule of the baseline policy (`Allow` or `Deny`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BaselineAdminNetworkPolicyEgressRule {
    /// Optional name (part of NB names).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `Allow` or `Deny`.
    pub action: String,
    /// Where traffic goes.
    #[serde(default)]
    pub to: Vec<BaselineAdminNetworkPolicyEgressPeer>,
    /// Destination ports (absent: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<AdminNetworkPolicyPort>>,
}

/// An egress peer of the baseline policy: as an AdminNetworkPolicy's, without domain names.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BaselineAdminNetworkPolicyEgressPeer {
    /// Every pod of the namespaces selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// The pods selected in the namespaces selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
    /// The nodes selected (their InternalIPs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<LabelSelector>,
    /// CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;
    use serde_json::json;

    #[test]
    fn reads_the_v1alpha1_shapes() {
        let anp: AdminNetworkPolicy = serde_json::from_value(json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
            "metadata": {"name": "a"},
            "spec": {"priority": 3,
                "subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "x"}}}},
                "ingress": [{"name": "r", "action": "Pass", "from": [{"namespaces": {}}],
                             "ports": [{"portNumber": {"port": 80}}, {"portRange": {"protocol": "UDP", "start": 1, "end": 9}}, {"namedPort": "http"}]}],
                "egress": [{"action": "Deny", "to": [{"nodes": {}}, {"networks": ["10.0.0.0/8"]}]}]}
        }))
        .unwrap();
        assert_eq!(AdminNetworkPolicy::plural(&()), "adminnetworkpolicies");
        assert_eq!(
            AdminNetworkPolicy::api_version(&()),
            "policy.networking.k8s.io/v1alpha1"
        );
        let ports = anp.spec.ingress[0].ports.as_ref().unwrap();
        assert_eq!(ports[0].port_number.as_ref().unwrap().protocol, "TCP");
        assert_eq!(ports[1].port_range.as_ref().unwrap().end, 9);
        assert_eq!(ports[2].named_port.as_deref(), Some("http"));
        assert_eq!(anp.spec.egress[0].to[1].networks, vec!["10.0.0.0/8"]);
        let banp: BaselineAdminNetworkPolicy = serde_json::from_value(json!({
            "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
            "metadata": {"name": "default"},
            "spec": {"subject": {"namespaces": {}}, "egress": [{"action": "Allow", "to": [{"networks": ["::/0"]}]}]}
        }))
        .unwrap();
        assert_eq!(
            BaselineAdminNetworkPolicy::plural(&()),
            "baselineadminnetworkpolicies"
        );
        assert!(banp.spec.subject.namespaces.is_some());
    }
}
