//! VpcNatGateway reconciler (seed 004, upstream's `vpc_nat_gateway.go` in its StatefulSet
//! form): while `ovn-vpc-nat-gw-config` enables the feature (`enable-vpc-nat-gw` not `false`),
//! a gateway gets the StatefulSet `vpc-nat-gw-<name>` in the controller's namespace (or
//! `spec.namespace`) with upstream's labels, pod annotations (the external network attachment,
//! `ovn.kubernetes.io/vpc_nat_gw`, the LAN subnet and `lanIp` as the pod's static address,
//! the routes of both NICs) and container env (`GATEWAY_V4/6`), our finalizer, its labels
//! (`ovn.kubernetes.io/subnet`, `ovn.kubernetes.io/vpc`, `ovn.kubernetes.io/qos`) and its
//! status (the spec fields it was built from, `lanIp`, the workload and its readiness). Once
//! its pod runs, the pod is annotated with the VPC's CIDRs
//! (`<provider>.kubernetes.io/vpc_cidrs`) and `ovn.kubernetes.io/vpc_nat_gw_init`.
//!
//! Upstream then execs `nat-gateway.sh` in the pod for every change; here the pod runs
//! `kube-ovn-vpc-nat-gw` (daemon/src/natgw), which reads those annotations and the gateway's
//! EIPs and NAT rules itself, so `vpc_nat_gw_init` marks the pod as handed its configuration.
//! The VPC's route to the gateway is the user's `staticRoutes` entry (`0.0.0.0/0` via
//! `lanIp`), as upstream's StatefulSet gateways; the replicated (Deployment, BFD) form, the
//! BGP speaker and QoS are not done. Everything but [`reconcile`] is pure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};
use tracing::info;

use crate::context::{Ctx, Error};
use crate::pod_info::PodInfo;
use kube_ovn_common::annotations::{self as ann, Field};
use kube_ovn_common::attachment::NETWORKS_ANNOTATION;
use kube_ovn_common::crd::vpc_nat_gateway::VpcNatGatewayStatus;
use kube_ovn_common::crd::{Subnet, Vpc, VpcNatGateway};
use kube_ovn_common::natgw;
use kube_ovn_runtime::events::EventType;
use kube_ovn_runtime::finalizer;
use kube_ovn_runtime::trigger::{hash_json, hash_of};
use kube_ovn_runtime::Outcome;

/// The gateway queue's kind name (one key per VpcNatGateway name).
pub const KIND: &str = "vpc-nat-gw";
/// The command the gateway container runs: kube-ovn-rs's agent (upstream: `sleep infinity`,
/// with `nat-gateway.sh` exec'd in by the controller).
pub const AGENT_COMMAND: &str = "/kube-ovn/kube-ovn-vpc-nat-gw";
/// The ServiceAccount the agent runs as (upstream's name for gateways that call the API),
/// shipped with its ClusterRole in the manifests.
pub const AGENT_ACCOUNT: &str = kube_ovn_common::manifests::rbac::NAT_GW_ACCOUNT;
/// The ConfigMap (controller namespace) with the gateway image (`image`).
pub const VPC_NAT_CONFIG: &str = crate::lb_svc::VPC_NAT_CONFIG;
/// How often a gateway whose pod is not ready yet is looked at again.
const NOT_READY_RETRY: Duration = Duration::from_secs(2);

/// What of a gateway the reconciler reads: spec, what it wrote (status, labels, finalizers),
/// deletion.
pub fn signature(g: &VpcNatGateway) -> u64 {
    hash_of(&(
        hash_json(&g.spec),
        hash_json(&g.status),
        hash_json(&g.metadata.labels),
        hash_json(&g.metadata.finalizers),
        g.metadata.deletion_timestamp.is_some(),
    ))
}

/// The gateway of a gateway pod (its `ovn.kubernetes.io/vpc_nat_gw` annotation).
pub fn gateway_of_pod(p: &PodInfo) -> Vec<String> {
    match (
        p.labels().get(natgw::LABEL_GATEWAY).map(String::as_str),
        p.annotations().get(natgw::ANNOTATION_GATEWAY),
    ) {
        (Some("true"), Some(gw)) => vec![gw.clone()],
        _ => Vec::new(),
    }
}

/// What of a gateway pod the reconciler reads: annotations, phase, node, deletion.
pub fn pod_signature(p: &PodInfo) -> u64 {
    hash_of(&(
        hash_json(&p.metadata.annotations),
        hash_json(&p.status.phase),
        hash_json(&p.spec.node_name),
        p.metadata.deletion_timestamp.is_some(),
    ))
}

