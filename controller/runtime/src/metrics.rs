//! The work queues' metrics under the names and labels upstream's controller exports (client-go's
//! workqueue through controller-runtime's provider, which labels each series with the queue's
//! name as both `name` and `controller`): `workqueue_adds_total`, `workqueue_retries_total`,
//! `workqueue_queue_duration_seconds`, `workqueue_work_duration_seconds` (recorded by the queue
//! as keys move) and `workqueue_depth`, `workqueue_unfinished_work_seconds`,
//! `workqueue_longest_running_processor_seconds` (read from the queues at scrape time).
//!
//! The queue names are this runtime's kinds (`subnet`, `pod`…), not upstream's queue names
//! (`AddSubnet`, `AddOrUpdatePod`…): one kind here does what several upstream queues do.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::queue::Queue;

/// The labels of every workqueue series: the queue's name twice, as controller-runtime does.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// The queue's name.
    pub name: String,
    /// The queue's name again (controller-runtime's `controller` label).
    pub controller: String,
}

/// `workqueue_depth`'s labels: controller-runtime adds the priority, empty for queues without.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DepthLabels {
    name: String,
    controller: String,
    priority: String,
}

/// The families every queue of a runtime records into; register once per process.
#[derive(Clone)]
pub struct WorkqueueMetrics {
    adds: Family<QueueLabels, Counter>,
    retries: Family<QueueLabels, Counter>,
    queue_duration: Family<QueueLabels, Histogram>,
    work_duration: Family<QueueLabels, Histogram>,
    queues: Arc<Mutex<Vec<Queue>>>,
}

/// One queue's handles into [`WorkqueueMetrics`].
#[derive(Clone)]
pub(crate) struct QueueMetrics {
    pub(crate) adds: Counter,
    pub(crate) retries: Counter,
    pub(crate) queue_duration: Histogram,
    pub(crate) work_duration: Histogram,
}

fn duration_buckets() -> Histogram {
    // controller-runtime's: 10 ns to 1000 s by factors of ten.
    Histogram::new(exponential_buckets(10e-9, 10.0, 12))
}

impl WorkqueueMetrics {
    /// Registers the workqueue families in `registry`.
    pub fn register(registry: &mut Registry) -> WorkqueueMetrics {
        let m = WorkqueueMetrics {
            adds: Family::default(),
            retries: Family::default(),
            queue_duration: Family::new_with_constructor(duration_buckets),
            work_duration: Family::new_with_constructor(duration_buckets),
            queues: Arc::default(),
        };
        registry.register(
            "workqueue_adds",
            "Total number of adds handled by workqueue",
            m.adds.clone(),
        );
        registry.register(
            "workqueue_retries",
            "Total number of items added to the workqueue with a delay (retries after a \
             failure, requeues after a while)",
            m.retries.clone(),
        );
        registry.register(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            m.queue_duration.clone(),
        );
        registry.register(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            m.work_duration.clone(),
        );
        registry.register_collector(Box::new(Gauges(m.queues.clone())));
        m
    }

    /// The handles of the queue named `name`.
    pub(crate) fn for_queue(&self, name: &str) -> QueueMetrics {
        let l = labels(name);
        QueueMetrics {
            adds: self.adds.get_or_create(&l).clone(),
            retries: self.retries.get_or_create(&l).clone(),
            queue_duration: self.queue_duration.get_or_create(&l).clone(),
            work_duration: self.work_duration.get_or_create(&l).clone(),
        }
    }

    /// Whether any tracked queue has keys waiting to run or running now (a one-shot pass,
    /// such as a drift check, is done when this stays false).
    pub fn busy(&self) -> bool {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(Queue::busy)
    }

    /// Reports `queue`'s gauges from now on.
    pub(crate) fn track(&self, queue: Queue) {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(queue);
    }
}

fn labels(name: &str) -> QueueLabels {
    QueueLabels {
        name: name.to_string(),
        controller: name.to_string(),
    }
}

