//! MAC addresses as OVN and upstream write them: lowercase, colon-separated; random ones are
//! locally administered unicast.

use crate::error::{Error, Result};

/// A random locally-administered unicast MAC.
pub fn random() -> String {
    let mut b = [0u8; 6];
    // The OS random source failing is not something a controller can recover from sensibly;
    // fall back to a time-derived value rather than aborting.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b.copy_from_slice(&t.to_le_bytes()[..6]);
    }
    b[0] = (b[0] | 0x02) & 0xfe;
    format(&b)
}

fn format(b: &[u8; 6]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(17);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{x:02x}");
    }
    out
}

/// Parses `aa:bb:cc:dd:ee:ff` or `aa-bb-…` (any case) into the canonical form; refuses
/// multicast addresses, which no NIC may use.
pub fn normalize(mac: &str) -> Result<String> {
    let bad = || Error::InvalidMac(mac.to_string());
    let mut b = [0u8; 6];
    let mut parts = mac.trim().split([':', '-']);
    for byte in b.iter_mut() {
        let p = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
        *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() || b[0] & 1 == 1 {
        return Err(bad());
    }
    Ok(format(&b))
}

/// Whether `mac` (any case, `:` or `-`) is the canonical `canonical`, without allocating.
pub fn same(mac: &str, canonical: &str) -> bool {
    let mac = mac.trim();
    mac.len() == canonical.len()
        && mac
            .bytes()
            .zip(canonical.bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == b || (a == b'-' && b == b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_macs_are_local_unicast_and_canonical() {
        for _ in 0..100 {
            let m = random();
            assert_eq!(normalize(&m).unwrap(), m);
            let first = u8::from_str_radix(&m[..2], 16).unwrap();
            assert_eq!(first & 0b11, 0b10, "{m}");
        }
    }

    #[test]
    fn normalizes_and_refuses_garbage() {
        assert_eq!(normalize("0A-00-00-00-00-01").unwrap(), "0a:00:00:00:00:01");
        for bad in [
            "",
            "0a:00:00:00:00",
            "0a:00:00:00:00:0g",
            "01:00:5e:00:00:01",
            "0a:00:00:00:00:001",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn same_compares_with_the_canonical_form() {
        assert!(same("0A-00-00-00-00-01", "0a:00:00:00:00:01"));
        assert!(same(" 0a:00:00:00:00:01", "0a:00:00:00:00:01"));
        assert!(!same("0a:00:00:00:00:02", "0a:00:00:00:00:01"));
        assert!(!same("0a:00:00:00:00:0", "0a:00:00:00:00:01"));
    }
}
