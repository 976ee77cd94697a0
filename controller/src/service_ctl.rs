//! Service reconciler: keeps a Service's VIPs on its VPC's load balancers in step with the
//! Service and its EndpointSlices (see [`crate::service_lb`] for what it writes). One key per
//! Service; EndpointSlice changes queue their Service. A reconcile writes, in one batched
//! transaction, only the VIPs that differ — one mutate per load balancer with the changed keys
//! — and removes the Service's stale VIPs (ports gone, affinity switched, address changed);
//! a deleted Service's VIPs go unless another Service now claims the address.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use kube_ovn_nb::objects::{self, VpcLoadBalancers};
use kube_ovn_nb::{Plan, PlanError};
use serde_json::json;
use tracing::{info, warn};

use crate::context::{Ctx, Error};
use crate::pod_info::PodInfo;
use crate::service_lb::{self, Desired, PodLookup, Proto, HEALTH_CHECK_SUBNET_KEY};
use crate::slice_index;
use kube_ovn_common::annotations as ann;
use kube_ovn_common::crd::Vip;
use kube_ovn_runtime::events::EventType;
use kube_ovn_runtime::trigger::{hash_json, hash_of};
use kube_ovn_runtime::Outcome;

/// The Service queue's kind name.
pub const KIND: &str = "service";

/// What of a Service the reconciler reads: spec, the annotations that steer it, the ingress
/// IPs, deletion.
pub fn signature(s: &Service) -> u64 {
    let a = s.annotations();
    let steer: Vec<Option<&String>> = [
        ann::VPC,
        ann::LOGICAL_ROUTER,
        ann::LOGICAL_SWITCH,
        ann::SWITCH_LB_VIP,
        ann::ROUTER_LB_VIP,
        ann::SERVICE_HEALTH_CHECK,
        ann::SERVICE_EXTERNAL_IP_FROM_SUBNET,
    ]
    .iter()
    .map(|k| a.get(*k))
    .collect();
    let ingress = s.status.as_ref().and_then(|st| st.load_balancer.as_ref());
    hash_of(&(
        hash_json(&s.spec),
        hash_json(&steer),
        hash_json(&ingress),
        s.metadata.deletion_timestamp.is_some(),
    ))
}

/// What of an EndpointSlice its Service's VIPs depend on: endpoints, ports and the Service it
/// names (upstream skips the rest, e.g. the last-change-trigger-time annotation).
pub fn slice_signature(s: &EndpointSlice) -> u64 {
    hash_json(&(&s.endpoints, &s.ports, slice_index::service_of(s)))
}

/// The Service key a slice queues.
pub fn slice_service(s: &EndpointSlice) -> Vec<String> {
    match (s.namespace(), slice_index::service_of(s)) {
        (Some(ns), Some(svc)) => vec![format!("{ns}/{svc}")],
        _ => Vec::new(),
    }
}

/// What each Service last put on the load balancers, and which Services claim each address:
/// a deleted Service's VIPs are found here without scanning maps of 50,000 VIPs, and an
/// address reused by a new Service is not taken from it.
#[derive(Default)]
pub struct Claims {
    inner: Mutex<ClaimMaps>,
}

#[derive(Default)]
struct ClaimMaps {
    by_service: HashMap<String, Claim>,
    by_ip: HashMap<String, BTreeSet<String>>,
}

/// One Service's VIPs: (load balancer, VIP) pairs and the addresses it claims.
#[derive(Debug, Clone, Default)]
struct Claim {
    vips: BTreeSet<(String, String)>,
    ips: Vec<String>,
}

