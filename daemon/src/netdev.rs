//! Links, addresses and routes through rtnetlink: the veth pair on the node, and the pod side
//! configured inside the pod's network namespace.
//!
//! A namespace is only ever entered on a short-lived dedicated thread, which opens a netlink
//! socket and an ioctl socket there and exits: sockets stay bound to the namespace they were
//! created in, so all later work runs on ordinary tokio tasks without any thread switching
//! namespaces.

use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, IpVersion, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::node::routes::HostRoute;
use crate::protocol::Route;

/// TX queue length upstream gives the host end.
const HOST_TXQUEUELEN: u32 = 1000;

/// A failed link operation, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct LinkError {
    what: String,
    #[source]
    source: io::Error,
}

fn link_err(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    let what = what.into();
    move |e| LinkError {
        what,
        source: match e {
            rtnetlink::Error::NetlinkError(m) => m.to_io(),
            other => io::Error::other(other.to_string()),
        },
    }
}

fn invalid_route(what: &str, e: impl std::fmt::Display) -> LinkError {
    LinkError {
        what: what.to_string(),
        source: io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> LinkError {
    let what = what.into();
    move |source| LinkError { what, source }
}

/// Netlink (and ethtool ioctl) access to one network namespace.
pub struct Netns {
    handle: Handle,
    ioctl_socket: OwnedFd,
}

impl Netns {
    /// The namespace this process runs in (the node).
    pub fn current() -> Result<Netns, LinkError> {
        open_sockets()
    }

    /// The namespace at `path` (a pod's `CNI_NETNS`), entered only on a throwaway thread.
    pub async fn open(path: &Path) -> Result<Netns, LinkError> {
        let rt = tokio::runtime::Handle::current();
        let path = path.to_path_buf();
        let what = format!("open netns {}", path.display());
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("netns-open".into())
            .spawn(move || {
                let _guard = rt.enter();
                let r = File::open(&path)
                    .map_err(io_err(format!("open netns {}", path.display())))
                    .and_then(|f| {
                        // SAFETY: setns on this thread only; the thread ends right after.
                        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
                        if rc != 0 {
                            return Err(io_err(format!("setns {}", path.display()))(
                                io::Error::last_os_error(),
                            ));
                        }
                        open_sockets()
                    });
                let _ = tx.send(r);
            })
            .map_err(io_err(what.clone()))?;
        rx.await
            .map_err(|_| io_err(what)(io::Error::other("netns thread died")))?
    }

    /// The namespace's rtnetlink handle, for the link work other modules do (the provider
    /// bridge's address and route moves).
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Index of the link called `name`, `None` when there is none.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, LinkError> {
        let r = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await;
        match r {
            Ok(m) => Ok(m.map(|m| m.header.index)),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code().abs() == libc::ENODEV => {
                Ok(None)
            }
            Err(e) => Err(link_err(format!("find link {name}"))(e)),
        }
    }

    async fn require(&self, name: &str) -> Result<u32, LinkError> {
        self.link_index(name).await?.ok_or_else(|| {
            io_err(format!("find link {name}"))(io::Error::from_raw_os_error(libc::ENODEV))
        })
    }

    /// Creates the veth pair with `mtu` on both ends.
    pub async fn create_veth(&self, host: &str, peer: &str, mtu: u32) -> Result<(), LinkError> {
        self.handle
            .link()
            .add(LinkVeth::new(host, peer).mtu(mtu).build())
            .execute()
            .await
            .map_err(link_err(format!("create veth {host}/{peer}")))?;
        let peer_index = self.require(peer).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(peer_index).mtu(mtu).build())
            .execute()
            .await
            .map_err(link_err(format!("set mtu of {peer}")))
    }

    /// Brings the host end up with upstream's queue length.
    pub async fn host_up(&self, name: &str) -> Result<(), LinkError> {
        let index = self.require(name).await?;
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .txqueuelen(HOST_TXQUEUELEN)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(link_err(format!("bring up {name}")))
    }

    /// Moves link `name` into the namespace at `netns_path`.
    pub async fn move_to(&self, name: &str, netns_path: &Path) -> Result<(), LinkError> {
        let index = self.require(name).await?;
        let ns = File::open(netns_path)
            .map_err(io_err(format!("open netns {}", netns_path.display())))?;
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .setns_by_fd(ns.as_raw_fd())
                    .build(),
            )
            .execute()
            .await
            .map_err(link_err(format!("move {name} to {}", netns_path.display())))
    }

    /// Deletes link `name`; an absent link is success (a veth's peer goes with it).
    pub async fn delete_link(&self, name: &str) -> Result<(), LinkError> {
        let Some(index) = self.link_index(name).await? else {
            return Ok(());
        };
        match self.handle.link().del(index).execute().await {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code().abs() == libc::ENODEV => Ok(()),
            r => r.map_err(link_err(format!("delete {name}"))),
        }
    }

    /// Turns the pod interface into the one the controller allocated: renamed to `if_name`,
    /// with the MAC, MTU, addresses, default routes and extra routes, and `lo` up.
    pub async fn configure_pod_nic(&self, nic: &PodNic<'_>) -> Result<(), LinkError> {
        let index = self.require(nic.current_name).await?;
        let link = self.handle.link();
        link.set(
            LinkUnspec::new_with_index(index)
                .name(nic.if_name.to_string())
                .address(nic.mac.to_vec())
                .mtu(nic.mtu)
                .build(),
        )
        .execute()
        .await
        .map_err(link_err(format!(
            "rename {} to {}",
            nic.current_name, nic.if_name
        )))?;
        for a in nic.addresses {
            self.handle
                .address()
                .add(index, a.addr(), a.prefix_len())
                .execute()
                .await
                .map_err(link_err(format!("add address {a} to {}", nic.if_name)))?;
        }
        link.set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(link_err(format!("bring up {}", nic.if_name)))?;
        let lo = self.require("lo").await?;
        link.set(LinkUnspec::new_with_index(lo).up().build())
            .execute()
            .await
            .map_err(link_err("bring up lo"))?;
        for gw in nic.gateways {
            let default = if gw.is_ipv4() {
                IpAddr::from([0u8; 4])
            } else {
                IpAddr::from([0u16; 8])
            };
            self.add_route(index, IpNet::new(default, 0).ok(), Some(*gw))
                .await?;
        }
        for r in nic.routes {
            let dst = (!r.dst.is_empty())
                .then(|| r.dst.parse::<IpNet>().ok())
                .flatten();
            let gw = (!r.gw.is_empty())
                .then(|| r.gw.parse::<IpAddr>().ok())
                .flatten();
            self.add_route(index, dst, gw).await?;
        }
        Ok(())
    }

    async fn add_route(
        &self,
        index: u32,
        dst: Option<IpNet>,
        gw: Option<IpAddr>,
    ) -> Result<(), LinkError> {
        let what = format!(
            "add route {} via {}",
            dst.map_or("default".into(), |d| d.to_string()),
            gw.map_or("link".into(), |g| g.to_string())
        );
        let bad = |e| invalid_route(&what, e);
        let mut b = RouteMessageBuilder::<IpAddr>::new();
        let family_of = dst.map(|d| d.addr()).or(gw);
        if let Some(d) = dst {
            b = b
                .destination_prefix(d.addr(), d.prefix_len())
                .map_err(bad)?;
        } else if let Some(g) = family_of {
            let any = if g.is_ipv4() {
                IpAddr::from([0u8; 4])
            } else {
                IpAddr::from([0u16; 8])
            };
            b = b.destination_prefix(any, 0).map_err(bad)?;
        }
        if let Some(g) = gw {
            b = b.gateway(g).map_err(bad)?;
        }
        let msg = b.output_interface(index).build();
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(link_err(what))
    }

    /// Gives the node's existing link `name` (`ovn0`) its MAC, MTU and exactly `addresses`
    /// (other global addresses are removed, IPv6 link-local ones kept) and brings it up.
    pub async fn configure_node_nic(
        &self,
        name: &str,
        mac: [u8; 6],
        mtu: u32,
        addresses: &[IpNet],
    ) -> Result<u32, LinkError> {
        let index = self.require(name).await?;
        let link = self.handle.link();
        link.set(
            LinkUnspec::new_with_index(index)
                .address(mac.to_vec())
                .mtu(mtu)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(link_err(format!("set mac/mtu/up on {name}")))?;
        let current = self.addresses_of(index, name).await?;
        for (net, msg) in current.iter() {
            let link_local =
                matches!(net.map(|n| n.addr()), Some(IpAddr::V6(a)) if a.is_unicast_link_local());
            if !link_local && !net.is_some_and(|n| addresses.contains(&n)) {
                self.handle
                    .address()
                    .del(msg.clone())
                    .execute()
                    .await
                    .map_err(link_err(format!("remove stale address from {name}")))?;
            }
        }
        for a in addresses {
            if current.iter().any(|(n, _)| *n == Some(*a)) {
                continue;
            }
            self.handle
                .address()
                .add(index, a.addr(), a.prefix_len())
                .execute()
                .await
                .map_err(link_err(format!("add address {a} to {name}")))?;
        }
        Ok(index)
    }

    /// The main table's routes through link `index` that have a gateway (the ones the node
    /// setup owns; the on-link route of the link's own subnet has none).
    pub async fn gateway_routes(&self, index: u32) -> Result<Vec<HostRoute>, LinkError> {
        let mut out = Vec::new();
        for (version, msg) in [
            (
                IpVersion::V4,
                RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            ),
            (
                IpVersion::V6,
                RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
            ),
        ] {
            let mut routes = self.handle.route().get(msg).execute();
            while let Some(r) = routes
                .try_next()
                .await
                .map_err(link_err(format!("list {version:?} routes")))?
            {
                if let Some(h) = host_route(&r, index) {
                    out.push(h);
                }
            }
        }
        Ok(out)
    }

    /// Adds or replaces `route` through link `index`.
    pub async fn replace_host_route(&self, index: u32, route: &HostRoute) -> Result<(), LinkError> {
        let msg = host_route_message(index, route)?;
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(link_err(format!(
                "add route {} via {}",
                route.dst, route.gateway
            )))
    }

    /// Removes `route` through link `index`; already gone is success.
    pub async fn delete_host_route(&self, index: u32, route: &HostRoute) -> Result<(), LinkError> {
        let msg = host_route_message(index, route)?;
        match self.handle.route().del(msg).execute().await {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code().abs() == libc::ESRCH => Ok(()),
            r => r.map_err(link_err(format!("delete route {}", route.dst))),
        }
    }

    /// What link `name` has now (MAC and addresses), `None` when there is no such link; what a
    /// CHECK compares with the ADD's result.
    pub async fn link_state(&self, name: &str) -> Result<Option<LinkState>, LinkError> {
        let r = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await;
        let link = match r {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(None),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code().abs() == libc::ENODEV => {
                return Ok(None)
            }
            Err(e) => return Err(link_err(format!("find link {name}"))(e)),
        };
        let mac = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(m) => Some(m.clone()),
            _ => None,
        });
        let index = link.header.index;
        let addresses = self
            .addresses_of(index, name)
            .await?
            .into_iter()
            .filter_map(|(net, _)| net)
            .collect();
        Ok(Some(LinkState {
            mac: mac.unwrap_or_default(),
            addresses,
        }))
    }

    /// Every link of the namespace with its MTU and addresses, in index order: what picking
    /// the tunnel interface looks at.
    pub async fn host_links(&self) -> Result<Vec<HostLink>, LinkError> {
        let mut links = Vec::new();
        let mut msgs = self.handle.link().get().execute();
        while let Some(m) = msgs.try_next().await.map_err(link_err("list links"))? {
            let name = m.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            let mtu = m.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(v) => Some(*v),
                _ => None,
            });
            if let Some(name) = name {
                links.push((m.header.index, name, mtu.unwrap_or(0)));
            }
        }
        let mut out = Vec::with_capacity(links.len());
        for (index, name, mtu) in links {
            let addresses = self
                .addresses_of(index, &name)
                .await?
                .into_iter()
                .filter_map(|(net, _)| net)
                .collect();
            out.push(HostLink {
                index,
                name,
                mtu,
                addresses,
            });
        }
        out.sort_by_key(|l| l.index);
        Ok(out)
    }

    /// The addresses on link `index` (named `name` for errors), each with its netlink message
    /// (which a removal needs); the network is `None` for a prefix length the kernel should
    /// never report.
    async fn addresses_of(
        &self,
        index: u32,
        name: &str,
    ) -> Result<Vec<(Option<IpNet>, AddressMessage)>, LinkError> {
        let mut out = Vec::new();
        let mut msgs = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(m) = msgs
            .try_next()
            .await
            .map_err(link_err(format!("list addresses of {name}")))?
        {
            let addr = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = addr {
                out.push((IpNet::new(ip, m.header.prefix_len).ok(), m));
            }
        }
        Ok(out)
    }

    /// The main table's unicast routes, IPv4 and IPv6, as (destination, gateway).
    pub async fn main_routes(&self) -> Result<Vec<(IpNet, Option<IpAddr>)>, LinkError> {
        let mut out = Vec::new();
        for msg in [
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ] {
            let mut routes = self.handle.route().get(msg).execute();
            while let Some(r) = routes.try_next().await.map_err(link_err("list routes"))? {
                if let Some(route) = main_route(&r) {
                    out.push(route);
                }
            }
        }
        Ok(out)
    }

    /// Removes the main table's default routes of the families asked for (upstream's
    /// `removeDefaultRoute`): an attachment whose routes carry the default route takes it over,
    /// and the delegating plugin (macvlan, …) could not add its own while one exists.
    pub async fn delete_default_routes(&self, v4: bool, v6: bool) -> Result<(), LinkError> {
        let mut found = Vec::new();
        for (wanted, msg) in [
            (v4, RouteMessageBuilder::<std::net::Ipv4Addr>::new().build()),
            (v6, RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()),
        ] {
            if !wanted {
                continue;
            }
            let mut routes = self.handle.route().get(msg).execute();
            while let Some(r) = routes.try_next().await.map_err(link_err("list routes"))? {
                if main_route(&r).is_some_and(|(dst, _)| dst.prefix_len() == 0) {
                    found.push(r);
                }
            }
        }
        for r in found {
            match self.handle.route().del(r).execute().await {
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code().abs() == libc::ESRCH => {}
                other => other.map_err(link_err("delete default route"))?,
            }
        }
        Ok(())
    }

    /// Turns TX checksum offload off on `name` (`ethtool -K <name> tx off`); the kernel drops
    /// the features that depend on it (TSO…) by itself.
    pub fn tx_checksum_off(&self, name: &str) -> Result<(), LinkError> {
        ethtool_set_tx_csum(&self.ioctl_socket, name, false)
            .map_err(io_err(format!("turn off tx checksum on {name}")))
    }
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// A main-table route as (destination, gateway); a default route has no destination attribute.
fn main_route(r: &RouteMessage) -> Option<(IpNet, Option<IpAddr>)> {
    if r.header.table != libc::RT_TABLE_MAIN {
        return None;
    }
    let (mut dst, mut gateway) = (None, None);
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = route_ip(d),
            RouteAttribute::Gateway(g) => gateway = route_ip(g),
            _ => {}
        }
    }
    let dst = match (dst, r.header.address_family) {
        (Some(d), _) => d,
        (None, AddressFamily::Inet) => IpAddr::from([0u8; 4]),
        (None, AddressFamily::Inet6) => IpAddr::from([0u16; 8]),
        (None, _) => return None,
    };
    Some((
        IpNet::new(dst, r.header.destination_prefix_length).ok()?,
        gateway,
    ))
}

