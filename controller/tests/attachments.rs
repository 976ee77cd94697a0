//! Multus attachments against the real NB (real binary, API fixture with the
//! NetworkAttachmentDefinition CRD): a pod with a kube-ovn attachment (`<nad>.<ns>.ovn`) gets a
//! second port, IP CR and annotation family with upstream's names; one whose attachment uses
//! kube-ovn as IPAM only (`<nad>.<ns>`, e.g. macvlan) gets the IP CR and annotations and no
//! port; a restart changes nothing; deleting the pod releases all of it; and an upstream-written
//! layout is adopted with no NB write.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube_ovn_common::crd::{Ip, Subnet};
use kube_ovn_nb::objects::{self, string_map};
use serde_json::{json, Value};
use support::nb::{named, port_uuid, set_of, text};
use support::{eventually, World};

const LONG: Duration = Duration::from_secs(60);
const OVN_NAD: &str = "attachnet";
const OVN_PROVIDER: &str = "attachnet.default.ovn";
const IPAM_NAD: &str = "mv";
const IPAM_PROVIDER: &str = "mv.default";

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn nad_resource() -> ApiResource {
    ApiResource {
        group: "k8s.cni.cncf.io".into(),
        version: "v1".into(),
        api_version: "k8s.cni.cncf.io/v1".into(),
        kind: "NetworkAttachmentDefinition".into(),
        plural: "network-attachment-definitions".into(),
    }
}

/// Two NetworkAttachmentDefinitions (their CRD comes with every sandbox) — kube-ovn as the plugin and
/// as macvlan's IPAM — and their subnets.
async fn attachment_world(w: &World) {
    let nads: Api<DynamicObject> =
        Api::namespaced_with(w.client.clone(), "default", &nad_resource());
    for (name, config) in [
        (
            OVN_NAD,
            json!({"cniVersion": "0.3.0", "type": "kube-ovn",
                   "server_socket": "/run/openvswitch/kube-ovn-daemon.sock", "provider": OVN_PROVIDER}),
        ),
        (
            IPAM_NAD,
            json!({"cniVersion": "0.3.0", "type": "macvlan", "master": "eth1", "mode": "bridge",
                   "ipam": {"type": "kube-ovn", "server_socket": "/run/openvswitch/kube-ovn-daemon.sock",
                            "provider": IPAM_PROVIDER}}),
        ),
    ] {
        let nad: DynamicObject = obj(json!({
            "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"config": config.to_string()}
        }));
        nads.create(&PostParams::default(), &nad).await.unwrap();
    }
    let subnets: Api<Subnet> = Api::all(w.client.clone());
    for (name, cidr, gw, provider) in [
        ("attach-subnet", "172.17.0.0/16", "172.17.0.1", OVN_PROVIDER),
        ("mv-subnet", "172.18.0.0/16", "172.18.0.1", IPAM_PROVIDER),
    ] {
        subnets
            .create(
                &PostParams::default(),
                &obj(json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                    "metadata": {"name": name},
                    "spec": {"cidrBlock": cidr, "gateway": gw, "provider": provider, "protocol": "IPv4"}})),
            )
            .await
            .unwrap();
    }
}

