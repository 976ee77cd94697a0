//! Deciding from the `Accept` header whether a client wants a Table, the way
//! kubectl asks for server-side printing:
//! `application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json`.
//! Media ranges are tried by descending `q`; the first one naming a Table this
//! server can produce, or naming no conversion at all, decides.

use std::collections::HashMap;

use crate::error::{ApiError, ApiResult};

/// What each row's `object` carries (`includeObject` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// `null`.
    None,
    /// A `PartialObjectMetadata` with the object's metadata (the default).
    Metadata,
    /// The whole object.
    Object,
}

/// A client's request for Table output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableRequest {
    /// `meta.k8s.io/v1` or `meta.k8s.io/v1beta1`.
    pub group_version: &'static str,
    /// What the rows embed.
    pub include: IncludeObject,
}

struct MediaRange<'a> {
    mime: String,
    params: Vec<(String, &'a str)>,
    quality: f32,
}

impl MediaRange<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
}

fn media_ranges(accept: &str) -> Vec<MediaRange<'_>> {
    let mut ranges: Vec<MediaRange<'_>> = accept
        .split(',')
        .filter(|r| !r.trim().is_empty())
        .map(|range| {
            let mut parts = range.split(';');
            let mime = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let params: Vec<(String, &str)> = parts
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"')))
                .collect();
            let quality = params
                .iter()
                .find(|(k, _)| k == "q")
                .and_then(|(_, q)| q.parse().ok())
                .unwrap_or(1.0);
            MediaRange {
                mime,
                params,
                quality,
            }
        })
        .filter(|r| r.quality > 0.0)
        .collect();
    ranges.sort_by(|a, b| b.quality.total_cmp(&a.quality));
    ranges
}

fn table_version(range: &MediaRange<'_>) -> Option<&'static str> {
    let json = matches!(
        range.mime.as_str(),
        "application/json" | "application/*" | "*/*"
    );
    if !json || range.param("g") != Some("meta.k8s.io") {
        return None;
    }
    match range.param("v") {
        Some("v1") => Some("meta.k8s.io/v1"),
        Some("v1beta1") => Some("meta.k8s.io/v1beta1"),
        _ => None,
    }
}

fn include_object(query: &HashMap<String, String>) -> ApiResult<IncludeObject> {
    match query.get("includeObject").map(String::as_str) {
        None | Some("" | "Metadata") => Ok(IncludeObject::Metadata),
        Some("None") => Ok(IncludeObject::None),
        Some("Object") => Ok(IncludeObject::Object),
        Some(other) => Err(ApiError::bad_request(format!(
            "Unable to convert to Table as requested: includeObject: Unsupported value: {other:?}: supported values: \"\", \"Metadata\", \"None\", \"Object\""
        ))),
    }
}

/// The Table the client asked for, or `None` for plain JSON objects. Other
/// conversions (`as=PartialObjectMetadata`...) are not produced by this
/// fixture and fall through to the next range.
pub fn requested_table(
    accept: &str,
    query: &HashMap<String, String>,
) -> ApiResult<Option<TableRequest>> {
    for range in media_ranges(accept) {
        match range.param("as") {
            None => return Ok(None),
            Some("Table") => {
                if let Some(group_version) = table_version(&range) {
                    return Ok(Some(TableRequest {
                        group_version,
                        include: include_object(query)?,
                    }));
                }
            }
            Some(_) => {}
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kubectl_gets_a_v1_table_with_metadata() {
        assert_eq!(
            requested_table(KUBECTL, &query(&[])).unwrap(),
            Some(TableRequest {
                group_version: "meta.k8s.io/v1",
                include: IncludeObject::Metadata,
            })
        );
        let older = "application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json";
        assert_eq!(
            requested_table(older, &query(&[("includeObject", "Object")]))
                .unwrap()
                .map(|t| (t.group_version, t.include)),
            Some(("meta.k8s.io/v1beta1", IncludeObject::Object))
        );
    }

    #[test]
    fn plain_or_unknown_conversions_mean_json() {
        assert_eq!(requested_table("", &query(&[])).unwrap(), None);
        assert_eq!(
            requested_table("application/json", &query(&[])).unwrap(),
            None
        );
        assert_eq!(
            requested_table(
                "application/json, application/json;as=Table;v=v1;g=meta.k8s.io",
                &query(&[])
            )
            .unwrap(),
            None,
            "the first range decides"
        );
        assert_eq!(
            requested_table("application/json;as=Table;v=v2;g=meta.k8s.io;q=0.9, application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io", &query(&[])).unwrap(),
            None
        );
    }

    #[test]
    fn quality_orders_the_ranges() {
        let accept = "application/json;q=0.5, application/json;as=Table;v=v1;g=meta.k8s.io";
        assert!(requested_table(accept, &query(&[])).unwrap().is_some());
        let refused = "application/json;as=Table;v=v1;g=meta.k8s.io;q=0";
        assert_eq!(requested_table(refused, &query(&[])).unwrap(), None);
    }

    #[test]
    fn bad_include_object_is_a_bad_request() {
        let error =
            requested_table(KUBECTL, &query(&[("includeObject", "Everything")])).unwrap_err();
        assert_eq!(error.code, 400);
        assert!(error.message.contains("includeObject"), "{}", error.message);
        assert_eq!(
            requested_table(
                "application/json",
                &query(&[("includeObject", "Everything")])
            )
            .unwrap(),
            None,
            "the parameter only matters for tables"
        );
    }
}
