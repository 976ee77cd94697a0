//! client-go's JSONPath, which the API server evaluates for a CRD's
//! `additionalPrinterColumns`. Columns depend on its exact behaviour: missing
//! keys yield nothing (the cell is empty), a type mismatch is an error (the
//! cell is empty too), and only the first match of a path is printed.

mod parse;

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

use super::gofmt::{self, GoNumber};
pub use parse::ParseError;
use parse::{Node, SliceParams};

/// A parsed path such as `.status.conditions[?(@.type=="Ready")].status`.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    nodes: Vec<Node>,
}

/// Why evaluating a path failed on a particular object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError(String);

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

type Found<'a> = Vec<Cow<'a, Value>>;
type EvalResult<'a> = Result<Found<'a>, EvalError>;

impl JsonPath {
    /// Parses a printer column's `jsonPath` (the text inside `{...}`).
    pub fn parse(path: &str) -> Result<Self, ParseError> {
        parse::parse(path).map(|nodes| Self { nodes })
    }

    /// Every value the path selects in `root`, in document order.
    pub fn find<'a>(&self, root: &'a Value) -> EvalResult<'a> {
        walk(vec![Cow::Borrowed(root)], &self.nodes)
    }
}

/// How client-go prints one result: maps and lists as JSON, a JSON `null`
/// as Go's `<no value>`, scalars as `fmt.Print` would.
pub fn print_result(value: &Value) -> String {
    match value {
        Value::Null => "<no value>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => gofmt::print_number(n),
        Value::String(s) => s.clone(),
        Value::Array(_) | Value::Object(_) => gofmt::marshal(value),
    }
}

/// Applies `pick` to an input value, keeping borrowed values borrowed.
fn project<'a>(
    item: &Cow<'a, Value>,
    pick: impl for<'v> Fn(&'v Value) -> Vec<&'v Value>,
) -> Found<'a> {
    match item {
        Cow::Borrowed(value) => pick(value).into_iter().map(Cow::Borrowed).collect(),
        Cow::Owned(value) => pick(value)
            .into_iter()
            .map(|v| Cow::Owned(v.clone()))
            .collect(),
    }
}

fn children(value: &Value) -> Vec<&Value> {
    match value {
        Value::Object(map) => map.values().collect(),
        Value::Array(items) => items.iter().collect(),
        _ => Vec::new(),
    }
}

/// The value and, depth first, every nested map or list that has children.
fn descendants(value: &Value) -> Vec<&Value> {
    let inner = children(value);
    if inner.is_empty() {
        return Vec::new();
    }
    let mut out = vec![value];
    for child in inner {
        out.extend(descendants(child));
    }
    out
}

fn walk<'a>(mut input: Found<'a>, nodes: &[Node]) -> EvalResult<'a> {
    for node in nodes {
        input = step(input, node)?;
    }
    Ok(input)
}

