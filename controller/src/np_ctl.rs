//! NetworkPolicy reconciler (`--enable-np`): keeps each policy's port group, address sets,
//! ACLs and log meters (see [`crate::netpol`]) in step with the policy, the pods it selects or
//! names as peers, and the namespaces its peers select. A reconcile is one batched
//! transaction of what differs. Pods' changes go through one members reconcile for every
//! policy: a batch of pod changes is one transaction of port-group and address-set mutates
//! across all the policies they concern, never a rewrite of the ACLs. A deleted policy's rows go with it; while
//! any policy exists, every node's port group carries upstream's 3000 allows of the node's own
//! traffic to its pods (kubelet probes).

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use kube_ovn_nb::objects::{self, PgAcl};

use crate::context::{Ctx, Error};
use crate::netpol::{self, Cluster, Contribution, Membership};
use crate::np_state::{Compiled, Delta, Marks, NpCache};
use crate::pod_info::PodInfo;
use kube_ovn_common::annotations as ann;
use kube_ovn_runtime::events::EventType;
use kube_ovn_runtime::trigger::{hash_json, hash_of};
use kube_ovn_runtime::Outcome;

/// The NetworkPolicy queue's kind name.
pub const KIND: &str = "network-policy";
/// The queue of the nodes' policy allows (one key: every node is converged at once).
pub const NODES_KIND: &str = "network-policy-nodes";
/// The single key of [`NODES_KIND`].
pub const NODES_KEY: &str = "nodes";
/// The queue of the pods' member changes (one key: every marked policy is taken at once).
pub const MEMBERS_KIND: &str = "network-policy-members";
/// The single key of [`MEMBERS_KIND`].
pub const MEMBERS_KEY: &str = "members";

/// A reconcile's hold on policies' memory (see [`NpCache::claim`]): ending it queues what the
/// other reconciles left while it held them.
struct Claim<'a> {
    ctx: &'a Ctx,
    policies: Vec<String>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let left = self.ctx.np_cache.release(&self.policies);
        for np in left.policies {
            self.ctx.queues.add(KIND, np);
        }
        if left.pods {
            self.ctx.queues.add(MEMBERS_KIND, MEMBERS_KEY);
        }
    }
}

/// What of a policy the reconciler reads.
pub fn signature(np: &NetworkPolicy) -> u64 {
    let a = np.annotations();
    let steer: Vec<Option<&String>> = [
        netpol::ENABLE_LOG,
        netpol::LOG_ACL_ACTIONS,
        netpol::ACL_LOG_METER_RATE,
        netpol::ENFORCEMENT,
        netpol::POLICY_FOR,
    ]
    .iter()
    .map(|k| a.get(*k))
    .collect();
    hash_of(&(
        hash_json(&np.spec),
        hash_json(&steer),
        np.metadata.deletion_timestamp.is_some(),
    ))
}

/// What of a pod its policies read: namespace, labels, each NIC's addresses, subnet and
/// allocation (the default one's and every attachment's), host network, deletion.
pub fn pod_signature(p: &PodInfo) -> u64 {
    let nics: Vec<(&String, &String)> = p
        .annotations()
        .iter()
        .filter(|(k, _)| {
            [
                ".kubernetes.io/ip_address",
                ".kubernetes.io/logical_switch",
                ".kubernetes.io/allocated",
            ]
            .iter()
            .any(|suffix| k.ends_with(suffix))
        })
        .collect();
    hash_of(&(
        &p.metadata.namespace,
        hash_json(&p.metadata.labels),
        nics,
        p.host_network(),
        p.metadata.deletion_timestamp.is_some(),
    ))
}

/// What of a namespace policies read: its labels.
pub fn namespace_signature(n: &Namespace) -> u64 {
    hash_json(&n.metadata.labels)
}

/// Which pods each policy's last reconcile found selected or named as peers, and the reverse:
/// a pod's change (relabelled away, deleted) reaches the policies that still hold it, even
/// those created after the pod's previous event.
#[derive(Default)]
pub struct Members {
    inner: std::sync::Mutex<MemberMaps>,
}

