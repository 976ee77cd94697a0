//! Rebuilding IPAM before any allocation is served, from every durable record of an
//! allocation: NB ports (`external_ids:pod`), IP CRs, node annotations, Vip statuses and pod annotations, in
//! that order, so the most authoritative (live objects' annotations) wins a conflict. Conflict
//! checks are off: what exists is the truth. Upstream trusts pod annotations only (its issue
//! #4304); reading the NB and IP CRs too means a crash between writes never hands out an address
//! that is still on a port.

use std::time::Instant;

use kube::ResourceExt;
use kube_ovn_ipam::{Ipam, Request, SubnetConfig};
use kube_ovn_nb::ports::{owned_ports, PortOwner};
use tracing::{info, warn};

use crate::ipcr::IpSummary;
use kube_ovn_common::annotations as ann;
use kube_ovn_common::crd::Subnet;
use kube_ovn_common::names;

/// Rebuilds the controller's IPAM from the stores, the IP index and the NB cache.
pub async fn restore_ipam(ctx: &crate::context::Ctx) -> Result<(), String> {
    let defaults = crate::subnet_rules::Defaults {
        default_vpc: &ctx.config.cluster_router,
        join: &ctx.config.node_switch,
        enable_lb: ctx.config.enable_lb,
    };
    let subnets: Vec<std::sync::Arc<Subnet>> = ctx
        .stores
        .subnets
        .state()
        .into_iter()
        .filter_map(|s| {
            let spec = crate::subnet_rules::normalize(&s.spec, &s.name_any(), &defaults).ok()?;
            let mut n = (*s).clone();
            n.spec = spec;
            Some(std::sync::Arc::new(n))
        })
        .collect();
    kube_ovn_runtime::registry::wait_until("the IP CRs are listed", || ctx.ips.synced()).await;
    let ips = ctx.ips.snapshot();
    let ports = {
        let cache = ctx.nb.cache();
        let ports: Vec<_> = owned_ports(&cache)
            .map_err(|e| e.to_string())?
            .filter_map(|p| {
                let owner = match p.owner {
                    PortOwner::Pod(pod) => pod.to_string(),
                    PortOwner::Node(node) => format!("node/{node}"),
                };
                Some((
                    p.name.to_string(),
                    owner,
                    p.switch?.to_string(),
                    p.addresses?.to_string(),
                ))
            })
            .collect();
        ports
    };
    let pods = ctx.stores.pods.state();
    let nodes = ctx.stores.nodes.state();
    let vips = ctx.stores.vips.state();
    let eips = ctx.stores.iptables_eips.state();
    let ovn_eips = ctx.stores.ovn_eips.state();
    let (ipam, _) = restore(&Sources {
        subnets: &subnets,
        ips: &ips,
        pods: &pods,
        nodes: &nodes,
        vips: &vips,
        eips: &eips,
        ovn_eips: &ovn_eips,
        external_switch: &ctx.config.external_gateway_switch,
        ports,
        join: &ctx.config.node_switch,
    });
    *ctx.ipam() = ipam;
    Ok(())
}

/// An attachment NIC's allocation as its pod's annotations record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentAllocation<'a> {
    /// The provider (`<nad>.<ns>.ovn` or `<nad>.<ns>`).
    pub provider: &'a str,
    /// The subnet: `<provider>.kubernetes.io/logical_switch`, or (IPAM-only NICs, which upstream
    /// writes no switch for) the subnet whose `spec.provider` is the provider.
    pub subnet: String,
    /// `<provider>.kubernetes.io/ip_address`.
    pub ips: &'a str,
    /// `<provider>.kubernetes.io/mac_address`, if any.
    pub mac: Option<&'a str>,
}

/// Every attachment NIC a pod's annotations say is allocated (`<provider>.kubernetes.io/allocated
/// = true` for a provider other than `ovn`): no NetworkAttachmentDefinition is needed to read
/// them back, so a restore does not wait for that optional watch.
pub fn attachment_allocations<'a>(
    annotations: &'a std::collections::BTreeMap<String, String>,
    subnets: &[std::sync::Arc<Subnet>],
) -> Vec<AttachmentAllocation<'a>> {
    let mut out = Vec::new();
    for (k, v) in annotations {
        let Some(provider) = k.strip_suffix(".kubernetes.io/allocated") else {
            continue;
        };
        if names::is_default_provider(provider) || v != "true" {
            continue;
        }
        let get = |f: ann::Field| {
            annotations
                .get(ann::key(provider, f).as_ref())
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        let Some(ips) = get(ann::Field::IpAddress) else {
            continue;
        };
        let subnet = match get(ann::Field::LogicalSwitch) {
            Some(ls) => ls.to_string(),
            None => match subnets.iter().find(|s| s.spec.provider == provider) {
                Some(s) => s.name_any(),
                None => continue,
            },
        };
        out.push(AttachmentAllocation {
            provider,
            subnet,
            ips,
            mac: get(ann::Field::MacAddress),
        });
    }
    out
}

