//! Address families, the `u128` keys IPAM stores addresses under, and the address-list syntax
//! Kube-OVN users write in `excludeIps` and `IPPool.spec.ips`: single addresses, `a..b` ranges
//! and CIDRs, IPv4 and IPv6 mixed in one list.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::range::RangeSet;

/// The address family, shared with every crate that parses addresses.
pub use kube_ovn_common::net::Family;

/// The IPAM key of an address (IPv4 in the low 32 bits; families are never mixed in one set).
pub fn key(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(*v4) as u128,
        IpAddr::V6(v6) => u128::from(*v6),
    }
}

/// The address of a key in `family`.
pub fn ip(family: Family, key: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(key as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(key)),
    }
}

/// The addresses of a CIDR that IPAM may hand out, as upstream counts them: the network
/// address is never used, and neither is the last address (IPv4 broadcast; kept free in IPv6
/// too); a /31 (/127) point-to-point net uses both, a /32 (/128) its only address.
pub fn usable(net: &IpNet) -> RangeSet {
    let first = key(&net.network());
    let last = key(&net.broadcast());
    let host_bits = net.max_prefix_len() - net.prefix_len();
    match host_bits {
        0 => RangeSet::from_range(first, first),
        1 => RangeSet::from_range(first, last),
        _ => RangeSet::from_range(first + 1, last - 1),
    }
}

/// Parses a list of addresses, `a..b` ranges and CIDRs into one set per family.
pub fn parse_list(entries: &[String]) -> Result<(RangeSet, RangeSet)> {
    let mut v4 = RangeSet::new();
    let mut v6 = RangeSet::new();
    for raw in entries {
        let entry = raw.trim();
        if entry.is_empty() {
            continue;
        }
        let (family, start, end) = parse_entry(entry)?;
        match family {
            Family::V4 => v4.insert_range(start, end),
            Family::V6 => v6.insert_range(start, end),
        }
    }
    Ok((v4, v6))
}

fn parse_entry(entry: &str) -> Result<(Family, u128, u128)> {
    let bad = |why: &str| Error::InvalidAddressList {
        entry: entry.to_string(),
        reason: why.to_string(),
    };
    if let Some((a, b)) = entry.split_once("..") {
        let a: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| bad("start is not an IP address"))?;
        let b: IpAddr = b
            .trim()
            .parse()
            .map_err(|_| bad("end is not an IP address"))?;
        if Family::of(&a) != Family::of(&b) {
            return Err(bad("start and end are of different families"));
        }
        let (s, e) = (key(&a), key(&b));
        if s > e {
            return Err(bad("start is after end"));
        }
        return Ok((Family::of(&a), s, e));
    }
    if entry.contains('/') {
        let net: IpNet = entry.parse().map_err(|_| bad("not a CIDR"))?;
        return Ok((
            Family::of(&net.network()),
            key(&net.network()),
            key(&net.broadcast()),
        ));
    }
    let a: IpAddr = entry.parse().map_err(|_| bad("not an IP address"))?;
    Ok((Family::of(&a), key(&a), key(&a)))
}

/// Renders a set as upstream's status strings do: `a-b` ranges and single addresses, joined
/// with commas (e.g. `10.16.0.2-10.16.0.9,10.16.0.12`).
pub fn render(family: Family, set: &RangeSet) -> String {
    set.ranges()
        .map(|(s, e)| {
            if s == e {
                ip(family, s).to_string()
            } else {
                format!("{}-{}", ip(family, s), ip(family, e))
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn usable_addresses_follow_upstream() {
        let n: IpNet = "10.16.0.0/16".parse().unwrap();
        assert_eq!(render(Family::V4, &usable(&n)), "10.16.0.1-10.16.255.254");
        let p2p: IpNet = "192.168.0.0/31".parse().unwrap();
        assert_eq!(render(Family::V4, &usable(&p2p)), "192.168.0.0-192.168.0.1");
        let host: IpNet = "192.168.0.7/32".parse().unwrap();
        assert_eq!(render(Family::V4, &usable(&host)), "192.168.0.7");
        let v6: IpNet = "fd00::/120".parse().unwrap();
        assert_eq!(render(Family::V6, &usable(&v6)), "fd00::1-fd00::fe");
    }

    #[test]
    fn lists_mix_addresses_ranges_cidrs_and_families() {
        let (v4, v6) = parse_list(&list(&[
            "10.16.0.1",
            "172.17.0.2..172.17.0.10",
            "10.0.0.0/30",
            "fd00::1..fd00::3",
            " ",
        ]))
        .unwrap();
        assert_eq!(v4.len(), 1 + 9 + 4);
        assert_eq!(v6.len(), 3);
        assert_eq!(render(Family::V6, &v6), "fd00::1-fd00::3");
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in [
            "10.0.0.5..10.0.0.1",
            "10.0.0.1..fd00::1",
            "nope",
            "10.0.0.0/33",
            "1.2.3.4..",
        ] {
            let err = parse_list(&list(&[bad])).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
