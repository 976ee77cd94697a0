//! Group commit: many independent transactions from concurrent callers sent as one `transact`.
//!
//! ovsdb-server spends most of a small transaction's cost on per-transaction work (parsing the
//! request, checking constraints over the whole change, writing one log record, sending
//! monitor updates), not on the operations themselves. A controller that creates thousands of
//! ports, each as its own request, is therefore far faster when the requests that pile up while
//! one `transact` is in flight are sent together as the next one. [`Batcher`] does that while
//! keeping each caller's view of "my transaction": its own result, its own named UUIDs, its own
//! error.
//!
//! Semantics, and why they hold:
//!
//! * OVSDB transactions are atomic, so if the merged transaction fails nothing of it was
//!   committed. Each member is then re-run on its own (pipelined), which gives every caller the
//!   result its transaction would have had alone and applies nothing twice.
//! * A lost connection (or a reply that never came within the timeout) leaves the outcome
//!   unknown: the merged transaction may or may not have been committed. Every member of it gets
//!   the error and nothing is resent, exactly as for a single `transact`.
//! * Members that change how the whole transaction behaves run alone: `abort` (it would abort
//!   everyone), `commit` (durability is per transaction), `assert` (a lock guard is meant to
//!   cover only its own operations) and `wait` with a non-zero timeout (it would hold the whole
//!   batch back). A transaction on another database also runs alone.
//! * Inside a merged transaction members run in submission order, so each member sees the
//!   effects of the members before it, exactly as if they had been committed one after another.
//!   Checks OVSDB makes at commit time (referential integrity, unique indexes, set sizes) apply
//!   to the combined result; members that are independent, as the contract requires, cannot
//!   tell the difference.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::client::Client;
use crate::connection::Timeouts;
use crate::datum::{Atom, Datum, Row};
use crate::error::{Error, Result};
use crate::ops::{Operation, Transaction, TxnOutcome};

/// How a [`Batcher`] groups transactions.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Most operations in one merged transaction. A member larger than this is sent alone.
    pub max_ops: usize,
    /// Merged transactions on the wire at once. Two keeps the server busy while the client
    /// builds the next request and parses the previous reply; more only adds latency.
    pub max_in_flight: usize,
    /// How long to wait for the reply to one merged transaction.
    pub request_timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_ops: 5_000,
            max_in_flight: 2,
            request_timeout: Timeouts::default().request,
        }
    }
}

struct Job {
    txn: Transaction,
    reply: oneshot::Sender<Result<TxnOutcome>>,
}

/// Group-commit front end of a [`Client`] for one database. Cloning shares the queue; the
/// background task ends when the last clone is dropped.
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::UnboundedSender<Job>,
}

impl Batcher {
    /// Starts the background task that sends batches for `db` over `client`.
    pub fn new(client: Client, db: impl Into<String>, config: BatchConfig) -> Batcher {
        let (queue, rx) = mpsc::unbounded_channel();
        let engine = Engine {
            client,
            db: db.into(),
            config: BatchConfig {
                max_ops: config.max_ops.max(1),
                max_in_flight: config.max_in_flight.max(1),
                ..config
            },
        };
        tokio::spawn(engine.run(rx));
        Batcher { queue }
    }

    /// Runs `txn`, possibly merged with other callers' transactions, and returns its own
    /// results with its own named UUIDs. Errors are those a lone `transact` would give;
    /// [`Error::Disconnected`] and [`Error::Timeout`] mean the outcome is unknown.
    pub async fn submit(&self, txn: Transaction) -> Result<TxnOutcome> {
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Job { txn, reply })
            .map_err(|_| Error::Closed)?;
        rx.await.unwrap_or(Err(Error::Closed))
    }
}

struct Engine {
    client: Client,
    db: String,
    config: BatchConfig,
}

