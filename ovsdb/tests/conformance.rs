//! Every RFC 7047 method and operation against a real ovsdb-server.

mod support;

use ovsdb::{
    Atom, Condition, Datum, Error, Mutation, Operation, Row, Transaction, TxnErrorKind, Uuid,
};
use serde_json::{json, Value};
use support::{next_note, Server};

const NB: &str = "OVN_Northbound";

fn row(pairs: &[(&'static str, Datum)]) -> Row {
    pairs.iter().map(|(k, v)| (*k, v.clone())).collect()
}

#[tokio::test]
async fn list_dbs_get_schema_and_echo() {
    let s = Server::start("ovn-nb.ovsschema");
    let (c, _) = s.client().await;
    c.echo().await.unwrap();
    let dbs = c.list_dbs().await.unwrap();
    assert!(dbs.contains(&NB.to_string()), "{dbs:?}");
    let schema = c.get_schema(NB).await.unwrap();
    let ours = ovsdb::DatabaseSchema::parse_str(ovsdb::schemas::OVN_NORTHBOUND.json).unwrap();
    assert!(ours.incompatibilities(&schema).is_empty());
    assert!(matches!(
        c.get_schema("Nope").await,
        Err(Error::UnknownDatabase(_))
    ));
}

#[tokio::test]
async fn insert_with_named_uuid_references_select_update_mutate_delete() {
    let s = Server::start("ovn-nb.ovsschema");
    let (c, _) = s.client().await;
    let mut t = Transaction::new(NB);
    let lsp = t.insert(
        "Logical_Switch_Port",
        row(&[
            ("name", "p1".into()),
            ("addresses", Datum::set(["00:00:00:00:00:01 10.0.0.1"])),
            ("external_ids", Datum::map([("vendor", "kube-ovn")])),
        ]),
    );
    let ls = t.insert(
        "Logical_Switch",
        row(&[
            ("name", "sw".into()),
            ("ports", Datum::scalar(Atom::NamedUuid(lsp.clone()))),
        ]),
    );
    t.comment("test insert");
    let out = c.transact(&t).await.unwrap();
    let ls_uuid = out.named[&ls];
    let lsp_uuid = out.named[&lsp];

    // select by uuid returns the reference resolved to the real uuid.
    let mut t = Transaction::new(NB);
    t.select("Logical_Switch", vec![Condition::uuid(ls_uuid)]);
    let out = c.transact(&t).await.unwrap();
    let rows = out.results[0].rows.clone().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["ports"], json!(["uuid", lsp_uuid.to_string()]));

    // update, mutate (map insert + set insert) and a select with includes.
    let mut t = Transaction::new(NB);
    t.update(
        "Logical_Switch_Port",
        vec![Condition::eq("name", "p1")],
        row(&[("tag_request", Datum::scalar(100i64))]),
    );
    t.mutate(
        "Logical_Switch_Port",
        vec![Condition::eq("name", "p1")],
        vec![
            Mutation::insert("external_ids", Datum::map([("pod", "a")])),
            Mutation::insert("addresses", Datum::set(["router"])),
            Mutation::add("tag_request", Datum::scalar(5i64)),
        ],
    );
    t.push(Operation::Select {
        table: "Logical_Switch_Port".into(),
        conditions: vec![Condition::includes(
            "external_ids",
            Datum::map([("pod", "a")]),
        )],
        columns: Some(vec![
            "name".into(),
            "tag_request".into(),
            "addresses".into(),
        ]),
    });
    let out = c.transact(&t).await.unwrap();
    assert_eq!(out.results[0].count, Some(1));
    assert_eq!(out.results[1].count, Some(1));
    let r = &out.results[2].rows.as_ref().unwrap()[0];
    assert_eq!(r["tag_request"], json!(105));
    assert_eq!(
        r["addresses"],
        json!(["set", ["00:00:00:00:00:01 10.0.0.1", "router"]])
    );

    // delete the switch; at commit the port (non-root, referenced only by it) is collected.
    let mut t = Transaction::new(NB);
    t.delete("Logical_Switch", vec![Condition::eq("name", "sw")]);
    let out = c.transact(&t).await.unwrap();
    assert_eq!(out.results[0].count, Some(1));
    let mut t = Transaction::new(NB);
    t.select("Logical_Switch_Port", vec![]);
    let out = c.transact(&t).await.unwrap();
    assert_eq!(out.results[0].rows.as_ref().unwrap().len(), 0);
}

#[tokio::test]
async fn wait_commit_abort_and_assert() {
    let s = Server::start("ovn-nb.ovsschema");
    let (c, _) = s.client().await;
    let create = |name: &str| {
        let mut t = Transaction::new(NB);
        t.wait_absent("Logical_Switch", vec![Condition::eq("name", name)]);
        t.insert("Logical_Switch", row(&[("name", name.into())]));
        t.push(Operation::Commit { durable: false });
        t
    };
    c.transact(&create("a")).await.unwrap();
    let e = c.transact(&create("a")).await.unwrap_err();
    match e {
        Error::Transaction(t) => {
            assert_eq!(t.kind, TxnErrorKind::TimedOut);
            assert_eq!(t.op_index, Some(0));
        }
        e => panic!("unexpected {e}"),
    }
    // wait until != on a row that is there succeeds.
    let mut t = Transaction::new(NB);
    t.push(Operation::Wait {
        table: "Logical_Switch".into(),
        conditions: vec![Condition::eq("name", "a")],
        columns: vec!["name".into()],
        until_equal: false,
        rows: vec![],
        timeout: Some(std::time::Duration::ZERO),
    });
    c.transact(&t).await.unwrap();

    let mut t = Transaction::new(NB);
    t.insert("Logical_Switch", row(&[("name", "b".into())]));
    t.push(Operation::Abort);
    let e = c.transact(&t).await.unwrap_err();
    assert!(
        matches!(e, Error::Transaction(ref t) if t.kind == TxnErrorKind::Aborted),
        "{e}"
    );

    // assert on a lock we do not hold fails with "not owner"; after taking it, it passes.
    let mut t = Transaction::new(NB);
    t.push(Operation::Assert { lock: "l1".into() });
    let e = c.transact(&t).await.unwrap_err();
    assert!(
        matches!(e, Error::Transaction(ref t) if t.kind == TxnErrorKind::NotOwner),
        "{e}"
    );
    assert!(c.lock("l1").await.unwrap());
    c.transact(&t).await.unwrap();
    // Nothing of the aborted or failed transactions was committed.
    let mut t = Transaction::new(NB);
    t.select("Logical_Switch", vec![]);
    let out = c.transact(&t).await.unwrap();
    assert_eq!(out.results[0].rows.as_ref().unwrap().len(), 1);
}

#[tokio::test]
async fn constraint_and_referential_errors_are_typed() {
    let s = Server::start("ovn-nb.ovsschema");
    let (c, _) = s.client().await;
    // ACL.priority is 0..32767: a range error on the op.
    let mut t = Transaction::new(NB);
    t.insert(
        "ACL",
        row(&[
            ("priority", Datum::scalar(40000i64)),
            ("direction", "to-lport".into()),
            ("match", "ip".into()),
            ("action", "drop".into()),
        ]),
    );
    let e = c.transact(&t).await.unwrap_err();
    assert!(
        matches!(e, Error::Transaction(ref t) if t.kind == TxnErrorKind::ConstraintViolation && t.op_index == Some(0)),
        "{e}"
    );
    // A reference to a row that does not exist: referential integrity at commit.
    let mut t = Transaction::new(NB);
    t.insert(
        "Logical_Switch",
        row(&[("ports", Datum::scalar(Uuid::new_v4()))]),
    );
    let e = c.transact(&t).await.unwrap_err();
    assert!(
        matches!(e, Error::Transaction(ref t) if t.kind == TxnErrorKind::ReferentialIntegrity && t.op_index.is_none()),
        "{e}"
    );
    // Duplicate index value (Address_Set.name is indexed): constraint violation at commit.
    let mut t = Transaction::new(NB);
    t.insert("Address_Set", row(&[("name", "x".into())]));
    t.insert("Address_Set", row(&[("name", "x".into())]));
    let e = c.transact(&t).await.unwrap_err();
    assert!(
        matches!(e, Error::Transaction(ref t) if t.kind == TxnErrorKind::ConstraintViolation),
        "{e}"
    );
    // Unknown column: a protocol-level error naming it.
    let mut t = Transaction::new(NB);
    t.insert("Logical_Switch", row(&[("bogus", "x".into())]));
    assert!(c.transact(&t).await.is_err());
}

fn monitored_switch_requests() -> Value {
    json!({"Logical_Switch": [{"columns": ["name", "other_config"]}]})
}

#[tokio::test]
async fn monitor_and_monitor_cond_stream_updates() {
    let s = Server::start("ovn-nb.ovsschema");
    let (c, mut notes) = s.client().await;
    let (w, _) = s.client().await;
    let mut t = Transaction::new(NB);
    t.insert("Logical_Switch", row(&[("name", "pre".into())]));
    w.transact(&t).await.unwrap();

    let initial = c
        .monitor(NB, &json!("m1"), monitored_switch_requests())
        .await
        .unwrap();
    let ls = initial["Logical_Switch"].as_object().unwrap();
    assert_eq!(ls.len(), 1);
    let cond =
        json!({"Logical_Switch": [{"columns": ["name"], "where": [["name", "==", "keep"]]}]});
    let initial2 = c.monitor_cond(NB, &json!("m2"), cond).await.unwrap();
    assert_eq!(initial2, json!({}));

    let mut t = Transaction::new(NB);
    t.insert("Logical_Switch", row(&[("name", "keep".into())]));
    w.transact(&t).await.unwrap();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 2 {
        let n = next_note(&mut notes).await;
        seen.insert(n.method.clone());
        match n.method.as_str() {
            "update" => assert_eq!(n.params[0], json!("m1")),
            "update2" => {
                assert_eq!(n.params[0], json!("m2"));
                let (_, r) = n.params[1]["Logical_Switch"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .next()
                    .unwrap();
                assert_eq!(r["insert"]["name"], json!("keep"));
            }
            m => panic!("unexpected {m}"),
        }
    }

    // monitor_cond_change: switch m2 to watch "other" instead; a change to "keep" is no longer sent.
    c.monitor_cond_change(
        &json!("m2"),
        &json!("m2"),
        json!({"Logical_Switch": [{"where": [["name", "==", "other"]]}]}),
    )
    .await
    .unwrap();
    c.monitor_cancel(&json!("m1")).await.unwrap();
    let mut t = Transaction::new(NB);
    t.insert("Logical_Switch", row(&[("name", "other".into())]));
    w.transact(&t).await.unwrap();
    loop {
        let n = next_note(&mut notes).await;
        assert_ne!(n.method, "update", "cancelled monitor still sends");
        if n.method == "update2" {
            let tbl = n.params[1]["Logical_Switch"].as_object().unwrap();
            if let Some((_, r)) = tbl.iter().find(|(_, r)| r.get("insert").is_some()) {
                assert_eq!(r["insert"]["name"], json!("other"));
                break;
            }
        }
    }
}

#[tokio::test]
async fn monitor_cond_since_reports_txn_ids() {
    let s = Server::start("ovn-nb.ovsschema");
    let (c, mut notes) = s.client().await;
    let reply = c
        .monitor_cond_since(NB, &json!("s"), monitored_switch_requests(), None)
        .await
        .unwrap();
    assert!(!reply.found);
    let mut t = Transaction::new(NB);
    t.insert("Logical_Switch", row(&[("name", "x".into())]));
    c.transact(&t).await.unwrap();
    let n = next_note(&mut notes).await;
    assert_eq!(n.method, "update3");
    assert_eq!(n.params[0], json!("s"));
    assert!(n.params[1].as_str().unwrap().parse::<Uuid>().is_ok());
}

#[tokio::test]
async fn lock_steal_unlock_notifications() {
    let s = Server::start("ovn-nb.ovsschema");
    let (a, mut an) = s.client().await;
    let (b, mut bn) = s.client().await;
    assert!(a.lock("L").await.unwrap());
    assert!(!b.lock("L").await.unwrap());
    a.unlock("L").await.unwrap();
    let n = next_note(&mut bn).await;
    assert_eq!((n.method.as_str(), &n.params), ("locked", &json!(["L"])));
    assert!(a.steal("L").await.unwrap());
    let n = next_note(&mut bn).await;
    assert_eq!((n.method.as_str(), &n.params), ("stolen", &json!(["L"])));
    drop(an.try_recv());
    a.set_db_change_aware(true).await.unwrap();
}

#[tokio::test]
async fn pipelined_transactions_all_complete_in_order() {
    let s = Server::start("ovn-nb.ovsschema");
    let (c, _) = s.client().await;
    let mut futs = Vec::new();
    for i in 0..200 {
        let mut t = Transaction::new(NB);
        t.insert("Logical_Switch", row(&[("name", format!("ls{i}").into())]));
        futs.push(c.transact_pipelined(t).unwrap());
    }
    for f in futs {
        f.await.unwrap();
    }
    let mut t = Transaction::new(NB);
    t.select("Logical_Switch", vec![]);
    assert_eq!(
        c.transact(&t).await.unwrap().results[0]
            .rows
            .as_ref()
            .unwrap()
            .len(),
        200
    );
}

#[tokio::test]
async fn killed_server_fails_pending_requests_and_new_ones() {
    let mut s = Server::start("ovn-nb.ovsschema");
    let (c, _) = s.client().await;
    // A wait that blocks server-side keeps a request pending when the server dies.
    let mut t = Transaction::new(NB);
    t.push(Operation::Wait {
        table: "Logical_Switch".into(),
        conditions: vec![],
        columns: vec!["name".into()],
        until_equal: false,
        rows: vec![],
        timeout: None,
    });
    let pending = c.transact_pipelined(t).unwrap();
    c.echo().await.unwrap();
    s.kill();
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), pending)
        .await
        .expect("pending request resolved");
    assert!(matches!(r, Err(Error::Disconnected { .. })), "{r:?}");
    assert!(matches!(c.echo().await, Err(Error::Disconnected { .. })));
    s.restart();
    let (c2, _) = s.client().await;
    c2.echo().await.unwrap();
}
