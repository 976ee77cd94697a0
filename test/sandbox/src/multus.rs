//! What Multus does for a pod, done by the kubelet stand-in: after the default network (the
//! node's CNI configuration, kube-ovn), every network the pod's `k8s.v1.cni.cncf.io/networks`
//! annotation selects is attached by calling the plugins of its NetworkAttachmentDefinition's
//! `spec.config`, and the result of all of them is written to the pod as
//! `k8s.v1.cni.cncf.io/network-status`.
//!
//! The behaviour follows Multus (thin plugin) and the multi-net-spec:
//! - the annotation is a comma list of `name`, `namespace/name`, `name@ifname` (DNS-1123 labels)
//!   or a JSON list of selection elements (`name`, `namespace`, `interface`, `ips`, `mac`,
//!   `default-route`, `cni-args`); the namespace defaults to the pod's;
//! - a NAD config without `name` gets the NAD's name; one plugin or a conflist;
//! - interfaces are `net<i>` for the i-th selected network (1-based) unless one is requested;
//! - `ips` and `mac` reach the plugins as libcni passes capability arguments: in each plugin's
//!   `runtimeConfig`, only for capabilities the plugin declares (`"capabilities": {"ips": true}`);
//!   `cni-args` go to `args.cni` of every plugin;
//! - CNI_ARGS are the runtime's (pod namespace/name, infra container id, uid);
//! - a network with `default-route` gets the pod's default route(s) through its gateway(s),
//!   the default network's default route of that family is removed;
//! - ADD failure of any network undoes the networks already added; DEL goes in reverse order;
//! - network-status lists the default network first (`"default": true`, named after the CNI
//!   configuration), then each attachment as `<namespace>/<name>` with its interface, IPs, MAC
//!   and DNS, from each delegate's CNI result.
//!
//! Plugins run from the node's plugin directory, which holds Debian's containernetworking-plugins
//! (macvlan, ipvlan, bridge, host-local, static...) beside the `kube-ovn` binary. A delegate of
//! type `kube-ovn`, or one with `ipam.type: kube-ovn`, gets `server_socket` pointed at the node's
//! daemon socket, and `host-local` IPAM without a `dataDir` keeps its leases in the node's
//! directory: a real cluster has both at the same path on every node's own filesystem, sandbox
//! nodes share one filesystem and have their own paths.
//!
//! `v1.multus-cni.io/default-network` (`name` or `namespace/name`) replaces the node's CNI
//! configuration for the pod's `eth0` with a NAD's; network-status then names the default
//! network `<namespace>/<name>`.

use std::path::Path;

use kube::api::{Api, ApiResource, DynamicObject};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::cni::{self, Attachment, NetworkConfig};
use crate::error::{Error, Result};
use crate::sys;

/// The pod annotation selecting additional networks.
pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";
/// The pod annotation Multus writes with every attached network's result.
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";
/// The NetworkAttachmentDefinition CRD, installed at sandbox bring-up.
pub const NAD_CRD: &str = include_str!("../crds/network-attachment-definition.yaml");

/// The NetworkAttachmentDefinition resource (`k8s.cni.cncf.io/v1`).
pub fn nad_resource() -> ApiResource {
    ApiResource {
        group: "k8s.cni.cncf.io".into(),
        version: "v1".into(),
        api_version: "k8s.cni.cncf.io/v1".into(),
        kind: "NetworkAttachmentDefinition".into(),
        plural: "network-attachment-definitions".into(),
    }
}

/// The NetworkAttachmentDefinitions of `namespace`.
pub fn nads(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client, namespace, &nad_resource())
}

/// The annotation naming a NAD to use for the pod's default network instead of the node's.
pub const DEFAULT_NETWORK_ANNOTATION: &str = "v1.multus-cni.io/default-network";

/// Where a node keeps what plugins find at fixed paths on a real node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePaths {
    /// The kube-ovn daemon's socket (`/run/openvswitch/kube-ovn-daemon.sock`).
    pub daemon_socket: std::path::PathBuf,
    /// host-local's lease directory (`/var/lib/cni/networks`).
    pub host_local_dir: std::path::PathBuf,
}

impl NodePaths {
    /// The paths of a sandbox node.
    pub fn of(node: &crate::node::NodeInfo) -> NodePaths {
        NodePaths {
            daemon_socket: crate::kubeovn::daemon_socket(node),
            host_local_dir: node.dir.join("cni/networks"),
        }
    }
}

