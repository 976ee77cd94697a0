//! A NetworkPolicy's rows, as upstream writes them: the port group `<np>.<ns>` (dots for
//! dashes) holding the selected pods' ports and the policy's ACLs, the address sets of its
//! peers per rule, family and direction, and the log meters. Membership changes are mutates of
//! the differing members only; ACLs are converged by key, so an unchanged policy writes nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

use ovsdb::model::Model;
use ovsdb::models::nb::{Acl, AddressSet, LogicalSwitchPort, Meter, MeterBand, PortGroup};
use ovsdb::{Atom, Datum, Row};

use super::rows::{ext, key, map, owned_map, row, VENDOR};
use crate::plan::{Parent, Plan, PlanError, RowRef};

/// One ACL of a policy's port group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgAcl {
    /// `to-lport` (ingress) or `from-lport` (egress).
    pub direction: &'static str,
    /// Priority.
    pub priority: i64,
    /// Match expression.
    pub r#match: String,
    /// `allow-related`, `drop`…
    pub action: &'static str,
    /// `name` (already cut to OVN's 63 characters).
    pub name: Option<String>,
    /// `log`.
    pub log: bool,
    /// `severity` (upstream sets it on logged drops only).
    pub severity: Option<&'static str>,
    /// `meter`.
    pub meter: Option<String>,
    /// `options:apply-after-lb=true` (egress: decide on the load-balanced destination).
    pub apply_after_lb: bool,
}

/// An address set of a policy: name, `external_ids:np`, addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpAddressSet {
    /// Name (`<np>.<ns>.<dir>.<allow|except>.<IPv4|IPv6>.<idx|all>`).
    pub name: String,
    /// `<ns>/<np>/<ingress|egress>`.
    pub np: String,
    /// Addresses and CIDRs (shared with the pods' address caches: a thousand policies'
    /// sets hold hundreds of thousands).
    pub addresses: Vec<Arc<str>>,
}

/// OVN's limit on an ACL name: longer names are cut to 60 characters and `...`, as upstream.
pub fn acl_name(name: &str) -> String {
    if name.len() > 63 {
        let mut cut = 60;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &name[..cut])
    } else {
        name.to_string()
    }
}

/// Makes the set column `column` of the named row hold exactly `want`, by mutates of the
/// differing members.
pub(super) fn converge_members(
    plan: &mut Plan<'_>,
    table: &str,
    name: &str,
    column: &str,
    at: &RowRef,
    want: &[Atom],
) -> Result<(), PlanError> {
    let current: Vec<Atom> = match at {
        RowRef::Existing(u) => plan
            .monitored(table)?
            .get(u)
            .and_then(|r| r.get(column))
            .and_then(Datum::as_set)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default(),
        RowRef::New(_) => Vec::new(),
    };
    let want_set: BTreeSet<&Atom> = want.iter().collect();
    let absent: Vec<Atom> = current
        .iter()
        .filter(|a| !want_set.contains(a))
        .cloned()
        .collect();
    plan.set_members(table, name, column, want, &absent)
}

