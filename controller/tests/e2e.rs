//! kube-ovn-controller end to end: the real binary against the API fixture and a real OVN NB
//! (+ northd) from the sandbox. Default topology with upstream's names, priorities and
//! external_ids; pods allocated, wired and released; a restart on a converged NB writes
//! nothing; a kill -9 in the middle of 500 pod creations leaves no duplicate and nothing stale.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::ResourceExt;
use kube_ovn_common::crd::{Ip, Subnet};
use kube_ovn_nb::objects::string_map;
use kube_ovn_sandbox::loopback::Loopback;
use ovsdb::{Atom, Datum};
use support::{eventually, pod, World};

const LONG: Duration = Duration::from_secs(60);

fn ids(r: &ovsdb::Row) -> BTreeMap<String, String> {
    string_map(r, "external_ids")
}

fn rows(w: &World, table: &str) -> Vec<ovsdb::Row> {
    let c = w.nb.cache();
    c.table(table)
        .map(|t| t.iter().map(|(_, r)| (**r).clone()).collect())
        .unwrap_or_default()
}

fn named<'a>(rows: &'a [ovsdb::Row], name: &str) -> Option<&'a ovsdb::Row> {
    rows.iter()
        .find(|r| r.get("name") == Some(&Datum::from(name)))
}

fn text(d: Option<&Datum>) -> String {
    d.and_then(Datum::as_atom)
        .and_then(Atom::as_str)
        .unwrap_or_default()
        .to_string()
}

