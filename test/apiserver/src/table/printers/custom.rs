//! Custom resources: a `Name` column followed by the CRD version's
//! `additionalPrinterColumns`, each a JSONPath into the object rendered by
//! its declared type. A CRD without columns gets a single `Age` column; one
//! whose column cannot be parsed keeps the columns before it, like the real
//! server's fallback.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::fields::{self, text};
use super::Printer;
use crate::table::age;
use crate::table::column::{Column, Row};
use crate::table::descriptions::CREATION_TIMESTAMP;
use crate::table::gofmt::{float_cell, GoNumber};
use crate::table::jsonpath::{print_result, JsonPath};

/// Printer for types described by `additionalPrinterColumns`.
pub struct CustomColumns {
    columns: Vec<(Column, JsonPath)>,
}

impl CustomColumns {
    /// Builds the printer from a CRD version's `additionalPrinterColumns`.
    pub fn new(printer_columns: &[Value]) -> Self {
        let age = [json!({
            "name": "Age",
            "type": "date",
            "description": CREATION_TIMESTAMP,
            "jsonPath": ".metadata.creationTimestamp",
        })];
        let definitions = if printer_columns.is_empty() {
            &age[..]
        } else {
            printer_columns
        };
        let columns = definitions
            .iter()
            .map_while(|definition| {
                let path = text(definition, "/jsonPath");
                let parsed = JsonPath::parse(path)
                    .inspect_err(|e| {
                        tracing::debug!("printer column jsonPath {path:?}: {e}; it and later columns are dropped")
                    })
                    .ok()?;
                let description = match text(definition, "/description") {
                    "" => format!("Custom resource definition column (in JSONPath format): {path}"),
                    given => given.into(),
                };
                let column = Column {
                    format: text(definition, "/format").into(),
                    priority: definition
                        .get("priority")
                        .and_then(Value::as_i64)
                        .unwrap_or(0),
                    ..Column::new(
                        text(definition, "/name"),
                        text(definition, "/type"),
                        &description,
                    )
                };
                Some((column, parsed))
            })
            .collect();
        Self { columns }
    }
}

/// A non-string cell: the value if it has the declared type, else empty.
fn typed_cell(kind: &str, value: &Value, now: Timestamp) -> Value {
    match (kind, value) {
        ("integer", Value::Number(n)) => match GoNumber::of(n) {
            GoNumber::Int(i) => i.into(),
            GoNumber::Float(f) => (f as i64).into(),
        },
        ("number", Value::Number(n)) => match GoNumber::of(n) {
            GoNumber::Int(i) => float_cell(i as f64),
            GoNumber::Float(f) => float_cell(f),
        },
        ("boolean", Value::Bool(b)) => (*b).into(),
        ("date", Value::String(s)) if s.is_empty() || s == "null" => "<unknown>".into(),
        ("date", Value::String(s)) => match age::parse(s) {
            Some(then) => age::ago(Some(then), now).into(),
            None => "<invalid>".into(),
        },
        _ => Value::Null,
    }
}

impl Printer for CustomColumns {
    fn columns(&self) -> Vec<Column> {
        std::iter::once(Column::name())
            .chain(self.columns.iter().map(|(column, _)| column.clone()))
            .collect()
    }