/// The gateways serving VPC `vpc` (a subnet of it or the VPC changed: their CIDRs move).
pub fn gateways_of_vpc(gws: &[Arc<VpcNatGateway>], vpc: &str) -> Vec<String> {
    gws.iter()
        .filter(|g| g.spec.vpc == vpc)
        .map(|g| g.name_any())
        .collect()
}

/// What of a Subnet or Vpc the gateways read: CIDR, provider, VPC, status subnets.
pub fn subnet_signature(s: &Subnet) -> u64 {
    hash_of(&(
        &s.spec.cidr_block,
        &s.spec.provider,
        &s.spec.vpc,
        &s.spec.gateway,
        s.metadata.deletion_timestamp.is_some(),
    ))
}

/// See [`subnet_signature`].
pub fn vpc_signature(v: &Vpc) -> u64 {
    hash_json(&v.status.as_ref().map(|s| &s.subnets))
}

/// Whether `ovn-vpc-nat-gw-config` enables gateways: it exists and `enable-vpc-nat-gw` is not
/// `false` (upstream's rule).
pub fn enabled(config: Option<&BTreeMap<String, String>>) -> bool {
    config.is_some_and(|d| d.get(natgw::ENABLE_KEY).map(String::as_str) != Some("false"))
}

/// Upstream's `GenNatGwSelectors`: `key: value` strings (others skipped).
pub fn node_selector(selector: &[String]) -> BTreeMap<String, String> {
    selector
        .iter()
        .filter_map(|s| {
            let parts: Vec<&str> = s.trim().split(':').collect();
            (parts.len() == 2).then(|| (parts[0].trim().to_string(), parts[1].trim().to_string()))
        })
        .collect()
}

/// The labels of the StatefulSet, its selector and its pods.
pub fn labels(gw: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".to_string(), natgw::workload_name(gw)),
        (natgw::LABEL_GATEWAY.to_string(), "true".to_string()),
    ])
}

/// The provider of the LAN subnet, which must be an OVN subnet (upstream's
/// `GetSubnetProvider`); an empty provider is `ovn`.
pub fn lan_provider(subnet: &Subnet) -> Result<String, String> {
    let p = subnet.spec.provider.as_str();
    if !crate::subnet_rules::is_ovn_provider(p) {
        return Err(format!("subnet {} is not an OVN subnet", subnet.name_any()));
    }
    Ok(if p.is_empty() { "ovn" } else { p }.to_string())
}

/// The external NetworkAttachmentDefinition `(namespace, name)`: the external subnet's provider
/// `<name>.<namespace>[.ovn]`, else `(<controller namespace>, <subnet>)` (upstream's
/// `getExternalSubnetNad`).
pub fn external_nad(external: &Subnet, controller_ns: &str) -> (String, String) {
    let parts: Vec<&str> = external.spec.provider.split('.').collect();
    match parts.as_slice() {
        [name, ns] | [name, ns, "ovn"] if !name.is_empty() && !ns.is_empty() => {
            (ns.to_string(), name.to_string())
        }
        _ => (controller_ns.to_string(), external.name_any()),
    }
}

fn split_v4_v6(list: &str) -> (String, String) {
    let mut v4 = String::new();
    let mut v6 = String::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let addr = item.split('/').next().unwrap_or(item);
        match addr.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(_)) if v4.is_empty() => v4 = item.to_string(),
            Ok(std::net::IpAddr::V6(_)) if v6.is_empty() => v6 = item.to_string(),
            _ => {}
        }
    }
    (v4, v6)
}

/// What the StatefulSet is built from.
pub struct Inputs<'a> {
    /// The gateway.
    pub gw: &'a VpcNatGateway,
    /// Its namespace.
    pub namespace: &'a str,
    /// The LAN subnet.
    pub lan: &'a Subnet,
    /// The external subnet.
    pub external: &'a Subnet,
    /// The external NetworkAttachmentDefinition `(namespace, name)`.
    pub nad: (String, String),
    /// The gateway image.
    pub image: &'a str,
    /// The Service CIDRs (`--service-cluster-ip-range`).
    pub service_cidrs: &'a str,
    /// Every subnet (the VPC's others are routed through the LAN NIC).
    pub subnets: &'a [Arc<Subnet>],
}

