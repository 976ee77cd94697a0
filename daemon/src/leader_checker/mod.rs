//! kube-ovn-leader-checker: what upstream's ovn-central (and ovn-ic-db) container runs beside
//! its databases. Every `--probeInterval` seconds it labels its own pod with the roles this
//! member holds (`ovn-nb-leader`, `ovn-sb-leader`, `ovn-northd-leader`; `ovn-ic-nb-leader`,
//! `ovn-ic-sb-leader` with `--isICDBServer`), which is what the `ovn-nb`/`ovn-sb`/`ovn-northd`
//! Services select and how `kubectl ko` finds the leader's pod; compacts the databases when
//! asked; releases the `ovn_northd` lock when the SB leader sees no reachable northd endpoint;
//! and exits when another member claims leadership of a database this one leads for three
//! rounds (upstream's split-brain guard, so the kubelet restarts the member).
//!
//! Differences from upstream, each for a reason: the local member is asked through its unix
//! sockets in `/var/run/ovn` (the same servers upstream reaches at `--localAddress` over TCP,
//! without depending on which addresses they listen on); the raft-header backup
//! (`ovsdb-tool db-raft-header`, an `ovsdb-tool` command OVS 3.1 does not have, read only by
//! upstream's start-db.sh repair path, which this image's start-db.sh does not have) is not
//! made; the IC transit switches are kept by `start-ic-db.sh` (`kube-ovn-ic-controller
//! ts-sync`), not here.

pub mod checks;

use std::collections::BTreeMap;
use std::path::PathBuf;

use kube_ovn_common::goflags::{self, FlagTable, GoFlag, Unimplemented};
use kube_ovn_common::klog::LogFlags;

/// Upstream's flags (`pkg/ovn_leader_checker/ovn.go`) and klog's.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "kube-ovn-leader-checker",
    version,
    about = "Labels the ovn-central (or ovn-ic-db) pod with the database roles it holds"
)]
pub struct Config {
    /// kubeconfig file; empty means the in-cluster configuration (or `KUBECONFIG`).
    #[arg(long = "kubeconfig", default_value = "")]
    pub kubeconfig: String,
    /// Seconds between rounds.
    #[arg(long = "probeInterval", default_value_t = 5)]
    pub probe_interval: u64,
    /// Compact the NB and SB databases every round.
    #[arg(long = "enableCompact", action = clap::ArgAction::Set, default_value_t = true)]
    pub enable_compact: bool,
    /// This member serves the interconnection databases (ovn-ic-db) rather than NB/SB.
    #[arg(long = "isICDBServer", action = clap::ArgAction::Set, default_value_t = false)]
    pub is_ic_db_server: bool,
    /// This member's address (default `$POD_IP`): left out of `--remoteAddresses`.
    #[arg(long = "localAddress", default_value = "")]
    pub local_address: String,
    /// Every member's address, comma-separated; empty means a single standalone member.
    #[arg(long = "remoteAddresses", default_value = "")]
    pub remote_addresses: String,
    /// klog's flags.
    #[command(flatten)]
    pub log: LogFlags,
    /// Stray positional arguments (pflag ignores them).
    #[command(flatten)]
    pub upstream: Unimplemented<NotImplemented>,
}

/// Upstream leader-checker flags accepted without effect: none; the table exists so stray
/// positional arguments are collected and reported as pflag would ignore them.
#[derive(Debug, Clone)]
pub struct NotImplemented;

impl FlagTable for NotImplemented {
    const FLAGS: &'static [GoFlag] = &[];
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

    /// `--localAddress`, or `$POD_IP` when it is empty (upstream's default).
    pub fn local_address(&self) -> String {
        if self.local_address.is_empty() {
            std::env::var("POD_IP").unwrap_or_default()
        } else {
            self.local_address.clone()
        }
    }

    /// How this member runs, from the flags as given (upstream decides single-replica mode on
    /// the raw list: a one-member raft cluster names only itself and stays a raft member).
    pub fn mode(&self) -> Mode {
        if self.is_ic_db_server {
            return Mode::Ic;
        }
        if self
            .remote_addresses
            .split(',')
            .all(|a| a.trim().is_empty())
        {
            Mode::Single
        } else {
            Mode::Raft
        }
    }

