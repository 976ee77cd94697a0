//! Moving a NIC's addresses and routes to its provider bridge and back (upstream's
//! `transferAddrsAndRoutes` and `removeProviderNic`), through rtnetlink. Each address and route
//! is re-sent as the kernel reported it, with only its link changed (and the attributes that
//! describe state rather than configuration dropped), so moving back restores it exactly:
//! prefix length, broadcast, flags, scope, protocol, metric, source, table, gateway.
//! Link-local addresses (169.254.0.0/16, fe80::/10) and gateway-less link-local routes stay
//! where they are, as upstream leaves them.

use std::collections::BTreeSet;
use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteScope,
};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

/// What a link is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its index.
    pub index: u32,
    /// Its MAC (empty when it has none).
    pub mac: Vec<u8>,
    /// Its MTU.
    pub mtu: u32,
    /// Whether it is administratively up.
    pub up: bool,
}

fn err(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> String {
    let what = what.into();
    move |e| format!("{what}: {e}")
}

fn missing(e: &rtnetlink::Error, code: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code().abs() == code)
}

/// Link `name`, `None` when there is none.
pub async fn link(h: &Handle, name: &str) -> Result<Option<Link>, String> {
    let r = h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await;
    let m = match r {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(None),
        Err(e) if missing(&e, libc::ENODEV) => return Ok(None),
        Err(e) => return Err(err(format!("find link {name}"))(e)),
    };
    let mut l = Link {
        index: m.header.index,
        mac: Vec::new(),
        mtu: 0,
        up: m.header.flags.contains(LinkFlags::Up),
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::Address(mac) => l.mac = mac.clone(),
            LinkAttribute::Mtu(v) => l.mtu = *v,
            _ => {}
        }
    }
    Ok(Some(l))
}

/// Brings link `index` up or down.
pub async fn set_up(h: &Handle, index: u32, up: bool) -> Result<(), String> {
    let b = LinkUnspec::new_with_index(index);
    let msg = if up { b.up() } else { b.down() }.build();
    h.link()
        .set(msg)
        .execute()
        .await
        .map_err(err(format!("set link {index} up={up}")))
}

fn address_ip(m: &AddressMessage) -> Option<IpAddr> {
    m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    })
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    }
}

/// The addresses of link `index` that move (not link-local), as the kernel reports them.
pub async fn addresses(h: &Handle, index: u32) -> Result<Vec<AddressMessage>, String> {
    let mut out = Vec::new();
    let mut msgs = h.address().get().set_link_index_filter(index).execute();
    while let Some(m) = msgs
        .try_next()
        .await
        .map_err(err(format!("list addresses of link {index}")))?
    {
        if m.header.index == index && address_ip(&m).is_some_and(|ip| !is_link_local(ip)) {
            out.push(m);
        }
    }
    Ok(out)
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The main table's routes through link `index` that move: not cached clones, and not the
/// gateway-less routes to link-local destinations.
pub async fn routes(h: &Handle, index: u32) -> Result<Vec<RouteMessage>, String> {
    let mut out = Vec::new();
    for msg in [
        RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
        RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
    ] {
        let mut all = h.route().get(msg).execute();
        while let Some(r) = all
            .try_next()
            .await
            .map_err(err(format!("list routes of link {index}")))?
        {
            let table = r
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(u32::from(r.header.table));
            let oif = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(o) => Some(*o),
                _ => None,
            });
            if table != u32::from(libc::RT_TABLE_MAIN)
                || oif != Some(index)
                || r.header.flags.contains(RouteFlags::Cloned)
            {
                continue;
            }
            let gw = r
                .attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Gateway(_)));
            let dst = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(d) => route_ip(d),
                _ => None,
            });
            if !gw && dst.is_some_and(is_link_local) {
                continue;
            }
            out.push(r);
        }
    }
    Ok(out)
}

/// The address as it is to be added to link `index`: its label (named after the old link)
/// and its lifetimes (state, not configuration) dropped.
fn readdress(m: &AddressMessage, index: u32) -> AddressMessage {
    let mut m = m.clone();
    m.header.index = index;
    m.attributes.retain(|a| {
        !matches!(
            a,
            AddressAttribute::Label(_) | AddressAttribute::CacheInfo(_)
        )
    });
    m
}

/// The route as it is to be added through link `index`: only its output link changes; what
/// the kernel reports as state (cache info, expiry, the dead/linkdown flags) is dropped.
fn reroute(r: &RouteMessage, index: u32) -> RouteMessage {
    let mut r = r.clone();
    r.header.flags &= RouteFlags::Onlink;
    r.attributes.retain(|a| {
        !matches!(
            a,
            RouteAttribute::CacheInfo(_) | RouteAttribute::Expires(_) | RouteAttribute::Oif(_)
        )
    });
    r.attributes.push(RouteAttribute::Oif(index));
    r
}

/// Host-scoped routes first, then link, site and universe ones (upstream's
/// `routeScopeOrders`): a gateway must be on-link before a route through it is added.
fn scope_rank(s: RouteScope) -> u8 {
    match s {
        RouteScope::Host => 0,
        RouteScope::Link => 1,
        RouteScope::Site => 2,
        _ => 3,
    }
}

