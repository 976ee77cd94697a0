//! Coalescing of commutative set mutations inside one merged transaction (the rule is stated in
//! the [`crate::batch`] module doc). Pure: it only rearranges operations, the engine sends them.

use std::collections::HashMap;

use crate::datum::Datum;
use crate::ops::{Condition, Mutation, Operation};

/// Most groups tracked at once per table. Every operation on a table is checked against that
/// table's open groups, so this bounds planning to a constant cost per operation even when each
/// member targets a different row; mutates beyond it are simply sent as they are.
const MAX_OPEN_GROUPS: usize = 64;

/// How the operations of a merged transaction go on the wire.
pub(super) struct Plan {
    /// The operations to send, in order.
    pub wire: Vec<Wire>,
    /// For each submitted operation (flat, in submission order): the index in `wire` of the
    /// operation whose result it receives.
    pub result_of: Vec<usize>,
}

/// One operation of a [`Plan`].
pub(super) enum Wire {
    /// The submitted operation with this flat index, unchanged.
    Op(usize),
    /// One mutate standing for several submitted ones.
    Coalesced(Operation),
}

/// What makes two mutates mergeable: they act on the same rows (equal `where`), the same column,
/// with the same mutator.
#[derive(PartialEq)]
struct Key<'a> {
    table: &'a str,
    conditions: &'a [Condition],
    column: &'a str,
    mutator: &'static str,
}

struct Group<'a> {
    key: Key<'a>,
    /// Union of the members' values.
    value: Datum,
    /// Flat indexes of the members, ascending.
    members: Vec<usize>,
}

impl Group<'_> {
    /// Adds a member's value. Fails (leaving the group unchanged) when the union could not say
    /// what the members say one after another: a value of the other kind (set vs map), or a map
    /// key already present with another value.
    fn absorb(&mut self, v: &Datum) -> bool {
        match (&mut self.value, v) {
            (Datum::Set(s), Datum::Set(v)) => {
                s.extend(v.iter().cloned());
                true
            }
            (Datum::Map(m), Datum::Map(v)) => {
                if v.iter().any(|(k, x)| m.get(k).is_some_and(|y| y != x)) {
                    return false;
                }
                m.extend(v.iter().map(|(k, x)| (k.clone(), x.clone())));
                true
            }
            _ => false,
        }
    }

    fn into_op(self) -> Operation {
        Operation::Mutate {
            table: self.key.table.to_string(),
            conditions: self.key.conditions.to_vec(),
            mutations: vec![Mutation {
                column: self.key.column.to_string(),
                mutator: self.key.mutator,
                value: self.value,
            }],
        }
    }
}

/// The key and value of a mutate that may be coalesced: exactly one mutation, `insert` or
/// `delete`, on a column its own `where` does not read (else the mutation changes which rows
/// later copies of it match).
fn coalescible(op: &Operation) -> Option<(Key<'_>, &Datum)> {
    let Operation::Mutate {
        table,
        conditions,
        mutations,
    } = op
    else {
        return None;
    };
    let [m] = mutations.as_slice() else {
        return None;
    };
    if !matches!(m.mutator, "insert" | "delete") || conditions.iter().any(|c| c.column == m.column)
    {
        return None;
    }
    Some((
        Key {
            table,
            conditions,
            column: &m.column,
            mutator: m.mutator,
        },
        &m.value,
    ))
}

fn table_of(op: &Operation) -> Option<&str> {
    match op {
        Operation::Insert { table, .. }
        | Operation::Select { table, .. }
        | Operation::Update { table, .. }
        | Operation::Mutate { table, .. }
        | Operation::Delete { table, .. }
        | Operation::Wait { table, .. } => Some(table),
        Operation::Commit { .. }
        | Operation::Abort
        | Operation::Comment(_)
        | Operation::Assert { .. } => None,
    }
}