    /// The other members' addresses: `--remoteAddresses` without empty entries and without
    /// this member's own address.
    pub fn peers(&self) -> Vec<String> {
        let local = self.local_address();
        self.remote_addresses
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty() && *a != local)
            .map(str::to_string)
            .collect()
    }
}

/// How the member's databases run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One standalone NB and SB (`NODE_IPS` empty): this pod leads everything it serves.
    Single,
    /// A raft member of NB and SB.
    Raft,
    /// An ovn-ic-db member (IC NB and IC SB).
    Ic,
}

/// A database the checker asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Database {
    /// OVN_Northbound.
    Nb,
    /// OVN_Southbound.
    Sb,
    /// OVN_IC_Northbound.
    IcNb,
    /// OVN_IC_Southbound.
    IcSb,
}

/// Where ovn-ctl puts the servers' sockets and pid files in the container.
pub const RUN_DIR: &str = "/var/run/ovn";

impl Database {
    /// The schema name.
    pub fn name(self) -> &'static str {
        match self {
            Database::Nb => "OVN_Northbound",
            Database::Sb => "OVN_Southbound",
            Database::IcNb => "OVN_IC_Northbound",
            Database::IcSb => "OVN_IC_Southbound",
        }
    }

    /// ovn-ctl's file stem of the server (`<stem>.sock`, `.ctl`, `.pid`).
    fn stem(self) -> &'static str {
        match self {
            Database::Nb => "ovnnb_db",
            Database::Sb => "ovnsb_db",
            Database::IcNb => "ovn_ic_nb_db",
            Database::IcSb => "ovn_ic_sb_db",
        }
    }

    /// The local server's client socket.
    pub fn socket(self) -> PathBuf {
        PathBuf::from(RUN_DIR).join(format!("{}.sock", self.stem()))
    }

    /// The local server's control socket.
    pub fn control(self) -> PathBuf {
        PathBuf::from(RUN_DIR).join(format!("{}.ctl", self.stem()))
    }

    /// The port clients reach the database on at every member (upstream's constants).
    pub fn client_port(self) -> u16 {
        match self {
            Database::Nb => 6641,
            Database::Sb => 6642,
            Database::IcNb => 6645,
            Database::IcSb => 6646,
        }
    }

    /// The pod label naming the member that leads this database.
    pub fn label(self) -> &'static str {
        match self {
            Database::Nb => "ovn-nb-leader",
            Database::Sb => "ovn-sb-leader",
            Database::IcNb => "ovn-ic-nb-leader",
            Database::IcSb => "ovn-ic-sb-leader",
        }
    }
}

/// The label northd's active instance gets.
pub const NORTHD_LABEL: &str = "ovn-northd-leader";

/// What one round saw of this member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    /// Databases this member leads.
    pub leads: Vec<Database>,
    /// Whether this member's ovn-northd holds the lock (is active).
    pub northd_active: bool,
}

/// The labels a member with `roles` carries in `mode` (every label of the mode, `"true"` or
/// `"false"`, as upstream writes them).
pub fn labels(mode: Mode, roles: &Roles) -> BTreeMap<String, String> {
    let flag = |b: bool| b.to_string();
    let mut out = BTreeMap::new();
    match mode {
        Mode::Single => {
            out.insert(Database::Nb.label().to_string(), flag(true));
            out.insert(Database::Sb.label().to_string(), flag(true));
            out.insert(NORTHD_LABEL.to_string(), flag(roles.northd_active));
        }
        Mode::Raft => {
            for db in [Database::Nb, Database::Sb] {
                out.insert(db.label().to_string(), flag(roles.leads.contains(&db)));
            }
            out.insert(NORTHD_LABEL.to_string(), flag(roles.northd_active));
        }
        Mode::Ic => {
            for db in [Database::IcNb, Database::IcSb] {
                out.insert(db.label().to_string(), flag(roles.leads.contains(&db)));
            }
        }
    }
    out
}

