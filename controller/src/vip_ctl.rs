//! Vip reconciler: a `kubeovn.io/v1` Vip reserves an address (random, or the requested
//! `v4ip`/`v6ip`/`macAddress`) in its subnet, as upstream does — the reservation is written back
//! to spec and status with the `ovn.kubernetes.io/subnet` and `ovn.kubernetes.io/ip_reserved`
//! labels and our finalizer, in one update. With a namespace, the address gets a `virtual` port
//! named after the Vip whose `virtual-parents` are the selected pods of that namespace that list
//! the Vip in their `ovn.kubernetes.io/aaps` annotation; a `switch_lb_vip` Vip (a SwitchLBRule's
//! address) also gets a port answering ARP with the gateway's MAC, a `kube_host_vm_vip` one a
//! plain port. Spec addresses are immutable once reserved; deletion releases the address and
//! the ports before the finalizer goes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use kube_ovn_ipam::Request;
use kube_ovn_nb::objects::{self, VipPort};
use tracing::info;

use crate::context::{Ctx, Error};
use crate::pod_info::PodInfo;
use kube_ovn_common::annotations as ann;
use kube_ovn_common::crd::Vip;
use kube_ovn_runtime::events::EventType;
use kube_ovn_runtime::finalizer;
use kube_ovn_runtime::trigger::{hash_json, hash_of};
use kube_ovn_runtime::Outcome;

/// The Vip queue's kind name.
pub const KIND: &str = "vip";
/// `spec.type` of a SwitchLBRule's address.
pub const SWITCH_LB_VIP: &str = "switch_lb_vip";
/// `spec.type` of a host-network VM's address.
pub const KUBE_HOST_VM_VIP: &str = "kube_host_vm_vip";
/// The finalizer name older upstream releases used; dropped where found.
const DEPRECATED_FINALIZER: &str = "kube-ovn-controller";

/// What of a Vip the reconciler reads: spec, deletion, what it wrote (status, labels,
/// finalizers — so a tampered record is put back).
pub fn signature(v: &Vip) -> u64 {
    hash_of(&(
        hash_json(&v.spec),
        hash_json(&v.status),
        hash_json(&v.metadata.labels),
        hash_json(&v.metadata.finalizers),
        v.metadata.deletion_timestamp.is_some(),
    ))
}

/// What of a pod its Vips' virtual parents depend on.
pub fn pod_signature(p: &PodInfo) -> u64 {
    let a = p.annotations();
    hash_of(&(
        a.get(ann::AAPS),
        a.get(ann::LOGICAL_SWITCH),
        hash_json(&p.metadata.labels),
        p.metadata.deletion_timestamp.is_some(),
    ))
}

/// The Vips a pod names in `ovn.kubernetes.io/aaps`.
pub fn vips_of_pod(p: &PodInfo) -> Vec<String> {
    aaps(p).map(str::to_string).collect()
}

fn aaps(p: &PodInfo) -> impl Iterator<Item = &str> {
    p.annotations()
        .get(ann::AAPS)
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The addresses a pod's port on `subnet` may use besides its own, in upstream's order: those of
/// the Vips of its namespace on that subnet it lists in `ovn.kubernetes.io/aaps` (v4, then v6),
/// then the valid ones of `ovn.kubernetes.io/port_vips`.
pub fn pod_vips(
    pod: &PodInfo,
    subnet: &str,
    vips: &dyn Fn(&str) -> Option<Arc<Vip>>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = Vec::new();
    for name in aaps(pod) {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let Some(v) = vips(name) else { continue };
        if Some(v.spec.namespace.as_str()) != pod.metadata.namespace.as_deref()
            || v.spec.subnet != subnet
        {
            continue;
        }
        let Some(st) = v.status.as_ref() else {
            continue;
        };
        for ip in [&st.v4ip, &st.v6ip] {
            if ip.parse::<IpAddr>().is_ok() {
                out.push(ip.clone());
            }
        }
    }
    let extra = pod
        .annotations()
        .get(ann::PORT_VIPS)
        .map(String::as_str)
        .unwrap_or("");
    for ip in extra.split(',') {
        if ip.parse::<IpAddr>().is_ok() && !out.iter().any(|o| o == ip) {
            out.push(ip.to_string());
        }
    }
    out
}

/// The pods (`namespace/name`) that list the Vip in `ovn.kubernetes.io/aaps`: their ports
/// carry its address.
pub fn pods_naming(vip: &Vip, pods: &[Arc<PodInfo>]) -> Vec<String> {
    let name = vip.name_any();
    pods.iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(vip.spec.namespace.as_str()))
        .filter(|p| aaps(p).any(|a| a == name))
        .map(|p| crate::pod_ctl::key(&vip.spec.namespace, &p.name_any()))
        .collect()
}

