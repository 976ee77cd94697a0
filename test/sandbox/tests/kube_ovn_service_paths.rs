//! Services with real packets through kube-ovn-rs on two nodes: a client on node2 reaches a
//! dual-stack ClusterIP Service whose backends are on node1 over TCP and UDP, IPv4 and IPv6; a
//! backend reaches its own Service (hairpin); ClientIP affinity pins a client to one backend;
//! a backend going unready, a new backend and a deleted one are reflected (and how fast is printed); a Service
//! without ready endpoints is refused at once; a deleted Service's VIPs are gone; a
//! SwitchLBRule with static endpoints answers on a switch_lb_vip Vip.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, PostParams};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::workload::{connect, ConnectError, Proto};
use kube_ovn_sandbox::{leftovers, probe, Sandbox, SandboxConfig, SandboxState};
use serde_json::json;

const POD_READY: Duration = Duration::from_secs(90);
const CONVERGE: Duration = Duration::from_secs(30);

async fn ask(netns: &str, proto: Proto, to: SocketAddr) -> Result<String, ConnectError> {
    let ns = netns.to_string();
    tokio::task::spawn_blocking(move || connect(&ns, proto, to, b"hi", Duration::from_secs(2)))
        .await
        .unwrap()
}

/// Asks until `ok` holds for an answer, or `within` passes; returns the last answer.
async fn ask_until(
    netns: &str,
    proto: Proto,
    to: SocketAddr,
    within: Duration,
    ok: impl Fn(&Result<String, ConnectError>) -> bool,
) -> Result<String, ConnectError> {
    let deadline = Instant::now() + within;
    loop {
        let got = ask(netns, proto, to).await;
        if ok(&got) || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The backends that answer `n` connections in a row.
async fn answers(netns: &str, proto: Proto, to: SocketAddr, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            ask(netns, proto, to)
                .await
                .unwrap_or_else(|e| format!("error: {e}")),
        );
    }
    out
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port)
}

async fn pod(api: &Api<Pod>, name: &str, node: &str, app: &str) {
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x",
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 1}}]},
    }))
    .unwrap();
    api.create(&PostParams::default(), &p).await.unwrap();
}

async fn pod_ips(api: &Api<Pod>, name: &str) -> Vec<String> {
    probe::running_pod_ip(api, name, POD_READY).await.unwrap();
    let p = api.get(name).await.unwrap();
    p.status
        .and_then(|s| s.pod_ips)
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip)
        .collect()
}

