//! Transaction operations (RFC 7047 §5.2) and a builder that batches them into one `transact`,
//! with named-UUID references between new rows and typed errors for the failing operation.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::datum::{Datum, Row};
use crate::error::{Error, Result, TxnError};

/// A `where` clause: `column function value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub column: String,
    pub function: &'static str,
    pub value: Datum,
}

impl Condition {
    fn new(column: &str, function: &'static str, value: impl Into<Datum>) -> Condition {
        Condition {
            column: column.to_string(),
            function,
            value: value.into(),
        }
    }
    pub fn eq(column: &str, value: impl Into<Datum>) -> Condition {
        Self::new(column, "==", value)
    }
    pub fn ne(column: &str, value: impl Into<Datum>) -> Condition {
        Self::new(column, "!=", value)
    }
    pub fn includes(column: &str, value: impl Into<Datum>) -> Condition {
        Self::new(column, "includes", value)
    }
    pub fn excludes(column: &str, value: impl Into<Datum>) -> Condition {
        Self::new(column, "excludes", value)
    }
    pub fn lt(column: &str, value: impl Into<Datum>) -> Condition {
        Self::new(column, "<", value)
    }
    pub fn ge(column: &str, value: impl Into<Datum>) -> Condition {
        Self::new(column, ">=", value)
    }
    /// Matches the row with this UUID.
    pub fn uuid(u: Uuid) -> Condition {
        Self::new("_uuid", "==", u)
    }
    pub fn to_json(&self) -> Value {
        json!([self.column, self.function, self.value.to_json()])
    }
}

/// A `mutate` mutation: `column mutator value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub column: String,
    pub mutator: &'static str,
    pub value: Datum,
}

impl Mutation {
    fn new(column: &str, mutator: &'static str, value: impl Into<Datum>) -> Mutation {
        Mutation {
            column: column.to_string(),
            mutator,
            value: value.into(),
        }
    }
    /// Adds set members or map pairs.
    pub fn insert(column: &str, value: impl Into<Datum>) -> Mutation {
        Self::new(column, "insert", value)
    }
    /// Removes set members, map pairs, or (with a set of keys) map keys.
    pub fn delete(column: &str, value: impl Into<Datum>) -> Mutation {
        Self::new(column, "delete", value)
    }
    pub fn add(column: &str, value: impl Into<Datum>) -> Mutation {
        Self::new(column, "+=", value)
    }
    pub fn sub(column: &str, value: impl Into<Datum>) -> Mutation {
        Self::new(column, "-=", value)
    }
    pub fn mul(column: &str, value: impl Into<Datum>) -> Mutation {
        Self::new(column, "*=", value)
    }
    pub fn div(column: &str, value: impl Into<Datum>) -> Mutation {
        Self::new(column, "/=", value)
    }
    pub fn rem(column: &str, value: impl Into<Datum>) -> Mutation {
        Self::new(column, "%=", value)
    }
    pub fn to_json(&self) -> Value {
        json!([self.column, self.mutator, self.value.to_json()])
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Insert {
        table: String,
        row: Row,
        uuid_name: Option<String>,
    },
    Select {
        table: String,
        conditions: Vec<Condition>,
        columns: Option<Vec<String>>,
    },
    Update {
        table: String,
        conditions: Vec<Condition>,
        row: Row,
    },
    Mutate {
        table: String,
        conditions: Vec<Condition>,
        mutations: Vec<Mutation>,
    },
    Delete {
        table: String,
        conditions: Vec<Condition>,
    },
    /// Fails the transaction unless, within `timeout`, the selected rows' `columns` equal
    /// (`until_equal`) or differ from `rows`: the optimistic-concurrency guard.
    Wait {
        table: String,
        conditions: Vec<Condition>,
        columns: Vec<String>,
        until_equal: bool,
        rows: Vec<Row>,
        timeout: Option<Duration>,
    },
    Commit {
        durable: bool,
    },
    Abort,
    Comment(String),
    Assert {
        lock: String,
    },
}

fn row_json(row: &Row) -> Value {
    Value::Object(
        row.iter()
            .map(|(k, v)| (k.to_string(), v.to_json()))
            .collect::<Map<_, _>>(),
    )
}

fn conds_json(c: &[Condition]) -> Value {
    Value::Array(c.iter().map(Condition::to_json).collect())
}

impl Operation {
    pub fn to_json(&self) -> Value {
        match self {
            Operation::Insert {
                table,
                row,
                uuid_name,
            } => {
                let mut o = json!({"op": "insert", "table": table, "row": row_json(row)});
                if let Some(n) = uuid_name {
                    o["uuid-name"] = json!(n);
                }
                o
            }
            Operation::Select {
                table,
                conditions,
                columns,
            } => {
                let mut o =
                    json!({"op": "select", "table": table, "where": conds_json(conditions)});
                if let Some(c) = columns {
                    o["columns"] = json!(c);
                }
                o
            }
            Operation::Update {
                table,
                conditions,
                row,
            } => {
                json!({"op": "update", "table": table, "where": conds_json(conditions), "row": row_json(row)})
            }
            Operation::Mutate {
                table,
                conditions,
                mutations,
            } => json!({"op": "mutate", "table": table, "where": conds_json(conditions),
                "mutations": mutations.iter().map(Mutation::to_json).collect::<Vec<_>>()}),
            Operation::Delete { table, conditions } => {
                json!({"op": "delete", "table": table, "where": conds_json(conditions)})
            }
            Operation::Wait {
                table,
                conditions,
                columns,
                until_equal,
                rows,
                timeout,
            } => {
                let mut o = json!({"op": "wait", "table": table, "where": conds_json(conditions),
                    "columns": columns, "until": if *until_equal { "==" } else { "!=" },
                    "rows": rows.iter().map(row_json).collect::<Vec<_>>()});
                if let Some(t) = timeout {
                    o["timeout"] = json!(t.as_millis() as u64);
                }
                o
            }
            Operation::Commit { durable } => json!({"op": "commit", "durable": durable}),
            Operation::Abort => json!({"op": "abort"}),
            Operation::Comment(c) => json!({"op": "comment", "comment": c}),
            Operation::Assert { lock } => json!({"op": "assert", "lock": lock}),
        }
    }
}

/// The reply to one successful operation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OpResult {
    /// The new row's UUID, for inserts.
    pub uuid: Option<Uuid>,
    /// Rows touched, for update/mutate/delete.
    pub count: Option<u64>,
    /// Selected rows, untyped (decode them with the table's schema or a model).
    pub rows: Option<Vec<Value>>,
}

