//! TPROXY for kubelet probes of custom-VPC pods (upstream's `--enable-tproxy`): a custom VPC's
//! addresses are not routed from the node, so kubelet's TCP/HTTP/gRPC probes of such a pod
//! would fail. For every probe port of a custom-VPC pod on this node, the daemon marks the
//! node's own packets to `pod IP:port` (0x90003) so that policy routing (table 10001: a local
//! default route on `lo`) loops them back in, where a TPROXY rule hands them to its
//! transparent listener on port 8102 (mark 0x90004). Each accepted connection's local address is
//! the probed `pod IP:port`; the daemon connects to it from inside the pod's network namespace
//! (the `pod_netns` of the pod's OVS interface) and relays both directions.
//!
//! Upstream's marks, table and port; the rules are one nftables table (`kube-ovn-tproxy` in the
//! `ip` and `ip6` families, loaded atomically) where upstream keeps iptables chains. Upstream's
//! documented limitation — one address in two VPCs on the same node — is reported (a warning
//! naming the pods) and such an address is not intercepted, rather than relayed to either pod.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kube_ovn_common::annotations as ann;
use kube_ovn_common::crd::Subnet;
use rtnetlink::packet_route::route::{RouteScope, RouteType};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute};
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;

use crate::node::watch::{self, Mirror};
use crate::ovs::Ovs;

/// The transparent listener's port (upstream's `TProxyListenPort`).
pub const LISTEN_PORT: u16 = 8102;
/// The policy routing table that delivers marked packets locally (`TProxyRouteTable`).
pub const ROUTE_TABLE: u32 = 10001;
/// Mark of the node's own packets to a probe port (`TProxyOutputMark`, also the mask).
pub const OUTPUT_MARK: u32 = 0x90003;
/// Mark TPROXY sets on the looped-back packets (`TProxyPreroutingMark`, also the mask).
pub const PREROUTING_MARK: u32 = 0x90004;
/// The nftables table holding the rules, in the `ip` and `ip6` families.
pub const TABLE: &str = "kube-ovn-tproxy";

/// Longest a relayed connection to a pod may take to open.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Most relayed connections at once; more wait for a slot (kubelet's probes are few).
const MAX_CONNECTIONS: usize = 256;
/// Pause before retrying routing or rules that failed to apply.
const RETRY: Duration = Duration::from_secs(2);

/// The ports kubelet probes in `pod` (liveness and readiness: TCP, HTTP and gRPC; named ports
/// resolved through the container's ports), as upstream's `getProbePorts`.
pub fn probe_ports(pod: &Pod) -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        let probes: [&Option<Probe>; 2] = [&c.liveness_probe, &c.readiness_probe];
        for p in probes.into_iter().flatten() {
            let port = if let Some(t) = &p.tcp_socket {
                t.port.clone()
            } else if let Some(h) = &p.http_get {
                h.port.clone()
            } else if let Some(g) = &p.grpc {
                IntOrString::Int(g.port)
            } else {
                continue;
            };
            let number = match port {
                IntOrString::Int(n) => Some(n),
                IntOrString::String(name) => c
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(name.as_str()))
                    .map(|p| p.container_port),
            };
            if let Some(n) = number
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n != 0)
            {
                out.insert(n);
            }
        }
    }
    out
}

/// Whether `pod` is on a subnet of a VPC other than the default one (`cluster_router`): the
/// pods whose probes need TPROXY (upstream's `getTProxyConditionPod`).
pub fn in_custom_vpc(pod: &Pod, subnets: &Store<Subnet>, cluster_router: &str) -> bool {
    let Some(ls) = pod.annotations().get(ann::LOGICAL_SWITCH) else {
        return false;
    };
    subnets
        .get(&ObjectRef::new(ls))
        .is_some_and(|s| !s.spec.vpc.is_empty() && s.spec.vpc != cluster_router)
}

