//! The component pods of a Kube-OVN install, as Pod objects for what the sandbox runs as
//! processes: `ovn-central-<n>` (one per database member, upstream's `app=ovn-central` and
//! `ovn-nb-leader`/`ovn-sb-leader`/`ovn-northd-leader` labels) and, per node, `ovs-ovn-<node>`
//! (`app=ovs`) and `kube-ovn-cni-<node>` (`app=kube-ovn-cni`), all hostNetwork. Their
//! `hostPath` volumes put the sandbox's sockets and database files at upstream's paths
//! (`/var/run/ovn/ovnnb_db.ctl`, `/etc/ovn/ovnnb_db.db`, `/var/run/openvswitch/db.sock`…)
//! for `kubectl exec`, so `kubectl ko` works here as in a cluster. Each ovn-central pod's
//! container runs kube-ovn-leader-checker on its member's sockets, which puts the leader labels
//! on the pods and moves them with the sandbox's elections.
//!
//! The workloads of the install manifests (`dist/manifests`) come next, as in a cluster: the
//! `ovs-ovn` and `kube-ovn-cni` DaemonSets, the `ovn-central` and `kube-ovn-controller`
//! Deployments (with a ReplicaSet each), which adopt the pods above as their controllers would
//! (a `kube-ovn-controller` pod stands for the controller process), so their status reports
//! the sandbox's components; and, when asked, the `ovn-nb`/`ovn-sb`/`ovn-northd` Services and
//! the `kube-ovn-pinger` DaemonSet, whose pods the DaemonSet controller makes on every node in
//! the pod network (what `kubectl ko diagnose` checks and runs).

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, Service};
use kube::api::{Api, PostParams};
use kube_ovn_common::manifests::workloads;
use serde_json::json;

use crate::apps::{pod_template_hash, POD_TEMPLATE_GENERATION, POD_TEMPLATE_HASH};
use crate::error::{Error, Result};
use crate::{central, SandboxState};

/// The namespace the component pods live in.
pub const NAMESPACE: &str = "kube-system";
/// The image the pods name (nothing pulls it: the sandbox runs the binaries it built).
pub const IMAGE: &str = "docker.io/kubeovn/kube-ovn:sandbox";

/// Upstream's file names in `/var/run/ovn` and `/etc/ovn`, and the sandbox file each is:
/// the member's servers and its ovn-northd (the control socket under the name
/// `ovn-appctl -t ovn-northd` derives from the pid northd has when the pods are made).
fn central_links(central_dir: &Path, member: &str) -> Result<Vec<(String, String)>> {
    let mut links = Vec::new();
    for db in ["nb", "sb"] {
        for ext in ["sock", "ctl", "db", "pid"] {
            links.push((format!("ovn{db}_db.{ext}"), format!("{db}{member}.{ext}")));
        }
    }
    let northd = central::northd_name(member.parse().unwrap_or(1));
    let pidfile = central_dir.join(format!("{northd}.pid"));
    let pid = std::fs::read_to_string(&pidfile).map_err(|e| Error::io(&pidfile, e))?;
    links.push(("ovn-northd.pid".into(), format!("{northd}.pid")));
    links.push((
        format!("ovn-northd.{}.ctl", pid.trim()),
        format!("{northd}.ctl"),
    ));
    Ok(links)
}

/// A directory of links named as upstream names the files, to the sandbox's files.
fn link_dir(dir: &Path, links: &[(String, String)], target_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for (name, target) in links {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target_dir.join(target), &link)
            .map_err(|e| Error::io(&link, e))?;
    }
    Ok(())
}

fn host_pod(
    name: &str,
    node: &str,
    labels: serde_json::Value,
    container: &str,
    mounts: &[(&str, &Path)],
) -> Pod {
    let volumes: Vec<_> = mounts
        .iter()
        .enumerate()
        .map(|(i, (_, host))| json!({"name": format!("v{i}"), "hostPath": {"path": host}}))
        .collect();
    let volume_mounts: Vec<_> = mounts
        .iter()
        .enumerate()
        .map(|(i, (at, _))| json!({"name": format!("v{i}"), "mountPath": at}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "nodeName": node, "hostNetwork": true,
            "containers": [{"name": container, "image": IMAGE,
                            "volumeMounts": volume_mounts}],
            "volumes": volumes,
        },
    }))
    .expect("a Pod built from its own fields")
}

