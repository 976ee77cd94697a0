//! CNI specification versions this plugin speaks.
//!
//! Upstream kube-ovn accepts every released spec version (it hands libcni's full list to its
//! skeleton), so a configuration that works there must work here: the set below is that list,
//! matched exactly as strings, as libcni does.

use std::fmt;

/// One released CNI specification version. Ordered oldest first so that "at least 0.4.0"
/// checks read naturally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    /// The initial spec; a configuration without `cniVersion` means this one.
    V0_1_0,
    /// Adds VERSION; results still use the legacy `ip4`/`ip6` shape.
    V0_2_0,
    /// Rich results (`interfaces`, `ips` with `version`) and chaining.
    V0_3_0,
    /// Typo fix of 0.3.0; the version kube-ovn's shipped conflist uses.
    V0_3_1,
    /// Adds CHECK and `prevResult` on DEL.
    V0_4_0,
    /// Drops `version` from `ips`.
    V1_0_0,
    /// Adds STATUS, GC and interface `mtu`.
    V1_1_0,
}

/// How a result must be shaped for a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultShape {
    /// 0.1.0 and 0.2.0: one `ip4` and one `ip6` object.
    Legacy,
    /// 0.3.x and 0.4.0: `interfaces`, `ips` carrying `version`.
    V0_3,
    /// 1.x: as 0.3 without `version`; `mtu` on interfaces from 1.1.0.
    V1,
}

impl CniVersion {
    /// Every version we accept, oldest first, as VERSION reports them.
    pub const ALL: [CniVersion; 7] = [
        CniVersion::V0_1_0,
        CniVersion::V0_2_0,
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];

    /// The newest version, used where no configuration tells us which one is in use.
    pub const LATEST: CniVersion = CniVersion::V1_1_0;

    /// The spec's spelling, which is what goes on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_1_0 => "0.1.0",
            CniVersion::V0_2_0 => "0.2.0",
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// Exact match against the released versions; anything else ("1.0", "2.0.0") is not one
    /// we can promise to speak.
    pub fn parse(s: &str) -> Option<CniVersion> {
        CniVersion::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Result layout the runtime expects back for this version.
    pub fn result_shape(self) -> ResultShape {
        match self {
            CniVersion::V0_1_0 | CniVersion::V0_2_0 => ResultShape::Legacy,
            CniVersion::V0_3_0 | CniVersion::V0_3_1 | CniVersion::V0_4_0 => ResultShape::V0_3,
            CniVersion::V1_0_0 | CniVersion::V1_1_0 => ResultShape::V1,
        }
    }

    /// The supported list as the VERSION answer and error details spell it.
    pub fn all_strings() -> Vec<&'static str> {
        CniVersion::ALL.iter().map(|v| v.as_str()).collect()
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly_the_released_versions() {
        for v in CniVersion::ALL {
            assert_eq!(CniVersion::parse(v.as_str()), Some(v));
        }
        for bad in ["", "1.0", "1.2.0", "0.3.1 ", "v1.0.0", "1.1.0-rc1"] {
            assert_eq!(CniVersion::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn versions_are_ordered_and_shaped() {
        assert!(CniVersion::V0_3_1 < CniVersion::V0_4_0);
        assert!(CniVersion::V1_0_0 < CniVersion::V1_1_0);
        assert_eq!(CniVersion::V0_2_0.result_shape(), ResultShape::Legacy);
        assert_eq!(CniVersion::V0_4_0.result_shape(), ResultShape::V0_3);
        assert_eq!(CniVersion::V1_1_0.result_shape(), ResultShape::V1);
        assert_eq!(CniVersion::LATEST, *CniVersion::ALL.last().unwrap());
    }
}
