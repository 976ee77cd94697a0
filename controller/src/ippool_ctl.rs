//! IPPool reconciler: carves the pool's addresses out of its subnet in IPAM (pods of the pool's
//! namespaces, or with the `ovn.kubernetes.io/ip_pool` annotation naming it, allocate there) and
//! reports the pool's usage and a Ready condition; a pool that overlaps another or leaves its
//! subnet gets `Ready=False` and an Event.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use kube_ovn_ipam::{Family, Usage};
use serde_json::json;

use crate::context::{Ctx, Error};
use kube_ovn_common::crd::condition::READY;
use kube_ovn_common::crd::IpPool;
use kube_ovn_runtime::conditions::{self, Status};
use kube_ovn_runtime::events::EventType;
use kube_ovn_runtime::Outcome;

/// The pool a pod in `namespace` allocating from `subnet` uses when it names none: one whose
/// `spec.namespaces` lists the namespace (first by name).
pub fn pool_for_namespace(pools: &[Arc<IpPool>], subnet: &str, namespace: &str) -> Option<String> {
    let mut names: Vec<String> = pools
        .iter()
        .filter(|p| p.spec.subnet == subnet && p.spec.namespaces.iter().any(|n| n == namespace))
        .map(|p| p.name_any())
        .collect();
    names.sort();
    names.into_iter().next()
}

/// The IPPool queue's kind name.
pub const KIND: &str = "ippool";

/// What of an IPPool its reconciler acts on: spec and metadata, not its own status.
pub fn signature(p: &IpPool) -> u64 {
    kube_ovn_runtime::trigger::hash_of(&(
        kube_ovn_runtime::trigger::hash_json(&p.spec),
        kube_ovn_runtime::trigger::meta_signature(p),
    ))
}

/// Reconciles the IPPool `name`.
pub async fn reconcile(ctx: Arc<Ctx>, name: String) -> Result<Outcome, Error> {
    let Some(pool) = ctx.stores.ippools.get(&ObjectRef::new(&name)) else {
        ctx.ipam().remove_pool_everywhere(&name);
        return Ok(Outcome::Done);
    };
    let subnet = pool.spec.subnet.clone();
    let set = {
        let mut ipam = ctx.ipam();
        if ipam.subnet(&subnet).is_none() {
            None
        } else {
            Some(ipam.set_pool(&subnet, &name, &pool.spec.ips))
        }
    };
    let api: Api<IpPool> = Api::all(ctx.client.clone());
    let (ready, reason, message) = match set {
        None => return Ok(Outcome::After(Duration::from_secs(2))),
        Some(Err(e)) => {
            ctx.event(
                &pool.object_ref(&()),
                EventType::Warning,
                "InvalidIPPool",
                &e.to_string(),
            )
            .await;
            (false, "InvalidIPPool", e.to_string())
        }
        Some(Ok(())) => (true, "ReconcileSuccess", String::new()),
    };
    let (v4, v6) = {
        let ipam = ctx.ipam();
        let s = ipam.subnet(&subnet);
        let u = |f| s.and_then(|s| s.pool_usage(&name, f)).unwrap_or_default();
        (u(Family::V4), u(Family::V6))
    };
    let count = |n: u128| {
        u64::try_from(n)
            .map(|v| json!(v))
            .unwrap_or_else(|_| json!(n as f64))
    };
    let fields = |u: &Usage, fam: &str| {
        [
            (format!("{fam}availableIPs"), count(u.available)),
            (format!("{fam}usingIPs"), count(u.using)),
            (format!("{fam}availableIPrange"), json!(u.available_range)),
            (format!("{fam}usingIPrange"), json!(u.using_range)),
        ]
    };
    let mut status = serde_json::Map::new();
    for (k, v) in fields(&v4, "v4").into_iter().chain(fields(&v6, "v6")) {
        status.insert(k, v);
    }
    let current = serde_json::to_value(&pool.status).unwrap_or_default();
    let counters_ok = status.iter().all(|(k, v)| current.get(k) == Some(v));
    let old_conds = pool
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut conds = old_conds.clone();
    conditions::set(
        &mut conds,
        READY,
        Status::of(ready),
        reason,
        &message,
        pool.metadata.generation.unwrap_or_default(),
        jiff::Timestamp::now(),
    );
    if !counters_ok || conds != old_conds {
        status.insert(
            "conditions".into(),
            serde_json::to_value(&conds).map_err(|e| Error::Other(e.to_string()))?,
        );
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;
    }
    Ok(Outcome::Done)
}
