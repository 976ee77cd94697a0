//! Kubernetes protobuf messages to and from the JSON this fixture stores, driven by the
//! [`Schema`]. JSON is produced as kube-apiserver would render the decoded Go object: scalars
//! at their zero value are left out unless the Go field is a pointer (gogo writes every
//! non-pointer field, so on the wire "unset" and "zero" look alike, and in Go they mean the
//! same), messages are kept even when empty, and the types with their own JSON form (`Time`,
//! `MicroTime`, `Quantity`, `IntOrString`, `FieldsV1`, `RawExtension`) get it.

use base64::Engine;
use serde_json::{Map, Value};

use super::schema::{Cardinality, Field, Scalar, Schema, Type};

const TIME: &str = "apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "apimachinery.pkg.apis.meta.v1.MicroTime";
const QUANTITY: &str = "apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "apimachinery.pkg.util.intstr.IntOrString";
const FIELDS_V1: &str = "apimachinery.pkg.apis.meta.v1.FieldsV1";
const RAW_EXTENSION: &str = "apimachinery.pkg.runtime.RawExtension";
const DURATION: &str = "apimachinery.pkg.apis.meta.v1.Duration";

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;
const FIXED32: u8 = 5;

/// One field read off the wire.
enum Raw<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// Fixed-width values: no Kubernetes type uses them, they are skipped.
    Fixed,
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.data.split_first().ok_or("truncated varint")?;
            self.data = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.data.len() {
            return Err("field runs past the end of its message".into());
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    /// The next field number and value, or `None` at the end.
    fn field(&mut self) -> Result<Option<(u32, Raw<'a>)>, String> {
        if self.data.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| "field number out of range")?;
        let value = match (key & 7) as u8 {
            VARINT => Raw::Varint(self.varint()?),
            LENGTH_DELIMITED => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length out of range")?;
                Raw::Bytes(self.take(n)?)
            }
            FIXED64 => {
                self.take(8)?;
                Raw::Fixed
            }
            FIXED32 => {
                self.take(4)?;
                Raw::Fixed
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        Ok(Some((number, value)))
    }
}

/// Decodes a message of type `name` into its JSON form.
pub fn decode(schema: &Schema, name: &str, data: &[u8]) -> Result<Value, String> {
    match name {
        TIME | MICRO_TIME => return time(data, name == MICRO_TIME),
        QUANTITY => return Ok(only_string(data)?.map_or(Value::Null, Value::String)),
        INT_OR_STRING => return int_or_string(data),
        FIELDS_V1 | RAW_EXTENSION => return embedded_json(data),
        DURATION => return Err("meta/v1 Duration is not supported".into()),
        _ => {}
    }
    let message = schema
        .message(name)
        .ok_or_else(|| format!("no schema for {name}"))?;
    let mut object = Map::new();
    let mut reader = Reader { data };
    while let Some((number, raw)) = reader.field()? {
        // Unknown fields are skipped, as Go's generated unmarshalers do.
        let Some(field) = message.field(number) else {
            continue;
        };
        let Some(key) = field.json.as_deref() else {
            // An inlined message: its fields become the parent's.
            let Raw::Bytes(bytes) = raw else {
                return Err(format!("{name}.{number}: expected a message"));
            };
            let Type::Message(inner) = &field.value else {
                return Err(format!("{name}.{number}: only messages are inlined"));
            };
            if let Value::Object(inner) = decode(schema, inner, bytes)? {
                object.extend(inner);
            }
            continue;
        };
        match &field.cardinality {
            Cardinality::Optional => {
                let value = value(schema, field, raw)?;
                let keep = match (&field.value, &value) {
                    (_, Value::Null) => false,
                    (Type::Scalar(_), v) => field.pointer || !is_zero(v),
                    (Type::Message(_), _) => true,
                };
                if keep {
                    object.insert(key.to_string(), value);
                } else {
                    object.remove(key);
                }
            }
            Cardinality::Repeated => {
                let list = object
                    .entry(key)
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(list) = list else {
                    return Err(format!("{name}.{number}: mixed repeated field"));
                };
                match (&field.value, raw) {
                    // Packed numbers: a run of varints in one length-delimited field.
                    (
                        Type::Scalar(s @ (Scalar::Bool | Scalar::Int32 | Scalar::Int64)),
                        Raw::Bytes(b),
                    ) => {
                        let mut packed = Reader { data: b };
                        while !packed.data.is_empty() {
                            list.push(scalar(*s, Raw::Varint(packed.varint()?))?);
                        }
                    }
                    (_, raw) => list.push(value(schema, field, raw)?),
                }
            }
            Cardinality::Map(key_type) => {
                let Raw::Bytes(entry) = raw else {
                    return Err(format!("{name}.{number}: expected a map entry"));
                };
                let (mut k, mut v) = (None, None);
                let mut entry = Reader { data: entry };
                while let Some((n, raw)) = entry.field()? {
                    match n {
                        1 => k = Some(scalar(*key_type, raw)?),
                        2 => v = Some(value(schema, field, raw)?),
                        _ => {}
                    }
                }
                let k = match k {
                    Some(Value::String(s)) => s,
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                let v = v.unwrap_or_else(|| zero(&field.value));
                let map = object
                    .entry(key)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(k, v);
                }
            }
        }
    }
    Ok(Value::Object(object))
}

