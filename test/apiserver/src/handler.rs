//! Request dispatch: routes a request, decodes its body, runs the store
//! operation for its verb and renders the result or a `Status` error.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;

use crate::access::Decision;
use crate::discovery;
use crate::error::{ApiError, ApiResult};
use crate::patch::PatchKind;
use crate::protobuf;
use crate::resources::ResourceType;
use crate::route::{parse_query, route, ResourcePath, Route};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::ServerState;
use crate::store::{WatchScope, WatchStart};
use crate::table::{self, requested_table, TableRequest};
use crate::watch::{self, ChannelBody, WatchParams};

/// Either a complete JSON document or a streamed watch.
pub type ResponseBody = Either<Full<Bytes>, ChannelBody>;

fn json_response(code: u16, value: &Value) -> Response<ResponseBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// How an object or list response is rendered, from the request's `Accept`.
#[derive(Debug, Clone, Copy)]
enum Output {
    /// Plain JSON.
    Json,
    /// A server-side printed Table.
    Table(TableRequest),
    /// Kubernetes' protobuf encoding, for built-in kinds whose client prefers it.
    Protobuf,
}

impl Output {
    fn negotiate(
        accept: &str,
        query: &HashMap<String, String>,
        rt: &ResourceType,
    ) -> ApiResult<Output> {
        Ok(match requested_table(accept, query)? {
            Some(table) => Output::Table(table),
            None if protobuf::wants_protobuf(accept, !rt.custom) => Output::Protobuf,
            None => Output::Json,
        })
    }

    fn table(self) -> Option<TableRequest> {
        match self {
            Output::Table(table) => Some(table),
            _ => None,
        }
    }
}

/// An object or list response in the negotiated form.
fn object_response(
    code: u16,
    rt: &ResourceType,
    output: Output,
    value: &Value,
) -> ApiResult<Response<ResponseBody>> {
    Ok(match output {
        Output::Table(request) => json_response(
            code,
            &table::render(rt, value, &request, jiff::Timestamp::now()),
        ),
        Output::Protobuf if protobuf::can_encode(value) => {
            let mut response = Response::new(Either::Left(Full::new(protobuf::encode(value)?)));
            *response.status_mut() =
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(protobuf::MEDIA_TYPE));
            response
        }
        Output::Json | Output::Protobuf => json_response(code, value),
    })
}

fn error_response(error: &ApiError) -> Response<ResponseBody> {
    json_response(error.code, &error.to_status())
}

fn watch_response(body: ResponseBody) -> Response<ResponseBody> {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Entry point for every request; never fails at the HTTP level.
pub async fn handle(
    state: Arc<ServerState>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query());
    let accept = header(&req, ACCEPT);
    let content_type = header(&req, CONTENT_TYPE);
    tracing::debug!("{method} {path} {:?}", req.uri().query());
    let authorization = header(&req, AUTHORIZATION);
    match state
        .access
        .decide(&authorization, method.as_str(), &route(&path), &query)
    {
        Decision::Allow => {}
        Decision::Unauthenticated => return Ok(error_response(&ApiError::unauthorized())),
        Decision::Forbidden {
            user,
            attributes: a,
        } => {
            let resource = if a.subresource.is_empty() {
                a.resource.clone()
            } else {
                format!("{}/{}", a.resource, a.subresource)
            };
            let scope = if a.namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace \"{}\"", a.namespace)
            };
            return Ok(error_response(&ApiError::forbidden(
                &user, &a.verb, &resource, &a.group, &scope,
            )));
        }
    }
    if let Route::Resource(target) = route(&path) {
        if target.group.is_empty()
            && target.plural == "pods"
            && target.subresource.as_deref() == Some("exec")
        {
            return Ok(
                crate::exec::serve(&state, req, &target).unwrap_or_else(|e| error_response(&e))
            );
        }
    }
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Ok(error_response(&ApiError::bad_request(format!(
                "reading the body failed: {e}"
            ))))
        }
    };
    let result = dispatch(
        &state,
        &method,
        &path,
        &query,
        &accept,
        &content_type,
        &body,
    );
    Ok(result.unwrap_or_else(|e| error_response(&e)))
}

