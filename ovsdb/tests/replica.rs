//! The replicated cache against real servers: it equals a fresh dump while ovn-nbctl writes
//! concurrently, and it converges after the server is killed and restarted.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use ovsdb::{
    Client, DatabaseSchema, Datum, Replica, ReplicaConfig, ReplicaState, Row, Transaction, Uuid,
};
use support::Server;

const NB: &str = "OVN_Northbound";

type Dump = BTreeMap<String, BTreeMap<Uuid, Row>>;

/// Every row of every table, read with `select` on a separate connection: an independent path
/// from the monitor that fills the cache.
async fn dump(c: &Client, schema: &DatabaseSchema) -> Dump {
    let mut t = Transaction::new(NB);
    let names: Vec<&String> = schema.tables.keys().collect();
    for n in &names {
        t.select(n, vec![]);
    }
    let out = c.transact(&t).await.unwrap();
    let mut d = Dump::new();
    for (n, r) in names.iter().zip(out.results) {
        let ts = &schema.tables[*n];
        let rows = d.entry((*n).clone()).or_default();
        for row in r.rows.unwrap() {
            let o = row.as_object().unwrap();
            let uuid = Uuid::parse_str(o["_uuid"][1].as_str().unwrap()).unwrap();
            let cols = ts
                .columns
                .iter()
                .map(|(c, cs)| (cs.name, Datum::from_json_typed(&o[c], &cs.ty).unwrap()))
                .collect();
            rows.insert(uuid, cols);
        }
    }
    d
}

fn cached(r: &Replica) -> Dump {
    let cache = r.cache();
    cache
        .table_names()
        .map(|n| {
            let t = cache.table(n).unwrap();
            (
                n.clone(),
                t.iter().map(|(u, row)| (*u, (**row).clone())).collect(),
            )
        })
        .collect()
}

