//! The pure decisions of the interconnection loop, as upstream makes them
//! (`pkg/ovn_ic_controller/ovn_ic_logic.go`): how a ConfigMap change is classified, the gateway
//! order per transit switch, the IC database remotes, and which CIDRs conflict with remote ones.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

/// The ConfigMap's data.
pub type IcConfig = BTreeMap<String, String>;

/// Whether interconnection is on, as far as this process knows (upstream's `icEnabled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enabled {
    /// Not decided since start: the next pass establishes or tears down unconditionally.
    Unknown,
    /// Established.
    True,
    /// Torn down.
    False,
}

/// What a pass has to do (upstream's `icNoAction`…).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcState {
    /// Nothing changed.
    NoAction,
    /// Interconnection is being turned on.
    FirstEstablish,
    /// Something other than the gateways changed: tear down and establish again.
    ConfigChange,
    /// Only `gw-nodes` changed: reconcile the gateways.
    GatewayChange,
}

/// Classifies the current ConfigMap data against the last established one.
pub fn classify(enabled: Enabled, last: Option<&IcConfig>, cur: &IcConfig) -> IcState {
    let last_empty = last.is_none_or(|l| l.is_empty());
    if enabled != Enabled::True
        && last_empty
        && cur.get("enable-ic").map(String::as_str) == Some("true")
    {
        return IcState::FirstEstablish;
    }
    if enabled == Enabled::True {
        if let Some(last) = last {
            if last == cur {
                return IcState::NoAction;
            }
            let strip = |c: &IcConfig| {
                let mut c = c.clone();
                c.remove("gw-nodes");
                c
            };
            if strip(last) == strip(cur) {
                return IcState::GatewayChange;
            }
        }
    }
    IcState::ConfigChange
}

