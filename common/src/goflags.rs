//! Upstream's binaries parse their arguments with Go's pflag, and their Deployment/DaemonSet
//! arguments are written for it. This module makes a clap configuration read the same argument
//! lists: Go value syntax, repeated flags, stray positional arguments, and upstream flags this
//! project does not implement (accepted from one table per binary, reported once at start-up).
//!
//! What pflag accepts that plain clap does not, and how [`go_style`] closes the gap:
//! - booleans: bare `--flag` means true, `--flag=<v>` takes any of `strconv.ParseBool`'s
//!   spellings (`1`, `t`, `T`, `TRUE`, `true`, `True`, and the `0`/`f`/`false` family); like
//!   pflag, a boolean never takes the next argument as its value;
//! - integers: `strconv.ParseInt(s, 0, …)` syntax, i.e. `0x1f`, `0o17`, `017` (octal), `0b101`,
//!   `1_000`, a leading `+`;
//! - a flag given twice: the last value wins (clap would refuse);
//! - list flags (`StringSlice`): repeated and comma-separated values accumulate;
//! - arguments that are not flags: pflag keeps them aside and upstream ignores them; here they
//!   are accepted and reported;
//! - one-letter flags with one dash: `-v=3`, `-v 3`, `-v3` (klog's `v`, the only one-letter
//!   flag upstream has, is declared with `short` in [`crate::klog`]).
//!
//! Upstream flags that are parsed but not acted on live in a [`FlagTable`] flattened into the
//! configuration as [`Unimplemented`], instead of one dead struct field each. Each is reported
//! with exactly one warning, and only when its value differs from upstream's default: at the
//! default the flag changes nothing upstream either (unless the default itself turns a feature
//! on; those are listed in the README, generated from the tables).

use std::any::TypeId;
use std::marker::PhantomData;
use std::time::Duration;

use clap::builder::ValueParser;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

/// A flag's value syntax, as upstream declares it (`pflag.Bool`, `pflag.String`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `pflag.Bool`: `strconv.ParseBool`, bare flag means true.
    Bool,
    /// `pflag.Int`/`Int32`/`Uint64`…: `strconv.ParseInt` with base prefixes.
    Int,
    /// `pflag.String`: any text.
    Str,
    /// `pflag.StringSlice`: comma-separated, repeatable, accumulating.
    StrSlice,
    /// `pflag.Duration`: Go duration text (`30s`, `1m30s`).
    Duration,
}

/// One upstream flag this project accepts without implementing.
#[derive(Debug)]
pub struct GoFlag {
    /// The flag's name, without dashes.
    pub name: &'static str,
    /// Its value syntax.
    pub kind: Kind,
    /// Upstream's default, in the text form of `common/upstream-flags/*.txt`.
    pub default: &'static str,
    /// What the flag does upstream (shown in `--help` and the README).
    pub upstream: &'static str,
}

/// A [`GoFlag`] table row.
pub const fn flag(
    name: &'static str,
    kind: Kind,
    default: &'static str,
    upstream: &'static str,
) -> GoFlag {
    GoFlag {
        name,
        kind,
        default,
        upstream,
    }
}

/// A binary's list of accepted-but-not-implemented upstream flags.
pub trait FlagTable: std::fmt::Debug + Clone + Send + Sync + 'static {
    /// The flags, in upstream's order.
    const FLAGS: &'static [GoFlag];
}

/// Id of the catch-all for arguments that are not flags.
const POSITIONAL: &str = "ignored-positional-arguments";

/// The [`FlagTable`] flags given on the command line and the stray positional arguments,
/// flattened into a clap configuration with `#[command(flatten)]`.
#[derive(Debug, Clone)]
pub struct Unimplemented<T> {
    /// Flags given on the command line, with their values (normalised; lists comma-joined).
    pub given: Vec<(&'static GoFlag, String)>,
    /// Arguments that are not flags (pflag ignores them too).
    pub positional: Vec<String>,
    table: PhantomData<T>,
}

impl<T: FlagTable> Unimplemented<T> {
    /// One warning per flag set to a value other than upstream's default, and one for stray
    /// positional arguments; empty when upstream's arguments change nothing here.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .given
            .iter()
            .filter(|(flag, value)| !same_value(flag.kind, value, flag.default))
            .map(|(flag, value)| {
                format!(
                    "--{}={value}: accepted for compatibility with upstream Kube-OVN but not \
                     implemented, ignored (upstream: {})",
                    flag.name, flag.upstream
                )
            })
            .collect();
        if !self.positional.is_empty() {
            out.push(format!(
                "ignoring arguments that are not flags, as upstream does: {:?}",
                self.positional
            ));
        }
        out
    }

