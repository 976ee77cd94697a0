//! `kubectl ko` against the sandbox: its component subcommands run upstream's tools through
//! `pods/exec` of the component pods (ovn-central, ovs-ovn), as in a cluster, and their output
//! and exit codes come back: `nbctl show` lists the pods' ports, `sbctl show` the chassis,
//! `vsctl <node> show` and `ofctl <node> dump-flows br-int` that node's OVS, `nb dbstatus` every
//! ovn-central pod's databases, `nb|sb backup` copies a standalone NB (ovsdb-client) or a raft
//! SB (cluster-to-standalone in the leader's pod) into the working directory, `trace` follows a pod's packet to a pod on the other node
//! through `ovn-trace` and `ofproto/trace`, and in a raft sandbox `nb status` names the leader.

use std::path::{Path, PathBuf};
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
    ko_in(build, state, &state.run_dir, args).await
}

/// [`ko`] with `dir` as the working directory (where `backup` writes).
async fn ko_in(
    build: &KubeOvnBuild,
    state: &SandboxState,
    dir: &Path,
    args: &[&str],
) -> (i32, String, String) {
    let mut cmd = Command::new(&build.kubectl_ko);
    cmd.arg(format!("--kubeconfig={}", state.kubeconfig.display()))
        .args(args)
        .current_dir(dir);
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

    // A standalone NB is backed up with ovsdb-client: web's and cli's ports are in the copy.
    let file = backup(&build, &state, "nb", "OVN_Northbound").await;
    let ports = names_in(&file, "OVN_Northbound", "Logical_Switch_Port", "name");
    assert!(
        ports.contains("web.default") && ports.contains("cli.default"),
        "{ports}"
    );

    let (code, out, err) = ko(&build, &state, &["nb", "dbstatus"]).await;
    assert_eq!(code, 0, "nb dbstatus: {err}");
    assert!(out.contains("get dbstatus in pod ovn-central-0"), "{out}");
    assert!(
        out.contains("nb db status") && out.contains("sb db status"),
        "{out}"
    );
}

/// Runs `<db> backup` in a fresh directory and returns the backup file it wrote (after
/// checking it is a standalone database of `schema`).
async fn backup(build: &KubeOvnBuild, state: &SandboxState, db: &str, schema: &str) -> PathBuf {
    let dir = state.run_dir.join(format!("backup-{db}"));
    std::fs::create_dir_all(&dir).unwrap();
    let (code, out, err) = ko_in(build, state, &dir, &[db, "backup"]).await;
    assert_eq!(code, 0, "{db} backup: {err}\n{out}");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = files[0].clone();
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("ovn{db}_db.")) && name.ends_with(".backup"),
        "{name}"
    );
    assert!(
        out.contains(&format!("backup ovn-{db} db to {}", file.display())),
        "{out}"
    );
    let tool = |args: &[&str]| {
        let o = Command::new("ovsdb-tool").args(args).output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
        )
    };
    let f = file.to_string_lossy().into_owned();
    assert_eq!(tool(&["db-name", &f]), (true, schema.to_string()));
    assert!(tool(&["db-is-standalone", &f]).0, "{f} is not standalone");
    file
}

