//! `kubectl-ko`: the `kubectl ko` plugin (on PATH, kubectl runs it as `kubectl ko …`).
//!
//! The component subcommands (`nbctl`, `sbctl`, `vsctl <node>`, `nb status`…) run upstream's
//! tools in the component pods through `pods/exec`, as upstream's plugin does (namespace from
//! `KUBE_OVN_NS`, default `kube-system`); `trace`/`ovn-trace` build upstream's microflows from
//! the source's annotations and run `ovn-trace` and `ofproto/trace` there; `tcpdump` captures
//! a pod's traffic in its network namespace. `diagnose drift` compares what kube-ovn-controller wants in OVN Northbound with what is
//! there, by running the controller's own reconcilers once in dry-run mode (see
//! `kube_ovn_controller::drift`), and with `--repair` writes exactly that difference.

mod diagnose;
mod ops;
mod output;
mod perf;
mod remote;
mod restore;
mod state;
mod tcpdump;
mod trace;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube_ovn_controller::config::Config;
use kube_ovn_controller::drift;

/// The command line.
#[derive(Parser)]
#[command(name = "kubectl-ko", about = "Operate Kube-OVN", version)]
struct Cli {
    /// kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The arguments passed through to a tool, hyphens and all.
#[derive(clap::Args)]
struct ToolArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// A node and the arguments passed to its tool.
#[derive(clap::Args)]
struct NodeToolArgs {
    /// The node whose ovs-ovn pod runs the tool.
    node: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// `perf [image]`.
#[derive(clap::Args)]
struct PerfArgs {
    /// The test image (qperf, iperf3 and iperf in it).
    #[arg(default_value = perf::DEFAULT_IMAGE)]
    image: String,
    /// Seconds each qperf/iperf run lasts (upstream: 5).
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Message sizes, comma-separated (upstream: 64,128,512,1k,4k).
    #[arg(long, value_delimiter = ',', default_value = "64,128,512,1k,4k")]
    sizes: Vec<String>,
}

/// A pod and the arguments passed to the tool run for it.
#[derive(clap::Args)]
struct TargetArgs {
    /// namespace/pod (a bare name is in `default`).
    target: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// `nb|sb <action> [args]`.
#[derive(clap::Args)]
struct DbArgs {
    /// status, kick <server-id>, backup, dbstatus or (nb) restore.
    action: String,
    args: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Check the cluster's network state.
    Diagnose {
        #[command(subcommand)]
        what: Diagnose,
    },
    /// ovn-nbctl in the NB leader's ovn-central pod.
    Nbctl(ToolArgs),
    /// ovn-sbctl in the SB leader's ovn-central pod.
    Sbctl(ToolArgs),
    /// ovn-ic-nbctl in the IC NB leader's ovn-ic-server pod.
    Icnbctl(ToolArgs),
    /// ovn-ic-sbctl in the IC SB leader's ovn-ic-server pod.
    Icsbctl(ToolArgs),
    /// ovs-vsctl on a node.
    Vsctl(NodeToolArgs),
    /// ovs-ofctl on a node.
    Ofctl(NodeToolArgs),
    /// ovs-dpctl on a node.
    Dpctl(NodeToolArgs),
    /// ovs-appctl on a node.
    Appctl(NodeToolArgs),
    /// NB database operations: status, kick <server-id>, backup, dbstatus, restore.
    Nb(DbArgs),
    /// SB database operations: status, kick <server-id>, backup, dbstatus (restore is for NB).
    Sb(DbArgs),
    /// Performance test between pods, hosts and a Service, multicast, and ovn-central leader
    /// recovery (upstream's perf).
    Perf(PerfArgs),
    /// Capture a pod's traffic: {namespace/podname} [tcpdump options ...].
    Tcpdump(TargetArgs),
    /// Trace a packet through OVN (ovn-trace) and the source node's OVS (ofproto/trace):
    /// {namespace/pod|node//node} <ip> [<mac>] {icmp|tcp|udp} [<port>] | arp {request|reply}.
    Trace(ToolArgs),
    /// Trace a packet through OVN only (the arguments of `trace`).
    #[command(name = "ovn-trace")]
    OvnTrace(ToolArgs),
    /// Check every node's environment (/kube-ovn/env-check.sh in its kube-ovn-cni pod).
    #[command(name = "env-check")]
    EnvCheck,
    /// Restart every Kube-OVN component, one after the other.
    Reload,
    /// Save logs and node state to ./kubectl-ko-log/: kube-ovn|ovn|ovs|linux|all.
    Log {
        /// What to collect.
        component: String,
    },
}

#[derive(Subcommand)]
enum Diagnose {
    /// Compare the NB with what kube-ovn-controller wants there (dry run unless --repair).
    Drift(DriftArgs),
    /// Check the installation, then connectivity from every node's kube-ovn-pinger.
    All,
    /// Check the installation, then connectivity from one node's kube-ovn-pinger.
    Node {
        /// The node.
        node: String,
    },
    /// Check the installation, then connectivity to a conn-check server in a subnet.
    Subnet {
        /// The subnet.
        subnet: String,
    },
    /// Check the installation, then the given targets from every kube-ovn-pinger.
    #[command(name = "IPPorts")]
    IpPorts {
        /// `{proto}-{IP}-{port}` items, comma-separated (`tcp-172.18.0.2-53,udp-172.18.0.3-53`).
        targets: String,
    },
}

/// Output formats.
#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    Yaml,
}

#[derive(clap::Args)]
struct DriftArgs {
    /// Write the difference to the NB (what the controller would write).
    #[arg(long)]
    repair: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: Format,
    /// Longest the controller pass may take, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Namespace of the kube-ovn-controller Deployment whose flags the pass uses.
    #[arg(long, default_value = "kube-system")]
    namespace: String,
    /// kube-ovn-controller flags after `--`, applied after the Deployment's (for example
    /// `-- --ovn-nb-addr=tcp:10.0.0.2:6641` when the NB service is not reachable from here).
    #[arg(last = true)]
    controller_flags: Vec<String>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kubectl-ko: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(async move {
        use remote::Db;
        let command = match cli.command {
            Command::Diagnose {
                what: Diagnose::Drift(args),
            } => return drift_command(cli.kubeconfig, args).await,
            other => other,
        };
        let client = kube::Client::try_from(kube_config(cli.kubeconfig.as_ref()).await?)
            .map_err(|e| format!("kubernetes client: {e}"))?;
        let ns = std::env::var("KUBE_OVN_NS").unwrap_or_else(|_| "kube-system".to_string());
        let c = &client;
        match command {
            Command::Nbctl(a) => remote::db_ctl(c, &ns, Db::Nb, a.args).await,
            Command::Sbctl(a) => remote::db_ctl(c, &ns, Db::Sb, a.args).await,
            Command::Icnbctl(a) => remote::ic_ctl(c, &ns, Db::Nb, a.args).await,
            Command::Icsbctl(a) => remote::ic_ctl(c, &ns, Db::Sb, a.args).await,
            Command::Vsctl(a) => remote::ovs_ctl(c, &ns, "vsctl", &a.node, a.args).await,
            Command::Ofctl(a) => remote::ovs_ctl(c, &ns, "ofctl", &a.node, a.args).await,
            Command::Dpctl(a) => remote::ovs_ctl(c, &ns, "dpctl", &a.node, a.args).await,
            Command::Appctl(a) => remote::ovs_ctl(c, &ns, "appctl", &a.node, a.args).await,
            Command::Nb(a) => remote::db_tool(c, &ns, Db::Nb, &a.action, a.args).await,
            Command::Sb(a) => remote::db_tool(c, &ns, Db::Sb, &a.action, a.args).await,
            Command::Perf(a) => {
                let opts = perf::Options {
                    image: a.image,
                    seconds: a.seconds.max(1),
                    sizes: a.sizes,
                };
                perf::run(c, &ns, &opts).await
            }
            Command::Tcpdump(a) => tcpdump::run(c, &ns, &a.target, a.args).await,
            Command::Trace(a) => trace::run(c, &ns, &a.args, true).await,
            Command::OvnTrace(a) => trace::run(c, &ns, &a.args, false).await,
            Command::EnvCheck => ops::env_check(c, &ns).await,
            Command::Reload => ops::reload(c, &ns).await,
            Command::Log { component } => ops::log(c, &ns, &component).await,
            Command::Diagnose { what } => {
                let target = match what {
                    Diagnose::All => diagnose::Target::All,
                    Diagnose::Node { node } => diagnose::Target::Node(node),
                    Diagnose::Subnet { subnet } => diagnose::Target::Subnet(subnet),
                    Diagnose::IpPorts { targets } => diagnose::Target::IpPorts(targets),
                    Diagnose::Drift(_) => unreachable!("handled above"),
                };
                diagnose::run(c, &ns, target).await
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kubectl-ko: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs `diagnose drift`: exit 0 when the NB matches (or was repaired), 1 when it differs.
async fn drift_command(kubeconfig: Option<PathBuf>, args: DriftArgs) -> Result<ExitCode, String> {
    let kube_config = kube_config(kubeconfig.as_ref()).await?;
    let client = kube::Client::try_from(kube_config.clone())
        .map_err(|e| format!("kubernetes client: {e}"))?;
    let config = controller_config(&client, &args).await?;
    let options = drift::Options {
        timeout: Duration::from_secs(args.timeout),
        ..drift::Options::default()
    };
    let report = drift::check(config.clone(), kube_config, &options).await?;
    let nb = drift::open_nb(&config).await?;
    let ns = std::env::var("KUBE_OVN_NS").unwrap_or_else(|_| args.namespace.clone());
    let sb = config
        .upstream
        .value("ovn-sb-addr")
        .filter(|s| !s.is_empty());
    let ports = state::ports_of(&nb.cache())?;
    let live = state::check(&client, &ns, &ports, sb).await?;
    let text = match args.output {
        Format::Table => output::table(&report, !args.repair) + &output::state(&live),
        Format::Json | Format::Yaml => {
            let mut v = serde_json::to_value(&report).map_err(|e| e.to_string())?;
            v["state"] = serde_json::to_value(&live).map_err(|e| e.to_string())?;
            match args.output {
                Format::Json => serde_json::to_string_pretty(&v).map_err(|e| e.to_string())? + "\n",
                _ => serde_norway::to_string(&v).map_err(|e| e.to_string())?,
            }
        }
    };
    print!("{text}");
    for s in &live.skipped {
        eprintln!("kubectl-ko: not checked: {s}");
    }
    if !report.settled {
        eprintln!(
            "kubectl-ko: the controller pass did not go quiet within {}s; the report may be partial",
            args.timeout
        );
    }
    let state_ok = live.findings.is_empty();
    if report.rows.is_empty() {
        return Ok(if state_ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    if args.repair {
        let n = drift::repair(&config, &report).await?;
        eprintln!("repaired: {n} transaction(s) sent");
        // The live-state findings are not NB rows: --repair leaves them to the operator.
        return Ok(if state_ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    Ok(ExitCode::from(1))
}

async fn kube_config(path: Option<&PathBuf>) -> Result<kube::Config, String> {
    match path {
        None => kube::Config::infer().await.map_err(|e| e.to_string()),
        Some(p) => {
            let k = kube::config::Kubeconfig::read_from(p).map_err(|e| e.to_string())?;
            kube::Config::from_custom_kubeconfig(k, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| e.to_string())
        }
    }
}

/// The controller's configuration: the flags of the kube-ovn-controller Deployment's
/// container (when it exists), then the ones given after `--`.
async fn controller_config(client: &kube::Client, args: &DriftArgs) -> Result<Config, String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &args.namespace);
    let mut flags = vec!["kube-ovn-controller".to_string()];
    match deployments.get_opt("kube-ovn-controller").await {
        Ok(Some(d)) => flags.extend(deployment_flags(&d)),
        Ok(None) => {}
        Err(e) => return Err(format!("reading the kube-ovn-controller Deployment: {e}")),
    }
    flags.extend(args.controller_flags.iter().cloned());
    Config::try_parse_go(flags).map_err(|e| format!("kube-ovn-controller flags: {e}"))
}

/// The `--` flags of the Deployment's kube-ovn-controller container.
fn deployment_flags(d: &Deployment) -> Vec<String> {
    let containers = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    containers
        .iter()
        .find(|c| c.name == "kube-ovn-controller")
        .and_then(|c| c.args.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.starts_with('-'))
        .collect()
}