/// Makes the ovn-central pod's container run kube-ovn-leader-checker as start-db.sh starts it
/// (upstream's arguments and downward-API environment, the `ovn-ovs` service account), one
/// round a second so the labels follow the sandbox's elections quickly.
fn run_leader_checker(pod: &mut Pod, remote_addresses: &str) -> Result<()> {
    let mut value = serde_json::to_value(&*pod).map_err(|e| Error::Invalid(e.to_string()))?;
    value["spec"]["serviceAccountName"] = json!(crate::rbac::OVS_SA);
    let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    let c = &mut value["spec"]["containers"][0];
    if let Some(m) = c.as_object_mut() {
        m.remove("args");
    }
    c["command"] = json!([
        "/kube-ovn/kube-ovn-leader-checker",
        "--probeInterval=1",
        "--enableCompact=true",
        format!("--remoteAddresses={remote_addresses}"),
    ]);
    c["env"] = json!([
        field("POD_IP", "status.podIP"),
        field("POD_NAME", "metadata.name"),
        field("POD_NAMESPACE", "metadata.namespace"),
    ]);
    *pod = serde_json::from_value(value).map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(())
}

/// The ovn-central Deployment of a standalone sandbox, shaped so the pod its ReplicaSet makes
/// in place of a deleted one is what the sandbox's own pod is: on the first node, its
/// `/var/run/ovn` and `/etc/ovn` the one member's files (`dir`), its container the leader checker
/// (see [`run_leader_checker`]), and without the exec probes the sandbox's kubelet cannot run
/// (it is Ready once started). A raft sandbox keeps the manifest's template: which member a
/// replacement would be is not known.
fn standalone_central(deploy: Deployment, dir: &Path, node: &str) -> Result<Deployment> {
    let mut value = serde_json::to_value(deploy).map_err(|e| Error::Invalid(e.to_string()))?;
    let spec = &mut value["spec"]["template"]["spec"];
    spec["nodeSelector"] = json!({"kubernetes.io/hostname": node});
    if let Some(m) = spec.as_object_mut() {
        m.remove("affinity");
        m.remove("initContainers");
    }
    for v in spec["volumes"].as_array_mut().into_iter().flatten() {
        if matches!(v["name"].as_str(), Some("host-run-ovn" | "host-config-ovn")) {
            v["hostPath"] = json!({"path": dir});
        }
    }
    let mut pod: Pod = serde_json::from_value(json!({"spec": spec.clone()}))
        .map_err(|e| Error::Invalid(e.to_string()))?;
    run_leader_checker(&mut pod, "")?;
    let mut pod_spec = serde_json::to_value(pod.spec).map_err(|e| Error::Invalid(e.to_string()))?;
    if let Some(c) = pod_spec["containers"][0].as_object_mut() {
        c.remove("readinessProbe");
        c.remove("livenessProbe");
    }
    value["spec"]["template"]["spec"] = pod_spec;
    serde_json::from_value(value).map_err(|e| Error::Invalid(e.to_string()))
}

/// Waits until the leader checkers have labelled a pod leading NB and one leading SB (the
/// state `kubectl ko` and the ovn Services rely on), up to `deadline`.
pub async fn wait_for_leader_labels(
    client: &kube::Client,
    deadline: std::time::Duration,
) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let found = crate::probe::until(deadline, "ovn-central leader labels", || async {
        for label in ["ovn-nb-leader=true", "ovn-sb-leader=true"] {
            let list = pods
                .list(&kube::api::ListParams::default().labels(&format!("app=ovn-central,{label}")))
                .await
                .map_err(|e| e.to_string())?;
            if list.items.is_empty() {
                return Err(format!("no pod {label}"));
            }
        }
        Ok(())
    })
    .await;
    found.map_err(Error::Invalid)
}