impl Claims {
    fn lock(&self) -> std::sync::MutexGuard<'_, ClaimMaps> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, key: &str, claim: Claim) {
        let mut m = self.lock();
        Self::drop_ips(&mut m, key);
        for ip in &claim.ips {
            m.by_ip
                .entry(ip.clone())
                .or_default()
                .insert(key.to_string());
        }
        m.by_service.insert(key.to_string(), claim);
    }

    fn drop_ips(m: &mut ClaimMaps, key: &str) {
        if let Some(old) = m.by_service.get(key) {
            for ip in old.ips.clone() {
                if let Some(set) = m.by_ip.get_mut(&ip) {
                    set.remove(key);
                    if set.is_empty() {
                        m.by_ip.remove(&ip);
                    }
                }
            }
        }
    }

    fn take(&self, key: &str) -> Option<Claim> {
        let mut m = self.lock();
        Self::drop_ips(&mut m, key);
        m.by_service.remove(key)
    }

    fn get(&self, key: &str) -> Option<Claim> {
        self.lock().by_service.get(key).cloned()
    }

    /// The VIPs other Services than `key` hold on addresses in `ips`.
    fn others_on(&self, key: &str, ips: &[String]) -> BTreeSet<(String, String)> {
        let m = self.lock();
        ips.iter()
            .filter_map(|ip| m.by_ip.get(ip))
            .flatten()
            .filter(|k| k.as_str() != key)
            .filter_map(|k| m.by_service.get(k))
            .flat_map(|c| c.vips.iter().cloned())
            .collect()
    }

    /// Every VIP any Service holds.
    fn all_vips(&self) -> BTreeSet<(String, String)> {
        self.lock()
            .by_service
            .values()
            .flat_map(|c| c.vips.iter().cloned())
            .collect()
    }

    /// The Services other than `key` claiming one of `ips`.
    fn claimants(&self, key: &str, ips: &[String]) -> Vec<String> {
        let m = self.lock();
        ips.iter()
            .filter_map(|ip| m.by_ip.get(ip))
            .flatten()
            .filter(|k| k.as_str() != key)
            .cloned()
            .collect()
    }
}

struct StorePods<'a>(&'a Ctx);

impl PodLookup for StorePods<'_> {
    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<PodInfo>> {
        self.0
            .stores
            .pods
            .get(&ObjectRef::new(name).within(namespace))
    }

    fn pods_in(&self, namespace: &str) -> Vec<Arc<PodInfo>> {
        self.0
            .stores
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .collect()
    }
}

/// The load balancers of a VPC: the configured cluster ones for the default VPC, upstream's
/// `vpc-<name>-…` names for the others.
pub fn vpc_lbs(ctx: &Ctx, vpc: &str) -> VpcLoadBalancers {
    if vpc == ctx.config.cluster_router {
        crate::subnet_ctl::default_lbs(ctx)
    } else {
        VpcLoadBalancers::for_custom_vpc(vpc)
    }
}

/// Reconciles the Service `namespace/name`.
pub async fn reconcile(ctx: Arc<Ctx>, key: String) -> Result<Outcome, Error> {
    if !ctx.config.enable_lb {
        return Ok(Outcome::Done);
    }
    let Some((namespace, name)) = key.split_once('/') else {
        return Ok(Outcome::Done);
    };
    let svc = ctx
        .stores
        .services
        .get(&ObjectRef::new(name).within(namespace));
    let Some(svc) = svc.filter(|s| s.metadata.deletion_timestamp.is_none()) else {
        return remove_service(&ctx, &key, true).await;
    };
    let prefer_local = ctx.config.enable_ovn_lb_prefer_local;
    let hosts = service_lb::vip_hosts(&svc, prefer_local);
    let mut claimed = service_lb::claimed_ips(&svc);
    for h in &hosts.hosts {
        if !claimed.contains(h) {
            claimed.push(h.clone());
        }
    }
    if hosts.hosts.is_empty() {
        // Headless or ExternalName: nothing of its own on the load balancers.
        return remove_service(&ctx, &key, false).await;
    }
    let slices = ctx.stores.slices_of(namespace, name);
    let pods = StorePods(&ctx);
    let (vpc, subnet) = service_lb::vpc_and_subnet(
        &svc,
        &slices,
        &pods,
        &ctx.config.cluster_router,
        &ctx.config.default_ls,
    );
    let lbs = vpc_lbs(&ctx, &vpc);
    if !lbs_exist(&ctx, &lbs) {
        let msg = format!("the load balancers of VPC {vpc} do not exist (yet)");
        ctx.event(
            &svc.object_ref(&()),
            EventType::Warning,
            "VpcLoadBalancerMissing",
            &msg,
        )
        .await;
        return Ok(Outcome::After(Duration::from_secs(10)));
    }
    let check = if hosts.health_check {
        match check_vip(&ctx, &subnet).await? {
            Some(v) => Some(v),
            None => return Ok(Outcome::After(Duration::from_secs(1))),
        }
    } else {
        None
    };
    let check_ip = |v6: bool| {
        check.as_ref().and_then(|c| {
            let st = c.status.as_ref()?;
            let ip = if v6 { &st.v6ip } else { &st.v4ip };
            (!ip.is_empty()).then(|| ip.clone())
        })
    };
    let want = service_lb::desired(&svc, &slices, &pods, &hosts, &check_ip);
    let previous = ctx.lb_claims.get(&key).unwrap_or_default();
    let mut scope: Vec<String> = claimed.clone();
    for ip in &previous.ips {
        if !scope.contains(ip) {
            scope.push(ip.clone());
        }
    }
    let others = ctx.lb_claims.others_on(&key, &scope);
    let externals: BTreeMap<String, String> =
        [(HEALTH_CHECK_SUBNET_KEY.to_string(), subnet.clone())].into();
    // Claimed before the write, so a concurrent GC never takes a VIP being written.
    let session = want.session;
    let vips: BTreeSet<(String, String)> = want
        .vips
        .iter()
        .filter(|v| !v.backends.is_empty())
        .map(|v| (v.proto.lb(&lbs, session).to_string(), v.vip.clone()))
        .collect();
    ctx.lb_claims.record(&key, Claim { vips, ips: claimed });
    ctx.apply(&format!("service {key}"), |plan| {
        plan_service(plan, &lbs, &want, &scope, &others, &externals)
    })
    .await?;
    if let Some(t) = service_lb::unsupported_affinity_timeout(&svc) {
        let msg = format!(
            "sessionAffinityConfig.clientIP.timeoutSeconds {t} is not applied: the VPC's session load balancers share one affinity_timeout of {}",
            service_lb::SESSION_AFFINITY_TIMEOUT
        );
        ctx.event(
            &svc.object_ref(&()),
            EventType::Warning,
            "AffinityTimeoutIgnored",
            &msg,
        )
        .await;
    }
    if svc.annotations().get(ann::VPC) != Some(&vpc) {
        let patched = Api::<Service>::namespaced(ctx.client.clone(), namespace)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {ann::VPC: vpc}}})),
            )
            .await?;
        // Its own write: the watch event it causes needs no second reconcile.
        ctx.service_seen.record(&key, signature(&patched));
    }
    Ok(Outcome::Done)
}