/// `<provider>.kubernetes.io/routes` of both NICs as upstream's `generateNatGwRoutes`: the
/// Service CIDRs, the VPC's other OVN subnets and `spec.routes` via the LAN gateway; the
/// default routes via the external gateway.
pub fn route_annotations(i: &Inputs<'_>, lan_provider: &str) -> BTreeMap<String, String> {
    let (lan_v4, lan_v6) = split_v4_v6(&i.lan.spec.gateway);
    let (ext_v4, ext_v6) = split_v4_v6(&i.external.spec.gateway);
    let mut routes: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut add = |provider: &str, dst: &str, gw: &str| {
        if dst.is_empty() || gw.is_empty() {
            return;
        }
        let dst = if dst.contains('/') {
            dst.to_string()
        } else if dst.contains(':') {
            format!("{dst}/128")
        } else {
            format!("{dst}/32")
        };
        routes
            .entry(provider.to_string())
            .or_default()
            .push((dst, gw.to_string()));
    };
    let family_gw = |cidr: &str| {
        if cidr.contains(':') {
            lan_v6.clone()
        } else {
            lan_v4.clone()
        }
    };
    for c in i.service_cidrs.split(',').map(str::trim) {
        add(lan_provider, c, &family_gw(c));
    }
    for s in i.subnets {
        if s.spec.vpc != i.gw.spec.vpc
            || s.name_any() == i.gw.spec.subnet
            || !crate::subnet_rules::is_ovn_provider(&s.spec.provider)
            || !s.spec.vlan.is_empty()
        {
            continue;
        }
        let (v4, v6) = split_v4_v6(&s.spec.cidr_block);
        add(lan_provider, &v4, &lan_v4);
        add(lan_provider, &v6, &lan_v6);
    }
    for r in &i.gw.spec.routes {
        let hop = if r.next_hop_ip == "gateway" {
            family_gw(&r.cidr)
        } else {
            r.next_hop_ip.clone()
        };
        add(lan_provider, &r.cidr, &hop);
    }
    let ext_provider = i.external.spec.provider.as_str();
    add(ext_provider, "0.0.0.0/0", &ext_v4);
    add(ext_provider, "::/0", &ext_v6);
    routes
        .into_iter()
        .map(|(provider, mut list)| {
            list.sort();
            let v: Vec<Value> = list
                .iter()
                .map(|(dst, gw)| json!({"dst": dst, "gw": gw}))
                .collect();
            (natgw::routes_key(&provider), Value::Array(v).to_string())
        })
        .collect()
}

/// The pod template's annotations (upstream's `GenNatGwPodAnnotations` plus the routes): the
/// user's `spec.annotations`, then the Multus selection of the external network, the gateway
/// name, the LAN subnet and `lanIp` under the LAN provider, Multus' default network for a
/// `<nad>.<ns>.ovn` LAN provider, and the routes.
pub fn pod_annotations(i: &Inputs<'_>) -> Result<BTreeMap<String, String>, String> {
    let provider = lan_provider(i.lan)?;
    let mut a = i.gw.spec.annotations.clone();
    a.insert(
        NETWORKS_ANNOTATION.to_string(),
        format!("{}/{}", i.nad.0, i.nad.1),
    );
    a.insert(natgw::ANNOTATION_GATEWAY.to_string(), i.gw.name_any());
    a.insert(
        ann::key(&provider, Field::LogicalSwitch).into_owned(),
        i.gw.spec.subnet.clone(),
    );
    a.insert(
        ann::key(&provider, Field::IpAddress).into_owned(),
        i.gw.spec.lan_ip.clone(),
    );
    if provider != "ovn" {
        let parts: Vec<&str> = provider.split('.').collect();
        match parts.as_slice() {
            [name, ns, "ovn"] => {
                a.insert(
                    natgw::DEFAULT_NETWORK_ANNOTATION.to_string(),
                    format!("{ns}/{name}"),
                );
            }
            _ => {
                return Err(format!(
                    "name of the provider must have syntax 'name.namespace.ovn', got {provider}"
                ))
            }
        }
    }
    a.extend(route_annotations(i, &provider));
    if i.gw.spec.no_default_eip {
        let ext = i.external.spec.provider.as_str();
        a.insert(ann::key(ext, Field::Allocated).into_owned(), "true".into());
        a.remove(&natgw::routes_key(ext));
    }
    Ok(a)
}

