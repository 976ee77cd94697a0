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
//! * Inside a merged transaction members run in submission order (the order of the
//!   [`Batcher::submit`] calls), so each member sees the effects of the members before it, exactly
//!   as if they had been committed one after another. Checks OVSDB makes at commit time
//!   (referential integrity, unique indexes, set sizes) apply to the combined result; members
//!   that are independent, as the contract requires, cannot tell the difference.
//!
//! Coalescing. N controllers' ports in one merged transaction carry N `mutate`s that each add one
//! port to the same switch's `ports`. ovsdb-server executes every mutate as a copy and union of
//! the whole column, so those N mutates cost as much as the N inserts (a one-transaction run with
//! N mutates is half as fast as with one). Mutates are therefore sent as one wherever that cannot
//! be told apart from running them in submission order:
//!
//! * Which: mutates with a single mutation, `insert` or `delete`, on the same table with exactly
//!   equal `where` clauses (same conditions, same order) and the same column, which that `where`
//!   does not read. The one mutate carries the union of their values. Inserting into a set is a
//!   union in any order, and deleting only removes; but a map insert keeps the value of a key
//!   already present, so map values that give one key two different values are not united (nor
//!   set values with map values).
//! * Where: at the position of the last of them, so every earlier one moves later, past the
//!   operations in between. It may only do so if none of those could notice, and any one of them
//!   that could ends the group (the next such mutate starts a new one): an insert into or a
//!   delete from the table (either changes which rows the `where` matches, and so the count), a
//!   select or wait that reads the column or `_version` (a select without a column list reads
//!   everything), an update or mutate that writes the column or a column the `where` reads, or a
//!   mutate of the same column that does not commute with it (insert against delete, any map
//!   insert). Rows cannot be told apart without the data, so an operation on the same table with
//!   another `where` counts as touching the same rows. Operations on other tables cannot change
//!   this table's rows inside a transaction (references are checked, and weak references
//!   removed, only at commit), so they never end a group. When in doubt, nothing is merged.
//! * Named UUIDs: each member's are renamed `b<member>_<name>` first, so the union keeps every
//!   member's references distinct (and a `where` naming a member's own new row never equals
//!   another member's). A merged mutate only moves later, so a row it references that was
//!   inserted before it still is.
//! * Results: each merged member gets the merged mutate's own result, `{"count": n}`. `n` counts
//!   the rows the `where` matched, and nothing between the members' positions could change which
//!   rows match, so it is the count each of them would have got in submission order.
//! * Errors: ovsdb-server checks a column's size limits after every mutation. Inserts only grow
//!   the column and deletes only shrink it, so if the merged mutate fits, so did every step of
//!   the separate ones. The reverse can fail: an inserted value larger than the column allows is
//!   refused even where no row matches, where the separate inserts would each have matched
//!   nothing and succeeded. That costs a re-run, not a wrong result: a merged transaction that
//!   fails for any reason is re-run member by member, with each member's own operations as
//!   submitted, so an error reaches only the member that caused it.
//! * [`BatchConfig::max_ops`] counts operations as submitted, before coalescing: coalescing
//!   removes mutates but not the rows and values they carry, which are what make a transaction
//!   long to execute and large to send.

mod coalesce;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::client::Client;
use crate::connection::{PendingReply, Timeouts};
use crate::datum::{Atom, Datum, Row};
use crate::error::{Error, Result};
use crate::ops::{Operation, Transaction, TxnOutcome};

