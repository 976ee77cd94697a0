//! Bearer-token authentication and RBAC authorization, as kube-apiserver does them for service
//! accounts, plus a record of every request an identified client made. The sandbox gives each
//! kube-ovn process its own token bound to the rules shipped in `dist/`, so a request the
//! shipped rules do not allow fails with 403 here as it would on a cluster, and a test can
//! compare what each binary used with what its role grants.
//!
//! Requests without an `Authorization` header keep the fixture's old behaviour (everything is
//! allowed, nothing is recorded): test drivers and tools use the API that way.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::route::{ResourcePath, Route};

/// A user the fixture recognises by its bearer token, with the rules its bindings give it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The bearer token clients present.
    pub token: String,
    /// User name, e.g. `system:serviceaccount:kube-system:ovn`.
    pub user: String,
    /// Every rule bound to the user.
    pub grants: Vec<Grant>,
}

/// A rule and where it applies: a ClusterRoleBinding's rules apply everywhere, a
/// RoleBinding's only in its namespace.
#[derive(Debug, Clone)]
pub struct Grant {
    /// `None` for cluster-wide, else the RoleBinding's namespace.
    pub namespace: Option<String>,
    /// The rule.
    pub rule: PolicyRule,
}

/// What a request asks to do, in RBAC's terms.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// API group, `""` for core.
    pub group: String,
    /// Resource plural.
    pub resource: String,
    /// Subresource such as `status`, `""` for none.
    pub subresource: String,
    /// Namespace of the request, `""` for cluster scope.
    pub namespace: String,
    /// The object's name when the request names one (or selects one by `metadata.name`).
    pub name: String,
}

/// One distinct request of an identified user, and whether it was allowed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Recorded {
    /// Who made it.
    pub user: String,
    /// What it asked for; the name is left out so the record stays small.
    pub attributes: Attributes,
    /// Whether RBAC allowed it.
    pub allowed: bool,
}

/// Tokens, the rules behind them and the record of requests.
#[derive(Debug, Default)]
pub struct AccessControl {
    by_token: HashMap<String, Identity>,
    record: Mutex<BTreeSet<Recorded>>,
}

/// The decision for one request.
pub enum Decision {
    /// Serve it.
    Allow,
    /// 401: a token nobody issued.
    Unauthenticated,
    /// 403: the user's rules do not allow it.
    Forbidden {
        /// The user.
        user: String,
        /// What was asked.
        attributes: Attributes,
    },
}

impl AccessControl {
    /// Access control over these identities.
    pub fn new(identities: Vec<Identity>) -> Self {
        Self {
            by_token: identities
                .into_iter()
                .map(|i| (i.token.clone(), i))
                .collect(),
            record: Mutex::default(),
        }
    }

    /// Authenticates `authorization` (the header's value, empty when absent), authorizes the
    /// request and records it.
    pub fn decide(
        &self,
        authorization: &str,
        method: &str,
        route: &Route,
        query: &HashMap<String, String>,
    ) -> Decision {
        if authorization.is_empty() {
            return Decision::Allow;
        }
        let Some(identity) = authorization
            .strip_prefix("Bearer ")
            .and_then(|t| self.by_token.get(t.trim()))
        else {
            return Decision::Unauthenticated;
        };
        // Discovery, /version and health are open to every authenticated user
        // (kube-apiserver's system:discovery and system:public-info-viewer bindings).
        let Route::Resource(target) = route else {
            return Decision::Allow;
        };
        let attributes = attributes(method, target, query);
        let allowed = identity.grants.iter().any(|g| grant_allows(g, &attributes));
        let mut unnamed = attributes.clone();
        unnamed.name.clear();
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(Recorded {
                user: identity.user.clone(),
                attributes: unnamed,
                allowed,
            });
        if allowed {
            Decision::Allow
        } else {
            Decision::Forbidden {
                user: identity.user.clone(),
                attributes,
            }
        }
    }

