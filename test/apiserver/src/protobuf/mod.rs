//! Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`) for the built-in
//! kinds, which kubectl's typed clients use: `kubectl create namespace|deployment|...`,
//! `kubectl run` and `kubectl exec`'s pod lookup send and accept it. A body is the 4-byte
//! magic `k8s\0` followed by a `runtime.Unknown` `{1: typeMeta {1: apiVersion, 2: kind},
//! 2: raw, 3: contentEncoding, 4: contentType}` whose `raw` is the object's message.
//!
//! Bodies are decoded to the JSON the store keeps and responses encoded from it, both
//! through [`schema::Schema`]. Custom resources have no protobuf form, as on a real server:
//! a protobuf body for one is rejected with 415 and a client accepting protobuf first gets
//! JSON when it also accepts JSON. Watches and Tables stay JSON (client-go reads the
//! response's content type).

mod schema;
mod wire;

use bytes::Bytes;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use schema::Schema;

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// What every protobuf body starts with.
const MAGIC: &[u8; 4] = b"k8s\0";

/// Whether a `Content-Type` header names the protobuf encoding.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

/// Decodes a protobuf request body into the object's JSON form, with its `apiVersion` and
/// `kind` from the envelope.
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    let bad =
        |e: String| ApiError::bad_request(format!("the request body is not valid protobuf: {e}"));
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s\\0 prefix".into()))?;
    let (mut api_version, mut kind, mut raw, mut encoding) =
        (String::new(), String::new(), &[][..], "");
    for (number, bytes) in wire::length_delimited_fields(unknown).map_err(bad)? {
        match number {
            1 => {
                for (n, b) in wire::length_delimited_fields(bytes).map_err(bad)? {
                    let text = String::from_utf8_lossy(b).into_owned();
                    match n {
                        1 => api_version = text,
                        2 => kind = text,
                        _ => {}
                    }
                }
            }
            2 => raw = bytes,
            3 => encoding = std::str::from_utf8(bytes).unwrap_or("?"),
            _ => {}
        }
    }
    if !encoding.is_empty() {
        return Err(bad(format!("unsupported contentEncoding {encoding:?}")));
    }
    let schema = Schema::get();
    let message = schema.kind(&api_version, &kind).ok_or_else(|| {
        ApiError::unsupported_media_type(&format!("{MEDIA_TYPE} for {api_version} {kind}"))
    })?;
    let mut object = match wire::decode(schema, &message, raw).map_err(bad)? {
        Value::Object(object) => object,
        _ => return Err(bad(format!("{kind} is not an object"))),
    };
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    Ok(Value::Object(object))
}

/// Whether `object` (a stored object, list or Status) has a protobuf form.
pub fn can_encode(object: &Value) -> bool {
    let field = |k: &str| object.get(k).and_then(Value::as_str).unwrap_or_default();
    Schema::get()
        .kind(field("apiVersion"), field("kind"))
        .is_some()
}

/// Encodes an object (its `apiVersion` and `kind` say which message) as a protobuf body.
pub fn encode(object: &Value) -> ApiResult<Bytes> {
    let field = |k: &str| object.get(k).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    let schema = Schema::get();
    let message = schema
        .kind(api_version, kind)
        .ok_or_else(|| ApiError::internal(format!("{api_version} {kind} has no protobuf form")))?;
    let mut raw = Vec::new();
    wire::encode(schema, &message, object, &mut raw)
        .map_err(|e| ApiError::internal(format!("encoding {kind} as protobuf failed: {e}")))?;
    let mut type_meta = Vec::new();
    wire::put_bytes(&mut type_meta, 1, api_version.as_bytes());
    wire::put_bytes(&mut type_meta, 2, kind.as_bytes());
    let mut body = MAGIC.to_vec();
    wire::put_bytes(&mut body, 1, &type_meta);
    wire::put_bytes(&mut body, 2, &raw);
    wire::put_bytes(&mut body, 3, b"");
    wire::put_bytes(&mut body, 4, b"");
    Ok(Bytes::from(body))
}

