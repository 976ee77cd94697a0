//! ClusterNetworkPolicy reconciler (`--enable-anp`, off by default, which is also what enables
//! upstream's): keeps each policy's port group, address sets and ACLs (see [`crate::cnp`], which
//! also explains the tiers on OVN 23.03) in step with the policy, the pods it selects or names
//! as peers, the namespaces and the nodes its peers select. A reconcile is one batched
//! transaction of what differs: a pod joining a policy is a port-group or address-set mutate,
//! never a rewrite of the ACLs. A deleted policy's rows go with it (and GC removes those of
//! policies deleted while the controller was down).
//!
//! Upstream writes no status on these objects; problems are Warning Events. Two policies of
//! one tier with one priority: the older holds it, the other has no rows (`PriorityConflict`)
//! until it is the holder. A policy whose port group name an AdminNetworkPolicy or the
//! BaselineAdminNetworkPolicy already uses (upstream names all three kinds' groups alike and
//! they would overwrite each other's ACLs) waits with `PortGroupTaken`.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use kube_ovn_common::crd::ClusterNetworkPolicy;
use kube_ovn_nb::objects;
use kube_ovn_nb::{Plan, PlanError};
use kube_ovn_runtime::events::EventType;
use kube_ovn_runtime::trigger::{hash_json, hash_of};
use kube_ovn_runtime::Outcome;

use crate::anp;
use crate::anp_ctl::Snapshot;
use crate::cnp::{self, Desired};
use crate::context::{Ctx, Error};
use crate::np_ctl::Members;
use crate::pod_info::PodInfo;

/// The queue's kind name.
pub const KIND: &str = "cluster-network-policy";

/// What of a policy its reconcile reads: spec, the log annotation, deletion (the creation
/// time only ranks priority holders, and never changes).
pub fn signature(c: &ClusterNetworkPolicy) -> u64 {
    hash_of(&(
        hash_json(&c.spec),
        c.annotations().get(anp::LOG_ACL_ACTIONS),
        c.metadata.deletion_timestamp.is_some(),
    ))
}

/// What of a policy the others read: the priority it holds in its tier and, for the Baseline
/// band, how many rule indexes it takes.
pub fn rank_signature(c: &ClusterNetworkPolicy) -> u64 {
    hash_of(&(
        &c.spec.tier,
        c.spec.priority,
        c.spec.ingress.len(),
        c.spec.egress.len(),
        c.metadata.deletion_timestamp.is_some(),
    ))
}

/// What of an AdminNetworkPolicy or BaselineAdminNetworkPolicy a policy reads: that it exists
/// (its port group name is its name).
pub fn admin_signature<K: Resource>(o: &K) -> u64 {
    hash_of(&o.meta().deletion_timestamp.is_some())
}

/// The policies whose port group `name`, an admin policy's, would take.
pub fn sharing_port_group(cnps: &[Arc<ClusterNetworkPolicy>], name: &str) -> Vec<String> {
    let pg = anp::pg_name(name);
    cnps.iter()
        .map(|c| c.name_any())
        .filter(|n| cnp::pg_name(n) == pg)
        .collect()
}

/// Every policy but `c`: a priority freed or taken, or a Baseline rank moved, concerns them.
pub fn others(cnps: &[Arc<ClusterNetworkPolicy>], c: &ClusterNetworkPolicy) -> Vec<String> {
    cnps.iter()
        .map(|o| o.name_any())
        .filter(|n| *n != c.name_any())
        .collect()
}

