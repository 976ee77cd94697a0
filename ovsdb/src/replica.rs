//! A self-healing, monitored connection to one database: it picks a usable server from the remote
//! list (the raft leader when asked), checks the schema, replicates the database into a
//! [`CacheData`] with one `monitor_cond_since`, and on any disconnect or leader change reconnects
//! and resumes from the last transaction id, falling back to a full resync that replaces the
//! cache atomically. Reconcilers read the cache and subscribe to its change stream.

use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::batch::{BatchConfig, Batcher};
use crate::cache::{CacheData, ChangeBatch, DecodedUpdates};
use crate::client::Client;
use crate::connection::{Limits, Notification, Timeouts};
use crate::error::{Error, Result};
use crate::ops::{Condition, Transaction, TxnOutcome};
use crate::schema::DatabaseSchema;
use crate::transport::{Remote, TlsFiles};

const DB_MONITOR: &str = "db";
const SERVER_MONITOR: &str = "server";

/// What to replicate and from where.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub remotes: Vec<Remote>,
    pub tls: Option<TlsFiles>,
    pub db: String,
    /// The schema this client is built for (normally a shipped one); the server's must serve it.
    pub expected_schema: Option<DatabaseSchema>,
    /// Tables to replicate; empty means every table of the server's schema.
    pub tables: Vec<String>,
    /// `external_ids` keys to index in every table.
    pub external_id_keys: Vec<String>,
    /// Only use a raft cluster's leader (writes then never bounce through a follower).
    pub leader_only: bool,
    pub timeouts: Timeouts,
    /// Memory bounds of each connection.
    pub limits: Limits,
    /// Longest pause between rounds of reconnect attempts.
    pub max_backoff: Duration,
}