/// What of a Vip its pods' ports depend on: its address and placement.
pub fn address_signature(v: &Vip) -> u64 {
    hash_of(&(
        hash_json(&v.status),
        &v.spec.namespace,
        &v.spec.subnet,
        v.metadata.deletion_timestamp.is_some(),
    ))
}

/// The IPAM owner key of a Vip (upstream keys a Vip's reservation by its name).
fn owner(name: &str) -> String {
    name.to_string()
}

/// The port name of a Vip: upstream's pod port naming with the Vip's name and namespace.
fn port_name(vip: &Vip, provider: &str) -> String {
    objects::pod_lsp(&vip.name_any(), &vip.spec.namespace, provider)
}

/// The address-holding ports of the typed Vips (`switch_lb_vip`, `kube_host_vm_vip`): they
/// carry `external_ids:pod` like a pod's port, but belong to the Vip — GC and IPAM restore
/// must not take them for a vanished pod's.
pub fn typed_ports(
    vips: &[Arc<Vip>],
    subnets: &[Arc<kube_ovn_common::crd::Subnet>],
) -> std::collections::HashSet<String> {
    vips.iter()
        .filter(|v| !v.spec.type_.is_empty())
        .map(|v| {
            let provider = subnets
                .iter()
                .find(|s| s.name_any() == v.spec.subnet)
                .map(|s| s.spec.provider.as_str())
                .filter(|p| !p.is_empty())
                .unwrap_or("ovn");
            port_name(v, provider)
        })
        .collect()
}

