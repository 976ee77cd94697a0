//! Readers for the lists in this directory, shared by the controller's and the daemon's
//! upstream-parity tests (`#[path]`-included, not part of any library).

#![allow(dead_code)] // each test uses the part it needs

use std::path::PathBuf;

/// One upstream flag: `name<TAB>type<TAB>default`.
#[derive(Debug, Clone)]
pub struct UpstreamFlag {
    pub name: String,
    pub kind: String,
    pub default: String,
}

/// One invocation section of `invocations.txt`.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// `controller chart`, `daemon install.sh`, …
    pub label: String,
    /// Where upstream writes it.
    pub source: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../common/upstream-flags")
}

fn read(name: &str) -> String {
    let p = dir().join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The flags of `controller.txt`, `daemon.txt` or `klog.txt`.
pub fn flags(file: &str) -> Vec<UpstreamFlag> {
    read(file)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            let (name, kind, default) = (f.next(), f.next(), f.next());
            UpstreamFlag {
                name: name.expect("name").to_string(),
                kind: kind
                    .unwrap_or_else(|| panic!("{file}: no type in {l:?}"))
                    .to_string(),
                default: default.unwrap_or_default().to_string(),
            }
        })
        .collect()
}

/// The sections of `invocations.txt`.
pub fn invocations() -> Vec<Invocation> {
    let mut out: Vec<Invocation> = Vec::new();
    for line in read("invocations.txt").lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let (label, source) = rest.split_once("] ").expect("section header");
            out.push(Invocation {
                label: label.to_string(),
                source: source.to_string(),
                argv: Vec::new(),
                env: Vec::new(),
            });
            continue;
        }
        let inv = out.last_mut().expect("a section first");
        if let Some(a) = line.strip_prefix("arg ") {
            inv.argv.push(a.to_string());
        } else if let Some(e) = line.strip_prefix("env ") {
            let (k, v) = e.split_once('=').expect("NAME=value");
            inv.env.push((k.to_string(), v.to_string()));
        } else {
            panic!("invocations.txt: unexpected line {line:?}");
        }
    }
    out
}

/// A value of the flag's type that upstream accepts and differs from its default where the
/// type allows, so implemented flags see a real value.
pub fn sample(f: &UpstreamFlag) -> String {
    match f.kind.as_str() {
        "bool" => if f.default == "true" { "false" } else { "true" }.into(),
        "int" | "int32" | "uint64" | "level" => {
            if f.default == "7" {
                "8".into()
            } else {
                "7".into()
            }
        }
        "duration" => "45s".into(),
        "severity" => "WARNING".into(),
        "moduleSpec" => "controller=4".into(),
        "traceLocation" => "main.go:10".into(),
        "stringSlice" => "TLS_AES_128_GCM_SHA256,TLS_AES_256_GCM_SHA384".into(),
        "string" if f.default.is_empty() => "x".into(),
        "string" => f.default.clone(),
        other => panic!("flag {}: unknown type {other}", f.name),
    }
}

/// Whether `ours` (clap's default text) and `upstream`'s default mean the same value of `kind`.
pub fn same_default(kind: &str, ours: &str, upstream: &str) -> bool {
    let int = |s: &str| s.parse::<i64>().ok();
    match kind {
        "bool" => ours == upstream,
        "int" | "int32" | "uint64" | "level" => int(ours).is_some() && int(ours) == int(upstream),
        _ => ours == upstream,
    }
}

/// The argument list a chart or install.sh section hands our binary: the wrapper script's
/// own arguments (`start-controller.sh` adds the OVN addresses, `start-cniserver.sh` the two
/// sockets, `install-cni.sh` `--install-cni-config`) followed by the section's flags.
pub fn binary_argv(inv: &Invocation) -> Vec<String> {
    let script = inv
        .argv
        .iter()
        .find(|a| a.ends_with(".sh"))
        .unwrap_or_else(|| panic!("{}: no start script", inv.label))
        .clone();
    let mut argv = match script.rsplit('/').next() {
        Some("start-controller.sh") => vec![
            "kube-ovn-controller".to_string(),
            "--ovn-nb-addr=tcp:[10.0.0.1]:6641".to_string(),
            "--ovn-sb-addr=tcp:[10.0.0.1]:6642".to_string(),
        ],
        Some("start-cniserver.sh") => vec![
            "kube-ovn-daemon".to_string(),
            "--ovs-socket=/run/openvswitch/db.sock".to_string(),
            "--bind-socket=/run/openvswitch/kube-ovn-daemon.sock".to_string(),
        ],
        Some("install-cni.sh") => vec![
            "kube-ovn-daemon".to_string(),
            "--install-cni-config".to_string(),
        ],
        other => panic!("{}: unknown script {other:?}", inv.label),
    };
    argv.extend(inv.argv.iter().filter(|a| a.starts_with('-')).cloned());
    argv
}

