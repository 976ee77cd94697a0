//! Underlay end to end (issue 18): a ProviderNetwork on every node's `eth1` (the sandbox's
//! provider network, a plain Linux bridge shared with the external host), a Vlan with tag 100
//! and an underlay Subnet whose gateway is the external host's `vlan100` (an access port of
//! VLAN 100 behind its `eth0`, see `ExternalHost::add_vlan`).
//!
//! - Each daemon builds `br-net1`: `eth1` becomes its port (trunks 0 and 100) and its address,
//!   routes (the node's default route among them) and MAC move to the bridge; the bridge is
//!   mapped in `ovn-bridge-mappings`; the Node gets upstream's `ready`/`interface`/`mtu` labels
//!   and the ProviderNetwork's status lists both nodes ready.
//! - A ProviderNetwork naming an interface no node has leaves every node's network alone and
//!   its nodes not ready.
//! - A restarted daemon finds the bridge built and leaves it so.
//! - Underlay pods get the provider NIC's MTU, their ADD checks the physical gateway by ARP
//!   (the external host learns their MAC before any test traffic), and pods on the two nodes
//!   reach each other and the gateway through the physical segment: an AF_PACKET capture on
//!   node1's segment port sees their ICMP tagged with VLAN 100.
//! - A pod whose gateway does not answer is held in its ADD until the gateway appears, unless
//!   its subnet has `disableGatewayCheck`.
//! - Deleting the ProviderNetwork gives `eth1` back exactly its addresses, routes, MAC and MTU,
//!   and removes the bridge, the mappings and the labels.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use kube_ovn_common::crd::{
    OvnDnatRule, OvnEip, OvnFip, OvnSnatRule, ProviderNetwork, Subnet, Vlan, Vpc,
};
use kube_ovn_sandbox::kubeovn::{self, KubeOvnBuild};
use kube_ovn_sandbox::node::fabric_netns;
use kube_ovn_sandbox::{probe, sys, workload, NodeInfo, Sandbox, SandboxConfig, SandboxState};
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(90);
const GATEWAY: &str = "172.19.100.1";
/// The port of the peer-address servers in the u2o test's pods.
const ECHO_PORT: u16 = 9000;

/// What of a node's `eth1` the ProviderNetwork must give back: global and link-local
/// addresses, IPv4 and IPv6 routes through it, the default route, MAC and MTU.
fn nic_state(node: &NodeInfo) -> String {
    let ns = &node.netns;
    let ip = |args: &[&str]| {
        sys::run_command(sys::in_netns(ns, "ip").args(args)).unwrap_or_else(|e| e.to_string())
    };
    let link = ip(&["-o", "link", "show", "dev", "eth1"]);
    let words: Vec<&str> = link.split_whitespace().collect();
    let after = |w: &str| {
        words
            .iter()
            .position(|x| *x == w)
            .and_then(|i| words.get(i + 1))
            .copied()
            .unwrap_or("?")
            .to_string()
    };
    format!(
        "mtu {} mac {}\naddr:\n{}\nroutes v4:\n{}\nroutes v6:\n{}\ndefault:\n{}",
        after("mtu"),
        after("link/ether"),
        // Duplicate address detection may still be running on the link-local address when
        // the first snapshot is taken: its progress is no configuration.
        ip(&["-o", "addr", "show", "dev", "eth1"]).replace(" tentative", ""),
        ip(&["-4", "route", "show", "dev", "eth1"]),
        ip(&["-6", "route", "show", "dev", "eth1"]),
        ip(&["route", "show", "default"]),
    )
}

fn vsctl_get(node: &NodeInfo, args: &[&str]) -> String {
    node.vsctl(args.iter().copied())
        .map(|s| s.trim().trim_matches('"').to_string())
        .unwrap_or_else(|e| format!("error: {e}"))
}

async fn create<K>(client: &kube::Client, obj: serde_json::Value)
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
    <K as kube::Resource>::DynamicType: Default,
{
    let o: K = serde_json::from_value(obj).unwrap();
    Api::<K>::all(client.clone())
        .create(&PostParams::default(), &o)
        .await
        .unwrap();
}

/// An ICMP frame between `src` and `dst` (either way) seen on a segment port, with its VLAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    vlan: Option<u16>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
}

/// The VLAN and IPv4 ICMP addresses of a captured frame: the tag either in the frame or, as
/// the kernel delivers it to packet sockets after taking it out, in the auxiliary data.
fn parse_frame(frame: &[u8], aux_vlan: Option<u16>) -> Option<Seen> {
    let (vlan, ethertype, ip) = if frame.len() >= 18 && frame[12..14] == [0x81, 0x00] {
        let tci = u16::from_be_bytes([frame[14], frame[15]]);
        (Some(tci & 0x0fff), &frame[16..18], &frame[18..])
    } else if frame.len() >= 14 {
        (aux_vlan, &frame[12..14], &frame[14..])
    } else {
        return None;
    };
    if ethertype != [0x08, 0x00] || ip.len() < 20 || ip[9] != 1 {
        return None;
    }
    Some(Seen {
        vlan,
        src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
    })
}

