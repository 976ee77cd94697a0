//! NetworkPolicy with real packets through kube-ovn-rs on two nodes: a default-deny ingress
//! policy cuts a pod off (its node's readiness probes still reach it), an allow rule for one
//! client label and one port lets exactly that through, and deleting the policies restores
//! everything.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, PostParams};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::workload::{ask_tcp, until_reach};
use kube_ovn_sandbox::{leftovers, probe, Sandbox, SandboxConfig};
use serde_json::{json, Value};

const POD_READY: Duration = Duration::from_secs(90);
const CONVERGE: Duration = Duration::from_secs(30);

async fn until(netns: &str, to: SocketAddr, reach: bool) -> (bool, Duration) {
    until_reach(netns, to, reach, CONVERGE).await
}

async fn pod(api: &Api<Pod>, name: &str, node: &str, labels: Value) {
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x",
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]},
    }))
    .unwrap();
    api.create(&PostParams::default(), &p).await.unwrap();
}

async fn policy(api: &Api<NetworkPolicy>, name: &str, spec: Value) {
    let np: NetworkPolicy =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    api.create(&PostParams::default(), &np).await.unwrap();
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policies_cut_and_allow_real_traffic() {
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(KubeOvnBuild::of_test_binary().expect("kube-ovn build"));
    let (run_dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let client = sandbox.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pod(&pods, "server", "node1", json!({"app": "server"})).await;
    pod(&pods, "friend", "node2", json!({"role": "friend"})).await;
    pod(&pods, "stranger", "node2", json!({"role": "stranger"})).await;
    let mut servers = Vec::new();
    for name in ["server", "friend", "stranger"] {
        probe::running_pod_ip(&pods, name, POD_READY).await.unwrap();
        servers.push(
            sandbox
                .serve_pod("default", name, name, &[8080, 9090], &[])
                .unwrap(),
        );
    }
    let ip: IpAddr = probe::running_pod_ip(&pods, "server", POD_READY)
        .await
        .unwrap()
        .parse()
        .unwrap();
    let (http, other) = (SocketAddr::new(ip, 8080), SocketAddr::new(ip, 9090));
    let (friend, stranger) = (
        state.pod_netns("default", "friend"),
        state.pod_netns("default", "stranger"),
    );
    for (ns, to) in [(&friend, http), (&stranger, http), (&friend, other)] {
        let (ok, _) = until(ns, to, true).await;
        assert!(
            ok,
            "{to} from {ns} before any policy\n{}",
            probe::report(&state)
        );
    }

    // Default deny ingress on the server: nobody gets in.
    let nps: Api<NetworkPolicy> = Api::namespaced(client.clone(), "default");
    policy(
        &nps,
        "deny-server",
        json!({"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"]}),
    )
    .await;
    let (ok, deny_in) = until(&friend, http, false).await;
    assert!(ok, "the default deny did not cut {http} off");
    assert!(ask_tcp(&stranger, http).await.is_err());
    // The node's own traffic (the readiness probe) still reaches it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        assert!(
            ready(&pods.get("server").await.unwrap()),
            "the server went unready under a default deny: the node's probes were cut"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Allow friends on the http port only.
    policy(
        &nps,
        "allow-friends",
        json!({"podSelector": {"matchLabels": {"app": "server"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "friend"}}}],
                            "ports": [{"protocol": "TCP", "port": "http"}]}]}),
    )
    .await;
    let (ok, allow_in) = until(&friend, http, true).await;
    assert!(ok, "the allow rule did not open {http} to friend");
    assert!(ask_tcp(&stranger, http).await.is_err(), "a stranger got in");
    assert!(
        ask_tcp(&friend, other).await.is_err(),
        "friend got in on another port"
    );

    // Deleting the policies restores everything.
    for n in ["deny-server", "allow-friends"] {
        nps.delete(n, &DeleteParams::default()).await.unwrap();
    }
    let (ok, open_in) = until(&stranger, http, true).await;
    assert!(ok, "{http} stayed closed after the policies went");
    assert!(until(&friend, other, true).await.0);
    println!(
        "netpol paths: default deny in effect after {:.2}s, allow after {:.2}s, removal after {:.2}s",
        deny_in.as_secs_f64(),
        allow_in.as_secs_f64(),
        open_in.as_secs_f64()
    );
    drop(servers);
    sandbox.down().await.unwrap();
    assert!(leftovers(&run_dir, &prefix).is_empty());
}

