//! SecurityGroup → ACLs, as upstream compiles them: the base allows every member needs (ARP,
//! ICMPv6 neighbour discovery, DHCP, VRRP) at 2005, the same-group allows at 2004, each rule at
//! `18484 − priority`, all on the group's port group; the deny-all group's drops at 2003 sit
//! below them. Pure functions: the reconciler is `sg_ctl`.
//!
//! Stock OVN 23.03 has no ACL `tier` column and no `pass` action: upstream's per-tier copies of
//! the base rules collapse into one set (their priorities and matches are equal), a group's
//! `tier` is validated but not written, and a `pass` rule is refused with a clear error until
//! the NB schema offers the action.

use std::collections::BTreeSet;

use kube_ovn_common::crd::{SecurityGroup, SecurityGroupRule};
use kube_ovn_nb::objects::{sg_address_set, sg_pg, PgAcl};

/// Base allows (protocol traffic every member needs).
pub const BASE_PRIORITY: i64 = 2005;
/// Same-group allows.
pub const SAME_GROUP_PRIORITY: i64 = 2004;
/// A rule's ACL priority is this minus the rule's priority.
pub const HIGHEST_PRIORITY: i64 = 18484;
/// Rule priorities allowed.
pub const RULE_PRIORITIES: std::ops::RangeInclusive<i64> = 1..=16384;
/// Group tiers allowed.
pub const TIERS: std::ops::RangeInclusive<i64> = 0..=1;

/// The security groups a pod names in `ovn.kubernetes.io/security_groups` (`a, b` → `[a, b]`).
pub fn pod_groups(annotation: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for g in annotation
        .unwrap_or_default()
        .replace(' ', "")
        .split(',')
        .filter(|g| !g.is_empty())
    {
        if !out.iter().any(|o| o == g) {
            out.push(g.to_string());
        }
    }
    out
}

fn valid_addr(a: &str) -> bool {
    if a.contains('/') {
        a.split(',')
            .all(|c| c.trim().parse::<ipnet::IpNet>().is_ok())
    } else {
        a.parse::<std::net::IpAddr>().is_ok()
    }
}

fn port_range(min: i64, max: i64, what: &str) -> Result<(), String> {
    let ok = |p: i64| (1..=65535).contains(&p);
    if !ok(min) || !ok(max) {
        return Err(format!("{what} is out of range"));
    }
    if min > max {
        return Err(format!(
            "{what} err, range Minimum value greater than maximum value"
        ));
    }
    Ok(())
}

/// Upstream's checks of a group's rules; `exists` says whether a remote group exists.
pub fn validate(sg: &SecurityGroup, exists: &dyn Fn(&str) -> bool) -> Result<(), String> {
    if !TIERS.contains(&sg.spec.tier) {
        return Err(format!(
            "tier {} is not in the range of {} to {}",
            sg.spec.tier,
            TIERS.start(),
            TIERS.end()
        ));
    }
    for rule in sg.spec.ingress_rules.iter().chain(&sg.spec.egress_rules) {
        if rule.ip_version != "ipv4" && rule.ip_version != "ipv6" {
            return Err("IPVersion should be 'ipv4' or 'ipv6'".into());
        }
        if !RULE_PRIORITIES.contains(&rule.priority) {
            return Err(format!(
                "priority '{}' is not in the range of {} to {}",
                rule.priority,
                RULE_PRIORITIES.start(),
                RULE_PRIORITIES.end()
            ));
        }
        if rule.policy == "pass" {
            return Err(
                "policy pass needs ACL tiers, which this OVN's northbound schema (stock 23.03) does not have"
                    .into(),
            );
        }
        match rule.remote_type.as_str() {
            "address" => {
                if !valid_addr(&rule.remote_address) {
                    return Err(if rule.remote_address.contains('/') {
                        format!("invalid CIDR '{}'", rule.remote_address)
                    } else {
                        format!("invalid ip address '{}'", rule.remote_address)
                    });
                }
            }
            "securityGroup" => {
                if !exists(&rule.remote_security_group) {
                    return Err(format!(
                        "failed to get remote sg '{}': not found",
                        rule.remote_security_group
                    ));
                }
            }
            other => return Err(format!("not support sgRemoteType '{other}'")),
        }
        if !rule.local_address.is_empty() && !valid_addr(&rule.local_address) {
            return Err(if rule.local_address.contains('/') {
                format!("invalid CIDR '{}'", rule.local_address)
            } else {
                format!("invalid ip address '{}'", rule.local_address)
            });
        }
        if rule.protocol == "tcp" || rule.protocol == "udp" {
            port_range(rule.port_range_min, rule.port_range_max, "portRange")?;
            if !rule.local_address.is_empty() {
                port_range(
                    rule.source_port_range_min,
                    rule.source_port_range_max,
                    "sourcePortRange",
                )?;
            }
        }
    }
    Ok(())
}

