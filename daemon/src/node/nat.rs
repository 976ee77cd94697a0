//! NAT-outgoing through nf_tables: the whole `kube-ovn` table of each family, generated from
//! validated CIDRs (pure) and loaded as one atomic `nft -f -` transaction on stdin that
//! replaces the previous table wholesale, so no rule is ever half-applied or left stale.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

use ipnet::IpNet;

/// Name of the table in both the `ip` and `ip6` families.
pub const TABLE: &str = "kube-ovn";

fn elements(cidrs: &[IpNet], v4: bool) -> String {
    cidrs
        .iter()
        .filter(|c| c.addr().is_ipv4() == v4)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn set(out: &mut String, name: &str, kind: &str, elements: &str) {
    let _ = writeln!(out, "  set {name} {{");
    let _ = writeln!(out, "    type {kind}; flags interval; auto-merge;");
    if !elements.is_empty() {
        let _ = writeln!(out, "    elements = {{ {elements} }}");
    }
    let _ = writeln!(out, "  }}");
}

/// The ruleset: traffic from a `nat` CIDR to anything outside `cluster` (every overlay and
/// join CIDR) is masqueraded on its way out of the node. Declaring each table before deleting
/// it makes the load succeed whether or not it existed.
pub fn ruleset(nat: &[IpNet], cluster: &[IpNet]) -> String {
    let mut out = String::new();
    for (family, kind, v4) in [("ip", "ipv4_addr", true), ("ip6", "ipv6_addr", false)] {
        let _ = writeln!(out, "table {family} {TABLE}");
        let _ = writeln!(out, "delete table {family} {TABLE}");
        let _ = writeln!(out, "table {family} {TABLE} {{");
        set(&mut out, "nat-subnets", kind, &elements(nat, v4));
        set(&mut out, "cluster-subnets", kind, &elements(cluster, v4));
        let _ = writeln!(out, "  chain postrouting {{");
        let _ = writeln!(
            out,
            "    type nat hook postrouting priority srcnat; policy accept;"
        );
        let _ = writeln!(
            out,
            "    {family} saddr @nat-subnets {family} daddr != @cluster-subnets masquerade"
        );
        let _ = writeln!(out, "  }}");
        let _ = writeln!(out, "}}");
    }
    out
}

/// Loads `ruleset` with `nft -f -` (one netlink batch: all of it applies or none).
pub fn load(ruleset: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("run nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(ruleset.as_bytes())
            .map_err(|e| format!("write ruleset to nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("wait for nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft -f - failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn nat_subnets_are_masqueraded_outside_the_cluster_only() {
        let r = ruleset(
            &nets(&["10.16.0.0/16"]),
            &nets(&["10.16.0.0/16", "10.17.0.0/16", "100.64.0.0/16"]),
        );
        let ip4 = r.split("table ip6").next().unwrap();
        assert!(ip4.starts_with("table ip kube-ovn\ndelete table ip kube-ovn\n"));
        assert!(ip4.contains("elements = { 10.16.0.0/16 }"), "{r}");
        assert!(ip4.contains("elements = { 10.16.0.0/16, 10.17.0.0/16, 100.64.0.0/16 }"));
        assert!(ip4.contains("ip saddr @nat-subnets ip daddr != @cluster-subnets masquerade"));
        assert!(ip4.contains("type nat hook postrouting priority srcnat;"));
    }

    #[test]
    fn each_family_gets_its_own_cidrs_and_empty_sets_have_no_elements() {
        let r = ruleset(
            &nets(&["fd00:10:16::/112"]),
            &nets(&["10.17.0.0/16", "fd00:10:16::/112"]),
        );
        let (ip4, ip6) = r.split_once("table ip6").unwrap();
        assert_eq!(ip4.matches("elements").count(), 1);
        assert!(ip4.contains("{ 10.17.0.0/16 }"));
        assert!(!ip4.contains("fd00"));
        assert!(ip6.contains("type ipv6_addr"));
        assert!(ip6.contains("ip6 saddr @nat-subnets ip6 daddr != @cluster-subnets masquerade"));
        assert_eq!(ip6.matches("elements = { fd00:10:16::/112 }").count(), 2);
    }
}
