//! The OvnEip reconciler (upstream's `ovn_eip.go`): an address of an external subnet
//! (`spec.externalSubnet`, else `--external-gateway-switch`) from IPAM under the EIP's name,
//! written back to the spec with upstream's labels (`ovn.kubernetes.io/subnet`,
//! `ovn_eip_type`, `eip_v4_ip`, `eip_v6_ip`) and finalizer; `status` ready with the address,
//! MAC, type and `nat` (the kinds of rule using it, `dnat,fip,snat` order). An `lsp` EIP gets
//! its bare switch port; an `lrp` EIP is a VPC's gateway port address (the Vpc reconciler
//! makes the port). Changing a ready EIP's address is refused; deleting it waits until no rule
//! uses it, then removes its port and frees the address.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use kube_ovn_common::annotations as ann;
use kube_ovn_common::crd::{OvnDnatRule, OvnEip, OvnFip, OvnSnatRule};
use kube_ovn_common::natgw;
use kube_ovn_common::ovn_nat::{self as on, ipv6_label_value};
use kube_ovn_ipam::Request;
use kube_ovn_nb::objects;
use kube_ovn_runtime::events::EventType;
use kube_ovn_runtime::finalizer;
use kube_ovn_runtime::trigger::{hash_json, hash_of};
use kube_ovn_runtime::Outcome;
use serde_json::json;
use tracing::info;

use crate::context::{Ctx, Error};

/// The OvnEip queue's kind name.
pub const KIND: &str = "ovn-eip";
/// How often an EIP waiting for its subnet is looked at again.
const WAIT: Duration = Duration::from_secs(2);

/// What of an EIP its reconciler reads: spec, labels, finalizers, deletion, status.
pub fn signature(e: &OvnEip) -> u64 {
    hash_of(&(
        hash_json(&e.spec),
        hash_json(&e.status),
        hash_json(&e.metadata.labels),
        hash_json(&e.metadata.finalizers),
        e.metadata.deletion_timestamp.is_some(),
    ))
}

/// The external subnet of an EIP.
pub fn subnet_of<'a>(e: &'a OvnEip, default_switch: &'a str) -> &'a str {
    if e.spec.external_subnet.is_empty() {
        default_switch
    } else {
        &e.spec.external_subnet
    }
}

/// Whether a rule's labels name the EIP's addresses.
fn labelled(labels: &BTreeMap<String, String>, v4: &str, v6: &str) -> bool {
    (!v4.is_empty() && labels.get(natgw::LABEL_EIP_V4_IP).map(String::as_str) == Some(v4))
        || (!v6.is_empty()
            && labels.get(on::LABEL_EIP_V6_IP).map(String::as_str) == Some(&ipv6_label_value(v6)))
}

/// `status.nat` of an EIP with these addresses: the kinds of rule labelled with them, in
/// upstream's `dnat,fip,snat` order.
pub fn eip_nat(
    v4: &str,
    v6: &str,
    fips: &[Arc<OvnFip>],
    snats: &[Arc<OvnSnatRule>],
    dnats: &[Arc<OvnDnatRule>],
) -> String {
    let mut out = Vec::new();
    if dnats.iter().any(|d| labelled(d.labels(), v4, v6)) {
        out.push(natgw::DNAT_USING_EIP);
    }
    if fips.iter().any(|f| labelled(f.labels(), v4, v6)) {
        out.push(natgw::FIP_USING_EIP);
    }
    if snats.iter().any(|s| labelled(s.labels(), v4, v6)) {
        out.push(natgw::SNAT_USING_EIP);
    }
    out.join(",")
}

/// The labels an EIP carries (upstream's `createOrUpdateOvnEipCR`), beside its own.
pub fn eip_labels(
    eip: &OvnEip,
    subnet: &str,
    kind: &str,
    v4: &str,
    v6: &str,
) -> BTreeMap<String, String> {
    let mut l = eip.labels().clone();
    l.insert(ann::LABEL_SUBNET.into(), subnet.into());
    l.insert(on::LABEL_EIP_TYPE.into(), kind.into());
    l.insert(natgw::LABEL_EIP_V4_IP.into(), v4.into());
    l.insert(on::LABEL_EIP_V6_IP.into(), ipv6_label_value(v6));
    l
}

