//! OVN's own daemons crash and come back under a running kube-ovn-rs: after ovn-controller on a
//! node and ovn-northd are killed with SIGKILL and restarted, existing pods keep talking across
//! nodes and new pods on the restarted node get wired and talk too.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::{central, node, probe, Sandbox, SandboxConfig};
use serde_json::json;

fn build() -> KubeOvnBuild {
    // Test binaries live in target/<profile>/deps; the product binaries one level up.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    KubeOvnBuild::beside(dir, &source).unwrap_or_else(|| {
        panic!(
            "kube-ovn binaries missing in {}: build the workspace first (cargo test --workspace --all-targets does)",
            dir.display()
        )
    })
}

async fn create_running(pods: &Api<Pod>, name: &str, node: &str) -> String {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(p) = pods.get(name).await {
            let st = p.status.unwrap_or_default();
            if st.phase.as_deref() == Some("Running") {
                if let Some(ip) = st.pod_ip {
                    return ip;
                }
            }
        }
        assert!(Instant::now() < deadline, "pod {name} never Running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_keep_and_gain_connectivity_across_ovn_controller_and_northd_crashes() {
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(build());
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), "default");
    let ns = |p: &str| state.pod_netns("default", p);
    let a = create_running(&pods, "a", "node1").await;
    let b = create_running(&pods, "b", "node2").await;
    probe::reach(&state, &ns("a"), &b).expect("across nodes before any crash");

    let node1 = state.node("node1").unwrap().clone();
    node::restart_ovn_controller(&node1).expect("ovn-controller restarted");
    probe::reach(&state, &ns("a"), &b).expect("existing pod after ovn-controller crash");
    probe::reach(&state, &ns("b"), &a).expect("back to it after ovn-controller crash");
    let c = create_running(&pods, "c", "node1").await;
    probe::reach(&state, &ns("c"), &b).expect("new pod on the restarted node");

    central::restart_northd(&state.run_dir, &state.central).expect("northd restarted");
    let d = create_running(&pods, "d", "node2").await;
    probe::reach(&state, &ns("d"), &c).expect("pod created after the northd crash");
    probe::reach(&state, &ns("a"), &d).expect("old pod to the new one");

    sandbox.down().await.expect("sandbox down");
}
