//! Go's text renderings of decoded JSON values. Table cells computed from
//! arbitrary object fields must read as the Go API server prints them
//! (`fmt.Print` for scalars, `encoding/json` for maps and lists), because
//! people and scripts compare `kubectl get` output against real clusters.
//!
//! The Go server decodes a JSON number as an `int64` when its text parses as
//! one and as a `float64` otherwise; [`GoNumber`] reproduces that split.

use std::fmt::Write;

use serde_json::{Number, Value};

/// A JSON number as the Go API server holds it after decoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GoNumber {
    /// Text that parses as an `int64`.
    Int(i64),
    /// Anything else (fractions, exponents, integers beyond `int64`).
    Float(f64),
}

impl GoNumber {
    /// Classifies a serde number the way the Go JSON decoder would.
    pub fn of(number: &Number) -> Self {
        match number.as_i64() {
            Some(i) => Self::Int(i),
            None => Self::Float(number.as_f64().unwrap_or_default()),
        }
    }
}

/// `fmt.Print` of a scalar number: integers in decimal, floats in `%v` form.
pub fn print_number(number: &Number) -> String {
    match GoNumber::of(number) {
        GoNumber::Int(i) => i.to_string(),
        GoNumber::Float(f) => float_v(f),
    }
}

/// A `float64` cell as `encoding/json` writes it: whole values without a
/// fraction, which serde_json would otherwise print as `3.0`.
pub fn float_cell(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.2e18 {
        Value::from(f as i64)
    } else {
        Value::from(f)
    }
}

/// The shortest decimal digits of `f` (no sign, no leading zeros) and the
/// decimal exponent of the first digit, as strconv's shortest formatting finds them.
fn shortest_digits(f: f64) -> (String, i32) {
    let scientific = format!("{:e}", f.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    (mantissa.replace('.', ""), exponent.parse().unwrap_or(0))
}

/// `%e` with shortest digits: `d.ddde±XX`, at least two exponent digits.
fn exponent_form(negative: bool, digits: &str, exponent: i32) -> String {
    let mut out = String::from(if negative { "-" } else { "" });
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    let sign = if exponent < 0 { '-' } else { '+' };
    let _ = write!(out, "e{sign}{:02}", exponent.unsigned_abs());
    out
}

/// `%f` with shortest digits.
fn fixed_form(negative: bool, digits: &str, exponent: i32) -> String {
    let mut out = String::from(if negative { "-" } else { "" });
    if exponent < 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exponent - 1) as usize));
        out.push_str(digits);
        return out;
    }
    let integer_len = exponent as usize + 1;
    if digits.len() <= integer_len {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', integer_len - digits.len()));
    } else {
        out.push_str(&digits[..integer_len]);
        out.push('.');
        out.push_str(&digits[integer_len..]);
    }
    out
}

/// Go's `%v` for a `float64`: shortest digits, exponent form outside 1e-4..1e6.
fn float_v(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    let (digits, exponent) = shortest_digits(f);
    if !(-4..6).contains(&exponent) {
        exponent_form(f < 0.0, &digits, exponent)
    } else {
        fixed_form(f < 0.0, &digits, exponent)
    }
}

/// `encoding/json` for a `float64`: fixed notation between 1e-6 and 1e21,
/// otherwise an exponent without a zero-padded negative exponent.
fn float_json(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    let (digits, exponent) = shortest_digits(f);
    let abs = f.abs();
    if !(1e-6..1e21).contains(&abs) {
        exponent_form(f < 0.0, &digits, exponent).replace("e-0", "e-")
    } else {
        fixed_form(f < 0.0, &digits, exponent)
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_json(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match GoNumber::of(n) {
            GoNumber::Int(i) => out.push_str(&i.to_string()),
            GoNumber::Float(f) => out.push_str(&float_json(f)),
        },
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_json(out, &map[key]);
            }
            out.push('}');
        }
    }
}

/// `json.Marshal` of a decoded value: compact, sorted keys, HTML-safe escapes.
pub fn marshal(value: &Value) -> String {
    let mut out = String::new();
    write_json(&mut out, value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn number(text: &str) -> Number {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn numbers_print_like_fmt_print() {
        assert_eq!(print_number(&number("42")), "42");
        assert_eq!(print_number(&number("-7")), "-7");
        assert_eq!(print_number(&number("2.5")), "2.5");
        assert_eq!(print_number(&number("3.0")), "3");
        assert_eq!(print_number(&number("1234567.5")), "1.2345675e+06");
        assert_eq!(print_number(&number("0.00001")), "1e-05");
        assert_eq!(print_number(&number("0.0001")), "0.0001");
        assert_eq!(print_number(&number("-123456.25")), "-123456.25");
        assert_eq!(
            print_number(&number("18446744073709551615")),
            "1.8446744073709552e+19"
        );
    }

    #[test]
    fn floats_marshal_like_encoding_json() {
        assert_eq!(marshal(&json!(1e21)), "1e+21");
        assert_eq!(marshal(&json!(1e-7)), "1e-7");
        assert_eq!(marshal(&json!(100000.0)), "100000");
        assert_eq!(marshal(&json!(0.5)), "0.5");
        assert_eq!(float_cell(3.0), json!(3));
        assert_eq!(float_cell(2.5), json!(2.5));
    }

    #[test]
    fn marshal_sorts_keys_and_escapes_html() {
        let value = json!({"b": [1, "x<y>&z"], "a": {"d": null, "c": true}, "ctl": "\u{1}\n"});
        assert_eq!(
            marshal(&value),
            r#"{"a":{"c":true,"d":null},"b":[1,"x\u003cy\u003e\u0026z"],"ctl":"\u0001\n"}"#
        );
    }
}
