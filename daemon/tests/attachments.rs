//! Attachment NICs through kube-ovn-daemon on a real sandbox (two nodes, own OVS and
//! ovn-controller over Geneve, NB ports and pod annotations written by the test in the
//! controller's place):
//! - a `.ovn` attachment's `net1`: plugged with iface-id `<pod>.<ns>.<provider>`, its address and
//!   MAC, no default route (the pod's stays on eth0), packets to the other node's `net1`, CHECK
//!   against the ADD's result, DEL (twice) leaving eth0 alone;
//! - kube-ovn as IPAM of Debian's macvlan plugin (`ipam.type: kube-ovn`, the real `kube-ovn`
//!   binary called by macvlan with its stdin): the address from the `<nad>.<ns>` annotations,
//!   packets to the external host, CHECK and DEL through macvlan.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::Api;
use kube_ovn_daemon::protocol::{CheckRequest, CniRequest, CniResponse, Route};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::node::{NodeInfo, EXTERNAL_IP};
use kube_ovn_sandbox::{probe, sys, Sandbox, SandboxConfig};
use serde_json::{json, Value};

const PROVIDER: &str = "attachnet.default.ovn";
const IPAM_PROVIDER: &str = "mv.default";
const MACVLAN: &str = "/usr/lib/cni/macvlan";

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
        .env("POD_IP", node.ip.to_string())
        .env("RUST_LOG", "debug")
        .arg(format!("--kubeconfig={}", node.kubeconfig().display()))
        .arg(format!("--ovs-socket={}", node.ovs_remote()))
        .arg(format!("--bind-socket={}", socket.display()))
        .arg("--wait-address-timeout=5")
        .arg("--wait-ovn-installed-timeout=10")
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

async fn call(socket: &Path, path: &str, req: &impl serde::Serialize) -> (StatusCode, String) {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let r = Request::post(format!("http://dummy{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(req).unwrap())))
        .unwrap();
    let resp = sender.send_request(r).await.unwrap();
    let status = resp.status();
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&text).into_owned())
}

/// The annotations the controller writes for a NIC of `provider` on a logical switch.
fn nic(
    provider: &str,
    ip: &str,
    mac: &str,
    cidr: &str,
    gw: &str,
    ls: &str,
) -> Vec<(String, String)> {
    [
        ("ip_address", ip),
        ("mac_address", mac),
        ("cidr", cidr),
        ("gateway", gw),
        ("logical_switch", ls),
        ("allocated", "true"),
        ("routed", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (format!("{provider}.kubernetes.io/{k}"), v.to_string()))
    .collect()
}

async fn create_pod(api: &Api<Pod>, name: &str, node: &str, annos: BTreeMap<String, String>) {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annos},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "pause"}]},
    }))
    .unwrap();
    api.create(&PostParams::default(), &pod).await.unwrap();
}

fn request(sb: &Sandbox, pod: &str, id: &str, if_name: &str, provider: &str) -> CniRequest {
    CniRequest {
        cni_type: "kube-ovn".into(),
        pod_name: pod.into(),
        pod_namespace: "default".into(),
        container_id: id.into(),
        net_ns: sys::netns_path(&sb.state().pod_netns("default", pod)),
        if_name: if_name.into(),
        provider: provider.into(),
        ..CniRequest::default()
    }
}

fn link_exists(netns: &str, name: &str) -> bool {
    sys::run("ip", ["-n", netns, "link", "show", "dev", name]).is_ok()
}

fn iface_ids(node: &NodeInfo, iface: &str) -> String {
    node.vsctl(["--if-exists", "get", "Interface", iface, "external_ids"])
        .unwrap_or_default()
}

