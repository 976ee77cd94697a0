//! The OVN-native NAT rules' reconcilers (upstream's `ovn_fip.go`, `ovn_snat.go`,
//! `ovn_dnat.go`), on a VPC's router:
//!
//! - **OvnFip**: a `dnat_and_snat` row per family, `logical_port` = `spec.ipName` and
//!   `external_mac` = the IP's MAC for an IP (distributed on the pod's chassis),
//!   `options:stateless` = `spec.type == distributed`.
//! - **OvnSnatRule**: a `snat` row per family for the subnet's CIDR (`vpcSubnet`), an IP's
//!   address (`ipName`) or `v4IpCidr`/`v6IpCidr`.
//! - **OvnDnatRule**: a load balancer named after the rule with the VIP `eip:externalPort` →
//!   `ip:internalPort`, attached to the router.
//!
//! The internal address and VPC come from the IP (or Vip) and its subnet, else from the spec.
//! Each rule gets upstream's finalizer, labels `ovn.kubernetes.io/eip_v4_ip`/`eip_v6_ip`,
//! annotation `ovn.kubernetes.io/vpc_eip` and status, and stamps its EIP with
//! `ovn.kubernetes.io/vpc` and `ovn.kubernetes.io/vpc_nat`. A ready rule's NAT is what its
//! status says: a changed spec is refused with an event (upstream's webhook and controller
//! refuse it too), and deletion removes exactly the rows the status names.
//!
//! Differences from upstream, where its behaviour is a defect: IPv6 FIPs record `v6Eip`/`v6Ip`
//! and their label (so their rows are deleted with them), an IP-less `type: centralized` FIP
//! gets no `logical_port`/`external_mac` either way, and two DNAT rules may not claim the same
//! `eip:port` and protocol.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use kube_ovn_common::annotations as ann;
use kube_ovn_common::crd::{OvnDnatRule, OvnEip, OvnFip, OvnSnatRule};
use kube_ovn_common::natgw;
use kube_ovn_common::ovn_nat::{self as on, ipv6_label_value};
use kube_ovn_nb::objects::{self, DnatLb, NatRule, NAT_FIP, NAT_SNAT};
use kube_ovn_nb::{Plan, PlanError};
use kube_ovn_runtime::events::EventType;
use kube_ovn_runtime::finalizer;
use kube_ovn_runtime::trigger::hash_of;
use kube_ovn_runtime::Outcome;
use ovsdb::model::Model;
use ovsdb::models::nb::LogicalRouter;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tracing::info;

use crate::context::{Ctx, Error};

/// The OvnFip queue's kind name.
pub const FIP_KIND: &str = "ovn-fip";
/// The OvnSnatRule queue's kind name.
pub const SNAT_KIND: &str = "ovn-snat";
/// The OvnDnatRule queue's kind name.
pub const DNAT_KIND: &str = "ovn-dnat";
/// How often a rule waiting on its EIP, IP or router is looked at again.
const WAIT: Duration = Duration::from_secs(2);

/// What of a rule its reconciler reads (the same as for the iptables rules).
pub use crate::iptables_ctl::signature;

/// What of an EIP its rules wait on: its addresses and readiness.
pub fn eip_signature(e: &OvnEip) -> u64 {
    let st = e.status.clone().unwrap_or_default();
    hash_of(&(st.ready, st.v4_ip, st.v6_ip, st.mac_address, &e.spec.type_))
}

/// The rules of kind `K` naming EIP `eip`.
pub fn rules_of_eip<K: OvnNat>(rules: &[Arc<K>], eip: &str) -> Vec<String> {
    rules
        .iter()
        .filter(|r| r.eip() == eip)
        .map(|r| r.name_any())
        .collect()
}

/// The EIP a rule names (its `status.nat` counts the rule).
pub fn eip_of_rule<K: OvnNat>(r: &K) -> Vec<String> {
    vec![r.eip().to_string()]
}