fn nb_vips(state: &SandboxState, lb: &str) -> String {
    let out = std::process::Command::new("ovn-nbctl")
        .arg(format!("--db={}", state.central.nb))
        .args(["get", "load_balancer", lb, "vips"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_carry_real_traffic_across_nodes_families_and_changes() {
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(KubeOvnBuild::of_test_binary().expect("kube-ovn build"));
    config.service_cidrs = vec!["10.96.0.0/12".into(), "fd00:10:96::/112".into()];
    let (run_dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let client = sandbox.client();

    // A dual-stack subnet for namespace svc.
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "svc"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let subnets: Api<kube_ovn_common::crd::Subnet> = Api::all(client.clone());
    let subnet: kube_ovn_common::crd::Subnet = serde_json::from_value(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "dual"},
        "spec": {"cidrBlock": "10.66.0.0/16,fd00:66::/112", "namespaces": ["svc"], "protocol": "Dual"}
    }))
    .unwrap();
    subnets
        .create(&PostParams::default(), &subnet)
        .await
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "svc");
    pod(&pods, "client", "node2", "client").await;
    pod(&pods, "web-1", "node1", "web").await;
    pod(&pods, "web-2", "node1", "web").await;
    let client_ns = state.pod_netns("svc", "client");
    let client_ips = pod_ips(&pods, "client").await;
    assert_eq!(client_ips.len(), 2, "a dual-stack client: {client_ips:?}");
    let mut servers = std::collections::BTreeMap::new();
    for name in ["client", "web-1", "web-2"] {
        pod_ips(&pods, name).await;
        servers.insert(
            name,
            sandbox
                .serve_pod("svc", name, name, &[8080], &[8080])
                .unwrap(),
        );
    }

    let services: Api<Service> = Api::namespaced(client.clone(), "svc");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ipFamilyPolicy": "RequireDualStack",
        "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                  {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 8080}]}}))
    .unwrap();
    let svc = services.create(&PostParams::default(), &svc).await.unwrap();
    let ips = svc.spec.unwrap().cluster_ips.unwrap();
    assert_eq!(ips.len(), 2, "dual-stack cluster IPs: {ips:?}");
    let both: BTreeSet<String> = ["web-1".to_string(), "web-2".to_string()].into();

    // Cross-node, TCP and UDP, both families.
    for ip in &ips {
        for (proto, port) in [(Proto::Tcp, 80), (Proto::Udp, 53)] {
            let to = addr(ip, port);
            let got = ask_until(&client_ns, proto, to, CONVERGE, |r| r.is_ok()).await;
            assert!(
                got.as_ref().is_ok_and(|b| both.contains(b)),
                "{proto:?} {to}: {got:?}\n{}",
                probe::report(&state)
            );
        }
    }
    let tcp4 = addr(&ips[0], 80);
    let seen: BTreeSet<String> = answers(&client_ns, Proto::Tcp, tcp4, 30)
        .await
        .into_iter()
        .collect();
    assert_eq!(seen, both, "30 connections reach both backends");

    // ClientIP affinity: one client, one backend.
    let sticky: Service = serde_json::from_value(json!({"metadata": {"name": "sticky"}, "spec": {
        "selector": {"app": "web"}, "sessionAffinity": "ClientIP",
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}))
    .unwrap();
    let sticky = services
        .create(&PostParams::default(), &sticky)
        .await
        .unwrap();
    let sticky_to = addr(&sticky.spec.unwrap().cluster_ip.unwrap(), 80);
    ask_until(&client_ns, Proto::Tcp, sticky_to, CONVERGE, |r| r.is_ok())
        .await
        .unwrap();
    let pinned: BTreeSet<String> = answers(&client_ns, Proto::Tcp, sticky_to, 20)
        .await
        .into_iter()
        .collect();
    assert_eq!(
        pinned.len(),
        1,
        "ClientIP affinity sent one client to {pinned:?}"
    );

    // A backend going unready leaves the Service: time from its server stopping until 20
    // connections in a row reach only the other.
    let stopped = Instant::now();
    drop(servers.remove("web-2"));
    let deadline = stopped + Duration::from_secs(60);
    loop {
        let got: BTreeSet<String> = answers(&client_ns, Proto::Tcp, tcp4, 20)
            .await
            .into_iter()
            .collect();
        if got == ["web-1".to_string()].into() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "web-2 never left the Service: {got:?}"
        );
    }
    let unready = stopped.elapsed();

    // Hairpin: web-1, now the only backend, reaches its own Service.
    let web1_ns = state.pod_netns("svc", "web-1");
    let got = ask_until(&web1_ns, Proto::Tcp, tcp4, CONVERGE, |r| r.is_ok()).await;
    assert_eq!(got.as_deref(), Ok("web-1"), "hairpin through {tcp4}");

    // A new backend on the other node joins: time from its server answering until it is seen.
    pod(&pods, "web-3", "node2", "web").await;
    pod_ips(&pods, "web-3").await;
    servers.insert(
        "web-3",
        sandbox
            .serve_pod("svc", "web-3", "web-3", &[8080], &[8080])
            .unwrap(),
    );
    let started = Instant::now();
    loop {
        let got = answers(&client_ns, Proto::Tcp, tcp4, 10).await;
        if got.iter().any(|b| b == "web-3") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "web-3 never joined: {got:?}"
        );
    }
    let joined = started.elapsed();

    // Scaling down: web-3's pod is deleted; time until 20 connections in a row miss it.
    pods.delete("web-3", &DeleteParams::default())
        .await
        .unwrap();
    let deleted = Instant::now();
    loop {
        let got = answers(&client_ns, Proto::Tcp, tcp4, 20).await;
        if got.iter().all(|b| b == "web-1") {
            break;
        }
        assert!(
            deleted.elapsed() < Duration::from_secs(60),
            "web-3 never left: {got:?}"
        );
    }
    let removed = deleted.elapsed();
    drop(servers.remove("web-3"));
    pod(&pods, "web-4", "node2", "web").await;
    pod_ips(&pods, "web-4").await;
    servers.insert(
        "web-4",
        sandbox
            .serve_pod("svc", "web-4", "web-4", &[8080], &[8080])
            .unwrap(),
    );

    // No ready endpoint: refused, fast.
    let empty: Service = serde_json::from_value(json!({"metadata": {"name": "empty"}, "spec": {
        "selector": {"app": "nothing"}, "ports": [{"port": 80, "targetPort": 8080}]}}))
    .unwrap();
    let empty = services
        .create(&PostParams::default(), &empty)
        .await
        .unwrap();
    let empty_to = addr(&empty.spec.unwrap().cluster_ip.unwrap(), 80);
    let got = ask_until(&client_ns, Proto::Tcp, empty_to, CONVERGE, |r| {
        matches!(r, Err(ConnectError::Refused(_)))
    })
    .await;
    assert!(
        matches!(got, Err(ConnectError::Refused(_))),
        "{empty_to}: {got:?}"
    );
    let t = Instant::now();
    let again = ask(&client_ns, Proto::Tcp, empty_to).await;
    let refused_in = t.elapsed();
    assert!(matches!(again, Err(ConnectError::Refused(_))), "{again:?}");
    assert!(
        refused_in < Duration::from_secs(1),
        "refusal took {refused_in:?}"
    );

    // A switch LB rule with static endpoints (the backends' IPv4 addresses) on a Vip of the
    // subnet (type switch_lb_vip: a port answering ARP for it with the gateway's MAC) answers
    // on it.
    let vips: Api<kube_ovn_common::crd::Vip> = Api::all(client.clone());
    let vip: kube_ovn_common::crd::Vip = serde_json::from_value(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Vip", "metadata": {"name": "slr-vip"},
        "spec": {"subnet": "dual", "namespace": "svc", "type": "switch_lb_vip", "v4ip": "10.66.0.250"},
    }))
    .unwrap();
    vips.create(&PostParams::default(), &vip).await.unwrap();
    let web1_ip = pod_ips(&pods, "web-1").await[0].clone();
    let web4_ip = pod_ips(&pods, "web-4").await[0].clone();
    let rules: Api<kube_ovn_common::crd::SwitchLbRule> = Api::all(client.clone());
    let rule: kube_ovn_common::crd::SwitchLbRule = serde_json::from_value(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "SwitchLBRule", "metadata": {"name": "static"},
        "spec": {"vip": "10.66.0.250", "namespace": "svc", "endpoints": [web1_ip, web4_ip],
                 "ports": [{"name": "http", "port": 8081, "targetPort": 8080, "protocol": "TCP"}]},
    }))
    .unwrap();
    rules.create(&PostParams::default(), &rule).await.unwrap();
    let slr_to = addr("10.66.0.250", 8081);
    let got = ask_until(&client_ns, Proto::Tcp, slr_to, CONVERGE, |r| r.is_ok()).await;
    assert!(
        got.as_deref().is_ok_and(|b| b == "web-1" || b == "web-4"),
        "SwitchLBRule {slr_to}: {got:?}\n{}",
        probe::report(&state)
    );

    // Deleting the Service removes its VIPs; its address no longer answers.
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = Instant::now() + CONVERGE;
    while nb_vips(&state, "cluster-tcp-loadbalancer").contains(&format!("\"{}:80\"", ips[0])) {
        assert!(
            Instant::now() < deadline,
            "the deleted Service's VIP stayed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The flows follow the NB a moment later.
    let got = ask_until(&client_ns, Proto::Tcp, tcp4, CONVERGE, |r| r.is_err()).await;
    assert!(got.is_err(), "the deleted Service still answers: {got:?}");

    println!(
        "service paths: unready backend out of rotation in {:.2}s, new backend in rotation in {:.2}s, deleted backend out in {:.2}s, refusal without endpoints in {:.1}ms",
        unready.as_secs_f64(),
        joined.as_secs_f64(),
        removed.as_secs_f64(),
        refused_in.as_secs_f64() * 1000.0
    );
    drop(servers);
    sandbox.down().await.unwrap();
    assert!(leftovers(&run_dir, &prefix).is_empty());
}