/// The remote groups a group's rules name (their address sets must exist first).
pub fn remote_groups(sg: &SecurityGroup) -> BTreeSet<String> {
    sg.spec
        .ingress_rules
        .iter()
        .chain(&sg.spec.egress_rules)
        .filter(|r| r.remote_type == "securityGroup" && !r.remote_security_group.is_empty())
        .map(|r| r.remote_security_group.clone())
        .collect()
}

fn acl(direction: &'static str, priority: i64, m: String, action: &'static str) -> PgAcl {
    PgAcl {
        direction,
        priority,
        r#match: m,
        action,
        name: None,
        log: false,
        severity: None,
        meter: None,
        apply_after_lb: false,
    }
}

/// `direction`'s port keyword and whether it is ingress.
fn sides(direction: &'static str) -> (&'static str, bool) {
    if direction == "to-lport" {
        ("outport", true)
    } else {
        ("inport", false)
    }
}

/// The base allows of one direction.
fn base_acls(pg: &str, direction: &'static str) -> Vec<PgAcl> {
    let (port, ingress) = sides(direction);
    let (d4, d6, nd) = if ingress {
        (("67", "68"), ("547", "546"), "{130, 134, 135, 136}")
    } else {
        (("68", "67"), ("546", "547"), "{130, 133, 135, 136}")
    };
    let on = format!("{port} == @{pg}");
    [
        format!("{on} && arp"),
        format!("{on} && icmp6.type == {nd} && icmp6.code == 0 && ip.ttl == 255"),
        format!("{on} && udp.src == {} && udp.dst == {} && ip4", d4.0, d4.1),
        format!("{on} && udp.src == {} && udp.dst == {} && ip6", d6.0, d6.1),
        format!("{on} && ip.proto == 112"),
    ]
    .into_iter()
    .map(|m| acl(direction, BASE_PRIORITY, m, "allow-related"))
    .collect()
}

/// One rule's ACL.
fn rule_acl(sg: &str, direction: &'static str, rule: &SecurityGroupRule) -> PgAcl {
    let pg = sg_pg(sg);
    let (port, ingress) = sides(direction);
    let f = if rule.ip_version == "ipv6" {
        "ip6"
    } else {
        "ip4"
    };
    let (remote, local) = if ingress {
        ("src", "dst")
    } else {
        ("dst", "src")
    };
    let mut m = format!("{port} == @{pg} && {f}");
    let remote_value = if rule.remote_type == "securityGroup" {
        format!(
            "${}",
            sg_address_set(&rule.remote_security_group, rule.ip_version == "ipv6")
        )
    } else {
        rule.remote_address.clone()
    };
    // Upstream's match builder writes a bare key when the value is empty.
    if remote_value.is_empty() {
        m.push_str(&format!(" && {f}.{remote}"));
    } else {
        m.push_str(&format!(" && {f}.{remote} == {remote_value}"));
    }
    if !rule.local_address.is_empty() {
        m.push_str(&format!(" && {f}.{local} == {}", rule.local_address));
    }
    match rule.protocol.as_str() {
        "icmp" => m.push_str(if f == "ip6" { " && icmp6" } else { " && icmp4" }),
        p @ ("tcp" | "udp") => {
            m.push_str(&format!(
                " && {} <= {p}.dst <= {}",
                rule.port_range_min, rule.port_range_max
            ));
            if !rule.local_address.is_empty() {
                m.push_str(&format!(
                    " && {} <= {p}.src <= {}",
                    rule.source_port_range_min, rule.source_port_range_max
                ));
            }
        }
        _ => {}
    }
    let action = match rule.policy.as_str() {
        "allow" => "allow-related",
        "pass" => "pass",
        _ => "drop",
    };
    acl(direction, HIGHEST_PRIORITY - rule.priority, m, action)
}

