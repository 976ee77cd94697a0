//! A kubelet stand-in per node: the part of kubelet a CNI sees. It registers the Node, keeps its
//! Ready condition in step with whether a CNI configuration is installed, and for every pod bound
//! to the node creates the pod's network namespace, calls the configured CNI plugins exactly as
//! a container runtime does, reports the pod Running with the IPs the plugins returned, retries
//! failed ADDs with back-off (reporting each failure as an Event, as kubelet does), and on delete
//! calls CNI DEL and removes the namespace. Containers themselves do not exist: a pod *is* its
//! network namespace, which `kube-ovn-sandbox exec` enters.
//!
//! Readiness is kubelet's: a container without a readiness probe is ready once running, one with
//! a probe when the probe says so ([`crate::prober`], run from the node's namespace against the
//! pod IP); the pod conditions (ContainersReady, Ready with readiness gates, ...) follow and the
//! status is written only when it changes.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::cni::{self, Attachment, NetworkConfig};
use crate::containers;
use crate::error::{Error, Result};
use crate::exec::Layout;
use crate::multus::{self, Delegate};
use crate::node::NodeInfo;
use crate::prober;
use crate::sys;

/// How often the node's Ready condition is re-evaluated (a CNI config may be installed any time).
const NODE_STATUS_PERIOD: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Name of the network namespace of a pod in a sandbox with `prefix`.
pub fn pod_netns(prefix: &str, namespace: &str, name: &str) -> String {
    format!("{prefix}{namespace}_{name}")
}

/// Shared by the node's tasks.
struct Ctx {
    node: NodeInfo,
    prefix: String,
    client: kube::Client,
    /// What containers see, for the ones the sandbox runs ([`containers`]).
    layout: Option<Layout>,
}

/// Runs the kubelet stand-in for `node` until the task is aborted; with `layout`, it also runs
/// the containers the sandbox runs for real ([`containers::RUN`]).
pub async fn run(
    node: NodeInfo,
    prefix: String,
    client: kube::Client,
    control_plane: bool,
    layout: Option<Layout>,
) {
    let ctx = Arc::new(Ctx {
        node,
        prefix,
        client,
        layout,
    });
    loop {
        match register(&ctx, control_plane).await {
            Ok(()) => break,
            Err(e) => {
                warn!(node = %ctx.node.name, "registering node: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    tokio::join!(node_status_loop(ctx.clone()), pod_loop(ctx));
}

async fn register(ctx: &Ctx, control_plane: bool) -> Result<()> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let name = &ctx.node.name;
    let mut labels = json!({
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
    });
    if control_plane {
        labels["node-role.kubernetes.io/control-plane"] = json!("");
    }
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {},
    }))
    .map_err(|e| Error::Invalid(e.to_string()))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    update_node_status(ctx, None).await.map(|_| ())
}

