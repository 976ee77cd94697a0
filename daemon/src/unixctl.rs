//! OVS's `unixctl` control channel (what `ovs-appctl -t <target> <command>` speaks): JSON-RPC 1.0
//! over the daemon's `<name>.<pid>.ctl` socket, with the command as the method and its arguments
//! as an array of strings. Spoken with our OVSDB connection rather than by running `ovs-appctl`,
//! so a health check costs a socket round trip instead of a process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ovsdb::connection::{Connection, Timeouts};
use ovsdb::transport::Remote;
use serde_json::Value;

/// The control socket of daemon `name` (`ovs-vswitchd`, `ovsdb-server`, `ovn-controller`) in
/// `run_dir`: `<run_dir>/<name>.<pid>.ctl`, the pid read from `<run_dir>/<name>.pid`, as
/// `ovs-appctl -t <name>` finds it.
pub fn target_socket(run_dir: &Path, name: &str) -> Result<PathBuf, String> {
    let pid_file = run_dir.join(format!("{name}.pid"));
    let text = std::fs::read_to_string(&pid_file)
        .map_err(|e| format!("reading {}: {e}", pid_file.display()))?;
    let pid: u32 = text.trim().parse().map_err(|_| {
        format!(
            "{}: not a process id: {:?}",
            pid_file.display(),
            text.trim()
        )
    })?;
    Ok(run_dir.join(format!("{name}.{pid}.ctl")))
}

/// Runs `command` with `args` on the control socket `socket` and returns its text answer; the
/// whole exchange (connect included) is bounded by `timeout`.
pub async fn call(
    socket: &Path,
    command: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<String, String> {
    let remote = Remote::parse(&format!("unix:{}", socket.display())).map_err(|e| e.to_string())?;
    let timeouts = Timeouts {
        connect: timeout,
        request: timeout,
        probe_interval: timeout.max(Duration::from_secs(5)),
    };
    let exchange = async {
        let (conn, _notes) = Connection::open(&remote, None, &timeouts)
            .await
            .map_err(|e| e.to_string())?;
        let reply = conn
            .request(command, Value::from(args.to_vec()))
            .await
            .map_err(|e| format!("{command}: {e}"));
        conn.close();
        reply
    };
    let reply = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| {
            format!(
                "{}: {command} timed out after {timeout:?}",
                socket.display()
            )
        })??;
    Ok(match reply {
        Value::String(s) => s,
        other => other.to_string(),
    })
}

/// Runs `command` on daemon `name` of `run_dir` (see [`target_socket`]).
pub async fn call_target(
    run_dir: &Path,
    name: &str,
    command: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<String, String> {
    let socket = target_socket(run_dir, name)?;
    call(&socket, command, args, timeout)
        .await
        .map_err(|e| format!("{name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_named_after_the_pid_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ovn-controller.pid"), "4242\n").unwrap();
        assert_eq!(
            target_socket(dir.path(), "ovn-controller").unwrap(),
            dir.path().join("ovn-controller.4242.ctl")
        );
        std::fs::write(dir.path().join("ovs-vswitchd.pid"), "x").unwrap();
        assert!(target_socket(dir.path(), "ovs-vswitchd")
            .unwrap_err()
            .contains("not a process id"));
        assert!(target_socket(dir.path(), "ovsdb-server")
            .unwrap_err()
            .contains("ovsdb-server.pid"));
    }
}
