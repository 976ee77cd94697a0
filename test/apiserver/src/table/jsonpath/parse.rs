//! The grammar of client-go's `util/jsonpath` inside one `{...}` action,
//! quirks included: `['a.b']` is re-read as `.a.b` (dots must be escaped even
//! in brackets), `[*]` is the full slice `[:]`, a single index `[n]` is the
//! slice `[n:n+1]`, and backslashes escape terminators in field names.

use std::fmt;

/// One step of a parsed path.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `.name`: a map key (client-go reads a bare `.` as the key `""`).
    Field(String),
    /// `.*`: every value of a map or element of a list.
    Wildcard,
    /// `..`: the value and every nested map or list, depth first.
    Recursive,
    /// `[start:end:step]`, also `[n]` and `[*]`.
    Slice(SliceParams),
    /// `[a,b]`: the results of each alternative, concatenated.
    Union(Vec<Vec<Node>>),
    /// `[?(left op right)]` or `[?(left)]` (existence).
    Filter {
        /// Path evaluated on each list element.
        left: Vec<Node>,
        /// Comparison, or `exists` when there is no right side.
        operator: String,
        /// Path or literal compared against.
        right: Vec<Node>,
    },
    /// A quoted string literal.
    Text(String),
    /// An integer literal.
    Int(i64),
    /// A floating point literal.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A bare word such as `range`; never valid in a printer column.
    Identifier(String),
}

/// One bound of a slice: whether it was given, its value, and whether it was
/// derived from a single index (so `[-1]` means "to the end").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bound {
    /// The bound was given (or derived); otherwise the default applies.
    pub known: bool,
    /// The (possibly negative) position.
    pub value: i64,
    /// Derived as `start + 1` from a single index.
    pub derived: bool,
}

/// `[start:end:step]` as client-go keeps it before applying it to a list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SliceParams {
    /// First element (default 0).
    pub start: Bound,
    /// One past the last element (default: the length).
    pub end: Bound,
    /// Stride (default 1).
    pub step: Bound,
}

/// Why a path could not be parsed; the column then prints nothing, like the
/// real server's fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_terminator(c: Option<char>) -> bool {
    match c {
        None => true,
        Some(c) => matches!(
            c,
            ' ' | '\t' | '\r' | '\n' | '.' | ',' | '[' | ']' | '$' | '@' | '{' | '}'
        ),
    }
}

fn is_alphanumeric(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
    nodes: Vec<Node>,
}

