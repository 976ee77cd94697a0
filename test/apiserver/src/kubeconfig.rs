//! kubeconfig text pointing kubectl (or any client-go/kube-rs client) at a
//! fixture over plain HTTP without credentials.

/// A kubeconfig with a single `fixture` cluster/context/user for `server_url`.
pub fn kubeconfig_yaml(server_url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fixture
  cluster:
    server: {server_url}
contexts:
- name: fixture
  context:
    cluster: fixture
    user: fixture
    namespace: default
current-context: fixture
users:
- name: fixture
  user: {{}}
"
    )
}