/// Whether `op` and a mutate of group `g` could give a different result or final state if their
/// order were swapped. Rows cannot be told apart without the data, so any two operations on the
/// table are assumed to meet on the same rows; the question is only which columns each reads and
/// writes. The mutate reads the columns of its `where` and writes its column and `_version`.
fn disturbs(op: &Operation, g: &Key, g_is_map: bool) -> bool {
    if table_of(op) != Some(g.table) {
        return false;
    }
    let g_writes = |c: &str| c == g.column || c == "_version";
    let g_reads = |c: &str| g.conditions.iter().any(|k| k.column == c);
    let reads_g_column = |conds: &[Condition]| conds.iter().any(|c| g_writes(&c.column));
    match op {
        // A new or vanished row changes which rows the `where` matches, and so the count.
        Operation::Insert { .. } | Operation::Delete { .. } => true,
        Operation::Select {
            conditions,
            columns,
            ..
        } => {
            reads_g_column(conditions)
                || match columns {
                    // No column list selects every column.
                    None => true,
                    Some(cols) => cols.iter().any(|c| g_writes(c)),
                }
        }
        Operation::Wait {
            conditions,
            columns,
            ..
        } => reads_g_column(conditions) || columns.iter().any(|c| g_writes(c)),
        Operation::Update {
            conditions, row, ..
        } => {
            reads_g_column(conditions)
                || g_reads("_version")
                || row.keys().any(|c| g_writes(c) || g_reads(c))
        }
        Operation::Mutate {
            conditions,
            mutations,
            ..
        } => {
            reads_g_column(conditions)
                || g_reads("_version")
                || mutations.iter().any(|m| {
                    g_reads(&m.column)
                        || (m.column == g.column && !commutes(m, g.mutator, g_is_map))
                })
        }
        Operation::Comment(_) => false,
        // Never part of a merged transaction; if one were, nothing may cross it.
        Operation::Commit { .. } | Operation::Abort | Operation::Assert { .. } => true,
    }
}

/// Whether mutation `m` and a mutation with `mutator` on the same column give the same result in
/// either order on any row: inserts into a set (a union), or deletes of anything (each only
/// removes). Map inserts do not: the first insert of a key wins.
fn commutes(m: &Mutation, mutator: &str, is_map: bool) -> bool {
    m.mutator == mutator && (mutator == "delete" || !(is_map || matches!(m.value, Datum::Map(_))))
}