/// A main-table route with a gateway through link `index`, as a [`HostRoute`].
fn host_route(r: &RouteMessage, index: u32) -> Option<HostRoute> {
    if r.header.table != libc::RT_TABLE_MAIN {
        return None;
    }
    let (mut dst, mut gateway, mut src, mut oif) = (None, None, None, None);
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = route_ip(d),
            RouteAttribute::Gateway(g) => gateway = route_ip(g),
            RouteAttribute::PrefSource(s) => src = route_ip(s),
            RouteAttribute::Oif(o) => oif = Some(*o),
            _ => {}
        }
    }
    if oif != Some(index) {
        return None;
    }
    let dst = IpNet::new(dst?, r.header.destination_prefix_length).ok()?;
    Some(HostRoute {
        dst,
        gateway: gateway?,
        src,
    })
}

fn host_route_message(index: u32, route: &HostRoute) -> Result<RouteMessage, LinkError> {
    let what = format!("route {} via {}", route.dst, route.gateway);
    let bad = |e| invalid_route(&what, e);
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(route.dst.addr(), route.dst.prefix_len())
        .map_err(bad)?
        .gateway(route.gateway)
        .map_err(bad)?;
    if let Some(src) = route.src {
        b = b.pref_source(src).map_err(bad)?;
    }
    Ok(b.output_interface(index).build())
}

