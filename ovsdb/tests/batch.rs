//! Group commit against a real ovsdb-server: many concurrent submits, a failing member isolated,
//! named UUIDs mapped back, connection loss reported to every member, and mutates coalesced
//! only where running the members in order could not tell the difference.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use ovsdb::batch::{BatchConfig, BatchStats, Batcher};
use ovsdb::{
    Atom, Condition, Datum, Error, Mutation, Operation, Row, Transaction, TxnErrorKind, TxnOutcome,
    Uuid,
};
use support::Server;
use tokio::task::JoinSet;

const NB: &str = "OVN_Northbound";

fn row(pairs: &[(&'static str, Datum)]) -> Row {
    pairs.iter().map(|(k, v)| (*k, v.clone())).collect()
}

async fn make_switch(c: &ovsdb::Client, name: &str) {
    let mut t = Transaction::new(NB);
    t.insert("Logical_Switch", row(&[("name", name.into())]));
    c.transact(&t).await.unwrap();
}

/// One port the way a controller creates it: the row plus the switch's reference to it.
fn port_txn(switch: &str, i: usize) -> (Transaction, String) {
    let mut t = Transaction::new(NB);
    let lsp = t.insert(
        "Logical_Switch_Port",
        row(&[
            ("name", format!("p{i}").into()),
            (
                "addresses",
                Datum::set([format!(
                    "00:00:00:00:{:02x}:{:02x} 10.0.{}.{}",
                    i / 256,
                    i % 256,
                    i / 256,
                    i % 256
                )]),
            ),
            ("external_ids", Datum::map([("vendor", "kube-ovn")])),
        ]),
    );
    t.mutate(
        "Logical_Switch",
        vec![Condition::eq("name", switch)],
        vec![Mutation::insert(
            "ports",
            Datum::scalar(Atom::NamedUuid(lsp.clone())),
        )],
    );
    (t, lsp)
}

async fn select(c: &ovsdb::Client, table: &str) -> Vec<serde_json::Value> {
    let mut t = Transaction::new(NB);
    t.select(table, vec![]);
    c.transact(&t).await.unwrap().results[0]
        .rows
        .clone()
        .unwrap()
}

fn port_uuids(sw: &serde_json::Value) -> HashSet<String> {
    let p = &sw["ports"];
    if p[0] == "set" {
        p[1].as_array()
            .unwrap()
            .iter()
            .map(|u| u[1].as_str().unwrap().to_string())
            .collect()
    } else {
        [p[1].as_str().unwrap().to_string()].into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_ports_all_commit_and_map_back() {
    let s = Server::start("ovn-nb.ovsschema");
    let (c, _) = s.client().await;
    make_switch(&c, "sw").await;
    let b = Batcher::new(c.clone(), NB, BatchConfig::default());
    let mut set = JoinSet::new();
    for i in 0..2000 {
        let b = b.clone();
        set.spawn(async move {
            let (t, lsp) = port_txn("sw", i);
            let out = b.submit(t).await.unwrap();
            assert_eq!(out.results.len(), 2);
            assert_eq!(out.results[1].count, Some(1));
            assert_eq!(out.named.len(), 1, "{:?}", out.named);
            (i, out.named[&lsp])
        });
    }
    let mut mine = Vec::new();
    while let Some(r) = set.join_next().await {
        mine.push(r.unwrap());
    }
    assert_eq!(mine.len(), 2000);

    // Every caller's UUID is the row with that caller's name.
    let ports = select(&c, "Logical_Switch_Port").await;
    assert_eq!(ports.len(), 2000);
    let by_uuid: std::collections::HashMap<String, String> = ports
        .iter()
        .map(|p| {
            (
                p["_uuid"][1].as_str().unwrap().to_string(),
                p["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (i, u) in &mine {
        assert_eq!(by_uuid[&u.to_string()], format!("p{i}"));
    }
    let sws = select(&c, "Logical_Switch").await;
    assert_eq!(sws.len(), 1);
    assert_eq!(port_uuids(&sws[0]).len(), 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_member_fails_alone_and_others_commit_once() {
    let s = Server::start("ovn-nb.ovsschema");
    let (c, _) = s.client().await;
    make_switch(&c, "sw").await;
    make_switch(&c, "taken").await;
    // Small batches so the bad member shares a batch with others, across several batches.
    let b = Batcher::new(
        c.clone(),
        NB,
        BatchConfig {
            max_ops: 40,
            ..BatchConfig::default()
        },
    );
    let mut set = JoinSet::new();
    for i in 0..200 {
        let b = b.clone();
        set.spawn(async move {
            let (mut t, lsp) = port_txn("sw", i);
            if i == 77 {
                // Guard that fails: a switch named "taken" exists.
                t.wait_absent("Logical_Switch", vec![Condition::eq("name", "taken")]);
            }
            (i, lsp, b.submit(t).await)
        });
    }
    let mut ok: Vec<(usize, Uuid)> = Vec::new();
    while let Some(r) = set.join_next().await {
        let (i, lsp, r) = r.unwrap();
        if i == 77 {
            match r {
                Err(Error::Transaction(e)) => assert_eq!(e.op_index, Some(2), "{e}"),
                other => panic!("member 77: {other:?}"),
            }
        } else {
            ok.push((i, r.unwrap().named[&lsp]));
        }
    }
    assert_eq!(ok.len(), 199);
    let ports = select(&c, "Logical_Switch_Port").await;
    assert_eq!(ports.len(), 199, "each member committed exactly once");
    let names: HashSet<&str> = ports.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(!names.contains("p77"));
    let sw = select(&c, "Logical_Switch")
        .await
        .into_iter()
        .find(|s| s["name"] == "sw")
        .unwrap();
    let got = port_uuids(&sw);
    let want: HashSet<String> = ok.iter().map(|(_, u)| u.to_string()).collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_with_several_named_rows_map_back_and_abort_runs_alone() {
    let s = Server::start("ovn-nb.ovsschema");
    let (c, _) = s.client().await;
    let b = Batcher::new(c.clone(), NB, BatchConfig::default());
    let mut set = JoinSet::new();
    for i in 0..50 {
        let b = b.clone();
        set.spawn(async move {
            // Each member: a port and a switch referencing it, both named (row0, row1).
            let mut t = Transaction::new(NB);
            let lsp = t.insert(
                "Logical_Switch_Port",
                row(&[("name", format!("lp{i}").into())]),
            );
            let ls = t.insert(
                "Logical_Switch",
                row(&[
                    ("name", format!("ls{i}").into()),
                    ("ports", Datum::scalar(Atom::NamedUuid(lsp.clone()))),
                ]),
            );
            let out = b.submit(t).await.unwrap();
            (i, out.named[&lsp], out.named[&ls])
        });
    }
    let mut abort = Transaction::new(NB);
    abort.insert("Logical_Switch", row(&[("name", "never".into())]));
    abort.push(ovsdb::Operation::Abort);
    // Submitted alongside the others: an aborting member runs alone and aborts only itself.
    let aborted = b.submit(abort).await;
    assert!(matches!(aborted, Err(Error::Transaction(_))), "{aborted:?}");

    let mut done = Vec::new();
    while let Some(r) = set.join_next().await {
        done.push(r.unwrap());
    }
    let switches = select(&c, "Logical_Switch").await;
    assert_eq!(switches.len(), 50);
    for (i, lsp, ls) in done {
        let sw = switches
            .iter()
            .find(|s| s["_uuid"][1] == ls.to_string())
            .unwrap();
        assert_eq!(sw["name"], format!("ls{i}"));
        assert_eq!(port_uuids(sw), [lsp.to_string()].into());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_loss_reaches_every_waiting_member() {
    let mut s = Server::start("ovn-nb.ovsschema");
    let (c, _) = s.client().await;
    make_switch(&c, "sw").await;
    let b = Batcher::new(c.clone(), NB, BatchConfig::default());
    // A wait with a long timeout blocks the server's reply to its batch; the members queued
    // behind it stay waiting until the connection dies.
    let mut blocker = Transaction::new(NB);
    blocker.push(ovsdb::Operation::Wait {
        table: "Logical_Switch".into(),
        conditions: vec![Condition::eq("name", "sw")],
        columns: vec!["name".into()],
        until_equal: true,
        rows: vec![row(&[("name", "other".into())])],
        timeout: Some(Duration::from_secs(30)),
    });
    let mut set = JoinSet::new();
    {
        let b = b.clone();
        set.spawn(async move { b.submit(blocker).await });
    }
    for i in 0..20 {
        let b = b.clone();
        set.spawn(async move { b.submit(port_txn("sw", i).0).await });
    }
    s.kill();
    let all = tokio::time::timeout(Duration::from_secs(20), async {
        let mut v = Vec::new();
        while let Some(r) = set.join_next().await {
            v.push(r.unwrap());
        }
        v
    })
    .await
    .expect("every member answered");
    assert_eq!(all.len(), 21);
    // Some members may have committed before the kill; none may be left hanging, and the
    // blocked one must report the lost connection.
    assert!(all
        .iter()
        .any(|r| matches!(r, Err(Error::Disconnected { .. }))));
}

/// A Batcher with one send slot, and that slot taken by a transaction the server holds until
/// [`open_gate`]: everything submitted meanwhile is queued, and goes out as one merged
/// transaction once the gate opens. The returned future is the gate's own outcome.
fn gated_batcher(
    c: &ovsdb::Client,
) -> (
    Batcher,
    impl std::future::Future<Output = ovsdb::Result<TxnOutcome>>,
) {
    gated_batcher_queueing(c, BatchConfig::default().max_queued)
}

/// [`gated_batcher`] with room for `max_queued` waiting transactions.
fn gated_batcher_queueing(
    c: &ovsdb::Client,
    max_queued: usize,
) -> (
    Batcher,
    impl std::future::Future<Output = ovsdb::Result<TxnOutcome>>,
) {
    let b = Batcher::new(
        c.clone(),
        NB,
        BatchConfig {
            max_in_flight: 1,
            max_queued,
            ..BatchConfig::default()
        },
    );
    let mut gate = Transaction::new(NB);
    gate.push(Operation::Wait {
        table: "Port_Group".into(),
        conditions: vec![Condition::eq("name", "gate")],
        columns: vec!["name".into()],
        until_equal: true,
        rows: vec![row(&[("name", "gate".into())])],
        timeout: Some(Duration::from_secs(30)),
    });
    let held = b.submit(gate);
    (b, held)
}

async fn open_gate(c: &ovsdb::Client) {
    let mut t = Transaction::new(NB);
    t.insert("Port_Group", row(&[("name", "gate".into())]));
    c.transact(&t).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_ports_all_land_and_each_member_gets_its_own_outcome() {
    let s = Server::start("ovn-nb.ovsschema");
    let (c, _) = s.client().await;
    make_switch(&c, "sw0").await;
    make_switch(&c, "sw1").await;
    let (b, gate) = gated_batcher(&c);
    // Members alternate between two switches, so the two groups interleave.
    let pending: Vec<_> = (0..200)
        .map(|i| {
            let (t, lsp) = port_txn(&format!("sw{}", i % 2), i);
            (i, lsp, b.submit(t))
        })
        .collect();
    open_gate(&c).await;
    gate.await.unwrap();
    let mut mine: Vec<HashSet<String>> = vec![HashSet::new(), HashSet::new()];
    for (i, lsp, out) in pending {
        let out = out.await.unwrap();
        assert_eq!(out.results.len(), 2, "member {i}");
        assert!(out.results[0].uuid.is_some(), "member {i}");
        // The merged mutate's result: one switch matched, as for each member in order.
        assert_eq!(out.results[1].count, Some(1), "member {i}");
        assert_eq!(out.named.len(), 1, "member {i}: {:?}", out.named);
        assert_eq!(out.results[0].uuid, Some(out.named[&lsp]), "member {i}");
        mine[i % 2].insert(out.named[&lsp].to_string());
    }
    assert_eq!(
        b.stats(),
        BatchStats {
            merged: 1,
            members: 200,
            ops_submitted: 400,
            // 200 inserts and one mutate per switch.
            ops_sent: 202,
            fallbacks: 0,
        }
    );

    let by_uuid: std::collections::HashMap<String, String> = select(&c, "Logical_Switch_Port")
        .await
        .iter()
        .map(|p| {
            (
                p["_uuid"][1].as_str().unwrap().to_string(),
                p["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(by_uuid.len(), 200);
    for sw in select(&c, "Logical_Switch").await {
        let k = if sw["name"] == "sw0" { 0 } else { 1 };
        let ports = port_uuids(&sw);
        assert_eq!(ports, mine[k], "{}", sw["name"]);
        for u in &ports {
            let n: usize = by_uuid[u][1..].parse().unwrap();
            assert_eq!(n % 2, k, "port {} is on {}", by_uuid[u], sw["name"]);
        }
    }
}

/// Members working on one address set: `(label, transaction)`. Between the inserts sit a delete
/// of the same values, a select and a wait on the column: none of those inserts may merge. Only
/// the last two, with nothing in between, may.
fn address_members(set: &str) -> Vec<(&'static str, Transaction)> {
    let on = || vec![Condition::eq("name", set)];
    let mutate = |m: Mutation| {
        let mut t = Transaction::new(NB);
        t.mutate("Address_Set", on(), vec![m]);
        t
    };
    let ins = |a: &[&str]| mutate(Mutation::insert("addresses", Datum::set(a.iter().copied())));
    let del = |a: &[&str]| mutate(Mutation::delete("addresses", Datum::set(a.iter().copied())));
    let mut select = Transaction::new(NB);
    select.push(Operation::Select {
        table: "Address_Set".into(),
        conditions: on(),
        columns: Some(vec!["addresses".into()]),
    });
    let mut wait = Transaction::new(NB);
    wait.push(Operation::Wait {
        table: "Address_Set".into(),
        conditions: on(),
        columns: vec!["addresses".into()],
        until_equal: true,
        rows: vec![row(&[("addresses", Datum::set(["10.0.0.2", "10.0.0.3"]))])],
        timeout: Some(Duration::ZERO),
    });
    vec![
        ("insert .1", ins(&["10.0.0.1"])),
        ("delete .1 .2", del(&["10.0.0.1", "10.0.0.2"])),
        ("insert .2", ins(&["10.0.0.2"])),
        ("select", select),
        ("insert .3", ins(&["10.0.0.3"])),
        ("wait for .2 .3", wait),
        ("insert .4", ins(&["10.0.0.4"])),
        ("insert .5", ins(&["10.0.0.5"])),
    ]
}

async fn addresses(c: &ovsdb::Client, set: &str) -> serde_json::Value {
    select(c, "Address_Set")
        .await
        .into_iter()
        .find(|a| a["name"] == set)
        .unwrap()["addresses"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutates_that_must_not_merge_give_the_results_of_running_in_order() {
    let s = Server::start("ovn-nb.ovsschema");
    let (c, _) = s.client().await;
    let mut t = Transaction::new(NB);
    for name in ["in_order", "batched"] {
        t.insert("Address_Set", row(&[("name", name.into())]));
    }
    c.transact(&t).await.unwrap();

    let mut in_order = Vec::new();
    for (what, t) in address_members("in_order") {
        in_order.push((what, c.transact(&t).await.unwrap().results));
    }

    let (b, gate) = gated_batcher(&c);
    let pending: Vec<_> = address_members("batched")
        .into_iter()
        .map(|(what, t)| (what, b.submit(t)))
        .collect();
    open_gate(&c).await;
    gate.await.unwrap();
    for ((what, out), (_, want)) in pending.into_iter().zip(in_order) {
        let got = out.await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got.results, want, "{what}");
    }
    assert_eq!(
        b.stats(),
        BatchStats {
            merged: 1,
            members: 8,
            ops_submitted: 8,
            ops_sent: 7,
            fallbacks: 0,
        },
        "only the last two inserts merge, and the merged transaction is not refused"
    );
    let want = serde_json::json!(["set", ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]]);
    assert_eq!(addresses(&c, "in_order").await, want);
    assert_eq!(addresses(&c, "batched").await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_merged_transaction_blames_only_the_guilty_members() {
    let s = Server::start("ovn-nb.ovsschema");
    let (c, _) = s.client().await;
    make_switch(&c, "sw").await;
    let (b, gate) = gated_batcher(&c);
    let pending: Vec<_> = (0..30)
        .map(|i| {
            let (mut t, lsp) = port_txn("sw", i);
            let Some(Operation::Mutate { mutations, .. }) = t.ops.last_mut() else {
                unreachable!("port_txn ends with the switch's mutate")
            };
            let Datum::Set(ports) = &mut mutations[0].value else {
                unreachable!("ports is a set")
            };
            // Both guilty values sit in the mutate that is coalesced with everyone else's.
            match i {
                // Refused as the operation runs: not a UUID.
                7 => ports.insert(Atom::string("not-a-uuid")),
                // Refused at commit: a reference to a port that does not exist.
                17 => ports.insert(Atom::Uuid(Uuid::new_v4())),
                _ => true,
            };
            (i, lsp, b.submit(t))
        })
        .collect();
    open_gate(&c).await;
    gate.await.unwrap();
    let mut ok = HashSet::new();
    for (i, lsp, out) in pending {
        match (i, out.await) {
            (7, Err(Error::Transaction(e))) => assert_eq!(e.op_index, Some(1), "{e}"),
            (17, Err(Error::Transaction(e))) => {
                assert_eq!(e.kind, TxnErrorKind::ReferentialIntegrity, "{e}");
                assert_eq!(e.op_index, None, "{e}");
            }
            (7 | 17, other) => panic!("member {i}: {other:?}"),
            (_, out) => {
                let out = out.unwrap_or_else(|e| panic!("member {i}: {e}"));
                assert_eq!(out.results[1].count, Some(1));
                ok.insert(out.named[&lsp].to_string());
            }
        }
    }
    let st = b.stats();
    assert_eq!((st.merged, st.fallbacks), (1, 1), "{st:?}");
    assert_eq!(
        st.ops_sent, 31,
        "the guilty values were coalesced too: {st:?}"
    );
    assert_eq!(ok.len(), 28);
    let ports = select(&c, "Logical_Switch_Port").await;
    assert_eq!(
        ports.len(),
        28,
        "each innocent member committed exactly once"
    );
    let sw = select(&c, "Logical_Switch").await;
    assert_eq!(port_uuids(&sw[0]), ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_at_once_and_what_was_queued_still_lands() {
    let s = Server::start("ovn-nb.ovsschema");
    let (c, _) = s.client().await;
    make_switch(&c, "sw").await;
    let bound = 8;
    let (b, gate) = gated_batcher_queueing(&c, bound);
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..20 {
        let (t, _) = port_txn("sw", i);
        let mut fut = Box::pin(b.submit(t));
        // A refusal is decided at submit time: the future is ready at its first poll.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::future::Future::poll(fut.as_mut(), &mut cx) {
            std::task::Poll::Ready(Err(e @ Error::Overloaded(_))) => {
                assert!(e.to_string().contains("batcher queue over 8"), "{e}");
                refused += 1;
            }
            std::task::Poll::Ready(other) => {
                panic!("member {i} finished while the gate is closed: {other:?}")
            }
            std::task::Poll::Pending => accepted.push((i, fut)),
        }
    }
    // The gate itself may or may not have left the queue yet.
    assert!(
        (bound - 1..=bound).contains(&accepted.len()),
        "{} accepted with a bound of {bound}",
        accepted.len()
    );
    assert_eq!(refused, 20 - accepted.len());
    open_gate(&c).await;
    gate.await.unwrap();
    for (i, fut) in accepted {
        let out = fut
            .await
            .unwrap_or_else(|e| panic!("queued member {i}: {e}"));
        assert!(out.results[0].uuid.is_some(), "member {i}");
    }
    // Submitting again works once the queue drained.
    let (t, _) = port_txn("sw", 100);
    b.submit(t).await.unwrap();
}
