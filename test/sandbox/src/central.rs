//! The central OVN databases and ovn-northd, as the `ovn-central` pods run them: NB and SB
//! ovsdb-servers (standalone, or three-member raft clusters), ovn-northd between them (one per
//! raft member, the holder of the SB lock active), and optionally the interconnection
//! databases with `ovn-ic`. NB and SB listen on unix sockets in the run directory only, so any number of sandboxes coexist and nothing needs a free port; the IC
//! databases, which the ic-controllers of several sandboxes reach by host and port, also listen
//! on TCP (see [`start`]).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::sys::{run, run_command, wait_for};

const NB_SCHEMA: &str = "/usr/share/ovn/ovn-nb.ovsschema";
const SB_SCHEMA: &str = "/usr/share/ovn/ovn-sb.ovsschema";
const IC_NB_SCHEMA: &str = "/usr/share/ovn/ovn-ic-nb.ovsschema";
const IC_SB_SCHEMA: &str = "/usr/share/ovn/ovn-ic-sb.ovsschema";
/// Members of each raft database.
pub const RAFT_MEMBERS: usize = 3;

/// The OVSDB remotes of the central databases, as OVN's `--db` options and
/// `external_ids:ovn-remote` take them (comma-separated lists for raft).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CentralRemotes {
    /// OVN_Northbound.
    pub nb: String,
    /// OVN_Southbound.
    pub sb: String,
    /// OVN_IC_Northbound, when interconnection was requested.
    pub ic_nb: Option<String>,
    /// OVN_IC_Southbound, when interconnection was requested.
    pub ic_sb: Option<String>,
    /// The TCP port the IC NB also listens on at each of `ic_db_hosts` (what `ovn-ic-config`'s
    /// `ic-nb-port` points at), when interconnection was requested.
    #[serde(default)]
    pub ic_nb_port: Option<u16>,
    /// The same for the IC SB (`ic-sb-port`).
    #[serde(default)]
    pub ic_sb_port: Option<u16>,
    /// The addresses the IC databases serve clients on (`ic-db-host`, comma-joined): 127.0.0.1,
    /// or one loopback address per raft member.
    #[serde(default)]
    pub ic_db_hosts: Vec<String>,
}

/// The ports the IC databases serve clients on in a raft sandbox, as the ic-db pods do
/// (`ovn-ic-config`'s default `ic-nb-port`/`ic-sb-port`).
pub const IC_NB_PORT: u16 = 6645;
/// See [`IC_NB_PORT`].
pub const IC_SB_PORT: u16 = 6646;

/// Starts the central databases and northd in `dir` and waits until northd has processed the
/// (empty) northbound database into the southbound one. With `ic`, the interconnection
/// databases run too, and `ovn-ic` with them when `ic_daemon` (without, kube-ovn-ic-controller
/// starts it, as upstream's does). Standalone IC databases also listen on ephemeral TCP ports
/// of 127.0.0.1; with `raft` they are three-member clusters like NB and SB, member `i` serving
/// clients on `ic_hosts[i]` at upstream's ports 6645/6646, as three ic-db pods do (the caller
/// holds those loopback addresses for the sandbox's life).
pub fn start(
    dir: &Path,
    raft: bool,
    ic: bool,
    ic_daemon: bool,
    ic_hosts: &[Ipv4Addr],
) -> Result<CentralRemotes> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let nb = database(dir, "nb", NB_SCHEMA, "OVN_Northbound", raft)?;
    let sb = database(dir, "sb", SB_SCHEMA, "OVN_Southbound", raft)?;
    start_northd(dir, "northd", &nb, &sb)?;
    if raft {
        // Every ovn-central member runs an ovn-northd; the one holding the SB's `ovn_northd`
        // lock is active, the others stand by.
        for m in 2..=RAFT_MEMBERS {
            start_northd(dir, &northd_name(m), &nb, &sb)?;
        }
    }
    let mut remotes = CentralRemotes {
        nb,
        sb,
        ..CentralRemotes::default()
    };
    if ic {
        let ic_nb = database(dir, "ic-nb", IC_NB_SCHEMA, "OVN_IC_Northbound", raft)?;
        let ic_sb = database(dir, "ic-sb", IC_SB_SCHEMA, "OVN_IC_Southbound", raft)?;
        if raft {
            if ic_hosts.len() != RAFT_MEMBERS {
                return Err(Error::Invalid(format!(
                    "raft IC databases need {RAFT_MEMBERS} loopback addresses, got {}",
                    ic_hosts.len()
                )));
            }
            for (i, host) in ic_hosts.iter().enumerate() {
                listen(dir, &format!("ic-nb{}", i + 1), *host, IC_NB_PORT)?;
                listen(dir, &format!("ic-sb{}", i + 1), *host, IC_SB_PORT)?;
            }
            remotes.ic_nb_port = Some(IC_NB_PORT);
            remotes.ic_sb_port = Some(IC_SB_PORT);
            remotes.ic_db_hosts = ic_hosts.iter().map(Ipv4Addr::to_string).collect();
        } else {
            let localhost = Ipv4Addr::LOCALHOST;
            remotes.ic_nb_port = Some(listen(dir, "ic-nb", localhost, 0)?);
            remotes.ic_sb_port = Some(listen(dir, "ic-sb", localhost, 0)?);
            remotes.ic_db_hosts = vec![localhost.to_string()];
        }
        if ic_daemon {
            let mut ovn_ic = Command::new("ovn-ic");
            ovn_ic
                .env("OVN_RUNDIR", dir)
                .arg(format!("--ovnnb-db={}", remotes.nb))
                .arg(format!("--ovnsb-db={}", remotes.sb))
                .arg(format!("--ic-nb-db={ic_nb}"))
                .arg(format!("--ic-sb-db={ic_sb}"));
            daemon_args(&mut ovn_ic, dir, "ovn-ic");
            run_command(&mut ovn_ic)?;
        }
        remotes.ic_nb = Some(ic_nb);
        remotes.ic_sb = Some(ic_sb);
    }
    // `--wait=sb` returns once northd has copied the NB sequence number into the SB: the
    // whole chain NB -> northd -> SB is alive.
    run(
        "ovn-nbctl",
        [
            format!("--db={}", remotes.nb),
            "--timeout=60".into(),
            "--wait=sb".into(),
            "sync".into(),
        ],
    )?;
    Ok(remotes)
}

