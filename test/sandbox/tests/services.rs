//! Services in a sandbox with kubelets but without kube-ovn: the `kubernetes` Service's endpoint
//! (node1's InternalIP:6443, answered by the API and kept as the apiserver's reconciler writes it),
//! readiness probes run by the kubelet stand-in from the node against pods wired by a small
//! veth CNI plugin, and the EndpointSlice controller following those pods' readiness.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube_ovn_sandbox::workload::{connect, Proto};
use kube_ovn_sandbox::{leftovers, NodeInfo, Sandbox, SandboxConfig};
use serde_json::json;

/// Wires each pod with a veth pair to its node: 10.99.<node>.<n>/32 in the pod, a host route on
/// the node, a default route in the pod (the node answers ARP for its own address).
const VETH_PLUGIN: &str = r#"#!/bin/sh
dir=$(dirname "$0")
cat > /dev/null
case "$CNI_COMMAND" in
ADD)
  n=$(( $(cat "$dir/n" 2>/dev/null || echo 10) + 1 )); echo $n > "$dir/n"
  ip="$(cat "$dir/prefix").$n"
  host="vp$n"
  ip link add "$host" type veth peer name "$CNI_IFNAME" netns "$CNI_NETNS" || exit 1
  ip link set "$host" up
  ip route add "$ip/32" dev "$host"
  ip -n "$(basename "$CNI_NETNS")" addr add "$ip/32" dev "$CNI_IFNAME"
  ip -n "$(basename "$CNI_NETNS")" link set "$CNI_IFNAME" up
  ip -n "$(basename "$CNI_NETNS")" link set lo up
  ip -n "$(basename "$CNI_NETNS")" route add default dev "$CNI_IFNAME"
  echo "{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"$CNI_IFNAME\",\"sandbox\":\"$CNI_NETNS\"}],\"ips\":[{\"address\":\"$ip/32\",\"interface\":0}]}";;
DEL) ;;
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}';;
esac
"#;

fn install_plugin(node: &NodeInfo, index: usize) {
    let bin = node.cni_bin_dir().join("veth");
    std::fs::write(&bin, VETH_PLUGIN).unwrap();
    std::fs::write(node.cni_bin_dir().join("prefix"), format!("10.99.{index}")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        node.cni_conf_dir().join("10-veth.conflist"),
        json!({"cniVersion": "1.0.0", "name": "vethnet", "plugins": [{"type": "veth"}]})
            .to_string(),
    )
    .unwrap();
}

async fn eventually<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn condition(pod: &Pod, kind: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
}

