//! Kubernetes' netpol e2e cases as reachability matrices with real packets through kube-ovn-rs:
//! one sandbox (two nodes), namespaces x, y, z with pods a, b, c each serving TCP and UDP on 80
//! and 81, and case after case: create the policies, converge to the expected matrix, for some
//! cases change a policy (or a label, or a pod) while traffic flows and converge again, delete
//! the policies and converge back to all-allowed. Every converge time is printed, with
//! min/median/max at the end. Finally, with every policy gone, the NB must hold no port
//! group, address set or ACL of a NetworkPolicy.
//!
//! SCTP cannot be probed here when the kernel has no SCTP (checked at the start and printed);
//! the e2e cases about SCTP that matter for isolation — an SCTP-only allow must not open TCP
//! or UDP — are probed with TCP and UDP.

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::matrix::{
    network_policy, summary, vswitchd_crashes, CrashWatch, Matrix, Peer, World,
};
use kube_ovn_sandbox::workload::Proto;
use kube_ovn_sandbox::{leftovers, probe, Sandbox, SandboxConfig};
use serde_json::{json, Value};

/// How long one change may take to show in the data plane.
const CONVERGE: Duration = Duration::from_secs(30);
/// The first all-allowed round also waits for tunnels and flows of fresh pods.
const FIRST_CONVERGE: Duration = Duration::from_secs(60);

/// Converge times of the run — (case, step, seconds) — and the NB port groups of policies
/// seen after each step.
struct Times {
    nb: String,
    steps: Vec<(String, String, f64)>,
    np_pgs: Vec<String>,
    /// Steps during which an ovs-vswitchd crashed (and was restarted by its monitor): their
    /// times measure OVS's recovery, not the policy, and are kept out of the figures.
    crashed: Vec<(String, String, f64, usize)>,
    crashes: CrashWatch,
}

impl Times {
    /// Converges `world` on `expected` (across an ovs-vswitchd abort, see [`CrashWatch`]), fails
    /// the test with the grid if it does not, and records and prints the time.
    async fn step(&mut self, world: &World, case: &str, step: &str, expected: &Matrix) {
        let done = self
            .crashes
            .converge(world, expected, CONVERGE, &format!("{case}: {step}"))
            .await;
        let crashed = done.crashed;
        match done.outcome {
            Ok(c) => {
                let after = c
                    .not_at
                    .map(|t| format!("after {:.2}s, ", t.as_secs_f64()))
                    .unwrap_or_default();
                println!(
                    "  {case}: {step}: {after}by {:.2}s ({} rounds)  [{}]{}",
                    c.by.as_secs_f64(),
                    c.rounds,
                    summary(expected),
                    if crashed > 0 {
                        format!(" (ovs-vswitchd crashed {crashed}x meanwhile: not counted)")
                    } else {
                        String::new()
                    }
                );
                let row = (case.to_string(), step.to_string(), c.by.as_secs_f64());
                if crashed > 0 {
                    self.crashed.push((row.0, row.1, row.2, crashed));
                } else {
                    self.steps.push(row);
                }
                for pg in nb_np_port_groups(&self.nb) {
                    if !self.np_pgs.contains(&pg) {
                        self.np_pgs.push(pg);
                    }
                }
            }
            Err(e) => panic!(
                "case {case:?}, step {step:?}: {e}\novs-vswitchd aborts since the previous step began: {}\n{}{}{}",
                done.recent,
                world.explain(&e.cells).await,
                nb_acls(&self.nb),
                probe::report(world.state())
            ),
        }
    }

    /// Deletes every NetworkPolicy and converges back to all-allowed.
    async fn clean(&mut self, world: &World, case: &str) {
        world
            .delete_all("networking.k8s.io/v1", "NetworkPolicy")
            .await
            .unwrap();
        self.step(world, case, "deleted, all allowed", &world.all_allowed())
            .await;
    }
}

fn np(ns: &str, name: &str, spec: Value) -> Value {
    network_policy(ns, name, spec)
}