/// The usage of an EIP (`nat` when unset).
pub fn usage(e: &OvnEip) -> &str {
    if e.spec.type_.is_empty() {
        on::EIP_TYPE_NAT
    } else {
        &e.spec.type_
    }
}

/// Why a ready EIP's spec cannot be served (upstream refuses any change once ready).
pub fn invalid_eip(e: &OvnEip) -> Option<String> {
    let name = e.name_any();
    if e.spec.v6_ip.chars().any(|c| c.is_ascii_uppercase()) {
        return Some(format!(
            "eip {name} v6 ip address {} can not contain upper case",
            e.spec.v6_ip
        ));
    }
    for ip in [&e.spec.v4_ip, &e.spec.v6_ip] {
        if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
            return Some(format!("failed to parse eip {name} ip {ip}"));
        }
    }
    let st = e.status.clone().unwrap_or_default();
    if st.ready {
        for (what, spec, status) in [
            ("v4 ip", &e.spec.v4_ip, &st.v4_ip),
            ("v6 ip", &e.spec.v6_ip, &st.v6_ip),
            ("mac", &e.spec.mac_address, &st.mac_address),
            ("type", &usage(e).to_string(), &st.type_),
        ] {
            if !status.is_empty() && spec != status {
                return Some(format!(
                    "not support change {what} of ovn eip {name}, old '{status}', new '{spec}'"
                ));
            }
        }
    }
    None
}

/// Gives an EIP's address back to IPAM (its subnet's counters follow).
fn release(ctx: &Ctx, name: &str, subnet: &str) {
    if !ctx.ipam().release_pod(name).is_empty() {
        ctx.queues
            .add(crate::subnet_ctl::STATUS_KIND, subnet.to_string());
    }
}

/// Takes (or finds again) the address of EIP `name` in `subnet`: `ips` when given, else a free
/// one; the owner and port are the EIP's name, as upstream. Returns the addresses and MAC.
pub fn allocate(
    ctx: &Ctx,
    name: &str,
    subnet: &str,
    ips: Vec<IpAddr>,
    mac: Option<String>,
    check_conflict: bool,
) -> Result<(Option<IpAddr>, Option<IpAddr>, String), Error> {
    let req = Request {
        pod: name.to_string(),
        nic: name.to_string(),
        ips,
        mac,
        check_conflict,
        ..Request::default()
    };
    let a = ctx.ipam().allocate(subnet, &req)?;
    Ok((a.v4, a.v6, a.mac))
}

