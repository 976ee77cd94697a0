//! kube-ovn-leader-checker: labels the ovn-central (or ovn-ic-db) pod it runs in with the
//! database roles its member holds (see `kube_ovn_daemon::leader_checker`). `start-db.sh` and
//! `start-ic-db.sh` start it beside the databases, with upstream's arguments.

use std::process::ExitCode;

use kube_ovn_daemon::leader_checker::checks::Checker;
use kube_ovn_daemon::leader_checker::Config;

fn main() -> ExitCode {
    let config = Config::parse_go();
    if let Err(e) = config
        .log
        .init(&["kube_ovn_daemon", "kube_ovn_leader_checker"])
    {
        eprintln!("log: {e}");
        return ExitCode::FAILURE;
    }
    for w in config.upstream.warnings() {
        tracing::warn!("{w}");
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let client = match kube_ovn_daemon::agent::client(&config.kubeconfig).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("init kubernetes client failed {e}");
                return ExitCode::FAILURE;
            }
        };
        let env = |k: &str| std::env::var(k).unwrap_or_default();
        let checker = match Checker::new(config, client, env("POD_NAME"), env("POD_NAMESPACE")) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(mode = ?checker.mode(), "kube-ovn-leader-checker starting");
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        match checker.run(stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(fatal) => {
                tracing::error!("{}", fatal.0);
                // klog's Fatal exit status, as upstream's checker ends.
                ExitCode::from(255)
            }
        }
    })
}
