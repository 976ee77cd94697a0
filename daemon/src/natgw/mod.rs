//! `kube-ovn-vpc-nat-gw`: the data plane of a VPC NAT gateway pod (seed 004), run inside that
//! pod.
//!
//! Upstream's controller execs `nat-gateway.sh` in the pod (`init`, `subnet-route-add`,
//! `eip-add`, `floating-ip-add`, `snat-add`, `dnat-add` and their `-del`s), which edits
//! iptables chains rule by rule. This agent reads the same inputs from the API instead — its
//! pod's annotations (the external attachment's address, CIDR and gateway, the VPC NIC's
//! gateway, `<provider>.kubernetes.io/vpc_cidrs`) and the gateway's `IptablesEIP`,
//! `IptablesFIPRule`, `IptablesSnatRule` and `IptablesDnatRule` objects — and converges to what
//! the script leaves behind, with the same semantics:
//!
//! * each EIP (`status.ip`, with the external subnet's prefix) on `net1`, announced with a
//!   gratuitous ARP; the default route via the external gateway on `net1`, `onlink`;
//! * each VPC CIDR not holding the VPC NIC's gateway routed via that gateway on `eth0`;
//! * NAT in one nftables table `kube-ovn-vpc-nat-gw` (family `ip`, IPv4 only as upstream):
//!   chain `prerouting` (dstnat) holds the FIP DNATs (`EXCLUSIVE_DNAT`: EIP → internal IP)
//!   then the DNATs (`SHARED_DNAT`: EIP:port/proto → internal IP:port); chain `postrouting`
//!   (srcnat) holds the FIP SNATs (`EXCLUSIVE_SNAT`: internal IP → EIP) then the SNATs
//!   (`SHARED_SNAT`: out of `net1` from the internal CIDR → EIP, fully random, longest prefix
//!   first).
//!
//! Differences: nftables instead of iptables, written whole in one atomic batch per converge
//! (no rule is ever half-applied, a rule removed from the API disappears with the old table);
//! the agent converges on every change and at start, so a restarted pod needs no "redo"; a
//! rule is applied when the controller marked it `ready` and it is not being deleted; the
//! hairpin SNAT (`HAIRPIN_SNAT`, a VPC pod reaching another's EIP), share-type DNATs, QoS and
//! the BGP speaker are not done here; conntrack entries of a removed rule are left to expire.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::RouteProtocol;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
use tracing::{info, warn};

use crate::lbsvc::arp::{self, Arp};
use crate::lbsvc::{open_sockets, Identity};
use crate::nft::{
    Action, Chain, Match, Nft, Rule, Table, FAMILY_IP, HOOK_POSTROUTING, HOOK_PREROUTING,
    PRIORITY_DSTNAT, PRIORITY_SRCNAT,
};
use kube_ovn_common::annotations::{self as ann, Field};
use kube_ovn_common::attachment::NETWORKS_ANNOTATION;
use kube_ovn_common::crd::{IptablesDnatRule, IptablesEip, IptablesFipRule, IptablesSnatRule};
use kube_ovn_common::natgw;

/// The nftables table (family `ip`).
pub const TABLE: &str = "kube-ovn-vpc-nat-gw";
/// The DNAT chain (FIPs, then DNAT rules).
pub const PREROUTING: &str = "prerouting";
/// The SNAT chain (FIPs, then SNAT rules).
pub const POSTROUTING: &str = "postrouting";
/// The external NIC (upstream's `EXTERNAL_INTERFACE`).
pub const EXTERNAL_NIC: &str = "net1";
/// The VPC NIC (upstream's `VPC_INTERFACE`).
pub const VPC_NIC: &str = "eth0";