/// Reconciles the OvnEip `name`.
pub async fn reconcile(ctx: Arc<Ctx>, name: String) -> Result<Outcome, Error> {
    let api: Api<OvnEip> = Api::all(ctx.client.clone());
    let default_switch = ctx.config.external_gateway_switch.clone();
    let Some(eip) = ctx.stores.ovn_eips.get(&ObjectRef::new(&name)) else {
        // Gone without our finalizer (never reconciled, or removed by hand).
        let subnet = default_switch.clone();
        release(&ctx, &name, &subnet);
        return Ok(Outcome::Done);
    };
    let subnet = subnet_of(&eip, &default_switch).to_string();
    let kind = usage(&eip).to_string();
    let nat = eip_nat(
        &eip.spec.v4_ip,
        &eip.spec.v6_ip,
        &ctx.stores.ovn_fips.state(),
        &ctx.stores.ovn_snats.state(),
        &ctx.stores.ovn_dnats.state(),
    );
    if eip.metadata.deletion_timestamp.is_some() {
        if !nat.is_empty() {
            // A rule's deletion queues its EIP again.
            let msg = format!("ovn eip {name} is still being used by NAT rules: {nat}");
            ctx.event(&eip.object_ref(&()), EventType::Warning, "EipInUse", &msg)
                .await;
            return Ok(Outcome::Done);
        }
        let port = name.clone();
        ctx.apply(&format!("delete ovn eip {name}"), |plan| {
            match kind.as_str() {
                on::EIP_TYPE_LSP => objects::remove_port(plan, &port),
                on::EIP_TYPE_LRP => objects::remove_router_port(plan, &port),
                _ => Ok(()),
            }
        })
        .await?;
        release(&ctx, &name, &subnet);
        finalizer::remove(&api, &*eip, ann::FINALIZER).await?;
        return Ok(Outcome::Done);
    }
    if let Some(why) = invalid_eip(&eip) {
        ctx.event(
            &eip.object_ref(&()),
            EventType::Warning,
            "InvalidOvnEip",
            &why,
        )
        .await;
        return Ok(Outcome::Done);
    }
    if ctx.stores.subnets.get(&ObjectRef::new(&subnet)).is_none()
        || ctx.ipam().subnet(&subnet).is_none()
    {
        let msg = format!("failed to get external subnet {subnet} of ovn eip {name}");
        ctx.event(
            &eip.object_ref(&()),
            EventType::Warning,
            "AcquireAddressFailed",
            &msg,
        )
        .await;
        return Ok(Outcome::After(WAIT));
    }
    let st = eip.status.clone().unwrap_or_default();
    let held = !st.mac_address.is_empty() || !eip.spec.mac_address.is_empty();
    let parse = |s: &str| s.parse::<IpAddr>().ok();
    let asked: Vec<IpAddr> = [parse(&eip.spec.v4_ip), parse(&eip.spec.v6_ip)]
        .into_iter()
        .flatten()
        .collect();
    let mac = (!eip.spec.mac_address.is_empty()).then(|| eip.spec.mac_address.clone());
    let (v4, v6, mac) = match allocate(&ctx, &name, &subnet, asked, mac, !held) {
        Ok(a) => a,
        Err(e) => {
            ctx.event(
                &eip.object_ref(&()),
                EventType::Warning,
                "AcquireAddressFailed",
                &e.to_string(),
            )
            .await;
            return Err(e);
        }
    };
    if !held {
        ctx.queues
            .add(crate::subnet_ctl::STATUS_KIND, subnet.clone());
    }
    let v4 = v4.map(|a| a.to_string()).unwrap_or_default();
    let v6 = v6.map(|a| a.to_string()).unwrap_or_default();
    let mut want = (*eip).clone();
    want.spec.v4_ip = v4.clone();
    want.spec.v6_ip = v6.clone();
    want.spec.mac_address = mac.clone();
    want.spec.type_ = kind.clone();
    want.metadata.labels = Some(eip_labels(&eip, &subnet, &kind, &v4, &v6));
    let fins = want.metadata.finalizers.get_or_insert_with(Vec::new);
    if !fins.iter().any(|f| f == ann::FINALIZER) {
        fins.push(ann::FINALIZER.into());
    }
    if want != *eip {
        match api.replace(&name, &PostParams::default(), &want).await {
            Ok(_) => info!(eip = %name, v4 = %v4, v6 = %v6, "ovn eip allocated"),
            // A newer version arrives with its own event and reconcile.
            Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Outcome::Done),
            Err(e) => return Err(e.into()),
        }
    }
    if kind == on::EIP_TYPE_LSP {
        let ips: Vec<String> = [&v4, &v6]
            .into_iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect();
        let (sw, port, m) = (subnet.clone(), name.clone(), mac.clone());
        ctx.apply(&format!("ovn eip {name} port"), |plan| {
            objects::bare_port(plan, &sw, &port, &m, &ips)
        })
        .await?;
    }
    // An `lsp` EIP is made ready by the node it serves (upstream's daemon, `ovnext0`).
    let ready = kind != on::EIP_TYPE_LSP || st.ready;
    let want_status = json!({"ready": ready, "v4Ip": v4, "v6Ip": v6, "macAddress": mac,
                             "type": kind, "nat": nat});
    let current = serde_json::to_value(&st).unwrap_or_default();
    let differs = want_status
        .as_object()
        .into_iter()
        .flatten()
        .any(|(k, v)| current.get(k) != Some(v));
    if differs {
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": want_status })),
        )
        .await?;
    }
    Ok(Outcome::Done)
}