/// Whether a response to a client sending `accept` should be protobuf: the first acceptable
/// media range (by `q`, then order) that this server can produce decides, as in
/// kube-apiserver's negotiation; `protobuf_possible` is false for kinds without a protobuf
/// form, which then fall through to JSON.
pub fn wants_protobuf(accept: &str, protobuf_possible: bool) -> bool {
    let mut ranges: Vec<(f32, usize, String)> = accept
        .split(',')
        .enumerate()
        .filter_map(|(i, range)| {
            let mut parts = range.split(';');
            let mime = parts.next()?.trim().to_ascii_lowercase();
            let mut quality = 1.0f32;
            for param in parts {
                match param.split_once('=') {
                    Some((k, v)) if k.trim() == "q" => quality = v.trim().parse().unwrap_or(0.0),
                    // A conversion (`as=Table`) is not a plain object.
                    Some((k, _)) if k.trim() == "as" => return None,
                    _ => {}
                }
            }
            (quality > 0.0 && !mime.is_empty()).then_some((quality, i, mime))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, _, mime) in ranges {
        match mime.as_str() {
            MEDIA_TYPE if protobuf_possible => return true,
            "application/json" | "application/*" | "*/*" | "application/yaml" => return false,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_round_trip() {
        let deployment = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web", "namespace": "default", "labels": {"app": "web"},
                "creationTimestamp": "2026-01-02T03:04:05Z", "generation": 2,
                "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "u", "controller": false}]
            },
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "c", "image": "nginx", "args": ["a", "b"],
                            "resources": {"limits": {"cpu": "100m"}},
                            "ports": [{"containerPort": 80}],
                            "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1}
                        }],
                        "volumes": [{"name": "v", "configMap": {"name": "cm"}}]
                    }
                }
            },
            "status": {}
        });
        let body = encode(&deployment).unwrap();
        assert!(body.starts_with(b"k8s\0"));
        assert_eq!(decode(&body).unwrap(), deployment);
    }

    #[test]
    fn zero_scalars_are_dropped_unless_pointers() {
        // A Service with an empty clusterIP (non-pointer: means unset) and a Pod whose
        // automountServiceAccountToken is an explicit false (pointer: a value).
        let service = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "generateName": ""},
            "spec": {"clusterIP": "", "ports": [{"port": 80, "targetPort": 8080, "nodePort": 0}]},
            "status": {"loadBalancer": {}}});
        let decoded = decode(&encode(&service).unwrap()).unwrap();
        assert_eq!(decoded["metadata"], json!({"name": "s"}));
        assert_eq!(
            decoded["spec"],
            json!({"ports": [{"port": 80, "targetPort": 8080}]})
        );
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"automountServiceAccountToken": false, "hostNetwork": false, "containers": []}});
        let decoded = decode(&encode(&pod).unwrap()).unwrap();
        assert_eq!(
            decoded["spec"],
            json!({"automountServiceAccountToken": false})
        );
    }

    #[test]
    fn bad_bodies_are_clear_errors() {
        assert_eq!(decode(b"{}").unwrap_err().code, 400);
        assert_eq!(decode(b"k8s\0\x0a\x05").unwrap_err().code, 400, "truncated");
        let mut crd = b"k8s\0".to_vec();
        let mut type_meta = Vec::new();
        wire::put_bytes(&mut type_meta, 1, b"kubeovn.io/v1");
        wire::put_bytes(&mut type_meta, 2, b"Subnet");
        wire::put_bytes(&mut crd, 1, &type_meta);
        assert_eq!(decode(&crd).unwrap_err().code, 415);
    }

    #[test]
    fn negotiation_follows_the_first_acceptable_range() {
        assert!(wants_protobuf(
            "application/vnd.kubernetes.protobuf, */*",
            true
        ));
        assert!(!wants_protobuf(
            "application/vnd.kubernetes.protobuf, */*",
            false
        ));
        assert!(!wants_protobuf(
            "application/json, application/vnd.kubernetes.protobuf",
            true
        ));
        assert!(wants_protobuf(
            "application/json;q=0.5, application/vnd.kubernetes.protobuf",
            true
        ));
        assert!(!wants_protobuf("", true));
        assert!(!wants_protobuf(
            "application/json;as=Table;v=v1;g=meta.k8s.io",
            true
        ));
    }
}