impl Engine {
    /// Takes whatever is queued once a send slot is free, so batches grow exactly as large as
    /// the server's latency makes them: an idle server gets each transaction at once.
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Job>) {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(this.config.max_in_flight));
        let mut carry: Option<Job> = None;
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let first = match carry.take() {
                Some(j) => j,
                None => match rx.recv().await {
                    Some(j) => j,
                    None => return,
                },
            };
            if this.runs_alone(&first.txn) {
                this.spawn_alone(first, permit);
                continue;
            }
            let mut ops = first.txn.ops.len();
            let mut jobs = vec![first];
            while ops < this.config.max_ops {
                match rx.try_recv() {
                    Ok(j)
                        if this.runs_alone(&j.txn)
                            || ops + j.txn.ops.len() > this.config.max_ops =>
                    {
                        carry = Some(j);
                        break;
                    }
                    Ok(j) => {
                        ops += j.txn.ops.len();
                        jobs.push(j);
                    }
                    Err(_) => break,
                }
            }
            if jobs.len() == 1 {
                let job = jobs.pop().expect("one job");
                this.spawn_alone(job, permit);
                continue;
            }
            // Requests are queued here, in the loop, so they reach the wire in submission order;
            // only the waiting for replies happens in spawned tasks.
            let merged = Merged::build(jobs);
            let rx = this
                .client
                .connection()
                .send_request("transact", merged.params(&this.db));
            let e = this.clone();
            tokio::spawn(async move {
                e.finish(merged, rx).await;
                drop(permit);
            });
        }
    }

    fn spawn_alone(self: &Arc<Self>, job: Job, permit: tokio::sync::OwnedSemaphorePermit) {
        let rx = self
            .client
            .connection()
            .send_request("transact", job.txn.to_params());
        let e = self.clone();
        tokio::spawn(async move {
            let r = match rx {
                Ok(rx) => e.await_outcome(&job.txn, rx).await,
                Err(err) => Err(err),
            };
            let _ = job.reply.send(r);
            drop(permit);
        });
    }

    fn runs_alone(&self, txn: &Transaction) -> bool {
        txn.db != self.db
            || txn.ops.len() >= self.config.max_ops
            || txn.ops.iter().any(|op| match op {
                Operation::Abort | Operation::Commit { .. } | Operation::Assert { .. } => true,
                Operation::Wait { timeout, .. } => *timeout != Some(Duration::ZERO),
                _ => false,
            })
    }

    async fn await_outcome(
        &self,
        txn: &Transaction,
        rx: oneshot::Receiver<Result<Value>>,
    ) -> Result<TxnOutcome> {
        let reply = self
            .client
            .connection()
            .await_reply("transact", rx, self.config.request_timeout)
            .await?;
        txn.parse_reply(&reply)
    }

    async fn finish(&self, merged: Merged, rx: Result<oneshot::Receiver<Result<Value>>>) {
        let reply = match rx {
            Ok(rx) => {
                self.client
                    .connection()
                    .await_reply("transact", rx, self.config.request_timeout)
                    .await
            }
            Err(e) => Err(e),
        };
        let failed = match reply {
            Ok(v) => match merged.split(v) {
                Ok(()) => return,
                Err(m) => m,
            },
            Err(e) if not_committed(&e) => merged,
            Err(e) => {
                // Outcome unknown: every member learns it, none is resent.
                for (job, _) in merged.jobs {
                    let _ = job.reply.send(Err(copy_error(&e)));
                }
                return;
            }
        };
        // Nothing was committed: run each member alone to give each its own result.
        let conn = self.client.connection();
        let mut waiting = Vec::with_capacity(failed.jobs.len());
        for (mut job, prefix) in failed.jobs {
            rename_txn(&mut job.txn, &mut |n| {
                n.strip_prefix(prefix.as_str()).unwrap_or(n).to_string()
            });
            let rx = conn.send_request("transact", job.txn.to_params());
            waiting.push((job, rx));
        }
        for (job, rx) in waiting {
            let r = match rx {
                Ok(rx) => self.await_outcome(&job.txn, rx).await,
                Err(e) => Err(e),
            };
            let _ = job.reply.send(r);
        }
    }
}

