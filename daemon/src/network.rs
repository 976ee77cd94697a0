//! What a pod's annotations say its network is, decided without any I/O: which annotations the
//! controller still owes, the parsed addresses/MAC/gateways/routes, the veth names and the
//! ADD reply built from all of that.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use kube_ovn_common::net;

use crate::protocol::{CniResponse, IpConfig, Route};

pub use kube_ovn_common::names::DEFAULT_PROVIDER;

/// Annotation suffixes the controller writes for a NIC on a logical switch, in the order they
/// are checked.
const REQUIRED: [&str; 5] = [
    "ip_address",
    "mac_address",
    "cidr",
    "gateway",
    "logical_switch",
];

/// What the controller writes for an IPAM-only NIC (no MAC, switch or NIC type: the delegating
/// plugin owns the interface).
const REQUIRED_IPAM: [&str; 2] = ["ip_address", "cidr"];

/// Whether the daemon plugs a NIC for `provider` (upstream: the provider ends with `ovn`, i.e.
/// the default network or a `<nad>.<ns>.ovn` attachment); otherwise kube-ovn is only another
/// plugin's IPAM and answers with addresses.
pub fn plugs_nic(provider: &str) -> bool {
    provider.ends_with(DEFAULT_PROVIDER)
}

/// Whether `provider`'s NIC waits for `routed=true` when it carries the default route
/// (upstream's `IsOvnProvider`: `ovn`, or three dot-separated parts ending in `ovn`).
fn routed_provider(provider: &str) -> bool {
    provider.is_empty()
        || provider == DEFAULT_PROVIDER
        || (provider.split('.').count() == 3 && provider.ends_with(".ovn"))
}

/// Whether the NIC `if_name` of `provider` carries the pod's default route:
/// `<provider>.kubernetes.io/default_route` when it says `true`/`false`, else only `eth0`
/// (upstream's rule: an attachment's `net1` gets its addresses and routes, not the gateway).
pub fn default_route(
    annotations: &BTreeMap<String, String>,
    provider: &str,
    if_name: &str,
) -> bool {
    match annotations
        .get(&annotation_key(provider, "default_route"))
        .map(String::as_str)
    {
        Some("true") => true,
        Some("false") => false,
        _ => if_name.is_empty() || if_name == "eth0",
    }
}

/// The provider whose annotations (and port) describe NIC `if_name`: `<provider>.<if_name>`
/// when the controller annotated that (one definition attached several times under explicit
/// interface names, upstream's `appendIfName`), else `provider`.
pub fn effective_provider(
    annotations: &BTreeMap<String, String>,
    provider: &str,
    if_name: &str,
) -> String {
    let with_ifname = format!("{provider}.{if_name}");
    if plugs_nic(provider)
        && !if_name.is_empty()
        && annotations.contains_key(&annotation_key(&with_ifname, "ip_address"))
    {
        with_ifname
    } else {
        provider.to_string()
    }
}

fn required(provider: &str) -> &'static [&'static str] {
    if plugs_nic(provider) {
        &REQUIRED
    } else {
        &REQUIRED_IPAM
    }
}

/// The provider a request means (an empty one is the default network, as the shim sends it).
pub fn provider(requested: &str) -> &str {
    if requested.is_empty() {
        DEFAULT_PROVIDER
    } else {
        requested
    }
}

/// Full annotation key for a provider, e.g. `ovn.kubernetes.io/ip_address`.
pub fn annotation_key(provider: &str, suffix: &str) -> String {
    format!("{provider}.kubernetes.io/{suffix}")
}

/// Whether every address annotation the controller writes for `provider` is there (the pod
/// may still wait for `routed=true`): where upstream's wait for an address ends and its wait
/// for the route begins.
pub fn has_address(annotations: &BTreeMap<String, String>, provider: &str) -> bool {
    required(provider).iter().all(|s| {
        annotations
            .get(&annotation_key(provider, s))
            .is_some_and(|v| !v.trim().is_empty())
    })
}