fn value(schema: &Schema, field: &Field, raw: Raw<'_>) -> Result<Value, String> {
    match &field.value {
        Type::Scalar(s) => scalar(*s, raw),
        Type::Message(name) => match raw {
            Raw::Bytes(bytes) => decode(schema, name, bytes),
            _ => Err(format!("field {}: expected a {name} message", field.number)),
        },
    }
}

fn scalar(kind: Scalar, raw: Raw<'_>) -> Result<Value, String> {
    Ok(match (kind, raw) {
        (Scalar::String, Raw::Bytes(b)) => Value::String(
            std::str::from_utf8(b)
                .map_err(|_| "a string field is not UTF-8")?
                .to_string(),
        ),
        (Scalar::Bytes, Raw::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Scalar::Bool, Raw::Varint(v)) => Value::Bool(v != 0),
        // int32 is sent sign-extended to 64 bits; truncating recovers it.
        (Scalar::Int32, Raw::Varint(v)) => Value::from(v as i32),
        (Scalar::Int64, Raw::Varint(v)) => Value::from(v as i64),
        (kind, _) => return Err(format!("wrong wire type for a {kind:?} field")),
    })
}

fn zero(value: &Type) -> Value {
    match value {
        Type::Scalar(Scalar::String | Scalar::Bytes) => Value::String(String::new()),
        Type::Scalar(Scalar::Bool) => Value::Bool(false),
        Type::Scalar(Scalar::Int32 | Scalar::Int64) => Value::from(0),
        Type::Message(_) => Value::Object(Map::new()),
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        _ => false,
    }
}

/// Field 1 of a message holding one string (`Quantity`).
fn only_string(data: &[u8]) -> Result<Option<String>, String> {
    let mut reader = Reader { data };
    let mut found = None;
    while let Some((number, raw)) = reader.field()? {
        if number == 1 {
            if let Value::String(s) = scalar(Scalar::String, raw)? {
                found = Some(s);
            }
        }
    }
    Ok(found)
}

