//! The OVN Northbound side of kube-ovn-controller: what upstream Kube-OVN writes for each
//! Kubernetes object (names, columns, `external_ids`), as pure functions, and the planner that
//! turns those desired rows into the minimal transaction against the replicated NB cache.

pub mod objects;
pub mod plan;

pub use plan::{Parent, Plan, PlanError, RowRef};