/// A link as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// Hardware address (empty when the link has none).
    pub mac: Vec<u8>,
    /// Addresses with their prefix length.
    pub addresses: Vec<IpNet>,
}

/// A link of the node as [`Netns::host_links`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLink {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Its MTU.
    pub mtu: u32,
    /// Its addresses, in the kernel's order, with prefix lengths.
    pub addresses: Vec<IpNet>,
}

/// What the pod side of the veth becomes.
pub struct PodNic<'a> {
    /// Name of the veth end as created (`<id>_c`).
    pub current_name: &'a str,
    /// Name inside the pod (`eth0`).
    pub if_name: &'a str,
    /// MAC matching the logical switch port.
    pub mac: [u8; 6],
    /// MTU.
    pub mtu: u32,
    /// Addresses with their subnet prefix length.
    pub addresses: &'a [IpNet],
    /// Default gateways, one per family.
    pub gateways: &'a [IpAddr],
    /// Extra routes.
    pub routes: &'a [Route],
}

fn open_sockets() -> Result<Netns, LinkError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(io_err("open netlink socket"))?;
    tokio::spawn(conn);
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io_err("open ioctl socket")(io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    let ioctl_socket = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(Netns {
        handle,
        ioctl_socket,
    })
}

const ETHTOOL_STXCSUM: u32 = 0x0000_0017;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

fn ethtool_set_tx_csum(sock: &OwnedFd, name: &str, on: bool) -> io::Result<()> {
    let mut value = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: u32::from(on),
    };
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= ifr.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    // SAFETY: SIOCETHTOOL with a valid ifreq pointing at a live ethtool_value.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
