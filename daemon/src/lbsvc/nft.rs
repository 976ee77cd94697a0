//! The lb-svc pod's NAT as one nftables table per family (see [`crate::nft`] for how it is
//! written: one atomic nfnetlink batch that replaces the table whole).

use std::net::IpAddr;

use crate::nft::{
    Action, Chain, Match, Rule, Table, FAMILY_IP, FAMILY_IP6, HOOK_POSTROUTING, HOOK_PREROUTING,
    PRIORITY_DSTNAT, PRIORITY_SRCNAT,
};

/// The table's name (in family `ip` and, for IPv6 Services, `ip6`).
pub const TABLE: &str = "kube-ovn-lb-svc";
/// The DNAT chain (hook prerouting, priority dstnat).
pub const PREROUTING: &str = "prerouting";
/// The masquerade chain (hook postrouting, priority srcnat).
pub const POSTROUTING: &str = "postrouting";

/// One DNAT: traffic to `lb_ip:port` over `proto` (an IP protocol number) goes to
/// `to_ip:to_port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dnat {
    /// The LoadBalancer address.
    pub lb_ip: IpAddr,
    /// The Service port.
    pub port: u16,
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP).
    pub proto: u8,
    /// The ClusterIP.
    pub to_ip: IpAddr,
    /// The port on the ClusterIP.
    pub to_port: u16,
}

/// The NAT of one address family: DNATs and the destinations masqueraded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// DNAT rules (all of one family).
    pub dnats: Vec<Dnat>,
    /// Destinations whose traffic leaves with the pod's own source address.
    pub masquerade: Vec<IpAddr>,
}

/// `ip daddr <lb> meta l4proto <p> th dport <port> dnat to <ip>:<port>`.
fn dnat_rule(d: &Dnat) -> Rule {
    Rule {
        matches: vec![
            Match::Daddr(d.lb_ip),
            Match::L4Proto(d.proto),
            Match::Dport(d.port),
        ],
        action: Action::Dnat {
            to: d.to_ip,
            port: Some(d.to_port),
        },
    }
}

/// `ip daddr <cluster ip> masquerade`.
fn masquerade_rule(ip: &IpAddr) -> Rule {
    Rule {
        matches: vec![Match::Daddr(*ip)],
        action: Action::Masquerade,
    }
}

fn table(family: u8, rules: &Ruleset) -> Table {
    Table {
        family,
        name: TABLE,
        chains: vec![
            Chain {
                name: PREROUTING,
                hook: HOOK_PREROUTING,
                priority: PRIORITY_DSTNAT,
                rules: rules.dnats.iter().map(dnat_rule).collect(),
            },
            Chain {
                name: POSTROUTING,
                hook: HOOK_POSTROUTING,
                priority: PRIORITY_SRCNAT,
                rules: rules.masquerade.iter().map(masquerade_rule).collect(),
            },
        ],
    }
}

/// The `ip` table holding `v4` and, when `v6` has rules, the `ip6` table holding `v6` (a
/// family with no rules and no table is left alone).
pub fn tables(v4: &Ruleset, v6: &Ruleset) -> Vec<Table> {
    let mut out = vec![table(FAMILY_IP, v4)];
    if !v6.dnats.is_empty() || !v6.masquerade.is_empty() {
        out.push(table(FAMILY_IP6, v6));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule's expressions as `nft --debug=netlink` shows them for
    /// `ip daddr 1.2.3.4 meta l4proto tcp th dport 80 dnat to 10.0.0.1:80`: payload/cmp of the
    /// address, meta l4proto, the port, two immediates and nat with flags 0x3.
    #[test]
    fn dnat_rule_encodes_the_expected_expressions() {
        let d = Dnat {
            lb_ip: "1.2.3.4".parse().unwrap(),
            port: 80,
            proto: 6,
            to_ip: "10.0.0.1".parse().unwrap(),
            to_port: 80,
        };
        let bytes = crate::nft::encode_rule(&dnat_rule(&d));
        let names: Vec<String> = ["payload", "cmp", "meta", "immediate", "nat"]
            .iter()
            .map(|n| n.to_string())
            .collect();
        let count = |n: &str| {
            let pat: Vec<u8> = [n.as_bytes(), &[0]].concat();
            bytes
                .windows(pat.len())
                .filter(|w| *w == pat.as_slice())
                .count()
        };
        assert_eq!(
            names.iter().map(|n| count(n)).collect::<Vec<_>>(),
            vec![2, 3, 1, 2, 1]
        );
        assert!(bytes.windows(4).any(|w| w == [1, 2, 3, 4]));
        assert!(bytes.windows(4).any(|w| w == [10, 0, 0, 1]));
        assert!(bytes.windows(4).any(|w| w == 0x3u32.to_be_bytes()));
        assert_eq!(bytes.len() % 4, 0);
        let empty = Ruleset::default();
        assert_eq!(tables(&empty, &empty).len(), 1);
    }
}