fn slice_ready(slices: &[EndpointSlice]) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .map(|e| {
            (
                e.addresses[0].clone(),
                e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubernetes_endpoint_probes_and_slices() {
    let config = SandboxConfig::isolated(2);
    let (run_dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox up");
    let state = sandbox.state().clone();
    let client = sandbox.client();
    for (i, n) in state.nodes.iter().enumerate() {
        install_plugin(n, i + 1);
    }

    // The kubernetes Service and its EndpointSlice, as the real apiserver keeps them.
    let services: Api<Service> = Api::default_namespaced(client.clone());
    let k = services.get("kubernetes").await.unwrap();
    assert_eq!(k.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.1"));
    let slices: Api<EndpointSlice> = Api::default_namespaced(client.clone());
    let ks = slices.get("kubernetes").await.unwrap();
    let node1 = state.nodes[0].ip.to_string();
    assert_eq!(ks.address_type, "IPv4");
    assert_eq!(ks.endpoints[0].addresses, vec![node1.clone()]);
    let port = &ks.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("https"), Some(6443), Some("TCP"))
    );
    assert_eq!(
        ks.metadata.labels.clone().unwrap(),
        [(
            "kubernetes.io/service-name".to_string(),
            "kubernetes".to_string()
        )]
        .into()
    );
    // The endpoint answers the API from another node.
    let endpoint: SocketAddr = format!("{node1}:6443").parse().unwrap();
    let netns2 = state.nodes[1].netns.clone();
    let reply = tokio::task::spawn_blocking(move || {
        connect(
            &netns2,
            Proto::Tcp,
            endpoint,
            b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n",
            Duration::from_secs(5),
        )
    })
    .await
    .unwrap()
    .expect("API through node1's InternalIP");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // Tampering is undone.
    slices
        .patch(
            "kubernetes",
            &PatchParams::default(),
            &Patch::Merge(json!({"endpoints": [{"addresses": ["10.0.0.1"]}]})),
        )
        .await
        .unwrap();
    eventually(
        "kubernetes slice restored",
        Duration::from_secs(15),
        || async {
            let s = slices.get("kubernetes").await.ok()?;
            (s.endpoints[0].addresses == vec![node1.clone()]).then_some(())
        },
    )
    .await;

    // Readiness probes: tcpSocket on a pod port, period 1 s, one failure flips it.
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let web: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"nodeName": "node2", "containers": [{"name": "c", "image": "x",
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1, "failureThreshold": 1}}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &web).await.unwrap();
    let plain: Pod = serde_json::from_value(json!({
        "metadata": {"name": "plain", "labels": {"app": "web"}},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &plain).await.unwrap();
    let web_ip = eventually(
        "web running, not ready",
        Duration::from_secs(20),
        || async {
            let p = pods.get("web").await.ok()?;
            let ip = p.status.as_ref()?.pod_ip.clone()?;
            (condition(&p, "Ready").as_deref() == Some("False")
                && condition(&p, "ContainersReady").as_deref() == Some("False"))
            .then_some(ip)
        },
    )
    .await;
    let plain_ip = eventually(
        "plain ready without probes",
        Duration::from_secs(20),
        || async {
            let p = pods.get("plain").await.ok()?;
            (condition(&p, "Ready").as_deref() == Some("True")).then(|| p.status?.pod_ip)?
        },
    )
    .await;

    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let web_slices = || async {
        slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .map(|l| l.items)
            .unwrap_or_default()
    };
    let mut want = vec![(plain_ip.clone(), true), (web_ip.clone(), false)];
    want.sort();
    eventually(
        "slice with web not ready",
        Duration::from_secs(15),
        || async { (slice_ready(&web_slices().await) == want).then_some(()) },
    )
    .await;

    // A server makes the probe pass; the pod and its endpoint become ready.
    let server = sandbox
        .serve_pod("default", "web", "web", &[8080], &[])
        .unwrap();
    let reply = {
        let ns = state.nodes[1].netns.clone();
        let to: SocketAddr = format!("{web_ip}:8080").parse().unwrap();
        tokio::task::spawn_blocking(move || {
            connect(&ns, Proto::Tcp, to, b"", Duration::from_secs(5))
        })
        .await
        .unwrap()
    };
    assert_eq!(
        reply.as_deref(),
        Ok("web"),
        "the pod's server from its node"
    );
    eventually("web ready", Duration::from_secs(15), || async {
        let p = pods.get("web").await.ok()?;
        (condition(&p, "Ready").as_deref() == Some("True")).then_some(())
    })
    .await;
    let mut want = vec![(plain_ip.clone(), true), (web_ip.clone(), true)];
    want.sort();
    eventually("slice with web ready", Duration::from_secs(15), || async {
        (slice_ready(&web_slices().await) == want).then_some(())
    })
    .await;
    // The server goes: the probe fails and readiness goes with it.
    drop(server);
    eventually("web not ready again", Duration::from_secs(15), || async {
        let p = pods.get("web").await.ok()?;
        (condition(&p, "Ready").as_deref() == Some("False")).then_some(())
    })
    .await;

    // Probes keep running every second, but an unchanged result writes nothing.
    let rv = pods.get("web").await.unwrap().metadata.resource_version;
    let quiet_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < quiet_until {
        assert_eq!(
            pods.get("web").await.unwrap().metadata.resource_version,
            rv,
            "status rewritten without a change"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // httpGet: a hostNetwork pod on node1 probing the API relay on its own InternalIP.
    for (name, path) in [("http-ok", "/version"), ("http-404", "/no/such/path")] {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodeName": "node1", "hostNetwork": true, "containers": [{"name": "c", "image": "x",
                "readinessProbe": {"httpGet": {"path": path, "port": 6443}, "periodSeconds": 1}}]},
        }))
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    eventually("http-ok ready", Duration::from_secs(15), || async {
        let p = pods.get("http-ok").await.ok()?;
        (condition(&p, "Ready").as_deref() == Some("True")).then_some(())
    })
    .await;
    let p = pods.get("http-404").await.unwrap();
    assert_eq!(
        condition(&p, "Ready").as_deref(),
        Some("False"),
        "404 is a failed probe"
    );

    let report = sandbox.down().await.unwrap();
    assert!(report.namespaces > 0);
    assert!(
        leftovers(&run_dir, &prefix).is_empty(),
        "{:?}",
        leftovers(&run_dir, &prefix)
    );
}
