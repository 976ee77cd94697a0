//! The `kube-ovn` CNI binary: parameters from `CNI_*`, configuration from stdin, the result
//! or the spec's error object on stdout, exit status 0 or 1.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use kube_ovn_cni::env::{Command, EnvError, Invocation};
use kube_ovn_cni::error::{CniError, ErrorCode};
use kube_ovn_cni::netconf::declared_version;
use kube_ovn_cni::plugin;
use kube_ovn_cni::version::CniVersion;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("{}", plugin::about());
        return ExitCode::SUCCESS;
    }
    let inv = match Invocation::from_env(|k| std::env::var(k).ok()) {
        Ok(inv) => inv,
        // Like libcni's skeleton: without CNI_COMMAND a person, not a runtime, is asking.
        Err(EnvError::NoCommand) => {
            eprintln!("{}", plugin::about());
            return ExitCode::SUCCESS;
        }
        // The configuration, if any came, still tells which version to answer in.
        Err(EnvError::Invalid(e)) => {
            let stdin = read_stdin(true).unwrap_or_default();
            return fail(&e, declared_version(&stdin));
        }
    };
    // VERSION's input is optional; do not wait on a terminal for it.
    let stdin = match read_stdin(inv.command == Command::Version) {
        Ok(stdin) => stdin,
        Err(e) => {
            let err = CniError::new(ErrorCode::Io, format!("error reading from stdin: {e}"), "");
            return fail(&err, CniVersion::LATEST);
        }
    };
    let version = declared_version(&stdin);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let err = CniError::new(
                ErrorCode::Internal,
                "failed to start the async runtime",
                e.to_string(),
            );
            return fail(&err, version);
        }
    };
    match runtime.block_on(plugin::run(&inv, &stdin)) {
        Ok(Some(result)) => print(&result),
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => fail(&e, version),
    }
}

fn read_stdin(skip_terminal: bool) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let stdin = std::io::stdin();
    if !(skip_terminal && stdin.is_terminal()) {
        stdin.lock().read_to_end(&mut buf)?;
    }
    Ok(buf)
}

fn fail(e: &CniError, version: CniVersion) -> ExitCode {
    print(&e.to_json(version));
    ExitCode::FAILURE
}

fn print(v: &serde_json::Value) -> ExitCode {
    let text = serde_json::to_string_pretty(v).expect("a JSON value always encodes");
    match writeln!(std::io::stdout().lock(), "{text}") {
        Ok(()) => ExitCode::SUCCESS,
        // Nothing is left to report to; the exit status has to say it.
        Err(_) => ExitCode::FAILURE,
    }
}