/// Whether the controller has written any annotation for `provider` on the pod, which proves
/// the provider exists (it allocated for it) without asking the API server.
pub fn has_annotations_of(annotations: &BTreeMap<String, String>, provider: &str) -> bool {
    let prefix = annotation_key(provider, "");
    annotations.keys().any(|k| k.starts_with(&prefix))
}

/// Host and container veth names (upstream `generateNicName`): `<id[:12]>_h` / `<id[:12]>_c` for
/// `eth0`, with any other ifname folded in so the names stay within 15 bytes.
pub fn veth_names(container_id: &str, if_name: &str) -> Result<(String, String), NetworkError> {
    if container_id.len() < 12 || !container_id.is_ascii() {
        return Err(NetworkError::Invalid(format!(
            "container id {container_id:?} is shorter than 12 ASCII characters"
        )));
    }
    if if_name == "eth0" || if_name.is_empty() {
        let id = &container_id[..12];
        return Ok((format!("{id}_h"), format!("{id}_c")));
    }
    let mut name = if_name;
    if name.starts_with("pod") && name.len() == 14 {
        // `get`: a request's ifname may be any UTF-8, and byte 10 need not end a character.
        name = name.get(3..name.len() - 4).unwrap_or(name);
    }
    let keep = 12usize
        .checked_sub(name.len())
        .ok_or_else(|| NetworkError::Invalid(format!("interface name {if_name:?} is too long")))?;
    let id = &container_id[..keep];
    Ok((format!("{id}_{name}_h"), format!("{id}_{name}_c")))
}

/// Why a pod's network cannot be configured (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// The controller has not written these annotations yet (full keys).
    #[error("missing annotations {}", .0.join(", "))]
    Missing(Vec<String>),
    /// An annotation is present but unusable.
    #[error("{0}")]
    Invalid(String),
}

/// A pod NIC's network as the controller allocated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    /// Addresses with the prefix length of their subnet (`10.16.0.5/16`), one per family.
    pub addresses: Vec<IpNet>,
    /// The subnet CIDRs, in the order of `addresses`.
    pub cidrs: Vec<IpNet>,
    /// Gateways, one per family.
    pub gateways: Vec<IpAddr>,
    /// MAC; it must equal the logical switch port's, or OVN drops the pod's packets.
    pub mac: [u8; 6],
    /// The logical switch the port is on.
    pub logical_switch: String,
    /// Extra routes (`<provider>.kubernetes.io/routes`) followed by the netconf's.
    pub routes: Vec<Route>,
    /// Whether this NIC carries the default route through `gateways` (see [`default_route`]).
    pub default_route: bool,
    /// The provider network of an underlay (vlan) subnet's NIC (`provider_network`
    /// annotation), empty for overlay ones.
    pub provider_network: String,
    /// The default route's next hops when they are not `gateways`: a u2o underlay subnet's
    /// pods route through its interconnection address, their physical gateway stays the
    /// `gateway` annotation (upstream's `configureContainerNic`). Empty: `gateways`.
    pub default_via: Vec<IpAddr>,
}

