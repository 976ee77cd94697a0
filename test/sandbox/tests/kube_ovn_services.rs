//! Services end to end with kube-ovn-rs: pods reach the API through the `kubernetes` Service
//! (10.96.0.1:443 → node1's InternalIP:6443), and a ClusterIP Service with a named target port
//! reaches its backend pod's `serve-pod` server over TCP and UDP.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, PostParams};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::workload::{connect, ConnectError, Proto};
use kube_ovn_sandbox::{leftovers, probe, Sandbox, SandboxConfig};
use serde_json::json;

const POD_READY: Duration = Duration::from_secs(90);

/// Retries `connect` until it answers or `within` passes (a new VIP takes a moment to reach
/// every node's flows); returns the last result.
async fn connect_until_reply(
    netns: &str,
    proto: Proto,
    to: SocketAddr,
    payload: &'static [u8],
    within: Duration,
) -> Result<String, ConnectError> {
    let deadline = Instant::now() + within;
    loop {
        let ns = netns.to_string();
        let got = tokio::task::spawn_blocking(move || {
            connect(&ns, proto, to, payload, Duration::from_secs(2))
        })
        .await
        .unwrap();
        if got.is_ok() || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_reach_the_api_and_services_through_cluster_ips() {
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(KubeOvnBuild::of_test_binary().expect("kube-ovn build"));
    let (run_dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let client = sandbox.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, node, app) in [("client", "node2", "client"), ("web-1", "node1", "web")] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x",
                "ports": [{"name": "http", "containerPort": 8080}]}]},
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    probe::running_pod_ip(&pods, "client", POD_READY)
        .await
        .unwrap();
    probe::running_pod_ip(&pods, "web-1", POD_READY)
        .await
        .unwrap();
    let client_ns = state.pod_netns("default", "client");

    let api: SocketAddr = "10.96.0.1:443".parse().unwrap();
    let reply = connect_until_reply(
        &client_ns,
        Proto::Tcp,
        api,
        b"GET /version HTTP/1.1\r\nHost: kubernetes\r\n\r\n",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        reply
            .as_deref()
            .is_ok_and(|r| r.starts_with("HTTP/1.1 200")),
        "API through the kubernetes Service: {reply:?}\n{}",
        probe::report(&state)
    );

    let _server = sandbox
        .serve_pod("default", "web-1", "web-1", &[8080], &[8080])
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "udp", "port": 53, "protocol": "UDP", "targetPort": 8080}]}}))
    .unwrap();
    let svc = services.create(&PostParams::default(), &svc).await.unwrap();
    let vip = svc.spec.unwrap().cluster_ip.unwrap();
    let tcp: SocketAddr = format!("{vip}:80").parse().unwrap();
    let udp: SocketAddr = format!("{vip}:53").parse().unwrap();
    let reply =
        connect_until_reply(&client_ns, Proto::Tcp, tcp, b"", Duration::from_secs(30)).await;
    assert_eq!(reply.as_deref(), Ok("web-1"), "TCP through {tcp}");
    let reply =
        connect_until_reply(&client_ns, Proto::Udp, udp, b"hi", Duration::from_secs(30)).await;
    assert_eq!(reply.as_deref(), Ok("web-1"), "UDP through {udp}");

    sandbox.down().await.unwrap();
    assert!(leftovers(&run_dir, &prefix).is_empty());
}
