//! The one thing upstream's shim itself does inside the pod: switch IPv6 on. Runtimes that
//! create the namespace with IPv6 disabled (Docker's "none" network does) would otherwise
//! make the daemon's IPv6 address and gateway setup fail, and upstream's daemon relies on the
//! shim for this, so it stays here for compatibility with either daemon.

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{CniError, ErrorCode};

/// `net.ipv6.conf.{all,default}.<key>` values upstream's shim enforces.
const IPV6_SYSCTLS: [(&str, &str); 2] = [("disable_ipv6", "0"), ("accept_ra", "0")];

/// Refuses a `CNI_NETNS` that is the plugin's own namespace (usually the host's): writing
/// sysctls there would reconfigure the node. libcni's skeleton rejects it too, with code 8.
pub fn ensure_foreign(netns: &Path) -> Result<(), CniError> {
    let target = std::fs::metadata(netns).map_err(|e| missing_or_internal(netns, e))?;
    let own = std::fs::metadata("/proc/thread-self/ns/net").map_err(|e| {
        CniError::new(
            ErrorCode::Internal,
            "failed to inspect own netns",
            e.to_string(),
        )
    })?;
    if (target.dev(), target.ino()) == (own.dev(), own.ino()) {
        return Err(CniError::new(
            ErrorCode::InvalidNetns,
            "plugin's netns and netns from CNI_NETNS should not be the same",
            netns.display().to_string(),
        ));
    }
    Ok(())
}

/// Sets the IPv6 sysctls inside `netns`. Runs on a throwaway thread, since entering a
/// namespace changes only the calling thread and that thread must not serve anything else.
/// Sysctls the kernel lacks (IPv6 compiled out) or forbids us to change are skipped, as
/// upstream does.
pub fn enable_ipv6(netns: &Path) -> Result<(), CniError> {
    let ns = File::open(netns).map_err(|e| missing_or_internal(netns, e))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a valid namespace fd only changes this thread's namespace.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                let e = std::io::Error::last_os_error();
                return Err(CniError::new(
                    ErrorCode::Internal,
                    format!("failed to enter netns {}", netns.display()),
                    e.to_string(),
                ));
            }
            for conf in ["all", "default"] {
                for (key, want) in IPV6_SYSCTLS {
                    set_sysctl(&format!("/proc/sys/net/ipv6/conf/{conf}/{key}"), want)?;
                }
            }
            Ok(())
        })
        .join()
        .expect("the sysctl thread does not panic")
    })
}

fn set_sysctl(path: &str, want: &str) -> Result<(), CniError> {
    let fail = |what: &str, e: std::io::Error| {
        CniError::new(
            ErrorCode::Internal,
            format!("failed to {what} sysctl {path}"),
            e.to_string(),
        )
    };
    let current = match std::fs::read_to_string(path) {
        Ok(v) => v,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail("read", e)),
    };
    if current.trim() == want {
        return Ok(());
    }
    match std::fs::write(path, want) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(fail("set", e)),
    }
}

/// A namespace path that does not exist means the container is gone (code 3: nothing to
/// clean up); anything else is unexpected.
fn missing_or_internal(netns: &Path, e: std::io::Error) -> CniError {
    if e.kind() == ErrorKind::NotFound {
        CniError::new(
            ErrorCode::UnknownContainer,
            "container netns does not exist",
            netns.display().to_string(),
        )
    } else {
        CniError::new(
            ErrorCode::Internal,
            format!("failed to open netns {}", netns.display()),
            e.to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_netns_is_refused() {
        let e = ensure_foreign(Path::new("/proc/self/ns/net")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidNetns);
    }

    #[test]
    fn missing_netns_is_an_unknown_container() {
        let e = ensure_foreign(Path::new("/nonexistent/netns")).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownContainer);
        let e = enable_ipv6(Path::new("/nonexistent/netns")).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownContainer);
    }

    #[test]
    fn a_file_that_is_not_a_netns_cannot_be_entered() {
        let f = tempfile::NamedTempFile::new().unwrap();
        ensure_foreign(f.path()).unwrap();
        let e = enable_ipv6(f.path()).unwrap_err();
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(e.msg.starts_with("failed to enter netns"), "{e}");
    }
}