/// Patches the Node's status; returns the Ready state it reported.
async fn update_node_status(ctx: &Ctx, last: Option<bool>) -> Result<bool> {
    let cni = cni::load_config(&ctx.node.cni_conf_dir());
    let (ready, reason, message) = match &cni {
        Ok(Some(c)) => (
            true,
            "KubeletReady",
            format!("network {} from {}", c.name, c.file.display()),
        ),
        Ok(None) => (
            false,
            "NetworkPluginNotReady",
            format!(
                "container runtime network not ready: no CNI configuration in {}",
                ctx.node.cni_conf_dir().display()
            ),
        ),
        Err(e) => (false, "NetworkPluginNotReady", e.to_string()),
    };
    if last == Some(ready) {
        return Ok(ready);
    }
    let now = now();
    let status = json!({"status": {
        "addresses": [
            {"type": "InternalIP", "address": ctx.node.ip.to_string()},
            {"type": "Hostname", "address": ctx.node.name},
        ],
        "conditions": [{
            "type": "Ready",
            "status": if ready { "True" } else { "False" },
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }],
        "nodeInfo": {
            "architecture": std::env::consts::ARCH,
            "operatingSystem": "linux",
            "osImage": "kube-ovn-sandbox",
            "kernelVersion": sys::run("uname", ["-r"]).unwrap_or_default().trim(),
            "kubeletVersion": "v1.33.0-sandbox",
            "kubeProxyVersion": "",
            "containerRuntimeVersion": "netns://sandbox",
            "machineID": ctx.node.name,
            "systemUUID": ctx.node.name,
            "bootID": ctx.node.name,
        },
    }});
    Api::<Node>::all(ctx.client.clone())
        .patch_status(
            &ctx.node.name,
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await?;
    Ok(ready)
}

async fn node_status_loop(ctx: Arc<Ctx>) {
    let mut last = None;
    loop {
        match update_node_status(&ctx, last).await {
            Ok(ready) => last = Some(ready),
            Err(e) => warn!(node = %ctx.node.name, "node status: {e}"),
        }
        tokio::time::sleep(NODE_STATUS_PERIOD).await;
    }
}

async fn pod_loop(ctx: Arc<Ctx>) {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node.name));
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let mut listed: Option<Vec<String>> = None;
    let mut stream = watcher(pods, config).boxed();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                warn!(node = %ctx.node.name, "pod watch: {e}");
                continue;
            }
        };
        workers.retain(|_, tx| !tx.is_closed());
        match event {
            watcher::Event::Init => listed = Some(Vec::new()),
            watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                let Some(uid) = pod.metadata.uid.clone() else {
                    continue;
                };
                if let Some(l) = listed.as_mut() {
                    l.push(uid.clone());
                }
                let desired = pod.metadata.deletion_timestamp.is_none().then_some(pod);
                match workers.get(&uid) {
                    Some(tx) => {
                        let _ = tx.send(desired);
                    }
                    None => {
                        if let Some(pod) = desired {
                            let (tx, rx) = watch::channel(Some(pod));
                            tokio::spawn(pod_worker(ctx.clone(), rx));
                            workers.insert(uid, tx);
                        }
                    }
                }
            }
            watcher::Event::InitDone => {
                // Pods deleted while the watch was down: tear them down now.
                if let Some(seen) = listed.take() {
                    for (uid, tx) in &workers {
                        if !seen.contains(uid) {
                            let _ = tx.send(None);
                        }
                    }
                }
            }
            watcher::Event::Delete(pod) => {
                if let Some(tx) = pod.metadata.uid.as_ref().and_then(|u| workers.get(u)) {
                    let _ = tx.send(None);
                }
            }
        }
    }
}

/// What the worker has set up for its pod.
struct Sandboxed {
    attachment: Attachment,
    config: Option<NetworkConfig>,
    /// The additional networks attached after the default one (Multus's delegates), in order.
    delegates: Vec<Delegate>,
    /// The pod's IPs (the node's for hostNetwork pods).
    ips: Vec<String>,
    /// When the containers "started" (RFC 3339), as reported in their status.
    started_at: String,
}

/// The running part of a pod: readiness probes, the containers the sandbox runs, and the status
/// last written. Dropping it stops them (before the pod's network is torn down).
struct Running {
    probes: Vec<JoinHandle<()>>,
    _containers: Vec<containers::Container>,
    results: mpsc::Receiver<(String, bool)>,
    ready: BTreeMap<String, bool>,
    written: Option<Value>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for p in &self.probes {
            p.abort();
        }
    }
}

/// Starts a readiness prober per container that has a readiness probe; those containers start
/// not ready, as in kubelet.
fn start_probes(ctx: &Ctx, pod: &Pod, s: &Sandboxed) -> Running {
    let (tx, results) = mpsc::channel(16);
    let started_containers = match &ctx.layout {
        Some(layout) => containers::start(layout, pod, &s.ips, &ctx.node.ip.to_string()),
        None => Vec::new(),
    };
    let mut running = Running {
        probes: Vec::new(),
        _containers: started_containers,
        results,
        ready: BTreeMap::new(),
        written: None,
    };
    let ip: Option<IpAddr> = s.ips.first().and_then(|ip| ip.parse().ok());
    let started = tokio::time::Instant::now();
    for c in pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
    {
        let Some(probe) = &c.readiness_probe else {
            continue;
        };
        running.ready.insert(c.name.clone(), false);
        let Some(ip) = ip else { continue };
        running.probes.push(tokio::spawn(prober::run(
            ctx.node.netns.clone(),
            ip,
            c.clone(),
            prober::ProbeSpec::of(probe),
            started,
            tx.clone(),
        )));
    }
    running
}

