//! Reading kube-ovn's logical switch ports back from the NB cache: IPAM restore, garbage
//! collection and pod cleanup all need "whose port is this, on which switch, with which
//! addresses", decoded here once.

use ovsdb::model::Model;
use ovsdb::models::nb::LogicalSwitchPort;
use ovsdb::{CacheData, Datum, Uuid};

use crate::objects::names::node_of_lsp;
use crate::objects::rows::{ext, key, ours, tagged, text};
use crate::plan::PlanError;

/// What a kube-ovn port belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortOwner<'c> {
    /// A pod NIC: `external_ids:pod`, `<namespace>/<pod>`.
    Pod(&'c str),
    /// A node's join port (`node-<node>`, no `external_ids:pod`).
    Node(&'c str),
}

/// A logical switch port kube-ovn created for a pod or a node, borrowed from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnedPort<'c> {
    /// The row's UUID.
    pub uuid: Uuid,
    /// Port name.
    pub name: &'c str,
    /// Its pod or node.
    pub owner: PortOwner<'c>,
    /// `external_ids:ls`, the switch (subnet) it was written for.
    pub switch: Option<&'c str>,
    /// The first `addresses` entry (kube-ovn writes one: `<mac> <ip>…`).
    pub addresses: Option<&'c str>,
}

/// Every port kube-ovn owns (`external_ids:vendor=kube-ovn`) that belongs to a pod or a node;
/// other ports (router patch ports, foreign ones) are skipped. An error when the table is not
/// monitored, where "no ports" would be a lie.
pub fn owned_ports(cache: &CacheData) -> Result<impl Iterator<Item = OwnedPort<'_>>, PlanError> {
    let table = cache
        .table(LogicalSwitchPort::TABLE)
        .ok_or_else(|| PlanError::Unmonitored {
            table: LogicalSwitchPort::TABLE.to_string(),
        })?;
    Ok(table.iter().filter_map(|(uuid, r)| {
        if !ours(r) {
            return None;
        }
        let name = text(r, LogicalSwitchPort::NAME)?;
        let owner = match ext(r, key::POD) {
            Some(pod) => PortOwner::Pod(pod),
            None => PortOwner::Node(node_of_lsp(name)?),
        };
        let addresses = r
            .get(LogicalSwitchPort::ADDRESSES)
            .and_then(Datum::as_set)
            .and_then(|s| s.iter().next())
            .and_then(|a| a.as_str());
        Some(OwnedPort {
            uuid: *uuid,
            name,
            owner,
            switch: ext(r, key::LS),
            addresses,
        })
    }))
}

/// The names of the ports tagged `external_ids:pod=<pod>` (`<namespace>/<pod>`), through the
/// replica's `pod` index when it has one.
pub fn pod_port_names(cache: &CacheData, pod: &str) -> Result<Vec<String>, PlanError> {
    if cache.table(LogicalSwitchPort::TABLE).is_none() {
        return Err(PlanError::Unmonitored {
            table: LogicalSwitchPort::TABLE.to_string(),
        });
    }
    Ok(tagged(cache, LogicalSwitchPort::TABLE, key::POD, pod)
        .into_iter()
        .filter_map(|(_, r)| text(r, LogicalSwitchPort::NAME).map(str::to_string))
        .collect())
}
