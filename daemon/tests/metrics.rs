//! The daemon's health and metrics endpoint with the whole stack in a sandbox node: it listens
//! on the port chosen at runtime (`--pprof-port=0`, found through `<bind-socket>.metrics-addr`),
//! answers `/healthz`, `/livez` and `/readyz` with 200 once serving, and `/metrics` counts a
//! pod's CNI ADD and the time spent waiting for annotations and `ovn-installed`, and serves every
//! series of `kube_ovn_daemon::metrics::UPSTREAM` under upstream's names and label names.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube_ovn_daemon::metrics::{addr_file, UPSTREAM, UPSTREAM_COMMIT, UPSTREAM_SHARED};
use kube_ovn_sandbox::kubeovn::{daemon_socket, KubeOvnBuild};
use kube_ovn_sandbox::{leftovers, sys, Sandbox, SandboxConfig};
use serde_json::json;

/// `GET http://127.0.0.1:<port><path>` from inside the node's namespace, where the daemon runs:
/// the status code and the body.
fn get(netns: &str, port: u16, path: &str) -> Option<(u16, String)> {
    let out = sys::in_netns(netns, "curl")
        .args(["-s", "-m", "5", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_string()))
}

/// The value of the sample whose line starts with `series` (labels included), if exported.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_on_the_runtime_port() {
    let mut config = SandboxConfig::isolated(1);
    config.kube_ovn = Some(KubeOvnBuild::of_test_binary().expect("kube-ovn build"));
    let (run_dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let node = sandbox.state().node("node1").unwrap().clone();

    let file = addr_file(&daemon_socket(&node));
    let mut port = None;
    assert!(
        sys::wait_for(Duration::from_secs(30), || {
            port = std::fs::read_to_string(&file)
                .ok()
                .and_then(|s| s.trim().parse::<std::net::SocketAddr>().ok())
                .map(|a| a.port());
            port.is_some()
        }),
        "{} never written",
        file.display()
    );
    let port = port.unwrap();
    assert_ne!(port, 0);
    assert!(
        sys::wait_for(Duration::from_secs(30), || get(
            &node.netns,
            port,
            "/readyz"
        )
        .is_some_and(|(code, _)| code == 200)),
        "/readyz never 200"
    );
    for path in ["/healthz", "/livez"] {
        assert_eq!(get(&node.netns, port, path).unwrap().0, 200, "{path}");
    }
    assert_eq!(get(&node.netns, port, "/nope").unwrap().0, 404);

    let add_ok =
        r#"cni_op_latency_seconds_count{node_name="node1",method="/api/v1/add",status_code="200"}"#;
    let (code, before) = get(&node.netns, port, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert_eq!(sample(&before, add_ok), None, "no ADD yet:\n{before}");

    let pods: Api<Pod> = Api::namespaced(sandbox.client(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "m1"},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let phase = pods.get("m1").await.ok().and_then(|p| p.status?.phase);
        if phase.as_deref() == Some("Running") {
            break;
        }
        assert!(Instant::now() < deadline, "pod m1 never Running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (code, after) = get(&node.netns, port, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        sample(&after, add_ok).is_some_and(|n| n >= 1.0),
        "ADD not counted:\n{after}"
    );
    let installed_wait = sample(
        &after,
        r#"cni_wait_ovn_installed_seconds_total{node_name="node1"}"#,
    );
    assert!(installed_wait.is_some_and(|s| s > 0.0), "{after}");
    for wait in [
        "cni_wait_address_seconds_total",
        "cni_wait_route_seconds_total",
    ] {
        let series = format!(r#"{wait}{{node_name="node1"}}"#);
        assert!(sample(&after, &series).is_some(), "{series}:\n{after}");
    }
    let gaps = kube_ovn_sandbox::exposition::missing(&after, &[UPSTREAM_SHARED, UPSTREAM].concat());
    assert!(
        gaps.is_empty(),
        "series of upstream {UPSTREAM_COMMIT} not as upstream serves them: {gaps:#?}\n{after}"
    );
    assert!(
        after.contains(r#"ovs_client_request_latency_milliseconds_count{db="ovsdb",method="add-port",code="0"}"#),
        "{after}"
    );

    sandbox.down().await.unwrap();
    let left = leftovers(&run_dir, &prefix);
    assert!(left.is_empty(), "teardown left {left:?}");
}
