//! `kubectl ko diagnose` against a sandbox with the pinger DaemonSet: the installation checks
//! (CRDs, RBAC, the component Deployments and DaemonSets adopted from the sandbox's pods, one
//! leader behind each OVN Service) pass, each node's kube-ovn-pinger runs one job-mode round
//! through `pods/exec` (OVS and ovn-controller answer on their control sockets, every OVS port
//! is bound in the SB, every pinger pod and node answers ICMP), a port OVS has but the SB does
//! not bind is reported, `IPPorts` checks given targets both ways, and the NodePort Service made
//! for the run is gone afterwards.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::{probe, Sandbox, SandboxConfig, SandboxState};

/// Runs `kubectl-ko args…` without kube-proxy checks (the sandbox has no kube-proxy health
/// endpoint) and returns (exit code, stdout, stderr).
async fn ko(build: &KubeOvnBuild, state: &SandboxState, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(&build.kubectl_ko);
    cmd.arg(format!("--kubeconfig={}", state.kubeconfig.display()))
        .args(args)
        .env("WITHOUT_KUBE_PROXY", "true")
        .current_dir(&state.run_dir);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("kubectl-ko runs"))
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The pinger pods once each node has one Running with an address: (name, node, IP).
async fn pingers(
    client: &kube::Client,
    nodes: usize,
) -> Result<Vec<(String, String, String)>, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    probe::until(
        Duration::from_secs(90),
        "a Running pinger pod on every node",
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=kube-ovn-pinger"))
                .await
                .map_err(|e| e.to_string())?;
            let running: Vec<_> = list
                .items
                .iter()
                .filter_map(|p| {
                    let status = p.status.as_ref()?;
                    (status.phase.as_deref() == Some("Running")).then_some(())?;
                    Some((
                        p.metadata.name.clone()?,
                        p.spec.as_ref()?.node_name.clone()?,
                        status.pod_ip.clone()?,
                    ))
                })
                .collect();
            if running.len() == nodes {
                Ok(running)
            } else {
                Err(format!("{} of {} running", running.len(), list.items.len()))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn diagnose_checks_the_installation_and_connectivity_from_each_node() {
    let build = KubeOvnBuild::of_test_binary().expect("kube-ovn build");
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(build.clone());
    config.diagnose = true;
    // ovn-central is a raft cluster in a Kube-OVN install (`nb status` is raft's status).
    config.raft = true;
    let sandbox = Sandbox::up(config).await.expect("sandbox");
    let state = sandbox.state().clone();
    let pingers = pingers(&sandbox.client(), 2)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", probe::report(&state)));

    let (code, out, err) = ko(&build, &state, &["diagnose", "node", "node1"]).await;
    for want in [
        "crd subnets.kubeovn.io exists",
        "crd iptables-dnat-rules.kubeovn.io exists",
        "svc default/kubernetes exists",
        "sa kube-system/ovn exists",
        "clusterrole system:ovn exists",
        "clusterrolebinding ovn exists",
        "### kubectl ko nbctl show",
        "(ovn-default)",
        "deployment ovn-central ready",
        "deployment kube-ovn-controller ready",
        "ds kube-ovn-cni ready",
        "ds ovs-ovn ready",
        "ovn-nb leader check ok",
        "ovn-sb leader check ok",
        "ovn-northd leader check ok",
        "service/test-node-port created",
        "### start to diagnose node node1",
        "### finish diagnose node node1",
        "service \"test-node-port\" deleted",
        "diagnose finished: no problem found",
    ] {
        assert!(out.contains(want), "diagnose lacks {want:?}:\n{out}\n{err}");
    }
    assert_eq!(code, 0, "{out}\n{err}");
    // The pinger's own report (its log, on the exec's standard error).
    for want in [
        "ovsdb-server and ovs-vswitchd are up",
        "ovn-controller is up",
        "ovs and ovn-sb port binding check passed",
        "connect to apiserver success",
        "ping node: node1",
        "ping node: node2",
        "failed to resolve dns kubernetes.default",
    ] {
        assert!(err.contains(want), "pinger report lacks {want:?}:\n{err}");
    }
    for (name, _, ip) in &pingers {
        let line = format!("ping pod: {name} {ip}, count: 3, loss count 0");
        assert!(err.contains(&line), "lacks {line:?}:\n{err}");
    }
    for node in ["node1", "node2"] {
        let ok = err
            .lines()
            .any(|l| l.contains(&format!("ping node: {node} ")) && l.contains("loss count 0"));
        assert!(ok, "{node} does not answer its pinger:\n{err}");
    }
    let services: Api<Service> = Api::namespaced(sandbox.client(), "kube-system");
    assert!(services.get_opt("test-node-port").await.unwrap().is_none());

    // A port in node2's OVS that no logical port binds there is reported by its pinger.
    let node2 = state.nodes.iter().find(|n| n.name == "node2").unwrap();
    node2
        .vsctl([
            "add-port",
            "br-int",
            "ghost0",
            "--",
            "set",
            "interface",
            "ghost0",
            "type=internal",
            "external_ids:iface-id=ghost.default",
        ])
        .unwrap();
    let (_, _, err) = ko(&build, &state, &["diagnose", "node", "node2"]).await;
    assert!(
        err.contains("1 ports not exist in ovn-sb-bindings: ghost.default"),
        "{err}"
    );

    // Given targets, from every pinger: the API relay on node1 answers, a closed port does not.
    let node1_ip = state.nodes[0].ip;
    let targets = format!("tcp-{node1_ip}-6443,tcp-{node1_ip}-1");
    let (code, out, err) = ko(&build, &state, &["diagnose", "IPPorts", &targets]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!out.contains("service/test-node-port created"), "{out}");
    for (name, _, _) in &pingers {
        assert!(
            out.contains(&format!(
                "#### pinger {name} on namespace kube-system diagnose results:"
            )),
            "{out}"
        );
    }
    let ok = format!("TCP connectivity to targetIPPort {node1_ip}:6443 success");
    let failed = format!("TCP connectivity to targetIPPort {node1_ip}:1 failed");
    assert_eq!(err.matches(&ok).count(), 2, "{err}");
    assert_eq!(err.matches(&failed).count(), 2, "{err}");
    sandbox.down().await.expect("teardown");
}
