//! Garbage collection: finds NB ports and IP CRs whose pod or node no longer exists and hands
//! their keys to the reconcilers, which already know how to clean up a vanished object. Only
//! rows tagged `vendor=kube-ovn` are ever considered (upstream's default also deletes foreign
//! switches and ports; adopting a cluster must not destroy what others created).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector::ObjectRef;
use kube_ovn_common::names;
use kube_ovn_nb::objects::VENDOR;
use tracing::info;

use crate::context::{Ctx, Error};
use crate::queue::Queue;

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
    {
        let cache = ctx.nb.cache();
        if let Some(t) = cache.table("Logical_Switch_Port") {
            for (_, r) in t.iter() {
                let ids = kube_ovn_nb::objects::string_map(r, "external_ids");
                if ids.get("vendor").map(String::as_str) != Some(VENDOR) {
                    continue;
                }
                let name = r
                    .get("name")
                    .and_then(|d| d.as_atom())
                    .and_then(|a| a.as_str())
                    .unwrap_or("");
                if let Some(pod) = ids.get("pod") {
                    if !pod_exists(pod) {
                        out.pods.insert(pod.clone());
                    }
                } else if let Some(node) = names::node_of_lsp(name) {
                    if ids.get("ls").map(String::as_str) == Some(ctx.config.node_switch.as_str())
                        && !node_exists(node)
                    {
                        out.nodes.insert(node.to_string());
                    }
                }
            }
        }
    }
    for (_, s) in ctx.ips.snapshot() {
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
pub async fn run(ctx: &Ctx, pods: &Queue, nodes: &Queue) -> Result<Orphans, Error> {
    let found = find(ctx).await?;
    if !found.pods.is_empty() || !found.nodes.is_empty() {
        info!(
            pods = found.pods.len(),
            nodes = found.nodes.len(),
            "gc: cleaning up records without owners"
        );
    }
    for p in &found.pods {
        pods.add(p.clone());
    }
    for n in &found.nodes {
        nodes.add(n.clone());
    }
    Ok(found)
}
