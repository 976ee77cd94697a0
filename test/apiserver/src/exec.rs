//! `pods/exec` over WebSocket, as kube-apiserver proxies it to a kubelet: the client upgrades
//! `GET .../pods/<pod>/exec?command=...&stdin=...&stdout=...&stderr=...&tty=...` with the
//! `v5.channel.k8s.io` or `v4.channel.k8s.io` subprotocol, and every binary frame's first
//! byte names a channel: 0 stdin, 1 stdout, 2 stderr, 3 error (the final `Status` JSON, with
//! the exit code of a failed command), 4 resize (terminal size JSON), and in v5 255 "close",
//! by which the client ends stdin. kubectl (1.30+) tries this before SPDY, which is not served.
//!
//! The fixture knows no containers: an [`ExecHandler`] installed by the embedder (the
//! sandbox's kubelet stand-ins) turns the pod and argv into a process to spawn, e.g. one that
//! enters the pod's network namespace. The fixture wires its standard streams (pipes, or a
//! pseudo-terminal for `tty`) to the channels and reports how it ended.

use std::fmt;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY};
use hyper::header::{SEC_WEBSOCKET_PROTOCOL, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::error::{ApiError, ApiResult};
use crate::handler::ResponseBody;
use crate::route::{query_pairs, ResourcePath};
use crate::server::ServerState;

/// The subprotocols served, in the server's preference order.
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// How long a finished session waits for the client's answer to its close.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How much of a stream is read into one frame.
const CHUNK: usize = 32 * 1024;

/// What an exec request asks to run, handed to the [`ExecHandler`].
#[derive(Debug, Clone)]
pub struct ExecTarget {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod as stored (its spec says e.g. `hostNetwork` and `nodeName`).
    pub pod: Value,
    /// The container (defaulted when the pod has one).
    pub container: String,
    /// The argv to run, never empty.
    pub command: Vec<String>,
}

type Prepare = dyn Fn(&ExecTarget) -> Result<std::process::Command, String> + Send + Sync;

/// Turns an exec request into the process to spawn (without its standard streams, which the
/// fixture sets); an error becomes the request's 500 answer. The fixture itself runs no
/// containers, so without one every exec fails.
#[derive(Clone)]
pub struct ExecHandler(Arc<Prepare>);

impl ExecHandler {
    /// Wraps the function preparing each exec's process.
    pub fn new(
        prepare: impl Fn(&ExecTarget) -> Result<std::process::Command, String> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(prepare))
    }
}

impl fmt::Debug for ExecHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExecHandler")
    }
}

/// The query parameters of an exec request.
#[derive(Debug, Default, PartialEq, Eq)]
struct Params {
    command: Vec<String>,
    container: Option<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl Params {
    fn parse(query: Option<&str>) -> Params {
        let mut params = Params::default();
        for (key, value) in query_pairs(query) {
            let on = matches!(value.as_str(), "true" | "1");
            match key.as_str() {
                "command" => params.command.push(value),
                "container" => params.container = Some(value).filter(|c| !c.is_empty()),
                "stdin" => params.stdin = on,
                "stdout" => params.stdout = on,
                "stderr" => params.stderr = on,
                "tty" => params.tty = on,
                _ => {}
            }
        }
        params
    }
}

/// Validates an exec request as kube-apiserver does, then upgrades it and runs the command.
pub fn serve(
    state: &Arc<ServerState>,
    mut req: Request<Incoming>,
    target: &ResourcePath,
) -> ApiResult<Response<ResponseBody>> {
    let params = Params::parse(req.uri().query());
    let (Some(namespace), Some(name)) = (target.namespace.as_deref(), target.name.as_deref())
    else {
        return Err(ApiError::path_not_found(req.uri().path()));
    };
    if params.command.is_empty() {
        return Err(ApiError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    if !(params.stdin || params.stdout || params.stderr) {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    let pod = {
        let store = state.lock_store();
        let rt = store
            .lookup("", "v1", "pods")
            .cloned()
            .ok_or_else(|| ApiError::path_not_found(req.uri().path()))?;
        store.get(&rt, Some(namespace), name)?
    };
    let container = container(&pod, name, params.container.as_deref())?;
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if matches!(phase, "Succeeded" | "Failed") {
        return Err(ApiError::bad_request(format!(
            "cannot exec into a container in a completed pod; current phase is {phase}"
        )));
    }
    if pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    // Everything but the upgrade itself is checked first: kubectl retries a failed WebSocket
    // exec over SPDY and shows that attempt's error.
    let handler = state.exec.clone().ok_or_else(|| {
        ApiError::internal("no exec handler is installed: this fixture runs no containers")
    })?;
    let exec_target = ExecTarget {
        namespace: namespace.to_string(),
        pod,
        container,
        command: params.command.clone(),
    };
    let command = (handler.0)(&exec_target)
        .map_err(|e| ApiError::internal(format!("error executing command in container: {e}")))?;
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    if !header(UPGRADE).eq_ignore_ascii_case("websocket") {
        return Err(ApiError::bad_request(
            "Upgrade request required (this fixture serves exec over WebSocket only)",
        ));
    }
    let key = header(SEC_WEBSOCKET_KEY);
    if key.is_empty() {
        return Err(ApiError::bad_request("missing Sec-WebSocket-Key"));
    }
    let offered = header(SEC_WEBSOCKET_PROTOCOL);
    let protocol = offered
        .split(',')
        .map(str::trim)
        .find(|p| PROTOCOLS.contains(p))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to upgrade: unable to negotiate protocol: client supports [{offered}], server accepts {PROTOCOLS:?}"
            ))
        })?
        .to_string();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let v5 = protocol == PROTOCOLS[0];
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                session(socket, command, params, v5, shutdown).await;
            }
            Err(e) => tracing::debug!("exec upgrade failed: {e}"),
        }
    });
    let mut response = Response::new(Either::Left(Full::new(Bytes::new())));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    let accept = derive_accept_key(key.as_bytes());
    headers.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).map_err(|e| ApiError::internal(e.to_string()))?,
    );
    headers.insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_str(&protocol).map_err(|e| ApiError::internal(e.to_string()))?,
    );
    Ok(response)
}

