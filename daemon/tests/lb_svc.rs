//! The lb-svc agent's data plane in real network namespaces (root): an "external" client on
//! the attachment network reaches a "ClusterIP" listener behind the pod's eth0 through the LB
//! address, with real TCP — DNATed in the pod, masqueraded to the pod's eth0 address, routed by
//! table 100 — and a Service edit (port 80 → 8080) re-converges to exactly the new rules; the
//! agent loop, against the API fixture, follows Service edits, and the `kube-ovn-lb-svc` binary
//! started after an edit made while no agent ran converges to it.
//!
//!   ext ─ ext0 172.18.0.100/16 ═ net1 [lb: 172.18.0.50/16 by the agent] eth0 10.16.0.5/16 ═
//!   cl0 10.16.0.1/16 ─ cl (ClusterIP 10.96.0.10 on lo, listeners on :80 and :8080)

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_apiserver_fixture::{ApiServer, Options};
use kube_ovn_daemon::lbsvc::{plan, run, Converger, Identity};
use kube_ovn_sandbox::apiproxy::bind_in_netns;
use kube_ovn_sandbox::sys;
use serde_json::json;

/// The test's namespaces, deleted when it ends however it ends.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = sys::netns_del(n);
        }
    }
}

fn ip(args: &[&str]) -> String {
    sys::run("ip", args.iter().copied()).unwrap_or_else(|e| panic!("ip {args:?}: {e}"))
}

/// Connects from `netns` to `to` and reads what the server says (its view of our address);
/// `Err` with the connect or read error.
fn fetch_from(netns: &str, to: SocketAddr) -> std::io::Result<String> {
    let path = sys::netns_path(netns);
    std::thread::spawn(move || {
        let target = File::open(&path)?;
        // SAFETY: setns on this short-lived thread only.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .join()
    .expect("client thread")
}

/// Retries [`fetch_from`] until it answers or `limit` passes.
fn answer(netns: &str, to: SocketAddr, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        match fetch_from(netns, to) {
            Ok(s) => return s,
            Err(e) => assert!(Instant::now() < deadline, "{to} from {netns}: {e}"),
        }
        std::thread::yield_now();
    }
}

/// A listener in `netns` on `addr` that tells each client its source address.
fn echo_peer(netns: &str, addr: SocketAddr) {
    let l = bind_in_netns(&sys::netns_path(netns), addr).expect("bind in netns");
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            if let Ok(peer) = c.peer_addr() {
                let _ = c.write_all(peer.ip().to_string().as_bytes());
            }
        }
    });
}

fn service(port: i32) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "test-service", "namespace": "default",
            "annotations": {"ovn.kubernetes.io/attachmentprovider": "lb-svc-attachment.kube-system"}},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "ports": [{"name": "web", "port": port, "protocol": "TCP", "targetPort": port}]}}))
    .unwrap()
}

/// The three namespaces of the picture above (names prefixed by `name`), wired and with the
/// ClusterIP listeners running: (their guard, the client's, the agent's).
fn topology(name: &str) -> (Namespaces, String, String) {
    let tag = format!("{name}{}", std::process::id());
    let (ext, lb, cl) = (
        format!("{tag}-ext"),
        format!("{tag}-lb"),
        format!("{tag}-cl"),
    );
    let guard = Namespaces(vec![ext.clone(), lb.clone(), cl.clone()]);
    for n in [&ext, &lb, &cl] {
        sys::netns_add(n).unwrap();
    }
    ip(&[
        "link", "add", "ext0", "netns", &ext, "type", "veth", "peer", "name", "net1", "netns", &lb,
    ]);
    ip(&[
        "link", "add", "eth0", "netns", &lb, "type", "veth", "peer", "name", "cl0", "netns", &cl,
    ]);
    ip(&["-n", &ext, "addr", "add", "172.18.0.100/16", "dev", "ext0"]);
    // The client's side also holds the attachment gateway, to see the agent's ARP request.
    ip(&["-n", &ext, "addr", "add", "172.18.0.1/16", "dev", "ext0"]);
    ip(&["-n", &ext, "link", "set", "ext0", "up"]);
    ip(&["-n", &lb, "addr", "add", "10.16.0.5/16", "dev", "eth0"]);
    ip(&["-n", &lb, "link", "set", "eth0", "up"]);
    ip(&["-n", &cl, "addr", "add", "10.16.0.1/16", "dev", "cl0"]);
    ip(&["-n", &cl, "link", "set", "cl0", "up"]);
    ip(&["-n", &cl, "addr", "add", "10.96.0.10/32", "dev", "lo"]);
    echo_peer(&cl, "10.96.0.10:80".parse().unwrap());
    echo_peer(&cl, "10.96.0.10:8080".parse().unwrap());
    (guard, ext, lb)
}

