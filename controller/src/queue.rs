//! A level-triggered work queue per kind, like client-go's: keys (not events) are queued, a key
//! queued again while waiting is processed once, a key is never processed by two workers at
//! once (a change during processing re-queues it), and failures retry with exponential
//! back-off. Workers look the key up in the reflector store, so a deleted object is simply a
//! key whose object is gone — deletes need no special event.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::warn;

#[derive(Default)]
struct State {
    queued: HashSet<String>,
    active: HashSet<String>,
    /// Changed while active: run again afterwards.
    dirty: HashSet<String>,
    failures: HashMap<String, u32>,
}

/// What a reconcile asks of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done until the next change.
    Done,
    /// Run again after this long (waiting on something outside this object).
    After(Duration),
}

/// Handle to enqueue keys.
#[derive(Clone)]
pub struct Queue {
    name: &'static str,
    tx: mpsc::UnboundedSender<String>,
    state: Arc<Mutex<State>>,
    min_delay: Duration,
    max_delay: Duration,
}

impl Queue {
    /// Adds a key (no-op if it is already waiting).
    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.active.contains(&key) {
            st.dirty.insert(key);
            return;
        }
        if st.queued.insert(key.clone()) {
            let _ = self.tx.send(key);
        }
    }

    /// Adds a key after `delay`.
    pub fn add_after(&self, key: String, delay: Duration) {
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(key);
        });
    }

    /// The queue's name (for logs and metrics).
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Creates a queue and starts `workers` tasks running `handle` for its keys. `handle` returns
/// `Ok(outcome)` or an error message (retried with back-off).
pub fn start<F, Fut>(
    name: &'static str,
    workers: usize,
    min_delay: Duration,
    max_delay: Duration,
    handle: F,
) -> Queue
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome, String>> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let state = Arc::new(Mutex::new(State::default()));
    let queue = Queue {
        name,
        tx,
        state: state.clone(),
        min_delay,
        max_delay,
    };
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let handle = Arc::new(handle);
    for _ in 0..workers.max(1) {
        let (rx, q, handle) = (rx.clone(), queue.clone(), handle.clone());
        tokio::spawn(async move {
            loop {
                let Some(key) = rx.lock().await.recv().await else {
                    return;
                };
                {
                    let mut st = q.state.lock().unwrap_or_else(|p| p.into_inner());
                    st.queued.remove(&key);
                    st.active.insert(key.clone());
                }
                let result = handle(key.clone()).await;
                let mut st = q.state.lock().unwrap_or_else(|p| p.into_inner());
                st.active.remove(&key);
                let retry = match result {
                    Ok(Outcome::Done) => {
                        st.failures.remove(&key);
                        None
                    }
                    Ok(Outcome::After(d)) => {
                        st.failures.remove(&key);
                        Some(d)
                    }
                    Err(e) => {
                        let n = st.failures.entry(key.clone()).or_insert(0);
                        *n += 1;
                        let delay = q
                            .min_delay
                            .saturating_mul(2u32.saturating_pow((*n - 1).min(16)))
                            .min(q.max_delay);
                        warn!(queue = q.name, %key, attempt = *n, "{e}; retrying in {delay:?}");
                        Some(delay)
                    }
                };
                let dirty = st.dirty.remove(&key);
                drop(st);
                if dirty {
                    q.add(key.clone());
                } else if let Some(d) = retry {
                    q.add_after(key, d);
                }
            }
        });
    }
    queue
}
