//! `kubectl ko perf [image]`: upstream's performance test. It runs upstream's test pods
//! (`test-server`, `test-host-server`, `test-client`, `test-host-client`, label `app=PerfTest`,
//! from the `kubeovn/test` image that carries qperf, iperf3 and iperf; servers on the first node,
//! clients on the second) and the `test-server` Service, then prints upstream's tables: qperf
//! TCP/UDP latency and iperf3 TCP/UDP bandwidth and UDP loss per message size between pods,
//! between hosts and through a load balancer on the Service's address; iperf multicast between
//! pods and between hosts; and how long the ovn-central Deployment takes to be available again
//! after the NB, SB and northd leaders' pods are deleted. Everything it made is deleted at the
//! end, whatever happened.
//!
//! Beyond upstream: `--seconds` (upstream's fixed 5) and `--sizes` (upstream's 64,128,512,1k,4k)
//! make shorter runs; a step that fails says why in its row instead of leaving it blank.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use crate::remote::{self, Db};
use crate::tcpdump;

/// The label of everything perf makes (upstream's `PERF_LABEL`).
pub const LABEL: &str = "PerfTest";
/// Upstream's default image.
pub const DEFAULT_IMAGE: &str = "docker.io/kubeovn/test:v1.13.0";
/// The multicast group the multicast tests use, and its MAC.
const GROUP: &str = "224.0.0.100";
const GROUP_MAC: &str = "01:00:5e:00:00:64";
/// How long the test pods may take to be Ready (upstream's 300 one-second tries).
const READY: Duration = Duration::from_secs(300);

/// What to run.
pub struct Options {
    /// The test image.
    pub image: String,
    /// Seconds each qperf/iperf run lasts.
    pub seconds: u32,
    /// Message sizes.
    pub sizes: Vec<String>,
}

/// `=== header ===` to 100 columns, as upstream prints it.
pub fn header(text: &str) -> String {
    let total = 100usize;
    let left = total.saturating_sub(text.len() + 2) / 2;
    let right = total.saturating_sub(text.len() + 2 + left);
    format!("{} {text} {}", "=".repeat(left), "=".repeat(right))
}

fn end() {
    println!("{}", "=".repeat(100));
}

/// Squeezes whitespace (newlines included) to single spaces, as upstream's `tr` does before
/// its greps.
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// qperf's `<test>: latency = <n> <unit>` (`us`, `ms` or `sec`).
pub fn qperf_latency(output: &str, test: &str) -> Option<String> {
    let text = squeeze(output);
    let rest = text.split(&format!("{test}: latency = ")).nth(1)?;
    let mut words = rest.split(' ');
    let (n, unit) = (words.next()?, words.next()?);
    (n.parse::<f64>().is_ok() && ["us", "ms", "sec"].contains(&unit)).then(|| format!("{n} {unit}"))
}

/// A plain decimal (`12`, `0.5`): what upstream's `\d+\.?\d*` matches (no `nan`, no sign).
fn decimal(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit()) && s.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// The last `<n> <K|M|G>bits/sec` of an iperf report.
pub fn last_bandwidth(output: &str) -> Option<String> {
    let words: Vec<&str> = output.split_whitespace().collect();
    words
        .windows(2)
        .rev()
        .find(|w| decimal(w[0]) && ["Kbits/sec", "Mbits/sec", "Gbits/sec"].contains(&w[1]))
        .map(|w| format!("{} {}", w[0], w[1]))
}

/// The last `(<n>%)` of an iperf report (the datagrams lost).
pub fn last_loss(output: &str) -> Option<String> {
    output
        .split_whitespace()
        .rev()
        .find(|w| {
            w.strip_prefix('(')
                .and_then(|w| w.strip_suffix("%)"))
                .is_some_and(decimal)
        })
        .map(str::to_string)
}