/// Captures on `dev` in namespace `netns` (an AF_PACKET socket with auxiliary data, on its own
/// thread) until a frame satisfies `want` or `within` passes; the receiver gets `()` once the
/// socket is bound, so the traffic is started after it. Returns the matching frame, or every
/// ICMP frame seen.
fn capture(
    netns: &str,
    dev: &str,
    within: Duration,
    want: impl Fn(&Seen) -> bool + Send + 'static,
) -> (
    mpsc::Receiver<()>,
    std::thread::JoinHandle<Result<Seen, Vec<Seen>>>,
) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let path = sys::netns_path(netns);
    let dev = dev.to_string();
    let handle = std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("fabric netns");
        // SAFETY: setns on this capture thread only.
        assert_eq!(
            unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "setns"
        );
        let name = std::ffi::CString::new(dev).unwrap();
        // SAFETY: a valid NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(ifindex, 0, "segment port not found");
        let all = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2), closed below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(all)) };
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: zeroed sockaddr_ll is valid; the fields used are set.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = all;
        sll.sll_ifindex = ifindex as i32;
        let one: libc::c_int = 1;
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: valid pointers and sizes for each call.
        unsafe {
            assert_eq!(
                libc::bind(
                    fd,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32
                ),
                0
            );
            assert_eq!(
                libc::setsockopt(
                    fd,
                    libc::SOL_PACKET,
                    libc::PACKET_AUXDATA,
                    (&one as *const libc::c_int).cast(),
                    4
                ),
                0
            );
            assert_eq!(
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as u32
                ),
                0
            );
        }
        let _ = ready_tx.send(());
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let mut control = [0u64; 32];
        let result = loop {
            if Instant::now() >= deadline {
                break Err(seen);
            }
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: zeroed msghdr is valid; iov and control outlive the call.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control);
            // SAFETY: a valid msghdr.
            let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
            if n <= 0 {
                continue;
            }
            let mut aux_vlan = None;
            // SAFETY: walking the control messages the kernel wrote into `control`.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA
                    {
                        let aux: libc::tpacket_auxdata =
                            std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                        if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                            aux_vlan = Some(aux.tp_vlan_tci & 0x0fff);
                        }
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
            }
            if let Some(s) = parse_frame(&buf[..n as usize], aux_vlan) {
                if want(&s) {
                    break Ok(s);
                }
                if seen.len() < 20 {
                    seen.push(s);
                }
            }
        };
        // SAFETY: closing the socket opened above.
        unsafe { libc::close(fd) };
        result
    });
    (ready_rx, handle)
}

/// Pings `to` from `netns` while capturing on node1's segment port; the capture must see an
/// ICMP frame from `from` to `to` tagged with VLAN 100.
fn ping_seen_tagged(state: &SandboxState, netns: &str, from: Ipv4Addr, to: Ipv4Addr) {
    let (ready, cap) = capture(
        &fabric_netns(&state.prefix),
        "p0",
        Duration::from_secs(40),
        move |s| s.src == from && s.dst == to,
    );
    ready
        .recv_timeout(Duration::from_secs(10))
        .expect("capture started");
    probe::reach(state, netns, &to.to_string())
        .unwrap_or_else(|e| panic!("{from} → {to} over the underlay: {e}"));
    let seen = cap
        .join()
        .expect("capture thread")
        .unwrap_or_else(|seen| panic!("no ICMP {from} → {to} on the segment; saw {seen:?}"));
    assert_eq!(
        seen.vlan,
        Some(100),
        "{from} → {to} crosses the segment tagged: {seen:?}"
    );
}

/// What every test here builds: the external host's gateway on VLAN 100, ProviderNetwork
/// `net1` on `eth1` (with `pn_spec` merged into its spec), Vlan `vlan100`, namespace `ul` and
/// the Subnet `underlay` (172.19.100.0/24) of that namespace on the Vlan; returns once `net1`
/// is ready on every node and the subnet reconciled.
async fn vlan100_underlay(state: &SandboxState, client: &kube::Client, pn_spec: serde_json::Value) {
    state
        .external
        .as_ref()
        .expect("external host")
        .add_vlan(&state.run_dir, 100, &format!("{GATEWAY}/24"))
        .expect("gateway on the external host's VLAN 100");
    let mut spec = json!({"defaultInterface": "eth1"});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), pn_spec.as_object()) {
        s.extend(extra.clone());
    }
    create::<ProviderNetwork>(
        client,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "ProviderNetwork",
               "metadata": {"name": "net1"}, "spec": spec}),
    )
    .await;
    create::<Vlan>(
        client,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Vlan",
               "metadata": {"name": "vlan100"}, "spec": {"id": 100, "provider": "net1"}}),
    )
    .await;
    namespace(client, "ul").await;
    create::<Subnet>(
        client,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "underlay"},
               "spec": {"cidrBlock": "172.19.100.0/24", "gateway": GATEWAY,
                        "excludeIps": [GATEWAY], "vlan": "vlan100", "namespaces": ["ul"],
                        "protocol": "IPv4"}}),
    )
    .await;
    let pns: Api<ProviderNetwork> = Api::all(client.clone());
    let subnets: Api<Subnet> = Api::all(client.clone());
    let names: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();
    probe::until(
        WITHIN,
        "net1 ready on every node, underlay reconciled",
        || async {
            let pn = pns.get("net1").await.map_err(|e| e.to_string())?.status;
            let sn = subnets
                .get("underlay")
                .await
                .map_err(|e| e.to_string())?
                .status
                .unwrap_or_default();
            let ready = pn
                .as_ref()
                .is_some_and(|s| s.ready && names.iter().all(|n| s.ready_nodes.contains(n)));
            if ready && !sn.v4_available_ip_range.is_empty() {
                Ok(())
            } else {
                Err(format!("net1 {pn:?}, underlay {sn:?}"))
            }
        },
    )
    .await
    .unwrap();
}

async fn create_pod(pods: &Api<Pod>, name: &str, node: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
}

async fn pod(pods: &Api<Pod>, name: &str, node: &str) -> Ipv4Addr {
    create_pod(pods, name, node).await;
    probe::running_pod_ip(pods, name, WITHIN)
        .await
        .unwrap()
        .parse()
        .unwrap()
}

async fn namespace(client: &kube::Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap();
}

async fn delete_all_pods(pods: &Api<Pod>) {
    for p in pods.list(&Default::default()).await.unwrap().items {
        pods.delete(&p.name_any(), &DeleteParams::default())
            .await
            .unwrap();
    }
    probe::until(WITHIN, "pods gone", || async {
        let left = pods
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        if left == 0 {
            Ok(())
        } else {
            Err(format!("{left} pods left"))
        }
    })
    .await
    .unwrap();
}

/// The two-node sandbox with kube-ovn every test here starts from.
async fn two_nodes() -> (Sandbox, SandboxState, kube::Client) {
    let build = KubeOvnBuild::of_test_binary().expect("kube-ovn build");
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(build);
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let client = sandbox.client();
    (sandbox, state, client)
}