async fn converge(r: &Replica, c: &Client, schema: &DatabaseSchema, limit: Duration) {
    let end = Instant::now() + limit;
    loop {
        let want = dump(c, schema).await;
        let got = cached(r);
        if want == got {
            return;
        }
        if Instant::now() > end {
            let diff: Vec<_> = want
                .keys()
                .filter(|t| want.get(*t) != got.get(*t))
                .collect();
            panic!("cache did not converge; tables differing: {diff:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn nbctl(s: &Server, args: &[&str]) {
    let st = Command::new("ovn-nbctl")
        .arg(format!("--db=unix:{}", s.sock().display()))
        .args(args)
        .output()
        .expect("ovn-nbctl");
    assert!(
        st.status.success(),
        "ovn-nbctl {args:?}: {}",
        String::from_utf8_lossy(&st.stderr)
    );
}

fn config(s: &Server) -> ReplicaConfig {
    let mut cfg = ReplicaConfig::new(vec![s.remote()], NB);
    cfg.expected_schema =
        Some(DatabaseSchema::parse_str(ovsdb::schemas::OVN_NORTHBOUND.json).unwrap());
    cfg.external_id_keys = vec!["pod".into()];
    cfg.max_backoff = Duration::from_millis(200);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_equals_dump_under_concurrent_nbctl_writes() {
    let s = Server::start("ovn-nb.ovsschema");
    nbctl(&s, &["ls-add", "before"]);
    let r = Replica::start(config(&s), Duration::from_secs(10))
        .await
        .unwrap();
    let mut changes = r.subscribe();
    assert_eq!(
        r.cache()
            .table("Logical_Switch")
            .unwrap()
            .by_name("before")
            .count(),
        1
    );

    let sock = s.sock();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                let db = format!("--db=unix:{}", sock.display());
                for i in 0..15 {
                    let ls = format!("ls{w}-{i}");
                    let lsp = format!("p{w}-{i}");
                    let run = |args: &[&str]| {
                        let o = Command::new("ovn-nbctl")
                            .arg(&db)
                            .args(args)
                            .output()
                            .unwrap();
                        assert!(
                            o.status.success(),
                            "{args:?}: {}",
                            String::from_utf8_lossy(&o.stderr)
                        );
                    };
                    run(&[
                        "ls-add",
                        &ls,
                        "--",
                        "lsp-add",
                        &ls,
                        &lsp,
                        "--",
                        "lsp-set-addresses",
                        &lsp,
                        &format!("00:00:00:00:{w:02x}:{i:02x} 10.{w}.0.{i}"),
                        "--",
                        "set",
                        "logical_switch_port",
                        &lsp,
                        &format!("external_ids:pod=pod{w}-{i}"),
                    ]);
                    run(&[
                        "set",
                        "logical_switch",
                        &ls,
                        "other_config:subnet=10.0.0.0/24",
                    ]);
                    if i % 3 == 0 {
                        run(&["ls-del", &ls]);
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let (c, _) = s.client().await;
    let schema = c.get_schema(NB).await.unwrap();
    converge(&r, &c, &schema, Duration::from_secs(10)).await;

    // Indexes follow the data: deleted switches are gone from the name index, ports are found by
    // their external id.
    let cache = r.cache();
    let ls = cache.table("Logical_Switch").unwrap();
    assert_eq!(ls.by_name("ls0-0").count(), 0);
    assert_eq!(ls.by_name("ls0-1").count(), 1);
    let lsp = cache.table("Logical_Switch_Port").unwrap();
    assert_eq!(lsp.by_external_id("pod", "pod1-2").count(), 1);
    assert_eq!(lsp.by_external_id("pod", "pod1-3").count(), 0);
    let typed = cache.by_name::<ovsdb::models::nb::LogicalSwitch>("ls2-2");
    assert_eq!(typed.len(), 1);
    assert_eq!(
        typed[0]
            .as_ref()
            .unwrap()
            .other_config
            .get("subnet")
            .map(String::as_str),
        Some("10.0.0.0/24")
    );
    drop(cache);
    // The change stream carried the writes.
    let batch = changes.try_recv().expect("a change batch");
    assert!(!batch.changes.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_resyncs_and_reports_what_changed_meanwhile() {
    let mut s = Server::start("ovn-nb.ovsschema");
    nbctl(&s, &["ls-add", "keep", "--", "ls-add", "gone"]);
    let r = Replica::start(config(&s), Duration::from_secs(10))
        .await
        .unwrap();
    let mut changes = r.subscribe();
    s.kill();
    // A transaction during the outage fails explicitly (outcome known: never sent) instead of hanging.
    let mut t = Transaction::new(NB);
    t.insert("Logical_Switch", [("name", Datum::from("lost"))].into());
    let e = r.transact(&t).await.unwrap_err();
    assert!(matches!(e, ovsdb::Error::Disconnected { .. }), "{e}");
    // Forget the initial sync's batch (published right after start() returned).
    while changes.try_recv().is_ok() {}
    // While the replica is away, another writer changes the database on disk.
    let out = Command::new("ovsdb-tool")
        .args(["transact", s.db.to_str().unwrap()])
        .arg(r#"["OVN_Northbound",{"op":"delete","table":"Logical_Switch","where":[["name","==","gone"]]},{"op":"insert","table":"Logical_Switch","row":{"name":"new"}}]"#)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.restart();

    let deadline = Instant::now() + Duration::from_secs(15);
    let batch = loop {
        let b = tokio::time::timeout(Duration::from_secs(15), changes.recv())
            .await
            .unwrap()
            .unwrap();
        if b.resync {
            break b;
        }
        assert!(Instant::now() < deadline);
    };
    let names = |pick: fn(&ovsdb::Change) -> Option<&std::sync::Arc<Row>>| -> Vec<String> {
        batch
            .changes
            .iter()
            .filter_map(|c| {
                pick(c)
                    .and_then(|r| r.get("name"))
                    .and_then(Datum::as_atom)
                    .and_then(|a| a.as_str())
                    .map(str::to_string)
            })
            .collect()
    };
    let deleted = names(|c| {
        if c.new.is_none() {
            c.old.as_ref()
        } else {
            None
        }
    });
    let inserted = names(|c| {
        if c.old.is_none() {
            c.new.as_ref()
        } else {
            None
        }
    });
    assert_eq!(deleted, vec!["gone".to_string()]);
    assert_eq!(inserted, vec!["new".to_string()]);
    assert!(
        matches!(r.state(), ReplicaState::Synced { resyncs: 2, .. }),
        "{:?}",
        r.state()
    );

    // Writes through the replica work again and land in the cache.
    let mut t = Transaction::new(NB);
    t.insert("Logical_Switch", [("name", Datum::from("after"))].into());
    r.transact(&t).await.unwrap();
    let (c, _) = s.client().await;
    let schema = c.get_schema(NB).await.unwrap();
    converge(&r, &c, &schema, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn incompatible_server_schema_is_a_clear_error() {
    let s = Server::start("ovn-ic-nb.ovsschema");
    let mut cfg = ReplicaConfig::new(vec![s.remote()], "OVN_IC_Northbound");
    let mut expected = DatabaseSchema::parse_str(ovsdb::schemas::OVN_IC_NORTHBOUND.json).unwrap();
    let t = expected.tables.get_mut("Transit_Switch").unwrap();
    let col = t.columns["name"].clone();
    t.columns.insert("from_the_future".into(), col);
    cfg.expected_schema = Some(expected);
    let e = match Replica::start(cfg, Duration::from_secs(10)).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("an incompatible schema was accepted"),
    };
    assert!(e.contains("Transit_Switch.from_the_future"), "{e}");
}

/// Read-your-writes: when `Replica::transact` returns, the cache already holds the change, so a
/// reconciler re-planning from the cache never repeats a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transact_returns_only_once_the_cache_shows_the_write() {
    let s = Server::start("ovn-nb.ovsschema");
    let r = Replica::start(config(&s), Duration::from_secs(10))
        .await
        .unwrap();
    for i in 0..200 {
        let name = format!("ryw-{i}");
        let mut txn = Transaction::new("OVN_Northbound");
        let mut row = ovsdb::Row::new();
        row.insert("name", ovsdb::Datum::from(name.as_str()));
        txn.insert("Address_Set", row);
        r.transact(&txn).await.unwrap();
        let cache = r.cache();
        assert_eq!(
            cache.table("Address_Set").unwrap().by_name(&name).count(),
            1,
            "write {i} not in the cache when transact returned"
        );
    }
}

/// The batched path keeps both promises: concurrent callers' transactions are merged (fewer
/// server transactions than callers) and each caller, on return, finds its own write in the
/// cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_transactions_merge_and_still_read_their_writes() {
    let s = Server::start("ovn-nb.ovsschema");
    let r = Replica::start(config(&s), Duration::from_secs(10))
        .await
        .unwrap();
    let mut changes = r.subscribe();
    let callers = 300;
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let r = r.clone();
            tokio::spawn(async move {
                let name = format!("batched-{i}");
                let mut txn = Transaction::new("OVN_Northbound");
                let mut row = ovsdb::Row::new();
                row.insert("name", ovsdb::Datum::from(name.as_str()));
                txn.insert("Address_Set", row);
                r.transact_batched(txn).await.unwrap();
                let cache = r.cache();
                cache.table("Address_Set").unwrap().by_name(&name).count()
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), 1, "caller {i} did not see its write");
    }
    let mut batches = 0;
    while let Ok(b) = changes.try_recv() {
        if !b.changes.is_empty() {
            batches += 1;
        }
    }
    assert!(
        batches < callers,
        "{batches} server transactions for {callers} callers: nothing was merged"
    );
}

/// The UUID of logical switch port `name` in `r`'s cache.
fn port_uuid(r: &Replica, name: &str) -> Uuid {
    r.cache()
        .table("Logical_Switch_Port")
        .unwrap()
        .by_name(name)
        .next()
        .map(|(u, _)| *u)
        .unwrap()
}

/// A set datum of `ids`.
fn uuids(ids: &[Uuid]) -> Datum {
    Datum::Set(ovsdb::AtomSet::from_iter(
        ids.iter().map(|u| ovsdb::Atom::Uuid(*u)),
    ))
}

/// Deleting a row that other rows reference weakly (a port in port groups, as a pod's port is)
/// makes the server drop those references in the same commit; the replica must show the
/// referencing rows without it, exactly as a dump does: for an explicit delete, a port collected
/// after leaving its switch, a reference added after the port is gone (alone, or in the
/// transaction collecting it), a whole-column update and a new row naming gone ports. (OVS 3.1
/// keeps the reference when the collecting transaction also changes the group's members: see
/// `delete_port` in kube-ovn-nb and its test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_references_to_a_deleted_row_disappear_from_the_cache() {
    let s = Server::start("ovn-nb.ovsschema");
    let r = Replica::start(config(&s), Duration::from_secs(10))
        .await
        .unwrap();
    let (c, _) = s.client().await;
    let schema = DatabaseSchema::parse_str(ovsdb::schemas::OVN_NORTHBOUND.json).unwrap();
    nbctl(&s, &["ls-add", "ls"]);
    for p in ["a", "b", "c"] {
        nbctl(&s, &["lsp-add", "ls", p]);
    }
    nbctl(&s, &["pg-add", "pg1", "a", "b", "c"]);
    nbctl(&s, &["pg-add", "pg2", "b", "c"]);
    converge(&r, &c, &schema, Duration::from_secs(10)).await;
    let b = port_uuid(&r, "b");
    nbctl(&s, &["lsp-del", "b"]);
    converge(&r, &c, &schema, Duration::from_secs(10)).await;
    // A writer that still knew the port adds it to a group after it is gone: the server drops
    // the reference at commit, and the cache follows.
    let mut t = Transaction::new(NB);
    t.mutate(
        "Port_Group",
        vec![ovsdb::Condition::eq("name", "pg2")],
        vec![ovsdb::Mutation::insert("ports", uuids(&[b]))],
    );
    let outcome = c.transact(&t).await;
    outcome.unwrap();
    converge(&r, &c, &schema, Duration::from_secs(10)).await;
    // A port removed from its switch only, so the server collects it as garbage (what a pod's
    // port deletion does): its group memberships go too.
    let cu = port_uuid(&r, "c");
    let mut t = Transaction::new(NB);
    t.mutate(
        "Logical_Switch",
        vec![ovsdb::Condition::eq("name", "ls")],
        vec![ovsdb::Mutation::delete("ports", uuids(&[cu]))],
    );
    c.transact(&t).await.unwrap();
    converge(&r, &c, &schema, Duration::from_secs(10)).await;
    // Both in one transaction: the port leaves its switch (and is collected) while a group
    // gains it.
    let au = port_uuid(&r, "a");
    let mut t = Transaction::new(NB);
    t.mutate(
        "Logical_Switch",
        vec![ovsdb::Condition::eq("name", "ls")],
        vec![ovsdb::Mutation::delete("ports", uuids(&[au]))],
    );
    t.mutate(
        "Port_Group",
        vec![ovsdb::Condition::eq("name", "pg2")],
        vec![ovsdb::Mutation::insert("ports", uuids(&[au]))],
    );
    c.transact(&t).await.unwrap();
    converge(&r, &c, &schema, Duration::from_secs(10)).await;
    // A whole-column update naming the gone ports, and a new group created with them.
    let mut t = Transaction::new(NB);
    let gone = uuids(&[au, b, cu]);
    t.update(
        "Port_Group",
        vec![ovsdb::Condition::eq("name", "pg1")],
        [("ports", gone.clone())].into_iter().collect(),
    );
    c.transact(&t).await.unwrap();
    let mut t = Transaction::new(NB);
    t.insert(
        "Port_Group",
        [("name", Datum::from("pg3")), ("ports", gone)]
            .into_iter()
            .collect(),
    );
    c.transact(&t).await.unwrap();
    converge(&r, &c, &schema, Duration::from_secs(10)).await;
    let cache = r.cache();
    let pg = cache.table("Port_Group").unwrap();
    for (_, row) in pg.iter() {
        let ports = row.get("ports").and_then(Datum::as_set).unwrap();
        let name = row.get("name").unwrap();
        let lsps = cache.table("Logical_Switch_Port").unwrap();
        for p in ports.iter() {
            let u = p.as_uuid().unwrap();
            assert!(lsps.get(&u).is_some(), "{name:?} holds {u}, no such port");
        }
    }
}
