//! Node reconciler: a join address for the node's `ovn0`, its join port, node port group,
//! 30000 reroute policies, annotations and IP CR; all removed when the node goes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use kube_ovn_ipam::Request;
use kube_ovn_nb::objects::{self, DistributedSubnet, NodeJoin, NodeObjects};
use serde_json::json;

use crate::context::{Ctx, Error};
use crate::ipcr::{self, IpRecord};
use crate::subnet_rules;
use kube_ovn_common::annotations as ann;
use kube_ovn_common::net::{self, Family};
use kube_ovn_runtime::Outcome;

/// Owner key of a node's join allocation in IPAM.
pub fn owner(node: &str) -> String {
    format!("node/{node}")
}

/// The node queue's kind name.
pub const KIND: &str = "node";

/// What of a Node the node reconciler reads: annotations, labels, addresses, readiness,
/// deletion (heartbeats change none of them).
pub fn signature(n: &Node) -> u64 {
    let addresses = n.status.as_ref().and_then(|s| s.addresses.as_ref());
    kube_ovn_runtime::trigger::hash_json(&(
        &n.metadata.annotations,
        &n.metadata.labels,
        addresses,
        ready(n),
        n.metadata.deletion_timestamp.is_some(),
    ))
}

/// What of a Node centralized subnets naming it as a gateway read: its join address and
/// readiness.
pub fn gateway_signature(n: &Node) -> u64 {
    kube_ovn_runtime::trigger::hash_of(&(n.annotations().get(ann::IP_ADDRESS), ready(n)))
}

/// Whether the node's Ready condition is True.
pub fn ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Reconciles the Node `name`.
pub async fn reconcile(ctx: Arc<Ctx>, name: String) -> Result<Outcome, Error> {
    // u2o subnets list every node's address (their exclude sets): a node coming, going or
    // changing address re-states them (no write when nothing changed).
    for s in ctx.stores.subnets.state() {
        if crate::u2o::active(&s.spec) {
            ctx.queues.add(crate::subnet_ctl::KIND, s.name_any());
        }
    }
    let join = ctx.config.node_switch.clone();
    let router = ctx.config.cluster_router.clone();
    let Some(node) = ctx.stores.nodes.get(&ObjectRef::new(&name)) else {
        ctx.apply(&format!("delete node {name}"), |plan| {
            objects::delete_node(plan, &name, &router)?;
            Ok(())
        })
        .await?;
        ctx.ipam().release_pod(&owner(&name));
        ipcr::delete(&ctx, &objects::node_lsp(&name)).await?;
        return Ok(Outcome::Done);
    };
    let Some(join_subnet) = ctx.stores.subnets.get(&ObjectRef::new(&join)) else {
        return Ok(Outcome::After(Duration::from_secs(1)));
    };
    if ctx.ipam().subnet(&join).is_none() {
        return Ok(Outcome::After(Duration::from_secs(1)));
    }
    let a = node.annotations();
    let port = objects::node_lsp(&name);
    let mut req = Request {
        pod: owner(&name),
        nic: port.clone(),
        check_conflict: true,
        ..Request::default()
    };
    if a.get(ann::ALLOCATED).map(String::as_str) == Some("true") {
        req.ips = a
            .get(ann::IP_ADDRESS)
            .and_then(|v| ann::parse_ips(v).ok())
            .unwrap_or_default();
        req.mac = a.get(ann::MAC_ADDRESS).cloned();
        req.check_conflict = false;
    }
    let alloc = ctx.ipam().allocate(&join, &req)?;
    let join_ips: Vec<IpAddr> = [alloc.v4, alloc.v6].into_iter().flatten().collect();
    let node_ips: Vec<IpAddr> = kube_ovn_common::node::internal_ips(&node);
    let gateway = NodeJoin {
        node: name.clone(),
        join_ips: join_ips.clone(),
    };
    let distributed = distributed_subnets(&ctx);
    // Validated at start-up.
    let local_dns = ctx.config.node_local_dns_ips().unwrap_or_default();
    ctx.apply(&format!("node {name}"), |plan| {
        objects::node(
            plan,
            &NodeObjects {
                node: &name,
                join_switch: &join,
                router: &router,
                mac: &alloc.mac,
                join_ips: join_ips.clone(),
                node_ips: node_ips.clone(),
                local_dns_ips: &local_dns,
            },
        )?;
        objects::node_gateways(plan, &router, &gateway, &distributed)
    })
    .await?;
    ipcr::ensure(
        &ctx,
        &IpRecord {
            name: port.clone(),
            pod_name: name.clone(),
            namespace: String::new(),
            subnet: join.clone(),
            node_name: name.clone(),
            ips: join_ips.clone(),
            mac: alloc.mac.clone(),
            pod_type: String::new(),
            owner: Some(crate::ipcr::IpOwner {
                api_version: "v1",
                kind: "Node",
                name: name.clone(),
                uid: node.uid().unwrap_or_default(),
            }),
        },
    )
    .await?;
    let wanted = [
        (ann::IP_ADDRESS, Some(ann::format_ips(&join_ips))),
        (ann::MAC_ADDRESS, Some(alloc.mac.clone())),
        (ann::CIDR, Some(join_subnet.spec.cidr_block.clone())),
        (ann::GATEWAY, Some(join_subnet.spec.gateway.clone())),
        (ann::LOGICAL_SWITCH, Some(join.clone())),
        (ann::ALLOCATED, Some("true".to_string())),
        (ann::PORT_NAME, Some(port.clone())),
    ];
    let changes = ann::diff(a, &wanted);
    if !changes.is_empty() {
        Api::<Node>::all(ctx.client.clone())
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": changes}})),
            )
            .await?;
    }
    Ok(Outcome::Done)
}

/// The live overlay subnets of the default VPC with a distributed gateway: each has a port
/// group and a 29000 policy per node, which the node's reconcile keeps (so a node joining or
/// changing its join address touches only its own rows, not every subnet).
fn distributed_subnets(ctx: &Ctx) -> Vec<DistributedSubnet> {
    let router = ctx.config.cluster_router.as_str();
    ctx.stores
        .subnets
        .state()
        .iter()
        .filter(|s| {
            let sp = &s.spec;
            s.metadata.deletion_timestamp.is_none()
                && s.name_any() != ctx.config.node_switch
                && !sp.cidr_block.is_empty()
                && sp.gateway_type != "centralized"
                && !crate::subnet_ctl::is_underlay(sp)
                && (sp.vpc.is_empty() || sp.vpc == router)
                && subnet_rules::is_ovn_provider(&sp.provider)
        })
        .map(|s| DistributedSubnet {
            name: s.name_any(),
            families: net::families(&s.spec.cidr_block)
                .into_iter()
                .map(Family::match_prefix)
                .collect(),
        })
        .collect()
}
