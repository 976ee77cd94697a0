//! `kube-ovn-chaos`: faults injected into a 2-node sandbox running kube-ovn-rs, with the
//! invariants checked afterwards and the figures printed (issue 13, R1 and R2).
//!
//! - `nb` (R1): a churn of pods (created with bounded concurrency, every fourth deleted right
//!   after its create) while the standalone NB ovsdb-server is killed with SIGKILL several times
//!   and restarted on the same database file. Then: the time until every live pod has exactly
//!   one logical switch port with its address and is Running, deleted pods left nothing, and no
//!   NB row is duplicated by name.
//! - `controller` (R2): rounds of pod creates (on a Node with no kubelet, so only the
//!   controller's work is measured) with the controller killed at random points of the create
//!   and of a delete of a quarter of them, restarted each time. Then: every pod exactly one IP
//!   CR and port, no address twice, nothing left by deleted pods.
//! - `daemon` (R2): pods running on node1 ping a pod on node2 while node1's daemon is killed
//!   and restarted; the pings' loss is printed, and every pod's OVS interface must be the same
//!   row with the same ofport afterwards (the restarted daemon adopts the pods, it does not
//!   re-plug them). A pod created after the restart proves the new daemon serves.
//! - `ovn`: OVN's own daemons crash under running pods: node1's ovn-controller, then ovn-northd,
//!   are killed with SIGKILL, kept down, and restarted, while pods on node1 ping a pod on node2
//!   and new pods are created during each outage. Printed: the pings answered across each
//!   crash and how long after each restart the pods created meanwhile were wired; required:
//!   every pod wired, the OVS interfaces of the running pods unchanged and pings answered again
//!   after each restart.

mod faults;
mod verify;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::{central, node, sweep, sys, Sandbox, SandboxConfig, SandboxState};

use faults::Restarted;
use verify::Tally;

/// Namespace of every pod the run creates.
pub const NAMESPACE: &str = "default";
/// A Node with no kubelet: pods bound to it are only the controller's business.
const VIRTUAL_NODE: &str = "chaos-virtual";

/// Result type of the run.
pub type Res<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Nb,
    Controller,
    Daemon,
    Ovn,
    All,
}

#[derive(Parser)]
#[command(
    about = "Kill -9 NB, the controller and a daemon under load in a kube-ovn-rs sandbox; check nothing is lost, duplicated or leaked"
)]
struct Args {
    /// Which faults to inject.
    #[arg(long, value_enum, default_value_t = Scenario::All)]
    scenario: Scenario,
    /// R1: pods in the churn (every fourth is deleted again).
    #[arg(long, default_value_t = 1000)]
    nb_pods: usize,
    /// Nodes in the sandbox (at least 2). The userspace datapath each node runs polls every
    /// port in one thread, so pods per node, not pods in all, is what loads a node here.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// Run central OVN as 3-member raft clusters; R1 then kills the NB leader each time.
    #[arg(long)]
    raft: bool,
    /// R1: NB kills during the churn.
    #[arg(long, default_value_t = 3)]
    nb_kills: usize,
    /// R1: how long NB stays down after each kill, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    nb_down_ms: u64,
    /// R2: pods created per controller round.
    #[arg(long, default_value_t = 2000)]
    controller_pods: usize,
    /// R2: controller rounds.
    #[arg(long, default_value_t = 3)]
    controller_rounds: usize,
    /// R2: controller kills per round during the creates (one more during the deletes).
    #[arg(long, default_value_t = 2)]
    controller_kills: usize,
    /// R2: pods on node1 that keep pinging through a daemon kill.
    #[arg(long, default_value_t = 10)]
    daemon_pods: usize,
    /// R2: how long the daemon stays down, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    daemon_down_ms: u64,
    /// `ovn`: pods on node1 that keep pinging through the ovn-controller and northd crashes.
    #[arg(long, default_value_t = 10)]
    ovn_pods: usize,
    /// `ovn`: pods created during each outage.
    #[arg(long, default_value_t = 10)]
    ovn_new_pods: usize,
    /// `ovn`: how long ovn-controller and northd stay down, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    ovn_down_ms: u64,
    /// Pod creates in flight at once.
    #[arg(long, default_value_t = 20)]
    concurrency: usize,
    /// Pod creates (and deletes) issued per second: a steady churn the controller works through
    /// while the faults happen, rather than a burst the API absorbs before the first fault.
    #[arg(long, default_value_t = 25.0)]
    rate: f64,
    /// Bound of each wait for convergence, in seconds.
    #[arg(long, default_value_t = 900)]
    converge_limit: u64,
    /// Seed of the random kill points (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
}

