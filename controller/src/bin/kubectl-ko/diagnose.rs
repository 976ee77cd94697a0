//! `diagnose {all|node <node>|subnet <subnet>|IPPorts <proto-ip-port,…>}`: upstream's checks in
//! upstream's order and words. First the installation (CRDs, the API service, RBAC, nodes, the
//! NB/SB layout and raft status, kube-proxy, the component Deployments/DaemonSets and that each
//! of NB, SB and northd has exactly one leader), then connectivity as seen from the nodes: the
//! `kube-ovn-pinger` pods run one job-mode round each (OVS, ovn-controller, port bindings, the
//! API server, every pinger pod and node, DNS, a NodePort Service on every node, the targets
//! given). `subnet` first runs a conn-check server DaemonSet in that subnet, as upstream does.
//!
//! Unlike upstream's script, which stops at the first failed check, every check runs and the
//! failed ones are listed at the end; the exit status is 1 when any failed. The Service and
//! DaemonSet made for the checks are deleted before returning, whatever happened.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use crate::remote::{self, Db};

/// Upstream's CRD list, checked first.
const CRDS: &[&str] = &[
    "vpcs.kubeovn.io",
    "vpc-nat-gateways.kubeovn.io",
    "vpc-egress-gateways.kubeovn.io",
    "subnets.kubeovn.io",
    "ips.kubeovn.io",
    "vlans.kubeovn.io",
    "provider-networks.kubeovn.io",
    "security-groups.kubeovn.io",
    "vips.kubeovn.io",
    "vpc-dnses.kubeovn.io",
    "switch-lb-rules.kubeovn.io",
    "ippools.kubeovn.io",
    "ovn-eips.kubeovn.io",
    "ovn-fips.kubeovn.io",
    "ovn-dnat-rules.kubeovn.io",
    "ovn-snat-rules.kubeovn.io",
    "iptables-eips.kubeovn.io",
    "iptables-fip-rules.kubeovn.io",
    "iptables-snat-rules.kubeovn.io",
    "iptables-dnat-rules.kubeovn.io",
];

/// Label of everything diagnose creates (upstream's).
const CONN_CHECK_LABEL: &str = "conn-check";
/// The NodePort Service diagnose points every pinger at.
const NODE_PORT_SERVICE: &str = "test-node-port";
/// How long a Deployment/DaemonSet may take to be ready (upstream: 30 tries a second apart).
const READY_WAIT: Duration = Duration::from_secs(30);
/// How long a leader check retries (upstream: 10 tries).
const LEADER_WAIT: Duration = Duration::from_secs(10);
/// How long one command in a pinger pod may take: a job round pings every pinger pod and node
/// (up to 30 s for an unreachable node), resolves names (10 s) and pings outside (5 s).
const PINGER_LIMIT: Duration = Duration::from_secs(600);
/// How long a database command (`nbctl show`, `nb status`, leader lookup included) may take.
const DB_LIMIT: Duration = Duration::from_secs(60);
/// How long a short command (a health probe) may take.
const SHORT_LIMIT: Duration = Duration::from_secs(30);
/// Upstream's external addresses for the pinger's external ping.
const EXTERNAL_ADDRESSES: &str = "1.1.1.1,2606:4700:4700::1111";

/// What to diagnose.
pub enum Target {
    /// Every node.
    All,
    /// One node.
    Node(String),
    /// Connectivity to a conn-check server in a subnet.
    Subnet(String),
    /// Given `proto-ip-port` targets from every pinger.
    IpPorts(String),
}

/// One diagnose run's context and findings.
struct Run {
    client: kube::Client,
    ns: String,
    failures: Vec<String>,
}

impl Run {
    fn fail(&mut self, what: String) {
        println!("Error: {what}");
        self.failures.push(what);
    }
}

