//! kube-ovn-rs's OVSDB client (RFC 7047), written for ovsdb-server as OVN deploys it: JSON-RPC 1.0
//! framing, every method of the RFC and of ovsdb-server's extensions, schema-checked datums, and
//! typed models of the OVN and OVS databases.
pub mod batch;
pub mod cache;
pub mod client;
pub mod codec;
pub mod connection;
pub mod datum;
pub mod error;
pub mod model;
pub mod models;
pub mod ops;
pub mod plan;
pub mod replica;
pub mod schema;
pub mod schemas;
pub mod transport;

pub use cache::{CacheData, Change, ChangeBatch};
pub use client::{Client, SinceReply};
pub use connection::{Connection, Limits, Notification, Timeouts};
pub use datum::{column, Atom, AtomMap, AtomSet, Column, Datum, Row};
pub use error::{Error, Result, TxnError, TxnErrorKind};
pub use ops::{Condition, Mutation, Operation, Transaction, TxnOutcome};
pub use replica::{Replica, ReplicaConfig, ReplicaState};
pub use schema::DatabaseSchema;
pub use transport::{Remote, TlsFiles};
pub use uuid::Uuid;