/// Parses the inside of one action, e.g. `.status.conditions[0].type`.
/// An unquoted `}` ends the action; what follows it cannot affect the column.
pub fn parse(text: &str) -> Result<Vec<Node>, ParseError> {
    let mut parser = Parser {
        input: text,
        pos: 0,
        nodes: Vec::new(),
    };
    parser.action()?;
    Ok(parser.nodes)
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.input[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn error(&self, what: impl Into<String>) -> ParseError {
        ParseError(what.into())
    }

    fn action(&mut self) -> Result<(), ParseError> {
        loop {
            let rest = self.rest();
            if rest.is_empty() || rest.starts_with('}') {
                return Ok(());
            }
            if rest.starts_with("[?(") {
                self.filter()?;
                continue;
            }
            if rest.starts_with("..") {
                self.recursive()?;
                continue;
            }
            let start = self.pos;
            match self.bump() {
                Some('\r' | '\n') => return Err(self.error("unclosed action")),
                Some(' ' | '@' | '$') => {}
                Some('[') => self.array()?,
                Some(quote @ ('"' | '\'')) => self.quoted(quote)?,
                Some('.') => self.field(),
                Some('+' | '-') => self.number(start)?,
                Some(c) if c.is_ascii_digit() => self.number(start)?,
                Some(c) if is_alphanumeric(c) => self.identifier(start),
                Some(c) => {
                    return Err(self.error(format!("unrecognized character in action: {c:?}")))
                }
                None => return Ok(()),
            }
        }
    }

    fn recursive(&mut self) -> Result<(), ParseError> {
        if self.nodes.last() == Some(&Node::Recursive) {
            return Err(self.error("invalid multiple recursive descent"));
        }
        self.pos += 2;
        self.nodes.push(Node::Recursive);
        if self.peek().is_some_and(is_alphanumeric) {
            self.field();
        }
        Ok(())
    }

    /// A field name runs to the next unescaped terminator; backslashes are dropped.
    fn field(&mut self) {
        let start = self.pos;
        loop {
            match self.peek() {
                Some('\\') => {
                    self.bump();
                    self.bump();
                }
                c if is_terminator(c) => break,
                _ => {
                    self.bump();
                }
            }
        }
        let raw = &self.input[start..self.pos];
        self.nodes.push(if raw == "*" {
            Node::Wildcard
        } else {
            Node::Field(raw.replace('\\', ""))
        });
    }

    fn number(&mut self, start: usize) -> Result<(), ParseError> {
        while self.peek().is_some_and(|c| c == '.' || c.is_ascii_digit()) {
            self.bump();
        }
        let text = &self.input[start..self.pos];
        if let Ok(i) = text.parse::<i64>() {
            self.nodes.push(Node::Int(i));
        } else if let Ok(f) = text.parse::<f64>() {
            self.nodes.push(Node::Float(f));
        } else {
            return Err(self.error(format!("cannot parse number {text}")));
        }
        Ok(())
    }

    fn identifier(&mut self, start: usize) {
        while !is_terminator(self.peek()) {
            self.bump();
        }
        let word = &self.input[start..self.pos];
        self.nodes.push(match word {
            "true" => Node::Bool(true),
            "false" => Node::Bool(false),
            other => Node::Identifier(other.to_string()),
        });
    }

    fn quoted(&mut self, quote: char) -> Result<(), ParseError> {
        let body_start = self.pos;
        loop {
            match self.bump() {
                None | Some('\n') => return Err(self.error("unterminated quoted string")),
                Some(c) if c == quote && !self.input[..self.pos - 1].ends_with('\\') => break,
                Some(_) => {}
            }
        }
        let body = &self.input[body_start..self.pos - 1];
        let text = unquote(body, quote).ok_or_else(|| {
            self.error(format!(
                "unquote string {quote}{body}{quote} error invalid syntax"
            ))
        })?;
        self.nodes.push(Node::Text(text));
        Ok(())
    }

    fn array(&mut self) -> Result<(), ParseError> {
        let body_start = self.pos;
        loop {
            match self.bump() {
                None | Some('\n') => return Err(self.error("unterminated array")),
                Some(']') => break,
                Some(_) => {}
            }
        }
        let body = &self.input[body_start..self.pos - 1];
        let body = if body == "*" { ":" } else { body };
        if body.contains(',') {
            let alternatives = body
                .split(',')
                .map(|part| parse(&format!("[{}]", part.trim_matches(' '))))
                .collect::<Result<Vec<_>, _>>()?;
            self.nodes.push(Node::Union(alternatives));
            return Ok(());
        }
        if let Some(key) = body
            .strip_prefix('\'')
            .and_then(|b| b.strip_suffix('\''))
            .filter(|k| !k.contains('\''))
        {
            self.nodes.extend(parse(&format!(".{key}"))?);
            return Ok(());
        }
        let params =
            slice_params(body).ok_or_else(|| self.error(format!("invalid array index {body}")))?;
        self.nodes.push(Node::Slice(params));
        Ok(())
    }

    fn filter(&mut self) -> Result<(), ParseError> {
        self.pos += 3;
        let body_start = self.pos;
        let mut open_quote: Option<char> = None;
        let mut closed = false;
        loop {
            match self.bump() {
                None | Some('\n') => return Err(self.error("unterminated filter")),
                Some(c @ ('"' | '\'')) => match open_quote {
                    None => open_quote = Some(c),
                    Some(q) if q == c && !self.input[..self.pos - 1].ends_with('\\') => {
                        closed = true
                    }
                    Some(_) => {}
                },
                Some(')') if open_quote.is_some() == closed => break,
                Some(_) => {}
            }
        }
        if self.bump() != Some(']') {
            return Err(self.error("unclosed array expect ]"));
        }
        let body = &self.input[body_start..self.pos - 2];
        let node = match split_comparison(body) {
            Some((left, operator, right)) => Node::Filter {
                left: parse(left)?,
                operator: operator.to_string(),
                right: parse(right)?,
            },
            None => Node::Filter {
                left: parse(body)?,
                operator: "exists".into(),
                right: Vec::new(),
            },
        };
        self.nodes.push(node);
        Ok(())
    }
}

/// Splits `left op right` where `op` is a run of `!<>=` after a non-empty
/// left side and followed by a non-empty right side.
fn split_comparison(body: &str) -> Option<(&str, &str, &str)> {
    let is_op = |c: char| matches!(c, '!' | '<' | '>' | '=');
    let op_start = body.find(is_op).filter(|&i| i > 0)?;
    let op_len = body[op_start..]
        .find(|c| !is_op(c))
        .unwrap_or(body.len() - op_start);
    let right = &body[op_start + op_len..];
    (!right.is_empty()).then(|| (&body[..op_start], &body[op_start..op_start + op_len], right))
}

/// `[start:end:step]` where every part is an optional, possibly negative integer.
fn slice_params(body: &str) -> Option<SliceParams> {
    let parts: Vec<&str> = body.split(':').collect();
    if parts.len() > 3 {
        return None;
    }
    let number = |text: &str| -> Option<Option<i64>> {
        let digits = text.strip_prefix('-').unwrap_or(text);
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        if digits.is_empty() {
            return (text.is_empty()).then_some(None);
        }
        text.parse().ok().map(Some)
    };
    let given = |value: Option<i64>| Bound {
        known: value.is_some(),
        value: value.unwrap_or_default(),
        derived: false,
    };
    let start = given(number(parts[0])?);
    let end = match parts.get(1) {
        Some(text) => given(number(text)?),
        None => Bound {
            known: true,
            value: start.value + 1,
            derived: true,
        },
    };
    let step = match parts.get(2) {
        Some(text) => given(number(text)?),
        None => Bound::default(),
    };
    Some(SliceParams { start, end, step })
}

/// Go's `strconv.UnquoteChar` escapes for a quoted literal's body.
fn unquote(body: &str, quote: char) -> Option<String> {
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c == quote {
            return None;
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let escaped = chars.next()?;
        let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> Option<char> {
            let digits: String = chars.by_ref().take(n).collect();
            (digits.len() == n)
                .then(|| u32::from_str_radix(&digits, 16).ok())
                .flatten()
                .and_then(char::from_u32)
        };
        out.push(match escaped {
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\u{b}',
            '\\' => '\\',
            '\'' | '"' if escaped == quote => escaped,
            'x' => hex(&mut chars, 2)?,
            'u' => hex(&mut chars, 4)?,
            'U' => hex(&mut chars, 8)?,
            first @ '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let code = u32::from_str_radix(&format!("{first}{rest}"), 8).ok()?;
                (rest.len() == 2 && code <= 255)
                    .then(|| char::from_u32(code))
                    .flatten()?
            }
            _ => return None,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str) -> Node {
        Node::Field(name.into())
    }

    fn index(i: i64) -> Node {
        Node::Slice(SliceParams {
            start: Bound {
                known: true,
                value: i,
                derived: false,
            },
            end: Bound {
                known: true,
                value: i + 1,
                derived: true,
            },
            step: Bound::default(),
        })
    }

    #[test]
    fn dotted_fields_indexes_and_escapes() {
        assert_eq!(
            parse(".a.b[0].c").unwrap(),
            vec![field("a"), field("b"), index(0), field("c")]
        );
        assert_eq!(
            parse(".metadata.annotations.kubernetes\\.io/role").unwrap(),
            vec![
                field("metadata"),
                field("annotations"),
                field("kubernetes.io/role")
            ]
        );
        assert_eq!(parse(".").unwrap(), vec![field("")]);
        assert_eq!(parse("$.a").unwrap(), vec![field("a")]);
        assert_eq!(parse(".a[-1]").unwrap(), vec![field("a"), index(-1)]);
    }

    #[test]
    fn bracket_keys_are_reparsed_as_dotted_paths() {
        assert_eq!(
            parse(".a['x.y']").unwrap(),
            vec![field("a"), field("x"), field("y")]
        );
        assert_eq!(
            parse(".a['x\\.y']").unwrap(),
            vec![field("a"), field("x.y")]
        );
        assert!(parse(".a[\"x\"]").is_err(), "only single quotes make a key");
    }

    #[test]
    fn wildcards_slices_unions_and_recursion() {
        let all = SliceParams {
            start: Bound::default(),
            end: Bound::default(),
            step: Bound::default(),
        };
        assert_eq!(parse(".a[*]").unwrap(), vec![field("a"), Node::Slice(all)]);
        assert_eq!(parse(".a.*").unwrap(), vec![field("a"), Node::Wildcard]);
        assert_eq!(
            parse("..name").unwrap(),
            vec![Node::Recursive, field("name")]
        );
        assert!(parse("....a").is_err());
        match &parse(".a[1:4:2]").unwrap()[1] {
            Node::Slice(p) => assert_eq!((p.start.value, p.end.value, p.step.value), (1, 4, 2)),
            other => panic!("not a slice: {other:?}"),
        }
        assert_eq!(
            parse(".a[0, 2]").unwrap()[1],
            Node::Union(vec![vec![index(0)], vec![index(2)]])
        );
        assert!(parse(".a[x]").is_err());
        assert!(parse(".a[0").is_err());
    }

    #[test]
    fn filters_split_into_left_operator_right() {
        assert_eq!(
            parse(".c[?(@.type==\"Ready\")].status").unwrap(),
            vec![
                field("c"),
                Node::Filter {
                    left: vec![field("type")],
                    operator: "==".into(),
                    right: vec![Node::Text("Ready".into())],
                },
                field("status"),
            ]
        );
        assert_eq!(
            parse(".c[?(@.n >= 2.5)]").unwrap()[1],
            Node::Filter {
                left: vec![field("n")],
                operator: ">=".into(),
                right: vec![Node::Float(2.5)],
            }
        );
        assert_eq!(
            parse(".c[?(@.ready)]").unwrap()[1],
            Node::Filter {
                left: vec![field("ready")],
                operator: "exists".into(),
                right: vec![],
            }
        );
        assert_eq!(
            parse(".c[?(@.x=='a)b')]").unwrap()[1],
            Node::Filter {
                left: vec![field("x")],
                operator: "==".into(),
                right: vec![Node::Text("a)b".into())],
            },
            "a parenthesis inside quotes does not end the filter"
        );
        assert!(parse(".c[?(@.x==1").is_err());
    }

    #[test]
    fn literals_and_words() {
        assert_eq!(parse("'a\\tb'").unwrap(), vec![Node::Text("a\tb".into())]);
        assert_eq!(parse("\"\\u00e9\"").unwrap(), vec![Node::Text("é".into())]);
        assert_eq!(parse("-3").unwrap(), vec![Node::Int(-3)]);
        assert_eq!(parse("true").unwrap(), vec![Node::Bool(true)]);
        assert_eq!(
            parse("spec").unwrap(),
            vec![Node::Identifier("spec".into())]
        );
        assert_eq!(parse(".a}.b").unwrap(), vec![field("a")]);
        assert!(parse(".a#").is_ok(), "# is part of a field name");
        assert!(parse("#").is_err());
    }
}
