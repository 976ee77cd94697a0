//! NAT tables written through nfnetlink, one atomic batch per converge — what the pod agents
//! (`kube-ovn-lb-svc`, `kube-ovn-vpc-nat-gw`) use instead of exec'ing `iptables`/`nft`.
//!
//! Why hand-made nfnetlink messages: kube-ovn-rs may not exec `iptables`/`nft`; `rustables`
//! is GPL-3.0 (this project is Apache-2.0) and `nftnl` binds the C libnftnl/libmnl the image
//! does not ship. The subset needed — tables, NAT base chains and rules made of payload,
//! bitwise, meta, cmp, immediate, nat and masq expressions — is a few attribute encodings, the
//! same bytes `nft --debug=netlink` shows for the equivalent rules.
//!
//! A converge sends, per table, `NEWTABLE, DELTABLE, NEWTABLE, chains, rules` inside one
//! batch: the kernel applies it whole or not at all, so a table never exists half-written and
//! a rule no longer wanted disappears with the old table.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use ipnet::IpNet;

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
/// `NFPROTO_IPV4`: the `ip` family.
pub const FAMILY_IP: u8 = 2;
/// `NFPROTO_IPV6`: the `ip6` family.
pub const FAMILY_IP6: u8 = 10;
/// `NF_INET_PRE_ROUTING`.
pub const HOOK_PREROUTING: u32 = 0;
/// `NF_INET_POST_ROUTING`.
pub const HOOK_POSTROUTING: u32 = 4;
/// nft's `dstnat` priority.
pub const PRIORITY_DSTNAT: i32 = -100;
/// nft's `srcnat` priority.
pub const PRIORITY_SRCNAT: i32 = 100;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_OIFNAME: u32 = 7;
const NFT_META_L4PROTO: u32 = 16;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_NAT_SNAT: u32 = 0;
const NFT_NAT_DNAT: u32 = 1;
const NF_NAT_RANGE_MAP_IPS: u32 = 0x1;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 0x2;
const NF_NAT_RANGE_PROTO_RANDOM_FULLY: u32 = 0x10;
const IFNAMSIZ: usize = 16;

/// What a rule matches on (all of a rule's matches must hold).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Match {
    /// `ip[6] daddr == addr`.
    Daddr(IpAddr),
    /// `ip[6] saddr` within the prefix (a full-length prefix compares the whole address).
    Saddr(IpNet),
    /// `meta l4proto == proto` (an IP protocol number).
    L4Proto(u8),
    /// `th dport == port` (after an [`Match::L4Proto`] of TCP, UDP or SCTP).
    Dport(u16),
    /// `iifname == name`.
    Iifname(String),
    /// `oifname == name`.
    Oifname(String),
}

/// What a rule does with what it matched.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// `dnat to addr[:port]`.
    Dnat {
        /// The new destination.
        to: IpAddr,
        /// The new destination port, if it changes.
        port: Option<u16>,
    },
    /// `snat to addr`, `fully-random` when asked (iptables' `--random-fully`).
    Snat {
        /// The new source.
        to: IpAddr,
        /// Source ports picked fully at random.
        random_fully: bool,
    },
    /// `masquerade`.
    Masquerade,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    /// Conditions, in order.
    pub matches: Vec<Match>,
    /// The NAT it applies.
    pub action: Action,
}

/// A NAT base chain and its rules, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Its name.
    pub name: &'static str,
    /// Its hook (`HOOK_*`).
    pub hook: u32,
    /// Its priority (`PRIORITY_*`).
    pub priority: i32,
    /// The rules, evaluated first to last.
    pub rules: Vec<Rule>,
}

/// A table that a converge writes whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Its family (`FAMILY_*`).
    pub family: u8,
    /// Its name.
    pub name: &'static str,
    /// Its chains.
    pub chains: Vec<Chain>,
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

/// `reg1 = (reg1 & mask) ^ 0`.
fn bitwise_mask(list: &mut Attrs, mask: &[u8]) {
    let mut b = Attrs::default();
    b.be32(1, NFT_REG_1)
        .be32(2, NFT_REG_1)
        .be32(3, mask.len() as u32);
    data(&mut b, 4, mask);
    data(&mut b, 5, &vec![0u8; mask.len()]);
    expr(list, "bitwise", Some(b));
}