/// Inputs of a restore.
pub struct Sources<'a> {
    /// Subnets (normalised specs).
    pub subnets: &'a [std::sync::Arc<Subnet>],
    /// IP CRs (by name).
    pub ips: &'a [(String, IpSummary)],
    /// Pods.
    pub pods: &'a [std::sync::Arc<crate::pod_info::PodInfo>],
    /// Nodes.
    pub nodes: &'a [std::sync::Arc<k8s_openapi::api::core::v1::Node>],
    /// Vips (their status is the reservation).
    pub vips: &'a [std::sync::Arc<kube_ovn_common::crd::Vip>],
    /// IptablesEIPs (their status, or the allocation written to spec).
    pub eips: &'a [std::sync::Arc<kube_ovn_common::crd::IptablesEip>],
    /// OvnEips (their status, or the allocation written to spec).
    pub ovn_eips: &'a [std::sync::Arc<kube_ovn_common::crd::OvnEip>],
    /// `--external-gateway-switch` (an OvnEip's subnet when it names none).
    pub external_switch: &'a str,
    /// NB ports: (port name, `external_ids:pod`, `external_ids:ls`, addresses string).
    pub ports: Vec<(String, String, String, String)>,
    /// `--node-switch`.
    pub join: &'a str,
}

/// What a restore found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Allocations restored.
    pub restored: usize,
    /// Records that did not fit (unknown subnet, bad addresses).
    pub skipped: usize,
}

