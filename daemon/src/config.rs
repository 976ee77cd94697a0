//! Command-line flags with upstream kube-ovn-daemon's names and defaults (`pkg/daemon/config.go`),
//! so the DaemonSet's arguments work when only the image changes. Flags for node-level features
//! this daemon does not implement yet are accepted, never a parse failure. klog's flags too
//! (shared with the controller: [`LogFlags`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use kube_ovn_common::klog::LogFlags;

/// Upstream's default socket, shared with the shim through the conflist's `server_socket`.
pub const DEFAULT_BIND_SOCKET: &str = "/run/openvswitch/kube-ovn-daemon.sock";

/// Upstream polls the pod 20 times, one second apart, for the controller's annotations.
pub const DEFAULT_ANNOTATION_WAIT: Duration = Duration::from_secs(20);

/// Upstream waits 30 s for ovn-controller to mark the interface `ovn-installed`.
pub const DEFAULT_OVN_INSTALLED_WAIT: Duration = Duration::from_secs(30);

/// Whether the pod side of the veth keeps TX checksum offload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TxChecksumOffload {
    /// Upstream's behaviour: turned off when br-int uses the userspace (`netdev`) datapath,
    /// which forwards partial checksums unchanged so receivers drop TCP/UDP; kept otherwise.
    Auto,
    /// Always kept (kernel datapath, or hardware that completes checksums).
    #[value(alias = "true")]
    On,
    /// Always turned off.
    #[value(alias = "false")]
    Off,
}

impl TxChecksumOffload {
    /// Whether the policy turns TX checksum offload off, given whether the bridge uses the
    /// userspace datapath.
    pub fn turns_off(self, userspace: bool) -> bool {
        match self {
            TxChecksumOffload::Auto => userspace,
            TxChecksumOffload::On => false,
            TxChecksumOffload::Off => true,
        }
    }
}

/// kube-ovn-daemon configuration.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kube-ovn-daemon",
    version,
    about = "Kube-OVN node agent: wires pods into OVS for the CNI shim"
)]
pub struct Config {
    /// Unix socket the CNI shim talks to.
    #[arg(long = "bind-socket", default_value = DEFAULT_BIND_SOCKET)]
    pub bind_socket: PathBuf,
    /// The local Open_vSwitch database (`unix:/run/openvswitch/db.sock`); empty means that path.
    #[arg(long = "ovs-socket", default_value = "")]
    pub ovs_socket: String,
    /// Kubeconfig file; in-cluster configuration when empty.
    #[arg(long = "kubeconfig", default_value = "")]
    pub kubeconfig: String,
    /// Pod interface MTU; 0 derives it from the tunnel interface (1500 minus the encap overhead).
    #[arg(long = "mtu", default_value_t = 0)]
    pub mtu: u32,
    /// Tunnel interface (accepted; tunnel selection is not implemented yet).
    #[arg(long = "iface", default_value = "")]
    pub iface: String,
    /// Join subnet name: its CIDR gets no host route through `ovn0`.
    #[arg(long = "node-switch", default_value = "join")]
    pub node_switch: String,
    /// The default VPC's router: subnets of this VPC (or of none) get host routes and NAT.
    #[arg(long = "cluster-router", default_value = "ovn-cluster")]
    pub cluster_router: String,
    /// Service CIDR (accepted; node NAT rules are not implemented yet).
    #[arg(long = "service-cluster-ip-range", default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,
    /// Tunnel checksums (accepted).
    #[arg(long = "encap-checksum", action = clap::ArgAction::Set, default_value_t = true)]
    pub encap_checksum: bool,
    /// Overlay encapsulation: geneve, vxlan or stt; decides the MTU overhead.
    #[arg(long = "network-type", default_value = "geneve")]
    pub network_type: String,
    /// Serve Prometheus metrics at `/metrics` on `--pprof-port` (health endpoints are served
    /// there either way).
    #[arg(long = "enable-metrics", action = clap::ArgAction::Set, default_value_t = true)]
    pub enable_metrics: bool,
    /// pprof (accepted; Go-only).
    #[arg(long = "enable-pprof", action = clap::ArgAction::Set, default_value_t = false)]
    pub enable_pprof: bool,
    /// Port of the metrics and health endpoint on all addresses; 0 picks a free one (the bound
    /// address is logged and written to `<bind-socket>.metrics-addr`).
    #[arg(long = "pprof-port", default_value_t = 10665)]
    pub pprof_port: u16,
    /// Traffic mirroring (accepted; not implemented yet).
    #[arg(long = "enable-mirror", action = clap::ArgAction::Set, default_value_t = false)]
    pub enable_mirror: bool,
    /// Mirror interface name (accepted).
    #[arg(long = "mirror-iface", default_value = "mirror0")]
    pub mirror_iface: String,

