//! Machines without machines: every node is a network namespace running its own Open vSwitch
//! (ovsdb-server + ovs-vswitchd with the userspace `netdev` datapath, since this kernel has no
//! OVS module) and its own ovn-controller, wired to a shared "fabric" namespace.
//!
//! The fabric has two Linux bridges: `br-under` carries Geneve between the nodes, `br-prov` is
//! the physical provider network shared with an "external" namespace (the outside world: it
//! owns `172.19.0.100` and, on loopback, `1.1.1.1`). Every node has:
//! - `eth0`, its underlay NIC, enslaved to the OVS bridge `br-phy` which carries the node IP.
//!   Userspace tunnelling only finds routes and neighbours on OVS-owned ports, so the node IP
//!   (also the Geneve encap IP and the Node's InternalIP) lives on `br-phy`.
//! - `eth1`, a plain NIC on the provider network with its own address and the default route to
//!   the external namespace — what NAT-outgoing traffic leaves through, and what a
//!   ProviderNetwork can later take over for underlay subnets.
//!
//! Running vswitchd inside the node's namespace keeps its tap devices out of the root namespace,
//! so sandboxes never collide with each other or with an OVS on the host.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::central::daemon_args;
use crate::error::{Error, Result};
use crate::sys::{in_netns, netns_add, run, run_command, wait_for};

const VSWITCH_SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// Underlay subnet (Geneve between nodes): node `i` (0-based) is `.2+i`.
pub const UNDERLAY_PREFIX: [u8; 3] = [172, 18, 0];
/// Provider/external subnet: node `i` is `.2+i`, the external host is [`EXTERNAL_IP`].
pub const PROVIDER_PREFIX: [u8; 3] = [172, 19, 0];
/// The external host on the provider network.
pub const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(172, 19, 0, 100);
/// An "internet" address the external host answers for, reachable from nodes by default route.
pub const INTERNET_IP: Ipv4Addr = Ipv4Addr::new(1, 1, 1, 1);

/// What a sandbox node is and where its pieces live; serializable so another process (`down`,
/// `exec`, a later test step) can find everything again.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    /// Kubernetes Node name and OVN chassis system-id.
    pub name: String,
    /// The node's network namespace ("the host").
    pub netns: String,
    /// Run directory: OVS database, sockets (`OVS_RUNDIR`), logs, CNI config and plugins.
    pub dir: PathBuf,
    /// Node IP on the underlay: InternalIP, Geneve encap IP.
    pub ip: Ipv4Addr,
    /// Address on the provider network (`eth1`).
    pub provider_ip: Ipv4Addr,
}

impl NodeInfo {
    /// Remote of the node's Open_vSwitch database.
    pub fn ovs_remote(&self) -> String {
        format!("unix:{}", self.dir.join("db.sock").display())
    }

    /// Directory the kubelet stand-in reads CNI network configurations from (`/etc/cni/net.d`).
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni/net.d")
    }

    /// Kubeconfig for agents running on the node (the API at `127.0.0.1:6443` inside the
    /// node's namespace).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// Directory the kubelet stand-in finds CNI plugins in (`/opt/cni/bin`).
    pub fn cni_bin_dir(&self) -> PathBuf {
        self.dir.join("cni/bin")
    }

    /// The environment that makes OVS/OVN tools and daemons use this node's sockets and files.
    pub fn ovs_env(&self) -> Vec<(&'static str, PathBuf)> {
        [
            "OVS_RUNDIR",
            "OVS_LOGDIR",
            "OVS_DBDIR",
            "OVN_RUNDIR",
            "OVN_LOGDIR",
        ]
        .into_iter()
        .map(|k| (k, self.dir.clone()))
        .collect()
    }

    /// A command run on this node: in its namespace, with its OVS environment.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = in_netns(&self.netns, program);
        cmd.envs(self.ovs_env());
        cmd
    }

    /// `ovs-vsctl` against this node's database.
    pub fn vsctl<I: IntoIterator<Item = S>, S: AsRef<str>>(&self, args: I) -> Result<String> {
        let mut cmd = Command::new("ovs-vsctl");
        cmd.arg(format!("--db={}", self.ovs_remote()))
            .arg("--timeout=30");
        for a in args {
            cmd.arg(a.as_ref());
        }
        run_command(&mut cmd)
    }
}

