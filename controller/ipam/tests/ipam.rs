//! IPAM behaviour as Kube-OVN users rely on it, and a property test: across random sequences
//! of allocations, releases, static requests and restarts (rebuild from the recorded state), no
//! address or MAC is ever held twice, and every automatic address is usable and not reserved.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use kube_ovn_ipam::{Error, Family, Ipam, Request, SubnetConfig};
use proptest::prelude::*;

fn config(name: &str, cidr: &str, gw: &str, exclude: &[&str]) -> SubnetConfig {
    SubnetConfig {
        name: name.into(),
        cidr_block: cidr.into(),
        gateway: gw.into(),
        exclude_ips: exclude.iter().map(|s| s.to_string()).collect(),
    }
}

fn auto(pod: &str) -> Request {
    Request {
        pod: pod.into(),
        nic: format!("{pod}.nic"),
        check_conflict: true,
        ..Request::default()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn sequential_allocation_skips_gateway_and_exclude_ranges() {
    let mut ipam = Ipam::new();
    ipam.add_or_update_subnet(config(
        "s",
        "172.17.0.0/24",
        "172.17.0.1",
        &["172.17.0.2..172.17.0.10"],
    ))
    .unwrap();
    let a = ipam.allocate("s", &auto("a")).unwrap();
    assert_eq!(a.v4, Some(ip("172.17.0.11")));
    assert!(a.v6.is_none());
    // Idempotent per NIC.
    assert_eq!(ipam.allocate("s", &auto("a")).unwrap(), a);
    let b = ipam.allocate("s", &auto("b")).unwrap();
    assert_eq!(b.v4, Some(ip("172.17.0.12")));
    assert_ne!(a.mac, b.mac);
    let u = ipam.subnet("s").unwrap().usage(Family::V4).unwrap();
    assert_eq!(u.using, 2);
    assert_eq!(u.available, 254 - 10 - 2);
    assert_eq!(u.using_range, "172.17.0.11-172.17.0.12");
    assert_eq!(u.available_range, "172.17.0.13-172.17.0.254");
}

#[test]
fn released_addresses_wait_until_fresh_ones_run_out() {
    let mut ipam = Ipam::new();
    ipam.add_or_update_subnet(config("s", "10.0.0.0/29", "10.0.0.1", &[]))
        .unwrap();
    let a = ipam.allocate("s", &auto("a")).unwrap().v4.unwrap();
    assert_eq!(ipam.release_pod("a"), vec![a]);
    // .2 was released: .3…6 come first, then .2 again.
    let got: Vec<_> = ["b", "c", "d", "e", "f"]
        .iter()
        .map(|p| {
            ipam.allocate("s", &auto(p))
                .unwrap()
                .v4
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        got,
        ["10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.2"]
    );
    let err = ipam.allocate("s", &auto("g")).unwrap_err();
    assert!(matches!(err, Error::NoAvailable { .. }), "{err}");
}

#[test]
fn dual_stack_gets_one_address_per_family_and_static_halves_are_completed() {
    let mut ipam = Ipam::new();
    ipam.add_or_update_subnet(config(
        "d",
        "10.16.0.0/16,fd00:10:16::/112",
        "10.16.0.1,fd00:10:16::1",
        &[],
    ))
    .unwrap();
    let a = ipam.allocate("d", &auto("a")).unwrap();
    assert_eq!(a.ip_address(), "10.16.0.2,fd00:10:16::2");
    let mut req = auto("b");
    req.ips = vec![ip("10.16.0.100")];
    let b = ipam.allocate("d", &req).unwrap();
    assert_eq!(b.v4, Some(ip("10.16.0.100")));
    assert_eq!(b.v6, Some(ip("fd00:10:16::3")));
    let mut v6only = auto("c");
    v6only.family = Some(Family::V6);
    let c = ipam.allocate("d", &v6only).unwrap();
    assert!(c.v4.is_none() && c.v6.is_some());
}

#[test]
fn static_requests_may_use_reserved_but_never_gateway_or_someone_elses() {
    let mut ipam = Ipam::new();
    ipam.add_or_update_subnet(config("s", "10.1.0.0/23", "10.1.0.1", &["10.1.1.2"]))
        .unwrap();
    let mut r = auto("fixed");
    r.ips = vec![ip("10.1.1.2")];
    assert_eq!(ipam.allocate("s", &r).unwrap().v4, Some(ip("10.1.1.2")));
    let mut other = auto("other");
    other.ips = vec![ip("10.1.1.2")];
    let err = ipam.allocate("s", &other).unwrap_err();
    assert_eq!(
        err,
        Error::Conflict {
            what: "10.1.1.2".into(),
            owner: "fixed".into()
        }
    );
    other.ips = vec![ip("10.1.0.1")];
    assert!(matches!(
        ipam.allocate("s", &other),
        Err(Error::Conflict { .. })
    ));
    for out in ["10.1.2.1", "10.1.0.0", "10.1.1.255"] {
        other.ips = vec![ip(out)];
        assert!(
            matches!(ipam.allocate("s", &other), Err(Error::OutOfRange { .. })),
            "{out}"
        );
    }
    // The refused requests left nothing behind.
    let s = ipam.subnet("s").unwrap();
    assert!(s.nics_of("other").is_empty());
    assert!(!s.has_pod("other") && !s.holds("other", "other.nic"));
    // Restoring (no conflict check) trusts the recorded state.
    other.ips = vec![ip("10.1.0.50")];
    other.check_conflict = false;
    assert!(ipam.allocate("s", &other).is_ok());
    let s = ipam.subnet("s").unwrap();
    assert!(s.has_pod("other") && s.holds("other", "other.nic"));
    assert!(!s.holds("other", "other.net1") && !s.holds("fixed", "other.nic"));
}

#[test]
fn static_and_conflicting_macs() {
    let mut ipam = Ipam::new();
    ipam.add_or_update_subnet(config("s", "10.0.0.0/24", "10.0.0.1", &[]))
        .unwrap();
    let mut a = auto("a");
    a.mac = Some("0A:00:00:00:00:AA".into());
    assert_eq!(ipam.allocate("s", &a).unwrap().mac, "0a:00:00:00:00:aa");
    let mut b = auto("b");
    b.mac = Some("0a:00:00:00:00:aa".into());
    assert!(matches!(
        ipam.allocate("s", &b),
        Err(Error::Conflict { .. })
    ));
    b.mac = Some("01:00:00:00:00:01".into());
    assert!(matches!(ipam.allocate("s", &b), Err(Error::InvalidMac(_))));
}

#[test]
fn ip_pools_carve_out_their_ranges() {
    let mut ipam = Ipam::new();
    ipam.add_or_update_subnet(config("s", "10.0.0.0/24", "10.0.0.1", &[]))
        .unwrap();
    ipam.set_pool(
        "s",
        "p1",
        &["10.0.0.2..10.0.0.3".into(), "10.0.0.128/30".into()],
    )
    .unwrap();
    let err = ipam.set_pool("s", "p2", &["10.0.0.3".into()]).unwrap_err();
    assert!(err.to_string().contains("also in ippool p1"), "{err}");
    let err = ipam.set_pool("s", "p3", &["10.0.1.3".into()]).unwrap_err();
    assert!(err.to_string().contains("outside subnet"), "{err}");
    // Outside the pool: the pool's addresses are skipped.
    assert_eq!(
        ipam.allocate("s", &auto("a")).unwrap().v4,
        Some(ip("10.0.0.4"))
    );
    let mut p = auto("b");
    p.pool = Some("p1".into());
    let got: Vec<_> = (0..6)
        .map(|i| {
            let mut r = p.clone();
            r.nic = format!("b{i}");
            ipam.allocate("s", &r).map(|a| a.v4.unwrap().to_string())
        })
        .collect();
    assert_eq!(
        got[..6]
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect::<Vec<_>>(),
        [
            "10.0.0.2",
            "10.0.0.3",
            "10.0.0.128",
            "10.0.0.129",
            "10.0.0.130",
            "10.0.0.131"
        ]
    );
    let mut r = p.clone();
    r.nic = "b-last".into();
    assert!(matches!(
        ipam.allocate("s", &r),
        Err(Error::NoAvailable { .. })
    ));
}

#[test]
fn cidr_changes_keep_fitting_allocations_and_report_the_rest() {
    let mut ipam = Ipam::new();
    ipam.add_or_update_subnet(config("s", "10.0.0.0/30", "10.0.0.1", &[]))
        .unwrap();
    let a = ipam.allocate("s", &auto("a")).unwrap();
    assert!(matches!(
        ipam.allocate("s", &auto("b")),
        Err(Error::NoAvailable { .. })
    ));
    // Expansion keeps a's address and MAC and makes room.
    let dropped = ipam
        .add_or_update_subnet(config("s", "10.0.0.0/24", "10.0.0.1", &[]))
        .unwrap();
    assert!(dropped.is_empty());
    assert_eq!(ipam.allocate("s", &auto("a")).unwrap(), a);
    assert!(ipam.allocate("s", &auto("b")).is_ok());
    // Moving the subnet elsewhere drops both and says so.
    let dropped = ipam
        .add_or_update_subnet(config("s", "10.9.0.0/24", "10.9.0.1", &[]))
        .unwrap();
    assert_eq!(dropped.len(), 2);
    // Excluding an address in use keeps it with its owner (it is now a "reserved" static).
    let c = ipam.allocate("s", &auto("c")).unwrap().v4.unwrap();
    let dropped = ipam
        .add_or_update_subnet(config("s", "10.9.0.0/24", "10.9.0.1", &[&c.to_string()]))
        .unwrap();
    assert!(dropped.is_empty());
    assert_eq!(ipam.owner_of(&c).unwrap().1.pod, "c");
}

#[test]
fn invalid_configurations_are_refused_with_reasons() {
    let mut ipam = Ipam::new();
    for (cidr, gw, ex) in [
        ("10.0.0.0/33", "", vec![]),
        ("10.0.0.0/24,10.1.0.0/24", "", vec![]),
        ("", "", vec![]),
        ("10.0.0.0/24", "10.1.0.1", vec![]),
        ("10.0.0.0/24", "10.0.0.1", vec!["10.0.0.9..10.0.0.3"]),
    ] {
        assert!(
            ipam.add_or_update_subnet(config("bad", cidr, gw, &ex))
                .is_err(),
            "{cidr} {gw} {ex:?}"
        );
    }
    assert!(ipam.subnet("bad").is_none());
    assert!(matches!(
        ipam.allocate("missing", &auto("a")),
        Err(Error::NoSubnet(_))
    ));
}

#[derive(Debug, Clone)]
enum Op {
    Auto(u8),
    Static(u8, u8),
    Release(u8),
    Restart,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            4 => any::<u8>().prop_map(|p| Op::Auto(p % 40)),
            2 => (any::<u8>(), any::<u8>()).prop_map(|(p, o)| Op::Static(p % 40, o % 64)),
            3 => any::<u8>().prop_map(|p| Op::Release(p % 40)),
            1 => Just(Op::Restart),
        ],
        1..120,
    )
}

proptest! {
    #[test]
    fn no_duplicates_across_allocate_release_restart(ops in ops()) {
        let cfg = config("p", "10.0.0.0/26,fd00::/122", "10.0.0.1,fd00::1", &["10.0.0.5..10.0.0.9", "fd00::20"]);
        let mut ipam = Ipam::new();
        ipam.add_or_update_subnet(cfg.clone()).unwrap();
        // What the cluster has recorded (the IP CRs / annotations): pod -> (ip_address, mac).
        let mut recorded: BTreeMap<String, (Vec<IpAddr>, String)> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Auto(p) => {
                    let pod = format!("pod{p}");
                    match ipam.allocate("p", &auto(&pod)) {
                        Ok(a) => { recorded.insert(pod, ([a.v4, a.v6].into_iter().flatten().collect(), a.mac)); }
                        Err(Error::NoAvailable { .. }) => {}
                        Err(e) => prop_assert!(false, "auto: {e}"),
                    }
                }
                Op::Static(p, octet) => {
                    let pod = format!("pod{p}");
                    let mut r = auto(&pod);
                    r.ips = vec![format!("10.0.0.{octet}").parse().unwrap()];
                    match ipam.allocate("p", &r) {
                        Ok(a) => { recorded.insert(pod, ([a.v4, a.v6].into_iter().flatten().collect(), a.mac)); }
                        Err(Error::Conflict { .. } | Error::OutOfRange { .. } | Error::NoAvailable { .. }) => {}
                        Err(e) => prop_assert!(false, "static: {e}"),
                    }
                }
                Op::Release(p) => {
                    let pod = format!("pod{p}");
                    ipam.release_pod(&pod);
                    recorded.remove(&pod);
                }
                Op::Restart => {
                    // A fresh controller restores from what was recorded, before serving.
                    ipam = Ipam::new();
                    ipam.add_or_update_subnet(cfg.clone()).unwrap();
                    for (pod, (ips, mac)) in &recorded {
                        let mut r = auto(pod);
                        r.ips = ips.clone();
                        r.mac = Some(mac.clone());
                        r.check_conflict = false;
                        ipam.allocate("p", &r).unwrap();
                    }
                }
            }
            // Invariants after every step.
            let s = ipam.subnet("p").unwrap();
            let allocs = s.allocations();
            let mut seen = HashSet::new();
            for (ip, owner) in &allocs {
                prop_assert!(seen.insert(*ip), "{ip} held twice");
                let rec = recorded.get(&owner.pod);
                prop_assert!(rec.is_some_and(|(ips, _)| ips.contains(ip)), "{ip} held by {} but not recorded", owner.pod);
            }
            let total: usize = recorded.values().map(|(ips, _)| ips.len()).sum();
            prop_assert_eq!(allocs.len(), total, "recorded and held differ");
            let mut macs = HashMap::new();
            for (mac, owner) in s.macs() {
                prop_assert!(macs.insert(mac.clone(), owner.pod.clone()).is_none());
            }
            prop_assert_eq!(macs.len(), recorded.len());
            for (ip, _) in &allocs {
                prop_assert!(ip.to_string() != "10.0.0.1" && ip.to_string() != "fd00::1", "gateway handed out");
            }
        }
    }
}

