//! One JSON-RPC 1.0 session with ovsdb-server: request ids matched to replies, the server's
//! `echo` answered, notifications handed on, an inactivity probe of our own, and a timeout on
//! every request. When the connection ends, every waiting request fails with `Disconnected`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::codec::FrameSplitter;
use crate::error::{Error, Result};
use crate::transport::{self, Remote, TlsFiles};

mod closer;
mod outbox;

use closer::{Closer, Owner};
use outbox::Outbox;

/// A server-initiated message other than `echo`: `update`, `update2`, `update3`, `locked`, `stolen`.
#[derive(Debug, Clone)]
pub struct Notification {
    pub method: String,
    pub params: Value,
}

/// How long to wait for things; defaults follow Kube-OVN's flags (`--ovsdb-con-timeout`,
/// `--ovsdb-inactivity-timeout`).
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
    /// Silence after which we send an echo; twice this with no answer closes the connection.
    pub probe_interval: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(3),
            request: Duration::from_secs(60),
            probe_interval: Duration::from_secs(5),
        }
    }
}

/// Memory bounds of one connection, so a misbehaving server fails it with a clear error
/// instead of growing the client without limit.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest message accepted from the server; a larger one fails the connection with that
    /// error. An initial monitor reply is the whole database, so this must exceed it.
    pub max_message: usize,
    /// Bytes of outgoing messages the server has not read yet. A server that keeps sending
    /// (echo requests, say) while it reads nothing passes this bound, and the connection fails.
    pub max_queued: usize,
    /// Notifications (monitor updates) received but not yet taken by the connection's user.
    /// A user that stops taking them while the server keeps sending passes this bound, and the
    /// connection fails (a replica then reconnects and resumes).
    pub max_notifications: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: crate::codec::DEFAULT_MAX_FRAME,
            max_queued: 64 * 1024 * 1024,
            max_notifications: 65_536,
        }
    }
}

/// Who waits for a reply: most callers want it parsed; a caller that decodes a very large
/// reply itself (an initial monitor: the whole database) takes the frame's bytes instead, so
/// the reply is never built as one JSON tree.
enum Waiter {
    Parsed(oneshot::Sender<Result<Value>>),
    Raw(oneshot::Sender<Result<Vec<u8>>>),
}

#[derive(Default)]
struct PendingMap {
    waiters: HashMap<u64, Waiter>,
    /// How many of `waiters` are `Raw` (only then does dispatch peek at ids before parsing).
    raw: usize,
}

type Pending = Arc<Mutex<PendingMap>>;

/// Forgets a request once its caller stops waiting (reply taken, timed out, or abandoned), so
/// nothing stays in the pending map and a late reply is skipped; a forgotten raw request no
/// longer makes every frame's head parsed twice.
struct Forget {
    id: u64,
    pending: Pending,
}

impl Drop for Forget {
    fn drop(&mut self) {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(Waiter::Raw(_)) = p.waiters.remove(&self.id) {
            p.raw -= 1;
        }
    }
}

/// A reply on its way, from [`Connection::send_request`]; wait for it with
/// [`Connection::await_reply`]. Dropping it forgets the request.
pub struct PendingReply {
    rx: oneshot::Receiver<Result<Value>>,
    _forget: Forget,
}

/// The envelope fields dispatch needs to route a frame; everything else is skipped unparsed.
#[derive(serde::Deserialize)]
struct Head {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    method: Option<serde::de::IgnoredAny>,
}

/// A live connection. Cloning shares it; it closes when the server goes, the probe fails,
/// [`Connection::close`] is called, or the last clone is dropped.
#[derive(Clone)]
pub struct Connection {
    remote: Arc<str>,
    out: Outbox,
    pending: Pending,
    next_id: Arc<AtomicU64>,
    request_timeout: Duration,
    closed: watch::Receiver<bool>,
    /// Shared by the handles only, never by the connection's own tasks: when the last handle
    /// goes, its drop closes the connection.
    owner: Arc<Owner>,
    /// Notifications handed to the receiver so far. The reader hands a notification over
    /// before it dispatches any later reply, so after a reply this counts every notification
    /// the server sent before it — what a cache must have applied to reflect that reply.
    delivered: Arc<AtomicU64>,
}

