//! The machine-level plumbing a sandbox needs: running host tools with argument vectors (never a
//! shell string), network namespaces, and daemons tracked by pidfile so that a later `down`
//! — even from another process, even after a crash — can find and stop them.
//!
//! The sandbox plays the role of the machines and images a real cluster runs on, so it uses the
//! same host tools an operator would (`ip`, `ovs-vsctl`, `ovsdb-tool`); product code never does.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Runs `program args…` to completion and returns its stdout; a non-zero exit becomes an error
/// carrying the command line and its stderr.
pub fn run<I, S>(program: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args);
    run_command(&mut cmd)
}

/// [`run`] for a prepared [`Command`] (extra environment, working directory).
pub fn run_command(cmd: &mut Command) -> Result<String> {
    let line = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Error::Command {
            command: line.clone(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: line,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Path of a named network namespace, as `ip netns` and CNI's `CNI_NETNS` use it.
pub fn netns_path(name: &str) -> String {
    format!("/run/netns/{name}")
}

/// Creates a named network namespace with its loopback up.
pub fn netns_add(name: &str) -> Result<()> {
    run("ip", ["netns", "add", name])?;
    run("ip", ["-n", name, "link", "set", "lo", "up"])?;
    Ok(())
}

/// Deletes a named network namespace; one that is already gone is not an error.
pub fn netns_del(name: &str) -> Result<()> {
    if !Path::new(&netns_path(name)).exists() {
        return Ok(());
    }
    run("ip", ["netns", "del", name]).map(|_| ())
}

/// Every named network namespace on the machine.
pub fn netns_list() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A [`Command`] that runs `program` inside the named namespace (`ip netns exec` also gives it
/// the namespace's own `/sys`, which tools reading interface state rely on).
pub fn in_netns(netns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns]).arg(program);
    cmd
}

/// Reads the pid an OVS/OVN daemon wrote with `--pidfile`.
pub fn read_pidfile(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether a process exists (and is not a zombie we could reap).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Sends `signal` (by number) to `pid`.
pub fn signal(pid: i32, signal: i32) {
    // kill(1) takes the number directly; a process that is already gone is fine.
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Stops a process: SIGTERM, then SIGKILL if it is still there after `grace`. Returns once it is
/// gone (or after `grace` more if even SIGKILL did not take, which only a stuck kernel does).
pub fn stop_pid(pid: i32, grace: Duration) {
    if !alive(pid) {
        return;
    }
    signal(pid, 15);
    if wait_for(grace, || !alive(pid)) {
        return;
    }
    signal(pid, 9);
    wait_for(grace, || !alive(pid));
}

/// Kills the daemon of a pidfile with SIGKILL (a crash: no cleanup) and returns once it is
/// gone, so a new one can take its pidfile and sockets.
pub fn kill_pidfile(path: &Path) -> Result<()> {
    let pid = read_pidfile(path)
        .ok_or_else(|| Error::Invalid(format!("no pid in {}", path.display())))?;
    signal(pid, 9);
    if !wait_for(Duration::from_secs(10), || !alive(pid)) {
        return Err(Error::Timeout {
            what: format!("pid {pid} of {} to exit after SIGKILL", path.display()),
            after: Duration::from_secs(10),
        });
    }
    // OVS daemons refuse to start while another process holds the pidfile's lock ("already
    // running"), so a restart waits for the lock itself, not only for the pid it names.
    let mut holder = None;
    if wait_for(Duration::from_secs(10), || {
        holder = pidfile_lock_holder(path);
        holder.is_none()
    }) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{} is still locked by pid {:?} after pid {pid} exited",
            path.display(),
            holder
        )))
    }
}

/// The process holding the write lock OVS daemons take on their pidfile, if any.
pub fn pidfile_lock_holder(path: &Path) -> Option<i32> {
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: flock is plain data; zeroed is a valid value before the fields are set.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: F_GETLK on an open descriptor with a valid flock to fill in.
    let rc = unsafe {
        libc::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            libc::F_GETLK,
            &mut lock,
        )
    };
    (rc == 0 && lock.l_type != libc::F_UNLCK as libc::c_short).then_some(lock.l_pid)
}

/// Polls `cond` until it holds or `deadline` passes; returns whether it held.
pub fn wait_for(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// The daemons a sandbox runs; only these are ever considered strays of a sandbox, so a shell or
/// an editor that merely mentions the run directory is never touched.
const SANDBOX_DAEMONS: &[&str] = &[
    "ovsdb-server",
    "ovs-vswitchd",
    "ovn-controller",
    "ovn-northd",
    "ovn-ic",
    "kube-ovn-sandbox",
];

fn all_pids() -> Vec<i32> {
    let own = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|&pid| pid != own && alive(pid))
                .collect()
        })
        .unwrap_or_default()
}

fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Sandbox daemons (by program name) whose command line mentions `needle`, e.g. a run directory:
/// how a teardown proves it left nothing running.
pub fn daemons_mentioning(needle: &str) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| {
            let args = cmdline(pid);
            let program = args
                .first()
                .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
                .unwrap_or_default();
            // Of our own binary only the supervisor counts, never a `down` or `status` run.
            let ours = program != "kube-ovn-sandbox" || args.iter().any(|a| a == "serve");
            SANDBOX_DAEMONS.contains(&program.as_str())
                && ours
                && args.iter().any(|a| a.contains(needle))
        })
        .collect()
}

/// Identity of a network namespace (its nsfs inode), as `/proc/PID/ns/net` links show it.
pub fn netns_id(name: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(netns_path(name)).ok()?.ino();
    Some(format!("net:[{ino}]"))
}

/// Processes living in any of the given network namespaces (by [`netns_id`]): whatever still
/// runs inside a sandbox's nodes and pods, whoever started it.
pub fn pids_in_netns(ids: &[String]) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .map(|l| ids.iter().any(|id| l.as_os_str() == id.as_str()))
                .unwrap_or(false)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_command_reports_its_line_and_stderr() {
        let err = run("sh", ["-c", "echo nope >&2; exit 3"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c"), "{msg}");
        assert!(msg.contains("nope"), "{msg}");
    }

    #[test]
    fn own_process_is_alive_and_a_bogus_pid_is_not() {
        assert!(alive(std::process::id() as i32));
        assert!(!alive(i32::MAX));
    }
}