/// Owns one pod from first sight to teardown, so a slow CNI call for one pod never holds up
/// another.
async fn pod_worker(ctx: Arc<Ctx>, mut rx: watch::Receiver<Option<Pod>>) {
    let mut current: Option<(Sandboxed, Running)> = None;
    let mut backoff = Duration::from_millis(500);
    loop {
        let desired = rx.borrow_and_update().clone();
        match desired {
            Some(pod) if current.is_none() => match start_pod(&ctx, &pod).await {
                Ok(s) => {
                    let mut running = start_probes(&ctx, &pod, &s);
                    if let Err(e) = report_status(&ctx, &pod, &s, &mut running).await {
                        warn!(node = %ctx.node.name, "pod {}: status: {e}", pod_key(&pod));
                    }
                    current = Some((s, running));
                    backoff = Duration::from_millis(500);
                }
                Err(e) => {
                    warn!(node = %ctx.node.name, "pod {}: {e}", pod_key(&pod));
                    let reason = match e {
                        Error::Invalid(_) => "NetworkNotReady",
                        _ => "FailedCreatePodSandBox",
                    };
                    if let Err(e) = event(&ctx, &pod, reason, &e.to_string()).await {
                        warn!("recording event: {e}");
                    }
                    // Retry after the back-off, or at once when the pod changes.
                    let _ = tokio::time::timeout(backoff, rx.changed()).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            },
            Some(pod) => {
                let Some((s, running)) = current.as_mut() else {
                    continue;
                };
                // The pod changed (a readiness gate, a status write of ours) or a probe flipped:
                // recompute, write only if different.
                if let Err(e) = report_status(&ctx, &pod, s, running).await {
                    warn!(node = %ctx.node.name, "pod {}: status: {e}", pod_key(&pod));
                    running.written = None;
                }
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { break },
                    Some((container, ready)) = running.results.recv() => {
                        running.ready.insert(container, ready);
                    }
                }
            }
            None => {
                if let Some((s, running)) = current.take() {
                    drop(running);
                    stop_pod(&ctx, s).await;
                }
                break;
            }
        }
    }
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

async fn start_pod(ctx: &Arc<Ctx>, pod: &Pod) -> Result<Sandboxed> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let attachment = Attachment {
        container_id: format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ),
        netns: sys::netns_path(&pod_netns(&ctx.prefix, &namespace, &name)),
        ifname: "eth0".into(),
        pod_namespace: namespace.clone(),
        pod_name: name.clone(),
        pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
    };
    if host_network {
        return Ok(Sandboxed {
            attachment,
            config: None,
            delegates: Vec::new(),
            ips: vec![ctx.node.ip.to_string()],
            started_at: now(),
        });
    }
    let config = cni::load_config(&ctx.node.cni_conf_dir())?.ok_or_else(|| {
        Error::Invalid(format!(
            "network plugin not ready: no CNI configuration in {}",
            ctx.node.cni_conf_dir().display()
        ))
    })?;
    let (default_network, delegates) = attachment_delegates(ctx, pod, &namespace, &name).await?;
    let multus_pod = default_network.is_some() || !delegates.is_empty();
    let (config, default_name) = match default_network {
        Some(d) => (d.config, d.network),
        None => {
            let name = config.name.clone();
            (config, name)
        }
    };
    let netns_name = pod_netns(&ctx.prefix, &namespace, &name);
    let bin_dir = ctx.node.cni_bin_dir();
    let host = ctx.node.netns.clone();
    let att = attachment.clone();
    let conf = config.clone();
    let dels = delegates.clone();
    let (result, results) = tokio::task::spawn_blocking(move || {
        sys::netns_add(&netns_name)?;
        let added = cni::add(&conf, &att, &bin_dir, &host).and_then(|r| {
            // Multus: the default network first, then each selected network.
            let results = multus::add_all(&dels, &att, &bin_dir, &host)?;
            if let Err(e) = multus::apply_default_routes(&dels, &netns_name) {
                let _ = multus::del_all(&dels, &att, &bin_dir, &host);
                return Err(e);
            }
            Ok((r, results))
        });
        match added {
            Ok(r) => Ok(r),
            Err(e) => {
                // The runtime cleans up a failed ADD with DEL before trying again.
                let _ = cni::del(&conf, &att, &bin_dir, &host);
                let _ = sys::netns_del(&netns_name);
                Err(e)
            }
        }
    })
    .await
    .map_err(|e| Error::Invalid(format!("CNI task: {e}")))??;
    if multus_pod {
        let status =
            multus::network_status_annotation(&default_name, &result, &delegates, &results);
        let patch = json!({"metadata": {"annotations": {
            multus::NETWORK_STATUS_ANNOTATION: status,
        }}});
        if let Err(e) = Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            // Multus fails the ADD when it cannot write the status; the runtime then deletes.
            let (conf, dels, att) = (config.clone(), delegates.clone(), attachment.clone());
            let (bin_dir, host) = (ctx.node.cni_bin_dir(), ctx.node.netns.clone());
            let netns = pod_netns(&ctx.prefix, &namespace, &name);
            let _ = tokio::task::spawn_blocking(move || {
                unwire(&conf, &dels, &att, &bin_dir, &host, &netns)
            })
            .await;
            return Err(e.into());
        }
    }
    let ips = cni::result_ips(&result).map_err(|detail| Error::Cni {
        command: "ADD".into(),
        pod: format!("{namespace}/{name}"),
        detail,
    })?;
    info!(node = %ctx.node.name, "pod {namespace}/{name} up with {ips:?}");
    Ok(Sandboxed {
        attachment,
        config: Some(config),
        delegates,
        ips,
        started_at: now(),
    })
}