/// The pod's addresses (`status.podIPs`).
fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    pod.status
        .iter()
        .flat_map(|s| s.pod_ips.iter().flatten())
        .filter_map(|p| p.ip.parse().ok())
        .collect()
}

/// What to intercept: the `(pod IP, port)` pairs, and the addresses held by more than one
/// custom-VPC pod on this node (the same IP in two VPCs), each with those pods' keys.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// The pairs to intercept.
    pub pairs: BTreeSet<(IpAddr, u16)>,
    /// Addresses left out because several pods hold them (upstream's documented limitation:
    /// the node's probe cannot say which VPC it means).
    pub ambiguous: BTreeMap<IpAddr, Vec<String>>,
}

/// The targets among `pods` (this node's).
pub fn targets<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    subnets: &Store<Subnet>,
    cluster_router: &str,
) -> Targets {
    let mut holders: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
    let mut wanted: BTreeSet<(IpAddr, u16)> = BTreeSet::new();
    for pod in pods {
        if !in_custom_vpc(pod, subnets, cluster_router) {
            continue;
        }
        let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
        let ports = probe_ports(pod);
        for ip in pod_ips(pod) {
            holders.entry(ip).or_default().push(key.clone());
            wanted.extend(ports.iter().map(|p| (ip, *p)));
        }
    }
    let ambiguous: BTreeMap<IpAddr, Vec<String>> = holders
        .into_iter()
        .filter(|(_, pods)| pods.len() > 1)
        .collect();
    wanted.retain(|(ip, _)| !ambiguous.contains_key(ip));
    Targets {
        pairs: wanted,
        ambiguous,
    }
}

/// The nftables ruleset for `targets`: in each family an `output` chain (route type, so the
/// mark reroutes) marking the node's packets to the targets, and a `prerouting` chain handing
/// the looped-back ones to the listener. Declaring each table before deleting it makes the load
/// succeed whether or not it existed.
pub fn ruleset(targets: &BTreeSet<(IpAddr, u16)>) -> String {
    let mut out = String::new();
    for (family, v4) in [("ip", true), ("ip6", false)] {
        let _ = writeln!(out, "table {family} {TABLE}");
        let _ = writeln!(out, "delete table {family} {TABLE}");
        let _ = writeln!(out, "table {family} {TABLE} {{");
        let mine: Vec<&(IpAddr, u16)> = targets
            .iter()
            .filter(|(ip, _)| ip.is_ipv4() == v4)
            .collect();
        let _ = writeln!(out, "  chain output {{");
        let _ = writeln!(
            out,
            "    type route hook output priority mangle; policy accept;"
        );
        for (ip, port) in &mine {
            let _ = writeln!(
                out,
                "    {family} daddr {ip} tcp dport {port} meta mark set mark | {OUTPUT_MARK:#x}"
            );
        }
        let _ = writeln!(out, "  }}");
        let _ = writeln!(out, "  chain prerouting {{");
        let _ = writeln!(
            out,
            "    type filter hook prerouting priority mangle; policy accept;"
        );
        for (ip, port) in &mine {
            let _ = writeln!(
                out,
                "    {family} daddr {ip} tcp dport {port} meta mark set mark | {PREROUTING_MARK:#x} tproxy to :{LISTEN_PORT} accept"
            );
        }
        let _ = writeln!(out, "  }}");
        let _ = writeln!(out, "}}");
    }
    out
}

/// What the TPROXY task needs.
pub struct TProxy {
    /// API access.
    pub client: Client,
    /// This node's name.
    pub node: String,
    /// The node's OVS database (the pods' network namespaces).
    pub ovs: Ovs,
    /// The default VPC's router (`--cluster-router`).
    pub cluster_router: String,
    /// Every Subnet (shared).
    pub subnets: Mirror<Subnet>,
}

impl TProxy {
    /// Starts the listeners and the rule reconciler in the background.
    pub fn start(self) {
        tokio::spawn(self.run());
    }