/// Parses the default-network annotation (`name` or `namespace/name`) of a pod in
/// `pod_namespace` into a selection for `eth0`.
pub fn parse_default_network(
    annotation: &str,
    pod_namespace: &str,
) -> std::result::Result<NetworkSelection, String> {
    let mut list = parse_networks(annotation, pod_namespace)?;
    match (list.pop(), list.is_empty()) {
        (Some(mut n), true) if n.interface.is_empty() => {
            n.interface = "eth0".into();
            Ok(n)
        }
        _ => Err(format!(
            "{DEFAULT_NETWORK_ANNOTATION} must name one network without an interface: {annotation:?}"
        )),
    }
}

/// Creates the NetworkAttachmentDefinition `namespace/name` whose `spec.config` is `config`
/// (one plugin or a conflist), as a test sets up an attachment.
pub async fn create_nad(
    client: kube::Client,
    namespace: &str,
    name: &str,
    config: &Value,
) -> Result<DynamicObject> {
    let nad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"config": config.to_string()},
    }))
    .map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(nads(client, namespace)
        .create(&kube::api::PostParams::default(), &nad)
        .await?)
}

/// The entries of a pod's network-status annotation (none when it has none or it is not a
/// JSON list), in order: the default network first.
pub fn network_status_of(pod: &k8s_openapi::api::core::v1::Pod) -> Vec<Value> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NETWORK_STATUS_ANNOTATION))
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// One selected network (multi-net-spec "NetworkSelectionElement").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkSelection {
    /// NetworkAttachmentDefinition name.
    pub name: String,
    /// Its namespace (the pod's when not given).
    #[serde(default)]
    pub namespace: String,
    /// Requested interface name inside the pod.
    #[serde(rename = "interface", default)]
    pub interface: String,
    /// Requested addresses (CIDR form), for plugins with the `ips` capability.
    #[serde(default)]
    pub ips: Vec<String>,
    /// Requested MAC address, for plugins with the `mac` capability.
    #[serde(default)]
    pub mac: String,
    /// Gateways the pod's default route(s) should go through on this network.
    #[serde(rename = "default-route", default)]
    pub default_route: Vec<String>,
    /// Extra plugin arguments, passed as `args.cni`.
    #[serde(rename = "cni-args", default, skip_serializing_if = "Option::is_none")]
    pub cni_args: Option<Map<String, Value>>,
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Parses the networks annotation of a pod in `pod_namespace`.
pub fn parse_networks(
    annotation: &str,
    pod_namespace: &str,
) -> std::result::Result<Vec<NetworkSelection>, String> {
    let annotation = annotation.trim();
    if annotation.is_empty() {
        return Ok(Vec::new());
    }
    let mut networks: Vec<NetworkSelection> = if annotation.contains(['[', '{', '"']) {
        serde_json::from_str(annotation)
            .map_err(|e| format!("failed to parse the networks annotation as JSON: {e}"))?
    } else {
        let mut list = Vec::new();
        for item in annotation.split(',') {
            let item = item.trim();
            let (namespace, rest) = match item.split('/').collect::<Vec<_>>()[..] {
                [name] => ("", name),
                [ns, name] => (ns.trim(), name),
                _ => return Err(format!("invalid network {item:?} (failed at '/')")),
            };
            let (name, interface) = match rest.split('@').collect::<Vec<_>>()[..] {
                [name] => (name.trim(), ""),
                [name, iface] => (name.trim(), iface.trim()),
                _ => return Err(format!("invalid network {item:?} (failed at '@')")),
            };
            for part in [namespace, name, interface] {
                if !part.is_empty() && !dns_label(part) {
                    return Err(format!(
                        "invalid network {item:?}: {part:?} is not a DNS-1123 label"
                    ));
                }
            }
            list.push(NetworkSelection {
                name: name.into(),
                namespace: namespace.into(),
                interface: interface.into(),
                ..NetworkSelection::default()
            });
        }
        list
    };
    for n in &mut networks {
        if n.name.is_empty() {
            return Err("a selected network has no name".into());
        }
        if n.namespace.is_empty() {
            n.namespace = pod_namespace.into();
        }
    }
    Ok(networks)
}

