//! The generic table the API server uses for types without a printer:
//! `Name` and `Created At` (an RFC 3339 timestamp, not an age). kubectl shows
//! it for CustomResourceDefinitions, for instance.

use jiff::Timestamp;
use serde_json::Value;

use super::fields;
use super::Printer;
use crate::table::age;
use crate::table::column::{Column, Row};
use crate::table::descriptions::CREATION_TIMESTAMP;

/// Name and creation time.
pub struct NameAndCreation;

impl Printer for NameAndCreation {
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Created At", "date", CREATION_TIMESTAMP),
        ]
    }

    fn row(&self, object: &Value, _now: Timestamp) -> Row {
        Row::of(vec![
            fields::name(object),
            age::rfc3339_utc(object.pointer("/metadata/creationTimestamp")).into(),
        ])
    }

    fn empty_rows_are_null(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn created_at_is_an_absolute_utc_time() {
        let crd = json!({"metadata": {"name": "subnets.kubeovn.io",
            "creationTimestamp": "2024-05-01T14:00:00+02:00"}});
        let row = NameAndCreation.row(&crd, Timestamp::UNIX_EPOCH);
        assert_eq!(
            row.cells,
            vec![json!("subnets.kubeovn.io"), json!("2024-05-01T12:00:00Z")]
        );
        assert_eq!(NameAndCreation.columns()[1].kind, "date");
    }
}