/// Every ACL of a (validated) group, both directions: base allows, same-group allows, rules.
pub fn acls(sg: &SecurityGroup) -> Vec<PgAcl> {
    let name = sg.metadata.name.as_deref().unwrap_or_default();
    let pg = sg_pg(name);
    let mut out = Vec::new();
    for (direction, rules) in [
        ("to-lport", &sg.spec.ingress_rules),
        ("from-lport", &sg.spec.egress_rules),
    ] {
        let (port, ingress) = sides(direction);
        let remote = if ingress { "src" } else { "dst" };
        if sg.spec.allow_same_group_traffic {
            for (f, v6) in [("ip4", false), ("ip6", true)] {
                out.push(acl(
                    direction,
                    SAME_GROUP_PRIORITY,
                    format!(
                        "{port} == @{pg} && {f} && {f}.{remote} == ${}",
                        sg_address_set(name, v6)
                    ),
                    "allow-related",
                ));
            }
        }
        for r in rules {
            out.push(rule_acl(name, direction, r));
        }
        out.extend(base_acls(&pg, direction));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn group(spec: serde_json::Value) -> SecurityGroup {
        serde_json::from_value(json!({
            "apiVersion": "kubeovn.io/v1", "kind": "SecurityGroup",
            "metadata": {"name": "web-sg"}, "spec": spec,
        }))
        .unwrap()
    }

    fn matches(acls: &[PgAcl], direction: &str) -> Vec<(i64, String, &'static str)> {
        acls.iter()
            .filter(|a| a.direction == direction)
            .map(|a| (a.priority, a.r#match.clone(), a.action))
            .collect()
    }

    #[test]
    fn pod_annotation_lists_groups() {
        assert_eq!(pod_groups(Some("a, b,,a")), vec!["a", "b"]);
        assert!(pod_groups(Some(" ")).is_empty());
        assert!(pod_groups(None).is_empty());
    }

    #[test]
    fn rules_compile_as_upstream() {
        let sg = group(json!({
            "allowSameGroupTraffic": true,
            "ingressRules": [
                {"ipVersion": "ipv4", "protocol": "tcp", "priority": 10, "remoteType": "address",
                 "remoteAddress": "10.0.0.0/8", "portRangeMin": 80, "portRangeMax": 443,
                 "policy": "allow"},
                {"ipVersion": "ipv6", "protocol": "icmp", "priority": 1, "remoteType": "securityGroup",
                 "remoteSecurityGroup": "db-sg", "policy": "drop"},
            ],
            "egressRules": [
                {"ipVersion": "ipv4", "protocol": "udp", "priority": 5, "remoteType": "address",
                 "remoteAddress": "1.1.1.1", "localAddress": "10.16.0.5",
                 "portRangeMin": 53, "portRangeMax": 53,
                 "sourcePortRangeMin": 1024, "sourcePortRangeMax": 65535, "policy": "allow"},
                {"ipVersion": "ipv4", "protocol": "all", "priority": 100, "remoteType": "address",
                 "remoteAddress": "0.0.0.0/0", "policy": "drop"},
            ],
        }));
        let acls = acls(&sg);
        let ingress = matches(&acls, "to-lport");
        assert_eq!(
            &ingress[..4],
            &[
                (2004, "outport == @ovn.sg.web.sg && ip4 && ip4.src == $ovn.sg.web.sg.associated.v4".into(), "allow-related"),
                (2004, "outport == @ovn.sg.web.sg && ip6 && ip6.src == $ovn.sg.web.sg.associated.v6".into(), "allow-related"),
                (18474, "outport == @ovn.sg.web.sg && ip4 && ip4.src == 10.0.0.0/8 && 80 <= tcp.dst <= 443".into(), "allow-related"),
                (18483, "outport == @ovn.sg.web.sg && ip6 && ip6.src == $ovn.sg.db.sg.associated.v6 && icmp6".into(), "drop"),
            ]
        );
        assert_eq!(
            &ingress[4..],
            &[
                (2005, "outport == @ovn.sg.web.sg && arp".into(), "allow-related"),
                (2005, "outport == @ovn.sg.web.sg && icmp6.type == {130, 134, 135, 136} && icmp6.code == 0 && ip.ttl == 255".into(), "allow-related"),
                (2005, "outport == @ovn.sg.web.sg && udp.src == 67 && udp.dst == 68 && ip4".into(), "allow-related"),
                (2005, "outport == @ovn.sg.web.sg && udp.src == 547 && udp.dst == 546 && ip6".into(), "allow-related"),
                (2005, "outport == @ovn.sg.web.sg && ip.proto == 112".into(), "allow-related"),
            ]
        );
        let egress = matches(&acls, "from-lport");
        assert_eq!(
            egress[2],
            (18479, "inport == @ovn.sg.web.sg && ip4 && ip4.dst == 1.1.1.1 && ip4.src == 10.16.0.5 && 53 <= udp.dst <= 53 && 1024 <= udp.src <= 65535".into(), "allow-related")
        );
        assert_eq!(
            egress[3],
            (
                18384,
                "inport == @ovn.sg.web.sg && ip4 && ip4.dst == 0.0.0.0/0".into(),
                "drop"
            )
        );
        assert_eq!(
            egress[5],
            (2005, "inport == @ovn.sg.web.sg && icmp6.type == {130, 133, 135, 136} && icmp6.code == 0 && ip.ttl == 255".into(), "allow-related")
        );
        assert_eq!(
            egress[6].1,
            "inport == @ovn.sg.web.sg && udp.src == 68 && udp.dst == 67 && ip4"
        );
    }

    #[test]
    fn validation_as_upstream() {
        let none = |_: &str| false;
        let rule = |extra: serde_json::Value| {
            let mut r = json!({"ipVersion": "ipv4", "protocol": "tcp", "priority": 1,
                "remoteType": "address", "remoteAddress": "10.0.0.1",
                "portRangeMin": 1, "portRangeMax": 2, "policy": "allow"});
            for (k, v) in extra.as_object().unwrap() {
                r[k] = v.clone();
            }
            group(json!({"ingressRules": [r]}))
        };
        assert!(validate(&rule(json!({})), &none).is_ok());
        for (bad, says) in [
            (json!({"ipVersion": "4"}), "IPVersion"),
            (json!({"priority": 0}), "priority '0'"),
            (json!({"priority": 16385}), "priority '16385'"),
            (json!({"remoteAddress": "10.0.0/8"}), "invalid CIDR"),
            (json!({"remoteAddress": "nope"}), "invalid ip address"),
            (
                json!({"remoteType": "securityGroup", "remoteSecurityGroup": "x"}),
                "remote sg 'x'",
            ),
            (json!({"remoteType": "pod"}), "sgRemoteType 'pod'"),
            (json!({"portRangeMin": 0}), "portRange is out of range"),
            (
                json!({"portRangeMin": 9, "portRangeMax": 2}),
                "greater than maximum",
            ),
            (
                json!({"localAddress": "10.0.0.2"}),
                "sourcePortRange is out of range",
            ),
            (json!({"policy": "pass"}), "tiers"),
        ] {
            let err = validate(&rule(bad.clone()), &none).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let exists = |s: &str| s == "x";
        assert!(validate(
            &rule(json!({"remoteType": "securityGroup", "remoteSecurityGroup": "x"})),
            &exists
        )
        .is_ok());
        let mut tiered = rule(json!({}));
        tiered.spec.tier = 2;
        assert!(validate(&tiered, &none).unwrap_err().contains("tier 2"));
    }
}
