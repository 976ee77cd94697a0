//! The OVN world itself: a 2-node sandbox carries real packets between namespaces wired by hand
//! through OVN NB (no CNI involved), the raft/interconnection variant comes up, and teardown
//! leaves nothing on the machine.

use std::process::Stdio;
use std::time::{Duration, Instant};

use kube_ovn_sandbox::wire::{plug_by_hand, HandPlug};
use kube_ovn_sandbox::{leftovers, probe, sys, Sandbox, SandboxConfig};
use ovsdb::{Atom, Client, Condition, Datum, Mutation, Remote, Row, Timeouts, Transaction};

const NB: &str = "OVN_Northbound";

fn root_links() -> Vec<String> {
    let out = sys::run("ip", ["-o", "link", "show"]).unwrap();
    let mut names: Vec<String> = out
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
        .collect();
    names.sort();
    names
}

fn plug<'a>(
    netns: &'a str,
    host: &'a str,
    lsp: &'a str,
    mac: &'a str,
    ip: &'a str,
) -> HandPlug<'a> {
    HandPlug {
        netns,
        host_ifname: host,
        lsp,
        mac,
        ip_cidr: ip,
        gateway: None,
        mtu: 1400,
    }
}

async fn nb_client(remote: &str) -> Client {
    let remote = Remote::parse_list(remote).unwrap().remove(0);
    Client::connect(&remote, None, &Timeouts::default())
        .await
        .unwrap()
        .0
}

/// A switch with one port per (name, mac, ip), written with our own client in one transaction.
async fn add_switch(nb: &Client, switch: &str, ports: &[(&str, &str, &str)]) {
    let mut txn = Transaction::new(NB);
    let mut uuids = Vec::new();
    for (name, mac, ip) in ports {
        let mut row = Row::new();
        row.insert("name", Datum::from(Atom::from(*name)));
        row.insert("addresses", Datum::set([Atom::from(format!("{mac} {ip}"))]));
        uuids.push(Atom::NamedUuid(txn.insert("Logical_Switch_Port", row)));
    }
    let mut sw = Row::new();
    sw.insert("name", Datum::from(Atom::from(switch)));
    let sw_name = txn.insert("Logical_Switch", sw);
    txn.mutate(
        "Logical_Switch",
        vec![Condition::eq(
            "_uuid",
            Datum::from(Atom::NamedUuid(sw_name)),
        )],
        vec![Mutation::insert("ports", Datum::set(uuids))],
    );
    nb.transact(&txn).await.unwrap();
}

