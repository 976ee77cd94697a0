//! Multus attachments of pods (upstream's `getPodAttachmentNet`): which of a pod's network
//! selections kube-ovn serves — as the NIC's plugin (`<nad>.<ns>.ovn`, a logical switch port) or
//! as another plugin's IPAM (`<nad>.<ns>`, addresses only) — from which subnet, and the
//! annotations each such NIC carries. Everything here but the watch is pure; the pod reconciler
//! does the writes.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::store::Writer;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use serde::Deserialize;
use tracing::{info, warn};

use kube_ovn_common::annotations::{self as ann, Field};
use kube_ovn_common::attachment::{
    self, AttachError, NadKind, NetworkSelection, DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION,
};
use kube_ovn_common::crd::Subnet;

/// The API group/version of NetworkAttachmentDefinitions.
pub const NAD_API_VERSION: &str = "k8s.cni.cncf.io/v1";
/// Their kind.
pub const NAD_KIND: &str = "NetworkAttachmentDefinition";

/// A NetworkAttachmentDefinition as the controller reads it: its CNI configuration only.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NetworkAttachmentDefinition {
    /// Name and namespace.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The configuration.
    #[serde(default)]
    pub spec: NadSpec,
}

/// `spec` of a NetworkAttachmentDefinition.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NadSpec {
    /// The delegate's CNI configuration (a JSON text; empty means the plugin's default).
    #[serde(default)]
    pub config: String,
}

impl kube::Resource for NetworkAttachmentDefinition {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        NAD_KIND.into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "k8s.cni.cncf.io".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "network-attachment-definitions".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Whether the API server serves NetworkAttachmentDefinitions (upstream's
/// `isNetAttachCRDInstalled`, by discovery).
pub async fn crd_installed(client: &kube::Client) -> Result<bool, kube::Error> {
    match client.list_api_group_resources(NAD_API_VERSION).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.kind == NAD_KIND)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// How often a missing NetworkAttachmentDefinition CRD is looked for again (upstream: 10 s).
pub const CRD_RECHECK: Duration = Duration::from_secs(10);

/// Fills `writer` from a watch of every NetworkAttachmentDefinition, once the CRD exists
/// (looked for every [`CRD_RECHECK`] until then, as upstream does); never returns.
pub async fn follow(client: kube::Client, writer: Writer<NetworkAttachmentDefinition>) {
    loop {
        match crd_installed(&client).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => warn!("looking for the NetworkAttachmentDefinition CRD: {e}"),
        }
        tokio::time::sleep(CRD_RECHECK).await;
    }
    info!("NetworkAttachmentDefinition CRD found, watching attachments");
    let stream = reflector::reflector(
        writer,
        watcher(
            Api::<NetworkAttachmentDefinition>::all(client),
            watcher::Config::default(),
        ),
    )
    .default_backoff();
    futures::pin_mut!(stream);
    while let Some(ev) = stream.next().await {
        if let Err(e) = ev {
            warn!("watching NetworkAttachmentDefinitions: {e}");
        }
    }
}

/// One attachment kube-ovn serves for a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachNet {
    /// The annotation prefix and port suffix (`<nad>.<ns>.ovn`, or `<nad>.<ns>` for IPAM).
    pub provider: String,
    /// Plugin (a logical switch port) or IPAM only.
    pub kind: NadKind,
    /// The subnet its addresses come from.
    pub subnet: String,
    /// The selection that asked for it (interface, static IPs and MAC).
    pub selection: NetworkSelection,
    /// Whether `v1.multus-cni.io/default-network` names it (it then replaces the `ovn` NIC).
    pub is_default: bool,
}

/// Why a pod's attachments cannot be served (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// A networks annotation or a definition's configuration is malformed: nothing changes
    /// until someone edits it.
    Invalid(AttachError),
    /// The selection names a definition that does not exist (or is not known yet).
    NadNotFound(String),
    /// No subnet has the attachment's provider (or the subnet the pod names does not exist).
    Unbound(String),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::Invalid(e) => e.fmt(f),
            ResolveError::NadNotFound(nad) => {
                write!(f, "network attachment definition {nad} not found")
            }
            ResolveError::Unbound(provider) => {
                write!(f, "provider {provider} is not bound to any subnet")
            }
        }
    }
}