/// The container an exec addresses: the named one, or the only one.
fn container(pod: &Value, pod_name: &str, requested: Option<&str>) -> ApiResult<String> {
    let names = |key: &str| -> Vec<String> {
        pod["spec"][key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let containers = names("containers");
    match requested {
        Some(name) => {
            let known = [names("initContainers"), names("ephemeralContainers")]
                .iter()
                .flatten()
                .chain(&containers)
                .any(|c| c == name);
            if known {
                Ok(name.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {name} is not valid for pod {pod_name}"
                )))
            }
        }
        None => match containers.as_slice() {
            [only] => Ok(only.clone()),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                containers.join(" ")
            ))),
        },
    }
}

/// A spawned exec process and its streams.
struct Process {
    child: tokio::process::Child,
    stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    outputs: Vec<(u8, Box<dyn AsyncRead + Send + Unpin>)>,
    /// The pseudo-terminal's master, for resizes.
    terminal: Option<File>,
}

fn spawn(mut command: std::process::Command, params: &Params) -> std::io::Result<Process> {
    if params.tty {
        let (master, slave) = open_pty()?;
        command
            .stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid and ioctl are async-signal-safe; they make the terminal on stdin
        // the new session's controlling terminal, as a container runtime does for `tty`.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()?;
        // The command (dropped above) held the slave; only the child has it now, so reading
        // the master ends when the child's side closes.
        let reader = tokio::fs::File::from_std(master.try_clone()?);
        let stdin: Option<Box<dyn AsyncWrite + Send + Unpin>> = if params.stdin {
            Some(Box::new(tokio::fs::File::from_std(master.try_clone()?)))
        } else {
            None
        };
        return Ok(Process {
            child,
            stdin,
            outputs: vec![(STDOUT, Box::new(reader))],
            terminal: Some(master),
        });
    }
    let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    let mut child = tokio::process::Command::from(command)
        .stdin(pipe(params.stdin))
        .stdout(pipe(params.stdout))
        .stderr(pipe(params.stderr))
        .kill_on_drop(true)
        .spawn()?;
    let mut outputs: Vec<(u8, Box<dyn AsyncRead + Send + Unpin>)> = Vec::new();
    if let Some(out) = child.stdout.take() {
        outputs.push((STDOUT, Box::new(out)));
    }
    if let Some(err) = child.stderr.take() {
        outputs.push((STDERR, Box::new(err)));
    }
    let stdin = child
        .stdin
        .take()
        .map(|s| Box::new(s) as Box<dyn AsyncWrite + Send + Unpin>);
    Ok(Process {
        child,
        stdin,
        outputs,
        terminal: None,
    })
}

/// A pseudo-terminal pair (master, slave).
fn open_pty() -> std::io::Result<(File, OwnedFd)> {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the locals; name, termios and winsize may
    // be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just opened and are owned by nothing else.
    let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    // Neither may leak into other processes this one spawns meanwhile: a stray copy of the
    // slave would keep the terminal open after the command ends.
    set_cloexec(&master)?;
    set_cloexec(&slave)?;
    Ok((master, slave))
}

