//! The condition record shared by every kubeovn.io status that has one.
//!
//! Upstream keeps its own `Condition` (with `lastUpdateTime`) rather than
//! `metav1.Condition`, so kube-ovn-controller, kubectl-ko and anything that
//! reads `status.conditions` expect exactly this shape.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition type the controller sets once an object is fully realised in OVN.
pub const READY: &str = "Ready";
/// Condition type recording that the spec passed validation.
pub const VALIDATED: &str = "Validated";
/// Condition type used while an object is still being set up.
pub const INIT: &str = "Init";
/// Condition type carrying the last reconcile error.
pub const ERROR: &str = "Error";
/// Reason written by upstream when it first seeds a condition.
pub const REASON_INIT: &str = "Init";

/// One observation about an object; consumers match on `type` and read `status`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Condition {
    /// Which aspect this condition reports on (`Ready`, `Validated`, `Error`, …).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`, as for core Kubernetes conditions.
    pub status: String,
    /// Machine-readable cause of the last transition, for filtering and alerts.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Human-readable detail; kubectl-ko prints it when something is stuck.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The generation this condition was computed from, so stale conditions can be told apart.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub observed_generation: i64,
    /// When the condition was last written, even without a change of status.
    pub last_update_time: Option<Time>,
    /// When `status` last changed value.
    pub last_transition_time: Option<Time>,
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

/// Lookups over a status's condition list, mirroring how upstream reads them.
pub trait Conditions {
    /// The condition list being inspected.
    fn conditions(&self) -> &[Condition];

    /// The condition of the given type, if the controller has written one.
    fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions().iter().find(|c| c.type_ == type_)
    }

    /// Whether the condition is `True`, which is what upstream checks before acting on readiness.
    fn is_condition_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }
}

impl Conditions for [Condition] {
    fn conditions(&self) -> &[Condition] {
        self
    }
}

impl Conditions for Vec<Condition> {
    fn conditions(&self) -> &[Condition] {
        self
    }
}
