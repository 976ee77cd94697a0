//! The spec's error result: what the runtime reads from stdout when the plugin exits non-zero.
//! The codes decide what the runtime does next (retry on 11, skip cleanup on 3, …), so every
//! failure is classified here rather than where it happens.

use serde_json::{json, Value};

use crate::version::CniVersion;

/// The error codes of the spec this plugin can emit (2, "unsupported field", has no use: every
/// field we read is upstream's, and upstream rejects none by value), plus the two conventions libcni-based plugins (upstream
/// kube-ovn included) also use: 8 for a bad netns and 999 for anything unclassified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 1: the configuration's `cniVersion` (or the command at that version) is not supported.
    IncompatibleVersion,
    /// 3: the container (its netns) does not exist; the runtime need not clean up.
    UnknownContainer,
    /// 4: a required `CNI_*` variable is missing or malformed.
    InvalidEnvironment,
    /// 5: reading stdin failed.
    Io,
    /// 6: stdin (or a part of it such as `prevResult`) is not the JSON we expect.
    Decode,
    /// 7: the JSON decoded but the configuration is not valid.
    InvalidConfig,
    /// 8: `CNI_NETNS` is unusable (it is the plugin's own namespace).
    InvalidNetns,
    /// 11: a transient condition; upstream reports every daemon RPC failure this way.
    TryAgainLater,
    /// 50: STATUS: the plugin cannot serve ADD (its daemon is unreachable).
    PluginNotAvailable,
    /// 999: anything else, e.g. a daemon answer we cannot turn into a result.
    Internal,
}

impl ErrorCode {
    /// The number that goes on the wire.
    pub fn as_u32(self) -> u32 {
        match self {
            ErrorCode::IncompatibleVersion => 1,
            ErrorCode::UnknownContainer => 3,
            ErrorCode::InvalidEnvironment => 4,
            ErrorCode::Io => 5,
            ErrorCode::Decode => 6,
            ErrorCode::InvalidConfig => 7,
            ErrorCode::InvalidNetns => 8,
            ErrorCode::TryAgainLater => 11,
            ErrorCode::PluginNotAvailable => 50,
            ErrorCode::Internal => 999,
        }
    }
}

/// A failed CNI operation as the runtime will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// Classification the runtime acts on.
    pub code: ErrorCode,
    /// Short characterisation, stable enough to grep logs for.
    pub msg: String,
    /// The specifics (names, paths, the daemon's own message).
    pub details: String,
}

impl CniError {
    /// Builds an error from its three parts.
    pub fn new(code: ErrorCode, msg: impl Into<String>, details: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The spec's error object for the version in use.
    pub fn to_json(&self, version: CniVersion) -> Value {
        json!({
            "cniVersion": version.as_str(),
            "code": self.code.as_u32(),
            "msg": self.msg,
            "details": self.details,
        })
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.msg)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_matches_the_spec_example() {
        // SPEC.md, "Error": the example object, field for field.
        let e = CniError::new(
            ErrorCode::InvalidConfig,
            "Invalid Configuration",
            "Network 192.168.0.0/31 too small to allocate from.",
        );
        assert_eq!(
            e.to_json(CniVersion::V1_1_0),
            json!({
                "cniVersion": "1.1.0",
                "code": 7,
                "msg": "Invalid Configuration",
                "details": "Network 192.168.0.0/31 too small to allocate from."
            })
        );
    }

    #[test]
    fn codes_are_the_reserved_numbers() {
        let pairs = [
            (ErrorCode::IncompatibleVersion, 1),
            (ErrorCode::UnknownContainer, 3),
            (ErrorCode::InvalidEnvironment, 4),
            (ErrorCode::Io, 5),
            (ErrorCode::Decode, 6),
            (ErrorCode::InvalidConfig, 7),
            (ErrorCode::InvalidNetns, 8),
            (ErrorCode::TryAgainLater, 11),
            (ErrorCode::PluginNotAvailable, 50),
            (ErrorCode::Internal, 999),
        ];
        for (code, n) in pairs {
            assert_eq!(code.as_u32(), n, "{code:?}");
        }
    }

    #[test]
    fn error_json_carries_the_version_in_use() {
        let e = CniError::new(ErrorCode::TryAgainLater, "RPC failed", "");
        let j = e.to_json(CniVersion::V0_3_1);
        assert_eq!(j["cniVersion"], "0.3.1");
        assert_eq!(j["code"], 11);
        assert_eq!(j["details"], "");
        assert_eq!(e.to_string(), "RPC failed");
    }
}
