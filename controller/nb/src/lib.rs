//! The OVN Northbound side of kube-ovn-controller: what upstream Kube-OVN writes for each
//! Kubernetes object (names, columns, `external_ids`), as pure functions, the planner that
//! turns those desired rows into the minimal transaction against the replicated NB cache, and
//! the typed reads of kube-ovn's rows back from that cache.

pub mod objects;
pub mod ports;

use ovsdb::model::Model;
use ovsdb::models::nb;

/// The cache-diffing planner, shared through the `ovsdb` crate with the other writers.
pub use ovsdb::plan;
pub use plan::{Parent, Plan, PlanError, RowRef};

/// The NB tables the controller's replica must monitor: every table the object functions
/// write or read. A plan refuses to touch any other ([`PlanError::Unmonitored`]).
pub const MONITORED_TABLES: &[&str] = &[
    nb::NbGlobal::TABLE,
    nb::LogicalSwitch::TABLE,
    nb::LogicalSwitchPort::TABLE,
    nb::LogicalRouter::TABLE,
    nb::LogicalRouterPort::TABLE,
    nb::LogicalRouterPolicy::TABLE,
    nb::LogicalRouterStaticRoute::TABLE,
    nb::LoadBalancer::TABLE,
    nb::LoadBalancerHealthCheck::TABLE,
    nb::PortGroup::TABLE,
    nb::AddressSet::TABLE,
    nb::Acl::TABLE,
    nb::Meter::TABLE,
    nb::MeterBand::TABLE,
    nb::Nat::TABLE,
    nb::GatewayChassis::TABLE,
];

/// The `external_ids` keys the replica must index: plans scoped to one subnet, node or pod
/// find that object's rows through them instead of scanning whole tables.
pub const INDEXED_EXTERNAL_IDS: &[&str] = &[
    objects::key::POD,
    objects::key::SUBNET,
    objects::key::NODE,
    objects::key::NP,
    objects::SG_KEY,
    objects::key::ANP,
    objects::key::BANP,
    objects::key::CNP,
];
