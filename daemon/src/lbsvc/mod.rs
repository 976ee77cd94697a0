//! `kube-ovn-lb-svc`: the data plane of an lb-svc pod (seed 003), run inside that pod.
//!
//! Upstream's controller execs `lb-svc.sh` in the pod (`init`, `eip-add`, `dnat-add`); this agent
//! reads the same inputs from the API instead — its pod's annotations (the attachment address
//! `<provider>.kubernetes.io/{ip_address,cidr,gateway}` and `ovn.kubernetes.io/gateway`) and
//! its Service (ClusterIPs, ports, `ovn.kubernetes.io/attachmentprovider`) — and converges to
//! what the script leaves behind: `net1` up with the LB address, `ip rule iif net1|eth0 lookup
//! 100`, in table 100 the attachment subnet on `net1`, the default route via the attachment
//! gateway and each ClusterIP via `eth0`'s gateway, and the NAT (DNAT of LB-IP:port to
//! ClusterIP:port per port and protocol, masquerade towards the ClusterIP; see [`nft`]), and
//! announces the address to the attachment gateway (see [`arp`]). It
//! converges again on every change of either object and at every start, so a restarted pod or
//! an edited Service needs nobody to exec anything. What users see — the Deployment, the pod
//! and its annotations, the Service status — is the controller's and unchanged.

pub mod arp;
pub mod nft;

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{RouteProtocol, RouteScope};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute};
use rtnetlink::{Handle, IpVersion, LinkUnspec, RouteMessageBuilder};
use tracing::{info, warn};

use crate::nft::Nft;
use arp::Arp;
use kube_ovn_common::annotations::{self as ann, Field};
use kube_ovn_common::attachment::lb_svc_provider;
use nft::{Dnat, Ruleset};

/// The routing table upstream's script fills.
pub const ROUTE_TABLE: u32 = 100;
/// The attachment NIC (Multus' first extra interface).
pub const ATTACH_NIC: &str = "net1";
/// The pod's OVN NIC.
pub const POD_NIC: &str = "eth0";

/// Everything the pod's network should hold for its Service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The LB addresses with the attachment subnet's prefix length, for `net1`.
    pub lb_addrs: Vec<IpNet>,
    /// The attachment subnet(s), on-link on `net1` in table 100.
    pub attach_cidrs: Vec<IpNet>,
    /// The attachment gateway(s): table 100's default routes.
    pub attach_gateways: Vec<IpAddr>,
    /// The ClusterIPs with `eth0`'s gateway of their family: table 100's host routes.
    pub cluster_routes: Vec<(IpAddr, IpAddr)>,
    /// IPv4 NAT.
    pub v4: Ruleset,
    /// IPv6 NAT.
    pub v6: Ruleset,
}

fn list(v: Option<&String>) -> Vec<&str> {
    v.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

/// The IP protocol number of a Service port's protocol (TCP when unset, as Kubernetes).
pub fn proto_number(p: Option<&str>) -> Option<u8> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(6),
        "UDP" => Some(17),
        "SCTP" => Some(132),
        _ => None,
    }
}