fn meta(list: &mut Attrs, key: u32) {
    let mut m = Attrs::default();
    m.be32(2, key).be32(1, NFT_REG_1);
    expr(list, "meta", Some(m));
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

/// The network-header offsets of the source and destination address of `ip`'s family.
fn addr_offsets(ip: &IpAddr) -> (u32, u32, u32) {
    if ip.is_ipv4() {
        (12, 16, 4)
    } else {
        (8, 24, 16)
    }
}

fn ifname(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.resize(IFNAMSIZ, 0);
    v
}

fn match_expressions(l: &mut Attrs, m: &Match) {
    match m {
        Match::Daddr(ip) => {
            let (_, dst, len) = addr_offsets(ip);
            payload(l, NFT_PAYLOAD_NETWORK_HEADER, dst, len);
            cmp_eq(l, &ip_bytes(ip));
        }
        Match::Saddr(net) => {
            let ip = net.addr();
            let (src, _, len) = addr_offsets(&ip);
            payload(l, NFT_PAYLOAD_NETWORK_HEADER, src, len);
            if net.prefix_len() < net.max_prefix_len() {
                bitwise_mask(l, &ip_bytes(&net.netmask()));
            }
            cmp_eq(l, &ip_bytes(&net.network()));
        }
        Match::L4Proto(p) => {
            meta(l, NFT_META_L4PROTO);
            cmp_eq(l, &[*p]);
        }
        Match::Dport(port) => {
            payload(l, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
            cmp_eq(l, &port.to_be_bytes());
        }
        Match::Iifname(n) => {
            meta(l, NFT_META_IIFNAME);
            cmp_eq(l, &ifname(n));
        }
        Match::Oifname(n) => {
            meta(l, NFT_META_OIFNAME);
            cmp_eq(l, &ifname(n));
        }
    }
}

fn nat(l: &mut Attrs, kind: u32, to: &IpAddr, port: Option<u16>, flags: u32) {
    immediate(l, NFT_REG_1, &ip_bytes(to));
    if let Some(p) = port {
        immediate(l, NFT_REG_2, &p.to_be_bytes());
    }
    let family = if to.is_ipv4() { FAMILY_IP } else { FAMILY_IP6 };
    let mut n = Attrs::default();
    n.be32(1, kind)
        .be32(2, u32::from(family))
        .be32(3, NFT_REG_1)
        .be32(4, NFT_REG_1);
    let mut flags = flags | NF_NAT_RANGE_MAP_IPS;
    if port.is_some() {
        n.be32(5, NFT_REG_2).be32(6, NFT_REG_2);
        flags |= NF_NAT_RANGE_PROTO_SPECIFIED;
    }
    n.be32(7, flags);
    expr(l, "nat", Some(n));
}

/// The expressions of `rule`, as `NFTA_RULE_EXPRESSIONS` holds them.
fn rule_expressions(rule: &Rule) -> Attrs {
    let mut l = Attrs::default();
    for m in &rule.matches {
        match_expressions(&mut l, m);
    }
    match &rule.action {
        Action::Dnat { to, port } => nat(&mut l, NFT_NAT_DNAT, to, *port, 0),
        Action::Snat { to, random_fully } => {
            let flags = if *random_fully {
                NF_NAT_RANGE_PROTO_RANDOM_FULLY
            } else {
                0
            };
            nat(&mut l, NFT_NAT_SNAT, to, None, flags)
        }
        Action::Masquerade => expr(&mut l, "masq", None),
    }
    l
}

/// The encoded expressions of `rule` (for tests comparing with `nft --debug=netlink`).
pub fn encode_rule(rule: &Rule) -> Vec<u8> {
    rule_expressions(rule).0
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

/// The messages that make `t` exist exactly as described (an empty table keeps its chains).
fn table_messages(b: &mut Batch, t: &Table) {
    let mut table = Attrs::default();
    table.str(1, t.name);
    b.nft(NFT_MSG_NEWTABLE, NLM_F_CREATE, t.family, &table);
    b.nft(NFT_MSG_DELTABLE, 0, t.family, &table);
    b.nft(NFT_MSG_NEWTABLE, NLM_F_CREATE, t.family, &table);
    for c in &t.chains {
        let mut h = Attrs::default();
        h.be32(1, c.hook).be32(2, c.priority as u32);
        let mut a = Attrs::default();
        a.str(1, t.name).str(3, c.name).nest(4, &h).str(7, "nat");
        b.nft(NFT_MSG_NEWCHAIN, NLM_F_CREATE, t.family, &a);
    }
    for c in &t.chains {
        for r in &c.rules {
            let mut a = Attrs::default();
            a.str(1, t.name)
                .str(2, c.name)
                .nest(4, &rule_expressions(r));
            b.nft(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, t.family, &a);
        }
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

    /// Makes each of `tables` hold exactly what it describes, all in one atomic batch.
    pub fn apply(&self, tables: &[Table]) -> io::Result<()> {
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
        for t in tables {
            table_messages(&mut b, t);
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

    fn count(bytes: &[u8], name: &str) -> usize {
        let pat: Vec<u8> = [name.as_bytes(), &[0]].concat();
        bytes
            .windows(pat.len())
            .filter(|w| *w == pat.as_slice())
            .count()
    }

    /// `oifname "net1" ip saddr 10.0.1.0/24 snat to 172.18.0.5 fully-random` is, as
    /// `nft --debug=netlink` shows it: meta oifname + cmp of the padded name, payload of the
    /// source + bitwise with the /24 mask + cmp of the network, an immediate of the address and
    /// nat snat with flags MAP_IPS|RANDOM_FULLY.
    #[test]
    fn snat_of_a_prefix_encodes_the_expected_expressions() {
        let r = Rule {
            matches: vec![
                Match::Oifname("net1".into()),
                Match::Saddr("10.0.1.0/24".parse().unwrap()),
            ],
            action: Action::Snat {
                to: "172.18.0.5".parse().unwrap(),
                random_fully: true,
            },
        };
        let b = encode_rule(&r);
        let names = ["meta", "cmp", "payload", "bitwise", "immediate", "nat"];
        assert_eq!(
            names.iter().map(|n| count(&b, n)).collect::<Vec<_>>(),
            vec![1, 2, 1, 1, 1, 1]
        );
        assert!(b.windows(16).any(|w| w == ifname("net1").as_slice()));
        assert!(b.windows(4).any(|w| w == [255, 255, 255, 0]));
        assert!(b.windows(4).any(|w| w == [10, 0, 1, 0]));
        assert!(b.windows(4).any(|w| w == [172, 18, 0, 5]));
        assert!(b.windows(4).any(|w| w == 0x11u32.to_be_bytes()));
        assert_eq!(b.len() % 4, 0);
        // A host address needs no mask.
        let host = Rule {
            matches: vec![Match::Saddr("10.0.1.7/32".parse().unwrap())],
            action: Action::Masquerade,
        };
        assert_eq!(count(&encode_rule(&host), "bitwise"), 0);
    }
}
