//! The kubelet stand-ins' side of `pods/exec`: the fixture asks for each exec's process and
//! gets the user's argv, run directly (no shell), entering the pod's network namespace (the
//! node's for hostNetwork pods) before it executes, so `kubectl exec POD -- ip addr` shows
//! the pod's interfaces as it would in a container. As in a container, the process gets the
//! container's `env` values and its `hostPath` volumes at their `mountPath`s (in a mount
//! namespace of its own, over a private tmpfs at `/run` when a mount point is under it), which
//! is how the sandbox's component pods (ovn-central, ovs-ovn) show `kubectl exec` and
//! `kubectl ko` their sockets at upstream's paths.
//!
//! What a node's filesystem and the kube-ovn image hold is the sandbox's: a `hostPath` of OVS's
//! and OVN's run and log directories (`/var/run/openvswitch`, `/var/log/ovn`, ...) is the node's
//! directory in the sandbox (each node has its own OVS and ovn-controller there), and in a
//! container of the kube-ovn image, a command word `/kube-ovn/<file>` is the build's binary or
//! `dist/images` script of that name (the image's `/kube-ovn` holds both).
//! Environment variables the downward API fills (`valueFrom.fieldRef`: the pod's name,
//! namespace, node, host and pod IPs, service account) are resolved from the pod, as kubelet
//! does when it starts the container; a pod whose service account the sandbox has an identity
//! for gets `KUBECONFIG` naming that account's credentials and the API's address as seen from
//! the pod (what kubelet's token mount and service environment give a real container).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kube_apiserver_fixture::exec::{ExecHandler, ExecTarget};

use crate::{kubelet, node, sys};

/// Where a sandbox's execs find what the host and the image would give them.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The network namespace prefix.
    pub prefix: String,
    /// The run directory (a node's directory is `<run_dir>/<node>`).
    pub run_dir: PathBuf,
    /// The directory of the build's binaries (the image's `/kube-ovn`), if kube-ovn runs.
    pub binaries: Option<PathBuf>,
    /// The image's scripts (`dist/images`), if kube-ovn runs.
    pub scripts: Option<PathBuf>,
}

/// The exec handler of a sandbox laid out as `layout`.
pub fn handler(layout: Layout) -> ExecHandler {
    ExecHandler::new(move |target| command_for(&layout, target))
}

/// The kubeconfig of service account `sa` for pods (`host_network`: for host-network pods,
/// which reach the API on the node's relay rather than through the `kubernetes` Service).
pub fn service_account_kubeconfig(run_dir: &Path, sa: &str, host_network: bool) -> PathBuf {
    let suffix = if host_network { ".host" } else { "" };
    run_dir
        .join("serviceaccounts")
        .join(format!("{sa}{suffix}.kubeconfig"))
}

/// `KUBECONFIG` for the pod's service account, when the sandbox has its credentials.
fn service_account_env(layout: &Layout, target: &ExecTarget) -> Option<(String, String)> {
    let spec = &target.pod["spec"];
    let sa = spec["serviceAccountName"].as_str()?;
    let host_network = spec["hostNetwork"].as_bool() == Some(true);
    let path = service_account_kubeconfig(&layout.run_dir, sa, host_network);
    path.is_file()
        .then(|| ("KUBECONFIG".to_string(), path.display().to_string()))
}

/// The node-local host paths: OVS's and OVN's run, configuration and log directories and
/// kube-ovn's logs, which are the node's own directory in the sandbox.
const NODE_LOCAL: &[&str] = &[
    "/var/run/openvswitch",
    "/run/openvswitch",
    "/var/run/ovn",
    "/run/ovn",
    "/etc/origin/openvswitch",
    "/var/log/openvswitch",
    "/var/log/ovn",
    "/var/log/kube-ovn",
];

/// What `host` (a hostPath of a pod on `node`) is in the sandbox.
fn node_path(layout: &Layout, node: Option<&str>, host: &str) -> String {
    match node {
        Some(n) if NODE_LOCAL.contains(&host.trim_end_matches('/')) => {
            layout.run_dir.join(n).display().to_string()
        }
        _ => host.to_string(),
    }
}

