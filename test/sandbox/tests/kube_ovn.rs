//! The whole stack, as a user gets it: sandbox nodes running kube-ovn-rs (controller, a daemon
//! and the `kube-ovn` CNI on every node). Pods created through the API get addresses from the
//! controller, are wired by the daemons through the real CNI contract, reach each other on the
//! same node and across nodes (ping and TCP), and are fully unwired when deleted.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::{leftovers, probe, sys, Sandbox, SandboxConfig};
use serde_json::json;

/// How long a new pod may take to be wired and Running.
const POD_READY: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_wired_by_kube_ovn_and_talk_within_and_across_nodes() {
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(KubeOvnBuild::of_test_binary().expect("kube-ovn build"));
    let (run_dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), "default");
    for (name, node) in [("a1", "node1"), ("a2", "node1"), ("b1", "node2")] {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let a1 = probe::running_pod_ip(&pods, "a1", POD_READY).await.unwrap();
    let a2 = probe::running_pod_ip(&pods, "a2", POD_READY).await.unwrap();
    let b1 = probe::running_pod_ip(&pods, "b1", POD_READY).await.unwrap();
    for ip in [&a1, &a2, &b1] {
        assert!(ip.starts_with("10.16."), "{ip} is not from ovn-default");
    }
    let ns = |p: &str| state.pod_netns("default", p);
    probe::reach(&state, &ns("a1"), &a2).expect("same node");
    probe::reach(&state, &ns("a1"), &b1).expect("across nodes");
    probe::reach(&state, &ns("b1"), &a1).expect("back across nodes");
    probe::reach(&state, &ns("a1"), "10.16.0.1").expect("the subnet gateway (router port)");

    // A second subnet, bound to a namespace: its pod talks to the first subnet's pods through
    // the VPC router, on another node.
    let subnets: Api<kube::api::DynamicObject> = Api::all_with(
        sandbox.client(),
        &kube::api::ApiResource {
            group: "kubeovn.io".into(),
            version: "v1".into(),
            api_version: "kubeovn.io/v1".into(),
            kind: "Subnet".into(),
            plural: "subnets".into(),
        },
    );
    let subnet: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "team"},
        "spec": {"cidrBlock": "10.70.0.0/24", "namespaces": ["team"]}
    }))
    .unwrap();
    subnets
        .create(&PostParams::default(), &subnet)
        .await
        .unwrap();
    // The controller must know the subnet before the namespace's pod arrives (its watches are
    // independent streams), so wait for it to report Ready, as a user would.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = subnets.get("team").await.ok().is_some_and(|s| {
            s.data["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        });
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "subnet team never Ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ns_obj: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
    )
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Namespace>::all(sandbox.client())
        .create(&PostParams::default(), &ns_obj)
        .await
        .unwrap();
    let team: Api<Pod> = Api::namespaced(sandbox.client(), "team");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t1", "namespace": "team"},
        "spec": {"nodeName": "node2", "containers": [{"name": "c", "image": "x"}]}
    }))
    .unwrap();
    team.create(&PostParams::default(), &pod).await.unwrap();
    let t1 = probe::running_pod_ip(&team, "t1", POD_READY).await.unwrap();
    assert!(
        t1.starts_with("10.70.0."),
        "{t1} is not from the team subnet"
    );
    let t1_ns = state.pod_netns("team", "t1");
    probe::reach(&state, &t1_ns, &a1).expect("team subnet → ovn-default across nodes");
    probe::reach(&state, &ns("a2"), &t1).expect("ovn-default → team subnet across nodes");

    // TCP across nodes: a listener in b1, bytes from a1 arrive intact.
    let received = state.run_dir.join("received");
    let mut listener = sys::in_netns(&ns("b1"), "sh")
        .args([
            "-c",
            &format!("exec nc -l -p 7001 > {}", received.display()),
        ])
        .spawn()
        .unwrap();
    let payload = "kube-ovn-rs ".repeat(2000);
    let sent = sys::wait_for(Duration::from_secs(15), || {
        let mut nc = sys::in_netns(&ns("a1"), "nc")
            .args(["-N", "-w", "2", &b1, "7001"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        let ok = nc
            .stdin
            .take()
            .unwrap()
            .write_all(payload.as_bytes())
            .is_ok();
        ok && nc.wait().is_ok_and(|s| s.success())
    });
    assert!(sent, "TCP from a1 to b1 failed");
    assert!(sys::wait_for(Duration::from_secs(10), || listener
        .try_wait()
        .ok()
        .flatten()
        .is_some()));
    assert_eq!(std::fs::read_to_string(&received).unwrap(), payload);

    // Delete: the pod's namespace, OVS port and logical port go.
    pods.delete("b1", &DeleteParams::default()).await.unwrap();
    let node2 = state.node("node2").unwrap().clone();
    let gone = sys::wait_for(Duration::from_secs(30), || {
        let netns_gone = !Path::new(&sys::netns_path(&ns("b1"))).exists();
        let port_gone = !node2
            .vsctl(["--bare", "--columns=external_ids", "list", "Interface"])
            .unwrap_or_default()
            .contains("b1.default");
        let lsp_gone = !sys::run(
            "ovn-nbctl",
            [format!("--db={}", state.central.nb), "ls-list".into()],
        )
        .and_then(|_| {
            sys::run(
                "ovn-nbctl",
                [
                    format!("--db={}", state.central.nb),
                    "lsp-list".into(),
                    "ovn-default".into(),
                ],
            )
        })
        .unwrap_or_default()
        .contains("b1.default");
        netns_gone && port_gone && lsp_gone
    });
    assert!(gone, "b1 not fully removed");

    sandbox.down().await.unwrap();
    let left = leftovers(&run_dir, &prefix);
    assert!(left.is_empty(), "teardown left {left:?}");
}
