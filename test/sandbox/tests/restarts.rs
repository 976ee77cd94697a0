//! OVN's own daemons crash and come back under a running kube-ovn-rs: after ovn-controller on a
//! node and ovn-northd are killed with SIGKILL and restarted, existing pods keep talking across
//! nodes and new pods on the restarted node get wired and talk too.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::{central, node, probe, Sandbox, SandboxConfig};
use serde_json::json;

async fn create_running(pods: &Api<Pod>, name: &str, node: &str) -> String {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    probe::running_pod_ip(pods, name, Duration::from_secs(90))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_keep_and_gain_connectivity_across_ovn_controller_and_northd_crashes() {
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(KubeOvnBuild::of_test_binary().expect("kube-ovn build"));
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), "default");
    let ns = |p: &str| state.pod_netns("default", p);
    let a = create_running(&pods, "a", "node1").await;
    let b = create_running(&pods, "b", "node2").await;
    probe::reach(&state, &ns("a"), &b).expect("across nodes before any crash");

    let node1 = state.node("node1").unwrap().clone();
    node::restart_ovn_controller(&node1, Duration::ZERO).expect("ovn-controller restarted");
    probe::reach(&state, &ns("a"), &b).expect("existing pod after ovn-controller crash");
    probe::reach(&state, &ns("b"), &a).expect("back to it after ovn-controller crash");
    let c = create_running(&pods, "c", "node1").await;
    probe::reach(&state, &ns("c"), &b).expect("new pod on the restarted node");

    central::restart_northd(&state.run_dir, &state.central, Duration::ZERO)
        .expect("northd restarted");
    let d = create_running(&pods, "d", "node2").await;
    probe::reach(&state, &ns("d"), &c).expect("pod created after the northd crash");
    probe::reach(&state, &ns("a"), &d).expect("old pod to the new one");

    sandbox.down().await.expect("sandbox down");
}