fn header(req: &Request<Incoming>, name: hyper::header::HeaderName) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn dispatch(
    state: &Arc<ServerState>,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    accept: &str,
    content_type: &str,
    body: &Bytes,
) -> ApiResult<Response<ResponseBody>> {
    let route = route(path);
    if !matches!(route, Route::Resource(_)) && *method != Method::GET {
        return Err(ApiError::method_not_allowed(method.as_str()));
    }
    let store = state.lock_store();
    let found = |doc: Option<Value>| {
        doc.map(|d| json_response(200, &d))
            .ok_or_else(|| ApiError::path_not_found(path))
    };
    match route {
        Route::CoreVersions => Ok(json_response(
            200,
            &discovery::core_versions(&state.address),
        )),
        Route::Groups => Ok(json_response(200, &discovery::group_list(store.registry()))),
        Route::Group(group) => found(discovery::group(store.registry(), &group)),
        Route::GroupVersion { group, version } => {
            found(discovery::resource_list(store.registry(), &group, &version))
        }
        Route::Version => Ok(json_response(200, &discovery::version())),
        Route::Health => {
            let mut response = Response::new(Either::Left(Full::new(Bytes::from_static(b"ok"))));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            Ok(response)
        }
        Route::OpenApiV2 => Ok(openapi_v2(accept)),
        Route::Unknown => Err(ApiError::path_not_found(path)),
        Route::Resource(target) => {
            let rt = store
                .lookup(&target.group, &target.version, &target.plural)
                .cloned()
                .ok_or_else(|| ApiError::path_not_found(path))?;
            drop(store);
            let call = ResourceCall {
                method,
                query,
                content_type,
                body,
                output: Output::negotiate(accept, query, &rt)?,
            };
            resource_request(state, &rt, &target, &call)
        }
    }
}

/// kubectl only needs `/openapi/v2` to exist for client-side validation; an
/// empty protobuf document means "no schemas", so validation is skipped.
fn openapi_v2(accept: &str) -> Response<ResponseBody> {
    if accept.contains("protobuf") {
        let mut response = Response::new(Either::Left(Full::new(Bytes::new())));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
        );
        response
    } else {
        json_response(
            200,
            &serde_json::json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.32.0"}, "paths": {}, "definitions": {}}),
        )
    }
}

fn decode_body(rt: &ResourceType, content_type: &str, body: &Bytes) -> ApiResult<Value> {
    if protobuf::is_protobuf(content_type) {
        // Custom resources have no protobuf form.
        if rt.custom {
            return Err(ApiError::unsupported_media_type(content_type));
        }
        return protobuf::decode(body);
    }
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    let yaml = mime.ends_with("yaml");
    let parsed = if yaml {
        serde_norway::from_slice::<Value>(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not valid {}: {e}",
            if yaml { "YAML" } else { "JSON" }
        ))
    })
}

fn selectors(query: &HashMap<String, String>) -> ApiResult<(LabelSelector, FieldSelector)> {
    let get = |k: &str| query.get(k).map(String::as_str).unwrap_or_default();
    Ok((
        LabelSelector::parse(get("labelSelector"))?,
        FieldSelector::parse(get("fieldSelector"))?,
    ))
}

/// `query` with `dryRun` from a DELETE's DeleteOptions body, where clients may put it.
fn with_body_dry_run(
    query: &HashMap<String, String>,
    rt: &ResourceType,
    method: &Method,
    content_type: &str,
    body: &Bytes,
) -> HashMap<String, String> {
    let mut q = query.clone();
    if *method == Method::DELETE && !body.iter().all(u8::is_ascii_whitespace) {
        if let Ok(options) = decode_body(rt, content_type, body) {
            if let Some(values) = options.get("dryRun").and_then(Value::as_array) {
                let joined: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
                if !joined.is_empty() {
                    q.insert("dryRun".into(), joined.join(","));
                }
            }
        }
    }
    q
}

