//! Loopback addresses a test owns for as long as it runs, so a process it starts can listen on
//! its upstream default port (the controller's 10660) without colliding with other tests on the
//! same machine, and without a port picked, released and hoped to stay free.
//!
//! 127.0.0.0/8 is all on `lo`; an address is claimed by an exclusive lock on a file named after
//! it under `<tmp>/kos-loopback/` (held by the open file, so a crashed test releases it; the
//! files are left in place, since removing one would let two claimants lock different files of
//! the same name). 127.0.0.x is never handed out (other software uses 127.0.0.1).

use std::fs::{File, OpenOptions, TryLockError};
use std::net::Ipv4Addr;

/// How many random addresses are tried before giving up: there are 254 × 256 × 254 (about 16.5
/// million) candidates, so with n held a try fails with probability n / 16.5 million.
const ATTEMPTS: usize = 64;

/// A claimed loopback address (released when dropped).
#[derive(Debug)]
pub struct Loopback {
    addr: Ipv4Addr,
    _lock: File,
}

impl Loopback {
    /// Claims an address no other test on this machine holds.
    pub fn claim() -> std::io::Result<Loopback> {
        let dir = std::env::temp_dir().join("kos-loopback");
        std::fs::create_dir_all(&dir)?;
        for _ in 0..ATTEMPTS {
            let r = uuid::Uuid::new_v4().as_u128();
            let addr = Ipv4Addr::new(
                127,
                1 + (r % 254) as u8,
                ((r >> 8) % 256) as u8,
                1 + ((r >> 16) % 254) as u8,
            );
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(addr.to_string()))?;
            match file.try_lock() {
                Ok(()) => return Ok(Loopback { addr, _lock: file }),
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(e)) => return Err(e),
            }
        }
        Err(std::io::Error::other(format!(
            "no unclaimed loopback address in {ATTEMPTS} tries"
        )))
    }

    /// The address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_exclusive_and_bindable() {
        let a = Loopback::claim().unwrap();
        let b = Loopback::claim().unwrap();
        assert_ne!(a.addr(), b.addr());
        assert_eq!(a.addr().octets()[0], 127);
        assert_ne!(a.addr().octets()[1], 0);
        // Another claimant of the same address is refused while `a` holds it.
        let again = OpenOptions::new()
            .write(true)
            .open(
                std::env::temp_dir()
                    .join("kos-loopback")
                    .join(a.addr().to_string()),
            )
            .unwrap();
        assert!(matches!(again.try_lock(), Err(TryLockError::WouldBlock)));
        // The address is usable: the port is bound for the listener's life, never released.
        let l = std::net::TcpListener::bind((a.addr(), 0)).unwrap();
        assert_eq!(l.local_addr().unwrap().ip(), a.addr());
    }
}
