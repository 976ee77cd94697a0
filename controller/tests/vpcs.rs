//! Custom VPCs end to end (real binary, API fixture, real NB): a Vpc with two subnets gets its
//! router, patch ports, static routes and policies with upstream's names and external_ids; a
//! second Vpc with the same CIDR is accepted and isolated; pods of a Vpc's namespaces land in
//! it; removing one route or policy removes exactly its row; peerings get their router ports;
//! a Vpc with subnets is kept until
//! they go; and a custom VPC laid out as upstream writes it is adopted with zero NB writes.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use kube_ovn_common::crd::{Subnet, Vpc};
use kube_ovn_nb::objects::string_map;
use ovsdb::{Atom, Datum, Row, Uuid};
use serde_json::json;
use support::nb::{named, set_of, text};
use support::upstream_layout as up;
use support::{eventually, World};

const LONG: Duration = Duration::from_secs(60);

async fn create_vpc(w: &World, name: &str, spec: serde_json::Value) {
    let v: Vpc = serde_json::from_value(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    Api::<Vpc>::all(w.client.clone())
        .create(&PostParams::default(), &v)
        .await
        .unwrap();
}

async fn create_subnet(w: &World, name: &str, spec: serde_json::Value) {
    let s: Subnet = serde_json::from_value(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    Api::<Subnet>::all(w.client.clone())
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

async fn namespace(w: &World, name: &str) {
    let ns: Namespace = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
    .unwrap();
    Api::<Namespace>::all(w.client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

async fn create_pod(w: &World, ns: &str, name: &str) {
    let p: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x"}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(w.client.clone(), ns)
        .create(&PostParams::default(), &p)
        .await
        .unwrap();
}

async fn allocated(w: &World, ns: &str, name: &str) -> BTreeMap<String, String> {
    let pods: Api<Pod> = Api::namespaced(w.client.clone(), ns);
    eventually(&format!("{ns}/{name} allocated"), LONG, || async {
        let a = pods.get(name).await.ok()?.annotations().clone();
        (a.get("ovn.kubernetes.io/allocated").map(String::as_str) == Some("true")).then_some(a)
    })
    .await
}

/// Whether the subnet's Ready condition is True.
async fn subnet_ready(w: &World, name: &str) -> bool {
    let Ok(s) = Api::<Subnet>::all(w.client.clone()).get(name).await else {
        return false;
    };
    s.status.is_some_and(|st| {
        st.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// A scalar or 0..1 set column's string.
fn one(r: &Row, c: &str) -> String {
    let t = text(r, c);
    if !t.is_empty() {
        return t;
    }
    set_of(r, c).into_iter().next().unwrap_or_default()
}

/// The UUIDs a router's column (`static_routes`, `policies`, `ports`) holds.
fn held(w: &World, router: &str, column: &str) -> Vec<Uuid> {
    let Some(lr) = named(w, "Logical_Router", router) else {
        return Vec::new();
    };
    lr.get(column)
        .and_then(Datum::as_set)
        .map(|s| {
            s.iter()
                .filter_map(|a| match a {
                    Atom::Uuid(u) => Some(*u),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

type RouteKey = (String, String, String, String, BTreeMap<String, String>);

/// A router's static routes: (table, policy, prefix, next hop, external_ids) by UUID.
fn routes(w: &World, router: &str) -> BTreeMap<Uuid, RouteKey> {
    let uuids = held(w, router, "static_routes");
    let c = w.nb.cache();
    let Some(t) = c.table("Logical_Router_Static_Route") else {
        return BTreeMap::new();
    };
    uuids
        .into_iter()
        .filter_map(|u| {
            let r = t.get(&u)?;
            Some((
                u,
                (
                    text(r, "route_table"),
                    one(r, "policy"),
                    text(r, "ip_prefix"),
                    text(r, "nexthop"),
                    string_map(r, "external_ids"),
                ),
            ))
        })
        .collect()
}

type PolicyKey = (
    i64,
    String,
    String,
    BTreeSet<String>,
    BTreeMap<String, String>,
);

/// A router's policies: (priority, match, action, next hops, external_ids) by UUID.
fn policies(w: &World, router: &str) -> BTreeMap<Uuid, PolicyKey> {
    let uuids = held(w, router, "policies");
    let c = w.nb.cache();
    let Some(t) = c.table("Logical_Router_Policy") else {
        return BTreeMap::new();
    };
    uuids
        .into_iter()
        .filter_map(|u| {
            let r = t.get(&u)?;
            Some((
                u,
                (
                    r.get("priority")?.as_atom()?.as_i64()?,
                    text(r, "match"),
                    text(r, "action"),
                    set_of(r, "nexthops"),
                    string_map(r, "external_ids"),
                ),
            ))
        })
        .collect()
}

fn ids(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn route(table: &str, policy: &str, prefix: &str, hop: &str) -> RouteKey {
    (
        table.into(),
        policy.into(),
        prefix.into(),
        hop.into(),
        ids(&[("vendor", "kube-ovn")]),
    )
}

fn policy(p: i64, m: &str, action: &str, hops: &[&str], ext: &[(&str, &str)]) -> PolicyKey {
    (
        p,
        m.into(),
        action.into(),
        hops.iter().map(|h| h.to_string()).collect(),
        ids(ext),
    )
}

fn values<K: Clone + Ord, V: Clone + Ord>(m: &BTreeMap<K, V>) -> BTreeSet<V> {
    m.values().cloned().collect()
}

const DROP: &str = "ip4.src==10.0.1.0/24 && ip4.dst==10.0.2.250";

fn vpc1_spec() -> serde_json::Value {
    json!({
        "namespaces": ["ns1"],
        "staticRoutes": [
            {"cidr": "0.0.0.0/0", "nextHopIP": "10.0.1.254"},
            {"cidr": "172.31.0.0/24", "nextHopIP": "10.0.1.253", "policy": "policySrc",
             "routeTable": "rtb1"}
        ],
        "policyRoutes": [
            {"action": "drop", "match": DROP, "priority": 11},
            {"action": "reroute", "match": "ip4.src==10.0.1.0/24", "nextHopIP": "10.0.1.252",
             "priority": 10}
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_vpcs_get_routers_routes_and_policies_overlap_and_are_deleted_last() {
    let mut w = World::new(1, false).await;
    w.start_controller();
    for ns in ["ns1", "ns2"] {
        namespace(&w, ns).await;
    }
    create_vpc(&w, "vpc1", vpc1_spec()).await;
    create_subnet(
        &w,
        "net1",
        json!({"vpc": "vpc1", "cidrBlock": "10.0.1.0/24", "protocol": "IPv4", "namespaces": ["ns1"]}),
    )
    .await;
    create_subnet(
        &w,
        "net1b",
        json!({"vpc": "vpc1", "cidrBlock": "10.0.2.0/24", "protocol": "IPv4", "routeTable": "rtb1"}),
    )
    .await;
    create_vpc(&w, "vpc2", json!({"namespaces": ["ns2"]})).await;
    create_subnet(
        &w,
        "net2",
        json!({"vpc": "vpc2", "cidrBlock": "10.0.1.0/24", "protocol": "IPv4", "namespaces": ["ns2"]}),
    )
    .await;

    // The router and the patch ports, with upstream's names and columns.
    let want_routes: BTreeSet<RouteKey> = [
        route("", "dst-ip", "0.0.0.0/0", "10.0.1.254"),
        route("rtb1", "src-ip", "172.31.0.0/24", "10.0.1.253"),
    ]
    .into();
    let want_policies: BTreeSet<PolicyKey> = [
        policy(
            31000,
            "ip4.dst == 10.0.1.0/24",
            "allow",
            &[],
            &[("subnet", "net1"), ("vendor", "kube-ovn")],
        ),
        policy(
            31000,
            "ip4.dst == 10.0.2.0/24",
            "allow",
            &[],
            &[("subnet", "net1b"), ("vendor", "kube-ovn")],
        ),
        policy(11, DROP, "drop", &[], &[("vendor", "kube-ovn")]),
        policy(
            10,
            "ip4.src==10.0.1.0/24",
            "reroute",
            &["10.0.1.252"],
            &[("vendor", "kube-ovn")],
        ),
    ]
    .into();
    eventually("vpc1's routes and policies", LONG, || async {
        (values(&routes(&w, "vpc1")) == want_routes
            && values(&policies(&w, "vpc1")) == want_policies)
            .then_some(())
    })
    .await;
    let lr = named(&w, "Logical_Router", "vpc1").unwrap();
    assert_eq!(
        string_map(&lr, "external_ids"),
        ids(&[("vendor", "kube-ovn")])
    );
    assert_eq!(
        string_map(&lr, "options"),
        ids(&[
            ("always_learn_from_arp_request", "false"),
            ("dynamic_neigh_routers", "true"),
            ("mac_binding_age_threshold", "300"),
        ])
    );
    let lrp = named(&w, "Logical_Router_Port", "vpc1-net1").unwrap();
    assert_eq!(set_of(&lrp, "networks"), ["10.0.1.1/24".to_string()].into());
    assert_eq!(
        string_map(&lrp, "external_ids"),
        ids(&[("lr", "vpc1"), ("vendor", "kube-ovn")])
    );
    // The subnet's route table selects the router's table for traffic entering from it.
    let lrp_b = named(&w, "Logical_Router_Port", "vpc1-net1b").unwrap();
    assert_eq!(
        string_map(&lrp_b, "options"),
        ids(&[("route_table", "rtb1")])
    );
    let lsp = named(&w, "Logical_Switch_Port", "net1-vpc1").unwrap();
    assert_eq!(text(&lsp, "type"), "router");
    assert_eq!(
        string_map(&lsp, "options"),
        ids(&[("router-port", "vpc1-net1")])
    );
    assert_eq!(
        string_map(&lsp, "external_ids"),
        ids(&[("ls", "net1"), ("vendor", "kube-ovn")])
    );
    // No default-VPC wiring: no gateway policies or port groups of the custom subnets, and
    // nothing of them on the default router.
    let pgs: Vec<String> = support::nb::rows(&w, "Port_Group")
        .iter()
        .map(|r| text(r, "name"))
        .filter(|n| n.starts_with("net1"))
        .collect();
    assert!(pgs.is_empty(), "{pgs:?}");
    assert!(values(&policies(&w, "ovn-cluster"))
        .iter()
        .all(|p| !p.1.contains("10.0.1.0/24") && !p.1.contains("10.0.2.0/24")));

    // The Vpc's status as upstream's.
    let vpcs: Api<Vpc> = Api::all(w.client.clone());
    let st = eventually("vpc1's status", LONG, || async {
        let st = vpcs.get("vpc1").await.ok()?.status?;
        (st.standby && st.subnets == ["net1", "net1b"]).then_some(st)
    })
    .await;
    assert_eq!(st.router, "vpc1");
    assert!(!st.default);
    assert_eq!(st.tcp_load_balancer, "vpc-vpc1-tcp-load");
    assert_eq!(st.sctp_session_load_balancer, "vpc-vpc1-sctp-sess-load");
    assert!(named(&w, "Load_Balancer", "vpc-vpc1-udp-sess-load").is_some());
    let v1 = vpcs.get("vpc1").await.unwrap();
    assert!(v1
        .finalizers()
        .contains(&"kubeovn.io/kube-ovn-controller".to_string()));
    // The omitted policy was written back as upstream's formatVpc does.
    assert_eq!(v1.spec.static_routes[0].policy, "policyDst");

    // The same CIDR in another VPC is accepted, on its own router.
    eventually("net2 ready", LONG, || async {
        subnet_ready(&w, "net2").await.then_some(())
    })
    .await;
    let lrp2 = eventually("vpc2-net2", LONG, || async {
        named(&w, "Logical_Router_Port", "vpc2-net2")
    })
    .await;
    assert_eq!(
        set_of(&lrp2, "networks"),
        ["10.0.1.1/24".to_string()].into()
    );
    assert!(routes(&w, "vpc2").is_empty());
    // ... but not in the same one.
    create_subnet(
        &w,
        "clash",
        json!({"vpc": "vpc1", "cidrBlock": "10.0.0.0/16", "protocol": "IPv4"}),
    )
    .await;
    eventually("the clashing subnet rejected", LONG, || async {
        let s = Api::<Subnet>::all(w.client.clone())
            .get("clash")
            .await
            .ok()?;
        s.status?
            .conditions
            .iter()
            .any(|c| c.reason == "ValidateLogicalSwitchFailed" && c.message.contains("net1"))
            .then_some(())
    })
    .await;
    assert!(named(&w, "Logical_Switch", "clash").is_none());
    Api::<Subnet>::all(w.client.clone())
        .delete("clash", &DeleteParams::default())
        .await
        .unwrap();
    // A default-VPC subnet may not take a namespace a custom Vpc lists.
    create_subnet(
        &w,
        "grab",
        json!({"cidrBlock": "10.9.0.0/24", "protocol": "IPv4", "namespaces": ["ns1"]}),
    )
    .await;
    eventually("the namespace grab rejected", LONG, || async {
        let s = Api::<Subnet>::all(w.client.clone())
            .get("grab")
            .await
            .ok()?;
        s.status?
            .conditions
            .iter()
            .any(|c| c.reason == "ValidateLogicalSwitchFailed" && c.message.contains("vpc1"))
            .then_some(())
    })
    .await;
    assert!(named(&w, "Logical_Switch", "grab").is_none());
    Api::<Subnet>::all(w.client.clone())
        .delete("grab", &DeleteParams::default())
        .await
        .unwrap();
    eventually("grab gone", LONG, || async {
        Api::<Subnet>::all(w.client.clone())
            .get_opt("grab")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    // Pods of each VPC's namespace land in it, with its router.
    create_pod(&w, "ns1", "a").await;
    create_pod(&w, "ns2", "b").await;
    let a = allocated(&w, "ns1", "a").await;
    let b = allocated(&w, "ns2", "b").await;
    assert_eq!(a["ovn.kubernetes.io/logical_switch"], "net1");
    assert_eq!(a["ovn.kubernetes.io/logical_router"], "vpc1");
    assert_eq!(b["ovn.kubernetes.io/logical_switch"], "net2");
    assert_eq!(b["ovn.kubernetes.io/logical_router"], "vpc2");
    assert!(a["ovn.kubernetes.io/ip_address"].starts_with("10.0.1."));
    assert!(b["ovn.kubernetes.io/ip_address"].starts_with("10.0.1."));
    let port = eventually("a's port", LONG, || async {
        named(&w, "Logical_Switch_Port", "a.ns1")
    })
    .await;
    assert_eq!(
        string_map(&port, "external_ids")
            .get("ls")
            .map(String::as_str),
        Some("net1")
    );

    // Removing one route, then one policy, removes exactly its row.
    let before = routes(&w, "vpc1");
    let mut spec = vpc1_spec();
    spec["staticRoutes"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["cidr"] != "172.31.0.0/24");
    vpcs.patch(
        "vpc1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"staticRoutes": spec["staticRoutes"]}})),
    )
    .await
    .unwrap();
    let after = eventually("the rtb1 route removed", LONG, || async {
        let r = routes(&w, "vpc1");
        (r.len() == 1).then_some(r)
    })
    .await;
    let mut expected = before.clone();
    expected.retain(|_, k| k.2 != "172.31.0.0/24");
    assert_eq!(after, expected, "only the removed route's row went");
    let before = policies(&w, "vpc1");
    spec["policyRoutes"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["action"] != "drop");
    vpcs.patch(
        "vpc1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"policyRoutes": spec["policyRoutes"]}})),
    )
    .await
    .unwrap();
    let after = eventually("the drop policy removed", LONG, || async {
        let p = policies(&w, "vpc1");
        (p.len() == 3).then_some(p)
    })
    .await;
    let mut expected = before.clone();
    expected.retain(|_, k| k.2 != "drop");
    assert_eq!(after, expected, "only the removed policy's row went");

    // Peering: each side's router port names its twin as peer; the router then learns from
    // ARP requests; removing the peering removes the port.
    for (vpc, remote, ip) in [
        ("vpc1", "vpc2", "169.254.0.1/30"),
        ("vpc2", "vpc1", "169.254.0.2/30"),
    ] {
        vpcs.patch(
            vpc,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"vpcPeerings": [{"remoteVpc": remote, "localConnectIP": ip}]}}),
            ),
        )
        .await
        .unwrap();
    }
    let peer = eventually("the peering ports", LONG, || async {
        named(&w, "Logical_Router_Port", "vpc2-vpc1")?;
        named(&w, "Logical_Router_Port", "vpc1-vpc2")
    })
    .await;
    assert_eq!(one(&peer, "peer"), "vpc2-vpc1");
    assert_eq!(
        set_of(&peer, "networks"),
        ["169.254.0.1/30".to_string()].into()
    );
    assert_eq!(
        string_map(&peer, "external_ids"),
        ids(&[("lr", "vpc1"), ("vendor", "kube-ovn")])
    );
    eventually("vpc1 learns from ARP requests", LONG, || async {
        let lr = named(&w, "Logical_Router", "vpc1")?;
        (!string_map(&lr, "options").contains_key("always_learn_from_arp_request")).then_some(())
    })
    .await;
    eventually("vpc1's peering status", LONG, || async {
        (vpcs.get("vpc1").await.ok()?.status?.vpc_peerings == ["vpc2"]).then_some(())
    })
    .await;
    vpcs.patch(
        "vpc1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"vpcPeerings": null}})),
    )
    .await
    .unwrap();
    eventually("vpc1's peering port removed", LONG, || async {
        named(&w, "Logical_Router_Port", "vpc1-vpc2")
            .is_none()
            .then_some(())
    })
    .await;

    // A Vpc with a subnet is kept; once its subnets are gone, its router goes with it.
    vpcs.delete("vpc2", &DeleteParams::default()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        assert!(named(&w, "Logical_Router", "vpc2").is_some());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(vpcs.get("vpc2").await.is_ok());
    Api::<Pod>::namespaced(w.client.clone(), "ns2")
        .delete("b", &DeleteParams::default())
        .await
        .unwrap();
    Api::<Subnet>::all(w.client.clone())
        .delete("net2", &DeleteParams::default())
        .await
        .unwrap();
    eventually("vpc2 and its router gone", LONG, || async {
        (named(&w, "Logical_Router", "vpc2").is_none()
            && named(&w, "Logical_Switch", "net2").is_none()
            && named(&w, "Load_Balancer", "vpc-vpc2-tcp-load").is_none()
            && vpcs.get_opt("vpc2").await.ok()?.is_none())
        .then_some(())
    })
    .await;
    assert!(named(&w, "Logical_Router", "vpc1").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_custom_vpc_is_adopted_without_writes() {
    let mut w = World::new(1, false).await;
    w.start_controller();
    eventually("the default VPC laid out", LONG, || async {
        (w.ready().await && named(&w, "Logical_Switch", "ovn-default").is_some()).then_some(())
    })
    .await;
    w.controller_settled().await;
    w.kill_controller();

    // The custom VPC as upstream's controller leaves it.
    w.nbctl(&[
        "create",
        "logical_router",
        "name=vpc1",
        "external_ids:vendor=kube-ovn",
        "options:mac_binding_age_threshold=300",
        "options:dynamic_neigh_routers=true",
        "options:always_learn_from_arp_request=false",
    ]);
    up::vpc_load_balancers(&w, "vpc1");
    up::u2o_overlay_sets(&w, "vpc1", &["10.0.1.0/24"]);
    up::overlay_subnet(
        &w,
        "vpc1",
        "net1",
        "10.0.1.0/24",
        "10.0.1.1",
        "0a:00:00:00:01:01",
        false,
    );
    up::vpc_static_route(&w, "vpc1", "dst-ip", "0.0.0.0/0", "10.0.1.254", "");
    up::vpc_drop_policy(&w, "vpc1", 11, DROP);
    create_vpc(
        &w,
        "vpc1",
        json!({
            "namespaces": ["ns1"],
            "staticRoutes": [{"cidr": "0.0.0.0/0", "nextHopIP": "10.0.1.254", "policy": "policyDst"}],
            "policyRoutes": [{"action": "drop", "match": DROP, "priority": 11}]
        }),
    )
    .await;
    create_subnet(
        &w,
        "net1",
        json!({"vpc": "vpc1", "cidrBlock": "10.0.1.0/24", "protocol": "IPv4",
               "namespaces": ["ns1"], "enableLb": false}),
    )
    .await;
    // Let northd settle on the NB (sb_cfg, the ports' `up`) and the replica hear all of it.
    w.nbctl(&["--wait=sb", "sync"]);
    let nb_cfg = w
        .nbctl(&["get", "NB_Global", ".", "nb_cfg"])
        .trim()
        .to_string();
    eventually("the replica caught up with northd", LONG, || async {
        let c = w.nb.cache();
        let g = c
            .table("NB_Global")?
            .iter()
            .next()
            .map(|(_, r)| (**r).clone())?;
        let seen = g.get("sb_cfg")?.as_atom()?.as_i64()?;
        (seen.to_string() == nb_cfg
            && routes(&w, "vpc1").len() == 1
            && policies(&w, "vpc1").len() == 2)
            .then_some(())
    })
    .await;

    let mut changes = w.nb.subscribe();
    w.start_controller();
    let vpcs: Api<Vpc> = Api::all(w.client.clone());
    eventually("vpc1 reconciled", LONG, || async {
        let st = vpcs.get("vpc1").await.ok()?.status?;
        (st.standby && st.subnets == ["net1"] && subnet_ready(&w, "net1").await).then_some(())
    })
    .await;
    // Quiet: no reconcile for a second after both kinds ran.
    let mut last = None;
    let mut quiet_since = Instant::now();
    loop {
        let mut n = 0.0;
        for kind in ["vpc", "subnet"] {
            n += w
                .counter(
                    "kube_ovn_controller_reconciles_total",
                    &format!("kind=\"{kind}\""),
                )
                .await
                .unwrap_or(0.0);
        }
        if Some(n) != last {
            last = Some(n);
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_secs(1) {
            break;
        }
        assert!(quiet_since.elapsed() < LONG);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.assert_wrote_nothing(&mut changes, "adopting an upstream custom VPC")
        .await;
}
