//! Pod reconciler: choose the subnet, allocate (or keep) addresses, write the pod's port and
//! port-group memberships, the IP CR and the annotations the daemon waits for; on delete,
//! release everything unless a StatefulSet keeps the address for its next pod.
//!
//! Write order makes a crash at any point recoverable: IPAM (memory) → NB port → IP CR →
//! annotations. Restore reads all three back, so a restarted controller hands the same
//! address to the same pod and never gives an address in use to another.

use std::collections::{BTreeMap, BTreeSet};
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
use tracing::info;

use crate::attach;
use crate::context::{Ctx, Error};
use crate::ipcr::{self, IpRecord};
use crate::pod_info::PodInfo;
use crate::subnet_rules;
use kube_ovn_common::annotations::{self as ann, Field};
use kube_ovn_common::attachment::NadKind;
use kube_ovn_runtime::events::EventType;
use kube_ovn_runtime::Outcome;

/// The pod queue's kind name.
pub const KIND: &str = "pod";

/// Queue key of a pod.
pub fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Annotation changes a NIC wants (`None` removes the key).
type Wanted = Vec<(String, Option<String>)>;

/// Reconciles the pod `namespace/name`: its default NIC (unless an attachment replaces the
/// default network) and every Multus attachment kube-ovn serves, then one annotation patch.
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
    // Only a pod with attachments needs the subnet list (upstream skips it likewise).
    let subnets = if attach::has_selections(&annotations) {
        ctx.stores.subnets.state()
    } else {
        Vec::new()
    };
    let nads = &ctx.stores.nads;
    let nad_config = |nad_ns: &str, nad: &str| {
        nads.get(&ObjectRef::new(nad).within(nad_ns))
            .map(|n| n.spec.config.clone())
    };
    let nets = match attach::resolve(ns, &annotations, &nad_config, &subnets) {
        Ok(nets) => nets,
        Err(why) => {
            ctx.event(
                &pod.object_ref(&()),
                EventType::Warning,
                "PodNetworkUpdateFailed",
                &format!("stage=getPodKubeovnNets error={why}"),
            )
            .await;
            return match why {
                // Nothing changes until the pod (or the definition) is edited, which queues it.
                attach::ResolveError::Invalid(_) => Ok(Outcome::Done),
                _ => Err(Error::Other(why.to_string())),
            };
        }
    };
    let mut wanted = unplug_stale(&ctx, &pod, &key, &nets).await?;
    if !attach::has_other_default_network(&annotations) {
        match primary(&ctx, &pod, &key).await? {
            Ok(w) => wanted.extend(w),
            Err(outcome) => return Ok(outcome),
        }
    }
    for net in &nets {
        match attachment(&ctx, &pod, &key, net).await? {
            Ok(w) => wanted.extend(w),
            Err(outcome) => return Ok(outcome),
        }
    }
    let wanted: Vec<(&str, Option<String>)> = wanted
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let changes = ann::diff(&annotations, &wanted);
    if !changes.is_empty() {
        let patched = Api::<PodInfo>::namespaced(ctx.client.clone(), ns)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": changes}})),
            )
            .await;
        match patched {
            // The watch brings this version back; it needs no second reconcile.
            Ok(patched) => ctx.pod_seen.record(&key, patched.signature()),
            // Deleted since the cache showed it: its delete event queues the cleanup, so
            // there is nothing to retry (a churn otherwise logs a warning per such pod).
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Outcome::Done)
}

/// Upstream's hot-unplug: the ports (with their IP CRs, addresses and annotations) of
/// attachments the pod no longer lists, and its default port once an attachment replaced the
/// default network. Returns the annotation removals.
async fn unplug_stale(
    ctx: &Ctx,
    pod: &PodInfo,
    owner: &str,
    nets: &[attach::AttachNet],
) -> Result<Wanted, Error> {
    let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let ports = kube_ovn_nb::ports::pod_port_names(&ctx.nb.cache(), owner)?;
    let wants_default = !attach::has_other_default_network(pod.annotations());
    let stale = attach::stale_providers(&name, &ns, &ports, nets, wants_default);
    let mut wanted = Wanted::new();
    for provider in stale {
        let port = objects::pod_lsp(&name, &ns, &provider);
        info!(pod = owner, port, "attachment removed: releasing its port");
        ctx.apply(&format!("unplug {port}"), |plan| {
            objects::delete_port(plan, &port)
        })
        .await?;
        ipcr::delete(ctx, &port).await?;
        let held: Vec<String> = {
            let mut ipam = ctx.ipam();
            let held: Vec<String> = ipam
                .subnets()
                .filter(|s| s.holds(owner, &port))
                .map(|s| s.config().name.clone())
                .collect();
            for s in &held {
                ipam.release_nic(s, &port);
            }
            held
        };
        for s in held {
            ctx.queues.add(crate::subnet_ctl::STATUS_KIND, s);
        }
        if !kube_ovn_common::names::is_default_provider(&provider) {
            // Upstream keeps the default NIC's annotations when its port goes.
            wanted.extend(
                attach::provider_keys(pod.annotations(), &provider)
                    .into_iter()
                    .map(|k| (k, None)),
            );
        }
    }
    Ok(wanted)
}