/// Whether the pod replaces its default network by an attachment (then the `ovn` NIC is not
/// allocated, as upstream's `getPodKubeovnNets`).
pub fn has_other_default_network(annotations: &BTreeMap<String, String>) -> bool {
    annotations.contains_key(DEFAULT_NETWORK_ANNOTATION)
}

/// Whether the pod lists any network selection (attachments or a replaced default network).
pub fn has_selections(annotations: &BTreeMap<String, String>) -> bool {
    [DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION]
        .iter()
        .any(|k| annotations.get(*k).is_some_and(|v| !v.trim().is_empty()))
}

/// The pod's attachments kube-ovn serves, in selection order (the default-network one first),
/// each with its provider and subnet. `nad_config` gives a definition's `spec.config` by
/// (namespace, name). Definitions naming neither kube-ovn nor its IPAM are skipped.
pub fn resolve(
    pod_namespace: &str,
    annotations: &BTreeMap<String, String>,
    nad_config: &dyn Fn(&str, &str) -> Option<String>,
    subnets: &[Arc<Subnet>],
) -> Result<Vec<AttachNet>, ResolveError> {
    let mut selections = Vec::new();
    for key in [DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION] {
        if let Some(v) = annotations.get(key).filter(|v| !v.trim().is_empty()) {
            selections.extend(
                attachment::parse_networks(v, pod_namespace).map_err(ResolveError::Invalid)?,
            );
        }
    }
    let default_network = annotations
        .get(DEFAULT_NETWORK_ANNOTATION)
        .map(String::as_str)
        .unwrap_or("");
    let mut counts: HashMap<(String, String), usize> = HashMap::new();
    for s in &selections {
        *counts
            .entry((s.namespace.clone(), s.name.clone()))
            .or_default() += 1;
    }
    let subnet_with_provider = |p: &str| {
        subnets
            .iter()
            .find(|s| s.spec.provider == p)
            .map(|s| s.name_any())
    };
    let mut out = Vec::new();
    for s in selections {
        let Some(config) = nad_config(&s.namespace, &s.name) else {
            return Err(ResolveError::NadNotFound(format!(
                "{}/{}",
                s.namespace, s.name
            )));
        };
        let kind = attachment::nad_kind(&config).map_err(ResolveError::Invalid)?;
        let (provider, subnet) = match kind {
            NadKind::Other => continue,
            NadKind::Ovn => {
                let repeated = counts[&(s.namespace.clone(), s.name.clone())] > 1;
                let provider = attachment::ovn_provider(
                    &s.name,
                    &s.namespace,
                    repeated.then_some(s.interface.as_str()),
                );
                let named = annotations
                    .get(ann::key(&provider, Field::LogicalSwitch).as_ref())
                    .filter(|v| !v.is_empty())
                    .cloned();
                let subnet = match named {
                    Some(n) if subnets.iter().any(|x| x.name_any() == n) => Some(n),
                    Some(_) => None,
                    // The subnet's provider has no interface suffix.
                    None => subnet_with_provider(
                        provider
                            .strip_suffix(&format!(".{}", s.interface))
                            .filter(|_| !s.interface.is_empty())
                            .unwrap_or(&provider),
                    ),
                };
                (provider, subnet)
            }
            NadKind::Ipam => {
                let provider = attachment::ipam_provider(&s.name, &s.namespace);
                let subnet = subnet_with_provider(&provider);
                (provider, subnet)
            }
        };
        let Some(subnet) = subnet else {
            return Err(ResolveError::Unbound(provider));
        };
        out.push(AttachNet {
            is_default: attachment::is_default_network(default_network, &s),
            provider,
            kind,
            subnet,
            selection: s,
        });
    }
    Ok(out)
}

