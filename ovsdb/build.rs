//! Generates the typed models of `src/models.rs` from the shipped `.ovsschema` files.
//!
//! A build script cannot use the crate it builds, so this parses only the subset of the schema
//! format the generator needs (column names, key/value atomic types, min/max, string enums).
//! The naming rules are documented on `src/models.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

/// (schema file, generated file stem, path of the `ShippedSchema` const).
const SCHEMAS: [(&str, &str, &str); 5] = [
    ("ovn-nb.ovsschema", "nb", "OVN_NORTHBOUND"),
    ("ovn-sb.ovsschema", "sb", "OVN_SOUTHBOUND"),
    ("ovn-ic-nb.ovsschema", "ic_nb", "OVN_IC_NORTHBOUND"),
    ("ovn-ic-sb.ovsschema", "ic_sb", "OVN_IC_SOUTHBOUND"),
    ("vswitch.ovsschema", "vswitch", "OPEN_VSWITCH"),
];

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "Self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

fn main() {
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    // Read at run time: a build script binary reused from another checkout must not look there.
    let dir = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"))
        .join("schemas");
    println!("cargo:rerun-if-changed=build.rs");
    for (file, stem, konst) in SCHEMAS {
        let path = dir.join(file);
        println!("cargo:rerun-if-changed={}", path.display());
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let schema: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
        let code = generate(&schema, konst);
        let dest = Path::new(&out).join(format!("models_{stem}.rs"));
        std::fs::write(&dest, code).unwrap_or_else(|e| panic!("writing {}: {e}", dest.display()));
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Atomic {
    Integer,
    Real,
    Boolean,
    String,
    Uuid,
}

impl Atomic {
    fn parse(v: &Value) -> (Atomic, Option<Vec<String>>) {
        let (name, en) = match v {
            Value::String(s) => (s.as_str(), None),
            Value::Object(o) => (
                o.get("type")
                    .and_then(Value::as_str)
                    .expect("base type without type"),
                o.get("enum"),
            ),
            _ => panic!("bad base type {v}"),
        };
        let atomic = match name {
            "integer" => Atomic::Integer,
            "real" => Atomic::Real,
            "boolean" => Atomic::Boolean,
            "string" => Atomic::String,
            "uuid" => Atomic::Uuid,
            _ => panic!("unknown atomic type {name}"),
        };
        // Only string enums become Rust enums; others keep their plain type.
        let en = en.filter(|_| atomic == Atomic::String).map(|e| {
            let items: Vec<&Value> = match e {
                Value::Array(a) if a.len() == 2 && a[0] == "set" => {
                    a[1].as_array().expect("enum set").iter().collect()
                }
                other => vec![other],
            };
            // Sorted, so the first variant is the value OVSDB gives a new row.
            let set: BTreeSet<String> = items
                .into_iter()
                .map(|i| i.as_str().expect("string enum member").to_string())
                .collect();
            set.into_iter().collect()
        });
        (atomic, en)
    }

    fn rust(self) -> &'static str {
        match self {
            Atomic::Integer => "i64",
            Atomic::Real => "f64",
            Atomic::Boolean => "bool",
            Atomic::String => "::std::string::String",
            Atomic::Uuid => "::uuid::Uuid",
        }
    }
}

enum Shape {
    Scalar,
    Optional,
    Set,
    Map(Atomic),
}

struct Column {
    name: String,
    field: String,
    konst: String,
    key: Atomic,
    shape: Shape,
    /// The generated enum's name and values, for enum-constrained scalar/optional strings.
    enumeration: Option<(String, Vec<String>)>,
    describe: String,
}

/// CamelCase from a schema identifier: split at `_`, capitalise each part. A part with at least
/// as many capitals as lowercase letters is an acronym and is lowercased after its first letter
/// (ACL → Acl, QoS → Qos, DHCPv6 → Dhcpv6); other parts keep their inner capitals
/// (vSwitch → VSwitch, sFlow → SFlow, AutoAttach → AutoAttach).
fn camel(s: &str) -> String {
    let mut out = String::new();
    for part in s
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
    {
        let upper = part.chars().filter(char::is_ascii_uppercase).count();
        let lower = part.chars().filter(char::is_ascii_lowercase).count();
        let acronym = upper >= lower;
        for (i, c) in part.chars().enumerate() {
            if i == 0 {
                out.push(c.to_ascii_uppercase());
            } else if acronym {
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
    }
    out
}

fn variant(value: &str) -> String {
    let c = camel(value);
    if c.is_empty() {
        "Empty".to_string()
    } else if c.starts_with(|c: char| c.is_ascii_digit()) {
        format!("V{c}")
    } else {
        c
    }
}

fn field_name(column: &str) -> String {
    assert!(
        column
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !column.starts_with(|c: char| c.is_ascii_digit())
            && column != "uuid",
        "column name {column:?} needs a naming rule"
    );
    if KEYWORDS.contains(&column) {
        format!("r#{column}")
    } else {
        column.to_string()
    }
}

fn describe(ty: &Value) -> String {
    match ty {
        Value::String(s) => s.clone(),
        other => other.to_string().replace('`', "'"),
    }
}

fn columns(
    table: &str,
    struct_name: &str,
    t: &Value,
    type_names: &mut BTreeSet<String>,
) -> Vec<Column> {
    let cols = t["columns"].as_object().expect("columns");
    let mut out = Vec::new();
    // serde_json's default map is sorted, so columns come out in alphabetical order.
    for (name, c) in cols {
        let ty = &c["type"];
        let (key, key_enum, value, min, max) = match ty {
            Value::String(_) => {
                let (k, e) = Atomic::parse(ty);
                (k, e, None, 1, Some(1))
            }
            Value::Object(o) => {
                let (k, e) = Atomic::parse(&o["key"]);
                let value = o.get("value").map(|v| Atomic::parse(v).0);
                let min = o.get("min").map_or(1, |m| m.as_u64().expect("min"));
                let max = match o.get("max") {
                    None => Some(1),
                    Some(Value::String(s)) if s == "unlimited" => None,
                    Some(m) => Some(m.as_u64().expect("max")),
                };
                (k, e, value, min, max)
            }
            _ => panic!("bad type of {table}.{name}"),
        };
        let shape = match (value, min, max) {
            (Some(v), _, _) => {
                assert!(
                    key != Atomic::Real,
                    "{table}.{name}: maps with real keys are not supported"
                );
                Shape::Map(v)
            }
            (None, 1, Some(1)) => Shape::Scalar,
            (None, 0, Some(1)) => Shape::Optional,
            _ => Shape::Set,
        };
        let enumeration = match (&shape, key_enum) {
            (Shape::Scalar | Shape::Optional, Some(values)) => {
                let mut ty_name = format!("{struct_name}{}", camel(name));
                if type_names.contains(&ty_name) {
                    ty_name.push_str("Value");
                }
                assert!(
                    type_names.insert(ty_name.clone()),
                    "type name {ty_name} clashes"
                );
                Some((ty_name, values))
            }
            _ => None,
        };
        let mut konst = name.to_ascii_uppercase();
        if ["DATABASE", "TABLE", "COLUMNS"].contains(&konst.as_str()) {
            konst.push_str("_COLUMN");
        }
        out.push(Column {
            name: name.clone(),
            field: field_name(name),
            konst,
            key,
            shape,
            enumeration,
            describe: describe(ty),
        });
    }
    out
}

fn generate(schema: &Value, shipped_const: &str) -> String {
    let db = schema["name"].as_str().expect("schema name");
    let tables = schema["tables"].as_object().expect("tables");
    let mut code = String::new();
    let w = &mut code;
    writeln!(
        w,
        "// @generated by ovsdb/build.rs from the shipped {db} schema. Do not edit."
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(w, "/// The database these models belong to.").unwrap();
    writeln!(w, "pub const DATABASE: &str = {db:?};").unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "/// The shipped {db} schema the models were generated from, parsed once."
    )
    .unwrap();
    writeln!(
        w,
        "pub fn schema() -> &'static crate::schema::DatabaseSchema {{"
    )
    .unwrap();
    writeln!(
        w,
        "    static SCHEMA: ::std::sync::OnceLock<crate::schema::DatabaseSchema> = ::std::sync::OnceLock::new();"
    )
    .unwrap();
    writeln!(
        w,
        "    SCHEMA.get_or_init(|| crate::model::parse_shipped(&crate::schemas::{shipped_const}))"
    )
    .unwrap();
    writeln!(w, "}}").unwrap();

    let mut type_names: BTreeSet<String> = BTreeSet::new();
    let mut structs = BTreeMap::new();
    for table in tables.keys() {
        let s = camel(table);
        assert!(
            type_names.insert(s.clone()),
            "{db}: struct name {s} clashes"
        );
        structs.insert(table.clone(), s);
    }
    writeln!(w).unwrap();
    writeln!(
        w,
        "/// Calls `visitor.visit::<M>()` for the model `M` of every table of {db}, in table-name order."
    )
    .unwrap();
    writeln!(
        w,
        "pub fn visit_models<V: crate::model::ModelVisitor>(visitor: &mut V) {{"
    )
    .unwrap();
    for s in structs.values() {
        writeln!(w, "    visitor.visit::<{s}>();").unwrap();
    }
    writeln!(w, "}}").unwrap();
    writeln!(w).unwrap();
    let names: Vec<String> = tables.keys().map(|t| format!("{t:?}")).collect();
    writeln!(
        w,
        "/// The name of every table with a model, in table-name order."
    )
    .unwrap();
    writeln!(w, "pub const TABLES: &[&str] = &[{}];", names.join(", ")).unwrap();
    for (table, t) in tables {
        let s = &structs[table];
        let cols = columns(table, s, t, &mut type_names);
        for c in &cols {
            if let Some((name, values)) = &c.enumeration {
                gen_enum(w, table, &c.name, name, values);
            }
        }
        gen_struct(w, table, s, &cols);
    }
    code
}

fn gen_enum(w: &mut String, table: &str, column: &str, name: &str, values: &[String]) {
    let variants: Vec<String> = values.iter().map(|v| variant(v)).collect();
    let distinct: BTreeSet<&String> = variants.iter().collect();
    assert_eq!(
        distinct.len(),
        variants.len(),
        "{name}: variant names clash"
    );
    writeln!(w).unwrap();
    writeln!(
        w,
        "/// The values the schema allows in `{table}.{column}`. The default is the first value in\n/// sorted order, the one OVSDB gives a new row."
    )
    .unwrap();
    writeln!(
        w,
        "#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]"
    )
    .unwrap();
    writeln!(w, "pub enum {name} {{").unwrap();
    for (i, (v, value)) in variants.iter().zip(values).enumerate() {
        writeln!(w, "    /// `{value:?}`").unwrap();
        if i == 0 {
            writeln!(w, "    #[default]").unwrap();
        }
        writeln!(w, "    {v},").unwrap();
    }
    writeln!(w, "}}").unwrap();
    writeln!(w).unwrap();
    writeln!(w, "impl {name} {{").unwrap();
    writeln!(w, "    /// Every value, in sorted order.").unwrap();
    let all: Vec<String> = variants.iter().map(|v| format!("{name}::{v}")).collect();
    writeln!(
        w,
        "    pub const ALL: &'static [{name}] = &[{}];",
        all.join(", ")
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(w, "    /// The value as stored in the database.").unwrap();
    writeln!(w, "    pub fn as_str(self) -> &'static str {{").unwrap();
    writeln!(w, "        match self {{").unwrap();
    for (v, value) in variants.iter().zip(values) {
        writeln!(w, "            {name}::{v} => {value:?},").unwrap();
    }
    writeln!(w, "        }}").unwrap();
    writeln!(w, "    }}").unwrap();
    writeln!(w, "}}").unwrap();
    writeln!(w).unwrap();
    writeln!(w, "impl ::std::str::FromStr for {name} {{").unwrap();
    writeln!(w, "    type Err = crate::error::DatumError;").unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "    fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {{"
    )
    .unwrap();
    writeln!(w, "        match s {{").unwrap();
    for (v, value) in variants.iter().zip(values) {
        writeln!(w, "            {value:?} => Ok({name}::{v}),").unwrap();
    }
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    writeln!(
        w,
        "            _ => Err(crate::model::unknown_enum_value({:?}, s, &[{}])),",
        format!("{table}.{column}"),
        quoted.join(", ")
    )
    .unwrap();
    writeln!(w, "        }}").unwrap();
    writeln!(w, "    }}").unwrap();
    writeln!(w, "}}").unwrap();
    writeln!(w).unwrap();
    writeln!(w, "impl ::std::fmt::Display for {name} {{").unwrap();
    writeln!(
        w,
        "    fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {{"
    )
    .unwrap();
    writeln!(w, "        f.write_str(self.as_str())").unwrap();
    writeln!(w, "    }}").unwrap();
    writeln!(w, "}}").unwrap();
    writeln!(w).unwrap();
    writeln!(w, "impl crate::model::AtomValue for {name} {{").unwrap();
    writeln!(
        w,
        "    fn from_atom(atom: &crate::datum::Atom) -> ::std::result::Result<Self, ::std::string::String> {{"
    )
    .unwrap();
    writeln!(w, "        crate::model::enum_from_atom(atom)").unwrap();
    writeln!(w, "    }}").unwrap();
    writeln!(w).unwrap();
    writeln!(w, "    fn to_atom(&self) -> crate::datum::Atom {{").unwrap();
    writeln!(w, "        crate::datum::Atom::string(self.as_str())").unwrap();
    writeln!(w, "    }}").unwrap();
    writeln!(w, "}}").unwrap();
}

fn field_type(c: &Column) -> String {
    let elem = match &c.enumeration {
        Some((name, _)) => name.clone(),
        None => c.key.rust().to_string(),
    };
    match &c.shape {
        Shape::Scalar => elem,
        Shape::Optional => format!("::std::option::Option<{elem}>"),
        Shape::Set if c.key == Atomic::Real => "::std::vec::Vec<f64>".to_string(),
        Shape::Set => format!("::std::collections::BTreeSet<{elem}>"),
        Shape::Map(v) => format!("::std::collections::BTreeMap<{elem}, {}>", v.rust()),
    }
}

fn gen_struct(w: &mut String, table: &str, s: &str, cols: &[Column]) {
    writeln!(w).unwrap();
    writeln!(w, "/// A row of the `{table}` table.").unwrap();
    writeln!(w, "#[derive(Debug, Clone, PartialEq, Default)]").unwrap();
    writeln!(w, "pub struct {s} {{").unwrap();
    writeln!(w, "    /// The row's `_uuid`.").unwrap();
    writeln!(w, "    pub uuid: ::uuid::Uuid,").unwrap();
    for c in cols {
        writeln!(w, "    /// Column `{}`: `{}`.", c.name, c.describe).unwrap();
        writeln!(w, "    pub {}: {},", c.field, field_type(c)).unwrap();
    }
    writeln!(w, "}}").unwrap();
    writeln!(w).unwrap();
    writeln!(w, "impl {s} {{").unwrap();
    for c in cols {
        writeln!(w, "    /// The name of column `{}`.", c.name).unwrap();
        writeln!(w, "    pub const {}: &'static str = {:?};", c.konst, c.name).unwrap();
    }
    writeln!(w, "}}").unwrap();
    writeln!(w).unwrap();
    writeln!(w, "impl crate::model::Model for {s} {{").unwrap();
    writeln!(w, "    const DATABASE: &'static str = DATABASE;").unwrap();
    writeln!(w, "    const TABLE: &'static str = {table:?};").unwrap();
    let names: Vec<String> = cols.iter().map(|c| format!("{:?}", c.name)).collect();
    writeln!(
        w,
        "    const COLUMNS: &'static [&'static str] = &[{}];",
        names.join(", ")
    )
    .unwrap();
    writeln!(w).unwrap();
    writeln!(w, "    fn uuid(&self) -> ::uuid::Uuid {{").unwrap();
    writeln!(w, "        self.uuid").unwrap();
    writeln!(w, "    }}").unwrap();
    writeln!(w).unwrap();
    let row_var = if cols.is_empty() { "_row" } else { "row" };
    writeln!(
        w,
        "    fn from_row(uuid: ::uuid::Uuid, {row_var}: &crate::datum::Row) -> ::std::result::Result<Self, crate::error::DatumError> {{"
    )
    .unwrap();
    writeln!(w, "        Ok({s} {{").unwrap();
    writeln!(w, "            uuid,").unwrap();
    for c in cols {
        let getter = match &c.shape {
            Shape::Scalar => "get_scalar",
            Shape::Optional => "get_optional",
            Shape::Set if c.key == Atomic::Real => "get_real_set",
            Shape::Set => "get_set",
            Shape::Map(_) => "get_map",
        };
        writeln!(
            w,
            "            {}: crate::model::{getter}(row, {table:?}, {:?})?,",
            c.field, c.name
        )
        .unwrap();
    }
    writeln!(w, "        }})").unwrap();
    writeln!(w, "    }}").unwrap();
    writeln!(w).unwrap();
    writeln!(w, "    fn to_row(&self) -> crate::datum::Row {{").unwrap();
    if cols.is_empty() {
        writeln!(w, "        crate::datum::Row::new()").unwrap();
    } else {
        writeln!(w, "        let mut row = crate::datum::Row::new();").unwrap();
        for c in cols {
            let conv = match &c.shape {
                Shape::Scalar => "scalar_datum",
                Shape::Optional => "optional_datum",
                Shape::Set if c.key == Atomic::Real => "real_set_datum",
                Shape::Set => "set_datum",
                Shape::Map(_) => "map_datum",
            };
            writeln!(
                w,
                "        row.insert({:?}, crate::model::{conv}(&self.{}));",
                c.name, c.field
            )
            .unwrap();
        }
        writeln!(w, "        row").unwrap();
    }
    writeln!(w, "    }}").unwrap();
    writeln!(w, "}}").unwrap();
}
