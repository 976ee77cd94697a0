//! The client-side replica of a database: rows by table and UUID, with name and `external_ids`
//! indexes, filled and kept current from `update2`/`update3` notifications. Every notification is
//! applied whole under one write lock, so a reader never sees half of a transaction.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use crate::datum::{Atom, Column, Datum, Row};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::schema::DatabaseSchema;

/// One row's change, as reconcilers consume it. `old`/`new` are `None` for inserts/deletes.
#[derive(Debug, Clone)]
pub struct Change {
    pub table: String,
    pub uuid: Uuid,
    pub old: Option<Arc<Row>>,
    pub new: Option<Arc<Row>>,
}

/// The changes of one server transaction (or of a full resync after a reconnect).
#[derive(Debug, Clone, Default)]
pub struct ChangeBatch {
    pub changes: Vec<Change>,
    /// True when the batch comes from rebuilding the cache after a reconnect: it carries the
    /// difference between the old and the new contents, including rows deleted meanwhile.
    pub resync: bool,
}

/// One table's rows and secondary indexes.
#[derive(Debug, Clone, Default)]
pub struct TableCache {
    rows: HashMap<Uuid, Arc<Row>>,
    by_name: HashMap<String, BTreeSet<Uuid>>,
    /// external_ids key → value → rows; only for the keys the replica was asked to index.
    by_external_id: HashMap<String, HashMap<String, BTreeSet<Uuid>>>,
}

impl TableCache {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn get(&self, uuid: &Uuid) -> Option<&Arc<Row>> {
        self.rows.get(uuid)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Uuid, &Arc<Row>)> {
        self.rows.iter()
    }

    /// Rows whose `name` column equals `name` (unique in indexed tables, not in all).
    pub fn by_name(&self, name: &str) -> impl Iterator<Item = (&Uuid, &Arc<Row>)> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|u| self.rows.get_key_value(u))
    }

    /// Whether `external_ids:key` is indexed (else [`TableCache::by_external_id`] finds nothing).
    pub fn indexes_external_id(&self, key: &str) -> bool {
        self.by_external_id.contains_key(key)
    }

    /// Rows with `external_ids:key=value`, for a key the replica indexes.
    pub fn by_external_id(
        &self,
        key: &str,
        value: &str,
    ) -> impl Iterator<Item = (&Uuid, &Arc<Row>)> {
        self.by_external_id
            .get(key)
            .and_then(|m| m.get(value))
            .into_iter()
            .flatten()
            .filter_map(|u| self.rows.get_key_value(u))
    }

    fn index(&mut self, uuid: Uuid, row: &Row, add: bool) {
        if let Some(name) = row
            .get("name")
            .and_then(Datum::as_atom)
            .and_then(Atom::as_str)
        {
            let e = self.by_name.entry(name.to_string()).or_default();
            if add {
                e.insert(uuid);
            } else {
                e.remove(&uuid);
                if e.is_empty() {
                    self.by_name.remove(name);
                }
            }
        }
        if let Some(ids) = row.get("external_ids") {
            for (key, values) in self.by_external_id.iter_mut() {
                let Some(v) = ids.map_get(key).and_then(Atom::as_str) else {
                    continue;
                };
                let e = values.entry(v.to_string()).or_default();
                if add {
                    e.insert(uuid);
                } else {
                    e.remove(&uuid);
                    if e.is_empty() {
                        values.remove(v);
                    }
                }
            }
        }
    }

    fn put(&mut self, uuid: Uuid, row: Arc<Row>) -> Option<Arc<Row>> {
        let old = self.remove(uuid);
        self.index(uuid, &row, true);
        self.rows.insert(uuid, row);
        old
    }

    fn remove(&mut self, uuid: Uuid) -> Option<Arc<Row>> {
        let old = self.rows.remove(&uuid)?;
        self.index(uuid, &old, false);
        Some(old)
    }
}

/// The whole replica at one instant.
#[derive(Debug, Clone, Default)]
pub struct CacheData {
    tables: HashMap<String, TableCache>,
    /// The id of the last transaction applied (from `update3`), used to resume after a reconnect.
    pub last_txn_id: Option<Uuid>,
}