/// The default (`ovn`) NIC: its subnet, address, port, IP CR; returns its annotations, or the
/// outcome to stop with when it cannot be served yet.
async fn primary(ctx: &Ctx, pod: &PodInfo, key: &str) -> Result<Result<Wanted, Outcome>, Error> {
    let (ns, name) = key.split_once('/').unwrap_or(("default", key));
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
        &ctx.stores.vpcs.state(),
        &ctx.config.default_ls,
        &ctx.config.cluster_router,
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
        return Ok(Err(Outcome::Done));
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
        return Ok(Err(Outcome::After(Duration::from_secs(2))));
    };
    if ctx.ipam().subnet(&subnet_name).is_none() {
        return Ok(Err(Outcome::After(Duration::from_secs(1))));
    }
    let port = objects::pod_lsp(name, ns, "ovn");
    let owner = key.to_string();
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
                return Ok(Err(Outcome::Done));
            }
        }
    }
    req.mac = annotations
        .get(ann::MAC_ADDRESS)
        .filter(|m| !m.is_empty())
        .cloned();
    if let Some(vip) = annotations.get(ann::VIP).filter(|v| !v.is_empty()) {
        // The pod takes a reserved Vip's address and MAC as its own.
        match crate::vip_ctl::claim_for_pod(ctx, pod, vip, &port).await? {
            Some((ips, mac)) => {
                req.ips = ips;
                req.mac = Some(mac);
                req.check_conflict = false;
            }
            None => return Ok(Err(Outcome::After(Duration::from_secs(2)))),
        }
    }
    if let Some(pool) = annotations.get(ann::IP_POOL).filter(|p| !p.is_empty()) {
        apply_pool(ctx, &mut req, pool);
    }
    if req.pool.is_none() && req.ips.is_empty() {
        req.pool =
            crate::ippool_ctl::pool_for_namespace(&ctx.stores.ippools.state(), &subnet_name, ns);
    }
    let allocated_before = annotations.get(ann::ALLOCATED).map(String::as_str) == Some("true");
    let alloc = match allocate(ctx, pod, &subnet_name, &mut req, allocated_before).await {
        Ok(a) => a,
        Err(e) => return Err(e),
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
    let port_security = annotations.get(ann::PORT_SECURITY).map(String::as_str) == Some("true");
    let vpc = vpc_of(ctx, &subnet);
    let vips = crate::vip_ctl::pod_vips(pod, &subnet_name, &|n| {
        ctx.stores.vips.get(&ObjectRef::new(n))
    });
    let groups = crate::sg::pod_groups(annotations.get(ann::SECURITY_GROUPS).map(String::as_str));
    let written = PortWrite {
        port: &port,
        subnet: &subnet,
        mac: &alloc.mac,
        ips: &ips,
        node: &node,
        port_security,
        vips,
        groups,
        vpc: &vpc,
    };
    // The NB port and the IP CR do not depend on each other: one waits on the NB while the
    // other waits on the API (a new pod's annotations, and its policies, follow both).
    let (port_written, cr) = tokio::join!(
        write_port(ctx, key, &written),
        ensure_ip_cr(ctx, pod, &port, &subnet_name, &ips, &alloc.mac)
    );
    port_written?;
    cr?;
    let mut wanted: Wanted = vec![
        (ann::IP_ADDRESS.into(), Some(ann::format_ips(&ips))),
        (ann::MAC_ADDRESS.into(), Some(alloc.mac.clone())),
        (ann::CIDR.into(), Some(subnet.spec.cidr_block.clone())),
        (ann::GATEWAY.into(), Some(subnet.spec.gateway.clone())),
        (ann::LOGICAL_SWITCH.into(), Some(subnet_name.clone())),
        // As upstream: not on a plain underlay pod, whose gateway is the physical one.
        (
            ann::LOGICAL_ROUTER.into(),
            (!crate::subnet_ctl::is_underlay(&subnet.spec) || subnet.spec.u2o_interconnection)
                .then_some(vpc),
        ),
        (ann::ALLOCATED.into(), Some("true".into())),
    ];
    if !subnet.spec.vlan.is_empty() {
        // Upstream reads the Vlan for these; without it the pod waits (its subnet does too).
        let Some(vlan) = ctx.stores.vlans.get(&ObjectRef::new(&subnet.spec.vlan)) else {
            return Ok(Err(Outcome::After(Duration::from_secs(2))));
        };
        wanted.push((ann::VLAN_ID.into(), Some(vlan.spec.id.to_string())));
        wanted.push((
            ann::PROVIDER_NETWORK.into(),
            Some(vlan.spec.provider.clone()),
        ));
    }
    if !annotations.contains_key(ann::POD_NIC_TYPE) {
        wanted.push((
            ann::POD_NIC_TYPE.into(),
            Some(ctx.config.pod_nic_type.clone()),
        ));
    }
    if !node.is_empty() {
        wanted.push((ann::ROUTED.into(), Some("true".into())));
    }
    queue_counters_if_changed(ctx, &annotations, &wanted, &subnet_name);
    Ok(Ok(wanted))
}

