//! `kubectl ko nb restore`: rebuilds the NB raft cluster from one member's copy, as upstream
//! does when a cluster reports inconsistent data. ovn-central is scaled to 0; in the ovs-ovn
//! pods of the ovn-central nodes (which mount the same `/etc/ovn`) the first member's NB file
//! is converted to a standalone database and every member's NB and SB files are moved to
//! `/tmp`; the standalone file takes the NB file's place on the first node and ovn-central is
//! scaled back, so its first member makes a new NB cluster from that database (and a new,
//! empty SB that northd fills again) and the others join it; then ovs-ovn is restarted so every
//! ovn-controller connects to the new SB cluster.
//!
//! Unlike upstream's script it waits for the ovn-central pods to be gone before it touches
//! their files, stops at the first step that fails (saying which), and bounds every wait.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;

use crate::remote;

/// How long ovn-central may take to stop, and to be available again.
const WAIT: Duration = Duration::from_secs(600);
/// How long one file operation in an ovs-ovn pod may take.
const STEP: Duration = Duration::from_secs(120);

/// The ovn-central nodes' addresses: the Deployment's `NODE_IPS`, else the InternalIPs of
/// the nodes labelled `kube-ovn/role=master` (upstream's order of preference).
async fn node_ips(client: &kube::Client, deploy: &Deployment) -> Result<Vec<String>, String> {
    let from_env = deploy
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.env.as_ref())
        .and_then(|env| env.iter().find(|e| e.name == "NODE_IPS"))
        .and_then(|e| e.value.clone())
        .unwrap_or_default();
    let ips: Vec<String> = from_env
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if !ips.is_empty() {
        return Ok(ips);
    }
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels("kube-ovn/role=master"))
        .await
        .map_err(|e| format!("listing master nodes: {e}"))?;
    Ok(nodes
        .items
        .iter()
        .filter_map(|n| {
            n.status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| a.type_ == "InternalIP")
                .map(|a| a.address.clone())
        })
        .collect())
}

async fn scale(deployments: &Api<Deployment>, replicas: i32) -> Result<(), String> {
    let patch = json!({"spec": {"replicas": replicas}});
    deployments
        .patch(
            "ovn-central",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map(drop)
        .map_err(|e| format!("scaling ovn-central to {replicas}: {e}"))
}

/// Runs `argv` in `pod`, failing unless it exits 0.
async fn step(client: &kube::Client, ns: &str, pod: &str, argv: &[&str]) -> Result<(), String> {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let what = argv.join(" ");
    let code = remote::exec_within(STEP, client, ns, pod, None, argv).await?;
    if code == ExitCode::SUCCESS {
        Ok(())
    } else {
        Err(format!("`{what}` failed in {pod}"))
    }
}

/// Runs the restore.
pub async fn run(client: &kube::Client, ns: &str) -> Result<ExitCode, String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deploy = deployments
        .get("ovn-central")
        .await
        .map_err(|e| format!("deployment ovn-central: {e}"))?;
    let replicas = deploy.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let ips = node_ips(client, &deploy).await?;
    let ovs = pods
        .list(&ListParams::default().labels("app=ovs"))
        .await
        .map_err(|e| format!("listing ovs-ovn pods: {e}"))?;
    let host_ip = |p: &Pod| p.status.as_ref().and_then(|s| s.host_ip.clone());
    let mut members: Vec<(String, String)> = Vec::new();
    for ip in &ips {
        if let Some(p) = ovs.items.iter().find(|p| host_ip(p).as_deref() == Some(ip)) {
            members.push((ip.clone(), p.name_any()));
        }
    }
    let Some((first_ip, first)) = members.first().cloned() else {
        return Err(format!(
            "no ovs-ovn pod runs on an ovn-central node ({})",
            ips.join(",")
        ));
    };

    scale(&deployments, 0).await?;
    println!("ovn-central original replicas is {replicas}");
    println!("first nodeIP is {first_ip}");
    for (ip, pod) in &members {
        println!("ovs-ovn pod on node {ip} is {pod}");
    }
    let central = ListParams::default().labels("app=ovn-central");
    let deadline = Instant::now() + WAIT;
    loop {
        let left = pods
            .list(&central)
            .await
            .map_err(|e| format!("listing ovn-central pods: {e}"))?;
        if left.items.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "ovn-central pods still there after {WAIT:?}: the databases are left as they were (ovn-central is at 0 replicas; scale it back to {replicas})"
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    println!("backup nb db file");
    step(
        client,
        ns,
        &first,
        &[
            "ovsdb-tool",
            "cluster-to-standalone",
            "/etc/ovn/ovnnb_db_standalone.db",
            "/etc/ovn/ovnnb_db.db",
        ],
    )
    .await?;
    for (_, pod) in &members {
        step(
            client,
            ns,
            pod,
            &["mv", "-f", "/etc/ovn/ovnnb_db.db", "/tmp"],
        )
        .await?;
        step(
            client,
            ns,
            pod,
            &["mv", "-f", "/etc/ovn/ovnsb_db.db", "/tmp"],
        )
        .await?;
    }
    println!("restore nb db file, operate in pod {first}");
    step(
        client,
        ns,
        &first,
        &[
            "mv",
            "-f",
            "/etc/ovn/ovnnb_db_standalone.db",
            "/etc/ovn/ovnnb_db.db",
        ],
    )
    .await?;
    scale(&deployments, replicas).await?;

    let deadline = Instant::now() + WAIT;
    loop {
        let available = deployments
            .get("ovn-central")
            .await
            .ok()
            .and_then(|d| d.status.and_then(|s| s.available_replicas))
            .unwrap_or(0);
        if available == replicas {
            break;
        }
        println!("wait all ovn-central pods running, available {available}");
        if Instant::now() >= deadline {
            return Err(format!("ovn-central is not available again after {WAIT:?}"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!("finish restore nb db file and ovn-central replicas");

    println!("restart ovs-ovn");
    crate::ops::restart(client, ns, &crate::ops::Workload::DaemonSet("ovs-ovn"))
        .await
        .map_err(|e| format!("restarting ovs-ovn: {e}"))?;
    println!("daemonset.apps/ovs-ovn restarted");
    Ok(ExitCode::SUCCESS)
}