/// Everything the gateway pod's network should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The EIPs with the external subnet's prefix, for `net1`.
    pub eips: Vec<Ipv4Net>,
    /// `net1`'s own addresses (its attachment allocation), which stay.
    pub own: Vec<Ipv4Net>,
    /// The external gateway: the default route via `net1`.
    pub external_gateway: Option<Ipv4Addr>,
    /// VPC CIDRs routed via the VPC NIC's gateway.
    pub vpc_routes: Vec<(Ipv4Net, Ipv4Addr)>,
    /// FIP DNAT rules.
    pub fip_dnat: Vec<Rule>,
    /// DNAT rules.
    pub dnat: Vec<Rule>,
    /// FIP SNAT rules.
    pub fip_snat: Vec<Rule>,
    /// SNAT rules, longest prefix first.
    pub snat: Vec<Rule>,
}

impl Plan {
    /// The nftables table of the plan.
    pub fn table(&self) -> Table {
        Table {
            family: FAMILY_IP,
            name: TABLE,
            chains: vec![
                Chain {
                    name: PREROUTING,
                    hook: HOOK_PREROUTING,
                    priority: PRIORITY_DSTNAT,
                    rules: self.fip_dnat.iter().chain(&self.dnat).cloned().collect(),
                },
                Chain {
                    name: POSTROUTING,
                    hook: HOOK_POSTROUTING,
                    priority: PRIORITY_SRCNAT,
                    rules: self.fip_snat.iter().chain(&self.snat).cloned().collect(),
                },
            ],
        }
    }
}

/// The gateway's objects as the agent read them.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    /// Every IptablesEIP.
    pub eips: Vec<IptablesEip>,
    /// Every IptablesFIPRule.
    pub fips: Vec<IptablesFipRule>,
    /// Every IptablesSnatRule.
    pub snats: Vec<IptablesSnatRule>,
    /// Every IptablesDnatRule.
    pub dnats: Vec<IptablesDnatRule>,
}

/// The external attachment's provider, `<nad>.<ns>`, from the pod's Multus selection (the
/// gateway's external network is the last entry: upstream puts user networks first).
pub fn external_provider(pod_annotations: &BTreeMap<String, String>) -> Option<String> {
    let nets = pod_annotations.get(NETWORKS_ANNOTATION)?;
    let last = nets.split(',').map(str::trim).rfind(|s| !s.is_empty())?;
    let last = last.split('@').next().unwrap_or(last);
    let (ns, name) = last.split_once('/')?;
    Some(format!("{}.{}", name.trim(), ns.trim()))
}

/// The VPC NIC's provider: the one whose `vpc_cidrs` the controller wrote, else `ovn`.
fn vpc_provider(pod_annotations: &BTreeMap<String, String>) -> String {
    pod_annotations
        .keys()
        .find_map(|k| k.strip_suffix(".kubernetes.io/vpc_cidrs"))
        .map(str::to_string)
        .unwrap_or_else(|| "ovn".to_string())
}

fn first_v4(list: Option<&String>) -> Option<Ipv4Addr> {
    list?.split(',').find_map(|s| s.trim().parse().ok())
}

fn first_v4_net(list: Option<&String>) -> Option<Ipv4Net> {
    list?.split(',').find_map(|s| s.trim().parse().ok())
}

/// The IP protocol number of a DNAT's `protocol` (`tcp`/`udp`, any case, as upstream's
/// validation).
pub fn proto_number(p: &str) -> Option<u8> {
    match p.to_ascii_lowercase().as_str() {
        "tcp" => Some(6),
        "udp" => Some(17),
        _ => None,
    }
}

/// A SNAT's internal CIDR with an explicit prefix (upstream's `normalizeSnatInternalCIDR`).
pub fn snat_cidr(cidr: &str) -> Option<Ipv4Net> {
    let c = cidr.trim();
    if c.contains('/') {
        c.parse::<Ipv4Net>().ok().map(|n| n.trunc())
    } else {
        c.parse::<Ipv4Addr>().ok().map(Ipv4Net::from)
    }
}