/// Builds the IPAM state from the sources.
pub fn restore(src: &Sources<'_>) -> (Ipam, Summary) {
    let start = Instant::now();
    let mut ipam = Ipam::new();
    let mut sum = Summary::default();
    for s in src.subnets {
        let cfg = SubnetConfig {
            name: s.name_any(),
            cidr_block: s.spec.cidr_block.clone(),
            gateway: s.spec.gateway.clone(),
            exclude_ips: s.spec.exclude_ips.clone(),
        };
        if let Err(e) = ipam.add_or_update_subnet(cfg) {
            warn!(subnet = %s.name_any(), "not restored: {e}");
        }
    }
    // Owner, NIC and MAC are borrowed: most records repeat an allocation already restored
    // from another source, and those need no request built.
    let mut put =
        |ipam: &mut Ipam, subnet: &str, owner: &str, nic: &str, ips: &str, mac: Option<&str>| {
            let Ok(ips) = ann::parse_ips(ips) else {
                sum.skipped += 1;
                return;
            };
            let Some(book) = ipam.subnet(subnet).filter(|_| !ips.is_empty()) else {
                sum.skipped += 1;
                return;
            };
            if book.holds_exactly(owner, nic, &ips, mac) {
                sum.restored += 1;
                return;
            }
            let req = Request {
                pod: owner.to_string(),
                nic: nic.to_string(),
                ips,
                mac: mac.map(str::to_string),
                check_conflict: false,
                ..Request::default()
            };
            match ipam.allocate(subnet, &req) {
                Ok(_) => sum.restored += 1,
                Err(_) => sum.skipped += 1,
            }
        };
    let vip_ports = crate::vip_ctl::typed_ports(src.vips, src.subnets);
    for (port, pod, ls, addresses) in &src.ports {
        if vip_ports.contains(port) {
            // A Vip's: restored from the Vip below, under the Vip's key.
            continue;
        }
        let mut parts = addresses.split_whitespace();
        let mac = parts.next();
        let ips: Vec<&str> = parts.collect();
        put(&mut ipam, ls, pod, port, &ips.join(","), mac);
    }
    for (name, s) in src.ips {
        let owner = if s.namespace.is_empty() {
            format!("node/{}", s.pod_name)
        } else {
            format!("{}/{}", s.namespace, s.pod_name)
        };
        let mac = (!s.mac_address.is_empty()).then_some(s.mac_address.as_str());
        put(&mut ipam, &s.subnet, &owner, name, &s.ip_address, mac);
    }
    for n in src.nodes {
        let a = n.annotations();
        if a.get(ann::ALLOCATED).map(String::as_str) != Some("true") {
            continue;
        }
        if let Some(v) = a.get(ann::IP_ADDRESS) {
            let name = n.name_any();
            put(
                &mut ipam,
                src.join,
                &format!("node/{name}"),
                &names::node_lsp(&name),
                v,
                a.get(ann::MAC_ADDRESS).map(String::as_str),
            );
        }
    }
    for v in src.vips {
        let Some(st) = v.status.as_ref().filter(|s| !s.mac.is_empty()) else {
            continue;
        };
        if crate::vip_ctl::user_of(v).is_some() {
            // A pod wears the address: restored with the pod.
            continue;
        }
        let ips: Vec<&str> = [st.v4ip.as_str(), st.v6ip.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        let provider = src
            .subnets
            .iter()
            .find(|s| s.name_any() == v.spec.subnet)
            .map(|s| s.spec.provider.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("ovn");
        let name = v.name_any();
        // A switch LB rule's address wears the gateway's MAC: no reservation of its own.
        let mac = (v.spec.type_ != crate::vip_ctl::SWITCH_LB_VIP).then_some(st.mac.as_str());
        put(
            &mut ipam,
            &v.spec.subnet,
            &name,
            &names::pod_lsp(&name, &v.spec.namespace, provider),
            &ips.join(","),
            mac,
        );
    }
    for e in src.eips {
        let Some((ip, mac)) = crate::iptables_ctl::restored_address(e) else {
            continue;
        };
        let subnet = kube_ovn_common::natgw::eip_external_network(&e.spec.external_subnet);
        let provider = src
            .subnets
            .iter()
            .find(|s| s.name_any() == subnet)
            .map(|s| s.spec.provider.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("ovn");
        let name = e.name_any();
        let ips = [ip.to_string(), e.spec.v6ip.clone()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(",");
        put(
            &mut ipam,
            subnet,
            &name,
            &names::pod_lsp(&name, "", provider),
            &ips,
            (!mac.is_empty()).then_some(mac.as_str()),
        );
    }
    for e in src.ovn_eips {
        let Some((ips, mac)) = crate::ovn_eip_ctl::restored_address(e) else {
            continue;
        };
        let name = e.name_any();
        let subnet = crate::ovn_eip_ctl::subnet_of(e, src.external_switch);
        let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
        put(
            &mut ipam,
            subnet,
            &name,
            &name,
            &ips.join(","),
            Some(mac.as_str()),
        );
    }
    for p in src.pods {
        let a = p.annotations();
        if a.get(ann::ALLOCATED).map(String::as_str) != Some("true") {
            continue;
        }
        let (Some(ls), Some(v)) = (a.get(ann::LOGICAL_SWITCH), a.get(ann::IP_ADDRESS)) else {
            continue;
        };
        let (ns, name) = (p.namespace().unwrap_or_default(), p.name_any());
        put(
            &mut ipam,
            ls,
            &format!("{ns}/{name}"),
            &format!("{name}.{ns}"),
            v,
            a.get(ann::MAC_ADDRESS).map(String::as_str),
        );
    }
    for p in src.pods {
        let (ns, name) = (p.namespace().unwrap_or_default(), p.name_any());
        for nic in attachment_allocations(p.annotations(), src.subnets) {
            put(
                &mut ipam,
                &nic.subnet,
                &format!("{ns}/{name}"),
                &names::pod_lsp(&name, &ns, nic.provider),
                nic.ips,
                nic.mac,
            );
        }
    }
    info!(restored = sum.restored, skipped = sum.skipped, elapsed = ?start.elapsed(), "IPAM restored");
    (ipam, sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_ovn_common::crd::subnet::SubnetSpec;

    /// Attachment NICs are read back from their annotations alone; the default NIC and
    /// unallocated or incomplete ones are not attachments to restore.
    #[test]
    fn attachment_allocations_come_from_annotations() {
        let subnets = vec![std::sync::Arc::new(Subnet::new(
            "mv-subnet",
            SubnetSpec {
                provider: "mv.default".into(),
                ..SubnetSpec::default()
            },
        ))];
        let a: std::collections::BTreeMap<String, String> = [
            ("ovn.kubernetes.io/allocated", "true"),
            ("ovn.kubernetes.io/ip_address", "10.16.0.2"),
            ("net1.default.ovn.kubernetes.io/allocated", "true"),
            ("net1.default.ovn.kubernetes.io/ip_address", "172.17.0.2"),
            (
                "net1.default.ovn.kubernetes.io/mac_address",
                "00:00:00:01:02:03",
            ),
            (
                "net1.default.ovn.kubernetes.io/logical_switch",
                "attach-subnet",
            ),
            ("mv.default.kubernetes.io/allocated", "true"),
            ("mv.default.kubernetes.io/ip_address", "172.18.0.9"),
            ("half.default.ovn.kubernetes.io/allocated", "true"),
            ("no.default.kubernetes.io/allocated", "false"),
            ("no.default.kubernetes.io/ip_address", "1.2.3.4"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let got = attachment_allocations(&a, &subnets);
        assert_eq!(
            got,
            vec![
                AttachmentAllocation {
                    provider: "mv.default",
                    subnet: "mv-subnet".into(),
                    ips: "172.18.0.9",
                    mac: None,
                },
                AttachmentAllocation {
                    provider: "net1.default.ovn",
                    subnet: "attach-subnet".into(),
                    ips: "172.17.0.2",
                    mac: Some("00:00:00:01:02:03"),
                },
            ]
        );
    }
}
