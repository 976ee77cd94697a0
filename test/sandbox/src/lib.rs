//! A whole Kube-OVN world on one machine, without containers and without a real kube-apiserver
//! (this is a test/sandbox fixture; product code never uses it).
//!
//! A [`Sandbox`] is: the Kubernetes API-server fixture; central OVN (NB, SB — standalone or raft —
//! ovn-northd, optionally ovn-ic with its databases); N nodes, each a network namespace with its
//! own Open vSwitch and ovn-controller, tunnelling Geneve over a shared fabric namespace; an
//! external namespace on a provider network; and per node a kubelet stand-in that registers the
//! Node and runs pods as network namespaces through the real CNI contract (with kubelet's
//! readiness probes and pod conditions, and Multus's attachments of NetworkAttachmentDefinitions
//! as extra NICs, [`multus`]); kube-controller-manager's workload controllers (Deployments,
//! ReplicaSets, StatefulSets and their garbage collection, [`apps`]); for Services, what its
//! EndpointSlice and EndpointSlice-mirroring controllers do ([`endpointslice`], [`mirroring`]),
//! kube-proxy's rejects for Service ports without endpoints ([`kubeproxy`]) and the
//! `kubernetes` Service's endpoint on the first node ([`apiproxy`]); and test workloads
//! ([`workload`]), with the netpol e2e suite's pods and reachability matrix ([`matrix`]). Everything it creates
//! carries its `prefix` (namespaces) or lives under its `run_dir` (files, sockets, pidfiles), so
//! sandboxes run side by side and a teardown — [`Sandbox::down`], [`sweep`] from another process,
//! or `Drop` after a failed test — provably leaves nothing behind.

pub mod apiproxy;
pub mod apps;
pub mod central;
pub mod cni;
pub mod components;
pub mod containers;
pub mod dns;
pub mod endpointslice;
pub mod error;
pub mod exec;
pub mod exposition;
pub mod kubelet;
pub mod kubeovn;
pub mod kubeproxy;
pub mod loopback;
pub mod matrix;
pub mod mirroring;
pub mod multus;
pub mod node;
pub mod probe;
pub mod prober;
pub mod rbac;
pub mod scheduler;
pub mod sys;
pub mod wire;
pub mod workload;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube_apiserver_fixture::{ApiServer, Options};
use ovsdb::{Client, Remote, Timeouts, Transaction};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

pub use central::CentralRemotes;
pub use error::{Error, Result};
pub use node::{ExternalHost, NodeInfo};

/// kube-apiserver's default service CIDR.
pub const DEFAULT_SERVICE_CIDR: &str = kube_apiserver_fixture::services::DEFAULT_SERVICE_CIDR;

/// How long bring-up may take before it is declared failed.
const BRING_UP_DEADLINE: Duration = Duration::from_secs(60);

/// What to bring up.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Directory for every file of the sandbox; must not exist or be empty. Unix socket paths
    /// live below it, so keep it short (they are limited to 107 bytes).
    pub run_dir: PathBuf,
    /// Prefix of every network namespace the sandbox creates; must be unused.
    pub prefix: String,
    /// Node names, in order; the first is labelled control-plane.
    pub nodes: Vec<String>,
    /// Run NB and SB (and, with `ic`, the IC databases) as three-member raft clusters.
    pub raft: bool,
    /// Also run the interconnection databases and ovn-ic.
    pub ic: bool,
    /// With `ic`, whether the sandbox runs ovn-ic itself (false: kube-ovn-ic-controller starts
    /// it, as upstream's does; the databases still run).
    pub ic_daemon: bool,
    /// The prefix of a running sandbox whose fabric (underlay and provider bridges, external
    /// host) this one's nodes join instead of building their own: two sandboxes as two
    /// availability zones whose gateways reach each other over Geneve. Down this one first.
    pub fabric_of: Option<String>,
    /// Added to node indexes on the fabric (addresses `.2+offset+i`, fabric port names), so
    /// nodes of sandboxes sharing a fabric do not collide.
    pub node_offset: usize,
    /// Where the API-server fixture listens (port 0 picks a free one).
    pub api_listen: SocketAddr,
    /// Run kubelet stand-ins and the scheduler (tests of the bare OVN world can skip them).
    pub kubelets: bool,
    /// Install and run kube-ovn-rs (CRDs, controller, a daemon and the CNI on every node).
    pub kube_ovn: Option<kubeovn::KubeOvnBuild>,
    /// Service CIDRs of the API server (`--service-cluster-ip-range`): one, or one per family
    /// for dual-stack (the first is primary). The `kubernetes` Service gets the first address.
    pub service_cidrs: Vec<String>,
    /// With kube-ovn: also the objects `kubectl ko diagnose` checks beyond the component pods,
    /// the `ovn-nb`/`ovn-sb`/`ovn-northd` Services and the `kube-ovn-pinger` DaemonSet (whose
    /// pods take addresses of the default subnet, so tests counting them leave it off).
    pub diagnose: bool,
}

