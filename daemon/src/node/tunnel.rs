//! The node's tunnel endpoint, picked at start as upstream's daemon does (`initNicConfig`):
//! which NIC carries Geneve, its address (OVS `external_ids:ovn-encap-ip`, which ovn-controller
//! registers as the chassis' encap IP) and its MTU (the pod MTU is derived from it).
//!
//! The interface is `--iface` unless the Node's `ovn.kubernetes.io/tunnel_interface`
//! annotation names another, or the node runs OVS-DPDK (label `ovn.kubernetes.io/ovs_dp_type=
//! userspace`), which tunnels through `--dpdk-tunnel-iface`. Without one, the tunnel address is
//! `POD_IP` (the DaemonSet is host-network, so that is the node's address) or else the Node's
//! InternalIP, and the interface is the one holding it.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node;
use kube_ovn_common::node::internal_ips;

use crate::netdev::HostLink;

/// Node annotation naming the tunnel interface, overriding `--iface`.
pub const TUNNEL_INTERFACE_ANNOTATION: &str = "ovn.kubernetes.io/tunnel_interface";
/// Node label marking an OVS-DPDK node.
pub const OVS_DP_TYPE_LABEL: &str = "ovn.kubernetes.io/ovs_dp_type";

/// What the choice depends on besides the node's links.
pub struct TunnelFlags<'a> {
    /// `--iface`: a NIC name or comma-separated regular expressions.
    pub iface: &'a str,
    /// `--dpdk-tunnel-iface`.
    pub dpdk_iface: &'a str,
    /// `--host-tunnel-src`: a host-prefix (/32, /128) address may be the tunnel address.
    pub host_tunnel_src: bool,
    /// The `POD_IP` environment variable.
    pub pod_ip: Option<&'a str>,
}

/// The tunnel endpoint chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// The interface carrying the tunnel.
    pub iface: String,
    /// Its address, the chassis' encap IP.
    pub encap_ip: IpAddr,
    /// The interface's MTU.
    pub nic_mtu: u32,
}

impl Tunnel {
    /// The `Open_vSwitch` `external_ids` upstream writes for the tunnel: the encap IP (the
    /// node-networks list has only the default entry here), the default encap IP, and whether
    /// tunnels carry checksums.
    pub fn external_ids(&self, encap_checksum: bool) -> [(&'static str, String); 3] {
        [
            ("ovn-encap-ip", self.encap_ip.to_string()),
            ("ovn-encap-ip-default", self.encap_ip.to_string()),
            ("ovn-encap-csum", encap_checksum.to_string()),
        ]
    }
}

/// Picks the tunnel interface, address and MTU of `node` among `links` (this namespace's).
pub fn pick(flags: &TunnelFlags, node: &Node, links: &[HostLink]) -> Result<Tunnel, String> {
    let mut iface = flags.iface.to_string();
    if let Some(a) = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TUNNEL_INTERFACE_ANNOTATION))
        .filter(|a| !a.is_empty())
    {
        iface = a.clone();
    }
    let dpdk = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(OVS_DP_TYPE_LABEL))
        .is_some_and(|v| v == "userspace");
    if dpdk {
        iface = flags.dpdk_iface.to_string();
    }
    if iface.is_empty() {
        let ip = match flags.pod_ip.filter(|p| !p.is_empty()) {
            Some(p) => p
                .parse::<IpAddr>()
                .map_err(|_| format!("POD_IP={p:?} is not an IP address"))?,
            None => {
                let ips = internal_ips(node);
                ips.iter()
                    .find(|ip| ip.is_ipv4())
                    .or(ips.first())
                    .copied()
                    .ok_or("the Node has no InternalIP and POD_IP is not set")?
            }
        };
        let link = links
            .iter()
            .find(|l| l.addresses.iter().any(|a| a.addr() == ip))
            .ok_or_else(|| format!("no interface has the tunnel address {ip}"))?;
        return Ok(Tunnel {
            iface: link.name.clone(),
            encap_ip: ip,
            nic_mtu: link.mtu,
        });
    }
    let link = find_link(&iface, links)?;
    let encap_ip = link
        .addresses
        .iter()
        .filter(|a| flags.host_tunnel_src || a.prefix_len() != a.max_prefix_len())
        .map(|a| a.addr())
        .find(|ip| !ip.is_loopback() && !is_link_local(ip))
        .ok_or_else(|| format!("interface {} has no usable tunnel address", link.name))?;
    Ok(Tunnel {
        iface: link.name.clone(),
        encap_ip,
        nic_mtu: link.mtu,
    })
}

