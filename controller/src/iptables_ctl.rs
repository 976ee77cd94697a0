//! The iptables NAT family's reconcilers (seed 004, upstream's `vpc_nat_gw_eip.go` and
//! `vpc_nat_gw_nat.go`).
//!
//! An `IptablesEIP` gets an address of its external subnet (`spec.externalSubnet`, else
//! `ovn-vpc-external-network`) from IPAM — `spec.v4ip` when set, else a free one — owned by the
//! EIP's name on upstream's port name (`<eip>..<provider>`); it is written back to
//! `spec.v4ip`/`v6ip`/`macAddress` with the labels `ovn.kubernetes.io/subnet`,
//! `ovn.kubernetes.io/eip_v4_ip`, `ovn.kubernetes.io/vpc-nat-gw-name` and our finalizer, and
//! `status.ip`/`ready` once its gateway's pod runs (upstream's moment: its `eip-add` exec
//! succeeded); `status.nat` lists the kinds of rule using it. Changing the address of a ready
//! EIP is refused as upstream; deleting it waits until no rule uses it, then frees the address.
//!
//! `IptablesFIPRule`, `IptablesSnatRule` and `IptablesDnatRule` are validated as upstream
//! (IPv4, ports, protocol, one FIP per EIP, one DNAT per EIP/port/protocol), get our finalizer,
//! the labels `ovn.kubernetes.io/vpc-nat-gw-name` and `ovn.kubernetes.io/eip_v4_ip` (DNATs also
//! `ovn.kubernetes.io/vpc_dnat_eport`), the annotation `ovn.kubernetes.io/vpc_eip`, and a
//! status naming the EIP's address and gateway with `ready`. The gateway pod's agent
//! (daemon/src/natgw) applies the ready rules that are not being deleted, so a deleted rule's
//! finalizer goes at once — the agent's next converge no longer has it. Share-type DNATs
//! (nft vmaps across backends) are refused as not supported.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use kube_ovn_ipam::Request;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tracing::info;

use crate::context::{Ctx, Error};
use crate::pod_info::PodInfo;
use kube_ovn_common::annotations as ann;
use kube_ovn_common::crd::iptables_nat::DNAT_TYPE_SHARE;
use kube_ovn_common::crd::{IptablesDnatRule, IptablesEip, IptablesFipRule, IptablesSnatRule};
use kube_ovn_common::{names, natgw};
use kube_ovn_runtime::events::EventType;
use kube_ovn_runtime::finalizer;
use kube_ovn_runtime::trigger::{hash_json, hash_of};
use kube_ovn_runtime::Outcome;

/// The EIP queue's kind name.
pub const EIP_KIND: &str = "iptables-eip";
/// The FIP queue's kind name.
pub const FIP_KIND: &str = "iptables-fip";
/// The SNAT queue's kind name.
pub const SNAT_KIND: &str = "iptables-snat";
/// The DNAT queue's kind name.
pub const DNAT_KIND: &str = "iptables-dnat";
/// How often something waiting on its EIP or gateway is looked at again.
const WAIT: Duration = Duration::from_secs(2);

/// What of an object its reconciler reads: spec, what it wrote, deletion.
pub fn signature<K: Resource + Serialize>(o: &K) -> u64 {
    let v = serde_json::to_value(o).unwrap_or_default();
    hash_of(&(
        hash_json(&v.get("spec")),
        hash_json(&v.get("status")),
        hash_json(&o.meta().labels),
        hash_json(&o.meta().annotations),
        hash_json(&o.meta().finalizers),
        o.meta().deletion_timestamp.is_some(),
    ))
}

/// The EIPs of the gateway a gateway pod belongs to (its pod running is their readiness).
pub fn eips_of_pod(eips: &[Arc<IptablesEip>], p: &PodInfo) -> Vec<String> {
    let gws = crate::natgw_ctl::gateway_of_pod(p);
    eips.iter()
        .filter(|e| gws.contains(&e.spec.nat_gw_dp))
        .map(|e| e.name_any())
        .collect()
}