/// Runs `diagnose`; see the module documentation.
pub async fn run(client: &kube::Client, ns: &str, target: Target) -> Result<ExitCode, String> {
    let mut r = Run {
        client: client.clone(),
        ns: ns.to_string(),
        failures: Vec::new(),
    };
    installation(&mut r).await;
    let made_service = !matches!(target, Target::IpPorts(_));
    let outcome = connectivity(&mut r, &target).await;
    // Cleanup runs whatever happened above (upstream's EXIT trap).
    cleanup(&r, made_service, &target).await;
    outcome?;
    if r.failures.is_empty() {
        println!("diagnose finished: no problem found");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("diagnose finished: {} problem(s):", r.failures.len());
        for f in &r.failures {
            println!("  - {f}");
        }
        Ok(ExitCode::from(1))
    }
}

/// The installation checks, before any connectivity test.
async fn installation(r: &mut Run) {
    let crds: Api<CustomResourceDefinition> = Api::all(r.client.clone());
    for name in CRDS {
        match crds.get_opt(name).await {
            Ok(Some(_)) => println!("crd {name} exists"),
            Ok(None) => r.fail(format!("crd {name} not found")),
            Err(e) => r.fail(format!("crd {name}: {e}")),
        }
    }
    let kube_system: Api<Service> = Api::namespaced(r.client.clone(), "kube-system");
    if !matches!(kube_system.get_opt("kube-dns").await, Ok(Some(_))) {
        println!("Warning: kube-dns doesn't exist, maybe there is coredns service.");
    }
    let default: Api<Service> = Api::namespaced(r.client.clone(), "default");
    exists(
        r,
        "svc default/kubernetes",
        default.get_opt("kubernetes").await.map(|o| o.is_some()),
    )
    .await;
    let sa: Api<ServiceAccount> = Api::namespaced(r.client.clone(), &r.ns);
    let label = format!("sa {}/ovn", r.ns);
    exists(r, &label, sa.get_opt("ovn").await.map(|o| o.is_some())).await;
    let cr: Api<ClusterRole> = Api::all(r.client.clone());
    exists(
        r,
        "clusterrole system:ovn",
        cr.get_opt("system:ovn").await.map(|o| o.is_some()),
    )
    .await;
    let crb: Api<ClusterRoleBinding> = Api::all(r.client.clone());
    exists(
        r,
        "clusterrolebinding ovn",
        crb.get_opt("ovn").await.map(|o| o.is_some()),
    )
    .await;

    nodes_table(r).await;
    let nb = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for (db, args) in [
        (Db::Nb, nb(&["show"])),
        (Db::Nb, nb(&["lr-policy-list", "ovn-cluster"])),
        (Db::Nb, nb(&["lr-route-list", "ovn-cluster"])),
        (Db::Nb, nb(&["ls-lb-list", "ovn-default"])),
        (Db::Nb, nb(&["list", "address_set"])),
        (Db::Nb, nb(&["list", "acl"])),
        (Db::Sb, nb(&["show"])),
    ] {
        let tool = match db {
            Db::Nb => "nbctl",
            Db::Sb => "sbctl",
        };
        println!("### kubectl ko {tool} {}", args.join(" "));
        let outcome =
            tokio::time::timeout(DB_LIMIT, remote::db_ctl(&r.client, &r.ns, db, args.clone()))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {DB_LIMIT:?}")));
        command_outcome(r, &format!("{tool} {}", args.join(" ")), outcome);
    }
    for (db, name) in [(Db::Sb, "sb"), (Db::Nb, "nb")] {
        println!("### kubectl ko {name} status");
        let outcome = tokio::time::timeout(
            DB_LIMIT,
            remote::db_tool(&r.client, &r.ns, db, "status", Vec::new()),
        )
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {DB_LIMIT:?}")));
        command_outcome(r, &format!("{name} status"), outcome);
    }
    if std::env::var("WITHOUT_KUBE_PROXY").as_deref() != Ok("true") {
        kube_proxy(r).await;
    }
    deployment(r, "ovn-central").await;
    deployment(r, "kube-ovn-controller").await;
    daemon_set(r, "kube-ovn-cni").await;
    daemon_set(r, "ovs-ovn").await;
    // A cluster may run its DNS under another name (kube-dns already warned above).
    let dns: Api<Deployment> = Api::namespaced(r.client.clone(), &r.ns);
    if matches!(dns.get_opt("coredns").await, Ok(None)) {
        println!(
            "Warning: deployment coredns doesn't exist, maybe the cluster DNS has another name."
        );
    } else {
        deployment(r, "coredns").await;
    }
    for component in ["nb", "sb", "northd"] {
        leader(r, component).await;
    }
}

