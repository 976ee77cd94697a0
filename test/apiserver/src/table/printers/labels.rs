//! Label sets and label selectors in their canonical text form
//! (`labels.FormatLabels`, `metav1.FormatLabelSelector`), as the Service
//! `Selector` and NetworkPolicy `Pod-Selector` columns show them.

use serde_json::Value;

/// `a=1,b=2` with keys sorted, or `<none>`.
pub fn format_labels(labels: Option<&Value>) -> String {
    let mut pairs: Vec<String> = labels
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

/// One requirement's text, or `None` if the expression is malformed.
fn expression(expr: &Value) -> Option<(String, String)> {
    let key = expr.get("key")?.as_str()?.to_string();
    let mut values: Vec<&str> = expr
        .get("values")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    values.sort_unstable();
    let set = |op: &str| (!values.is_empty()).then(|| format!("{key} {op} ({})", values.join(",")));
    let text = match expr.get("operator")?.as_str()? {
        "In" => set("in")?,
        "NotIn" => set("notin")?,
        "Exists" if values.is_empty() => key.clone(),
        "DoesNotExist" if values.is_empty() => format!("!{key}"),
        _ => return None,
    };
    Some((key, text))
}

/// A `LabelSelector` as `a=1,b in (x,y),!c`, sorted by key; `<none>` when it
/// selects everything and `<error>` when it is malformed.
pub fn format_label_selector(selector: Option<&Value>) -> String {
    let selector = selector.cloned().unwrap_or(Value::Null);
    let mut requirements: Vec<(String, String)> = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())))
        .collect();
    for expr in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match expression(expr) {
            Some(requirement) => requirements.push(requirement),
            None => return "<error>".into(),
        }
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    if requirements.is_empty() {
        return "<none>".into();
    }
    requirements
        .into_iter()
        .map(|(_, text)| text)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_sets_sort_by_key() {
        assert_eq!(format_labels(Some(&json!({"b": "2", "a": "1"}))), "a=1,b=2");
        assert_eq!(format_labels(Some(&json!({}))), "<none>");
        assert_eq!(format_labels(None), "<none>");
    }

    #[test]
    fn selectors_render_every_operator() {
        let selector = json!({
            "matchLabels": {"tier": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                {"key": "zone", "operator": "NotIn", "values": ["x"]},
                {"key": "beta", "operator": "Exists"},
                {"key": "alpha", "operator": "DoesNotExist"},
            ],
        });
        assert_eq!(
            format_label_selector(Some(&selector)),
            "!alpha,beta,env in (dev,prod),tier=web,zone notin (x)"
        );
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(format_label_selector(None), "<none>");
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]});
        assert_eq!(format_label_selector(Some(&bad)), "<error>");
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]});
        assert_eq!(format_label_selector(Some(&bad)), "<error>");
    }
}
