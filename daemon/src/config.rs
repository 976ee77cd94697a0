//! Command-line flags with upstream kube-ovn-daemon's names, defaults and Go value syntax
//! (`pkg/daemon/config.go`), so the DaemonSet's arguments work when only the image changes.
//! Every upstream flag parses (`common/upstream-flags/daemon.txt`, checked by a test): the
//! implemented ones are fields of [`Config`], the others are accepted from one table,
//! [`NotImplemented`], and reported at start-up when set to a non-default value. klog's flags
//! too (shared with the controller: [`LogFlags`]). Parse with [`Config::parse_go`] /
//! [`Config::try_parse_go`], which read arguments the way Go's pflag does.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use kube_ovn_common::goflags::{self, flag, FlagTable, GoFlag, Kind, Unimplemented};
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
    /// Install the CNI configuration and exit (upstream's install-cni init container runs
    /// `kube-ovn-daemon --install-cni-config`): copies `--cni-conf-file` to
    /// `<--cni-conf-dir>/<--cni-conf-name>` with mode 0600, unless it is already there.
    #[arg(long = "install-cni-config", default_value_t = false, action = clap::ArgAction::Set)]
    pub install_cni_config: bool,
    /// Directory of the node's CNI configurations.
    #[arg(long = "cni-conf-dir", default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// The CNI configuration (conflist) shipped in the image.
    #[arg(
        long = "cni-conf-file",
        default_value = "/kube-ovn/01-kube-ovn.conflist"
    )]
    pub cni_conf_file: PathBuf,
    /// File name of the installed configuration; its prefix orders it among other plugins.
    #[arg(long = "cni-conf-name", default_value = "01-kube-ovn.conflist")]
    pub cni_conf_name: String,

    /// Unix socket the CNI shim talks to.
    #[arg(long = "bind-socket", default_value = DEFAULT_BIND_SOCKET)]
    pub bind_socket: PathBuf,
    /// The local Open_vSwitch database (`unix:/run/openvswitch/db.sock`); empty means that path.
    #[arg(long = "ovs-socket", default_value = "")]
    pub ovs_socket: String,
    /// Kubeconfig file; in-cluster configuration when empty.
    #[arg(long = "kubeconfig", default_value = "")]
    pub kubeconfig: String,
    /// Pod interface MTU; 0 derives it from the tunnel interface's MTU less the encapsulation
    /// overhead of `--network-type` (and 20 more for an IPv6 tunnel address).
    #[arg(long = "mtu", default_value_t = 0)]
    pub mtu: u32,
    /// Tunnel interface: a NIC name or comma-separated regular expressions. Empty means the
    /// interface holding `POD_IP` or the Node's InternalIP. The Node's
    /// `ovn.kubernetes.io/tunnel_interface` annotation and a DPDK node override it.
    #[arg(long = "iface", default_value = "")]
    pub iface: String,
    /// Also take a /32 (/128) address of `--iface` as the tunnel address.
    #[arg(long = "host-tunnel-src", default_value_t = false, action = clap::ArgAction::Set)]
    pub host_tunnel_src: bool,
    /// Tunnel interface of nodes labelled `ovn.kubernetes.io/ovs_dp_type=userspace`.
    #[arg(long = "dpdk-tunnel-iface", default_value = "br-phy")]
    pub dpdk_tunnel_iface: String,
    /// Join subnet name: its CIDR gets no host route through `ovn0`.
    #[arg(long = "node-switch", default_value = "join")]
    pub node_switch: String,
    /// The external switch: a gateway node's bridge is `br-<switch>`, mapped as `<switch>`.
    #[arg(long = "external-gateway-switch", default_value = "external")]
    pub external_gateway_switch: String,
    /// Namespace of ConfigMap `ovn-external-gw-config` (its `external-gw-nic`).
    #[arg(long = "external-gateway-config-ns", default_value = "kube-system")]
    pub external_gateway_config_ns: String,
    /// The default VPC's router: subnets of this VPC (or of none) get host routes and NAT.
    #[arg(long = "cluster-router", default_value = "ovn-cluster")]
    pub cluster_router: String,
    /// Tunnel checksums: written to OVS as `external_ids:ovn-encap-csum`.
    #[arg(long = "encap-checksum", action = clap::ArgAction::Set, default_value_t = true)]
    pub encap_checksum: bool,
    /// Overlay encapsulation: geneve, vxlan or stt (or vlan); decides the MTU overhead.
    #[arg(long = "network-type", default_value = "geneve")]
    pub network_type: String,
    /// Serve upstream's TCP/UDP connectivity-check listeners on the node (what kube-ovn-pinger
    /// checks nodes against with `--enable-verbose-conn-check`).
    #[arg(long = "enable-verbose-conn-check", action = clap::ArgAction::Set, default_value_t = false)]
    pub enable_verbose_conn_check: bool,
    /// TCP connectivity-check port.
    #[arg(long = "tcp-conn-check-port", default_value_t = 8100)]
    pub tcp_conn_check_port: u16,
    /// UDP connectivity-check port.
    #[arg(long = "udp-conn-check-port", default_value_t = 8101)]
    pub udp_conn_check_port: u16,
    /// Relay kubelet's probes of custom-VPC pods through TPROXY (see `tproxy`).
    #[arg(long = "enable-tproxy", action = clap::ArgAction::Set, default_value_t = false)]
    pub enable_tproxy: bool,
    /// Serve Prometheus metrics at `/metrics` on `--pprof-port` (health endpoints are served
    /// there either way).
    #[arg(long = "enable-metrics", action = clap::ArgAction::Set, default_value_t = true)]
    pub enable_metrics: bool,
    /// Port of the metrics and health endpoint, on every address or, with
    /// `ENABLE_BIND_LOCAL_IP=true`, on those of `POD_IPS`; 0 picks a free one (the bound
    /// address is logged and written to `<bind-socket>.metrics-addr`).
    #[arg(long = "pprof-port", default_value_t = 10665)]
    pub pprof_port: u16,

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

    /// Upstream flags accepted but not implemented, and stray positional arguments.
    #[command(flatten)]
    pub upstream: Unimplemented<NotImplemented>,
}

