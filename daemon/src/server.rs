//! The shim's API: HTTP/1.1 on a unix socket, `POST /api/v1/add` (200 + `CniResponse`, 400, 500)
//! and `POST /api/v1/del` (204), as upstream's go-restful server, plus our `POST /api/v1/check`
//! (204, 400, 500) for the shim's CHECK.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use crate::handler::{Daemon, HandlerError};
use crate::keyed_lock::KeyedLocks;
use crate::protocol::{CheckRequest, CniRequest, CniResponse};

/// Binds the socket, replacing a stale one left by a previous run.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    UnixListener::bind(path)
}

/// Serves connections until the listener fails. Requests for the same container are served
/// one at a time (see [`KeyedLocks`]).
pub async fn serve(listener: UnixListener, daemon: Daemon) -> std::io::Result<()> {
    let daemon = Arc::new(daemon);
    let containers = KeyedLocks::default();
    loop {
        let (stream, _) = listener.accept().await?;
        let daemon = daemon.clone();
        let containers = containers.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let daemon = daemon.clone();
                let containers = containers.clone();
                async move {
                    let started = Instant::now();
                    // Upstream labels the operation with the request URI.
                    let uri = match req.uri().path() {
                        p @ ("/api/v1/add" | "/api/v1/del") => Some(p.to_string()),
                        _ => None,
                    };
                    let resp = route(&daemon, &containers, req).await;
                    if let Some(uri) = uri {
                        daemon
                            .metrics
                            .observe_op(&uri, resp.status(), started.elapsed());
                    }
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "shim connection ended with an error");
            }
        });
    }
}

fn json(status: StatusCode, body: &CniResponse) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_default()
}

fn status(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

fn error_status(e: &HandlerError) -> StatusCode {
    match e {
        HandlerError::BadRequest(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The three calls the shim makes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Del,
    Check,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Del => "del",
            Op::Check => "check",
        }
    }
}

async fn route(
    daemon: &Daemon,
    containers: &KeyedLocks,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let op = match (req.method(), req.uri().path()) {
        (&Method::POST, "/api/v1/add") => Op::Add,
        (&Method::POST, "/api/v1/del") => Op::Del,
        (&Method::POST, "/api/v1/check") => Op::Check,
        (_, "/api/v1/add" | "/api/v1/del" | "/api/v1/check") => {
            return status(StatusCode::METHOD_NOT_ALLOWED)
        }
        _ => return status(StatusCode::NOT_FOUND),
    };
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return json(
                StatusCode::BAD_REQUEST,
                &failure(format!("read request failed {e}")),
            )
        }
    };
    let parsed = match op {
        Op::Check => serde_json::from_slice::<CheckRequest>(&body),
        Op::Add | Op::Del => {
            serde_json::from_slice::<CniRequest>(&body).map(|request| CheckRequest {
                request,
                ..CheckRequest::default()
            })
        }
    };
    let check = match parsed {
        Ok(r) => r,
        Err(e) => {
            return json(
                StatusCode::BAD_REQUEST,
                &failure(format!("parse {} request failed {e}", op.name())),
            );
        }
    };
    let cni = &check.request;
    tracing::info!(op = op.name(), pod = %cni.pod_name, ns = %cni.pod_namespace, container = %cni.container_id, "request");
    // A runtime should not send two requests for one container at once, but if it does the
    // second must not undo the first: one ADD's cleanup would remove the other's port and veth.
    let _container = containers.lock(&cni.container_id).await;
    let result = match op {
        Op::Add => daemon
            .add(cni)
            .await
            .map(|resp| json(StatusCode::OK, &resp)),
        Op::Del => daemon
            .del(cni)
            .await
            .map(|()| status(StatusCode::NO_CONTENT)),
        Op::Check => daemon
            .check(&check)
            .await
            .map(|()| status(StatusCode::NO_CONTENT)),
    };
    result.unwrap_or_else(|e| {
        tracing::warn!(op = op.name(), pod = %cni.pod_name, ns = %cni.pod_namespace, error = %e, "request failed");
        json(error_status(&e), &failure(e.to_string()))
    })
}

/// A reply carrying only an error, as upstream's daemon answers failures.
fn failure(error: String) -> CniResponse {
    CniResponse {
        error,
        ..CniResponse::default()
    }
}
