//! `kube-ovn-sandbox up|down|status|kubeconfig|exec|serve-pod`: a whole Kube-OVN world on this machine,
//! like `kind` for kube-ovn-rs but with network namespaces instead of containers.
//!
//! `up` starts a supervisor process (`serve`) that owns the API-server fixture and the kubelet
//! stand-ins, waits until it reports the world ready, prints how to use it and returns. `down`
//! stops the supervisor and sweeps anything left, so it also cleans up after a crash.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube_ovn_sandbox::{leftovers, sweep, sys, Sandbox, SandboxConfig, SandboxState};

const DEFAULT_RUN_DIR: &str = "/tmp/kube-ovn-sandbox";
const DEFAULT_PREFIX: &str = "kos-";

#[derive(Parser)]
#[command(
    version,
    about = "A local Kube-OVN sandbox: OVN central, nodes as network namespaces, kubelet stand-ins and a Kubernetes API fixture"
)]
struct Cli {
    /// Directory holding everything of the sandbox (short: unix socket paths live below it).
    #[arg(long, global = true, default_value = DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
    /// Prefix of the sandbox's network namespaces.
    #[arg(long, global = true, default_value = DEFAULT_PREFIX)]
    prefix: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Bring the sandbox up and print how to use it.
    Up(UpArgs),
    /// Tear the sandbox down, leaving no namespace, process or file behind.
    Down,
    /// Show the sandbox's components, nodes and pods.
    Status,
    /// Print the kubeconfig of the sandbox's API server.
    Kubeconfig,
    /// Run a command inside a pod's network namespace (`[NAMESPACE/]POD`), on a node with
    /// `--node` (with that node's OVS environment, so `ovs-vsctl show` works), or on the
    /// external host (the provider network's client) with `--external`.
    Exec {
        /// The pod, as `namespace/name` or `name` in `default`.
        #[arg(required_unless_present_any = ["node", "external"])]
        pod: Option<String>,
        /// Run on this node instead of in a pod.
        #[arg(long, conflicts_with_all = ["pod", "external"])]
        node: Option<String>,
        /// Run on the external host instead of in a pod.
        #[arg(long, conflicts_with = "pod")]
        external: bool,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Run the sandbox in the foreground until SIGTERM/SIGINT (what `up` starts in background).
    Serve(UpArgs),
    /// Test workload: enter a pod's network namespace and, until killed, answer every TCP
    /// connection with `--name` and a newline and every UDP datagram with `--name`, on IPv4 and
    /// IPv6. Prints `serving` once bound.
    ServePod {
        /// The pod, as `namespace/name` or `name` in `default`.
        #[arg(required_unless_present = "netns")]
        pod: Option<String>,
        /// A network namespace by name instead of a pod.
        #[arg(long, conflicts_with = "pod")]
        netns: Option<String>,
        /// What to answer with (e.g. the pod name); defaults to the pod or namespace name.
        #[arg(long)]
        name: Option<String>,
        /// TCP ports to serve (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        tcp: Vec<u16>,
        /// UDP ports to serve (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        udp: Vec<u16>,
    },
}

#[derive(clap::Args, Clone)]
struct UpArgs {
    /// Number of nodes (node1, node2, …).
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// Run NB and SB as three-member raft clusters.
    #[arg(long)]
    raft: bool,
    /// Also run OVN interconnection (IC NB/SB databases and ovn-ic).
    #[arg(long)]
    ic: bool,
    /// Address of the Kubernetes API fixture (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    api_listen: SocketAddr,
    /// Bring up the bare world only: no kube-ovn controller, daemons or CNI.
    #[arg(long)]
    no_kube_ovn: bool,
    /// Service CIDRs of the API server, comma-separated, one per IP family (the first is the
    /// primary family), as kube-apiserver's flag.
    #[arg(long, value_delimiter = ',', default_value = kube_ovn_sandbox::DEFAULT_SERVICE_CIDR)]
    service_cluster_ip_range: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Cmd::Up(args) => up(&cli, args),
        Cmd::Down => down(&cli),
        Cmd::Status => runtime().and_then(|rt| rt.block_on(status(&cli))),
        Cmd::Kubeconfig => kubeconfig(&cli),
        Cmd::Exec {
            pod,
            node,
            external,
            command,
        } => {
            let target = match (node, external) {
                (Some(node), _) => Target::Node(node),
                (None, true) => Target::External,
                (None, false) => Target::Pod(pod.as_deref().unwrap_or_default()),
            };
            return exec(&cli, target, command);
        }
        Cmd::Serve(args) => runtime().and_then(|rt| rt.block_on(serve(&cli, args))),
        Cmd::ServePod {
            pod,
            netns,
            name,
            tcp,
            udp,
        } => serve_pod(
            &cli,
            pod.as_deref(),
            netns.as_deref(),
            name.as_deref(),
            tcp,
            udp,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-ovn-sandbox: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn runtime() -> Res<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn log_file(run_dir: &Path) -> PathBuf {
    let mut name = run_dir.as_os_str().to_owned();
    name.push(".log");
    PathBuf::from(name)
}

/// kube-ovn-rs as built in the same target directory as this binary.
fn kube_ovn_build() -> Option<kube_ovn_sandbox::kubeovn::KubeOvnBuild> {
    let exe = std::env::current_exe().ok()?;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    kube_ovn_sandbox::kubeovn::KubeOvnBuild::beside(exe.parent()?, &source)
}

fn preflight() -> Res {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("0");
    if uid != "0" {
        return Err("network namespaces need root: run as root".into());
    }
    let missing: Vec<&str> = [
        "ip",
        "ethtool",
        "ovsdb-tool",
        "ovsdb-server",
        "ovs-vswitchd",
        "ovs-vsctl",
        "ovn-northd",
        "ovn-controller",
        "ovn-nbctl",
    ]
    .into_iter()
    .filter(|tool| {
        !std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false)
    })
    .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing tools {missing:?}: run test/sandbox/install-deps.sh (Debian: openvswitch-switch ovn-central ovn-host ovn-ic ovn-ic-db iproute2 ethtool)"
        )
        .into());
    }
    Ok(())
}