impl CacheData {
    /// An empty replica with the given `external_ids` keys indexed in every table.
    pub fn new(tables: &[String], external_id_keys: &[String]) -> CacheData {
        let mut c = CacheData::default();
        for t in tables {
            let tc = c.tables.entry(t.clone()).or_default();
            for k in external_id_keys {
                tc.by_external_id.insert(k.clone(), HashMap::new());
            }
        }
        c
    }

    pub fn table(&self, name: &str) -> Option<&TableCache> {
        self.tables.get(name)
    }

    pub fn table_names(&self) -> impl Iterator<Item = &String> {
        self.tables.keys()
    }

    /// Typed view of every row of a model's table; rows that do not decode are reported.
    pub fn list<M: Model>(&self) -> Vec<Result<M>> {
        self.tables
            .get(M::TABLE)
            .into_iter()
            .flat_map(|t| t.rows.iter())
            .map(|(u, r)| M::from_row(*u, r).map_err(Error::from))
            .collect()
    }

    /// Typed view of one row.
    pub fn get<M: Model>(&self, uuid: &Uuid) -> Option<Result<M>> {
        let r = self.tables.get(M::TABLE)?.rows.get(uuid)?;
        Some(M::from_row(*uuid, r).map_err(Error::from))
    }

    /// Typed view of the rows named `name`.
    pub fn by_name<M: Model>(&self, name: &str) -> Vec<Result<M>> {
        self.tables
            .get(M::TABLE)
            .into_iter()
            .flat_map(|t| t.by_name(name))
            .map(|(u, r)| M::from_row(*u, r).map_err(Error::from))
            .collect()
    }

    /// Applies one `table-updates2` object. The whole update is decoded before anything is
    /// changed, so a malformed notification leaves the cache as it was.
    pub fn apply_update2(
        &mut self,
        schema: &DatabaseSchema,
        updates: &Value,
    ) -> Result<ChangeBatch> {
        self.apply_decoded(DecodedUpdates::decode(schema, updates)?)
    }

    /// Applies updates decoded beforehand (see [`DecodedUpdates`]).
    pub fn apply_decoded(&mut self, updates: DecodedUpdates) -> Result<ChangeBatch> {
        self.apply_ops(updates.ops)
    }

    /// Applies updates nobody watches as changes: a modified row is changed in place instead
    /// of copied beside the old one (which would be handed to subscribers, then freed). At
    /// 1,000 NetworkPolicies an address set holds thousands of addresses, and copying then
    /// freeing one per member change was most of a controller replica's work under pod churn.
    pub fn apply_decoded_unobserved(&mut self, updates: DecodedUpdates) -> Result<()> {
        for (table, uuid, op) in updates.ops {
            let tc = self.tables.entry(table.clone()).or_default();
            match op {
                RowOp::Put(row) => {
                    tc.put(uuid, Arc::new(row));
                }
                RowOp::Modify(diff) => {
                    let Some(mut row) = tc.remove(uuid) else {
                        return Err(Error::Protocol(format!(
                            "modify of unknown row {uuid} in {table}: cache out of sync"
                        )));
                    };
                    // A copy only if a reader still holds the row.
                    let r = Arc::make_mut(&mut row);
                    for (col, d, is_diff) in diff {
                        if is_diff {
                            r.entry(col).or_default().apply_diff(&d);
                        } else {
                            r.insert(col, d);
                        }
                    }
                    tc.put(uuid, row);
                }
                RowOp::Delete => {
                    tc.remove(uuid);
                }
            }
        }
        Ok(())
    }

    /// Applies the updates of a decoded `monitor_cond_since` reply.
    pub fn apply_since_reply(&mut self, reply: DecodedSinceReply) -> Result<ChangeBatch> {
        self.apply_ops(reply.ops)
    }

    fn apply_ops(&mut self, ops: Vec<(String, Uuid, RowOp)>) -> Result<ChangeBatch> {
        let mut batch = ChangeBatch::default();
        for (table, uuid, op) in ops {
            let tc = self.tables.entry(table.clone()).or_default();
            let (old, new) = match op {
                RowOp::Put(row) => {
                    let new = Arc::new(row);
                    (tc.put(uuid, new.clone()), Some(new))
                }
                RowOp::Modify(diff) => {
                    let Some(old) = tc.rows.get(&uuid).cloned() else {
                        return Err(Error::Protocol(format!(
                            "modify of unknown row {uuid} in {table}: cache out of sync"
                        )));
                    };
                    let mut row = (*old).clone();
                    for (col, d, is_diff) in diff {
                        if is_diff {
                            row.entry(col).or_default().apply_diff(&d);
                        } else {
                            row.insert(col, d);
                        }
                    }
                    let new = Arc::new(row);
                    tc.put(uuid, new.clone());
                    (Some(old), Some(new))
                }
                RowOp::Delete => (tc.remove(uuid), None),
            };
            batch.changes.push(Change {
                table,
                uuid,
                old,
                new,
            });
        }
        Ok(batch)
    }

