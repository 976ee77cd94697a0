//! A keyed, level-triggered work queue, like client-go's rate-limited workqueue: keys (not
//! events) are queued; a key queued again while it waits is processed once; a key is never
//! processed by two workers at once, and a key added while it is being processed runs once more
//! afterwards; failures retry with exponential back-off; a kind may also set a minimum interval
//! between two runs of one key (status writers coalesce bursts that way).
//!
//! Why our own queue and not kube-rs's `Controller` scheduler: the reconcilers work on keys whose
//! object may be gone (a pod deleted while the watch was down is only a key the relist no longer
//! shows, and its port, address and IP CR must still go), kinds start behind gates in upstream's
//! order (pods only once every node has its join address), and one reconcile's own annotation
//! patch must not queue it again (suppressing that cut cold pod reconciles from 20,000 to
//! ~10,700 in the 10k-pod benchmark). `Controller` calls reconcile only for objects in its
//! store and has neither gates nor own-write suppression.
//!
//! Bounds: every key is held at most once in the ready list, once in the delayed set and once in
//! the active set, so the queue never holds more than three entries per distinct key; the
//! distinct keys are the objects of one kind. Workers and the timer are tasks the caller owns
//! (see [`Queue::run`]); when they are aborted, adds still record keys but nothing runs them.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::warn;

/// What a reconcile asks of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done until the next change.
    Done,
    /// Run again after this long (waiting on something outside this object).
    After(Duration),
}

/// Retry delays: `min`, doubled per consecutive failure of a key, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub min: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay after the `failures`-th consecutive failure (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        self.min
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
            .min(self.max)
    }
}

#[derive(Default)]
struct State {
    ready: VecDeque<String>,
    /// Keys in `ready`.
    queued: HashSet<String>,
    /// Keys a worker is processing.
    active: HashSet<String>,
    /// Added while active: run again afterwards.
    dirty: HashSet<String>,
    /// Consecutive failures per key.
    failures: HashMap<String, u32>,
    /// Delayed adds by due time; `due` holds each key's earliest time.
    delayed: BTreeMap<(Instant, u64), String>,
    due: HashMap<String, (Instant, u64)>,
    seq: u64,
    /// Keys in their minimum interval after a run: `true` once added meanwhile.
    cooling: HashMap<String, bool>,
}

struct Shared {
    name: &'static str,
    backoff: Backoff,
    interval: Option<Duration>,
    state: Mutex<State>,
    /// Signalled when a key becomes ready.
    work: Notify,
    /// Signalled when the earliest delayed time may have changed.
    timer: Notify,
}

/// A handle to a kind's queue: cheap to clone; every clone adds to the same queue.
#[derive(Clone)]
pub struct Queue {
    shared: Arc<Shared>,
}

impl Queue {
    /// A queue for `name` (used in logs) with the retry back-off; no workers yet.
    pub fn new(name: &'static str, backoff: Backoff) -> Queue {
        Queue::build(name, backoff, None)
    }

    /// Like [`Queue::new`], but a key runs at most once per `interval`: adds during the
    /// interval after a run are held and run once at its end.
    pub fn with_interval(name: &'static str, backoff: Backoff, interval: Duration) -> Queue {
        Queue::build(name, backoff, Some(interval))
    }

