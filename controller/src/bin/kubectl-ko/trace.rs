//! `kubectl ko trace` and `kubectl ko ovn-trace`, as upstream's plugin: a packet from a pod (or
//! a node's `ovn0` port) to an address, traced through the logical pipeline with `ovn-trace`
//! in the SB leader's ovn-central pod and then (`trace` only) through the source node's
//! OpenFlow tables with `ovs-appctl ofproto/trace br-int` in its ovs-ovn pod.
//!
//! Arguments as upstream's: `{namespace/pod|pod|node//<node>} <ip> [<mac>] {icmp|tcp|udp}
//! [<port>]` or `… arp {request|reply}`. The source's port, MACs and addresses come from its
//! annotations; the destination MAC, when not given, is the port on the source's subnet that
//! holds the address, else the subnet's router port (upstream asks an underlay subnet's
//! physical gateway with arping from the pod; here such a subnet needs the MAC given).

use std::net::IpAddr;
use std::process::ExitCode;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::ResourceExt;
use kube_ovn_common::annotations as ann;
use kube_ovn_common::crd::Subnet;

use crate::remote::{self, Db};

/// The usage lines upstream prints.
const USAGE: &str = "Usage:
  kubectl ko trace {namespace/podname} {target ip address} [target mac address] {icmp|tcp|udp} [target tcp/udp port]
  kubectl ko trace {namespace/podname} {target ip address} [target mac address] arp {request|reply}
  kubectl ko trace {node//nodename} {target ip address} [target mac address] {icmp|tcp|udp} [target tcp/udp port]
  kubectl ko trace {node//nodename} {target ip address} [target mac address] arp {request|reply}";

/// What is traced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// An ICMP echo request.
    Icmp,
    /// A TCP SYN or a UDP datagram to a port.
    L4 {
        /// `tcp` or `udp`.
        proto: &'static str,
        /// The destination port.
        port: u16,
    },
    /// An ARP request (`reply: false`) or reply.
    Arp {
        /// Whether it is a reply.
        reply: bool,
    },
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `(namespace, pod)`, or the node for `node//<name>`.
    pub source: Source,
    /// The destination address.
    pub dst: IpAddr,
    /// The destination MAC, when given.
    pub dst_mac: Option<String>,
    /// The packet.
    pub packet: Packet,
}

/// Where the packet starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A pod (`namespace/pod`, or `pod` in `default`).
    Pod {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A node's `ovn0` port (`node//<name>`).
    Node(String),
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| (1..=2).contains(&p.len()) && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Parses upstream's arguments.
pub fn parse(args: &[String]) -> Result<Request, String> {
    let usage = |msg: &str| format!("{msg}\n{USAGE}");
    let [target, dst, rest @ ..] = args else {
        return Err(usage("missing target IP address"));
    };
    let source = match target.split_once("//") {
        Some((_, node)) => Source::Node(node.to_string()),
        None => match target.split_once('/') {
            Some((ns, pod)) => Source::Pod {
                namespace: ns.to_string(),
                name: pod.to_string(),
            },
            None => Source::Pod {
                namespace: "default".into(),
                name: target.clone(),
            },
        },
    };
    let dst: IpAddr = dst
        .parse()
        .map_err(|e| format!("invalid target IP address {dst:?}: {e}"))?;
    let (dst_mac, rest) = match rest {
        [m, more @ ..] if is_mac(m) => (Some(m.to_lowercase()), more),
        _ => (None, rest),
    };
    let packet = match rest {
        [] => return Err(usage("missing protocol")),
        [t] if t == "icmp" => Packet::Icmp,
        [t, port] if t == "tcp" || t == "udp" => Packet::L4 {
            proto: if t == "tcp" { "tcp" } else { "udp" },
            port: port
                .parse()
                .map_err(|e| format!("invalid target port {port:?}: {e}"))?,
        },
        [t] if t == "tcp" || t == "udp" => return Err(usage("missing target port")),
        [t] if t == "arp" => Packet::Arp { reply: false },
        [t, op] if t == "arp" => match op.as_str() {
            "request" => Packet::Arp { reply: false },
            "reply" => Packet::Arp { reply: true },
            _ => return Err(usage(&format!("invalid ARP type {op}"))),
        },
        [t, ..] => return Err(usage(&format!("invalid type {t}"))),
    };
    if matches!(packet, Packet::Arp { .. }) && dst.is_ipv6() {
        return Err(format!("invalid target IP address: {dst}"));
    }
    Ok(Request {
        source,
        dst,
        dst_mac,
        packet,
    })
}

/// The source as its annotations and node describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Port {
    /// The logical switch port.
    pub lsp: String,
    /// Its logical switch.
    pub switch: String,
    /// Its MAC.
    pub mac: String,
    /// Its addresses (a node's InternalIP first, as upstream).
    pub ips: Vec<IpAddr>,
    /// Its subnet's CIDRs.
    pub cidrs: Vec<ipnet::IpNet>,
    /// Its logical router, when annotated.
    pub router: String,
    /// The node it is on.
    pub node: String,
}

impl Port {
    /// The source address of the destination's family.
    pub fn source_ip(&self, dst: &IpAddr) -> Option<IpAddr> {
        self.ips
            .iter()
            .find(|ip| ip.is_ipv4() == dst.is_ipv4())
            .copied()
    }

    /// Whether the destination is on the source's own subnet.
    pub fn on_link(&self, dst: &IpAddr) -> bool {
        self.cidrs.iter().any(|c| c.contains(dst))
    }
}

fn split_list<T: std::str::FromStr>(v: Option<&String>) -> Vec<T> {
    v.map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Reads the source's port from the API (a node's InternalIP is a source address except for
/// ARP, as upstream).
async fn source_port(client: &kube::Client, source: &Source, arp: bool) -> Result<Port, String> {
    let node_port = |node: Node, node_name: &str, arp: bool| -> Result<Port, String> {
        let a = node.annotations();
        let lsp = a.get(ann::PORT_NAME).cloned().unwrap_or_default();
        let mut ips: Vec<IpAddr> = Vec::new();
        if !arp {
            ips.extend(
                node.status
                    .as_ref()
                    .and_then(|s| s.addresses.as_ref())
                    .into_iter()
                    .flatten()
                    .filter(|a| a.type_ == "InternalIP")
                    .filter_map(|a| a.address.parse::<IpAddr>().ok()),
            );
        }
        ips.extend(split_list::<IpAddr>(a.get(ann::IP_ADDRESS)));
        Ok(Port {
            lsp,
            switch: a.get(ann::LOGICAL_SWITCH).cloned().unwrap_or_default(),
            mac: a.get(ann::MAC_ADDRESS).cloned().unwrap_or_default(),
            ips,
            cidrs: split_list(a.get(ann::CIDR)),
            router: a.get(ann::LOGICAL_ROUTER).cloned().unwrap_or_default(),
            node: node_name.to_string(),
        })
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let get_node = |name: String| {
        let nodes = nodes.clone();
        async move {
            nodes
                .get(&name)
                .await
                .map_err(|e| format!("node/{name}: {e}"))
        }
    };
    match source {
        Source::Node(name) => node_port(get_node(name.clone()).await?, name, arp),
        Source::Pod { namespace, name } => {
            let pod = Api::<Pod>::namespaced(client.clone(), namespace)
                .get(name)
                .await
                .map_err(|e| format!("pod/{name} in {namespace}: {e}"))?;
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .ok_or_else(|| format!("pod/{name} is not scheduled to a node"))?;
            if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
                let n = get_node(node.clone()).await?;
                return node_port(n, &node, arp);
            }
            let a = pod.annotations();
            Ok(Port {
                lsp: format!("{name}.{namespace}"),
                switch: a.get(ann::LOGICAL_SWITCH).cloned().unwrap_or_default(),
                mac: a.get(ann::MAC_ADDRESS).cloned().unwrap_or_default(),
                ips: split_list(a.get(ann::IP_ADDRESS)),
                cidrs: split_list(a.get(ann::CIDR)),
                router: a.get(ann::LOGICAL_ROUTER).cloned().unwrap_or_default(),
                node,
            })
        }
    }
}

/// The `ovn-trace` microflow of the packet.
pub fn ovn_flow(port: &Port, src: &IpAddr, dst: &IpAddr, dst_mac: &str, p: &Packet) -> String {
    let af = if dst.is_ipv4() { "4" } else { "6" };
    let head = format!("inport == \"{}\"", port.lsp);
    match p {
        Packet::Icmp => {
            let icmp = if dst.is_ipv4() { "" } else { "6.type == 128" };
            format!(
                "{head} && ip.ttl == 255 && icmp{icmp} && eth.src == {} && ip{af}.src == {src} && eth.dst == {dst_mac} && ip{af}.dst == {dst}",
                port.mac
            )
        }
        Packet::L4 { proto, port: dport } => {
            let flags = if *proto == "tcp" {
                " && tcp.flags == 2"
            } else {
                ""
            };
            format!(
                "{head} && ip.ttl == 255 && eth.src == {} && ip{af}.src == {src} && eth.dst == {dst_mac} && ip{af}.dst == {dst} && {proto}.src == 30000 && {proto}.dst == {dport}{flags}",
                port.mac
            )
        }
        Packet::Arp { reply } => {
            let (op, tha) = if *reply {
                (2, dst_mac)
            } else {
                (1, "00:00:00:00:00:00")
            };
            format!(
                "{head} && eth.src == {mac} && eth.dst == {dst_mac} && arp.op == {op} && arp.sha == {mac} && arp.tha == {tha} && arp.spa == {src} && arp.tpa == {dst}",
                mac = port.mac
            )
        }
    }
}

/// The `ofproto/trace` flow of the packet entering `br-int` on OpenFlow port `in_port`.
pub fn ovs_flow(
    in_port: &str,
    port: &Port,
    src: &IpAddr,
    dst: &IpAddr,
    dst_mac: &str,
    p: &Packet,
) -> String {
    let (nw, v6) = if dst.is_ipv4() {
        ("nw", "")
    } else {
        ("ipv6", "6")
    };
    let mac = &port.mac;
    match p {
        Packet::Icmp => format!(
            "in_port={in_port},icmp{v6},nw_ttl=64,{nw}_src={src},{nw}_dst={dst},dl_src={mac},dl_dst={dst_mac}"
        ),
        Packet::L4 { proto, port: dport } => format!(
            "in_port={in_port},{proto}{v6},nw_ttl=64,{nw}_src={src},{nw}_dst={dst},dl_src={mac},dl_dst={dst_mac},{proto}_src=1000,{proto}_dst={dport}"
        ),
        Packet::Arp { reply } => {
            let (op, tha) = if *reply {
                (2, dst_mac)
            } else {
                (1, "00:00:00:00:00:00")
            };
            format!(
                "in_port={in_port},arp,arp_op={op},dl_src={mac},dl_dst={dst_mac},arp_spa={src},arp_tpa={dst},arp_sha={mac},arp_tha={tha}"
            )
        }
    }
}

/// The MAC of the port on `addresses` lines (`ovn-nbctl --data=bare --columns=addresses`) that
/// holds `ip`.
pub fn mac_of(addresses: &str, ip: &IpAddr) -> Option<String> {
    addresses.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        let mac = words.next()?;
        words
            .any(|w| w.parse::<IpAddr>().ok().as_ref() == Some(ip))
            .then(|| mac.to_string())
    })
}

