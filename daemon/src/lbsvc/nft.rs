//! The lb-svc pod's NAT as one nftables table, written in one atomic netlink batch.
//!
//! Why hand-made nfnetlink messages: kube-ovn-rs may not exec `iptables`/`nft`; `rustables`
//! is GPL-3.0 (this project is Apache-2.0) and `nftnl` binds the C libnftnl/libmnl the image
//! does not ship. The subset needed — a table, two NAT base chains and rules made of payload,
//! meta, cmp, immediate, nat and masq expressions — is a few attribute encodings, the same
//! bytes `nft --debug=netlink` shows for the equivalent rules.
//!
//! A converge sends `NEWTABLE, DELTABLE, NEWTABLE, chains, rules` inside one batch: the kernel
//! applies it whole or not at all, so the table never exists half-written and a rule no longer
//! wanted disappears with the old table.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The table's name (in family `ip` and, for IPv6 Services, `ip6`).
pub const TABLE: &str = "kube-ovn-lb-svc";
/// The DNAT chain (hook prerouting, priority dstnat).
pub const PREROUTING: &str = "prerouting";
/// The masquerade chain (hook postrouting, priority srcnat).
pub const POSTROUTING: &str = "postrouting";

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 0x2;
const NLA_F_NESTED: u16 = 0x8000;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_POST_ROUTING: u32 = 4;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;
const NFT_META_L4PROTO: u32 = 16;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_NAT_DNAT: u32 = 1;
/// NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED.
const NAT_FLAGS: u32 = 0x3;

/// One DNAT: traffic to `lb_ip:port` over `proto` (an IP protocol number) goes to
/// `to_ip:to_port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dnat {
    /// The LoadBalancer address.
    pub lb_ip: IpAddr,
    /// The Service port.
    pub port: u16,
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP).
    pub proto: u8,
    /// The ClusterIP.
    pub to_ip: IpAddr,
    /// The port on the ClusterIP.
    pub to_port: u16,
}

/// The NAT of one address family: DNATs and the destinations masqueraded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// DNAT rules (all of one family).
    pub dnats: Vec<Dnat>,
    /// Destinations whose traffic leaves with the pod's own source address.
    pub masquerade: Vec<IpAddr>,
}

/// Attributes being built: type/length/value with netlink's 4-byte alignment.
#[derive(Default)]
struct Attrs(Vec<u8>);

impl Attrs {
    fn put(&mut self, ty: u16, value: &[u8]) -> &mut Self {
        let len = 4 + value.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }
    fn str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.put(ty, &v)
    }
    fn be32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.put(ty, &v.to_be_bytes())
    }
    fn nest(&mut self, ty: u16, inner: &Attrs) -> &mut Self {
        self.put(ty | NLA_F_NESTED, &inner.0)
    }
}

/// `NFTA_DATA_VALUE` inside a nest of type `ty`.
fn data(a: &mut Attrs, ty: u16, value: &[u8]) {
    let mut d = Attrs::default();
    d.put(1, value);
    a.nest(ty, &d);
}

/// One expression: `NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA }`.
fn expr(list: &mut Attrs, name: &str, body: Option<Attrs>) {
    let mut e = Attrs::default();
    e.str(1, name);
    if let Some(b) = body {
        e.nest(2, &b);
    }
    list.nest(1, &e);
}

fn payload(list: &mut Attrs, base: u32, offset: u32, len: u32) {
    let mut b = Attrs::default();
    b.be32(1, NFT_REG_1)
        .be32(2, base)
        .be32(3, offset)
        .be32(4, len);
    expr(list, "payload", Some(b));
}

fn cmp_eq(list: &mut Attrs, value: &[u8]) {
    let mut b = Attrs::default();
    b.be32(1, NFT_REG_1).be32(2, 0);
    data(&mut b, 3, value);
    expr(list, "cmp", Some(b));
}

