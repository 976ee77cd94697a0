//! The real kubectl, unchanged, against a sandbox: its typed commands (`create namespace`,
//! `create service clusterip`, `create deployment`, `create configmap`, `run`) send and accept
//! Kubernetes' protobuf encoding, and `kubectl exec` (WebSocket, v5 subprotocol) runs argv in
//! the pod's network namespace with stdin and the command's exit code; kube-rs's
//! `AttachedProcess` gets the same streams, a terminal and the exit status.
//! Pods are real (network namespaces wired by Debian's bridge plugin on the kubelet stand-ins).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::SinkExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{Api, AttachParams, ListParams, PostParams, TerminalSize};
use kube_ovn_sandbox::apps::pod_ready;
use kube_ovn_sandbox::{leftovers, node, probe, sys, Sandbox, SandboxConfig, SandboxState};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

const KUBECTL: &str = "/usr/bin/kubectl";
const WITHIN: Duration = Duration::from_secs(30);

async fn sandbox() -> Sandbox {
    assert!(
        Path::new(node::SYSTEM_CNI_DIR).join("bridge").exists(),
        "Debian's containernetworking-plugins are missing (test/sandbox/install-deps.sh installs them)"
    );
    let sandbox = Sandbox::up(SandboxConfig::isolated(1))
        .await
        .expect("sandbox");
    for (i, n) in sandbox.state().nodes.iter().enumerate() {
        node::install_bridge_network(n, i).unwrap();
    }
    sandbox
}

async fn down(sandbox: Sandbox) {
    let (run_dir, prefix) = (
        sandbox.state().run_dir.clone(),
        sandbox.state().prefix.clone(),
    );
    sandbox.down().await.unwrap();
    assert!(leftovers(&run_dir, &prefix).is_empty());
}

