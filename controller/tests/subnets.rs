//! Subnet behaviour end to end (real binary, API fixture, real NB): namespace binding,
//! excludeIps ranges, static addresses and MACs, IP pools, invalid specs, the undeletable
//! default subnet, gatewayType switches, and CIDR changes.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use kube_ovn_common::crd::{IpPool, Subnet};
use kube_ovn_nb::objects::string_map;
use ovsdb::Datum;
use serde_json::json;
use support::{eventually, World};

const LONG: Duration = Duration::from_secs(60);

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
    let _ = Api::<Namespace>::all(w.client.clone())
        .create(&PostParams::default(), &ns)
        .await;
}

async fn create_pod(w: &World, ns: &str, name: &str, annotations: serde_json::Value) {
    let p: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
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
        let p = pods.get(name).await.ok()?;
        let a = p.annotations().clone();
        (a.get("ovn.kubernetes.io/allocated").map(String::as_str) == Some("true")).then_some(a)
    })
    .await
}

async fn event_with(w: &World, ns: &str, object: &str, reason: &str) -> String {
    let events: Api<Event> = Api::namespaced(w.client.clone(), ns);
    eventually(&format!("{reason} event on {object}"), LONG, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| {
                e.involved_object.name.as_deref() == Some(object)
                    && e.reason.as_deref() == Some(reason)
            })
            .and_then(|e| e.message)
    })
    .await
}

