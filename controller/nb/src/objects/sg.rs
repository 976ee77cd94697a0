//! A SecurityGroup's rows, as upstream writes them: the port group `ovn.sg.<name>` (dots for
//! dashes, `external_ids` `type=security_group`, `sg=<name>`) holding the ports that carry
//! `external_ids:associated_sg_<name>=true` and the group's ACLs, and the address sets
//! `ovn.sg.<name>.associated.v4|v6` of those ports' addresses. The `kubeovn_deny_all` group,
//! made at start-up, holds every port naming a security group that exists and drops the rest
//! of their traffic at priority 2003.

use std::collections::BTreeSet;

use ovsdb::model::Model;
use ovsdb::models::nb::{AddressSet, LogicalSwitchPort, PortGroup};
use ovsdb::{Atom, Datum};

use super::netpol::{converge_members, pg_acls, PgAcl};
use super::rows::{ext, key, map, row, text, VENDOR};
use crate::plan::{Plan, PlanError};

/// The security group upstream creates at start-up: ports with any security group get its
/// drops below their groups' allows.
pub const DENY_ALL_SG: &str = "kubeovn_deny_all";
/// The security group upstream's ports outside the default VPC are marked against; its port
/// group is never garbage-collected.
pub const DEFAULT_SG: &str = "default-securitygroup";
/// `external_ids` key of a security group's port group and address sets.
pub const SG_KEY: &str = "sg";
/// `external_ids` key of a port's security groups (`sg1/sg2`).
pub const SGS_KEY: &str = "security_groups";
/// Prefix of a port's per-group mark (`associated_sg_<name>` = `true`/`false`).
pub const ASSOCIATED_PREFIX: &str = "associated_sg_";
/// Priority of the deny-all drops.
pub const SG_DROP_PRIORITY: i64 = 2003;

/// `ovn.sg.<name>` with dots for dashes.
pub fn sg_pg(sg: &str) -> String {
    format!("ovn.sg.{sg}").replace('-', ".")
}

/// `ovn.sg.<name>.associated.v4|v6` with dots for dashes.
pub fn sg_address_set(sg: &str, v6: bool) -> String {
    format!("ovn.sg.{sg}.associated.{}", if v6 { "v6" } else { "v4" }).replace('-', ".")
}

/// The ports of a security group and their addresses, read from the ports' marks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SgMembers {
    /// Port names.
    pub ports: Vec<String>,
    /// IPv4 addresses (port security if set, else addresses).
    pub v4: Vec<String>,
    /// IPv6 addresses.
    pub v6: Vec<String>,
}

/// The ports marked `associated_sg_<sg>=true` and their addresses (the port's
/// `port_security` when it has any, else its `addresses`, as upstream reads them).
pub fn sg_members(plan: &Plan<'_>, sg: &str) -> Result<SgMembers, PlanError> {
    let mark = format!("{ASSOCIATED_PREFIX}{sg}");
    let ports = plan.monitored(LogicalSwitchPort::TABLE)?;
    let mut out = SgMembers::default();
    let mut v4 = BTreeSet::new();
    let mut v6 = BTreeSet::new();
    for (_, r) in ports.iter() {
        if ext(r, &mark) != Some("true") {
            continue;
        }
        let Some(name) = text(r, LogicalSwitchPort::NAME) else {
            continue;
        };
        out.ports.push(name.to_string());
        let column = match r
            .get(LogicalSwitchPort::PORT_SECURITY)
            .and_then(Datum::as_set)
        {
            Some(s) if !s.is_empty() => LogicalSwitchPort::PORT_SECURITY,
            _ => LogicalSwitchPort::ADDRESSES,
        };
        let entries = r.get(column).and_then(Datum::as_set);
        for entry in entries.into_iter().flat_map(|s| s.iter()) {
            let Some(entry) = entry.as_str() else {
                continue;
            };
            // `MAC addr addr…`: the first word is the MAC.
            for addr in entry.split_whitespace().skip(1) {
                if addr.contains(':') {
                    v6.insert(addr.to_string());
                } else {
                    v4.insert(addr.to_string());
                }
            }
        }
    }
    out.ports.sort();
    out.v4 = v4.into_iter().collect();
    out.v6 = v6.into_iter().collect();
    Ok(out)
}