/// `a.b.c.d/len` of the network holding `ip`.
fn cidr(ip: IpAddr, len: u8) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            format!("{}/{len}", std::net::Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            format!("{}/{len}", std::net::Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

fn host(ip: IpAddr) -> String {
    cidr(ip, if ip.is_ipv4() { 32 } else { 128 })
}

/// The shortest prefix of `ip` that covers every pod: the "large CIDR around the pod" of the
/// e2e ipBlock cases, which must hold the other pods too.
fn covering(world: &World, ip: IpAddr) -> String {
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    let mut len = bits;
    for p in world.pods() {
        let other = world.ip(&p.to_string());
        while len > 0 && cidr(other, len) != cidr(ip, len) {
            len -= 1;
        }
    }
    cidr(ip, len)
}

/// Whether this kernel can open SCTP sockets (it needs the sctp module).
fn sctp_available() -> bool {
    // SAFETY: socket(2) with constant arguments; the descriptor is closed right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP) };
    if fd >= 0 {
        // SAFETY: fd was just returned by socket(2).
        unsafe { libc::close(fd) };
    }
    fd >= 0
}

/// The rows of NB table `table`, as JSON objects by column (`ovn-nbctl --format=json`).
fn nb_list(nb: &str, table: &str) -> Vec<Value> {
    let out = Command::new("ovn-nbctl")
        .args([
            &format!("--db={nb}"),
            "--timeout=10",
            "--format=json",
            "list",
            table,
        ])
        .output()
        .expect("ovn-nbctl runs");
    assert!(
        out.status.success(),
        "ovn-nbctl list {table}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("ovn-nbctl json");
    let headings: Vec<String> = v["headings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect();
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let o: serde_json::Map<String, Value> = headings
                .iter()
                .cloned()
                .zip(row.as_array().unwrap().iter().cloned())
                .collect();
            Value::Object(o)
        })
        .collect()
}

/// `external_ids:<key>` of an NB row (OVSDB JSON maps are `["map", [[k, v], …]]`).
fn ext(row: &Value, key: &str) -> Option<String> {
    row["external_ids"][1]
        .as_array()?
        .iter()
        .find(|kv| kv[0] == key)
        .and_then(|kv| kv[1].as_str().map(str::to_string))
}

/// A string column of an NB row (empty when unset).
fn text(row: &Value, col: &str) -> String {
    row[col].as_str().map(str::to_string).unwrap_or_default()
}

/// The NB's port groups and ACLs, one line each, for a failure's report.
fn nb_acls(nb: &str) -> String {
    let mut out = String::from("--- NB port groups and ACLs\n");
    for pg in nb_list(nb, "Port_Group") {
        let ports = match &pg["ports"] {
            Value::Array(a) if a.first() == Some(&json!("set")) => {
                a[1].as_array().map(Vec::len).unwrap_or(0)
            }
            Value::Array(_) => 1,
            _ => 0,
        };
        out += &format!(
            "Port_Group {} ports={ports} np={:?}\n",
            text(&pg, "name"),
            ext(&pg, "np")
        );
    }
    for acl in nb_list(nb, "ACL") {
        out += &format!(
            "ACL {} {} {} {:?} parent={:?}\n",
            text(&acl, "direction"),
            acl["priority"],
            text(&acl, "action"),
            text(&acl, "match"),
            ext(&acl, "parent")
        );
    }
    out
}

/// Whether an NB port group is a NetworkPolicy's: marked `external_ids:np=<ns>/<np>`. The
/// nodes' and the per-subnet-per-node port groups carry an `np` too (upstream's marks), but
/// also `external_ids:node`.
fn is_policy_pg(pg: &Value) -> bool {
    ext(pg, "np").is_some() && ext(pg, "node").is_none()
}

/// The port groups of NetworkPolicies now in the NB.
fn nb_np_port_groups(nb: &str) -> Vec<String> {
    nb_list(nb, "Port_Group")
        .iter()
        .filter(|pg| is_policy_pg(pg))
        .map(|pg| text(pg, "name"))
        .collect()
}

/// The NetworkPolicy rows left in the NB: port groups of policies ([`is_policy_pg`]), address
/// sets marked `external_ids:np`, ACLs of a policy's port group (`external_ids:parent` naming one of
/// `np_pgs`, or named like a policy's allows `np/…`), and the nodes' policy allows (priority
/// 3000 on a node's port group), which must go with the last policy.
fn nb_policy_rows(nb: &str, np_pgs: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    for pg in nb_list(nb, "Port_Group") {
        if is_policy_pg(&pg) {
            left.push(format!(
                "Port_Group {} np={:?}",
                text(&pg, "name"),
                ext(&pg, "np")
            ));
        }
    }
    for set in nb_list(nb, "Address_Set") {
        if let Some(np) = ext(&set, "np") {
            left.push(format!("Address_Set {} np={np}", text(&set, "name")));
        }
    }
    for acl in nb_list(nb, "ACL") {
        let parent = ext(&acl, "parent").unwrap_or_default();
        let name = text(&acl, "name");
        let prio = acl["priority"].as_i64().unwrap_or_default();
        let node_allow = prio == 3000 && parent.starts_with("node.");
        if np_pgs.contains(&parent) || name.starts_with("np/") || node_allow {
            left.push(format!(
                "ACL parent={parent} priority={prio} name={name:?} match={:?}",
                text(&acl, "match")
            ));
        }
    }
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn netpol_e2e_cases_as_reachability_matrices() {
    let start = Instant::now();
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(KubeOvnBuild::of_test_binary().expect("kube-ovn build"));
    let (run_dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let nb = sandbox.state().central.nb.clone();
    let mut world = World::build(sandbox.client(), sandbox.state())
        .await
        .expect("the matrix's namespaces and pods");
    println!(
        "sandbox and 9 pods up in {:.1}s; SCTP {}",
        start.elapsed().as_secs_f64(),
        if sctp_available() {
            "available (not probed: the servers speak TCP and UDP)"
        } else {
            "not available in this kernel: SCTP cells are not probed, SCTP-only policies are checked not to open TCP/UDP"
        }
    );
    for p in world.pods() {
        let k = p.to_string();
        print!("{k}@{}={} ", world.node_of(&k), world.ip(&k));
    }
    println!();
    let mut times = Times {
        nb: nb.clone(),
        steps: Vec::new(),
        np_pgs: Vec::new(),
        crashed: Vec::new(),
        crashes: CrashWatch::default(),
    };
    let first = world
        .converge(&world.all_allowed(), FIRST_CONVERGE)
        .await
        .unwrap_or_else(|e| panic!("before any policy: {e}"));
    println!(
        "all allowed before any policy by {:.2}s",
        first.by.as_secs_f64()
    );

    // --- default deny ingress: nothing reaches x.
    let case = "default-deny-ingress";
    world
        .apply(np(
            "x",
            "deny-ingress",
            json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect(&Peer::any(), &Peer::ns("x"), false);
    times.step(&world, case, "x isolated for ingress", &m).await;
    times.clean(&world, case).await;

    // --- default deny egress: nothing leaves x (no DNS in the sandbox, so nothing to let
    // through for it).
    let case = "default-deny-egress";
    world
        .apply(np(
            "x",
            "deny-egress",
            json!({"podSelector": {}, "policyTypes": ["Egress"]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect(&Peer::ns("x"), &Peer::any(), false);
    times.step(&world, case, "x isolated for egress", &m).await;
    times.clean(&world, case).await;

    // --- deny all, then allow all on top (policies are a union of allows).
    let case = "deny-all+allow-all";
    world
        .apply(np(
            "x",
            "deny-all",
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect(&Peer::any(), &Peer::ns("x"), false)
        .expect(&Peer::ns("x"), &Peer::any(), false);
    times.step(&world, case, "x isolated both ways", &m).await;
    world
        .apply(np(
            "x",
            "allow-all",
            json!({"podSelector": {}, "ingress": [{}], "egress": [{}],
                   "policyTypes": ["Ingress", "Egress"]}),
        ))
        .await
        .unwrap();
    times
        .step(&world, case, "allow-all added", &world.all_allowed())
        .await;
    times.clean(&world, case).await;

    // --- podSelector, then the policy updated in place to another pod.
    let case = "podSelector+update";
    let spec = |who: &str| {
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": who}}}]}]})
    };
    world
        .apply(np("x", "x-a-allows-x-b", spec("b")))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect_to("x/a", false).expect_pair("x/b", "x/a", true);
    times.step(&world, case, "only x/b reaches x/a", &m).await;
    world
        .apply(np("x", "x-a-allows-x-b", spec("c")))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect_to("x/a", false).expect_pair("x/c", "x/a", true);
    times
        .step(&world, case, "updated: only x/c reaches x/a", &m)
        .await;
    times.clean(&world, case).await;

    // --- namespaceSelector on the automatic name label, then matchExpressions NotIn.
    let case = "namespaceSelector";
    world
        .apply(np(
            "x",
            "allow-from-y",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"namespaceSelector": {"matchLabels":
                       {"kubernetes.io/metadata.name": "y"}}}]}]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect_to("x/a", false)
        .expect(&Peer::ns("y"), &Peer::pod("x/a"), true);
    times.step(&world, case, "only y reaches x/a", &m).await;
    world
        .apply(np(
            "x",
            "allow-from-y",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                       {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["x"]}]}}]}]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect(&Peer::ns("x"), &Peer::pod("x/a"), false);
    times
        .step(&world, case, "updated: NotIn x, y and z reach x/a", &m)
        .await;
    times.clean(&world, case).await;

    // --- podSelector AND namespaceSelector in one peer, then as two peers (OR).
    let case = "pod-and-namespace-vs-or";
    let not_x = json!({"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["x"]}]});
    let pod_b = json!({"matchLabels": {"pod": "b"}});
    world
        .apply(np(
            "x",
            "ns-and-pod",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"namespaceSelector": not_x, "podSelector": pod_b}]}]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect_to("x/a", false)
        .expect_pair("y/b", "x/a", true)
        .expect_pair("z/b", "x/a", true);
    times
        .step(&world, case, "AND: only y/b and z/b reach x/a", &m)
        .await;
    world
        .apply(np(
            "x",
            "ns-and-pod",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"namespaceSelector": not_x}, {"podSelector": pod_b}]}]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect_pair("x/c", "x/a", false);
    times
        .step(&world, case, "updated to OR: all but x/c reach x/a", &m)
        .await;
    times.clean(&world, case).await;

    // --- matchExpressions on pods and namespaces together (Multiple PodSelectors and
    // NamespaceSelectors).
    let case = "matchExpressions";
    world
        .apply(np(
            "x",
            "allow-ns-y-z-pod-b-c",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"namespaceSelector": not_x,
                       "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b", "c"]}]}}]}]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect_to("x/a", false);
    for k in ["y/b", "y/c", "z/b", "z/c"] {
        m.expect_pair(k, "x/a", true);
    }
    times.step(&world, case, "y,z pods b,c reach x/a", &m).await;
    times.clean(&world, case).await;

    // --- ipBlock with except, ingress: a large block around y/b but y/b itself.
    let case = "ipBlock-except-ingress";
    let yb = world.ip("y/b");
    world
        .apply(np(
            "x",
            "allow-cidr-but-yb",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"ipBlock": {"cidr": covering(&world, yb), "except": [host(yb)]}}]}]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect_pair("y/b", "x/a", false);
    times.step(&world, case, "all but y/b reach x/a", &m).await;
    times.clean(&world, case).await;

    // --- ipBlock egress: only to x/b's address; then updated to a large block except x/b.
    let case = "ipBlock-egress+except";
    let xb = world.ip("x/b");
    world
        .apply(np(
            "x",
            "egress-cidr",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "egress": [{"to": [{"ipBlock": {"cidr": host(xb)}}]}]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect_from("x/a", false)
        .expect_pair("x/a", "x/b", true)
        // No policyTypes with egress rules: ingress is isolated too.
        .expect_to("x/a", false);
    times
        .step(&world, case, "x/a reaches only x/b (and nobody x/a)", &m)
        .await;
    world
        .apply(np(
            "x",
            "egress-cidr",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                   "egress": [{"to": [{"ipBlock": {"cidr": covering(&world, xb), "except": [host(xb)]}}]}]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect_pair("x/a", "x/b", false);
    times
        .step(&world, case, "updated: x/a reaches all but x/b", &m)
        .await;
    times.clean(&world, case).await;

    // --- ports by number: x/a open to y on TCP 81 only; a second policy adds TCP 80 (the
    // stacked policies of the e2e suite: allows are a union).
    let case = "port-number+stacked";
    let from_y_on = |port: u16| {
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                            "ports": [{"protocol": "TCP", "port": port}]}]})
    };
    world
        .apply(np("x", "allow-y-81", from_y_on(81)))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect_to("x/a", false);
    m.service(81, Proto::Tcp)
        .expect(&Peer::ns("y"), &Peer::pod("x/a"), true);
    times
        .step(&world, case, "y reaches x/a on TCP/81 only", &m)
        .await;
    world
        .apply(np("x", "allow-y-80", from_y_on(80)))
        .await
        .unwrap();
    m.service(80, Proto::Tcp)
        .expect(&Peer::ns("y"), &Peer::pod("x/a"), true);
    times
        .step(&world, case, "second policy: TCP/80 too", &m)
        .await;
    times.clean(&world, case).await;

    // --- named ports: ingress to x on serve-81-tcp from anywhere; egress from x on
    // serve-80-udp only.
    let case = "named-ports";
    world
        .apply(np(
            "x",
            "allow-named-81",
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect(&Peer::any(), &Peer::ns("x"), false);
    m.service(81, Proto::Tcp)
        .expect(&Peer::any(), &Peer::ns("x"), true);
    times
        .step(&world, case, "x open on serve-81-tcp only", &m)
        .await;
    world
        .delete_all("networking.k8s.io/v1", "NetworkPolicy")
        .await
        .unwrap();
    world
        .apply(np(
            "x",
            "egress-named-80-udp",
            json!({"podSelector": {}, "policyTypes": ["Egress"],
                   "egress": [{"ports": [{"protocol": "UDP", "port": "serve-80-udp"}]}]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect(&Peer::ns("x"), &Peer::any(), false);
    m.service(80, Proto::Udp)
        .expect(&Peer::ns("x"), &Peer::any(), true);
    times
        .step(&world, case, "x sends on serve-80-udp only", &m)
        .await;
    times.clean(&world, case).await;

    // --- endPort ranges: TCP 80-81 from anywhere, then updated to UDP 79-80.
    let case = "endPort";
    world
        .apply(np(
            "x",
            "range",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"ports": [{"protocol": "TCP", "port": 80, "endPort": 81}]}]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.proto(Proto::Udp).expect_to("x/a", false);
    times
        .step(&world, case, "TCP 80-81 open, UDP closed", &m)
        .await;
    world
        .apply(np(
            "x",
            "range",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"ports": [{"protocol": "UDP", "port": 79, "endPort": 80}]}]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect_to("x/a", false);
    m.service(80, Proto::Udp).expect_to("x/a", true);
    times
        .step(&world, case, "updated: UDP 79-80 open only", &m)
        .await;
    times.clean(&world, case).await;

    // --- protocol only: UDP on any port, then updated to TCP on any port.
    let case = "protocol-only";
    let proto_only = |proto: &str| {
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"ports": [{"protocol": proto}]}]})
    };
    world
        .apply(np("x", "by-proto", proto_only("UDP")))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.proto(Proto::Tcp).expect_to("x/a", false);
    times.step(&world, case, "UDP only", &m).await;
    world
        .apply(np("x", "by-proto", proto_only("TCP")))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.proto(Proto::Udp).expect_to("x/a", false);
    times.step(&world, case, "updated: TCP only", &m).await;
    times.clean(&world, case).await;

    // --- an SCTP-only allow must not open TCP or UDP.
    let case = "sctp-is-not-tcp";
    world
        .apply(np(
            "x",
            "deny-ingress",
            json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
        ))
        .await
        .unwrap();
    world
        .apply(np(
            "x",
            "allow-sctp-81",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"ports": [{"protocol": "SCTP", "port": 81}]}]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect(&Peer::any(), &Peer::ns("x"), false);
    times
        .step(&world, case, "x closed to TCP and UDP", &m)
        .await;
    times.clean(&world, case).await;

    // --- ingress and egress in one policy.
    let case = "ingress+egress";
    world
        .apply(np(
            "x",
            "in-and-out",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "policyTypes": ["Egress", "Ingress"],
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
                   "egress": [{"ports": [{"port": 80}]}]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect_to("x/a", false)
        .expect_pair("x/b", "x/a", true)
        .expect_from("x/a", false);
    m.service(80, Proto::Tcp).expect_from("x/a", true);
    times
        .step(&world, case, "x/a: in from x/b, out on TCP/80", &m)
        .await;
    times.clean(&world, case).await;

    // --- egress denied on the client even where the server allows it.
    let case = "client-side-egress-deny";
    world
        .apply(np(
            "x",
            "allow-to-y-a",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                                       "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
        ))
        .await
        .unwrap();
    for (name, target) in [("allow-xa-on-ya", "a"), ("allow-xa-on-yb", "b")] {
        world
            .apply(np(
                "y",
                name,
                json!({"podSelector": {"matchLabels": {"pod": target}},
                       "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "x"}},
                                              "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
            ))
            .await
            .unwrap();
    }
    let mut m = world.all_allowed();
    // No policyTypes and an egress rule: x/a is isolated for ingress too.
    m.expect_from("x/a", false)
        .expect_to("x/a", false)
        .expect_to("y/a", false)
        .expect_to("y/b", false)
        .expect_pair("x/a", "y/a", true);
    times
        .step(&world, case, "x/a reaches y/a only, y/b unreachable", &m)
        .await;
    times.clean(&world, case).await;

    // --- policyTypes defaulting: an egress rule without policyTypes isolates both ways.
    let case = "policyTypes-default";
    world
        .apply(np(
            "x",
            "egress-only-rules",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect_from("x/a", false)
        .expect_to("x/a", false)
        .expect_pair("x/a", "x/b", true);
    times
        .step(&world, case, "x/a isolated both ways, out to x/b only", &m)
        .await;
    times.clean(&world, case).await;

    // --- pod label changes: a target labelled into a deny, a peer labelled into an allow.
    let case = "pod-labels";
    world
        .apply(np(
            "x",
            "deny-isolated",
            json!({"podSelector": {"matchLabels": {"target": "isolated"}}, "policyTypes": ["Ingress"]}),
        ))
        .await
        .unwrap();
    world
        .apply(np(
            "x",
            "allow-updated",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b", "pod2": "updated"}}}]}]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect_to("x/a", false);
    times.step(&world, case, "x/a closed", &m).await;
    world
        .label_pod("x/b", json!({"pod2": "updated"}))
        .await
        .unwrap();
    m.expect_pair("x/b", "x/a", true);
    times
        .step(&world, case, "x/b labelled in: reaches x/a", &m)
        .await;
    world
        .label_pod("y/c", json!({"target": "isolated"}))
        .await
        .unwrap();
    times
        .step(&world, case, "y/c labelled like x's deny: no effect", &m)
        .await;
    world
        .label_pod("x/c", json!({"target": "isolated"}))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect_to("x/a", false)
        .expect_pair("x/b", "x/a", true)
        .expect_to("x/c", false);
    times
        .step(&world, case, "x/c labelled into the deny", &m)
        .await;
    world.label_pod("x/b", json!({"pod2": null})).await.unwrap();
    world
        .label_pod("x/c", json!({"target": null}))
        .await
        .unwrap();
    world
        .label_pod("y/c", json!({"target": null}))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect_to("x/a", false);
    times
        .step(&world, case, "labels removed: x/b out, x/c open", &m)
        .await;
    times.clean(&world, case).await;

    // --- namespace label change moves y in and out of a namespaceSelector.
    let case = "namespace-labels";
    world
        .apply(np(
            "x",
            "allow-updated-ns",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns2": "updated"}}}]}]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect_to("x/a", false);
    times.step(&world, case, "x/a closed", &m).await;
    world
        .label_namespace("y", json!({"ns2": "updated"}))
        .await
        .unwrap();
    let mut with_y = m.clone();
    with_y.expect(&Peer::ns("y"), &Peer::pod("x/a"), true);
    times
        .step(&world, case, "y labelled in: y reaches x/a", &with_y)
        .await;
    world
        .label_namespace("y", json!({"ns2": null}))
        .await
        .unwrap();
    times
        .step(&world, case, "label removed: x/a closed again", &m)
        .await;
    times.clean(&world, case).await;

    // --- pods deleted and recreated (new port, maybe a new IP) keep their policies: x/b as a
    // peer, y/b as a target.
    let case = "pod-recreated";
    world
        .apply(np(
            "x",
            "x-a-allows-x-b",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
        ))
        .await
        .unwrap();
    world
        .apply(np(
            "y",
            "y-b-from-x",
            json!({"podSelector": {"matchLabels": {"pod": "b"}},
                   "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "x"}}}]}]}),
        ))
        .await
        .unwrap();
    let mut m = world.all_allowed();
    m.expect_to("x/a", false)
        .expect_pair("x/b", "x/a", true)
        .expect_to("y/b", false)
        .expect(&Peer::ns("x"), &Peer::pod("y/b"), true);
    times.step(&world, case, "policies in force", &m).await;
    for k in ["x/b", "y/b"] {
        let t = Instant::now();
        let (old, new) = world.recreate_pod(k).await.unwrap();
        println!(
            "  {case}: {k} recreated in {:.2}s, IP {old} -> {new}",
            t.elapsed().as_secs_f64()
        );
        times
            .step(&world, case, &format!("{k} recreated, same matrix"), &m)
            .await;
    }
    times.clean(&world, case).await;

    // --- Every policy gone: no NB row of a NetworkPolicy is left (the nodes' allows go with
    // the last policy).
    assert!(
        !times.np_pgs.is_empty(),
        "no policy port group was ever seen in the NB: the leftover check below would prove nothing"
    );
    let left = nb_policy_rows(&nb, &times.np_pgs);
    assert!(
        left.is_empty(),
        "NetworkPolicy rows left in the NB after every policy was deleted:\n{}",
        left.join("\n")
    );
    println!("NB after the last policy: no port group, address set or ACL of a policy left (port groups of policies seen: {})", times.np_pgs.len());

    let crashes = vswitchd_crashes(world.state());
    println!(
        "ovs-vswitchd aborted {crashes} times during the run (userspace conntrack assertion; \
         restarted by its monitor); {} steps overlapped a crash and are left out of the figures: {:?}",
        times.crashed.len(),
        times.crashed
    );
    let mut secs: Vec<f64> = times.steps.iter().map(|t| t.2).collect();
    secs.sort_by(f64::total_cmp);
    println!(
        "converge times (start of the first matching probe round) over {} steps: min {:.2}s, median {:.2}s, max {:.2}s (max: {} / {}); whole test {:.1}s",
        secs.len(),
        secs[0],
        secs[secs.len() / 2],
        secs[secs.len() - 1],
        times
            .steps
            .iter()
            .max_by(|a, b| a.2.total_cmp(&b.2))
            .map(|t| t.0.as_str())
            .unwrap_or(""),
        times
            .steps
            .iter()
            .max_by(|a, b| a.2.total_cmp(&b.2))
            .map(|t| t.1.as_str())
            .unwrap_or(""),
        start.elapsed().as_secs_f64()
    );
    drop(world);
    sandbox.down().await.unwrap();
    assert!(leftovers(&run_dir, &prefix).is_empty());
}
