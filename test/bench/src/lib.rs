//! What the controller benchmarks share: the controller process (start, stop, peak RSS,
//! metrics and readiness over its pprof port), its Prometheus exposition, CPU use of the
//! processes sharing the machine, NB quiescence, bounded concurrent API calls and the table
//! printing — so `kube-ovn-controller-bench` and `kube-ovn-svc-bench` measure the same way.

use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
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

/// One controller process, its metrics port and its log.
pub struct Controller {
    child: Child,
    port: u16,
    log: PathBuf,
    /// When the process was spawned.
    pub started: Instant,
}

/// A TCP port free on 127.0.0.1 right now (for the controller's metrics).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Controller {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `binary` against the sandbox's API and NB, logging to `log`.
    pub fn start(binary: &Path, st: &SandboxState, log: PathBuf) -> Result<Controller> {
        let port = free_port()?;
        let file = std::fs::File::create(&log)?;
        let child = Command::new(binary)
            .arg(format!("--kubeconfig={}", st.kubeconfig.display()))
            .arg(format!("--ovn-nb-addr={}", st.central.nb))
            .arg(format!("--pprof-port={port}"))
            .arg("--leader-elect-lease-duration=3s")
            .arg("--leader-elect-renew-deadline=2s")
            .arg("--leader-elect-retry-period=200ms")
            .env("POD_NAME", "kube-ovn-controller-bench")
            .env("KUBE_NAMESPACE", "kube-system")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        Ok(Controller {
            child,
            port,
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
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
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
    /// The controller, the NB and SB servers, northd, and this process (the API fixture and
    /// the bench's own watches).
    pub fn sample(ctl: &Controller, st: &SandboxState) -> CpuUse {
        let central = kube_ovn_sandbox::central::dir(&st.run_dir);
        let pidfile = |name: &str| {
            kube_ovn_sandbox::sys::read_pidfile(&central.join(format!("{name}.pid")))
                .and_then(|p| u32::try_from(p).ok())
        };
        let procs = [
            ("controller", Some(ctl.pid())),
            ("API fixture + bench", Some(std::process::id())),
            ("NB ovsdb-server", pidfile("nb")),
            ("SB ovsdb-server", pidfile("sb")),
            ("ovn-northd", pidfile("northd")),
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
