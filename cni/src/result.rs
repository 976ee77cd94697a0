//! Turning the daemon's answer into what an ADD reports, independent of spec version
//! (see [`crate::render`] for the versioned JSON). Addresses and routes are parsed here so a
//! malformed answer fails the ADD with a clear message instead of reaching the runtime as a
//! result it cannot read.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::{CniError, ErrorCode};
use crate::netconf::Mode;
use crate::protocol::{CniResponse, Dns};

/// The interface an ADD created inside the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Name inside the pod.
    pub name: String,
    /// MAC, empty when unknown.
    pub mac: String,
    /// MTU when the daemon set one.
    pub mtu: Option<u32>,
    /// `CNI_NETNS`.
    pub sandbox: String,
}

/// One address with its subnet's prefix length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The address in CIDR notation (host bits kept).
    pub address: IpNet,
    /// Gateway of this address's subnet when the NIC carries the default route.
    pub gateway: Option<IpAddr>,
}

/// One route in the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// Destination network (host bits cleared).
    pub dst: IpNet,
    /// Next hop, none for on-link.
    pub gw: Option<IpAddr>,
}

/// What one ADD of ours configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddResult {
    /// The pod NIC; none in IPAM mode, where the delegating plugin owns the interface and
    /// the spec's abbreviated IPAM result has no `interfaces`.
    pub interface: Option<Interface>,
    /// Addresses, IPv4 first as the daemon orders them.
    pub ips: Vec<Address>,
    /// Routes.
    pub routes: Vec<RouteEntry>,
    /// DNS settings.
    pub dns: Dns,
}

impl AddResult {
    /// Builds the result from the daemon's answer. Like upstream: the interface is named by
    /// `nicname` (falling back to `CNI_IFNAME`) and lives in `netns`; routes are the
    /// daemon's, or when it sent none, a default route per address that has a gateway.
    pub fn from_response(
        resp: &CniResponse,
        mode: Mode,
        ifname: &str,
        netns: &str,
    ) -> Result<AddResult, CniError> {
        let ips = resp
            .ips
            .iter()
            .map(|c| {
                let ip = parse_ip("ip", &c.ip)?;
                let cidr: IpNet = c
                    .cidr
                    .parse()
                    .map_err(|e| bad_answer(format!("cidr {:?}: {e}", c.cidr)))?;
                if ip.is_ipv4() != cidr.addr().is_ipv4() {
                    return Err(bad_answer(format!(
                        "ip {} is not of cidr {}'s family",
                        c.ip, c.cidr
                    )));
                }
                let address = IpNet::new(ip, cidr.prefix_len()).expect("prefix of a parsed CIDR");
                let gateway = optional_ip("gateway", &c.gateway)?;
                Ok(Address { address, gateway })
            })
            .collect::<Result<Vec<_>, CniError>>()?;

        let routes = if resp.routes.is_empty() {
            ips.iter()
                .filter_map(|a| {
                    a.gateway.map(|gw| RouteEntry {
                        dst: default_net(gw),
                        gw: Some(gw),
                    })
                })
                .collect()
        } else {
            resp.routes
                .iter()
                .map(|r| {
                    let gw = optional_ip("route gw", &r.gw)?;
                    let dst = if r.dst.is_empty() {
                        default_net(
                            gw.ok_or_else(|| bad_answer("a route has neither dst nor gw".into()))?,
                        )
                    } else {
                        r.dst
                            .parse::<IpNet>()
                            .map_err(|e| bad_answer(format!("route dst {:?}: {e}", r.dst)))?
                            .trunc()
                    };
                    Ok(RouteEntry { dst, gw })
                })
                .collect::<Result<Vec<_>, CniError>>()?
        };

        let interface = (mode == Mode::Plugin).then(|| Interface {
            name: if resp.nic_name.is_empty() {
                ifname.to_string()
            } else {
                resp.nic_name.clone()
            },
            mac: resp.mac_address.clone(),
            mtu: u32::try_from(resp.mtu).ok().filter(|m| *m > 0),
            sandbox: netns.to_string(),
        });

        Ok(AddResult {
            interface,
            ips,
            routes,
            dns: resp.dns.clone(),
        })
    }
}

fn bad_answer(details: String) -> CniError {
    CniError::new(
        ErrorCode::Internal,
        "failed to assign address: invalid kube-ovn-daemon answer",
        details,
    )
}

fn parse_ip(what: &str, s: &str) -> Result<IpAddr, CniError> {
    s.parse()
        .map_err(|e| bad_answer(format!("{what} {s:?}: {e}")))
}

fn optional_ip(what: &str, s: &str) -> Result<Option<IpAddr>, CniError> {
    if s.is_empty() {
        Ok(None)
    } else {
        parse_ip(what, s).map(Some)
    }
}

