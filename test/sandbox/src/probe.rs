//! Connectivity checks and the report a failing check prints: a dataplane failure on a CI
//! machine is only diagnosable from what the test printed, so every ping assertion carries a
//! snapshot of the tunnels, routes, neighbours, bindings and the daemons' last log lines.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::sys::{in_netns, run, run_command, wait_for};
use crate::{central, SandboxState};

/// The pod's IP once the API reports it Running, polling until `within` passes (a kubelet
/// stand-in's status update has no cheaper signal to wait on).
pub async fn running_pod_ip(
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    name: &str,
    within: Duration,
) -> Result<String, String> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Ok(p) = pods.get(name).await {
            let st = p.status.unwrap_or_default();
            if st.phase.as_deref() == Some("Running") {
                if let Some(ip) = st.pod_ip {
                    return Ok(ip);
                }
            }
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!("pod {name} not Running within {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `check` every 50 ms until it yields a value or `within` passes; the error names `what`
/// and the last state `check` described. For conditions only the API shows (a status a
/// controller writes), where there is no cheaper signal to wait on.
pub async fn until<T, F, Fut>(within: Duration, what: &str, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        let last = match check().await {
            Ok(v) => return Ok(v),
            Err(state) => state,
        };
        if std::time::Instant::now() >= deadline {
            return Err(format!("{what}: not within {within:?}; last: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pings `to` from `netns` once a second until one reply arrives or `within` passes. The first
/// packets to a new tunnel endpoint may be lost while OVS resolves its neighbour, so a single
/// ping proves nothing either way.
pub fn ping(netns: &str, to: &str, within: Duration) -> bool {
    wait_for(within, || {
        in_netns(netns, "ping")
            .args(["-c1", "-W1", to])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// How long [`reach`] keeps trying: well past a tunnel neighbour's resolution and a port's
/// flow installation on a slow machine.
pub const REACH_WITHIN: Duration = Duration::from_secs(30);

/// [`ping`] with [`REACH_WITHIN`]; on failure the error is the [`unreachable`] report, so
/// `reach(..).expect("what")` fails a test with everything needed to see why.
pub fn reach(state: &SandboxState, netns: &str, to: &str) -> Result<(), String> {
    if ping(netns, to, REACH_WITHIN) {
        Ok(())
    } else {
        Err(unreachable(state, netns, to))
    }
}

/// Why `to` may be unreachable from `netns`: the pod's own view (addresses, routes,
/// neighbours, one ping's output) followed by [`report`].
pub fn unreachable(state: &SandboxState, netns: &str, to: &str) -> String {
    let mut out = String::new();
    section(&mut out, &format!("{netns}: ip addr"), || {
        run("ip", ["-n", netns, "-o", "addr"])
    });
    section(&mut out, &format!("{netns}: ip route"), || {
        run("ip", ["-n", netns, "route"])
    });
    section(&mut out, &format!("{netns}: ip neigh"), || {
        run("ip", ["-n", netns, "neigh"])
    });
    section(&mut out, &format!("{netns}: ping {to}"), || {
        run_command(in_netns(netns, "ping").args(["-c1", "-W1", to]))
    });
    out + &report(state)
}

/// A snapshot of the sandbox's OVN world: the southbound view (chassis, encaps, bindings), and
/// per node the OVS configuration, userspace tunnel routes and neighbours, the number of
/// OpenFlow rules on `br-int`, and the tails of ovn-controller's and ovs-vswitchd's logs.
pub fn report(state: &SandboxState) -> String {
    let mut out = String::new();
    let sb = format!("--db={}", state.central.sb);
    section(&mut out, "ovn-sbctl show", || {
        run("ovn-sbctl", [sb.as_str(), "--timeout=10", "show"])
    });
    section(&mut out, "Port_Binding", || {
        run(
            "ovn-sbctl",
            [
                sb.as_str(),
                "--timeout=10",
                "--columns=logical_port,chassis,up",
                "list",
                "Port_Binding",
            ],
        )
    });
    let central_dir = central::dir(&state.run_dir);
    tail(&mut out, &central_dir.join("northd.log"));
    for node in &state.nodes {
        let name = &node.name;
        section(&mut out, &format!("{name}: ovs-vsctl show"), || {
            node.vsctl(["show"])
        });
        let appctl = |args: &[&str]| {
            let ctl = node.dir.join("vswitchd.ctl").display().to_string();
            run_command(node.command("ovs-appctl").arg("-t").arg(ctl).args(args))
        };
        for cmd in ["ovs/route/show", "tnl/neigh/show", "tnl/ports/show"] {
            section(&mut out, &format!("{name}: {cmd}"), || appctl(&[cmd]));
        }
        section(&mut out, &format!("{name}: br-int flow count"), || {
            run_command(node.command("ovs-ofctl").args(["dump-aggregate", "br-int"]))
        });
        section(&mut out, &format!("{name}: ip addr"), || {
            run("ip", ["-n", &node.netns, "-o", "addr"])
        });
        tail(&mut out, &node.dir.join("ovn-controller.log"));
        tail(&mut out, &node.dir.join("vswitchd.log"));
    }
    out
}

/// Lines of a daemon log kept in a report: enough for the last reconnects and errors.
const TAIL_LINES: usize = 25;

/// Lines of a kube-ovn-rs log kept when a test fails: its warnings and errors (the last
/// [`TAIL_LINES`]) and its last [`TAIL_LINES`] lines, so a failure on a CI machine says why.
pub fn kube_ovn_logs(state: &SandboxState) -> String {
    let mut out = String::new();
    let mut logs = vec![state.run_dir.join("controller.log")];
    logs.extend(state.nodes.iter().map(|n| n.dir.join("daemon.log")));
    for path in logs.iter().filter(|p| p.is_file()) {
        section(&mut out, &format!("warnings in {}", path.display()), || {
            let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
            let bad: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .collect();
            Ok(bad[bad.len().saturating_sub(TAIL_LINES)..].join("\n"))
        });
        tail(&mut out, path);
    }
    out
}

fn tail(out: &mut String, path: &Path) {
    let title = format!("tail {}", path.display());
    section(out, &title, || {
        let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
        let lines: Vec<&str> = text.lines().collect();
        Ok(lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n"))
    });
}

fn section(out: &mut String, title: &str, body: impl FnOnce() -> crate::Result<String>) {
    let text = body().unwrap_or_else(|e| format!("(failed: {e})"));
    let _ = writeln!(out, "--- {title}\n{}", text.trim_end());
}