/// One network to attach: the selection, its delegate configuration with the request's
/// runtime arguments already in place, and the interface it gets.
#[derive(Debug, Clone)]
pub struct Delegate {
    /// What the pod asked for.
    pub selection: NetworkSelection,
    /// `<namespace>/<name>`, as network-status names it.
    pub network: String,
    /// The plugins to call.
    pub config: NetworkConfig,
    /// Interface name in the pod.
    pub ifname: String,
}

/// Builds the delegate for the `index`-th (1-based) selected network from its NAD's
/// `spec.config`, as run on `node`.
pub fn delegate(
    selection: &NetworkSelection,
    index: usize,
    nad_config: &str,
    node: &NodePaths,
) -> Result<Delegate> {
    let network = format!("{}/{}", selection.namespace, selection.name);
    let origin = format!("NetworkAttachmentDefinition {network}");
    let bad = |detail: String| Error::Invalid(format!("{origin}: {detail}"));
    let mut raw: Map<String, Value> = serde_json::from_str(nad_config)
        .map_err(|e| bad(format!("spec.config is not a JSON object: {e}")))?;
    if raw
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        raw.insert("name".into(), json!(selection.name));
    }
    let mut config = cni::parse_config(Path::new(&origin), &Value::Object(raw).to_string())?;
    let mut capability_args = Map::new();
    if !selection.ips.is_empty() {
        capability_args.insert("ips".into(), json!(selection.ips));
    }
    if !selection.mac.is_empty() {
        capability_args.insert("mac".into(), json!(selection.mac));
    }
    for plugin in &mut config.plugins {
        let caps = plugin.get("capabilities").cloned().unwrap_or(Value::Null);
        let runtime: Map<String, Value> = capability_args
            .iter()
            .filter(|(k, _)| caps.get(k.as_str()) == Some(&Value::Bool(true)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !runtime.is_empty() {
            plugin.insert("runtimeConfig".into(), Value::Object(runtime));
        }
        if let Some(args) = &selection.cni_args {
            plugin.insert("args".into(), json!({ "cni": args }));
        }
        let socket = json!(node.daemon_socket.display().to_string());
        if plugin.get("type").and_then(Value::as_str) == Some("kube-ovn") {
            plugin.insert("server_socket".into(), socket.clone());
        }
        if let Some(ipam) = plugin.get_mut("ipam").and_then(Value::as_object_mut) {
            match ipam.get("type").and_then(Value::as_str) {
                Some("kube-ovn") => {
                    ipam.insert("server_socket".into(), socket);
                }
                Some("host-local") if !ipam.contains_key("dataDir") => {
                    let dir = node.host_local_dir.display().to_string();
                    ipam.insert("dataDir".into(), json!(dir));
                }
                _ => {}
            }
        }
    }
    let ifname = if selection.interface.is_empty() {
        format!("net{index}")
    } else {
        selection.interface.clone()
    };
    Ok(Delegate {
        selection: selection.clone(),
        network,
        config,
        ifname,
    })
}

/// The attachment a delegate's calls use: the pod's, with the delegate's interface.
pub fn attachment_for(pod: &Attachment, delegate: &Delegate) -> Attachment {
    Attachment {
        ifname: delegate.ifname.clone(),
        ..pod.clone()
    }
}

/// Runs ADD for every delegate in order after the default network. When one fails, the ones
/// added so far (and the failed one) are deleted again, last first, and the error returned.
/// Returns each delegate's result.
pub fn add_all(
    delegates: &[Delegate],
    pod: &Attachment,
    bin_dir: &Path,
    host_netns: &str,
) -> Result<Vec<Value>> {
    let mut results = Vec::new();
    for (i, d) in delegates.iter().enumerate() {
        match cni::add(&d.config, &attachment_for(pod, d), bin_dir, host_netns) {
            Ok(r) => results.push(r),
            Err(e) => {
                let _ = del_all(&delegates[..=i], pod, bin_dir, host_netns);
                return Err(e);
            }
        }
    }
    Ok(results)
}

/// Runs DEL for every delegate, last first; all are tried, the first error is returned.
pub fn del_all(
    delegates: &[Delegate],
    pod: &Attachment,
    bin_dir: &Path,
    host_netns: &str,
) -> Result<()> {
    let mut first = None;
    for d in delegates.iter().rev() {
        if let Err(e) = cni::del(&d.config, &attachment_for(pod, d), bin_dir, host_netns) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Points the pod's default route(s) at the gateways a selection asked for with
/// `default-route`, replacing the default network's default route of the same family.
pub fn apply_default_routes(delegates: &[Delegate], pod_netns: &str) -> Result<()> {
    for d in delegates {
        for gw in &d.selection.default_route {
            let family = if gw.contains(':') { "-6" } else { "-4" };
            // `ip route del default` removes one route per call: repeat until none is left.
            while sys::run("ip", ["-n", pod_netns, family, "route", "del", "default"]).is_ok() {}
            sys::run(
                "ip",
                [
                    "-n", pod_netns, family, "route", "add", "default", "via", gw, "dev", &d.ifname,
                ],
            )?;
        }
    }
    Ok(())
}

/// One network-status entry from a CNI result (multi-net-spec "network-status"): the network's
/// name, the pod-side interface and its MAC, the IPs, whether it is the default network, DNS.
pub fn network_status(network: &str, result: &Value, default: bool) -> Value {
    let mut entry = Map::new();
    entry.insert("name".into(), json!(network));
    if let Some(iface) = result
        .get("interfaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .rfind(|i| {
            i.get("sandbox")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        })
    {
        if let Some(name) = iface.get("name") {
            entry.insert("interface".into(), name.clone());
        }
        if let Some(mac) = iface
            .get("mac")
            .filter(|m| m.as_str().is_some_and(|m| !m.is_empty()))
        {
            entry.insert("mac".into(), mac.clone());
        }
    }
    let ips = cni::result_ips(result).unwrap_or_default();
    if !ips.is_empty() {
        entry.insert("ips".into(), json!(ips));
    }
    if default {
        entry.insert("default".into(), json!(true));
    }
    let mut dns = Map::new();
    if let Some(d) = result.get("dns").and_then(Value::as_object) {
        for key in ["nameservers", "domain", "search", "options"] {
            match d.get(key) {
                Some(Value::String(s)) if !s.is_empty() => {
                    dns.insert(key.into(), json!(s));
                }
                Some(Value::Array(a)) if !a.is_empty() => {
                    dns.insert(key.into(), json!(a));
                }
                _ => {}
            }
        }
    }
    entry.insert("dns".into(), Value::Object(dns));
    Value::Object(entry)
}

/// The whole network-status annotation value: the default network, then each delegate.
pub fn network_status_annotation(
    default_network: &str,
    default_result: &Value,
    delegates: &[Delegate],
    results: &[Value],
) -> String {
    let mut list = vec![network_status(default_network, default_result, true)];
    list.extend(
        delegates
            .iter()
            .zip(results)
            .map(|(d, r)| network_status(&d.network, r, false)),
    );
    serde_json::to_string_pretty(&list).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> NodePaths {
        NodePaths {
            daemon_socket: "/node/s.sock".into(),
            host_local_dir: "/node/networks".into(),
        }
    }

    #[test]
    fn default_network_is_one_network_on_eth0() {
        let d = parse_default_network("kube-system/ovn-attach", "default").unwrap();
        assert_eq!(
            (d.namespace.as_str(), d.name.as_str(), d.interface.as_str()),
            ("kube-system", "ovn-attach", "eth0")
        );
        assert_eq!(parse_default_network("a", "ns").unwrap().namespace, "ns");
        assert!(parse_default_network("a,b", "ns").is_err());
        assert!(parse_default_network("a@net1", "ns").is_err());
        assert!(parse_default_network("", "ns").is_err());
    }

    #[test]
    fn comma_form_takes_namespace_and_interface() {
        let n = parse_networks("macvlan, other/br@eth9 ,x@net5", "team").unwrap();
        assert_eq!(
            n.iter()
                .map(|n| (n.namespace.as_str(), n.name.as_str(), n.interface.as_str()))
                .collect::<Vec<_>>(),
            [
                ("team", "macvlan", ""),
                ("other", "br", "eth9"),
                ("team", "x", "net5")
            ]
        );
        assert!(parse_networks("a/b/c", "ns").is_err());
        assert!(parse_networks("Bad_Name", "ns").is_err());
        assert!(parse_networks("a@b@c", "ns").is_err());
        assert!(parse_networks("", "ns").unwrap().is_empty());
    }

    #[test]
    fn json_form_takes_every_request() {
        let n = parse_networks(
            r#"[{"name":"m","interface":"ext0","ips":["172.19.0.50/24"],"mac":"02:00:00:00:00:01",
                "default-route":["172.19.0.100"],"cni-args":{"foo":"bar"}},
               {"name":"b","namespace":"kube-system"}]"#,
            "default",
        )
        .unwrap();
        assert_eq!(n[0].namespace, "default");
        assert_eq!(n[0].interface, "ext0");
        assert_eq!(n[0].ips, ["172.19.0.50/24"]);
        assert_eq!(n[0].mac, "02:00:00:00:00:01");
        assert_eq!(n[0].default_route, ["172.19.0.100"]);
        assert_eq!(n[0].cni_args.as_ref().unwrap()["foo"], "bar");
        assert_eq!(n[1].namespace, "kube-system");
        assert!(parse_networks(r#"[{"namespace":"x"}]"#, "d").is_err());
        assert!(parse_networks("[nope", "d").is_err());
    }

    #[test]
    fn delegates_get_names_interfaces_and_runtime_config_by_capability() {
        let sel = NetworkSelection {
            name: "mv".into(),
            namespace: "default".into(),
            ips: vec!["172.19.0.50/24".into()],
            mac: "02:00:00:00:00:01".into(),
            ..NetworkSelection::default()
        };
        let d = delegate(
            &sel,
            2,
            r#"{"cniVersion":"0.4.0","type":"macvlan","master":"eth1","capabilities":{"ips":true},
                "ipam":{"type":"static"}}"#,
            &paths(),
        )
        .unwrap();
        assert_eq!(d.ifname, "net2");
        assert_eq!(d.network, "default/mv");
        assert_eq!(
            d.config.name, "mv",
            "a NAD config without name gets the NAD's"
        );
        let p = &d.config.plugins[0];
        assert_eq!(p["runtimeConfig"], json!({"ips": ["172.19.0.50/24"]}));
        let list = delegate(
            &NetworkSelection {
                interface: "eth7".into(),
                ..sel.clone()
            },
            1,
            r#"{"cniVersion":"1.0.0","name":"own","plugins":[
                {"type":"kube-ovn","server_socket":"/run/openvswitch/kube-ovn-daemon.sock"},
                {"type":"macvlan","ipam":{"type":"kube-ovn","server_socket":"/x"}},
                {"type":"tuning","capabilities":{"mac":true}}]}"#,
            &paths(),
        )
        .unwrap();
        assert_eq!(list.ifname, "eth7");
        assert_eq!(list.config.name, "own");
        let ps = &list.config.plugins;
        assert!(ps[0].get("runtimeConfig").is_none());
        assert_eq!(ps[0]["server_socket"], "/node/s.sock");
        assert_eq!(ps[1]["ipam"]["server_socket"], "/node/s.sock");
        assert_eq!(ps[2]["runtimeConfig"], json!({"mac": "02:00:00:00:00:01"}));
        assert!(delegate(&sel, 1, "[]", &paths()).is_err());
        let hl = delegate(
            &sel,
            1,
            r#"{"cniVersion":"0.3.1","type":"macvlan","ipam":{"type":"host-local","subnet":"10.0.0.0/24"}}"#,
            &paths(),
        )
        .unwrap();
        assert_eq!(hl.config.plugins[0]["ipam"]["dataDir"], "/node/networks");
        let own = delegate(
            &sel,
            1,
            r#"{"cniVersion":"0.3.1","type":"macvlan","ipam":{"type":"host-local","dataDir":"/d"}}"#,
            &paths(),
        )
        .unwrap();
        assert_eq!(own.config.plugins[0]["ipam"]["dataDir"], "/d");
    }

    #[test]
    fn status_entries_follow_the_results() {
        let r = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "net1", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/run/netns/x"}],
            "ips": [{"address": "172.19.0.50/24", "interface": 0}],
            "dns": {"nameservers": ["10.96.0.10"]}
        });
        assert_eq!(
            network_status("default/mv", &r, false),
            json!({"name": "default/mv", "interface": "net1", "mac": "aa:bb:cc:dd:ee:ff",
                   "ips": ["172.19.0.50"], "dns": {"nameservers": ["10.96.0.10"]}})
        );
        let d = network_status(
            "kube-ovn",
            &json!({"ips": [{"address": "10.16.0.2/16"}]}),
            true,
        );
        assert_eq!(
            d,
            json!({"name": "kube-ovn", "ips": ["10.16.0.2"], "default": true, "dns": {}})
        );
    }
}