/// What a command word names in the container: in the kube-ovn image, `/kube-ovn/<name>` is the
/// build's binary of that name, or else the `dist/images` script, when the build has it.
fn image_path(layout: &Layout, target: &ExecTarget, word: &str) -> Option<PathBuf> {
    let image = container(target)
        .and_then(|c| c["image"].as_str())
        .unwrap_or_default();
    // Any registry and tag: the image's name is `kube-ovn`.
    let last = image.rsplit('/').next().unwrap_or_default();
    let in_image = image.contains('/') && last.split([':', '@']).next() == Some("kube-ovn");
    let name = word.strip_prefix("/kube-ovn/")?;
    if !in_image || name.is_empty() || name.contains('/') {
        return None;
    }
    [&layout.binaries, &layout.scripts]
        .into_iter()
        .flatten()
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The command as the container sees it (see [`image_path`]).
fn command_of(layout: &Layout, target: &ExecTarget) -> Vec<std::ffi::OsString> {
    target
        .command
        .iter()
        .map(|w| match image_path(layout, target, w) {
            Some(p) => p.into_os_string(),
            None => w.into(),
        })
        .collect()
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

/// The container's `env`: literal values, and the downward API's pod fields.
fn env_of(target: &ExecTarget) -> Vec<(String, String)> {
    let Some(c) = container(target) else {
        return Vec::new();
    };
    c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e["name"].as_str()?.to_string();
            if let Some(v) = e["value"].as_str() {
                return Some((name, v.to_string()));
            }
            let field = e["valueFrom"]["fieldRef"]["fieldPath"].as_str()?;
            Some((name, field_of(&target.pod, &target.namespace, field)?))
        })
        .collect()
}