fn switches(w: &World) -> Vec<String> {
    let c = w.nb.cache();
    c.table("Logical_Switch")
        .map(|t| {
            t.iter()
                .filter_map(|(_, r)| r.get("name")?.as_atom()?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn policies(w: &World) -> Vec<(i64, String, BTreeMap<String, String>)> {
    let c = w.nb.cache();
    c.table("Logical_Router_Policy")
        .map(|t| {
            t.iter()
                .map(|(_, r)| {
                    (
                        r.get("priority")
                            .and_then(Datum::as_atom)
                            .and_then(|a| a.as_i64())
                            .unwrap_or_default(),
                        r.get("match")
                            .and_then(Datum::as_atom)
                            .and_then(|a| a.as_str())
                            .unwrap_or_default()
                            .to_string(),
                        string_map(r, "external_ids"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_binding_exclude_ranges_static_addresses_and_pools() {
    let mut w = World::new(1, false).await;
    w.start_controller();
    for ns in ["team", "pooled"] {
        namespace(&w, ns).await;
    }
    create_subnet(&w, "s1", json!({"cidrBlock": "10.66.0.0/24", "excludeIps": ["10.66.0.2..10.66.0.10"], "namespaces": ["team", "pooled"]})).await;
    eventually("switch s1 and its policy", LONG, || async {
        let has_policy = policies(&w)
            .iter()
            .any(|(p, m, _)| *p == 31000 && m == "ip4.dst == 10.66.0.0/24");
        (switches(&w).contains(&"s1".to_string()) && has_policy).then_some(())
    })
    .await;
    // The spec was normalised as upstream does.
    let s1 = Api::<Subnet>::all(w.client.clone())
        .get("s1")
        .await
        .unwrap();
    assert_eq!(s1.spec.gateway, "10.66.0.1");
    assert_eq!(
        s1.spec.exclude_ips,
        vec!["10.66.0.1", "10.66.0.2..10.66.0.10"]
    );
    assert_eq!(
        (
            s1.spec.protocol.as_str(),
            s1.spec.provider.as_str(),
            s1.spec.vpc.as_str()
        ),
        ("IPv4", "ovn", "ovn-cluster")
    );

    create_pod(&w, "team", "a", json!({})).await;
    let a = allocated(&w, "team", "a").await;
    assert_eq!(a["ovn.kubernetes.io/logical_switch"], "s1");
    assert_eq!(
        a["ovn.kubernetes.io/ip_address"], "10.66.0.11",
        "first address after the excluded range"
    );
    create_pod(&w, "default", "elsewhere", json!({})).await;
    assert_eq!(
        allocated(&w, "default", "elsewhere").await["ovn.kubernetes.io/logical_switch"],
        "ovn-default"
    );

    // Static address (inside excludeIps: that is what they are for) and MAC.
    create_pod(&w, "team", "fixed", json!({"ovn.kubernetes.io/ip_address": "10.66.0.5", "ovn.kubernetes.io/mac_address": "0a:00:00:00:66:05"})).await;
    let f = allocated(&w, "team", "fixed").await;
    assert_eq!(
        (
            f["ovn.kubernetes.io/ip_address"].as_str(),
            f["ovn.kubernetes.io/mac_address"].as_str()
        ),
        ("10.66.0.5", "0a:00:00:00:66:05")
    );
    create_pod(
        &w,
        "team",
        "clash",
        json!({"ovn.kubernetes.io/ip_address": "10.66.0.5"}),
    )
    .await;
    let msg = event_with(&w, "team", "clash", "AcquireAddressFailed").await;
    assert!(msg.contains("AddressConflict"), "{msg}");
    let clash = Api::<Pod>::namespaced(w.client.clone(), "team")
        .get("clash")
        .await
        .unwrap();
    assert!(!clash
        .annotations()
        .contains_key("ovn.kubernetes.io/allocated"));
    create_pod(
        &w,
        "team",
        "gw",
        json!({"ovn.kubernetes.io/ip_address": "10.66.0.1"}),
    )
    .await;
    assert!(event_with(&w, "team", "gw", "AcquireAddressFailed")
        .await
        .contains("gateway"));

    // An IP pool bound to a namespace, and an address-list ip_pool annotation.
    let pool: IpPool = serde_json::from_value(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "IPPool", "metadata": {"name": "pool1"},
        "spec": {"subnet": "s1", "ips": ["10.66.0.100..10.66.0.101"], "namespaces": ["pooled"]}
    }))
    .unwrap();
    Api::<IpPool>::all(w.client.clone())
        .create(&PostParams::default(), &pool)
        .await
        .unwrap();
    eventually("pool1 ready", LONG, || async {
        let p = Api::<IpPool>::all(w.client.clone())
            .get("pool1")
            .await
            .ok()?;
        p.status?
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;
    for (i, want) in ["10.66.0.100", "10.66.0.101"].iter().enumerate() {
        create_pod(&w, "pooled", &format!("p{i}"), json!({})).await;
        assert_eq!(
            &allocated(&w, "pooled", &format!("p{i}")).await["ovn.kubernetes.io/ip_address"],
            want
        );
    }
    create_pod(&w, "pooled", "p2", json!({})).await;
    assert!(event_with(&w, "pooled", "p2", "AcquireAddressFailed")
        .await
        .contains("NoAvailableAddress"));
    create_pod(
        &w,
        "team",
        "listed",
        json!({"ovn.kubernetes.io/ip_pool": "10.66.0.150,10.66.0.151"}),
    )
    .await;
    assert_eq!(
        allocated(&w, "team", "listed").await["ovn.kubernetes.io/ip_address"],
        "10.66.0.150"
    );
    // Team pods never use the pool's addresses.
    create_pod(&w, "team", "b", json!({})).await;
    assert_eq!(
        allocated(&w, "team", "b").await["ovn.kubernetes.io/ip_address"],
        "10.66.0.12"
    );

    // The counters follow allocations and releases (a, fixed, p0, p1, listed and b hold
    // addresses of s1), without any change to the Subnet itself.
    let counts = |want: i128| {
        let w = &w;
        async move {
            eventually(
                &format!("s1 counts {want} used addresses"),
                LONG,
                || async {
                    let st = Api::<Subnet>::all(w.client.clone())
                        .get("s1")
                        .await
                        .ok()?
                        .status?;
                    (st.v4_using_ips.0 == want).then_some(st.v4_available_ips.0 + st.v4_using_ips.0)
                },
            )
            .await
        }
    };
    let total = counts(6).await;
    Api::<Pod>::namespaced(w.client.clone(), "team")
        .delete("b", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(counts(5).await, total, "a release frees what it used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_the_default_subnet_and_deletion() {
    let mut w = World::new(1, false).await;
    w.start_controller();
    create_subnet(&w, "bad", json!({"cidrBlock": "10.0.0.0/33"})).await;
    let subnets: Api<Subnet> = Api::all(w.client.clone());
    let cond = eventually("bad subnet condition", LONG, || async {
        let s = subnets.get("bad").await.ok()?;
        s.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Validated" && c.status == "False")
    })
    .await;
    assert_eq!(cond.reason, "ValidateLogicalSwitchFailed");
    assert!(cond.message.contains("10.0.0.0/33"), "{}", cond.message);
    assert!(
        event_with(&w, "default", "bad", "ValidateLogicalSwitchFailed")
            .await
            .contains("cidrBlock")
    );
    // The controller carries on: a valid subnet after the bad one is served.
    create_subnet(&w, "good", json!({"cidrBlock": "10.67.0.0/24"})).await;
    eventually("switch good", LONG, || async {
        switches(&w).contains(&"good".to_string()).then_some(())
    })
    .await;
    assert!(!switches(&w).contains(&"bad".to_string()));

    // The default subnet cannot be deleted: it stays, with its switch, and an Event says so.
    subnets
        .delete("ovn-default", &DeleteParams::default())
        .await
        .unwrap();
    event_with(&w, "default", "ovn-default", "DeleteSubnetFailed").await;
    assert!(subnets.get_opt("ovn-default").await.unwrap().is_some());
    assert!(switches(&w).contains(&"ovn-default".to_string()));

    // Deleting another subnet removes its switch, router port and policies, then the CR.
    subnets
        .delete("good", &DeleteParams::default())
        .await
        .unwrap();
    eventually("good gone", LONG, || async {
        let gone = subnets.get_opt("good").await.ok()?.is_none();
        let ls_gone = !switches(&w).contains(&"good".to_string());
        let pol_gone = !policies(&w)
            .iter()
            .any(|(_, _, ids)| ids.get("subnet").map(String::as_str) == Some("good"));
        let lrp_gone = {
            let c = w.nb.cache();
            c.table("Logical_Router_Port")
                .is_none_or(|t| t.by_name("ovn-cluster-good").next().is_none())
        };
        (gone && ls_gone && pol_gone && lrp_gone).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_type_switches_and_cidr_changes() {
    let mut w = World::new(1, false).await;
    w.start_controller();
    namespace(&w, "gw").await;
    create_subnet(
        &w,
        "s2",
        json!({"cidrBlock": "10.68.0.0/30", "namespaces": ["gw"]}),
    )
    .await;
    let node_join = eventually("node1 join address", LONG, || async {
        let n = Api::<Node>::all(w.client.clone()).get("node1").await.ok()?;
        n.annotations().get("ovn.kubernetes.io/ip_address").cloned()
    })
    .await;
    eventually("distributed policy", LONG, || async {
        policies(&w)
            .iter()
            .any(|(p, m, _)| *p == 29000 && m == "ip4.src == $s2.node1_ip4")
            .then_some(())
    })
    .await;

    // /30: gateway .1, one usable address .2; a second pod waits for room.
    create_pod(&w, "gw", "first", json!({})).await;
    assert_eq!(
        allocated(&w, "gw", "first").await["ovn.kubernetes.io/ip_address"],
        "10.68.0.2"
    );
    create_pod(&w, "gw", "second", json!({})).await;
    assert!(event_with(&w, "gw", "second", "AcquireAddressFailed")
        .await
        .contains("NoAvailableAddress"));

    let subnets: Api<Subnet> = Api::all(w.client.clone());
    let patch = |spec: serde_json::Value| Patch::Merge(json!({"spec": spec}));
    // Expansion keeps the first pod's address and makes room for the second.
    subnets
        .patch(
            "s2",
            &PatchParams::default(),
            &patch(json!({"cidrBlock": "10.68.0.0/29"})),
        )
        .await
        .unwrap();
    assert_eq!(
        allocated(&w, "gw", "second").await["ovn.kubernetes.io/ip_address"],
        "10.68.0.3"
    );
    let first = Api::<Pod>::namespaced(w.client.clone(), "gw")
        .get("first")
        .await
        .unwrap();
    assert_eq!(
        first.annotations()["ovn.kubernetes.io/ip_address"],
        "10.68.0.2"
    );

    // Distributed → centralized: one reroute to the gateway node's join address, per-node
    // groups and policies gone; and back.
    subnets
        .patch(
            "s2",
            &PatchParams::default(),
            &patch(json!({"gatewayType": "centralized", "gatewayNode": "node1"})),
        )
        .await
        .unwrap();
    eventually("centralized policy", LONG, || async {
        let ps = policies(&w);
        let central = ps
            .iter()
            .find(|(p, m, _)| *p == 29000 && m == "ip4.src == 10.68.0.0/29")?;
        let distributed_left = ps
            .iter()
            .any(|(p, m, _)| *p == 29000 && m.contains("$s2.node1"));
        (central.2.get("node1") == Some(&node_join) && !distributed_left).then_some(())
    })
    .await;
    let active = eventually("activateGateway", LONG, || async {
        let st = subnets.get("s2").await.ok()?.status?;
        (!st.activate_gateway.is_empty()).then_some(st.activate_gateway)
    })
    .await;
    assert_eq!(active, "node1");
    assert!(w
        .nb
        .cache()
        .table("Port_Group")
        .is_none_or(|t| t.by_name("s2.node1").next().is_none()));
    subnets
        .patch(
            "s2",
            &PatchParams::default(),
            &patch(json!({"gatewayType": "distributed", "gatewayNode": ""})),
        )
        .await
        .unwrap();
    eventually("distributed again", LONG, || async {
        let ps = policies(&w);
        let back = ps
            .iter()
            .any(|(p, m, _)| *p == 29000 && m == "ip4.src == $s2.node1_ip4");
        let central_left = ps
            .iter()
            .any(|(p, m, _)| *p == 29000 && m == "ip4.src == 10.68.0.0/29");
        (back && !central_left).then_some(())
    })
    .await;

    // Moving the CIDR re-addresses the pods inside the new range.
    subnets
        .patch(
            "s2",
            &PatchParams::default(),
            &patch(json!({"cidrBlock": "10.69.0.0/24", "gateway": "", "excludeIps": []})),
        )
        .await
        .unwrap();
    eventually("pods re-addressed", LONG, || async {
        let pods: Api<Pod> = Api::namespaced(w.client.clone(), "gw");
        let mut all = Vec::new();
        for n in ["first", "second"] {
            all.push(
                pods.get(n)
                    .await
                    .ok()?
                    .annotations()
                    .get("ovn.kubernetes.io/ip_address")?
                    .clone(),
            );
        }
        all.iter()
            .all(|ip| ip.starts_with("10.69.0."))
            .then_some(())
    })
    .await;
}
