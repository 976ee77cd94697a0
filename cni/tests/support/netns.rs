//! A fresh network namespace for ADD to work in, so the binary's IPv6 sysctl writes land in
//! a throwaway namespace and never on the test machine. A parked thread owns it (unshare
//! changes only that thread), which keeps it alive and lets the test read its sysctls.
//! Needs root, as the whole suite does.

use std::sync::mpsc;
use std::thread::JoinHandle;

enum Ask {
    Read(String, mpsc::Sender<String>),
    Stop,
}

/// The namespace; gone when dropped.
pub struct TestNetns {
    path: String,
    asks: mpsc::Sender<Ask>,
    thread: Option<JoinHandle<()>>,
}

impl TestNetns {
    /// A new namespace with IPv6 disabled and router advertisements accepted, the opposite
    /// of what the plugin must leave behind.
    pub fn new() -> TestNetns {
        let (ready, is_ready) = mpsc::channel();
        let (asks, asked) = mpsc::channel::<Ask>();
        let thread = std::thread::spawn(move || {
            // SAFETY: unshare affects only this thread, which serves nothing else.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                let e = std::io::Error::last_os_error();
                ready
                    .send(Err(format!("unshare(CLONE_NEWNET) needs root: {e}")))
                    .unwrap();
                return;
            }
            for conf in ["all", "default"] {
                std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "1")
                    .unwrap();
                std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/accept_ra"), "1").unwrap();
            }
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            ready.send(Ok(tid)).unwrap();
            while let Ok(Ask::Read(path, reply)) = asked.recv() {
                let value = std::fs::read_to_string(path).unwrap();
                reply.send(value.trim().to_string()).unwrap();
            }
        });
        let tid = is_ready.recv().unwrap().unwrap_or_else(|e| panic!("{e}"));
        TestNetns {
            path: format!("/proc/{}/task/{tid}/ns/net", std::process::id()),
            asks,
            thread: Some(thread),
        }
    }

    /// The path to pass as `CNI_NETNS`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A sysctl's value as seen inside the namespace, e.g. `/proc/sys/net/ipv6/conf/all/accept_ra`.
    pub fn sysctl(&self, path: &str) -> String {
        let (reply, answer) = mpsc::channel();
        self.asks.send(Ask::Read(path.to_string(), reply)).unwrap();
        answer.recv().unwrap()
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = self.asks.send(Ask::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