/// Links under the names `ovs-appctl` looks for by default in `/var/run/openvswitch`
/// (`ovs-vswitchd.pid` and `ovs-vswitchd.<pid>.ctl` for the pid in it; the same for
/// `ovsdb-server`) and under upstream's log names (`ovs-vswitchd.log`, `ovsdb-server.log`) to
/// the node's files, so `ovs-appctl <command>` in the ovs-ovn pod reaches its vswitchd as in a
/// cluster. A control socket's link names the pid of the time the pods are made: a vswitchd its
/// monitor restarts later is reached with `-t /var/run/openvswitch/vswitchd.ctl`.
fn ovs_links(node_dir: &Path) -> Result<()> {
    let mut links = Vec::new();
    for (upstream, ours) in [("ovs-vswitchd", "vswitchd"), ("ovsdb-server", "ovsdb")] {
        let pidfile = node_dir.join(format!("{ours}.pid"));
        let pid = std::fs::read_to_string(&pidfile).map_err(|e| Error::io(&pidfile, e))?;
        links.push((format!("{upstream}.pid"), format!("{ours}.pid")));
        links.push((
            format!("{upstream}.{}.ctl", pid.trim()),
            format!("{ours}.ctl"),
        ));
        links.push((format!("{upstream}.log"), format!("{ours}.log")));
    }
    for (name, target) in links {
        let link = node_dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link).map_err(|e| Error::io(&link, e))?;
    }
    Ok(())
}

/// A Deployment of the manifests with `replicas`, and the ReplicaSet its controller would have
/// made for it; the pods labelled with the returned label set are adopted by that ReplicaSet.
fn deployment_with_replicaset(
    mut deploy: Deployment,
    replicas: i32,
) -> Result<(Deployment, ReplicaSet, BTreeMap<String, String>)> {
    let spec = deploy
        .spec
        .as_mut()
        .ok_or_else(|| Error::Invalid("a manifest Deployment without spec".into()))?;
    spec.replicas = Some(replicas);
    let template: PodTemplateSpec = spec.template.clone();
    let hash = pod_template_hash(&template, None);
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let mut rs_template = template;
    rs_template
        .metadata
        .get_or_insert_with(Default::default)
        .labels = Some(labels.clone());
    let mut selector = spec.selector.match_labels.clone().unwrap_or_default();
    selector.insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let name = deploy.metadata.name.clone().unwrap_or_default();
    let rs: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("{name}-{hash}"), "namespace": NAMESPACE, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": selector}, "template": rs_template},
    }))
    .map_err(|e| Error::Invalid(e.to_string()))?;
    Ok((deploy, rs, labels))
}

/// The label set a DaemonSet's first generation gives its pods.
fn daemon_set_labels(ds: &DaemonSet) -> BTreeMap<String, String> {
    let mut labels = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(POD_TEMPLATE_GENERATION.into(), "1".into());
    labels
}

fn typed<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::Invalid(format!("a manifest object: {e}")))
}

