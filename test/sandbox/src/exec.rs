//! The kubelet stand-ins' side of `pods/exec`: the fixture asks for each exec's process and
//! gets the user's argv, run directly (no shell), entering the pod's network namespace (the
//! node's for hostNetwork pods) before it executes, so `kubectl exec POD -- ip addr` shows
//! the pod's interfaces as it would in a container.

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

fn prepare(prefix: &str, target: &ExecTarget) -> Result<Command, String> {
    let netns = netns_of(prefix, target)?;
    let path = sys::netns_path(&netns);
    // Opened here (close-on-exec) so the child only has to switch to it.
    let namespace = File::open(&path).map_err(|e| {
        format!("the pod's network namespace {path} is not there (is the pod running?): {e}")
    })?;
    let (program, args) = target.command.split_first().ok_or("the command is empty")?;
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: setns is async-signal-safe and only changes the forked child's namespace; the
    // descriptor stays open in the closure until the child executes.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
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
}
