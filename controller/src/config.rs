//! Command-line flags, with upstream kube-ovn-controller's names, meanings, defaults and Go
//! value syntax, so the same Deployment arguments work when only the image is swapped. Every
//! upstream flag parses (`common/upstream-flags/controller.txt` lists them, a test checks it):
//! the implemented ones are fields of [`Config`], the others are accepted from one table,
//! [`NotImplemented`], and reported at start-up when set to a non-default value. klog's flags
//! (`--v`, `--logtostderr`, …) are accepted too. Parse with [`Config::parse_go`] /
//! [`Config::try_parse_go`], which read arguments the way Go's pflag does.

use std::time::Duration;

use clap::Parser;
use kube_ovn_common::goflags::{self, flag, go_duration, FlagTable, GoFlag, Kind, Unimplemented};
use kube_ovn_common::klog::LogFlags;
use kube_ovn_common::net;

/// kube-ovn-controller configuration.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kube-ovn-controller",
    version,
    about = "Kube-OVN controller: Kubernetes in, OVN Northbound out"
)]
pub struct Config {
    /// OVN NB address list (`tcp:IP:6641,…`, `ssl:…`, `unix:…`).
    #[arg(long = "ovn-nb-addr", default_value = "")]
    pub ovn_nb_addr: String,
    /// Seconds an OVN request may take.
    #[arg(long = "ovn-timeout", default_value_t = 60)]
    pub ovn_timeout: u64,
    /// Seconds an OVSDB connection attempt may take.
    #[arg(long = "ovsdb-con-timeout", default_value_t = 3)]
    pub ovsdb_con_timeout: u64,
    /// Seconds without traffic before an OVSDB connection is probed.
    #[arg(long = "ovsdb-inactivity-timeout", default_value_t = 10)]
    pub ovsdb_inactivity_timeout: u64,
    /// Min seconds between retries of a failing custom resource.
    #[arg(long = "cust-crd-retry-min-delay", default_value_t = 1)]
    pub cust_crd_retry_min_delay: u64,
    /// Max seconds between retries of a failing custom resource.
    #[arg(long = "cust-crd-retry-max-delay", default_value_t = 20)]
    pub cust_crd_retry_max_delay: u64,
    /// Kubeconfig file; in-cluster configuration when empty.
    #[arg(long = "kubeconfig", default_value = "")]
    pub kubeconfig: String,

