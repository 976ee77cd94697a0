//! Multi-NIC pods end to end (issue 15): the kubelet stand-in's Multus calls kube-ovn for
//! NetworkAttachmentDefinitions, kube-ovn-controller allocates each attachment from the Subnet
//! whose provider the NAD names, and the daemon wires it.
//!
//! - A `.ovn` attachment (`type: kube-ovn`, provider `attachnet.default.ovn`): pods on both
//!   nodes get `net1` on the Subnet `attach-ovn` with the address the controller wrote under
//!   `attachnet.default.ovn.kubernetes.io/ip_address`, and reach each other through `net1`
//!   across the Geneve tunnel.
//! - kube-ovn as macvlan's IPAM (`ipam.type: kube-ovn`, provider `macvlan-ipam.default`): the pod
//!   gets its `net1` address from the Subnet `attach-ext` (the provider network's CIDR, outside
//!   its excluded range) and reaches the external host through the node's `eth1`.
//! - A controller restart re-allocates nothing (no IP CR is written, no annotation changes), and
//!   deleting the pods releases every address and port.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube_ovn_sandbox::kubeovn::{self, KubeOvnBuild};
use kube_ovn_sandbox::multus::{self, NETWORKS_ANNOTATION};
use kube_ovn_sandbox::{matrix, probe, sys, Sandbox, SandboxConfig};
use serde_json::json;

const POD_READY: Duration = Duration::from_secs(90);
const OVN_PROVIDER: &str = "attachnet.default.ovn";
const IPAM_PROVIDER: &str = "macvlan-ipam.default";

fn kubeovn_api(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "kubeovn.io".into(),
        version: "v1".into(),
        api_version: "kubeovn.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// The IPv4 address (without prefix) of `dev` in `netns`.
fn address_of(netns: &str, dev: &str) -> Option<String> {
    let out = sys::run_command(sys::in_netns(netns, "ip").args(["-4", "-o", "addr", "show", dev]))
        .ok()?;
    let word = out.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
    Some(word.split('/').next()?.to_string())
}

fn annotation(pod: &Pod, key: &str) -> Option<String> {
    pod.metadata.annotations.as_ref()?.get(key).cloned()
}

/// IP CR name → (resourceVersion, spec): what a restart must leave untouched.
async fn ip_crs(ips: &Api<DynamicObject>) -> BTreeMap<String, (String, String)> {
    ips.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|ip| {
            (
                ip.metadata.name.clone().unwrap_or_default(),
                (
                    ip.metadata.resource_version.clone().unwrap_or_default(),
                    ip.data["spec"].to_string(),
                ),
            )
        })
        .collect()
}

async fn create_pod(pods: &Api<Pod>, name: &str, node: &str, networks: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": {NETWORKS_ANNOTATION: networks}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
}

async fn subnet_ready(subnets: &Api<DynamicObject>, name: &str) {
    probe::until(Duration::from_secs(60), "subnet Ready", || async {
        let s = subnets.get(name).await.map_err(|e| e.to_string())?;
        let ready = s.data["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if ready {
            Ok(())
        } else {
            Err(format!("{name}: {}", s.data["status"]))
        }
    })
    .await
    .unwrap();
}

/// The `.ovn` attachment every test here uses: Subnet `attach-ovn` (172.30.0.0/24, provider
/// `attachnet.default.ovn`), Ready, and the NAD `default/attachnet` naming kube-ovn.
async fn attach_ovn(client: &kube::Client, subnets: &Api<DynamicObject>) {
    let subnet: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "attach-ovn"},
        "spec": {"cidrBlock": "172.30.0.0/24", "provider": OVN_PROVIDER, "protocol": "IPv4"},
    }))
    .unwrap();
    subnets
        .create(&PostParams::default(), &subnet)
        .await
        .unwrap();
    subnet_ready(subnets, "attach-ovn").await;
    multus::create_nad(
        client.clone(),
        "default",
        "attachnet",
        &json!({"cniVersion": "0.3.1", "type": "kube-ovn", "provider": OVN_PROVIDER}),
    )
    .await
    .unwrap();
}