/// How a [`Batcher`] groups transactions.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Most operations in one merged transaction, counted as submitted (before coalescing). It
    /// bounds how long one transaction holds the server and how large its request and reply get.
    /// A member this large is sent alone.
    ///
    /// The default, 2,000, comes from `ovsdb-bench` (10,000 ports on one switch, 2 cores): it was
    /// as fast as 5,000 or 10,000 on an idle machine and held up better when other processes
    /// competed for the CPU, because smaller batches keep the client's encoding and the server's
    /// execution overlapping. Much smaller ones pay more per-transaction cost: every commit
    /// rewrites the rows it mutates, such as the switch's whole `ports` set.
    pub max_ops: usize,
    /// Merged transactions on the wire at once. Two keeps the server busy while the client
    /// builds the next request and parses the previous reply; more only adds latency (three
    /// measured no faster in `ovsdb-bench`).
    pub max_in_flight: usize,
    /// How long to wait for the reply to one merged transaction.
    pub request_timeout: Duration,
    /// Transactions waiting to be sent. Past it, [`Batcher::submit`] fails at once with
    /// [`Error::Overloaded`] instead of letting the queue grow: callers run far ahead of the
    /// server. The default is far above what the controller's bounded workers can queue.
    pub max_queued: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_ops: 2_000,
            max_in_flight: 2,
            request_timeout: Timeouts::default().request,
            max_queued: 65_536,
        }
    }
}

/// What a [`Batcher`] has done so far: whether group commit and coalescing actually happen under
/// a given load, and how often a refused merged transaction costs a re-run of its members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Merged transactions sent (members sent alone are not counted).
    pub merged: u64,
    /// Members those carried.
    pub members: u64,
    /// Operations those members submitted.
    pub ops_submitted: u64,
    /// Operations sent for them once coalesced.
    pub ops_sent: u64,
    /// Merged transactions the server refused, whose members were then re-run alone.
    pub fallbacks: u64,
}

#[derive(Default)]
struct Counters {
    merged: AtomicU64,
    members: AtomicU64,
    ops_submitted: AtomicU64,
    ops_sent: AtomicU64,
    fallbacks: AtomicU64,
}

struct Job {
    txn: Transaction,
    reply: oneshot::Sender<Result<TxnOutcome>>,
}

/// Group-commit front end of a [`Client`] for one database. Cloning shares the queue; the
/// background task ends when the last clone is dropped.
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Job>,
    counters: Arc<Counters>,
}

impl Batcher {
    /// Starts the background task that sends batches for `db` over `client`.
    pub fn new(client: Client, db: impl Into<String>, config: BatchConfig) -> Batcher {
        let (queue, rx) = mpsc::channel(config.max_queued.max(1));
        let counters = Arc::new(Counters::default());
        let engine = Engine {
            client,
            db: db.into(),
            config: BatchConfig {
                max_ops: config.max_ops.max(1),
                max_in_flight: config.max_in_flight.max(1),
                ..config
            },
            counters: counters.clone(),
        };
        tokio::spawn(engine.run(rx));
        Batcher { queue, counters }
    }

    /// Runs `txn`, possibly merged with other callers' transactions, and returns its own
    /// results with its own named UUIDs. Errors are those a lone `transact` would give;
    /// [`Error::Disconnected`] and [`Error::Timeout`] mean the outcome is unknown.
    ///
    /// `txn` is queued by this call, not when the future is first polled, so the order of calls
    /// is the order members run in, even for a caller that starts several before awaiting any.
    pub fn submit(
        &self,
        txn: Transaction,
    ) -> impl Future<Output = Result<TxnOutcome>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let queued = match self.queue.try_send(Job { txn, reply }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(Error::Overloaded(format!(
                "batcher queue over {} transactions: submitted faster than the server commits",
                self.queue.max_capacity()
            ))),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Error::Closed),
        };
        async move {
            queued?;
            rx.await.unwrap_or(Err(Error::Closed))
        }
    }

    /// A snapshot of the counters, shared by every clone.
    pub fn stats(&self) -> BatchStats {
        let c = &self.counters;
        BatchStats {
            merged: c.merged.load(Ordering::Relaxed),
            members: c.members.load(Ordering::Relaxed),
            ops_submitted: c.ops_submitted.load(Ordering::Relaxed),
            ops_sent: c.ops_sent.load(Ordering::Relaxed),
            fallbacks: c.fallbacks.load(Ordering::Relaxed),
        }
    }
}

