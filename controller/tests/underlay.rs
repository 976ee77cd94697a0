//! Underlay against the real NB (real binary, API fixture): a ProviderNetwork's status from
//! its nodes' ready labels, a Vlan listed in its ProviderNetwork and listing its subnets, an
//! underlay subnet's `localnet.<ls>` port with upstream's columns and tag and none of an
//! overlay subnet's router ports, policies or per-node groups, its pods' `vlan_id` and
//! `provider_network` annotations, and a controller adopting the localnet port as upstream's
//! ovn-nbctl-equivalent writes it without a single NB write. A u2o subnet: its interconnection
//! address (IP CR, status), router port, policies and exclude sets as upstream writes them,
//! adopted with zero writes, moved by `u2oInterconnectionIP`, and all of it gone when u2o is off.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use kube_ovn_common::crd::{
    OvnDnatRule, OvnEip, OvnFip, OvnSnatRule, ProviderNetwork, Subnet, Vlan,
};
use kube_ovn_nb::objects::string_map;
use ovsdb::{Atom, Datum};
use serde_json::{json, Value};
use support::nb::{named, rows, text};
use support::{eventually, World};

const LONG: Duration = Duration::from_secs(60);

async fn create<K>(w: &World, obj: Value)
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
    <K as kube::Resource>::DynamicType: Default,
{
    let o: K = serde_json::from_value(obj).unwrap();
    Api::<K>::all(w.client.clone())
        .create(&PostParams::default(), &o)
        .await
        .unwrap();
}

fn tag(w: &World, port: &str) -> Option<i64> {
    let r = named(w, "Logical_Switch_Port", port)?;
    r.get("tag").and_then(Datum::as_atom).and_then(Atom::as_i64)
}

/// Kube-OVN rows naming `subnet` in `external_ids:subnet` in `table`.
fn tagged(w: &World, table: &str, subnet: &str) -> usize {
    rows(w, table)
        .iter()
        .filter(|r| {
            string_map(r, "external_ids")
                .get("subnet")
                .map(String::as_str)
                == Some(subnet)
        })
        .count()
}

