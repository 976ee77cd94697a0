//! The `ovn-ic` daemon, which upstream's controller starts and stops with `ovn-ctl start_ic` /
//! `stop_ic` in its own container: here a supervised child process with the same remotes (and
//! TLS files when `ENABLE_SSL=true`), its pidfile and log where ovn-ctl puts them
//! (`$OVN_RUNDIR`, `$OVN_LOGDIR`), restarted when it dies while interconnection is on.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::{Child, Command};
use tracing::{info, warn};

/// The remotes ovn-ic runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcRemotes {
    /// The local OVN_Northbound.
    pub nb: String,
    /// The local OVN_Southbound.
    pub sb: String,
    /// OVN_IC_Northbound.
    pub ic_nb: String,
    /// OVN_IC_Southbound.
    pub ic_sb: String,
}

/// The supervised daemon.
#[derive(Default)]
pub struct OvnIc {
    running: Option<(IcRemotes, Child)>,
}

fn env_dir(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

impl OvnIc {
    /// Makes ovn-ic run with `remotes`: started if absent or dead, restarted if its remotes
    /// differ, left alone otherwise.
    pub async fn ensure(&mut self, remotes: &IcRemotes) -> Result<(), String> {
        if let Some((have, child)) = &mut self.running {
            match child.try_wait() {
                Ok(None) if have == remotes => return Ok(()),
                Ok(None) => self.stop().await,
                Ok(Some(status)) => {
                    warn!(%status, "ovn-ic exited; starting it again");
                    self.running = None;
                }
                Err(e) => return Err(format!("ovn-ic: {e}")),
            }
        }
        let rundir = env_dir("OVN_RUNDIR", "/var/run/ovn");
        let logdir = env_dir("OVN_LOGDIR", "/var/log/ovn");
        let mut cmd = Command::new("ovn-ic");
        cmd.arg(format!("--ovnnb-db={}", remotes.nb))
            .arg(format!("--ovnsb-db={}", remotes.sb))
            .arg(format!("--ic-nb-db={}", remotes.ic_nb))
            .arg(format!("--ic-sb-db={}", remotes.ic_sb))
            .arg(format!("--pidfile={}", rundir.join("ovn-ic.pid").display()))
            .arg(format!(
                "--log-file={}",
                logdir.join("ovn-ic.log").display()
            ))
            .arg("-vconsole:off")
            .kill_on_drop(true);
        if std::env::var("ENABLE_SSL").as_deref() == Ok("true") {
            cmd.arg("--private-key=/var/run/tls/key")
                .arg("--certificate=/var/run/tls/cert")
                .arg("--ca-cert=/var/run/tls/cacert");
        }
        let child = cmd.spawn().map_err(|e| format!("starting ovn-ic: {e}"))?;
        info!(ic_nb = %remotes.ic_nb, ic_sb = %remotes.ic_sb, pid = ?child.id(), "ovn-ic started");
        self.running = Some((remotes.clone(), child));
        Ok(())
    }

    /// Stops ovn-ic (SIGTERM, then SIGKILL after 5 s); a daemon not running is fine.
    pub async fn stop(&mut self) {
        let Some((_, mut child)) = self.running.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            // SAFETY: signalling our own child by its pid, which it keeps until reaped below.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill().await;
            }
        }
        info!("ovn-ic stopped");
    }
}
