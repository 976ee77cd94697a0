//! Reading a Prometheus exposition in tests: which expected series a `/metrics` answer lacks,
//! so the controller's and the daemon's tests check upstream's names and label names in one way.

use std::collections::BTreeSet;

/// The label names of one sample line (`name{a="x",b="y"} 1`), or `None` when `line` is not a
/// sample of `name`. Values may hold commas, braces and escaped quotes.
pub fn label_names(line: &str, name: &str) -> Option<BTreeSet<String>> {
    let rest = line.strip_prefix(name)?;
    if rest.starts_with(' ') {
        return Some(BTreeSet::new());
    }
    let body = rest.strip_prefix('{')?;
    let mut names = BTreeSet::new();
    let mut chars = body.chars();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let key = key.trim_start_matches(',').trim();
        if key.is_empty() || key.starts_with('}') {
            return Some(names);
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut escaped = false;
        for c in chars.by_ref() {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => break,
                _ => escaped = false,
            }
        }
        names.insert(key.to_string());
    }
}

/// Which of `expected` (sample name, label names) `text` does not serve: a sample name with no
/// sample at all, or whose samples carry other label names.
pub fn missing(text: &str, expected: &[(&str, &[&str])]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, labels) in expected {
        let want: BTreeSet<String> = labels.iter().map(|l| l.to_string()).collect();
        let seen: Vec<BTreeSet<String>> =
            text.lines().filter_map(|l| label_names(l, name)).collect();
        if seen.is_empty() {
            out.push(format!("{name}: not served"));
        } else if let Some(other) = seen.iter().find(|s| **s != want) {
            out.push(format!("{name}: labels {other:?}, upstream's are {want:?}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_and_missing_series() {
        let text = "# TYPE a counter\n\
                    a_total{code=\"200\",url=\"/x,{y}\"} 1\n\
                    b{s=\"q\\\"u\"} 2\n\
                    c 3\n\
                    d{} 4\n";
        let names = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            label_names("a_total{code=\"200\",url=\"/x,{y}\"} 1", "a_total"),
            Some(names(&["code", "url"]))
        );
        assert_eq!(label_names("c 3", "c"), Some(BTreeSet::new()));
        assert_eq!(label_names("cc 3", "c"), None);
        assert_eq!(label_names("d{} 4", "d"), Some(BTreeSet::new()));
        assert!(missing(
            text,
            &[("a_total", &["code", "url"]), ("b", &["s"]), ("c", &[])]
        )
        .is_empty());
        assert_eq!(
            missing(text, &[("a_total", &["code"]), ("e", &[])]),
            vec![
                "a_total: labels {\"code\", \"url\"}, upstream's are {\"code\"}".to_string(),
                "e: not served".to_string()
            ]
        );
    }
}