impl OpResult {
    fn from_json(v: &Value) -> OpResult {
        OpResult {
            uuid: v
                .get("uuid")
                .and_then(|u| u.get(1))
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok()),
            count: v.get("count").and_then(Value::as_u64),
            rows: v.get("rows").and_then(Value::as_array).cloned(),
        }
    }
}

/// A batch of operations on one database, executed atomically by one `transact`.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub db: String,
    pub ops: Vec<Operation>,
    next_name: u64,
}

impl Transaction {
    pub fn new(db: impl Into<String>) -> Transaction {
        Transaction {
            db: db.into(),
            ops: Vec::new(),
            next_name: 0,
        }
    }

    pub fn push(&mut self, op: Operation) -> &mut Self {
        self.ops.push(op);
        self
    }

    /// Inserts a row and returns its named UUID, to reference it from later operations of this
    /// transaction (`Datum::scalar(Atom::NamedUuid(name))`).
    pub fn insert(&mut self, table: &str, row: Row) -> String {
        let name = format!("row{}", self.next_name);
        self.next_name += 1;
        self.ops.push(Operation::Insert {
            table: table.to_string(),
            row,
            uuid_name: Some(name.clone()),
        });
        name
    }

    pub fn update(&mut self, table: &str, conditions: Vec<Condition>, row: Row) -> &mut Self {
        self.push(Operation::Update {
            table: table.to_string(),
            conditions,
            row,
        })
    }

    pub fn mutate(
        &mut self,
        table: &str,
        conditions: Vec<Condition>,
        mutations: Vec<Mutation>,
    ) -> &mut Self {
        self.push(Operation::Mutate {
            table: table.to_string(),
            conditions,
            mutations,
        })
    }

    pub fn delete(&mut self, table: &str, conditions: Vec<Condition>) -> &mut Self {
        self.push(Operation::Delete {
            table: table.to_string(),
            conditions,
        })
    }

    pub fn select(&mut self, table: &str, conditions: Vec<Condition>) -> &mut Self {
        self.push(Operation::Select {
            table: table.to_string(),
            conditions,
            columns: None,
        })
    }

    /// Guards the transaction: it fails unless no row matches `conditions` (e.g. "no switch with
    /// this name exists yet"), so concurrent writers cannot both create the same object.
    pub fn wait_absent(&mut self, table: &str, conditions: Vec<Condition>) -> &mut Self {
        self.push(Operation::Wait {
            table: table.to_string(),
            conditions,
            columns: vec!["_uuid".into()],
            until_equal: true,
            rows: Vec::new(),
            timeout: Some(Duration::ZERO),
        })
    }

    pub fn comment(&mut self, c: impl Into<String>) -> &mut Self {
        self.push(Operation::Comment(c.into()))
    }

    /// The `transact` params: `[db, op...]`.
    pub fn to_params(&self) -> Value {
        let mut p = vec![json!(self.db)];
        p.extend(self.ops.iter().map(Operation::to_json));
        Value::Array(p)
    }

    /// Interprets the server's reply: every result on success, else the first error with the
    /// index of the operation that caused it (none for a commit-time failure).
    pub fn parse_reply(&self, reply: &Value) -> Result<TxnOutcome> {
        let results = reply
            .as_array()
            .ok_or_else(|| Error::Protocol(format!("transact reply is not an array: {reply}")))?;
        for (i, r) in results.iter().enumerate() {
            if r.get("error").is_some_and(|e| !e.is_null()) {
                let idx = (i < self.ops.len()).then_some(i);
                return Err(TxnError::from_json(r, idx).into());
            }
        }
        if results.len() < self.ops.len() {
            return Err(Error::Protocol(format!(
                "transact reply has {} results for {} operations",
                results.len(),
                self.ops.len()
            )));
        }
        let mut named = HashMap::new();
        let results: Vec<OpResult> = results.iter().map(OpResult::from_json).collect();
        for (op, r) in self.ops.iter().zip(&results) {
            if let (
                Operation::Insert {
                    uuid_name: Some(n), ..
                },
                Some(u),
            ) = (op, r.uuid)
            {
                named.insert(n.clone(), u);
            }
        }
        Ok(TxnOutcome { results, named })
    }
}

/// A committed transaction's results.
#[derive(Debug, Clone, Default)]
pub struct TxnOutcome {
    pub results: Vec<OpResult>,
    /// Real UUIDs of the rows inserted under named UUIDs.
    pub named: HashMap<String, Uuid>,
}
