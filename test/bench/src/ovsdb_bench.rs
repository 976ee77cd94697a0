//! `ovsdb-bench`: the OVSDB write path at scale, against a real NB server it starts itself.
//!
//! Creates N Logical_Switch_Ports on one Logical_Switch the way a controller does (each port its
//! own request: insert the port, add it to the switch's `ports`) and compares ports/s of:
//! our group-commit [`Batcher`], our client pipelining one transaction per port, `ovn-nbctl` one
//! process per port, `ovn-nbctl` in daemon mode, and the floor: the same rows in one transaction
//! (every insert, and one mutate adding all the ports to the switch). A one-transaction run with
//! one mutate per port is shown too, as a reference for what the Batcher's coalescing of those
//! mutates saves. Each variant gets a fresh ovsdb-server (NB schema, temp dir, unix socket), and
//! the row counts are checked afterwards.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use ovsdb::batch::{BatchConfig, BatchStats, Batcher};
use ovsdb::{
    Atom, Client, Condition, Datum, Mutation, Operation, Remote, Row, Timeouts, Transaction,
};
use tokio::task::JoinSet;

const NB: &str = "OVN_Northbound";
const SWITCH: &str = "sw0";

#[derive(Parser, Debug)]
#[command(about = "Logical_Switch_Port creation throughput: ours vs ovn-nbctl")]
struct Args {
    /// Ports created by our client's variants.
    #[arg(long, default_value_t = 10_000)]
    ports: usize,
    /// Ports created by each ovn-nbctl variant (one process per port is slow).
    #[arg(long, default_value_t = 300)]
    nbctl_sample: usize,
    /// Operations per merged transaction (default: the Batcher's).
    #[arg(long)]
    max_ops: Option<usize>,
    /// Merged transactions in flight at once (default: the Batcher's).
    #[arg(long)]
    in_flight: Option<usize>,
    /// NB schema; defaults to the one shipped with the ovsdb crate.
    #[arg(long)]
    schema: Option<PathBuf>,
}

/// One ovsdb-server in its own temp dir; killed and removed on drop.
struct Server {
    dir: PathBuf,
    child: Child,
}

