//! Database schemas (RFC 7047 §3.2): parsed from `get_schema` or the `.ovsschema` files we ship,
//! used to decode and validate datums and to check that a server is compatible with our models.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::datum::{Atom, Datum};
use crate::error::{DatumError, SchemaError};

/// The five OVSDB atomic types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AtomicType {
    Integer,
    Real,
    Boolean,
    String,
    Uuid,
}

impl AtomicType {
    pub fn parse(s: &str) -> Option<AtomicType> {
        Some(match s {
            "integer" => AtomicType::Integer,
            "real" => AtomicType::Real,
            "boolean" => AtomicType::Boolean,
            "string" => AtomicType::String,
            "uuid" => AtomicType::Uuid,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AtomicType::Integer => "integer",
            AtomicType::Real => "real",
            AtomicType::Boolean => "boolean",
            AtomicType::String => "string",
            AtomicType::Uuid => "uuid",
        }
    }
}

/// Whether a reference keeps its target alive (strong) or is dropped when the target goes (weak).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefType {
    Strong,
    Weak,
}

/// A key or value type with its constraints.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseType {
    pub atomic: AtomicType,
    pub enumeration: Option<BTreeSet<Atom>>,
    pub min_integer: Option<i64>,
    pub max_integer: Option<i64>,
    pub min_real: Option<f64>,
    pub max_real: Option<f64>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub ref_table: Option<String>,
    pub ref_type: RefType,
}

impl BaseType {
    pub fn new(atomic: AtomicType) -> BaseType {
        BaseType {
            atomic,
            enumeration: None,
            min_integer: None,
            max_integer: None,
            min_real: None,
            max_real: None,
            min_length: None,
            max_length: None,
            ref_table: None,
            ref_type: RefType::Strong,
        }
    }

    pub fn from_json(v: &Value) -> Result<BaseType, SchemaError> {
        if let Some(s) = v.as_str() {
            return AtomicType::parse(s)
                .map(BaseType::new)
                .ok_or_else(|| SchemaError::new(format!("unknown atomic type {s:?}")));
        }
        let o = v
            .as_object()
            .ok_or_else(|| SchemaError::new(format!("bad base type {v}")))?;
        let atomic = o
            .get("type")
            .and_then(Value::as_str)
            .and_then(AtomicType::parse)
            .ok_or_else(|| SchemaError::new(format!("base type without valid \"type\": {v}")))?;
        let mut b = BaseType::new(atomic);
        if let Some(e) = o.get("enum") {
            let d = Datum::from_json(e).map_err(|e| SchemaError::new(format!("bad enum: {e}")))?;
            let set = d
                .as_set()
                .ok_or_else(|| SchemaError::new("enum must be a set"))?;
            // Integral enum members of a real type are reals.
            let set = set
                .iter()
                .map(|a| match (atomic, a) {
                    (AtomicType::Real, Atom::Integer(i)) => Atom::Real(*i as f64),
                    _ => a.clone(),
                })
                .collect();
            b.enumeration = Some(set);
        }
        b.min_integer = o.get("minInteger").and_then(Value::as_i64);
        b.max_integer = o.get("maxInteger").and_then(Value::as_i64);
        b.min_real = o.get("minReal").and_then(Value::as_f64);
        b.max_real = o.get("maxReal").and_then(Value::as_f64);
        b.min_length = o.get("minLength").and_then(Value::as_u64);
        b.max_length = o.get("maxLength").and_then(Value::as_u64);
        b.ref_table = o
            .get("refTable")
            .and_then(Value::as_str)
            .map(str::to_string);
        if o.get("refType").and_then(Value::as_str) == Some("weak") {
            b.ref_type = RefType::Weak;
        }
        Ok(b)
    }

    /// Checks only that the atom has this type (named UUIDs pass as UUIDs).
    pub fn check_type(&self, a: &Atom) -> Result<(), DatumError> {
        if a.atomic_type() == self.atomic {
            self.check(a)
        } else {
            Err(DatumError::new(format!(
                "{a} is not of type {}",
                self.atomic.as_str()
            )))
        }
    }