/// Reads a pod NIC's network from its annotations. `Missing` lists every absent annotation
/// (including `routed=true`, which the controller sets once the port exists in NB), so the wait
/// can end with an error naming exactly what the controller never wrote.
pub fn from_annotations(
    annotations: &BTreeMap<String, String>,
    provider: &str,
    if_name: &str,
    extra_routes: &[Route],
) -> Result<PodNetwork, NetworkError> {
    let get = |suffix: &str| {
        annotations
            .get(&annotation_key(provider, suffix))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    let default_route = default_route(annotations, provider, if_name);
    let mut missing: Vec<String> = REQUIRED
        .iter()
        .filter(|s| get(s).is_none())
        .map(|s| annotation_key(provider, s))
        .collect();
    if default_route && routed_provider(provider) && get("routed") != Some("true") {
        missing.push(format!("{}=true", annotation_key(provider, "routed")));
    }
    if !missing.is_empty() {
        return Err(NetworkError::Missing(missing));
    }
    let field = |suffix: &str| get(suffix).unwrap_or_default();
    let invalid = |suffix: &str, why: String| {
        NetworkError::Invalid(format!(
            "annotation {}={:?}: {why}",
            annotation_key(provider, suffix),
            field(suffix)
        ))
    };
    let ips =
        net::parse_ips(field("ip_address")).map_err(|e| invalid("ip_address", e.to_string()))?;
    let cidrs = net::parse_cidrs(field("cidr")).map_err(|e| invalid("cidr", e.to_string()))?;
    let gateways =
        net::parse_ips(field("gateway")).map_err(|e| invalid("gateway", e.to_string()))?;
    let mut addresses = Vec::new();
    let mut ordered_cidrs = Vec::new();
    for ip in &ips {
        let cidr = cidrs
            .iter()
            .find(|c| c.contains(ip))
            .ok_or_else(|| invalid("cidr", format!("no CIDR contains {ip}")))?;
        let addr =
            IpNet::new(*ip, cidr.prefix_len()).map_err(|e| invalid("cidr", e.to_string()))?;
        addresses.push(addr);
        ordered_cidrs.push(cidr.trunc());
    }
    for gw in &gateways {
        if !ips.iter().any(|ip| ip.is_ipv4() == gw.is_ipv4()) {
            return Err(invalid(
                "gateway",
                format!("no address of the family of {gw}"),
            ));
        }
    }
    let mac = parse_mac(field("mac_address")).map_err(|e| invalid("mac_address", e))?;
    let mut routes = match get("routes") {
        Some(text) => serde_json::from_str::<Vec<Route>>(text)
            .map_err(|e| invalid("routes", e.to_string()))?,
        None => Vec::new(),
    };
    routes.extend(extra_routes.iter().cloned());
    for r in &routes {
        check_route(r).map_err(|e| invalid("routes", e))?;
    }
    Ok(PodNetwork {
        addresses,
        cidrs: ordered_cidrs,
        gateways,
        mac,
        logical_switch: field("logical_switch").to_string(),
        routes,
        default_route,
        provider_network: field("provider_network").to_string(),
        default_via: Vec::new(),
    })
}

/// An IPAM-only NIC's answer (kube-ovn as `ipam.type` of macvlan, ipvlan, …), from the
/// `<provider>.kubernetes.io/*` annotations as upstream's `handleAdd` builds it: each address
/// with its subnet's CIDR (and gateway when this NIC carries the default route), the netconf's
/// routes then the `routes` annotation, no interface, MAC or MTU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamNetwork {
    /// The reply.
    pub response: CniResponse,
    /// Whether the routes carry an IPv4 / IPv6 default route, which replaces the pod's
    /// existing one (the delegating plugin adds it).
    pub default_v4: bool,
    /// See `default_v4`.
    pub default_v6: bool,
}

