//! The connect probe tells a reply from a rejection (RST, ICMP port unreachable) from silence,
//! against `serve-pod` running in another plain network namespace, over IPv4 and IPv6.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use kube_ovn_sandbox::sys;
use kube_ovn_sandbox::workload::{connect, ConnectError, PodServer, Proto};

/// Two namespaces joined by a veth pair; deleted (with anything inside) on drop.
struct Pair {
    a: String,
    b: String,
}

impl Pair {
    fn new() -> Pair {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let (a, b) = (format!("wl{id}-a"), format!("wl{id}-b"));
        sys::netns_add(&a).unwrap();
        sys::netns_add(&b).unwrap();
        let pair = Pair { a, b };
        let run = |ns: &str, args: &[&str]| {
            sys::run_command(sys::in_netns(ns, "ip").args(args)).unwrap();
        };
        sys::run_command(sys::in_netns(&pair.a, "ip").args([
            "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &pair.b,
        ]))
        .unwrap();
        for (ns, dev, v4, v6) in [
            (&pair.a, "va", "10.250.0.1/24", "fd99::1/64"),
            (&pair.b, "vb", "10.250.0.2/24", "fd99::2/64"),
        ] {
            run(ns, &["addr", "add", v4, "dev", dev]);
            run(ns, &["-6", "addr", "add", v6, "dev", dev, "nodad"]);
            run(ns, &["link", "set", dev, "up"]);
            run(ns, &["link", "set", "lo", "up"]);
        }
        // Somebody on the link who never answers: packets leave, nothing comes back.
        run(
            &pair.a,
            &[
                "neigh",
                "add",
                "10.250.0.9",
                "lladdr",
                "02:00:00:00:00:99",
                "dev",
                "va",
                "nud",
                "permanent",
            ],
        );
        pair
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let id = sys::netns_id(ns);
            for pid in sys::pids_in_netns(&id.into_iter().collect::<Vec<_>>()) {
                sys::stop_pid(pid, Duration::from_secs(2));
            }
            let _ = sys::netns_del(ns);
        }
    }
}

#[test]
fn replies_refusals_and_timeouts_are_told_apart() {
    let pair = Pair::new();
    let bin = Path::new(env!("CARGO_BIN_EXE_kube-ovn-sandbox"));
    let server = PodServer::start(bin, &pair.b, "backend-1", &[8080], &[5353]).unwrap();
    let t = Duration::from_secs(2);
    for host in ["10.250.0.2", "[fd99::2]"] {
        let tcp: SocketAddr = format!("{host}:8080").parse().unwrap();
        let udp: SocketAddr = format!("{host}:5353").parse().unwrap();
        assert_eq!(
            connect(&pair.a, Proto::Tcp, tcp, b"", t).as_deref(),
            Ok("backend-1")
        );
        assert_eq!(
            connect(&pair.a, Proto::Udp, udp, b"hi", t).as_deref(),
            Ok("backend-1")
        );
        let closed: SocketAddr = format!("{host}:8081").parse().unwrap();
        assert!(matches!(
            connect(&pair.a, Proto::Tcp, closed, b"", t),
            Err(ConnectError::Refused(_))
        ));
        assert!(matches!(
            connect(&pair.a, Proto::Udp, closed, b"hi", t),
            Err(ConnectError::Refused(_))
        ));
    }
    let start = Instant::now();
    let silent: SocketAddr = "10.250.0.9:80".parse().unwrap();
    assert_eq!(
        connect(&pair.a, Proto::Tcp, silent, b"", Duration::from_millis(500)),
        Err(ConnectError::Timeout(Duration::from_millis(500)))
    );
    assert_eq!(
        connect(
            &pair.a,
            Proto::Udp,
            silent,
            b"hi",
            Duration::from_millis(500)
        ),
        Err(ConnectError::Timeout(Duration::from_millis(500)))
    );
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(matches!(
        connect("no-such-netns-xyz", Proto::Tcp, silent, b"", t),
        Err(ConnectError::Other(_))
    ));
    // The server lives in the namespace (so a sandbox sweep finds it) and dies with its handle.
    let pid = server.pid() as i32;
    let id = sys::netns_id(&pair.b).unwrap();
    assert!(sys::pids_in_netns(&[id]).contains(&pid));
    drop(server);
    assert!(!sys::alive(pid));
    assert!(matches!(
        connect(
            &pair.a,
            Proto::Tcp,
            "10.250.0.2:8080".parse().unwrap(),
            b"",
            t
        ),
        Err(ConnectError::Refused(_))
    ));
}
