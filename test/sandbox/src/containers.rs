//! The containers the sandbox runs for real. Pods are network namespaces here and their
//! containers do not exist, with one exception: a container of the kube-ovn image whose command
//! is one of [`RUN`] is started as kubelet would start it, once the pod is wired — the build's
//! binary, in the pod's network namespace, with the container's arguments, environment
//! (downward-API fields resolved with the pod's addresses), `hostPath` mounts and service
//! account, exactly as `kubectl exec` runs commands there ([`crate::exec`]). It is restarted
//! with back-off when it exits (`restartPolicy: Always`) and killed when the pod stops, before
//! the pod's network is taken down. Its output goes to `<run_dir>/containers/<ns>_<pod>_<c>.log`.
//!
//! The other kube-ovn agents (lb-svc, the VPC NAT gateway) are not in [`RUN`]: their tests run
//! them beside their pods. Containers of upstream's test image (see [`test_image`]) run their
//! command too.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube_apiserver_fixture::exec::ExecTarget;
use serde_json::json;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::exec::{self, Layout};

/// The binaries whose containers run: kube-ovn-pinger, so its pods serve metrics, pass their
/// probes and answer the conn-check ports, as in a cluster; kube-ovn-leader-checker, so the
/// ovn-central pods carry the leader labels of their members.
pub const RUN: &[&str] = &["kube-ovn-pinger", "kube-ovn-leader-checker"];

const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A running container; dropping it kills the process and ends its supervision.
pub struct Container {
    task: JoinHandle<()>,
}

impl Drop for Container {
    fn drop(&mut self) {
        // The task owns the child with kill_on_drop: aborting it kills the process.
        self.task.abort();
    }
}

/// Where a container's output goes.
pub fn log_path(layout: &Layout, namespace: &str, pod: &str, container: &str) -> PathBuf {
    layout
        .run_dir
        .join("containers")
        .join(format!("{namespace}_{pod}_{container}.log"))
}

/// Starts the containers of `pod` that the sandbox runs (see [`RUN`]); `ips` are the pod's
/// addresses and `host_ip` its node's, for the downward API.
pub fn start(layout: &Layout, pod: &Pod, ips: &[String], host_ip: &str) -> Vec<Container> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut value = match serde_json::to_value(pod) {
        Ok(v) => v,
        Err(e) => {
            warn!("pod {namespace}/{name}: {e}");
            return Vec::new();
        }
    };
    // What the API shows once kubelet reported the sandbox: the container sees these.
    value["status"]["podIP"] = json!(ips.first());
    value["status"]["podIPs"] = json!(ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>());
    value["status"]["hostIP"] = json!(host_ip);
    let mut out = Vec::new();
    for c in &spec.containers {
        let mut command: Vec<String> = c.command.clone().unwrap_or_default();
        command.extend(c.args.clone().unwrap_or_default());
        let runs = command
            .first()
            .and_then(|p| p.strip_prefix("/kube-ovn/"))
            .is_some_and(|b| RUN.contains(&b))
            || (test_image(c.image.as_deref().unwrap_or_default()) && !command.is_empty());
        if !runs {
            continue;
        }
        let target = ExecTarget {
            namespace: namespace.clone(),
            pod: value.clone(),
            container: c.name.clone(),
            command,
        };
        let log = log_path(layout, &namespace, &name, &c.name);
        let layout = layout.clone();
        let what = format!("{namespace}/{name}/{}", c.name);
        out.push(Container {
            task: tokio::spawn(supervise(layout, target, log, what)),
        });
    }
    out
}

/// Whether `image` is upstream's test image (`kubeovn/test`, any registry and tag), whose
/// containers (`kubectl ko perf`'s servers and clients) run their command with the host's
/// tools: the host has what the image carries (qperf, iperf3, iperf).
pub fn test_image(image: &str) -> bool {
    let name = image.split(['@']).next().unwrap_or_default();
    let name = match name.rsplit_once(':') {
        Some((n, tag)) if !tag.contains('/') => n,
        _ => name,
    };
    name == "kubeovn/test" || name.ends_with("/kubeovn/test")
}

/// Kills a container's whole process group when dropped (a shell's background children too).
struct Group(Option<u32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill only sends a signal; a negative pid names the group the child leads.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

/// Runs the container's process, again after each exit, until aborted.
async fn supervise(layout: Layout, target: ExecTarget, log: PathBuf, what: String) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match spawn(&layout, &target, &log) {
            Ok(mut child) => {
                let _group = Group(child.id());
                info!("container {what} started");
                let status = child.wait().await;
                warn!("container {what} exited: {status:?}; restarting in {backoff:?}");
            }
            Err(e) => warn!("container {what}: {e}; retrying in {backoff:?}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn spawn(
    layout: &Layout,
    target: &ExecTarget,
    log: &PathBuf,
) -> Result<tokio::process::Child, String> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = exec::command_for(layout, target)?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err);
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true).process_group(0);
    cmd.spawn()
        .map_err(|e| format!("starting {:?}: {e}", target.command))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_image_is_known_by_name_from_any_registry() {
        assert!(test_image("docker.io/kubeovn/test:v1.13.0"));
        assert!(test_image("kubeovn/test"));
        assert!(test_image("registry:5000/kubeovn/test@sha256:ab"));
        assert!(!test_image("docker.io/kubeovn/kube-ovn:v1.13.0"));
        assert!(!test_image("docker.io/other/test:1"));
    }
}
