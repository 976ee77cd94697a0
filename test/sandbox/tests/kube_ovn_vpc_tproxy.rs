//! Kubelet probes of custom-VPC pods through TPROXY (seed 004, upstream's `--enable-tproxy`):
//! a custom VPC's addresses are not routed from the node, yet the kubelet stand-in's TCP
//! readiness probe (run from the node's namespace, as kubelet's) reaches a VPC pod because the
//! daemon intercepts the node's own connections to the pod's probe ports and relays them from
//! inside the pod's namespace. A port that no probe names stays unreachable from the node, as
//! does the pod from the other node; deleting the pod takes its rules away.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube_ovn_common::crd::{Subnet, Vpc};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::workload::ask_tcp;
use kube_ovn_sandbox::{leftovers, probe, sys, Sandbox, SandboxConfig};
use serde_json::{json, Value};

const READY: Duration = Duration::from_secs(60);
const PROBED: u16 = 8080;
const UNPROBED: u16 = 8081;

async fn create<K>(api: &Api<K>, obj: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let o: K = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &o).await.unwrap();
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubelet_probes_reach_custom_vpc_pods_through_tproxy() {
    let mut config = SandboxConfig::isolated(2);
    let mut build = KubeOvnBuild::of_test_binary().expect("kube-ovn build");
    build.daemon_args = vec!["--enable-tproxy=true".into()];
    config.kube_ovn = Some(build);
    let (run_dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let client = sandbox.client();
    create(
        &Api::<Namespace>::all(client.clone()),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns1"}}),
    )
    .await;
    create(
        &Api::<Vpc>::all(client.clone()),
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "vpc1"},
               "spec": {"namespaces": ["ns1"]}}),
    )
    .await;
    create(
        &Api::<Subnet>::all(client.clone()),
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "net1"},
               "spec": {"vpc": "vpc1", "cidrBlock": "10.0.1.0/24", "protocol": "IPv4",
                        "namespaces": ["ns1"]}}),
    )
    .await;
    // A pod takes its namespace's subnet once the controller knows the subnet (its status
    // shows the addresses it counted); one created before would go to the default subnet.
    let subnets: Api<Subnet> = Api::all(client.clone());
    probe::until(READY, "net1 reconciled", || async {
        let st = subnets
            .get("net1")
            .await
            .map_err(|e| e.to_string())?
            .status
            .unwrap_or_default();
        if st.v4_available_ip_range.is_empty() {
            Err(format!("status {st:?}"))
        } else {
            Ok(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", probe::report(&state)));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ns1");
    create(
        &pods,
        json!({"metadata": {"name": "web"},
               "spec": {"nodeName": "node2", "containers": [{"name": "c", "image": "x",
                   "readinessProbe": {"tcpSocket": {"port": PROBED}, "periodSeconds": 1}}]}}),
    )
    .await;
    let ip = probe::running_pod_ip(&pods, "web", READY)
        .await
        .unwrap_or_else(|e| panic!("web never ran: {e}\n{}", probe::report(&state)));
    assert!(ip.starts_with("10.0.1."), "{ip}");
    let _server = sandbox
        .serve_pod("ns1", "web", "web", &[PROBED, UNPROBED], &[])
        .unwrap();
    let started = std::time::Instant::now();
    probe::until(READY, "web Ready through its probe", || async {
        let p = pods.get("web").await.map_err(|e| e.to_string())?;
        if ready(&p) {
            Ok(())
        } else {
            Err(format!("{:?}", p.status.and_then(|s| s.conditions)))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", probe::report(&state)));
    let became_ready = started.elapsed();

    // The node's own connection to the probe port is answered by the pod.
    let node2 = state.node("node2").unwrap().netns.clone();
    let node1 = state.node("node1").unwrap().netns.clone();
    let addr = |port| SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port);
    let got = ask_tcp(&node2, addr(PROBED)).await;
    assert_eq!(got.as_deref().map(str::trim), Ok("web"), "{got:?}");
    // Only probe ports, and only on the pod's node.
    assert!(ask_tcp(&node2, addr(UNPROBED)).await.is_err());
    assert!(ask_tcp(&node1, addr(PROBED)).await.is_err());
    let table = || {
        sys::run_command(sys::in_netns(&node2, "nft").args([
            "list",
            "table",
            "ip",
            "kube-ovn-tproxy",
        ]))
        .unwrap()
    };
    assert!(
        table().contains(&format!("ip daddr {ip} tcp dport {PROBED}")),
        "{}",
        table()
    );

    // The pod's deletion takes its rules away.
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    probe::until(READY, "web's tproxy rules gone", || async {
        let t = table();
        if t.contains(&ip) {
            Err(t)
        } else {
            Ok(())
        }
    })
    .await
    .unwrap();
    println!(
        "tproxy: the custom-VPC pod became Ready {:.1}s after it started serving its probe port",
        became_ready.as_secs_f64()
    );
    sandbox.down().await.expect("sandbox down");
    assert!(leftovers(&run_dir, &prefix).is_empty());
}