async fn exists(r: &mut Run, what: &str, found: Result<bool, kube::Error>) {
    match found {
        Ok(true) => println!("{what} exists"),
        Ok(false) => r.fail(format!("{what} not found")),
        Err(e) => r.fail(format!("{what}: {e}")),
    }
}

fn command_outcome(r: &mut Run, what: &str, outcome: Result<ExitCode, String>) {
    match outcome {
        Ok(code) if code == ExitCode::SUCCESS => {}
        Ok(_) => r.fail(format!("kubectl ko {what} failed")),
        Err(e) => r.fail(format!("kubectl ko {what}: {e}")),
    }
}

/// `kubectl get no -o wide`, reduced to what the checks use.
async fn nodes_table(r: &mut Run) {
    let nodes: Api<Node> = Api::all(r.client.clone());
    match nodes.list(&ListParams::default()).await {
        Ok(list) => {
            println!("{:<24} {:<10} {:<16}", "NAME", "STATUS", "INTERNAL-IP");
            for n in list.items {
                let status = n.status.clone().unwrap_or_default();
                let ready = status
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                let ip = internal_ips(&n).join(",");
                println!(
                    "{:<24} {:<10} {:<16}",
                    n.name_any(),
                    if ready { "Ready" } else { "NotReady" },
                    ip
                );
            }
        }
        Err(e) => r.fail(format!("listing nodes: {e}")),
    }
}

fn internal_ips(n: &Node) -> Vec<String> {
    n.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .collect()
}

/// kube-proxy: its DaemonSet ready, or else its health endpoint answering on every node
/// (asked from the node's kube-ovn-cni pod, as upstream).
async fn kube_proxy(r: &mut Run) {
    let ds: Api<DaemonSet> = Api::namespaced(r.client.clone(), "kube-system");
    if matches!(ds.get_opt("kube-proxy").await, Ok(Some(_))) {
        daemon_set_in(r, "kube-system", "kube-proxy").await;
        return;
    }
    let pods: Api<Pod> = Api::namespaced(r.client.clone(), &r.ns);
    let list = match pods
        .list(&ListParams::default().labels("app=kube-ovn-cni"))
        .await
    {
        Ok(l) => l.items,
        Err(e) => return r.fail(format!("listing kube-ovn-cni pods: {e}")),
    };
    let mut ok = true;
    for pod in list {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
            continue;
        };
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip
        };
        let argv = vec![
            "curl".to_string(),
            "-s".into(),
            "-g".into(),
            "-m".into(),
            "3".into(),
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{http_code}".into(),
            format!("http://{host}:10256/healthz"),
        ];
        let code =
            remote::capture_within(SHORT_LIMIT, &r.client, &r.ns, &pod.name_any(), None, argv)
                .await;
        if !matches!(&code, Ok((_, out)) if out.trim() == "200") {
            ok = false;
            r.fail(format!("{node} kube-proxy's health check failed"));
        }
    }
    if ok {
        println!("kube-proxy ready");
    }
}

