//! klog's command-line flags, which upstream's controller and daemon both accept (their
//! Deployment and DaemonSet pass `--v`, `--logtostderr=false`, `--log_file=…`), as one
//! `clap::Args` group flattened into each binary's flags, and the tracing set-up both run.
//!
//! Logs always go to stderr (the container runtime collects them); the file flags are accepted
//! so upstream's arguments parse, and `--v` picks the tracing filter when `RUST_LOG` is unset.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::Args;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// klog's flags, names and defaults as `klog.InitFlags` registers them.
#[derive(Debug, Clone, Args)]
pub struct LogFlags {
    /// Log verbosity: 0-2 info, 3-4 this binary's debug messages, 5-6 all debug, 7+ trace
    /// (ignored when `RUST_LOG` is set).
    #[arg(long = "v", short = 'v', default_value_t = 0)]
    pub v: u8,
    /// Accepted for compatibility; logs always go to stderr.
    #[arg(long = "logtostderr", default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub logtostderr: bool,
    /// Accepted for compatibility; logs always go to stderr.
    #[arg(long = "alsologtostderr", default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub alsologtostderr: bool,
    /// Accepted for compatibility (no log file is written).
    #[arg(long = "log_file", default_value = "")]
    pub log_file: String,
    /// Accepted for compatibility (no log file is written).
    #[arg(long = "log_file_max_size", default_value_t = 1800)]
    pub log_file_max_size: u64,
    /// Accepted for compatibility (no log file is written).
    #[arg(long = "log_dir", default_value = "")]
    pub log_dir: String,
    /// Accepted for compatibility.
    #[arg(long = "add_dir_header", default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub add_dir_header: bool,
    /// Accepted for compatibility.
    #[arg(long = "skip_headers", default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub skip_headers: bool,
    /// Accepted for compatibility.
    #[arg(long = "skip_log_headers", default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub skip_log_headers: bool,
    /// Accepted for compatibility.
    #[arg(long = "one_output", default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub one_output: bool,
    /// Accepted for compatibility (klog severity name or number).
    #[arg(long = "stderrthreshold", default_value = "2")]
    pub stderrthreshold: String,
    /// Accepted for compatibility (klog severity name or number).
    #[arg(long = "alsologtostderrthreshold", default_value = "0")]
    pub alsologtostderrthreshold: String,
    /// Accepted for compatibility.
    #[arg(long = "legacy_stderr_threshold_behavior", default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub legacy_stderr_threshold_behavior: bool,
    /// Accepted for compatibility; per-module verbosity is `RUST_LOG`'s job.
    #[arg(long = "vmodule", default_value = "")]
    pub vmodule: String,
    /// Accepted for compatibility.
    #[arg(long = "log_backtrace_at", default_value = ":0")]
    pub log_backtrace_at: String,
}

impl LogFlags {
    /// One warning per klog flag whose non-default value asks for something this logging does
    /// not do (log files, headers, per-module levels); empty for klog's defaults.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut note = |set: bool, flag: String, why: &str| {
            if set {
                out.push(format!("{flag}: {why}"));
            }
        };
        let stderr_only = "ignored, logs always go to stderr only";
        note(
            !self.logtostderr && self.log_file.is_empty() && self.log_dir.is_empty(),
            "--logtostderr=false".into(),
            stderr_only,
        );
        note(
            !self.log_file.is_empty(),
            format!("--log_file={}", self.log_file),
            stderr_only,
        );
        note(
            !self.log_dir.is_empty(),
            format!("--log_dir={}", self.log_dir),
            stderr_only,
        );
        note(
            !self.vmodule.is_empty(),
            format!("--vmodule={}", self.vmodule),
            "ignored, per-module levels are RUST_LOG's job",
        );
        note(
            !matches!(self.log_backtrace_at.as_str(), "" | ":0"),
            format!("--log_backtrace_at={}", self.log_backtrace_at),
            "ignored, no stack traces are logged",
        );
        let format = "ignored, the log line format is fixed";
        note(self.add_dir_header, "--add_dir_header".into(), format);
        note(self.skip_headers, "--skip_headers".into(), format);
        out
    }

    /// The tracing filter `--v` means for a binary whose own code lives in `own_crates`
    /// (`kube_ovn_controller`, …; the shared crate is always included).
    pub fn filter(&self, own_crates: &[&str]) -> String {
        match self.v {
            0..=2 => "info".to_string(),
            3..=4 => own_crates
                .iter()
                .chain(["kube_ovn_common"].iter())
                .fold("info".to_string(), |f, c| format!("{f},{c}=debug")),
            5..=6 => "debug".to_string(),
            _ => "trace".to_string(),
        }
    }

    /// Installs the process's tracing subscriber on stderr: `RUST_LOG` when set, else the
    /// filter `--v` means; colours only on a terminal (klog never colours, and log files and
    /// `kubectl exec` output are read by tools). Fails if a subscriber is already installed or
    /// `RUST_LOG` is invalid.
    pub fn init(&self, own_crates: &[&str]) -> Result<(), String> {
        let filter = match std::env::var("RUST_LOG") {
            Ok(f) => EnvFilter::try_new(&f).map_err(|e| format!("RUST_LOG={f:?}: {e}"))?,
            Err(_) => EnvFilter::new(self.filter(own_crates)),
        };
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(Counted)
            .try_init()
            .map_err(|e| format!("logging: {e}"))
    }
}