/// OVSDB remote of a database at a member's address (`tcp:[v6]:port` or `tcp:v4:port`).
pub fn remote_at(address: &str, db: Database) -> String {
    if address.contains(':') {
        format!("tcp:[{address}]:{}", db.client_port())
    } else {
        format!("tcp:{address}:{}", db.client_port())
    }
}

/// How many consecutive rounds another member must claim a database this member leads before
/// the checker gives up and exits (upstream's `maxDuplicateLeaderObservations`).
pub const DUPLICATE_ROUNDS: u32 = 3;

/// Consecutive observations of a second leader, per database.
#[derive(Debug, Default)]
pub struct Duplicates {
    seen: BTreeMap<Database, u32>,
}

impl Duplicates {
    /// Records one round for `db`: `other` is the address of another member claiming to lead
    /// it while this one does (`None`: nobody else, or this member does not lead). Returns the
    /// count so far when another leader was seen.
    pub fn observe(&mut self, db: Database, other: Option<&str>) -> Option<u32> {
        match other {
            None => {
                self.seen.remove(&db);
                None
            }
            Some(_) => {
                let n = self.seen.entry(db).or_insert(0);
                *n += 1;
                Some(*n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Config {
        Config::try_parse_go(std::iter::once("kube-ovn-leader-checker").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn the_mode_follows_the_flags_as_given() {
        assert_eq!(config(&[]).mode(), Mode::Single);
        assert_eq!(config(&["--remoteAddresses="]).mode(), Mode::Single);
        let one = config(&["--remoteAddresses=10.0.0.1", "--localAddress=10.0.0.1"]);
        assert_eq!(one.mode(), Mode::Raft, "a one-member raft cluster");
        assert!(one.peers().is_empty());
        let three = config(&[
            "--remoteAddresses=10.0.0.1,10.0.0.2,,10.0.0.3",
            "--localAddress=10.0.0.2",
        ]);
        assert_eq!(three.peers(), ["10.0.0.1", "10.0.0.3"]);
        assert_eq!(
            config(&["--isICDBServer=true", "--remoteAddresses=10.0.0.1"]).mode(),
            Mode::Ic
        );
    }

    #[test]
    fn labels_name_every_role_of_the_mode() {
        let roles = Roles {
            leads: vec![Database::Sb],
            northd_active: false,
        };
        let raft = labels(Mode::Raft, &roles);
        assert_eq!(raft["ovn-nb-leader"], "false");
        assert_eq!(raft["ovn-sb-leader"], "true");
        assert_eq!(raft["ovn-northd-leader"], "false");
        let single = labels(Mode::Single, &Roles::default());
        assert_eq!(single["ovn-nb-leader"], "true");
        assert_eq!(single["ovn-sb-leader"], "true");
        assert_eq!(single["ovn-northd-leader"], "false");
        let ic = labels(
            Mode::Ic,
            &Roles {
                leads: vec![Database::IcNb],
                northd_active: true,
            },
        );
        assert_eq!(ic.len(), 2);
        assert_eq!(ic["ovn-ic-nb-leader"], "true");
        assert_eq!(ic["ovn-ic-sb-leader"], "false");
    }

    #[test]
    fn a_second_leader_counts_only_in_consecutive_rounds() {
        let mut d = Duplicates::default();
        assert_eq!(d.observe(Database::Nb, Some("10.0.0.2")), Some(1));
        assert_eq!(d.observe(Database::Nb, Some("10.0.0.2")), Some(2));
        assert_eq!(d.observe(Database::Sb, Some("10.0.0.2")), Some(1));
        assert_eq!(d.observe(Database::Nb, None), None);
        assert_eq!(d.observe(Database::Nb, Some("10.0.0.3")), Some(1));
    }

    #[test]
    fn remotes_bracket_ipv6_only() {
        assert_eq!(remote_at("10.0.0.1", Database::Nb), "tcp:10.0.0.1:6641");
        assert_eq!(remote_at("fd00::1", Database::IcSb), "tcp:[fd00::1]:6646");
        assert_eq!(
            Database::IcNb.socket(),
            PathBuf::from("/var/run/ovn/ovn_ic_nb_db.sock")
        );
    }
}