/// xorshift64*: enough randomness for kill points, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1) as u64) as usize
    }
}

/// What every scenario works with.
struct Ctx {
    client: kube::Client,
    state: SandboxState,
    build: KubeOvnBuild,
    restarted: std::sync::Mutex<Restarted>,
    limit: Duration,
    concurrency: usize,
    /// Pause between the starts of two creates or deletes.
    pace: Duration,
}

/// kube-ovn-rs as built in the same target directory as this binary.
fn kube_ovn_build() -> Option<KubeOvnBuild> {
    let exe = std::env::current_exe().ok()?;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    KubeOvnBuild::beside(exe.parent()?, &source)
}

fn pod(name: &str, node: Option<&str>) -> Res<Pod> {
    let mut spec = serde_json::json!({"containers": [{"name": "c", "image": "x"}]});
    if let Some(node) = node {
        spec["nodeName"] = node.into();
    }
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec,
    }))?)
}

/// Creates `names` at the run's pace (bounded concurrency), deleting right after its create each one `delete`
/// selects; `progress` counts finished creates so a fault can be timed against it.
async fn churn(
    ctx: &Ctx,
    names: &[String],
    node: Option<&str>,
    delete: impl Fn(usize) -> bool,
    progress: &AtomicUsize,
) -> Res {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    let start = tokio::time::Instant::now();
    futures::stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let (api, delete) = (api.clone(), delete(i));
            let at = start + ctx.pace * i as u32;
            async move {
                tokio::time::sleep_until(at).await;
                api.create(&PostParams::default(), &pod(name, node)?)
                    .await?;
                progress.fetch_add(1, Ordering::SeqCst);
                if delete {
                    api.delete(name, &DeleteParams::default()).await?;
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            }
        })
        .buffer_unordered(ctx.concurrency)
        .try_collect::<()>()
        .await
}

/// Deletes `names` at the run's pace (bounded concurrency), counting into `progress`.
async fn delete_all(ctx: &Ctx, names: &[String], progress: &AtomicUsize) -> Res {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    let start = tokio::time::Instant::now();
    futures::stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let api = api.clone();
            let at = start + ctx.pace * i as u32;
            async move {
                tokio::time::sleep_until(at).await;
                api.delete(name, &DeleteParams::default()).await?;
                progress.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            }
        })
        .buffer_unordered(ctx.concurrency)
        .try_collect::<()>()
        .await
}

