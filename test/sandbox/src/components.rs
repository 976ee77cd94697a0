//! The component pods of a Kube-OVN install, as Pod objects for what the sandbox runs as
//! processes: `ovn-central-<n>` (one per database member, upstream's `app=ovn-central` and
//! `ovn-nb-leader`/`ovn-sb-leader`/`ovn-northd-leader` labels) and, per node, `ovs-ovn-<node>`
//! (`app=ovs`) and `kube-ovn-cni-<node>` (`app=kube-ovn-cni`), all hostNetwork. Their
//! `hostPath` volumes put the sandbox's sockets and database files at upstream's paths
//! (`/var/run/ovn/ovnnb_db.ctl`, `/etc/ovn/ovnnb_db.db`, `/var/run/openvswitch/db.sock`…)
//! for `kubectl exec`, so `kubectl ko` works here as in a cluster. The leader labels are set
//! once, from the leadership when the pods are made (upstream's leader checker moves them).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::error::{Error, Result};
use crate::{central, sys, SandboxState};

/// The namespace the component pods live in.
pub const NAMESPACE: &str = "kube-system";
/// The image the pods name (nothing pulls it: the sandbox runs the binaries it built).
pub const IMAGE: &str = "docker.io/kubeovn/kube-ovn:sandbox";

/// Upstream's file names in `/var/run/ovn` and `/etc/ovn`, and the sandbox file each is.
fn central_links(member: &str) -> [(String, String); 6] {
    [
        ("ovnnb_db.sock".into(), format!("nb{member}.sock")),
        ("ovnnb_db.ctl".into(), format!("nb{member}.ctl")),
        ("ovnnb_db.db".into(), format!("nb{member}.db")),
        ("ovnsb_db.sock".into(), format!("sb{member}.sock")),
        ("ovnsb_db.ctl".into(), format!("sb{member}.ctl")),
        ("ovnsb_db.db".into(), format!("sb{member}.db")),
    ]
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

/// The member of `db` (`nb`/`sb`) leading its raft cluster now, if any.
fn leader(central_dir: &Path, db: &str, schema: &str, members: usize) -> Option<String> {
    (1..=members).map(|i| i.to_string()).find(|m| {
        let ctl = central_dir.join(format!("{db}{m}.ctl"));
        sys::run(
            "ovs-appctl",
            ["-t", &ctl.to_string_lossy(), "cluster/status", schema],
        )
        .is_ok_and(|s| s.contains("Role: leader"))
    })
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

/// Links under the names `ovs-appctl` looks for by default in `/var/run/openvswitch`
/// (`ovs-vswitchd.pid`, and `ovs-vswitchd.<pid>.ctl` for the pid in it) to the node's
/// vswitchd files, so `ovs-appctl <command>` in the ovs-ovn pod reaches its vswitchd as in a
/// cluster. The control socket's link names the pid of the time the pods are made: a
/// vswitchd its monitor restarts later is reached with `-t /var/run/openvswitch/vswitchd.ctl`.
fn vswitchd_links(node_dir: &Path) -> Result<()> {
    let pidfile = node_dir.join("vswitchd.pid");
    let pid = std::fs::read_to_string(&pidfile).map_err(|e| Error::io(&pidfile, e))?;
    let links = [
        ("ovs-vswitchd.pid".to_string(), "vswitchd.pid".to_string()),
        (
            format!("ovs-vswitchd.{}.ctl", pid.trim()),
            "vswitchd.ctl".to_string(),
        ),
    ];
    for (name, target) in links {
        let link = node_dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link).map_err(|e| Error::io(&link, e))?;
    }
    Ok(())
}

/// Creates the component pods of the sandbox in `state` (whose central runs `raft` or not).
pub async fn register(client: &kube::Client, state: &SandboxState, raft: bool) -> Result<()> {
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
    let nb_leader = leader(&central_dir, "nb", "OVN_Northbound", members.len());
    let sb_leader = leader(&central_dir, "sb", "OVN_Southbound", members.len());
    let mut made: Vec<Pod> = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let dir: PathBuf = central_dir.join(format!("pod-{i}"));
        link_dir(&dir, &central_links(m), &central_dir)?;
        let leads = |l: &Option<String>| !raft || l.as_deref() == Some(m.as_str());
        let mut labels = json!({"app": "ovn-central", "component": "network", "type": "infra"});
        if leads(&nb_leader) {
            labels["ovn-nb-leader"] = json!("true");
            labels["ovn-northd-leader"] = json!("true");
        }
        if leads(&sb_leader) {
            labels["ovn-sb-leader"] = json!("true");
        }
        made.push(host_pod(
            &format!("ovn-central-{i}"),
            &first_node,
            labels,
            "ovn-central",
            &[("/var/run/ovn", &dir), ("/etc/ovn", &dir)],
        ));
    }
    for n in &state.nodes {
        vswitchd_links(&n.dir)?;
        made.push(host_pod(
            &format!("ovs-ovn-{}", n.name),
            &n.name,
            json!({"app": "ovs", "component": "network", "type": "infra"}),
            "openvswitch",
            &[("/var/run/openvswitch", &n.dir)],
        ));
        made.push(host_pod(
            &format!("kube-ovn-cni-{}", n.name),
            &n.name,
            json!({"app": "kube-ovn-cni", "component": "network", "type": "infra"}),
            "cni-server",
            &[],
        ));
    }
    for p in made {
        pods.create(&PostParams::default(), &p).await?;
    }
    Ok(())
}