/// Upstream's "lax" enforcement (`ovn.kubernetes.io/network_policy_enforcement: lax`, v1.15)
/// blocks only TCP/UDP/SCTP, so a deny-all policy still lets ping through; "standard" blocks it
/// too. With `enable_log` and `log_acl_actions: drop`, the dropped packets are logged by the
/// node's ovn-controller under the policy's ACL name.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lax_enforcement_passes_icmp_and_drops_are_logged() {
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(KubeOvnBuild::of_test_binary().expect("kube-ovn build"));
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let client = sandbox.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pod(&pods, "server", "node1", json!({"app": "server"})).await;
    pod(&pods, "client", "node2", json!({"role": "client"})).await;
    probe::running_pod_ip(&pods, "server", POD_READY)
        .await
        .unwrap();
    let _server = sandbox
        .serve_pod("default", "server", "server", &[8080], &[])
        .unwrap();
    let ip = probe::running_pod_ip(&pods, "server", POD_READY)
        .await
        .unwrap();
    probe::running_pod_ip(&pods, "client", POD_READY)
        .await
        .unwrap();
    let http = SocketAddr::new(ip.parse().unwrap(), 8080);
    let cli = state.pod_netns("default", "client");
    assert!(until(&cli, http, true).await.0, "{http} before any policy");

    let nps: Api<NetworkPolicy> = Api::namespaced(client.clone(), "default");
    let np: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "deny-server", "annotations": {
            "ovn.kubernetes.io/network_policy_enforcement": "lax",
            "ovn.kubernetes.io/enable_log": "true",
            "ovn.kubernetes.io/log_acl_actions": "drop"}},
        "spec": {"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"]},
    }))
    .unwrap();
    nps.create(&PostParams::default(), &np).await.unwrap();
    assert!(until(&cli, http, false).await.0, "lax deny did not cut TCP");
    probe::reach(&state, &cli, &ip).expect("lax enforcement lets ICMP through");

    // The dropped SYNs are in node1's ovn-controller log, under the policy's ACL name.
    let log = state.node("node1").unwrap().dir.join("ovn-controller.log");
    let logged = probe::until(CONVERGE, "an acl_log line for deny-server", || async {
        let _ = ask_tcp(&cli, http).await;
        let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
        text.lines()
            .find(|l| {
                l.contains("acl_log")
                    && l.contains("verdict=drop")
                    && l.contains("default/deny-server")
            })
            .map(str::to_string)
            .ok_or_else(|| "not logged yet".to_string())
    })
    .await
    .unwrap();
    assert!(logged.contains("tcp"), "{logged}");

    // Standard enforcement drops ICMP as well.
    nps.patch(
        "deny-server",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"annotations": {
            "ovn.kubernetes.io/network_policy_enforcement": "standard"}}})),
    )
    .await
    .unwrap();
    let blocked = kube_ovn_sandbox::sys::wait_for(CONVERGE, || {
        !probe::ping(&cli, &ip, Duration::from_millis(1500))
    });
    assert!(blocked, "standard enforcement still lets ICMP through");
    assert!(!probe::ping(&cli, &ip, Duration::from_secs(3)));
    nps.delete("deny-server", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        until(&cli, http, true).await.0,
        "{http} after the policy is gone"
    );
    sandbox.down().await.expect("sandbox down");
}
