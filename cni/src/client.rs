//! HTTP/1.1 to kube-ovn-daemon over its unix socket, one connection per call, every call
//! bounded by a deadline (upstream's Go client has none and can hang a pod's sandbox
//! creation for as long as the runtime waits). Requests look like upstream's on the wire:
//! `POST /api/v1/...`, `Host: dummy`, a JSON body; the daemon's framework rejects anything
//! but `application/json`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use serde::Serialize;

use crate::protocol::{
    CheckRequest, CniRequest, CniResponse, ADD_PATH, CHECK_PATH, DEL_PATH, DUMMY_HOST,
};

/// Largest answer we read; the daemon's are a few hundred bytes.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Why a call to the daemon failed.
#[derive(Debug)]
pub enum RpcError {
    /// The socket file does not exist: no daemon runs (or ever ran) on this node.
    SocketAbsent(PathBuf),
    /// Connecting or talking HTTP failed.
    Transport(String),
    /// No answer within the deadline.
    Timeout(Duration),
    /// The daemon answered with a failure status; `message` is its `error` (or raw body).
    Status {
        /// Which call, in upstream's wording (`request ip` / `delete ip`).
        call: &'static str,
        /// HTTP status.
        status: u16,
        /// The daemon's explanation.
        message: String,
    },
    /// A success status with a body that is not a [`CniResponse`].
    BadAnswer(String),
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcError::SocketAbsent(p) => {
                write!(f, "kube-ovn-daemon socket {} does not exist", p.display())
            }
            RpcError::Transport(e) => f.write_str(e),
            RpcError::Timeout(d) => write!(f, "kube-ovn-daemon did not answer within {d:?}"),
            // Upstream's wording, which people grep their kubelet logs for.
            RpcError::Status {
                call,
                status,
                message,
            } => {
                write!(f, "{call} return {status} {message}")
            }
            RpcError::BadAnswer(e) => write!(f, "undecodable kube-ovn-daemon answer: {e}"),
        }
    }
}

impl std::error::Error for RpcError {}

/// A client for one daemon socket.
#[derive(Debug, Clone)]
pub struct DaemonClient {
    socket: PathBuf,
    timeout: Duration,
}

impl DaemonClient {
    /// A client whose every call (connect, request, answer) must finish within `timeout`.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Self {
        DaemonClient {
            socket: socket.into(),
            timeout,
        }
    }

    /// `POST /api/v1/add`: success is 200 with the configured NIC.
    pub async fn add(&self, req: &CniRequest) -> Result<CniResponse, RpcError> {
        let (status, body) = self.post(ADD_PATH, req).await?;
        if status == StatusCode::OK {
            return serde_json::from_slice(&body).map_err(|e| RpcError::BadAnswer(e.to_string()));
        }
        Err(RpcError::Status {
            call: "request ip",
            status: status.as_u16(),
            message: error_message(&body),
        })
    }

    /// `POST /api/v1/del`: success is 204; the daemon answers that for a NIC that is
    /// already gone, so repeating DEL is safe.
    pub async fn del(&self, req: &CniRequest) -> Result<(), RpcError> {
        let (status, body) = self.post(DEL_PATH, req).await?;
        if status == StatusCode::NO_CONTENT {
            return Ok(());
        }
        Err(RpcError::Status {
            call: "delete ip",
            status: status.as_u16(),
            message: error_message(&body),
        })
    }

    /// `POST /api/v1/check`: success is 204, when the pod's NIC and its port are still what
    /// the ADD made. Upstream's daemon has no such endpoint and answers 404.
    pub async fn check(&self, req: &CheckRequest) -> Result<(), RpcError> {
        let (status, body) = self.post(CHECK_PATH, req).await?;
        if status == StatusCode::NO_CONTENT {
            return Ok(());
        }
        Err(RpcError::Status {
            call: "check",
            status: status.as_u16(),
            message: error_message(&body),
        })
    }

    /// Whether something accepts connections on the socket (the daemon's own liveness
    /// probe does the same); the API has no endpoint without side effects.
    pub async fn probe(&self) -> Result<(), RpcError> {
        tokio::time::timeout(self.timeout, self.connect())
            .await
            .map_err(|_| RpcError::Timeout(self.timeout))?
            .map(drop)
    }

    async fn connect(&self) -> Result<UnixStream, RpcError> {
        UnixStream::connect(&self.socket).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                RpcError::SocketAbsent(self.socket.clone())
            } else {
                RpcError::Transport(format!("connect to {}: {e}", self.socket.display()))
            }
        })
    }

    async fn post(
        &self,
        path: &str,
        req: &impl Serialize,
    ) -> Result<(StatusCode, Bytes), RpcError> {
        let body = serde_json::to_vec(req).expect("the API's requests always encode");
        tokio::time::timeout(self.timeout, self.exchange(path, body))
            .await
            .map_err(|_| RpcError::Timeout(self.timeout))?
    }

    async fn exchange(&self, path: &str, body: Vec<u8>) -> Result<(StatusCode, Bytes), RpcError> {
        let transport = |e: hyper::Error| RpcError::Transport(format!("POST {path}: {e}"));
        let stream = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(transport)?;
        // The connection future does the socket I/O; it ends when the exchange is over
        // and the sender is dropped.
        let conn = tokio::spawn(conn);
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, DUMMY_HOST)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("a static request is valid");
        let response = sender.send_request(request).await.map_err(transport)?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| RpcError::Transport(format!("POST {path}: reading the answer: {e}")))?
            .to_bytes();
        drop(sender);
        conn.abort();
        Ok((status, body))
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