/// The names of the NB logical switch ports on switch `ls`.
fn switch_ports(nb: &str, ls: &str) -> Vec<String> {
    let switch = matrix::nb_rows(nb, "Logical_Switch")
        .unwrap()
        .into_iter()
        .find(|r| r["name"] == ls)
        .unwrap_or_else(|| panic!("no switch {ls}"));
    let uuids: Vec<String> = match &switch["ports"] {
        serde_json::Value::Array(v) if v.first() == Some(&json!("set")) => v[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u[1].as_str().unwrap().to_string())
            .collect(),
        serde_json::Value::Array(v) if v.first() == Some(&json!("uuid")) => {
            vec![v[1].as_str().unwrap().to_string()]
        }
        _ => Vec::new(),
    };
    matrix::nb_rows(nb, "Logical_Switch_Port")
        .unwrap()
        .into_iter()
        .filter(|p| {
            p["_uuid"][1]
                .as_str()
                .is_some_and(|u| uuids.iter().any(|x| x == u))
        })
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_are_allocated_by_kube_ovn_and_carry_packets() {
    assert!(
        std::path::Path::new(kube_ovn_sandbox::node::SYSTEM_CNI_DIR)
            .join("macvlan")
            .exists(),
        "Debian's containernetworking-plugins are missing (test/sandbox/install-deps.sh installs them)"
    );
    let build = KubeOvnBuild::of_test_binary().expect("kube-ovn build");
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(build.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let external = state.external.clone().expect("external host");
    let client = sandbox.client();

    let subnets: Api<DynamicObject> =
        Api::all_with(client.clone(), &kubeovn_api("Subnet", "subnets"));
    let ips: Api<DynamicObject> = Api::all_with(client.clone(), &kubeovn_api("IP", "ips"));
    for (name, spec) in [
        (
            "attach-ovn",
            json!({"cidrBlock": "172.30.0.0/24", "provider": OVN_PROVIDER, "protocol": "IPv4"}),
        ),
        (
            "attach-ext",
            // The provider network: the nodes' eth1 and the external host hold the low
            // addresses, so attachments take theirs from .200 up.
            json!({"cidrBlock": external.cidr, "gateway": external.ip.to_string(),
                   "provider": IPAM_PROVIDER, "protocol": "IPv4",
                   "excludeIps": [format!("{}..{}", octet(&external.cidr, 1), octet(&external.cidr, 199))]}),
        ),
    ] {
        let subnet: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": name},
            "spec": spec,
        }))
        .unwrap();
        subnets
            .create(&PostParams::default(), &subnet)
            .await
            .unwrap();
        subnet_ready(&subnets, name).await;
    }
    multus::create_nad(
        client.clone(),
        "default",
        "attachnet",
        &json!({"cniVersion": "0.3.1", "type": "kube-ovn", "provider": OVN_PROVIDER}),
    )
    .await
    .unwrap();
    multus::create_nad(
        client.clone(),
        "default",
        "macvlan-ipam",
        &json!({"cniVersion": "0.3.1", "type": "macvlan", "master": "eth1", "mode": "bridge",
                "ipam": {"type": "kube-ovn", "provider": IPAM_PROVIDER}}),
    )
    .await
    .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create_pod(&pods, "a", "node1", "attachnet").await;
    create_pod(&pods, "b", "node2", "attachnet").await;
    create_pod(&pods, "m", "node1", "macvlan-ipam").await;
    for p in ["a", "b", "m"] {
        probe::running_pod_ip(&pods, p, POD_READY).await.unwrap();
    }
    let ns = |p: &str| state.pod_netns("default", p);

    // The second OVN NIC: the controller's address is on net1, and the pods talk through it.
    let ovn_key = format!("{OVN_PROVIDER}.kubernetes.io/ip_address");
    let mut net1 = BTreeMap::new();
    for p in ["a", "b"] {
        let pod = pods.get(p).await.unwrap();
        let ip = annotation(&pod, &ovn_key).unwrap_or_else(|| panic!("{p}: no {ovn_key}"));
        assert!(ip.starts_with("172.30.0."), "{p}: {ip}");
        assert_eq!(
            annotation(
                &pod,
                &format!("{OVN_PROVIDER}.kubernetes.io/logical_switch")
            )
            .as_deref(),
            Some("attach-ovn")
        );
        assert_eq!(
            address_of(&ns(p), "net1").as_deref(),
            Some(ip.as_str()),
            "{p} net1"
        );
        net1.insert(p, ip);
    }
    let route =
        sys::run_command(sys::in_netns(&ns("a"), "ip").args(["-4", "route", "get", &net1["b"]]))
            .unwrap();
    assert!(
        route.contains("dev net1"),
        "a → b's net1 leaves through net1: {route}"
    );
    probe::reach(&state, &ns("a"), &net1["b"]).expect("a → b through net1, across nodes");
    probe::reach(&state, &ns("b"), &net1["a"]).expect("b → a through net1, across nodes");
    let ports = switch_ports(&state.central.nb, "attach-ovn");
    for p in ["a", "b"] {
        let lsp = format!("{p}.default.{OVN_PROVIDER}");
        assert!(ports.contains(&lsp), "{lsp} not on attach-ovn: {ports:?}");
    }

    // kube-ovn as macvlan's IPAM: the address comes from attach-ext, outside its excluded range.
    let m = pods.get("m").await.unwrap();
    let ipam_key = format!("{IPAM_PROVIDER}.kubernetes.io/ip_address");
    let m_ip = annotation(&m, &ipam_key).unwrap_or_else(|| panic!("m: no {ipam_key}"));
    let last: u8 = m_ip.parse::<Ipv4Addr>().unwrap().octets()[3];
    assert!(
        last >= 200,
        "m's address {m_ip} is outside the excluded range"
    );
    assert_eq!(address_of(&ns("m"), "net1").as_deref(), Some(m_ip.as_str()));
    probe::reach(&state, &ns("m"), &external.ip.to_string()).expect("m → external through net1");
    probe::reach(&state, &external.netns, &m_ip).expect("external → m's net1");
    let switches = matrix::nb_rows(&state.central.nb, "Logical_Switch").unwrap();
    assert!(
        !switches.iter().any(|r| r["name"] == "attach-ext"),
        "a Subnet of an IPAM-only provider has no logical switch (upstream's rule)"
    );
    let status = multus::network_status_of(&m);
    assert_eq!(status[1]["interface"], "net1", "{status:?}");
    assert_eq!(status[1]["ips"], json!([m_ip]), "{status:?}");

    // One IP CR per NIC, upstream's names.
    let before = ip_crs(&ips).await;
    for name in [
        "a.default".to_string(),
        "b.default".to_string(),
        "m.default".to_string(),
        format!("a.default.{OVN_PROVIDER}"),
        format!("b.default.{OVN_PROVIDER}"),
        format!("m.default.{IPAM_PROVIDER}"),
    ] {
        assert!(
            before.contains_key(&name),
            "no IP CR {name}: {:?}",
            before.keys()
        );
    }
    let mut annotations_before = Vec::new();
    for p in ["a", "b", "m"] {
        annotations_before.push(pods.get(p).await.unwrap().metadata.annotations);
    }

    // A controller restart re-allocates nothing: no IP CR written, no annotation changed, and
    // the new controller serves (a new attachment pod gets its NICs).
    let controller_pid = state.run_dir.join("controller.pid");
    sys::kill_pidfile(&controller_pid).expect("controller killed");
    let mut restarted = kubeovn::start_controller(
        &build,
        &state.run_dir,
        &state.controller_kubeconfig(),
        &state.central.nb,
    )
    .expect("controller restarted");
    create_pod(&pods, "c", "node2", "attachnet,macvlan-ipam").await;
    probe::running_pod_ip(&pods, "c", POD_READY).await.unwrap();
    let c = pods.get("c").await.unwrap();
    let c_net1 = annotation(&c, &ovn_key).expect("c's second OVN NIC");
    assert!(annotation(&c, &ipam_key).is_some(), "c's macvlan NIC");
    assert!(
        !net1.values().any(|ip| *ip == c_net1),
        "c got a held address"
    );
    probe::reach(&state, &ns("c"), &net1["a"]).expect("c → a through net1");
    let after = ip_crs(&ips).await;
    for (name, v) in &before {
        assert_eq!(
            after.get(name),
            Some(v),
            "IP CR {name} was written by the restart"
        );
    }
    let mut annotations_after = Vec::new();
    for p in ["a", "b", "m"] {
        annotations_after.push(pods.get(p).await.unwrap().metadata.annotations);
    }
    assert_eq!(
        annotations_before, annotations_after,
        "pod annotations changed"
    );

    // Deleting the pods releases every address, IP CR and port.
    for p in ["a", "b", "m", "c"] {
        pods.delete(p, &DeleteParams::default()).await.unwrap();
    }
    probe::until(POD_READY, "attachments released", || async {
        let left: Vec<String> = ips
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .into_iter()
            .filter_map(|ip| ip.metadata.name)
            .filter(|n| n.contains(".default"))
            .collect();
        let ports = switch_ports(&state.central.nb, "attach-ovn");
        let mut using = Vec::new();
        for s in ["attach-ovn", "attach-ext"] {
            let sub = subnets.get(s).await.map_err(|e| e.to_string())?;
            using.push(sub.data["status"]["v4usingIPs"].as_f64().unwrap_or(-1.0));
        }
        if left.is_empty() && ports.iter().all(|p| !p.contains(".default.")) && using == [0.0, 0.0]
        {
            Ok(())
        } else {
            Err(format!(
                "IP CRs {left:?}, ports {ports:?}, subnets using {using:?}"
            ))
        }
    })
    .await
    .unwrap();

    sys::stop_pid(restarted.id() as i32, Duration::from_secs(5));
    let _ = restarted.kill();
    let _ = restarted.wait();
    sandbox.down().await.expect("sandbox down");
}