/// The last `<n> ms` of an iperf server's report (its jitter, which upstream shows as latency).
pub fn last_ms(output: &str) -> Option<String> {
    let words: Vec<&str> = output.split_whitespace().collect();
    words
        .windows(2)
        .rev()
        .find(|w| decimal(w[0]) && w[1] == "ms")
        .map(|w| format!("{} ms", w[0]))
}

/// Something to undo at the end.
enum Undo {
    /// `ovn-nbctl <args>` in the NB leader's pod of that time (the test may have replaced it).
    Nb(Vec<String>),
    /// A command in a pod.
    InPod(String, Vec<String>),
}

fn cell(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".into())
}

fn row(cells: &[String]) -> String {
    cells
        .iter()
        .map(|c| format!("{c:<15}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

/// Runs the test and cleans up after it.
pub async fn run(client: &kube::Client, ns: &str, opts: &Options) -> Result<ExitCode, String> {
    println!("{}", header("Preparing Performance Test Resources"));
    let nodes: Vec<String> = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing nodes: {e}"))?
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    let (server_node, client_node) = match nodes.as_slice() {
        [] => {
            println!("can't find node in the cluster");
            return Ok(ExitCode::FAILURE);
        }
        [only] => (only.clone(), only.clone()),
        [first, second, ..] => (first.clone(), second.clone()),
    };
    remove(client, ns).await;
    let mut cleanup: Vec<Undo> = Vec::new();
    let outcome = async {
        create(client, ns, opts, &server_node, &client_node).await?;
        wait_ready(client, ns).await?;
        end();
        tests(client, ns, opts, &mut cleanup).await
    }
    .await;
    if let Err(e) = &outcome {
        println!("{}", header("Performance Test Failed with below: "));
        println!("{e}");
        end();
    }
    println!("{}", header("Remove Performance Test Resource"));
    for undo in &cleanup {
        let (pod, container, argv) = match undo {
            Undo::Nb(argv) => match remote::leader_pod(client, ns, Db::Nb).await {
                Ok(pod) => (pod, Some("ovn-central"), argv),
                Err(e) => {
                    println!("{}: {e}", argv.join(" "));
                    continue;
                }
            },
            Undo::InPod(pod, argv) => (pod.clone(), None, argv),
        };
        println!("{}", argv.join(" "));
        let limit = Duration::from_secs(30);
        if let Err(e) =
            remote::capture_within(limit, client, ns, &pod, container, argv.clone()).await
        {
            println!("{e}");
        }
    }
    remove(client, ns).await;
    end();
    outcome.map(|()| ExitCode::SUCCESS)
}

fn test_pod(name: &str, node: &str, image: &str, host: bool, server: bool) -> Result<Pod, String> {
    let (labels, command) = if server {
        (
            json!({"app": LABEL, "env": "server"}),
            // What upstream's test-server.sh serves (iperf3) plus qperf, both of the image.
            json!(["sh", "-c", "qperf & exec iperf3 -s"]),
        )
    } else {
        (json!({"app": LABEL}), json!(["sleep", "infinity"]))
    };
    let labels = if host && server {
        json!({"app": LABEL})
    } else {
        labels
    };
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "hostNetwork": host,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
                            "command": command}],
            "nodeSelector": {"kubernetes.io/hostname": node},
        },
    }))
    .map_err(|e| format!("test pod {name}: {e}"))
}

async fn create(
    client: &kube::Client,
    ns: &str,
    opts: &Options,
    server_node: &str,
    client_node: &str,
) -> Result<(), String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for (name, node, host, server) in [
        ("test-client", client_node, false, false),
        ("test-host-client", client_node, true, false),
        ("test-server", server_node, false, true),
        ("test-host-server", server_node, true, true),
    ] {
        let pod = test_pod(name, node, &opts.image, host, server)?;
        pods.create(&PostParams::default(), &pod)
            .await
            .map_err(|e| format!("creating pod {name}: {e}"))?;
        println!("pod/{name} created");
    }
    let port = |name: &str, port: u16, proto: &str| json!({"name": name, "port": port, "protocol": proto, "targetPort": port});
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "test-server", "labels": {"app": LABEL}},
        "spec": {"selector": {"env": "server"}, "ports": [
            port("qperf-udp", 19765, "UDP"), port("iperf3-udp", 5201, "UDP"),
            port("qperf-tcp", 19765, "TCP"), port("iperf3-tcp", 5201, "TCP")]},
    }))
    .map_err(|e| e.to_string())?;
    Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &svc)
        .await
        .map_err(|e| format!("creating service test-server: {e}"))?;
    println!("service/test-server created");
    Ok(())
}

