//! Multus attachments as upstream reads them: the pod's network selections
//! (`k8s.v1.cni.cncf.io/networks`, `v1.multus-cni.io/default-network`, parsed like Multus'
//! `ParseNetworkAnnotation`), what a NetworkAttachmentDefinition's CNI configuration makes of
//! kube-ovn (the NIC's plugin, its IPAM only, or nothing), and the provider names derived from
//! them. Pure: the controller decides allocations from these, and the sandbox's Multus stand-in
//! can read the same annotations with the same rules.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// The pod annotation listing the attachments Multus adds (`net1`, `net2`, …).
pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";
/// The pod annotation replacing the cluster's default network by an attachment.
pub const DEFAULT_NETWORK_ANNOTATION: &str = "v1.multus-cni.io/default-network";
/// The pod annotation Multus writes with every interface's result.
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";
/// The CNI `type` (and IPAM `type`) naming kube-ovn.
pub const CNI_TYPE: &str = "kube-ovn";

/// One network selection (Multus' `NetworkSelectionElement`, the members kube-ovn reads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSelection {
    /// The NetworkAttachmentDefinition's name.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// Its namespace (the pod's when not given).
    #[serde(default, deserialize_with = "null_default")]
    pub namespace: String,
    /// The interface name asked for (`name@net1` or `"interface"`), empty for Multus' choice.
    #[serde(
        default,
        rename = "interface",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub interface: String,
    /// Static addresses asked for (`"ips"`).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub ips: Vec<String>,
    /// A static MAC asked for (`"mac"`).
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub mac: String,
    /// Gateways this attachment should carry the default route through (`"default-route"`).
    #[serde(
        default,
        rename = "default-route",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub default_route: Vec<String>,
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Why an attachment annotation or configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachError {
    /// The networks annotation is malformed (Multus rejects it the same way).
    Annotation(String),
    /// A NetworkAttachmentDefinition's `spec.config` is not a CNI configuration.
    Config(String),
}

impl std::fmt::Display for AttachError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttachError::Annotation(why) => write!(f, "invalid network selection: {why}"),
            AttachError::Config(why) => write!(f, "invalid attachment configuration: {why}"),
        }
    }
}

impl std::error::Error for AttachError {}

/// Parses a networks annotation: a JSON list of selections when the text contains any of
/// `[`, `{` or `"`, else a comma list of `[namespace/]name[@interface]` (each part a DNS-1123
/// label). Selections without a namespace get `default_namespace`.
pub fn parse_networks(
    value: &str,
    default_namespace: &str,
) -> Result<Vec<NetworkSelection>, AttachError> {
    let mut out: Vec<NetworkSelection> = if value.contains(['[', '{', '"']) {
        serde_json::from_str(value).map_err(|e| {
            AttachError::Annotation(format!("failed to parse the JSON selection list: {e}"))
        })?
    } else {
        value
            .split(',')
            .map(|item| parse_item(item.trim()))
            .collect::<Result<_, _>>()?
    };
    for n in &mut out {
        if n.namespace.is_empty() {
            n.namespace = default_namespace.to_string();
        }
    }
    Ok(out)
}

fn parse_item(item: &str) -> Result<NetworkSelection, AttachError> {
    let slash: Vec<&str> = item.split('/').collect();
    let (namespace, rest) = match slash.as_slice() {
        [name] => ("", *name),
        [ns, name] => (ns.trim(), *name),
        _ => {
            return Err(AttachError::Annotation(format!(
                "{item:?}: invalid network object (failed at '/')"
            )))
        }
    };
    let at: Vec<&str> = rest.split('@').collect();
    let (name, interface) = match at.as_slice() {
        [name] => (name.trim(), ""),
        [name, iface] => (name.trim(), iface.trim()),
        _ => {
            return Err(AttachError::Annotation(format!(
                "{item:?}: invalid network object (failed at '@')"
            )))
        }
    };
    for part in [namespace, name, interface] {
        if !part.is_empty() && !is_dns1123_label(part) {
            return Err(AttachError::Annotation(format!(
                "failed to parse network object: {part:?}"
            )));
        }
    }
    Ok(NetworkSelection {
        name: name.to_string(),
        namespace: namespace.to_string(),
        interface: interface.to_string(),
        ..NetworkSelection::default()
    })
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || *c == b'-')
}