/// What Multus makes of a pod's annotations before calling any plugin: the NAD replacing the
/// node's configuration for `eth0` (`v1.multus-cni.io/default-network`), if any, and the
/// delegates of the selected networks, each read from its NetworkAttachmentDefinition.
async fn attachment_delegates(
    ctx: &Ctx,
    pod: &Pod,
    namespace: &str,
    name: &str,
) -> Result<(Option<Delegate>, Vec<Delegate>)> {
    let fail = |detail: String| Error::Cni {
        command: "ADD".into(),
        pod: format!("{namespace}/{name}"),
        detail,
    };
    let annotation = |key: &str| {
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .cloned()
    };
    let paths = multus::NodePaths::of(&ctx.node);
    let load = |sel: multus::NetworkSelection, index: usize| {
        let (client, paths, fail) = (ctx.client.clone(), paths.clone(), fail);
        async move {
            let nad = multus::nads(client, &sel.namespace)
                .get_opt(&sel.name)
                .await?
                .ok_or_else(|| {
                    fail(format!(
                        "cannot find a network-attachment-definition ({}) in namespace ({})",
                        sel.name, sel.namespace
                    ))
                })?;
            let config = nad.data["spec"]["config"].as_str().unwrap_or_default();
            multus::delegate(&sel, index, config, &paths)
        }
    };
    let default = match annotation(multus::DEFAULT_NETWORK_ANNOTATION) {
        Some(a) => {
            let sel = multus::parse_default_network(&a, namespace).map_err(fail)?;
            Some(load(sel, 0).await?)
        }
        None => None,
    };
    let mut delegates = Vec::new();
    if let Some(a) = annotation(multus::NETWORKS_ANNOTATION) {
        let selections = multus::parse_networks(&a, namespace).map_err(fail)?;
        for (i, sel) in selections.into_iter().enumerate() {
            delegates.push(load(sel, i + 1).await?);
        }
    }
    Ok((default, delegates))
}

/// CNI DEL for everything of a pod (Multus: the selected networks last first, then the default
/// network) and the removal of its network namespace.
fn unwire(
    config: &NetworkConfig,
    delegates: &[Delegate],
    att: &Attachment,
    bin_dir: &std::path::Path,
    host: &str,
    netns: &str,
) -> Result<()> {
    multus::del_all(delegates, att, bin_dir, host)?;
    cni::del(config, att, bin_dir, host)?;
    sys::netns_del(netns)
}

