//! The node's join-subnet NIC as the controller's Node annotations describe it (pure): the
//! addresses, MAC, subnet and gateway `ovn0` gets, or which annotations are still missing.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use kube_ovn_common::annotations::{Field, ALLOCATED};
use kube_ovn_common::net::{self, Family};

use crate::network::parse_mac;

/// Annotations the controller writes on a Node once its join address is allocated.
const REQUIRED: [Field; 4] = [
    Field::IpAddress,
    Field::MacAddress,
    Field::Cidr,
    Field::Gateway,
];

/// The node's `ovn0` as allocated on the join subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinNic {
    /// Join addresses with the join subnet's prefix length, one per family.
    pub addresses: Vec<IpNet>,
    /// The join subnet's CIDRs.
    pub cidrs: Vec<IpNet>,
    /// The join gateways (the router's join port), one per family.
    pub gateways: Vec<IpAddr>,
    /// MAC of the node's logical switch port.
    pub mac: [u8; 6],
}

impl JoinNic {
    /// The gateway of the family of `addr`.
    pub fn gateway_for(&self, addr: IpAddr) -> Option<IpAddr> {
        self.gateways
            .iter()
            .copied()
            .find(|g| Family::of(g) == Family::of(&addr))
    }

    /// The `external_ids:ip` of `ovn0`: the join addresses, comma-separated.
    pub fn ip_list(&self) -> String {
        self.addresses
            .iter()
            .map(|a| a.addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Reads the join NIC from a Node's annotations; `Err` names what is missing or malformed.
pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Result<JoinNic, String> {
    let get = |field: Field| {
        annotations
            .get(field.default_key())
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let mut missing: Vec<String> = REQUIRED
        .iter()
        .filter(|f| get(**f).is_none())
        .map(|f| f.default_key().to_string())
        .collect();
    if get(Field::Allocated) != Some("true") {
        missing.push(format!("{ALLOCATED}=true"));
    }
    if !missing.is_empty() {
        return Err(format!("missing {}", missing.join(", ")));
    }
    let field = |f: Field| (f.default_key(), get(f).unwrap_or_default());
    let bad = |key: &str, e: net::ParseError| format!("{key}: {e}");
    let (k, v) = field(Field::IpAddress);
    let ips = net::parse_ips(v).map_err(|e| bad(k, e))?;
    let (k, v) = field(Field::Cidr);
    let cidrs = net::parse_cidrs(v).map_err(|e| bad(k, e))?;
    let (k, v) = field(Field::Gateway);
    let gateways = net::parse_ips(v).map_err(|e| bad(k, e))?;
    let (k, v) = field(Field::MacAddress);
    let mac = parse_mac(v).map_err(|e| format!("{k}: {e}"))?;
    let addresses = ips
        .iter()
        .map(|ip| {
            cidrs
                .iter()
                .find(|c| c.contains(ip))
                .and_then(|c| IpNet::new(*ip, c.prefix_len()).ok())
                .ok_or_else(|| format!("join address {ip} is in none of the cidrs {cidrs:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(JoinNic {
        addresses,
        cidrs,
        gateways,
        mac,
    })
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
            ("ip_address", "100.64.0.2"),
            ("mac_address", "00:00:00:12:34:56"),
            ("cidr", "100.64.0.0/16"),
            ("gateway", "100.64.0.1"),
            ("allocated", "true"),
        ])
    }

    #[test]
    fn complete_annotations_give_the_nic() {
        let n = from_annotations(&full()).unwrap();
        assert_eq!(n.addresses, ["100.64.0.2/16".parse::<IpNet>().unwrap()]);
        assert_eq!(n.mac, [0, 0, 0, 0x12, 0x34, 0x56]);
        assert_eq!(
            n.gateway_for("100.64.0.2".parse().unwrap()),
            Some("100.64.0.1".parse().unwrap())
        );
        assert_eq!(n.gateway_for("fd00::2".parse().unwrap()), None);
        assert_eq!(n.ip_list(), "100.64.0.2");
    }

    #[test]
    fn unallocated_or_partial_annotations_name_what_is_missing() {
        let mut a = full();
        a.remove("ovn.kubernetes.io/gateway");
        a.insert("ovn.kubernetes.io/allocated".into(), "false".into());
        let e = from_annotations(&a).unwrap_err();
        assert!(e.contains("ovn.kubernetes.io/gateway"), "{e}");
        assert!(e.contains("ovn.kubernetes.io/allocated=true"), "{e}");
    }

    #[test]
    fn address_outside_the_cidr_is_rejected() {
        let mut a = full();
        a.insert("ovn.kubernetes.io/ip_address".into(), "10.0.0.2".into());
        assert!(from_annotations(&a).unwrap_err().contains("10.0.0.2"));
    }

    #[test]
    fn dual_stack_pairs_each_address_with_its_family() {
        let mut a = full();
        a.insert(
            "ovn.kubernetes.io/ip_address".into(),
            "100.64.0.2,fd00:100:64::2".into(),
        );
        a.insert(
            "ovn.kubernetes.io/cidr".into(),
            "100.64.0.0/16,fd00:100:64::/112".into(),
        );
        a.insert(
            "ovn.kubernetes.io/gateway".into(),
            "100.64.0.1,fd00:100:64::1".into(),
        );
        let n = from_annotations(&a).unwrap();
        assert_eq!(n.addresses[1].prefix_len(), 112);
        assert_eq!(
            n.gateway_for("fd00:100:64::2".parse().unwrap()),
            Some("fd00:100:64::1".parse().unwrap())
        );
    }
}