impl SandboxConfig {
    /// A configuration for `nodes` nodes named `node1`… with a fresh random prefix and run
    /// directory under `/tmp`, so concurrent tests never share anything.
    pub fn isolated(nodes: usize) -> SandboxConfig {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let short = &id[..6];
        SandboxConfig {
            run_dir: std::env::temp_dir().join(format!("kos-{short}")),
            prefix: format!("t{short}-"),
            nodes: (1..=nodes).map(|i| format!("node{i}")).collect(),
            raft: false,
            ic: false,
            ic_daemon: true,
            fabric_of: None,
            node_offset: 0,
            api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            kubelets: true,
            kube_ovn: None,
            service_cidrs: vec![DEFAULT_SERVICE_CIDR.to_string()],
            diagnose: false,
        }
    }
}

/// Everything another process needs to find, use and tear down a running sandbox; written to
/// `<run_dir>/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxState {
    /// Network namespace prefix.
    pub prefix: String,
    /// Run directory.
    pub run_dir: PathBuf,
    /// Central database remotes.
    pub central: CentralRemotes,
    /// The nodes.
    pub nodes: Vec<NodeInfo>,
    /// The API server's URL.
    pub api_url: String,
    /// A kubeconfig file for it.
    pub kubeconfig: PathBuf,
    /// Seconds from start to everything ready.
    pub bring_up_seconds: f64,
    /// The process serving the API and the kubelets (the CLI's supervisor), if any.
    pub supervisor_pid: Option<u32>,
    /// Whether kube-ovn-rs (controller, daemons, CNI) runs in the sandbox.
    #[serde(default)]
    pub kube_ovn: bool,
    /// The API server's service CIDRs (primary first).
    #[serde(default)]
    pub service_cidrs: Vec<String>,
    /// Where pods reach the API server behind the `kubernetes` Service: the first node's
    /// InternalIP and port 6443 (the endpoint of its EndpointSlice).
    #[serde(default)]
    pub api_endpoint: Option<SocketAddr>,
    /// The external host on the provider network every node's `eth1` is on (the master of
    /// macvlan/ipvlan attachments): where tests run the outside world's side of a test.
    #[serde(default)]
    pub external: Option<ExternalHost>,
}

