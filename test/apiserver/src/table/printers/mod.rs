//! Which columns each resource type gets, as the API server decides: built-in
//! kinds have hand-written printers (Kubernetes' `pkg/printers/internalversion`),
//! custom resources print their CRD's `additionalPrinterColumns`, and
//! everything else gets the generic `Name` / `Created At` table.
//!
//! The server always produces the wide form; kubectl hides priority > 0
//! columns unless asked for `-o wide`.

mod apps;
mod config;
mod custom;
mod default;
mod event;
mod fields;
mod labels;
mod network;
mod node;
mod pod;

use jiff::Timestamp;
use serde_json::Value;

use super::column::{Column, Row};
use crate::resources::ResourceType;

/// Turns objects of one resource type into table rows.
pub trait Printer {
    /// The column definitions, including wide-only ones.
    fn columns(&self) -> Vec<Column>;

    /// One row for `object`, with ages measured from `now`.
    fn row(&self, object: &Value, now: Timestamp) -> Row;

    /// The generic table renders an empty list's rows as `null` rather than `[]`.
    fn empty_rows_are_null(&self) -> bool {
        false
    }
}

/// The printer the real API server would use for `rt`.
pub fn for_type(rt: &ResourceType) -> Box<dyn Printer> {
    if rt.custom || !rt.printer_columns.is_empty() {
        return Box::new(custom::CustomColumns::new(&rt.printer_columns));
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "pods") => Box::new(pod::Pods),
        ("", "nodes") => Box::new(node::Nodes),
        ("", "namespaces") => Box::new(config::Namespaces),
        ("", "services") => Box::new(network::Services),
        ("", "endpoints") => Box::new(network::Endpoints),
        ("", "configmaps") => Box::new(config::ConfigMaps),
        ("", "secrets") => Box::new(config::Secrets),
        ("", "serviceaccounts") => Box::new(config::ServiceAccounts),
        ("", "events") => Box::new(event::Events),
        ("discovery.k8s.io", "endpointslices") => Box::new(network::EndpointSlices),
        ("networking.k8s.io", "networkpolicies") => Box::new(network::NetworkPolicies),
        ("coordination.k8s.io", "leases") => Box::new(config::Leases),
        ("apps", "deployments") => Box::new(apps::Deployments),
        ("apps", "replicasets") => Box::new(apps::ReplicaSets),
        ("apps", "statefulsets") => Box::new(apps::StatefulSets),
        ("apps", "daemonsets") => Box::new(apps::DaemonSets),
        _ => Box::new(default::NameAndCreation),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;

    fn headers(group: &str, version: &str, plural: &str) -> Vec<String> {
        let registry = Registry::default();
        let rt = registry.lookup(group, version, plural).unwrap();
        for_type(rt).columns().into_iter().map(|c| c.name).collect()
    }

    #[test]
    fn each_type_gets_the_real_servers_printer() {
        assert_eq!(
            headers("", "v1", "pods")[..5],
            ["Name", "Ready", "Status", "Restarts", "Age"]
        );
        assert_eq!(
            headers("", "v1", "serviceaccounts"),
            ["Name", "Secrets", "Age"]
        );
        assert_eq!(headers("", "v1", "events")[0], "Last Seen");
        assert_eq!(
            headers("apps", "v1", "deployments")[..5],
            ["Name", "Ready", "Up-to-date", "Available", "Age"]
        );
        assert_eq!(
            headers("apps", "v1", "replicasets")[..5],
            ["Name", "Desired", "Current", "Ready", "Age"]
        );
        assert_eq!(
            headers("apps", "v1", "statefulsets")[..3],
            ["Name", "Ready", "Age"]
        );
        assert_eq!(
            headers("coordination.k8s.io", "v1", "leases"),
            ["Name", "Holder", "Age"]
        );
        assert_eq!(
            headers("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
            ["Name", "Created At"]
        );
        assert_eq!(
            headers(
                "policy.networking.k8s.io",
                "v1alpha1",
                "adminnetworkpolicies"
            ),
            ["Name", "Priority", "Age"]
        );
        assert_eq!(
            headers(
                "policy.networking.k8s.io",
                "v1alpha1",
                "baselineadminnetworkpolicies"
            ),
            ["Name", "Age"]
        );
        assert_eq!(
            headers(
                "policy.networking.k8s.io",
                "v1alpha2",
                "clusternetworkpolicies"
            ),
            ["Name", "Tier", "Priority", "Age"]
        );
    }
}
