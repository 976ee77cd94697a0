//! kube-ovn-ic-controller: upstream's flags, then the interconnection loop until SIGTERM; or,
//! as `kube-ovn-ic-controller clean-az {az|node} <name>`, upstream's `clean-ic-az-db.sh`; or, as
//! `kube-ovn-ic-controller ts-sync`, the transit switch count the IC DB pods keep (`TS_NUM`).

use std::process::ExitCode;

use kube_ovn_ic_controller::clean;
use kube_ovn_ic_controller::config::Config;
use kube_ovn_ic_controller::controller::Controller;
use kube_ovn_ic_controller::tsdb;

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn clean_az(args: &[String]) -> ExitCode {
    let parsed = match clean::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kube-ovn-ic-controller: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(clean::run(&parsed)) {
        Ok(n) => {
            println!(
                "Destroyed {n} rows of the availability zone of {}",
                parsed.value
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn ts_sync(args: &[String]) -> ExitCode {
    let parsed = match tsdb::parse(args, |k| std::env::var(k).ok()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kube-ovn-ic-controller: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(tsdb::run(&parsed)) {
        Ok((created, removed)) => {
            println!(
                "{} transit switches: {created} created, {removed} removed",
                parsed.count
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("clean-az") {
        return clean_az(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("ts-sync") {
        return ts_sync(&args[2..]);
    }
    let config = Config::parse_go();
    if let Err(e) = config.log.init(&["kube_ovn_ic_controller"]) {
        eprintln!("kube-ovn-ic-controller: {e}");
        return ExitCode::FAILURE;
    }
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    if let Err(e) = config.validate() {
        eprintln!("kube-ovn-ic-controller: {e}");
        return ExitCode::from(2);
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kube-ovn-ic-controller: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), String> = rt.block_on(async move {
        let kube_config = if config.kubeconfig.is_empty() {
            kube::Config::infer().await.map_err(|e| e.to_string())?
        } else {
            let k = kube::config::Kubeconfig::read_from(&config.kubeconfig)
                .map_err(|e| e.to_string())?;
            kube::Config::from_custom_kubeconfig(k, &Default::default())
                .await
                .map_err(|e| e.to_string())?
        };
        let client = kube::Client::try_from(kube_config).map_err(|e| e.to_string())?;
        let namespace = std::env::var("POD_NAMESPACE")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "kube-system".to_string());
        let mut tasks = tokio::task::JoinSet::new();
        let ctl = Controller::start(config, client, namespace, &mut tasks).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tasks.abort_all();
        ctl.shutdown().await;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-ovn-ic-controller: {e}");
            ExitCode::FAILURE
        }
    }
}
