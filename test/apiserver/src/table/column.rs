//! The two halves of a `meta.k8s.io` Table: column definitions (what kubectl
//! turns into headers, hiding priority > 0 unless `-o wide`) and rows of cells.

use serde_json::{json, Value};

use super::descriptions::{CREATION_TIMESTAMP, NAME};

/// One `TableColumnDefinition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Header text; kubectl upper-cases it.
    pub name: String,
    /// OpenAPI type of the cells (`string`, `integer`, `number`, `boolean`, `date`).
    pub kind: String,
    /// OpenAPI format; `name` marks the column that identifies the row.
    pub format: String,
    /// Human-readable explanation, as the API documents the field.
    pub description: String,
    /// 0 for default output, higher for `-o wide` only.
    pub priority: i64,
}

impl Column {
    /// A priority-0 column without a format.
    pub fn new(name: &str, kind: &str, description: &str) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
            format: String::new(),
            description: description.into(),
            priority: 0,
        }
    }

    /// The `Name` column every printer starts with.
    pub fn name() -> Self {
        Self {
            format: "name".into(),
            ..Self::new("Name", "string", NAME)
        }
    }

    /// The `Age` column of the built-in printers (a pre-rendered string).
    pub fn age() -> Self {
        Self::new("Age", "string", CREATION_TIMESTAMP)
    }

    /// Marks the column as shown only with `-o wide`.
    pub fn wide(self) -> Self {
        Self {
            priority: 1,
            ..self
        }
    }

    /// The definition as it appears in `columnDefinitions`.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.kind,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// The printed form of one object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// One cell per column; `null` (a missing value) prints as an empty cell.
    pub cells: Vec<Value>,
    /// `TableRowCondition`s, e.g. `Completed` for pods that have finished.
    pub conditions: Vec<Value>,
}

impl Row {
    /// A row of the given cells and no conditions.
    pub fn of(cells: Vec<Value>) -> Self {
        Self {
            cells,
            conditions: Vec::new(),
        }
    }
}
