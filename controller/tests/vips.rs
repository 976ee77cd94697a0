//! Vips end to end against the real NB (real binary, API fixture): random and static
//! reservations written back as upstream does, conflicts refused with an event, virtual ports
//! with the pods that list the Vip in `ovn.kubernetes.io/aaps` as virtual parents, the
//! `switch_lb_vip` port answering with the gateway's MAC, release on delete, and a restart that
//! neither moves a reservation nor writes to the NB.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::ResourceExt;
use kube_ovn_common::crd::Vip;
use kube_ovn_nb::objects::string_map;
use ovsdb::{Atom, Datum, Row};
use serde_json::{json, Value};
use support::{eventually, World};

const LONG: Duration = Duration::from_secs(60);

async fn create_vip(w: &World, name: &str, spec: Value) {
    let v: Vip = serde_json::from_value(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Vip", "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    Api::<Vip>::all(w.client.clone())
        .create(&PostParams::default(), &v)
        .await
        .unwrap();
}

/// The Vip once its reservation is recorded.
async fn reserved(w: &World, name: &str) -> Vip {
    let api: Api<Vip> = Api::all(w.client.clone());
    eventually(&format!("vip {name} reserved"), LONG, || async {
        let v = api.get(name).await.ok()?;
        let mac = v.status.as_ref()?.mac.clone();
        (!mac.is_empty()).then_some(v)
    })
    .await
}

fn port(w: &World, name: &str) -> Option<Row> {
    let c = w.nb.cache();
    let t = c.table("Logical_Switch_Port")?;
    let (_, r) = t
        .iter()
        .find(|(_, r)| r.get("name") == Some(&Datum::from(name)))?;
    Some((**r).clone())
}

fn text(r: &Row, column: &str) -> String {
    r.get(column)
        .and_then(Datum::as_atom)
        .and_then(Atom::as_str)
        .unwrap_or_default()
        .to_string()
}

fn addresses(r: &Row) -> Vec<String> {
    r.get("addresses")
        .and_then(Datum::as_set)
        .map(|s| {
            s.iter()
                .filter_map(Atom::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

async fn create_pod(w: &World, name: &str, labels: Value, annotations: Value) {
    let p: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels, "annotations": annotations},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x"}]}
    }))
    .unwrap();
    w.pods().create(&PostParams::default(), &p).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vips_reserve_addresses_and_wire_virtual_ports() {
    let mut w = World::new(1, false).await;
    w.start_controller();
    let api: Api<Vip> = Api::all(w.client.clone());

    // Random: an address of the subnet, written back to spec and status with labels and our
    // finalizer. No namespace: no port.
    create_vip(&w, "random", json!({"subnet": "ovn-default"})).await;
    let v = reserved(&w, "random").await;
    let st = v.status.clone().unwrap();
    let ip: std::net::Ipv4Addr = st.v4ip.parse().expect("a v4 address");
    assert!(ip.octets()[..2] == [10, 16], "{ip} not in ovn-default");
    assert_eq!(v.spec.v4ip, st.v4ip);
    assert_eq!(v.spec.mac_address, st.mac);
    assert_eq!(
        v.labels()
            .get("ovn.kubernetes.io/subnet")
            .map(String::as_str),
        Some("ovn-default")
    );
    assert_eq!(
        v.labels()
            .get("ovn.kubernetes.io/ip_reserved")
            .map(String::as_str),
        Some("")
    );
    assert!(v
        .finalizers()
        .iter()
        .any(|f| f == "kubeovn.io/kube-ovn-controller"));
    assert!(
        port(&w, "random").is_none(),
        "a Vip without a namespace got a port"
    );

    // Static, in a namespace, with a selector: a virtual port whose parents are the matching
    // pods that list it in their aaps annotation.
    create_pod(
        &w,
        "web-a",
        json!({"app": "web"}),
        json!({"ovn.kubernetes.io/aaps": "shared"}),
    )
    .await;
    create_pod(
        &w,
        "web-b",
        json!({"app": "web"}),
        json!({"ovn.kubernetes.io/aaps": "other,shared"}),
    )
    .await;
    create_pod(
        &w,
        "db",
        json!({"app": "db"}),
        json!({"ovn.kubernetes.io/aaps": "shared"}),
    )
    .await;
    create_vip(
        &w,
        "shared",
        json!({"subnet": "ovn-default", "namespace": "default", "v4ip": "10.16.0.200", "selector": ["app: web"]}),
    )
    .await;
    let v = reserved(&w, "shared").await;
    assert_eq!(v.status.as_ref().unwrap().v4ip, "10.16.0.200");
    let vp = eventually("the virtual port with both parents", LONG, || async {
        let p = port(&w, "shared")?;
        let opts = string_map(&p, "options");
        (opts.get("virtual-parents").map(String::as_str) == Some("web-a.default,web-b.default"))
            .then_some(p)
    })
    .await;
    assert_eq!(text(&vp, "type"), "virtual");
    assert_eq!(
        string_map(&vp, "options")
            .get("virtual-ip")
            .map(String::as_str),
        Some("10.16.0.200")
    );
    // The parents' ports carry the address (upstream's external_ids:vips, attach-vips).
    eventually("web-a's port carries the vip", LONG, || async {
        let ext = string_map(&port(&w, "web-a.default")?, "external_ids");
        (ext.get("vips").map(String::as_str) == Some("10.16.0.200")
            && ext.get("attach-vips").map(String::as_str) == Some("true"))
        .then_some(())
    })
    .await;
    // A pod leaving drops out of the parents.
    w.pods()
        .delete("web-b", &DeleteParams::default())
        .await
        .unwrap();
    eventually("web-b no longer a parent", LONG, || async {
        let p = port(&w, "shared")?;
        (string_map(&p, "options")
            .get("virtual-parents")
            .map(String::as_str)
            == Some("web-a.default"))
        .then_some(())
    })
    .await;

    // The same static address again is refused with an event.
    create_vip(
        &w,
        "clash",
        json!({"subnet": "ovn-default", "v4ip": "10.16.0.200"}),
    )
    .await;
    let events: Api<Event> = Api::namespaced(w.client.clone(), "default");
    eventually(
        "an AcquireAddressFailed event for the clash",
        LONG,
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.involved_object.name.as_deref() == Some("clash")
                        && e.reason.as_deref() == Some("AcquireAddressFailed")
                })
                .then_some(())
        },
    )
    .await;
    assert!(api
        .get("clash")
        .await
        .unwrap()
        .status
        .is_none_or(|s| s.v4ip.is_empty()));

    // A switch LB rule's address: a port with the gateway port's MAC answering ARP.
    create_vip(
        &w,
        "slr",
        json!({"subnet": "ovn-default", "namespace": "default", "type": "switch_lb_vip"}),
    )
    .await;
    let v = reserved(&w, "slr").await;
    let gw_mac = {
        let c = w.nb.cache();
        let t = c.table("Logical_Router_Port").unwrap();
        let (_, r) = t
            .iter()
            .find(|(_, r)| r.get("name") == Some(&Datum::from("ovn-cluster-ovn-default")))
            .unwrap();
        text(r, "mac")
    };
    assert_eq!(v.status.as_ref().unwrap().mac, gw_mac);
    let p = eventually("the slr port", LONG, || async { port(&w, "slr.default") }).await;
    assert_eq!(
        addresses(&p),
        [format!("{gw_mac} {}", v.status.as_ref().unwrap().v4ip)]
    );
    assert_eq!(
        string_map(&p, "options")
            .get("arp_proxy")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        string_map(&p, "external_ids")
            .get("pod")
            .map(String::as_str),
        Some("default/slr")
    );

    // Restart: reservations stay, nothing is written.
    let mut before = Vec::new();
    for n in ["random", "shared", "slr"] {
        let v = api.get(n).await.unwrap();
        before.push((v.name_any(), v.status.unwrap().v4ip));
    }
    w.controller_settled().await;
    w.kill_controller();
    let mut changes = w.nb.subscribe();
    w.start_controller();
    eventually("every vip reconciled", LONG, || async {
        w.counter("kube_ovn_controller_reconciles_total", "kind=\"vip\"")
            .await
            .filter(|n| *n >= 4.0)
    })
    .await;
    eventually("subnets and the node reconciled", LONG, || async {
        let s = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"subnet\"")
            .await?;
        let n = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"node\"")
            .await?;
        let p = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"pod\"")
            .await?;
        (s >= 2.0 && n >= 1.0 && p >= 2.0).then_some(())
    })
    .await;
    w.assert_wrote_nothing(&mut changes, "the restart").await;
    for (name, ip) in &before {
        assert_eq!(
            &api.get(name).await.unwrap().status.unwrap().v4ip,
            ip,
            "{name} moved"
        );
    }

    // Delete: ports go, the address is free again.
    api.delete("shared", &DeleteParams::default())
        .await
        .unwrap();
    api.delete("slr", &DeleteParams::default()).await.unwrap();
    eventually("vips and their ports gone", LONG, || async {
        let gone =
            api.get_opt("shared").await.ok()?.is_none() && api.get_opt("slr").await.ok()?.is_none();
        (gone && port(&w, "shared").is_none() && port(&w, "slr.default").is_none()).then_some(())
    })
    .await;
    api.delete("clash", &DeleteParams::default()).await.unwrap();
    create_vip(
        &w,
        "again",
        json!({"subnet": "ovn-default", "v4ip": "10.16.0.200"}),
    )
    .await;
    assert_eq!(
        reserved(&w, "again").await.status.unwrap().v4ip,
        "10.16.0.200"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_takes_a_reserved_vip_address_and_gives_it_back() {
    let mut w = World::new(1, false).await;
    w.start_controller();
    let api: Api<Vip> = Api::all(w.client.clone());
    create_vip(
        &w,
        "fixed",
        json!({"subnet": "ovn-default", "v4ip": "10.16.0.210"}),
    )
    .await;
    let v = reserved(&w, "fixed").await;
    let mac = v.status.unwrap().mac;

    create_pod(
        &w,
        "user",
        json!({}),
        json!({"ovn.kubernetes.io/vip": "fixed"}),
    )
    .await;
    let a = eventually("user allocated", LONG, || async {
        let p = w.pods().get("user").await.ok()?;
        let a = p.annotations().clone();
        (a.get("ovn.kubernetes.io/allocated").map(String::as_str) == Some("true")).then_some(a)
    })
    .await;
    assert_eq!(
        a.get("ovn.kubernetes.io/ip_address").map(String::as_str),
        Some("10.16.0.210")
    );
    assert_eq!(a.get("ovn.kubernetes.io/mac_address"), Some(&mac));
    let labelled = api.get("fixed").await.unwrap();
    assert_eq!(
        labelled
            .labels()
            .get("ovn.kubernetes.io/ip_reserved")
            .map(String::as_str),
        Some("user.default")
    );

    // A second pod asking for it waits, told why.
    create_pod(
        &w,
        "user2",
        json!({}),
        json!({"ovn.kubernetes.io/vip": "fixed"}),
    )
    .await;
    let events: Api<Event> = Api::namespaced(w.client.clone(), "default");
    eventually("user2 told the vip is in use", LONG, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.involved_object.name.as_deref() == Some("user2")
                    && e.message
                        .as_deref()
                        .is_some_and(|m| m.contains("in use by user.default"))
            })
            .then_some(())
    })
    .await;
    assert!(!w
        .pods()
        .get("user2")
        .await
        .unwrap()
        .annotations()
        .contains_key("ovn.kubernetes.io/allocated"));

    // The first pod goes: the address passes to the second.
    w.pods()
        .delete("user", &DeleteParams::default())
        .await
        .unwrap();
    let a = eventually("user2 allocated", LONG, || async {
        let p = w.pods().get("user2").await.ok()?;
        let a = p.annotations().clone();
        (a.get("ovn.kubernetes.io/allocated").map(String::as_str) == Some("true")).then_some(a)
    })
    .await;
    assert_eq!(
        a.get("ovn.kubernetes.io/ip_address").map(String::as_str),
        Some("10.16.0.210")
    );
    eventually("the vip labelled for user2", LONG, || async {
        let v = api.get("fixed").await.ok()?;
        (v.labels()
            .get("ovn.kubernetes.io/ip_reserved")
            .map(String::as_str)
            == Some("user2.default"))
        .then_some(())
    })
    .await;
}
