//! Upstream parity of kube-ovn-controller's command line, against the lists checked in under
//! `common/upstream-flags/` (taken from upstream Kube-OVN; the commit is in each file): every
//! upstream flag parses with a value of its type (both `--f=v` and `--f v`), implemented flags
//! default to upstream's defaults, the exact arguments of upstream's charts and install.sh
//! parse without leftovers and validate, and the README lists the not-implemented ones.

#[path = "../../common/upstream-flags/lists.rs"]
mod lists;

use clap::CommandFactory;
use kube_ovn_common::goflags::{go_style, FlagTable};
use kube_ovn_controller::config::{Config, NotImplemented};

fn upstream() -> Vec<lists::UpstreamFlag> {
    let mut f = lists::flags("controller.txt");
    f.extend(lists::flags("klog.txt"));
    f
}

fn parse(args: &[String]) -> Result<Config, clap::Error> {
    Config::try_parse_go(
        std::iter::once("kube-ovn-controller".to_string()).chain(args.iter().cloned()),
    )
}

#[test]
fn every_upstream_flag_parses() {
    let flags = upstream();
    assert!(flags.len() >= 77 + 15, "lists shrank: {}", flags.len());
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
    assert!(parse(&["--enable-lb=maybe".to_string()]).is_err());
    assert!(parse(&["--gc-interval=soon".to_string()]).is_err());
    assert!(parse(&["--keep-vm-ip=2".to_string()]).is_err());
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
    let sections: Vec<_> = lists::invocations()
        .into_iter()
        .filter(|i| i.label.starts_with("controller "))
        .collect();
    assert_eq!(sections.len(), 3, "chart, chart-v2 and install.sh");
    for inv in sections {
        let argv = lists::binary_argv(&inv);
        let c = Config::try_parse_go(&argv)
            .unwrap_or_else(|e| panic!("{} ({}): {e}", inv.label, inv.source));
        assert!(
            c.upstream.positional.is_empty(),
            "{}: {:?}",
            inv.label,
            c.upstream.positional
        );
        c.validate()
            .unwrap_or_else(|e| panic!("{}: {e}", inv.label));
        assert_eq!(c.default_cidr, "10.16.0.0/16", "{}", inv.label);
        assert_eq!(c.leader_elect_lease_duration.as_secs(), 30);
        // What the controller reads from the environment is set by every one of them.
        for var in ["POD_NAME", "POD_NAMESPACE"] {
            assert!(
                inv.env.iter().any(|(k, _)| k == var),
                "{}: no {var}",
                inv.label
            );
        }
    }
}

#[test]
fn readme_lists_the_not_implemented_flags() {
    lists::assert_readme_has(&lists::readme_block(
        "kube-ovn-controller",
        NotImplemented::FLAGS,
    ));
}