/// Whether every load balancer of the VPC is in the NB.
fn lbs_exist(ctx: &Ctx, lbs: &VpcLoadBalancers) -> bool {
    let cache = ctx.nb.cache();
    let Some(t) = cache.table("Load_Balancer") else {
        return false;
    };
    lbs.all()
        .iter()
        .all(|(n, _, _)| t.by_name(n).next().is_some())
}

/// The health-check Vip of `subnet` (named after it), created when missing as upstream does;
/// `None` until it has an address.
async fn check_vip(ctx: &Ctx, subnet: &str) -> Result<Option<Arc<Vip>>, Error> {
    if let Some(v) = ctx.stores.vips.get(&ObjectRef::new(subnet)) {
        let ready = v
            .status
            .as_ref()
            .is_some_and(|s| !s.v4ip.is_empty() || !s.v6ip.is_empty());
        return Ok(ready.then_some(v));
    }
    let vip: Vip = serde_json::from_value(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Vip",
        "metadata": {"name": subnet},
        "spec": {"subnet": subnet},
    }))
    .map_err(|e| Error::Other(e.to_string()))?;
    match Api::<Vip>::all(ctx.client.clone())
        .create(&PostParams::default(), &vip)
        .await
    {
        Ok(_) => info!(subnet, "created the health-check vip"),
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(None)
}

/// The plan of one Service: each VIP with backends on the load balancer of its protocol and
/// affinity (and off the other affinity's), each VIP without backends off both, and VIPs on
/// the Service's addresses (`scope`) that it no longer has removed — unless `others` (VIPs of
/// other Services on the same addresses) hold them.
fn plan_service(
    plan: &mut Plan<'_>,
    lbs: &VpcLoadBalancers,
    want: &Desired,
    scope: &[String],
    others: &BTreeSet<(String, String)>,
    externals: &BTreeMap<String, String>,
) -> Result<(), PlanError> {
    let mut set: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    let mut remove: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut keep: BTreeSet<(&str, &str)> = BTreeSet::new();
    for v in &want.vips {
        let lb = v.proto.lb(lbs, want.session);
        let other = v.proto.lb(lbs, !want.session);
        if v.backends.is_empty() {
            remove.entry(lb).or_default().push(v.vip.clone());
        } else {
            set.entry(lb).or_default().push((v.vip.clone(), v.value()));
            keep.insert((lb, v.vip.as_str()));
        }
        if !others.contains(&(other.to_string(), v.vip.clone())) {
            remove.entry(other).or_default().push(v.vip.clone());
        }
    }
    for (lb, _, _) in lbs.all() {
        for ip in scope {
            for vip in objects::vips_of_host(plan, lb, ip) {
                let wanted = keep.contains(&(lb, vip.as_str()));
                let foreign = others.contains(&(lb.to_string(), vip.clone()));
                if !wanted && !foreign {
                    remove.entry(lb).or_default().push(vip);
                }
            }
        }
    }
    let lb_names: BTreeSet<&str> = set.keys().chain(remove.keys()).copied().collect();
    for lb in lb_names {
        let sets = set.remove(lb).unwrap_or_default();
        let mut removes = remove.remove(lb).unwrap_or_default();
        removes.sort();
        removes.dedup();
        removes.retain(|v| !sets.iter().any(|(s, _)| s == v));
        // Mappings and checks of removed VIPs go with them (upstream's LoadBalancerDeleteVip).
        objects::remove_vips(plan, lb, &removes)?;
        let checked = want.health_check || want.prefer_local;
        let mapped: Vec<_> = want
            .vips
            .iter()
            .filter(|v| !v.backends.is_empty() && !v.mappings.is_empty())
            .filter(|v| v.proto.lb(lbs, want.session) == lb)
            .collect();
        if checked && !mapped.is_empty() {
            // The VIP map as this plan leaves it: mappings other VIPs use are kept.
            let mut after = objects::lb_vips(plan, lb);
            for v in &removes {
                after.remove(v);
            }
            for (v, b) in &sets {
                after.insert(v.clone(), b.clone());
            }
            for v in mapped {
                objects::set_ip_port_mappings(plan, lb, &v.vip, &v.mappings, &after)?;
                if want.health_check {
                    objects::ensure_health_check(plan, lb, &v.vip, externals)?;
                }
            }
        }
        objects::set_vips(plan, lb, &sets, &[])?;
    }
    Ok(())
}