impl Server {
    fn start(schema: &Path, tag: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("ovsdb-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let db = dir.join("nb.db");
        let st = Command::new("ovsdb-tool")
            .arg("create")
            .arg(&db)
            .arg(schema)
            .status()
            .expect("ovsdb-tool (install openvswitch-common)");
        assert!(st.success(), "ovsdb-tool create failed");
        let sock = dir.join("nb.sock");
        let child = Command::new("ovsdb-server")
            .arg(format!("--remote=punix:{}", sock.display()))
            .arg(format!("--unixctl={}", dir.join("ctl").display()))
            .arg(format!("--log-file={}", dir.join("ovsdb.log").display()))
            .arg("--no-chdir")
            .arg(&db)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ovsdb-server");
        let s = Server { dir, child };
        let end = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(s.sock()).is_err() {
            assert!(Instant::now() < end, "ovsdb-server did not come up");
            std::thread::sleep(Duration::from_millis(10));
        }
        s
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("nb.sock")
    }

    fn db_arg(&self) -> String {
        format!("--db=unix:{}", self.sock().display())
    }

    async fn client(&self) -> Client {
        let (c, _notes) = Client::connect(&Remote::Unix(self.sock()), None, &Timeouts::default())
            .await
            .expect("connect");
        c
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mac_ip(i: usize) -> String {
    format!(
        "0a:00:00:{:02x}:{:02x}:{:02x} 10.{}.{}.{}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff,
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

fn lsp_row(i: usize) -> Row {
    Row::from([
        ("name", Datum::scalar(format!("port{i}"))),
        ("addresses", Datum::set([mac_ip(i)])),
        ("external_ids", Datum::map([("vendor", "kube-ovn")])),
    ])
}

fn add_to_switch(t: &mut Transaction, names: Vec<String>) {
    t.mutate(
        "Logical_Switch",
        vec![Condition::eq("name", SWITCH)],
        vec![Mutation::insert(
            "ports",
            Datum::set(names.into_iter().map(Atom::NamedUuid)),
        )],
    );
}

/// One port as its own transaction, as a controller reconciling one pod would send it.
fn port_txn(i: usize) -> Transaction {
    let mut t = Transaction::new(NB);
    let n = t.insert("Logical_Switch_Port", lsp_row(i));
    add_to_switch(&mut t, vec![n]);
    t
}

async fn make_switch(c: &Client) {
    let mut t = Transaction::new(NB);
    t.insert(
        "Logical_Switch",
        Row::from([("name", Datum::scalar(SWITCH))]),
    );
    c.transact(&t).await.expect("create switch");
}

/// Fails loudly unless exactly `n` ports exist, all on the switch, all with our external_ids.
async fn verify(c: &Client, n: usize, variant: &str) {
    let mut t = Transaction::new(NB);
    t.push(Operation::Select {
        table: "Logical_Switch_Port".into(),
        conditions: vec![Condition::includes(
            "external_ids",
            Datum::map([("vendor", "kube-ovn")]),
        )],
        columns: Some(vec!["_uuid".into()]),
    });
    t.push(Operation::Select {
        table: "Logical_Switch".into(),
        conditions: vec![Condition::eq("name", SWITCH)],
        columns: Some(vec!["ports".into()]),
    });
    let out = c.transact(&t).await.expect("verify select");
    let lsps = out.results[0].rows.as_ref().map_or(0, Vec::len);
    let sw = &out.results[1].rows.as_ref().expect("switch rows")[0]["ports"];
    let on_switch = if sw[0] == "set" {
        sw[1].as_array().map_or(0, Vec::len)
    } else {
        1
    };
    assert!(
        lsps == n && on_switch == n,
        "{variant}: expected {n} ports, found {lsps} rows and {on_switch} on the switch"
    );
}

struct Run {
    name: &'static str,
    ports: usize,
    secs: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.ports as f64 / self.secs
    }
}

async fn run_batcher(schema: &Path, n: usize, cfg: BatchConfig) -> (Run, BatchStats) {
    let s = Server::start(schema, "batch");
    let c = s.client().await;
    make_switch(&c).await;
    let b = Batcher::new(c.clone(), NB, cfg);
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    for i in 0..n {
        let b = b.clone();
        set.spawn(async move { b.submit(port_txn(i)).await });
    }
    while let Some(r) = set.join_next().await {
        r.expect("task").expect("batched port");
    }
    let secs = t0.elapsed().as_secs_f64();
    verify(&c, n, "batcher").await;
    let run = Run {
        name: "ours: Batcher, N concurrent submits",
        ports: n,
        secs,
    };
    (run, b.stats())
}

async fn run_pipelined(schema: &Path, n: usize) -> Run {
    let s = Server::start(schema, "pipe");
    let c = s.client().await;
    make_switch(&c).await;
    let t0 = Instant::now();
    let mut waiting = Vec::with_capacity(n);
    for i in 0..n {
        waiting.push(c.transact_pipelined(port_txn(i)).expect("send"));
    }
    for w in waiting {
        w.await.expect("pipelined port");
    }
    let secs = t0.elapsed().as_secs_f64();
    verify(&c, n, "pipelined").await;
    Run {
        name: "ours: pipelined, 1 txn per port",
        ports: n,
        secs,
    }
}

async fn run_floor(schema: &Path, n: usize, one_mutate: bool) -> Run {
    let s = Server::start(schema, "floor");
    let c = s.client().await;
    make_switch(&c).await;
    let t0 = Instant::now();
    let mut t = Transaction::new(NB);
    let mut names = Vec::with_capacity(n);
    for i in 0..n {
        let name = t.insert("Logical_Switch_Port", lsp_row(i));
        if one_mutate {
            names.push(name);
        } else {
            add_to_switch(&mut t, vec![name]);
        }
    }
    if one_mutate {
        add_to_switch(&mut t, names);
    }
    c.transact(&t).await.expect("floor transaction");
    let secs = t0.elapsed().as_secs_f64();
    verify(&c, n, "floor").await;
    Run {
        name: if one_mutate {
            "floor: 1 txn, N inserts + 1 mutate"
        } else {
            "reference: 1 txn, N inserts + N mutates"
        },
        ports: n,
        secs,
    }
}

fn nbctl_port(db: &str, daemon: Option<&str>, i: usize) {
    let name = format!("port{i}");
    let mut cmd = Command::new("ovn-nbctl");
    match daemon {
        Some(ctl) => cmd.env("OVN_NB_DAEMON", ctl),
        None => cmd.arg(db).env_remove("OVN_NB_DAEMON"),
    };
    let st = cmd
        .args(["--", "lsp-add", SWITCH, &name])
        .args(["--", "lsp-set-addresses", &name, &mac_ip(i)])
        .args([
            "--",
            "set",
            "Logical_Switch_Port",
            &name,
            "external_ids:vendor=kube-ovn",
        ])
        .stdout(Stdio::null())
        .status()
        .expect("ovn-nbctl (install ovn-central)");
    assert!(st.success(), "ovn-nbctl failed for {name}");
}

async fn run_nbctl(schema: &Path, n: usize, daemon: bool) -> Run {
    let s = Server::start(schema, if daemon { "nbd" } else { "nbp" });
    let c = s.client().await;
    make_switch(&c).await;
    let db = s.db_arg();
    let mut daemon_pid: Option<String> = None;
    let ctl = if daemon {
        let pidfile = s.dir.join("nbctl.pid");
        let out = Command::new("ovn-nbctl")
            .arg(&db)
            .arg(format!("--pidfile={}", pidfile.display()))
            .arg("--detach")
            .arg(format!("--log-file={}", s.dir.join("nbctl.log").display()))
            .arg(format!("--unixctl={}", s.dir.join("nbctl.ctl").display()))
            .env_remove("OVN_NB_DAEMON")
            .output()
            .expect("ovn-nbctl --detach");
        assert!(out.status.success(), "ovn-nbctl daemon did not start");
        daemon_pid = std::fs::read_to_string(&pidfile)
            .ok()
            .map(|p| p.trim().to_string());
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Some(path)
    } else {
        None
    };
    let t0 = Instant::now();
    for i in 0..n {
        nbctl_port(&db, ctl.as_deref(), i);
    }
    let secs = t0.elapsed().as_secs_f64();
    if let Some(pid) = daemon_pid {
        let _ = Command::new("kill").arg(pid).status();
    }
    verify(&c, n, "ovn-nbctl").await;
    Run {
        name: if daemon {
            "ovn-nbctl daemon (OVN_NB_DAEMON)"
        } else {
            "ovn-nbctl, 1 process per port"
        },
        ports: n,
        secs,
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let schema = args.schema.clone().unwrap_or_else(|| {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../ovsdb/schemas/ovn-nb.ovsschema"
        ))
    });
    let n = args.ports;
    let defaults = BatchConfig::default();
    let cfg = BatchConfig {
        max_ops: args.max_ops.unwrap_or(defaults.max_ops),
        max_in_flight: args.in_flight.unwrap_or(defaults.max_in_flight),
        ..defaults
    };
    let (max_ops, in_flight) = (cfg.max_ops, cfg.max_in_flight);
    let (batch, stats) = run_batcher(&schema, n, cfg).await;
    let pipe = run_pipelined(&schema, n).await;
    let nbp = run_nbctl(&schema, args.nbctl_sample, false).await;
    let nbd = run_nbctl(&schema, args.nbctl_sample, true).await;
    let n_mutates = run_floor(&schema, n, false).await;
    let floor = run_floor(&schema, n, true).await;

    println!(
        "{:<40} {:>8} {:>10} {:>12}",
        "variant", "ports", "seconds", "ports/s"
    );
    for r in [&batch, &pipe, &nbp, &nbd, &floor, &n_mutates] {
        println!(
            "{:<40} {:>8} {:>10.3} {:>12.0}",
            r.name,
            r.ports,
            r.secs,
            r.rate()
        );
    }
    println!();
    println!(
        "Batcher (max_ops {max_ops}, in flight {in_flight}): {} merged transactions, {} members, \
         {} operations submitted, {} sent after coalescing, {} refused and re-run",
        stats.merged, stats.members, stats.ops_submitted, stats.ops_sent, stats.fallbacks
    );
    let ours = batch.rate();
    println!(
        "ours(Batcher) / nbctl per process : {:>8.1}x",
        ours / nbp.rate()
    );
    println!(
        "ours(Batcher) / nbctl daemon      : {:>8.1}x",
        ours / nbd.rate()
    );
    println!(
        "ours(Batcher) / floor             : {:>8.2}x",
        ours / floor.rate()
    );
    println!(
        "ours(Batcher) / 1 txn, N mutates  : {:>8.2}x",
        ours / n_mutates.rate()
    );
    println!(
        "ours(Batcher) / ours pipelined    : {:>8.1}x",
        ours / pipe.rate()
    );
    println!("all row counts verified");
}