    /// Every distinct request recorded so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// The RBAC attributes of a resource request, as kube-apiserver's request-info resolver
/// derives them from the method, the path and the `watch` parameter.
pub fn attributes(
    method: &str,
    target: &ResourcePath,
    query: &HashMap<String, String>,
) -> Attributes {
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let named = target.name.is_some();
    // Streaming subresources are `create` whatever the method: a WebSocket exec is a GET, and
    // kube-apiserver (1.30+) authorizes its upgrade as create.
    let streaming = matches!(
        target.subresource.as_deref(),
        Some("exec" | "attach" | "portforward")
    );
    let verb = match (method, named) {
        _ if streaming => "create",
        ("GET" | "HEAD", _) if watch => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (other, _) => other,
    };
    // A list or watch of one object by `metadata.name=` counts as naming it.
    let name = target.name.clone().unwrap_or_else(|| {
        query
            .get("fieldSelector")
            .and_then(|f| {
                f.split(',')
                    .find_map(|term| term.strip_prefix("metadata.name="))
                    .map(str::to_string)
            })
            .unwrap_or_default()
    });
    Attributes {
        verb: verb.to_ascii_lowercase(),
        group: target.group.clone(),
        resource: target.plural.clone(),
        subresource: target.subresource.clone().unwrap_or_default(),
        namespace: target.namespace.clone().unwrap_or_default(),
        name,
    }
}

/// Whether one grant allows the request (RBAC's rule matching: `*` wildcards, `resource/sub`
/// and `*/sub` resources, resourceNames only for requests that name an object).
pub fn grant_allows(grant: &Grant, a: &Attributes) -> bool {
    if let Some(ns) = &grant.namespace {
        if *ns != a.namespace {
            return false;
        }
    }
    rule_allows(&grant.rule, a)
}

/// Whether one rule allows the request, wherever it applies.
pub fn rule_allows(rule: &PolicyRule, a: &Attributes) -> bool {
    let any = |list: &[String], want: &str| list.iter().any(|x| x == "*" || x == want);
    let groups = rule.api_groups.as_deref().unwrap_or_default();
    let resources = rule.resources.as_deref().unwrap_or_default();
    if !any(&rule.verbs, &a.verb) || !any(groups, &a.group) {
        return false;
    }
    let resource_ok = if a.subresource.is_empty() {
        any(resources, &a.resource)
    } else {
        let full = format!("{}/{}", a.resource, a.subresource);
        let star = format!("*/{}", a.subresource);
        resources
            .iter()
            .any(|r| *r == full || *r == star || r == "*")
    };
    if !resource_ok {
        return false;
    }
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => !a.name.is_empty() && names.contains(&a.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        PolicyRule {
            api_groups: Some(v(groups)),
            resources: Some(v(resources)),
            verbs: v(verbs),
            resource_names: (!names.is_empty()).then(|| v(names)),
            non_resource_urls: None,
        }
    }

    fn req(verb: &str, group: &str, resource: &str, sub: &str, ns: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn rules_match_like_rbac() {
        let pods = rule(&[""], &["pods"], &["get", "list"], &[]);
        assert!(rule_allows(&pods, &req("get", "", "pods", "", "a", "p")));
        assert!(!rule_allows(&pods, &req("patch", "", "pods", "", "a", "p")));
        assert!(!rule_allows(
            &pods,
            &req("get", "apps", "pods", "", "a", "p")
        ));
        // A subresource needs its own entry.
        assert!(!rule_allows(
            &pods,
            &req("get", "", "pods", "status", "a", "p")
        ));
        let status = rule(&["kubeovn.io"], &["subnets/status"], &["patch"], &[]);
        assert!(rule_allows(
            &status,
            &req("patch", "kubeovn.io", "subnets", "status", "", "s")
        ));
        assert!(!rule_allows(
            &status,
            &req("patch", "kubeovn.io", "subnets", "", "", "s")
        ));
        let named = rule(
            &["coordination.k8s.io"],
            &["leases"],
            &["get"],
            &["kube-ovn-controller"],
        );
        assert!(rule_allows(
            &named,
            &req(
                "get",
                "coordination.k8s.io",
                "leases",
                "",
                "kube-system",
                "kube-ovn-controller"
            )
        ));
        assert!(!rule_allows(
            &named,
            &req(
                "get",
                "coordination.k8s.io",
                "leases",
                "",
                "kube-system",
                "other"
            )
        ));
        assert!(!rule_allows(
            &named,
            &req(
                "get",
                "coordination.k8s.io",
                "leases",
                "",
                "kube-system",
                ""
            )
        ));
        let wild = rule(&["*"], &["*"], &["*"], &[]);
        assert!(rule_allows(
            &wild,
            &req("deletecollection", "x", "y", "z", "", "")
        ));
        let in_ns = Grant {
            namespace: Some("kube-system".into()),
            rule: pods,
        };
        assert!(grant_allows(
            &in_ns,
            &req("list", "", "pods", "", "kube-system", "")
        ));
        assert!(!grant_allows(
            &in_ns,
            &req("list", "", "pods", "", "default", "")
        ));
        assert!(!grant_allows(&in_ns, &req("list", "", "pods", "", "", "")));
    }

    #[test]
    fn verbs_come_from_method_path_and_watch() {
        let path = |name: Option<&str>| ResourcePath {
            group: String::new(),
            version: "v1".into(),
            namespace: Some("ns".into()),
            plural: "pods".into(),
            name: name.map(str::to_string),
            subresource: None,
        };
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let verb = |m: &str, n: Option<&str>, query: &HashMap<String, String>| {
            attributes(m, &path(n), query).verb
        };
        let none = q(&[]);
        assert_eq!(verb("GET", Some("p"), &none), "get");
        assert_eq!(verb("GET", None, &none), "list");
        assert_eq!(verb("GET", None, &q(&[("watch", "true")])), "watch");
        assert_eq!(verb("POST", None, &none), "create");
        assert_eq!(verb("PUT", Some("p"), &none), "update");
        assert_eq!(verb("PATCH", Some("p"), &none), "patch");
        assert_eq!(verb("DELETE", Some("p"), &none), "delete");
        assert_eq!(verb("DELETE", None, &none), "deletecollection");
        let exec = ResourcePath {
            subresource: Some("exec".into()),
            ..path(Some("p"))
        };
        assert_eq!(attributes("GET", &exec, &none).verb, "create");
        let by_name = attributes(
            "GET",
            &path(None),
            &q(&[("watch", "1"), ("fieldSelector", "metadata.name=x")]),
        );
        assert_eq!(by_name.name, "x");
    }
}