fn label(node: &Node, key: &str) -> Option<String> {
    node.labels().get(key).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_bridge_vlan_pods_and_restore() {
    let build = KubeOvnBuild::of_test_binary().expect("kube-ovn build");
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(build.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let client = sandbox.client();
    let external = state.external.clone().expect("external host");
    let before: Vec<String> = state.nodes.iter().map(nic_state).collect();
    let eth1_mtu = before[0].split_whitespace().nth(1).unwrap().to_string();

    vlan100_underlay(&state, &client, json!({})).await;
    create::<ProviderNetwork>(
        &client,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "ProviderNetwork",
               "metadata": {"name": "net2"}, "spec": {"defaultInterface": "eth9"}}),
    )
    .await;
    for ns in ["ul-late", "ul-nocheck"] {
        namespace(&client, ns).await;
    }

    // The bridges: every node ready, upstream's labels, eth1 inside br-net1 with its address
    // and the default route moved over; the missing interface of net2 breaks nothing.
    let pns: Api<ProviderNetwork> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let names: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();
    probe::until(WITHIN, "net1 ready on every node, net2 on none", || async {
        let st1 = pns.get("net1").await.map_err(|e| e.to_string())?.status;
        let st2 = pns.get("net2").await.map_err(|e| e.to_string())?.status;
        let ok1 = st1
            .as_ref()
            .is_some_and(|s| s.ready && names.iter().all(|n| s.ready_nodes.contains(n)));
        let ok2 = st2
            .as_ref()
            .is_some_and(|s| !s.ready && names.iter().all(|n| s.not_ready_nodes.contains(n)));
        if ok1 && ok2 {
            Ok(())
        } else {
            Err(format!("net1 {st1:?}\nnet2 {st2:?}"))
        }
    })
    .await
    .unwrap();
    for (i, n) in state.nodes.iter().enumerate() {
        let node = nodes.get(&n.name).await.unwrap();
        let l = |what: &str| {
            label(
                &node,
                &format!("net1.provider-network.kubernetes.io/{what}"),
            )
        };
        assert_eq!(l("ready").as_deref(), Some("true"), "{}", n.name);
        assert_eq!(l("interface").as_deref(), Some("eth1"), "{}", n.name);
        assert_eq!(l("mtu").as_deref(), Some(eth1_mtu.as_str()), "{}", n.name);
        assert_eq!(l("exclude"), None);
        assert_eq!(
            label(&node, "net2.provider-network.kubernetes.io/ready"),
            None,
            "{}: net2 has no interface here",
            n.name
        );
        let mappings = vsctl_get(
            n,
            &[
                "get",
                "Open_vSwitch",
                ".",
                "external_ids:ovn-bridge-mappings",
            ],
        );
        assert_eq!(mappings, "net1:br-net1", "{}", n.name);
        assert!(
            vsctl_get(
                n,
                &[
                    "get",
                    "Open_vSwitch",
                    ".",
                    "external_ids:ovn-chassis-mac-mappings"
                ]
            )
            .starts_with("net1:"),
            "{}",
            n.name
        );
        assert!(
            n.vsctl(["br-exists", "br-net2"]).is_err(),
            "{}: no bridge for a missing NIC",
            n.name
        );
        assert_eq!(
            vsctl_get(n, &["get", "Bridge", "br-net1", "external_ids:vendor"]),
            "kube-ovn"
        );
        assert_eq!(vsctl_get(n, &["port-to-br", "eth1"]), "br-net1");
        let br = sys::run(
            "ip",
            ["-n", &n.netns, "-o", "-4", "addr", "show", "dev", "br-net1"],
        )
        .unwrap();
        assert!(
            br.contains(&format!("{}/24", n.provider_ip)),
            "{}: eth1's address on br-net1: {br}",
            n.name
        );
        let eth1 = sys::run(
            "ip",
            ["-n", &n.netns, "-o", "-4", "addr", "show", "dev", "eth1"],
        )
        .unwrap();
        assert!(
            eth1.trim().is_empty(),
            "{}: eth1 keeps no IPv4 address: {eth1}",
            n.name
        );
        // Seen once in about ten runs (before the daemon waited for vswitchd to set the
        // bridge's MAC, a down/up that drops gateway routes, and re-added lost ones before
        // labelling): the default route on br-net1 a moment after the ready label. Not
        // reproduced since (36 nodes, idle and loaded), but not proven gone: a bounded wait.
        probe::until(
            WITHIN,
            &format!("{}: the default route on br-net1", n.name),
            || async {
                let default = sys::run("ip", ["-n", &n.netns, "route", "show", "default"])
                    .map_err(|e| e.to_string())?;
                if default.contains("dev br-net1") {
                    Ok(())
                } else {
                    Err(format!("default route: {default:?}"))
                }
            },
        )
        .await
        .unwrap();
        let mac = |dev: &str| {
            sys::run("ip", ["-n", &n.netns, "-o", "link", "show", "dev", dev])
                .unwrap()
                .split_whitespace()
                .skip_while(|w| *w != "link/ether")
                .nth(1)
                .map(str::to_string)
        };
        assert_eq!(
            mac("br-net1"),
            mac("eth1"),
            "{}: the bridge took eth1's MAC",
            n.name
        );
        // The node still reaches the outside through its moved default route.
        assert!(
            probe::ping(&n.netns, &external.ip.to_string(), Duration::from_secs(30)),
            "{}: node → external host through br-net1 ({i})",
            n.name
        );
        let log = std::fs::read_to_string(n.dir.join("daemon.log")).unwrap_or_default();
        assert!(
            log.contains("nic eth9 does not exist"),
            "{}: the daemon says why net2 is not ready",
            n.name
        );
    }
    probe::until(WITHIN, "trunks 0 and 100 on eth1", || async {
        let t: Vec<String> = state
            .nodes
            .iter()
            .map(|n| vsctl_get(n, &["get", "Port", "eth1", "trunks"]))
            .collect();
        if t.iter().all(|t| t == "[0, 100]") {
            Ok(())
        } else {
            Err(format!("{t:?}"))
        }
    })
    .await
    .unwrap();

    // A restarted daemon finds its bridge built: it moves nothing and serves the pods below.
    let node1 = &state.nodes[0];
    let bridged = |n: &NodeInfo| {
        (
            sys::run(
                "ip",
                ["-n", &n.netns, "-o", "-4", "addr", "show", "dev", "br-net1"],
            )
            .unwrap_or_default()
            .contains(&format!("{}/24", n.provider_ip)),
            sys::run("ip", ["-n", &n.netns, "route", "show", "default"])
                .unwrap_or_default()
                .contains("dev br-net1"),
            vsctl_get(n, &["port-to-br", "eth1"]),
        )
    };
    let bridged_before = bridged(node1);
    sys::kill_pidfile(&node1.dir.join("daemon.pid")).expect("daemon killed");
    let mut restarted = kubeovn::start_node_agent(&build, node1).expect("daemon restarted");

    // Underlay pods: the provider NIC's MTU, the gateway checked on the wire, traffic between
    // the nodes and to the gateway tagged 100 on the segment.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ul");
    let p1 = pod(&pods, "p1", &names[0]).await;
    let p2 = pod(&pods, "p2", &names[1]).await;
    let ns1 = state.pod_netns("ul", "p1");
    let ns2 = state.pod_netns("ul", "p2");
    for (ns, ip) in [(&ns1, p1), (&ns2, p2)] {
        assert!(ip.octets()[..3] == [172, 19, 100], "{ip}");
        let link = sys::run("ip", ["-n", ns, "-o", "link", "show", "dev", "eth0"]).unwrap();
        assert!(
            link.contains(&format!("mtu {eth1_mtu} ")),
            "the pod has the provider NIC's MTU: {link}"
        );
    }
    let neigh = sys::run_command(
        state
            .external_command("ip")
            .args(["neigh", "show", "dev", "vlan100"]),
    )
    .unwrap();
    for ip in [p1, p2] {
        assert!(
            neigh.contains(&ip.to_string()),
            "the gateway heard {ip}'s ARP check before any test traffic: {neigh}"
        );
    }
    assert_eq!(
        bridged(node1),
        bridged_before,
        "the restarted daemon left the bridge as it was"
    );
    ping_seen_tagged(&state, &ns1, p1, p2);
    ping_seen_tagged(&state, &ns1, p1, GATEWAY.parse().unwrap());
    probe::reach(&state, &ns2, GATEWAY).expect("p2 → gateway");
    probe::reach(&state, &external.netns, &p2.to_string()).expect("gateway → p2");

    // The gateway check on VLAN 101, whose gateway does not exist yet: a subnet with
    // disableGatewayCheck starts its pod anyway; one without holds its pod's ADD until the
    // gateway answers.
    create::<Vlan>(
        &client,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Vlan",
               "metadata": {"name": "vlan101"}, "spec": {"id": 101, "provider": "net1"}}),
    )
    .await;
    for (name, third, ns, disable) in [
        ("underlay-late", 101, "ul-late", false),
        ("underlay-nocheck", 102, "ul-nocheck", true),
    ] {
        let gw = format!("172.19.{third}.1");
        create::<Subnet>(
            &client,
            json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": name},
                   "spec": {"cidrBlock": format!("172.19.{third}.0/24"), "gateway": gw,
                            "excludeIps": [gw], "vlan": "vlan101", "namespaces": [ns],
                            "protocol": "IPv4", "disableGatewayCheck": disable}}),
        )
        .await;
    }
    // A pod takes its namespace's subnet once the controller knows the subnet (its status
    // shows the addresses it counted); one created before would go to the default subnet.
    for subnet in ["underlay-late", "underlay-nocheck"] {
        let subnets: Api<Subnet> = Api::all(client.clone());
        probe::until(WITHIN, &format!("{subnet} reconciled"), || async {
            let st = subnets
                .get(subnet)
                .await
                .map_err(|e| e.to_string())?
                .status
                .unwrap_or_default();
            if st.v4_available_ip_range.is_empty() {
                Err(format!("status {st:?}"))
            } else {
                Ok(())
            }
        })
        .await
        .unwrap();
    }
    let late: Api<Pod> = Api::namespaced(client.clone(), "ul-late");
    let nocheck: Api<Pod> = Api::namespaced(client.clone(), "ul-nocheck");
    create_pod(&late, "l1", &names[0]).await;
    pod(&nocheck, "n1", &names[0]).await;
    let l1 = late.get("l1").await.unwrap();
    assert_ne!(
        l1.status.and_then(|s| s.phase).as_deref(),
        Some("Running"),
        "a pod whose gateway does not answer is not started; its annotations: {:?}",
        l1.metadata.annotations
    );
    external
        .add_vlan(&state.run_dir, 101, "172.19.101.1/24")
        .expect("the late gateway");
    probe::running_pod_ip(&late, "l1", WITHIN)
        .await
        .expect("the pod starts once its gateway answers");
    probe::reach(&state, &state.pod_netns("ul-late", "l1"), "172.19.101.1")
        .expect("l1 → its gateway");

    // Removal: eth1 exactly as before, no bridge, no mappings, no labels.
    for p in [&pods, &late, &nocheck] {
        delete_all_pods(p).await;
    }
    for subnet in ["underlay-late", "underlay-nocheck"] {
        Api::<Subnet>::all(client.clone())
            .delete(subnet, &DeleteParams::default())
            .await
            .unwrap();
    }
    Api::<Vlan>::all(client.clone())
        .delete("vlan101", &DeleteParams::default())
        .await
        .unwrap();
    Api::<Subnet>::all(client.clone())
        .delete("underlay", &DeleteParams::default())
        .await
        .unwrap();
    Api::<Vlan>::all(client.clone())
        .delete("vlan100", &DeleteParams::default())
        .await
        .unwrap();
    for pn in ["net1", "net2"] {
        pns.delete(pn, &DeleteParams::default()).await.unwrap();
    }
    probe::until(WITHIN, "eth1 restored on every node", || async {
        let now: Vec<String> = state.nodes.iter().map(nic_state).collect();
        if now == before {
            Ok(())
        } else {
            Err(format!("before:\n{before:#?}\nnow:\n{now:#?}"))
        }
    })
    .await
    .unwrap();
    probe::until(WITHIN, "bridges, mappings and labels gone", || async {
        for n in &state.nodes {
            if n.vsctl(["br-exists", "br-net1"]).is_ok() {
                return Err(format!("{}: br-net1 still there", n.name));
            }
            let m = vsctl_get(n, &["get", "Open_vSwitch", ".", "external_ids"]);
            if m.contains("net1") {
                return Err(format!("{}: {m}", n.name));
            }
            let node = nodes.get(&n.name).await.map_err(|e| e.to_string())?;
            if node.labels().keys().any(|k| k.contains("provider-network")) {
                return Err(format!("{}: {:?}", n.name, node.labels()));
            }
        }
        Ok(())
    })
    .await
    .unwrap();
    for n in &state.nodes {
        assert!(
            probe::ping(&n.netns, &external.ip.to_string(), Duration::from_secs(30)),
            "{}: node → external host through eth1 again",
            n.name
        );
    }
    sandbox.down().await.expect("sandbox down");
    // The teardown ended it through its pidfile; reaped here.
    let _ = restarted.wait();
}