#[test]
fn restoring_an_address_to_a_new_owner_detaches_the_old_one() {
    let mut ipam = Ipam::new();
    ipam.add_or_update_subnet(config("s", "10.0.0.0/24", "10.0.0.1", &[]))
        .unwrap();
    let restore = |pod: &str| {
        let mut r = auto(pod);
        r.ips = vec![ip("10.0.0.7")];
        r.check_conflict = false;
        r
    };
    ipam.allocate("s", &restore("stale")).unwrap();
    ipam.allocate("s", &restore("live")).unwrap();
    // GC of the stale record must not free the live pod's address.
    assert!(ipam.release_pod("stale").is_empty());
    assert_eq!(ipam.owner_of(&ip("10.0.0.7")).unwrap().1.pod, "live");
    assert_eq!(ipam.release_pod("live"), vec![ip("10.0.0.7")]);
}

#[test]
fn pool_usage_counts_only_the_pool() {
    let mut ipam = Ipam::new();
    ipam.add_or_update_subnet(config("s", "10.0.0.0/24", "10.0.0.1", &["10.0.0.3"]))
        .unwrap();
    ipam.set_pool("s", "p", &["10.0.0.2..10.0.0.5".into()])
        .unwrap();
    let mut r = auto("a");
    r.pool = Some("p".into());
    assert_eq!(ipam.allocate("s", &r).unwrap().v4, Some(ip("10.0.0.2")));
    let u = ipam
        .subnet("s")
        .unwrap()
        .pool_usage("p", Family::V4)
        .unwrap();
    assert_eq!((u.using, u.available), (1, 2));
    assert_eq!(u.available_range, "10.0.0.4-10.0.0.5");
    ipam.remove_pool_everywhere("p");
    assert!(ipam
        .subnet("s")
        .unwrap()
        .pool_usage("p", Family::V4)
        .is_none());
}

