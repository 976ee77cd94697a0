//! Garbage collection: finds NB ports and IP CRs whose pod or node no longer exists and hands
//! their keys to the reconcilers, which already know how to clean up a vanished object. Only
//! rows tagged `vendor=kube-ovn` are ever considered (upstream's default also deletes foreign
//! switches and ports; adopting a cluster must not destroy what others created).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector::ObjectRef;
use kube_ovn_nb::ports::{owned_ports, PortOwner};
use tracing::info;

use crate::context::{Ctx, Error};

/// Owners (pod keys, node names) with records but no object: what a GC pass found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Orphans {
    /// `namespace/name` of vanished pods.
    pub pods: BTreeSet<String>,
    /// Names of vanished nodes.
    pub nodes: BTreeSet<String>,
}

/// Looks for orphans in the NB cache and the IP CRs.
pub async fn find(ctx: &Ctx) -> Result<Orphans, Error> {
    let mut out = Orphans::default();
    let pod_exists = |key: &str| {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        ctx.stores
            .pods
            .get(&ObjectRef::<crate::pod_info::PodInfo>::new(name).within(ns))
            .is_some()
    };
    let node_exists = |name: &str| {
        ctx.stores
            .nodes
            .get(&ObjectRef::<Node>::new(name))
            .is_some()
    };
    let vip_ports =
        crate::vip_ctl::typed_ports(&ctx.stores.vips.state(), &ctx.stores.subnets.state());
    {
        let cache = ctx.nb.cache();
        for port in owned_ports(&cache)? {
            match port.owner {
                PortOwner::Pod(_) if vip_ports.contains(port.name) => {}
                PortOwner::Pod(pod) => {
                    if !pod_exists(pod) {
                        out.pods.insert(pod.to_string());
                    }
                }
                PortOwner::Node(node) => {
                    if port.switch == Some(ctx.config.node_switch.as_str()) && !node_exists(node) {
                        out.nodes.insert(node.to_string());
                    }
                }
            }
        }
    }
    for (name, s) in ctx.ips.snapshot() {
        if name.starts_with(kube_ovn_common::names::U2O_IP_CR_PREFIX) {
            // A Subnet's (its reconcile and deletion keep it), not a pod's.
            continue;
        }
        if s.namespace.is_empty() {
            if !s.pod_name.is_empty() && !node_exists(&s.pod_name) {
                out.nodes.insert(s.pod_name.clone());
            }
        } else {
            let key = format!("{}/{}", s.namespace, s.pod_name);
            if !pod_exists(&key) {
                out.pods.insert(key);
            }
        }
    }
    Ok(out)
}

/// One GC pass: orphans are queued for cleanup.
pub async fn run(ctx: &Ctx) -> Result<Orphans, Error> {
    let found = find(ctx).await?;
    if !found.pods.is_empty() || !found.nodes.is_empty() {
        info!(
            pods = found.pods.len(),
            nodes = found.nodes.len(),
            "gc: cleaning up records without owners"
        );
    }
    for p in &found.pods {
        ctx.queues.add(crate::pod_ctl::KIND, p.clone());
    }
    for n in &found.nodes {
        ctx.queues.add(crate::node_ctl::KIND, n.clone());
    }
    crate::service_ctl::gc(ctx).await?;
    crate::np_ctl::gc(ctx).await?;
    crate::sg_ctl::gc(ctx).await?;
    crate::anp_ctl::gc(ctx).await?;
    crate::cnp_ctl::gc(ctx).await?;
    crate::dnr_ctl::gc(ctx).await?;
    Ok(found)
}
