//! The ACLs upstream derives from a subnet's `private`, `allowSubnets`, `acls` and
//! `allowEWTraffic` fields, and their convergence on the subnet's logical switch.

use std::collections::BTreeMap;

use ovsdb::model::Model;
use ovsdb::models::nb::{Acl, LogicalSwitch};
use ovsdb::{Datum, Row};

use super::names::cidr_prefix;
use super::rows::{ext, key, ours, owned_map, row, VENDOR};
use crate::plan::{Parent, Plan, PlanError};

/// An ACL on a logical switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchAcl {
    /// `from-lport` or `to-lport`.
    pub direction: String,
    /// Priority.
    pub priority: i64,
    /// Match expression.
    pub r#match: String,
    /// allow, allow-related, drop, reject…
    pub action: String,
    /// Extra external_ids (e.g. `subnet`).
    pub extra_ids: Vec<(String, String)>,
    /// Name, logged drops.
    pub log_name: Option<String>,
}

/// The ACLs upstream derives from a subnet's `private`, `allowSubnets`, `acls` and
/// `allowEWTraffic` fields.
pub fn subnet_acls(
    subnet: &str,
    cidrs: &[String],
    join_cidrs: &[String],
    private: bool,
    allow_subnets: &[String],
    user: &[(String, i64, String, String)],
    allow_ew: bool,
) -> Vec<SwitchAcl> {
    let acl = |direction: &str, priority: i64, m: String, action: &str| SwitchAcl {
        direction: direction.into(),
        priority,
        r#match: m,
        action: action.into(),
        extra_ids: Vec::new(),
        log_name: None,
    };
    let mut out = Vec::new();
    if private {
        let mut drop = acl("to-lport", 1000, "ip".into(), "drop");
        drop.log_name = Some(if subnet.len() > 63 {
            format!("{}...", &subnet[..60])
        } else {
            subnet.to_string()
        });
        out.push(drop);
        for cidr in cidrs {
            let f = cidr_prefix(cidr);
            out.push(acl(
                "to-lport",
                1001,
                format!("{f}.src == {cidr} && {f}.dst == {cidr}"),
                "allow-related",
            ));
            for j in join_cidrs.iter().filter(|j| cidr_prefix(j) == f) {
                out.push(acl(
                    "to-lport",
                    3000,
                    format!("{f}.src == {j}"),
                    "allow-related",
                ));
            }
            for a in allow_subnets
                .iter()
                .map(|a| a.trim())
                .filter(|a| cidr_prefix(a) == f && !a.is_empty())
            {
                out.push(acl(
                    "to-lport",
                    1001,
                    format!("({f}.src == {cidr} && {f}.dst == {a}) || ({f}.src == {a} && {f}.dst == {cidr})"),
                    "allow-related",
                ));
            }
        }
    }
    if !user.is_empty() {
        let tag = |mut a: SwitchAcl| {
            a.extra_ids.push((key::SUBNET.into(), subnet.into()));
            a
        };
        if allow_ew {
            for cidr in cidrs {
                let f = cidr_prefix(cidr);
                for dir in ["to-lport", "from-lport"] {
                    out.push(tag(acl(
                        dir,
                        1900,
                        format!("{f}.src == {cidr} && {f}.dst == {cidr}"),
                        "allow",
                    )));
                }
            }
        }
        for (direction, priority, m, action) in user {
            out.push(tag(acl(direction, *priority, m.clone(), action)));
        }
    }
    out
}

/// Converges the ACLs kube-ovn owns on a logical switch (`external_ids:parent=<ls>`).
pub fn switch_acls(plan: &mut Plan<'_>, ls: &str, acls: &[SwitchAcl]) -> Result<(), PlanError> {
    let desired: Vec<Row> = acls
        .iter()
        .map(|a| {
            let mut ids: BTreeMap<String, String> = [
                (key::PARENT.to_string(), ls.to_string()),
                (key::VENDOR.to_string(), VENDOR.to_string()),
            ]
            .into();
            ids.extend(a.extra_ids.iter().cloned());
            let mut r = row!(Acl {
                DIRECTION: Datum::from(a.direction.as_str()),
                PRIORITY: Datum::from(a.priority),
                MATCH: Datum::from(a.r#match.as_str()),
                ACTION: Datum::from(a.action.as_str()),
                EXTERNAL_IDS: owned_map(&ids),
            });
            if let Some(name) = &a.log_name {
                r.insert(Acl::NAME, Datum::from(name.as_str()));
                r.insert(Acl::LOG, Datum::from(true));
                r.insert(Acl::SEVERITY, Datum::from("warning"));
            }
            r
        })
        .collect();
    let owner = ls.to_string();
    plan.sync_keyed_children(
        Parent {
            table: LogicalSwitch::TABLE,
            name: ls,
            column: LogicalSwitch::ACLS,
        },
        Acl::TABLE,
        &[Acl::DIRECTION, Acl::PRIORITY, Acl::MATCH, Acl::ACTION],
        desired,
        None,
        move |r| ours(r) && ext(r, key::PARENT) == Some(owner.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_subnet_and_user_acls() {
        let acls = subnet_acls(
            "s",
            &["10.1.0.0/24".into()],
            &["100.64.0.0/16".into()],
            true,
            &["10.2.0.0/24".into()],
            &[(
                "from-lport".into(),
                1500,
                "ip4.dst == 8.8.8.8".into(),
                "drop".into(),
            )],
            true,
        );
        let rows: Vec<(String, i64, String, String)> = acls
            .iter()
            .map(|a| {
                (
                    a.direction.clone(),
                    a.priority,
                    a.r#match.clone(),
                    a.action.clone(),
                )
            })
            .collect();
        let want = [
            ("to-lport", 1000, "ip", "drop"),
            ("to-lport", 1001, "ip4.src == 10.1.0.0/24 && ip4.dst == 10.1.0.0/24", "allow-related"),
            ("to-lport", 3000, "ip4.src == 100.64.0.0/16", "allow-related"),
            (
                "to-lport",
                1001,
                "(ip4.src == 10.1.0.0/24 && ip4.dst == 10.2.0.0/24) || (ip4.src == 10.2.0.0/24 && ip4.dst == 10.1.0.0/24)",
                "allow-related",
            ),
            ("to-lport", 1900, "ip4.src == 10.1.0.0/24 && ip4.dst == 10.1.0.0/24", "allow"),
            ("from-lport", 1900, "ip4.src == 10.1.0.0/24 && ip4.dst == 10.1.0.0/24", "allow"),
            ("from-lport", 1500, "ip4.dst == 8.8.8.8", "drop"),
        ];
        let want: Vec<(String, i64, String, String)> = want
            .iter()
            .map(|(d, p, m, a)| (d.to_string(), *p, m.to_string(), a.to_string()))
            .collect();
        assert_eq!(rows, want);
        assert_eq!(acls[0].log_name.as_deref(), Some("s"));
        assert!(acls[4]
            .extra_ids
            .contains(&("subnet".to_string(), "s".to_string())));
        // allowEWTraffic alone (no user ACLs) writes nothing, as upstream.
        assert!(subnet_acls("s", &["10.1.0.0/24".into()], &[], false, &[], &[], true).is_empty());
    }
}