/// What the gateway pod's network should be for gateway `gateway`, from its pod's annotations,
/// the `GATEWAY_V4` its container carries (empty: the attachment's gateway) and the objects;
/// an error names what is still missing.
pub fn plan(
    gateway: &str,
    pod_annotations: &BTreeMap<String, String>,
    env_gateway_v4: &str,
    objects: &Objects,
) -> Result<Plan, String> {
    let provider = external_provider(pod_annotations)
        .ok_or_else(|| format!("the pod has no {NETWORKS_ANNOTATION} attachment"))?;
    let get = |p: &str, f: Field| pod_annotations.get(ann::key(p, f).as_ref());
    let ext_cidr = first_v4_net(get(&provider, Field::Cidr))
        .ok_or_else(|| format!("no IPv4 cidr of the external network {provider} on the pod"))?;
    let mut p = Plan {
        external_gateway: env_gateway_v4
            .trim()
            .parse()
            .ok()
            .or_else(|| first_v4(get(&provider, Field::Gateway))),
        ..Default::default()
    };
    if let Some(own) = first_v4(get(&provider, Field::IpAddress)) {
        p.own
            .push(Ipv4Net::new(own, ext_cidr.prefix_len()).map_err(|e| e.to_string())?);
    }
    let vpc = vpc_provider(pod_annotations);
    if let Some(gw) = first_v4(get(&vpc, Field::Gateway)) {
        let cidrs: Vec<String> = pod_annotations
            .get(&natgw::vpc_cidrs_key(&vpc))
            .map(|v| serde_json::from_str(v).unwrap_or_default())
            .unwrap_or_default();
        for c in cidrs {
            if let Ok(net) = c.parse::<Ipv4Net>() {
                if !net.contains(&gw) {
                    p.vpc_routes.push((net.trunc(), gw));
                }
            }
        }
        p.vpc_routes.sort();
        p.vpc_routes.dedup();
    }

    let live = |deleting: bool, ready: bool| !deleting && ready;
    let rule_uses = |eip: &str| {
        objects
            .fips
            .iter()
            .any(|f| f.metadata.deletion_timestamp.is_none() && f.spec.eip == eip)
            || objects
                .snats
                .iter()
                .any(|s| s.metadata.deletion_timestamp.is_none() && s.spec.eip == eip)
            || objects
                .dnats
                .iter()
                .any(|d| d.metadata.deletion_timestamp.is_none() && d.spec.eip == eip)
    };
    // An EIP being deleted stays while a rule still uses it (upstream's controller waits).
    let mut eips: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
    for e in &objects.eips {
        if e.spec.nat_gw_dp != gateway {
            continue;
        }
        let name = e.name_any();
        if e.metadata.deletion_timestamp.is_some() && !rule_uses(&name) {
            continue;
        }
        let Some(ip) = e
            .status
            .as_ref()
            .and_then(|s| s.ip.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        eips.insert(name, ip);
        p.eips
            .push(Ipv4Net::new(ip, ext_cidr.prefix_len()).map_err(|e| e.to_string())?);
    }
    p.eips.sort();
    p.eips.dedup();

    for f in &objects.fips {
        let ready = f.status.as_ref().is_some_and(|s| s.ready);
        if !live(f.metadata.deletion_timestamp.is_some(), ready) {
            continue;
        }
        let (Some(eip), Ok(internal)) = (
            eips.get(&f.spec.eip),
            f.spec.internal_ip.trim().parse::<Ipv4Addr>(),
        ) else {
            continue;
        };
        p.fip_dnat.push(Rule {
            matches: vec![Match::Daddr(IpAddr::V4(*eip))],
            action: Action::Dnat {
                to: IpAddr::V4(internal),
                port: None,
            },
        });
        p.fip_snat.push(Rule {
            matches: vec![Match::Saddr(IpNet::V4(Ipv4Net::from(internal)))],
            action: Action::Snat {
                to: IpAddr::V4(*eip),
                random_fully: false,
            },
        });
    }
    p.fip_dnat.sort();
    p.fip_snat.sort();

    for d in &objects.dnats {
        let ready = d.status.as_ref().is_some_and(|s| s.ready);
        if !live(d.metadata.deletion_timestamp.is_some(), ready)
            || d.spec.type_ == kube_ovn_common::crd::iptables_nat::DNAT_TYPE_SHARE
        {
            continue;
        }
        let (Some(eip), Some(proto), Ok(eport), Ok(internal), Ok(iport)) = (
            eips.get(&d.spec.eip),
            proto_number(&d.spec.protocol),
            d.spec.external_port.trim().parse::<u16>(),
            d.spec.internal_ip.trim().parse::<Ipv4Addr>(),
            d.spec.internal_port.trim().parse::<u16>(),
        ) else {
            continue;
        };
        p.dnat.push(Rule {
            matches: vec![
                Match::Daddr(IpAddr::V4(*eip)),
                Match::L4Proto(proto),
                Match::Dport(eport),
            ],
            action: Action::Dnat {
                to: IpAddr::V4(internal),
                port: Some(iport),
            },
        });
    }
    p.dnat.sort();

    let mut snats: Vec<(Ipv4Net, Ipv4Addr)> = Vec::new();
    for s in &objects.snats {
        let ready = s.status.as_ref().is_some_and(|s| s.ready);
        if !live(s.metadata.deletion_timestamp.is_some(), ready) {
            continue;
        }
        let (Some(eip), Some(cidr)) = (eips.get(&s.spec.eip), snat_cidr(&s.spec.internal_cidr))
        else {
            continue;
        };
        snats.push((cidr, *eip));
    }
    // Longest prefix first, as upstream inserts them; ties in a stable order.
    snats.sort_by(|a, b| {
        b.0.prefix_len()
            .cmp(&a.0.prefix_len())
            .then(a.0.cmp(&b.0))
            .then(a.1.cmp(&b.1))
    });
    snats.dedup();
    p.snat = snats
        .into_iter()
        .map(|(cidr, eip)| Rule {
            matches: vec![
                Match::Oifname(EXTERNAL_NIC.into()),
                Match::Saddr(IpNet::V4(cidr)),
            ],
            action: Action::Snat {
                to: IpAddr::V4(eip),
                random_fully: true,
            },
        })
        .collect();
    Ok(p)
}

fn other(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

/// Netlink sockets in the gateway pod's network namespace, and the VPC routes it added (to
/// take back those no longer wanted).
pub struct Converger {
    handle: Handle,
    nft: Nft,
    arp: Arp,
    routed: std::sync::Mutex<BTreeSet<(Ipv4Net, Ipv4Addr)>>,
}

impl Converger {
    /// Opens the sockets in the namespace at `netns`, or in the current one.
    pub async fn open(netns: Option<&Path>) -> io::Result<Converger> {
        let (handle, nft, arp) = open_sockets(netns).await?;
        Ok(Converger {
            handle,
            nft,
            arp,
            routed: Default::default(),
        })
    }

    async fn link_mac(&self, name: &str) -> io::Result<(u32, Option<[u8; 6]>)> {
        let m = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await
            .map_err(|e| other(&format!("find link {name}"), e))?
            .ok_or_else(|| other(&format!("find link {name}"), "no such link"))?;
        let mac = m.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(a) => <[u8; 6]>::try_from(a.as_slice()).ok(),
            _ => None,
        });
        Ok((m.header.index, mac))
    }

    /// The IPv4 addresses on link `index`.
    async fn addresses(&self, index: u32) -> io::Result<Vec<Ipv4Net>> {
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| other("list addresses", e))?;
        Ok(msgs
            .iter()
            .filter_map(|m| {
                let ip = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                })?;
                Ipv4Net::new(ip, m.header.prefix_len).ok()
            })
            .collect())
    }

    async fn route(&self, dst: Ipv4Net, gw: Ipv4Addr, index: u32, onlink: bool) -> io::Result<()> {
        let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst.addr(), dst.prefix_len())
            .gateway(gw)
            .output_interface(index)
            .protocol(RouteProtocol::Boot);
        if onlink {
            b = b.onlink();
        }
        self.handle
            .route()
            .add(b.build())
            .replace()
            .execute()
            .await
            .map_err(|e| other(&format!("route {dst} via {gw}"), e))
    }

    /// Makes the namespace hold `plan` (idempotent).
    pub async fn converge(&self, plan: &Plan) -> io::Result<()> {
        let (net1, net1_mac) = self.link_mac(EXTERNAL_NIC).await?;
        let (eth0, _) = self.link_mac(VPC_NIC).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(net1).up().build())
            .execute()
            .await
            .map_err(|e| other("set net1 up", e))?;
        for a in &plan.eips {
            self.handle
                .address()
                .add(net1, IpAddr::V4(a.addr()), a.prefix_len())
                .replace()
                .execute()
                .await
                .map_err(|e| other(&format!("address {a} on net1"), e))?;
        }
        // EIPs no longer wanted leave net1 (its own attachment address stays).
        for have in self.addresses(net1).await? {
            if plan.eips.contains(&have) || plan.own.contains(&have) {
                continue;
            }
            let mut msg = rtnetlink::packet_route::address::AddressMessage::default();
            msg.header.family = rtnetlink::packet_route::AddressFamily::Inet;
            msg.header.prefix_len = have.prefix_len();
            msg.header.index = net1;
            msg.attributes
                .push(AddressAttribute::Local(IpAddr::V4(have.addr())));
            msg.attributes
                .push(AddressAttribute::Address(IpAddr::V4(have.addr())));
            self.handle
                .address()
                .del(msg)
                .execute()
                .await
                .map_err(|e| other(&format!("remove {have} from net1"), e))?;
        }
        if let Some(gw) = plan.external_gateway {
            self.route(Ipv4Net::default(), gw, net1, true).await?;
        }
        let wanted: BTreeSet<(Ipv4Net, Ipv4Addr)> = plan.vpc_routes.iter().copied().collect();
        for (dst, gw) in &wanted {
            self.route(*dst, *gw, eth0, false).await?;
        }
        let stale: Vec<(Ipv4Net, Ipv4Addr)> = {
            let routed = self.routed.lock().unwrap_or_else(|p| p.into_inner());
            routed.difference(&wanted).copied().collect()
        };
        for (dst, gw) in stale {
            let msg = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(dst.addr(), dst.prefix_len())
                .gateway(gw)
                .output_interface(eth0)
                .build();
            match self.handle.route().del(msg).execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => {}
                Err(e) => return Err(other(&format!("remove route {dst}"), e)),
            }
        }
        *self.routed.lock().unwrap_or_else(|p| p.into_inner()) = wanted;
        self.nft
            .apply(&[plan.table()])
            .map_err(|e| other("nftables", e))?;
        // Upstream's `arping -U` of each EIP: a gratuitous request per converge.
        if let Some(mac) = net1_mac {
            for a in &plan.eips {
                self.arp
                    .send(net1, &arp::request(mac, a.addr(), a.addr()))
                    .map_err(|e| other("arp", e))?;
            }
        }
        Ok(())
    }
}