/// Polls until `check` says ready, up to [`READY_WAIT`]; the last answer.
async fn poll<F, Fut>(mut check: F) -> Result<bool, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, String>>,
{
    let deadline = Instant::now() + READY_WAIT;
    loop {
        let ready = check().await?;
        if ready || Instant::now() >= deadline {
            return Ok(ready);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A Deployment of the Kube-OVN namespace is fully rolled out and available.
async fn deployment(r: &mut Run, name: &str) {
    let api: Api<Deployment> = Api::namespaced(r.client.clone(), &r.ns);
    let ready = poll(|| async {
        let d = api
            .get_opt(name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "not found".to_string())?;
        let s = d.status.unwrap_or_default();
        let want = d.spec.and_then(|s| s.replicas).unwrap_or(1);
        Ok(s.observed_generation >= d.metadata.generation
            && s.replicas == Some(want)
            && s.updated_replicas == Some(want)
            && s.ready_replicas == Some(want)
            && s.available_replicas == Some(want))
    })
    .await;
    match ready {
        Ok(true) => println!("deployment {name} ready"),
        Ok(false) => r.fail(format!("deployment {name} not ready")),
        Err(e) => r.fail(format!("deployment {name}: {e}")),
    }
}

async fn daemon_set(r: &mut Run, name: &str) {
    let ns = r.ns.clone();
    daemon_set_in(r, &ns, name).await;
}

/// A DaemonSet has a ready, available pod on every node it should run on.
async fn daemon_set_in(r: &mut Run, ns: &str, name: &str) {
    let api: Api<DaemonSet> = Api::namespaced(r.client.clone(), ns);
    let ready = poll(|| async {
        let d = api
            .get_opt(name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "not found".to_string())?;
        Ok(daemon_set_ready(&d))
    })
    .await;
    match ready {
        Ok(true) => println!("ds {name} ready"),
        Ok(false) => r.fail(format!("ds {name} not ready")),
        Err(e) => r.fail(format!("ds {name}: {e}")),
    }
}

/// Upstream's test: scheduled = desired = available = ready.
fn daemon_set_ready(d: &DaemonSet) -> bool {
    let Some(s) = &d.status else {
        return false;
    };
    s.current_number_scheduled == s.desired_number_scheduled
        && Some(s.desired_number_scheduled) == s.number_available
        && s.number_available == Some(s.number_ready)
}

/// Exactly one ready endpoint (one leader pod) behind the `ovn-<component>` Service.
async fn leader(r: &mut Run, component: &str) {
    let slices: Api<EndpointSlice> = Api::namespaced(r.client.clone(), &r.ns);
    let selector = format!("kubernetes.io/service-name=ovn-{component}");
    let deadline = Instant::now() + LEADER_WAIT;
    let count = loop {
        let count = match slices.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => leaders(&list.items).len(),
            Err(e) => return r.fail(format!("ovn-{component} endpoints: {e}")),
        };
        if count == 1 || Instant::now() >= deadline {
            break count;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    match count {
        1 => println!("ovn-{component} leader check ok"),
        0 => r.fail(format!("no ovn-{component} leader exists !!")),
        _ => r.fail(format!("ovn-{component} has more than one leader !!")),
    }
}

/// The pods behind ready (or readiness-unknown) endpoints of `slices`.
fn leaders(slices: &[EndpointSlice]) -> BTreeSet<String> {
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .filter_map(|e| e.target_ref.as_ref().and_then(|t| t.name.clone()))
        .collect()
}

/// The NodePort Service every pinger probes on every node (upstream's `test-node-port`, to the
/// pingers' metrics port).
async fn node_port_targets(r: &mut Run) -> Result<String, String> {
    let services: Api<Service> = Api::namespaced(r.client.clone(), &r.ns);
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NODE_PORT_SERVICE, "namespace": r.ns, "labels": {"app": CONN_CHECK_LABEL}},
        "spec": {
            "type": "NodePort",
            "ports": [{"port": 60001, "protocol": "TCP", "targetPort": 8080, "name": "kube-ovn-pinger"}],
            "selector": {"app": "kube-ovn-pinger"},
        },
    }))
    .map_err(|e| e.to_string())?;
    let made = match services.create(&PostParams::default(), &svc).await {
        Ok(s) => s,
        Err(kube::Error::Api(e)) if e.code == 409 => services
            .get(NODE_PORT_SERVICE)
            .await
            .map_err(|e| format!("service {NODE_PORT_SERVICE}: {e}"))?,
        Err(e) => return Err(format!("creating service {NODE_PORT_SERVICE}: {e}")),
    };
    println!("service/{NODE_PORT_SERVICE} created");
    let node_port = made
        .spec
        .and_then(|s| s.ports)
        .and_then(|p| p.first().and_then(|p| p.node_port))
        .ok_or_else(|| format!("service {NODE_PORT_SERVICE} got no nodePort"))?;
    let nodes: Api<Node> = Api::all(r.client.clone());
    let list = nodes
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing nodes: {e}"))?;
    Ok(list
        .items
        .iter()
        .filter_map(|n| internal_ips(n).into_iter().next())
        .map(|ip| format!("tcp-{ip}-{node_port}"))
        .collect::<Vec<_>>()
        .join(","))
}

