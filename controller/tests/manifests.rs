//! The install manifests: the committed `dist/manifests` equals what the generator writes,
//! the workloads run upstream's entrypoints as upstream's service accounts, and
//! `dist/install.sh` applies everything with kubectl (against the API fixture), setting the
//! ovn-central addresses and replicas from the control-plane nodes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, PodSpec};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, PostParams};
use kube_apiserver_fixture::{ApiServer, Options};
use kube_ovn_common::manifests;
use serde_json::json;

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist")
}

#[test]
fn committed_manifests_match_the_generator() {
    let files = manifests::files().unwrap();
    let dir = dist().join("manifests");
    let mut stale = Vec::new();
    for f in &files {
        if std::fs::read_to_string(dir.join(f.name)).ok().as_deref() != Some(f.text.as_str()) {
            stale.push(f.name.to_string());
        }
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !files.iter().any(|f| f.name == name) {
            stale.push(format!("{name} (not generated)"));
        }
    }
    assert!(
        stale.is_empty(),
        "{} is out of date ({}); regenerate it from the workspace root with:\n    {}",
        manifests::DIR,
        stale.join(", "),
        manifests::REGENERATE
    );
    let names: Vec<&str> = files.iter().map(|f| f.name).collect();
    assert_eq!(
        names,
        manifests::APPLY_ORDER,
        "install.sh's order names every file"
    );
}

fn objects(kind: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for f in manifests::files().unwrap() {
        for doc in serde_norway::Deserializer::from_str(&f.text) {
            let v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
            if v["kind"] == kind {
                out.push(v);
            }
        }
    }
    out
}

fn pod_spec(kind: &str, name: &str) -> PodSpec {
    let v = objects(kind)
        .into_iter()
        .find(|o| o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"));
    serde_json::from_value(v["spec"]["template"]["spec"].clone()).unwrap()
}

#[test]
fn workloads_run_upstreams_entrypoints_as_upstreams_accounts() {
    let accounts: Vec<String> = objects("ServiceAccount")
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    // (kind, name, service account, container, its command + args starts with)
    let cases: [(&str, &str, &str, &str, &[&str]); 4] = [
        (
            "Deployment",
            "ovn-central",
            "ovn-ovs",
            "ovn-central",
            &["bash", "/kube-ovn/start-db.sh"],
        ),
        (
            "DaemonSet",
            "ovs-ovn",
            "ovn-ovs",
            "openvswitch",
            &["/kube-ovn/start-ovs.sh"],
        ),
        (
            "Deployment",
            "kube-ovn-controller",
            "ovn",
            "kube-ovn-controller",
            &[
                "/kube-ovn/start-controller.sh",
                "--leader-elect-lease-duration=30s",
            ],
        ),
        (
            "DaemonSet",
            "kube-ovn-cni",
            "kube-ovn-cni",
            "cni-server",
            &[
                "bash",
                "/kube-ovn/start-cniserver.sh",
                "--enable-mirror=false",
            ],
        ),
    ];
    for (kind, name, sa, container, argv) in cases {
        let spec = pod_spec(kind, name);
        assert_eq!(spec.service_account_name.as_deref(), Some(sa), "{name}");
        assert!(accounts.iter().any(|a| a == sa), "{sa} is not shipped");
        assert_eq!(spec.host_network, Some(true), "{name}");
        let c = spec
            .containers
            .iter()
            .find(|c| c.name == container)
            .unwrap();
        let full: Vec<String> = c
            .command
            .iter()
            .flatten()
            .chain(c.args.iter().flatten())
            .cloned()
            .collect();
        assert!(
            full.starts_with(&argv.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            "{name}: {full:?}"
        );
        assert_eq!(c.image.as_deref(), Some(manifests::IMAGE), "{name}");
    }
    let cni = pod_spec("DaemonSet", "kube-ovn-cni");
    let init = cni.init_containers.unwrap();
    let install = init.iter().find(|c| c.name == "install-cni").unwrap();
    assert_eq!(
        install.command.as_deref().unwrap(),
        [
            "/kube-ovn/install-cni.sh",
            "--cni-conf-name=01-kube-ovn.conflist"
        ]
    );
    // Every ClusterRoleBinding binds a shipped ClusterRole to a shipped account.
    let roles: Vec<ClusterRole> = objects("ClusterRole")
        .into_iter()
        .map(|o| serde_json::from_value(o).unwrap())
        .collect();
    for b in objects("ClusterRoleBinding") {
        let b: ClusterRoleBinding = serde_json::from_value(b).unwrap();
        assert!(roles
            .iter()
            .any(|r| r.metadata.name.as_deref() == Some(&b.role_ref.name)));
        for s in b.subjects.unwrap() {
            assert!(accounts.contains(&s.name), "{} is not shipped", s.name);
        }
    }
}

fn env<'a>(spec: &'a PodSpec, name: &str) -> Option<&'a str> {
    spec.containers[0]
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_sh_applies_everything_with_kubectl() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        panic!("kubectl is needed (test/sandbox/install-deps.sh installs it)");
    }
    let start = Instant::now();
    let server = ApiServer::start(Options::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig_yaml()).unwrap();
    let client = server.client().unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    for (name, ip, control_plane) in [("cp1", "192.0.2.11", true), ("w1", "192.0.2.21", false)] {
        let mut labels = json!({"kubernetes.io/os": "linux"});
        if control_plane {
            labels["node-role.kubernetes.io/control-plane"] = json!("");
        }
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
        }))
        .unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
    }
    let script = dist().join("install.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .env("WAIT", "false")
        .env("IMAGE", "registry.example/kube-ovn:test")
        .env(
            "KUBECTL",
            format!("kubectl --kubeconfig={}", kubeconfig.display()),
        );
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "install.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let cp = nodes.get("cp1").await.unwrap();
    assert_eq!(cp.metadata.labels.unwrap()["kube-ovn/role"], "master");
    assert!(!nodes
        .get("w1")
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap()
        .contains_key("kube-ovn/role"));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "kube-system");
    let central = deployments.get("ovn-central").await.unwrap().spec.unwrap();
    assert_eq!(central.replicas, Some(1));
    let central_pod = central.template.spec.unwrap();
    assert_eq!(env(&central_pod, "NODE_IPS"), Some("192.0.2.11"));
    assert_eq!(
        central_pod.containers[0].image.as_deref(),
        Some("registry.example/kube-ovn:test")
    );
    let controller = deployments
        .get("kube-ovn-controller")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(
        env(&controller.template.spec.unwrap(), "OVN_DB_IPS"),
        Some("192.0.2.11")
    );
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    let ovs = daemonsets.get("ovs-ovn").await.unwrap().spec.unwrap();
    assert_eq!(
        env(&ovs.template.spec.unwrap(), "OVN_DB_IPS"),
        Some("192.0.2.11")
    );
    let cni = daemonsets.get("kube-ovn-cni").await.unwrap().spec.unwrap();
    let cni_pod = cni.template.spec.unwrap();
    for c in cni_pod
        .init_containers
        .iter()
        .flatten()
        .chain(&cni_pod.containers)
    {
        assert_eq!(
            c.image.as_deref(),
            Some("registry.example/kube-ovn:test"),
            "{}",
            c.name
        );
    }
    let roles: Api<ClusterRole> = Api::all(client.clone());
    for name in ["system:ovn", "system:kube-ovn-cni", "system:ovn-ovs"] {
        roles.get(name).await.unwrap();
    }
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.get("subnets.kubeovn.io").await.unwrap();
    println!(
        "install.sh against the fixture: {:.1}s",
        start.elapsed().as_secs_f64()
    );
}
