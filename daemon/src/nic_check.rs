//! CHECK: whether a pod's NIC is still what an ADD made of it. The host end of its veth must
//! be plugged into br-int, bound to the pod's logical port and installed by ovn-controller; the
//! pod's interface must have the expected MAC and addresses, and the pod the expected routes.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use crate::handler::{if_name, HandlerError};
use crate::netdev::Netns;
use crate::network::{self, parse_mac, PodNetwork};
use crate::ovs::{Ovs, INTEGRATION_BRIDGE};
use crate::protocol::{CheckRequest, CniRequest, Route};

/// What a CHECK compares with, parsed from the shim's request.
#[derive(Debug, PartialEq, Eq)]
pub struct Expected {
    mac: Option<[u8; 6]>,
    addresses: Vec<IpNet>,
    routes: Vec<(IpNet, Option<IpAddr>)>,
}

impl Expected {
    /// Reads the shim's request: what the ADD's result (the runtime's `prevResult`) lists.
    pub fn parse(check: &CheckRequest) -> Result<Expected, String> {
        let mac = match check.mac.as_str() {
            "" => None,
            m => Some(parse_mac(m)?),
        };
        let addresses = check
            .addresses
            .iter()
            .map(|a| {
                a.parse::<IpNet>()
                    .map_err(|e| format!("address {a:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let routes = parse_routes(&check.routes)?;
        Ok(Expected {
            mac,
            addresses,
            routes,
        })
    }
}

impl Expected {
    /// What an ADD makes of `net`: its MAC, addresses and routes.
    pub fn of(net: &PodNetwork) -> Result<Expected, String> {
        Ok(Expected {
            mac: Some(net.mac),
            addresses: net.addresses.clone(),
            routes: parse_routes(&net.configured_routes())?,
        })
    }
}

/// Routes as (destination, gateway); as in ADD's routes, no destination is the default route
/// of the gateway's family.
fn parse_routes(routes: &[Route]) -> Result<Vec<(IpNet, Option<IpAddr>)>, String> {
    routes
        .iter()
        .map(|r| {
            let gw = match r.gw.as_str() {
                "" => None,
                g => Some(
                    g.parse::<IpAddr>()
                        .map_err(|e| format!("route gateway {g:?}: {e}"))?,
                ),
            };
            let dst = if r.dst.is_empty() {
                let any = match gw {
                    Some(IpAddr::V4(_)) => IpAddr::from([0u8; 4]),
                    Some(IpAddr::V6(_)) => IpAddr::from([0u16; 8]),
                    None => return Err("a route needs a destination or a gateway".into()),
                };
                IpNet::new(any, 0).map_err(|e| e.to_string())?
            } else {
                r.dst
                    .parse::<IpNet>()
                    .map_err(|e| format!("route destination {:?}: {e}", r.dst))?
                    .trunc()
            };
            Ok((dst, gw))
        })
        .collect()
}

/// Compares the NIC of `req` with `expected`; the first difference found is the error.
/// `provider` is the one whose port the NIC is bound to (the request's, or with the
/// interface name appended, see [`network::effective_provider`]).
pub async fn verify(
    ovs: &Ovs,
    req: &CniRequest,
    provider: &str,
    expected: &Expected,
) -> Result<(), HandlerError> {
    let ifname = if_name(req);
    let mismatch =
        |what: String| HandlerError::Mismatch(format!("{ifname} in {}: {what}", req.net_ns));
    let (host, _) = network::veth_names(&req.container_id, ifname)
        .map_err(|e| HandlerError::BadRequest(e.to_string()))?;
    let want_id = kube_ovn_common::names::pod_lsp(&req.pod_name, &req.pod_namespace, provider);
    match ovs.plugged(INTEGRATION_BRIDGE, &host) {
        None => return Err(mismatch(format!("no port {host} on {INTEGRATION_BRIDGE}"))),
        Some(p) if p.iface_id != want_id => {
            return Err(mismatch(format!(
                "port {host} is bound to {:?}, not {want_id:?}",
                p.iface_id
            )))
        }
        Some(p) if !p.installed => {
            return Err(mismatch(format!(
                "port {host} is not bound by ovn-controller (no ovn-installed)"
            )))
        }
        Some(_) => {}
    }
    let pod = Netns::open(Path::new(&req.net_ns)).await?;
    let Some(link) = pod.link_state(ifname).await? else {
        return Err(mismatch("no such interface".into()));
    };
    if let Some(mac) = expected.mac {
        if link.mac != mac {
            return Err(mismatch(format!(
                "MAC is {}, the result has {}",
                link.mac
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
                network::format_mac(&mac)
            )));
        }
    }
    if let Some(a) = expected
        .addresses
        .iter()
        .find(|a| !link.addresses.contains(a))
    {
        return Err(mismatch(format!("address {a} is missing")));
    }
    let routes = pod.main_routes().await?;
    if let Some((dst, gw)) = expected.routes.iter().find(|(dst, gw)| {
        !routes
            .iter()
            .any(|(d, g)| d == dst && (gw.is_none() || g == gw))
    }) {
        let via = gw.map_or(String::new(), |g| format!(" via {g}"));
        return Err(mismatch(format!("route {dst}{via} is missing")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_requests_parse_into_what_is_compared() {
        let check = CheckRequest {
            mac: "00:00:00:AA:bb:01".into(),
            addresses: vec!["10.16.0.5/16".into(), "fd00::5/112".into()],
            routes: vec![
                Route {
                    dst: "0.0.0.0/0".into(),
                    gw: "10.16.0.1".into(),
                },
                Route {
                    dst: "10.16.0.9/16".into(),
                    gw: String::new(),
                },
                Route {
                    dst: String::new(),
                    gw: "fd00::1".into(),
                },
            ],
            ..CheckRequest::default()
        };
        let e = Expected::parse(&check).unwrap();
        assert_eq!(e.mac, Some([0, 0, 0, 0xaa, 0xbb, 1]));
        assert_eq!(e.addresses[1], "fd00::5/112".parse::<IpNet>().unwrap());
        assert_eq!(
            e.routes,
            [
                (
                    "0.0.0.0/0".parse().unwrap(),
                    Some("10.16.0.1".parse().unwrap())
                ),
                ("10.16.0.0/16".parse().unwrap(), None),
                ("::/0".parse().unwrap(), Some("fd00::1".parse().unwrap())),
            ]
        );
        for bad in [
            CheckRequest {
                mac: "nope".into(),
                ..CheckRequest::default()
            },
            CheckRequest {
                addresses: vec!["10.16.0.5".into()],
                ..CheckRequest::default()
            },
            CheckRequest {
                routes: vec![Route::default()],
                ..CheckRequest::default()
            },
        ] {
            assert!(Expected::parse(&bad).is_err(), "{bad:?}");
        }
    }
}