/// What `netns` is answered asking the peer-address server at `to`, awaited until it is
/// `want` (`None`: no answer at all) within [`WITHIN`].
async fn until_answer(state: &SandboxState, netns: &str, to: SocketAddr, want: Option<&str>) {
    let start = Instant::now();
    loop {
        let got = workload::ask_tcp(netns, to).await;
        if got.as_ref().ok().map(String::as_str) == want {
            println!("{netns} → {to}: {got:?} after {:?}", start.elapsed());
            return;
        }
        assert!(
            start.elapsed() < WITHIN,
            "{netns} asking {to}: got {got:?}, wanted {want:?}\n{}",
            probe::report(state)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An underlay pod with its peer-address server, on `node`; returns its address.
async fn underlay_pod(state: &SandboxState, pods: &Api<Pod>, name: &str, node: &str) -> Ipv4Addr {
    let ip = pod(pods, name, node).await;
    workload::serve_peer_address(&state.pod_netns("ul", name), ECHO_PORT).expect("echo server");
    ip
}

async fn set_u2o(client: &kube::Client, on: bool) {
    Api::<Subnet>::all(client.clone())
        .patch(
            "underlay",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"u2oInterconnection": on}})),
        )
        .await
        .unwrap();
}

/// u2o with real packets: an overlay pod (node 2) and underlay pods (node 1, VLAN 100). Off,
/// the overlay pod reaches the underlay pod through its node, which masquerades it (the
/// underlay pod sees node 2's address), and the underlay pod cannot reach the overlay one
/// (its physical gateway has no route to the overlay). On, a recreated underlay pod's default
/// route is the interconnection address on `ovn-cluster`, and both directions work with
/// source addresses preserved; it still reaches its physical gateway. Off again, a new pod is
/// back to the NAT behaviour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u2o_interconnection_with_real_packets() {
    let (sandbox, state, client) = two_nodes().await;
    // The physical gateway routes between the nodes' network and VLAN 100.
    sys::run_command(
        state
            .external_command("sysctl")
            .args(["-qw", "net.ipv4.ip_forward=1"]),
    )
    .expect("forwarding on the external host");
    vlan100_underlay(&state, &client, json!({})).await;
    namespace(&client, "ov").await;
    let subnets: Api<Subnet> = Api::all(client.clone());
    let names: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();

    let overlay: Api<Pod> = Api::namespaced(client.clone(), "ov");
    let underlay: Api<Pod> = Api::namespaced(client.clone(), "ul");
    let o1 = pod(&overlay, "o1", &names[1]).await;
    let o1_ns = state.pod_netns("ov", "o1");
    workload::serve_peer_address(&o1_ns, ECHO_PORT).expect("echo server");
    let to_o1 = SocketAddr::new(IpAddr::V4(o1), ECHO_PORT);
    let node2 = state.nodes[1].provider_ip.to_string();

    // Off: masqueraded by node 2 one way, no way back.
    let u1 = underlay_pod(&state, &underlay, "u1", &names[0]).await;
    let to_u1 = SocketAddr::new(IpAddr::V4(u1), ECHO_PORT);
    until_answer(&state, &o1_ns, to_u1, Some(&node2)).await;
    until_answer(&state, &state.pod_netns("ul", "u1"), to_o1, None).await;

    // On: the interconnection address, then a recreated pod routed through it.
    set_u2o(&client, true).await;
    let u2o_ip = probe::until(WITHIN, "the u2o address", || async {
        let st = subnets
            .get("underlay")
            .await
            .map_err(|e| e.to_string())?
            .status
            .unwrap_or_default();
        if st.u2o_interconnection_ip.is_empty() {
            Err(format!("{st:?}"))
        } else {
            Ok(st.u2o_interconnection_ip)
        }
    })
    .await
    .unwrap();
    let u2 = underlay_pod(&state, &underlay, "u2", &names[0]).await;
    let u2_ns = state.pod_netns("ul", "u2");
    let route = sys::run("ip", ["-n", &u2_ns, "route", "show", "default"]).unwrap();
    assert!(
        route.contains(&format!("via {u2o_ip} ")),
        "the pod's default route is the u2o address {u2o_ip}: {route}"
    );
    let to_u2 = SocketAddr::new(IpAddr::V4(u2), ECHO_PORT);
    until_answer(&state, &o1_ns, to_u2, Some(&o1.to_string())).await;
    until_answer(&state, &u2_ns, to_o1, Some(&u2.to_string())).await;
    probe::reach(&state, &u2_ns, GATEWAY).expect("u2 → its physical gateway");

    // Off again: a new pod is back to the NAT behaviour.
    set_u2o(&client, false).await;
    probe::until(WITHIN, "the u2o address released", || async {
        let st = subnets
            .get("underlay")
            .await
            .map_err(|e| e.to_string())?
            .status
            .unwrap_or_default();
        if st.u2o_interconnection_ip.is_empty() {
            Ok(())
        } else {
            Err(format!("{st:?}"))
        }
    })
    .await
    .unwrap();
    let u3 = underlay_pod(&state, &underlay, "u3", &names[0]).await;
    let to_u3 = SocketAddr::new(IpAddr::V4(u3), ECHO_PORT);
    until_answer(&state, &o1_ns, to_u3, Some(&node2)).await;
    until_answer(&state, &state.pod_netns("ul", "u3"), to_o1, None).await;
    sandbox.down().await.expect("sandbox down");
}