/// The StatefulSet `vpc-nat-gw-<name>` as upstream's `genNatGwStatefulSet` makes it — one
/// replica, rolling updates, a privileged container `vpc-nat-gw` with `GATEWAY_V4/6`, no grace
/// period, the gateway's node selector, tolerations and affinity, owned by the gateway —
/// except that the container runs [`AGENT_COMMAND`] as [`AGENT_ACCOUNT`].
pub fn statefulset(i: &Inputs<'_>) -> Result<StatefulSet, String> {
    let gw = i.gw;
    let name = gw.name_any();
    let labels = labels(&name);
    let (ext_v4, ext_v6) = split_v4_v6(&i.external.spec.gateway);
    let owner = json!({"apiVersion": "kubeovn.io/v1", "kind": "VpcNatGateway", "name": name,
        "uid": gw.metadata.uid.clone().unwrap_or_default(),
        "controller": true, "blockOwnerDeletion": true});
    let v = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": natgw::workload_name(&name), "namespace": i.namespace,
                     "labels": labels, "ownerReferences": [owner]},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": pod_annotations(i)?},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "serviceAccountName": AGENT_ACCOUNT,
                    "automountServiceAccountToken": true,
                    "containers": [{
                        "name": natgw::CONTAINER,
                        "image": i.image,
                        "command": [AGENT_COMMAND],
                        "imagePullPolicy": "IfNotPresent",
                        "env": [{"name": "GATEWAY_V4", "value": ext_v4},
                                {"name": "GATEWAY_V6", "value": ext_v6},
                                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
                        "securityContext": {"privileged": true, "allowPrivilegeEscalation": true},
                    }],
                    "nodeSelector": node_selector(&gw.spec.selector),
                    "tolerations": gw.spec.tolerations,
                    "affinity": gw.spec.affinity,
                },
            },
            "updateStrategy": {"type": "RollingUpdate"},
        },
    });
    serde_json::from_value(v).map_err(|e| format!("statefulset of {name}: {e}"))
}

/// Whether the spec fields a StatefulSet is built from differ from what status recorded
/// (upstream's `isVpcNatGwChanged`: the pod is rebuilt then).
pub fn changed(gw: &VpcNatGateway) -> bool {
    let s = gw.status.clone().unwrap_or_default();
    gw.spec.external_subnets != s.external_subnets
        || gw.spec.selector != s.selector
        || gw.spec.tolerations != s.tolerations
        || gw.spec.affinity != s.affinity
        || gw.spec.internal_subnets != s.internal_subnets
        || gw.spec.internal_cidrs != s.internal_cidrs
        || gw.spec.replicas != s.replicas
}

/// The status upstream's `patchNatGwStatus` writes: the spec fields the workload was built
/// from, `lanIp`, the workload (`apps/v1` StatefulSet, its pods' nodes) and its readiness.
pub fn status(gw: &VpcNatGateway, ready: bool, nodes: Vec<String>) -> VpcNatGatewayStatus {
    let mut s = gw.status.clone().unwrap_or_default();
    s.external_subnets = gw.spec.external_subnets.clone();
    s.selector = gw.spec.selector.clone();
    s.tolerations = gw.spec.tolerations.clone();
    s.affinity = gw.spec.affinity.clone();
    s.internal_subnets = gw.spec.internal_subnets.clone();
    s.internal_cidrs = gw.spec.internal_cidrs.clone();
    s.replicas = gw.spec.replicas;
    s.lan_ip = gw.spec.lan_ip.clone();
    s.workload.api_version = "apps/v1".into();
    s.workload.kind = "StatefulSet".into();
    s.workload.name = natgw::workload_name(&gw.name_any());
    let mut nodes = nodes;
    nodes.sort();
    s.workload.nodes = nodes;
    s.ready = ready;
    s
}

/// The gateway's labels as upstream's `updateCrdNatGwLabels` keeps them.
pub fn gateway_labels(gw: &VpcNatGateway) -> BTreeMap<String, String> {
    let mut l = gw.labels().clone();
    l.insert(ann::LABEL_SUBNET.into(), gw.spec.subnet.clone());
    l.insert(natgw::LABEL_VPC.into(), gw.spec.vpc.clone());
    l.insert(natgw::LABEL_QOS.into(), gw.spec.qos_policy.clone());
    l
}

/// The VPC's IPv4 subnet CIDRs per provider (`<provider>.kubernetes.io/vpc_cidrs`), from its
/// OVN subnets, as upstream's `handleUpdateNatGwSubnetRoute`.
pub fn vpc_cidrs(
    vpc: &str,
    order: &[String],
    subnets: &[Arc<Subnet>],
) -> BTreeMap<String, Vec<String>> {
    let mut of_vpc: Vec<&Arc<Subnet>> = subnets
        .iter()
        .filter(|s| s.spec.vpc == vpc && s.metadata.deletion_timestamp.is_none())
        .filter(|s| crate::subnet_rules::is_ovn_provider(&s.spec.provider))
        .filter(|s| s.spec.vlan.is_empty() || s.spec.u2o_interconnection)
        .collect();
    // The Vpc's status order, then by name.
    of_vpc.sort_by_key(|s| {
        let n = s.name_any();
        (order.iter().position(|o| *o == n).unwrap_or(usize::MAX), n)
    });
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in of_vpc {
        let (v4, _) = split_v4_v6(&s.spec.cidr_block);
        if v4.is_empty() {
            continue;
        }
        let provider = if s.spec.provider.is_empty() {
            "ovn"
        } else {
            s.spec.provider.as_str()
        };
        out.entry(provider.to_string()).or_default().push(v4);
    }
    out
}

