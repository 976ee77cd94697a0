//! The service accounts kube-ovn runs as, held to the RBAC rules shipped in `dist/manifests`:
//! each kube-ovn process of a sandbox gets a bearer token of its own, and the API fixture
//! resolves the token to the service account and its ClusterRoleBindings/RoleBindings as
//! kube-apiserver does, so a request the shipped rules do not allow fails with 403 and every
//! request is recorded per binary ([`kube_apiserver_fixture::ApiServer::recorded`]).

use std::path::Path;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding, Subject};
use kube_apiserver_fixture::access::{Grant, Identity};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Namespace of kube-ovn's service accounts (upstream installs into `kube-system`).
pub const NAMESPACE: &str = "kube-system";
/// The service account kube-ovn-controller runs as (upstream's Deployment).
pub const CONTROLLER_SA: &str = "ovn";
/// The service account kube-ovn-daemon runs as (upstream's kube-ovn-cni DaemonSet).
pub const DAEMON_SA: &str = "kube-ovn-cni";
/// kube-ovn-pinger's service account.
pub const APP_SA: &str = "kube-ovn-app";
/// The service account of ovn-central (its leader checker) and ovs-ovn.
pub const OVS_SA: &str = "ovn-ovs";

/// The user name kube-apiserver gives a service account's token.
pub fn user_of(service_account: &str) -> String {
    format!("system:serviceaccount:{NAMESPACE}:{service_account}")
}

/// The RBAC objects of a set of manifests.
#[derive(Debug, Default, Clone)]
pub struct Policy {
    /// ClusterRoles.
    pub cluster_roles: Vec<ClusterRole>,
    /// ClusterRoleBindings.
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    /// Roles.
    pub roles: Vec<Role>,
    /// RoleBindings.
    pub role_bindings: Vec<RoleBinding>,
}

impl Policy {
    /// Reads every RBAC object of the `*.yaml` files in `dir` (other kinds are skipped).
    pub fn read_dir(dir: &Path) -> Result<Policy> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        let mut policy = Policy::default();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
            policy
                .add_yaml(&text)
                .map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))?;
        }
        Ok(policy)
    }

    /// Adds the RBAC objects of a multi-document YAML text.
    pub fn add_yaml(&mut self, text: &str) -> std::result::Result<(), String> {
        for doc in serde_norway::Deserializer::from_str(text) {
            let value = serde_json::Value::deserialize(doc).map_err(|e| e.to_string())?;
            let kind = value
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or_default();
            match kind {
                "ClusterRole" => self.cluster_roles.push(parse(value)?),
                "ClusterRoleBinding" => self.cluster_role_bindings.push(parse(value)?),
                "Role" => self.roles.push(parse(value)?),
                "RoleBinding" => self.role_bindings.push(parse(value)?),
                _ => {}
            }
        }
        Ok(())
    }

    /// Every rule bound to the service account `kube-system/<name>`, with where it applies.
    /// A binding to a role that does not exist grants nothing, as in RBAC.
    pub fn grants_of(&self, service_account: &str) -> Vec<Grant> {
        let is_subject = |s: &Subject| {
            s.kind == "ServiceAccount"
                && s.name == service_account
                && s.namespace.as_deref() == Some(NAMESPACE)
        };
        let cluster_role = |name: &str| {
            self.cluster_roles
                .iter()
                .find(|r| r.metadata.name.as_deref() == Some(name))
        };
        let mut grants = Vec::new();
        for b in &self.cluster_role_bindings {
            if b.subjects.iter().flatten().any(is_subject) && b.role_ref.kind == "ClusterRole" {
                if let Some(role) = cluster_role(&b.role_ref.name) {
                    grants.extend(role.rules.iter().flatten().map(|r| Grant {
                        namespace: None,
                        rule: r.clone(),
                    }));
                }
            }
        }
        for b in &self.role_bindings {
            if !b.subjects.iter().flatten().any(is_subject) {
                continue;
            }
            let ns = b.metadata.namespace.clone().unwrap_or_default();
            let rules = match b.role_ref.kind.as_str() {
                "ClusterRole" => cluster_role(&b.role_ref.name).and_then(|r| r.rules.clone()),
                _ => self
                    .roles
                    .iter()
                    .find(|r| {
                        r.metadata.name.as_deref() == Some(&b.role_ref.name)
                            && r.metadata.namespace.as_deref() == Some(&ns)
                    })
                    .and_then(|r| r.rules.clone()),
            };
            grants.extend(rules.into_iter().flatten().map(|r| Grant {
                namespace: Some(ns.clone()),
                rule: r,
            }));
        }
        grants
    }

    /// An identity for the service account with a fresh random token.
    pub fn identity(&self, service_account: &str) -> Identity {
        Identity {
            token: uuid::Uuid::new_v4().simple().to_string(),
            user: user_of(service_account),
            grants: self.grants_of(service_account),
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> std::result::Result<T, String> {
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// A kubeconfig for `server` that authenticates with `token`.
pub fn kubeconfig_with_token(server: &str, user: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sandbox\n  cluster:\n    server: {server}\ncontexts:\n- name: {user}\n  context:\n    cluster: sandbox\n    user: {user}\ncurrent-context: {user}\nusers:\n- name: {user}\n  user:\n    token: {token}\n"
    )
}
