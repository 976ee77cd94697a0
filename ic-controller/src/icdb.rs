//! The interconnection databases: the transit switches kube-ovn created in OVN_IC_Northbound,
//! and this AZ's rows in OVN_IC_Southbound, removed on teardown and by `clean-az` (upstream's
//! `RemoveOldChassisInSbDB` and `clean-ic-az-db.sh`).

use ovsdb::model::Model;
use ovsdb::models::ic_nb::TransitSwitch;
use ovsdb::models::ic_sb::{AvailabilityZone, Gateway, PortBinding, Route};
use ovsdb::plan::{Plan, PlanError};
use ovsdb::{CacheData, Uuid};

/// IC NB tables the replica monitors.
pub const NB_TABLES: &[&str] = &[TransitSwitch::TABLE];
/// IC SB tables the replica monitors.
pub const SB_TABLES: &[&str] = &[
    AvailabilityZone::TABLE,
    Gateway::TABLE,
    Route::TABLE,
    PortBinding::TABLE,
];

/// kube-ovn's transit switches (`external_ids:vendor=kube-ovn`), sorted by name, with their
/// `external_ids:subnet`.
pub fn transit_switches(cache: &CacheData) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = cache
        .list::<TransitSwitch>()
        .into_iter()
        .flatten()
        .filter(|t| t.external_ids.get("vendor").map(String::as_str) == Some(crate::nb::VENDOR))
        .map(|t| {
            let subnet = t.external_ids.get("subnet").cloned().unwrap_or_default();
            (t.name, subnet)
        })
        .collect();
    out.sort();
    out
}

/// The availability zone named `az`, if registered.
pub fn az_by_name(cache: &CacheData, az: &str) -> Option<Uuid> {
    cache
        .list::<AvailabilityZone>()
        .into_iter()
        .flatten()
        .find(|a| a.name == az)
        .map(|a| a.uuid)
}

/// The availability zone of the gateway whose hostname is `node`.
pub fn az_of_node(cache: &CacheData, node: &str) -> Option<Uuid> {
    cache
        .list::<Gateway>()
        .into_iter()
        .flatten()
        .find(|g| g.hostname == node)
        .map(|g| g.availability_zone)
}

/// Deletes the zone `az` and its Gateway, Route and Port_Binding rows; returns how many rows go.
pub fn remove_az(plan: &mut Plan<'_>, az: Uuid) -> Result<usize, PlanError> {
    let cache = plan.cache();
    let mut doomed: Vec<(&str, Uuid)> = Vec::new();
    doomed.extend(
        cache
            .list::<PortBinding>()
            .into_iter()
            .flatten()
            .filter(|r| r.availability_zone == az)
            .map(|r| (PortBinding::TABLE, r.uuid)),
    );
    doomed.extend(
        cache
            .list::<Gateway>()
            .into_iter()
            .flatten()
            .filter(|r| r.availability_zone == az)
            .map(|r| (Gateway::TABLE, r.uuid)),
    );
    doomed.extend(
        cache
            .list::<Route>()
            .into_iter()
            .flatten()
            .filter(|r| r.availability_zone == az)
            .map(|r| (Route::TABLE, r.uuid)),
    );
    doomed.push((AvailabilityZone::TABLE, az));
    for (table, u) in &doomed {
        plan.delete_root_uuid(table, *u)?;
    }
    Ok(doomed.len())
}
