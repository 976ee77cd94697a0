//! `kubectl ko diagnose drift` against a real NB: hand-made damage (a deleted port, a changed
//! nexthop, a stray kube-ovn row) is reported exactly, `--repair` undoes it, and the next run is
//! clean — with no Kubernetes object written by the dry runs.

mod support;

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{json, Value};
use support::{eventually, World};

const LONG: Duration = Duration::from_secs(60);

async fn create_pod(w: &World, name: &str) {
    let p: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x"}]}
    }))
    .unwrap();
    w.pods().create(&PostParams::default(), &p).await.unwrap();
    eventually(&format!("{name} allocated"), LONG, || async {
        let a = w.pods().get(name).await.ok()?.metadata.annotations?;
        (a.get("ovn.kubernetes.io/allocated").map(String::as_str) == Some("true")).then_some(())
    })
    .await;
}

/// Runs `kubectl-ko diagnose drift` (plus `extra` flags) and returns its exit code and output.
async fn drift(w: &World, extra: &[&str]) -> (i32, String, String) {
    let st = w.sandbox.state();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubectl-ko"));
    cmd.arg(format!("--kubeconfig={}", st.kubeconfig.display()))
        .args(["diagnose", "drift", "--timeout=60"])
        .args(extra)
        .arg("--")
        .arg(format!("--ovn-nb-addr={}", st.central.nb));
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every object's resourceVersion: a dry run must leave them all as they were.
async fn versions(w: &World) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in w.pods().list(&ListParams::default()).await.unwrap() {
        out.push((
            format!("pod {}", p.metadata.name.unwrap_or_default()),
            p.metadata.resource_version.unwrap_or_default(),
        ));
    }
    let ips: Api<kube_ovn_common::crd::Ip> = Api::all(w.client.clone());
    for ip in ips.list(&ListParams::default()).await.unwrap() {
        out.push((
            format!("ip {}", ip.metadata.name.unwrap_or_default()),
            ip.metadata.resource_version.unwrap_or_default(),
        ));
    }
    out
}

fn rows_of(report: &Value) -> Vec<(String, String, String, String)> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["state"].as_str().unwrap().to_string(),
                r["table"].as_str().unwrap().to_string(),
                r["row"].as_str().unwrap().to_string(),
                r["objects"].to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_lists_exactly_the_damage_and_repair_undoes_it() {
    let mut w = World::new(1, false).await;
    w.start_controller();
    create_pod(&w, "web").await;
    create_pod(&w, "cli").await;
    w.controller_settled().await;
    w.kill_controller();

    // A converged cluster: no drift, exit 0.
    let (code, out, err) = drift(&w, &[]).await;
    assert_eq!(code, 0, "clean cluster: {out}{err}");
    assert!(out.contains("no drift"), "{out}");

    // The damage: a pod's port deleted, a gateway policy's nexthop changed, a stray row.
    w.nbctl(&["lsp-del", "web.default"]);
    let policy_uuid = w
        .nbctl(&[
            "--bare",
            "--columns=_uuid",
            "find",
            "logical_router_policy",
            "priority=29000",
        ])
        .split_whitespace()
        .next()
        .expect("a 29000 gateway policy")
        .to_string();
    let nexthop = w
        .nbctl(&["get", "logical_router_policy", &policy_uuid, "nexthops"])
        .trim()
        .trim_matches(|c| c == '[' || c == ']' || c == '"')
        .to_string();
    assert!(nexthop.parse::<std::net::IpAddr>().is_ok(), "{nexthop}");
    w.nbctl(&[
        "set",
        "logical_router_policy",
        &policy_uuid,
        "nexthops=\"100.64.0.99\"",
    ]);
    w.nbctl(&[
        "--",
        "--id=@p",
        "create",
        "logical_switch_port",
        "name=ghost.default",
        "external_ids:vendor=kube-ovn",
        "external_ids:pod=default/ghost",
        "external_ids:ls=ovn-default",
        "--",
        "add",
        "logical_switch",
        "ovn-default",
        "ports",
        "@p",
    ]);

    let before = versions(&w).await;
    let (code, out, err) = drift(&w, &["-o", "json"]).await;
    assert_eq!(code, 1, "drift is a non-zero exit: {out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["settled"], true, "{err}");
    let rows = rows_of(&report);
    assert_eq!(rows.len(), 3, "exactly the three damaged rows: {rows:#?}");
    assert!(
        rows.iter().any(|(s, t, r, o)| s == "missing"
            && t == "Logical_Switch_Port"
            && r == "web.default"
            && o.contains("default/web")),
        "the deleted port is missing: {rows:#?}"
    );
    assert!(
        rows.iter().any(|(s, t, r, o)| s == "extra"
            && t == "Logical_Switch_Port"
            && r == "ghost.default"
            && o.contains("default/ghost")),
        "the stray port is extra: {rows:#?}"
    );
    let policy = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["table"] == "Logical_Router_Policy")
        .unwrap_or_else(|| panic!("the changed policy: {rows:#?}"));
    assert_eq!(policy["state"], "different");
    let nexthops = &policy["columns"]["nexthops"];
    assert!(
        nexthops["actual"].as_str().unwrap().contains("100.64.0.99")
            && nexthops["desired"].as_str().unwrap().contains(&nexthop),
        "{nexthops}"
    );
    assert_eq!(versions(&w).await, before, "a dry run wrote to Kubernetes");
    assert!(
        w.nbctl(&[
            "--bare",
            "--columns=name",
            "find",
            "logical_switch_port",
            "name=web.default"
        ])
        .trim()
        .is_empty(),
        "a dry run wrote to the NB"
    );

    // The table form names the same three and shows the repair transaction.
    let (code, table, _) = drift(&w, &[]).await;
    assert_eq!(code, 1);
    assert!(
        table.contains("web.default") && table.contains("ghost.default"),
        "{table}"
    );
    assert!(table.contains("--repair would send:"), "{table}");
    println!("{table}");

    let (code, out, err) = drift(&w, &["--repair"]).await;
    assert_eq!(code, 0, "repair: {out}{err}");
    assert!(err.contains("repaired"), "{err}");
    let port = w.nbctl(&[
        "--bare",
        "--columns=name",
        "find",
        "logical_switch_port",
        "name=web.default",
    ]);
    assert_eq!(port.trim(), "web.default");
    let ghost = w.nbctl(&[
        "--bare",
        "--columns=name",
        "find",
        "logical_switch_port",
        "name=ghost.default",
    ]);
    assert!(ghost.trim().is_empty(), "the stray port is gone");
    let restored = w.nbctl(&["get", "logical_router_policy", &policy_uuid, "nexthops"]);
    assert!(restored.contains(&nexthop), "{restored}");

    let (code, out, err) = drift(&w, &[]).await;
    assert_eq!(code, 0, "after repair: {out}{err}");
    assert!(out.contains("no drift"), "{out}");
}