async fn annotated(w: &World, name: &str) -> Option<BTreeMap<String, String>> {
    let p = w.pods().get(name).await.ok()?;
    let a = p.annotations().clone();
    (a.get("ovn.kubernetes.io/allocated").map(String::as_str) == Some("true")).then_some(a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_topology_pods_and_a_restart_that_writes_nothing() {
    let mut w = World::new(2, true).await;
    w.start_controller();

    // Nodes get join addresses and annotations.
    let nodes: Api<Node> = Api::all(w.client.clone());
    for n in ["node1", "node2"] {
        eventually(&format!("{n} allocated"), LONG, || async {
            let node = nodes.get(n).await.ok()?;
            (node
                .annotations()
                .get("ovn.kubernetes.io/allocated")
                .map(String::as_str)
                == Some("true"))
            .then_some(())
        })
        .await;
    }
    let node1 = nodes.get("node1").await.unwrap();
    let na = node1.annotations();
    assert_eq!(na["ovn.kubernetes.io/logical_switch"], "join");
    assert_eq!(na["ovn.kubernetes.io/cidr"], "100.64.0.0/16");
    assert_eq!(na["ovn.kubernetes.io/gateway"], "100.64.0.1");
    assert_eq!(na["ovn.kubernetes.io/port_name"], "node-node1");
    let join_ip = na["ovn.kubernetes.io/ip_address"].clone();
    assert!(join_ip.starts_with("100.64.0."), "{join_ip}");

    // Wait for the distributed-gateway policies of both nodes (the last thing subnets write).
    eventually("29000 policies for both nodes", LONG, || async {
        let n = rows(&w, "Logical_Router_Policy")
            .iter()
            .filter(|r| r.get("priority") == Some(&Datum::from(29000i64)))
            .count();
        (n == 2).then_some(())
    })
    .await;

    // The default topology, as upstream names and tags it.
    let ls = rows(&w, "Logical_Switch");
    for name in ["ovn-default", "join"] {
        let s = named(&ls, name).unwrap_or_else(|| panic!("switch {name}"));
        assert_eq!(ids(s).get("vendor").map(String::as_str), Some("kube-ovn"));
    }
    let lr = rows(&w, "Logical_Router");
    let router = named(&lr, "ovn-cluster").expect("router ovn-cluster");
    assert_eq!(
        string_map(router, "options"),
        BTreeMap::from([
            (
                "always_learn_from_arp_request".to_string(),
                "false".to_string()
            ),
            ("dynamic_neigh_routers".to_string(), "true".to_string()),
            ("mac_binding_age_threshold".to_string(), "300".to_string()),
        ])
    );
    let lrp = rows(&w, "Logical_Router_Port");
    let p = named(&lrp, "ovn-cluster-ovn-default").expect("lrp ovn-cluster-ovn-default");
    assert_eq!(
        p.get("networks"),
        Some(&Datum::set([Atom::from("10.16.0.1/16")]))
    );
    assert_eq!(
        ids(p),
        BTreeMap::from([
            ("lr".into(), "ovn-cluster".into()),
            ("vendor".into(), "kube-ovn".into())
        ])
    );
    let p = named(&lrp, "ovn-cluster-join").expect("lrp ovn-cluster-join");
    assert_eq!(
        p.get("networks"),
        Some(&Datum::set([Atom::from("100.64.0.1/16")]))
    );
    let lsp = rows(&w, "Logical_Switch_Port");
    let rp = named(&lsp, "ovn-default-ovn-cluster").expect("lsp ovn-default-ovn-cluster");
    assert_eq!(text(rp.get("type")), "router");
    assert_eq!(
        string_map(rp, "options")["router-port"],
        "ovn-cluster-ovn-default"
    );
    assert_eq!(
        ids(rp),
        BTreeMap::from([
            ("ls".into(), "ovn-default".into()),
            ("vendor".into(), "kube-ovn".into())
        ])
    );
    let np = named(&lsp, "node-node1").expect("lsp node-node1");
    let addr = text(np.get("addresses"));
    assert!(addr.ends_with(&format!(" {join_ip}")), "{addr}");
    assert_eq!(
        ids(np),
        BTreeMap::from([
            ("ls".into(), "join".into()),
            ("vendor".into(), "kube-ovn".into())
        ])
    );
    let lbs = rows(&w, "Load_Balancer");
    for name in [
        "cluster-tcp-loadbalancer",
        "cluster-udp-loadbalancer",
        "cluster-sctp-loadbalancer",
        "cluster-tcp-session-loadbalancer",
        "cluster-udp-session-loadbalancer",
        "cluster-sctp-session-loadbalancer",
    ] {
        let lb = named(&lbs, name).unwrap_or_else(|| panic!("lb {name}"));
        assert_eq!(ids(lb)["vendor"], "kube-ovn");
    }
    assert_eq!(
        string_map(
            named(&lbs, "cluster-tcp-session-loadbalancer").unwrap(),
            "options"
        )["affinity_timeout"],
        "10800"
    );
    assert_eq!(
        string_map(named(&lbs, "cluster-udp-loadbalancer").unwrap(), "options")["ct_flush"],
        "true"
    );
    let default_ls = named(&ls, "ovn-default").unwrap();
    assert_eq!(
        default_ls
            .get("load_balancer")
            .and_then(Datum::as_set)
            .map(|s| s.len()),
        Some(6)
    );
    assert_eq!(
        named(&ls, "join")
            .unwrap()
            .get("load_balancer")
            .map(Datum::len)
            .unwrap_or(0),
        0
    );
    let pgs = rows(&w, "Port_Group");
    let pg = named(&pgs, "node.node1").expect("pg node.node1");
    assert_eq!(
        ids(pg),
        BTreeMap::from([
            ("node".into(), "node1".into()),
            ("np".into(), "node/node1".into()),
            ("vendor".into(), "kube-ovn".into())
        ])
    );
    assert!(
        named(&pgs, "ovn.default.node1").is_some(),
        "per-subnet-node pg"
    );
    let global = rows(&w, "NB_Global");
    let opts = string_map(&global[0], "options");
    assert_eq!(opts["use_ct_inv_match"], "false");
    assert_eq!(opts["ls_dnat_mod_dl_dst"], "true");

    // Router policies and routes, read back the way an operator would.
    let policies = w.nbctl(&["lr-policy-list", "ovn-cluster"]);
    for want in [
        "31000                            ip4.dst == 10.16.0.0/16           allow",
        "31000                           ip4.dst == 100.64.0.0/16           allow",
        "29000                 ip4.src == $ovn.default.node1_ip4         reroute",
    ] {
        let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            squash(&policies).contains(&squash(want)),
            "missing {want:?} in\n{policies}"
        );
    }
    for n in ["node1", "node2"] {
        let node = nodes.get(n).await.unwrap();
        let ip = node.status.unwrap().addresses.unwrap()[0].address.clone();
        assert!(
            policies.contains(&format!("ip4.dst == {ip}")),
            "no 30000 policy for {n}:\n{policies}"
        );
    }
    let routes = w.nbctl(&["lr-route-list", "ovn-cluster"]);
    assert!(
        routes.contains("0.0.0.0/0") && routes.contains("100.64.0.1"),
        "{routes}"
    );
    let show = w.nbctl(&["show"]);
    assert!(
        show.contains("switch")
            && show.contains("(ovn-default)")
            && show.contains("router")
            && show.contains("(ovn-cluster)"),
        "{show}"
    );

    // Subnet status: address counts and Ready.
    let subnets: Api<Subnet> = Api::all(w.client.clone());
    let st = eventually("ovn-default status", LONG, || async {
        let s = subnets.get("ovn-default").await.ok()?;
        let st = s.status?;
        st.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(st)
    })
    .await;
    assert_eq!(st.v4_available_ip_range, "10.16.0.2-10.16.255.254");

    // Pods: addresses, ports, port groups, IP CRs.
    for i in 0..6 {
        let node = if i % 2 == 0 { "node1" } else { "node2" };
        w.pods()
            .create(&PostParams::default(), &pod(&format!("p{i}"), Some(node)))
            .await
            .unwrap();
    }
    let mut seen = BTreeSet::new();
    for i in 0..6 {
        let name = format!("p{i}");
        let a = eventually(&format!("{name} routed"), LONG, || async {
            let a = annotated(&w, &name).await?;
            (a.get("ovn.kubernetes.io/routed").map(String::as_str) == Some("true")).then_some(a)
        })
        .await;
        assert_eq!(a["ovn.kubernetes.io/logical_switch"], "ovn-default");
        assert_eq!(a["ovn.kubernetes.io/logical_router"], "ovn-cluster");
        assert_eq!(a["ovn.kubernetes.io/gateway"], "10.16.0.1");
        assert_eq!(a["ovn.kubernetes.io/pod_nic_type"], "veth-pair");
        let ip = a["ovn.kubernetes.io/ip_address"].clone();
        assert!(seen.insert(ip.clone()), "duplicate {ip}");
        let port = eventually("pod port", LONG, || async {
            let lsp = rows(&w, "Logical_Switch_Port");
            named(&lsp, &format!("{name}.default")).cloned()
        })
        .await;
        assert_eq!(
            text(port.get("addresses")),
            format!("{} {ip}", a["ovn.kubernetes.io/mac_address"])
        );
        assert_eq!(ids(&port)["pod"], format!("default/{name}"));
        assert_eq!(ids(&port)["ls"], "ovn-default");
    }
    assert_eq!(
        seen.first().unwrap(),
        "10.16.0.2",
        "sequential allocation starts after the gateway"
    );
    let ips: Api<Ip> = Api::all(w.client.clone());
    let cr = ips.get("p0.default").await.unwrap();
    assert_eq!(cr.spec.subnet, "ovn-default");
    assert_eq!(cr.labels()["ovn.kubernetes.io/subnet"], "ovn-default");
    assert!(cr
        .finalizers()
        .iter()
        .any(|f| f == "kubeovn.io/kube-ovn-controller"));
    // Membership: p0 is on node1.
    let p0_uuid = {
        let c = w.nb.cache();
        let u = *c
            .table("Logical_Switch_Port")
            .unwrap()
            .by_name("p0.default")
            .next()
            .unwrap()
            .0;
        u
    };
    let pgs = rows(&w, "Port_Group");
    for pg in ["node.node1", "ovn.default.node1"] {
        let members = named(&pgs, pg)
            .unwrap()
            .get("ports")
            .and_then(Datum::as_set)
            .cloned()
            .unwrap_or_default();
        assert!(members.contains(&Atom::Uuid(p0_uuid)), "p0 not in {pg}");
    }

    // Delete: port, IP CR and address go.
    w.pods()
        .delete("p0", &DeleteParams::default())
        .await
        .unwrap();
    eventually("p0 cleaned", LONG, || async {
        let lsp = rows(&w, "Logical_Switch_Port");
        let gone_port = named(&lsp, "p0.default").is_none();
        let gone_cr = ips.get_opt("p0.default").await.ok()?.is_none();
        (gone_port && gone_cr).then_some(())
    })
    .await;

    // Restart on the converged NB: the new controller reconciles everything and writes nothing.
    w.kill_controller();
    let mut changes = w.nb.subscribe();
    w.start_controller();
    let pods_now = w
        .pods()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .len() as f64;
    eventually(
        "restarted controller reconciled every pod",
        LONG,
        || async {
            let n = w
                .counter("kube_ovn_controller_reconciles_total", "kind=\"pod\"")
                .await?;
            let subnets = w
                .counter("kube_ovn_controller_reconciles_total", "kind=\"subnet\"")
                .await?;
            (n >= pods_now && subnets >= 2.0).then_some(())
        },
    )
    .await;
    let writes = w
        .counter("kube_ovn_controller_nb_transactions_total", "")
        .await
        .unwrap_or(0.0);
    assert_eq!(
        writes, 0.0,
        "a restart on a converged NB wrote {writes} transactions"
    );
    let batches = World::nb_change_batches(&mut changes);
    assert_eq!(batches, 0, "the NB changed during the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_way_through_500_pods_restart_leaves_one_unique_address_each() {
    let mut w = World::new(2, false).await;
    w.start_controller();
    let total = 500;
    let pods = w.pods();
    let creator = tokio::spawn(async move {
        futures::stream::iter(0..total)
            .for_each_concurrent(16, |i| {
                let pods = pods.clone();
                async move {
                    pods.create(&PostParams::default(), &pod(&format!("m{i}"), None))
                        .await
                        .unwrap();
                }
            })
            .await;
    });
    // Kill -9 once a good part (but not all) of the pods is allocated.
    eventually("150 pods allocated", LONG, || async {
        let list = w.pods().list(&Default::default()).await.ok()?;
        let n = list
            .items
            .iter()
            .filter(|p| p.annotations().contains_key("ovn.kubernetes.io/allocated"))
            .count();
        (n >= 150).then_some(())
    })
    .await;
    w.kill_controller();
    creator.await.unwrap();
    w.start_controller();
    let list = eventually("all 500 allocated", Duration::from_secs(120), || async {
        let list = w.pods().list(&Default::default()).await.ok()?;
        let done = list
            .items
            .iter()
            .filter(|p| {
                p.annotations()
                    .get("ovn.kubernetes.io/allocated")
                    .map(String::as_str)
                    == Some("true")
            })
            .count();
        (done == total).then_some(list.items)
    })
    .await;
    let mut by_ip: BTreeMap<String, String> = BTreeMap::new();
    for p in &list {
        let ip = p.annotations()["ovn.kubernetes.io/ip_address"].clone();
        if let Some(other) = by_ip.insert(ip.clone(), p.name_any()) {
            panic!("{ip} given to both {other} and {}", p.name_any());
        }
    }
    // Every pod has exactly one port and one IP CR, agreeing with its annotation; nothing else.
    let ip_crs = eventually("IP CRs settle", LONG, || async {
        let crs: Vec<Ip> = Api::<Ip>::all(w.client.clone())
            .list(&Default::default())
            .await
            .ok()?
            .items;
        let pod_crs: Vec<Ip> = crs
            .into_iter()
            .filter(|c| !c.spec.namespace.is_empty())
            .collect();
        (pod_crs.len() == total).then_some(pod_crs)
    })
    .await;
    let want: BTreeMap<String, String> = list
        .iter()
        .map(|p: &Pod| {
            (
                format!("{}.default", p.name_any()),
                p.annotations()["ovn.kubernetes.io/ip_address"].clone(),
            )
        })
        .collect();
    for cr in &ip_crs {
        assert_eq!(
            want.get(&cr.name_any()),
            Some(&cr.spec.ip_address),
            "IP CR {} disagrees",
            cr.name_any()
        );
    }
    let ports = eventually("ports settle", LONG, || async {
        let lsp = rows(&w, "Logical_Switch_Port");
        let pod_ports: Vec<ovsdb::Row> = lsp
            .into_iter()
            .filter(|r| ids(r).contains_key("pod"))
            .collect();
        (pod_ports.len() == total).then_some(pod_ports)
    })
    .await;
    for port in &ports {
        let name = text(port.get("name"));
        let ip = text(port.get("addresses"))
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        assert_eq!(want.get(&name), Some(&ip), "port {name} disagrees");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_acts_and_a_standby_takes_over_after_a_crash() {
    use k8s_openapi::api::coordination::v1::Lease;
    let w = World::new(1, false).await;
    let a_addr = Loopback::claim().unwrap();
    let mut a = w.spawn_controller("ctl-a", &a_addr);
    let leases: Api<Lease> = Api::namespaced(w.client.clone(), "kube-system");
    let holder = || async {
        leases
            .get_opt("kube-ovn-controller")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    eventually("ctl-a leads", LONG, || async {
        (holder().await.as_deref() == Some("ctl-a")).then_some(())
    })
    .await;
    w.pods()
        .create(&PostParams::default(), &pod("before", Some("node1")))
        .await
        .unwrap();
    eventually("pod allocated by ctl-a", LONG, || async {
        annotated(&w, "before").await
    })
    .await;

    let b_addr = Loopback::claim().unwrap();
    let mut b = w.spawn_controller("ctl-b", &b_addr);
    // b listens on its metrics port before it campaigns, so from here on it reads the lease.
    eventually("ctl-b listens", LONG, || async {
        tokio::net::TcpStream::connect((b_addr.addr(), support::METRICS_PORT))
            .await
            .ok()
            .map(drop)
    })
    .await;
    // While a renews, b stays a standby for twice the lease duration: a standby that ignored
    // the renewals would take the lease one lease duration after its first look at it. Every
    // change to the lease in that window is seen through a watch.
    let window_end = tokio::time::Instant::now() + 2 * support::LEASE_DURATION;
    let mut changes = kube::runtime::watcher(leases.clone(), Default::default()).boxed();
    let mut renewals = BTreeSet::new();
    loop {
        let ev = match tokio::time::timeout_at(window_end, changes.next()).await {
            Err(_) => break,
            Ok(Some(Ok(ev))) => ev,
            Ok(other) => panic!("the lease watch failed: {other:?}"),
        };
        let (kube::runtime::watcher::Event::Apply(l) | kube::runtime::watcher::Event::InitApply(l)) =
            ev
        else {
            continue;
        };
        if l.name_any() != "kube-ovn-controller" {
            continue;
        }
        let spec = l.spec.unwrap_or_default();
        assert_eq!(
            spec.holder_identity.as_deref(),
            Some("ctl-a"),
            "the standby took the lease from a live leader"
        );
        renewals.insert(spec.renew_time.map(|t| t.0));
        assert!(b.try_wait().unwrap().is_none(), "the standby exited");
    }
    assert_eq!(
        holder().await.as_deref(),
        Some("ctl-a"),
        "the standby took the lease from a live leader"
    );
    assert!(b.try_wait().unwrap().is_none(), "the standby exited");
    assert!(
        renewals.len() >= 2,
        "the leader did not renew during the window ({renewals:?})"
    );
    let _ = a.kill();
    let _ = a.wait();
    eventually("ctl-b takes over", LONG, || async {
        (holder().await.as_deref() == Some("ctl-b")).then_some(())
    })
    .await;
    w.pods()
        .create(&PostParams::default(), &pod("after", Some("node1")))
        .await
        .unwrap();
    let got = eventually("pod allocated by ctl-b", LONG, || async {
        annotated(&w, "after").await
    })
    .await;
    let before = annotated(&w, "before").await.unwrap();
    assert_ne!(
        got["ovn.kubernetes.io/ip_address"],
        before["ovn.kubernetes.io/ip_address"]
    );
    let _ = b.kill();
    let _ = b.wait();
}

/// The controller serves every series of `kube_ovn_controller::metrics::UPSTREAM` (what
/// upstream's Grafana dashboard and our README promise) under upstream's names and label names,
/// on upstream's default port at the address `ENABLE_BIND_LOCAL_IP=true` and `POD_IPS` give it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_metric_names_and_labels_are_served() {
    use kube_ovn_controller::metrics::{UPSTREAM, UPSTREAM_COMMIT, UPSTREAM_SHARED};
    let expected = [UPSTREAM_SHARED, UPSTREAM].concat();
    let mut w = World::new(1, false).await;
    w.start_controller();
    w.pods()
        .create(&PostParams::default(), &pod("m1", Some("node1")))
        .await
        .unwrap();
    eventually("pod allocated", LONG, || async {
        annotated(&w, "m1").await
    })
    .await;
    let deadline = tokio::time::Instant::now() + LONG;
    let text = loop {
        let text = w.metrics().await.unwrap_or_default();
        let gaps = kube_ovn_sandbox::exposition::missing(&text, &expected);
        if gaps.is_empty() {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "series of upstream {UPSTREAM_COMMIT} not as upstream serves them: {gaps:#?}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The subnet gauges carry upstream's label values too.
    assert!(
        text.contains(r#"subnet_used_ip_count{subnet_name="ovn-default",protocol="IPv4",subnet_cidr="10.16.0.0/16"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"leader_election_master_status{name="kube-ovn-controller"} 1"#),
        "{text}"
    );
}
