//! ClusterNetworkPolicies against the real NB (real binary with `--enable-anp=true`, API
//! fixture): upstream's port group, address sets and ACLs for the Admin tier, the Baseline
//! tier packed below NetworkPolicy, priority and rule updates, deletion leaving nothing behind,
//! and an upstream-written layout adopted without a write.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_ovn_common::crd::ClusterNetworkPolicy;
use kube_ovn_nb::objects::string_map;
use serde_json::{json, Value};
use support::nb::{named, pg_acl_rows, priority, rows, set_of, text};
use support::{eventually, World};

const LONG: Duration = Duration::from_secs(60);

/// An ACL as compared here: direction, priority, match, action, name.
type AclView = (String, i64, String, String, String);

fn pg_acls(w: &World, pg: &str) -> BTreeSet<AclView> {
    pg_acl_rows(w, pg)
        .iter()
        .map(|r| {
            let ids = string_map(r, "external_ids");
            assert_eq!(ids.get("parent").map(String::as_str), Some(pg));
            assert_eq!(
                string_map(r, "options")
                    .get("apply-after-lb")
                    .map(String::as_str),
                Some("true")
            );
            (
                text(r, "direction"),
                priority(r),
                text(r, "match"),
                text(r, "action"),
                text(r, "name"),
            )
        })
        .collect()
}

fn acl(dir: &str, prio: i64, m: &str, action: &str, name: &str) -> AclView {
    (dir.into(), prio, m.into(), action.into(), name.into())
}

/// Rows marked as a ClusterNetworkPolicy's, and ACLs named as one's.
fn cnp_rows(w: &World) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["Port_Group", "Address_Set"] {
        for r in rows(w, table) {
            if string_map(&r, "external_ids").contains_key("cnp") {
                out.push(format!("{table} {}", text(&r, "name")));
            }
        }
    }
    for r in rows(w, "ACL") {
        if text(&r, "name").starts_with("cnp/") {
            out.push(format!("ACL {}", text(&r, "name")));
        }
    }
    out
}

async fn create_pod(w: &World, name: &str, labels: Value) -> String {
    let p: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x"}]}
    }))
    .unwrap();
    let api: Api<Pod> = Api::namespaced(w.client.clone(), "default");
    api.create(&PostParams::default(), &p).await.unwrap();
    eventually(&format!("{name} allocated"), LONG, || async {
        let a = api.get(name).await.ok()?.metadata.annotations?;
        (a.get("ovn.kubernetes.io/allocated").map(String::as_str) == Some("true"))
            .then(|| a["ovn.kubernetes.io/ip_address"].clone())
    })
    .await
}