    /// Replaces the contents with `fresh` (a full resync), returning what differs.
    pub fn replace_with(&mut self, fresh: CacheData) -> ChangeBatch {
        let mut batch = ChangeBatch {
            changes: Vec::new(),
            resync: true,
        };
        for (name, old_t) in &self.tables {
            let new_t = fresh.tables.get(name);
            for (u, old) in &old_t.rows {
                match new_t.and_then(|t| t.rows.get(u)) {
                    Some(new) if new == old => {}
                    new => batch.changes.push(Change {
                        table: name.clone(),
                        uuid: *u,
                        old: Some(old.clone()),
                        new: new.cloned(),
                    }),
                }
            }
        }
        for (name, new_t) in &fresh.tables {
            let old_t = self.tables.get(name);
            for (u, new) in &new_t.rows {
                if old_t.is_none_or(|t| !t.rows.contains_key(u)) {
                    batch.changes.push(Change {
                        table: name.clone(),
                        uuid: *u,
                        old: None,
                        new: Some(new.clone()),
                    });
                }
            }
        }
        *self = fresh;
        batch
    }

    /// An empty copy with the same tables and index definitions, to fill during a full resync.
    pub fn empty_like(&self) -> CacheData {
        CacheData {
            tables: self
                .tables
                .iter()
                .map(|(n, t)| {
                    let mut e = TableCache::default();
                    for k in t.by_external_id.keys() {
                        e.by_external_id.insert(k.clone(), HashMap::new());
                    }
                    (n.clone(), e)
                })
                .collect(),
            last_txn_id: None,
        }
    }
}

enum RowOp {
    Put(Row),
    /// Columns with their new value (scalars) or difference (sets and maps: `true`).
    Modify(Vec<(Column, Datum, bool)>),
    Delete,
}

fn bad_update(m: String) -> Error {
    Error::Protocol(format!("bad update: {m}"))
}

/// A `table-updates2` object decoded against the schema but not yet applied: a replica decodes
/// a notification before it takes the cache's write lock, so readers wait only for the
/// (short) apply, not for the decoding.
pub struct DecodedUpdates {
    ops: Vec<(String, Uuid, RowOp)>,
}

impl DecodedUpdates {
    /// Decodes every row update of `updates`; any malformed one is an error.
    pub fn decode(schema: &DatabaseSchema, updates: &Value) -> Result<DecodedUpdates> {
        decode_update2(schema, updates).map(|ops| DecodedUpdates { ops })
    }
}

fn decode_update2(schema: &DatabaseSchema, updates: &Value) -> Result<Vec<(String, Uuid, RowOp)>> {
    let mut out = Vec::new();
    let Some(tables) = updates.as_object() else {
        return Err(bad_update(format!("not an object: {updates}")));
    };
    for (tname, rows) in tables {
        let ts = schema
            .table(tname)
            .ok_or_else(|| bad_update(format!("unknown table {tname}")))?;
        for (u, ru) in rows
            .as_object()
            .ok_or_else(|| bad_update(format!("{tname} is not an object")))?
        {
            let (uuid, op) = decode_row(ts, tname, u, ru)?;
            out.push((tname.clone(), uuid, op));
        }
    }
    Ok(out)
}

