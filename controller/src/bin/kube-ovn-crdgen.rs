//! Prints, writes or checks the kubeovn.io CRD bundle generated from the Rust
//! types, refusing to emit schemas a real API server would reject.
//!
//! ```text
//! kube-ovn-crdgen                 # print the bundle
//! kube-ovn-crdgen --out FILE      # write it (the committed copy is dist/crds/kube-ovn-crd.yaml)
//! kube-ovn-crdgen --check FILE    # exit 1 if FILE differs from what the types generate
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use kube_ovn_common::crd;

enum Mode {
    Print,
    Write(PathBuf),
    Check(PathBuf),
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Mode, String> {
    let mode = match args.next().as_deref() {
        None => Mode::Print,
        Some("--out") => Mode::Write(args.next().ok_or("--out needs a file")?.into()),
        Some("--check") => Mode::Check(args.next().ok_or("--check needs a file")?.into()),
        Some("-h" | "--help") => return Err(String::new()),
        Some(other) => return Err(format!("unknown argument {other:?}")),
    };
    match args.next() {
        Some(extra) => Err(format!("unexpected argument {extra:?}")),
        None => Ok(mode),
    }
}

fn main() -> ExitCode {
    let mode = match parse(std::env::args().skip(1)) {
        Ok(mode) => mode,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("kube-ovn-crdgen: {why}");
            }
            eprintln!("usage: kube-ovn-crdgen [--out FILE | --check FILE]");
            return ExitCode::from(2);
        }
    };
    let violations: Vec<String> = crd::all()
        .iter()
        .flat_map(crd::structural::check_crd)
        .collect();
    if !violations.is_empty() {
        eprintln!("kube-ovn-crdgen: the generated CRDs would be rejected by an API server:");
        for v in &violations {
            eprintln!("  {v}");
        }
        return ExitCode::from(2);
    }
    let bundle = crd::bundle_yaml();
    match mode {
        Mode::Print => print!("{bundle}"),
        Mode::Write(path) => {
            if let Err(e) = std::fs::write(&path, &bundle) {
                eprintln!("kube-ovn-crdgen: writing {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
        Mode::Check(path) => match std::fs::read_to_string(&path) {
            Ok(existing) if existing == bundle => {}
            Ok(_) => {
                eprintln!(
                    "kube-ovn-crdgen: {} is out of date; regenerate with: {}",
                    path.display(),
                    crd::REGENERATE
                );
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("kube-ovn-crdgen: reading {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
    }
    ExitCode::SUCCESS
}