/// Whether a failed `transact` certainly left the database unchanged: the server answered, and
/// refused it. Anything else (lost connection, timeout, unreadable reply) is unknown.
fn not_committed(e: &Error) -> bool {
    matches!(e, Error::Transaction(_) | Error::Rpc { .. })
}

/// The error as each member of a batch receives it (`Error` is not `Clone`: it may carry I/O
/// errors).
fn copy_error(e: &Error) -> Error {
    match e {
        Error::Disconnected { remote } => Error::Disconnected {
            remote: remote.clone(),
        },
        Error::Timeout { what, after } => Error::Timeout {
            what: what.clone(),
            after: *after,
        },
        Error::Protocol(m) => Error::Protocol(m.clone()),
        Error::Transaction(t) => Error::Transaction(t.clone()),
        Error::Rpc { method, error } => Error::Rpc {
            method: method.clone(),
            error: error.clone(),
        },
        other => Error::Protocol(format!("batched transact failed: {other}")),
    }
}

/// Members of one merged transaction, each with the prefix given to its named UUIDs.
struct Merged {
    jobs: Vec<(Job, String)>,
}

impl Merged {
    /// Renames each member's named UUIDs to `b<member>_<name>`: names are only unique within a
    /// transaction, and every member of a batch tends to use the same `row0`, `row1`, ….
    /// `b<digits>_` is unambiguous, so renamed names of different members never collide.
    fn build(jobs: Vec<Job>) -> Merged {
        let jobs = jobs
            .into_iter()
            .enumerate()
            .map(|(i, mut job)| {
                let prefix = format!("b{i}_");
                rename_txn(&mut job.txn, &mut |n| format!("{prefix}{n}"));
                (job, prefix)
            })
            .collect();
        Merged { jobs }
    }

    fn params(&self, db: &str) -> Value {
        let n: usize = self.jobs.iter().map(|(j, _)| j.txn.ops.len()).sum();
        let mut p = Vec::with_capacity(n + 1);
        p.push(Value::String(db.to_string()));
        for (j, _) in &self.jobs {
            p.extend(j.txn.ops.iter().map(Operation::to_json));
        }
        Value::Array(p)
    }

    /// Hands each member its slice of a successful reply, with its named UUIDs under their
    /// original names. Returns the batch untouched if the transaction failed as a whole.
    fn split(self, reply: Value) -> std::result::Result<(), Merged> {
        let total: usize = self.jobs.iter().map(|(j, _)| j.txn.ops.len()).sum();
        let results = match reply {
            Value::Array(a)
                if a.len() >= total
                    && !a
                        .iter()
                        .any(|r| r.get("error").is_some_and(|e| !e.is_null())) =>
            {
                a
            }
            Value::Array(_) => return Err(self),
            other => {
                let e = Error::Protocol(format!("transact reply is not an array: {other}"));
                for (job, _) in self.jobs {
                    let _ = job.reply.send(Err(copy_error(&e)));
                }
                return Ok(());
            }
        };
        let mut results = results.into_iter();
        for (job, prefix) in self.jobs {
            let mine: Vec<Value> = results.by_ref().take(job.txn.ops.len()).collect();
            let r = job.txn.parse_reply(&Value::Array(mine)).map(|mut out| {
                out.named = out
                    .named
                    .into_iter()
                    .map(|(k, u)| (k.strip_prefix(prefix.as_str()).unwrap_or(&k).to_string(), u))
                    .collect::<HashMap<_, _>>();
                out
            });
            let _ = job.reply.send(r);
        }
        Ok(())
    }
}