/// The policies a pod concerns now or held it at their last reconcile.
pub fn cnps_of_pod(
    cnps: &[Arc<ClusterNetworkPolicy>],
    namespaces: &Store<Namespace>,
    members: &Members,
    p: &PodInfo,
) -> Vec<String> {
    let ns = p
        .metadata
        .namespace
        .as_deref()
        .and_then(|n| namespaces.get(&ObjectRef::new(n)));
    let mut keys: Vec<String> = cnps
        .iter()
        .filter(|c| cnp::concerns(c, p, ns.as_deref()))
        .map(|c| c.name_any())
        .collect();
    for k in members.of_pod(p.key()) {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys
}

/// The policies whose egress peers select nodes.
pub fn cnps_selecting_nodes(cnps: &[Arc<ClusterNetworkPolicy>]) -> Vec<String> {
    cnps.iter()
        .filter(|c| cnp::selects_nodes(c))
        .map(|c| c.name_any())
        .collect()
}

/// Every policy's key: a namespace's labels can change any subject or peer.
pub fn all_keys(cnps: &[Arc<ClusterNetworkPolicy>]) -> Vec<String> {
    cnps.iter().map(|c| c.name_any()).collect()
}

/// Writes a policy's desired rows: port group and members, address sets (stale ones of the
/// policy pruned), ACLs per direction.
fn write(plan: &mut Plan<'_>, want: &Desired) -> Result<(), PlanError> {
    objects::cnp_port_group(plan, &want.pg, &want.ports)?;
    for set in &want.address_sets {
        objects::cnp_address_set(plan, set)?;
    }
    for dir in ["ingress", "egress"] {
        let mark = format!("{}/{dir}", want.name);
        let keep: BTreeSet<String> = want
            .address_sets
            .iter()
            .filter(|s| s.mark == mark)
            .map(|s| s.name.clone())
            .collect();
        objects::prune_cnp_address_sets(plan, &mark, &keep)?;
    }
    objects::pg_acls(plan, &want.pg, Some("to-lport"), &want.ingress_acls)?;
    objects::pg_acls(plan, &want.pg, Some("from-lport"), &want.egress_acls)
}

async fn remove(ctx: &Ctx, key: &str) -> Result<(), Error> {
    let (pg, name) = (cnp::pg_name(key), cnp::policy_name(key));
    ctx.apply(&format!("delete cnp {key}"), |plan| {
        objects::delete_cnp(plan, &pg, &name)
    })
    .await?;
    ctx.cnp_members.record(key, BTreeSet::new());
    Ok(())
}

async fn warn(ctx: &Ctx, c: &ClusterNetworkPolicy, reason: &str, msg: &str) {
    ctx.event(&c.object_ref(&()), EventType::Warning, reason, msg)
        .await;
}

/// Reconciles the ClusterNetworkPolicy `name`: its rows, then (with
/// `--enable-dns-name-resolver`) the resolvers of its domains.
pub async fn reconcile(ctx: Arc<Ctx>, key: String) -> Result<Outcome, Error> {
    if !ctx.config.enable_anp {
        return Ok(Outcome::Done);
    }
    let out = reconcile_rows(&ctx, &key).await?;
    if ctx.config.enable_dns_name_resolver {
        let obj = ctx
            .stores
            .cluster_network_policies
            .get(&ObjectRef::new(&key))
            .map(|c| c.object_ref(&()));
        crate::dnr_ctl::sync_for(&ctx, &cnp::policy_name(&key), obj).await?;
    }
    Ok(out)
}

async fn reconcile_rows(ctx: &Arc<Ctx>, key: &str) -> Result<Outcome, Error> {
    let (ctx, key) = (ctx.clone(), key.to_string());
    let all = ctx.stores.cluster_network_policies.state();
    let Some(c) = all
        .iter()
        .find(|c| c.name_any() == key && c.metadata.deletion_timestamp.is_none())
        .cloned()
    else {
        remove(&ctx, &key).await?;
        return Ok(Outcome::Done);
    };
    if let Err(e) = cnp::validate(&c) {
        // Only a spec change can fix it, and that queues the policy again; the rows of its
        // last valid spec stay, as upstream leaves them.
        warn(&ctx, &c, "InvalidPolicy", &e).await;
        return Ok(Outcome::Done);
    }
    if let Some(holder) = cnp::priority_holder(&c, &all) {
        let msg = format!(
            "can not create cnp {key} with priority {}, cnp {holder} already exists with the same priority",
            c.spec.priority
        );
        warn(&ctx, &c, "PriorityConflict", &msg).await;
        remove(&ctx, &key).await?;
        return Ok(Outcome::Done);
    }
    let pg = cnp::pg_name(&key);
    let taken = ctx
        .stores
        .admin_network_policies
        .state()
        .iter()
        .map(|a| a.name_any())
        .chain(
            ctx.stores
                .baseline_admin_network_policies
                .state()
                .iter()
                .map(|b| b.name_any()),
        )
        .find(|n| anp::pg_name(n) == pg);
    if let Some(owner) = taken {
        let msg = format!("port group {pg} belongs to admin network policy {owner}");
        warn(&ctx, &c, "PortGroupTaken", &msg).await;
        return Ok(Outcome::Done);
    }
    let snapshot = Snapshot::of(&ctx);
    let cx = snapshot.cx();
    let want = match cnp::top_priority(&c, &all).and_then(|top| cnp::desired(&c, top, &cx)) {
        Ok(w) => w,
        Err(e) => {
            warn(&ctx, &c, "InvalidPolicy", &e).await;
            return Ok(Outcome::Done);
        }
    };
    let r = ctx
        .apply(&format!("cnp {key}"), |plan| write(plan, &want))
        .await;
    ctx.cnp_members.record(&key, want.concerned.clone());
    if let Err(e) = r {
        warn(&ctx, &c, "CreateACLFailed", &e.to_string()).await;
        return Err(e);
    }
    Ok(Outcome::Done)
}

/// Removes the rows of policies that no longer exist (deleted while the controller was down).
/// With `--enable-anp` off, [`crate::anp_ctl::gc`] removes every `cnp` row, as upstream's GC.
pub async fn gc(ctx: &Ctx) -> Result<usize, Error> {
    if !ctx.config.enable_anp {
        return Ok(0);
    }
    let live = ctx.stores.cluster_network_policies.state();
    let live_pgs: BTreeSet<String> = live.iter().map(|c| cnp::pg_name(&c.name_any())).collect();
    let live_names: BTreeSet<String> = live
        .iter()
        .map(|c| cnp::policy_name(&c.name_any()))
        .collect();
    ctx.apply("gc cluster network policies", |plan| {
        let (pgs, names) = objects::cnp_rows(plan)?;
        // A stale group goes with its ACLs; stale address sets by the name they carry (a
        // group is named by nothing but its own name, so "" leaves groups alone).
        for pg in pgs.difference(&live_pgs) {
            objects::delete_cnp(plan, pg, pg)?;
        }
        for name in names.difference(&live_names) {
            objects::delete_cnp(plan, "", name)?;
        }
        Ok(())
    })
    .await
}
