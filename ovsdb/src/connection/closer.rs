//! Who ends a connection, and why: the users' shared hold on it, and the one-time record of
//! the first cause.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// The users' hold on a connection. The reader and writer only watch the signal it raises,
/// so answered echo probes cannot keep a connection alive that nobody can use any more.
pub(super) struct Owner {
    pub(super) closer: Arc<Closer>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.closer
            .close("every handle to it was dropped".into(), false);
    }
}

/// Ends a connection once and remembers why: callers waiting on it, and any that try it later,
/// are told the first cause (a protocol error, an unanswered probe) rather than a bare "lost".
pub(super) struct Closer {
    remote: Arc<str>,
    closed: watch::Sender<bool>,
    reason: Mutex<Option<String>>,
}

impl Closer {
    /// A closer of the connection to `remote` that raises `closed` when it closes.
    pub(super) fn new(remote: Arc<str>, closed: watch::Sender<bool>) -> Closer {
        Closer {
            remote,
            closed,
            reason: Mutex::default(),
        }
    }

    /// Closes with `reason` unless already closed; a `fault` (the peer misbehaved or the
    /// transport broke) is logged as a warning, anything else at info level.
    pub(super) fn close(&self, reason: String, fault: bool) {
        let mut first = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_some() {
            return;
        }
        if fault {
            tracing::warn!(remote = %self.remote, %reason, "ovsdb connection failed");
        } else {
            tracing::info!(remote = %self.remote, %reason, "ovsdb connection closed");
        }
        *first = Some(reason);
        drop(first);
        self.closed.send_replace(true);
    }

    pub(super) fn reason(&self) -> String {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "closed".into())
    }
}