/// klog's severities as upstream's `klog_lines_total`/`klog_bytes_total` label them: `INFO`
/// (tracing's info, debug and trace, which klog logs as V-levels of INFO), `WARN`, `ERROR`.
pub const SEVERITIES: [&str; 3] = ["INFO", "WARN", "ERROR"];

static LINES: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
static BYTES: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

fn severity(level: &tracing::Level) -> usize {
    match *level {
        tracing::Level::ERROR => 2,
        tracing::Level::WARN => 1,
        _ => 0,
    }
}

/// Log lines and bytes written so far at each of [`SEVERITIES`] (klog keeps the same
/// statistics, upstream exports them as `klog_lines_total` and `klog_bytes_total`).
pub fn stats() -> [(&'static str, u64, u64); 3] {
    std::array::from_fn(|i| {
        (
            SEVERITIES[i],
            LINES[i].load(Ordering::Relaxed),
            BYTES[i].load(Ordering::Relaxed),
        )
    })
}

/// stderr, counting each event's line and bytes by severity for [`stats`].
struct Counted;

/// The writer for one event: stderr plus the severity its bytes are counted under.
struct CountedWriter(usize);

impl Write for CountedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = std::io::stderr().write(buf)?;
        BYTES[self.0].fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Counted {
    type Writer = CountedWriter;

    fn make_writer(&'a self) -> CountedWriter {
        CountedWriter(0)
    }

    /// Called once per event that passed the filter: that event is one line.
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> CountedWriter {
        let i = severity(meta.level());
        LINES[i].fetch_add(1, Ordering::Relaxed);
        CountedWriter(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        log: LogFlags,
    }

    fn parse(args: &[&str]) -> Result<LogFlags, clap::Error> {
        Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).map(|c| c.log)
    }

    #[test]
    fn upstream_arguments_parse() {
        let f = parse(&[
            "--v=3",
            "--logtostderr=false",
            "--alsologtostderr=true",
            "--log_file=/var/log/kube-ovn/kube-ovn-cni.log",
            "--log_file_max_size=200",
            "--skip_headers",
            "--vmodule=foo=4",
        ])
        .unwrap();
        assert_eq!(f.v, 3);
        assert!(!f.logtostderr && f.alsologtostderr && f.skip_headers);
        assert_eq!(f.log_file_max_size, 200);
        let d = parse(&[]).unwrap();
        assert!(d.logtostderr && !d.alsologtostderr);
        assert_eq!(d.v, 0);
        assert!(parse(&["--v=x"]).is_err());
        assert!(parse(&["--logtostderr=maybe"]).is_err());
    }

    #[test]
    fn verbosity_maps_onto_filters() {
        let at = |v: &str| {
            parse(&[&format!("--v={v}")])
                .unwrap()
                .filter(&["kube_ovn_x"])
        };
        assert_eq!(at("0"), "info");
        assert_eq!(at("3"), "info,kube_ovn_x=debug,kube_ovn_common=debug");
        assert_eq!(at("5"), "debug");
        assert_eq!(at("9"), "trace");
        for v in ["0", "3", "5", "9"] {
            assert!(EnvFilter::try_new(at(v)).is_ok());
        }
    }
}
