//! Turns request paths and query strings into what they address.

use std::collections::HashMap;

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/api`: the legacy group's versions.
    CoreVersions,
    /// `/apis`: all named groups.
    Groups,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`: the resources of a group version.
    GroupVersion { group: String, version: String },
    /// A collection, object or object subresource.
    Resource(ResourcePath),
    /// `/version`.
    Version,
    /// `/healthz`, `/livez`, `/readyz`.
    Health,
    /// `/openapi/v2`.
    OpenApiV2,
    /// Anything else.
    Unknown,
}

/// The parts of a resource URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    /// API group ("" for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Namespace segment, if the URL had one.
    pub namespace: Option<String>,
    /// Resource plural.
    pub plural: String,
    /// Object name, absent for collections.
    pub name: Option<String>,
    /// Subresource such as `status`.
    pub subresource: Option<String>,
}

fn resource_path(group: &str, version: &str, rest: &[&str]) -> Route {
    let owned = |s: Option<&&str>| s.map(|s| percent_decode(s));
    // `namespaces/<ns>/<plural>/...` unless it is the namespace object's own subresource.
    let namespaced = rest.len() >= 3
        && rest[0] == "namespaces"
        && !(group.is_empty() && rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    let (namespace, rest) = if namespaced {
        (Some(percent_decode(rest[1])), &rest[2..])
    } else {
        (None, rest)
    };
    if rest.is_empty() || rest.len() > 3 {
        return Route::Unknown;
    }
    Route::Resource(ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        plural: rest[0].to_string(),
        name: owned(rest.get(1)),
        subresource: owned(rest.get(2)),
    })
}

/// Classifies a request path.
pub fn route(path: &str) -> Route {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segments.as_slice() {
        ["api"] => Route::CoreVersions,
        ["api", version] => Route::GroupVersion {
            group: String::new(),
            version: version.to_string(),
        },
        ["api", version, rest @ ..] => resource_path("", version, rest),
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group(group.to_string()),
        ["apis", group, version] => Route::GroupVersion {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["apis", group, version, rest @ ..] => resource_path(group, version, rest),
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["openapi", "v2"] => Route::OpenApiV2,
        _ => Route::Unknown,
    }
}

/// Decodes `%XX` escapes and `+` (as space) in a URL component; bad escapes stay literal.
pub fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a query string into decoded key/value pairs (last one wins).
pub fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    query_pairs(query).into_iter().collect()
}

/// Every decoded key/value pair of a query string in order, repeated keys included (exec's
/// argv is one `command` parameter per word).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(
        group: &str,
        ns: Option<&str>,
        plural: &str,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> Route {
        Route::Resource(ResourcePath {
            group: group.into(),
            version: "v1".into(),
            namespace: ns.map(Into::into),
            plural: plural.into(),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
        })
    }

    #[test]
    fn classifies_paths() {
        assert_eq!(route("/api"), Route::CoreVersions);
        assert_eq!(
            route("/api/v1/namespaces"),
            res("", None, "namespaces", None, None)
        );
        assert_eq!(
            route("/api/v1/namespaces/a"),
            res("", None, "namespaces", Some("a"), None)
        );
        assert_eq!(
            route("/api/v1/namespaces/a/status"),
            res("", None, "namespaces", Some("a"), Some("status"))
        );
        assert_eq!(
            route("/api/v1/namespaces/a/pods"),
            res("", Some("a"), "pods", None, None)
        );
        assert_eq!(
            route("/api/v1/namespaces/a/pods/p/status"),
            res("", Some("a"), "pods", Some("p"), Some("status"))
        );
        assert_eq!(
            route("/apis/x.io/v1/widgets/w"),
            res("x.io", None, "widgets", Some("w"), None)
        );
        assert_eq!(
            route("/api/v1/namespaces/a/pods/p/status/extra"),
            Route::Unknown
        );
        assert_eq!(route("/nonsense"), Route::Unknown);
    }

    #[test]
    fn decodes_query() {
        let q = parse_query(Some(
            "labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=1&bad=%zz",
        ));
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["watch"], "1");
        assert_eq!(q["bad"], "%zz");
    }
}