/// kubectl with the sandbox's kubeconfig and its own HOME (discovery cache).
struct Kubectl {
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

/// What a kubectl run printed and how it exited.
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn new(state: &SandboxState) -> Kubectl {
        assert!(Path::new(KUBECTL).exists(), "{KUBECTL} is not installed");
        Kubectl {
            kubeconfig: state.kubeconfig.clone(),
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs kubectl with `input` on its stdin (none when empty).
    async fn run_with(&self, args: &[&str], input: &[u8]) -> Output {
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
        let output = tokio::time::timeout(WITHIN, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish in time"))
            .unwrap();
        Output {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs kubectl, expecting success; returns its stdout.
    async fn run(&self, args: &[&str]) -> String {
        let out = self.run_with(args, b"").await;
        assert_eq!(
            out.code,
            Some(0),
            "kubectl {args:?} failed: {}{}",
            out.stdout,
            out.stderr
        );
        out.stdout
    }
}

/// Waits until the pod runs (Ready, its network namespace wired) and returns it.
async fn running(state: &SandboxState, pods: &Api<Pod>, name: &str) -> Pod {
    let namespace = pods.namespace().unwrap_or("default").to_string();
    probe::until(WITHIN, &format!("pod {name} Running"), || async {
        let pod = pods.get(name).await.map_err(|e| e.to_string())?;
        let netns = sys::netns_path(&state.pod_netns(&namespace, name));
        let host = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        if pod_ready(&pod) && (host || Path::new(&netns).exists()) {
            Ok(pod)
        } else {
            Err(format!("{:?}", pod.status.and_then(|s| s.phase)))
        }
    })
    .await
    .unwrap()
}

fn pod_ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("a running pod has an IP")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_built_in_kinds_and_execs_in_pods() {
    let sandbox = sandbox().await;
    let state = sandbox.state().clone();
    let client = sandbox.client();
    let kubectl = Kubectl::new(&state);

    // Typed commands: protobuf bodies in, protobuf answers out.
    let created = kubectl.run(&["create", "namespace", "kc"]).await;
    assert_eq!(created.trim(), "namespace/kc created");
    let created = kubectl
        .run(&[
            "create",
            "service",
            "clusterip",
            "web",
            "--tcp=80:8080",
            "-n",
            "kc",
        ])
        .await;
    assert_eq!(created.trim(), "service/web created");
    let created = kubectl
        .run(&[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=2",
            "-n",
            "kc",
        ])
        .await;
    assert_eq!(created.trim(), "deployment.apps/web created");
    let created = kubectl
        .run(&[
            "create",
            "configmap",
            "cfg",
            "--from-literal=key=value",
            "-n",
            "kc",
        ])
        .await;
    assert_eq!(created.trim(), "configmap/cfg created");
    let created = kubectl
        .run(&[
            "run",
            "solo",
            "--image=busybox",
            "--labels=app=solo",
            "-n",
            "kc",
            "--",
            "sleep",
            "3600",
        ])
        .await;
    assert_eq!(created.trim(), "pod/solo created");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = namespaces.get("kc").await.unwrap();
    assert_eq!(ns.status.and_then(|s| s.phase).as_deref(), Some("Active"));
    let services: Api<Service> = Api::namespaced(client.clone(), "kc");
    let spec = services.get("web").await.unwrap().spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert!(spec.cluster_ip.is_some_and(|ip| ip.starts_with("10.")));
    let port = &spec.ports.unwrap()[0];
    assert_eq!(
        (port.port, port.target_port.clone()),
        (
            80,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080))
        )
    );
    assert_eq!(
        spec.selector.unwrap().get("app").map(String::as_str),
        Some("web")
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "kc");
    let data = configmaps.get("cfg").await.unwrap().data.unwrap();
    assert_eq!(data.get("key").map(String::as_str), Some("value"));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "kc");
    let deployment = deployments.get("web").await.unwrap();
    assert_eq!(deployment.spec.unwrap().replicas, Some(2));

    // The Deployment runs through its ReplicaSet to two pods, `kubectl run` to one.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kc");
    let names = probe::until(WITHIN, "the Deployment's two pods", || async {
        let list = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .map_err(|e| e.to_string())?;
        let names: Vec<String> = list
            .items
            .iter()
            .filter(|p| pod_ready(p))
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        if names.len() == 2 {
            Ok(names)
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await
    .unwrap();
    let web = running(&state, &pods, &names[0]).await;
    let solo = running(&state, &pods, "solo").await;
    let solo_spec = solo.spec.clone().unwrap();
    assert_eq!(
        solo_spec.containers[0].args.as_deref(),
        Some(&["sleep".to_string(), "3600".to_string()][..])
    );

    // `describe` reads pods, nodes and events through typed clients: protobuf answers
    // encoded from what the kubelet stand-ins and controllers stored.
    let described = kubectl.run(&["describe", "pod", "solo", "-n", "kc"]).await;
    assert!(
        described.contains("Running") && described.contains(&pod_ip(&solo)),
        "{described}"
    );
    let node_name = state.nodes[0].name.clone();
    let described = kubectl.run(&["describe", "node", &node_name]).await;
    assert!(
        described.contains(&state.nodes[0].ip.to_string()),
        "{described}"
    );

    // `kubectl exec` sees each pod's own interfaces.
    for pod in [&solo, &web] {
        let name = pod.metadata.name.as_deref().unwrap();
        let addresses = kubectl
            .run(&["exec", name, "-n", "kc", "--", "ip", "addr"])
            .await;
        let ip = pod_ip(pod);
        assert!(
            addresses.contains(&format!("inet {ip}/")) && addresses.contains("eth0"),
            "{name} ({ip}): {addresses}"
        );
    }
    // stdin reaches the command and its end ends `cat`.
    let echoed = kubectl
        .run_with(
            &["exec", "-i", "solo", "-n", "kc", "--", "cat"],
            b"hello\nworld\n",
        )
        .await;
    assert_eq!(
        (echoed.code, echoed.stdout.as_str()),
        (Some(0), "hello\nworld\n"),
        "{}",
        echoed.stderr
    );
    // The command's exit code is kubectl's.
    let failed = kubectl
        .run_with(
            &[
                "exec",
                "solo",
                "-n",
                "kc",
                "--",
                "sh",
                "-c",
                "echo oops >&2; exit 3",
            ],
            b"",
        )
        .await;
    assert_eq!(failed.code, Some(3), "{}", failed.stderr);
    assert!(failed.stderr.contains("oops"), "{}", failed.stderr);
    // A command that does not exist is an error, not a hang.
    let missing = kubectl
        .run_with(&["exec", "solo", "-n", "kc", "--", "/no/such/program"], b"")
        .await;
    assert_ne!(missing.code, Some(0));
    assert!(
        missing.stderr.contains("/no/such/program"),
        "{}",
        missing.stderr
    );
    // An unknown container is refused as the real server does.
    let wrong = kubectl
        .run_with(
            &["exec", "solo", "-n", "kc", "-c", "nope", "--", "true"],
            b"",
        )
        .await;
    assert_ne!(wrong.code, Some(0));
    assert!(
        wrong
            .stderr
            .contains("container nope is not valid for pod solo"),
        "{}",
        wrong.stderr
    );
    down(sandbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_attached_processes_get_streams_terminal_and_status() {
    let sandbox = sandbox().await;
    let state = sandbox.state().clone();
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), "default");
    let node = state.nodes[0].clone();
    for (name, host) in [("plain", false), ("host", true)] {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"hostNetwork": host, "containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let plain = running(&state, &pods, "plain").await;
    running(&state, &pods, "host").await;

    // stdin in, stdout back, success in the status channel.
    let mut cat = pods
        .exec(
            "plain",
            ["cat"],
            &AttachParams::default().stdin(true).stderr(false),
        )
        .await
        .unwrap();
    let mut stdin = cat.stdin().unwrap();
    stdin.write_all(b"ping\n").await.unwrap();
    // kube-rs ends stdin (v5's close signal) on shutdown.
    stdin.shutdown().await.unwrap();
    let mut out = String::new();
    cat.stdout()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    assert_eq!(out, "ping\n");
    let status = cat.take_status().unwrap().await.unwrap();
    assert_eq!(status.status.as_deref(), Some("Success"));
    cat.join().await.unwrap();

    // A failing command: stderr and the exit code as the kubelet reports them.
    let mut failing = pods
        .exec(
            "plain",
            ["sh", "-c", "echo bad >&2; exit 5"],
            &AttachParams::default(),
        )
        .await
        .unwrap();
    let mut err = String::new();
    failing
        .stderr()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    assert_eq!(err, "bad\n");
    let status = failing.take_status().unwrap().await.unwrap();
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let causes = status.details.unwrap().causes.unwrap();
    assert_eq!(
        (causes[0].reason.as_deref(), causes[0].message.as_deref()),
        (Some("ExitCode"), Some("5"))
    );
    failing.join().await.unwrap();

    // A terminal: an interactive shell on a pseudo-terminal the client resizes, ending with
    // its exit code.
    let mut shell = pods
        .exec("plain", ["sh"], &AttachParams::interactive_tty())
        .await
        .unwrap();
    let mut size = shell.terminal_size().unwrap();
    size.send(TerminalSize {
        width: 100,
        height: 40,
    })
    .await
    .unwrap();
    let mut stdin = shell.stdin().unwrap();
    let mut stdout = shell.stdout().unwrap();
    let mut seen = String::new();
    // The resize and the typed commands travel on different channels: ask until the new
    // size shows.
    let deadline = tokio::time::Instant::now() + WITHIN;
    'asking: loop {
        stdin.write_all(b"tty; stty size\n").await.unwrap();
        loop {
            let mut buffer = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, stdout.read(&mut buffer))
                .await
                .unwrap_or_else(|_| panic!("no terminal size 40 100 in time: {seen:?}"))
                .unwrap();
            assert!(n > 0, "the shell ended early: {seen:?}");
            seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
            let sizes: Vec<&str> = seen
                .lines()
                .map(str::trim)
                .filter(|l| {
                    let words: Vec<&str> = l.split(' ').collect();
                    words.len() == 2 && words.iter().all(|w| w.parse::<u16>().is_ok())
                })
                .collect();
            if sizes.contains(&"40 100") {
                break 'asking;
            }
            if !sizes.is_empty() {
                seen.clear();
                continue 'asking;
            }
        }
    }
    assert!(seen.contains("/dev/pts/"), "{seen:?}");
    stdin.write_all(b"exit 7\n").await.unwrap();
    let status = shell.take_status().unwrap().await.unwrap();
    let causes = status.details.unwrap().causes.unwrap();
    assert_eq!(causes[0].message.as_deref(), Some("7"));
    drop(stdout);
    shell.join().await.unwrap();

    // The pod's network namespace, and the node's for a hostNetwork pod.
    for (name, ip) in [("plain", pod_ip(&plain)), ("host", node.ip.to_string())] {
        let mut ip_addr = pods
            .exec(
                name,
                ["ip", "-4", "addr"],
                &AttachParams::default().stderr(false),
            )
            .await
            .unwrap();
        let mut out = String::new();
        ip_addr
            .stdout()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        assert!(out.contains(&format!("inet {ip}/")), "{name}: {out}");
        ip_addr.join().await.unwrap();
    }
    down(sandbox).await;
}