async fn wait_ready(client: &kube::Client, ns: &str) -> Result<(), String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let params = ListParams::default().labels(&format!("app={LABEL}"));
    let deadline = Instant::now() + READY;
    loop {
        let list = pods.list(&params).await.map_err(|e| e.to_string())?;
        let ready = list.items.len() == 4 && list.items.iter().all(pod_ready);
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err("Error test pod not ready".into());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn tests(
    client: &kube::Client,
    ns: &str,
    opts: &Options,
    cleanup: &mut Vec<Undo>,
) -> Result<(), String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let ip_of = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default()
    };
    let server = pods.get("test-server").await.map_err(|e| e.to_string())?;
    let host_server = pods
        .get("test-host-server")
        .await
        .map_err(|e| e.to_string())?;
    let svc = Api::<Service>::namespaced(client.clone(), ns)
        .get("test-server")
        .await
        .map_err(|e| e.to_string())?;
    let svc_ip = svc.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
    let (server_ip, host_server_ip) = (ip_of(&server), ip_of(&host_server));

    println!("{}", header("Start Pod Network Unicast Performance Test"));
    unicast(client, ns, opts, "test-client", &server_ip).await;
    end();
    println!("{}", header("Start Host Network Performance Test"));
    unicast(client, ns, opts, "test-host-client", &host_server_ip).await;
    end();
    println!("{}", header("Start Service Network Performance Test"));
    // qperf moves its data on ports of its own choosing: a load balancer on the address alone.
    let nb = remote::leader_pod(client, ns, Db::Nb).await?;
    cleanup.push(Undo::Nb(words(&["ovn-nbctl", "lb-del", "test-server"])));
    for argv in [
        words(&["ovn-nbctl", "lb-add", "test-server", &svc_ip, &server_ip]),
        words(&["ovn-nbctl", "ls-lb-add", "ovn-default", "test-server"]),
    ] {
        let (code, _) = remote::capture_within(
            Duration::from_secs(30),
            client,
            ns,
            &nb,
            Some("ovn-central"),
            argv.clone(),
        )
        .await?;
        if code != ExitCode::SUCCESS {
            return Err(format!("`{}` failed", argv.join(" ")));
        }
    }
    unicast(client, ns, opts, "test-client", &svc_ip).await;
    end();
    println!("{}", header("Start Pod Multicast Network Performance Test"));
    multicast_pods(client, ns, opts).await;
    end();
    println!("{}", header("Start Host Multicast Network Performance"));
    multicast_hosts(client, ns, opts, cleanup).await;
    end();
    println!("{}", header("Start Leader Recover Time Test"));
    for component in ["nb", "sb", "northd"] {
        recover(client, ns, component).await;
    }
    end();
    Ok(())
}

/// Runs `argv` in the test pod `pod` for up to `seconds` plus a margin; its output, or why
/// there is none.
async fn in_pod(
    client: &kube::Client,
    ns: &str,
    pod: &str,
    argv: Vec<String>,
    seconds: u32,
) -> String {
    let limit = Duration::from_secs(u64::from(seconds) * 3 + 30);
    match remote::capture_within(limit, client, ns, pod, None, argv).await {
        Ok((_, out)) => out,
        Err(e) => {
            eprintln!("{e}");
            String::new()
        }
    }
}