/// Providers of the pod's ports that nothing wants any more (upstream's hot-unplug in
/// `syncKubeOvnNet`): attachment ports (`<pod>.<ns>.<provider>`) no current attachment names,
/// and the default port (`<pod>.<ns>`, provider `ovn`) once `wants_default` is false because an
/// attachment replaced the default network. Their ports, IP CRs and addresses go, and an
/// attachment's annotations with them.
pub fn stale_providers(
    pod: &str,
    namespace: &str,
    ports: &[String],
    nets: &[AttachNet],
    wants_default: bool,
) -> Vec<String> {
    let default_port = format!("{pod}.{namespace}");
    let prefix = format!("{default_port}.");
    let mut out: Vec<String> = ports
        .iter()
        .filter_map(|p| p.strip_prefix(&prefix))
        .filter(|provider| !provider.is_empty() && !nets.iter().any(|n| n.provider == *provider))
        .map(str::to_string)
        .collect();
    if !wants_default && ports.contains(&default_port) {
        out.push(kube_ovn_common::names::DEFAULT_PROVIDER.to_string());
    }
    out
}

/// Whether a subnet's provider makes it a logical switch (upstream's `isOvnSubnet`).
pub fn is_ovn_subnet(subnet: &Subnet) -> bool {
    crate::subnet_rules::is_ovn_provider(&subnet.spec.provider)
}

/// What an attachment NIC got, for its annotations.
#[derive(Debug, Clone)]
pub struct NicAllocation<'a> {
    /// The attachment.
    pub net: &'a AttachNet,
    /// Its subnet.
    pub subnet: &'a Subnet,
    /// Addresses, v4 first.
    pub ips: Vec<IpAddr>,
    /// MAC (published only on a logical switch's NIC).
    pub mac: String,
    /// The VPC router the subnet is on.
    pub vpc: String,
    /// The node the pod is bound to ("" before scheduling).
    pub node: String,
    /// `--pod-nic-type`, written when the pod does not name one.
    pub pod_nic_type: String,
}

/// The `<provider>.kubernetes.io/*` annotations an attachment NIC carries, as upstream's
/// `reconcileAllocateSubnets`/`reconcileRouteSubnets` write them (`None` removes a key): on a
/// logical switch the MAC, switch, NIC type, router and `routed` once the pod is bound; for
/// IPAM only, addresses, CIDR and gateway, and no MAC, switch or NIC type.
pub fn nic_annotations(
    current: &BTreeMap<String, String>,
    a: &NicAllocation<'_>,
) -> Vec<(String, Option<String>)> {
    let p = a.net.provider.as_str();
    let k = |f: Field| ann::key(p, f).into_owned();
    let ovn = is_ovn_subnet(a.subnet);
    let mut out = vec![
        (k(Field::IpAddress), Some(ann::format_ips(&a.ips))),
        (k(Field::MacAddress), ovn.then(|| a.mac.clone())),
        (k(Field::Cidr), Some(a.subnet.spec.cidr_block.clone())),
        (k(Field::Gateway), Some(a.subnet.spec.gateway.clone())),
        (k(Field::LogicalSwitch), ovn.then(|| a.subnet.name_any())),
        (k(Field::Allocated), Some("true".into())),
    ];
    if !ovn {
        out.push((k(Field::PodNicType), None));
    } else if !current.contains_key(k(Field::PodNicType).as_str()) {
        out.push((k(Field::PodNicType), Some(a.pod_nic_type.clone())));
    }
    if a.net.kind == NadKind::Ovn {
        out.push((k(Field::LogicalRouter), Some(a.vpc.clone())));
    }
    if ovn && !a.node.is_empty() {
        out.push((k(Field::Routed), Some("true".into())));
    }
    out
}

/// The annotation keys of `provider`'s NIC on the pod (all of `<provider>.kubernetes.io/…`),
/// removed when the attachment goes.
pub fn provider_keys(annotations: &BTreeMap<String, String>, provider: &str) -> Vec<String> {
    let prefix = format!("{provider}.kubernetes.io/");
    annotations
        .keys()
        .filter(|k| k.starts_with(&prefix))
        .cloned()
        .collect()
}

