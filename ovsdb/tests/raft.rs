//! A 3-member raft cluster (ovsdb-tool create-cluster/join-cluster) losing its leader in the middle
//! of a write stream: the replica follows the new leader, the cache converges, and no
//! acknowledged write is lost or applied twice.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ovsdb::{
    Condition, DatabaseSchema, Datum, Error, Remote, Replica, ReplicaConfig, ReplicaState,
    Transaction, TxnErrorKind,
};
use support::wait_until;

const NB: &str = "OVN_Northbound";

struct Cluster {
    dir: tempfile::TempDir,
    members: Vec<Option<Child>>,
}

impl Cluster {
    fn path(&self, i: usize, ext: &str) -> PathBuf {
        self.dir.path().join(format!("s{i}.{ext}"))
    }

    fn raft(&self, i: usize) -> String {
        format!("unix:{}", self.path(i, "raft").display())
    }

    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cluster {
            dir,
            members: Vec::new(),
        };
        let schema = format!("{}/schemas/ovn-nb.ovsschema", env!("CARGO_MANIFEST_DIR"));
        let tool = |args: &[&str]| {
            let o = Command::new("ovsdb-tool").args(args).output().unwrap();
            assert!(
                o.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        tool(&[
            "create-cluster",
            c.path(0, "db").to_str().unwrap(),
            &schema,
            &c.raft(0),
        ]);
        for i in 1..3 {
            tool(&[
                "join-cluster",
                c.path(i, "db").to_str().unwrap(),
                NB,
                &c.raft(i),
                &c.raft(0),
            ]);
        }
        for i in 0..3 {
            let child = Command::new("ovsdb-server")
                .arg(format!("--remote=punix:{}", c.path(i, "sock").display()))
                .arg(format!("--unixctl={}", c.path(i, "ctl").display()))
                .arg(format!("--log-file={}", c.path(i, "log").display()))
                .arg("--no-chdir")
                .arg(c.path(i, "db"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            c.members.push(Some(child));
        }
        for i in 0..3 {
            let sock = c.path(i, "sock");
            wait_until("cluster member socket", Duration::from_secs(10), || {
                std::os::unix::net::UnixStream::connect(&sock).is_ok()
            });
        }
        // join-cluster only asks to join: wait until every member is really in, or killing the
        // leader could leave no majority.
        for i in 0..3 {
            let ctl = c.path(i, "ctl");
            wait_until("cluster membership", Duration::from_secs(30), || {
                Command::new("ovs-appctl")
                    .arg("-t")
                    .arg(&ctl)
                    .args(["cluster/status", NB])
                    .output()
                    .is_ok_and(|o| {
                        let s = String::from_utf8_lossy(&o.stdout);
                        s.contains("Status: cluster member") && s.matches(" at unix:").count() >= 3
                    })
            });
        }
        c
    }

    fn remotes(&self) -> Vec<Remote> {
        (0..3).map(|i| Remote::Unix(self.path(i, "sock"))).collect()
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

fn synced_remote(r: &Replica) -> Option<String> {
    match r.state() {
        ReplicaState::Synced { remote, .. } => Some(remote),
        _ => None,
    }
}

/// Creates switch `name` exactly once, whatever happens to the connection: the insert is
/// guarded by a `wait` that fails if the switch exists, so a retry after an unknown outcome
/// either applies it or proves it was applied.
async fn create_once(r: &Replica, name: &str) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut t = Transaction::new(NB);
        t.wait_absent("Logical_Switch", vec![Condition::eq("name", name)]);
        t.insert("Logical_Switch", [("name", Datum::from(name))].into());
        match r.transact(&t).await {
            Ok(_) => return attempts,
            Err(Error::Transaction(e)) if e.kind == TxnErrorKind::TimedOut && attempts > 1 => {
                return attempts
            }
            Err(e) if e.is_transient() => {
                assert!(Instant::now() < deadline, "{name}: still failing: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{name}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_loss_mid_write_is_followed_without_loss_or_duplicates() {
    let mut cluster = Cluster::start();
    let mut cfg = ReplicaConfig::new(cluster.remotes(), NB);
    cfg.expected_schema =
        Some(DatabaseSchema::parse_str(ovsdb::schemas::OVN_NORTHBOUND.json).unwrap());
    cfg.max_backoff = Duration::from_millis(200);
    cfg.tables = vec!["Logical_Switch".into()];
    let r = Replica::start(cfg, Duration::from_secs(30)).await.unwrap();
    let first = synced_remote(&r).unwrap();
    let leader = cluster
        .remotes()
        .iter()
        .position(|x| x.to_string() == first)
        .unwrap();

    const N: usize = 150;
    let writer = {
        let r = r.clone();
        tokio::spawn(async move {
            let mut retried = 0;
            for i in 0..N {
                if create_once(&r, &format!("w{i}")).await > 1 {
                    retried += 1;
                }
            }
            retried
        })
    };
    // Kill the leader once a third of the writes are in.
    let end = Instant::now() + Duration::from_secs(30);
    while r.cache().table("Logical_Switch").map_or(0, |t| t.len()) < N / 3 {
        assert!(Instant::now() < end, "writes did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.kill(leader);
    let retried = tokio::time::timeout(Duration::from_secs(90), writer)
        .await
        .expect("writer finished")
        .unwrap();
    // The new leader still had our last transaction in its history: the replica resumed with
    // monitor_cond_since instead of rebuilding the cache.
    assert!(
        matches!(r.state(), ReplicaState::Synced { resyncs: 1, .. }),
        "{:?}",
        r.state()
    );
    let now = synced_remote(&r).expect("synced again");
    assert_ne!(now, first, "still on the killed leader");
    assert!(retried >= 1, "the leader loss interrupted no write");

    // Every acknowledged write is there exactly once, on the new leader and in the cache.
    let mut t = Transaction::new(NB);
    t.select("Logical_Switch", vec![]);
    let out = r.transact(&t).await.unwrap();
    let mut names: Vec<String> = out.results[0]
        .rows
        .as_ref()
        .unwrap()
        .iter()
        .map(|row| row["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    let mut want: Vec<String> = (0..N).map(|i| format!("w{i}")).collect();
    want.sort();
    assert_eq!(names, want);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let mut cached: Vec<String> = r
            .cache()
            .table("Logical_Switch")
            .unwrap()
            .iter()
            .filter_map(|(_, row)| row.get("name")?.as_atom()?.as_str().map(str::to_string))
            .collect();
        cached.sort();
        if cached == want {
            break;
        }
        assert!(Instant::now() < end, "cache has {} of {N}", cached.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