/// `spec.selector` (`key: value` strings) as labels every parent must carry.
pub fn selector(vip: &Vip) -> BTreeMap<String, String> {
    vip.spec
        .selector
        .iter()
        .filter_map(|s| {
            let (k, v) = s.split_once(':')?;
            (!v.contains(':')).then(|| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The virtual parents of a Vip: ports of the pods of its namespace that match its selector,
/// list it in `ovn.kubernetes.io/aaps` and sit on its subnet, sorted.
pub fn virtual_parents(vip: &Vip, pods: &[Arc<PodInfo>]) -> Vec<String> {
    let name = vip.name_any();
    let want = selector(vip);
    let mut out: Vec<String> = pods
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(vip.spec.namespace.as_str()))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let labels = p.labels();
            want.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .filter(|p| aaps(p).any(|a| a == name))
        .filter(|p| p.annotations().get(ann::LOGICAL_SWITCH) == Some(&vip.spec.subnet))
        .map(|p| objects::pod_lsp(&p.name_any(), &vip.spec.namespace, "ovn"))
        .collect();
    out.sort();
    out
}

/// Why a Vip's spec cannot be served, if it cannot.
pub fn invalid(vip: &Vip) -> Option<String> {
    if vip.spec.subnet.is_empty() {
        return Some("spec.subnet must be set".into());
    }
    if vip.spec.v6ip.chars().any(|c| c.is_ascii_uppercase()) {
        return Some(format!(
            "v6ip {} must not contain upper case letters",
            vip.spec.v6ip
        ));
    }
    for (what, v) in [("v4ip", &vip.spec.v4ip), ("v6ip", &vip.spec.v6ip)] {
        if !v.is_empty() && v.parse::<IpAddr>().is_err() {
            return Some(format!("{what} {v:?} is not an IP address"));
        }
    }
    let st = vip.status.clone().unwrap_or_default();
    for (what, have, want) in [
        ("mac", &st.mac, &vip.spec.mac_address),
        ("v4 ip", &st.v4ip, &vip.spec.v4ip),
        ("v6 ip", &st.v6ip, &vip.spec.v6ip),
    ] {
        if !have.is_empty() && have != want {
            return Some(format!(
                "changing the {what} of a vip is not supported ({have} → {want})"
            ));
        }
    }
    None
}

/// Reconciles the Vip `name`.
pub async fn reconcile(ctx: Arc<Ctx>, name: String) -> Result<Outcome, Error> {
    let api: Api<Vip> = Api::all(ctx.client.clone());
    let Some(vip) = ctx.stores.vips.get(&ObjectRef::new(&name)) else {
        // Gone without our finalizer: give back what may still be held.
        release(&ctx, &name, None).await?;
        return Ok(Outcome::Done);
    };
    if vip.metadata.deletion_timestamp.is_some() {
        release(&ctx, &name, Some(&vip)).await?;
        let mut current = (*vip).clone();
        for f in [ann::FINALIZER, DEPRECATED_FINALIZER] {
            if let Some(patched) = finalizer::remove(&api, &current, f).await? {
                current = patched;
            }
        }
        return Ok(Outcome::Done);
    }
    if let Some(why) = invalid(&vip) {
        ctx.event(&vip.object_ref(&()), EventType::Warning, "InvalidVip", &why)
            .await;
        return Ok(Outcome::Done);
    }
    let subnet_name = vip.spec.subnet.clone();
    let Some(subnet) = ctx.stores.subnets.get(&ObjectRef::new(&subnet_name)) else {
        let msg = format!("subnet {subnet_name} not found");
        ctx.event(
            &vip.object_ref(&()),
            EventType::Warning,
            "AcquireAddressFailed",
            &msg,
        )
        .await;
        return Ok(Outcome::After(Duration::from_secs(5)));
    };
    if ctx.ipam().subnet(&subnet_name).is_none() {
        return Ok(Outcome::After(Duration::from_secs(1)));
    }
    let provider = if subnet.spec.provider.is_empty() {
        "ovn"
    } else {
        subnet.spec.provider.as_str()
    };
    let port = port_name(&vip, provider);
    let status = vip.status.clone().unwrap_or_default();
    let reserved = !status.mac.is_empty();
    let parse = |s: &str| s.parse::<IpAddr>().ok();
    let mut req = Request {
        pod: owner(&name),
        nic: port.clone(),
        check_conflict: !reserved,
        ..Request::default()
    };
    let (v4, v6, mac) = if reserved {
        (&status.v4ip, &status.v6ip, &status.mac)
    } else {
        (&vip.spec.v4ip, &vip.spec.v6ip, &vip.spec.mac_address)
    };
    req.ips = [parse(v4), parse(v6)].into_iter().flatten().collect();
    // A switch LB rule's address wears the gateway's MAC, which is no reservation of its own.
    req.mac = (!mac.is_empty() && vip.spec.type_ != SWITCH_LB_VIP).then(|| mac.clone());
    // A pod wearing the address (`ovn.kubernetes.io/vip`) holds it in IPAM meanwhile.
    let allocated = match user_of(&vip) {
        Some(_) if reserved => Ok(kube_ovn_ipam::Allocation {
            v4: parse(&status.v4ip),
            v6: parse(&status.v6ip),
            mac: status.mac.clone(),
        }),
        _ => ctx.ipam().allocate(&subnet_name, &req),
    };
    let alloc = match allocated {
        Ok(a) => a,
        Err(e) => {
            ctx.event(
                &vip.object_ref(&()),
                EventType::Warning,
                "AcquireAddressFailed",
                &e.to_string(),
            )
            .await;
            return Err(e.into());
        }
    };
    if !reserved {
        ctx.queues
            .add(crate::subnet_ctl::STATUS_KIND, subnet_name.clone());
    }
    let ips: Vec<IpAddr> = [alloc.v4, alloc.v6].into_iter().flatten().collect();
    let ip_str = alloc.ip_address();
    let vpc = if subnet.spec.vpc.is_empty() {
        ctx.config.cluster_router.clone()
    } else {
        subnet.spec.vpc.clone()
    };
    let mut mac = alloc.mac.clone();
    let kind = vip.spec.type_.as_str();
    if kind == SWITCH_LB_VIP {
        // Answers ARP for the address with the gateway port's MAC.
        let lrp = format!("{vpc}-{subnet_name}");
        let gw = {
            let cache = ctx.nb.cache();
            let plan = kube_ovn_nb::Plan::new(&cache, "OVN_Northbound");
            objects::router_port_mac(&plan, &lrp)
        };
        match gw {
            Some(m) => mac = m,
            None => {
                let msg = format!("logical router port {lrp} (with a MAC) not found");
                ctx.event(
                    &vip.object_ref(&()),
                    EventType::Warning,
                    "CreateVipFailed",
                    &msg,
                )
                .await;
                return Ok(Outcome::After(Duration::from_secs(2)));
            }
        }
    }
    let owner_key =
        (!vip.spec.namespace.is_empty()).then(|| format!("{}/{}", vip.spec.namespace, name));
    let parents =
        (kind != SWITCH_LB_VIP).then(|| virtual_parents(&vip, &ctx.stores.pods.state()).join(","));
    let custom_vpc = vpc != ctx.config.cluster_router;
    ctx.apply(&format!("vip {name}"), |plan| {
        if kind == SWITCH_LB_VIP || kind == KUBE_HOST_VM_VIP {
            objects::vip_port(
                plan,
                &VipPort {
                    name: &port,
                    switch: &subnet_name,
                    owner: owner_key.as_deref(),
                    mac: &mac,
                    ips: &ips,
                    arp_proxy: kind == SWITCH_LB_VIP,
                    custom_vpc,
                },
            )?;
        }
        if kind != KUBE_HOST_VM_VIP && !vip.spec.namespace.is_empty() {
            objects::virtual_port(plan, &name, &subnet_name, &ip_str, parents.as_deref())?;
        }
        Ok(())
    })
    .await?;
    record(&api, &vip, &subnet_name, &alloc, &mac).await?;
    Ok(Outcome::Done)
}

/// The port of the pod using the Vip's address, from the `ovn.kubernetes.io/ip_reserved` label.
pub fn user_of(vip: &Vip) -> Option<&str> {
    vip.labels()
        .get(ann::LABEL_IP_RESERVED)
        .map(String::as_str)
        .filter(|p| !p.is_empty())
}

/// Hands the Vip `name`'s address to the pod NIC `port` (upstream's pod `ovn.kubernetes.io/vip`
/// annotation): the Vip is labelled as used by the port and its own IPAM reservation released,
/// so the pod can take the address. `Ok(None)` while that cannot happen yet (no such Vip, no
/// address yet, or another pod uses it — each with an event on the pod).
pub async fn claim_for_pod(
    ctx: &Ctx,
    pod: &PodInfo,
    name: &str,
    port: &str,
) -> Result<Option<(Vec<IpAddr>, String)>, Error> {
    let why = match ctx.stores.vips.get(&ObjectRef::new(name)) {
        None => format!("vip {name} not found"),
        Some(v) => {
            let st = v.status.clone().unwrap_or_default();
            match user_of(&v) {
                _ if st.mac.is_empty() => format!("vip {name} has no address yet"),
                Some(other) if other != port => format!("vip {name} is in use by {other}"),
                used => {
                    if used.is_none() {
                        // Tested: of two pods racing for the address, one wins.
                        let path = format!(
                            "/metadata/labels/{}",
                            ann::LABEL_IP_RESERVED.replace('~', "~0").replace('/', "~1")
                        );
                        let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
                            {"op": "test", "path": path, "value": ""},
                            {"op": "replace", "path": path, "value": port},
                        ]))
                        .map_err(|e| Error::Other(e.to_string()))?;
                        match Api::<Vip>::all(ctx.client.clone())
                            .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
                            .await
                        {
                            Ok(_) => {}
                            Err(kube::Error::Api(e)) if e.code == 422 || e.code == 409 => {
                                return Ok(None);
                            }
                            Err(e) => return Err(e.into()),
                        }
                        ctx.ipam().release_pod(&owner(name));
                    }
                    let ips = [&st.v4ip, &st.v6ip]
                        .into_iter()
                        .filter_map(|s| s.parse().ok())
                        .collect();
                    return Ok(Some((ips, st.mac)));
                }
            }
        }
    };
    ctx.event(
        &pod.object_ref(&()),
        EventType::Warning,
        "AcquireAddressFailed",
        &why,
    )
    .await;
    Ok(None)
}

