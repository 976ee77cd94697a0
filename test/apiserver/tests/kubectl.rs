//! The real kubectl against the fixture: apply, get, patch, label, watch, delete.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use kube_apiserver_fixture::{ApiServer, Options};
use serde_json::Value;
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
    if !Path::new(KUBECTL).exists() {
        eprintln!("SKIPPED kubectl_round_trip: {KUBECTL} is not installed");
        return;
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