fn step<'a>(input: Found<'a>, node: &Node) -> EvalResult<'a> {
    let live = || input.iter().filter(|v| !v.is_null());
    Ok(match node {
        Node::Field(name) => live()
            .flat_map(|v| project(v, |v| v.get(name.as_str()).into_iter().collect()))
            .collect(),
        Node::Wildcard => live().flat_map(|v| project(v, children)).collect(),
        Node::Recursive => live().flat_map(|v| project(v, descendants)).collect(),
        Node::Slice(params) => {
            let mut out = Vec::new();
            for value in live() {
                let items = value
                    .as_array()
                    .ok_or_else(|| EvalError(format!("{} is not array or slice", kind(value))))?;
                let picked = slice(items.len(), *params)?;
                out.extend(project(value, |v| {
                    let items = v.as_array().map(Vec::as_slice).unwrap_or_default();
                    picked.iter().filter_map(|&i| items.get(i)).collect()
                }));
            }
            out
        }
        Node::Union(alternatives) => {
            let mut out = Vec::new();
            for alternative in alternatives {
                out.extend(walk(input.clone(), alternative)?);
            }
            out
        }
        Node::Filter {
            left,
            operator,
            right,
        } => filter(&input, left, operator, right)?,
        Node::Text(text) => vec![Cow::Owned(Value::String(text.clone()))],
        Node::Int(i) => input.iter().map(|_| Cow::Owned(Value::from(*i))).collect(),
        Node::Float(f) => input.iter().map(|_| Cow::Owned(Value::from(*f))).collect(),
        Node::Bool(b) => input.iter().map(|_| Cow::Owned(Value::Bool(*b))).collect(),
        Node::Identifier(word) => return Err(EvalError(format!("unrecognized identifier {word}"))),
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// The element positions `[start:end:step]` selects from a list of `len`.
fn slice(len: usize, mut p: SliceParams) -> Result<Vec<usize>, EvalError> {
    let len = len as i64;
    if !p.start.known {
        p.start.value = 0;
    }
    if p.start.value < 0 {
        p.start.value += len;
    }
    if !p.end.known {
        p.end.value = len;
    }
    if p.end.value < 0 || (p.end.value == 0 && p.end.derived) {
        p.end.value += len;
    }
    let (start, end) = (p.start.value, p.end.value);
    if start == end {
        return Ok(Vec::new());
    }
    if start >= len || start < 0 {
        return Err(EvalError(format!(
            "array index out of bounds: index {start}, length {len}"
        )));
    }
    if end > len || end < 0 {
        return Err(EvalError(format!(
            "array index out of bounds: index {}, length {len}",
            end - 1
        )));
    }
    if start > end {
        return Err(EvalError(format!(
            "starting index {start} is greater than ending index {end}"
        )));
    }
    let step = if p.step.known { p.step.value } else { 1 };
    if step <= 0 {
        return Err(EvalError("step must be > 0".into()));
    }
    Ok((start..end)
        .step_by(step as usize)
        .map(|i| i as usize)
        .collect())
}

fn filter<'a>(input: &Found<'a>, left: &[Node], operator: &str, right: &[Node]) -> EvalResult<'a> {
    let mut out = Vec::new();
    for value in input {
        let len = value
            .as_array()
            .ok_or_else(|| {
                EvalError(format!(
                    "{} is not array or slice and cannot be filtered",
                    kind(value)
                ))
            })?
            .len();
        for index in 0..len {
            let element = project(value, |v| {
                v.as_array()
                    .and_then(|a| a.get(index))
                    .into_iter()
                    .collect()
            });
            let lefts = walk(element.clone(), left);
            if operator == "exists" {
                if lefts.is_ok_and(|l| !l.is_empty()) {
                    out.extend(element);
                }
                continue;
            }
            let Some(l) = single(lefts?)? else { continue };
            let Some(r) = single(walk(element.clone(), right)?)? else {
                continue;
            };
            if compare(operator, &l, &r)? {
                out.extend(element);
            }
        }
    }
    Ok(out)
}

/// The one value a filter side must yield; none skips the element.
fn single(found: Found<'_>) -> Result<Option<Value>, EvalError> {
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.into_iter().next().map(Cow::into_owned)),
        _ => Err(EvalError("can only compare one element at a time".into())),
    }
}

/// A comparable value in Go template terms: each kind compares only with itself.
#[derive(PartialEq, PartialOrd)]
enum Scalar<'v> {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'v str),
}

fn scalar(value: &Value) -> Result<Scalar<'_>, EvalError> {
    match value {
        Value::Bool(b) => Ok(Scalar::Bool(*b)),
        Value::Number(n) => Ok(match GoNumber::of(n) {
            GoNumber::Int(i) => Scalar::Int(i),
            GoNumber::Float(f) => Scalar::Float(f),
        }),
        Value::String(s) => Ok(Scalar::Str(s)),
        _ => Err(EvalError("invalid type for comparison".into())),
    }
}

fn same_kind(l: &Scalar<'_>, r: &Scalar<'_>) -> Result<(), EvalError> {
    if std::mem::discriminant(l) == std::mem::discriminant(r) {
        Ok(())
    } else {
        Err(EvalError("incompatible types for comparison".into()))
    }
}

fn equal(l: &Scalar<'_>, r: &Scalar<'_>) -> Result<bool, EvalError> {
    same_kind(l, r)?;
    Ok(l == r)
}

fn less(l: &Scalar<'_>, r: &Scalar<'_>) -> Result<bool, EvalError> {
    same_kind(l, r)?;
    if matches!(l, Scalar::Bool(_)) {
        return Err(EvalError("invalid type for comparison".into()));
    }
    Ok(l.partial_cmp(r) == Some(Ordering::Less))
}

fn less_equal(l: &Scalar<'_>, r: &Scalar<'_>) -> Result<bool, EvalError> {
    Ok(less(l, r)? || equal(l, r)?)
}

