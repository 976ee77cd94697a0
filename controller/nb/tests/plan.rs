//! The planner against a real OVN_Northbound ovsdb-server: plans apply cleanly, a converged NB
//! plans to nothing (zero writes), drift in owned columns is repaired with minimal updates,
//! children move between parents, and owned extras are removed while foreign rows stay.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube_ovn_nb::{Parent, Plan};
use ovsdb::{Atom, Datum, Remote, Replica, ReplicaConfig, Row, Transaction};

const NB: &str = "OVN_Northbound";

struct Server {
    _dir: tempfile::TempDir,
    sock: PathBuf,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nb.db");
    let schema = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../ovsdb/schemas/ovn-nb.ovsschema"
    );
    assert!(Command::new("ovsdb-tool")
        .args(["create", db.to_str().unwrap(), schema])
        .status()
        .unwrap()
        .success());
    let sock = dir.path().join("nb.sock");
    let child = Command::new("ovsdb-server")
        .arg(format!("--remote=punix:{}", sock.display()))
        .arg(format!("--unixctl={}", dir.path().join("ctl").display()))
        .arg("--no-chdir")
        .arg(&db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "ovsdb-server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    Server {
        _dir: dir,
        sock,
        child,
    }
}

async fn replica(s: &Server) -> Replica {
    let mut cfg = ReplicaConfig::new(vec![Remote::Unix(s.sock.clone())], NB);
    // As the controller's: scoped syncs read these indexes.
    cfg.external_id_keys = vec!["subnet".into(), "node".into()];
    Replica::start(cfg, Duration::from_secs(10)).await.unwrap()
}