/// What of a gateway pod its EIPs read.
pub fn pod_signature(p: &PodInfo) -> u64 {
    hash_of(&(
        hash_json(&p.status.phase),
        p.metadata.deletion_timestamp.is_some(),
    ))
}

/// The rules naming EIP `eip` (they wait for its address and follow its changes).
pub fn rules_of_eip<K: NatRule>(rules: &[Arc<K>], eip: &str) -> Vec<String> {
    rules
        .iter()
        .filter(|r| r.eip() == eip)
        .map(|r| r.name_any())
        .collect()
}

/// The EIP a rule names (its `status.nat` counts the rule).
pub fn eip_of_rule<K: NatRule>(r: &K) -> Vec<String> {
    vec![r.eip().to_string()]
}

/// `status.nat` of an EIP: the kinds of rule carrying its address label, `dnat,fip,snat` order
/// as upstream's `getIptablesEipNat`.
pub fn eip_nat(
    v4ip: &str,
    fips: &[Arc<IptablesFipRule>],
    snats: &[Arc<IptablesSnatRule>],
    dnats: &[Arc<IptablesDnatRule>],
) -> String {
    if v4ip.is_empty() {
        return String::new();
    }
    let uses = |l: &BTreeMap<String, String>| {
        l.get(natgw::LABEL_EIP_V4_IP).map(String::as_str) == Some(v4ip)
    };
    let mut out = Vec::new();
    if dnats.iter().any(|d| uses(d.labels())) {
        out.push(natgw::DNAT_USING_EIP);
    }
    if fips.iter().any(|f| uses(f.labels())) {
        out.push(natgw::FIP_USING_EIP);
    }
    if snats.iter().any(|s| uses(s.labels())) {
        out.push(natgw::SNAT_USING_EIP);
    }
    out.join(",")
}

/// The labels an EIP carries (upstream's `createOrUpdateEipCR`).
pub fn eip_labels(eip: &IptablesEip, subnet: &str, v4ip: &str) -> BTreeMap<String, String> {
    let mut l = eip.labels().clone();
    l.insert(ann::LABEL_SUBNET.into(), subnet.into());
    l.insert(natgw::LABEL_EIP_V4_IP.into(), v4ip.into());
    l.insert(natgw::LABEL_GATEWAY_NAME.into(), eip.spec.nat_gw_dp.clone());
    if !eip.spec.qos_policy.is_empty() {
        l.insert(natgw::LABEL_QOS.into(), eip.spec.qos_policy.clone());
    }
    l
}

/// Why an EIP's spec cannot be served, if it cannot.
pub fn invalid_eip(eip: &IptablesEip) -> Option<String> {
    let name = eip.name_any();
    if eip.spec.v6ip.chars().any(|c| c.is_ascii_uppercase()) {
        return Some(format!(
            "eip {name} v6 ip address {} can not contain upper case",
            eip.spec.v6ip
        ));
    }
    for ip in eip.spec.v4ip.split(',').filter(|s| !s.is_empty()) {
        if ip.parse::<IpAddr>().is_err() {
            return Some(format!("failed to parse eip ip {ip}"));
        }
    }
    let st = eip.status.clone().unwrap_or_default();
    if !st.ip.is_empty() && st.ip != eip.spec.v4ip {
        return Some(format!(
            "not support eip change ip, old ip '{}', new ip '{}'",
            st.ip, eip.spec.v4ip
        ));
    }
    None
}

fn port_ok(p: &str) -> Result<(), String> {
    match p.parse::<i64>() {
        Err(_) => Err("must be a number".into()),
        Ok(n) if !(1..=65535).contains(&n) => Err("must be between 1 and 65535".into()),
        Ok(_) => Ok(()),
    }
}