fn default_net(of: IpAddr) -> IpNet {
    let any = match of {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    };
    IpNet::new(any, 0).expect("prefix 0 is valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{IpConfig, Route};

    fn ipc(protocol: &str, ip: &str, cidr: &str, gateway: &str) -> IpConfig {
        IpConfig {
            protocol: protocol.into(),
            ip: ip.into(),
            cidr: cidr.into(),
            gateway: gateway.into(),
        }
    }

    fn dual_stack() -> CniResponse {
        CniResponse {
            ips: vec![
                ipc("IPv4", "10.16.0.5", "10.16.0.0/16", "10.16.0.1"),
                ipc("IPv6", "fd00:10:16::5", "fd00:10:16::/64", "fd00:10:16::1"),
            ],
            mac_address: "00:00:00:5e:11:ab".into(),
            mtu: 1400,
            nic_name: "eth0".into(),
            ..Default::default()
        }
    }

    #[test]
    fn addresses_interface_and_default_routes() {
        let r = AddResult::from_response(&dual_stack(), Mode::Plugin, "eth0", "/ns").unwrap();
        assert_eq!(
            r.interface,
            Some(Interface {
                name: "eth0".into(),
                mac: "00:00:00:5e:11:ab".into(),
                mtu: Some(1400),
                sandbox: "/ns".into()
            })
        );
        assert_eq!(r.ips[0].address.to_string(), "10.16.0.5/16");
        assert_eq!(r.ips[1].address.to_string(), "fd00:10:16::5/64");
        assert_eq!(r.ips[1].gateway, Some("fd00:10:16::1".parse().unwrap()));
        let routes: Vec<String> = r
            .routes
            .iter()
            .map(|r| format!("{} via {}", r.dst, r.gw.unwrap()))
            .collect();
        assert_eq!(
            routes,
            ["0.0.0.0/0 via 10.16.0.1", "::/0 via fd00:10:16::1"]
        );
    }

    #[test]
    fn daemon_routes_replace_default_routes() {
        let mut resp = dual_stack();
        resp.routes = vec![
            Route {
                dst: "192.168.0.101/24".into(),
                gw: "10.16.0.254".into(),
            },
            Route {
                dst: String::new(),
                gw: "fd00:10:16::fe".into(),
            },
            Route {
                dst: "10.99.0.0/16".into(),
                gw: String::new(),
            },
        ];
        let r = AddResult::from_response(&resp, Mode::Plugin, "eth0", "/ns").unwrap();
        let got: Vec<(String, Option<IpAddr>)> =
            r.routes.iter().map(|r| (r.dst.to_string(), r.gw)).collect();
        assert_eq!(
            got,
            [
                (
                    "192.168.0.0/24".to_string(),
                    Some("10.16.0.254".parse().unwrap())
                ),
                ("::/0".to_string(), Some("fd00:10:16::fe".parse().unwrap())),
                ("10.99.0.0/16".to_string(), None),
            ]
        );
    }

    #[test]
    fn ipam_mode_has_no_interface_and_no_gateway_means_no_route() {
        let resp = CniResponse {
            ips: vec![ipc("IPv4", "172.18.0.7", "172.18.0.0/16", "")],
            ..Default::default()
        };
        let r = AddResult::from_response(&resp, Mode::Ipam, "net1", "/ns").unwrap();
        assert_eq!(r.interface, None);
        assert_eq!(r.ips[0].gateway, None);
        assert!(r.routes.is_empty());
    }

    #[test]
    fn missing_nicname_and_mtu_fall_back() {
        let resp = CniResponse {
            ips: vec![ipc("IPv4", "10.16.0.5", "10.16.0.0/16", "")],
            mtu: 0,
            ..Default::default()
        };
        let i = AddResult::from_response(&resp, Mode::Plugin, "net2", "/ns")
            .unwrap()
            .interface
            .unwrap();
        assert_eq!((i.name.as_str(), i.mtu), ("net2", None));
    }

    #[test]
    fn malformed_answers_are_internal_errors() {
        let cases = [
            vec![ipc("IPv4", "10.16.0.300", "10.16.0.0/16", "")],
            vec![ipc("IPv4", "10.16.0.5", "10.16.0.0", "")],
            vec![ipc("IPv4", "10.16.0.5", "fd00::/64", "")],
            vec![ipc("IPv4", "10.16.0.5", "10.16.0.0/16", "gw")],
        ];
        for ips in cases {
            let resp = CniResponse {
                ips: ips.clone(),
                ..Default::default()
            };
            let e = AddResult::from_response(&resp, Mode::Plugin, "eth0", "/ns").unwrap_err();
            assert_eq!(e.code, ErrorCode::Internal, "{ips:?}");
        }
        let resp = CniResponse {
            routes: vec![Route::default()],
            ..dual_stack()
        };
        let e = AddResult::from_response(&resp, Mode::Plugin, "eth0", "/ns").unwrap_err();
        assert_eq!(e.details, "a route has neither dst nor gw");
    }
}