/// The README block listing a binary's accepted-but-not-implemented flags, between markers a
/// test finds; regenerate by pasting the expected block the test prints.
pub fn readme_block(binary: &str, flags: &[kube_ovn_common::goflags::GoFlag]) -> String {
    let mut out = format!(
        "<!-- {binary}: not implemented (generated from its NotImplemented table; a test checks this list) -->\n\n`{binary}`:\n\n"
    );
    for f in flags {
        let default = if f.default.is_empty() {
            "\"\"".to_string()
        } else {
            f.default.to_string()
        };
        let on = if f.kind == kube_ovn_common::goflags::Kind::Bool && f.default == "true" {
            " — **on by default upstream, so missing here even without the flag**"
        } else {
            ""
        };
        out.push_str(&format!(
            "- `--{}` (default `{default}`): {}{on}\n",
            f.name, f.upstream
        ));
    }
    out.push_str(&format!("<!-- {binary}: end -->\n"));
    out
}

/// Checks that README.md contains `block` verbatim.
pub fn assert_readme_has(block: &str) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&p).unwrap();
    assert!(
        readme.contains(block),
        "README.md's list of accepted-but-not-implemented flags is out of date; it should read:\n{block}"
    );
}

/// Asserts that `cmd` (a binary's go-style command) accepts every flag of `upstream` with
/// upstream's default, and that `table` (its not-implemented flags) carries upstream's defaults.
pub fn assert_defaults_equal(
    cmd: &clap::Command,
    upstream: &[UpstreamFlag],
    table: &[kube_ovn_common::goflags::GoFlag],
) {
    for f in upstream {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(f.name.as_str()))
            .unwrap_or_else(|| panic!("--{} is not accepted", f.name));
        let default: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = default.join(",");
        assert!(
            same_default(&f.kind, &default, &f.default),
            "--{}: our default {default:?}, upstream's {:?}",
            f.name,
            f.default
        );
    }
    for f in table {
        let u = upstream
            .iter()
            .find(|u| u.name == f.name)
            .unwrap_or_else(|| panic!("--{} is not upstream's", f.name));
        assert!(same_default(&u.kind, f.default, &u.default), "--{}", f.name);
    }
}

/// What one parse of a binary's command line gave, as the parity checks read it.
pub struct Parsed {
    /// Stray positional arguments left over.
    pub positional: Vec<String>,
    /// The start-up warnings of not-implemented flags.
    pub warnings: Vec<String>,
    /// klog's `-v`.
    pub v: u8,
}

/// Asserts that every flag of `upstream` parses with a value of its type (`--f=v`, and `--f v`
/// or a bare boolean) without leftovers, that all of them parse at once, that each flag of
/// `table` set off its default warns exactly once by name, and that `-v` takes pflag's three
/// one-dash forms.
pub fn assert_every_flag_parses(
    upstream: &[UpstreamFlag],
    table: &[kube_ovn_common::goflags::GoFlag],
    parse: impl Fn(&[String]) -> Result<Parsed, String>,
) {
    let mut all = Vec::new();
    for f in upstream {
        let v = sample(f);
        let joined = format!("--{}={v}", f.name);
        parse(std::slice::from_ref(&joined)).unwrap_or_else(|e| panic!("{joined}: {e}"));
        if f.kind == "bool" {
            parse(&[format!("--{}", f.name)]).unwrap_or_else(|e| panic!("--{}: {e}", f.name));
        } else {
            let split = [format!("--{}", f.name), v.clone()];
            let c = parse(&split).unwrap_or_else(|e| panic!("{split:?}: {e}"));
            assert!(c.positional.is_empty(), "{split:?} left {:?}", c.positional);
        }
        all.push(joined);
    }
    let c = parse(&all).expect("all upstream flags at once");
    assert!(c.positional.is_empty());
    for f in table {
        let n = c
            .warnings
            .iter()
            .filter(|w| w.starts_with(&format!("--{}=", f.name)))
            .count();
        let u = upstream
            .iter()
            .find(|u| u.name == f.name)
            .unwrap_or_else(|| panic!("--{} is not upstream's", f.name));
        let sample_is_default = same_default(&u.kind, &sample(u), f.default);
        assert_eq!(
            n,
            usize::from(!sample_is_default),
            "--{}: {:?}",
            f.name,
            c.warnings
        );
    }
    for v in [["-v=4"].as_slice(), &["-v", "4"], &["-v4"]] {
        let args: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            parse(&args).unwrap_or_else(|e| panic!("{v:?}: {e}")).v,
            4,
            "{v:?}"
        );
    }
}
