//! kube-ovn-vpc-nat-gw: the agent a VPC NAT gateway pod runs (its StatefulSet's command). It
//! reads its own pod (`POD_NAME`/`POD_NAMESPACE`, else the hostname and the service account's
//! namespace), the gateway its `ovn.kubernetes.io/vpc_nat_gw` annotation names and that
//! gateway's EIPs and FIP/SNAT/DNAT rules, and keeps the pod's addresses, routes and NAT
//! converged to them (see `kube_ovn_daemon::natgw`). `--kubeconfig` (or `KUBECONFIG`) points it
//! at an API server when it runs outside a cluster; in a pod it uses the in-cluster
//! configuration. `--netns` converges another network namespace than its own (the API client
//! stays in its own).

use std::process::ExitCode;

use clap::Parser;
use kube_ovn_common::klog::LogFlags;
use kube_ovn_daemon::lbsvc::Identity;
use kube_ovn_daemon::natgw::{self, Converger};

/// kube-ovn-vpc-nat-gw: converges a VPC NAT gateway pod's EIPs, routes and NAT.
#[derive(Debug, Parser)]
#[command(name = "kube-ovn-vpc-nat-gw", version)]
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
    if let Err(e) = flags.log.init(&["kube_ovn_daemon", "kube_ovn_vpc_nat_gw"]) {
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
        tracing::info!(namespace = %me.namespace, pod = %me.name, "kube-ovn-vpc-nat-gw starting");
        natgw::run(client, me, conv).await;
        ExitCode::SUCCESS
    })
}