/// One row's `row-update2` (`{"initial"|"insert"|"modify"|"delete": …}`).
fn decode_row(
    ts: &crate::schema::TableSchema,
    tname: &str,
    u: &str,
    ru: &Value,
) -> Result<(Uuid, RowOp)> {
    let bad = bad_update;
    let uuid = Uuid::parse_str(u).map_err(|_| bad(format!("bad row uuid {u}")))?;
    let (kind, body) = ru
        .as_object()
        .and_then(|o| o.iter().next())
        .ok_or_else(|| bad(format!("empty row update for {u}")))?;
    let decode_cols = |diff: bool| -> Result<Vec<(Column, Datum, bool)>> {
        let Some(cols) = body.as_object() else {
            return Err(bad(format!("row {u} is not an object")));
        };
        cols.iter()
            .filter_map(|(c, v)| ts.column(c).map(|cs| (c, v, cs)))
            .map(|(c, v, cs)| {
                // ovsdb-server diffs only composite columns (maps, sets of more than one
                // atom); a scalar or optional column's modify carries its new value (so a
                // cleared optional one arrives as an empty set).
                let is_diff = diff && !cs.ty.is_scalar() && !cs.ty.is_optional();
                let d = if is_diff {
                    Datum::from_json_diff(v, &cs.ty)
                } else {
                    Datum::from_json_typed(v, &cs.ty)
                };
                d.map(|d| (cs.name, d, is_diff))
                    .map_err(|e| bad(format!("{tname}.{c} of {u}: {e}")))
            })
            .collect()
    };
    let op = match kind.as_str() {
        "initial" | "insert" => {
            // update2 leaves out columns that hold their default value.
            let mut row: Row = ts
                .columns
                .values()
                .map(|cs| (cs.name, cs.ty.default_datum()))
                .collect();
            row.extend(decode_cols(false)?.into_iter().map(|(c, d, _)| (c, d)));
            RowOp::Put(row)
        }
        "modify" => RowOp::Modify(decode_cols(true)?),
        "delete" => RowOp::Delete,
        k => return Err(bad(format!("unknown row update kind {k}"))),
    };
    Ok((uuid, op))
}

/// A `monitor_cond_since` reply decoded straight from its frame: the updates are read row by
/// row into cache rows, never held as one JSON tree (on a first sync they are the whole
/// database, and the tree costs several times the rows it becomes).
pub struct DecodedSinceReply {
    /// Whether the server resumed from the transaction asked for.
    pub found: bool,
    /// The server's last transaction id.
    pub last_txn_id: Uuid,
    ops: Vec<(String, Uuid, RowOp)>,
}

impl DecodedSinceReply {
    /// Decodes a whole reply frame (`{"id":…,"result":[found,last,updates],"error":…}`).
    pub fn decode(schema: &DatabaseSchema, frame: &[u8]) -> Result<DecodedSinceReply> {
        let mut de = serde_json::Deserializer::from_slice(frame);
        let r = serde::de::DeserializeSeed::deserialize(ReplySeed { schema }, &mut de)
            .map_err(|e| Error::Protocol(format!("monitor_cond_since reply: {e}")))?;
        match r {
            Ok(reply) => Ok(reply),
            Err(error) => Err(Error::Rpc {
                method: "monitor_cond_since".into(),
                error,
            }),
        }
    }

    /// Number of row updates in the reply.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

struct ReplySeed<'s> {
    schema: &'s DatabaseSchema,
}

impl<'de> serde::de::DeserializeSeed<'de> for ReplySeed<'_> {
    /// The reply, or the server's `error`.
    type Value = std::result::Result<DecodedSinceReply, Value>;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ReplySeed<'_> {
    type Value = std::result::Result<DecodedSinceReply, Value>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON-RPC reply object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut m: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut result = None;
        let mut error = Value::Null;
        while let Some(k) = m.next_key::<String>()? {
            match k.as_str() {
                "result" => {
                    result = m.next_value_seed(ResultSeed {
                        schema: self.schema,
                    })?
                }
                "error" => error = m.next_value()?,
                _ => {
                    m.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        if !error.is_null() {
            return Ok(Err(error));
        }
        result
            .map(Ok)
            .ok_or_else(|| serde::de::Error::custom("reply without a result"))
    }
}

struct ResultSeed<'s> {
    schema: &'s DatabaseSchema,
}

