//! Domain-name egress peers of AdminNetworkPolicies and ClusterNetworkPolicies
//! (`--enable-dns-name-resolver`), as upstream: for every domain a policy names, a
//! cluster-scoped `DNSNameResolver` `anp-<policy>-<8 hex of SHA-256(domain)>` labelled
//! `anp: <policy>` (the label and prefix are `anp` for both kinds, `<policy>` the name the
//! policy has in NB) whose status a resolver (upstream's CoreDNS `dnsnameresolver` plugin)
//! fills with the addresses the name resolved to; those addresses join the rule's address sets.
//! This module is pure: which resolvers the policies want, and the addresses the resolvers hold.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use kube::ResourceExt;
use kube_ovn_common::crd::admin_network_policy::AdminNetworkPolicyEgressPeer;
use kube_ovn_common::crd::{AdminNetworkPolicy, ClusterNetworkPolicy, DnsNameResolver};

/// The label naming the policy a resolver belongs to (both kinds, as upstream).
pub const POLICY_LABEL: &str = "anp";

/// The resolver of `domain` for the policy whose NB name is `policy`.
pub fn resolver_name(policy: &str, domain: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, domain.as_bytes());
    let hex: String = digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("anp-{policy}-{hex}")
}

/// The domain names of egress peers (both kinds' rules hold the same peer type).
fn domains<'a>(peers: impl Iterator<Item = &'a AdminNetworkPolicyEgressPeer>) -> BTreeSet<String> {
    peers.flat_map(|p| p.domain_names.iter().cloned()).collect()
}

/// The domain names of an AdminNetworkPolicy's egress peers.
pub fn anp_domains(anp: &AdminNetworkPolicy) -> BTreeSet<String> {
    domains(anp.spec.egress.iter().flat_map(|r| &r.to))
}

/// The domain names of a ClusterNetworkPolicy's egress peers.
pub fn cnp_domains(cnp: &ClusterNetworkPolicy) -> BTreeSet<String> {
    domains(cnp.spec.egress.iter().flat_map(|r| &r.to))
}

/// Whether `domain` is a name a `DNSNameResolver` accepts (its CRD's pattern): lower case,
/// fully qualified with the trailing dot, at least two labels, an optional leading `*.`, at
/// most 254 characters. The policy APIs also allow upper case and no trailing dot; the API
/// server would refuse such a resolver, so the controller says so instead of trying.
pub fn valid(domain: &str) -> bool {
    let name = domain.strip_prefix("*.").unwrap_or(domain);
    let Some(labels) = name.strip_suffix('.') else {
        return false;
    };
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    domain.len() <= 254 && labels.split('.').count() >= 2 && labels.split('.').all(label_ok)
}

/// The resolvers (name → domain) the policies whose NB name is `policy` want: an
/// AdminNetworkPolicy and a ClusterNetworkPolicy can share that name (and so upstream's
/// resolver names), so both kinds' domains count.
pub fn wanted(policy: &str, domains: impl IntoIterator<Item = String>) -> BTreeMap<String, String> {
    domains
        .into_iter()
        .map(|d| (resolver_name(policy, &d), d))
        .collect()
}

/// Addresses per family: [IPv4, IPv6].
pub type Families = [BTreeSet<String>; 2];

/// The addresses the resolvers hold, by the domain they track (`spec.name`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Resolved {
    by_domain: HashMap<String, Families>,
}

impl Resolved {
    /// Reads the resolvers: for each domain the first resolver by name (upstream takes any
    /// one of those tracking it); names whose last lookups failed (`resolutionFailures`) and
    /// addresses that do not parse are left out, as upstream.
    pub fn new<'a>(resolvers: impl IntoIterator<Item = &'a DnsNameResolver>) -> Resolved {
        let mut sorted: Vec<&DnsNameResolver> = resolvers.into_iter().collect();
        sorted.sort_by_key(|r| r.name_any());
        let mut by_domain: HashMap<String, Families> = HashMap::new();
        for r in sorted {
            if r.spec.name.is_empty() || by_domain.contains_key(&r.spec.name) {
                continue;
            }
            by_domain.insert(r.spec.name.clone(), addresses(r));
        }
        Resolved { by_domain }
    }

    /// The addresses `domains` resolve to, per family.
    pub fn of<'a>(&self, domains: impl IntoIterator<Item = &'a String>) -> Families {
        let mut out = Families::default();
        for d in domains {
            if let Some(f) = self.by_domain.get(d) {
                for i in 0..2 {
                    out[i].extend(f[i].iter().cloned());
                }
            }
        }
        out
    }
}

