//! The gateway check an underlay pod's ADD ends with (upstream's `checkGatewayReady` and
//! `waitNetworkReady`): from inside the pod, its IPv4 gateway must answer ARP and its IPv6
//! gateway must answer ping, one try per second, up to [`MAX_ATTEMPTS`] tries while the pod
//! exists. A subnet with `disableGatewayCheck` gets one try whose outcome is ignored: the
//! ARP request still tells the physical gateway the pod's MAC.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::lbsvc::arp::Arp;
use crate::node::icmp;

/// Upstream's `gatewayCheckMaxRetry`.
pub const MAX_ATTEMPTS: u32 = 200;
/// How long one try waits for its answer.
const TRY_WAIT: Duration = Duration::from_secs(1);

/// What to check, from inside the pod's network namespace.
#[derive(Debug, Clone)]
pub struct GatewayCheck {
    /// The pod's network namespace.
    pub netns: PathBuf,
    /// The pod's interface.
    pub ifname: String,
    /// Its MAC (the ARP request's sender).
    pub mac: [u8; 6],
    /// (the pod's address, its gateway), per family.
    pub pairs: Vec<(IpAddr, IpAddr)>,
    /// Tries before giving up.
    pub attempts: u32,
}

impl GatewayCheck {
    /// The pairs of `addresses` and `gateways` of the same family.
    pub fn pairs(addresses: &[IpNet], gateways: &[IpAddr]) -> Vec<(IpAddr, IpAddr)> {
        gateways
            .iter()
            .filter_map(|gw| {
                addresses
                    .iter()
                    .find(|a| a.addr().is_ipv4() == gw.is_ipv4())
                    .map(|a| (a.addr(), *gw))
            })
            .collect()
    }
}

/// Runs the check on its own thread inside the pod's namespace; `cancel` ends it early (the
/// pod went away). Returns how many tries it took.
pub async fn run(check: GatewayCheck, cancel: Arc<AtomicBool>) -> Result<u32, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("gateway-check".into())
        .spawn(move || {
            let _ = tx.send(in_netns(&check, &cancel));
        })
        .map_err(|e| format!("gateway check thread: {e}"))?;
    rx.await
        .map_err(|_| "gateway check thread died".to_string())?
}

fn in_netns(check: &GatewayCheck, cancel: &AtomicBool) -> Result<u32, String> {
    let f = std::fs::File::open(&check.netns)
        .map_err(|e| format!("open netns {}: {e}", check.netns.display()))?;
    // SAFETY: setns on this dedicated thread only; it ends when the check does.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "setns {}: {}",
            check.netns.display(),
            std::io::Error::last_os_error()
        ));
    }
    let name = std::ffi::CString::new(check.ifname.as_str()).map_err(|e| e.to_string())?;
    // SAFETY: a valid NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(format!("interface {} not found in the pod", check.ifname));
    }
    let arp = Arp::open().map_err(|e| format!("ARP socket: {e}"))?;
    let mut tries = 0;
    for &(src, gw) in &check.pairs {
        loop {
            tries += 1;
            let answered = match (src, gw) {
                (IpAddr::V4(s), IpAddr::V4(g)) => arp_once(&arp, ifindex, check.mac, s, g)?,
                _ => icmp::echo(&check.ifname, gw, TRY_WAIT)
                    .map_err(|e| format!("ping {gw}: {e}"))?,
            };
            if answered {
                tracing::info!(address = %src, gateway = %gw, tries, "gateway answered");
                break;
            }
            if tries >= check.attempts {
                return Err(format!(
                    "network {src} with gateway {gw} is not ready for interface {} after {tries} checks",
                    check.ifname
                ));
            }
            if cancel.load(Ordering::Relaxed) {
                return Err(format!(
                    "gateway check of {gw} canceled after {tries} checks: the pod is gone"
                ));
            }
        }
    }
    Ok(tries)
}

fn arp_once(
    arp: &Arp,
    ifindex: u32,
    mac: [u8; 6],
    src: Ipv4Addr,
    gw: Ipv4Addr,
) -> Result<bool, String> {
    let answer = arp
        .resolve(ifindex, mac, src, gw, TRY_WAIT)
        .map_err(|e| format!("arping {gw}: {e}"))?;
    if let Some(m) = answer {
        // Who answered: the physical gateway's MAC, which an operator can check.
        tracing::info!(
            gateway = %gw,
            mac = %format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]),
            "gateway answered ARP"
        );
    }
    Ok(answer.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_gateway_is_checked_from_the_address_of_its_family() {
        let addrs: Vec<IpNet> = vec![
            "10.0.0.5/24".parse().unwrap(),
            "fd00::5/64".parse().unwrap(),
        ];
        let gws: Vec<IpAddr> = vec!["fd00::1".parse().unwrap(), "10.0.0.1".parse().unwrap()];
        assert_eq!(
            GatewayCheck::pairs(&addrs, &gws),
            vec![
                ("fd00::5".parse().unwrap(), "fd00::1".parse().unwrap()),
                ("10.0.0.5".parse().unwrap(), "10.0.0.1".parse().unwrap()),
            ]
        );
        assert!(GatewayCheck::pairs(&addrs[..1], &gws[..1]).is_empty());
    }
}
