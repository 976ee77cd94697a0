//! Command-line flags, with upstream kube-ovn-controller's names, meanings and defaults, so the
//! same Deployment arguments work when only the image is swapped. Every upstream flag parses;
//! the ones for features this controller does not implement yet are accepted and reported at
//! start, never a crash. klog's flags (`--v`, `--logtostderr`, …) are accepted too.

use std::time::Duration;

use clap::Parser;
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
    /// OVN SB address list.
    #[arg(long = "ovn-sb-addr", default_value = "")]
    pub ovn_sb_addr: String,
    /// Seconds an OVN request may take.
    #[arg(long = "ovn-timeout", default_value_t = 60)]
    pub ovn_timeout: u64,
    /// Seconds an OVSDB connection attempt may take.
    #[arg(long = "ovsdb-con-timeout", default_value_t = 3)]
    pub ovsdb_con_timeout: u64,
    /// Upstream's connect retry count; we retry forever with back-off (accepted for compatibility).
    #[arg(long = "ovsdb-con-maxretry", default_value_t = 60)]
    pub ovsdb_con_maxretry: u64,
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
    /// Logical gateway for an underlay default subnet.
    #[arg(long = "default-logical-gateway", default_value_t = false, action = clap::ArgAction::Set)]
    pub default_logical_gateway: bool,
    /// Excluded addresses of the default subnet; the gateway when empty.
    #[arg(long = "default-exclude-ips", default_value = "")]
    pub default_exclude_ips: String,
    /// Underlay-to-overlay interconnection for the default subnet.
    #[arg(long = "default-u2o-interconnection", default_value_t = false, action = clap::ArgAction::Set)]
    pub default_u2o_interconnection: bool,

    /// Name of the default VPC's logical router.
    #[arg(long = "cluster-router", default_value = "ovn-cluster")]
    pub cluster_router: String,
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
    /// Serve profiling data (accepted; Rust has no pprof endpoint).
    #[arg(long = "enable-pprof", default_value_t = false, action = clap::ArgAction::Set)]
    pub enable_pprof: bool,
    /// Port of the metrics and health endpoint.
    #[arg(long = "pprof-port", default_value_t = 10660)]
    pub pprof_port: u16,
    /// Serve metrics over TLS with authentication (accepted; plain HTTP is served).
    #[arg(long = "secure-serving", default_value_t = false, action = clap::ArgAction::Set)]
    pub secure_serving: bool,
    /// Minutes between node port-group refreshes.
    #[arg(long = "nodepg-probe-time", default_value_t = 1)]
    pub nodepg_probe_time: u64,

    /// Tunnel type (geneve, vxlan, stt) or vlan.
    #[arg(long = "network-type", default_value = "geneve")]
    pub network_type: String,
    /// Default provider network name in vlan mode.
    #[arg(long = "default-provider-name", default_value = "provider")]
    pub default_provider_name: String,
    /// Default host interface in vlan mode.
    #[arg(long = "default-interface-name", default_value = "")]
    pub default_interface_name: String,
    /// Exchange link names of OVS bridge and provider NIC.
    #[arg(long = "default-exchange-link-name", default_value_t = false, action = clap::ArgAction::Set)]
    pub default_exchange_link_name: bool,
    /// Default VLAN name in vlan mode.
    #[arg(long = "default-vlan-name", default_value = "ovn-vlan")]
    pub default_vlan_name: String,
    /// Default VLAN id in vlan mode.
    #[arg(long = "default-vlan-id", default_value_t = 1)]
    pub default_vlan_id: u16,
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
    /// NetworkPolicy support.
    #[arg(long = "enable-np", default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_np: bool,
    /// NetworkPolicy enforcement mode: standard or lax.
    #[arg(long = "np-enforcement", default_value = "standard")]
    pub np_enforcement: String,
    /// EIP and SNAT support.
    #[arg(long = "enable-eip-snat", default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_eip_snat: bool,
    /// External VPC support.
    #[arg(long = "enable-external-vpc", default_value_t = false, action = clap::ArgAction::Set)]
    pub enable_external_vpc: bool,
    /// ECMP routes for centralized subnets.
    #[arg(long = "enable-ecmp", default_value_t = false, action = clap::ArgAction::Set)]
    pub enable_ecmp: bool,
    /// Keep KubeVirt VM IPs across pod rebuilds.
    #[arg(long = "keep-vm-ip", default_value_t = true, action = clap::ArgAction::Set)]
    pub keep_vm_ip: bool,
    /// LoadBalancer Services through lb-svc pods.
    #[arg(long = "enable-lb-svc", default_value_t = false, action = clap::ArgAction::Set)]
    pub enable_lb_svc: bool,
    /// Load balancers prefer local backends.
    #[arg(long = "enable-ovn-lb-prefer-local", default_value_t = false, action = clap::ArgAction::Set)]
    pub enable_ovn_lb_prefer_local: bool,
    /// Serve Prometheus metrics (else only health).
    #[arg(long = "enable-metrics", default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_metrics: bool,
    /// AdminNetworkPolicy support.
    #[arg(long = "enable-anp", default_value_t = false, action = clap::ArgAction::Set)]
    pub enable_anp: bool,
    /// DNSNameResolver support.
    #[arg(long = "enable-dns-name-resolver", default_value_t = false, action = clap::ArgAction::Set)]
    pub enable_dns_name_resolver: bool,
    /// OVN IPsec.
    #[arg(long = "enable-ovn-ipsec", default_value_t = false, action = clap::ArgAction::Set)]
    pub enable_ovn_ipsec: bool,
    /// IPsec certificates from cert-manager.
    #[arg(long = "cert-manager-ipsec-cert", default_value_t = false, action = clap::ArgAction::Set)]
    pub cert_manager_ipsec_cert: bool,
    /// KubeVirt live-migration optimisation.
    #[arg(long = "enable-live-migration-optimize", default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_live_migration_optimize: bool,
    /// Namespace of the external gateway ConfigMap.
    #[arg(long = "external-gateway-config-ns", default_value = "kube-system")]
    pub external_gateway_config_ns: String,
    /// External gateway switch name.
    #[arg(long = "external-gateway-switch", default_value = "external")]
    pub external_gateway_switch: String,
    /// External network name.
    #[arg(long = "external-gateway-net", default_value = "external")]
    pub external_gateway_net: String,
    /// External gateway VLAN id.
    #[arg(long = "external-gateway-vlanid", default_value_t = 0)]
    pub external_gateway_vlanid: u16,
    /// Node-local DNS addresses.
    #[arg(long = "node-local-dns-ip", default_value = "")]
    pub node_local_dns_ip: String,
    /// Seconds between GC runs; 0 disables GC.
    #[arg(long = "gc-interval", default_value_t = 360)]
    pub gc_interval: u64,
    /// Seconds between inspections.
    #[arg(long = "inspect-interval", default_value_t = 20)]
    pub inspect_interval: u64,
    /// BFD minimum transmit interval (ms).
    #[arg(long = "bfd-min-tx", default_value_t = 100)]
    pub bfd_min_tx: u32,
    /// BFD minimum receive interval (ms).
    #[arg(long = "bfd-min-rx", default_value_t = 100)]
    pub bfd_min_rx: u32,
    /// BFD detection multiplier.
    #[arg(long = "detect-mult", default_value_t = 3)]
    pub detect_mult: u32,
    /// Image for vpc-egress-gateway pods.
    #[arg(long = "image", default_value = "")]
    pub image: String,
    /// FRR image for BGP/EVPN.
    #[arg(long = "frr-image", default_value = "quay.io/frrouting/frr:10.5.1")]
    pub frr_image: String,
    /// Log file permission (accepted; logs go to stderr).
    #[arg(long = "log-perm", default_value = "640")]
    pub log_perm: String,
    /// TLS minimum version for secure serving.
    #[arg(long = "tls-min-version", default_value = "")]
    pub tls_min_version: String,
    /// TLS maximum version for secure serving.
    #[arg(long = "tls-max-version", default_value = "")]
    pub tls_max_version: String,
    /// TLS cipher suites for secure serving.
    #[arg(long = "tls-cipher-suites", default_value = "")]
    pub tls_cipher_suites: String,
    /// Only manage attachment networks.
    #[arg(long = "non-primary-cni-mode", default_value_t = false, action = clap::ArgAction::Set)]
    pub non_primary_cni_mode: bool,
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
}