/// `exchangeLinkName`: the OVS bridge is named `eth1` (so what names the node's NIC keeps
/// working) and holds its addresses and routes, the NIC is `br-net1` inside it; an underlay pod
/// reaches its gateway through it; deleting the ProviderNetwork gives `eth1` back exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_link_name_swaps_names_and_gives_them_back() {
    let build = KubeOvnBuild::of_test_binary().expect("kube-ovn build");
    let mut config = SandboxConfig::isolated(1);
    config.kube_ovn = Some(build);
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let client = sandbox.client();
    let external = state.external.clone().expect("external host");
    let n = &state.nodes[0];
    let before = nic_state(n);
    vlan100_underlay(&state, &client, json!({"exchangeLinkName": true})).await;
    let pns: Api<ProviderNetwork> = Api::all(client.clone());
    assert!(n.vsctl(["br-exists", "eth1"]).is_ok(), "the bridge is eth1");
    assert!(
        n.vsctl(["br-exists", "br-net1"]).is_err(),
        "no bridge br-net1"
    );
    assert_eq!(vsctl_get(n, &["port-to-br", "br-net1"]), "eth1");
    assert_eq!(
        vsctl_get(
            n,
            &["get", "Bridge", "eth1", "external_ids:exchange-link-name"]
        ),
        "true"
    );
    assert_eq!(
        vsctl_get(
            n,
            &[
                "get",
                "Open_vSwitch",
                ".",
                "external_ids:ovn-bridge-mappings"
            ]
        ),
        "net1:eth1"
    );
    let node = Api::<Node>::all(client.clone()).get(&n.name).await.unwrap();
    assert_eq!(
        label(&node, "net1.provider-network.kubernetes.io/interface").as_deref(),
        Some("eth1")
    );
    let eth1 = sys::run(
        "ip",
        ["-n", &n.netns, "-o", "-4", "addr", "show", "dev", "eth1"],
    )
    .unwrap();
    assert!(
        eth1.contains(&format!("{}/24", n.provider_ip)),
        "the bridge eth1 holds the address: {eth1}"
    );
    let default = sys::run("ip", ["-n", &n.netns, "route", "show", "default"]).unwrap();
    assert!(default.contains("dev eth1"), "{default}");
    let renamed = sys::run(
        "ip",
        ["-n", &n.netns, "-o", "-4", "addr", "show", "dev", "br-net1"],
    )
    .unwrap();
    assert!(
        renamed.trim().is_empty(),
        "the NIC keeps no address: {renamed}"
    );
    assert!(
        probe::ping(&n.netns, &external.ip.to_string(), Duration::from_secs(30)),
        "node → external host through the bridge eth1"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ul");
    pod(&pods, "p1", &n.name).await;
    probe::reach(&state, &state.pod_netns("ul", "p1"), GATEWAY).expect("p1 → its gateway");

    delete_all_pods(&pods).await;
    Api::<Subnet>::all(client.clone())
        .delete("underlay", &DeleteParams::default())
        .await
        .unwrap();
    Api::<Vlan>::all(client.clone())
        .delete("vlan100", &DeleteParams::default())
        .await
        .unwrap();
    pns.delete("net1", &DeleteParams::default()).await.unwrap();
    probe::until(WITHIN, "eth1 restored", || async {
        let now = nic_state(n);
        if now == before && n.vsctl(["br-exists", "eth1"]).is_err() {
            Ok(())
        } else {
            Err(format!("before:\n{before}\nnow:\n{now}"))
        }
    })
    .await
    .unwrap();
    assert!(
        sys::run("ip", ["-n", &n.netns, "link", "show", "dev", "br-net1"]).is_err(),
        "no link br-net1 left"
    );
    sandbox.down().await.expect("sandbox down");
}