fn set_cloexec(fd: &impl AsRawFd) -> std::io::Result<()> {
    // SAFETY: F_SETFD on a descriptor we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Applies a resize message (`{"Width":w,"Height":h}`) to the terminal.
fn resize(terminal: &File, message: &[u8]) {
    let Ok(size) = serde_json::from_slice::<Value>(message) else {
        return;
    };
    let dimension = |name: &str| {
        size.as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .and_then(|(_, v)| v.as_u64())
            .and_then(|v| u16::try_from(v).ok())
            .unwrap_or(0)
    };
    let winsize = libc::winsize {
        ws_row: dimension("height"),
        ws_col: dimension("width"),
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, valid for the call.
    unsafe {
        libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &winsize);
    }
}

/// The `Status` the error channel carries when the command ended, as the kubelet writes it.
fn exit_status(command: &[String], status: ExitStatus) -> Value {
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The `Status` of a command that could not be started.
fn internal_error(message: String) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::binary(bytes)
}

/// Runs one exec over an upgraded connection.
async fn session<S>(
    socket: WebSocketStream<S>,
    command: std::process::Command,
    params: Params,
    v5: bool,
    mut shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut incoming) = socket.split();
    let argv = params.command.clone();
    let mut process = match spawn(command, &params) {
        Ok(process) => process,
        Err(e) => {
            let program = argv.first().map(String::as_str).unwrap_or_default();
            let status = internal_error(format!(
                "error executing command in container: exec: {program:?}: {e}"
            ));
            return finish(sink, incoming, &status).await;
        }
    };
    // The real server opens the stream with an empty frame on the lowest writable channel.
    let first = if params.stdout {
        STDOUT
    } else if params.stderr && !params.tty {
        STDERR
    } else {
        ERROR
    };
    if sink.send(frame(first, &[])).await.is_err() {
        return;
    }
    let (chunks, mut received) = mpsc::channel::<(u8, Bytes)>(16);
    for (channel, mut reader) in std::mem::take(&mut process.outputs) {
        let chunks = chunks.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0; CHUNK];
            // A pseudo-terminal's master reports EIO once the child side is closed: an end.
            while let Ok(n @ 1..) = reader.read(&mut buffer).await {
                if chunks
                    .send((channel, Bytes::copy_from_slice(&buffer[..n])))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
    }
    drop(chunks);
    let mut outputs_open = true;
    let status = loop {
        tokio::select! {
            chunk = received.recv(), if outputs_open => match chunk {
                Some((channel, data)) => {
                    if sink.send(frame(channel, &data)).await.is_err() {
                        return;
                    }
                }
                None => outputs_open = false,
            },
            message = incoming.next() => match message {
                Some(Ok(Message::Binary(data))) => match (data.first(), data.get(1)) {
                    (Some(&STDIN), _) => {
                        if let Some(stdin) = process.stdin.as_mut() {
                            let written = stdin.write_all(&data[1..]).await;
                            if written.is_err() || stdin.flush().await.is_err() {
                                process.stdin = None;
                            }
                        }
                    }
                    (Some(&RESIZE), _) => {
                        if let Some(terminal) = &process.terminal {
                            resize(terminal, &data[1..]);
                        }
                    }
                    (Some(&CLOSE), Some(&STDIN)) if v5 => {
                        if let Some(mut stdin) = process.stdin.take() {
                            let _ = stdin.shutdown().await;
                        }
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    // The client is gone: nobody can read the rest (the child is killed on drop).
                    return;
                }
                Some(Ok(_)) => {}
            },
            exited = process.child.wait(), if !outputs_open => match exited {
                Ok(status) => break exit_status(&argv, status),
                Err(e) => break internal_error(format!("waiting for the command failed: {e}")),
            },
            _ = shutdown.changed() => return,
        }
    };
    finish(sink, incoming, &status).await;
}

/// Sends the final status and closes normally: client-go takes any other close as an error
/// of every stream, the status one included.
async fn finish<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut incoming: SplitStream<WebSocketStream<S>>,
    status: &Value,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if sink
        .send(frame(ERROR, status.to_string().as_bytes()))
        .await
        .is_err()
    {
        return;
    }
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    if sink.send(Message::Close(Some(close))).await.is_err() {
        return;
    }
    // The client answers the close (or just hangs up); either ends the session.
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(message)) = incoming.next().await {
            if message.is_close() {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_keep_every_command_word() {
        let params = Params::parse(Some(
            "command=sh&command=-c&command=exit+3&stdin=true&stdout=1&stderr=false&tty=false&container=c",
        ));
        assert_eq!(params.command, ["sh", "-c", "exit 3"]);
        assert_eq!(params.container.as_deref(), Some("c"));
        assert!(params.stdin && params.stdout && !params.stderr && !params.tty);
    }

    #[test]
    fn the_container_is_named_or_the_only_one() {
        let pod =
            json!({"spec": {"containers": [{"name": "a"}], "initContainers": [{"name": "i"}]}});
        assert_eq!(container(&pod, "p", None).unwrap(), "a");
        assert_eq!(container(&pod, "p", Some("i")).unwrap(), "i");
        let error = container(&pod, "p", Some("x")).unwrap_err();
        assert_eq!(error.message, "container x is not valid for pod p");
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert!(container(&two, "p", None)
            .unwrap_err()
            .message
            .contains("choose one of: [a b]"));
    }

    #[test]
    fn exit_codes_travel_in_the_status() {
        let ok = exit_status(&[], ExitStatus::from_raw(0));
        assert_eq!(ok, json!({"metadata": {}, "status": "Success"}));
        let failed = exit_status(&["sh".into(), "-c".into()], ExitStatus::from_raw(3 << 8));
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(
            failed["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
        let killed = exit_status(&[], ExitStatus::from_raw(9));
        assert_eq!(killed["details"]["causes"][0]["message"], "137");
    }
}