/// `{1: seconds, 2: nanos}` as Go renders `metav1.Time` (RFC 3339, whole seconds, UTC) or
/// `MicroTime` (six fractional digits); the zero time is `null`.
fn time(data: &[u8], micro: bool) -> Result<Value, String> {
    let (mut seconds, mut nanos) = (0i64, 0i64);
    let mut reader = Reader { data };
    while let Some((number, raw)) = reader.field()? {
        match (number, raw) {
            (1, Raw::Varint(v)) => seconds = v as i64,
            (2, Raw::Varint(v)) => nanos = i64::from(v as i32),
            _ => {}
        }
    }
    if data.is_empty() || seconds == GO_ZERO_TIME {
        return Ok(Value::Null);
    }
    let nanos = i32::try_from(nanos).map_err(|_| "nanoseconds out of range")?;
    let at = jiff::Timestamp::new(seconds, nanos).map_err(|e| format!("bad time: {e}"))?;
    let whole = at.strftime("%Y-%m-%dT%H:%M:%S");
    Ok(Value::String(if micro {
        format!("{whole}.{:06}Z", at.subsec_microsecond())
    } else {
        format!("{whole}Z")
    }))
}

/// Go's zero `time.Time` (year 1) in Unix seconds.
const GO_ZERO_TIME: i64 = -62_135_596_800;

fn int_or_string(data: &[u8]) -> Result<Value, String> {
    let (mut kind, mut int, mut string) = (0u64, 0i32, String::new());
    let mut reader = Reader { data };
    while let Some((number, raw)) = reader.field()? {
        match (number, raw) {
            (1, Raw::Varint(v)) => kind = v,
            (2, Raw::Varint(v)) => int = v as i32,
            (3, raw) => {
                if let Value::String(s) = scalar(Scalar::String, raw)? {
                    string = s;
                }
            }
            _ => {}
        }
    }
    Ok(if kind == 1 {
        Value::String(string)
    } else {
        Value::from(int)
    })
}

/// `FieldsV1` and `RawExtension` carry JSON in their bytes field.
fn embedded_json(data: &[u8]) -> Result<Value, String> {
    let mut reader = Reader { data };
    let mut raw: &[u8] = &[];
    while let Some((number, value)) = reader.field()? {
        if let (1, Raw::Bytes(b)) = (number, value) {
            raw = b;
        }
    }
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(raw).map_err(|e| format!("embedded object is not JSON: {e}"))
}

/// Encodes `value` (the JSON form) as a message of type `name`. JSON fields the schema does
/// not know are left out, as a real server never stores them.
pub fn encode(schema: &Schema, name: &str, value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match name {
        TIME | MICRO_TIME => return encode_time(value, out),
        QUANTITY => {
            let text = value
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            put_bytes(out, 1, text.as_bytes());
            return Ok(());
        }
        INT_OR_STRING => {
            match value {
                Value::String(s) => {
                    put_varint_field(out, 1, 1);
                    put_varint_field(out, 2, 0);
                    put_bytes(out, 3, s.as_bytes());
                }
                other => {
                    let int = other.as_i64().ok_or("IntOrString is neither")?;
                    put_varint_field(out, 1, 0);
                    put_varint_field(out, 2, int as i32 as i64 as u64);
                    put_bytes(out, 3, b"");
                }
            }
            return Ok(());
        }
        FIELDS_V1 | RAW_EXTENSION => {
            let raw = serde_json::to_vec(value).map_err(|e| e.to_string())?;
            put_bytes(out, 1, &raw);
            return Ok(());
        }
        DURATION => return Err("meta/v1 Duration is not supported".into()),
        _ => {}
    }
    let message = schema
        .message(name)
        .ok_or_else(|| format!("no schema for {name}"))?;
    let empty = Map::new();
    let object = match value {
        Value::Object(o) => o,
        Value::Null => &empty,
        other => return Err(format!("{name}: expected an object, found {other}")),
    };
    for field in &message.fields {
        let Some(key) = field.json.as_deref() else {
            if let Type::Message(inner) = &field.value {
                let mut bytes = Vec::new();
                encode(schema, inner, value, &mut bytes)?;
                put_bytes(out, field.number, &bytes);
            }
            continue;
        };
        let Some(v) = object.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        let context = |e: String| format!("{name}.{key}: {e}");
        match &field.cardinality {
            Cardinality::Optional => {
                put_value(schema, out, field.number, &field.value, v).map_err(context)?
            }
            Cardinality::Repeated => {
                let items = v
                    .as_array()
                    .ok_or_else(|| context("expected a list".into()))?;
                for item in items {
                    put_value(schema, out, field.number, &field.value, item).map_err(context)?;
                }
            }
            Cardinality::Map(key_type) => {
                let map = v
                    .as_object()
                    .ok_or_else(|| context("expected an object".into()))?;
                for (k, item) in map {
                    let mut entry = Vec::new();
                    put_value(
                        schema,
                        &mut entry,
                        1,
                        &Type::Scalar(*key_type),
                        &Value::String(k.clone()),
                    )
                    .map_err(context)?;
                    put_value(schema, &mut entry, 2, &field.value, item).map_err(context)?;
                    put_bytes(out, field.number, &entry);
                }
            }
        }
    }
    Ok(())
}

