//! SecurityGroups against the real NB (real binary, API fixture): the deny-all group made at
//! start, a group's port group, address sets and ACLs as upstream writes them, pods joining and
//! leaving through `ovn.kubernetes.io/security_groups` (port marks, memberships, deny-all),
//! a remote group, an invalid group reported, deletion leaving nothing behind, and an
//! upstream-written group adopted without a single write.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_ovn_common::crd::SecurityGroup;
use kube_ovn_nb::objects::string_map;
use ovsdb::{Atom, Datum};
use serde_json::{json, Value};
use support::nb::{named, pg_acl_rows, priority, set_of, text};
use support::upstream_layout as up;
use support::{eventually, World};

const LONG: Duration = Duration::from_secs(60);

/// The names of the ports in port group `pg`.
fn pg_ports(w: &World, pg: &str) -> Option<BTreeSet<String>> {
    let p = named(w, "Port_Group", pg)?;
    let ids: BTreeSet<Atom> = p
        .get("ports")
        .and_then(Datum::as_set)
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    let c = w.nb.cache();
    let t = c.table("Logical_Switch_Port")?;
    Some(
        t.iter()
            .filter(|(u, _)| ids.contains(&Atom::Uuid(**u)))
            .map(|(_, r)| text(r, "name"))
            .collect(),
    )
}

/// The ACLs hanging from port group `pg`: (direction, priority, match, action).
fn pg_acls(w: &World, pg: &str) -> BTreeSet<(String, i64, String, String)> {
    pg_acl_rows(w, pg)
        .iter()
        .map(|r| {
            let d = text(r, "direction");
            (d, priority(r), text(r, "match"), text(r, "action"))
        })
        .collect()
}

fn port_ext(w: &World, port: &str) -> BTreeMap<String, String> {
    named(w, "Logical_Switch_Port", port)
        .map(|r| string_map(&r, "external_ids"))
        .unwrap_or_default()
}

async fn create_pod(w: &World, name: &str, groups: Option<&str>) -> String {
    let mut meta = json!({"name": name, "namespace": "default"});
    if let Some(g) = groups {
        meta["annotations"] = json!({"ovn.kubernetes.io/security_groups": g});
    }
    let p: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x"}]}
    }))
    .unwrap();
    let api: Api<Pod> = Api::namespaced(w.client.clone(), "default");
    api.create(&PostParams::default(), &p).await.unwrap();
    eventually(&format!("{name} allocated"), LONG, || async {
        let p = api.get(name).await.ok()?;
        let a = p.metadata.annotations?;
        (a.get("ovn.kubernetes.io/allocated").map(String::as_str) == Some("true"))
            .then(|| a["ovn.kubernetes.io/ip_address"].clone())
    })
    .await
}