/// An EIP's address as the IPAM restore reads it back: `status`, else the spec a MAC shows
/// was allocated.
pub fn restored_address(e: &OvnEip) -> Option<(Vec<IpAddr>, String)> {
    let st = e.status.clone().unwrap_or_default();
    let (v4, v6, mac) = if !st.mac_address.is_empty() {
        (st.v4_ip, st.v6_ip, st.mac_address)
    } else if !e.spec.mac_address.is_empty() {
        (
            e.spec.v4_ip.clone(),
            e.spec.v6_ip.clone(),
            e.spec.mac_address.clone(),
        )
    } else {
        return None;
    };
    let ips: Vec<IpAddr> = [v4, v6].iter().filter_map(|s| s.parse().ok()).collect();
    (!ips.is_empty()).then_some((ips, mac))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde_json::Value;

    fn arc<T: DeserializeOwned>(v: Value) -> Arc<T> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn nat_lists_the_kinds_labelled_with_the_address() {
        let l = |ip: &str| json!({"ovn.kubernetes.io/eip_v4_ip": ip});
        let fips = vec![arc::<OvnFip>(
            json!({"metadata": {"name": "f", "labels": l("10.5.0.2")}, "spec": {}}),
        )];
        let snats = vec![arc::<OvnSnatRule>(json!({"metadata": {"name": "s",
            "labels": {"ovn.kubernetes.io/eip_v6_ip": "fd00--2"}}, "spec": {}}))];
        let dnats = vec![arc::<OvnDnatRule>(
            json!({"metadata": {"name": "d", "labels": l("10.5.0.2")}, "spec": {}}),
        )];
        assert_eq!(eip_nat("10.5.0.2", "", &fips, &snats, &dnats), "dnat,fip");
        assert_eq!(eip_nat("", "fd00::2", &fips, &snats, &dnats), "snat");
        assert_eq!(eip_nat("10.5.0.3", "", &fips, &snats, &dnats), "");
        assert_eq!(eip_nat("", "", &fips, &snats, &dnats), "");
    }

    #[test]
    fn ready_eips_refuse_changes_and_restore_reads_status() {
        let mut e: OvnEip = serde_json::from_value(json!({"metadata": {"name": "e1"},
            "spec": {"externalSubnet": "external", "v4Ip": "10.5.0.2", "macAddress": "00:00:00:00:00:01", "type": "nat"},
            "status": {"ready": true, "v4Ip": "10.5.0.2", "macAddress": "00:00:00:00:00:01", "type": "nat"}}))
        .unwrap();
        assert_eq!(invalid_eip(&e), None);
        assert_eq!(
            restored_address(&e),
            Some((
                vec!["10.5.0.2".parse().unwrap()],
                "00:00:00:00:00:01".into()
            ))
        );
        e.spec.v4_ip = "10.5.0.3".into();
        assert!(invalid_eip(&e)
            .unwrap()
            .contains("not support change v4 ip"));
        e.spec.v4_ip = "nope".into();
        assert!(invalid_eip(&e).unwrap().contains("failed to parse"));
        e.spec.v4_ip = "10.5.0.2".into();
        e.spec.v6_ip = "FD00::1".into();
        assert!(invalid_eip(&e).unwrap().contains("upper case"));
        let fresh: OvnEip = serde_json::from_value(
            json!({"metadata": {"name": "x"}, "spec": {"v4Ip": "10.5.0.9"}}),
        )
        .unwrap();
        assert_eq!(restored_address(&fresh), None);
        assert_eq!(usage(&fresh), "nat");
        let l = eip_labels(&fresh, "external", "nat", "10.5.0.9", "fd00::9");
        assert_eq!(l["ovn.kubernetes.io/eip_v6_ip"], "fd00--9");
        assert_eq!(l["ovn.kubernetes.io/ovn_eip_type"], "nat");
        assert_eq!(l["ovn.kubernetes.io/subnet"], "external");
    }
}