/// States a security group's port group with exactly `ports` (that exist) as members.
pub fn sg_port_group(plan: &mut Plan<'_>, sg: &str, ports: &[String]) -> Result<(), PlanError> {
    let pg = sg_pg(sg);
    let at = plan.ensure_root(
        PortGroup::TABLE,
        &pg,
        row!(PortGroup {
            EXTERNAL_IDS: map([
                ("type", "security_group"),
                (SG_KEY, sg),
                (key::VENDOR, VENDOR)
            ]),
        }),
    )?;
    plan.monitored(LogicalSwitchPort::TABLE)?;
    let members: Vec<Atom> = ports
        .iter()
        .filter_map(|p| plan.lookup(LogicalSwitchPort::TABLE, p))
        .map(|r| r.atom())
        .collect();
    converge_members(plan, PortGroup::TABLE, &pg, PortGroup::PORTS, &at, &members)
}

/// States both address sets of a security group with exactly the members' addresses.
pub fn sg_address_sets(
    plan: &mut Plan<'_>,
    sg: &str,
    members: &SgMembers,
) -> Result<(), PlanError> {
    for (v6, addrs) in [(false, &members.v4), (true, &members.v6)] {
        let name = sg_address_set(sg, v6);
        // Upstream creates the set once and never rewrites its external_ids.
        let at = match plan.lookup(AddressSet::TABLE, &name) {
            Some(r) => r,
            None => plan.ensure_root(
                AddressSet::TABLE,
                &name,
                row!(AddressSet {
                    EXTERNAL_IDS: map([(SG_KEY, sg), (key::VENDOR, VENDOR)]),
                }),
            )?,
        };
        let want: Vec<Atom> = addrs.iter().map(|a| Atom::from(a.as_str())).collect();
        converge_members(
            plan,
            AddressSet::TABLE,
            &name,
            AddressSet::ADDRESSES,
            &at,
            &want,
        )?;
    }
    Ok(())
}

/// Creates a security group's address sets if they are missing (empty), leaving existing ones
/// alone: another group's rule names them before their own group may have run.
pub fn ensure_sg_address_sets(plan: &mut Plan<'_>, sg: &str) -> Result<(), PlanError> {
    plan.monitored(AddressSet::TABLE)?;
    for v6 in [false, true] {
        let name = sg_address_set(sg, v6);
        if plan.lookup(AddressSet::TABLE, &name).is_none() {
            plan.ensure_root(
                AddressSet::TABLE,
                &name,
                row!(AddressSet {
                    EXTERNAL_IDS: map([(SG_KEY, sg), (key::VENDOR, VENDOR)]),
                }),
            )?;
        }
    }
    Ok(())
}

/// Converges a security group's ACLs (both directions) on exactly `acls`.
pub fn sg_acls(plan: &mut Plan<'_>, sg: &str, acls: &[PgAcl]) -> Result<(), PlanError> {
    pg_acls(plan, &sg_pg(sg), None, acls)
}

/// The deny-all group's drops: every IP packet into or out of a member.
pub fn deny_all_acls() -> Vec<PgAcl> {
    let pg = sg_pg(DENY_ALL_SG);
    [("to-lport", "outport"), ("from-lport", "inport")]
        .into_iter()
        .map(|(direction, port)| PgAcl {
            direction,
            priority: SG_DROP_PRIORITY,
            r#match: format!("{port} == @{pg} && ip"),
            action: "drop",
            name: None,
            log: false,
            severity: None,
            meter: None,
            apply_after_lb: false,
        })
        .collect()
}

/// States the deny-all group and its drops (start-up), leaving its members alone.
pub fn deny_all_group(plan: &mut Plan<'_>) -> Result<(), PlanError> {
    let pg = sg_pg(DENY_ALL_SG);
    plan.ensure_root(
        PortGroup::TABLE,
        &pg,
        row!(PortGroup {
            EXTERNAL_IDS: map([
                ("type", "security_group"),
                (SG_KEY, DENY_ALL_SG),
                (key::VENDOR, VENDOR)
            ]),
        }),
    )?;
    pg_acls(plan, &pg, None, &deny_all_acls())
}

/// Makes the deny-all group hold exactly the ports whose `security_groups` names at least one
/// group in `existing` (upstream: a group whose port group exists).
pub fn deny_all_members(plan: &mut Plan<'_>, existing: &BTreeSet<String>) -> Result<(), PlanError> {
    let pg = sg_pg(DENY_ALL_SG);
    let Some(at) = plan.lookup(PortGroup::TABLE, &pg) else {
        return Ok(());
    };
    let ports = plan.monitored(LogicalSwitchPort::TABLE)?;
    let want: Vec<Atom> = ports
        .iter()
        .filter(|(_, r)| {
            ext(r, SGS_KEY)
                .is_some_and(|v| !v.is_empty() && v.split('/').any(|s| existing.contains(s)))
        })
        .map(|(u, _)| Atom::Uuid(*u))
        .collect();
    converge_members(plan, PortGroup::TABLE, &pg, PortGroup::PORTS, &at, &want)
}