/// Parses Go durations as Kubernetes flags write them: `15s`, `1m30s`, `500ms`, `2h`.
pub fn go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}");
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(digits);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let secs = match unit {
            "ns" => value / 1e9,
            "us" | "µs" => value / 1e6,
            "ms" => value / 1e3,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(secs);
        rest = next;
    }
    Ok(total)
}

impl Config {
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
        let c = Config::try_parse_from(args).unwrap();
        assert_eq!(c.default_ls, "ovn-default");
        assert!(!c.log.logtostderr);
        assert_eq!(c.default_vlan_id, 100);
        assert_eq!(c.leader_elect_lease_duration, Duration::from_secs(30));
        assert_eq!(c.leader_elect_renew_deadline, Duration::from_secs(20));
        assert_eq!(c.leader_elect_retry_period, Duration::from_secs(6));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn gateways_default_to_the_first_address() {
        let c = Config::try_parse_from([
            "x",
            "--ovn-nb-addr=unix:/x",
            "--default-cidr=10.16.0.0/16,fd00:10:16::/112",
        ])
        .unwrap();
        assert_eq!(c.default_subnet_gateway(), "10.16.0.1,fd00:10:16::1");
        assert_eq!(c.join_gateway(), "100.64.0.1");
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(go_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(go_duration("10").is_err());
        assert!(go_duration("").is_err());
    }
}
