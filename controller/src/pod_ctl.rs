//! Pod reconciler: choose the subnet, allocate (or keep) addresses, write the pod's port and
//! port-group memberships, the IP CR and the annotations the daemon waits for; on delete,
//! release everything unless a StatefulSet keeps the address for its next pod.
//!
//! Write order makes a crash at any point recoverable: IPAM (memory) → NB port → IP CR →
//! annotations. Restore reads all three back, so a restarted controller hands the same
//! address to the same pod and never gives an address in use to another.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use kube_ovn_ipam::Request;
use kube_ovn_nb::objects::{self, PodPort};
use kube_ovn_nb::RowRef;
use serde_json::json;

use crate::context::{Ctx, Error};
use crate::ipcr::{self, IpRecord};
use crate::pod_info::PodInfo;
use crate::subnet_rules;
use kube_ovn_common::annotations as ann;
use kube_ovn_runtime::events::EventType;
use kube_ovn_runtime::Outcome;

/// The pod queue's kind name.
pub const KIND: &str = "pod";

/// Queue key of a pod.
pub fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Reconciles the pod `namespace/name`.
pub async fn reconcile(ctx: Arc<Ctx>, key: String) -> Result<Outcome, Error> {
    let (ns, name) = key.split_once('/').unwrap_or(("default", key.as_str()));
    let pod = ctx.stores.pods.get(&ObjectRef::new(name).within(ns));
    let live = pod
        .as_ref()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !p.finished());
    let Some(pod) = live.cloned() else {
        return cleanup(&ctx, ns, name, pod.as_deref()).await;
    };
    if pod.host_network() {
        return Ok(Outcome::Done);
    }
    let annotations = pod.annotations().clone();
    let ns_annotations: BTreeMap<String, String> = ctx
        .stores
        .namespaces
        .get(&ObjectRef::<Namespace>::new(ns))
        .map(|n| n.annotations().clone())
        .unwrap_or_default();
    let subnets = ctx.stores.subnets.state();
    let subnet_name = match subnet_rules::choose_subnet(
        &annotations,
        ns,
        &ns_annotations,
        &subnets,
        &ctx.config.default_ls,
    ) {
        Ok(s) => s,
        Err(why) => return Err(Error::Other(why)),
    };
    if subnet_name == ctx.config.node_switch {
        ctx.event(
            &pod.object_ref(&()),
            EventType::Warning,
            "AcquireAddressFailed",
            "pods cannot use the join subnet",
        )
        .await;
        return Ok(Outcome::Done);
    }
    let Some(subnet) = subnets
        .iter()
        .find(|s| s.name_any() == subnet_name)
        .cloned()
    else {
        ctx.event(
            &pod.object_ref(&()),
            EventType::Warning,
            "AcquireAddressFailed",
            &format!("subnet {subnet_name} not found"),
        )
        .await;
        return Ok(Outcome::After(Duration::from_secs(2)));
    };
    if ctx.ipam().subnet(&subnet_name).is_none() {
        return Ok(Outcome::After(Duration::from_secs(1)));
    }
    let port = objects::pod_lsp(name, ns, "ovn");
    let owner = key.clone();
    let mut req = Request {
        pod: owner.clone(),
        nic: port.clone(),
        check_conflict: true,
        ..Request::default()
    };
    if let Some(v) = annotations.get(ann::IP_ADDRESS).filter(|v| !v.is_empty()) {
        match ann::parse_ips(v) {
            Ok(ips) => req.ips = ips,
            Err(why) => {
                ctx.event(
                    &pod.object_ref(&()),
                    EventType::Warning,
                    "AcquireAddressFailed",
                    &why,
                )
                .await;
                return Ok(Outcome::Done);
            }
        }
    }
    req.mac = annotations
        .get(ann::MAC_ADDRESS)
        .filter(|m| !m.is_empty())
        .cloned();
    if let Some(vip) = annotations.get(ann::VIP).filter(|v| !v.is_empty()) {
        // The pod takes a reserved Vip's address and MAC as its own.
        match crate::vip_ctl::claim_for_pod(&ctx, &pod, vip, &port).await? {
            Some((ips, mac)) => {
                req.ips = ips;
                req.mac = Some(mac);
                req.check_conflict = false;
            }
            None => return Ok(Outcome::After(Duration::from_secs(2))),
        }
    }
    if let Some(pool) = annotations.get(ann::IP_POOL).filter(|p| !p.is_empty()) {
        // An IPPool name selects the pool; an address list is a set of candidates.
        match ann::parse_ips(pool) {
            Ok(ips) if req.ips.is_empty() => {
                let taken =
                    |ip: &IpAddr| ctx.ipam().owner_of(ip).is_some_and(|(_, o)| o.pod != owner);
                if let Some(free) = ips.iter().find(|ip| !taken(ip)) {
                    req.ips = vec![*free];
                }
            }
            Ok(_) => {}
            Err(_) => req.pool = Some(pool.clone()),
        }
    }
    if req.pool.is_none() && req.ips.is_empty() {
        req.pool =
            crate::ippool_ctl::pool_for_namespace(&ctx.stores.ippools.state(), &subnet_name, ns);
    }
    let allocated_before = annotations.get(ann::ALLOCATED).map(String::as_str) == Some("true");
    if allocated_before {
        let fits = {
            let ipam = ctx.ipam();
            let sub = ipam.subnet(&subnet_name);
            req.ips.iter().all(|ip| {
                sub.and_then(|s| s.cidr(kube_ovn_ipam::Family::of(ip)))
                    .is_some_and(|net| net.contains(ip))
            })
        };
        if fits {
            // Our own earlier result: keep it even if the address is reserved now.
            req.check_conflict = false;
        } else {
            // The subnet changed under the pod (CIDR moved, or the pod now belongs to
            // another subnet): give it a new address there.
            req.ips.clear();
        }
    }
    let allocated = ctx.ipam().allocate(&subnet_name, &req);
    let alloc = match allocated {
        Ok(a) => a,
        Err(e) => {
            ctx.event(
                &pod.object_ref(&()),
                EventType::Warning,
                "AcquireAddressFailed",
                &e.to_string(),
            )
            .await;
            return Err(e.into());
        }
    };
    {
        // A pod that moved to another subnet gives its old address back.
        let mut ipam = ctx.ipam();
        let stale: Vec<String> = ipam
            .subnets()
            .filter(|s| s.config().name != subnet_name && s.holds(&owner, &port))
            .map(|s| s.config().name.clone())
            .collect();
        for s in stale {
            ipam.release_nic(&s, &port);
            ctx.queues.add(crate::subnet_ctl::STATUS_KIND, s);
        }
    }
    let ips: Vec<IpAddr> = [alloc.v4, alloc.v6].into_iter().flatten().collect();
    let node = pod.node_name().to_string();
    let distributed = subnet.spec.gateway_type != "centralized";
    let port_security = annotations.get(ann::PORT_SECURITY).map(String::as_str) == Some("true");
    let vpc = if subnet.spec.vpc.is_empty() {
        ctx.config.cluster_router.clone()
    } else {
        subnet.spec.vpc.clone()
    };
    let in_default_vpc = vpc == ctx.config.cluster_router;
    let vips = crate::vip_ctl::pod_vips(&pod, &subnet_name, &|n| {
        ctx.stores.vips.get(&ObjectRef::new(n))
    });
    let groups = crate::sg::pod_groups(annotations.get(ann::SECURITY_GROUPS).map(String::as_str));
    let old_groups = port_groups_now(&ctx, &port)?;
    let wrote = ctx
        .apply(&format!("pod {key}"), |plan| {
            let port_ref = objects::pod_port(
                plan,
                &PodPort {
                    name: &port,
                    switch: &subnet_name,
                    pod_key: &owner,
                    mac: &alloc.mac,
                    ips: ips.clone(),
                    port_security,
                    vips: vips.clone(),
                    security_groups: groups.clone(),
                    custom_vpc: !in_default_vpc,
                },
            )?;
            if !node.is_empty() && in_default_vpc {
                let mut pgs = vec![objects::node_pg(&node)];
                if distributed {
                    pgs.push(objects::subnet_node_pg(&subnet_name, &node));
                }
                objects::port_memberships(plan, &port_ref, &pgs, Some(&node), &subnet_name)?;
            }
            Ok(())
        })
        .await?;
    if wrote > 0 {
        crate::sg_ctl::queue_groups(&ctx, &old_groups, &groups);
    }
    let sts = owner_kind(&pod) == Some("StatefulSet");
    ipcr::ensure(
        &ctx,
        &IpRecord {
            name: port.clone(),
            pod_name: name.to_string(),
            namespace: ns.to_string(),
            subnet: subnet_name.clone(),
            node_name: node.clone(),
            ips: ips.clone(),
            mac: alloc.mac.clone(),
            pod_type: if sts {
                "StatefulSet".into()
            } else {
                String::new()
            },
            owner_node: None,
        },
    )
    .await?;
    let mut wanted = vec![
        (ann::IP_ADDRESS, Some(ann::format_ips(&ips))),
        (ann::MAC_ADDRESS, Some(alloc.mac.clone())),
        (ann::CIDR, Some(subnet.spec.cidr_block.clone())),
        (ann::GATEWAY, Some(subnet.spec.gateway.clone())),
        (ann::LOGICAL_SWITCH, Some(subnet_name.clone())),
        (ann::LOGICAL_ROUTER, Some(vpc)),
        (ann::ALLOCATED, Some("true".into())),
    ];
    if !annotations.contains_key(ann::POD_NIC_TYPE) {
        wanted.push((ann::POD_NIC_TYPE, Some(ctx.config.pod_nic_type.clone())));
    }
    if !node.is_empty() {
        wanted.push((ann::ROUTED, Some("true".into())));
    }
    let changes = ann::diff(&annotations, &wanted);
    if !changes.is_empty() {
        // A new or changed allocation: the subnet's counters are due.
        ctx.queues
            .add(crate::subnet_ctl::STATUS_KIND, subnet_name.clone());
        let patched = Api::<PodInfo>::namespaced(ctx.client.clone(), ns)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": changes}})),
            )
            .await?;
        // The watch brings this version back; it needs no second reconcile.
        ctx.pod_seen.record(&key, patched.signature());
    }
    Ok(Outcome::Done)
}