    /// Checks the atom against the enum and range/length constraints.
    pub fn check(&self, a: &Atom) -> Result<(), DatumError> {
        if let Some(e) = &self.enumeration {
            if !e.contains(a) {
                return Err(DatumError::new(format!(
                    "{a} is not one of the allowed values {}",
                    Datum::Set(e.iter().cloned().collect())
                )));
            }
        }
        let out_of = |lo: Option<bool>, hi: Option<bool>| lo == Some(true) || hi == Some(true);
        match a {
            Atom::Integer(i)
                if out_of(
                    self.min_integer.map(|m| *i < m),
                    self.max_integer.map(|m| *i > m),
                ) =>
            {
                return Err(DatumError::new(format!(
                    "{i} is outside [{}, {}]",
                    self.min_integer.unwrap_or(i64::MIN),
                    self.max_integer.unwrap_or(i64::MAX)
                )));
            }
            Atom::Real(r) if !r.is_finite() => {
                return Err(DatumError::new(format!("{r} is not a finite real")));
            }
            Atom::Real(r)
                if out_of(self.min_real.map(|m| *r < m), self.max_real.map(|m| *r > m)) =>
            {
                return Err(DatumError::new(format!("{r} is outside the allowed range")));
            }
            Atom::String(s) => {
                let n = s.chars().count() as u64;
                if out_of(
                    self.min_length.map(|m| n < m),
                    self.max_length.map(|m| n > m),
                ) {
                    return Err(DatumError::new(format!(
                        "string {s:?} has length {n}, outside the allowed range"
                    )));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// A column type: key, optional value (maps), and the number of elements allowed.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnType {
    pub key: BaseType,
    pub value: Option<BaseType>,
    pub min: u64,
    /// `None` means "unlimited".
    pub max: Option<u64>,
}

impl ColumnType {
    pub fn from_json(v: &Value) -> Result<ColumnType, SchemaError> {
        if v.is_string() {
            return Ok(ColumnType {
                key: BaseType::from_json(v)?,
                value: None,
                min: 1,
                max: Some(1),
            });
        }
        let o = v
            .as_object()
            .ok_or_else(|| SchemaError::new(format!("bad column type {v}")))?;
        let key = BaseType::from_json(
            o.get("key")
                .ok_or_else(|| SchemaError::new(format!("column type without key: {v}")))?,
        )?;
        let value = o.get("value").map(BaseType::from_json).transpose()?;
        let min = match o.get("min") {
            None => 1,
            Some(m) => m
                .as_u64()
                .filter(|m| *m <= 1)
                .ok_or_else(|| SchemaError::new(format!("bad min in {v}")))?,
        };
        let max = match o.get("max") {
            None => Some(1),
            Some(Value::String(s)) if s == "unlimited" => None,
            Some(m) => Some(
                m.as_u64()
                    .filter(|m| *m >= 1)
                    .ok_or_else(|| SchemaError::new(format!("bad max in {v}")))?,
            ),
        };
        if max.is_some_and(|m| m < min) {
            return Err(SchemaError::new(format!("max < min in {v}")));
        }
        Ok(ColumnType {
            key,
            value,
            min,
            max,
        })
    }

    pub fn is_map(&self) -> bool {
        self.value.is_some()
    }

    /// A scalar column holds exactly one atom.
    pub fn is_scalar(&self) -> bool {
        self.value.is_none() && self.min == 1 && self.max == Some(1)
    }

    /// An optional column holds zero or one atom.
    pub fn is_optional(&self) -> bool {
        self.value.is_none() && self.min == 0 && self.max == Some(1)
    }

    pub fn check_size(&self, n: usize) -> Result<(), DatumError> {
        let n = n as u64;
        if n < self.min || self.max.is_some_and(|m| n > m) {
            return Err(DatumError::new(format!(
                "{n} elements where {}..{} are allowed",
                self.min,
                self.max.map_or("unlimited".to_string(), |m| m.to_string())
            )));
        }
        Ok(())
    }

    /// The value a new row gets for a column the insert does not name.
    pub fn default_datum(&self) -> Datum {
        if self.is_map() {
            return Datum::empty_map();
        }
        if self.min == 0 {
            return Datum::empty_set();
        }
        if let Some(e) = self.key.enumeration.as_ref().and_then(|e| e.iter().next()) {
            return Datum::scalar(e.clone());
        }
        Datum::scalar(match self.key.atomic {
            AtomicType::Integer => Atom::Integer(0),
            AtomicType::Real => Atom::Real(0.0),
            AtomicType::Boolean => Atom::Boolean(false),
            AtomicType::String => Atom::String("".into()),
            AtomicType::Uuid => Atom::Uuid(uuid::Uuid::nil()),
        })
    }

    /// True when a server column of type `server` can hold every value we would write or read
    /// with this type: same atomic types, compatible maps/sets.
    pub fn compatible_with(&self, server: &ColumnType) -> bool {
        self.key.atomic == server.key.atomic
            && self.value.as_ref().map(|v| v.atomic) == server.value.as_ref().map(|v| v.atomic)
            && (self.is_scalar() == server.is_scalar() || !server.is_scalar())
    }
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSchema {
    /// The column's interned name: rows decoded against the schema use it as their key.
    pub name: crate::datum::Column,
    pub ty: ColumnType,
    pub ephemeral: bool,
    pub mutable: bool,
}

/// One table of a database.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    pub columns: BTreeMap<String, ColumnSchema>,
    pub max_rows: Option<u64>,
    pub is_root: bool,
    pub indexes: Vec<Vec<String>>,
}

impl TableSchema {
    pub fn column(&self, name: &str) -> Option<&ColumnSchema> {
        self.columns.get(name)
    }
}

/// A whole database schema.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseSchema {
    pub name: String,
    pub version: String,
    pub cksum: Option<String>,
    pub tables: BTreeMap<String, TableSchema>,
}

impl DatabaseSchema {
    pub fn from_json(v: &Value) -> Result<DatabaseSchema, SchemaError> {
        let o = v
            .as_object()
            .ok_or_else(|| SchemaError::new("schema is not an object"))?;
        let name = o
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| SchemaError::new("schema without name"))?
            .to_string();
        let version = o
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let cksum = o.get("cksum").and_then(Value::as_str).map(str::to_string);
        let mut tables = BTreeMap::new();
        for (tname, t) in o
            .get("tables")
            .and_then(Value::as_object)
            .ok_or_else(|| SchemaError::new("schema without tables"))?
        {
            let err = |m: String| SchemaError::new(format!("table {tname}: {m}"));
            let mut columns = BTreeMap::new();
            for (cname, c) in t
                .get("columns")
                .and_then(Value::as_object)
                .ok_or_else(|| err("no columns".into()))?
            {
                let ty = ColumnType::from_json(
                    c.get("type")
                        .ok_or_else(|| err(format!("column {cname} has no type")))?,
                )
                .map_err(|e| err(format!("column {cname}: {e}")))?;
                let name = crate::datum::column(cname).ok_or_else(|| {
                    err(format!(
                        "more than {} distinct column names",
                        crate::datum::MAX_COLUMNS
                    ))
                })?;
                columns.insert(
                    cname.clone(),
                    ColumnSchema {
                        name,
                        ty,
                        ephemeral: c.get("ephemeral").and_then(Value::as_bool).unwrap_or(false),
                        mutable: c.get("mutable").and_then(Value::as_bool).unwrap_or(true),
                    },
                );
            }
            let indexes = t
                .get("indexes")
                .and_then(Value::as_array)
                .map(|ix| {
                    ix.iter()
                        .filter_map(Value::as_array)
                        .map(|cols| {
                            cols.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .collect()
                })
                .unwrap_or_default();
            tables.insert(
                tname.clone(),
                TableSchema {
                    columns,
                    max_rows: t.get("maxRows").and_then(Value::as_u64),
                    is_root: t.get("isRoot").and_then(Value::as_bool).unwrap_or(false),
                    indexes,
                },
            );
        }
        Ok(DatabaseSchema {
            name,
            version,
            cksum,
            tables,
        })
    }

    pub fn parse_str(s: &str) -> Result<DatabaseSchema, SchemaError> {
        let v: Value = serde_json::from_str(s).map_err(|e| SchemaError::new(e.to_string()))?;
        Self::from_json(&v)
    }

    pub fn table(&self, name: &str) -> Option<&TableSchema> {
        self.tables.get(name)
    }

    /// Lists every way the server's schema cannot serve a client built for `self`: missing
    /// tables or columns and changed types. Extra server tables and columns are fine.
    pub fn incompatibilities(&self, server: &DatabaseSchema) -> Vec<String> {
        let mut out = Vec::new();
        if self.name != server.name {
            out.push(format!(
                "database is {:?}, expected {:?}",
                server.name, self.name
            ));
            return out;
        }
        for (tname, t) in &self.tables {
            let Some(st) = server.tables.get(tname) else {
                out.push(format!("table {tname} is missing"));
                continue;
            };
            for (cname, c) in &t.columns {
                match st.columns.get(cname) {
                    None => out.push(format!("column {tname}.{cname} is missing")),
                    Some(sc) if !c.ty.compatible_with(&sc.ty) => {
                        out.push(format!("column {tname}.{cname} has an incompatible type"))
                    }
                    Some(_) => {}
                }
            }
        }
        out
    }

    /// Compares `major.minor.patch` versions; unparsable parts count as zero.
    pub fn version_tuple(&self) -> (u64, u64, u64) {
        let mut it = self
            .version
            .split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0));
        (
            it.next().unwrap_or(0),
            it.next().unwrap_or(0),
            it.next().unwrap_or(0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_shipped_schemas() {
        for s in crate::schemas::ALL {
            let db = DatabaseSchema::parse_str(s.json).unwrap();
            assert_eq!(db.name, s.name);
            assert!(db.tables.len() > 3);
            assert!(db.incompatibilities(&db).is_empty());
        }
    }

    #[test]
    fn reports_missing_and_changed_columns() {
        let ours = DatabaseSchema::parse_str(crate::schemas::OVN_NORTHBOUND.json).unwrap();
        let mut theirs = ours.clone();
        theirs
            .tables
            .get_mut("Logical_Switch")
            .unwrap()
            .columns
            .remove("ports");
        theirs
            .tables
            .get_mut("ACL")
            .unwrap()
            .columns
            .get_mut("priority")
            .unwrap()
            .ty
            .key
            .atomic = AtomicType::String;
        theirs.tables.remove("Meter");
        let problems = ours.incompatibilities(&theirs);
        assert!(problems.iter().any(|p| p.contains("Logical_Switch.ports")));
        assert!(problems.iter().any(|p| p.contains("ACL.priority")));
        assert!(problems.iter().any(|p| p.contains("table Meter")));
        // A newer server that only adds things is compatible.
        let mut newer = ours.clone();
        newer
            .tables
            .get_mut("Logical_Switch")
            .unwrap()
            .columns
            .insert("future".into(), ours.tables["ACL"].columns["name"].clone());
        assert!(ours.incompatibilities(&newer).is_empty());
    }
}