/// The address with last octet `last` in a `/24` CIDR.
fn octet(cidr: &str, last: u8) -> String {
    let net: Ipv4Addr = cidr.split('/').next().unwrap().parse().unwrap();
    let [a, b, c, _] = net.octets();
    Ipv4Addr::new(a, b, c, last).to_string()
}

/// A StatefulSet's pod keeps its attachment's address across a delete (its controller brings
/// it back under the same name), as it keeps its primary one; scaling down releases both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_pods_keep_their_attachment_addresses() {
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(KubeOvnBuild::of_test_binary().expect("kube-ovn build"));
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let client = sandbox.client();
    let subnets: Api<DynamicObject> =
        Api::all_with(client.clone(), &kubeovn_api("Subnet", "subnets"));
    let ips: Api<DynamicObject> = Api::all_with(client.clone(), &kubeovn_api("IP", "ips"));
    attach_ovn(&client, &subnets).await;
    let sts: k8s_openapi::api::apps::v1::StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {
            "replicas": 1, "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"},
                             "annotations": {NETWORKS_ANNOTATION: "attachnet"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }))
    .unwrap();
    let sets: Api<k8s_openapi::api::apps::v1::StatefulSet> =
        Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &sts).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let primary = probe::running_pod_ip(&pods, "db-0", POD_READY)
        .await
        .unwrap();
    let ovn_key = format!("{OVN_PROVIDER}.kubernetes.io/ip_address");
    let first = pods.get("db-0").await.unwrap();
    let net1 = annotation(&first, &ovn_key).expect("db-0's attachment address");
    let uid = first.metadata.uid.clone();

    pods.delete("db-0", &DeleteParams::default()).await.unwrap();
    let again = probe::until(POD_READY, "db-0 back as a new pod", || async {
        let p = pods.get("db-0").await.map_err(|e| e.to_string())?;
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if p.metadata.uid != uid && running {
            Ok(p)
        } else {
            Err("not yet".to_string())
        }
    })
    .await
    .unwrap();
    assert_eq!(annotation(&again, &ovn_key).as_deref(), Some(net1.as_str()));
    assert_eq!(
        again.status.and_then(|s| s.pod_ip).as_deref(),
        Some(primary.as_str())
    );
    assert_eq!(
        address_of(&state.pod_netns("default", "db-0"), "net1").as_deref(),
        Some(net1.as_str())
    );

    // Scaled to zero, the StatefulSet no longer keeps them: both NICs are released.
    sets.patch(
        "db",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"replicas": 0}})),
    )
    .await
    .unwrap();
    probe::until(POD_READY, "db-0's addresses released", || async {
        let left: Vec<String> = ips
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .into_iter()
            .filter_map(|ip| ip.metadata.name)
            .filter(|n| n.starts_with("db-0."))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("IP CRs left: {left:?}"))
        }
    })
    .await
    .unwrap();
    sandbox.down().await.expect("sandbox down");
}

