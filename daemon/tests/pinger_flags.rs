//! Upstream parity of kube-ovn-pinger's command line, against `common/upstream-flags/pinger.txt`
//! (upstream's `pkg/pinger/config.go` at the commit the file names) and klog's flags: every
//! upstream flag parses with a value of its type, implemented flags default to upstream's
//! defaults, and the arguments upstream's install.sh gives the DaemonSet (and `kubectl ko
//! diagnose` gives a job) parse without leftovers.

#[path = "../../common/upstream-flags/lists.rs"]
mod lists;

use clap::CommandFactory;
use kube_ovn_common::goflags::{go_style, FlagTable};
use kube_ovn_daemon::pinger::{Config, NotImplemented};

fn upstream() -> Vec<lists::UpstreamFlag> {
    let mut f = lists::flags("pinger.txt");
    f.extend(lists::flags("klog.txt"));
    f
}

fn parse(args: &[String]) -> Result<Config, clap::Error> {
    Config::try_parse_go(std::iter::once("kube-ovn-pinger".to_string()).chain(args.iter().cloned()))
}

#[test]
fn every_upstream_flag_parses() {
    let flags = upstream();
    assert!(flags.len() >= 27 + 15, "lists shrank: {}", flags.len());
    lists::assert_every_flag_parses(&flags, NotImplemented::FLAGS, |args| {
        parse(args)
            .map(|c| lists::Parsed {
                positional: c.upstream.positional.clone(),
                warnings: c.upstream.warnings(),
                v: c.log.v,
            })
            .map_err(|e| e.to_string())
    });
    assert!(parse(&["--interval=soon".to_string()]).is_err());
    assert!(parse(&["--enable-metrics=2".to_string()]).is_err());
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
fn install_sh_and_diagnose_arguments_parse() {
    for args in [
        // upstream's install.sh DaemonSet, with its variables' defaults.
        vec![
            "--external-address=1.1.1.1",
            "--external-dns=kube-ovn.io.",
            "--logtostderr=false",
            "--alsologtostderr=true",
            "--log_file=/var/log/kube-ovn/kube-ovn-pinger.log",
            "--log_file_max_size=200",
            "--enable-metrics=true",
        ],
        // `kubectl ko diagnose subnet`.
        vec![
            "--mode=job",
            "--tcp-conn-check-port=8100",
            "--udp-conn-check-port=8101",
            "--external-address=1.1.1.1,2606:4700:4700::1111",
            "--target-ip-ports=tcp-172.18.0.2-32001",
        ],
    ] {
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let c = parse(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(c.upstream.positional.is_empty());
        assert!(
            c.upstream.warnings().is_empty(),
            "{:?}",
            c.upstream.warnings()
        );
    }
}

#[test]
fn readme_lists_the_not_implemented_flags() {
    lists::assert_readme_has(&lists::readme_block(
        "kube-ovn-pinger",
        NotImplemented::FLAGS,
    ));
}