/// What of a resolver the policies read: the domain it tracks and the addresses it holds.
pub fn signature(r: &DnsNameResolver) -> u64 {
    kube_ovn_runtime::trigger::hash_of(&(&r.spec.name, addresses(r)))
}

fn addresses(r: &DnsNameResolver) -> Families {
    let mut out = Families::default();
    let Some(status) = &r.status else {
        return out;
    };
    for name in status
        .resolved_names
        .iter()
        .filter(|n| n.resolution_failures == 0)
    {
        for a in &name.resolved_addresses {
            // An IPv4-mapped IPv6 address counts as IPv4, as upstream's parser has it; it is
            // written in IPv4 form, which an `ip4` match can hold (upstream keeps the text).
            match a.ip.parse::<IpAddr>() {
                Ok(IpAddr::V4(v4)) => out[0].insert(v4.to_string()),
                Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                    Some(v4) => out[0].insert(v4.to_string()),
                    None => out[1].insert(v6.to_string()),
                },
                Err(_) => false,
            };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn resolver(name: &str, domain: &str, names: serde_json::Value) -> DnsNameResolver {
        serde_json::from_value(json!({
            "apiVersion": "kubeovn.io/v1", "kind": "DNSNameResolver",
            "metadata": {"name": name}, "spec": {"name": domain},
            "status": {"resolvedNames": names},
        }))
        .unwrap()
    }

    fn entry(dns: &str, ips: &[&str], failures: i32) -> serde_json::Value {
        let addrs: Vec<_> = ips
            .iter()
            .map(|ip| json!({"ip": ip, "ttlSeconds": 30, "lastLookupTime": "2026-01-01T00:00:00Z"}))
            .collect();
        json!({"dnsName": dns, "resolvedAddresses": addrs, "resolutionFailures": failures})
    }

    /// The resolver CRD's pattern, which the policy APIs do not impose.
    #[test]
    fn domains_a_resolver_accepts() {
        for ok in ["a.example.", "*.baidu.com.", "x-1.y2.z.", "a.b."] {
            assert!(valid(ok), "{ok}");
        }
        let long = format!("{}.example.", "a".repeat(64));
        for bad in [
            "example.com",
            "Example.com.",
            "com.",
            "*.com.",
            "a..b.",
            "-a.b.",
            "a-.b.",
            "a.*.b.",
            "a_b.c.",
            long.as_str(),
        ] {
            assert!(!valid(bad), "{bad}");
        }
    }

    /// Upstream's names: the domain as written hashed, the policy's NB name in the middle.
    #[test]
    fn resolver_names_are_upstreams() {
        assert_eq!(
            resolver_name("deny-baidu", "*.baidu.com."),
            "anp-deny-baidu-fb3029ce"
        );
        let w = wanted("p", ["a.example.".to_string(), "a.example.".to_string()]);
        assert_eq!(w.len(), 1);
        assert_eq!(w.values().next().map(String::as_str), Some("a.example."));
    }

    #[test]
    fn addresses_by_family_without_failed_names_or_bad_addresses() {
        let r = resolver(
            "anp-p-1",
            "*.example.",
            json!([
                entry(
                    "www.example.",
                    &["192.0.2.1", "2001:db8::1", "::ffff:192.0.2.9", "bad"],
                    0
                ),
                entry("api.example.", &["192.0.2.2"], 0),
                entry("gone.example.", &["192.0.2.3"], 2),
            ]),
        );
        let other = resolver(
            "anp-q-1",
            "*.example.",
            json!([entry("x.example.", &["198.51.100.1"], 0)]),
        );
        let none = resolver("anp-p-2", "b.example.", json!([]));
        let resolved = Resolved::new([&other, &r, &none]);
        let f = resolved.of(&["*.example.".to_string(), "b.example.".to_string()]);
        let v4: Vec<&str> = f[0].iter().map(String::as_str).collect();
        let v6: Vec<&str> = f[1].iter().map(String::as_str).collect();
        // The first resolver by name of a domain holds its addresses (`anp-p-1` before `anp-q-1`).
        assert_eq!(v4, ["192.0.2.1", "192.0.2.2", "192.0.2.9"]);
        assert_eq!(v6, ["2001:db8::1"]);
        assert!(resolved.of(&["c.example.".to_string()])[0].is_empty());
        assert_ne!(signature(&r), signature(&other));
    }
}
