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
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` or `aa-bb-…` (any case) into the canonical form; refuses
/// multicast addresses, which no NIC may use.
pub fn normalize(mac: &str) -> Result<String> {
    let parts: Vec<&str> = mac.trim().split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(Error::InvalidMac(mac.to_string()));
    }
    let mut b = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(Error::InvalidMac(mac.to_string()));
        }
        b[i] = u8::from_str_radix(p, 16).map_err(|_| Error::InvalidMac(mac.to_string()))?;
    }
    if b[0] & 1 == 1 {
        return Err(Error::InvalidMac(mac.to_string()));
    }
    Ok(format(&b))
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
}