/// The names in `column` of `table` in the standalone database file `file`.
fn names_in(file: &Path, schema: &str, table: &str, column: &str) -> String {
    let query = format!(
        r#"["{schema}",{{"op":"select","table":"{table}","where":[],"columns":["{column}"]}}]"#
    );
    let o = Command::new("ovsdb-tool")
        .args(["query", &file.to_string_lossy(), &query])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
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
    // A raft member's file is converted in the leader's pod (upstream's way), copied out and
    // removed there: both nodes' chassis are in the SB copy, no backup file stays behind.
    let file = backup(&build, &state, "sb", "OVN_Southbound").await;
    let chassis = names_in(&file, "OVN_Southbound", "Chassis", "hostname");
    assert!(
        chassis.contains("node1") && chassis.contains("node2"),
        "{chassis}"
    );
    let central = kube_ovn_sandbox::central::dir(&state.run_dir);
    let left: Vec<_> = walk(&central)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".backup"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The pods labelled `label=true` among the ovn-central pods, by name.
async fn labelled(pods: &Api<Pod>, label: &str) -> Vec<String> {
    let params = kube::api::ListParams::default().labels(&format!("app=ovn-central,{label}=true"));
    let mut names: Vec<String> = pods
        .list(&params)
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Waits until exactly the pods `want` are labelled `ovn-nb-leader=true`.
async fn nb_labelled_exactly(pods: &Api<Pod>, want: &[String], what: &str) {
    probe::until(READY, what, || async {
        let got = labelled(pods, "ovn-nb-leader").await;
        if got == want {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// kube-ovn-leader-checker in each ovn-central pod labels exactly the pod of the member leading
/// NB (and SB); when the NB leader's server dies, the label moves to the member elected next,
/// and once the dead member is back (a follower now) only the new leader's pod carries it, which
/// is where `kubectl ko nb status` then runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_labels_follow_the_raft_leader() {
    let (sandbox, build) = sandbox(true).await;
    let state = sandbox.state().clone();
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), "kube-system");
    let pod_of = |member: &str| {
        let n: usize = member.trim_start_matches("nb").parse().unwrap();
        format!("ovn-central-{}", n - 1)
    };
    let leader = kube_ovn_sandbox::central::nb_leader(&state.run_dir).expect("an NB leader");
    let want = vec![pod_of(&leader)];
    nb_labelled_exactly(&pods, &want, "the NB leader's pod alone labelled").await;
    assert_eq!(labelled(&pods, "ovn-sb-leader").await.len(), 1);
    // Each member runs an ovn-northd; the one holding the SB lock is active.
    probe::until(READY, "one pod ovn-northd-leader", || async {
        let got = labelled(&pods, "ovn-northd-leader").await;
        if got.len() == 1 {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await
    .unwrap();

    let central = kube_ovn_sandbox::central::dir(&state.run_dir);
    kube_ovn_sandbox::sys::kill_pidfile(&central.join(format!("{leader}.pid"))).unwrap();
    let next = probe::until(READY, "a new NB leader", || async {
        match kube_ovn_sandbox::central::nb_leader(&state.run_dir) {
            Some(l) if l != leader => Ok(l),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let moved = pod_of(&next);
    probe::until(READY, "the new leader's pod labelled", || async {
        let got = labelled(&pods, "ovn-nb-leader").await;
        if got.contains(&moved) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await
    .unwrap();
    kube_ovn_sandbox::central::restart_server(&state.run_dir, &leader).unwrap();
    let want = vec![moved.clone()];
    nb_labelled_exactly(&pods, &want, "only the new leader's pod labelled").await;
    let (code, out, err) = ko(&build, &state, &["nb", "status"]).await;
    assert_eq!(code, 0, "nb status: {err}");
    assert!(
        out.contains("Role: leader") && out.contains("Leader: self"),
        "{out}"
    );

    // A label changed by someone else is put back.
    let patch = json!({"metadata": {"labels": {"ovn-nb-leader": "false"}}});
    pods.patch(
        &moved,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap();
    nb_labelled_exactly(&pods, &want, "the label put back").await;
}

/// Awaits `capture` (up to a minute) while pings go from `netns` to `ip`, and stops them.
async fn pinging(
    netns: &str,
    ip: &str,
    capture: impl std::future::Future<Output = (i32, String, String)>,
) -> (i32, String, String) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let task = {
        let (stop, netns, ip) = (stop.clone(), netns.to_string(), ip.to_string());
        tokio::task::spawn_blocking(move || {
            while !stop.load(Ordering::Relaxed) {
                probe::ping(&netns, &ip, Duration::from_secs(1));
            }
        })
    };
    let got = tokio::time::timeout(Duration::from_secs(60), capture)
        .await
        .expect("the capture ends once it has its packets");
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    got
}

/// `kubectl ko tcpdump`: a pod's capture runs in its network namespace (through its node's
/// kube-ovn-cni pod) and shows the echo requests another pod sends it and its replies; a
/// host-network pod's runs in its node's ovs-ovn pod and sees the node's traffic; a pod that
/// does not exist is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tcpdump_captures_a_pods_packets() {
    let (sandbox, build) = sandbox(false).await;
    let state = sandbox.state().clone();
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), "default");
    for (name, node) in [("web", "node1"), ("cli", "node2")] {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}}))
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    let web_ip = probe::running_pod_ip(&pods, "web", READY)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", probe::report(&state)));
    probe::running_pod_ip(&pods, "cli", READY).await.unwrap();
    let cli_ns = kube_ovn_sandbox::kubelet::pod_netns(&state.prefix, "default", "cli");
    probe::reach(&state, &cli_ns, &web_ip).expect("cli reaches web");

    // Pings from cli keep going until the capture has its four packets.
    let capture = ko(
        &build,
        &state,
        &["tcpdump", "default/web", "-c", "4", "icmp"],
    );
    let (code, out, err) = pinging(&cli_ns, &web_ip, capture).await;
    assert_eq!(code, 0, "tcpdump: {err}\n{out}");
    assert!(
        err.contains("+ kubectl exec kube-ovn-cni-node1")
            && err.contains("tcpdump -nn -i eth0 -c 4 icmp"),
        "{err}"
    );
    assert!(
        out.contains(&format!("> {web_ip}: ICMP echo request")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{web_ip} > ")) && out.contains("ICMP echo reply"),
        "{out}"
    );

    // A host-network pod: node2's ovs-ovn pod captures on node2's interfaces.
    let capture = ko(
        &build,
        &state,
        &[
            "tcpdump",
            "kube-system/ovs-ovn-node2",
            "-c",
            "1",
            "-i",
            "any",
            "icmp",
        ],
    );
    let node2_ns = state.node("node2").unwrap().netns.clone();
    let (code, out, err) = pinging(&node2_ns, &web_ip, capture).await;
    assert_eq!(code, 0, "tcpdump: {err}\n{out}");
    assert!(err.contains("+ kubectl exec ovs-ovn-node2"), "{err}");
    assert!(out.contains("ICMP echo"), "{out}");

    let (code, _, err) = ko(&build, &state, &["tcpdump", "default/nosuch"]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("Pod default/nosuch not exists on any node"),
        "{err}"
    );
}