/// A rule's internal side as resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Internal {
    /// The VPC (router) the rule goes on.
    pub vpc: String,
    /// IPv4 address or CIDR.
    pub v4: String,
    /// IPv6 address or CIDR.
    pub v6: String,
    /// The IP's MAC (an IP CR only).
    pub mac: String,
}

/// The external addresses of a ready EIP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Eip {
    /// IPv4 address.
    pub v4: String,
    /// IPv6 address.
    pub v6: String,
}

/// A NAT rule kind: what its reconciler needs beyond the shared steps.
pub trait OvnNat:
    Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Event wording.
    const WORD: &'static str;
    /// The EIP it names.
    fn eip(&self) -> &str;
    /// Its store.
    fn store(ctx: &Ctx) -> &Store<Self>;
    /// The internal side from the spec and the IP/Vip/Subnet it names.
    fn resolve(&self, ctx: &Ctx) -> Result<Internal, String>;
    /// Conflicts with the others of its kind.
    fn conflicts(&self, _eip: &Eip, _others: &[Arc<Self>]) -> Result<(), String> {
        Ok(())
    }
    /// The rows it states on `vpc`.
    fn state(&self, plan: &mut Plan<'_>, i: &Internal, e: &Eip) -> Result<(), PlanError>;
    /// Removes what its `status` says it stated.
    fn unstate(&self, plan: &mut Plan<'_>) -> Result<(), PlanError>;
    /// Its status once stated.
    fn ready_status(&self, i: &Internal, e: &Eip) -> Value;
    /// Its status's `vpc` (empty before it was first stated).
    fn status_vpc(&self) -> String {
        status_of(self)
            .get("vpc")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }
    /// Its status's `ready`.
    fn is_ready(&self) -> bool {
        status_of(self).get("ready") == Some(&Value::Bool(true))
    }
}

/// A rule's `status` as JSON (`Null` when it has none).
fn status_of<K: Serialize>(rule: &K) -> Value {
    serde_json::to_value(rule)
        .ok()
        .and_then(|v| v.get("status").cloned())
        .unwrap_or(Value::Null)
}

/// The VPC of a subnet (the default VPC's router when the subnet names none).
fn vpc_of_subnet(ctx: &Ctx, subnet: &str) -> Result<String, String> {
    let s = ctx
        .stores
        .subnets
        .get(&ObjectRef::new(subnet))
        .ok_or_else(|| format!("failed to get subnet {subnet}"))?;
    Ok(if s.spec.vpc.is_empty() {
        ctx.config.cluster_router.clone()
    } else {
        s.spec.vpc.clone()
    })
}

/// The internal address of an IP CR or a Vip (`ipType: vip`), with its VPC.
fn endpoint(ctx: &Ctx, ip_type: &str, ip_name: &str) -> Result<Internal, String> {
    if ip_type == on::IP_TYPE_VIP {
        let vip = ctx
            .stores
            .vips
            .get(&ObjectRef::new(ip_name))
            .ok_or_else(|| format!("failed to get vip {ip_name}"))?;
        let st = vip.status.clone().unwrap_or_default();
        return Ok(Internal {
            vpc: vpc_of_subnet(ctx, &vip.spec.subnet)?,
            v4: st.v4ip,
            v6: st.v6ip,
            mac: String::new(),
        });
    }
    let ip = ctx
        .ips
        .get(ip_name)
        .ok_or_else(|| format!("failed to get ip {ip_name}"))?;
    let mut out = Internal {
        vpc: vpc_of_subnet(ctx, &ip.subnet)?,
        mac: ip.mac_address.clone(),
        ..Internal::default()
    };
    for a in ip.ip_address.split(',') {
        match a.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => out.v4 = a.to_string(),
            Ok(IpAddr::V6(_)) => out.v6 = a.to_string(),
            Err(_) => {}
        }
    }
    Ok(out)
}

