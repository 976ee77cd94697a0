//! Wiring a network namespace into a node's `br-int` by hand — what the CNI does for a pod,
//! done directly, so tests can prove the OVN world carries packets before (and independently of)
//! our own CNI and daemon.

use crate::error::Result;
use crate::node::{tx_checksum_off, NodeInfo};
use crate::sys::{netns_add, run};

/// An interface to create in a namespace and attach to a logical switch port.
#[derive(Debug, Clone)]
pub struct HandPlug<'a> {
    /// Namespace to create (the "pod").
    pub netns: &'a str,
    /// Host-side veth name in the node namespace (at most 15 bytes).
    pub host_ifname: &'a str,
    /// Logical_Switch_Port name the interface binds to (`external_ids:iface-id`).
    pub lsp: &'a str,
    /// MAC of `eth0`.
    pub mac: &'a str,
    /// Address with prefix length, e.g. `10.16.0.2/16`.
    pub ip_cidr: &'a str,
    /// Default gateway, if any.
    pub gateway: Option<&'a str>,
    /// MTU of both veth ends.
    pub mtu: u32,
}

/// Creates `plug.netns` with an `eth0` veth whose peer is added to `node`'s `br-int` bound to
/// `plug.lsp`.
pub fn plug_by_hand(node: &NodeInfo, plug: &HandPlug<'_>) -> Result<()> {
    let ns = plug.netns;
    netns_add(ns)?;
    let mtu = plug.mtu.to_string();
    run(
        "ip",
        [
            "link",
            "add",
            plug.host_ifname,
            "netns",
            &node.netns,
            "mtu",
            &mtu,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns,
            "mtu",
            &mtu,
        ],
    )?;
    run("ip", ["-n", ns, "link", "set", "eth0", "address", plug.mac])?;
    run("ip", ["-n", ns, "addr", "add", plug.ip_cidr, "dev", "eth0"])?;
    run("ip", ["-n", ns, "link", "set", "eth0", "up"])?;
    if let Some(gw) = plug.gateway {
        run("ip", ["-n", ns, "route", "add", "default", "via", gw])?;
    }
    tx_checksum_off(ns, "eth0")?;
    run(
        "ip",
        ["-n", &node.netns, "link", "set", plug.host_ifname, "up"],
    )?;
    node.vsctl([
        "add-port".to_string(),
        "br-int".into(),
        plug.host_ifname.into(),
        "--".into(),
        "set".into(),
        "Interface".into(),
        plug.host_ifname.into(),
        format!("external_ids:iface-id={}", plug.lsp),
    ])?;
    Ok(())
}