fn immediate(list: &mut Attrs, reg: u32, value: &[u8]) {
    let mut b = Attrs::default();
    b.be32(1, reg);
    data(&mut b, 2, value);
    expr(list, "immediate", Some(b));
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// `ip[6] daddr == ip`.
fn daddr_is(list: &mut Attrs, ip: &IpAddr) {
    let (offset, len) = if ip.is_ipv4() { (16, 4) } else { (24, 16) };
    payload(list, NFT_PAYLOAD_NETWORK_HEADER, offset, len);
    cmp_eq(list, &ip_bytes(ip));
}

fn dnat_expressions(d: &Dnat) -> Attrs {
    let mut l = Attrs::default();
    daddr_is(&mut l, &d.lb_ip);
    let mut meta = Attrs::default();
    meta.be32(2, NFT_META_L4PROTO).be32(1, NFT_REG_1);
    expr(&mut l, "meta", Some(meta));
    cmp_eq(&mut l, &[d.proto]);
    payload(&mut l, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
    cmp_eq(&mut l, &d.port.to_be_bytes());
    immediate(&mut l, NFT_REG_1, &ip_bytes(&d.to_ip));
    immediate(&mut l, NFT_REG_2, &d.to_port.to_be_bytes());
    let mut nat = Attrs::default();
    let family = if d.to_ip.is_ipv4() {
        NFPROTO_IPV4
    } else {
        NFPROTO_IPV6
    };
    nat.be32(1, NFT_NAT_DNAT)
        .be32(2, u32::from(family))
        .be32(3, NFT_REG_1)
        .be32(4, NFT_REG_1)
        .be32(5, NFT_REG_2)
        .be32(6, NFT_REG_2)
        .be32(7, NAT_FLAGS);
    expr(&mut l, "nat", Some(nat));
    l
}

fn masquerade_expressions(ip: &IpAddr) -> Attrs {
    let mut l = Attrs::default();
    daddr_is(&mut l, ip);
    expr(&mut l, "masq", None);
    l
}

/// A batch of nfnetlink messages.
struct Batch {
    buf: Vec<u8>,
    seq: u32,
    acked: usize,
}

impl Batch {
    fn msg(&mut self, ty: u16, flags: u16, family: u8, res_id: u16, attrs: &Attrs) {
        let len = 16 + 4 + attrs.0.len();
        self.seq += 1;
        if flags & NLM_F_ACK != 0 {
            self.acked += 1;
        }
        self.buf.extend_from_slice(&(len as u32).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.push(family);
        self.buf.push(0);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        self.buf.extend_from_slice(&attrs.0);
    }
    fn nft(&mut self, msg: u16, flags: u16, family: u8, attrs: &Attrs) {
        self.msg(
            (NFNL_SUBSYS_NFTABLES << 8) | msg,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            family,
            0,
            attrs,
        );
    }
}

/// The messages that make the table of `family` hold exactly `rules` (an empty set still
/// leaves the table and its chains, empty).
fn table_messages(b: &mut Batch, family: u8, rules: &Ruleset) {
    let mut table = Attrs::default();
    table.str(1, TABLE);
    b.nft(NFT_MSG_NEWTABLE, NLM_F_CREATE, family, &table);
    b.nft(NFT_MSG_DELTABLE, 0, family, &table);
    b.nft(NFT_MSG_NEWTABLE, NLM_F_CREATE, family, &table);
    for (chain, hook, prio) in [
        (PREROUTING, NF_INET_PRE_ROUTING, -100i32),
        (POSTROUTING, NF_INET_POST_ROUTING, 100),
    ] {
        let mut h = Attrs::default();
        h.be32(1, hook).be32(2, prio as u32);
        let mut c = Attrs::default();
        c.str(1, TABLE).str(3, chain).nest(4, &h).str(7, "nat");
        b.nft(NFT_MSG_NEWCHAIN, NLM_F_CREATE, family, &c);
    }
    let rule = |b: &mut Batch, chain: &str, exprs: Attrs| {
        let mut r = Attrs::default();
        r.str(1, TABLE).str(2, chain).nest(4, &exprs);
        b.nft(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, family, &r);
    };
    for d in &rules.dnats {
        rule(b, PREROUTING, dnat_expressions(d));
    }
    for ip in &rules.masquerade {
        rule(b, POSTROUTING, masquerade_expressions(ip));
    }
}

/// An nfnetlink socket, opened in the network namespace the caller is in.
pub struct Nft {
    fd: OwnedFd,
}

impl Nft {
    /// Opens the socket (in the calling thread's network namespace).
    pub fn open() -> io::Result<Nft> {
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a timeval of the right size on our own socket.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Nft { fd })
    }

    /// Makes the `ip` table hold `v4` and the `ip6` table hold `v6` (a family with no rules
    /// and no table is left alone), atomically.
    pub fn converge(&self, v4: &Ruleset, v6: &Ruleset) -> io::Result<()> {
        let mut b = Batch {
            buf: Vec::new(),
            seq: 0,
            acked: 0,
        };
        let none = Attrs::default();
        b.msg(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            0,
            NFNL_SUBSYS_NFTABLES,
            &none,
        );
        table_messages(&mut b, NFPROTO_IPV4, v4);
        if !v6.dnats.is_empty() || !v6.masquerade.is_empty() {
            table_messages(&mut b, NFPROTO_IPV6, v6);
        }
        b.msg(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            0,
            NFNL_SUBSYS_NFTABLES,
            &none,
        );
        self.send(&b.buf)?;
        self.acks(b.acked)
    }

    fn send(&self, buf: &[u8]) -> io::Result<()> {
        // SAFETY: a zeroed sockaddr_nl is the kernel's address (pid 0, no groups).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: buf and addr outlive the call; the sizes are theirs.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads `want` acknowledgements; the first error the kernel reports fails the batch
    /// (which it then did not apply).
    fn acks(&self, want: usize) -> io::Result<()> {
        let mut seen = 0;
        let mut buf = vec![0u8; 65536];
        while seen < want {
            // SAFETY: buf is ours and as long as said.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut off = 0usize;
            let n = n as usize;
            while off + 16 <= n {
                let len =
                    u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap_or_default()) as usize;
                let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap_or_default());
                if len < 16 || off + len > n {
                    break;
                }
                if ty == NLMSG_ERROR && len >= 20 {
                    let code =
                        i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap_or_default());
                    if code != 0 {
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    seen += 1;
                }
                off += len.next_multiple_of(4);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule's expressions as `nft --debug=netlink` shows them for
    /// `ip daddr 1.2.3.4 meta l4proto tcp th dport 80 dnat to 10.0.0.1:80`: payload/cmp of the
    /// address, meta l4proto, the port, two immediates and nat with flags 0x3.
    #[test]
    fn dnat_rule_encodes_the_expected_expressions() {
        let d = Dnat {
            lb_ip: "1.2.3.4".parse().unwrap(),
            port: 80,
            proto: 6,
            to_ip: "10.0.0.1".parse().unwrap(),
            to_port: 80,
        };
        let bytes = dnat_expressions(&d).0;
        let names: Vec<String> = ["payload", "cmp", "meta", "immediate", "nat"]
            .iter()
            .map(|n| n.to_string())
            .collect();
        let count = |n: &str| {
            let pat: Vec<u8> = [n.as_bytes(), &[0]].concat();
            bytes
                .windows(pat.len())
                .filter(|w| *w == pat.as_slice())
                .count()
        };
        assert_eq!(
            names.iter().map(|n| count(n)).collect::<Vec<_>>(),
            vec![2, 3, 1, 2, 1]
        );
        assert!(bytes.windows(4).any(|w| w == [1, 2, 3, 4]));
        assert!(bytes.windows(4).any(|w| w == [10, 0, 0, 1]));
        assert_eq!(bytes.len() % 4, 0);
    }
}