/// Where Debian's containernetworking-plugins live (macvlan, ipvlan, bridge, host-local,
/// static...): every node's plugin directory links them, as a node image ships them in
/// `/opt/cni/bin`.
pub const SYSTEM_CNI_DIR: &str = "/usr/lib/cni";

/// The external host: a namespace on the provider bridge, the outside world of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExternalHost {
    /// Its network namespace.
    pub netns: String,
    /// Its address on the provider network.
    pub ip: Ipv4Addr,
    /// The provider network's CIDR (every node's `eth1` is on it).
    pub cidr: String,
    /// The Linux bridge of the provider network, in the fabric namespace.
    pub bridge: String,
    /// The fabric namespace holding the bridge.
    pub fabric_netns: String,
}

impl ExternalHost {
    /// The external host of the sandbox with `prefix`.
    pub fn of(prefix: &str) -> ExternalHost {
        let [a, b, c] = PROVIDER_PREFIX;
        ExternalHost {
            netns: external_netns(prefix),
            ip: EXTERNAL_IP,
            cidr: format!("{a}.{b}.{c}.0/24"),
            bridge: "br-prov".into(),
            fabric_netns: fabric_netns(prefix),
        }
    }
}

impl ExternalHost {
    /// Gives the external host an interface `vlan<id>` with `address` (with prefix length) on
    /// VLAN `id` of the provider network: the physical gateway of an underlay subnet whose Vlan
    /// has tag `id`. This kernel has neither 802.1Q devices nor VLAN-filtering bridges, so the
    /// host's `eth0` becomes the trunk port of a userspace OVS bridge (`br-ext`, its own
    /// ovsdb-server and vswitchd under `<run_dir>/external`, found by the sweep through their
    /// pidfiles) whose access port `vlan<id>` is that interface; `eth0` keeps its untagged
    /// address, and the provider network (a plain Linux bridge) carries tagged frames
    /// unchanged between the nodes' NICs and it.
    pub fn add_vlan(&self, run_dir: &Path, id: u16, address: &str) -> Result<String> {
        let dir = run_dir.join("external");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let ns = &self.netns;
        let env: Vec<(&str, &Path)> = ["OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR"]
            .into_iter()
            .map(|k| (k, dir.as_path()))
            .collect();
        let db = format!("unix:{}", dir.join("db.sock").display());
        let vsctl = |args: &[&str]| {
            let mut cmd = Command::new("ovs-vsctl");
            cmd.arg(format!("--db={db}")).arg("--timeout=30").args(args);
            run_command(&mut cmd)
        };
        if !dir.join("db.sock").exists() {
            let conf = dir.join("conf.db");
            run(
                "ovsdb-tool",
                ["create", &conf.display().to_string(), VSWITCH_SCHEMA],
            )?;
            let mut server = in_netns(ns, "ovsdb-server");
            server
                .envs(env.clone())
                .arg(format!("--remote=punix:{}", dir.join("db.sock").display()));
            daemon_args(&mut server, &dir, "ovsdb");
            server.arg(&conf);
            run_command(&mut server)?;
            vsctl(&["--no-wait", "init"])?;
            vsctl(&[
                "--no-wait",
                "set",
                "Open_vSwitch",
                ".",
                "other_config:n-handler-threads=1",
                "other_config:n-revalidator-threads=1",
            ])?;
            let mut vswitchd = in_netns(ns, "ovs-vswitchd");
            vswitchd.envs(env);
            daemon_args(&mut vswitchd, &dir, "vswitchd");
            vswitchd.arg(&db);
            run_command(&mut vswitchd)?;
            vsctl(&[
                "--may-exist",
                "add-br",
                "br-ext",
                "--",
                "set",
                "Bridge",
                "br-ext",
                "datapath_type=netdev",
                "--",
                "--may-exist",
                "add-port",
                "br-ext",
                "eth0",
            ])?;
        }
        let dev = format!("vlan{id}");
        vsctl(&[
            "--may-exist",
            "add-port",
            "br-ext",
            &dev,
            &format!("tag={id}"),
            "--",
            "set",
            "Interface",
            &dev,
            "type=internal",
        ])?;
        let netns = ns.clone();
        let name = dev.clone();
        if !wait_for(Duration::from_secs(10), || {
            run("ip", ["-n", &netns, "link", "show", &name]).is_ok()
        }) {
            return Err(Error::Timeout {
                what: format!("{dev} on the external host"),
                after: Duration::from_secs(10),
            });
        }
        run("ip", ["-n", ns, "addr", "add", address, "dev", &dev])?;
        run("ip", ["-n", ns, "link", "set", &dev, "up"])?;
        tx_checksum_off(ns, &dev)?;
        Ok(dev)
    }
}