async fn create_sg(w: &World, name: &str, spec: Value) {
    let sg: SecurityGroup = serde_json::from_value(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "SecurityGroup",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap();
    Api::<SecurityGroup>::all(w.client.clone())
        .create(&PostParams::default(), &sg)
        .await
        .unwrap();
}

fn tcp_rule(priority: i64, remote: Value, ports: (i64, i64)) -> Value {
    let mut r = json!({"ipVersion": "ipv4", "protocol": "tcp", "priority": priority,
        "portRangeMin": ports.0, "portRangeMax": ports.1, "policy": "allow"});
    for (k, v) in remote.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

/// The ten base allows of a group, written out as upstream's source spells them.
fn base_acls(pg: &str) -> Vec<(String, i64, String, String)> {
    let mut out = Vec::new();
    for (dir, port, dhcp4, dhcp6, nd) in [
        (
            "to-lport",
            "outport",
            ("67", "68"),
            ("547", "546"),
            "{130, 134, 135, 136}",
        ),
        (
            "from-lport",
            "inport",
            ("68", "67"),
            ("546", "547"),
            "{130, 133, 135, 136}",
        ),
    ] {
        for m in [
            format!("{port} == @{pg} && arp"),
            format!("{port} == @{pg} && icmp6.type == {nd} && icmp6.code == 0 && ip.ttl == 255"),
            format!(
                "{port} == @{pg} && udp.src == {} && udp.dst == {} && ip4",
                dhcp4.0, dhcp4.1
            ),
            format!(
                "{port} == @{pg} && udp.src == {} && udp.dst == {} && ip6",
                dhcp6.0, dhcp6.1
            ),
            format!("{port} == @{pg} && ip.proto == 112"),
        ] {
            out.push((dir.to_string(), 2005, m, "allow-related".to_string()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_groups_follow_their_rules_and_ports() {
    let mut w = World::new(1, false).await;
    w.start_controller();
    let deny_all = "ovn.sg.kubeovn_deny_all";
    eventually("the deny-all group made at start", LONG, || async {
        (pg_acls(&w, deny_all)
            == BTreeSet::from([
                (
                    "to-lport".to_string(),
                    2003,
                    format!("outport == @{deny_all} && ip"),
                    "drop".to_string(),
                ),
                (
                    "from-lport".to_string(),
                    2003,
                    format!("inport == @{deny_all} && ip"),
                    "drop".to_string(),
                ),
            ]))
        .then_some(())
    })
    .await;

    // web-sg names db-sg, which does not exist yet: refused until it does.
    create_sg(
        &w,
        "web-sg",
        json!({"allowSameGroupTraffic": true,
               "ingressRules": [tcp_rule(10, json!({"remoteType": "securityGroup",
                                                     "remoteSecurityGroup": "db-sg"}), (80, 443))]}),
    )
    .await;
    let web_ip = create_pod(&w, "web", Some("web-sg")).await;
    let sgs: Api<SecurityGroup> = Api::all(w.client.clone());
    eventually("web-sg refused while db-sg is missing", LONG, || async {
        let st = sgs.get("web-sg").await.ok()?.status?;
        (!st.ingress_last_sync_success).then_some(())
    })
    .await;
    assert!(named(&w, "Port_Group", "ovn.sg.web.sg").is_none());
    assert_eq!(
        port_ext(&w, "web.default")
            .get("associated_sg_web-sg")
            .map(String::as_str),
        Some("true")
    );

    create_sg(
        &w,
        "db-sg",
        json!({"egressRules": [{"ipVersion": "ipv4", "protocol": "all", "priority": 1,
                                "remoteType": "address", "remoteAddress": "0.0.0.0/0",
                                "policy": "drop"}]}),
    )
    .await;
    let pg = "ovn.sg.web.sg";
    let mut want = base_acls(pg);
    // Same-group traffic is allowed both ways.
    for (dir, port, side) in [
        ("to-lport", "outport", "src"),
        ("from-lport", "inport", "dst"),
    ] {
        for f in ["ip4", "ip6"] {
            let v = if f == "ip4" { "v4" } else { "v6" };
            want.push((
                dir.into(),
                2004,
                format!("{port} == @{pg} && {f} && {f}.{side} == $ovn.sg.web.sg.associated.{v}"),
                "allow-related".into(),
            ));
        }
    }
    want.push((
        "to-lport".into(),
        18474,
        format!(
            "outport == @{pg} && ip4 && ip4.src == $ovn.sg.db.sg.associated.v4 && 80 <= tcp.dst <= 443"
        ),
        "allow-related".into(),
    ));
    let want: BTreeSet<_> = want.into_iter().collect();
    eventually("web-sg's rows as upstream", LONG, || async {
        let members = pg_ports(&w, pg)?;
        let v4 = named(&w, "Address_Set", "ovn.sg.web.sg.associated.v4")?;
        let v6 = named(&w, "Address_Set", "ovn.sg.web.sg.associated.v6")?;
        (members == BTreeSet::from(["web.default".to_string()])
            && set_of(&v4, "addresses") == BTreeSet::from([web_ip.clone()])
            && set_of(&v6, "addresses").is_empty()
            && string_map(&v4, "external_ids")
                == BTreeMap::from([
                    ("sg".to_string(), "web-sg".to_string()),
                    ("vendor".to_string(), "kube-ovn".to_string()),
                ])
            && pg_acls(&w, pg) == want
            && pg_ports(&w, deny_all)? == BTreeSet::from(["web.default".to_string()]))
        .then_some(())
    })
    .await;
    let pg_ext = string_map(&named(&w, "Port_Group", pg).unwrap(), "external_ids");
    assert_eq!(
        pg_ext,
        BTreeMap::from([
            ("sg".to_string(), "web-sg".to_string()),
            ("type".to_string(), "security_group".to_string()),
            ("vendor".to_string(), "kube-ovn".to_string()),
        ])
    );
    eventually("web-sg's status", LONG, || async {
        let st = sgs.get("web-sg").await.ok()?.status?;
        (st.port_group == pg && st.allow_same_group_traffic && st.ingress_last_sync_success)
            .then_some(())
    })
    .await;
    let ext = port_ext(&w, "web.default");
    assert_eq!(
        ext.get("security_groups").map(String::as_str),
        Some("web-sg")
    );

    // A second pod in both groups; then web leaves its group.
    let api: Api<Pod> = Api::namespaced(w.client.clone(), "default");
    let db_ip = create_pod(&w, "db", Some("db-sg, web-sg")).await;
    eventually("db joins both groups", LONG, || async {
        let v4 = named(&w, "Address_Set", "ovn.sg.db.sg.associated.v4")?;
        (pg_ports(&w, "ovn.sg.db.sg")? == BTreeSet::from(["db.default".to_string()])
            && set_of(&v4, "addresses") == BTreeSet::from([db_ip.clone()])
            && pg_ports(&w, pg)?.len() == 2
            && pg_ports(&w, deny_all)?.len() == 2)
            .then_some(())
    })
    .await;
    assert_eq!(
        port_ext(&w, "db.default")
            .get("security_groups")
            .map(String::as_str),
        Some("db-sg/web-sg")
    );
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"ovn.kubernetes.io/security_groups": null}}}),
        ),
    )
    .await
    .unwrap();
    eventually("web left its group as upstream leaves it", LONG, || async {
        let ext = port_ext(&w, "web.default");
        (ext.get("associated_sg_web-sg").map(String::as_str) == Some("false")
            && ext.get("security_groups").map(String::as_str) == Some("")
            && pg_ports(&w, pg)? == BTreeSet::from(["db.default".to_string()])
            && pg_ports(&w, deny_all)? == BTreeSet::from(["db.default".to_string()]))
        .then_some(())
    })
    .await;

    // A restart writes nothing.
    w.controller_settled().await;
    w.kill_controller();
    let mut changes = w.nb.subscribe();
    w.start_controller();
    eventually("everything reconciled again", LONG, || async {
        let n = w
            .counter(
                "kube_ovn_controller_reconciles_total",
                "kind=\"security-group\"",
            )
            .await?;
        let pods = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"pod\"")
            .await?;
        (n >= 3.0 && pods >= 2.0).then_some(())
    })
    .await;
    w.assert_wrote_nothing(&mut changes, "a restart on converged security groups")
        .await;

    // Deleting the groups leaves only the deny-all group.
    for g in ["web-sg", "db-sg"] {
        sgs.delete(g, &DeleteParams::default()).await.unwrap();
    }
    eventually("the groups' rows are gone", LONG, || async {
        let c = w.nb.cache();
        let sets = c.table("Address_Set")?;
        let left = sets
            .iter()
            .any(|(_, r)| string_map(r, "external_ids").contains_key("sg"));
        drop(c);
        (named(&w, "Port_Group", pg).is_none()
            && named(&w, "Port_Group", "ovn.sg.db.sg").is_none()
            && !left
            && pg_ports(&w, deny_all)?.is_empty()
            && pg_acls(&w, deny_all).len() == 2)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_written_security_group_is_adopted_without_writes() {
    let mut w = World::new(1, false).await;
    w.start_controller();
    let ip = create_pod(&w, "app", Some("app-sg")).await;
    eventually("the deny-all group made at start", LONG, || async {
        (pg_acls(&w, "ovn.sg.kubeovn_deny_all").len() == 2).then_some(())
    })
    .await;
    w.controller_settled().await;
    w.kill_controller();

    // What upstream writes for this group and pod, built with ovn-nbctl from its naming rules.
    let pg = "ovn.sg.app.sg";
    let port = up::uuid_of(&w, "logical_switch_port", "app.default");
    up::port_group(
        &w,
        pg,
        &[
            ("sg", "app-sg"),
            ("type", "security_group"),
            ("vendor", "kube-ovn"),
        ],
        std::slice::from_ref(&port),
    );
    up::add_to_port_group(&w, "ovn.sg.kubeovn_deny_all", &[port]);
    let ext = [("sg", "app-sg"), ("vendor", "kube-ovn")];
    up::address_set(
        &w,
        "ovn.sg.app.sg.associated.v4",
        &ext,
        std::slice::from_ref(&ip),
    );
    up::address_set(&w, "ovn.sg.app.sg.associated.v6", &ext, &[]);
    let mut acls = base_acls(pg);
    acls.push((
        "to-lport".into(),
        18384,
        format!("outport == @{pg} && ip4 && ip4.src == 10.0.0.0/8 && 22 <= tcp.dst <= 22"),
        "allow-related".into(),
    ));
    for (direction, priority, m, action) in &acls {
        up::pg_acl(
            &w,
            pg,
            &up::PgAcl {
                direction,
                priority: *priority,
                r#match: m.clone(),
                action,
                name: None,
                after_lb: false,
            },
        );
    }
    create_sg(
        &w,
        "app-sg",
        json!({"ingressRules": [tcp_rule(100, json!({"remoteType": "address",
                                                      "remoteAddress": "10.0.0.0/8"}), (22, 22))]}),
    )
    .await;
    Api::<SecurityGroup>::all(w.client.clone())
        .patch_status(
            "app-sg",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"portGroup": pg, "allowSameGroupTraffic": false,
                "ingressMd5": "0b8f3f1cd3d6de4b6a0e8c2f3f7ad5a1", "egressMd5": "e3b0c44298fc1c149afbf4c8996fb924",
                "ingressLastSyncSuccess": true, "egressLastSyncSuccess": true}})),
        )
        .await
        .unwrap();
    eventually("the replica has the upstream rows", LONG, || async {
        (pg_acls(&w, pg).len() == acls.len()).then_some(())
    })
    .await;

    let mut changes = w.nb.subscribe();
    w.start_controller();
    eventually("everything reconciled", LONG, || async {
        let n = w
            .counter(
                "kube_ovn_controller_reconciles_total",
                "kind=\"security-group\"",
            )
            .await?;
        let pods = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"pod\"")
            .await?;
        // app-sg and the deny-all members.
        (n >= 2.0 && pods >= 1.0).then_some(())
    })
    .await;
    w.assert_wrote_nothing(&mut changes, "adopting an upstream security group")
        .await;
    let st = Api::<SecurityGroup>::all(w.client.clone())
        .get("app-sg")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        st.ingress_md5, "0b8f3f1cd3d6de4b6a0e8c2f3f7ad5a1",
        "upstream's rule hash was rewritten"
    );
}