impl<'de> serde::de::DeserializeSeed<'de> for ResultSeed<'_> {
    /// `None` for a null result (an error reply).
    type Value = Option<DecodedSinceReply>;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ResultSeed<'_> {
    type Value = Option<DecodedSinceReply>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("[found, last-txn-id, table-updates2]")
    }
    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut s: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        let found: bool = s
            .next_element()?
            .ok_or_else(|| A::Error::custom("missing found"))?;
        let last: String = s
            .next_element()?
            .ok_or_else(|| A::Error::custom("missing last-txn-id"))?;
        let last_txn_id =
            Uuid::parse_str(&last).map_err(|_| A::Error::custom(format!("bad txn id {last}")))?;
        let ops = s
            .next_element_seed(TablesSeed {
                schema: self.schema,
            })?
            .ok_or_else(|| A::Error::custom("missing updates"))?;
        if s.next_element::<serde::de::IgnoredAny>()?.is_some() {
            return Err(A::Error::custom("more than three elements"));
        }
        Ok(Some(DecodedSinceReply {
            found,
            last_txn_id,
            ops,
        }))
    }
}

struct TablesSeed<'s> {
    schema: &'s DatabaseSchema,
}

impl<'de> serde::de::DeserializeSeed<'de> for TablesSeed<'_> {
    type Value = Vec<(String, Uuid, RowOp)>;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TablesSeed<'_> {
    type Value = Vec<(String, Uuid, RowOp)>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("table-updates2")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut m: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        let mut out = Vec::new();
        while let Some(tname) = m.next_key::<String>()? {
            let ts = self
                .schema
                .table(&tname)
                .ok_or_else(|| A::Error::custom(format!("unknown table {tname}")))?;
            m.next_value_seed(RowsSeed {
                ts,
                tname: &tname,
                out: &mut out,
            })?;
        }
        Ok(out)
    }
}

struct RowsSeed<'a> {
    ts: &'a crate::schema::TableSchema,
    tname: &'a str,
    out: &'a mut Vec<(String, Uuid, RowOp)>,
}

