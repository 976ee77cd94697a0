//! The registry: kinds wait for their gates, watch events reach the right queues, reconciles
//! are observed, and dropping the runtime stops everything it started.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::Event;
use kube_ovn_runtime::trigger::meta_signature;
use kube_ovn_runtime::{Backoff, Kind, Observer, Outcome, Runtime, Seen, Trigger};
use tokio::sync::mpsc;

struct Ctx {
    open: AtomicBool,
    runs: AtomicUsize,
}

#[derive(Default)]
struct Recorded(Mutex<Vec<(&'static str, bool)>>);

impl Observer for Recorded {
    fn reconciled(&self, kind: &'static str, _elapsed: Duration, ok: bool) {
        self.0.lock().unwrap().push((kind, ok));
    }
}

fn cm(name: &str, label: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "ns", "labels": {"l": label}}
    }))
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn gated_kinds_start_when_their_gate_opens_and_stop_with_the_runtime() {
    let backoff = Backoff {
        min: Duration::from_millis(10),
        max: Duration::from_millis(10),
    };
    let mut rt = Runtime::<Ctx>::new(backoff);
    let observed = Arc::new(Recorded::default());
    rt.observe(observed.clone());
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let q = rt.register(
        Kind::new("cm", 2, move |ctx: Arc<Ctx>, key: String| {
            let tx = tx.clone();
            async move {
                ctx.runs.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(key.clone());
                if key == "ns/bad" {
                    Err("refused")
                } else {
                    Ok(Outcome::Done)
                }
            }
        })
        .gate("the test opens it", |c: &Ctx| c.open.load(Ordering::SeqCst)),
    );
    let (etx, erx) = mpsc::unbounded_channel::<Event<ConfigMap>>();
    rt.watch(
        tokio_stream_from(erx),
        vec![Trigger::own(
            q.clone(),
            meta_signature::<ConfigMap>,
            Seen::default(),
        )],
    );
    let ctx = Arc::new(Ctx {
        open: AtomicBool::new(false),
        runs: AtomicUsize::new(0),
    });
    rt.start(ctx.clone());
    etx.send(Event::Apply(cm("a", "1"))).unwrap();
    etx.send(Event::Apply(cm("a", "1"))).unwrap();
    etx.send(Event::Apply(cm("bad", "1"))).unwrap();
    // Keys wait behind the closed gate, however long.
    assert!(tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .is_err());
    assert_eq!(ctx.runs.load(Ordering::SeqCst), 0);
    assert_eq!(q.len(), 2);
    ctx.open.store(true, Ordering::SeqCst);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(rx.recv().await.unwrap());
    }
    got.sort();
    // "a" once (the same signature twice), "bad" once and then its retry.
    assert_eq!(got, ["ns/a", "ns/bad", "ns/bad"]);
    let obs = observed.0.lock().unwrap().clone();
    assert!(obs.contains(&("cm", true)) && obs.contains(&("cm", false)));
    drop(rt);
    // With the runtime gone, nothing runs any more: the retries of "bad" stop.
    let runs = ctx.runs.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ctx.runs.load(Ordering::SeqCst), runs);
}

/// An unbounded receiver as a stream (the test feeds watch events by hand).
fn tokio_stream_from<T: Send + 'static>(
    rx: mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}
