//! A pod NIC's rows: its logical switch port and its memberships in the routing port groups
//! (the node's and the subnet-on-node's) that the gateway and node policies match on.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ovsdb::model::Model;
use ovsdb::models::nb::{LogicalSwitch, LogicalSwitchPort, PortGroup};
use ovsdb::{Datum, Row};

use super::rows::{ext, key, ours, owned_map, row, string_map, strings, text, VENDOR};
use super::sg::{ASSOCIATED_PREFIX, DEFAULT_SG, SGS_KEY};
use crate::plan::{Parent, Plan, PlanError, RowRef};

/// A pod NIC's logical switch port.
#[derive(Debug, Clone)]
pub struct PodPort<'a> {
    /// Port name (`<pod>.<ns>`).
    pub name: &'a str,
    /// Logical switch (subnet).
    pub switch: &'a str,
    /// `<ns>/<pod>`.
    pub pod_key: &'a str,
    /// MAC.
    pub mac: &'a str,
    /// Addresses, v4 first.
    pub ips: Vec<IpAddr>,
    /// `ovn.kubernetes.io/port_security == "true"`.
    pub port_security: bool,
    /// Addresses of the Vips the pod may answer for (`ovn.kubernetes.io/aaps`) and its
    /// `port_vips`, in upstream's order: allowed by port security and recorded in
    /// `external_ids:vips` with `attach-vips=true`.
    pub vips: Vec<String>,
    /// The security groups of `ovn.kubernetes.io/security_groups` (spaces removed), marked
    /// on the port as upstream does (`security_groups=a/b`, `associated_sg_<name>=true`).
    pub security_groups: Vec<String>,
    /// The port is outside the default VPC: upstream marks it out of the default security
    /// group (`associated_sg_default-securitygroup=false`) unless it names that group.
    pub custom_vpc: bool,
}