#[test]
fn frames_are_read_with_the_tag_inline_or_from_auxiliary_data() {
    let mut ip = [0u8; 20];
    ip[9] = 1;
    ip[12..16].copy_from_slice(&[172, 19, 100, 2]);
    ip[16..20].copy_from_slice(&[172, 19, 100, 1]);
    let mut untagged = vec![0u8; 12];
    untagged.extend_from_slice(&[0x08, 0x00]);
    untagged.extend_from_slice(&ip);
    let mut tagged = vec![0u8; 12];
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 100, 0x08, 0x00]);
    tagged.extend_from_slice(&ip);
    let want = Seen {
        vlan: Some(100),
        src: Ipv4Addr::new(172, 19, 100, 2),
        dst: Ipv4Addr::new(172, 19, 100, 1),
    };
    assert_eq!(parse_frame(&tagged, None), Some(want));
    assert_eq!(parse_frame(&untagged, Some(100)), Some(want));
    assert_eq!(parse_frame(&untagged, None).unwrap().vlan, None);
    assert_eq!(parse_frame(&untagged[..20], None), None);
}

/// The external network of the OVN EIP test: VLAN 200 on the segment, the external host's
/// `vlan200` its gateway.
const EXT_GATEWAY: &str = "172.19.200.1";

/// The NAT rows of the NB as (type, external_ip, logical_ip).
fn nat_rows(state: &SandboxState) -> Vec<(String, String, String)> {
    let col = |r: &serde_json::Value, c: &str| r[c].as_str().unwrap_or_default().to_string();
    let mut rows: Vec<_> = kube_ovn_sandbox::matrix::nb_rows(&state.central.nb, "NAT")
        .expect("NB NAT rows")
        .iter()
        .map(|r| (col(r, "type"), col(r, "external_ip"), col(r, "logical_ip")))
        .collect();
    rows.sort();
    rows
}

/// The names of the NB's load balancers.
fn lb_names(state: &SandboxState) -> Vec<String> {
    kube_ovn_sandbox::matrix::nb_rows(&state.central.nb, "Load_Balancer")
        .expect("NB load balancers")
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect()
}

