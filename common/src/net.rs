//! Address families and the comma-separated address/CIDR lists Kube-OVN writes everywhere
//! (`spec.cidrBlock`, `spec.gateway`, `--default-cidr`, the `ip_address`/`cidr` annotations),
//! parsed once onto `ipnet` types so no caller guesses a family from a `:` or re-splits text.

use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// An IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The family of a network.
    pub fn of_net(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    /// The family of one list entry, an address or a CIDR; `None` when it is neither.
    pub fn of_entry(entry: &str) -> Option<Family> {
        let entry = entry.trim();
        entry
            .parse::<IpNet>()
            .map(|n| Family::of_net(&n))
            .or_else(|_| entry.parse::<IpAddr>().map(|a| Family::of(&a)))
            .ok()
    }

    /// The prefix OVN match expressions and upstream's address-set names use (`ip4`, `ip6`).
    pub fn match_prefix(self) -> &'static str {
        match self {
            Family::V4 => "ip4",
            Family::V6 => "ip6",
        }
    }
}

/// An entry of a list that is not what the list holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The offending entry, as written.
    pub entry: String,
    /// What it should have been ("a CIDR", "an IP address").
    pub expected: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not {}", self.entry, self.expected)
    }
}

impl std::error::Error for ParseError {}

/// The entries of a comma-separated list, trimmed, empty ones skipped (`"a, b,"` is `a`, `b`).
pub fn entries(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|e| !e.is_empty())
}

/// Parses a comma-separated CIDR list into networks with the host bits cleared
/// (`10.16.0.5/16` is `10.16.0.0/16`), in the order written.
pub fn parse_cidrs(list: &str) -> Result<Vec<IpNet>, ParseError> {
    entries(list)
        .map(|e| {
            e.parse::<IpNet>()
                .map(|n| n.trunc())
                .map_err(|_| ParseError {
                    entry: e.to_string(),
                    expected: "a CIDR",
                })
        })
        .collect()
}

/// Parses a comma-separated address list, in the order written.
pub fn parse_ips(list: &str) -> Result<Vec<IpAddr>, ParseError> {
    entries(list)
        .map(|e| {
            e.parse::<IpAddr>().map_err(|_| ParseError {
                entry: e.to_string(),
                expected: "an IP address",
            })
        })
        .collect()
}

/// The families of a list's readable entries, in the order written (unreadable ones skipped),
/// for code that only needs to know which families a validated list has.
pub fn families(list: &str) -> Vec<Family> {
    entries(list).filter_map(Family::of_entry).collect()
}

/// `spec.protocol` of a subnet: which families its CIDR block has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// IPv4 only (also what upstream calls a block with no readable CIDR).
    V4,
    /// IPv6 only.
    V6,
    /// Both.
    Dual,
}

impl Protocol {
    /// The protocol of a list of families.
    pub fn of(families: &[Family]) -> Protocol {
        let v4 = families.contains(&Family::V4);
        match (v4, families.contains(&Family::V6)) {
            (true, true) => Protocol::Dual,
            (false, true) => Protocol::V6,
            _ => Protocol::V4,
        }
    }

    /// The protocol of a CIDR (or address) list such as `spec.cidrBlock`.
    pub fn of_list(list: &str) -> Protocol {
        Protocol::of(&families(list))
    }

    /// The `spec.protocol` value upstream writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V4 => "IPv4",
            Protocol::V6 => "IPv6",
            Protocol::Dual => "Dual",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a text is not a subnet CIDR block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockError {
    /// No CIDR at all.
    Empty,
    /// An entry is not a CIDR.
    Entry(ParseError),
    /// More than one CIDR of a family.
    SameFamily,
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockError::Empty => f.write_str("no CIDR"),
            BlockError::Entry(e) => e.fmt(f),
            BlockError::SameFamily => f.write_str("at most one IPv4 and one IPv6 CIDR"),
        }
    }
}

impl std::error::Error for BlockError {}

/// A subnet's CIDR block: at most one network per family, at least one, host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CidrBlock {
    /// The IPv4 network.
    pub v4: Option<Ipv4Net>,
    /// The IPv6 network.
    pub v6: Option<Ipv6Net>,
}

impl CidrBlock {
    /// Parses `v4`, `v6` or `v4,v6` (either order).
    pub fn parse(list: &str) -> Result<CidrBlock, BlockError> {
        let mut block = CidrBlock { v4: None, v6: None };
        for net in parse_cidrs(list).map_err(BlockError::Entry)? {
            let taken = match net {
                IpNet::V4(n) => block.v4.replace(n).is_some(),
                IpNet::V6(n) => block.v6.replace(n).is_some(),
            };
            if taken {
                return Err(BlockError::SameFamily);
            }
        }
        if block.v4.is_none() && block.v6.is_none() {
            return Err(BlockError::Empty);
        }
        Ok(block)
    }

    /// The networks, IPv4 first.
    pub fn nets(&self) -> Vec<IpNet> {
        let v4 = self.v4.map(IpNet::V4);
        v4.into_iter().chain(self.v6.map(IpNet::V6)).collect()
    }

