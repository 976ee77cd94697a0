//! AdminNetworkPolicy and BaselineAdminNetworkPolicy reconcilers (`--enable-anp`, off by
//! default as upstream): keep each policy's port group, address sets and ACLs (see
//! [`crate::anp`], which also explains how precedence is kept on OVN 23.03) in step with the
//! policy, the pods it selects or names as peers, the namespaces and the nodes its peers
//! select. A reconcile is one batched transaction of what differs: a pod joining a policy is
//! a port-group or address-set mutate, never a rewrite of the ACLs. A deleted policy's rows go
//! with it; with `--enable-anp` off, GC removes every `anp`/`banp`/`cnp` row as upstream does.
//!
//! Upstream writes no status on these objects; problems are reported as Events. Two
//! AdminNetworkPolicies with one priority: upstream applies the first it handled and refuses
//! the other until the first is gone; here the older one holds the priority and the other has
//! no rows (and a `PriorityConflict` Warning) until it is the holder.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use kube_ovn_common::crd::{AdminNetworkPolicy, BaselineAdminNetworkPolicy};
use kube_ovn_nb::objects::{self, AdminKind};
use kube_ovn_nb::{Plan, PlanError};
use kube_ovn_runtime::events::EventType;
use kube_ovn_runtime::trigger::{hash_json, hash_of};
use kube_ovn_runtime::Outcome;

use crate::anp::{self, Cluster, Desired};
use crate::context::{Ctx, Error};
use crate::dns_names::Resolved;
use crate::np_ctl::Members;
use crate::pod_info::PodInfo;

/// The AdminNetworkPolicy queue's kind name.
pub const KIND: &str = "admin-network-policy";
/// The BaselineAdminNetworkPolicy queue's kind name.
pub const BASELINE_KIND: &str = "baseline-admin-network-policy";

/// What of an AdminNetworkPolicy its reconcile reads: spec, the log annotation, deletion
/// (the creation time only ranks priority holders, and never changes).
pub fn signature(a: &AdminNetworkPolicy) -> u64 {
    hash_of(&(
        hash_json(&a.spec),
        a.annotations().get(anp::LOG_ACL_ACTIONS),
        a.metadata.deletion_timestamp.is_some(),
    ))
}

/// What of an AdminNetworkPolicy the others read: which priority it holds.
pub fn priority_signature(a: &AdminNetworkPolicy) -> u64 {
    hash_of(&(a.spec.priority, a.metadata.deletion_timestamp.is_some()))
}

/// What of a BaselineAdminNetworkPolicy its reconcile reads.
pub fn baseline_signature(b: &BaselineAdminNetworkPolicy) -> u64 {
    hash_of(&(
        hash_json(&b.spec),
        b.annotations().get(anp::LOG_ACL_ACTIONS),
        b.metadata.deletion_timestamp.is_some(),
    ))
}

/// What of a node the policies read: labels and InternalIPs.
pub fn node_signature(n: &Node) -> u64 {
    hash_of(&(
        hash_json(&n.metadata.labels),
        kube_ovn_common::node::internal_ips(n),
    ))
}

/// Which pods each policy held at its last reconcile (one book per kind).
#[derive(Default)]
pub struct AdminMembers {
    /// AdminNetworkPolicies by name.
    pub anp: Members,
    /// BaselineAdminNetworkPolicies by name.
    pub banp: Members,
}

fn pod_namespace(namespaces: &Store<Namespace>, p: &PodInfo) -> Option<Arc<Namespace>> {
    p.metadata
        .namespace
        .as_deref()
        .and_then(|n| namespaces.get(&ObjectRef::new(n)))
}