    async fn run(self) {
        let pods = watch::mirror(
            Api::<Pod>::all(self.client.clone()),
            watcher::Config::default().fields(&format!("spec.nodeName={}", self.node)),
            (),
        );
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        for any in [
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ] {
            match listen(SocketAddr::new(any, LISTEN_PORT)) {
                Ok(l) => {
                    tracing::info!(addr = %SocketAddr::new(any, LISTEN_PORT), "tproxy listening");
                    tokio::spawn(serve(
                        l,
                        pods.store.clone(),
                        self.ovs.clone(),
                        slots.clone(),
                    ));
                }
                // A node without IPv6 has no v6 listener; IPv4 must work.
                Err(e) if any.is_ipv6() => tracing::info!(error = %e, "no IPv6 tproxy listener"),
                Err(e) => {
                    tracing::error!(error = %e, "tproxy: cannot listen on port {LISTEN_PORT}");
                    return;
                }
            }
        }
        if !(pods.synced().await && self.subnets.synced().await) {
            return;
        }
        let (mut pod_changes, mut subnet_changes) = (pods.changes, self.subnets.changes.clone());
        let mut routed = false;
        let mut loaded: Option<String> = None;
        loop {
            let result = async {
                if !routed {
                    routing().await?;
                    routed = true;
                }
                let state = pods.store.state();
                let want = targets(
                    state.iter().map(|p| p.as_ref()),
                    &self.subnets.store,
                    &self.cluster_router,
                );
                let text = ruleset(&want.pairs);
                if loaded.as_deref() != Some(text.as_str()) {
                    for (ip, pods) in &want.ambiguous {
                        tracing::warn!(
                            %ip,
                            pods = ?pods,
                            "tproxy: several custom-VPC pods on this node hold this address; their probes are not relayed (the node cannot tell which VPC a probe means)"
                        );
                    }
                    let t = text.clone();
                    tokio::task::spawn_blocking(move || crate::node::nat::load(&t))
                        .await
                        .map_err(|e| e.to_string())??;
                    tracing::info!(targets = ?want.pairs, "tproxy rules loaded");
                    loaded = Some(text);
                }
                Ok::<(), String>(())
            }
            .await;
            let retry = match result {
                Ok(()) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "tproxy setup failed, retrying");
                    true
                }
            };
            let timer = async {
                if retry {
                    tokio::time::sleep(RETRY).await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                r = pod_changes.changed() => if r.is_err() { return },
                r = subnet_changes.changed() => if r.is_err() { return },
                _ = timer => {}
            }
        }
    }
}

/// The policy rules (each mark looks up table 10001) and the table's local default routes.
async fn routing() -> Result<(), String> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| format!("netlink: {e}"))?;
    let task = tokio::spawn(conn);
    let r = routing_with(&handle).await;
    task.abort();
    r
}

async fn routing_with(handle: &Handle) -> Result<(), String> {
    let lo = {
        let mut links = handle.link().get().match_name("lo").execute();
        links
            .try_next()
            .await
            .map_err(|e| format!("find lo: {e}"))?
            .ok_or("no lo")?
            .header
            .index
    };
    for version in [IpVersion::V4, IpVersion::V6] {
        let rules: Vec<_> = handle
            .rule()
            .get(version.clone())
            .execute()
            .try_collect()
            .await
            .map_err(|e| format!("list rules: {e}"))?;
        for mark in [OUTPUT_MARK, PREROUTING_MARK] {
            let exists = rules.iter().any(|r| {
                r.attributes
                    .iter()
                    .any(|a| matches!(a, RuleAttribute::FwMark(m) if *m == mark))
            });
            if exists {
                continue;
            }
            let mut req = handle
                .rule()
                .add()
                .fw_mark(mark)
                .table_id(ROUTE_TABLE)
                .action(RuleAction::ToTable);
            req.message_mut()
                .attributes
                .push(RuleAttribute::FwMask(mark));
            let r = match version {
                IpVersion::V4 => req.v4().execute().await,
                IpVersion::V6 => req.v6().execute().await,
            };
            r.map_err(|e| format!("rule fwmark {mark:#x} lookup {ROUTE_TABLE}: {e}"))?;
        }
        let any: IpAddr = match version {
            IpVersion::V4 => Ipv4Addr::UNSPECIFIED.into(),
            IpVersion::V6 => Ipv6Addr::UNSPECIFIED.into(),
        };
        let msg = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(any, 0)
            .map_err(|e| format!("local route: {e}"))?
            .kind(RouteType::Local)
            .scope(RouteScope::Host)
            .output_interface(lo)
            .table_id(ROUTE_TABLE)
            .build();
        let r = handle.route().add(msg).replace().execute().await;
        // A node without IPv6 cannot hold the v6 route; its pods have no v6 probes either.
        match (r, &version) {
            (Ok(()), _) | (Err(_), IpVersion::V6) => {}
            (Err(e), _) => return Err(format!("local {any}/0 dev lo table {ROUTE_TABLE}: {e}")),
        }
    }
    Ok(())
}