/// Waits until northd reports the port bound (`up` = true), i.e. ovn-controller claimed it.
async fn wait_port_up(nb: &Client, lsp: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut txn = Transaction::new(NB);
        txn.select(
            "Logical_Switch_Port",
            vec![Condition::eq("name", Datum::from(Atom::from(lsp)))],
        );
        let out = nb.transact(&txn).await.unwrap();
        let up = out.results[0]
            .rows
            .iter()
            .flatten()
            .any(|r| r.get("up") == Some(&serde_json::json!(true)));
        if up {
            return;
        }
        assert!(Instant::now() < deadline, "port {lsp} never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_carry_pings_and_tcp_between_hand_wired_namespaces_and_leave_nothing() {
    let links_before = root_links();
    let mut config = SandboxConfig::isolated(2);
    config.kubelets = false;
    let (run_dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox up");
    let state = sandbox.state().clone();
    println!("2-node bring-up: {:.2} s", state.bring_up_seconds);

    let nb = nb_client(&state.central.nb).await;
    add_switch(
        &nb,
        "sw0",
        &[
            ("a.default", "0a:00:00:00:00:01", "10.16.0.11"),
            ("b.default", "0a:00:00:00:00:02", "10.16.0.12"),
        ],
    )
    .await;
    let pod_a = format!("{prefix}a");
    let pod_b = format!("{prefix}b");
    plug_by_hand(
        state.node("node1").unwrap(),
        &plug(
            &pod_a,
            "a_h",
            "a.default",
            "0a:00:00:00:00:01",
            "10.16.0.11/16",
        ),
    )
    .unwrap();
    plug_by_hand(
        state.node("node2").unwrap(),
        &plug(
            &pod_b,
            "b_h",
            "b.default",
            "0a:00:00:00:00:02",
            "10.16.0.12/16",
        ),
    )
    .unwrap();
    wait_port_up(&nb, "a.default").await;
    wait_port_up(&nb, "b.default").await;

    probe::reach(&state, &pod_a, "10.16.0.12").expect("node1 pod cannot ping node2 pod");
    probe::reach(&state, &pod_b, "10.16.0.11").expect("node2 pod cannot ping node1 pod");
    // Nothing is bridged outside OVN: an address not on the switch is unreachable.
    assert!(
        !sys::in_netns(&pod_a, "ping")
            .args(["-c1", "-W1", "10.16.0.99"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success(),
        "a port that does not exist answered"
    );

    // TCP across the tunnel (needs the pod-side checksum offload off in the userspace
    // datapath): a listener in b, a sender in a, the bytes must arrive intact.
    let received = format!("{}/received", state.run_dir.display());
    let mut listener = sys::in_netns(&pod_b, "sh")
        .args(["-c", &format!("exec nc -l -p 5001 > {received}")])
        .spawn()
        .unwrap();
    let payload: String = (0..20_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let sent = sys::wait_for(Duration::from_secs(10), || {
        let mut nc = sys::in_netns(&pod_a, "nc")
            .args(["-N", "-w", "2", "10.16.0.12", "5001"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        let ok = nc
            .stdin
            .take()
            .unwrap()
            .write_all(payload.as_bytes())
            .is_ok();
        ok && nc.wait().is_ok_and(|s| s.success())
    });
    assert!(sent, "TCP connection from node1 pod to node2 pod failed");
    let done = sys::wait_for(Duration::from_secs(10), || {
        listener.try_wait().ok().flatten().is_some()
    });
    assert!(done, "listener did not see the connection end");
    assert_eq!(std::fs::read_to_string(&received).unwrap(), payload);

    // Provider network: every node reaches the external host and the "internet" behind it.
    for n in &state.nodes {
        if let Err(why) = probe::reach(&state, &n.netns, "172.19.0.100") {
            panic!("{} cannot reach external: {why}", n.name);
        }
        if let Err(why) = probe::reach(&state, &n.netns, "1.1.1.1") {
            panic!("{} has no default route: {why}", n.name);
        }
    }

    let report = sandbox.down().await.expect("teardown");
    assert!(report.namespaces >= 6, "{report:?}");
    let left = leftovers(&run_dir, &prefix);
    assert!(left.is_empty(), "teardown left {left:?}");
    assert!(
        !sys::netns_list().iter().any(|n| n.starts_with(&prefix)),
        "namespaces left"
    );
    assert_eq!(
        root_links(),
        links_before,
        "root namespace interfaces changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_central_and_interconnection_come_up_and_go_away() {
    let mut config = SandboxConfig::isolated(1);
    config.kubelets = false;
    config.raft = true;
    config.ic = true;
    let (run_dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox up");
    let state = sandbox.state().clone();
    assert_eq!(
        state.central.nb.split(',').count(),
        3,
        "{}",
        state.central.nb
    );
    assert_eq!(
        state.central.sb.split(',').count(),
        3,
        "{}",
        state.central.sb
    );
    // Writes through any member reach the leader; the chassis of the node registered (Sandbox::up
    // waited for it through the raft SB).
    let nb = nb_client(&state.central.nb).await;
    add_switch(&nb, "sw-raft", &[("p1", "0a:00:00:00:00:05", "10.0.0.5")]).await;
    let shown = sys::run(
        "ovn-nbctl",
        [format!("--db={}", state.central.nb), "show".into()],
    )
    .unwrap();
    assert!(shown.contains("sw-raft"), "{shown}");
    let ic = state.central.ic_sb.clone().expect("IC SB remote");
    let ic_dump = sys::run(
        "ovsdb-client",
        [
            "dump".to_string(),
            ic.clone(),
            "OVN_IC_Southbound".into(),
            "Availability_Zone".into(),
        ],
    )
    .unwrap();
    assert!(ic_dump.contains("Availability_Zone"), "{ic_dump}");
    let ic_pid = sys::read_pidfile(&run_dir.join("central/ovn-ic.pid")).expect("ovn-ic pidfile");
    assert!(sys::alive(ic_pid), "ovn-ic is not running");

    sandbox.down().await.expect("teardown");
    assert!(!sys::alive(ic_pid), "ovn-ic survived teardown");
    let left = leftovers(&run_dir, &prefix);
    assert!(left.is_empty(), "teardown left {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_sandbox_is_swept_and_a_busy_prefix_is_refused() {
    let mut config = SandboxConfig::isolated(1);
    config.kubelets = false;
    let (run_dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
    let sandbox = Sandbox::up(config.clone()).await.expect("sandbox up");
    // A second sandbox with the same prefix must not clobber the first.
    let mut clash = config.clone();
    clash.run_dir = run_dir.with_extension("other");
    let err = Sandbox::up(clash.clone())
        .await
        .err()
        .expect("prefix clash accepted");
    assert!(err.to_string().contains("already uses prefix"), "{err}");
    assert!(!clash.run_dir.exists(), "refused bring-up left its run dir");
    // As after a panicking test: no explicit down.
    drop(sandbox);
    let left = leftovers(&run_dir, &prefix);
    assert!(left.is_empty(), "drop left {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_agents_reach_the_api_at_their_own_loopback() {
    let config = SandboxConfig::isolated(2);
    let (run_dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox up");
    let state = sandbox.state().clone();
    for n in &state.nodes {
        let out = tokio::task::spawn_blocking({
            let netns = n.netns.clone();
            move || {
                sys::run_command(sys::in_netns(&netns, "curl").args([
                    "-sS",
                    "-m",
                    "5",
                    "http://127.0.0.1:6443/api/v1/nodes",
                ]))
            }
        })
        .await
        .unwrap()
        .expect("curl from the node");
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        let names: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["metadata"]["name"].as_str())
            .collect();
        assert!(
            names.contains(&"node1") && names.contains(&"node2"),
            "{out}"
        );
        let kc = std::fs::read_to_string(n.kubeconfig()).unwrap();
        assert!(kc.contains("http://127.0.0.1:6443"), "{kc}");
    }
    sandbox.down().await.unwrap();
    assert!(leftovers(&run_dir, &prefix).is_empty());
}