fn up(cli: &Cli, args: &UpArgs) -> Res {
    preflight()?;
    if cli.run_dir.join("state.json").exists() {
        return Err(format!(
            "a sandbox is already up in {} (kube-ovn-sandbox down first)",
            cli.run_dir.display()
        )
        .into());
    }
    let log = log_file(&cli.run_dir);
    let log_out = std::fs::File::create(&log)?;
    let mut serve = Command::new("setsid");
    serve
        .arg(std::env::current_exe()?)
        .arg(format!("--run-dir={}", cli.run_dir.display()))
        .arg(format!("--prefix={}", cli.prefix))
        .arg("serve")
        .arg(format!("--nodes={}", args.nodes))
        .arg(format!("--api-listen={}", args.api_listen))
        .arg(format!(
            "--service-cluster-ip-range={}",
            args.service_cluster_ip_range.join(",")
        ));
    if args.raft {
        serve.arg("--raft");
    }
    if args.ic {
        serve.arg("--ic");
    }
    if args.no_kube_ovn {
        serve.arg("--no-kube-ovn");
    } else if kube_ovn_build().is_none() {
        return Err("kube-ovn binaries not built next to kube-ovn-sandbox: run `cargo build -p kube-ovn-controller -p kube-ovn-daemon -p kube-ovn-cni` (or pass --no-kube-ovn)".into());
    }
    let mut child = serve
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(log_out.try_clone()?)
        .stderr(log_out)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let state = loop {
        if let Ok(s) = SandboxState::load(&cli.run_dir) {
            if s.supervisor_pid.is_some() {
                break s;
            }
        }
        if let Some(code) = child.try_wait()? {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = std::fs::remove_file(&log);
            return Err(format!("sandbox failed to come up ({code}):\n{tail}").into());
        }
        if Instant::now() > deadline {
            return Err(format!("sandbox not up after 120 s; see {}", log.display()).into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let nodes: Vec<String> = state
        .nodes
        .iter()
        .map(|n| format!("{} ({})", n.name, n.ip))
        .collect();
    println!(
        "kube-ovn-sandbox is up: {} nodes in {:.2} s: {}",
        state.nodes.len(),
        state.bring_up_seconds,
        nodes.join(", ")
    );
    println!();
    println!("  export KUBECONFIG={}", state.kubeconfig.display());
    println!("  kubectl get nodes -o wide");
    println!("  ovn-nbctl --db={} show", state.central.nb);
    println!("  ovn-sbctl --db={} show", state.central.sb);
    println!(
        "  kube-ovn-sandbox exec --node {} -- ovs-vsctl show",
        state.nodes[0].name
    );
    println!("  kube-ovn-sandbox exec NAMESPACE/POD -- ip addr");
    if let Some(ext) = &state.external {
        println!(
            "  kube-ovn-sandbox exec --external -- ip addr   # the external host, {} on {} (every node's eth1)",
            ext.ip, ext.cidr
        );
    }
    println!("  kube-ovn-sandbox status");
    println!("  kube-ovn-sandbox down");
    println!();
    println!(
        "CNI: each node's kubelet stand-in reads {} and runs plugins from {}.",
        state.nodes[0]
            .cni_conf_dir()
            .display()
            .to_string()
            .replace(&state.nodes[0].name, "<node>"),
        state.nodes[0]
            .cni_bin_dir()
            .display()
            .to_string()
            .replace(&state.nodes[0].name, "<node>"),
    );
    println!("Log: {}", log.display());
    if state.kube_ovn {
        println!();
        runtime()?.block_on(demo(&state))?;
    }
    Ok(())
}

/// Two pods on different nodes, wired by kube-ovn-rs, pinging each other.
async fn demo(state: &SandboxState) -> Res {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::PostParams;
    let client = kube::Client::try_from(kube::Config::new(state.api_url.parse()?))?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let nodes: Vec<&str> = state.nodes.iter().map(|n| n.name.as_str()).collect();
    let placement = [("demo-a", nodes[0]), ("demo-b", nodes[nodes.len() - 1])];
    for (name, node) in placement {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "kube-ovn-sandbox-demo"}},
            "spec": {"nodeName": node, "containers": [{"name": "demo", "image": "netns"}]}
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut ips = Vec::new();
    for (name, node) in placement {
        let ip = loop {
            let p = pods.get(name).await?;
            let st = p.status.unwrap_or_default();
            if st.phase.as_deref() == Some("Running") {
                if let Some(ip) = st.pod_ip {
                    break ip;
                }
            }
            if Instant::now() > deadline {
                return Err(format!("demo pod {name} not Running after 90 s: see `kubectl describe pod {name}` and the logs under {}", state.run_dir.display()).into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        println!("demo: {name} is Running on {node} with {ip}");
        ips.push(ip);
    }
    let from = state.pod_netns("default", "demo-a");
    let to = ips[1].clone();
    let ok = sys::wait_for(Duration::from_secs(15), || {
        sys::in_netns(&from, "ping")
            .args(["-c1", "-W1", &to])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if ok {
        println!(
            "demo: demo-a ({}) → demo-b ({to}) across nodes over Geneve: ping OK",
            ips[0]
        );
        println!("      try: kube-ovn-sandbox exec demo-a -- ping -c3 {to}");
        Ok(())
    } else {
        Err(format!("demo: demo-a cannot ping demo-b ({to})").into())
    }
}

async fn serve(cli: &Cli, args: &UpArgs) -> Res {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let config = SandboxConfig {
        run_dir: cli.run_dir.clone(),
        prefix: cli.prefix.clone(),
        nodes: (1..=args.nodes).map(|i| format!("node{i}")).collect(),
        raft: args.raft,
        ic: args.ic,
        ic_daemon: true,
        fabric_of: None,
        node_offset: 0,
        api_listen: args.api_listen,
        kubelets: true,
        service_cidrs: args.service_cluster_ip_range.clone(),
        // The demo cluster is one an operator can `kubectl ko diagnose all`.
        diagnose: !args.no_kube_ovn,
        kube_ovn: if args.no_kube_ovn {
            None
        } else {
            kube_ovn_build()
        },
    };
    let mut sandbox = Sandbox::up(config).await?;
    sandbox.set_supervisor(std::process::id())?;
    tracing::info!(
        "sandbox up in {:.2} s; API at {}",
        sandbox.state().bring_up_seconds,
        sandbox.state().api_url
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("tearing down");
    let report = sandbox.down().await?;
    tracing::info!(
        "stopped {} processes, deleted {} namespaces",
        report.processes,
        report.namespaces
    );
    Ok(())
}

fn down(cli: &Cli) -> Res {
    let state = SandboxState::load(&cli.run_dir).ok();
    let (run_dir, prefix) = match &state {
        Some(s) => (s.run_dir.clone(), s.prefix.clone()),
        None => (cli.run_dir.clone(), cli.prefix.clone()),
    };
    if let Some(pid) = state.as_ref().and_then(|s| s.supervisor_pid) {
        sys::stop_pid(pid as i32, Duration::from_secs(60));
    }
    let report = sweep(&run_dir, &prefix)?;
    let _ = std::fs::remove_file(log_file(&run_dir));
    let left = leftovers(&run_dir, &prefix);
    if !left.is_empty() {
        return Err(format!("left behind: {}", left.join(", ")).into());
    }
    match state {
        Some(_) => println!(
            "kube-ovn-sandbox is down (swept {} stray processes, {} namespaces)",
            report.processes, report.namespaces
        ),
        None => println!(
            "no sandbox state in {}; swept anything left",
            run_dir.display()
        ),
    }
    Ok(())
}

async fn status(cli: &Cli) -> Res {
    let state = SandboxState::load(&cli.run_dir)
        .map_err(|e| format!("no sandbox in {} ({e})", cli.run_dir.display()))?;
    let alive = |p: &Path| sys::read_pidfile(p).is_some_and(sys::alive);
    println!("run dir    {}", state.run_dir.display());
    println!(
        "API        {} (kubeconfig {})",
        state.api_url,
        state.kubeconfig.display()
    );
    println!(
        "supervisor {}",
        match state.supervisor_pid {
            Some(pid) if sys::alive(pid as i32) => format!("running (pid {pid})"),
            Some(pid) => format!("NOT RUNNING (pid {pid})"),
            None => "none".into(),
        }
    );
    println!("NB         {}", state.central.nb);
    println!("SB         {}", state.central.sb);
    let central = kube_ovn_sandbox::central::dir(&state.run_dir);
    let mut pidfiles: Vec<_> = std::fs::read_dir(&central)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pid"))
        .collect();
    pidfiles.sort();
    for p in pidfiles {
        let name = p
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        println!(
            "  {name:<14} {}",
            if alive(&p) { "running" } else { "DOWN" }
        );
    }
    let client = kube::Client::try_from(kube::Config::new(state.api_url.parse()?))?;
    let api_nodes: Vec<Node> = Api::<Node>::all(client.clone())
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    for n in &state.nodes {
        let daemons: Vec<String> = ["ovsdb", "vswitchd", "ovn-controller"]
            .iter()
            .map(|d| {
                let up = alive(&n.dir.join(format!("{d}.pid")));
                format!("{d} {}", if up { "running" } else { "DOWN" })
            })
            .collect();
        let ready = api_nodes
            .iter()
            .find(|k| k.metadata.name.as_deref() == Some(&n.name))
            .and_then(|k| {
                k.status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .find(|c| c.type_ == "Ready")
                    .cloned()
            })
            .map(|c| format!("Ready={} ({})", c.status, c.reason.unwrap_or_default()))
            .unwrap_or_else(|| "not registered".into());
        println!(
            "node {:<8} {} netns {}: {}; {ready}",
            n.name,
            n.ip,
            n.netns,
            daemons.join(", ")
        );
    }
    let pods = Api::<Pod>::all(client).list(&Default::default()).await?;
    println!("pods       {}", pods.items.len());
    for p in pods.items {
        let st = p.status.unwrap_or_default();
        println!(
            "  {}/{} {} {} on {}",
            p.metadata.namespace.unwrap_or_default(),
            p.metadata.name.unwrap_or_default(),
            st.phase.unwrap_or_else(|| "Pending".into()),
            st.pod_ip.unwrap_or_default(),
            p.spec
                .and_then(|s| s.node_name)
                .unwrap_or_else(|| "(unscheduled)".into()),
        );
    }
    Ok(())
}

fn kubeconfig(cli: &Cli) -> Res {
    let state = SandboxState::load(&cli.run_dir)
        .map_err(|e| format!("no sandbox in {} ({e})", cli.run_dir.display()))?;
    print!("{}", std::fs::read_to_string(&state.kubeconfig)?);
    Ok(())
}

/// `serve-pod`: runs before any other thread exists, so the whole process enters the namespace.
fn serve_pod(
    cli: &Cli,
    pod: Option<&str>,
    netns: Option<&str>,
    name: Option<&str>,
    tcp: &[u16],
    udp: &[u16],
) -> Res {
    if tcp.is_empty() && udp.is_empty() {
        return Err("nothing to serve: give --tcp and/or --udp ports".into());
    }
    let (netns, default_name) = match (netns, pod) {
        (Some(n), _) => (n.to_string(), n.to_string()),
        (None, Some(pod)) => {
            let state = SandboxState::load(&cli.run_dir)
                .map_err(|e| format!("no sandbox in {} ({e})", cli.run_dir.display()))?;
            let (ns, name) = pod.split_once('/').unwrap_or(("default", pod));
            (state.pod_netns(ns, name), name.to_string())
        }
        (None, None) => return Err("give a pod or --netns".into()),
    };
    let path = sys::netns_path(&netns);
    if !Path::new(&path).exists() {
        return Err(format!("no network namespace {netns} (pod not running?)").into());
    }
    kube_ovn_sandbox::workload::serve(&path, name.unwrap_or(&default_name), tcp, udp)?;
    Ok(())
}

/// Where `exec` runs its command.
enum Target<'a> {
    Pod(&'a str),
    Node(&'a str),
    External,
}

fn exec(cli: &Cli, target: Target<'_>, command: &[String]) -> ExitCode {
    let run = || -> Res<ExitCode> {
        let state = SandboxState::load(&cli.run_dir)
            .map_err(|e| format!("no sandbox in {} ({e})", cli.run_dir.display()))?;
        let mut cmd = match target {
            Target::Node(node) => {
                let n = state
                    .node(node)
                    .ok_or_else(|| format!("no node {node} in the sandbox"))?;
                n.command(&command[0])
            }
            Target::External => state.external_command(&command[0]),
            Target::Pod(pod) => {
                let (ns, name) = pod.split_once('/').unwrap_or(("default", pod));
                let netns = state.pod_netns(ns, name);
                if !Path::new(&sys::netns_path(&netns)).exists() {
                    return Err(format!(
                        "pod {ns}/{name} has no network namespace on this sandbox (not running?)"
                    )
                    .into());
                }
                sys::in_netns(&netns, &command[0])
            }
        };
        cmd.args(&command[1..]);
        let status = cmd.status()?;
        Ok(ExitCode::from(
            status.code().unwrap_or(1).clamp(0, 255) as u8
        ))
    };
    run().unwrap_or_else(|e| {
        eprintln!("kube-ovn-sandbox: {e}");
        ExitCode::FAILURE
    })
}