/// A listener with `IP_TRANSPARENT` (IPv4) or `IPV6_TRANSPARENT`, so TPROXY can hand it
/// connections addressed to pods.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    let (level, name) = if addr.is_ipv4() {
        (libc::SOL_IP, libc::IP_TRANSPARENT)
    } else {
        (libc::SOL_IPV6, libc::IPV6_TRANSPARENT)
    };
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if addr.is_ipv6() {
        // SAFETY: as above.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

/// Accepts intercepted connections and relays each to its pod.
async fn serve(listener: TcpListener, pods: Store<Pod>, ovs: Ovs, slots: Arc<Semaphore>) {
    loop {
        let (conn, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "tproxy accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (pods, ovs) = (pods.clone(), ovs.clone());
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = relay(conn, &pods, &ovs).await {
                tracing::debug!(%peer, error = %e, "tproxy connection");
            }
        });
    }
}

/// The network namespace of the one pod holding `ip` on this node (none when several do).
fn netns_of(ip: IpAddr, pods: &Store<Pod>, ovs: &Ovs) -> Option<String> {
    let state = pods.state();
    let mut holders = state.iter().filter(|p| pod_ips(p).contains(&ip));
    let pod = holders.next()?;
    if holders.next().is_some() {
        return None;
    }
    let iface_id = format!("{}.{}", pod.name_any(), pod.namespace().unwrap_or_default());
    ovs.pod_netns(&iface_id)
}

async fn relay(mut conn: TcpStream, pods: &Store<Pod>, ovs: &Ovs) -> Result<(), String> {
    let target = conn.local_addr().map_err(|e| e.to_string())?;
    let netns = netns_of(target.ip(), pods, ovs)
        .ok_or_else(|| format!("no pod on this node holds {}", target.ip()))?;
    let mut upstream = dial_in(&netns, target).await?;
    tokio::io::copy_bidirectional(&mut conn, &mut upstream)
        .await
        .map(drop)
        .map_err(|e| format!("relay to {target}: {e}"))
}