/// The pinger pods, with their nodes.
async fn pingers(r: &Run) -> Result<Vec<(String, String)>, String> {
    let pods: Api<Pod> = Api::namespaced(r.client.clone(), &r.ns);
    let list = pods
        .list(&ListParams::default().labels("app=kube-ovn-pinger"))
        .await
        .map_err(|e| format!("listing kube-ovn-pinger pods: {e}"))?;
    Ok(list
        .items
        .iter()
        .map(|p| {
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            (p.name_any(), node)
        })
        .collect())
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

/// Runs `argv` in pinger `pod`, its output streamed; a failed exec is a finding.
async fn in_pinger(r: &mut Run, pod: &str, argv: Vec<String>) {
    let what = argv.join(" ");
    let outcome = remote::exec_within(PINGER_LIMIT, &r.client, &r.ns, pod, None, argv).await;
    match outcome {
        Ok(code) if code == ExitCode::SUCCESS => {}
        Ok(_) => r.fail(format!("`{what}` failed in {pod}")),
        Err(e) => r.fail(format!("`{what}` in {pod}: {e}")),
    }
    println!();
}

/// One node's section of `all` and `node`.
async fn node_section(r: &mut Run, pod: &str, node: &str, targets: &str, show_ovs: bool) {
    println!("### start to diagnose node {node}");
    println!("#### ovn-controller log:");
    in_pinger(r, pod, words(&["tail", "/var/log/ovn/ovn-controller.log"])).await;
    println!("#### ovs-vswitchd log:");
    in_pinger(
        r,
        pod,
        words(&["tail", "/var/log/openvswitch/ovs-vswitchd.log"]),
    )
    .await;
    if show_ovs {
        println!("#### ovs-vsctl show results:");
        in_pinger(r, pod, words(&["ovs-vsctl", "show"])).await;
        println!("#### pinger diagnose results:");
    }
    let argv = vec![
        "/kube-ovn/kube-ovn-pinger".to_string(),
        "--mode=job".into(),
        format!("--external-address={EXTERNAL_ADDRESSES}"),
        format!("--target-ip-ports={targets}"),
    ];
    in_pinger(r, pod, argv).await;
    println!("### finish diagnose node {node}");
    println!();
}

/// The connectivity part, per target.
async fn connectivity(r: &mut Run, target: &Target) -> Result<(), String> {
    let targets = match target {
        Target::IpPorts(list) => list.clone(),
        _ => match node_port_targets(r).await {
            Ok(t) => t,
            Err(e) => {
                r.fail(e);
                String::new()
            }
        },
    };
    match target {
        Target::All => {
            println!("### kube-ovn-controller recent log");
            controller_errors(r).await;
            println!();
            for (pod, node) in pingers(r).await? {
                node_section(r, &pod, &node, &targets, true).await;
            }
        }
        Target::Node(node) => {
            Api::<Node>::all(r.client.clone())
                .get(node)
                .await
                .map_err(|e| format!("node {node}: {e}"))?;
            println!("### make sure kube-ovn-pinger running on node {node}");
            let all = pingers(r).await?;
            let Some((pod, _)) = all.iter().find(|(_, n)| n == node) else {
                r.fail(format!("No kube-ovn-pinger running on node {node}"));
                return Ok(());
            };
            let pod = pod.clone();
            node_section(r, &pod, node, &targets, false).await;
        }
        Target::Subnet(subnet) => {
            conn_check_server(r, subnet).await?;
            let cni: Api<DaemonSet> = Api::namespaced(r.client.clone(), &r.ns);
            let verbose = cni
                .get_opt("kube-ovn-cni")
                .await
                .ok()
                .flatten()
                .is_some_and(|d| {
                    serde_json::to_string(&d.spec)
                        .unwrap_or_default()
                        .contains("enable-verbose-conn-check")
                });
            if !verbose {
                println!("Warning: kube-ovn-cni not have args enable-verbose-conn-check, it will fail when check node tcp/udp connectivity");
            }
            for (pod, _) in pingers(r).await? {
                println!("#### pinger {pod} on namespace {} diagnose results:", r.ns);
                let argv = vec![
                    "/kube-ovn/kube-ovn-pinger".to_string(),
                    "--mode=job".into(),
                    "--tcp-conn-check-port=8100".into(),
                    "--udp-conn-check-port=8101".into(),
                    format!("--external-address={EXTERNAL_ADDRESSES}"),
                    format!("--target-ip-ports={targets}"),
                ];
                in_pinger(r, &pod, argv).await;
            }
        }
        Target::IpPorts(list) => {
            for (pod, _) in pingers(r).await? {
                println!("#### pinger {pod} on namespace {} diagnose results:", r.ns);
                let argv = vec![
                    "/kube-ovn/kube-ovn-pinger".to_string(),
                    "--mode=job".into(),
                    format!("--target-ip-ports={list}"),
                ];
                in_pinger(r, &pod, argv).await;
            }
        }
    }
    Ok(())
}

/// The error lines of kube-ovn-controller's last 100 log lines (klog's `E<MMDD>` lines, or
/// the `ERROR` level of this project's format).
async fn controller_errors(r: &mut Run) {
    let pods: Api<Pod> = Api::namespaced(r.client.clone(), &r.ns);
    let list = match pods
        .list(&ListParams::default().labels("app=kube-ovn-controller"))
        .await
    {
        Ok(l) => l.items,
        Err(e) => return r.fail(format!("listing kube-ovn-controller pods: {e}")),
    };
    let today = jiff::Zoned::now().strftime("E%m%d").to_string();
    for pod in list {
        let params = LogParams {
            tail_lines: Some(100),
            ..LogParams::default()
        };
        match pods.logs(&pod.name_any(), &params).await {
            Ok(text) => {
                for line in text.lines() {
                    if line.starts_with(&today) || line.contains(" ERROR ") {
                        println!("{line}");
                    }
                }
            }
            Err(e) => println!("(no log of {}: {e})", pod.name_any()),
        }
    }
}

/// Upstream's conn-check server DaemonSet in `subnet`, waited for up to 30 s.
async fn conn_check_server(r: &mut Run, subnet: &str) -> Result<(), String> {
    let subnets: Api<kube::core::DynamicObject> = Api::all_with(
        r.client.clone(),
        &kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("kubeovn.io", "v1", "Subnet"),
            "subnets",
        ),
    );
    if !matches!(subnets.get_opt(subnet).await, Ok(Some(_))) {
        return Err(format!("no subnet {subnet} exists !!"));
    }
    let ds_api: Api<DaemonSet> = Api::namespaced(r.client.clone(), &r.ns);
    let image = ds_api
        .get_opt("kube-ovn-pinger")
        .await
        .ok()
        .flatten()
        .and_then(|d| d.spec)
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.first().and_then(|c| c.image.clone()))
        .unwrap_or_default();
    let name = format!("{subnet}-conn-check-server");
    let ds: DaemonSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": r.ns, "labels": {"app": CONN_CHECK_LABEL}},
        "spec": {
            "selector": {"matchLabels": {"app": CONN_CHECK_LABEL}},
            "template": {
                "metadata": {
                    "annotations": {"ovn.kubernetes.io/logical_switch": subnet},
                    "labels": {"app": CONN_CHECK_LABEL},
                },
                "spec": {
                    "serviceAccountName": "kube-ovn-app",
                    "automountServiceAccountToken": true,
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": name,
                        "imagePullPolicy": "IfNotPresent",
                        "image": image,
                        "command": ["/kube-ovn/kube-ovn-pinger"],
                        "args": ["--enable-verbose-conn-check=true", "--tcp-conn-check-port=8100", "--udp-conn-check-port=8101"],
                        "env": [
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        ],
                        "readinessProbe": {
                            "failureThreshold": 1, "initialDelaySeconds": 3, "periodSeconds": 5,
                            "successThreshold": 1, "timeoutSeconds": 1,
                            "tcpSocket": {"port": 8100},
                        },
                    }],
                },
            },
        },
    }))
    .map_err(|e| e.to_string())?;
    match ds_api.create(&PostParams::default(), &ds).await {
        Ok(_) => println!("daemonset.apps/{name} created"),
        Err(kube::Error::Api(e)) if e.code == 409 => println!("daemonset.apps/{name} unchanged"),
        Err(e) => return Err(format!("creating daemonset {name}: {e}")),
    }
    let ready = poll(|| async {
        Ok(ds_api
            .get_opt(&name)
            .await
            .map_err(|e| e.to_string())?
            .is_some_and(|d| {
                daemon_set_ready(&d)
                    && d.status
                        .as_ref()
                        .is_some_and(|s| s.desired_number_scheduled > 0)
            }))
    })
    .await;
    if !matches!(ready, Ok(true)) {
        r.fail(format!("ds {name} pod not ready"));
    } else {
        println!("daemon set \"{name}\" successfully rolled out");
    }
    Ok(())
}