async fn list<K>(client: &kube::Client) -> Result<Vec<K>, String>
where
    K: kube::Resource<Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::all(client.clone())
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .map_err(|e| format!("list {}: {e}", K::plural(&Default::default())))
}

/// Reads the pod and the gateway's objects and converges once; `Err` says why not (retried).
pub async fn converge_once(
    client: &kube::Client,
    me: &Identity,
    conv: &Converger,
) -> Result<Plan, String> {
    let pod = Api::<Pod>::namespaced(client.clone(), &me.namespace)
        .get(&me.name)
        .await
        .map_err(|e| format!("get pod {}/{}: {e}", me.namespace, me.name))?;
    let Some(gateway) = pod.annotations().get(natgw::ANNOTATION_GATEWAY).cloned() else {
        return Err(format!(
            "pod {}/{} has no {} annotation",
            me.namespace,
            me.name,
            natgw::ANNOTATION_GATEWAY
        ));
    };
    let objects = Objects {
        eips: list(client).await?,
        fips: list(client).await?,
        snats: list(client).await?,
        dnats: list(client).await?,
    };
    let env_gw = std::env::var("GATEWAY_V4").unwrap_or_default();
    let p = plan(&gateway, pod.annotations(), &env_gw, &objects)?;
    conv.converge(&p)
        .await
        .map_err(|e| format!("converge: {e}"))?;
    Ok(p)
}