struct Engine {
    client: Client,
    db: String,
    config: BatchConfig,
    counters: Arc<Counters>,
}

impl Engine {
    /// Takes whatever is queued once a send slot is free, so batches grow exactly as large as
    /// the server's latency makes them: an idle server gets each transaction at once.
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
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
            let c = &this.counters;
            c.merged.fetch_add(1, Ordering::Relaxed);
            c.members
                .fetch_add(merged.jobs.len() as u64, Ordering::Relaxed);
            c.ops_submitted.fetch_add(ops as u64, Ordering::Relaxed);
            c.ops_sent
                .fetch_add(merged.plan.wire.len() as u64, Ordering::Relaxed);
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

    async fn await_outcome(&self, txn: &Transaction, rx: PendingReply) -> Result<TxnOutcome> {
        let reply = self
            .client
            .connection()
            .await_reply("transact", rx, self.config.request_timeout)
            .await?;
        txn.parse_reply(&reply)
    }

    async fn finish(&self, merged: Merged, rx: Result<PendingReply>) {
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
        self.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
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
        Error::Disconnected { remote, reason } => Error::Disconnected {
            remote: remote.clone(),
            reason: reason.clone(),
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

/// Members of one merged transaction, each with the prefix given to its named UUIDs, and how
/// their operations go on the wire.
struct Merged {
    jobs: Vec<(Job, String)>,
    plan: coalesce::Plan,
}

impl Merged {
    /// Renames each member's named UUIDs to `b<member>_<name>`: names are only unique within a
    /// transaction, and every member of a batch tends to use the same `row0`, `row1`, ….
    /// `b<digits>_` is unambiguous, so renamed names of different members never collide.
    /// Coalescing is planned on the renamed operations, so merged values keep them apart too.
    fn build(jobs: Vec<Job>) -> Merged {
        let jobs: Vec<(Job, String)> = jobs
            .into_iter()
            .enumerate()
            .map(|(i, mut job)| {
                let prefix = format!("b{i}_");
                rename_txn(&mut job.txn, &mut |n| format!("{prefix}{n}"));
                (job, prefix)
            })
            .collect();
        let plan = coalesce::plan(&flat_ops(&jobs));
        Merged { jobs, plan }
    }

    fn params(&self, db: &str) -> Value {
        let ops = flat_ops(&self.jobs);
        let mut p = Vec::with_capacity(self.plan.wire.len() + 1);
        p.push(Value::String(db.to_string()));
        p.extend(self.plan.wire.iter().map(|w| match w {
            coalesce::Wire::Op(i) => ops[*i].to_json(),
            coalesce::Wire::Coalesced(op) => op.to_json(),
        }));
        Value::Array(p)
    }

    /// Hands each member the results of its own operations (a coalesced mutate's result to each
    /// of its members), with its named UUIDs under their original names. Returns the batch
    /// untouched if the transaction failed as a whole.
    fn split(self, reply: Value) -> std::result::Result<(), Merged> {
        let total = self.plan.wire.len();
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
        let mut result_of = self.plan.result_of.iter();
        for (job, prefix) in self.jobs {
            let mine: Vec<Value> = result_of
                .by_ref()
                .take(job.txn.ops.len())
                .map(|&w| results[w].clone())
                .collect();
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

/// The members' operations in submission order, as [`coalesce::plan`] indexes them.
fn flat_ops(jobs: &[(Job, String)]) -> Vec<&Operation> {
    jobs.iter().flat_map(|(j, _)| &j.txn.ops).collect()
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
                "m",
                Datum::map([(Atom::string("named-uuid"), Atom::string("row0"))]),
            )]),
        );
        t.insert(
            "T",
            Row::from([("r", Datum::scalar(Atom::NamedUuid(a.clone())))]),
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