/// Moves the addresses and routes of link `from` to link `to` (brought up before the routes
/// are added); returns how many addresses moved. The routes are read before any address is
/// removed, since removing an address takes the routes depending on it away.
pub async fn transfer(h: &Handle, from: u32, to: u32) -> Result<Moved, String> {
    let addrs = addresses(h, from).await?;
    let mut rts = routes(h, from).await?;
    rts.sort_by_key(|r| scope_rank(r.header.scope));
    for a in &addrs {
        match h.address().del(a.clone()).execute().await {
            Ok(()) => {}
            Err(e) if missing(&e, libc::EADDRNOTAVAIL) => {}
            Err(e) => {
                return Err(err(format!("remove {:?} from link {from}", address_ip(a)))(
                    e,
                ))
            }
        }
        let mut add = h.address().add(to, IpAddr::from([0u8; 4]), 0).replace();
        *add.message_mut() = readdress(a, to);
        add.execute()
            .await
            .map_err(err(format!("add {:?} to link {to}", address_ip(a))))?;
        tracing::info!(address = ?address_ip(a), from, to, "address moved");
    }
    set_up(h, to, true).await?;
    let mut moved = Vec::with_capacity(rts.len());
    for r in &rts {
        let added = reroute(r, to);
        h.route()
            .add(added.clone())
            .replace()
            .execute()
            .await
            .map_err(err(format!("add route {r:?} through link {to}")))?;
        moved.push(added);
        // A replace may have moved the old route or added a second one; the old one goes.
        match h.route().del(r.clone()).execute().await {
            Ok(()) => {}
            Err(e) if missing(&e, libc::ESRCH) => {}
            Err(e) => return Err(err(format!("remove route {r:?} from link {from}"))(e)),
        }
    }
    Ok(Moved {
        addresses: addrs.len(),
        routes: moved,
    })
}

/// Renames link `index` to `name` (upstream's `changeProviderNicName`): the kernel renames only
/// a link that is down, and taking it down drops its gateway routes (and IPv6 addresses), so
/// its addresses and routes are put back as they were once it is up again.
pub async fn rename(h: &Handle, index: u32, name: &str) -> Result<(), String> {
    let addrs = addresses(h, index).await?;
    let mut rts = routes(h, index).await?;
    rts.sort_by_key(|r| scope_rank(r.header.scope));
    set_up(h, index, false).await?;
    h.link()
        .set(
            LinkUnspec::new_with_index(index)
                .name(name.to_string())
                .build(),
        )
        .execute()
        .await
        .map_err(err(format!("rename link {index} to {name}")))?;
    set_up(h, index, true).await?;
    for a in &addrs {
        let mut add = h.address().add(index, IpAddr::from([0u8; 4]), 0).replace();
        *add.message_mut() = readdress(a, index);
        add.execute()
            .await
            .map_err(err(format!("add {:?} to link {name} again", address_ip(a))))?;
    }
    for r in &rts {
        h.route()
            .add(reroute(r, index))
            .replace()
            .execute()
            .await
            .map_err(err(format!("add route {r:?} through link {name} again")))?;
    }
    Ok(())
}

/// What [`transfer`] moved.
#[derive(Debug, Default)]
pub struct Moved {
    /// How many addresses.
    pub addresses: usize,
    /// The routes, as added through the new link.
    pub routes: Vec<RouteMessage>,
}

/// What identifies a route in the main table: family, destination, prefix length, gateway
/// and metric.
fn route_key(r: &RouteMessage) -> (u8, Option<IpAddr>, u8, Option<IpAddr>, Option<u32>) {
    let mut dst = None;
    let mut gw = None;
    let mut prio = None;
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = route_ip(d),
            RouteAttribute::Gateway(g) => gw = route_ip(g),
            RouteAttribute::Priority(p) => prio = Some(*p),
            _ => {}
        }
    }
    (
        u8::from(r.header.address_family),
        dst,
        r.header.destination_prefix_length,
        gw,
        prio,
    )
}

/// Adds again those of `routes` that link `index` no longer has (a link taken down and up
/// loses its gateway routes); returns how many.
pub async fn readd_missing(
    h: &Handle,
    index: u32,
    routes: &[RouteMessage],
) -> Result<usize, String> {
    if routes.is_empty() {
        return Ok(0);
    }
    let present: BTreeSet<_> = self::routes(h, index)
        .await?
        .iter()
        .map(route_key)
        .collect();
    let mut added = 0;
    for r in routes.iter().filter(|r| !present.contains(&route_key(r))) {
        h.route()
            .add(r.clone())
            .replace()
            .execute()
            .await
            .map_err(err(format!("add route {r:?} through link {index} again")))?;
        added += 1;
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rerouted_route_keeps_everything_but_its_link_and_state() {
        let mut r = RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .gateway(std::net::Ipv4Addr::new(172, 19, 0, 100))
            .output_interface(7)
            .priority(100)
            .build();
        r.header.flags = RouteFlags::Onlink | RouteFlags::Dead;
        r.attributes.push(RouteAttribute::Expires(5));
        let moved = reroute(&r, 9);
        assert_eq!(moved.header.flags, RouteFlags::Onlink);
        assert!(moved.attributes.contains(&RouteAttribute::Oif(9)));
        assert!(!moved.attributes.contains(&RouteAttribute::Oif(7)));
        assert!(moved.attributes.contains(&RouteAttribute::Priority(100)));
        assert!(!moved
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Expires(_))));
        assert_eq!(moved.header.scope, r.header.scope);
        assert_eq!(moved.header.protocol, r.header.protocol);
    }

    #[test]
    fn host_and_link_routes_come_first() {
        let mut s = [RouteScope::Universe, RouteScope::Link, RouteScope::Host];
        s.sort_by_key(|x| scope_rank(*x));
        assert_eq!(
            s,
            [RouteScope::Host, RouteScope::Link, RouteScope::Universe]
        );
    }
}