#[derive(Default)]
struct MemberMaps {
    by_np: std::collections::HashMap<String, BTreeSet<String>>,
    by_pod: std::collections::HashMap<String, BTreeSet<String>>,
}

impl Members {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemberMaps> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the pods policy `np` concerns now (none: forgotten).
    pub fn record(&self, np: &str, pods: BTreeSet<String>) {
        let mut m = self.lock();
        let old = m.by_np.remove(np).unwrap_or_default();
        for p in old.difference(&pods) {
            if let Some(set) = m.by_pod.get_mut(p) {
                set.remove(np);
                if set.is_empty() {
                    m.by_pod.remove(p);
                }
            }
        }
        for p in &pods {
            m.by_pod
                .entry(p.clone())
                .or_default()
                .insert(np.to_string());
        }
        if !pods.is_empty() {
            m.by_np.insert(np.to_string(), pods);
        }
    }

    /// The policies that last held pod `key`.
    pub fn of_pod(&self, key: &str) -> Vec<String> {
        self.lock()
            .by_pod
            .get(key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The policies a pod concerns (selected, or a peer) now or held it at their last reconcile,
/// through each policy's compiled selectors (`cache`).
pub fn policies_of_pod(
    nps: &[Arc<NetworkPolicy>],
    namespaces: &kube::runtime::reflector::Store<Namespace>,
    cache: &NpCache,
    p: &PodInfo,
) -> Vec<String> {
    let ns = p
        .metadata
        .namespace
        .as_deref()
        .and_then(|n| namespaces.get(&ObjectRef::new(n)));
    // Only a policy of the pod's namespace or one whose peers select namespaces can concern
    // it; at a hundred namespaces most policies are neither (this walk was a sixth of the
    // controller's CPU under pod churn).
    let own = p.metadata.namespace.as_deref();
    let mut keys: Vec<String> = nps
        .iter()
        .filter(|np| np.metadata.namespace.as_deref() == own || netpol::selects_namespaces(np))
        .filter_map(|np| {
            let key = key_of(np);
            cache
                .selectors(&key, np)
                .concerns(p, ns.as_deref())
                .then_some(key)
        })
        .collect();
    for k in cache.holding(p.key()) {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys
}

/// The policies whose peers select namespaces (a namespace's labels changed).
pub fn policies_selecting_namespaces(nps: &[Arc<NetworkPolicy>]) -> Vec<String> {
    nps.iter()
        .filter(|np| netpol::selects_namespaces(np))
        .map(|np| key_of(np))
        .collect()
}

fn key_of(np: &NetworkPolicy) -> String {
    format!("{}/{}", np.namespace().unwrap_or_default(), np.name_any())
}

/// Reconciles the policy `namespace/name`: the pods marked since its last reconcile moved in
/// or out of its rows when nothing else changed (see [`crate::np_state`]), else the whole
/// policy.
pub async fn reconcile(ctx: Arc<Ctx>, key: String) -> Result<Outcome, Error> {
    if !ctx.config.enable_np {
        return Ok(Outcome::Done);
    }
    let Some((ns, name)) = key.split_once('/') else {
        return Ok(Outcome::Done);
    };
    let Some(marks) = ctx.np_cache.claim(&key) else {
        // The members reconcile holds it; its claim's end queues this again.
        return Ok(Outcome::Done);
    };
    let _claim = Claim {
        ctx: &ctx,
        policies: vec![key.clone()],
    };
    let np = ctx
        .stores
        .network_policies
        .get(&ObjectRef::new(name).within(ns))
        .filter(|n| n.metadata.deletion_timestamp.is_none());
    let Some(np) = np else {
        ctx.queues.add(NODES_KIND, NODES_KEY.to_string());
        ctx.np_cache.forget_all(&key);
        let pg = netpol::pg_name(ns, name);
        let mark = format!("{ns}/{}", netpol::np_name(name));
        ctx.apply(&format!("delete network policy {key}"), |plan| {
            objects::delete_np(plan, &pg, &mark)
        })
        .await?;
        return Ok(Outcome::Done);
    };
    let sig = signature(&np);
    if ctx.np_cache.begin(&key) {
        // The nodes' allows exist while any policy does.
        ctx.queues.add(NODES_KIND, NODES_KEY.to_string());
    }
    let r = match marks {
        Marks::Pods(pods) => match incremental(&ctx, &key, sig, pods) {
            Some(delta) => apply_delta(&ctx, &key, &delta).await,
            None => full(&ctx, &key, &np, sig).await,
        },
        Marks::Full => full(&ctx, &key, &np, sig).await,
    };
    if let Err(e) = r {
        ctx.np_cache.forget(&key);
        ctx.event(
            &np.object_ref(&()),
            EventType::Warning,
            "CreateACLFailed",
            &e.to_string(),
        )
        .await;
        return Err(e);
    }
    Ok(Outcome::Done)
}

/// `spec.protocol` of subnet `name`.
fn subnet_protocol(ctx: &Ctx) -> impl Fn(&str) -> Option<String> {
    let subnets = ctx.stores.subnets.state();
    move |s: &str| {
        subnets
            .iter()
            .find(|x| x.name_any() == s)
            .map(|x| x.spec.protocol.clone())
    }
}

/// The member changes of the marked `pods`, when the policy's memory is valid for `sig` and
/// they change nothing but membership.
fn incremental(ctx: &Ctx, key: &str, sig: u64, pods: BTreeSet<String>) -> Option<Delta> {
    let protocol = subnet_protocol(ctx);
    ctx.np_cache.with_compiled(key, sig, |c| {
        let changed: Vec<(String, Contribution)> = pods
            .into_iter()
            .map(|pod| {
                let contribution = pod
                    .split_once('/')
                    .and_then(|(ns, name)| {
                        let p = ctx.stores.pods.get(&ObjectRef::new(name).within(ns))?;
                        let n = ctx.stores.namespaces.get(&ObjectRef::new(ns));
                        Some(c.membership().contribution(&p, n.as_deref(), &protocol))
                    })
                    .unwrap_or_default();
                (pod, contribution)
            })
            .collect();
        c.update(changed)
    })
}

/// Writes the member changes of every policy whose pods changed since the last run, in one
/// transaction: the pod watch marks the policies a pod concerns and queues this single key, so
/// a pod's change costs one transaction whatever the number of policies naming it (a few
/// dozen at 1,000 policies; one transaction each kept the policy workers waiting on the NB).
/// A policy whose change is more than membership, or whose memory is stale, is handed to its
/// own reconcile for a full computation.
pub async fn reconcile_members(ctx: Arc<Ctx>, _key: String) -> Result<Outcome, Error> {
    if !ctx.config.enable_np {
        return Ok(Outcome::Done);
    }
    let marked = ctx.np_cache.claim_pods();
    if marked.is_empty() {
        return Ok(Outcome::Done);
    }
    let _claim = Claim {
        ctx: &ctx,
        policies: marked.keys().cloned().collect(),
    };
    let mut deltas = Vec::new();
    for (key, pods) in marked {
        let Some((ns, name)) = key.split_once('/') else {
            continue;
        };
        let Some(np) = ctx
            .stores
            .network_policies
            .get(&ObjectRef::new(name).within(ns))
            .filter(|n| n.metadata.deletion_timestamp.is_none())
        else {
            // Gone: its own reconcile removes its rows.
            continue;
        };
        let sig = ctx.np_cache.signature(&key, &np, signature);
        match incremental(&ctx, &key, sig, pods) {
            Some(delta) => deltas.push((key, delta)),
            None => {
                ctx.np_cache.mark_full(std::slice::from_ref(&key));
                ctx.queues.add(KIND, key);
            }
        }
    }
    let written = ctx
        .apply("network policy members", |plan| {
            for (key, delta) in deltas.iter().filter(|(_, d)| !d.is_empty()) {
                plan_delta(plan, key, delta)?;
            }
            Ok(())
        })
        .await;
    if let Err(e) = written {
        // Their memory no longer describes the NB: each is computed in full by its own
        // reconcile, which reports a lasting failure on the policy.
        tracing::warn!("network policy members: {e}; computing the policies in full");
        for (key, _) in deltas {
            ctx.np_cache.forget(&key);
            ctx.np_cache.mark_full(std::slice::from_ref(&key));
            ctx.queues.add(KIND, key);
        }
    }
    Ok(Outcome::Done)
}

/// Plans policy `key`'s member changes: its port group's ports and its address sets' entries.
fn plan_delta(
    plan: &mut kube_ovn_nb::Plan<'_>,
    key: &str,
    delta: &Delta,
) -> Result<(), kube_ovn_nb::PlanError> {
    let (ns, name) = key.split_once('/').unwrap_or_default();
    objects::np_port_group_members(
        plan,
        &netpol::pg_name(ns, name),
        &delta.add_ports,
        &delta.remove_ports,
    )?;
    for (set, (add, remove)) in &delta.sets {
        objects::np_address_set_members(plan, set, add, remove)?;
    }
    Ok(())
}

/// Writes a policy's member changes.
async fn apply_delta(ctx: &Ctx, key: &str, delta: &Delta) -> Result<(), Error> {
    if delta.is_empty() {
        return Ok(());
    }
    ctx.apply(&format!("network policy {key} members"), |plan| {
        plan_delta(plan, key, delta)
    })
    .await?;
    Ok(())
}

/// Computes and writes the whole policy, and remembers it for the pod changes to come.
async fn full(ctx: &Ctx, key: &str, np: &NetworkPolicy, sig: u64) -> Result<(), Error> {
    let pods = ctx.np_cache.pods.get(|| ctx.stores.pods.state());
    let namespaces = ctx.stores.namespaces.state();
    let protocol = subnet_protocol(ctx);
    let want = netpol::desired(
        np,
        &Cluster {
            pods: &pods,
            namespaces: &namespaces,
            subnet_protocol: &protocol,
            lax_default: ctx.config.np_enforcement == "lax",
        },
    );
    let membership = Membership::new(np, &want.families);
    // Looked up per concerned pod: a store lookup builds an owned key each time.
    let namespace_of: std::collections::HashMap<&str, &Arc<Namespace>> = namespaces
        .iter()
        .filter_map(|n| Some((n.metadata.name.as_deref()?, n)))
        .collect();
    let mut contributions: Vec<(Arc<str>, Contribution)> = Vec::with_capacity(want.concerned.len());
    contributions.extend(want.concerned.iter().map(|(k, p)| {
        let n = p
            .metadata
            .namespace
            .as_deref()
            .and_then(|ns| namespace_of.get(ns));
        (
            k.clone(),
            membership.contribution(p, n.map(|n| n.as_ref()), &protocol),
        )
    }));
    ctx.np_cache
        .store(key, Compiled::new(sig, membership, contributions));
    ctx.apply(&format!("network policy {key}"), |plan| {
        objects::np_port_group(plan, &want.pg, &want.np, &want.ports)?;
        for set in &want.address_sets {
            objects::np_address_set(plan, set)?;
        }
        for (dir, isolated) in [("ingress", want.ingress), ("egress", want.egress)] {
            let keep: BTreeSet<String> = if isolated {
                want.address_sets
                    .iter()
                    .filter(|s| s.np.ends_with(&format!("/{dir}")))
                    .map(|s| s.name.clone())
                    .collect()
            } else {
                BTreeSet::new()
            };
            objects::prune_np_address_sets(plan, &format!("{}/{dir}", want.np), &keep)?;
        }
        for (meter, rate) in &want.meters {
            objects::acl_meter(plan, meter, *rate)?;
        }
        objects::pg_acls(plan, &want.pg, Some("to-lport"), &want.ingress_acls)?;
        objects::pg_acls(plan, &want.pg, Some("from-lport"), &want.egress_acls)
    })
    .await?;
    Ok(())
}

/// The node's 3000 allows of its own traffic to and from its pods (upstream's node ACLs).
pub fn node_acls(pg: &str, node_ips: &[std::net::IpAddr]) -> Vec<PgAcl> {
    let mut out = Vec::new();
    for ip in node_ips {
        let f = if ip.is_ipv4() { "ip4" } else { "ip6" };
        let set = format!("{pg}_{f}");
        out.push(PgAcl {
            direction: "to-lport",
            priority: netpol::NODE_ALLOW,
            r#match: format!("{f}.src == {ip} && {f}.dst == ${set}"),
            action: "allow-related",
            name: None,
            log: false,
            severity: None,
            meter: None,
            apply_after_lb: false,
        });
        out.push(PgAcl {
            direction: "from-lport",
            priority: netpol::NODE_ALLOW,
            r#match: format!("{f}.dst == {ip} && {f}.src == ${set}"),
            action: "allow-related",
            name: None,
            log: false,
            severity: None,
            meter: None,
            apply_after_lb: true,
        });
    }
    out
}

/// The addresses a node's allows name: its InternalIPs, the join address for a family
/// without one (upstream).
fn node_addresses(node: &Node) -> Vec<std::net::IpAddr> {
    let mut ips = kube_ovn_common::node::internal_ips(node);
    let join: Vec<std::net::IpAddr> = node
        .annotations()
        .get(ann::IP_ADDRESS)
        .map(|v| ann::parse_ips(v).unwrap_or_default())
        .unwrap_or_default();
    for j in join {
        if !ips.iter().any(|i| i.is_ipv4() == j.is_ipv4()) {
            ips.push(j);
        }
    }
    ips.sort_by_key(|i| i.is_ipv6());
    ips
}

/// Converges every node's policy allows: present while any policy exists, absent otherwise.
/// Nothing is planned when neither that, the nodes' addresses nor which of their port groups
/// exist changed since the last write.
pub async fn reconcile_nodes(ctx: Arc<Ctx>, _key: String) -> Result<Outcome, Error> {
    let any = ctx.config.enable_np && !ctx.stores.network_policies.state().is_empty();
    let nodes = ctx.stores.nodes.state();
    let state = {
        let cache = ctx.nb.cache();
        // Per node: its group, and how many ACLs that holds (none if it does not exist).
        let groups: Vec<(String, Option<usize>, Vec<std::net::IpAddr>)> = nodes
            .iter()
            .map(|n| {
                let pg = objects::node_pg(&n.name_any());
                let acls = cache
                    .table("Port_Group")
                    .and_then(|t| t.by_name(&pg).next())
                    .map(|(_, row)| row.get("acls").map(|d| d.len()).unwrap_or_default());
                (pg, acls, node_addresses(n))
            })
            .collect();
        hash_of(&(any, groups))
    };
    if *lock(&ctx.np_cache.nodes_written) == Some(state) {
        return Ok(Outcome::Done);
    }
    ctx.apply("network policy node allows", |plan| {
        for n in &nodes {
            let pg = objects::node_pg(&n.name_any());
            if plan.lookup("Port_Group", &pg).is_none() {
                continue;
            }
            let acls = if any {
                node_acls(&pg, &node_addresses(n))
            } else {
                Vec::new()
            };
            objects::pg_acls(plan, &pg, None, &acls)?;
        }
        Ok(())
    })
    .await?;
    *lock(&ctx.np_cache.nodes_written) = Some(state);
    Ok(Outcome::Done)
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes the rows of policies that no longer exist (deleted while the controller was down).
pub async fn gc(ctx: &Ctx) -> Result<usize, Error> {
    if !ctx.config.enable_np {
        return Ok(0);
    }
    let live: BTreeSet<String> = ctx
        .stores
        .network_policies
        .state()
        .iter()
        .map(|np| netpol::pg_name(&np.namespace().unwrap_or_default(), &np.name_any()))
        .collect();
    ctx.apply("gc network policies", |plan| {
        for (pg, mark) in objects::np_port_groups(plan)? {
            if !live.contains(&pg) {
                objects::delete_np(plan, &pg, &mark)?;
            }
        }
        Ok(())
    })
    .await
}