fn row(pairs: &[(&'static str, Datum)]) -> Row {
    pairs.iter().map(|(k, v)| (*k, v.clone())).collect()
}

fn ids(pairs: &[(&str, &str)]) -> Datum {
    Datum::map(pairs.iter().map(|(k, v)| (Atom::from(*k), Atom::from(*v))))
}

/// The desired state used throughout: a switch with two ports, a router with two policies.
fn desire(plan: &mut Plan<'_>, ports: &[&str], policies: &[(i64, &str)]) {
    plan.ensure_root(
        "Logical_Switch",
        "sw",
        row(&[("external_ids", ids(&[("vendor", "kube-ovn")]))]),
    )
    .unwrap();
    for p in ports {
        plan.ensure_named_child(
            Parent {
                table: "Logical_Switch",
                name: "sw",
                column: "ports",
            },
            "Logical_Switch_Port",
            p,
            row(&[
                (
                    "addresses",
                    Datum::set([Atom::from(format!("0a:00:00:00:00:01 10.0.0.{}", p.len()))]),
                ),
                ("external_ids", ids(&[("ls", "sw"), ("vendor", "kube-ovn")])),
            ]),
        )
        .unwrap();
    }
    plan.ensure_root(
        "Logical_Router",
        "lr",
        row(&[("external_ids", ids(&[("vendor", "kube-ovn")]))]),
    )
    .unwrap();
    let desired: Vec<Row> = policies
        .iter()
        .map(|(prio, m)| {
            row(&[
                ("priority", Datum::from(*prio)),
                ("match", Datum::from(*m)),
                ("action", Datum::from("allow")),
                (
                    "external_ids",
                    ids(&[("subnet", "sw"), ("vendor", "kube-ovn")]),
                ),
            ])
        })
        .collect();
    plan.sync_keyed_children(
        Parent {
            table: "Logical_Router",
            name: "lr",
            column: "policies",
        },
        "Logical_Router_Policy",
        &["priority", "match"],
        desired,
        Some(("subnet", "sw")),
        |r| {
            r.get("external_ids")
                .and_then(|d| d.map_get("subnet"))
                .and_then(Atom::as_str)
                == Some("sw")
        },
    )
    .unwrap();
}

/// Plans with `f` until the plan is empty (the NB matches), applying each non-empty plan;
/// returns how many plans were applied. A planner that keeps finding "differences" in a
/// converged NB never gets there and fails the deadline.
async fn converge(r: &Replica, f: impl Fn(&mut Plan<'_>)) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut applied = 0;
    loop {
        let txn: Option<Transaction> = {
            let cache = r.cache();
            let mut plan = Plan::new(&cache, NB);
            f(&mut plan);
            (!plan.is_empty()).then(|| plan.into_transaction())
        };
        let Some(txn) = txn else { return applied };
        assert!(
            Instant::now() < deadline,
            "never converged after {applied} plans"
        );
        // Replica::transact returns once the cache shows the write (read-your-writes), so
        // re-planning right away must not repeat it: a converged NB plans to nothing.
        r.transact(&txn).await.unwrap();
        applied += 1;
    }
}

async fn dump(r: &Replica, table: &str) -> Vec<Row> {
    let cache = r.cache();
    cache
        .table(table)
        .map(|t| t.iter().map(|(_, r)| (**r).clone()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn converged_nb_plans_to_zero_writes_and_drift_is_repaired_minimally() {
    let s = server();
    let r = replica(&s).await;
    let applied = converge(&r, |p| {
        desire(
            p,
            &["a", "bb"],
            &[
                (31000, "ip4.dst == 10.0.0.0/24"),
                (30000, "ip4.dst == 1.1.1.1"),
            ],
        )
    })
    .await;
    assert_eq!(applied, 1, "one transaction creates everything");
    assert_eq!(dump(&r, "Logical_Switch_Port").await.len(), 2);
    assert_eq!(dump(&r, "Logical_Router_Policy").await.len(), 2);
    // Converged: the very next plan is empty.
    {
        let cache = r.cache();
        let mut plan = Plan::new(&cache, NB);
        desire(
            &mut plan,
            &["a", "bb"],
            &[
                (31000, "ip4.dst == 10.0.0.0/24"),
                (30000, "ip4.dst == 1.1.1.1"),
            ],
        );
        assert!(plan.is_empty(), "converged NB planned {} ops", plan.len());
    }

    // Someone changes a port's addresses and adds a foreign policy: the plan repairs only the
    // owned column and leaves the foreign policy alone.
    let mut txn = Transaction::new(NB);
    txn.update(
        "Logical_Switch_Port",
        vec![ovsdb::Condition::eq("name", Datum::from("a"))],
        row(&[(
            "addresses",
            Datum::set([Atom::from("0a:00:00:00:00:09 10.0.0.99")]),
        )]),
    );
    let foreign = txn.insert(
        "Logical_Router_Policy",
        row(&[
            ("priority", Datum::from(100i64)),
            ("match", Datum::from("ip4")),
            ("action", Datum::from("drop")),
        ]),
    );
    txn.mutate(
        "Logical_Router",
        vec![ovsdb::Condition::eq("name", Datum::from("lr"))],
        vec![ovsdb::Mutation::insert(
            "policies",
            Datum::set([Atom::NamedUuid(foreign)]),
        )],
    );
    r.transact(&txn).await.unwrap();
    {
        let cache = r.cache();
        let mut plan = Plan::new(&cache, NB);
        desire(
            &mut plan,
            &["a", "bb"],
            &[
                (31000, "ip4.dst == 10.0.0.0/24"),
                (30000, "ip4.dst == 1.1.1.1"),
            ],
        );
        assert_eq!(plan.len(), 1, "drift is one update, of port a's addresses");
    }
    let repaired = converge(&r, |p| {
        desire(
            p,
            &["a", "bb"],
            &[
                (31000, "ip4.dst == 10.0.0.0/24"),
                (30000, "ip4.dst == 1.1.1.1"),
            ],
        )
    })
    .await;
    assert_eq!(repaired, 1);
    let lsp_a = dump(&r, "Logical_Switch_Port")
        .await
        .into_iter()
        .find(|r| r["name"] == Datum::from("a"))
        .unwrap();
    assert_eq!(
        lsp_a["addresses"],
        Datum::set([Atom::from("0a:00:00:00:00:01 10.0.0.1")])
    );
    assert_eq!(
        dump(&r, "Logical_Router_Policy").await.len(),
        3,
        "the foreign policy must stay"
    );

    // Desire fewer: port bb is removed (detached, and so deleted), and the policy sync drops
    // the owned policy no longer desired.
    converge(&r, |p| {
        desire(p, &["a"], &[(31000, "ip4.dst == 10.0.0.0/24")]);
        if let Some(kube_ovn_nb::RowRef::Existing(u)) = p.lookup("Logical_Switch_Port", "bb") {
            p.remove_child("Logical_Switch", "ports", u).unwrap();
        }
    })
    .await;
    let ports: Vec<_> = dump(&r, "Logical_Switch_Port").await;
    assert_eq!(ports.len(), 1);
    let policies = dump(&r, "Logical_Router_Policy").await;
    let prios: Vec<_> = policies.iter().map(|p| p["priority"].clone()).collect();
    assert!(prios.contains(&Datum::from(31000i64)) && prios.contains(&Datum::from(100i64)));
    assert_eq!(policies.len(), 2);
}

#[tokio::test]
async fn a_port_moves_between_switches_in_one_transaction() {
    let s = server();
    let r = replica(&s).await;
    let put = |sw: &'static str| {
        move |p: &mut Plan<'_>| {
            for name in ["sw1", "sw2"] {
                p.ensure_root("Logical_Switch", name, Row::new()).unwrap();
            }
            p.ensure_named_child(
                Parent {
                    table: "Logical_Switch",
                    name: sw,
                    column: "ports",
                },
                "Logical_Switch_Port",
                "pod.ns",
                row(&[(
                    "addresses",
                    Datum::set([Atom::from("0a:00:00:00:00:02 10.0.0.2")]),
                )]),
            )
            .unwrap();
        }
    };
    converge(&r, put("sw1")).await;
    let uuid_before = {
        let c = r.cache();
        let u = *c
            .table("Logical_Switch_Port")
            .unwrap()
            .by_name("pod.ns")
            .next()
            .unwrap()
            .0;
        u
    };
    let moves = converge(&r, put("sw2")).await;
    assert_eq!(moves, 1, "the move must be one transaction");
    let c = r.cache();
    let holders: Vec<String> = c
        .table("Logical_Switch")
        .unwrap()
        .iter()
        .filter(|(_, row)| {
            row["ports"]
                .as_set()
                .is_some_and(|s| s.contains(&Atom::Uuid(uuid_before)))
        })
        .map(|(_, row)| row["name"].as_atom().unwrap().as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        holders,
        vec!["sw2".to_string()],
        "the same row, held by sw2 only"
    );
}

#[tokio::test]
async fn a_missing_parent_is_an_error_not_a_dangling_insert() {
    let s = server();
    let r = replica(&s).await;
    let cache = r.cache();
    let mut plan = Plan::new(&cache, NB);
    let err = plan
        .ensure_named_child(
            Parent {
                table: "Logical_Switch",
                name: "nope",
                column: "ports",
            },
            "Logical_Switch_Port",
            "x",
            Row::new(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert!(plan.is_empty());
}

/// Every object function is idempotent against a real NB: once applied, planning the same
/// desired state again writes nothing — for both gateway types and back.
#[tokio::test]
async fn object_plans_converge_to_zero_writes_for_each_gateway_type() {
    use kube_ovn_nb::objects::{self, NodeJoin, OverlaySubnet};
    let s = server();
    let r = replica(&s).await;
    let join: std::net::IpAddr = "100.64.0.2".parse().unwrap();
    let nodes = vec![NodeJoin {
        node: "node1".into(),
        join_ips: vec![join],
    }];
    let subnet = |p: &mut Plan<'_>| {
        objects::vpc_router(p, "ovn-cluster").unwrap();
        objects::overlay_subnet(
            p,
            &OverlaySubnet {
                name: "s2",
                router: "ovn-cluster",
                cidrs: vec!["10.68.0.0/29".into()],
                gateways: vec!["10.68.0.1".into()],
                load_balancers: None,
                detach_load_balancers: None,
                route_table: "",
            },
        )
        .unwrap();
    };
    for centralized in [false, true, false] {
        let applied = converge(&r, |p| {
            subnet(p);
            if centralized {
                objects::centralized_gateway(
                    p,
                    "ovn-cluster",
                    "s2",
                    &["10.68.0.0/29".into()],
                    &nodes,
                )
                .unwrap();
            } else {
                objects::distributed_gateway(p, "ovn-cluster", "s2", &["ip4"], &nodes).unwrap();
            }
        })
        .await;
        assert_eq!(
            applied, 1,
            "centralized={centralized}: one transaction, then nothing"
        );
        let policies = dump(&r, "Logical_Router_Policy").await;
        let gw: Vec<String> = policies
            .iter()
            .filter(|p| p["priority"] == Datum::from(29000i64))
            .map(|p| p["match"].as_atom().unwrap().as_str().unwrap().to_string())
            .collect();
        let want = if centralized {
            "ip4.src == 10.68.0.0/29"
        } else {
            "ip4.src == $s2.node1_ip4"
        };
        assert_eq!(gw, vec![want.to_string()]);
    }
}

/// A node's side of the distributed gateways equals what the subnets' own plans write (so the
/// two reconcilers never fight), and drops the rows of subnets no longer listed — leaving
/// other nodes' rows and centralized policies alone.
#[tokio::test]
async fn node_gateways_match_the_subnet_plans_and_drop_unlisted_subnets() {
    use kube_ovn_nb::objects::{self, DistributedSubnet, NodeJoin};
    let s = server();
    let r = replica(&s).await;
    let node = |n: &str, ip: &str| NodeJoin {
        node: n.into(),
        join_ips: vec![ip.parse().unwrap()],
    };
    let (n1, n2) = (node("node1", "100.64.0.2"), node("node2", "100.64.0.3"));
    let both = [n1.clone(), n2.clone()];
    converge(&r, |p| {
        objects::vpc_router(p, "ovn-cluster").unwrap();
        objects::distributed_gateway(p, "ovn-cluster", "a", &["ip4"], &both).unwrap();
        objects::distributed_gateway(p, "ovn-cluster", "b", &["ip4"], &both).unwrap();
        objects::centralized_gateway(
            p,
            "ovn-cluster",
            "c",
            &["10.9.0.0/24".into()],
            std::slice::from_ref(&n1),
        )
        .unwrap();
    })
    .await;
    let gw_matches = |rows: &[Row]| -> Vec<String> {
        let mut m: Vec<String> = rows
            .iter()
            .filter(|p| p["priority"] == Datum::from(29000i64))
            .map(|p| p["match"].as_atom().unwrap().as_str().unwrap().to_string())
            .collect();
        m.sort();
        m
    };
    let before = gw_matches(&dump(&r, "Logical_Router_Policy").await);
    let subnets = |names: &[&str]| -> Vec<DistributedSubnet> {
        names
            .iter()
            .map(|n| DistributedSubnet {
                name: n.to_string(),
                families: vec!["ip4"],
            })
            .collect()
    };
    // Stating node1's side for both subnets changes nothing.
    {
        let cache = r.cache();
        let mut plan = Plan::new(&cache, "OVN_Northbound");
        objects::node_gateways(&mut plan, "ovn-cluster", &n1, &subnets(&["a", "b"])).unwrap();
        assert!(
            plan.is_empty(),
            "the subnets' plans already wrote node1's rows"
        );
    }
    // Subnet b no longer distributed: node1's rows of b go, node2's and the rest stay.
    converge(&r, |p| {
        objects::node_gateways(p, "ovn-cluster", &n1, &subnets(&["a"])).unwrap();
    })
    .await;
    let after = gw_matches(&dump(&r, "Logical_Router_Policy").await);
    let gone: Vec<&String> = before.iter().filter(|m| !after.contains(m)).collect();
    assert_eq!(gone, vec!["ip4.src == $b.node1_ip4"]);
    assert!(after.contains(&"ip4.src == 10.9.0.0/24".to_string()));
    let groups: Vec<String> = dump(&r, "Port_Group")
        .await
        .iter()
        .map(|g| g["name"].as_atom().unwrap().as_str().unwrap().to_string())
        .collect();
    assert!(!groups.contains(&"b.node1".to_string()), "{groups:?}");
    assert!(groups.contains(&"b.node2".to_string()), "{groups:?}");
    assert!(groups.contains(&"a.node1".to_string()), "{groups:?}");
}

/// A replica that does not monitor a table cannot see its rows: planning a row there is an
/// error, where an insert would have duplicated the row the NB already holds.
#[tokio::test]
async fn an_unmonitored_table_is_an_error_not_a_duplicate_row() {
    use kube_ovn_nb::{objects, PlanError};
    let s = server();
    let full = replica(&s).await;
    converge(&full, |p| objects::vpc_router(p, "ovn-cluster").unwrap()).await;
    let mut cfg = ReplicaConfig::new(vec![Remote::Unix(s.sock.clone())], NB);
    cfg.tables = vec!["Logical_Switch".into()];
    let partial = Replica::start(cfg, Duration::from_secs(10)).await.unwrap();
    {
        let cache = partial.cache();
        let mut plan = Plan::new(&cache, NB);
        assert_eq!(
            objects::vpc_router(&mut plan, "ovn-cluster"),
            Err(PlanError::Unmonitored {
                table: "Logical_Router".into()
            })
        );
        assert!(plan.is_empty());
    }
    assert_eq!(dump(&full, "Logical_Router").await.len(), 1);
}

/// The typed reader gives back the owner, switch and addresses of the pod and node ports the
/// object functions wrote, and skips the router patch port.
#[tokio::test]
async fn owned_ports_read_back_what_the_object_functions_wrote() {
    use kube_ovn_nb::objects::{self, NodeObjects, OverlaySubnet, PodPort};
    use kube_ovn_nb::ports::{owned_ports, pod_port_names, OwnedPort, PortOwner};
    let s = server();
    let r = replica(&s).await;
    converge(&r, |p| {
        objects::vpc_router(p, "ovn-cluster").unwrap();
        for (name, cidr, gw) in [
            ("join", "100.64.0.0/16", "100.64.0.1"),
            ("ovn-default", "10.16.0.0/16", "10.16.0.1"),
        ] {
            objects::overlay_subnet(
                p,
                &OverlaySubnet {
                    name,
                    router: "ovn-cluster",
                    cidrs: vec![cidr.into()],
                    gateways: vec![gw.into()],
                    load_balancers: None,
                    detach_load_balancers: None,
                    route_table: "",
                },
            )
            .unwrap();
        }
        objects::node(
            p,
            &NodeObjects {
                node: "n1",
                join_switch: "join",
                router: "ovn-cluster",
                mac: "0a:00:00:00:00:02",
                join_ips: vec!["100.64.0.2".parse().unwrap()],
                node_ips: vec!["172.18.0.2".parse().unwrap()],
                local_dns_ips: &[],
            },
        )
        .unwrap();
        objects::pod_port(
            p,
            &PodPort {
                name: "web.default",
                switch: "ovn-default",
                pod_key: "default/web",
                mac: "0a:00:00:00:00:03",
                ips: vec!["10.16.0.2".parse().unwrap()],
                port_security: false,
                vips: Vec::new(),
                security_groups: Vec::new(),
                custom_vpc: false,
            },
        )
        .unwrap();
    })
    .await;
    let cache = r.cache();
    let mut ports: Vec<OwnedPort<'_>> = owned_ports(&cache).unwrap().collect();
    ports.sort_by_key(|p| p.name);
    let seen: Vec<(&str, PortOwner<'_>, Option<&str>, Option<&str>)> = ports
        .iter()
        .map(|p| (p.name, p.owner, p.switch, p.addresses))
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                "node-n1",
                PortOwner::Node("n1"),
                Some("join"),
                Some("0a:00:00:00:00:02 100.64.0.2")
            ),
            (
                "web.default",
                PortOwner::Pod("default/web"),
                Some("ovn-default"),
                Some("0a:00:00:00:00:03 10.16.0.2")
            ),
        ]
    );
    assert_eq!(
        pod_port_names(&cache, "default/web").unwrap(),
        vec!["web.default".to_string()]
    );
    assert!(pod_port_names(&cache, "default/gone").unwrap().is_empty());
}

/// The members of port group `pg` that name no port, as the server holds them.
fn dangling(r: &Replica, pg: &str) -> Vec<ovsdb::Uuid> {
    let cache = r.cache();
    let ports = cache.table("Logical_Switch_Port").unwrap();
    cache
        .table("Port_Group")
        .unwrap()
        .by_name(pg)
        .flat_map(|(_, g)| {
            g.get("ports")
                .and_then(Datum::as_set)
                .map(|s| s.iter().filter_map(Atom::as_uuid).collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .filter(|u| ports.get(u).is_none())
        .collect()
}

/// A port deleted in the transaction that also changes its group's members (two reconciles
/// batched into one commit, or one reconcile moving pods) leaves no member behind: OVS 3.1's
/// ovsdb-server would keep the weak reference to the collected port (shown first, with a raw
/// transaction, when this server has that behaviour), so `delete_port` takes the port out of
/// its groups itself.
#[tokio::test]
async fn a_deleted_port_leaves_its_groups_even_when_they_change_in_the_same_commit() {
    let s = server();
    let r = replica(&s).await;
    let names = ["a", "b", "c", "d"];
    converge(&r, |plan| {
        plan.ensure_root("Logical_Switch", "sw", row(&[])).unwrap();
        for n in names {
            plan.ensure_named_child(
                Parent {
                    table: "Logical_Switch",
                    name: "sw",
                    column: "ports",
                },
                "Logical_Switch_Port",
                n,
                row(&[]),
            )
            .unwrap();
        }
        for pg in ["pg1", "pg2"] {
            plan.ensure_root("Port_Group", pg, row(&[])).unwrap();
        }
    })
    .await;
    let port = |n: &str| {
        Atom::Uuid(
            r.cache()
                .table("Logical_Switch_Port")
                .unwrap()
                .by_name(n)
                .next()
                .map(|(u, _)| *u)
                .unwrap(),
        )
    };
    let (a, b, c, d) = (port("a"), port("b"), port("c"), port("d"));
    converge(&r, |plan| {
        plan.set_members("Port_Group", "pg1", "ports", &[a.clone(), b.clone()], &[])
            .unwrap();
        plan.set_members("Port_Group", "pg2", "ports", std::slice::from_ref(&c), &[])
            .unwrap();
    })
    .await;

    // Raw: port a leaves its switch while pg1 gains d, in one transaction.
    let mut raw = Transaction::new(NB);
    raw.mutate(
        "Logical_Switch",
        vec![ovsdb::Condition::eq("name", "sw")],
        vec![ovsdb::Mutation::delete(
            "ports",
            Datum::set(vec![a.clone()]),
        )],
    );
    raw.mutate(
        "Port_Group",
        vec![ovsdb::Condition::eq("name", "pg1")],
        vec![ovsdb::Mutation::insert(
            "ports",
            Datum::set(vec![d.clone()]),
        )],
    );
    r.transact(&raw).await.unwrap();
    println!(
        "this ovsdb-server keeps {} weak reference(s) to a port collected in a transaction that \
         also changed the group",
        dangling(&r, "pg1").len()
    );

    // Planned: port b deleted while pg1 loses d and pg2 gains d, in one plan.
    let txn = {
        let cache = r.cache();
        let mut plan = Plan::new(&cache, NB);
        kube_ovn_nb::objects::delete_port(&mut plan, "b").unwrap();
        plan.set_members("Port_Group", "pg1", "ports", &[], std::slice::from_ref(&d))
            .unwrap();
        plan.set_members("Port_Group", "pg2", "ports", std::slice::from_ref(&d), &[])
            .unwrap();
        plan.into_transaction()
    };
    r.transact(&txn).await.unwrap();
    let b_uuid = b.as_uuid().unwrap();
    for pg in ["pg1", "pg2"] {
        assert!(
            !dangling(&r, pg).contains(&b_uuid),
            "{pg} still names the deleted port b"
        );
    }
    assert!(r
        .cache()
        .table("Logical_Switch_Port")
        .unwrap()
        .get(&b_uuid)
        .is_none());
}