/// Deletes what the run created: the NodePort Service and the conn-check DaemonSet.
async fn cleanup(r: &Run, service: bool, target: &Target) {
    if service {
        let services: Api<Service> = Api::namespaced(r.client.clone(), &r.ns);
        match services
            .delete(NODE_PORT_SERVICE, &DeleteParams::default())
            .await
        {
            Ok(_) => println!("service \"{NODE_PORT_SERVICE}\" deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => eprintln!("kubectl-ko: deleting service {NODE_PORT_SERVICE}: {e}"),
        }
    }
    if let Target::Subnet(subnet) = target {
        let name = format!("{subnet}-conn-check-server");
        let ds: Api<DaemonSet> = Api::namespaced(r.client.clone(), &r.ns);
        match ds.delete(&name, &DeleteParams::background()).await {
            Ok(_) => println!("daemonset.apps \"{name}\" deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => eprintln!("kubectl-ko: deleting daemonset {name}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_leader_is_one_ready_pod_behind_the_service() {
        let slice = |eps: serde_json::Value| -> EndpointSlice {
            serde_json::from_value(
                json!({"addressType": "IPv4", "endpoints": eps, "metadata": {"name": "s"}}),
            )
            .unwrap()
        };
        let ep = |pod: &str, ready: bool| json!({"addresses": ["10.0.0.1"], "conditions": {"ready": ready}, "targetRef": {"kind": "Pod", "name": pod}});
        assert_eq!(
            leaders(&[slice(json!([ep("a", true), ep("b", false)]))]).len(),
            1
        );
        assert_eq!(
            leaders(&[slice(json!([ep("a", true)])), slice(json!([ep("a", true)]))]).len(),
            1
        );
        assert_eq!(
            leaders(&[slice(json!([ep("a", true), ep("b", true)]))]).len(),
            2
        );
        assert!(leaders(&[slice(json!([]))]).is_empty());
    }
}