/// Upstream kube-ovn-daemon flags this daemon accepts without acting on them yet.
/// Implementing one means moving it from here to a [`Config`] field.
#[derive(Debug, Clone)]
pub struct NotImplemented;

impl FlagTable for NotImplemented {
    #[rustfmt::skip]
    const FLAGS: &'static [GoFlag] = &[
        flag("enable-mirror", Kind::Bool, "false", "mirror pod traffic to --mirror-iface"),
        flag("mirror-iface", Kind::Str, "mirror0", "name of the traffic mirror NIC"),
        flag("service-cluster-ip-range", Kind::Str, "10.96.0.0/12", "Service CIDR for node ipsets and NAT exemptions"),
        flag("enable-pprof", Kind::Bool, "false", "Go pprof endpoint"),
        flag("secure-serving", Kind::Bool, "false", "metrics over TLS with authentication"),
        flag("mac-learning-fallback", Kind::Bool, "false", "legacy MAC learning on provider bridges"),
        flag("default-provider-name", Kind::Str, "provider", "provider network of a vlan default subnet"),
        flag("default-interface-name", Kind::Str, "", "host NIC of a vlan default subnet"),
        flag("enable-arp-detect-ip-conflict", Kind::Bool, "true", "ARP probe for address conflicts on underlay pods"),
        flag("kubelet-dir", Kind::Str, "/var/lib/kubelet", "kubelet directory, for pod volume paths"),
        flag("ovs-vsctl-concurrency", Kind::Int, "100", "limit of concurrent ovs-vsctl runs; no ovs-vsctl runs here"),
        flag("enable-ovn-ipsec", Kind::Bool, "false", "OVN IPsec certificates on the node"),
        flag("cert-manager-ipsec-cert", Kind::Bool, "false", "IPsec certificates from cert-manager"),
        flag("cert-manager-issuer-name", Kind::Str, "kube-ovn", "cert-manager issuer of IPsec certificates"),
        flag("ovn-ipsec-cert-duration", Kind::Int, "63072000", "lifetime of IPsec certificates (s)"),
        flag("set-vxlan-tx-off", Kind::Bool, "false", "turn TX offload off on vxlan_sys_4789"),
        flag("log-perm", Kind::Str, "640", "log file mode; no log file is written here"),
        flag("tls-min-version", Kind::Str, "", "minimum TLS version of secure serving"),
        flag("tls-max-version", Kind::Str, "", "maximum TLS version of secure serving"),
        flag("tls-cipher-suites", Kind::StrSlice, "", "TLS cipher suites of secure serving"),
        flag("non-primary-cni-mode", Kind::Bool, "false", "skip the NetworkUnavailable condition"),
    ];
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

    /// The pod MTU: `--mtu`, or the tunnel interface's `nic_mtu` less the encapsulation
    /// overhead of `--network-type` (geneve and vlan 100, vxlan 50, stt 72, as upstream) and
    /// 20 more when the tunnel address is IPv6. An unknown network type is an error, as
    /// upstream.
    pub fn pod_mtu(&self, nic_mtu: u32, encap_ipv6: bool) -> Result<u32, String> {
        if self.mtu != 0 {
            return Ok(self.mtu);
        }
        let overhead = match self.network_type.as_str() {
            "geneve" | "vlan" => 100,
            "vxlan" => 50,
            "stt" => 72,
            other => return Err(format!("--network-type={other}: invalid network type")),
        } + if encap_ipv6 { 20 } else { 0 };
        nic_mtu.checked_sub(overhead).filter(|m| *m > 0).ok_or_else(|| {
            format!("tunnel interface MTU {nic_mtu} leaves no room for the {overhead}-byte encapsulation")
        })
    }

    /// Parses the process's arguments as upstream's pflag would (exits on `--help` or a bad
    /// argument, like upstream).
    pub fn parse_go() -> Config {
        goflags::parse_go()
    }

    /// Parses `args` (program name first) as upstream's pflag would.
    pub fn try_parse_go<I, S>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        goflags::try_parse_go(args)
    }

    /// The start-up warnings: one per upstream flag that is accepted but not implemented and
    /// set to a non-default value, one per klog option the logging does not follow.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = self.upstream.warnings();
        w.extend(self.log.warnings());
        w
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
        Config::try_parse_go(std::iter::once("kube-ovn-daemon").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn upstream_defaults() {
        let c = parse(&[]);
        assert_eq!(c.bind_socket, PathBuf::from(DEFAULT_BIND_SOCKET));
        assert_eq!(c.pprof_port, 10665);
        assert_eq!(c.node_switch, "join");
        assert_eq!(c.cluster_router, "ovn-cluster");
        assert_eq!(c.pod_mtu(1500, false), Ok(1400));
        assert_eq!(c.pod_mtu(9000, true), Ok(8880));
        assert!(!c.install_cni_config);
        assert_eq!(
            c.cni_conf_dir.join(&c.cni_conf_name),
            PathBuf::from("/etc/cni/net.d/01-kube-ovn.conflist")
        );
        assert!(c.warnings().is_empty());
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
        assert_eq!(c.pod_mtu(1500, false), Ok(1450));
        assert_eq!(c.upstream.value("enable-mirror"), Some("false"));
        let w = c.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("--log_file="), "{w:?}");
        assert_eq!(c.pod_tx_checksum_offload, TxChecksumOffload::Off);
        assert_eq!(c.wait_address_timeout, Duration::from_millis(2500));
        assert_eq!(c.log.v, 3);
    }

    #[test]
    fn explicit_mtu_wins() {
        assert_eq!(parse(&["--mtu=9000"]).pod_mtu(1500, true), Ok(9000));
        assert!(parse(&["--network-type=foo"]).pod_mtu(1500, false).is_err());
        assert!(parse(&[]).pod_mtu(90, false).is_err());
        assert!(Config::try_parse_go(["d", "--wait-address-timeout=-1"]).is_err());
    }
}