/// Makes the server `name` (a standalone database or a raft member) also listen on TCP at
/// `addr:port` and returns the port it listens on. With port 0 the kernel picks it while the
/// server holds it (so no other process can take it in between) and the server logs it.
fn listen(dir: &Path, name: &str, addr: Ipv4Addr, port: u16) -> Result<u16> {
    let ctl = path(&dir.join(format!("{name}.ctl")));
    run(
        "ovs-appctl",
        [
            "-t".to_string(),
            ctl,
            "ovsdb-server/add-remote".into(),
            format!("ptcp:{port}:{addr}"),
        ],
    )?;
    let log = dir.join(format!("{name}.log"));
    let said = format!("{addr}: listening on port ");
    let mut got = None;
    let found = wait_for(Duration::from_secs(10), || {
        if port != 0 {
            // A fixed port is not logged: the server listens once it accepts a connection.
            let to = std::net::SocketAddr::from((addr, port));
            got = std::net::TcpStream::connect_timeout(&to, Duration::from_millis(200))
                .ok()
                .map(|_| port);
            return got.is_some();
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        got = text
            .lines()
            .rev()
            .filter_map(|l| l.split(&said).nth(1))
            .find_map(|p| p.trim().parse::<u16>().ok());
        got.is_some()
    });
    match got {
        Some(p) if found => Ok(p),
        _ => Err(Error::Timeout {
            what: format!(
                "{name} listening on TCP {addr}:{port} (see {})",
                log.display()
            ),
            after: Duration::from_secs(10),
        }),
    }
}

/// The name (pidfile, log and control socket stem) of raft member `member`'s ovn-northd:
/// `northd` for the first member (and a standalone sandbox's only one), `northd<m>` for the
/// others.
pub fn northd_name(member: usize) -> String {
    if member <= 1 {
        "northd".to_string()
    } else {
        format!("northd{member}")
    }
}

/// Starts ovn-northd `name` between `nb` and `sb` (pidfile, log and control socket in `dir`).
fn start_northd(dir: &Path, name: &str, nb: &str, sb: &str) -> Result<()> {
    let mut northd = Command::new("ovn-northd");
    northd
        .env("OVN_RUNDIR", dir)
        .arg(format!("--ovnnb-db={nb}"))
        .arg(format!("--ovnsb-db={sb}"));
    daemon_args(&mut northd, dir, name);
    run_command(&mut northd).map(|_| ())
}

/// Kills ovn-northd with SIGKILL (no chance to clean up, as a crash; a pid already gone is
/// fine), keeps it down for `down`, and starts it again with the same arguments; returns once
/// the new one runs.
pub fn restart_northd(
    run_dir: &Path,
    remotes: &CentralRemotes,
    down: std::time::Duration,
) -> Result<()> {
    let dir = self::dir(run_dir);
    crate::sys::kill_pidfile(&dir.join("northd.pid"))?;
    std::thread::sleep(down);
    start_northd(&dir, "northd", &remotes.nb, &remotes.sb)
}

/// `--detach` makes every OVS/OVN daemon return only once it is ready to serve, which is the
/// readiness signal the sandbox relies on; the pidfile is how teardown finds it later.
pub fn daemon_args(cmd: &mut Command, dir: &Path, name: &str) {
    cmd.arg("--detach")
        .arg("--no-chdir")
        .arg(format!(
            "--pidfile={}",
            dir.join(format!("{name}.pid")).display()
        ))
        .arg(format!(
            "--log-file={}",
            dir.join(format!("{name}.log")).display()
        ))
        .arg(format!(
            "--unixctl={}",
            dir.join(format!("{name}.ctl")).display()
        ));
}

/// One database: a standalone server on `<name>.sock`, or a raft cluster whose members serve
/// `<name>1.sock`… Returns the remote list clients use.
fn database(dir: &Path, name: &str, schema: &str, db: &str, raft: bool) -> Result<String> {
    if !raft {
        let file = dir.join(format!("{name}.db"));
        run(
            "ovsdb-tool",
            ["create".to_string(), path(&file), schema.to_string()],
        )?;
        server(dir, name)?;
        return Ok(format!(
            "unix:{}",
            dir.join(format!("{name}.sock")).display()
        ));
    }
    let member = |i: usize| format!("{name}{i}");
    let raft_addr =
        |i: usize| format!("unix:{}", dir.join(format!("{}.raft", member(i))).display());
    for i in 1..=RAFT_MEMBERS {
        let file = path(&dir.join(format!("{}.db", member(i))));
        if i == 1 {
            run(
                "ovsdb-tool",
                ["create-cluster", &file, schema, &raft_addr(1)],
            )?;
        } else {
            run(
                "ovsdb-tool",
                ["join-cluster", &file, db, &raft_addr(i), &raft_addr(1)],
            )?;
        }
    }
    for i in 1..=RAFT_MEMBERS {
        server(dir, &member(i))?;
    }
    // join-cluster only asks to join; a cluster whose members have not all joined loses its
    // majority as soon as one of them stops.
    for i in 1..=RAFT_MEMBERS {
        let ctl = path(&dir.join(format!("{}.ctl", member(i))));
        let joined = wait_for(Duration::from_secs(30), || {
            run("ovs-appctl", ["-t", &ctl, "cluster/status", db])
                .map(|s| s.contains("Status: cluster member"))
                .unwrap_or(false)
        });
        if !joined {
            return Err(Error::Timeout {
                what: format!("raft member {} of {db}", member(i)),
                after: Duration::from_secs(30),
            });
        }
    }
    Ok((1..=RAFT_MEMBERS)
        .map(|i| format!("unix:{}", dir.join(format!("{}.sock", member(i))).display()))
        .collect::<Vec<_>>()
        .join(","))
}

/// Starts the ovsdb-server of database `name` (`nb`, or a raft member such as `nb2`) on its
/// existing database file, socket and pidfile in the run directory: how a crashed server is
/// brought back exactly as the sandbox started it.
pub fn restart_server(run_dir: &Path, name: &str) -> Result<()> {
    server(&dir(run_dir), name)
}

/// The NB raft member (`nb1`…) that is the cluster's leader now, if one is.
pub fn nb_leader(run_dir: &Path) -> Option<String> {
    let dir = dir(run_dir);
    (1..=RAFT_MEMBERS).map(|i| format!("nb{i}")).find(|m| {
        let ctl = path(&dir.join(format!("{m}.ctl")));
        run(
            "ovs-appctl",
            ["-t", &ctl, "cluster/status", "OVN_Northbound"],
        )
        .is_ok_and(|s| s.contains("Role: leader"))
    })
}

fn server(dir: &Path, name: &str) -> Result<()> {
    let mut cmd = Command::new("ovsdb-server");
    cmd.arg(format!(
        "--remote=punix:{}",
        dir.join(format!("{name}.sock")).display()
    ));
    daemon_args(&mut cmd, dir, name);
    cmd.arg(dir.join(format!("{name}.db")));
    run_command(&mut cmd).map(|_| ())
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// The NB raft port of an ovn-central member (upstream's `NB_CLUSTER_PORT`).
pub const NB_RAFT_PORT: u16 = 6643;

/// The raft sockets of the NB members in a raft sandbox laid out in `run_dir`.
pub fn nb_raft_sockets(run_dir: &Path) -> Vec<PathBuf> {
    (1..=RAFT_MEMBERS)
        .map(|i| dir(run_dir).join(format!("nb{i}.raft")))
        .collect()
}

/// Where the central components keep their files inside a run directory.
pub fn dir(run_dir: &Path) -> PathBuf {
    run_dir.join("central")
}