    /// Pod-side TX checksum offload: auto (upstream: off on the userspace datapath), on, off.
    #[arg(long = "pod-tx-checksum-offload", value_enum, default_value_t = TxChecksumOffload::Auto)]
    pub pod_tx_checksum_offload: TxChecksumOffload,
    /// How long an ADD waits for the controller's annotations (upstream: 20 × 1 s).
    #[arg(long = "wait-address-timeout", value_parser = seconds, default_value = "20")]
    pub wait_address_timeout: Duration,
    /// How long an ADD waits for ovn-controller's `ovn-installed` (upstream: 30 s).
    #[arg(long = "wait-ovn-installed-timeout", value_parser = seconds, default_value = "30")]
    pub wait_ovn_installed_timeout: Duration,

    /// klog's flags (`--v`, `--logtostderr`, …).
    #[command(flatten)]
    pub log: LogFlags,
}

fn seconds(s: &str) -> Result<Duration, String> {
    let t = s.trim_end_matches('s');
    t.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("invalid duration {s:?} (seconds)"))
}

impl Config {
    /// The OVS database remote, defaulting like upstream's empty `--ovs-socket`.
    pub fn ovs_remote(&self) -> String {
        if self.ovs_socket.is_empty() {
            "unix:/run/openvswitch/db.sock".into()
        } else if self.ovs_socket.contains(':') {
            self.ovs_socket.clone()
        } else {
            format!("unix:{}", self.ovs_socket)
        }
    }

    /// The pod MTU: the flag, or 1500 less the encapsulation overhead of `--network-type`
    /// (geneve 100, vxlan 50, stt 72, as upstream).
    pub fn pod_mtu(&self) -> u32 {
        if self.mtu != 0 {
            return self.mtu;
        }
        let overhead = match self.network_type.as_str() {
            "vxlan" => 50,
            "stt" => 72,
            "vlan" => 0,
            _ => 100,
        };
        1500 - overhead
    }

    /// The node name as upstream finds it: `NODE_NAME`, else the host name, lower-cased.
    pub fn node_name() -> String {
        std::env::var("NODE_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_lowercase())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("kube-ovn-daemon").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn upstream_defaults() {
        let c = parse(&[]);
        assert_eq!(c.bind_socket, PathBuf::from(DEFAULT_BIND_SOCKET));
        assert_eq!(c.pprof_port, 10665);
        assert_eq!(c.node_switch, "join");
        assert_eq!(c.cluster_router, "ovn-cluster");
        assert_eq!(c.service_cluster_ip_range, "10.96.0.0/12");
        assert_eq!(c.pod_mtu(), 1400);
        assert_eq!(c.ovs_remote(), "unix:/run/openvswitch/db.sock");
        assert_eq!(c.wait_address_timeout, DEFAULT_ANNOTATION_WAIT);
        assert_eq!(c.wait_ovn_installed_timeout, DEFAULT_OVN_INSTALLED_WAIT);
        assert_eq!(c.pod_tx_checksum_offload, TxChecksumOffload::Auto);
    }

    #[test]
    fn upstream_daemonset_arguments_parse() {
        let c = parse(&[
            "--ovs-socket=/run/openvswitch/db.sock",
            "--bind-socket=/run/openvswitch/kube-ovn-daemon.sock",
            "--enable-mirror=false",
            "--encap-checksum=true",
            "--service-cluster-ip-range=10.96.0.0/12",
            "--iface=",
            "--network-type=vxlan",
            "--enable-metrics=true",
            "--v=3",
            "--logtostderr=false",
            "--alsologtostderr=true",
            "--log_file=/var/log/kube-ovn/kube-ovn-cni.log",
            "--log_file_max_size=200",
            "--pod-tx-checksum-offload=false",
            "--wait-address-timeout=2.5",
        ]);
        assert_eq!(c.ovs_remote(), "unix:/run/openvswitch/db.sock");
        assert_eq!(c.pod_mtu(), 1450);
        assert_eq!(c.pod_tx_checksum_offload, TxChecksumOffload::Off);
        assert_eq!(c.wait_address_timeout, Duration::from_millis(2500));
        assert_eq!(c.log.v, 3);
    }

    #[test]
    fn explicit_mtu_wins() {
        assert_eq!(parse(&["--mtu=9000"]).pod_mtu(), 9000);
        assert!(Config::try_parse_from(["d", "--wait-address-timeout=-1"]).is_err());
    }
}
