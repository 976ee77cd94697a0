//! Turning "this is how these rows should look" into the fewest OVSDB operations, by diffing
//! against a replica's cache: nothing is written for a row that already matches, only the
//! changed columns are updated, children are attached to and detached from their parents with
//! `mutate` (never by rewriting the parent's whole reference set, which would race other
//! writers), and rows created in the same plan reference each other by named UUID.
//!
//! A plan only reads the cache snapshot it was built on; the caller sends the resulting
//! transaction (through the group-commit batcher) and re-plans on conflict. Planning is pure, so
//! "a converged database gets zero writes" is a property of this module, testable without a
//! server. It lives here, not in one program, so every writer of a database kept in a
//! [`crate::Replica`] (the controller's OVN_Northbound, a node's Open_vSwitch, the
//! interconnection databases) converges it the same way.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use crate::cache::TableCache;
use crate::{
    Atom, AtomSet, CacheData, Condition, Datum, Mutation, Operation, Row, Transaction, Uuid,
};

/// A row the plan can point at: one that exists, or one it inserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowRef {
    /// An existing row.
    Existing(Uuid),
    /// A row inserted by this plan, by its named UUID.
    New(String),
}

impl RowRef {
    /// The atom that references this row in a column.
    pub fn atom(&self) -> Atom {
        match self {
            RowRef::Existing(u) => Atom::Uuid(*u),
            RowRef::New(n) => Atom::NamedUuid(n.clone()),
        }
    }

    fn condition(&self) -> Condition {
        match self {
            RowRef::Existing(u) => Condition::uuid(*u),
            RowRef::New(n) => Condition::eq("_uuid", Datum::from(Atom::NamedUuid(n.clone()))),
        }
    }
}

/// Where children hang: a parent row (by table and name) and its reference column, e.g.
/// `Logical_Switch` `ovn-default` `ports`.
#[derive(Debug, Clone, Copy)]
pub struct Parent<'a> {
    /// Parent table.
    pub table: &'a str,
    /// Parent row's `name`.
    pub name: &'a str,
    /// Column holding the child references.
    pub column: &'a str,
}

/// Why a plan could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The parent row does not exist and is not created by this plan.
    #[error("{table} {name} does not exist")]
    MissingParent { table: String, name: String },
    /// The table is not in the cache (not monitored), so the plan cannot tell what exists: an
    /// insert would duplicate rows and a delete would miss them.
    #[error("table {table} is not monitored")]
    Unmonitored { table: String },
}

/// Operations to converge part of the NB on a desired state.
pub struct Plan<'c> {
    cache: &'c CacheData,
    txn: Transaction,
    ops: usize,
    refs: HashMap<(String, String), RowRef>,
    /// Children attached/detached by this plan, per (parent table, parent uuid or name, column).
    attached: HashMap<(String, String, String), BTreeSet<Atom>>,
    /// Attachments, one mutate per parent column, sent after every other operation: ovsdb-server
    /// copies the whole set column for each mutate, so a node's hundred new policies on a
    /// router holding ten thousand cost one copy, not a hundred.
    attaches: Vec<(String, Condition, String, Vec<Atom>)>,
    /// Position in `attaches` of each (parent table, parent, column).
    attach_at: HashMap<(String, String, String), usize>,
}

impl<'c> Plan<'c> {
    /// A plan for database `db` against the cache snapshot `cache`.
    pub fn new(cache: &'c CacheData, db: &str) -> Plan<'c> {
        Plan {
            cache,
            txn: Transaction::new(db),
            ops: 0,
            refs: HashMap::new(),
            attached: HashMap::new(),
            attaches: Vec::new(),
            attach_at: HashMap::new(),
        }
    }

    /// Whether the plan writes nothing (the NB already matches).
    pub fn is_empty(&self) -> bool {
        self.ops == 0
    }

    /// Number of operations so far.
    pub fn len(&self) -> usize {
        self.ops
    }

    /// The transaction to send.
    pub fn into_transaction(mut self) -> Transaction {
        // Last: every row they reference is inserted before, and nothing in a plan reads a
        // parent's column after attaching to it.
        for (table, condition, column, children) in std::mem::take(&mut self.attaches) {
            self.txn.push(Operation::Mutate {
                table,
                conditions: vec![condition],
                mutations: vec![Mutation::insert(&column, Datum::set(children))],
            });
        }
        self.txn
    }

    /// The cache snapshot the plan reads.
    pub fn cache(&self) -> &'c CacheData {
        self.cache
    }

