//! The client-side replica of a database: rows by table and UUID, with name and `external_ids`
//! indexes, filled and kept current from `update2`/`update3` notifications. Every notification is
//! applied whole under one write lock, so a reader never sees half of a transaction.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use crate::datum::{Atom, Datum, Row};
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
        let ops = decode_update2(schema, updates)?;
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
    Modify(Vec<(String, Datum, bool)>),
    Delete,
}

fn decode_update2(schema: &DatabaseSchema, updates: &Value) -> Result<Vec<(String, Uuid, RowOp)>> {
    let bad = |m: String| Error::Protocol(format!("bad update: {m}"));
    let mut out = Vec::new();
    let Some(tables) = updates.as_object() else {
        return Err(bad(format!("not an object: {updates}")));
    };
    for (tname, rows) in tables {
        let ts = schema
            .table(tname)
            .ok_or_else(|| bad(format!("unknown table {tname}")))?;
        for (u, ru) in rows
            .as_object()
            .ok_or_else(|| bad(format!("{tname} is not an object")))?
        {
            let uuid = Uuid::parse_str(u).map_err(|_| bad(format!("bad row uuid {u}")))?;
            let (kind, body) = ru
                .as_object()
                .and_then(|o| o.iter().next())
                .ok_or_else(|| bad(format!("empty row update for {u}")))?;
            let decode_cols = |diff: bool| -> Result<Vec<(String, Datum, bool)>> {
                let Some(cols) = body.as_object() else {
                    return Err(bad(format!("row {u} is not an object")));
                };
                cols.iter()
                    .filter_map(|(c, v)| ts.column(c).map(|cs| (c, v, cs)))
                    .map(|(c, v, cs)| {
                        let is_diff = diff && !cs.ty.is_scalar();
                        let d = if is_diff {
                            Datum::from_json_diff(v, &cs.ty)
                        } else {
                            Datum::from_json_typed(v, &cs.ty)
                        };
                        d.map(|d| (c.clone(), d, is_diff))
                            .map_err(|e| bad(format!("{tname}.{c} of {u}: {e}")))
                    })
                    .collect()
            };
            let op = match kind.as_str() {
                "initial" | "insert" => {
                    // update2 leaves out columns that hold their default value.
                    let mut row: Row = ts
                        .columns
                        .iter()
                        .map(|(c, cs)| (c.clone(), cs.ty.default_datum()))
                        .collect();
                    row.extend(decode_cols(false)?.into_iter().map(|(c, d, _)| (c, d)));
                    RowOp::Put(row)
                }
                "modify" => RowOp::Modify(decode_cols(true)?),
                "delete" => RowOp::Delete,
                k => return Err(bad(format!("unknown row update kind {k}"))),
            };
            out.push((tname.clone(), uuid, op));
        }
    }
    Ok(out)
}
