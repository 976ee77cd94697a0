//! kube-ovn-lb-svc: the agent an lb-svc pod runs (its Deployment's command). It reads its own
//! pod (`POD_NAME`/`POD_NAMESPACE`, else the hostname and the service account's namespace) and
//! the Service its labels name, and keeps the pod's routes and NAT converged to them (see
//! `kube_ovn_daemon::lbsvc`). `--kubeconfig` (or `KUBECONFIG`) points it at an API server when
//! it runs outside a cluster; in a pod it uses the in-cluster configuration. `--netns` converges
//! another network namespace than its own (the API client stays in its own).

use std::process::ExitCode;

use clap::Parser;
use kube_ovn_common::klog::LogFlags;
use kube_ovn_daemon::lbsvc::{self, Converger, Identity};

/// kube-ovn-lb-svc: converges an lb-svc pod's routes and NAT to its Service.
#[derive(Debug, Parser)]
#[command(name = "kube-ovn-lb-svc", version)]
struct Flags {
    /// kubeconfig file; empty means KUBECONFIG or the in-cluster configuration.
    #[arg(long = "kubeconfig", default_value = "")]
    kubeconfig: String,
    /// Network namespace to converge (a path such as /run/netns/<name>); empty means the one
    /// the agent runs in, as in its pod. Lets a test harness run the agent beside a pod whose
    /// API server it cannot reach from inside the pod.
    #[arg(long = "netns", default_value = "")]
    netns: String,
    /// klog's flags.
    #[command(flatten)]
    log: LogFlags,
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    if let Err(e) = flags.log.init(&["kube_ovn_daemon", "kube_ovn_lb_svc"]) {
        eprintln!("log: {e}");
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let client = match kube_ovn_daemon::agent::client(&flags.kubeconfig).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("kubernetes client: {e}");
                return ExitCode::FAILURE;
            }
        };
        let netns = (!flags.netns.is_empty()).then(|| std::path::Path::new(&flags.netns));
        let conv = match Converger::open(netns).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("netlink: {e}");
                return ExitCode::FAILURE;
            }
        };
        let me = Identity::from_env();
        tracing::info!(namespace = %me.namespace, pod = %me.name, "kube-ovn-lb-svc starting");
        lbsvc::run(client, me, conv).await;
        ExitCode::SUCCESS
    })
}