/// Runs the trace; `ovs` adds the OpenFlow part (`trace`; `ovn-trace` leaves it out).
pub async fn run(
    client: &kube::Client,
    namespace: &str,
    args: &[String],
    ovs: bool,
) -> Result<ExitCode, String> {
    let req = parse(args)?;
    let arp = matches!(req.packet, Packet::Arp { .. });
    let port = source_port(client, &req.source, arp).await?;
    let what = match &req.source {
        Source::Pod { namespace, name } => format!("pod/{name} in {namespace}"),
        Source::Node(n) => format!("node/{n}"),
    };
    if port.lsp.is_empty() || port.switch.is_empty() || port.mac.is_empty() {
        return Err(format!("{what} address not ready"));
    }
    let af = if req.dst.is_ipv4() { 4 } else { 6 };
    let src = port
        .source_ip(&req.dst)
        .ok_or_else(|| format!("{what} has no IPv{af} address"))?;
    let nb_pod = remote::leader_pod(client, namespace, Db::Nb).await?;
    let nbctl = |args: &[&str]| {
        let mut v = vec!["ovn-nbctl".to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        remote::capture(client, namespace, &nb_pod, Some("ovn-central"), v)
    };
    let needs_mac = !matches!(req.packet, Packet::Arp { reply: false });
    let mut dst_mac = req.dst_mac.clone();
    if needs_mac && dst_mac.is_none() && port.on_link(&req.dst) {
        let (_, addresses) = nbctl(&[
            "--data=bare",
            "--no-heading",
            "--columns=addresses",
            "list",
            "logical_switch_port",
        ])
        .await?;
        dst_mac = mac_of(&addresses, &req.dst);
    }
    if needs_mac && dst_mac.is_none() {
        if matches!(req.packet, Packet::Arp { .. }) {
            return Err("missing destination mac address".into());
        }
        let subnet = Api::<Subnet>::all(client.clone())
            .get_opt(&port.switch)
            .await
            .map_err(|e| format!("subnet {}: {e}", port.switch))?;
        if let Some(s) = &subnet {
            if !s.spec.vlan.is_empty() && !s.spec.logical_gateway && !s.spec.u2o_interconnection {
                return Err(format!(
                    "subnet {} is an underlay subnet whose gateway is a physical router: give its MAC as the target mac address",
                    port.switch
                ));
            }
        }
        println!("Using the logical gateway mac address as destination");
        let router = if port.router.is_empty() {
            subnet.map(|s| s.spec.vpc.clone()).unwrap_or_default()
        } else {
            port.router.clone()
        };
        let lrp = format!("name={router}-{}", port.switch);
        let (_, mac) = nbctl(&[
            "--data=bare",
            "--no-heading",
            "--columns=mac",
            "find",
            "logical_router_port",
            &lrp,
        ])
        .await?;
        dst_mac = Some(mac.trim().to_string()).filter(|m| !m.is_empty());
        if dst_mac.is_none() {
            return Err("failed to get destination mac".into());
        }
    }
    let dst_mac = dst_mac.unwrap_or_else(|| "ff:ff:ff:ff:ff:ff".into());
    let (_, uuid) = nbctl(&[
        "--data=bare",
        "--no-heading",
        "--columns=_uuid",
        "find",
        "logical_switch_port",
        &format!("name={}", port.lsp),
    ])
    .await?;
    if uuid.trim().is_empty() {
        println!("Notice: LSP {} does not exist", port.lsp);
    }

    let sb_pod = remote::leader_pod(client, namespace, Db::Sb).await?;
    let flow = ovn_flow(&port, &src, &req.dst, &dst_mac, &req.packet);
    let mut argv = vec!["ovn-trace".to_string()];
    if !matches!(req.packet, Packet::Arp { .. }) {
        argv.extend(std::iter::repeat_n("--ct=new".to_string(), 4));
    }
    argv.extend([port.switch.clone(), flow]);
    eprintln!("+ {}", shell_words(&argv));
    let code = remote::exec(client, namespace, &sb_pod, Some("ovn-central"), argv).await?;
    if !ovs || code != ExitCode::SUCCESS {
        return Ok(code);
    }

    println!("--------");
    println!("Start OVS Tracing");
    println!();
    println!();
    let ovs_pod = remote::find_pod(client, namespace, "app=ovs", Some(&port.node), "")
        .await
        .map_err(|_| format!("no ovs-ovn Pod running on node {}", port.node))?;
    let (_, in_port) = remote::capture(
        client,
        namespace,
        &ovs_pod,
        None,
        vec![
            "ovs-vsctl".into(),
            "--format=csv".into(),
            "--data=bare".into(),
            "--no-heading".into(),
            "--columns=ofport".into(),
            "find".into(),
            "interface".into(),
            format!("external_id:iface-id={}", port.lsp),
        ],
    )
    .await?;
    let in_port = in_port.trim();
    if in_port.is_empty() {
        return Err(format!(
            "no OVS interface of {} on node {}",
            port.lsp, port.node
        ));
    }
    let argv = vec![
        "ovs-appctl".to_string(),
        "ofproto/trace".into(),
        "br-int".into(),
        ovs_flow(in_port, &port, &src, &req.dst, &dst_mac, &req.packet),
    ];
    eprintln!("+ {}", shell_words(&argv));
    remote::exec(client, namespace, &ovs_pod, None, argv).await
}

/// `argv` as a shell would show it (what upstream's `set -x` prints).
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=./:,".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn arguments_as_upstream() {
        let r = parse(&args("web/a 10.16.0.5 tcp 80")).unwrap();
        assert_eq!(
            r.source,
            Source::Pod {
                namespace: "web".into(),
                name: "a".into()
            }
        );
        assert_eq!(
            r.packet,
            Packet::L4 {
                proto: "tcp",
                port: 80
            }
        );
        let r = parse(&args("a 10.16.0.5 0A:00:00:00:00:01 icmp")).unwrap();
        assert_eq!(
            r.source,
            Source::Pod {
                namespace: "default".into(),
                name: "a".into()
            }
        );
        assert_eq!(r.dst_mac.as_deref(), Some("0a:00:00:00:00:01"));
        assert_eq!(r.packet, Packet::Icmp);
        let r = parse(&args("node//n1 10.16.0.5 arp reply")).unwrap();
        assert_eq!(r.source, Source::Node("n1".into()));
        assert_eq!(r.packet, Packet::Arp { reply: true });
        assert_eq!(
            parse(&args("a 10.16.0.5 arp")).unwrap().packet,
            Packet::Arp { reply: false }
        );
        for bad in [
            "a",
            "a 10.16.0.5",
            "a not-an-ip icmp",
            "a 10.16.0.5 tcp",
            "a 10.16.0.5 tcp http",
            "a 10.16.0.5 sctp 80",
            "a 10.16.0.5 arp maybe",
            "a fd00::5 arp",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
    }

    fn port() -> Port {
        Port {
            lsp: "a.web".into(),
            switch: "ovn-default".into(),
            mac: "0a:00:00:10:00:05".into(),
            ips: vec![
                "10.16.0.5".parse().unwrap(),
                "fd00:10:16::5".parse().unwrap(),
            ],
            cidrs: vec![
                "10.16.0.0/16".parse().unwrap(),
                "fd00:10:16::/112".parse().unwrap(),
            ],
            router: "ovn-cluster".into(),
            node: "n1".into(),
        }
    }

    #[test]
    fn flows_as_upstream_writes_them() {
        let p = port();
        let dst: IpAddr = "10.16.0.9".parse().unwrap();
        let src = p.source_ip(&dst).unwrap();
        assert!(p.on_link(&dst));
        let tcp = Packet::L4 {
            proto: "tcp",
            port: 80,
        };
        assert_eq!(
            ovn_flow(&p, &src, &dst, "0a:00:00:10:00:09", &tcp),
            "inport == \"a.web\" && ip.ttl == 255 && eth.src == 0a:00:00:10:00:05 && ip4.src == 10.16.0.5 && eth.dst == 0a:00:00:10:00:09 && ip4.dst == 10.16.0.9 && tcp.src == 30000 && tcp.dst == 80 && tcp.flags == 2"
        );
        assert_eq!(
            ovs_flow("7", &p, &src, &dst, "0a:00:00:10:00:09", &tcp),
            "in_port=7,tcp,nw_ttl=64,nw_src=10.16.0.5,nw_dst=10.16.0.9,dl_src=0a:00:00:10:00:05,dl_dst=0a:00:00:10:00:09,tcp_src=1000,tcp_dst=80"
        );
        let dst6: IpAddr = "fd00:10:16::9".parse().unwrap();
        let src6 = p.source_ip(&dst6).unwrap();
        assert_eq!(
            ovn_flow(&p, &src6, &dst6, "m", &Packet::Icmp),
            "inport == \"a.web\" && ip.ttl == 255 && icmp6.type == 128 && eth.src == 0a:00:00:10:00:05 && ip6.src == fd00:10:16::5 && eth.dst == m && ip6.dst == fd00:10:16::9"
        );
        assert_eq!(
            ovs_flow("7", &p, &src6, &dst6, "m", &Packet::Icmp),
            "in_port=7,icmp6,nw_ttl=64,ipv6_src=fd00:10:16::5,ipv6_dst=fd00:10:16::9,dl_src=0a:00:00:10:00:05,dl_dst=m"
        );
        assert!(ovn_flow(
            &p,
            &src,
            &dst,
            "ff:ff:ff:ff:ff:ff",
            &Packet::Arp { reply: false }
        )
        .contains("arp.op == 1 && arp.sha == 0a:00:00:10:00:05 && arp.tha == 00:00:00:00:00:00"));
        assert!(!p.on_link(&"10.17.0.1".parse().unwrap()));
    }

    #[test]
    fn destination_mac_from_the_ports_addresses() {
        let addresses =
            "router\n0a:00:00:10:00:09 10.16.0.9 fd00:10:16::9\n\n0a:00:00:10:00:0a 10.16.0.10\n";
        let ip: IpAddr = "10.16.0.9".parse().unwrap();
        assert_eq!(mac_of(addresses, &ip).as_deref(), Some("0a:00:00:10:00:09"));
        let ip: IpAddr = "10.16.0.1".parse().unwrap();
        assert_eq!(mac_of(addresses, &ip), None);
        // 10.16.0.1 is not 10.16.0.10's prefix: whole addresses only.
        let ip: IpAddr = "10.16.0.10".parse().unwrap();
        assert_eq!(mac_of(addresses, &ip).as_deref(), Some("0a:00:00:10:00:0a"));
    }

    #[test]
    fn commands_are_shown_quoted() {
        let argv = vec![
            "ovn-trace".to_string(),
            "ovn-default".into(),
            "inport == \"a.web\"".into(),
        ];
        assert_eq!(
            shell_words(&argv),
            "ovn-trace ovn-default 'inport == \"a.web\"'"
        );
    }
}
