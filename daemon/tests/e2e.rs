//! kube-ovn-daemon against a real sandbox: two nodes (own OVS + ovn-controller over Geneve),
//! NB ports written by the test in the controller's place, Pod objects carrying the controller's
//! annotations, and the daemon binary running inside each node's namespace serving the CNI
//! shim's socket. Proves the pod side (address, MAC, route, checksum offload), the OVS side
//! (port, iface-id, ovn-installed), packets between pods on different nodes, DEL (twice) and
//! the error for a pod the controller never finished.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::Api;
use kube_ovn_daemon::protocol::{CheckRequest, CniRequest, CniResponse, Route};
use kube_ovn_sandbox::node::NodeInfo;
use kube_ovn_sandbox::{probe, sys, Sandbox, SandboxConfig};

const WAIT_ADDRESS_SECS: u64 = 3;
const WAIT_INSTALLED_SECS: u64 = 5;

/// The daemon binary running in a node's namespace; killed when dropped.
struct DaemonProc {
    child: Child,
    socket: PathBuf,
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon(node: &NodeInfo) -> DaemonProc {
    let socket = node.dir.join("kube-ovn-daemon.sock");
    let log = std::fs::File::create(node.dir.join("kube-ovn-daemon.log")).unwrap();
    let child = sys::in_netns(&node.netns, env!("CARGO_BIN_EXE_kube-ovn-daemon"))
        .env("NODE_NAME", &node.name)
        // Without kubelets the Node objects do not exist: the tunnel address comes from here.
        .env("POD_IP", node.ip.to_string())
        .env("RUST_LOG", "debug")
        .arg(format!("--kubeconfig={}", node.kubeconfig().display()))
        .arg(format!("--ovs-socket={}", node.ovs_remote()))
        .arg(format!("--bind-socket={}", socket.display()))
        .arg(format!("--wait-address-timeout={WAIT_ADDRESS_SECS}"))
        .arg(format!(
            "--wait-ovn-installed-timeout={WAIT_INSTALLED_SECS}"
        ))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let d = DaemonProc { child, socket };
    assert!(
        sys::wait_for(Duration::from_secs(30), || d.socket.exists()),
        "daemon on {} never bound its socket; log: {}",
        node.name,
        std::fs::read_to_string(node.dir.join("kube-ovn-daemon.log")).unwrap_or_default()
    );
    d
}

/// One request over the unix socket, as the shim sends it.
async fn call(socket: &Path, path: &str, req: &impl serde::Serialize) -> (StatusCode, String) {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = serde_json::to_vec(req).unwrap();
    let r = Request::post(format!("http://dummy{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(r).await.unwrap();
    let status = resp.status();
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&text).into_owned())
}

fn annotations(ip: &str, mac: &str, full: bool) -> BTreeMap<String, String> {
    let mut a = BTreeMap::from([("ovn.kubernetes.io/ip_address".to_string(), ip.to_string())]);
    if full {
        for (k, v) in [
            ("mac_address", mac),
            ("cidr", "10.16.0.0/16"),
            ("gateway", "10.16.0.1"),
            ("logical_switch", "ovn-default"),
            ("routed", "true"),
        ] {
            a.insert(format!("ovn.kubernetes.io/{k}"), v.to_string());
        }
    }
    a
}

async fn create_pod(api: &Api<Pod>, name: &str, node: &str, annos: BTreeMap<String, String>) {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annos},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "pause"}]},
    }))
    .unwrap();
    api.create(&PostParams::default(), &pod).await.unwrap();
}

fn request(sb: &Sandbox, pod: &str, container_id: &str) -> CniRequest {
    CniRequest {
        cni_type: "kube-ovn".into(),
        pod_name: pod.into(),
        pod_namespace: "default".into(),
        container_id: container_id.into(),
        net_ns: sys::netns_path(&sb.state().pod_netns("default", pod)),
        if_name: "eth0".into(),
        provider: "ovn".into(),
        ..CniRequest::default()
    }
}