/// Runs a CNI plugin binary inside `node`'s namespace as a runtime would.
fn run_plugin(
    node: &NodeInfo,
    plugin: &str,
    command: &str,
    cni_path: &Path,
    env: &[(&str, &str)],
    stdin: &Value,
) -> (bool, String) {
    let mut cmd = sys::in_netns(&node.netns, plugin);
    cmd.env("CNI_COMMAND", command)
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attachment_nics_and_kube_ovn_as_ipam() {
    let build = KubeOvnBuild::of_test_binary().expect("kube-ovn binaries");
    let mut cfg = SandboxConfig::isolated(2);
    cfg.kubelets = false;
    let sb = Sandbox::up(cfg).await.unwrap();
    let nodes = sb.state().nodes.clone();
    let nb = sb.state().central.nb.clone();
    let db = format!("--db={nb}");
    let port_a = format!("a.default.{PROVIDER}");
    let port_b = format!("b.default.{PROVIDER}");
    // The same definition attached a second time as net3: the controller's provider (and port)
    // carries the interface name.
    let port_a3 = format!("a.default.{PROVIDER}.net3");
    sys::run(
        "ovn-nbctl",
        [
            db.as_str(),
            "ls-add",
            "ovn-default",
            "--",
            "ls-add",
            "attach-subnet",
            "--",
            "lsp-add",
            "ovn-default",
            "a.default",
            "--",
            "lsp-set-addresses",
            "a.default",
            "00:00:00:10:00:05 10.16.0.5",
            "--",
            "lsp-add",
            "attach-subnet",
            &port_a,
            "--",
            "lsp-set-addresses",
            &port_a,
            "00:00:00:17:00:05 172.17.0.5",
            "--",
            "lsp-add",
            "attach-subnet",
            &port_a3,
            "--",
            "lsp-set-addresses",
            &port_a3,
            "00:00:00:17:00:07 172.17.0.7",
            "--",
            "lsp-add",
            "attach-subnet",
            &port_b,
            "--",
            "lsp-set-addresses",
            &port_b,
            "00:00:00:17:00:06 172.17.0.6",
        ],
    )
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(sb.client(), "default");
    let mut a: BTreeMap<String, String> = nic(
        "ovn",
        "10.16.0.5",
        "00:00:00:10:00:05",
        "10.16.0.0/16",
        "10.16.0.1",
        "ovn-default",
    )
    .into_iter()
    .collect();
    a.extend(nic(
        PROVIDER,
        "172.17.0.5",
        "00:00:00:17:00:05",
        "172.17.0.0/16",
        "172.17.0.1",
        "attach-subnet",
    ));
    a.insert(
        format!("{PROVIDER}.kubernetes.io/routes"),
        r#"[{"dst":"192.168.50.0/24","gw":"172.17.0.254"}]"#.into(),
    );
    a.extend(nic(
        &format!("{PROVIDER}.net3"),
        "172.17.0.7",
        "00:00:00:17:00:07",
        "172.17.0.0/16",
        "172.17.0.1",
        "attach-subnet",
    ));
    create_pod(&pods, "a", "node1", a).await;
    // b has only the attachment's NIC: reached through net1 alone. It is annotated as upstream
    // leaves a pod before routing (no routed=true), which a net1 does not wait for.
    let mut b: BTreeMap<String, String> = nic(
        PROVIDER,
        "172.17.0.6",
        "00:00:00:17:00:06",
        "172.17.0.0/16",
        "172.17.0.1",
        "attach-subnet",
    )
    .into_iter()
    .collect();
    b.remove(&format!("{PROVIDER}.kubernetes.io/routed"));
    create_pod(&pods, "b", "node2", b).await;
    // c: macvlan with kube-ovn as IPAM on the provider network (what the controller writes
    // for an IPAM-only NIC: addresses, CIDR, gateway; no MAC or switch).
    let c: BTreeMap<String, String> = [
        ("ip_address", "172.19.0.50"),
        ("cidr", "172.19.0.0/24"),
        ("gateway", "172.19.0.100"),
        ("allocated", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (format!("{IPAM_PROVIDER}.kubernetes.io/{k}"), v.to_string()))
    .collect();
    create_pod(&pods, "c", "node1", c).await;
    for p in ["a", "b", "c"] {
        sys::netns_add(&sb.state().pod_netns("default", p)).unwrap();
    }
    let d1 = start_daemon(&nodes[0]);
    let d2 = start_daemon(&nodes[1]);

    // a: eth0 on the default network, then net1 on the attachment.
    let id_a = "aaaaaaaaaaaa1111111111111111";
    let (status, body) = call(
        &d1.socket,
        "/api/v1/add",
        &request(&sb, "a", id_a, "eth0", "ovn"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let net1_a = request(&sb, "a", id_a, "net1", PROVIDER);
    let (status, body) = call(&d1.socket, "/api/v1/add", &net1_a).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let resp: CniResponse = serde_json::from_str(&body).unwrap();
    assert_eq!(resp.nic_name, "net1");
    assert_eq!(resp.mac_address, "00:00:00:17:00:05");
    assert_eq!(
        (
            resp.ips[0].ip.as_str(),
            resp.ips[0].cidr.as_str(),
            resp.ips[0].gateway.as_str()
        ),
        ("172.17.0.5", "172.17.0.0/16", ""),
        "net1 carries no gateway"
    );
    let ns_a = sb.state().pod_netns("default", "a");
    let addr = sys::run("ip", ["-n", &ns_a, "-o", "addr", "show", "dev", "net1"]).unwrap();
    assert!(addr.contains("inet 172.17.0.5/16"), "{addr}");
    let link = sys::run("ip", ["-n", &ns_a, "-o", "link", "show", "dev", "net1"]).unwrap();
    assert!(link.contains("link/ether 00:00:00:17:00:05"), "{link}");
    let default = sys::run("ip", ["-n", &ns_a, "route", "show", "default"]).unwrap();
    assert!(
        default.contains("via 10.16.0.1 dev eth0") && !default.contains("net1"),
        "the default route stays on eth0: {default}"
    );
    let extra = sys::run("ip", ["-n", &ns_a, "route", "show", "192.168.50.0/24"]).unwrap();
    assert!(extra.contains("via 172.17.0.254 dev net1"), "{extra}");
    let host_a = "aaaaaaaa_net1_h";
    let ids = iface_ids(&nodes[0], host_a);
    for want in [
        format!("iface-id={port_a},"),
        "pod_name=a".to_string(),
        "ip=\"172.17.0.5\"".into(),
        "ovn-installed=\"true\"".into(),
    ] {
        assert!(ids.contains(&want), "{want} missing in {ids}");
    }

    // b on the other node, net1 only.
    let id_b = "bbbbbbbbbbbb2222222222222222";
    let (status, body) = call(
        &d2.socket,
        "/api/v1/add",
        &request(&sb, "b", id_b, "net1", PROVIDER),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    probe::reach(sb.state(), &ns_a, "172.17.0.6").expect("a's net1 cannot reach b's net1");

    // CHECK with what the ADD reported; a route it never had is named.
    let check = CheckRequest {
        request: net1_a.clone(),
        mac: resp.mac_address.clone(),
        addresses: vec!["172.17.0.5/16".into()],
        routes: resp.routes.clone(),
    };
    let (status, body) = call(&d1.socket, "/api/v1/check", &check).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let wrong = CheckRequest {
        routes: vec![Route {
            dst: "0.0.0.0/0".into(),
            gw: "172.17.0.1".into(),
        }],
        ..check.clone()
    };
    let (status, body) = call(&d1.socket, "/api/v1/check", &wrong).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(
        body.contains("route 0.0.0.0/0 via 172.17.0.1 is missing"),
        "{body}"
    );

    // net3: the request names the definition's provider, the NIC is the `.net3` one.
    let net3_a = request(&sb, "a", id_a, "net3", PROVIDER);
    let (status, body) = call(&d1.socket, "/api/v1/add", &net3_a).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let resp3: CniResponse = serde_json::from_str(&body).unwrap();
    assert_eq!(resp3.ips[0].ip, "172.17.0.7");
    let ids = iface_ids(&nodes[0], "aaaaaaaa_net3_h");
    assert!(ids.contains(&format!("iface-id={port_a3},")), "{ids}");
    let check3 = CheckRequest {
        request: net3_a.clone(),
        mac: resp3.mac_address.clone(),
        addresses: vec!["172.17.0.7/16".into()],
        routes: resp3.routes.clone(),
    };
    let (status, body) = call(&d1.socket, "/api/v1/check", &check3).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    probe::reach(sb.state(), &ns_a, "172.17.0.6").expect("a cannot reach b with net3 up");
    let (status, body) = call(&d1.socket, "/api/v1/del", &net3_a).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // DEL of net1: its port and veth go, eth0 stays; again is still 204.
    for _ in 0..2 {
        let (status, body) = call(&d1.socket, "/api/v1/del", &net1_a).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    assert!(!link_exists(&nodes[0].netns, host_a));
    assert!(!link_exists(&ns_a, "net1"));
    assert!(link_exists(&ns_a, "eth0"));
    let ports = nodes[0].vsctl(["list-ports", "br-int"]).unwrap();
    assert!(!ports.lines().any(|l| l == host_a), "{ports}");
    assert!(ports.lines().any(|l| l == "aaaaaaaaaaaa_h"), "{ports}");

    // c: Debian's macvlan calls the real kube-ovn binary as its IPAM.
    let cni_dir = build.cni.parent().unwrap().to_path_buf();
    let conf = json!({
        "cniVersion": "1.0.0", "name": "mv", "type": "macvlan", "master": "eth1", "mode": "bridge",
        "ipam": {"type": "kube-ovn", "provider": IPAM_PROVIDER,
                 "server_socket": d1.socket.display().to_string()}
    });
    let ns_c = sb.state().pod_netns("default", "c");
    let netns_c = sys::netns_path(&ns_c);
    let env = [
        ("CNI_CONTAINERID", "cccccccccccc3333333333333333"),
        ("CNI_NETNS", netns_c.as_str()),
        ("CNI_IFNAME", "net2"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=c",
        ),
    ];
    let (ok, out) = run_plugin(&nodes[0], MACVLAN, "ADD", &cni_dir, &env, &conf);
    assert!(ok, "macvlan ADD: {out}");
    let result: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["ips"][0]["address"], "172.19.0.50/24", "{result}");
    let addr = sys::run("ip", ["-n", &ns_c, "-o", "addr", "show", "dev", "net2"]).unwrap();
    assert!(addr.contains("inet 172.19.0.50/24"), "{addr}");
    probe::reach(sb.state(), &ns_c, &EXTERNAL_IP.to_string())
        .expect("the macvlan NIC cannot reach the external host");
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = result.clone();
    let (ok, out) = run_plugin(&nodes[0], MACVLAN, "CHECK", &cni_dir, &env, &with_prev);
    assert!(ok, "macvlan CHECK: {out}");
    for _ in 0..2 {
        let (ok, out) = run_plugin(&nodes[0], MACVLAN, "DEL", &cni_dir, &env, &with_prev);
        assert!(ok, "macvlan DEL: {out}");
    }
    assert!(!link_exists(&ns_c, "net2"));

    // An IPAM request for a pod nothing allocated for, whose provider nothing defines: it
    // fails at once, naming the provider.
    create_pod(&pods, "late", "node1", BTreeMap::new()).await;
    let mut late = request(
        &sb,
        "late",
        "dddddddddddd4444444444444444",
        "net2",
        IPAM_PROVIDER,
    );
    late.cni_type = "macvlan".into();
    late.net_ns = netns_c.clone();
    let (status, body) = call(&d1.socket, "/api/v1/add", &late).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body.contains("unknown provider mv.default"), "{body}");

    drop((d1, d2));
    sb.down().await.unwrap();
}
