//! Status conditions, one helper for every kind: set a condition as upstream does (a changed
//! status moves `lastTransitionTime`; any change moves `lastUpdateTime`), and write the status
//! only when a condition actually changed, so a converged object costs no API write and its
//! watchers see no event.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::Resource;
use kube_ovn_common::crd::condition::{Condition, ERROR, READY, REASON_INIT, VALIDATED};
use serde::de::DeserializeOwned;
use serde_json::json;

/// A condition's status value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `True`.
    True,
    /// `False`.
    False,
    /// `Unknown`.
    Unknown,
}

impl Status {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }

    /// `True` when `ok`, else `False`.
    pub fn of(ok: bool) -> Status {
        if ok {
            Status::True
        } else {
            Status::False
        }
    }
}

/// Sets condition `type_` in `conds`; returns whether anything changed. An identical
/// condition (status, reason, message, generation) is left as it is, times included.
pub fn set(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: Status,
    reason: &str,
    message: &str,
    generation: i64,
    now: jiff::Timestamp,
) -> bool {
    let status = status.as_str();
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status == status
                && c.reason == reason
                && c.message == message
                && c.observed_generation == generation
            {
                return false;
            }
            if c.status != status {
                c.last_transition_time = Some(Time(now));
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = generation;
            c.last_update_time = Some(Time(now));
        }
        None => conds.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: generation,
            last_update_time: Some(Time(now)),
            last_transition_time: Some(Time(now)),
        }),
    }
    true
}

/// The outcome of a reconcile as upstream records it on kubeovn.io objects: `Ready` and
/// `Validated` true (or false with the reason), and `Error` true with the reason on failure or
/// `Unknown`/`Init`/"Not Observed" on success. Returns whether anything changed.
pub fn set_outcome(
    conds: &mut Vec<Condition>,
    ok: bool,
    reason: &str,
    message: &str,
    generation: i64,
    now: jiff::Timestamp,
) -> bool {
    let st = Status::of(ok);
    let mut changed = set(conds, READY, st, reason, message, generation, now);
    changed |= set(conds, VALIDATED, st, reason, message, generation, now);
    changed |= if ok {
        set(
            conds,
            ERROR,
            Status::Unknown,
            REASON_INIT,
            "Not Observed",
            generation,
            now,
        )
    } else {
        set(conds, ERROR, Status::True, reason, message, generation, now)
    };
    changed
}

/// Writes `conds` as the object's `status.conditions` (merge patch on the status subresource)
/// when they differ from `current`; returns whether it wrote.
pub async fn write<K>(
    api: &Api<K>,
    name: &str,
    current: &[Condition],
    conds: &[Condition],
) -> Result<bool, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    if current == conds {
        return Ok(false);
    }
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": conds}})),
    )
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn a_new_condition_gets_both_times() {
        let mut c = Vec::new();
        assert!(set(&mut c, READY, Status::True, "Ok", "", 1, t(0)));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status, "True");
        assert_eq!(c[0].observed_generation, 1);
        assert_eq!(c[0].last_update_time, Some(Time(t(0))));
        assert_eq!(c[0].last_transition_time, Some(Time(t(0))));
    }

    #[test]
    fn the_same_condition_again_changes_nothing() {
        let mut c = Vec::new();
        set(&mut c, READY, Status::True, "Ok", "", 1, t(0));
        let before = c.clone();
        assert!(!set(&mut c, READY, Status::True, "Ok", "", 1, t(10)));
        assert_eq!(c, before);
    }

    #[test]
    fn a_new_message_moves_the_update_time_only() {
        let mut c = Vec::new();
        set(&mut c, READY, Status::False, "Bad", "one", 1, t(0));
        assert!(set(&mut c, READY, Status::False, "Bad", "two", 1, t(5)));
        assert_eq!(c[0].message, "two");
        assert_eq!(c[0].last_update_time, Some(Time(t(5))));
        assert_eq!(c[0].last_transition_time, Some(Time(t(0))));
    }

    #[test]
    fn a_new_status_moves_both_times() {
        let mut c = Vec::new();
        set(&mut c, READY, Status::False, "Bad", "x", 1, t(0));
        assert!(set(&mut c, READY, Status::True, "Ok", "", 2, t(7)));
        assert_eq!(c[0].last_transition_time, Some(Time(t(7))));
        assert_eq!(c[0].last_update_time, Some(Time(t(7))));
        assert_eq!(c[0].observed_generation, 2);
    }

    #[test]
    fn outcome_sets_ready_validated_and_error_as_upstream() {
        let mut c = Vec::new();
        assert!(set_outcome(&mut c, false, "Invalid", "bad cidr", 3, t(0)));
        let get = |c: &[Condition], ty: &str| c.iter().find(|x| x.type_ == ty).cloned().unwrap();
        assert_eq!(get(&c, READY).status, "False");
        assert_eq!(get(&c, VALIDATED).reason, "Invalid");
        assert_eq!(get(&c, ERROR).status, "True");
        assert_eq!(get(&c, ERROR).message, "bad cidr");
        assert!(set_outcome(&mut c, true, "ReconcileSuccess", "", 3, t(9)));
        assert_eq!(get(&c, READY).status, "True");
        assert_eq!(get(&c, ERROR).status, "Unknown");
        assert_eq!(get(&c, ERROR).reason, REASON_INIT);
        assert_eq!(get(&c, ERROR).message, "Not Observed");
        assert!(!set_outcome(&mut c, true, "ReconcileSuccess", "", 3, t(20)));
    }
}
