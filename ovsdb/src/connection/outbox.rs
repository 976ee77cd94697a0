//! The queue of messages waiting for the server to read them, bounded in bytes: a server that
//! stops reading while it keeps sending cannot grow the client's memory without limit; passing
//! the bound fails the connection, with that reason.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::closer::Closer;

/// The sending side, shared by the handles and the reader (echo replies, probes).
#[derive(Clone)]
pub(super) struct Outbox {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    /// Bytes queued or being written.
    queued: Arc<AtomicUsize>,
    limit: usize,
    closer: Arc<Closer>,
}

/// The writer's side.
pub(super) struct Drain {
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
}

/// A message the connection did not take: it is closed (perhaps by this very push).
#[derive(Debug)]
pub(super) struct Refused;

impl Outbox {
    pub(super) fn new(limit: usize, closer: Arc<Closer>) -> (Outbox, Drain) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let drain = Drain {
            rx,
            queued: queued.clone(),
        };
        (
            Outbox {
                tx,
                queued,
                limit,
                closer,
            },
            drain,
        )
    }

    /// Queues a message. One message is always taken while less than the bound waits (so a
    /// message larger than the bound still goes out alone); past the bound the connection
    /// fails.
    pub(super) fn push(&self, bytes: Vec<u8>) -> Result<(), Refused> {
        let len = bytes.len();
        let before = self.queued.fetch_add(len, Ordering::SeqCst);
        if before >= self.limit {
            self.queued.fetch_sub(len, Ordering::SeqCst);
            self.closer.close(
                format!(
                    "outgoing queue over {} bytes: the server is not reading",
                    self.limit
                ),
                true,
            );
            return Err(Refused);
        }
        self.tx.send(bytes).map_err(|_| {
            self.queued.fetch_sub(len, Ordering::SeqCst);
            Refused
        })
    }
}

impl Drain {
    /// The next message to write; `None` once every sender is gone.
    pub(super) async fn recv(&mut self) -> Option<Vec<u8>> {
        self.rx.recv().await
    }

    /// Counts a message as written: its bytes no longer wait.
    pub(super) fn written(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::SeqCst);
    }
}