/// An attachment NIC: address from its subnet, a logical switch port when kube-ovn is its
/// plugin (`.ovn` provider), its IP CR; returns its annotations.
async fn attachment(
    ctx: &Ctx,
    pod: &PodInfo,
    key: &str,
    net: &attach::AttachNet,
) -> Result<Result<Wanted, Outcome>, Error> {
    let (ns, name) = key.split_once('/').unwrap_or(("default", key));
    let annotations = pod.annotations();
    let Some(subnet) = ctx.stores.subnets.get(&ObjectRef::new(&net.subnet)) else {
        return Ok(Err(Outcome::After(Duration::from_secs(2))));
    };
    if ctx.ipam().subnet(&net.subnet).is_none() {
        return Ok(Err(Outcome::After(Duration::from_secs(1))));
    }
    let port = objects::pod_lsp(name, ns, &net.provider);
    let mut req = Request {
        pod: key.to_string(),
        nic: port.clone(),
        check_conflict: true,
        mac: attach::requested_mac(annotations, net),
        ..Request::default()
    };
    match attach::requested_ips(annotations, net) {
        Ok(ips) => req.ips = ips,
        Err(why) => {
            ctx.event(
                &pod.object_ref(&()),
                EventType::Warning,
                "AcquireAddressFailed",
                &why,
            )
            .await;
            return Ok(Err(Outcome::Done));
        }
    }
    if let Some(pool) = annotations
        .get(ann::key(&net.provider, Field::IpPool).as_ref())
        .filter(|p| !p.is_empty())
    {
        apply_pool(ctx, &mut req, pool);
    }
    let allocated_before = annotations
        .get(ann::key(&net.provider, Field::Allocated).as_ref())
        .map(String::as_str)
        == Some("true");
    let alloc = allocate(ctx, pod, &net.subnet, &mut req, allocated_before).await?;
    let ips: Vec<IpAddr> = [alloc.v4, alloc.v6].into_iter().flatten().collect();
    let node = pod.node_name().to_string();
    let vpc = vpc_of(ctx, &subnet);
    let ovn = attach::is_ovn_subnet(&subnet);
    if net.kind == NadKind::Ovn {
        let flag = annotations.get(ann::key(&net.provider, Field::PortSecurity).as_ref());
        let groups = crate::sg::pod_groups(
            annotations
                .get(&format!("{}.kubernetes.io/security_groups", net.provider))
                .map(String::as_str),
        );
        write_port(
            ctx,
            key,
            &PortWrite {
                port: &port,
                subnet: &subnet,
                mac: &alloc.mac,
                ips: &ips,
                node: if ovn { &node } else { "" },
                port_security: flag.map(String::as_str) == Some("true"),
                vips: Vec::new(),
                groups,
                vpc: &vpc,
            },
        )
        .await?;
    }
    // An IPAM-only NIC has no MAC of its own (the delegating plugin picks it): none recorded.
    let mac = if ovn {
        alloc.mac.clone()
    } else {
        String::new()
    };
    ensure_ip_cr(ctx, pod, &port, &net.subnet, &ips, &mac).await?;
    let wanted = attach::nic_annotations(
        annotations,
        &attach::NicAllocation {
            net,
            subnet: &subnet,
            ips,
            mac: alloc.mac,
            vpc,
            node,
            pod_nic_type: ctx.config.pod_nic_type.clone(),
        },
    );
    queue_counters_if_changed(ctx, annotations, &wanted, &net.subnet);
    Ok(Ok(wanted))
}

