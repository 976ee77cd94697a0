//! Two sandboxes as two availability zones sharing one IC NB/SB (the first's), each running
//! kube-ovn-rs and kube-ovn-ic-controller (which runs ovn-ic): with `enable-ic` and
//! `auto-route`, a pod of AZ1 reaches a pod of AZ2 (TCP and ping) through the transit switch,
//! the learned routes and their 29500 policies are in AZ1's NB, a subnet with
//! `disableInterConnection` is not advertised, a restart of the ic-controller writes nothing,
//! disabling leaves no transit switch port, learned route or IC SB row of the AZ, and
//! re-enabling restores the path.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_ovn_common::crd::Subnet;
use kube_ovn_sandbox::central::{self, CentralRemotes, RAFT_MEMBERS};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::workload::ask_tcp;
use kube_ovn_sandbox::{leftovers, probe, sys, Sandbox, SandboxConfig, SandboxState};
use ovsdb::{Remote, Replica, ReplicaConfig};
use serde_json::{json, Value};

const POD_READY: Duration = Duration::from_secs(60);
const CONVERGE: Duration = Duration::from_secs(60);
const PORT: u16 = 8080;
const NS: &str = "kube-system";

async fn create<K>(api: &Api<K>, obj: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let o: K = serde_json::from_value(obj).unwrap();
    match api.create(&PostParams::default(), &o).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create: {e}"),
    }
}

/// A CLI's output (tests may inspect with the OVN tools).
fn ctl(program: &str, db: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .arg(format!("--db={db}"))
        .arg("--timeout=10")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until `cond` holds, or panics with `what` after `within`; returns how long it took.
async fn until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One AZ's ic-controller process, its log in the sandbox's run directory.
struct IcController {
    child: Child,
    log: PathBuf,
}

impl IcController {
    fn start(state: &SandboxState, n: usize) -> IcController {
        let dir = state.run_dir.join("ic");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("ic-controller-{n}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kube-ovn-ic-controller"))
            // The unrestricted kubeconfig: the shipped `ovn` role (upstream runs the
            // ic-controller as `ovn`) lacks list/watch of ConfigMaps so far.
            .arg(format!("--kubeconfig={}", state.kubeconfig.display()))
            .arg(format!("--ovn-nb-addr={}", state.central.nb))
            .arg(format!("--ovn-sb-addr={}", state.central.sb))
            .arg("--log-perm=640")
            .env("OVN_RUNDIR", &dir)
            .env("OVN_LOGDIR", &dir)
            .env("POD_NAMESPACE", NS)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap();
        IcController { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(mut self) {
        sys::stop_pid(self.child.id() as i32, Duration::from_secs(10));
        let _ = self.child.wait();
    }
}

impl Drop for IcController {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The run directory goes with the sandbox: show what the ic-controller said.
            eprintln!("--- {}\n{}", self.log.display(), self.log());
        }
    }
}

async fn az(
    nodes: &[&str],
    ic: bool,
    raft: bool,
    fabric_of: Option<String>,
    offset: usize,
    args: &[&str],
) -> Sandbox {
    let mut config = SandboxConfig::isolated(nodes.len());
    config.nodes = nodes.iter().map(|n| n.to_string()).collect();
    config.ic = ic;
    config.raft = raft;
    config.ic_daemon = false;
    config.fabric_of = fabric_of;
    config.node_offset = offset;
    let mut build = KubeOvnBuild::of_test_binary().expect("kube-ovn build");
    build.controller_args = args.iter().map(|a| a.to_string()).collect();
    config.kube_ovn = Some(build);
    Sandbox::up(config).await.expect("sandbox with kube-ovn")
}

