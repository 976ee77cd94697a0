//! kube-ovn-pinger: the per-node connectivity prober upstream's `kube-ovn-pinger` DaemonSet runs
//! and `kubectl ko diagnose` execs in job mode. Each round checks, as upstream does and in its
//! order: OVS (ovsdb-server and ovs-vswitchd answer on their control sockets), ovn-controller,
//! that every OVS interface with an `iface-id` is bound to this chassis in the SB, the API
//! server, ICMP to every pinger pod and every node's InternalIP, the internal (and external) DNS
//! name, `--target-ip-ports` over TCP/UDP, and ICMP to `--external-address`. `--mode=server`
//! repeats every `--interval` seconds and exports the outcomes as `pinger_*` metrics;
//! `--mode=job` runs one round and exits, with `--exit-code` when something failed.
//!
//! OVS and ovn-controller are asked over their unixctl sockets and the databases with our OVSDB
//! client (no `ovs-appctl`/`ovs-vsctl` processes); pings use raw ICMP sockets.

pub mod checks;
pub mod conncheck;
pub mod metrics;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kube_ovn_common::goflags::{self, flag, FlagTable, GoFlag, Kind, Unimplemented};
use kube_ovn_common::klog::LogFlags;

/// kube-ovn-pinger's flags: upstream's names and defaults.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kube-ovn-pinger",
    version,
    about = "Kube-OVN connectivity prober"
)]
pub struct Config {
    /// Port of the metrics and health endpoint (server mode).
    #[arg(long = "port", default_value_t = 8080)]
    pub port: u16,
    /// Also check TCP and UDP connectivity to pods and nodes on the conn-check ports, and
    /// (server mode) listen on them.
    #[arg(long = "enable-verbose-conn-check", action = clap::ArgAction::Set, default_value_t = false)]
    pub enable_verbose_conn_check: bool,
    /// TCP connectivity-check port.
    #[arg(long = "tcp-conn-check-port", default_value_t = 8100)]
    pub tcp_conn_check_port: u16,
    /// UDP connectivity-check port.
    #[arg(long = "udp-conn-check-port", default_value_t = 8101)]
    pub udp_conn_check_port: u16,
    /// kubeconfig file; empty means the in-cluster configuration (or `KUBECONFIG`).
    #[arg(long = "kubeconfig", default_value = "")]
    pub kubeconfig: String,
    /// Seconds between rounds in server mode.
    #[arg(long = "interval", default_value_t = 5)]
    pub interval: u64,
    /// `server` (repeat, export metrics) or `job` (one round, then exit).
    #[arg(long = "mode", default_value = "server")]
    pub mode: String,
    /// Exit code of a job (or a failed server) when a check failed; 0 means always success.
    #[arg(long = "exit-code", default_value_t = 0)]
    pub exit_code: u8,
    /// Name resolved through the cluster DNS.
    #[arg(long = "internal-dns", default_value = "kubernetes.default")]
    pub internal_dns: String,
    /// Name resolved to check external DNS; empty skips the check.
    #[arg(long = "external-dns", default_value = "")]
    pub external_dns: String,
    /// Comma-separated addresses to ping outside the cluster; empty skips the check.
    #[arg(long = "external-address", default_value = "")]
    pub external_address: String,
    /// Comma-separated `proto-ip-port` targets (`tcp-10.96.0.10-53,udp-10.96.0.10-53`).
    #[arg(long = "target-ip-ports", default_value = "")]
    pub target_ip_ports: String,
    /// The cluster's CNI; the OVS/OVN checks run only for `kube-ovn`.
    #[arg(long = "network-mode", default_value = "kube-ovn")]
    pub network_mode: String,
    /// Export metrics in server mode.
    #[arg(long = "enable-metrics", action = clap::ArgAction::Set, default_value_t = true)]
    pub enable_metrics: bool,
    /// Seconds a request to OVS may take.
    #[arg(long = "ovs.timeout", default_value_t = 2)]
    pub ovs_timeout: u64,
    /// OVS's run directory (ovs-vswitchd's and ovsdb-server's pid files and control sockets).
    #[arg(long = "system.run.dir", default_value = "/var/run/openvswitch")]
    pub system_run_dir: PathBuf,
    /// The Open_vSwitch database.
    #[arg(
        long = "database.vswitch.socket.remote",
        default_value = "unix:/var/run/openvswitch/db.sock"
    )]
    pub vswitch_remote: String,
    /// ovn-controller's pid file (its control socket is named after the pid beside it).
    #[arg(
        long = "service.ovncontroller.file.pid.path",
        default_value = "/var/run/ovn/ovn-controller.pid"
    )]
    pub ovn_controller_pid: PathBuf,
    /// klog's flags.
    #[command(flatten)]
    pub log: LogFlags,
    /// Upstream flags accepted but not acted on.
    #[command(flatten)]
    pub upstream: Unimplemented<NotImplemented>,
}

