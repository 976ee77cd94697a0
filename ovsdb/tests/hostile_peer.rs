//! A scripted peer that speaks JSON-RPC 1.0 badly on purpose: what a misbehaving or hostile
//! server does to the client must come back as a clear error, never as unbounded memory, a
//! hang, or a bare "connection lost".

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ovsdb::{Client, Error, Limits, Remote, Timeouts, Transaction};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

/// Serves one connection on a unix socket in `dir` with `script`.
fn peer<F, Fut>(dir: &tempfile::TempDir, script: F) -> (Remote, JoinHandle<()>)
where
    F: FnOnce(UnixStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let path = dir.path().join("peer.sock");
    let l = UnixListener::bind(&path).unwrap();
    let h = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        script(s).await;
    });
    (Remote::Unix(path), h)
}

/// Reads the next complete JSON value the client sent (`pending` keeps bytes read past it).
async fn read_message(s: &mut UnixStream, pending: &mut Vec<u8>) -> Value {
    let mut buf = [0u8; 4096];
    loop {
        let mut it = serde_json::Deserializer::from_slice(pending).into_iter::<Value>();
        if let Some(Ok(v)) = it.next() {
            let used = it.byte_offset();
            pending.drain(..used);
            return v;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("the client sends a message within 10s")
            .unwrap();
        assert!(n > 0, "the client closed before sending a message");
        pending.extend_from_slice(&buf[..n]);
    }
}

/// Reads and discards until the client closes; `true` when it did within `limit`.
async fn closed_by_client(s: &mut UnixStream, limit: Duration) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Log lines at warn level and above, as a deployment would see them.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Captures this thread's warnings (a current-thread runtime runs the client's tasks here).
    fn warnings() -> (Captured, tracing::subscriber::DefaultGuard) {
        let c = Captured::default();
        let w = c.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .finish();
        (c, tracing::subscriber::set_default(sub))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn invalid_json_reaches_waiting_callers_and_the_warn_log() {
    let (log, _guard) = Captured::warnings();
    let dir = tempfile::tempdir().unwrap();
    let (remote, peer) = peer(&dir, |mut s| async move {
        let mut pending = Vec::new();
        read_message(&mut s, &mut pending).await;
        // Frames as one value, but is not JSON.
        s.write_all(br#"{"id":1,"result":[1,]}"#).await.unwrap();
        assert!(closed_by_client(&mut s, Duration::from_secs(10)).await);
    });
    let (c, _notes) = Client::connect(&remote, None, &Timeouts::default())
        .await
        .unwrap();
    let e = c.list_dbs().await.unwrap_err();
    assert!(matches!(e, Error::Disconnected { .. }), "{e}");
    assert!(
        e.to_string().contains("invalid JSON"),
        "waiting caller got: {e}"
    );
    let later = c.echo().await.unwrap_err();
    assert!(
        later.to_string().contains("invalid JSON"),
        "later caller got: {later}"
    );
    let logged = log.text();
    assert!(
        logged.contains("WARN") && logged.contains("invalid JSON"),
        "warn log: {logged:?}"
    );
    drop(c);
    peer.await.unwrap();
}

#[tokio::test]
async fn a_peer_that_sends_but_never_reads_fails_the_connection_at_the_queue_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, peer) = peer(&dir, |mut s| async move {
        // Each echo's reply repeats its 64 KiB parameter; the peer never reads one of them.
        let big = "x".repeat(64 * 1024);
        for i in 0..2048 {
            let echo = serde_json::json!({"method": "echo", "params": [big], "id": i});
            if s.write_all(echo.to_string().as_bytes()).await.is_err() {
                break;
            }
        }
        assert!(
            closed_by_client(&mut s, Duration::from_secs(10)).await,
            "the client kept the connection of a peer that does not read"
        );
    });
    let limits = Limits {
        max_queued: 1024 * 1024,
        ..Limits::default()
    };
    // No probe during the test: only the queue bound may end the connection.
    let timeouts = Timeouts {
        probe_interval: Duration::from_secs(600),
        ..Timeouts::default()
    };
    let (c, _notes) = Client::connect_with_limits(&remote, None, &timeouts, &limits)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), c.connection().closed())
        .await
        .expect("the connection failed once the outgoing queue passed its bound");
    let e = c.echo().await.unwrap_err();
    assert!(e.to_string().contains("not reading"), "{e}");
    peer.await.unwrap();
}