fn ipv4(what: &str, name: &str, ip: &str) -> Result<(), String> {
    if ip.is_empty() {
        return Err(format!("{name}: {what} cannot be empty"));
    }
    match ip.parse::<IpAddr>() {
        Err(_) => Err(format!("{name}: invalid {what} {ip:?}")),
        Ok(IpAddr::V6(_)) => Err(format!(
            "{name}: {what} {ip:?} must be IPv4, IPv6 is not supported"
        )),
        Ok(IpAddr::V4(_)) => Ok(()),
    }
}

/// A NAT rule kind: what its reconciler needs beyond the shared steps.
pub trait NatRule:
    Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// `status.nat` word and event wording.
    const WORD: &'static str;
    /// The EIP it names.
    fn eip(&self) -> &str;
    /// Upstream's validation (`validate*Rule`), and its conflicts with the others of its kind.
    fn validate(&self, eip: &IptablesEip, others: &[Arc<Self>]) -> Result<(), String>;
    /// The status once applied through `eip`.
    fn ready_status(&self, eip: &IptablesEip) -> Value;
    /// Extra labels of the kind.
    fn extra_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// Its store.
    fn store(ctx: &Ctx) -> &Store<Self>;
    /// Whether its status says ready.
    fn is_ready(&self) -> bool;
}

fn eip_status_ip(eip: &IptablesEip) -> String {
    eip.status
        .as_ref()
        .map(|s| s.ip.clone())
        .unwrap_or_default()
}

impl NatRule for IptablesFipRule {
    const WORD: &'static str = natgw::FIP_USING_EIP;
    fn eip(&self) -> &str {
        &self.spec.eip
    }
    fn validate(&self, eip: &IptablesEip, others: &[Arc<Self>]) -> Result<(), String> {
        let name = self.name_any();
        if self.spec.eip.is_empty() {
            return Err(format!("{name}: eip cannot be empty"));
        }
        ipv4("internalIP", &name, &self.spec.internal_ip)?;
        let v4 = &eip.spec.v4ip;
        if let Some(o) = others.iter().find(|o| {
            o.name_any() != name
                && o.labels().get(natgw::LABEL_EIP_V4_IP) == Some(v4)
                && o.metadata.deletion_timestamp.is_none()
        }) {
            return Err(format!("{v4} is used by the other fip {}", o.name_any()));
        }
        Ok(())
    }
    fn ready_status(&self, eip: &IptablesEip) -> Value {
        json!({"ready": true, "v4ip": eip_status_ip(eip), "v6ip": eip.spec.v6ip,
               "natGwDp": eip.spec.nat_gw_dp, "redo": "", "internalIp": self.spec.internal_ip})
    }
    fn store(ctx: &Ctx) -> &Store<Self> {
        &ctx.stores.iptables_fips
    }
    fn is_ready(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.ready)
    }
}

impl NatRule for IptablesSnatRule {
    const WORD: &'static str = natgw::SNAT_USING_EIP;
    fn eip(&self) -> &str {
        &self.spec.eip
    }
    fn validate(&self, _eip: &IptablesEip, _others: &[Arc<Self>]) -> Result<(), String> {
        let name = self.name_any();
        if self.spec.eip.is_empty() {
            return Err(format!("{name}: eip cannot be empty"));
        }
        let c = self.spec.internal_cidr.as_str();
        if c.is_empty() {
            return Err(format!("{name}: internalCIDR cannot be empty"));
        }
        if c.matches('/').count() > 1 || c.contains(',') {
            return Err(format!(
                "{name}: internalCIDR {c:?} contains multiple CIDRs, only single CIDR or IP is allowed"
            ));
        }
        let addr = match c.split_once('/') {
            Some(_) => c
                .parse::<ipnet::IpNet>()
                .map(|n| n.addr())
                .map_err(|e| format!("{name}: invalid internalCIDR {c:?}: {e}"))?,
            None => c
                .parse::<IpAddr>()
                .map_err(|_| format!("{name}: invalid internalCIDR {c:?}"))?,
        };
        if addr.is_ipv6() {
            return Err(format!(
                "{name}: internalCIDR {c:?} must be IPv4, IPv6 is not supported"
            ));
        }
        Ok(())
    }
    fn ready_status(&self, eip: &IptablesEip) -> Value {
        json!({"ready": true, "v4ip": eip_status_ip(eip), "v6ip": eip.spec.v6ip,
               "natGwDp": eip.spec.nat_gw_dp, "redo": "",
               "internalCIDR": self.spec.internal_cidr})
    }
    fn store(ctx: &Ctx) -> &Store<Self> {
        &ctx.stores.iptables_snats
    }
    fn is_ready(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.ready)
    }
}