/// Waits until `progress` reaches `at` (or `limit` passes).
async fn reach(progress: &AtomicUsize, at: usize, limit: Duration) -> Res {
    let deadline = Instant::now() + limit;
    while progress.load(Ordering::SeqCst) < at {
        if Instant::now() > deadline {
            return Err(format!("progress stuck below {at}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Polls the invariants until they hold; returns how long that took and the final tally. On
/// timeout the error lists the first violations.
async fn converge(
    ctx: &Ctx,
    prefix: &str,
    live: &BTreeSet<String>,
    gone: &BTreeSet<String>,
    wired: bool,
) -> Res<(Duration, Tally)> {
    let start = Instant::now();
    loop {
        let last = match verify::snapshot(&ctx.client, &ctx.state.central.nb, prefix).await {
            Ok(snap) => {
                let (tally, problems) = verify::check(&snap, live, gone, wired);
                if problems.is_empty() {
                    return Ok((start.elapsed(), tally));
                }
                format!(
                    "{} violations, first: {}",
                    problems.len(),
                    problems
                        .iter()
                        .take(8)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }
            Err(e) => format!("snapshot failed: {e}"),
        };
        if start.elapsed() > ctx.limit {
            return Err(format!("not converged within {:?}: {last}", ctx.limit).into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs a blocking fault (process kill, restart, `ovs-vsctl`) off the runtime's workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Res<T> + Send + 'static) -> Res<T> {
    tokio::task::spawn_blocking(f).await?
}

fn print_tally(t: &Tally, live: usize, gone: usize, wired: bool) {
    let wired = if wired {
        format!(", wired (Running) {}/{live}", t.wired)
    } else {
        String::new()
    };
    println!(
        "  live pods {live}: exactly one port with the right address {}/{live} (lost {}, duplicated {}), exactly one IP CR {}/{live}, addresses held twice {}{wired}",
        t.ports_ok, t.ports_lost, t.ports_duplicated, t.ips_ok, t.ips_duplicated
    );
    println!(
        "  deleted pods {gone}: leaked IP CRs or ports {}; NB rows duplicated by name {}",
        t.leaked, t.nb_duplicates
    );
}

/// R1: NB killed during a pod churn.
async fn nb_scenario(ctx: &Ctx, args: &Args) -> Res {
    let n = args.nb_pods;
    let prefix = "chaos-nb-";
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let deleted = |i: usize| i % 4 == 3;
    let progress = AtomicUsize::new(0);
    let down = Duration::from_millis(args.nb_down_ms);
    let started = Instant::now();
    let mut restarts: Vec<Instant> = Vec::new();
    let killer = async {
        for k in 0..args.nb_kills {
            reach(&progress, (k + 1) * n / (args.nb_kills + 1), ctx.limit).await?;
            let st = ctx.state.clone();
            let (name, pid) = blocking(move || {
                let (name, pidfile) = faults::nb_target(&st)?;
                faults::kill9(&pidfile).map(|pid| (name, pid))
            })
            .await?;
            tokio::time::sleep(down).await;
            let (st, member) = (ctx.state.clone(), name.clone());
            blocking(move || faults::restart_nb(&st, &member)).await?;
            restarts.push(Instant::now());
            eprintln!(
                "  NB {name} (pid {pid}) killed at {} of {n} creates, back after {down:?}",
                progress.load(Ordering::SeqCst)
            );
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    };
    let (churned, killed) = tokio::join!(churn(ctx, &names, None, deleted, &progress), killer);
    churned?;
    killed?;
    let churn_end = Instant::now();
    let live: BTreeSet<String> = (0..n)
        .filter(|i| !deleted(*i))
        .map(|i| names[i].clone())
        .collect();
    let gone: BTreeSet<String> = (0..n)
        .filter(|i| deleted(*i))
        .map(|i| names[i].clone())
        .collect();
    let (took, tally) = converge(ctx, prefix, &live, &gone, true).await?;
    let done = churn_end + took;
    println!(
        "R1 NB kill -9 ×{} ({}, restarted on its database file after {} ms) during a churn of {n} pods at {}/s ({} deleted again), churn {:.1} s:",
        restarts.len(),
        if args.raft { "the raft leader each time" } else { "standalone" },
        args.nb_down_ms,
        args.rate,
        gone.len(),
        churn_end.duration_since(started).as_secs_f64()
    );
    print_tally(&tally, live.len(), gone.len(), true);
    println!(
        "  reconverged {:.1} s after the churn ended, {:.1} s after the last NB restart",
        took.as_secs_f64(),
        restarts
            .last()
            .map(|r| done.duration_since(*r).as_secs_f64())
            .unwrap_or_default()
    );
    Ok(())
}

/// Kills the controller (and starts a new one) each time `progress` reaches one of `points`.
async fn kill_controller_at(
    ctx: &Ctx,
    round: usize,
    points: Vec<usize>,
    progress: &AtomicUsize,
) -> Res {
    for at in points {
        reach(progress, at, ctx.limit).await?;
        let st = ctx.state.clone();
        let pid = blocking(move || faults::kill9(&faults::controller_pidfile(&st))).await?;
        let (st, build) = (ctx.state.clone(), ctx.build.clone());
        let child = blocking(move || faults::restart_controller(&build, &st, pid)).await?;
        ctx.restarted.lock().map_err(|_| "poisoned")?.push(child);
        eprintln!("  round {round}: controller (pid {pid}) killed at {at}");
    }
    Ok(())
}

/// R2: the controller killed at random points of rounds of pod creates and deletes.
async fn controller_scenario(ctx: &Ctx, args: &Args, rng: &mut Rng) -> Res {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let node: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": VIRTUAL_NODE, "labels": {"kubernetes.io/hostname": VIRTUAL_NODE, "kubernetes.io/os": "linux"}},
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    let prefix = "chaos-ctl-";
    let n = args.controller_pods;
    let (mut live, mut gone) = (BTreeSet::new(), BTreeSet::new());
    for round in 0..args.controller_rounds {
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}{round}-{i}")).collect();
        let mut points: Vec<usize> = (0..args.controller_kills)
            .map(|_| 1 + rng.below(n - 1))
            .collect();
        points.sort();
        let to_delete: Vec<String> = names.iter().step_by(4).cloned().collect();
        let delete_point = 1 + rng.below(to_delete.len().max(2) - 1);
        let started = Instant::now();
        let progress = AtomicUsize::new(0);
        let (created, killed) = tokio::join!(
            churn(ctx, &names, Some(VIRTUAL_NODE), |_| false, &progress),
            kill_controller_at(ctx, round, points.clone(), &progress)
        );
        created?;
        killed?;
        let deletes = AtomicUsize::new(0);
        let (deleted, killed) = tokio::join!(
            delete_all(ctx, &to_delete, &deletes),
            kill_controller_at(ctx, round, vec![delete_point], &deletes)
        );
        deleted?;
        killed?;
        let ops_end = Instant::now();
        gone.extend(to_delete.iter().cloned());
        live.extend(names.into_iter().filter(|p| !gone.contains(p)));
        let (took, tally) = converge(ctx, prefix, &live, &gone, false).await?;
        println!(
            "R2 controller round {round}: {n} pods created at {}/s with kill -9 at creates {points:?}, {} deleted with kill -9 at delete {delete_point}; ops {:.1} s, converged {:.1} s later:",
            args.rate,
            to_delete.len(),
            ops_end.duration_since(started).as_secs_f64(),
            took.as_secs_f64()
        );
        print_tally(&tally, live.len(), gone.len(), false);
    }
    Ok(())
}

/// `_uuid ofport` of the OVS interface of `lsp` on `node`.
fn ovs_interface(st: &SandboxState, node: &str, lsp: &str) -> Res<String> {
    let node = st.node(node).ok_or("no such node")?;
    let out = node.vsctl([
        "--bare",
        "--columns=_uuid,ofport",
        "find",
        "Interface",
        &format!("external_ids:iface-id={lsp}"),
    ])?;
    Ok(out.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Pods on node1 that ping a peer pod on node2 through a fault.
struct Pingers {
    /// The node1 pods, `<prefix><i>`.
    names: Vec<String>,
    /// Those and the peer: the pods that must stay wired.
    live: BTreeSet<String>,
    /// The peer's address.
    peer_ip: String,
}

/// Creates `n` pods on node1 and `<prefix>peer` on node2, and waits until all are wired.
async fn pingers(ctx: &Ctx, prefix: &str, n: usize, progress: &AtomicUsize) -> Res<Pingers> {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let peer = format!("{prefix}peer");
    churn(ctx, &names, Some("node1"), |_| false, progress).await?;
    churn(
        ctx,
        std::slice::from_ref(&peer),
        Some("node2"),
        |_| false,
        progress,
    )
    .await?;
    let mut live: BTreeSet<String> = names.iter().cloned().collect();
    live.insert(peer.clone());
    converge(ctx, prefix, &live, &BTreeSet::new(), true).await?;
    let snap = verify::snapshot(&ctx.client, &ctx.state.central.nb, prefix).await?;
    let peer_ip = snap.pods[&peer].ip.clone().ok_or("peer has no address")?;
    Ok(Pingers {
        names,
        live,
        peer_ip,
    })
}

/// R2: a daemon killed under running pods.
async fn daemon_scenario(ctx: &Ctx, args: &Args) -> Res {
    let prefix = "chaos-d-";
    let progress = AtomicUsize::new(0);
    let Pingers {
        names,
        mut live,
        peer_ip,
    } = pingers(ctx, prefix, args.daemon_pods, &progress).await?;
    let before: Vec<String> = names
        .iter()
        .map(|p| ovs_interface(&ctx.state, "node1", &format!("{p}.{NAMESPACE}")))
        .collect::<Res<_>>()?;

    let down = Duration::from_millis(args.daemon_down_ms);
    let window = down + Duration::from_secs(30);
    let pings = start_pings(ctx, &names, &peer_ip, window)?;
    let node1 = ctx.state.node("node1").ok_or("no node1")?.clone();
    let pidfile = faults::daemon_pidfile(&node1);
    let pid = blocking(move || faults::kill9(&pidfile)).await?;
    tokio::time::sleep(down).await;
    let (build, n1) = (ctx.build.clone(), node1.clone());
    let restarted_at = Instant::now();
    let child =
        blocking(move || faults::restart_daemon(&build, &n1, pid, Duration::from_secs(60))).await?;
    ctx.restarted.lock().map_err(|_| "poisoned")?.push(child);
    let serving = restarted_at.elapsed();
    let after_pod = format!("{prefix}after");
    churn(
        ctx,
        std::slice::from_ref(&after_pod),
        Some("node1"),
        |_| false,
        &progress,
    )
    .await?;
    live.insert(after_pod);
    let (took, _) = converge(ctx, prefix, &live, &BTreeSet::new(), true).await?;
    let after: Vec<String> = names
        .iter()
        .map(|p| ovs_interface(&ctx.state, "node1", &format!("{p}.{NAMESPACE}")))
        .collect::<Res<_>>()?;
    let (sent, received) = ping_totals(pings).await?;
    let unchanged = before.iter().zip(&after).filter(|(b, a)| b == a).count();
    println!(
        "R2 daemon kill -9 on node1 with {} pods running, down {} ms, serving {:.1} s after its restart, a new pod wired {:.1} s later:",
        names.len(),
        args.daemon_down_ms,
        serving.as_secs_f64(),
        took.as_secs_f64()
    );
    println!(
        "  pings to a pod on node2 across the kill (every 200 ms for {} s): {received}/{sent} answered; OVS interfaces unchanged (same row, same ofport) {unchanged}/{}",
        window.as_secs(),
        names.len()
    );
    if unchanged != names.len() || sent == 0 || received < sent {
        return Err("pods lost connectivity or were re-plugged across the daemon restart".into());
    }
    Ok(())
}

/// Starts, in each of `names`' pods, a ping to `to` every 200 ms for `window`.
fn start_pings(
    ctx: &Ctx,
    names: &[String],
    to: &str,
    window: Duration,
) -> Res<Vec<std::process::Child>> {
    Ok(names
        .iter()
        .map(|p| {
            sys::in_netns(&ctx.state.pod_netns(NAMESPACE, p), "ping")
                // A count, not a deadline (`-w`): with a deadline the echo in flight when it
                // expires counts as lost.
                .args(["-q", "-i", "0.2", "-W", "2", "-c"])
                .arg((window.as_secs() * 5).to_string())
                .arg(to)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
        })
        .collect::<Result<_, _>>()?)
}

/// Waits for the pings and sums "N packets transmitted, M received" over them.
async fn ping_totals(pings: Vec<std::process::Child>) -> Res<(u64, u64)> {
    let (mut sent, mut received) = (0u64, 0u64);
    for ping in pings {
        let out = blocking(move || Ok(ping.wait_with_output()?)).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or("");
        let nums: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|s| s.parse().ok())
            .take(2)
            .collect();
        if let [s, r] = nums[..] {
            sent += s;
            received += r;
        }
    }
    Ok((sent, received))
}

/// Whether every one of `names`' pods answers a ping to `to` within a few seconds.
async fn all_reach(ctx: &Ctx, names: &[String], to: &str) -> Res<bool> {
    let (st, names, to) = (ctx.state.clone(), names.to_vec(), to.to_string());
    blocking(move || {
        Ok(names.iter().all(|p| {
            kube_ovn_sandbox::probe::ping(&st.pod_netns(NAMESPACE, p), &to, Duration::from_secs(10))
        }))
    })
    .await
}

/// Which OVN daemon the `ovn` scenario crashes.
#[derive(Clone, Copy)]
enum OvnDaemon {
    Controller,
    Northd,
}

/// `ovn`: node1's ovn-controller, then ovn-northd, crashed and restarted under running pods.
async fn ovn_scenario(ctx: &Ctx, args: &Args) -> Res {
    let prefix = "chaos-o-";
    let progress = AtomicUsize::new(0);
    let Pingers {
        names,
        mut live,
        peer_ip,
    } = pingers(ctx, prefix, args.ovn_pods, &progress).await?;
    let interfaces = |ctx: &Ctx| -> Res<Vec<String>> {
        names
            .iter()
            .map(|p| ovs_interface(&ctx.state, "node1", &format!("{p}.{NAMESPACE}")))
            .collect()
    };
    let before = interfaces(ctx)?;
    let down = Duration::from_millis(args.ovn_down_ms);
    let window = down + Duration::from_secs(20);
    let node1 = ctx.state.node("node1").ok_or("no node1")?.clone();
    let mut failures = Vec::new();
    for (round, which) in [OvnDaemon::Controller, OvnDaemon::Northd]
        .into_iter()
        .enumerate()
    {
        let what = match which {
            OvnDaemon::Controller => "ovn-controller on node1",
            OvnDaemon::Northd => "ovn-northd",
        };
        let pings = start_pings(ctx, &names, &peer_ip, window)?;
        let pidfile = match which {
            OvnDaemon::Controller => node1.dir.join("ovn-controller.pid"),
            OvnDaemon::Northd => central::dir(&ctx.state.run_dir).join("northd.pid"),
        };
        let pid = blocking(move || faults::kill9(&pidfile)).await?;
        // New pods during the outage: on node1 (its ovn-controller is down) or spread over
        // both nodes (northd is down: no port binding reaches the SB until it is back).
        let new: Vec<String> = (0..args.ovn_new_pods)
            .map(|i| format!("{prefix}new{round}-{i}"))
            .collect();
        let (created, _) = tokio::join!(
            async {
                match which {
                    OvnDaemon::Controller => {
                        churn(ctx, &new, Some("node1"), |_| false, &progress).await
                    }
                    OvnDaemon::Northd => {
                        let (a, b) = new.split_at(new.len() / 2);
                        churn(ctx, a, Some("node1"), |_| false, &progress).await?;
                        churn(ctx, b, Some("node2"), |_| false, &progress).await
                    }
                }
            },
            tokio::time::sleep(down)
        );
        created?;
        let (st, n1) = (ctx.state.clone(), node1.clone());
        blocking(move || {
            match which {
                OvnDaemon::Controller => node::restart_ovn_controller(&n1, Duration::ZERO)?,
                OvnDaemon::Northd => {
                    central::restart_northd(&st.run_dir, &st.central, Duration::ZERO)?
                }
            }
            Ok(())
        })
        .await?;
        live.extend(new.iter().cloned());
        let (took, _) = converge(ctx, prefix, &live, &BTreeSet::new(), true).await?;
        let (sent, received) = ping_totals(pings).await?;
        let reach_again = all_reach(ctx, &names, &peer_ip).await?;
        let new_reach = all_reach(ctx, &new, &peer_ip).await?;
        let unchanged = before
            .iter()
            .zip(interfaces(ctx)?)
            .filter(|(b, a)| **b == *a)
            .count();
        println!(
            "{what} kill -9 (pid {pid}), down {} ms, with {} pods pinging a pod on node2 and {} pods created meanwhile:",
            args.ovn_down_ms,
            names.len(),
            new.len()
        );
        println!(
            "  pings every 200 ms for {} s across the crash: {received}/{sent} answered; the new pods wired (Running) {:.1} s after the restart; afterwards old pods reach the peer: {reach_again}, new pods reach it: {new_reach}; OVS interfaces unchanged {unchanged}/{}",
            window.as_secs(),
            took.as_secs_f64(),
            names.len()
        );
        if !reach_again || !new_reach || unchanged != names.len() || sent == 0 {
            failures.push(format!("{what}: pods lost connectivity or were re-plugged"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; ").into())
    }
}

async fn run(args: Args) -> Res {
    if args.controller_pods < 4 || args.nb_pods < 4 {
        return Err("--nb-pods and --controller-pods are at least 4".into());
    }
    let build = kube_ovn_build().ok_or(
        "kube-ovn binaries missing beside this binary: build kube-ovn-controller, kube-ovn-daemon and kube-ovn-cni in the same profile first",
    )?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1
    });
    let mut rng = Rng(seed);
    let mut config = SandboxConfig::isolated(args.nodes.max(2));
    config.kube_ovn = Some(build.clone());
    config.raft = args.raft;
    let (run_dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
    let sandbox = match Sandbox::up(config).await {
        Ok(s) => s,
        Err(e) => {
            let _ = sweep(&run_dir, &prefix);
            return Err(e.into());
        }
    };
    eprintln!(
        "sandbox up in {:.1} s ({}), seed {seed}",
        sandbox.state().bring_up_seconds,
        run_dir.display()
    );
    let ctx = Ctx {
        client: sandbox.client(),
        state: sandbox.state().clone(),
        build,
        restarted: Default::default(),
        limit: Duration::from_secs(args.converge_limit),
        concurrency: args.concurrency.max(1),
        pace: Duration::from_secs_f64(1.0 / args.rate.max(0.01)),
    };
    let all = args.scenario == Scenario::All;
    let wanted = |s: Scenario| all || args.scenario == s;
    // Every scenario runs even when an earlier one failed: each prints its own figures.
    let mut failed = Vec::new();
    if wanted(Scenario::Daemon) {
        if let Err(e) = daemon_scenario(&ctx, &args).await {
            failed.push(format!("daemon: {e}"));
        }
    }
    if wanted(Scenario::Ovn) {
        if let Err(e) = ovn_scenario(&ctx, &args).await {
            failed.push(format!("ovn: {e}"));
        }
    }
    if wanted(Scenario::Nb) {
        if let Err(e) = nb_scenario(&ctx, &args).await {
            failed.push(format!("nb: {e}"));
        }
    }
    if wanted(Scenario::Controller) {
        if let Err(e) = controller_scenario(&ctx, &args, &mut rng).await {
            failed.push(format!("controller: {e}"));
        }
    }
    let result: Res = if failed.is_empty() {
        Ok(())
    } else {
        eprintln!(
            "{}",
            kube_ovn_sandbox::probe::kube_ovn_logs(sandbox.state())
        );
        match faults::keep_logs(&sandbox.state().run_dir) {
            Ok(kept) => eprintln!("the run's logs are kept in {}", kept.display()),
            Err(e) => eprintln!("could not keep the run's logs: {e}"),
        }
        Err(failed.join("\n").into())
    };
    drop(ctx);
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
            eprintln!("kube-ovn-chaos: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-ovn-chaos: {e}");
            ExitCode::FAILURE
        }
    }
}