fn merge(mut keys: Vec<String>, more: Vec<String>) -> Vec<String> {
    for k in more {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys
}

/// The AdminNetworkPolicies a pod concerns now or held it at their last reconcile.
pub fn anps_of_pod(
    anps: &[Arc<AdminNetworkPolicy>],
    namespaces: &Store<Namespace>,
    members: &Members,
    p: &PodInfo,
) -> Vec<String> {
    let ns = pod_namespace(namespaces, p);
    let keys = anps
        .iter()
        .filter(|a| anp::anp_concerns(a, p, ns.as_deref()))
        .map(|a| a.name_any())
        .collect();
    merge(keys, members.of_pod(p.key()))
}

/// The BaselineAdminNetworkPolicies a pod concerns now or held it at their last reconcile.
pub fn banps_of_pod(
    banps: &[Arc<BaselineAdminNetworkPolicy>],
    namespaces: &Store<Namespace>,
    members: &Members,
    p: &PodInfo,
) -> Vec<String> {
    let ns = pod_namespace(namespaces, p);
    let keys = banps
        .iter()
        .filter(|b| anp::banp_concerns(b, p, ns.as_deref()))
        .map(|b| b.name_any())
        .collect();
    merge(keys, members.of_pod(p.key()))
}

/// The AdminNetworkPolicies whose egress peers select nodes.
pub fn anps_selecting_nodes(anps: &[Arc<AdminNetworkPolicy>]) -> Vec<String> {
    anps.iter()
        .filter(|a| anp::anp_selects_nodes(a))
        .map(|a| a.name_any())
        .collect()
}

/// The BaselineAdminNetworkPolicies whose egress peers select nodes.
pub fn banps_selecting_nodes(banps: &[Arc<BaselineAdminNetworkPolicy>]) -> Vec<String> {
    banps
        .iter()
        .filter(|b| anp::banp_selects_nodes(b))
        .map(|b| b.name_any())
        .collect()
}

/// Every policy's key: a namespace's labels can change any subject or peer.
pub fn all_keys<K: Resource>(objs: &[Arc<K>]) -> Vec<String> {
    objs.iter().map(|o| o.name_any()).collect()
}

/// Writes a policy's desired rows: port group and members, address sets (stale ones of the
/// policy pruned), ACLs per direction.
fn write(plan: &mut Plan<'_>, want: &Desired) -> Result<(), PlanError> {
    objects::admin_port_group(plan, want.kind, &want.pg, &want.name, &want.ports)?;
    for set in &want.address_sets {
        objects::admin_address_set(plan, want.kind, set)?;
    }
    for dir in ["ingress", "egress"] {
        let mark = format!("{}/{dir}", want.name);
        let keep: BTreeSet<String> = want
            .address_sets
            .iter()
            .filter(|s| s.mark == mark)
            .map(|s| s.name.clone())
            .collect();
        objects::prune_admin_address_sets(plan, want.kind, &mark, &keep)?;
    }
    objects::pg_acls(plan, &want.pg, Some("to-lport"), &want.ingress_acls)?;
    objects::pg_acls(plan, &want.pg, Some("from-lport"), &want.egress_acls)
}

async fn remove(ctx: &Ctx, kind: AdminKind, key: &str) -> Result<(), Error> {
    let (pg, name) = (anp::pg_name(key), anp::policy_name(key));
    ctx.apply(&format!("delete {} {key}", kind.key()), |plan| {
        objects::delete_admin_policy(plan, kind, &pg, &name)
    })
    .await?;
    Ok(())
}

/// The BaselineAdminNetworkPolicy whose port group the AdminNetworkPolicy `key` shares
/// (upstream names both kinds' groups alike), if one exists.
fn banp_sharing_port_group(ctx: &Ctx, key: &str) -> Option<Arc<BaselineAdminNetworkPolicy>> {
    let pg = anp::pg_name(key);
    ctx.stores
        .baseline_admin_network_policies
        .state()
        .into_iter()
        .find(|b| b.metadata.deletion_timestamp.is_none() && anp::pg_name(&b.name_any()) == pg)
}

/// Removes the AdminNetworkPolicy `key`'s rows (it is gone or refused). A BANP sharing its
/// port group was refused while the ANP held it: it takes the group back in the same
/// transaction — its rows written over the ANP's, the ANP's other address sets deleted — so
/// no concurrent reconcile of the BANP can see the group half gone.
async fn remove_anp(ctx: &Ctx, key: &str) -> Result<(), Error> {
    ctx.admin_members.anp.record(key, BTreeSet::new());
    let Some(b) = banp_sharing_port_group(ctx, key) else {
        return remove(ctx, AdminKind::Anp, key).await;
    };
    let want = match anp::desired_banp(&b, &Snapshot::of(ctx).cx()) {
        Ok(w) => w,
        Err(_) => return remove(ctx, AdminKind::Anp, key).await,
    };
    let name = anp::policy_name(key);
    let kept: BTreeSet<String> = want.address_sets.iter().map(|s| s.name.clone()).collect();
    ctx.apply(
        &format!("delete anp {key}, banp {} takes its port group", want.name),
        |plan| {
            for dir in ["ingress", "egress"] {
                objects::prune_admin_address_sets(
                    plan,
                    AdminKind::Anp,
                    &format!("{name}/{dir}"),
                    &kept,
                )?;
            }
            write(plan, &want)
        },
    )
    .await?;
    ctx.admin_members
        .banp
        .record(&b.name_any(), want.concerned.clone());
    Ok(())
}

/// Applies `want` (or reports why there is nothing to apply) and records its pods.
async fn converge<K: Resource<DynamicType = ()>>(
    ctx: &Ctx,
    obj: &K,
    members: &Members,
    key: &str,
    want: Result<Desired, String>,
) -> Result<Outcome, Error> {
    let want = match want {
        Ok(w) => w,
        Err(e) => {
            // Only a spec change can fix it, and that queues the policy again; the rows of
            // its last valid spec stay, as upstream leaves them.
            ctx.event(
                &obj.object_ref(&()),
                EventType::Warning,
                "InvalidPolicy",
                &e,
            )
            .await;
            return Ok(Outcome::Done);
        }
    };
    let r = ctx
        .apply(&format!("{} {key}", want.kind.key()), |plan| {
            write(plan, &want)
        })
        .await;
    members.record(key, want.concerned.clone());
    if let Err(e) = r {
        ctx.event(
            &obj.object_ref(&()),
            EventType::Warning,
            "CreateACLFailed",
            &e.to_string(),
        )
        .await;
        return Err(e);
    }
    Ok(Outcome::Done)
}

/// The stores' current pods, namespaces, nodes and (with `--enable-dns-name-resolver`) the
/// addresses domain names resolved to: what admin policies are computed from.
pub(crate) struct Snapshot {
    pods: Vec<Arc<PodInfo>>,
    namespaces: Vec<Arc<Namespace>>,
    nodes: Vec<Arc<Node>>,
    domains: Option<Resolved>,
}

impl Snapshot {
    /// The stores now.
    pub(crate) fn of(ctx: &Ctx) -> Snapshot {
        let domains = ctx.config.enable_dns_name_resolver.then(|| {
            let resolvers = ctx.stores.dns_name_resolvers.state();
            Resolved::new(resolvers.iter().map(|r| r.as_ref()))
        });
        Snapshot {
            pods: ctx.stores.pods.state(),
            namespaces: ctx.stores.namespaces.state(),
            nodes: ctx.stores.nodes.state(),
            domains,
        }
    }

    /// The cluster as the pure computations read it.
    pub(crate) fn cx(&self) -> Cluster<'_> {
        Cluster {
            pods: &self.pods,
            namespaces: &self.namespaces,
            nodes: &self.nodes,
            domains: self.domains.as_ref(),
        }
    }
}