impl NatRule for IptablesDnatRule {
    const WORD: &'static str = natgw::DNAT_USING_EIP;
    fn eip(&self) -> &str {
        &self.spec.eip
    }
    fn validate(&self, _eip: &IptablesEip, others: &[Arc<Self>]) -> Result<(), String> {
        let name = self.name_any();
        let s = &self.spec;
        if s.eip.is_empty() {
            return Err(format!("{name}: eip cannot be empty"));
        }
        port_ok(&s.external_port)
            .map_err(|e| format!("{name}: invalid externalPort {:?}: {e}", s.external_port))?;
        port_ok(&s.internal_port)
            .map_err(|e| format!("{name}: invalid internalPort {:?}: {e}", s.internal_port))?;
        ipv4("internalIP", &name, &s.internal_ip)?;
        let p = s.protocol.to_ascii_lowercase();
        if p != "tcp" && p != "udp" {
            return Err(format!(
                "{name}: invalid protocol {:?}: must be tcp or udp",
                s.protocol
            ));
        }
        if s.type_ == DNAT_TYPE_SHARE {
            return Err(format!(
                "{name}: share-type dnat rules are not supported by kube-ovn-rs"
            ));
        }
        if let Some(o) = others.iter().find(|o| {
            o.name_any() != name
                && o.metadata.deletion_timestamp.is_none()
                && o.spec.eip == s.eip
                && o.spec.external_port == s.external_port
                && o.spec.protocol.eq_ignore_ascii_case(&s.protocol)
        }) {
            return Err(format!(
                "failed to create dnat {name}, duplicate, same eip {}, same external port '{}' \
                 and same protocol '{}' already in use by dnat {}",
                s.eip,
                s.external_port,
                s.protocol,
                o.name_any()
            ));
        }
        Ok(())
    }
    fn ready_status(&self, eip: &IptablesEip) -> Value {
        json!({"ready": true, "v4ip": eip_status_ip(eip), "v6ip": eip.spec.v6ip,
               "natGwDp": eip.spec.nat_gw_dp, "redo": "", "protocol": self.spec.protocol,
               "internalIp": self.spec.internal_ip, "internalPort": self.spec.internal_port,
               "externalPort": self.spec.external_port})
    }
    fn extra_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(
            natgw::LABEL_DNAT_EPORT.to_string(),
            self.spec.external_port.clone(),
        )])
    }
    fn store(ctx: &Ctx) -> &Store<Self> {
        &ctx.stores.iptables_dnats
    }
    fn is_ready(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.ready)
    }
}