fn cnp(name: &str, tier: &str, priority: i32, spec: Value) -> ClusterNetworkPolicy {
    let mut spec = spec;
    spec["tier"] = json!(tier);
    spec["priority"] = json!(priority);
    serde_json::from_value(json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

fn guard_web() -> Value {
    json!({
        "subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}},
        "ingress": [
            {"name": "clients", "action": "Accept",
             "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "client"}}}}],
             "ports": [{"portNumber": {"protocol": "TCP", "port": 8080}}]},
            {"name": "rest", "action": "Deny", "from": [{"namespaces": {}}]}
        ],
        "egress": [{"name": "ten", "action": "Deny", "to": [{"networks": ["10.0.0.0/8"]}]}]
    })
}

async fn reconciled(w: &World, n: f64) {
    eventually("the policies reconciled", LONG, || async {
        let c = w
            .counter(
                "kube_ovn_controller_reconciles_total",
                "kind=\"cluster-network-policy\"",
            )
            .await?;
        let pods = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"pod\"")
            .await?;
        (c >= n && pods >= 2.0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_network_policies_become_upstreams_rows_and_go_away() {
    let started = Instant::now();
    let mut w = World::new(1, false).await;
    w.controller_args = vec!["--enable-anp=true".into()];
    w.start_controller();
    let web_ip = create_pod(&w, "web", json!({"app": "web"})).await;
    let cli_ip = create_pod(&w, "cli", json!({"role": "client"})).await;
    let cnps: Api<ClusterNetworkPolicy> = Api::all(w.client.clone());
    cnps.create(
        &PostParams::default(),
        &cnp("guard-web", "Admin", 4, guard_web()),
    )
    .await
    .unwrap();

    let pg = "guard.web";
    let want = |top: i64| -> BTreeSet<AclView> {
        [
            acl("to-lport", top, "outport == @guard.web && ip && ip4.src == $guard.web.ingress.0.clients.IPv4 && tcp.dst == 8080", "allow-related", "cnp/guard-web/ingress/IPv4/0"),
            acl("to-lport", top - 1, "outport == @guard.web && ip && ip4.src == $guard.web.ingress.1.rest.IPv4", "drop", "cnp/guard-web/ingress/IPv4/1"),
            acl("from-lport", top, "inport == @guard.web && ip && ip4.dst == $guard.web.egress.0.ten.IPv4", "drop", "cnp/guard-web/egress/IPv4/0"),
        ]
        .into()
    };
    // Admin tier: upstream's 30000 - 25 * priority - index.
    eventually("the Admin policy's ACLs", LONG, || async {
        (pg_acls(&w, pg) == want(29900)).then_some(())
    })
    .await;
    let p = named(&w, "Port_Group", pg).unwrap();
    let ids = string_map(&p, "external_ids");
    assert_eq!(ids.get("cnp").map(String::as_str), Some(pg));
    assert_eq!(ids.get("vendor").map(String::as_str), Some("kube-ovn"));
    for (set, mark, addrs) in [
        (
            "guard.web.ingress.0.clients.IPv4",
            "guard-web/ingress",
            vec![cli_ip.clone()],
        ),
        (
            "guard.web.ingress.1.rest.IPv4",
            "guard-web/ingress",
            vec![cli_ip.clone(), web_ip.clone()],
        ),
        (
            "guard.web.egress.0.ten.IPv4",
            "guard-web/egress",
            vec!["10.0.0.0/8".to_string()],
        ),
    ] {
        let s = named(&w, "Address_Set", set).unwrap_or_else(|| panic!("no {set}"));
        assert_eq!(
            string_map(&s, "external_ids")
                .get("cnp")
                .map(String::as_str),
            Some(mark)
        );
        assert_eq!(
            set_of(&s, "addresses"),
            addrs.into_iter().collect(),
            "{set}"
        );
        assert!(named(&w, "Address_Set", &set.replace("IPv4", "IPv6")).is_some());
    }

    // A priority update moves the ACLs; a new client joins the allow set.
    cnps.patch(
        "guard-web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"priority": 10}})),
    )
    .await
    .unwrap();
    eventually("the ACLs at the new priority", LONG, || async {
        (pg_acls(&w, pg) == want(29750)).then_some(())
    })
    .await;
    let cli2_ip = create_pod(&w, "cli2", json!({"role": "client"})).await;
    eventually("cli2 in the allow set", LONG, || async {
        set_of(
            &named(&w, "Address_Set", "guard.web.ingress.0.clients.IPv4")?,
            "addresses",
        )
        .contains(&cli2_ip)
        .then_some(())
    })
    .await;

    // Dropping a rule removes its ACL and address sets.
    let mut fewer = guard_web();
    fewer["ingress"] = json!([fewer["ingress"][0].clone()]);
    cnps.patch(
        "guard-web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": fewer})),
    )
    .await
    .unwrap();
    eventually("rule 1 gone", LONG, || async {
        let acls = pg_acls(&w, pg);
        (acls.len() == 2 && named(&w, "Address_Set", "guard.web.ingress.1.rest.IPv4").is_none())
            .then_some(())
    })
    .await;

    // Baseline tier: packed below NetworkPolicy's 2000, in priority order.
    let baseline = |name: &str, prio: i32| {
        cnp(
            name,
            "Baseline",
            prio,
            json!({"subject": {"namespaces": {}},
            "ingress": [{"name": "all", "action": "Deny", "from": [{"namespaces": {}}]},
                        {"name": "nets", "action": "Accept", "from": [{"namespaces": {}}]}]}),
        )
    };
    cnps.create(&PostParams::default(), &baseline("base-b", 20))
        .await
        .unwrap();
    eventually("base-b at the top of the band", LONG, || async {
        pg_acls(&w, "base.b")
            .iter()
            .any(|a| a.1 == 1999 && a.3 == "drop")
            .then_some(())
    })
    .await;
    cnps.create(&PostParams::default(), &baseline("base-a", 5))
        .await
        .unwrap();
    eventually("base-a above base-b", LONG, || async {
        let a: BTreeSet<i64> = pg_acls(&w, "base.a").iter().map(|a| a.1).collect();
        let b: BTreeSet<i64> = pg_acls(&w, "base.b").iter().map(|a| a.1).collect();
        (a == [1998, 1999].into() && b == [1996, 1997].into()).then_some(())
    })
    .await;

    // A restart on the converged NB writes nothing.
    w.controller_settled().await;
    w.kill_controller();
    let mut changes = w.nb.subscribe();
    w.start_controller();
    reconciled(&w, 3.0).await;
    w.assert_wrote_nothing(&mut changes, "the restart").await;

    for n in ["guard-web", "base-a", "base-b"] {
        cnps.delete(n, &DeleteParams::default()).await.unwrap();
    }
    eventually("no ClusterNetworkPolicy rows left", LONG, || async {
        cnp_rows(&w).is_empty().then_some(())
    })
    .await;
    println!("cluster network policy lifecycle: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_written_cluster_network_policy_is_adopted_without_writes() {
    let started = Instant::now();
    let mut w = World::new(1, false).await;
    w.controller_args = vec!["--enable-anp=true".into()];
    w.start_controller();
    let web_ip = create_pod(&w, "web", json!({"app": "web"})).await;
    let cli_ip = create_pod(&w, "cli", json!({"role": "client"})).await;
    eventually("the node reconciled", LONG, || async {
        w.counter("kube_ovn_controller_reconciles_total", "kind=\"node\"")
            .await
            .filter(|n| *n >= 1.0)
    })
    .await;
    w.controller_settled().await;
    w.kill_controller();

    // What upstream writes for "guard-web" (Admin, priority 4), by its naming rules with
    // ovn-nbctl (no `tier`, which 23.03 lacks).
    let web = w
        .nbctl(&[
            "--bare",
            "--columns=_uuid",
            "find",
            "logical_switch_port",
            "name=web.default",
        ])
        .trim()
        .to_string();
    w.nbctl(&[
        "create",
        "port_group",
        "name=guard.web",
        "external_ids:cnp=guard.web",
        "external_ids:vendor=kube-ovn",
        &format!("ports=[{web}]"),
    ]);
    let mut all = [cli_ip.clone(), web_ip.clone()];
    all.sort();
    for (name, mark, addrs) in [
        (
            "guard.web.ingress.0.clients.IPv4",
            "guard-web/ingress",
            cli_ip.clone(),
        ),
        (
            "guard.web.ingress.0.clients.IPv6",
            "guard-web/ingress",
            String::new(),
        ),
        (
            "guard.web.ingress.1.rest.IPv4",
            "guard-web/ingress",
            all.join("\",\""),
        ),
        (
            "guard.web.ingress.1.rest.IPv6",
            "guard-web/ingress",
            String::new(),
        ),
        (
            "guard.web.egress.0.ten.IPv4",
            "guard-web/egress",
            "10.0.0.0/8".to_string(),
        ),
        (
            "guard.web.egress.0.ten.IPv6",
            "guard-web/egress",
            String::new(),
        ),
    ] {
        let mut args = vec![
            "create".to_string(),
            "address_set".into(),
            format!("name={name}"),
            format!("external_ids:cnp=\"{mark}\""),
            "external_ids:vendor=kube-ovn".into(),
        ];
        if !addrs.is_empty() {
            args.push(format!("addresses=\"{addrs}\""));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        w.nbctl(&args);
    }
    for (dir, prio, m, action, name) in [
        ("to-lport", "29900", "outport == @guard.web && ip && ip4.src == $guard.web.ingress.0.clients.IPv4 && tcp.dst == 8080", "allow-related", "cnp/guard-web/ingress/IPv4/0"),
        ("to-lport", "29899", "outport == @guard.web && ip && ip4.src == $guard.web.ingress.1.rest.IPv4", "drop", "cnp/guard-web/ingress/IPv4/1"),
        ("from-lport", "29900", "inport == @guard.web && ip && ip4.dst == $guard.web.egress.0.ten.IPv4", "drop", "cnp/guard-web/egress/IPv4/0"),
    ] {
        w.nbctl(&[
            "--", "--id=@a", "create", "acl", &format!("direction={dir}"),
            &format!("priority={prio}"), &format!("match=\"{m}\""), &format!("action={action}"),
            &format!("name=\"{name}\""), "options:apply-after-lb=true",
            "external_ids:parent=guard.web", "external_ids:vendor=kube-ovn",
            "--", "add", "port_group", "guard.web", "acls", "@a",
        ]);
    }
    Api::<ClusterNetworkPolicy>::all(w.client.clone())
        .create(
            &PostParams::default(),
            &cnp("guard-web", "Admin", 4, guard_web()),
        )
        .await
        .unwrap();
    eventually("the replica has the upstream rows", LONG, || async {
        (pg_acls(&w, "guard.web").len() == 3).then_some(())
    })
    .await;

    let mut changes = w.nb.subscribe();
    w.start_controller();
    reconciled(&w, 1.0).await;
    eventually("the subnets reconciled", LONG, || async {
        w.counter("kube_ovn_controller_reconciles_total", "kind=\"subnet\"")
            .await
            .filter(|n| *n >= 2.0)
    })
    .await;
    w.assert_wrote_nothing(&mut changes, "adopting upstream's ClusterNetworkPolicy")
        .await;

    // With --enable-anp off, upstream's GC removes every cnp row; so does ours.
    w.kill_controller();
    w.controller_args.clear();
    w.start_controller();
    eventually("the cnp rows removed", LONG, || async {
        cnp_rows(&w).is_empty().then_some(())
    })
    .await;
    println!("upstream cnp layout adoption: {:?}", started.elapsed());
}

/// A pod's port, MAC and IPv4 address once it is allocated.
async fn endpoint(w: &World, name: &str, labels: Value) -> (String, String, String) {
    let ip = create_pod(w, name, labels).await;
    let p = Api::<Pod>::namespaced(w.client.clone(), "default")
        .get(name)
        .await
        .unwrap();
    let mac = p.metadata.annotations.unwrap()["ovn.kubernetes.io/mac_address"].clone();
    (format!("{name}.default"), mac, ip)
}

/// Whether OVN's logical pipeline (ovn-trace on the SB northd wrote) delivers a new TCP
/// connection from `from` to `to` on `port`.
fn delivered(
    w: &World,
    from: &(String, String, String),
    to: &(String, String, String),
    port: u16,
) -> bool {
    let flow = format!(
        "inport == \"{}\" && eth.src == {} && eth.dst == {} && ip4.src == {} && ip4.dst == {} && ip.ttl == 64 && tcp.src == 40000 && tcp.dst == {port}",
        from.0, from.1, to.1, from.2, to.2
    );
    let out = std::process::Command::new("ovn-trace")
        .arg(format!("--db={}", w.sandbox.state().central.sb))
        .args(["--ct=new", "--ct=new", "--minimal", "ovn-default", &flow])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ovn-trace: {stderr}");
    assert!(
        !stderr.contains("parsing expression failed"),
        "a logical flow does not parse: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).contains(&format!("output(\"{}\")", to.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_tier_then_network_policy_then_baseline_tier_in_ovns_pipeline() {
    let started = Instant::now();
    let mut w = World::new(1, false).await;
    w.controller_args = vec!["--enable-anp=true".into()];
    w.start_controller();
    let web = endpoint(&w, "web", json!({"app": "web"})).await;
    let cli = endpoint(&w, "cli", json!({"role": "client"})).await;
    let other = endpoint(&w, "other", json!({})).await;
    let cnps: Api<ClusterNetworkPolicy> = Api::all(w.client.clone());
    let subject =
        json!({"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}});
    let clients = json!([{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "client"}}}}]);
    // Admin: clients are passed on, everyone else is denied.
    cnps.create(
        &PostParams::default(),
        &cnp(
            "admin",
            "Admin",
            1,
            json!({"subject": subject,
            "ingress": [{"name": "clients", "action": "Pass", "from": clients},
                        {"name": "rest", "action": "Deny", "from": [{"namespaces": {}}]}]}),
        ),
    )
    .await
    .unwrap();
    // NetworkPolicy: every pod of the namespace may reach 8080 (others default-dropped).
    let nps: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
        Api::namespaced(w.client.clone(), "default");
    nps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "web-8080", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 8080}]}]}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    // Baseline: allow everything (priority 0: written above any other Baseline policy).
    let baseline = |action: &str| {
        cnp(
            "baseline",
            "Baseline",
            0,
            json!({"subject": {"namespaces": {}},
            "ingress": [{"name": "all", "action": action, "from": [{"namespaces": {}}]}]}),
        )
    };
    cnps.create(&PostParams::default(), &baseline("Accept"))
        .await
        .unwrap();
    eventually("the three layers in the NB", LONG, || async {
        let admin = pg_acls(&w, "admin").len() == 1
            && named(&w, "Address_Set", "admin.ingress.0.clients.IPv4")
                .is_some_and(|s| set_of(&s, "addresses") == [cli.2.clone()].into());
        let np = pg_acl_rows(&w, "web.8080.default").len() == 2;
        let base = pg_acls(&w, "baseline")
            .iter()
            .any(|a| a.3 == "allow-related");
        (admin && np && base).then_some(())
    })
    .await;
    w.nbctl(&["--wait=sb", "sync"]);
    // A client is passed to the NetworkPolicy: 8080 allowed, 9090 default-dropped there (the
    // Baseline accept below NetworkPolicy is never reached).
    assert!(
        delivered(&w, &cli, &web, 8080),
        "pass → NetworkPolicy allow"
    );
    assert!(
        !delivered(&w, &cli, &web, 9090),
        "pass → NetworkPolicy drop"
    );
    // The Admin Deny wins over the NetworkPolicy's allow.
    assert!(
        !delivered(&w, &other, &web, 8080),
        "Admin deny over NP allow"
    );

    // Without the NetworkPolicy, passed traffic reaches the Baseline tier.
    nps.delete("web-8080", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the NetworkPolicy gone", LONG, || async {
        named(&w, "Port_Group", "web.8080.default")
            .is_none()
            .then_some(())
    })
    .await;
    w.nbctl(&["--wait=sb", "sync"]);
    assert!(delivered(&w, &cli, &web, 9090), "pass → Baseline accept");
    assert!(
        !delivered(&w, &other, &web, 8080),
        "Admin deny over Baseline accept"
    );
    cnps.patch(
        "baseline",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"ingress": [{"name": "all", "action": "Deny", "from": [{"namespaces": {}}]}]}})),
    )
    .await
    .unwrap();
    eventually("the Baseline tier denies", LONG, || async {
        pg_acls(&w, "baseline")
            .iter()
            .any(|a| a.3 == "drop")
            .then_some(())
    })
    .await;
    w.nbctl(&["--wait=sb", "sync"]);
    assert!(!delivered(&w, &cli, &web, 9090), "pass → Baseline deny");
    println!(
        "two-tier precedence in OVN's pipeline: {:?}",
        started.elapsed()
    );
}