/// Upstream pinger flags accepted without effect: they configure upstream's OVS exporter
/// (the `ovs_*` metrics), which this pinger does not have.
#[derive(Debug, Clone)]
pub struct NotImplemented;

impl FlagTable for NotImplemented {
    #[rustfmt::skip]
    const FLAGS: &'static [GoFlag] = &[
        flag("ovs.poll-interval", Kind::Int, "15", "interval of the OVS exporter's collections"),
        flag("database.vswitch.name", Kind::Str, "Open_vSwitch", "OVS exporter: database name"),
        flag("database.vswitch.file.data.path", Kind::Str, "/etc/openvswitch/conf.db", "OVS exporter: db file size"),
        flag("database.vswitch.file.log.path", Kind::Str, "/var/log/openvswitch/ovsdb-server.log", "OVS exporter: log file size"),
        flag("database.vswitch.file.pid.path", Kind::Str, "/var/run/openvswitch/ovsdb-server.pid", "OVS exporter: process"),
        flag("database.vswitch.file.system.id.path", Kind::Str, "/etc/openvswitch/system-id.conf", "OVS exporter: system id"),
        flag("service.vswitchd.file.log.path", Kind::Str, "/var/log/openvswitch/ovs-vswitchd.log", "OVS exporter: log file size"),
        flag("service.vswitchd.file.pid.path", Kind::Str, "/var/run/openvswitch/ovs-vswitchd.pid", "OVS exporter: process"),
        flag("service.ovncontroller.file.log.path", Kind::Str, "/var/log/ovn/ovn-controller.log", "OVS exporter: log file size"),
        flag("log-perm", Kind::Str, "640", "log file mode; no log file is written here"),
    ];
}

impl Config {
    /// Parses the process arguments as Go's pflag does.
    pub fn parse_go() -> Config {
        goflags::parse_go()
    }

    /// Parses `args` (program name first) as Go's pflag does.
    pub fn try_parse_go<I, S>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        goflags::try_parse_go(args)
    }

    /// Whether rounds repeat (server) or one runs (job).
    pub fn is_server(&self) -> bool {
        self.mode == "server"
    }
}

/// Who the pinger is, from its pod's environment (the DaemonSet's downward API) and its pod.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// `POD_NAME`.
    pub pod_name: String,
    /// `POD_NAMESPACE`.
    pub namespace: String,
    /// `NODE_NAME`.
    pub node_name: String,
    /// `HOST_IP`.
    pub host_ip: String,
    /// `POD_IP`.
    pub pod_ip: String,
    /// The address families of the pod's IPs: only those are probed.
    pub families: Vec<bool>,
    /// The selector of the pinger pods to ping (the DaemonSet's).
    pub selector: String,
}

impl Identity {
    /// Whether `ip`'s family is one the pod has.
    pub fn probes(&self, ip: &IpAddr) -> bool {
        self.families.contains(&ip.is_ipv4())
    }
}

/// Everything a round needs.
pub struct Pinger {
    /// Flags.
    pub config: Config,
    /// Who we are.
    pub me: Identity,
    /// The API.
    pub client: kube::Client,
    /// Metrics, in server mode with `--enable-metrics`.
    pub metrics: Option<Arc<metrics::Metrics>>,
}

impl Pinger {
    /// How long an OVS request may take.
    pub fn ovs_timeout(&self) -> Duration {
        Duration::from_secs(self.config.ovs_timeout.max(1))
    }

    /// Runs rounds until `stop` resolves (server) or once (job); returns whether any check of
    /// any round failed.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) -> bool {
        tokio::pin!(stop);
        let mut failed = false;
        loop {
            failed |= checks::round(self).await;
            if let Some(m) = &self.metrics {
                m.set_ready();
            }
            if !self.config.is_server() {
                return failed;
            }
            tokio::select! {
                _ = &mut stop => return failed,
                _ = tokio::time::sleep(Duration::from_secs(self.config.interval.max(1))) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_job_invocation_parses() {
        let c = Config::try_parse_go([
            "kube-ovn-pinger",
            "--mode=job",
            "--tcp-conn-check-port=8100",
            "--udp-conn-check-port=8101",
            "--external-address=1.1.1.1,2606:4700:4700::1111",
            "--target-ip-ports=tcp-172.18.0.2-32001",
            "--ds-name=x",
        ]);
        // `--ds-name` is not a pinger flag upstream either: pflag refuses it.
        assert!(c.is_err());
        let c = Config::try_parse_go([
            "kube-ovn-pinger",
            "--mode=job",
            "--enable-verbose-conn-check",
            "--external-address=1.1.1.1,2606:4700:4700::1111",
            "--target-ip-ports=tcp-172.18.0.2-32001",
            "--ovs.poll-interval=30",
            "--v=3",
        ])
        .unwrap();
        assert!(!c.is_server());
        assert!(c.enable_verbose_conn_check);
        assert_eq!(c.tcp_conn_check_port, 8100);
        assert_eq!(c.internal_dns, "kubernetes.default");
        assert_eq!(c.upstream.warnings().len(), 1);
    }
}