impl<'de> serde::de::DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for RowsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("rows by UUID")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut m: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        while let Some(u) = m.next_key::<String>()? {
            // One row's JSON at a time: small, and dropped once decoded.
            let ru: Value = m.next_value()?;
            let (uuid, op) = decode_row(self.ts, self.tname, &u, &ru).map_err(A::Error::custom)?;
            self.out.push((self.tname.to_string(), uuid, op));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nb() -> DatabaseSchema {
        let v: Value = serde_json::from_str(crate::schemas::OVN_NORTHBOUND.json).unwrap();
        DatabaseSchema::from_json(&v).unwrap()
    }

    /// The rows of `table`, by UUID.
    fn rows(c: &CacheData, table: &str) -> Vec<(Uuid, Row)> {
        let mut v: Vec<(Uuid, Row)> = c
            .table(table)
            .unwrap()
            .iter()
            .map(|(u, r)| (*u, (**r).clone()))
            .collect();
        v.sort_by_key(|(u, _)| *u);
        v
    }

    /// A modify of an optional column carries its new value, as ovsdb-server's
    /// `ovsdb_datum_diff` makes it for non-composite types: cleared, then replaced.
    #[test]
    fn optional_columns_are_replaced_not_toggled() {
        let schema = nb();
        let u = "6a3e2f1c-0000-4000-8000-000000000003";
        let mut c = CacheData::default();
        let tag = |c: &CacheData| {
            c.table("Logical_Switch_Port")
                .unwrap()
                .iter()
                .next()
                .unwrap()
                .1
                .get("tag")
                .cloned()
        };
        c.apply_update2(
            &schema,
            &serde_json::json!({"Logical_Switch_Port": {u: {"insert": {"name": "ln", "tag": 100}}}}),
        )
        .unwrap();
        assert_eq!(tag(&c), Some(Datum::from(100)));
        c.apply_update2(
            &schema,
            &serde_json::json!({"Logical_Switch_Port": {u: {"modify": {"tag": 200}}}}),
        )
        .unwrap();
        assert_eq!(tag(&c), Some(Datum::from(200)));
        c.apply_update2(
            &schema,
            &serde_json::json!({"Logical_Switch_Port": {u: {"modify": {"tag": ["set", []]}}}}),
        )
        .unwrap();
        assert_eq!(tag(&c), Some(Datum::empty_set()));
    }

    /// The streaming decoder of a reply frame yields exactly what decoding the parsed updates
    /// does; errors and garbage are errors, never panics.
    #[test]
    fn since_reply_frames_decode_like_parsed_updates() {
        let schema = nb();
        let updates = serde_json::json!({
            "Logical_Switch": {
                "6a3e2f1c-0000-4000-8000-000000000001": {"initial": {"name": "ls1", "other_config": ["map", [["subnet", "10.0.0.0/24"]]]}},
            },
            "Address_Set": {
                "6a3e2f1c-0000-4000-8000-000000000002": {"initial": {"name": "as1", "addresses": ["set", ["10.0.0.1", "10.0.0.2"]]}},
            },
        });
        let frame = serde_json::json!({"id": 7, "error": null, "result": [false, "6a3e2f1c-0000-4000-8000-0000000000ff", updates]});
        let reply = DecodedSinceReply::decode(&schema, frame.to_string().as_bytes()).unwrap();
        assert!(!reply.found);
        assert_eq!(reply.len(), 2);
        let mut streamed = CacheData::default();
        streamed.apply_since_reply(reply).unwrap();
        let mut parsed = CacheData::default();
        parsed.apply_update2(&schema, &updates).unwrap();
        for t in ["Logical_Switch", "Address_Set"] {
            assert_eq!(rows(&streamed, t), rows(&parsed, t), "{t}");
        }

        let err = serde_json::json!({"id": 7, "result": null, "error": "unknown database"});
        assert!(matches!(
            DecodedSinceReply::decode(&schema, err.to_string().as_bytes()),
            Err(Error::Rpc { .. })
        ));
        for garbage in [
            &b"{"[..],
            b"[]",
            b"{\"result\": [true]}",
            b"{\"result\": [true, \"x\", {}]}",
            b"{\"result\": [true, \"6a3e2f1c-0000-4000-8000-0000000000ff\", {\"Nope\": {}}]}",
            b"{\"result\": [true, \"6a3e2f1c-0000-4000-8000-0000000000ff\", {\"Logical_Switch\": {\"u\": {\"initial\": {}}}}]}",
        ] {
            assert!(DecodedSinceReply::decode(&schema, garbage).is_err());
        }
    }

    /// Updates applied unobserved (in place) leave the same rows and name index as applied
    /// with their changes; a row a reader still holds keeps its old contents.
    #[test]
    fn unobserved_updates_apply_like_observed_ones() {
        let schema = nb();
        let (a, b) = (
            "6a3e2f1c-0000-4000-8000-000000000001",
            "6a3e2f1c-0000-4000-8000-000000000002",
        );
        let steps = [
            serde_json::json!({"Address_Set": {
                a: {"insert": {"name": "as1", "addresses": ["set", ["10.0.0.1", "10.0.0.2"]]}},
                b: {"insert": {"name": "as2", "addresses": "10.0.0.9"}},
            }}),
            serde_json::json!({"Address_Set": {
                a: {"modify": {"addresses": ["set", ["10.0.0.2", "10.0.0.3"]]}},
                b: {"modify": {"name": "as3"}},
            }}),
            serde_json::json!({"Address_Set": {b: {"delete": null}}}),
        ];
        let mut observed = CacheData::default();
        let mut quiet = CacheData::default();
        let mut held = None;
        for step in &steps {
            observed.apply_update2(&schema, step).unwrap();
            let decoded = DecodedUpdates::decode(&schema, step).unwrap();
            quiet.apply_decoded_unobserved(decoded).unwrap();
            held.get_or_insert_with(|| {
                quiet
                    .table("Address_Set")
                    .unwrap()
                    .get(&a.parse().unwrap())
                    .cloned()
            });
            assert_eq!(
                rows(&quiet, "Address_Set"),
                rows(&observed, "Address_Set"),
                "after {step}"
            );
            for name in ["as1", "as2", "as3"] {
                let names = |c: &CacheData| c.table("Address_Set").unwrap().by_name(name).count();
                assert_eq!(names(&quiet), names(&observed), "{name} after {step}");
            }
        }
        let held = held.flatten().unwrap();
        assert!(
            held.get("addresses")
                .unwrap()
                .as_set()
                .unwrap()
                .contains(&Atom::from("10.0.0.1")),
            "the held row kept its first contents"
        );
        let now = quiet
            .table("Address_Set")
            .unwrap()
            .get(&a.parse().unwrap())
            .unwrap()
            .clone();
        assert!(now
            .get("addresses")
            .unwrap()
            .as_set()
            .unwrap()
            .contains(&Atom::from("10.0.0.3")));
    }
}
