//! kube-ovn-daemon: connects to the API server and the node's OVS database, picks the tunnel
//! endpoint (OVS `ovn-encap-ip`, the pod MTU), then serves the CNI shim on `--bind-socket` until
//! SIGTERM/SIGINT. With `--install-cni-config` it only installs the CNI configuration and exits.

use std::process::ExitCode;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube_ovn_common::health;
use kube_ovn_daemon::cni_conf;
use kube_ovn_daemon::config::Config;
use kube_ovn_daemon::handler::Daemon;
use kube_ovn_daemon::metrics::{self, Metrics};
use kube_ovn_daemon::netdev::Netns;
use kube_ovn_daemon::node::tunnel::{self, TunnelFlags};
use kube_ovn_daemon::node::{watch, NodeSetup};
use kube_ovn_daemon::ovs::Ovs;
use kube_ovn_daemon::pods::NodePods;
use kube_ovn_daemon::server;
use kube_ovn_daemon::underlay::ProviderNetworks;

/// How long start-up waits for the OVS database before giving up (the DaemonSet restarts us).
const OVS_CONNECT_WAIT: Duration = Duration::from_secs(30);
/// How long start-up waits for this node's Node object.
const NODE_GET_WAIT: Duration = Duration::from_secs(10);

/// The API client, its requests recorded under upstream's `rest_client_*` names.
async fn kube_client(config: &Config, metrics: &Metrics) -> Result<kube::Client, String> {
    let kube_config = if config.kubeconfig.is_empty() {
        kube::Config::infer().await.map_err(|e| e.to_string())?
    } else {
        let k = kube::config::Kubeconfig::read_from(&config.kubeconfig)
            .map_err(|e| format!("{}: {e}", config.kubeconfig))?;
        kube::Config::from_custom_kubeconfig(k, &Default::default())
            .await
            .map_err(|e| e.to_string())?
    };
    kube_ovn_common::metrics::kube_client(kube_config, &metrics.rest).map_err(|e| e.to_string())
}

async fn run(config: Config) -> Result<(), String> {
    let node = Config::node_name();
    if node.is_empty() {
        return Err("node name unknown: set NODE_NAME".into());
    }
    let metrics = Metrics::new(&node);
    let client = kube_client(&config, &metrics).await?;
    // Upstream's listen addresses: the pod's own with ENABLE_BIND_LOCAL_IP=true, else 0.0.0.0.
    let ips = health::default_listen_ips()?;
    let port = config.pprof_port;
    let bound = health::bind_all(&ips, port, Some(&metrics::addr_file(&config.bind_socket)))
        .await
        .map_err(|e| format!("metrics endpoint on {ips:?} port {port}: {e}"))?;
    for (_, addr) in &bound {
        tracing::info!(%addr, metrics = config.enable_metrics, "serving health and metrics");
    }
    // Spawned now, not polled in the select below: probes must get answers while start-up
    // still waits for OVS.
    let mut endpoint = tokio::spawn(health::serve_all(
        bound.into_iter().map(|(l, _)| l).collect(),
        metrics.clone(),
        config.enable_metrics,
    ));
    // Upstream's connectivity-check listeners, owned by this function: they end with it.
    let _conn_check = if config.enable_verbose_conn_check {
        let (tcp, udp) = (config.tcp_conn_check_port, config.udp_conn_check_port);
        Some(
            kube_ovn_daemon::pinger::conncheck::listen(tcp, udp)
                .await
                .map_err(|e| format!("connectivity-check listeners on {tcp}/{udp}: {e}"))?,
        )
    } else {
        None
    };
    let ovs = Ovs::connect(&config.ovs_remote(), OVS_CONNECT_WAIT)
        .await
        .map_err(|e| format!("{}: {e}", config.ovs_remote()))?
        .with_metrics(metrics.ovs.clone());
    let mtu = set_up_tunnel(&config, &client, &node, &ovs).await?;
    let subnets = watch::subnets(client.clone());
    NodeSetup {
        client: client.clone(),
        node: node.clone(),
        ovs: ovs.clone(),
        join_switch: config.node_switch.clone(),
        cluster_router: config.cluster_router.clone(),
        mtu,
        tx_checksum: config.pod_tx_checksum_offload,
        subnets: subnets.clone(),
    }
    .start();
    if config.enable_tproxy {
        kube_ovn_daemon::tproxy::TProxy {
            client: client.clone(),
            node: node.clone(),
            ovs: ovs.clone(),
            cluster_router: config.cluster_router.clone(),
            subnets: subnets.clone(),
        }
        .start();
    }
    ProviderNetworks {
        client: client.clone(),
        node: node.clone(),
        ovs: ovs.clone(),
        pod: own_pod(),
    }
    .start();
    kube_ovn_daemon::underlay::external_gw::ExternalGateway {
        client: client.clone(),
        node: node.clone(),
        ovs: ovs.clone(),
        switch: config.external_gateway_switch.clone(),
        config_ns: config.external_gateway_config_ns.clone(),
    }
    .start();
    let daemon = Daemon {
        pods: NodePods::start(client, &node),
        ovs,
        mtu,
        node: node.clone(),
        subnets,
        tx_checksum: config.pod_tx_checksum_offload,
        wait_address: config.wait_address_timeout,
        wait_installed: config.wait_ovn_installed_timeout,
        metrics: metrics.clone(),
    };
    let listener = server::bind(&config.bind_socket)
        .map_err(|e| format!("bind {}: {e}", config.bind_socket.display()))?;
    metrics.set_ready();
    tracing::info!(node = %node, socket = %config.bind_socket.display(), mtu = daemon.mtu, "serving the CNI shim");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        r = server::serve(listener, daemon) => r.map_err(|e| e.to_string()),
        _ = &mut endpoint => Err("health endpoint stopped".into()),
        _ = term.recv() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// This daemon's pod, from the DaemonSet's `POD_NAMESPACE` and `POD_NAME`.
fn own_pod() -> Option<(String, String)> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Some((get("POD_NAMESPACE")?, get("POD_NAME")?))
}