impl ReplicaConfig {
    pub fn new(remotes: Vec<Remote>, db: impl Into<String>) -> ReplicaConfig {
        ReplicaConfig {
            remotes,
            tls: None,
            db: db.into(),
            expected_schema: None,
            tables: Vec::new(),
            external_id_keys: Vec::new(),
            leader_only: true,
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// The replica's connection state, observable by health checks.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplicaState {
    Connecting,
    /// Synced with this server; the cache is current.
    Synced {
        remote: String,
        resyncs: u64,
    },
    /// Not usable until the configuration changes (e.g. an incompatible schema).
    Failed(String),
}

struct Shared {
    cache: RwLock<CacheData>,
    changes: broadcast::Sender<Arc<ChangeBatch>>,
    client: watch::Sender<Option<Client>>,
    state: watch::Sender<ReplicaState>,
    /// (connection id, notifications of that connection applied to the cache).
    applied: watch::Sender<(usize, u64)>,
    /// The group-commit front end of the current connection (by connection id).
    batcher: Mutex<Option<(usize, Batcher)>>,
}

/// Handle to a running replica; dropping the last handle stops it.
#[derive(Clone)]
pub struct Replica {
    shared: Arc<Shared>,
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
    db: String,
    timeouts: Timeouts,
}

impl Replica {
    /// Starts replicating and waits (bounded by `wait`) for the first full sync.
    pub async fn start(cfg: ReplicaConfig, wait: Duration) -> Result<Replica> {
        if cfg.remotes.is_empty() {
            return Err(Error::BadRemote(String::new()));
        }
        let (changes, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            cache: RwLock::new(CacheData::default()),
            changes,
            client: watch::channel(None).0,
            state: watch::channel(ReplicaState::Connecting).0,
            applied: watch::channel((0, 0)).0,
            batcher: Mutex::new(None),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let r = Replica {
            shared: shared.clone(),
            _stop: Arc::new(stop_tx),
            db: cfg.db.clone(),
            timeouts: cfg.timeouts.clone(),
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = run(cfg, shared) => {}
                _ = stop_rx => {}
            }
        });
        r.wait_synced(wait).await?;
        Ok(r)
    }

    /// A consistent view of the whole replica; hold it briefly (it blocks updates).
    pub fn cache(&self) -> RwLockReadGuard<'_, CacheData> {
        self.shared.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Every change applied from now on, one batch per server transaction or resync.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeBatch>> {
        // Under the cache lock: an update is applied either before (and in the cache a
        // subscriber reads next) or after (and sent to it), never unobserved in between.
        let _cache = self.cache();
        self.shared.changes.subscribe()
    }

    pub fn state(&self) -> ReplicaState {
        self.shared.state.borrow().clone()
    }

    /// Waits until the replica is synced, or fails with the reason it cannot be.
    pub async fn wait_synced(&self, limit: Duration) -> Result<()> {
        let mut rx = self.shared.state.subscribe();
        let r = tokio::time::timeout(limit, async {
            loop {
                match &*rx.borrow_and_update() {
                    ReplicaState::Synced { .. } => return Ok(()),
                    ReplicaState::Failed(m) => return Err(Error::NoServer(m.clone())),
                    ReplicaState::Connecting => {}
                }
                if rx.changed().await.is_err() {
                    return Err(Error::Closed);
                }
            }
        })
        .await;
        r.unwrap_or_else(|_| {
            Err(Error::Timeout {
                what: format!("syncing {}", self.db),
                after: limit,
            })
        })
    }

    /// Runs a transaction on the current server. A lost connection is returned as
    /// [`Error::Disconnected`]: the outcome is unknown and the caller decides whether a retry is
    /// safe (guard creates with `wait` so a retry cannot apply twice).
    ///
    /// Read-your-writes: when it returns, the cache already reflects the transaction (the
    /// server sends a transaction's monitor updates before its reply, and this waits until the
    /// replica has applied everything that arrived before the reply), so a reconciler that
    /// re-plans from the cache right away never writes the same change twice.
    pub async fn transact(&self, txn: &Transaction) -> Result<TxnOutcome> {
        let client = self.current_client(self.timeouts.connect).await?;
        let out = client.transact(txn).await?;
        self.caught_up(&client).await;
        Ok(out)
    }

    /// [`Replica::transact`] through a group-commit [`Batcher`] on the current connection:
    /// concurrent callers' independent transactions (a controller's many pods) go to the server
    /// together, each caller still getting its own outcome and errors, and the same
    /// read-your-writes guarantee.
    pub async fn transact_batched(&self, txn: Transaction) -> Result<TxnOutcome> {
        let client = self.current_client(self.timeouts.connect).await?;
        let id = client.connection().id();
        let batcher = {
            let mut current = self
                .shared
                .batcher
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match &*current {
                Some((at, b)) if *at == id => b.clone(),
                _ => {
                    let config = BatchConfig {
                        request_timeout: self.timeouts.request,
                        ..BatchConfig::default()
                    };
                    let b = Batcher::new(client.clone(), self.db.clone(), config);
                    *current = Some((id, b.clone()));
                    b
                }
            }
        };
        let out = batcher.submit(txn).await?;
        self.caught_up(&client).await;
        Ok(out)
    }

    /// Waits until the cache holds every update the connection received so far (a reply's
    /// updates come before it).
    async fn caught_up(&self, client: &Client) {
        let conn = client.connection();
        let (id, target) = (conn.id(), conn.notifications_delivered());
        let mut applied = self.shared.applied.subscribe();
        // A reconnect meanwhile means a resync, which brings the cache up to date anyway.
        let _ = tokio::time::timeout(
            self.timeouts.request,
            applied.wait_for(|(conn, n)| *conn != id || *n >= target),
        )
        .await;
    }

    async fn current_client(&self, limit: Duration) -> Result<Client> {
        let mut rx = self.shared.client.subscribe();
        let r = tokio::time::timeout(limit, async {
            loop {
                if let Some(c) = rx.borrow_and_update().clone() {
                    if !c.connection().is_closed() {
                        return Ok(c);
                    }
                }
                if rx.changed().await.is_err() {
                    return Err(Error::Closed);
                }
            }
        })
        .await;
        r.unwrap_or_else(|_| {
            Err(Error::Disconnected {
                remote: "no connected server".into(),
                reason: format!("none reconnected within {limit:?}"),
            })
        })
    }
}

async fn run(cfg: ReplicaConfig, shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(100);
    let mut next = 0usize;
    let mut resyncs = 0u64;
    loop {
        let mut any_synced = false;
        for i in 0..cfg.remotes.len() {
            let remote = &cfg.remotes[(next + i) % cfg.remotes.len()];
            match session(&cfg, remote, &shared, &mut resyncs).await {
                Ok(()) => any_synced = true,
                Err(Error::IncompatibleSchema { db, problems }) => {
                    let m = format!("{db}: {}", problems.join("; "));
                    tracing::error!(%remote, "{m}");
                    shared.state.send_replace(ReplicaState::Failed(m));
                }
                Err(e) => tracing::info!(%remote, error = %e, "ovsdb session ended"),
            }
            shared.client.send_replace(None);
            if !matches!(*shared.state.borrow(), ReplicaState::Failed(_)) {
                shared.state.send_replace(ReplicaState::Connecting);
            }
            if any_synced {
                // Try the next server first: the one we just lost is the likeliest to be down.
                next = (next + i + 1) % cfg.remotes.len();
                break;
            }
        }
        if any_synced {
            backoff = Duration::from_millis(100);
            continue;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(cfg.max_backoff);
    }
}

/// One connection's life: returns `Ok` if it got synced before ending.
async fn session(
    cfg: &ReplicaConfig,
    remote: &Remote,
    shared: &Shared,
    resyncs: &mut u64,
) -> Result<()> {
    let (client, mut notes) =
        Client::connect_with_limits(remote, cfg.tls.as_ref(), &cfg.timeouts, &cfg.limits).await?;
    let dbs = client.list_dbs().await?;
    if !dbs.contains(&cfg.db) {
        return Err(Error::UnknownDatabase(cfg.db.clone()));
    }
    let schema = client.get_schema(&cfg.db).await?;
    if let Some(expected) = &cfg.expected_schema {
        let problems = expected.incompatibilities(&schema);
        if !problems.is_empty() {
            return Err(Error::IncompatibleSchema {
                db: cfg.db.clone(),
                problems,
            });
        }
    }
    let clustered = if dbs.iter().any(|d| d == "_Server") {
        let row = server_row(&client, &cfg.db).await?;
        if !usable(&row, cfg.leader_only) {
            return Err(Error::NoServer(format!("{remote} is not the leader")));
        }
        row.get("model").and_then(Value::as_str) == Some("clustered")
    } else {
        false
    };
    if clustered {
        // Follow leadership and cluster membership: the server tells us when it stops leading.
        client
            .monitor_cond(
                "_Server",
                &json!(SERVER_MONITOR),
                json!({"Database": [{"columns": ["name", "model", "connected", "leader"],
                    "where": [["name", "==", cfg.db]]}]}),
            )
            .await?;
    }

    let tables: Vec<String> = if cfg.tables.is_empty() {
        schema.tables.keys().cloned().collect()
    } else {
        cfg.tables
            .iter()
            .filter(|t| schema.tables.contains_key(*t))
            .cloned()
            .collect()
    };
    let requests: serde_json::Map<String, Value> = tables
        .iter()
        .map(|t| {
            let cols: Vec<&String> = schema.tables[t].columns.keys().collect();
            (t.clone(), json!([{ "columns": cols }]))
        })
        .collect();
    let last = shared
        .cache
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .last_txn_id;
    let reply = tokio::time::timeout(
        cfg.timeouts.request,
        client.monitor_cond_since_decoded(
            &cfg.db,
            &json!(DB_MONITOR),
            Value::Object(requests),
            last,
            &schema,
        ),
    )
    .await
    .map_err(|_| Error::Timeout {
        what: "initial monitor".into(),
        after: cfg.timeouts.request,
    })??;
    let resumed = reply.found && last.is_some();
    let batch = {
        let mut cache = shared.cache.write().unwrap_or_else(|p| p.into_inner());
        if resumed {
            let txn = reply.last_txn_id;
            let b = cache.apply_since_reply(reply)?;
            cache.last_txn_id = Some(txn);
            b
        } else {
            let mut fresh = if cache.table_names().next().is_none() {
                CacheData::new(&tables, &cfg.external_id_keys)
            } else {
                cache.empty_like()
            };
            let txn = reply.last_txn_id;
            fresh.apply_since_reply(reply)?;
            fresh.last_txn_id = (!txn.is_nil()).then_some(txn);
            *resyncs += 1;
            cache.replace_with(fresh)
        }
    };
    // Before the connection is published: a writer's read-your-writes wait must count this
    // connection's notifications from the first write on (with the previous connection's id
    // still there it would not wait at all).
    let conn_id = client.connection().id();
    let mut applied = 0u64;
    shared.applied.send_replace((conn_id, applied));
    // Publish the connection before the changes, so reconcilers woken by them can write.
    shared.client.send_replace(Some(client.clone()));
    shared.state.send_replace(ReplicaState::Synced {
        remote: remote.to_string(),
        resyncs: *resyncs,
    });
    if !batch.changes.is_empty() {
        let _ = shared.changes.send(Arc::new(batch));
    }
    tracing::info!(%remote, db = %cfg.db, resumed, "ovsdb replica synced");

    while let Some(n) = notes.recv().await {
        handle(cfg, &schema, shared, &n)?;
        applied += 1;
        shared.applied.send_replace((conn_id, applied));
    }
    Ok(())
}

fn handle(
    cfg: &ReplicaConfig,
    schema: &DatabaseSchema,
    shared: &Shared,
    n: &Notification,
) -> Result<()> {
    let p = &n.params;
    match (n.method.as_str(), p.get(0).and_then(Value::as_str)) {
        ("update3", Some(DB_MONITOR)) => {
            let txn = p
                .get(1)
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok());
            let updates = p.get(2).unwrap_or(&Value::Null);
            let decoded = DecodedUpdates::decode(schema, updates)?;
            let mut cache = shared.cache.write().unwrap_or_else(|e| e.into_inner());
            let watched = shared.changes.receiver_count() > 0;
            let batch = if watched {
                Some(cache.apply_decoded(decoded)?)
            } else {
                cache.apply_decoded_unobserved(decoded)?;
                None
            };
            if txn.is_some_and(|t| !t.is_nil()) {
                cache.last_txn_id = txn;
            }
            drop(cache);
            if let Some(batch) = batch {
                let _ = shared.changes.send(Arc::new(batch));
            }
        }
        ("update2", Some(SERVER_MONITOR)) => {
            let rows = p
                .get(1)
                .and_then(|u| u.get("Database"))
                .and_then(Value::as_object);
            for ru in rows.into_iter().flat_map(|r| r.values()) {
                let row = ru
                    .get("modify")
                    .or_else(|| ru.get("insert"))
                    .or_else(|| ru.get("initial"));
                let leader = row.and_then(|r| r.get("leader")).and_then(Value::as_bool);
                let connected = row
                    .and_then(|r| r.get("connected"))
                    .and_then(Value::as_bool);
                if (cfg.leader_only && leader == Some(false))
                    || connected == Some(false)
                    || ru.get("delete").is_some()
                {
                    return Err(Error::NoServer(
                        "server lost leadership or left the cluster".into(),
                    ));
                }
            }
        }
        ("update2", _) => {}
        (m, _) => tracing::debug!(method = m, "ignored notification"),
    }
    Ok(())
}

async fn server_row(client: &Client, db: &str) -> Result<serde_json::Map<String, Value>> {
    let mut t = Transaction::new("_Server");
    t.select("Database", vec![Condition::eq("name", db)]);
    let out = client.transact(&t).await?;
    out.results
        .first()
        .and_then(|r| r.rows.as_ref())
        .and_then(|rows| rows.first())
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| Error::UnknownDatabase(db.to_string()))
}

fn usable(row: &serde_json::Map<String, Value>, leader_only: bool) -> bool {
    if row.get("model").and_then(Value::as_str) != Some("clustered") {
        return true;
    }
    let connected = row
        .get("connected")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let leader = row.get("leader").and_then(Value::as_bool).unwrap_or(false);
    connected && (leader || !leader_only)
}
