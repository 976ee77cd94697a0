//! Host routes to the overlay through `ovn0` (pure): what the node should have and the
//! difference to what the kernel holds, so only the changes are written.

use std::net::IpAddr;

use ipnet::IpNet;

/// A route `dst via gateway dev ovn0 src src`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostRoute {
    /// Destination subnet.
    pub dst: IpNet,
    /// The join gateway.
    pub gateway: IpAddr,
    /// Preferred source: the node's InternalIP of the family, as upstream sets it.
    pub src: Option<IpAddr>,
}

/// Routes for every overlay CIDR via the join gateway of its family, with the node IP of that
/// family as source; CIDRs of a family without a join gateway get none.
pub fn desired(overlay: &[IpNet], gateways: &[IpAddr], node_ips: &[IpAddr]) -> Vec<HostRoute> {
    let mut out: Vec<HostRoute> = overlay
        .iter()
        .filter_map(|dst| {
            let v4 = dst.addr().is_ipv4();
            let gateway = *gateways.iter().find(|g| g.is_ipv4() == v4)?;
            let src = node_ips.iter().copied().find(|ip| ip.is_ipv4() == v4);
            Some(HostRoute {
                dst: *dst,
                gateway,
                src,
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What to change so that `existing` (the gatewayed routes on `ovn0`) becomes `wanted`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RouteDiff {
    /// Routes to add (or replace: same destination, other gateway or source).
    pub add: Vec<HostRoute>,
    /// Routes whose destination is no longer wanted.
    pub remove: Vec<HostRoute>,
}

/// Compares by the whole route for additions and by destination for removals, so a changed
/// gateway or source is one replace rather than a delete and an add.
pub fn diff(existing: &[HostRoute], wanted: &[HostRoute]) -> RouteDiff {
    RouteDiff {
        add: wanted
            .iter()
            .filter(|w| !existing.contains(w))
            .copied()
            .collect(),
        remove: existing
            .iter()
            .filter(|e| !wanted.iter().any(|w| w.dst == e.dst))
            .copied()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn route(dst: &str, gw: &str, src: &str) -> HostRoute {
        HostRoute {
            dst: net(dst),
            gateway: ip(gw),
            src: Some(ip(src)),
        }
    }

    #[test]
    fn each_cidr_goes_via_the_gateway_of_its_family() {
        let r = desired(
            &[
                net("10.16.0.0/16"),
                net("fd00:10:16::/112"),
                net("10.17.0.0/16"),
            ],
            &[ip("100.64.0.1")],
            &[ip("172.18.0.2")],
        );
        assert_eq!(
            r,
            [
                route("10.16.0.0/16", "100.64.0.1", "172.18.0.2"),
                route("10.17.0.0/16", "100.64.0.1", "172.18.0.2")
            ]
        );
    }

    #[test]
    fn diff_adds_missing_replaces_changed_and_removes_stale() {
        let existing = [
            route("10.16.0.0/16", "100.64.0.1", "172.18.0.2"),
            route("10.17.0.0/16", "100.64.0.9", "172.18.0.2"),
            route("10.99.0.0/16", "100.64.0.1", "172.18.0.2"),
        ];
        let wanted = [
            route("10.16.0.0/16", "100.64.0.1", "172.18.0.2"),
            route("10.17.0.0/16", "100.64.0.1", "172.18.0.2"),
            route("10.18.0.0/16", "100.64.0.1", "172.18.0.2"),
        ];
        let d = diff(&existing, &wanted);
        assert_eq!(d.add, [wanted[1], wanted[2]]);
        assert_eq!(d.remove, [existing[2]]);
        assert_eq!(diff(&wanted, &wanted), RouteDiff::default());
    }
}
