//! Command-line flags, with upstream kube-ovn-ic-controller's names, defaults and Go value
//! syntax (`pkg/ovn_ic_controller/config.go`), so the same Deployment arguments work when only
//! the image is swapped. klog's flags are accepted as well.

use clap::Parser;
use kube_ovn_common::goflags::{self, flag, FlagTable, GoFlag, Kind, Unimplemented};
use kube_ovn_common::klog::LogFlags;

/// kube-ovn-ic-controller configuration.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kube-ovn-ic-controller",
    version,
    about = "Kube-OVN interconnection controller: ovn-ic-config in, ovn-ic gateways and routes out"
)]
pub struct Config {
    /// Kubeconfig file; in-cluster configuration when empty.
    #[arg(long = "kubeconfig", default_value = "")]
    pub kubeconfig: String,
    /// OVN NB address list (`tcp:IP:6641,…`, `ssl:…`, `unix:…`).
    #[arg(long = "ovn-nb-addr", default_value = "")]
    pub ovn_nb_addr: String,
    /// OVN SB address list: where gateway nodes' chassis are found, and ovn-ic's SB.
    #[arg(long = "ovn-sb-addr", default_value = "")]
    pub ovn_sb_addr: String,
    /// Seconds an OVN request may take.
    #[arg(long = "ovn-timeout", default_value_t = 60)]
    pub ovn_timeout: u64,
    /// Seconds an OVSDB connection attempt may take.
    #[arg(long = "ovsdb-con-timeout", default_value_t = 3)]
    pub ovsdb_con_timeout: u64,
    /// Seconds without traffic before an OVSDB connection is probed.
    #[arg(long = "ovsdb-inactivity-timeout", default_value_t = 10)]
    pub ovsdb_inactivity_timeout: u64,
    /// Name of the default VPC's logical router, where transit switch ports attach.
    #[arg(long = "cluster-router", default_value = "ovn-cluster")]
    pub cluster_router: String,
    /// Name of the join subnet, never advertised.
    #[arg(long = "node-switch", default_value = "join")]
    pub node_switch: String,
    /// CIDR of the join subnet.
    #[arg(long = "node-switch-cidr", default_value = "100.64.0.0/16")]
    pub node_switch_cidr: String,

    /// klog's flags (`--v`, `--logtostderr`, …), shared with the other binaries.
    #[command(flatten)]
    pub log: LogFlags,

    /// Upstream flags accepted but not implemented, and stray positional arguments.
    #[command(flatten)]
    pub upstream: Unimplemented<NotImplemented>,
}

/// Upstream kube-ovn-ic-controller flags accepted without acting on them.
#[derive(Debug, Clone)]
pub struct NotImplemented;

impl FlagTable for NotImplemented {
    #[rustfmt::skip]
    const FLAGS: &'static [GoFlag] = &[
        flag("ovsdb-con-maxretry", Kind::Int, "60", "connection retries before exiting; here retries never stop"),
        flag("log-perm", Kind::Str, "640", "log file mode; no log file is written here"),
    ];
}

impl Config {
    /// Parses the process's arguments as upstream's pflag would.
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

    /// Start-up warnings: unimplemented upstream flags set to non-default values, klog options
    /// the logging does not follow.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = self.upstream.warnings();
        w.extend(self.log.warnings());
        w
    }

    /// Rejects a configuration the controller cannot run with.
    pub fn validate(&self) -> Result<(), String> {
        if self.ovn_nb_addr.trim().is_empty() {
            return Err("--ovn-nb-addr is required".into());
        }
        if self.ovn_sb_addr.trim().is_empty() {
            return Err("--ovn-sb-addr is required".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_arguments_parse() {
        // What start-ic-controller.sh passes, plus klog's and the unimplemented ones.
        let c = Config::try_parse_go([
            "kube-ovn-ic-controller",
            "--ovn-nb-addr=tcp:[10.0.0.1]:6641",
            "--ovn-sb-addr=tcp:[10.0.0.1]:6642",
            "--log_file=/var/log/kube-ovn/kube-ovn-ic-controller.log",
            "--log_file_max_size=200",
            "--logtostderr=false",
            "--alsologtostderr=true",
            "--ovsdb-con-maxretry=60",
            "--log-perm=640",
            "-v=3",
        ])
        .unwrap();
        assert_eq!(c.ovn_nb_addr, "tcp:[10.0.0.1]:6641");
        assert_eq!(c.cluster_router, "ovn-cluster");
        assert_eq!(c.node_switch, "join");
        assert!(c.upstream.warnings().is_empty());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn missing_addresses_are_errors() {
        let c = Config::try_parse_go(["kube-ovn-ic-controller"]).unwrap();
        assert!(c.validate().unwrap_err().contains("--ovn-nb-addr"));
    }
}