    /// The cached table: an error when it is not monitored, where the plan could neither
    /// find its rows nor tell that there are none.
    pub fn monitored(&self, table: &str) -> Result<&'c TableCache, PlanError> {
        self.cache
            .table(table)
            .ok_or_else(|| PlanError::Unmonitored {
                table: table.to_string(),
            })
    }

    fn push(&mut self, op: Operation) {
        self.txn.push(op);
        self.ops += 1;
    }

    /// The row named `name` in `table`: created earlier in this plan, or in the cache (the first
    /// one by UUID order if the NB holds duplicates).
    pub fn lookup(&self, table: &str, name: &str) -> Option<RowRef> {
        if let Some(r) = self.refs.get(&(table.to_string(), name.to_string())) {
            return Some(r.clone());
        }
        self.cache
            .table(table)?
            .by_name(name)
            .map(|(u, _)| *u)
            .min()
            .map(RowRef::Existing)
    }

    fn row(&self, table: &str, uuid: &Uuid) -> Option<&'c Row> {
        self.cache.table(table)?.get(uuid).map(|r| r.as_ref())
    }

    /// Makes a root row (a table whose rows live on their own: Logical_Switch,
    /// Logical_Router, Load_Balancer, Port_Group, Address_Set…) named `name` match `desired`
    /// (the columns listed; others are left alone).
    pub fn ensure_root(
        &mut self,
        table: &str,
        name: &str,
        desired: Row,
    ) -> Result<RowRef, PlanError> {
        self.monitored(table)?;
        let mut desired = desired;
        desired.insert("name", Datum::from(name));
        match self.lookup(table, name) {
            Some(RowRef::Existing(u)) => {
                let existing = self.row(table, &u).cloned().unwrap_or_default();
                self.update_changed(table, &RowRef::Existing(u), &existing, desired);
                Ok(RowRef::Existing(u))
            }
            Some(r @ RowRef::New(_)) => Ok(r),
            None => {
                let name_ref = RowRef::New(self.txn.insert(table, desired));
                self.ops += 1;
                self.refs
                    .insert((table.to_string(), name.to_string()), name_ref.clone());
                Ok(name_ref)
            }
        }
    }

    /// Inserts a non-root row that a row inserted later in this plan references from birth —
    /// a Meter must be inserted with its band (its `bands` column may not be empty). Its
    /// [`RowRef`] is what the referencing row's column takes.
    pub fn insert_referenced(&mut self, table: &str, row: Row) -> Result<RowRef, PlanError> {
        self.monitored(table)?;
        let r = RowRef::New(self.txn.insert(table, row));
        self.ops += 1;
        Ok(r)
    }

    /// Deletes a root row by name (no-op if absent).
    pub fn delete_root(&mut self, table: &str, name: &str) -> Result<(), PlanError> {
        self.monitored(table)?;
        match self.lookup(table, name) {
            Some(RowRef::Existing(u)) => self.delete_root_uuid(table, u),
            _ => Ok(()),
        }
    }

    /// Deletes a root row by UUID.
    pub fn delete_root_uuid(&mut self, table: &str, uuid: Uuid) -> Result<(), PlanError> {
        self.monitored(table)?;
        self.push(Operation::Delete {
            table: table.to_string(),
            conditions: vec![Condition::uuid(uuid)],
        });
        Ok(())
    }

    /// Updates the columns of `desired` that differ on an existing (or planned) row.
    pub fn update_row(&mut self, table: &str, at: &RowRef, desired: Row) -> Result<(), PlanError> {
        self.monitored(table)?;
        let existing = match at {
            RowRef::Existing(u) => self.row(table, u).cloned().unwrap_or_default(),
            RowRef::New(_) => Row::new(),
        };
        self.update_changed(table, at, &existing, desired);
        Ok(())
    }

    fn update_changed(&mut self, table: &str, at: &RowRef, existing: &Row, desired: Row) {
        let changed: Row = desired
            .into_iter()
            .filter(|(col, want)| !same(existing.get(col), want))
            .collect();
        if !changed.is_empty() {
            self.push(Operation::Update {
                table: table.to_string(),
                conditions: vec![at.condition()],
                row: changed,
            });
        }
    }

    /// The parent row, checking that both its table and the children's are monitored.
    fn parent_ref(&self, parent: &Parent<'_>, table: &str) -> Result<RowRef, PlanError> {
        self.monitored(table)?;
        self.monitored(parent.table)?;
        self.lookup(parent.table, parent.name)
            .ok_or_else(|| PlanError::MissingParent {
                table: parent.table.to_string(),
                name: parent.name.to_string(),
            })
    }

    /// The children currently referenced by an existing parent's column.
    pub fn children(&self, parent: &Parent<'_>) -> Vec<Uuid> {
        match self.lookup(parent.table, parent.name) {
            Some(RowRef::Existing(u)) => self
                .row(parent.table, &u)
                .and_then(|r| r.get(parent.column))
                .and_then(Datum::as_set)
                .map(|s| s.iter().filter_map(Atom::as_uuid).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Whether the existing `parent` holds `child` now: one search of its (sorted) column,
    /// where listing [`Plan::children`] copied a switch's ten thousand ports per pod.
    fn holds(&self, parent: &Parent<'_>, child: &Uuid) -> bool {
        match self.lookup(parent.table, parent.name) {
            Some(RowRef::Existing(u)) => self
                .row(parent.table, &u)
                .and_then(|r| r.get(parent.column))
                .and_then(Datum::as_set)
                .is_some_and(|s| s.contains(&Atom::Uuid(*child))),
            _ => false,
        }
    }

    fn attach(&mut self, parent: &Parent<'_>, at: &RowRef, child: Atom) {
        let key = (
            parent.table.to_string(),
            format!("{at:?}"),
            parent.column.to_string(),
        );
        if !self
            .attached
            .entry(key.clone())
            .or_default()
            .insert(child.clone())
        {
            return;
        }
        match self.attach_at.get(&key) {
            Some(&i) => self.attaches[i].3.push(child),
            None => {
                self.attach_at.insert(key, self.attaches.len());
                self.attaches.push((
                    parent.table.to_string(),
                    at.condition(),
                    parent.column.to_string(),
                    vec![child],
                ));
                self.ops += 1;
            }
        }
    }

    fn detach(&mut self, table: &str, column: &str, parent: Uuid, child: Uuid) {
        self.push(Operation::Mutate {
            table: table.to_string(),
            conditions: vec![Condition::uuid(parent)],
            mutations: vec![Mutation::delete(column, Datum::set([Atom::Uuid(child)]))],
        });
    }

    /// Rows of `table` whose `column` references `child`.
    fn holders(&self, table: &str, column: &str, child: Uuid) -> Vec<Uuid> {
        self.cache
            .table(table)
            .into_iter()
            .flat_map(|t| t.iter())
            .filter(|(_, r)| {
                r.get(column)
                    .and_then(Datum::as_set)
                    .is_some_and(|s| s.contains(&Atom::Uuid(child)))
            })
            .map(|(u, _)| *u)
            .collect()
    }

    /// Makes the child row named `name` (e.g. a Logical_Switch_Port) match `desired` and hang
    /// from `parent` only — moving it there if another row of the parent table holds it.
    pub fn ensure_named_child(
        &mut self,
        parent: Parent<'_>,
        table: &str,
        name: &str,
        desired: Row,
    ) -> Result<RowRef, PlanError> {
        let at = self.parent_ref(&parent, table)?;
        let mut desired = desired;
        desired.insert("name", Datum::from(name));
        let child = match self.lookup(table, name) {
            Some(RowRef::Existing(u)) => {
                let existing = self.row(table, &u).cloned().unwrap_or_default();
                self.update_changed(table, &RowRef::Existing(u), &existing, desired);
                for holder in self.holders(parent.table, parent.column, u) {
                    if at != RowRef::Existing(holder) {
                        self.detach(parent.table, parent.column, holder, u);
                    }
                }
                RowRef::Existing(u)
            }
            Some(r @ RowRef::New(_)) => r,
            None => {
                let r = RowRef::New(self.txn.insert(table, desired));
                self.ops += 1;
                self.refs
                    .insert((table.to_string(), name.to_string()), r.clone());
                r
            }
        };
        let held = match (&at, &child) {
            (RowRef::Existing(_), RowRef::Existing(c)) => self.holds(&parent, c),
            _ => false,
        };
        if !held {
            self.attach(&parent, &at, child.atom());
        }
        Ok(child)
    }

    /// Makes `parent` hold a child of `table` identified by the values of the `key` columns
    /// (e.g. a Logical_Router_Policy by priority and match) that matches `desired`.
    pub fn ensure_keyed_child(
        &mut self,
        parent: Parent<'_>,
        table: &str,
        key: &[&str],
        desired: Row,
    ) -> Result<RowRef, PlanError> {
        let at = self.parent_ref(&parent, table)?;
        let existing = self.children(&parent).into_iter().find(|u| {
            self.row(table, u).is_some_and(|r| {
                key.iter()
                    .all(|k| same(r.get(*k), desired.get(*k).unwrap_or(&Datum::empty_set())))
            })
        });
        Ok(self.put_keyed_child(&parent, &at, table, existing, desired))
    }

    /// Updates the `existing` child to `desired`, or inserts it and attaches it to `parent`.
    fn put_keyed_child(
        &mut self,
        parent: &Parent<'_>,
        at: &RowRef,
        table: &str,
        existing: Option<Uuid>,
        desired: Row,
    ) -> RowRef {
        match existing {
            Some(u) => {
                let empty = Row::new();
                let row = self.row(table, &u).unwrap_or(&empty);
                self.update_changed(table, &RowRef::Existing(u), row, desired);
                RowRef::Existing(u)
            }
            None => {
                let r = RowRef::New(self.txn.insert(table, desired));
                self.ops += 1;
                self.attach(parent, at, r.atom());
                r
            }
        }
    }

    /// Converges the children of `parent` that `owned` selects (e.g. "policies with
    /// external_ids:subnet=X") on exactly `desired`, keyed by `key`: missing ones are added,
    /// differing ones updated, owned extras detached (and so deleted, children being non-root).
    ///
    /// `scope`, an `external_ids` (key, value) every owned row carries, lets the plan look only
    /// at the rows the replica indexes under it instead of at every child — a router holds a
    /// policy per subnet and node, and each subnet's or node's plan owns a hundredth of them.
    /// Scoped, a child with a wanted key that lacks the scope's mark is not adopted (a twin is
    /// added beside it); rows kube-ovn writes always carry it.
    pub fn sync_keyed_children(
        &mut self,
        parent: Parent<'_>,
        table: &str,
        key: &[&str],
        desired: Vec<Row>,
        scope: Option<(&str, &str)>,
        owned: impl Fn(&Row) -> bool,
    ) -> Result<(), PlanError> {
        let at = self.parent_ref(&parent, table)?;
        let key_of = |r: &Row| -> Vec<Datum> {
            key.iter()
                .map(|k| normalize(r.get(*k).cloned().unwrap_or_default()))
                .collect()
        };
        // The same hash for rows with equal keys, computed without copying the key.
        let empty = Datum::empty_set();
        let key_hash = |r: &Row| -> u64 {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for k in key {
                column(r, k, &empty).hash(&mut h);
            }
            h.finish()
        };
        let wanted: BTreeSet<Vec<Datum>> = desired.iter().map(&key_of).collect();
        let wanted_hashes: HashSet<u64> = desired.iter().map(&key_hash).collect();
        // The wanted values of the first key column: looking one small column up dismisses
        // most children before their whole key is hashed (a router's policies mostly differ
        // from the wanted ones in priority already).
        let first = key.first().copied().unwrap_or_default();
        let wanted_first: HashSet<&Datum> =
            desired.iter().map(|r| column(r, first, &empty)).collect();
        let mut seen: BTreeSet<Vec<Datum>> = BTreeSet::new();
        // The first child (in `children` order, as `ensure_keyed_child` finds it) of each wanted
        // key, found in one pass: a router holds a policy per subnet and node, so looking each
        // desired row up by scanning all of them would be quadratic.
        let mut by_key: HashMap<Vec<Datum>, Uuid> = HashMap::new();
        if let RowRef::Existing(p) = at {
            for u in self.scoped_children(&parent, p, table, scope) {
                let Some(row) = self.row(table, &u) else {
                    continue;
                };
                let is_owned = owned(row);
                let k = if wanted_first.contains(column(row, first, &empty))
                    && wanted_hashes.contains(&key_hash(row))
                {
                    Some(key_of(row)).filter(|k| wanted.contains(k))
                } else {
                    None
                };
                if let Some(k) = &k {
                    by_key.entry(k.clone()).or_insert(u);
                }
                if !is_owned {
                    continue;
                }
                // A key seen twice is a duplicate row: keep the first only.
                if !k.is_some_and(|k| seen.insert(k)) {
                    self.detach(parent.table, parent.column, p, u);
                }
            }
        }
        for row in desired {
            let existing = by_key.get(&key_of(&row)).copied();
            self.put_keyed_child(&parent, &at, table, existing, row);
        }
        Ok(())
    }

    /// The children of `parent` (the existing row `p`) to look at: those indexed under `scope`
    /// when the replica indexes its key, else all of them; in UUID order either way.
    fn scoped_children(
        &self,
        parent: &Parent<'_>,
        p: Uuid,
        table: &str,
        scope: Option<(&str, &str)>,
    ) -> Vec<Uuid> {
        let indexed = scope.and_then(|(k, v)| {
            let t = self.cache.table(table)?;
            t.indexes_external_id(k)
                .then(|| t.by_external_id(k, v).map(|(u, _)| *u).collect::<Vec<_>>())
        });
        let Some(mut rows) = indexed else {
            return self.children(parent);
        };
        let held = self
            .row(parent.table, &p)
            .and_then(|r| r.get(parent.column))
            .and_then(Datum::as_set);
        rows.retain(|u| held.is_some_and(|h| h.contains(&Atom::Uuid(*u))));
        rows.sort();
        rows
    }

    /// Detaches a child (by UUID) from every row of the parent table holding it.
    pub fn remove_child(
        &mut self,
        parent_table: &str,
        column: &str,
        child: Uuid,
    ) -> Result<(), PlanError> {
        self.monitored(parent_table)?;
        for holder in self.holders(parent_table, column, child) {
            self.detach(parent_table, column, holder, child);
        }
        Ok(())
    }

    /// Adds and removes members of a set column of a named row (Port_Group `ports`,
    /// Logical_Switch `load_balancer`…) so that it includes `present` and excludes `absent`.
    pub fn set_members(
        &mut self,
        table: &str,
        name: &str,
        column: &str,
        present: &[Atom],
        absent: &[Atom],
    ) -> Result<(), PlanError> {
        self.monitored(table)?;
        let at = self
            .lookup(table, name)
            .ok_or_else(|| PlanError::MissingParent {
                table: table.to_string(),
                name: name.to_string(),
            })?;
        let empty = AtomSet::new();
        let current: &AtomSet = match &at {
            RowRef::Existing(u) => self
                .row(table, u)
                .and_then(|r| r.get(column))
                .and_then(Datum::as_set)
                .unwrap_or(&empty),
            RowRef::New(_) => &empty,
        };
        let add: Vec<Atom> = present
            .iter()
            .filter(|a| !current.contains(a))
            .cloned()
            .collect();
        let del: Vec<Atom> = absent
            .iter()
            .filter(|a| current.contains(a))
            .cloned()
            .collect();
        let mut mutations = Vec::new();
        if !add.is_empty() {
            mutations.push(Mutation::insert(column, Datum::set(add)));
        }
        if !del.is_empty() {
            mutations.push(Mutation::delete(column, Datum::set(del)));
        }
        if !mutations.is_empty() {
            self.push(Operation::Mutate {
                table: table.to_string(),
                conditions: vec![at.condition()],
                mutations,
            });
        }
        Ok(())
    }

    /// Sets keys of a string map column of a named row (Load_Balancer `vips`,
    /// `ip_port_mappings`…) to the `set` values and removes the `remove` keys, leaving every
    /// other key alone. One `mutate` carries only the keys that differ (delete by key, then
    /// insert), so writers of different keys of the same row never overwrite each other and a
    /// map of 50,000 entries is not rewritten to change one.
    pub fn set_map_entries(
        &mut self,
        table: &str,
        name: &str,
        column: &str,
        set: &[(String, String)],
        remove: &[String],
    ) -> Result<(), PlanError> {
        self.monitored(table)?;
        let at = self
            .lookup(table, name)
            .ok_or_else(|| PlanError::MissingParent {
                table: table.to_string(),
                name: name.to_string(),
            })?;
        let current = match &at {
            RowRef::Existing(u) => self
                .row(table, u)
                .and_then(|r| r.get(column))
                .and_then(Datum::as_map),
            RowRef::New(_) => None,
        };
        let value = |k: &str| current.and_then(|m| m.get_str(k)).and_then(Atom::as_str);
        let mut delete: Vec<Atom> = Vec::new();
        let mut insert: Vec<(Atom, Atom)> = Vec::new();
        for (k, v) in set {
            match value(k) {
                Some(have) if have == v => {}
                Some(_) => {
                    delete.push(Atom::from(k.as_str()));
                    insert.push((Atom::from(k.as_str()), Atom::from(v.as_str())));
                }
                None => insert.push((Atom::from(k.as_str()), Atom::from(v.as_str()))),
            }
        }
        for k in remove {
            if value(k).is_some() && !set.iter().any(|(s, _)| s == k) {
                delete.push(Atom::from(k.as_str()));
            }
        }
        let mut mutations = Vec::new();
        if !delete.is_empty() {
            mutations.push(Mutation::delete(column, Datum::set(delete)));
        }
        if !insert.is_empty() {
            mutations.push(Mutation::insert(column, Datum::map(insert)));
        }
        if !mutations.is_empty() {
            self.push(Operation::Mutate {
                table: table.to_string(),
                conditions: vec![at.condition()],
                mutations,
            });
        }
        Ok(())
    }
}

/// A row's column, with a missing or empty value as `empty` (see [`normalize`]).
fn column<'a>(r: &'a Row, name: &str, empty: &'a Datum) -> &'a Datum {
    r.get(name).filter(|d| !d.is_empty()).unwrap_or(empty)
}

/// Column equality as OVSDB sees it: an empty set and an empty map are the same empty value.
fn same(have: Option<&Datum>, want: &Datum) -> bool {
    match have {
        Some(h) => h == want || (h.is_empty() && want.is_empty()),
        None => want.is_empty(),
    }
}

fn normalize(d: Datum) -> Datum {
    if d.is_empty() {
        Datum::empty_set()
    } else {
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unmonitored_table_is_an_error_not_an_insert() {
        let cache = CacheData::new(&["Logical_Switch".to_string()], &[]);
        let mut plan = Plan::new(&cache, "OVN_Northbound");
        let unmonitored = |table: &str| PlanError::Unmonitored {
            table: table.to_string(),
        };
        assert_eq!(
            plan.ensure_root("Logical_Router", "lr", Row::new()),
            Err(unmonitored("Logical_Router"))
        );
        assert_eq!(
            plan.delete_root("Logical_Router", "lr"),
            Err(unmonitored("Logical_Router"))
        );
        assert!(plan.is_empty(), "nothing planned for an unmonitored table");
        plan.ensure_root("Logical_Switch", "ls", Row::new())
            .unwrap();
        let ports = Parent {
            table: "Logical_Switch",
            name: "ls",
            column: "ports",
        };
        assert_eq!(
            plan.ensure_named_child(ports, "Logical_Switch_Port", "p", Row::new()),
            Err(unmonitored("Logical_Switch_Port"))
        );
        assert_eq!(
            plan.sync_keyed_children(ports, "ACL", &["priority"], vec![], None, |_| true),
            Err(unmonitored("ACL"))
        );
        assert_eq!(plan.len(), 1, "only the monitored switch is inserted");
    }
}