/// An OvnEip of the external subnet, awaited until ready; returns its address.
async fn ovn_eip(client: &kube::Client, name: &str) -> Ipv4Addr {
    create::<OvnEip>(
        client,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "OvnEip", "metadata": {"name": name},
               "spec": {"externalSubnet": "external", "type": "nat"}}),
    )
    .await;
    let eips: Api<OvnEip> = Api::all(client.clone());
    probe::until(WITHIN, &format!("ovn eip {name} ready"), || async {
        let st = eips
            .get(name)
            .await
            .map_err(|e| e.to_string())?
            .status
            .unwrap_or_default();
        match st.v4_ip.parse::<Ipv4Addr>() {
            Ok(ip) if st.ready => Ok(ip),
            _ => Err(format!("{st:?}")),
        }
    })
    .await
    .unwrap()
}

/// Waits until a NAT rule's status says ready.
async fn rule_ready<K>(client: &kube::Client, name: &str)
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    probe::until(WITHIN, &format!("{name} ready"), || async {
        let v = serde_json::to_value(api.get(name).await.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        if v["status"]["ready"] == json!(true) {
            Ok(())
        } else {
            Err(format!("{}", v["status"]))
        }
    })
    .await
    .unwrap();
}

/// OVN-native EIP/FIP/SNAT/DNAT with real packets, on a custom VPC connected to the external
/// network (ProviderNetwork `external` on every node's `eth1`, Vlan 200, underlay Subnet
/// `external`; node 1 labelled the external gateway):
/// - the VPC's gateway port `vpc1-external` gets an address of the external subnet (its `lrp`
///   OvnEip) and node 1's chassis as its gateway;
/// - OvnFip: the external host reaches pod p1 (node 2) by the FIP and is seen with its own
///   address; p1's egress is seen with the FIP;
/// - OvnSnatRule (subnet): pod p3's egress is seen with the SNAT EIP;
/// - OvnDnatRule: EIP:8080 → p2:9000;
/// - deleting each rule stops exactly its flow, and the NAT rows and load balancer go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ovn_eip_fip_snat_dnat_with_real_packets() {
    let (sandbox, state, client) = two_nodes().await;
    let ext = state.external.as_ref().expect("external host").clone();
    ext.add_vlan(&state.run_dir, 200, &format!("{EXT_GATEWAY}/24"))
        .expect("gateway on the external host's VLAN 200");
    workload::serve_peer_address(&ext.netns, ECHO_PORT).expect("external echo server");
    create::<ProviderNetwork>(
        &client,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "ProviderNetwork",
               "metadata": {"name": "external"}, "spec": {"defaultInterface": "eth1"}}),
    )
    .await;
    create::<Vlan>(
        &client,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Vlan", "metadata": {"name": "vlan200"},
               "spec": {"id": 200, "provider": "external"}}),
    )
    .await;
    create::<Subnet>(
        &client,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "external"},
               "spec": {"cidrBlock": "172.19.200.0/24", "gateway": EXT_GATEWAY,
                        "excludeIps": [EXT_GATEWAY], "vlan": "vlan200", "protocol": "IPv4"}}),
    )
    .await;
    let names: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            &names[0],
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"ovn.kubernetes.io/external-gw": "true"}}}),
            ),
        )
        .await
        .unwrap();
    create::<Vpc>(
        &client,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "vpc1"},
               "spec": {"namespaces": ["v1"], "enableExternal": true,
                        "staticRoutes": [{"cidr": "0.0.0.0/0", "nextHopIP": EXT_GATEWAY,
                                          "policy": "policyDst"}]}}),
    )
    .await;
    namespace(&client, "v1").await;
    create::<Subnet>(
        &client,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "s1"},
               "spec": {"cidrBlock": "10.100.0.0/24", "vpc": "vpc1", "namespaces": ["v1"],
                        "protocol": "IPv4"}}),
    )
    .await;
    let vpcs: Api<Vpc> = Api::all(client.clone());
    let lrp_eip = probe::until(WITHIN, "vpc1 connected to external", || async {
        let st = vpcs
            .get("vpc1")
            .await
            .map_err(|e| e.to_string())?
            .status
            .unwrap_or_default();
        let eip = Api::<OvnEip>::all(client.clone())
            .get("vpc1-external")
            .await
            .map_err(|e| e.to_string())?;
        let est = eip.status.clone().unwrap_or_default();
        if st.enable_external && est.ready && est.type_ == "lrp" {
            Ok(est.v4_ip)
        } else {
            Err(format!("vpc {st:?}, eip {est:?}"))
        }
    })
    .await
    .unwrap();
    let lrp = kube_ovn_sandbox::matrix::nb_rows(&state.central.nb, "Logical_Router_Port")
        .unwrap()
        .into_iter()
        .find(|r| r["name"] == "vpc1-external")
        .expect("vpc1-external in the NB");
    assert!(
        lrp["networks"]
            .to_string()
            .contains(&format!("{lrp_eip}/24")),
        "the gateway port holds the lrp EIP: {lrp}"
    );
    let chassis = kube_ovn_sandbox::matrix::nb_rows(&state.central.nb, "Gateway_Chassis").unwrap();
    assert_eq!(chassis.len(), 1, "one gateway node: {chassis:?}");
    assert_eq!(chassis[0]["priority"], json!(100), "{chassis:?}");

    let pods: Api<Pod> = Api::namespaced(client.clone(), "v1");
    let mut ips = Vec::new();
    for (name, node) in [("p1", &names[1]), ("p2", &names[0]), ("p3", &names[1])] {
        let ip = pod(&pods, name, node).await;
        workload::serve_peer_address(&state.pod_netns("v1", name), ECHO_PORT).expect("echo");
        ips.push(ip);
    }
    let ns = |p: &str| state.pod_netns("v1", p);
    let to_ext = SocketAddr::new(EXT_GATEWAY.parse().unwrap(), ECHO_PORT);
    // No NAT yet: the external host has no route back to the VPC.
    until_answer(&state, &ns("p3"), to_ext, None).await;

    let fip_ip = ovn_eip(&client, "eip-fip").await;
    let snat_ip = ovn_eip(&client, "eip-snat").await;
    let dnat_ip = ovn_eip(&client, "eip-dnat").await;
    create::<OvnFip>(
        &client,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "OvnFip", "metadata": {"name": "fip1"},
               "spec": {"ovnEip": "eip-fip", "ipName": "p1.v1"}}),
    )
    .await;
    create::<OvnSnatRule>(
        &client,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "OvnSnatRule", "metadata": {"name": "snat1"},
               "spec": {"ovnEip": "eip-snat", "vpcSubnet": "s1"}}),
    )
    .await;
    create::<OvnDnatRule>(
        &client,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "OvnDnatRule", "metadata": {"name": "dnat1"},
               "spec": {"ovnEip": "eip-dnat", "ipName": "p2.v1", "protocol": "tcp",
                        "internalPort": ECHO_PORT.to_string(), "externalPort": "8080"}}),
    )
    .await;
    rule_ready::<OvnFip>(&client, "fip1").await;
    rule_ready::<OvnSnatRule>(&client, "snat1").await;
    rule_ready::<OvnDnatRule>(&client, "dnat1").await;
    assert_eq!(
        nat_rows(&state),
        vec![
            (
                "dnat_and_snat".into(),
                fip_ip.to_string(),
                ips[0].to_string()
            ),
            ("snat".into(), snat_ip.to_string(), "10.100.0.0/24".into()),
        ]
    );
    assert!(lb_names(&state).contains(&"dnat1".to_string()));
    let eip_nat = |name: &'static str| {
        let client = client.clone();
        async move {
            Api::<OvnEip>::all(client)
                .get(name)
                .await
                .ok()
                .and_then(|e| e.status)
                .map(|s| s.nat)
                .unwrap_or_default()
        }
    };
    probe::until(WITHIN, "eip status.nat", || async {
        let got = (
            eip_nat("eip-fip").await,
            eip_nat("eip-snat").await,
            eip_nat("eip-dnat").await,
        );
        if got == ("fip".into(), "snat".into(), "dnat".into()) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await
    .unwrap();

    let ext_ns = ext.netns.clone();
    let fip = SocketAddr::new(IpAddr::V4(fip_ip), ECHO_PORT);
    let dnat = SocketAddr::new(IpAddr::V4(dnat_ip), 8080);
    // In by the FIP and the DNAT port, seen with the external host's own address.
    until_answer(&state, &ext_ns, fip, Some(EXT_GATEWAY)).await;
    until_answer(&state, &ext_ns, dnat, Some(EXT_GATEWAY)).await;
    // Out: p1 with its FIP, p3 with the SNAT EIP.
    until_answer(&state, &ns("p1"), to_ext, Some(&fip_ip.to_string())).await;
    until_answer(&state, &ns("p3"), to_ext, Some(&snat_ip.to_string())).await;

    // Each deletion stops its flow only.
    Api::<OvnFip>::all(client.clone())
        .delete("fip1", &DeleteParams::default())
        .await
        .unwrap();
    until_answer(&state, &ext_ns, fip, None).await;
    until_answer(&state, &ns("p1"), to_ext, Some(&snat_ip.to_string())).await;
    until_answer(&state, &ext_ns, dnat, Some(EXT_GATEWAY)).await;
    Api::<OvnSnatRule>::all(client.clone())
        .delete("snat1", &DeleteParams::default())
        .await
        .unwrap();
    until_answer(&state, &ns("p3"), to_ext, None).await;
    until_answer(&state, &ext_ns, dnat, Some(EXT_GATEWAY)).await;
    Api::<OvnDnatRule>::all(client.clone())
        .delete("dnat1", &DeleteParams::default())
        .await
        .unwrap();
    until_answer(&state, &ext_ns, dnat, None).await;
    probe::until(
        WITHIN,
        "NAT rows and the DNAT load balancer gone",
        || async {
            let (nats, lbs) = (nat_rows(&state), lb_names(&state));
            if nats.is_empty() && !lbs.contains(&"dnat1".to_string()) {
                Ok(())
            } else {
                Err(format!("{nats:?} {lbs:?}"))
            }
        },
    )
    .await
    .unwrap();
    // An unused EIP can go, and its address with it.
    Api::<OvnEip>::all(client.clone())
        .delete("eip-fip", &DeleteParams::default())
        .await
        .unwrap();
    probe::until(WITHIN, "eip-fip deleted", || async {
        match Api::<OvnEip>::all(client.clone()).get_opt("eip-fip").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    sandbox.down().await.expect("sandbox down");
}

/// The external gateway bridge from `ovn-external-gw-config`: the ConfigMap names node 1 a
/// gateway and `eth1` its external NIC; the controller labels node 1, whose daemon makes
/// `eth1` a port of `br-external` mapped as `external` (the NIC keeps its address); node 2,
/// not a gateway, gets no bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_gateway_bridge_on_the_gateway_node() {
    let (sandbox, state, client) = two_nodes().await;
    let names: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();
    let before = nic_state(&state.nodes[0]);
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), "kube-system")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "ovn-external-gw-config"},
                "data": {"enable-external-gw": "true", "type": "centralized",
                         "external-gw-nodes": names[0], "external-gw-nic": "eth1"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let node1 = &state.nodes[0];
    probe::until(WITHIN, "br-external with eth1 on node 1", || async {
        let labelled = nodes
            .get(&names[0])
            .await
            .map_err(|e| e.to_string())
            .map(|n| label(&n, "ovn.kubernetes.io/external-gw"))?;
        let ports = vsctl_get(node1, &["list-ports", "br-external"]);
        let mappings = vsctl_get(
            node1,
            &[
                "get",
                "Open_vSwitch",
                ".",
                "external_ids:ovn-bridge-mappings",
            ],
        );
        if labelled.as_deref() == Some("true")
            && ports.lines().any(|p| p == "eth1")
            && mappings.split(',').any(|m| m == "external:br-external")
        {
            Ok(())
        } else {
            Err(format!(
                "label {labelled:?}, ports {ports:?}, mappings {mappings:?}"
            ))
        }
    })
    .await
    .unwrap();
    let after = nic_state(node1);
    assert!(
        after.contains(&node1.provider_ip.to_string()),
        "eth1 keeps its address: {after}\nbefore: {before}"
    );
    let node2 = vsctl_get(&state.nodes[1], &["br-exists", "br-external"]);
    assert!(
        node2.starts_with("error"),
        "node 2 is no gateway and has no br-external: {node2:?}"
    );
    sandbox.down().await.expect("sandbox down");
}