/// Reconciles the AdminNetworkPolicy `name`: its rows, then (with
/// `--enable-dns-name-resolver`) the resolvers of its domains.
pub async fn reconcile(ctx: Arc<Ctx>, key: String) -> Result<Outcome, Error> {
    if !ctx.config.enable_anp {
        return Ok(Outcome::Done);
    }
    let out = reconcile_rows(&ctx, &key).await?;
    if ctx.config.enable_dns_name_resolver {
        let obj = ctx
            .stores
            .admin_network_policies
            .get(&ObjectRef::new(&key))
            .map(|a| a.object_ref(&()));
        crate::dnr_ctl::sync_for(&ctx, &anp::policy_name(&key), obj).await?;
    }
    Ok(out)
}

async fn reconcile_rows(ctx: &Arc<Ctx>, key: &str) -> Result<Outcome, Error> {
    let (ctx, key) = (ctx.clone(), key.to_string());
    let all = ctx.stores.admin_network_policies.state();
    let Some(a) = all
        .iter()
        .find(|a| a.name_any() == key && a.metadata.deletion_timestamp.is_none())
        .cloned()
    else {
        remove_anp(&ctx, &key).await?;
        return Ok(Outcome::Done);
    };
    if let Some(holder) = anp::priority_holder(&a, &all) {
        let msg = format!(
            "can not create anp with same priority {}, exist one is {holder}, new created is {key}",
            a.spec.priority
        );
        ctx.event(
            &a.object_ref(&()),
            EventType::Warning,
            "PriorityConflict",
            &msg,
        )
        .await;
        remove_anp(&ctx, &key).await?;
        return Ok(Outcome::Done);
    }
    let want = anp::desired_anp(&a, &Snapshot::of(&ctx).cx());
    converge(&ctx, a.as_ref(), &ctx.admin_members.anp, &key, want).await
}