/// The internal side named by `ipName` (an IP, or a Vip with `ipType: vip`), else by the
/// spec's VPC and addresses.
fn named_or_given(
    ctx: &Ctx,
    (ip_type, ip_name): (&str, &str),
    (vpc, v4, v6): (&str, &str, &str),
) -> Result<Internal, String> {
    if ip_name.is_empty() {
        Ok(Internal {
            vpc: vpc.to_string(),
            v4: v4.to_string(),
            v6: v6.to_string(),
            mac: String::new(),
        })
    } else {
        endpoint(ctx, ip_type, ip_name)
    }
}

/// A `host:port` joined as `net.JoinHostPort` does (IPv6 in brackets).
fn host_port(ip: &str, port: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Whether the NB has the router `vpc` (a rule waits for its VPC's router).
fn router_exists(ctx: &Ctx, vpc: &str) -> bool {
    let cache = ctx.nb.cache();
    cache
        .table(LogicalRouter::TABLE)
        .is_some_and(|t| t.by_name(vpc).next().is_some())
}

impl OvnNat for OvnFip {
    const WORD: &'static str = natgw::FIP_USING_EIP;
    fn eip(&self) -> &str {
        &self.spec.ovn_eip
    }
    fn store(ctx: &Ctx) -> &Store<Self> {
        &ctx.stores.ovn_fips
    }
    fn resolve(&self, ctx: &Ctx) -> Result<Internal, String> {
        let name = self.name_any();
        let s = &self.spec;
        let i = named_or_given(ctx, (&s.ip_type, &s.ip_name), (&s.vpc, &s.v4_ip, &s.v6_ip))?;
        if i.vpc.is_empty() {
            return Err(format!("failed to create fip {name}, no vpc"));
        }
        if i.v4.is_empty() && i.v6.is_empty() {
            return Err(format!("failed to create fip {name}, no internal ip"));
        }
        Ok(i)
    }
    fn conflicts(&self, eip: &Eip, others: &[Arc<Self>]) -> Result<(), String> {
        let name = self.name_any();
        match others.iter().find(|o| {
            o.name_any() != name
                && o.metadata.deletion_timestamp.is_none()
                && o.status.as_ref().is_some_and(|s| {
                    (!eip.v4.is_empty() && s.v4_eip == eip.v4)
                        || (!eip.v6.is_empty() && s.v6_eip == eip.v6)
                })
        }) {
            Some(o) => Err(format!(
                "failed to add fip {name}, {} is used by the other fip {}",
                if eip.v4.is_empty() { &eip.v6 } else { &eip.v4 },
                o.name_any()
            )),
            None => Ok(()),
        }
    }
    fn state(&self, plan: &mut Plan<'_>, i: &Internal, e: &Eip) -> Result<(), PlanError> {
        let stateless = self.spec.type_ == on::FIP_DISTRIBUTED;
        // Distributed on the pod's chassis when both port and MAC are known (an IP only).
        let (port, mac) = if !self.spec.ip_name.is_empty() && !i.mac.is_empty() {
            (self.spec.ip_name.clone(), i.mac.clone())
        } else {
            (String::new(), String::new())
        };
        for (external, logical) in pairs(i, e) {
            let rule = NatRule {
                kind: NAT_FIP,
                external_ip: external,
                logical_ip: logical,
                logical_port: port.clone(),
                external_mac: mac.clone(),
                stateless: Some(stateless),
            };
            objects::nat_rule(plan, &i.vpc, &rule)?;
        }
        Ok(())
    }
    fn unstate(&self, plan: &mut Plan<'_>) -> Result<(), PlanError> {
        let st = self.status.clone().unwrap_or_default();
        for (e, l) in [(&st.v4_eip, &st.v4_ip), (&st.v6_eip, &st.v6_ip)] {
            if !e.is_empty() && !l.is_empty() {
                objects::delete_nat_rule(plan, &st.vpc, NAT_FIP, e, l)?;
            }
        }
        Ok(())
    }
    fn ready_status(&self, i: &Internal, e: &Eip) -> Value {
        json!({"ready": true, "vpc": i.vpc, "v4Eip": e.v4, "v6Eip": e.v6, "v4Ip": i.v4,
               "v6Ip": i.v6, "macAddress": i.mac})
    }
}

/// The (external, logical) address pairs of a FIP: same family, else across families when
/// each side has one family only (upstream's v4↔v6 pairing).
fn pairs(i: &Internal, e: &Eip) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if !i.v4.is_empty() && !e.v4.is_empty() {
        out.push((e.v4.clone(), i.v4.clone()));
    }
    if !i.v6.is_empty() && !e.v6.is_empty() {
        out.push((e.v6.clone(), i.v6.clone()));
    }
    if out.is_empty() {
        if !i.v4.is_empty() && !e.v6.is_empty() {
            out.push((e.v6.clone(), i.v4.clone()));
        } else if !i.v6.is_empty() && !e.v4.is_empty() {
            out.push((e.v4.clone(), i.v6.clone()));
        }
    }
    out
}

impl OvnNat for OvnSnatRule {
    const WORD: &'static str = natgw::SNAT_USING_EIP;
    fn eip(&self) -> &str {
        &self.spec.ovn_eip
    }
    fn store(ctx: &Ctx) -> &Store<Self> {
        &ctx.stores.ovn_snats
    }
    fn resolve(&self, ctx: &Ctx) -> Result<Internal, String> {
        let name = self.name_any();
        let s = &self.spec;
        let mut i = Internal {
            vpc: s.vpc.clone(),
            v4: s.v4_ip_cidr.clone(),
            v6: s.v6_ip_cidr.clone(),
            mac: String::new(),
        };
        if i.v4.is_empty() && i.v6.is_empty() && !s.vpc_subnet.is_empty() {
            let sub = ctx
                .stores
                .subnets
                .get(&ObjectRef::new(&s.vpc_subnet))
                .ok_or_else(|| format!("failed to get subnet {}", s.vpc_subnet))?;
            i.vpc = vpc_of_subnet(ctx, &s.vpc_subnet)?;
            for cidr in sub.spec.cidr_block.split(',') {
                if cidr.contains(':') {
                    i.v6 = cidr.to_string();
                } else if !cidr.is_empty() {
                    i.v4 = cidr.to_string();
                }
            }
        } else if i.v4.is_empty() && i.v6.is_empty() && !s.ip_name.is_empty() {
            let e = endpoint(ctx, "", &s.ip_name)?;
            i.vpc = e.vpc;
            i.v4 = e.v4;
            i.v6 = e.v6;
        }
        if i.vpc.is_empty() {
            return Err(format!("failed to get vpc for snat {name}"));
        }
        if i.v4.is_empty() && i.v6.is_empty() {
            return Err(format!("failed to get subnet or ip cidr for snat {name}"));
        }
        Ok(i)
    }
    fn state(&self, plan: &mut Plan<'_>, i: &Internal, e: &Eip) -> Result<(), PlanError> {
        for (external, logical) in [(&e.v4, &i.v4), (&e.v6, &i.v6)] {
            if external.is_empty() || logical.is_empty() {
                continue;
            }
            let rule = NatRule {
                kind: NAT_SNAT,
                external_ip: external.clone(),
                logical_ip: logical.clone(),
                logical_port: String::new(),
                external_mac: String::new(),
                stateless: None,
            };
            objects::nat_rule(plan, &i.vpc, &rule)?;
        }
        Ok(())
    }
    fn unstate(&self, plan: &mut Plan<'_>) -> Result<(), PlanError> {
        let st = self.status.clone().unwrap_or_default();
        for (e, l) in [(&st.v4_eip, &st.v4_ip_cidr), (&st.v6_eip, &st.v6_ip_cidr)] {
            if !e.is_empty() && !l.is_empty() {
                objects::delete_nat_rule(plan, &st.vpc, NAT_SNAT, e, l)?;
            }
        }
        Ok(())
    }
    fn ready_status(&self, i: &Internal, e: &Eip) -> Value {
        json!({"ready": true, "vpc": i.vpc, "v4Eip": e.v4, "v6Eip": e.v6, "v4IpCidr": i.v4,
               "v6IpCidr": i.v6})
    }
}

fn port_ok(what: &str, name: &str, p: &str) -> Result<(), String> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(()),
        _ => Err(format!(
            "failed to create dnat {name}, invalid {what} {p:?}: must be 1-65535"
        )),
    }
}