async fn patch_status<K: NatRule>(api: &Api<K>, name: &str, status: Value) -> Result<(), Error> {
    match api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reconciles the rule `name` of kind `K`.
pub async fn reconcile_rule<K: NatRule>(ctx: Arc<Ctx>, name: String) -> Result<Outcome, Error> {
    let api: Api<K> = Api::all(ctx.client.clone());
    let Some(rule) = K::store(&ctx).get(&ObjectRef::new(&name)) else {
        return Ok(Outcome::Done);
    };
    let eip_name = rule.eip().to_string();
    if rule.meta().deletion_timestamp.is_some() {
        // The agent drops a rule being deleted from its next converge.
        finalizer::remove(&api, &rule, ann::FINALIZER).await?;
        ctx.queues.add(EIP_KIND, eip_name);
        return Ok(Outcome::Done);
    }
    let eip = ctx
        .stores
        .iptables_eips
        .get(&ObjectRef::new(&eip_name))
        .filter(|e| {
            e.status
                .as_ref()
                .is_some_and(|s| s.ready && !s.ip.is_empty())
        });
    let others = K::store(&ctx).state();
    let checked = match &eip {
        Some(e) => rule.validate(e, &others),
        None => Err(format!("eip '{eip_name}' is not ready, has no v4ip")),
    };
    let eip = match (checked, eip) {
        (Ok(()), Some(e)) => e,
        (Err(msg), e) => {
            ctx.event(
                &rule.object_ref(&()),
                EventType::Warning,
                "ValidateNatRuleFailed",
                &msg,
            )
            .await;
            if rule.is_ready() {
                patch_status(&api, &name, json!({"ready": false})).await?;
            }
            // A missing EIP comes with its own event; an invalid spec waits for a new one.
            return Ok(if e.is_none() {
                Outcome::After(WAIT)
            } else {
                Outcome::Done
            });
        }
        (Ok(()), None) => return Ok(Outcome::After(WAIT)),
    };
    let rule = match finalizer::add(&api, &rule, ann::FINALIZER).await? {
        Some(r) => Arc::new(r),
        None => rule,
    };
    let mut labels = rule.meta().labels.clone().unwrap_or_default();
    labels.insert(natgw::LABEL_GATEWAY_NAME.into(), eip.spec.nat_gw_dp.clone());
    labels.insert(natgw::LABEL_EIP_V4_IP.into(), eip.spec.v4ip.clone());
    labels.extend(rule.extra_labels());
    let mut annotations = rule.meta().annotations.clone().unwrap_or_default();
    annotations.insert(natgw::ANNOTATION_EIP.into(), eip_name.clone());
    if Some(&labels) != rule.meta().labels.as_ref()
        || Some(&annotations) != rule.meta().annotations.as_ref()
    {
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels, "annotations": annotations}})),
        )
        .await?;
    }
    let want = rule.ready_status(&eip);
    let have = serde_json::to_value(rule.as_ref())
        .ok()
        .and_then(|v| v.get("status").cloned())
        .unwrap_or(Value::Null);
    let differs = want
        .as_object()
        .into_iter()
        .flatten()
        .any(|(k, v)| have.get(k) != Some(v));
    if differs {
        info!(kind = K::WORD, rule = %name, eip = %eip_name, "nat rule ready");
        patch_status(&api, &name, want).await?;
    }
    ctx.queues.add(EIP_KIND, eip_name);
    Ok(Outcome::Done)
}

/// The IPAM owner key of an EIP: its name, as upstream.
fn owner(name: &str) -> String {
    name.to_string()
}