/// Reads an IPAM-only NIC's answer; `Missing` until the controller allocated it.
pub fn ipam_from_annotations(
    annotations: &BTreeMap<String, String>,
    provider: &str,
    if_name: &str,
    extra_routes: &[Route],
) -> Result<IpamNetwork, NetworkError> {
    let get = |suffix: &str| {
        annotations
            .get(&annotation_key(provider, suffix))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    let missing: Vec<String> = REQUIRED_IPAM
        .iter()
        .filter(|s| get(s).is_none())
        .map(|s| annotation_key(provider, s))
        .collect();
    if !missing.is_empty() {
        return Err(NetworkError::Missing(missing));
    }
    let invalid = |suffix: &str, why: String| {
        NetworkError::Invalid(format!(
            "annotation {}={:?}: {why}",
            annotation_key(provider, suffix),
            get(suffix).unwrap_or_default()
        ))
    };
    let ips = net::parse_ips(get("ip_address").unwrap_or_default())
        .map_err(|e| invalid("ip_address", e.to_string()))?;
    let cidrs = net::parse_cidrs(get("cidr").unwrap_or_default())
        .map_err(|e| invalid("cidr", e.to_string()))?;
    let gateways = match get("gateway") {
        Some(g) => net::parse_ips(g).map_err(|e| invalid("gateway", e.to_string()))?,
        None => Vec::new(),
    };
    let with_gateway = default_route(annotations, provider, if_name);
    let mut ip_configs = Vec::new();
    for ip in &ips {
        let cidr = cidrs
            .iter()
            .find(|c| c.contains(ip))
            .ok_or_else(|| invalid("cidr", format!("no CIDR contains {ip}")))?;
        let gateway = gateways
            .iter()
            .find(|g| g.is_ipv4() == ip.is_ipv4())
            .filter(|_| with_gateway)
            .map(|g| g.to_string())
            .unwrap_or_default();
        ip_configs.push(IpConfig {
            protocol: if ip.is_ipv4() { "IPv4" } else { "IPv6" }.into(),
            ip: ip.to_string(),
            cidr: cidr.trunc().to_string(),
            gateway,
        });
    }
    let mut routes: Vec<Route> = extra_routes.to_vec();
    if let Some(text) = get("routes") {
        routes.extend(
            serde_json::from_str::<Vec<Route>>(text)
                .map_err(|e| invalid("routes", e.to_string()))?,
        );
    }
    let (mut default_v4, mut default_v6) = (false, false);
    for r in &routes {
        check_route(r).map_err(|e| invalid("routes", e))?;
        let default_of = if r.dst.is_empty() {
            r.gw.parse::<IpAddr>().ok()
        } else {
            r.dst
                .parse::<IpNet>()
                .ok()
                .filter(|d| d.prefix_len() == 0)
                .map(|d| d.addr())
        };
        match default_of {
            Some(IpAddr::V4(_)) => default_v4 = true,
            Some(IpAddr::V6(_)) => default_v6 = true,
            None => {}
        }
    }
    Ok(IpamNetwork {
        response: CniResponse {
            ips: ip_configs,
            routes,
            ..CniResponse::default()
        },
        default_v4,
        default_v6,
    })
}

fn check_route(r: &Route) -> Result<(), String> {
    if !r.dst.is_empty() {
        r.dst
            .parse::<IpNet>()
            .map_err(|e| format!("route destination {:?}: {e}", r.dst))?;
    }
    if !r.gw.is_empty() {
        r.gw.parse::<IpAddr>()
            .map_err(|e| format!("route gateway {:?}: {e}", r.gw))?;
    }
    if r.dst.is_empty() && r.gw.is_empty() {
        return Err("a route needs a destination or a gateway".into());
    }
    Ok(())
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("{s:?} is not a MAC address"));
    }
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(format!("{s:?} is not a MAC address"));
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| format!("{s:?} is not a MAC address"))?;
    }
    Ok(mac)
}

