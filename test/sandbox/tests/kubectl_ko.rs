//! `kubectl ko` against the sandbox: its component subcommands run upstream's tools through
//! `pods/exec` of the component pods (ovn-central, ovs-ovn), as in a cluster, and their output
//! and exit codes come back: `nbctl show` lists the pods' ports, `sbctl show` the chassis,
//! `vsctl <node> show` and `ofctl <node> dump-flows br-int` that node's OVS, `nb dbstatus` every
//! ovn-central pod's databases, `trace` follows a pod's packet to a pod on the other node
//! through `ovn-trace` and `ofproto/trace`, and in a raft sandbox `nb status` names the leader.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::{probe, Sandbox, SandboxConfig, SandboxState};
use serde_json::json;

const READY: Duration = Duration::from_secs(60);

/// Runs `kubectl-ko args…` and returns (exit code, stdout, stderr).
async fn ko(build: &KubeOvnBuild, state: &SandboxState, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(&build.kubectl_ko);
    cmd.arg(format!("--kubeconfig={}", state.kubeconfig.display()))
        .args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("kubectl-ko runs"))
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn sandbox(raft: bool) -> (Sandbox, KubeOvnBuild) {
    let build = KubeOvnBuild::of_test_binary().expect("kube-ovn build");
    let mut config = SandboxConfig::isolated(2);
    config.raft = raft;
    config.kube_ovn = Some(build.clone());
    (Sandbox::up(config).await.expect("sandbox"), build)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn component_subcommands_run_in_the_component_pods() {
    let (sandbox, build) = sandbox(false).await;
    let state = sandbox.state().clone();
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), "default");
    for (name, node) in [("web", "node1"), ("cli", "node2")] {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}}))
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    let mut ips = Vec::new();
    for name in ["web", "cli"] {
        ips.push(
            probe::running_pod_ip(&pods, name, READY)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}\n{}", probe::report(&state))),
        );
    }
    let web_ip = ips[0].clone();

    let (code, out, err) = ko(&build, &state, &["nbctl", "show"]).await;
    assert_eq!(code, 0, "nbctl show: {err}");
    for want in [
        "switch",
        "(ovn-default)",
        "port web.default",
        "port cli.default",
        "router",
    ] {
        assert!(out.contains(want), "nbctl show lacks {want:?}:\n{out}");
    }
    // Arguments pass through, hyphens included, and so does a failure's exit code.
    let (code, out, _) = ko(
        &build,
        &state,
        &[
            "nbctl",
            "--bare",
            "--columns=name",
            "find",
            "logical_switch",
            "name=join",
        ],
    )
    .await;
    assert_eq!((code, out.trim()), (0, "join"));
    let (code, _, err) = ko(
        &build,
        &state,
        &["nbctl", "get", "logical_switch", "nosuch", "name"],
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("nosuch"), "{err}");

    let (code, out, err) = ko(&build, &state, &["sbctl", "show"]).await;
    assert_eq!(code, 0, "sbctl show: {err}");
    assert!(out.matches("Chassis").count() >= 2, "{out}");
    assert!(
        out.contains("web.default") && out.contains("cli.default"),
        "{out}"
    );

    let (code, out, err) = ko(&build, &state, &["vsctl", "node1", "show"]).await;
    assert_eq!(code, 0, "vsctl show: {err}");
    assert!(out.contains("Bridge br-int"), "{out}");
    let (code, out, _) = ko(
        &build,
        &state,
        &[
            "vsctl",
            "node2",
            "--bare",
            "--columns=name",
            "find",
            "interface",
            "external_ids:iface-id=cli.default",
        ],
    )
    .await;
    assert_eq!(code, 0);
    assert!(!out.trim().is_empty(), "cli's interface is on node2");
    let (code, out, _) = ko(
        &build,
        &state,
        &[
            "vsctl",
            "node1",
            "--bare",
            "--columns=name",
            "find",
            "interface",
            "external_ids:iface-id=cli.default",
        ],
    )
    .await;
    assert_eq!(
        (code, out.trim()),
        (0, ""),
        "cli's interface is not on node1"
    );
    let (code, out, err) = ko(&build, &state, &["ofctl", "node1", "dump-flows", "br-int"]).await;
    assert_eq!(code, 0, "ofctl dump-flows: {err}");
    assert!(out.contains("table="), "{out}");
    let (code, _, err) = ko(&build, &state, &["vsctl", "no-such-node", "show"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("no-such-node"), "{err}");

    // trace: cli (node2) to web (node1), a TCP SYN to port 80. The logical pipeline ends in
    // output to web's port; on node2's br-int the packet leaves through the Geneve tunnel.
    let (code, out, err) = ko(
        &build,
        &state,
        &["trace", "default/cli", &web_ip, "tcp", "80"],
    )
    .await;
    println!("kubectl ko trace default/cli {web_ip} tcp 80:\n{err}{out}");
    assert_eq!(code, 0, "trace: {err}\n{out}");
    let (ovn_part, ovs_part) = out
        .split_once("Start OVS Tracing")
        .unwrap_or_else(|| panic!("no OVS part:\n{out}"));
    assert!(ovn_part.contains("output to \"web.default\""), "{ovn_part}");
    assert!(err.contains("+ ovn-trace --ct=new"), "{err}");
    // The last datapath actions (after conntrack's recirculation) push a Geneve header
    // towards node1's tunnel endpoint.
    let node1_ip = state.node("node1").unwrap().ip.to_string();
    let last = ovs_part
        .lines()
        .rfind(|l| l.starts_with("Datapath actions:"))
        .unwrap_or_else(|| panic!("no datapath actions:\n{ovs_part}"));
    assert!(
        last.contains("tnl_push")
            && last.contains("geneve(")
            && last.contains(&format!("dst={node1_ip},")),
        "{last}"
    );
    // ovn-trace only, from node1's ovn0 port (node//node1), ICMP: routed from the join switch
    // through ovn-cluster to web's port, with no OVS part.
    let (code, out, err) = ko(
        &build,
        &state,
        &["ovn-trace", "node//node1", &web_ip, "icmp"],
    )
    .await;
    assert_eq!(code, 0, "ovn-trace: {err}\n{out}");
    assert!(out.contains("output to \"web.default\""), "{out}");
    assert!(
        out.contains("Using the logical gateway mac address"),
        "{out}"
    );
    assert!(!out.contains("Start OVS Tracing"), "{out}");
    // Bad arguments get upstream's usage and a failure.
    let (code, _, err) = ko(
        &build,
        &state,
        &["trace", "default/cli", &web_ip, "sctp", "80"],
    )
    .await;
    assert_ne!(code, 0);
    assert!(
        err.contains("invalid type sctp") && err.contains("Usage:"),
        "{err}"
    );

    let (code, out, err) = ko(&build, &state, &["nb", "dbstatus"]).await;
    assert_eq!(code, 0, "nb dbstatus: {err}");
    assert!(out.contains("get dbstatus in pod ovn-central-0"), "{out}");
    assert!(
        out.contains("nb db status") && out.contains("sb db status"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nb_status_names_the_raft_leader() {
    let (sandbox, build) = sandbox(true).await;
    let state = sandbox.state().clone();
    let (code, out, err) = ko(&build, &state, &["nb", "status"]).await;
    assert_eq!(code, 0, "nb status: {err}");
    assert!(
        out.contains("Role: leader"),
        "the labelled pod leads:\n{out}"
    );
    assert!(out.contains("Leader: self"), "{out}");
    assert!(out.contains("Servers:"), "{out}");
    let (code, out, err) = ko(&build, &state, &["sb", "status"]).await;
    assert_eq!(code, 0, "sb status: {err}");
    assert!(
        out.contains("OVN_Southbound") || out.contains("Role: leader"),
        "{out}"
    );
    let (code, _, err) = ko(&build, &state, &["nb", "kick"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("usage"), "{err}");
}
