//! `kube-ovn-pod-bench`: how long a pod waits for its network in a 2-node sandbox running
//! kube-ovn-rs, next to how long ovn-controller alone takes to install a port in the same run.
//!
//! N pods are created at once (half per node). For each: create → Running (the CNI ADD has
//! returned), ADD → first echo reply from the subnet gateway, and create → first reply. Then M
//! ports are plugged into node1's `br-int` by hand, one at a time, each with a logical switch
//! port written straight to NB: add-port → `ovn-installed` and add-port → first reply. The gap
//! between the two ADD → ping and hand add-port → ping is what the daemon and controller add.
//!
//! Probing: every probe is one raw ICMP socket opened on a short-lived thread after `setns` into
//! the pod's namespace, sending an echo every 10 ms until the first reply. No `ping` process is
//! forked per attempt (on a 2-core machine a hundred forks per round would compete with the
//! daemons being measured), and a probe starts only once its pod is Running, so only pods not yet
//! reachable are probed; a concurrency bound would instead queue probes and add its own delay.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::wire::{plug_by_hand, HandPlug};
use kube_ovn_sandbox::{sweep, sys, Sandbox, SandboxConfig, SandboxState};

/// The ovn-default gateway every probe pings.
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 16, 0, 1);
/// How often an unanswered probe sends another echo.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// How long a pod may take to become Running or reachable before it counts as failed.
const LIMIT: Duration = Duration::from_secs(120);
/// The ADD → first-ping aims of issue 5.
const AIM_P50: Duration = Duration::from_millis(300);
const AIM_P99: Duration = Duration::from_secs(1);

#[derive(Parser)]
#[command(about = "Pod network readiness latency in a 2-node kube-ovn-rs sandbox")]
struct Args {
    /// Pods created at once, half on each node.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Ports plugged by hand into node1's br-int, one at a time (at most 200).
    #[arg(long, default_value_t = 20)]
    hand_ports: usize,
}

type Res<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// kube-ovn-rs as built in the same target directory as this binary.
fn kube_ovn_build() -> Option<KubeOvnBuild> {
    let exe = std::env::current_exe().ok()?;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    KubeOvnBuild::beside(exe.parent()?, &source)
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum::<u32>();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Echo-probes `target` from namespace `netns` until the first reply; when it arrived.
fn first_reply(netns: &str, target: Ipv4Addr, id: u16, limit: Duration) -> Option<Instant> {
    let ns = File::open(sys::netns_path(netns)).ok()?;
    // SAFETY: setns on this thread only (the thread ends with the probe); fd is valid.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return None;
    }
    // SAFETY: plain socket(2); the result is checked before being owned.
    let raw = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        )
    };
    if raw < 0 {
        return None;
    }
    // SAFETY: raw is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let dest = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(target).to_be(),
        },
        sin_zero: [0; 8],
    };
    let end = Instant::now() + limit;
    let mut buf = [0u8; 1500];
    for seq in 1u16.. {
        if Instant::now() >= end {
            return None;
        }
        let mut pkt = [0u8; 16];
        pkt[0] = 8;
        pkt[4..6].copy_from_slice(&id.to_be_bytes());
        pkt[6..8].copy_from_slice(&seq.to_be_bytes());
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
        // Before the pod has its address and route this fails (ENETUNREACH): just retry.
        // SAFETY: pkt and dest outlive the call; lengths are theirs.
        unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&dest as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        let round_end = Instant::now() + PROBE_INTERVAL;
        loop {
            let left = round_end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut pfd = libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
            if n <= 0 {
                break;
            }
            // SAFETY: buf is writable for its length.
            let got =
                unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if got <= 0 {
                continue;
            }
            let got = &buf[..got as usize];
            let ihl = usize::from(got[0] & 0x0f) * 4;
            // An echo reply (type 0) to one of our echoes: any earlier sequence counts too.
            if got.len() >= ihl + 8
                && got[ihl] == 0
                && got[ihl + 4..ihl + 6] == id.to_be_bytes()
                && u16::from_be_bytes([got[ihl + 6], got[ihl + 7]]) <= seq
            {
                return Some(Instant::now());
            }
        }
    }
    None
}