/// ProviderNetwork `net1` on `eth1` and its Vlan `vlan100` (tag 100), which both tests use.
async fn net1_vlan100(w: &World) {
    create::<ProviderNetwork>(
        w,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "ProviderNetwork",
               "metadata": {"name": "net1"}, "spec": {"defaultInterface": "eth1"}}),
    )
    .await;
    create::<Vlan>(
        w,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Vlan",
               "metadata": {"name": "vlan100"}, "spec": {"id": 100, "provider": "net1"}}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_network_vlan_and_underlay_subnet() {
    let mut w = World::new(2, false).await;
    w.start_controller();
    let nodes: Vec<String> = w
        .sandbox
        .state()
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .collect();

    net1_vlan100(&w).await;
    create::<Subnet>(
        &w,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "underlay"},
               "spec": {"cidrBlock": "172.19.100.0/24", "gateway": "172.19.100.1",
                        "vlan": "vlan100", "namespaces": ["ul"]}}),
    )
    .await;

    // Upstream's status: the Vlan in its provider network, the subnet in its Vlan; no node
    // has the bridge (no daemon here), so every node is not ready with upstream's message.
    let pns: Api<ProviderNetwork> = Api::all(w.client.clone());
    let vlans: Api<Vlan> = Api::all(w.client.clone());
    let pn = eventually("provider network status", LONG, || async {
        let pn = pns.get("net1").await.ok()?;
        let st = pn.status.clone()?;
        (st.vlans == ["vlan100"] && st.not_ready_nodes.len() == nodes.len()).then_some(pn)
    })
    .await;
    let st = pn.status.unwrap();
    assert!(!st.ready);
    for n in &nodes {
        let c = st
            .conditions
            .iter()
            .find(|c| &c.node == n)
            .expect("condition");
        assert_eq!(c.condition.type_, "Ready");
        assert_eq!(c.condition.status, "False");
        assert_eq!(c.condition.reason, "InitOVSBridgeFailed");
        assert_eq!(
            c.condition.message,
            format!("kube-ovn-cni pod on node {n} not found")
        );
    }
    eventually("vlan lists its subnet", LONG, || async {
        let v = vlans.get("vlan100").await.ok()?;
        (v.status?.subnets == ["underlay"]).then_some(())
    })
    .await;

    // The localnet port as upstream writes it; no router patch ports, policies or groups.
    eventually("localnet port", LONG, || async {
        (tag(&w, "localnet.underlay") == Some(100)).then_some(())
    })
    .await;
    let ln = named(&w, "Logical_Switch_Port", "localnet.underlay").unwrap();
    assert_eq!(text(&ln, "type"), "localnet");
    assert_eq!(text(&ln, "addresses"), "unknown");
    assert_eq!(
        string_map(&ln, "options"),
        [("network_name".to_string(), "net1".to_string())].into()
    );
    assert_eq!(
        string_map(&ln, "external_ids"),
        [
            ("ipv4_network", "172.19.100.0/24"),
            ("ls", "underlay"),
            ("vendor", "kube-ovn")
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    );
    assert!(named(&w, "Logical_Switch", "underlay").is_some());
    assert!(named(&w, "Logical_Switch_Port", "underlay-ovn-cluster").is_none());
    assert!(named(&w, "Logical_Router_Port", "ovn-cluster-underlay").is_none());
    assert_eq!(tagged(&w, "Logical_Router_Policy", "underlay"), 0);
    assert_eq!(tagged(&w, "Port_Group", "underlay"), 0);

    // A node labelled ready by its daemon becomes a ready node.
    Api::<Node>::all(w.client.clone())
        .patch(
            &nodes[0],
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {
                "net1.provider-network.kubernetes.io/ready": "true"}}})),
        )
        .await
        .unwrap();
    eventually("a ready node", LONG, || async {
        let st = pns.get("net1").await.ok()?.status?;
        (st.ready_nodes == [nodes[0].clone()]).then_some(())
    })
    .await;

    // A pod of the subnet: the Vlan's annotations, no routing port groups.
    Api::<k8s_openapi::api::core::v1::Namespace>::all(w.client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "ul"}})).unwrap(),
        )
        .await
        .unwrap();
    let mut pod = support::pod("p1", Some(&nodes[0]));
    pod.metadata.namespace = Some("ul".into());
    Api::<k8s_openapi::api::core::v1::Pod>::namespaced(w.client.clone(), "ul")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(w.client.clone(), "ul");
    let a = eventually("underlay pod allocated", LONG, || async {
        let p = pods.get("p1").await.ok()?;
        let a = p.metadata.annotations?;
        (a.get("ovn.kubernetes.io/allocated").map(String::as_str) == Some("true")).then_some(a)
    })
    .await;
    assert_eq!(a["ovn.kubernetes.io/vlan_id"], "100");
    assert_eq!(a["ovn.kubernetes.io/provider_network"], "net1");
    assert_eq!(a["ovn.kubernetes.io/logical_switch"], "underlay");
    assert!(
        !a.contains_key("ovn.kubernetes.io/logical_router"),
        "no logical_router on a plain underlay pod, as upstream: {a:?}"
    );
    let port = support::nb::port_uuid(&w, "p1.ul").expect("pod port");
    for pg in rows(&w, "Port_Group") {
        let members = pg.get("ports").and_then(Datum::as_set);
        assert!(
            !members.is_some_and(|m| m.contains(&port)),
            "pod port in {}",
            text(&pg, "name")
        );
    }

    // Adoption: the localnet port re-made as upstream's CreateLocalnetLogicalSwitchPort writes
    // it; a restarted controller writes nothing.
    w.controller_settled().await;
    w.kill_controller();
    w.nbctl(&["lsp-del", "localnet.underlay"]);
    w.nbctl(&[
        "--",
        "--id=@p",
        "create",
        "logical_switch_port",
        "name=localnet.underlay",
        "type=localnet",
        "addresses=unknown",
        "options:network_name=net1",
        "tag=100",
        "external_ids:ipv4_network=\"172.19.100.0/24\"",
        "external_ids:ls=underlay",
        "external_ids:vendor=kube-ovn",
        "--",
        "add",
        "logical_switch",
        "underlay",
        "ports",
        "@p",
    ]);
    w.northd_settled().await;
    let mut changes = w.nb.subscribe();
    w.start_controller();
    eventually("subnets, the vlan and the pod reconciled", LONG, || async {
        let s = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"subnet\"")
            .await?;
        let v = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"vlan\"")
            .await?;
        let p = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"pod\"")
            .await?;
        (s >= 3.0 && v >= 1.0 && p >= 1.0).then_some(())
    })
    .await;
    w.assert_wrote_nothing(&mut changes, "adopting the underlay subnet")
        .await;

    // Vlan 0: the port loses its tag.
    vlans
        .patch(
            "vlan100",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"id": 0}})),
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + LONG;
    while tag(&w, "localnet.underlay").is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the localnet port kept its tag: {:?} (nbctl: {}), writes {:#?}",
            tag(&w, "localnet.underlay"),
            w.nbctl(&["get", "logical_switch_port", "localnet.underlay", "tag"]),
            w.logged_nb_writes()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(named(&w, "Logical_Switch_Port", "localnet.underlay").is_some());
}

/// The router's `options`.
fn router_options(w: &World) -> std::collections::BTreeMap<String, String> {
    string_map(
        &named(w, "Logical_Router", "ovn-cluster").unwrap(),
        "options",
    )
}

