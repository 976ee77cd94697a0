//! The kubelet stand-ins' side of `pods/exec`: the fixture asks for each exec's process and
//! gets the user's argv, run directly (no shell), entering the pod's network namespace (the
//! node's for hostNetwork pods) before it executes, so `kubectl exec POD -- ip addr` shows
//! the pod's interfaces as it would in a container. As in a container, the process gets the
//! container's `env` values and its `hostPath` volumes at their `mountPath`s (in a mount
//! namespace of its own, over a private tmpfs at `/run` when a mount point is under it), which
//! is how the sandbox's component pods (ovn-central, ovs-ovn) show `kubectl exec` and
//! `kubectl ko` their sockets at upstream's paths.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use kube_apiserver_fixture::exec::{ExecHandler, ExecTarget};

use crate::{kubelet, node, sys};

/// The exec handler of a sandbox with `prefix`.
pub fn handler(prefix: String) -> ExecHandler {
    ExecHandler::new(move |target| prepare(&prefix, target))
}

/// The network namespace an exec of `target` runs in.
fn netns_of(prefix: &str, target: &ExecTarget) -> Result<String, String> {
    let spec = &target.pod["spec"];
    if spec["hostNetwork"].as_bool() == Some(true) {
        return match spec["nodeName"].as_str() {
            Some(node) if !node.is_empty() => Ok(node::node_netns(prefix, node)),
            _ => Err("the pod is not scheduled to a node".into()),
        };
    }
    let name = target.pod["metadata"]["name"]
        .as_str()
        .ok_or("the pod has no name")?;
    Ok(kubelet::pod_netns(prefix, &target.namespace, name))
}

/// The container `target` names (or the first), from the stored pod.
fn container(target: &ExecTarget) -> Option<&serde_json::Value> {
    let containers = target.pod["spec"]["containers"].as_array()?;
    containers
        .iter()
        .find(|c| c["name"].as_str() == Some(target.container.as_str()))
        .or_else(|| containers.first())
}

/// The container's literal `env` values.
fn env_of(target: &ExecTarget) -> Vec<(String, String)> {
    let Some(c) = container(target) else {
        return Vec::new();
    };
    c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// (host path, mount path) of the container's `hostPath` volume mounts.
fn mounts_of(target: &ExecTarget) -> Result<Vec<(String, String)>, String> {
    let Some(c) = container(target) else {
        return Ok(Vec::new());
    };
    let volumes = target.pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let (Some(name), Some(at)) = (m["name"].as_str(), m["mountPath"].as_str()) else {
            continue;
        };
        let host = volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .and_then(|v| v["hostPath"]["path"].as_str());
        if let Some(host) = host {
            if under_run(host) {
                return Err(format!(
                    "hostPath {host} is under /run, which exec covers with a private tmpfs"
                ));
            }
            out.push((host.to_string(), at.to_string()));
        }
    }
    Ok(out)
}

fn under_run(path: &str) -> bool {
    ["/run", "/var/run"]
        .iter()
        .any(|r| path == *r || path.starts_with(&format!("{r}/")))
}

/// What the child does before it executes, with every path made ready beforehand (the child
/// only makes system calls).
struct MountPlan {
    /// Whether a private tmpfs goes on `/run` first.
    tmpfs_run: bool,
    /// Directories to create (parents first) under that tmpfs.
    dirs: Vec<CString>,
    /// (source, target) bind mounts.
    binds: Vec<(CString, CString)>,
}

fn mount_plan(mounts: &[(String, String)]) -> Result<MountPlan, String> {
    let c = |s: &str| CString::new(s).map_err(|_| format!("path {s:?} holds a NUL"));
    let mut plan = MountPlan {
        tmpfs_run: false,
        dirs: Vec::new(),
        binds: Vec::new(),
    };
    for (host, at) in mounts {
        if under_run(at) {
            plan.tmpfs_run = true;
            let rest = at
                .trim_start_matches("/var")
                .trim_start_matches("/run")
                .trim_matches('/');
            let mut dir = String::from("/run");
            for part in rest.split('/').filter(|p| !p.is_empty()) {
                dir.push('/');
                dir.push_str(part);
                let d = c(&dir)?;
                if !plan.dirs.contains(&d) {
                    plan.dirs.push(d);
                }
            }
        } else if !std::path::Path::new(at).is_dir() {
            return Err(format!("mount point {at} does not exist on this host"));
        }
        plan.binds.push((c(host)?, c(at)?));
    }
    Ok(plan)
}