impl Connection {
    /// Connects and starts the reader, writer and probe tasks. Notifications arrive on the
    /// returned receiver, in order; it ends when the connection does.
    pub async fn open(
        remote: &Remote,
        tls: Option<&TlsFiles>,
        timeouts: &Timeouts,
    ) -> Result<(Connection, mpsc::Receiver<Notification>)> {
        Self::open_with_limits(remote, tls, timeouts, &Limits::default()).await
    }

    /// [`Connection::open`] with memory bounds other than the defaults.
    pub async fn open_with_limits(
        remote: &Remote,
        tls: Option<&TlsFiles>,
        timeouts: &Timeouts,
        limits: &Limits,
    ) -> Result<(Connection, mpsc::Receiver<Notification>)> {
        let stream = transport::connect(remote, tls, timeouts.connect).await?;
        let (mut rd, mut wr) = tokio::io::split(stream);
        let (note_tx, note_rx) = mpsc::channel(limits.max_notifications.max(1));
        let (closed_tx, closed_rx) = watch::channel(false);
        let pending: Pending = Arc::default();
        let name: Arc<str> = remote.to_string().into();
        let closer = Arc::new(Closer::new(name.clone(), closed_tx));
        let (out_tx, mut out_rx) = Outbox::new(limits.max_queued, closer.clone());
        let delivered = Arc::new(AtomicU64::new(0));
        let counter = delivered.clone();

        // Writer: one task owns the write half, so requests from many callers never interleave.
        let mut stop = closed_rx.clone();
        let write_closer = closer.clone();
        // A write the peer does not drain must not outlive the connection: it is cancelled too.
        tokio::spawn(async move {
            loop {
                let bytes = tokio::select! {
                    msg = out_rx.recv() => match msg {
                        Some(bytes) => bytes,
                        None => break,
                    },
                    _ = until_closed(&mut stop) => break,
                };
                tokio::select! {
                    r = wr.write_all(&bytes) => if let Err(e) = r {
                        write_closer.close(format!("write failed: {e}"), true);
                        break;
                    },
                    _ = until_closed(&mut stop) => break,
                }
                out_rx.written(bytes.len());
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
        });

        // Reader: frames, dispatch, and the inactivity probe.
        let out = out_tx.clone();
        let pend = pending.clone();
        let read_closer = closer.clone();
        let probe = timeouts.probe_interval;
        let max_message = limits.max_message;
        let mut stop = closed_rx.clone();
        tokio::spawn(async move {
            let mut split = FrameSplitter::with_limit(max_message);
            let mut buf = vec![0u8; 64 * 1024];
            let mut last_rx = Instant::now();
            let mut probe_sent = false;
            // Why the reader ended: `None` when the connection was closed from elsewhere.
            let ended: Option<(String, bool)> = 'conn: loop {
                let deadline = last_rx + if probe_sent { probe * 2 } else { probe };
                // Closing comes first: a flood of input must not keep a failed connection going.
                tokio::select! {
                    biased;
                    _ = until_closed(&mut stop) => break 'conn None,
                    r = rd.read(&mut buf) => match r {
                        Ok(0) => break 'conn Some(("closed by the server".into(), false)),
                        Err(e) => break 'conn Some((format!("read failed: {e}"), true)),
                        Ok(n) => {
                            last_rx = Instant::now();
                            probe_sent = false;
                            split.push(&buf[..n]);
                            loop {
                                match split.next_frame() {
                                    Ok(Some(frame)) => {
                                        if let Err(e) = dispatch(frame, &out, &pend, &note_tx, &counter) {
                                            break 'conn Some((e.to_string(), true));
                                        }
                                    }
                                    Ok(None) => break,
                                    Err(e) => break 'conn Some((e.to_string(), true)),
                                }
                            }
                        }
                    },
                    _ = tokio::time::sleep_until(deadline) => {
                        if probe_sent {
                            break 'conn Some((format!("no answer to inactivity probe within {:?}", probe * 2), true));
                        }
                        probe_sent = true;
                        let _ = out.push(frame_bytes(&json!({"method": "echo", "params": [], "id": "echo"})));
                    }
                }
            };
            if let Some((reason, fault)) = ended {
                read_closer.close(reason, fault);
            }
            // Dropping the senders fails every waiter with Disconnected, and the closer's reason.
            *pend.lock().unwrap_or_else(|p| p.into_inner()) = PendingMap::default();
        });

        Ok((
            Connection {
                remote: name,
                out: out_tx,
                pending,
                next_id: Arc::new(AtomicU64::new(1)),
                request_timeout: timeouts.request,
                closed: closed_rx,
                owner: Arc::new(Owner { closer }),
                delivered,
            },
            note_rx,
        ))
    }