fn pod_annotations() -> BTreeMap<String, String> {
    serde_json::from_value(json!({
        "ovn.kubernetes.io/ip_address": "10.16.0.5",
        "ovn.kubernetes.io/gateway": "10.16.0.1",
        "lb-svc-attachment.kube-system.kubernetes.io/ip_address": "172.18.0.50",
        "lb-svc-attachment.kube-system.kubernetes.io/cidr": "172.18.0.0/16",
        "lb-svc-attachment.kube-system.kubernetes.io/gateway": "172.18.0.1"}))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lb_ip_is_dnatted_to_the_cluster_ip_through_eth0() {
    let (_guard, ext, lb) = topology("lbs");
    let pod = pod_annotations();
    let conv = Converger::open(Some(std::path::Path::new(&sys::netns_path(&lb))))
        .await
        .unwrap();
    let p80 = plan(&service(80), &pod).unwrap();
    conv.converge(&p80).await.unwrap();
    // Idempotent: a second pass (a restart, a resync) changes nothing and fails on nothing.
    conv.converge(&p80).await.unwrap();

    let rules = ip(&["-n", &lb, "rule", "show"]);
    assert!(rules.contains("from all iif net1 lookup 100"), "{rules}");
    assert!(rules.contains("from all iif eth0 lookup 100"), "{rules}");
    assert_eq!(rules.matches("lookup 100").count(), 2, "{rules}");
    let table = ip(&["-n", &lb, "route", "show", "table", "100"]);
    for want in [
        "default via 172.18.0.1 dev net1",
        "10.96.0.10 via 10.16.0.1 dev eth0",
        "172.18.0.0/16 dev net1 scope link",
    ] {
        assert!(
            table.contains(want),
            "{want} missing from table 100:\n{table}"
        );
    }
    let addrs = ip(&["-n", &lb, "addr", "show", "dev", "net1"]);
    assert!(addrs.contains("inet 172.18.0.50/16"), "{addrs}");
    // The gateway learnt the LB address's MAC from the agent's ARP request, before any traffic.
    let mac = addrs
        .split("link/ether ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let neigh = ip(&["-n", &ext, "neigh", "show", "172.18.0.50"]);
        if neigh.contains(&format!("lladdr {mac}")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no neighbour entry from the ARP request: {neigh}"
        );
        std::thread::yield_now();
    }

    // Real TCP: the client reaches the ClusterIP listener, which sees the pod's eth0 address.
    let seen = answer(
        &ext,
        "172.18.0.50:80".parse().unwrap(),
        Duration::from_secs(10),
    );
    assert_eq!(seen, "10.16.0.5");

    // The Service now serves 8080 only: the new DNAT works and the old one is gone (the LB
    // address itself answers :80 with a reset).
    let p8080 = plan(&service(8080), &pod).unwrap();
    conv.converge(&p8080).await.unwrap();
    let seen = answer(
        &ext,
        "172.18.0.50:8080".parse().unwrap(),
        Duration::from_secs(10),
    );
    assert_eq!(seen, "10.16.0.5");
    let old = fetch_from(&ext, "172.18.0.50:80".parse().unwrap());
    assert_eq!(
        old.as_ref().map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused),
        "{old:?}"
    );
}

/// A child process killed when the test ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn open(netns: &str) -> Converger {
    Converger::open(Some(std::path::Path::new(netns)))
        .await
        .unwrap()
}

/// The agent itself against an API server (the fixture): it converges from the Service and
/// its pod as soon as it starts, follows a Service edit, and a new agent started after an edit
/// made while none ran converges to the edit (a restarted pod).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_follows_its_service_and_restarts() {
    let (_guard, ext, lb) = topology("lba");
    let api = ApiServer::start(Options::default()).await.unwrap();
    let client = api.client().unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let mut svc = service(80);
    svc.spec.as_mut().unwrap().selector = Some([("app".to_string(), "web".to_string())].into());
    services.create(&PostParams::default(), &svc).await.unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "lb-svc-test-service-6869d98dd8-cjvll", "namespace": "default",
            "labels": {"app": "lb-svc-test-service", "namespace": "default", "service": "test-service"},
            "annotations": pod_annotations()},
        "spec": {"containers": [{"name": "lb-svc", "image": "x"}]}}))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let me = Identity {
        namespace: "default".into(),
        name: "lb-svc-test-service-6869d98dd8-cjvll".into(),
    };
    let netns = sys::netns_path(&lb);
    let fetch = |port: u16| {
        let ext = ext.clone();
        tokio::task::spawn_blocking(move || {
            answer(
                &ext,
                SocketAddr::from(([172, 18, 0, 50], port)),
                Duration::from_secs(20),
            )
        })
    };
    let agent = tokio::spawn(run(client.clone(), me.clone(), open(&netns).await));
    assert_eq!(fetch(80).await.unwrap(), "10.16.0.5");

    let port = |p: i32| {
        Patch::Merge(
            json!({"spec": {"ports": [{"name": "web", "port": p, "protocol": "TCP", "targetPort": p}]}}),
        )
    };
    services
        .patch("test-service", &PatchParams::default(), &port(8080))
        .await
        .unwrap();
    assert_eq!(fetch(8080).await.unwrap(), "10.16.0.5");

    agent.abort();
    let _ = agent.await;
    services
        .patch("test-service", &PatchParams::default(), &port(80))
        .await
        .unwrap();
    // The restarted agent is the binary, run as a harness runs it beside a pod: the API from
    // here, the pod's namespace by --netns, the pod by POD_NAME/POD_NAMESPACE.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig_yaml()).unwrap();
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_kube-ovn-lb-svc"))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--netns={netns}"))
        .env("POD_NAME", &me.name)
        .env("POD_NAMESPACE", &me.namespace)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let _agent = Killed(child);
    let r = fetch(80).await;
    if r.is_err() {
        eprintln!(
            "{}",
            std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default()
        );
    }
    assert_eq!(r.unwrap(), "10.16.0.5");
    let ext2 = ext.clone();
    let old = tokio::task::spawn_blocking(move || {
        fetch_from(&ext2, SocketAddr::from(([172, 18, 0, 50], 8080)))
    })
    .await
    .unwrap();
    assert_eq!(
        old.as_ref().map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused),
        "{old:?}"
    );
}