fn flag(query: &HashMap<String, String>, name: &str) -> bool {
    matches!(query.get(name).map(String::as_str), Some("true" | "1"))
}

/// What a resource request asks for beyond its path.
struct ResourceCall<'a> {
    method: &'a Method,
    query: &'a HashMap<String, String>,
    content_type: &'a str,
    body: &'a Bytes,
    /// How the response is rendered.
    output: Output,
}

fn resource_request(
    state: &Arc<ServerState>,
    rt: &ResourceType,
    target: &ResourcePath,
    call: &ResourceCall<'_>,
) -> ApiResult<Response<ResponseBody>> {
    let ResourceCall {
        method,
        query,
        content_type,
        body,
        output,
    } = call;
    let output = *output;
    if target.namespace.is_some() && !rt.namespaced {
        return Err(ApiError::path_not_found(&rt.group_resource()));
    }
    let status_only = match target.subresource.as_deref() {
        None => false,
        Some("status") if rt.status_subresource => true,
        Some("scale") if crate::workloads::has_scale(rt) => {
            return scale_request(state, rt, target, call);
        }
        Some(other) => {
            return Err(ApiError::path_not_found(&format!(
                "{}/{other}",
                rt.group_resource()
            )))
        }
    };
    let ns = target.namespace.as_deref();
    let Some(name) = target.name.as_deref() else {
        return collection_request(state, rt, ns, call);
    };
    // A DELETE carries its dry run in the body's DeleteOptions (kube-rs sends it there).
    let query = &with_body_dry_run(query, rt, method, content_type, body);
    let mut store = state.store_for(query)?;
    match **method {
        Method::GET => object_response(200, rt, output, &store.get(rt, ns, name)?),
        Method::PUT => {
            let object = decode_body(rt, content_type, body)?;
            object_response(
                200,
                rt,
                output,
                &store.update(rt, ns, name, object, status_only)?,
            )
        }
        Method::PATCH => {
            let kind = PatchKind::from_content_type(content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
            let patch = decode_body(rt, content_type, body)?;
            let (object, created) = store.patch(rt, ns, name, kind, &patch, status_only)?;
            object_response(if created { 201 } else { 200 }, rt, output, &object)
        }
        Method::DELETE if !status_only => {
            let options = if body.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                decode_body(rt, content_type, body)?
            };
            object_response(200, rt, output, &store.delete(rt, ns, name, &options)?)
        }
        _ => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

/// GET, PUT or PATCH of a workload's `scale` subresource: an `autoscaling/v1` Scale read from
/// and written to the object's `spec.replicas`.
fn scale_request(
    state: &Arc<ServerState>,
    rt: &ResourceType,
    target: &ResourcePath,
    call: &ResourceCall<'_>,
) -> ApiResult<Response<ResponseBody>> {
    let ns = target.namespace.as_deref();
    let Some(name) = target.name.as_deref() else {
        return Err(ApiError::method_not_allowed(call.method.as_str()));
    };
    let mut store = state.store_for(call.query)?;
    let current = store.get(rt, ns, name)?;
    let scale = match *call.method {
        Method::GET => return Ok(json_response(200, &crate::workloads::scale_of(&current))),
        Method::PUT => decode_body(rt, call.content_type, call.body)?,
        Method::PATCH => {
            let kind = PatchKind::from_content_type(call.content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(call.content_type))?;
            let patch = decode_body(rt, call.content_type, call.body)?;
            let mut scale = crate::workloads::scale_of(&current);
            match kind {
                PatchKind::Merge => crate::patch::merge_patch(&mut scale, &patch),
                PatchKind::Json => crate::patch::json_patch(&mut scale, &patch)?,
                PatchKind::Strategic => crate::patch::strategic_merge_patch(&mut scale, &patch)?,
                PatchKind::Apply => crate::patch::apply_merge(&mut scale, &patch)?,
            }
            scale
        }
        _ => return Err(ApiError::method_not_allowed(call.method.as_str())),
    };
    let updated = crate::workloads::with_scale(&current, &scale).ok_or_else(|| {
        ApiError::invalid(format!(
            "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Required value"
        ))
    })?;
    let stored = store.update(rt, ns, name, updated, false)?;
    Ok(json_response(200, &crate::workloads::scale_of(&stored)))
}

fn collection_request(
    state: &Arc<ServerState>,
    rt: &ResourceType,
    ns: Option<&str>,
    call: &ResourceCall<'_>,
) -> ApiResult<Response<ResponseBody>> {
    let ResourceCall {
        method,
        query,
        content_type,
        body,
        output,
    } = call;
    let output = *output;
    let (labels, fields) = selectors(query)?;
    match **method {
        Method::GET if flag(query, "watch") => start_watch(state, rt, ns, call, labels, fields),
        Method::GET => {
            let store = state.lock_store();
            if query.get("resourceVersionMatch").map(String::as_str) == Some("Exact") {
                let requested = query.get("resourceVersion").cloned().unwrap_or_default();
                if requested != store.resource_version().to_string() {
                    return Err(ApiError::expired(format!(
                        "resourceVersion {requested} is no longer available for an exact list"
                    )));
                }
            }
            let page = crate::store::Page {
                limit: query.get("limit").and_then(|l| l.parse().ok()),
                continue_token: query.get("continue").cloned(),
            };
            let list = store.list_page(rt, ns, &labels, &fields, &page)?;
            object_response(200, rt, output, &list)
        }
        Method::POST if ns.is_some() || !rt.namespaced => {
            let object = decode_body(rt, content_type, body)?;
            object_response(
                201,
                rt,
                output,
                &state.store_for(query)?.create(rt, ns, object)?,
            )
        }
        Method::DELETE => object_response(
            200,
            rt,
            output,
            &state
                .store_for(query)?
                .delete_collection(rt, ns, &labels, &fields)?,
        ),
        _ => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

fn start_watch(
    state: &Arc<ServerState>,
    rt: &ResourceType,
    ns: Option<&str>,
    call: &ResourceCall<'_>,
    labels: LabelSelector,
    fields: FieldSelector,
) -> ApiResult<Response<ResponseBody>> {
    let query = call.query;
    let initial_events = flag(query, "sendInitialEvents");
    let start = match query.get("resourceVersion").map(String::as_str) {
        _ if initial_events => WatchStart::Now,
        None | Some("") | Some("0") => WatchStart::Now,
        Some(rv) => WatchStart::After(
            rv.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let timeout = match query.get("timeoutSeconds") {
        Some(t) => Some(Duration::from_secs(t.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid timeoutSeconds {t:?}"))
        })?)),
        None => None,
    };
    let params = WatchParams {
        labels,
        fields,
        bookmarks: flag(query, "allowWatchBookmarks"),
        initial_events_end: initial_events,
        timeout,
        table: call.output.table(),
    };
    let subscribed = {
        let mut store = state.lock_store();
        let rv = store.resource_version();
        store
            .watch(rt, WatchScope::new(rt, ns), start)
            .map(|feed| (rv, feed))
    };
    match subscribed {
        Ok((rv, (initial, feed))) => Ok(watch_response(Either::Right(watch::stream(
            state.clone(),
            rt.clone(),
            rv,
            initial,
            feed,
            params,
        )))),
        // Like a real API server, a too-old watch is a successful response
        // carrying a single ERROR event, which is what makes clients relist.
        Err(e) if e.code == 410 => Ok(watch_response(Either::Left(Full::new(watch::error_line(
            &e,
        ))))),
        Err(e) => Err(e),
    }
}