/// The security groups whose port group exists (what the deny-all membership counts as
/// existing).
pub fn sg_groups_present(plan: &Plan<'_>) -> Result<BTreeSet<String>, PlanError> {
    let pgs = plan.monitored(PortGroup::TABLE)?;
    Ok(pgs
        .iter()
        .filter(|(_, r)| ext(r, "type") == Some("security_group"))
        .filter_map(|(_, r)| ext(r, SG_KEY).map(str::to_string))
        .collect())
}

/// Removes a security group's port group (its ACLs go with it) and address sets.
pub fn delete_sg(plan: &mut Plan<'_>, sg: &str) -> Result<(), PlanError> {
    plan.delete_root(PortGroup::TABLE, &sg_pg(sg))?;
    let sets = plan.monitored(AddressSet::TABLE)?;
    let stale: Vec<ovsdb::Uuid> = sets
        .by_external_id(SG_KEY, sg)
        .filter(|(_, r)| ext(r, key::VENDOR) == Some(VENDOR))
        .map(|(u, _)| *u)
        .collect();
    for u in stale {
        plan.delete_root_uuid(AddressSet::TABLE, u)?;
    }
    Ok(())
}

/// The security groups kube-ovn made a port group for, except the two upstream never
/// collects (deny-all and the default group).
pub fn sg_port_groups(plan: &Plan<'_>) -> Result<Vec<String>, PlanError> {
    let pgs = plan.monitored(PortGroup::TABLE)?;
    let keep = [sg_pg(DENY_ALL_SG), sg_pg(DEFAULT_SG)];
    Ok(pgs
        .iter()
        .filter(|(_, r)| ext(r, key::VENDOR) == Some(VENDOR) && ext(r, key::NP).is_none())
        .filter(|(_, r)| text(r, PortGroup::NAME).is_some_and(|n| !keep.iter().any(|k| k == n)))
        .filter_map(|(_, r)| ext(r, SG_KEY).filter(|s| !s.is_empty()).map(str::to_string))
        .collect())
}

/// The security groups a port's marks say it belongs to (`associated_sg_<name>=true`).
pub fn port_security_groups(plan: &Plan<'_>, port: &str) -> Result<Vec<String>, PlanError> {
    let ports = plan.monitored(LogicalSwitchPort::TABLE)?;
    let Some(crate::RowRef::Existing(u)) = plan.lookup(LogicalSwitchPort::TABLE, port) else {
        return Ok(Vec::new());
    };
    let Some(r) = ports.get(&u) else {
        return Ok(Vec::new());
    };
    Ok(super::rows::string_map(r, LogicalSwitchPort::EXTERNAL_IDS)
        .into_iter()
        .filter(|(_, v)| v == "true")
        .filter_map(|(k, _)| k.strip_prefix(ASSOCIATED_PREFIX).map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::testing::{empty_nb, inserted, ops};

    #[test]
    fn names_as_upstream() {
        assert_eq!(sg_pg("web-tier"), "ovn.sg.web.tier");
        assert_eq!(sg_pg(DENY_ALL_SG), "ovn.sg.kubeovn_deny_all");
        assert_eq!(
            sg_address_set("web-tier", false),
            "ovn.sg.web.tier.associated.v4"
        );
        assert_eq!(sg_address_set("db", true), "ovn.sg.db.associated.v6");
    }

    #[test]
    fn deny_all_group_and_drops() {
        let nb = empty_nb();
        let mut plan = Plan::new(&nb, "OVN_Northbound");
        deny_all_group(&mut plan).unwrap();
        let ops = ops(plan);
        let pg = inserted(&ops, "Port_Group", "ovn.sg.kubeovn_deny_all");
        assert_eq!(
            pg["row"]["external_ids"],
            serde_json::json!([
                "map",
                [
                    ["sg", "kubeovn_deny_all"],
                    ["type", "security_group"],
                    ["vendor", "kube-ovn"]
                ]
            ])
        );
        let acls: Vec<_> = ops
            .iter()
            .filter(|o| o["op"] == "insert" && o["table"] == "ACL")
            .map(|o| {
                (
                    o["row"]["direction"].clone(),
                    o["row"]["match"].clone(),
                    o["row"]["priority"].clone(),
                )
            })
            .collect();
        assert_eq!(
            acls,
            vec![
                (
                    "to-lport".into(),
                    "outport == @ovn.sg.kubeovn_deny_all && ip".into(),
                    2003.into()
                ),
                (
                    "from-lport".into(),
                    "inport == @ovn.sg.kubeovn_deny_all && ip".into(),
                    2003.into()
                ),
            ]
        );
    }
}