/// Whether `to` stops answering pings from `netns` within `within` (the policy reached the
/// data path), and stays silent for three more tries.
fn blocked_within(netns: &str, to: &str, within: Duration) -> bool {
    let once = || {
        sys::in_netns(netns, "ping")
            .args(["-c1", "-W1", to])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    sys::wait_for(within, || !once()) && (0..3).all(|_| !once())
}

/// `ovn.kubernetes.io/network_policy_for` (upstream v1.16) scopes a NetworkPolicy to some of a
/// pod's NICs: a deny-all-ingress policy for `default/attachnet` blocks only the second OVN
/// NIC, for `ovn` only the default one, without the annotation both (upstream applies a policy
/// to every NIC), and deleting it opens both again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_policy_for_scopes_a_policy_to_a_nic() {
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(KubeOvnBuild::of_test_binary().expect("kube-ovn build"));
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let client = sandbox.client();
    let subnets: Api<DynamicObject> =
        Api::all_with(client.clone(), &kubeovn_api("Subnet", "subnets"));
    attach_ovn(&client, &subnets).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let srv: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "srv", "labels": {"app": "srv"},
                     "annotations": {NETWORKS_ANNOTATION: "attachnet"}},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &srv).await.unwrap();
    create_pod(&pods, "cli", "node2", "attachnet").await;
    let eth0 = probe::running_pod_ip(&pods, "srv", POD_READY)
        .await
        .unwrap();
    probe::running_pod_ip(&pods, "cli", POD_READY)
        .await
        .unwrap();
    let net1 = annotation(
        &pods.get("srv").await.unwrap(),
        &format!("{OVN_PROVIDER}.kubernetes.io/ip_address"),
    )
    .expect("srv's attachment address");
    let cli = state.pod_netns("default", "cli");
    probe::reach(&state, &cli, &eth0).expect("cli → srv eth0 before any policy");
    probe::reach(&state, &cli, &net1).expect("cli → srv net1 before any policy");

    let nps: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
        Api::namespaced(client.clone(), "default");
    let np: k8s_openapi::api::networking::v1::NetworkPolicy = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny-srv",
                     "annotations": {"ovn.kubernetes.io/network_policy_for": "default/attachnet"}},
        "spec": {"podSelector": {"matchLabels": {"app": "srv"}}, "policyTypes": ["Ingress"]},
    }))
    .unwrap();
    nps.create(&PostParams::default(), &np).await.unwrap();
    let within = Duration::from_secs(30);
    assert!(
        blocked_within(&cli, &net1, within),
        "net1 still open under a policy for attachnet"
    );
    probe::reach(&state, &cli, &eth0).expect("eth0 stays open under a policy for attachnet");

    let annotate = |value: serde_json::Value| {
        let nps = nps.clone();
        async move {
            nps.patch(
                "deny-srv",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"metadata": {"annotations": {
                    "ovn.kubernetes.io/network_policy_for": value}}})),
            )
            .await
            .unwrap();
        }
    };
    annotate(json!("ovn")).await;
    assert!(
        blocked_within(&cli, &eth0, within),
        "eth0 still open under a policy for ovn"
    );
    probe::reach(&state, &cli, &net1).expect("net1 open again under a policy for ovn");

    annotate(serde_json::Value::Null).await;
    assert!(
        blocked_within(&cli, &net1, within),
        "net1 open under an unscoped policy"
    );
    assert!(
        blocked_within(&cli, &eth0, within),
        "eth0 open under an unscoped policy"
    );

    nps.delete("deny-srv", &DeleteParams::default())
        .await
        .unwrap();
    probe::reach(&state, &cli, &eth0).expect("eth0 open once the policy is gone");
    probe::reach(&state, &cli, &net1).expect("net1 open once the policy is gone");
    sandbox.down().await.expect("sandbox down");
}
