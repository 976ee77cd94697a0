//! `kubectl ko diagnose` against a sandbox with the pinger DaemonSet: the installation checks
//! (CRDs, RBAC, the component Deployments and DaemonSets adopted from the sandbox's pods, one
//! leader behind each OVN Service) pass, each node's kube-ovn-pinger runs one job-mode round
//! through `pods/exec` (OVS and ovn-controller answer on their control sockets, every OVS port
//! is bound in the SB, every pinger pod and node answers ICMP), a port OVS has but the SB does
//! not bind is reported, `IPPorts` checks given targets both ways, and the NodePort Service made
//! for the run is gone afterwards. `env-check` runs the image's node checks in every
//! kube-ovn-cni pod, `log` copies each node's OVN/OVS logs and network state out, and `reload`
//! replaces the components' pods workload by workload and waits for each.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::{probe, Sandbox, SandboxConfig, SandboxState};

/// Runs `kubectl-ko args…` without kube-proxy checks (the sandbox has no kube-proxy health
/// endpoint) and returns (exit code, stdout, stderr).
async fn ko(build: &KubeOvnBuild, state: &SandboxState, args: &[&str]) -> (i32, String, String) {
    ko_env(build, state, &state.run_dir, None, args).await
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

    // The pinger pods run kube-ovn-pinger in server mode (the sandbox runs that container):
    // they pass their readiness probe on /metrics, and their rounds show in its series.
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), "kube-system");
    for (name, _, _) in &pingers {
        probe::until(
            Duration::from_secs(60),
            &format!("{name} Ready"),
            || async {
                let p = pods.get(name).await.map_err(|e| e.to_string())?;
                if kube_ovn_sandbox::apps::pod_ready(&p) {
                    Ok(())
                } else {
                    Err("not Ready".to_string())
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", probe::report(&state)));
    }
    let (_, _, ip1) = pingers.iter().find(|(_, n, _)| n == "node1").unwrap();
    let node1 = &state.nodes[0];
    let metrics = probe::until(
        Duration::from_secs(60),
        "a pinger round in the metrics",
        || async {
            let out = std::process::Command::new("ip")
                .args(["netns", "exec", &node1.netns, "curl", "-s", "-m", "3"])
                .arg(format!("http://{ip1}:8080/metrics"))
                .output()
                .map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.contains("pinger_pod_ping_count_total{") {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await
    .unwrap();
    for want in [
        "pinger_ovs_up{nodeName=\"node1\"} 1",
        "pinger_ovn_controller_up{nodeName=\"node1\"} 1",
        "pinger_node_ping_count_total{",
    ] {
        assert!(metrics.contains(want), "metrics lack {want:?}:\n{metrics}");
    }

    // subnet: a conn-check server DaemonSet in the subnet rolls out (its pods run the pinger
    // with the conn-check listeners, which their probe dials), and is deleted afterwards.
    let (code, out, err) = ko(&build, &state, &["diagnose", "subnet", "ovn-default"]).await;
    for want in [
        "daemonset.apps/ovn-default-conn-check-server created",
        "daemon set \"ovn-default-conn-check-server\" successfully rolled out",
        "daemonset.apps \"ovn-default-conn-check-server\" deleted",
    ] {
        assert!(
            out.contains(want),
            "diagnose subnet lacks {want:?}:\n{out}\n{err}"
        );
    }
    assert!(err.contains("ping node: node2"), "{err}");
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, _) = ko(&build, &state, &["diagnose", "subnet", "no-such-subnet"]).await;
    assert_ne!(code, 0);
    assert!(!out.contains("no problem found"), "{out}");

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

    // env-check: the image's script in each node's kube-ovn-cni pod, on that node.
    let (code, out, err) = ko(&build, &state, &["env-check"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    for want in [
        "Start environment check for node node1",
        "Start environment check for node node2",
        "1) check cni configuration",
        "6) check geneve 6081 connection",
    ] {
        assert!(out.contains(want), "env-check lacks {want:?}:\n{out}");
    }

    // log: each node's OVN and OVS logs, and its network state, into ./kubectl-ko-log.
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = ko_in(&build, &state, dir.path(), &["log", "all"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("Collected files have been saved in the directory"),
        "{out}"
    );
    for node in ["node1", "node2"] {
        let root = dir.path().join("kubectl-ko-log").join(node);
        let controller_log = std::fs::read_to_string(root.join("ovn/ovn-controller.log"))
            .unwrap_or_else(|e| panic!("{node}: ovn-controller.log: {e}\n{out}\n{err}"));
        assert!(controller_log.contains("connected"), "{controller_log}");
        let vswitchd = std::fs::metadata(root.join("openvswitch/vswitchd.log")).unwrap();
        assert!(vswitchd.len() > 0);
        let routes = std::fs::read_to_string(root.join("linux/route.log")).unwrap();
        assert!(
            routes.contains("10.16.0.0/16"),
            "{node}'s routes:\n{routes}"
        );
        let addrs = std::fs::read_to_string(root.join("linux/addr.log")).unwrap();
        let ip = &state.nodes.iter().find(|n| n.name == node).unwrap().ip;
        assert!(
            addrs.contains(&ip.to_string()),
            "{node}'s addresses:\n{addrs}"
        );
    }
    sandbox.down().await.expect("teardown");
}

/// [`ko`] in `dir` and with `KUBE_OVN_NS=ns` when given.
async fn ko_in(
    build: &KubeOvnBuild,
    state: &SandboxState,
    dir: &std::path::Path,
    args: &[&str],
) -> (i32, String, String) {
    ko_env(build, state, dir, None, args).await
}

async fn ko_env(
    build: &KubeOvnBuild,
    state: &SandboxState,
    dir: &std::path::Path,
    ns: Option<&str>,
    args: &[&str],
) -> (i32, String, String) {
    let mut cmd = Command::new(&build.kubectl_ko);
    cmd.arg(format!("--kubeconfig={}", state.kubeconfig.display()))
        .args(args)
        .env("WITHOUT_KUBE_PROXY", "true")
        .current_dir(dir);
    if let Some(ns) = ns {
        cmd.env("KUBE_OVN_NS", ns);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("kubectl-ko runs"))
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A workload of `app`: hostNetwork pods without probes (the sandbox's own component pods are
/// processes, not containers, so pods made from the shipped templates never pass their probes;
/// these stand in for them so `reload`'s deleting, restarting and waiting is what is tested).
fn workload(kind: &str, name: &str, app: &str, ns: &str) -> serde_json::Value {
    let mut spec = serde_json::json!({
        "selector": {"matchLabels": {"app": app}},
        "template": {
            "metadata": {"labels": {"app": app}},
            "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "x"}]},
        },
    });
    if kind == "Deployment" {
        spec["replicas"] = serde_json::json!(1);
    }
    serde_json::json!({"apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_replaces_each_components_pods_in_turn() {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::PostParams;
    let build = KubeOvnBuild::of_test_binary().expect("kube-ovn build");
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(build.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox");
    let state = sandbox.state().clone();
    let client = sandbox.client();
    let ns = "kube-ovn-reload";
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    for (name, app) in [
        ("ovn-central", "ovn-central"),
        ("kube-ovn-controller", "kube-ovn-controller"),
    ] {
        let d = serde_json::from_value(workload("Deployment", name, app, ns)).unwrap();
        deployments
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
    }
    for (name, app) in [("ovs-ovn", "ovs"), ("kube-ovn-cni", "kube-ovn-cni")] {
        let d = serde_json::from_value(workload("DaemonSet", name, app, ns)).unwrap();
        daemon_sets
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let ready_pods = || async {
        let list = pods
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let ready: Vec<String> = list
            .items
            .iter()
            .filter(|p| kube_ovn_sandbox::apps::pod_ready(p))
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        if ready.len() == 6 {
            Ok(ready)
        } else {
            Err(format!("{} of 6 ready", ready.len()))
        }
    };
    let before = probe::until(Duration::from_secs(60), "the workloads' pods", ready_pods)
        .await
        .unwrap();
    let (code, out, err) = ko_env(&build, &state, &state.run_dir, Some(ns), &["reload"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let order = [
        "deployment \"ovn-central\" successfully rolled out",
        "daemonset.apps/ovs-ovn restarted",
        "daemonset \"ovs-ovn\" successfully rolled out",
        "deployment \"kube-ovn-controller\" successfully rolled out",
        "daemonset \"kube-ovn-cni\" successfully rolled out",
        "daemonset/kube-ovn-pinger not found, skipped",
        "deployment/kube-ovn-monitor not found, skipped",
    ];
    let mut at = 0;
    for want in order {
        let found = out[at..]
            .find(want)
            .unwrap_or_else(|| panic!("{want:?} not in order:\n{out}"));
        at += found + want.len();
    }
    for name in before.iter().filter(|n| !n.starts_with("ovs-ovn")) {
        assert!(
            out.contains(&format!("pod \"{name}\" deleted")),
            "{name}:\n{out}"
        );
    }
    let after = probe::until(Duration::from_secs(30), "the replaced pods", ready_pods)
        .await
        .unwrap();
    assert!(
        after.iter().all(|n| !before.contains(n)),
        "{before:?} -> {after:?}"
    );
    sandbox.down().await.expect("teardown");
}