/// `ovn-ic-config` pointing at the IC databases of `central` (one host, or a raft member per host).
fn ic_config(az: &str, central: &CentralRemotes, gw: &str, enable: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "ovn-ic-config", "namespace": NS},
           "data": {"enable-ic": enable.to_string(), "az-name": az,
                    "ic-db-host": central.ic_db_hosts.join(","),
                    "ic-nb-port": central.ic_nb_port.unwrap().to_string(),
                    "ic-sb-port": central.ic_sb_port.unwrap().to_string(),
                    "gw-nodes": gw, "auto-route": "true"}})
}

/// What start-ic-db.sh does on the IC DB host: the transit switch `ts`.
fn ts_add(ic_nb: &str) {
    ctl(
        "ovn-ic-nbctl",
        ic_nb,
        &[
            "--may-exist",
            "ts-add",
            "ts",
            "--",
            "set",
            "Transit_Switch",
            "ts",
            "external_ids:subnet=169.254.100.0/24",
            "external_ids:vendor=kube-ovn",
        ],
    );
}

async fn run_pod(sandbox: &Sandbox, name: &str, node: &str) -> String {
    run_pod_in(sandbox, name, node, None).await
}

/// Runs pod `name` on `node`, in `subnet` when given (else the namespace's), and returns its IP.
async fn run_pod_in(sandbox: &Sandbox, name: &str, node: &str, subnet: Option<&str>) -> String {
    let client = sandbox.client();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let annotations = match subnet {
        Some(s) => json!({"ovn.kubernetes.io/logical_switch": s}),
        None => json!({}),
    };
    create(
        &pods,
        json!({"metadata": {"name": name, "annotations": annotations},
               "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}}),
    )
    .await;
    probe::running_pod_ip(&pods, name, POD_READY)
        .await
        .unwrap_or_else(|e| panic!("{name} never ran: {e}\n{}", probe::report(sandbox.state())))
}

async fn reaches(state: &SandboxState, pod: &str, ip: &str, want: &str) -> bool {
    let to = SocketAddr::new(ip.parse::<IpAddr>().unwrap(), PORT);
    let tcp = ask_tcp(&state.pod_netns("default", pod), to)
        .await
        .is_ok_and(|a| a.trim() == want);
    let ping = sys::in_netns(&state.pod_netns("default", pod), "ping")
        .args(["-c1", "-W1", ip])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    tcp && ping
}

async fn until_reaches(
    state: &SandboxState,
    pod: &str,
    ip: &str,
    want: &str,
    icdbs: &str,
) -> Duration {
    let start = Instant::now();
    loop {
        if reaches(state, pod, ip, want).await {
            return start.elapsed();
        }
        if start.elapsed() > CONVERGE {
            panic!(
                "{pod} never reached {ip}\n{}\nIC SB:\n{}",
                probe::report(state),
                ctl("ovn-ic-sbctl", icdbs, &["show"])
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A monitor of `db` at `remote` counting writes from now on: the rows it starts with, and
/// every change batch after.
struct Monitor {
    _replica: Replica,
    rx: tokio::sync::broadcast::Receiver<std::sync::Arc<ovsdb::ChangeBatch>>,
    initial: std::collections::HashSet<ovsdb::Uuid>,
}

async fn monitor(remote: &str, db: &str) -> Monitor {
    let rc = ReplicaConfig::new(Remote::parse_list(remote).unwrap(), db);
    let r = Replica::start(rc, Duration::from_secs(10)).await.unwrap();
    let rx = r.subscribe();
    let initial = {
        let cache = r.cache();
        let names: Vec<String> = cache.table_names().cloned().collect();
        names
            .iter()
            .filter_map(|t| cache.table(t))
            .flat_map(|t| t.iter().map(|(u, _)| *u))
            .collect()
    };
    Monitor {
        _replica: r,
        rx,
        initial,
    }
}

/// The changes since the monitor started (the initial sync's inserts of rows it already had
/// are not changes).
fn drain(m: &mut Monitor) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(b) = m.rx.try_recv() {
        for c in &b.changes {
            if c.old.is_none() && m.initial.contains(&c.uuid) {
                continue;
            }
            out.push(format!("{} {} {:?} -> {:?}", c.table, c.uuid, c.old, c.new));
        }
    }
    out
}

fn nb_find(state: &SandboxState, table: &str, cond: &str) -> String {
    let columns = match table {
        "Logical_Router_Static_Route" => "--columns=_uuid,ip_prefix",
        "Logical_Router_Policy" => "--columns=_uuid,match",
        _ => "--columns=_uuid,name",
    };
    ctl(
        "ovn-nbctl",
        &state.central.nb,
        &["--bare", columns, "find", table, cond],
    )
}

/// Deletes AZ1's transit port pair, its gateway and the 29500 policies and writes them again
/// with ovn-nbctl exactly as upstream's controller writes them (same address and MAC), then
/// waits until northd has settled the new rows.
fn rewrite_as_upstream(s: &SandboxState) {
    let nb = s.central.nb.as_str();
    let get = |args: &[&str]| ctl("ovn-nbctl", nb, args);
    let mac = get(&["get", "Logical_Router_Port", "az1-ts", "mac"]);
    let mac = mac.trim_matches('"').to_string();
    let networks = get(&[
        "--bare",
        "--columns=networks",
        "list",
        "Logical_Router_Port",
        "az1-ts",
    ]);
    let up = get(&["get", "Logical_Switch_Port", "ts-az1", "up"]);
    // With the key ovn-ic added once it ran (requested-tnl-key), as a running cluster has it.
    let options: Vec<String> = get(&["get", "Logical_Switch_Port", "ts-az1", "options"])
        .trim_matches(|c| c == '{' || c == '}')
        .split(", ")
        .map(|kv| kv.replace('"', ""))
        .collect();
    let policies: Vec<(String, String)> = get(&[
        "--bare",
        "--columns=_uuid",
        "find",
        "Logical_Router_Policy",
        "priority=29500",
    ])
    .lines()
    .filter(|l| !l.trim().is_empty())
    .map(|u| {
        let m = get(&["get", "Logical_Router_Policy", u, "match"]);
        let o = get(&["get", "Logical_Router_Policy", u, "external_ids:origin"]);
        (
            m.trim_matches('"').to_string(),
            o.trim_matches('"').to_string(),
        )
    })
    .collect();
    assert!(!policies.is_empty());
    get(&["lsp-del", "ts-az1", "--", "lrp-del", "az1-ts"]);
    for (m, _) in &policies {
        get(&["lr-policy-del", "ovn-cluster", "29500", m]);
    }
    let mut lsp = vec![
        "lsp-add",
        "ts",
        "ts-az1",
        "--",
        "lsp-set-type",
        "ts-az1",
        "router",
        "--",
        "lsp-set-addresses",
        "ts-az1",
        "router",
        "--",
        "set",
        "Logical_Switch_Port",
        "ts-az1",
        "external_ids:ls=ts",
        "external_ids:vendor=kube-ovn",
        "--",
        "lsp-set-options",
        "ts-az1",
    ];
    lsp.extend(options.iter().map(String::as_str));
    get(&lsp);
    let mut lrp = vec!["lrp-add", "ovn-cluster", "az1-ts", mac.as_str()];
    lrp.extend(networks.split_whitespace());
    lrp.extend([
        "--",
        "set",
        "Logical_Router_Port",
        "az1-ts",
        "external_ids:lr=ovn-cluster",
        "external_ids:vendor=kube-ovn",
    ]);
    get(&lrp);
    get(&[
        "--id=@g",
        "create",
        "Gateway_Chassis",
        "name=az1-ts-node1",
        "chassis_name=node1",
        "priority=100",
        "external_ids:lrp=az1-ts",
        "--",
        "add",
        "Logical_Router_Port",
        "az1-ts",
        "gateway_chassis",
        "@g",
    ]);
    for (m, o) in &policies {
        let matched = format!("match=\"{m}\"");
        let origin = format!("external_ids:origin=\"{o}\"");
        get(&[
            "--id=@p",
            "create",
            "Logical_Router_Policy",
            "priority=29500",
            &matched,
            "action=allow",
            &origin,
            "external_ids:vendor=kube-ovn",
            "--",
            "add",
            "Logical_Router",
            "ovn-cluster",
            "policies",
            "@p",
        ]);
    }
    // northd marks the new switch port up again; nothing else may change afterwards.
    let deadline = Instant::now() + CONVERGE;
    while get(&["get", "Logical_Switch_Port", "ts-az1", "up"]) != up {
        assert!(Instant::now() < deadline, "ts-az1 never came back up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_azs_interconnect_through_the_transit_switch() {
    let az1 = az(&["node1", "node2", "node3"], true, false, None, 0, &[]).await;
    let s1 = az1.state().clone();
    let az2 = az(
        &["az2-node1", "az2-node2"],
        false,
        false,
        Some(s1.prefix.clone()),
        10,
        &[
            "--default-cidr=10.17.0.0/16",
            "--node-switch-cidr=100.65.0.0/16",
        ],
    )
    .await;
    let s2 = az2.state().clone();
    let ic_nb = s1.central.ic_nb.clone().unwrap();
    let ic_sb = s1.central.ic_sb.clone().unwrap();
    ts_add(&ic_nb);
    // A subnet of AZ1 kept out of interconnection.
    let subnets: Api<Subnet> = Api::all(az1.client());
    create(
        &subnets,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "private"},
               "spec": {"cidrBlock": "10.50.0.0/24", "protocol": "IPv4",
                        "disableInterConnection": true}}),
    )
    .await;
    for (sandbox, azname, gw) in [(&az1, "az1", "node1"), (&az2, "az2", "az2-node1")] {
        let client = sandbox.client();
        create(
            &Api::<Namespace>::all(client.clone()),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        )
        .await;
        create(
            &Api::<ConfigMap>::namespaced(client, NS),
            ic_config(azname, &s1.central, gw, true),
        )
        .await;
    }
    let started = Instant::now();
    let mut ic1 = IcController::start(&s1, 1);
    let ic2 = IcController::start(&s2, 1);

    let a = run_pod(&az1, "a", "node3").await;
    let b = run_pod(&az2, "b", "az2-node2").await;
    let server = az2.serve_pod("default", "b", "b", &[PORT], &[]).unwrap();
    let _server_a = az1.serve_pod("default", "a", "a", &[PORT], &[]).unwrap();
    let reach = until_reaches(&s1, "a", &b, "b", &ic_sb).await;
    let reach_back = until_reaches(&s2, "b", &a, "a", &ic_sb).await;
    let established = started.elapsed();

    // The layout upstream writes: NB_Global name, the port pair, gateway chassis.
    assert_eq!(
        ctl(
            "ovn-nbctl",
            &s1.central.nb,
            &["get", "NB_Global", ".", "name"]
        ),
        "az1"
    );
    assert_eq!(
        ctl("ovn-nbctl", &s1.central.nb, &["lsp-get-type", "ts-az1"]),
        "router"
    );
    let gws = ctl(
        "ovn-nbctl",
        &s1.central.nb,
        &["lrp-get-gateway-chassis", "az1-ts"],
    );
    assert!(gws.contains("az1-ts-node1") && gws.contains("100"), "{gws}");
    // Learned routes and their 29500 policies.
    let learned = nb_find(
        &s1,
        "Logical_Router_Static_Route",
        "external_ids:ic-learned-route!=\"\"",
    );
    // ovn-ic advertises a connected network as its router port's address and length.
    let prefix = learned
        .lines()
        .find(|l| l.starts_with("10.17.0."))
        .unwrap_or_else(|| panic!("no learned route to AZ2's subnet: {learned}"))
        .to_string();
    let policies = until("the 29500 policy of the learned route", CONVERGE, || {
        nb_find(&s1, "Logical_Router_Policy", "priority=29500")
            .contains(&format!("ip4.dst == {prefix}"))
    })
    .await;
    // The private subnet, the join subnet and node IPs are not advertised.
    let options = ctl(
        "ovn-nbctl",
        &s1.central.nb,
        &["get", "NB_Global", ".", "options"],
    );
    assert!(
        options.contains("10.50.0.0/24") && options.contains("ic-route-adv"),
        "{options}"
    );
    let routes = ctl(
        "ovn-ic-sbctl",
        &ic_sb,
        &["--bare", "--columns=ip_prefix", "list", "Route"],
    );
    assert!(routes.contains("10.16.0."), "IC SB routes: {routes}");
    assert!(routes.contains("10.17.0."), "IC SB routes: {routes}");
    assert!(
        !routes.contains("10.50.0."),
        "private subnet advertised: {routes}"
    );
    assert!(
        !routes.contains("100.64.") && !routes.contains("100.65."),
        "join advertised: {routes}"
    );
    let az2_learned = nb_find(
        &s2,
        "Logical_Router_Static_Route",
        "external_ids:ic-learned-route!=\"\"",
    );
    assert!(!az2_learned.contains("10.50.0.0"), "{az2_learned}");
    // The gateway's ovn-controller is an interconnection gateway (set by kube-ovn-daemon from
    // the label the ic-controller put on the node).
    let gw_rows = ctl(
        "ovn-ic-sbctl",
        &ic_sb,
        &["--bare", "--columns=hostname", "list", "Gateway"],
    );
    assert!(
        gw_rows.contains("node1") && gw_rows.contains("az2-node1"),
        "{gw_rows}"
    );

    // A restart on an established AZ writes nothing to NB, IC NB or IC SB.
    let mut nb_rx = monitor(&s1.central.nb, "OVN_Northbound").await;
    let mut icnb_rx = monitor(&ic_nb, "OVN_IC_Northbound").await;
    let mut icsb_rx = monitor(&ic_sb, "OVN_IC_Southbound").await;
    ic1.stop();
    ic1 = IcController::start(&s1, 2);
    until("the restarted ic-controller to establish", CONVERGE, || {
        ic1.log().contains("finish establishing ovn-ic")
    })
    .await;
    // A few more passes (one per second), and ovn-ic's own start-up.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let writes: Vec<String> = [&mut nb_rx, &mut icnb_rx, &mut icsb_rx]
        .into_iter()
        .flat_map(drain)
        .collect();
    assert!(
        writes.is_empty(),
        "restart wrote: {writes:#?}\n{}",
        ic1.log()
    );
    assert!(!ic1.log().contains(" wrote"), "{}", ic1.log());
    assert!(reaches(&s1, "a", &b, "b").await);

    // The layout as upstream's controller leaves it (rewritten with ovn-nbctl while the
    // ic-controller is down) is adopted with zero writes too.
    ic1.stop();
    rewrite_as_upstream(&s1);
    let mut nb_rx = monitor(&s1.central.nb, "OVN_Northbound").await;
    let mut icnb_rx = monitor(&ic_nb, "OVN_IC_Northbound").await;
    let mut icsb_rx = monitor(&ic_sb, "OVN_IC_Southbound").await;
    ic1 = IcController::start(&s1, 3);
    until(
        "the ic-controller to adopt upstream's layout",
        CONVERGE,
        || ic1.log().contains("finish establishing ovn-ic"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let writes: Vec<String> = [&mut nb_rx, &mut icnb_rx, &mut icsb_rx]
        .into_iter()
        .flat_map(drain)
        .collect();
    assert!(
        writes.is_empty(),
        "adopting upstream's layout wrote: {writes:#?}\n{}",
        ic1.log()
    );
    until_reaches(&s1, "a", &b, "b", &ic_sb).await;

    // Disable: no transit port, learned route or IC SB row of az1 remains.
    let cms: Api<ConfigMap> = Api::namespaced(az1.client(), NS);
    cms.patch(
        "ovn-ic-config",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"enable-ic": "false"}})),
    )
    .await
    .unwrap();
    let disabled = until("az1 torn down", CONVERGE, || {
        let nb = &s1.central.nb;
        ctl(
            "ovn-nbctl",
            nb,
            &[
                "--bare",
                "--columns=name",
                "find",
                "Logical_Switch_Port",
                "name=ts-az1",
            ],
        )
        .is_empty()
            && ctl(
                "ovn-nbctl",
                nb,
                &[
                    "--bare",
                    "--columns=name",
                    "find",
                    "Logical_Router_Port",
                    "name=az1-ts",
                ],
            )
            .is_empty()
            && nb_find(
                &s1,
                "Logical_Router_Static_Route",
                "external_ids:ic-learned-route!=\"\"",
            )
            .is_empty()
            && nb_find(&s1, "Logical_Router_Policy", "priority=29500").is_empty()
            && !ctl(
                "ovn-ic-sbctl",
                &ic_sb,
                &["--bare", "--columns=name", "list", "Availability_Zone"],
            )
            .contains("az1")
    })
    .await;
    let az1_uuid = ctl(
        "ovn-ic-sbctl",
        &ic_sb,
        &[
            "--bare",
            "--columns=_uuid",
            "find",
            "Availability_Zone",
            "name=az1",
        ],
    );
    assert!(az1_uuid.is_empty());
    for table in ["Gateway", "Route", "Port_Binding"] {
        let rows = ctl(
            "ovn-ic-sbctl",
            &ic_sb,
            &["--bare", "--columns=availability_zone", "list", table],
        );
        let az2_uuid = ctl(
            "ovn-ic-sbctl",
            &ic_sb,
            &[
                "--bare",
                "--columns=_uuid",
                "find",
                "Availability_Zone",
                "name=az2",
            ],
        );
        assert!(
            rows.lines()
                .all(|l| l.trim().is_empty() || l.trim() == az2_uuid),
            "{table} rows of another AZ remain: {rows}"
        );
    }
    assert!(!reaches(&s1, "a", &b, "b").await);

    // Re-enable: the path is back.
    cms.patch(
        "ovn-ic-config",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"enable-ic": "true"}})),
    )
    .await
    .unwrap();
    let restored = until_reaches(&s1, "a", &b, "b", &ic_sb).await;

    // Gateway HA: a second gateway node gets priority 99 behind the first's 100; cutting the
    // first from the network moves the transit port (and the traffic) to the second, which
    // learns it is the highest live gateway through its BFD session with node3 (the pod's).
    cms.patch(
        "ovn-ic-config",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"gw-nodes": "node1,node2"}})),
    )
    .await
    .unwrap();
    let sb1 = s1.central.sb.clone();
    let active = |sb: &str| {
        let uuid = ctl(
            "ovn-sbctl",
            sb,
            &[
                "--bare",
                "--columns=chassis",
                "find",
                "Port_Binding",
                "logical_port=cr-az1-ts",
            ],
        );
        if uuid.is_empty() {
            return String::new();
        }
        ctl("ovn-sbctl", sb, &["get", "Chassis", &uuid, "name"])
            .trim_matches('"')
            .to_string()
    };
    until(
        "two gateway chassis with priorities 100 and 99",
        CONVERGE,
        || {
            let gws = ctl(
                "ovn-nbctl",
                &s1.central.nb,
                &["lrp-get-gateway-chassis", "az1-ts"],
            );
            let lines: Vec<&str> = gws.lines().map(str::trim).collect();
            lines.len() == 2
                && lines[0].starts_with("az1-ts-node1")
                && lines[0].ends_with("100")
                && lines[1].starts_with("az1-ts-node2")
                && lines[1].ends_with("99")
        },
    )
    .await;
    until(
        "node2 registered as an interconnection gateway",
        CONVERGE,
        || {
            ctl(
                "ovn-ic-sbctl",
                &ic_sb,
                &["--bare", "--columns=hostname", "list", "Gateway"],
            )
            .lines()
            .any(|l| l.trim() == "node2")
        },
    )
    .await;
    until("node1 holding the transit port", CONVERGE, || {
        active(&sb1) == "node1"
    })
    .await;
    until_reaches(&s1, "a", &b, "b", &ic_sb).await;
    // The node goes down: off the network, and its ovn-controller gone from the SB.
    let node1 = s1.node("node1").unwrap().clone();
    sys::run(
        "ip",
        ["-n", node1.netns.as_str(), "link", "set", "eth0", "down"],
    )
    .unwrap();
    sys::kill_pidfile(&node1.dir.join("ovn-controller.pid")).unwrap();
    let cut = Instant::now();
    let failover = until_reaches(&s1, "a", &b, "b", &ic_sb).await;
    let moved = active(&sb1);
    assert_eq!(moved, "node2", "the transit port is still on {moved}");
    let failover_back = until_reaches(&s2, "b", &a, "a", &ic_sb).await;
    let failover_total = cut.elapsed();

    println!(
        "ovn-ic: AZ1 pod reached AZ2 pod {:.1}s after the ic-controllers started (a->b {:.1}s of waiting, b->a {:.1}s more), 29500 policy after {:.1}s more, disable converged in {:.1}s, re-enable restored the path in {:.1}s, gateway failover restored a->b in {:.1}s (both directions {:.1}s, b->a {:.1}s of it)",
        established.as_secs_f64(),
        reach.as_secs_f64(),
        reach_back.as_secs_f64(),
        policies.as_secs_f64(),
        disabled.as_secs_f64(),
        restored.as_secs_f64(),
        failover.as_secs_f64(),
        failover_total.as_secs_f64(),
        failover_back.as_secs_f64()
    );
    drop(server);
    ic1.stop();
    ic2.stop();
    let (d1, p1) = (s1.run_dir.clone(), s1.prefix.clone());
    let (d2, p2) = (s2.run_dir.clone(), s2.prefix.clone());
    az2.down().await.unwrap();
    az1.down().await.unwrap();
    assert!(leftovers(&d2, &p2).is_empty());
    assert!(leftovers(&d1, &p1).is_empty());
}