async fn create_pod(w: &World, name: &str, annotations: Value) {
    let p: Pod = obj(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x"}]}}));
    w.pods().create(&PostParams::default(), &p).await.unwrap();
}

/// The pod's annotations once every NIC in `providers` is allocated (and the `.ovn` ones routed).
async fn allocated(w: &World, name: &str, providers: &[&str]) -> BTreeMap<String, String> {
    eventually(
        &format!("{name} allocated on {providers:?}"),
        LONG,
        || async {
            let a = w.pods().get(name).await.ok()?.metadata.annotations?;
            providers
                .iter()
                .all(|p| {
                    a.get(&format!("{p}.kubernetes.io/allocated"))
                        .map(String::as_str)
                        == Some("true")
                        && (!p.ends_with(".ovn")
                            || a.get(&format!("{p}.kubernetes.io/routed"))
                                .map(String::as_str)
                                == Some("true"))
                })
                .then_some(a)
        },
    )
    .await
}

async fn ip_cr(w: &World, name: &str) -> Option<Ip> {
    Api::<Ip>::all(w.client.clone())
        .get_opt(name)
        .await
        .unwrap()
}

/// Whether set column `c` of `r` holds `atom`.
fn has_member(r: &ovsdb::Row, c: &str, atom: &ovsdb::Atom) -> bool {
    r.get(c)
        .and_then(ovsdb::Datum::as_set)
        .is_some_and(|s| s.iter().any(|a| a == atom))
}

fn subset(a: &BTreeMap<String, String>, prefix: &str) -> BTreeMap<String, String> {
    a.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_get_upstreams_ports_ip_crs_and_annotations_and_release_them() {
    let mut w = World::new(1, false).await;
    attachment_world(&w).await;
    w.start_controller();
    create_pod(
        &w,
        "multi",
        json!({"k8s.v1.cni.cncf.io/networks": "default/attachnet, mv@net2"}),
    )
    .await;
    create_pod(
        &w,
        "fixed",
        json!({"k8s.v1.cni.cncf.io/networks":
            r#"[{"name":"attachnet","interface":"net1","ips":["172.17.0.100"],"mac":"00:00:00:aa:bb:cc"}]"#}),
    )
    .await;
    let a = allocated(&w, "multi", &["ovn", OVN_PROVIDER, IPAM_PROVIDER]).await;

    // The `.ovn` NIC: upstream's annotation family, port and IP CR.
    let ip = a[&format!("{OVN_PROVIDER}.kubernetes.io/ip_address")].clone();
    let mac = a[&format!("{OVN_PROVIDER}.kubernetes.io/mac_address")].clone();
    assert!(ip.starts_with("172.17."), "{ip}");
    let p = format!("{OVN_PROVIDER}.kubernetes.io");
    let want: BTreeMap<String, String> = [
        ("allocated", "true"),
        ("cidr", "172.17.0.0/16"),
        ("gateway", "172.17.0.1"),
        ("ip_address", ip.as_str()),
        ("logical_router", "ovn-cluster"),
        ("logical_switch", "attach-subnet"),
        ("mac_address", mac.as_str()),
        ("pod_nic_type", "veth-pair"),
        ("routed", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (format!("{p}/{k}"), v.to_string()))
    .collect();
    assert_eq!(subset(&a, &format!("{p}/")), want);
    let port = "multi.default.attachnet.default.ovn";
    let lsp = named(&w, "Logical_Switch_Port", port).expect("attachment port");
    assert_eq!(set_of(&lsp, "addresses"), [format!("{mac} {ip}")].into());
    assert_eq!(
        string_map(&lsp, "external_ids"),
        [
            ("ls", "attach-subnet"),
            ("pod", "default/multi"),
            ("vendor", "kube-ovn")
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>()
    );
    let switch = named(&w, "Logical_Switch", "attach-subnet").unwrap();
    let uuid = port_uuid(&w, port).unwrap();
    assert!(
        has_member(&switch, "ports", &uuid),
        "the port is on the attachment subnet's switch"
    );
    let node_pg = named(&w, "Port_Group", &objects::node_pg("node1")).unwrap();
    assert!(has_member(&node_pg, "ports", &uuid));
    let cr = ip_cr(&w, port).await.expect("attachment IP CR");
    assert_eq!(
        (
            cr.spec.pod_name.as_str(),
            cr.spec.namespace.as_str(),
            cr.spec.subnet.as_str(),
            cr.spec.ip_address.as_str(),
            cr.spec.mac_address.as_str(),
            cr.spec.node_name.as_str()
        ),
        (
            "multi",
            "default",
            "attach-subnet",
            ip.as_str(),
            mac.as_str(),
            "node1"
        )
    );
    assert!(
        ip_cr(&w, "multi.default").await.is_some(),
        "the default NIC's IP CR"
    );

    // The IPAM-only NIC: addresses, CIDR and gateway; no MAC, switch, NIC type or port.
    let q = format!("{IPAM_PROVIDER}.kubernetes.io");
    let mv_ip = a[&format!("{q}/ip_address")].clone();
    assert!(mv_ip.starts_with("172.18."), "{mv_ip}");
    let want: BTreeMap<String, String> = [
        ("allocated", "true"),
        ("cidr", "172.18.0.0/16"),
        ("gateway", "172.18.0.1"),
        ("ip_address", mv_ip.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("{q}/{k}"), v.to_string()))
    .collect();
    assert_eq!(subset(&a, &format!("{q}/")), want);
    assert!(named(&w, "Logical_Switch_Port", "multi.default.mv.default").is_none());
    let cr = ip_cr(&w, "multi.default.mv.default")
        .await
        .expect("IPAM-only IP CR");
    assert_eq!(
        (
            cr.spec.subnet.as_str(),
            cr.spec.ip_address.as_str(),
            cr.spec.mac_address.as_str()
        ),
        ("mv-subnet", mv_ip.as_str(), "")
    );

    // The JSON form's static address and MAC.
    let f = allocated(&w, "fixed", &[OVN_PROVIDER]).await;
    assert_eq!(f[&format!("{p}/ip_address")], "172.17.0.100");
    assert_eq!(f[&format!("{p}/mac_address")], "00:00:00:aa:bb:cc");
    let lsp = named(
        &w,
        "Logical_Switch_Port",
        "fixed.default.attachnet.default.ovn",
    )
    .unwrap();
    assert_eq!(
        set_of(&lsp, "addresses"),
        ["00:00:00:aa:bb:cc 172.17.0.100".to_string()].into()
    );

    // A restart re-allocates nothing and writes nothing.
    w.controller_settled().await;
    w.kill_controller();
    w.northd_settled().await;
    let mut changes = w.nb.subscribe();
    w.start_controller();
    eventually("both pods reconciled after the restart", LONG, || async {
        let pods = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"pod\"")
            .await?;
        (pods >= 2.0).then_some(())
    })
    .await;
    w.assert_wrote_nothing(&mut changes, "the restart").await;
    let errors = w
        .counter("kube_ovn_controller_reconcile_errors_total", "kind=\"pod\"")
        .await
        .unwrap_or(0.0);
    assert_eq!(errors, 0.0, "a pod's reconcile failed after the restart");
    assert_eq!(
        allocated(&w, "multi", &[OVN_PROVIDER, IPAM_PROVIDER]).await,
        a
    );

    // Deleting the pods releases every NIC: ports, IP CRs, addresses.
    for name in ["multi", "fixed"] {
        w.pods()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    eventually("every record of the pods gone", LONG, || async {
        for port in [
            "multi.default",
            "multi.default.attachnet.default.ovn",
            "fixed.default.attachnet.default.ovn",
        ] {
            if named(&w, "Logical_Switch_Port", port).is_some() {
                return None;
            }
        }
        for cr in [
            "multi.default",
            "multi.default.attachnet.default.ovn",
            "multi.default.mv.default",
            "fixed.default",
            "fixed.default.attachnet.default.ovn",
        ] {
            if ip_cr(&w, cr).await.is_some() {
                return None;
            }
        }
        Some(())
    })
    .await;
    eventually(
        "the attachment subnets count no address in use",
        LONG,
        || async {
            let subnets: Api<Subnet> = Api::all(w.client.clone());
            for s in ["attach-subnet", "mv-subnet"] {
                let v = serde_json::to_value(subnets.get(s).await.ok()?).ok()?;
                if v.pointer("/status/v4usingIPs").and_then(Value::as_f64) != Some(0.0) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    // The addresses are free again: a new pod asking for the same static address gets it.
    create_pod(
        &w,
        "again",
        json!({"k8s.v1.cni.cncf.io/networks":
            r#"[{"name":"attachnet","ips":["172.17.0.100"]}]"#}),
    )
    .await;
    let g = allocated(&w, "again", &[OVN_PROVIDER]).await;
    assert_eq!(g[&format!("{p}/ip_address")], "172.17.0.100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_come_and_go_the_default_network_is_replaced_and_bad_lists_warn() {
    let mut w = World::new(1, false).await;
    attachment_world(&w).await;
    w.start_controller();
    create_pod(
        &w,
        "hot",
        json!({"k8s.v1.cni.cncf.io/networks": "attachnet"}),
    )
    .await;
    allocated(&w, "hot", &[OVN_PROVIDER]).await;
    w.pods()
        .patch(
            "hot",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"annotations": {
                "k8s.v1.cni.cncf.io/networks": null}}})),
        )
        .await
        .unwrap();
    eventually(
        "the attachment's port, IP CR and annotations gone",
        LONG,
        || async {
            let a = w.pods().get("hot").await.ok()?.metadata.annotations?;
            let gone = named(
                &w,
                "Logical_Switch_Port",
                "hot.default.attachnet.default.ovn",
            )
            .is_none()
                && ip_cr(&w, "hot.default.attachnet.default.ovn")
                    .await
                    .is_none()
                && subset(&a, &format!("{OVN_PROVIDER}.kubernetes.io/")).is_empty();
            gone.then_some(())
        },
    )
    .await;
    assert!(named(&w, "Logical_Switch_Port", "hot.default").is_some());

    // An attachment as the default network replaces the `ovn` NIC: no default port, IP CR or
    // annotations, only the attachment's.
    create_pod(
        &w,
        "dn",
        json!({"v1.multus-cni.io/default-network": "default/attachnet"}),
    )
    .await;
    let a = allocated(&w, "dn", &[OVN_PROVIDER]).await;
    assert!(!a.contains_key("ovn.kubernetes.io/allocated"), "{a:?}");
    assert!(named(&w, "Logical_Switch_Port", "dn.default").is_none());
    assert!(named(
        &w,
        "Logical_Switch_Port",
        "dn.default.attachnet.default.ovn"
    )
    .is_some());
    assert!(ip_cr(&w, "dn.default").await.is_none());
    // Replacing a running pod's default network unplugs its `ovn` port (upstream's
    // syncKubeOvnNet), keeping that NIC's annotations.
    w.pods()
        .patch(
            "hot",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"annotations": {
                "v1.multus-cni.io/default-network": "attachnet"}}})),
        )
        .await
        .unwrap();
    eventually(
        "hot's default port replaced by the attachment's",
        LONG,
        || async {
            let done = named(&w, "Logical_Switch_Port", "hot.default").is_none()
                && ip_cr(&w, "hot.default").await.is_none()
                && named(
                    &w,
                    "Logical_Switch_Port",
                    "hot.default.attachnet.default.ovn",
                )
                .is_some();
            done.then_some(())
        },
    )
    .await;

    // A malformed selection list is a Warning on the pod, not a crash or a retry loop; the
    // pod gets nothing until it is fixed (upstream allocates none of its NICs either).
    create_pod(&w, "broken", json!({"k8s.v1.cni.cncf.io/networks": "[{"})).await;
    let events: Api<Event> = Api::namespaced(w.client.clone(), "default");
    eventually("broken told its selection is invalid", LONG, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.involved_object.name.as_deref() == Some("broken")
                    && e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("PodNetworkUpdateFailed")
                    && e.message
                        .as_deref()
                        .is_some_and(|m| m.contains("invalid network selection"))
            })
            .then_some(())
    })
    .await;
    w.pods()
        .patch(
            "broken",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"annotations": {
                "k8s.v1.cni.cncf.io/networks": "mv"}}})),
        )
        .await
        .unwrap();
    allocated(&w, "broken", &["ovn", IPAM_PROVIDER]).await;
    w.kill_controller();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_written_attachment_layout_is_adopted_without_writes() {
    let mut w = World::new(1, false).await;
    attachment_world(&w).await;
    w.start_controller();
    // The switches and the node's routing port groups, as any cluster has them.
    let pgs = [
        objects::node_pg("node1"),
        objects::subnet_node_pg("ovn-default", "node1"),
        objects::subnet_node_pg("attach-subnet", "node1"),
    ];
    eventually("the switches and port groups exist", LONG, || async {
        let ready = named(&w, "Logical_Switch", "attach-subnet").is_some()
            && pgs.iter().all(|pg| named(&w, "Port_Group", pg).is_some());
        ready.then_some(())
    })
    .await;
    w.controller_settled().await;
    w.kill_controller();

    // What upstream leaves for a pod with a kube-ovn attachment and a macvlan one.
    let primary = support::upstream_layout::pod_port(
        &w,
        "ovn-default",
        "default",
        "legacy",
        "00:00:00:11:11:11",
        "10.16.0.50",
        false,
    );
    let port = "legacy.default.attachnet.default.ovn";
    w.nbctl(&[
        "--",
        "--id=@p",
        "create",
        "logical_switch_port",
        &format!("name={port}"),
        "addresses=\"00:00:00:22:22:22 172.17.0.50\"",
        "external_ids:ls=attach-subnet",
        "external_ids:pod=default/legacy",
        "external_ids:vendor=kube-ovn",
        "--",
        "add",
        "logical_switch",
        "attach-subnet",
        "ports",
        "@p",
    ]);
    let attached = support::upstream_layout::uuid_of(&w, "logical_switch_port", port);
    support::upstream_layout::add_to_port_group(&w, &pgs[0], &[primary.clone(), attached.clone()]);
    support::upstream_layout::add_to_port_group(&w, &pgs[1], &[primary]);
    support::upstream_layout::add_to_port_group(&w, &pgs[2], &[attached]);
    let ips: Api<Ip> = Api::all(w.client.clone());
    for (name, subnet, ip, mac) in [
        (
            "legacy.default",
            "ovn-default",
            "10.16.0.50",
            "00:00:00:11:11:11",
        ),
        (port, "attach-subnet", "172.17.0.50", "00:00:00:22:22:22"),
        ("legacy.default.mv.default", "mv-subnet", "172.18.0.50", ""),
    ] {
        ips.create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "kubeovn.io/v1", "kind": "IP",
                "metadata": {"name": name, "labels": {
                    "ovn.kubernetes.io/subnet": subnet, "ovn.kubernetes.io/node-name": "node1",
                    subnet: "", "ovn.kubernetes.io/ip_reserved": "false"},
                    "finalizers": ["kubeovn.io/kube-ovn-controller"]},
                "spec": {"podName": "legacy", "namespace": "default", "subnet": subnet,
                    "nodeName": "node1", "ipAddress": ip, "v4IpAddress": ip, "v6IpAddress": "",
                    "macAddress": mac, "attachIps": [], "attachMacs": [], "attachSubnets": [],
                    "podType": ""}})),
        )
        .await
        .unwrap();
    }
    let annotations = json!({
        "k8s.v1.cni.cncf.io/networks": "attachnet,mv",
        "ovn.kubernetes.io/allocated": "true",
        "ovn.kubernetes.io/ip_address": "10.16.0.50",
        "ovn.kubernetes.io/mac_address": "00:00:00:11:11:11",
        "ovn.kubernetes.io/cidr": "10.16.0.0/16",
        "ovn.kubernetes.io/gateway": "10.16.0.1",
        "ovn.kubernetes.io/logical_switch": "ovn-default",
        "ovn.kubernetes.io/logical_router": "ovn-cluster",
        "ovn.kubernetes.io/pod_nic_type": "veth-pair",
        "ovn.kubernetes.io/routed": "true",
        "attachnet.default.ovn.kubernetes.io/allocated": "true",
        "attachnet.default.ovn.kubernetes.io/ip_address": "172.17.0.50",
        "attachnet.default.ovn.kubernetes.io/mac_address": "00:00:00:22:22:22",
        "attachnet.default.ovn.kubernetes.io/cidr": "172.17.0.0/16",
        "attachnet.default.ovn.kubernetes.io/gateway": "172.17.0.1",
        "attachnet.default.ovn.kubernetes.io/logical_switch": "attach-subnet",
        "attachnet.default.ovn.kubernetes.io/logical_router": "ovn-cluster",
        "attachnet.default.ovn.kubernetes.io/pod_nic_type": "veth-pair",
        "attachnet.default.ovn.kubernetes.io/routed": "true",
        "mv.default.kubernetes.io/allocated": "true",
        "mv.default.kubernetes.io/ip_address": "172.18.0.50",
        "mv.default.kubernetes.io/cidr": "172.18.0.0/16",
        "mv.default.kubernetes.io/gateway": "172.18.0.1",
    });
    create_pod(&w, "legacy", annotations.clone()).await;
    let before = w.pods().get("legacy").await.unwrap();
    let mut cr_versions = Vec::new();
    for name in ["legacy.default", port, "legacy.default.mv.default"] {
        let cr = ip_cr(&w, name).await.unwrap();
        cr_versions.push((name, cr.metadata.resource_version));
    }

    w.northd_settled().await;
    let mut changes = w.nb.subscribe();
    w.start_controller();
    eventually("the pod reconciled", LONG, || async {
        let pods = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"pod\"")
            .await?;
        (pods >= 1.0).then_some(())
    })
    .await;
    w.assert_wrote_nothing(&mut changes, "adopting upstream's attachment layout")
        .await;
    let errors = w
        .counter("kube_ovn_controller_reconcile_errors_total", "kind=\"pod\"")
        .await
        .unwrap_or(0.0);
    assert_eq!(errors, 0.0, "the pod's reconcile failed");
    // IPAM holds the adopted addresses: each attachment subnet counts one in use.
    eventually("the adopted addresses counted", LONG, || async {
        let subnets: Api<Subnet> = Api::all(w.client.clone());
        for s in ["attach-subnet", "mv-subnet"] {
            let v = serde_json::to_value(subnets.get(s).await.ok()?).ok()?;
            if v.pointer("/status/v4usingIPs").and_then(Value::as_f64) != Some(1.0) {
                return None;
            }
        }
        Some(())
    })
    .await;
    let after = w.pods().get("legacy").await.unwrap();
    assert_eq!(
        after.metadata.annotations, before.metadata.annotations,
        "the pod's annotations were already upstream's"
    );
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "the pod was not patched"
    );
    for (name, version) in &cr_versions {
        let cr = ip_cr(&w, name).await.unwrap();
        assert_eq!(
            &cr.metadata.resource_version, version,
            "IP CR {name} was rewritten"
        );
    }
    let lsp = named(&w, "Logical_Switch_Port", port).unwrap();
    assert_eq!(text(&lsp, "name"), port);
    // A new pod on the attachment subnet does not get the adopted addresses.
    create_pod(
        &w,
        "newcomer",
        json!({"k8s.v1.cni.cncf.io/networks": "attachnet,mv"}),
    )
    .await;
    let n = allocated(&w, "newcomer", &[OVN_PROVIDER, IPAM_PROVIDER]).await;
    assert_ne!(
        n[&format!("{OVN_PROVIDER}.kubernetes.io/ip_address")],
        "172.17.0.50"
    );
    assert_ne!(
        n[&format!("{IPAM_PROVIDER}.kubernetes.io/ip_address")],
        "172.18.0.50"
    );
}
