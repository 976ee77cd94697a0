//! NetworkPolicies against the real NB (real binary, API fixture): the port group, address
//! sets and ACLs of a policy as upstream writes them, membership following pods and labels
//! by mutates of the changed members only, the node allows while any policy exists, log
//! meters, deletion leaving nothing behind, and a restart that writes nothing.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_ovn_nb::objects::string_map;
use ovsdb::{Atom, Datum};
use serde_json::{json, Value};
use support::nb::{named, pg_acl_rows, port_uuid, priority, rows, set_of, text};
use support::{eventually, World};

const LONG: Duration = Duration::from_secs(60);

/// The ACLs hanging from port group `pg`: (direction, priority, match).
fn pg_acls(w: &World, pg: &str) -> BTreeSet<(String, i64, String)> {
    pg_acl_rows(w, pg)
        .iter()
        .map(|r| (text(r, "direction"), priority(r), text(r, "match")))
        .collect()
}

async fn create_pod(w: &World, ns: &str, name: &str, labels: Value) -> String {
    let p: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]}]}
    }))
    .unwrap();
    let api: Api<Pod> = Api::namespaced(w.client.clone(), ns);
    api.create(&PostParams::default(), &p).await.unwrap();
    eventually(&format!("{name} allocated"), LONG, || async {
        let p = api.get(name).await.ok()?;
        let a = p.metadata.annotations?;
        (a.get("ovn.kubernetes.io/allocated").map(String::as_str) == Some("true"))
            .then(|| a["ovn.kubernetes.io/ip_address"].clone())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_policy_becomes_upstreams_port_group_sets_and_acls() {
    let mut w = World::new(1, false).await;
    w.start_controller();
    let web_ip = create_pod(&w, "default", "web", json!({"app": "web"})).await;
    let cli_ip = create_pod(&w, "default", "cli", json!({"role": "client"})).await;
    let _ = web_ip;
    let nps: Api<NetworkPolicy> = Api::namespaced(w.client.clone(), "default");
    let np: NetworkPolicy = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-web", "namespace": "default", "annotations": {
            "ovn.kubernetes.io/enable_log": "true", "ovn.kubernetes.io/acl_log_meter_rate": "20"}},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                              "ports": [{"protocol": "TCP", "port": "http"}]}]},
    }))
    .unwrap();
    nps.create(&PostParams::default(), &np).await.unwrap();

    let pg = "allow.web.default";
    let allow_set = "allow.web.default.ingress.allow.IPv4.0";
    let want: BTreeSet<(String, i64, String)> = [
        ("to-lport".to_string(), 2000, format!("outport == @{pg} && ip")),
        (
            "to-lport".to_string(),
            2001,
            format!("outport == @{pg} && ip && ip4.src == ${allow_set} && ip4.src != $allow.web.default.ingress.except.IPv4.0 && tcp.dst == 8080"),
        ),
    ]
    .into();
    eventually("the policy's ACLs", LONG, || async {
        (pg_acls(&w, pg) == want).then_some(())
    })
    .await;
    let p = named(&w, "Port_Group", pg).unwrap();
    assert_eq!(
        string_map(&p, "external_ids").get("np").map(String::as_str),
        Some("default/allow-web")
    );
    let members: BTreeSet<Atom> = p
        .get("ports")
        .and_then(Datum::as_set)
        .map(|s| s.iter().cloned().collect())
        .unwrap();
    assert_eq!(members, [port_uuid(&w, "web.default").unwrap()].into());
    eventually("the allow set holds the client", LONG, || async {
        (set_of(&named(&w, "Address_Set", allow_set)?, "addresses") == [cli_ip.clone()].into())
            .then_some(())
    })
    .await;
    let meter = eventually("the log meter", LONG, || async {
        named(&w, "Meter", &format!("{pg}_to-lport_meter"))
    })
    .await;
    assert_eq!(text(&meter, "unit"), "pktps");
    // While a policy exists, the node lets its own traffic reach its pods.
    eventually("the node allows", LONG, || async {
        let acls = pg_acls(&w, "node.node1");
        (acls.len() == 2 && acls.iter().all(|(_, p, _)| *p == 3000)).then_some(())
    })
    .await;

    // A second client joins the set with one mutate; relabelling the first takes it out.
    let before = w
        .counter("kube_ovn_controller_nb_transactions_total", "")
        .await
        .unwrap_or(0.0);
    let cli2_ip = create_pod(&w, "default", "cli2", json!({"role": "client"})).await;
    eventually("cli2 in the allow set", LONG, || async {
        set_of(&named(&w, "Address_Set", allow_set)?, "addresses")
            .contains(&cli2_ip)
            .then_some(())
    })
    .await;
    let after = w
        .counter("kube_ovn_controller_nb_transactions_total", "")
        .await
        .unwrap_or(0.0);
    assert!(
        after - before <= 3.0,
        "a new peer took {} transactions",
        after - before
    );
    assert_eq!(pg_acls(&w, pg), want, "a peer change rewrote ACLs");
    Api::<Pod>::namespaced(w.client.clone(), "default")
        .patch(
            "cli",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"role": "other"}}})),
        )
        .await
        .unwrap();
    eventually("cli out of the allow set", LONG, || async {
        (set_of(&named(&w, "Address_Set", allow_set)?, "addresses") == [cli2_ip.clone()].into())
            .then_some(())
    })
    .await;

    // A restart on the converged NB writes nothing.
    w.controller_settled().await;
    w.kill_controller();
    let mut changes = w.nb.subscribe();
    w.start_controller();
    eventually("the policy reconciled after the restart", LONG, || async {
        let n = w
            .counter(
                "kube_ovn_controller_reconciles_total",
                "kind=\"network-policy\"",
            )
            .await?;
        let s = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"subnet\"")
            .await?;
        let nodes = w
            .counter(
                "kube_ovn_controller_reconciles_total",
                "kind=\"network-policy-nodes\"",
            )
            .await?;
        let pods = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"pod\"")
            .await?;
        (n >= 1.0 && s >= 2.0 && nodes >= 1.0 && pods >= 3.0).then_some(())
    })
    .await;
    w.assert_wrote_nothing(&mut changes, "the restart").await;

    // Deleting the policy leaves no port group, set, ACL or meter, and the node allows go.
    nps.delete("allow-web", &DeleteParams::default())
        .await
        .unwrap();
    eventually("everything of the policy gone", LONG, || async {
        let pg_gone = named(&w, "Port_Group", pg).is_none();
        let sets_gone = !rows(&w, "Address_Set")
            .iter()
            .any(|r| text(r, "name").starts_with("allow.web.default."));
        let meter_gone = named(&w, "Meter", &format!("{pg}_to-lport_meter")).is_none();
        let acls_gone = !rows(&w, "ACL").iter().any(|r| {
            string_map(r, "external_ids")
                .get("parent")
                .map(String::as_str)
                == Some(pg)
        });
        let node_clear = pg_acls(&w, "node.node1").is_empty();
        (pg_gone && sets_gone && meter_gone && acls_gone && node_clear).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_written_policy_is_adopted_without_writes() {
    let mut w = World::new(1, false).await;
    w.start_controller();
    let web_ip = create_pod(&w, "default", "web", json!({"app": "web"})).await;
    let cli_ip = create_pod(&w, "default", "cli", json!({"role": "client"})).await;
    let _ = web_ip;
    eventually("the node reconciled", LONG, || async {
        w.counter("kube_ovn_controller_reconciles_total", "kind=\"node\"")
            .await
            .filter(|n| *n >= 1.0)
    })
    .await;
    w.controller_settled().await;
    w.kill_controller();

    // What upstream writes for this policy, built with ovn-nbctl from its naming rules.
    let pg = "db.access.default";
    let web_port = support::upstream_layout::uuid_of(&w, "logical_switch_port", "web.default");
    support::upstream_layout::ingress_policy(
        &w,
        "default",
        "db-access",
        &[web_port],
        &[cli_ip],
        5432,
    );
    // The node allows upstream keeps while a policy exists.
    support::upstream_layout::node_policy_allows(&w, "node1", w.sandbox.state().nodes[0].ip.into());
    let np: NetworkPolicy = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "db-access", "namespace": "default"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                              "ports": [{"protocol": "TCP", "port": 5432}]}]},
    }))
    .unwrap();
    Api::<NetworkPolicy>::namespaced(w.client.clone(), "default")
        .create(&PostParams::default(), &np)
        .await
        .unwrap();
    eventually("the replica has the upstream rows", LONG, || async {
        (pg_acls(&w, pg).len() == 2 && pg_acls(&w, "node.node1").len() == 2).then_some(())
    })
    .await;

    let mut changes = w.nb.subscribe();
    w.start_controller();
    eventually("everything reconciled", LONG, || async {
        let n = w
            .counter(
                "kube_ovn_controller_reconciles_total",
                "kind=\"network-policy\"",
            )
            .await?;
        let nodes = w
            .counter(
                "kube_ovn_controller_reconciles_total",
                "kind=\"network-policy-nodes\"",
            )
            .await?;
        let pods = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"pod\"")
            .await?;
        let s = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"subnet\"")
            .await?;
        (n >= 1.0 && nodes >= 1.0 && pods >= 2.0 && s >= 2.0).then_some(())
    })
    .await;
    w.assert_wrote_nothing(&mut changes, "adopting upstream's policy")
        .await;
}
