//! Typed table models: the trait every generated table struct implements, and the conversions
//! the generated code uses between [`Datum`]s and plain Rust values.
//!
//! The replicated cache keeps raw [`Row`]s, because it must hold whatever the server sends,
//! including columns of a newer schema than the one this crate was built against. A [`Model`] is
//! a typed view over such a row: [`Model::from_row`] picks out the columns it knows and converts
//! them, [`Model::to_row`] turns the struct back into a row for inserts and updates.
//!
//! Decoding is deliberately lenient about the row's shape and strict about its values:
//!
//! * columns the model does not know (a newer server schema) are ignored;
//! * columns the row lacks (an older server schema, or a partial monitor) take the value OVSDB
//!   gives a new row: `0`, `0.0`, `false`, `""`, the nil UUID, the first (sorted) enum value,
//!   `None`, or an empty set or map (also for the few sets the schema requires to be non-empty,
//!   such as `Forwarding_Group.child_port`, which the caller must then fill);
//! * a column that is present but holds the wrong kind of value fails with a [`DatumError`]
//!   naming the table and column.
//!
//! Range and length constraints are not re-checked here: the schema-aware decoder
//! ([`Datum::from_json_typed`]) does that when a row arrives, and [`Datum::check`] before a row
//! is sent.
//!
//! Column types map to Rust types as follows: a scalar column of atomic type `T` is `T`
//! (integer `i64`, real `f64`, boolean `bool`, string `String`, uuid [`Uuid`]); an optional column
//! (`min 0, max 1`) is `Option<T>`; other sets are `BTreeSet<T>`, except sets of reals, which are
//! a sorted, deduplicated `Vec<f64>` (`f64` is not `Ord`); maps are `BTreeMap<K, V>`. A scalar or
//! optional string column whose schema lists its allowed values gets a generated Rust enum
//! (for example `nb::AclAction`); enum-constrained sets and map keys or values stay `String`.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::datum::{Atom, AtomSet, Datum, Row};
use crate::error::DatumError;
use crate::schema::DatabaseSchema;
use crate::schemas::ShippedSchema;

/// A typed row of one table of one database, generated from the shipped schemas
/// (see [`crate::models`]).
pub trait Model: Sized + Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static {
    /// The database the table belongs to, e.g. `"OVN_Northbound"`.
    const DATABASE: &'static str;
    /// The table's name in the schema, e.g. `"Logical_Switch_Port"`.
    const TABLE: &'static str;
    /// Every column the model reads and writes (the shipped schema's columns, without `_uuid`
    /// and `_version`), in schema (alphabetical) order. Useful to build monitor requests.
    const COLUMNS: &'static [&'static str];

    /// The row's UUID.
    fn uuid(&self) -> Uuid;

    /// Builds the typed view of a raw row. Unknown columns are ignored, missing columns take
    /// their schema default; a column of the wrong type is an error naming the column.
    fn from_row(uuid: Uuid, row: &Row) -> Result<Self, DatumError>;

    /// Converts the struct back into a raw row holding every column of [`Model::COLUMNS`]
    /// (never `_uuid`).
    fn to_row(&self) -> Row;
}

/// A Rust type that stands for one OVSDB atom. Implemented for the five atomic types and for the
/// generated enums.
pub trait AtomValue: Sized {
    /// Converts an atom, explaining the mismatch on failure.
    fn from_atom(atom: &Atom) -> Result<Self, String>;
    fn to_atom(&self) -> Atom;
}

fn mismatch(expected: &str, atom: &Atom) -> String {
    format!("expected {expected}, got {atom}")
}

impl AtomValue for i64 {
    fn from_atom(atom: &Atom) -> Result<Self, String> {
        atom.as_i64().ok_or_else(|| mismatch("an integer", atom))
    }
    fn to_atom(&self) -> Atom {
        Atom::Integer(*self)
    }
}

impl AtomValue for f64 {
    fn from_atom(atom: &Atom) -> Result<Self, String> {
        // An untyped decode turns integral reals into integers, so accept those too.
        atom.as_f64().ok_or_else(|| mismatch("a real", atom))
    }
    fn to_atom(&self) -> Atom {
        Atom::Real(*self)
    }
}

impl AtomValue for bool {
    fn from_atom(atom: &Atom) -> Result<Self, String> {
        atom.as_bool().ok_or_else(|| mismatch("a boolean", atom))
    }
    fn to_atom(&self) -> Atom {
        Atom::Boolean(*self)
    }
}

impl AtomValue for String {
    fn from_atom(atom: &Atom) -> Result<Self, String> {
        atom.as_str()
            .map(str::to_string)
            .ok_or_else(|| mismatch("a string", atom))
    }
    fn to_atom(&self) -> Atom {
        Atom::String(self.as_str().into())
    }
}

impl AtomValue for Uuid {
    fn from_atom(atom: &Atom) -> Result<Self, String> {
        atom.as_uuid().ok_or_else(|| mismatch("a uuid", atom))
    }
    fn to_atom(&self) -> Atom {
        Atom::Uuid(*self)
    }
}

fn column_error(table: &str, column: &str, msg: impl std::fmt::Display) -> DatumError {
    DatumError::new(format!("column {table}.{column}: {msg}"))
}

fn atom<T: AtomValue>(table: &str, column: &str, a: &Atom) -> Result<T, DatumError> {
    T::from_atom(a).map_err(|m| column_error(table, column, m))
}

