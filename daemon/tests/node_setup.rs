//! Node setup with the whole stack in two sandbox nodes (controller, daemons, CNI): the
//! daemon's `ovn0` joins the node to the overlay (node ↔ pod pings both ways), the node is
//! annotated with its chassis and reports `NetworkUnavailable=False`, and pods reach the
//! external host masqueraded behind the node when their subnet is natOutgoing, with their own
//! address when it is not.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube_ovn_sandbox::apiproxy::bind_in_netns;
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::node::{external_netns, EXTERNAL_IP};
use kube_ovn_sandbox::{leftovers, probe, sys, Sandbox, SandboxConfig};
use serde_json::json;

/// Polls the API until `check` holds (the API has no watch this test could block on cheaply).
async fn eventually<T>(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Connects from `netns` to the external listener until one connection lands, and returns the
/// source address the external host saw.
/// How long a new pod may take to be wired and Running.
const POD_READY: Duration = Duration::from_secs(90);

fn seen_from(netns: &str, port: u16, accepted: &mpsc::Receiver<IpAddr>) -> IpAddr {
    let target = EXTERNAL_IP.to_string();
    let connected = sys::wait_for(Duration::from_secs(15), || {
        sys::in_netns(netns, "nc")
            .args(["-z", "-w", "2", &target, &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(connected, "TCP from {netns} to {target}:{port} failed");
    accepted
        .recv_timeout(Duration::from_secs(10))
        .expect("the listener saw no connection")
}

/// A TCP listener on the external host recording each peer's address.
fn external_listener(prefix: &str, port: u16) -> mpsc::Receiver<IpAddr> {
    let addr = SocketAddr::new(EXTERNAL_IP.into(), port);
    let listener = bind_in_netns(&sys::netns_path(&external_netns(prefix)), addr).unwrap();
    listener.set_nonblocking(false).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let peer = conn.peer_addr().map(|a| a.ip());
            let _ = conn.read(&mut [0u8; 16]);
            if peer.is_ok_and(|p| tx.send(p).is_ok()) {
                continue;
            }
            return;
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ovn0_routes_nat_chassis_and_condition() {
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(KubeOvnBuild::of_test_binary().expect("kube-ovn build"));
    let (run_dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let client = sandbox.client();
    let node1 = state.node("node1").unwrap().clone();

    // Chassis annotation and the condition, on both nodes.
    let nodes: Api<Node> = Api::all(client.clone());
    for n in &state.nodes {
        let node = eventually(
            &format!("{} chassis annotation and NetworkUnavailable=False", n.name),
            Duration::from_secs(60),
            async || {
                let node = nodes.get(&n.name).await.ok()?;
                let cond = node
                    .status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .find(|c| c.type_ == "NetworkUnavailable")?
                    .clone();
                (cond.status == "False").then_some((node, cond))
            },
        )
        .await;
        assert_eq!(node.1.reason.as_deref(), Some("JoinSubnetGatewayReachable"));
        let system_id = n
            .vsctl(["get", "Open_vSwitch", ".", "external_ids:system-id"])
            .unwrap();
        assert_eq!(
            node.0.metadata.annotations.unwrap_or_default()["ovn.kubernetes.io/chassis"],
            system_id.trim().trim_matches('"')
        );
    }

    // ovn0 on br-int as the node's join port.
    let ids = node1
        .vsctl([
            "--bare",
            "--columns=external_ids,type",
            "list",
            "Interface",
            "ovn0",
        ])
        .unwrap();
    assert!(ids.contains("iface-id=node-node1"), "{ids}");
    assert!(ids.contains("internal"), "{ids}");

    // A subnet without NAT, created after start: its host route must follow.
    let ar = ApiResource {
        group: "kubeovn.io".into(),
        version: "v1".into(),
        api_version: "kubeovn.io/v1".into(),
        kind: "Subnet".into(),
        plural: "subnets".into(),
    };
    let subnets: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let nonat: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "nonat"},
        "spec": {"cidrBlock": "10.66.0.0/24", "gateway": "10.66.0.1", "protocol": "IPv4",
                 "provider": "ovn", "vpc": "ovn-cluster", "natOutgoing": false,
                 "gatewayType": "distributed", "excludeIps": ["10.66.0.1"]}
    }))
    .unwrap();
    subnets
        .create(&PostParams::default(), &nonat)
        .await
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, subnet) in [("nat", None), ("plain", Some("nonat"))] {
        let mut annotations = serde_json::Map::new();
        if let Some(s) = subnet {
            annotations.insert("ovn.kubernetes.io/logical_switch".into(), s.into());
        }
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let nat_ip = probe::running_pod_ip(&pods, "nat", POD_READY)
        .await
        .unwrap();
    let plain_ip = probe::running_pod_ip(&pods, "plain", POD_READY)
        .await
        .unwrap();
    assert!(nat_ip.starts_with("10.16."), "{nat_ip}");
    assert!(plain_ip.starts_with("10.66.0."), "{plain_ip}");
    let ns = |p: &str| state.pod_netns("default", p);

    // Node ↔ pod through ovn0 and the join subnet.
    probe::reach(&state, &node1.netns, &nat_ip).expect("node1 → pod in ovn-default");
    probe::reach(&state, &node1.netns, &plain_ip).expect("node1 → pod in the new subnet");
    probe::reach(&state, &ns("nat"), &node1.ip.to_string()).expect("pod → node1 IP");
    let node2 = state.node("node2").unwrap();
    probe::reach(&state, &node2.netns, &nat_ip).expect("node2 → pod on node1");

    // NAT-outgoing: the external host sees node1's provider address…
    probe::reach(&state, &ns("nat"), &EXTERNAL_IP.to_string()).expect("pod → external host");
    let accepted = external_listener(&prefix, 7100);
    assert_eq!(
        seen_from(&ns("nat"), 7100, &accepted),
        IpAddr::from(node1.provider_ip)
    );
    // …and the pod's own address when the subnet does not NAT (with a route back).
    let external = external_netns(&prefix);
    sys::run(
        "ip",
        [
            "-n",
            &external,
            "route",
            "add",
            "10.66.0.0/24",
            "via",
            &node1.provider_ip.to_string(),
        ],
    )
    .unwrap();
    assert_eq!(
        seen_from(&ns("plain"), 7100, &accepted),
        plain_ip.parse::<IpAddr>().unwrap()
    );

    sandbox.down().await.unwrap();
    let left = leftovers(&run_dir, &prefix);
    assert!(left.is_empty(), "teardown left {left:?}");
}