#[test]
fn holds_exactly_recognises_only_an_identical_allocation() {
    let mut ipam = Ipam::new();
    ipam.add_or_update_subnet(config(
        "s",
        "10.0.0.0/24,fd00::/120",
        "10.0.0.1,fd00::1",
        &[],
    ))
    .unwrap();
    let mut r = auto("a");
    r.ips = vec![ip("10.0.0.7"), ip("fd00::7")];
    r.mac = Some("0a:00:00:00:00:07".into());
    r.check_conflict = false;
    ipam.allocate("s", &r).unwrap();
    let s = ipam.subnet("s").unwrap();
    let both = [ip("10.0.0.7"), ip("fd00::7")];
    assert!(s.holds_exactly("a", "a.nic", &both, Some("0A-00-00-00-00-07")));
    assert!(s.holds_exactly("a", "a.nic", &both, None));
    assert!(!s.holds_exactly("a", "a.nic", &both, Some("0a:00:00:00:00:08")));
    assert!(!s.holds_exactly("b", "a.nic", &both, None), "another owner");
    assert!(!s.holds_exactly("a", "b.nic", &both, None), "another NIC");
    assert!(
        !s.holds_exactly("a", "a.nic", &both[..1], None),
        "a family missing"
    );
    assert!(!s.holds_exactly("a", "a.nic", &[ip("10.0.0.7"), ip("10.0.0.7")], None));
    assert!(!s.holds_exactly("a", "a.nic", &[ip("10.0.0.8"), ip("fd00::7")], None));
}