    /// Notifications delivered so far (see the field's doc); with [`Connection::id`] it lets a
    /// replica wait until its cache reflects a transaction it just committed.
    pub fn notifications_delivered(&self) -> u64 {
        self.delivered.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// An identity of this connection, stable for its lifetime and distinct from any other
    /// live connection's.
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.delivered) as usize
    }

    /// The remote this connection reaches.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Resolves when the connection has ended.
    pub async fn closed(&self) {
        until_closed(&mut self.closed.clone()).await;
    }

    /// Closes the connection now, for every handle; dropping the last handle does the same.
    pub fn close(&self) {
        self.owner
            .closer
            .close("closed by the client".into(), false);
    }

    /// Requests sent whose caller still waits for the reply: for health checks and metrics,
    /// and the proof that a request timed out or abandoned is forgotten.
    pub fn in_flight(&self) -> usize {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .waiters
            .len()
    }

    /// The default request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Sends a request and waits for its reply within the default request timeout.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value> {
        self.request_with_timeout(method, params, self.request_timeout)
            .await
    }

    /// Sends a request and waits for its reply. A reply with a non-null `error` becomes
    /// [`Error::Rpc`]; the `result` is returned as is.
    pub async fn request_with_timeout(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value> {
        let reply = self.send_request(method, params)?;
        self.await_reply(method, reply, timeout).await
    }

    /// Queues a request and returns its reply to come, so callers can pipeline many.
    pub fn send_request(&self, method: &str, params: Value) -> Result<PendingReply> {
        let (tx, rx) = oneshot::channel();
        let forget = self.queue_request(method, params, Waiter::Parsed(tx))?;
        Ok(PendingReply {
            rx,
            _forget: forget,
        })
    }

    /// Registers `waiter` and queues the request; the guard returned forgets it when dropped.
    fn queue_request(&self, method: &str, params: Value, waiter: Waiter) -> Result<Forget> {
        if self.is_closed() {
            return Err(self.disconnected());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if matches!(waiter, Waiter::Raw(_)) {
                p.raw += 1;
            }
            p.waiters.insert(id, waiter);
        }
        let forget = Forget {
            id,
            pending: self.pending.clone(),
        };
        let bytes = frame_bytes(&json!({"method": method, "params": params, "id": id}));
        if self.out.push(bytes).is_err() {
            return Err(self.disconnected());
        }
        Ok(forget)
    }

    /// Sends a request and returns its whole reply frame, unparsed (`{"id":…,"result":…,
    /// "error":…}`), for a caller that decodes a large reply as it reads it. The caller checks
    /// `error` itself.
    pub async fn request_raw(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Vec<u8>> {
        let (tx, rx) = oneshot::channel();
        let _forget = self.queue_request(method, params, Waiter::Raw(tx))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(self.disconnected()),
            Err(_) => Err(Error::Timeout {
                what: format!("{method} on {}", self.remote),
                after: timeout,
            }),
        }
    }

    /// Waits for a reply obtained from [`Connection::send_request`]; on a timeout the request
    /// is forgotten.
    pub async fn await_reply(
        &self,
        method: &str,
        mut reply: PendingReply,
        timeout: Duration,
    ) -> Result<Value> {
        match tokio::time::timeout(timeout, &mut reply.rx).await {
            Ok(Ok(r)) => r.map_err(|e| match e {
                Error::Rpc { error, .. } => Error::Rpc {
                    method: method.to_string(),
                    error,
                },
                e => e,
            }),
            Ok(Err(_)) => Err(self.disconnected()),
            Err(_) => Err(Error::Timeout {
                what: format!("{method} on {}", self.remote),
                after: timeout,
            }),
        }
    }

    /// Sends a notification-style request (`id: null`), such as `monitor_cancel` replies never needed.
    pub fn notify(&self, method: &str, params: Value) -> Result<()> {
        let bytes = frame_bytes(&json!({"method": method, "params": params, "id": null}));
        self.out.push(bytes).map_err(|_| self.disconnected())
    }

    fn disconnected(&self) -> Error {
        Error::Disconnected {
            remote: self.remote.to_string(),
            reason: self.owner.closer.reason(),
        }
    }
}