/// Applies an `ip_pool` annotation to a request: an IPPool name selects the pool; an address
/// list is a set of candidates, the first not held by another pod taken.
fn apply_pool(ctx: &Ctx, req: &mut Request, pool: &str) {
    match ann::parse_ips(pool) {
        Ok(ips) if req.ips.is_empty() => {
            let taken = |ip: &IpAddr| {
                ctx.ipam()
                    .owner_of(ip)
                    .is_some_and(|(_, o)| o.pod != req.pod)
            };
            if let Some(free) = ips.iter().find(|ip| !taken(ip)) {
                req.ips = vec![*free];
            }
        }
        Ok(_) => {}
        Err(_) => req.pool = Some(pool.to_string()),
    }
}

/// Allocates in `subnet`: an earlier allocation of ours is kept even if its address is
/// reserved now, and one that no longer fits the subnet's CIDRs is replaced.
async fn allocate(
    ctx: &Ctx,
    pod: &PodInfo,
    subnet: &str,
    req: &mut Request,
    allocated_before: bool,
) -> Result<kube_ovn_ipam::Allocation, Error> {
    if allocated_before {
        let fits = {
            let ipam = ctx.ipam();
            let sub = ipam.subnet(subnet);
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
    let allocated = ctx.ipam().allocate(subnet, req);
    match allocated {
        Ok(a) => Ok(a),
        Err(e) => {
            ctx.event(
                &pod.object_ref(&()),
                EventType::Warning,
                "AcquireAddressFailed",
                &e.to_string(),
            )
            .await;
            Err(e.into())
        }
    }
}

/// The VPC router a subnet is on (the default VPC's when it names none).
fn vpc_of(ctx: &Ctx, subnet: &kube_ovn_common::crd::Subnet) -> String {
    if subnet.spec.vpc.is_empty() {
        ctx.config.cluster_router.clone()
    } else {
        subnet.spec.vpc.clone()
    }
}

/// A NIC's logical switch port as [`write_port`] states it.
struct PortWrite<'a> {
    port: &'a str,
    subnet: &'a kube_ovn_common::crd::Subnet,
    mac: &'a str,
    ips: &'a [IpAddr],
    /// "" keeps the port out of the routing port groups.
    node: &'a str,
    port_security: bool,
    vips: Vec<String>,
    groups: Vec<String>,
    vpc: &'a str,
}

/// States a NIC's port and, once the pod is bound in the default VPC, its routing port groups
/// (the node's, and the subnet-on-node one of a distributed subnet).
async fn write_port(ctx: &Ctx, key: &str, w: &PortWrite<'_>) -> Result<(), Error> {
    let subnet_name = w.subnet.name_any();
    let distributed = w.subnet.spec.gateway_type != "centralized";
    let in_default_vpc = w.vpc == ctx.config.cluster_router;
    let old_groups = port_groups_now(ctx, w.port)?;
    let u2o_group = (!w.node.is_empty()
        && in_default_vpc
        && crate::u2o::active(&w.subnet.spec)
        && crate::u2o::without_lb(&ctx.config, &w.subnet.spec))
    .then(|| objects::subnet_node_pg(&subnet_name, w.node));
    if let Some(pg) = &u2o_group {
        let cache = ctx.nb.cache();
        if kube_ovn_nb::Plan::new(&cache, crate::context::NB_DB)
            .lookup("Port_Group", pg)
            .is_none()
        {
            // The subnet's reconcile makes it; the pod joins it then (a retry).
            return Err(Error::Other(format!(
                "port group {pg} of u2o subnet {subnet_name} not there yet"
            )));
        }
    }
    let wrote = ctx
        .apply(&format!("pod {key} port {}", w.port), |plan| {
            let port_ref = objects::pod_port(
                plan,
                &PodPort {
                    name: w.port,
                    switch: &subnet_name,
                    pod_key: key,
                    mac: w.mac,
                    ips: w.ips.to_vec(),
                    port_security: w.port_security,
                    vips: w.vips.clone(),
                    security_groups: w.groups.clone(),
                    custom_vpc: !in_default_vpc,
                },
            )?;
            let underlay = crate::subnet_ctl::is_underlay(&w.subnet.spec);
            // A u2o subnet without load balancers: the pod's Service port group on its node.
            if let Some(pg) = &u2o_group {
                let pgs = std::slice::from_ref(pg);
                objects::port_memberships(plan, &port_ref, pgs, Some(w.node), &subnet_name)?;
            }
            // An underlay subnet's pods are routed by the physical gateway: no routing groups.
            if !w.node.is_empty() && in_default_vpc && !underlay {
                let mut pgs = vec![objects::node_pg(w.node)];
                if distributed {
                    pgs.push(objects::subnet_node_pg(&subnet_name, w.node));
                }
                objects::port_memberships(plan, &port_ref, &pgs, Some(w.node), &subnet_name)?;
            }
            Ok(())
        })
        .await?;
    if wrote > 0 {
        crate::sg_ctl::queue_groups(ctx, &old_groups, &w.groups);
    }
    Ok(())
}

/// The NIC's IP CR (named like its port).
async fn ensure_ip_cr(
    ctx: &Ctx,
    pod: &PodInfo,
    port: &str,
    subnet: &str,
    ips: &[IpAddr],
    mac: &str,
) -> Result<(), Error> {
    let sts = owner_kind(pod) == Some("StatefulSet");
    ipcr::ensure(
        ctx,
        &IpRecord {
            name: port.to_string(),
            pod_name: pod.name_any(),
            namespace: pod.namespace().unwrap_or_default(),
            subnet: subnet.to_string(),
            node_name: pod.node_name().to_string(),
            ips: ips.to_vec(),
            mac: mac.to_string(),
            pod_type: if sts {
                "StatefulSet".into()
            } else {
                String::new()
            },
            owner: None,
        },
    )
    .await
}

/// A new or changed allocation: the subnet's counters are due.
fn queue_counters_if_changed(
    ctx: &Ctx,
    current: &BTreeMap<String, String>,
    wanted: &[(String, Option<String>)],
    subnet: &str,
) {
    if wanted.iter().any(|(k, v)| current.get(k) != v.as_ref()) {
        ctx.queues
            .add(crate::subnet_ctl::STATUS_KIND, subnet.to_string());
    }
}

fn owner_kind(pod: &PodInfo) -> Option<&str> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) || o.kind == "StatefulSet")
        .map(|o| o.kind.as_str())
}