/// The u2o subnet's policies on ovn-cluster as (priority, match, action, nexthops).
fn u2o_policies(w: &World, subnet: &str) -> Vec<(i64, String, String, String)> {
    let mut out: Vec<(i64, String, String, String)> = rows(w, "Logical_Router_Policy")
        .iter()
        .filter(|r| {
            let ids = string_map(r, "external_ids");
            ids.get("subnet").map(String::as_str) == Some(subnet)
                && ids.get("isU2ORoutePolicy").map(String::as_str) == Some("true")
                && ids.get("vendor").map(String::as_str) == Some("kube-ovn")
        })
        .map(|r| {
            let hops = r
                .get("nexthops")
                .and_then(Datum::as_set)
                .map(|s| {
                    s.iter()
                        .filter_map(|a| a.as_str().map(str::to_string))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            (
                r.get("priority")
                    .and_then(Datum::as_atom)
                    .and_then(Atom::as_i64)
                    .unwrap_or_default(),
                text(r, "match"),
                text(r, "action"),
                hops,
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u2o_interconnection_rows_address_and_adoption() {
    let mut w = World::new(2, false).await;
    w.start_controller();
    net1_vlan100(&w).await;
    create::<Subnet>(
        &w,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "u2o-sub"},
               "spec": {"cidrBlock": "172.19.100.0/24", "gateway": "172.19.100.1",
                        "vlan": "vlan100", "u2oInterconnection": true}}),
    )
    .await;
    let subnets: Api<Subnet> = Api::all(w.client.clone());
    let st = eventually("u2o address in the status", LONG, || async {
        let st = subnets.get("u2o-sub").await.ok()?.status?;
        (!st.u2o_interconnection_ip.is_empty() && st.v4_using_ips.0 == 1).then_some(st)
    })
    .await;
    let ip = st.u2o_interconnection_ip.clone();
    let mac = st.u2o_interconnection_mac.clone();
    assert_eq!(st.u2o_interconnection_vpc, "ovn-cluster");
    assert!(ip.starts_with("172.19.100."), "{ip}");
    assert_ne!(ip, "172.19.100.1");
    let ip_cr = Api::<kube_ovn_common::crd::Ip>::all(w.client.clone())
        .get("u2o-interconnection.ovn-cluster.u2o-sub")
        .await
        .expect("the u2o IP CR");
    assert_eq!(ip_cr.spec.namespace, "default");
    assert_eq!(
        ip_cr.spec.pod_name,
        "u2o-interconnection.ovn-cluster.u2o-sub"
    );
    assert_eq!(ip_cr.spec.ip_address, ip);
    assert_eq!(ip_cr.spec.mac_address, mac);
    let owner = &ip_cr.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Subnet", "u2o-sub")
    );

    let node_ips: Vec<String> = Api::<Node>::all(w.client.clone())
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .flat_map(kube_ovn_common::node::internal_ips)
        .map(|i| i.to_string())
        .collect();
    assert_eq!(node_ips.len(), 2);
    let want_policies = |_: &str| {
        vec![
            (
                29000,
                "ip4.src == 172.19.100.0/24".to_string(),
                "reroute".to_string(),
                "172.19.100.1".to_string(),
            ),
            (
                29400,
                "ip4.dst == 172.19.100.0/24".to_string(),
                "allow".to_string(),
                String::new(),
            ),
            (
                31000,
                "ip4.dst == $u2o.sub.u2o_exclude_ip.ip4 && ip4.src == 172.19.100.0/24".to_string(),
                "reroute".to_string(),
                "172.19.100.1".to_string(),
            ),
        ]
    };
    eventually("u2o policies", LONG, || async {
        (u2o_policies(&w, "u2o-sub") == want_policies("")).then_some(())
    })
    .await;
    let lrp = eventually("u2o router port", LONG, || async {
        named(&w, "Logical_Router_Port", "ovn-cluster-u2o-sub")
    })
    .await;
    assert_eq!(text(&lrp, "networks"), format!("{ip}/24"));
    assert_eq!(text(&lrp, "mac"), mac);
    let lsp = named(&w, "Logical_Switch_Port", "u2o-sub-ovn-cluster").expect("router LSP");
    assert_eq!(text(&lsp, "type"), "router");
    let set = named(&w, "Address_Set", "u2o.sub.u2o_exclude_ip.ip4").expect("exclude set");
    let mut got: Vec<String> = set
        .get("addresses")
        .and_then(Datum::as_set)
        .map(|s| {
            s.iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    got.sort();
    let mut want = node_ips.clone();
    want.sort();
    assert_eq!(got, want);
    assert!(named(&w, "Address_Set", "u2o.sub.u2o_exclude_ip.ip6").is_some());
    assert!(
        !router_options(&w).contains_key("always_learn_from_arp_request"),
        "the router learns from ARP requests with a u2o subnet: {:?}",
        router_options(&w)
    );
    assert_eq!(tagged(&w, "Port_Group", "u2o-sub"), 0);

    // Adoption: the router ports, policies and sets re-made as upstream writes them.
    w.controller_settled().await;
    w.kill_controller();
    w.nbctl(&["lrp-del", "ovn-cluster-u2o-sub"]);
    w.nbctl(&["lsp-del", "u2o-sub-ovn-cluster"]);
    for (prio, m, _, _) in u2o_policies(&w, "u2o-sub") {
        w.nbctl(&["lr-policy-del", "ovn-cluster", &prio.to_string(), &m]);
    }
    for fam in ["ip4", "ip6"] {
        w.nbctl(&[
            "destroy",
            "address_set",
            &format!("u2o.sub.u2o_exclude_ip.{fam}"),
        ]);
    }
    let e = [
        ("vendor", "kube-ovn"),
        ("subnet", "u2o-sub"),
        ("isU2ORoutePolicy", "true"),
    ];
    support::upstream_layout::u2o_router_ports(
        &w,
        "ovn-cluster",
        "u2o-sub",
        &format!("{ip}/24"),
        &mac,
    );
    support::upstream_layout::address_set(&w, "u2o.sub.u2o_exclude_ip.ip4", &e, &node_ips);
    support::upstream_layout::address_set(&w, "u2o.sub.u2o_exclude_ip.ip6", &e, &[]);
    for (prio, m, _, hop) in want_policies("") {
        let hop = (!hop.is_empty()).then_some(hop.as_str());
        support::upstream_layout::policy(&w, "ovn-cluster", prio, &m, hop, &e);
    }
    w.northd_settled().await;
    let mut changes = w.nb.subscribe();
    w.start_controller();
    eventually("subnets and nodes reconciled", LONG, || async {
        let s = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"subnet\"")
            .await?;
        let n = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"node\"")
            .await?;
        (s >= 3.0 && n >= 2.0).then_some(())
    })
    .await;
    w.assert_wrote_nothing(&mut changes, "adopting the u2o subnet")
        .await;

    // u2oInterconnectionIP moves the address (and the router port with it).
    subnets
        .patch(
            "u2o-sub",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"u2oInterconnectionIP": "172.19.100.200"}})),
        )
        .await
        .unwrap();
    eventually("the router port on the asked address", LONG, || async {
        let lrp = named(&w, "Logical_Router_Port", "ovn-cluster-u2o-sub")?;
        let st = subnets.get("u2o-sub").await.ok()?.status?;
        (text(&lrp, "networks") == "172.19.100.200/24"
            && st.u2o_interconnection_ip == "172.19.100.200"
            && st.v4_using_ips.0 == 1)
            .then_some(())
    })
    .await;

    // enableLb off: per node, a Service port group of the subnet's pods there and a 29400
    // reroute of the Service CIDR to the node's join address.
    subnets
        .patch(
            "u2o-sub",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"enableLb": false}})),
        )
        .await
        .unwrap();
    let node_names: Vec<String> = w
        .sandbox
        .state()
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .collect();
    let mut p = support::pod("u2o-p1", Some(&node_names[0]));
    p.metadata.annotations = Some(
        [(
            "ovn.kubernetes.io/logical_switch".to_string(),
            "u2o-sub".to_string(),
        )]
        .into(),
    );
    w.pods().create(&PostParams::default(), &p).await.unwrap();
    let pg0 = format!("u2o.sub.{}", node_names[0].replace('-', "."));
    eventually("the pod in its node's Service port group", LONG, || async {
        let port = support::nb::port_uuid(&w, "u2o-p1.default")?;
        let g = named(&w, "Port_Group", &pg0)?;
        g.get("ports")
            .and_then(Datum::as_set)
            .is_some_and(|s| s.contains(&port))
            .then_some(())
    })
    .await;
    let no_lb = |w: &World| {
        rows(w, "Logical_Router_Policy")
            .iter()
            .filter(|r| {
                let ids = string_map(r, "external_ids");
                ids.get("subnet").map(String::as_str) == Some("u2o-sub")
                    && ids.get("isU2ONoLBRoutePolicy").map(String::as_str) == Some("true")
            })
            .map(|r| text(r, "match"))
            .collect::<Vec<_>>()
    };
    eventually("a Service reroute per node", LONG, || async {
        let m = no_lb(&w);
        (m.len() == node_names.len()
            && node_names.iter().all(|n| {
                let pg = format!("u2o.sub.{}", n.replace('-', "."));
                m.contains(&format!("ip4.src == ${pg}_ip4 && ip4.dst == 10.96.0.0/12"))
            }))
        .then_some(())
    })
    .await;
    let g = named(&w, "Port_Group", &pg0).unwrap();
    assert_eq!(
        string_map(&g, "external_ids"),
        [
            ("lr", "ovn-cluster"),
            ("ls", "u2o-sub"),
            ("u2o", "true"),
            ("vendor", "kube-ovn")
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    );
    subnets
        .patch(
            "u2o-sub",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"enableLb": true}})),
        )
        .await
        .unwrap();
    eventually("Service port groups and reroutes gone", LONG, || async {
        (no_lb(&w).is_empty() && named(&w, "Port_Group", &pg0).is_none()).then_some(())
    })
    .await;
    eventually("the u2o policies as before", LONG, || async {
        (u2o_policies(&w, "u2o-sub") == want_policies("")).then_some(())
    })
    .await;
    w.pods()
        .delete("u2o-p1", &Default::default())
        .await
        .unwrap();
    eventually("the pod's port gone", LONG, || async {
        support::nb::port_uuid(&w, "u2o-p1.default")
            .is_none()
            .then_some(())
    })
    .await;

    // overlayOnlyRouting: upstream's four policies instead.
    subnets
        .patch(
            "u2o-sub",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"u2oFeatures": {"overlayOnlyRouting": true}}})),
        )
        .await
        .unwrap();
    let only = vec![
        (
            29400,
            "ip4.src == $ovn.cluster.u2o_overlay_cidrs.ip4 && ip4.dst == 172.19.100.0/24"
                .to_string(),
            "allow".to_string(),
            String::new(),
        ),
        (
            30050,
            "ip4.src == 172.19.100.0/24".to_string(),
            "reroute".to_string(),
            "172.19.100.1".to_string(),
        ),
        (
            30060,
            "ip4.src == 172.19.100.0/24 && ip4.dst == 172.19.100.0/24".to_string(),
            "allow".to_string(),
            String::new(),
        ),
        (
            31000,
            "ip4.dst == $u2o.sub.u2o_exclude_ip.ip4 && ip4.src == 172.19.100.0/24".to_string(),
            "reroute".to_string(),
            "172.19.100.1".to_string(),
        ),
    ];
    eventually("overlay-only policies", LONG, || async {
        (u2o_policies(&w, "u2o-sub") == only).then_some(())
    })
    .await;
    subnets
        .patch(
            "u2o-sub",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"u2oFeatures": {"overlayOnlyRouting": false}}})),
        )
        .await
        .unwrap();

    // A custom VPC's u2o subnet: the address under the VPC's name, the 31000 allow of an
    // overlay subnet and only the 29000 reroute.
    Api::<kube_ovn_common::crd::Vpc>::all(w.client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "kubeovn.io/v1", "kind": "Vpc",
                                           "metadata": {"name": "vpc1"}, "spec": {}}))
            .unwrap(),
        )
        .await
        .unwrap();
    create::<Subnet>(
        &w,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "u2o-vpc"},
               "spec": {"cidrBlock": "172.19.101.0/24", "gateway": "172.19.101.1",
                        "vlan": "vlan100", "vpc": "vpc1", "u2oInterconnection": true}}),
    )
    .await;
    let st = eventually("the custom VPC's u2o address", LONG, || async {
        let st = subnets.get("u2o-vpc").await.ok()?.status?;
        (!st.u2o_interconnection_ip.is_empty()).then_some(st)
    })
    .await;
    assert_eq!(st.u2o_interconnection_vpc, "vpc1");
    Api::<kube_ovn_common::crd::Ip>::all(w.client.clone())
        .get("u2o-interconnection.vpc1.u2o-vpc")
        .await
        .expect("the custom VPC's u2o IP CR");
    let lrp = eventually("the custom VPC's u2o router port", LONG, || async {
        named(&w, "Logical_Router_Port", "vpc1-u2o-vpc")
    })
    .await;
    assert_eq!(
        text(&lrp, "networks"),
        format!("{}/24", st.u2o_interconnection_ip)
    );
    assert!(named(&w, "Logical_Switch_Port", "localnet.u2o-vpc").is_some());
    let vpc_policies = || {
        let mut p: Vec<(i64, String)> = rows(&w, "Logical_Router_Policy")
            .iter()
            .filter(|r| {
                string_map(r, "external_ids")
                    .get("subnet")
                    .map(String::as_str)
                    == Some("u2o-vpc")
            })
            .map(|r| {
                (
                    r.get("priority")
                        .and_then(Datum::as_atom)
                        .and_then(Atom::as_i64)
                        .unwrap_or_default(),
                    text(r, "match"),
                )
            })
            .collect();
        p.sort();
        p
    };
    eventually("the custom VPC's u2o policies", LONG, || async {
        (vpc_policies()
            == vec![
                (29000, "ip4.src == 172.19.101.0/24".to_string()),
                (31000, "ip4.dst == 172.19.101.0/24".to_string()),
            ])
        .then_some(())
    })
    .await;

    // Off: address, CR, router ports, policies and sets go; the router stops learning.
    subnets
        .patch(
            "u2o-sub",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"u2oInterconnection": false}})),
        )
        .await
        .unwrap();
    eventually("u2o rows gone", LONG, || async {
        let st = subnets.get("u2o-sub").await.ok()?.status?;
        (st.u2o_interconnection_ip.is_empty()
            && st.u2o_interconnection_mac.is_empty()
            && st.u2o_interconnection_vpc.is_empty()
            && st.v4_using_ips.0 == 0
            && named(&w, "Logical_Router_Port", "ovn-cluster-u2o-sub").is_none()
            && named(&w, "Logical_Switch_Port", "u2o-sub-ovn-cluster").is_none()
            && tagged(&w, "Logical_Router_Policy", "u2o-sub") == 0
            && named(&w, "Address_Set", "u2o.sub.u2o_exclude_ip.ip4").is_none()
            && router_options(&w)
                .get("always_learn_from_arp_request")
                .map(String::as_str)
                == Some("false"))
        .then_some(())
    })
    .await;
    let spec = subnets.get("u2o-sub").await.unwrap().spec;
    assert_eq!(
        spec.u2o_interconnection_ip, "",
        "normalised away with u2o off"
    );
    eventually("the u2o IP CR deleted", LONG, || async {
        Api::<kube_ovn_common::crd::Ip>::all(w.client.clone())
            .get_opt("u2o-interconnection.ovn-cluster.u2o-sub")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(named(&w, "Logical_Switch_Port", "localnet.u2o-sub").is_some());
}

/// The NAT rows of router `lr` as (type, external_ip, logical_ip, options, external_ids).
fn nats_of(w: &World, lr: &str) -> Vec<(String, String, String, String, String)> {
    let router = named(w, "Logical_Router", lr).expect("router");
    let held: Vec<Atom> = router
        .get("nat")
        .and_then(Datum::as_set)
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    let c = w.nb.cache();
    let mut out: Vec<_> = held
        .iter()
        .filter_map(|a| c.table("NAT")?.get(&a.as_uuid()?).cloned())
        .map(|r| {
            (
                text(&r, "type"),
                text(&r, "external_ip"),
                text(&r, "logical_ip"),
                format!("{:?}", string_map(&r, "options")),
                format!("{:?}", string_map(&r, "external_ids")),
            )
        })
        .collect();
    out.sort();
    out
}

/// OVN-native NAT against the real NB: a custom VPC's gateway port on the external subnet
/// (its `lrp` OvnEip's address and MAC, a `Gateway_Chassis` on the labelled node), an
/// OvnFip's `dnat_and_snat`, an OvnSnatRule's `snat` and an OvnDnatRule's load balancer with
/// upstream's columns; then the same rows re-made as upstream writes them are adopted with
/// zero writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ovn_eip_nat_rows_and_adoption() {
    let mut w = World::new(2, false).await;
    w.start_controller();
    net1_vlan100(&w).await;
    create::<Subnet>(
        &w,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "external"},
               "spec": {"cidrBlock": "172.19.200.0/24", "gateway": "172.19.200.1",
                        "vlan": "vlan100"}}),
    )
    .await;
    let nodes: Api<Node> = Api::all(w.client.clone());
    let node = w.sandbox.state().nodes[0].name.clone();
    nodes
        .patch(
            &node,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {
                "labels": {"ovn.kubernetes.io/external-gw": "true"},
                "annotations": {"ovn.kubernetes.io/chassis": "chassis-gw1"}}})),
        )
        .await
        .unwrap();
    create::<kube_ovn_common::crd::Vpc>(
        &w,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "vpc1"},
               "spec": {"enableExternal": true}}),
    )
    .await;
    create::<Subnet>(
        &w,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "s1"},
               "spec": {"cidrBlock": "10.100.0.0/24", "vpc": "vpc1"}}),
    )
    .await;
    let eips: Api<OvnEip> = Api::all(w.client.clone());
    let lrp_eip = eventually("the gateway port's lrp eip", LONG, || async {
        let e = eips.get("vpc1-external").await.ok()?;
        let st = e.status.clone()?;
        (st.ready && st.type_ == "lrp").then_some(st)
    })
    .await;
    let lrp = eventually("vpc1-external in the NB", LONG, || async {
        named(&w, "Logical_Router_Port", "vpc1-external")
    })
    .await;
    assert_eq!(text(&lrp, "networks"), format!("{}/24", lrp_eip.v4_ip));
    assert_eq!(text(&lrp, "mac"), lrp_eip.mac_address);
    let gc = eventually("the gateway chassis", LONG, || async {
        named(&w, "Gateway_Chassis", "vpc1-external-chassis-gw1")
    })
    .await;
    assert_eq!(text(&gc, "chassis_name"), "chassis-gw1");
    assert_eq!(
        gc.get("priority")
            .and_then(Datum::as_atom)
            .and_then(Atom::as_i64),
        Some(100)
    );
    assert_eq!(
        text(
            &named(&w, "Logical_Switch_Port", "external-vpc1").expect("peer LSP"),
            "type"
        ),
        "router"
    );

    for name in ["eip-f", "eip-s", "eip-d"] {
        create::<OvnEip>(
            &w,
            json!({"apiVersion": "kubeovn.io/v1", "kind": "OvnEip", "metadata": {"name": name},
                   "spec": {"externalSubnet": "external", "type": "nat"}}),
        )
        .await;
    }
    let ready_ip = |name: &'static str| {
        let eips = eips.clone();
        async move {
            eventually("an eip ready", LONG, || async {
                let st = eips.get(name).await.ok()?.status?;
                (st.ready && !st.v4_ip.is_empty()).then_some(st.v4_ip)
            })
            .await
        }
    };
    let (f, s, d) = (
        ready_ip("eip-f").await,
        ready_ip("eip-s").await,
        ready_ip("eip-d").await,
    );
    create::<OvnFip>(
        &w,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "OvnFip", "metadata": {"name": "fip1"},
               "spec": {"ovnEip": "eip-f", "v4Ip": "10.100.0.10", "vpc": "vpc1"}}),
    )
    .await;
    create::<OvnSnatRule>(
        &w,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "OvnSnatRule", "metadata": {"name": "snat1"},
               "spec": {"ovnEip": "eip-s", "vpcSubnet": "s1"}}),
    )
    .await;
    create::<OvnDnatRule>(
        &w,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "OvnDnatRule", "metadata": {"name": "dnat1"},
               "spec": {"ovnEip": "eip-d", "v4Ip": "10.100.0.11", "vpc": "vpc1",
                        "protocol": "tcp", "internalPort": "80", "externalPort": "8080"}}),
    )
    .await;
    let want_nats = vec![
        (
            "dnat_and_snat".to_string(),
            f.clone(),
            "10.100.0.10".to_string(),
            "{\"stateless\": \"false\"}".to_string(),
            "{}".to_string(),
        ),
        (
            "snat".to_string(),
            s.clone(),
            "10.100.0.0/24".to_string(),
            "{}".to_string(),
            "{}".to_string(),
        ),
    ];
    eventually("the NAT rows", LONG, || async {
        (nats_of(&w, "vpc1") == want_nats).then_some(())
    })
    .await;
    let lb = eventually("the DNAT load balancer", LONG, || async {
        named(&w, "Load_Balancer", "dnat1")
    })
    .await;
    assert_eq!(text(&lb, "protocol"), "tcp");
    assert_eq!(
        string_map(&lb, "vips"),
        [(format!("{d}:8080"), "10.100.0.11:80".to_string())].into()
    );
    assert_eq!(
        string_map(&lb, "external_ids"),
        [("vendor".to_string(), "kube-ovn".to_string())].into()
    );
    let fip: OvnFip = Api::all(w.client.clone()).get("fip1").await.unwrap();
    assert_eq!(fip.labels()["ovn.kubernetes.io/eip_v4_ip"], f);
    assert_eq!(fip.annotations()["ovn.kubernetes.io/vpc_eip"], "eip-f");
    let eip_f = eips.get("eip-f").await.unwrap();
    assert_eq!(eip_f.labels()["ovn.kubernetes.io/vpc"], "vpc1");
    assert_eq!(eip_f.labels()["ovn.kubernetes.io/ovn_eip_type"], "nat");

    // Adoption: every row re-made as upstream writes it.
    w.controller_settled().await;
    w.kill_controller();
    w.nbctl(&["lrp-del", "vpc1-external"]);
    w.nbctl(&["lsp-del", "external-vpc1"]);
    w.nbctl(&["lr-nat-del", "vpc1"]);
    w.nbctl(&["lb-del", "dnat1"]);
    support::upstream_layout::u2o_router_ports(
        &w,
        "vpc1",
        "external",
        &format!("{}/24", lrp_eip.v4_ip),
        &lrp_eip.mac_address,
    );
    support::upstream_layout::gateway_chassis(&w, "vpc1-external", "chassis-gw1", 100);
    support::upstream_layout::nat(&w, "vpc1", "dnat_and_snat", &f, "10.100.0.10", Some(false));
    support::upstream_layout::nat(&w, "vpc1", "snat", &s, "10.100.0.0/24", None);
    support::upstream_layout::dnat_lb(
        &w,
        "vpc1",
        "dnat1",
        "tcp",
        &format!("{d}:8080"),
        "10.100.0.11:80",
    );
    assert_eq!(nats_of(&w, "vpc1"), want_nats);
    w.northd_settled().await;
    let mut changes = w.nb.subscribe();
    w.start_controller();
    eventually("the vpc and the rules reconciled", LONG, || async {
        let mut n = 0.0;
        for kind in ["vpc", "ovn-eip", "ovn-fip", "ovn-snat", "ovn-dnat"] {
            let c = w
                .counter(
                    "kube_ovn_controller_reconciles_total",
                    &format!("kind=\"{kind}\""),
                )
                .await?;
            if c < 1.0 {
                return None;
            }
            n += c;
        }
        (n >= 5.0).then_some(())
    })
    .await;
    w.controller_settled().await;
    w.assert_wrote_nothing(&mut changes, "adopting the OVN NAT layout")
        .await;

    // Deleting the rules removes exactly their rows.
    Api::<OvnFip>::all(w.client.clone())
        .delete("fip1", &Default::default())
        .await
        .unwrap();
    Api::<OvnDnatRule>::all(w.client.clone())
        .delete("dnat1", &Default::default())
        .await
        .unwrap();
    eventually("only the SNAT row left", LONG, || async {
        (nats_of(&w, "vpc1") == want_nats[1..] && named(&w, "Load_Balancer", "dnat1").is_none())
            .then_some(())
    })
    .await;
}