/// The raft member (`ic-nb2`…) of `db` leading its cluster in the sandbox of `state`.
fn ic_leader(state: &SandboxState, member: &str, db: &str) -> Option<String> {
    let dir = central::dir(&state.run_dir);
    (1..=RAFT_MEMBERS)
        .map(|i| format!("{member}{i}"))
        .find(|m| {
            let ctl = dir.join(format!("{m}.ctl"));
            Command::new("ovs-appctl")
                .arg("-t")
                .arg(&ctl)
                .args(["cluster/status", db])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("Role: leader"))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_azs_share_raft_ic_databases_and_outlive_their_leaders() {
    // AZ1 runs the IC NB and SB as three-member raft clusters, each member on its own
    // address at 6645/6646 as three ic-db pods serve them; both AZs' ic-db-host lists all three.
    let az1 = az(&["node1", "node2"], true, true, None, 0, &[]).await;
    let s1 = az1.state().clone();
    assert_eq!(s1.central.ic_db_hosts.len(), RAFT_MEMBERS);
    let az2 = az(
        &["az2-node1"],
        false,
        false,
        Some(s1.prefix.clone()),
        10,
        &[
            "--default-cidr=10.17.0.0/16",
            "--node-switch-cidr=100.65.0.0/16",
        ],
    )
    .await;
    let s2 = az2.state().clone();
    let ic_nb = s1.central.ic_nb.clone().unwrap();
    let ic_sb = s1.central.ic_sb.clone().unwrap();
    ts_add(&ic_nb);
    for (sandbox, azname, gw) in [(&az1, "az1", "node1"), (&az2, "az2", "az2-node1")] {
        let client = sandbox.client();
        create(
            &Api::<Namespace>::all(client.clone()),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        )
        .await;
        let cm = ic_config(azname, &s1.central, gw, true);
        assert!(cm["data"]["ic-db-host"].as_str().unwrap().contains(','));
        create(&Api::<ConfigMap>::namespaced(client, NS), cm).await;
    }
    let started = Instant::now();
    let ic1 = IcController::start(&s1, 1);
    let ic2 = IcController::start(&s2, 1);
    let a = run_pod(&az1, "a", "node2").await;
    let b = run_pod(&az2, "b", "az2-node1").await;
    let _server_b = az2.serve_pod("default", "b", "b", &[PORT], &[]).unwrap();
    let _server_a = az1.serve_pod("default", "a", "a", &[PORT], &[]).unwrap();
    until_reaches(&s1, "a", &b, "b", &ic_sb).await;
    until_reaches(&s2, "b", &a, "a", &ic_sb).await;
    let established = started.elapsed();

    // Both IC databases lose their leaders for good (SIGKILL, not restarted).
    let mut killed = Vec::new();
    for (member, db) in [
        ("ic-nb", "OVN_IC_Northbound"),
        ("ic-sb", "OVN_IC_Southbound"),
    ] {
        let leader = ic_leader(&s1, member, db).unwrap_or_else(|| panic!("{db} has no leader"));
        sys::kill_pidfile(&central::dir(&s1.run_dir).join(format!("{leader}.pid"))).unwrap();
        killed.push(leader);
    }
    let cut = Instant::now();
    for (member, db) in [
        ("ic-nb", "OVN_IC_Northbound"),
        ("ic-sb", "OVN_IC_Southbound"),
    ] {
        until(&format!("a new {db} leader"), CONVERGE, || {
            ic_leader(&s1, member, db).is_some_and(|l| !killed.contains(&l))
        })
        .await;
    }
    // A subnet AZ2 makes afterwards is advertised through the new IC SB leader, learned by
    // AZ1 (with its 29500 policy), and reached from AZ1's pod.
    create(
        &Api::<Subnet>::all(az2.client()),
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "late"},
               "spec": {"cidrBlock": "10.18.0.0/24", "protocol": "IPv4"}}),
    )
    .await;
    let c = run_pod_in(&az2, "c", "az2-node1", Some("late")).await;
    assert!(c.starts_with("10.18.0."), "{c}");
    let _server_c = az2.serve_pod("default", "c", "c", &[PORT], &[]).unwrap();
    until_reaches(&s1, "a", &c, "c", &ic_sb).await;
    let routes = ctl(
        "ovn-ic-sbctl",
        &ic_sb,
        &["--bare", "--columns=ip_prefix", "list", "Route"],
    );
    assert!(routes.contains("10.18.0."), "IC SB routes: {routes}");
    until("the 29500 policy of the late subnet", CONVERGE, || {
        nb_find(&s1, "Logical_Router_Policy", "priority=29500").contains("10.18.0.")
    })
    .await;
    let after_loss = cut.elapsed();
    assert!(reaches(&s1, "a", &b, "b").await);
    println!(
        "ovn-ic over raft IC databases: AZ1 pod reached AZ2 pod {:.1}s after the ic-controllers started; with the IC NB and SB leaders ({}) killed, a new AZ2 subnet was reached from AZ1 {:.1}s later",
        established.as_secs_f64(),
        killed.join(", "),
        after_loss.as_secs_f64()
    );
    ic1.stop();
    ic2.stop();
    let (d1, p1) = (s1.run_dir.clone(), s1.prefix.clone());
    let (d2, p2) = (s2.run_dir.clone(), s2.prefix.clone());
    az2.down().await.unwrap();
    az1.down().await.unwrap();
    assert!(leftovers(&d2, &p2).is_empty());
    assert!(leftovers(&d1, &p1).is_empty());
}