/// The daemon's `error` member, or the raw body when it is not a [`CniResponse`] (e.g. the
/// HTTP framework's own plain-text 404/415).
fn error_message(body: &[u8]) -> String {
    match serde_json::from_slice::<CniResponse>(body) {
        Ok(r) if !r.error.is_empty() => r.error,
        _ => String::from_utf8_lossy(body).trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;

    fn client(dir: &tempfile::TempDir, timeout: Duration) -> DaemonClient {
        DaemonClient::new(dir.path().join("daemon.sock"), timeout)
    }

    /// Answers one connection with `reply` verbatim and returns what it received.
    async fn answer_once(listener: UnixListener, reply: &'static str) -> String {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Read until the JSON body (the last thing sent) is complete.
        while !got.ends_with(b"}") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "client closed early: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(reply.as_bytes()).await.unwrap();
        String::from_utf8(got).unwrap()
    }

    #[tokio::test]
    async fn request_looks_like_upstreams_on_the_wire() {
        let dir = tempfile::tempdir().unwrap();
        let c = client(&dir, Duration::from_secs(10));
        let listener = UnixListener::bind(c.socket()).unwrap();
        let server = tokio::spawn(answer_once(
            listener,
            "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        ));
        let req = CniRequest {
            pod_name: "p".into(),
            ..Default::default()
        };
        c.del(&req).await.unwrap();
        let wire = server.await.unwrap();
        let (head, body) = wire.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        assert_eq!(lines.next(), Some("POST /api/v1/del HTTP/1.1"));
        let headers: Vec<String> = lines.map(str::to_ascii_lowercase).collect();
        assert!(headers.contains(&"host: dummy".to_string()), "{headers:?}");
        assert!(
            headers.contains(&"content-type: application/json".to_string()),
            "{headers:?}"
        );
        assert!(
            !headers.iter().any(|h| h.starts_with("accept-encoding")),
            "{headers:?}"
        );
        assert_eq!(body, serde_json::to_string(&req).unwrap());
    }

    #[tokio::test]
    async fn non_json_error_bodies_are_reported_raw() {
        let dir = tempfile::tempdir().unwrap();
        let c = client(&dir, Duration::from_secs(10));
        let listener = UnixListener::bind(c.socket()).unwrap();
        let server = tokio::spawn(answer_once(
            listener,
            "HTTP/1.1 415 Unsupported Media Type\r\nContent-Length: 27\r\n\r\n415: Unsupported Media Type",
        ));
        let e = c.add(&CniRequest::default()).await.unwrap_err();
        server.await.unwrap();
        assert_eq!(
            e.to_string(),
            "request ip return 415 415: Unsupported Media Type"
        );
    }

    #[tokio::test]
    async fn undecodable_success_is_a_bad_answer() {
        let dir = tempfile::tempdir().unwrap();
        let c = client(&dir, Duration::from_secs(10));
        let listener = UnixListener::bind(c.socket()).unwrap();
        let server = tokio::spawn(answer_once(
            listener,
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnope!",
        ));
        let e = c.add(&CniRequest::default()).await.unwrap_err();
        server.await.unwrap();
        assert!(matches!(e, RpcError::BadAnswer(_)), "{e:?}");
    }

    #[tokio::test]
    async fn a_silent_daemon_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let c = client(&dir, Duration::from_millis(200));
        let listener = UnixListener::bind(c.socket()).unwrap();
        // Accept and hold the connection without ever answering.
        let held = tokio::spawn(async move { listener.accept().await.unwrap() });
        let e = c.add(&CniRequest::default()).await.unwrap_err();
        assert!(matches!(e, RpcError::Timeout(_)), "{e:?}");
        held.await.unwrap();
    }

    #[tokio::test]
    async fn absent_and_refusing_sockets_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let c = client(&dir, Duration::from_secs(10));
        assert!(matches!(c.probe().await, Err(RpcError::SocketAbsent(_))));
        // A socket file nobody listens on any more (a crashed daemon's leftover).
        drop(std::os::unix::net::UnixListener::bind(c.socket()).unwrap());
        let e = c.del(&CniRequest::default()).await.unwrap_err();
        assert!(matches!(e, RpcError::Transport(_)), "{e:?}");
    }
}
