//! Ages and timestamps the way the API server prints them: `HumanDuration`
//! (`45s`, `3m20s`, `5h`, `2d3h`, `3y12d`) for "how long ago", and RFC 3339
//! UTC for the default table's `Created At`.

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

/// Parses an RFC 3339 timestamp as stored in object fields.
pub fn parse(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

/// The API server's approximate, ~2-3 significant figure rendering of a duration.
fn human_duration(duration: SignedDuration) -> String {
    let nanos = duration.as_nanos();
    let seconds = nanos / 1_000_000_000;
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let years = hours / 24 / 365;
        return match (hours / 24) % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// A timestamp field's value; `None` when unset (Go's zero time).
pub fn at(field: Option<&Value>) -> Option<Timestamp> {
    field.and_then(Value::as_str).and_then(parse)
}

/// How long before `now` a moment was, or `<unknown>` for the zero time.
pub fn ago(then: Option<Timestamp>, now: Timestamp) -> String {
    match then {
        Some(then) => human_duration(now.duration_since(then)),
        None => "<unknown>".into(),
    }
}

/// How long ago a timestamp field was, or `<unknown>` when it is unset.
pub fn since(field: Option<&Value>, now: Timestamp) -> String {
    ago(at(field), now)
}

/// `metav1.Time` in RFC 3339 at second precision, UTC; the zero time when unset.
pub fn rfc3339_utc(field: Option<&Value>) -> String {
    match at(field) {
        Some(ts) => ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ago(seconds: i64) -> String {
        human_duration(SignedDuration::from_secs(seconds))
    }

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(ago(-5), "<invalid>");
        assert_eq!(ago(-1), "0s");
        assert_eq!(ago(0), "0s");
        assert_eq!(ago(119), "119s");
        assert_eq!(ago(120), "2m");
        assert_eq!(ago(200), "3m20s");
        assert_eq!(ago(10 * 60 + 5), "10m");
        assert_eq!(ago(179 * 60), "179m");
        assert_eq!(ago(3 * 3600), "3h");
        assert_eq!(ago(3 * 3600 + 25 * 60), "3h25m");
        assert_eq!(ago(47 * 3600), "47h");
        assert_eq!(ago(51 * 3600), "2d3h");
        assert_eq!(ago(72 * 3600), "3d");
        assert_eq!(ago(100 * 86400), "100d");
        assert_eq!(ago((3 * 365 + 12) * 86400), "3y12d");
        assert_eq!(ago(9 * 365 * 86400), "9y");
        assert_eq!(
            human_duration(SignedDuration::from_millis(-1500)),
            "0s",
            "a clock skew under two seconds counts as now"
        );
    }

    #[test]
    fn since_and_created_at_read_object_fields() {
        let now: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        assert_eq!(since(Some(&json!("2024-05-01T11:55:00Z")), now), "5m");
        assert_eq!(since(Some(&json!("2024-05-01T13:55:00+02:00")), now), "5m");
        assert_eq!(since(None, now), "<unknown>");
        assert_eq!(since(Some(&json!("garbage")), now), "<unknown>");
        assert_eq!(
            rfc3339_utc(Some(&json!("2024-05-01T13:55:00.25+02:00"))),
            "2024-05-01T11:55:00Z"
        );
        assert_eq!(rfc3339_utc(None), "0001-01-01T00:00:00Z");
    }
}