/// Plans the wire operations for `ops`, the members' operations in submission order (named UUIDs
/// already made unique per member).
///
/// Walking the operations in order, each coalescible mutate joins the open group with its key or
/// opens one; any operation closes the open groups of its table that it [`disturbs`]. A group of
/// two or more is sent as one mutate, with the union of their values, at its last member's
/// position: moving the earlier members there crosses only operations that do not disturb them,
/// and every named UUID in the union was inserted before that position if it was before its own
/// mutate.
pub(super) fn plan(ops: &[&Operation]) -> Plan {
    let mut groups: Vec<Group> = Vec::new();
    let mut open: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut group_of: Vec<Option<usize>> = vec![None; ops.len()];
    for (i, op) in ops.iter().enumerate() {
        let me = coalescible(op);
        if let Some(list) = table_of(op).and_then(|t| open.get_mut(t)) {
            list.retain(|&g| {
                let grp = &groups[g];
                me.as_ref().is_some_and(|(k, _)| *k == grp.key)
                    || !disturbs(op, &grp.key, matches!(grp.value, Datum::Map(_)))
            });
        }
        let Some((key, value)) = me else {
            continue;
        };
        let list = open.entry(key.table).or_default();
        if let Some(pos) = list.iter().position(|&g| groups[g].key == key) {
            let g = list[pos];
            if groups[g].absorb(value) {
                groups[g].members.push(i);
                group_of[i] = Some(g);
                continue;
            }
            // The values cannot be united; the group ends before this mutate.
            list.remove(pos);
        }
        if list.len() < MAX_OPEN_GROUPS {
            list.push(groups.len());
            group_of[i] = Some(groups.len());
            groups.push(Group {
                key,
                value: value.clone(),
                members: vec![i],
            });
        }
    }

    let mut groups: Vec<Option<Group>> = groups.into_iter().map(Some).collect();
    let mut wire = Vec::with_capacity(ops.len());
    let mut result_of = vec![0; ops.len()];
    for (i, g) in group_of.into_iter().enumerate() {
        let merged = g.filter(|&g| groups[g].as_ref().is_some_and(|g| g.members.len() > 1));
        match merged {
            None => {
                result_of[i] = wire.len();
                wire.push(Wire::Op(i));
            }
            Some(g) if groups[g].as_ref().and_then(|g| g.members.last()) == Some(&i) => {
                let grp = groups[g].take().expect("group emitted once");
                for &m in &grp.members {
                    result_of[m] = wire.len();
                }
                wire.push(Wire::Coalesced(grp.into_op()));
            }
            Some(_) => {}
        }
    }
    Plan { wire, result_of }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::datum::{Atom, Row};

    fn mutate(table: &str, conds: Vec<Condition>, m: Mutation) -> Operation {
        Operation::Mutate {
            table: table.into(),
            conditions: conds,
            mutations: vec![m],
        }
    }

    fn add_port(sw: &str, port: &str) -> Operation {
        mutate(
            "Logical_Switch",
            vec![Condition::eq("name", sw)],
            Mutation::insert("ports", Datum::scalar(Atom::NamedUuid(port.into()))),
        )
    }

    fn insert(table: &str, name: &str) -> Operation {
        Operation::Insert {
            table: table.into(),
            row: Row::from([("name", Datum::scalar(name))]),
            uuid_name: Some(name.into()),
        }
    }

    fn plan_of(ops: &[Operation]) -> Plan {
        plan(&ops.iter().collect::<Vec<_>>())
    }

    /// The plan as text: `#i` for an operation sent unchanged, else the coalesced mutate's value.
    fn shape(p: &Plan) -> Vec<String> {
        p.wire
            .iter()
            .map(|w| match w {
                Wire::Op(i) => format!("#{i}"),
                Wire::Coalesced(Operation::Mutate { mutations, .. }) => {
                    mutations[0].value.to_json().to_string()
                }
                Wire::Coalesced(op) => panic!("coalesced into {op:?}"),
            })
            .collect()
    }

    #[test]
    fn ports_of_many_members_become_one_mutate_after_the_last_insert() {
        let ops: Vec<Operation> = (0..3)
            .flat_map(|i| {
                let n = format!("b{i}_row0");
                [insert("Logical_Switch_Port", &n), add_port("sw", &n)]
            })
            .collect();
        let p = plan_of(&ops);
        assert_eq!(
            shape(&p),
            [
                "#0",
                "#2",
                "#4",
                r#"["set",[["named-uuid","b0_row0"],["named-uuid","b1_row0"],["named-uuid","b2_row0"]]]"#
            ]
        );
        assert_eq!(p.result_of, [0, 3, 1, 3, 2, 3]);
        let Wire::Coalesced(Operation::Mutate {
            table, conditions, ..
        }) = &p.wire[3]
        else {
            panic!("not coalesced");
        };
        assert_eq!(table, "Logical_Switch");
        assert_eq!(conditions, &[Condition::eq("name", "sw")]);
    }

    #[test]
    fn interleaved_rows_coalesce_each_at_its_last_member() {
        let ops = [
            add_port("sw1", "a"),
            add_port("sw2", "b"),
            add_port("sw1", "c"),
            add_port("sw2", "d"),
            add_port("sw3", "e"),
        ];
        let p = plan_of(&ops);
        assert_eq!(
            shape(&p),
            [
                r#"["set",[["named-uuid","a"],["named-uuid","c"]]]"#,
                r#"["set",[["named-uuid","b"],["named-uuid","d"]]]"#,
                "#4"
            ]
        );
        assert_eq!(p.result_of, [0, 1, 0, 1, 2]);
    }

    #[test]
    fn open_groups_per_table_are_bounded() {
        let n = MAX_OPEN_GROUPS + 1;
        let ops: Vec<Operation> = (0..2)
            .flat_map(|round| {
                (0..n).map(move |sw| add_port(&format!("sw{sw}"), &format!("p{round}_{sw}")))
            })
            .collect();
        let p = plan_of(&ops);
        let merged = p
            .wire
            .iter()
            .filter(|w| matches!(w, Wire::Coalesced(_)))
            .count();
        assert_eq!(merged, MAX_OPEN_GROUPS);
        // The switch beyond the bound keeps its two mutates.
        assert_eq!(p.wire.len(), MAX_OPEN_GROUPS + 2);
        assert_ne!(p.result_of[n - 1], p.result_of[2 * n - 1]);
    }

    #[test]
    fn a_delete_between_inserts_keeps_them_apart_and_deletes_merge() {
        let m = |mutator: fn(&str, Datum) -> Mutation, v: &str| {
            mutate(
                "T",
                vec![Condition::eq("name", "x")],
                mutator("s", Datum::scalar(v)),
            )
        };
        let ops = [
            m(Mutation::insert, "v"),
            m(Mutation::delete, "v"),
            m(Mutation::delete, "w"),
            m(Mutation::insert, "v"),
        ];
        assert_eq!(shape(&plan_of(&ops)), ["#0", r#"["set",["v","w"]]"#, "#3"]);
    }

    /// For each operation placed between two mutates adding to `sw`'s ports: whether the two
    /// still merge.
    #[test]
    fn operations_between_end_the_group_only_if_they_could_notice() {
        let ls = "Logical_Switch";
        let sw = || vec![Condition::eq("name", "sw")];
        let select = |conditions, columns: Option<&[&str]>| Operation::Select {
            table: ls.into(),
            conditions,
            columns: columns.map(|c| c.iter().map(|c| c.to_string()).collect()),
        };
        let wait = |cols: &[&str]| Operation::Wait {
            table: ls.into(),
            conditions: sw(),
            columns: cols.iter().map(|c| c.to_string()).collect(),
            until_equal: true,
            rows: vec![],
            timeout: Some(std::time::Duration::ZERO),
        };
        let update = |col: &str| Operation::Update {
            table: ls.into(),
            conditions: sw(),
            row: Row::from([(
                crate::datum::column(col).expect("column"),
                Datum::empty_set(),
            )]),
        };
        let cases: Vec<(&str, Operation, bool)> = vec![
            ("select ports", select(sw(), Some(&["ports"])), false),
            ("select all columns", select(sw(), None), false),
            ("select name", select(sw(), Some(&["name"])), true),
            (
                "select where ports includes",
                select(
                    vec![Condition::includes("ports", Datum::empty_set())],
                    Some(&["name"]),
                ),
                false,
            ),
            ("wait on ports", wait(&["ports"]), false),
            ("wait on _version", wait(&["_version"]), false),
            ("wait on name", wait(&["name"]), true),
            ("update ports", update("ports"), false),
            ("update name (the where column)", update("name"), false),
            ("update other_config", update("other_config"), true),
            ("insert a switch", insert(ls, "sw"), false),
            (
                "delete a switch",
                Operation::Delete {
                    table: ls.into(),
                    conditions: vec![Condition::eq("name", "other")],
                },
                false,
            ),
            ("insert a port", insert("Logical_Switch_Port", "p"), true),
            (
                "delete a port",
                Operation::Delete {
                    table: "Logical_Switch_Port".into(),
                    conditions: vec![],
                },
                true,
            ),
            (
                "wait on another table",
                Operation::Wait {
                    table: "Logical_Switch_Port".into(),
                    conditions: vec![],
                    columns: vec!["_version".into()],
                    until_equal: false,
                    rows: vec![],
                    timeout: Some(std::time::Duration::ZERO),
                },
                true,
            ),
            (
                "mutate other_config",
                mutate(
                    ls,
                    sw(),
                    Mutation::insert("other_config", Datum::map([("k", "v")])),
                ),
                true,
            ),
            ("add a port to another switch", add_port("sw2", "q"), true),
            (
                "remove a port from another switch",
                mutate(
                    ls,
                    vec![Condition::eq("name", "sw2")],
                    Mutation::delete("ports", Datum::scalar(Atom::NamedUuid("q".into()))),
                ),
                false,
            ),
            (
                "mutate the where column",
                mutate(
                    ls,
                    vec![Condition::eq("name", "sw2")],
                    Mutation::insert("name", Datum::scalar("sw")),
                ),
                false,
            ),
            ("comment", Operation::Comment("c".into()), true),
        ];
        for (what, between, merges) in cases {
            let ops = [add_port("sw", "a"), between, add_port("sw", "b")];
            let p = plan_of(&ops);
            let merged = p.wire.iter().any(|w| {
                matches!(w, Wire::Coalesced(Operation::Mutate { conditions, .. })
                    if conditions == &[Condition::eq("name", "sw")])
            });
            assert_eq!(merged, merges, "{what}: {:?}", shape(&p));
            if merges {
                assert_eq!(p.result_of[0], p.result_of[2], "{what}");
                assert!(p.result_of[1] < p.result_of[0], "{what}: moved after it");
            }
        }
    }

    #[test]
    fn map_inserts_merge_unless_a_key_gets_two_values() {
        let m = |sw: &str, k: &str, v: &str| {
            mutate(
                "T",
                vec![Condition::eq("name", sw)],
                Mutation::insert("external_ids", Datum::map([(k, v)])),
            )
        };
        let ops = [
            m("x", "a", "1"),
            m("x", "b", "2"),
            m("x", "a", "1"),
            m("x", "a", "9"),
            m("x", "c", "3"),
        ];
        assert_eq!(
            shape(&plan_of(&ops)),
            [
                r#"["map",[["a","1"],["b","2"]]]"#,
                r#"["map",[["a","9"],["c","3"]]]"#
            ]
        );
        // On the same column of possibly the same rows, the first insert of a key wins, so map
        // inserts with another `where` in between keep their order.
        let ops = [m("x", "a", "1"), m("y", "a", "2"), m("x", "b", "1")];
        assert_eq!(shape(&plan_of(&ops)), ["#0", "#1", "#2"]);
    }

    #[test]
    fn only_single_set_mutations_outside_their_where_are_candidates() {
        let c = || vec![Condition::eq("name", "x")];
        let two = Operation::Mutate {
            table: "T".into(),
            conditions: c(),
            mutations: vec![
                Mutation::insert("s", Datum::scalar(1)),
                Mutation::insert("t", Datum::scalar(1)),
            ],
        };
        let own_where = mutate(
            "T",
            vec![Condition::includes("s", Datum::scalar(1))],
            Mutation::delete("s", Datum::scalar(1)),
        );
        let add = mutate("T", c(), Mutation::add("n", Datum::scalar(1)));
        let reordered = |a, b| {
            mutate(
                "T",
                vec![Condition::eq("name", a), Condition::ne("name", b)],
                Mutation::insert("s", Datum::scalar(1)),
            )
        };
        for (what, op, other) in [
            ("two mutations", two.clone(), two),
            ("column in its own where", own_where.clone(), own_where),
            ("+=", add.clone(), add),
            ("conditions in another order", reordered("x", "y"), {
                let Operation::Mutate {
                    table,
                    mut conditions,
                    mutations,
                } = reordered("x", "y")
                else {
                    unreachable!()
                };
                conditions.reverse();
                Operation::Mutate {
                    table,
                    conditions,
                    mutations,
                }
            }),
        ] {
            assert_eq!(shape(&plan_of(&[op, other])), ["#0", "#1"], "{what}");
        }
    }

    // A model of OVSDB's execution of the operations above, on one table `T` (columns `name`, a
    // set `s` of at most 3 integers, a map `m`) and an unrelated table `U`, to check that a plan
    // does what running the operations in order does.

    const S_MAX: usize = 3;

    #[derive(Debug, Clone, PartialEq)]
    enum Res {
        Uuid(i64),
        Count(usize),
        Rows(Vec<Row>),
        Done,
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Db {
        t: Vec<Row>,
        next_id: i64,
    }

    impl Db {
        fn new() -> Db {
            let mut db = Db {
                t: vec![],
                next_id: 0,
            };
            let row = |n: &str, s: Datum, m: Datum| {
                Row::from([("name", Datum::scalar(n)), ("s", s), ("m", m)])
            };
            db.insert("T", &row("a", Datum::set([0, 1]), Datum::map([(0, 0)])));
            db.insert("T", &row("b", Datum::set([1]), Datum::map([(1, 1)])));
            db.insert("T", &row("a", Datum::empty_set(), Datum::empty_map()));
            db
        }

        fn insert(&mut self, table: &str, row: &Row) -> i64 {
            let id = self.next_id;
            self.next_id += 1;
            if table == "T" {
                let mut r = Row::from([
                    ("_uuid", Datum::scalar(id)),
                    // Stands for `_version`: whether the row was modified in this transaction.
                    ("_version", Datum::scalar(false)),
                    ("name", Datum::scalar("")),
                    ("s", Datum::empty_set()),
                    ("m", Datum::empty_map()),
                ]);
                r.extend(row.clone());
                self.t.push(r);
            }
            id
        }
    }

    fn matches(row: &Row, conds: &[Condition]) -> bool {
        conds
            .iter()
            .all(|c| match (c.function, &row[c.column.as_str()], &c.value) {
                ("==", v, x) => v == x,
                ("includes", Datum::Set(v), Datum::Set(x)) => x.is_subset(v),
                (f, ..) => panic!("the model has no {f}"),
            })
    }

    fn project(row: &Row, cols: Option<&[String]>) -> Row {
        row.iter()
            .filter(|(k, _)| cols.is_none_or(|c| c.iter().any(|x| x == *k)))
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }

    /// Parse-time checks: the value's kind fits the column, an insert fits its size limit.
    fn well_typed(m: &Mutation) -> bool {
        match (m.column.as_str(), m.mutator, &m.value) {
            ("s", "insert", Datum::Set(v)) => v.len() <= S_MAX,
            ("s", "delete", Datum::Set(_)) => true,
            ("m", "insert", Datum::Map(_)) => true,
            ("m", "delete", _) => true,
            _ => false,
        }
    }

    fn apply(d: &mut Datum, m: &Mutation) -> Result<(), ()> {
        match (m.mutator, &mut *d, &m.value) {
            ("insert", Datum::Set(s), Datum::Set(v)) => s.extend(v.iter().cloned()),
            ("delete", Datum::Set(s), Datum::Set(v)) => s.retain(|a| !v.contains(a)),
            ("insert", Datum::Map(mm), Datum::Map(v)) => {
                for (k, x) in v {
                    if !mm.contains_key(k) {
                        mm.insert(k.clone(), x.clone());
                    }
                }
            }
            ("delete", Datum::Map(mm), Datum::Map(v)) => mm.retain(|k, x| v.get(k) != Some(x)),
            ("delete", Datum::Map(mm), Datum::Set(keys)) => mm.retain(|k, _| !keys.contains(k)),
            _ => return Err(()),
        }
        if m.column == "s" && d.len() > S_MAX {
            return Err(());
        }
        Ok(())
    }

    fn exec(db: &mut Db, op: &Operation) -> Result<Res, ()> {
        let touched = |db: &mut Db, conds: &[Condition]| -> Vec<usize> {
            (0..db.t.len())
                .filter(|&i| matches(&db.t[i], conds))
                .collect()
        };
        match op {
            Operation::Insert { table, row, .. } => Ok(Res::Uuid(db.insert(table, row))),
            Operation::Delete { conditions, .. } => {
                let before = db.t.len();
                db.t.retain(|r| !matches(r, conditions));
                Ok(Res::Count(before - db.t.len()))
            }
            Operation::Update {
                conditions, row, ..
            } => {
                let rows = touched(db, conditions);
                for &i in &rows {
                    db.t[i].extend(row.clone());
                    db.t[i].insert("_version", Datum::scalar(true));
                }
                Ok(Res::Count(rows.len()))
            }
            Operation::Mutate {
                conditions,
                mutations,
                ..
            } => {
                if !mutations.iter().all(well_typed) {
                    return Err(());
                }
                let rows = touched(db, conditions);
                for &i in &rows {
                    for m in mutations {
                        apply(db.t[i].get_mut(m.column.as_str()).expect("column"), m)?;
                    }
                    db.t[i].insert("_version", Datum::scalar(true));
                }
                Ok(Res::Count(rows.len()))
            }
            Operation::Select {
                conditions,
                columns,
                ..
            } => Ok(Res::Rows(
                db.t.iter()
                    .filter(|r| matches(r, conditions))
                    .map(|r| project(r, columns.as_deref()))
                    .collect(),
            )),
            Operation::Wait {
                conditions,
                columns,
                until_equal,
                rows,
                ..
            } => {
                let actual: BTreeSet<Row> =
                    db.t.iter()
                        .filter(|r| matches(r, conditions))
                        .map(|r| project(r, Some(columns)))
                        .collect();
                let expected: BTreeSet<Row> = rows.iter().cloned().collect();
                if (actual == expected) == *until_equal {
                    Ok(Res::Done)
                } else {
                    Err(())
                }
            }
            Operation::Comment(_) => Ok(Res::Done),
            other => panic!("the model has no {other:?}"),
        }
    }

    type Outcome = Result<(Vec<Res>, Db), ()>;

    fn run_in_order(ops: &[Operation]) -> Outcome {
        let mut db = Db::new();
        let res = ops
            .iter()
            .map(|op| exec(&mut db, op))
            .collect::<Result<_, _>>()?;
        Ok((res, db))
    }

    fn run_planned(ops: &[Operation], p: &Plan) -> Outcome {
        let mut db = Db::new();
        let mut wire = Vec::new();
        for w in &p.wire {
            wire.push(exec(
                &mut db,
                match w {
                    Wire::Op(i) => &ops[*i],
                    Wire::Coalesced(op) => op,
                },
            )?);
        }
        Ok((p.result_of.iter().map(|&w| wire[w].clone()).collect(), db))
    }

    /// One operation as a few small numbers, which proptest shrinks well: `kind`, the `where`
    /// (`c`) and values (`a`, `b`, `d`).
    type Code = (u8, u8, u8, u8, u8);

    /// The kinds of [`op`] that are coalescible mutates.
    const MUTATE_KINDS: [u8; 7] = [4, 5, 6, 7, 8, 9, 13];

    fn op((kind, c, a, b, d): Code) -> Operation {
        let int = |x: u8, n: u8| Atom::Integer(i64::from(x % n));
        let name = |x: u8| Datum::scalar(["a", "b"][usize::from(x % 2)]);
        // Few distinct `where`s and values, so that equal keys and overlapping rows are common.
        let conds = match c % 4 {
            0 => vec![Condition::eq("name", name(0))],
            1 => vec![],
            2 => vec![Condition::includes("s", Datum::set([int(c / 4, 3)]))],
            _ => vec![Condition::eq("_uuid", Datum::scalar(2))],
        };
        let t = "T".to_string();
        let m = |mutations| Operation::Mutate {
            table: t.clone(),
            conditions: conds.clone(),
            mutations,
        };
        match kind % 15 {
            0 => Operation::Insert {
                table: t,
                row: Row::from([("name", name(a))]),
                uuid_name: None,
            },
            1 => Operation::Insert {
                table: "U".into(),
                row: Row::new(),
                uuid_name: None,
            },
            2 => Operation::Delete {
                table: t,
                conditions: conds,
            },
            3 => Operation::Update {
                table: t,
                conditions: conds,
                row: match a % 3 {
                    0 => Row::from([("name", name(b))]),
                    1 => Row::from([("s", Datum::set([int(b, 3)]))]),
                    _ => Row::from([("m", Datum::map([(int(b, 3), int(d, 3))]))]),
                },
            },
            4 | 5 => m(vec![Mutation::insert(
                "s",
                Datum::set([int(a, 3), int(b, 3)]),
            )]),
            6 => m(vec![Mutation::delete("s", Datum::set([int(a, 3)]))]),
            7 => m(vec![Mutation::insert(
                "m",
                Datum::map([(int(a, 3), int(b, 3))]),
            )]),
            8 => m(vec![Mutation::delete(
                "m",
                Datum::map([(int(a, 3), int(b, 3))]),
            )]),
            9 => m(vec![Mutation::delete("m", Datum::set([int(a, 3)]))]),
            10 => m(vec![
                Mutation::insert("s", Datum::set([int(a, 3)])),
                Mutation::insert("m", Datum::map([(int(b, 3), int(d, 3))])),
            ]),
            11 => Operation::Select {
                table: t,
                conditions: conds,
                columns: match a % 4 {
                    0 => None,
                    1 => Some(vec!["s".into()]),
                    2 => Some(vec!["m".into()]),
                    _ => Some(vec!["name".into(), "_version".into()]),
                },
            },
            12 => Operation::Wait {
                table: t,
                conditions: conds,
                columns: vec!["s".into()],
                until_equal: b % 2 == 0,
                rows: vec![Row::from([(
                    "s",
                    if a % 4 == 3 {
                        Datum::empty_set()
                    } else {
                        Datum::set([int(a, 3)])
                    },
                )])],
                timeout: Some(std::time::Duration::ZERO),
            },
            13 => m(vec![Mutation::insert(
                "s",
                Datum::map([(int(a, 3), int(b, 3))]),
            )]),
            _ => Operation::Comment("c".into()),
        }
    }

    /// Any operations, or (more often) two mutates of the same key with a few operations in
    /// between: the case the rule is about.
    fn case() -> impl proptest::strategy::Strategy<Value = Vec<Operation>> {
        use proptest::collection::vec;
        use proptest::prelude::*;
        let code = any::<Code>;
        prop_oneof![
            1 => vec(code(), 1..24).prop_map(|c| c.into_iter().map(op).collect()),
            3 => (
                vec(code(), 0..4),
                code(),
                vec(code(), 1..3),
                any::<(u8, u8, u8)>(),
                vec(code(), 0..3),
            )
                .prop_map(|(pre, (k, c, a, b, d), between, (a2, b2, d2), post)| {
                    let k = MUTATE_KINDS[usize::from(k) % MUTATE_KINDS.len()];
                    let mut ops: Vec<Operation> = pre.into_iter().map(op).collect();
                    ops.push(op((k, c, a, b, d)));
                    ops.extend(between.into_iter().map(op));
                    ops.push(op((k, c, a2, b2, d2)));
                    ops.extend(post.into_iter().map(op));
                    ops
                }),
        ]
    }

    /// Whether the plan sends a set insert bigger than the column allows. ovsdb-server refuses
    /// such a value even when no row matches, where the separate inserts would have done nothing;
    /// the merged transaction then fails and its members are re-run alone.
    fn oversized_union(p: &Plan) -> bool {
        p.wire.iter().any(|w| {
            matches!(w, Wire::Coalesced(Operation::Mutate { mutations, .. })
                if mutations[0].mutator == "insert" && mutations[0].value.len() > S_MAX)
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn a_plan_does_what_running_in_order_does(ops in case()) {
            let p = plan_of(&ops);
            let planned = run_planned(&ops, &p);
            let in_order = run_in_order(&ops);
            match (&planned, &in_order) {
                // A merged transaction that fails is re-run member by member: harmless, as long
                // as it can only happen for the reason documented.
                (Err(()), Ok(_)) => proptest::prop_assert!(oversized_union(&p), "{:?}", shape(&p)),
                _ => proptest::prop_assert_eq!(planned, in_order, "{:?}", shape(&p)),
            }
        }
    }
}
