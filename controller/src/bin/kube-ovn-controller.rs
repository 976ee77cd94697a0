//! kube-ovn-controller: upstream's flags, leader election on the `kube-ovn-controller` Lease,
//! then Kubernetes in, OVN Northbound out.

use std::process::ExitCode;

use kube_ovn_controller::config::Config;
use kube_ovn_controller::metrics::Metrics;
use kube_ovn_controller::run::{run, Identity};

/// glibc gives each thread that meets contention its own heap arena (up to 8 per core), and
/// memory freed in one arena is not reused by another: with the controller's bursts of JSON
/// decoding that fragmentation cost 5-8 MiB of peak RSS in the scale benchmark. Two arenas
/// suffice for two runtime workers.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only tunes the allocator; it runs before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let config = Config::parse_go();
    if let Err(e) = config
        .log
        .init(&["kube_ovn_controller", "kube_ovn_nb", "kube_ovn_ipam"])
    {
        eprintln!("kube-ovn-controller: {e}");
        return ExitCode::FAILURE;
    }
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    if let Err(e) = config.validate() {
        eprintln!("kube-ovn-controller: {e}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kube-ovn-controller: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let metrics = Metrics::new();
        let kube_config = if config.kubeconfig.is_empty() {
            kube::Config::infer().await.map_err(|e| e.to_string())
        } else {
            let opts = kube::config::KubeConfigOptions::default();
            match kube::config::Kubeconfig::read_from(&config.kubeconfig) {
                Ok(k) => kube::Config::from_custom_kubeconfig(k, &opts)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        // Every API request is recorded under upstream's rest_client_* names.
        let client = match kube_config.and_then(|c| {
            kube_ovn_common::metrics::kube_client(c, &metrics.rest).map_err(|e| e.to_string())
        }) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("kube-ovn-controller: kubernetes client: {e}");
                return ExitCode::FAILURE;
            }
        };
        match run(config, client, Identity::from_env(), metrics).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kube-ovn-controller: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