/// Connects to `target` from inside the network namespace at `netns`, on a thread of its own
/// (setns changes only the calling thread, which ends right after).
async fn dial_in(netns: &str, target: SocketAddr) -> Result<TcpStream, String> {
    let path = netns.to_string();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("tproxy-dial".into())
        .spawn(move || {
            let r = File::open(&path)
                .map_err(|e| format!("open netns {path}: {e}"))
                .and_then(|f| {
                    // SAFETY: setns on this thread only; the thread ends right after.
                    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
                    }
                    std::net::TcpStream::connect_timeout(&target, DIAL_TIMEOUT)
                        .map_err(|e| format!("connect {target} in {path}: {e}"))
                });
            let _ = tx.send(r);
        })
        .map_err(|e| format!("tproxy dial thread: {e}"))?;
    let stream = rx
        .await
        .map_err(|_| "tproxy dial thread died".to_string())??;
    // The socket stays in the pod's namespace it was made in, whatever thread uses it.
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    TcpStream::from_std(stream).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn probe_ports_as_upstream() {
        let p = pod(json!({"metadata": {"name": "a"}, "spec": {"containers": [
            {"name": "c", "ports": [{"name": "web", "containerPort": 8080}],
             "readinessProbe": {"tcpSocket": {"port": 80}},
             "livenessProbe": {"httpGet": {"port": "web", "path": "/"}}},
            {"name": "d", "livenessProbe": {"grpc": {"port": 9090}},
             "readinessProbe": {"exec": {"command": ["true"]}}},
            {"name": "e", "readinessProbe": {"httpGet": {"port": "missing"}}}
        ]}}));
        assert_eq!(probe_ports(&p), BTreeSet::from([80, 8080, 9090]));
    }

    #[test]
    fn custom_vpc_pods_are_targets_and_a_shared_address_is_left_out() {
        use kube::runtime::reflector::store::Writer;
        use kube::runtime::watcher::Event;
        let mut w: Writer<Subnet> = Writer::default();
        for (name, vpc) in [
            ("net1", "vpc1"),
            ("net2", "vpc2"),
            ("ovn-default", "ovn-cluster"),
        ] {
            let s: Subnet = serde_json::from_value(json!({"apiVersion": "kubeovn.io/v1",
                "kind": "Subnet", "metadata": {"name": name},
                "spec": {"vpc": vpc, "cidrBlock": "10.0.1.0/24"}}))
            .unwrap();
            w.apply_watcher_event(&Event::Apply(s));
        }
        let store = w.as_reader();
        let probed = |name: &str, ls: &str, ip: &str| {
            pod(json!({"metadata": {"name": name, "namespace": "ns",
                           "annotations": {"ovn.kubernetes.io/logical_switch": ls}},
                       "spec": {"containers": [{"name": "c",
                           "readinessProbe": {"tcpSocket": {"port": 80}}}]},
                       "status": {"podIPs": [{"ip": ip}]}}))
        };
        let a = probed("a", "net1", "10.0.1.2");
        let default_vpc = probed("d", "ovn-default", "10.16.0.2");
        let t = targets([&a, &default_vpc], &store, "ovn-cluster");
        assert_eq!(t.pairs, BTreeSet::from([("10.0.1.2".parse().unwrap(), 80)]));
        assert!(t.ambiguous.is_empty());
        // The same address in two VPCs on one node: neither is relayed, both are named.
        let b = probed("b", "net2", "10.0.1.2");
        let t = targets([&a, &b, &default_vpc], &store, "ovn-cluster");
        assert!(t.pairs.is_empty());
        assert_eq!(
            t.ambiguous.get(&"10.0.1.2".parse().unwrap()),
            Some(&vec!["ns/a".to_string(), "ns/b".to_string()])
        );
    }

    #[test]
    fn ruleset_marks_and_redirects_each_target_in_its_family() {
        let t = BTreeSet::from([
            ("10.0.1.2".parse().unwrap(), 8080),
            ("fd00::2".parse().unwrap(), 80),
        ]);
        let r = ruleset(&t);
        assert!(r.contains("ip daddr 10.0.1.2 tcp dport 8080 meta mark set mark | 0x90003"));
        assert!(r.contains(
            "ip daddr 10.0.1.2 tcp dport 8080 meta mark set mark | 0x90004 tproxy to :8102 accept"
        ));
        assert!(r.contains("ip6 daddr fd00::2 tcp dport 80 meta mark set mark | 0x90003"));
        assert!(!r.contains("ip daddr fd00::2"));
        assert!(r.contains("type route hook output priority mangle"));
        // With nothing to intercept the tables stay, empty.
        let empty = ruleset(&BTreeSet::new());
        assert!(empty.contains("table ip kube-ovn-tproxy {") && !empty.contains("daddr"));
    }
}
