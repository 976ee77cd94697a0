//! The faults: `kill -9` of a process found by its pidfile, and the restart of what was killed
//! exactly as the sandbox started it (same database file, socket, flags and pidfile), so the
//! sandbox's teardown finds the replacement too.

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use kube_ovn_sandbox::central;
use kube_ovn_sandbox::kubeovn::{self, KubeOvnBuild};
use kube_ovn_sandbox::node::NodeInfo;
use kube_ovn_sandbox::sys;
use kube_ovn_sandbox::SandboxState;

use crate::Res;

/// How long a SIGKILLed process may take to disappear.
const DEATH_LIMIT: Duration = Duration::from_secs(10);

/// Sends SIGKILL to the process of `pidfile` and waits until it is gone (a zombie of ours
/// counts as gone: it no longer serves anything). Returns the pid killed.
pub fn kill9(pidfile: &Path) -> Res<i32> {
    let pid =
        sys::read_pidfile(pidfile).ok_or_else(|| format!("no pid in {}", pidfile.display()))?;
    if !sys::alive(pid) {
        return Err(format!(
            "{} names pid {pid}, which is not running",
            pidfile.display()
        )
        .into());
    }
    sys::signal(pid, libc::SIGKILL);
    if !sys::wait_for(DEATH_LIMIT, || !sys::alive(pid)) {
        return Err(format!("pid {pid} survived SIGKILL for {DEATH_LIMIT:?}").into());
    }
    Ok(pid)
}

/// The NB ovsdb-server to kill: the standalone one, or in a raft sandbox the current leader
/// (`nb`, `nb2`…), with its pidfile.
pub fn nb_target(st: &SandboxState) -> Res<(String, std::path::PathBuf)> {
    let name = if st.central.nb.contains(',') {
        central::nb_leader(&st.run_dir).ok_or("the NB raft cluster has no leader")?
    } else {
        "nb".to_string()
    };
    let pidfile = central::dir(&st.run_dir).join(format!("{name}.pid"));
    Ok((name, pidfile))
}

/// Restarts the NB ovsdb-server `name` on the database file the killed one used; returns once
/// it serves again (`--detach` returns when the server is ready).
pub fn restart_nb(st: &SandboxState, name: &str) -> Res {
    central::restart_server(&st.run_dir, name)?;
    Ok(())
}

/// The controller's pidfile.
pub fn controller_pidfile(st: &SandboxState) -> std::path::PathBuf {
    st.run_dir.join("controller.pid")
}

/// Starts a new controller the way the sandbox did (same identity, so it takes its Lease back at
/// once).
pub fn restart_controller(build: &KubeOvnBuild, st: &SandboxState, killed: i32) -> Res<Child> {
    keep_log(&st.run_dir.join("controller.log"), killed);
    Ok(kubeovn::start_controller(
        build,
        &st.run_dir,
        &st.controller_kubeconfig(),
        &st.central.nb,
    )?)
}

/// A node daemon's pidfile.
pub fn daemon_pidfile(node: &NodeInfo) -> std::path::PathBuf {
    node.dir.join("daemon.pid")
}

/// Starts a new daemon on `node` and waits until it serves the CNI shim again.
pub fn restart_daemon(
    build: &KubeOvnBuild,
    node: &NodeInfo,
    killed: i32,
    limit: Duration,
) -> Res<Child> {
    let log = node.dir.join("daemon.log");
    keep_log(&log, killed);
    let child = kubeovn::start_node_agent(build, node)?;
    let serving = sys::wait_for(limit, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("serving the CNI shim"))
    });
    if !serving {
        return Err(format!(
            "restarted daemon on {} not serving within {limit:?}",
            node.name
        )
        .into());
    }
    Ok(child)
}

/// Moves a killed process's log aside (`<log>.<pid>`): the restart truncates the log, and what
/// the killed process did last is what explains a failed check.
fn keep_log(log: &Path, killed: i32) {
    let _ = std::fs::rename(log, log.with_extension(format!("log.{killed}")));
}

/// Processes this run started; killed and reaped when dropped, like the sandbox's own.
#[derive(Default)]
pub struct Restarted(Vec<Child>);

impl Restarted {
    /// Takes ownership of a restarted process.
    pub fn push(&mut self, child: Child) {
        self.0.push(child);
    }
}

impl Drop for Restarted {
    fn drop(&mut self) {
        for c in &mut self.0 {
            sys::stop_pid(c.id() as i32, Duration::from_secs(5));
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Copies every log of a failed run (`*.log` and the kept `*.log.<pid>`, with their relative
/// paths) out of the run directory, which the sandbox's teardown removes, into
/// `/var/tmp/kube-ovn-chaos-logs.<pid>`; returns that directory.
pub fn keep_logs(run_dir: &Path) -> Res<std::path::PathBuf> {
    let kept = std::path::PathBuf::from(format!(
        "/var/tmp/kube-ovn-chaos-logs.{}",
        std::process::id()
    ));
    let mut dirs = vec![run_dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".log") || n.contains(".log."))
            {
                let to = kept.join(path.strip_prefix(run_dir)?);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::copy(&path, &to)?;
            }
        }
    }
    Ok(kept)
}