fn changes<K>(client: &kube::Client) -> futures::stream::BoxStream<'static, ()>
where
    K: kube::Resource<Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
    K::DynamicType: Default,
{
    watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .touched_objects()
        .map(|_| ())
        .boxed()
}

/// Converges at start and again on every change of the pod or of any EIP or NAT rule,
/// retrying failures; never returns.
pub async fn run(client: kube::Client, me: Identity, conv: Converger) {
    let pods = Api::<Pod>::namespaced(client.clone(), &me.namespace);
    let name = me.name.clone();
    let pod_changes = watcher(pods, watcher::Config::default())
        .applied_objects()
        .filter_map(move |r| {
            let mine = matches!(&r, Ok(p) if p.name_any() == name);
            async move { mine.then_some(()) }
        })
        .boxed();
    let mut all = futures::stream::select_all([
        pod_changes,
        changes::<IptablesEip>(&client),
        changes::<IptablesFipRule>(&client),
        changes::<IptablesSnatRule>(&client),
        changes::<IptablesDnatRule>(&client),
    ]);
    let mut last: Option<Plan> = None;
    loop {
        match converge_once(&client, &me, &conv).await {
            Ok(p) => {
                if last.as_ref() != Some(&p) {
                    info!(?p, "vpc nat gateway converged");
                    last = Some(p);
                }
            }
            Err(e) => {
                warn!("{e}; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        }
        // A change, or a minute: whatever someone changed by hand in the pod is put back.
        let _ = tokio::time::timeout(Duration::from_secs(60), all.next()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn annotations() -> BTreeMap<String, String> {
        obj(json!({
            "k8s.v1.cni.cncf.io/networks": "kube-system/ovn-vpc-external-network",
            "ovn.kubernetes.io/gateway": "10.0.1.1",
            "ovn.kubernetes.io/vpc_cidrs": "[\"10.0.1.0/24\",\"10.0.2.0/24\"]",
            "ovn-vpc-external-network.kube-system.kubernetes.io/ip_address": "192.168.0.11",
            "ovn-vpc-external-network.kube-system.kubernetes.io/cidr": "192.168.0.0/24",
            "ovn-vpc-external-network.kube-system.kubernetes.io/gateway": "192.168.0.1",
        }))
    }

    /// Seed 004's objects give upstream's rules: the EIPs on net1 with the external prefix,
    /// the default via the external gateway, the other VPC subnet via eth0's gateway, the FIP
    /// both ways, the DNAT with its ports, the SNATs longest prefix first; rules not ready,
    /// being deleted or of another gateway's EIP are left out.
    #[test]
    fn seed_004_plan() {
        let eip = |name: &str, ip: &str, gw: &str| -> IptablesEip {
            obj(json!({"metadata": {"name": name}, "spec": {"natGwDp": gw},
                       "status": {"ip": ip, "ready": true}}))
        };
        let objects = Objects {
            eips: vec![
                eip("eipf01", "192.168.0.21", "gw1"),
                eip("eipd01", "192.168.0.22", "gw1"),
                eip("eips01", "192.168.0.23", "gw1"),
                eip("other", "192.168.0.24", "gw2"),
            ],
            fips: vec![
                obj(json!({"metadata": {"name": "fip01"},
                    "spec": {"eip": "eipf01", "internalIp": "10.0.1.5"}, "status": {"ready": true}})),
                obj(json!({"metadata": {"name": "fip-other"},
                    "spec": {"eip": "other", "internalIp": "10.0.1.6"}, "status": {"ready": true}})),
                obj(json!({"metadata": {"name": "fip-unready"},
                    "spec": {"eip": "eipd01", "internalIp": "10.0.1.7"}})),
            ],
            snats: vec![
                obj(json!({"metadata": {"name": "snat01"},
                    "spec": {"eip": "eips01", "internalCIDR": "10.0.0.0/16"}, "status": {"ready": true}})),
                obj(json!({"metadata": {"name": "snat02"},
                    "spec": {"eip": "eips01", "internalCIDR": "10.0.1.9"}, "status": {"ready": true}})),
                obj(
                    json!({"metadata": {"name": "snat03", "deletionTimestamp": "2024-01-01T00:00:00Z",
                                        "finalizers": ["kubeovn.io/kube-ovn-controller"]},
                    "spec": {"eip": "eips01", "internalCIDR": "10.0.3.0/24"}, "status": {"ready": true}}),
                ),
            ],
            dnats: vec![obj(json!({"metadata": {"name": "dnat01"},
                "spec": {"eip": "eipd01", "externalPort": "8888", "internalIp": "10.0.1.10",
                         "internalPort": "80", "protocol": "tcp"}, "status": {"ready": true}}))],
        };
        let p = plan("gw1", &annotations(), "", &objects).unwrap();
        let n = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert_eq!(
            p.eips,
            vec![
                n("192.168.0.21/24"),
                n("192.168.0.22/24"),
                n("192.168.0.23/24")
            ]
        );
        assert_eq!(p.own, vec![n("192.168.0.11/24")]);
        assert_eq!(p.external_gateway, Some("192.168.0.1".parse().unwrap()));
        assert_eq!(
            p.vpc_routes,
            vec![(n("10.0.2.0/24"), "10.0.1.1".parse().unwrap())]
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            p.fip_dnat,
            vec![Rule {
                matches: vec![Match::Daddr(ip("192.168.0.21"))],
                action: Action::Dnat {
                    to: ip("10.0.1.5"),
                    port: None
                }
            }]
        );
        assert_eq!(
            p.fip_snat,
            vec![Rule {
                matches: vec![Match::Saddr("10.0.1.5/32".parse().unwrap())],
                action: Action::Snat {
                    to: ip("192.168.0.21"),
                    random_fully: false
                }
            }]
        );
        assert_eq!(
            p.dnat,
            vec![Rule {
                matches: vec![
                    Match::Daddr(ip("192.168.0.22")),
                    Match::L4Proto(6),
                    Match::Dport(8888)
                ],
                action: Action::Dnat {
                    to: ip("10.0.1.10"),
                    port: Some(80)
                }
            }]
        );
        let snat_sources: Vec<&Match> = p.snat.iter().map(|r| &r.matches[1]).collect();
        assert_eq!(
            snat_sources,
            vec![
                &Match::Saddr("10.0.1.9/32".parse().unwrap()),
                &Match::Saddr("10.0.0.0/16".parse().unwrap())
            ]
        );
        let t = p.table();
        assert_eq!(t.chains[0].rules.len(), 2);
        assert_eq!(t.chains[1].rules.len(), 3);
        // The container's GATEWAY_V4 wins over the attachment's gateway.
        let env = plan("gw1", &annotations(), "192.168.0.254", &objects).unwrap();
        assert_eq!(env.external_gateway, Some("192.168.0.254".parse().unwrap()));
        // Not allocated yet: an error naming the network.
        let mut bare = annotations();
        bare.remove("ovn-vpc-external-network.kube-system.kubernetes.io/cidr");
        assert!(plan("gw1", &bare, "", &objects)
            .unwrap_err()
            .contains("ovn-vpc-external-network.kube-system"));
    }

    #[test]
    fn providers_protocols_and_cidrs() {
        let a: BTreeMap<String, String> = obj(json!({
            "k8s.v1.cni.cncf.io/networks": "default/extra, kube-system/ext@net1"}));
        assert_eq!(external_provider(&a).as_deref(), Some("ext.kube-system"));
        assert_eq!(external_provider(&BTreeMap::new()), None);
        assert_eq!(proto_number("TCP"), Some(6));
        assert_eq!(proto_number("udp"), Some(17));
        assert_eq!(proto_number("sctp"), None);
        assert_eq!(snat_cidr("10.0.1.5"), Some("10.0.1.5/32".parse().unwrap()));
        assert_eq!(
            snat_cidr("10.0.1.5/24"),
            Some("10.0.1.0/24".parse().unwrap())
        );
        assert_eq!(snat_cidr("fd00::/64"), None);
    }
}