async fn unicast(client: &kube::Client, ns: &str, opts: &Options, pod: &str, server: &str) {
    let t = opts.seconds.to_string();
    println!(
        "{}",
        row(&words(&[
            "Size",
            "TCP Latency",
            "TCP Bandwidth",
            "UDP Latency",
            "UDP Lost Rate",
            "UDP Bandwidth"
        ]))
    );
    for size in &opts.sizes {
        let msg = format!("msg_size:{size}");
        let qperf = words(&[
            "qperf", "-t", &t, server, "-ub", "-oo", &msg, "-vu", "tcp_lat", "udp_lat",
        ]);
        let out = in_pod(client, ns, pod, qperf, opts.seconds * 2).await;
        let (tcp_lat, udp_lat) = (
            qperf_latency(&out, "tcp_lat"),
            qperf_latency(&out, "udp_lat"),
        );
        let udp = words(&[
            "iperf3", "-c", server, "-u", "-t", &t, "-i", "1", "-P", "10", "-b", "1000G", "-l",
            size,
        ]);
        let out = in_pod(client, ns, pod, udp, opts.seconds).await;
        let (udp_bw, udp_loss) = (last_bandwidth(&out), last_loss(&out));
        let tcp = words(&[
            "iperf3", "-c", server, "-t", &t, "-i", "1", "-P", "10", "-l", size,
        ]);
        let out = in_pod(client, ns, pod, tcp, opts.seconds).await;
        let tcp_bw = last_bandwidth(&out);
        println!(
            "{}",
            row(&[
                size.clone(),
                cell(tcp_lat),
                cell(tcp_bw),
                cell(udp_lat),
                cell(udp_loss),
                cell(udp_bw)
            ])
        );
    }
}

/// Joins the group's MAC on `eth0` of the test pods (in their namespaces, from their nodes'
/// kube-ovn-cni pods, as upstream does from ovs-ovn), then measures multicast between them.
async fn multicast_pods(client: &kube::Client, ns: &str, opts: &Options) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for name in ["test-client", "test-server"] {
        let node = match pods.get(name).await {
            Ok(p) => p.spec.and_then(|s| s.node_name).unwrap_or_default(),
            Err(e) => {
                println!("{name}: {e}");
                return;
            }
        };
        if let Err(e) = join_group_in_pod(client, ns, &node, name).await {
            println!("{name}: {e}");
            return;
        }
    }
    multicast(client, ns, opts, "test-server", "test-client").await;
}

async fn join_group_in_pod(
    client: &kube::Client,
    ns: &str,
    node: &str,
    pod: &str,
) -> Result<(), String> {
    let ovs = remote::find_pod(client, ns, "app=ovs", Some(node), "").await?;
    let (_, netns) = tcpdump::pod_interface(client, ns, &ovs, node, ns, pod).await?;
    let cni = remote::find_pod(client, ns, "app=kube-ovn-cni", Some(node), "").await?;
    let argv = words(&[
        "nsenter",
        &format!("--net={netns}"),
        "ip",
        "maddr",
        "add",
        GROUP_MAC,
        "dev",
        "eth0",
    ]);
    let (code, _) =
        remote::capture_within(Duration::from_secs(30), client, ns, &cni, None, argv).await?;
    if code != ExitCode::SUCCESS {
        return Err(format!("joining {GROUP_MAC} on {pod}'s eth0 failed"));
    }
    Ok(())
}