    /// Name of the default subnet (logical switch).
    #[arg(
        long = "default-ls",
        alias = "default-logical-switch",
        default_value = "ovn-default"
    )]
    pub default_ls: String,
    /// CIDR of the default subnet.
    #[arg(long = "default-cidr", default_value = "10.16.0.0/16")]
    pub default_cidr: String,
    /// Gateway of the default subnet; the first address of the CIDR when empty.
    #[arg(long = "default-gateway", default_value = "")]
    pub default_gateway: String,
    /// Check the default subnet's gateway from nodes.
    #[arg(long = "default-gateway-check", default_value_t = true, action = clap::ArgAction::Set)]
    pub default_gateway_check: bool,
    /// Excluded addresses of the default subnet; the gateway when empty.
    #[arg(long = "default-exclude-ips", default_value = "")]
    pub default_exclude_ips: String,

    /// Name of the default VPC's logical router.
    #[arg(long = "cluster-router", default_value = "ovn-cluster")]
    pub cluster_router: String,
    /// Name of the external switch (and its Subnet) VPC gateway ports and OvnEips default to.
    #[arg(long = "external-gateway-switch", default_value = "external")]
    pub external_gateway_switch: String,
    /// The default VPC's external gateway from ConfigMap `ovn-external-gw-config`.
    #[arg(long = "enable-eip-snat", default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_eip_snat: bool,
    /// Namespace of ConfigMap `ovn-external-gw-config`.
    #[arg(long = "external-gateway-config-ns", default_value = "kube-system")]
    pub external_gateway_config_ns: String,
    /// `network_name` of the external switch's localnet port (its bridge mapping key).
    #[arg(long = "external-gateway-net", default_value = "external")]
    pub external_gateway_net: String,
    /// VLAN tag of the external switch's localnet port (0: none).
    #[arg(long = "external-gateway-vlanid", default_value_t = 0)]
    pub external_gateway_vlanid: i64,
    /// Name of the join subnet (nodes' ovn0).
    #[arg(long = "node-switch", default_value = "join")]
    pub node_switch: String,
    /// CIDR of the join subnet.
    #[arg(long = "node-switch-cidr", default_value = "100.64.0.0/16")]
    pub node_switch_cidr: String,
    /// Gateway of the join subnet; the first address when empty.
    #[arg(long = "node-switch-gateway", default_value = "")]
    pub node_switch_gateway: String,
    /// Kubernetes Service CIDR(s).
    #[arg(long = "service-cluster-ip-range", default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,

    /// Name of the default VPC's TCP load balancer.
    #[arg(
        long = "cluster-tcp-loadbalancer",
        default_value = "cluster-tcp-loadbalancer"
    )]
    pub cluster_tcp_loadbalancer: String,
    /// Name of the default VPC's UDP load balancer.
    #[arg(
        long = "cluster-udp-loadbalancer",
        default_value = "cluster-udp-loadbalancer"
    )]
    pub cluster_udp_loadbalancer: String,
    /// Name of the default VPC's SCTP load balancer.
    #[arg(
        long = "cluster-sctp-loadbalancer",
        default_value = "cluster-sctp-loadbalancer"
    )]
    pub cluster_sctp_loadbalancer: String,
    /// Name of the default VPC's TCP session-affinity load balancer.
    #[arg(
        long = "cluster-tcp-session-loadbalancer",
        default_value = "cluster-tcp-session-loadbalancer"
    )]
    pub cluster_tcp_session_loadbalancer: String,
    /// Name of the default VPC's UDP session-affinity load balancer.
    #[arg(
        long = "cluster-udp-session-loadbalancer",
        default_value = "cluster-udp-session-loadbalancer"
    )]
    pub cluster_udp_session_loadbalancer: String,
    /// Name of the default VPC's SCTP session-affinity load balancer.
    #[arg(
        long = "cluster-sctp-session-loadbalancer",
        default_value = "cluster-sctp-session-loadbalancer"
    )]
    pub cluster_sctp_session_loadbalancer: String,

    /// Parallel reconciles per kind.
    #[arg(long = "worker-num", default_value_t = 3)]
    pub worker_num: u16,
    /// Port of the metrics and health endpoint, on every address or, with
    /// `ENABLE_BIND_LOCAL_IP=true`, on those of `POD_IPS` (upstream's listen addresses).
    #[arg(long = "pprof-port", default_value_t = 10660)]
    pub pprof_port: u16,

    /// NB_Global `ls_dnat_mod_dl_dst` (only patched OVN reads it; written for adoption parity).
    #[arg(long = "ls-dnat-mod-dl-dst", default_value_t = true, action = clap::ArgAction::Set)]
    pub ls_dnat_mod_dl_dst: bool,
    /// NB_Global `ls_ct_skip_dst_lport_ips` (only patched OVN reads it; written for parity).
    #[arg(long = "ls-ct-skip-dst-lport-ips", default_value_t = true, action = clap::ArgAction::Set)]
    pub ls_ct_skip_dst_lport_ips: bool,
    /// Default pod NIC type (`ovn.kubernetes.io/pod_nic_type`).
    #[arg(long = "pod-nic-type", default_value = "veth-pair")]
    pub pod_nic_type: String,
    /// Load balancers for Services.
    #[arg(long = "enable-lb", default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_lb: bool,
    /// LoadBalancer Services through lb-svc pods (see [`crate::lb_svc`]); needs `--enable-lb`.
    #[arg(long = "enable-lb-svc", default_value_t = false, action = clap::ArgAction::Set)]
    pub enable_lb_svc: bool,
    /// NetworkPolicy support.
    #[arg(long = "enable-np", default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_np: bool,
    /// NetworkPolicy enforcement mode: standard or lax.
    #[arg(long = "np-enforcement", default_value = "standard")]
    pub np_enforcement: String,
    /// ECMP routes for centralized subnets.
    #[arg(long = "enable-ecmp", default_value_t = false, action = clap::ArgAction::Set)]
    pub enable_ecmp: bool,
    /// Load balancers prefer local backends.
    #[arg(long = "enable-ovn-lb-prefer-local", default_value_t = false, action = clap::ArgAction::Set)]
    pub enable_ovn_lb_prefer_local: bool,
    /// Serve Prometheus metrics (else only health).
    #[arg(long = "enable-metrics", default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_metrics: bool,
    /// AdminNetworkPolicy support.
    #[arg(long = "enable-anp", default_value_t = false, action = clap::ArgAction::Set)]
    pub enable_anp: bool,
    /// Domain-name egress peers of admin policies through `DNSNameResolver`s (with
    /// `--enable-anp`).
    #[arg(long = "enable-dns-name-resolver", default_value_t = false, action = clap::ArgAction::Set)]
    pub enable_dns_name_resolver: bool,
    /// OVN IPsec.
    #[arg(long = "enable-ovn-ipsec", default_value_t = false, action = clap::ArgAction::Set)]
    pub enable_ovn_ipsec: bool,
    /// Node-local DNS addresses.
    #[arg(long = "node-local-dns-ip", default_value = "")]
    pub node_local_dns_ip: String,
    /// Seconds between GC runs; 0 disables GC.
    #[arg(long = "gc-interval", default_value_t = 360)]
    pub gc_interval: u64,
    /// Destination CIDRs that skip conntrack.
    #[arg(long = "skip-conntrack-dst-cidrs", default_value = "")]
    pub skip_conntrack_dst_cidrs: String,

    /// Lease duration for leader election (upstream's `cmd/controller`: 30 s).
    #[arg(long = "leader-elect-lease-duration", default_value = "30s", value_parser = go_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up (upstream: 20 s).
    #[arg(long = "leader-elect-renew-deadline", default_value = "20s", value_parser = go_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// Pause between leader election attempts (upstream: 6 s).
    #[arg(long = "leader-elect-retry-period", default_value = "6s", value_parser = go_duration)]
    pub leader_elect_retry_period: Duration,

    /// klog's flags (`--v`, `--logtostderr`, …), shared with the daemon.
    #[command(flatten)]
    pub log: LogFlags,

    /// Upstream flags accepted but not implemented, and stray positional arguments.
    #[command(flatten)]
    pub upstream: Unimplemented<NotImplemented>,
}