/// Reconciles the BaselineAdminNetworkPolicy `name`.
pub async fn reconcile_baseline(ctx: Arc<Ctx>, key: String) -> Result<Outcome, Error> {
    if !ctx.config.enable_anp {
        return Ok(Outcome::Done);
    }
    let Some(b) = ctx
        .stores
        .baseline_admin_network_policies
        .get(&ObjectRef::new(&key))
        .filter(|b| b.metadata.deletion_timestamp.is_none())
    else {
        remove(&ctx, AdminKind::Banp, &key).await?;
        ctx.admin_members.banp.record(&key, BTreeSet::new());
        return Ok(Outcome::Done);
    };
    // Upstream names both kinds' port groups alike: an AdminNetworkPolicy of the same name
    // that holds its priority keeps the group rather than the two overwriting each other's
    // ACLs; its removal hands the group back (see `remove_anp`).
    let pg = anp::pg_name(&key);
    let anps = ctx.stores.admin_network_policies.state();
    if let Some(a) = anps.iter().find(|a| {
        anp::pg_name(&a.name_any()) == pg
            && a.metadata.deletion_timestamp.is_none()
            && anp::priority_holder(a, &anps).is_none()
    }) {
        let msg = format!(
            "port group {pg} belongs to AdminNetworkPolicy {}",
            a.name_any()
        );
        ctx.event(
            &b.object_ref(&()),
            EventType::Warning,
            "PortGroupTaken",
            &msg,
        )
        .await;
        return Ok(Outcome::Done);
    }
    let want = anp::desired_banp(&b, &Snapshot::of(&ctx).cx());
    converge(&ctx, b.as_ref(), &ctx.admin_members.banp, &key, want).await
}

/// Removes the rows of policies that no longer exist (deleted while the controller was down);
/// with `--enable-anp` off, every admin policy row, as upstream's GC.
pub async fn gc(ctx: &Ctx) -> Result<usize, Error> {
    if !ctx.config.enable_anp {
        return ctx
            .apply("gc admin network policies (disabled)", |plan| {
                for k in [objects::key::ANP, objects::key::BANP, objects::key::CNP] {
                    objects::delete_marked(plan, k)?;
                }
                Ok(())
            })
            .await;
    }
    let live_anp: BTreeSet<String> = ctx
        .stores
        .admin_network_policies
        .state()
        .iter()
        .map(|a| anp::policy_name(&a.name_any()))
        .collect();
    let live_banp: BTreeSet<String> = ctx
        .stores
        .baseline_admin_network_policies
        .state()
        .iter()
        .map(|b| anp::policy_name(&b.name_any()))
        .collect();
    ctx.apply("gc admin network policies", |plan| {
        for (kind, live) in [(AdminKind::Anp, &live_anp), (AdminKind::Banp, &live_banp)] {
            for (pg, name) in objects::admin_policies(plan, kind)? {
                if !live.contains(&name) {
                    objects::delete_admin_policy(plan, kind, &pg, &name)?;
                }
            }
        }
        Ok(())
    })
    .await
}
