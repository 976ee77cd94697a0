//! Writes or checks the install manifests of `dist/manifests` (service accounts and RBAC,
//! ovn-central, ovs-ovn, kube-ovn-controller, kube-ovn-cni, ConfigMaps), generated from the
//! typed objects of `kube_ovn_common::manifests`.
//!
//! ```text
//! kube-ovn-manifests --out DIR      # write every file (the committed copy is dist/manifests)
//! kube-ovn-manifests --check DIR    # exit 1 if DIR differs from what the generator writes
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kube_ovn_common::manifests;

enum Mode {
    Write(PathBuf),
    Check(PathBuf),
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Mode, String> {
    let mode = match args.next().as_deref() {
        Some("--out") => Mode::Write(args.next().ok_or("--out needs a directory")?.into()),
        Some("--check") => Mode::Check(args.next().ok_or("--check needs a directory")?.into()),
        Some("-h" | "--help") | None => return Err(String::new()),
        Some(other) => return Err(format!("unknown argument {other:?}")),
    };
    match args.next() {
        Some(extra) => Err(format!("unexpected argument {extra:?}")),
        None => Ok(mode),
    }
}

/// The `*.yaml` files of `dir` that the generator does not write.
fn strangers(dir: &Path, files: &[manifests::File]) -> Result<Vec<String>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    let mut out: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && !files.iter().any(|f| f.name == n))
        .collect();
    out.sort();
    Ok(out)
}

fn run(mode: Mode) -> Result<(), String> {
    let files = manifests::files()?;
    match mode {
        Mode::Write(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for f in &files {
                let path = dir.join(f.name);
                std::fs::write(&path, &f.text)
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
            }
            for stale in strangers(&dir, &files)? {
                let path = dir.join(&stale);
                std::fs::remove_file(&path)
                    .map_err(|e| format!("removing {}: {e}", path.display()))?;
            }
            Ok(())
        }
        Mode::Check(dir) => {
            let mut stale = strangers(&dir, &files)?;
            for f in &files {
                let path = dir.join(f.name);
                if std::fs::read_to_string(&path).ok().as_deref() != Some(f.text.as_str()) {
                    stale.push(f.name.to_string());
                }
            }
            if stale.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} is out of date ({}); regenerate with: {}",
                    dir.display(),
                    stale.join(", "),
                    manifests::REGENERATE
                ))
            }
        }
    }
}

fn main() -> ExitCode {
    let mode = match parse(std::env::args().skip(1)) {
        Ok(mode) => mode,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("kube-ovn-manifests: {why}");
            }
            eprintln!("usage: kube-ovn-manifests --out DIR | --check DIR");
            return ExitCode::from(2);
        }
    };
    match run(mode) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-ovn-manifests: {e}");
            ExitCode::FAILURE
        }
    }
}
