//! The kubelet stand-in's Multus: pods selecting NetworkAttachmentDefinitions get, after their
//! kube-ovn `eth0`, a macvlan NIC on their node's `eth1` (the provider network) from Debian's
//! plugins — addresses from `host-local` (comma form) or `static` with the `ips` request (JSON
//! form, own interface name, `default-route` moving the default route there) — reach the
//! external host and each other across nodes through it, carry Multus's `network-status`, and
//! lose the NIC (and its lease) when deleted. A pod with two networks gets `net1` and `net2` in
//! order (the second a bridge conflist); a pod whose `v1.multus-cni.io/default-network` names a
//! NAD gets its `eth0` from it; a pod selecting a missing NAD does not start.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::multus::{self, NETWORKS_ANNOTATION};
use kube_ovn_sandbox::{leftovers, probe, sys, Sandbox, SandboxConfig};
use serde_json::json;

const POD_READY: Duration = Duration::from_secs(60);

fn link_exists(netns: &str, dev: &str) -> bool {
    sys::in_netns(netns, "ip")
        .args(["link", "show", dev])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn macvlan_attachments_reach_the_external_host() {
    assert!(
        std::path::Path::new(kube_ovn_sandbox::node::SYSTEM_CNI_DIR)
            .join("macvlan")
            .exists(),
        "Debian's containernetworking-plugins are missing (test/sandbox/install-deps.sh installs them)"
    );
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(KubeOvnBuild::of_test_binary().expect("kube-ovn build"));
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let external = state.external.clone().expect("external host");
    multus::create_nad(
        sandbox.client(),
        "default",
        "macvlan-hl",
        &json!({
            "cniVersion": "0.3.1", "type": "macvlan", "master": "eth1", "mode": "bridge",
            "ipam": {
                "type": "host-local", "subnet": external.cidr,
                "rangeStart": "172.19.0.150", "rangeEnd": "172.19.0.159",
            },
        }),
    )
    .await
    .unwrap();
    multus::create_nad(
        sandbox.client(),
        "default",
        "macvlan-static",
        &json!({
            "cniVersion": "0.3.1", "name": "static-net",
            "plugins": [{
                "type": "macvlan", "master": "eth1", "mode": "bridge",
                "capabilities": {"ips": true},
                "ipam": {"type": "static"},
            }],
        }),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), "default");
    for (name, node, networks) in [
        ("hl", "node1", json!("macvlan-hl")),
        (
            "st",
            "node2",
            json!(
                json!([{"name": "macvlan-static", "interface": "ext1", "ips": ["172.19.0.200/24"],
                          "default-route": ["172.19.0.100"]}])
                .to_string()
            ),
        ),
    ] {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": {NETWORKS_ANNOTATION: networks}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let hl_ip = probe::running_pod_ip(&pods, "hl", POD_READY).await.unwrap();
    let st_ip = probe::running_pod_ip(&pods, "st", POD_READY).await.unwrap();
    assert!(hl_ip.starts_with("10.16."), "eth0 from kube-ovn: {hl_ip}");
    let (hl_ns, st_ns) = (
        state.pod_netns("default", "hl"),
        state.pod_netns("default", "st"),
    );
    assert!(link_exists(&hl_ns, "net1"));
    assert!(link_exists(&st_ns, "ext1"));

    // network-status: kube-ovn's eth0 as the default network, then the attachment.
    let status_of = multus::network_status_of;
    let hl = pods.get("hl").await.unwrap();
    let status = status_of(&hl);
    assert_eq!(status.len(), 2, "{status:?}");
    assert_eq!(status[0]["name"], "kube-ovn");
    assert_eq!(status[0]["interface"], "eth0");
    assert_eq!(status[0]["default"], true);
    assert_eq!(status[0]["ips"], json!([hl_ip]));
    assert_eq!(status[1]["name"], "default/macvlan-hl");
    assert_eq!(status[1]["interface"], "net1");
    assert!(status[1].get("default").is_none());
    let hl_macvlan = status[1]["ips"][0].as_str().unwrap().to_string();
    assert!(hl_macvlan.starts_with("172.19.0.15"), "{hl_macvlan}");
    let mac =
        sys::run_command(sys::in_netns(&hl_ns, "cat").arg("/sys/class/net/net1/address")).unwrap();
    assert_eq!(status[1]["mac"], mac.trim());
    let st_status = status_of(&pods.get("st").await.unwrap());
    assert_eq!(st_status[1]["name"], "default/macvlan-static");
    assert_eq!(st_status[1]["interface"], "ext1");
    assert_eq!(st_status[1]["ips"], json!(["172.19.0.200"]));
    // default-route: st's default route now leaves through ext1 to the external host.
    let routes =
        sys::run_command(sys::in_netns(&st_ns, "ip").args(["-4", "route", "show", "default"]))
            .unwrap();
    assert_eq!(
        routes.trim(),
        "default via 172.19.0.100 dev ext1",
        "{routes}"
    );

    // Real packets over the provider network: pod → external host, external → pod, pod → pod
    // across nodes, all through macvlan on the nodes' eth1.
    let ext_ip = external.ip.to_string();
    probe::reach(&state, &hl_ns, &ext_ip).expect("hl net1 → external");
    probe::reach(&state, &st_ns, &ext_ip).expect("st ext1 → external");
    probe::reach(&state, &external.netns, &hl_macvlan).expect("external → hl net1");
    probe::reach(&state, &hl_ns, "172.19.0.200").expect("hl → st over macvlan, across nodes");
    // And eth0 still works through kube-ovn.
    probe::reach(&state, &hl_ns, &st_ip).expect("hl → st over kube-ovn");
    let out = sys::run_command(
        state
            .external_command("ip")
            .args(["-4", "addr", "show", "eth0"]),
    )
    .unwrap();
    assert!(out.contains(&format!("{ext_ip}/24")), "{out}");

    // Deleting the pod calls DEL for the attachment: host-local's lease goes, the NIC with the
    // pod's namespace.
    // host-local without a dataDir keeps its leases in the node's own directory.
    let node1 = state.node("node1").unwrap();
    let lease = node1.dir.join("cni/networks/macvlan-hl").join(&hl_macvlan);
    assert!(lease.exists(), "{} missing", lease.display());
    pods.delete("hl", &DeleteParams::default()).await.unwrap();
    probe::until(POD_READY, "hl's attachment deleted", || async {
        let gone = !lease.exists() && !Path::new(&sys::netns_path(&hl_ns)).exists();
        if gone {
            Ok(())
        } else {
            Err(format!("lease exists: {}", lease.exists()))
        }
    })
    .await
    .unwrap();

    // Two networks, one a conflist (bridge + host-local): net1, net2 in order; DEL releases
    // both leases.
    multus::create_nad(
        sandbox.client(),
        "default",
        "br-attach",
        &json!({
            "cniVersion": "1.0.0", "name": "br-attach",
            "plugins": [{
                "type": "bridge", "bridge": "br-attach", "isGateway": true,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": "192.168.200.0/24"}]]},
            }],
        }),
    )
    .await
    .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "two", "annotations": {
            NETWORKS_ANNOTATION: r#"[{"name":"macvlan-hl"},{"name":"br-attach","namespace":"default"}]"#,
        }},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    probe::running_pod_ip(&pods, "two", POD_READY)
        .await
        .unwrap();
    let two = status_of(&pods.get("two").await.unwrap());
    let names: Vec<_> = two
        .iter()
        .map(|s| (s["name"].clone(), s["interface"].clone()))
        .collect();
    assert_eq!(
        names,
        [
            (json!("kube-ovn"), json!("eth0")),
            (json!("default/macvlan-hl"), json!("net1")),
            (json!("default/br-attach"), json!("net2")),
        ]
    );
    let two_ns = state.pod_netns("default", "two");
    probe::reach(&state, &two_ns, &ext_ip).expect("two net1 → external");
    probe::reach(&state, &two_ns, "192.168.200.1").expect("two net2 → its node's bridge");
    let leases = [
        node1
            .dir
            .join("cni/networks/macvlan-hl")
            .join(two[1]["ips"][0].as_str().unwrap()),
        node1
            .dir
            .join("cni/networks/br-attach")
            .join(two[2]["ips"][0].as_str().unwrap()),
    ];
    assert!(leases.iter().all(|l| l.exists()), "{leases:?}");
    pods.delete("two", &DeleteParams::default()).await.unwrap();
    probe::until(POD_READY, "two's leases released", || async {
        let left: Vec<_> = leases.iter().filter(|l| l.exists()).collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await
    .unwrap();

    // v1.multus-cni.io/default-network: eth0 itself comes from a NAD instead of kube-ovn.
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "dn", "annotations": {multus::DEFAULT_NETWORK_ANNOTATION: "default/macvlan-hl"}},
        "spec": {"nodeName": "node2", "containers": [{"name": "c", "image": "x"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let dn_ip = probe::running_pod_ip(&pods, "dn", POD_READY).await.unwrap();
    assert!(
        dn_ip.starts_with("172.19.0.15"),
        "eth0 from macvlan-hl: {dn_ip}"
    );
    let dn_status = status_of(&pods.get("dn").await.unwrap());
    assert_eq!(dn_status.len(), 1, "{dn_status:?}");
    assert_eq!(dn_status[0]["name"], "default/macvlan-hl");
    assert_eq!(dn_status[0]["interface"], "eth0");
    assert_eq!(dn_status[0]["default"], true);
    let dn_ns = state.pod_netns("default", "dn");
    probe::reach(&state, &dn_ns, &ext_ip).expect("dn eth0 (macvlan) → external");
    let node2 = state.node("node2").unwrap();
    assert!(node2
        .dir
        .join("cni/networks/macvlan-hl")
        .join(&dn_ip)
        .exists());

    // A pod selecting a network that does not exist does not start; an Event says why.
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "nonet", "annotations": {NETWORKS_ANNOTATION: "missing"}},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(sandbox.client(), "default");
    probe::until(POD_READY, "an Event for nonet", || async {
        let list = events
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .iter()
            .find(|e| {
                e.involved_object.name.as_deref() == Some("nonet")
                    && e.message
                        .as_deref()
                        .is_some_and(|m| m.contains("network-attachment-definition"))
            })
            .map(|_| ())
            .ok_or_else(|| format!("{} events", list.items.len()))
    })
    .await
    .unwrap();
    assert!(!Path::new(&sys::netns_path(&state.pod_netns("default", "nonet"))).exists());

    let (run_dir, prefix) = (state.run_dir.clone(), state.prefix.clone());
    sandbox.down().await.unwrap();
    assert!(leftovers(&run_dir, &prefix).is_empty());
}
