//! What the controller benchmarks share: the controller process (start, stop, peak RSS,
//! metrics and readiness over its pprof port), its Prometheus exposition, CPU use of the
//! processes sharing the machine, NB quiescence, bounded concurrent API calls and the table
//! printing — so `kube-ovn-controller-bench` and `kube-ovn-svc-bench` measure the same way.

use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use kube_ovn_sandbox::loopback::Loopback;
use kube_ovn_sandbox::SandboxState;
use ovsdb::Replica;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The benchmarks' error: anything, with its message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// The benchmarks' result.
pub type Result<T> = std::result::Result<T, Error>;

/// The NB database name.
pub const NB_DB: &str = "OVN_Northbound";

/// Prints a line at once (progress of a long run shows as it happens).
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The controller binary: `explicit` (the `--controller` flag), or built with cargo from this
/// workspace in release mode (cargo's no-op when up to date).
pub fn controller_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_file() {
            return Err(format!("--controller {}: no such file", p.display()).into());
        }
        return Ok(p.to_path_buf());
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    say("building kube-ovn-controller (release)…");
    let out = Command::new(cargo)
        .current_dir(&workspace)
        .args([
            "build",
            "--release",
            "--message-format=json",
            "-p",
            "kube-ovn-controller",
            "--bin",
            "kube-ovn-controller",
        ])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running cargo (or pass --controller PATH): {e}"))?;
    if !out.status.success() {
        return Err("building kube-ovn-controller failed".into());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact" && m["target"]["name"] == "kube-ovn-controller"
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| "cargo built no kube-ovn-controller executable".into())
}

/// Runs `f(0..n)` with at most `concurrency` in flight; the first error ends it.
pub async fn bounded<F, Fut>(n: usize, concurrency: usize, f: F) -> Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = std::result::Result<(), kube::Error>>,
{
    let mut s = futures::stream::iter(0..n)
        .map(f)
        .buffer_unordered(concurrency);
    while let Some(r) = s.next().await {
        r?;
    }
    Ok(())
}

/// An object from its JSON (the benchmarks' objects are literals: a failure is a bug here).
pub fn from_json<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a well-formed object")
}

/// One controller process, the loopback address it serves its metrics on and its log.
pub struct Controller {
    child: Child,
    addr: Loopback,
    log: PathBuf,
    /// When the process was spawned.
    pub started: Instant,
}

/// The controller's metrics port, upstream's default: each benchmark controller keeps it and
/// listens on a loopback address of its own (ENABLE_BIND_LOCAL_IP=true, POD_IPS).
pub const METRICS_PORT: u16 = 10660;