/// Joins the group's MAC on the node interfaces holding the host test pods' addresses (from
/// the nodes' ovs-ovn pods; left again at cleanup), then measures multicast between them.
async fn multicast_hosts(client: &kube::Client, ns: &str, opts: &Options, cleanup: &mut Vec<Undo>) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for name in ["test-host-client", "test-host-server"] {
        let pod = match pods.get(name).await {
            Ok(p) => p,
            Err(e) => {
                println!("{name}: {e}");
                return;
            }
        };
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let host_ip = pod
            .status
            .as_ref()
            .and_then(|s| s.host_ip.clone())
            .unwrap_or_default();
        let out = in_pod(client, ns, name, words(&["ip", "-o", "addr", "show"]), 5).await;
        let Some(nic) = nic_with(&out, &host_ip) else {
            println!("{name}: no interface holds {host_ip}");
            return;
        };
        let ovs = match remote::find_pod(client, ns, "app=ovs", Some(&node), "").await {
            Ok(p) => p,
            Err(e) => {
                println!("{e}");
                return;
            }
        };
        cleanup.push(Undo::InPod(
            ovs.clone(),
            words(&["ip", "maddr", "del", GROUP_MAC, "dev", &nic]),
        ));
        let add = words(&["ip", "maddr", "add", GROUP_MAC, "dev", &nic]);
        if let Err(e) =
            remote::capture_within(Duration::from_secs(30), client, ns, &ovs, None, add).await
        {
            println!("{e}");
            return;
        }
    }
    multicast(client, ns, opts, "test-host-server", "test-host-client").await;
}

/// The interface of `ip -o addr show` output holding `ip`.
pub fn nic_with(output: &str, ip: &str) -> Option<String> {
    output.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let addr = f.get(3)?.split('/').next()?;
        (addr == ip).then(|| f.get(1).map(|n| n.trim_end_matches(':').to_string()))?
    })
}