/// The gauges read from the tracked queues at scrape time.
struct Gauges(Arc<Mutex<Vec<Queue>>>);

impl std::fmt::Debug for Gauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("workqueue gauges")
    }
}

impl Collector for Gauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let queues = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let now: Vec<_> = queues.iter().map(|q| (q.name(), q.gauges())).collect();
        let mut depth = encoder.encode_descriptor(
            "workqueue_depth",
            "Current depth of workqueue by workqueue and priority",
            None,
            MetricType::Gauge,
        )?;
        for (name, (d, _, _)) in &now {
            let l = DepthLabels {
                name: name.to_string(),
                controller: name.to_string(),
                priority: String::new(),
            };
            ConstGauge::new(*d as i64).encode(depth.encode_family(&l)?)?;
        }
        let mut unfinished = encoder.encode_descriptor(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been \
             observed by work_duration.",
            None,
            MetricType::Gauge,
        )?;
        for (name, (_, total, _)) in &now {
            ConstGauge::new(*total).encode(unfinished.encode_family(&labels(name))?)?;
        }
        let mut longest = encoder.encode_descriptor(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running.",
            None,
            MetricType::Gauge,
        )?;
        for (name, (_, _, max)) in &now {
            ConstGauge::new(*max).encode(longest.encode_family(&labels(name))?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus_client::encoding::text::encode;
    use tokio::task::JoinSet;

    use super::*;
    use crate::queue::{Backoff, Outcome};

    #[tokio::test]
    async fn adds_retries_and_durations_are_counted_per_queue() {
        let mut registry = Registry::default();
        let m = WorkqueueMetrics::register(&mut registry);
        let backoff = Backoff {
            min: Duration::from_millis(1),
            max: Duration::from_millis(1),
        };
        let q = Queue::instrumented("subnet", backoff, None, Some(m.for_queue("subnet")));
        m.track(q.clone());
        q.add("a");
        q.add("a");
        q.add("b");
        let text = || {
            let mut t = String::new();
            encode(&mut t, &registry).unwrap();
            t
        };
        let before = text();
        for needle in [
            r#"workqueue_adds_total{name="subnet",controller="subnet"} 2"#,
            r#"workqueue_depth{name="subnet",controller="subnet",priority=""} 2"#,
            r#"workqueue_longest_running_processor_seconds{name="subnet",controller="subnet"} 0"#,
        ] {
            assert!(before.contains(needle), "{needle} missing in\n{before}");
        }
        // "a" fails once, then everything succeeds.
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        q.run(&mut tasks, 1, move |key| {
            let (failed, done_tx) = (failed.clone(), done_tx.clone());
            async move {
                if key == "a" && !failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    return Err("first try fails".to_string());
                }
                let _ = done_tx.send(key);
                Ok(Outcome::Done)
            }
        });
        let mut done = Vec::new();
        while done.len() < 2 {
            let key = tokio::time::timeout(Duration::from_secs(10), done_rx.recv())
                .await
                .expect("both keys processed")
                .unwrap();
            done.push(key);
        }
        let after = text();
        for needle in [
            // The retry's delayed add comes back as an add.
            r#"workqueue_adds_total{name="subnet",controller="subnet"} 3"#,
            r#"workqueue_retries_total{name="subnet",controller="subnet"} 1"#,
            r#"workqueue_queue_duration_seconds_count{name="subnet",controller="subnet"} 3"#,
            r#"workqueue_depth{name="subnet",controller="subnet",priority=""} 0"#,
        ] {
            assert!(after.contains(needle), "{needle} missing in\n{after}");
        }
        // The third run's duration is recorded once the worker is back for the next key.
        let work = "workqueue_work_duration_seconds_count{name=\"subnet\",controller=\"subnet\"} ";
        let count = |t: &str| {
            t.lines()
                .find_map(|l| l.strip_prefix(work)?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while count(&text()) < 3 {
            assert!(std::time::Instant::now() < deadline, "{}", text());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