/// One pod's milestones.
struct PodTimes {
    name: String,
    created: Instant,
    running: Option<Instant>,
    pinged: Option<Instant>,
}

/// Nearest-rank percentiles of a sample (sorted in place).
fn row(label: &str, mut v: Vec<Duration>, of: usize) -> (Option<Duration>, Option<Duration>) {
    v.sort();
    let pct = |q: f64| -> Option<Duration> {
        if v.is_empty() {
            return None;
        }
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        Some(v[rank - 1])
    };
    let ms = |d: Option<Duration>| {
        d.map(|d| format!("{:8.1}", d.as_secs_f64() * 1000.0))
            .unwrap_or_else(|| format!("{:>8}", "-"))
    };
    println!(
        "{label:<42} {:>4}/{:<4} {} {} {} {}",
        v.len(),
        of,
        ms(pct(0.5)),
        ms(pct(0.9)),
        ms(pct(0.99)),
        ms(v.last().copied()),
    );
    (pct(0.5), pct(0.99))
}

async fn pods_phase(sandbox: &Sandbox, n: usize) -> Res<Vec<PodTimes>> {
    let state = sandbox.state().clone();
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), "default");
    let mut events = watcher(pods.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let mut times: Vec<PodTimes> = Vec::with_capacity(n);
    let creates = (0..n).map(|i| {
        let pods = pods.clone();
        async move {
            let name = format!("bench-{i}");
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"nodeName": format!("node{}", 1 + i % 2),
                         "containers": [{"name": "c", "image": "x"}]}
            }))?;
            let created = Instant::now();
            pods.create(&PostParams::default(), &pod).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(PodTimes {
                name,
                created,
                running: None,
                pinged: None,
            })
        }
    });
    for t in futures::future::join_all(creates).await {
        times.push(t?);
    }
    let (tx, rx) = mpsc::channel::<(usize, Option<Instant>)>();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut running = 0;
    while running < n {
        let Ok(next) = tokio::time::timeout_at(deadline, events.try_next()).await else {
            eprintln!("{} of {n} pods Running within {LIMIT:?}", running);
            break;
        };
        let Some(pod) = next? else { break };
        let seen = Instant::now();
        let name = pod.metadata.name.unwrap_or_default();
        let phase = pod.status.and_then(|s| s.phase);
        let Some(i) = times.iter().position(|t| t.name == name) else {
            continue;
        };
        if phase.as_deref() != Some("Running") || times[i].running.is_some() {
            continue;
        }
        times[i].running = Some(seen);
        running += 1;
        let (tx, netns) = (tx.clone(), state.pod_netns("default", &name));
        std::thread::spawn(move || {
            let _ = tx.send((i, first_reply(&netns, GATEWAY, i as u16 + 1, LIMIT)));
        });
    }
    drop(tx);
    for (i, pinged) in rx {
        times[i].pinged = pinged;
    }
    Ok(times)
}

/// Hand-plugged port milestones: (add-port → ovn-installed, add-port → first reply).
fn hand_phase(state: &SandboxState, m: usize) -> Res<Vec<(Option<Duration>, Option<Duration>)>> {
    let node = state.node("node1").ok_or("no node1")?;
    let mut out = Vec::with_capacity(m);
    for i in 0..m {
        // High addresses of ovn-default: IPAM hands addresses out from the bottom, so a run of a
        // few hundred pods never reaches 10.16.200.0/24.
        let (lsp, mac) = (format!("bench-hand-{i}"), format!("0a:00:00:10:c8:{i:02x}"));
        let ip = format!("10.16.200.{}", 10 + i);
        let (netns, host) = (format!("{}hand{i}", state.prefix), format!("bhand{i}"));
        sys::run(
            "ovn-nbctl",
            [
                format!("--db={}", state.central.nb),
                "lsp-add".into(),
                "ovn-default".into(),
                lsp.clone(),
                "--".into(),
                "lsp-set-addresses".into(),
                lsp.clone(),
                format!("{mac} {ip}"),
            ],
        )?;
        let cidr = format!("{ip}/16");
        let gw = GATEWAY.to_string();
        let plug = HandPlug {
            netns: &netns,
            host_ifname: &host,
            lsp: &lsp,
            mac: &mac,
            ip_cidr: &cidr,
            gateway: Some(&gw),
            mtu: 1400,
        };
        plug_by_hand(node, &plug)?;
        // add-port has returned: ovs-vswitchd holds the port and ovn-controller sees it.
        let added = Instant::now();
        let probe_ns = netns.clone();
        let probe = std::thread::spawn(move || {
            first_reply(
                &probe_ns,
                GATEWAY,
                0x8000 + i as u16,
                Duration::from_secs(30),
            )
        });
        let installed = node
            .vsctl([
                "--timeout=30",
                "wait-until",
                "Interface",
                &host,
                r#"external_ids:ovn-installed="true""#,
            ])
            .ok()
            .map(|_| added.elapsed());
        let pinged = probe.join().ok().flatten().map(|t| t.duration_since(added));
        out.push((installed, pinged));
    }
    Ok(out)
}