/// Upstream kube-ovn-controller flags this controller accepts without acting on them yet.
/// Implementing one means moving it from here to a [`Config`] field.
#[derive(Debug, Clone)]
pub struct NotImplemented;

impl FlagTable for NotImplemented {
    #[rustfmt::skip]
    const FLAGS: &'static [GoFlag] = &[
        flag("ovn-sb-addr", Kind::Str, "", "OVN Southbound address, for chassis and IC cleanup"),
        flag("ovsdb-con-maxretry", Kind::Int, "60", "connection retries before exiting; here retries never stop"),
        flag("default-logical-gateway", Kind::Bool, "false", "logical gateway for an underlay default subnet"),
        flag("default-u2o-interconnection", Kind::Bool, "false", "underlay-to-overlay interconnection of the default subnet"),
        flag("nodepg-probe-time", Kind::Int, "1", "minutes between node port-group checks"),
        flag("enable-pprof", Kind::Bool, "false", "Go pprof endpoint"),
        flag("secure-serving", Kind::Bool, "false", "metrics over TLS with authentication"),
        flag("network-type", Kind::Str, "geneve", "geneve/vxlan/stt overlay or vlan underlay default subnet"),
        flag("default-provider-name", Kind::Str, "provider", "provider network of a vlan default subnet"),
        flag("default-interface-name", Kind::Str, "", "host NIC of a vlan default subnet"),
        flag("default-exchange-link-name", Kind::Bool, "false", "swap names of OVS bridge and provider NIC"),
        flag("default-vlan-name", Kind::Str, "ovn-vlan", "Vlan of a vlan default subnet"),
        flag("default-vlan-id", Kind::Int, "1", "VLAN id of a vlan default subnet"),
        flag("enable-external-vpc", Kind::Bool, "false", "VPCs managed outside Kube-OVN"),
        flag("keep-vm-ip", Kind::Bool, "true", "KubeVirt VMs keep their IP across pod rebuilds"),
        flag("cert-manager-ipsec-cert", Kind::Bool, "false", "IPsec certificates from cert-manager"),
        flag("enable-live-migration-optimize", Kind::Bool, "true", "KubeVirt live-migration port handling"),
        flag("inspect-interval", Kind::Int, "20", "seconds between consistency inspections"),
        flag("bfd-min-tx", Kind::Int, "100", "BFD transmit interval (ms)"),
        flag("bfd-min-rx", Kind::Int, "100", "BFD receive interval (ms)"),
        flag("detect-mult", Kind::Int, "3", "BFD detection multiplier"),
        flag("image", Kind::Str, "", "image of vpc-egress-gateway pods"),
        flag("frr-image", Kind::Str, "quay.io/frrouting/frr:10.5.1", "FRR image for vpc-egress-gateway BGP/EVPN"),
        flag("log-perm", Kind::Str, "640", "log file mode; no log file is written here"),
        flag("tls-min-version", Kind::Str, "", "minimum TLS version of secure serving"),
        flag("tls-max-version", Kind::Str, "", "maximum TLS version of secure serving"),
        flag("tls-cipher-suites", Kind::StrSlice, "", "TLS cipher suites of secure serving"),
        flag("non-primary-cni-mode", Kind::Bool, "false", "manage only attachment networks"),
    ];
}

