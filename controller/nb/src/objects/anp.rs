//! An AdminNetworkPolicy's or BaselineAdminNetworkPolicy's rows, as upstream writes them: the
//! port group `<name>` (dots for dashes, `external_ids:anp|banp=<name>`) holding the subject
//! pods' ports and the policy's ACLs, and one address set per rule, direction and family
//! (`external_ids:anp|banp=<name>/<ingress|egress>`). Membership changes are mutates of the
//! differing members only; the ACLs themselves go through [`super::pg_acls`].

use std::collections::BTreeSet;

use ovsdb::model::Model;
use ovsdb::models::nb::{AddressSet, LogicalSwitchPort, PortGroup};
use ovsdb::{Atom, Uuid};

use super::netpol::converge_members;
use super::rows::{ext, key, map, row, text, VENDOR};
use crate::plan::{Plan, PlanError};

/// The two kinds, by the `external_ids` key upstream marks their rows with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminKind {
    /// AdminNetworkPolicy: `external_ids:anp`.
    Anp,
    /// BaselineAdminNetworkPolicy: `external_ids:banp`.
    Banp,
}

impl AdminKind {
    /// The `external_ids` key.
    pub fn key(self) -> &'static str {
        match self {
            AdminKind::Anp => key::ANP,
            AdminKind::Banp => key::BANP,
        }
    }
}

/// An address set of an admin policy rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAddressSet {
    /// `<pg>.<ingress|egress>.<index>.<rule>.<IPv4|IPv6>` (dots for dashes).
    pub name: String,
    /// `<name>/<ingress|egress>`.
    pub mark: String,
    /// Addresses and CIDRs.
    pub addresses: Vec<String>,
}

/// States a policy's port group (`external_ids:<kind>=<name>`, `vendor`) with exactly the
/// ports named in `ports` that exist.
pub fn admin_port_group(
    plan: &mut Plan<'_>,
    kind: AdminKind,
    pg: &str,
    name: &str,
    ports: &[String],
) -> Result<(), PlanError> {
    let at = plan.ensure_root(
        PortGroup::TABLE,
        pg,
        row!(PortGroup {
            EXTERNAL_IDS: map([(kind.key(), name), (key::VENDOR, VENDOR)]),
        }),
    )?;
    plan.monitored(LogicalSwitchPort::TABLE)?;
    let members: Vec<Atom> = ports
        .iter()
        .filter_map(|p| plan.lookup(LogicalSwitchPort::TABLE, p))
        .map(|r| r.atom())
        .collect();
    converge_members(plan, PortGroup::TABLE, pg, PortGroup::PORTS, &at, &members)
}

/// States a rule's address set with exactly `set.addresses`. An existing set keeps its
/// `external_ids` (upstream only sets them at creation), unless the other kind marked it:
/// both kinds name sets alike, so an AdminNetworkPolicy and the BaselineAdminNetworkPolicy
/// sharing a name share set names too, and a set must carry the mark of the policy that wrote
/// it last, or the other one's removal would delete it from under it.
pub fn admin_address_set(
    plan: &mut Plan<'_>,
    kind: AdminKind,
    set: &AdminAddressSet,
) -> Result<(), PlanError> {
    let other = match kind {
        AdminKind::Anp => AdminKind::Banp,
        AdminKind::Banp => AdminKind::Anp,
    };
    let marked_by_other = plan
        .monitored(AddressSet::TABLE)?
        .by_name(&set.name)
        .any(|(_, r)| ext(r, kind.key()).is_none() && ext(r, other.key()).is_some());
    let at = match plan.lookup(AddressSet::TABLE, &set.name) {
        Some(r) if !marked_by_other => r,
        _ => plan.ensure_root(
            AddressSet::TABLE,
            &set.name,
            row!(AddressSet {
                EXTERNAL_IDS: map([(kind.key(), set.mark.as_str()), (key::VENDOR, VENDOR)]),
            }),
        )?,
    };
    let want: Vec<Atom> = set
        .addresses
        .iter()
        .map(|a| Atom::from(a.as_str()))
        .collect();
    converge_members(
        plan,
        AddressSet::TABLE,
        &set.name,
        AddressSet::ADDRESSES,
        &at,
        &want,
    )
}

/// Deletes the address sets marked `external_ids:<kind>=<mark>` that are not in `keep`.
pub fn prune_admin_address_sets(
    plan: &mut Plan<'_>,
    kind: AdminKind,
    mark: &str,
    keep: &BTreeSet<String>,
) -> Result<(), PlanError> {
    let sets = plan.monitored(AddressSet::TABLE)?;
    let stale: Vec<Uuid> = sets
        .by_external_id(kind.key(), mark)
        .filter(|(_, r)| text(r, AddressSet::NAME).is_none_or(|n| !keep.contains(n)))
        .map(|(u, _)| *u)
        .collect();
    for u in stale {
        plan.delete_root_uuid(AddressSet::TABLE, u)?;
    }
    Ok(())
}

/// Removes a policy's port group (its ACLs go with it) and its address sets.
pub fn delete_admin_policy(
    plan: &mut Plan<'_>,
    kind: AdminKind,
    pg: &str,
    name: &str,
) -> Result<(), PlanError> {
    let owned = plan
        .monitored(PortGroup::TABLE)?
        .by_name(pg)
        .any(|(_, r)| ext(r, kind.key()) == Some(name));
    if owned {
        plan.delete_root(PortGroup::TABLE, pg)?;
    }
    for dir in ["ingress", "egress"] {
        prune_admin_address_sets(plan, kind, &format!("{name}/{dir}"), &BTreeSet::new())?;
    }
    Ok(())
}

/// The policies of `kind` that have rows: `(port group, name)` from the port groups, and the
/// names marked on address sets whose port group is gone.
pub fn admin_policies(
    plan: &Plan<'_>,
    kind: AdminKind,
) -> Result<Vec<(String, String)>, PlanError> {
    let mut out: Vec<(String, String)> = plan
        .monitored(PortGroup::TABLE)?
        .iter()
        .filter_map(|(_, r)| {
            Some((
                text(r, PortGroup::NAME)?.to_string(),
                ext(r, kind.key())?.to_string(),
            ))
        })
        .collect();
    let known: BTreeSet<String> = out.iter().map(|(_, n)| n.clone()).collect();
    let orphans: BTreeSet<String> = plan
        .monitored(AddressSet::TABLE)?
        .iter()
        .filter_map(|(_, r)| ext(r, kind.key()))
        .filter_map(|m| m.rsplit_once('/').map(|(n, _)| n.to_string()))
        .filter(|n| !known.contains(n))
        .collect();
    out.extend(orphans.into_iter().map(|n| (String::new(), n)));
    Ok(out)
}

/// Deletes every port group and address set carrying `external_ids:<key>` (any value): what
/// upstream's GC removes for `anp`, `banp` and `cnp` when `--enable-anp` is off.
pub fn delete_marked(plan: &mut Plan<'_>, mark_key: &str) -> Result<(), PlanError> {
    for table in [PortGroup::TABLE, AddressSet::TABLE] {
        let marked: Vec<Uuid> = plan
            .monitored(table)?
            .iter()
            .filter(|(_, r)| ext(r, mark_key).is_some())
            .map(|(u, _)| *u)
            .collect();
        for u in marked {
            plan.delete_root_uuid(table, u)?;
        }
    }
    Ok(())
}