/// What the pod's network should be, from its Service and its own annotations; an error
/// names what is still missing (the pod not allocated yet).
pub fn plan(svc: &Service, pod_annotations: &BTreeMap<String, String>) -> Result<Plan, String> {
    let provider = lb_svc_provider(svc.annotations());
    let get = |f: Field| pod_annotations.get(ann::key(&provider, f).as_ref());
    let ips = list(get(Field::IpAddress));
    let cidrs: Vec<IpNet> = list(get(Field::Cidr))
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    let gateways: Vec<IpAddr> = list(get(Field::Gateway))
        .iter()
        .filter_map(|g| g.parse().ok())
        .collect();
    if ips.is_empty() || cidrs.is_empty() || gateways.is_empty() {
        return Err(format!(
            "failed to get attachment network info of provider {provider} from the pod"
        ));
    }
    let pod_gateways: Vec<IpAddr> = list(pod_annotations.get(ann::GATEWAY))
        .iter()
        .filter_map(|g| g.parse().ok())
        .collect();
    let mut p = Plan {
        attach_cidrs: cidrs.clone(),
        attach_gateways: gateways,
        ..Default::default()
    };
    let mut lb_ips = Vec::new();
    for ip in ips {
        let ip: IpAddr = ip
            .parse()
            .map_err(|e| format!("attachment address {ip}: {e}"))?;
        let cidr = cidrs
            .iter()
            .find(|c| c.addr().is_ipv4() == ip.is_ipv4())
            .ok_or_else(|| format!("no attachment cidr for {ip}"))?;
        p.lb_addrs
            .push(IpNet::new(ip, cidr.prefix_len()).map_err(|e| e.to_string())?);
        lb_ips.push(ip);
    }
    let spec = svc.spec.clone().unwrap_or_default();
    let mut cluster_ips: Vec<IpAddr> = spec
        .cluster_ips
        .unwrap_or_default()
        .iter()
        .chain(spec.cluster_ip.iter())
        .filter_map(|c| c.parse().ok())
        .collect();
    cluster_ips.sort();
    cluster_ips.dedup();
    for cip in &cluster_ips {
        if let Some(gw) = pod_gateways.iter().find(|g| g.is_ipv4() == cip.is_ipv4()) {
            p.cluster_routes.push((*cip, *gw));
        }
    }
    for port in spec.ports.unwrap_or_default() {
        let Some(proto) = proto_number(port.protocol.as_deref()) else {
            continue;
        };
        let Ok(number) = u16::try_from(port.port) else {
            continue;
        };
        for lb in &lb_ips {
            for cip in cluster_ips.iter().filter(|c| c.is_ipv4() == lb.is_ipv4()) {
                let d = Dnat {
                    lb_ip: *lb,
                    port: number,
                    proto,
                    to_ip: *cip,
                    to_port: number,
                };
                if lb.is_ipv4() {
                    p.v4.dnats.push(d);
                } else {
                    p.v6.dnats.push(d);
                }
            }
        }
    }
    for cip in &cluster_ips {
        if cip.is_ipv4() {
            p.v4.masquerade.push(*cip);
        } else {
            p.v6.masquerade.push(*cip);
        }
    }
    p.v4.dnats.sort();
    p.v6.dnats.sort();
    Ok(p)
}