fn compare(operator: &str, l: &Value, r: &Value) -> Result<bool, EvalError> {
    let (l, r) = (scalar(l)?, scalar(r)?);
    match operator {
        "==" => equal(&l, &r),
        "!=" => equal(&l, &r).map(|e| !e),
        "<" => less(&l, &r),
        "<=" => less_equal(&l, &r),
        ">" => less_equal(&l, &r).map(|le| !le),
        ">=" => less(&l, &r).map(|lt| !lt),
        other => Err(EvalError(format!("unrecognized filter operator {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object() -> Value {
        json!({
            "metadata": {"name": "n1", "labels": {"a.b/c": "x", "a": {"b": "nested"}}},
            "spec": {
                "cidr": "10.0.0.0/24",
                "excludeIps": ["10.0.0.1", "10.0.0.2"],
                "private": false,
                "count": 3,
                "ratio": 2.5,
                "nothing": null,
                "ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}],
            },
            "status": {"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "Validated", "status": "False"},
            ]},
        })
    }

    /// All matches of `path` in the test object, printed like a string column.
    fn texts(path: &str) -> Result<Vec<String>, EvalError> {
        let root = object();
        let found = JsonPath::parse(path).expect("path parses").find(&root)?;
        Ok(found.iter().map(|v| print_result(v)).collect())
    }

    fn text(path: &str) -> String {
        texts(path).unwrap().join(" ")
    }

    #[test]
    fn dotted_and_indexed_paths() {
        assert_eq!(text(".spec.cidr"), "10.0.0.0/24");
        assert_eq!(text(".spec.excludeIps[0]"), "10.0.0.1");
        assert_eq!(text(".spec.excludeIps[-1]"), "10.0.0.2");
        assert_eq!(text(".spec.ports[1].name"), "https");
        assert_eq!(text(".spec.ports[*].port"), "80 443");
        assert_eq!(text(".spec.excludeIps[0:1]"), "10.0.0.1");
        assert_eq!(text(".spec.ports[0,1].name"), "http https");
        assert_eq!(text("..port"), "80 443");
    }

    #[test]
    fn bracket_keys_follow_client_go() {
        assert_eq!(text(".metadata.labels['a\\.b/c']"), "x");
        assert_eq!(
            text(".metadata.labels['a.b']"),
            "nested",
            "an unescaped dot in brackets still separates keys"
        );
        assert_eq!(text(".metadata.labels.a\\.b/c"), "x");
    }

    #[test]
    fn maps_lists_and_scalars_print_as_go_does() {
        assert_eq!(text(".spec.excludeIps"), r#"["10.0.0.1","10.0.0.2"]"#);
        assert_eq!(text(".spec.ports[0]"), r#"{"name":"http","port":80}"#);
        assert_eq!(text(".spec.private"), "false");
        assert_eq!(text(".spec.count"), "3");
        assert_eq!(text(".spec.ratio"), "2.5");
        assert_eq!(text(".spec.nothing"), "<no value>");
    }

    #[test]
    fn missing_keys_select_nothing_but_type_errors_fail() {
        assert_eq!(texts(".spec.missing.deeper").unwrap(), Vec::<String>::new());
        assert_eq!(texts(".spec.cidr.x").unwrap(), Vec::<String>::new());
        assert_eq!(texts(".spec.nothing[0]").unwrap(), Vec::<String>::new());
        assert_eq!(texts(".").unwrap(), Vec::<String>::new());
        assert!(texts(".spec.excludeIps[5]").is_err());
        assert!(texts(".spec.cidr[0]").is_err());
        assert!(texts(".spec[0]").is_err());
        assert!(texts("spec").is_err());
    }

    #[test]
    fn filters_compare_like_go_templates() {
        assert_eq!(
            text(".status.conditions[?(@.type==\"Ready\")].status"),
            "True"
        );
        assert_eq!(
            text(".status.conditions[?(@.type!='Ready')].type"),
            "Validated"
        );
        assert_eq!(text(".spec.ports[?(@.port>100)].name"), "https");
        assert_eq!(text(".spec.ports[?(@.port<=80)].name"), "http");
        assert_eq!(text(".spec.ports[?(@.name)].port"), "80 443");
        assert_eq!(text(".spec.ports[?(@.missing)].port"), "");
        assert!(
            texts(".spec.ports[?(@.port==\"80\")].name").is_err(),
            "a number never equals a string"
        );
        assert!(texts(".spec.ports[?(@.port==80.0)].name").is_err());
        assert!(texts(".spec[?(@.x==1)]").is_err());
    }
}