/// The default VPC's external gateway from ConfigMap `ovn-external-gw-config`: the ConfigMap's
/// node labelled, the router port `ovn-cluster-external` on its `lrp` OvnEip with the node's
/// chassis, the default Vpc's `enableExternal`; an OvnSnatRule of `ovn-default` on
/// `ovn-cluster` with its `src-ip` route via `external-gw-addr`; adopted with zero writes as
/// upstream writes it; the ConfigMap gone, the port goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_vpc_external_gateway_from_the_config_map() {
    let mut w = World::new(2, false).await;
    w.start_controller();
    net1_vlan100(&w).await;
    create::<Subnet>(
        &w,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "external"},
               "spec": {"cidrBlock": "172.19.200.0/24", "gateway": "172.19.200.1",
                        "vlan": "vlan100"}}),
    )
    .await;
    let node = w.sandbox.state().nodes[0].name.clone();
    let nodes: Api<Node> = Api::all(w.client.clone());
    nodes
        .patch(
            &node,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {
                "annotations": {"ovn.kubernetes.io/chassis": "chassis-gw1"}}})),
        )
        .await
        .unwrap();
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(w.client.clone(), "kube-system");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "ovn-external-gw-config"},
            "data": {"enable-external-gw": "true", "type": "centralized",
                     "external-gw-nodes": node, "external-gw-addr": "172.19.200.254/24"}}))
        .unwrap(),
    )
    .await
    .unwrap();
    let lrp = eventually("ovn-cluster-external with its chassis", LONG, || async {
        named(&w, "Gateway_Chassis", "ovn-cluster-external-chassis-gw1")?;
        named(&w, "Logical_Router_Port", "ovn-cluster-external")
    })
    .await;
    let eip = eventually("the lrp eip", LONG, || async {
        let e = Api::<OvnEip>::all(w.client.clone())
            .get("ovn-cluster-external")
            .await
            .ok()?;
        e.status.filter(|s| s.ready)
    })
    .await;
    assert_eq!(text(&lrp, "networks"), format!("{}/24", eip.v4_ip));
    assert_eq!(text(&lrp, "mac"), eip.mac_address);
    let labelled = nodes.get(&node).await.unwrap();
    assert_eq!(labelled.labels()["ovn.kubernetes.io/external-gw"], "true");
    let vpc = Api::<kube_ovn_common::crd::Vpc>::all(w.client.clone());
    eventually("the default vpc's enableExternal", LONG, || async {
        let v = vpc.get("ovn-cluster").await.ok()?;
        (v.spec.enable_external && v.status?.enable_external).then_some(())
    })
    .await;

    create::<OvnEip>(
        &w,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "OvnEip", "metadata": {"name": "eip-s"},
               "spec": {"type": "nat"}}),
    )
    .await;
    create::<OvnSnatRule>(
        &w,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "OvnSnatRule", "metadata": {"name": "snat1"},
               "spec": {"ovnEip": "eip-s", "vpcSubnet": "ovn-default"}}),
    )
    .await;
    let cidr = Api::<Subnet>::all(w.client.clone())
        .get("ovn-default")
        .await
        .unwrap()
        .spec
        .cidr_block;
    let route = |w: &World| {
        rows(w, "Logical_Router_Static_Route")
            .into_iter()
            .find(|r| text(r, "policy") == "src-ip" && text(r, "ip_prefix") == cidr)
    };
    let r = eventually("the NATed source's route", LONG, || async { route(&w) }).await;
    assert_eq!(text(&r, "nexthop"), "172.19.200.254");
    let s = Api::<OvnEip>::all(w.client.clone())
        .get("eip-s")
        .await
        .unwrap()
        .status
        .unwrap()
        .v4_ip;
    assert_eq!(
        nats_of(&w, "ovn-cluster"),
        vec![(
            "snat".to_string(),
            s.clone(),
            cidr.clone(),
            "{}".to_string(),
            "{}".to_string()
        )]
    );

    // Adoption of the same layout as upstream writes it.
    w.controller_settled().await;
    w.kill_controller();
    w.nbctl(&["lrp-del", "ovn-cluster-external"]);
    w.nbctl(&["lsp-del", "external-ovn-cluster"]);
    w.nbctl(&["lr-nat-del", "ovn-cluster", "snat", &cidr]);
    let route_uuid = w.nbctl(&[
        "--bare",
        "--columns=_uuid",
        "find",
        "logical_router_static_route",
        "policy=src-ip",
        &format!("ip_prefix=\"{cidr}\""),
    ]);
    w.nbctl(&[
        "remove",
        "logical_router",
        "ovn-cluster",
        "static_routes",
        route_uuid.trim(),
    ]);
    support::upstream_layout::u2o_router_ports(
        &w,
        "ovn-cluster",
        "external",
        &format!("{}/24", eip.v4_ip),
        &eip.mac_address,
    );
    support::upstream_layout::gateway_chassis(&w, "ovn-cluster-external", "chassis-gw1", 100);
    support::upstream_layout::nat(&w, "ovn-cluster", "snat", &s, &cidr, None);
    support::upstream_layout::vpc_static_route(
        &w,
        "ovn-cluster",
        "src-ip",
        &cidr,
        "172.19.200.254",
        "",
    );
    w.northd_settled().await;
    let mut changes = w.nb.subscribe();
    w.start_controller();
    eventually("the gateway and the rule reconciled", LONG, || async {
        for kind in ["external-gw", "ovn-snat", "subnet"] {
            let c = w
                .counter(
                    "kube_ovn_controller_reconciles_total",
                    &format!("kind=\"{kind}\""),
                )
                .await?;
            if c < 1.0 {
                return None;
            }
        }
        Some(())
    })
    .await;
    w.controller_settled().await;
    w.assert_wrote_nothing(&mut changes, "adopting the default VPC's external gateway")
        .await;

    // Off: the ConfigMap goes, and the gateway port with it.
    cms.delete("ovn-external-gw-config", &Default::default())
        .await
        .unwrap();
    eventually("the gateway port gone", LONG, || async {
        let v = vpc.get("ovn-cluster").await.ok()?;
        (named(&w, "Logical_Router_Port", "ovn-cluster-external").is_none()
            && !v.spec.enable_external)
            .then_some(())
    })
    .await;
}
