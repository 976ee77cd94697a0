//! The real kubectl's typed commands against the fixture: `create` sends protobuf bodies (and
//! takes protobuf answers), and `exec` runs through the embedder's exec handler over
//! WebSocket, with argv passed as a list, stdin, and the exit code.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, PostParams};
use kube_apiserver_fixture::exec::{ExecHandler, ExecTarget};
use kube_apiserver_fixture::{ApiServer, Options};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const KUBECTL: &str = "/usr/bin/kubectl";
const DEADLINE: Duration = Duration::from_secs(30);

struct Kubectl {
    home: TempDir,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn new(server: &ApiServer) -> Kubectl {
        let home = tempfile::tempdir().unwrap();
        let kubeconfig = home.path().join("kubeconfig");
        std::fs::write(&kubeconfig, server.kubeconfig_yaml()).unwrap();
        Kubectl { home, kubeconfig }
    }

    /// Runs kubectl with `input` on stdin; returns (exit code, stdout, stderr).
    async fn run(&self, args: &[&str], input: &[u8]) -> (Option<i32>, String, String) {
        let mut child = Command::new(KUBECTL)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .stdin(if input.is_empty() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("kubectl starts");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input).await.unwrap();
        }
        let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish in time"))
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (code, stdout, stderr) = self.run(args, b"").await;
        assert_eq!(code, Some(0), "kubectl {args:?}: {stderr}");
        stdout
    }
}

fn kubectl_missing(test: &str) -> bool {
    let missing = !Path::new(KUBECTL).exists();
    if missing {
        eprintln!("SKIPPED {test}: {KUBECTL} is not installed");
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_speaks_protobuf() {
    if kubectl_missing("kubectl_create_speaks_protobuf") {
        return;
    }
    let server = ApiServer::start(Options::default()).await.unwrap();
    let kubectl = Kubectl::new(&server);
    let client = server.client().unwrap();
    kubectl.ok(&["create", "namespace", "pb"]).await;
    kubectl
        .ok(&[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=0",
            "-n",
            "pb",
        ])
        .await;
    kubectl
        .ok(&[
            "create",
            "configmap",
            "cfg",
            "--from-literal=a=1",
            "-n",
            "pb",
        ])
        .await;
    kubectl
        .ok(&[
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=k=v",
            "-n",
            "pb",
        ])
        .await;

    let deployment = Api::<Deployment>::namespaced(client.clone(), "pb")
        .get("web")
        .await
        .unwrap();
    // An explicit zero of a pointer field survives the protobuf body.
    assert_eq!(deployment.spec.as_ref().unwrap().replicas, Some(0));
    let template = deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(template.containers[0].image.as_deref(), Some("nginx"));
    let cm = Api::<ConfigMap>::namespaced(client.clone(), "pb")
        .get("cfg")
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["a"], "1");
    let secret = Api::<Secret>::namespaced(client.clone(), "pb")
        .get("s")
        .await
        .unwrap();
    assert_eq!(secret.data.unwrap()["k"].0, b"v");
    // Reads by the typed client come back in protobuf and print the same.
    let printed = kubectl
        .ok(&[
            "get",
            "deployment",
            "web",
            "-n",
            "pb",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(printed, "0");
}

async fn pod(client: &kube::Client, name: &str, node: Option<&str>) {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_runs_argv_through_the_handler() {
    if kubectl_missing("kubectl_exec_runs_argv_through_the_handler") {
        return;
    }
    let seen: Arc<Mutex<Vec<ExecTarget>>> = Arc::default();
    let record = seen.clone();
    let server = ApiServer::start(Options {
        exec: Some(ExecHandler::new(move |target| {
            record.lock().unwrap().push(target.clone());
            let (program, args) = target.command.split_first().ok_or("empty")?;
            let mut command = std::process::Command::new(program);
            command.args(args);
            Ok(command)
        })),
        ..Options::default()
    })
    .await
    .unwrap();
    let client = server.client().unwrap();
    let kubectl = Kubectl::new(&server);
    pod(&client, "p", Some("node1")).await;
    pod(&client, "unscheduled", None).await;

    // argv is a list: nothing is interpreted by a shell on the way.
    let out = kubectl
        .ok(&["exec", "p", "--", "printf", "%s|", "a b", "$HOME;x"])
        .await;
    assert_eq!(out, "a b|$HOME;x|");
    let target = seen.lock().unwrap()[0].clone();
    assert_eq!(
        (target.namespace.as_str(), target.container.as_str()),
        ("default", "c")
    );
    assert_eq!(target.command, ["printf", "%s|", "a b", "$HOME;x"]);
    assert_eq!(target.pod["spec"]["nodeName"], "node1");

    let (code, out, _) = kubectl
        .run(&["exec", "-i", "p", "--", "cat"], b"one\ntwo\n")
        .await;
    assert_eq!((code, out.as_str()), (Some(0), "one\ntwo\n"));
    let (code, _, err) = kubectl
        .run(&["exec", "p", "--", "sh", "-c", "echo e >&2; exit 42"], b"")
        .await;
    assert_eq!(code, Some(42), "{err}");
    assert!(err.starts_with("e\n"), "{err}");

    let (code, _, err) = kubectl
        .run(&["exec", "unscheduled", "--", "true"], b"")
        .await;
    assert_ne!(code, Some(0));
    assert!(
        err.contains("pod unscheduled does not have a host assigned"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_without_a_handler_is_a_clear_error() {
    if kubectl_missing("exec_without_a_handler_is_a_clear_error") {
        return;
    }
    let server = ApiServer::start(Options::default()).await.unwrap();
    let client = server.client().unwrap();
    let kubectl = Kubectl::new(&server);
    pod(&client, "p", Some("node1")).await;
    let (code, _, err) = kubectl.run(&["exec", "p", "--", "true"], b"").await;
    assert_ne!(code, Some(0));
    assert!(err.contains("no exec handler is installed"), "{err}");
}
