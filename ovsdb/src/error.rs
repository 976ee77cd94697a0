//! Error types. Transaction failures keep OVSDB's own `error` and `details` strings so callers can
//! tell a constraint violation from a lost leader without parsing text.

use std::time::Duration;

use serde_json::Value;

/// A value that does not fit its column type or OVSDB's encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DatumError(pub String);

impl DatumError {
    pub fn new(m: impl Into<String>) -> Self {
        DatumError(m.into())
    }
}

/// A schema document that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schema: {0}")]
pub struct SchemaError(pub String);

impl SchemaError {
    pub fn new(m: impl Into<String>) -> Self {
        SchemaError(m.into())
    }
}

/// The error classes RFC 7047 §4.1.3 and ovsdb-server define for transaction results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnErrorKind {
    ReferentialIntegrity,
    ConstraintViolation,
    ResourcesExhausted,
    Io,
    DuplicateUuidName,
    DomainError,
    RangeError,
    TimedOut,
    NotSupported,
    Aborted,
    NotOwner,
    NotLeader,
    /// Any other error string, kept verbatim in [`TxnError::error`].
    Other,
}

impl TxnErrorKind {
    pub fn from_error(s: &str) -> TxnErrorKind {
        match s {
            "referential integrity violation" => TxnErrorKind::ReferentialIntegrity,
            "constraint violation" => TxnErrorKind::ConstraintViolation,
            "resources exhausted" => TxnErrorKind::ResourcesExhausted,
            "I/O error" => TxnErrorKind::Io,
            "duplicate uuid-name" => TxnErrorKind::DuplicateUuidName,
            "domain error" => TxnErrorKind::DomainError,
            "range error" => TxnErrorKind::RangeError,
            "timed out" => TxnErrorKind::TimedOut,
            "not supported" => TxnErrorKind::NotSupported,
            "aborted" => TxnErrorKind::Aborted,
            "not owner" => TxnErrorKind::NotOwner,
            "not leader" => TxnErrorKind::NotLeader,
            _ => TxnErrorKind::Other,
        }
    }
}

/// A transaction the server refused. Nothing of it was committed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("transaction failed{}: {error}{}", op_index.map(|i| format!(" at operation {i}")).unwrap_or_default(), details.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
pub struct TxnError {
    pub kind: TxnErrorKind,
    pub error: String,
    pub details: Option<String>,
    /// The operation that failed; `None` when the commit itself failed (e.g. a constraint checked
    /// at commit time).
    pub op_index: Option<usize>,
}

impl TxnError {
    pub fn from_json(v: &Value, op_index: Option<usize>) -> TxnError {
        let error = v
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        TxnError {
            kind: TxnErrorKind::from_error(&error),
            error,
            details: v.get("details").and_then(Value::as_str).map(str::to_string),
            op_index,
        }
    }
}

/// Everything that can go wrong talking to ovsdb-server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad remote {0:?}: expected tcp:IP:PORT, ssl:IP:PORT or unix:PATH")]
    BadRemote(String),
    #[error("I/O error on {remote}: {source}")]
    Io {
        remote: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A bounded queue of the connection overflowed: the other side (server or the
    /// connection's own user) does not keep up, and the connection was failed rather than let
    /// memory grow.
    #[error("overloaded: {0}")]
    Overloaded(String),
    #[error("{what} timed out after {after:?}")]
    Timeout { what: String, after: Duration },
    /// The connection closed. For a transaction this means its outcome is unknown: it may or may
    /// not have been committed, so it must not be blindly resent. `reason` is why it closed
    /// (e.g. the protocol error that ended it), so the cause reaches the caller, not just a log.
    #[error("connection to {remote} lost: {reason}")]
    Disconnected { remote: String, reason: String },
    #[error("{method} failed: {error}")]
    Rpc { method: String, error: Value },
    #[error(transparent)]
    Transaction(#[from] TxnError),
    #[error(transparent)]
    Datum(#[from] DatumError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("server schema of {db} is incompatible with this client: {}", problems.join("; "))]
    IncompatibleSchema { db: String, problems: Vec<String> },
    #[error("database {0} is not served by the server")]
    UnknownDatabase(String),
    #[error("no usable server among {0}")]
    NoServer(String),
    #[error("the client is shut down")]
    Closed,
}

impl Error {
    /// True for failures where trying again later (or on another server) can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Io { .. }
            | Error::Timeout { .. }
            | Error::Disconnected { .. }
            | Error::NoServer(_) => true,
            Error::Transaction(t) => {
                matches!(t.kind, TxnErrorKind::NotLeader | TxnErrorKind::TimedOut)
            }
            Error::Rpc { error, .. } => error.as_str() == Some("not leader"),
            _ => false,
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