/// States a policy's port group (`external_ids:np=<ns>/<np>`) with exactly the ports named in
/// `ports` that exist.
pub fn np_port_group(
    plan: &mut Plan<'_>,
    pg: &str,
    np: &str,
    ports: &[String],
) -> Result<(), PlanError> {
    let at = plan.ensure_root(
        PortGroup::TABLE,
        pg,
        row!(PortGroup {
            EXTERNAL_IDS: map([(key::NP, np), (key::VENDOR, VENDOR)]),
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

/// States a policy's address set with exactly `addresses`.
pub fn np_address_set(plan: &mut Plan<'_>, set: &NpAddressSet) -> Result<(), PlanError> {
    let at = plan.ensure_root(
        AddressSet::TABLE,
        &set.name,
        row!(AddressSet {
            EXTERNAL_IDS: map([(key::NP, set.np.as_str()), (key::VENDOR, VENDOR)]),
        }),
    )?;
    let want: Vec<Atom> = set.addresses.iter().cloned().map(Atom::from).collect();
    converge_members(
        plan,
        AddressSet::TABLE,
        &set.name,
        AddressSet::ADDRESSES,
        &at,
        &want,
    )
}

/// Adds the existing ports named in `add` to a policy's port group and removes those in
/// `remove` (a pod joined or left it); the group must exist.
pub fn np_port_group_members(
    plan: &mut Plan<'_>,
    pg: &str,
    add: &[String],
    remove: &[String],
) -> Result<(), PlanError> {
    if add.is_empty() && remove.is_empty() {
        return Ok(());
    }
    plan.monitored(LogicalSwitchPort::TABLE)?;
    let uuids = |plan: &Plan<'_>, names: &[String]| -> Vec<Atom> {
        names
            .iter()
            .filter_map(|p| plan.lookup(LogicalSwitchPort::TABLE, p))
            .map(|r| r.atom())
            .collect()
    };
    let (add, remove) = (uuids(plan, add), uuids(plan, remove));
    plan.set_members(PortGroup::TABLE, pg, PortGroup::PORTS, &add, &remove)
}

/// Adds `add` to a policy's address set and removes `remove` (pods joined or left a peer);
/// the set must exist.
pub fn np_address_set_members(
    plan: &mut Plan<'_>,
    name: &str,
    add: &[String],
    remove: &[String],
) -> Result<(), PlanError> {
    let atoms = |v: &[String]| -> Vec<Atom> { v.iter().map(|a| Atom::from(a.as_str())).collect() };
    plan.set_members(
        AddressSet::TABLE,
        name,
        AddressSet::ADDRESSES,
        &atoms(add),
        &atoms(remove),
    )
}

/// Deletes the address sets marked `external_ids:np=<np>` that are not in `keep`.
pub fn prune_np_address_sets(
    plan: &mut Plan<'_>,
    np: &str,
    keep: &BTreeSet<String>,
) -> Result<(), PlanError> {
    let sets = plan.monitored(AddressSet::TABLE)?;
    let stale: Vec<ovsdb::Uuid> = sets
        .by_external_id(key::NP, np)
        .filter(|(_, r)| ext(r, key::VENDOR) == Some(VENDOR))
        .filter(|(_, r)| super::rows::text(r, AddressSet::NAME).is_none_or(|n| !keep.contains(n)))
        .map(|(u, _)| *u)
        .collect();
    for u in stale {
        plan.delete_root_uuid(AddressSet::TABLE, u)?;
    }
    Ok(())
}

/// The ACL rows of `acls` on port group `pg` (`external_ids:parent=<pg>`).
fn acl_rows(pg: &str, acls: &[PgAcl]) -> Vec<Row> {
    acls.iter()
        .map(|a| {
            let ids = [
                (key::PARENT.to_string(), pg.to_string()),
                (key::VENDOR.to_string(), VENDOR.to_string()),
            ]
            .into();
            row!(Acl {
                DIRECTION: Datum::from(a.direction),
                PRIORITY: Datum::from(a.priority),
                MATCH: Datum::from(a.r#match.as_str()),
                ACTION: Datum::from(a.action),
                LOG: Datum::from(a.log),
                EXTERNAL_IDS: owned_map(&ids),
                NAME: a
                    .name
                    .as_deref()
                    .map(Datum::from)
                    .unwrap_or_else(Datum::empty_set),
                SEVERITY: a.severity.map(Datum::from).unwrap_or_else(Datum::empty_set),
                METER: a
                    .meter
                    .as_deref()
                    .map(Datum::from)
                    .unwrap_or_else(Datum::empty_set),
                OPTIONS: if a.apply_after_lb {
                    map([("apply-after-lb", "true")])
                } else {
                    Datum::empty_map()
                },
            })
        })
        .collect()
}

/// Converges the ACLs kube-ovn owns on port group `pg` in `direction` (`None`: both) on
/// exactly `acls`.
pub fn pg_acls(
    plan: &mut Plan<'_>,
    pg: &str,
    direction: Option<&str>,
    acls: &[PgAcl],
) -> Result<(), PlanError> {
    let owner = pg.to_string();
    let dir = direction.map(str::to_string);
    plan.sync_keyed_children(
        Parent {
            table: PortGroup::TABLE,
            name: pg,
            column: PortGroup::ACLS,
        },
        Acl::TABLE,
        &[Acl::DIRECTION, Acl::PRIORITY, Acl::MATCH, Acl::ACTION],
        acl_rows(pg, acls),
        None,
        move |r| {
            ext(r, key::VENDOR) == Some(VENDOR)
                && ext(r, key::PARENT) == Some(owner.as_str())
                && dir
                    .as_deref()
                    .is_none_or(|d| super::rows::text(r, Acl::DIRECTION) == Some(d))
        },
    )
}

/// States the log meter `name` (packets per second, one drop band of `rate` with burst 1), or
/// removes it when `rate` is `None`.
pub fn acl_meter(plan: &mut Plan<'_>, name: &str, rate: Option<i64>) -> Result<(), PlanError> {
    let Some(rate) = rate else {
        return plan.delete_root(Meter::TABLE, name);
    };
    let band = row!(MeterBand {
        ACTION: Datum::from("drop"),
        RATE: Datum::from(rate),
        BURST_SIZE: Datum::from(1i64),
        EXTERNAL_IDS: map([(key::VENDOR, VENDOR)]),
    });
    if plan.lookup(Meter::TABLE, name).is_none() {
        // A meter cannot exist without a band: both go in at once.
        let b = plan.insert_referenced(MeterBand::TABLE, band)?;
        plan.ensure_root(
            Meter::TABLE,
            name,
            row!(Meter {
                UNIT: Datum::from("pktps"),
                BANDS: Datum::set([b.atom()]),
                EXTERNAL_IDS: map([(key::VENDOR, VENDOR)]),
            }),
        )?;
        return Ok(());
    }
    plan.ensure_root(
        Meter::TABLE,
        name,
        row!(Meter {
            UNIT: Datum::from("pktps"),
            EXTERNAL_IDS: map([(key::VENDOR, VENDOR)]),
        }),
    )?;
    plan.sync_keyed_children(
        Parent {
            table: Meter::TABLE,
            name,
            column: Meter::BANDS,
        },
        MeterBand::TABLE,
        &[MeterBand::ACTION],
        vec![band],
        None,
        |_| true,
    )
}

/// Removes a policy's port group (its ACLs go with it), meters and address sets.
pub fn delete_np(plan: &mut Plan<'_>, pg: &str, np: &str) -> Result<(), PlanError> {
    plan.delete_root(PortGroup::TABLE, pg)?;
    for dir in ["to-lport", "from-lport"] {
        plan.delete_root(Meter::TABLE, &format!("{pg}_{dir}_meter"))?;
    }
    for dir in ["ingress", "egress"] {
        prune_np_address_sets(plan, &format!("{np}/{dir}"), &BTreeSet::new())?;
    }
    Ok(())
}

/// The names of the policy port groups kube-ovn made (`external_ids:np` of `<ns>/<np>` form,
/// not a routing group's `<subnet>/<node>`… which carry `node`).
pub fn np_port_groups(plan: &Plan<'_>) -> Result<Vec<(String, String)>, PlanError> {
    let pgs = plan.monitored(PortGroup::TABLE)?;
    Ok(pgs
        .iter()
        .filter(|(_, r)| ext(r, key::VENDOR) == Some(VENDOR))
        .filter(|(_, r)| ext(r, key::NODE).is_none() && ext(r, "sg").is_none())
        .filter_map(|(_, r)| {
            let np = ext(r, key::NP)?;
            (np.matches('/').count() == 1)
                .then(|| {
                    Some((
                        super::rows::text(r, PortGroup::NAME)?.to_string(),
                        np.to_string(),
                    ))
                })
                .flatten()
        })
        .collect())
}
