//! The work queue's promises: dedup, one run at a time per key with a re-run for changes made
//! meanwhile, exponential back-off, delayed adds, per-key intervals, and workers that stop
//! with their owner. Time is tokio's paused clock, so delays are exact and nothing sleeps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube_ovn_runtime::{Backoff, Outcome, Queue};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

const BACKOFF: Backoff = Backoff {
    min: Duration::from_millis(100),
    max: Duration::from_secs(1),
};

type Runs = Arc<Mutex<Vec<(String, Instant)>>>;

/// Starts `q` with `workers` workers whose handler records each run and answers with `answer`.
fn run_recording(
    q: &Queue,
    workers: usize,
    answer: impl Fn(&str, usize) -> Result<Outcome, String> + Send + Sync + 'static,
) -> (JoinSet<()>, Runs, mpsc::UnboundedReceiver<String>) {
    let runs: Runs = Arc::default();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    let r = runs.clone();
    let answer = Arc::new(answer);
    q.run(&mut tasks, workers, move |key| {
        let (r, tx, answer) = (r.clone(), tx.clone(), answer.clone());
        async move {
            let n = {
                let mut r = r.lock().unwrap();
                r.push((key.clone(), Instant::now()));
                r.iter().filter(|(k, _)| *k == key).count()
            };
            let out = answer(&key, n);
            let _ = tx.send(key);
            out
        }
    });
    (tasks, runs, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a run within the deadline")
        .expect("workers alive")
}

#[tokio::test(start_paused = true)]
async fn a_key_added_many_times_while_waiting_runs_once() {
    let q = Queue::new("t", BACKOFF);
    for _ in 0..5 {
        q.add("a");
    }
    q.add("b");
    assert_eq!(q.len(), 2);
    let (_tasks, runs, mut rx) = run_recording(&q, 2, |_, _| Ok(Outcome::Done));
    let mut seen = vec![next(&mut rx).await, next(&mut rx).await];
    seen.sort();
    assert_eq!(seen, ["a", "b"]);
    // Nothing else runs, however long we wait.
    assert!(tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .is_err());
    assert_eq!(runs.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_key_added_while_running_runs_once_more_afterwards_never_concurrently() {
    let q = Queue::new("t", BACKOFF);
    let gate = Arc::new(Semaphore::new(0));
    let active = Arc::new(Mutex::new(0usize));
    let max_active = Arc::new(Mutex::new(0usize));
    let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
    let started = Arc::new(tokio::sync::Notify::new());
    let mut tasks = JoinSet::new();
    {
        let (gate, active, max_active, started) = (
            gate.clone(),
            active.clone(),
            max_active.clone(),
            started.clone(),
        );
        let count = Arc::new(Mutex::new(0u32));
        q.run(&mut tasks, 4, move |_key| {
            let (gate, active, max_active, started, tx, count) = (
                gate.clone(),
                active.clone(),
                max_active.clone(),
                started.clone(),
                tx.clone(),
                count.clone(),
            );
            async move {
                {
                    let mut a = active.lock().unwrap();
                    *a += 1;
                    let mut m = max_active.lock().unwrap();
                    *m = (*m).max(*a);
                }
                started.notify_one();
                gate.acquire().await.unwrap().forget();
                *active.lock().unwrap() -= 1;
                let n = {
                    let mut c = count.lock().unwrap();
                    *c += 1;
                    *c
                };
                let _ = tx.send(n);
                Ok(Outcome::Done)
            }
        });
    }
    q.add("k");
    started.notified().await;
    // While the first run is in progress the key changes twice.
    q.add("k");
    q.add("k");
    gate.add_permits(1);
    assert_eq!(rx.recv().await, Some(1));
    started.notified().await;
    gate.add_permits(1);
    assert_eq!(rx.recv().await, Some(2));
    gate.add_permits(10);
    assert!(tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .is_err());
    assert_eq!(*max_active.lock().unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn failures_retry_with_doubling_delays_and_success_resets_them() {
    let q = Queue::new("t", BACKOFF);
    let (_tasks, runs, mut rx) = run_recording(&q, 1, |_, n| {
        if n <= 5 {
            Err(format!("failure {n}"))
        } else {
            Ok(Outcome::Done)
        }
    });
    q.add("k");
    for _ in 0..6 {
        next(&mut rx).await;
    }
    let times: Vec<Instant> = runs.lock().unwrap().iter().map(|(_, t)| *t).collect();
    let gaps: Vec<u128> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    // 100, 200, 400, 800 ms, then capped at 1 s.
    assert_eq!(gaps, [100, 200, 400, 800, 1000]);
    // After a success the next failure starts from the minimum again.
    assert!(tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .is_err());
}

#[tokio::test(start_paused = true)]
async fn after_outcome_and_delayed_adds_run_when_due_earliest_wins() {
    let q = Queue::new("t", BACKOFF);
    let (_tasks, runs, mut rx) = run_recording(&q, 1, |key, n| {
        if key == "w" && n == 1 {
            Ok(Outcome::After(Duration::from_secs(3)))
        } else {
            Ok(Outcome::Done)
        }
    });
    let t0 = Instant::now();
    q.add_after("d", Duration::from_secs(10));
    q.add_after("d", Duration::from_secs(2));
    q.add_after("d", Duration::from_secs(5));
    q.add("w");
    let mut order = Vec::new();
    for _ in 0..3 {
        order.push(next(&mut rx).await);
    }
    assert_eq!(order, ["w", "d", "w"]);
    let runs = runs.lock().unwrap().clone();
    let at = |i: usize| (runs[i].1 - t0).as_secs();
    assert_eq!((at(0), at(1), at(2)), (0, 2, 3));
    assert!(tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .is_err());
}

#[tokio::test(start_paused = true)]
async fn an_interval_coalesces_adds_into_one_run_at_its_end() {
    let q = Queue::with_interval("t", BACKOFF, Duration::from_millis(500));
    let (_tasks, runs, mut rx) = run_recording(&q, 2, |_, _| Ok(Outcome::Done));
    let t0 = Instant::now();
    q.add("s");
    next(&mut rx).await;
    for _ in 0..10 {
        q.add("s");
        tokio::task::yield_now().await;
    }
    next(&mut rx).await;
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[1].1 - t0).as_millis(), 500);
    // With no add during the next interval, nothing more runs.
    drop(runs);
    assert!(tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .is_err());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_owner_stops_the_workers() {
    let q = Queue::new("t", BACKOFF);
    let (tasks, runs, mut rx) = run_recording(&q, 2, |_, _| Ok(Outcome::Done));
    q.add("a");
    next(&mut rx).await;
    drop(tasks);
    q.add("b");
    // The workers' sender is gone with them: the channel closes instead of delivering b.
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("channel closes"),
        None
    );
    assert_eq!(runs.lock().unwrap().len(), 1);
    assert_eq!(q.len(), 1, "the key is still recorded, for nobody");
}
