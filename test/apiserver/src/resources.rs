//! The table of resource types the server knows: built-in kinds plus those
//! installed by CustomResourceDefinitions. Discovery and routing both read it.

use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};

/// One served group/version/resource and the facts discovery reports about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group, empty for the legacy core group.
    pub group: String,
    /// API version within the group.
    pub version: String,
    /// Lower-case plural used in URLs.
    pub plural: String,
    /// Lower-case singular name.
    pub singular: String,
    /// Object `kind`.
    pub kind: String,
    /// Whether objects live inside a namespace.
    pub namespaced: bool,
    /// Short names offered to kubectl (e.g. `po`).
    pub short_names: Vec<String>,
    /// Whether `/status` is a separate subresource, so main updates keep `.status`.
    pub status_subresource: bool,
    /// Whether a CustomResourceDefinition (rather than the server) defines the type.
    pub custom: bool,
    /// Discovery categories, e.g. `all` so `kubectl get all` includes the type.
    pub categories: Vec<String>,
    /// Printer columns in CRD `additionalPrinterColumns` form, which decide
    /// what `kubectl get` shows: the CRD version's, or for a built-in that is a
    /// CRD on real clusters, the ones that CRD declares.
    pub printer_columns: Vec<Value>,
}

impl ResourceType {
    /// `group/version`, or just `version` for the core group: the `apiVersion` of objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` (or `plural`), as used in error messages and CRD names.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short_names: &[&str],
    status_subresource: bool,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_ascii_lowercase(),
        kind: kind.into(),
        namespaced,
        short_names: short_names.iter().map(|s| s.to_string()).collect(),
        status_subresource,
        custom: false,
        categories: if (matches!(plural, "pods" | "services") && group.is_empty())
            || (group == "apps"
                && matches!(
                    plural,
                    "deployments" | "replicasets" | "statefulsets" | "daemonsets"
                )) {
            vec!["all".into()]
        } else {
            Vec::new()
        },
        printer_columns: Vec::new(),
    }
}

/// The printer columns of the network-policy-api CRDs that define
/// AdminNetworkPolicy (`Priority`, `Age`) and BaselineAdminNetworkPolicy
/// (`Age`), which this fixture serves as built-ins.
fn admin_network_policy_columns(with_priority: bool) -> Vec<Value> {
    let priority = json!({"name": "Priority", "type": "string", "jsonPath": ".spec.priority"});
    let age = json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"});
    if with_priority {
        vec![priority, age]
    } else {
        vec![age]
    }
}

/// The printer columns of network-policy-api's ClusterNetworkPolicy CRD (`Tier`, `Priority`,
/// `Age`), served here as a built-in like the v1alpha1 kinds.
fn cluster_network_policy_columns() -> Vec<Value> {
    vec![
        json!({"name": "Tier", "type": "string", "jsonPath": ".spec.tier"}),
        json!({"name": "Priority", "type": "string", "jsonPath": ".spec.priority"}),
        json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}),
    ]
}

/// The built-in resource types served from startup.
fn builtin_types() -> Vec<ResourceType> {
    vec![
        builtin("", "v1", "namespaces", "Namespace", false, &["ns"], true),
        builtin("", "v1", "nodes", "Node", false, &["no"], true),
        builtin("", "v1", "pods", "Pod", true, &["po"], true),
        builtin("", "v1", "services", "Service", true, &["svc"], true),
        builtin("", "v1", "endpoints", "Endpoints", true, &["ep"], false),
        builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"], false),
        builtin("", "v1", "secrets", "Secret", true, &[], false),
        builtin("", "v1", "events", "Event", true, &["ev"], false),
        builtin(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            false,
        ),
        builtin(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            true,
            &[],
            false,
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            true,
            &["netpol"],
            false,
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            &[],
            false,
        ),
        builtin(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            true,
            &["deploy"],
            true,
        ),
        builtin("apps", "v1", "daemonsets", "DaemonSet", true, &["ds"], true),
        builtin(
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            true,
            &["rs"],
            true,
        ),
        builtin(
            "apps",
            "v1",
            "statefulsets",
            "StatefulSet",
            true,
            &["sts"],
            true,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "Role",
            true,
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
            &[],
            false,
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            true,
        ),
        ResourceType {
            printer_columns: admin_network_policy_columns(true),
            ..builtin(
                "policy.networking.k8s.io",
                "v1alpha1",
                "adminnetworkpolicies",
                "AdminNetworkPolicy",
                false,
                &["anp"],
                true,
            )
        },
        ResourceType {
            printer_columns: admin_network_policy_columns(false),
            ..builtin(
                "policy.networking.k8s.io",
                "v1alpha1",
                "baselineadminnetworkpolicies",
                "BaselineAdminNetworkPolicy",
                false,
                &["banp"],
                true,
            )
        },
        ResourceType {
            printer_columns: cluster_network_policy_columns(),
            ..builtin(
                "policy.networking.k8s.io",
                "v1alpha2",
                "clusternetworkpolicies",
                "ClusterNetworkPolicy",
                false,
                &["cnp"],
                true,
            )
        },
    ]
}

/// All served resource types; CRD-derived entries are replaced whenever CRDs change.
#[derive(Debug, Clone)]
pub struct Registry {
    builtin: Vec<ResourceType>,
    /// CRD name -> the types it serves (one per served version).
    custom: Vec<(String, Vec<ResourceType>)>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            builtin: builtin_types(),
            custom: Vec::new(),
        }
    }
}

