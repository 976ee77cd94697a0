//! The registry every reconciler is a line in: a [`Kind`] names the reconciler, its workers,
//! its start-up gate and (optionally) the minimum interval between two runs of one key; a watch
//! stream is wired to the queues it feeds through [`Trigger`]s. Kinds are registered first
//! (their queues exist from then on and collect keys), the shared context is built with
//! [`Runtime::queues`] in it (reconcilers queue other kinds' keys through it), and
//! [`Runtime::start`] runs each kind once its gate opens.
//!
//! The runtime owns every task it starts — watch dispatchers, gate waiters, workers, timers —
//! in one `JoinSet`: dropping the runtime stops them all (a controller that loses leadership
//! drops it).

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use kube::runtime::watcher::Event;
use kube::Resource;
use tokio::task::JoinSet;
use tracing::info;

use crate::metrics::WorkqueueMetrics;
use crate::queue::{Backoff, Outcome, Queue};
use crate::trigger::Trigger;

type ReconcileFn<C> =
    Arc<dyn Fn(Arc<C>, String) -> BoxFuture<'static, Result<Outcome, String>> + Send + Sync>;

/// A start-up gate: the kind's workers start once `ready` holds (polled every 100 ms).
struct Gate<C> {
    what: &'static str,
    ready: Box<dyn Fn(&C) -> bool + Send + Sync>,
}

/// What the runtime reports about each reconcile (metrics live with the caller).
pub trait Observer: Send + Sync {
    /// A reconcile of `kind` ended after `elapsed`, successfully or not.
    fn reconciled(&self, kind: &'static str, elapsed: Duration, ok: bool);
}

/// One reconciler: its kind's name, concurrency, gate and function.
pub struct Kind<C> {
    name: &'static str,
    workers: usize,
    interval: Option<Duration>,
    gate: Option<Gate<C>>,
    reconcile: ReconcileFn<C>,
}

impl<C: Send + Sync + 'static> Kind<C> {
    /// A kind named `name` whose keys `reconcile` handles with `workers` concurrent workers.
    pub fn new<F, Fut, E>(name: &'static str, workers: usize, reconcile: F) -> Kind<C>
    where
        F: Fn(Arc<C>, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Outcome, E>> + Send + 'static,
        E: Display,
    {
        let f = Arc::new(reconcile);
        Kind {
            name,
            workers,
            interval: None,
            gate: None,
            reconcile: Arc::new(move |ctx, key| {
                let fut = f(ctx, key);
                Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
            }),
        }
    }

    /// Starts the workers only once `ready` holds; `what` is logged while waiting.
    pub fn gate(
        mut self,
        what: &'static str,
        ready: impl Fn(&C) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.gate = Some(Gate {
            what,
            ready: Box::new(ready),
        });
        self
    }

    /// Runs one key at most once per `interval` (adds meanwhile run once at its end).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }
}

/// Every kind's queue by name: how reconcilers queue keys of other kinds.
#[derive(Clone, Default)]
pub struct Queues {
    by_kind: Arc<HashMap<&'static str, Queue>>,
}

impl Queues {
    /// Adds `key` to the queue of `kind`. Kinds are fixed at registration, so an unknown name
    /// is a programming error; it is logged and the key dropped.
    pub fn add(&self, kind: &'static str, key: impl Into<String>) {
        match self.by_kind.get(kind) {
            Some(q) => q.add(key),
            None => tracing::error!(kind, "no such kind registered; key dropped"),
        }
    }
}

/// The registry and owner of every reconciler task (see the module doc).
pub struct Runtime<C> {
    backoff: Backoff,
    kinds: Vec<(Kind<C>, Queue)>,
    queues: HashMap<&'static str, Queue>,
    observer: Option<Arc<dyn Observer>>,
    metrics: Option<WorkqueueMetrics>,
    tasks: JoinSet<()>,
}

impl<C: Send + Sync + 'static> Runtime<C> {
    /// An empty runtime whose failed reconciles retry with `backoff`.
    pub fn new(backoff: Backoff) -> Runtime<C> {
        Runtime {
            backoff,
            kinds: Vec::new(),
            queues: HashMap::new(),
            observer: None,
            metrics: None,
            tasks: JoinSet::new(),
        }
    }

    /// Reports every reconcile to `observer`.
    pub fn observe(&mut self, observer: Arc<dyn Observer>) {
        self.observer = Some(observer);
    }

    /// Records the queues of kinds registered from now on in `metrics` (upstream's
    /// `workqueue_*` series, labelled with the kind's name).
    pub fn workqueue_metrics(&mut self, metrics: WorkqueueMetrics) {
        self.metrics = Some(metrics);
    }

    /// Registers a kind; its queue collects keys from now on. Returns the queue.
    pub fn register(&mut self, kind: Kind<C>) -> Queue {
        let handles = self.metrics.as_ref().map(|m| m.for_queue(kind.name));
        let q = Queue::instrumented(kind.name, self.backoff, kind.interval, handles);
        if let Some(m) = &self.metrics {
            m.track(q.clone());
        }
        self.queues.insert(kind.name, q.clone());
        self.kinds.push((kind, q.clone()));
        q
    }

    /// Every registered kind's queue, for the shared context.
    pub fn queues(&self) -> Queues {
        Queues {
            by_kind: Arc::new(self.queues.clone()),
        }
    }

    /// Feeds a watch stream of `K` to `triggers` (each queueing keys in one kind's queue).
    pub fn watch<K, S>(&mut self, events: S, mut triggers: Vec<Trigger<K>>)
    where
        K: Resource + Send + 'static,
        S: Stream<Item = Event<K>> + Send + 'static,
    {
        self.tasks.spawn(events.for_each(move |ev| {
            for t in triggers.iter_mut() {
                t.handle(&ev);
            }
            async {}
        }));
    }

    /// Runs a task the runtime owns (stopped with it).
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Starts every kind's workers, each once its gate opens.
    pub fn start(&mut self, ctx: Arc<C>) {
        for (kind, queue) in std::mem::take(&mut self.kinds) {
            let ctx = ctx.clone();
            let observer = self.observer.clone();
            self.tasks.spawn(async move {
                if let Some(gate) = &kind.gate {
                    wait_until(gate.what, || (gate.ready)(&ctx)).await;
                }
                let name = kind.name;
                let f = kind.reconcile.clone();
                let mut workers = JoinSet::new();
                queue.run(&mut workers, kind.workers, move |key| {
                    let (ctx, f, observer) = (ctx.clone(), f.clone(), observer.clone());
                    async move {
                        let started = Instant::now();
                        let r = f(ctx, key).await;
                        if let Some(o) = observer {
                            o.reconciled(name, started.elapsed(), r.is_ok());
                        }
                        r
                    }
                });
                // This task owns the workers: it ends (and they stop) when the runtime drops it.
                while workers.join_next().await.is_some() {}
            });
        }
    }
}

/// Waits until `cond` holds, polling every 100 ms; says what it waits for after 5 s.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut logged = false;
    while !cond() {
        if !logged && start.elapsed() > Duration::from_secs(5) {
            info!("waiting until {what}");
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