impl Controller {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `binary` against the sandbox's API and NB, logging to `log`.
    pub fn start(binary: &Path, st: &SandboxState, log: PathBuf) -> Result<Controller> {
        let addr = Loopback::claim()?;
        let file = std::fs::File::create(&log)?;
        let child = Command::new(binary)
            .arg(format!("--kubeconfig={}", st.kubeconfig.display()))
            .arg(format!("--ovn-nb-addr={}", st.central.nb))
            .arg("--leader-elect-lease-duration=3s")
            .arg("--leader-elect-renew-deadline=2s")
            .arg("--leader-elect-retry-period=200ms")
            .env("ENABLE_BIND_LOCAL_IP", "true")
            .env("POD_IPS", addr.addr().to_string())
            .env("POD_NAME", "kube-ovn-controller-bench")
            .env("KUBE_NAMESPACE", "kube-system")
            // The caller's filter when set (e.g. `kube_ovn_controller::context=trace` logs every
            // transaction's operations), else info.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        Ok(Controller {
            child,
            addr,
            log,
            started: Instant::now(),
        })
    }

    /// The exit status, once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Peak resident set size (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// SIGTERM (the controller releases its Lease), then SIGKILL after 10 s.
    pub async fn stop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid; it has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.exited().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let fut = async {
            let mut s = tokio::net::TcpStream::connect((self.addr.addr(), METRICS_PORT))
                .await
                .ok()?;
            s.write_all(format!("GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").as_bytes())
                .await
                .ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).await.ok()?;
            let code = out.split_whitespace().nth(1)?.parse().ok()?;
            let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
            Some((code, body))
        };
        tokio::time::timeout(Duration::from_secs(5), fut)
            .await
            .ok()
            .flatten()
    }

    /// The `/metrics` exposition, when served.
    pub async fn metrics(&self) -> Option<Metrics> {
        match self.get("/metrics").await? {
            (200, body) => Some(Metrics(body)),
            _ => None,
        }
    }

    /// Whether `/readyz` answers 200.
    pub async fn ready(&self) -> bool {
        matches!(self.get("/readyz").await, Some((200, _)))
    }

    /// Duration of the "IPAM restored" step, from the log.
    pub fn ipam_restore(&self) -> Option<Duration> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        let line = text.lines().find(|l| l.contains("IPAM restored"))?;
        let line = strip_ansi(line);
        let v = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("elapsed="))?;
        parse_debug_duration(v)
    }

    /// The number of addresses the "IPAM restored" log line reports.
    pub fn restored(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        let line = strip_ansi(text.lines().find(|l| l.contains("IPAM restored"))?);
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("restored="))
            .map(str::to_string)
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `s` without ANSI colour sequences.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses `std::time::Duration`'s Debug form: `12ns`, `3.5µs`, `1.25ms`, `2.5s`.
pub fn parse_debug_duration(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ns" => n / 1e9,
        "µs" | "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// A /metrics exposition.
pub struct Metrics(pub String);

impl Metrics {
    /// Sum of the samples of `name` whose labels contain `filter`.
    pub fn get(&self, name: &str, filter: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter(|l| l.contains(filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, |a, b| a + b)
    }

    /// `kube_ovn_controller_reconciles_total` of `kind` (reconciles run to their end).
    pub fn reconciles(&self, kind: &str) -> f64 {
        self.get(
            "kube_ovn_controller_reconciles_total",
            &format!("kind=\"{kind}\""),
        )
    }

    /// Reconciles that have finished (the latency histogram's count).
    pub fn finished(&self, kind: &str) -> f64 {
        self.get(
            "kube_ovn_controller_reconcile_seconds_count",
            &format!("kind=\"{kind}\""),
        )
    }

    /// Failed reconciles of `kind`.
    pub fn errors(&self, kind: &str) -> f64 {
        self.get(
            "kube_ovn_controller_reconcile_errors_total",
            &format!("kind=\"{kind}\""),
        )
    }

    /// Mean reconcile latency of `kind`.
    pub fn mean_latency(&self, kind: &str) -> Option<Duration> {
        let n = self.finished(kind);
        let sum = self.get(
            "kube_ovn_controller_reconcile_seconds_sum",
            &format!("kind=\"{kind}\""),
        );
        (n > 0.0).then(|| Duration::from_secs_f64(sum / n))
    }

    /// NB transactions the controller sent (before group commit merges them).
    pub fn transactions(&self) -> f64 {
        self.get("kube_ovn_controller_nb_transactions_total", "")
    }

    /// NB operations the controller sent.
    pub fn operations(&self) -> f64 {
        self.get("kube_ovn_controller_nb_operations_total", "")
    }
}

/// CPU seconds (user + system) of the processes sharing the machine during a phase: on a
/// small machine the controller competes with the OVN daemons and the API fixture, so its
/// wall time is only read right next to who used the cores.
#[derive(Default, Clone)]
pub struct CpuUse(pub Vec<(&'static str, f64)>);

impl CpuUse {
    /// The controller, the NB and SB servers, northd, the first node's ovn-controller, and
    /// this process (the API fixture and the bench's own watches).
    pub fn sample(ctl: &Controller, st: &SandboxState) -> CpuUse {
        Self::sample_pid(Some(ctl.pid()), st)
    }

    /// [`CpuUse::sample`] with the controller's pid given, or none while no controller runs
    /// (a floor measured without it).
    pub fn sample_pid(controller: Option<u32>, st: &SandboxState) -> CpuUse {
        let central = kube_ovn_sandbox::central::dir(&st.run_dir);
        let pidfile = |name: &str| {
            kube_ovn_sandbox::sys::read_pidfile(&central.join(format!("{name}.pid")))
                .and_then(|p| u32::try_from(p).ok())
        };
        let procs = [
            ("controller", controller),
            ("API fixture + bench", Some(std::process::id())),
            ("NB ovsdb-server", pidfile("nb")),
            ("SB ovsdb-server", pidfile("sb")),
            ("ovn-northd", pidfile("northd")),
            (
                "ovn-controller (node 1)",
                st.nodes.first().and_then(|n| {
                    kube_ovn_sandbox::sys::read_pidfile(&n.dir.join("ovn-controller.pid"))
                        .and_then(|p| u32::try_from(p).ok())
                }),
            ),
        ];
        CpuUse(
            procs
                .into_iter()
                .filter_map(|(name, pid)| Some((name, cpu_seconds(pid?)?)))
                .collect(),
        )
    }

    /// What each process used between `self` and `later`.
    pub fn until(&self, later: &CpuUse) -> CpuUse {
        CpuUse(
            later
                .0
                .iter()
                .map(|(name, t)| {
                    let before = self.0.iter().find(|(n, _)| n == name).map_or(0.0, |p| p.1);
                    (*name, t - before)
                })
                .collect(),
        )
    }
}

/// User + system CPU seconds of process `pid`, all threads (`/proc/<pid>/stat` fields 14, 15).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks / hz as f64)
}

/// Waits until northd has processed everything in the NB (`ovn-nbctl --wait=sb sync`).
pub async fn northd_caught_up(nb: &str, limit: Duration) -> Result<()> {
    let out = tokio::process::Command::new("ovn-nbctl")
        .arg(format!("--db={nb}"))
        .arg(format!("--timeout={}", limit.as_secs().max(1)))
        .args(["--wait=sb", "sync"])
        .output()
        .await
        .map_err(|e| format!("ovn-nbctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ovn-nbctl --wait=sb sync: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

/// Waits until nothing (northd included) has written the NB for 2 s.
pub async fn nb_quiet(replica: &Replica, limit: Duration) -> Result<()> {
    let mut rx = replica.subscribe();
    let deadline = Instant::now() + limit;
    loop {
        match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
            Err(_) => return Ok(()),
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                return Err("the NB replica stopped".into())
            }
            Ok(_) => {}
        }
        if Instant::now() > deadline {
            return Err("the NB never went quiet".into());
        }
    }
}

/// A duration for a table: milliseconds under a second, else seconds.
pub fn secs(d: Option<Duration>) -> String {
    match d {
        Some(d) if d < Duration::from_secs(1) => format!("{:.0} ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.2} s", d.as_secs_f64()),
        None => "—".into(),
    }
}

/// A duration for a table, with fractions of milliseconds under 10 ms.
pub fn fine_secs(d: Option<Duration>) -> String {
    match d {
        Some(d) if d < Duration::from_millis(10) => format!("{:.2} ms", d.as_secs_f64() * 1e3),
        other => secs(other),
    }
}

/// A figure against its aim: ok, MISSED, or nothing when there is no aim.
pub fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "ok",
        Some(false) => "MISSED",
        None => "",
    }
}

/// Prints rows under a header as aligned columns.
pub fn table(head: &[&str], rows: &[Vec<String>]) {
    let mut width = vec![0; head.len()];
    let all = std::iter::once(head.iter().map(|h| h.to_string()).collect::<Vec<_>>())
        .chain(rows.iter().cloned());
    for r in all {
        for (w, c) in width.iter_mut().zip(&r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |r: &[String]| {
        let cells: Vec<String> = r
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        say(cells.join("  ").trim_end());
    };
    line(&head.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    line(&width.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
    for r in rows {
        line(r);
    }
}

/// Bytes as megabytes for a table.
pub fn megabytes(b: Option<u64>) -> String {
    b.map(|b| format!("{:.1} MB", b as f64 / 1e6))
        .unwrap_or_else(|| "—".into())
}

/// How long the controller's NB counter must stay still before a phase counts as settled.
pub const QUIET: Duration = Duration::from_secs(3);

/// A small deterministic generator (splitmix64): a benchmark's choices repeat with its seed.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// A mutex's guard, a poisoned one taken as it is (a panicked watcher task must not hide the
/// figures of the others).
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The `q` quantile of `sorted` (nearest rank), `None` when empty.
pub fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let at = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[at - 1])
}

/// Seconds since the Unix epoch, as a float.
fn wall(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// The controller's start-up milestones (its `milestone` log lines) as offsets from `started`
/// (the wall clock when the process was spawned). The log's timestamps are RFC 3339 UTC;
/// only the time of day is read, so a run across midnight wraps correctly within a day.
pub fn milestones(log: &Path, started: SystemTime) -> Vec<(String, f64)> {
    let names = [
        "nb replica synced",
        "kubernetes caches synced",
        "initialised, IPAM restored",
        "controller running",
    ];
    let Ok(text) = std::fs::read_to_string(log) else {
        return Vec::new();
    };
    let start_of_day = wall(started) % 86_400.0;
    let mut out = Vec::new();
    for name in names {
        let Some(line) = text.lines().find(|l| l.contains(name)) else {
            continue;
        };
        let line = strip_ansi(line);
        let Some(ts) = line.split_whitespace().next() else {
            continue;
        };
        let Some(time) = ts.split_once('T').map(|(_, t)| t.trim_end_matches('Z')) else {
            continue;
        };
        let parts: Vec<f64> = time.split(':').filter_map(|p| p.parse().ok()).collect();
        if let [h, m, s] = parts[..] {
            let of_day = h * 3600.0 + m * 60.0 + s;
            let mut d = of_day - start_of_day;
            if d < -43_200.0 {
                d += 86_400.0;
            }
            out.push((name.to_string(), d));
        }
    }
    out
}

/// CPU seconds of the benchmark's processes (see [`CpuUse::sample`]) and of the whole machine:
/// the difference is what other tenants of the machine took meanwhile.
pub fn cpu_sample(ctl: &Controller, st: &SandboxState) -> CpuUse {
    cpu_sample_pid(Some(ctl.pid()), st)
}

/// [`cpu_sample`] with the controller's pid given, or none while no controller runs.
pub fn cpu_sample_pid(controller: Option<u32>, st: &SandboxState) -> CpuUse {
    let mut c = CpuUse::sample_pid(controller, st);
    if let Some(busy) = machine_busy() {
        c.0.push(("whole machine", busy));
    }
    c
}

/// Busy CPU seconds of the whole machine since boot (`/proc/stat`: user, nice, system, irq,
/// softirq, steal).
fn machine_busy() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| f.get(*i))
        .sum::<f64>();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| busy / hz as f64)
}

/// The controller after its NB writes stopped.
pub struct Settled {
    /// The last exposition read (the counter unchanged for [`QUIET`]).
    pub metrics: Metrics,
    /// Scrapes of /metrics that got no answer within 5 s (a starved runtime).
    pub unanswered: usize,
    /// The longest scrape.
    pub slowest: Duration,
}

/// Waits until the controller's NB transaction counter has not moved for [`QUIET`]. A scrape
/// that times out is counted, not fatal: a controller busy on every core answers late.
pub async fn settle(ctl: &mut Controller, limit: Duration) -> Result<Settled> {
    let mut last = -1.0;
    let mut changed_at = ctl.started.elapsed();
    let deadline = Instant::now() + limit;

    let (mut unanswered, mut slowest) = (0, Duration::ZERO);
    loop {
        if let Some(status) = ctl.exited() {
            return Err(format!("the controller exited ({status}) while settling").into());
        }
        let asked = Instant::now();
        let m = ctl.metrics().await;
        slowest = slowest.max(asked.elapsed());
        let t = ctl.started.elapsed();
        match m {
            None => unanswered += 1,
            Some(m) => {
                let n = m.transactions();
                if n != last {
                    last = n;
                    changed_at = t;
                } else if t - changed_at >= QUIET {
                    return Ok(Settled {
                        metrics: m,
                        unanswered,
                        slowest,
                    });
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the NB writes never stopped ({last} transactions so far, {unanswered} scrapes unanswered)"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The NB schema the standalone peers are created with.
const NB_SCHEMA: &str = "/usr/share/ovn/ovn-nb.ovsschema";

/// A standalone NB ovsdb-server in its own directory (a benchmark's peer: the same rows
/// written with `ovn-nbctl`); killed and removed on drop.
pub struct NbServer {
    dir: PathBuf,
    child: Child,
}

impl NbServer {
    /// Creates an empty NB in `base/peer-<tag>` and serves it on a Unix socket.
    pub fn start(base: &Path, tag: &str) -> Result<NbServer> {
        let dir = base.join(format!("peer-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let db = dir.join("nb.db");
        let st = Command::new("ovsdb-tool")
            .arg("create")
            .arg(&db)
            .arg(NB_SCHEMA)
            .status()
            .map_err(|e| format!("ovsdb-tool: {e}"))?;
        if !st.success() {
            return Err("ovsdb-tool create failed".into());
        }
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
            .map_err(|e| format!("ovsdb-server: {e}"))?;
        let s = NbServer { dir, child };
        let end = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(s.sock()).is_err() {
            if Instant::now() > end {
                return Err("the peer ovsdb-server did not come up".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(s)
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("nb.sock")
    }

    /// The `--db=` argument of ovn-nbctl for this server.
    pub fn db(&self) -> String {
        format!("--db=unix:{}", self.sock().display())
    }

    /// A fresh OVSDB client connection.
    pub async fn client(&self) -> Result<ovsdb::Client> {
        Ok(ovsdb::Client::connect(
            &ovsdb::Remote::Unix(self.sock()),
            None,
            &ovsdb::Timeouts::default(),
        )
        .await?
        .0)
    }
}

impl Drop for NbServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs an `ovn-nbctl` command; its stderr is the error.
pub fn nbctl(mut cmd: Command) -> Result<()> {
    let out = cmd.output().map_err(|e| format!("ovn-nbctl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ovn-nbctl: {}", String::from_utf8_lossy(&out.stderr).trim()).into())
    }
}

/// What execve may take in arguments and environment together, less a margin.
pub fn argument_budget() -> usize {
    // SAFETY: sysconf has no preconditions.
    let max = unsafe { libc::sysconf(libc::_SC_ARG_MAX) };
    let env: usize = std::env::vars_os()
        .map(|(k, v)| k.len() + v.len() + 2 + std::mem::size_of::<usize>())
        .sum();
    usize::try_from(max)
        .unwrap_or(131_072)
        .saturating_sub(env + 65_536)
}

/// A benchmark binary's `main`: runs `body` on a multi-threaded runtime and turns its outcome
/// into the exit code, printing a failure with the binary's `name`.
pub fn run_main<F>(name: &str, body: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = Result<()>>,
{
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(body) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