impl Registry {
    /// Every served type, built-ins first, in a stable order.
    pub fn all(&self) -> impl Iterator<Item = &ResourceType> {
        self.builtin
            .iter()
            .chain(self.custom.iter().flat_map(|(_, types)| types.iter()))
    }

    /// Finds the type served at `group/version/plural`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.all()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// Whether any served type uses this group/plural (for storage decisions).
    pub fn serves_group_resource(&self, group: &str, plural: &str) -> bool {
        self.all().any(|t| t.group == group && t.plural == plural)
    }

    /// Distinct `(group, versions)` pairs in first-seen order, for discovery.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for t in self.all() {
            match groups.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, versions)) => {
                    if !versions.contains(&t.version) {
                        versions.push(t.version.clone());
                    }
                }
                None => groups.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        groups
    }

    /// Registers (or replaces) the types a CRD object serves.
    pub fn install_crd(&mut self, crd: &Value) -> ApiResult<()> {
        let (name, types) = types_from_crd(crd)?;
        self.custom.retain(|(n, _)| *n != name);
        self.custom.push((name, types));
        Ok(())
    }

    /// Stops serving the types of the named CRD.
    pub fn remove_crd(&mut self, name: &str) {
        self.custom.retain(|(n, _)| n != name);
    }
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Validates a CRD object and derives the resource types it serves.
pub fn types_from_crd(crd: &Value) -> ApiResult<(String, Vec<ResourceType>)> {
    let missing =
        |field: &str| ApiError::invalid(format!("CustomResourceDefinition: {field} is required"));
    let spec = crd.get("spec").ok_or_else(|| missing("spec"))?;
    let group = str_at(spec, &["group"]).ok_or_else(|| missing("spec.group"))?;
    let plural = str_at(spec, &["names", "plural"]).ok_or_else(|| missing("spec.names.plural"))?;
    let kind = str_at(spec, &["names", "kind"]).ok_or_else(|| missing("spec.names.kind"))?;
    let singular = str_at(spec, &["names", "singular"])
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_ascii_lowercase());
    let namespaced = match str_at(spec, &["scope"]) {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        other => {
            return Err(ApiError::invalid(format!(
                "CustomResourceDefinition: spec.scope must be Namespaced or Cluster, got {other:?}"
            )))
        }
    };
    let expected_name = format!("{plural}.{group}");
    let name = str_at(crd, &["metadata", "name"]).unwrap_or_default();
    if name != expected_name {
        return Err(ApiError::invalid(format!(
            "CustomResourceDefinition \"{name}\": metadata.name must be spec.names.plural+\".\"+spec.group ({expected_name})"
        )));
    }
    let strings = |pointer: &str| -> Vec<String> {
        spec.pointer(pointer)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let short_names = strings("/names/shortNames");
    let categories = strings("/names/categories");
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing("spec.versions"))?;
    let mut types = Vec::new();
    for version in versions {
        let version_name =
            str_at(version, &["name"]).ok_or_else(|| missing("spec.versions[].name"))?;
        if !version
            .get("served")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            continue;
        }
        types.push(ResourceType {
            group: group.into(),
            version: version_name.into(),
            plural: plural.into(),
            singular: singular.clone(),
            kind: kind.into(),
            namespaced,
            short_names: short_names.clone(),
            status_subresource: version.pointer("/subresources/status").is_some(),
            custom: true,
            categories: categories.clone(),
            printer_columns: version
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        });
    }
    Ok((expected_name, types))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crd_serves_each_served_version_with_its_status_flag() {
        let crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
                    {"name": "v1beta1", "served": false, "storage": false},
                ],
            },
        });
        let mut registry = Registry::default();
        registry.install_crd(&crd).unwrap();
        let t = registry.lookup("example.com", "v1", "widgets").unwrap();
        assert!(t.namespaced && t.status_subresource);
        assert_eq!(t.short_names, vec!["wd"]);
        assert!(registry
            .lookup("example.com", "v1beta1", "widgets")
            .is_none());
        registry.remove_crd("widgets.example.com");
        assert!(registry.lookup("example.com", "v1", "widgets").is_none());
    }

    #[test]
    fn crd_versions_carry_their_own_printer_columns() {
        let crd = json!({
            "metadata": {"name": "subnets.kubeovn.io"},
            "spec": {
                "group": "kubeovn.io",
                "scope": "Cluster",
                "names": {"plural": "subnets", "kind": "Subnet"},
                "versions": [
                    {"name": "v1", "served": true, "additionalPrinterColumns": [
                        {"name": "CIDR", "type": "string", "jsonPath": ".spec.cidrBlock"},
                    ]},
                    {"name": "v2", "served": true},
                ],
            },
        });
        let (_, types) = types_from_crd(&crd).unwrap();
        assert_eq!(types[0].printer_columns[0]["name"], "CIDR");
        assert!(types[1].printer_columns.is_empty());
    }

    #[test]
    fn crd_with_wrong_name_is_invalid() {
        let crd = json!({
            "metadata": {"name": "wrong"},
            "spec": {"group": "g.io", "scope": "Cluster",
                     "names": {"plural": "xs", "kind": "X"},
                     "versions": [{"name": "v1", "served": true}]},
        });
        assert_eq!(types_from_crd(&crd).unwrap_err().code, 422);
    }
}