/// Applies `f` to every named UUID of a transaction: `uuid-name`s and references in rows,
/// conditions, mutations and wait rows.
fn rename_txn(txn: &mut Transaction, f: &mut dyn FnMut(&str) -> String) {
    for op in &mut txn.ops {
        match op {
            Operation::Insert { row, uuid_name, .. } => {
                if let Some(n) = uuid_name {
                    *n = f(n);
                }
                rename_row(row, f);
            }
            Operation::Select { conditions, .. } | Operation::Delete { conditions, .. } => {
                conditions
                    .iter_mut()
                    .for_each(|c| rename_datum(&mut c.value, f));
            }
            Operation::Update {
                conditions, row, ..
            } => {
                conditions
                    .iter_mut()
                    .for_each(|c| rename_datum(&mut c.value, f));
                rename_row(row, f);
            }
            Operation::Mutate {
                conditions,
                mutations,
                ..
            } => {
                conditions
                    .iter_mut()
                    .for_each(|c| rename_datum(&mut c.value, f));
                mutations
                    .iter_mut()
                    .for_each(|m| rename_datum(&mut m.value, f));
            }
            Operation::Wait {
                conditions, rows, ..
            } => {
                conditions
                    .iter_mut()
                    .for_each(|c| rename_datum(&mut c.value, f));
                rows.iter_mut().for_each(|r| rename_row(r, f));
            }
            Operation::Commit { .. }
            | Operation::Abort
            | Operation::Comment(_)
            | Operation::Assert { .. } => {}
        }
    }
}

fn rename_row(row: &mut Row, f: &mut dyn FnMut(&str) -> String) {
    row.values_mut().for_each(|d| rename_datum(d, f));
}

fn rename_atom(a: Atom, f: &mut dyn FnMut(&str) -> String) -> Atom {
    match a {
        Atom::NamedUuid(n) => Atom::NamedUuid(f(&n)),
        a => a,
    }
}

/// Datums are sorted sets and maps, so a renamed atom is re-inserted rather than edited in place;
/// datums without named UUIDs (nearly all) are left alone.
fn rename_datum(d: &mut Datum, f: &mut dyn FnMut(&str) -> String) {
    let named = |a: &Atom| matches!(a, Atom::NamedUuid(_));
    match d {
        Datum::Set(s) if s.iter().any(named) => {
            *s = std::mem::take(s)
                .into_iter()
                .map(|a| rename_atom(a, f))
                .collect();
        }
        Datum::Map(m) if m.iter().any(|(k, v)| named(k) || named(v)) => {
            *m = std::mem::take(m)
                .into_iter()
                .map(|(k, v)| (rename_atom(k, f), rename_atom(v, f)))
                .collect();
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Condition, Mutation};

    #[test]
    fn renames_every_named_uuid() {
        let mut t = Transaction::new("db");
        let a = t.insert(
            "T",
            Row::from([(
                "m".to_string(),
                Datum::map([(Atom::string("named-uuid"), Atom::string("row0"))]),
            )]),
        );
        t.insert(
            "T",
            Row::from([("r".to_string(), Datum::scalar(Atom::NamedUuid(a.clone())))]),
        );
        t.mutate(
            "T",
            vec![Condition::includes(
                "r",
                Datum::scalar(Atom::NamedUuid(a.clone())),
            )],
            vec![Mutation::insert(
                "s",
                Datum::set([Atom::NamedUuid(a.clone())]),
            )],
        );
        rename_txn(&mut t, &mut |n| format!("b7_{n}"));
        let p = t.to_params().to_string();
        assert!(p.contains(r#""uuid-name":"b7_row0""#), "{p}");
        assert!(p.contains(r#""uuid-name":"b7_row1""#), "{p}");
        assert_eq!(p.matches(r#"["named-uuid","b7_row0"]"#).count(), 3, "{p}");
        // A string-valued map pair that looks like a named UUID is data, not a reference.
        assert!(p.contains(r#"["named-uuid","row0"]"#), "{p}");
    }
}
