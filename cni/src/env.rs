//! The `CNI_*` environment a runtime invokes the plugin with, validated the way libcni's
//! skeleton validates it for upstream kube-ovn, so a runtime sees the same error for the same
//! mistake from either binary.

use crate::error::{CniError, ErrorCode};

/// The operation requested through `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach the container to the network.
    Add,
    /// Detach; must succeed when already detached.
    Del,
    /// Verify an earlier ADD still holds.
    Check,
    /// Report whether ADD can be served (1.1.0).
    Status,
    /// Drop state of attachments the runtime no longer knows (1.1.0).
    Gc,
    /// Report the supported spec versions.
    Version,
}

impl Command {
    fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    /// Which variables must be non-empty for this command (libcni's table: CNI_NETNS is
    /// optional on DEL because the namespace may already be gone).
    fn requires(self, var: &str) -> bool {
        use Command::*;
        match var {
            "CNI_CONTAINERID" | "CNI_IFNAME" => matches!(self, Add | Del | Check),
            "CNI_NETNS" => matches!(self, Add | Check),
            "CNI_PATH" => matches!(self, Add | Del | Check | Gc | Status),
            _ => false,
        }
    }
}

/// One invocation's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// What to do.
    pub command: Command,
    /// `CNI_CONTAINERID`; empty for commands that take none.
    pub container_id: String,
    /// `CNI_NETNS`; may be empty on DEL.
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`, `;`-separated `KEY=VALUE` pairs.
    pub args: String,
    /// `CNI_NETNS_OVERRIDE`: the runtime vouches that `CNI_NETNS` may be the plugin's own
    /// namespace (libcni's escape hatch for runtimes that run plugins inside the sandbox).
    pub netns_override: bool,
}

/// Why no [`Invocation`] could be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvError {
    /// `CNI_COMMAND` is unset: a person ran the binary, not a runtime.
    NoCommand,
    /// The environment is unusable; report it as a CNI error.
    Invalid(CniError),
}

impl Invocation {
    /// Reads and validates the environment through `get` (`std::env::var` in the binary).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Invocation, EnvError> {
        let var = |name: &str| get(name).unwrap_or_default();
        let command = var("CNI_COMMAND");
        if command.is_empty() {
            return Err(EnvError::NoCommand);
        }
        let invalid = |msg: String, details: String| {
            EnvError::Invalid(CniError::new(ErrorCode::InvalidEnvironment, msg, details))
        };
        let Some(command) = Command::parse(&command) else {
            return Err(invalid(
                format!("unknown CNI_COMMAND: {command}"),
                String::new(),
            ));
        };
        let missing: Vec<&str> = ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
            .into_iter()
            .filter(|name| command.requires(name) && var(name).is_empty())
            .collect();
        if !missing.is_empty() {
            return Err(invalid(
                format!("required env variables [{}] missing", missing.join(",")),
                String::new(),
            ));
        }
        let inv = Invocation {
            command,
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args: var("CNI_ARGS"),
            netns_override: matches!(
                var("CNI_NETNS_OVERRIDE").to_ascii_lowercase().as_str(),
                "1" | "true"
            ),
        };
        if command.requires("CNI_CONTAINERID") {
            if !valid_name(&inv.container_id) {
                return Err(invalid(
                    "invalid characters in containerID".into(),
                    inv.container_id,
                ));
            }
            if let Some(why) = invalid_ifname(&inv.ifname) {
                return Err(invalid(why.into(), format!("CNI_IFNAME={:?}", inv.ifname)));
            }
        }
        Ok(inv)
    }

    /// The value of `key` in `CNI_ARGS`, required to be present and non-empty: the daemon
    /// cannot find the pod without `K8S_POD_NAME`/`K8S_POD_NAMESPACE`. Messages are upstream's.
    pub fn k8s_arg(&self, key: &str) -> Result<String, CniError> {
        let invalid = |details: String| {
            CniError::new(ErrorCode::InvalidConfig, "Invalid Configuration", details)
        };
        if self.args.is_empty() {
            return Err(invalid("CNI_ARGS is required".into()));
        }
        self.args
            .split(';')
            .filter_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
            .find(|value| !value.is_empty())
            .map(str::to_string)
            .ok_or_else(|| invalid(format!("{key} is required in CNI_ARGS")))
    }
}

/// The spec's rule for container IDs and network names: an alphanumeric first character,
/// then alphanumerics, `_`, `.` or `-`.
pub(crate) fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The kernel's rules for interface names, or `None` when `name` follows them.
fn invalid_ifname(name: &str) -> Option<&'static str> {
    if name.len() > 15 {
        Some("interface name is too long")
    } else if name == "." || name == ".." {
        Some("interface name is . or ..")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("interface name contains / or : or whitespace characters")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Invocation, EnvError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Invocation::from_env(|k| map.get(k).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
        ),
    ];

    fn with(overrides: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = ADD
            .iter()
            .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
            .copied()
            .collect();
        v.extend(overrides.iter().filter(|(_, val)| !val.is_empty()));
        v
    }

    fn invalid(r: Result<Invocation, EnvError>) -> CniError {
        match r {
            Err(EnvError::Invalid(e)) => e,
            other => panic!("expected an invalid environment, got {other:?}"),
        }
    }

    #[test]
    fn reads_a_complete_add_environment() {
        let inv = env(ADD).unwrap();
        assert_eq!(inv.command, Command::Add);
        assert_eq!(inv.container_id, "abc123");
        assert_eq!(inv.netns, "/var/run/netns/x");
        assert_eq!(inv.ifname, "eth0");
        assert!(!inv.netns_override);
        assert_eq!(inv.k8s_arg("K8S_POD_NAME").unwrap(), "web-0");
        assert_eq!(inv.k8s_arg("K8S_POD_NAMESPACE").unwrap(), "default");
    }

    #[test]
    fn no_command_is_not_a_cni_error() {
        assert_eq!(env(&[]), Err(EnvError::NoCommand));
    }

    #[test]
    fn unknown_command_is_code_4() {
        let e = invalid(env(&with(&[("CNI_COMMAND", "ATTACH")])));
        assert_eq!(e.code, ErrorCode::InvalidEnvironment);
        assert_eq!(e.msg, "unknown CNI_COMMAND: ATTACH");
    }

    #[test]
    fn missing_variables_are_named() {
        let e = invalid(env(&with(&[("CNI_NETNS", ""), ("CNI_PATH", "")])));
        assert_eq!(e.code, ErrorCode::InvalidEnvironment);
        assert_eq!(e.msg, "required env variables [CNI_NETNS,CNI_PATH] missing");
    }

    #[test]
    fn requirements_follow_the_command() {
        // DEL without a netns (already torn down) is valid.
        let del = env(&with(&[("CNI_COMMAND", "DEL"), ("CNI_NETNS", "")])).unwrap();
        assert_eq!(del.netns, "");
        // VERSION needs nothing else.
        assert_eq!(
            env(&[("CNI_COMMAND", "VERSION")]).unwrap().command,
            Command::Version
        );
        // STATUS and GC need only CNI_PATH.
        let status = env(&[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/opt/cni/bin")]).unwrap();
        assert_eq!(status.command, Command::Status);
        let e = invalid(env(&[("CNI_COMMAND", "GC")]));
        assert_eq!(e.msg, "required env variables [CNI_PATH] missing");
        // CHECK needs the netns like ADD.
        let e = invalid(env(&with(&[("CNI_COMMAND", "CHECK"), ("CNI_NETNS", "")])));
        assert_eq!(e.msg, "required env variables [CNI_NETNS] missing");
    }

    #[test]
    fn container_id_and_ifname_are_validated() {
        let e = invalid(env(&with(&[("CNI_CONTAINERID", "-bad")])));
        assert_eq!(e.msg, "invalid characters in containerID");
        assert_eq!(e.details, "-bad");
        for bad in ["a/b", "eth 0", "a:b", ".", "..", "sixteen-chars-xx"] {
            let e = invalid(env(&with(&[("CNI_IFNAME", bad)])));
            assert_eq!(e.code, ErrorCode::InvalidEnvironment, "{bad}");
            assert!(e.msg.starts_with("interface name"), "{bad}: {}", e.msg);
        }
        assert!(env(&with(&[("CNI_IFNAME", "fifteen-chars-x")])).is_ok());
    }

    #[test]
    fn netns_override_accepts_libcni_spellings() {
        for (val, expect) in [
            ("1", true),
            ("TRUE", true),
            ("true", true),
            ("0", false),
            ("yes", false),
        ] {
            let inv = env(&with(&[("CNI_NETNS_OVERRIDE", val)])).unwrap();
            assert_eq!(inv.netns_override, expect, "{val}");
        }
    }

    #[test]
    fn k8s_args_errors_are_upstreams() {
        let inv = env(&with(&[("CNI_ARGS", "")])).unwrap();
        let e = inv.k8s_arg("K8S_POD_NAME").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert_eq!(e.details, "CNI_ARGS is required");
        let inv = env(&with(&[(
            "CNI_ARGS",
            "K8S_POD_NAME=;K8S_POD_NAMESPACE=ns;K8S_POD_NAMEX=y",
        )]))
        .unwrap();
        let e = inv.k8s_arg("K8S_POD_NAME").unwrap_err();
        assert_eq!(e.details, "K8S_POD_NAME is required in CNI_ARGS");
        assert_eq!(inv.k8s_arg("K8S_POD_NAMESPACE").unwrap(), "ns");
    }

    #[test]
    fn name_rule() {
        for ok in ["a", "0", "abc-1.2_3", "kube-ovn"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", "_a", ".a", "a b", "a/b", "ü"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
