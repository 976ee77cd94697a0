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
//! Bounds: every key is held at most once in the ready list, once in the delayed set, once in
//! the active set and once in the add times kept for metrics, so the queue never holds more than
//! four entries per distinct key; the
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

use crate::metrics::QueueMetrics;

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
    /// Keys a worker is processing, with when it took them.
    active: HashMap<String, Instant>,
    /// When each key in `ready` or `dirty` was first added since it last ran (for the time
    /// keys wait, as client-go's `workqueue_queue_duration_seconds`).
    added: HashMap<String, Instant>,
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
    /// Where adds, retries and durations are counted (see [`crate::metrics`]).
    metrics: Option<QueueMetrics>,
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
        Queue::instrumented(name, backoff, interval, None)
    }

    /// A queue whose adds, retries and durations are recorded in `metrics`.
    pub(crate) fn instrumented(
        name: &'static str,
        backoff: Backoff,
        interval: Option<Duration>,
        metrics: Option<QueueMetrics>,
    ) -> Queue {
        Queue {
            shared: Arc::new(Shared {
                name,
                backoff,
                interval,
                state: Mutex::new(State::default()),
                work: Notify::new(),
                timer: Notify::new(),
                metrics,
            }),
        }
    }

    /// The queue's name (its kind).
    pub fn name(&self) -> &'static str {
        self.shared.name
    }

    /// What client-go's workqueue reports as gauges, now: the keys waiting to run (ready, or
    /// added again while running), the seconds the running keys have been running in total,
    /// and the longest of those.
    pub fn gauges(&self) -> (usize, f64, f64) {
        let st = self.state();
        let now = Instant::now();
        let running = st
            .active
            .values()
            .map(|t| now.duration_since(*t).as_secs_f64());
        let (total, longest) = running.fold((0.0, 0.0_f64), |(s, m), d| (s + d, m.max(d)));
        (st.ready.len() + st.dirty.len(), total, longest)
    }

    /// Whether keys are waiting to run now or running (delayed keys do not count).
    pub fn busy(&self) -> bool {
        let st = self.state();
        !st.ready.is_empty() || !st.dirty.is_empty() || !st.active.is_empty()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a key now (no-op if it is already waiting).
    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut st = self.state();
        if self.enqueue(&mut st, key, true) {
            drop(st);
            self.shared.work.notify_one();
        }
    }

    /// Puts `key` in the ready list unless it waits there already, is being processed (then it
    /// runs again afterwards) or is in its minimum interval (then it runs at the interval's
    /// end). Returns whether a worker should wake. `fresh` is false for a key that was
    /// added while it ran and is now moved to the ready list (its add was counted then).
    fn enqueue(&self, st: &mut State, key: String, fresh: bool) -> bool {
        if st.active.contains_key(&key) {
            if st.dirty.insert(key.clone()) {
                self.count_add(st, key);
            }
            return false;
        }
        if let Some(pending) = st.cooling.get_mut(&key) {
            let first = !std::mem::replace(pending, true);
            if first && fresh {
                self.count_add(st, key);
            }
            return false;
        }
        if let Some(at) = st.due.remove(&key) {
            st.delayed.remove(&at);
        }
        if st.queued.insert(key.clone()) {
            if fresh {
                self.count_add(st, key.clone());
            }
            st.ready.push_back(key);
            return true;
        }
        false
    }

    /// Counts an add and remembers when the key started waiting.
    fn count_add(&self, st: &mut State, key: String) {
        if let Some(m) = &self.shared.metrics {
            m.adds.inc();
            st.added.entry(key).or_insert_with(Instant::now);
        }
    }

    /// Adds a key once `delay` has passed (an earlier pending add of the same key wins).
    pub fn add_after(&self, key: impl Into<String>, delay: Duration) {
        let key = key.into();
        if let Some(m) = &self.shared.metrics {
            // client-go counts every delayed add as a retry.
            m.retries.inc();
        }
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
                    let now = Instant::now();
                    if let (Some(m), Some(t)) = (&self.shared.metrics, st.added.remove(&key)) {
                        m.queue_duration
                            .observe(now.duration_since(t).as_secs_f64());
                    }
                    st.active.insert(key.clone(), now);
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
        if let (Some(m), Some(t)) = (&self.shared.metrics, st.active.remove(&key)) {
            m.work_duration.observe(t.elapsed().as_secs_f64());
        }
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
        let wake = dirty && self.enqueue(&mut st, key.clone(), false);
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
                            // Its add was counted when it arrived during the interval.
                            woke |= self.enqueue(&mut st, key.to_string(), false);
                        }
                    } else {
                        st.due.remove(&entry);
                        woke |= self.enqueue(&mut st, entry, true);
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