/// Whether a StatefulSet will bring this pod back under the same name (so its addresses stay).
/// A failed read of the StatefulSet is an error (the cleanup is retried), never "no": releasing
/// a kept address is what cannot be undone.
async fn statefulset_keeps(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    pod: Option<&PodInfo>,
) -> Result<bool, Error> {
    // The owner (name, and uid when the pod is still known): from the pod, or — once the pod
    // left the cache before its reconcile ran (a delete that did not linger) — from its IP CRs,
    // which record `podType: StatefulSet`; the name is then the pod's less its ordinal.
    let owner: Option<(String, Option<String>)> = match pod {
        Some(pod) => pod
            .metadata
            .owner_references
            .as_ref()
            .and_then(|o| {
                o.iter()
                    .find(|o| o.kind == "StatefulSet" && o.api_version.starts_with("apps/"))
            })
            .map(|o| (o.name.clone(), Some(o.uid.clone()))),
        None => {
            let owner_key = key(ns, name);
            let nics: Vec<String> = {
                let ipam = ctx.ipam();
                ipam.subnets().flat_map(|s| s.nics_of(&owner_key)).collect()
            };
            let sts_pod = nics
                .iter()
                .filter_map(|nic| ctx.ips.get(nic))
                .any(|ip| ip.pod_type == "StatefulSet");
            name.rsplit_once('-')
                .filter(|_| sts_pod)
                .map(|(set, _)| (set.to_string(), None))
        }
    };
    let Some((set, uid)) = owner else {
        return Ok(false);
    };
    let Some(ordinal) = name
        .strip_prefix(&format!("{set}-"))
        .and_then(|o| o.parse::<i32>().ok())
    else {
        return Ok(false);
    };
    let api: Api<k8s_openapi::api::apps::v1::StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    Ok(match api.get_opt(&set).await? {
        Some(sts) => {
            let start = sts
                .spec
                .as_ref()
                .and_then(|s| s.ordinals.as_ref())
                .and_then(|o| o.start)
                .unwrap_or(0);
            let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            sts.metadata.deletion_timestamp.is_none()
                && uid.is_none_or(|uid| sts.metadata.uid.as_deref() == Some(uid.as_str()))
                && ordinal < start + replicas
        }
        None => false,
    })
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
    if statefulset_keeps(ctx, ns, name, pod).await? {
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
    // Every NIC's IP CR (named like its port): the default one, the attachments' ports, and
    // the IPAM-only attachments, which have no port but hold addresses.
    let mut records: BTreeSet<String> = ports.iter().cloned().collect();
    records.insert(objects::pod_lsp(name, ns, "ovn"));
    {
        let ipam = ctx.ipam();
        for s in ipam.subnets() {
            records.extend(s.nics_of(&owner));
        }
    }
    for r in &records {
        ipcr::delete(ctx, r).await?;
    }
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
