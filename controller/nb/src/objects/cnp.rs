//! A ClusterNetworkPolicy's rows, as upstream writes them: the port group `<name>` (dots for
//! dashes, `external_ids:cnp=<port group name>` — the group's own name, unlike the v1alpha1
//! kinds) holding the subject pods' ports and the policy's ACLs, and one address set per rule,
//! direction and family (`external_ids:cnp=<name>/<ingress|egress>`). Membership changes are
//! mutates of the differing members only; the ACLs go through [`super::pg_acls`].

use std::collections::BTreeSet;

use ovsdb::model::Model;
use ovsdb::models::nb::{AddressSet, LogicalSwitchPort, PortGroup};
use ovsdb::{Atom, Uuid};

use super::anp::AdminAddressSet;
use super::netpol::converge_members;
use super::rows::{ext, key, map, row, text, VENDOR};
use crate::plan::{Plan, PlanError};

/// States a policy's port group (`external_ids:cnp=<pg>`, `vendor`) with exactly the ports
/// named in `ports` that exist.
pub fn cnp_port_group(plan: &mut Plan<'_>, pg: &str, ports: &[String]) -> Result<(), PlanError> {
    let at = plan.ensure_root(
        PortGroup::TABLE,
        pg,
        row!(PortGroup {
            EXTERNAL_IDS: map([(key::CNP, pg), (key::VENDOR, VENDOR)]),
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
/// `external_ids` (upstream only sets them at creation).
pub fn cnp_address_set(plan: &mut Plan<'_>, set: &AdminAddressSet) -> Result<(), PlanError> {
    let at = match plan.lookup(AddressSet::TABLE, &set.name) {
        Some(r) => r,
        None => plan.ensure_root(
            AddressSet::TABLE,
            &set.name,
            row!(AddressSet {
                EXTERNAL_IDS: map([(key::CNP, set.mark.as_str()), (key::VENDOR, VENDOR)]),
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

/// Deletes the address sets marked `external_ids:cnp=<mark>` that are not in `keep`.
pub fn prune_cnp_address_sets(
    plan: &mut Plan<'_>,
    mark: &str,
    keep: &BTreeSet<String>,
) -> Result<(), PlanError> {
    let stale: Vec<Uuid> = plan
        .monitored(AddressSet::TABLE)?
        .by_external_id(key::CNP, mark)
        .filter(|(_, r)| text(r, AddressSet::NAME).is_none_or(|n| !keep.contains(n)))
        .map(|(u, _)| *u)
        .collect();
    for u in stale {
        plan.delete_root_uuid(AddressSet::TABLE, u)?;
    }
    Ok(())
}

/// Removes a policy's port group (its ACLs go with it) if it is marked as a
/// ClusterNetworkPolicy's, and the address sets of policy `name`.
pub fn delete_cnp(plan: &mut Plan<'_>, pg: &str, name: &str) -> Result<(), PlanError> {
    let owned = plan
        .monitored(PortGroup::TABLE)?
        .by_name(pg)
        .any(|(_, r)| ext(r, key::CNP).is_some());
    if owned {
        plan.delete_root(PortGroup::TABLE, pg)?;
    }
    for dir in ["ingress", "egress"] {
        prune_cnp_address_sets(plan, &format!("{name}/{dir}"), &BTreeSet::new())?;
    }
    Ok(())
}

/// What ClusterNetworkPolicy rows exist: the port groups marked `cnp`, and the policy names
/// the marked address sets carry.
pub fn cnp_rows(plan: &Plan<'_>) -> Result<(BTreeSet<String>, BTreeSet<String>), PlanError> {
    let pgs = plan
        .monitored(PortGroup::TABLE)?
        .iter()
        .filter(|(_, r)| ext(r, key::CNP).is_some())
        .filter_map(|(_, r)| text(r, PortGroup::NAME).map(str::to_string))
        .collect();
    let names = plan
        .monitored(AddressSet::TABLE)?
        .iter()
        .filter_map(|(_, r)| ext(r, key::CNP))
        .filter_map(|m| m.rsplit_once('/').map(|(n, _)| n.to_string()))
        .collect();
    Ok((pgs, names))
}
