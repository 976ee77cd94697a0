//! Reads of the test's NB replica shared by the policy tests: rows by table and name, their
//! string and set columns, a port's UUID, and the ACL rows a port group holds.

use std::collections::BTreeSet;

use ovsdb::{Atom, Datum, Row};

use super::World;

/// Every row of `table`.
pub fn rows(w: &World, table: &str) -> Vec<Row> {
    let c = w.nb.cache();
    c.table(table)
        .map(|t| t.iter().map(|(_, r)| (**r).clone()).collect())
        .unwrap_or_default()
}

/// A string column ("" when absent).
pub fn text(r: &Row, c: &str) -> String {
    r.get(c)
        .and_then(Datum::as_atom)
        .and_then(Atom::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The row of `table` named `name`.
pub fn named(w: &World, table: &str, name: &str) -> Option<Row> {
    let c = w.nb.cache();
    let t = c.table(table)?;
    let found = t.by_name(name).next().map(|(_, r)| (**r).clone());
    found
}

/// A string set column.
pub fn set_of(r: &Row, c: &str) -> BTreeSet<String> {
    r.get(c)
        .and_then(Datum::as_set)
        .map(|s| {
            s.iter()
                .filter_map(Atom::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The UUID of logical switch port `name`, as a port group's member atom.
pub fn port_uuid(w: &World, name: &str) -> Option<Atom> {
    let c = w.nb.cache();
    let found = c
        .table("Logical_Switch_Port")?
        .by_name(name)
        .next()
        .map(|(u, _)| Atom::Uuid(*u));
    found
}

/// The ACL rows port group `pg` holds (none when it does not exist).
pub fn pg_acl_rows(w: &World, pg: &str) -> Vec<Row> {
    let Some(p) = named(w, "Port_Group", pg) else {
        return Vec::new();
    };
    let ids: BTreeSet<Atom> = p
        .get("acls")
        .and_then(Datum::as_set)
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    let c = w.nb.cache();
    c.table("ACL")
        .map(|t| {
            t.iter()
                .filter(|(u, _)| ids.contains(&Atom::Uuid(**u)))
                .map(|(_, r)| (**r).clone())
                .collect()
        })
        .unwrap_or_default()
}

/// An ACL row's priority.
pub fn priority(r: &Row) -> i64 {
    r.get("priority")
        .and_then(Datum::as_atom)
        .and_then(Atom::as_i64)
        .unwrap_or_default()
}