/// Opens a routing socket, an nfnetlink socket and an ARP socket in the network namespace at
/// `netns` (entered on a throwaway thread), or in the current one, and switches forwarding on
/// there (a pod agent's namespace forwards; upstream's image has it on). Shared by the pod
/// agents (lb-svc and the VPC NAT gateway).
pub async fn open_sockets(netns: Option<&Path>) -> io::Result<(Handle, Nft, Arp)> {
    let rt = tokio::runtime::Handle::current();
    let path = netns.map(Path::to_path_buf);
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("agent-netns".into())
        .spawn(move || {
            let _guard = rt.enter();
            let r = (|| {
                if let Some(p) = &path {
                    let f = File::open(p)?;
                    // SAFETY: setns on this thread only; the thread ends right after.
                    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                let (conn, handle, _) = rtnetlink::new_connection()?;
                tokio::spawn(conn);
                let nft = Nft::open()?;
                let arp = Arp::open()?;
                // /proc/sys/net is the namespace of the thread that opens it: forwarding is
                // switched on here, once.
                std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
                if Path::new("/proc/sys/net/ipv6/conf/all/forwarding").exists() {
                    std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1")?;
                }
                Ok((handle, nft, arp))
            })();
            let _ = tx.send(r);
        })?;
    rx.await.map_err(|e| other("netns thread", e))?
}

/// Netlink sockets (routing and nftables) in the pod's network namespace.
pub struct Converger {
    handle: Handle,
    nft: Nft,
    arp: Arp,
}

fn other(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

impl Converger {
    /// Opens the sockets in the namespace at `netns` (entered on a throwaway thread), or in
    /// the current one.
    pub async fn open(netns: Option<&Path>) -> io::Result<Converger> {
        let (handle, nft, arp) = open_sockets(netns).await?;
        Ok(Converger { handle, nft, arp })
    }

    async fn link(&self, name: &str) -> io::Result<u32> {
        Ok(self.link_mac(name).await?.0)
    }

    /// The link's index and MAC address.
    async fn link_mac(&self, name: &str) -> io::Result<(u32, Option<[u8; 6]>)> {
        let m = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await
            .map_err(|e| other(&format!("find link {name}"), e))?;
        let m = m.ok_or_else(|| other(&format!("find link {name}"), "no such link"))?;
        let mac = m.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(a) => <[u8; 6]>::try_from(a.as_slice()).ok(),
            _ => None,
        });
        Ok((m.header.index, mac))
    }

    /// Whether a rule `iif <nic> lookup 100` of `version` exists.
    async fn has_rule(&self, version: IpVersion, nic: &str) -> io::Result<bool> {
        let rules: Vec<_> = self
            .handle
            .rule()
            .get(version)
            .execute()
            .try_collect()
            .await
            .map_err(|e| other("list rules", e))?;
        Ok(rules.iter().any(|r| {
            let iif = r
                .attributes
                .iter()
                .any(|a| matches!(a, RuleAttribute::Iifname(n) if n == nic));
            let table = r
                .attributes
                .iter()
                .any(|a| matches!(a, RuleAttribute::Table(t) if *t == ROUTE_TABLE))
                || u32::from(r.header.table) == ROUTE_TABLE;
            iif && table
        }))
    }

    async fn route(
        &self,
        dst: IpNet,
        gw: Option<IpAddr>,
        index: u32,
        link_scope: bool,
    ) -> io::Result<()> {
        let what = format!("route {dst} via {gw:?} table {ROUTE_TABLE}");
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dst.addr(), dst.prefix_len())
            .map_err(|e| other(&what, e))?;
        if let Some(g) = gw {
            b = b.gateway(g).map_err(|e| other(&what, e))?;
        }
        if link_scope {
            b = b.scope(RouteScope::Link);
        }
        // Protocol boot, as `ip route replace` in upstream's script writes them.
        let msg = b
            .output_interface(index)
            .table_id(ROUTE_TABLE)
            .protocol(RouteProtocol::Boot)
            .build();
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(|e| other(&what, e))
    }

    /// Makes the namespace hold `plan` (idempotent).
    pub async fn converge(&self, plan: &Plan) -> io::Result<()> {
        let (net1, net1_mac) = self.link_mac(ATTACH_NIC).await?;
        let eth0 = self.link(POD_NIC).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(net1).up().build())
            .execute()
            .await
            .map_err(|e| other("set net1 up", e))?;
        for a in &plan.lb_addrs {
            self.handle
                .address()
                .add(net1, a.addr(), a.prefix_len())
                .replace()
                .execute()
                .await
                .map_err(|e| other(&format!("address {a} on net1"), e))?;
        }
        let v6 = plan.lb_addrs.iter().any(|a| a.addr().is_ipv6());
        let v4 = plan.lb_addrs.iter().any(|a| a.addr().is_ipv4());
        for (on, version) in [(v4, IpVersion::V4), (v6, IpVersion::V6)] {
            if !on {
                continue;
            }
            for nic in [ATTACH_NIC, POD_NIC] {
                if self.has_rule(version.clone(), nic).await? {
                    continue;
                }
                let req = self
                    .handle
                    .rule()
                    .add()
                    .input_interface(nic.to_string())
                    .table_id(ROUTE_TABLE)
                    .action(RuleAction::ToTable);
                let r = match version {
                    IpVersion::V4 => req.v4().execute().await,
                    IpVersion::V6 => req.v6().execute().await,
                };
                r.map_err(|e| other(&format!("rule iif {nic} lookup {ROUTE_TABLE}"), e))?;
            }
        }
        for c in &plan.attach_cidrs {
            self.route(c.trunc(), None, net1, true).await?;
        }
        for g in &plan.attach_gateways {
            let any = IpNet::new(
                if g.is_ipv4() {
                    IpAddr::from([0u8; 4])
                } else {
                    IpAddr::from([0u16; 8])
                },
                0,
            )
            .map_err(|e| other("default route", e))?;
            self.route(any, Some(*g), net1, false).await?;
        }
        for (cip, gw) in &plan.cluster_routes {
            let host = IpNet::new(*cip, if cip.is_ipv4() { 32 } else { 128 })
                .map_err(|e| other("cluster ip route", e))?;
            self.route(host, Some(*gw), eth0, false).await?;
        }
        self.nft
            .apply(&nft::tables(&plan.v4, &plan.v6))
            .map_err(|e| other("nftables", e))?;
        // Upstream's `arping -s <lb-ip> <gateway>`, one request per converge.
        if let Some(mac) = net1_mac {
            for a in &plan.lb_addrs {
                let IpAddr::V4(ip) = a.addr() else { continue };
                for g in &plan.attach_gateways {
                    if let IpAddr::V4(gw) = g {
                        self.arp
                            .send(net1, &arp::request(mac, ip, *gw))
                            .map_err(|e| other("arp", e))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Where the agent runs: its pod (the Deployment's pod names no Service; its labels do).
#[derive(Debug, Clone)]
pub struct Identity {
    /// The pod's namespace (`POD_NAMESPACE`, else the service account's namespace file).
    pub namespace: String,
    /// The pod's name (`POD_NAME`, else the hostname Kubernetes sets to it).
    pub name: String,
}

impl Identity {
    /// From the environment, as a pod sees it.
    pub fn from_env() -> Identity {
        let sa_ns = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
        Identity {
            namespace: std::env::var("POD_NAMESPACE").unwrap_or_else(|_| {
                std::fs::read_to_string(sa_ns)
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "default".into())
            }),
            name: std::env::var("POD_NAME").unwrap_or_else(|_| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default()
            }),
        }
    }
}

/// Reads the pod and its Service and converges once; `Err` says why not (retried).
pub async fn converge_once(
    client: &kube::Client,
    me: &Identity,
    conv: &Converger,
) -> Result<Plan, String> {
    let pod = Api::<Pod>::namespaced(client.clone(), &me.namespace)
        .get(&me.name)
        .await
        .map_err(|e| format!("get pod {}/{}: {e}", me.namespace, me.name))?;
    let labels = pod.labels();
    let (Some(ns), Some(name)) = (labels.get("namespace"), labels.get("service")) else {
        return Err(format!(
            "pod {}/{} has no namespace/service labels",
            me.namespace, me.name
        ));
    };
    let svc = Api::<Service>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .map_err(|e| format!("get service {ns}/{name}: {e}"))?;
    let p = plan(&svc, pod.annotations())?;
    conv.converge(&p)
        .await
        .map_err(|e| format!("converge: {e}"))?;
    Ok(p)
}

/// Converges at start and again on every change of the pod or of any Service in its
/// namespace (the lb-svc pod lives in its Service's namespace), retrying failures; never
/// returns.
pub async fn run(client: kube::Client, me: Identity, conv: Converger) {
    let pods = Api::<Pod>::namespaced(client.clone(), &me.namespace);
    let services = Api::<Service>::namespaced(client.clone(), &me.namespace);
    let name = me.name.clone();
    let pod_changes = watcher(pods, watcher::Config::default())
        .applied_objects()
        .filter_map(move |r| {
            let mine = matches!(&r, Ok(p) if p.name_any() == name);
            async move { mine.then_some(()) }
        })
        .boxed();
    let svc_changes = watcher(services, watcher::Config::default())
        .applied_objects()
        .map(|_| ())
        .boxed();
    let mut changes = futures::stream::select(pod_changes, svc_changes);
    let mut last: Option<Plan> = None;
    loop {
        match converge_once(&client, &me, &conv).await {
            Ok(p) => {
                if last.as_ref() != Some(&p) {
                    info!(?p, "lb-svc converged");
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
        let _ = tokio::time::timeout(Duration::from_secs(60), changes.next()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Seed 003's pod and Service give upstream's rules: LB IP 172.18.0.18/16 on net1, table
    /// 100 with the subnet, the default via 172.18.0.1 and the ClusterIP via 10.16.0.1, a DNAT
    /// per port and a masquerade to the ClusterIP.
    #[test]
    fn seed_003_plan() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "test-service", "namespace": "default",
                "annotations": {"ovn.kubernetes.io/attachmentprovider": "lb-svc-attachment.kube-system"}},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.109.201.193", "clusterIPs": ["10.109.201.193"],
                "ports": [{"name": "test", "port": 80, "protocol": "TCP", "targetPort": 80},
                          {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]}}))
        .unwrap();
        let a: BTreeMap<String, String> = serde_json::from_value(json!({
            "ovn.kubernetes.io/gateway": "10.16.0.1",
            "lb-svc-attachment.kube-system.kubernetes.io/ip_address": "172.18.0.18",
            "lb-svc-attachment.kube-system.kubernetes.io/cidr": "172.18.0.0/16",
            "lb-svc-attachment.kube-system.kubernetes.io/gateway": "172.18.0.1"}))
        .unwrap();
        let p = plan(&svc, &a).unwrap();
        assert_eq!(p.lb_addrs, vec!["172.18.0.18/16".parse::<IpNet>().unwrap()]);
        assert_eq!(
            p.attach_gateways,
            vec!["172.18.0.1".parse::<IpAddr>().unwrap()]
        );
        let cip: IpAddr = "10.109.201.193".parse().unwrap();
        assert_eq!(p.cluster_routes, vec![(cip, "10.16.0.1".parse().unwrap())]);
        let lb: IpAddr = "172.18.0.18".parse().unwrap();
        assert_eq!(
            p.v4.dnats,
            vec![
                Dnat {
                    lb_ip: lb,
                    port: 53,
                    proto: 17,
                    to_ip: cip,
                    to_port: 53
                },
                Dnat {
                    lb_ip: lb,
                    port: 80,
                    proto: 6,
                    to_ip: cip,
                    to_port: 80
                },
            ]
        );
        assert_eq!(p.v4.masquerade, vec![cip]);
        assert!(p.v6.dnats.is_empty());
        let mut unallocated = a.clone();
        unallocated.remove("lb-svc-attachment.kube-system.kubernetes.io/ip_address");
        assert!(plan(&svc, &unallocated).is_err());
    }
}
