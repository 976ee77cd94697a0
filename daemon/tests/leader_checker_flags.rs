//! Upstream parity of kube-ovn-leader-checker's command line, against
//! `common/upstream-flags/leader-checker.txt` (upstream's `pkg/ovn_leader_checker/ovn.go` at the
//! commit the file names) and klog's flags: every upstream flag parses with a value of its type,
//! defaults equal upstream's, and the arguments upstream's start-db.sh and start-ic-db.sh give
//! it parse without leftovers.

#[path = "../../common/upstream-flags/lists.rs"]
mod lists;

use clap::CommandFactory;
use kube_ovn_common::goflags::{go_style, FlagTable};
use kube_ovn_daemon::leader_checker::{Config, Mode, NotImplemented};

fn upstream() -> Vec<lists::UpstreamFlag> {
    let mut f = lists::flags("leader-checker.txt");
    f.extend(lists::flags("klog.txt"));
    f
}

fn parse(args: &[String]) -> Result<Config, clap::Error> {
    Config::try_parse_go(
        std::iter::once("kube-ovn-leader-checker".to_string()).chain(args.iter().cloned()),
    )
}

#[test]
fn every_upstream_flag_parses() {
    let flags = upstream();
    assert!(flags.len() >= 6 + 15, "lists shrank: {}", flags.len());
    assert!(NotImplemented::FLAGS.is_empty());
    lists::assert_every_flag_parses(&flags, NotImplemented::FLAGS, |args| {
        parse(args)
            .map(|c| lists::Parsed {
                positional: c.upstream.positional.clone(),
                warnings: c.upstream.warnings(),
                v: c.log.v,
            })
            .map_err(|e| e.to_string())
    });
    assert!(parse(&["--probeInterval=soon".to_string()]).is_err());
    assert!(parse(&["--enableCompact=2".to_string()]).is_err());
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
fn start_scripts_arguments_parse() {
    for (args, mode) in [
        // upstream's start-db.sh, raft (NODE_IPS of three masters).
        (
            vec![
                "--probeInterval=5",
                "--enableCompact=true",
                "--remoteAddresses=172.18.0.2,172.18.0.3,172.18.0.4",
            ],
            Mode::Raft,
        ),
        // upstream's start-db.sh, one replica (NODE_IPS empty).
        (
            vec![
                "--probeInterval=5",
                "--enableCompact=false",
                "--remoteAddresses=",
            ],
            Mode::Single,
        ),
        // upstream's start-ic-db.sh.
        (
            vec![
                "--probeInterval=5",
                "--remoteAddresses=172.18.0.2",
                "--isICDBServer=true",
            ],
            Mode::Ic,
        ),
    ] {
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let c = parse(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(c.upstream.positional.is_empty());
        assert_eq!(c.mode(), mode, "{args:?}");
    }
}