    fn build(name: &'static str, backoff: Backoff, interval: Option<Duration>) -> Queue {
        Queue {
            shared: Arc::new(Shared {
                name,
                backoff,
                interval,
                state: Mutex::new(State::default()),
                work: Notify::new(),
                timer: Notify::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a key now (no-op if it is already waiting).
    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut st = self.state();
        if self.enqueue(&mut st, key) {
            drop(st);
            self.shared.work.notify_one();
        }
    }

    /// Puts `key` in the ready list unless it waits there already, is being processed (then it
    /// runs again afterwards) or is in its minimum interval (then it runs at the interval's
    /// end). Returns whether a worker should wake.
    fn enqueue(&self, st: &mut State, key: String) -> bool {
        if st.active.contains(&key) {
            st.dirty.insert(key);
            return false;
        }
        if let Some(pending) = st.cooling.get_mut(&key) {
            *pending = true;
            return false;
        }
        if let Some(at) = st.due.remove(&key) {
            st.delayed.remove(&at);
        }
        if st.queued.insert(key.clone()) {
            st.ready.push_back(key);
            return true;
        }
        false
    }

    /// Adds a key once `delay` has passed (an earlier pending add of the same key wins).
    pub fn add_after(&self, key: impl Into<String>, delay: Duration) {
        let key = key.into();
        let at = Instant::now() + delay;
        let mut st = self.state();
        if st.queued.contains(&key) || st.due.get(&key).is_some_and(|(t, _)| *t <= at) {
            return;
        }
        if let Some(old) = st.due.remove(&key) {
            st.delayed.remove(&old);
        }
        st.seq += 1;
        let slot = (at, st.seq);
        st.delayed.insert(slot, key.clone());
        st.due.insert(key, slot);
        drop(st);
        self.shared.timer.notify_one();
    }

    /// Keys waiting to run now (for metrics and tests).
    pub fn len(&self) -> usize {
        self.state().ready.len()
    }

    /// Whether no key waits to run now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts `workers` tasks running `handle` for this queue's keys, and the timer that moves
    /// delayed keys to the ready list, all in `tasks`: whoever owns `tasks` owns the workers,
    /// and dropping it stops them. `handle` returns an [`Outcome`] or an error message (retried
    /// with back-off).
    pub fn run<F, Fut>(&self, tasks: &mut JoinSet<()>, workers: usize, handle: F)
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Outcome, String>> + Send + 'static,
    {
        let handle = Arc::new(handle);
        for _ in 0..workers.max(1) {
            let (q, handle) = (self.clone(), handle.clone());
            tasks.spawn(async move {
                loop {
                    let key = q.next().await;
                    let result = handle(key.clone()).await;
                    q.finish(key, result);
                }
            });
        }
        let q = self.clone();
        tasks.spawn(async move { q.timer().await });
    }

    /// Waits for the next ready key and marks it active.
    async fn next(&self) -> String {
        loop {
            let notified = self.shared.work.notified();
            {
                let mut st = self.state();
                if let Some(key) = st.ready.pop_front() {
                    st.queued.remove(&key);
                    st.active.insert(key.clone());
                    let more = !st.ready.is_empty();
                    drop(st);
                    if more {
                        // Another worker may be asleep while keys wait.
                        self.shared.work.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// Records the end of a run of `key`: schedules its retry, its re-run or its interval.
    fn finish(&self, key: String, result: Result<Outcome, String>) {
        let mut st = self.state();
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
                *n = n.saturating_add(1);
                let delay = self.shared.backoff.delay(*n);
                warn!(queue = self.shared.name, %key, attempt = *n, "{e}; retrying in {delay:?}");
                Some(delay)
            }
        };
        let dirty = st.dirty.remove(&key);
        if let Some(interval) = self.shared.interval {
            st.cooling.insert(key.clone(), dirty);
            drop(st);
            // The interval's end is a delayed add that `timer` turns into a run if pending.
            self.add_cooling_end(key.clone(), interval);
            if let Some(d) = retry {
                self.add_after(key, d.max(interval));
            }
            return;
        }
        let wake = dirty && self.enqueue(&mut st, key.clone());
        drop(st);
        if wake {
            self.shared.work.notify_one();
        } else if !dirty {
            if let Some(d) = retry {
                self.add_after(key, d);
            }
        }
    }

    fn add_cooling_end(&self, key: String, interval: Duration) {
        let at = Instant::now() + interval;
        let mut st = self.state();
        st.seq += 1;
        let slot = (at, st.seq);
        // A cooling end is stored under the key prefixed with NUL, which no object key has.
        st.delayed.insert(slot, format!("\0{key}"));
        drop(st);
        self.shared.timer.notify_one();
    }

    /// Moves delayed keys to the ready list when they are due.
    async fn timer(&self) {
        loop {
            let notified = self.shared.timer.notified();
            let next = {
                let mut st = self.state();
                let now = Instant::now();
                let mut woke = false;
                while let Some((&slot, _)) = st.delayed.first_key_value() {
                    if slot.0 > now {
                        break;
                    }
                    let Some(entry) = st.delayed.remove(&slot) else {
                        break;
                    };
                    if let Some(key) = entry.strip_prefix('\0') {
                        if st.cooling.remove(key) == Some(true) {
                            woke |= self.enqueue(&mut st, key.to_string());
                        }
                    } else {
                        st.due.remove(&entry);
                        woke |= self.enqueue(&mut st, entry);
                    }
                }
                if woke {
                    self.shared.work.notify_waiters();
                    self.shared.work.notify_one();
                }
                st.delayed.first_key_value().map(|(slot, _)| slot.0)
            };
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}