/// What a NetworkAttachmentDefinition's configuration makes of kube-ovn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NadKind {
    /// kube-ovn is the NIC's plugin: a second OVN NIC, provider `<nad>.<ns>.ovn`.
    Ovn,
    /// Another plugin (macvlan, ipvlan, …) with `ipam.type: kube-ovn`: provider `<nad>.<ns>`.
    Ipam,
    /// kube-ovn has no part in it (or the configuration is empty).
    Other,
}

/// Classifies a NetworkAttachmentDefinition's `spec.config` as upstream's `IsOvnNetwork` and
/// `isKubeOVNIPAMNetwork` do: a single plugin's `type`/`ipam.type`, or (without a top-level
/// `type`) any plugin of a conflist's `plugins`.
pub fn nad_kind(config: &str) -> Result<NadKind, AttachError> {
    if config.is_empty() {
        return Ok(NadKind::Other);
    }
    let v: Value = serde_json::from_str(config)
        .map_err(|e| AttachError::Config(format!("error unmarshalling delegate config: {e}")))?;
    let type_of = |p: &Value| {
        p.get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let ipam_of = |p: &Value| {
        p.pointer("/ipam/type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let plugins: Vec<&Value> = if type_of(&v).is_empty() {
        match v.get("plugins").and_then(Value::as_array) {
            Some(list) => list.iter().collect(),
            None => {
                return Err(AttachError::Config(
                    "delegate must have the 'type' or 'plugins' field".into(),
                ))
            }
        }
    } else {
        vec![&v]
    };
    if plugins.iter().any(|p| type_of(p) == CNI_TYPE) {
        Ok(NadKind::Ovn)
    } else if plugins.iter().any(|p| ipam_of(p) == CNI_TYPE) {
        Ok(NadKind::Ipam)
    } else {
        Ok(NadKind::Other)
    }
}

/// The provider of a NIC kube-ovn plugs for attachment `name` in `namespace`:
/// `<name>.<namespace>.ovn`, with `.<interface>` appended when the pod attaches the same
/// definition more than once under explicit interface names (upstream's rule).
pub fn ovn_provider(name: &str, namespace: &str, repeated_interface: Option<&str>) -> String {
    match repeated_interface.filter(|i| !i.is_empty()) {
        Some(iface) => format!("{name}.{namespace}.ovn.{iface}"),
        None => format!("{name}.{namespace}.ovn"),
    }
}

/// The provider of a NIC kube-ovn only addresses (IPAM for another plugin): `<name>.<namespace>`.
pub fn ipam_provider(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}")
}

/// Whether `selection` is the one `v1.multus-cni.io/default-network` names (`name` or
/// `namespace/name`).
pub fn is_default_network(default_network: &str, selection: &NetworkSelection) -> bool {
    !default_network.is_empty()
        && (default_network == selection.name
            || default_network == format!("{}/{}", selection.namespace, selection.name))
}

/// The per-interface static address annotation upstream reads for an attachment listed with an
/// interface name: `<nad>.<ns>.kubernetes.io/ip_address.<interface>`.
pub fn per_interface_ip_key(name: &str, namespace: &str, interface: &str) -> String {
    format!("{name}.{namespace}.kubernetes.io/ip_address.{interface}")
}

/// The per-interface static MAC annotation: `<nad>.<ns>.kubernetes.io/mac_address.<interface>`.
pub fn per_interface_mac_key(name: &str, namespace: &str, interface: &str) -> String {
    format!("{name}.{namespace}.kubernetes.io/mac_address.{interface}")
}

/// The Service annotation naming an lb-svc Service's attachment provider `<nad>.<namespace>`
/// (upstream's `util.AttachmentProvider`); a LoadBalancer Service without it is not kube-ovn's.
pub const LB_SVC_ATTACHMENT_PROVIDER: &str = "ovn.kubernetes.io/attachmentprovider";
/// The provider when that annotation is empty (upstream's `lb-svc-attachment` in
/// `kube-system`).
pub const LB_SVC_DEFAULT_PROVIDER: &str = "lb-svc-attachment.kube-system";

/// An lb-svc Service's attachment provider from its annotations: the annotation, or
/// [`LB_SVC_DEFAULT_PROVIDER`] when missing or empty (shared by the controller and the agent in
/// the pod, so both read the same `<provider>.kubernetes.io/*` keys).
pub fn lb_svc_provider(service_annotations: &std::collections::BTreeMap<String, String>) -> String {
    match service_annotations.get(LB_SVC_ATTACHMENT_PROVIDER) {
        Some(p) if !p.is_empty() => p.clone(),
        _ => LB_SVC_DEFAULT_PROVIDER.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_lists_take_namespaces_and_interfaces() {
        let n = parse_networks(" attachnet , other/macvlan@net5,x@eth9", "pods").unwrap();
        assert_eq!(n.len(), 3);
        assert_eq!(
            (
                n[0].name.as_str(),
                n[0].namespace.as_str(),
                n[0].interface.as_str()
            ),
            ("attachnet", "pods", "")
        );
        assert_eq!(
            (
                n[1].name.as_str(),
                n[1].namespace.as_str(),
                n[1].interface.as_str()
            ),
            ("macvlan", "other", "net5")
        );
        assert_eq!(n[2].interface, "eth9");
    }

    #[test]
    fn bad_comma_items_are_refused_like_multus() {
        for bad in ["a/b/c", "a@b@c", "Upper", "-lead", "a/ trail-"] {
            assert!(
                matches!(parse_networks(bad, "ns"), Err(AttachError::Annotation(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn json_lists_carry_requests() {
        let n = parse_networks(
            r#"[{"name":"attachnet","namespace":"default","interface":"net1","ips":["10.1.0.9"],
                "mac":"00:00:00:11:22:33","default-route":["10.1.0.1"]},
               {"name":"macvlan","ips":null}]"#,
            "pods",
        )
        .unwrap();
        assert_eq!(n[0].interface, "net1");
        assert_eq!(n[0].ips, ["10.1.0.9"]);
        assert_eq!(n[0].mac, "00:00:00:11:22:33");
        assert_eq!(n[0].default_route, ["10.1.0.1"]);
        assert_eq!(n[1].namespace, "pods");
        assert!(n[1].ips.is_empty());
        assert!(parse_networks("[{\"name\": 5}]", "x").is_err());
        assert!(parse_networks("[{", "x").is_err());
    }

    #[test]
    fn configurations_name_kube_ovn_as_plugin_or_ipam() {
        let ovn = r#"{"cniVersion":"0.3.0","type":"kube-ovn","server_socket":"/run/openvswitch/kube-ovn-daemon.sock","provider":"attachnet.default.ovn"}"#;
        assert_eq!(nad_kind(ovn).unwrap(), NadKind::Ovn);
        let ipam = r#"{"type":"macvlan","master":"eth1","ipam":{"type":"kube-ovn","provider":"mv.default"}}"#;
        assert_eq!(nad_kind(ipam).unwrap(), NadKind::Ipam);
        let list = r#"{"name":"x","plugins":[{"type":"ipvlan","ipam":{"type":"kube-ovn"}},{"type":"tuning"}]}"#;
        assert_eq!(nad_kind(list).unwrap(), NadKind::Ipam);
        let list_ovn = r#"{"name":"x","plugins":[{"type":"kube-ovn"},{"type":"portmap"}]}"#;
        assert_eq!(nad_kind(list_ovn).unwrap(), NadKind::Ovn);
        let other = r#"{"type":"macvlan","ipam":{"type":"host-local"}}"#;
        assert_eq!(nad_kind(other).unwrap(), NadKind::Other);
        assert_eq!(nad_kind("").unwrap(), NadKind::Other);
        assert!(nad_kind("{").is_err());
        assert!(nad_kind(r#"{"name":"no-type"}"#).is_err());
    }

    #[test]
    fn providers_and_defaults_follow_upstream() {
        assert_eq!(ovn_provider("a", "ns", None), "a.ns.ovn");
        assert_eq!(ovn_provider("a", "ns", Some("net2")), "a.ns.ovn.net2");
        assert_eq!(ipam_provider("mv", "ns"), "mv.ns");
        let s = NetworkSelection {
            name: "a".into(),
            namespace: "ns".into(),
            ..Default::default()
        };
        assert!(is_default_network("a", &s) && is_default_network("ns/a", &s));
        assert!(!is_default_network("", &s) && !is_default_network("other/a", &s));
        assert_eq!(
            per_interface_ip_key("a", "ns", "net1"),
            "a.ns.kubernetes.io/ip_address.net1"
        );
    }
}
