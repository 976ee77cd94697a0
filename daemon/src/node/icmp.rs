//! One ICMP echo, with a raw socket (no `ping` binary): how the daemon learns that the join
//! gateway answers before it reports the node's network available, how an underlay pod's ADD
//! checks its gateway, and what kube-ovn-pinger measures round-trip times with.

use std::io;
use std::mem::size_of;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Sequence numbers of this process's echo requests.
static SEQUENCE: AtomicU16 = AtomicU16::new(1);

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request; IPv6's checksum is left to the kernel (it covers a pseudo-header).
pub fn echo_request(v4: bool, id: u16, seq: u16) -> Vec<u8> {
    let kind = if v4 { ECHO_REQUEST_V4 } else { ECHO_REQUEST_V6 };
    let mut p = vec![kind, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"kube-ovn-daemon");
    if v4 {
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// Whether `packet` (IPv4: with its IP header, as raw sockets deliver it) is the reply to
/// the request with `id` and `seq`.
pub fn is_reply(v4: bool, packet: &[u8], id: u16, seq: u16) -> bool {
    let icmp = if v4 {
        let Some(first) = packet.first() else {
            return false;
        };
        packet.get(usize::from(first & 0x0f) * 4..).unwrap_or(&[])
    } else {
        packet
    };
    let reply = if v4 { ECHO_REPLY_V4 } else { ECHO_REPLY_V6 };
    icmp.len() >= 8
        && icmp[0] == reply
        && icmp[4..6] == id.to_be_bytes()
        && icmp[6..8] == seq.to_be_bytes()
}

fn os<T: PartialOrd + Default>(rc: T) -> io::Result<T> {
    if rc < T::default() {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn sockaddr(ip: IpAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; zeroed is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match ip {
        IpAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
            size_of::<libc::sockaddr_in>()
        }
        IpAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = a.octets();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// Sends one echo request to `target` out of interface `dev` and waits up to `timeout` for
/// the matching reply. Blocking: call it from a blocking-capable thread.
pub fn echo(dev: &str, target: IpAddr, timeout: Duration) -> io::Result<bool> {
    echo_rtt(Some(dev), target, timeout).map(|rtt| rtt.is_some())
}

/// Sends one echo request to `target` (out of `dev` when given, else as routed) and returns
/// the round-trip time of its reply, or `None` when none came within `timeout`. Blocking.
pub fn echo_rtt(
    dev: Option<&str>,
    target: IpAddr,
    timeout: Duration,
) -> io::Result<Option<Duration>> {
    let v4 = target.is_ipv4();
    let (domain, proto) = if v4 {
        (libc::AF_INET, libc::IPPROTO_ICMP)
    } else {
        (libc::AF_INET6, libc::IPPROTO_ICMPV6)
    };
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = os(unsafe { libc::socket(domain, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) })?;
    // SAFETY: fd is fresh and owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = sock.as_raw_fd();
    if let Some(dev) = dev {
        // SAFETY: the option value points at `dev`'s bytes for their length.
        os(unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                dev.as_ptr().cast(),
                dev.len() as libc::socklen_t,
            )
        })?;
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: a valid timeval of the declared size.
    os(unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;
    let id = (std::process::id() & 0xffff) as u16;
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let request = echo_request(v4, id, seq);
    let (addr, len) = sockaddr(target);
    // SAFETY: buffer and address are valid for the lengths given.
    os(unsafe {
        libc::sendto(
            raw,
            request.as_ptr().cast(),
            request.len(),
            0,
            (&addr as *const libc::sockaddr_storage).cast(),
            len,
        )
    })?;
    let sent = Instant::now();
    let deadline = sent + timeout;
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        // SAFETY: receiving into a buffer of the given length; the source is ignored.
        let n = unsafe {
            libc::recvfrom(
                raw,
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
        if is_reply(v4, &buf[..n as usize], id, seq) {
            return Ok(Some(sent.elapsed()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_request_verifies_to_zero() {
        let p = echo_request(true, 0x1234, 7);
        assert_eq!(p[0], ECHO_REQUEST_V4);
        assert_eq!(checksum(&p), 0);
        // RFC 1071's example words.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }

    #[test]
    fn replies_are_matched_by_type_id_and_sequence() {
        let mut ip = vec![0x45u8; 1];
        ip.extend([0u8; 19]);
        let mut reply = echo_request(true, 9, 3);
        reply[0] = ECHO_REPLY_V4;
        let mut pkt = ip.clone();
        pkt.extend(&reply);
        assert!(is_reply(true, &pkt, 9, 3));
        assert!(!is_reply(true, &pkt, 9, 4));
        let mut own = ip;
        own.extend(echo_request(true, 9, 3));
        assert!(
            !is_reply(true, &own, 9, 3),
            "our own request is not a reply"
        );
        let mut v6 = echo_request(false, 9, 3);
        v6[0] = ECHO_REPLY_V6;
        assert!(is_reply(false, &v6, 9, 3));
        assert!(!is_reply(true, &[], 9, 3));
    }
}