/// Gives the addresses of the Vips the pod NIC `port` used back to them (pod gone): the label
/// is cleared and the Vip's own reservation restored.
pub async fn release_for_pod(ctx: &Ctx, port: &str) -> Result<(), Error> {
    let used: Vec<Arc<Vip>> = ctx
        .stores
        .vips
        .state()
        .into_iter()
        .filter(|v| user_of(v) == Some(port))
        .collect();
    for v in used {
        let name = v.name_any();
        Api::<Vip>::all(ctx.client.clone())
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(
                    serde_json::json!({"metadata": {"labels": {ann::LABEL_IP_RESERVED: ""}}}),
                ),
            )
            .await?;
        // The label change queues the Vip, whose reconcile reserves its address again.
        ctx.queues.add(KIND, name);
    }
    Ok(())
}

/// Writes the reservation back as upstream does, in one update: spec and status addresses,
/// type, the subnet and reserved labels, our finalizer (the deprecated one dropped).
async fn record(
    api: &Api<Vip>,
    vip: &Vip,
    subnet: &str,
    alloc: &kube_ovn_ipam::Allocation,
    mac: &str,
) -> Result<(), Error> {
    let ip = |a: Option<IpAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    let (v4, v6) = (ip(alloc.v4), ip(alloc.v6));
    let mut want = vip.clone();
    let labels = want.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(ann::LABEL_SUBNET.into(), subnet.into());
    labels.entry(ann::LABEL_IP_RESERVED.into()).or_default();
    let finalizers = want.metadata.finalizers.get_or_insert_with(Vec::new);
    finalizers.retain(|f| f != DEPRECATED_FINALIZER);
    if !finalizers.iter().any(|f| f == ann::FINALIZER) {
        finalizers.push(ann::FINALIZER.into());
    }
    want.spec.v4ip = v4.clone();
    want.spec.v6ip = v6.clone();
    want.spec.mac_address = mac.to_string();
    let status = want.status.get_or_insert_with(Default::default);
    status.v4ip = v4;
    status.v6ip = v6;
    status.mac = mac.to_string();
    status.type_ = vip.spec.type_.clone();
    if &want == vip {
        return Ok(());
    }
    match api
        .replace(&vip.name_any(), &PostParams::default(), &want)
        .await
    {
        Ok(_) => {
            info!(vip = %vip.name_any(), ip = %alloc.ip_address(), "vip reserved");
            Ok(())
        }
        // A newer version arrives with its own event and reconcile.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Gives back a Vip's address and removes its ports (`vip` known: its subnet's typed port too).
async fn release(ctx: &Ctx, name: &str, vip: Option<&Vip>) -> Result<(), Error> {
    let typed_port = vip.filter(|v| !v.spec.type_.is_empty()).map(|v| {
        let provider = ctx
            .stores
            .subnets
            .get(&ObjectRef::new(&v.spec.subnet))
            .map(|s| s.spec.provider.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "ovn".into());
        port_name(v, &provider)
    });
    ctx.apply(&format!("delete vip {name}"), |plan| {
        if let Some(p) = &typed_port {
            objects::delete_port(plan, p)?;
        }
        if is_virtual_port(plan, name) {
            objects::delete_port(plan, name)?;
        }
        Ok(())
    })
    .await?;
    let released = ctx.ipam().release_pod(&owner(name));
    if !released.is_empty() {
        if let Some(v) = vip {
            ctx.queues
                .add(crate::subnet_ctl::STATUS_KIND, v.spec.subnet.clone());
        }
    }
    Ok(())
}

/// Whether `name` is a `virtual` port kube-ovn made (never a pod's or a user's other port).
fn is_virtual_port(plan: &kube_ovn_nb::Plan<'_>, name: &str) -> bool {
    use ovsdb::model::Model;
    use ovsdb::models::nb::LogicalSwitchPort;
    let Some(kube_ovn_nb::RowRef::Existing(u)) = plan.lookup(LogicalSwitchPort::TABLE, name) else {
        return false;
    };
    plan.monitored(LogicalSwitchPort::TABLE)
        .ok()
        .and_then(|t| t.get(&u).cloned())
        .is_some_and(|r| {
            r.get(LogicalSwitchPort::TYPE)
                .and_then(|d| d.as_atom()?.as_str().map(str::to_string))
                == Some("virtual".into())
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vip(spec: serde_json::Value, status: serde_json::Value) -> Vip {
        serde_json::from_value(json!({
            "apiVersion": "kubeovn.io/v1", "kind": "Vip",
            "metadata": {"name": "vip1"}, "spec": spec, "status": status,
        }))
        .unwrap()
    }

    fn pod(name: &str, labels: serde_json::Value, aaps: &str, ls: &str) -> Arc<PodInfo> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "labels": labels,
                             "annotations": {"ovn.kubernetes.io/aaps": aaps, "ovn.kubernetes.io/logical_switch": ls}},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn virtual_parents_are_selected_pods_naming_the_vip_on_its_subnet() {
        let v = vip(
            json!({"namespace": "default", "subnet": "ovn-default", "selector": ["app: web"]}),
            json!({}),
        );
        let pods = vec![
            pod("b", json!({"app": "web"}), "vip1", "ovn-default"),
            pod("a", json!({"app": "web"}), "other, vip1", "ovn-default"),
            pod("c", json!({"app": "db"}), "vip1", "ovn-default"),
            pod("d", json!({"app": "web"}), "other", "ovn-default"),
            pod("e", json!({"app": "web"}), "vip1", "net2"),
        ];
        assert_eq!(virtual_parents(&v, &pods), ["a.default", "b.default"]);
    }

    #[test]
    fn pod_vips_follow_upstream_order_and_scope() {
        let mk = |name: &str, ns: &str, subnet: &str, v4: &str, v6: &str| {
            let mut v = vip(
                json!({"namespace": ns, "subnet": subnet}),
                json!({"v4ip": v4, "v6ip": v6}),
            );
            v.metadata.name = Some(name.into());
            Arc::new(v)
        };
        let all = [
            mk("a", "default", "ovn-default", "10.16.0.5", "fd00::5"),
            mk("b", "default", "ovn-default", "10.16.0.6", ""),
            mk("other-ns", "kube-system", "ovn-default", "10.16.0.7", ""),
            mk("other-subnet", "default", "net2", "10.17.0.7", ""),
        ];
        let lookup = |n: &str| all.iter().find(|v| v.name_any() == n).cloned();
        let p: PodInfo =
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default",
            "annotations": {"ovn.kubernetes.io/aaps": "b, a,a,other-ns,other-subnet,missing",
                            "ovn.kubernetes.io/port_vips": "10.16.0.6,10.16.0.9,junk"}}}))
            .unwrap();
        assert_eq!(
            pod_vips(&p, "ovn-default", &lookup),
            ["10.16.0.6", "10.16.0.5", "fd00::5", "10.16.0.9"]
        );
    }

    #[test]
    fn bad_specs_and_address_changes_are_refused() {
        assert!(invalid(&vip(json!({}), json!({}))).is_some());
        assert!(invalid(&vip(json!({"subnet": "s", "v6ip": "FD00::1"}), json!({}))).is_some());
        assert!(invalid(&vip(
            json!({"subnet": "s", "v4ip": "10.0.0.300"}),
            json!({})
        ))
        .is_some());
        let moved = vip(
            json!({"subnet": "s", "v4ip": "10.16.0.9", "macAddress": "00:00:00:00:00:01"}),
            json!({"v4ip": "10.16.0.8", "mac": "00:00:00:00:00:01"}),
        );
        assert!(invalid(&moved).unwrap().contains("v4 ip"));
        let same = vip(
            json!({"subnet": "s", "v4ip": "10.16.0.8", "macAddress": "00:00:00:00:00:01"}),
            json!({"v4ip": "10.16.0.8", "mac": "00:00:00:00:00:01"}),
        );
        assert_eq!(invalid(&same), None);
    }
}