/// Formats a MAC the way OVN and the annotations write it.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl PodNetwork {
    /// The gateway of `family` (IPv4 when `v4`) this NIC routes by default through, if any.
    pub fn gateway(&self, v4: bool) -> Option<IpAddr> {
        self.route_gateways()
            .iter()
            .copied()
            .find(|g| g.is_ipv4() == v4)
    }

    /// The gateways the NIC's default routes go through: none unless it carries the default
    /// route.
    pub fn route_gateways(&self) -> &[IpAddr] {
        if self.default_route && !self.default_via.is_empty() {
            &self.default_via
        } else if self.default_route {
            &self.gateways
        } else {
            &[]
        }
    }

    /// The routes configured in the pod, listed as upstream reports them: each subnet on-link,
    /// the default route via each gateway, then the extra routes.
    pub fn configured_routes(&self) -> Vec<Route> {
        let mut out: Vec<Route> = self
            .cidrs
            .iter()
            .map(|c| Route {
                dst: c.to_string(),
                gw: String::new(),
            })
            .collect();
        out.extend(self.route_gateways().iter().map(|g| Route {
            dst: String::new(),
            gw: g.to_string(),
        }));
        out.extend(self.routes.iter().cloned());
        out
    }

    /// The ADD reply.
    pub fn response(&self, mtu: u32, nic_name: &str) -> CniResponse {
        let ips = self
            .addresses
            .iter()
            .zip(&self.cidrs)
            .map(|(a, c)| IpConfig {
                protocol: if a.addr().is_ipv4() { "IPv4" } else { "IPv6" }.into(),
                ip: a.addr().to_string(),
                cidr: c.to_string(),
                gateway: self
                    .gateway(a.addr().is_ipv4())
                    .map(|g| g.to_string())
                    .unwrap_or_default(),
            })
            .collect();
        CniResponse {
            ips,
            mac_address: format_mac(&self.mac),
            routes: self.configured_routes(),
            mtu: mtu.into(),
            nic_name: nic_name.to_string(),
            ..CniResponse::default()
        }
    }

    /// The `external_ids:ip` upstream records on the OVS interface (addresses, comma-separated).
    pub fn ip_list(&self) -> String {
        self.addresses
            .iter()
            .map(|a| a.addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annos(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("ovn.kubernetes.io/{k}"), v.to_string()))
            .collect()
    }

    fn full() -> BTreeMap<String, String> {
        annos(&[
            ("ip_address", "10.16.0.5"),
            ("mac_address", "00:00:00:AA:bb:01"),
            ("cidr", "10.16.0.0/16"),
            ("gateway", "10.16.0.1"),
            ("logical_switch", "ovn-default"),
            ("routed", "true"),
        ])
    }

    #[test]
    fn full_annotations_parse() {
        let n = from_annotations(&full(), "ovn", "eth0", &[]).unwrap();
        assert_eq!(n.addresses, ["10.16.0.5/16".parse::<IpNet>().unwrap()]);
        assert_eq!(n.cidrs, ["10.16.0.0/16".parse::<IpNet>().unwrap()]);
        assert_eq!(n.mac, [0, 0, 0, 0xaa, 0xbb, 1]);
        assert_eq!(n.logical_switch, "ovn-default");
        let r = n.response(1400, "eth0");
        assert_eq!(r.ips[0].ip, "10.16.0.5");
        assert_eq!(r.ips[0].protocol, "IPv4");
        assert_eq!(r.ips[0].gateway, "10.16.0.1");
        assert_eq!(r.mac_address, "00:00:00:aa:bb:01");
        assert_eq!(r.routes[1].gw, "10.16.0.1");
        assert_eq!(r.mtu, 1400);
    }

    #[test]
    fn missing_annotations_are_all_named() {
        let mut a = full();
        a.remove("ovn.kubernetes.io/mac_address");
        a.insert("ovn.kubernetes.io/routed".into(), "false".into());
        let err = from_annotations(&a, "ovn", "eth0", &[]).unwrap_err();
        assert_eq!(
            err,
            NetworkError::Missing(vec![
                "ovn.kubernetes.io/mac_address".into(),
                "ovn.kubernetes.io/routed=true".into()
            ])
        );
        assert!(err.to_string().contains("ovn.kubernetes.io/mac_address"));
    }

    #[test]
    fn dual_stack_pairs_addresses_with_their_cidr() {
        let mut a = full();
        a.insert(
            "ovn.kubernetes.io/ip_address".into(),
            "10.16.0.5,fd00::5".into(),
        );
        a.insert(
            "ovn.kubernetes.io/cidr".into(),
            "10.16.0.0/16,fd00::/112".into(),
        );
        a.insert(
            "ovn.kubernetes.io/gateway".into(),
            "10.16.0.1,fd00::1".into(),
        );
        let n = from_annotations(&a, "ovn", "eth0", &[]).unwrap();
        assert_eq!(n.addresses[1], "fd00::5/112".parse::<IpNet>().unwrap());
        assert_eq!(n.gateway(false), Some("fd00::1".parse().unwrap()));
        assert_eq!(n.ip_list(), "10.16.0.5,fd00::5");
    }

    #[test]
    fn invalid_values_name_the_annotation() {
        for (k, v) in [
            ("ip_address", "10.17.0.5"),
            ("mac_address", "zz:00:00:00:00:01"),
            ("gateway", "nonsense"),
            ("routes", "[{\"dst\":\"bad\"}]"),
        ] {
            let mut a = full();
            a.insert(format!("ovn.kubernetes.io/{k}"), v.into());
            let err = from_annotations(&a, "ovn", "eth0", &[]).unwrap_err();
            let NetworkError::Invalid(msg) = err else {
                panic!("{k}: {err:?}")
            };
            let expect = if k == "ip_address" { "cidr" } else { k };
            assert!(msg.contains(expect), "{k}: {msg}");
        }
    }

    #[test]
    fn routes_annotation_and_netconf_routes_are_both_kept() {
        let mut a = full();
        a.insert(
            "ovn.kubernetes.io/routes".into(),
            r#"[{"dst":"192.168.0.0/24","gw":"10.16.0.254"}]"#.into(),
        );
        let extra = [Route {
            dst: "172.16.0.0/12".into(),
            gw: String::new(),
        }];
        let n = from_annotations(&a, "ovn", "eth0", &extra).unwrap();
        assert_eq!(n.routes.len(), 2);
        assert_eq!(n.routes[0].gw, "10.16.0.254");
    }

    #[test]
    fn other_providers_use_their_own_prefix_and_port_name() {
        let a: BTreeMap<String, String> = full()
            .into_iter()
            .map(|(k, v)| (k.replace("ovn.", "net1.ns1.ovn."), v))
            .collect();
        assert!(from_annotations(&a, "net1.ns1.ovn", "net1", &[]).is_ok());
        let iface_id = kube_ovn_common::names::pod_lsp;
        assert_eq!(iface_id("p", "ns", "net1.ns1.ovn"), "p.ns.net1.ns1.ovn");
        assert_eq!(iface_id("p", "ns", provider("")), "p.ns");
    }

    #[test]
    fn a_providers_annotations_are_told_from_anothers() {
        let a = full();
        assert!(has_annotations_of(&a, "ovn"));
        assert!(!has_annotations_of(&a, "net1.ns1.ovn"));
        let mut b = BTreeMap::new();
        b.insert(
            "net1.ns1.ovn.kubernetes.io/ip_address".to_string(),
            "x".into(),
        );
        assert!(has_annotations_of(&b, "net1.ns1.ovn"));
        assert!(!has_annotations_of(&b, "ovn"));
    }

    #[test]
    fn veth_names_follow_upstream() {
        let id = "0123456789abcdef0123";
        assert_eq!(
            veth_names(id, "eth0").unwrap(),
            ("0123456789ab_h".into(), "0123456789ab_c".into())
        );
        assert_eq!(
            veth_names(id, "net1").unwrap(),
            ("01234567_net1_h".into(), "01234567_net1_c".into())
        );
        assert!(veth_names("short", "eth0").is_err());
        assert!(veth_names(id, "averyveryverylongname").is_err());
        assert!(veth_names(id, "eth0").unwrap().0.len() <= 15);
    }

    /// Found by the `daemon_api` fuzz target: a 14-byte `pod…` ifname whose tenth byte is
    /// inside a character made the daemon panic slicing it.
    #[test]
    fn veth_names_reject_a_pod_ifname_cut_inside_a_character() {
        let if_name = "podaaaaaa\u{e9}abc";
        assert_eq!(if_name.len(), 14);
        assert!(veth_names("0123456789abcdef", if_name).is_err());
    }

    fn attachment(provider: &str) -> BTreeMap<String, String> {
        [
            ("ip_address", "172.17.0.5"),
            ("mac_address", "00:00:00:aa:bb:02"),
            ("cidr", "172.17.0.0/16"),
            ("gateway", "172.17.0.1"),
            ("logical_switch", "attach-subnet"),
        ]
        .into_iter()
        .map(|(k, v)| (annotation_key(provider, k), v.to_string()))
        .collect()
    }

    /// An attachment's `net1` needs no `routed` and carries no default route: addresses and
    /// the subnet's on-link route only, the gateway left out of the reply (upstream).
    #[test]
    fn a_second_nic_has_no_default_route_unless_asked() {
        let p = "attachnet.default.ovn";
        let a = attachment(p);
        let n = from_annotations(&a, p, "net1", &[]).unwrap();
        assert!(!n.default_route && n.route_gateways().is_empty());
        let r = n.response(1400, "net1");
        assert_eq!(r.ips[0].gateway, "");
        assert_eq!(r.routes.len(), 1, "{:?}", r.routes);
        assert_eq!(r.routes[0].dst, "172.17.0.0/16");
        assert_eq!(r.nic_name, "net1");
        // eth0 of an attachment provider (default-network) waits for routed.
        assert!(matches!(
            from_annotations(&a, p, "eth0", &[]),
            Err(NetworkError::Missing(m)) if m == [format!("{p}.kubernetes.io/routed=true")]
        ));
        let mut asked = a.clone();
        asked.insert(annotation_key(p, "default_route"), "true".into());
        asked.insert(annotation_key(p, "routed"), "true".into());
        let n = from_annotations(&asked, p, "net1", &[]).unwrap();
        assert_eq!(
            n.route_gateways(),
            ["172.17.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(n.response(1400, "net1").ips[0].gateway, "172.17.0.1");
        let mut refused = full();
        refused.insert("ovn.kubernetes.io/default_route".into(), "false".into());
        assert!(
            !from_annotations(&refused, "ovn", "eth0", &[])
                .unwrap()
                .default_route
        );
    }

    #[test]
    fn which_providers_get_a_nic() {
        assert!(plugs_nic("ovn") && plugs_nic("attachnet.default.ovn"));
        assert!(!plugs_nic("mv.default"));
        assert!(routed_provider("ovn") && routed_provider("a.b.ovn"));
        assert!(!routed_provider("a.b.c.ovn") && !routed_provider("mv.default"));
    }

    /// kube-ovn as macvlan's IPAM answers from the annotations the controller writes for an
    /// IPAM-only NIC (no MAC, no switch), with the netconf's routes then the annotated ones.
    #[test]
    fn ipam_answers_come_from_the_ipam_annotations() {
        let p = "mv.default";
        let mut a: BTreeMap<String, String> = [
            ("ip_address", "172.18.0.9"),
            ("cidr", "172.18.0.0/16"),
            ("gateway", "172.18.0.1"),
        ]
        .into_iter()
        .map(|(k, v)| (annotation_key(p, k), v.to_string()))
        .collect();
        let extra = [Route {
            dst: "192.168.7.0/24".into(),
            gw: "172.18.0.254".into(),
        }];
        let n = ipam_from_annotations(&a, p, "net1", &extra).unwrap();
        assert_eq!(n.response.ips.len(), 1);
        assert_eq!(n.response.ips[0].ip, "172.18.0.9");
        assert_eq!(n.response.ips[0].cidr, "172.18.0.0/16");
        assert_eq!(n.response.ips[0].gateway, "");
        assert_eq!(n.response.routes, extra);
        assert_eq!(n.response.mac_address, "");
        assert!(!n.default_v4 && !n.default_v6);
        assert!(has_address(&a, p));
        a.insert(
            annotation_key(p, "routes"),
            r#"[{"gw":"172.18.0.1"}]"#.into(),
        );
        let n = ipam_from_annotations(&a, p, "eth0", &[]).unwrap();
        assert_eq!(n.response.ips[0].gateway, "172.18.0.1");
        assert!(n.default_v4 && !n.default_v6);
        a.remove(&annotation_key(p, "cidr"));
        assert_eq!(
            ipam_from_annotations(&a, p, "net1", &[]),
            Err(NetworkError::Missing(vec![annotation_key(p, "cidr")]))
        );
    }

    /// A definition attached twice under interface names: each NIC reads the annotations
    /// (and binds the port) of `<provider>.<ifname>`.
    #[test]
    fn repeated_attachments_use_the_interface_provider() {
        let a = attachment("attachnet.default.ovn.net2");
        assert_eq!(
            effective_provider(&a, "attachnet.default.ovn", "net2"),
            "attachnet.default.ovn.net2"
        );
        assert_eq!(
            effective_provider(&a, "attachnet.default.ovn", "net1"),
            "attachnet.default.ovn"
        );
        assert_eq!(effective_provider(&a, "mv.default", "net2"), "mv.default");
    }
}