/// A downward-API field of `pod`, as kubelet renders it.
fn field_of(pod: &serde_json::Value, namespace: &str, field: &str) -> Option<String> {
    let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
    match field {
        "metadata.name" => s(&pod["metadata"]["name"]),
        "metadata.namespace" => Some(namespace.to_string()),
        "metadata.uid" => s(&pod["metadata"]["uid"]),
        "spec.nodeName" => s(&pod["spec"]["nodeName"]),
        "spec.serviceAccountName" => s(&pod["spec"]["serviceAccountName"]),
        "status.hostIP" => s(&pod["status"]["hostIP"]),
        "status.podIP" => s(&pod["status"]["podIP"]),
        "status.podIPs" => Some(
            pod["status"]["podIPs"]
                .as_array()?
                .iter()
                .filter_map(|i| i["ip"].as_str())
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => None,
    }
}

/// (host path, mount path) of the container's `hostPath` volume mounts, node-local paths
/// being the node's directory (see [`node_path`]).
fn mounts_of(layout: &Layout, target: &ExecTarget) -> Result<Vec<(String, String)>, String> {
    let node = target.pod["spec"]["nodeName"].as_str();
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
        if let Some(host) = host.map(|h| node_path(layout, node, h)) {
            let host = host.as_str();
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
        if !Path::new(host).exists() {
            return Err(format!(
                "hostPath {host} (mounted at {at}) does not exist on this node"
            ));
        }
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
        } else if !Path::new(at).exists() {
            // The host is the container's root filesystem, and nothing is created on it: a
            // mount point it lacks (a log directory of a component the host never ran) is
            // left out, as if the image had no such directory.
            continue;
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

/// The process of `target`'s command as it runs in its container: in the pod's (or, for a
/// host-network pod, the node's) network namespace, with the container's environment and mounts.
pub fn command_for(layout: &Layout, target: &ExecTarget) -> Result<Command, String> {
    let netns = netns_of(&layout.prefix, target)?;
    let path = sys::netns_path(&netns);
    // Opened here (close-on-exec) so the child only has to switch to it.
    let namespace = File::open(&path).map_err(|e| {
        format!("the pod's network namespace {path} is not there (is the pod running?): {e}")
    })?;
    let mounts = mounts_of(layout, target)?;
    let plan = (!mounts.is_empty())
        .then(|| mount_plan(&mounts))
        .transpose()?;
    let argv = command_of(layout, target);
    let (program, args) = argv.split_first().ok_or("the command is empty")?;
    let mut command = Command::new(program);
    let env = env_of(target);
    if !env.iter().any(|(k, _)| k == "KUBECONFIG") {
        command.envs(service_account_env(layout, target));
    }
    command.args(args).envs(env);
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

    fn layout() -> Layout {
        Layout {
            prefix: "kos-".into(),
            run_dir: "/tmp/kos".into(),
            binaries: Some(
                std::env::current_exe()
                    .unwrap()
                    .parent()
                    .unwrap()
                    .to_path_buf(),
            ),
            scripts: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../dist/images")),
        }
    }

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
        let mounts = mounts_of(&layout(), &t).unwrap();
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
        let plan = mount_plan(&[("/tmp".into(), mounts[0].1.clone())]).unwrap();
        assert!(plan.tmpfs_run);
        assert_eq!(plan.dirs, vec![CString::new("/run/ovn").unwrap()]);
        assert!(mount_plan(&[("/tmp".into(), "/no/such/dir".into())])
            .unwrap()
            .binds
            .is_empty());
        assert!(matches!(
            mount_plan(&[("/no/such/host/dir".into(), "/tmp".into())]),
            Err(e) if e.contains("does not exist")
        ));
        let under = json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/etc/ovn"}]}],
            "volumes": [{"name": "v", "hostPath": {"path": "/run/x"}}]}});
        assert!(mounts_of(&layout(), &target(under)).is_err());
    }

    #[test]
    fn node_local_paths_downward_fields_and_image_binaries_are_the_sandboxs() {
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_str().unwrap().to_string();
        let pod = json!({"metadata": {"name": "kube-ovn-pinger-x1"},
            "spec": {"nodeName": "node2", "serviceAccountName": "kube-ovn-app",
                "containers": [{"name": "c", "image": "docker.io/kubeovn/kube-ovn:v1.15.0",
                    "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                            {"name": "POD_IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
                            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                            {"name": "GONE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}}],
                    "volumeMounts": [{"name": "ovs", "mountPath": "/var/run/openvswitch"},
                                     {"name": "log", "mountPath": "/var/log/ovn"}]}],
                "volumes": [{"name": "ovs", "hostPath": {"path": "/var/run/openvswitch"}},
                            {"name": "log", "hostPath": {"path": "/var/log/ovn/"}}]},
            "status": {"podIPs": [{"ip": "10.16.0.9"}, {"ip": "fd00::9"}]}});
        let t = target(pod);
        assert_eq!(
            env_of(&t),
            vec![
                ("POD_NAME".to_string(), "kube-ovn-pinger-x1".to_string()),
                ("NODE_NAME".to_string(), "node2".to_string()),
                ("POD_IPS".to_string(), "10.16.0.9,fd00::9".to_string()),
                ("NS".to_string(), "ns".to_string()),
            ]
        );
        assert_eq!(
            mounts_of(&layout(), &t).unwrap(),
            vec![
                (
                    "/tmp/kos/node2".to_string(),
                    "/var/run/openvswitch".to_string()
                ),
                ("/tmp/kos/node2".to_string(), "/var/log/ovn".to_string()),
            ]
        );
        let mut t = t;
        t.command = vec![
            format!("/kube-ovn/{name}"),
            "/kube-ovn/env-check.sh".into(),
            "/kube-ovn/no-such-file".into(),
            "--flag=/kube-ovn/x".into(),
        ];
        let scripts = layout().scripts.unwrap();
        assert_eq!(
            command_of(&layout(), &t),
            vec![
                exe.into_os_string(),
                scripts.join("env-check.sh").into_os_string(),
                "/kube-ovn/no-such-file".into(),
                "--flag=/kube-ovn/x".into(),
            ]
        );
        let mut other = t.clone();
        other.pod["spec"]["containers"][0]["image"] = json!("busybox");
        assert_eq!(
            command_of(&layout(), &other)[0],
            format!("/kube-ovn/{name}").as_str()
        );
    }
}