/// Picks the tunnel interface and address as upstream does, writes them (and the checksum
/// setting) to the local OVS, and returns the pod MTU.
async fn set_up_tunnel(
    config: &Config,
    client: &kube::Client,
    node: &str,
    ovs: &Ovs,
) -> Result<u32, String> {
    let pod_ip = std::env::var("POD_IP").ok().filter(|p| !p.is_empty());
    let got = tokio::time::timeout(NODE_GET_WAIT, Api::<Node>::all(client.clone()).get(node)).await;
    let node_obj = match got {
        Ok(Ok(n)) => n,
        // Upstream exits here; with an explicit address source the tunnel can still be picked,
        // only the Node's tunnel_interface annotation and DPDK label are then not seen.
        failed if pod_ip.is_some() || !config.iface.is_empty() => {
            tracing::warn!(node, result = ?failed.map(|r| r.map(|_| ())), "Node unreadable; picking the tunnel from POD_IP/--iface alone");
            Node::default()
        }
        Ok(Err(e)) => return Err(format!("get node {node}: {e}")),
        Err(_) => return Err(format!("get node {node}: no answer in {NODE_GET_WAIT:?}")),
    };
    let host = Netns::current().map_err(|e| e.to_string())?;
    let links = host.host_links().await.map_err(|e| e.to_string())?;
    let flags = TunnelFlags {
        iface: &config.iface,
        dpdk_iface: &config.dpdk_tunnel_iface,
        host_tunnel_src: config.host_tunnel_src,
        pod_ip: pod_ip.as_deref(),
    };
    let t = tunnel::pick(&flags, &node_obj, &links)?;
    let mtu = config.pod_mtu(t.nic_mtu, t.encap_ip.is_ipv6())?;
    let wrote = ovs
        .set_root_external_ids(&t.external_ids(config.encap_checksum))
        .await
        .map_err(|e| format!("set ovn-encap-ip: {e}"))?;
    tracing::info!(iface = %t.iface, encap_ip = %t.encap_ip, nic_mtu = t.nic_mtu, mtu,
        encap_checksum = config.encap_checksum, changed = wrote, "tunnel endpoint");
    Ok(mtu)
}

fn main() -> ExitCode {
    let config = Config::parse_go();
    if let Err(e) = config.log.init(&["kube_ovn_daemon"]) {
        eprintln!("kube-ovn-daemon: {e}");
        return ExitCode::FAILURE;
    }
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    if config.install_cni_config {
        return match cni_conf::install(
            &config.cni_conf_dir,
            &config.cni_conf_file,
            &config.cni_conf_name,
        ) {
            Ok(done) => {
                tracing::info!(?done, "CNI configuration installed");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kube-ovn-daemon: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