impl SandboxState {
    /// Reads the state of the sandbox in `run_dir`.
    pub fn load(run_dir: &Path) -> Result<SandboxState> {
        let path = run_dir.join("state.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }

    fn save(&self) -> Result<()> {
        let path = self.run_dir.join("state.json");
        let tmp = self.run_dir.join("state.json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Invalid(e.to_string()))?;
        std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The kubeconfig kube-ovn-controller runs with: its service account's token when the
    /// sandbox runs kube-ovn-rs, else the unrestricted one.
    pub fn controller_kubeconfig(&self) -> PathBuf {
        let own = self.run_dir.join(kubeovn::CONTROLLER_KUBECONFIG);
        if own.is_file() {
            own
        } else {
            self.kubeconfig.clone()
        }
    }

    /// A command run on the external host (in its namespace).
    pub fn external_command(&self, program: &str) -> std::process::Command {
        sys::in_netns(&node::external_netns(&self.prefix), program)
    }

    /// Network namespace of a pod.
    pub fn pod_netns(&self, namespace: &str, name: &str) -> String {
        kubelet::pod_netns(&self.prefix, namespace, name)
    }
}

/// A running sandbox owned by this process.
pub struct Sandbox {
    state: SandboxState,
    api: Option<ApiServer>,
    tasks: Vec<JoinHandle<()>>,
    client: kube::Client,
    children: Vec<std::process::Child>,
    /// The loopback addresses raft IC databases serve on, held while the sandbox lives.
    _ic_hosts: Vec<loopback::Loopback>,
    down: bool,
}

impl Sandbox {
    /// Brings the whole world up and returns once every node's chassis is in the southbound
    /// database and (with kubelets) every Node is registered. On failure everything already
    /// created is torn down again.
    pub async fn up(config: SandboxConfig) -> Result<Sandbox> {
        let start = Instant::now();
        if config.nodes.is_empty() {
            return Err(Error::Invalid("a sandbox needs at least one node".into()));
        }
        if let Some(ns) = sys::netns_list()
            .into_iter()
            .find(|n| n.starts_with(&config.prefix))
        {
            return Err(Error::Invalid(format!(
                "network namespace {ns} already uses prefix {:?}: is a sandbox running? (down it first)",
                config.prefix
            )));
        }
        let busy = std::fs::read_dir(&config.run_dir).map(|mut d| d.next().is_some());
        if busy.unwrap_or(false) {
            return Err(Error::Invalid(format!(
                "{} is not empty: is a sandbox running? (down it first)",
                config.run_dir.display()
            )));
        }
        std::fs::create_dir_all(&config.run_dir).map_err(|e| Error::io(&config.run_dir, e))?;
        match tokio::time::timeout(BRING_UP_DEADLINE, Self::build(&config, start)).await {
            Ok(Ok(sandbox)) => Ok(sandbox),
            Ok(Err(e)) => {
                let (dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
                let _ = tokio::task::spawn_blocking(move || sweep(&dir, &prefix)).await;
                Err(e)
            }
            Err(_) => {
                let (dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
                let _ = tokio::task::spawn_blocking(move || sweep(&dir, &prefix)).await;
                Err(Error::Timeout {
                    what: "sandbox bring-up".into(),
                    after: BRING_UP_DEADLINE,
                })
            }
        }
    }

    async fn build(config: &SandboxConfig, start: Instant) -> Result<Sandbox> {
        // kube-ovn's processes run as their service accounts, held to the shipped RBAC rules.
        let identities = match &config.kube_ovn {
            Some(build) => {
                let policy = rbac::Policy::read_dir(&build.manifests)?;
                vec![
                    policy.identity(rbac::CONTROLLER_SA),
                    policy.identity(rbac::DAEMON_SA),
                    policy.identity(rbac::APP_SA),
                    policy.identity(rbac::OVS_SA),
                ]
            }
            None => Vec::new(),
        };
        let token_of = |sa: &str| {
            identities
                .iter()
                .find(|i| i.user == rbac::user_of(sa))
                .map(|i| i.token.clone())
        };
        let (controller_token, daemon_token) =
            (token_of(rbac::CONTROLLER_SA), token_of(rbac::DAEMON_SA));
        let layout = exec::Layout {
            prefix: config.prefix.clone(),
            run_dir: config.run_dir.clone(),
            binaries: config
                .kube_ovn
                .as_ref()
                .and_then(|b| b.daemon.parent().map(Path::to_path_buf)),
            scripts: config
                .kube_ovn
                .as_ref()
                .and_then(|b| b.manifests.parent().map(|dist| dist.join("images"))),
        };
        let api = ApiServer::start(Options {
            listen: config.api_listen,
            service_cidrs: config.service_cidrs.clone(),
            api_port: apiproxy::NODE_API_PORT,
            identities: identities.clone(),
            exec: Some(exec::handler(layout.clone())),
            ..Options::default()
        })
        .await
        .map_err(|e| Error::Invalid(format!("API server fixture: {e}")))?;
        let client = api.client()?;
        let kubeconfig = config.run_dir.join("kubeconfig");
        std::fs::write(&kubeconfig, api.kubeconfig_yaml())
            .map_err(|e| Error::io(&kubeconfig, e))?;
        if let Some(token) = &controller_token {
            let path = config.run_dir.join(kubeovn::CONTROLLER_KUBECONFIG);
            let text = rbac::kubeconfig_with_token(&api.url(), rbac::CONTROLLER_SA, token);
            std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        }
        for sa in [rbac::APP_SA, rbac::OVS_SA] {
            if let Some(token) = token_of(sa) {
                write_pod_credentials(&client, &config.run_dir, sa, &token).await?;
            }
        }

        let ic_hosts = if config.raft && config.ic {
            (0..central::RAFT_MEMBERS)
                .map(|_| loopback::Loopback::claim())
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| {
                    Error::Invalid(format!("loopback addresses for the IC databases: {e}"))
                })?
        } else {
            Vec::new()
        };
        let cfg = config.clone();
        let hosts: Vec<_> = ic_hosts.iter().map(loopback::Loopback::addr).collect();
        let (central, nodes) = tokio::task::spawn_blocking(move || build_ovn(&cfg, &hosts))
            .await
            .map_err(|e| Error::Invalid(format!("bring-up task: {e}")))??;
        wait_for_chassis(&central.sb, &config.nodes).await?;
        let mut relays = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let listener = apiproxy::bind_in_netns(
                &sys::netns_path(&n.netns),
                SocketAddr::from(([127, 0, 0, 1], apiproxy::NODE_API_PORT)),
            )?;
            relays.push(apiproxy::relay(listener, api.address())?);
            if i == 0 {
                // The `kubernetes` Service's endpoint: the control-plane node's InternalIP.
                let listener = apiproxy::bind_in_netns(
                    &sys::netns_path(&n.netns),
                    SocketAddr::from((n.ip, apiproxy::NODE_API_PORT)),
                )?;
                relays.push(apiproxy::relay(listener, api.address())?);
                if config.raft && config.kube_ovn.is_some() {
                    // The ovn-central pods run on this node: its NB raft port reaches the NB
                    // members' raft sockets, as a master's does (the leader checker dials it).
                    let listener = apiproxy::bind_in_netns(
                        &sys::netns_path(&n.netns),
                        SocketAddr::from((n.ip, central::NB_RAFT_PORT)),
                    )?;
                    relays.push(apiproxy::relay_unix(
                        listener,
                        central::nb_raft_sockets(&config.run_dir),
                    )?);
                }
            }
            let path = n.kubeconfig();
            std::fs::write(
                &path,
                apiproxy::node_kubeconfig(&n.name, daemon_token.as_deref()),
            )
            .map_err(|e| Error::io(&path, e))?;
        }

        let api_endpoint = SocketAddr::from((nodes[0].ip, apiproxy::NODE_API_PORT));
        apiproxy::write_kubernetes_endpoints(
            client.clone(),
            api_endpoint.ip(),
            api_endpoint.port(),
        )
        .await?;
        relays.push(tokio::spawn(apiproxy::kubernetes_endpoints(
            client.clone(),
            api_endpoint.ip(),
            api_endpoint.port(),
        )));
        let mut sandbox = Sandbox {
            state: SandboxState {
                prefix: config.prefix.clone(),
                run_dir: config.run_dir.clone(),
                central,
                nodes: nodes.clone(),
                api_url: api.url(),
                kubeconfig,
                bring_up_seconds: 0.0,
                supervisor_pid: None,
                kube_ovn: config.kube_ovn.is_some(),
                service_cidrs: config.service_cidrs.clone(),
                api_endpoint: Some(api_endpoint),
                external: Some(ExternalHost::of(
                    config.fabric_of.as_deref().unwrap_or(&config.prefix),
                )),
            },
            api: Some(api),
            tasks: relays,
            client: client.clone(),
            children: Vec::new(),
            _ic_hosts: ic_hosts,
            down: false,
        };
        // Multus's CRD, so kubelets find NetworkAttachmentDefinitions (and kube-ovn can watch
        // them) as on a cluster running Multus.
        kubeovn::install_crd_yaml(
            &client,
            multus::NAD_CRD,
            "the NetworkAttachmentDefinition CRD",
        )
        .await?;
        // kube-controller-manager's part every cluster has, kubelets or not.
        sandbox
            .tasks
            .push(tokio::spawn(mirroring::run(client.clone())));
        if config.kubelets {
            for (i, node) in nodes.into_iter().enumerate() {
                let prefix = config.prefix.clone();
                sandbox.tasks.push(tokio::spawn(kubelet::run(
                    node,
                    prefix,
                    client.clone(),
                    i == 0,
                    config.kube_ovn.is_some().then(|| layout.clone()),
                )));
            }
            sandbox
                .tasks
                .push(tokio::spawn(scheduler::run(client.clone())));
            sandbox.tasks.push(tokio::spawn(apps::run(client.clone())));
            let node_netns = sandbox
                .state
                .nodes
                .iter()
                .map(|n| n.netns.clone())
                .collect();
            sandbox
                .tasks
                .push(tokio::spawn(kubeproxy::run(node_netns, client.clone())));
            sandbox
                .tasks
                .push(tokio::spawn(endpointslice::run(client.clone())));
            let api: Api<Node> = Api::all(client);
            let want = config.nodes.len();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                // Registered = created and reporting its addresses (a second write).
                let have = api
                    .list(&Default::default())
                    .await?
                    .items
                    .iter()
                    .filter(|n| {
                        n.status
                            .as_ref()
                            .and_then(|s| s.addresses.as_ref())
                            .is_some_and(|a| !a.is_empty())
                    })
                    .count();
                if have >= want {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(Error::Timeout {
                        what: format!("{want} Nodes registered ({have} are)"),
                        after: Duration::from_secs(30),
                    });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if let Some(build) = &config.kube_ovn {
            kubeovn::install_crds(&sandbox.client, &build.crds).await?;
            kubeovn::install_accounts(&sandbox.client, &build.manifests).await?;
            let st = &sandbox.state;
            let controller = kubeovn::start_controller(
                build,
                &st.run_dir,
                &st.controller_kubeconfig(),
                &st.central.nb,
            )?;
            sandbox.children.push(controller);
            for n in &st.nodes {
                let agent = kubeovn::start_node_agent(build, n)?;
                sandbox.children.push(agent);
            }
            components::register(
                &sandbox.client,
                &sandbox.state,
                config.raft,
                config.diagnose,
                &build.controller_args,
            )
            .await?;
            components::wait_for_leader_labels(&sandbox.client, Duration::from_secs(60)).await?;
        }
        sandbox.state.bring_up_seconds = start.elapsed().as_secs_f64();
        sandbox.state.save()?;
        Ok(sandbox)
    }

    /// What another process needs to use this sandbox.
    pub fn state(&self) -> &SandboxState {
        &self.state
    }

    /// Records the supervising process in the saved state (the CLI's `serve`).
    pub fn set_supervisor(&mut self, pid: u32) -> Result<()> {
        self.state.supervisor_pid = Some(pid);
        self.state.save()
    }

    /// Every distinct API request kube-ovn's processes made so far, by service account, with
    /// whether the shipped RBAC rules allowed it (empty without kube-ovn).
    pub fn api_requests(&self) -> Vec<kube_apiserver_fixture::access::Recorded> {
        self.api
            .as_ref()
            .map(ApiServer::recorded)
            .unwrap_or_default()
    }

    /// A client of the sandbox's Kubernetes API.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Starts a test server in the running pod `namespace/pod` (see [`workload::serve`]): each
    /// TCP connection on `tcp_ports` gets `name` and a newline, each UDP datagram on `udp_ports`
    /// gets `name`. The process lives in the pod's namespace (so a sweep stops it too) and is
    /// killed when the returned handle is dropped.
    pub fn serve_pod(
        &self,
        namespace: &str,
        pod: &str,
        name: &str,
        tcp_ports: &[u16],
        udp_ports: &[u16],
    ) -> Result<workload::PodServer> {
        let netns = self.state.pod_netns(namespace, pod);
        if !Path::new(&sys::netns_path(&netns)).exists() {
            return Err(Error::Invalid(format!(
                "pod {namespace}/{pod} has no network namespace (not running?)"
            )));
        }
        workload::PodServer::start(
            &workload::sandbox_binary()?,
            &netns,
            name,
            tcp_ports,
            udp_ports,
        )
    }

    /// Stops everything and removes every namespace and file; returns what was removed. It
    /// fails after tearing down when kube-ovn made a request its shipped RBAC rules do not
    /// allow, so every test that runs kube-ovn-rs checks that the rules are sufficient.
    pub async fn down(mut self) -> Result<SweepReport> {
        self.down = true;
        for t in self.tasks.drain(..) {
            t.abort();
        }
        stop_children(&mut self.children);
        let denied: Vec<String> = self
            .api_requests()
            .into_iter()
            .filter(|r| !r.allowed)
            .map(|r| {
                let a = r.attributes;
                format!(
                    "{} {} {}/{}{}{} in {:?}",
                    r.user,
                    a.verb,
                    a.group,
                    a.resource,
                    if a.subresource.is_empty() { "" } else { "/" },
                    a.subresource,
                    a.namespace
                )
            })
            .collect();
        if let Some(api) = self.api.take() {
            api.shutdown().await;
        }
        let (dir, prefix) = (self.state.run_dir.clone(), self.state.prefix.clone());
        let report = tokio::task::spawn_blocking(move || sweep(&dir, &prefix))
            .await
            .map_err(|e| Error::Invalid(format!("teardown task: {e}")))??;
        if !denied.is_empty() {
            return Err(Error::Invalid(format!(
                "kube-ovn made requests the shipped RBAC rules (dist/manifests) deny: {}",
                denied.join("; ")
            )));
        }
        Ok(report)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.down {
            return;
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        stop_children(&mut self.children);
        if std::thread::panicking() {
            // The run directory goes with the sweep: keep what the kube-ovn-rs logs say in
            // the failed test's output.
            eprintln!("{}", probe::kube_ovn_logs(&self.state));
        }
        // Best effort after a failed test: never leave namespaces and daemons behind.
        let _ = sweep(&self.state.run_dir, &self.state.prefix);
    }
}

/// Stops the kube-ovn processes (SIGTERM, then kill) and reaps them.
fn stop_children(children: &mut Vec<std::process::Child>) {
    for mut c in children.drain(..) {
        sys::stop_pid(c.id() as i32, Duration::from_secs(5));
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn build_ovn(
    config: &SandboxConfig,
    ic_hosts: &[std::net::Ipv4Addr],
) -> Result<(CentralRemotes, Vec<NodeInfo>)> {
    let central = central::start(
        &central::dir(&config.run_dir),
        config.raft,
        config.ic,
        config.ic_daemon,
        ic_hosts,
    )?;
    if config.fabric_of.is_none() {
        node::start_fabric(&config.prefix)?;
    }
    let fabric = config.fabric_of.as_deref().unwrap_or(&config.prefix);
    // Nodes come up in parallel: each mostly waits for its own daemons.
    let nodes = std::thread::scope(|s| {
        let handles: Vec<_> = config
            .nodes
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let sb = central.sb.clone();
                s.spawn(move || {
                    node::start_node(
                        &config.prefix,
                        fabric,
                        &config.run_dir,
                        i + config.node_offset,
                        name,
                        &sb,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Invalid("node bring-up panicked".into())))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    Ok((central, nodes))
}

/// Waits until every node's ovn-controller has registered its Chassis in the southbound DB,
/// read with our own OVSDB client.
async fn wait_for_chassis(sb: &str, names: &[String]) -> Result<()> {
    let remotes = Remote::parse_list(sb)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut have = Vec::new();
        for remote in &remotes {
            if let Ok((client, _)) = Client::connect(remote, None, &Timeouts::default()).await {
                let mut txn = Transaction::new("OVN_Southbound");
                txn.select("Chassis", vec![]);
                if let Ok(out) = client.transact(&txn).await {
                    have = out.results[0]
                        .rows
                        .iter()
                        .flatten()
                        .filter_map(|r| r.get("name")?.as_str().map(str::to_string))
                        .collect();
                    break;
                }
            }
        }
        if names.iter().all(|n| have.contains(n)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!("chassis {names:?} in the southbound DB (have {have:?})"),
                after: Duration::from_secs(30),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a teardown removed.
#[derive(Debug, Default, Clone)]
pub struct SweepReport {
    /// Processes stopped.
    pub processes: usize,
    /// Network namespaces deleted.
    pub namespaces: usize,
}

/// Tears down whatever a sandbox with `run_dir` and `prefix` left: every daemon with a pidfile
/// under `run_dir`, any other process still running from it, every namespace with the prefix,
/// and the directory itself. Safe to run repeatedly and from any process.
pub fn sweep(run_dir: &Path, prefix: &str) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    let mut pidfiles = Vec::new();
    collect_pidfiles(run_dir, &mut pidfiles);
    // ovn-controllers and vswitchds first, databases last, so nothing logs a lost peer in
    // between for long.
    pidfiles.sort_by_key(|p| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match name.as_str() {
            "ovn-controller.pid" => 0,
            "vswitchd.pid" => 1,
            "ovn-ic.pid" => 2,
            n if n.starts_with("northd") => 2,
            _ => 3,
        }
    });
    for p in pidfiles {
        if let Some(pid) = sys::read_pidfile(&p) {
            if sys::alive(pid) {
                sys::stop_pid(pid, Duration::from_secs(5));
                report.processes += 1;
            }
        }
    }
    let mut namespaces: Vec<String> = sys::netns_list()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    // Anything else still running inside the sandbox's namespaces (a CNI plugin, a test's
    // server) or a daemon of ours still pointing at the run directory.
    let ids: Vec<String> = namespaces.iter().filter_map(|n| sys::netns_id(n)).collect();
    let mut strays = sys::pids_in_netns(&ids);
    if let Some(dir) = run_dir.to_str() {
        strays.extend(sys::daemons_mentioning(dir));
    }
    strays.sort_unstable();
    strays.dedup();
    for pid in strays {
        sys::stop_pid(pid, Duration::from_secs(2));
        report.processes += 1;
    }
    // Pods before nodes before the fabric: veths vanish with either end anyway.
    namespaces.sort_by_key(|n| (n.ends_with("fabric"), n.clone()));
    let mut first_error = None;
    for ns in namespaces {
        match sys::netns_del(&ns) {
            Ok(()) => report.namespaces += 1,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if run_dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(run_dir) {
            first_error.get_or_insert(Error::io(run_dir, e));
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

fn collect_pidfiles(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        // Links (the component pods' upstream file names) are not followed: each daemon is
        // found once, by its own pidfile.
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            collect_pidfiles(&p, out);
        } else if kind.is_file() && p.extension().is_some_and(|x| x == "pid") {
            out.push(p);
        }
    }
}

/// Whether anything of a sandbox is left on the machine: returns a description of each leftover
/// (empty when the teardown was complete).
pub fn leftovers(run_dir: &Path, prefix: &str) -> Vec<String> {
    let mut left: Vec<String> = sys::netns_list()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .map(|n| format!("network namespace {n}"))
        .collect();
    if let Some(dir) = run_dir.to_str() {
        left.extend(
            sys::daemons_mentioning(dir)
                .into_iter()
                .map(|p| format!("process {p} running from {dir}")),
        );
    }
    if run_dir.exists() {
        left.push(format!("directory {}", run_dir.display()));
    }
    left
}

/// The credentials of service account `sa` for the processes of its pods (see
/// [`exec::service_account_kubeconfig`]): its token, with the API reached through the
/// `kubernetes` Service's cluster IP from pods and through the node's relay from host-network
/// pods.
async fn write_pod_credentials(
    client: &kube::Client,
    run_dir: &Path,
    sa: &str,
    token: &str,
) -> Result<()> {
    let svc = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), "default")
        .get("kubernetes")
        .await?;
    let spec = svc.spec.unwrap_or_default();
    let ip = spec
        .cluster_ip
        .filter(|ip| !ip.is_empty() && ip != "None")
        .ok_or_else(|| Error::Invalid("the kubernetes Service has no cluster IP".into()))?;
    let port = spec
        .ports
        .and_then(|p| p.first().map(|p| p.port))
        .unwrap_or(443);
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip
    };
    for (host_network, server) in [
        (false, format!("http://{host}:{port}")),
        (
            true,
            format!("http://127.0.0.1:{}", apiproxy::NODE_API_PORT),
        ),
    ] {
        let path = exec::service_account_kubeconfig(run_dir, sa, host_network);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        std::fs::write(&path, rbac::kubeconfig_with_token(&server, sa, token))
            .map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}