/// An iperf multicast server in `server` (its report read as it grows) and two client runs per
/// size from `client`: one at full rate (bandwidth, loss), one at iperf's default rate (jitter).
async fn multicast(client: &kube::Client, ns: &str, opts: &Options, server: &str, from: &str) {
    let report: remote::Shared = Default::default();
    let listening = {
        let (client, ns, server, report) = (
            client.clone(),
            ns.to_string(),
            server.to_string(),
            report.clone(),
        );
        tokio::spawn(async move {
            let argv = words(&["iperf", "-s", "-B", GROUP, "-i", "1", "-u"]);
            remote::exec_into(&client, &ns, &server, argv, report).await
        })
    };
    let read = || {
        String::from_utf8_lossy(&report.lock().map(|b| b.clone()).unwrap_or_default()).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !read().contains("Server listening") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t = opts.seconds.to_string();
    println!(
        "{}",
        row(&words(&[
            "Size",
            "UDP Latency",
            "UDP Lost Rate",
            "UDP Bandwidth"
        ]))
    );
    for size in &opts.sizes {
        let full = words(&[
            "iperf", "-c", GROUP, "-u", "-T", "32", "-t", &t, "-i", "1", "-b", "1000G", "-l", size,
        ]);
        let seen = read().len();
        in_pod(client, ns, from, full, opts.seconds).await;
        let out = settled(&read, seen).await;
        let (bw, loss) = (last_bandwidth(&out), last_loss(&out));
        let paced = words(&[
            "iperf", "-c", GROUP, "-u", "-T", "32", "-t", &t, "-i", "1", "-l", size,
        ]);
        let seen = read().len();
        in_pod(client, ns, from, paced, opts.seconds).await;
        let lat = last_ms(&settled(&read, seen).await);
        println!("{}", row(&[size.clone(), cell(lat), cell(loss), cell(bw)]));
    }
    listening.abort();
}

/// What the server reported after `seen` bytes, once it has a loss figure and has stopped
/// growing for half a second (its summary follows the client's last datagram), or after 5 s.
async fn settled(read: &impl Fn() -> String, seen: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = String::new();
    loop {
        let now = read().get(seen..).unwrap_or_default().to_string();
        if (now == last && last_loss(&now).is_some()) || Instant::now() >= deadline {
            return now;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Deletes the pod leading `component` (nb, sb or northd) and prints how long the ovn-central
/// Deployment takes to have every replica available again.
async fn recover(client: &kube::Client, ns: &str, component: &str) {
    let label = format!("ovn-{component}-leader=true");
    let pod = match remote::find_pod(client, ns, &label, None, "ovn-central").await {
        Ok(p) => p,
        Err(e) => {
            println!("{e}: the {component} recovery is not measured");
            return;
        }
    };
    let start = Instant::now();
    println!("Delete ovn central {component} pod");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    if let Err(e) = pods.delete(&pod, &DeleteParams::default()).await {
        println!("deleting {pod}: {e}");
        return;
    }
    println!("Waiting for ovn central {component} pod running");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deadline = start + READY;
    let central = ListParams::default().labels("app=ovn-central");
    loop {
        // Back: as many ovn-central pods as the Deployment wants, the deleted one not among
        // them, every one Ready.
        let want = deployments
            .get("ovn-central")
            .await
            .ok()
            .and_then(|d| d.spec.and_then(|s| s.replicas))
            .unwrap_or(1);
        if let Ok(list) = pods.list(&central).await {
            let live: Vec<&Pod> = list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let back = live.len() == usize::try_from(want).unwrap_or(0)
                && live.iter().all(|p| p.name_any() != pod && pod_ready(p));
            if back {
                break;
            }
        }
        if Instant::now() >= deadline {
            println!("ovn-central is not available again within {READY:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{}",
        header(&format!(
            "OVN {component} Recovery takes {:.3} s",
            start.elapsed().as_secs_f64()
        ))
    );
}

/// Deletes the test pods and Service (leftovers of an earlier run too) and waits, bounded,
/// until the pods are gone.
async fn remove(client: &kube::Client, ns: &str) {
    let params = ListParams::default().labels(&format!("app={LABEL}"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let _ = pods
        .delete_collection(&DeleteParams::default(), &params)
        .await;
    let _ = services
        .delete_collection(&DeleteParams::default(), &params)
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match pods.list(&params).await {
            Ok(l) if l.items.is_empty() => return,
            Err(_) => return,
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_centred_on_a_hundred_columns() {
        let h = header("Start Host Network Performance Test");
        assert_eq!(h.len(), 100);
        assert!(h.starts_with(&format!("{} Start Host", "=".repeat(31))));
    }

    #[test]
    fn qperf_latencies_are_read_across_lines() {
        let out = "tcp_lat:\n    latency  =  25.9 us\n    msg_size  =  64 bytes\nudp_lat:\n    latency  =  1.2 ms\n";
        assert_eq!(qperf_latency(out, "tcp_lat").as_deref(), Some("25.9 us"));
        assert_eq!(qperf_latency(out, "udp_lat").as_deref(), Some("1.2 ms"));
        assert_eq!(qperf_latency("tcp_lat: failed", "tcp_lat"), None);
    }

    #[test]
    fn iperf_reports_give_their_last_figures() {
        let out = "[  5]   0.00-1.00   sec  1.2 MBytes  9.87 Mbits/sec  0.010 ms  0/893 (0%)\n\
                   [SUM]   0.00-5.00   sec  120 MBytes  201 Mbits/sec  0.051 ms  12/9000 (0.13%)  receiver\n";
        assert_eq!(last_bandwidth(out).as_deref(), Some("201 Mbits/sec"));
        assert_eq!(last_loss(out).as_deref(), Some("(0.13%)"));
        assert_eq!(last_ms(out).as_deref(), Some("0.051 ms"));
        assert_eq!(last_bandwidth("no figures"), None);
        assert_eq!(
            last_loss("0/0 (-nan%)"),
            None,
            "upstream's pattern takes digits only"
        );
    }

    #[test]
    fn the_host_nic_is_the_one_holding_the_address() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\n2: eth0    inet 172.18.0.2/16 brd 172.18.255.255 scope global eth0\n";
        assert_eq!(nic_with(out, "172.18.0.2").as_deref(), Some("eth0"));
        assert_eq!(nic_with(out, "10.0.0.1"), None);
    }
}
