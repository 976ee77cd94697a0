//! Namespaces, ConfigMaps, Secrets, ServiceAccounts and Leases: small
//! printers that each add one or two summary columns to Name and Age.

use jiff::Timestamp;
use serde_json::Value;

use super::fields::{self, entries, items, or, text};
use super::Printer;
use crate::table::column::{Column, Row};
use crate::table::descriptions::{
    CONFIG_MAP_DATA, HOLDER_IDENTITY, SECRET_DATA, SECRET_TYPE, SERVICE_ACCOUNT_SECRETS,
};

/// The Namespace printer.
pub struct Namespaces;
/// The ConfigMap printer.
pub struct ConfigMaps;
/// The Secret printer.
pub struct Secrets;
/// The ServiceAccount printer.
pub struct ServiceAccounts;
/// The Lease printer.
pub struct Leases;

impl Printer for Namespaces {
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Status", "string", "The status of the namespace"),
            Column::age(),
        ]
    }

    fn row(&self, namespace: &Value, now: Timestamp) -> Row {
        Row::of(vec![
            fields::name(namespace),
            text(namespace, "/status/phase").into(),
            fields::age(namespace, now),
        ])
    }
}

impl Printer for ConfigMaps {
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Data", "string", CONFIG_MAP_DATA),
            Column::age(),
        ]
    }

    fn row(&self, config_map: &Value, now: Timestamp) -> Row {
        let keys = entries(config_map, "/data") + entries(config_map, "/binaryData");
        Row::of(vec![
            fields::name(config_map),
            keys.into(),
            fields::age(config_map, now),
        ])
    }
}

impl Printer for Secrets {
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Type", "string", SECRET_TYPE),
            Column::new("Data", "string", SECRET_DATA),
            Column::age(),
        ]
    }

    /// An untyped Secret is shown as `Opaque`, the type the real server defaults to.
    fn row(&self, secret: &Value, now: Timestamp) -> Row {
        Row::of(vec![
            fields::name(secret),
            or(text(secret, "/type"), "Opaque").into(),
            entries(secret, "/data").into(),
            fields::age(secret, now),
        ])
    }
}

impl Printer for ServiceAccounts {
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Secrets", "string", SERVICE_ACCOUNT_SECRETS),
            Column::age(),
        ]
    }

    fn row(&self, account: &Value, now: Timestamp) -> Row {
        Row::of(vec![
            fields::name(account),
            items(account, "/secrets").len().into(),
            fields::age(account, now),
        ])
    }
}

impl Printer for Leases {
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Holder", "string", HOLDER_IDENTITY),
            Column::age(),
        ]
    }

    fn row(&self, lease: &Value, now: Timestamp) -> Row {
        Row::of(vec![
            fields::name(lease),
            text(lease, "/spec/holderIdentity").into(),
            fields::age(lease, now),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cells(printer: &dyn Printer, object: Value) -> Vec<Value> {
        let now = "2024-05-01T12:00:00Z".parse().unwrap();
        let row = printer.row(&object, now);
        assert_eq!(
            row.cells.len(),
            printer.columns().len(),
            "one cell per column"
        );
        row.cells
    }

    #[test]
    fn namespace_shows_its_phase() {
        let ns = json!({"metadata": {"name": "kube-system", "creationTimestamp": "2024-05-01T11:59:30Z"},
            "status": {"phase": "Active"}});
        assert_eq!(
            cells(&Namespaces, ns),
            vec![json!("kube-system"), json!("Active"), json!("30s")]
        );
    }

    #[test]
    fn config_maps_and_secrets_count_their_keys() {
        let cm = json!({"data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(cells(&ConfigMaps, cm)[1], 3);
        let secret = json!({"data": {"token": "eA=="}});
        assert_eq!(&cells(&Secrets, secret)[1..3], &[json!("Opaque"), json!(1)]);
        let typed = json!({"type": "kubernetes.io/tls", "data": {}});
        assert_eq!(
            &cells(&Secrets, typed)[1..3],
            &[json!("kubernetes.io/tls"), json!(0)]
        );
    }

    #[test]
    fn service_accounts_and_leases() {
        let sa = json!({"secrets": [{"name": "a"}, {"name": "b"}]});
        assert_eq!(cells(&ServiceAccounts, sa)[1], 2);
        let lease = json!({"spec": {"holderIdentity": "kube-ovn-controller-0"}});
        assert_eq!(cells(&Leases, lease)[1], "kube-ovn-controller-0");
        assert_eq!(cells(&Leases, json!({}))[1], "");
    }
}