    /// The value given for `name` on the command line, if any.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.given
            .iter()
            .find(|(f, _)| f.name == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether two texts are the same value of a flag of `kind`.
fn same_value(kind: Kind, a: &str, b: &str) -> bool {
    match kind {
        Kind::Bool => go_bool(a).ok() == go_bool(b).ok(),
        Kind::Int => go_int::<i64>(a).ok() == go_int::<i64>(b).ok(),
        Kind::Duration => match (go_duration(a), go_duration(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => a == b,
        },
        Kind::Str | Kind::StrSlice => a == b,
    }
}

impl<T: FlagTable> Args for Unimplemented<T> {
    fn augment_args(cmd: Command) -> Command {
        let cmd = cmd.arg(
            Arg::new(POSITIONAL)
                .num_args(0..)
                .action(ArgAction::Append)
                .hide(true),
        );
        T::FLAGS.iter().fold(cmd, |cmd, f| {
            let arg = Arg::new(f.name)
                .long(f.name)
                .help(format!("{} [upstream flag, not implemented]", f.upstream))
                .help_heading("Upstream flags accepted but not implemented");
            let arg = match f.kind {
                Kind::Bool => go_bool_arg(arg).value_parser(normalised(go_bool)),
                Kind::Int => arg.value_parser(normalised(go_int::<i64>)),
                Kind::Duration => arg.value_parser(normalised(go_duration)),
                Kind::Str => arg.value_parser(ValueParser::string()),
                Kind::StrSlice => arg
                    .action(ArgAction::Append)
                    .value_delimiter(',')
                    .value_parser(ValueParser::string()),
            };
            let arg = if f.default.is_empty() {
                arg
            } else {
                arg.default_value(f.default)
            };
            cmd.arg(arg)
        })
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

/// A value parser that validates with `parse` and keeps the text.
fn normalised<V: 'static>(parse: fn(&str) -> Result<V, String>) -> ValueParser {
    ValueParser::new(move |s: &str| parse(s).map(|_| s.to_string()))
}

impl<T: FlagTable> FromArgMatches for Unimplemented<T> {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let given = T::FLAGS
            .iter()
            .filter(|f| m.value_source(f.name) == Some(ValueSource::CommandLine))
            .map(|f| {
                let values: Vec<String> = m
                    .get_many::<String>(f.name)
                    .map(|v| v.cloned().collect())
                    .unwrap_or_default();
                (f, values.join(","))
            })
            .collect();
        let positional = m
            .get_many::<String>(POSITIONAL)
            .map(|v| v.cloned().collect())
            .unwrap_or_default();
        Ok(Unimplemented {
            given,
            positional,
            table: PhantomData,
        })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

/// Makes a boolean argument read like pflag's: bare means true, a value only after `=`.
fn go_bool_arg(arg: Arg) -> Arg {
    arg.action(ArgAction::Set)
        .num_args(0..=1)
        .require_equals(true)
        .default_missing_value("true")
}

/// Rewrites a derived clap command so it reads arguments as pflag does (see the module
/// documentation): the last of repeated flags wins, booleans and integers take Go's syntax.
pub fn go_style(cmd: Command) -> Command {
    cmd.args_override_self(true).mut_args(|arg| {
        if arg.get_long().is_none() || !matches!(arg.get_action(), ArgAction::Set) {
            return arg;
        }
        let ty = arg.get_value_parser().type_id();
        if ty == TypeId::of::<bool>() {
            go_bool_arg(arg).value_parser(go_bool as fn(&str) -> Result<bool, String>)
        } else if ty == TypeId::of::<u8>() {
            arg.value_parser(go_int::<u8> as fn(&str) -> Result<u8, String>)
        } else if ty == TypeId::of::<u16>() {
            arg.value_parser(go_int::<u16> as fn(&str) -> Result<u16, String>)
        } else if ty == TypeId::of::<u32>() {
            arg.value_parser(go_int::<u32> as fn(&str) -> Result<u32, String>)
        } else if ty == TypeId::of::<u64>() {
            arg.value_parser(go_int::<u64> as fn(&str) -> Result<u64, String>)
        } else if ty == TypeId::of::<i32>() {
            arg.value_parser(go_int::<i32> as fn(&str) -> Result<i32, String>)
        } else if ty == TypeId::of::<i64>() {
            arg.value_parser(go_int::<i64> as fn(&str) -> Result<i64, String>)
        } else {
            arg
        }
    })
}

/// Parses a derived configuration from `args` (program name first) as pflag would.
pub fn try_parse_go<C, I, S>(args: I) -> Result<C, clap::Error>
where
    C: clap::CommandFactory + FromArgMatches,
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let mut cmd = go_style(C::command());
    let matches = cmd.try_get_matches_from_mut(args)?;
    C::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

/// Parses the process's arguments as pflag would; prints help/errors and exits like clap.
pub fn parse_go<C: clap::CommandFactory + FromArgMatches>() -> C {
    try_parse_go(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// Go's `strconv.ParseBool`.
pub fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "invalid boolean {s:?} (Go syntax: true, false, 1, 0, t, f)"
        )),
    }
}

/// Go's `strconv.ParseInt(s, 0, …)`: optional sign, `0x`/`0o`/`0b`/leading-`0` bases, `_`
/// between digits, checked against `T`'s range.
pub fn go_int<T: TryFrom<i128>>(s: &str) -> Result<T, String> {
    let bad = || format!("invalid integer {s:?}");
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    // Go allows `_` only with a base prefix or between digits of a literal; reject the edges.
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return Err(bad());
    }
    let magnitude = i128::from_str_radix(&digits.replace('_', ""), radix).map_err(|_| bad())?;
    let value = if neg { -magnitude } else { magnitude };
    T::try_from(value).map_err(|_| format!("integer {s:?} out of range"))
}

/// Go's `time.ParseDuration`: `300ms`, `-1.5h`, `2h45m`; a bare `0` is zero.
pub fn go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}");
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return Err(bad());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let negative = rest.starts_with('-');
    if negative {
        rest = &rest[1..];
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(digits);
        if num.is_empty() || num == "." {
            return Err(bad());
        }
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let secs = match unit {
            "ns" => value / 1e9,
            "us" | "µs" | "μs" => value / 1e6,
            "ms" => value / 1e3,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(secs);
        rest = next;
    }
    if negative && !total.is_zero() {
        // Negative durations exist in Go; none of upstream's duration flags allow one.
        return Err(format!("negative duration {s:?}"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Clone)]
    struct Table;
    impl FlagTable for Table {
        const FLAGS: &'static [GoFlag] = &[
            GoFlag {
                name: "enable-x",
                kind: Kind::Bool,
                default: "true",
                upstream: "x",
            },
            GoFlag {
                name: "count",
                kind: Kind::Int,
                default: "100",
                upstream: "count",
            },
            GoFlag {
                name: "suites",
                kind: Kind::StrSlice,
                default: "",
                upstream: "suites",
            },
            GoFlag {
                name: "dir",
                kind: Kind::Str,
                default: "/var",
                upstream: "dir",
            },
        ];
    }

    #[derive(Parser, Debug)]
    struct Cli {
        #[arg(long = "flag", default_value_t = false, action = ArgAction::Set)]
        flag: bool,
        #[arg(long = "port", default_value_t = 10)]
        port: u16,
        #[arg(long = "name", default_value = "a")]
        name: String,
        #[command(flatten)]
        rest: Unimplemented<Table>,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        try_parse_go(std::iter::once("x").chain(args.iter().copied()))
    }

    #[test]
    fn go_booleans() {
        assert!(parse(&["--flag"]).unwrap().flag);
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert!(parse(&[&format!("--flag={t}")]).unwrap().flag, "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert!(!parse(&[&format!("--flag={f}")]).unwrap().flag, "{f}");
        }
        assert!(parse(&["--flag=yes"]).is_err());
        // Like pflag: the next argument is not the boolean's value but a positional one.
        let c = parse(&["--flag", "false"]).unwrap();
        assert!(c.flag);
        assert_eq!(c.rest.positional, ["false"]);
        assert_eq!(c.rest.warnings().len(), 1);
    }

    #[test]
    fn go_integers_and_repeats() {
        assert_eq!(parse(&["--port=0x10"]).unwrap().port, 16);
        assert_eq!(parse(&["--port", "010"]).unwrap().port, 8);
        assert_eq!(parse(&["--port=1_000"]).unwrap().port, 1000);
        assert!(parse(&["--port=70000"]).is_err());
        assert!(parse(&["--port=-1"]).is_err());
        assert!(parse(&["--port=1e3"]).is_err());
        let c = parse(&["--name=b", "--name", "c", "--port=1", "--port=2"]).unwrap();
        assert_eq!((c.name.as_str(), c.port), ("c", 2));
        assert!(parse(&["--nope=1"]).is_err());
    }

    #[test]
    fn unimplemented_flags_warn_only_off_default() {
        let c = parse(&["--enable-x=True", "--count=0x64", "--dir=/var"]).unwrap();
        assert_eq!(c.rest.given.len(), 3);
        assert!(c.rest.warnings().is_empty(), "{:?}", c.rest.warnings());
        let c = parse(&[
            "--enable-x=false",
            "--count=7",
            "--suites=A,B",
            "--suites=C",
            "--enable-x",
        ])
        .unwrap();
        assert_eq!(c.rest.value("suites"), Some("A,B,C"));
        assert_eq!(c.rest.value("enable-x"), Some("true"));
        let w = c.rest.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("--count=7") && w[1].contains("--suites=A,B,C"));
        assert!(parse(&["--count=x"]).is_err());
        assert!(parse(&["--enable-x=2"]).is_err());
        assert!(parse(&[]).unwrap().rest.given.is_empty());
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(go_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(go_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(go_duration(".5s").unwrap(), Duration::from_millis(500));
        assert_eq!(go_duration("0").unwrap(), Duration::ZERO);
        for bad in ["10", "", "s", "1x", "-1s", "1.s.", "."] {
            assert!(go_duration(bad).is_err(), "{bad}");
        }
    }
}
