//! Test harness: a real ovsdb-server per test, in its own temp dir, on a unix socket.
// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ovsdb::{Client, Notification, Remote, Timeouts};
use tokio::sync::mpsc;

pub struct Server {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// Creates a database from a shipped schema file and starts ovsdb-server on it.
    pub fn start(schema_file: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.db");
        let schema = format!("{}/schemas/{schema_file}", env!("CARGO_MANIFEST_DIR"));
        let st = Command::new("ovsdb-tool")
            .args(["create", db.to_str().unwrap(), &schema])
            .status()
            .expect("ovsdb-tool (install openvswitch-switch)");
        assert!(st.success());
        let mut s = Server {
            dir,
            db,
            child: None,
        };
        s.restart();
        s
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.path().join("db.sock")
    }

    pub fn remote(&self) -> Remote {
        Remote::Unix(self.sock())
    }

    /// (Re)starts the server process on the same database file.
    pub fn restart(&mut self) {
        let _ = std::fs::remove_file(self.sock());
        let d = self.dir.path();
        let child = Command::new("ovsdb-server")
            .arg(format!("--remote=punix:{}", self.sock().display()))
            .arg(format!("--unixctl={}", d.join("ctl").display()))
            .arg(format!("--log-file={}", d.join("ovsdb.log").display()))
            .arg("--no-chdir")
            .arg(&self.db)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ovsdb-server");
        self.child = Some(child);
        wait_until("ovsdb-server socket", Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(self.sock()).is_ok()
        });
    }

    /// kill -9, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Client sessions the server holds now (`sessions` of `memory/show`; absent means none).
    pub fn sessions(&self) -> usize {
        let out = Command::new("ovs-appctl")
            .arg("-t")
            .arg(self.dir.path().join("ctl"))
            .arg("memory/show")
            .output()
            .expect("ovs-appctl");
        assert!(out.status.success(), "ovs-appctl memory/show failed");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .find_map(|f| f.strip_prefix("sessions:"))
            .map_or(0, |n| n.parse().expect("sessions count"))
    }

    pub async fn client(&self) -> (Client, mpsc::Receiver<Notification>) {
        Client::connect(&self.remote(), None, &Timeouts::default())
            .await
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls a condition until it holds or the deadline passes (then panics with `what`).
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// [`wait_until`] for async tests: polls without blocking the runtime, so the client's own
/// tasks keep running meanwhile.
pub async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the next notification with a deadline.
pub async fn next_note(rx: &mut mpsc::Receiver<Notification>) -> Notification {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("notification within 10s")
        .expect("connection open")
}