async fn stop_pod(ctx: &Arc<Ctx>, s: Sandboxed) {
    let Some(config) = s.config else {
        return;
    };
    let bin_dir: PathBuf = ctx.node.cni_bin_dir();
    let host = ctx.node.netns.clone();
    let netns = pod_netns(
        &ctx.prefix,
        &s.attachment.pod_namespace,
        &s.attachment.pod_name,
    );
    let att = s.attachment;
    let delegates = s.delegates;
    let mut backoff = Duration::from_millis(200);
    loop {
        let (config, att, bin_dir, host, netns, delegates) = (
            config.clone(),
            att.clone(),
            bin_dir.clone(),
            host.clone(),
            netns.clone(),
            delegates.clone(),
        );
        let done = tokio::task::spawn_blocking(move || {
            unwire(&config, &delegates, &att, &bin_dir, &host, &netns)
        })
        .await;
        match done {
            Ok(Ok(())) => return,
            Ok(Err(e)) => warn!(node = %ctx.node.name, "CNI DEL: {e}"),
            Err(e) => warn!(node = %ctx.node.name, "CNI DEL task: {e}"),
        }
        // A runtime keeps calling DEL until it succeeds.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Writes the pod's status (phase Running, IPs, containers, conditions) when it differs from what
/// was last written. Conditions go by strategic merge, so conditions other components own (a
/// readiness gate's) stay.
async fn report_status(ctx: &Ctx, pod: &Pod, s: &Sandboxed, running: &mut Running) -> Result<()> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let now = now();
    let ips = &s.ips;
    let containers: Vec<Value> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let ready = running.ready.get(&c.name).copied().unwrap_or(true);
            json!({
                "name": c.name, "ready": ready, "started": true, "restartCount": 0,
                "image": c.image.clone().unwrap_or_default(), "imageID": "",
                "containerID": format!("netns://{namespace}_{name}"),
                "state": {"running": {"startedAt": s.started_at}},
            })
        })
        .collect();
    let conditions = prober::conditions(pod, &running.ready, &now);
    let status = json!({"status": {
        "phase": "Running",
        "hostIP": ctx.node.ip.to_string(),
        "hostIPs": [{"ip": ctx.node.ip.to_string()}],
        "podIP": ips.first(),
        "podIPs": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<Value>>(),
        "startTime": s.started_at,
        "conditions": conditions,
        "containerStatuses": containers,
    }});
    // Compare without transition times: they only move when a status does.
    let mut comparable = status.clone();
    if let Some(cs) = comparable
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    {
        for c in cs {
            if let Some(c) = c.as_object_mut() {
                c.remove("lastTransitionTime");
            }
        }
    }
    if running.written.as_ref() == Some(&comparable) {
        return Ok(());
    }
    Api::<Pod>::namespaced(ctx.client.clone(), namespace)
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&status))
        .await?;
    running.written = Some(comparable);
    Ok(())
}

async fn event(ctx: &Ctx, pod: &Pod, reason: &str, message: &str) -> Result<()> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let now = now();
    let ev: k8s_openapi::api::core::v1::Event = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{name}.{}", uuid::Uuid::new_v4().simple()), "namespace": namespace},
        "involvedObject": {
            "apiVersion": "v1", "kind": "Pod", "namespace": namespace, "name": name,
            "uid": pod.metadata.uid,
        },
        "reason": reason,
        "message": message,
        "type": "Warning",
        "source": {"component": "kubelet", "host": ctx.node.name},
        "reportingComponent": "kubelet",
        "reportingInstance": ctx.node.name,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }))
    .map_err(|e| Error::Invalid(e.to_string()))?;
    Api::<k8s_openapi::api::core::v1::Event>::namespaced(ctx.client.clone(), &namespace)
        .create(&PostParams::default(), &ev)
        .await?;
    Ok(())
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_netns_names_are_per_sandbox_and_per_pod() {
        assert_eq!(pod_netns("kos-", "default", "web"), "kos-default_web");
        // Namespace and pod names never contain '_', so the separator keeps names unique.
        assert_ne!(pod_netns("a-", "x", "y-z"), pod_netns("a-", "x-y", "z"));
    }
}