/// States a pod NIC's port (moved from another switch in the same transaction if needed).
pub fn pod_port(plan: &mut Plan<'_>, p: &PodPort<'_>) -> Result<RowRef, PlanError> {
    let addresses = std::iter::once(p.mac.to_string())
        .chain(p.ips.iter().map(|ip| ip.to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    let port_security = if p.port_security {
        let mut allowed = addresses.clone();
        for v in &p.vips {
            allowed.push(' ');
            allowed.push_str(v);
        }
        strings([allowed])
    } else {
        Datum::empty_set()
    };
    let vips = p.vips.join(",");
    let mut ext: BTreeMap<String, String> = [
        (key::LS, p.switch),
        (key::POD, p.pod_key),
        (key::VENDOR, VENDOR),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if !vips.is_empty() {
        ext.insert("vips".into(), vips);
        ext.insert("attach-vips".into(), "true".into());
    }
    let existing = match plan.lookup(LogicalSwitchPort::TABLE, p.name) {
        Some(RowRef::Existing(u)) => plan
            .monitored(LogicalSwitchPort::TABLE)?
            .get(&u)
            .map(|r| string_map(r, LogicalSwitchPort::EXTERNAL_IDS))
            .unwrap_or_default(),
        _ => BTreeMap::new(),
    };
    ext.extend(security_group_marks(p, &existing));
    plan.ensure_named_child(
        Parent {
            table: LogicalSwitch::TABLE,
            name: p.switch,
            column: LogicalSwitch::PORTS,
        },
        LogicalSwitchPort::TABLE,
        p.name,
        row!(LogicalSwitchPort {
            ADDRESSES: strings([addresses]),
            PORT_SECURITY: port_security,
            EXTERNAL_IDS: owned_map(&ext),
        }),
    )
}

/// A port's security-group marks as upstream leaves them: `security_groups=a/b` and
/// `associated_sg_<name>=true` for the groups named now; a group named before and not now
/// keeps its mark as `false`, and a port that had groups keeps `security_groups=""` (upstream
/// sets marks, it never removes them). Outside the default VPC the default group is marked
/// `false` unless named.
fn security_group_marks(
    p: &PodPort<'_>,
    existing: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if !p.security_groups.is_empty() {
        out.insert(SGS_KEY.to_string(), p.security_groups.join("/"));
    } else if existing.contains_key(SGS_KEY) {
        out.insert(SGS_KEY.to_string(), String::new());
    }
    for k in existing.keys() {
        if let Some(sg) = k.strip_prefix(ASSOCIATED_PREFIX) {
            if !p.security_groups.iter().any(|s| s == sg) {
                out.insert(k.clone(), "false".to_string());
            }
        }
    }
    if p.custom_vpc && !p.security_groups.iter().any(|s| s == DEFAULT_SG) {
        out.insert(
            format!("{ASSOCIATED_PREFIX}{DEFAULT_SG}"),
            "false".to_string(),
        );
    }
    for sg in &p.security_groups {
        out.insert(format!("{ASSOCIATED_PREFIX}{sg}"), "true".to_string());
    }
    out
}

/// Removes a logical switch port by name from whichever switch holds it, and from every port
/// group holding it.
///
/// The groups would drop it by themselves (`Port_Group.ports` is a weak reference), but OVS
/// 3.1's ovsdb-server keeps the reference to a port it collects when the same transaction also
/// changes the group — which the transaction batcher makes routine (another pod joining the
/// group) — leaving a member that names no port until the group is rewritten
/// (`controller/nb/tests/plan.rs` shows it against the real server). Removing it explicitly
/// costs one mutation per group and leaves nothing behind on any server version.
pub fn delete_port(plan: &mut Plan<'_>, name: &str) -> Result<(), PlanError> {
    plan.monitored(LogicalSwitchPort::TABLE)?;
    match plan.lookup(LogicalSwitchPort::TABLE, name) {
        Some(RowRef::Existing(u)) => {
            leave_groups(plan, u)?;
            plan.remove_child(LogicalSwitch::TABLE, LogicalSwitch::PORTS, u)
        }
        _ => Ok(()),
    }
}

/// Removes port `u` from every port group holding it (see [`delete_port`]); nothing when port
/// groups are not monitored (a plan without them writes none either).
fn leave_groups(plan: &mut Plan<'_>, u: ovsdb::Uuid) -> Result<(), PlanError> {
    let Ok(groups) = plan.monitored(PortGroup::TABLE) else {
        return Ok(());
    };
    let atom = ovsdb::Atom::Uuid(u);
    let holding: Vec<String> = groups
        .iter()
        .filter(|(_, r)| {
            r.get(PortGroup::PORTS)
                .and_then(Datum::as_set)
                .is_some_and(|s| s.contains(&atom))
        })
        .filter_map(|(_, r)| text(r, PortGroup::NAME).map(str::to_string))
        .collect();
    for pg in holding {
        plan.set_members(
            PortGroup::TABLE,
            &pg,
            PortGroup::PORTS,
            &[],
            std::slice::from_ref(&atom),
        )?;
    }
    Ok(())
}

/// Puts a port (going on the switch `switch`) into exactly `pgs` among the routing port groups
/// (node and per-subnet-node groups), adding and removing memberships as needed. Those groups carry
/// `external_ids:node`, so with the port's `node` known only that node's groups (found through
/// the replica's `node` index: one per subnet) are searched for it, not every group of the
/// cluster; without it every routing group is.
pub fn port_memberships(
    plan: &mut Plan<'_>,
    port: &RowRef,
    pgs: &[String],
    node: Option<&str>,
    switch: &str,
) -> Result<(), PlanError> {
    let atom = port.atom();
    let groups = plan.monitored(PortGroup::TABLE)?;
    if settled(plan, port, pgs, switch) {
        return Ok(());
    }
    // Only groups that hold the port can lose it; a port this plan inserts is in none yet.
    let others: Vec<String> = match port {
        RowRef::Existing(_) => {
            let scope: Box<dyn Iterator<Item = (&ovsdb::Uuid, &Arc<Row>)>> = match node {
                Some(n) => Box::new(groups.by_external_id(key::NODE, n)),
                None => Box::new(groups.iter()),
            };
            // Membership first: a binary search, where the routing test compares strings.
            scope
                .filter(|(_, r)| {
                    r.get(PortGroup::PORTS)
                        .and_then(Datum::as_set)
                        .is_some_and(|s| s.contains(&atom))
                })
                .filter(|(_, r)| is_routing_pg(r))
                .filter_map(|(_, r)| text(r, PortGroup::NAME).map(str::to_string))
                .filter(|n| !pgs.contains(n))
                .collect()
        }
        RowRef::New(_) => Vec::new(),
    };
    for pg in pgs {
        if plan.lookup(PortGroup::TABLE, pg).is_some() {
            plan.set_members(
                PortGroup::TABLE,
                pg,
                PortGroup::PORTS,
                std::slice::from_ref(&atom),
                &[],
            )?;
        }
    }
    for pg in others {
        plan.set_members(
            PortGroup::TABLE,
            &pg,
            PortGroup::PORTS,
            &[],
            std::slice::from_ref(&atom),
        )?;
    }
    Ok(())
}

/// Whether an existing port already is in every group of `pgs` and can be in no other routing
/// group: it was on `switch` already (its cached `external_ids:ls`), so it never joined another
/// subnet's groups, and its node does not change. A restart re-plans every pod, and this spares
/// each of them the search through its node's groups. Never for an empty `pgs` (leaving every
/// group must search).
fn settled(plan: &Plan<'_>, port: &RowRef, pgs: &[String], switch: &str) -> bool {
    let RowRef::Existing(u) = port else {
        return false;
    };
    let cache = plan.cache();
    let (Some(ports), Some(groups)) = (
        cache.table(LogicalSwitchPort::TABLE),
        cache.table(PortGroup::TABLE),
    ) else {
        return false;
    };
    if pgs.is_empty() || ports.get(u).and_then(|r| ext(r, key::LS)) != Some(switch) {
        return false;
    }
    let atom = port.atom();
    pgs.iter().all(|pg| {
        groups.by_name(pg).any(|(_, g)| {
            g.get(PortGroup::PORTS)
                .and_then(Datum::as_set)
                .is_some_and(|s| s.contains(&atom))
        })
    })
}

/// Whether a port group is one of kube-ovn's node or per-subnet-node groups (the ones pod
/// routing manages).
pub fn is_routing_pg(r: &Row) -> bool {
    ours(r) && ext(r, key::NODE).is_some() && ext(r, key::NP).is_some()
}
