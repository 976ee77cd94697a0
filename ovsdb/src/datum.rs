//! OVSDB atoms and datums (RFC 7047 §5.1) with the wire encoding ovsdb-server uses.
//!
//! Every column value is a [`Datum`]: a set of atoms or a map of atom pairs. A scalar is a one-element
//! set, an optional value a set of zero or one element. The JSON encoding follows the server: a
//! one-element set travels as a bare atom, other sets as `["set", [...]]`, maps as `["map", [[k, v]...]]`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::{json, Value};
use uuid::Uuid;

mod compact;

pub use compact::{AtomMap, AtomSet};

use crate::error::DatumError;
use crate::schema::{AtomicType, BaseType, ColumnType};

/// A row's columns by name, as the server sends them and the cache stores them.
pub type Row = BTreeMap<Column, Datum>;

/// A column name. Names are interned ([`column`]): a cache of 30,000 rows otherwise holds a
/// heap copy of every column name in every row, about a third of its memory.
pub type Column = &'static str;

/// Most distinct column names one process interns. Schemas have a few hundred; a peer that
/// sends more is refused rather than allowed to grow the table without bound.
pub const MAX_COLUMNS: usize = 8192;

/// The interned copy of column name `name`, or `None` once [`MAX_COLUMNS`] distinct names are
/// known and `name` is not one of them.
pub fn column(name: &str) -> Option<Column> {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(n) = names.get(name) {
        return Some(n);
    }
    if names.len() >= MAX_COLUMNS {
        return None;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    Some(leaked)
}

/// One OVSDB scalar. Named UUIDs exist only inside a transaction, to reference rows inserted by it.
#[derive(Debug, Clone)]
pub enum Atom {
    Integer(i64),
    Real(f64),
    Boolean(bool),
    /// Shared: a replica's changed row is a copy of the old one (both are handed to
    /// subscribers), and copying an address set of thousands of strings was a fifth of the
    /// controller's CPU under pod churn; a copy is now a reference count per atom.
    String(Arc<str>),
    Uuid(Uuid),
    NamedUuid(String),
}

/// Where string atoms order among the kinds.
const STRING_RANK: u8 = 3;

impl Atom {
    fn rank(&self) -> u8 {
        match self {
            Atom::Integer(_) => 0,
            Atom::Real(_) => 1,
            Atom::Boolean(_) => 2,
            Atom::String(_) => STRING_RANK,
            Atom::Uuid(_) => 4,
            Atom::NamedUuid(_) => 5,
        }
    }

    /// The atomic type this atom belongs to (named UUIDs count as UUIDs).
    pub fn atomic_type(&self) -> AtomicType {
        match self {
            Atom::Integer(_) => AtomicType::Integer,
            Atom::Real(_) => AtomicType::Real,
            Atom::Boolean(_) => AtomicType::Boolean,
            Atom::String(_) => AtomicType::String,
            Atom::Uuid(_) | Atom::NamedUuid(_) => AtomicType::Uuid,
        }
    }

    /// Shorthand for building string atoms, the most common kind.
    pub fn string(s: impl Into<String>) -> Atom {
        Atom::String(s.into().into())
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Atom::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Atom::Integer(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Atom::Real(r) => Some(*r),
            Atom::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Atom::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_uuid(&self) -> Option<Uuid> {
        match self {
            Atom::Uuid(u) => Some(*u),
            _ => None,
        }
    }

    /// Encodes the atom as ovsdb-server expects it on the wire.
    pub fn to_json(&self) -> Value {
        match self {
            Atom::Integer(i) => json!(i),
            Atom::Real(r) => real_to_json(*r),
            Atom::Boolean(b) => json!(b),
            Atom::String(s) => json!(&**s),
            Atom::Uuid(u) => json!(["uuid", u.to_string()]),
            Atom::NamedUuid(n) => json!(["named-uuid", n]),
        }
    }

    /// Decodes an atom without a schema: integers that fit i64 become integers, other numbers reals.
    pub fn from_json(v: &Value) -> Result<Atom, DatumError> {
        match v {
            Value::Bool(b) => Ok(Atom::Boolean(*b)),
            Value::String(s) => Ok(Atom::String(s.as_str().into())),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Ok(Atom::Integer(i))
                } else if let Some(f) = n.as_f64() {
                    Ok(Atom::Real(f))
                } else {
                    Err(DatumError::new(format!("number {n} is not representable")))
                }
            }
            Value::Array(a) if a.len() == 2 => {
                let tag = a[0].as_str().unwrap_or_default();
                let body = a[1]
                    .as_str()
                    .ok_or_else(|| DatumError::new(format!("malformed {tag} atom: {v}")))?;
                match tag {
                    "uuid" => Uuid::parse_str(body)
                        .map(Atom::Uuid)
                        .map_err(|e| DatumError::new(format!("bad uuid {body:?}: {e}"))),
                    "named-uuid" => {
                        if is_valid_named_uuid(body) {
                            Ok(Atom::NamedUuid(body.to_string()))
                        } else {
                            Err(DatumError::new(format!("bad named-uuid {body:?}")))
                        }
                    }
                    _ => Err(DatumError::new(format!("not an atom: {v}"))),
                }
            }
            _ => Err(DatumError::new(format!("not an atom: {v}"))),
        }
    }

    /// Decodes an atom of a known base type, checking the type's constraints.
    pub fn from_json_typed(v: &Value, base: &BaseType) -> Result<Atom, DatumError> {
        let atom = match (base.atomic, v) {
            // The server prints reals with the shortest form, so an integral real arrives as an integer.
            (AtomicType::Real, Value::Number(n)) => Atom::Real(
                n.as_f64()
                    .ok_or_else(|| DatumError::new(format!("bad real {n}")))?,
            ),
            _ => Atom::from_json(v)?,
        };
        if atom.atomic_type() != base.atomic {
            return Err(DatumError::new(format!(
                "expected {} atom, got {v}",
                base.atomic.as_str()
            )));
        }
        base.check(&atom)?;
        Ok(atom)
    }
}

fn real_to_json(r: f64) -> Value {
    serde_json::Number::from_f64(r)
        .map(Value::Number)
        // OVSDB has no NaN or infinity; the schema check rejects them before they reach the wire.
        .unwrap_or(Value::Null)
}

/// A named UUID must be a valid identifier: `[_a-zA-Z][_a-zA-Z0-9]*`.
pub fn is_valid_named_uuid(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

impl PartialEq for Atom {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Atom {}

impl PartialOrd for Atom {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Atom {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Atom::Integer(a), Atom::Integer(b)) => a.cmp(b),
            (Atom::Real(a), Atom::Real(b)) => a.total_cmp(b),
            (Atom::Boolean(a), Atom::Boolean(b)) => a.cmp(b),
            (Atom::String(a), Atom::String(b)) => a.cmp(b),
            (Atom::Uuid(a), Atom::Uuid(b)) => a.cmp(b),
            (Atom::NamedUuid(a), Atom::NamedUuid(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl Atom {
    /// How this atom orders against the string atom `s` (as [`Ord`] would), without building
    /// one: map lookups by string key allocate nothing.
    pub fn cmp_str(&self, s: &str) -> Ordering {
        match self {
            Atom::String(a) => (**a).cmp(s),
            _ => self.rank().cmp(&STRING_RANK),
        }
    }
}

impl std::hash::Hash for Atom {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.rank().hash(state);
        match self {
            Atom::Integer(i) => i.hash(state),
            Atom::Real(r) => r.to_bits().hash(state),
            Atom::Boolean(b) => b.hash(state),
            Atom::String(s) => s.hash(state),
            Atom::NamedUuid(s) => s.hash(state),
            Atom::Uuid(u) => u.hash(state),
        }
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Atom::Integer(i) => write!(f, "{i}"),
            Atom::Real(r) => write!(f, "{r}"),
            Atom::Boolean(b) => write!(f, "{b}"),
            Atom::String(s) => write!(f, "{s:?}"),
            Atom::Uuid(u) => write!(f, "{u}"),
            Atom::NamedUuid(n) => write!(f, "@{n}"),
        }
    }
}

impl From<i64> for Atom {
    fn from(v: i64) -> Self {
        Atom::Integer(v)
    }
}
impl From<f64> for Atom {
    fn from(v: f64) -> Self {
        Atom::Real(v)
    }
}
impl From<bool> for Atom {
    fn from(v: bool) -> Self {
        Atom::Boolean(v)
    }
}
impl From<&str> for Atom {
    fn from(v: &str) -> Self {
        Atom::String(v.into())
    }
}
impl From<String> for Atom {
    fn from(v: String) -> Self {
        Atom::String(v.into())
    }
}
impl From<Arc<str>> for Atom {
    fn from(v: Arc<str>) -> Self {
        Atom::String(v)
    }
}
impl From<Uuid> for Atom {
    fn from(v: Uuid) -> Self {
        Atom::Uuid(v)
    }
}

/// A column value: a set of atoms (scalars are one-element sets) or a map.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Datum {
    Set(AtomSet),
    Map(AtomMap),
}

impl Default for Datum {
    fn default() -> Self {
        Datum::Set(AtomSet::new())
    }
}

impl<A: Into<Atom>> From<A> for Datum {
    fn from(a: A) -> Self {
        Datum::scalar(a)
    }
}

impl Datum {
    /// A one-element set: how OVSDB holds a scalar.
    pub fn scalar(a: impl Into<Atom>) -> Datum {
        Datum::Set(AtomSet::from([a.into()]))
    }

    pub fn empty_set() -> Datum {
        Datum::Set(AtomSet::new())
    }

    pub fn empty_map() -> Datum {
        Datum::Map(AtomMap::new())
    }

    pub fn set<I: IntoIterator<Item = A>, A: Into<Atom>>(items: I) -> Datum {
        Datum::Set(items.into_iter().map(Into::into).collect())
    }

    pub fn map<I, K, V>(items: I) -> Datum
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<Atom>,
        V: Into<Atom>,
    {
        Datum::Map(
            items
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// Number of elements (set members or map pairs).
    pub fn len(&self) -> usize {
        match self {
            Datum::Set(s) => s.len(),
            Datum::Map(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The single atom of a scalar or a non-empty optional value.
    pub fn as_atom(&self) -> Option<&Atom> {
        match self {
            Datum::Set(s) if s.len() == 1 => s.iter().next(),
            _ => None,
        }
    }

    pub fn as_set(&self) -> Option<&AtomSet> {
        match self {
            Datum::Set(s) => Some(s),
            Datum::Map(_) => None,
        }
    }

    pub fn as_map(&self) -> Option<&AtomMap> {
        match self {
            Datum::Map(m) => Some(m),
            // An empty set and an empty map are the same value on the wire.
            Datum::Set(s) if s.is_empty() => {
                static EMPTY: AtomMap = AtomMap::new();
                Some(&EMPTY)
            }
            Datum::Set(_) => None,
        }
    }

    /// Looks up a string key in a map datum, the shape of `external_ids` and `options`.
    pub fn map_get(&self, key: &str) -> Option<&Atom> {
        match self {
            Datum::Map(m) => m.get_str(key),
            Datum::Set(_) => None,
        }
    }

    /// Encodes the datum as ovsdb-server expects it on the wire.
    pub fn to_json(&self) -> Value {
        match self {
            Datum::Set(s) if s.len() == 1 => s.iter().next().map(Atom::to_json).unwrap_or_default(),
            Datum::Set(s) => json!(["set", s.iter().map(Atom::to_json).collect::<Vec<_>>()]),
            Datum::Map(m) => json!([
                "map",
                m.iter()
                    .map(|(k, v)| json!([k.to_json(), v.to_json()]))
                    .collect::<Vec<_>>()
            ]),
        }
    }

    /// Decodes a datum without a schema (for `_Server` and ad-hoc tools).
    pub fn from_json(v: &Value) -> Result<Datum, DatumError> {
        if let Some((tag, body)) = tagged(v) {
            match tag {
                "set" => {
                    let items = body
                        .as_array()
                        .ok_or_else(|| DatumError::new(format!("malformed set: {v}")))?;
                    return Ok(Datum::Set(
                        items
                            .iter()
                            .map(Atom::from_json)
                            .collect::<Result<_, _>>()?,
                    ));
                }
                "map" => {
                    let pairs = body
                        .as_array()
                        .ok_or_else(|| DatumError::new(format!("malformed map: {v}")))?;
                    let mut m = Vec::with_capacity(pairs.len());
                    for p in pairs {
                        let (k, val) = pair(p)?;
                        m.push((Atom::from_json(k)?, Atom::from_json(val)?));
                    }
                    return Ok(Datum::Map(m.into_iter().collect()));
                }
                _ => {}
            }
        }
        Ok(Datum::scalar(Atom::from_json(v)?))
    }

    /// Decodes and validates a datum of a known column type.
    pub fn from_json_typed(v: &Value, ty: &ColumnType) -> Result<Datum, DatumError> {
        let d = Self::decode_typed(v, ty)?;
        ty.check_size(d.len())?;
        Ok(d)
    }

    /// Decodes the `modify` value of an update2/update3 notification, which for sets and maps
    /// is a difference and so may exceed the column's size bounds.
    pub fn from_json_diff(v: &Value, ty: &ColumnType) -> Result<Datum, DatumError> {
        Self::decode_typed(v, ty)
    }

    fn decode_typed(v: &Value, ty: &ColumnType) -> Result<Datum, DatumError> {
        match &ty.value {
            Some(vt) => {
                let (tag, body) = tagged(v)
                    .filter(|(t, _)| *t == "map")
                    .ok_or_else(|| DatumError::new(format!("expected a map, got {v}")))?;
                let _ = tag;
                let pairs = body
                    .as_array()
                    .ok_or_else(|| DatumError::new(format!("malformed map: {v}")))?;
                let mut m = Vec::with_capacity(pairs.len());
                for p in pairs {
                    let (k, val) = pair(p)?;
                    m.push((
                        Atom::from_json_typed(k, &ty.key)?,
                        Atom::from_json_typed(val, vt)?,
                    ));
                }
                let n = m.len();
                let m: AtomMap = m.into_iter().collect();
                if m.len() != n {
                    return Err(DatumError::new(format!("duplicate key in map: {v}")));
                }
                Ok(Datum::Map(m))
            }
            None => match tagged(v) {
                Some(("set", body)) => {
                    let items = body
                        .as_array()
                        .ok_or_else(|| DatumError::new(format!("malformed set: {v}")))?;
                    let s: AtomSet = items
                        .iter()
                        .map(|i| Atom::from_json_typed(i, &ty.key))
                        .collect::<Result<_, _>>()?;
                    if s.len() != items.len() {
                        return Err(DatumError::new(format!("duplicate element in set: {v}")));
                    }
                    Ok(Datum::Set(s))
                }
                _ => Ok(Datum::scalar(Atom::from_json_typed(v, &ty.key)?)),
            },
        }
    }

    /// Checks an already built datum against a column type, before it is sent to the server.
    pub fn check(&self, ty: &ColumnType) -> Result<(), DatumError> {
        match (self, &ty.value) {
            (Datum::Set(s), None) => {
                for a in s {
                    ty.key.check_type(a)?;
                }
            }
            (Datum::Map(m), Some(vt)) => {
                for (k, v) in m {
                    ty.key.check_type(k)?;
                    vt.check_type(v)?;
                }
            }
            (Datum::Set(s), Some(_)) if s.is_empty() => {}
            (Datum::Set(_), Some(_)) => return Err(DatumError::new("expected a map, got a set")),
            (Datum::Map(_), None) => return Err(DatumError::new("expected a set, got a map")),
        }
        ty.check_size(self.len())
    }

    /// Applies an update2 `modify` difference in place: set members and map keys in `diff`
    /// are toggled (a map key present with another value takes the new value).
    pub fn apply_diff(&mut self, diff: &Datum) {
        match (self, diff) {
            (Datum::Set(s), Datum::Set(d)) => {
                for a in d {
                    if !s.remove(a) {
                        s.insert(a.clone());
                    }
                }
            }
            (Datum::Map(m), Datum::Map(d)) => {
                for (k, v) in d {
                    match m.get(k) {
                        Some(old) if old == v => {
                            m.remove(k);
                        }
                        _ => {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            (this @ Datum::Set(_), Datum::Map(d)) if this.is_empty() => {
                *this = Datum::Map(d.clone());
            }
            (_, Datum::Set(d)) if d.is_empty() => {}
            (this, d) => *this = d.clone(),
        }
    }
}

fn tagged(v: &Value) -> Option<(&str, &Value)> {
    match v {
        Value::Array(a) if a.len() == 2 => Some((a[0].as_str()?, &a[1])),
        _ => None,
    }
}

fn pair(p: &Value) -> Result<(&Value, &Value), DatumError> {
    match p {
        Value::Array(kv) if kv.len() == 2 => Ok((&kv[0], &kv[1])),
        _ => Err(DatumError::new(format!("malformed map pair: {p}"))),
    }
}

impl fmt::Display for Datum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ColumnType;

    fn ty(j: Value) -> ColumnType {
        ColumnType::from_json(&j).unwrap()
    }

    /// Rows decoded against a schema share one copy of each column name.
    #[test]
    fn column_names_are_interned_once() {
        let owned = String::from("interned_column_test");
        let a = column(&owned).unwrap();
        let b = column("interned_column_test").unwrap();
        assert_eq!(a, "interned_column_test");
        assert!(std::ptr::eq(a, b), "one copy per name");
        let schema: Value = serde_json::from_str(crate::schemas::OVN_NORTHBOUND.json).unwrap();
        let schema = crate::schema::DatabaseSchema::from_json(&schema).unwrap();
        let name = schema.tables["Logical_Switch"].columns["name"].name;
        assert!(std::ptr::eq(name, column("name").unwrap()));
    }

    #[test]
    fn one_element_set_is_a_bare_atom() {
        assert_eq!(Datum::set(["a"]).to_json(), json!("a"));
        assert_eq!(Datum::empty_set().to_json(), json!(["set", []]));
        assert_eq!(Datum::set(["a", "b"]).to_json(), json!(["set", ["a", "b"]]));
        assert_eq!(Datum::empty_map().to_json(), json!(["map", []]));
        assert_eq!(
            Datum::map([("k", "v")]).to_json(),
            json!(["map", [["k", "v"]]])
        );
    }

    #[test]
    fn typed_decode_checks_constraints() {
        let t = ty(
            json!({"key": {"type": "integer", "minInteger": 1, "maxInteger": 10}, "min": 0, "max": 2}),
        );
        assert!(Datum::from_json_typed(&json!(5), &t).is_ok());
        assert!(Datum::from_json_typed(&json!(11), &t).is_err());
        assert!(Datum::from_json_typed(&json!(["set", [1, 2, 3]]), &t).is_err());
        assert!(Datum::from_json_typed(&json!("x"), &t).is_err());
        let e = ty(json!({"key": {"type": "string", "enum": ["set", ["a", "b"]]}}));
        assert!(Datum::from_json_typed(&json!("a"), &e).is_ok());
        assert!(Datum::from_json_typed(&json!("c"), &e).is_err());
        let r = ty(json!("real"));
        assert_eq!(
            Datum::from_json_typed(&json!(1), &r).unwrap(),
            Datum::scalar(1.0)
        );
    }

    #[test]
    fn diff_toggles_members_and_updates_keys() {
        let mut s = Datum::set(["a", "b"]);
        s.apply_diff(&Datum::set(["b", "c"]));
        assert_eq!(s, Datum::set(["a", "c"]));
        let mut m = Datum::map([("k1", "v1"), ("k2", "v2")]);
        m.apply_diff(&Datum::map([("k1", "v1"), ("k2", "x"), ("k3", "v3")]));
        assert_eq!(m, Datum::map([("k2", "x"), ("k3", "v3")]));
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop_oneof![
                Just("set".to_string()),
                Just("map".to_string()),
                Just("uuid".to_string()),
                Just("named-uuid".to_string()),
                "\\PC{0,6}",
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map("[a-z]{0,3}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_json_never_panics_the_decoders(v in arb_json()) {
            let _ = Datum::from_json(&v);
            let schema = crate::schema::DatabaseSchema::parse_str(crate::schemas::OVN_NORTHBOUND.json).unwrap();
            for t in schema.tables.values() {
                for c in t.columns.values() {
                    if let Ok(d) = Datum::from_json_typed(&v, &c.ty) {
                        // Whatever decodes must re-encode to something that decodes to the same.
                        proptest::prop_assert_eq!(Datum::from_json_typed(&d.to_json(), &c.ty).unwrap(), d.clone());
                        proptest::prop_assert!(d.check(&c.ty).is_ok());
                    }
                    let _ = Datum::from_json_diff(&v, &c.ty);
                }
            }
        }
    }

    #[test]
    fn uuid_atoms_round_trip() {
        let u = Uuid::new_v4();
        let d = Datum::scalar(u);
        assert_eq!(Datum::from_json(&d.to_json()).unwrap(), d);
        assert!(Atom::from_json(&json!(["named-uuid", "1bad"])).is_err());
        assert!(Atom::from_json(&json!(["uuid", "nope"])).is_err());
    }
}
