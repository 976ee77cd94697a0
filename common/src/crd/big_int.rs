//! Address counts that outgrow 64 bits.
//!
//! Upstream stores subnet and IP-pool usage counters as arbitrary-precision
//! integers written as bare JSON numbers (an IPv6 /48 has 2^80 addresses), and
//! also accepts them as quoted strings. The CRD types them as `number`.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A signed address count, exact within ±2^127.
///
/// Writing is exact. Reading is exact up to `u64::MAX` (an IPv6 /64); above
/// that serde_json (without its `arbitrary_precision` feature, which would
/// change number handling for the whole workspace) delivers a float, so the
/// count is rounded to f64 precision. These are status counters the
/// controller recomputes from IPAM, so only what we write has to be exact.
/// Counts beyond ±2^127 (IPv6 subnets of /0 or /1) saturate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BigInt(pub i128);

impl BigInt {
    /// Zero, the value upstream writes before it has counted anything.
    pub const ZERO: BigInt = BigInt(0);

    /// The count as a float, for metrics and printer columns.
    pub fn to_f64(self) -> f64 {
        self.0 as f64
    }

    /// Adds, saturating rather than wrapping so a counter never flips sign.
    pub fn saturating_add(self, other: BigInt) -> BigInt {
        BigInt(self.0.saturating_add(other.0))
    }

    /// Subtracts, saturating rather than wrapping so a counter never flips sign.
    pub fn saturating_sub(self, other: BigInt) -> BigInt {
        BigInt(self.0.saturating_sub(other.0))
    }
}

impl From<i64> for BigInt {
    fn from(v: i64) -> Self {
        BigInt(v.into())
    }
}

impl From<u64> for BigInt {
    fn from(v: u64) -> Self {
        BigInt(v.into())
    }
}

impl From<u128> for BigInt {
    fn from(v: u128) -> Self {
        BigInt(i128::try_from(v).unwrap_or(i128::MAX))
    }
}

impl fmt::Display for BigInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for BigInt {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(BigInt)
    }
}

impl Serialize for BigInt {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Small values go out as 64-bit integers so every format can carry them.
        if let Ok(v) = i64::try_from(self.0) {
            serializer.serialize_i64(v)
        } else if let Ok(v) = u64::try_from(self.0) {
            serializer.serialize_u64(v)
        } else {
            serializer.serialize_i128(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for BigInt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BigIntVisitor)
    }
}

struct BigIntVisitor;

impl<'de> Visitor<'de> for BigIntVisitor {
    type Value = BigInt;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer, or a string holding one")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<BigInt, E> {
        Ok(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<BigInt, E> {
        Ok(v.into())
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<BigInt, E> {
        Ok(BigInt(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<BigInt, E> {
        Ok(v.into())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<BigInt, E> {
        if v.is_finite() && v.fract() == 0.0 {
            // `as` saturates at the i128 bounds, which is the documented behaviour.
            Ok(BigInt(v as i128))
        } else {
            Err(E::invalid_value(de::Unexpected::Float(v), &self))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<BigInt, E> {
        v.parse()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }

    // Go leaves the value at zero when it reads `null`; so do we.
    fn visit_unit<E: de::Error>(self) -> Result<BigInt, E> {
        Ok(BigInt::ZERO)
    }

    fn visit_none<E: de::Error>(self) -> Result<BigInt, E> {
        Ok(BigInt::ZERO)
    }
}

impl JsonSchema for BigInt {
    fn schema_name() -> Cow<'static, str> {
        "BigInt".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "number" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_strings_and_null_like_upstream() {
        let v: Vec<BigInt> = serde_json::from_str(r#"[0, 253, "65533", null, -1]"#).unwrap();
        assert_eq!(v, [0i64, 253, 65533, 0, -1].map(BigInt::from));
    }

    #[test]
    fn ipv6_sized_counts() {
        // 2^64 - 2 (a /64 less two reserved addresses) is read exactly.
        let text = "18446744073709551614";
        let v: BigInt = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), text);
        // 2^80 - 2 (a /48) is written exactly; serde_json hands it back as a
        // float, so reading it is exact only to f64 precision.
        let v = BigInt((1i128 << 80) - 2);
        let text = serde_json::to_string(&v).unwrap();
        assert_eq!(text, "1208925819614629174706174");
        let back: BigInt = serde_json::from_str(&text).unwrap();
        assert!((back.0 - v.0).abs() <= 1 << 28, "{back} vs {v}");
    }
}
