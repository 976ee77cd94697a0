//! Calling CNI plugins exactly as a container runtime does (CNI spec 1.x, "Execution protocol"
//! and "Network configuration lists"): the first configuration in the conf dir in lexical order,
//! each plugin of a list invoked in order with `prevResult` for ADD and in reverse for DEL,
//! parameters in `CNI_*` variables, the configuration on stdin, the result or a spec error on
//! stdout. Any plugin binary works, so the harness is exercised before our own CNI exists.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// One network attachment of a pod, the parameters every CNI call for it shares.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    /// Runtime's container (sandbox) id, 64 hex characters.
    pub container_id: String,
    /// Path of the pod's network namespace.
    pub netns: String,
    /// Interface name inside the pod.
    pub ifname: String,
    /// Pod namespace.
    pub pod_namespace: String,
    /// Pod name.
    pub pod_name: String,
    /// Pod UID.
    pub pod_uid: String,
}

impl Attachment {
    /// `CNI_ARGS` as kubelet's CRI runtimes fill it for Kubernetes pods.
    pub fn cni_args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.pod_namespace, self.pod_name, self.container_id, self.pod_uid
        )
    }

    fn pod(&self) -> String {
        format!("{}/{}", self.pod_namespace, self.pod_name)
    }
}

/// A loaded network configuration (a `.conflist`, or a single `.conf` seen as a one-plugin list).
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// File it came from, for messages.
    pub file: PathBuf,
    /// Network name.
    pub name: String,
    /// cniVersion of the list.
    pub cni_version: String,
    /// Plugin configurations in order.
    pub plugins: Vec<Map<String, Value>>,
}

/// Loads the network configuration the runtime would use from `dir`: the lexically first
/// `*.conflist`, `*.conf` or `*.json`. `Ok(None)` when there is none yet (the network plugin is
/// "not ready", which is how a node looks before kube-ovn's installer drops its config).
pub fn load_config(dir: &Path) -> Result<Option<NetworkConfig>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(d) => d
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conflist" | "conf" | "json")
                )
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(dir, e)),
    };
    files.sort();
    let Some(file) = files.into_iter().next() else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
    parse_config(&file, &text).map(Some)
}

/// Parses a configuration file's text (see [`load_config`]).
pub fn parse_config(file: &Path, text: &str) -> Result<NetworkConfig> {
    let bad = |detail: String| Error::Invalid(format!("{}: {detail}", file.display()));
    let v: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("not a JSON object".into()))?;
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no network name".into()))?
        .to_string();
    let cni_version = obj
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or("0.3.1")
        .to_string();
    let plugins = match obj.get("plugins") {
        Some(Value::Array(list)) => list
            .iter()
            .map(|p| {
                p.as_object()
                    .cloned()
                    .ok_or_else(|| bad("plugin is not an object".into()))
            })
            .collect::<Result<Vec<_>>>()?,
        Some(_) => return Err(bad("plugins is not a list".into())),
        None => vec![obj.clone()],
    };
    if plugins.is_empty() {
        return Err(bad("no plugins".into()));
    }
    for p in &plugins {
        if !p.get("type").is_some_and(Value::is_string) {
            return Err(bad("a plugin has no type".into()));
        }
    }
    Ok(NetworkConfig {
        file: file.to_path_buf(),
        name,
        cni_version,
        plugins,
    })
}

/// The stdin of one plugin call: its own configuration plus the list's name and version, and
/// the previous plugin's result when there is one.
pub fn plugin_stdin(
    config: &NetworkConfig,
    plugin: &Map<String, Value>,
    prev: Option<&Value>,
) -> Value {
    let mut conf = plugin.clone();
    conf.insert("name".into(), json!(config.name));
    conf.insert("cniVersion".into(), json!(config.cni_version));
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev.clone());
    }
    Value::Object(conf)
}

/// The IP addresses (without prefix length) a CNI result assigns, in order; the first of each
/// family is what Kubernetes reports as the pod's IPs.
pub fn result_ips(result: &Value) -> Result<Vec<String>, String> {
    let ips = result
        .get("ips")
        .and_then(Value::as_array)
        .ok_or("result has no \"ips\" list")?;
    ips.iter()
        .map(|ip| {
            let cidr = ip
                .get("address")
                .and_then(Value::as_str)
                .ok_or("an ips entry has no address")?;
            let addr = cidr.split('/').next().unwrap_or(cidr);
            addr.parse::<std::net::IpAddr>()
                .map(|a| a.to_string())
                .map_err(|e| format!("bad address {cidr}: {e}"))
        })
        .collect()
}

/// Runs CNI ADD for the whole list and returns the final result.
pub fn add(
    config: &NetworkConfig,
    att: &Attachment,
    bin_dir: &Path,
    host_netns: &str,
) -> Result<Value> {
    let mut prev: Option<Value> = None;
    for plugin in &config.plugins {
        let stdin = plugin_stdin(config, plugin, prev.as_ref());
        let out = invoke("ADD", plugin, &stdin, att, bin_dir, host_netns)?;
        let result: Value = serde_json::from_str(&out).map_err(|e| Error::Cni {
            command: "ADD".into(),
            pod: att.pod(),
            detail: format!("result is not JSON ({e}): {out}"),
        })?;
        prev = Some(result);
    }
    Ok(prev.unwrap_or(Value::Null))
}

