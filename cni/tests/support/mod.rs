//! Running the built `kube-ovn` binary the way a container runtime does, against a test
//! double of the daemon.

pub mod daemon_double;
pub mod netns;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

/// A sandbox container ID as containerd makes them.
pub const CONTAINER_ID: &str = "7c1e5b0d2a9f4e3c8b6a1d0f9e8c7b6a5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a";

/// `CNI_ARGS` as kubelet's CRI runtimes fill it.
pub const CNI_ARGS: &str = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=7c1e5b0d2a9f4e3c8b6a1d0f9e8c7b6a5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a;K8S_POD_UID=0b3c1d6e-8a47-4f3e-9a55-2c1d0e9f8a7b";

/// What one invocation produced.
#[derive(Debug)]
pub struct Outcome {
    /// Exit status code.
    pub code: i32,
    /// stdout as text.
    pub stdout: String,
    /// stderr as text.
    pub stderr: String,
}

impl Outcome {
    /// stdout as JSON; panics (failing the test) when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Asserts a spec error with `code` and returns it.
    pub fn error(&self, code: u64) -> Value {
        assert_ne!(self.code, 0, "expected failure: {self:?}");
        let e = self.json();
        assert_eq!(e["code"], code, "{self:?}");
        for key in ["cniVersion", "msg", "details"] {
            assert!(e[key].is_string(), "error lacks {key}: {e}");
        }
        e
    }
}

/// Runs the binary with exactly `env` and `stdin`, as a runtime execs a plugin.
pub fn cni(env: &[(&str, &str)], stdin: &str) -> Outcome {
    cni_args(&[], env, stdin)
}

/// [`cni`] with command-line arguments.
pub fn cni_args(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-ovn"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A binary that exits before reading stdin is itself a finding, reported by its output.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    let out = child.wait_with_output().unwrap();
    Outcome {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// The environment of an attachment operation (`ADD`, `DEL`, `CHECK`) in `netns`.
pub fn attachment_env<'a>(command: &'a str, netns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", CONTAINER_ID),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", CNI_ARGS),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
}