/// Removes what a gone (`gone`) or now address-less Service put on the load balancers,
/// leaving any VIP another Service claims. A gone Service without a record (deleted while the
/// controller was down or before its first reconcile) has the load balancers
/// garbage-collected instead.
async fn remove_service(ctx: &Ctx, key: &str, gone: bool) -> Result<Outcome, Error> {
    let Some(claim) = ctx.lb_claims.get(key) else {
        if gone {
            gc(ctx).await?;
        }
        return Ok(Outcome::Done);
    };
    let others = ctx.lb_claims.others_on(key, &claim.ips);
    let mut by_lb: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (lb, vip) in &claim.vips {
        if !others.contains(&(lb.clone(), vip.clone())) {
            by_lb.entry(lb.clone()).or_default().push(vip.clone());
        }
    }
    ctx.apply(&format!("delete service {key}"), |plan| {
        for (lb, vips) in &by_lb {
            objects::remove_vips(plan, lb, vips)?;
        }
        Ok(())
    })
    .await?;
    // A Service that reuses an address of this one gets its VIPs back if they were shared.
    for other in ctx.lb_claims.claimants(key, &claim.ips) {
        ctx.queues.add(KIND, other);
    }
    ctx.lb_claims.take(key);
    Ok(Outcome::Done)
}

/// Upstream's load-balancer GC for the default VPC: every VIP on its six load balancers that
/// no Service claims (address × port, on the load balancer of its protocol and affinity) is
/// removed with its mappings and health check. VIPs on other load balancers are left alone.
pub async fn gc(ctx: &Ctx) -> Result<usize, Error> {
    if !ctx.config.enable_lb {
        return Ok(0);
    }
    let lbs = vpc_lbs(ctx, &ctx.config.cluster_router);
    // What reconciles hold or are writing right now, then what every Service in the store claims.
    let mut claimed: BTreeSet<(String, String)> = ctx.lb_claims.all_vips();
    for svc in ctx.stores.services.state() {
        let session = service_lb::session_affinity(&svc);
        let mut ips = service_lb::claimed_ips(&svc);
        ips.extend(service_lb::vip_hosts(&svc, ctx.config.enable_ovn_lb_prefer_local).hosts);
        let ports = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default();
        for ip in &ips {
            for p in &ports {
                if let Some(proto) = Proto::parse(p.protocol.as_deref()) {
                    claimed.insert((
                        proto.lb(&lbs, session).to_string(),
                        service_lb::join_host_port(ip, p.port),
                    ));
                }
            }
        }
    }
    let n = ctx
        .apply("gc load balancer vips", |plan| {
            for (lb, _, _) in lbs.all() {
                let stale: Vec<String> = objects::lb_vips(plan, lb)
                    .into_keys()
                    .filter(|v| !claimed.contains(&(lb.to_string(), v.clone())))
                    .collect();
                objects::remove_vips(plan, lb, &stale)?;
            }
            Ok(())
        })
        .await?;
    if n > 0 {
        warn!(ops = n, "gc removed load balancer vips no service claims");
    }
    Ok(n)
}