/// Runs CNI DEL for the whole list, last plugin first. DEL must succeed for an attachment that is
/// already (partly) gone, so the runtime keeps calling it until it does.
pub fn del(
    config: &NetworkConfig,
    att: &Attachment,
    bin_dir: &Path,
    host_netns: &str,
) -> Result<()> {
    for plugin in config.plugins.iter().rev() {
        let stdin = plugin_stdin(config, plugin, None);
        invoke("DEL", plugin, &stdin, att, bin_dir, host_netns)?;
    }
    Ok(())
}

fn invoke(
    command: &str,
    plugin: &Map<String, Value>,
    stdin: &Value,
    att: &Attachment,
    bin_dir: &Path,
    host_netns: &str,
) -> Result<String> {
    let err = |detail: String| Error::Cni {
        command: command.to_string(),
        pod: att.pod(),
        detail,
    };
    let kind = plugin
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind.contains('/') || kind.is_empty() {
        return Err(err(format!("bad plugin type {kind:?}")));
    }
    let binary = bin_dir.join(kind);
    if !binary.is_file() {
        return Err(err(format!(
            "plugin {kind} not found in {}",
            bin_dir.display()
        )));
    }
    // The plugin runs in the node's ("host") namespace, as under a real runtime.
    let mut cmd = crate::sys::in_netns(host_netns, &binary);
    cmd.env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &att.container_id)
        .env("CNI_NETNS", &att.netns)
        .env("CNI_IFNAME", &att.ifname)
        .env("CNI_ARGS", att.cni_args())
        .env("CNI_PATH", bin_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| err(format!("{}: {e}", binary.display())))?;
    if let Some(mut input) = child.stdin.take() {
        // A plugin that exits without reading its stdin is its own problem; its exit status
        // tells the story.
        let _ = input.write_all(stdin.to_string().as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("{}: {e}", binary.display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    // Spec errors are JSON on stdout: {"cniVersion", "code", "msg", "details"}.
    let detail = match serde_json::from_str::<Value>(&stdout) {
        Ok(e) if e.get("code").is_some() => format!(
            "error {}: {}{}",
            e["code"],
            e.get("msg").and_then(Value::as_str).unwrap_or(""),
            e.get("details")
                .and_then(Value::as_str)
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ),
        _ => format!(
            "{} exited {}: {}{}",
            kind,
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    };
    Err(err(detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_conf_is_a_one_plugin_list_and_lists_keep_order() {
        let single = parse_config(
            Path::new("10-x.conf"),
            r#"{"cniVersion":"1.0.0","name":"net","type":"kube-ovn","server_socket":"/s"}"#,
        )
        .unwrap();
        assert_eq!(single.plugins.len(), 1);
        assert_eq!(single.plugins[0]["server_socket"], "/s");
        let list = parse_config(
            Path::new("01-kube-ovn.conflist"),
            r#"{"cniVersion":"0.3.1","name":"kube-ovn","plugins":[{"type":"kube-ovn"},{"type":"portmap"}]}"#,
        )
        .unwrap();
        let kinds: Vec<_> = list.plugins.iter().map(|p| p["type"].clone()).collect();
        assert_eq!(kinds, vec![json!("kube-ovn"), json!("portmap")]);
    }

    #[test]
    fn configs_without_name_or_type_are_refused() {
        assert!(parse_config(Path::new("a"), r#"{"type":"x"}"#).is_err());
        assert!(parse_config(Path::new("a"), r#"{"name":"n","plugins":[{}]}"#).is_err());
        assert!(parse_config(Path::new("a"), r#"{"name":"n","plugins":[]}"#).is_err());
        assert!(parse_config(Path::new("a"), "not json").is_err());
    }

    #[test]
    fn stdin_carries_name_version_and_prev_result() {
        let c = parse_config(
            Path::new("a.conflist"),
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a","x":1},{"type":"b"}]}"#,
        )
        .unwrap();
        let prev = json!({"ips":[]});
        let s = plugin_stdin(&c, &c.plugins[1], Some(&prev));
        assert_eq!(
            s,
            json!({"type":"b","name":"n","cniVersion":"1.0.0","prevResult":{"ips":[]}})
        );
        let first = plugin_stdin(&c, &c.plugins[0], None);
        assert!(first.get("prevResult").is_none());
        assert_eq!(first["x"], 1);
    }

    #[test]
    fn result_ips_strip_prefixes_and_reject_garbage() {
        let r = json!({"ips":[{"address":"10.16.0.5/16"},{"address":"fd00::5/64"}]});
        assert_eq!(result_ips(&r).unwrap(), vec!["10.16.0.5", "fd00::5"]);
        assert!(result_ips(&json!({})).is_err());
        assert!(result_ips(&json!({"ips":[{"address":"nope/1"}]})).is_err());
    }

    #[test]
    fn cni_args_name_the_pod_as_kubelet_does() {
        let a = Attachment {
            container_id: "c".repeat(64),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            pod_namespace: "default".into(),
            pod_name: "web".into(),
            pod_uid: "u1".into(),
        };
        let args = a.cni_args();
        assert!(args.starts_with("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"));
        assert!(args.ends_with("K8S_POD_UID=u1"));
    }
}