fn owner_kind(pod: &PodInfo) -> Option<&str> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) || o.kind == "StatefulSet")
        .map(|o| o.kind.as_str())
}

/// Whether a StatefulSet will bring this pod back under the same name (so its address stays).
async fn statefulset_keeps(ctx: &Ctx, ns: &str, name: &str, pod: Option<&PodInfo>) -> bool {
    let Some(pod) = pod else { return false };
    let Some(owner) = pod.metadata.owner_references.as_ref().and_then(|o| {
        o.iter()
            .find(|o| o.kind == "StatefulSet" && o.api_version.starts_with("apps/"))
    }) else {
        return false;
    };
    let Some(ordinal) = name
        .strip_prefix(&format!("{}-", owner.name))
        .and_then(|o| o.parse::<i32>().ok())
    else {
        return false;
    };
    let api: Api<k8s_openapi::api::apps::v1::StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    match api.get_opt(&owner.name).await {
        Ok(Some(sts)) => {
            let start = sts
                .spec
                .as_ref()
                .and_then(|s| s.ordinals.as_ref())
                .and_then(|o| o.start)
                .unwrap_or(0);
            let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            sts.metadata.deletion_timestamp.is_none()
                && sts.metadata.uid.as_deref() == Some(owner.uid.as_str())
                && ordinal < start + replicas
        }
        _ => false,
    }
}