/// The annotation patch that makes the pod carry `cidrs` (stale providers' keys removed) and
/// the init mark; `None` when it already does.
pub fn pod_patch(
    pod_annotations: &BTreeMap<String, String>,
    cidrs: &BTreeMap<String, Vec<String>>,
) -> Option<Value> {
    let mut patch = serde_json::Map::new();
    for (k, _) in pod_annotations.iter() {
        if let Some(p) = k.strip_suffix(".kubernetes.io/vpc_cidrs") {
            if !cidrs.contains_key(p) {
                patch.insert(k.clone(), Value::Null);
            }
        }
    }
    for (p, list) in cidrs {
        let v = Value::from(list.clone()).to_string();
        let key = natgw::vpc_cidrs_key(p);
        if pod_annotations.get(&key) != Some(&v) {
            patch.insert(key, Value::String(v));
        }
    }
    if pod_annotations
        .get(natgw::ANNOTATION_INIT)
        .map(String::as_str)
        != Some("true")
    {
        patch.insert(natgw::ANNOTATION_INIT.into(), Value::String("true".into()));
    }
    (!patch.is_empty()).then(|| json!({"metadata": {"annotations": patch}}))
}

/// The gateway's namespace: `spec.namespace`, else the controller's.
pub fn namespace_of(gw: &VpcNatGateway, controller_ns: &str) -> String {
    if gw.spec.namespace.is_empty() {
        controller_ns.to_string()
    } else {
        gw.spec.namespace.clone()
    }
}

/// The gateway's running pods (not being deleted), by its labels.
pub fn running_pods<'a>(pods: &'a [Arc<PodInfo>], ns: &str, gw: &str) -> Vec<&'a PodInfo> {
    let want = labels(gw);
    pods.iter()
        .map(|p| p.as_ref())
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| want.iter().all(|(k, v)| p.labels().get(k) == Some(v)))
        .filter(|p| p.status.phase.as_deref() == Some("Running"))
        .collect()
}

/// Reads `ovn-vpc-nat-gw-config` (`None` when missing).
pub async fn gateway_config(
    client: &kube::Client,
    ns: &str,
) -> Result<Option<BTreeMap<String, String>>, Error> {
    Ok(Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(natgw::GATEWAY_CONFIG)
        .await?
        .map(|c| c.data.unwrap_or_default()))
}

