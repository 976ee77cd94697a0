//! Durations kept in Go's `time.Duration` text form (`"90s"`, `"1m30s"`).
//!
//! Upstream's BGP settings are `metav1.Duration`, which Go always writes (a
//! zero duration as `"0s"`) and cannot read back from an empty string. Keeping
//! the text verbatim means an object we rewrite is still readable by the Go
//! binaries, whatever spelling the user chose.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// A duration in Go syntax, defaulting to `"0s"` exactly as Go serialises a zero duration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct GoDuration(pub String);

impl Default for GoDuration {
    fn default() -> Self {
        GoDuration("0s".to_owned())
    }
}

impl GoDuration {
    /// Whether this is the zero duration, which upstream treats as "use the built-in default".
    pub fn is_zero(&self) -> bool {
        let digits_zero = self
            .0
            .trim_start_matches(['+', '-'])
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '.')
            .all(|c| c == '0' || c == '.');
        self.0.is_empty() || digits_zero
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_spellings() {
        for z in ["0s", "0", "0ms", "0.0s", "-0s"] {
            assert!(GoDuration(z.into()).is_zero(), "{z}");
        }
        for nz in ["90s", "1m30s", "0.5s"] {
            assert!(!GoDuration(nz.into()).is_zero(), "{nz}");
        }
    }
}
