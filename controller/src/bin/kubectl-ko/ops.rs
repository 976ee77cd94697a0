//! Operations on the installation as a whole, as upstream's plugin does them: `env-check` (the
//! node checks of `/kube-ovn/env-check.sh` in every kube-ovn-cni pod), `log` (the components'
//! log files and the nodes' network state copied into `./kubectl-ko-log/<node>/`) and `reload`
//! (every component's pods replaced, one workload after the other, each waited for).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use crate::remote;

/// The most files one log directory contributes (a runaway rotation must not fill the disk).
const MAX_LOG_FILES: usize = 200;
/// How long one command of `env-check` or `log` may take in a pod.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);
/// How long `reload` waits for one workload to be back.
const ROLLOUT_WAIT: Duration = Duration::from_secs(300);

/// (pod, node) of the Running pods labelled `app=<app>`.
async fn pods_of(
    client: &kube::Client,
    ns: &str,
    app: &str,
) -> Result<Vec<(String, String)>, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map_err(|e| format!("listing {app} pods: {e}"))?;
    let mut out: Vec<(String, String)> = list
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(|p| {
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            (p.name_any(), node)
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// `env-check`: upstream's node checks in each kube-ovn-cni pod.
pub async fn env_check(client: &kube::Client, ns: &str) -> Result<ExitCode, String> {
    let mut code = ExitCode::SUCCESS;
    for (pod, node) in pods_of(client, ns, "kube-ovn-cni").await? {
        println!("************************************************");
        println!("Start environment check for node {node}");
        println!("************************************************");
        let argv = vec!["bash".to_string(), "/kube-ovn/env-check.sh".into()];
        let c =
            remote::exec_within(COMMAND_LIMIT, client, ns, &pod, Some("cni-server"), argv).await?;
        if c != ExitCode::SUCCESS {
            code = c;
        }
    }
    Ok(code)
}

/// What `log` collects.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    KubeOvn,
    Ovn,
    Ovs,
    Linux,
}

/// `log {kube-ovn|ovn|ovs|linux|all}` into `./kubectl-ko-log/<node>/`.
pub async fn log(client: &kube::Client, ns: &str, what: &str) -> Result<ExitCode, String> {
    let parts: &[Part] = match what {
        "kube-ovn" => &[Part::KubeOvn],
        "ovn" => &[Part::Ovn],
        "ovs" => &[Part::Ovs],
        "linux" => &[Part::Linux],
        "all" => &[Part::KubeOvn, Part::Ovn, Part::Ovs, Part::Linux],
        other => {
            return Err(format!(
                "invalid component {other}: kube-ovn|ovn|ovs|linux|all"
            ))
        }
    };
    let root = std::env::current_dir()
        .map_err(|e| e.to_string())?
        .join("kubectl-ko-log");
    let mut problems = 0;
    for part in parts {
        match part {
            Part::KubeOvn => {
                println!("Collecting kube-ovn logging files");
                for (pod, node) in pods_of(client, ns, "kube-ovn-cni").await? {
                    let to = root.join(&node).join("kube-ovn");
                    problems += copy_dir(
                        client,
                        ns,
                        &pod,
                        Some("cni-server"),
                        "/var/log/kube-ovn",
                        &to,
                    )
                    .await;
                }
            }
            Part::Ovn | Part::Ovs => {
                let dir = if *part == Part::Ovn {
                    "ovn"
                } else {
                    "openvswitch"
                };
                println!("Collecting {dir} logging files");
                for (pod, node) in pods_of(client, ns, "ovs").await? {
                    let to = root.join(&node).join(dir);
                    problems +=
                        copy_dir(client, ns, &pod, None, &format!("/var/log/{dir}"), &to).await;
                }
            }
            Part::Linux => {
                for (name, _) in LINUX {
                    println!("Collecting linux {name} files");
                }
                for (pod, node) in pods_of(client, ns, "kube-ovn-cni").await? {
                    let to = root.join(&node).join("linux");
                    problems += linux(client, ns, &pod, &to).await;
                }
            }
        }
    }
    println!(
        "Collected files have been saved in the directory {}",
        root.display()
    );
    if problems > 0 {
        eprintln!("kubectl-ko: {problems} item(s) could not be collected (see above)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Copies the regular files under `dir` in `pod` into `to`, keeping their relative paths;
/// returns how many could not be copied (0 when all were, or the directory is empty).
async fn copy_dir(
    client: &kube::Client,
    ns: &str,
    pod: &str,
    container: Option<&str>,
    dir: &str,
    to: &Path,
) -> usize {
    let listing = remote::capture_within(
        COMMAND_LIMIT,
        client,
        ns,
        pod,
        container,
        vec!["find".into(), dir.into(), "-type".into(), "f".into()],
    )
    .await;
    let files = match listing {
        Ok((code, out)) if code == ExitCode::SUCCESS => out,
        Ok(_) => {
            eprintln!("kubectl-ko: {pod}: {dir} cannot be listed");
            return 1;
        }
        Err(e) => {
            eprintln!("kubectl-ko: {pod}: {e}");
            return 1;
        }
    };
    let mut failed = 0;
    for file in files.lines().filter(|l| !l.is_empty()).take(MAX_LOG_FILES) {
        let Some(rel) = file.strip_prefix(dir).map(|r| r.trim_start_matches('/')) else {
            continue;
        };
        if rel.split('/').any(|c| c == ".." || c.is_empty()) {
            continue;
        }
        let dest: PathBuf = to.join(rel);
        if let Some(parent) = dest.parent() {
            if let Err(e) = std::fs::create_dir_all(parent) {
                eprintln!("kubectl-ko: {}: {e}", parent.display());
                failed += 1;
                continue;
            }
        }
        let argv = vec!["cat".to_string(), file.to_string()];
        let copy = remote::exec_to_file(client, ns, pod, container, argv, &dest);
        match tokio::time::timeout(COMMAND_LIMIT, copy)
            .await
            .unwrap_or_else(|_| Err(format!("{file}: not copied within {COMMAND_LIMIT:?}")))
        {
            Ok(code) if code == ExitCode::SUCCESS => {}
            Ok(_) | Err(_) => failed += 1,
        }
    }
    failed
}

/// The node state `log linux` records: file name and the commands whose output it holds.
const LINUX: &[(&str, &[&[&str]])] = &[
    ("dmesg", &[&["dmesg", "-T"]]),
    (
        "iptables-legacy",
        &[
            &["iptables-legacy", "-V"],
            &["iptables-legacy", "-S"],
            &["iptables-legacy", "-S", "-t", "nat"],
            &["ip6tables-legacy", "-S"],
            &["ip6tables-legacy", "-S", "-t", "nat"],
        ],
    ),
    (
        "iptables-nft",
        &[
            &["iptables-nft", "-V"],
            &["iptables-nft", "-S"],
            &["iptables-nft", "-S", "-t", "nat"],
            &["ip6tables-nft", "-S"],
            &["ip6tables-nft", "-S", "-t", "nat"],
        ],
    ),
    ("nftables", &[&["nft", "list", "ruleset"]]),
    (
        "route",
        &[
            &["ip", "-4", "route", "show"],
            &["ip", "-6", "route", "show"],
        ],
    ),
    ("link", &[&["ip", "-d", "-s", "link", "show"]]),
    ("neigh", &[&["ip", "-4", "neigh"], &["ip", "-6", "neigh"]]),
    ("memory", &[&["free", "-m"]]),
    ("top", &[&["top", "-b", "-n", "1"]]),
    ("sysctl", &[&["sysctl", "-a"]]),
    ("netstat", &[&["ss", "-tunlp"]]),
    ("addr", &[&["ip", "addr", "show"]]),
    ("ipset", &[&["ipset", "list"]]),
    ("tcp", &[&["cat", "/proc/net/sockstat"]]),
    (
        "ipsec",
        &[
            &["cat", "/etc/ipsec.conf"],
            &["ipsec", "listcacerts"],
            &["ipsec", "listcerts"],
            &["ipsec", "statusall"],
        ],
    ),
    (
        "xfrm",
        &[&["ip", "xfrm", "policy"], &["ip", "xfrm", "state"]],
    ),
];

/// `log linux` for one kube-ovn-cni pod: each [`LINUX`] item's commands, their outputs
/// concatenated under a header each, in `<to>/<item>.log`. A command the node lacks leaves its
/// error in the file, as upstream's does.
async fn linux(client: &kube::Client, ns: &str, pod: &str, to: &Path) -> usize {
    if let Err(e) = std::fs::create_dir_all(to) {
        eprintln!("kubectl-ko: {}: {e}", to.display());
        return 1;
    }
    let mut failed = 0;
    for (name, commands) in LINUX {
        let mut text = String::new();
        for argv in *commands {
            let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
            text.push_str(&format!(
                "****************** {} ******************\n",
                argv.join(" ")
            ));
            match remote::capture_within(COMMAND_LIMIT, client, ns, pod, Some("cni-server"), argv)
                .await
            {
                Ok((_, out)) => text.push_str(&out),
                Err(e) => text.push_str(&format!("(not collected: {e})\n")),
            }
        }
        let file = to.join(format!("{name}.log"));
        if let Err(e) = std::fs::write(&file, text) {
            eprintln!("kubectl-ko: {}: {e}", file.display());
            failed += 1;
        }
    }
    failed
}

/// One workload `reload` restarts.
/// A workload `reload` (and `nb restore`) restarts.
pub enum Workload {
    /// A Deployment.
    Deployment(&'static str),
    /// A DaemonSet.
    DaemonSet(&'static str),
}

/// `reload`: upstream's order — ovn-central, then ovs-ovn (a rolling restart), the controller,
/// the CNI, the pinger and the monitor; each one's pods replaced and waited for before the next.
/// A workload the installation does not have is skipped with a note.
pub async fn reload(client: &kube::Client, ns: &str) -> Result<ExitCode, String> {
    let steps = [
        (Workload::Deployment("ovn-central"), "ovn-central", false),
        (Workload::DaemonSet("ovs-ovn"), "ovs", true),
        (
            Workload::Deployment("kube-ovn-controller"),
            "kube-ovn-controller",
            false,
        ),
        (Workload::DaemonSet("kube-ovn-cni"), "kube-ovn-cni", false),
        (
            Workload::DaemonSet("kube-ovn-pinger"),
            "kube-ovn-pinger",
            false,
        ),
        (
            Workload::Deployment("kube-ovn-monitor"),
            "kube-ovn-monitor",
            false,
        ),
    ];
    for (workload, app, rolling) in steps {
        let (kind, name) = match &workload {
            Workload::Deployment(n) => ("deployment", *n),
            Workload::DaemonSet(n) => ("daemonset", *n),
        };
        if !exists(client, ns, &workload).await? {
            println!("{kind}/{name} not found, skipped");
            continue;
        }
        let since = jiff::Timestamp::now();
        if rolling {
            restart(client, ns, &workload).await?;
            println!("{kind}.apps/{name} restarted");
        } else {
            let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
            let list = pods
                .list(&ListParams::default().labels(&format!("app={app}")))
                .await
                .map_err(|e| format!("listing {app} pods: {e}"))?;
            for p in list.items {
                match pods.delete(&p.name_any(), &DeleteParams::default()).await {
                    Ok(_) => println!("pod \"{}\" deleted", p.name_any()),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(format!("deleting pod {}: {e}", p.name_any())),
                }
            }
        }
        wait_rolled_out(client, ns, &workload, app, since).await?;
        println!("{kind} \"{name}\" successfully rolled out");
    }
    Ok(ExitCode::SUCCESS)
}

async fn exists(client: &kube::Client, ns: &str, w: &Workload) -> Result<bool, String> {
    let found = match w {
        Workload::Deployment(n) => Api::<Deployment>::namespaced(client.clone(), ns)
            .get_opt(n)
            .await
            .map(|o| o.is_some()),
        Workload::DaemonSet(n) => Api::<DaemonSet>::namespaced(client.clone(), ns)
            .get_opt(n)
            .await
            .map(|o| o.is_some()),
    };
    found.map_err(|e| e.to_string())
}

/// `kubectl rollout restart`: a new `restartedAt` annotation on the pod template.
pub async fn restart(client: &kube::Client, ns: &str, w: &Workload) -> Result<(), String> {
    let now = jiff::Timestamp::now().to_string();
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": now}}}}});
    let params = PatchParams::default();
    match w {
        Workload::Deployment(n) => Api::<Deployment>::namespaced(client.clone(), ns)
            .patch(n, &params, &Patch::Merge(&patch))
            .await
            .map(drop),
        Workload::DaemonSet(n) => Api::<DaemonSet>::namespaced(client.clone(), ns)
            .patch(n, &params, &Patch::Merge(&patch))
            .await
            .map(drop),
    }
    .map_err(|e| format!("restarting: {e}"))
}

/// Waits until the workload has observed its spec, wants as many pods as it has, and every pod
/// of `app=<app>` is Ready and was created after `since` (the old ones are gone).
async fn wait_rolled_out(
    client: &kube::Client,
    ns: &str,
    w: &Workload,
    app: &str,
    since: jiff::Timestamp,
) -> Result<(), String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + ROLLOUT_WAIT;
    loop {
        let want = match w {
            Workload::Deployment(n) => Api::<Deployment>::namespaced(client.clone(), ns)
                .get(n)
                .await
                .map(|d| d.spec.and_then(|s| s.replicas).unwrap_or(1) as usize),
            Workload::DaemonSet(n) => Api::<DaemonSet>::namespaced(client.clone(), ns)
                .get(n)
                .await
                .map(|d| d.status.map(|s| s.desired_number_scheduled).unwrap_or(0) as usize),
        }
        .map_err(|e| e.to_string())?;
        let list = pods
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .map_err(|e| e.to_string())?;
        let fresh = |p: &Pod| {
            p.metadata.creation_timestamp.as_ref().is_some_and(|t| {
                t.0 >= since
                    .checked_sub(jiff::SignedDuration::from_secs(1))
                    .unwrap_or(since)
            })
        };
        let ready = |p: &Pod| {
            p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
        let live: Vec<&Pod> = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        if want > 0 && live.len() == want && live.iter().all(|p| fresh(p) && ready(p)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "app={app}: {} of {want} pods replaced and ready after {ROLLOUT_WAIT:?}",
                live.iter().filter(|p| fresh(p) && ready(p)).count()
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
