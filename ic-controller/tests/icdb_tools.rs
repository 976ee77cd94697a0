//! The IC DB side of the binary against real ovsdb-servers: `ts-sync` keeps `TS_NUM` transit
//! switches as upstream's leader checker names and addresses them (and writes nothing when
//! they are there), `clean-az` removes one availability zone's rows, found by name or by a
//! gateway's hostname, and leaves the others.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A standalone ovsdb-server on a unix socket in `dir`, stopped on drop.
struct Server {
    pidfile: PathBuf,
    remote: String,
}

impl Server {
    fn start(dir: &Path, name: &str, schema: &str) -> Server {
        let db = dir.join(format!("{name}.db"));
        let sock = dir.join(format!("{name}.sock"));
        let pidfile = dir.join(format!("{name}.pid"));
        assert!(Command::new("ovsdb-tool")
            .args(["create", db.to_str().unwrap(), schema])
            .status()
            .unwrap()
            .success());
        assert!(Command::new("ovsdb-server")
            .arg(format!("--remote=punix:{}", sock.display()))
            .arg("--detach")
            .arg("--no-chdir")
            .arg(format!("--pidfile={}", pidfile.display()))
            .arg(format!(
                "--log-file={}",
                dir.join(format!("{name}.log")).display()
            ))
            .arg(format!(
                "--unixctl={}",
                dir.join(format!("{name}.ctl")).display()
            ))
            .arg(&db)
            .status()
            .unwrap()
            .success());
        Server {
            pidfile,
            remote: format!("unix:{}", sock.display()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pidfile) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
    }
}

fn ctl(program: &str, db: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .arg(format!("--db={db}"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn bin(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kube-ovn-ic-controller"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("TS_NUM")
        .env_remove("POD_IPS")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn ts_sync_keeps_the_transit_switch_count() {
    let dir = tempfile::Builder::new()
        .prefix("kic")
        .tempdir_in("/tmp")
        .unwrap();
    let nb = Server::start(dir.path(), "icnb", "/usr/share/ovn/ovn-ic-nb.ovsschema");
    let db = format!("--ic-nb-db={}", nb.remote);
    let (ok, out) = bin(
        &["ts-sync", &db],
        &[("TS_NUM", "3"), ("POD_IPS", "10.0.0.5")],
    );
    assert!(ok, "{out}");
    assert!(out.contains("3 created, 0 removed"), "{out}");
    let list = |name: &str| {
        ctl(
            "ovn-ic-nbctl",
            &nb.remote,
            &["get", "Transit_Switch", name, "external_ids"],
        )
    };
    assert_eq!(
        list("ts"),
        r#"{subnet="169.254.100.0/24", vendor=kube-ovn}"#
    );
    assert_eq!(
        list("ts1"),
        r#"{subnet="169.254.101.0/24", vendor=kube-ovn}"#
    );
    assert_eq!(
        list("ts2"),
        r#"{subnet="169.254.102.0/24", vendor=kube-ovn}"#
    );
    // Converged: nothing to write.
    let (ok, out) = bin(&["ts-sync", &db, "--ts-num=3"], &[]);
    assert!(ok && out.contains("0 created, 0 removed"), "{out}");
    // Fewer: the numbered ones beyond go, `ts` stays.
    let (ok, out) = bin(&["ts-sync", &db, "--ts-num=1"], &[]);
    assert!(ok && out.contains("0 created, 2 removed"), "{out}");
    let names = ctl(
        "ovn-ic-nbctl",
        &nb.remote,
        &["--bare", "--columns=name", "list", "Transit_Switch"],
    );
    assert_eq!(names, "ts");
    // Dual stack from POD_IPS.
    let (ok, out) = bin(
        &["ts-sync", &db, "--ts-num=2"],
        &[("POD_IPS", "10.0.0.5,fd00::5")],
    );
    assert!(ok, "{out}");
    assert_eq!(
        list("ts1"),
        r#"{subnet="169.254.101.0/24,fe80:a9fe:65::/112", vendor=kube-ovn}"#
    );
    // Bad input: a clear error, no panic.
    let (ok, out) = bin(&["ts-sync", &db], &[]);
    assert!(!ok && out.contains("TS_NUM"), "{out}");
}

#[test]
fn clean_az_removes_one_zone() {
    let dir = tempfile::Builder::new()
        .prefix("kic")
        .tempdir_in("/tmp")
        .unwrap();
    let sb = Server::start(dir.path(), "icsb", "/usr/share/ovn/ovn-ic-sb.ovsschema");
    for (az, host, key) in [("az8", "w8", "8"), ("az9", "w9", "9")] {
        let (az_name, gw_name, gw_host) = (
            format!("name={az}"),
            format!("name=gw-{az}"),
            format!("hostname={host}"),
        );
        let (port, tnl) = (format!("logical_port=ts-{az}"), format!("tunnel_key={key}"));
        let gateway = format!("gateway=gw-{az}");
        let encap_gw = format!("gateway_name=gw-{az}");
        let encap_ip = format!("ip=172.18.0.{key}");
        ctl(
            "ovn-ic-sbctl",
            &sb.remote,
            &[
                "--id=@az",
                "create",
                "Availability_Zone",
                &az_name,
                "--",
                "--id=@e",
                "create",
                "Encap",
                "type=geneve",
                &encap_ip,
                &encap_gw,
                "--",
                "create",
                "Gateway",
                &gw_name,
                &gw_host,
                "availability_zone=@az",
                "encaps=@e",
                "--",
                "create",
                "Route",
                "availability_zone=@az",
                "ip_prefix=10.9.0.1/16",
                "nexthop=169.254.100.9",
                "origin=connected",
                "transit_switch=ts",
                "--",
                "create",
                "Port_Binding",
                "availability_zone=@az",
                &port,
                "transit_switch=ts",
                &tnl,
                &gateway,
                "address=\"00:00:00:00:00:09 169.254.100.9/24\"",
            ],
        );
    }
    let count = |table: &str| {
        ctl(
            "ovn-ic-sbctl",
            &sb.remote,
            &["--bare", "--columns=_uuid", "list", table],
        )
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
    };
    let db = format!("--ic-sb-db={}", sb.remote);
    let (ok, out) = bin(&["clean-az", &db, "node", "w9"], &[]);
    assert!(ok, "{out}");
    for t in ["Availability_Zone", "Gateway", "Route", "Port_Binding"] {
        assert_eq!(count(t), 1, "{t}");
    }
    let left = ctl(
        "ovn-ic-sbctl",
        &sb.remote,
        &["--bare", "--columns=name", "list", "Availability_Zone"],
    );
    assert_eq!(left, "az8");
    let (ok, out) = bin(&["clean-az", &db, "az", "az8"], &[]);
    assert!(ok, "{out}");
    for t in ["Availability_Zone", "Gateway", "Route", "Port_Binding"] {
        assert_eq!(count(t), 0, "{t}");
    }
    // Unknown zone and bad arguments: errors, nothing removed, no panic.
    let (ok, out) = bin(&["clean-az", &db, "az", "nope"], &[]);
    assert!(!ok && out.contains("not found"), "{out}");
    let (ok, out) = bin(&["clean-az", &db, "zone", "x"], &[]);
    assert!(!ok && out.contains("az or node"), "{out}");
}
