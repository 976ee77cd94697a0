//! `kubectl ko perf` against the sandbox: upstream's test pods (`kubeovn/test`, whose qperf,
//! iperf3 and iperf the sandbox's kubelet stand-ins run from the host) measure real traffic
//! through OVN between pods on two nodes, between the nodes, through a load balancer on the
//! Service address (every cell of those tables filled) and by multicast; the recovery section
//! deletes the ovn-central leader pod and times its Deployment back to available (in the
//! sandbox that pod stands for processes it does not own, so this times the pod's replacement
//! only); afterwards nothing perf made is left, in the API or in the NB.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::{probe, Sandbox, SandboxConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn perf_measures_pod_host_service_and_multicast_traffic() {
    for tool in ["qperf", "iperf3", "iperf"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .status()
                .is_ok_and(|s| s.success()),
            "{tool} is not installed (test/sandbox/install-deps.sh installs it)"
        );
    }
    let build = KubeOvnBuild::of_test_binary().expect("kube-ovn build");
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(build.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox");
    let state = sandbox.state().clone();
    let mut cmd = Command::new(&build.kubectl_ko);
    cmd.arg(format!("--kubeconfig={}", state.kubeconfig.display()))
        .args(["perf", "--seconds", "1", "--sizes", "64,1k"])
        .current_dir(&state.run_dir);
    let run = tokio::task::spawn_blocking(move || cmd.output().expect("kubectl-ko runs"));
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("perf finishes")
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    println!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "{stdout}\n{stderr}\n{}",
        probe::report(&state)
    );

    let section = |title: &str| -> String {
        let start = stdout
            .find(title)
            .unwrap_or_else(|| panic!("no {title:?} section:\n{stdout}"));
        let rest = &stdout[start..];
        let end = rest.find(&"=".repeat(100)).unwrap_or(rest.len());
        rest[..end].to_string()
    };
    for title in [
        "Start Pod Network Unicast Performance Test",
        "Start Host Network Performance Test",
        "Start Service Network Performance Test",
    ] {
        let s = section(title);
        for size in ["64", "1k"] {
            let row = s
                .lines()
                .find(|l| l.split_whitespace().next() == Some(size))
                .unwrap_or_else(|| panic!("{title}: no row for {size}:\n{s}"));
            // Size, TCP latency (2 words), TCP bandwidth (2), UDP latency (2), loss, UDP
            // bandwidth (2): every cell measured.
            let words: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(words.len(), 10, "{title}: a cell is missing in {row:?}");
            assert!(["us", "ms", "sec"].contains(&words[2]), "{row:?}");
            assert!(words[4].ends_with("bits/sec"), "{row:?}");
            assert!(
                words[7].starts_with('(') && words[9].ends_with("bits/sec"),
                "{row:?}"
            );
        }
    }
    // Multicast: the paced run's jitter is in every row; a full-rate run's report can be cut
    // short when iperf's last datagram is among those lost (a "-" cell), so bandwidth is
    // required of one row at least.
    let mut with_bandwidth = 0;
    for title in [
        "Start Pod Multicast Network Performance Test",
        "Start Host Multicast Network Performance",
    ] {
        let s = section(title);
        for size in ["64", "1k"] {
            let row = s
                .lines()
                .find(|l| l.split_whitespace().next() == Some(size))
                .unwrap_or_else(|| panic!("{title}: no row for {size}:\n{s}"));
            assert!(row.contains(" ms"), "{title}: {row:?}");
            with_bandwidth += usize::from(row.contains("bits/sec"));
        }
    }
    assert!(
        with_bandwidth > 0,
        "no multicast bandwidth measured:\n{stdout}"
    );
    assert!(stdout.contains("OVN nb Recovery takes"), "{stdout}");

    let params = ListParams::default().labels("app=PerfTest");
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), "kube-system");
    let services: Api<Service> = Api::namespaced(sandbox.client(), "kube-system");
    assert!(pods.list(&params).await.unwrap().items.is_empty());
    assert!(services.list(&params).await.unwrap().items.is_empty());
    let lbs = Command::new("ovn-nbctl")
        .args([
            &format!("--db={}", state.central.nb),
            "--bare",
            "--columns=name",
            "list",
            "load_balancer",
        ])
        .output()
        .unwrap();
    let lbs = String::from_utf8_lossy(&lbs.stdout);
    assert!(!lbs.lines().any(|l| l.trim() == "test-server"), "{lbs}");
}
