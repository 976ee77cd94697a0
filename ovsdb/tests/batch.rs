//! Group commit against a real ovsdb-server: many concurrent submits, a failing member isolated,
//! named UUIDs mapped back, connection loss reported to every member.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use ovsdb::batch::{BatchConfig, Batcher};
use ovsdb::{Atom, Condition, Datum, Error, Mutation, Row, Transaction, Uuid};
use support::Server;
use tokio::task::JoinSet;

const NB: &str = "OVN_Northbound";

fn row(pairs: &[(&str, Datum)]) -> Row {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
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