fn put_value(
    schema: &Schema,
    out: &mut Vec<u8>,
    number: u32,
    kind: &Type,
    v: &Value,
) -> Result<(), String> {
    let int = |v: &Value| -> Result<i64, String> {
        match v {
            Value::Number(n) => n.as_i64().ok_or_else(|| format!("{n} is not an integer")),
            Value::String(s) => s.parse().map_err(|_| format!("{s:?} is not an integer")),
            other => Err(format!("{other} is not an integer")),
        }
    };
    match kind {
        Type::Scalar(Scalar::String) => match v {
            Value::String(s) => put_bytes(out, number, s.as_bytes()),
            other => return Err(format!("{other} is not a string")),
        },
        Type::Scalar(Scalar::Bytes) => {
            let text = v.as_str().ok_or("bytes must be a base64 string")?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| format!("bad base64: {e}"))?;
            put_bytes(out, number, &bytes);
        }
        Type::Scalar(Scalar::Bool) => {
            let b = v.as_bool().ok_or_else(|| format!("{v} is not a boolean"))?;
            put_varint_field(out, number, u64::from(b));
        }
        Type::Scalar(Scalar::Int32) => {
            let i = i32::try_from(int(v)?).map_err(|_| format!("{v} does not fit 32 bits"))?;
            put_varint_field(out, number, i64::from(i) as u64);
        }
        Type::Scalar(Scalar::Int64) => put_varint_field(out, number, int(v)? as u64),
        Type::Message(name) => {
            let mut bytes = Vec::new();
            encode(schema, name, v, &mut bytes)?;
            put_bytes(out, number, &bytes);
        }
    }
    Ok(())
}

fn encode_time(value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    let Some(text) = value.as_str() else {
        return Ok(());
    };
    let at: jiff::Timestamp = text
        .parse()
        .map_err(|e| format!("bad time {text:?}: {e}"))?;
    put_varint_field(out, 1, at.as_second() as u64);
    put_varint_field(out, 2, i64::from(at.subsec_nanosecond()) as u64);
    Ok(())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint_field(out: &mut Vec<u8>, number: u32, v: u64) {
    put_varint(out, u64::from(number) << 3 | u64::from(VARINT));
    put_varint(out, v);
}

/// Writes a length-delimited field.
pub fn put_bytes(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_varint(out, u64::from(number) << 3 | u64::from(LENGTH_DELIMITED));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads the top-level fields of a message as `(number, bytes)` pairs of its length-delimited
/// fields (the envelope's `runtime.Unknown`).
pub fn length_delimited_fields(data: &[u8]) -> Result<Vec<(u32, &[u8])>, String> {
    let mut reader = Reader { data };
    let mut fields = Vec::new();
    while let Some((number, raw)) = reader.field()? {
        if let Raw::Bytes(b) = raw {
            fields.push((number, b));
        }
    }
    Ok(fields)
}