    fn row(&self, object: &Value, now: Timestamp) -> Row {
        let mut cells = vec![fields::name(object)];
        for (column, path) in &self.columns {
            let first = path
                .find(object)
                .ok()
                .and_then(|found| found.into_iter().next());
            cells.push(match first {
                None => Value::Null,
                Some(value) if column.kind == "string" => print_result(&value).into(),
                Some(value) => typed_cell(&column.kind, &value, now),
            });
        }
        Row::of(cells)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    /// The kube-ovn Subnet printer columns (a representative subset).
    fn subnet_columns() -> Vec<Value> {
        serde_json::from_value(json!([
            {"name": "Provider", "type": "string", "jsonPath": ".spec.provider"},
            {"name": "Protocol", "type": "string", "jsonPath": ".spec.protocol"},
            {"name": "CIDR", "type": "string", "jsonPath": ".spec.cidrBlock"},
            {"name": "Private", "type": "boolean", "jsonPath": ".spec.private"},
            {"name": "NAT", "type": "boolean", "jsonPath": ".spec.natOutgoing"},
            {"name": "V4Used", "type": "number", "jsonPath": ".status.v4usingIPs"},
            {"name": "V4Available", "type": "number", "jsonPath": ".status.v4availableIPs"},
            {"name": "ExcludeIPs", "type": "string", "jsonPath": ".spec.excludeIps", "priority": 1,
             "description": "IPs never allocated"},
        ]))
        .unwrap()
    }

    #[test]
    fn subnet_columns_render_by_type() {
        let printer = CustomColumns::new(&subnet_columns());
        let subnet = json!({
            "metadata": {"name": "ovn-default"},
            "spec": {"provider": "ovn", "protocol": "IPv4", "cidrBlock": "10.16.0.0/16",
                     "private": false, "natOutgoing": true, "excludeIps": ["10.16.0.1"]},
            "status": {"v4usingIPs": 3, "v4availableIPs": 65530.0},
        });
        assert_eq!(
            printer.row(&subnet, now()).cells,
            vec![
                json!("ovn-default"),
                json!("ovn"),
                json!("IPv4"),
                json!("10.16.0.0/16"),
                json!(false),
                json!(true),
                json!(3),
                json!(65530),
                json!("[\"10.16.0.1\"]"),
            ]
        );
        let columns = printer.columns();
        assert_eq!(columns[0].format, "name");
        assert_eq!(
            columns[1].description,
            "Custom resource definition column (in JSONPath format): .spec.provider"
        );
        assert_eq!(
            (columns[8].priority, columns[8].description.as_str()),
            (1, "IPs never allocated")
        );
    }

    #[test]
    fn missing_and_mistyped_values_are_empty() {
        let printer = CustomColumns::new(&subnet_columns());
        let cells = printer
            .row(&json!({"spec": {"private": "yes", "cidrBlock": 5}}), now())
            .cells;
        assert_eq!(cells[1], Value::Null, "missing string");
        assert_eq!(cells[3], "5", "a number in a string column prints as text");
        assert_eq!(cells[4], Value::Null, "a string in a boolean column");
    }

    #[test]
    fn integer_and_date_columns() {
        assert_eq!(typed_cell("integer", &json!(2.9), now()), json!(2));
        assert_eq!(typed_cell("integer", &json!("2"), now()), Value::Null);
        assert_eq!(
            typed_cell("date", &json!("2024-05-01T11:00:00Z"), now()),
            json!("60m")
        );
        assert_eq!(typed_cell("date", &json!(""), now()), json!("<unknown>"));
        assert_eq!(
            typed_cell("date", &json!("yesterday"), now()),
            json!("<invalid>")
        );
        assert_eq!(typed_cell("array", &json!([1]), now()), Value::Null);
    }

    #[test]
    fn no_columns_means_age_and_a_bad_path_truncates() {
        let plain = CustomColumns::new(&[]);
        let names: Vec<String> = plain.columns().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["Name", "Age"]);
        let object =
            json!({"metadata": {"name": "x", "creationTimestamp": "2024-05-01T11:59:00Z"}});
        assert_eq!(
            plain.row(&object, now()).cells,
            vec![json!("x"), json!("60s")]
        );

        let broken = CustomColumns::new(&[
            json!({"name": "A", "type": "string", "jsonPath": ".a"}),
            json!({"name": "B", "type": "string", "jsonPath": ".b[x]"}),
            json!({"name": "C", "type": "string", "jsonPath": ".c"}),
        ]);
        let names: Vec<String> = broken.columns().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["Name", "A"]);
    }
}