/// Name of a node's network namespace ("the host") in a sandbox with `prefix`.
pub fn node_netns(prefix: &str, node: &str) -> String {
    format!("{prefix}{node}")
}

/// Names of the fabric and external namespaces for a sandbox prefix.
pub fn fabric_netns(prefix: &str) -> String {
    format!("{prefix}fabric")
}

/// See [`fabric_netns`].
pub fn external_netns(prefix: &str) -> String {
    format!("{prefix}external")
}

/// Creates the fabric namespace with its two bridges and the external host.
pub fn start_fabric(prefix: &str) -> Result<()> {
    let fabric = fabric_netns(prefix);
    netns_add(&fabric)?;
    for br in ["br-under", "br-prov"] {
        run("ip", ["-n", &fabric, "link", "add", br, "type", "bridge"])?;
        run("ip", ["-n", &fabric, "link", "set", br, "up"])?;
    }
    let ext = external_netns(prefix);
    netns_add(&ext)?;
    run(
        "ip",
        [
            "link", "add", "ext0", "netns", &fabric, "type", "veth", "peer", "name", "eth0",
            "netns", &ext,
        ],
    )?;
    run(
        "ip",
        [
            "-n", &fabric, "link", "set", "ext0", "master", "br-prov", "up",
        ],
    )?;
    run(
        "ip",
        [
            "-n",
            &ext,
            "addr",
            "add",
            &format!("{EXTERNAL_IP}/24"),
            "dev",
            "eth0",
        ],
    )?;
    run(
        "ip",
        [
            "-n",
            &ext,
            "addr",
            "add",
            &format!("{INTERNET_IP}/32"),
            "dev",
            "lo",
        ],
    )?;
    run("ip", ["-n", &ext, "link", "set", "eth0", "up"])?;
    tx_checksum_off(&ext, "eth0")?;
    Ok(())
}

/// The userspace datapath forwards frames with "partial" TCP/UDP checksums unfixed, and the
/// receiver drops them; an interface whose traffic may cross OVS must compute them itself.
pub fn tx_checksum_off(netns: &str, dev: &str) -> Result<()> {
    let mut cmd = in_netns(netns, "ethtool");
    cmd.args(["-K", dev, "tx", "off"]);
    run_command(&mut cmd).map(|_| ())
}