/// Reconciles the EIP `name`.
pub async fn reconcile_eip(ctx: Arc<Ctx>, name: String) -> Result<Outcome, Error> {
    let api: Api<IptablesEip> = Api::all(ctx.client.clone());
    let Some(eip) = ctx.stores.iptables_eips.get(&ObjectRef::new(&name)) else {
        release(&ctx, &name, None);
        return Ok(Outcome::Done);
    };
    let subnet_name = natgw::eip_external_network(&eip.spec.external_subnet).to_string();
    let (fips, snats, dnats) = (
        ctx.stores.iptables_fips.state(),
        ctx.stores.iptables_snats.state(),
        ctx.stores.iptables_dnats.state(),
    );
    let nat = eip_nat(&eip.spec.v4ip, &fips, &snats, &dnats);
    if eip.metadata.deletion_timestamp.is_some() {
        if !nat.is_empty() {
            // A rule's deletion queues its EIP again.
            info!(eip = %name, nat = %nat, "eip still used by nat rules");
            return Ok(Outcome::Done);
        }
        release(&ctx, &name, Some(&subnet_name));
        finalizer::remove(&api, &eip, ann::FINALIZER).await?;
        return Ok(Outcome::Done);
    }
    if let Some(why) = invalid_eip(&eip) {
        ctx.event(&eip.object_ref(&()), EventType::Warning, "InvalidEip", &why)
            .await;
        return Ok(Outcome::Done);
    }
    let Some(subnet) = ctx.stores.subnets.get(&ObjectRef::new(&subnet_name)) else {
        let msg = format!("failed to get subnet {subnet_name}");
        ctx.event(
            &eip.object_ref(&()),
            EventType::Warning,
            "AcquireAddressFailed",
            &msg,
        )
        .await;
        return Ok(Outcome::After(WAIT));
    };
    if ctx.ipam().subnet(&subnet_name).is_none() {
        return Ok(Outcome::After(Duration::from_secs(1)));
    }
    let provider = if subnet.spec.provider.is_empty() {
        "ovn"
    } else {
        subnet.spec.provider.as_str()
    };
    let status = eip.status.clone().unwrap_or_default();
    let held = !status.ip.is_empty() || !eip.spec.mac_address.is_empty();
    let parse = |s: &str| s.parse::<IpAddr>().ok();
    let req = Request {
        pod: owner(&name),
        nic: names::pod_lsp(&name, "", provider),
        ips: [parse(&eip.spec.v4ip), parse(&eip.spec.v6ip)]
            .into_iter()
            .flatten()
            .collect(),
        mac: (!eip.spec.mac_address.is_empty()).then(|| eip.spec.mac_address.clone()),
        check_conflict: !held,
        ..Request::default()
    };
    let allocated = ctx.ipam().allocate(&subnet_name, &req);
    let alloc = match allocated {
        Ok(a) => a,
        Err(e) => {
            ctx.event(
                &eip.object_ref(&()),
                EventType::Warning,
                "AcquireAddressFailed",
                &e.to_string(),
            )
            .await;
            return Err(e.into());
        }
    };
    let Some(IpAddr::V4(v4)) = alloc.v4 else {
        release(&ctx, &name, Some(&subnet_name));
        let msg = format!("subnet {subnet_name} does not support ipv4");
        ctx.event(
            &eip.object_ref(&()),
            EventType::Warning,
            "AcquireAddressFailed",
            &msg,
        )
        .await;
        return Ok(Outcome::Done);
    };
    if !held {
        ctx.queues
            .add(crate::subnet_ctl::STATUS_KIND, subnet_name.clone());
    }
    let v4 = v4.to_string();
    let v6 = alloc.v6.map(|a| a.to_string()).unwrap_or_default();
    // The gateway's namespace fills an empty spec.namespace, as upstream.
    let controller_ns = crate::run::Identity::from_env().namespace;
    let gw = ctx
        .stores
        .vpc_nat_gateways
        .get(&ObjectRef::new(&eip.spec.nat_gw_dp));
    let gw_ns = gw
        .as_ref()
        .map(|g| crate::natgw_ctl::namespace_of(g, &controller_ns));
    let mut want = (*eip).clone();
    want.spec.v4ip = v4.clone();
    want.spec.v6ip = v6;
    want.spec.mac_address = alloc.mac.clone();
    if want.spec.namespace.is_empty() {
        if let Some(ns) = &gw_ns {
            want.spec.namespace = ns.clone();
        }
    }
    want.metadata.labels = Some(eip_labels(&eip, &subnet_name, &v4));
    let fins = want.metadata.finalizers.get_or_insert_with(Vec::new);
    if !fins.iter().any(|f| f == ann::FINALIZER) {
        fins.push(ann::FINALIZER.into());
    }
    if want != *eip {
        match api.replace(&name, &PostParams::default(), &want).await {
            Ok(_) => info!(eip = %name, ip = %v4, "eip allocated"),
            // A newer version arrives with its own event and reconcile.
            Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Outcome::Done),
            Err(e) => return Err(e.into()),
        }
    }
    // Ready once its gateway's pod runs (upstream's eip-add exec into it succeeded).
    let running = match (&gw, &gw_ns) {
        (Some(_), Some(ns)) => {
            !crate::natgw_ctl::running_pods(&ctx.stores.pods.state(), ns, &eip.spec.nat_gw_dp)
                .is_empty()
        }
        _ => false,
    };
    let ip = if running || !status.ip.is_empty() {
        v4.clone()
    } else {
        String::new()
    };
    let want_status = json!({"ip": ip, "ready": running, "nat": nat, "redo": "",
                             "qosPolicy": eip.spec.qos_policy});
    let current = serde_json::to_value(&status).unwrap_or_default();
    let differs = want_status
        .as_object()
        .into_iter()
        .flatten()
        .any(|(k, v)| current.get(k) != Some(v));
    if differs {
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": want_status})),
        )
        .await?;
    }
    Ok(if running {
        Outcome::Done
    } else {
        Outcome::After(WAIT)
    })
}