async fn until_closed(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|c| *c).await;
}

fn frame_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// Routes one incoming message. Malformed messages are protocol errors that end the connection.
fn dispatch(
    frame: Vec<u8>,
    out: &Outbox,
    pending: &Pending,
    notes: &mpsc::Sender<Notification>,
    delivered: &AtomicU64,
) -> Result<()> {
    if pending.lock().unwrap_or_else(|p| p.into_inner()).raw > 0 {
        let head: Head = serde_json::from_slice(&frame)
            .map_err(|e| Error::Protocol(format!("invalid JSON from server: {e}")))?;
        if let (None, Some(id)) = (&head.method, head.id.as_u64()) {
            let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
            if matches!(p.waiters.get(&id), Some(Waiter::Raw(_))) {
                p.raw -= 1;
                if let Some(Waiter::Raw(tx)) = p.waiters.remove(&id) {
                    let _ = tx.send(Ok(frame));
                }
                return Ok(());
            }
        }
    }
    let mut msg: Value = serde_json::from_slice(&frame)
        .map_err(|e| Error::Protocol(format!("invalid JSON from server: {e}")))?;
    // The frame is not needed once parsed: a large one is freed before the reply is handled.
    drop(frame);
    // Parts are moved out, never copied: an initial monitor reply is the whole database.
    let obj = msg
        .as_object_mut()
        .ok_or_else(|| Error::Protocol("message is not a JSON object".into()))?;
    if let Some(method) = obj.remove("method") {
        let method = method
            .as_str()
            .ok_or_else(|| Error::Protocol("method is not a string".into()))?
            .to_string();
        let params = obj.remove("params").unwrap_or(Value::Null);
        let id = obj.remove("id").unwrap_or(Value::Null);
        if method == "echo" {
            if !id.is_null() {
                let _ = out.push(frame_bytes(
                    &json!({"result": params, "error": null, "id": id}),
                ));
            }
            return Ok(());
        }
        if !id.is_null() {
            let _ = out.push(frame_bytes(
                &json!({"result": null, "error": format!("unknown method {method}"), "id": id}),
            ));
            return Ok(());
        }
        match notes.try_send(Notification { method, params }) {
            // Nobody listens (a client used for transactions only): nothing to keep.
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(Error::Overloaded(format!(
                    "notification queue over {} messages: the client is not taking them",
                    notes.max_capacity()
                )));
            }
        }
        delivered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        return Ok(());
    }
    let Some(id) = obj.get("id") else {
        return Err(Error::Protocol("reply without id".into()));
    };
    // Replies to our own echo probes carry a string id and need no waiter.
    let Some(id) = id.as_u64() else {
        return Ok(());
    };
    let waiter = pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .waiters
        .remove(&id);
    if let Some(Waiter::Parsed(w)) = waiter {
        let error = obj.remove("error").unwrap_or(Value::Null);
        let r = if error.is_null() {
            Ok(obj.remove("result").unwrap_or(Value::Null))
        } else {
            Err(Error::Rpc {
                method: String::new(),
                error,
            })
        };
        let _ = w.send(r);
    }
    Ok(())
}