/// Brings up node number `index` (0-based) named `name`, connected to the fabric of the
/// sandbox `fabric_prefix` (its own, or one it shares) and to the southbound database at
/// `sb_remote`.
pub fn start_node(
    prefix: &str,
    fabric_prefix: &str,
    run_dir: &Path,
    index: usize,
    name: &str,
    sb_remote: &str,
) -> Result<NodeInfo> {
    let octet = u8::try_from(index + 2)
        .ok()
        .filter(|o| *o < 100)
        .ok_or_else(|| Error::Invalid(format!("too many nodes: {}", index + 1)))?;
    let [a, b, c] = UNDERLAY_PREFIX;
    let [pa, pb, pc] = PROVIDER_PREFIX;
    let node = NodeInfo {
        name: name.to_string(),
        netns: node_netns(prefix, name),
        dir: run_dir.join(name),
        ip: Ipv4Addr::new(a, b, c, octet),
        provider_ip: Ipv4Addr::new(pa, pb, pc, octet),
    };
    for d in [node.dir.clone(), node.cni_conf_dir(), node.cni_bin_dir()] {
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    link_system_plugins(&node.cni_bin_dir())?;
    netns_add(&node.netns)?;
    let dir = &node.dir;
    let conf = dir.join("conf.db");
    run(
        "ovsdb-tool",
        ["create", &conf.display().to_string(), VSWITCH_SCHEMA],
    )?;
    let mut db = node.command("ovsdb-server");
    db.arg(format!("--remote=punix:{}", dir.join("db.sock").display()));
    daemon_args(&mut db, dir, "ovsdb");
    db.arg(&conf);
    run_command(&mut db)?;
    node.vsctl(["--no-wait", "init"])?;
    // One handler and one revalidator thread: a sandbox node carries little traffic and the
    // machine may have two cores for many nodes.
    node.vsctl([
        "--no-wait",
        "set",
        "Open_vSwitch",
        ".",
        "other_config:n-handler-threads=1",
        "other_config:n-revalidator-threads=1",
    ])?;
    let mut vswitchd = node.command("ovs-vswitchd");
    daemon_args(&mut vswitchd, dir, "vswitchd");
    // Restarted after a crash, as ovs-ctl runs it: this OVS's userspace conntrack can abort
    // under the churn of many short connections (an assertion in conn_update_state), and a
    // node must not stay dark for the rest of a test because of it. A SIGTERM or SIGKILL
    // still ends both it and its monitor.
    vswitchd.arg("--monitor");
    vswitchd.arg(format!("unix:{}", dir.join("db.sock").display()));
    run_command(&mut vswitchd)?;

    // What the ovs-ovn image's start script sets: identity, where the SB is, how to tunnel.
    node.vsctl([
        "set".to_string(),
        "Open_vSwitch".into(),
        ".".into(),
        format!("external_ids:system-id={name}"),
        format!("external_ids:hostname={name}"),
        format!("external_ids:ovn-remote=\"{sb_remote}\""),
        "external_ids:ovn-encap-type=geneve".into(),
        format!("external_ids:ovn-encap-ip={}", node.ip),
        "external_ids:ovn-bridge-datapath-type=netdev".into(),
        // The chart's defaults (OVN_REMOTE_PROBE_INTERVAL 10000 ms, OVN_REMOTE_OPENFLOW_INTERVAL
        // 180 s): a busy vswitchd is not declared dead by its ovn-controller.
        "external_ids:ovn-remote-probe-interval=10000".into(),
        "external_ids:ovn-openflow-probe-interval=180".into(),
    ])?;
    node.vsctl([
        "--may-exist",
        "add-br",
        "br-int",
        "--",
        "set",
        "Bridge",
        "br-int",
        "datapath_type=netdev",
        "fail-mode=secure",
        "other_config:disable-in-band=true",
    ])?;
    let fabric = fabric_netns(fabric_prefix);
    underlay(&node, &fabric, index)?;
    provider_nic(&node, &fabric, index)?;

    start_ovn_controller(&node)?;
    Ok(node)
}

/// Installs a plain default network on `node` instead of kube-ovn's, for tests of the kubelet
/// and controller stand-ins that need working pods but not kube-ovn: Debian's `bridge` plugin
/// (bridge `cni0` in the node, the node as gateway) with `host-local` addresses from
/// `10.88.<index+1>.0/24`, its leases under the node's directory.
pub fn install_bridge_network(node: &NodeInfo, index: usize) -> Result<()> {
    let octet = u8::try_from(index + 1)
        .map_err(|_| Error::Invalid(format!("node index {index} too large")))?;
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "sandbox-bridge",
        "plugins": [{
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": format!("10.88.{octet}.0/24")}]],
                "dataDir": node.dir.join("cni/ipam").display().to_string(),
            },
        }],
    });
    let path = node.cni_conf_dir().join("10-sandbox-bridge.conflist");
    std::fs::write(&path, conf.to_string()).map_err(|e| Error::io(&path, e))
}