/// Gives an EIP's address back to IPAM (its subnet's counters follow).
fn release(ctx: &Ctx, name: &str, subnet: Option<&str>) {
    let released = ctx.ipam().release_pod(&owner(name));
    if !released.is_empty() {
        if let Some(s) = subnet {
            ctx.queues
                .add(crate::subnet_ctl::STATUS_KIND, s.to_string());
        }
    }
}

/// An EIP's address as restore reads it back: `status.ip`, else the `spec.v4ip` it was
/// allocated (a MAC recorded means the controller wrote it).
pub fn restored_address(eip: &IptablesEip) -> Option<(Ipv4Addr, String)> {
    let st = eip.status.clone().unwrap_or_default();
    let ip = if !st.ip.is_empty() {
        st.ip
    } else if !eip.spec.mac_address.is_empty() {
        eip.spec.v4ip.clone()
    } else {
        return None;
    };
    Some((ip.parse().ok()?, eip.spec.mac_address.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arc<T: DeserializeOwned>(v: Value) -> Arc<T> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn eip(v4: &str) -> IptablesEip {
        serde_json::from_value(json!({"metadata": {"name": "eipd01"},
            "spec": {"v4ip": v4, "natGwDp": "gw1"}, "status": {"ip": v4, "ready": true}}))
        .unwrap()
    }

    #[test]
    fn eip_nat_lists_the_kinds_using_it() {
        let l = |ip: &str| json!({"ovn.kubernetes.io/eip_v4_ip": ip});
        let fips = vec![arc::<IptablesFipRule>(
            json!({"metadata": {"name": "f", "labels": l("192.168.0.2")}, "spec": {}}),
        )];
        let snats = vec![arc::<IptablesSnatRule>(
            json!({"metadata": {"name": "s", "labels": l("192.168.0.3")}, "spec": {}}),
        )];
        let dnats = vec![arc::<IptablesDnatRule>(
            json!({"metadata": {"name": "d", "labels": l("192.168.0.2")}, "spec": {}}),
        )];
        assert_eq!(eip_nat("192.168.0.2", &fips, &snats, &dnats), "dnat,fip");
        assert_eq!(eip_nat("192.168.0.3", &fips, &snats, &dnats), "snat");
        assert_eq!(eip_nat("", &fips, &snats, &dnats), "");
    }

    /// Upstream's validations, word for word where it has them.
    #[test]
    fn rules_are_validated_as_upstream() {
        let e = eip("192.168.0.22");
        let dnat = |port: &str, proto: &str, ip: &str| -> IptablesDnatRule {
            serde_json::from_value(json!({"metadata": {"name": "dnat01"},
                "spec": {"eip": "eipd01", "externalPort": port, "internalIp": ip,
                         "internalPort": "80", "protocol": proto}}))
            .unwrap()
        };
        assert_eq!(dnat("8888", "tcp", "10.0.1.10").validate(&e, &[]), Ok(()));
        assert_eq!(dnat("8888", "UDP", "10.0.1.10").validate(&e, &[]), Ok(()));
        assert_eq!(
            dnat("0", "tcp", "10.0.1.10").validate(&e, &[]),
            Err("dnat01: invalid externalPort \"0\": must be between 1 and 65535".into())
        );
        assert!(dnat("8888", "sctp", "10.0.1.10")
            .validate(&e, &[])
            .unwrap_err()
            .contains("invalid protocol"));
        assert!(dnat("8888", "tcp", "fd00::1")
            .validate(&e, &[])
            .unwrap_err()
            .contains("IPv6 is not supported"));
        let mut other = dnat("8888", "TCP", "10.0.1.11");
        other.metadata.name = Some("dnat02".into());
        assert!(dnat("8888", "tcp", "10.0.1.10")
            .validate(&e, &[Arc::new(other)])
            .unwrap_err()
            .contains("duplicate"));
        let snat = |c: &str| -> IptablesSnatRule {
            serde_json::from_value(json!({"metadata": {"name": "s"},
                "spec": {"eip": "eips01", "internalCIDR": c}}))
            .unwrap()
        };
        assert_eq!(snat("10.0.1.0/24").validate(&e, &[]), Ok(()));
        assert_eq!(snat("10.0.1.5").validate(&e, &[]), Ok(()));
        assert!(snat("10.0.1.0/24,10.0.2.0/24").validate(&e, &[]).is_err());
        assert!(snat("fd00::/64").validate(&e, &[]).is_err());
        assert!(snat("").validate(&e, &[]).is_err());
        let fip = |name: &str, labels: Value| -> IptablesFipRule {
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
                "spec": {"eip": "eipf01", "internalIp": "10.0.1.5"}}))
            .unwrap()
        };
        let taken = Arc::new(fip(
            "fip02",
            json!({"ovn.kubernetes.io/eip_v4_ip": "192.168.0.22"}),
        ));
        assert_eq!(
            fip("fip01", json!({})).validate(&e, std::slice::from_ref(&taken)),
            Err("192.168.0.22 is used by the other fip fip02".into())
        );
        assert_eq!(fip("fip02", json!({})).validate(&e, &[taken]), Ok(()));
        let st = fip("fip01", json!({})).ready_status(&e);
        assert_eq!(
            st,
            json!({"ready": true, "v4ip": "192.168.0.22", "v6ip": "", "natGwDp": "gw1",
                   "redo": "", "internalIp": "10.0.1.5"})
        );
    }

    #[test]
    fn eip_spec_checks_labels_and_restore() {
        let mut e = eip("192.168.0.22");
        assert_eq!(invalid_eip(&e), None);
        e.spec.v4ip = "192.168.0.23".into();
        assert!(invalid_eip(&e)
            .unwrap()
            .contains("not support eip change ip"));
        e.spec.v4ip = "nope".into();
        assert_eq!(invalid_eip(&e), Some("failed to parse eip ip nope".into()));
        let l = eip_labels(
            &eip("192.168.0.22"),
            "ovn-vpc-external-network",
            "192.168.0.22",
        );
        assert_eq!(
            l,
            BTreeMap::from([
                (
                    "ovn.kubernetes.io/subnet".into(),
                    "ovn-vpc-external-network".into()
                ),
                ("ovn.kubernetes.io/eip_v4_ip".into(), "192.168.0.22".into()),
                ("ovn.kubernetes.io/vpc-nat-gw-name".into(), "gw1".into()),
            ])
        );
        assert_eq!(
            restored_address(&eip("192.168.0.22")).map(|a| a.0.to_string()),
            Some("192.168.0.22".into())
        );
        let fresh: IptablesEip = serde_json::from_value(
            json!({"metadata": {"name": "x"}, "spec": {"v4ip": "192.168.0.9"}}),
        )
        .unwrap();
        assert_eq!(restored_address(&fresh), None);
    }
}