fn vsctl_get(node: &NodeInfo, column: &str, iface: &str) -> Option<String> {
    node.vsctl(["--if-exists", "get", "Interface", iface, column])
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn link_exists(netns: &str, name: &str) -> bool {
    sys::run("ip", ["-n", netns, "link", "show", "dev", name]).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemon_wires_pods_across_nodes_and_unwires_them() {
    let mut cfg = SandboxConfig::isolated(2);
    cfg.kubelets = false;
    let sb = Sandbox::up(cfg).await.unwrap();
    let nodes = sb.state().nodes.clone();
    let nb = sb.state().central.nb.clone();
    sys::run(
        "ovn-nbctl",
        [
            format!("--db={nb}").as_str(),
            "ls-add",
            "ovn-default",
            "--",
            "lsp-add",
            "ovn-default",
            "pod1.default",
            "--",
            "lsp-set-addresses",
            "pod1.default",
            "00:00:00:10:00:05 10.16.0.5",
            "--",
            "lsp-add",
            "ovn-default",
            "pod2.default",
            "--",
            "lsp-set-addresses",
            "pod2.default",
            "00:00:00:10:00:06 10.16.0.6",
            "--",
            "lsp-add",
            "ovn-default",
            "pod5.default",
            "--",
            "lsp-set-addresses",
            "pod5.default",
            "00:00:00:10:00:09 10.16.0.9",
        ],
    )
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(sb.client(), "default");
    create_pod(
        &pods,
        "pod1",
        "node1",
        annotations("10.16.0.5", "00:00:00:10:00:05", true),
    )
    .await;
    create_pod(
        &pods,
        "pod2",
        "node2",
        annotations("10.16.0.6", "00:00:00:10:00:06", true),
    )
    .await;
    create_pod(&pods, "pod3", "node1", annotations("10.16.0.7", "", false)).await;
    // Annotated, but no logical switch port: ovn-controller never binds it.
    create_pod(
        &pods,
        "pod4",
        "node1",
        annotations("10.16.0.8", "00:00:00:10:00:08", true),
    )
    .await;
    create_pod(
        &pods,
        "pod5",
        "node1",
        annotations("10.16.0.9", "00:00:00:10:00:09", true),
    )
    .await;
    for p in ["pod1", "pod1-restarted", "pod2", "pod3", "pod4", "pod5"] {
        sys::netns_add(&sb.state().pod_netns("default", p)).unwrap();
    }
    let d1 = start_daemon(&nodes[0]);
    let d2 = start_daemon(&nodes[1]);

    let id1 = "aaaaaaaaaaaa1111111111111111";
    let id2 = "bbbbbbbbbbbb2222222222222222";
    let (status, body) = call(&d1.socket, "/api/v1/add", &request(&sb, "pod1", id1)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let resp: CniResponse = serde_json::from_str(&body).unwrap();
    assert_eq!(resp.ips[0].ip, "10.16.0.5");
    assert_eq!(resp.ips[0].cidr, "10.16.0.0/16");
    assert_eq!(resp.ips[0].gateway, "10.16.0.1");
    assert_eq!(resp.mac_address, "00:00:00:10:00:05");
    assert_eq!(resp.nic_name, "eth0");
    assert_eq!(resp.mtu, 1400);
    let (status, body) = call(&d2.socket, "/api/v1/add", &request(&sb, "pod2", id2)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The pod side.
    let ns1 = sb.state().pod_netns("default", "pod1");
    let addr = sys::run("ip", ["-n", &ns1, "-o", "addr", "show", "dev", "eth0"]).unwrap();
    assert!(addr.contains("inet 10.16.0.5/16"), "{addr}");
    let link = sys::run("ip", ["-n", &ns1, "-o", "link", "show", "dev", "eth0"]).unwrap();
    assert!(link.contains("link/ether 00:00:00:10:00:05"), "{link}");
    assert!(link.contains("mtu 1400"), "{link}");
    let route = sys::run("ip", ["-n", &ns1, "route", "show", "default"]).unwrap();
    assert!(route.contains("via 10.16.0.1 dev eth0"), "{route}");
    let features = sys::run_command(sys::in_netns(&ns1, "ethtool").args(["-k", "eth0"])).unwrap();
    assert!(
        features.contains("tx-checksumming: off"),
        "userspace datapath needs tx off: {features}"
    );

    // The OVS side.
    let host1 = "aaaaaaaaaaaa_h";
    let host_link = sys::run(
        "ip",
        ["-n", &nodes[0].netns, "-o", "link", "show", "dev", host1],
    )
    .unwrap();
    let flags = host_link
        .split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .map(|(f, _)| f)
        .unwrap_or_default();
    assert!(
        flags.split(',').any(|f| f == "UP"),
        "host end must be up: {host_link}"
    );
    let ids = vsctl_get(&nodes[0], "external_ids", host1).unwrap();
    for want in [
        "iface-id=pod1.default,",
        "vendor=kube-ovn",
        "pod_name=pod1",
        "pod_namespace=default",
        "ip=\"10.16.0.5\"",
        "ovn-installed=\"true\"",
    ] {
        assert!(ids.contains(want), "{want} missing in {ids}");
    }
    let ports = nodes[0].vsctl(["list-ports", "br-int"]).unwrap();
    assert!(ports.lines().any(|l| l == host1), "{ports}");

    // Packets between the nodes (the first may be lost while the tunnel neighbour resolves).
    probe::reach(sb.state(), &ns1, "10.16.0.6").expect("pod1 cannot reach pod2 across nodes");

    // CHECK with what the ADD reported passes; any difference is named.
    let check1 = CheckRequest {
        request: request(&sb, "pod1", id1),
        mac: resp.mac_address.clone(),
        addresses: vec!["10.16.0.5/16".into()],
        routes: vec![
            Route {
                dst: "0.0.0.0/0".into(),
                gw: "10.16.0.1".into(),
            },
            Route {
                dst: "10.16.0.0/16".into(),
                gw: String::new(),
            },
        ],
    };
    let (status, body) = call(&d1.socket, "/api/v1/check", &check1).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let netns1 = sys::netns_path(&ns1);
    for (change, want) in [
        (
            CheckRequest {
                mac: "00:00:00:10:00:99".into(),
                ..check1.clone()
            },
            "MAC is 00:00:00:10:00:05, the result has 00:00:00:10:00:99",
        ),
        (
            CheckRequest {
                addresses: vec!["10.16.0.55/16".into()],
                ..check1.clone()
            },
            "address 10.16.0.55/16 is missing",
        ),
        (
            CheckRequest {
                routes: vec![Route {
                    dst: "192.168.77.0/24".into(),
                    gw: "10.16.0.254".into(),
                }],
                ..check1.clone()
            },
            "route 192.168.77.0/24 via 10.16.0.254 is missing",
        ),
    ] {
        let (status, body) = call(&d1.socket, "/api/v1/check", &change).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        let resp: CniResponse = serde_json::from_str(&body).unwrap();
        assert_eq!(resp.error, format!("eth0 in {netns1}: {want}"));
    }

    // DEL removes port and veth; a second DEL is still 204.
    // A new sandbox of the same pod (new container, new netns) takes over the iface-id: the
    // stale port goes (upstream's CleanDuplicatePort), the new one is bound.
    let id1b = "dddddddddddd1111111111111111";
    let mut again = request(&sb, "pod1", id1b);
    again.net_ns = sys::netns_path(&sb.state().pod_netns("default", "pod1-restarted"));
    let (status, body) = call(&d1.socket, "/api/v1/add", &again).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ports = nodes[0].vsctl(["list-ports", "br-int"]).unwrap();
    assert!(!ports.lines().any(|l| l == host1), "{ports}");
    assert!(ports.lines().any(|l| l == "dddddddddddd_h"), "{ports}");
    let (status, body) = call(&d1.socket, "/api/v1/del", &again).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(!link_exists(&nodes[0].netns, "dddddddddddd_h"));

    let (status, body) = call(&d1.socket, "/api/v1/del", &request(&sb, "pod1", id1)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // CHECK after DEL fails: the port (and the NIC) are gone.
    let (status, body) = call(&d1.socket, "/api/v1/check", &check1).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let gone: CniResponse = serde_json::from_str(&body).unwrap();
    assert_eq!(
        gone.error,
        format!("eth0 in {netns1}: no port {host1} on br-int")
    );
    assert!(!link_exists(&nodes[0].netns, host1));
    assert!(!link_exists(&ns1, "eth0"));
    assert_eq!(vsctl_get(&nodes[0], "name", host1), None);
    let ports = nodes[0].vsctl(["list-ports", "br-int"]).unwrap();
    assert!(!ports.lines().any(|l| l == host1), "{ports}");
    let (status, body) = call(&d1.socket, "/api/v1/del", &request(&sb, "pod1", id1)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // A pod the controller never finished: 500 naming what is missing, after the bound, and
    // nothing left behind.
    let id3 = "cccccccccccc3333333333333333";
    let started = Instant::now();
    let (status, body) = call(&d1.socket, "/api/v1/add", &request(&sb, "pod3", id3)).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let resp: CniResponse = serde_json::from_str(&body).unwrap();
    for want in [
        "ovn.kubernetes.io/mac_address",
        "ovn.kubernetes.io/routed=true",
        "pod default/pod3",
    ] {
        assert!(
            resp.error.contains(want),
            "{want} missing in {:?}",
            resp.error
        );
    }
    assert!(
        !resp.error.contains("ovn.kubernetes.io/ip_address"),
        "{}",
        resp.error
    );
    assert!(took >= Duration::from_secs(WAIT_ADDRESS_SECS), "{took:?}");
    assert!(
        took < Duration::from_secs(WAIT_ADDRESS_SECS + 5),
        "{took:?}"
    );
    assert!(!link_exists(&nodes[0].netns, "cccccccccccc_h"));

    // No annotation can ever come: a pod the API server does not have, a pod bound to
    // another node, a provider no Subnet or attachment defines. Each fails at once, saying so.
    let ghost = request(&sb, "ghost", "gggggggggggg0000000000000000");
    let elsewhere = request(&sb, "pod2", "hhhhhhhhhhhh0000000000000000");
    let mut unknown = request(&sb, "pod3", "iiiiiiiiiiii0000000000000000");
    unknown.provider = "net9.default.ovn".into();
    for (req, want) in [
        (ghost, "pod default/ghost provider ovn: pod does not exist in the API server"),
        (elsewhere, "pod default/pod2 provider ovn: pod is bound to node node2, not to this node"),
        (
            unknown,
            "pod default/pod3 provider net9.default.ovn: unknown provider net9.default.ovn: no Subnet has it as spec.provider and no NetworkAttachmentDefinition default/net9 exists",
        ),
    ] {
        let started = Instant::now();
        let (status, body) = call(&d1.socket, "/api/v1/add", &req).await;
        let took = started.elapsed();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        let resp: CniResponse = serde_json::from_str(&body).unwrap();
        assert_eq!(resp.error, want);
        assert!(took < Duration::from_secs(WAIT_ADDRESS_SECS), "{took:?}");
    }

    // ovn-controller never installs the port: 500 after the bound, port and veth removed.
    let id4 = "eeeeeeeeeeee4444444444444444";
    let (status, body) = call(&d1.socket, "/api/v1/add", &request(&sb, "pod4", id4)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let resp: CniResponse = serde_json::from_str(&body).unwrap();
    assert!(resp.error.contains("ovn-installed"), "{}", resp.error);
    assert!(!link_exists(&nodes[0].netns, "eeeeeeeeeeee_h"));
    assert_eq!(vsctl_get(&nodes[0], "name", "eeeeeeeeeeee_h"), None);
    let ns4 = sb.state().pod_netns("default", "pod4");
    let left = sys::run("ip", ["-n", &ns4, "-o", "link", "show"]).unwrap();
    assert_eq!(left.lines().count(), 1, "only lo may remain: {left}");

    // Several ADDs of one container at once (a runtime should not, but one that does must not
    // break the pod): each is served in turn, every one succeeds, and the pod ends up with its
    // NIC and exactly one bound port.
    let id5 = "ffffffffffff5555555555555555";
    let req5 = request(&sb, "pod5", id5);
    let adds = (0..3).map(|_| call(&d1.socket, "/api/v1/add", &req5));
    for (status, body) in futures::future::join_all(adds).await {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let ns5 = sb.state().pod_netns("default", "pod5");
    let addr = sys::run("ip", ["-n", &ns5, "-o", "addr", "show", "dev", "eth0"]).unwrap();
    assert!(addr.contains("inet 10.16.0.9/16"), "{addr}");
    let ports = nodes[0].vsctl(["list-ports", "br-int"]).unwrap();
    assert_eq!(
        ports.lines().filter(|l| *l == "ffffffffffff_h").count(),
        1,
        "{ports}"
    );
    let ids = vsctl_get(&nodes[0], "external_ids", "ffffffffffff_h").unwrap();
    assert!(ids.contains("ovn-installed=\"true\""), "{ids}");
    probe::reach(sb.state(), &ns5, "10.16.0.6").expect("pod5 cannot reach pod2");

    // Malformed body: 400 with the error.
    let stream = tokio::net::UnixStream::connect(&d1.socket).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let bad = Request::post("http://dummy/api/v1/add")
        .body(Full::new(Bytes::from_static(b"{not json")))
        .unwrap();
    let resp = sender.send_request(bad).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    drop((d1, d2));
    sb.down().await.unwrap();
}