/// In the child: a private mount namespace with the plan's mounts.
fn apply(plan: &MountPlan) -> std::io::Result<()> {
    let check = |r: libc::c_int| {
        if r != 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: plain system calls on NUL-terminated paths prepared before the fork.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS))?;
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        if plan.tmpfs_run {
            check(libc::mount(
                c"tmpfs".as_ptr(),
                c"/run".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            ))?;
        }
        for d in &plan.dirs {
            if libc::mkdir(d.as_ptr(), 0o755) != 0
                && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        for (src, dst) in &plan.binds {
            check(libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ))?;
        }
    }
    Ok(())
}

fn prepare(prefix: &str, target: &ExecTarget) -> Result<Command, String> {
    let netns = netns_of(prefix, target)?;
    let path = sys::netns_path(&netns);
    // Opened here (close-on-exec) so the child only has to switch to it.
    let namespace = File::open(&path).map_err(|e| {
        format!("the pod's network namespace {path} is not there (is the pod running?): {e}")
    })?;
    let mounts = mounts_of(target)?;
    let plan = (!mounts.is_empty())
        .then(|| mount_plan(&mounts))
        .transpose()?;
    let (program, args) = target.command.split_first().ok_or("the command is empty")?;
    let mut command = Command::new(program);
    command.args(args).envs(env_of(target));
    // SAFETY: setns, unshare and mount are system calls that only change the forked child;
    // the descriptor and the paths stay alive in the closure until the child executes.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(plan) = &plan {
                apply(plan)?;
            }
            Ok(())
        });
    }
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(pod: serde_json::Value) -> ExecTarget {
        ExecTarget {
            namespace: "ns".into(),
            pod,
            container: "c".into(),
            command: vec!["ip".into(), "addr".into()],
        }
    }

    #[test]
    fn pods_run_in_their_namespace_and_host_network_pods_in_their_node() {
        let pod = json!({"metadata": {"name": "web"}, "spec": {"nodeName": "node1"}});
        assert_eq!(netns_of("kos-", &target(pod)).unwrap(), "kos-ns_web");
        let host = json!({"metadata": {"name": "agent"}, "spec": {"nodeName": "node1", "hostNetwork": true}});
        assert_eq!(netns_of("kos-", &target(host)).unwrap(), "kos-node1");
        let unscheduled = json!({"metadata": {"name": "a"}, "spec": {"hostNetwork": true}});
        assert!(netns_of("kos-", &target(unscheduled)).is_err());
    }

    #[test]
    fn env_and_host_path_mounts_come_from_the_container() {
        let pod = json!({"metadata": {"name": "ovn-central-0"}, "spec": {
            "containers": [{"name": "c", "env": [{"name": "A", "value": "1"},
                                                 {"name": "B", "valueFrom": {}}],
                "volumeMounts": [{"name": "run", "mountPath": "/var/run/ovn"},
                                 {"name": "conf", "mountPath": "/etc/ovn"},
                                 {"name": "empty", "mountPath": "/x"}]}],
            "volumes": [{"name": "run", "hostPath": {"path": "/tmp/kos/central/pod"}},
                        {"name": "conf", "hostPath": {"path": "/tmp/kos/central"}},
                        {"name": "empty", "emptyDir": {}}]}});
        let t = target(pod);
        assert_eq!(env_of(&t), vec![("A".to_string(), "1".to_string())]);
        let mounts = mounts_of(&t).unwrap();
        assert_eq!(
            mounts,
            vec![
                (
                    "/tmp/kos/central/pod".to_string(),
                    "/var/run/ovn".to_string()
                ),
                ("/tmp/kos/central".to_string(), "/etc/ovn".to_string())
            ]
        );
        let plan = mount_plan(&mounts[..1]).unwrap();
        assert!(plan.tmpfs_run);
        assert_eq!(plan.dirs, vec![CString::new("/run/ovn").unwrap()]);
        assert!(mount_plan(&[("/a".into(), "/no/such/dir".into())]).is_err());
        let under = json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/etc/ovn"}]}],
            "volumes": [{"name": "v", "hostPath": {"path": "/run/x"}}]}});
        assert!(mounts_of(&target(under)).is_err());
    }
}
