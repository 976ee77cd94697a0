//! Upstream parity of kube-ovn-daemon's command line, against the lists checked in under
//! `common/upstream-flags/` (taken from upstream Kube-OVN; the commit is in each file): every
//! upstream flag parses with a value of its type (both `--f=v` and `--f v`), implemented flags
//! default to upstream's defaults, the exact arguments of upstream's charts and install.sh
//! parse without leftovers and validate, and the README lists the not-implemented ones.

#[path = "../../common/upstream-flags/lists.rs"]
mod lists;

use clap::CommandFactory;
use kube_ovn_common::goflags::{go_style, FlagTable};
use kube_ovn_daemon::config::{Config, NotImplemented};

fn upstream() -> Vec<lists::UpstreamFlag> {
    let mut f = lists::flags("daemon.txt");
    f.extend(lists::flags("klog.txt"));
    f
}

fn parse(args: &[String]) -> Result<Config, clap::Error> {
    Config::try_parse_go(std::iter::once("kube-ovn-daemon".to_string()).chain(args.iter().cloned()))
}

#[test]
fn every_upstream_flag_parses() {
    let flags = upstream();
    assert!(flags.len() >= 44 + 15, "lists shrank: {}", flags.len());
    lists::assert_every_flag_parses(&flags, NotImplemented::FLAGS, |args| {
        parse(args)
            .map(|c| lists::Parsed {
                positional: c.upstream.positional.clone(),
                warnings: c.upstream.warnings(),
                v: c.log.v,
            })
            .map_err(|e| e.to_string())
    });
    // A value of the wrong type is refused, as pflag refuses it.
    assert!(parse(&["--encap-checksum=maybe".to_string()]).is_err());
    assert!(parse(&["--mtu=big".to_string()]).is_err());
    assert!(parse(&["--enable-tproxy=2".to_string()]).is_err());
    assert!(parse(&["--no-such-flag".to_string()]).is_err());
}

#[test]
fn defaults_equal_upstream() {
    lists::assert_defaults_equal(
        &go_style(Config::command()),
        &upstream(),
        NotImplemented::FLAGS,
    );
}

#[test]
fn upstream_chart_and_install_sh_arguments_parse() {
    let all = lists::invocations();
    let daemon: Vec<_> = all
        .iter()
        .filter(|i| i.label.starts_with("daemon "))
        .collect();
    assert_eq!(daemon.len(), 3, "chart, chart-v2 and install.sh");
    for inv in daemon {
        let argv = lists::binary_argv(inv);
        let c = Config::try_parse_go(&argv)
            .unwrap_or_else(|e| panic!("{} ({}): {e}", inv.label, inv.source));
        assert!(
            c.upstream.positional.is_empty(),
            "{}: {:?}",
            inv.label,
            c.upstream.positional
        );
        assert!(!c.install_cni_config);
        assert_eq!(c.ovs_remote(), "unix:/run/openvswitch/db.sock");
        assert_eq!(c.pod_mtu(1500, false), Ok(1400), "{}", inv.label);
        // What the daemon reads from the environment is set by every one of them.
        for var in ["NODE_NAME", "POD_IP"] {
            assert!(
                inv.env.iter().any(|(k, _)| k == var),
                "{}: no {var}",
                inv.label
            );
        }
    }
    let install: Vec<_> = all
        .iter()
        .filter(|i| i.label.starts_with("install-cni "))
        .collect();
    assert_eq!(install.len(), 3);
    for inv in install {
        let c = Config::try_parse_go(lists::binary_argv(inv))
            .unwrap_or_else(|e| panic!("{} ({}): {e}", inv.label, inv.source));
        assert!(c.install_cni_config && c.upstream.positional.is_empty());
        assert_eq!(
            c.cni_conf_dir.join(&c.cni_conf_name),
            std::path::PathBuf::from("/etc/cni/net.d/01-kube-ovn.conflist"),
            "{}",
            inv.label
        );
        assert_eq!(
            c.cni_conf_file,
            std::path::PathBuf::from("/kube-ovn/01-kube-ovn.conflist")
        );
    }
}

#[test]
fn readme_lists_the_not_implemented_flags() {
    lists::assert_readme_has(&lists::readme_block(
        "kube-ovn-daemon",
        NotImplemented::FLAGS,
    ));
}
