//! The real kubectl against the fixture: apply, get, patch, label, watch,
//! delete, and the columns `kubectl get` prints from server-side Tables.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use kube_apiserver_fixture::{ApiServer, Options};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

const KUBECTL: &str = "/usr/bin/kubectl";
const DEADLINE: Duration = Duration::from_secs(30);

const MANIFEST: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: kt
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
  namespace: kt
data:
  old: \"1\"
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: kt
  labels:
    app: web
spec:
  containers:
  - name: c
    image: nginx:1
    ports:
    - containerPort: 80
";

/// Runs kubectl with an isolated HOME (discovery cache) and the fixture's kubeconfig.
struct Kubectl {
    home: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(KUBECTL);
        command
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs to completion; returns (success, stdout, stderr).
    async fn try_run(&self, args: &[&str]) -> (bool, String, String) {
        let output = tokio::time::timeout(DEADLINE, self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish in time"))
            .expect("kubectl runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    async fn run(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.try_run(args).await;
        assert!(ok, "kubectl {args:?} failed: {stderr}");
        stdout
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut full = args.to_vec();
        full.extend(["-o", "json"]);
        serde_json::from_str(&self.run(&full).await).expect("kubectl printed JSON")
    }
}

/// A fixture with a kubectl pointed at it; `None` (test skipped) without kubectl.
async fn setup(test: &str) -> Option<(ApiServer, Kubectl, TempDir)> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("SKIPPED {test}: {KUBECTL} is not installed");
        return None;
    }
    let server = ApiServer::start(Options::default())
        .await
        .expect("fixture starts");
    let dir = tempfile::tempdir().unwrap();
    let kubectl = Kubectl {
        home: dir.path().to_path_buf(),
        kubeconfig: dir.path().join("kubeconfig"),
    };
    std::fs::write(&kubectl.kubeconfig, server.kubeconfig_yaml()).unwrap();
    Some((server, kubectl, dir))
}