impl OvnNat for OvnDnatRule {
    const WORD: &'static str = natgw::DNAT_USING_EIP;
    fn eip(&self) -> &str {
        &self.spec.ovn_eip
    }
    fn store(ctx: &Ctx) -> &Store<Self> {
        &ctx.stores.ovn_dnats
    }
    fn resolve(&self, ctx: &Ctx) -> Result<Internal, String> {
        let name = self.name_any();
        let s = &self.spec;
        let i = named_or_given(ctx, (&s.ip_type, &s.ip_name), (&s.vpc, &s.v4_ip, &s.v6_ip))?;
        if i.v4.is_empty() && i.v6.is_empty() {
            return Err(format!("failed to create dnat {name}, no internal ip"));
        }
        if i.vpc.is_empty() {
            return Err(format!("failed to create dnat {name}, no vpc"));
        }
        port_ok("external port", &name, &s.external_port)?;
        port_ok("internal port", &name, &s.internal_port)?;
        let p = s.protocol.to_ascii_lowercase();
        if p != "tcp" && p != "udp" {
            return Err(format!(
                "failed to create dnat {name}, invalid protocol {:?}: must be tcp or udp",
                s.protocol
            ));
        }
        Ok(i)
    }
    fn conflicts(&self, _eip: &Eip, others: &[Arc<Self>]) -> Result<(), String> {
        let name = self.name_any();
        let s = &self.spec;
        match others.iter().find(|o| {
            o.name_any() != name
                && o.metadata.deletion_timestamp.is_none()
                && o.spec.ovn_eip == s.ovn_eip
                && o.spec.external_port == s.external_port
                && o.spec.protocol.eq_ignore_ascii_case(&s.protocol)
        }) {
            Some(o) => Err(format!(
                "failed to create dnat {name}, eip {} port {} already used by dnat {}",
                s.ovn_eip,
                s.external_port,
                o.name_any()
            )),
            None => Ok(()),
        }
    }
    fn state(&self, plan: &mut Plan<'_>, i: &Internal, e: &Eip) -> Result<(), PlanError> {
        let name = self.name_any();
        let protocol = self.spec.protocol.to_ascii_lowercase();
        for (external, internal) in [(&e.v4, &i.v4), (&e.v6, &i.v6)] {
            if external.is_empty() || internal.is_empty() {
                continue;
            }
            let lb = DnatLb {
                name: &name,
                router: &i.vpc,
                protocol: &protocol,
                vip: host_port(external, &self.spec.external_port),
                backend: host_port(internal, &self.spec.internal_port),
            };
            objects::dnat_lb(plan, &lb)?;
        }
        Ok(())
    }
    fn unstate(&self, plan: &mut Plan<'_>) -> Result<(), PlanError> {
        objects::delete_dnat_lb(plan, &self.name_any())
    }
    fn ready_status(&self, i: &Internal, e: &Eip) -> Value {
        let s = &self.spec;
        json!({"ready": true, "vpc": i.vpc, "v4Eip": e.v4, "v6Eip": e.v6, "v4Ip": i.v4,
               "v6Ip": i.v6, "protocol": s.protocol, "ipName": s.ip_name,
               "internalPort": s.internal_port, "externalPort": s.external_port})
    }
}