async fn bench(sandbox: &Sandbox, args: &Args) -> Res {
    let n = args.pods;
    let times = pods_phase(sandbox, n).await?;
    let state = sandbox.state().clone();
    let m = args.hand_ports;
    let hand = tokio::task::spawn_blocking(move || hand_phase(&state, m)).await??;

    println!();
    println!(
        "kube-ovn-pod-bench: {n} pods created at once ({} on node1, {} on node2), {m} ports plugged by hand on node1, one at a time",
        n.div_ceil(2),
        n / 2
    );
    println!(
        "{:<42} {:>9} {:>8} {:>8} {:>8} {:>8}",
        "milliseconds", "n/of", "p50", "p90", "p99", "max"
    );
    let pods_of = |f: &dyn Fn(&PodTimes) -> Option<Duration>| -> Vec<Duration> {
        times.iter().filter_map(f).collect()
    };
    row(
        "(a) pod create -> Running (CNI ADD done)",
        pods_of(&|t| Some(t.running?.duration_since(t.created))),
        n,
    );
    let (p50, p99) = row(
        "(b) ADD done -> first gateway ping",
        pods_of(&|t| Some(t.pinged?.duration_since(t.running?))),
        n,
    );
    row(
        "(c) pod create -> first gateway ping",
        pods_of(&|t| Some(t.pinged?.duration_since(t.created))),
        n,
    );
    row(
        "hand port: add-port -> ovn-installed",
        hand.iter().filter_map(|h| h.0).collect(),
        m,
    );
    row(
        "hand port: add-port -> first gateway ping",
        hand.iter().filter_map(|h| h.1).collect(),
        m,
    );
    let verdict = |got: Option<Duration>, aim: Duration| match got {
        Some(d) if d < aim => "met",
        _ => "MISSED",
    };
    println!(
        "aims for (b): p50 < {} ms ({}), p99 < {} ms ({})",
        AIM_P50.as_millis(),
        verdict(p50, AIM_P50),
        AIM_P99.as_millis(),
        verdict(p99, AIM_P99)
    );
    let failed = times.iter().filter(|t| t.pinged.is_none()).count();
    if failed > 0 {
        return Err(
            format!("{failed} of {n} pods never Running or never reached the gateway").into(),
        );
    }
    Ok(())
}

async fn main_async(args: Args) -> Res {
    if args.hand_ports > 200 {
        return Err("--hand-ports is at most 200 (10.16.200.10-209)".into());
    }
    let build = kube_ovn_build().ok_or(
        "kube-ovn binaries missing beside this binary: build kube-ovn-controller, kube-ovn-daemon and kube-ovn-cni in the same profile first",
    )?;
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(build);
    let (run_dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
    let sandbox = match Sandbox::up(config).await {
        Ok(s) => s,
        Err(e) => {
            let _ = sweep(&run_dir, &prefix);
            return Err(e.into());
        }
    };
    eprintln!("sandbox up in {:.1} s", sandbox.state().bring_up_seconds);
    let result = bench(&sandbox, &args).await;
    let down = sandbox.down().await;
    result?;
    down?;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kube-ovn-pod-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(main_async(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-ovn-pod-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