/// The gateway node names of `gw-nodes` (comma-separated, blanks dropped).
pub fn parse_gw_nodes(gw_nodes: &str) -> Vec<String> {
    gw_nodes
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// The gateways of the `order`-th transit switch: the list rotated by `order`, so each switch
/// prefers another gateway.
pub fn rotate(gw: &[String], order: usize) -> Vec<String> {
    if gw.is_empty() {
        return Vec::new();
    }
    let k = order % gw.len();
    gw[k..].iter().chain(&gw[..k]).cloned().collect()
}

/// The OVSDB remote list of the IC databases: `tcp:[host]:port` per comma-separated host.
pub fn host_address(hosts: &str, port: &str) -> String {
    hosts
        .trim_matches(',')
        .split(',')
        .map(|h| format!("tcp:[{h}]:{port}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether two CIDRs overlap; anything that does not parse as a CIDR overlaps nothing.
pub fn cidr_overlap(a: &str, b: &str) -> bool {
    let (Ok(a), Ok(b)) = (a.trim().parse::<IpNet>(), b.trim().parse::<IpNet>()) else {
        return false;
    };
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Conflicting CIDRs: sticky ones still overlapping a local CIDR, and every local CIDR with the
/// learned prefixes that overlap it; sorted, without duplicates.
pub fn merge_conflicts(local: &[String], learned: &[String], sticky: &[String]) -> Vec<String> {
    let mut out = BTreeSet::new();
    for s in sticky {
        if local.iter().any(|l| cidr_overlap(l, s)) {
            out.insert(s.clone());
        }
    }
    for l in local {
        if let Some(r) = learned.iter().find(|r| cidr_overlap(l, r)) {
            out.insert(l.clone());
            out.insert(r.clone());
        }
    }
    out.into_iter().collect()
}

/// The entries of a persisted `ic-route-blacklist` that overlap a local CIDR (conflicts found
/// before a restart stay conflicts).
pub fn persisted_conflicts(local: &[String], blacklist: &str) -> Vec<String> {
    blacklist
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .filter(|e| local.iter().any(|l| cidr_overlap(l, e)))
        .map(str::to_string)
        .collect()
}

/// Every CIDR of a subnet's `cidrBlock` (one per family).
pub fn split_cidrs(block: &str) -> Vec<String> {
    block
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// A random address of the lower half of `cidr` (as upstream's `GenerateRandomIP`, but never
/// the network address itself), with the prefix length: `169.254.100.37/24`.
pub fn random_address(cidr: &str, random: u128) -> Result<String, String> {
    let net: IpNet = cidr
        .trim()
        .parse()
        .map_err(|e| format!("transit switch subnet {cidr:?}: {e}"))?;
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    if host_bits < 2 {
        return Err(format!("transit switch subnet {cidr} is too small"));
    }
    let half: u128 = 1u128 << (host_bits - 1).min(127);
    let add = 1 + random % (half - 1).max(1);
    let addr = match net.network() {
        std::net::IpAddr::V4(a) => std::net::IpAddr::V4((u32::from(a) + add as u32).into()),
        std::net::IpAddr::V6(a) => std::net::IpAddr::V6((u128::from(a) + add).into()),
    };
    Ok(format!("{addr}/{}", net.prefix_len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(pairs: &[(&str, &str)]) -> IcConfig {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn classification_follows_upstream() {
        let on = cm(&[("enable-ic", "true"), ("az-name", "az1"), ("gw-nodes", "a")]);
        assert_eq!(
            classify(Enabled::Unknown, None, &on),
            IcState::FirstEstablish
        );
        assert_eq!(classify(Enabled::False, None, &on), IcState::FirstEstablish);
        assert_eq!(classify(Enabled::True, Some(&on), &on), IcState::NoAction);
        let gw = cm(&[
            ("enable-ic", "true"),
            ("az-name", "az1"),
            ("gw-nodes", "a,b"),
        ]);
        assert_eq!(
            classify(Enabled::True, Some(&on), &gw),
            IcState::GatewayChange
        );
        let az = cm(&[("enable-ic", "true"), ("az-name", "az2"), ("gw-nodes", "a")]);
        assert_eq!(
            classify(Enabled::True, Some(&on), &az),
            IcState::ConfigChange
        );
    }

    #[test]
    fn gateways_rotate_per_switch() {
        let gw = parse_gw_nodes(" a, b ,,c");
        assert_eq!(gw, ["a", "b", "c"]);
        assert_eq!(rotate(&gw, 1), ["b", "c", "a"]);
        assert_eq!(rotate(&gw, 4), ["b", "c", "a"]);
        assert!(rotate(&[], 3).is_empty());
    }

    #[test]
    fn host_addresses() {
        assert_eq!(host_address("10.0.0.1", "6645"), "tcp:[10.0.0.1]:6645");
        assert_eq!(
            host_address("10.0.0.1,10.0.0.2,", "6646"),
            "tcp:[10.0.0.1]:6646,tcp:[10.0.0.2]:6646"
        );
    }

    #[test]
    fn conflicts() {
        let local = vec!["10.16.0.0/16".to_string(), "100.64.0.0/16".to_string()];
        let learned = vec!["10.16.5.0/24".to_string(), "10.17.0.0/16".to_string()];
        assert_eq!(
            merge_conflicts(&local, &learned, &[]),
            ["10.16.0.0/16", "10.16.5.0/24"]
        );
        assert_eq!(
            persisted_conflicts(&local, "100.64.0.0/16,172.18.0.2,10.99.0.0/16"),
            ["100.64.0.0/16"]
        );
        assert!(!cidr_overlap("172.18.0.2", "172.18.0.0/24"));
    }

    #[test]
    fn random_addresses_stay_in_the_lower_half() {
        for r in [0u128, 1, 126, 127, 1000] {
            let a = random_address("169.254.100.0/24", r).unwrap();
            let ip: std::net::Ipv4Addr = a.trim_end_matches("/24").parse().unwrap();
            assert!(ip.octets()[3] >= 1 && ip.octets()[3] < 128, "{a}");
        }
        assert!(random_address("bad", 1).is_err());
        assert!(random_address("fe80:a9fe:64::/112", 5)
            .unwrap()
            .ends_with("/112"));
    }
}