#[tokio::test]
async fn a_message_over_the_size_limit_fails_the_connection_with_that_error() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, peer) = peer(&dir, |mut s| async move {
        let mut pending = Vec::new();
        let req = read_message(&mut s, &mut pending).await;
        let reply = serde_json::json!({"id": req["id"], "error": null,
            "result": ["x".repeat(2 * 1024 * 1024)]});
        // The client may close before it has read all of it.
        let _ = s.write_all(reply.to_string().as_bytes()).await;
        assert!(closed_by_client(&mut s, Duration::from_secs(10)).await);
    });
    let limits = Limits {
        max_message: 1024 * 1024,
        ..Limits::default()
    };
    let (c, _notes) = Client::connect_with_limits(&remote, None, &Timeouts::default(), &limits)
        .await
        .unwrap();
    let e = c.list_dbs().await.unwrap_err();
    assert!(
        e.to_string().contains("larger than 1048576 bytes"),
        "oversized reply gave: {e}"
    );
    drop(c);
    peer.await.unwrap();
}

#[tokio::test]
async fn requests_that_time_out_use_the_configured_timeout_and_leave_nothing_pending() {
    let dir = tempfile::tempdir().unwrap();
    // Reads every request, answers none.
    let (remote, peer) = peer(&dir, |mut s| async move {
        assert!(closed_by_client(&mut s, Duration::from_secs(60)).await);
    });
    let request = Duration::from_millis(300);
    let timeouts = Timeouts {
        request,
        ..Timeouts::default()
    };
    let (c, _notes) = Client::connect(&remote, None, &timeouts).await.unwrap();
    let conn = c.connection();

    let pipelined = c
        .transact_pipelined(Transaction::new("OVN_Northbound"))
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), pipelined)
        .await
        .expect("a pipelined transaction timed out by the configured timeout, not the default")
        .unwrap_err();
    assert!(
        matches!(e, Error::Timeout { after, .. } if after == request),
        "{e}"
    );
    assert_eq!(
        conn.in_flight(),
        0,
        "a timed-out pipelined request stayed pending"
    );

    let e = conn
        .request_raw("list_dbs", json!([]), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert_eq!(
        conn.in_flight(),
        0,
        "a timed-out raw request stayed pending"
    );

    let e = c.echo().await.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert_eq!(conn.in_flight(), 0, "a timed-out request stayed pending");

    // A caller that gives up (drops the reply) forgets its request too.
    let gave_up = conn.send_request("list_dbs", json!([])).unwrap();
    assert_eq!(conn.in_flight(), 1);
    drop(gave_up);
    assert_eq!(conn.in_flight(), 0, "an abandoned request stayed pending");
    drop(c);
    peer.await.unwrap();
}

#[tokio::test]
async fn notifications_nobody_takes_fail_the_connection_instead_of_piling_up() {
    let dir = tempfile::tempdir().unwrap();
    let (remote, peer) = peer(&dir, |mut s| async move {
        // Update notifications, as fast as the socket takes them, until the client hangs up.
        let note = json!({"method": "update", "id": null,
            "params": [null, {"Logical_Switch": {"00000000-0000-0000-0000-000000000000": {"new": {"name": "x"}}}}]});
        let bytes = note.to_string().into_bytes();
        let sent = tokio::time::timeout(Duration::from_secs(20), async {
            let mut n = 0u64;
            while s.write_all(&bytes).await.is_ok() {
                n += 1;
            }
            n
        })
        .await
        .expect("the client hung up on a flood of notifications it does not take");
        assert!(sent >= 100, "only {sent} notifications went out");
    });
    let limits = Limits {
        max_notifications: 100,
        ..Limits::default()
    };
    let timeouts = Timeouts {
        probe_interval: Duration::from_secs(600),
        ..Timeouts::default()
    };
    // The receiver is kept, and never read.
    let (c, notes) = Client::connect_with_limits(&remote, None, &timeouts, &limits)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), c.connection().closed())
        .await
        .expect("the connection failed once the notification queue passed its bound");
    let e = c.echo().await.unwrap_err();
    assert!(e.to_string().contains("notification queue over 100"), "{e}");
    assert_eq!(notes.len(), 100, "exactly the bound was kept");
    peer.await.unwrap();
}