impl Config {
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
        if self.enable_lb_svc && !self.enable_lb {
            w.push(
                "--enable-lb-svc requires --enable-lb, the loadbalancer service feature will not work"
                    .into(),
            );
        }
        w
    }

    /// Gateway of the default subnet (explicit, or the CIDR's first usable address per family).
    pub fn default_subnet_gateway(&self) -> String {
        gateway_or_first(&self.default_gateway, &self.default_cidr)
    }

    /// Gateway of the join subnet.
    pub fn join_gateway(&self) -> String {
        gateway_or_first(&self.node_switch_gateway, &self.node_switch_cidr)
    }

    /// Checks what flags cannot express on their own.
    pub fn validate(&self) -> Result<(), String> {
        if self.ovn_nb_addr.is_empty() {
            return Err("--ovn-nb-addr is required".into());
        }
        if self.leader_elect_lease_duration <= self.leader_elect_renew_deadline {
            return Err(
                "--leader-elect-lease-duration must be greater than --leader-elect-renew-deadline"
                    .into(),
            );
        }
        if self.leader_elect_retry_period.is_zero() {
            return Err("--leader-elect-retry-period must be greater than zero".into());
        }
        for (flag, cidr) in [
            ("--default-cidr", &self.default_cidr),
            ("--node-switch-cidr", &self.node_switch_cidr),
        ] {
            net::CidrBlock::parse(cidr).map_err(|e| format!("{flag}: {e}"))?;
        }
        self.node_local_dns_ips()?;
        Ok(())
    }

    /// `--node-local-dns-ip` as addresses (upstream refuses to start on an invalid one).
    pub fn node_local_dns_ips(&self) -> Result<Vec<std::net::IpAddr>, String> {
        net::entries(&self.node_local_dns_ip)
            .map(|ip| {
                ip.parse()
                    .map_err(|_| format!("--node-local-dns-ip: {ip:?} is not an IP address"))
            })
            .collect()
    }
}

/// `gateway` if set, else the first usable address of each CIDR in `cidrs`, comma-joined.
pub fn gateway_or_first(gateway: &str, cidrs: &str) -> String {
    if !gateway.trim().is_empty() {
        return gateway.trim().to_string();
    }
    net::entries(cidrs)
        .filter_map(|c| c.parse::<ipnet::IpNet>().ok())
        .map(|n| net::first_usable(&n).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_deployment_arguments_parse() {
        // Arguments as upstream's install.sh writes them into the Deployment.
        let args = [
            "kube-ovn-controller",
            "--default-ls=ovn-default",
            "--default-cidr=10.16.0.0/16",
            "--default-gateway=10.16.0.1",
            "--default-gateway-check=true",
            "--default-logical-gateway=false",
            "--default-u2o-interconnection=false",
            "--default-exclude-ips=",
            "--node-switch-cidr=100.64.0.0/16",
            "--service-cluster-ip-range=10.96.0.0/12",
            "--network-type=geneve",
            "--default-interface-name=",
            "--default-exchange-link-name=false",
            "--default-vlan-id=100",
            "--ls-dnat-mod-dl-dst=true",
            "--ls-ct-skip-dst-lport-ips=true",
            "--pod-nic-type=veth-pair",
            "--enable-lb=true",
            "--enable-np=true",
            "--enable-eip-snat=true",
            "--enable-external-vpc=true",
            "--enable-ecmp=false",
            "--logtostderr=false",
            "--alsologtostderr=true",
            "--gc-interval=360",
            "--inspect-interval=20",
            "--log_file=/var/log/kube-ovn/kube-ovn-controller.log",
            "--log_file_max_size=200",
            "--enable-lb-svc=false",
            "--keep-vm-ip=true",
            "--node-local-dns-ip=",
            "--secure-serving=false",
            "--enable-ovn-ipsec=false",
            "--enable-anp=false",
            "--ovsdb-con-timeout=3",
            "--ovsdb-inactivity-timeout=10",
            "--enable-live-migration-optimize=true",
            "--ovn-nb-addr=tcp:[10.0.0.1]:6641",
            "--v=3",
        ];
        let c = Config::try_parse_go(args).unwrap();
        assert_eq!(c.default_ls, "ovn-default");
        assert!(!c.log.logtostderr);
        assert_eq!(c.upstream.value("default-vlan-id"), Some("100"));
        // Only the non-default unimplemented ones, and the log file, are reported.
        let w = c.warnings();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].starts_with("--default-vlan-id=100"), "{w:?}");
        assert!(w[1].starts_with("--enable-external-vpc=true"), "{w:?}");
        assert!(w[2].starts_with("--log_file="), "{w:?}");
        assert_eq!(c.leader_elect_lease_duration, Duration::from_secs(30));
        assert_eq!(c.leader_elect_renew_deadline, Duration::from_secs(20));
        assert_eq!(c.leader_elect_retry_period, Duration::from_secs(6));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn gateways_default_to_the_first_address() {
        let c = Config::try_parse_go([
            "x",
            "--ovn-nb-addr=unix:/x",
            "--default-cidr=10.16.0.0/16,fd00:10:16::/112",
        ])
        .unwrap();
        assert_eq!(c.default_subnet_gateway(), "10.16.0.1,fd00:10:16::1");
        assert_eq!(c.join_gateway(), "100.64.0.1");
    }
}