/// Links every plugin of [`SYSTEM_CNI_DIR`] into `bin_dir` (none when the package is absent).
fn link_system_plugins(bin_dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(SYSTEM_CNI_DIR) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let link = bin_dir.join(e.file_name());
        if !link.exists() {
            std::os::unix::fs::symlink(e.path(), &link).map_err(|err| Error::io(&link, err))?;
        }
    }
    Ok(())
}

fn start_ovn_controller(node: &NodeInfo) -> Result<()> {
    let dir = &node.dir;
    let mut controller = node.command("ovn-controller");
    controller
        .arg("--detach")
        .arg("--no-chdir")
        .arg(format!(
            "--pidfile={}",
            dir.join("ovn-controller.pid").display()
        ))
        .arg(format!(
            "--log-file={}",
            dir.join("ovn-controller.log").display()
        ))
        .arg(format!("unix:{}", dir.join("db.sock").display()));
    run_command(&mut controller).map(|_| ())
}

/// Kills the node's ovn-controller with SIGKILL (as a crash; a pid already gone is fine),
/// keeps it down for `down`, and starts it again; returns once the new one runs. OVS keeps
/// forwarding with the flows it has meanwhile.
pub fn restart_ovn_controller(node: &NodeInfo, down: std::time::Duration) -> Result<()> {
    crate::sys::kill_pidfile(&node.dir.join("ovn-controller.pid"))?;
    std::thread::sleep(down);
    start_ovn_controller(node)
}

fn underlay(node: &NodeInfo, fabric: &str, index: usize) -> Result<()> {
    let port = format!("u{index}");
    run(
        "ip",
        [
            "link",
            "add",
            "eth0",
            "netns",
            &node.netns,
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            fabric,
        ],
    )?;
    run(
        "ip",
        [
            "-n", fabric, "link", "set", &port, "master", "br-under", "up",
        ],
    )?;
    node.vsctl([
        "--may-exist",
        "add-br",
        "br-phy",
        "--",
        "set",
        "Bridge",
        "br-phy",
        "datapath_type=netdev",
        "--",
        "--may-exist",
        "add-port",
        "br-phy",
        "eth0",
    ])?;
    run("ip", ["-n", &node.netns, "link", "set", "eth0", "up"])?;
    // vswitchd creates the br-phy tap asynchronously.
    let netns = node.netns.clone();
    if !wait_for(Duration::from_secs(10), || {
        run("ip", ["-n", &netns, "link", "show", "br-phy"]).is_ok()
    }) {
        return Err(Error::Timeout {
            what: format!("br-phy on {}", node.name),
            after: Duration::from_secs(10),
        });
    }
    run(
        "ip",
        [
            "-n",
            &node.netns,
            "addr",
            "add",
            &format!("{}/24", node.ip),
            "dev",
            "br-phy",
        ],
    )?;
    run("ip", ["-n", &node.netns, "link", "set", "br-phy", "up"])?;
    Ok(())
}

fn provider_nic(node: &NodeInfo, fabric: &str, index: usize) -> Result<()> {
    let port = format!("p{index}");
    run(
        "ip",
        [
            "link",
            "add",
            "eth1",
            "netns",
            &node.netns,
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            fabric,
        ],
    )?;
    run(
        "ip",
        [
            "-n", fabric, "link", "set", &port, "master", "br-prov", "up",
        ],
    )?;
    let ns = &node.netns;
    run(
        "ip",
        [
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/24", node.provider_ip),
            "dev",
            "eth1",
        ],
    )?;
    run("ip", ["-n", ns, "link", "set", "eth1", "up"])?;
    tx_checksum_off(ns, "eth1")?;
    run(
        "ip",
        [
            "-n",
            ns,
            "route",
            "add",
            "default",
            "via",
            &EXTERNAL_IP.to_string(),
        ],
    )?;
    Ok(())
}
