//! kube-ovn-pinger: upstream's connectivity prober (see `kube_ovn_daemon::pinger`). In its
//! DaemonSet it runs in server mode (rounds every `--interval`, metrics on `--port`); `kubectl
//! ko diagnose` execs it with `--mode=job` for one round whose log is the report.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube_ovn_common::health;
use kube_ovn_daemon::pinger::{conncheck, metrics::Metrics, Config, Identity, Pinger};

/// Who we are: the downward-API environment, our pod's address families, and the selector of
/// our DaemonSet (as upstream), or our pod's `app` label when no DaemonSet owns the pod.
async fn identity(client: &kube::Client) -> Result<Identity, String> {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let mut me = Identity {
        pod_name: env("POD_NAME"),
        namespace: env("POD_NAMESPACE"),
        node_name: env("NODE_NAME"),
        host_ip: env("HOST_IP"),
        pod_ip: env("POD_IP"),
        ..Identity::default()
    };
    if me.namespace.is_empty() {
        me.namespace = "kube-system".into();
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &me.namespace);
    for attempt in 0..3 {
        let pod = pods.get(&me.pod_name).await.map_err(|e| {
            format!(
                "failed to get self pod {}/{}: {e}",
                me.namespace, me.pod_name
            )
        })?;
        if me.selector.is_empty() {
            let owner = pod
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.api_version == "apps/v1" && o.kind == "DaemonSet");
            me.selector = match owner {
                Some(o) => {
                    let ds: Api<DaemonSet> = Api::namespaced(client.clone(), &me.namespace);
                    let ds = ds.get(&o.name).await.map_err(|e| {
                        format!("failed to get ds {}/{}: {e}", me.namespace, o.name)
                    })?;
                    selector_text(ds.spec.and_then(|s| s.selector.match_labels))
                }
                None => {
                    let app = pod.metadata.labels.as_ref().and_then(|l| l.get("app"));
                    app.map(|a| format!("app={a}")).unwrap_or_default()
                }
            };
        }
        let ips = pod.status.and_then(|s| s.pod_ips).unwrap_or_default();
        me.families = ips
            .iter()
            .filter_map(|ip| ip.ip.parse::<IpAddr>().ok())
            .map(|ip| ip.is_ipv4())
            .collect();
        if !me.families.is_empty() {
            return Ok(me);
        }
        tracing::info!(attempt, "cannot get Pod IPs now, waiting Pod to be ready");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    Err(format!(
        "failed to get IPs of Pod {}/{} after 3 attempts",
        me.namespace, me.pod_name
    ))
}

fn selector_text(labels: Option<std::collections::BTreeMap<String, String>>) -> String {
    labels
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn main() -> ExitCode {
    let config = Config::parse_go();
    if let Err(e) = config.log.init(&["kube_ovn_daemon", "kube_ovn_pinger"]) {
        eprintln!("log: {e}");
        return ExitCode::FAILURE;
    }
    for w in config.upstream.warnings() {
        tracing::warn!("{w}");
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
    rt.block_on(async move {
        let client = match kube_ovn_daemon::agent::client(&config.kubeconfig).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("kubernetes client: {e}");
                return ExitCode::FAILURE;
            }
        };
        let me = match identity(&client).await {
            Ok(me) => me,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(?me, mode = %config.mode, "kube-ovn-pinger starting");
        let server = config.is_server();
        let metrics = (server && config.enable_metrics).then(|| Metrics::new(&me.node_name));
        let mut _endpoint = None;
        if let Some(m) = &metrics {
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), config.port);
            match health::bind(addr, None).await {
                Ok((listener, bound)) => {
                    tracing::info!(%bound, "serving metrics");
                    let source: Arc<dyn health::Exposition> = m.clone();
                    _endpoint = Some(AbortOnDrop(tokio::spawn(health::serve(
                        listener, source, true,
                    ))));
                }
                Err(e) => {
                    tracing::error!("failed to run metrics server on {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        let mut _listeners = None;
        if server && config.enable_verbose_conn_check {
            match conncheck::listen(config.tcp_conn_check_port, config.udp_conn_check_port).await {
                Ok(l) => _listeners = Some(l),
                Err(e) => {
                    tracing::error!(
                        "failed to listen on the conn-check ports {}/{}: {e}",
                        config.tcp_conn_check_port,
                        config.udp_conn_check_port
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
        let exit_code = config.exit_code;
        let pinger = Pinger {
            config,
            me,
            client,
            metrics,
        };
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let failed = pinger.run(stop).await;
        if failed && exit_code != 0 {
            return ExitCode::from(exit_code);
        }
        ExitCode::SUCCESS
    })
}

/// Aborts a task when dropped, so the endpoint ends with `main`.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