fn set_of<'r>(row: &'r Row, table: &str, column: &str) -> Result<Option<&'r AtomSet>, DatumError> {
    match row.get(column) {
        None => Ok(None),
        Some(d) => d
            .as_set()
            .map(Some)
            .ok_or_else(|| column_error(table, column, format!("expected a set, got a map {d}"))),
    }
}

/// Reads a scalar column; a missing column gives `T::default()`.
pub fn get_scalar<T: AtomValue + Default>(
    row: &Row,
    table: &str,
    column: &str,
) -> Result<T, DatumError> {
    match set_of(row, table, column)? {
        None => Ok(T::default()),
        Some(s) if s.len() == 1 => atom(table, column, s.iter().next().expect("one element")),
        Some(s) => Err(column_error(
            table,
            column,
            format!("expected exactly one value, got {}", Datum::Set(s.clone())),
        )),
    }
}

/// Reads an optional (`min 0, max 1`) column; a missing column gives `None`.
pub fn get_optional<T: AtomValue>(
    row: &Row,
    table: &str,
    column: &str,
) -> Result<Option<T>, DatumError> {
    match set_of(row, table, column)? {
        None => Ok(None),
        Some(s) if s.len() <= 1 => s.iter().next().map(|a| atom(table, column, a)).transpose(),
        Some(s) => Err(column_error(
            table,
            column,
            format!("expected at most one value, got {}", Datum::Set(s.clone())),
        )),
    }
}

/// Reads a set column; a missing column gives an empty set.
pub fn get_set<T: AtomValue + Ord>(
    row: &Row,
    table: &str,
    column: &str,
) -> Result<BTreeSet<T>, DatumError> {
    match set_of(row, table, column)? {
        None => Ok(BTreeSet::new()),
        Some(s) => s.iter().map(|a| atom(table, column, a)).collect(),
    }
}

/// Reads a set of reals as a sorted, deduplicated vector; a missing column gives an empty one.
pub fn get_real_set(row: &Row, table: &str, column: &str) -> Result<Vec<f64>, DatumError> {
    let mut v = match set_of(row, table, column)? {
        None => Vec::new(),
        Some(s) => s
            .iter()
            .map(|a| atom::<f64>(table, column, a))
            .collect::<Result<Vec<_>, _>>()?,
    };
    normalize_reals(&mut v);
    Ok(v)
}

/// Reads a map column; a missing column gives an empty map.
pub fn get_map<K: AtomValue + Ord, V: AtomValue>(
    row: &Row,
    table: &str,
    column: &str,
) -> Result<BTreeMap<K, V>, DatumError> {
    let Some(d) = row.get(column) else {
        return Ok(BTreeMap::new());
    };
    let m = d
        .as_map()
        .ok_or_else(|| column_error(table, column, format!("expected a map, got {d}")))?;
    m.iter()
        .map(|(k, v)| Ok((atom(table, column, k)?, atom(table, column, v)?)))
        .collect()
}

fn normalize_reals(v: &mut Vec<f64>) {
    v.sort_by(f64::total_cmp);
    v.dedup_by(|a, b| a.total_cmp(b).is_eq());
}

/// The datum of a scalar column.
pub fn scalar_datum<T: AtomValue>(v: &T) -> Datum {
    Datum::Set(AtomSet::from([v.to_atom()]))
}

/// The datum of an optional column: an empty set for `None`.
pub fn optional_datum<T: AtomValue>(v: &Option<T>) -> Datum {
    Datum::Set(v.iter().map(AtomValue::to_atom).collect())
}

/// The datum of a set column.
pub fn set_datum<T: AtomValue>(v: &BTreeSet<T>) -> Datum {
    Datum::Set(v.iter().map(AtomValue::to_atom).collect())
}

/// The datum of a set-of-reals column (duplicates collapse, as in any OVSDB set).
pub fn real_set_datum(v: &[f64]) -> Datum {
    Datum::Set(v.iter().map(|r| Atom::Real(*r)).collect())
}

/// The datum of a map column.
pub fn map_datum<K: AtomValue, V: AtomValue>(v: &BTreeMap<K, V>) -> Datum {
    Datum::Map(v.iter().map(|(k, v)| (k.to_atom(), v.to_atom())).collect())
}

/// Converts the string atom of a generated enum column, with an error listing the allowed values.
pub fn enum_from_atom<T: std::str::FromStr<Err = DatumError>>(atom: &Atom) -> Result<T, String> {
    let s = atom.as_str().ok_or_else(|| mismatch("a string", atom))?;
    s.parse().map_err(|e: DatumError| e.0)
}

/// The error of a generated enum's `FromStr` for a value outside the schema's enumeration.
pub fn unknown_enum_value(type_name: &str, value: &str, allowed: &[&str]) -> DatumError {
    DatumError::new(format!(
        "unknown {type_name} value {value:?}, expected one of: {}",
        allowed.join(", ")
    ))
}

/// Parses a shipped schema. The shipped files are part of the crate and every one of them is
/// parsed by the `models` tests, so a failure here is a build defect, not a runtime condition.
pub fn parse_shipped(s: &ShippedSchema) -> DatabaseSchema {
    serde_json::from_str(s.json)
        .map_err(|e| e.to_string())
        .and_then(|v| DatabaseSchema::from_json(&v).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| panic!("shipped schema {} is invalid: {e}", s.name))
}

/// Something done once per model type of a database, e.g. registering every table with a cache
/// or checking every model against a server's schema. Each generated module has a
/// `visit_models` function that calls [`ModelVisitor::visit`] for each of its tables.
pub trait ModelVisitor {
    fn visit<M: Model>(&mut self);
}