    /// The network of `family`.
    pub fn net(&self, family: Family) -> Option<IpNet> {
        match family {
            Family::V4 => self.v4.map(IpNet::V4),
            Family::V6 => self.v6.map(IpNet::V6),
        }
    }

    /// Which families the block has.
    pub fn protocol(&self) -> Protocol {
        match (self.v4.is_some(), self.v6.is_some()) {
            (true, true) => Protocol::Dual,
            (false, true) => Protocol::V6,
            _ => Protocol::V4,
        }
    }
}

/// Upstream's canonical text: `v4,v6`.
impl fmt::Display for CidrBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text: Vec<String> = self.nets().iter().map(IpNet::to_string).collect();
        f.write_str(&text.join(","))
    }
}

/// The first address IPAM hands out in `net`, upstream's default gateway: the network address
/// plus one, or the network address itself for /31, /32, /127 and /128.
pub fn first_usable(net: &IpNet) -> IpAddr {
    let net = net.trunc();
    if net.max_prefix_len() - net.prefix_len() < 2 {
        return net.network();
    }
    match net.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 1).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 1).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn lists_trim_and_skip_empty_entries() {
        assert_eq!(entries(" a, b ,,c,").collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(entries("").count(), 0);
    }

    #[test]
    fn cidr_lists_clear_host_bits_and_name_bad_entries() {
        assert_eq!(
            parse_cidrs("10.16.0.5/16, fd00::5/112").unwrap(),
            [net("10.16.0.0/16"), net("fd00::/112")]
        );
        let e = parse_cidrs("10.16.0.0/16,10.300.0.0/16").unwrap_err();
        assert_eq!(e.entry, "10.300.0.0/16");
        assert_eq!(e.to_string(), "\"10.300.0.0/16\" is not a CIDR");
        assert!(parse_cidrs("10.16.0.1").is_err());
    }

    #[test]
    fn address_lists_parse_in_order() {
        let ips = parse_ips("fd00::1, 10.0.0.1").unwrap();
        assert_eq!(ips.len(), 2);
        assert_eq!(Family::of(&ips[0]), Family::V6);
        assert_eq!(
            parse_ips("10.0.0.1,x").unwrap_err().to_string(),
            "\"x\" is not an IP address"
        );
    }

    #[test]
    fn families_come_from_parsed_entries() {
        assert_eq!(
            families("10.16.0.0/16,fd00::/112,junk,::1"),
            [Family::V4, Family::V6, Family::V6]
        );
        assert_eq!(Family::of_entry("fd00::/64").unwrap().match_prefix(), "ip6");
        assert_eq!(Family::of_entry("10.0.0.1").unwrap().match_prefix(), "ip4");
        assert_eq!(Family::of_entry("a:b"), None);
    }

    #[test]
    fn protocols_as_upstream_writes_them() {
        assert_eq!(Protocol::of_list("10.16.0.0/16").as_str(), "IPv4");
        assert_eq!(Protocol::of_list("fd00::/112").to_string(), "IPv6");
        assert_eq!(
            Protocol::of_list("fd00::/112,10.16.0.0/16").as_str(),
            "Dual"
        );
        assert_eq!(Protocol::of_list("").as_str(), "IPv4");
    }

    #[test]
    fn cidr_blocks_take_one_network_per_family() {
        let b = CidrBlock::parse("fd00::5/112, 10.16.0.5/16").unwrap();
        assert_eq!(b.to_string(), "10.16.0.0/16,fd00::/112");
        assert_eq!(b.protocol(), Protocol::Dual);
        assert_eq!(b.net(Family::V6), Some(net("fd00::/112")));
        assert_eq!(b.nets(), [net("10.16.0.0/16"), net("fd00::/112")]);
        assert_eq!(
            CidrBlock::parse("10.0.0.0/8,10.1.0.0/16"),
            Err(BlockError::SameFamily)
        );
        assert_eq!(CidrBlock::parse(" , "), Err(BlockError::Empty));
        assert!(matches!(
            CidrBlock::parse("10.0.0.0/8,nope"),
            Err(BlockError::Entry(ParseError { .. }))
        ));
        let v6 = CidrBlock::parse("fd00::/64").unwrap();
        assert_eq!((v6.protocol(), v6.net(Family::V4)), (Protocol::V6, None));
    }

    #[test]
    fn first_usable_skips_the_network_address_unless_tiny() {
        assert_eq!(first_usable(&net("10.16.0.0/16")).to_string(), "10.16.0.1");
        assert_eq!(first_usable(&net("10.16.0.9/16")).to_string(), "10.16.0.1");
        assert_eq!(first_usable(&net("10.0.0.4/31")).to_string(), "10.0.0.4");
        assert_eq!(first_usable(&net("fd00::/112")).to_string(), "fd00::1");
        assert_eq!(first_usable(&net("fd00::7/128")).to_string(), "fd00::7");
    }
}