/// The security groups port `port` is marked with in the NB now.
fn port_groups_now(ctx: &Ctx, port: &str) -> Result<Vec<String>, Error> {
    let cache = ctx.nb.cache();
    let plan = kube_ovn_nb::Plan::new(&cache, crate::context::NB_DB);
    Ok(objects::port_security_groups(&plan, port)?)
}

async fn cleanup(ctx: &Ctx, ns: &str, name: &str, pod: Option<&PodInfo>) -> Result<Outcome, Error> {
    let owner = key(ns, name);
    let ports = kube_ovn_nb::ports::pod_port_names(&ctx.nb.cache(), &owner)?;
    if statefulset_keeps(ctx, ns, name, pod).await {
        // The next pod of this ordinal takes the same port and address: only leave the
        // node's port groups.
        ctx.apply(&format!("keep sts pod {owner}"), |plan| {
            for p in &ports {
                if let Some(r @ RowRef::Existing(_)) = plan.lookup("Logical_Switch_Port", p) {
                    objects::port_memberships(plan, &r, &[], None, "")?;
                }
            }
            Ok(())
        })
        .await?;
        return Ok(Outcome::Done);
    }
    let mut old_groups = Vec::new();
    for p in &ports {
        old_groups.extend(port_groups_now(ctx, p)?);
    }
    ctx.apply(&format!("delete pod {owner}"), |plan| {
        for p in &ports {
            objects::delete_port(plan, p)?;
        }
        Ok(())
    })
    .await?;
    crate::sg_ctl::queue_groups(ctx, &old_groups, &[]);
    ipcr::delete(ctx, &objects::pod_lsp(name, ns, "ovn")).await?;
    let held: Vec<String> = {
        let mut ipam = ctx.ipam();
        let held = ipam
            .subnets()
            .filter(|s| s.has_pod(&owner))
            .map(|s| s.config().name.clone())
            .collect();
        ipam.release_pod(&owner);
        held
    };
    for s in held {
        ctx.queues.add(crate::subnet_ctl::STATUS_KIND, s);
    }
    crate::vip_ctl::release_for_pod(ctx, &objects::pod_lsp(name, ns, "ovn")).await?;
    Ok(Outcome::Done)
}