/// Whether a ready rule's wanted status differs from what it has (a spec change upstream
/// refuses).
fn changed(have: &Value, want: &Value) -> Option<String> {
    want.as_object()?
        .iter()
        .filter(|(k, _)| *k != "ready")
        .find(|(k, v)| {
            have.get(k.as_str()).unwrap_or(&Value::Null) != *v
                && !(v.as_str() == Some("") && have.get(k.as_str()).is_none())
        })
        .map(|(k, v)| {
            format!(
                "{k} from {} to {v}",
                have.get(k.as_str()).unwrap_or(&Value::Null)
            )
        })
}

async fn warn<K: OvnNat>(ctx: &Ctx, rule: &K, reason: &str, msg: &str) {
    ctx.event(&rule.object_ref(&()), EventType::Warning, reason, msg)
        .await;
}

/// Reconciles the rule `name` of kind `K`.
pub async fn reconcile<K: OvnNat>(ctx: Arc<Ctx>, name: String) -> Result<Outcome, Error> {
    let api: Api<K> = Api::all(ctx.client.clone());
    let Some(rule) = K::store(&ctx).get(&ObjectRef::new(&name)) else {
        return Ok(Outcome::Done);
    };
    let eip_name = rule.eip().to_string();
    if rule.meta().deletion_timestamp.is_some() {
        if !rule.status_vpc().is_empty() {
            let r = rule.clone();
            ctx.apply(&format!("delete {} {name}", K::WORD), |plan| {
                r.unstate(plan)
            })
            .await?;
        }
        finalizer::remove(&api, &*rule, ann::FINALIZER).await?;
        ctx.queues.add(crate::ovn_eip_ctl::KIND, eip_name);
        return Ok(Outcome::Done);
    }
    if eip_name.is_empty() {
        warn(
            &ctx,
            &*rule,
            "ValidateNatRuleFailed",
            &format!("{} {name}: should set eip", K::WORD),
        )
        .await;
        return Ok(Outcome::Done);
    }
    let Some(eip) = ctx.stores.ovn_eips.get(&ObjectRef::new(&eip_name)) else {
        warn(
            &ctx,
            &*rule,
            "ValidateNatRuleFailed",
            &format!("failed to get ovn eip {eip_name}"),
        )
        .await;
        return Ok(Outcome::After(WAIT));
    };
    if eip.spec.type_ == on::EIP_TYPE_LSP {
        let msg = format!("ovn nat {name} can not use type lsp eip {eip_name}");
        warn(&ctx, &*rule, "ValidateNatRuleFailed", &msg).await;
        return Ok(Outcome::Done);
    }
    let est = eip.status.clone().unwrap_or_default();
    let e = Eip {
        v4: est.v4_ip.clone(),
        v6: est.v6_ip.clone(),
    };
    if e.v4.is_empty() && e.v6.is_empty() {
        let msg = format!("eip '{eip_name}' is not ready, has no ip");
        warn(&ctx, &*rule, "ValidateNatRuleFailed", &msg).await;
        return Ok(Outcome::After(WAIT));
    }
    let others = K::store(&ctx).state();
    let internal = match rule
        .resolve(&ctx)
        .and_then(|i| rule.conflicts(&e, &others).map(|()| i))
    {
        Ok(i) => i,
        Err(msg) => {
            warn(&ctx, &*rule, "ValidateNatRuleFailed", &msg).await;
            // The IP, Vip or subnet may come; an invalid spec waits for a new one as well.
            return Ok(Outcome::After(WAIT));
        }
    };
    let want = rule.ready_status(&internal, &e);
    let have = status_of(rule.as_ref());
    if rule.is_ready() {
        if let Some(what) = changed(&have, &want) {
            let msg = format!("not support change {} {name}: {what}", K::WORD);
            warn(&ctx, &*rule, "UpdateNatRuleFailed", &msg).await;
            return Ok(Outcome::Done);
        }
    }
    let rule = match finalizer::add(&api, &*rule, ann::FINALIZER).await? {
        Some(r) => Arc::new(r),
        None => rule,
    };
    if !router_exists(&ctx, &internal.vpc) {
        let msg = format!("failed to get logical router {}", internal.vpc);
        warn(&ctx, &*rule, "ValidateNatRuleFailed", &msg).await;
        return Ok(Outcome::After(WAIT));
    }
    {
        let (r, i, e) = (rule.clone(), internal.clone(), e.clone());
        ctx.apply(&format!("{} {name}", K::WORD), |plan| r.state(plan, &i, &e))
            .await?;
    }
    let mut labels = rule.meta().labels.clone().unwrap_or_default();
    labels.insert(natgw::LABEL_EIP_V4_IP.into(), e.v4.clone());
    labels.insert(on::LABEL_EIP_V6_IP.into(), ipv6_label_value(&e.v6));
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
    if changed(&have, &want).is_some() || !rule.is_ready() {
        info!(kind = K::WORD, rule = %name, eip = %eip_name, vpc = %internal.vpc, "ovn nat rule ready");
        match api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": want})),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    stamp_eip(&ctx, &eip, &internal.vpc, &name).await?;
    ctx.queues.add(crate::ovn_eip_ctl::KIND, eip_name);
    Ok(Outcome::Done)
}

/// Labels the EIP with the rule's VPC and annotates it with the rule (upstream's
/// `natLabelAndAnnoOvnEip`).
async fn stamp_eip(ctx: &Ctx, eip: &OvnEip, vpc: &str, rule: &str) -> Result<(), Error> {
    let labels = eip.labels();
    let annotations = eip.annotations();
    let mut want_labels = BTreeMap::new();
    if labels.get(natgw::LABEL_VPC).map(String::as_str) != Some(vpc) {
        want_labels.insert(natgw::LABEL_VPC.to_string(), vpc.to_string());
    }
    let stamp_nat = annotations.get(on::ANNOTATION_VPC_NAT).map(String::as_str) != Some(rule);
    if want_labels.is_empty() && !stamp_nat {
        return Ok(());
    }
    let mut meta = json!({});
    if !want_labels.is_empty() {
        meta["labels"] = json!(want_labels);
    }
    if stamp_nat {
        meta["annotations"] = json!({ on::ANNOTATION_VPC_NAT: rule });
    }
    Api::<OvnEip>::all(ctx.client.clone())
        .patch(
            &eip.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": meta })),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fip_pairs_same_family_else_across() {
        let i = |v4: &str, v6: &str| Internal {
            vpc: "vpc1".into(),
            v4: v4.into(),
            v6: v6.into(),
            mac: String::new(),
        };
        let e = |v4: &str, v6: &str| Eip {
            v4: v4.into(),
            v6: v6.into(),
        };
        assert_eq!(
            pairs(&i("10.0.1.5", ""), &e("172.19.0.5", "")),
            vec![("172.19.0.5".to_string(), "10.0.1.5".to_string())]
        );
        assert_eq!(
            pairs(&i("10.0.1.5", "fd00::5"), &e("172.19.0.5", "fd10::5")).len(),
            2
        );
        assert_eq!(
            pairs(&i("10.0.1.5", ""), &e("", "fd10::5")),
            vec![("fd10::5".to_string(), "10.0.1.5".to_string())]
        );
        assert_eq!(host_port("fd10::5", "80"), "[fd10::5]:80");
        assert_eq!(host_port("10.0.0.1", "80"), "10.0.0.1:80");
    }

    #[test]
    fn a_ready_rule_sees_spec_changes() {
        let have = json!({"ready": true, "vpc": "vpc1", "v4Eip": "172.19.0.5", "v4Ip": "10.0.1.5"});
        let same = json!({"ready": true, "vpc": "vpc1", "v4Eip": "172.19.0.5", "v4Ip": "10.0.1.5", "v6Ip": ""});
        assert_eq!(changed(&have, &same), None);
        let moved =
            json!({"ready": true, "vpc": "vpc1", "v4Eip": "172.19.0.5", "v4Ip": "10.0.1.6"});
        assert!(changed(&have, &moved).unwrap().starts_with("v4Ip"));
    }

    #[test]
    fn dnat_ports_and_protocols_are_checked() {
        assert!(port_ok("external port", "d", "8080").is_ok());
        assert!(port_ok("external port", "d", "0").is_err());
        assert!(port_ok("external port", "d", "70000").is_err());
        assert!(port_ok("external port", "d", "").is_err());
    }
}