/// The addresses an attachment asks for, in upstream's precedence: the selection's `ips`
/// (upstream copies them into the annotation), `<provider>.kubernetes.io/ip_address`, then the
/// per-interface `<nad>.<ns>.kubernetes.io/ip_address.<iface>`. Empty: none asked.
pub fn requested_ips(
    annotations: &BTreeMap<String, String>,
    net: &AttachNet,
) -> Result<Vec<IpAddr>, String> {
    let s = &net.selection;
    if !s.ips.is_empty() {
        return ann::parse_ips(&s.ips.join(","));
    }
    let provider_ips = annotations
        .get(ann::key(&net.provider, Field::IpAddress).as_ref())
        .filter(|v| !v.is_empty());
    let per_iface = (!s.interface.is_empty())
        .then(|| attachment::per_interface_ip_key(&s.name, &s.namespace, &s.interface))
        .and_then(|k| annotations.get(&k))
        .filter(|v| !v.is_empty());
    match provider_ips.or(per_iface) {
        Some(v) => ann::parse_ips(v),
        None => Ok(Vec::new()),
    }
}

/// The MAC an attachment asks for: the per-interface annotation, then the selection's `mac`,
/// then `<provider>.kubernetes.io/mac_address`; IPAM-only NICs publish no MAC, so they ask none.
pub fn requested_mac(annotations: &BTreeMap<String, String>, net: &AttachNet) -> Option<String> {
    let s = &net.selection;
    let per_iface = (!s.interface.is_empty())
        .then(|| attachment::per_interface_mac_key(&s.name, &s.namespace, &s.interface))
        .and_then(|k| annotations.get(&k).cloned());
    per_iface
        .or_else(|| (!s.mac.is_empty()).then(|| s.mac.clone()))
        .or_else(|| {
            (net.kind == NadKind::Ovn)
                .then(|| annotations.get(ann::key(&net.provider, Field::MacAddress).as_ref()))
                .flatten()
                .cloned()
        })
        .filter(|m| !m.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_ovn_common::crd::subnet::SubnetSpec;

    fn subnet(name: &str, provider: &str) -> Arc<Subnet> {
        Arc::new(Subnet::new(
            name,
            SubnetSpec {
                cidr_block: "172.17.0.0/16".into(),
                gateway: "172.17.0.1".into(),
                provider: provider.into(),
                ..SubnetSpec::default()
            },
        ))
    }

    fn annos(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const OVN: &str = r#"{"cniVersion":"0.3.0","type":"kube-ovn","server_socket":"/run/openvswitch/kube-ovn-daemon.sock","provider":"attachnet.default.ovn"}"#;
    const MACVLAN: &str = r#"{"cniVersion":"0.3.0","type":"macvlan","master":"eth1","mode":"bridge","ipam":{"type":"kube-ovn","server_socket":"/run/openvswitch/kube-ovn-daemon.sock","provider":"mv.default"}}"#;

    fn nads(ns: &str, name: &str) -> Option<String> {
        match (ns, name) {
            ("default", "attachnet") => Some(OVN.into()),
            ("default", "mv") => Some(MACVLAN.into()),
            ("default", "bridge") => {
                Some(r#"{"type":"bridge","ipam":{"type":"host-local"}}"#.into())
            }
            _ => None,
        }
    }

    fn subnets() -> Vec<Arc<Subnet>> {
        vec![
            subnet("ovn-default", "ovn"),
            subnet("attach-subnet", "attachnet.default.ovn"),
            subnet("mv-subnet", "mv.default"),
            subnet("other-attach", "attachnet.default.ovn"),
        ]
    }

    #[test]
    fn plugin_and_ipam_attachments_find_their_subnets() {
        let a = annos(&[(NETWORKS_ANNOTATION, "default/attachnet, mv@net7, bridge")]);
        let nets = resolve("default", &a, &nads, &subnets()).unwrap();
        assert_eq!(
            nets.len(),
            2,
            "the bridge/host-local definition is not ours"
        );
        assert_eq!(nets[0].provider, "attachnet.default.ovn");
        assert_eq!(nets[0].kind, NadKind::Ovn);
        assert_eq!(nets[0].subnet, "attach-subnet");
        assert_eq!(nets[1].provider, "mv.default");
        assert_eq!(nets[1].kind, NadKind::Ipam);
        assert_eq!(nets[1].subnet, "mv-subnet");
        assert_eq!(nets[1].selection.interface, "net7");
        assert!(!nets[0].is_default && !has_other_default_network(&a));
        assert!(has_selections(&a) && !has_selections(&annos(&[(NETWORKS_ANNOTATION, " ")])));
    }

    #[test]
    fn the_logical_switch_annotation_picks_among_subnets() {
        let a = annos(&[
            (NETWORKS_ANNOTATION, "attachnet"),
            (
                "attachnet.default.ovn.kubernetes.io/logical_switch",
                "other-attach",
            ),
        ]);
        let nets = resolve("default", &a, &nads, &subnets()).unwrap();
        assert_eq!(nets[0].subnet, "other-attach");
        let mut missing = a.clone();
        missing.insert(
            "attachnet.default.ovn.kubernetes.io/logical_switch".into(),
            "nope".into(),
        );
        assert_eq!(
            resolve("default", &missing, &nads, &subnets()),
            Err(ResolveError::Unbound("attachnet.default.ovn".into()))
        );
    }

    #[test]
    fn a_definition_attached_twice_gets_interface_providers() {
        let a = annos(&[(
            NETWORKS_ANNOTATION,
            r#"[{"name":"attachnet","interface":"net1"},{"name":"attachnet","interface":"net2","ips":["172.17.0.9"]}]"#,
        )]);
        let nets = resolve("default", &a, &nads, &subnets()).unwrap();
        assert_eq!(nets[0].provider, "attachnet.default.ovn.net1");
        assert_eq!(nets[1].provider, "attachnet.default.ovn.net2");
        assert_eq!(nets[1].subnet, "attach-subnet");
        assert_eq!(
            requested_ips(&a, &nets[1]).unwrap(),
            ["172.17.0.9".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn the_default_network_annotation_counts_as_an_attachment() {
        let a = annos(&[(DEFAULT_NETWORK_ANNOTATION, "default/attachnet")]);
        let nets = resolve("default", &a, &nads, &subnets()).unwrap();
        assert!(nets[0].is_default && has_other_default_network(&a));
    }

    #[test]
    fn unusable_selections_are_typed_errors() {
        let bad = annos(&[(NETWORKS_ANNOTATION, "[{")]);
        assert!(matches!(
            resolve("default", &bad, &nads, &subnets()),
            Err(ResolveError::Invalid(_))
        ));
        let absent = annos(&[(NETWORKS_ANNOTATION, "ghost")]);
        assert_eq!(
            resolve("default", &absent, &nads, &subnets()),
            Err(ResolveError::NadNotFound("default/ghost".into()))
        );
        let unbound = annos(&[(NETWORKS_ANNOTATION, "mv")]);
        assert_eq!(
            resolve("default", &unbound, &nads, &[subnet("x", "ovn")]),
            Err(ResolveError::Unbound("mv.default".into()))
        );
        let broken = |_: &str, _: &str| Some("{\"name\":1}".to_string());
        assert!(matches!(
            resolve(
                "default",
                &annos(&[(NETWORKS_ANNOTATION, "x")]),
                &broken,
                &[]
            ),
            Err(ResolveError::Invalid(AttachError::Config(_)))
        ));
    }

    #[test]
    fn annotations_of_a_switch_nic_and_of_an_ipam_nic() {
        let subnets = subnets();
        let a = annos(&[(NETWORKS_ANNOTATION, "attachnet,mv")]);
        let nets = resolve("default", &a, &nads, &subnets).unwrap();
        let ip: IpAddr = "172.17.0.2".parse().unwrap();
        let alloc = |i: usize, node: &str| NicAllocation {
            net: &nets[i],
            subnet: &subnets[if i == 0 { 1 } else { 2 }],
            ips: vec![ip],
            mac: "00:00:00:01:02:03".into(),
            vpc: "ovn-cluster".into(),
            node: node.into(),
            pod_nic_type: "veth-pair".into(),
        };
        let ovn: BTreeMap<_, _> = nic_annotations(&a, &alloc(0, "n1")).into_iter().collect();
        let p = "attachnet.default.ovn.kubernetes.io";
        assert_eq!(
            ovn[&format!("{p}/ip_address")].as_deref(),
            Some("172.17.0.2")
        );
        assert_eq!(
            ovn[&format!("{p}/mac_address")].as_deref(),
            Some("00:00:00:01:02:03")
        );
        assert_eq!(ovn[&format!("{p}/cidr")].as_deref(), Some("172.17.0.0/16"));
        assert_eq!(ovn[&format!("{p}/gateway")].as_deref(), Some("172.17.0.1"));
        assert_eq!(
            ovn[&format!("{p}/logical_switch")].as_deref(),
            Some("attach-subnet")
        );
        assert_eq!(
            ovn[&format!("{p}/pod_nic_type")].as_deref(),
            Some("veth-pair")
        );
        assert_eq!(
            ovn[&format!("{p}/logical_router")].as_deref(),
            Some("ovn-cluster")
        );
        assert_eq!(ovn[&format!("{p}/allocated")].as_deref(), Some("true"));
        assert_eq!(ovn[&format!("{p}/routed")].as_deref(), Some("true"));
        let unbound: BTreeMap<_, _> = nic_annotations(&a, &alloc(0, "")).into_iter().collect();
        assert!(!unbound.contains_key(&format!("{p}/routed")));
        let ipam: BTreeMap<_, _> = nic_annotations(&a, &alloc(1, "n1")).into_iter().collect();
        let q = "mv.default.kubernetes.io";
        assert_eq!(
            ipam[&format!("{q}/ip_address")].as_deref(),
            Some("172.17.0.2")
        );
        assert_eq!(ipam[&format!("{q}/mac_address")], None);
        assert_eq!(ipam[&format!("{q}/logical_switch")], None);
        assert_eq!(ipam[&format!("{q}/pod_nic_type")], None);
        assert!(!ipam.contains_key(&format!("{q}/routed")));
        assert!(!ipam.contains_key(&format!("{q}/logical_router")));
    }

    #[test]
    fn requests_follow_upstreams_precedence() {
        let subnets = subnets();
        let a = annos(&[
            (
                NETWORKS_ANNOTATION,
                r#"[{"name":"attachnet","interface":"net1","mac":"00:00:00:0a:0b:0c"}]"#,
            ),
            (
                "attachnet.default.kubernetes.io/ip_address.net1",
                "172.17.0.50",
            ),
            (
                "attachnet.default.ovn.kubernetes.io/mac_address",
                "00:00:00:ff:ff:ff",
            ),
        ]);
        let nets = resolve("default", &a, &nads, &subnets).unwrap();
        assert_eq!(
            requested_ips(&a, &nets[0]).unwrap(),
            ["172.17.0.50".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            requested_mac(&a, &nets[0]).as_deref(),
            Some("00:00:00:0a:0b:0c")
        );
        let mut b = a.clone();
        b.insert(
            "attachnet.default.ovn.kubernetes.io/ip_address".into(),
            "172.17.0.7".into(),
        );
        assert_eq!(
            requested_ips(&b, &nets[0]).unwrap(),
            ["172.17.0.7".parse::<IpAddr>().unwrap()]
        );
        b.insert(
            "attachnet.default.ovn.kubernetes.io/ip_address".into(),
            "bad".into(),
        );
        assert!(requested_ips(&b, &nets[0]).is_err());
        let ipam = resolve(
            "default",
            &annos(&[(NETWORKS_ANNOTATION, "mv")]),
            &nads,
            &subnets,
        )
        .unwrap();
        let with_mac = annos(&[("mv.default.kubernetes.io/mac_address", "00:00:00:ff:ff:ff")]);
        assert_eq!(requested_mac(&with_mac, &ipam[0]), None);
    }

    #[test]
    fn ports_no_attachment_wants_are_stale() {
        let a = annos(&[(NETWORKS_ANNOTATION, "attachnet")]);
        let nets = resolve("default", &a, &nads, &subnets()).unwrap();
        let ports = [
            "p.default".to_string(),
            "p.default.attachnet.default.ovn".to_string(),
            "p.default.gone.default.ovn".to_string(),
        ];
        assert_eq!(
            stale_providers("p", "default", &ports, &nets, true),
            ["gone.default.ovn"]
        );
        assert_eq!(
            stale_providers("p", "default", &ports, &nets, false),
            ["gone.default.ovn", "ovn"]
        );
        let keys = provider_keys(
            &annos(&[
                ("gone.default.ovn.kubernetes.io/ip_address", "1"),
                ("gone.default.ovn.kubernetes.io/allocated", "true"),
                ("ovn.kubernetes.io/ip_address", "2"),
            ]),
            "gone.default.ovn",
        );
        assert_eq!(keys.len(), 2);
    }
}