/// Creates the component pods of the sandbox in `state` (whose central runs `raft` or not),
/// the workloads that own them, and with `diagnose` the OVN Services and the pinger. The
/// kube-ovn-controller Deployment carries the flags the sandbox's controller runs with
/// (`--ovn-nb-addr`, `controller_args`), so tools that read them (`kubectl ko diagnose
/// drift`) see that controller.
pub async fn register(
    client: &kube::Client,
    state: &SandboxState,
    raft: bool,
    diagnose: bool,
    controller_args: &[String],
) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let central_dir = central::dir(&state.run_dir);
    let first_node = state
        .nodes
        .first()
        .map(|n| n.name.clone())
        .ok_or_else(|| Error::Invalid("a sandbox without nodes".into()))?;
    let members: Vec<String> = if raft {
        (1..=central::RAFT_MEMBERS).map(|i| i.to_string()).collect()
    } else {
        vec![String::new()]
    };
    let flows = workloads::Workloads::from_upstream_invocations().map_err(Error::Invalid)?;
    let mut central = workloads::ovn_central();
    if !raft {
        central = standalone_central(central, &central_dir.join("pod-0"), &first_node)?;
    }
    let (central_deploy, central_rs, central_labels) =
        deployment_with_replicaset(central, members.len() as i32)?;
    let mut controller = flows.controller().map_err(Error::Invalid)?;
    if let Some(c) = controller
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .and_then(|s| s.containers.first_mut())
    {
        let mut args = vec![
            "/kube-ovn/start-controller.sh".to_string(),
            format!("--ovn-nb-addr={}", state.central.nb),
            "--pprof-port=0".to_string(),
        ];
        args.extend(controller_args.iter().cloned());
        c.args = Some(args);
    }
    let (controller_deploy, controller_rs, controller_labels) =
        deployment_with_replicaset(controller, 1)?;
    let ovs_ds = workloads::ovs_ovn();
    let cni_ds = flows.cni().map_err(Error::Invalid)?;
    let mut made: Vec<Pod> = Vec::new();
    // Every member's pod is on the first node: its address is each pod's, so in a raft
    // sandbox `--remoteAddresses` names only that address, which the checker leaves out as its
    // own (raft mode, no peers to ask).
    let remote_addresses = if raft {
        state.nodes[0].ip.to_string()
    } else {
        String::new()
    };
    for (i, m) in members.iter().enumerate() {
        let dir: PathBuf = central_dir.join(format!("pod-{i}"));
        link_dir(&dir, &central_links(&central_dir, m)?, &central_dir)?;
        let mut pod = host_pod(
            &format!("ovn-central-{i}"),
            &first_node,
            json!(central_labels),
            "ovn-central",
            &[("/var/run/ovn", &dir), ("/etc/ovn", &dir)],
        );
        run_leader_checker(&mut pod, &remote_addresses)?;
        made.push(pod);
    }
    made.push(host_pod(
        "kube-ovn-controller-0",
        &first_node,
        json!(controller_labels),
        "kube-ovn-controller",
        &[],
    ));
    for n in &state.nodes {
        ovs_links(&n.dir)?;
        made.push(host_pod(
            &format!("ovs-ovn-{}", n.name),
            &n.name,
            json!(daemon_set_labels(&ovs_ds)),
            "openvswitch",
            &[
                ("/var/run/openvswitch", &n.dir),
                ("/var/run/ovn", &n.dir),
                ("/var/log/openvswitch", &n.dir),
                ("/var/log/ovn", &n.dir),
            ],
        ));
        made.push(host_pod(
            &format!("kube-ovn-cni-{}", n.name),
            &n.name,
            json!(daemon_set_labels(&cni_ds)),
            "cni-server",
            &[
                ("/etc/cni/net.d", &n.cni_conf_dir()),
                ("/var/log/kube-ovn", &n.dir),
            ],
        ));
    }
    for p in made {
        pods.create(&PostParams::default(), &p).await?;
    }
    let params = PostParams::default();
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), NAMESPACE);
    let deploy_api: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    for (deploy, rs) in [
        (central_deploy, central_rs),
        (controller_deploy, controller_rs),
    ] {
        rs_api.create(&params, &rs).await?;
        deploy_api.create(&params, &deploy).await?;
    }
    let ds_api: Api<DaemonSet> = Api::namespaced(client.clone(), NAMESPACE);
    for ds in [ovs_ds, cni_ds] {
        ds_api.create(&params, &ds).await?;
    }
    if diagnose {
        let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
        for svc in workloads::ovn_services().map_err(Error::Invalid)? {
            services.create(&params, &typed(svc)?).await?;
        }
        for object in workloads::pinger().map_err(Error::Invalid)? {
            match object["kind"].as_str() {
                Some("Service") => {
                    services.create(&params, &typed(object)?).await?;
                }
                Some("DaemonSet") => {
                    ds_api.create(&params, &typed(object)?).await?;
                }
                other => {
                    return Err(Error::Invalid(format!(
                        "unexpected {other:?} among the pinger's manifests"
                    )))
                }
            }
        }
    }
    Ok(())
}