async fn delete_statefulset(ctx: &Ctx, ns: &str, name: &str) -> Result<(), Error> {
    let api = Api::<StatefulSet>::namespaced(ctx.client.clone(), ns);
    match api
        .delete(&natgw::workload_name(name), &DeleteParams::default())
        .await
    {
        Ok(_) => {
            info!(gateway = name, "deleted vpc nat gateway statefulset");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reconciles the VpcNatGateway `name`.
pub async fn reconcile(ctx: Arc<Ctx>, name: String) -> Result<Outcome, Error> {
    let api: Api<VpcNatGateway> = Api::all(ctx.client.clone());
    let controller_ns = crate::run::Identity::from_env().namespace;
    let Some(gw) = ctx.stores.vpc_nat_gateways.get(&ObjectRef::new(&name)) else {
        return Ok(Outcome::Done);
    };
    let ns = namespace_of(&gw, &controller_ns);
    if gw.metadata.deletion_timestamp.is_some() {
        delete_statefulset(&ctx, &ns, &name).await?;
        finalizer::remove(&api, &gw, ann::FINALIZER).await?;
        return Ok(Outcome::Done);
    }
    let gw = match finalizer::add(&api, &gw, ann::FINALIZER).await? {
        Some(g) => Arc::new(g),
        None => gw,
    };
    let config = gateway_config(&ctx.client, &controller_ns).await?;
    if !enabled(config.as_ref()) {
        // Upstream removes every gateway's workload while the feature is off.
        delete_statefulset(&ctx, &ns, &name).await?;
        return Err(Error::Other("iptables nat gw not enable".into()));
    }
    let fail = |reason: &'static str, msg: String| {
        let ctx = ctx.clone();
        let r = gw.object_ref(&());
        async move {
            ctx.event(&r, EventType::Warning, reason, &msg).await;
            Error::Other(msg)
        }
    };
    if ctx.stores.vpcs.get(&ObjectRef::new(&gw.spec.vpc)).is_none() {
        return Err(fail(
            "GetVpcFailed",
            format!("failed to get vpc '{}'", gw.spec.vpc),
        )
        .await);
    }
    let Some(lan) = ctx.stores.subnets.get(&ObjectRef::new(&gw.spec.subnet)) else {
        let msg = format!("failed to get subnet '{}'", gw.spec.subnet);
        return Err(fail("GetSubnetFailed", msg).await);
    };
    let ext_name = natgw::external_network(&gw.spec.external_subnets).to_string();
    let Some(external) = ctx.stores.subnets.get(&ObjectRef::new(&ext_name)) else {
        let msg = format!("failed to get external subnet {ext_name} for NAT gateway {name}");
        return Err(fail("GetSubnetFailed", msg).await);
    };
    // The subnet reconciler fills in a gateway a subnet was created without; a template made
    // before that would carry no LAN or external routes, and a created StatefulSet is only
    // rewritten when the gateway's own spec changes. Retried, not an event: it is transient.
    for s in [&lan, &external] {
        if s.spec.gateway.is_empty() {
            return Err(Error::Other(format!(
                "subnet {} has no gateway yet",
                s.name_any()
            )));
        }
    }
    let image_config = Api::<ConfigMap>::namespaced(ctx.client.clone(), &controller_ns)
        .get_opt(VPC_NAT_CONFIG)
        .await?
        .and_then(|c| c.data)
        .unwrap_or_default();
    let Some(image) = image_config.get("image").filter(|i| !i.is_empty()) else {
        let msg = format!("{VPC_NAT_CONFIG} should have image field");
        return Err(fail("GetImageFailed", msg).await);
    };
    let subnets = ctx.stores.subnets.state();
    let inputs = Inputs {
        gw: &gw,
        namespace: &ns,
        lan: &lan,
        external: &external,
        nad: external_nad(&external, &controller_ns),
        image,
        service_cidrs: &ctx.config.service_cluster_ip_range,
        subnets: &subnets,
    };
    let want = match statefulset(&inputs) {
        Ok(s) => s,
        Err(msg) => return Err(fail("GenStatefulSetFailed", msg).await),
    };
    let sts_api = Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns);
    let sts_name = natgw::workload_name(&name);
    let sts = match sts_api.get_opt(&sts_name).await? {
        None => {
            info!(gateway = %name, statefulset = %sts_name, "creating vpc nat gateway statefulset");
            sts_api.create(&PostParams::default(), &want).await?
        }
        Some(_) if changed(&gw) => {
            info!(gateway = %name, statefulset = %sts_name, "updating vpc nat gateway statefulset");
            // Replaces the template whole (a merge patch would keep removed annotations).
            let template = want.spec.as_ref().map(|s| &s.template);
            let patch: json_patch::Patch = serde_json::from_value(
                json!([{"op": "replace", "path": "/spec/template", "value": template}]),
            )
            .map_err(|e| Error::Other(e.to_string()))?;
            sts_api
                .patch(
                    &sts_name,
                    &PatchParams::default(),
                    &Patch::<()>::Json(patch),
                )
                .await?
        }
        Some(have) => have,
    };
    let labels = gateway_labels(&gw);
    if &labels != gw.labels() {
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await?;
    }
    // The pod's VPC CIDRs and init mark.
    let pods = ctx.stores.pods.state();
    let running = running_pods(&pods, &ns, &name);
    let order = ctx
        .stores
        .vpcs
        .get(&ObjectRef::new(&gw.spec.vpc))
        .and_then(|v| v.status.as_ref().map(|s| s.subnets.clone()))
        .unwrap_or_default();
    let cidrs = vpc_cidrs(&gw.spec.vpc, &order, &subnets);
    for p in &running {
        if let Some(patch) = pod_patch(p.annotations(), &cidrs) {
            Api::<Pod>::namespaced(ctx.client.clone(), &ns)
                .patch(&p.name_any(), &PatchParams::default(), &Patch::Merge(patch))
                .await?;
        }
    }
    let st = sts.status.clone().unwrap_or_default();
    let observed =
        st.observed_generation.unwrap_or_default() >= sts.metadata.generation.unwrap_or_default();
    let ready = observed && st.ready_replicas.unwrap_or_default() >= 1 && !running.is_empty();
    let nodes = running
        .iter()
        .filter_map(|p| p.spec.node_name.clone())
        .collect();
    let want_status = status(&gw, ready, nodes);
    if gw.status.as_ref() != Some(&want_status) {
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": want_status})),
        )
        .await?;
    }
    Ok(if ready {
        Outcome::Done
    } else {
        Outcome::After(NOT_READY_RETRY)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(v: Value) -> Arc<Subnet> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn gateway() -> VpcNatGateway {
        serde_json::from_value(json!({"apiVersion": "kubeovn.io/v1", "kind": "VpcNatGateway",
            "metadata": {"name": "gw1", "uid": "u-1"},
            "spec": {"vpc": "test-vpc-1", "subnet": "net1", "lanIp": "10.0.1.254",
                     "selector": ["kubernetes.io/hostname: kube-ovn-worker", "kubernetes.io/os: linux", "bad"],
                     "externalSubnets": ["ovn-vpc-external-network"]}}))
        .unwrap()
    }

    fn subnets() -> Vec<Arc<Subnet>> {
        vec![
            subnet(json!({"metadata": {"name": "net1"},
                "spec": {"vpc": "test-vpc-1", "cidrBlock": "10.0.1.0/24", "gateway": "10.0.1.1", "provider": "ovn"}})),
            subnet(json!({"metadata": {"name": "net1b"},
                "spec": {"vpc": "test-vpc-1", "cidrBlock": "10.0.2.0/24", "gateway": "10.0.2.1", "provider": "ovn"}})),
            subnet(json!({"metadata": {"name": "other"},
                "spec": {"vpc": "test-vpc-2", "cidrBlock": "10.0.1.0/24", "gateway": "10.0.1.1"}})),
            subnet(json!({"metadata": {"name": "ovn-vpc-external-network"},
                "spec": {"cidrBlock": "192.168.0.0/24", "gateway": "192.168.0.1",
                         "provider": "ovn-vpc-external-network.kube-system"}})),
        ]
    }

    /// Seed 004's gateway gives upstream's StatefulSet: name, labels, selector, the pod
    /// annotations (attachment, gateway, LAN subnet and address, routes of both NICs), the
    /// container, env, node selector and owner.
    #[test]
    fn statefulset_matches_upstream() {
        let gw = gateway();
        let subnets = subnets();
        let ext = subnets[3].clone();
        let i = Inputs {
            gw: &gw,
            namespace: "kube-system",
            lan: &subnets[0],
            external: &ext,
            nad: external_nad(&ext, "kube-system"),
            image: "docker.io/kubeovn/vpc-nat-gateway:v1.12.26",
            service_cidrs: "10.96.0.0/12",
            subnets: &subnets,
        };
        let s = serde_json::to_value(statefulset(&i).unwrap()).unwrap();
        let labels = json!({"app": "vpc-nat-gw-gw1", "ovn.kubernetes.io/vpc-nat-gw": "true"});
        assert_eq!(s["metadata"]["name"], "vpc-nat-gw-gw1");
        assert_eq!(s["metadata"]["namespace"], "kube-system");
        assert_eq!(s["metadata"]["labels"], labels);
        assert_eq!(s["metadata"]["ownerReferences"][0]["kind"], "VpcNatGateway");
        assert_eq!(s["spec"]["replicas"], 1);
        assert_eq!(s["spec"]["selector"], json!({"matchLabels": labels}));
        assert_eq!(
            s["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate"})
        );
        let t = &s["spec"]["template"];
        assert_eq!(t["metadata"]["labels"], labels);
        assert_eq!(
            t["metadata"]["annotations"],
            json!({
                "k8s.v1.cni.cncf.io/networks": "kube-system/ovn-vpc-external-network",
                "ovn.kubernetes.io/vpc_nat_gw": "gw1",
                "ovn.kubernetes.io/logical_switch": "net1",
                "ovn.kubernetes.io/ip_address": "10.0.1.254",
                "ovn.kubernetes.io/routes":
                    "[{\"dst\":\"10.0.2.0/24\",\"gw\":\"10.0.1.1\"},{\"dst\":\"10.96.0.0/12\",\"gw\":\"10.0.1.1\"}]",
                "ovn-vpc-external-network.kube-system.kubernetes.io/routes":
                    "[{\"dst\":\"0.0.0.0/0\",\"gw\":\"192.168.0.1\"}]",
            })
        );
        let spec = &t["spec"];
        assert_eq!(spec["terminationGracePeriodSeconds"], 0);
        assert_eq!(
            spec["nodeSelector"],
            json!({"kubernetes.io/hostname": "kube-ovn-worker", "kubernetes.io/os": "linux"})
        );
        let c = &spec["containers"][0];
        assert_eq!(c["name"], "vpc-nat-gw");
        assert_eq!(c["image"], "docker.io/kubeovn/vpc-nat-gateway:v1.12.26");
        assert_eq!(c["command"], json!([AGENT_COMMAND]));
        assert_eq!(
            c["env"][0],
            json!({"name": "GATEWAY_V4", "value": "192.168.0.1"})
        );
        assert_eq!(c["env"][1], json!({"name": "GATEWAY_V6", "value": ""}));
        assert_eq!(
            c["securityContext"],
            json!({"privileged": true, "allowPrivilegeEscalation": true})
        );
        // noDefaultEIP: the external NIC is marked allocated and gets no default route.
        let mut no_eip = gw.clone();
        no_eip.spec.no_default_eip = true;
        let a = pod_annotations(&Inputs { gw: &no_eip, ..i }).unwrap();
        assert_eq!(
            a.get("ovn-vpc-external-network.kube-system.kubernetes.io/allocated")
                .map(String::as_str),
            Some("true")
        );
        assert!(!a.contains_key("ovn-vpc-external-network.kube-system.kubernetes.io/routes"));
    }

    #[test]
    fn status_labels_cidrs_and_config() {
        let gw = gateway();
        assert!(changed(&gw));
        let s = status(&gw, true, vec!["node2".into(), "node1".into()]);
        assert_eq!(s.lan_ip, "10.0.1.254");
        assert_eq!(s.external_subnets, vec!["ovn-vpc-external-network"]);
        assert_eq!(s.workload.kind, "StatefulSet");
        assert_eq!(s.workload.name, "vpc-nat-gw-gw1");
        assert_eq!(s.workload.nodes, vec!["node1", "node2"]);
        let mut done = gw.clone();
        done.status = Some(s);
        assert!(!changed(&done));
        let l = gateway_labels(&gw);
        assert_eq!(
            l.get("ovn.kubernetes.io/subnet").map(String::as_str),
            Some("net1")
        );
        assert_eq!(
            l.get("ovn.kubernetes.io/vpc").map(String::as_str),
            Some("test-vpc-1")
        );
        assert_eq!(l.get("ovn.kubernetes.io/qos").map(String::as_str), Some(""));
        let cidrs = vpc_cidrs("test-vpc-1", &["net1b".into()], &subnets());
        assert_eq!(
            cidrs,
            BTreeMap::from([(
                "ovn".to_string(),
                vec!["10.0.2.0/24".to_string(), "10.0.1.0/24".to_string()]
            )])
        );
        let stale = BTreeMap::from([(
            "old.ns.ovn.kubernetes.io/vpc_cidrs".to_string(),
            "[]".to_string(),
        )]);
        let patch = pod_patch(&stale, &cidrs).unwrap();
        assert_eq!(
            patch,
            json!({"metadata": {"annotations": {
                "old.ns.ovn.kubernetes.io/vpc_cidrs": null,
                "ovn.kubernetes.io/vpc_cidrs": "[\"10.0.2.0/24\",\"10.0.1.0/24\"]",
                "ovn.kubernetes.io/vpc_nat_gw_init": "true"}}})
        );
        let done: BTreeMap<String, String> = BTreeMap::from([
            (
                "ovn.kubernetes.io/vpc_cidrs".to_string(),
                "[\"10.0.2.0/24\",\"10.0.1.0/24\"]".to_string(),
            ),
            (
                "ovn.kubernetes.io/vpc_nat_gw_init".to_string(),
                "true".to_string(),
            ),
        ]);
        assert_eq!(pod_patch(&done, &cidrs), None);
        assert!(!enabled(None));
        assert!(enabled(Some(&BTreeMap::new())));
        let off = BTreeMap::from([("enable-vpc-nat-gw".to_string(), "false".to_string())]);
        assert!(!enabled(Some(&off)));
        let ext = subnets()[3].clone();
        assert_eq!(
            external_nad(&ext, "kube-system"),
            (
                "kube-system".to_string(),
                "ovn-vpc-external-network".to_string()
            )
        );
        let ovn_ext = subnet(json!({"metadata": {"name": "ext"}, "spec": {"provider": "ovn"}}));
        assert_eq!(
            external_nad(&ovn_ext, "kube-system"),
            ("kube-system".to_string(), "ext".to_string())
        );
        let lan_nad = subnet(json!({"metadata": {"name": "l"}, "spec": {"provider": "a.b"}}));
        assert!(lan_provider(&lan_nad).is_err());
    }
}