/// The link called `spec`, else the first (by index) matching one of its comma-separated
/// regular expressions, as upstream's `findInterface`.
fn find_link<'a>(spec: &str, links: &'a [HostLink]) -> Result<&'a HostLink, String> {
    if let Some(l) = links.iter().find(|l| l.name == spec) {
        return Ok(l);
    }
    let pattern = format!("({})", spec.split(',').collect::<Vec<_>>().join(")|("));
    let re = regex::Regex::new(&pattern)
        .map_err(|e| format!("--iface={spec}: invalid interface pattern: {e}"))?;
    links
        .iter()
        .find(|l| re.is_match(&l.name))
        .ok_or_else(|| format!("network interface {spec} does not exist"))
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, mtu: u32, addrs: &[&str]) -> HostLink {
        HostLink {
            index,
            name: name.into(),
            mtu,
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    fn links() -> Vec<HostLink> {
        vec![
            link(1, "lo", 65536, &["127.0.0.1/8", "::1/128"]),
            link(2, "eth0", 1500, &["10.0.0.5/24", "fe80::1/64"]),
            link(
                3,
                "ens5",
                9000,
                &["192.168.7.2/32", "fe80::2/64", "192.168.8.2/24"],
            ),
            link(4, "bond0", 1450, &["fd00::9/64"]),
        ]
    }

    fn node(json: serde_json::Value) -> Node {
        let mut base = serde_json::json!({
            "metadata": {"name": "n1"},
            "status": {"addresses": [
                {"type": "Hostname", "address": "n1"},
                {"type": "InternalIP", "address": "fd00::9"},
                {"type": "InternalIP", "address": "10.0.0.5"}
            ]}
        });
        if let serde_json::Value::Object(extra) = json {
            for (k, v) in extra {
                base["metadata"][k] = v;
            }
        }
        serde_json::from_value(base).unwrap()
    }

    fn flags<'a>(iface: &'a str, pod_ip: Option<&'a str>) -> TunnelFlags<'a> {
        TunnelFlags {
            iface,
            dpdk_iface: "br-phy",
            host_tunnel_src: false,
            pod_ip,
        }
    }

    #[test]
    fn without_iface_the_pod_ip_or_the_internal_ipv4_picks_the_nic() {
        let n = node(serde_json::json!({}));
        let t = pick(&flags("", None), &n, &links()).unwrap();
        assert_eq!((t.iface.as_str(), t.nic_mtu), ("eth0", 1500));
        assert_eq!(t.encap_ip, "10.0.0.5".parse::<IpAddr>().unwrap());
        let t = pick(&flags("", Some("fd00::9")), &n, &links()).unwrap();
        assert_eq!((t.iface.as_str(), t.nic_mtu), ("bond0", 1450));
        assert!(pick(&flags("", Some("10.9.9.9")), &n, &links()).is_err());
        assert!(pick(&flags("", Some("nope")), &n, &links()).is_err());
    }

    #[test]
    fn iface_by_name_or_pattern_skips_host_prefix_link_local_and_loopback() {
        let n = node(serde_json::json!({}));
        let t = pick(&flags("ens5", None), &n, &links()).unwrap();
        assert_eq!(t.encap_ip, "192.168.8.2".parse::<IpAddr>().unwrap());
        assert_eq!(t.nic_mtu, 9000);
        let mut f = flags("ens5", None);
        f.host_tunnel_src = true;
        assert_eq!(
            pick(&f, &n, &links()).unwrap().encap_ip,
            "192.168.7.2".parse::<IpAddr>().unwrap()
        );
        // Patterns: the first link (by index) matching any of them.
        let t = pick(&flags("^bond,^ens", None), &n, &links()).unwrap();
        assert_eq!(t.iface, "ens5");
        assert!(pick(&flags("lo", None), &n, &links()).is_err());
        assert!(pick(&flags("wlan9", None), &n, &links()).is_err());
        assert!(pick(&flags("(", None), &n, &links()).is_err());
    }

    #[test]
    fn node_annotation_and_dpdk_label_override_the_flag() {
        let n = node(serde_json::json!({
            "annotations": {TUNNEL_INTERFACE_ANNOTATION: "bond0"}
        }));
        assert_eq!(
            pick(&flags("eth0", None), &n, &links()).unwrap().iface,
            "bond0"
        );
        let n = node(serde_json::json!({
            "annotations": {TUNNEL_INTERFACE_ANNOTATION: "bond0"},
            "labels": {OVS_DP_TYPE_LABEL: "userspace"}
        }));
        let mut l = links();
        l.push(link(5, "br-phy", 1600, &["172.16.0.3/16"]));
        let t = pick(&flags("eth0", None), &n, &l).unwrap();
        assert_eq!((t.iface.as_str(), t.nic_mtu), ("br-phy", 1600));
        let ids = t.external_ids(false);
        assert_eq!(ids[0], ("ovn-encap-ip", "172.16.0.3".to_string()));
        assert_eq!(ids[2], ("ovn-encap-csum", "false".to_string()));
    }
}
