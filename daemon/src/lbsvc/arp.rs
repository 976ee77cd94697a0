//! The ARP request upstream's script sends after giving `net1` the LB address (`arping -s
//! <lb-ip> <gateway>`): the attachment gateway, and whoever else on the segment had the address
//! cached, learn the pod's MAC at once — a recreated pod's macvlan NIC has a new one.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const ETH_P_ARP: u16 = 0x0806;

/// The ARP payload (Ethernet/IPv4 request): who has `target`, tell `ip` at `mac`.
pub fn request(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes());
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&1u16.to_be_bytes());
    p[8..14].copy_from_slice(&mac);
    p[14..18].copy_from_slice(&ip.octets());
    p[24..28].copy_from_slice(&target.octets());
    p
}

/// The sender's MAC when `packet` (an ARP payload) is a reply from `from`.
pub fn reply_from(packet: &[u8], from: Ipv4Addr) -> Option<[u8; 6]> {
    if packet.len() < 28 || packet[6..8] != 2u16.to_be_bytes() || packet[14..18] != from.octets() {
        return None;
    }
    packet[8..14].try_into().ok()
}

/// A packet socket for ARP, opened in the calling thread's network namespace.
pub struct Arp {
    fd: OwnedFd,
}

impl Arp {
    /// Opens the socket.
    pub fn open() -> io::Result<Arp> {
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ARP.to_be()),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor nobody else owns.
        Ok(Arp {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Broadcasts [`request`] on the link `ifindex`.
    pub fn send(&self, ifindex: u32, payload: &[u8; 28]) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set below.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ARP.to_be();
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        // SAFETY: payload and addr outlive the call; the sizes are theirs.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                payload.as_ptr().cast(),
                payload.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Asks for `target` on link `ifindex` as `mac`/`ip` and waits up to `timeout` for its
    /// reply (upstream's `ArpResolve`, one try); `None` when none came.
    pub fn resolve(
        &self,
        ifindex: u32,
        mac: [u8; 6],
        ip: Ipv4Addr,
        target: Ipv4Addr,
        timeout: Duration,
    ) -> io::Result<Option<[u8; 6]>> {
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: a valid timeval of the declared size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        self.send(ifindex, &request(mac, ip, target))?;
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 128];
        while Instant::now() < deadline {
            // SAFETY: receiving into a buffer of the given length; the source is ignored.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    continue;
                }
                return Err(e);
            }
            if let Some(m) = reply_from(&buf[..n as usize], target) {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let p = request(
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(172, 18, 0, 18),
            Ipv4Addr::new(172, 18, 0, 1),
        );
        assert_eq!(&p[..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&p[8..18], &[2, 0, 0, 0, 0, 1, 172, 18, 0, 18]);
        assert_eq!(&p[18..24], &[0; 6]);
        assert_eq!(&p[24..], &[172, 18, 0, 1]);
    }

    #[test]
    fn replies_are_matched_by_operation_and_sender() {
        let gw = Ipv4Addr::new(172, 18, 0, 1);
        let mut reply = request([2, 0, 0, 0, 0, 9], gw, Ipv4Addr::new(172, 18, 0, 18));
        assert_eq!(reply_from(&reply, gw), None, "a request is no reply");
        reply[6..8].copy_from_slice(&2u16.to_be_bytes());
        assert_eq!(reply_from(&reply, gw), Some([2, 0, 0, 0, 0, 9]));
        assert_eq!(reply_from(&reply, Ipv4Addr::new(172, 18, 0, 2)), None);
        assert_eq!(reply_from(&reply[..20], gw), None);
    }
}
