//! The RFC 7047 methods over one [`Connection`], plus the extensions ovsdb-server adds
//! (`monitor_cond`, `monitor_cond_since`, `monitor_cond_change`, `set_db_change_aware`).

use serde_json::{json, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::connection::{Connection, Limits, Notification, Timeouts};
use crate::error::{Error, Result};
use crate::ops::{Transaction, TxnOutcome};
use crate::schema::DatabaseSchema;
use crate::transport::{Remote, TlsFiles};

/// What `monitor_cond_since` answers: whether the server could resume from our last transaction,
/// the newest transaction id, and the updates (only the missed ones when `found`).
#[derive(Debug, Clone)]
pub struct SinceReply {
    pub found: bool,
    pub last_txn_id: Uuid,
    pub updates: Value,
}

/// A protocol-level client: every method is one request with a timeout. Reconnection, leader
/// following and caching are layered above it.
#[derive(Clone)]
pub struct Client {
    conn: Connection,
}

impl Client {
    /// Connects to one remote; notifications (monitor updates, lock changes) arrive on the receiver.
    pub async fn connect(
        remote: &Remote,
        tls: Option<&TlsFiles>,
        timeouts: &Timeouts,
    ) -> Result<(Client, mpsc::Receiver<Notification>)> {
        Self::connect_with_limits(remote, tls, timeouts, &Limits::default()).await
    }

    /// [`Client::connect`] with memory bounds other than the defaults.
    pub async fn connect_with_limits(
        remote: &Remote,
        tls: Option<&TlsFiles>,
        timeouts: &Timeouts,
        limits: &Limits,
    ) -> Result<(Client, mpsc::Receiver<Notification>)> {
        let (conn, notes) = Connection::open_with_limits(remote, tls, timeouts, limits).await?;
        Ok((Client { conn }, notes))
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub async fn echo(&self) -> Result<()> {
        self.conn.request("echo", json!([])).await.map(|_| ())
    }

    pub async fn list_dbs(&self) -> Result<Vec<String>> {
        let v = self.conn.request("list_dbs", json!([])).await?;
        serde_json::from_value(v).map_err(|e| Error::Protocol(format!("list_dbs reply: {e}")))
    }

    pub async fn get_schema(&self, db: &str) -> Result<DatabaseSchema> {
        let v = self
            .conn
            .request("get_schema", json!([db]))
            .await
            .map_err(|e| match e {
                Error::Rpc { ref error, .. }
                    if error.get("error").and_then(Value::as_str) == Some("unknown database") =>
                {
                    Error::UnknownDatabase(db.to_string())
                }
                e => e,
            })?;
        Ok(DatabaseSchema::from_json(&v)?)
    }

    /// Runs a transaction; a refused one is [`Error::Transaction`] with OVSDB's error and details.
    pub async fn transact(&self, txn: &Transaction) -> Result<TxnOutcome> {
        let reply = self.conn.request("transact", txn.to_params()).await?;
        txn.parse_reply(&reply)
    }

    /// Sends a transaction without waiting, so many can be in flight on one connection. The
    /// returned future waits for the outcome within the connection's request timeout.
    pub fn transact_pipelined(
        &self,
        txn: Transaction,
    ) -> Result<impl std::future::Future<Output = Result<TxnOutcome>> + Send + 'static> {
        let rx = self.conn.send_request("transact", txn.to_params())?;
        let conn = self.conn.clone();
        let timeout = conn.request_timeout();
        Ok(async move {
            let reply = conn.await_reply("transact", rx, timeout).await?;
            txn.parse_reply(&reply)
        })
    }

    /// RFC 7047 `monitor`: returns the initial contents as `update` table-updates.
    pub async fn monitor(&self, db: &str, monitor_id: &Value, requests: Value) -> Result<Value> {
        self.conn
            .request("monitor", json!([db, monitor_id, requests]))
            .await
    }

    /// `monitor_cond`: conditional monitoring with `update2` notifications.
    pub async fn monitor_cond(
        &self,
        db: &str,
        monitor_id: &Value,
        requests: Value,
    ) -> Result<Value> {
        self.conn
            .request("monitor_cond", json!([db, monitor_id, requests]))
            .await
    }

    /// `monitor_cond_since`: resumes from `last_txn_id` when the server still has the history,
    /// with `update3` notifications afterwards.
    pub async fn monitor_cond_since(
        &self,
        db: &str,
        monitor_id: &Value,
        requests: Value,
        last_txn_id: Option<Uuid>,
    ) -> Result<SinceReply> {
        let last = last_txn_id.unwrap_or_else(Uuid::nil).to_string();
        let v = self
            .conn
            .request(
                "monitor_cond_since",
                json!([db, monitor_id, requests, last]),
            )
            .await?;
        let shape = |v: &Value| -> Option<(bool, Uuid)> {
            let a = v.as_array().filter(|a| a.len() == 3)?;
            let last = a[1].as_str().and_then(|s| Uuid::parse_str(s).ok())?;
            Some((a[0].as_bool()?, last))
        };
        let Some((found, last_txn_id)) = shape(&v) else {
            return Err(Error::Protocol(format!("monitor_cond_since reply: {v}")));
        };
        // Moved, not copied: on a first sync this is the whole database.
        let updates = match v {
            Value::Array(mut a) => a.pop().unwrap_or(Value::Null),
            _ => Value::Null,
        };
        Ok(SinceReply {
            found,
            last_txn_id,
            updates,
        })
    }

    /// `monitor_cond_since`, with the reply decoded straight into cache rows against `schema`
    /// (see [`crate::cache::DecodedSinceReply`]): what a replica uses, since a first sync's reply is
    /// the whole database.
    pub async fn monitor_cond_since_decoded(
        &self,
        db: &str,
        monitor_id: &Value,
        requests: Value,
        last_txn_id: Option<Uuid>,
        schema: &crate::schema::DatabaseSchema,
    ) -> Result<crate::cache::DecodedSinceReply> {
        let last = last_txn_id.unwrap_or_else(Uuid::nil).to_string();
        let timeout = self.conn.request_timeout();
        let frame = self
            .conn
            .request_raw(
                "monitor_cond_since",
                json!([db, monitor_id, requests, last]),
                timeout,
            )
            .await?;
        crate::cache::DecodedSinceReply::decode(schema, &frame)
    }

    /// `monitor_cond_change`: replaces the conditions of a running conditional monitor.
    pub async fn monitor_cond_change(
        &self,
        monitor_id: &Value,
        new_monitor_id: &Value,
        requests: Value,
    ) -> Result<()> {
        self.conn
            .request(
                "monitor_cond_change",
                json!([monitor_id, new_monitor_id, requests]),
            )
            .await
            .map(|_| ())
    }

    pub async fn monitor_cancel(&self, monitor_id: &Value) -> Result<()> {
        self.conn
            .request("monitor_cancel", json!([monitor_id]))
            .await
            .map(|_| ())
    }

    /// Asks for a lock; `true` when granted now, otherwise a `locked` notification follows later.
    pub async fn lock(&self, lock: &str) -> Result<bool> {
        let v = self.conn.request("lock", json!([lock])).await?;
        Ok(v.get("locked").and_then(Value::as_bool).unwrap_or(false))
    }

    /// Takes a lock from its owner, who gets a `stolen` notification.
    pub async fn steal(&self, lock: &str) -> Result<bool> {
        let v = self.conn.request("steal", json!([lock])).await?;
        Ok(v.get("locked").and_then(Value::as_bool).unwrap_or(false))
    }

    pub async fn unlock(&self, lock: &str) -> Result<()> {
        self.conn.request("unlock", json!([lock])).await.map(|_| ())
    }

    /// Asks the server to tell us of schema changes and database removal instead of closing.
    pub async fn set_db_change_aware(&self, aware: bool) -> Result<()> {
        self.conn
            .request("set_db_change_aware", json!([aware]))
            .await
            .map(|_| ())
    }

    /// Cancels an outstanding request (RFC 7047 §4.1.4): used for long `wait` operations.
    pub fn cancel(&self, request_id: u64) -> Result<()> {
        self.conn.notify("cancel", json!([request_id]))
    }
}