/// Reads lines until one contains `needle`, failing after the deadline.
async fn line_containing(lines: &mut Lines<BufReader<ChildStdout>>, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) if line.contains(needle) => return line,
            Ok(Ok(Some(_))) => {}
            Ok(other) => panic!("kubectl watch output ended before {needle:?}: {other:?}"),
            Err(_) => panic!("no watch line containing {needle:?} in time"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_round_trip() {
    let Some((_server, kubectl, dir)) = setup("kubectl_round_trip").await else {
        return;
    };
    let manifest = dir.path().join("manifest.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let manifest = manifest.to_str().unwrap();

    let out = kubectl.run(&["apply", "-f", manifest]).await;
    for created in [
        "namespace/kt created",
        "configmap/cfg created",
        "pod/web created",
    ] {
        assert!(
            out.contains(created),
            "apply output lacks {created:?}: {out}"
        );
    }
    let pod = kubectl.json(&["get", "pod", "web", "-n", "kt"]).await;
    assert_eq!(pod["metadata"]["labels"]["app"], "web");
    assert_eq!(pod["status"]["phase"], "Pending");

    // Re-applying a changed manifest goes through kubectl's three-way strategic merge.
    let changed = MANIFEST
        .replace("nginx:1", "nginx:2")
        .replace("old: \"1\"", "new: \"2\"");
    std::fs::write(manifest, changed).unwrap();
    let out = kubectl.run(&["apply", "-f", manifest]).await;
    assert!(
        out.contains("pod/web configured") && out.contains("namespace/kt unchanged"),
        "{out}"
    );
    let pod = kubectl.json(&["get", "pod", "web", "-n", "kt"]).await;
    assert_eq!(pod["spec"]["containers"][0]["image"], "nginx:2");
    let cm = kubectl.json(&["get", "configmap", "cfg", "-n", "kt"]).await;
    assert_eq!(
        cm["data"],
        serde_json::json!({"new": "2"}),
        "apply removed the dropped key"
    );

    // Default (strategic) patch merges containers by name; merge patch merges maps.
    kubectl
        .run(&[
            "patch",
            "pod",
            "web",
            "-n",
            "kt",
            "-p",
            r#"{"spec":{"containers":[{"name":"side","image":"busybox"}]}}"#,
        ])
        .await;
    let pod = kubectl.json(&["get", "pod", "web", "-n", "kt"]).await;
    let names: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["c", "side"]);
    kubectl
        .run(&[
            "patch",
            "configmap",
            "cfg",
            "-n",
            "kt",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"x":"y"}}"#,
        ])
        .await;
    let cm = kubectl.json(&["get", "cm", "cfg", "-n", "kt"]).await;
    assert_eq!(cm["data"], serde_json::json!({"new": "2", "x": "y"}));

    kubectl
        .run(&["label", "pod", "web", "-n", "kt", "tier=front"])
        .await;
    let selected = kubectl
        .run(&["get", "pods", "-n", "kt", "-l", "tier=front", "-o", "name"])
        .await;
    assert_eq!(selected.trim(), "pod/web");
    let unselected = kubectl
        .run(&["get", "pods", "-n", "kt", "-l", "tier!=front", "-o", "name"])
        .await;
    assert_eq!(unselected.trim(), "");

    // A watch prints the existing pod, then a line per change.
    let mut watch = kubectl
        .command(&["get", "pods", "-n", "kt", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w starts");
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    line_containing(&mut lines, "web").await;
    kubectl
        .run(&["label", "pod", "web", "-n", "kt", "seen=yes"])
        .await;
    line_containing(&mut lines, "web").await;
    watch.kill().await.expect("watch stops");

    let out = kubectl.run(&["delete", "pod", "web", "-n", "kt"]).await;
    assert!(out.contains("pod \"web\" deleted"), "{out}");
    assert_eq!(
        kubectl
            .run(&["get", "pods", "-n", "kt", "-o", "name"])
            .await
            .trim(),
        ""
    );
    let (ok, _, stderr) = kubectl.try_run(&["get", "pod", "web", "-n", "kt"]).await;
    assert!(!ok && stderr.contains("NotFound"), "{stderr}");
}

/// `kubectl get` output as rows of whitespace-separated words (headers first).
fn words(output: &str) -> Vec<Vec<String>> {
    output
        .lines()
        .map(|line| line.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The words of a row, except the age column at `age` (its value depends on timing).
fn without_age(mut row: Vec<String>, age: usize) -> Vec<String> {
    assert!(
        row[age].ends_with('s') || row[age].ends_with('m'),
        "{row:?} has no age at {age}"
    );
    row.remove(age);
    row
}

const NODE_AND_POD: &str = "\
apiVersion: v1
kind: Node
metadata:
  name: node-1
  labels:
    node-role.kubernetes.io/control-plane: \"\"
status:
  conditions:
  - type: Ready
    status: \"True\"
  addresses:
  - type: InternalIP
    address: 172.18.0.2
  nodeInfo:
    kubeletVersion: v1.33.0
    osImage: Debian GNU/Linux 12
    kernelVersion: 6.1.0
    containerRuntimeVersion: containerd://1.7.0
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
spec:
  nodeName: node-1
  containers:
  - name: c
    image: nginx:1
  - name: sidecar
    image: busybox
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_prints_pod_and_node_columns() {
    let Some((_server, kubectl, dir)) = setup("kubectl_prints_pod_and_node_columns").await else {
        return;
    };
    let manifest = dir.path().join("manifest.yaml");
    std::fs::write(&manifest, NODE_AND_POD).unwrap();
    kubectl
        .run(&["apply", "-f", manifest.to_str().unwrap()])
        .await;

    let nodes = words(&kubectl.run(&["get", "nodes"]).await);
    assert_eq!(nodes[0], ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    assert_eq!(
        without_age(nodes[1].clone(), 3),
        ["node-1", "Ready", "control-plane", "v1.33.0"]
    );
    let wide = words(&kubectl.run(&["get", "nodes", "-o", "wide"]).await);
    assert_eq!(
        wide[0][5..],
        [
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME"
        ]
    );
    assert_eq!(
        wide[1][5..],
        [
            "172.18.0.2",
            "<none>",
            "Debian",
            "GNU/Linux",
            "12",
            "6.1.0",
            "containerd://1.7.0"
        ]
    );

    let pods = words(&kubectl.run(&["get", "pods", "-o", "wide"]).await);
    assert_eq!(
        pods[0],
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ]
    );
    assert_eq!(
        without_age(pods[1].clone(), 4),
        ["web", "0/2", "Pending", "0", "<none>", "node-1", "<none>", "<none>"]
    );

    // A watch prints the header once, then a row per change computed by the server.
    let mut watch = kubectl
        .command(&["get", "pods", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w starts");
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let header = line_containing(&mut lines, "NAME").await;
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    line_containing(&mut lines, "Pending").await;
    kubectl
        .run(&[
            "patch",
            "pod",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running","podIPs":[{"ip":"10.16.0.5"}],"containerStatuses":[
                {"name":"c","ready":true,"restartCount":0,"state":{"running":{}}},
                {"name":"sidecar","ready":false,"restartCount":2,"state":{"waiting":{"reason":"CrashLoopBackOff"}}}]}}"#,
        ])
        .await;
    let changed = line_containing(&mut lines, "web").await;
    assert_eq!(
        without_age(changed.split_whitespace().map(str::to_string).collect(), 4),
        ["web", "1/2", "CrashLoopBackOff", "2"]
    );
    watch.kill().await.expect("watch stops");

    let pods = words(&kubectl.run(&["get", "pod", "web", "-o", "wide"]).await);
    assert_eq!(
        without_age(pods[1].clone(), 4),
        [
            "web",
            "1/2",
            "CrashLoopBackOff",
            "2",
            "10.16.0.5",
            "node-1",
            "<none>",
            "<none>"
        ]
    );
}

const SUBNET_CRD: &str = "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: subnets.kubeovn.io
spec:
  group: kubeovn.io
  scope: Cluster
  names:
    plural: subnets
    singular: subnet
    kind: Subnet
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - {name: Provider, type: string, jsonPath: .spec.provider}
    - {name: CIDR, type: string, jsonPath: .spec.cidrBlock}
    - {name: Private, type: boolean, jsonPath: .spec.private}
    - {name: V4Used, type: number, jsonPath: .status.v4usingIPs}
    - {name: Gateways, type: integer, jsonPath: '.spec.gateways'}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type==\"Ready\")].status'}
    - {name: ExcludeIPs, type: string, jsonPath: .spec.excludeIps, priority: 1}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: plains.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: plains
    kind: Plain
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
";

const SUBNET: &str = "\
apiVersion: kubeovn.io/v1
kind: Subnet
metadata:
  name: ovn-default
spec:
  provider: ovn
  cidrBlock: 10.16.0.0/16
  private: false
  gateways: 2
  excludeIps:
  - 10.16.0.1
---
apiVersion: example.com/v1
kind: Plain
metadata:
  name: p1
  namespace: default
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_prints_crd_printer_columns() {
    let Some((_server, kubectl, dir)) = setup("kubectl_prints_crd_printer_columns").await else {
        return;
    };
    let crds = dir.path().join("crds.yaml");
    std::fs::write(&crds, SUBNET_CRD).unwrap();
    kubectl.run(&["apply", "-f", crds.to_str().unwrap()]).await;
    let objects = dir.path().join("objects.yaml");
    std::fs::write(&objects, SUBNET).unwrap();
    kubectl
        .run(&["apply", "-f", objects.to_str().unwrap()])
        .await;
    kubectl
        .run(&[
            "patch",
            "subnet",
            "ovn-default",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"v4usingIPs":3,"conditions":[{"type":"Validated","status":"True"},{"type":"Ready","status":"False"}]}}"#,
        ])
        .await;

    let subnets = words(&kubectl.run(&["get", "subnets"]).await);
    assert_eq!(
        subnets,
        [
            vec!["NAME", "PROVIDER", "CIDR", "PRIVATE", "V4USED", "GATEWAYS", "READY"],
            vec![
                "ovn-default",
                "ovn",
                "10.16.0.0/16",
                "false",
                "3",
                "2",
                "False"
            ],
        ]
    );
    let wide = words(&kubectl.run(&["get", "subnets", "-o", "wide"]).await);
    assert_eq!(wide[0].last().unwrap(), "EXCLUDEIPS");
    assert_eq!(wide[1].last().unwrap(), r#"["10.16.0.1"]"#);

    // Without printer columns the server adds Age; the CRDs themselves get the generic table.
    let plains = words(&kubectl.run(&["get", "plains"]).await);
    assert_eq!(plains[0], ["NAME", "AGE"]);
    assert_eq!(without_age(plains[1].clone(), 1), ["p1"]);
    let crd_list = words(&kubectl.run(&["get", "crds"]).await);
    assert_eq!(crd_list[0], ["NAME", "CREATED", "AT"]);
    assert!(
        crd_list[1][1].ends_with('Z') && crd_list[1][1].contains('T'),
        "{crd_list:?}"
    );
}

const WORKLOADS: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: c
        image: nginx:1
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      containers:
      - name: c
        image: db:1
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scales_workloads_and_sees_their_defaults_and_columns() {
    let Some((_server, kubectl, dir)) = setup("kubectl_scales_workloads").await else {
        return;
    };
    let objects = dir.path().join("workloads.yaml");
    std::fs::write(&objects, WORKLOADS).unwrap();
    kubectl
        .run(&["apply", "-f", objects.to_str().unwrap()])
        .await;
    // kube-apiserver's defaults, which `kubectl rollout status` reads.
    let deploy = kubectl.json(&["get", "deployment", "web"]).await;
    assert_eq!(deploy["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        deploy["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        "25%"
    );
    let sts = kubectl.json(&["get", "sts", "db"]).await;
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(sts["spec"]["updateStrategy"]["type"], "RollingUpdate");

    // `kubectl scale` goes through the scale subresource.
    kubectl
        .run(&["scale", "deployment/web", "--replicas=5"])
        .await;
    kubectl
        .run(&["scale", "statefulset", "db", "--replicas=3"])
        .await;
    let deploy = kubectl.json(&["get", "deployment", "web"]).await;
    assert_eq!(deploy["spec"]["replicas"], 5);
    assert_eq!(deploy["metadata"]["generation"], 2);
    let sts = kubectl.json(&["get", "statefulset", "db"]).await;
    assert_eq!(sts["spec"]["replicas"], 3);
    let scale: Value = serde_json::from_str(
        &kubectl
            .run(&[
                "get",
                "--raw",
                "/apis/apps/v1/namespaces/default/deployments/web/scale",
            ])
            .await,
    )
    .unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["status"]["selector"], "app=web");

    let rows = words(
        &kubectl
            .run(&["get", "deployments,statefulsets", "-o", "wide"])
            .await,
    );
    assert_eq!(
        rows[0],
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(
        without_age(rows[1].clone(), 4),
        [
            "deployment.apps/web",
            "0/5",
            "0",
            "0",
            "c",
            "nginx:1",
            "app=web"
        ]
    );
    assert_eq!(rows[3], ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"]);
    assert_eq!(
        without_age(rows[4].clone(), 2),
        ["statefulset.apps/db", "0/3", "c", "db:1"]
    );
}
