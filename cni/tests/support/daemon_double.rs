//! A test double of kube-ovn-daemon's CNI API — not a daemon: it configures nothing. It
//! listens on a unix socket in a temporary directory, records every request, and answers
//! `POST /api/v1/add` and `POST /api/v1/del` with canned replies shaped like upstream's
//! (bodies as Go encodes upstream's `CniResponse`), and `POST /api/v1/check` with 404 as
//! upstream's daemon does unless told otherwise. It stands in for the daemon so the
//! binary's side of the protocol can be tested on its own.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::oneshot;

/// A canned answer.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    /// A status with a JSON body, verbatim.
    pub fn json(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.to_string(),
        }
    }

    /// Upstream's DEL success.
    pub fn no_content() -> Reply {
        Reply {
            status: 204,
            body: String::new(),
        }
    }
}

/// One request as the double received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// `Host` header.
    pub host: String,
    /// `Content-Type` header (the Go daemon's router rejects anything but JSON).
    pub content_type: String,
    /// The body as JSON, or as a JSON string when it was not JSON.
    pub body: Value,
}

/// The running double; stops and removes its socket when dropped.
pub struct DaemonDouble {
    dir: tempfile::TempDir,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DaemonDouble {
    /// Starts answering ADD with `add` and DEL with `del`, and CHECK with 404 (upstream's
    /// daemon has no such endpoint). The socket accepts connections when this returns (it is
    /// bound before the serving thread starts).
    pub fn start(add: Reply, del: Reply) -> DaemonDouble {
        DaemonDouble::start_with_check(add, del, Reply::json(404, "404 page not found"))
    }

    /// As [`DaemonDouble::start`], answering CHECK with `check` (our daemon's endpoint).
    pub fn start_with_check(add: Reply, del: Reply, check: Reply) -> DaemonDouble {
        let dir = tempfile::tempdir().unwrap();
        let listener =
            std::os::unix::net::UnixListener::bind(dir.path().join("daemon.sock")).unwrap();
        listener.set_nonblocking(true).unwrap();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel();
        let log = recorded.clone();
        let thread = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(serve(listener, [add, del, check], log, stopped))
        });
        DaemonDouble {
            dir,
            recorded,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The socket to put into `server_socket`.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("daemon.sock")
    }

    /// A path in the double's directory where no socket exists.
    pub fn absent_socket(&self) -> PathBuf {
        self.dir.path().join("absent.sock")
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }
}

impl Drop for DaemonDouble {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// Replies to ADD, DEL and CHECK, in that order.
type Replies = [Reply; 3];

async fn serve(
    listener: std::os::unix::net::UnixListener,
    replies: Replies,
    log: Arc<Mutex<Vec<Recorded>>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = tokio::net::UnixListener::from_std(listener).unwrap();
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted.unwrap().0,
        };
        let (replies, log) = (replies.clone(), log.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let (replies, log) = (replies.clone(), log.clone());
                async move { Ok::<_, Infallible>(answer(req, &replies, &log).await) }
            });
            // A client that goes away mid-exchange is the binary's business, not the double's.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    [add, del, check]: &Replies,
    log: &Mutex<Vec<Recorded>>,
) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let (host, content_type) = (header("host"), header("content-type"));
    let raw = req.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&raw)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
    log.lock().unwrap().push(Recorded {
        method: method.clone(),
        path: path.clone(),
        host,
        content_type,
        body,
    });
    let reply = match (method.as_str(), path.as_str()) {
        ("POST", "/api/v1/add") => add.clone(),
        ("POST", "/api/v1/del") => del.clone(),
        ("POST", "/api/v1/check") => check.clone(),
        _ => Reply::json(404, "404 page not found"),
    };
    let mut resp = Response::new(Full::new(Bytes::from(reply.body)));
    *resp.status_mut() = hyper::StatusCode::from_u16(reply.status).unwrap();
    if reply.status != 204 {
        resp.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
    }
    resp
}
